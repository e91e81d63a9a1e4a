//! The page: one HTML file, styles inline, charts as inline SVG, no script and no network.

use crate::charts::{self, Event, Series};
use crate::model::{AttemptView, JobView, Report};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use spotfit_core::units::bytes_to_gib;

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1180px;padding:0 16px 48px;color:#222}
h1{margin:20px 0 4px}h2{margin-top:36px;border-bottom:1px solid #ccc}h3{margin:18px 0 6px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f4f4f4}
td.l,th.l{text-align:left}.muted{color:#777}.bad,.warning{color:#b00}
figure.chart{display:inline-block;margin:6px 8px 6px 0;vertical-align:top}
figcaption{font-size:12px}.key{margin-right:12px}.swatch{display:inline-block;width:10px;height:10px;margin-right:4px}
nav a{margin-right:10px}article.run{border-top:1px dashed #ddd;padding-top:6px}
";

/// The report as one self-contained HTML page.
pub fn render(r: &Report) -> String {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "spotfit report" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { "spotfit report" }
                    p.muted {
                        "From " (r.source) ", generated " (time(r.generated_at_ms)) ". "
                        @match r.since_ms {
                            Some(t) => { "Runs started since " (time(t)) "." }
                            None => { "All recorded runs." }
                        }
                    }
                }
                @for w in &r.warnings { p.warning { "Warning: " (w) } }
                (fleet(r))
                @if !r.jobs.is_empty() {
                    nav { "Jobs: " @for j in &r.jobs { a href={ "#job-" (j.job) } { (j.job) } } }
                }
                @for j in &r.jobs { (job(j)) }
            }
        }
    };
    page.into_string()
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

fn usd(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("${v:.2}")
    } else if v.abs() >= 1.0 {
        format!("${v:.3}")
    } else {
        format!("${v:.6}")
    }
}

fn saving(ours: f64, theirs: f64) -> String {
    if theirs <= 0.0 {
        return "–".into();
    }
    format!("{:+.1} %", (theirs - ours) / theirs * 100.0)
}

fn fleet(r: &Report) -> Markup {
    let f = &r.fleet;
    html! {
        section #fleet {
            h2 { "Fleet" }
            @if f.attempts == 0 {
                p { "No runs in this window." }
            } @else {
                table.summary {
                    tr { th.l { "" } th { "cost" } th { "spotfit saves" } }
                    tr { td.l { "spotfit (" (f.executions) " runs, " (f.attempts) " attempts)" } td { (usd(f.total_usd)) } td { "" } }
                    tr {
                        td.l { "batch service, on-demand (same requests, first fit on the cheapest general-purpose type)" }
                        @match f.batch_on_demand_usd {
                            Some(b) => { td { (usd(b)) } td { (saving(f.total_usd, b)) } }
                            None => { td.muted { "not priced" } td { "" } }
                        }
                    }
                    tr {
                        td.l { "batch service, spot" }
                        @match f.batch_spot_usd {
                            Some(b) => { td { (usd(b)) } td { (saving(f.total_usd, b)) } }
                            None => { td.muted { "not priced" } td { "" } }
                        }
                    }
                    tr { td.l { "on-demand (same types, same lifetimes)" } td { (usd(f.on_demand_usd)) } td { (saving(f.total_usd, f.on_demand_usd)) } }
                    tr { td.l { "OOM-killed attempts" } td { (f.oom_attempts) } td { "" } }
                    tr { td.l { "interrupted attempts" } td { (f.interrupted_attempts) } td { "" } }
                }
                @if f.unknown_types > 0 {
                    p.muted { (f.unknown_types) " attempts ran on types this catalog does not know: counted at their recorded cost, with no on-demand price or waste." }
                }
                (PreEscaped(charts::bars("cost-per-day", "Cost per day (UTC)", "USD", &f.per_day)))
                h3 { "Most waste" }
                p.muted { "Waste: a killed or interrupted attempt's whole cost; a finished one's cost beyond the larger of its mean cores and its peak memory as a share of its type." }
                table.waste {
                    tr { th.l { "job" } th { "waste" } th { "cost" } th { "share" } }
                    @for w in &f.top_waste {
                        tr {
                            td.l { a href={ "#job-" (w.job) } { (w.job) } }
                            td { (usd(w.waste_usd)) } td { (usd(w.cost_usd)) }
                            td { (format!("{:.0} %", if w.cost_usd > 0.0 { w.waste_usd / w.cost_usd * 100.0 } else { 0.0 })) }
                        }
                    }
                }
            }
        }
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

fn job(j: &JobView) -> Markup {
    let l = &j.ledger;
    html! {
        section.job id={ "job-" (j.job) } data-job=(j.job) data-attempts=(j.attempts.len()) {
            h2 { "Job " (j.job) }
            table.ledger {
                tr { th.l { "ledger" } th { "attempts" } th { "cost" } }
                tr { td.l { "all (" (l.executions) " runs)" } td { (l.attempts) } td { (usd(l.total_usd)) } }
                tr { td.l { "OOM-killed" } td { (l.oom_attempts) } td { (usd(l.oom_usd)) } }
                tr { td.l { "interrupted" } td { (l.interrupted_attempts) } td { (usd(l.interrupted_usd)) } }
                tr { td.l { "waste" } td { "" } td { (usd(l.waste_usd)) } }
            }
            (PreEscaped(trajectory_cpu(j)))
            (PreEscaped(trajectory_mem(j)))
            h3 { "Attempts" }
            table.attempts {
                tr {
                    th.l { "run" } th { "attempt" } th.l { "status" } th.l { "instance" } th.l { "market" } th.l { "AZ" }
                    th { "vCPU req / given / used p95" } th { "GiB req / given / used" } th { "duration" } th { "cost" } th.l { "basis" }
                }
                @for a in &j.attempts {
                    tr.attempt data-run=(a.record.run_id) data-attempt=(a.record.attempt) {
                        td.l { (a.record.run_id) } td { (a.record.attempt) }
                        td.l class=[(a.is_oom() || a.is_interrupted()).then_some("bad")] { (status(a)) }
                        @match &a.record.placed {
                            Some(p) => {
                                td.l { (p.instance_type) @if p.local { " (recommended; ran here)" } }
                                td.l { (p.market.as_str()) }
                                td.l { (p.az) }
                            }
                            None => { td.l.muted { "not placed" } td {} td {} }
                        }
                        td { (format!("{:.0}", a.requested_vcpu)) " / " (opt(a.given_vcpu, 0)) " / " (opt(a.used_cpu_p95, 2)) }
                        td { (format!("{:.2}", a.requested_mem_gib)) " / " (opt(a.given_mem_gib, 1)) " / " (opt(a.used_mem_gib, 2)) }
                        td { (a.duration_s.map_or_else(|| "–".into(), |d| format!("{d:.1} s"))) }
                        td { (usd(a.record.cost_usd)) }
                        td.l { (a.record.cost_basis.as_str()) }
                    }
                }
            }
            @for a in j.attempts.iter().filter(|a| a.charted) { (run(a)) }
        }
    }
}

fn status(a: &AttemptView) -> String {
    let s = a.record.status.as_str().to_string();
    match a.record.summary.as_ref().and_then(|s| s.exit.code) {
        Some(c) if c != 0 => format!("{s} (exit {c})"),
        _ => s,
    }
}

/// One value of each attempt, in order (x = 1, 2, …; an attempt without the value is skipped).
fn per_attempt(j: &JobView, f: impl Fn(&AttemptView) -> Option<f64>) -> Vec<(f64, f64)> {
    j.attempts
        .iter()
        .enumerate()
        .filter_map(|(i, a)| f(a).map(|v| ((i + 1) as f64, v)))
        .collect()
}

/// Requested, given and used vCPUs of each attempt, in order: how sizing converged.
fn trajectory_cpu(j: &JobView) -> String {
    charts::xy_chart(
        "trajectory-cpu",
        "vCPU per attempt: requested, given, used",
        "attempt",
        "vCPU",
        &[
            Series::line(
                "requested",
                charts::REQUESTED,
                per_attempt(j, |a| Some(a.requested_vcpu)),
            )
            .marked(),
            Series::line("given", charts::GIVEN, per_attempt(j, |a| a.given_vcpu)).marked(),
            Series::line("used p95", charts::P95, per_attempt(j, |a| a.used_cpu_p95)).marked(),
            Series::line("used mean", charts::USED, per_attempt(j, |a| a.used_cpu_avg)).marked(),
        ],
        &[],
    )
}

fn trajectory_mem(j: &JobView) -> String {
    charts::xy_chart(
        "trajectory-memory",
        "Memory per attempt: requested, given, used peak",
        "attempt",
        "GiB",
        &[
            Series::line(
                "requested",
                charts::REQUESTED,
                per_attempt(j, |a| Some(a.requested_mem_gib)),
            )
            .marked(),
            Series::line("given", charts::GIVEN, per_attempt(j, |a| a.given_mem_gib)).marked(),
            Series::line("used peak", charts::USED, per_attempt(j, |a| a.used_mem_gib)).marked(),
        ],
        &[],
    )
}

/// The OOM kill and interruption marks of an attempt: where a sample's OOM counter rose, and
/// at its end for an attempt that ended so.
fn events(a: &AttemptView, t0: i64, end_s: f64) -> Vec<Event> {
    let mut ev = Vec::new();
    let mut prev = None;
    for s in &a.samples {
        if let (Some(p), Some(n)) = (prev, s.oom_kills) {
            if n > p {
                ev.push(Event {
                    x: (s.ts_ms - t0) as f64 / 1000.0,
                    label: "OOM kill".into(),
                });
            }
        }
        prev = s.oom_kills.or(prev);
    }
    if a.is_oom() && ev.is_empty() {
        ev.push(Event {
            x: end_s,
            label: "OOM kill".into(),
        });
    }
    if a.is_interrupted() {
        ev.push(Event {
            x: end_s,
            label: "spot interruption".into(),
        });
    }
    ev
}

fn run(a: &AttemptView) -> Markup {
    let t0 = a
        .record
        .summary
        .as_ref()
        .map(|s| s.started_at_ms)
        .or(a.samples.first().map(|s| s.ts_ms - (s.interval_s * 1000.0) as i64))
        .unwrap_or(0);
    let x = |s: &spotfit_core::Sample| (s.ts_ms - t0) as f64 / 1000.0;
    let end_s = a.duration_s.or(a.samples.last().map(x)).unwrap_or(0.0).max(0.0);
    let ev = events(a, t0, end_s);
    let cpu: Vec<(f64, f64)> = a.samples.iter().map(|s| (x(s), s.cpu_cores)).collect();
    let mem: Vec<(f64, f64)> = a.samples.iter().map(|s| (x(s), bytes_to_gib(s.mem_bytes))).collect();
    let mut cpu_series = vec![Series::line("used", charts::USED, cpu)];
    let mut mem_series = vec![Series::line("used", charts::USED, mem)];
    if let Some(g) = a.given_vcpu {
        cpu_series.push(Series::level("given", charts::GIVEN, g, 0.0, end_s));
    }
    cpu_series.push(Series::level(
        "requested",
        charts::REQUESTED,
        a.requested_vcpu,
        0.0,
        end_s,
    ));
    if let Some(g) = a.given_mem_gib {
        mem_series.push(Series::level("given", charts::GIVEN, g, 0.0, end_s));
    }
    mem_series.push(Series::level(
        "requested",
        charts::REQUESTED,
        a.requested_mem_gib,
        0.0,
        end_s,
    ));
    let gpus: u32 = a.samples.iter().map(|s| s.gpus.len() as u32).max().unwrap_or(0);
    let gpu_chart = (gpus > 0).then(|| {
        let series: Vec<Series> = (0..gpus)
            .map(|i| {
                let colour = [charts::USED, charts::P95, charts::GIVEN, charts::REQUESTED][i as usize % 4];
                Series::line(
                    &format!("GPU {i} utilisation"),
                    colour,
                    a.samples
                        .iter()
                        .filter_map(|s| s.gpus.iter().find(|g| g.index == i).map(|g| (x(s), g.util_pct)))
                        .collect(),
                )
            })
            .collect();
        charts::xy_chart("gpu", "GPU utilisation", "seconds", "%", &series, &ev)
    });
    html! {
        article.run data-run=(a.record.run_id) data-attempt=(a.record.attempt) data-samples=(a.samples.len()) {
            h3 { "Run " (a.record.run_id) " attempt " (a.record.attempt) ": " (status(a)) }
            @if a.samples.is_empty() {
                p.muted { "No samples were shipped for this attempt." }
            } @else {
                (PreEscaped(charts::xy_chart("cpu", "CPU cores", "seconds", "cores", &cpu_series, &ev)))
                (PreEscaped(charts::xy_chart("memory", "Memory", "seconds", "GiB", &mem_series, &ev)))
                @if let Some(g) = gpu_chart { (PreEscaped(g)) }
            }
        }
    }
}
