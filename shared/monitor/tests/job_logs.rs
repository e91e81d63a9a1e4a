//! The job's stdout and stderr: captured, shipped as log parts exactly once through an outage
//! and through `--resume-spool`, reassembled byte for byte, tails in the summary, and a process
//! the job left holding its output does not hold the run's end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use spotfit_core::ids::RunKeys;
use spotfit_core::logs::Stream;
use spotfit_core::ports::{ObjectStore, StoreError};
use spotfit_core::testkit::InMemoryObjectStore;
use spotfit_monitor::{run_command, upload_spool, CommandSpec, MonitorOptions, Outcome, UploadOptions};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A bucket whose log-part writes fail while `down` is set, counting every put per key.
#[derive(Debug, Default)]
struct Flaky {
    inner: InMemoryObjectStore,
    down: AtomicBool,
    refused: AtomicU64,
    puts: Mutex<BTreeMap<String, u32>>,
}

#[async_trait::async_trait]
impl ObjectStore for Flaky {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) && key.starts_with("logs/") {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Unavailable {
                service: "s3".into(),
                message: "connection reset".into(),
            });
        }
        *self.puts.lock().unwrap().entry(key.to_string()).or_default() += 1;
        self.inner.put(key, bytes).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
}

/// What the generator below writes: numbered lines on stdout, numbered lines with raw
/// non-UTF-8 bytes on stderr, interleaved, in `n` lines each.
fn expected(n: usize) -> (Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for i in 0..n {
        out.extend_from_slice(format!("out {i:06} {}\n", "o".repeat(i % 50)).as_bytes());
        err.extend_from_slice(format!("err {i:06} ").as_bytes());
        err.extend_from_slice(&[0xff, 0xfe, 0x00, (i % 256) as u8, b'\n']);
    }
    (out, err)
}

const GEN: &str = r#"
import sys, time
n, pause = int(sys.argv[1]), float(sys.argv[2])
o, e = sys.stdout.buffer, sys.stderr.buffer
for i in range(n):
    o.write(b"out %06d %s\n" % (i, b"o" * (i % 50)))
    e.write(b"err %06d " % i + bytes([0xff, 0xfe, 0x00, i % 256]) + b"\n")
    if i % 500 == 0:
        o.flush(); e.flush(); time.sleep(pause)
o.flush(); e.flush()
sys.exit(3)
"#;

fn opts(store: Arc<Flaky>, spool: &std::path::Path, run_id: &str, finish: Duration) -> MonitorOptions {
    MonitorOptions {
        interval: Duration::from_millis(50),
        job: "logs".into(),
        run_id: run_id.into(),
        gpu: false,
        handle_signals: false,
        spool_dir: Some(spool.to_path_buf()),
        upload: Some(UploadOptions {
            store,
            every: Duration::from_millis(200),
            runtime: None,
            finish_timeout: finish,
        }),
        pass_output: false,
        ..Default::default()
    }
}

fn generator(n: usize, pause: f64) -> CommandSpec {
    CommandSpec {
        argv: vec![
            "python3".into(),
            "-c".into(),
            GEN.into(),
            n.to_string(),
            pause.to_string(),
        ],
        ..Default::default()
    }
}

/// Every log part of the run, decoded with the one reader, reassembled per stream.
fn reassemble(store: &Flaky, keys: &RunKeys) -> (Vec<u8>, Vec<u8>, usize) {
    let map = store.inner.0.lock().unwrap();
    let parts: Vec<&Vec<u8>> = map
        .iter()
        .filter(|(k, _)| k.starts_with(&keys.logs_prefix()))
        .map(|(_, v)| v)
        .collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut last_ts = i64::MIN;
    for p in &parts {
        for r in spotfit_monitor::logs::read_part(p).unwrap() {
            assert!(r.ts_ms >= last_ts, "records are in arrival order");
            last_ts = r.ts_ms;
            match r.stream {
                Stream::Stdout => out.extend_from_slice(&r.bytes),
                Stream::Stderr => err.extend_from_slice(&r.bytes),
            }
        }
    }
    (out, err, parts.len())
}

fn keys_of(o: &Outcome) -> RunKeys {
    RunKeys::new(&o.summary.job, o.summary.started_at_ms, &o.summary.run_id)
}

#[test]
fn every_byte_of_both_streams_arrives_once_through_an_outage() {
    // GIVEN a bucket that refuses log parts for the first 0.8 s of a ~1.5 s job writing 6 MB
    let store = Arc::new(Flaky::default());
    store.down.store(true, Ordering::SeqCst);
    let spool = tempfile::tempdir().unwrap();
    let s2 = store.clone();
    let heal = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(800));
        s2.down.store(false, Ordering::SeqCst);
    });
    let n = 60_000;
    let out = run_command(
        &generator(n, 0.01),
        &opts(store.clone(), spool.path(), "outage", Duration::from_secs(20)),
        &mut |_| {},
    )
    .unwrap();
    heal.join().unwrap();
    // THEN the job's failure is its own, uploads were refused and retried, and everything landed
    assert_eq!(out.exit.code, Some(3));
    assert!(store.refused.load(Ordering::SeqCst) > 0, "the outage was seen");
    let up = out.upload.as_ref().unwrap();
    assert!(up.parts_pending == 0 && up.exit_marker_uploaded, "{up:?}");
    let keys = keys_of(&out);
    let (got_out, got_err, parts) = reassemble(&store, &keys);
    let (want_out, want_err) = expected(n);
    assert!(parts >= 2, "several parts ({parts})");
    assert_eq!(got_out.len(), want_out.len());
    assert!(got_out == want_out, "stdout byte-exact, once");
    assert!(got_err == want_err, "stderr byte-exact, once (non-UTF-8 included)");
    // each part was stored once (a refused put stores nothing; no part was put twice)
    assert!(store
        .puts
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("logs/"))
        .all(|(_, c)| *c == 1));
    // AND the summary keeps the last 64 KiB of each, ending with the job's last lines
    let s = &out.summary;
    assert!(s
        .stdout_tail
        .ends_with(&format!("out {:06} {}\n", n - 1, "o".repeat((n - 1) % 50))));
    assert!(s
        .stderr_tail
        .contains(&format!("err {:06} \u{fffd}\u{fffd}\u{0}", n - 1)));
    assert!(s.stdout_tail.len() <= 64 * 1024 && s.stdout_tail.len() > 60 * 1024);
    // the spool acknowledged every part
    assert!(!std::fs::read_dir(spool.path()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".log.gz")));
}

#[test]
fn log_parts_left_by_an_agent_that_could_not_ship_are_shipped_once_by_resume() {
    // GIVEN an agent that ended while the bucket refused every log part
    let store = Arc::new(Flaky::default());
    store.down.store(true, Ordering::SeqCst);
    let spool = tempfile::tempdir().unwrap();
    let n = 5_000;
    let out = run_command(
        &generator(n, 0.05),
        &opts(store.clone(), spool.path(), "crashed", Duration::from_millis(400)),
        &mut |_| {},
    )
    .unwrap();
    let up = out.upload.clone().unwrap();
    assert!(up.parts_pending > 0 && !up.exit_marker_uploaded, "{up:?}");
    // and, as an agent killed mid-write leaves it, an uncut segment ending in a torn record
    let mut seg = Vec::new();
    spotfit_core::logs::append_record(&mut seg, Stream::Stdout, i64::MAX, b"after the cut\n");
    let whole = seg.len();
    seg.extend_from_slice(&[1, 0, 0]);
    let next = std::fs::read_dir(spool.path())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            name.strip_prefix("log-")?.get(..5)?.parse::<u64>().ok()
        })
        .max()
        .unwrap()
        + 1;
    std::fs::write(spool.path().join(format!("log-{next:05}.frames")), &seg).unwrap();
    assert!(whole < seg.len());
    // WHEN the bucket is back and the spool is resumed, twice (a retried resume)
    store.down.store(false, Ordering::SeqCst);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r1 = rt.block_on(upload_spool(spool.path(), store.as_ref(), false)).unwrap();
    assert!(r1.parts_pending == 0 && r1.exit_marker_uploaded, "{r1:?}");
    let keys_before: Vec<String> = store.inner.0.lock().unwrap().keys().cloned().collect();
    let r2 = rt.block_on(upload_spool(spool.path(), store.as_ref(), true)).unwrap();
    assert!(r2.parts_pending == 0);
    // THEN every byte is there once: the resume re-put the same keys, adding none
    let keys_after: Vec<String> = store.inner.0.lock().unwrap().keys().cloned().collect();
    assert_eq!(keys_before, keys_after);
    let (got_out, got_err, _) = reassemble(&store, &keys_of(&out));
    let (mut want_out, want_err) = expected(n);
    want_out.extend_from_slice(b"after the cut\n");
    assert!(got_out == want_out, "stdout once, the torn record dropped");
    assert!(got_err == want_err);
}

#[test]
fn a_process_left_holding_the_output_does_not_hold_the_end() {
    // GIVEN a job that exits at once but leaves a child with its stdout and stderr open
    let store = Arc::new(Flaky::default());
    let spool = tempfile::tempdir().unwrap();
    let cmd = CommandSpec {
        argv: vec!["sh".into(), "-c".into(), "echo started; sleep 6 & echo gone >&2".into()],
        ..Default::default()
    };
    let t0 = Instant::now();
    let out = run_command(
        &cmd,
        &opts(store.clone(), spool.path(), "linger", Duration::from_secs(5)),
        &mut |_| {},
    )
    .unwrap();
    // THEN the run ends after the drain bound, not when the child does, with what was written
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(out.exit.code, Some(0));
    assert_eq!(out.summary.stdout_tail, "started\n");
    assert_eq!(out.summary.stderr_tail, "gone\n");
    let (o, e, _) = reassemble(&store, &keys_of(&out));
    assert_eq!((o.as_slice(), e.as_slice()), (&b"started\n"[..], &b"gone\n"[..]));
}

#[test]
fn without_a_spool_the_output_still_passes_and_the_tails_are_kept() {
    let cmd = CommandSpec {
        argv: vec!["sh".into(), "-c".into(), "echo to-out; echo to-err >&2; exit 1".into()],
        ..Default::default()
    };
    let opts = MonitorOptions {
        interval: Duration::from_millis(50),
        gpu: false,
        handle_signals: false,
        ..Default::default()
    };
    let out = run_command(&cmd, &opts, &mut |_| {}).unwrap();
    assert_eq!(out.summary.stdout_tail, "to-out\n");
    assert_eq!(out.summary.stderr_tail, "to-err\n");
}
