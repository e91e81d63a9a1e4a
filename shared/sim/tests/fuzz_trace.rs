//! Property-based fuzzing of the trace reader: hostile CSV (missing or duplicated columns,
//! NaN/inf/negative/huge numbers, quotes, ragged rows), plain or gzip (single member,
//! multi-member, truncated), and raw bytes. Time-boxed by `SPOTFIT_FUZZ_SECS` (see
//! `scripts/fuzz`). Invariants: no panic; a trace read is non-empty and every value is finite,
//! non-negative and within the reader's bounds; a complete gzip of a CSV reads as the CSV does
//! (same jobs, or same refusal); `check_fits` refuses exactly the first job bigger than the
//! region's largest type, naming its row.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use spotfit_core::catalog::Catalog;
use spotfit_core::units::bytes_to_gib;
use spotfit_sim::trace::{check_fits, read_trace, MissingCounts, Trace, TraceError, TraceJob};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Input bytes, and for a complete gzip of a CSV the CSV itself (the reader must read both
/// alike).
fn input() -> impl Strategy<Value = (Vec<u8>, Option<Vec<u8>>)> {
    prop_oneof![
        4 => csv_text().prop_map(|t| (t.into_bytes(), None)),
        2 => csv_text().prop_map(|t| (gz(t.as_bytes()), Some(t.into_bytes()))),
        1 => (csv_text(), 0usize..40).prop_map(|(t, cut)| {
            // multi-member, the second member cut short (or whole: `cat a.gz b.gz`)
            let b = t.as_bytes();
            let mid = b.len() / 2;
            let mut out = gz(&b[..mid]);
            let second = gz(&b[mid..]);
            out.extend_from_slice(&second[..second.len().saturating_sub(cut)]);
            (out, (cut == 0).then(|| t.into_bytes()))
        }),
        1 => prop::collection::vec(any::<u8>(), 0..512).prop_map(|v| (v, None)),
        1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(|mut v| {
            v.splice(0..0, [0x1f, 0x8b]);
            (v, None)
        }),
    ]
}

/// What a read gives, comparable across inputs: the jobs and the missing-value counts, or
/// the refusal's message.
fn outcome(r: &Result<Trace, TraceError>) -> Result<(&[TraceJob], &MissingCounts), String> {
    r.as_ref()
        .map(|t| (&t.jobs[..], &t.missing))
        .map_err(ToString::to_string)
}

#[test]
fn fuzz_trace_reader() {
    let secs: f64 = std::env::var("SPOTFIT_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SECS)
        * 0.6;
    let catalog = Catalog::embedded().unwrap();
    // The largest type of the region in each dimension: what check_fits holds a job to.
    let offers = catalog.region("us-east-1");
    let max_mem = offers.iter().map(|o| bytes_to_gib(o.memory_bytes)).fold(0.0, f64::max);
    let max_vcpu = offers.iter().map(|o| o.vcpu).max().unwrap() as f64;
    let max_gpu = offers.iter().map(|o| o.gpu).max().unwrap();
    let (fit, unfit) = (AtomicU64::new(0), AtomicU64::new(0));
    let start = Instant::now();
    let (mut cases, mut read) = (0u64, AtomicU64::new(0));
    while start.elapsed() < Duration::from_secs_f64(secs) {
        let mut runner = TestRunner::new(Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&input(), |(bytes, plain)| {
            let read_bytes = read_trace("fuzz", &bytes);
            if let Some(plain) = plain {
                // Gzip is transparent: the same trace, or the same refusal, as the plain CSV.
                let read_plain = read_trace("fuzz", &plain);
                prop_assert_eq!(outcome(&read_bytes), outcome(&read_plain));
            }
            // A refusal is held to the plain CSV's above where there is one; other bytes may be
            // refused for any reason the message gives.
            if let Ok(t) = read_bytes {
                read.fetch_add(1, Ordering::Relaxed);
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
                // check_fits refuses the first job past the largest type, naming its row.
                let too_big = t
                    .jobs
                    .iter()
                    .find(|j| j.mem_peak_gib > max_mem || j.cpu_avg_cores > max_vcpu || j.gpu > max_gpu);
                match (check_fits(&t, catalog, "us-east-1"), too_big) {
                    (Ok(()), None) => _ = fit.fetch_add(1, Ordering::Relaxed),
                    (Err(TraceError::Unplaceable { row, .. }), Some(j)) if row == j.row => {
                        _ = unfit.fetch_add(1, Ordering::Relaxed)
                    }
                    (got, want) => prop_assert!(false, "check_fits: {got:?}; first job too big: {want:?}"),
                }
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
        "fuzz trace: {cases} cases in {s:.1} s ({:.0} cases/s), {read} read as traces ({} fit us-east-1, {} not)",
        cases as f64 / s,
        fit.into_inner(),
        unfit.into_inner()
    );
    assert!(
        *read > 0,
        "no generated trace was readable: the generator lost its coverage"
    );
}
