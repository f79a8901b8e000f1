//! The HTML rendering of a drill report: one self-contained page — the same content as the
//! Markdown, with the SVG timeline inline. No script and no external resource of any kind
//! (its Content-Security-Policy forbids both), so it opens offline, from a CI artifact or an
//! e-mail, without a console error.

use std::fmt::Write;

use super::markdown::{rto_sentence, verdict_word};
use super::{escape, maybe, num, timeline_svg};
use crate::report::{Mode, Report, Verdict};

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1000px;padding:0 1rem;color:#222;line-height:1.4}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{display:inline-block;padding:.1rem .6rem;border-radius:.3rem;color:#fff}
.pass{background:#2ca02c}.fail{background:#d62728}td.bad{color:#d62728;font-weight:bold}
figure{margin:1rem 0;overflow-x:auto}svg{max-width:100%;height:auto}
";

/// The report as one self-contained HTML5 page.
pub fn html(report: &Report) -> String {
    let r = report;
    let verdict_class = match r.verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
    };
    let mut o = String::new();
    let _ = write!(
        o,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <link rel=\"icon\" href=\"data:,\">\n\
         <title>Drill {} ({}): {}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n",
        escape(&r.drill),
        r.mode.as_str(),
        verdict_word(r.verdict)
    );
    let _ = writeln!(
        o,
        "<h1>Drill {} ({}): <span class=\"verdict {verdict_class}\">{}</span></h1>",
        escape(&r.drill),
        r.mode.as_str(),
        verdict_word(r.verdict)
    );

    let scope = format!("{}: {}", r.scope.kind.as_str(), r.scope.targets.join(", "));
    o.push_str("<table class=\"facts\">\n");
    for (k, v) in [
        ("run", r.run.clone()),
        ("spec commit", r.spec_commit.clone()),
        ("resurgo version", r.resurgo_version.clone()),
        ("operator", r.operator.clone()),
        ("mode", r.mode.as_str().to_string()),
        ("scope", scope),
        ("started", r.started.clone()),
        ("ended", r.ended.clone().unwrap_or_else(|| "not ended".to_string())),
        ("deadline", format!("{} s", num(r.deadline_s))),
        ("outcome", r.outcome.as_str().to_string()),
        ("verdict", verdict_word(r.verdict).to_string()),
    ] {
        let _ = writeln!(o, "<tr><th>{k}</th><td>{}</td></tr>", escape(&v));
    }
    o.push_str("</table>\n");

    o.push_str("<h2>Findings</h2>\n");
    if r.findings.is_empty() {
        o.push_str("<p>None: every check passed.</p>\n");
    } else {
        o.push_str("<ul class=\"findings\">\n");
        for f in &r.findings {
            let _ = writeln!(o, "<li>{}</li>", escape(f));
        }
        o.push_str("</ul>\n");
    }

    o.push_str("<h2>Timeline</h2>\n<figure>\n");
    o.push_str(&timeline_svg(r));
    o.push_str("</figure>\n");

    o.push_str("<h2>Recovery time (RTO)</h2>\n");
    match &r.rto {
        None => o.push_str("<p>Not measured.</p>\n"),
        Some(rto) => {
            let _ = writeln!(o, "<p>{}</p>", escape(&rto_sentence(rto)));
            table(
                &mut o,
                &["part", "seconds"],
                [
                    ("detect", rto.detect_s),
                    ("decide", rto.decide_s),
                    ("preempt", rto.preempt_s),
                    ("execute", rto.execute_s),
                    ("propagate", rto.propagate_s),
                    ("total", rto.measured_s),
                ]
                .into_iter()
                .map(|(k, v)| vec![Cell::text(k), Cell::num(maybe(v, "not measured"))])
                .collect(),
            );
        }
    }
    o.push_str("<h3>Phases</h3>\n");
    if r.phases.is_empty() {
        o.push_str("<p>None recorded.</p>\n");
    } else {
        table(
            &mut o,
            &["phase", "start (s)", "end (s)", "duration (s)"],
            r.phases
                .iter()
                .map(|p| {
                    vec![
                        Cell::text(p.name.as_str()),
                        Cell::num(num(p.start_s)),
                        Cell::num(num(p.end_s)),
                        Cell::num(num(p.end_s - p.start_s)),
                    ]
                })
                .collect(),
        );
    }

    o.push_str("<h2>Data lost (RPO)</h2>\n");
    match &r.rpo {
        None => o.push_str("<p>Not measured.</p>\n"),
        Some(rpo) => {
            let _ = writeln!(
                o,
                "<p>Objective {} s. Lost: {} of writes ({} acknowledged writes).</p>",
                num(rpo.objective_s),
                rpo.seconds
                    .map_or("an unknown amount".to_string(), |s| format!("{} s", num(s))),
                rpo.writes_lost
                    .map_or("an unknown number of".to_string(), |w| w.to_string()),
            );
            if rpo.datasets.is_empty() {
                o.push_str("<p>No dataset was measured.</p>\n");
            } else {
                table(
                    &mut o,
                    &[
                        "dataset",
                        "kind",
                        "site",
                        "acknowledged",
                        "recovered",
                        "writes lost",
                        "seconds",
                        "detail",
                    ],
                    rpo.datasets
                        .iter()
                        .map(|d| {
                            vec![
                                Cell::text(&d.dataset),
                                Cell::text(&d.kind),
                                Cell::text(&d.site),
                                Cell::num(d.acknowledged.to_string()),
                                Cell::count(d.recovered),
                                Cell::count(d.writes_lost),
                                Cell::num(maybe(d.seconds, "unknown")),
                                Cell::text(d.detail.as_deref().unwrap_or("")),
                            ]
                        })
                        .collect(),
                );
            }
        }
    }

    o.push_str("<h2>Probes</h2>\n");
    if r.probes.is_empty() {
        o.push_str("<p>None.</p>\n");
    } else {
        table(
            &mut o,
            &["probe", "kind", "target", "attempts", "failures", "result", "detail"],
            r.probes
                .iter()
                .map(|p| {
                    vec![
                        Cell::text(&p.name),
                        Cell::text(p.kind.as_str()),
                        Cell::text(&p.target),
                        Cell::num(p.attempts.to_string()),
                        Cell::num(p.failures.to_string()),
                        Cell::result(p.passed && p.attempts > 0),
                        Cell::text(p.detail.as_deref().unwrap_or("")),
                    ]
                })
                .collect(),
        );
    }

    o.push_str("<h2>Isolation</h2>\n");
    match (&r.isolation, r.mode) {
        (None, Mode::Live) => o.push_str("<p>Not applicable: a live drill.</p>\n"),
        (None, Mode::Isolated) => {
            o.push_str("<p>No production endpoint was tried from the sandbox: isolation not proven.</p>\n")
        }
        (Some(iso), _) => {
            let _ = writeln!(o, "<p>Sandbox {}.</p>", escape(&iso.sandbox));
            if iso.attempts.is_empty() {
                o.push_str("<p>No production endpoint was tried from it: isolation not proven.</p>\n");
            } else {
                table(
                    &mut o,
                    &["from", "to", "reached", "detail"],
                    iso.attempts
                        .iter()
                        .map(|a| {
                            vec![
                                Cell::text(&a.from),
                                Cell::text(&a.to),
                                if a.reached { Cell::bad("yes") } else { Cell::text("no") },
                                Cell::text(&a.detail),
                            ]
                        })
                        .collect(),
                );
            }
        }
    }

    o.push_str("<h2>Data checks</h2>\n");
    if r.data_checks.is_empty() {
        o.push_str("<p>None.</p>\n");
    } else {
        table(
            &mut o,
            &["dataset", "site", "method", "result", "detail"],
            r.data_checks
                .iter()
                .map(|c| {
                    vec![
                        Cell::text(&c.dataset),
                        Cell::text(&c.site),
                        Cell::text(&c.method),
                        Cell::result(c.passed),
                        Cell::text(c.detail.as_deref().unwrap_or("")),
                    ]
                })
                .collect(),
        );
    }

    o.push_str("<h2>Faults</h2>\n");
    if r.faults.is_empty() {
        o.push_str("<p>None.</p>\n");
    } else {
        table(
            &mut o,
            &["fault", "target", "injected (s)", "reverted (s)", "undo"],
            r.faults
                .iter()
                .map(|f| {
                    vec![
                        Cell::text(&f.kind),
                        Cell::text(&f.target),
                        Cell::num(maybe(f.injected_at_s, "never")),
                        Cell::num(maybe(f.reverted_at_s, "never")),
                        Cell::text(&f.undo),
                    ]
                })
                .collect(),
        );
    }

    o.push_str("<h2>Leftovers</h2>\n");
    if r.leftovers.is_empty() {
        o.push_str("<p>None: the teardown left nothing behind.</p>\n");
    } else {
        o.push_str("<ul class=\"leftovers\">\n");
        for l in &r.leftovers {
            let _ = writeln!(
                o,
                "<li>{} {} at {}</li>",
                escape(&l.kind),
                escape(&l.what),
                escape(&l.place)
            );
        }
        o.push_str("</ul>\n");
    }

    o.push_str("<h2>Events</h2>\n");
    if r.timeline.is_empty() {
        o.push_str("<p>None recorded.</p>\n");
    } else {
        table(
            &mut o,
            &["at (s)", "event", "message"],
            r.timeline
                .iter()
                .map(|e| vec![Cell::num(num(e.at_s)), Cell::text(&e.kind), Cell::text(&e.message)])
                .collect(),
        );
    }
    o.push_str("</body>\n</html>\n");
    o
}

/// A table cell: its text (escaped when written) and its class.
struct Cell {
    text: String,
    class: Option<&'static str>,
}

impl Cell {
    fn text(s: &str) -> Cell {
        Cell {
            text: s.to_string(),
            class: None,
        }
    }
    fn num(s: String) -> Cell {
        Cell {
            text: s,
            class: Some("num"),
        }
    }
    fn count(n: Option<u64>) -> Cell {
        Cell::num(n.map_or("unknown".to_string(), |n| n.to_string()))
    }
    fn bad(s: &str) -> Cell {
        Cell {
            text: s.to_string(),
            class: Some("bad"),
        }
    }
    fn result(passed: bool) -> Cell {
        if passed {
            Cell::text("pass")
        } else {
            Cell::bad("FAIL")
        }
    }
}

fn table(o: &mut String, head: &[&str], rows: Vec<Vec<Cell>>) {
    o.push_str("<table>\n<tr>");
    for h in head {
        let _ = write!(o, "<th>{h}</th>");
    }
    o.push_str("</tr>\n");
    for row in rows {
        o.push_str("<tr>");
        for cell in row {
            match cell.class {
                Some(class) => {
                    let _ = write!(o, "<td class=\"{class}\">{}</td>", escape(&cell.text));
                }
                None => {
                    let _ = write!(o, "<td>{}</td>", escape(&cell.text));
                }
            }
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{hostile, passing, HOSTILE};

    #[test]
    fn is_one_self_contained_page_with_the_timeline_inline() {
        let page = html(&hostile());
        assert!(page.starts_with("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">"));
        assert!(page.contains("<style>"));
        assert_eq!(page.matches("<svg ").count(), 1);
        // Nothing that would run or fetch.
        let lower = page.to_lowercase();
        for banned in ["<script", "src=", "href=\"http", "url(", "@import", "javascript:"] {
            assert!(!lower.contains(banned), "the page holds {banned}");
        }
        assert!(page.contains("<link rel=\"icon\" href=\"data:,\">"));
        assert!(page.trim_end().ends_with("</html>"));
    }

    #[test]
    fn hostile_text_comes_out_escaped() {
        let page = html(&hostile());
        assert!(!page.contains(HOSTILE));
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#39;|*_`"));
        // Tags open and close in pairs: no text closed a tag or opened one.
        for tag in ["table", "tr", "td", "ul", "li", "h2", "p"] {
            let open = page.matches(&format!("<{tag}>")).count() + page.matches(&format!("<{tag} ")).count();
            assert_eq!(open, page.matches(&format!("</{tag}>")).count(), "<{tag}>");
        }
    }

    #[test]
    fn says_the_verdict_and_none_when_nothing_was_left_behind() {
        let mut r = passing();
        r.judge();
        let page = html(&r);
        assert!(page.contains("<span class=\"verdict pass\">PASS</span>"));
        assert!(page.contains("<p>None: the teardown left nothing behind.</p>"));
        let page = html(&hostile());
        assert!(page.contains("<span class=\"verdict fail\">FAIL</span>"));
        assert!(page.contains("<li>process web (pid 4242) "));
    }
}
