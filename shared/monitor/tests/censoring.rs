//! Censoring in the product: the monitor records the cores a job could use, so a run that kept
//! them all busy is censored data and the next run is sized bigger (docs/sizing.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use spotfit_core::profile::JobProfile;
use spotfit_core::sizing::{cpu_need_unknown, cpu_saturated, size, CPU_CENSORED_GROWTH};
use spotfit_core::{JobSpec, RunSummary};
use spotfit_monitor::{run_command, CommandSpec, MonitorOptions};
use std::path::PathBuf;
use std::time::Duration;

const BUSY: &str = "import time\nt=time.time()\nwhile time.time()-t<1.5: pass";

/// A CPU cgroup with a quota of `cores` this host lets us create (root, v2 with the cpu
/// controller delegated, or the v1 cpu hierarchy), removed on drop.
struct QuotaGroup(PathBuf);

impl QuotaGroup {
    fn create(cores: f64) -> Option<QuotaGroup> {
        let root = PathBuf::from("/sys/fs/cgroup");
        let name = format!("spotfit-test-censor-{}", std::process::id());
        let v2 = std::fs::read_to_string(root.join("cgroup.subtree_control"))
            .is_ok_and(|c| c.split_whitespace().any(|x| x == "cpu"));
        let dir = if v2 {
            root.join(&name)
        } else {
            root.join("cpu").join(&name)
        };
        std::fs::create_dir(&dir).ok()?;
        let g = QuotaGroup(dir);
        let quota = (cores * 100_000.0) as u64;
        let ok = if v2 {
            std::fs::write(g.0.join("cpu.max"), format!("{quota} 100000")).is_ok()
        } else {
            std::fs::write(g.0.join("cpu.cfs_period_us"), "100000").is_ok()
                && std::fs::write(g.0.join("cpu.cfs_quota_us"), quota.to_string()).is_ok()
        };
        ok.then_some(g)
    }
}

impl Drop for QuotaGroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn opts() -> MonitorOptions {
    MonitorOptions {
        interval: Duration::from_millis(100),
        job: "censor".into(),
        run_id: "r1".into(),
        handle_signals: false,
        gpu: false,
        ..Default::default()
    }
}

/// Runs `argv` up to three times (a loaded build host may take the CPU from a job) until one
/// run kept its cores busy; every run must report `want_given` cores.
fn saturated_run(argv: Vec<String>, want_given: f64) -> RunSummary {
    let cmd = CommandSpec {
        argv,
        ..Default::default()
    };
    for _ in 0..3 {
        let out = run_command(&cmd, &opts(), &mut |_| {}).unwrap();
        assert!(out.exit.success(), "{:?}", out.exit);
        let given = out.summary.cpu_given_cores.expect("cores given recorded");
        assert!((given - want_given).abs() < 1e-6, "{:?}", out.summary);
        if cpu_saturated(&out.summary) {
            return out.summary;
        }
    }
    panic!("no run kept its cores busy in three tries");
}

#[test]
fn a_run_keeping_its_cores_busy_is_censored_and_the_next_gets_more() {
    // GIVEN a job that keeps busy the cores it may use: a 0.3-core CPU quota on its cgroup where
    // this host lets the test make one (the job moves itself in), else one CPU by affinity
    let quota = QuotaGroup::create(0.3);
    let run = match &quota {
        Some(g) => {
            let procs = g.0.join("cgroup.procs");
            let script = format!("echo $$ > {} && exec python3 -c '{BUSY}'", procs.display());
            let run = saturated_run(vec!["sh".into(), "-c".into(), script], 0.3);
            // a busy job over a 0.3-core quota is throttled most of its run
            assert!(run.cpu_throttled, "{run:?}");
            run
        }
        None => {
            // Not a silent pass: a host that can give a job neither is one this test cannot
            // speak for, and it says so by failing.
            assert!(
                std::process::Command::new("taskset").arg("-V").output().is_ok(),
                "this host allows neither a CPU-quota cgroup nor taskset: censoring cannot be tested here"
            );
            let argv = ["taskset", "-c", "0", "python3", "-c", BUSY];
            saturated_run(argv.iter().map(|s| s.to_string()).collect(), 1.0)
        }
    };
    // WHEN the run is folded into the job's profile and the next run is sized
    let mut p = JobProfile::new("censor");
    p.record(&run);
    let spec = JobSpec {
        name: "censor".into(),
        ..JobSpec::default()
    };
    let next = size(&spec, Some(&p), run.ended_at_ms);
    // THEN the need is not known, and the next run gets at least twice the cores it had
    let given = run.cpu_given_cores.unwrap();
    assert!(cpu_need_unknown(&spec, &p));
    assert!(next.cpu_need_unknown);
    assert!(next.vcpu as f64 >= CPU_CENSORED_GROWTH * given - 1e-9, "{next:?}");
    assert!(next.cores_used >= CPU_CENSORED_GROWTH * given - 1e-9, "{next:?}");
}
