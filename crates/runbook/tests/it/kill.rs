//! DESIGN invariant 3: a run killed at any point resumes to the same end state.
//!
//! The test binary re-executes itself as a child that runs only `kill::__child_entry` (ignored
//! in a normal run, run with `--ignored`; it does nothing unless `RUNBOOK_CHILD_DIR` is set).
//! The child runs the plan with a gate that stops it at its N-th boundary — after each journal
//! record, and inside steps between an effect and the record of it — and writes a marker; the
//! parent waits for the marker, kills the child with SIGKILL (`Child::kill`), resumes the run
//! in-process, and compares files and journal with an uninterrupted run. For every N, in a
//! succeeding and in an aborting run, and once more with the resume itself killed a few
//! boundaries in before a final resume.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use resurgo_runbook::journal::Phase;
use resurgo_runbook::{Journal, RunOutcome, Runner, StepOutcome};

use crate::util::{calls, diamond, file_steps, journal_path, ledger, wait_for, Gate, EPOCH};

const ABCD: [&str; 4] = ["a", "b", "c", "d"];
const RUN: &str = "run-1";

fn steps(root: &Path, scenario: &str, gate: Option<std::sync::Arc<Gate>>) -> resurgo_runbook::run::Steps {
    let failing = scenario == "fail";
    file_steps(root, &ABCD, &calls(), gate, |s| {
        s.fail_verify = failing && s.name == "c"
    })
}

/// Not a test of its own: the body of the child process (see the module doc). Ignored, so a
/// normal run does not count it as a passing test; [`run_child`] runs it with `--ignored`.
#[test]
#[ignore = "helper entry: run by another test as its child process"]
fn __child_entry() {
    let Ok(root) = std::env::var("RUNBOOK_CHILD_DIR") else {
        return;
    };
    let root = Path::new(&root);
    let scenario = std::env::var("RUNBOOK_CHILD_SCENARIO").unwrap();
    let stop_at: usize = std::env::var("RUNBOOK_CHILD_STOP_AT").unwrap().parse().unwrap();
    let resume = std::env::var("RUNBOOK_CHILD_RESUME").is_ok();
    let gate = Gate::new(stop_at, root.join("paused"));
    let steps = steps(root, &scenario, Some(gate.clone()));
    let runner = Runner::new(root.join("runs")).observer(gate.observer());
    if resume {
        runner.resume(RUN, EPOCH, &steps).unwrap();
    } else {
        runner.start_as(RUN, &diamond(), &steps).unwrap();
    }
    // Reaching here means the gate never stopped the run: the parent reports it.
    std::fs::write(root.join("completed"), "").unwrap();
}

/// What must be the same however often the run was interrupted.
#[derive(Debug, PartialEq)]
struct EndState {
    ledger: String,
    effects: Vec<(String, String)>,
    outcome: RunOutcome,
    steps: Vec<(String, StepOutcome)>,
    /// Journal records that settle something, in order: a step finished, failed, compensated;
    /// the run finished or aborted. Records of interrupted attempts (a second `started`) vary.
    milestones: Vec<(Option<String>, Phase, String)>,
}

fn end_state(root: &Path) -> EndState {
    let runs = root.join("runs");
    let report = Runner::new(&runs).report(RUN).unwrap();
    let mut effects: Vec<(String, String)> = std::fs::read_dir(root.join("effects"))
        .map(|d| {
            d.map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect()
        })
        .unwrap_or_default();
    effects.sort();
    let journal = Journal::read(&journal_path(&runs, RUN)).unwrap();
    assert!(journal.torn.is_none());
    for (i, r) in journal.records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "journal seq must be contiguous");
        assert_eq!(r.epoch, EPOCH);
    }
    let milestones = journal
        .records
        .into_iter()
        .filter(|r| {
            matches!(
                r.phase,
                Phase::Finished | Phase::Failed | Phase::Compensated | Phase::Aborted
            )
        })
        .map(|r| (r.step, r.phase, r.detail))
        .collect();
    EndState {
        ledger: ledger(root),
        effects,
        outcome: report.outcome,
        steps: report.steps.into_iter().map(|s| (s.name, s.outcome)).collect(),
        milestones,
    }
}

fn kill_at_every_boundary(scenario: &str, twice: bool) {
    // The uninterrupted run, in-process, counting its boundaries.
    let reference_dir = tempfile::tempdir().unwrap();
    let counter = Gate::counting();
    Runner::new(reference_dir.path().join("runs"))
        .observer(counter.observer())
        .start_as(
            RUN,
            &diamond(),
            &steps(reference_dir.path(), scenario, Some(counter.clone())),
        )
        .unwrap();
    let reference = end_state(reference_dir.path());
    let labels = counter.labels();
    assert!(labels.len() >= 25, "too few boundaries: {labels:?}");

    for (i, label) in labels.iter().enumerate() {
        let n = i + 1;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let paused_at = run_child(root, scenario, n, false).expect("the run ended before its last boundary");
        assert_eq!(
            &paused_at, label,
            "the child's boundaries differ from the reference run's"
        );

        if twice {
            // Kill the resume too, a few boundaries in (it may also finish first).
            std::fs::remove_file(root.join("paused")).unwrap();
            run_child(root, scenario, n % 5 + 1, true);
        }

        let report = Runner::new(root.join("runs"))
            .resume(RUN, EPOCH, &steps(root, scenario, None))
            .unwrap_or_else(|e| panic!("resume after a kill at boundary {n} ({label}): {e}"));
        assert_eq!(report.outcome, reference.outcome, "killed at boundary {n} ({label})");
        assert_eq!(end_state(root), reference, "killed at boundary {n} ({label})");
    }
}

#[test]
fn killed_at_every_boundary_a_run_resumes_to_the_same_end_state() {
    kill_at_every_boundary("ok", false);
}

#[test]
fn killed_at_every_boundary_an_aborting_run_still_compensates_everything_once() {
    kill_at_every_boundary("fail", false);
}

#[test]
fn killed_again_while_resuming_a_run_still_ends_the_same() {
    kill_at_every_boundary("ok", true);
    kill_at_every_boundary("fail", true);
}

/// Runs the child (a start, or a resume) until it pauses at boundary `stop_at`, then kills it
/// with SIGKILL; returns the boundary's label, or `None` if the run completed first.
fn run_child(root: &Path, scenario: &str, stop_at: usize, resume: bool) -> Option<String> {
    let stderr = std::fs::File::create(root.join("child.stderr")).unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "kill::__child_entry",
        "--exact",
        "--ignored",
        "--test-threads=1",
        "--nocapture",
    ])
    .env("RUNBOOK_CHILD_DIR", root)
    .env("RUNBOOK_CHILD_SCENARIO", scenario)
    .env("RUNBOOK_CHILD_STOP_AT", stop_at.to_string())
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(stderr);
    if resume {
        cmd.env("RUNBOOK_CHILD_RESUME", "1");
    }
    let mut child = cmd.spawn().unwrap();
    let mut exited = None;
    wait_for(
        Duration::from_secs(60),
        &format!("child to reach boundary {stop_at}"),
        || {
            if root.join("paused").exists() {
                return true;
            }
            exited = child.try_wait().unwrap();
            exited.is_some()
        },
    );
    if !root.join("paused").exists() {
        let status = exited.unwrap();
        let completed = root.join("completed").exists();
        assert!(
            status.success() && completed,
            "child exited ({status}) before boundary {stop_at}; stderr:\n{}",
            std::fs::read_to_string(root.join("child.stderr")).unwrap_or_default()
        );
        std::fs::remove_file(root.join("completed")).unwrap();
        return None;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!root.join("completed").exists());
    Some(std::fs::read_to_string(root.join("paused")).unwrap())
}
