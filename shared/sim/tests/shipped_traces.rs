//! Properties of spotfit's replay over every trace shipped in `data/traces/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use spotfit_core::catalog::Catalog;
use spotfit_sim::engine::spotfit;
use spotfit_sim::{read_trace, SimConfig};

fn shipped() -> Vec<(String, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/traces");
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".csv.gz"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no traces in {dir}");
    v
}

#[test]
fn max_slowdown_is_respected_in_every_simulated_run() {
    // GIVEN every shipped trace, WHEN spotfit replays it, THEN no run is slower than its
    // max_slowdown allows — except by the factor by which the run kept more cores busy than
    // sizing expected from its history (a misprediction sizing cannot honour); and with the
    // time price off, the same replay does break it (the property is not vacuous)
    let catalog = Catalog::embedded().unwrap();
    for (name, bytes) in shipped() {
        let trace = read_trace(&name, &bytes).unwrap();
        let r = spotfit(&trace, catalog, &SimConfig::default());
        assert_eq!(r.per_job.len(), trace.jobs.len(), "{name}");
        for j in &r.per_job {
            assert!(
                j.max_slowdown == 1.1,
                "{name} row {}: max_slowdown {}",
                j.row,
                j.max_slowdown
            );
            assert!(
                j.max_slowdown_ratio <= 1.0 + 1e-9,
                "{name} row {} ({}): a run {:.3}× over what max_slowdown allowed",
                j.row,
                j.job_name,
                j.max_slowdown_ratio
            );
        }
        let free = spotfit(
            &trace,
            catalog,
            &SimConfig {
                ablate_no_max_slowdown: true,
                ..SimConfig::default()
            },
        );
        assert!(
            free.per_job.iter().any(|j| j.attempt_slowdown_max > 1.1 + 1e-9),
            "{name}: without max_slowdown no run is slowed: the check proves nothing"
        );
    }
}
