//! Gzip bombs against the trace reader, alone in their process so that the peak RSS it reads
//! (`VmHWM`) is this test's own. Each bomb is built to hit one bound of the reader, and the
//! test checks that it is that bound that stops it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use spotfit_sim::trace::{read_trace, TraceError, MAX_LINE_BYTES, MAX_ROWS, MAX_TRACE_BYTES};
use std::io::Write;

/// The memory the reader may use on any input, beyond the input's own bytes.
const MEMORY_BOUND_BYTES: u64 = 256 << 20;

const HEADER: &[u8] = b"job_name,duration_s,mem_peak_gib,pad\n";

fn vm_hwm_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The header, then `members` gzip members each inflating to `chunk` repeated whole up to
/// 1 MiB: the megabyte is compressed once, so a bomb of hundreds of MiB costs a few
/// milliseconds and a few hundred kB to build.
fn bomb(chunk: &[u8], members: usize) -> (Vec<u8>, u64) {
    let mut one = Vec::with_capacity(1 << 20);
    while one.len() + chunk.len() <= (1 << 20) {
        one.extend_from_slice(chunk);
    }
    let mut out = gz(HEADER);
    let m = gz(&one);
    for _ in 0..members {
        out.extend_from_slice(&m);
    }
    (out, (HEADER.len() + members * one.len()) as u64)
}

/// The bound that refused `bytes`, and the message.
fn too_large(bytes: &[u8]) -> (u64, &'static str, String) {
    match read_trace("bomb", bytes) {
        Err(e @ TraceError::TooLarge { limit, unit }) => (limit, unit, e.to_string()),
        other => panic!("wanted TooLarge, got {:?}", other.map(|t| t.jobs.len())),
    }
}

#[test]
fn gzip_bombs_are_refused_by_the_bound_they_hit_within_the_memory_bound() {
    // GIVEN rows that are valid but long (60 KiB of padding each, under the line bound, few
    // enough to stay under the row bound), inflating to 300 MiB from under 1 MB
    let mut long_row = b"a,1,1,".to_vec();
    long_row.resize(long_row.len() + (60 << 10), b'0');
    long_row.push(b'\n');
    assert!(long_row.len() < MAX_LINE_BYTES);
    let (big, inflated) = bomb(&long_row, 300);
    assert!(inflated > MAX_TRACE_BYTES, "{inflated} bytes do not pass the bound");
    assert!(inflated / (long_row.len() as u64) < MAX_ROWS as u64);
    assert!(big.len() < 1 << 20, "{} bytes", big.len());
    // … and the same rows, 16 MiB of them: what the bomb is made of is a readable trace
    let (small, _) = bomb(&long_row, 16);
    assert!(read_trace("small", &small).unwrap().jobs.len() > 200);
    // … and two more bombs: zeros (one endless line) and short valid rows (a row count bomb)
    let (zeros, _) = bomb(&[b'0'; 1024], 2048);
    let (rows, _) = bomb(b"a,1,1,\n", 2048);
    let before = vm_hwm_bytes();
    // WHEN read THEN each is refused by the bound it hits, with a clear message
    for (what, bytes, limit, unit) in [
        ("long rows", &big, MAX_TRACE_BYTES, "bytes inflated"),
        ("zeros", &zeros, MAX_LINE_BYTES as u64, "bytes in one line"),
        ("short rows", &rows, MAX_ROWS as u64, "rows"),
    ] {
        let (got_limit, got_unit, msg) = too_large(bytes);
        assert_eq!((got_limit, got_unit), (limit, unit), "{what}: {msg}");
        assert!(msg.contains(&format!("larger than {limit} {unit}")), "{what}: {msg}");
    }
    // AND the peak memory grew by less than the stated bound (the old reader needed ≈ 3×
    // the inflated size)
    let grew = vm_hwm_bytes().saturating_sub(before);
    eprintln!("gzip bombs: peak RSS grew by {} MiB", grew >> 20);
    assert!(grew < MEMORY_BOUND_BYTES, "peak RSS grew by {} MiB", grew >> 20);
}
