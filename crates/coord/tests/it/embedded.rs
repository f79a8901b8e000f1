//! The embedded store: the shared contract, plus durability and crash-safety of its state file.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use resurgo_coord::{Assignment, CasOutcome, CoordStore, EmbeddedStore, StoreError};

use crate::support;

#[test]
fn cas_increments_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    support::cas_increments_the_epoch(&EmbeddedStore::open(dir.path()).unwrap());
}

#[test]
fn stale_cas_is_refused_with_the_current_assignment() {
    let dir = tempfile::tempdir().unwrap();
    support::stale_cas_is_refused(&EmbeddedStore::open(dir.path()).unwrap());
}

#[test]
fn racing_cas_from_separate_handles_has_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    // Each thread opens the folder itself: separate open files, so the flock serializes them
    // exactly as it serializes processes.
    support::racing_cas_has_one_winner(|| Box::new(EmbeddedStore::open(dir.path()).unwrap()), 8);
}

const RACE_DIR: &str = "RESURGO_COORD_RACE_DIR";
const RACE_SITE: &str = "RESURGO_COORD_RACE_SITE";

/// One contender of `racing_processes_have_one_winner` when started by it (with `RACE_DIR`
/// set): says it is ready, waits for the `go` file, then tries to move epoch 1 to its site. Run
/// alone, the same steps on a fresh folder, where it must win.
#[test]
fn cas_in_a_child_process() {
    let temp = tempfile::tempdir().unwrap();
    let (dir, site) = match std::env::var_os(RACE_DIR) {
        Some(dir) => (PathBuf::from(dir), std::env::var(RACE_SITE).unwrap()),
        None => {
            let store = EmbeddedStore::open(temp.path()).unwrap();
            let first = Assignment::first("race", "a", SystemTime::now());
            store.compare_and_swap_assignment("race", None, &first).unwrap();
            fs::write(temp.path().join("go"), b"").unwrap();
            (temp.path().to_owned(), "solo".to_owned())
        }
    };
    let store = EmbeddedStore::open(&dir).unwrap();
    let new = Assignment {
        group: "race".into(),
        primary_site: site.clone(),
        epoch: 2,
        since: SystemTime::now(),
    };
    fs::write(dir.join(format!("ready-{site}")), b"").unwrap();
    support::poll("the go file", Duration::from_secs(30), || {
        dir.join("go").exists().then_some(())
    });
    let outcome = store.compare_and_swap_assignment("race", Some(1), &new).unwrap();
    let verdict = if outcome == CasOutcome::Swapped { "won" } else { "lost" };
    println!("\nRACE-OUTCOME {site} {verdict}");
    if std::env::var_os(RACE_DIR).is_none() {
        assert_eq!(outcome, CasOutcome::Swapped);
    }
}

#[test]
fn racing_processes_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let first = Assignment::first("race", "a", SystemTime::now());
    EmbeddedStore::open(dir.path())
        .unwrap()
        .compare_and_swap_assignment("race", None, &first)
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let sites: Vec<String> = (0..4).map(|i| format!("site{i}")).collect();
    let children: Vec<_> = sites
        .iter()
        .map(|site| {
            Command::new(&exe)
                .args([
                    "embedded::cas_in_a_child_process",
                    "--exact",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(RACE_DIR, dir.path())
                .env(RACE_SITE, site)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Let them all loose at once, when every one is ready.
    support::poll("every child to be ready", Duration::from_secs(60), || {
        sites
            .iter()
            .all(|s| dir.path().join(format!("ready-{s}")).exists())
            .then_some(())
    });
    fs::write(dir.path().join("go"), b"").unwrap();
    let mut winners = Vec::new();
    for child in children {
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "child failed: {stdout}");
        let outcome = stdout
            .lines()
            .find_map(|l| l.strip_prefix("RACE-OUTCOME "))
            .expect("child reports its outcome");
        if let Some(site) = outcome.strip_suffix(" won") {
            winners.push(site.to_owned());
        }
    }
    assert_eq!(winners.len(), 1, "exactly one process wins: {winners:?}");
    let stored = EmbeddedStore::open(dir.path())
        .unwrap()
        .get_assignment("race")
        .unwrap()
        .unwrap();
    assert_eq!((stored.epoch, &stored.primary_site), (2, &winners[0]));
}

#[test]
fn leases_are_granted_renewed_revoked_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    support::leases(
        &EmbeddedStore::open(dir.path()).unwrap(),
        Duration::from_millis(300),
        Duration::from_secs(10),
    );
}

#[test]
fn renewal_extends_from_now() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let lease = store.grant_lease("l", "a", Duration::from_secs(60)).unwrap();
    let (_, before) = store.lease_holder("l").unwrap().unwrap();
    assert!(store.keep_alive(lease).unwrap());
    let (_, after) = store.lease_holder("l").unwrap().unwrap();
    assert!(after >= before.saturating_sub(Duration::from_millis(50)) && after <= Duration::from_secs(60));
}

#[test]
fn state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let first = Assignment::first("db", "a", SystemTime::now());
    let lease = {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.compare_and_swap_assignment("db", None, &first).unwrap();
        store.grant_lease("primary-db", "a", Duration::from_secs(60)).unwrap()
    };
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.get_assignment("db").unwrap(), Some(first));
    assert_eq!(store.lease_holder("primary-db").unwrap().unwrap().0, "a");
    assert!(store.keep_alive(lease).unwrap());
    let next = store.grant_lease("other", "b", Duration::from_secs(60)).unwrap();
    assert!(next > lease, "lease ids are not reused after reopening");
}

#[test]
fn a_torn_temporary_file_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let first = Assignment::first("db", "a", SystemTime::now());
    EmbeddedStore::open(dir.path())
        .unwrap()
        .compare_and_swap_assignment("db", None, &first)
        .unwrap();
    // A crash in the middle of the next write leaves half a temporary file behind.
    fs::write(dir.path().join("state.json.tmp"), b"{\"last_lease\": 3, \"assign").unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.get_assignment("db").unwrap(), Some(first.clone()));
    let second = first.successor("b", SystemTime::now());
    store.compare_and_swap_assignment("db", Some(1), &second).unwrap();
    assert_eq!(
        EmbeddedStore::open(dir.path()).unwrap().get_assignment("db").unwrap(),
        Some(second)
    );
    assert!(
        !dir.path().join("state.json.tmp").exists(),
        "the temporary file was replaced and renamed"
    );
}

#[test]
fn a_corrupt_state_file_is_refused_not_reset() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("state.json"), b"{\"last_lease\": ").unwrap();
    match EmbeddedStore::open(dir.path()) {
        Err(e @ StoreError::Corrupt { .. }) => {
            assert!(!e.is_transient());
            assert!(e.to_string().contains("state.json"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read(dir.path().join("state.json")).unwrap(), b"{\"last_lease\": ");
}
