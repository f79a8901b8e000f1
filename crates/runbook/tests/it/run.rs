//! The runner in one process: happy path, failure and compensation, timeouts, resume, epochs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use resurgo_runbook::journal::Phase;
use resurgo_runbook::{
    Check, Journal, PlanKind, RecoveryPlan, RunError, RunOutcome, RunReport, Runner, Step, StepContext, StepError,
    StepOutcome, StepSpec, Steps,
};

use crate::util::{calls, diamond, file_steps, journal_path, ledger, taken, EPOCH};

const ABCD: [&str; 4] = ["a", "b", "c", "d"];

fn phases(runs: &std::path::Path, run: &str) -> Vec<(String, Phase)> {
    Journal::read(&journal_path(runs, run))
        .unwrap()
        .records
        .into_iter()
        .map(|r| (r.step.unwrap_or_else(|| "<run>".into()), r.phase))
        .collect()
}

fn outcomes(report: &RunReport) -> Vec<(String, StepOutcome)> {
    report
        .steps
        .iter()
        .map(|s| (s.name.clone(), s.outcome.clone()))
        .collect()
}

#[test]
fn happy_path_runs_in_dependency_order_and_journals_every_phase() {
    let tmp = tempfile::tempdir().unwrap();
    let log = calls();
    let steps = file_steps(tmp.path(), &ABCD, &log, None, |_| {});
    let report = Runner::new(tmp.path().join("runs"))
        .start_as("r1", &diamond(), &steps)
        .unwrap();

    assert_eq!(report.outcome, RunOutcome::Succeeded);
    assert!(
        report.steps.iter().all(|s| s.outcome == StepOutcome::Done),
        "{report:?}"
    );
    assert!(report.steps.iter().all(|s| s.started.is_some() && s.millis.is_some()));
    assert_eq!(ledger(tmp.path()), "a\nb\nc\nd\n");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("effects/d")).unwrap(),
        "epoch=7"
    );
    let expected_calls: Vec<String> = ABCD
        .iter()
        .flat_map(|n| [format!("check {n}"), format!("act {n}"), format!("verify {n}")])
        .collect();
    assert_eq!(taken(&log), expected_calls);

    let journal = phases(&tmp.path().join("runs"), "r1");
    let mut expected = vec![("<run>".to_string(), Phase::Planned)];
    for n in ABCD {
        for p in [
            Phase::Started,
            Phase::Checked,
            Phase::Acted,
            Phase::Verified,
            Phase::Finished,
        ] {
            expected.push((n.to_string(), p));
        }
    }
    expected.push(("<run>".into(), Phase::Finished));
    assert_eq!(journal, expected);
    let records = Journal::read(&journal_path(&tmp.path().join("runs"), "r1"))
        .unwrap()
        .records;
    assert!(records.iter().all(|r| r.epoch == EPOCH && r.run == "r1"));
    assert!(records.iter().enumerate().all(|(i, r)| r.seq == i as u64 + 1));
    assert!(
        records[0].time.ends_with('Z') && records[0].time.len() == 24,
        "{}",
        records[0].time
    );

    // The stored plan is the plan, and the report serializes.
    assert_eq!(Journal::load_plan(&tmp.path().join("runs"), "r1").unwrap(), diamond());
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["outcome"]["status"], "succeeded");
    assert_eq!(json["steps"][0]["outcome"]["status"], "done");
}

#[test]
fn a_step_already_in_place_is_checked_and_verified_but_not_acted_nor_compensated() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("effects")).unwrap();
    std::fs::write(tmp.path().join("effects/a"), "before").unwrap();
    std::fs::write(tmp.path().join("ledger"), "a\n").unwrap();
    let log = calls();
    let steps = file_steps(tmp.path(), &ABCD, &log, None, |s| s.fail_verify = s.name == "d");
    let report = Runner::new(tmp.path().join("runs"))
        .start_as("r1", &diamond(), &steps)
        .unwrap();
    assert_eq!(&taken(&log)[..2], ["check a", "verify a"]);
    assert_eq!(report.steps[0].outcome, StepOutcome::AlreadyDone);
    // The run did not make `a`, so aborting does not undo it.
    assert_eq!(std::fs::read_to_string(tmp.path().join("effects/a")).unwrap(), "before");
    assert!(!ledger(tmp.path()).contains("undo a"));
}

#[test]
fn failure_compensates_touched_steps_newest_first_and_a_failed_compensation_does_not_stop_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let log = calls();
    let steps = file_steps(tmp.path(), &ABCD, &log, None, |s| {
        s.fail_verify = s.name == "d";
        s.fail_compensate = s.name == "c";
    });
    let runs = tmp.path().join("runs");
    let report = Runner::new(&runs).start_as("r1", &diamond(), &steps).unwrap();

    assert_eq!(
        report.outcome,
        RunOutcome::Aborted {
            step: "d".into(),
            error: "verification failed: d is not serving".into()
        }
    );
    let compensations: Vec<String> = taken(&log)
        .into_iter()
        .filter(|c| c.starts_with("compensate"))
        .collect();
    assert_eq!(
        compensations,
        ["compensate d", "compensate c", "compensate b", "compensate a"]
    );
    assert_eq!(ledger(tmp.path()), "a\nb\nc\nd\nundo d\nundo b\nundo a\n");
    assert!(tmp.path().join("effects/c").exists());
    assert!(!tmp.path().join("effects/a").exists());
    assert_eq!(
        outcomes(&report),
        vec![
            ("a".into(), StepOutcome::Compensated),
            ("b".into(), StepOutcome::Compensated),
            (
                "c".into(),
                StepOutcome::CompensationFailed {
                    error: "compensation failed: cannot undo c".into()
                }
            ),
            ("d".into(), StepOutcome::Compensated),
        ]
    );
    let journal = phases(&runs, "r1");
    assert_eq!(journal.last().unwrap(), &("<run>".to_string(), Phase::Aborted));

    // Resuming an aborted run changes nothing and reports the same.
    let again = Runner::new(&runs).resume("r1", EPOCH, &steps).unwrap();
    assert_eq!(again, report);
    assert_eq!(phases(&runs, "r1"), journal);
}

#[test]
fn a_step_past_its_timeout_fails_and_is_compensated_with_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let log = calls();
    let steps = file_steps(tmp.path(), &ABCD, &log, None, |s| s.hang = s.name == "b");
    let mut plan = diamond();
    plan.steps[1].timeout = Duration::from_millis(300);
    let runs = tmp.path().join("runs");
    let report = Runner::new(&runs)
        .cancel_grace(Duration::from_secs(10))
        .start_as("r1", &plan, &steps)
        .unwrap();
    let RunOutcome::Aborted { step, error } = &report.outcome else {
        panic!("{report:?}")
    };
    // What the step said it waited for ends the reason.
    assert_eq!(
        (step.as_str(), error.as_str()),
        ("b", "timed out after 300ms; last: a reply that never comes")
    );
    let b = &report.steps[1];
    assert!(b.millis.unwrap() >= 300, "{b:?}");
    assert_eq!(ledger(tmp.path()), "a\nundo b\nundo a\n");
    let log = taken(&log);
    assert!(!log.contains(&"check c".to_string()), "{log:?}");
    // No record of the abandoned attempt follows its `failed`.
    let journal = phases(&runs, "r1");
    let failed = journal
        .iter()
        .position(|e| e == &("b".to_string(), Phase::Failed))
        .unwrap();
    assert_eq!(journal[failed + 1], ("b".to_string(), Phase::Compensating));
}

#[test]
fn a_step_that_ignores_cancellation_does_not_hold_the_run() {
    /// Blocks in `act` until the test lets it go, whatever the context says.
    struct Stuck(Mutex<mpsc::Receiver<()>>);
    impl Step for Stuck {
        fn check(&self, _: &StepContext) -> Result<Check, StepError> {
            Ok(Check::Ready)
        }
        fn act(&self, _: &StepContext) -> Result<(), StepError> {
            let _ = self.0.lock().unwrap().recv();
            Ok(())
        }
        fn verify(&self, _: &StepContext) -> Result<(), StepError> {
            Ok(())
        }
        fn compensate(&self, _: &StepContext) -> Result<(), StepError> {
            Ok(())
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let (release, rx) = mpsc::channel();
    let mut steps = file_steps(tmp.path(), &ABCD, &calls(), None, |_| {});
    steps.insert("a".into(), Arc::new(Stuck(Mutex::new(rx))));
    let mut plan = diamond();
    plan.steps[0].timeout = Duration::from_millis(200);
    let report = Runner::new(tmp.path().join("runs"))
        .cancel_grace(Duration::from_millis(100))
        .start_as("r1", &plan, &steps)
        .unwrap();
    let RunOutcome::Aborted { error, .. } = &report.outcome else {
        panic!("{report:?}")
    };
    assert_eq!(error, "timed out after 200ms; still running 100ms after cancellation");
    release.send(()).unwrap();
}

#[test]
fn resume_skips_finished_steps_and_reruns_a_started_one_from_check() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let log = calls();
    let steps = file_steps(tmp.path(), &ABCD, &log, None, |_| {});
    Runner::new(&runs).start_as("r1", &diamond(), &steps).unwrap();
    taken(&log);
    // Simulate a crash right after `b` acted: keep the journal up to b's `acted` record, and
    // the world as it was then.
    std::fs::remove_file(tmp.path().join("effects/c")).unwrap();
    std::fs::remove_file(tmp.path().join("effects/d")).unwrap();
    std::fs::write(tmp.path().join("ledger"), "a\nb\n").unwrap();
    let path = journal_path(&runs, "r1");
    let text = std::fs::read_to_string(&path).unwrap();
    let keep: Vec<&str> = text
        .lines()
        .take_while(|l| !(l.contains("\"step\":\"b\"") && l.contains("\"verified\"")))
        .collect();
    std::fs::write(&path, keep.join("\n") + "\n").unwrap();
    assert_eq!(Runner::new(&runs).report("r1").unwrap().outcome, RunOutcome::Incomplete);

    let report = Runner::new(&runs).resume("r1", EPOCH, &steps).unwrap();
    assert_eq!(report.outcome, RunOutcome::Succeeded);
    // `a` is not touched again; `b` is re-checked, found in place, verified, not re-acted.
    assert_eq!(
        taken(&log),
        ["check b", "verify b", "check c", "act c", "verify c", "check d", "act d", "verify d"]
    );
    assert_eq!(ledger(tmp.path()), "a\nb\nc\nd\n");
    // `b` acted in this run before the crash, so it counts as done by the run.
    assert!(
        report.steps.iter().all(|s| s.outcome == StepOutcome::Done),
        "{report:?}"
    );
}

#[test]
fn resume_with_a_lower_epoch_is_refused_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let steps = file_steps(tmp.path(), &ABCD, &calls(), None, |_| {});
    Runner::new(&runs).start_as("r1", &diamond(), &steps).unwrap();
    let path = journal_path(&runs, "r1");
    // Cut the run short, leaving a torn line too: neither may be touched by a refused resume.
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines[..5].join("\n") + "\n{\"seq\":6,\"ti";
    std::fs::write(&path, &cut).unwrap();

    let err = Runner::new(&runs).resume("r1", EPOCH - 1, &steps).unwrap_err();
    assert!(
        matches!(
            err,
            RunError::StaleEpoch {
                offered: 6,
                journal: 7,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert_eq!(
        err.to_string(),
        "run `r1` is stale: offered epoch 6, its journal holds epoch 7"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), cut);

    // A newer epoch may resume; what follows carries it.
    let report = Runner::new(&runs).resume("r1", EPOCH + 1, &steps).unwrap();
    assert_eq!(report.outcome, RunOutcome::Succeeded);
    assert_eq!(report.epoch, EPOCH + 1);
    let records = Journal::read(&path).unwrap().records;
    assert!(records[5..].iter().all(|r| r.epoch == EPOCH + 1));
}

#[test]
fn a_plan_with_a_missing_step_implementation_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let steps = file_steps(tmp.path(), &["a", "b", "c"], &calls(), None, |_| {});
    let err = Runner::new(tmp.path().join("runs"))
        .start_as("r1", &diamond(), &steps)
        .unwrap_err();
    assert_eq!(err.to_string(), "step `d` of the plan has no implementation");
    assert!(!tmp.path().join("runs").exists());
}

#[test]
fn a_run_id_cannot_be_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let steps = file_steps(tmp.path(), &ABCD, &calls(), None, |_| {});
    let runner = Runner::new(tmp.path().join("runs"));
    runner.start_as("r1", &diamond(), &steps).unwrap();
    let err = runner.start_as("r1", &diamond(), &steps).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    // A generated id is `<plan>-e<epoch>-<millis>`.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let report = runner
        .start(&diamond(), &file_steps(&other, &ABCD, &calls(), None, |_| {}))
        .unwrap();
    assert!(report.run.starts_with("failover-db-e7-"), "{}", report.run);
    assert_eq!(report.outcome, RunOutcome::Succeeded);
}

/// `NotReady` until `ready_after` checks have been made; `act` and the rest succeed.
struct Waits {
    checks: AtomicUsize,
    ready_after: usize,
}

impl Step for Waits {
    fn check(&self, _: &StepContext) -> Result<Check, StepError> {
        let n = self.checks.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(if n >= self.ready_after {
            Check::Ready
        } else {
            Check::NotReady(format!("replica lag after {n} checks"))
        })
    }
    fn act(&self, _: &StepContext) -> Result<(), StepError> {
        Ok(())
    }
    fn verify(&self, _: &StepContext) -> Result<(), StepError> {
        Ok(())
    }
    fn compensate(&self, _: &StepContext) -> Result<(), StepError> {
        Ok(())
    }
}

fn one_step_plan(timeout: Duration) -> RecoveryPlan {
    RecoveryPlan {
        id: "wait".into(),
        kind: PlanKind::Drill,
        epoch: 1,
        steps: vec![StepSpec::new("promote", timeout)],
    }
}

#[test]
fn not_ready_is_checked_again_until_ready() {
    let tmp = tempfile::tempdir().unwrap();
    let step = Arc::new(Waits {
        checks: Default::default(),
        ready_after: 3,
    });
    let steps: Steps = [("promote".to_string(), step.clone() as Arc<dyn Step>)].into();
    let report = Runner::new(tmp.path())
        .start_as("r", &one_step_plan(Duration::from_secs(30)), &steps)
        .unwrap();
    assert_eq!(report.outcome, RunOutcome::Succeeded);
    assert_eq!(step.checks.load(Ordering::SeqCst), 3);
}

#[test]
fn not_ready_until_the_timeout_fails_with_the_last_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let step = Arc::new(Waits {
        checks: Default::default(),
        ready_after: usize::MAX,
    });
    let steps: Steps = [("promote".to_string(), step as Arc<dyn Step>)].into();
    let report = Runner::new(tmp.path())
        .start_as("r", &one_step_plan(Duration::from_millis(300)), &steps)
        .unwrap();
    let RunOutcome::Aborted { step, error } = &report.outcome else {
        panic!("{report:?}")
    };
    assert_eq!(step, "promote");
    // Either the step's back-off or the runner notices the deadline first; both say why.
    assert!(error.starts_with("timed out after 300ms"), "{error}");
}

#[test]
fn a_failure_past_the_point_of_no_return_stops_without_compensating_and_a_resume_finishes_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let log = calls();
    let mut plan = diamond();
    // `b` cannot be undone (a promotion, say); `d` fails after it acted.
    plan.steps[1] = plan.steps[1].clone().irreversible();
    let failing = file_steps(tmp.path(), &ABCD, &log, None, |s| s.fail_verify = s.name == "d");
    let runs = tmp.path().join("runs");
    let report = Runner::new(&runs).start_as("r1", &plan, &failing).unwrap();
    assert_eq!(
        report.outcome,
        RunOutcome::Stopped {
            step: "d".into(),
            error: "verification failed: d is not serving".into()
        }
    );
    assert!(
        !taken(&log).iter().any(|c| c.starts_with("compensate")),
        "nothing is compensated past the point of no return: {:?}",
        taken(&log)
    );
    assert_eq!(
        phases(&runs, "r1").last().unwrap(),
        &("<run>".to_string(), Phase::Stopped)
    );

    // The cause fixed, the resume retries from the failed step and finishes.
    let fixed = file_steps(tmp.path(), &ABCD, &log, None, |_| {});
    let report = Runner::new(&runs).resume("r1", EPOCH, &fixed).unwrap();
    assert_eq!(report.outcome, RunOutcome::Succeeded);
    assert_eq!(ledger(tmp.path()), "a\nb\nc\nd\n");
    assert_eq!(
        RunOutcome::Stopped {
            step: "d".into(),
            error: "lost".into()
        }
        .to_string(),
        "stopped at step `d`, past the point of no return: lost; nothing was undone"
    );
}

/// People read outcomes as sentences, not as Rust `Debug` (issue 8, item 9).
#[test]
fn outcomes_read_as_sentences() {
    let tmp = tempfile::tempdir().unwrap();
    let steps = file_steps(tmp.path(), &ABCD, &calls(), None, |s| {
        s.fail_verify = s.name == "d";
        s.fail_compensate = s.name == "c";
    });
    let report = Runner::new(tmp.path().join("runs"))
        .start_as("r1", &diamond(), &steps)
        .unwrap();
    assert_eq!(
        report.outcome.to_string(),
        "aborted at step `d`: verification failed: d is not serving; \
         what the run had changed was undone as far as it could be"
    );
    let lines: Vec<String> = report
        .steps
        .iter()
        .map(|s| format!("{}: {}", s.name, s.outcome))
        .collect();
    assert_eq!(
        lines,
        [
            "a: undone",
            "b: undone",
            "c: could not be undone: cannot undo c",
            "d: undone"
        ]
    );
    assert_eq!(RunOutcome::Succeeded.to_string(), "succeeded");
    assert_eq!(StepOutcome::AlreadyDone.to_string(), "already done");
    assert_eq!(Check::NotReady("lag 3s".into()).to_string(), "not ready: lag 3s");
}
