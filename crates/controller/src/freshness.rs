//! How fresh the evidence is: for each drill, its newest passing run and whether it is due (a
//! cadence, and no pass within it); for each service, the drill that speaks for it — what
//! `resurgo status`, the site API's `GET /v1/site` and `resurgo drill list` show.
//!
//! Pure: the caller reads the reports (`drill::reports`) and the clock.

use std::collections::BTreeMap;

use resurgo_api::types::{ServiceDrill, SiteStatus};
use resurgo_drill::{Report, Verdict};
use resurgo_spec::{Drill, System};

/// Where a drill stands: its newest pass, and whether it is due.
#[derive(Debug, Clone, Copy)]
pub struct Standing<'a> {
    /// Its newest report whose verdict is pass.
    pub last_pass: Option<&'a Report>,
    /// It has a cadence and no pass within it (or none at all).
    pub due: bool,
}

/// Where drill `name` stands at `now` (seconds since the Unix epoch), from `reports` (any
/// order, any drill). A pass's age counts from when its run started.
pub fn standing<'a>(name: &str, drill: &Drill, reports: &'a [Report], now: f64) -> Standing<'a> {
    let last_pass = reports
        .iter()
        .filter(|r| r.drill == name && r.verdict == Verdict::Pass)
        .filter_map(|r| Some((resurgo_spec::units::parse_rfc3339(&r.started).ok()?, r)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let due = match (drill.cadence, last_pass) {
        (Some(cadence), Some((started, _))) => now - started > cadence.0.as_secs_f64(),
        (Some(_), None) => true,
        (None, _) => false,
    };
    Standing {
        last_pass: last_pass.map(|(_, r)| r),
        due,
    }
}

/// For each service some drill of `system` covers (its scope's services), the drill to show:
/// the first due one in the spec's order, else the one whose pass is newest, else the first.
pub fn services(system: &System, reports: &[Report], now: f64) -> BTreeMap<String, ServiceDrill> {
    let mut shown: BTreeMap<String, ServiceDrill> = BTreeMap::new();
    for (name, drill) in &system.drills {
        let standing = standing(name, drill, reports, now);
        let candidate = ServiceDrill {
            drill: name.clone(),
            cadence: drill.cadence.map(|c| c.to_string()),
            last_pass: standing.last_pass.map(|r| r.started.clone()),
            run: standing.last_pass.map(|r| r.run.clone()),
            rto_s: standing.last_pass.and_then(|r| r.rto.as_ref()?.measured_s),
            rpo_s: standing.last_pass.and_then(|r| r.rpo.as_ref()?.seconds),
            due: standing.due,
        };
        for service in drill.scope.services(system) {
            match shown.get(&service) {
                None => {
                    shown.insert(service, candidate.clone());
                }
                Some(held) if held.due => {}
                Some(held) if candidate.due || newer(&candidate, held) => {
                    shown.insert(service, candidate.clone());
                }
                Some(_) => {}
            }
        }
    }
    shown
}

/// Whether `a` passed more recently than `b` (a pass is newer than none).
fn newer(a: &ServiceDrill, b: &ServiceDrill) -> bool {
    let at = |d: &ServiceDrill| {
        d.last_pass
            .as_deref()
            .and_then(|t| resurgo_spec::units::parse_rfc3339(t).ok())
    };
    match (at(a), at(b)) {
        (Some(a), Some(b)) => a > b,
        (Some(_), None) => true,
        _ => false,
    }
}

/// Gives each service of `site` (active or standby instance) its drill from `by_service`.
pub fn fill(site: &mut SiteStatus, by_service: &BTreeMap<String, ServiceDrill>) {
    for s in &mut site.services {
        s.drill = by_service.get(&s.service).cloned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system() -> System {
        let text = "apiVersion: resurgo.dev/v1alpha1
sites:
  a: { provider: local, address: 127.0.1.1, capacity: { cpu: 4, memory: 4Gi } }
  b: { provider: local, address: 127.0.2.1, capacity: { cpu: 4, memory: 4Gi } }
services:
  web: { command: web, site: a, standby: [b] }
  api: { command: api, site: a, standby: [b] }
  batch: { command: batch, site: b }
objectives: { rto: 30s, rpo: 5m }
drills:
  kill-web:
    scope: { service: web }
    faults: [kill: web]
    mode: live
    stop: [unavailable_for: 1m]
    cadence: 30d
  lose-a:
    scope: { site: a }
    faults: [stop_site: a]
    mode: live
    stop: [unavailable_for: 1m]
    cadence: 7d
"
        .to_string();
        match resurgo_spec::load(
            vec![resurgo_spec::SourceFile {
                name: "s.yaml".into(),
                text,
            }],
            &[],
        ) {
            Ok(l) => l.system,
            Err(e) => panic!("{e}"),
        }
    }

    fn report(drill: &str, run: &str, started: &str, verdict: Verdict, rto: f64) -> Report {
        let mut r: Report = serde_json::from_value(serde_json::json!({
            "schema": resurgo_drill::REPORT_SCHEMA,
            "run": run,
            "drill": drill,
            "mode": "live",
            "scope": { "kind": "service", "targets": ["web"] },
            "spec_commit": "folder:abc",
            "resurgo_version": "0",
            "operator": "me@here",
            "started": started,
            "ended": null,
            "deadline_s": 600.0,
            "outcome": "completed",
            "timeline": [],
            "phases": [],
            "rto": { "measured_s": rto, "objective_s": 30.0, "detect_s": null, "decide_s": null,
                     "preempt_s": null, "execute_s": null, "propagate_s": null },
            "rpo": { "objective_s": 300.0, "writes_lost": 0, "seconds": 0.0, "datasets": [] },
            "probes": [],
            "isolation": null,
            "data_checks": [],
            "faults": [],
            "leftovers": [],
            "verdict": "pass",
            "findings": []
        }))
        .unwrap();
        r.verdict = verdict;
        r
    }

    fn at(text: &str) -> f64 {
        resurgo_spec::units::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn a_drill_is_due_without_a_pass_within_its_cadence() {
        let sys = system();
        let kill = &sys.drills["kill-web"];
        let reports = [
            report("kill-web", "r1", "2026-05-01T00:00:00Z", Verdict::Pass, 2.0),
            report("kill-web", "r2", "2026-05-20T00:00:00Z", Verdict::Fail, 99.0),
            report("lose-a", "r3", "2026-05-25T00:00:00Z", Verdict::Pass, 9.0),
        ];
        let s = standing("kill-web", kill, &reports, at("2026-05-25T00:00:00Z"));
        assert_eq!(s.last_pass.unwrap().run, "r1", "a failed run is no pass");
        assert!(!s.due, "24 days within 30");
        let s = standing("kill-web", kill, &reports, at("2026-06-01T00:00:01Z"));
        assert!(s.due, "31 days past 30");
        assert!(standing("kill-web", kill, &[], 0.0).due, "never passed, with a cadence");
        let mut none = kill.clone();
        none.cadence = None;
        assert!(!standing("kill-web", &none, &[], 0.0).due, "no cadence: never due");
    }

    #[test]
    fn each_service_shows_a_due_drill_first_else_its_newest_pass() {
        let sys = system();
        let now = at("2026-05-26T00:00:00Z");
        // kill-web passed a day ago; lose-a (web and api, 7d) passed 3 days ago.
        let reports = [
            report("kill-web", "r1", "2026-05-25T00:00:00Z", Verdict::Pass, 2.0),
            report("lose-a", "r2", "2026-05-23T00:00:00Z", Verdict::Pass, 9.0),
        ];
        let shown = services(&sys, &reports, now);
        assert_eq!(shown["web"].drill, "kill-web", "the newest pass");
        assert_eq!(shown["web"].rto_s, Some(2.0));
        assert_eq!(shown["web"].rpo_s, Some(0.0));
        assert_eq!(shown["web"].cadence.as_deref(), Some("30d"));
        assert_eq!(shown["api"].drill, "lose-a");
        assert!(!shown["api"].due);
        assert!(!shown.contains_key("batch"), "no drill covers batch");
        // Ten days later lose-a is due (7d): it is what web and api show.
        let shown = services(&sys, &reports, at("2026-06-02T00:00:00Z"));
        assert_eq!(shown["web"].drill, "lose-a");
        assert!(shown["web"].due);
        assert_eq!(shown["web"].run.as_deref(), Some("r2"));
        // Never run: due, nothing measured.
        let shown = services(&sys, &[], now);
        assert!(shown["web"].due);
        assert_eq!(shown["web"].drill, "kill-web", "the first due one");
        assert_eq!(shown["web"].last_pass, None);
    }
}
