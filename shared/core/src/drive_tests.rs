//! The driver over the in-memory fakes: the flows the state machine takes, with a scripted
//! "agent" that acts on the instance in flight whenever the driver pauses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::ids::Pool;
use crate::pipeline::attempt_run_id;
use crate::ports::{InstanceState, RunStore};
use crate::spec::Market;
use crate::summary::{ExitInfo, RunStatus, RunSummary};
use crate::testkit::*;
use std::collections::VecDeque;
use std::sync::Mutex;

const T0: i64 = 1_795_651_200_000;

/// What the scripted agent does at one pause of the driver.
#[derive(Debug, Clone, Copy)]
enum Act {
    /// Nothing yet (the job is still running).
    Wait,
    /// The job ends: summary and exit marker written, as the agent does.
    Exit(RunStatus, i32),
    /// EC2 reclaims the spot instance (no marker).
    Reclaim,
}

struct World {
    launcher: FakeLauncher,
    objects: InMemoryObjectStore,
    profiles: InMemoryProfileStore,
    runs: InMemoryRunStore,
    capacity: InMemoryCapacityStore,
    clock: FakeClock,
    script: Mutex<VecDeque<Act>>,
    pauses: Mutex<Vec<u64>>,
}

#[async_trait]
impl Pause for World {
    async fn pause(&self, ms: u64) {
        self.pauses.lock().unwrap().push(ms);
        self.clock.advance(ms as i64);
        self.launcher
            .now_ms
            .store(self.clock.now_ms(), std::sync::atomic::Ordering::SeqCst);
        // The script plays on the instance in flight; a pause before any launch (a backoff)
        // leaves it for later.
        let Some(inst) = self.launcher.live().into_iter().max_by_key(|i| i.instance_id.0.clone()) else {
            return;
        };
        let act = self.script.lock().unwrap().pop_front().unwrap_or(Act::Wait);
        match act {
            Act::Wait => {}
            Act::Reclaim => self.launcher.set_state(
                &inst.instance_id,
                InstanceState::Terminated,
                Some("Server.SpotInstanceTermination: Spot instance termination"),
            ),
            Act::Exit(status, code) => {
                let started = inst.launched_at_ms.unwrap();
                let summary = RunSummary {
                    job: inst.job.clone().unwrap(),
                    run_id: attempt_run_id(inst.run_id.as_deref().unwrap(), inst.attempt.unwrap()),
                    started_at_ms: started,
                    ended_at_ms: self.clock.now_ms(),
                    duration_s: 42.0,
                    mem_max_bytes: 1 << 30,
                    exit: ExitInfo::code(code),
                    status,
                    ..Default::default()
                };
                agent_exits(&self.objects, &summary, started);
            }
        }
    }
}

impl World {
    fn new(launcher: FakeLauncher, script: &[Act]) -> Self {
        launcher.now_ms.store(T0, std::sync::atomic::Ordering::SeqCst);
        World {
            launcher,
            objects: Default::default(),
            profiles: Default::default(),
            runs: Default::default(),
            capacity: Default::default(),
            clock: FakeClock::at(T0),
            script: Mutex::new(script.iter().copied().collect()),
            pauses: Mutex::new(Vec::new()),
        }
    }
    fn ports(&self) -> DrivePorts<'_> {
        DrivePorts {
            profiles: &self.profiles,
            runs: &self.runs,
            objects: &self.objects,
            capacity: &self.capacity,
            launcher: &self.launcher,
            clock: &self.clock,
            pause: self,
        }
    }
    fn drive_with(&self, opts: &DriveOptions) -> Result<RunState, Box<DriveFailure>> {
        block_on(drive(self.ports(), ranked, spec(), Some("run-1".into()), opts))
    }
    fn drive(&self) -> Result<RunState, Box<DriveFailure>> {
        self.drive_with(&options())
    }
}

fn options() -> DriveOptions {
    DriveOptions {
        poll_ms: 1_000,
        launch: LaunchSettings::new(vec!["use1-az1".into()]),
        ..Default::default()
    }
}

fn ranked(_: &Requirement, _: &JobSpec) -> Vec<Candidate> {
    vec![candidate("m7i.large", 0.03), candidate("c7i.large", 0.035)]
}

fn spec() -> serde_json::Value {
    serde_json::json!({"name": "etl", "command": ["python3", "-c", "print(1)"], "market": "spot", "timeout_s": 600})
}

fn pool(t: &str) -> Pool {
    Pool {
        instance_type: t.into(),
        az: "use1-az1".into(),
        market: Market::Spot,
    }
}

#[test]
fn a_run_is_sized_launched_checked_until_done_terminated_and_recorded() {
    let w = World::new(
        FakeLauncher::new(),
        &[Act::Wait, Act::Wait, Act::Exit(RunStatus::Succeeded, 0)],
    );
    let s = w.drive().unwrap();
    assert_eq!(s.outcome, Some(Outcome::Succeeded));
    assert_eq!(s.history.len(), 1);
    // Three pauses of poll_ms between checks, then the check that saw the marker ended it.
    assert_eq!(*w.pauses.lock().unwrap(), vec![1_000, 1_000, 1_000]);
    assert!(w.launcher.live().is_empty(), "the instance is terminated");
    let rec = block_on(w.runs.get("run-1", 1)).unwrap().unwrap();
    assert_eq!(rec.status, RunStatus::Succeeded);
    // Billed like the record step bills: launch → termination, 60 s minimum.
    assert!(
        (rec.cost_usd - crate::cost::billed_cost(0.03, 3.0)).abs() < 1e-12,
        "{}",
        rec.cost_usd
    );
    assert_eq!(rec.placed.unwrap().instance_type, "m7i.large");
    let profile = block_on(ProfileStore::get(&w.profiles, "etl")).unwrap().unwrap();
    assert_eq!(profile.runs, 1, "the profile learned from the run");
}

#[test]
fn an_oom_kill_is_retried_once_with_more_memory_and_both_attempts_are_recorded() {
    let w = World::new(
        FakeLauncher::new(),
        &[Act::Exit(RunStatus::OomKilled, 137), Act::Exit(RunStatus::Succeeded, 0)],
    );
    let s = w.drive().unwrap();
    assert_eq!(s.outcome, Some(Outcome::Succeeded));
    assert_eq!(s.attempt, 2);
    let statuses: Vec<_> = s.history.iter().map(|h| h.status).collect();
    assert_eq!(statuses, vec![RunStatus::OomKilled, RunStatus::Succeeded]);
    let first = block_on(w.runs.get("run-1", 1)).unwrap().unwrap();
    let second = block_on(w.runs.get("run-1", 2)).unwrap().unwrap();
    assert!(
        second.requested_memory_bytes as f64 >= first.requested_memory_bytes as f64 * 1.5,
        "{} after {}",
        second.requested_memory_bytes,
        first.requested_memory_bytes
    );
}

#[test]
fn a_second_oom_kill_fails_the_run() {
    let w = World::new(
        FakeLauncher::new(),
        &[
            Act::Exit(RunStatus::OomKilled, 137),
            Act::Exit(RunStatus::OomKilled, 137),
        ],
    );
    let s = w.drive().unwrap();
    assert_eq!(s.outcome, Some(Outcome::Failed));
    assert_eq!(s.history.len(), 2);
}

#[test]
fn an_interrupted_attempt_is_retried_on_another_pool() {
    let w = World::new(FakeLauncher::new(), &[Act::Reclaim, Act::Exit(RunStatus::Succeeded, 0)]);
    let s = w.drive().unwrap();
    assert_eq!(s.outcome, Some(Outcome::Succeeded));
    let pools: Vec<_> = s
        .history
        .iter()
        .map(|h| h.pool.clone().unwrap().instance_type)
        .collect();
    assert_eq!(pools, vec!["m7i.large", "c7i.large"]);
    assert_eq!(s.history[0].status, RunStatus::Interrupted);
    assert!(s.history.iter().all(|h| h.cost_usd > 0.0), "both attempts costed");
}

#[test]
fn throttled_launches_are_retried_in_place_with_backoff() {
    let launcher = FakeLauncher::new();
    *launcher.throttle_next.lock().unwrap() = 2;
    let w = World::new(launcher, &[Act::Exit(RunStatus::Succeeded, 0)]);
    let s = w.drive().unwrap();
    assert_eq!(s.outcome, Some(Outcome::Succeeded));
    // Two backoffs (2 s, 4 s) before the launch went through, then one poll.
    assert_eq!(*w.pauses.lock().unwrap(), vec![2_000, 4_000, 1_000]);
    assert_eq!(w.launcher.instances.lock().unwrap().len(), 1, "one instance");
}

#[test]
fn no_capacity_anywhere_fails_with_the_pools_tried_and_leaves_nothing_running() {
    let launcher = FakeLauncher::new()
        .insufficient(pool("m7i.large"), u32::MAX)
        .insufficient(pool("c7i.large"), u32::MAX);
    let w = World::new(launcher, &[]);
    let err = w.drive().unwrap_err();
    assert_eq!(err.error.name(), crate::error_names::CAPACITY_EXHAUSTED);
    assert!(err.error.to_string().contains("m7i.large"), "{}", err.error);
    assert!(w.launcher.live().is_empty());
    assert!(
        block_on(w.runs.list(None, 10)).unwrap().is_empty(),
        "nothing launched, nothing recorded"
    );
}

#[test]
fn an_invalid_spec_fails_before_anything_starts() {
    let w = World::new(FakeLauncher::new(), &[]);
    let bad = serde_json::json!({"name": "etl", "command": []});
    let err = block_on(drive(w.ports(), ranked, bad, None, &options())).unwrap_err();
    assert_eq!(err.error.name(), crate::error_names::INVALID_JOB_SPEC);
    assert!(err.state.is_none());
    assert!(w.launcher.calls.lock().unwrap().is_empty());
}

#[test]
fn a_stop_request_starts_no_further_attempt() {
    let stop = Arc::new(AtomicBool::new(true));
    let w = World::new(FakeLauncher::new(), &[Act::Reclaim, Act::Exit(RunStatus::Succeeded, 0)]);
    let opts = DriveOptions {
        stop: Some(stop),
        ..options()
    };
    let s = w.drive_with(&opts).unwrap();
    assert_eq!(s.outcome, Some(Outcome::Retry), "the retry it would have made");
    assert_eq!(s.history.len(), 1);
    assert_eq!(w.launcher.instances.lock().unwrap().len(), 1);
    assert!(w.launcher.live().is_empty());
}
