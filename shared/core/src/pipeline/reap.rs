//! The reaper: terminates spotfit instances no execution looks after any more.

use super::*;

/// Why the reaper terminates an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReapReason {
    /// Past the deadline in its `spotfit:deadline` tag.
    PastDeadline,
    /// Its run attempt has ended (recorded final) but the instance lives on.
    RunEnded,
    /// No run id tags, or no run row, long after launch.
    Unknown,
    /// Its attempt is recorded as running but no execution has polled it for too long.
    Abandoned,
}

/// Reaper thresholds.
#[derive(Debug, Clone, Copy)]
pub struct ReapPolicy {
    /// Time after launch before a missing run row counts (the launch step writes it right after).
    pub launch_grace_ms: i64,
    /// Heartbeat age after which a running attempt counts as abandoned (several poll intervals).
    pub stale_heartbeat_ms: i64,
}

impl Default for ReapPolicy {
    fn default() -> Self {
        ReapPolicy {
            launch_grace_ms: 10 * 60 * 1000,
            stale_heartbeat_ms: 15 * 60 * 1000,
        }
    }
}

/// Whether (and why) the reaper terminates `info`, given its run row and whether an execution
/// waits on its attempt (a waiting attempt is looked after, however old its row's heartbeat:
/// with event-driven completion nothing polls it). Pure.
pub fn reap_reason(
    info: &InstanceInfo,
    record: Option<&RunRecord>,
    waited_on: bool,
    now_ms: i64,
    policy: &ReapPolicy,
) -> Option<ReapReason> {
    if info.state == InstanceState::Terminated || info.state == InstanceState::ShuttingDown {
        return None;
    }
    if info.deadline_ms.is_some_and(|d| now_ms > d) {
        return Some(ReapReason::PastDeadline);
    }
    let young = info.launched_at_ms.is_some_and(|t| now_ms - t < policy.launch_grace_ms);
    match record {
        _ if info.run_id.is_none() || info.attempt.is_none() => (!young).then_some(ReapReason::Unknown),
        None => (!young).then_some(ReapReason::Unknown),
        Some(r) if r.status.is_final() => Some(ReapReason::RunEnded),
        Some(_) if waited_on => None,
        Some(r) => {
            let beat = r.heartbeat_ms.or(info.launched_at_ms).unwrap_or(0);
            (now_ms - beat > policy.stale_heartbeat_ms).then_some(ReapReason::Abandoned)
        }
    }
}

/// One instance the reaper terminated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reaped {
    pub instance_id: InstanceId,
    pub reason: ReapReason,
    pub job: Option<String>,
    pub run_id: Option<String>,
}

/// The reaper's report.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ReapReport {
    /// Managed instances looked at.
    pub checked: usize,
    pub terminated: Vec<Reaped>,
    /// Instances that should have been terminated but the call failed (id, error).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<(InstanceId, String)>,
}

/// Reap step: terminate every managed instance whose run is over, unknown, abandoned or past
/// its deadline, and close the row of an attempt it kills that is still `running` (`timed_out`
/// past the deadline, else `cancelled`; costed to now), so no run stays running forever. `waiting` lists the attempts an execution
/// waits on (run id, attempt). One failed terminate does not stop the others: it is listed in
/// the report.
pub async fn reap_step<L, R, K>(
    launcher: &L,
    runs: &R,
    clock: &K,
    policy: &ReapPolicy,
    waiting: &HashSet<(String, u32)>,
) -> Result<ReapReport, PipelineError>
where
    L: InstanceLauncher + ?Sized,
    R: RunStore + ?Sized,
    K: Clock + ?Sized,
{
    let now = clock.now_ms();
    let managed = launcher.list_managed().await.map_err(PipelineError::Instance)?;
    let mut report = ReapReport {
        checked: managed.len(),
        ..Default::default()
    };
    for info in managed {
        let record = match (&info.run_id, info.attempt) {
            (Some(run_id), Some(attempt)) => runs.get(run_id, attempt).await?,
            _ => None,
        };
        let waited_on = match (&info.run_id, info.attempt) {
            (Some(run_id), Some(attempt)) => waiting.contains(&(run_id.clone(), attempt)),
            _ => false,
        };
        let Some(reason) = reap_reason(&info, record.as_ref(), waited_on, now, policy) else {
            continue;
        };
        match launcher.terminate(&info.instance_id).await {
            Ok(()) => {
                if let Some(mut rec) = record.filter(|r| !r.status.is_final()) {
                    rec.status = match reason {
                        ReapReason::PastDeadline => RunStatus::TimedOut,
                        ReapReason::Abandoned | ReapReason::RunEnded | ReapReason::Unknown => RunStatus::Cancelled,
                    };
                    if let (Some(p), Some(t0)) = (&rec.placed, info.launched_at_ms) {
                        rec.cost_usd = p.cost_after((now - t0).max(0) as f64 / 1000.0);
                    }
                    rec.heartbeat_ms = Some(now);
                    runs.put(&rec).await?;
                }
                report.terminated.push(Reaped {
                    instance_id: info.instance_id,
                    reason,
                    job: info.job,
                    run_id: info.run_id,
                });
            }
            Err(e) => report.failed.push((info.instance_id, e.to_string())),
        }
    }
    Ok(report)
}
