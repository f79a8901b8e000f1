//! `resurgo agent`: the process at each site (and at the witness) that makes roles real.
//!
//! Every heartbeat interval, a site's agent
//! - answers heartbeats on `<site address>:<agent_port>` (a listener thread);
//! - for each group, decides its role by [`decide_startup`] against the last epoch this site
//!   saw *of that group* (kept per group across restarts): primary only if the store names this
//!   site at an epoch not below it; a store that went back in time fences the group here;
//! - on a thread of its own ([`Renewer`]), renews the primary leases it holds; the fencing
//!   clock counts from when the last successful renewal was *sent*, on the boot clock; when a
//!   lease cannot be renewed for the fencing deadline (or is gone), it fences: stops the group's
//!   services here. Long work on the main thread (starting a database, a whole failover) never
//!   delays a renewal;
//! - for each group whose primary is elsewhere and which keeps a standby here, probes the
//!   primary's agent, measures the standby's lag, asks the store whether the witness still sees
//!   the primary, and — when the primary is dead (suspect here and lost by the witness), the
//!   policy is automatic, no maintenance is on and the cool-down has passed — runs the failover
//!   to this site, acting on this site only;
//! - when the group moved away while it was fenced, rejoins as a standby: the standby instance
//!   is started on a fresh copy of the new primary (the old data is set aside, never deleted).
//! - reverts the drill faults whose `until` has passed (every tick, and when it starts: the
//!   dead man's switch of [`crate::faults`]); while a drill's `stop_site` order is in force
//!   its site is dark — no heartbeat answered, no lease renewed, nothing served — as a lost
//!   host.
//!
//! The witness (`--witness`) probes every site's agent and holds the lease `witness-sees-<s>`
//! while it receives `s`'s heartbeats.
//!
//! An agent in a site daemon ([`crate::daemon`]) follows the spec its daemon's controller
//! loads ([`Agent::following`]): services, datasets, routes and the failover policy
//! (`automatic`, `cooldown`) take effect at its next tick. The rest of `failover` — timing,
//! coordination store, witness, agent port — and the sites' addresses stay those it started
//! with until it restarts: its held leases were granted, its listener bound and its store
//! opened under them.
//!
//! The decisions are `resurgo_coord::fence`'s pure functions; this file does the I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use resurgo_coord::fence::{
    decide_startup, decide_tick, EpochFile, EpochMemory, FailureDetector, FenceReason, SiteStatus, StartupDecision,
    StoreView, TickDecision, WitnessView,
};
use resurgo_coord::{Assignment, BootTime, CoordStore, LeaseId};
use resurgo_plan::{make_plan, Action, PlanOptions, ProcessState};
use resurgo_provider::Provider;
use resurgo_spec::System;

use crate::engine::Engine;
use crate::events::{Event, EventKind, EventLog};
use crate::failover::{Detection, RunOptions};
use crate::protect::Protector;
use crate::roles::{group_of, primary_lease, witness_lease, MAINTENANCE};

/// Who this agent is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Site(String),
    Witness,
}

pub struct Agent {
    /// The spec as written (assignments not applied), and where it came from.
    spec: System,
    source: resurgo_plan::SourceId,
    engine: Engine,
    state_dir: PathBuf,
    role: Role,
    store: Arc<dyn CoordStore>,
    events: EventLog,
    started: Instant,
    /// The primary leases held here, shared with the [`Renewer`] thread.
    held: Arc<Mutex<Held>>,
    /// Heartbeats, probed on their own thread so that a slow store or database never delays
    /// detection.
    probes: Arc<Mutex<Probes>>,
    dead_since: BTreeMap<String, SystemTime>,
    reported: BTreeSet<String>,
    /// In-process (the one-machine default): the agent stands for its site, so it stops
    /// answering heartbeats and renewing the lease when its site cannot be observed.
    in_process: bool,
    /// Whether it answers heartbeats and renews its leases: not while its site is lost
    /// (in-process) or dark (a drill's `stop_site` order, [`crate::faults`]).
    answering: Arc<AtomicBool>,
    /// Back-offs: restarting a crashed service here, and retrying a failover that did not
    /// succeed (per lost site): when the next attempt may be, and the wait after it.
    crash_backoff: Option<(Instant, Duration)>,
    failover_backoff: BTreeMap<String, (Instant, Duration)>,
    /// Groups handed over to a run at another site, and the epoch that run takes them at
    /// ([`crate::roles::handover`]).
    handed_over: BTreeMap<String, u64>,
    /// The spec its daemon publishes, and the generation of it taken last.
    following: Option<(crate::desired::SharedSpec, u64)>,
    /// The spec, shared with the [`Renewer`] (which fences the services it declares).
    renewer_spec: Arc<Mutex<System>>,
    /// Whether the site's workspaces are being tended ([`crate::workspace::tend`], on a
    /// thread of its own: a re-seed takes seconds, a tick may not).
    tending: Arc<AtomicBool>,
}

/// Brings `site` to the desired state of `system`: creates, updates and starts (a standby
/// instance is seeded first); never deletes. Active instances start only for the services
/// `may_be_active` allows (those whose group's lease the caller holds). What an agent does for
/// its own site, and what a failback does first at the site it returns to (reverse
/// replication).
pub fn serve_site(
    engine: &Engine,
    system: &System,
    source: &resurgo_plan::SourceId,
    site: &str,
    may_be_active: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    let handle = engine.site(system, site).ok_or_else(|| format!("no site `{site}`"))?;
    let mut desired = resurgo_plan::desired_state(system);
    desired.retain(|s, _| s == site);
    // Its own site, never set up from this state folder: set up here (as `apply` would).
    let (observed, new) = engine.observe_for_apply(std::slice::from_ref(&handle));
    engine
        .set_up(std::slice::from_ref(&handle), &new)
        .map_err(|e| e.to_string())?;
    let mut plan = make_plan(
        &system.name,
        source.clone(),
        &desired,
        &observed,
        PlanOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    for s in &mut plan.sites {
        s.changes.retain(|c| {
            matches!(c.action, Action::Create | Action::Update | Action::Start)
                && c.config
                    .as_ref()
                    .is_none_or(|config| config.role != resurgo_plan::Role::Active || may_be_active(&c.service))
        });
    }
    let engine = engine
        .clone()
        .with_preparer(crate::protect::standby_preparer(engine, system));
    engine
        .apply(&plan, &[handle], &|_| {})
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The primary leases a site's agent holds, and the groups fenced here. The main thread takes
/// leases and serves; the [`Renewer`] renews and fences.
#[derive(Default)]
struct Held {
    /// Group → its lease and when the last successful renewal (or the grant) was sent.
    leases: BTreeMap<String, (LeaseId, BootTime)>,
    /// Groups fenced here (services stopped), and why.
    fenced: BTreeMap<String, String>,
    /// Groups whose services a fence is stopping right now: not served until it is done.
    fencing: BTreeSet<String>,
    /// Fences begun so far: a serve that a fence overlapped does not count as unfencing.
    fences: u64,
}

impl Held {
    /// Begins fencing `group`: its lease is no longer renewed, and it is not served again
    /// until [`finish_fence`] has stopped its services. Returns whether the group was serving
    /// until now (not fenced already).
    fn fence(&mut self, group: &str, why: &str) -> bool {
        self.leases.remove(group);
        self.fencing.insert(group.to_string());
        self.fences += 1;
        self.fenced.insert(group.to_string(), why.to_string()).is_none()
    }
}

/// Carries out a fence begun with [`Held::fence`]: stops the group's services at the site, then
/// lets the group be served again (once its lease is back). The event to report it.
fn finish_fence(held: &Mutex<Held>, engine: &Engine, spec: &System, site: &str, group: &str, why: &str) -> Event {
    fence_group(engine, spec, site, group);
    held.lock().unwrap_or_else(|e| e.into_inner()).fencing.remove(group);
    Event::new(EventKind::Fenced, format!("{group}: {why}; writes stopped here")).site(site)
}

/// Which groups a site's agent serves as primary now: it holds the group's lease and is not
/// fencing it, nor fenced, and its site is not dark. What its daemon's controller may start
/// active instances of (see [`crate::reconcile::Controller::gated`]). Cheap to clone; every
/// clone sees the agent's state.
#[derive(Clone)]
pub struct Serving {
    held: Arc<Mutex<Held>>,
    answering: Arc<AtomicBool>,
}

impl Serving {
    /// Whether the agent serves `group` (`site-<s>`) as its primary now.
    pub fn holds(&self, group: &str) -> bool {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        !self.dark()
            && held.leases.contains_key(group)
            && !held.fencing.contains(group)
            && !held.fenced.contains_key(group)
    }

    /// Whether the site is dark: its agent answers no heartbeat and renews no lease (a
    /// drill's `stop_site` order is in force, or, in one process with the other sites, its
    /// site cannot be observed). Its daemon then changes nothing at the site, as a lost host
    /// would not.
    pub fn dark(&self) -> bool {
        !self.answering.load(Ordering::Relaxed)
    }

    /// The agent's switch (true: it answers heartbeats and renews its leases), which a
    /// `stop_site` order applied through the site API turns off at once ([`crate::faults`]).
    pub fn switch(&self) -> Arc<AtomicBool> {
        self.answering.clone()
    }
}

/// What the heartbeat thread has seen of the other nodes.
struct Probes {
    detector: FailureDetector,
    /// When each node last answered.
    last_ok: BTreeMap<String, SystemTime>,
    /// Whether each node answered the latest probe.
    alive: BTreeMap<String, bool>,
}

/// Whether the agent at `addr` answers a heartbeat within half an interval.
fn heartbeat(addr: SocketAddr, interval: Duration) -> bool {
    let wait = (interval / 2).max(Duration::from_millis(100));
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, wait) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(wait));
    let mut buf = [0u8; 64];
    matches!(conn.read(&mut buf), Ok(n) if n > 0 && buf[..n].starts_with(b"resurgo-agent"))
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Agent {
    pub fn new(
        spec: System,
        source: resurgo_plan::SourceId,
        engine: Engine,
        state_dir: &Path,
        role: Role,
    ) -> Result<Agent, String> {
        if let Role::Site(site) = &role {
            if !spec.sites.contains_key(site) {
                return Err(format!("no site `{site}` in the spec"));
            }
        }
        let store = crate::roles::open_store(&spec, state_dir).map_err(|e| e.to_string())?;
        let probes = Arc::new(Mutex::new(Probes {
            detector: FailureDetector::new(spec.failover.timing().suspect_after),
            last_ok: BTreeMap::new(),
            alive: BTreeMap::new(),
        }));
        Ok(Agent {
            events: EventLog::of_state(state_dir),
            renewer_spec: Arc::new(Mutex::new(spec.clone())),
            following: None,
            spec,
            source,
            engine,
            state_dir: state_dir.to_path_buf(),
            role,
            store,
            started: Instant::now(),
            held: Arc::new(Mutex::new(Held::default())),
            probes,
            dead_since: BTreeMap::new(),
            reported: BTreeSet::new(),
            in_process: false,
            answering: Arc::new(AtomicBool::new(true)),
            crash_backoff: None,
            failover_backoff: BTreeMap::new(),
            handed_over: BTreeMap::new(),
            tending: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The agent runs inside the controller, on the machine of every site (the one-machine
    /// default): a site is alive only while its state can be observed.
    pub fn in_process(mut self) -> Agent {
        self.in_process = true;
        self
    }

    /// The groups this agent serves as primary, as they change.
    pub fn serving(&self) -> Serving {
        Serving {
            held: self.held.clone(),
            answering: self.answering.clone(),
        }
    }

    /// The agent takes each spec published in `shared` (its daemon's controller publishes
    /// what it loads), at the start of its next tick.
    pub fn following(mut self, shared: crate::desired::SharedSpec) -> Agent {
        self.following = Some((shared, 0));
        self
    }

    /// Takes the newest spec published, if there is a newer one (see the module's doc for
    /// what waits for a restart). A spec that no longer declares this site is not taken.
    fn follow(&mut self) {
        let Some((shared, seen)) = &mut self.following else {
            return;
        };
        let Some((generation, desired)) = shared.current().filter(|(g, _)| g != seen) else {
            return;
        };
        *seen = generation;
        let label = desired.source.label();
        let mut spec = desired.loaded.system.clone();
        if let Role::Site(site) = &self.role {
            if !spec.sites.contains_key(site) {
                self.emit(
                    Event::new(
                        EventKind::SpecInvalid,
                        format!("{label} does not declare site `{site}`: the agent keeps the spec it has"),
                    )
                    .site(site),
                );
                return;
            }
        }
        let failover = resurgo_spec::Failover {
            automatic: spec.failover.automatic,
            cooldown: spec.failover.cooldown,
            ..self.spec.failover.clone()
        };
        if failover != spec.failover {
            self.emit(Event::new(
                EventKind::SpecInvalid,
                format!(
                    "{label} changes the failover timing, coordination, witness or agent port: \
                     they take effect when the agent restarts"
                ),
            ));
            spec.failover = failover;
        }
        tracing::debug!(commit = %label, "the agent follows the spec");
        *self.renewer_spec.lock().unwrap_or_else(|e| e.into_inner()) = spec.clone();
        self.spec = spec;
        self.source = desired.source.clone();
    }

    fn name(&self) -> String {
        match &self.role {
            Role::Site(s) => s.clone(),
            Role::Witness => "witness".into(),
        }
    }

    /// Where this agent answers heartbeats.
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        match &self.role {
            Role::Site(s) => Ok(SocketAddr::new(
                self.spec.sites[s].address,
                self.spec.failover.agent_port(),
            )),
            Role::Witness => self
                .spec
                .failover
                .witness
                .ok_or_else(|| "the spec names no `failover.witness` address".to_string()),
        }
    }

    fn emit(&self, event: Event) {
        event.log(false);
        let _ = self.events.append(&event);
    }

    /// Runs until `stop` is set: the heartbeat listener, and one tick per interval.
    pub fn run(mut self, stop: &AtomicBool) -> Result<(), String> {
        let _span = match &self.role {
            Role::Site(site) => tracing::info_span!("agent", site = %site),
            Role::Witness => tracing::info_span!("witness"),
        }
        .entered();
        let addr = self.listen_addr()?;
        // The dead man's switch, at start: a drill's fault past its `until` (its drill died,
        // and so did this agent, maybe) is reverted first; a site still dark stays silent.
        if let Role::Site(site) = self.role.clone() {
            self.revert_expired_faults(&site);
            if crate::faults::dark(&self.state_dir, &site) {
                self.answering.store(false, Ordering::Relaxed);
            }
        }
        let listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let hello = format!("resurgo-agent {}\n", self.name());
        let answering = self.answering.clone();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                if answering.load(Ordering::Relaxed) {
                    let _ = conn.write_all(hello.as_bytes());
                }
            }
        });
        let started = Event::new(EventKind::AgentStarted, format!("listening on {addr}"));
        self.emit(match &self.role {
            Role::Site(site) => started.site(site),
            Role::Witness => started,
        });
        let interval = self.spec.failover.timing().heartbeat_interval;
        let me = self.name();
        let peers: Vec<(String, SocketAddr)> = self
            .spec
            .sites
            .iter()
            .filter(|(name, _)| **name != me)
            .map(|(name, site)| {
                (
                    name.clone(),
                    SocketAddr::new(site.address, self.spec.failover.agent_port()),
                )
            })
            .collect();
        let probes = self.probes.clone();
        // A site's agent records each round for its `/metrics` (`liveness.rs`).
        let record = match &self.role {
            Role::Site(site) => Some((self.state_dir.clone(), site.clone())),
            Role::Witness => None,
        };
        std::thread::spawn(move || loop {
            let begin = Instant::now();
            for (name, addr) in &peers {
                let ok = heartbeat(*addr, interval);
                let mut p = probes.lock().unwrap_or_else(|e| e.into_inner());
                p.detector.heartbeat(name, ok);
                p.alive.insert(name.clone(), ok);
                if ok {
                    p.last_ok.insert(name.clone(), SystemTime::now());
                }
            }
            if let Some((state, site)) = &record {
                let p = probes.lock().unwrap_or_else(|e| e.into_inner());
                let round = crate::liveness::Heartbeats {
                    written: crate::liveness::unix_now(),
                    interval_s: interval.as_secs_f64(),
                    sites: peers
                        .iter()
                        .map(|(name, _)| {
                            let seen = crate::liveness::Seen {
                                last_answered: p.last_ok.get(name).map(|t| crate::liveness::unix(*t)),
                                answered: p.alive.get(name).copied().unwrap_or(false),
                            };
                            (name.clone(), seen)
                        })
                        .collect(),
                };
                drop(p);
                crate::liveness::record_heartbeats(state, site, &round);
            }
            std::thread::sleep(interval.saturating_sub(begin.elapsed()));
        });
        let stop_renewer = Arc::new(AtomicBool::new(false));
        if let Role::Site(site) = &self.role {
            let renewer = Renewer {
                site: site.clone(),
                handle: self.handle(site).ok_or_else(|| format!("no site `{site}`"))?,
                spec: self.renewer_spec.clone(),
                engine: self.engine.clone(),
                store: self.store.clone(),
                events: self.events.clone(),
                held: self.held.clone(),
                answering: self.answering.clone(),
            };
            let stop = stop_renewer.clone();
            let span = tracing::Span::current();
            std::thread::spawn(move || span.in_scope(|| renewer.run(stop)));
        }
        let _stop_renewer = StopOnDrop(stop_renewer);
        while !stop.load(Ordering::Relaxed) {
            let begin = Instant::now();
            self.follow();
            match self.role.clone() {
                Role::Witness => self.witness_tick(),
                Role::Site(site) => self.site_tick(&site),
            }
            std::thread::sleep(interval.saturating_sub(begin.elapsed()));
        }
        Ok(())
    }

    fn probes(&self) -> std::sync::MutexGuard<'_, Probes> {
        self.probes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn witness_tick(&mut self) {
        let ttl = self.spec.failover.timing().lease_ttl;
        for site in self.spec.sites.keys().cloned().collect::<Vec<_>>() {
            let alive = self.probes().detector.status(&site, WitnessView::Unknown) == SiteStatus::Alive;
            let name = witness_lease(&site);
            let held = self.store.lease_of(&name);
            match (alive, held) {
                (true, Ok(Some(id))) => {
                    let _ = self.store.keep_alive(id);
                }
                (true, Ok(None)) => {
                    let _ = self.store.grant_lease(&name, "witness", ttl);
                }
                (false, Ok(Some(id))) => {
                    let _ = self.store.revoke(id);
                    self.emit(Event::new(EventKind::SiteSuspect, "the witness lost it").site(&site));
                }
                _ => {}
            }
        }
    }

    /// Groups: (group, the site the spec places it at, its assignment in the store if any).
    fn groups(&self) -> Result<Vec<(String, String, Option<Assignment>)>, String> {
        let mut homes: Vec<&String> = self.spec.services.values().map(|s| &s.site).collect();
        homes.sort();
        homes.dedup();
        homes
            .into_iter()
            .map(|home| {
                let group = group_of(home);
                let a = self.store.get_assignment(&group).map_err(|e| e.to_string())?;
                Ok((group, home.clone(), a))
            })
            .collect()
    }

    /// The spec with the assignments in force.
    fn current(&self, groups: &[(String, String, Option<Assignment>)]) -> System {
        let mut system = self.spec.clone();
        for (_, home, a) in groups {
            if let Some(a) = a.as_ref().filter(|a| a.primary_site != *home) {
                resurgo_plan::recovery::apply_move(&mut system, home, &a.primary_site);
            }
        }
        system
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last epoch this site saw of `group`, kept across restarts (one file per group).
    fn epoch_memory(&self, site: &str, group: &str) -> EpochFile {
        EpochFile::new(epoch_dir(&self.state_dir, site).join(group))
    }

    fn site_tick(&mut self, site: &str) {
        // The dead man's switch: a drill's fault past its `until` is reverted here, whether or
        // not its drill is still running.
        self.revert_expired_faults(site);
        // In one process with the other sites, the agent stands for its site: lost with it.
        let alive = !self.in_process || {
            let handle = self.engine.site(&self.spec, site);
            handle.is_some_and(|h| self.engine.provider.observe(&h).is_ok())
        };
        // A drill's `stop_site` in force: the site is dark, as a lost host.
        let dark = crate::faults::dark(&self.state_dir, site);
        // The site is lost (or dark), and its agent with it: no heartbeat, and the renewer
        // stops renewing (its groups fence at their deadline).
        self.answering.store(alive && !dark, Ordering::Relaxed);
        if !alive || dark {
            return;
        }
        self.tend_workspaces(site);
        // A store that cannot be read says nothing; the renewer counts the fencing deadline.
        let Ok(groups) = self.groups() else { return };
        let system = self.current(&groups);
        for (group, home, assignment) in &groups {
            let _span = tracing::info_span!("group", group = %group).entered();
            let memory = self.epoch_memory(site, group);
            // No assignment yet: the spec's placement, before any epoch.
            let view = StoreView::Assignment(assignment.clone().unwrap_or_else(|| Assignment {
                group: group.clone(),
                primary_site: home.clone(),
                epoch: 0,
                since: SystemTime::UNIX_EPOCH,
            }));
            let decision = match memory.load() {
                Ok(last_seen) => decide_startup(site, &view, last_seen),
                Err(e) => {
                    self.fence_now(site, group, &format!("the epoch memory cannot be read: {e}"));
                    continue;
                }
            };
            let epoch = match &decision {
                StartupDecision::Fenced { reason } => {
                    let why = match reason {
                        FenceReason::StaleStore { stored, last_seen } => {
                            format!("the store holds epoch {stored}, below {last_seen} seen here: it went back in time")
                        }
                        FenceReason::StoreUnreachable => "the store cannot be read".to_string(),
                    };
                    self.fence_now(site, group, &why);
                    continue;
                }
                StartupDecision::Primary { epoch } => *epoch,
                StartupDecision::Standby { epoch, .. } => epoch.unwrap_or(0),
            };
            if let Err(e) = memory.record(epoch) {
                self.fence_now(site, group, &format!("the epoch memory cannot be written: {e}"));
                continue;
            }
            // A run moving the group here is at work: it starts and promotes its services;
            // serving or rejoining under its feet could undo a step.
            if crate::failover::moving_to(&self.state_dir, site, group) {
                continue;
            }
            if let StartupDecision::Standby { primary, .. } = decision {
                let primary = primary.unwrap_or_else(|| home.clone());
                // Was primary here until now: it must come back as a standby (again).
                let was_primary = self.held().leases.remove(group).is_some();
                if self.reported.remove(&format!("serving {group}")) || was_primary {
                    self.reported.remove(&format!("standby {group}"));
                    self.held().fenced.remove(group);
                }
                let standby_here = self
                    .spec
                    .services
                    .values()
                    .any(|s| &s.site == home && (s.standby.iter().any(|x| x == site) || home == site));
                if standby_here {
                    self.watch_primary(site, group, &primary, &system);
                    self.rejoin(site, group, &system);
                }
            } else {
                self.keep_primary(site, group, &system);
            }
        }
    }

    /// The site's workspaces: expired ones deleted, preempted ones back once the site is idle
    /// ([`crate::workspace::tend`]), on a thread of its own, one round at a time.
    fn tend_workspaces(&self, site: &str) {
        if !crate::workspace::workspaces_dir(&self.state_dir).exists() || self.tending.swap(true, Ordering::AcqRel) {
            return;
        }
        let (engine, spec, state_dir, site, tending) = (
            self.engine.clone(),
            self.spec.clone(),
            self.state_dir.clone(),
            site.to_string(),
            Arc::clone(&self.tending),
        );
        std::thread::spawn(move || {
            crate::workspace::tend(&engine, &spec, &state_dir, &site);
            tending.store(false, Ordering::Release);
        });
    }

    /// Reverts the drill faults in force at `site` whose `until` has passed.
    fn revert_expired_faults(&self, site: &str) {
        let at = crate::faults::FaultSite {
            site,
            system: &self.spec,
            engine: &self.engine,
            state_dir: &self.state_dir,
            answering: Some(&self.answering),
        };
        for (fault, result) in crate::faults::revert_expired(&at) {
            if let Err(e) = result {
                tracing::warn!(id = %fault.order.id, "cannot revert an expired drill fault: {e}");
            }
        }
    }

    /// Takes (or adopts) the primary lease when it is not held here yet, then serves. Renewal
    /// and fencing are the [`Renewer`]'s.
    fn keep_primary(&mut self, site: &str, group: &str, system: &System) {
        let timing = self.spec.failover.timing();
        if self.hand_over_if_asked(site, group, system) {
            return;
        }
        if self.held().fencing.contains(group) {
            // The renewer is stopping the group's services: serve once they are stopped.
            return;
        }
        if !self.held().leases.contains_key(group) {
            // A lease is taken only for a site that is there to serve (set up, observable):
            // its fence deadline is written at once, and a lease let go for want of it would
            // be waited out (below) before it could be taken again.
            let observable = self
                .handle(site)
                .is_some_and(|h| self.engine.provider.observe(&h).is_ok());
            if !observable {
                return;
            }
            let name = primary_lease(group);
            let sent = BootTime::now();
            let id = match self.store.lease_holder(&name) {
                // Adopted only by an agent that has been up for a whole ttl: a lease this site
                // held before a restart is waited out, not taken over (it may be expiring while
                // another site takes it).
                Ok(Some((holder, _))) if holder == site && self.started.elapsed() >= timing.lease_ttl => {
                    self.store.lease_of(&name).ok().flatten()
                }
                Ok(None) => self.store.grant_lease(&name, site, timing.lease_ttl).ok(),
                other => {
                    tracing::debug!(group, "primary lease: {other:?}");
                    None
                }
            };
            let Some(id) = id else {
                tracing::debug!(group, "the primary lease is not ours to take yet");
                return;
            };
            tracing::debug!(group, lease = id.0, "primary lease taken");
            // The fence deadline is written under the lock that guards the leases, as the
            // renewer and a handover write it: none overwrites a newer decision. A lease whose
            // deadline is not on disk is let go at once: the services' supervisors fence by
            // that deadline alone, so without it a service started now would serve on after
            // this agent died (e.g. a site not set up yet when the lease was taken).
            let written = match self.handle(site) {
                Some(handle) => {
                    let mut held = self.held();
                    let written = self
                        .engine
                        .provider
                        .extend_fence(&handle, &sent.plus(timing.fencing_deadline));
                    if written.is_ok() {
                        held.leases.insert(group.to_string(), (id, sent.clone()));
                    }
                    written.map_err(|e| e.to_string())
                }
                None => Err(format!("site `{site}` is not declared")),
            };
            if let Err(e) = written {
                tracing::debug!(group, "cannot write the fence deadline, the lease is let go: {e}");
                if let Err(e) = self.store.revoke(id) {
                    tracing::debug!(group, "cannot let go of the lease: {e}; it expires");
                }
                return;
            }
        }
        let serving = format!("serving {group}");
        let crashed = self.crashed(site) && self.may_restart();
        let (fenced, fences) = {
            let held = self.held();
            (held.fenced.contains_key(group), held.fences)
        };
        if !(fenced || crashed || !self.reported.contains(&serving)) {
            return;
        }
        tracing::debug!(group, fenced, crashed, "serving");
        if self.serve(site, system) {
            // The renewer may have fenced the group while its services started (or while they
            // were seen running, before its stop took effect): only a serve that no fence
            // overlapped ends the fence; otherwise the next tick serves again.
            let held = self.held().leases.contains_key(group);
            let overlapped = self.held().fences != fences;
            if held && !overlapped {
                self.held().fenced.remove(group);
                self.reported.insert(serving);
                self.emit(Event::new(EventKind::Unfenced, format!("primary of {group}: serving")).site(site));
            } else if !held {
                fence_group(&self.engine, &self.spec, site, group);
            }
        }
    }

    /// A run at another site asks for `group` (a planned failover or failback whose target
    /// cannot reach this site's files): stops the group's services here — writers first, then
    /// databases, shut down cleanly — lets its lease go unrenewed, and answers with each
    /// database's shutdown checkpoint ([`crate::roles::handover`]). While the request stands the
    /// group is not served here; once it is gone, either the group moved (this site rejoins as a
    /// standby) or the run gave up (the group is served here again, its lease permitting).
    /// Returns whether the group is handed over.
    fn hand_over_if_asked(&mut self, site: &str, group: &str, system: &System) -> bool {
        use crate::roles::handover::{answer_lease, request_lease, Answer, Request};
        let Ok(Some((holder, _))) = self.store.lease_holder(&request_lease(group)) else {
            return false;
        };
        let Some(request) = Request::parse(&holder) else {
            return false;
        };
        let epoch = match self.store.get_assignment(group) {
            Ok(a) => a.map_or(0, |a| a.epoch),
            Err(_) => return false,
        };
        // Only a request for the very next epoch, from another site, is this group's.
        if request.to == site || request.epoch != epoch + 1 {
            return false;
        }
        if self.handed_over.get(group) == Some(&request.epoch) {
            return true;
        }
        let why = format!("handing {group} over to {} at epoch {}", request.to, request.epoch);
        self.held().fence(group, &why);
        // Still counted as served here until the group moves: then this site rejoins as a
        // standby afresh (see `site_tick`), or, if the run gives up, serves again.
        self.reported.remove(&format!("standby {group}"));
        fence_group(&self.engine, &self.spec, site, group);
        self.held().fencing.remove(group);
        // The fence deadline the last renewal set would otherwise still pass in a moment and
        // stop what starts here next (this site's standby, rejoining): with no lease held any
        // more, it is now. Under the leases' lock: a renewal round that read the lease before
        // it went cannot then move the deadline forward again.
        let handle = self.handle(site);
        let held = self.held();
        if held.leases.is_empty() {
            if let Some(handle) = handle {
                let _ = self.engine.provider.extend_fence(&handle, &BootTime::now());
            }
        }
        drop(held);
        // Its services stopped, the site lets go of the group's lease itself: the run takes it
        // once it is free and never has to revoke a lease (which, were this site to serve again
        // meanwhile, would be a live one).
        let lease = primary_lease(group);
        if self
            .store
            .lease_holder(&lease)
            .is_ok_and(|h| h.is_some_and(|(h, _)| h == site))
        {
            if let Ok(Some(id)) = self.store.lease_of(&lease) {
                if let Err(e) = self.store.revoke(id) {
                    tracing::warn!(group, "cannot let go of the lease: {e}; the run waits for it to expire");
                }
            }
        }
        // Each database's shutdown checkpoint, read here where its data directory is.
        let protector = crate::protect::Protector::new(system, &self.engine, &self.state_dir);
        let home = group.trim_start_matches("site-");
        let checkpoints = self
            .spec
            .datasets
            .iter()
            .filter(|(_, ds)| ds.kind == resurgo_spec::DatasetKind::Postgres)
            .filter(|(_, ds)| self.spec.services.get(&ds.service).is_some_and(|s| s.site == home))
            .filter_map(|(name, _)| {
                let pgdata = protector.data_path(name, site).ok()?;
                let lsn = resurgo_vault::pg::shutdown_checkpoint(&pgdata).ok()??;
                Some((name.clone(), lsn.to_string()))
            })
            .collect();
        let answer = Answer {
            from: site.to_string(),
            epoch: request.epoch,
            checkpoints,
        };
        let ttl = self.spec.failover.timing().lease_ttl * 3;
        // An answer to an older request may still be there: this one replaces it.
        if let Ok(Some(old)) = self.store.lease_of(&answer_lease(group)) {
            let _ = self.store.revoke(old);
        }
        if let Err(e) = self.store.grant_lease(&answer_lease(group), &answer.holder(), ttl) {
            tracing::warn!(group, "cannot answer the handover: {e}");
            return true;
        }
        self.handed_over.insert(group.to_string(), request.epoch);
        self.emit(
            Event::new(
                EventKind::Fenced,
                format!("{why}: writes stopped here ({})", answer.holder()),
            )
            .site(site),
        );
        true
    }

    fn handle(&self, site: &str) -> Option<resurgo_provider::SiteHandle> {
        self.engine.site(&self.spec, site)
    }

    /// Fences `group` here at once (the store cannot be trusted): its lease is no longer
    /// renewed and its services are stopped. Reported once.
    fn fence_now(&mut self, site: &str, group: &str, why: &str) {
        let first = self.held().fence(group, why);
        self.reported.remove(&format!("serving {group}"));
        let event = finish_fence(&self.held, &self.engine, &self.spec, site, group, why);
        if first {
            self.emit(event);
        }
    }

    /// Whether a crashed service may be restarted now: at once the first time, then after 1, 2,
    /// 4 … 30 s while it keeps crashing.
    fn may_restart(&mut self) -> bool {
        let now = Instant::now();
        match self.crash_backoff {
            Some((next, _)) if now < next => false,
            Some((next, wait)) if now < next + Duration::from_secs(30) => {
                let wait = (wait * 2).min(Duration::from_secs(30));
                self.crash_backoff = Some((now + wait, wait));
                true
            }
            // First crash, or the last one was long enough ago to forgive.
            _ => {
                self.crash_backoff = Some((now + Duration::from_secs(1), Duration::from_secs(1)));
                true
            }
        }
    }

    /// Whether a service of this site ended without resurgo stopping it (a crashed database):
    /// the primary brings it back.
    fn crashed(&self, site: &str) -> bool {
        let Some(handle) = self.engine.site(&self.spec, site) else {
            return false;
        };
        self.engine.provider.observe(&handle).is_ok_and(|seen| {
            seen.iter().any(|s| {
                s.config.role == resurgo_plan::Role::Active && matches!(s.process, ProcessState::Exited { .. })
            })
        })
    }

    /// Brings this site to the desired state (creates, updates and starts; never deletes).
    /// Returns whether it got there.
    fn serve(&self, site: &str, system: &System) -> bool {
        // Only the groups whose lease is held here start active: a site rejoining one group
        // as a standby does not start another group's primaries without that group's lease.
        let may_be_active = |service: &str| {
            self.spec
                .services
                .get(service)
                .is_some_and(|svc| self.held().leases.contains_key(&crate::roles::group_of(&svc.site)))
        };
        match serve_site(&self.engine, system, &self.source, site, &may_be_active) {
            Ok(()) => true,
            Err(e) => {
                self.emit(Event::new(EventKind::ApplyFailed, e).site(site));
                false
            }
        }
    }

    /// After the group moved away from this site: come back as its standby, once.
    fn rejoin(&mut self, site: &str, group: &str, system: &System) {
        let key = format!("standby {group}");
        if self.reported.contains(&key) {
            return;
        }
        let Some(handle) = self.engine.site(system, site) else {
            return;
        };
        let running_active = self.engine.provider.observe(&handle).is_ok_and(|seen| {
            seen.iter().any(|s| {
                matches!(s.process, ProcessState::Running { .. })
                    && s.config.role == resurgo_plan::Role::Active
                    && system.services.get(&s.service).is_some_and(|svc| svc.site != site)
            })
        });
        if running_active {
            // Still serving as the old primary: fence first (the lease says it is not primary).
            fence_group(&self.engine, &self.spec, site, group);
        }
        if self.serve(site, system) {
            self.reported.insert(key);
            self.emit(Event::new(EventKind::Rejoined, format!("{group}: a standby here")).site(site));
        }
    }

    /// Probes the primary; with a standby here, records its lag; fails over when the primary
    /// is dead and the policy allows.
    fn watch_primary(&mut self, site: &str, group: &str, primary: &str, system: &System) {
        let alive = self.probes().alive.get(primary).copied().unwrap_or(false);
        let now = SystemTime::now();
        if alive {
            if self
                .reported
                .iter()
                .any(|r| r.starts_with(&format!("suspect {primary} ")))
            {
                self.reported.retain(|r| !r.starts_with(&format!("suspect {primary} ")));
                self.emit(Event::new(EventKind::SiteReachable, "answers heartbeats again").site(primary));
            }
            self.dead_since.remove(primary);
            let protector = Protector::new(system, &self.engine, &self.state_dir);
            for name in system.datasets.keys() {
                if protector.standby_site(name).ok().flatten().as_deref() == Some(site) {
                    if let Err(e) = protector.standby_lag(name, site) {
                        let e = e.to_string();
                        if self.reported.insert(format!("lag {name} {e}")) {
                            self.emit(Event::new(EventKind::StandbyLagging, format!("{name}: {e}")).site(site));
                        }
                    }
                }
            }
            return;
        }
        let witness = match self.store.lease_holder(&witness_lease(primary)) {
            Ok(Some(_)) => WitnessView::Sees,
            Ok(None) => WitnessView::Lost,
            Err(_) => WitnessView::Unknown,
        };
        let status = self.probes().detector.status(primary, witness);
        match status {
            SiteStatus::Alive => {}
            SiteStatus::Suspect { misses, vetoed } => {
                if self.reported.insert(format!("suspect {primary} {vetoed}")) {
                    let why = if vetoed {
                        "the witness still sees it: no failover"
                    } else {
                        "the witness cannot be asked"
                    };
                    self.emit(
                        Event::new(EventKind::SiteSuspect, format!("{misses} heartbeats missed; {why}")).site(primary),
                    );
                }
            }
            // A site never seen alive from here is not declared dead: it may not have started.
            SiteStatus::Dead if !self.probes().last_ok.contains_key(primary) => {}
            SiteStatus::Dead => {
                let since = *self.dead_since.entry(primary.to_string()).or_insert(now);
                if since == now {
                    self.emit(Event::new(EventKind::SiteDead, "missed here and lost by the witness").site(primary));
                }
                self.maybe_fail_over(site, group, primary, system, since);
            }
        }
    }

    fn maybe_fail_over(&mut self, site: &str, group: &str, primary: &str, system: &System, dead_since: SystemTime) {
        let failover = &self.spec.failover;
        let now = SystemTime::now();
        let suppressed = if !failover.automatic {
            Some("automatic failover is off: run `resurgo failover` to move".to_string())
        } else if matches!(self.store.lease_holder(MAINTENANCE), Ok(Some(_))) {
            Some("maintenance is on".to_string())
        } else if let Ok(Some(a)) = self.store.get_assignment(group) {
            now.duration_since(a.since)
                .ok()
                .filter(|d| *d < failover.cooldown())
                .map(|d| format!("cool-down: the last failover was {}s ago", d.as_secs()))
        } else {
            None
        };
        if now.duration_since(dead_since).unwrap_or_default() < failover.timing().promotion_delay {
            return;
        }
        if self
            .failover_backoff
            .get(primary)
            .is_some_and(|(next, _)| Instant::now() < *next)
        {
            return;
        }
        if let Some(why) = suppressed {
            if self.reported.insert(format!("suppressed {primary} {why}")) {
                self.emit(Event::new(EventKind::FailoverSuppressed, why).site(primary));
            }
            return;
        }
        let detection = Detection {
            last_heartbeat_ms: self.probes().last_ok.get(primary).map_or(0, |t| unix_ms(*t)),
            declared_dead_ms: unix_ms(dead_since),
            decided_ms: unix_ms(now),
        };
        self.emit(
            Event::new(
                EventKind::FailoverStarted,
                format!("{primary} is dead: moving {group} here"),
            )
            .site(site),
        );
        let options = RunOptions {
            local: Some(site.to_string()),
            detection: Some(detection),
            ..Default::default()
        };
        let engine = self
            .engine
            .clone()
            .with_preparer(crate::protect::standby_preparer(&self.engine, system));
        // A run of ours that stopped part-way is finished, not started again.
        let run = match crate::failover::unfinished(&self.state_dir, primary, site) {
            Some(run) => crate::failover::resume(system, &engine, &self.state_dir, &run),
            None => crate::failover::execute(&self.spec, system, &engine, &self.state_dir, primary, site, options),
        };
        let succeeded = match run {
            Ok(report) => {
                self.emit(
                    Event::new(
                        EventKind::FailoverFinished,
                        format!("run {}: {}", report.run, report.outcome),
                    )
                    .site(site),
                );
                matches!(report.outcome, resurgo_runbook::run::RunOutcome::Succeeded)
            }
            Err(e) => {
                self.emit(Event::new(EventKind::FailoverFailed, e.to_string()).site(site));
                false
            }
        };
        // A run that did not succeed is tried again after 2, 4, 8 … 60 s, not every tick.
        if succeeded {
            self.failover_backoff.remove(primary);
        } else {
            let wait = self
                .failover_backoff
                .get(primary)
                .map_or(Duration::from_secs(2), |(_, w)| (*w * 2).min(Duration::from_secs(60)));
            self.failover_backoff
                .insert(primary.to_string(), (Instant::now() + wait, wait));
        }
        self.dead_since.remove(primary);
    }
}

/// Where a site's agent keeps the last epoch it saw of each group (one file per group).
fn epoch_dir(state_dir: &Path, site: &str) -> PathBuf {
    state_dir.join("agents").join(site).join("epochs")
}

/// Stops every service of `group` running at `site` (the writers).
fn fence_group(engine: &Engine, spec: &System, site: &str, group: &str) {
    let home = group.trim_start_matches("site-");
    let Some(handle) = engine.site(spec, site) else {
        return;
    };
    // Writers first, then the databases they write to: a database's clean shutdown then sends
    // everything acknowledged to its standbys.
    let owns_database = |service: &str| {
        spec.datasets
            .values()
            .any(|d| d.service == service && d.kind == resurgo_spec::DatasetKind::Postgres)
    };
    // A standby instance writes nothing: a fence leaves it alone (one that overlaps this
    // site rejoining as a standby must not stop the standby it just started). What cannot be
    // observed is stopped, whatever its role.
    let standbys: BTreeSet<String> = engine
        .provider
        .observe(&handle)
        .map(|seen| {
            seen.into_iter()
                .filter(|s| s.config.role == resurgo_plan::Role::Standby)
                .map(|s| s.service)
                .collect()
        })
        .unwrap_or_default();
    let (databases, writers): (Vec<&String>, Vec<&String>) = spec
        .services
        .iter()
        .filter(|(name, svc)| svc.site == home && !standbys.contains(*name))
        .map(|(name, _)| name)
        .partition(|name| owns_database(name));
    for name in writers.into_iter().chain(databases) {
        let _ = engine.provider.stop(&handle, name);
    }
}

/// Renews a site's primary leases on a thread of its own, every heartbeat interval, and fences
/// a group whose lease is gone or has not been renewed for the fencing deadline, counted from
/// when the last successful renewal was sent (on the boot clock). After each round it moves
/// the site's fence deadline forward ([`resurgo_provider::Provider::extend_fence`]) to the
/// earliest of the held leases' last renewal plus the fencing deadline.
struct Renewer {
    site: String,
    /// The site's handle, for its fence deadline.
    handle: resurgo_provider::SiteHandle,
    /// The agent's spec, as it follows its daemon's (the failover timing never changes).
    spec: Arc<Mutex<System>>,
    engine: Engine,
    store: Arc<dyn CoordStore>,
    events: EventLog,
    held: Arc<Mutex<Held>>,
    /// Whether the agent answers for its site: false while the site is dark (a drill's
    /// `stop_site`) or, in-process, cannot be observed — a lost site's agent renews nothing.
    answering: Arc<AtomicBool>,
}

impl Renewer {
    fn spec(&self) -> System {
        self.spec.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn run(self, stop: Arc<AtomicBool>) {
        let interval = self.spec().failover.timing().heartbeat_interval;
        while !stop.load(Ordering::Relaxed) {
            let begin = Instant::now();
            self.round();
            std::thread::sleep(interval.saturating_sub(begin.elapsed()));
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, event: Event) {
        event.log(false);
        let _ = self.events.append(&event);
    }

    /// One round: renew each held lease, fence what must be fenced, move the fence deadline.
    fn round(&self) {
        let spec = self.spec();
        let deadline = spec.failover.timing().fencing_deadline;
        let leases: Vec<(String, LeaseId, BootTime)> = self
            .held()
            .leases
            .iter()
            .map(|(g, (id, sent))| (g.clone(), *id, sent.clone()))
            .collect();
        let mut fenced_any = false;
        for (group, id, last) in leases {
            let sent = BootTime::now();
            let renewed = if !self.answering.load(Ordering::Relaxed) {
                Err("the site is lost (it cannot be observed, or a drill made it dark)".to_string())
            } else {
                self.store.keep_alive(id).map_err(|e| e.to_string())
            };
            let why = match renewed {
                Ok(true) => {
                    if let Some(entry) = self.held().leases.get_mut(&group).filter(|(held, _)| *held == id) {
                        entry.1 = sent;
                    }
                    continue;
                }
                Ok(false) => "the primary lease is gone (expired or revoked)".to_string(),
                Err(e) => {
                    let now = BootTime::now();
                    let ms = |t: &BootTime| Duration::from_millis(t.ms);
                    if decide_tick(false, ms(&last), ms(&now), deadline) != TickDecision::Fence {
                        continue;
                    }
                    format!("the primary lease could not be renewed for {deadline:?} ({e})")
                }
            };
            let fenced_now = {
                let mut held = self.held();
                let ours = held.leases.get(&group).is_some_and(|(held, _)| *held == id);
                ours && held.fence(&group, &why)
            };
            if fenced_now {
                self.emit(finish_fence(&self.held, &self.engine, &spec, &self.site, &group, &why));
                fenced_any = true;
            }
        }
        // Computed and written under the leases' lock: a lease let go meanwhile (a handover)
        // is not counted, and the deadline the handover set is not overwritten. With the last
        // lease fenced this round the deadline is now, as a handover sets it: the one the last
        // renewal set would otherwise pass in a moment and stop what starts here next (this
        // site's standby, rejoining).
        let extended = {
            let held = self.held();
            let until = held
                .leases
                .values()
                .map(|(_, sent)| sent.plus(deadline))
                .min_by_key(|t| t.ms)
                .or_else(|| fenced_any.then(BootTime::now));
            until.map(|until| self.engine.provider.extend_fence(&self.handle, &until))
        };
        if let Some(Err(e)) = extended {
            self.emit(
                Event::new(EventKind::ApplyFailed, format!("cannot extend the fence deadline: {e}")).site(&self.site),
            );
        }
    }
}

/// Sets its flag when dropped: the renewer stops with the agent, however the agent ends.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[path = "agent_tests.rs"]
mod tests;
