//! The spool and the uploader: every sample is appended to `<spool>/samples.ndjson` first; every
//! `every` seconds the lines since the last cut become `<spool>/part-<n>.ndjson.gz` (content
//! fixed once cut, so its key `…/part-<n>.ndjson.gz` always holds the same bytes), and a single
//! uploader thread puts pending parts in order, retrying with backoff until the store answers.
//! An uploaded part is renamed `*.done`. Whatever is not uploaded when the agent stops stays in
//! the spool; [`upload_spool`] finishes the job later. Retries overwrite, never duplicate.
//!
//! The job's stdout and stderr travel the same way as a second kind of part ([`PartKind::Logs`]):
//! [`crate::logs`] appends them to `<spool>/log-<n>.frames` segments, a cut compresses each
//! sealed segment into `<spool>/log-<n>.log.gz`, and the same queue, `.done` acknowledgement and
//! resume ship it to `…/part-<n>.log.gz` under `logs/`.

use crate::MonitorError;
use flate2::write::GzEncoder;
use spotfit_core::ids::RunKeys;
use spotfit_core::ports::ObjectStore;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// First retry after this; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Long enough not to hammer a store that is down, short enough to catch up soon after it returns.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// One PUT of a part (a minute of samples is a few KiB gzipped) never takes this long when the
/// store is healthy; a hung connection is abandoned and retried.
pub(crate) const PUT_TIMEOUT: Duration = Duration::from_secs(5);
/// Times in a row the store may refuse a part (an error no retry mends: access denied, a bad
/// key) before the live uploader skips it, keeping it in the spool for `--resume-spool`. A
/// refusal that lasts is a deployment's fault, and waiting on it would hold back the summary
/// and the exit marker until the finish deadline, so that the run would read as lost; a few
/// tries with backoff (~8 s) ride out IAM's propagation delay after a change.
pub(crate) const REFUSALS_BEFORE_SKIP: u32 = 5;

const RUN_FILE: &str = "run.json";

/// What a spool belongs to: enough to rebuild its object keys when resuming.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpoolRun {
    pub job: String,
    pub run_id: String,
    pub started_at_ms: i64,
}

impl SpoolRun {
    /// Reads `<dir>/run.json`.
    pub fn load(dir: &Path) -> Result<Self, MonitorError> {
        let path = dir.join(RUN_FILE);
        let bytes = std::fs::read(&path).map_err(|source| MonitorError::Spool {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| MonitorError::Spool {
            path,
            source: std::io::Error::other(e),
        })
    }
    pub fn keys(&self) -> RunKeys {
        RunKeys::new(&self.job, self.started_at_ms, &self.run_id)
    }
}

/// What reached the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadReport {
    pub parts_uploaded: u64,
    /// Parts still only in the spool (the store was unreachable until the deadline).
    pub parts_pending: u64,
    pub summary_uploaded: bool,
    pub exit_marker_uploaded: bool,
    pub retries: u64,
    /// Parts the store kept refusing ([`REFUSALS_BEFORE_SKIP`] times): skipped, left in the spool.
    pub parts_refused: u64,
}

/// The two kinds of part a spool ships, each numbered on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum PartKind {
    /// `part-<n>.ndjson.gz`: samples.
    Samples,
    /// `log-<n>.log.gz`: the job's stdout and stderr ([`spotfit_core::logs`]).
    Logs,
}

impl PartKind {
    const ALL: [PartKind; 2] = [PartKind::Samples, PartKind::Logs];
    fn file_prefix(self) -> &'static str {
        match self {
            PartKind::Samples => "part-",
            PartKind::Logs => "log-",
        }
    }
    fn file_suffix(self) -> &'static str {
        match self {
            PartKind::Samples => ".ndjson.gz",
            PartKind::Logs => ".log.gz",
        }
    }
    fn key(self, keys: &RunKeys, n: u64) -> String {
        match self {
            PartKind::Samples => keys.sample_part(n),
            PartKind::Logs => keys.log_part(n),
        }
    }
}

/// Appends samples and cuts parts. Lives on the sampling thread.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    file: File,
    pending: Vec<u8>,
    line: Vec<u8>,
    next_part: u64,
    /// The job's output, when it is captured (command mode).
    logs: Option<Arc<crate::logs::LogSink>>,
}

impl Spool {
    /// Opens (or continues) the spool of one run; `run.json` records what names its keys.
    pub(crate) fn open(dir: &Path, keys: &RunKeys, started_at_ms: i64) -> Result<Self, MonitorError> {
        let err = |source| MonitorError::Spool {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        if !dir.join(RUN_FILE).exists() {
            let run = SpoolRun {
                job: keys.job.clone(),
                run_id: keys.run_id.clone(),
                started_at_ms,
            };
            std::fs::write(dir.join(RUN_FILE), serde_json::to_vec(&run).unwrap_or_default()).map_err(err)?;
        }
        // Continue numbering after parts a previous agent left, so a restart never reuses a name.
        let next_part = existing_parts(dir, PartKind::Samples)
            .map_err(err)?
            .iter()
            .map(|(n, _)| n + 1)
            .max()
            .unwrap_or(0);
        let path = dir.join("samples.ndjson");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| MonitorError::Spool { path, source })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            file,
            pending: Vec::with_capacity(64 * 1024),
            line: Vec::new(),
            next_part,
            logs: None,
        })
    }

    /// Spools the job's output captured by `sink` from now on (and what it held until now), in
    /// segments numbered after the log parts already here (a previous agent's, sealed first).
    pub(crate) fn attach_logs(&mut self, sink: Arc<crate::logs::LogSink>) -> Result<(), MonitorError> {
        let err = |source| MonitorError::Spool {
            path: self.dir.clone(),
            source,
        };
        crate::logs::seal_leftover_segments(&self.dir).map_err(err)?;
        let next = existing_parts(&self.dir, PartKind::Logs)
            .map_err(err)?
            .iter()
            .map(|(n, _)| n + 1)
            .max()
            .unwrap_or(0);
        sink.attach(&self.dir, next).map_err(err)?;
        self.logs = Some(sink);
        Ok(())
    }

    /// Seals the job output spooled since the last cut into log parts; returns their numbers.
    pub(crate) fn cut_logs(&mut self) -> Vec<u64> {
        let Some(sink) = &self.logs else {
            return Vec::new();
        };
        sink.take_sealed()
            .into_iter()
            .filter(|&n| match crate::logs::compress_segment(&self.dir, n) {
                Ok(made) => made,
                Err(e) => {
                    // The segment stays; `--resume-spool` (or the next agent) compresses it.
                    tracing::error!(segment = n, error = %e, "compressing a log segment failed");
                    false
                }
            })
            .collect()
    }

    /// Appends one sample (one `write` call; the page cache keeps it if we die).
    pub(crate) fn append(&mut self, s: &spotfit_core::Sample) -> std::io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, s).map_err(std::io::Error::other)?;
        self.line.push(b'\n');
        self.file.write_all(&self.line)?;
        self.pending.extend_from_slice(&self.line);
        Ok(())
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Turns the lines since the last cut into the next part file; returns its number.
    pub(crate) fn cut(&mut self) -> std::io::Result<Option<u64>> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let n = self.next_part;
        let tmp = self.dir.join(format!(".part-{n:05}.tmp"));
        let mut gz = GzEncoder::new(File::create(&tmp)?, flate2::Compression::default());
        gz.write_all(&self.pending)?;
        gz.finish()?.sync_all()?;
        std::fs::rename(&tmp, part_path(&self.dir, n))?;
        self.pending.clear();
        self.next_part += 1;
        Ok(Some(n))
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

fn part_path(dir: &Path, n: u64) -> PathBuf {
    kind_path(dir, PartKind::Samples, n)
}

pub(crate) fn kind_path(dir: &Path, kind: PartKind, n: u64) -> PathBuf {
    dir.join(format!("{}{n:05}{}", kind.file_prefix(), kind.file_suffix()))
}

/// Parts of one kind in a spool directory: (number, uploaded?).
pub(crate) fn existing_parts(dir: &Path, kind: PartKind) -> std::io::Result<Vec<(u64, bool)>> {
    let mut out = Vec::new();
    let done_suffix = format!("{}.done", kind.file_suffix());
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        let Some(rest) = name.strip_prefix(kind.file_prefix()) else {
            continue;
        };
        let (num, done) = if let Some(r) = rest.strip_suffix(done_suffix.as_str()) {
            (r, true)
        } else if let Some(r) = rest.strip_suffix(kind.file_suffix()) {
            (r, false)
        } else {
            continue;
        };
        if let Ok(n) = num.parse() {
            out.push((n, done));
        }
    }
    out.sort_unstable();
    Ok(out)
}

pub(crate) enum UpCmd {
    Part(PartKind, u64),
    /// Upload the summary then the exit marker after every part, and report.
    Finish {
        summary: Vec<u8>,
        exit_marker: Vec<u8>,
        done: Sender<UploadReport>,
    },
}

/// Handle to the uploader thread.
#[derive(Debug)]
pub(crate) struct Uploader {
    tx: Option<Sender<UpCmd>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Closed when the upload thread has returned.
    ended: Option<Receiver<()>>,
}

impl Uploader {
    /// Ends the upload thread when the run is over: closing the channel makes it stop after the
    /// put in flight (at most [`PUT_TIMEOUT`]); waiting for it keeps that put from outliving the
    /// caller's tokio runtime (a put on a runtime being shut down panics). `budget` bounds the
    /// wait (a signalled agent has under 2 s in all); what was not shipped stays in the spool
    /// for `--resume-spool`.
    pub(crate) fn close(mut self, budget: Duration) {
        self.tx.take();
        let ended = self
            .ended
            .take()
            .is_some_and(|rx| matches!(rx.recv_timeout(budget), Err(RecvTimeoutError::Disconnected)));
        if let (true, Some(t)) = (ended, self.thread.take()) {
            let _ = t.join();
        }
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(rx) = self.ended.take() {
            let _ = rx.recv_timeout(PUT_TIMEOUT + Duration::from_secs(1));
        }
    }
}

/// Creates a fresh spool directory for `run_id` under `tmp` with `mkdtemp(3)`: a new name with
/// a random suffix, mode 0700, created atomically by us (never an existing path, so a directory
/// or symlink another user planted under a shared `$TMPDIR` is never followed).
pub fn private_dir(tmp: &Path, run_id: &str) -> Result<PathBuf, MonitorError> {
    let template = tmp.join(format!("spotfit-spool-{run_id}-XXXXXX"));
    nix::unistd::mkdtemp(&template).map_err(|errno| MonitorError::Spool {
        path: template,
        source: errno.into(),
    })
}

impl std::fmt::Debug for UpCmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpCmd::Part(k, n) => write!(f, "Part({k:?}, {n})"),
            UpCmd::Finish { .. } => f.write_str("Finish"),
        }
    }
}

impl Uploader {
    pub(crate) fn start(
        dir: PathBuf,
        keys: RunKeys,
        store: Arc<dyn ObjectStore>,
        runtime: Option<tokio::runtime::Handle>,
    ) -> Result<Self, MonitorError> {
        let (tx, rx) = mpsc::channel();
        // Parts a previous agent cut but never uploaded go first.
        let mut leftover = Vec::new();
        for kind in PartKind::ALL {
            let parts = existing_parts(&dir, kind).map_err(|source| MonitorError::Spool {
                path: dir.clone(),
                source,
            })?;
            leftover.extend(parts.into_iter().filter(|(_, done)| !done).map(|(n, _)| (kind, n)));
        }
        let rt = match runtime {
            Some(h) => Rt::Handle(h),
            None => Rt::Own(
                tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .enable_io()
                    .build()
                    .map_err(|source| MonitorError::Setup {
                        what: "uploader runtime",
                        source,
                    })?,
            ),
        };
        let (ended_tx, ended) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("spotfit-upload".into())
            .spawn(move || {
                let _ended = ended_tx; // dropped, closing `ended`, when the loop returns
                upload_loop(dir, keys, store, rt, rx, leftover)
            })
            .map_err(|source| MonitorError::Setup {
                what: "uploader thread",
                source,
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            ended: Some(ended),
        })
    }

    pub(crate) fn part(&self, kind: PartKind, n: u64) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(UpCmd::Part(kind, n));
        }
    }

    /// Queues the summary and exit marker and waits up to `timeout` for everything to land.
    pub(crate) fn finish(&self, summary: Vec<u8>, exit_marker: Vec<u8>, timeout: Duration, dir: &Path) -> UploadReport {
        let (done_tx, done_rx) = mpsc::channel();
        let sent = self.tx.as_ref().is_some_and(|tx| {
            tx.send(UpCmd::Finish {
                summary,
                exit_marker,
                done: done_tx,
            })
            .is_ok()
        });
        if !sent {
            return pending_report(dir);
        }
        done_rx.recv_timeout(timeout).unwrap_or_else(|_| pending_report(dir))
    }
}

fn pending_report(dir: &Path) -> UploadReport {
    let parts: Vec<(u64, bool)> = PartKind::ALL
        .iter()
        .flat_map(|k| existing_parts(dir, *k).unwrap_or_default())
        .collect();
    UploadReport {
        parts_uploaded: parts.iter().filter(|(_, d)| *d).count() as u64,
        parts_pending: parts.iter().filter(|(_, d)| !*d).count() as u64,
        summary_uploaded: dir.join("summary.json.done").exists(),
        exit_marker_uploaded: dir.join("exit.json.done").exists(),
        retries: 0,
        parts_refused: 0,
    }
}

enum Rt {
    Handle(tokio::runtime::Handle),
    Own(tokio::runtime::Runtime),
}

impl Rt {
    fn run<F: std::future::Future>(&self, fut: F) -> F::Output {
        match self {
            Rt::Handle(h) => h.block_on(fut),
            Rt::Own(rt) => rt.block_on(fut),
        }
    }
}

/// What one put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Put {
    Landed,
    /// Failed in a way a retry may mend (unreachable, throttled, timed out).
    Failed,
    /// Refused in a way no retry mends ([`StoreError::is_retryable`] is false).
    Refused,
}

/// One put, bounded by [`PUT_TIMEOUT`] (a hung connection is abandoned, not waited on), with
/// the failure logged.
async fn put_logged(store: &dyn ObjectStore, key: &str, bytes: Vec<u8>) -> Put {
    match tokio::time::timeout(PUT_TIMEOUT, store.put(key, bytes)).await {
        Ok(Ok(())) => Put::Landed,
        Ok(Err(e)) if !e.is_retryable() => {
            tracing::warn!(
                key,
                error = %e,
                "the store refused the upload; will retry (a part refused {REFUSALS_BEFORE_SKIP} times in a row is skipped and kept in the spool)"
            );
            Put::Refused
        }
        Ok(Err(e)) => {
            tracing::warn!(key, error = %e, "upload failed; will retry");
            Put::Failed
        }
        Err(_) => {
            tracing::warn!(key, "upload timed out; will retry");
            Put::Failed
        }
    }
}

/// Ships part `n` of the spool (again, when `done`, from its `.done` file) and marks it done
/// once it landed: the one part upload of the live path and `--resume-spool`. `Err` when the
/// part file cannot be read.
async fn ship_part(
    store: &dyn ObjectStore,
    dir: &Path,
    keys: &RunKeys,
    (kind, n): (PartKind, u64),
    done: bool,
) -> std::io::Result<Put> {
    let path = if done {
        kind_path(dir, kind, n).with_extension("gz.done")
    } else {
        kind_path(dir, kind, n)
    };
    let bytes = std::fs::read(&path)?;
    let put = put_logged(store, &kind.key(keys, n), bytes).await;
    if put == Put::Landed && !done {
        let _ = std::fs::rename(&path, path.with_extension("gz.done"));
    }
    Ok(put)
}

/// Ships the run's last two objects in the order the check step relies on — the summary, then,
/// only once the summary is in the store, the exit marker (a marker without a summary reads as
/// a corrupt run) — and marks each one that lands with its `.done` file in the spool, so a
/// resumed agent knows where the first one stopped. Without `again`, one already marked done is
/// not shipped twice. The one implementation for the live path and `--resume-spool`. Returns
/// whether both are in the store.
async fn ship_final(
    store: &dyn ObjectStore,
    dir: &Path,
    keys: &RunKeys,
    summary: &[u8],
    marker: &[u8],
    again: bool,
    report: &mut UploadReport,
) -> bool {
    for (file, key, landed) in [
        ("summary.json", keys.summary(), &mut report.summary_uploaded),
        ("exit.json", keys.exit_marker(), &mut report.exit_marker_uploaded),
    ] {
        if !*landed {
            let done = dir.join(format!("{file}.done"));
            let bytes = if file == "summary.json" { summary } else { marker };
            *landed = (!again && done.exists()) || put_logged(store, &key, bytes.to_vec()).await == Put::Landed;
            if *landed {
                let _ = std::fs::write(&done, b"");
            }
        }
        if !*landed {
            return false; // the marker waits for the summary
        }
    }
    true
}

type Finish = (Vec<u8>, Vec<u8>, Sender<UploadReport>);

/// Takes one command into the uploader's work: a part to ship, or the run's end.
fn take(cmd: UpCmd, queue: &mut Vec<(PartKind, u64)>, finish: &mut Option<Finish>) {
    match cmd {
        UpCmd::Part(k, n) => queue.push((k, n)),
        UpCmd::Finish {
            summary,
            exit_marker,
            done,
        } => *finish = Some((summary, exit_marker, done)),
    }
}

fn upload_loop(
    dir: PathBuf,
    keys: RunKeys,
    store: Arc<dyn ObjectStore>,
    rt: Rt,
    rx: Receiver<UpCmd>,
    mut queue: Vec<(PartKind, u64)>,
) {
    let mut report = UploadReport::default();
    let mut finish: Option<Finish> = None;
    let mut backoff = FIRST_BACKOFF;
    let mut closed = false;
    // Refusals of the part at the head of the queue, in a row.
    let mut refusals = 0u32;
    loop {
        // Take every command that has arrived; block only when there is nothing to do.
        loop {
            let idle = queue.is_empty() && finish.is_none();
            let cmd = if idle && !closed {
                rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                rx.try_recv().map_err(|e| match e {
                    mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                    mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            };
            match cmd {
                Ok(c) => take(c, &mut queue, &mut finish),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            // The run is over and its caller gave up waiting: stop here, before touching the
            // caller's runtime again. The spool keeps what is left.
            return;
        }
        let ok = if let Some(&n) = queue.first() {
            match rt.run(ship_part(store.as_ref(), &dir, &keys, n, false)) {
                Ok(Put::Landed) => {
                    report.parts_uploaded += 1;
                    queue.remove(0);
                    refusals = 0;
                    true
                }
                Ok(Put::Refused) if refusals + 1 >= REFUSALS_BEFORE_SKIP => {
                    tracing::error!(
                        part = ?n,
                        tries = REFUSALS_BEFORE_SKIP,
                        "the store keeps refusing this part; skipped (it stays in the spool for --resume-spool)"
                    );
                    report.parts_refused += 1;
                    queue.remove(0);
                    refusals = 0;
                    true
                }
                Ok(Put::Refused) => {
                    refusals += 1;
                    false
                }
                Ok(Put::Failed) => false,
                Err(e) => {
                    // A part file that vanished cannot be uploaded; say so and move on.
                    tracing::error!(part = ?n, error = %e, "spool part unreadable; skipped");
                    queue.remove(0);
                    true
                }
            }
        } else if let Some((summary, marker, _)) = &finish {
            let ok = rt.run(ship_final(
                store.as_ref(),
                &dir,
                &keys,
                summary,
                marker,
                false,
                &mut report,
            ));
            if ok {
                if let Some((_, _, done)) = finish.take() {
                    let _ = done.send(report.clone());
                }
                return;
            }
            false
        } else {
            true
        };
        if ok {
            backoff = FIRST_BACKOFF;
        } else {
            report.retries += 1;
            // Wait out the backoff, but wake for new commands (a Finish must not wait longer).
            let until = Instant::now() + backoff;
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                match rx.recv_timeout(left) {
                    Ok(c) => take(c, &mut queue, &mut finish),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Ships what a stopped agent left in `dir`: its parts (only those not yet acknowledged, or all
/// of them with `all`, e.g. after the bucket lost data), then `summary.json` and `exit.json` if
/// present. Safe to run any number of times: keys are deterministic, so a re-put overwrites.
pub async fn upload_spool(dir: &Path, store: &dyn ObjectStore, all: bool) -> Result<UploadReport, MonitorError> {
    let err = |source| MonitorError::Spool {
        path: dir.to_path_buf(),
        source,
    };
    let keys = SpoolRun::load(dir)?.keys();
    let mut report = UploadReport::default();
    // Job output a stopped agent spooled but never cut becomes parts first.
    crate::logs::seal_leftover_segments(dir).map_err(err)?;
    for kind in PartKind::ALL {
        for (n, done) in existing_parts(dir, kind).map_err(err)? {
            if done && !all {
                continue;
            }
            if ship_part(store, dir, &keys, (kind, n), done).await.map_err(err)? == Put::Landed {
                report.parts_uploaded += 1;
            } else {
                report.parts_pending += 1;
            }
        }
    }
    // The run's end only once every part is in: the same rule, and code, as the live path.
    if report.parts_pending == 0 {
        if let (Ok(summary), Ok(marker)) = (
            std::fs::read(dir.join("summary.json")),
            std::fs::read(dir.join("exit.json")),
        ) {
            ship_final(store, dir, &keys, &summary, &marker, all, &mut report).await;
        }
    }
    Ok(report)
}

/// Writes the summary and exit marker into the spool too, so [`upload_spool`] can finish later.
pub(crate) fn keep_final_files(dir: &Path, summary: &[u8], marker: &[u8]) {
    let _ = std::fs::write(dir.join("summary.json"), summary);
    let _ = std::fs::write(dir.join("exit.json"), marker);
}
