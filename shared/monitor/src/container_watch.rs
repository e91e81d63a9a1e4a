//! Measuring a container job as the container. The monitor's child is the runtime's client
//! (`docker run --cidfile F …`): it is what the monitor waits on for the exit status, and what
//! signals are forwarded to (the client passes them on to the container). The work happens
//! elsewhere — under containerd or conmon, in the container's own cgroup — so a watcher thread
//! waits for the id in the cidfile, finds the container's cgroup (from its process's
//! `/proc/<pid>/cgroup`, else the runtimes' known layouts) and hands it to the sampling loop,
//! which from then on samples that cgroup. Until then the samples are the client's process
//! tree (during a pull: the client's own work); from the switch on the cgroup's counters count
//! from zero, that is from the container's start, so none of the container's CPU is lost.
//!
//! The runtime removes the container's cgroup as soon as the container stops — before the
//! client even returns (measured here with podman: ~50 ms before) — so the last readings would
//! be lost with it. The watcher therefore waits for the cgroup to empty (inotify on the v2
//! `cgroup.events`, which on a hybrid host lives in the unified mount; a 100 ms poll of the
//! counters where there is no v2 hierarchy) and reads the final counters at that moment; the
//! loop's last sample uses them. After the run the monitor asks the runtime whether the
//! container was OOM-killed (`RUNTIME inspect --format {{.State.OOMKilled}} ID`), and once the
//! summary and exit marker are shipped it removes it (`RUNTIME rm -f ID`), both as argv.

use crate::cgroup::{container_cgroup, process_cgroup, Cgroup, CgroupStats, CoresGivenProbe};
use crate::container::ContainerRun;
use crate::procfs::FileReader;
use crate::sampler::Sampler;
use crate::MonitorError;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The container's cgroup, once found.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub id: String,
    pub cg: Cgroup,
}

#[derive(Debug, Default)]
struct State {
    id: Option<String>,
    /// The cgroup, until the sampling loop takes it.
    found: Option<Found>,
    /// The container's processes are gone (or the watcher stopped looking).
    done: bool,
    /// The counters read when the container emptied, before its cgroup was removed.
    last: Option<CgroupStats>,
}

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut State)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
        }
        self.changed.notify_all();
    }
}

/// The watcher of one container job; dropping it removes the container.
#[derive(Debug)]
pub(crate) struct Watch {
    run: ContainerRun,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How long a runtime command (`inspect`, `rm`) may take before it is killed.
const RUNTIME_TIMEOUT: Duration = Duration::from_secs(20);

impl Watch {
    /// Starts watching for `run`'s container (call after starting its client).
    pub(crate) fn start(run: &ContainerRun, root: &Path) -> Result<Watch, MonitorError> {
        let shared = Arc::new(Shared::default());
        let (s, r, root) = (shared.clone(), run.clone(), root.to_path_buf());
        let thread = std::thread::Builder::new()
            .name("spotfit-container".into())
            .spawn(move || {
                watch(&r, &root, &s);
                s.update(|st| st.done = true);
            })
            .map_err(|source| MonitorError::Setup {
                what: "container watcher thread",
                source,
            })?;
        Ok(Watch {
            run: run.clone(),
            shared,
            thread: Some(thread),
        })
    }

    /// The container's cgroup, once, when it has been found (the loop looks at each wake-up).
    pub(crate) fn take_found(&self) -> Option<Found> {
        self.shared.state.lock().ok()?.found.take()
    }

    /// The container's final counters, waiting up to `within` for the watcher to read them
    /// (the client may return a moment before the watcher has). None when the container was
    /// never found or its cgroup was gone before they could be read.
    pub(crate) fn final_stats(&self, within: Duration) -> Option<CgroupStats> {
        let until = Instant::now() + within;
        let mut st = self.shared.state.lock().ok()?;
        // Never seen: the client ended before the container existed (a refused pull).
        if st.id.is_none() && read_cid(&self.run.cidfile).is_none() {
            return None;
        }
        while !st.done {
            let left = until.checked_duration_since(Instant::now())?;
            st = self.shared.changed.wait_timeout(st, left).ok()?.0;
        }
        st.last
    }

    /// Whether the runtime says the container was OOM-killed (false when there was none). The
    /// container itself is removed when the watch is dropped, after the run's last upload: on a
    /// spot interruption the summary and the exit marker go first.
    pub(crate) fn oom_killed(&self) -> bool {
        let Some(id) = self.id() else { return false };
        runtime_output(&self.run.runtime, &["inspect", "--format", "{{.State.OOMKilled}}", &id])
            .is_some_and(|out| out.trim() == "true")
    }

    fn id(&self) -> Option<String> {
        let known = self.shared.state.lock().ok().and_then(|s| s.id.clone());
        known.or_else(|| read_cid(&self.run.cidfile))
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watch {
    /// Removes the container (`RUNTIME rm -f ID`, argv) at the end of the run, and on an error
    /// after the start too.
    fn drop(&mut self) {
        // Seen to empty before the watcher stopped: the container has stopped by itself.
        let ended = self.shared.state.lock().is_ok_and(|s| s.done);
        self.stop();
        if let Some(id) = self.id() {
            if !ended {
                // Still running (the agent stopped its client on a signal or a timeout; a PID 1
                // without a handler ignores SIGTERM): SIGKILL now, as `rm -f` would only after
                // podman's 10 s stop timeout.
                let _ = runtime_output(&self.run.runtime, &["kill", &id]);
            }
            if runtime_output(&self.run.runtime, &["rm", "-f", &id]).is_none() {
                tracing::warn!(container = %id, "could not remove the job's container");
            }
        }
    }
}

/// At each wake-up of the sampling loop: once the container's cgroup is known, sample it (and
/// take the cores it may use from it).
pub(crate) fn on_wake(watch: Option<&Watch>, sampler: &mut Sampler, probe: &mut CoresGivenProbe) {
    if let Some(f) = watch.and_then(Watch::take_found) {
        tracing::info!(container = %f.id, cgroup = %f.cg.procs_dir().display(), "sampling the container's cgroup");
        probe.dirs = match &f.cg {
            Cgroup::V2(d) => vec![d.clone()],
            Cgroup::V1 { cpu, .. } => cpu.iter().cloned().collect(),
        };
        probe.observe();
        sampler.set_cgroup(f.cg);
    }
}

/// Before the run's last sample (the client has exited or been stopped): the container's
/// final counters, read as it stopped, replace readings of its removed cgroup.
/// `within`: how long to wait for them (the container was seen to stop: ~1 s; the agent is
/// stopping it on a signal, within the flush budget: less).
pub(crate) fn before_last_sample(
    watch: Option<&Watch>,
    sampler: &mut Sampler,
    probe: &mut CoresGivenProbe,
    within: Duration,
) {
    let Some(w) = watch else { return };
    on_wake(Some(w), sampler, probe);
    match w.final_stats(within) {
        Some(last) => sampler.freeze_cgroup(last),
        None => tracing::debug!("no final counters of the container: the last sample is the one before"),
    }
    // A cgroup found only now (a very short container) is taken here too.
    on_wake(Some(w), sampler, probe);
}

/// The id the runtime wrote (Docker and podman write the full 64 hex digits, no newline).
pub(crate) fn read_cid(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let id = text.trim();
    (id.len() >= 12 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

/// The watcher thread: the id, the cgroup, then the container's end.
fn watch(run: &ContainerRun, root: &Path, shared: &Shared) {
    let stopped = || shared.stop.load(Ordering::Relaxed);
    let id = loop {
        if stopped() {
            return;
        }
        if let Some(id) = read_cid(&run.cidfile) {
            break id;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    shared.update(|s| s.id = Some(id.clone()));
    let cg = loop {
        if stopped() {
            return;
        }
        if let Some(cg) = locate(&run.runtime, &id, root) {
            break cg;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    shared.update(|s| s.found = Some(Found { id, cg: cg.clone() }));
    let last = wait_empty(&cg, root, &shared.stop);
    shared.update(|s| s.last = last);
}

/// The container's cgroup: where its process is (`RUNTIME inspect` gives the host pid, its
/// `/proc/<pid>/cgroup` the path), else where the runtimes put containers. None until it runs.
fn locate(runtime: &str, id: &str, root: &Path) -> Option<Cgroup> {
    let pid = runtime_output(runtime, &["inspect", "--format", "{{.State.Pid}}", id])
        .and_then(|out| out.trim().parse::<u32>().ok())
        .filter(|p| *p > 0);
    if let Some(cg) = pid.and_then(|p| process_cgroup(p, root)) {
        return Some(cg);
    }
    container_cgroup(id, root).ok()
}

/// Waits until the cgroup has no process left, then reads its counters at once (the runtime
/// removes it right after). Returns the last counters read; gives up when `stop` is set.
fn wait_empty(cg: &Cgroup, root: &Path, stop: &AtomicBool) -> Option<CgroupStats> {
    let mut reader = FileReader::default();
    let read = |r: &mut FileReader| Some(cg.read(r)).filter(|s| s.cpu_usage_ns.is_some());
    if let Some(events) = v2_events_file(cg, root) {
        if let Ok(ino) = nix::sys::inotify::Inotify::init(
            nix::sys::inotify::InitFlags::IN_NONBLOCK | nix::sys::inotify::InitFlags::IN_CLOEXEC,
        ) {
            if ino
                .add_watch(&events, nix::sys::inotify::AddWatchFlags::IN_MODIFY)
                .is_ok()
            {
                use std::os::fd::AsFd;
                // `populated 0` (or the file gone) is the end; each change wakes the poll, which
                // also wakes every 200 ms to see `stop`.
                while populated(&events) == Some(true) && !stop.load(Ordering::Relaxed) {
                    let mut fds = [nix::poll::PollFd::new(ino.as_fd(), nix::poll::PollFlags::POLLIN)];
                    let _ = nix::poll::poll(&mut fds, 200u8);
                    let _ = ino.read_events();
                }
                return read(&mut reader).map(|st| with_peak(cg, st));
            }
        }
    }
    // No v2 hierarchy to be told by: keep the latest counters, every 100 ms.
    let mut last = None;
    let mut procs = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match read(&mut reader) {
            Some(s) => last = Some(s),
            None => break,
        }
        if cg.procs(&mut reader, &mut procs).is_err() || procs.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last.map(|st| with_peak(cg, st))
}

/// The container's last counters with its memory at its peak (v1 `memory.max_usage_in_bytes`,
/// v2 `memory.peak`, Linux 5.19+), less the file cache still charged: read after the processes
/// are gone, the usage itself is near zero, and a container killed before its first sample
/// (an OOM kill at start-up) would otherwise show no memory at all.
fn with_peak(cg: &Cgroup, mut st: CgroupStats) -> CgroupStats {
    let file = match cg {
        Cgroup::V2(d) => Some(d.join("memory.peak")),
        Cgroup::V1 { memory, .. } => memory.as_ref().map(|d| d.join("memory.max_usage_in_bytes")),
    };
    let peak = file
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|t| t.trim().parse::<u64>().ok());
    if let Some(p) = peak {
        let cache = st
            .mem_usage_bytes
            .unwrap_or(0)
            .saturating_sub(st.working_set_bytes.unwrap_or(0));
        st.mem_usage_bytes = Some(p);
        st.working_set_bytes = Some(p.saturating_sub(cache));
    }
    st
}

/// The v2 `cgroup.events` of the cgroup: its own directory on v2, the same path under the
/// unified mount on a hybrid host.
fn v2_events_file(cg: &Cgroup, root: &Path) -> Option<PathBuf> {
    let f = match cg {
        Cgroup::V2(d) => d.join("cgroup.events"),
        Cgroup::V1 { procs, .. } => {
            let rel: PathBuf = procs.strip_prefix(root).ok()?.components().skip(1).collect();
            root.join("unified").join(rel).join("cgroup.events")
        }
    };
    f.is_file().then_some(f)
}

/// `populated` of a `cgroup.events` file; None when it cannot be read (removed).
fn populated(events: &Path) -> Option<bool> {
    let b = std::fs::read(events).ok()?;
    crate::cgroup::keyed(&b, [b"populated"])[0].map(|v| v > 0)
}

/// Runs `RUNTIME ARGS…` (argv, no shell) and returns its stdout when it exits 0 within
/// [`RUNTIME_TIMEOUT`]. Its stderr is dropped: `inspect` of a container that is not there yet
/// is expected, and the job's own output comes from the `run` client.
fn runtime_output(runtime: &str, args: &[&str]) -> Option<String> {
    let mut child = Command::new(runtime)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let until = Instant::now() + RUNTIME_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => {
                let mut out = String::new();
                use std::io::Read;
                child.stdout.take()?.read_to_string(&mut out).ok()?;
                return Some(out);
            }
            Ok(Some(_)) | Err(_) => return None,
            Ok(None) if Instant::now() >= until => {
                let _ = child.kill();
                let _ = child.wait();
                tracing::warn!(runtime, ?args, "the container runtime did not answer; gave up");
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_cidfile_gives_an_id_only_once_it_is_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cid");
        assert_eq!(read_cid(&p), None);
        std::fs::write(&p, "").unwrap();
        assert_eq!(read_cid(&p), None);
        std::fs::write(&p, "../../etc").unwrap();
        assert_eq!(read_cid(&p), None);
        let id = "ab".repeat(32);
        std::fs::write(&p, format!("{id}\n")).unwrap();
        assert_eq!(read_cid(&p), Some(id));
    }

    #[test]
    fn a_v1_cgroup_is_told_empty_by_its_unified_twin() {
        // GIVEN a hybrid root: v1 memory/x and unified/x with cgroup.events
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("memory/libpod_parent/libpod-ab")).unwrap();
        std::fs::create_dir_all(r.join("unified/libpod_parent/libpod-ab")).unwrap();
        let ev = r.join("unified/libpod_parent/libpod-ab/cgroup.events");
        std::fs::write(&ev, "populated 1\nfrozen 0\n").unwrap();
        let cg = Cgroup::V1 {
            memory: Some(r.join("memory/libpod_parent/libpod-ab")),
            cpuacct: None,
            cpu: None,
            blkio: None,
            procs: r.join("memory/libpod_parent/libpod-ab"),
        };
        // THEN the events file is the unified twin's, and it says populated until it does not
        assert_eq!(v2_events_file(&cg, r), Some(ev.clone()));
        assert_eq!(populated(&ev), Some(true));
        std::fs::write(&ev, "populated 0\nfrozen 0\n").unwrap();
        assert_eq!(populated(&ev), Some(false));
        std::fs::remove_file(&ev).unwrap();
        assert_eq!(populated(&ev), None);
        assert_eq!(v2_events_file(&cg, r), None);
    }
}
