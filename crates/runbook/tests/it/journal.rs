//! The journal file: torn last lines are tolerated, reported and cut; corruption is refused.

use resurgo_runbook::journal::Phase;
use resurgo_runbook::{Journal, JournalError, PlanKind, RecoveryPlan, StepSpec};

fn plan() -> RecoveryPlan {
    RecoveryPlan {
        id: "p".into(),
        kind: PlanKind::Drill,
        epoch: 1,
        steps: vec![StepSpec::new("a", std::time::Duration::from_secs(1))],
    }
}

#[test]
fn a_torn_last_line_is_reported_and_cut_before_the_next_append() {
    let tmp = tempfile::tempdir().unwrap();
    let mut j = Journal::create(tmp.path(), "r", &plan()).unwrap();
    j.append(1, None, Phase::Planned, "p", 0).unwrap();
    j.append(1, Some("a"), Phase::Started, "", 0).unwrap();
    drop(j);
    let path = tmp.path().join("r/journal.jsonl");
    let whole = std::fs::read(&path).unwrap();
    let mut torn = whole.clone();
    torn.extend_from_slice(br#"{"seq":3,"time":"2026-11-21T10:00:00.000Z","run":"r","ep"#);
    std::fs::write(&path, &torn).unwrap();

    let contents = Journal::read(&path).unwrap();
    assert_eq!(contents.records.len(), 2);
    let t = contents.torn.unwrap();
    assert_eq!((t.offset, t.bytes), (whole.len() as u64, torn.len() - whole.len()));

    let (mut j, contents) = Journal::open(tmp.path(), "r").unwrap();
    assert!(contents.torn.is_some());
    let r = j.append(1, Some("a"), Phase::Checked, "ready", 0).unwrap();
    assert_eq!(r.seq, 3);
    let after = Journal::read(&path).unwrap();
    assert!(after.torn.is_none());
    assert_eq!(after.records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
}

#[test]
fn a_complete_record_missing_only_its_newline_is_treated_as_torn() {
    let tmp = tempfile::tempdir().unwrap();
    let mut j = Journal::create(tmp.path(), "r", &plan()).unwrap();
    j.append(1, None, Phase::Planned, "p", 0).unwrap();
    drop(j);
    let path = tmp.path().join("r/journal.jsonl");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.pop();
    std::fs::write(&path, &bytes).unwrap();
    let contents = Journal::read(&path).unwrap();
    assert!(contents.records.is_empty());
    assert_eq!(contents.torn.unwrap().offset, 0);
}

#[test]
fn a_bad_line_before_the_end_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let mut j = Journal::create(tmp.path(), "r", &plan()).unwrap();
    j.append(1, None, Phase::Planned, "p", 0).unwrap();
    drop(j);
    let path = tmp.path().join("r/journal.jsonl");
    let mut bytes = b"garbage\n".to_vec();
    bytes.extend(std::fs::read(&path).unwrap());
    std::fs::write(&path, &bytes).unwrap();
    let err = Journal::read(&path).unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { line: 1, .. }), "{err}");
    assert!(!err.is_retryable());
}

#[test]
fn a_run_is_created_once_with_its_plan_beside_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    Journal::create(tmp.path(), "r", &plan()).unwrap();
    assert_eq!(Journal::load_plan(tmp.path(), "r").unwrap(), plan());
    assert!(!tmp.path().join("r/plan.tmp").exists());
    assert!(matches!(
        Journal::create(tmp.path(), "r", &plan()),
        Err(JournalError::Exists(_))
    ));
    assert!(matches!(
        Journal::open(tmp.path(), "nope"),
        Err(JournalError::NotFound(_))
    ));
}
