//! The JUnit XML rendering of a drill report, for CI systems that show test results: one test
//! suite per drill, one test case per check of the verdict (`crate::checks`), so a CI's
//! failure count is the drill's.

use std::fmt::Write;

use super::{escape, escape_attr};
use crate::report::Report;
use crate::verdict::checks;

/// Seconds as JUnit's `time` attributes hold them.
fn time(s: f64) -> String {
    format!("{:.3}", if s.is_finite() { s.max(0.0) } else { 0.0 })
}

/// The report as JUnit XML: `<testsuites>` holding one `<testsuite name="drill NAME">`.
pub fn junit(report: &Report) -> String {
    let r = report;
    let checks = checks(r);
    let tests = checks.len();
    let failures = checks.iter().filter(|c| !c.passed()).count();
    let duration = time(r.duration_s());
    let mut o = String::new();
    o.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        o,
        r#"<testsuites name="resurgo drills" tests="{tests}" failures="{failures}" errors="0" skipped="0" time="{duration}">"#
    );
    let _ = writeln!(
        o,
        r#"  <testsuite name="drill {}" tests="{tests}" failures="{failures}" errors="0" skipped="0" time="{duration}" timestamp="{}">"#,
        escape_attr(&r.drill),
        escape_attr(&r.started)
    );
    o.push_str("    <properties>\n");
    let scope = format!("{}: {}", r.scope.kind.as_str(), r.scope.targets.join(", "));
    for (name, value) in [
        ("run", r.run.as_str()),
        ("mode", r.mode.as_str()),
        ("scope", scope.as_str()),
        ("spec_commit", r.spec_commit.as_str()),
        ("resurgo_version", r.resurgo_version.as_str()),
        ("operator", r.operator.as_str()),
        ("started", r.started.as_str()),
        ("ended", r.ended.as_deref().unwrap_or("")),
        ("outcome", r.outcome.as_str()),
        ("verdict", r.verdict.as_str()),
    ] {
        let _ = writeln!(o, r#"      <property name="{name}" value="{}"/>"#, escape_attr(value));
    }
    o.push_str("    </properties>\n");
    let classname = format!("resurgo.drill.{}", r.drill);
    for check in &checks {
        let _ = write!(
            o,
            r#"    <testcase classname="{}" name="{}" time="{}">"#,
            escape_attr(&classname),
            escape_attr(&check.name),
            time(check.seconds.unwrap_or(0.0))
        );
        if check.passed() {
            let _ = writeln!(o, "<system-out>{}</system-out></testcase>", escape(&check.detail));
        } else {
            let _ = writeln!(
                o,
                "\n      <failure message=\"{}\" type=\"drill\">{}\n{}</failure>\n    </testcase>",
                escape_attr(&check.failures.join("; ")),
                escape(&check.failures.join("\n")),
                escape(&check.detail)
            );
        }
    }
    o.push_str("  </testsuite>\n</testsuites>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{hostile, passing, passing_live, HOSTILE};

    fn names(xml: &str) -> Vec<&str> {
        xml.split("<testcase ")
            .skip(1)
            .map(|c| c.split(" name=\"").nth(1).unwrap().split('"').next().unwrap())
            .collect()
    }

    #[test]
    fn one_case_per_objective_probe_data_check_leak_check_and_isolation() {
        let mut r = passing();
        r.judge();
        let xml = junit(&r);
        assert_eq!(
            names(&xml),
            [
                "outcome",
                "objective rto",
                "objective rpo",
                "probe web",
                "isolation",
                "data check orders@b",
                "leak check"
            ]
        );
        assert!(xml.contains(r#"<testsuite name="drill lose-a" tests="7" failures="0" errors="0" skipped="0" time="41.000" timestamp="2026-11-30T10:15:00Z">"#));
        assert!(xml.contains(r#"<testcase classname="resurgo.drill.lose-a" name="objective rto" time="8.100">"#));
        assert!(!xml.contains("<failure"));
        // A live drill has no isolation case.
        assert!(!names(&junit(&passing_live())).contains(&"isolation"));
    }

    #[test]
    fn counts_failures_and_says_what_failed() {
        let r = hostile();
        let xml = junit(&r);
        let failing = checks(&r).iter().filter(|c| !c.passed()).count();
        // outcome, rto, rpo, the failing probe, isolation, the data check, the leak check.
        assert_eq!(failing, 7);
        assert!(xml.contains(&format!(r#"tests="8" failures="{failing}""#)));
        assert_eq!(xml.matches("<failure ").count(), failing);
        assert!(xml.contains(r#"<failure message="RTO 14.2 s exceeds the objective 10 s" type="drill">"#));
        // The leak check lists what was left.
        let leak = xml.split("name=\"leak check\"").nth(1).unwrap();
        assert!(leak.contains("leak check: process `web (pid 4242) "));
    }

    #[test]
    fn hostile_text_comes_out_escaped() {
        let xml = junit(&hostile());
        assert!(!xml.contains(HOSTILE));
        assert!(!xml.contains("<script>"));
        assert!(xml.contains(r#"name="drill drill &lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#39;|*_`""#));
        // Whatever the text, every element opened is closed.
        for tag in ["testsuites", "testsuite", "testcase", "properties"] {
            assert_eq!(
                xml.matches(&format!("<{tag}>")).count() + xml.matches(&format!("<{tag} ")).count(),
                xml.matches(&format!("</{tag}>")).count(),
                "{tag}"
            );
        }
    }
}
