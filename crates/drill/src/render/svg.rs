//! The timeline of a drill as an SVG image, written as text (no library): one row of bars per
//! recovery phase on an axis of seconds since the drill started, a line at the RTO objective
//! and one at the measured RTO (red when over the objective), and a dot per timeline entry.
//! It stands alone as a file and is inlined in the HTML rendering.

use std::fmt::Write;

use super::{escape, num};
use crate::report::{PhaseName, Report};

const WIDTH: f64 = 900.0;
/// The column of row labels.
const LEFT: f64 = 110.0;
const RIGHT: f64 = 30.0;
/// Room above the rows for the labels of the RTO lines.
const TOP: f64 = 44.0;
const ROW: f64 = 26.0;
const BAR: f64 = 16.0;
/// Room below the rows for the axis and its labels.
const AXIS: f64 = 40.0;

const OVER: &str = "#d62728";
const WITHIN: &str = "#2ca02c";
const BUDGET: &str = "#555555";

fn colour(phase: PhaseName) -> &'static str {
    match phase {
        PhaseName::Detect => "#4e79a7",
        PhaseName::Decide => "#f28e2b",
        PhaseName::Preempt => "#b07aa1",
        PhaseName::Execute => "#59a14f",
        PhaseName::Propagate => "#76b7b2",
        PhaseName::Failback => "#edc948",
        PhaseName::Teardown => "#9c755f",
    }
}

/// The distance between ticks: 1, 2 or 5 times a power of ten, for at most about 10 ticks.
fn tick_step(span: f64) -> f64 {
    let raw = span / 10.0;
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * power)
}

/// The report's timeline as an SVG document.
pub fn timeline_svg(report: &Report) -> String {
    let r = report;
    let mut rows: Vec<PhaseName> = PhaseName::ALL
        .into_iter()
        .filter(|n| r.phases.iter().any(|p| p.name == *n))
        .collect();
    rows.dedup();
    let events_row = !r.timeline.is_empty();
    let row_count = rows.len() + usize::from(events_row);
    let height = TOP + ROW * row_count.max(1) as f64 + AXIS;

    // The axis reaches past everything drawn: phases, entries, and both RTO lines.
    let rto_measured = r.rto.as_ref().and_then(|x| x.measured_s);
    let rto_objective = r.rto.as_ref().map(|x| x.objective_s);
    let last = [r.duration_s()]
        .into_iter()
        .chain(rto_measured)
        .chain(rto_objective)
        .filter(|s| s.is_finite())
        .fold(0.0, f64::max);
    let span = if last > 0.0 { last } else { 1.0 };
    let step = tick_step(span);
    let end = (span / step).ceil() * step;
    let plot = WIDTH - LEFT - RIGHT;
    let x = |t: f64| LEFT + plot * (if t.is_finite() { t } else { 0.0 }).clamp(0.0, end) / end;
    let bottom = TOP + ROW * row_count.max(1) as f64;

    let title = format!("Timeline of drill {} (run {})", r.drill, r.run);
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" aria-labelledby="drill-timeline-title" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<title id="drill-timeline-title">{}</title>"#, escape(&title));

    // Ticks and grid.
    let ticks = (end / step).round() as usize;
    for i in 0..=ticks {
        let t = step * i as f64;
        let tx = x(t);
        let _ = writeln!(
            o,
            r##"<line x1="{tx:.1}" y1="{TOP}" x2="{tx:.1}" y2="{bottom}" stroke="#e0e0e0"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle" fill="#333">{}</text>"##,
            bottom + 16.0,
            num(t)
        );
    }
    let _ = writeln!(
        o,
        r##"<line x1="{LEFT}" y1="{bottom}" x2="{:.1}" y2="{bottom}" stroke="#333"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#333">seconds since the drill started</text>"##,
        LEFT + plot,
        LEFT + plot,
        bottom + 34.0
    );

    // One row per phase present, its bars in it.
    for (i, name) in rows.iter().enumerate() {
        let top = TOP + ROW * i as f64;
        let _ = writeln!(
            o,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#333">{}</text>"##,
            LEFT - 8.0,
            top + ROW / 2.0 + 4.0,
            name.as_str()
        );
        for p in r.phases.iter().filter(|p| p.name == *name) {
            let (x0, x1) = (x(p.start_s), x(p.end_s));
            let _ = writeln!(
                o,
                r#"<rect class="phase" x="{x0:.1}" y="{:.1}" width="{:.1}" height="{BAR}" fill="{}"><title>{}: {} s to {} s ({} s)</title></rect>"#,
                top + (ROW - BAR) / 2.0,
                (x1 - x0).max(1.5),
                colour(*name),
                name.as_str(),
                num(p.start_s),
                num(p.end_s),
                num(p.end_s - p.start_s)
            );
        }
    }
    if row_count == 0 {
        let _ = writeln!(
            o,
            r##"<text x="{:.1}" y="{:.1}" fill="#333">no phases recorded</text>"##,
            LEFT + 8.0,
            TOP + ROW / 2.0 + 4.0
        );
    }

    // A dot per timeline entry, on a row of its own.
    if events_row {
        let top = TOP + ROW * rows.len() as f64;
        let cy = top + ROW / 2.0;
        let _ = writeln!(
            o,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#333">events</text>"##,
            LEFT - 8.0,
            cy + 4.0
        );
        for e in &r.timeline {
            let _ = writeln!(
                o,
                r##"<circle class="event" cx="{:.1}" cy="{cy:.1}" r="4" fill="#333"><title>{} s {}: {}</title></circle>"##,
                x(e.at_s),
                num(e.at_s),
                escape(&e.kind),
                escape(&e.message)
            );
        }
    }

    // The RTO objective, and the RTO measured.
    let anchor = |lx: f64| {
        if lx > LEFT + plot * 0.7 {
            (lx - 4.0, "end")
        } else {
            (lx + 4.0, "start")
        }
    };
    if let Some(rto) = &r.rto {
        let bx = x(rto.objective_s);
        let (lx, a) = anchor(bx);
        let _ = writeln!(
            o,
            r#"<line class="rto-budget" x1="{bx:.1}" y1="6" x2="{bx:.1}" y2="{bottom}" stroke="{BUDGET}" stroke-width="2" stroke-dasharray="6 4"/><text x="{lx:.1}" y="16" text-anchor="{a}" fill="{BUDGET}">RTO budget {} s</text>"#,
            num(rto.objective_s)
        );
        match rto.measured_s {
            Some(m) if m.is_finite() => {
                let colour = if m <= rto.objective_s { WITHIN } else { OVER };
                let mx = x(m);
                let (lx, a) = anchor(mx);
                let _ = writeln!(
                    o,
                    r#"<line class="rto-measured" x1="{mx:.1}" y1="22" x2="{mx:.1}" y2="{bottom}" stroke="{colour}" stroke-width="2"/><text x="{lx:.1}" y="34" text-anchor="{a}" fill="{colour}">RTO measured {} s</text>"#,
                    num(m)
                );
            }
            _ => {
                let _ = writeln!(
                    o,
                    r#"<text x="{LEFT}" y="34" fill="{OVER}">RTO unknown: the service never came back</text>"#
                );
            }
        }
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{hostile, passing};

    #[test]
    fn one_bar_per_phase_and_one_dot_per_entry() {
        let r = hostile();
        let svg = timeline_svg(&r);
        assert_eq!(svg.matches(r#"<rect class="phase""#).count(), r.phases.len());
        assert_eq!(svg.matches(r#"<circle class="event""#).count(), r.timeline.len());
        // Rows in the phases' own order, only those present.
        let labels: Vec<usize> = [
            "detect",
            "decide",
            "preempt",
            "execute",
            "propagate",
            "failback",
            "teardown",
        ]
        .iter()
        .map(|n| svg.find(&format!(">{n}</text>")).expect(n))
        .collect();
        assert!(labels.windows(2).all(|w| w[0] < w[1]));
        let mut r = passing();
        r.phases.retain(|p| p.name != PhaseName::Teardown);
        assert!(!timeline_svg(&r).contains(">teardown</text>"));
    }

    #[test]
    fn is_an_accessible_image_with_a_title() {
        let svg = timeline_svg(&passing());
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 900 "));
        assert!(svg.contains(r#"role="img""#));
        assert!(svg.contains(
            "<title id=\"drill-timeline-title\">Timeline of drill lose-a (run drill-lose-a-20261130T101500Z)</title>"
        ));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn the_measured_rto_is_red_only_over_budget() {
        let svg = timeline_svg(&passing());
        assert!(svg.contains("RTO budget 10 s"));
        assert!(svg.contains(&format!(r#"stroke="{WITHIN}" stroke-width="2"/><text x="#)));
        assert!(svg.contains("RTO measured 8.1 s"));
        let svg = timeline_svg(&hostile());
        assert!(svg.contains(r#"class="rto-measured" x1="#));
        assert!(svg.contains(&format!(r#"stroke="{OVER}" stroke-width="2"/>"#)));
        assert!(svg.contains("RTO measured 14.2 s"));
    }

    #[test]
    fn the_axis_has_tick_labels_in_seconds_and_reaches_past_everything() {
        let svg = timeline_svg(&hostile());
        // The hostile report runs to 50 s: ticks every 5 s.
        for t in ["0", "5", "25", "50"] {
            assert!(svg.contains(&format!(r##"fill="#333">{t}</text>"##)), "tick {t}");
        }
        assert!(!svg.contains(">55</text>"));
        assert_eq!(tick_step(41.0), 5.0);
        assert_eq!(tick_step(8.0), 1.0);
        assert_eq!(tick_step(0.3), 0.05);
    }

    #[test]
    fn hostile_text_comes_out_escaped() {
        let svg = timeline_svg(&hostile());
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#39;"));
    }

    #[test]
    fn an_empty_report_still_draws() {
        let mut r = passing();
        r.phases.clear();
        r.timeline.clear();
        r.rto = None;
        let svg = timeline_svg(&r);
        assert!(svg.contains("no phases recorded"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }
}
