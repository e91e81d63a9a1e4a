//! Accuracy on real processes: a parent and a child that burn CPU and hold memory (the
//! workload reports what the kernel says they used), and attaching by PID to a tree whose
//! children come and go. Ground truth is the workload's own getrusage, so a contended machine
//! does not make the test flaky.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use spotfit_core::Sample;
use spotfit_monitor::{monitor, run_command, CommandSpec, MonitorOptions, Target};
use std::time::Duration;

fn workload() -> String {
    format!("{}/tests/fixtures/workload.py", env!("CARGO_MANIFEST_DIR"))
}

fn opts(interval_ms: u64) -> MonitorOptions {
    MonitorOptions {
        interval: Duration::from_millis(interval_ms),
        job: "accuracy".into(),
        run_id: "r1".into(),
        handle_signals: false,
        gpu: false,
        ..Default::default()
    }
}

fn cpu_seconds(samples: &[Sample]) -> f64 {
    samples.iter().map(|s| s.cpu_cores * s.interval_s).sum()
}

#[test]
fn parent_and_child_cpu_and_memory_within_five_percent() {
    // GIVEN a parent and a child, each holding 384 MiB and burning half a core for 4 s
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let cmd = CommandSpec {
        argv: vec![
            "python3".into(),
            workload(),
            "--seconds=4".into(),
            "--duty=0.5".into(),
            "--mib-parent=384".into(),
            "--mib-child=384".into(),
            "--hold=1".into(),
            format!("--report={}", report.display()),
        ],
        ..Default::default()
    };
    // WHEN monitored at 0.5 s
    let mut seen = 0;
    let out = run_command(&cmd, &opts(500), &mut |_| seen += 1).unwrap();
    let truth: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();

    // THEN the job succeeded and every sample was seen, numbered without gaps
    assert!(out.exit.success(), "{:?}", out.exit);
    assert_eq!(seen as u64, out.sample_count);
    assert!(out.samples.iter().enumerate().all(|(i, s)| s.seq == i as u64));
    // CPU: the monitor's CPU-seconds match the kernel's rusage within 5 %
    let truth_cpu = truth["cpu_s"].as_f64().unwrap();
    let measured = cpu_seconds(&out.samples);
    let err = (measured - truth_cpu).abs() / truth_cpu;
    eprintln!(
        "cpu: measured {measured:.3} s, rusage {truth_cpu:.3} s, error {:.2} %",
        err * 100.0
    );
    assert!(err <= 0.05, "cpu {measured} vs {truth_cpu}");
    // memory: the peak tree RSS is the 768 MiB built in, within 5 % (the interpreters add ~2 %)
    let built = truth["mem_built_bytes"].as_f64().unwrap();
    let peak = out.summary.mem_max_bytes as f64;
    let merr = (peak - built).abs() / built;
    eprintln!(
        "mem: peak {:.1} MiB, built {:.1} MiB, error {:.2} %",
        peak / 1048576.0,
        built / 1048576.0,
        merr * 100.0
    );
    assert!(merr <= 0.05, "memory {peak} vs {built}");
    // both processes were seen at once, and the summary agrees with the samples
    assert!(out.samples.iter().any(|s| s.processes == 2));
    assert!((out.summary.cpu.avg * out.samples.iter().map(|s| s.interval_s).sum::<f64>() - measured).abs() < 1e-6);
    assert!(out
        .samples
        .iter()
        .all(|s| s.host_cpu_cores.is_some() && s.net_rx_bytes.is_some()));
    assert!(out.samples.iter().any(|s| s.pss_bytes.is_some()));
    assert!(out.samples.iter().any(|s| s.page_faults_minor > 0));
}

#[test]
fn exit_codes_and_signals_are_captured() {
    let o = opts(100);
    let out = run_command(
        &CommandSpec {
            argv: vec!["sh".into(), "-c".into(), "exit 3".into()],
            ..Default::default()
        },
        &o,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(out.exit.code, Some(3));
    let out = run_command(
        &CommandSpec {
            argv: vec!["sh".into(), "-c".into(), "kill -9 $$".into()],
            ..Default::default()
        },
        &o,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(out.exit.signal, Some(9));
    let err = run_command(
        &CommandSpec {
            argv: vec!["/nonexistent/prog".into()],
            ..Default::default()
        },
        &o,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/prog"), "{err}");
    let err = run_command(&CommandSpec::default(), &o, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("argv"), "{err}");
    let bad = MonitorOptions {
        interval: Duration::ZERO,
        ..o
    };
    let err = run_command(
        &CommandSpec {
            argv: vec!["true".into()],
            ..Default::default()
        },
        &bad,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("interval"), "{err}");
}

#[test]
fn attach_by_pid_follows_children_that_come_and_go() {
    // GIVEN a parent that idles, then starts a short-lived CPU-burning child every 0.4 s for
    // 4 s (two at a time, overlapping), then idles, and reports its children's CPU over the loop
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let script = format!(
        r#"
import json, resource, subprocess, sys, time
time.sleep(1.0)
def c():
    r = resource.getrusage(resource.RUSAGE_CHILDREN); return r.ru_utime + r.ru_stime
c0 = c(); procs = []; end = time.monotonic() + 4
while time.monotonic() < end:
    procs.append(subprocess.Popen([sys.executable, "-c", "import time\nt=time.process_time()\nwhile time.process_time()-t<0.25: pass"]))
    time.sleep(0.4)
    procs = [p for p in procs if p.poll() is None]
for p in procs: p.wait()
json.dump({{"cpu_s": c() - c0}}, open({report:?}, "w"))
time.sleep(1.5)
"#,
        report = report.display().to_string()
    );
    let mut root = std::process::Command::new("python3")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // WHEN attached by PID at 0.2 s until the parent exits
    let pid = root.id();
    let waiter = std::thread::spawn(move || root.wait());
    let out = monitor(&Target::Pid(pid), &opts(200), &mut |_| {}).unwrap();
    let _ = waiter.join();
    let truth: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    // THEN the process count went up and down, and the children's CPU was all counted
    let counts: Vec<u32> = out.samples.iter().map(|s| s.processes).collect();
    assert!(counts.iter().any(|&n| n >= 2), "{counts:?}");
    assert!(counts.iter().filter(|&&n| n == 1).count() >= 3, "{counts:?}");
    let truth_cpu = truth["cpu_s"].as_f64().unwrap();
    let measured = cpu_seconds(&out.samples);
    eprintln!("attach: measured {measured:.3} s, children rusage {truth_cpu:.3} s, counts {counts:?}");
    // The parent's own CPU (python's loop, ~tens of ms) is inside `measured` but not `truth`.
    assert!(
        measured >= truth_cpu * 0.95 && measured <= truth_cpu * 1.05 + 0.15,
        "{measured} vs {truth_cpu}"
    );
    assert_eq!(out.exit.code, None, "an attached run has no exit code of its own");
}
