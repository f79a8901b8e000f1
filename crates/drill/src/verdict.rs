//! The verdict: the checks a drill report is judged by, each with the sentences that say what
//! failed. `Report::judge` and the JUnit rendering both read [`checks`], so the verdict, the
//! findings and the test cases cannot disagree.
//!
//! The rule that runs through them: a measure that is unknown (null) never passes. A service
//! that never came back, a canary that could not be read, a probe never attempted, an
//! isolation never tried — each is a failure, named as such.

use crate::render::num;
use crate::report::{Mode, Outcome, Report, Verdict};

/// One check of the verdict; a test case in the JUnit rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The test case's name: `outcome`, `objective rto`, `objective rpo`, `probe <name>`,
    /// `isolation`, `data check <dataset>@<site>` or `leak check`.
    pub name: String,
    /// The seconds the check measured, when it measured a time (the RTO), else none.
    pub seconds: Option<f64>,
    /// What failed, one sentence each; empty when the check passed.
    pub failures: Vec<String>,
    /// What was found, in a sentence, whether the check passed or not.
    pub detail: String,
}

impl Check {
    fn new(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            seconds: None,
            failures: Vec::new(),
            detail: detail.into(),
        }
    }

    /// Whether the check passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl Report {
    /// Computes the verdict and the findings from the rest of the report (replacing what they
    /// held): `pass` exactly when every one of [`checks`] passed.
    pub fn judge(&mut self) {
        let findings: Vec<String> = checks(self).into_iter().flat_map(|c| c.failures).collect();
        self.verdict = if findings.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        self.findings = findings;
    }
}

/// The checks a report is judged by, in the order they are reported: the outcome, the RTO and
/// RPO objectives (when measured), each probe, the isolation (isolated drills), each data
/// check, and the leak check.
pub fn checks(report: &Report) -> Vec<Check> {
    let mut all = vec![outcome(report)];
    if report.rto.is_some() {
        all.push(rto(report));
    }
    if report.rpo.is_some() {
        all.push(rpo(report));
    }
    all.extend(probes(report));
    if report.mode == Mode::Isolated {
        all.push(isolation(report));
    }
    all.extend(data_checks(report));
    all.push(leak_check(report));
    all
}

/// Whether a measure is within its objective; never for a NaN, which is no measure.
fn within(measure: f64, objective: f64) -> bool {
    measure <= objective
}

fn with_detail(sentence: String, detail: Option<&str>) -> String {
    match detail {
        Some(d) if !d.trim().is_empty() => format!("{sentence}: {d}"),
        _ => sentence,
    }
}

fn outcome(report: &Report) -> Check {
    let mut check = Check::new("outcome", format!("outcome {}", report.outcome.as_str()));
    check.seconds = Some(report.duration_s());
    let failure = match report.outcome {
        Outcome::Completed => None,
        Outcome::Aborted => Some("the drill was aborted: a stop condition fired".to_string()),
        Outcome::DeadlinePassed => Some(format!(
            "the drill was stopped at its deadline of {} s",
            num(report.deadline_s)
        )),
        Outcome::Interrupted => Some("the drill was interrupted (SIGINT or SIGTERM)".to_string()),
        Outcome::Failed => Some("the drill failed before its end (see the timeline)".to_string()),
        Outcome::InProgress => Some("the drill has not ended".to_string()),
    };
    check.failures.extend(failure);
    check
}

fn rto(report: &Report) -> Check {
    let rto = report.rto.as_ref().expect("called with an RTO");
    let objective = num(rto.objective_s);
    let mut check = Check::new("objective rto", "");
    check.seconds = rto.measured_s;
    match rto.measured_s {
        None => {
            check.detail = format!("RTO unknown (objective {objective} s)");
            check.failures.push(format!(
                "RTO unknown: the service never came back (objective {objective} s)"
            ));
        }
        Some(m) if !within(m, rto.objective_s) => {
            check.detail = format!("RTO {} s, objective {objective} s", num(m));
            check
                .failures
                .push(format!("RTO {} s exceeds the objective {objective} s", num(m)));
        }
        Some(m) => {
            check.detail = format!("RTO {} s within the objective {objective} s", num(m));
        }
    }
    check
}

fn rpo(report: &Report) -> Check {
    let rpo = report.rpo.as_ref().expect("called with an RPO");
    let objective = num(rpo.objective_s);
    let lost = rpo.writes_lost.map_or("unknown".to_string(), |w| w.to_string());
    let seconds = rpo.seconds.map_or("unknown".to_string(), |s| format!("{} s", num(s)));
    let mut check = Check::new(
        "objective rpo",
        format!("RPO {seconds} ({lost} writes lost), objective {objective} s"),
    );
    match rpo.seconds {
        None => check.failures.push(format!(
            "RPO unknown: the data lost was not measured (objective {objective} s)"
        )),
        Some(s) if !within(s, rpo.objective_s) => check
            .failures
            .push(format!("RPO {} s exceeds the objective {objective} s", num(s))),
        Some(_) => {}
    }
    if rpo.writes_lost.is_none() {
        check
            .failures
            .push("RPO unknown: the acknowledged writes lost were not counted".to_string());
    }
    for d in &rpo.datasets {
        let name = format!("RPO of dataset `{}` at site {}", d.dataset, d.site);
        let detail = d.detail.as_deref();
        if d.writes_lost.is_none() {
            check.failures.push(with_detail(
                format!("{name} unknown: the acknowledged writes lost were not counted"),
                detail,
            ));
        }
        match d.seconds {
            None => check.failures.push(with_detail(
                format!("{name} unknown: the data lost was not measured"),
                detail,
            )),
            Some(s) if !within(s, rpo.objective_s) => check.failures.push(with_detail(
                format!("{name}: {} s exceeds the objective {objective} s", num(s)),
                detail,
            )),
            Some(_) => {}
        }
    }
    check
}

fn probes(report: &Report) -> Vec<Check> {
    report
        .probes
        .iter()
        .map(|p| {
            let what = format!("probe `{}` ({} probe of {})", p.name, p.kind.as_str(), p.target);
            let mut check = Check::new(
                format!("probe {}", p.name),
                format!("{what}: {} attempts, {} failed", p.attempts, p.failures),
            );
            if p.attempts == 0 {
                check
                    .failures
                    .push(with_detail(format!("{what} was never attempted"), p.detail.as_deref()));
            } else if !p.passed {
                check.failures.push(with_detail(
                    format!("{what} failed: {} of {} attempts failed", p.failures, p.attempts),
                    p.detail.as_deref(),
                ));
            }
            check
        })
        .collect()
}

fn isolation(report: &Report) -> Check {
    let mut check = Check::new("isolation", "");
    match &report.isolation {
        None => {
            check.detail = "no production endpoint was tried from the sandbox".to_string();
            check
                .failures
                .push("isolation not proven: no production endpoint was tried from the sandbox".to_string());
        }
        Some(iso) if iso.attempts.is_empty() => {
            check.detail = format!("no production endpoint was tried from sandbox `{}`", iso.sandbox);
            check.failures.push(format!(
                "isolation not proven: no production endpoint was tried from sandbox `{}`",
                iso.sandbox
            ));
        }
        Some(iso) => {
            let reached = iso.attempts.iter().filter(|a| a.reached).count();
            check.detail = format!(
                "{} production endpoints tried from sandbox `{}`, {reached} reached",
                iso.attempts.len(),
                iso.sandbox
            );
            for a in iso.attempts.iter().filter(|a| a.reached) {
                check.failures.push(format!(
                    "isolation not proven: {} reached from the sandbox (from {})",
                    a.to, a.from
                ));
            }
        }
    }
    check
}

fn data_checks(report: &Report) -> Vec<Check> {
    report
        .data_checks
        .iter()
        .map(|c| {
            let mut check = Check::new(
                format!("data check {}@{}", c.dataset, c.site),
                format!(
                    "{} of `{}` at site {}: {}",
                    c.method,
                    c.dataset,
                    c.site,
                    if c.passed { "sound" } else { "failed" }
                ),
            );
            if !c.passed {
                check.failures.push(with_detail(
                    format!("data check of `{}` at site {} failed ({})", c.dataset, c.site, c.method),
                    c.detail.as_deref(),
                ));
            }
            check
        })
        .collect()
}

fn leak_check(report: &Report) -> Check {
    let mut check = Check::new("leak check", "");
    for l in &report.leftovers {
        check
            .failures
            .push(format!("leak check: {} `{}` left at {}", l.kind, l.what, l.place));
    }
    for f in &report.faults {
        if f.injected_at_s.is_some() && f.reverted_at_s.is_none() {
            check.failures.push(format!(
                "leak check: fault `{}` on `{}` was never reverted (undo: {})",
                f.kind, f.target, f.undo
            ));
        }
    }
    check.detail = if check.failures.is_empty() {
        "nothing left behind".to_string()
    } else {
        format!("{} things left behind", check.failures.len())
    };
    check
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::*;
    use crate::sample::{passing, passing_live};

    fn judged(mut r: Report) -> Report {
        r.judge();
        r
    }

    fn assert_fails_with(r: Report, finding: &str) {
        let r = judged(r);
        assert_eq!(r.verdict, Verdict::Fail, "{:?}", r.findings);
        assert!(
            r.findings.iter().any(|f| f == finding),
            "expected the finding {finding:?} in {:?}",
            r.findings
        );
    }

    #[test]
    fn a_report_where_everything_held_passes_with_no_findings() {
        let r = judged(passing());
        assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.findings);
        assert!(r.findings.is_empty());
        let r = judged(passing_live());
        assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.findings);
    }

    #[test]
    fn judging_replaces_stale_findings_and_verdict() {
        let mut r = passing();
        r.verdict = Verdict::Fail;
        r.findings = vec!["old".into()];
        r.judge();
        assert_eq!((r.verdict, r.findings.len()), (Verdict::Pass, 0));
    }

    #[test]
    fn any_outcome_but_completed_fails() {
        for (outcome, finding) in [
            (Outcome::Aborted, "the drill was aborted: a stop condition fired"),
            (
                Outcome::DeadlinePassed,
                "the drill was stopped at its deadline of 600 s",
            ),
            (Outcome::Interrupted, "the drill was interrupted (SIGINT or SIGTERM)"),
            (Outcome::Failed, "the drill failed before its end (see the timeline)"),
            (Outcome::InProgress, "the drill has not ended"),
        ] {
            let mut r = passing();
            r.outcome = outcome;
            assert_fails_with(r, finding);
        }
    }

    #[test]
    fn rto_over_its_objective_fails_and_at_it_passes() {
        let mut r = passing();
        r.rto.as_mut().unwrap().measured_s = Some(14.2);
        assert_fails_with(r, "RTO 14.2 s exceeds the objective 10 s");
        let mut r = passing();
        r.rto.as_mut().unwrap().measured_s = Some(10.0);
        assert_eq!(judged(r).verdict, Verdict::Pass);
    }

    #[test]
    fn an_unknown_rto_never_passes() {
        let mut r = passing();
        r.rto.as_mut().unwrap().measured_s = None;
        assert_fails_with(r, "RTO unknown: the service never came back (objective 10 s)");
        let mut r = passing();
        r.rto.as_mut().unwrap().measured_s = Some(f64::NAN);
        assert_eq!(judged(r).verdict, Verdict::Fail);
    }

    #[test]
    fn no_rto_measured_is_no_rto_check() {
        let mut r = passing();
        r.rto = None;
        assert_eq!(judged(r.clone()).verdict, Verdict::Pass);
        assert!(checks(&r).iter().all(|c| c.name != "objective rto"));
    }

    #[test]
    fn rpo_over_its_objective_fails() {
        let mut r = passing();
        r.rpo.as_mut().unwrap().seconds = Some(12.0);
        assert_fails_with(r, "RPO 12 s exceeds the objective 5 s");
        let mut r = passing();
        r.rpo.as_mut().unwrap().datasets[0].seconds = Some(7.5);
        assert_fails_with(r, "RPO of dataset `orders` at site b: 7.5 s exceeds the objective 5 s");
    }

    #[test]
    fn writes_lost_within_the_objective_pass() {
        let mut r = passing();
        let rpo = r.rpo.as_mut().unwrap();
        rpo.writes_lost = Some(3);
        rpo.seconds = Some(1.5);
        rpo.datasets[0].writes_lost = Some(3);
        rpo.datasets[0].seconds = Some(1.5);
        assert_eq!(judged(r).verdict, Verdict::Pass);
    }

    #[test]
    fn an_unknown_rpo_never_passes() {
        let mut r = passing();
        r.rpo.as_mut().unwrap().seconds = None;
        assert_fails_with(r, "RPO unknown: the data lost was not measured (objective 5 s)");
        let mut r = passing();
        r.rpo.as_mut().unwrap().writes_lost = None;
        assert_fails_with(r, "RPO unknown: the acknowledged writes lost were not counted");
        let mut r = passing();
        let d = &mut r.rpo.as_mut().unwrap().datasets[0];
        d.recovered = None;
        d.writes_lost = None;
        d.detail = Some("connection refused".into());
        assert_fails_with(r, "RPO of dataset `orders` at site b unknown: the acknowledged writes lost were not counted: connection refused");
        let mut r = passing();
        r.rpo.as_mut().unwrap().datasets[0].seconds = None;
        assert_fails_with(
            r,
            "RPO of dataset `orders` at site b unknown: the data lost was not measured",
        );
    }

    #[test]
    fn a_failed_probe_fails_and_one_never_attempted_too() {
        let mut r = passing();
        r.probes[0].passed = false;
        r.probes[0].failures = 4;
        r.probes[0].detail = Some("HTTP 503".into());
        assert_fails_with(
            r,
            "probe `web` (route probe of http://web.test/health) failed: 4 of 40 attempts failed: HTTP 503",
        );
        let mut r = passing();
        r.probes[0].attempts = 0;
        assert_fails_with(
            r,
            "probe `web` (route probe of http://web.test/health) was never attempted",
        );
    }

    #[test]
    fn a_failed_data_check_fails() {
        let mut r = passing();
        r.data_checks[0].passed = false;
        r.data_checks[0].detail = Some("index orders_pkey is corrupt".into());
        assert_fails_with(
            r,
            "data check of `orders` at site b failed (pg_amcheck): index orders_pkey is corrupt",
        );
    }

    #[test]
    fn any_leftover_fails_the_leak_check() {
        let mut r = passing();
        r.leftovers.push(Leftover {
            kind: "process".into(),
            what: "web (pid 4242)".into(),
            place: "site b".into(),
        });
        assert_fails_with(r, "leak check: process `web (pid 4242)` left at site b");
    }

    #[test]
    fn a_fault_injected_and_never_reverted_fails_the_leak_check() {
        let mut r = passing();
        r.faults[0].reverted_at_s = None;
        assert_fails_with(
            r,
            "leak check: fault `stop_site` on `a` was never reverted (undo: resurgo set-up a)",
        );
        // One never injected has nothing to revert.
        let mut r = passing();
        r.faults[0].injected_at_s = None;
        r.faults[0].reverted_at_s = None;
        assert_eq!(judged(r).verdict, Verdict::Pass);
    }

    #[test]
    fn an_isolated_drill_must_prove_its_isolation() {
        let mut r = passing();
        r.isolation = None;
        assert_fails_with(
            r,
            "isolation not proven: no production endpoint was tried from the sandbox",
        );
        let mut r = passing();
        r.isolation.as_mut().unwrap().attempts.clear();
        assert_fails_with(
            r,
            "isolation not proven: no production endpoint was tried from sandbox `drill-lose-a`",
        );
        let mut r = passing();
        r.isolation.as_mut().unwrap().attempts[0].reached = true;
        assert_fails_with(
            r,
            "isolation not proven: 10.0.0.1:5432 reached from the sandbox (from web)",
        );
    }

    #[test]
    fn a_live_drill_has_no_isolation_check() {
        let r = passing_live();
        assert!(r.isolation.is_none());
        assert!(checks(&r).iter().all(|c| c.name != "isolation"));
    }

    #[test]
    fn every_finding_comes_from_a_named_check() {
        let mut r = passing();
        r.outcome = Outcome::Aborted;
        r.probes[0].passed = false;
        r.leftovers.push(Leftover {
            kind: "port".into(),
            what: "7443".into(),
            place: "host h1".into(),
        });
        let failing: Vec<String> = checks(&r).into_iter().filter(|c| !c.passed()).map(|c| c.name).collect();
        assert_eq!(failing, ["outcome", "probe web", "leak check"]);
        assert_eq!(judged(r).findings.len(), 3);
    }
}
