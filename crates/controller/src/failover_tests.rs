//! The failover steps over an in-memory provider and the real embedded store: what a run may
//! count as fenced, when it may take the old primary's lease, and where it stops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use resurgo_runbook::run::{RunOutcome, RunReport};

use super::{execute, where_it_stands, RunOptions};
use crate::roles::{group_of, primary_lease};
use crate::testing::{two_sites, Fixture};

/// web running at a, b set up and empty.
fn fixture() -> Fixture {
    let f = Fixture::new(two_sites(false));
    let a = f.engine.sites(&f.spec).into_iter().find(|h| h.name == "a").unwrap();
    let web = &resurgo_plan::desired_state(&f.spec)["a"]["web"];
    resurgo_provider::Provider::start(f.provider.as_ref(), &a, web).unwrap();
    f
}

/// What the failover tests ask of the fixture.
trait Failover {
    fn fail_over(&self) -> RunReport;
    fn live_agent_at_a(&self) -> Renewing;
    fn holder(&self) -> Option<String>;
    fn primary(&self) -> Option<(String, u64)>;
}

impl Failover for Fixture {
    fn fail_over(&self) -> RunReport {
        execute(
            &self.spec,
            &self.spec,
            &self.engine,
            self.dir.path(),
            "a",
            "b",
            RunOptions::default(),
        )
        .unwrap()
    }

    /// Holds a's primary lease and renews it, like a's live agent, until dropped.
    fn live_agent_at_a(&self) -> Renewing {
        let store = self.store();
        let ttl = self.spec.failover.timing().lease_ttl;
        let id = store.grant_lease(&primary_lease(&group_of("a")), "a", ttl).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let _ = store.keep_alive(id);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Renewing(stop)
    }

    fn holder(&self) -> Option<String> {
        self.store()
            .lease_holder(&primary_lease(&group_of("a")))
            .unwrap()
            .map(|(h, _)| h)
    }

    fn primary(&self) -> Option<(String, u64)> {
        self.store()
            .get_assignment(&group_of("a"))
            .unwrap()
            .map(|a| (a.primary_site, a.epoch))
    }
}

struct Renewing(Arc<AtomicBool>);

impl Drop for Renewing {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn stopped_at_fence(report: &RunReport) -> bool {
    matches!(&report.outcome, RunOutcome::Stopped { step, .. } if step.starts_with("fence"))
}

#[test]
fn a_reachable_old_primary_is_fenced_then_its_lease_revoked_and_the_target_assigned() {
    let f = fixture();
    let _agent = f.live_agent_at_a();
    let report = f.fail_over();
    assert_eq!(report.outcome, RunOutcome::Succeeded, "{report:?}");
    assert!(!f.provider.running("a", "web"), "fenced at a");
    assert!(f.provider.running("b", "web"), "started at b");
    let log = f.provider.log();
    let stop = log.iter().position(|l| l == "stop a/web").expect("a/web stopped");
    let start = log.iter().position(|l| l == "start b/web").expect("b/web started");
    assert!(stop < start, "fenced before the target starts: {log:?}");
    assert_eq!(f.primary(), Some(("b".into(), 1)));
}

#[test]
fn an_old_primary_that_cannot_be_seen_is_not_counted_as_fenced_and_its_live_lease_is_kept() {
    let f = fixture();
    let _agent = f.live_agent_at_a();
    f.provider.site("a", false);
    let report = f.fail_over();
    assert!(stopped_at_fence(&report), "{report:?}");
    let RunOutcome::Stopped { error, .. } = &report.outcome else {
        unreachable!()
    };
    assert!(error.contains("has not fenced itself"), "{error}");
    assert_eq!(f.holder().as_deref(), Some("a"), "the live lease was not revoked");
    assert_eq!(f.primary(), None, "nothing assigned");
    assert!(!f.provider.running("b", "web"), "nothing started at b");
    let told = where_it_stands(&f.spec, f.dir.path(), &report).unwrap();
    assert!(
        told.contains(&format!("resurgo runs {} --resume", report.run)),
        "{told}"
    );
}

#[test]
fn services_still_seen_running_after_the_stop_keep_the_lease_where_it_is() {
    let f = fixture();
    let _agent = f.live_agent_at_a();
    f.provider.stubborn("a");
    let report = f.fail_over();
    assert!(stopped_at_fence(&report), "{report:?}");
    assert!(f.provider.log().contains(&"stop a/web".to_string()), "a stop was tried");
    assert_eq!(f.holder().as_deref(), Some("a"), "not revoked while a/web runs");
    assert_eq!(f.primary(), None);
}

#[test]
fn an_unseen_old_primary_whose_lease_ran_out_is_replaced_and_the_run_resumes_to_the_end() {
    let f = fixture();
    // a's agent held the lease and died: it runs out, and the run takes it.
    let agent = f.live_agent_at_a();
    f.provider.site("a", false);
    drop(agent);
    let report = f.fail_over();
    assert_eq!(report.outcome, RunOutcome::Succeeded, "{report:?}");
    assert_eq!(f.primary(), Some(("b".into(), 1)));
    assert!(f.provider.running("b", "web"));
    assert!(where_it_stands(&f.spec, f.dir.path(), &report).is_none());
}

#[test]
fn a_run_is_in_progress_exactly_while_some_run_holds_its_lock() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!super::run_in_progress(dir.path()));
    assert!(!dir.path().join("runs").exists(), "looking makes nothing");
    let first = super::ActiveRun::mark(dir.path()).unwrap();
    let second = super::ActiveRun::mark(dir.path()).unwrap();
    assert!(super::run_in_progress(dir.path()), "two runs at once");
    drop(first);
    assert!(super::run_in_progress(dir.path()), "one still runs");
    drop(second);
    assert!(
        !super::run_in_progress(dir.path()),
        "a run that ended (or died) counts no more"
    );
}
