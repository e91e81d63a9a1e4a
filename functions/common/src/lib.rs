//! What every spotfit Lambda shares: [`TaskError`] (its `Diagnostic` error type is one of
//! [`spotfit_core::error_names`], the names the ASL's Retry/Catch match), payload decoding that
//! names the bad field, and building the AWS adapters from the environment.

use lambda_runtime::Diagnostic;
use serde::de::DeserializeOwned;
use spotfit_aws::config::{self, env_var, ConfigError, LaunchConfig};
use spotfit_aws::{
    DynamoCapacityStore, DynamoProfileStore, DynamoRunStore, DynamoWaitStore, Ec2Launcher, S3ObjectStore, SfnCallback,
};
use spotfit_core::error_names;
use spotfit_core::pipeline::{Completer, PipelineError};
use spotfit_core::ports::{
    CapacityStore, Clock, InstanceLauncher, ObjectStore, RunStore, SystemClock, TaskCallback, WaitStore,
};
use std::sync::Arc;

/// A step's failure as Step Functions sees it.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("invalid input at {path}: {reason}")]
    Input { path: String, reason: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl TaskError {
    /// The stable error type.
    pub fn name(&self) -> &'static str {
        match self {
            TaskError::Pipeline(e) => e.name(),
            TaskError::Input { .. } => error_names::INVALID_STATE,
            TaskError::Config(_) => error_names::CONFIG_INVALID,
        }
    }
}

impl From<TaskError> for Diagnostic {
    fn from(e: TaskError) -> Diagnostic {
        Diagnostic {
            error_type: e.name().to_string(),
            error_message: e.to_string(),
        }
    }
}

/// Decodes a step's payload, naming the field that does not fit.
pub fn decode<T: DeserializeOwned>(payload: serde_json::Value) -> Result<T, TaskError> {
    serde_path_to_error::deserialize(payload).map_err(|e| TaskError::Input {
        path: e.path().to_string(),
        reason: e.inner().to_string(),
    })
}

/// Encodes a step's result (plain data: cannot fail in practice, but never panics).
pub fn encode<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, TaskError> {
    serde_json::to_value(v).map_err(|e| TaskError::Input {
        path: "(output)".into(),
        reason: e.to_string(),
    })
}

/// Splits a Catch's error (ResultPath `$.error`) off a state payload, so the state decodes.
pub fn take_caught_error(payload: &mut serde_json::Value) -> Option<serde_json::Value> {
    payload.as_object_mut().and_then(|o| o.remove("error"))
}

/// Encodes a step's output with the caught error (if any) put back beside it, so the
/// `Failed` state can still report it.
pub fn encode_with_error<T: serde::Serialize>(
    v: &T,
    error: Option<serde_json::Value>,
) -> Result<serde_json::Value, TaskError> {
    let mut out = encode(v)?;
    if let (Some(e), Some(o)) = (error, out.as_object_mut()) {
        o.insert("error".into(), e);
    }
    Ok(out)
}

/// The AWS adapters, built once per cold start: each Lambda builds only the ones it uses, and
/// each reads only its own environment variables (an error names the missing one).
#[derive(Debug, Clone)]
pub struct Aws {
    pub sdk: aws_config::SdkConfig,
}

impl Aws {
    pub async fn from_env() -> Self {
        Aws {
            sdk: spotfit_aws::load_sdk_config().await,
        }
    }

    fn ddb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }

    /// The bucket (`SPOTFIT_BUCKET`).
    pub fn objects(&self) -> Result<S3ObjectStore, ConfigError> {
        Ok(S3ObjectStore::new(
            S3ObjectStore::client_from(&self.sdk),
            &env_var(config::BUCKET)?,
        ))
    }

    /// The profiles table (`SPOTFIT_PROFILES_TABLE`).
    pub fn profiles(&self) -> Result<DynamoProfileStore, ConfigError> {
        Ok(DynamoProfileStore::new(self.ddb(), &env_var(config::PROFILES_TABLE)?))
    }

    /// The runs table (`SPOTFIT_RUNS_TABLE`).
    pub fn runs(&self) -> Result<DynamoRunStore, ConfigError> {
        Ok(DynamoRunStore::new(self.ddb(), &env_var(config::RUNS_TABLE)?))
    }

    /// The capacity marks table (`SPOTFIT_CAPACITY_TABLE`).
    pub fn capacity(&self) -> Result<DynamoCapacityStore, ConfigError> {
        Ok(DynamoCapacityStore::new(self.ddb(), &env_var(config::CAPACITY_TABLE)?))
    }

    /// The EC2 launcher with its launch configuration (launch-instance only).
    pub fn launcher(&self) -> Result<(Ec2Launcher, LaunchConfig), ConfigError> {
        let cfg = LaunchConfig::from_env()?;
        Ok((Ec2Launcher::new(aws_sdk_ec2::Client::new(&self.sdk), cfg.clone()), cfg))
    }

    /// EC2 for describe, terminate and list (check, terminate, reap): no launch configuration.
    pub fn instances(&self) -> Ec2Launcher {
        Ec2Launcher::instances_only(aws_sdk_ec2::Client::new(&self.sdk))
    }

    /// The waits table (`SPOTFIT_WAITS_TABLE`).
    pub fn waits(&self) -> Result<DynamoWaitStore, ConfigError> {
        Ok(DynamoWaitStore::new(self.ddb(), &env_var(config::WAITS_TABLE)?))
    }

    /// Step Functions' callback API (`SendTaskSuccess`, `SendTaskHeartbeat`).
    pub fn callback(&self) -> SfnCallback {
        SfnCallback::from_sdk(&self.sdk)
    }

    /// Every port completing an attempt needs: check-job's arm, job-events, the sweep.
    pub fn completion_ports(&self) -> Result<CompletionPorts, ConfigError> {
        Ok(CompletionPorts {
            launcher: Arc::new(self.instances()),
            objects: Arc::new(self.objects()?),
            capacity: Arc::new(self.capacity()?),
            runs: Arc::new(self.runs()?),
            waits: Arc::new(self.waits()?),
            callback: Arc::new(self.callback()),
            clock: Arc::new(SystemClock),
        })
    }
}

/// The completion ports from the environment (once per cold start): check-job, job-events and
/// the reaper are wired alike.
pub async fn completion_ports_from_env() -> Result<CompletionPorts, lambda_runtime::Error> {
    Ok(Aws::from_env().await.completion_ports()?)
}

/// The ports of event-driven completion, shared (`Arc`: the handlers that use them are wired
/// once, and tests keep a handle on the in-memory fakes they put in).
pub struct CompletionPorts {
    pub launcher: Arc<dyn InstanceLauncher>,
    pub objects: Arc<dyn ObjectStore>,
    pub capacity: Arc<dyn CapacityStore>,
    pub runs: Arc<dyn RunStore>,
    pub waits: Arc<dyn WaitStore>,
    pub callback: Arc<dyn TaskCallback>,
    pub clock: Arc<dyn Clock>,
}

impl CompletionPorts {
    pub fn completer(&self) -> Completer<'_> {
        Completer {
            launcher: self.launcher.as_ref(),
            objects: self.objects.as_ref(),
            capacity: self.capacity.as_ref(),
            runs: self.runs.as_ref(),
            waits: self.waits.as_ref(),
            callback: self.callback.as_ref(),
            clock: self.clock.as_ref(),
        }
    }
}

impl std::fmt::Debug for CompletionPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompletionPorts").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn errors_become_diagnostics_with_stable_names() {
        let e = TaskError::from(PipelineError::CapacityExhausted { tried: vec![] });
        let d: Diagnostic = e.into();
        assert_eq!(d.error_type, "CapacityExhausted");
        let bad: Result<spotfit_core::pipeline::RunState, _> = decode(serde_json::json!({"run_id": 3}));
        let d: Diagnostic = bad.unwrap_err().into();
        assert_eq!(d.error_type, "InvalidState");
        assert!(d.error_message.contains("run_id"), "{}", d.error_message);
    }
}
