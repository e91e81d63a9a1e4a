//! The default spool under `$TMPDIR` (private, never a planted path, removed once shipped) and
//! the end of a run whose store is unreachable (the upload thread stops before the caller's
//! runtime goes away). Alone in its process: it sets `TMPDIR` and a panic hook.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use spotfit_core::ports::{ObjectStore, StoreError};
use spotfit_core::testkit::InMemoryObjectStore;
use spotfit_monitor::{run_command, CommandSpec, MonitorOptions, UploadOptions};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A store that is never reachable (S3 down, no route), counting the attempts.
#[derive(Debug, Default)]
struct Unreachable(AtomicUsize);

#[async_trait::async_trait]
impl ObjectStore for Unreachable {
    async fn put(&self, _key: &str, _bytes: Vec<u8>) -> Result<(), StoreError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await; // a connect attempt, on the runtime's timer
        Err(StoreError::Unavailable {
            service: "s3".into(),
            message: "dispatch failure: connection refused".into(),
        })
    }
    async fn get(&self, _key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
    async fn list(&self, _prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(vec![])
    }
}

fn opts(store: Arc<dyn ObjectStore>, runtime: Option<tokio::runtime::Handle>, run_id: &str) -> MonitorOptions {
    MonitorOptions {
        interval: Duration::from_millis(50),
        job: "spool".into(),
        run_id: run_id.into(),
        gpu: false,
        handle_signals: false,
        upload: Some(UploadOptions {
            store,
            every: Duration::from_secs(60),
            runtime,
            finish_timeout: Duration::from_millis(400),
        }),
        ..Default::default()
    }
}

fn sleep_cmd() -> CommandSpec {
    CommandSpec {
        argv: vec!["sleep".into(), "0.2".into()],
        ..Default::default()
    }
}

#[test]
fn default_spool_is_private_never_planted_and_removed_once_shipped_and_an_unreachable_store_ends_cleanly() {
    let panics = Arc::new(AtomicUsize::new(0));
    let p = panics.clone();
    std::panic::set_hook(Box::new(move |info| {
        p.fetch_add(1, Ordering::SeqCst);
        eprintln!("panic: {info}");
    }));
    // GIVEN a shared TMPDIR where another user planted `spotfit-spool` (the old fixed name) as
    // a symlink to a directory of theirs
    let tmp = tempfile::tempdir().unwrap();
    let victim = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(victim.path(), tmp.path().join("spotfit-spool")).unwrap();
    std::env::set_var("TMPDIR", tmp.path());
    assert_eq!(std::env::temp_dir(), tmp.path());

    // WHEN a run uploads to a healthy store with the default spool
    let store = Arc::new(InMemoryObjectStore::default());
    let out = run_command(&sleep_cmd(), &opts(store.clone(), None, "r-ok"), &mut |_| {}).unwrap();
    // THEN everything was shipped, nothing was written through the planted link, and the
    // spool is gone
    let up = out.upload.unwrap();
    assert!(
        up.summary_uploaded && up.exit_marker_uploaded && up.parts_pending == 0,
        "{up:?}"
    );
    assert!(
        std::fs::read_dir(victim.path()).unwrap().next().is_none(),
        "wrote through the planted link"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["spotfit-spool"], "spool left behind: {left:?}");

    // AND a fresh private spool directory is 0700 and ours, a new one each time
    let a = spotfit_monitor::spool::private_dir(tmp.path(), "r").unwrap();
    let b = spotfit_monitor::spool::private_dir(tmp.path(), "r").unwrap();
    assert_ne!(a, b);
    let m = std::fs::symlink_metadata(&a).unwrap();
    assert!(m.is_dir() && m.permissions().mode() & 0o777 == 0o700);
    assert_eq!(m.uid(), nix::unistd::geteuid().as_raw());

    // WHEN the store is unreachable to the end, on the caller's runtime (as with S3)
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let down = Arc::new(Unreachable::default());
    let out = run_command(
        &sleep_cmd(),
        &opts(down.clone(), Some(rt.handle().clone()), "r-down"),
        &mut |_| {},
    )
    .unwrap();
    drop(rt); // what `spotfit monitor` does right after
    let attempts = down.0.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(800));
    // THEN nothing retries after the run ended (no put on a runtime being shut down: no panic)
    assert_eq!(
        down.0.load(Ordering::SeqCst),
        attempts,
        "the upload thread outlived the run"
    );
    assert_eq!(panics.load(Ordering::SeqCst), 0, "a thread panicked");
    // AND the spool was kept for --resume-spool
    let up = out.upload.unwrap();
    assert!(!up.exit_marker_uploaded);
    let kept: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("spotfit-spool-r-down-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
}
