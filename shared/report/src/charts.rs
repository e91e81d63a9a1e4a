//! The charts, drawn as SVG here with plotters' SVG backend: no script, no network, no font
//! files (the browser sets the text). Each chart is wrapped in a `<figure>` whose data
//! attributes say what it draws, so a test (or a reader's script) can check the drawing
//! against the data: `data-kind`, and for each series its stroke colour, the points drawn and
//! the points it was given.

use plotters::prelude::*;
use std::fmt::Write as _;

/// Most points one series draws. Longer series are thinned to the maximum of each bucket, so
/// peaks survive (a memory peak is what sizing reads); the figure says it was thinned.
pub const MAX_POINTS: usize = 2_000;

/// One drawn series.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub colour: RGBColor,
    /// One point per value ([`Series::line`]), or the two ends of a level ([`Series::level`]:
    /// given, requested; drawn thinner).
    pub points: Vec<(f64, f64)>,
    pub width: u32,
    /// Each point also drawn as a dot: series of few points (one attempt, one sample) would
    /// otherwise be invisible, a one-point line having no length.
    pub markers: bool,
}

impl Series {
    pub fn line(name: &str, colour: RGBColor, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            colour,
            points,
            width: 2,
            markers: false,
        }
    }
    /// The same, each point marked (per-attempt series: a job with one attempt still shows).
    pub fn marked(mut self) -> Series {
        self.markers = true;
        self
    }
    /// A horizontal level from `x0` to `x1`.
    pub fn level(name: &str, colour: RGBColor, y: f64, x0: f64, x1: f64) -> Series {
        Series {
            name: name.into(),
            colour,
            points: vec![(x0, y), (x1, y)],
            width: 1,
            markers: false,
        }
    }
}

/// A vertical mark (an OOM kill, an interruption) at `x`.
#[derive(Debug, Clone)]
pub struct Event {
    pub x: f64,
    pub label: String,
}

/// The fixed colours, named so the page's legend and its checks agree.
pub const USED: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
pub const GIVEN: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
pub const REQUESTED: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
pub const P95: RGBColor = RGBColor(0x94, 0x67, 0xbd);
pub const EVENT: RGBColor = RGBColor(0xd6, 0x27, 0x28);

pub fn hex(c: RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

/// Thins `points` to at most [`MAX_POINTS`], keeping each bucket's highest value.
pub fn thin(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let per = points.len().div_ceil(MAX_POINTS);
    points
        .chunks(per)
        .filter_map(|c| c.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1)))
        .collect()
}

/// A chart of `series` over x (with `events` marked), as a `<figure>` holding the SVG.
pub fn xy_chart(kind: &str, title: &str, x_label: &str, y_label: &str, series: &[Series], events: &[Event]) -> String {
    let drawn: Vec<Vec<(f64, f64)>> = series.iter().map(|s| thin(&s.points)).collect();
    let svg = draw(title, x_label, y_label, series, &drawn, events).unwrap_or_else(|e| {
        // Drawing into a String fails only on impossible geometry; say so in the page rather
        // than lose the report.
        format!("<p class=\"error\">chart not drawn: {}</p>", esc(&e))
    });
    let mut attrs = String::new();
    for (i, (s, d)) in series.iter().zip(&drawn).enumerate() {
        let _ = write!(
            attrs,
            " data-series-{i}=\"{}|{}|{}|{}\"",
            esc(&s.name),
            hex(s.colour),
            d.len(),
            s.points.len()
        );
    }
    format!(
        "<figure class=\"chart\" data-kind=\"{}\" data-series=\"{}\" data-events=\"{}\"{attrs}>{svg}<figcaption>{}</figcaption></figure>",
        esc(kind),
        series.len(),
        events.len(),
        legend(series, events)
    )
}

fn legend(series: &[Series], events: &[Event]) -> String {
    let mut s = String::new();
    for x in series {
        let _ = write!(
            s,
            "<span class=\"key\"><span class=\"swatch\" style=\"background:{}\"></span>{}</span>",
            hex(x.colour),
            esc(&x.name)
        );
    }
    for e in events {
        let _ = write!(
            s,
            "<span class=\"key event\"><span class=\"swatch\" style=\"background:{}\"></span>{} at {} s</span>",
            hex(EVENT),
            esc(&e.label),
            if e.x < 10.0 {
                format!("{:.1}", e.x)
            } else {
                format!("{:.0}", e.x)
            }
        );
    }
    s
}

fn esc(s: &str) -> String {
    maud::html! { (s) }.into_string()
}

fn draw(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    drawn: &[Vec<(f64, f64)>],
    events: &[Event],
) -> Result<String, String> {
    let (mut x_min, mut x_max, mut y_max) = (f64::INFINITY, 0.0_f64, 0.0_f64);
    for p in drawn.iter().flatten() {
        x_min = x_min.min(p.0);
        x_max = x_max.max(p.0);
        y_max = y_max.max(p.1);
    }
    for e in events {
        x_max = x_max.max(e.x);
    }
    // Marked series are per attempt (x = 1, 2, …): half a step of room each side, so the first
    // and last dots are not on the axes. Time series start at 0.
    let per_attempt = series.iter().any(|s| s.markers) && x_min.is_finite();
    let (x_min, x_max) = if per_attempt {
        (x_min - 0.5, x_max + 0.5)
    } else {
        (0.0, if x_max > 0.0 { x_max * 1.02 } else { 1.0 })
    };
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (570, 240)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(56)
            .build_cartesian_2d(x_min..x_max, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .max_light_lines(0)
            .bold_line_style(RGBColor(0xe8, 0xe8, 0xe8))
            .x_desc(x_label)
            .y_desc(y_label)
            .x_labels(if per_attempt {
                ((x_max - x_min) as usize).clamp(1, 10)
            } else {
                8
            })
            .x_label_formatter(&|x| {
                // Per-attempt charts are labelled with whole attempt numbers only.
                if !per_attempt {
                    format!("{x:.1}")
                } else if (x - x.round()).abs() < 1e-6 && *x >= 1.0 {
                    format!("{}", x.round() as u64)
                } else {
                    String::new()
                }
            })
            .y_labels(6)
            .draw()
            .map_err(|e| e.to_string())?;
        for e in events {
            chart
                .draw_series(LineSeries::new([(e.x, 0.0), (e.x, y_max)], EVENT.stroke_width(2)))
                .map_err(|e| e.to_string())?;
        }
        for (s, d) in series.iter().zip(drawn) {
            chart
                .draw_series(LineSeries::new(d.iter().copied(), s.colour.stroke_width(s.width)))
                .map_err(|e| e.to_string())?;
            if s.markers || d.len() == 1 {
                chart
                    .draw_series(d.iter().map(|p| Circle::new(*p, 3, s.colour.filled())))
                    .map_err(|e| e.to_string())?;
            }
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// A bar chart of `(label, value)` (cost per day), as a `<figure>`.
pub fn bars(kind: &str, title: &str, y_label: &str, values: &[(String, f64)]) -> String {
    let svg = draw_bars(title, y_label, values)
        .unwrap_or_else(|e| format!("<p class=\"error\">chart not drawn: {}</p>", esc(&e)));
    format!(
        "<figure class=\"chart\" data-kind=\"{}\" data-bars=\"{}\">{svg}</figure>",
        esc(kind),
        values.len()
    )
}

fn draw_bars(title: &str, y_label: &str, values: &[(String, f64)]) -> Result<String, String> {
    let y_max = values.iter().map(|v| v.1).fold(0.0_f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let n = values.len().max(1);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (570, 240)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..n as f64, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        let labels: Vec<String> = values.iter().map(|v| v.0.clone()).collect();
        let step = n.div_ceil(8).max(1);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .max_light_lines(0)
            .bold_line_style(RGBColor(0xe8, 0xe8, 0xe8))
            .y_desc(y_label)
            .x_labels(n.min(8))
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if i % step == 0 {
                    labels.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Rectangle::new([(i as f64 + 0.1, 0.0), (i as f64 + 0.9, v.1)], USED.filled())),
            )
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_draws_every_point_it_is_given_and_says_so() {
        let pts: Vec<(f64, f64)> = (0..50).map(|i| (i as f64, (i % 7) as f64)).collect();
        let html = xy_chart(
            "cpu",
            "CPU",
            "s",
            "cores",
            &[
                Series::line("used", USED, pts),
                Series::level("given", GIVEN, 4.0, 0.0, 49.0),
            ],
            &[Event {
                x: 40.0,
                label: "OOM kill".into(),
            }],
        );
        assert!(html.contains("data-series-0=\"used|#1F77B4|50|50\""), "{html}");
        let used = html
            .split("<polyline")
            .find(|p| p.contains("stroke=\"#1F77B4\""))
            .expect("the used series is drawn");
        let points = used.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(points.split_whitespace().count(), 50);
        assert!(html.contains("data-events=\"1\""));
    }

    #[test]
    fn long_series_are_thinned_to_bucket_maxima() {
        let mut pts: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64, 1.0)).collect();
        pts[5_001].1 = 9.0;
        let t = thin(&pts);
        assert!(t.len() <= MAX_POINTS, "{}", t.len());
        assert!(t.iter().any(|p| p.1 == 9.0), "the peak survives");
    }

    #[test]
    fn names_are_escaped() {
        let html = xy_chart(
            "cpu",
            "<b>",
            "s",
            "c",
            &[Series::line("<x>", USED, vec![(0.0, 1.0)])],
            &[],
        );
        assert!(!html.contains("<x>") && html.contains("&lt;x&gt;"), "{html}");
        assert!(!html.contains("<b>"), "the title is escaped too: {html}");
    }
}
