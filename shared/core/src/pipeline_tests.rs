//! Tests of the pipeline steps with the in-memory fakes: fallback order, idempotent launch,
//! checks, retries, costs, the reaper.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::ports::InstanceState;
use crate::spec::Market;
use crate::summary::ExitInfo;
use crate::testkit::*;

const T0: i64 = 1_795_651_200_000; // 2026-11-26T00:00:00Z

fn cand(t: &str, spot: f64) -> Candidate {
    Candidate {
        instance_type: t.into(),
        region: "us-east-1".into(),
        az: None,
        market: Market::Spot,
        spot_per_hour: Some(spot),
        on_demand_per_hour: Some(spot * 4.0),
        price_per_hour: spot,
        vcpu: 2,
        memory_bytes: 8 << 30,
        gpu: 0,
        gpu_memory_bytes: 0,
        score: 1.0,
        cost_per_perf: spot,
        est_duration_s: None,
        est_cost_usd: None,
        interruption_bucket: None,
        interruption_penalty_usd: None,
        rank_cost: spot,
        oom_risk: 0.0,
        oom_cost_usd: None,
        expected_slowdown: 1.0,
        spot_source: Default::default(),
        score_source: Default::default(),
        arch: crate::spec::Arch::X86_64,
        machine_image: Default::default(),
        root_volume_gib: 0,
        storage_per_hour: 0.0,
        price_source: Default::default(),
        interruption_source: Default::default(),
        interruption_rate_per_h: None,
    }
}

fn ranked(_: &Requirement, _: &JobSpec) -> Vec<Candidate> {
    vec![
        cand("m7i.large", 0.03),
        cand("c7i.large", 0.035),
        cand("r7i.large", 0.04),
    ]
}

fn spot(t: &str, az: &str) -> Pool {
    Pool {
        instance_type: t.into(),
        az: az.into(),
        market: Market::Spot,
    }
}

struct World {
    launcher: FakeLauncher,
    objects: InMemoryObjectStore,
    profiles: InMemoryProfileStore,
    runs: InMemoryRunStore,
    capacity: InMemoryCapacityStore,
    clock: FakeClock,
    settings: LaunchSettings,
}

impl World {
    fn new(launcher: FakeLauncher) -> Self {
        launcher.now_ms.store(T0, std::sync::atomic::Ordering::SeqCst);
        World {
            launcher,
            objects: Default::default(),
            profiles: Default::default(),
            runs: Default::default(),
            capacity: Default::default(),
            clock: FakeClock::at(T0),
            settings: LaunchSettings::new(vec!["use1-az1".into()]),
        }
    }
    fn size(&self, spec: serde_json::Value) -> RunState {
        let input = SizeInput {
            spec,
            execution: Some("run-1".into()),
            previous: None,
        };
        block_on(size_step(&self.profiles, ranked, input, self.clock.now_ms())).unwrap()
    }
    fn launch(&self, s: RunState) -> Result<RunState, PipelineError> {
        block_on(launch_step(
            &self.launcher,
            &self.capacity,
            &self.runs,
            &self.clock,
            &self.settings,
            s,
        ))
    }
    fn check(&self, s: RunState) -> RunState {
        block_on(check_step(
            &self.launcher,
            &self.objects,
            &self.capacity,
            &self.clock,
            s,
        ))
        .unwrap()
    }
    fn finish(&self, s: RunState) -> RunState {
        let s = block_on(terminate_step(&self.launcher, &self.clock, s)).unwrap();
        block_on(record_step(&self.profiles, &self.runs, &self.objects, &self.clock, s)).unwrap()
    }
    /// What the agent writes when the job ends.
    fn agent_exits(&self, s: &RunState, status: RunStatus, code: i32) {
        let inst = s.instance.as_ref().unwrap();
        let summary = RunSummary {
            job: s.job.clone(),
            run_id: inst.agent_run_id.clone(),
            started_at_ms: inst.launched_at_ms,
            ended_at_ms: self.clock.now_ms(),
            duration_s: 60.0,
            samples: 12,
            mem_max_bytes: 1 << 30,
            exit: ExitInfo::code(code),
            status,
            ..Default::default()
        };
        agent_exits(&self.objects, &summary, inst.launched_at_ms);
    }
}

fn spec() -> serde_json::Value {
    serde_json::json!({"name": "etl", "command": ["python3", "-c", "print(1)"], "market": "spot", "timeout_s": 600})
}

#[test]
fn fallback_walks_ranked_pools_and_marks_each_failure() {
    // GIVEN the two best pools without capacity
    let w = World::new(
        FakeLauncher::new()
            .insufficient(spot("m7i.large", "use1-az1"), u32::MAX)
            .insufficient(spot("c7i.large", "use1-az1"), u32::MAX),
    );
    // WHEN launched
    let s = w.launch(w.size(spec())).unwrap();
    // THEN the third is used, the first two were tried in rank order and are marked for all jobs
    assert_eq!(
        w.launcher.tried(),
        [
            "m7i.large/use1-az1/spot",
            "c7i.large/use1-az1/spot",
            "r7i.large/use1-az1/spot"
        ]
    );
    let inst = s.instance.as_ref().unwrap();
    assert_eq!(inst.pool, spot("r7i.large", "use1-az1"));
    assert_eq!(inst.tried.len(), 2);
    assert_eq!(inst.price_per_hour, 0.04);
    let marked = block_on(w.capacity.unavailable(T0)).unwrap();
    assert_eq!(marked.len(), 2);
    // AND the attempt is in the run store as running, with a heartbeat
    let row = block_on(w.runs.get("run-1", 1)).unwrap().unwrap();
    assert_eq!(row.status, RunStatus::Running);
    assert_eq!(row.heartbeat_ms, Some(T0));
}

#[test]
fn the_launch_boots_the_chosen_image_and_disk_and_costs_the_volume() {
    // GIVEN candidates carrying size-job's image and volume choice (an ECS image, 100 GiB)
    let w = World::new(FakeLauncher::new());
    let mut s = w.size(spec());
    for c in &mut s.candidates {
        c.machine_image = crate::machine_image::MachineImage::EcsAl2023;
        c.arch = crate::spec::Arch::Arm64;
        c.root_volume_gib = 100;
        c.storage_per_hour = crate::cost::ebs_per_hour(100);
    }
    // WHEN launched
    let s = w.launch(s).unwrap();
    // THEN RunInstances gets that image by its public parameter, and the volume
    let calls = w.launcher.calls.lock().unwrap().clone();
    assert_eq!(
        calls[0].image_id.as_deref(),
        Some("resolve:ssm:/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id")
    );
    assert_eq!(calls[0].root_volume_gib, Some(100));
    // AND the attempt is costed with its volume: an hour of both
    let inst = s.instance.as_ref().unwrap();
    assert!((inst.storage_per_hour - crate::cost::ebs_per_hour(100)).abs() < 1e-12);
    let cost = attempt_cost(&s, inst.launched_at_ms + 3_600_000);
    assert!(
        (cost - (inst.price_per_hour + crate::cost::ebs_per_hour(100))).abs() < 1e-9,
        "{cost}"
    );
    let row = block_on(w.runs.get("run-1", 1)).unwrap().unwrap();
    assert!((row.placed.unwrap().storage_per_hour - crate::cost::ebs_per_hour(100)).abs() < 1e-12);
    // GIVEN a state from before images were chosen (no volume) THEN the launch template's
    let w = World::new(FakeLauncher::new());
    w.launch(w.size(spec())).unwrap();
    let calls = w.launcher.calls.lock().unwrap().clone();
    assert_eq!((calls[0].image_id.as_deref(), calls[0].root_volume_gib), (None, None));
}

#[test]
fn marked_pools_are_skipped_by_the_next_job_until_the_mark_expires() {
    let w = World::new(FakeLauncher::new().insufficient(spot("m7i.large", "use1-az1"), 1));
    w.launch(w.size(spec())).unwrap();
    // a second job within the TTL skips m7i without asking EC2
    let mut s2 = w.size(spec());
    s2.run_id = "run-2".into();
    w.launch(s2.clone()).unwrap();
    assert_eq!(&w.launcher.tried()[2..], ["c7i.large/use1-az1/spot"]);
    // after the TTL m7i is tried again
    w.clock.advance(CAPACITY_MARK_MS + 1);
    s2.run_id = "run-3".into();
    w.launch(s2).unwrap();
    assert_eq!(w.launcher.tried().last().unwrap(), "m7i.large/use1-az1/spot");
}

#[test]
fn every_pool_full_is_capacity_exhausted_naming_them() {
    let w = World::new(
        FakeLauncher::new()
            .insufficient(spot("m7i.large", "use1-az1"), u32::MAX)
            .insufficient(spot("c7i.large", "use1-az1"), u32::MAX)
            .insufficient(spot("r7i.large", "use1-az1"), u32::MAX),
    );
    let err = w.launch(w.size(spec())).unwrap_err();
    assert_eq!(err.name(), "CapacityExhausted");
    assert!(
        err.to_string()
            .contains("r7i.large/use1-az1/spot (InsufficientInstanceCapacity)"),
        "{err}"
    );
    assert!(w.launcher.live().is_empty());
}

#[test]
fn spot_then_on_demand_falls_back_to_on_demand() {
    let w = World::new(
        FakeLauncher::new()
            .insufficient(spot("m7i.large", "use1-az1"), u32::MAX)
            .insufficient(spot("c7i.large", "use1-az1"), u32::MAX)
            .insufficient(spot("r7i.large", "use1-az1"), u32::MAX),
    );
    let mut sp = spec();
    sp["market"] = "spot-then-on-demand".into();
    let s = w.launch(w.size(sp)).unwrap();
    let inst = s.instance.unwrap();
    assert_eq!(inst.pool.market, Market::OnDemand);
    assert_eq!(inst.pool.instance_type, "m7i.large");
    assert!((inst.price_per_hour - 0.12).abs() < 1e-9);
}

fn unsupported(pool: &Pool) -> LaunchError {
    LaunchError::PoolRejected {
        pool: pool.clone(),
        code: "Unsupported".into(),
        message: "not supported in the requested Availability Zone".into(),
    }
}

#[test]
fn unsupported_on_the_first_two_candidates_launches_the_third_without_marks() {
    // GIVEN the two best types unsupported in the zone
    let w = World::new(
        FakeLauncher::new()
            .failing(spot("m7i.large", "use1-az1"), u32::MAX, unsupported)
            .failing(spot("c7i.large", "use1-az1"), u32::MAX, unsupported),
    );
    // WHEN launched
    let s = w.launch(w.size(spec())).unwrap();
    // THEN the third is launched, and no capacity mark is written for a rejection
    assert_eq!(s.instance.as_ref().unwrap().pool, spot("r7i.large", "use1-az1"));
    assert_eq!(w.launcher.tried().len(), 3);
    assert!(block_on(w.capacity.unavailable(T0)).unwrap().is_empty());
}

#[test]
fn spot_quota_falls_to_on_demand_at_once_without_marks() {
    // GIVEN a region-wide spot quota and a spec that allows on-demand
    let w = World::new(FakeLauncher::new().quota(Market::Spot, u32::MAX));
    let mut sp = spec();
    sp["market"] = "spot-then-on-demand".into();
    // WHEN launched
    let s = w.launch(w.size(sp)).unwrap();
    // THEN one spot call, then the best on-demand pool; no pool is marked
    assert_eq!(
        w.launcher.tried(),
        ["m7i.large/use1-az1/spot", "m7i.large/use1-az1/on-demand"]
    );
    assert_eq!(s.instance.unwrap().pool.market, Market::OnDemand);
    assert!(block_on(w.capacity.unavailable(T0)).unwrap().is_empty());
}

#[test]
fn spot_quota_without_fallback_waits_for_quota_until_the_timeout() {
    // GIVEN a spot-only job and a quota that frees after three launches
    let w = World::new(FakeLauncher::new().quota(Market::Spot, 3));
    let s = w.size(spec());
    // WHEN launched while the quota holds: one call each, WaitingForQuota, nothing marked
    for n in 1..=3 {
        let err = w.launch(s.clone()).unwrap_err();
        assert_eq!(err.name(), "WaitingForQuota", "{err}");
        assert!(err.to_string().contains("waiting for quota"), "{err}");
        assert_eq!(w.launcher.tried().len(), n);
        w.clock.advance(60_000);
    }
    assert!(block_on(w.capacity.unavailable(w.clock.now_ms())).unwrap().is_empty());
    // THEN once it frees, the best pool is launched
    let s2 = w.launch(s.clone()).unwrap();
    assert_eq!(s2.instance.unwrap().pool, spot("m7i.large", "use1-az1"));
    // AND a quota that outlasts the job's timeout ends the run
    let w = World::new(FakeLauncher::new().quota(Market::Spot, u32::MAX));
    let s = w.size(spec());
    w.clock.advance(601_000);
    let err = w.launch(s).unwrap_err();
    assert_eq!(err.name(), "QuotaExhausted", "{err}");
}

/// A launcher whose every call takes `per_call_ms` of the fake clock.
struct SlowLauncher<'a> {
    inner: &'a FakeLauncher,
    clock: &'a FakeClock,
    per_call_ms: i64,
}

#[async_trait::async_trait]
impl InstanceLauncher for SlowLauncher<'_> {
    async fn launch(&self, req: &LaunchRequest) -> Result<crate::ports::LaunchedInstance, LaunchError> {
        self.clock.advance(self.per_call_ms);
        self.inner.launch(req).await
    }
    async fn describe(&self, id: &InstanceId) -> Result<Option<InstanceInfo>, LaunchError> {
        self.inner.describe(id).await
    }
    async fn terminate(&self, id: &InstanceId) -> Result<(), LaunchError> {
        self.inner.terminate(id).await
    }
    async fn list_managed(&self) -> Result<Vec<InstanceInfo>, LaunchError> {
        self.inner.list_managed().await
    }
}

#[test]
fn a_walk_past_its_time_budget_stops_with_a_retryable_error_and_the_retry_resumes() {
    // GIVEN two full pools, each call taking 40 s, and a 60 s budget
    let w = World::new(
        FakeLauncher::new()
            .insufficient(spot("m7i.large", "use1-az1"), u32::MAX)
            .insufficient(spot("c7i.large", "use1-az1"), u32::MAX),
    );
    let slow = SlowLauncher {
        inner: &w.launcher,
        clock: &w.clock,
        per_call_ms: 40_000,
    };
    let budget = Some(std::time::Duration::from_secs(60));
    let s = w.size(spec());
    let launch = |s: RunState| {
        block_on(launch_step_within(
            &slow,
            &w.capacity,
            &w.runs,
            &w.clock,
            &w.settings,
            budget,
            s,
        ))
    };
    // WHEN the walk runs out of budget after two pools
    let err = launch(s.clone()).unwrap_err();
    assert_eq!(err.name(), "LaunchBudgetSpent", "{err}");
    assert_eq!(w.launcher.tried().len(), 2);
    assert!(w.launcher.live().is_empty());
    // THEN the retry skips the marked pools and launches the third
    let s = launch(s).unwrap();
    assert_eq!(s.instance.unwrap().pool, spot("r7i.large", "use1-az1"));
    assert_eq!(w.launcher.live().len(), 1);
}

#[test]
fn throttling_is_returned_for_the_state_machine_to_back_off() {
    let w = World::new(FakeLauncher::new());
    *w.launcher.throttle_next.lock().unwrap() = 1;
    let err = w.launch(w.size(spec())).unwrap_err();
    assert_eq!(err.name(), "Throttled");
    assert!(w.launcher.live().is_empty());
}

#[test]
fn launch_twice_with_the_same_input_starts_one_instance() {
    // GIVEN a launch that succeeded but whose Lambda response was lost
    let w = World::new(FakeLauncher::new().insufficient(spot("m7i.large", "use1-az1"), 1));
    let s = w.size(spec());
    let a = w.launch(s.clone()).unwrap();
    // WHEN the same input is launched again
    let b = w.launch(s).unwrap();
    // THEN it is the same instance, and only one runs
    assert_eq!(
        a.instance.as_ref().unwrap().instance_id,
        b.instance.as_ref().unwrap().instance_id
    );
    assert_eq!(w.launcher.live().len(), 1);
}

#[test]
fn client_token_is_stable_short_and_distinct() {
    let p = spot("m7i.large", "use1-az1");
    let t = client_token("run-1", 1, &p);
    assert_eq!(t, client_token("run-1", 1, &p));
    assert!(t.len() <= 64 && t.is_ascii());
    assert_ne!(t, client_token("run-1", 2, &p));
    assert_ne!(t, client_token("run-1", 1, &spot("m7i.large", "use1-az2")));
}

#[test]
fn a_job_runs_to_success_and_is_recorded_with_cost() {
    let w = World::new(FakeLauncher::new());
    let s = w.launch(w.size(spec())).unwrap();
    // still running: no outcome, and no write (the row stays as the launch wrote it)
    w.clock.advance(30_000);
    let s = w.check(s);
    assert_eq!(s.check.as_ref().unwrap().status, RunStatus::Running);
    assert_eq!(s.outcome, None);
    assert_eq!(
        block_on(w.runs.get("run-1", 1)).unwrap().unwrap().heartbeat_ms,
        Some(T0)
    );
    // the agent exits 0
    w.clock.advance(90_000);
    w.agent_exits(&s, RunStatus::Succeeded, 0);
    let s = w.check(s);
    assert_eq!(s.outcome, Some(Outcome::Succeeded));
    let s = w.finish(s);
    // THEN terminated, recorded, costed, profiled, and the Athena copy exists
    assert!(w.launcher.live().is_empty());
    let row = block_on(w.runs.get("run-1", 1)).unwrap().unwrap();
    assert_eq!(row.status, RunStatus::Succeeded);
    let expected = crate::cost::billed_cost(0.03, 120.0);
    assert!((row.cost_usd - expected).abs() < 1e-12, "{}", row.cost_usd);
    assert_eq!(row.placed.as_ref().unwrap().instance_type, "m7i.large");
    assert!(row.summary.is_some());
    let profile = block_on(w.profiles.get("etl")).unwrap().unwrap();
    assert_eq!(profile.runs, 1);
    let key = "records/dt=2026-11-26/run-1-1.json";
    assert!(block_on(w.objects.get(key)).unwrap().is_some());
    assert_eq!(s.history.len(), 1);
}

#[test]
fn the_specs_input_size_reaches_the_recorded_run_and_the_profile() {
    // GIVEN a spec that says its input size (input-aware sizing)
    let w = World::new(FakeLauncher::new());
    let mut sp = spec();
    sp["hints"] = serde_json::json!({"input_bytes": 5_000_000_000u64});
    let s = w.launch(w.size(sp)).unwrap();
    w.clock.advance(90_000);
    w.agent_exits(&s, RunStatus::Succeeded, 0);
    // WHEN the run is checked and recorded
    let s = w.finish(w.check(s));
    // THEN its summary carries the input size, in the run store and in the job's profile
    assert_eq!(s.outcome, Some(Outcome::Succeeded));
    let row = block_on(w.runs.get("run-1", 1)).unwrap().unwrap();
    assert_eq!(row.summary.as_ref().unwrap().input_bytes, Some(5_000_000_000));
    let profile = block_on(w.profiles.get("etl")).unwrap().unwrap();
    assert_eq!(profile.usable_runs().last().unwrap().input_bytes, Some(5_000_000_000));
}

#[test]
fn a_failing_job_fails_without_retry() {
    let w = World::new(FakeLauncher::new());
    let s = w.launch(w.size(spec())).unwrap();
    w.agent_exits(&s, RunStatus::Failed, 3);
    let s = w.check(s);
    assert_eq!(s.outcome, Some(Outcome::Failed));
}

#[test]
fn a_failed_jobs_last_lines_reach_the_record_trimmed_and_not_the_profile() {
    // GIVEN an agent whose summary keeps 64 KiB of stderr, ending in the error
    let w = World::new(FakeLauncher::new());
    let s = w.launch(w.size(spec())).unwrap();
    let inst = s.instance.as_ref().unwrap();
    let mut stderr = "x".repeat(crate::logs::SUMMARY_TAIL_BYTES - 40);
    stderr.push_str("\nTraceback: ValueError: bad row 17\n");
    let summary = RunSummary {
        job: s.job.clone(),
        run_id: inst.agent_run_id.clone(),
        started_at_ms: inst.launched_at_ms,
        exit: ExitInfo::code(1),
        status: RunStatus::Failed,
        stdout_tail: "done 99%\n".into(),
        stderr_tail: stderr,
        ..Default::default()
    };
    agent_exits(&w.objects, &summary, inst.launched_at_ms);
    // WHEN it is checked and recorded
    let s = w.finish(w.check(s));
    // THEN the record holds the last few KiB of each stream, the error line included
    let row = block_on(w.runs.get("run-1", 1)).unwrap().unwrap();
    let rs = row.summary.as_ref().unwrap();
    assert!(rs.stderr_tail.ends_with("ValueError: bad row 17\n"));
    assert_eq!(rs.stderr_tail.len(), crate::logs::RECORD_TAIL_BYTES);
    assert_eq!(rs.stdout_tail, "done 99%\n");
    assert!(
        serde_json::to_vec(&s).unwrap().len() < 64 * 1024,
        "the state stays small"
    );
    // and the profile keeps the run's numbers without its output
    let profile = block_on(w.profiles.get("etl")).unwrap().unwrap();
    assert!(profile
        .recent
        .iter()
        .all(|r| r.stderr_tail.is_empty() && r.stdout_tail.is_empty()));
}

#[test]
fn interruption_retries_on_another_pool_and_both_attempts_are_costed() {
    let w = World::new(FakeLauncher::new());
    let s = w.launch(w.size(spec())).unwrap();
    let first = s.instance.clone().unwrap();
    // GIVEN a spot interruption after 10 minutes, before the agent could write its marker
    w.clock.advance(600_000);
    w.launcher.set_state(
        &first.instance_id,
        InstanceState::Terminated,
        Some("Server.SpotInstanceTermination"),
    );
    let s = w.check(s);
    assert_eq!(s.check.as_ref().unwrap().status, RunStatus::Interrupted);
    assert_eq!(s.outcome, Some(Outcome::Retry));
    assert_eq!(s.excluded, vec![first.pool.clone()]);
    let s = w.finish(s);
    // WHEN the retry is sized and launched
    let input = SizeInput {
        spec: spec(),
        execution: Some("run-1".into()),
        previous: Some(Box::new(s)),
    };
    let s2 = block_on(size_step(&w.profiles, ranked, input, w.clock.now_ms())).unwrap();
    assert_eq!(s2.attempt, 2);
    let s2 = w.launch(s2).unwrap();
    // THEN another pool is used, under a distinct agent run id
    let second = s2.instance.clone().unwrap();
    assert_ne!(second.pool, first.pool);
    assert_eq!(second.agent_run_id, "run-1-a2");
    w.clock.advance(60_000);
    w.agent_exits(&s2, RunStatus::Succeeded, 0);
    let s2 = w.finish(w.check(s2));
    // AND both attempts are in the run store with their costs
    let a1 = block_on(w.runs.get("run-1", 1)).unwrap().unwrap();
    let a2 = block_on(w.runs.get("run-1", 2)).unwrap().unwrap();
    assert_eq!(a1.status, RunStatus::Interrupted);
    assert!((a1.cost_usd - crate::cost::billed_cost(0.03, 600.0)).abs() < 1e-12);
    assert_eq!(a2.status, RunStatus::Succeeded);
    assert!(a2.cost_usd > 0.0);
    assert_eq!(s2.history.len(), 2);
    assert!(w.launcher.live().is_empty());
}

#[test]
fn interruptions_beyond_the_policy_exhaust_retries() {
    assert_eq!(decide(RunStatus::Interrupted, 1, 3, 0), Outcome::Retry);
    assert_eq!(decide(RunStatus::Lost, 3, 3, 0), Outcome::RetriesExhausted);
    assert_eq!(decide(RunStatus::OomKilled, 1, 1, 0), Outcome::Retry);
    assert_eq!(decide(RunStatus::OomKilled, 2, 3, 1), Outcome::Failed);
    assert_eq!(decide(RunStatus::TimedOut, 1, 3, 0), Outcome::TimedOut);
}

#[test]
fn oom_kill_retries_once_with_more_memory() {
    let w = World::new(FakeLauncher::new());
    let s = w.launch(w.size(spec())).unwrap();
    let mem1 = s.requirement.memory_bytes;
    w.agent_exits(&s, RunStatus::OomKilled, 137);
    let s = w.finish(w.check(s));
    assert_eq!(s.outcome, Some(Outcome::Retry));
    let input = SizeInput {
        spec: spec(),
        execution: None,
        previous: Some(Box::new(s)),
    };
    let s2 = block_on(size_step(&w.profiles, ranked, input, w.clock.now_ms())).unwrap();
    assert!(
        s2.requirement.memory_bytes >= (mem1 as f64 * 1.5) as u64,
        "{} vs {mem1}",
        s2.requirement.memory_bytes
    );
    // … and at least ×1.5 the memory of the instance it was killed on (8 GiB here), which
    // ranking may have bought above the requirement's floor
    assert!(
        s2.requirement.memory_bytes >= 12 << 30,
        "{}",
        s2.requirement.memory_bytes
    );
    assert_eq!(s2.oom_retries, 1);
    // a second OOM fails the run
    let s2 = w.launch(s2).unwrap();
    w.agent_exits(&s2, RunStatus::OomKilled, 137);
    assert_eq!(w.check(s2).outcome, Some(Outcome::Failed));
}

#[test]
fn past_the_deadline_is_timed_out() {
    let w = World::new(FakeLauncher::new());
    let s = w.launch(w.size(spec())).unwrap();
    w.clock.advance(600_000 + BOOT_GRACE_MS + 1);
    let s = w.check(s);
    assert_eq!(s.outcome, Some(Outcome::TimedOut));
}

#[test]
fn a_vanished_instance_is_lost() {
    let w = World::new(FakeLauncher::new());
    let mut s = w.launch(w.size(spec())).unwrap();
    s.instance.as_mut().unwrap().instance_id = InstanceId("i-gone".into());
    let s = w.check(s);
    assert_eq!(s.check.unwrap().status, RunStatus::Lost);
}

#[test]
fn exit_marker_on_the_next_day_is_found() {
    // GIVEN a launch at 23:59 and an agent that started after midnight
    let w = World::new(FakeLauncher::new());
    w.clock.advance(-60_000);
    w.launcher
        .now_ms
        .store(T0 - 60_000, std::sync::atomic::Ordering::SeqCst);
    let s = w.launch(w.size(spec())).unwrap();
    w.clock.advance(120_000);
    let inst = s.instance.clone().unwrap();
    let summary = RunSummary {
        job: "etl".into(),
        run_id: inst.agent_run_id.clone(),
        status: RunStatus::Succeeded,
        ..Default::default()
    };
    agent_exits(&w.objects, &summary, T0 + 1000);
    assert_eq!(w.check(s).outcome, Some(Outcome::Succeeded));
}

#[test]
fn terminate_and_record_without_an_instance_do_nothing() {
    let w = World::new(FakeLauncher::new());
    let s = w.size(spec());
    let s = w.finish(s);
    assert!(s.history.is_empty());
    assert!(block_on(w.runs.get("run-1", 1)).unwrap().is_none());
}

#[test]
fn invalid_spec_names_the_field() {
    let w = World::new(FakeLauncher::new());
    let input = SizeInput {
        spec: serde_json::json!({"name": "Bad Name", "command": []}),
        execution: None,
        previous: None,
    };
    let err = block_on(size_step(&w.profiles, ranked, input, T0)).unwrap_err();
    assert_eq!(err.name(), "InvalidJobSpec");
    assert!(err.to_string().contains("name"), "{err}");
    let none = |_: &Requirement, _: &JobSpec| Vec::new();
    let input = SizeInput {
        spec: spec(),
        execution: None,
        previous: None,
    };
    let err = block_on(size_step(&w.profiles, none, input, T0)).unwrap_err();
    assert_eq!(err.name(), "NoCandidates");
}

#[test]
fn size_step_refuses_a_spec_no_catalog_entry_can_take_before_anything_starts() {
    // GIVEN a spec that keeps every rule but names a family no region has
    let w = World::new(FakeLauncher::new());
    let input = SizeInput {
        spec: serde_json::json!({"name": "etl", "command": ["x"], "placement": {"allowed_families": ["m7i", "zz99"]}}),
        execution: None,
        previous: None,
    };
    // WHEN sized THEN refused as an invalid spec naming the field and why, and nothing launched
    let err = block_on(size_step(&w.profiles, ranked, input, T0)).unwrap_err();
    assert_eq!(err.name(), "InvalidJobSpec");
    assert!(
        err.to_string()
            .contains("placement.allowed_families[1]: \"zz99\" is not an instance family in us-east-1"),
        "{err}"
    );
    assert!(w.launcher.calls.lock().unwrap().is_empty());
}

#[test]
fn run_id_comes_from_a_valid_execution_name() {
    assert_eq!(
        run_id_for(Some("20261126T000000Z-abcd1234"), T0),
        "20261126T000000Z-abcd1234"
    );
    let derived = run_id_for(Some("weird name/with:chars"), T0);
    assert!(valid_run_id(&derived), "{derived}");
    assert_eq!(derived, run_id_for(Some("weird name/with:chars"), T0));
}

#[test]
fn reaper_terminates_ended_unknown_abandoned_and_overdue_instances_only() {
    let w = World::new(FakeLauncher::new());
    let policy = ReapPolicy {
        launch_grace_ms: 60_000,
        stale_heartbeat_ms: 120_000,
    };
    // a healthy run: its execution waits on it
    let healthy = w.launch(w.size(spec())).unwrap();
    let waiting: HashSet<(String, u32)> = [("run-1".to_string(), 1)].into();
    // an abandoned run (its execution was stopped): no heartbeat since launch
    let mut s = w.size(spec());
    s.run_id = "run-abandoned".into();
    let abandoned = w.launch(s).unwrap();
    // a run already recorded as finished but whose instance lives on
    let mut s = w.size(spec());
    s.run_id = "run-ended".into();
    let ended = w.launch(s).unwrap();
    block_on(w.runs.put(&RunRecord {
        status: RunStatus::Succeeded,
        ..attempt_record(&ended, RunStatus::Succeeded, T0)
    }))
    .unwrap();
    // an instance with no run row at all
    let mut s = w.size(spec());
    s.run_id = "run-unknown".into();
    let unknown = w.launch(s).unwrap();
    block_on(async { w.runs.0.lock().unwrap().remove(&("run-unknown".to_string(), 1)) });

    w.clock.advance(180_000);
    let report = block_on(reap_step(&w.launcher, &w.runs, &w.clock, &policy, &waiting)).unwrap();
    let mut got: Vec<(String, ReapReason)> = report
        .terminated
        .iter()
        .map(|r| (r.run_id.clone().unwrap(), r.reason))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            ("run-abandoned".to_string(), ReapReason::Abandoned),
            ("run-ended".to_string(), ReapReason::RunEnded),
            ("run-unknown".to_string(), ReapReason::Unknown),
        ]
    );
    let live: Vec<_> = w.launcher.live().into_iter().map(|i| i.instance_id).collect();
    assert_eq!(live, vec![healthy.instance.unwrap().instance_id]);
    let _ = (abandoned, unknown);
    // past its deadline even the healthy one goes
    w.clock.advance(600_000 + BOOT_GRACE_MS);
    let report = block_on(reap_step(&w.launcher, &w.runs, &w.clock, &policy, &waiting)).unwrap();
    assert_eq!(report.terminated[0].reason, ReapReason::PastDeadline);
    assert!(w.launcher.live().is_empty());
}

#[test]
fn young_instances_without_a_row_are_left_alone() {
    let info = InstanceInfo {
        instance_id: InstanceId("i-1".into()),
        state: InstanceState::Pending,
        instance_type: "m7i.large".into(),
        az: String::new(),
        market: Market::Spot,
        job: None,
        run_id: None,
        attempt: None,
        deadline_ms: None,
        launched_at_ms: Some(T0),
        state_reason: None,
        end: None,
    };
    let p = ReapPolicy::default();
    assert_eq!(reap_reason(&info, None, false, T0 + 1000, &p), None);
    assert_eq!(
        reap_reason(&info, None, false, T0 + p.launch_grace_ms + 1, &p),
        Some(ReapReason::Unknown)
    );
}

#[test]
fn state_round_trips_through_json() {
    let w = World::new(FakeLauncher::new());
    let s = w.launch(w.size(spec())).unwrap();
    let back: RunState = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(back, s);
}

#[test]
fn an_exit_marker_that_is_not_one_or_names_another_run_is_reported_not_taken() {
    let w = World::new(FakeLauncher::new());
    let s = w.launch(w.size(spec())).unwrap();
    let inst = s.instance.clone().unwrap();
    let keys = RunKeys::new("etl", inst.launched_at_ms, &inst.agent_run_id);
    let summary = RunSummary {
        job: "etl".into(),
        run_id: inst.agent_run_id.clone(),
        status: RunStatus::Succeeded,
        ..Default::default()
    };
    agent_exits(&w.objects, &summary, inst.launched_at_ms);
    // an untyped marker (what the agent wrote with json! before) is corrupt
    block_on(w.objects.put(&keys.exit_marker(), b"{}".to_vec())).unwrap();
    let err = block_on(check_step(&w.launcher, &w.objects, &w.capacity, &w.clock, s.clone())).unwrap_err();
    assert!(err.to_string().contains("not an exit marker"), "{err}");
    // a marker of another run is corrupt too
    let other = RunSummary {
        run_id: "someone-else".into(),
        ..summary.clone()
    };
    let marker = typed_marker(&other);
    block_on(w.objects.put(&keys.exit_marker(), marker)).unwrap();
    let err = block_on(check_step(&w.launcher, &w.objects, &w.capacity, &w.clock, s)).unwrap_err();
    assert!(err.to_string().contains("exit marker of etl/someone-else"), "{err}");
}

fn typed_marker(s: &RunSummary) -> Vec<u8> {
    serde_json::to_vec(&crate::summary::ExitMarker::of(s, None)).unwrap()
}

/// A launcher whose describe comes just after the agent wrote its marker and shut the
/// instance down (the marker was not there when the check read it a moment before).
struct FinishesDuringDescribe<'a> {
    world: &'a World,
    state: RunState,
}

#[async_trait::async_trait]
impl InstanceLauncher for FinishesDuringDescribe<'_> {
    async fn launch(&self, req: &LaunchRequest) -> Result<crate::ports::LaunchedInstance, LaunchError> {
        self.world.launcher.launch(req).await
    }
    async fn describe(&self, id: &InstanceId) -> Result<Option<InstanceInfo>, LaunchError> {
        self.world.agent_exits(&self.state, RunStatus::Succeeded, 0);
        self.world
            .launcher
            .set_state(id, InstanceState::Stopped, Some("Client.InstanceInitiatedShutdown"));
        self.world.launcher.describe(id).await
    }
    async fn terminate(&self, id: &InstanceId) -> Result<(), LaunchError> {
        self.world.launcher.terminate(id).await
    }
    async fn list_managed(&self) -> Result<Vec<InstanceInfo>, LaunchError> {
        self.world.launcher.list_managed().await
    }
}

#[test]
fn an_agent_that_ends_between_the_marker_read_and_the_describe_is_not_lost() {
    let w = World::new(FakeLauncher::new());
    let s = w.launch(w.size(spec())).unwrap();
    let racing = FinishesDuringDescribe {
        world: &w,
        state: s.clone(),
    };
    let s = block_on(check_step(&racing, &w.objects, &w.capacity, &w.clock, s)).unwrap();
    let check = s.check.unwrap();
    assert_eq!(check.status, RunStatus::Succeeded, "{}", check.reason);
    assert_eq!(s.outcome, Some(Outcome::Succeeded));
    assert!(s.excluded.is_empty(), "the pool was marked: {:?}", s.excluded);
}
