//! The monitoring loop: one thread samples at the interval and wakes early for the job's exit, a
//! SIGTERM/SIGINT or a spot notice; helper threads (job waiter, signal listener, IMDS poller,
//! uploader) are started once per run, never per sample.

use crate::cgroup::{docker_cgroup, oom_kills_v2, own_v2_cgroup, Cgroup, CoresGivenProbe, JobCgroup};
use crate::sampler::{Sampler, Source};
use crate::spool::{keep_final_files, PartKind, Spool, Uploader};
use crate::tree::TreeSampler;
use crate::{CommandSpec, MonitorError, MonitorOptions, Outcome, SpotNotice, UploadReport};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;
use spotfit_core::ids::{valid_run_id, RunKeys};
use spotfit_core::summary::{summarize, ExitInfo, RunEnd};
use spotfit_core::Sample;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to track.
#[derive(Debug, Clone)]
pub enum Target {
    /// Start this command and track its process tree.
    Command(CommandSpec),
    /// A running process and its descendants.
    Pid(u32),
    /// A cgroup (v2 directory, v1 controller directory, or a `/proc/<pid>/cgroup` path).
    Cgroup(String),
    /// A Docker container, by id or unique id prefix, through its cgroup.
    Docker(String),
}

/// After a SIGTERM/SIGINT the job gets this long to exit before it is killed, and the whole
/// flush (last sample, last part, summary, exit marker) must fit in [`SIGNAL_FLUSH_BUDGET`].
const JOB_GRACE: Duration = Duration::from_millis(700);
const SIGNAL_FLUSH_BUDGET: Duration = Duration::from_millis(1800);

enum Event {
    /// The job exited and is a zombie, not yet reaped.
    Exited,
    Signal(i32),
    Spot(SpotNotice),
}

/// What woke the supervisor loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    Exited,
    Signal(i32),
    SpotNotice,
    /// The sampling interval passed.
    Tick,
    /// Every sender is gone (cannot happen while the loop holds one).
    Disconnected,
}

/// What the loop knows when it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Seen {
    /// The job is ours (command mode): it can be stopped and reaped. Attached, it is not.
    own_job: bool,
    /// A stop was requested ([`MonitorOptions::cancel`]).
    cancelled: bool,
    /// The job's timeout has passed.
    past_deadline: bool,
}

/// Why the supervisor stops the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopWhy {
    /// SIGTERM/SIGINT reached the agent: forwarded, the run marked interrupted.
    Signal,
    /// A stop request (the local launcher's terminate): interrupted.
    Cancelled,
    TimedOut,
}

/// What the loop does about a wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// The job exited: the last sample, reap, end.
    Finish,
    /// Stop the job with `signal`, escalating to SIGKILL ([`stop_job`]); the last sample, reap,
    /// end.
    Stop { signal: Signal, why: StopWhy },
    /// End without stopping anything (attached: the job is not ours); `interrupted` when a
    /// signal ended the watch.
    End { interrupted: bool },
    /// A spot notice: mark the run interrupted and ship what is spooled now.
    ShipNow,
    /// Take a sample and go on.
    Sample,
}

/// The supervisor's rules, with no I/O: which end a run comes to, and when. The loop in
/// [`monitor`] only carries them out (spawn, signals, sampling, reaping), so the rules are
/// tested without processes. Stop requests and the deadline are looked at on ticks only; a stop
/// request wins over a timeout that falls on the same tick (the stop came from outside).
fn decide(wake: Wake, seen: Seen) -> Action {
    match wake {
        Wake::Exited => Action::Finish,
        Wake::Signal(sig) if seen.own_job => Action::Stop {
            signal: Signal::try_from(sig).unwrap_or(Signal::SIGTERM),
            why: StopWhy::Signal,
        },
        Wake::Signal(_) => Action::End { interrupted: true },
        Wake::SpotNotice => Action::ShipNow,
        Wake::Tick if seen.own_job && seen.cancelled => Action::Stop {
            signal: Signal::SIGTERM,
            why: StopWhy::Cancelled,
        },
        Wake::Tick if seen.own_job && seen.past_deadline => Action::Stop {
            signal: Signal::SIGTERM,
            why: StopWhy::TimedOut,
        },
        Wake::Tick => Action::Sample,
        Wake::Disconnected => Action::End { interrupted: false },
    }
}

/// The tick after the one due at `due`: one interval on, or one interval from `now` when the
/// loop fell behind (suspended, overloaded) — skipping ticks rather than sampling in a burst.
fn next_tick_after(due: Instant, now: Instant, interval: Duration) -> Instant {
    let next = due + interval;
    if next < now {
        now + interval
    } else {
        next
    }
}

/// Whether a part of samples is due for upload: `every` has passed since the last cut.
fn part_due(now: Instant, last_cut: Instant, every: Option<Duration>) -> bool {
    every.is_some_and(|e| now.duration_since(last_cut) >= e)
}

/// Runs `cmd` and monitors it until it exits. `on_sample` sees every sample as it is taken.
pub fn run_command(
    cmd: &CommandSpec,
    opts: &MonitorOptions,
    on_sample: &mut dyn FnMut(&Sample),
) -> Result<Outcome, MonitorError> {
    monitor(&Target::Command(cmd.clone()), opts, on_sample)
}

/// Monitors `target` until the job exits (command), the tree or cgroup empties (attach), or a
/// SIGTERM/SIGINT arrives.
pub fn monitor(
    target: &Target,
    opts: &MonitorOptions,
    on_sample: &mut dyn FnMut(&Sample),
) -> Result<Outcome, MonitorError> {
    check(target, opts)?;
    let (tx, rx) = mpsc::channel::<Event>();
    let start = Instant::now();
    let started_at_ms = now_ms();
    let stop = Arc::new(AtomicBool::new(false));

    // The signal listener goes first, so a SIGTERM during start-up is not lost.
    let signals = if opts.handle_signals {
        Some(listen_signals(tx.clone())?)
    } else {
        None
    };

    let mut child_pid = None;
    // The program could not be started (agent mode): the exit it is recorded with.
    let mut not_started: Option<ExitInfo> = None;
    let mut early_exit_guard = KillOnEarlyReturn(None);
    let mut child: Option<std::process::Child> = None;
    // Command mode: the job's stdout and stderr, passed through and spooled (crate::logs).
    let mut capture: Option<crate::logs::Capture> = None;
    let mut oom_base = None;
    // Removed (rmdir) when the run ends, by which time the job has been reaped.
    let mut job_cgroup: Option<JobCgroup> = None;
    // A container job: the watcher that finds, measures and finally removes the container.
    let mut container: Option<crate::container_watch::Watch> = None;
    // Where to find the cores the job can use (censoring): its process, its cgroups.
    let mut cpu_pid: Option<u32> = None;
    let cpu_dirs: Vec<std::path::PathBuf>;
    let (source, baseline) = match target {
        Target::Command(c) => {
            let argv0 = c.argv.first().ok_or_else(|| MonitorError::BadInput {
                field: "argv",
                reason: "empty command".into(),
            })?;
            let mut command = Command::new(argv0);
            command.args(&c.argv[1..]).envs(c.env.iter().map(|(k, v)| (k, v)));
            if let Some(d) = &c.cwd {
                command.current_dir(d);
            }
            let mut cap = crate::logs::Capture::pipe(&mut command, c.stdout_to_stderr, opts.pass_output);
            let spawned = match c.refuse.as_deref() {
                // A set-up step for the job failed (its secrets could not be read): as an agent
                // the job's failure, 125 as a container runtime reports its own, with the reason
                // in the run's stderr log (and so in its tail in the record).
                Some(why) if opts.upload.is_some() => {
                    tracing::error!(reason = %why, "the job was not started");
                    let line = format!("spotfit: the job was not started: {why}\n");
                    eprint!("{line}");
                    cap.note(spotfit_core::logs::Stream::Stderr, line.as_bytes());
                    not_started = Some(ExitInfo::code(NOT_STARTED_CODE));
                    let _ = tx.send(Event::Exited);
                    None
                }
                Some(why) => {
                    return Err(MonitorError::BadInput {
                        field: "env_from",
                        reason: why.to_string(),
                    })
                }
                None => match command.spawn() {
                    Ok(c) => Some(c),
                    // As an agent (shipping a run), a program that cannot be started is the job's
                    // failure, reported as a shell does (127 not found, 126 not executable), with a
                    // summary and an exit marker like any other end: without them the pipeline sees
                    // a silent instance, calls it lost and retries the same command on every
                    // candidate. Without upload the caller gets the error itself.
                    Err(e) => match (opts.upload.is_some(), spawn_failure_code(&e)) {
                        (true, Some(code)) => {
                            tracing::error!(program = %argv0, error = %e, code, "the job could not be started");
                            let line = format!("spotfit: cannot run {argv0:?}: {e}\n");
                            eprint!("{line}");
                            cap.note(spotfit_core::logs::Stream::Stderr, line.as_bytes());
                            not_started = Some(ExitInfo::code(code));
                            let _ = tx.send(Event::Exited);
                            None
                        }
                        _ => {
                            return Err(MonitorError::Spawn {
                                program: argv0.clone(),
                                source: e,
                            })
                        }
                    },
                },
            };
            cpu_dirs = Vec::new();
            match spawned {
                None => {
                    // What was said about it is the run's log.
                    capture = Some(cap);
                    (Source::Tree(TreeSampler::new(vec![])), false)
                }
                Some(mut spawned) => {
                    let pid = spawned.id();
                    // From here on an early return (a set-up error) must not leave the job
                    // running unwatched: the guard kills and reaps it unless disarmed.
                    early_exit_guard.0 = Some(pid);
                    child_pid = Some(pid);
                    if let Some(limit) = opts.memory_limit {
                        match JobCgroup::create(&opts.cgroup_root, &opts.run_id, limit)
                            .and_then(|g| g.add(pid).map(|()| g))
                        {
                            Ok(g) => job_cgroup = Some(g),
                            Err(e) => tracing::warn!(
                                error = %e,
                                limit,
                                "cannot give the job a memory cgroup on this host; it runs without a memory limit"
                            ),
                        }
                    }
                    cpu_pid = Some(pid);
                    let cg = own_v2_cgroup(pid, &opts.cgroup_root);
                    oom_base = cg.as_ref().and_then(|d| oom_kills_v2(d).map(|n| (d.clone(), n)));
                    let wtx = tx.clone();
                    // Wait without reaping (WNOWAIT): the exited job stays a zombie whose /proc files
                    // still hold its final totals (its own and its reaped children's), so the last
                    // sample is exact; only then is it reaped. rusage of all our children would also
                    // count other children of this process.
                    std::thread::Builder::new()
                        .name("spotfit-wait".into())
                        .spawn(move || {
                            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
                            while let Err(nix::errno::Errno::EINTR) = waitid(Id::Pid(Pid::from_raw(pid as i32)), flags)
                            {
                            }
                            let _ = wtx.send(Event::Exited);
                        })
                        .map_err(|source| MonitorError::Setup {
                            what: "waiter thread",
                            source,
                        })?;
                    cap.start(&mut spawned)?;
                    capture = Some(cap);
                    child = Some(spawned);
                    if let Some(run) = &opts.container {
                        container = Some(crate::container_watch::Watch::start(run, &opts.cgroup_root)?);
                    }
                    (Source::Tree(TreeSampler::new(vec![pid])), false)
                }
            }
        }
        Target::Pid(pid) => {
            if !std::path::Path::new(&format!("/proc/{pid}/stat")).exists() {
                return Err(MonitorError::NoSuchProcess { pid: *pid });
            }
            cpu_pid = Some(*pid);
            cpu_dirs = Vec::new();
            (Source::Tree(TreeSampler::new(vec![*pid])), true)
        }
        Target::Cgroup(path) => {
            let cg = Cgroup::resolve(path, &opts.cgroup_root)?;
            cpu_dirs = cpu_dirs_of(&cg);
            (
                Source::Cgroup {
                    cg,
                    tree: TreeSampler::new(vec![]),
                    procs: Vec::new(),
                },
                true,
            )
        }
        Target::Docker(id) => {
            let cg = docker_cgroup(id, &opts.cgroup_root)?;
            cpu_dirs = cpu_dirs_of(&cg);
            (
                Source::Cgroup {
                    cg,
                    tree: TreeSampler::new(vec![]),
                    procs: Vec::new(),
                },
                true,
            )
        }
    };
    // The cores the job can use (the least seen at the start and at each sample) and the
    // throttling of the cgroup whose quota binds (RunSummary::cpu_given_cores, cpu_throttled).
    let mut cores_probe = CoresGivenProbe::new(cpu_pid, cpu_dirs, &opts.cgroup_root);
    let pss_every = if opts.pss_every > 0 {
        opts.pss_every
    } else {
        // About once a minute: PSS costs ~16 ms per GiB, RSS is nearly free.
        (60.0 / opts.interval.as_secs_f64()).round().clamp(1.0, 1e6) as u32
    };
    let mut sampler = Sampler::new(source, &opts.run_id, pss_every, opts.gpu, start, baseline);
    tracing::debug!(gpus = sampler.gpu_count(), "monitor started");

    let keys = RunKeys::new(&opts.job, started_at_ms, &opts.run_id);
    // The default spool is a fresh private directory, removed once everything is shipped.
    let default_spool = opts.spool_dir.is_none() && opts.upload.is_some();
    let spool_dir = match &opts.spool_dir {
        Some(d) => d.clone(),
        None if default_spool => crate::spool::private_dir(&std::env::temp_dir(), &opts.run_id)?,
        None => PathBuf::new(),
    };
    let mut spool = if opts.upload.is_some() || opts.spool_dir.is_some() {
        Some(Spool::open(&spool_dir, &keys, started_at_ms)?)
    } else {
        None
    };
    if let Some(c) = &capture {
        match spool.as_mut() {
            Some(sp) => sp.attach_logs(c.sink())?,
            None => c.sink().detach(),
        }
    }
    let uploader = match &opts.upload {
        Some(u) => Some(Uploader::start(
            spool_dir.clone(),
            keys.clone(),
            u.store.clone(),
            u.runtime.clone(),
        )?),
        None => None,
    };
    let upload_every = opts.upload.as_ref().map(|u| u.every);
    let mut last_cut = start;

    if let Some(imds) = &opts.imds {
        let itx = tx.clone();
        // The endpoint was checked before the job started; only a thread that cannot start
        // fails here, and the job is already running, so say so and go on.
        if let Err(e) = crate::imds::spawn_poller(imds.endpoint.clone(), imds.every, stop.clone(), move |n| {
            let _ = itx.send(Event::Spot(n));
        }) {
            tracing::error!(error = %e, "spot-notice polling could not start");
        }
    }

    let mut samples = Vec::new();
    let mut count = 0u64;
    let mut disk_peak: Option<u64> = None;
    let mut emit = |s: Sample, spool: &mut Option<Spool>| {
        if let Some(used) = disk_used(&opts.disk_paths) {
            disk_peak = Some(disk_peak.map_or(used, |p| p.max(used)));
        }
        if let Some(sp) = spool.as_mut() {
            if let Err(e) = sp.append(&s) {
                tracing::error!(error = %e, "spool write failed");
            }
        }
        on_sample(&s);
        count += 1;
        if opts.keep_samples {
            samples.push(s);
        }
    };

    // Set-up is over: the loop below owns the job's end (stop, reap) on every path.
    early_exit_guard.0 = None;
    let mut exit = ExitInfo::default();
    let mut interrupted = false;
    let mut spot_notice = None;
    let mut signalled_at = None;
    let mut timed_out = false;
    let deadline = opts.timeout.map(|t| start + t);
    let mut next_tick = start + opts.interval;
    loop {
        let timeout = next_tick.saturating_duration_since(Instant::now());
        let wake = match rx.recv_timeout(timeout) {
            Ok(Event::Exited) => Wake::Exited,
            Ok(Event::Signal(sig)) => Wake::Signal(sig),
            Ok(Event::Spot(n)) => {
                tracing::warn!(action = %n.action, time = %n.time, "spot interruption notice");
                spot_notice = Some(n);
                Wake::SpotNotice
            }
            Err(RecvTimeoutError::Timeout) => Wake::Tick,
            Err(RecvTimeoutError::Disconnected) => Wake::Disconnected,
        };
        crate::container_watch::on_wake(container.as_ref(), &mut sampler, &mut cores_probe);
        let now = Instant::now();
        let seen = Seen {
            own_job: child_pid.is_some(),
            cancelled: opts.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)),
            past_deadline: deadline.is_some_and(|d| now >= d),
        };
        match decide(wake, seen) {
            Action::Finish => {
                crate::container_watch::before_last_sample(
                    container.as_ref(),
                    &mut sampler,
                    &mut cores_probe,
                    Duration::from_secs(1),
                );
                emit(sampler.sample(now, now_ms()), &mut spool);
                exit = not_started.take().unwrap_or_else(|| reap(&mut child));
                break;
            }
            Action::End { interrupted: by_signal } => {
                if by_signal {
                    interrupted = true;
                    signalled_at = Some(now);
                }
                emit(sampler.sample(now, now_ms()), &mut spool);
                break;
            }
            Action::Stop { signal, why } => {
                match why {
                    StopWhy::Signal => {
                        interrupted = true;
                        signalled_at = Some(now);
                    }
                    StopWhy::Cancelled => {
                        tracing::warn!("stop requested; stopping the job");
                        interrupted = true;
                        signalled_at = Some(now);
                    }
                    StopWhy::TimedOut => {
                        tracing::warn!(timeout = ?opts.timeout, "job ran past its timeout; stopping it");
                        timed_out = true;
                    }
                }
                if let Some(pid) = child_pid {
                    stop_job(pid, signal, &rx);
                }
                crate::container_watch::before_last_sample(
                    container.as_ref(),
                    &mut sampler,
                    &mut cores_probe,
                    Duration::from_millis(300),
                );
                emit(sampler.sample(Instant::now(), now_ms()), &mut spool);
                exit = reap(&mut child);
                break;
            }
            Action::ShipNow => {
                interrupted = true;
                // Ship what we have now: the instance may vanish in two minutes.
                cut_and_queue(&mut spool, uploader.as_ref());
                last_cut = now;
            }
            Action::Sample => {
                cores_probe.tick();
                let s = sampler.sample(now, now_ms());
                // Attached: the run is over when the tree or the cgroup has no process left.
                let gone = !seen.own_job && s.processes == 0;
                emit(s, &mut spool);
                if gone {
                    break;
                }
                next_tick = next_tick_after(next_tick, now, opts.interval);
                if part_due(now, last_cut, upload_every) {
                    cut_and_queue(&mut spool, uploader.as_ref());
                    last_cut = now;
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(h) = signals {
        h.close();
    }
    // Every byte the job wrote is spooled once its pipes reach end-of-file (bounded: a process
    // it left behind may hold them open).
    let tails = capture.map(|c| {
        c.finish(match signalled_at {
            Some(_) => crate::logs::DRAIN_TIMEOUT_SIGNALLED,
            None => crate::logs::DRAIN_TIMEOUT,
        })
    });
    let ended_at_ms = now_ms();

    // The runtime's word on the container (its client exits 137, not by a signal). The container
    // is removed when `container` is dropped, after the last upload.
    let container_oom = container.as_ref().is_some_and(|w| w.oom_killed());
    let oom_killed = container_oom
        || (exit.signal == Some(9)
            && (job_cgroup
                .as_ref()
                .is_some_and(|g| g.oom_kills().is_some_and(|n| n > 0))
                || oom_base
                    .as_ref()
                    .is_some_and(|(d, n0)| oom_kills_v2(d).is_some_and(|n| n > *n0))));
    let (cpu_given_cores, cpu_throttled_s) = cores_probe.finish();
    let end = RunEnd {
        job: opts.job.clone(),
        run_id: opts.run_id.clone(),
        started_at_ms,
        ended_at_ms,
        exit,
        oom_killed,
        interrupted,
        timed_out,
        cpu_given_cores,
        cpu_throttled_s,
    };
    let mut summary = summarize(&samples, &end);
    summary.disk_used_max_bytes = disk_peak;
    if let Some((stdout_tail, stderr_tail)) = tails {
        summary.stdout_tail = stdout_tail;
        summary.stderr_tail = stderr_tail;
    }
    if child_pid.is_some() && summary.mem_metric == spotfit_core::MemoryMetric::Rss {
        // A job shorter than the interval may leave only its exit sample, taken from the zombie
        // (RSS 0). The kernel kept the largest reaped descendant's peak RSS for us: a lower
        // bound of the tree's peak that costs one syscall, so a short job never reads as 0 bytes.
        if let Ok(usage) = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN) {
            let peak = (usage.max_rss().max(0) as u64).saturating_mul(1024);
            summary.mem_max_bytes = summary.mem_max_bytes.max(peak);
        }
    }

    let mut upload: Option<UploadReport> = None;
    if let Some(sp) = spool.as_mut() {
        cut_and_queue_spool(sp, uploader.as_ref());
        let summary_json = serde_json::to_vec(&summary).unwrap_or_default();
        let marker = serde_json::to_vec(&spotfit_core::summary::ExitMarker::of(&summary, spot_notice.clone()))
            .unwrap_or_default();
        keep_final_files(sp.dir(), &summary_json, &marker);
        if let (Some(up), Some(u)) = (&uploader, &opts.upload) {
            let timeout = match signalled_at {
                Some(t) => SIGNAL_FLUSH_BUDGET.saturating_sub(t.elapsed()),
                None => u.finish_timeout,
            };
            upload = Some(up.finish(summary_json, marker, timeout, sp.dir()));
        }
    }
    if let Some(up) = uploader {
        // Nothing touches the store after this (within the signal budget when signalled).
        up.close(match signalled_at {
            Some(t) => SIGNAL_FLUSH_BUDGET.saturating_sub(t.elapsed()),
            None => crate::spool::PUT_TIMEOUT + Duration::from_secs(1),
        });
    }
    if default_spool
        && upload.as_ref().is_some_and(|u| {
            u.parts_pending == 0 && u.parts_refused == 0 && u.summary_uploaded && u.exit_marker_uploaded
        })
    {
        drop(spool);
        if let Err(e) = std::fs::remove_dir_all(&spool_dir) {
            tracing::warn!(dir = %spool_dir.display(), error = %e, "could not remove the shipped spool");
        }
    }

    Ok(Outcome {
        exit,
        started_at_ms,
        ended_at_ms,
        sample_count: count,
        samples,
        oom_killed: summary.oom_killed,
        interrupted,
        timed_out,
        spot_notice,
        summary,
        upload,
    })
}

/// The directories whose CPU quota applies to an attached cgroup.
fn cpu_dirs_of(cg: &Cgroup) -> Vec<std::path::PathBuf> {
    match cg {
        Cgroup::V2(d) => vec![d.clone()],
        Cgroup::V1 { cpu, .. } => cpu.iter().cloned().collect(),
    }
}

fn cut_and_queue(spool: &mut Option<Spool>, up: Option<&Uploader>) {
    if let Some(sp) = spool.as_mut() {
        cut_and_queue_spool(sp, up);
    }
}

fn cut_and_queue_spool(sp: &mut Spool, up: Option<&Uploader>) {
    if sp.has_pending() {
        match sp.cut() {
            Ok(Some(n)) => {
                if let Some(u) = up {
                    u.part(PartKind::Samples, n);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cutting a spool part failed"),
        }
    }
    for n in sp.cut_logs() {
        if let Some(u) = up {
            u.part(PartKind::Logs, n);
        }
    }
}

/// Waits for the job's exit event, ignoring others (a second SIGTERM changes nothing).
/// Sends `sig` to the job and, if it has not exited within [`JOB_GRACE`], SIGKILL — the one
/// escalation used for signals, timeouts and stop requests alike.
fn stop_job(pid: u32, sig: Signal, rx: &mpsc::Receiver<Event>) {
    let _ = kill(Pid::from_raw(pid as i32), sig);
    if !wait_exited(rx, JOB_GRACE) {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        wait_exited(rx, Duration::from_millis(300));
    }
}

fn wait_exited(rx: &mpsc::Receiver<Event>, within: Duration) -> bool {
    let until = Instant::now() + within;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(Event::Exited) => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
    false
}

/// Used bytes of the filesystems holding `paths`, each filesystem once (by its id); None when
/// there are no paths or none could be read.
fn disk_used(paths: &[std::path::PathBuf]) -> Option<u64> {
    let mut seen: Vec<u64> = Vec::with_capacity(paths.len());
    let mut total: Option<u64> = None;
    for p in paths {
        let Ok(st) = nix::sys::statvfs::statvfs(p.as_path()) else {
            continue;
        };
        #[allow(clippy::unnecessary_cast)] // the field types differ between targets
        let (fsid, blocks, free, frsize) = (
            st.filesystem_id() as u64,
            st.blocks() as u64,
            st.blocks_free() as u64,
            st.fragment_size() as u64,
        );
        if seen.contains(&fsid) {
            continue;
        }
        seen.push(fsid);
        total = Some(total.unwrap_or(0) + blocks.saturating_sub(free).saturating_mul(frsize));
    }
    total
}

/// The exit code of a job the agent did not start because a set-up step for it failed (its
/// secrets could not be read): 125, as `docker run` reports its own failures.
pub const NOT_STARTED_CODE: i32 = 125;

/// The shell's exit code for a program that could not be started: 127 when it was not found,
/// 126 when it is not executable; `None` for any other error (not the job's fault).
fn spawn_failure_code(e: &std::io::Error) -> Option<i32> {
    match e.kind() {
        std::io::ErrorKind::NotFound => Some(127),
        std::io::ErrorKind::PermissionDenied => Some(126),
        _ => None,
    }
}

/// Kills (SIGKILL) and reaps the job if `monitor` returns with an error after starting it.
struct KillOnEarlyReturn(Option<u32>);

impl Drop for KillOnEarlyReturn {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let pid = Pid::from_raw(pid as i32);
            let _ = kill(pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

/// Reaps the exited job (never blocks for long: called after its exit was seen, or after SIGKILL).
fn reap(child: &mut Option<std::process::Child>) -> ExitInfo {
    let Some(c) = child.as_mut() else {
        return ExitInfo::default();
    };
    for _ in 0..50 {
        match c.try_wait() {
            Ok(Some(st)) => return exit_info(st),
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break,
        }
    }
    ExitInfo::default()
}

fn exit_info(s: ExitStatus) -> ExitInfo {
    match (s.code(), s.signal()) {
        (Some(c), _) => ExitInfo::code(c),
        (None, Some(sig)) => ExitInfo::signal(sig),
        _ => ExitInfo::default(),
    }
}

fn listen_signals(tx: Sender<Event>) -> Result<signal_hook::iterator::Handle, MonitorError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(|source| MonitorError::Setup {
        what: "signal handler",
        source,
    })?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("spotfit-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if tx.send(Event::Signal(sig)).is_err() {
                    break;
                }
            }
        })
        .map_err(|source| MonitorError::Setup {
            what: "signal thread",
            source,
        })?;
    Ok(handle)
}

/// Every check of the arguments that needs nothing started: callers run it before anything
/// with a side effect (creating `--output`), and [`monitor`] runs it first.
pub fn check(target: &Target, opts: &MonitorOptions) -> Result<(), MonitorError> {
    match target {
        Target::Cgroup(c) if c.trim().is_empty() => {
            return Err(MonitorError::BadInput {
                field: "cgroup",
                reason: "must not be empty (an empty path is the host's root cgroup)".into(),
            })
        }
        Target::Docker(d) if d.trim().is_empty() => {
            return Err(MonitorError::BadInput {
                field: "docker",
                reason: "must not be empty".into(),
            })
        }
        Target::Command(c) if c.argv.first().is_none_or(|a| a.is_empty()) => {
            return Err(MonitorError::BadInput {
                field: "argv",
                reason: "empty command: the program must not be empty".into(),
            })
        }
        _ => {}
    }
    if let Some(i) = &opts.imds {
        crate::imds::parse_endpoint(&i.endpoint).map_err(|reason| MonitorError::BadInput { field: "imds", reason })?;
    }
    validate(opts)
}

fn validate(opts: &MonitorOptions) -> Result<(), MonitorError> {
    let iv = opts.interval.as_secs_f64();
    if !(0.01..=3600.0).contains(&iv) {
        return Err(MonitorError::BadInput {
            field: "interval",
            reason: format!("{iv} s is outside 0.01–3600 s"),
        });
    }
    if !valid_run_id(&opts.run_id) {
        return Err(MonitorError::BadInput {
            field: "run_id",
            reason: format!("{:?} is not a safe id", opts.run_id),
        });
    }
    if opts.job.is_empty() || !valid_run_id(&opts.job) {
        return Err(MonitorError::BadInput {
            field: "job",
            reason: format!("{:?} is not a safe job name", opts.job),
        });
    }
    if let Some(u) = &opts.upload {
        if u.every.is_zero() {
            return Err(MonitorError::BadInput {
                field: "upload.every",
                reason: "must be positive".into(),
            });
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod decide_tests {
    use super::*;

    const OWN: Seen = Seen {
        own_job: true,
        cancelled: false,
        past_deadline: false,
    };
    const ATTACHED: Seen = Seen {
        own_job: false,
        cancelled: false,
        past_deadline: false,
    };

    #[test]
    fn a_run_ends_as_its_first_cause_says() {
        // the job's own exit ends the run, whatever else is true
        let all = Seen {
            own_job: true,
            cancelled: true,
            past_deadline: true,
        };
        assert_eq!(decide(Wake::Exited, all), Action::Finish);
        // a signal to the agent is forwarded to its own job, as that signal
        assert_eq!(
            decide(Wake::Signal(2), OWN),
            Action::Stop {
                signal: Signal::SIGINT,
                why: StopWhy::Signal
            }
        );
        // attached, the job is not ours to stop: the watch ends, interrupted
        assert_eq!(decide(Wake::Signal(15), ATTACHED), Action::End { interrupted: true });
        // a stop request wins over a timeout on the same tick
        assert_eq!(
            decide(Wake::Tick, all),
            Action::Stop {
                signal: Signal::SIGTERM,
                why: StopWhy::Cancelled
            }
        );
        let late = Seen {
            past_deadline: true,
            ..OWN
        };
        assert_eq!(
            decide(Wake::Tick, late),
            Action::Stop {
                signal: Signal::SIGTERM,
                why: StopWhy::TimedOut
            }
        );
        // an attached job past the deadline or asked to stop is only watched
        let attached_all = Seen { own_job: false, ..all };
        assert_eq!(decide(Wake::Tick, attached_all), Action::Sample);
        // stop requests and deadlines are looked at on ticks, not on a spot notice
        assert_eq!(decide(Wake::SpotNotice, all), Action::ShipNow);
        assert_eq!(decide(Wake::Tick, OWN), Action::Sample);
        assert_eq!(decide(Wake::Disconnected, OWN), Action::End { interrupted: false });
    }

    #[test]
    fn ticks_are_skipped_not_burst_and_parts_are_cut_on_time() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        // on time: one interval on
        assert_eq!(next_tick_after(t0, t0, s), t0 + s);
        // three intervals behind: one interval from now, not three quick samples
        let now = t0 + 3 * s + Duration::from_millis(500);
        assert_eq!(next_tick_after(t0, now, s), now + s);
        // parts: due once `every` has passed, never without upload
        let every = Some(Duration::from_secs(60));
        assert!(!part_due(t0 + Duration::from_secs(59), t0, every));
        assert!(part_due(t0 + Duration::from_secs(60), t0, every));
        assert!(!part_due(t0 + Duration::from_secs(600), t0, None));
    }
}
