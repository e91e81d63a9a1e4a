//! Contract fixtures: the input and output of every Task state of one run (capacity fallback,
//! a spot interruption, a retry that succeeds), produced by the real pipeline steps over the
//! in-memory fakes, must equal the files in `statemachine/fixtures/` (the ASL tests and the
//! `functions/*/events/` examples use the same shapes). `SPOTFIT_BLESS=1` rewrites them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use spotfit_core::ids::Pool;
use spotfit_core::pipeline::*;
use spotfit_core::ports::{Clock, InstanceState};
use spotfit_core::spec::Market;
use spotfit_core::summary::{ExitInfo, RunStatus, RunSummary};
use spotfit_core::testkit::*;
use std::path::PathBuf;

const T0: i64 = 1_795_651_200_000;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../statemachine/fixtures")
}

fn fixture(name: &str, value: &impl serde::Serialize, mismatches: &mut Vec<String>) {
    let json = serde_json::to_string_pretty(value).unwrap() + "\n";
    let path = dir().join(name);
    if std::env::var_os("SPOTFIT_BLESS").is_some() {
        std::fs::write(&path, &json).unwrap();
        return;
    }
    // Text comparison: both sides are written by serde_json, and parsing floats back is not exact.
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    if json != on_disk {
        mismatches.push(format!(
            "{} differs (run with SPOTFIT_BLESS=1 after checking the change)",
            path.display()
        ));
    }
}

fn spot(t: &str) -> Pool {
    Pool {
        instance_type: t.into(),
        az: "use1-az1".into(),
        market: Market::Spot,
    }
}

#[test]
fn every_state_input_and_output_matches_its_fixture() {
    let mut bad = Vec::new();
    let launcher = FakeLauncher::new()
        .insufficient(spot("m7i.large"), u32::MAX)
        .insufficient(spot("c7i.large"), u32::MAX);
    launcher.now_ms.store(T0, std::sync::atomic::Ordering::SeqCst);
    let (objects, profiles, runs, capacity) = (
        InMemoryObjectStore::default(),
        InMemoryProfileStore::default(),
        InMemoryRunStore::default(),
        InMemoryCapacityStore::default(),
    );
    let clock = FakeClock::at(T0);
    let settings = LaunchSettings::new(vec!["use1-az1".into(), "use1-az2".into()]);
    let cands = vec![
        candidate("m7i.large", 0.0302),
        candidate("c7i.large", 0.0315),
        candidate("r7i.large", 0.0397),
    ];
    let ranked = |_: &_, _: &_| cands.clone();
    let spec: Value = serde_json::from_str(include_str!("../../size-job/events/size.json")).unwrap();

    let size_in: SizeInput = serde_json::from_value(spec).unwrap();
    fixture("Size.in.json", &size_in, &mut bad);
    let s = block_on(size_step(&profiles, ranked, size_in, T0)).unwrap();
    fixture("Size.out.json", &s, &mut bad);

    let s = block_on(launch_step(&launcher, &capacity, &runs, &clock, &settings, s)).unwrap();
    fixture("Launch.out.json", &s, &mut bad);
    clock.advance(30_000);
    let s = block_on(check_step(&launcher, &objects, &capacity, &clock, s)).unwrap();
    fixture("Check.running.out.json", &s, &mut bad);

    clock.advance(600_000);
    let id = s.instance.as_ref().unwrap().instance_id.clone();
    launcher.set_state(&id, InstanceState::Terminated, Some("Server.SpotInstanceTermination"));
    let s = block_on(check_step(&launcher, &objects, &capacity, &clock, s)).unwrap();
    fixture("Check.interrupted.out.json", &s, &mut bad);
    let s = block_on(terminate_step(&launcher, &clock, s)).unwrap();
    fixture("Terminate.out.json", &s, &mut bad);
    let s = block_on(record_step(&profiles, &runs, &objects, &clock, s)).unwrap();
    fixture("Record.retry.out.json", &s, &mut bad);

    let resize_in = SizeInput {
        spec: serde_json::to_value(&s.spec).unwrap(),
        execution: Some(s.run_id.clone()),
        previous: Some(Box::new(s)),
    };
    fixture("Resize.in.json", &resize_in, &mut bad);
    let s = block_on(size_step(&profiles, ranked, resize_in, clock.now_ms())).unwrap();
    let s = block_on(launch_step(&launcher, &capacity, &runs, &clock, &settings, s)).unwrap();
    fixture("Launch.attempt2.out.json", &s, &mut bad);

    clock.advance(120_000);
    let inst = s.instance.clone().unwrap();
    let summary = RunSummary {
        job: s.job.clone(),
        run_id: inst.agent_run_id.clone(),
        started_at_ms: inst.launched_at_ms + 20_000,
        ended_at_ms: clock.now_ms(),
        duration_s: 100.0,
        samples: 20,
        mem_max_bytes: 900 << 20,
        exit: ExitInfo::code(0),
        status: RunStatus::Succeeded,
        ..Default::default()
    };
    agent_exits(&objects, &summary, inst.launched_at_ms);
    let s = block_on(check_step(&launcher, &objects, &capacity, &clock, s)).unwrap();
    fixture("Check.succeeded.out.json", &s, &mut bad);
    let s = block_on(terminate_step(&launcher, &clock, s)).unwrap();
    let s = block_on(record_step(&profiles, &runs, &objects, &clock, s)).unwrap();
    fixture("Record.succeeded.out.json", &s, &mut bad);
    assert_eq!(s.outcome, Some(Outcome::Succeeded));
    assert!(launcher.live().is_empty());
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
