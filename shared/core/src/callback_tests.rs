//! Event-driven completion with the in-memory fakes: arm, events, duplicates, the sweep, a
//! stopped execution, and the reaper beside waiting attempts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::ports::{InstanceState, WaitStore};
use crate::summary::ExitInfo;
use crate::testkit::*;

const T0: i64 = 1_795_651_200_000;
const SWEEP_MS: i64 = 5 * 60 * 1000;

#[derive(Default)]
struct World {
    launcher: FakeLauncher,
    objects: InMemoryObjectStore,
    capacity: InMemoryCapacityStore,
    runs: InMemoryRunStore,
    waits: InMemoryWaitStore,
    callback: FakeCallback,
    clock: FakeClock,
}

impl World {
    fn new() -> Self {
        let w = World {
            clock: FakeClock::at(T0),
            ..Default::default()
        };
        w.launcher.now_ms.store(T0, std::sync::atomic::Ordering::SeqCst);
        w
    }
    fn c(&self) -> Completer<'_> {
        Completer {
            launcher: &self.launcher,
            objects: &self.objects,
            capacity: &self.capacity,
            runs: &self.runs,
            waits: &self.waits,
            callback: &self.callback,
            clock: &self.clock,
        }
    }
    /// Sized and launched: the state the Await task gets.
    fn launched(&self, run_id: &str) -> RunState {
        let spec = serde_json::json!({"name": "etl", "command": ["true"], "timeout_s": 3600});
        let s = sized_state(
            spec,
            run_id,
            vec![candidate("m7i.large", 0.03), candidate("c7i.large", 0.035)],
            T0,
        );
        let settings = LaunchSettings::new(vec!["use1-az1".into()]);
        block_on(launch_step(
            &self.launcher,
            &self.capacity,
            &self.runs,
            &self.clock,
            &settings,
            s,
        ))
        .unwrap()
    }
    fn arm(&self, token: &str, s: &RunState) -> Completion {
        self.callback.open(token);
        block_on(arm_step(&self.c(), token.into(), s.clone())).unwrap()
    }
    fn exits(&self, s: &RunState, status: RunStatus) {
        let inst = s.instance.as_ref().unwrap();
        let summary = RunSummary {
            job: s.job.clone(),
            run_id: inst.agent_run_id.clone(),
            started_at_ms: inst.launched_at_ms,
            ended_at_ms: self.clock.now_ms(),
            duration_s: 60.0,
            samples: 3,
            exit: ExitInfo::code(0),
            status,
            ..Default::default()
        };
        agent_exits(&self.objects, &summary, inst.launched_at_ms);
    }
    fn marker_key(&self, s: &RunState) -> String {
        let inst = s.instance.as_ref().unwrap();
        RunKeys::new(&s.job, inst.launched_at_ms, &inst.agent_run_id).exit_marker()
    }
    fn event(&self, e: &JobEvent) -> EventReport {
        block_on(on_event(&self.c(), e)).unwrap()
    }
    fn instance(&self, s: &RunState) -> InstanceId {
        s.instance.as_ref().unwrap().instance_id.clone()
    }
}

fn completion(r: &EventReport) -> Completion {
    match r.action {
        EventAction::Completion(c) => c,
        ref other => panic!("not a completion: {other:?}"),
    }
}

#[test]
fn launch_sets_the_waits_bounds_and_check_refreshes_them() {
    let w = World::new();
    let s = w.launched("run-1");
    let inst = s.instance.as_ref().unwrap();
    assert_eq!(inst.heartbeat_s, DEFAULT_HEARTBEAT_S);
    assert_eq!(inst.wait_s, wait_seconds(inst.deadline_ms, T0));
    assert_eq!(inst.wait_s, 3600 + (BOOT_GRACE_MS / 1000) as u64);
    w.clock.advance(600_000);
    let s = block_on(check_step(&w.launcher, &w.objects, &w.capacity, &w.clock, s)).unwrap();
    assert_eq!(
        s.instance.as_ref().unwrap().wait_s,
        3600 + (BOOT_GRACE_MS / 1000) as u64 - 600
    );
    assert_eq!(wait_seconds(T0, T0 + 5_000), 1, "never 0: Step Functions refuses it");
    assert_eq!(wait_seconds(T0 + 1, T0), 1);
    assert_eq!(wait_seconds(T0 + 1_001, T0), 2);
    // Near the deadline the heartbeat bound stays below the task's timeout.
    assert_eq!(heartbeat_within(900, 4200), 900);
    assert_eq!(heartbeat_within(900, 600), 599);
    assert_eq!(heartbeat_within(900, 1), 1);
    let mut late = s.clone();
    late.instance.as_mut().unwrap().deadline_ms = w.clock.now_ms() + 30_000;
    let late = block_on(check_step(&w.launcher, &w.objects, &w.capacity, &w.clock, late)).unwrap();
    let i = late.instance.as_ref().unwrap();
    assert_eq!((i.wait_s, i.heartbeat_s), (30, 29));
}

#[test]
fn the_marker_event_completes_the_wait_once() {
    let w = World::new();
    let s = w.launched("run-1");
    assert_eq!(w.arm("tok-1", &s), Completion::StillRunning);
    assert!(block_on(w.waits.get("run-1", 1)).unwrap().is_some());
    w.clock.advance(60_000);
    w.exits(&s, RunStatus::Succeeded);
    let ev = JobEvent::ExitMarker { key: w.marker_key(&s) };
    assert_eq!(completion(&w.event(&ev)), Completion::Completed);
    let out: RunState = serde_json::from_value(w.callback.output("tok-1").unwrap()).unwrap();
    assert_eq!(out.check.as_ref().unwrap().status, RunStatus::Succeeded);
    assert_eq!(out.outcome, Some(Outcome::Succeeded));
    assert!(block_on(w.waits.get("run-1", 1)).unwrap().is_none());
    // EventBridge delivers at least once: the same event again finds nothing waiting.
    assert_eq!(completion(&w.event(&ev)), Completion::NotWaiting);
    assert_eq!(*w.callback.sends.lock().unwrap(), 1);
}

#[test]
fn two_deliveries_racing_send_twice_and_the_second_finds_the_task_gone() {
    let w = World::new();
    let s = w.launched("run-1");
    w.arm("tok-1", &s);
    w.exits(&s, RunStatus::Succeeded);
    // Both read the wait before either removed it.
    let wait = block_on(w.waits.get("run-1", 1)).unwrap().unwrap();
    assert_eq!(
        block_on(complete_attempt(&w.c(), &wait)).unwrap(),
        Completion::Completed
    );
    assert_eq!(
        block_on(complete_attempt(&w.c(), &wait)).unwrap(),
        Completion::AlreadyCompleted
    );
    assert_eq!(*w.callback.sends.lock().unwrap(), 2);
    let out: RunState = serde_json::from_value(w.callback.output("tok-1").unwrap()).unwrap();
    assert_eq!(out.outcome, Some(Outcome::Succeeded), "the first outcome stands");
}

#[test]
fn arming_after_the_job_already_ended_completes_at_once() {
    let w = World::new();
    let s = w.launched("run-1");
    w.exits(&s, RunStatus::Failed);
    assert_eq!(w.arm("tok-1", &s), Completion::Completed);
    let out: RunState = serde_json::from_value(w.callback.output("tok-1").unwrap()).unwrap();
    assert_eq!(out.outcome, Some(Outcome::Failed));
    assert!(block_on(w.waits.all()).unwrap().is_empty());
}

#[test]
fn arm_refuses_a_state_without_instance_or_token() {
    let w = World::new();
    let mut s = w.launched("run-1");
    let e = block_on(arm_step(&w.c(), String::new(), s.clone())).unwrap_err();
    assert!(e.to_string().contains("token"), "{e}");
    s.instance = None;
    let e = block_on(arm_step(&w.c(), "t".into(), s)).unwrap_err();
    assert!(e.to_string().contains("state.instance"), "{e}");
    assert!(block_on(w.waits.all()).unwrap().is_empty(), "nothing stored");
}

#[test]
fn a_reclaimed_instance_ends_the_wait_as_interrupted_and_a_warning_only_marks_the_pool() {
    let w = World::new();
    let s = w.launched("run-1");
    w.arm("tok-1", &s);
    let id = w.instance(&s);
    let warn = w.event(&JobEvent::InterruptionWarning {
        instance_id: id.clone(),
    });
    assert_eq!(warn.action, EventAction::PoolMarked);
    assert_eq!(block_on(w.capacity.unavailable(T0)).unwrap().len(), 1);
    assert!(
        w.callback.output("tok-1").is_none(),
        "the job may still finish in its two minutes"
    );
    w.launcher
        .set_state(&id, InstanceState::Terminated, Some("Server.SpotInstanceTermination"));
    let r = w.event(&JobEvent::InstanceChanged {
        instance_id: id,
        state: "terminated".into(),
    });
    assert_eq!(completion(&r), Completion::Completed);
    let out: RunState = serde_json::from_value(w.callback.output("tok-1").unwrap()).unwrap();
    assert_eq!(out.check.as_ref().unwrap().status, RunStatus::Interrupted);
    assert_eq!(out.outcome, Some(Outcome::Retry));
    assert_eq!(out.excluded.len(), 1);
}

#[test]
fn events_for_strangers_are_ignored() {
    let w = World::new();
    let r = w.event(&JobEvent::InstanceChanged {
        instance_id: InstanceId("i-unknown".into()),
        state: "terminated".into(),
    });
    assert!(matches!(r.action, EventAction::Ignored { .. }), "{r:?}");
    let r = w.event(&JobEvent::ExitMarker {
        key: "samples/job=etl/dt=2026-11-26/run=x/part-1.jsonl.gz".into(),
    });
    assert!(matches!(r.action, EventAction::Ignored { .. }), "{r:?}");
}

#[test]
fn marker_keys_map_back_to_their_attempts() {
    assert_eq!(
        attempts_of_marker_key("runs/job=etl/dt=2026-11-26/run-1.exit"),
        vec![("run-1".to_string(), 1)]
    );
    assert_eq!(
        attempts_of_marker_key("runs/job=etl/dt=2026-11-26/run-1-a3.exit"),
        vec![("run-1-a3".to_string(), 1), ("run-1".to_string(), 3)]
    );
    assert!(attempts_of_marker_key("runs/job=etl/dt=2026-11-26/run-1.json").is_empty());
    assert!(attempts_of_marker_key("records/dt=2026-11-26/run-1.exit").is_empty());
    // `-a1` and `-a02` are never what attempt_run_id writes.
    assert_eq!(
        attempts_of_marker_key("runs/job=e/dt=d/x-a1.exit"),
        vec![("x-a1".to_string(), 1)]
    );
    assert_eq!(
        attempts_of_marker_key("runs/job=e/dt=d/x-a02.exit"),
        vec![("x-a02".to_string(), 1)]
    );
    for (run, n) in [("r", 2), ("e2e-interrupt", 2), ("x-a", 7)] {
        let key = format!("runs/job=j/dt=d/{}.exit", attempt_run_id(run, n));
        assert!(attempts_of_marker_key(&key).contains(&(run.to_string(), n)), "{key}");
    }
}

#[test]
fn the_marker_of_a_second_attempt_completes_that_attempt() {
    let w = World::new();
    let mut s = w.launched("run-1");
    s.attempt = 2;
    s.instance = None;
    let settings = LaunchSettings::new(vec!["use1-az1".into()]);
    let s = block_on(launch_step(&w.launcher, &w.capacity, &w.runs, &w.clock, &settings, s)).unwrap();
    w.arm("tok-2", &s);
    w.exits(&s, RunStatus::Succeeded);
    let r = w.event(&JobEvent::ExitMarker { key: w.marker_key(&s) });
    assert_eq!((r.attempt, completion(&r)), (Some(2), Completion::Completed));
}

#[test]
fn the_sweep_heartbeats_live_waits_and_finishes_vanished_ones_within_one_period() {
    let w = World::new();
    let live = w.launched("run-live");
    let gone = w.launched("run-gone");
    w.arm("tok-live", &live);
    w.arm("tok-gone", &gone);
    // The instance vanished and no event said so.
    w.launcher.instances.lock().unwrap().remove(&w.instance(&gone));
    w.clock.advance(SWEEP_MS);
    let r = block_on(sweep_step(&w.c(), SWEEP_MS)).unwrap();
    assert_eq!(r.waiting, 2);
    assert_eq!(r.heartbeats, 1);
    assert_eq!(r.completed, vec![("run-gone".to_string(), 1)]);
    assert!(r.orphaned.is_empty() && r.failed.is_empty(), "{r:?}");
    let out: RunState = serde_json::from_value(w.callback.output("tok-gone").unwrap()).unwrap();
    assert_eq!(out.check.as_ref().unwrap().status, RunStatus::Lost);
    assert_eq!(*w.callback.heartbeats.lock().unwrap(), vec!["tok-live".to_string()]);
    assert!(w.callback.output("tok-live").is_none());
}

#[test]
fn the_sweep_closes_an_attempt_whose_execution_no_longer_waits() {
    let w = World::new();
    let s = w.launched("run-1");
    w.arm("tok-1", &s);
    w.callback.close("tok-1"); // stopped, and its status event was lost
    w.clock.advance(SWEEP_MS);
    let r = block_on(sweep_step(&w.c(), SWEEP_MS)).unwrap();
    assert_eq!(r.orphaned, vec![("run-1".to_string(), 1)]);
    assert!(w.launcher.live().is_empty(), "instance terminated");
    let row = block_on(w.runs.get("run-1", 1)).unwrap().unwrap();
    assert_eq!(row.status, RunStatus::Cancelled);
    assert!(row.cost_usd > 0.0);
    assert!(block_on(w.waits.all()).unwrap().is_empty());
}

#[test]
fn the_sweep_leaves_an_attempt_that_was_re_armed_meanwhile() {
    let w = World::new();
    let s = w.launched("run-1");
    w.arm("tok-old", &s);
    let stale = block_on(w.waits.all()).unwrap();
    // The old token timed out (heartbeat), Check found it running, Await re-armed it.
    w.callback.close("tok-old");
    w.arm("tok-new", &s);
    // A sweep that had listed the old wait must not call the attempt an orphan.
    struct Stale<'a>(&'a InMemoryWaitStore, Vec<crate::ports::Waiting>);
    #[async_trait::async_trait]
    impl WaitStore for Stale<'_> {
        async fn arm(&self, w: &crate::ports::Waiting) -> Result<(), StoreError> {
            self.0.arm(w).await
        }
        async fn get(&self, r: &str, a: u32) -> Result<Option<crate::ports::Waiting>, StoreError> {
            self.0.get(r, a).await
        }
        async fn of_run(&self, r: &str) -> Result<Vec<crate::ports::Waiting>, StoreError> {
            self.0.of_run(r).await
        }
        async fn all(&self) -> Result<Vec<crate::ports::Waiting>, StoreError> {
            Ok(self.1.clone())
        }
        async fn disarm(&self, r: &str, a: u32, t: &str) -> Result<bool, StoreError> {
            self.0.disarm(r, a, t).await
        }
    }
    let waits = Stale(&w.waits, stale);
    let c = Completer { waits: &waits, ..w.c() };
    let r = block_on(sweep_step(&c, SWEEP_MS)).unwrap();
    assert!(r.orphaned.is_empty(), "{r:?}");
    assert_eq!(w.launcher.live().len(), 1);
    assert_eq!(block_on(w.waits.get("run-1", 1)).unwrap().unwrap().token, "tok-new");
}

#[test]
fn the_sweep_probes_for_a_marker_hourly_when_the_instance_lives_on() {
    let w = World::new();
    let s = w.launched("run-1");
    w.arm("tok-1", &s);
    w.exits(&s, RunStatus::Succeeded); // but the instance did not shut down
    w.clock.advance(SWEEP_MS);
    let r = block_on(sweep_step(&w.c(), SWEEP_MS)).unwrap();
    assert!(r.completed.is_empty(), "no S3 read on every sweep: {r:?}");
    w.clock.advance(MARKER_PROBE_EVERY_MS - SWEEP_MS);
    let r = block_on(sweep_step(&w.c(), SWEEP_MS)).unwrap();
    assert_eq!(r.completed, vec![("run-1".to_string(), 1)]);
    // Between probes each wait is probed in exactly one sweep per hour.
    let hits = (0..24)
        .filter(|k| probe_due(T0, T0 + MARKER_PROBE_EVERY_MS + k * SWEEP_MS, SWEEP_MS))
        .count();
    assert_eq!(hits, 2);
}

#[test]
fn a_stopped_execution_terminates_its_instance_and_closes_its_row() {
    let w = World::new();
    let s = w.launched("run-1");
    w.arm("tok-1", &s);
    w.clock.advance(90_000);
    w.callback.close("tok-1");
    let r = w.event(&JobEvent::ExecutionEnded {
        run_id: "run-1".into(),
        status: "ABORTED".into(),
    });
    assert_eq!(r.action, EventAction::Closed { attempts: vec![1] });
    assert!(w.launcher.live().is_empty());
    let row = block_on(w.runs.get("run-1", 1)).unwrap().unwrap();
    assert_eq!(row.status, RunStatus::Cancelled);
    let want = crate::cost::billed_cost(0.03, 90.0);
    assert!((row.cost_usd - want).abs() < 1e-12, "{} vs {want}", row.cost_usd);
    // Delivered again: nothing left to do, nothing changed.
    let again = w.event(&JobEvent::ExecutionEnded {
        run_id: "run-1".into(),
        status: "ABORTED".into(),
    });
    assert_eq!(again.action, EventAction::Closed { attempts: vec![] });
    assert_eq!(block_on(w.runs.get("run-1", 1)).unwrap().unwrap(), row);
}

#[test]
fn a_failed_execution_stopped_outside_the_wait_is_closed_by_its_tags() {
    let w = World::new();
    let _s = w.launched("run-1"); // launched, never armed (stopped during launch)
    let r = w.event(&JobEvent::ExecutionEnded {
        run_id: "run-1".into(),
        status: "FAILED".into(),
    });
    assert_eq!(r.action, EventAction::Closed { attempts: vec![1] });
    assert!(w.launcher.live().is_empty());
    assert_eq!(
        block_on(w.runs.get("run-1", 1)).unwrap().unwrap().status,
        RunStatus::Failed
    );
}

#[test]
fn the_reaper_spares_waiting_attempts_and_closes_the_rows_of_orphans_it_kills() {
    let w = World::new();
    let waited = w.launched("run-waited");
    let orphan = w.launched("run-orphan");
    w.arm("tok-w", &waited);
    let policy = ReapPolicy {
        launch_grace_ms: 60_000,
        stale_heartbeat_ms: 60_000,
    };
    w.clock.advance(3_600_000); // both rows' heartbeats are an hour old
    let waiting: HashSet<(String, u32)> = [("run-waited".to_string(), 1)].into();
    let r = block_on(reap_step(&w.launcher, &w.runs, &w.clock, &policy, &waiting)).unwrap();
    let reaped: Vec<_> = r.terminated.iter().map(|x| x.run_id.clone().unwrap()).collect();
    assert_eq!(reaped, vec!["run-orphan".to_string()]);
    let row = block_on(w.runs.get("run-orphan", 1)).unwrap().unwrap();
    assert_eq!(row.status, RunStatus::Cancelled);
    assert!(row.cost_usd > 0.0);
    assert_eq!(w.launcher.live()[0].instance_id, w.instance(&waited));
    let _ = orphan;
}

#[test]
fn a_fourteen_day_wait_costs_one_heartbeat_per_sweep_and_a_probe_per_hour() {
    // The control plane's work for a 14-day attempt, counted: no transitions at all while it
    // runs (the execution sits in one Await task), one heartbeat per sweep, one S3 probe an hour.
    let w = World::new();
    let spec = serde_json::json!({"name": "etl", "command": ["true"], "timeout_s": 14 * 86_400});
    let s = sized_state(spec, "run-long", vec![candidate("m7i.large", 0.03)], T0);
    let settings = LaunchSettings::new(vec!["use1-az1".into()]);
    let s = block_on(launch_step(&w.launcher, &w.capacity, &w.runs, &w.clock, &settings, s)).unwrap();
    w.arm("tok", &s);
    let sweeps = 14 * 86_400_000 / SWEEP_MS;
    let reads_before = w.objects.0.lock().unwrap().len();
    for _ in 0..sweeps {
        w.clock.advance(SWEEP_MS);
        let r = block_on(sweep_step(&w.c(), SWEEP_MS)).unwrap();
        assert!(r.completed.is_empty() && r.failed.is_empty(), "{r:?}");
    }
    assert_eq!(w.callback.heartbeats.lock().unwrap().len() as i64, sweeps);
    assert_eq!(*w.callback.sends.lock().unwrap(), 0);
    assert_eq!(w.objects.0.lock().unwrap().len(), reads_before);
    w.exits(&s, RunStatus::Succeeded);
    let r = w.event(&JobEvent::ExitMarker { key: w.marker_key(&s) });
    assert_eq!(completion(&r), Completion::Completed);
}
