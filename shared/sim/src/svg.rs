//! A dependency-free SVG bar chart of cost per policy (log-free, labelled in USD).

use crate::report::Report;
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Horizontal bars: total cost per policy, with the ratio to the floor.
pub fn render(report: &Report) -> String {
    let (w, bar_h, gap, left, top) = (760.0, 28.0, 12.0, 150.0, 50.0);
    let n = report.policies.len() as f64;
    let h = top + n * (bar_h + gap) + 40.0;
    let max = report
        .policies
        .iter()
        .map(|p| p.total_cost_usd)
        .fold(0.0_f64, f64::max)
        .max(1e-12);
    let floor = report
        .policies
        .iter()
        .find(|p| p.policy == crate::Policy::Floor)
        .map(|p| p.total_cost_usd);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="24" font-size="15" font-weight="bold">{} — {} jobs, {} (cost per policy, USD)</text>"#,
        esc(&report.trace),
        report.jobs,
        esc(&report.region)
    );
    for (i, p) in report.policies.iter().enumerate() {
        let y = top + i as f64 * (bar_h + gap);
        let len = (w - left - 170.0) * p.total_cost_usd / max;
        let color = match p.policy {
            crate::Policy::Spotfit => "#2a7de1",
            crate::Policy::Floor => "#3aa655",
            crate::Policy::SpareCores => "#e0a030",
            _ => "#999999",
        };
        let ratio = floor
            .filter(|f| *f > 0.0)
            .map_or(String::new(), |f| format!(" ({:.2}× floor)", p.total_cost_usd / f));
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 8.0,
            y + bar_h * 0.65,
            p.policy.name()
        );
        let _ = writeln!(
            s,
            r#"<rect x="{left}" y="{y}" width="{len:.1}" height="{bar_h}" fill="{color}"/>"#
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}">${:.4}{}</text>"#,
            left + len + 6.0,
            y + bar_h * 0.65,
            p.total_cost_usd,
            esc(&ratio)
        );
    }
    s.push_str("</svg>\n");
    s
}
