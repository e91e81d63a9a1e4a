//! Cheap readers of `/proc` files. Every read goes into one reused buffer and every parser is a
//! pure function over bytes, tested on real file contents. Only O(1) files are read per sample
//! (`stat`, `io`, `children`); `smaps_rollup` (PSS, ~16 ms per GiB) is read only when asked.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read};

/// Reads small kernel files into a reused buffer, building paths in a reused string.
#[derive(Debug)]
pub struct FileReader {
    buf: Vec<u8>,
    path: String,
    root: String,
}

impl Default for FileReader {
    fn default() -> Self {
        Self::new("/proc")
    }
}

impl FileReader {
    /// `root` is `/proc` in production and a fixture directory in tests.
    pub fn new(root: &str) -> Self {
        Self {
            buf: Vec::with_capacity(8192),
            path: String::with_capacity(128),
            root: root.to_string(),
        }
    }

    /// Reads `<root>/<pid>/<name>` (or `<root>/<name>` when `pid` is None).
    pub fn read_proc(&mut self, pid: Option<u32>, name: &str) -> io::Result<&[u8]> {
        self.path.clear();
        self.path.push_str(&self.root);
        if let Some(pid) = pid {
            let _ = write!(self.path, "/{pid}");
        }
        self.path.push('/');
        self.path.push_str(name);
        read_into(&self.path, &mut self.buf)?;
        Ok(&self.buf)
    }

    /// Reads `<root>/<pid>/task/<tid>/children`.
    pub fn read_children(&mut self, pid: u32, tid: u32) -> io::Result<&[u8]> {
        self.path.clear();
        let _ = write!(self.path, "{}/{pid}/task/{tid}/children", self.root);
        read_into(&self.path, &mut self.buf)?;
        Ok(&self.buf)
    }

    /// Reads any absolute path (cgroup files).
    pub fn read_path(&mut self, path: &std::path::Path) -> io::Result<&[u8]> {
        let f = File::open(path)?;
        read_file(f, &mut self.buf)?;
        Ok(&self.buf)
    }

    /// The thread ids of `pid` (only called for multi-threaded processes).
    pub fn task_ids(&mut self, pid: u32, out: &mut Vec<u32>) -> io::Result<()> {
        self.path.clear();
        let _ = write!(self.path, "{}/{pid}/task", self.root);
        out.clear();
        for e in std::fs::read_dir(&self.path)? {
            let e = e?;
            if let Some(tid) = e.file_name().to_str().and_then(|s| s.parse().ok()) {
                out.push(tid);
            }
        }
        Ok(())
    }
}

fn read_into(path: &str, buf: &mut Vec<u8>) -> io::Result<()> {
    let f = File::open(path)?;
    read_file(f, buf)
}

fn read_file(mut f: File, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    // Kernel pseudo-files report size 0, so read until EOF into the reused buffer.
    f.read_to_end(buf)?;
    Ok(())
}

/// The figures taken from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PidStat {
    pub ppid: u32,
    /// utime + stime + cutime + cstime, clock ticks. Including the reaped children's times keeps
    /// the tree's sum continuous when a child exits: its time moves into its parent's `cutime`.
    pub cpu_ticks: u64,
    /// minflt + cminflt.
    pub minflt: u64,
    /// majflt + cmajflt.
    pub majflt: u64,
    pub num_threads: u32,
    /// Start time after boot, clock ticks (tells a reused pid apart).
    pub starttime: u64,
    /// Resident pages (the same figure as `statm`'s second field).
    pub rss_pages: u64,
}

/// Parses `/proc/<pid>/stat`. The command name may hold spaces and parentheses, so fields are
/// counted from the last `)`.
pub fn parse_stat(b: &[u8]) -> Option<PidStat> {
    let close = b.iter().rposition(|&c| c == b')')?;
    let mut it = b[close + 1..]
        .split(|c| c.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    // Index 0 is field 3 (state).
    let mut f = [0u64; 22];
    for (i, slot) in f.iter_mut().enumerate() {
        let field = it.next()?;
        if i == 0 {
            continue;
        }
        *slot = parse_u64(field).unwrap_or(0);
    }
    Some(PidStat {
        ppid: f[1] as u32,
        minflt: f[7] + f[8],
        majflt: f[9] + f[10],
        cpu_ticks: f[11] + f[12] + f[13] + f[14],
        num_threads: f[17] as u32,
        starttime: f[19],
        rss_pages: f[21],
    })
}

/// `read_bytes` and `write_bytes` of `/proc/<pid>/io` (storage I/O, including reaped children).
pub fn parse_io(b: &[u8]) -> Option<(u64, u64)> {
    let (mut r, mut w) = (None, None);
    for line in b.split(|&c| c == b'\n') {
        if let Some(v) = line.strip_prefix(b"read_bytes:") {
            r = parse_u64(trim(v));
        } else if let Some(v) = line.strip_prefix(b"write_bytes:") {
            w = parse_u64(trim(v));
        }
    }
    Some((r?, w?))
}

/// The `Pss:` line of `/proc/<pid>/smaps_rollup`, bytes.
pub fn parse_pss(b: &[u8]) -> Option<u64> {
    kv_kib(b, b"Pss:")
}

/// A `Key:   N kB` line, in bytes.
pub fn kv_kib(b: &[u8], key: &[u8]) -> Option<u64> {
    for line in b.split(|&c| c == b'\n') {
        if let Some(v) = line.strip_prefix(key) {
            let v = trim(v);
            let num = v.split(|c| c.is_ascii_whitespace()).next()?;
            return parse_u64(num).map(|k| k * 1024);
        }
    }
    None
}

/// The pids listed in a `children` file (space separated), appended to `out`.
pub fn parse_pid_list(b: &[u8], out: &mut Vec<u32>) {
    for f in b.split(|c| c.is_ascii_whitespace()).filter(|f| !f.is_empty()) {
        if let Some(p) = parse_u64(f) {
            out.push(p as u32);
        }
    }
}

/// Host CPU from the first line of `/proc/stat`: (busy ticks, total ticks).
pub fn parse_host_cpu(b: &[u8]) -> Option<(u64, u64)> {
    let line = b.split(|&c| c == b'\n').next()?;
    let rest = line.strip_prefix(b"cpu ")?;
    let mut v = [0u64; 8];
    for (slot, f) in v
        .iter_mut()
        .zip(rest.split(|c| c.is_ascii_whitespace()).filter(|f| !f.is_empty()))
    {
        *slot = parse_u64(f)?;
    }
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    let total: u64 = v.iter().sum();
    let idle = v[3] + v[4];
    Some((total - idle, total))
}

/// Sum of received and sent bytes over all interfaces but loopback, from `/proc/net/dev`.
pub fn parse_net_dev(b: &[u8]) -> Option<(u64, u64)> {
    let (mut rx, mut tx) = (0u64, 0u64);
    let mut seen = false;
    for line in b.split(|&c| c == b'\n').skip(2) {
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        if trim(&line[..colon]) == b"lo" {
            continue;
        }
        let mut f = line[colon + 1..]
            .split(|c| c.is_ascii_whitespace())
            .filter(|f| !f.is_empty());
        let r = f.next().and_then(parse_u64);
        let t = f.nth(7).and_then(parse_u64);
        if let (Some(r), Some(t)) = (r, t) {
            rx += r;
            tx += t;
            seen = true;
        }
    }
    seen.then_some((rx, tx))
}

pub(crate) fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

pub(crate) fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    // Real contents, captured on this machine (python3 burning CPU under a shell).
    const STAT: &[u8] = b"4242 (python3 (x) y) R 4200 4242 4200 0 -1 4194304 2611 13 0 2 1234 56 7 8 20 0 3 0 98765 1073741824 262144 18446744073709551615 1 1 0 0 0 0 0 16781312 2 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_fields_are_counted_from_the_last_paren() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(s.ppid, 4200);
        assert_eq!(s.minflt, 2611 + 13);
        assert_eq!(s.majflt, 2);
        assert_eq!(s.cpu_ticks, 1234 + 56 + 7 + 8);
        assert_eq!(s.num_threads, 3);
        assert_eq!(s.starttime, 98765);
        assert_eq!(s.rss_pages, 262144);
        assert_eq!(parse_stat(b"12 (trunc"), None);
    }

    #[test]
    fn io_pss_children_host_and_net() {
        let io = b"rchar: 10\nwchar: 20\nsyscr: 1\nsyscw: 2\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_io(io), Some((4096, 8192)));
        let smaps = b"55d0-7ffd ---p 00000000 00:00 0  [rollup]\nRss:             1048576 kB\nPss:              524288 kB\nPss_Anon:         524000 kB\n";
        assert_eq!(parse_pss(smaps), Some(524288 * 1024));
        let mut v = vec![];
        parse_pid_list(b"101 102 4000 \n", &mut v);
        assert_eq!(v, vec![101, 102, 4000]);
        let stat = b"cpu  100 5 50 1000 10 1 2 3 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(parse_host_cpu(stat), Some((100 + 5 + 50 + 1 + 2 + 3, 1171)));
        let dev = b"Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 9999 10 0 0 0 0 0 0 9999 10 0 0 0 0 0 0\n  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n  eth1: 1 1 0 0 0 0 0 0 2 1 0 0 0 0 0 0\n";
        assert_eq!(parse_net_dev(dev), Some((1001, 2002)));
    }

    #[test]
    fn reads_this_process() {
        let mut r = FileReader::default();
        let me = std::process::id();
        let s = parse_stat(r.read_proc(Some(me), "stat").unwrap()).unwrap();
        assert!(s.rss_pages > 0);
        assert!(parse_io(r.read_proc(Some(me), "io").unwrap()).is_some());
        assert!(parse_host_cpu(r.read_proc(None, "stat").unwrap()).is_some());
    }
}
