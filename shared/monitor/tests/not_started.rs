//! A job whose program cannot be started. As an agent (uploading) the monitor records it as the
//! job's failure, as a shell reports it (127 not found, 126 not executable), with a summary and
//! an exit marker, so the pipeline ends the run `failed` instead of calling a silent instance
//! lost and retrying the same command on every candidate. Without upload it is an error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use spotfit_core::ids::RunKeys;
use spotfit_core::ports::ObjectStore;
use spotfit_core::summary::{ExitMarker, RunStatus};
use spotfit_core::testkit::InMemoryObjectStore;
use spotfit_core::RunSummary;
use spotfit_monitor::{run_command, CommandSpec, MonitorError, MonitorOptions, UploadOptions};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

fn agent_run(
    argv: Vec<String>,
    spool: &std::path::Path,
    run_id: &str,
) -> (spotfit_monitor::Outcome, Arc<InMemoryObjectStore>) {
    let store = Arc::new(InMemoryObjectStore::default());
    let opts = MonitorOptions {
        interval: Duration::from_millis(50),
        job: "nostart".into(),
        run_id: run_id.into(),
        gpu: false,
        handle_signals: false,
        spool_dir: Some(spool.to_path_buf()),
        upload: Some(UploadOptions {
            store: store.clone(),
            every: Duration::from_secs(60),
            runtime: None,
            finish_timeout: Duration::from_secs(5),
        }),
        ..Default::default()
    };
    let out = run_command(
        &CommandSpec {
            argv,
            ..Default::default()
        },
        &opts,
        &mut |_| {},
    )
    .unwrap();
    (out, store)
}

fn stored<T: serde::de::DeserializeOwned>(store: &InMemoryObjectStore, key: &str) -> T {
    let bytes = spotfit_core::testkit::block_on(store.get(key))
        .unwrap()
        .unwrap_or_else(|| panic!("{key} not stored"));
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn a_missing_program_is_the_jobs_failure_with_exit_127_summary_and_marker() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let (out, store) = agent_run(
        vec!["/no/such/spotfit-program".into()],
        &dir.path().join("spool"),
        "r-127",
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!((out.exit.code, out.exit.signal), (Some(127), None));
    let up = out.upload.unwrap();
    assert!(up.summary_uploaded && up.exit_marker_uploaded, "{up:?}");
    let keys = RunKeys::new("nostart", out.started_at_ms, "r-127");
    let marker: ExitMarker = stored(&store, &keys.exit_marker());
    assert_eq!((marker.status, marker.exit.code), (RunStatus::Failed, Some(127)));
    let summary: RunSummary = stored(&store, &keys.summary());
    assert_eq!(summary.status, RunStatus::Failed);
}

#[test]
fn a_program_that_is_not_executable_exits_126() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (out, _) = agent_run(vec![script.display().to_string()], &dir.path().join("spool"), "r-126");
    assert_eq!(out.exit.code, Some(126));
    assert!(out.upload.unwrap().exit_marker_uploaded);
}

#[test]
fn without_upload_a_missing_program_is_an_error_naming_it() {
    let opts = MonitorOptions {
        gpu: false,
        handle_signals: false,
        ..Default::default()
    };
    let cmd = CommandSpec {
        argv: vec!["/no/such/spotfit-program".into()],
        ..Default::default()
    };
    match run_command(&cmd, &opts, &mut |_| {}) {
        Err(e @ MonitorError::Spawn { .. }) => assert!(e.to_string().contains("/no/such/spotfit-program"), "{e}"),
        other => panic!("expected a spawn error, got {other:?}"),
    }
}

#[test]
fn a_set_up_error_after_the_job_started_does_not_leave_it_running() {
    // GIVEN a spool directory that cannot be created (under a regular file): the spool is
    // opened after the job has been started
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let ran = dir.path().join("ran");
    let argv = vec!["sh".into(), "-c".into(), format!("sleep 1; touch '{}'", ran.display())];
    let store = Arc::new(InMemoryObjectStore::default());
    let opts = MonitorOptions {
        gpu: false,
        handle_signals: false,
        spool_dir: Some(file.join("spool")),
        upload: Some(UploadOptions {
            store,
            every: Duration::from_secs(60),
            runtime: None,
            finish_timeout: Duration::from_secs(1),
        }),
        ..Default::default()
    };
    // WHEN the monitor fails to set up
    let res = run_command(
        &CommandSpec {
            argv,
            ..Default::default()
        },
        &opts,
        &mut |_| {},
    );
    assert!(res.is_err(), "{res:?}");
    // THEN the job it had started is gone: it never gets to its second command
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!ran.exists(), "the job kept running after the monitor gave up");
}
