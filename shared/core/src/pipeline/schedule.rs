//! Scheduled runs, once per tick. EventBridge delivers a schedule's event at least once (a
//! retried or duplicated delivery carries the same event, with the same `time`), so the start
//! of a scheduled run must be idempotent: the execution is named by the run id, and the run id
//! is a function of (job, scheduled time). Step Functions refuses a second execution of a name
//! (`ExecutionAlreadyExists` once the first has ended or when the input differs; the same
//! execution back while it runs with the same input), so a duplicate delivery starts nothing.
//!
//! The event time is used, not the clock at delivery: a delivery retried a minute later is
//! still the same tick.

use super::PipelineError;
use crate::ports::{ExecutionStarter, Started};
use crate::spec::JobSpec;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Step Functions' longest execution name.
pub const MAX_EXECUTION_NAME: usize = 80;

/// What a job's schedule rule delivers: the event's time (the rule's input transformer puts
/// `<aws.events.event.time>` there) and the job spec, exactly as the state machine takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledTick {
    pub tick: DateTime<Utc>,
    pub spec: serde_json::Value,
}

/// What one delivery did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TickReport {
    pub job: String,
    pub tick: DateTime<Utc>,
    pub run_id: String,
    #[serde(flatten)]
    pub action: TickAction,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum TickAction {
    /// The tick's execution runs (started by this delivery, or an earlier one of the same event
    /// while it still runs).
    Started { execution_arn: String },
    /// The tick's execution exists and has ended: this delivery was a duplicate; nothing started.
    AlreadyRan,
}

/// The run id (and execution name) of `job`'s run at `tick`: `YYYYMMDDTHHMMSSZ-<job>`, sortable
/// by time like every run id, at most 80 characters and without `:` (Step Functions refuses
/// both in a name). A job name too long for that keeps its first 54 characters and gains an
/// FNV-1a hash of the whole name, so two long names that share a prefix stay apart.
pub fn scheduled_run_id(job: &str, tick: DateTime<Utc>) -> String {
    let stamp = tick.format("%Y%m%dT%H%M%SZ").to_string();
    let id = format!("{stamp}-{job}");
    if id.len() <= MAX_EXECUTION_NAME {
        return id;
    }
    let hash = super::fnv1a(job.as_bytes(), 0xcbf2_9ce4_8422_2325);
    // Job names are ASCII ([a-z0-9._-]), so byte slicing is on character boundaries.
    format!("{stamp}-{}-{:08x}", &job[..54.min(job.len())], hash as u32)
}

/// Starts the run of `tick` unless it was started already. The spec's rules are checked first
/// (the job name among them, which the execution name is made of): a schedule whose spec breaks
/// one fails here, naming the field, and starts nothing. Placement is checked by the size step.
pub async fn start_scheduled<S>(starter: &S, tick: &ScheduledTick) -> Result<TickReport, PipelineError>
where
    S: ExecutionStarter + ?Sized,
{
    let spec = JobSpec::parse_json(&tick.spec.to_string())?;
    spec.validate_rules()?;
    let run_id = scheduled_run_id(&spec.name, tick.tick);
    let action = match starter.start(&run_id, &tick.spec).await? {
        Started::Running { execution_arn } => TickAction::Started { execution_arn },
        Started::AlreadyExists => TickAction::AlreadyRan,
    };
    Ok(TickReport {
        job: spec.name,
        tick: tick.tick,
        run_id,
        action,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ids::valid_run_id;
    use crate::ports::StoreError;
    use crate::testkit::block_on;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// Step Functions' naming rule: a name starts once; the same name and input while it runs
    /// is the same execution; anything else is `ExecutionAlreadyExists`.
    #[derive(Default)]
    struct Sfn {
        executions: Mutex<BTreeMap<String, (serde_json::Value, bool)>>,
        calls: Mutex<u32>,
    }
    #[async_trait::async_trait]
    impl ExecutionStarter for Sfn {
        async fn start(&self, name: &str, input: &serde_json::Value) -> Result<Started, StoreError> {
            *self.calls.lock().unwrap() += 1;
            let mut ex = self.executions.lock().unwrap();
            match ex.get(name) {
                Some((i, running)) if *running && i == input => Ok(Started::Running {
                    execution_arn: format!("arn:{name}"),
                }),
                Some(_) => Ok(Started::AlreadyExists),
                None => {
                    ex.insert(name.to_string(), (input.clone(), true));
                    Ok(Started::Running {
                        execution_arn: format!("arn:{name}"),
                    })
                }
            }
        }
    }
    impl Sfn {
        fn finish_all(&self) {
            for v in self.executions.lock().unwrap().values_mut() {
                v.1 = false;
            }
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn tick(job: &str, time: &str) -> ScheduledTick {
        ScheduledTick {
            tick: at(time),
            spec: serde_json::json!({"name": job, "command": ["true"]}),
        }
    }

    #[test]
    fn a_duplicate_delivery_of_a_tick_starts_nothing() {
        let sfn = Sfn::default();
        let t = tick("nightly", "2026-12-03T02:00:00Z");
        // GIVEN the tick delivered once
        let first = block_on(start_scheduled(&sfn, &t)).unwrap();
        assert_eq!(first.run_id, "20261203T020000Z-nightly");
        assert!(matches!(first.action, TickAction::Started { .. }));
        // WHEN it is delivered again while the run goes on, THEN it is the same execution
        let again = block_on(start_scheduled(&sfn, &t)).unwrap();
        assert_eq!(again.action, first.action);
        // AND after the run ended, a late duplicate is refused as already run
        sfn.finish_all();
        let late = block_on(start_scheduled(&sfn, &t)).unwrap();
        assert_eq!(late.action, TickAction::AlreadyRan);
        assert_eq!(sfn.executions.lock().unwrap().len(), 1);
        // AND the next tick is a run of its own
        let next = block_on(start_scheduled(&sfn, &tick("nightly", "2026-12-04T02:00:00Z"))).unwrap();
        assert_eq!(next.run_id, "20261204T020000Z-nightly");
        assert!(matches!(next.action, TickAction::Started { .. }));
        assert_eq!(sfn.executions.lock().unwrap().len(), 2);
    }

    #[test]
    fn an_invalid_spec_starts_nothing_and_names_the_field() {
        let sfn = Sfn::default();
        let mut t = tick("nightly", "2026-12-03T02:00:00Z");
        t.spec["timeout_s"] = serde_json::json!("an hour");
        let err = block_on(start_scheduled(&sfn, &t)).unwrap_err();
        assert_eq!(err.name(), "InvalidJobSpec");
        assert!(err.to_string().contains("timeout_s"), "{err}");
        assert_eq!(*sfn.calls.lock().unwrap(), 0);
    }

    #[test]
    fn run_ids_of_ticks_are_valid_execution_names_of_at_most_80_characters() {
        let t = at("2026-12-03T02:00:00Z");
        for len in [1, 30, 63, 64] {
            let job = "a".repeat(len);
            let id = scheduled_run_id(&job, t);
            assert!(id.len() <= MAX_EXECUTION_NAME, "{len}: {id}");
            assert!(valid_run_id(&id) && !id.contains(':'), "{id}");
            assert!(id.starts_with("20261203T020000Z-"), "{id}");
        }
        // Two long names with a common 54-character prefix stay apart
        let a = format!("{}-x-{}", "p".repeat(54), "a".repeat(6));
        let b = format!("{}-x-{}", "p".repeat(54), "b".repeat(6));
        assert_ne!(scheduled_run_id(&a, t), scheduled_run_id(&b, t));
        // Seconds count (rate() schedules are not on the minute), and so does the job
        assert_ne!(
            scheduled_run_id("j", t),
            scheduled_run_id("j", at("2026-12-03T02:00:01Z"))
        );
        assert_ne!(scheduled_run_id("j", t), scheduled_run_id("k", t));
    }

    #[test]
    fn the_rule_input_is_read_strictly() {
        let ok: ScheduledTick =
            serde_json::from_value(serde_json::json!({"tick": "2026-12-03T02:00:00Z", "spec": {"name": "j"}})).unwrap();
        assert_eq!(ok.tick, at("2026-12-03T02:00:00Z"));
        assert!(serde_json::from_value::<ScheduledTick>(serde_json::json!({"tick": "yesterday", "spec": {}})).is_err());
        assert!(serde_json::from_value::<ScheduledTick>(serde_json::json!({"spec": {}})).is_err());
        assert!(serde_json::from_value::<ScheduledTick>(
            serde_json::json!({"tick": "2026-12-03T02:00:00Z", "spec": {}, "extra": 1})
        )
        .is_err());
    }
}
