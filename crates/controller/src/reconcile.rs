//! The controller: a level-triggered reconcile loop. Every tick it looks at the whole desired
//! state and the whole observed state — never at "what just happened" — plans the difference,
//! reports drift, and corrects it where the service's sync policy is `auto`.
//!
//! Desired state comes from the source (polled) or, when that fails, from the local
//! last-known-good copy. Observation is per site with a timeout, so an unreachable site is
//! `unknown` and the others carry on. Corrections run on their own threads so a slow start
//! never delays detection elsewhere; a service that keeps dying is restarted with back-off.
//!
//! A controller serves every site (`resurgo controller`) or one ([`ControllerConfig::site`],
//! a site daemon's: `resurgo agent --site S`). Scoped to a site, it observes and corrects only
//! that site — another site's provider is never called —, runs the schedules of the datasets
//! whose service is active there (see [`crate::schedule::Protection::scoped`]) and the proxy of
//! each `type: proxy` route only while the route's service is active there: when the service
//! moves, the proxy stops here and the new site's daemon starts its own. Beside the site's
//! agent ([`Controller::gated`]) it starts an active instance only of a group the agent serves
//! as primary: the lease decides who writes, never the controller.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use resurgo_plan::{make_plan, Action, PlanOptions, SiteState};
use resurgo_provider::Provider;
use resurgo_spec::SyncPolicy;

use crate::desired::{load_and_remember, Desired, LastKnownGood, LoadError};
use crate::engine::{ApplyError, Engine};
use crate::events::{Event, EventKind, EventLog};
use crate::source::Source;

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// The one site this controller serves (a site daemon's), or `None`: every site.
    pub site: Option<String>,
    pub source: Source,
    pub overrides: Vec<(String, String)>,
    pub state_dir: PathBuf,
    /// Time between observations (drift is noticed within one tick plus one observation).
    pub tick: Duration,
    /// Time between polls of the source.
    pub poll: Duration,
    pub plan_options: PlanOptions,
    /// Log each event at info (warn when something failed); the `controller` command does.
    /// When false (the demo, which tells its own story), they are logged at debug.
    pub echo: bool,
}

/// Restart back-off for one service: immediate the first time, then 1 s, 2 s, 4 s … 30 s.
/// Forgiven once the service has stayed up for [`Backoff::FORGIVE`].
#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    last_start: Instant,
}

impl Backoff {
    const FORGIVE: Duration = Duration::from_secs(10);
    const MAX: Duration = Duration::from_secs(30);

    fn delay(&self) -> Duration {
        match self.failures {
            0 => Duration::ZERO,
            n => Duration::from_secs(1u64 << (n - 1).min(5)).min(Self::MAX),
        }
    }

    fn ready(&self, now: Instant) -> bool {
        now >= self.last_start + self.delay()
    }
}

type Key = (String, String);

/// Messages from the loop's helpers.
enum Msg {
    Corrected(Key, Result<(), ApplyError>),
}

pub struct Controller {
    engine: Engine,
    config: ControllerConfig,
    events: EventLog,
    lkg: LastKnownGood,
    desired: Option<Desired>,
    last_poll: Option<Instant>,
    git_down: bool,
    unknown_sites: HashSet<String>,
    drift: HashMap<Key, String>,
    backoff: HashMap<Key, Backoff>,
    inflight: HashSet<Key>,
    protection: crate::schedule::Protection,
    /// The built-in proxies of `type: proxy` routes, by route name.
    proxies: HashMap<String, resurgo_route::proxy::Proxy>,
    /// Routes whose proxy could not start, so the failure is reported once.
    route_errors: HashSet<String>,
    /// Where each service is active, as of the last tick (to notice a failover).
    placement: Option<Vec<(String, String)>>,
    assignment_error: Option<String>,
    /// Why the last load of the desired state failed, if it did (for a daemon that cannot
    /// start without one).
    load_error: Option<String>,
    /// Where each spec adopted is published (a site daemon's agent and API follow it).
    shared: Option<crate::desired::SharedSpec>,
    /// Beside a site's agent: the groups it serves as primary (see [`Controller::gated`]).
    serving: Option<crate::agent::Serving>,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
}

impl Controller {
    pub fn new(engine: Engine, config: ControllerConfig) -> Controller {
        let (tx, rx) = mpsc::channel();
        let protection = crate::schedule::Protection::scoped(config.site.clone());
        Controller {
            events: EventLog::of_state(&config.state_dir),
            lkg: LastKnownGood::new(&config.state_dir),
            engine,
            config,
            desired: None,
            last_poll: None,
            git_down: false,
            unknown_sites: HashSet::new(),
            drift: HashMap::new(),
            backoff: HashMap::new(),
            inflight: HashSet::new(),
            protection,
            proxies: HashMap::new(),
            route_errors: HashSet::new(),
            placement: None,
            assignment_error: None,
            load_error: None,
            shared: None,
            serving: None,
            tx,
            rx,
        }
    }

    /// Publishes every desired state adopted from now on (and the current one) to `shared`.
    pub fn sharing(mut self, shared: crate::desired::SharedSpec) -> Controller {
        if let Some(desired) = &self.desired {
            shared.publish(desired.clone());
        }
        self.shared = Some(shared);
        self
    }

    /// Beside a site's agent, the controller corrects an active instance (creates, updates,
    /// restarts it) only while the agent serves its group as primary — holds its lease, is not
    /// fencing it: a restart at a site that is not primary, or whose lease is expiring, could
    /// make a second writer. Those are the agent's to serve; standby instances, and removals,
    /// stay the controller's.
    pub fn gated(mut self, serving: crate::agent::Serving) -> Controller {
        self.serving = Some(serving);
        self
    }

    /// Whether `change` may be made as far as the primary leases go (see [`Controller::gated`]).
    fn lease_allows(&self, change: &resurgo_plan::Change) -> bool {
        let Some(serving) = &self.serving else {
            return true;
        };
        // A dark site (a drill's `stop_site`) changes nothing, as a lost host would not.
        if serving.dark() {
            return false;
        }
        let Some(config) = &change.config else {
            return true;
        };
        if config.role != resurgo_plan::Role::Active {
            return true;
        }
        // The group is named after the site the spec places the service at, as written.
        self.desired
            .as_ref()
            .and_then(|d| d.loaded.system.services.get(&change.service))
            .is_some_and(|svc| serving.holds(&crate::roles::group_of(&svc.site)))
    }

    /// Loads the desired state now — from the source, else from the last-known-good copy —
    /// unless one is held already. The reason when there is none.
    pub fn load(&mut self) -> Result<(), String> {
        if self.desired.is_none() {
            self.last_poll = None;
            self.poll_source();
        }
        match &self.desired {
            Some(_) => Ok(()),
            None => Err(self
                .load_error
                .clone()
                .unwrap_or_else(|| "no desired state".to_string())),
        }
    }

    /// Whether `site` is one this controller serves.
    fn serves(&self, site: &str) -> bool {
        self.config.site.as_deref().is_none_or(|s| s == site)
    }

    fn commit(&self) -> Option<String> {
        self.desired.as_ref().map(|d| d.source.label())
    }

    fn emit(&self, event: Event) {
        let mut event = if event.commit.is_none() {
            event.commit(self.commit().as_deref())
        } else {
            event
        };
        // A site daemon's events are its site's.
        if event.site.is_none() {
            event.site.clone_from(&self.config.site);
        }
        if let Err(e) = self.events.append(&event) {
            tracing::warn!(path = %self.events.path().display(), "cannot write the event log: {e}");
        }
        event.log(!self.config.echo);
    }

    /// Runs until `shutdown` receives a message or is closed.
    pub fn run(mut self, shutdown: mpsc::Receiver<()>) {
        self.emit(Event::new(
            EventKind::ControllerStarted,
            format!("watching {}", self.config.source.describe()),
        ));
        loop {
            let begun = Instant::now();
            self.tick();
            let left = self.config.tick.saturating_sub(begun.elapsed());
            match shutdown.recv_timeout(left) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => break,
            }
        }
        self.emit(Event::new(
            EventKind::ControllerStopped,
            "shutting down; services keep running",
        ));
    }

    /// One reconcile pass, in a `reconcile` span that carries the commit judged against; its
    /// duration is logged at debug (`tick`, `millis`: the agent's benchmark reads it) and, at
    /// a site's daemon, recorded for `/metrics` (`liveness.rs`).
    pub fn tick(&mut self) {
        let span = tracing::info_span!("reconcile", commit = tracing::field::Empty);
        let _entered = span.enter();
        let begun = Instant::now();
        self.reconcile(&span);
        let took = begun.elapsed();
        tracing::debug!(millis = took.as_secs_f64() * 1e3, "tick");
        // A site's daemon records it for its `/metrics`.
        if let Some(site) = &self.config.site {
            crate::liveness::record_reconcile(&self.config.state_dir, site, took);
        }
    }

    fn reconcile(&mut self, span: &tracing::Span) {
        self.drain();
        self.poll_source();
        if let Some(commit) = self.commit() {
            span.record("commit", commit.as_str());
        }
        let Some(raw) = self.desired.clone() else { return };
        // Who is primary can change at any moment (a failover): read it every tick.
        let desired = match crate::desired::with_assignments(raw, &self.config.state_dir) {
            Ok(d) => d,
            Err(e) => {
                let message = e.to_string();
                if self.assignment_error.as_deref() != Some(message.as_str()) {
                    self.emit(Event::new(
                        EventKind::SpecInvalid,
                        format!("{message}; doing nothing until it can be read"),
                    ));
                    self.assignment_error = Some(message);
                }
                return;
            }
        };
        self.assignment_error = None;
        let moved: Vec<(String, String)> = desired
            .loaded
            .system
            .services
            .iter()
            .map(|(n, s)| (n.clone(), s.site.clone()))
            .collect();
        if self.placement.as_ref() != Some(&moved) {
            if self.placement.is_some() {
                self.engine.preparer = Some(crate::protect::standby_preparer(&self.engine, &desired.loaded.system));
                self.emit(Event::new(
                    EventKind::AssignmentChanged,
                    "the primary assignment changed; services follow it",
                ));
            }
            self.placement = Some(moved);
        }
        let system = &desired.loaded.system;
        // Without an agent beside it (the all-sites loop), the controller is the dead man's
        // switch of the drill faults at its sites: one past its `until` is reverted here.
        if self.serving.is_none() {
            for site in system.sites.keys().filter(|s| self.serves(s)) {
                let at = crate::faults::FaultSite {
                    site,
                    system,
                    engine: &self.engine,
                    state_dir: &self.config.state_dir,
                    answering: None,
                };
                for (fault, result) in crate::faults::revert_expired(&at) {
                    if let Err(e) = result {
                        tracing::warn!(id = %fault.order.id, "cannot revert an expired drill fault: {e}");
                    }
                }
            }
        }
        // Routes first: they are on a failover's path (a route let go here is what the new
        // site's daemon waits for), protection is not.
        self.route(system);
        self.protect(system);
        let mut sites = self.engine.sites(system);
        sites.retain(|s| self.serves(&s.name));
        // A site never set up from this state folder is set up, as `apply` does; one set up
        // before whose folder is gone is lost or not mounted: unknown, nothing made in its place.
        let (observed, new_sites) = self.engine.observe_for_apply(&sites);
        if !new_sites.is_empty() {
            match self.engine.set_up(&sites, &new_sites) {
                Ok(()) => {
                    for site in &new_sites {
                        self.emit(Event::new(EventKind::SiteReachable, "new site: set up").site(site));
                    }
                }
                Err(e) => {
                    self.emit(Event::new(
                        EventKind::ApplyFailed,
                        format!("cannot set up the new sites: {e}"),
                    ));
                    return;
                }
            }
        }

        for site in &observed {
            match &site.state {
                SiteState::Unknown { reason } => {
                    if self.unknown_sites.insert(site.site.clone()) {
                        self.emit(Event::new(EventKind::SiteUnreachable, reason.clone()).site(&site.site));
                    }
                }
                SiteState::Reachable { .. } => {
                    if self.unknown_sites.remove(&site.site) {
                        self.emit(Event::new(EventKind::SiteReachable, "site answers again").site(&site.site));
                    }
                }
            }
        }

        let mut want = resurgo_plan::desired_state(system);
        // Only what is observed is planned: another site's services are not this one's to make.
        want.retain(|site, _| self.serves(site));
        let plan = match make_plan(
            &system.name,
            desired.source.clone(),
            &want,
            &observed,
            self.config.plan_options,
        ) {
            Ok(plan) => plan,
            Err(e) => {
                self.emit(Event::new(EventKind::ApplyFailed, e.to_string()));
                return;
            }
        };

        tracing::debug!(
            sites = observed.len(),
            unknown = self.unknown_sites.len(),
            changes = plan
                .sites
                .iter()
                .flat_map(|s| &s.changes)
                .filter(|c| c.action != Action::Unchanged)
                .count(),
            "observed and planned"
        );
        let now = Instant::now();
        let index = crate::engine::index_observed(&observed);
        let mut current: HashSet<Key> = HashSet::new();
        for site_plan in &plan.sites {
            let Some(handle) = sites.iter().find(|s| s.name == site_plan.site) else {
                continue;
            };
            for change in &site_plan.changes {
                let key = (site_plan.site.clone(), change.service.clone());
                if change.action == Action::Unchanged {
                    // Forgive a service that has stayed up long enough.
                    if let Some(b) = self.backoff.get(&key) {
                        if now.duration_since(b.last_start) >= Backoff::FORGIVE && index.contains_key(&key) {
                            self.backoff.remove(&key);
                        }
                    }
                    continue;
                }
                current.insert(key.clone());
                let what = describe(change);
                if self.drift.get(&key) != Some(&what) {
                    self.drift.insert(key.clone(), what.clone());
                    self.emit(
                        Event::new(EventKind::DriftSeen, what.clone())
                            .site(&key.0)
                            .service(&key.1),
                    );
                }
                let auto = match change.action {
                    Action::Delete => true,
                    Action::Orphan => false,
                    // Stopped on purpose (a fence, a planned switch): drift to report, not to
                    // undo; `resurgo apply` starts it again.
                    Action::Start if change.reason.as_deref() == Some("stopped") => false,
                    _ => system
                        .services
                        .get(&change.service)
                        .is_some_and(|s| s.sync == SyncPolicy::Auto),
                };
                // A failover or failback in progress owns the services it moves.
                if !auto
                    || self.inflight.contains(&key)
                    || !self.lease_allows(change)
                    || crate::failover::run_in_progress(&self.config.state_dir)
                {
                    continue;
                }
                let backoff = self.backoff.entry(key.clone()).or_insert(Backoff {
                    failures: 0,
                    last_start: now - Backoff::MAX,
                });
                if !backoff.ready(now) {
                    continue;
                }
                backoff.failures += 1;
                backoff.last_start = now;
                self.inflight.insert(key.clone());
                let engine = self.engine.clone();
                let handle = handle.clone();
                let tx = self.tx.clone();
                let change = change.clone();
                // The correction logs under this tick's span, naming what it corrects.
                let span = tracing::info_span!("correct", site = %key.0, service = %key.1);
                std::thread::spawn(move || {
                    let _entered = span.enter();
                    let result = match (&change.action, &change.config) {
                        (Action::Delete, _) => engine
                            .provider
                            .remove(&handle, &change.service)
                            .map_err(ApplyError::from),
                        (_, Some(config)) => engine.start_healthy(&handle, config),
                        (_, None) => Ok(()),
                    };
                    let _ = tx.send(Msg::Corrected(key, result));
                });
            }
        }
        let cleared: Vec<Key> = self
            .drift
            .keys()
            .filter(|k| !current.contains(*k) && !self.inflight.contains(*k))
            .cloned()
            .collect();
        for key in cleared {
            self.drift.remove(&key);
            self.emit(
                Event::new(EventKind::DriftCleared, "in sync again")
                    .site(&key.0)
                    .service(&key.1),
            );
        }
    }

    /// Keeps each `type: proxy` route listening and pointed at its service's active site
    /// (level-triggered: whatever moved the service, the proxy follows on the next tick).
    /// Scoped to a site, only the routes whose service is active there: a route whose service
    /// moved away stops listening here, and the daemon of the site it moved to serves it.
    fn route(&mut self, system: &resurgo_spec::System) {
        let mut wanted: HashMap<String, (std::net::SocketAddr, std::net::SocketAddr)> = HashMap::new();
        for (name, route) in &system.routes {
            let (Some(listen), resurgo_spec::RouteKind::Proxy) = (route.listen, route.kind) else {
                continue;
            };
            let Some(svc) = system.services.get(&route.service) else {
                continue;
            };
            if !self.serves(&svc.site) {
                continue;
            }
            let Some(site) = system.sites.get(&svc.site) else {
                continue;
            };
            let Some(port) = route.port.or_else(|| svc.ports.first().copied()) else {
                continue;
            };
            wanted.insert(name.clone(), (listen, std::net::SocketAddr::new(site.address, port)));
        }
        let released: Vec<String> = self
            .proxies
            .keys()
            .filter(|name| !wanted.contains_key(*name))
            .cloned()
            .collect();
        for name in released {
            // Dropping the proxy stops its listener and the connections it carries.
            drop(self.proxies.remove(&name));
            let whence = system
                .routes
                .get(&name)
                .and_then(|r| system.services.get(&r.service))
                .map_or_else(
                    || "it left the spec".to_string(),
                    |s| format!("its service is active at {}", s.site),
                );
            self.emit(Event::new(
                EventKind::RouteSwitched,
                format!("route {name} no longer listens here: {whence}"),
            ));
        }
        for (name, (listen, backend)) in wanted {
            match self.proxies.get(&name) {
                Some(proxy) if proxy.backend() == backend => {}
                Some(proxy) => {
                    let epoch = proxy.epoch() + 1;
                    match proxy.switch(backend, epoch) {
                        Ok(()) => self.emit(Event::new(
                            EventKind::RouteSwitched,
                            format!("route {name} now leads to {backend} (epoch {epoch})"),
                        )),
                        Err(e) => self.emit(Event::new(EventKind::RouteFailed, format!("route {name}: {e}"))),
                    }
                }
                None => match resurgo_route::proxy::Proxy::start(listen, backend) {
                    Ok(proxy) => {
                        self.emit(Event::new(
                            EventKind::RouteSwitched,
                            format!("route {name} listens on {listen}, leads to {backend}"),
                        ));
                        self.proxies.insert(name.clone(), proxy);
                    }
                    Err(e) => {
                        if !self.route_errors.contains(&name) {
                            self.emit(Event::new(
                                EventKind::RouteFailed,
                                format!("route {name}: cannot listen on {listen}: {e}"),
                            ));
                        }
                        self.route_errors.insert(name);
                        continue;
                    }
                },
            }
            self.route_errors.remove(&name);
        }
    }

    /// Backups, replication, verification and RPO tracking (see [`crate::schedule`]).
    fn protect(&mut self, system: &resurgo_spec::System) {
        let mut events = Vec::new();
        self.protection
            .tick(system, &self.engine, &self.config.state_dir, &mut |e| events.push(e));
        for e in events {
            self.emit(e);
        }
    }

    /// Collects the results of corrections that have finished.
    fn drain(&mut self) {
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Corrected(key, Ok(())) => {
                    self.inflight.remove(&key);
                    let what = self.drift.remove(&key).unwrap_or_default();
                    self.emit(
                        Event::new(EventKind::DriftCorrected, format!("corrected: {what}"))
                            .site(&key.0)
                            .service(&key.1),
                    );
                }
                Msg::Corrected(key, Err(e)) => {
                    self.inflight.remove(&key);
                    self.emit(
                        Event::new(EventKind::ApplyFailed, e.to_string())
                            .site(&key.0)
                            .service(&key.1),
                    );
                }
            }
        }
    }

    fn poll_source(&mut self) {
        let asked = self.shared.as_ref().is_some_and(|s| s.take_poll_request());
        if !asked && self.last_poll.is_some_and(|t| t.elapsed() < self.config.poll) {
            return;
        }
        self.last_poll = Some(Instant::now());
        let cache = self.config.state_dir.join("git");
        match load_and_remember(&self.config.source, &cache, &self.config.overrides, &self.lkg) {
            Ok(desired) => {
                self.load_error = None;
                if self.git_down {
                    self.git_down = false;
                    self.emit(
                        Event::new(EventKind::GitReachable, "source reachable again")
                            .commit(Some(&desired.source.label())),
                    );
                }
                if self.commit().as_deref() != Some(desired.source.label().as_str()) {
                    let msg = format!("desired state is now {}", desired.source.label());
                    self.adopt(desired);
                    self.emit(Event::new(EventKind::DesiredChanged, msg));
                }
            }
            Err(LoadError::Source(e)) if e.is_transient() => {
                self.load_error = Some(e.to_string());
                if !self.git_down {
                    self.git_down = true;
                    self.emit(Event::new(EventKind::GitUnreachable, e.to_string()));
                }
                self.fall_back();
            }
            Err(e) => {
                let first = match &e {
                    LoadError::Spec(s) => s.diagnostics.first().map_or_else(
                        || e.to_string(),
                        |d| format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message),
                    ),
                    LoadError::Source(s) => s.to_string(),
                    other => other.to_string(),
                };
                self.load_error = Some(match &e {
                    LoadError::Spec(s) => s.to_string(),
                    _ => first.clone(),
                });
                self.emit(Event::new(
                    EventKind::SpecInvalid,
                    format!("{first}; keeping the previous desired state"),
                ));
                self.fall_back();
            }
        }
    }

    /// Takes `desired` as the desired state. The engine's preparer follows it, so standby
    /// instances are seeded from the spec in force (it replaces any preparer given).
    fn adopt(&mut self, desired: Desired) {
        self.engine.preparer = Some(crate::protect::standby_preparer(&self.engine, &desired.loaded.system));
        if let Some(shared) = &self.shared {
            shared.publish(desired.clone());
        }
        self.desired = Some(desired);
    }

    /// Without a desired state yet, take the last-known-good copy.
    fn fall_back(&mut self) {
        if self.desired.is_some() {
            return;
        }
        if let Some(desired) = self.lkg.load(&self.config.overrides) {
            let msg = format!("using last-known-good desired state {}", desired.source.label());
            self.adopt(desired);
            self.emit(Event::new(EventKind::UsingLastKnownGood, msg));
        }
    }
}

fn describe(change: &resurgo_plan::Change) -> String {
    let action = serde_json::to_value(&change.action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut out = action;
    if !change.fields.is_empty() {
        out.push_str(&format!(" (changed: {})", change.fields.join(", ")));
    }
    if let Some(reason) = &change.reason {
        out.push_str(&format!(" ({reason})"));
    }
    out
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod scope_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_immediate_then_doubles_to_a_cap() {
        let t = Instant::now();
        let delays: Vec<u64> = (0..8)
            .map(|failures| {
                Backoff {
                    failures,
                    last_start: t,
                }
                .delay()
                .as_secs()
            })
            .collect();
        assert_eq!(delays, [0, 1, 2, 4, 8, 16, 30, 30]);
        assert!(Backoff {
            failures: 0,
            last_start: t
        }
        .ready(t));
        assert!(!Backoff {
            failures: 2,
            last_start: t
        }
        .ready(t + Duration::from_millis(1500)));
    }
}
