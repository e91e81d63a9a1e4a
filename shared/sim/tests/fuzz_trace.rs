//! Property-based fuzzing of the trace reader: hostile CSV (missing or duplicated columns,
//! NaN/inf/negative/huge numbers, quotes, ragged rows), plain or gzip (single member,
//! multi-member, truncated), and raw bytes. Time-boxed by `SPOTFIT_FUZZ_SECS` (see
//! `scripts/fuzz`). Invariants: no panic; a trace read is non-empty and every value is finite,
//! non-negative and within the reader's bounds; a refusal is a non-empty message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use spotfit_core::catalog::Catalog;
use spotfit_sim::trace::{check_fits, read_trace};
use std::io::Write;
use std::time::{Duration, Instant};

const DEFAULT_SECS: f64 = 15.0;

const COLUMNS: &[&str] = &[
    "job_name",
    "submit_time_s",
    "requested_vcpu",
    "requested_mem_gib",
    "duration_s",
    "cpu_avg_cores",
    "cpu_p95_cores",
    "cpu_peak_cores",
    "mem_peak_gib",
    "gpu",
];

fn cell() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..5000).prop_map(|n| n.to_string()),
        (0.0f64..1e6).prop_map(|f| f.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        prop::sample::select(vec![
            "",
            "-",
            "nan",
            "NaN",
            "inf",
            "-inf",
            "1e308",
            "1e309",
            "-1",
            "-0",
            "0",
            "1e-320",
            "\"1,5\"",
            "\"",
            " 7 ",
            "x",
            "9999999999999999999999",
        ])
        .prop_map(str::to_string),
        "[a-z]{1,8}",
        "\\PC{0,8}",
    ]
}

fn csv_text() -> impl Strategy<Value = String> {
    let header = prop_oneof![
        3 => Just(COLUMNS.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
        2 => prop::sample::subsequence(COLUMNS, 0..=COLUMNS.len()).prop_map(|v| v.iter().map(|s| s.to_string()).collect()),
        1 => prop::collection::vec(prop_oneof![prop::sample::select(COLUMNS).prop_map(str::to_string), "\\PC{0,6}"], 0..12),
    ];
    // Mostly plausible rows (any cell may be a name or a number), some hostile ones.
    let good = prop_oneof![
        6 => (0u32..64).prop_map(|n| n.to_string()),
        3 => (0.0f64..100.0).prop_map(|f| format!("{f:.3}")),
        1 => prop::sample::select(vec!["", "nan", "-"]).prop_map(str::to_string),
    ];
    let row = prop_oneof![
        5 => prop::collection::vec(good, 10..11),
        1 => prop::collection::vec(cell(), 0..12),
    ];
    (header, prop::collection::vec(row, 0..24)).prop_map(|(h, rows)| {
        let mut s = h.join(",");
        s.push('\n');
        for r in rows {
            s.push_str(&r.join(","));
            s.push('\n');
        }
        s
    })
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => csv_text().prop_map(String::into_bytes),
        2 => csv_text().prop_map(|t| gz(t.as_bytes())),
        1 => (csv_text(), 1usize..40).prop_map(|(t, cut)| {
            // multi-member, the second member cut short
            let b = t.as_bytes();
            let mid = b.len() / 2;
            let mut out = gz(&b[..mid]);
            let second = gz(&b[mid..]);
            out.extend_from_slice(&second[..second.len().saturating_sub(cut)]);
            out
        }),
        1 => prop::collection::vec(any::<u8>(), 0..512),
        1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(|mut v| {
            v.splice(0..0, [0x1f, 0x8b]);
            v
        }),
    ]
}

#[test]
fn fuzz_trace_reader() {
    let secs: f64 = std::env::var("SPOTFIT_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SECS)
        * 0.6;
    let catalog = Catalog::embedded().unwrap();
    let start = Instant::now();
    let (mut cases, mut read) = (0u64, std::sync::atomic::AtomicU64::new(0));
    while start.elapsed() < Duration::from_secs_f64(secs) {
        let mut runner = TestRunner::new(Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&input(), |bytes| {
            match read_trace("fuzz", &bytes) {
                Ok(t) => {
                    read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    prop_assert!(!t.jobs.is_empty(), "an empty trace was accepted");
                    for j in &t.jobs {
                        for (what, v) in [
                            ("submit", j.submit_s),
                            ("duration", j.duration_s),
                            ("cpu avg", j.cpu_avg_cores),
                            ("cpu p95", j.cpu_p95_cores),
                            ("cpu peak", j.cpu_peak_cores),
                            ("mem", j.mem_peak_gib),
                        ] {
                            prop_assert!(v.is_finite() && v >= 0.0, "row {}: {what} = {v}", j.row);
                        }
                        prop_assert!(j.duration_s <= 366.0 * 86_400.0 && j.mem_peak_gib <= 65_536.0);
                        prop_assert!(j.cpu_peak_cores >= j.cpu_p95_cores && j.cpu_p95_cores >= j.cpu_avg_cores);
                        prop_assert!(!j.job_name.is_empty());
                    }
                    let _ = check_fits(&t, catalog, "us-east-1");
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
            Ok::<(), TestCaseError>(())
        });
        if let Err(e) = result {
            panic!("trace: {e}");
        }
        cases += 256;
    }
    let s = start.elapsed().as_secs_f64();
    let read = read.get_mut();
    eprintln!(
        "fuzz trace: {cases} cases in {s:.1} s ({:.0} cases/s), {read} read as traces",
        cases as f64 / s
    );
    assert!(
        *read > 0,
        "no generated trace was readable: the generator lost its coverage"
    );
}
