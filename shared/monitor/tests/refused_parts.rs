//! A store that refuses some parts for good (access denied on the log layout: a deployment
//! whose instance role lacks it) must not hold back the run's summary and exit marker until the
//! finish deadline, where the run would read as lost: the refused part is skipped after a few
//! tries and kept in the spool; everything else lands.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use spotfit_core::ports::{ObjectStore, StoreError};
use spotfit_core::testkit::InMemoryObjectStore;
use spotfit_monitor::{run_command, CommandSpec, MonitorOptions, UploadOptions};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Refuses every `logs/` key (AccessDenied, not retryable), stores the rest.
#[derive(Debug, Default)]
struct DeniesLogs {
    inner: InMemoryObjectStore,
    refused: AtomicUsize,
}

#[async_trait::async_trait]
impl ObjectStore for DeniesLogs {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        if key.starts_with("logs/") {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Other {
                service: "s3".into(),
                code: "AccessDenied".into(),
                message: "not authorized to perform s3:PutObject".into(),
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

#[test]
fn a_part_the_store_keeps_refusing_is_skipped_and_kept_and_the_run_still_ends_recorded() {
    let store = Arc::new(DeniesLogs::default());
    let spool = tempfile::tempdir().unwrap();
    let opts = MonitorOptions {
        interval: Duration::from_millis(50),
        job: "refused".into(),
        run_id: "refused-1".into(),
        gpu: false,
        handle_signals: false,
        pass_output: false,
        spool_dir: Some(spool.path().join("s")),
        upload: Some(UploadOptions {
            store: store.clone(),
            every: Duration::from_millis(200),
            runtime: None,
            // Far longer than the skip takes: the run must not wait for it.
            finish_timeout: Duration::from_secs(60),
        }),
        ..Default::default()
    };
    let cmd = CommandSpec {
        argv: vec!["sh".into(), "-c".into(), "echo to-the-log; sleep 0.5".into()],
        ..Default::default()
    };
    // WHEN the job's log parts are refused on every try
    let t0 = Instant::now();
    let out = run_command(&cmd, &opts, &mut |_| {}).unwrap();
    let took = t0.elapsed();
    // THEN the run ended well before the finish deadline, with its summary and marker shipped
    let up = out.upload.as_ref().expect("an upload report");
    assert!(up.summary_uploaded && up.exit_marker_uploaded, "{up:?}");
    assert!(up.parts_refused >= 1, "{up:?}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let keys: Vec<String> = store.inner.0.lock().unwrap().keys().cloned().collect();
    assert!(keys.iter().any(|k| k.ends_with("refused-1.exit")), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("samples/")), "{keys:?}");
    // AND it was tried a few times, not once, and the refused part is still in the spool
    assert!(
        store.refused.load(Ordering::SeqCst) >= 5,
        "{}",
        store.refused.load(Ordering::SeqCst)
    );
    let left: Vec<String> = std::fs::read_dir(spool.path().join("s"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.iter().any(|f| f.starts_with("log-") && f.ends_with(".log.gz")),
        "{left:?}"
    );
}
