//! Recovery plans: validation, cycles named, waves, checklist, critical-path estimate.

use std::time::Duration;

use resurgo_runbook::{PlanError, PlanKind, RecoveryPlan, StepSpec};

fn step(name: &str, deps: &[&str], est_secs: u64) -> StepSpec {
    let mut s = StepSpec::new(name, Duration::from_secs(60)).after(deps);
    s.estimate = Duration::from_secs(est_secs);
    s
}

fn plan(steps: Vec<StepSpec>) -> RecoveryPlan {
    RecoveryPlan {
        id: "failover-shop".into(),
        kind: PlanKind::Failover,
        epoch: 3,
        steps,
    }
}

fn names(waves: &[Vec<&StepSpec>]) -> Vec<Vec<String>> {
    waves
        .iter()
        .map(|w| w.iter().map(|s| s.name.clone()).collect())
        .collect()
}

#[test]
fn waves_group_steps_whose_dependencies_are_done_keeping_plan_order() {
    let p = plan(vec![
        step("switch-route", &["promote-db", "start-app"], 1),
        step("fence-old-primary", &[], 1),
        step("promote-db", &["fence-old-primary"], 1),
        step("start-app", &["fence-old-primary"], 1),
        step("notify", &[], 1),
    ]);
    assert_eq!(
        names(&p.waves().unwrap()),
        vec![
            vec!["fence-old-primary", "notify"],
            vec!["promote-db", "start-app"],
            vec!["switch-route"],
        ]
    );
}

#[test]
fn unknown_dependency_is_named() {
    let p = plan(vec![step("a", &["nope"], 1)]);
    assert_eq!(
        p.validate(),
        Err(PlanError::UnknownDependency {
            step: "a".into(),
            dependency: "nope".into()
        })
    );
    assert_eq!(
        p.validate().unwrap_err().to_string(),
        "step `a` depends on unknown step `nope`"
    );
}

#[test]
fn a_cycle_is_named_in_execution_order() {
    let p = plan(vec![
        step("start", &[], 1),
        step("a", &["start", "c"], 1),
        step("b", &["a"], 1),
        step("c", &["b"], 1),
    ]);
    let err = p.validate().unwrap_err();
    let PlanError::Cycle(cycle) = &err else { panic!("{err}") };
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4);
    // Every adjacent pair is "runs before": the second depends on the first.
    for pair in cycle.windows(2) {
        assert!(p.step(&pair[1]).unwrap().depends_on.contains(&pair[0]), "{err}");
    }
    assert!(err.to_string().starts_with("dependency cycle: "), "{err}");
}

#[test]
fn self_dependency_is_a_cycle() {
    let p = plan(vec![step("a", &["a"], 1)]);
    assert_eq!(p.validate(), Err(PlanError::Cycle(vec!["a".into(), "a".into()])));
}

#[test]
fn duplicates_empty_plans_and_zero_timeouts_are_refused() {
    assert_eq!(
        plan(vec![step("a", &[], 1), step("a", &[], 1)]).validate(),
        Err(PlanError::DuplicateStep("a".into()))
    );
    assert_eq!(plan(vec![]).validate(), Err(PlanError::NoSteps("failover-shop".into())));
    let mut s = step("a", &[], 1);
    s.timeout = Duration::ZERO;
    assert_eq!(
        plan(vec![s]).validate(),
        Err(PlanError::ZeroTimeout { step: "a".into() })
    );
}

#[test]
fn estimate_is_the_critical_path_not_the_sum() {
    let p = plan(vec![
        step("fence", &[], 10),
        step("promote", &["fence"], 60),
        step("warm-cache", &["fence"], 300),
        step("switch", &["promote", "warm-cache"], 5),
        step("notify", &[], 1),
    ]);
    assert_eq!(p.estimate().unwrap(), Duration::from_secs(315));
    let (_, path) = p.critical_path().unwrap();
    assert_eq!(path, ["fence", "warm-cache", "switch"]);
}

#[test]
fn checklist_lists_waves_owners_and_estimates() {
    let mut fence = step("fence", &[], 30);
    fence.owner = "dba on call".into();
    fence.description = "Stop writes at the old primary".into();
    let mut switch = step("switch", &["fence"], 90);
    switch.owner = "network".into();
    let text = plan(vec![fence, switch]).render_checklist().unwrap();
    let expected = "\
# Failover `failover-shop` (epoch 3)

Estimated duration: 2m along the critical path (fence → switch).

## Wave 1

- [ ] **fence** — Stop writes at the old primary  
  owner: dba on call · estimate: 30s · timeout: 1m

## Wave 2

- [ ] **switch**  
  owner: network · estimate: 1m 30s · timeout: 1m · after: fence

";
    assert_eq!(text, expected);
}

#[test]
fn plan_round_trips_through_json_with_millisecond_durations() {
    let p = plan(vec![step("a", &[], 2)]);
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["steps"][0]["timeout"], 60_000);
    assert_eq!(json["kind"], "failover");
    let back: RecoveryPlan = serde_json::from_value(json).unwrap();
    assert_eq!(back, p);
}
