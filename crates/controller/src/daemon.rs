//! A site daemon: everything one site runs, in one process (DESIGN §10, `resurgo agent --site
//! S`). Its controller loop, scoped to the site ([`ControllerConfig::site`]), reads the spec
//! from its source (else the last-known-good copy on disk, so a restart while the Git host is
//! down still works), reconciles the site, runs the schedules of its datasets and serves its
//! proxy routes; its [`Agent`] holds and renews the site's leases, fences it, watches the
//! primary from a standby and runs the recovery runs whose target it is. They share one spec:
//! each the controller adopts is published ([`SharedSpec`]) and the agent takes it at its next
//! tick, so a spec change needs no restart. The controller starts an active instance only of
//! a group the agent serves as primary ([`Controller::gated`]).
//!
//! `resurgo controller --agents` runs one site daemon per site (and the witness) on threads of
//! one process: the same code as on separate hosts, except that an agent there stands for its
//! site ([`Agent::in_process`]).
//!
//! [`SiteContext`] is what the daemon shares with whatever else serves the site (the site API):
//! a handle to clone onto another thread.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::agent::{Agent, Role};
use crate::desired::{Desired, SharedSpec};
use crate::engine::Engine;
use crate::events::EventLog;
use crate::reconcile::{Controller, ControllerConfig};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Neither the source nor a last-known-good copy gives a valid spec: nothing to act on.
    /// Trying again can help once the source answers (or is fixed).
    #[error("no spec to start from: {reason}")]
    NoSpec { reason: String },
    /// The daemon cannot be what it was asked to be (a site the spec does not declare, a
    /// coordination store that cannot be opened, an address it cannot listen on).
    #[error("the agent of site `{site}`: {reason}")]
    Agent { site: String, reason: String },
}

/// The state a site daemon shares with other threads of its process — the site API's server,
/// in time. Cheap to clone; every clone sees the same spec.
#[derive(Clone)]
pub struct SiteContext {
    site: String,
    engine: Engine,
    state_dir: PathBuf,
    spec: SharedSpec,
    serving: crate::agent::Serving,
}

impl SiteContext {
    /// The site this daemon serves.
    pub fn site(&self) -> &str {
        &self.site
    }

    /// The spec in force, as written (the primary assignments not applied: see
    /// [`SiteContext::desired`]), with where it came from (`SourceId`: commit or folder
    /// digest). `None` only before the daemon has loaded one, which [`SiteDaemon::new`] waits
    /// for.
    pub fn spec(&self) -> Option<Arc<Desired>> {
        self.spec.current().map(|(_, desired)| desired)
    }

    /// The spec in force with the primary assignments applied: where each service is active
    /// now. Reads the coordination store.
    pub fn desired(&self) -> Result<Option<Desired>, crate::LoadError> {
        self.spec()
            .map(|d| crate::desired::with_assignments(Desired::clone(&d), &self.state_dir))
            .transpose()
    }

    /// Whether the site's agent serves `group` (`site-<s>`) as its primary now: holds its
    /// primary lease and is not fencing it.
    pub fn serves(&self, group: &str) -> bool {
        self.serving.holds(group)
    }

    /// The agent's switch, which a drill's `stop_site` order turns off (see
    /// [`crate::agent::Serving::switch`]).
    pub fn agent_switch(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.serving.switch()
    }

    /// The engine: the provider and how sites are observed and changed. Its preparer is not
    /// set (the controller's and the agent's follow the spec; see [`crate::protect`]).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The state folder: the site's state (unless the spec puts it elsewhere), run journals,
    /// the embedded coordination store, the last-known-good spec, the event log.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Asks the daemon's controller to read the spec's source again at its next tick (an apply
    /// asked through the site API applies a commit just pushed).
    pub fn request_poll(&self) {
        self.spec.request_poll();
    }

    /// The generation of the spec in force: one more each time the controller adopts one.
    pub fn generation(&self) -> u64 {
        self.spec.current().map_or(0, |(g, _)| g)
    }

    /// The event log the daemon appends to (one per state folder).
    pub fn event_log(&self) -> EventLog {
        EventLog::of_state(&self.state_dir)
    }
}

/// One site's controller loop and agent, sharing one spec.
pub struct SiteDaemon {
    context: SiteContext,
    controller: Controller,
    agent: Agent,
}

impl SiteDaemon {
    /// Loads the spec (source, else last-known-good copy) and makes the site's controller —
    /// `config.site` is set to `site` — and agent; `in_process` when several sites' daemons
    /// share this process (see [`Agent::in_process`]).
    pub fn new(
        engine: Engine,
        mut config: ControllerConfig,
        site: &str,
        in_process: bool,
    ) -> Result<SiteDaemon, DaemonError> {
        config.site = Some(site.to_string());
        let state_dir = config.state_dir.clone();
        let spec = SharedSpec::default();
        let mut controller = Controller::new(engine.clone(), config).sharing(spec.clone());
        controller.load().map_err(|reason| DaemonError::NoSpec { reason })?;
        let (_, desired) = spec.current().ok_or_else(|| DaemonError::NoSpec {
            reason: "the controller published none".into(),
        })?;
        let agent = Agent::new(
            desired.loaded.system.clone(),
            desired.source.clone(),
            engine.clone(),
            &state_dir,
            Role::Site(site.to_string()),
        )
        .map_err(|reason| DaemonError::Agent {
            site: site.to_string(),
            reason,
        })?
        .following(spec.clone());
        let agent = if in_process { agent.in_process() } else { agent };
        // The lease decides who writes: the controller starts no active instance of a group
        // the agent does not serve.
        let serving = agent.serving();
        let controller = controller.gated(serving.clone());
        Ok(SiteDaemon {
            context: SiteContext {
                site: site.to_string(),
                engine,
                state_dir,
                spec,
                serving,
            },
            controller,
            agent,
        })
    }

    /// The handle to the daemon's shared state, for other threads.
    pub fn context(&self) -> SiteContext {
        self.context.clone()
    }

    /// A witness agent that follows this daemon's spec (the one-process layout's witness,
    /// which has no source of its own).
    pub fn witness(&self) -> Result<Agent, DaemonError> {
        let desired = self.context.spec().ok_or_else(|| DaemonError::NoSpec {
            reason: "the daemon holds none".into(),
        })?;
        Agent::new(
            desired.loaded.system.clone(),
            desired.source.clone(),
            self.context.engine.clone(),
            &self.context.state_dir,
            Role::Witness,
        )
        .map(|agent| agent.following(self.context.spec.clone()).in_process())
        .map_err(|reason| DaemonError::Agent {
            site: "witness".into(),
            reason,
        })
    }

    /// Runs until `stop` is set: the controller loop on a thread of its own, the agent on this
    /// one. The controller stops with the agent, however the agent ends.
    pub fn run(self, stop: &AtomicBool) -> Result<(), DaemonError> {
        let site = self.context.site.clone();
        let (stop_controller, stopped) = std::sync::mpsc::channel::<()>();
        let controller = self.controller;
        let span = tracing::info_span!("site", site = %site);
        let loop_span = span.clone();
        let thread = std::thread::spawn(move || loop_span.in_scope(|| controller.run(stopped)));
        // Runs whose target is this site and whose process died mid-run (this daemon, killed)
        // are resumed to their end, on a thread of their own.
        let resuming = {
            let (context, span) = (self.context.clone(), span.clone());
            std::thread::spawn(move || span.in_scope(|| resume_interrupted(&context)))
        };
        // Scheduled isolated drills whose DR site is this one, when they are due; stopped
        // (with the notifications' thread) once the agent ends.
        let workers_stop = Arc::new(AtomicBool::new(false));
        let drilling = {
            let (context, span, stop) = (self.context.clone(), span.clone(), workers_stop.clone());
            std::thread::spawn(move || span.in_scope(|| run_scheduled_drills(&context, &stop)))
        };
        // The notifications of the state folder's event log (delivered by one daemon of those
        // that share the folder).
        let notifying = {
            let (context, span, stop) = (self.context.clone(), span.clone(), workers_stop.clone());
            std::thread::spawn(move || span.in_scope(|| crate::notify::run(&context, &stop)))
        };
        let ended = span.in_scope(|| self.agent.run(stop));
        // A drill under way tears down, then the thread ends.
        workers_stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = drilling.join();
        let _ = notifying.join();
        // Closing the channel ends the controller's loop after its current tick.
        drop(stop_controller);
        let _ = thread.join();
        let _ = resuming.join();
        ended.map_err(|reason| DaemonError::Agent { site, reason })
    }
}

/// Runs isolated drill `name` at the context's site (its DR site), as `operator`, with the
/// spec in force: what the scheduler and the dashboard start. A drill under way when `stop`
/// is set tears down and reports `interrupted`.
pub fn run_drill_here(
    context: &SiteContext,
    name: &str,
    operator: String,
    stop: Arc<AtomicBool>,
) -> Result<resurgo_drill::Report, crate::drill::DrillError> {
    let written = context
        .spec()
        .ok_or_else(|| crate::drill::DrillError::Refused("the agent has no spec yet".into()))?;
    let load = || -> Result<(resurgo_spec::System, String), String> {
        let d = context
            .desired()
            .map_err(|e| e.to_string())?
            .ok_or("no spec in force")?;
        Ok((d.loaded.system, d.source.label()))
    };
    let failback =
        |_: &str, _: &str| -> Result<(), String> { Err("an isolated drill never fails anything back".into()) };
    let ctx = crate::drill::DrillContext {
        engine: context.engine(),
        state_dir: context.state_dir(),
        load: &load,
        written: &written.loaded.system,
        failback: &failback,
        interrupted: stop,
        operator,
        faults: &crate::faults::InProcess {
            engine: context.engine(),
            state_dir: context.state_dir(),
        },
    };
    crate::drill::run(&ctx, name, resurgo_spec::DrillMode::Isolated)
}

/// Runs the scheduled isolated drills whose DR site is the context's site when they are due
/// ([`crate::drill::due`]), one at a time, until `stop`: a drill under way when it is set
/// tears down and reports `interrupted`. Its report and events are the same as a person's.
fn run_scheduled_drills(context: &SiteContext, stop: &Arc<AtomicBool>) {
    use std::sync::atomic::Ordering;
    let pause = std::time::Duration::from_secs(2);
    while !stop.load(Ordering::Relaxed) {
        let (Some(written), Ok(Some(now))) = (context.spec(), context.desired()) else {
            std::thread::sleep(pause);
            continue;
        };
        for name in crate::drill::due(
            &written.loaded.system,
            &now.loaded.system,
            context.state_dir(),
            context.site(),
        ) {
            match run_drill_here(
                context,
                &name,
                format!("the agent at {} (scheduled)", context.site()),
                stop.clone(),
            ) {
                Ok(report) => {
                    tracing::info!(drill = %name, run = %report.run, verdict = report.verdict.as_str(), "scheduled drill ran")
                }
                Err(e) => tracing::warn!(drill = %name, "scheduled drill not run: {e}"),
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
        }
        // Paced by the stop flag, not slept through: a stopping daemon is not held up.
        let until = std::time::Instant::now() + pause;
        while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// Resumes each interrupted run whose target is the context's site (see
/// [`crate::failover::interrupted`]), reporting its end in the event log.
fn resume_interrupted(context: &SiteContext) {
    use crate::events::{Event, EventKind};
    for run in crate::failover::interrupted(context.state_dir(), context.site()) {
        let current = match context.desired() {
            Ok(Some(current)) => current,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(run, "cannot resume the run: {e}");
                return;
            }
        };
        let system = &current.loaded.system;
        let engine = context
            .engine()
            .clone()
            .with_preparer(crate::protect::standby_preparer(context.engine(), system));
        let log = context.event_log();
        let _ = log.append(
            &Event::new(EventKind::FailoverStarted, format!("resuming run {run}, interrupted")).site(context.site()),
        );
        let event = match crate::failover::resume(system, &engine, context.state_dir(), &run) {
            Ok(report) => Event::new(
                EventKind::FailoverFinished,
                format!("run {}: {}", report.run, report.outcome),
            ),
            Err(e) => Event::new(EventKind::FailoverFailed, format!("run {run}: {e}")),
        };
        let event = event.site(context.site());
        event.log(false);
        let _ = log.append(&event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> ControllerConfig {
        ControllerConfig {
            site: None,
            source: crate::source::Source::Folder(dir.join("spec")),
            overrides: Vec::new(),
            state_dir: dir.to_path_buf(),
            tick: std::time::Duration::from_millis(50),
            poll: std::time::Duration::from_secs(60),
            plan_options: Default::default(),
            echo: false,
        }
    }

    /// The daemon starts from its source, else from the last-known-good copy the source left;
    /// with neither, it says there is no spec. Its context shares the spec it holds.
    #[test]
    fn a_site_daemon_starts_from_its_source_else_the_last_known_good_copy() {
        let dir = tempfile::tempdir().unwrap();
        let provider = Arc::new(crate::testing::Recording::default());
        let engine = Engine::with_providers(crate::testing::providers(dir.path(), &provider), dir.path());
        let none = SiteDaemon::new(engine.clone(), config(dir.path()), "a", false);
        assert!(matches!(none, Err(DaemonError::NoSpec { .. })));

        std::fs::create_dir_all(dir.path().join("spec")).unwrap();
        let text = "apiVersion: resurgo.dev/v1alpha1\nsystem: unit\nsites:\n  a:\n    provider: local\n    address: 127.0.0.1\n    capacity: { cpu: 8, memory: 8Gi }\nservices: {}\n";
        std::fs::write(dir.path().join("spec/resurgo.yaml"), text).unwrap();
        let daemon = SiteDaemon::new(engine.clone(), config(dir.path()), "a", false).unwrap();
        let context = daemon.context();
        assert_eq!(context.site(), "a");
        let first = context.spec().expect("the spec it loaded");
        assert!(first.loaded.system.sites.contains_key("a"));
        assert!(!context.serves("site-a"), "no lease taken before it runs");

        // The source is gone: the copy it left stands in.
        std::fs::remove_dir_all(dir.path().join("spec")).unwrap();
        let daemon = SiteDaemon::new(engine, config(dir.path()), "a", false).unwrap();
        assert_eq!(daemon.context().spec().unwrap().source, first.source);
    }
}
