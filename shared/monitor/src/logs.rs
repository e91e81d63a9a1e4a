//! The job's stdout and stderr: captured through pipes, passed through to the agent's own
//! stdout/stderr unchanged, appended to the spool as framed records ([`spotfit_core::logs`]),
//! and shipped as log parts by the spool's uploader, exactly once like the samples.
//!
//! One reader thread per stream, started once per run. A reader appends each read to the
//! current spool segment (`log-<n>.frames`, a local file: a job writing fast is never held up
//! by the upload) before passing it through, so nothing the job wrote can be lost to a slow
//! console. A cut seals the segment and compresses it into `log-<n>.log.gz`; a segment left by
//! an agent that died is compressed by the next one or by `--resume-spool`.

use flate2::write::GzEncoder;
use spotfit_core::logs::{complete_len, decode_part, header, Record, Stream, TailBuf, MAGIC, SUMMARY_TAIL_BYTES};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A segment is sealed at this size even between cuts, so one part never holds more than
/// this (a job printing 100 MB/s with 60 s parts would otherwise make 6 GB parts).
const SEGMENT_BYTES: u64 = 16 << 20;
/// One read from a pipe: at most a pipe's default capacity.
const READ_BYTES: usize = 64 * 1024;
/// How long the end of a run waits for the pipes to reach end-of-file after the job exited: a
/// grandchild that keeps them open (a daemon the job started) must not hold the run's end.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// The same when the agent was signalled (its whole flush has under 2 s).
pub(crate) const DRAIN_TIMEOUT_SIGNALLED: Duration = Duration::from_millis(200);

fn frames_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("log-{n:05}.frames"))
}

/// Where spooled output goes.
#[derive(Debug)]
enum Target {
    /// Before the spool is open (the job starts first): kept in memory, written at attach.
    Waiting(Vec<u8>),
    Dir {
        dir: PathBuf,
        seg: u64,
        file: Option<File>,
        seg_len: u64,
    },
    /// No spool (neither upload nor spool directory), or capture is over: tails only.
    Off,
}

#[derive(Debug)]
struct SinkState {
    target: Target,
    sealed: Vec<u64>,
    tails: [TailBuf; 2],
    closed: bool,
}

/// What both reader threads append to; the sampling thread cuts it.
#[derive(Debug)]
pub(crate) struct LogSink {
    state: Mutex<SinkState>,
}

impl LogSink {
    fn new() -> Self {
        Self {
            state: Mutex::new(SinkState {
                target: Target::Waiting(Vec::new()),
                sealed: Vec::new(),
                tails: [TailBuf::new(SUMMARY_TAIL_BYTES), TailBuf::new(SUMMARY_TAIL_BYTES)],
                closed: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SinkState> {
        // A reader that panicked mid-append leaves whole records behind (see `write_record`).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn append(&self, stream: Stream, bytes: &[u8]) {
        let mut st = self.lock();
        // Under the lock: the records' order in the spool is the arrival order, and so are
        // their times (as far as the wall clock goes forward).
        let ts_ms = chrono::Utc::now().timestamp_millis();
        st.tails[stream as usize - 1].push(bytes);
        if st.closed {
            return;
        }
        let SinkState { target, sealed, .. } = &mut *st;
        match target {
            Target::Waiting(buf) => spotfit_core::logs::append_record(buf, stream, ts_ms, bytes),
            Target::Dir {
                dir,
                seg,
                file,
                seg_len,
            } => {
                if let Err(e) = write_record(dir, *seg, file, seg_len, stream, ts_ms, bytes) {
                    tracing::error!(error = %e, stream = stream.as_str(), bytes = bytes.len(), "spooling job output failed; these bytes are not shipped");
                }
                if *seg_len >= SEGMENT_BYTES {
                    seal(seg, file, seg_len, sealed);
                }
            }
            Target::Off => {}
        }
    }

    /// The spool is open: output goes to segments numbered from `first_seg` in `dir`.
    pub(crate) fn attach(&self, dir: &Path, first_seg: u64) -> std::io::Result<()> {
        let mut st = self.lock();
        let early = match std::mem::replace(&mut st.target, Target::Off) {
            Target::Waiting(buf) => buf,
            _ => Vec::new(),
        };
        let mut file = None;
        let mut seg_len = 0;
        if !early.is_empty() {
            let mut f = open_segment(dir, first_seg)?;
            f.write_all(&early)?;
            seg_len = early.len() as u64;
            file = Some(f);
        }
        st.target = Target::Dir {
            dir: dir.to_path_buf(),
            seg: first_seg,
            file,
            seg_len,
        };
        Ok(())
    }

    /// No spool for this run: keep the tails only.
    pub(crate) fn detach(&self) {
        self.lock().target = Target::Off;
    }

    /// Seals the current segment (when it holds anything) and returns every sealed segment not
    /// taken before, in order.
    pub(crate) fn take_sealed(&self) -> Vec<u64> {
        let mut st = self.lock();
        let SinkState { target, sealed, .. } = &mut *st;
        if let Target::Dir { seg, file, seg_len, .. } = target {
            seal(seg, file, seg_len, sealed);
        }
        std::mem::take(sealed)
    }

    /// Stops spooling (what a lingering grandchild writes later is still passed through) and
    /// returns the tails of stdout and stderr as text.
    fn close(&self) -> (String, String) {
        let mut st = self.lock();
        st.closed = true;
        (st.tails[0].text(), st.tails[1].text())
    }
}

fn open_segment(dir: &Path, n: u64) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(frames_path(dir, n))
}

/// Appends one record with one `write` of header and bytes; on a failed or short write the
/// segment is cut back to its last whole record, so a later record never follows a torn one.
fn write_record(
    dir: &Path,
    seg: u64,
    file: &mut Option<File>,
    seg_len: &mut u64,
    stream: Stream,
    ts_ms: i64,
    bytes: &[u8],
) -> std::io::Result<()> {
    if file.is_none() {
        *file = Some(open_segment(dir, seg)?);
    }
    let Some(f) = file.as_mut() else { return Ok(()) };
    let mut rec = Vec::with_capacity(spotfit_core::logs::HEADER_LEN + bytes.len());
    rec.extend_from_slice(&header(stream, ts_ms, bytes.len()));
    rec.extend_from_slice(bytes);
    match f.write_all(&rec) {
        Ok(()) => {
            *seg_len += rec.len() as u64;
            Ok(())
        }
        Err(e) => {
            let _ = f.set_len(*seg_len);
            *file = None;
            Err(e)
        }
    }
}

fn seal(seg: &mut u64, file: &mut Option<File>, seg_len: &mut u64, sealed: &mut Vec<u64>) {
    if *seg_len == 0 {
        return;
    }
    file.take();
    sealed.push(*seg);
    *seg += 1;
    *seg_len = 0;
}

/// Compresses sealed segment `n` into its part (`gzip(MAGIC ++ records)`, fixed once written:
/// tmp file, fsync, rename) and removes the segment. Only whole records are kept (a segment
/// cut by a crash ends in a torn one). `Ok(false)`: nothing to ship.
pub(crate) fn compress_segment(dir: &Path, n: u64) -> std::io::Result<bool> {
    let seg = frames_path(dir, n);
    let bytes = std::fs::read(&seg)?;
    let whole = complete_len(&bytes);
    if whole < bytes.len() {
        tracing::warn!(
            segment = n,
            torn = bytes.len() - whole,
            "a spooled log segment ends in a torn record; dropped it"
        );
    }
    let made = whole > 0;
    if made {
        let tmp = dir.join(format!(".log-{n:05}.tmp"));
        // Fast compression: logs are big and the agent's CPU is the job's; text still shrinks ~5×.
        let mut gz = GzEncoder::new(File::create(&tmp)?, flate2::Compression::fast());
        gz.write_all(MAGIC)?;
        gz.write_all(&bytes[..whole])?;
        gz.finish()?.sync_all()?;
        std::fs::rename(&tmp, crate::spool::kind_path(dir, crate::spool::PartKind::Logs, n))?;
    }
    std::fs::remove_file(&seg)?;
    Ok(made)
}

/// Turns the segments a stopped agent left in `dir` into parts (a segment whose part already
/// exists was compressed just before the agent stopped: it is only removed). Returns the new
/// parts' numbers.
pub(crate) fn seal_leftover_segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut segs: Vec<u64> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            name.strip_prefix("log-")?.strip_suffix(".frames")?.parse().ok()
        })
        .collect();
    segs.sort_unstable();
    let parts = crate::spool::existing_parts(dir, crate::spool::PartKind::Logs)?;
    let mut made = Vec::new();
    for n in segs {
        if parts.iter().any(|(p, _)| *p == n) {
            std::fs::remove_file(frames_path(dir, n))?;
        } else if compress_segment(dir, n)? {
            made.push(n);
        }
    }
    Ok(made)
}

/// One of the job's pipes, as its reader thread reads it.
type Pipe = Box<dyn Read + Send>;

/// The capture of one job's stdout and stderr.
#[derive(Debug)]
pub(crate) struct Capture {
    sink: Arc<LogSink>,
    stdout_to_stderr: bool,
    pass: bool,
    done: Option<Receiver<()>>,
    readers: usize,
}

impl Capture {
    /// Gives `command` pipes for stdout and stderr. `stdout_to_stderr`: the job's stdout is
    /// passed through to the agent's stderr (the agent's stdout carries samples). `pass`:
    /// pass the output through at all.
    pub(crate) fn pipe(command: &mut Command, stdout_to_stderr: bool, pass: bool) -> Self {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        Self {
            sink: Arc::new(LogSink::new()),
            stdout_to_stderr,
            pass,
            done: None,
            readers: 0,
        }
    }

    /// Adds what the agent itself says about the job (it could not be started, and why) to
    /// the job's log, as if the job had written it.
    pub(crate) fn note(&self, stream: Stream, bytes: &[u8]) {
        self.sink.append(stream, bytes);
    }

    pub(crate) fn sink(&self) -> Arc<LogSink> {
        self.sink.clone()
    }

    /// Starts one reader thread per stream of the started job.
    pub(crate) fn start(&mut self, child: &mut Child) -> Result<(), crate::MonitorError> {
        let (tx, rx) = mpsc::channel::<()>();
        let out_fd = if self.stdout_to_stderr { 2 } else { 1 };
        let streams: [(Option<Pipe>, Stream, i32); 2] = [
            (child.stdout.take().map(|p| Box::new(p) as _), Stream::Stdout, out_fd),
            (child.stderr.take().map(|p| Box::new(p) as _), Stream::Stderr, 2),
        ];
        for (pipe, stream, fd) in streams {
            let Some(pipe) = pipe else { continue };
            let (sink, tx) = (self.sink.clone(), tx.clone());
            let pass = if self.pass { passthrough(fd) } else { None };
            std::thread::Builder::new()
                .name(format!("spotfit-{}", stream.as_str()))
                .spawn(move || {
                    pump(pipe, stream, pass, &sink);
                    let _ = tx.send(());
                })
                .map_err(|source| crate::MonitorError::Setup {
                    what: "log reader thread",
                    source,
                })?;
            self.readers += 1;
        }
        self.done = Some(rx);
        Ok(())
    }

    /// After the job exited: waits up to `within` for both pipes to reach end-of-file (every
    /// byte the job wrote is then spooled), stops spooling, and returns the tails (stdout,
    /// stderr). A reader still blocked (a grandchild holds the pipe) goes on passing through.
    pub(crate) fn finish(self, within: Duration) -> (String, String) {
        let until = Instant::now() + within;
        let mut left = self.readers;
        if let Some(rx) = &self.done {
            while left > 0 {
                let wait = until.saturating_duration_since(Instant::now());
                if rx.recv_timeout(wait).is_err() {
                    tracing::warn!(
                        within = ?within,
                        "the job's output is still open (a process it started holds it); later output is not spooled"
                    );
                    break;
                }
                left -= 1;
            }
        }
        self.sink.close()
    }
}

/// A duplicate of the agent's fd 1 or 2 to pass the job's bytes through, unbuffered.
fn passthrough(fd: i32) -> Option<File> {
    use std::os::fd::AsFd;
    let owned = if fd == 1 {
        std::io::stdout().as_fd().try_clone_to_owned()
    } else {
        std::io::stderr().as_fd().try_clone_to_owned()
    };
    owned.ok().map(File::from)
}

fn pump(mut pipe: Pipe, stream: Stream, mut pass: Option<File>, sink: &LogSink) {
    let mut buf = vec![0u8; READ_BYTES];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // Spool first: a console that stalls or is gone never costs the record.
                sink.append(stream, &buf[..n]);
                if let Some(p) = pass.as_mut() {
                    if p.write_all(&buf[..n]).is_err() {
                        pass = None; // the agent's own stdout is gone; keep spooling
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(stream = stream.as_str(), error = %e, "reading the job's output failed");
                break;
            }
        }
    }
}

/// Reads one log part as stored (`part-<n>.log.gz`): gunzip, then [`decode_part`]. The one
/// reader of the format, for `spotfit logs` and the tests.
pub fn read_part(gz: &[u8]) -> Result<Vec<Record>, spotfit_core::logs::LogFormatError> {
    let mut raw = Vec::new();
    if flate2::read::GzDecoder::new(gz).read_to_end(&mut raw).is_err() {
        return Err(spotfit_core::logs::LogFormatError::BadMagic);
    }
    decode_part(&raw)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn segments_become_parts_with_every_byte_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LogSink::new();
        // output before the spool is open is kept and written first
        sink.append(Stream::Stdout, b"early\n");
        sink.attach(dir.path(), 3).unwrap();
        sink.append(Stream::Stderr, b"\xff\x00raw");
        sink.append(Stream::Stdout, b"late\n");
        let sealed = sink.take_sealed();
        assert_eq!(sealed, vec![3]);
        assert!(sink.take_sealed().is_empty(), "nothing new: no empty part");
        assert!(compress_segment(dir.path(), 3).unwrap());
        assert!(!frames_path(dir.path(), 3).exists());
        let gz = std::fs::read(dir.path().join("log-00003.log.gz")).unwrap();
        let recs = read_part(&gz).unwrap();
        let got: Vec<(Stream, &[u8])> = recs.iter().map(|r| (r.stream, r.bytes.as_slice())).collect();
        assert_eq!(
            got,
            vec![
                (Stream::Stdout, &b"early\n"[..]),
                (Stream::Stderr, &b"\xff\x00raw"[..]),
                (Stream::Stdout, &b"late\n"[..])
            ]
        );
        let (out, err) = sink.close();
        assert_eq!(out, "early\nlate\n");
        assert_eq!(err, "\u{fffd}\u{0}raw");
        assert!(read_part(b"not gzip").is_err());
    }

    #[test]
    fn a_segment_torn_by_a_crash_is_sealed_by_the_next_agent() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Vec::new();
        spotfit_core::logs::append_record(&mut seg, Stream::Stdout, 1, b"whole\n");
        let whole = seg.len();
        spotfit_core::logs::append_record(&mut seg, Stream::Stdout, 2, b"torn record");
        std::fs::write(frames_path(dir.path(), 0), &seg[..whole + 15]).unwrap();
        // segment 1 was compressed just before the crash: only removed
        std::fs::write(frames_path(dir.path(), 1), b"x").unwrap();
        std::fs::write(dir.path().join("log-00001.log.gz.done"), b"").unwrap();
        assert_eq!(seal_leftover_segments(dir.path()).unwrap(), vec![0]);
        let recs = read_part(&std::fs::read(dir.path().join("log-00000.log.gz")).unwrap()).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].bytes, b"whole\n");
        assert!(!frames_path(dir.path(), 1).exists());
    }
}
