//! The tracked process tree: found by following `/proc/<pid>/task/<tid>/children` from the root
//! pids, never by scanning every process on the host (~13 µs a process on a busy host).

use crate::procfs::{parse_io, parse_pid_list, parse_pss, parse_stat, FileReader};

/// Cumulative counters and gauges summed over the tree at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeTotals {
    /// Sum of utime+stime+cutime+cstime, clock ticks.
    pub cpu_ticks: u64,
    pub minflt: u64,
    pub majflt: u64,
    pub rss_bytes: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub processes: u32,
}

/// Walks the tree below a set of root pids with reused buffers.
#[derive(Debug)]
pub struct TreeSampler {
    roots: Vec<u32>,
    reader: FileReader,
    pids: Vec<u32>,
    stack: Vec<u32>,
    tids: Vec<u32>,
    page_size: u64,
}

/// A tree larger than this is cut short rather than walked forever (pid reuse mid-walk).
const MAX_PROCESSES: usize = 100_000;

impl TreeSampler {
    pub fn new(roots: Vec<u32>) -> Self {
        Self::with_reader(roots, FileReader::default())
    }

    pub fn with_reader(roots: Vec<u32>, reader: FileReader) -> Self {
        Self {
            roots,
            reader,
            pids: Vec::new(),
            stack: Vec::new(),
            tids: Vec::new(),
            page_size: page_size(),
        }
    }

    /// Replaces the roots (cgroup mode: the cgroup's process list).
    pub fn set_roots(&mut self, roots: &[u32]) {
        self.roots.clear();
        self.roots.extend_from_slice(roots);
    }

    /// The pids found by the last [`TreeSampler::sample`].
    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    /// Walks the tree and sums its counters. Processes that vanish mid-walk are skipped.
    pub fn sample(&mut self) -> TreeTotals {
        let mut t = TreeTotals::default();
        self.pids.clear();
        self.stack.clear();
        self.stack.extend(self.roots.iter().rev());
        while let Some(pid) = self.stack.pop() {
            if self.pids.len() >= MAX_PROCESSES {
                break;
            }
            let Some(st) = self.reader.read_proc(Some(pid), "stat").ok().and_then(parse_stat) else {
                continue;
            };
            if self.pids.contains(&pid) {
                continue;
            }
            self.pids.push(pid);
            t.processes += 1;
            t.cpu_ticks += st.cpu_ticks;
            t.minflt += st.minflt;
            t.majflt += st.majflt;
            t.rss_bytes += st.rss_pages * self.page_size;
            if let Some((r, w)) = self.reader.read_proc(Some(pid), "io").ok().and_then(parse_io) {
                t.read_bytes += r;
                t.write_bytes += w;
            }
            if st.num_threads <= 1 {
                if let Ok(b) = self.reader.read_children(pid, pid) {
                    parse_pid_list(b, &mut self.stack);
                }
            } else {
                // A child forked by a non-main thread is listed only under that thread.
                let mut tids = std::mem::take(&mut self.tids);
                if self.reader.task_ids(pid, &mut tids).is_ok() {
                    for &tid in &tids {
                        if let Ok(b) = self.reader.read_children(pid, tid) {
                            parse_pid_list(b, &mut self.stack);
                        }
                    }
                }
                self.tids = tids;
            }
        }
        t
    }

    /// Sum of PSS over the pids of the last walk, bytes (costly: call at a low rate).
    pub fn pss_bytes(&mut self) -> Option<u64> {
        let mut sum = 0u64;
        let mut any = false;
        for i in 0..self.pids.len() {
            let pid = self.pids[i];
            if let Some(p) = self
                .reader
                .read_proc(Some(pid), "smaps_rollup")
                .ok()
                .and_then(parse_pss)
            {
                sum += p;
                any = true;
            }
        }
        any.then_some(sum)
    }
}

/// Clock ticks per second (`USER_HZ`), for `stat` times.
pub fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100, |v| v.max(1) as u64)
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |v| v.max(1) as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn finds_children_and_grandchildren() {
        // GIVEN a shell whose child sleeps and whose grandchild sleeps
        let mut sh = Command::new("sh")
            .args(["-c", "sleep 5 & (sleep 5 & wait) & wait"])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        // WHEN the tree is walked from the shell
        let mut t = TreeSampler::new(vec![sh.id()]);
        let totals = t.sample();
        // THEN the shell, the subshell and both sleeps are found
        assert_eq!(totals.processes, 4, "{:?}", t.pids());
        assert!(totals.rss_bytes > 0);
        for &p in t.pids().iter().rev() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p as i32), nix::sys::signal::SIGKILL);
        }
        let _ = sh.wait();
    }
}
