//! Sample reports for the tests: one where everything held (isolated and live), and one that
//! failed almost everywhere with hostile text in every field a runner copies from the world.

use crate::report::*;

/// An isolated drill that lost site `a` and passed every check.
pub fn passing() -> Report {
    Report {
        schema: REPORT_SCHEMA.into(),
        run: "drill-lose-a-20261130T101500Z".into(),
        drill: "lose-a".into(),
        mode: Mode::Isolated,
        scope: Scope {
            kind: ScopeKind::Site,
            targets: vec!["a".into()],
        },
        spec_commit: "3f2a9c1e".into(),
        resurgo_version: "0.1.0".into(),
        operator: "ops@bastion".into(),
        started: "2026-11-30T10:15:00Z".into(),
        ended: Some("2026-11-30T10:15:42Z".into()),
        deadline_s: 600.0,
        outcome: Outcome::Completed,
        timeline: vec![
            entry(0.0, "fault_injected", "site a stopped"),
            entry(1.5, "detected", "site a missed 3 heartbeats"),
            entry(2.0, "decided", "fail over to b"),
            entry(6.1, "promoted", "orders promoted at b"),
            entry(7.4, "route_switched", "web.test now points at b"),
            entry(8.1, "healthy", "web answers at b"),
            entry(30.0, "fault_reverted", "site a started again"),
            entry(41.0, "teardown", "sandbox removed"),
        ],
        phases: vec![
            phase(PhaseName::Detect, 0.0, 1.5),
            phase(PhaseName::Decide, 1.5, 2.0),
            phase(PhaseName::Execute, 2.0, 6.8),
            phase(PhaseName::Propagate, 6.8, 8.1),
            phase(PhaseName::Teardown, 30.0, 41.0),
        ],
        rto: Some(Rto {
            measured_s: Some(8.1),
            objective_s: 10.0,
            detect_s: Some(1.5),
            decide_s: Some(0.5),
            preempt_s: None,
            execute_s: Some(4.8),
            propagate_s: Some(1.3),
        }),
        rpo: Some(Rpo {
            objective_s: 5.0,
            writes_lost: Some(0),
            seconds: Some(0.0),
            datasets: vec![CanaryResult {
                dataset: "orders".into(),
                kind: "postgres".into(),
                site: "b".into(),
                acknowledged: 120,
                recovered: Some(120),
                writes_lost: Some(0),
                seconds: Some(0.0),
                detail: None,
            }],
        }),
        probes: vec![Probe {
            name: "web".into(),
            kind: ProbeKind::Route,
            target: "http://web.test/health".into(),
            attempts: 40,
            failures: 0,
            passed: true,
            detail: None,
        }],
        isolation: Some(Isolation {
            sandbox: "drill-lose-a".into(),
            attempts: vec![ConnectionAttempt {
                from: "web".into(),
                to: "10.0.0.1:5432".into(),
                reached: false,
                detail: "connection refused".into(),
            }],
        }),
        data_checks: vec![DataCheck {
            dataset: "orders".into(),
            site: "b".into(),
            method: "pg_amcheck".into(),
            passed: true,
            detail: None,
        }],
        faults: vec![FaultRecord {
            kind: "stop_site".into(),
            target: "a".into(),
            injected_at_s: Some(0.0),
            reverted_at_s: Some(30.0),
            undo: "resurgo set-up a".into(),
        }],
        leftovers: Vec::new(),
        verdict: Verdict::Fail,
        findings: Vec::new(),
    }
}

/// The same drill run live: no sandbox, so no isolation to prove.
pub fn passing_live() -> Report {
    Report {
        mode: Mode::Live,
        isolation: None,
        ..passing()
    }
}

/// Text a runner copies from the world (names, messages, errors) that would break a
/// rendering, or run in it, if not escaped.
pub const HOSTILE: &str = "<script>alert(1)</script>&\"'|*_`";

/// A failing isolated drill with [`HOSTILE`] in every text field.
pub fn hostile() -> Report {
    let h = |s: &str| format!("{s} {HOSTILE}");
    let mut r = passing();
    r.run = h("run");
    r.drill = h("drill");
    r.spec_commit = h("commit");
    r.operator = h("op");
    r.scope.targets = vec![h("a")];
    r.outcome = Outcome::Aborted;
    for e in &mut r.timeline {
        e.kind = h(&e.kind);
        e.message = h(&e.message);
    }
    r.phases.push(phase(PhaseName::Failback, 42.0, 50.0));
    r.phases.push(phase(PhaseName::Preempt, 1.8, 2.0));
    let rto = r.rto.as_mut().unwrap();
    rto.measured_s = Some(14.2);
    let rpo = r.rpo.as_mut().unwrap();
    rpo.writes_lost = None;
    rpo.datasets[0].dataset = h("orders");
    rpo.datasets[0].recovered = None;
    rpo.datasets[0].writes_lost = None;
    rpo.datasets[0].detail = Some(h("unreadable"));
    r.probes[0].name = h("web");
    r.probes[0].target = h("http://web.test/");
    r.probes[0].passed = false;
    r.probes[0].failures = 3;
    r.probes[0].detail = Some(h("HTTP 503"));
    r.probes.push(Probe {
        name: "prod".into(),
        kind: ProbeKind::Production,
        target: "https://shop.example/".into(),
        attempts: 40,
        failures: 0,
        passed: true,
        detail: None,
    });
    let iso = r.isolation.as_mut().unwrap();
    iso.sandbox = h("sandbox");
    iso.attempts[0].reached = true;
    iso.attempts[0].to = h("10.0.0.1:5432");
    iso.attempts[0].detail = h("connected");
    r.data_checks[0].dataset = h("orders");
    r.data_checks[0].passed = false;
    r.data_checks[0].detail = Some(h("corrupt"));
    r.faults[0].target = h("a");
    r.faults[0].undo = h("undo");
    r.leftovers.push(Leftover {
        kind: "process".into(),
        what: h("web (pid 4242)"),
        place: h("site b"),
    });
    r.judge();
    r
}

fn entry(at_s: f64, kind: &str, message: &str) -> TimelineEntry {
    TimelineEntry {
        at_s,
        kind: kind.into(),
        message: message.into(),
    }
}

fn phase(name: PhaseName, start_s: f64, end_s: f64) -> Phase {
    Phase { name, start_s, end_s }
}
