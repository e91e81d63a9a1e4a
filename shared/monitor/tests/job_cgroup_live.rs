//! The job's memory cgroup on this host's real cgroup hierarchy: a process the job leaves
//! running in the background is killed when the run ends, as terminating its instance would
//! kill it, and the group is removed. (On a host that allows no such group the job would run
//! unlimited; this test then fails, saying so.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use spotfit_monitor::{run_command, CommandSpec, MonitorOptions};
use std::time::Duration;

#[test]
fn a_process_the_job_leaves_behind_is_killed_and_its_cgroup_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (pidfile, cgfile) = (dir.path().join("bg.pid"), dir.path().join("cgroup"));
    let run_id = format!("cgtest-{}", std::process::id());
    let cmd = CommandSpec {
        argv: vec![
            "sh".into(),
            "-c".into(),
            format!(
                // (the monitor moves the job into its group right after the start: wait for that)
                "sleep 0.5; cat /proc/self/cgroup > '{}'; sleep 60 & echo $! > '{}'",
                cgfile.display(),
                pidfile.display()
            ),
        ],
        ..Default::default()
    };
    let opts = MonitorOptions {
        interval: Duration::from_millis(100),
        run_id: run_id.clone(),
        gpu: false,
        handle_signals: false,
        memory_limit: Some(256 << 20),
        ..Default::default()
    };
    run_command(&cmd, &opts, &mut |_| {}).unwrap();
    let groups = std::fs::read_to_string(&cgfile).unwrap();
    assert!(
        groups.contains(&format!("spotfit-{run_id}")),
        "the job ran outside a spotfit memory cgroup (this host allows none?): {groups}"
    );
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    // THEN the background sleep is gone (killed; reaped by init shortly after)
    let t0 = std::time::Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.split_whitespace().nth(2) == Some("Z") {
            break; // killed, waiting for its new parent to reap it
        }
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "the job's background process {pid} is still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // AND no group of this run is left anywhere in the hierarchy
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory"] {
        let d = std::path::Path::new(root).join(format!("spotfit-{run_id}"));
        assert!(!d.exists(), "{} left behind", d.display());
    }
}
