//! Reads the schedule rule's input (`{"tick": <the event's time>, "spec": …}`, set by the rule's
//! input transformer in the stack) and hands it to [`spotfit_core::pipeline::start_scheduled`].
//! A duplicate delivery answers `already_ran` or the running execution, and is not an error: an
//! error would only make Lambda and EventBridge deliver it again.

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use spotfit_core::pipeline::{start_scheduled, ScheduledTick};
use spotfit_core::ports::ExecutionStarter;
use spotfit_lambda::{decode, encode, TaskError};

pub async fn handle<S: ExecutionStarter>(event: LambdaEvent<Value>, starter: &S) -> Result<Value, TaskError> {
    let tick: ScheduledTick = decode(event.payload)?;
    let report = start_scheduled(starter, &tick).await?;
    lambda_runtime::tracing::info!(job = %report.job, tick = %report.tick, run_id = %report.run_id, action = ?report.action, "tick");
    encode(&report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use lambda_runtime::Context;
    use spotfit_core::ports::{Started, StoreError};
    use spotfit_core::testkit::block_on;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Names(Mutex<Vec<String>>);
    #[async_trait::async_trait]
    impl ExecutionStarter for Names {
        async fn start(&self, name: &str, _input: &Value) -> Result<Started, StoreError> {
            let mut names = self.0.lock().unwrap();
            if names.iter().any(|n| n == name) {
                return Ok(Started::AlreadyExists);
            }
            names.push(name.to_string());
            Ok(Started::Running {
                execution_arn: format!("arn:aws:states:us-east-1:123456789012:execution:spotfit:{name}"),
            })
        }
    }

    fn call(payload: Value, s: &Names) -> Result<Value, TaskError> {
        block_on(handle(LambdaEvent::new(payload, Context::default()), s))
    }

    #[test]
    fn the_shipped_event_starts_its_tick_once() {
        let event: Value = serde_json::from_str(include_str!("../events/tick.json")).unwrap();
        let s = Names::default();
        let out = call(event.clone(), &s).unwrap();
        assert_eq!(out["run_id"], "20261203T020000Z-store-forecast");
        assert_eq!(out["action"], "started");
        assert_eq!(call(event, &s).unwrap()["action"], "already_ran");
        assert_eq!(s.0.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_malformed_rule_input_is_refused_naming_the_field() {
        let s = Names::default();
        let err = call(
            serde_json::json!({"tick": "02:00", "spec": {"name": "j", "command": ["x"]}}),
            &s,
        )
        .unwrap_err();
        assert!(err.to_string().contains("tick"), "{err}");
        let err = call(
            serde_json::json!({"tick": "2026-12-03T02:00:00Z", "spec": {"name": "J!"}}),
            &s,
        )
        .unwrap_err();
        assert_eq!(err.name(), "InvalidJobSpec", "{err}");
        assert!(err.to_string().contains("name"), "{err}");
        assert!(s.0.lock().unwrap().is_empty());
    }
}
