//! cgroup v1 and v2 counters of a tracked cgroup (a container, a systemd unit), and finding a
//! Docker container's cgroup without `docker stats`. Every file read here is O(1) in the
//! cgroup's size; parsers are pure and tested on real file contents (tests/fixtures/).

use crate::procfs::{parse_pid_list, parse_u64, trim, FileReader};
use crate::MonitorError;
use std::path::{Path, PathBuf};

/// Where the cgroup hierarchies are mounted on every distribution we run on.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// A resolved cgroup: one v2 directory, or one directory per v1 controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroup {
    V2(PathBuf),
    V1 {
        memory: Option<PathBuf>,
        cpuacct: Option<PathBuf>,
        cpu: Option<PathBuf>,
        blkio: Option<PathBuf>,
        procs: PathBuf,
    },
}

/// One reading of a cgroup. `None`: the hierarchy does not report it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Cumulative CPU time of the cgroup, nanoseconds.
    pub cpu_usage_ns: Option<u64>,
    pub cpu_throttled_ns: Option<u64>,
    /// memory.current / memory.usage_in_bytes (includes page cache).
    pub mem_usage_bytes: Option<u64>,
    /// Usage minus inactive file cache: what the kernel cannot drop under pressure.
    pub working_set_bytes: Option<u64>,
    /// Anonymous memory (v2 `anon`, v1 `total_rss`).
    pub anon_bytes: Option<u64>,
    /// None when unlimited.
    pub mem_limit_bytes: Option<u64>,
    pub oom_kills: Option<u64>,
    /// v2 memory.events `max`, v1 memory.failcnt.
    pub mem_limit_hits: Option<u64>,
    pub read_bytes: Option<u64>,
    pub write_bytes: Option<u64>,
    pub pgfault: Option<u64>,
    pub pgmajfault: Option<u64>,
}

impl Cgroup {
    /// Resolves `path`: a v2 directory, a v1 controller directory (`/sys/fs/cgroup/memory/x`), or
    /// a cgroup path as in `/proc/<pid>/cgroup` (`/docker/<id>`), looked up under `root`.
    pub fn resolve(path: &str, root: &Path) -> Result<Self, MonitorError> {
        let p = Path::new(path);
        let not_found = || MonitorError::CgroupNotFound { path: path.to_string() };
        if p.is_dir() && p.join("cgroup.procs").is_file() {
            if p.join("cgroup.controllers").is_file() {
                return Ok(Cgroup::V2(p.to_path_buf()));
            }
            // A v1 controller directory: the first component below the root names the controller.
            let rel = p.strip_prefix(root).map_err(|_| not_found())?;
            let mut comps = rel.components();
            comps.next();
            let inner: PathBuf = comps.collect();
            return Self::v1_from_relative(&inner, root).ok_or_else(not_found);
        }
        let rel = path.trim_start_matches('/');
        if root.join("cgroup.controllers").is_file() {
            let dir = root.join(rel);
            return if dir.join("cgroup.procs").is_file() {
                Ok(Cgroup::V2(dir))
            } else {
                Err(not_found())
            };
        }
        if let Some(c) = Self::v1_from_relative(Path::new(rel), root) {
            return Ok(c);
        }
        // Hybrid hosts mount v2 at <root>/unified.
        let dir = root.join("unified").join(rel);
        if !rel.is_empty() && dir.join("cgroup.controllers").is_file() {
            return Ok(Cgroup::V2(dir));
        }
        Err(not_found())
    }

    fn v1_from_relative(rel: &Path, root: &Path) -> Option<Self> {
        let find = |ctrl: &str| -> Option<PathBuf> {
            let entries = std::fs::read_dir(root).ok()?;
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.split(',').any(|c| c == ctrl) {
                    let d = e.path().join(rel);
                    if d.join("cgroup.procs").is_file() {
                        return Some(d);
                    }
                }
            }
            None
        };
        let memory = find("memory");
        let cpuacct = find("cpuacct");
        let cpu = find("cpu");
        let blkio = find("blkio");
        let procs = memory.clone().or_else(|| cpuacct.clone()).or_else(|| cpu.clone())?;
        Some(Cgroup::V1 {
            memory,
            cpuacct,
            cpu,
            blkio,
            procs,
        })
    }

    /// The directory holding `cgroup.procs`.
    pub fn procs_dir(&self) -> &Path {
        match self {
            Cgroup::V2(d) => d,
            Cgroup::V1 { procs, .. } => procs,
        }
    }

    /// The pids in the cgroup (its own processes, not those of child cgroups).
    pub fn procs(&self, reader: &mut FileReader, out: &mut Vec<u32>) -> std::io::Result<()> {
        out.clear();
        let b = reader.read_path(&self.procs_dir().join("cgroup.procs"))?;
        parse_pid_list(b, out);
        Ok(())
    }

    /// Reads every counter the hierarchy offers. Missing files leave their fields `None`.
    pub fn read(&self, reader: &mut FileReader) -> CgroupStats {
        let mut s = CgroupStats::default();
        match self {
            Cgroup::V2(d) => {
                if let Ok(b) = reader.read_path(&d.join("cpu.stat")) {
                    let [u, t] = keyed(b, [b"usage_usec", b"throttled_usec"]);
                    s.cpu_usage_ns = u.map(|v| v * 1000);
                    s.cpu_throttled_ns = t.map(|v| v * 1000);
                }
                s.mem_usage_bytes = reader
                    .read_path(&d.join("memory.current"))
                    .ok()
                    .and_then(|b| parse_u64(trim(b)));
                if let Ok(b) = reader.read_path(&d.join("memory.stat")) {
                    let [inactive, anon, pf, pmf] = keyed(b, [b"inactive_file", b"anon", b"pgfault", b"pgmajfault"]);
                    s.working_set_bytes = working_set(s.mem_usage_bytes, inactive);
                    s.anon_bytes = anon;
                    s.pgfault = pf;
                    s.pgmajfault = pmf;
                }
                s.mem_limit_bytes = reader
                    .read_path(&d.join("memory.max"))
                    .ok()
                    .and_then(|b| parse_u64(trim(b)));
                if let Ok(b) = reader.read_path(&d.join("memory.events")) {
                    let [oom, max] = keyed(b, [b"oom_kill", b"max"]);
                    s.oom_kills = oom;
                    s.mem_limit_hits = max;
                }
                if let Ok(b) = reader.read_path(&d.join("io.stat")) {
                    let (r, w) = parse_io_stat_v2(b);
                    s.read_bytes = Some(r);
                    s.write_bytes = Some(w);
                }
            }
            Cgroup::V1 {
                memory,
                cpuacct,
                cpu,
                blkio,
                ..
            } => {
                if let Some(d) = cpuacct {
                    s.cpu_usage_ns = reader
                        .read_path(&d.join("cpuacct.usage"))
                        .ok()
                        .and_then(|b| parse_u64(trim(b)));
                }
                if let Some(d) = cpu {
                    if let Ok(b) = reader.read_path(&d.join("cpu.stat")) {
                        s.cpu_throttled_ns = keyed(b, [b"throttled_time"])[0];
                    }
                }
                if let Some(d) = memory {
                    s.mem_usage_bytes = reader
                        .read_path(&d.join("memory.usage_in_bytes"))
                        .ok()
                        .and_then(|b| parse_u64(trim(b)));
                    if let Ok(b) = reader.read_path(&d.join("memory.stat")) {
                        let [inactive, rss, pf, pmf] = keyed(
                            b,
                            [
                                b"total_inactive_file",
                                b"total_rss",
                                b"total_pgfault",
                                b"total_pgmajfault",
                            ],
                        );
                        s.working_set_bytes = working_set(s.mem_usage_bytes, inactive);
                        s.anon_bytes = rss;
                        s.pgfault = pf;
                        s.pgmajfault = pmf;
                    }
                    s.mem_limit_bytes = reader
                        .read_path(&d.join("memory.limit_in_bytes"))
                        .ok()
                        .and_then(|b| parse_u64(trim(b)))
                        // v1 says "unlimited" with a page-rounded i64::MAX.
                        .filter(|&v| v < (1u64 << 62));
                    s.mem_limit_hits = reader
                        .read_path(&d.join("memory.failcnt"))
                        .ok()
                        .and_then(|b| parse_u64(trim(b)));
                    if let Ok(b) = reader.read_path(&d.join("memory.oom_control")) {
                        s.oom_kills = keyed(b, [b"oom_kill"])[0];
                    }
                }
                if let Some(d) = blkio {
                    if let Ok(b) = reader.read_path(&d.join("blkio.throttle.io_service_bytes_recursive")) {
                        let (r, w) = parse_blkio_v1(b);
                        s.read_bytes = Some(r);
                        s.write_bytes = Some(w);
                    }
                }
            }
        }
        s
    }
}

fn working_set(usage: Option<u64>, inactive_file: Option<u64>) -> Option<u64> {
    Some(usage?.saturating_sub(inactive_file.unwrap_or(0)))
}

/// Values of `key value` lines (memory.stat, cpu.stat, memory.events), in the order of `keys`.
pub fn keyed<const N: usize>(b: &[u8], keys: [&[u8]; N]) -> [Option<u64>; N] {
    let mut out = [None; N];
    for line in b.split(|&c| c == b'\n') {
        let mut f = line.split(|&c| c == b' ');
        let (Some(k), Some(v)) = (f.next(), f.next()) else {
            continue;
        };
        if let Some(i) = keys.iter().position(|key| *key == k) {
            out[i] = parse_u64(trim(v));
        }
    }
    out
}

/// Sums `rbytes=` and `wbytes=` over the devices of a v2 `io.stat`.
pub fn parse_io_stat_v2(b: &[u8]) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for field in b.split(|c| c.is_ascii_whitespace()) {
        if let Some(v) = field.strip_prefix(b"rbytes=") {
            r += parse_u64(v).unwrap_or(0);
        } else if let Some(v) = field.strip_prefix(b"wbytes=") {
            w += parse_u64(v).unwrap_or(0);
        }
    }
    (r, w)
}

/// Sums the `Read` and `Write` lines over the devices of v1 `blkio.throttle.io_service_bytes`.
pub fn parse_blkio_v1(b: &[u8]) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for line in b.split(|&c| c == b'\n') {
        let mut f = line.split(|&c| c == b' ');
        let (Some(_dev), Some(op), Some(v)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        match op {
            b"Read" => r += parse_u64(trim(v)).unwrap_or(0),
            b"Write" => w += parse_u64(trim(v)).unwrap_or(0),
            _ => {}
        }
    }
    (r, w)
}

/// Finds the cgroup of a Docker container from its id (full or a unique prefix). See
/// [`container_cgroup`].
pub fn docker_cgroup(id: &str, root: &Path) -> Result<Cgroup, MonitorError> {
    container_cgroup(id, root)
}

/// Finds a container's cgroup from its id (full or a unique prefix), in the layouts Docker and
/// podman use, v2 and v1. No runtime API, no `docker stats`. Layouts (seen with `cat
/// /proc/<pid>/cgroup` of a container's process): Docker's systemd driver
/// `system.slice/docker-<id>.scope`, its cgroupfs driver `docker/<id>`; podman under systemd
/// `machine.slice/libpod-<id>.scope`, podman's cgroupfs manager `libpod_parent/libpod-<id>`
/// (this build host, v1). A container whose process is known is better found by
/// [`process_cgroup`], which reads where it is rather than where it usually is.
pub fn container_cgroup(id: &str, root: &Path) -> Result<Cgroup, MonitorError> {
    if id.len() < 4 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(MonitorError::BadInput {
            field: "docker",
            reason: format!("{id:?} is not a container id"),
        });
    }
    // (parent directory, name prefix, name suffix) per layout; v1 layouts are looked up under
    // the memory controller and then applied to the others.
    let mut layouts: Vec<(String, String, &str)> = Vec::new();
    for base in ["", "memory/"] {
        layouts.push((format!("{base}system.slice"), format!("docker-{id}"), ".scope"));
        layouts.push((format!("{base}docker"), id.to_string(), ""));
        layouts.push((format!("{base}machine.slice"), format!("libpod-{id}"), ".scope"));
        layouts.push((format!("{base}libpod_parent"), format!("libpod-{id}"), ""));
    }
    for (parent, prefix, suffix) in &layouts {
        let dir = root.join(parent);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let matches: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(prefix.as_str()) && n.ends_with(suffix))
            .collect();
        match matches.len() {
            0 => continue,
            1 => {
                let full = dir.join(&matches[0]);
                return Cgroup::resolve(&full.to_string_lossy(), root);
            }
            _ => {
                return Err(MonitorError::BadInput {
                    field: "docker",
                    reason: format!("container id prefix {id} is ambiguous ({} matches)", matches.len()),
                })
            }
        }
    }
    Err(MonitorError::CgroupNotFound {
        path: format!("container {id}"),
    })
}

/// The cgroup process `pid` is in, from `/proc/<pid>/cgroup` (its v1 memory controller's path,
/// else its v2 path), resolved under `root`.
pub fn process_cgroup(pid: u32, root: &Path) -> Option<Cgroup> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    Cgroup::resolve(&cgroup_path_of(&text)?, root).ok()
}

/// The path to track in a `/proc/<pid>/cgroup` file: the v1 memory controller's (its counters
/// are the ones that matter, the other controllers share the path under Docker and podman),
/// else the v2 one (`0::/path`). None for the root cgroup: that would be the whole host.
pub fn cgroup_path_of(text: &str) -> Option<String> {
    let mut v2 = None;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if ctrls.split(',').any(|c| c == "memory") {
            return (path != "/").then(|| path.to_string());
        }
        if ctrls.is_empty() {
            v2 = Some(path.to_string());
        }
    }
    v2.filter(|p| p != "/")
}

/// The v2 cgroup directory of a process (`0::/path` in `/proc/<pid>/cgroup`), if it has one
/// with a memory controller. Used to tell an OOM kill from another SIGKILL in command mode.
pub fn own_v2_cgroup(pid: u32, root: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim_start_matches('/');
    [root.join(rel), root.join("unified").join(rel)]
        .into_iter()
        .find(|d| d.join("memory.events").is_file())
}

/// A memory cgroup the monitor creates for one job (`MonitorOptions::memory_limit`), so the
/// job gets the memory it was sized to, and an out-of-memory kill is the kernel's, counted in
/// the group. v2 where the unified hierarchy delegates the memory controller (Amazon Linux
/// 2023), else the v1 memory hierarchy (this kind of build host). The job is moved in right
/// after it starts; on v1 its early charges move with it (`memory.move_charge_at_immigrate`),
/// on v2 the few pages of its first milliseconds stay where they were charged.
#[derive(Debug)]
pub struct JobCgroup {
    dir: PathBuf,
    v2: bool,
}

impl JobCgroup {
    /// Creates `spotfit-<name>` with `limit` bytes. `Err` says why the host does not allow it
    /// (no writable memory hierarchy, not root …): the caller runs the job unlimited and says so.
    pub fn create(root: &Path, name: &str, limit: u64) -> std::io::Result<JobCgroup> {
        let leaf = format!("spotfit-{name}");
        let v2_root = [root.to_path_buf(), root.join("unified")].into_iter().find(|r| {
            std::fs::read_to_string(r.join("cgroup.subtree_control"))
                .is_ok_and(|c| c.split_whitespace().any(|x| x == "memory"))
        });
        if let Some(r) = v2_root {
            let dir = r.join(&leaf);
            std::fs::create_dir(&dir)?;
            let cg = JobCgroup { dir, v2: true };
            std::fs::write(cg.dir.join("memory.max"), limit.to_string())?;
            // No swap: over its limit the job is killed, as on an instance without swap.
            let _ = std::fs::write(cg.dir.join("memory.swap.max"), "0");
            return Ok(cg);
        }
        let v1 = root.join("memory");
        if !v1.join("cgroup.procs").is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "no cgroup v2 memory controller and no v1 memory hierarchy",
            ));
        }
        let dir = v1.join(&leaf);
        std::fs::create_dir(&dir)?;
        let cg = JobCgroup { dir, v2: false };
        std::fs::write(cg.dir.join("memory.limit_in_bytes"), limit.to_string())?;
        let _ = std::fs::write(cg.dir.join("memory.memsw.limit_in_bytes"), limit.to_string());
        let _ = std::fs::write(cg.dir.join("memory.move_charge_at_immigrate"), "3");
        Ok(cg)
    }

    /// Moves process `pid` into the group.
    pub fn add(&self, pid: u32) -> std::io::Result<()> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
    }

    /// OOM kills in the group so far.
    pub fn oom_kills(&self) -> Option<u64> {
        if self.v2 {
            oom_kills_v2(&self.dir)
        } else {
            let b = std::fs::read(self.dir.join("memory.oom_control")).ok()?;
            keyed(&b, [b"oom_kill"])[0]
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl JobCgroup {
    /// Kills what is left in the group once the job has ended (a process it started in the
    /// background and did not wait for), as terminating its instance would: v2 by
    /// `cgroup.kill` (Linux 5.14+), else SIGKILL to each member, until the group is empty or a
    /// second has passed. Returns how many were left.
    pub fn kill_remaining(&self) -> usize {
        let members = || -> Vec<i32> {
            std::fs::read_to_string(self.dir.join("cgroup.procs"))
                .map(|t| t.split_whitespace().filter_map(|p| p.parse().ok()).collect())
                .unwrap_or_default()
        };
        let left = members().len();
        if left == 0 {
            return 0;
        }
        if !(self.v2 && std::fs::write(self.dir.join("cgroup.kill"), "1").is_ok()) {
            for pid in members() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
        let until = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while !members().is_empty() && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        left
    }
}

impl Drop for JobCgroup {
    /// Empties the group (see [`JobCgroup::kill_remaining`]) and removes it: otherwise a job's
    /// leftover process would outlive the run and the group would never be removed.
    fn drop(&mut self) {
        let left = self.kill_remaining();
        if left > 0 {
            tracing::warn!(dir = %self.dir.display(), left, "killed processes the job left running");
        }
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove the job's cgroup");
        }
    }
}

/// `oom_kill` of a v2 `memory.events` file.
pub fn oom_kills_v2(dir: &Path) -> Option<u64> {
    let b = std::fs::read(dir.join("memory.events")).ok()?;
    keyed(&b, [b"oom_kill"])[0]
}

/// A v2 `cpu.max` file (`"<quota> <period>"` in µs, `"max <period>"` unlimited) in cores.
pub fn parse_cpu_max(b: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(b).ok()?;
    let mut it = text.split_whitespace();
    let quota: f64 = it.next()?.parse().ok()?;
    let period: f64 = it.next().unwrap_or("100000").parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// v1 `cpu.cfs_quota_us` over `cpu.cfs_period_us` in cores (`-1`: unlimited).
pub fn parse_cfs_quota(quota: &[u8], period: &[u8]) -> Option<f64> {
    let q: f64 = std::str::from_utf8(quota).ok()?.trim().parse().ok()?;
    let p: f64 = std::str::from_utf8(period).ok()?.trim().parse().ok()?;
    (q > 0.0 && p > 0.0).then(|| q / p)
}

/// The number of CPUs in a kernel CPU list (`"0-3,8"` → 5; `Cpus_allowed_list`,
/// `cpuset.cpus.effective`). None when empty or malformed.
pub fn parse_cpu_list(text: &str) -> Option<usize> {
    let mut n = 0usize;
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                n += b.checked_sub(a)? + 1;
            }
            None => {
                part.trim().parse::<usize>().ok()?;
                n += 1;
            }
        }
    }
    (n > 0).then_some(n)
}

/// The tightest CPU quota on `dir` and its ancestors up to `root` (a quota on a parent caps its
/// children), in cores, with the directory that sets it. v2 `cpu.max`, v1 CFS files.
pub fn cpu_quota(dir: &Path, root: &Path) -> Option<(f64, PathBuf)> {
    let mut best: Option<(f64, PathBuf)> = None;
    let mut d = Some(dir);
    while let Some(cur) = d {
        let q = std::fs::read(cur.join("cpu.max"))
            .ok()
            .and_then(|b| parse_cpu_max(&b))
            .or_else(|| {
                let quota = std::fs::read(cur.join("cpu.cfs_quota_us")).ok()?;
                let period = std::fs::read(cur.join("cpu.cfs_period_us")).ok()?;
                parse_cfs_quota(&quota, &period)
            });
        if let Some(q) = q {
            if best.as_ref().is_none_or(|(b, _)| q < *b) {
                best = Some((q, cur.to_path_buf()));
            }
        }
        if cur == root || !cur.starts_with(root) {
            break;
        }
        d = cur.parent();
    }
    best
}

/// The cgroup directories that may hold the CPU controller of process `pid`: the v2 directory
/// (`0::/x`) and the v1 `cpu` controller's (`N:cpu,cpuacct:/x`).
pub fn process_cpu_cgroups(pid: u32, root: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return vec![];
    };
    let mut out = vec![];
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, rel) = match (f.next(), f.next(), f.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c.trim_start_matches('/')),
            _ => continue,
        };
        if ctrls.is_empty() {
            out.push(root.join(rel));
            out.push(root.join("unified").join(rel));
        } else if ctrls.split(',').any(|c| c == "cpu") {
            out.push(root.join(ctrls).join(rel));
            out.push(root.join("cpu").join(rel));
        }
    }
    out.retain(|d| d.is_dir());
    out
}

/// How many cores a job can use, for censoring (`RunSummary::cpu_given_cores`): the tightest
/// CPU quota of its cgroup (`quota_dirs`, each walked up to `root`) where one applies, and
/// never more than the CPUs it may run on (`cpus`; on EC2 the instance's vCPUs). Also the
/// directory whose quota binds, to read its throttling.
pub fn cores_given(cpus: Option<usize>, quota_dirs: &[PathBuf], root: &Path) -> (Option<f64>, Option<PathBuf>) {
    let quota = quota_dirs
        .iter()
        .filter_map(|d| cpu_quota(d, root))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    let cpus = cpus.map(|n| n as f64);
    match (quota, cpus) {
        (Some((q, d)), Some(c)) if q < c => (Some(q), Some(d)),
        (Some((q, d)), None) => (Some(q), Some(d)),
        (_, c) => (c, None),
    }
}

/// The CPUs process `pid` may run on (`Cpus_allowed_list`), else those this process may
/// (`available_parallelism`, which also floors our own quota).
pub fn cpus_allowed(pid: Option<u32>) -> Option<usize> {
    pid.and_then(|p| {
        let text = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
        let line = text.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
        parse_cpu_list(line)
    })
    .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
}

/// Cumulative CPU-throttled seconds of the cgroup directory `dir` (v2 `throttled_usec`, v1
/// `throttled_time`).
pub fn throttled_s(dir: &Path) -> Option<f64> {
    let b = std::fs::read(dir.join("cpu.stat")).ok()?;
    match keyed(&b, [b"throttled_usec", b"throttled_time"]) {
        [Some(us), _] => Some(us as f64 / 1e6),
        [None, Some(ns)] => Some(ns as f64 / 1e9),
        _ => None,
    }
}

/// Follows the cores a job can use over its run (`RunSummary::cpu_given_cores`): observed at the
/// start and at each of the first [`EARLY_TICKS`] samples, because a job may narrow them itself
/// right after it starts (`taskset`, moving into a cgroup with a quota), then every
/// [`LATER_EVERY`]th: each look re-reads `/proc/<pid>/cgroup`, the affinity and the quota of
/// every parent cgroup, several times what a sample itself costs, and quotas rarely change
/// mid-run. The least seen is what it had. The binding
/// quota's cgroup is remembered with its throttled time when first seen, for the run's
/// throttling.
#[derive(Debug, Default)]
pub struct CoresGivenProbe {
    ticks: u64,
    /// The job's process (command, PID mode): its affinity and cgroups are re-read.
    pub pid: Option<u32>,
    /// Fixed cgroups (attach mode).
    pub dirs: Vec<PathBuf>,
    pub root: PathBuf,
    least: Option<f64>,
    quota_dir: Option<(PathBuf, Option<f64>)>,
}

/// Samples after the start during which every tick looks again.
pub const EARLY_TICKS: u64 = 10;
/// After those, one tick in this many looks again.
pub const LATER_EVERY: u64 = 30;

impl CoresGivenProbe {
    /// Called at each sample: looks again while the run is young, then now and then.
    pub fn tick(&mut self) {
        self.ticks += 1;
        if self.ticks <= EARLY_TICKS || self.ticks % LATER_EVERY == 0 {
            self.observe();
        }
    }

    pub fn new(pid: Option<u32>, dirs: Vec<PathBuf>, root: &Path) -> Self {
        let mut p = CoresGivenProbe {
            pid,
            dirs,
            root: root.to_path_buf(),
            ..Default::default()
        };
        p.observe();
        p
    }

    pub fn observe(&mut self) {
        let mut dirs = self.dirs.clone();
        if let Some(pid) = self.pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return;
            }
            dirs.extend(process_cpu_cgroups(pid, &self.root));
        }
        let (given, dir) = cores_given(cpus_allowed(self.pid), &dirs, &self.root);
        if let Some(g) = given {
            if self.least.is_none_or(|l| g < l) {
                self.least = Some(g);
                if let Some(d) = dir {
                    if self.quota_dir.as_ref().is_none_or(|(q, _)| *q != d) {
                        let t0 = throttled_s(&d);
                        self.quota_dir = Some((d, t0));
                    }
                }
            }
        }
    }

    /// The least cores seen, and the binding cgroup's throttled seconds since it was first seen.
    pub fn finish(&self) -> (Option<f64>, f64) {
        let throttled = match &self.quota_dir {
            Some((d, Some(t0))) => throttled_s(d).map_or(0.0, |t| (t - t0).max(0.0)),
            _ => 0.0,
        };
        (self.least, throttled)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn keyed_values_and_io_parsers() {
        let b = b"anon 100\nfile 5\ninactive_file 7\npgfault 9\n";
        assert_eq!(
            keyed(b, [b"inactive_file", b"anon", b"missing"]),
            [Some(7), Some(100), None]
        );
        let io = b"259:0 rbytes=1000 wbytes=2000 rios=1 wios=2 dbytes=0 dios=0\n8:0 rbytes=1 wbytes=2 rios=1 wios=1 dbytes=0 dios=0\n";
        assert_eq!(parse_io_stat_v2(io), (1001, 2002));
        let blk =
            b"8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 0\n8:0 Discard 0\n8:0 Total 12288\nTotal 12288\n";
        assert_eq!(parse_blkio_v1(blk), (4096, 8192));
    }

    #[test]
    fn cpu_quota_and_cpu_list_parsers() {
        assert_eq!(parse_cpu_max(b"150000 100000\n"), Some(1.5));
        assert_eq!(parse_cpu_max(b"max 100000\n"), None);
        assert_eq!(parse_cfs_quota(b"200000\n", b"100000\n"), Some(2.0));
        assert_eq!(parse_cfs_quota(b"-1\n", b"100000\n"), None);
        assert_eq!(parse_cpu_list("0-3,8\n"), Some(5));
        assert_eq!(parse_cpu_list("5"), Some(1));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
    }

    #[test]
    fn the_tightest_quota_up_the_tree_binds_and_never_above_the_cpus() {
        // GIVEN root/a (2.5 cores) / b (no quota) / c (4 cores), v2 files
        let root = std::env::temp_dir().join(format!("spotfit-quota-{}", std::process::id()));
        let c = root.join("a/b/c");
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(root.join("a/cpu.max"), "250000 100000\n").unwrap();
        std::fs::write(root.join("a/b/cpu.max"), "max 100000\n").unwrap();
        std::fs::write(c.join("cpu.max"), "400000 100000\n").unwrap();
        std::fs::write(root.join("a/cpu.stat"), "usage_usec 9\nthrottled_usec 1500000\n").unwrap();
        // WHEN the cores given to a job in c are asked, on 8 and on 2 CPUs
        let dirs = [c.clone()];
        let (q8, d8) = cores_given(Some(8), &dirs, &root);
        let (q2, d2) = cores_given(Some(2), &dirs, &root);
        // THEN the parent's 2.5 binds on 8 CPUs (its throttling is what to read), the CPUs on 2
        assert_eq!(q8, Some(2.5));
        assert_eq!(d8.as_deref(), Some(root.join("a").as_path()));
        assert_eq!(throttled_s(&root.join("a")), Some(1.5));
        assert_eq!((q2, d2), (Some(2.0), None));
        assert_eq!(cores_given(None, &[], &root), (None, None));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_process_cgroup_file_names_the_memory_path_else_the_v2_one() {
        // GIVEN /proc/<pid>/cgroup of a podman container here (hybrid v1) and on a v2 host
        let hybrid = "9:name=systemd:/libpod_parent/libpod-28154f\n4:memory:/libpod_parent/libpod-28154f\n0::/libpod_parent/libpod-28154f\n";
        let v2 = "0::/machine.slice/libpod-28154f.scope\n";
        assert_eq!(cgroup_path_of(hybrid).as_deref(), Some("/libpod_parent/libpod-28154f"));
        assert_eq!(
            cgroup_path_of(v2).as_deref(),
            Some("/machine.slice/libpod-28154f.scope")
        );
        // AND a process in the root cgroup names none (tracking it would track the host)
        assert_eq!(cgroup_path_of("0::/\n"), None);
        assert_eq!(cgroup_path_of("4:memory:/\n0::/x\n"), None);
    }

    #[test]
    fn container_cgroups_are_found_in_docker_and_podman_layouts() {
        // GIVEN a v2 root with one container of each layout (the files a v2 directory has)
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
        let id = |c: char| c.to_string().repeat(64);
        let dirs = [
            format!("system.slice/docker-{}.scope", id('a')),
            format!("docker/{}", id('b')),
            format!("machine.slice/libpod-{}.scope", id('c')),
            format!("libpod_parent/libpod-{}", id('d')),
            format!("machine.slice/libpod-conmon-{}.scope", id('e')),
        ];
        for d in &dirs {
            let p = root.path().join(d);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("cgroup.procs"), "").unwrap();
            std::fs::write(p.join("cgroup.controllers"), "").unwrap();
        }
        // THEN each id (or a unique prefix) finds its own directory, and conmon's is no container
        for (c, d) in ['a', 'b', 'c', 'd'].iter().zip(&dirs) {
            let want = Cgroup::V2(root.path().join(d));
            assert_eq!(container_cgroup(&id(*c), root.path()).unwrap(), want);
            assert_eq!(container_cgroup(&id(*c)[..12], root.path()).unwrap(), want);
        }
        assert!(container_cgroup(&id('e'), root.path()).is_err());
    }

    #[test]
    fn bad_docker_ids_are_refused_by_field() {
        let e = docker_cgroup("../../etc", Path::new("/nonexistent")).unwrap_err();
        assert!(e.to_string().contains("docker"), "{e}");
    }
}
