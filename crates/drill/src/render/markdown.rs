//! The Markdown rendering of a drill report: for a pull request, a CI job's summary, or a
//! wiki page. Findings come right after the facts: they answer the first question a reader
//! has.

use std::fmt::Write;

use super::{maybe, md, num};
use crate::report::{Mode, Report, Rto, Verdict};

/// The report as a Markdown document (CommonMark with GitHub's tables).
pub fn markdown(report: &Report) -> String {
    let r = report;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Drill {} ({}): {}\n",
        md(&r.drill),
        r.mode.as_str(),
        verdict_word(r.verdict)
    );

    let scope = format!("{}: {}", r.scope.kind.as_str(), r.scope.targets.join(", "));
    table(
        &mut o,
        &["fact", "value"],
        [
            ("run", md(&r.run)),
            ("spec commit", md(&r.spec_commit)),
            ("resurgo version", md(&r.resurgo_version)),
            ("operator", md(&r.operator)),
            ("mode", r.mode.as_str().to_string()),
            ("scope", md(&scope)),
            ("started", md(&r.started)),
            ("ended", r.ended.as_deref().map_or("not ended".to_string(), md)),
            ("deadline", format!("{} s", num(r.deadline_s))),
            ("outcome", md(r.outcome.as_str())),
            ("verdict", verdict_word(r.verdict).to_string()),
        ]
        .into_iter()
        .map(|(k, v)| vec![k.to_string(), v])
        .collect(),
    );

    o.push_str("\n## Findings\n\n");
    if r.findings.is_empty() {
        o.push_str("None: every check passed.\n");
    }
    for f in &r.findings {
        let _ = writeln!(o, "- {}", md(f));
    }

    o.push_str("\n## Recovery time (RTO)\n\n");
    match &r.rto {
        None => o.push_str("Not measured.\n"),
        Some(rto) => {
            let _ = writeln!(o, "{}\n", rto_sentence(rto));
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
                .map(|(k, v)| vec![k.to_string(), maybe(v, "not measured")])
                .collect(),
            );
        }
    }
    o.push_str("\n### Phases\n\n");
    if r.phases.is_empty() {
        o.push_str("None recorded.\n");
    } else {
        table(
            &mut o,
            &["phase", "start (s)", "end (s)", "duration (s)"],
            r.phases
                .iter()
                .map(|p| {
                    vec![
                        p.name.as_str().to_string(),
                        num(p.start_s),
                        num(p.end_s),
                        num(p.end_s - p.start_s),
                    ]
                })
                .collect(),
        );
    }

    o.push_str("\n## Data lost (RPO)\n\n");
    match &r.rpo {
        None => o.push_str("Not measured.\n"),
        Some(rpo) => {
            let _ = writeln!(
                o,
                "Objective {} s. Lost: {} of writes ({} acknowledged writes).\n",
                num(rpo.objective_s),
                rpo.seconds
                    .map_or("an unknown amount".to_string(), |s| format!("{} s", num(s))),
                rpo.writes_lost
                    .map_or("an unknown number of".to_string(), |w| w.to_string()),
            );
            if rpo.datasets.is_empty() {
                o.push_str("No dataset was measured.\n");
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
                                md(&d.dataset),
                                md(&d.kind),
                                md(&d.site),
                                d.acknowledged.to_string(),
                                count(d.recovered),
                                count(d.writes_lost),
                                maybe(d.seconds, "unknown"),
                                d.detail.as_deref().map_or(String::new(), md),
                            ]
                        })
                        .collect(),
                );
            }
        }
    }

    o.push_str("\n## Probes\n\n");
    if r.probes.is_empty() {
        o.push_str("None.\n");
    } else {
        table(
            &mut o,
            &["probe", "kind", "target", "attempts", "failures", "result", "detail"],
            r.probes
                .iter()
                .map(|p| {
                    vec![
                        md(&p.name),
                        p.kind.as_str().to_string(),
                        md(&p.target),
                        p.attempts.to_string(),
                        p.failures.to_string(),
                        result(p.passed && p.attempts > 0).to_string(),
                        p.detail.as_deref().map_or(String::new(), md),
                    ]
                })
                .collect(),
        );
    }

    o.push_str("\n## Isolation\n\n");
    match (&r.isolation, r.mode) {
        (None, Mode::Live) => o.push_str("Not applicable: a live drill.\n"),
        (None, Mode::Isolated) => {
            o.push_str("No production endpoint was tried from the sandbox: isolation not proven.\n")
        }
        (Some(iso), _) => {
            let _ = writeln!(o, "Sandbox {}.\n", md(&iso.sandbox));
            if iso.attempts.is_empty() {
                o.push_str("No production endpoint was tried from it: isolation not proven.\n");
            } else {
                table(
                    &mut o,
                    &["from", "to", "reached", "detail"],
                    iso.attempts
                        .iter()
                        .map(|a| {
                            vec![
                                md(&a.from),
                                md(&a.to),
                                if a.reached { "**yes**" } else { "no" }.to_string(),
                                md(&a.detail),
                            ]
                        })
                        .collect(),
                );
            }
        }
    }

    o.push_str("\n## Data checks\n\n");
    if r.data_checks.is_empty() {
        o.push_str("None.\n");
    } else {
        table(
            &mut o,
            &["dataset", "site", "method", "result", "detail"],
            r.data_checks
                .iter()
                .map(|c| {
                    vec![
                        md(&c.dataset),
                        md(&c.site),
                        md(&c.method),
                        result(c.passed).to_string(),
                        c.detail.as_deref().map_or(String::new(), md),
                    ]
                })
                .collect(),
        );
    }

    o.push_str("\n## Faults\n\n");
    if r.faults.is_empty() {
        o.push_str("None.\n");
    } else {
        table(
            &mut o,
            &["fault", "target", "injected (s)", "reverted (s)", "undo"],
            r.faults
                .iter()
                .map(|f| {
                    vec![
                        md(&f.kind),
                        md(&f.target),
                        maybe(f.injected_at_s, "never"),
                        maybe(f.reverted_at_s, "never"),
                        md(&f.undo),
                    ]
                })
                .collect(),
        );
    }

    o.push_str("\n## Leftovers\n\n");
    if r.leftovers.is_empty() {
        o.push_str("None: the teardown left nothing behind.\n");
    }
    for l in &r.leftovers {
        let _ = writeln!(o, "- {} {} at {}", md(&l.kind), md(&l.what), md(&l.place));
    }

    o.push_str("\n## Timeline\n\n");
    if r.timeline.is_empty() {
        o.push_str("None recorded.\n");
    } else {
        table(
            &mut o,
            &["at (s)", "event", "message"],
            r.timeline
                .iter()
                .map(|e| vec![num(e.at_s), md(&e.kind), md(&e.message)])
                .collect(),
        );
    }
    o
}

/// The verdict as the title shows it.
pub(crate) fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
    }
}

/// The RTO against its objective, in a sentence (plain text: numbers and fixed words only).
pub(crate) fn rto_sentence(rto: &Rto) -> String {
    let objective = num(rto.objective_s);
    match rto.measured_s {
        None => format!("Unknown: the service never came back (objective {objective} s)."),
        Some(m) if m <= rto.objective_s => {
            format!("{} s, within the objective of {objective} s.", num(m))
        }
        Some(m) => format!("{} s, over the objective of {objective} s.", num(m)),
    }
}

fn result(passed: bool) -> &'static str {
    if passed {
        "pass"
    } else {
        "**FAIL**"
    }
}

fn count(n: Option<u64>) -> String {
    n.map_or("unknown".to_string(), |n| n.to_string())
}

/// A table whose cells are already escaped.
fn table(o: &mut String, head: &[&str], rows: Vec<Vec<String>>) {
    let _ = writeln!(o, "| {} |", head.join(" | "));
    let _ = writeln!(o, "|{}", "---|".repeat(head.len()));
    for row in rows {
        let _ = writeln!(o, "| {} |", row.join(" | "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{hostile, passing, HOSTILE};

    #[test]
    fn says_what_was_tested_and_what_failed() {
        let text = markdown(&hostile());
        assert!(text.starts_with("# Drill drill "), "{text}");
        assert!(text.contains("(isolated): FAIL"));
        for fact in [
            "| run |",
            "| spec commit |",
            "| resurgo version |",
            "| operator |",
            "| started |",
            "| ended |",
            "| outcome | aborted |",
        ] {
            assert!(text.contains(fact), "missing {fact}:\n{text}");
        }
        assert!(text.contains("14.2 s, over the objective of 10 s."));
        assert!(text.contains("- RTO 14.2 s exceeds the objective 10 s\n"));
        assert!(text.contains("| preempt | 1.8 | 2 | 0.2 |"));
        assert!(text.contains("| failback | 42 | 50 | 8 |"));
    }

    #[test]
    fn hostile_text_comes_out_escaped() {
        let text = markdown(&hostile());
        assert!(!text.contains("<script>"), "{text}");
        assert!(!text.contains(HOSTILE));
        assert!(text.contains("\\<script\\>alert(1)\\</script\\>\\&\"'\\|\\*\\_\\`"));
        // Every table row still has as many cells as its header.
        for block in text.split("\n\n").filter(|b| b.starts_with('|')) {
            let cells = |line: &str| line.replace("\\|", "").matches('|').count();
            let head = cells(block.lines().next().unwrap());
            assert!(block.lines().all(|l| cells(l) == head), "{block}");
        }
    }

    #[test]
    fn says_none_when_nothing_was_left_behind() {
        let mut r = passing();
        r.judge();
        let text = markdown(&r);
        assert!(text.contains("## Leftovers\n\nNone: the teardown left nothing behind.\n"));
        assert!(text.contains("## Findings\n\nNone: every check passed.\n"));
        assert!(text.contains("(isolated): PASS"));
    }
}
