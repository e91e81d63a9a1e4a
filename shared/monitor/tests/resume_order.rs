//! The run's end through an outage, on the live path and `--resume-spool` alike: the summary
//! first, the exit marker only once the summary is in (a marker without a summary is what the
//! check step rejects as corrupt), each landed object marked `.done` in the spool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use spotfit_core::ids::RunKeys;
use spotfit_core::ports::{ObjectStore, StoreError};
use spotfit_core::testkit::InMemoryObjectStore;
use spotfit_core::RunSummary;
use spotfit_monitor::{run_command, upload_spool, CommandSpec, MonitorOptions, UploadOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The bucket, with writes of keys ending in `refuse` failing while `down` is set.
#[derive(Debug, Default)]
struct Flaky {
    inner: InMemoryObjectStore,
    refuse: &'static str,
    down: AtomicBool,
}

#[async_trait::async_trait]
impl ObjectStore for Flaky {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) && key.ends_with(self.refuse) {
            return Err(StoreError::Unavailable {
                service: "s3".into(),
                message: "connection reset".into(),
            });
        }
        self.inner.put(key, bytes).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
}

fn run(store: Arc<Flaky>, spool: &std::path::Path, run_id: &str) -> spotfit_monitor::Outcome {
    let opts = MonitorOptions {
        interval: Duration::from_millis(50),
        job: "resume".into(),
        run_id: run_id.into(),
        gpu: false,
        handle_signals: false,
        spool_dir: Some(spool.to_path_buf()),
        upload: Some(UploadOptions {
            store,
            every: Duration::from_secs(60),
            runtime: None,
            finish_timeout: Duration::from_millis(600),
        }),
        ..Default::default()
    };
    let cmd = CommandSpec {
        argv: vec!["sleep".into(), "0.2".into()],
        ..Default::default()
    };
    run_command(&cmd, &opts, &mut |_| {}).unwrap()
}

fn resume(dir: &std::path::Path, store: &dyn ObjectStore, all: bool) -> spotfit_monitor::UploadReport {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(upload_spool(dir, store, all)).unwrap()
}

fn has(store: &Flaky, key: &str) -> bool {
    store.inner.0.lock().unwrap().contains_key(key)
}

#[test]
fn an_agent_stopped_between_summary_and_marker_finishes_in_order_when_resumed() {
    // GIVEN an agent whose exit-marker upload kept failing: the summary landed, the marker not
    let store = Arc::new(Flaky {
        refuse: ".exit",
        down: AtomicBool::new(true),
        ..Default::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let out = run(store.clone(), &spool, "r-marker");
    let up = out.upload.clone().unwrap();
    assert!(up.summary_uploaded && !up.exit_marker_uploaded, "{up:?}");
    let keys = RunKeys::new("resume", out.started_at_ms, "r-marker");
    assert!(has(&store, &keys.summary()) && !has(&store, &keys.exit_marker()));
    assert!(
        spool.join("summary.json.done").exists(),
        "the landed summary is marked in the spool"
    );
    assert!(!spool.join("exit.json.done").exists());
    // WHEN the store is back and the spool is resumed (as `--resume-spool` does)
    store.down.store(false, Ordering::SeqCst);
    let report = resume(&spool, store.as_ref(), false);
    // THEN the marker lands after the summary, both are marked done, and the summary the
    // marker points at reads back as the run's
    assert!(report.summary_uploaded && report.exit_marker_uploaded, "{report:?}");
    assert!(spool.join("exit.json.done").exists());
    let summary: RunSummary = serde_json::from_slice(&store.inner.0.lock().unwrap()[&keys.summary()]).unwrap();
    assert_eq!(summary.run_id, "r-marker");
    assert!(has(&store, &keys.exit_marker()));
}

#[test]
fn a_resumed_spool_never_ships_the_marker_before_the_summary() {
    // GIVEN an agent that could ship neither the summary nor (so) the marker
    let store = Arc::new(Flaky {
        refuse: ".json",
        down: AtomicBool::new(true),
        ..Default::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let out = run(store.clone(), &spool, "r-summary");
    let keys = RunKeys::new("resume", out.started_at_ms, "r-summary");
    assert!(
        !has(&store, &keys.exit_marker()),
        "live path: no marker without the summary"
    );
    // WHEN it is resumed while summaries still fail (every part again, as the CLI does)
    let report = resume(&spool, store.as_ref(), true);
    // THEN the marker is still held back, so the check step never sees a marker alone
    assert!(!report.summary_uploaded && !report.exit_marker_uploaded, "{report:?}");
    assert!(!has(&store, &keys.exit_marker()));
    assert!(!spool.join("exit.json.done").exists());
    // AND once the store takes summaries, a resume ships both
    store.down.store(false, Ordering::SeqCst);
    let report = resume(&spool, store.as_ref(), true);
    assert!(report.summary_uploaded && report.exit_marker_uploaded, "{report:?}");
    assert!(has(&store, &keys.summary()) && has(&store, &keys.exit_marker()));
}
