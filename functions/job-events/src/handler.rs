//! Reads the EventBridge envelope into a [`JobEvent`] and hands it to
//! [`spotfit_core::pipeline::on_event`]: an S3 `Object Created` of an exit marker, an EC2
//! state change (stopping, stopped, shutting-down, terminated), an EC2 spot interruption
//! warning, or a Step Functions execution that ended ABORTED, FAILED or TIMED_OUT. Anything
//! else is reported as ignored, never an error: the rules are the filter, and a retried
//! delivery of an event we cannot use would only fail again.

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use spotfit_core::ids::{valid_run_id, InstanceId};
use spotfit_core::pipeline::{on_event, EventAction, EventReport, JobEvent};
use spotfit_lambda::{encode, CompletionPorts, TaskError};

/// The execution statuses whose attempt must be closed (a SUCCEEDED execution recorded it).
const ENDED_STATUSES: &[&str] = &["ABORTED", "FAILED", "TIMED_OUT"];

/// The pipeline's reading of an EventBridge event; `Err(why)` for one it does not use.
pub fn job_event(ev: &Value) -> Result<JobEvent, String> {
    let source = ev["source"].as_str().unwrap_or_default();
    let kind = ev["detail-type"].as_str().unwrap_or_default();
    let detail = &ev["detail"];
    let field = |path: &[&str]| -> Result<String, String> {
        let mut v = detail;
        for p in path {
            v = &v[*p];
        }
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{kind} event without detail.{}", path.join(".")))
    };
    match (source, kind) {
        // S3's classic notifications URL-encode the key; spotfit's keys never hold a '%', so a
        // key that has one is decoded (`job%3Detl` → `job=etl`) whichever way EventBridge sends it.
        ("aws.s3", "Object Created") => {
            let key = field(&["object", "key"])?;
            let key = match key.contains('%') {
                true => percent_encoding::percent_decode_str(&key)
                    .decode_utf8_lossy()
                    .into_owned(),
                false => key,
            };
            Ok(JobEvent::ExitMarker { key })
        }
        ("aws.ec2", "EC2 Instance State-change Notification") => Ok(JobEvent::InstanceChanged {
            instance_id: InstanceId(field(&["instance-id"])?),
            state: field(&["state"])?,
        }),
        ("aws.ec2", "EC2 Spot Instance Interruption Warning") => Ok(JobEvent::InterruptionWarning {
            instance_id: InstanceId(field(&["instance-id"])?),
        }),
        ("aws.states", "Step Functions Execution Status Change") => {
            let status = field(&["status"])?;
            if !ENDED_STATUSES.contains(&status.as_str()) {
                return Err(format!("execution status {status} needs nothing closed"));
            }
            // Executions are named by their run id (spotfit submit, the schedule rules' UUIDs);
            // one that is not is left to the sweep, which finds its wait gone.
            let run_id = field(&["name"])?;
            if !valid_run_id(&run_id) {
                return Err(format!("execution name {run_id:?} is not a run id"));
            }
            Ok(JobEvent::ExecutionEnded { run_id, status })
        }
        _ => Err(format!("not an event spotfit handles: {source} / {kind}")),
    }
}

pub async fn handle(event: LambdaEvent<Value>, deps: &CompletionPorts) -> Result<Value, TaskError> {
    let id = event.payload["id"].as_str().unwrap_or_default().to_string();
    let report = match job_event(&event.payload) {
        Ok(ev) => on_event(&deps.completer(), &ev).await?,
        Err(why) => EventReport {
            run_id: None,
            attempt: None,
            action: EventAction::Ignored { why },
        },
    };
    lambda_runtime::tracing::info!(event_id = %id, run_id = ?report.run_id, attempt = ?report.attempt, action = ?report.action, "event");
    encode(&report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use lambda_runtime::Context;
    use spotfit_core::pipeline::{launch_step, Completion, LaunchSettings, RunState};
    use spotfit_core::ports::{RunStore, WaitStore};
    use spotfit_core::summary::RunStatus;
    use spotfit_core::testkit::*;
    use std::sync::Arc;

    const T0: i64 = 1_795_651_200_000;

    fn envelope(source: &str, kind: &str, detail: Value) -> Value {
        serde_json::json!({"version": "0", "id": "e-1", "source": source, "detail-type": kind,
            "account": "123456789012", "time": "2026-11-26T00:00:00Z", "region": "us-east-1", "resources": [], "detail": detail})
    }

    #[test]
    fn reads_the_four_kinds_and_refuses_the_rest_with_a_reason() {
        let ev = envelope(
            "aws.s3",
            "Object Created",
            serde_json::json!({"bucket": {"name": "b"}, "object": {"key": "runs/job=j/dt=d/r.exit"}}),
        );
        assert_eq!(
            job_event(&ev).unwrap(),
            JobEvent::ExitMarker {
                key: "runs/job=j/dt=d/r.exit".into()
            }
        );
        let ev = envelope(
            "aws.ec2",
            "EC2 Instance State-change Notification",
            serde_json::json!({"instance-id": "i-1", "state": "terminated"}),
        );
        assert!(matches!(job_event(&ev).unwrap(), JobEvent::InstanceChanged { .. }));
        let ev = envelope(
            "aws.ec2",
            "EC2 Spot Instance Interruption Warning",
            serde_json::json!({"instance-id": "i-1", "instance-action": "terminate"}),
        );
        assert!(matches!(job_event(&ev).unwrap(), JobEvent::InterruptionWarning { .. }));
        let ev = envelope(
            "aws.states",
            "Step Functions Execution Status Change",
            serde_json::json!({"name": "run-1", "status": "ABORTED"}),
        );
        assert_eq!(
            job_event(&ev).unwrap(),
            JobEvent::ExecutionEnded {
                run_id: "run-1".into(),
                status: "ABORTED".into()
            }
        );
        let ev = envelope(
            "aws.states",
            "Step Functions Execution Status Change",
            serde_json::json!({"name": "run-1", "status": "SUCCEEDED"}),
        );
        assert!(job_event(&ev).unwrap_err().contains("SUCCEEDED"));
        let ev = envelope(
            "aws.states",
            "Step Functions Execution Status Change",
            serde_json::json!({"name": "no spaces allowed", "status": "FAILED"}),
        );
        assert!(job_event(&ev).unwrap_err().contains("not a run id"));
        let ev = envelope(
            "aws.ec2",
            "EC2 Instance State-change Notification",
            serde_json::json!({"state": "terminated"}),
        );
        assert!(job_event(&ev).unwrap_err().contains("detail.instance-id"));
        assert!(job_event(&serde_json::json!({"detail": {}})).is_err());
    }

    #[test]
    fn a_marker_event_delivered_twice_completes_once_and_never_errors() {
        let launcher = Arc::new(FakeLauncher::new());
        let objects = Arc::new(InMemoryObjectStore::default());
        let waits = Arc::new(InMemoryWaitStore::default());
        let callback = Arc::new(FakeCallback::default());
        let runs = Arc::new(InMemoryRunStore::default());
        let p = CompletionPorts {
            launcher: launcher.clone(),
            objects: objects.clone(),
            capacity: Arc::new(InMemoryCapacityStore::default()),
            runs: runs.clone(),
            waits: waits.clone(),
            callback: callback.clone(),
            clock: Arc::new(FakeClock::at(T0)),
        };
        let c = p.completer();
        let spec = serde_json::json!({"name": "etl", "command": ["true"]});
        let s = sized_state(spec, "run-1", vec![candidate("m7i.large", 0.03)], T0);
        let s: RunState = block_on(launch_step(
            c.launcher,
            c.capacity,
            c.runs,
            c.clock,
            &LaunchSettings::new(vec!["use1-az1".into()]),
            s,
        ))
        .unwrap();
        callback.open("tok");
        block_on(spotfit_core::pipeline::arm_step(&c, "tok".into(), s.clone())).unwrap();
        let inst = s.instance.as_ref().unwrap();
        let summary = spotfit_core::summary::RunSummary {
            job: "etl".into(),
            run_id: inst.agent_run_id.clone(),
            started_at_ms: inst.launched_at_ms,
            status: RunStatus::Succeeded,
            ..Default::default()
        };
        agent_exits(&objects, &summary, inst.launched_at_ms);
        let key = spotfit_core::ids::RunKeys::new("etl", inst.launched_at_ms, &inst.agent_run_id).exit_marker();
        let ev = envelope(
            "aws.s3",
            "Object Created",
            serde_json::json!({"bucket": {"name": "b"}, "object": {"key": key}}),
        );
        let call = || block_on(handle(LambdaEvent::new(ev.clone(), Context::default()), &p)).unwrap();
        let first = call();
        let second = call();
        assert_eq!(
            first["action"]["completion"],
            serde_json::to_value(Completion::Completed).unwrap()
        );
        assert_eq!(
            second["action"]["completion"],
            serde_json::to_value(Completion::NotWaiting).unwrap()
        );
        assert_eq!(*callback.sends.lock().unwrap(), 1);
        assert!(block_on(waits.all()).unwrap().is_empty());
        assert_eq!(callback.output("tok").unwrap()["outcome"], "succeeded");
        // The row stays as the launch wrote it: recording is the state machine's Record step.
        assert_eq!(
            block_on(runs.get("run-1", 1)).unwrap().unwrap().status,
            RunStatus::Running
        );
        let _ = launcher;
    }

    #[test]
    fn an_unusable_event_is_reported_not_failed() {
        let p = CompletionPorts {
            launcher: Arc::new(FakeLauncher::new()),
            objects: Arc::new(InMemoryObjectStore::default()),
            capacity: Arc::new(InMemoryCapacityStore::default()),
            runs: Arc::new(InMemoryRunStore::default()),
            waits: Arc::new(InMemoryWaitStore::default()),
            callback: Arc::new(FakeCallback::default()),
            clock: Arc::new(FakeClock::at(T0)),
        };
        let out = block_on(handle(
            LambdaEvent::new(serde_json::json!({"source": "aws.health"}), Context::default()),
            &p,
        ))
        .unwrap();
        assert!(
            out["action"]["ignored"]["why"].as_str().unwrap().contains("aws.health"),
            "{out}"
        );
    }
}
