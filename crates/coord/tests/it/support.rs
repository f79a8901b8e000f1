//! What both stores' tests share: polling with a deadline, and the contract every
//! `CoordStore` must meet, run against each implementation.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use resurgo_coord::{Assignment, CasOutcome, CoordStore, StoreError};

/// Polls `check` until it returns Some or `deadline` passes (then panics naming `what`).
pub fn poll<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < end, "timed out after {deadline:?} waiting for {what}");
        // Polling, not synchronisation: the condition is re-checked; the pause only spares the CPU.
        thread::sleep(Duration::from_millis(20));
    }
}

pub fn cas_increments_the_epoch(store: &dyn CoordStore) {
    let now = SystemTime::now();
    assert_eq!(store.get_assignment("db").unwrap(), None);
    let first = Assignment::first("db", "a", now);
    assert_eq!(
        store.compare_and_swap_assignment("db", None, &first).unwrap(),
        CasOutcome::Swapped
    );
    assert_eq!(store.get_assignment("db").unwrap(), Some(first.clone()));
    let second = first.successor("b", now);
    assert_eq!(
        store.compare_and_swap_assignment("db", Some(1), &second).unwrap(),
        CasOutcome::Swapped
    );
    let stored = store.get_assignment("db").unwrap().unwrap();
    assert_eq!((stored.epoch, stored.primary_site.as_str()), (2, "b"));
    assert_eq!(store.get_assignment("other").unwrap(), None, "groups are independent");
}

pub fn stale_cas_is_refused(store: &dyn CoordStore) {
    let now = SystemTime::now();
    let first = Assignment::first("db", "a", now);
    let second = first.successor("b", now);
    store.compare_and_swap_assignment("db", None, &first).unwrap();
    store.compare_and_swap_assignment("db", Some(1), &second).unwrap();
    // A writer that still believes epoch 1 is current is told what is.
    let stale = first.successor("c", now);
    assert_eq!(
        store.compare_and_swap_assignment("db", Some(1), &stale).unwrap(),
        CasOutcome::Conflict(Some(second.clone()))
    );
    // Creating an assignment that exists conflicts too.
    assert_eq!(
        store.compare_and_swap_assignment("db", None, &first).unwrap(),
        CasOutcome::Conflict(Some(second.clone()))
    );
    // Expecting an epoch on a group that has none.
    assert_eq!(
        store
            .compare_and_swap_assignment(
                "new",
                Some(1),
                &Assignment {
                    group: "new".into(),
                    ..second.clone()
                }
            )
            .unwrap(),
        CasOutcome::Conflict(None)
    );
    // An epoch that does not move forward is refused outright.
    let same = Assignment {
        primary_site: "c".into(),
        ..second.clone()
    };
    assert!(matches!(
        store.compare_and_swap_assignment("db", Some(2), &same),
        Err(StoreError::Refused(_))
    ));
    assert_eq!(store.get_assignment("db").unwrap(), Some(second));
}

/// `threads` stores (each made by `open`) race to move epoch 1 to 2: exactly one wins, and every
/// loser is shown the winner's assignment.
pub fn racing_cas_has_one_winner(open: impl Fn() -> Box<dyn CoordStore>, threads: usize) {
    let now = SystemTime::now();
    let first = Assignment::first("race", "a", now);
    open().compare_and_swap_assignment("race", None, &first).unwrap();
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let store = open();
            let barrier = barrier.clone();
            let new = first.successor(&format!("site{i}"), now);
            thread::spawn(move || {
                barrier.wait();
                (
                    new.clone(),
                    store.compare_and_swap_assignment("race", Some(1), &new).unwrap(),
                )
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let winners: Vec<_> = results
        .iter()
        .filter(|(_, o)| *o == CasOutcome::Swapped)
        .map(|(a, _)| a)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one winner: {results:?}");
    let winner = winners[0].clone();
    for (_, outcome) in &results {
        assert!(
            *outcome == CasOutcome::Swapped || *outcome == CasOutcome::Conflict(Some(winner.clone())),
            "{outcome:?}"
        );
    }
    assert_eq!(open().get_assignment("race").unwrap(), Some(winner));
}

/// Grant, hold, refuse a second holder, renew, revoke, and expire (ttl `ttl`, expiry awaited
/// for at most `expiry_deadline`).
pub fn leases(store: &dyn CoordStore, ttl: Duration, expiry_deadline: Duration) {
    let lease = store.grant_lease("primary-db", "a", ttl).unwrap();
    let (holder, remaining) = store.lease_holder("primary-db").unwrap().unwrap();
    assert_eq!(holder, "a");
    assert!(remaining <= ttl.max(Duration::from_secs(2)), "{remaining:?}");
    match store.grant_lease("primary-db", "b", ttl) {
        Err(StoreError::LeaseHeld { name, holder }) => {
            assert_eq!((name.as_str(), holder.as_str()), ("primary-db", "a"))
        }
        other => panic!("second grant: {other:?}"),
    }
    assert!(store.keep_alive(lease).unwrap());
    store.revoke(lease).unwrap();
    assert_eq!(store.lease_holder("primary-db").unwrap(), None);
    assert!(!store.keep_alive(lease).unwrap(), "a revoked lease cannot be renewed");
    store.revoke(lease).unwrap();

    // Expiry: granted, renewed once, then left alone.
    let lease = store.grant_lease("primary-db", "b", ttl).unwrap();
    assert!(store.keep_alive(lease).unwrap());
    poll("the lease to expire", expiry_deadline, || {
        store.lease_holder("primary-db").unwrap().is_none().then_some(())
    });
    assert!(!store.keep_alive(lease).unwrap(), "an expired lease cannot be renewed");
    let again = store.grant_lease("primary-db", "c", ttl).unwrap();
    assert_ne!(again, lease);
    assert_eq!(store.lease_holder("primary-db").unwrap().unwrap().0, "c");
}
