//! The agent's decisions over an in-memory provider and the real embedded store: one epoch
//! memory per group, the restart rule run every tick, and the renewer that fences.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use resurgo_coord::fence::{EpochFile, EpochMemory};
use resurgo_coord::{Assignment, CasOutcome, CoordStore, LeaseId, StoreError};

use super::{epoch_dir, Agent, Held, Renewer, Role};
use crate::events::EventLog;
use crate::roles::{group_of, primary_lease};
use crate::testing::{two_sites, Fixture};

fn fixture() -> Fixture {
    Fixture::new(two_sites(true))
}

/// What the agent tests ask of the fixture.
trait Agents {
    fn agent(&self, site: &str) -> Agent;
    fn fenced(&self) -> Vec<String>;
}

impl Agents for Fixture {
    fn agent(&self, site: &str) -> Agent {
        let source = resurgo_plan::SourceId {
            kind: "folder".into(),
            location: "unit".into(),
            commit: None,
            digest: "unit".into(),
        };
        Agent::new(
            self.spec.clone(),
            source,
            self.engine.clone(),
            self.dir.path(),
            Role::Site(site.into()),
        )
        .unwrap()
    }

    fn fenced(&self) -> Vec<String> {
        EventLog::of_state(self.dir.path())
            .read()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.kind == crate::events::EventKind::Fenced)
            .map(|e| e.message)
            .collect()
    }
}

/// Group site-a moved to b at epoch 1; group site-b never moved (epoch 0, at b). b's agent
/// serves both: the epoch it saw of one group says nothing about the other.
#[test]
fn each_group_has_its_own_epoch_memory() {
    let f = fixture();
    let store = f.store();
    let moved = Assignment::first(&group_of("a"), "b", SystemTime::now());
    assert_eq!(
        store.compare_and_swap_assignment(&group_of("a"), None, &moved).unwrap(),
        CasOutcome::Swapped
    );
    let mut b = f.agent("b");
    b.site_tick("b");
    assert!(f.fenced().is_empty(), "nothing fenced: {:?}", f.fenced());
    for group in ["site-a", "site-b"] {
        let holder = store.lease_holder(&primary_lease(group)).unwrap().map(|(h, _)| h);
        assert_eq!(holder.as_deref(), Some("b"), "b holds {group}");
    }
    assert!(f.provider.running("b", "web") && f.provider.running("b", "api"));
    let memory = |group: &str| EpochFile::new(epoch_dir(f.dir.path(), "b").join(group)).load().unwrap();
    assert_eq!((memory("site-a"), memory("site-b")), (Some(1), Some(0)));
}

/// A lease whose fence deadline cannot be written (the site is not set up yet) is let go at
/// once and nothing is served: a service started under it would have no deadline for its
/// supervisor to fence it by, and would serve on after the agent died. Once the site is set
/// up, the next tick takes the lease, writes the deadline, and serves.
#[test]
fn no_lease_is_kept_and_nothing_served_without_a_fence_deadline_on_disk() {
    let f = fixture();
    f.provider.site("a", false);
    let store = f.store();
    let mut a = f.agent("a");
    a.site_tick("a");
    assert_eq!(
        store.lease_holder(&primary_lease("site-a")).unwrap(),
        None,
        "the lease was let go"
    );
    assert!(a.held().leases.is_empty());
    assert!(!f.provider.running("a", "web"), "{:?}", f.provider.log());
    assert!(f.provider.fence("a").is_none());

    f.provider.site("a", true);
    a.site_tick("a");
    let holder = store.lease_holder(&primary_lease("site-a")).unwrap().map(|(h, _)| h);
    assert_eq!(holder.as_deref(), Some("a"));
    let until = f.provider.fence("a").expect("the deadline is written before serving");
    assert!(!until.passed(&resurgo_coord::BootTime::now()), "{until:?}");
    assert!(f.provider.running("a", "web"), "{:?}", f.provider.log());
}

/// The store holds an epoch below one b saw of that group (it was restored from an old copy):
/// that group is fenced at b, the other keeps serving.
#[test]
fn a_store_gone_back_in_time_fences_only_the_group_it_lies_about() {
    let f = fixture();
    let mut b = f.agent("b");
    b.site_tick("b");
    assert!(f.provider.running("b", "api"));
    EpochFile::new(epoch_dir(f.dir.path(), "b").join("site-b"))
        .record(5)
        .unwrap();
    b.site_tick("b");
    assert!(!f.provider.running("b", "api"), "site-b fenced at b");
    let fenced = f.fenced();
    assert!(
        fenced.len() == 1 && fenced[0].contains("site-b") && fenced[0].contains("below 5"),
        "{fenced:?}"
    );
    // a's group, primary at a, is untouched by b's doubt about site-b.
    let mut a = f.agent("a");
    a.site_tick("a");
    assert!(f.provider.running("a", "web"));
}

/// A store that can be cut off.
struct Cuttable {
    inner: Arc<dyn CoordStore>,
    down: AtomicBool,
}

impl Cuttable {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::Relaxed) {
            return Err(StoreError::Unreachable {
                endpoint: "unit".into(),
                reason: "cut off".into(),
            });
        }
        Ok(())
    }
}

impl CoordStore for Cuttable {
    fn get_assignment(&self, group: &str) -> Result<Option<Assignment>, StoreError> {
        self.check()?;
        self.inner.get_assignment(group)
    }
    fn compare_and_swap_assignment(
        &self,
        group: &str,
        expected: Option<u64>,
        new: &Assignment,
    ) -> Result<CasOutcome, StoreError> {
        self.check()?;
        self.inner.compare_and_swap_assignment(group, expected, new)
    }
    fn grant_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.check()?;
        self.inner.grant_lease(name, holder, ttl)
    }
    fn keep_alive(&self, lease: LeaseId) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.keep_alive(lease)
    }
    fn lease_holder(&self, name: &str) -> Result<Option<(String, Duration)>, StoreError> {
        self.check()?;
        self.inner.lease_holder(name)
    }
    fn lease_of(&self, name: &str) -> Result<Option<LeaseId>, StoreError> {
        self.check()?;
        self.inner.lease_of(name)
    }
    fn revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.check()?;
        self.inner.revoke(lease)
    }
}

fn renewer(f: &Fixture, store: Arc<dyn CoordStore>, held: Arc<std::sync::Mutex<Held>>) -> Renewer {
    Renewer {
        site: "a".into(),
        handle: f.engine.site(&f.spec, "a").unwrap(),
        spec: Arc::new(std::sync::Mutex::new(f.spec.clone())),
        engine: f.engine.clone(),
        store,
        events: EventLog::of_state(f.dir.path()),
        held,
        answering: Arc::new(AtomicBool::new(true)),
    }
}

/// Renewals move the fence deadline forward, counted from when each was sent; once the store
/// cannot be reached for the fencing deadline, the group is fenced — and not a moment before.
#[test]
fn the_renewer_fences_at_the_deadline_counted_from_the_last_renewal_sent() {
    let f = fixture();
    let mut a = f.agent("a");
    a.site_tick("a");
    assert!(f.provider.running("a", "web"));
    let store = Arc::new(Cuttable {
        inner: f.store(),
        down: AtomicBool::new(false),
    });
    let renewer = renewer(&f, store.clone(), a.held.clone());
    let deadline = f.spec.failover.timing().fencing_deadline;

    let before = resurgo_coord::BootTime::now();
    renewer.round();
    let until = f.provider.fence("a").expect("a fence deadline");
    assert!(
        until.ms >= before.ms + deadline.as_millis() as u64,
        "from the renewal sent: {until:?}"
    );

    store.down.store(true, Ordering::Relaxed);
    renewer.round();
    assert!(
        f.provider.running("a", "web"),
        "a failed renewal within the deadline fences nothing"
    );
    std::thread::sleep(deadline);
    renewer.round();
    assert!(!f.provider.running("a", "web"), "fenced once the deadline passed");
    assert!(a.held.lock().unwrap().fenced.contains_key("site-a"));
}

/// A lease revoked in the store (a run that fenced this site took it) is gone: the renewer
/// fences the group at once instead of waiting for the deadline.
#[test]
fn a_lease_that_is_gone_fences_its_group_at_once() {
    let f = fixture();
    let mut a = f.agent("a");
    a.site_tick("a");
    let store = f.store();
    let id = store
        .lease_of(&primary_lease("site-a"))
        .unwrap()
        .expect("a holds site-a");
    store.revoke(id).unwrap();
    renewer(&f, store, a.held.clone()).round();
    assert!(!f.provider.running("a", "web"));
    let fenced = f.fenced();
    assert!(fenced.iter().any(|m| m.contains("gone")), "{fenced:?}");
    // With no lease left the deadline is now, not the last renewal's: a standby started here
    // next (rejoining) is not stopped by its supervisor when that one would have passed.
    let until = f.provider.fence("a").expect("a fence deadline");
    assert!(
        until.passed(&resurgo_coord::BootTime::now()),
        "the deadline is still ahead: {until:?}"
    );
}

/// The renewer has begun fencing a group and not yet stopped its services when the main
/// thread ticks: that tick must not count the services it still sees running as served (the
/// stop would then leave the group fenced for good, holding its lease — found by the chaos
/// test). Once the fence is done, the next ticks take the lease again and serve.
#[test]
fn a_fence_in_progress_is_not_undone_by_a_tick_and_the_group_is_served_again_after_it() {
    let f = fixture();
    let mut a = f.agent("a");
    a.site_tick("a");
    assert!(f.provider.running("a", "web"));

    a.held.lock().unwrap().fence("site-a", "the store did not answer");
    a.site_tick("a");
    assert!(
        a.held.lock().unwrap().fenced.contains_key("site-a"),
        "a tick during the fence does not end it"
    );
    super::finish_fence(&a.held, &f.engine, &f.spec, "a", "site-a", "the store did not answer");
    assert!(!f.provider.running("a", "web"));

    // The lease is still a's: adopted again once a has been up a whole ttl, then served.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !f.provider.running("a", "web") && std::time::Instant::now() < deadline {
        a.site_tick("a");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(f.provider.running("a", "web"), "served again after the fence");
    assert!(!a.held.lock().unwrap().fenced.contains_key("site-a"));
}

/// An agent in a site daemon takes each spec its daemon publishes, at its next tick: the
/// services and the failover policy of the new spec, but the failover timing it started with
/// (its leases were granted under it), saying that a restart takes the rest.
#[test]
fn a_following_agent_takes_each_published_spec_but_keeps_its_failover_timing() {
    let f = fixture();
    let shared = crate::desired::SharedSpec::default();
    let mut a = f.agent("a").following(shared.clone());
    let mut next = crate::testing::two_sites(false);
    next.failover.automatic = true;
    next.failover.lease_ttl = Some(resurgo_spec::Duration(Duration::from_secs(30)));
    let source = resurgo_plan::SourceId {
        kind: "folder".into(),
        location: "unit".into(),
        commit: None,
        digest: "next".into(),
    };
    shared.publish(crate::desired::Desired {
        loaded: resurgo_spec::Loaded {
            system: next,
            digest: "next".into(),
        },
        source,
    });
    a.follow();
    assert!(!a.spec.services.contains_key("api"), "the new spec's services");
    assert!(a.spec.failover.automatic, "the new spec's policy");
    assert_eq!(
        a.spec.failover.lease_ttl, f.spec.failover.lease_ttl,
        "the timing it started with"
    );
    assert_eq!(a.source.digest, "next");
    assert!(
        !a.renewer_spec.lock().unwrap().services.contains_key("api"),
        "the renewer fences what the new spec declares"
    );
    let said = EventLog::of_state(f.dir.path()).read().unwrap();
    assert!(
        said.iter()
            .any(|e| e.message.contains("take effect when the agent restarts")),
        "{said:?}"
    );
}

/// A planned failover run at b (which cannot reach a's files) asks through the store; a's own
/// agent, ticking, stops a's services and answers; the run counts a as fenced only then, takes
/// the lease at once (not after it expires) and assigns b. Without a's answer the run would wait
/// the whole lease out.
#[test]
fn a_run_on_another_host_is_handed_the_group_by_the_old_primarys_agent() {
    let f = Fixture::new(two_sites(false));
    let mut a = f.agent("a");
    a.site_tick("a");
    assert!(f.provider.running("a", "web"), "a serves web");
    let store = f.store();
    assert_eq!(
        store
            .lease_holder(&primary_lease(&group_of("a")))
            .unwrap()
            .map(|(h, _)| h)
            .as_deref(),
        Some("a")
    );
    let stop = Arc::new(AtomicBool::new(false));
    let ticking = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                a.site_tick("a");
                std::thread::sleep(Duration::from_millis(50));
            }
            a
        })
    };
    let started = std::time::Instant::now();
    let options = crate::failover::RunOptions {
        local: Some("b".into()),
        ..Default::default()
    };
    let report = crate::failover::execute(&f.spec, &f.spec, &f.engine, f.dir.path(), "a", "b", options).unwrap();
    stop.store(true, Ordering::Relaxed);
    let _a = ticking.join().unwrap();
    assert_eq!(
        report.outcome,
        resurgo_runbook::run::RunOutcome::Succeeded,
        "{report:?}"
    );
    let ttl = f.spec.failover.timing().lease_ttl;
    assert!(
        started.elapsed() < ttl,
        "the run waited {:?}, as long as a's lease ({ttl:?}): it was not handed over",
        started.elapsed()
    );
    assert!(!f.provider.running("a", "web"), "a's web was stopped by a's agent");
    assert!(f.provider.running("b", "web"), "b serves web");
    let assignment = store.get_assignment(&group_of("a")).unwrap().unwrap();
    assert_eq!((assignment.primary_site.as_str(), assignment.epoch), ("b", 1));
    assert!(
        f.fenced()
            .iter()
            .any(|m| m.contains("handing site-a over to b at epoch 1")),
        "{:?}",
        f.fenced()
    );
    // The request is withdrawn once the run holds the lease.
    let request = crate::roles::handover::request_lease(&group_of("a"));
    assert_eq!(store.lease_holder(&request).unwrap(), None);
}

/// A drill's `stop_site` applied through the site API: the agent is dark at once (no lease
/// taken, nothing served, its daemon's controller gated off), and past the order's `until`
/// its own tick reverts it — no drill alive — and it serves again.
#[test]
fn a_site_made_dark_by_a_drill_comes_back_by_itself_at_the_orders_until() {
    let f = fixture();
    let mut a = f.agent("a");
    let serving = a.serving();
    let switch = serving.switch();
    let at = crate::faults::FaultSite {
        site: "a",
        system: &f.spec,
        engine: &f.engine,
        state_dir: f.dir.path(),
        answering: Some(&switch),
    };
    let until = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 0.8;
    let order = resurgo_api::types::FaultOrder {
        id: "drill-dark-0".into(),
        fault: resurgo_spec::Fault::StopSite("a".into()),
        until_unix: until,
    };
    crate::faults::apply(&at, &order).unwrap();
    assert!(serving.dark(), "silenced at once");
    a.site_tick("a");
    assert!(serving.dark(), "still dark after a tick");
    assert!(!serving.holds("site-a"));
    let store = f.store();
    assert_eq!(
        store.lease_holder(&primary_lease("site-a")).unwrap(),
        None,
        "no lease taken while dark"
    );
    assert!(!f.provider.running("a", "web"), "nothing served while dark");
    std::thread::sleep(Duration::from_millis(900));
    a.site_tick("a");
    assert!(!serving.dark(), "the tick reverted it");
    assert!(crate::faults::in_force(f.dir.path(), "a").unwrap().is_empty());
    let holder = store.lease_holder(&primary_lease("site-a")).unwrap().map(|(h, _)| h);
    assert_eq!(holder.as_deref(), Some("a"), "a serves again");
    assert!(f.provider.running("a", "web"));
}
