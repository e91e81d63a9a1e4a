//! Tables and the stable JSON shapes printed by the CLI (documented in docs/cli.md).

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, ContentArrangement, Table};
use serde::Serialize;
use spotfit_core::ranking::Candidate;
use spotfit_core::run::RunRecord;
use spotfit_core::sizing::Requirement;
use spotfit_core::summary::RunSummary;
use spotfit_core::units::{bytes_to_gib, fmt_bytes};

pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    t
}

fn right(s: String) -> Cell {
    Cell::new(s).set_alignment(CellAlignment::Right)
}

fn money(v: Option<f64>) -> String {
    v.map(|v| format!("${v:.4}")).unwrap_or_else(|| "-".into())
}

/// The recommendation part of `run --json` and `recommend --json`.
#[derive(Debug, Serialize)]
pub struct Recommendation<'a> {
    pub requirement: &'a Requirement,
    pub candidates: &'a [Candidate],
}

/// The whole `run --json` object.
#[derive(Debug, Serialize)]
pub struct RunOutput<'a> {
    pub run: &'a RunRecord,
    pub summary: &'a RunSummary,
    pub samples_prefix: String,
    pub recommendation: Recommendation<'a>,
}

pub fn candidates_table(cands: &[Candidate]) -> Table {
    let mut t = table(&[
        "#",
        "instance",
        "region",
        "az",
        "market",
        "$/h",
        "spot $/h",
        "on-demand $/h",
        "vCPU",
        "memory",
        "GPU",
        "score",
        "$/h per 1k score",
        "est. run cost",
    ]);
    for (i, c) in cands.iter().enumerate() {
        t.add_row(vec![
            right(format!("{}", i + 1)),
            Cell::new(&c.instance_type),
            Cell::new(&c.region),
            Cell::new(c.az.as_deref().unwrap_or("-")),
            Cell::new(c.market.as_str()),
            right(format!("${:.4}", c.price_per_hour)),
            right(money(c.spot_per_hour)),
            right(money(c.on_demand_per_hour)),
            right(c.vcpu.to_string()),
            right(format!("{:.1} GiB", bytes_to_gib(c.memory_bytes))),
            right(if c.gpu > 0 {
                format!("{}×{:.0}G", c.gpu, bytes_to_gib(c.gpu_memory_bytes))
            } else {
                "-".into()
            }),
            right(format!("{:.0}", c.score)),
            right(format!("{:.5}", c.cost_per_perf * 1000.0)),
            right(c.est_cost_usd.map(|v| format!("${v:.5}")).unwrap_or_else(|| "-".into())),
        ]);
    }
    t
}

pub fn requirement_line(r: &Requirement) -> String {
    let mut s = format!(
        "needs ≥{} vCPU (uses ~{:.2} cores), ≥{} memory",
        r.vcpu,
        r.cores_used,
        fmt_bytes(r.memory_bytes)
    );
    if r.gpu > 0 {
        s.push_str(&format!(", {} GPU ≥{}", r.gpu, fmt_bytes(r.gpu_memory_bytes)));
    }
    if let Some(d) = r.expected_duration_s {
        s.push_str(&format!(", ~{d:.0} s"));
    }
    s.push_str(&format!(
        " [{}]",
        serde_json::to_value(&r.basis)
            .ok()
            .and_then(|v| v.get("kind").and_then(|k| k.as_str().map(str::to_string)))
            .unwrap_or_default()
    ));
    s
}

pub fn summary_table(s: &RunSummary, rec: &RunRecord) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    for (k, v) in spotfit_core::summary::summary_rows(s) {
        t.add_row(vec![Cell::new(k), Cell::new(v)]);
    }
    if let Some(p) = &rec.placed {
        t.add_row(vec![
            Cell::new("would have cost"),
            Cell::new(format!(
                "${:.6} on {} {} at ${:.4}/h",
                rec.cost_usd,
                p.instance_type,
                p.market.as_str(),
                p.price_per_hour
            )),
        ]);
    }
    t
}
