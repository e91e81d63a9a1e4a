//! A gzip bomb against the trace reader, alone in its process so that the peak RSS it reads
//! (`VmHWM`) is this test's own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use spotfit_sim::trace::{read_trace, TraceError};
use std::io::Write;

/// The memory the reader may use on any input, beyond the input's own bytes.
const MEMORY_BOUND_BYTES: u64 = 256 << 20;

fn vm_hwm_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// `members` gzip members, each inflating to `chunk` repeated to 1 MiB.
fn bomb(header: &[u8], chunk: &[u8], members: usize) -> Vec<u8> {
    let mut one = Vec::with_capacity(1 << 20);
    while one.len() < (1 << 20) {
        one.extend_from_slice(chunk);
    }
    let member = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    let mut out = member(header);
    let m = member(&one);
    for _ in 0..members {
        out.extend_from_slice(&m);
    }
    out
}

#[test]
fn gzip_bombs_are_refused_within_the_memory_bound() {
    let header = b"job_name,duration_s,mem_peak_gib\n";
    // GIVEN two ~2 GiB-inflating bombs of a few MB: zeros (one endless line) and valid rows
    let zeros = bomb(header, &[b'0'; 1024], 2048);
    let rows = bomb(header, b"a,1,1\n", 2048);
    assert!(
        zeros.len() < 8 << 20 && rows.len() < 16 << 20,
        "{} {}",
        zeros.len(),
        rows.len()
    );
    let before = vm_hwm_bytes();
    // WHEN read
    for (what, bytes) in [("zeros", &zeros), ("rows", &rows)] {
        let err = read_trace("bomb", bytes).unwrap_err();
        // THEN each is refused with a clear error
        assert!(matches!(err, TraceError::TooLarge { .. }), "{what}: {err}");
        assert!(err.to_string().contains("larger than"), "{what}: {err}");
    }
    // AND the peak memory grew by less than the stated bound (the old reader needed ≈ 3×
    // the inflated size: 6 GiB)
    let grew = vm_hwm_bytes().saturating_sub(before);
    eprintln!("gzip bombs: peak RSS grew by {} MiB", grew >> 20);
    assert!(grew < MEMORY_BOUND_BYTES, "peak RSS grew by {} MiB", grew >> 20);
}
