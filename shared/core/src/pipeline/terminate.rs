//! The terminate step: safe to repeat, a no-op before launch.

use super::*;

/// Terminate step: terminates the attempt's instance (safe to repeat; a state without an
/// instance — a failure before launch — is a no-op).
pub async fn terminate_step<L, K>(launcher: &L, clock: &K, mut state: RunState) -> Result<RunState, PipelineError>
where
    L: InstanceLauncher + ?Sized,
    K: Clock + ?Sized,
{
    if let Some(inst) = state.instance.as_mut() {
        if inst.terminated_at_ms.is_none() {
            launcher
                .terminate(&inst.instance_id)
                .await
                .map_err(PipelineError::Instance)?;
            inst.terminated_at_ms = Some(clock.now_ms());
        }
    }
    Ok(state)
}
