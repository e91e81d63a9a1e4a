//! Turns raw readings (process tree or cgroup, host, GPUs) into [`Sample`]s: rates from
//! differences, cumulative counters kept monotonic from the monitor's start.

use crate::cgroup::{Cgroup, CgroupStats};
use crate::gpu::GpuProbe;
use crate::procfs::{parse_host_cpu, parse_net_dev, FileReader};
use crate::tree::{clock_ticks, TreeSampler};
use spotfit_core::{GpuSample, MemoryMetric, Sample};
use std::time::Instant;

/// What is tracked.
#[derive(Debug)]
pub(crate) enum Source {
    Tree(TreeSampler),
    /// The cgroup's counters; the tree below its processes gives pids (GPU memory, PSS).
    Cgroup {
        cg: Cgroup,
        tree: TreeSampler,
        procs: Vec<u32>,
    },
}

/// A cumulative counter turned into "since the monitor started", robust to the raw sum going
/// down (a process left the tree without being reaped inside it).
#[derive(Debug, Clone, Copy, Default)]
struct Counter {
    last_raw: u64,
    acc: u64,
}

impl Counter {
    fn update(&mut self, raw: u64) -> u64 {
        let d = raw.saturating_sub(self.last_raw);
        self.acc += d;
        self.last_raw = raw;
        d
    }
    fn rebase(&mut self, raw: u64) {
        self.last_raw = raw;
    }
}

#[derive(Debug)]
pub(crate) struct Sampler {
    source: Source,
    host: FileReader,
    gpu: Option<GpuProbe>,
    gpus: Vec<GpuSample>,
    ns_per_tick: u64,
    ticks_per_s: f64,
    run_id: String,
    seq: u64,
    pss_every: u32,
    pss: Option<u64>,
    last_at: Instant,
    host_cpu: Option<(u64, u64)>,
    net_base: Option<(u64, u64)>,
    cpu_ns: Counter,
    minflt: Counter,
    majflt: Counter,
    read: Counter,
    write: Counter,
    /// A container's last counters, read as it stopped (its cgroup is removed right after):
    /// used instead of reading the cgroup from then on.
    frozen: Option<CgroupStats>,
}

/// The pieces of one reading of the tracked source, before rates are derived.
#[derive(Debug, Default)]
struct Raw {
    cpu_ns: u64,
    minflt: u64,
    majflt: u64,
    read: u64,
    write: u64,
    rss: u64,
    processes: u32,
    cg: Option<CgroupStats>,
}

impl Sampler {
    /// `baseline`: count from what the source has already used (attach) instead of from zero (a
    /// job we just started).
    pub(crate) fn new(source: Source, run_id: &str, pss_every: u32, gpu: bool, start: Instant, baseline: bool) -> Self {
        let ticks = clock_ticks();
        let mut s = Self {
            source,
            host: FileReader::default(),
            gpu: if gpu { GpuProbe::open() } else { None },
            gpus: Vec::new(),
            ns_per_tick: 1_000_000_000 / ticks,
            ticks_per_s: ticks as f64,
            run_id: run_id.to_string(),
            seq: 0,
            pss_every: pss_every.max(1),
            pss: None,
            last_at: start,
            host_cpu: None,
            net_base: None,
            cpu_ns: Counter::default(),
            minflt: Counter::default(),
            majflt: Counter::default(),
            read: Counter::default(),
            write: Counter::default(),
            frozen: None,
        };
        s.host_cpu = s.host.read_proc(None, "stat").ok().and_then(parse_host_cpu);
        s.net_base = s.host.read_proc(None, "net/dev").ok().and_then(parse_net_dev);
        if baseline {
            let raw = s.read_source();
            s.cpu_ns.rebase(raw.cpu_ns);
            s.minflt.rebase(raw.minflt);
            s.majflt.rebase(raw.majflt);
            s.read.rebase(raw.read);
            s.write.rebase(raw.write);
        }
        s
    }

    /// From now on sample `cg` (a container's, found after its client started), its counters
    /// counted from zero, i.e. from the container's start; what the tree counted so far stays.
    pub(crate) fn set_cgroup(&mut self, cg: Cgroup) {
        self.source = Source::Cgroup {
            cg,
            tree: TreeSampler::new(vec![]),
            procs: Vec::new(),
        };
        for c in [
            &mut self.cpu_ns,
            &mut self.minflt,
            &mut self.majflt,
            &mut self.read,
            &mut self.write,
        ] {
            c.rebase(0);
        }
        self.pss = None;
    }

    /// The tracked cgroup's final counters (see [`Sampler::frozen`]).
    pub(crate) fn freeze_cgroup(&mut self, last: CgroupStats) {
        self.frozen = Some(last);
    }

    pub(crate) fn gpu_count(&self) -> u32 {
        self.gpu.as_ref().map_or(0, |g| g.count())
    }

    fn read_source(&mut self) -> Raw {
        match &mut self.source {
            Source::Tree(t) => {
                let tt = t.sample();
                Raw {
                    cpu_ns: tt.cpu_ticks * self.ns_per_tick,
                    minflt: tt.minflt,
                    majflt: tt.majflt,
                    read: tt.read_bytes,
                    write: tt.write_bytes,
                    rss: tt.rss_bytes,
                    processes: tt.processes,
                    cg: None,
                }
            }
            Source::Cgroup { cg, tree, procs } => {
                let st = match self.frozen {
                    Some(last) => last,
                    None => cg.read(&mut self.host),
                };
                if self.frozen.is_some() || cg.procs(&mut self.host, procs).is_err() {
                    procs.clear();
                }
                if st.cpu_usage_ns.is_none() && self.frozen.is_none() && !cg.procs_dir().exists() {
                    // The cgroup is gone (a container's, removed by its runtime as it stopped):
                    // nothing changed since the last reading. Falling back to the (empty) tree
                    // would read as counters reset, and the frozen final counters would then be
                    // counted twice.
                    return Raw {
                        cpu_ns: self.cpu_ns.last_raw,
                        minflt: self.minflt.last_raw,
                        majflt: self.majflt.last_raw,
                        read: self.read.last_raw,
                        write: self.write.last_raw,
                        ..Default::default()
                    };
                }
                tree.set_roots(procs);
                // The tree walk gives the pids (GPU memory, PSS) and RSS; the counters are the cgroup's.
                let tt = tree.sample();
                Raw {
                    cpu_ns: st.cpu_usage_ns.unwrap_or(tt.cpu_ticks * self.ns_per_tick),
                    minflt: st
                        .pgfault
                        .map_or(tt.minflt, |pf| pf.saturating_sub(st.pgmajfault.unwrap_or(0))),
                    majflt: st.pgmajfault.unwrap_or(tt.majflt),
                    read: st.read_bytes.unwrap_or(tt.read_bytes),
                    write: st.write_bytes.unwrap_or(tt.write_bytes),
                    rss: tt.rss_bytes,
                    processes: procs.len() as u32,
                    cg: Some(st),
                }
            }
        }
    }

    fn tree(&mut self) -> &mut TreeSampler {
        match &mut self.source {
            Source::Tree(t) => t,
            Source::Cgroup { tree, .. } => tree,
        }
    }

    /// Takes one sample now.
    pub(crate) fn sample(&mut self, now: Instant, ts_ms: i64) -> Sample {
        let raw = self.read_source();
        let interval_s = now.saturating_duration_since(self.last_at).as_secs_f64();
        let cpu_d = self.cpu_ns.update(raw.cpu_ns);
        self.minflt.update(raw.minflt);
        self.majflt.update(raw.majflt);
        self.read.update(raw.read);
        self.write.update(raw.write);
        if self.seq % u64::from(self.pss_every) == 0 {
            self.pss = self.tree().pss_bytes().or(self.pss);
        }
        let mut s = self.build(now, ts_ms, interval_s, cpu_d, raw.rss, raw.processes);
        if let Some(cg) = raw.cg {
            apply_cgroup(&mut s, &cg);
        }
        s
    }

    fn build(&mut self, now: Instant, ts_ms: i64, interval_s: f64, cpu_d_ns: u64, rss: u64, processes: u32) -> Sample {
        let host_now = self.host.read_proc(None, "stat").ok().and_then(parse_host_cpu);
        let host_cpu_cores = match (self.host_cpu, host_now) {
            (Some((b0, _)), Some((b1, _))) if interval_s > 0.0 => {
                Some(b1.saturating_sub(b0) as f64 / self.ticks_per_s / interval_s)
            }
            _ => None,
        };
        if host_now.is_some() {
            self.host_cpu = host_now;
        }
        let net = self.host.read_proc(None, "net/dev").ok().and_then(parse_net_dev);
        let (net_rx, net_tx) = match (self.net_base, net) {
            (Some((r0, t0)), Some((r, t))) => (Some(r.saturating_sub(r0)), Some(t.saturating_sub(t0))),
            _ => (None, None),
        };
        if let Some(g) = &self.gpu {
            let pids = match &self.source {
                Source::Tree(t) => t.pids(),
                Source::Cgroup { tree, .. } => tree.pids(),
            };
            g.sample(pids, &mut self.gpus);
        }
        let cpu_cores = if interval_s > 0.0 {
            cpu_d_ns as f64 / 1e9 / interval_s
        } else {
            0.0
        };
        let s = Sample {
            ts_ms,
            run_id: self.run_id.clone(),
            seq: self.seq,
            interval_s,
            cpu_cores,
            host_cpu_cores,
            processes,
            mem_bytes: rss,
            mem_metric: MemoryMetric::Rss,
            rss_bytes: rss,
            pss_bytes: self.pss,
            page_faults_minor: self.minflt.acc,
            page_faults_major: self.majflt.acc,
            disk_read_bytes: self.read.acc,
            disk_write_bytes: self.write.acc,
            net_rx_bytes: net_rx,
            net_tx_bytes: net_tx,
            gpus: self.gpus.clone(),
            ..Default::default()
        };
        self.seq += 1;
        self.last_at = now;
        s
    }
}

/// The cgroup's figures win over the tree's where the cgroup has them: the working set is what
/// sizing needs (the kernel cannot reclaim it), and it counts what RSS sums miss (tmpfs, kernel).
fn apply_cgroup(s: &mut Sample, cg: &CgroupStats) {
    s.cgroup_mem_bytes = cg.mem_usage_bytes;
    s.cgroup_working_set_bytes = cg.working_set_bytes;
    s.cgroup_mem_limit_bytes = cg.mem_limit_bytes;
    s.oom_kills = cg.oom_kills;
    s.mem_limit_hits = cg.mem_limit_hits;
    s.cpu_throttled_s = cg.cpu_throttled_ns.map(|ns| ns as f64 / 1e9);
    if let Some(ws) = cg.working_set_bytes {
        s.mem_bytes = ws;
        s.mem_metric = MemoryMetric::Cgroup;
    }
    if s.rss_bytes == 0 {
        s.rss_bytes = cg.anon_bytes.unwrap_or(0);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn write_v2(dir: &std::path::Path, usage_usec: u64) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("cgroup.controllers"), "cpu memory\n").unwrap();
        std::fs::write(dir.join("cgroup.procs"), "").unwrap();
        std::fs::write(
            dir.join("cpu.stat"),
            format!("usage_usec {usage_usec}\nthrottled_usec 0\n"),
        )
        .unwrap();
        std::fs::write(dir.join("memory.current"), "1048576\n").unwrap();
    }

    #[test]
    fn a_container_switch_counts_its_cgroup_from_zero_and_its_end_once() {
        // GIVEN a sampler on a (dead) tree, switched to a container's cgroup that used 2 s
        let root = tempfile::tempdir().unwrap();
        let cg_dir = root.path().join("libpod-ab");
        write_v2(&cg_dir, 2_000_000);
        let t0 = Instant::now();
        let mut s = Sampler::new(Source::Tree(TreeSampler::new(vec![])), "r", 1, false, t0, false);
        s.set_cgroup(Cgroup::V2(cg_dir.clone()));
        let at = |ms| t0 + std::time::Duration::from_millis(ms);
        let mut total = 0.0;
        let mut take = |s: &mut Sampler, ms| {
            let x = s.sample(at(ms), 0);
            total += x.cpu_cores * x.interval_s;
        };
        // WHEN it samples, the container runs to 3 s, its cgroup is removed, then the final
        // counters (3.5 s, read as it emptied) arrive
        take(&mut s, 100);
        write_v2(&cg_dir, 3_000_000);
        take(&mut s, 200);
        std::fs::remove_dir_all(&cg_dir).unwrap();
        take(&mut s, 300);
        s.freeze_cgroup(CgroupStats {
            cpu_usage_ns: Some(3_500_000_000),
            ..Default::default()
        });
        take(&mut s, 400);
        // THEN the run used what the container used, 3.5 s: from its start, the end once
        assert!((total - 3.5).abs() < 1e-6, "{total}");
    }
}
