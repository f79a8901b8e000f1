//! Drills (`resurgo drill run NAME`): a declared loss practised and measured, leaving a
//! report as evidence. A live drill, on the sites as they are:
//!
//! 1. refused while a failover, a failback or another drill runs, or a drill run was left
//!    unfinished (it must be resumed — torn down — first);
//! 2. probes through the routes and canary writers into the datasets start, and must answer
//!    (the steady state) before anything is injected;
//! 3. each fault's undo is journaled, then the fault is injected — as an order to the site it
//!    hits, written down there before it is applied and bounded in time ([`crate::faults`]:
//!    in-process on one machine, else through the site's agent);
//! 4. the drill waits — the agents detect the loss and recover by themselves, no command —
//!    until every route answers again and, for a site loss, a failover finished; its stop
//!    conditions and deadline are checked meanwhile, and SIGINT/SIGTERM end it;
//! 5. teardown, whatever happened: the faults undone newest first, the canaries removed, a
//!    failback to the original site (if declared) — then the leak check;
//! 6. the report ([`resurgo_drill::Report`]) is judged and written beside the journal.
//!
//! The journal (`<state>/drills/<run>/journal.jsonl`) is written before and after every act,
//! so a drill whose process died is resumed by [`resume`]: its measurement died with its
//! probes, so it goes straight to teardown and reports `interrupted`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nix::fcntl::{Flock, FlockArg};
use resurgo_drill::{
    CanaryResult, ConnectionAttempt, DataCheck, FaultRecord, Isolation, Leftover, Mode, Outcome, Phase, PhaseName,
    Probe, ProbeKind, Report, Rpo, Rto, Scope, ScopeKind, TimelineEntry, Verdict,
};
use resurgo_provider::Provider;
use resurgo_spec::{Drill, DrillMode, Fault, StopCondition, System};
use serde::{Deserialize, Serialize};

use crate::drill_probe::{self as probe, Canary, RouteProbe};
use crate::engine::Engine;
use crate::events::{Event, EventKind, EventLog};
use crate::faults::{self, FaultSink};

/// How a drill reaches the system: the engine (providers), the state folder, a way to load the
/// spec as it stands now (with the primary assignments), and a way to fail back.
pub struct DrillContext<'a> {
    pub engine: &'a Engine,
    pub state_dir: &'a Path,
    /// The spec now (the primary assignments applied: where services are active), and its
    /// commit.
    pub load: &'a dyn Fn() -> Result<(System, String), String>,
    /// The spec as written: where each service belongs, which a drill leaves it at.
    pub written: &'a System,
    /// Moves the services active at `from` back to `to` (a planned failback).
    pub failback: &'a dyn Fn(&str, &str) -> Result<(), String>,
    /// Set by SIGINT/SIGTERM: the drill ends and tears down.
    pub interrupted: Arc<AtomicBool>,
    /// Who runs it (`user@host`), for the report.
    pub operator: String,
    /// Where the faults go and how the sites are seen: in-process ([`faults::InProcess`]) or
    /// through each site's agent.
    pub faults: &'a dyn FaultSink,
}

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("{0}")]
    Refused(String),
    #[error("drill journal {path}: {reason}")]
    Journal { path: String, reason: String },
}

/// A drill run's first record: which drill, how, by whom, on which spec.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Begun {
    run: String,
    name: String,
    drill: Drill,
    mode: DrillMode,
    started: String,
    started_unix: f64,
    spec_commit: String,
    operator: String,
}

/// One line of a drill's journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
enum Record {
    Begun(Box<Begun>),
    /// Written before fault `index` is injected: what undoes it.
    Undo {
        index: usize,
        fault: Fault,
        undo: String,
    },
    Injected {
        index: usize,
        at_s: f64,
        error: Option<String>,
    },
    /// The measurement, once it ended (however it ended).
    Measured {
        report: Box<Report>,
    },
    TeardownBegun {
        at_s: f64,
        outcome: Outcome,
    },
    Reverted {
        index: usize,
        at_s: f64,
        error: Option<String>,
    },
    /// Written before sandbox `id` is made at `site` (an isolated drill's test failover).
    Sandbox {
        id: String,
        site: String,
    },
    SandboxDestroyed {
        id: String,
        error: Option<String>,
    },
    Ended {
        at_s: f64,
    },
}

/// The folder of drill runs.
pub fn drills_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("drills")
}

fn run_dir(state_dir: &Path, run: &str) -> PathBuf {
    drills_dir(state_dir).join(run)
}

/// Where a drill run's report is.
pub fn report_path(state_dir: &Path, run: &str) -> PathBuf {
    run_dir(state_dir, run).join("report.json")
}

/// The journal of one drill run: append-only, each record fsynced before the act it announces.
struct Journal {
    path: PathBuf,
    records: Vec<Record>,
}

impl Journal {
    fn open(state_dir: &Path, run: &str) -> Result<Journal, DrillError> {
        let dir = run_dir(state_dir, run);
        resurgo_provider::private_dir(&dir).map_err(|e| DrillError::Journal {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let path = dir.join("journal.jsonl");
        let records = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                // A torn last line (the process died writing it) is dropped: its act never began.
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(DrillError::Journal {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })
            }
        };
        Ok(Journal { path, records })
    }

    fn append(&mut self, record: Record) -> Result<(), DrillError> {
        let fail = |e: std::io::Error| DrillError::Journal {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        };
        let mut line = serde_json::to_string(&record).map_err(|e| fail(std::io::Error::other(e)))?;
        line.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(fail)?;
        file.write_all(line.as_bytes()).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        self.records.push(record);
        resurgo_runbook::crash::after_record(self.records.len() as u64);
        Ok(())
    }

    fn begun(&self) -> Option<&Begun> {
        self.records.iter().find_map(|r| match r {
            Record::Begun(b) => Some(&**b),
            _ => None,
        })
    }

    fn ended(&self) -> bool {
        self.records.iter().any(|r| matches!(r, Record::Ended { .. }))
    }

    /// The faults whose undo was written (injected or maybe injected), with their undo.
    fn undos(&self) -> Vec<(usize, Fault, String)> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Undo { index, fault, undo } => Some((*index, fault.clone(), undo.clone())),
                _ => None,
            })
            .collect()
    }

    /// The sandboxes begun and not destroyed yet: (id, site).
    fn sandboxes(&self) -> Vec<(String, String)> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Sandbox { id, site } => Some((id.clone(), site.clone())),
                _ => None,
            })
            .filter(|(id, _)| {
                !self
                    .records
                    .iter()
                    .any(|r| matches!(r, Record::SandboxDestroyed { id: d, error: None } if d == id))
            })
            .collect()
    }

    fn reverted(&self, index: usize) -> bool {
        self.records
            .iter()
            .any(|r| matches!(r, Record::Reverted { index: i, error: None, .. } if *i == index))
    }
}

/// Drill runs whose journal has no end: their process died, or is running now.
pub fn unfinished(state_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(drills_dir(state_dir)) else {
        return Vec::new();
    };
    let mut runs: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join("journal.jsonl").exists())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|run| Journal::open(state_dir, run).is_ok_and(|j| !j.ended()))
        .collect();
    runs.sort();
    runs
}

/// The report of drill run `run`, if it has one here.
pub fn report(state_dir: &Path, run: &str) -> Option<Report> {
    serde_json::from_slice(&std::fs::read(report_path(state_dir, run)).ok()?).ok()
}

/// The drill runs with a report, newest first.
pub fn reports(state_dir: &Path) -> Vec<Report> {
    let Ok(entries) = std::fs::read_dir(drills_dir(state_dir)) else {
        return Vec::new();
    };
    let mut all: Vec<Report> = entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("report.json")).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    all.sort_by(|a: &Report, b: &Report| b.started.cmp(&a.started));
    all
}

/// The scheduled drills (`scheduled: true`, isolated, with a cadence) that `site`'s agent is to
/// run now: those whose DR site — the first standby site of their services — is `site`,
/// whose services are active where the spec places them (`now`: the assignments applied; a
/// failed-over system is not drilled), and whose last run is older than their cadence (or
/// that never ran). None while a drill is unfinished or a recovery run is in progress.
pub fn due(written: &System, now: &System, state_dir: &Path, site: &str) -> Vec<String> {
    if !unfinished(state_dir).is_empty() || crate::failover::run_in_progress(state_dir) {
        return Vec::new();
    }
    let reports = reports(state_dir);
    let now_unix = unix(SystemTime::now());
    written
        .drills
        .iter()
        .filter(|(_, d)| d.scheduled && d.mode == DrillMode::Isolated)
        .filter(|(_, d)| {
            let services = d.scope.services(written);
            let dr_site = services
                .iter()
                .find_map(|s| written.services.get(s)?.standby.first().cloned());
            let in_place = services
                .iter()
                .all(|s| written.services.get(s).map(|w| &w.site) == now.services.get(s).map(|n| &n.site));
            dr_site.as_deref() == Some(site) && in_place
        })
        .filter(|(name, d)| {
            let last = reports
                .iter()
                .find(|r| &&r.drill == name)
                .and_then(|r| resurgo_spec::units::parse_rfc3339(&r.started).ok());
            match (last, d.cadence) {
                (None, _) => true,
                (Some(t), Some(c)) => now_unix - t >= c.0.as_secs_f64(),
                (Some(_), None) => false,
            }
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// The lock a drill holds for its whole run (`<state>/drills/active.lock`): another drill, or
/// a resume of this one, is refused while it is held; the kernel drops it when the process
/// ends, however it ends.
fn lock(state_dir: &Path) -> Result<Flock<std::fs::File>, DrillError> {
    let dir = drills_dir(state_dir);
    let io = |e: std::io::Error| DrillError::Journal {
        path: dir.display().to_string(),
        reason: e.to_string(),
    };
    resurgo_provider::private_dir(&dir).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("active.lock"))
        .map_err(io)?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|_| DrillError::Refused("another drill is running now: one drill at a time".into()))
}

/// Runs drill `name` in `mode`. Returns the report (judged, written beside its journal).
pub fn run(ctx: &DrillContext, name: &str, mode: DrillMode) -> Result<Report, DrillError> {
    let _lock = lock(ctx.state_dir)?;
    if let Some(run) = unfinished(ctx.state_dir).first() {
        return Err(DrillError::Refused(format!(
            "drill run {run} did not finish (its process died): `resurgo drill resume {run}` tears it down first"
        )));
    }
    if crate::failover::run_in_progress(ctx.state_dir) {
        return Err(DrillError::Refused(
            "a failover or failback is in progress: a drill waits until it is over".into(),
        ));
    }
    let (system, commit) = (ctx.load)().map_err(DrillError::Refused)?;
    let drill =
        system.drills.get(name).cloned().ok_or_else(|| {
            DrillError::Refused(format!("no drill `{name}` in the spec (drills: {})", names(&system)))
        })?;
    if mode == DrillMode::Live && drill.stop.is_empty() {
        return Err(DrillError::Refused(format!(
            "drill `{name}` has no `stop` conditions: a live drill must say what aborts it"
        )));
    }
    let began = Instant::now();
    let started = SystemTime::now();
    let stamp = crate::events::format_rfc3339(started)
        .replace([':', '-'], "")
        .replace('.', "");
    let run = format!("drill-{name}-{}", stamp.trim_end_matches('Z'));
    let mut journal = Journal::open(ctx.state_dir, &run)?;
    journal.append(Record::Begun(Box::new(Begun {
        run: run.clone(),
        name: name.to_string(),
        drill: drill.clone(),
        mode,
        started: crate::events::format_rfc3339(started),
        started_unix: unix(started),
        spec_commit: commit.clone(),
        operator: ctx.operator.clone(),
    })))?;
    emit(
        ctx,
        EventKind::DrillStarted,
        &format!("drill {name} ({run}) started, {}", mode_name(mode)),
    );
    let mut report = new_report(&run, name, &drill, mode, &commit, &ctx.operator, started);
    let outcome = measure(ctx, &mut journal, &drill, &system, &mut report, began);
    report.outcome = outcome;
    journal.append(Record::Measured {
        report: Box::new(report.clone()),
    })?;
    finish(ctx, &mut journal, report, began)
}

/// Finishes drill run `run` whose process died: straight to teardown (its measurement died
/// with its probes), then the leak check and the report.
pub fn resume(ctx: &DrillContext, run: &str) -> Result<Report, DrillError> {
    let _lock = lock(ctx.state_dir)?;
    let mut journal = Journal::open(ctx.state_dir, run)?;
    let Some(begun) = journal.begun().cloned() else {
        return Err(DrillError::Refused(format!("no drill run {run} was begun here")));
    };
    if journal.ended() {
        return Err(DrillError::Refused(format!(
            "drill run {run} has ended already: nothing to resume"
        )));
    }
    let started_at = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(begun.started_unix);
    let mut report = journal
        .records
        .iter()
        .find_map(|r| match r {
            Record::Measured { report } => Some((**report).clone()),
            _ => None,
        })
        .unwrap_or_else(|| {
            let mut r = new_report(
                run,
                &begun.name,
                &begun.drill,
                begun.mode,
                &begun.spec_commit,
                &begun.operator,
                started_at,
            );
            r.started = begun.started.clone();
            r.outcome = Outcome::Interrupted;
            r.findings.push(
                "the drill's process died before its measurement ended: resumed, it went straight to teardown".into(),
            );
            r
        });
    // The drill's clock: its start, as the journal says.
    let elapsed = SystemTime::now().duration_since(started_at).unwrap_or_default();
    let began = Instant::now().checked_sub(elapsed).unwrap_or_else(Instant::now);
    if !journal.records.iter().any(|r| matches!(r, Record::Measured { .. })) {
        journal.append(Record::Measured {
            report: Box::new(report.clone()),
        })?;
    }
    report
        .timeline
        .push(entry(began, "resumed", "resumed after its process died"));
    finish(ctx, &mut journal, report, began)
}

fn names(system: &System) -> String {
    let names: Vec<&str> = system.drills.keys().map(String::as_str).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn mode_name(mode: DrillMode) -> &'static str {
    match mode {
        DrillMode::Isolated => "isolated",
        DrillMode::Live => "live",
    }
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn emit(ctx: &DrillContext, kind: EventKind, message: &str) {
    let event = Event::new(kind, message);
    event.log(true);
    let _ = EventLog::of_state(ctx.state_dir).append(&event);
}

fn entry(began: Instant, kind: &str, message: &str) -> TimelineEntry {
    TimelineEntry {
        at_s: began.elapsed().as_secs_f64(),
        kind: kind.into(),
        message: message.into(),
    }
}

fn new_report(
    run: &str,
    name: &str,
    drill: &Drill,
    mode: DrillMode,
    commit: &str,
    operator: &str,
    started: SystemTime,
) -> Report {
    Report {
        schema: resurgo_drill::REPORT_SCHEMA.into(),
        run: run.into(),
        drill: name.into(),
        mode: match mode {
            DrillMode::Isolated => Mode::Isolated,
            DrillMode::Live => Mode::Live,
        },
        scope: Scope {
            kind: match drill.scope.kind() {
                "service" => ScopeKind::Service,
                "workload" => ScopeKind::Workload,
                "site" => ScopeKind::Site,
                _ => ScopeKind::Link,
            },
            targets: drill.scope.targets(),
        },
        spec_commit: commit.into(),
        resurgo_version: env!("CARGO_PKG_VERSION").into(),
        operator: operator.into(),
        started: crate::events::format_rfc3339(started),
        ended: None,
        deadline_s: drill.deadline().as_secs_f64(),
        outcome: Outcome::InProgress,
        timeline: Vec::new(),
        phases: Vec::new(),
        rto: None,
        rpo: None,
        probes: Vec::new(),
        isolation: None,
        data_checks: Vec::new(),
        faults: Vec::new(),
        leftovers: Vec::new(),
        verdict: Verdict::Fail,
        findings: Vec::new(),
    }
}

/// What undoes `fault`, for people (journaled before it is injected).
fn undo_of(fault: &Fault) -> String {
    match fault {
        Fault::Kill(s) => format!("start `{s}` again if nothing restarted it"),
        Fault::StopSite(s) => format!("bring site `{s}` back within reach (it rejoins as its agent decides)"),
        Fault::IsolateSite(s) => format!("heal site `{s}`'s network"),
        Fault::CutLink(_) | Fault::DegradeLink(_) => format!("heal the link {}", fault.target()),
    }
}

/// Sends the order for `fault` to each site it hits (a link's two ends each apply their half).
fn inject(ctx: &DrillContext, system: &System, order: &resurgo_api::types::FaultOrder) -> Result<(), String> {
    let sites = faults::sites_of(&order.fault, system);
    if sites.is_empty() {
        return Err(format!(
            "{} {}: no site to apply it at",
            order.fault.kind(),
            order.fault.target()
        ));
    }
    for site in sites {
        ctx.faults
            .apply(system, &site, order)
            .map_err(|e| format!("at `{site}`: {e}"))?;
    }
    Ok(())
}

/// Reverts order `id` (for `fault`) at each site it may be in force at: where it hits now and
/// where the spec puts it (a killed service may have moved since). A site that does not know
/// it has nothing to revert.
fn revert(ctx: &DrillContext, system: &System, fault: &Fault, id: &str) -> Result<(), String> {
    let mut sites = faults::sites_of(fault, system);
    sites.extend(faults::sites_of(fault, ctx.written));
    sites.sort();
    sites.dedup();
    let errors: Vec<String> = sites
        .iter()
        .filter_map(|site| {
            ctx.faults
                .revert(system, site, id)
                .err()
                .map(|e| format!("at `{site}`: {e}"))
        })
        .collect();
    match errors.is_empty() {
        true => Ok(()),
        false => Err(errors.join("; ")),
    }
}

/// The datasets of [`canary_datasets`] a canary can reach from here, and those it cannot:
/// across hosts only a PostgreSQL dataset (over the network), never a site's files.
fn reachable_canaries(ctx: &DrillContext, drill: &Drill, system: &System) -> (Vec<String>, Vec<String>) {
    canary_datasets(drill, system).into_iter().partition(|d| {
        !ctx.faults.across_hosts()
            || system
                .datasets
                .get(d)
                .is_some_and(|ds| ds.kind == resurgo_spec::DatasetKind::Postgres)
    })
}

/// The datasets a drill writes its canary into: those it names, else every dataset of a
/// service in its scope.
fn canary_datasets(drill: &Drill, system: &System) -> Vec<String> {
    if !drill.probes.canaries.is_empty() {
        return drill.probes.canaries.clone();
    }
    let services = drill.scope.services(system);
    system
        .datasets
        .iter()
        .filter(|(_, d)| services.contains(&d.service))
        .map(|(n, _)| n.clone())
        .collect()
}

/// Steady state, faults, and the wait for recovery. Fills the report's measures; returns how
/// the measurement ended.
fn measure(
    ctx: &DrillContext,
    journal: &mut Journal,
    drill: &Drill,
    system: &System,
    report: &mut Report,
    began: Instant,
) -> Outcome {
    let deadline = drill.deadline();
    let services = drill.scope.services(system);
    let stop = Arc::new(AtomicBool::new(false));
    // Across hosts, a route listening on a loopback or unspecified address has no address
    // this host could probe it at: skipped, and said in the report.
    let (routes, unprobed): (Vec<_>, Vec<_>) = RouteProbe::for_drill(system, &drill.probes.routes, &services)
        .into_iter()
        .partition(|(_, listen, _)| {
            !ctx.faults.across_hosts() || !(listen.ip().is_loopback() || listen.ip().is_unspecified())
        });
    let probes: Vec<RouteProbe> = routes
        .into_iter()
        .map(|(route, listen, port)| {
            let check = system
                .routes
                .get(&route)
                .and_then(|r| system.services.get(&r.service))
                .and_then(|s| s.health.clone());
            RouteProbe::start(&route, listen, port, check, began, stop.clone())
        })
        .collect();
    let (canaried, unmeasured) = reachable_canaries(ctx, drill, system);
    let canaries: Vec<Canary> = canaried
        .iter()
        .map(|d| Canary::start(system, ctx.engine, ctx.state_dir, d, began))
        .collect();
    let mode = report.mode;
    let outcome = match mode {
        Mode::Live => measure_with(ctx, journal, drill, system, report, began, deadline, &probes, &canaries),
        Mode::Isolated => measure_isolated(ctx, journal, drill, system, report, began, deadline, &probes, &canaries),
    };
    stop.store(true, Ordering::Relaxed);
    let production_acked: Vec<Vec<(u64, f64)>> = canaries.iter().map(Canary::halt).collect();
    if mode == Mode::Isolated {
        production_untouched(ctx, system, report, &probes, &canaries, &production_acked);
        return outcome;
    }
    for p in &probes {
        let answers = p.answers();
        let failures = answers.iter().filter(|(_, ok)| !ok).count() as u64;
        let back = report
            .faults
            .first()
            .and_then(|f| f.injected_at_s)
            .and_then(|t| probe::back_at(&answers, t));
        report.probes.push(Probe {
            name: p.route.clone(),
            kind: ProbeKind::Route,
            target: p.listen.to_string(),
            attempts: answers.len() as u64,
            failures,
            passed: back.is_some() || report.faults.is_empty(),
            detail: match back {
                Some(t) => Some(format!("answered again {t:.2} s into the drill")),
                None => p
                    .last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    .map(|e| format!("never answered again: {e}")),
            },
        });
    }
    skipped(drill, system, report, unprobed, unmeasured);
    outcome
}

/// The probes and canaries that cannot work across hosts yet, in the report as skipped: the
/// verdict then says that the drill could not measure them, never nothing.
fn skipped(
    drill: &Drill,
    system: &System,
    report: &mut Report,
    unprobed: Vec<(String, std::net::SocketAddr, u16)>,
    unmeasured: Vec<String>,
) {
    for (route, listen, _) in unprobed {
        report.probes.push(Probe {
            name: route,
            kind: ProbeKind::Route,
            target: listen.to_string(),
            attempts: 0,
            failures: 0,
            passed: false,
            detail: Some(format!(
                "skipped: the route listens on {listen} at the site where its service is active, which a drill through the site API cannot probe from another host; give it an address this host can reach"
            )),
        });
    }
    if unmeasured.is_empty() {
        return;
    }
    let objective = drill.objectives.unwrap_or(system.objectives);
    let rpo = report.rpo.get_or_insert_with(|| Rpo {
        objective_s: objective.rpo.map_or(0.0, |d| d.0.as_secs_f64()),
        writes_lost: None,
        seconds: None,
        datasets: Vec::new(),
    });
    rpo.writes_lost = None;
    rpo.seconds = None;
    for dataset in unmeasured {
        let kind = system
            .datasets
            .get(&dataset)
            .map_or("directory", |d| probe::kind_name(d.kind));
        rpo.datasets.push(CanaryResult {
            site: probe::active_site(system, &dataset).unwrap_or_default(),
            dataset,
            kind: kind.into(),
            acknowledged: 0,
            recovered: None,
            writes_lost: None,
            seconds: None,
            detail: Some(format!(
                "skipped: a {kind} canary writes into the site's own files, which a drill through the site API cannot reach from another host (only PostgreSQL canaries work across hosts in this build)"
            )),
        });
    }
}

/// An isolated drill: a test failover into a sandbox at the DR site, on copies of its newest
/// restore point, while production keeps serving (its probes and canaries run throughout).
/// RTO: from the start of the test failover until the sandbox serves; RPO: how old the
/// restore point was then, and the canary writes it lacks; the isolation proven by trying
/// production's endpoints from inside the sandbox.
#[allow(clippy::too_many_arguments)]
fn measure_isolated(
    ctx: &DrillContext,
    journal: &mut Journal,
    drill: &Drill,
    system: &System,
    report: &mut Report,
    began: Instant,
    deadline: Duration,
    probes: &[RouteProbe],
    canaries: &[Canary],
) -> Outcome {
    if let Some(outcome) = steady_state(ctx, report, began, deadline, probes, canaries) {
        return outcome;
    }
    let services = drill.scope.services(system);
    let Some(site) = services
        .iter()
        .find_map(|s| system.services.get(s)?.standby.first().cloned())
    else {
        report
            .findings
            .push("no service in scope names a standby site to run the test failover at".into());
        return Outcome::Failed;
    };
    let id = report.run.clone();
    if journal
        .append(Record::Sandbox {
            id: id.clone(),
            site: site.clone(),
        })
        .is_err()
    {
        report
            .findings
            .push("the journal could not be written: no sandbox made".into());
        return Outcome::Failed;
    }
    let t0 = began.elapsed().as_secs_f64();
    let t0_unix = unix(SystemTime::now());
    report.faults.push(FaultRecord {
        kind: "sandbox".into(),
        target: site.clone(),
        injected_at_s: Some(t0),
        reverted_at_s: None,
        undo: format!("destroy sandbox {id} at {site}: its services, network namespace and copies"),
    });
    report.timeline.push(entry(
        began,
        "test_failover",
        &format!("test failover of {} into a sandbox at {site}", services.join(", ")),
    ));
    // Made by the DR site itself (its own repository, its own host), here or through its agent.
    let made = match ctx.faults.make_sandbox(system, &site, &id, &services) {
        Ok(m) => m,
        Err(e) => {
            report
                .findings
                .push(format!("the sandbox at {site} could not be made: {e}"));
            return Outcome::Failed;
        }
    };
    resurgo_runbook::crash::crash_point("drill-sandbox-made");
    let started = began.elapsed().as_secs_f64();
    report.timeline.push(entry(
        began,
        "sandbox_started",
        &format!(
            "copies restored ({}) and services started in network namespace {}",
            made.copies
                .iter()
                .map(|c| format!("{} from snapshot {}", c.dataset, c.snapshot))
                .collect::<Vec<_>>()
                .join(", "),
            made.netns
        ),
    ));
    // Until the sandbox serves, asked from inside.
    let mut last_error = String::new();
    let outcome = loop {
        match ctx.faults.sandbox(system, &site, &id) {
            Ok(state) if state.serving => break Outcome::Completed,
            Ok(state) => last_error = state.detail.unwrap_or_default(),
            Err(e) => last_error = e,
        }
        if ctx.interrupted.load(Ordering::Relaxed) {
            break Outcome::Interrupted;
        }
        if began.elapsed() >= deadline {
            break Outcome::DeadlinePassed;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let serving = (outcome == Outcome::Completed).then(|| began.elapsed().as_secs_f64());
    if let Some(at) = serving {
        report.timeline.push(entry(
            began,
            "sandbox_serving",
            "every service in the sandbox answers its health check",
        ));
        report.phases = vec![
            Phase {
                name: PhaseName::Execute,
                start_s: t0,
                end_s: started,
            },
            Phase {
                name: PhaseName::Propagate,
                start_s: started,
                end_s: at,
            },
        ];
    } else {
        report.findings.push(format!("the sandbox never served: {last_error}"));
    }
    let objective = drill.objectives.unwrap_or(system.objectives);
    report.rto = Some(Rto {
        measured_s: serving.map(|at| at - t0),
        objective_s: objective.rto.map_or(0.0, |d| d.0.as_secs_f64()),
        detect_s: None,
        decide_s: None,
        preempt_s: None,
        execute_s: Some(started - t0),
        propagate_s: serving.map(|at| at - started),
    });
    // The isolation: production's endpoints tried from inside, none may answer; and the
    // copies read (the canary) and checked there.
    let address = system.sites.get(&site).map(|s| s.address);
    let own: Vec<SocketAddr> = services
        .iter()
        .filter_map(|s| system.services.get(s))
        .flat_map(|s| s.ports.iter().filter_map(move |p| Some(SocketAddr::new(address?, *p))))
        .collect();
    let endpoints: Vec<resurgo_api::types::Endpoint> = production_endpoints(system, &services)
        .into_iter()
        .filter(|(_, addr)| !own.contains(addr))
        .map(|(what, addr)| resurgo_api::types::Endpoint {
            what,
            address: addr.to_string(),
        })
        .collect();
    let checked = match ctx.faults.check_sandbox(system, &site, &id, &endpoints) {
        Ok(c) => c,
        Err(e) => {
            report
                .findings
                .push(format!("the sandbox at {site} could not be checked: {e}"));
            resurgo_api::types::SandboxChecked {
                attempts: Vec::new(),
                copies: Vec::new(),
            }
        }
    };
    // RPO: the restore point's age at the test failover, and the canary writes it lacks.
    let mut datasets = Vec::new();
    for copy in &made.copies {
        let acked: Vec<(u64, f64)> = canaries
            .iter()
            .find(|c| c.dataset == copy.dataset)
            .map(|c| c.acked.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, at)| *at <= t0)
            .collect();
        let found = checked.copies.iter().find(|c| c.dataset == copy.dataset);
        let recovered = found.and_then(|c| c.recovered);
        let age = (t0_unix - copy.taken_unix as f64).max(0.0);
        datasets.push(CanaryResult {
            dataset: copy.dataset.clone(),
            kind: copy.kind.clone(),
            site: site.clone(),
            acknowledged: acked.len() as u64,
            recovered,
            writes_lost: recovered.map(|n| acked.iter().filter(|(s, _)| *s > n).count() as u64),
            seconds: Some(age),
            detail: Some(match (recovered, found.and_then(|c| c.recovered_error.clone())) {
                (Some(_), _) => format!(
                    "restore point {} taken {age:.1} s before the test failover",
                    copy.snapshot
                ),
                (None, e) => format!("cannot read the copy: {}", e.unwrap_or_else(|| "not checked".into())),
            }),
        });
        report.data_checks.push(DataCheck {
            dataset: copy.dataset.clone(),
            site: format!("sandbox at {site}"),
            method: found.map_or_else(|| "none".into(), |c| c.method.clone()),
            passed: found.is_some_and(|c| c.passed),
            detail: found.map(|c| c.detail.clone()),
        });
    }
    let seconds = datasets
        .iter()
        .map(|d| d.seconds)
        .try_fold(0.0f64, |acc, s| s.map(|s| acc.max(s)));
    report.rpo = Some(Rpo {
        objective_s: objective.rpo.map_or(0.0, |d| d.0.as_secs_f64()),
        writes_lost: datasets.iter().map(|d| d.writes_lost).sum(),
        seconds,
        datasets,
    });
    report.isolation = Some(Isolation {
        sandbox: format!("network namespace {} at {site}", made.netns),
        attempts: checked
            .attempts
            .into_iter()
            .map(|a| ConnectionAttempt {
                from: format!("sandbox at {site}"),
                to: format!("{} ({})", a.address, a.what),
                reached: a.reached,
                detail: a.detail,
            })
            .collect(),
    });
    outcome
}

/// Production's endpoints a sandbox must not reach: the services in scope where they are
/// active, the routes, the coordination store, and the repositories on S3.
fn production_endpoints(system: &System, services: &[String]) -> Vec<(String, SocketAddr)> {
    let mut out = Vec::new();
    for name in services {
        let Some(svc) = system.services.get(name) else { continue };
        let Some(site) = system.sites.get(&svc.site) else {
            continue;
        };
        for port in &svc.ports {
            out.push((
                format!("`{name}` at {}", svc.site),
                SocketAddr::new(site.address, *port),
            ));
        }
    }
    for (name, route) in &system.routes {
        if let Some(listen) = route.listen {
            out.push((format!("route `{name}`"), listen));
        }
    }
    let etcd = system
        .failover
        .etcd()
        .map(|e| e.endpoints.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|u| ("coordination store".to_string(), u));
    let repositories = system
        .sites
        .iter()
        .filter_map(|(n, s)| Some((format!("{n}'s repository"), s.repository.as_ref()?.url.clone())));
    for (what, url) in etcd.chain(repositories) {
        if let Some(addr) = url_address(&url) {
            out.push((what, addr));
        }
    }
    out
}

/// The address of an `http(s)://` or `s3://` URL whose host is an IP address.
fn url_address(url: &str) -> Option<SocketAddr> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?']).next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if let Ok(addr) = host.parse::<SocketAddr>() {
        return Some(addr);
    }
    let ip: std::net::IpAddr = host.parse().ok()?;
    Some(SocketAddr::new(ip, if scheme == "http" { 80 } else { 443 }))
}

/// Production kept serving through an isolated drill: its route probes never failed, its
/// canaries lost nothing, and no service moved.
fn production_untouched(
    ctx: &DrillContext,
    system: &System,
    report: &mut Report,
    probes: &[RouteProbe],
    canaries: &[Canary],
    acked: &[Vec<(u64, f64)>],
) {
    for p in probes {
        let answers = p.answers();
        let failures = answers.iter().filter(|(_, ok)| !ok).count() as u64;
        report.probes.push(Probe {
            name: format!("production {}", p.route),
            kind: ProbeKind::Production,
            target: p.listen.to_string(),
            attempts: answers.len() as u64,
            failures,
            passed: failures == 0 && !answers.is_empty(),
            detail: Some(if failures == 0 {
                format!("answered all {} probes during the drill", answers.len())
            } else {
                format!(
                    "failed {failures} of {} probes during the drill: {}",
                    answers.len(),
                    p.last_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone()
                        .unwrap_or_default()
                )
            }),
        });
    }
    let now = (ctx.load)().map(|(s, _)| s).unwrap_or_else(|_| system.clone());
    for (c, acked) in canaries.iter().zip(acked) {
        let found = probe::recovered(&now, ctx.engine, ctx.state_dir, &c.dataset);
        let last = acked.last().map_or(0, |(s, _)| *s);
        let (passed, detail) = match found {
            Ok(n) if n >= last && last > 0 => (true, format!("all {} writes kept (up to #{n})", acked.len())),
            Ok(n) => (
                false,
                format!("{} acknowledged, production holds up to #{n}", acked.len()),
            ),
            Err(e) => (false, format!("cannot read production's copy: {e}")),
        };
        report.probes.push(Probe {
            name: format!("production canary {}", c.dataset),
            kind: ProbeKind::Canary,
            target: probe::active_site(&now, &c.dataset).unwrap_or_default(),
            attempts: acked.len() as u64,
            failures: u64::from(!passed),
            passed,
            detail: Some(detail),
        });
    }
    let moved: Vec<&str> = system
        .services
        .iter()
        .filter(|(n, s)| now.services.get(*n).is_some_and(|m| m.site != s.site))
        .map(|(n, _)| n.as_str())
        .collect();
    if !moved.is_empty() {
        report.findings.push(format!(
            "production moved during an isolated drill: {}",
            moved.join(", ")
        ));
    }
}

/// Waits until every probe answers and every canary writes (the steady state), before
/// anything is injected. `None` once it holds; else how the drill ends, with a finding.
fn steady_state(
    ctx: &DrillContext,
    report: &mut Report,
    began: Instant,
    deadline: Duration,
    probes: &[RouteProbe],
    canaries: &[Canary],
) -> Option<Outcome> {
    let over = |began: Instant| began.elapsed() >= deadline;
    // Steady state: every probe answers and every canary writes before anything is injected.
    let steady = loop {
        let probes_ok = probes.iter().all(|p| p.answers().last().is_some_and(|(_, ok)| *ok));
        let canaries_ok = canaries
            .iter()
            .all(|c| !c.acked.lock().unwrap_or_else(|e| e.into_inner()).is_empty());
        if probes_ok && canaries_ok {
            break true;
        }
        if ctx.interrupted.load(Ordering::Relaxed) || over(began) || began.elapsed() > Duration::from_secs(60) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if !steady {
        let mut why: Vec<String> = probes
            .iter()
            .filter(|p| !p.answers().last().is_some_and(|(_, ok)| *ok))
            .map(|p| {
                format!(
                    "route `{}` ({}) does not answer: {}",
                    p.route,
                    p.listen,
                    p.last_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone()
                        .unwrap_or_default()
                )
            })
            .collect();
        why.extend(
            canaries
                .iter()
                .filter(|c| c.acked.lock().unwrap_or_else(|e| e.into_inner()).is_empty())
                .map(|c| {
                    format!(
                        "no canary write into `{}` was acknowledged: {}",
                        c.dataset,
                        c.last_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .clone()
                            .unwrap_or_default()
                    )
                }),
        );
        report
            .findings
            .push(format!("steady state not reached before any fault: {}", why.join("; ")));
        return Some(if ctx.interrupted.load(Ordering::Relaxed) {
            Outcome::Interrupted
        } else if over(began) {
            Outcome::DeadlinePassed
        } else {
            Outcome::Failed
        });
    }
    report
        .timeline
        .push(entry(began, "steady", "every probe answers and every canary writes"));
    None
}

#[allow(clippy::too_many_arguments)]
fn measure_with(
    ctx: &DrillContext,
    journal: &mut Journal,
    drill: &Drill,
    system: &System,
    report: &mut Report,
    began: Instant,
    deadline: Duration,
    probes: &[RouteProbe],
    canaries: &[Canary],
) -> Outcome {
    let over = |began: Instant| began.elapsed() >= deadline;
    if let Some(outcome) = steady_state(ctx, report, began, deadline, probes, canaries) {
        return outcome;
    }
    // The events from here on, followed from the log's end (not re-read whole every poll).
    let mut tail = crate::events::Tail::of_log_from_end(&EventLog::of_state(ctx.state_dir));
    let mut events: Vec<Event> = Vec::new();
    // The canaries stop as the first fault goes in: what they had acknowledged is what the
    // recovery must keep.
    let acked: Vec<Vec<(u64, f64)>> = canaries.iter().map(Canary::halt).collect();
    let mut fault_s = None;
    // Every order is bounded: its site reverts it by itself past the drill's deadline and a
    // margin, whatever becomes of this process.
    let until_unix = unix(SystemTime::now()) - began.elapsed().as_secs_f64()
        + deadline.as_secs_f64()
        + faults::UNTIL_MARGIN.as_secs_f64();
    for (index, fault) in drill.faults.iter().enumerate() {
        let undo = undo_of(fault);
        if journal
            .append(Record::Undo {
                index,
                fault: fault.clone(),
                undo: undo.clone(),
            })
            .is_err()
        {
            report
                .findings
                .push("the journal could not be written: no fault injected".into());
            return Outcome::Failed;
        }
        let at = began.elapsed().as_secs_f64();
        let order = resurgo_api::types::FaultOrder {
            id: faults::order_id(&report.run, index),
            fault: fault.clone(),
            until_unix,
        };
        let result = inject(ctx, system, &order);
        let _ = journal.append(Record::Injected {
            index,
            at_s: at,
            error: result.clone().err(),
        });
        report.faults.push(FaultRecord {
            kind: fault.kind().into(),
            target: fault.target(),
            injected_at_s: result.is_ok().then_some(at),
            reverted_at_s: None,
            undo,
        });
        match result {
            Ok(()) => {
                fault_s.get_or_insert(at);
                report.timeline.push(entry(
                    began,
                    "fault_injected",
                    &format!("{} {}", fault.kind(), fault.target()),
                ));
            }
            Err(e) => {
                report.findings.push(format!(
                    "fault {} {} could not be injected: {e}",
                    fault.kind(),
                    fault.target()
                ));
                return Outcome::Failed;
            }
        }
    }
    let fault_s = fault_s.unwrap_or(0.0);
    // Recovery, by the agents and the controller on their own.
    let site_loss = drill
        .faults
        .iter()
        .any(|f| matches!(f, Fault::StopSite(_) | Fault::IsolateSite(_)));
    // A link's fault is held as long as the agents would take to declare a site dead and
    // fail over (detection, promotion delay, the lease's expiry), so that a failover it caused
    // by mistake shows — and trips a stop condition such as `event: failover_started`.
    let hold = if drill
        .faults
        .iter()
        .any(|f| matches!(f, Fault::CutLink(_) | Fault::DegradeLink(_)))
    {
        let t = system.failover.timing();
        (t.heartbeat_interval * t.suspect_after + t.promotion_delay + t.lease_ttl).as_secs_f64()
    } else {
        0.0
    };
    let objective = drill.objectives.unwrap_or(system.objectives);
    let outcome = loop {
        let backs: Vec<Option<f64>> = probes.iter().map(|p| probe::back_at(&p.answers(), fault_s)).collect();
        events.extend(tail.new_events());
        let failed_over = events.iter().any(|e| e.kind == EventKind::FailoverFinished);
        let held = began.elapsed().as_secs_f64() >= fault_s + hold;
        if backs.iter().all(Option::is_some) && (!site_loss || failed_over) && held {
            break Outcome::Completed;
        }
        if let Some(why) = stop_condition(drill, probes, &events) {
            report.findings.push(format!("stopped: {why}"));
            break Outcome::Aborted;
        }
        if ctx.interrupted.load(Ordering::Relaxed) {
            break Outcome::Interrupted;
        }
        if over(began) {
            break Outcome::DeadlinePassed;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    events.extend(tail.new_events());
    let started_unix = unix(SystemTime::now()) - began.elapsed().as_secs_f64();
    let at_s = |e: &Event| {
        resurgo_spec::units::parse_rfc3339(&e.time)
            .ok()
            .map(|t| t - started_unix)
    };
    for e in &events {
        if let Some(t) = at_s(e) {
            report.timeline.push(TimelineEntry {
                at_s: t,
                kind: e.kind.to_string(),
                message: match (&e.site, &e.service) {
                    (Some(site), Some(svc)) => format!("{svc} at {site}: {}", e.message),
                    (Some(site), None) => format!("{site}: {}", e.message),
                    _ => e.message.clone(),
                },
            });
        }
    }
    // RTO: the fault until every route answers again, in phases from the event log.
    let back = probes
        .iter()
        .map(|p| probe::back_at(&p.answers(), fault_s))
        .try_fold(fault_s, |acc, b| b.map(|b| acc.max(b)));
    let first = |kinds: &[EventKind]| {
        events
            .iter()
            .filter(|e| kinds.contains(&e.kind))
            .filter_map(at_s)
            .find(|t| *t >= fault_s)
    };
    let detected = first(&[
        EventKind::DriftSeen,
        EventKind::SiteDead,
        EventKind::SiteUnreachable,
        EventKind::SiteSuspect,
    ]);
    let decided = first(&[EventKind::FailoverStarted, EventKind::DriftCorrected]).or(detected);
    let executed = first(&[
        EventKind::FailoverFinished,
        EventKind::DriftCleared,
        EventKind::DriftCorrected,
    ]);
    // The run's first step took the target's capacity back from its workspaces: their
    // events are written once the preempt budget is over.
    let preempted = first(&[EventKind::WorkspacePreempted])
        .filter(|p| decided.is_some_and(|d| *p >= d) && executed.is_none_or(|x| *p <= x));
    let end = back.filter(|_| !probes.is_empty());
    let span = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b >= a => Some(b - a),
        _ => None,
    };
    let mut phases = Vec::new();
    let mut at = fault_s;
    for (name, until) in [
        (PhaseName::Detect, detected),
        (PhaseName::Decide, decided),
        (PhaseName::Preempt, preempted),
        (PhaseName::Execute, executed),
        (PhaseName::Propagate, end.map(|e| e.max(executed.unwrap_or(e)))),
    ] {
        if let Some(until) = until.filter(|u| *u >= at) {
            phases.push(Phase {
                name,
                start_s: at,
                end_s: until,
            });
            at = until;
        }
    }
    report.phases = phases;
    report.rto = Some(Rto {
        measured_s: end.map(|e| e - fault_s),
        objective_s: objective.rto.map_or(0.0, |d| d.0.as_secs_f64()),
        detect_s: span(Some(fault_s), detected),
        decide_s: span(detected, decided),
        preempt_s: span(decided, preempted),
        execute_s: span(preempted.or(decided), executed),
        propagate_s: match (executed, end) {
            (Some(x), Some(e)) => Some((e - x).max(0.0)),
            _ => None,
        },
    })
    .filter(|_| !probes.is_empty());
    // RPO: what the canaries had acknowledged before the fault, against what is there now.
    if !canaries.is_empty() {
        let (now, _) = (ctx.load)().unwrap_or_else(|_| (system.clone(), String::new()));
        let mut datasets = Vec::new();
        for (c, acked) in canaries.iter().zip(&acked) {
            let last = acked.last().copied();
            let site = probe::active_site(&now, &c.dataset).unwrap_or_default();
            // The data comes back with its service (a killed database is restarted): asked
            // again until it answers, within the drill's deadline.
            let mut found = probe::recovered(&now, ctx.engine, ctx.state_dir, &c.dataset);
            while found.is_err() && began.elapsed() < deadline && !ctx.interrupted.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                found = probe::recovered(&now, ctx.engine, ctx.state_dir, &c.dataset);
            }
            let (recovered, lost, seconds, detail) = match (&found, last) {
                (Ok(n), Some((last_seq, last_at))) => match acked.iter().find(|(s, _)| s == n) {
                    // Some canary write survived: the data lost is what came after it.
                    Some((_, kept_at)) => (
                        Some(*n),
                        Some(acked.iter().filter(|(s, _)| s > n).count() as u64),
                        Some(last_at - kept_at),
                        Some(format!("last acknowledged #{last_seq}, recovered up to #{n}")),
                    ),
                    // None did: the copy is older than the canary. It is the newest restore
                    // point the site had at the fault; what was lost is everything since.
                    None if *n == 0 => {
                        let fault_unix = started_unix + fault_s;
                        let point = crate::protect::Protector::new(&now, ctx.engine, ctx.state_dir)
                            .open(&site)
                            .and_then(|repo| Ok(repo.snapshots(Some(&c.dataset))?))
                            .ok()
                            .and_then(|all| all.into_iter().rfind(|p| (p.unix as f64) <= fault_unix + 1.0));
                        (
                            Some(0),
                            Some(acked.len() as u64),
                            point.as_ref().map(|p| (fault_unix - p.unix as f64).max(0.0)),
                            Some(match &point {
                                Some(p) => format!(
                                    "no canary write survived: the copy is the restore point of {} ({:.1} s before the fault)",
                                    p.time,
                                    fault_unix - p.unix as f64
                                ),
                                None => "no canary write survived, and the restore point used cannot be told".into(),
                            }),
                        )
                    }
                    None => (
                        Some(*n),
                        None,
                        None,
                        Some(format!(
                            "the copy holds canary #{n}, which this drill never acknowledged"
                        )),
                    ),
                },
                (Ok(n), None) => (Some(*n), Some(0), Some(0.0), None),
                (Err(e), _) => (None, None, None, Some(format!("cannot read the recovered copy: {e}"))),
            };
            datasets.push(CanaryResult {
                dataset: c.dataset.clone(),
                kind: probe::kind_name(c.kind).into(),
                site: site.clone(),
                acknowledged: acked.len() as u64,
                recovered,
                writes_lost: lost,
                seconds,
                detail,
            });
            let (method, result) = probe::data_check(&now, ctx.engine, ctx.state_dir, &c.dataset);
            report.data_checks.push(DataCheck {
                dataset: c.dataset.clone(),
                site,
                method,
                passed: result.is_ok(),
                detail: Some(result.unwrap_or_else(|e| e)),
            });
        }
        let lost: Option<u64> = datasets.iter().map(|d| d.writes_lost).sum();
        let seconds = datasets
            .iter()
            .map(|d| d.seconds)
            .try_fold(0.0f64, |acc, s| s.map(|s| acc.max(s)));
        report.rpo = Some(Rpo {
            objective_s: objective.rpo.map_or(0.0, |d| d.0.as_secs_f64()),
            writes_lost: lost,
            seconds,
            datasets,
        });
        if let Some(limit) = drill.stop.iter().find_map(|s| match s {
            StopCondition::WritesLostOver(n) => Some(*n),
            _ => None,
        }) {
            if lost.is_some_and(|l| l > limit) {
                report.findings.push(format!(
                    "stopped: {} canary writes lost, over the limit {limit}",
                    lost.unwrap_or(0)
                ));
                return Outcome::Aborted;
            }
        }
    }
    outcome
}

/// The first stop condition that holds, said for people.
fn stop_condition(drill: &Drill, probes: &[RouteProbe], events: &[Event]) -> Option<String> {
    drill.stop.iter().find_map(|s| match s {
        StopCondition::UnavailableFor(d) => probes.iter().find_map(|p| {
            let down = probe::failing_for(&p.answers());
            (down >= d.0.as_secs_f64()).then(|| format!("route `{}` unavailable for {down:.1} s (limit {d})", p.route))
        }),
        StopCondition::Event(kind) => events
            .iter()
            .find(|e| e.kind.to_string() == *kind)
            .map(|e| format!("event {kind}: {}", e.message)),
        StopCondition::WritesLostOver(_) => None,
    })
}

/// Teardown (always), failback, leak check, verdict; the report written and the journal ended.
fn finish(ctx: &DrillContext, journal: &mut Journal, mut report: Report, began: Instant) -> Result<Report, DrillError> {
    let teardown_from = began.elapsed().as_secs_f64();
    journal.append(Record::TeardownBegun {
        at_s: teardown_from,
        outcome: report.outcome,
    })?;
    report.timeline.push(entry(began, "teardown", "teardown begins"));
    let (system, _) = (ctx.load)().map_err(DrillError::Refused)?;
    let Some(Begun { name, drill, .. }) = journal.begun() else {
        return Err(DrillError::Refused(
            "the journal does not say which drill it was".into(),
        ));
    };
    let (name, drill) = (name.clone(), drill.clone());
    // Sandboxes first: their services, namespaces and copies.
    for (id, site) in journal.sandboxes() {
        let result = ctx.faults.destroy_sandbox(ctx.written, &site, &id).map(drop);
        journal.append(Record::SandboxDestroyed {
            id: id.clone(),
            error: result.clone().err(),
        })?;
        if let Some(f) = report.faults.iter_mut().find(|f| f.kind == "sandbox") {
            f.reverted_at_s = Some(began.elapsed().as_secs_f64());
        }
        match result {
            Ok(()) => report.timeline.push(entry(
                began,
                "sandbox_destroyed",
                &format!("sandbox at {site} destroyed"),
            )),
            Err(e) => report
                .findings
                .push(format!("sandbox {id} at {site} could not be destroyed: {e}")),
        }
    }
    // The faults undone newest first; one that fails to revert does not stop the others.
    let mut undos = journal.undos();
    undos.reverse();
    for (index, fault, _) in undos {
        if journal.reverted(index) {
            continue;
        }
        let result = revert(ctx, &system, &fault, &faults::order_id(&report.run, index));
        let at = began.elapsed().as_secs_f64();
        journal.append(Record::Reverted {
            index,
            at_s: at,
            error: result.clone().err(),
        })?;
        if let Some(f) = report.faults.get_mut(index) {
            f.reverted_at_s = Some(at);
        }
        match result {
            Ok(()) => report.timeline.push(entry(
                began,
                "fault_reverted",
                &format!("{} {}", fault.kind(), fault.target()),
            )),
            Err(e) => report.findings.push(format!(
                "fault {} {} could not be reverted: {e}",
                fault.kind(),
                fault.target()
            )),
        }
    }
    // The system back where the spec puts it: a live site loss that failed over fails back.
    let (now, _) = (ctx.load)().map_err(DrillError::Refused)?;
    let services = drill.scope.services(ctx.written);
    let moved: Vec<(String, String)> = services
        .iter()
        .filter_map(|s| {
            let at = now.services.get(s)?.site.clone();
            let home = ctx.written.services.get(s)?.site.clone();
            (at != home).then_some((at, home))
        })
        .collect();
    let mut failback_span = None;
    if let (true, Some((from, to))) = (drill.failback, moved.first().cloned()) {
        let t0 = began.elapsed().as_secs_f64();
        // The old site rejoins as a standby first (its agent's doing), then the switch back.
        let result = wait_for(Duration::from_secs(120), || standby_ready(ctx, &now, &to))
            .ok_or_else(|| format!("site `{to}` did not come back as a standby within 120 s"))
            .and_then(|()| (ctx.failback)(&from, &to));
        match result {
            Ok(()) => {
                report
                    .timeline
                    .push(entry(began, "failed_back", &format!("services back at {to}")));
                failback_span = Some((t0, began.elapsed().as_secs_f64()));
                remove_stopped_movers(ctx, &services, &from, &mut report, began);
            }
            Err(e) => report
                .findings
                .push(format!("failback from {from} to {to} failed: {e}")),
        }
    }
    // What the recovery set aside during the drill is kept (it may hold the writes a failover
    // lost): said in the timeline, not deleted.
    let started_unix = unix(SystemTime::now()) - began.elapsed().as_secs_f64();
    for (site, handle) in ctx
        .written
        .sites
        .keys()
        .filter_map(|s| Some((s, ctx.engine.site(ctx.written, s)?)))
    {
        for copy in ctx.engine.provider.set_aside_copies(&handle).unwrap_or_default() {
            if resurgo_spec::units::parse_rfc3339(&copy.at).is_ok_and(|t| t + 1.0 >= started_unix) {
                report.timeline.push(entry(
                    began,
                    "set_aside_kept",
                    &format!(
                        "kept at {site}: {} ({} bytes; {}); `resurgo set-aside` lists it",
                        copy.id, copy.bytes, copy.why
                    ),
                ));
            }
        }
    }
    // The canaries removed where the data now is.
    let (now, _) = (ctx.load)().map_err(DrillError::Refused)?;
    for dataset in reachable_canaries(ctx, &drill, ctx.written).0 {
        if let Err(e) = probe::remove(&now, ctx.engine, ctx.state_dir, &dataset) {
            report
                .findings
                .push(format!("the canary in `{dataset}` could not be removed: {e}"));
        }
    }
    report.leftovers = leak_check(ctx, &drill, journal, &now);
    // A drill that was to leave the services where the spec places them and did not.
    if drill.failback || report.mode == Mode::Isolated {
        for service in drill.scope.services(ctx.written) {
            let (Some(at), Some(home)) = (now.services.get(&service), ctx.written.services.get(&service)) else {
                continue;
            };
            if at.site != home.site {
                report.leftovers.push(Leftover {
                    kind: "service".into(),
                    what: format!(
                        "`{service}` is active at {}, where the spec places it at {}",
                        at.site, home.site
                    ),
                    place: format!("site {}", at.site),
                });
            }
        }
    }
    if let Some((a, b)) = failback_span {
        report.phases.push(Phase {
            name: PhaseName::Failback,
            start_s: a,
            end_s: b,
        });
    }
    report.phases.push(Phase {
        name: PhaseName::Teardown,
        start_s: teardown_from,
        end_s: began.elapsed().as_secs_f64(),
    });
    report.ended = Some(crate::events::now_rfc3339());
    // The verdict is the report's checks; what the drill itself saw (a step that failed, a
    // stop condition) stays, before the checks' findings.
    report.timeline.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let seen = std::mem::take(&mut report.findings);
    report.judge();
    report.findings.splice(0..0, seen);
    let path = report_path(ctx.state_dir, &report.run);
    let text = serde_json::to_vec_pretty(&report).unwrap_or_default();
    std::fs::write(&path, text).map_err(|e| DrillError::Journal {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    journal.append(Record::Ended {
        at_s: began.elapsed().as_secs_f64(),
    })?;
    emit(
        ctx,
        if report.verdict == Verdict::Pass {
            EventKind::DrillPassed
        } else {
            EventKind::DrillFailed
        },
        &format!("drill {name} ({}): {}", report.run, report.verdict.as_str()),
    );
    Ok(report)
}

/// After a failback: the instances the failover started at `from` that the spec no longer
/// places there, stopped by the failback, are removed (their folders set aside, never
/// deleted), so no orphan is left at `from`.
fn remove_stopped_movers(ctx: &DrillContext, services: &[String], from: &str, report: &mut Report, began: Instant) {
    if ctx.faults.across_hosts() {
        // `from`'s agent keeps its own instances; this host cannot reach them.
        return;
    }
    let Ok((now, _)) = (ctx.load)() else { return };
    let Some(handle) = ctx.engine.site(&now, from) else {
        return;
    };
    let wanted = resurgo_plan::desired::desired_state(&now);
    let wanted_here = wanted.get(from);
    let Ok(seen) = ctx.engine.provider.observe(&handle) else {
        return;
    };
    for s in seen {
        let orphan = services.contains(&s.service) && wanted_here.is_none_or(|at| !at.contains_key(&s.service));
        let stopped = !matches!(s.process, resurgo_plan::ProcessState::Running { .. });
        if orphan && stopped {
            match ctx.engine.provider.remove(&handle, &s.service) {
                Ok(()) => report.timeline.push(entry(
                    began,
                    "removed",
                    &format!(
                        "`{}` at {from}, stopped by the failback, removed (its folder set aside)",
                        s.service
                    ),
                )),
                Err(e) => report.findings.push(format!(
                    "`{}` at {from} could not be removed after the failback: {e}",
                    s.service
                )),
            }
        }
    }
}

/// Whether `site` is back within reach and runs every standby instance the spec wants there
/// now (a failback starts from there).
fn standby_ready(ctx: &DrillContext, system: &System, site: &str) -> Option<()> {
    let seen = ctx.faults.observe(system, site).ok()?;
    let desired = resurgo_plan::desired::desired_state(system);
    desired
        .get(site)
        .into_iter()
        .flat_map(|at| at.values())
        .filter(|c| c.role == resurgo_plan::Role::Standby)
        .all(|c| seen.iter().any(|s| s.service == c.service && s.running && s.standby))
        .then_some(())
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> Option<()>) -> Option<()> {
    let until = Instant::now() + limit;
    loop {
        if f().is_some() {
            return Some(());
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the drill left behind: faults not undone (by its journal, and by what each site says
/// is in force), services in scope not running where the spec puts them, sites still out of
/// reach, canaries still in the data.
fn leak_check(ctx: &DrillContext, drill: &Drill, journal: &Journal, now: &System) -> Vec<Leftover> {
    let mut left = Vec::new();
    if let Some(Begun { run, .. }) = journal.begun() {
        for site in now.sites.keys() {
            match ctx.faults.in_force(site) {
                Ok(in_force) => {
                    left.extend(
                        in_force
                            .iter()
                            .filter(|f| faults::of_run(&f.order.id, run))
                            .map(|f| Leftover {
                                kind: "fault".into(),
                                what: format!(
                                    "{} {} still in force at `{site}` ({})",
                                    f.order.fault.kind(),
                                    f.order.fault.target(),
                                    f.done.join("; ")
                                ),
                                place: site.clone(),
                            }),
                    )
                }
                Err(e) => left.push(Leftover {
                    kind: "fault".into(),
                    what: format!("cannot tell which faults are in force at `{site}`: {e}"),
                    place: site.clone(),
                }),
            }
        }
    }
    for (index, fault, _) in journal.undos() {
        if !journal.reverted(index) {
            left.push(Leftover {
                kind: "fault".into(),
                what: format!("{} {} not undone", fault.kind(), fault.target()),
                place: fault.target(),
            });
        }
    }
    for record in &journal.records {
        if let Record::Sandbox { id, site } = record {
            match ctx.faults.sandbox(ctx.written, site, id) {
                Ok(state) => left.extend(state.leftovers.into_iter().map(|l| Leftover {
                    kind: l.kind,
                    what: l.what,
                    place: l.place,
                })),
                Err(e) => left.push(Leftover {
                    kind: "clone".into(),
                    what: format!("cannot tell what is left of sandbox {id} at `{site}`: {e}"),
                    place: site.clone(),
                }),
            }
        }
    }
    for site in now.sites.keys() {
        if let Err(e) = ctx.faults.observe(now, site) {
            left.push(Leftover {
                kind: "site".into(),
                what: format!("site `{site}` cannot be observed: {e}"),
                place: site.clone(),
            });
        }
    }
    // Services in scope: running where they are active, within a minute of teardown (the
    // controller restarts a killed one; a failed-back one starts).
    for service in drill.scope.services(now) {
        let Some(site) = now.services.get(&service).map(|s| s.site.clone()) else {
            continue;
        };
        let running = wait_for(Duration::from_secs(60), || {
            ctx.faults
                .observe(now, &site)
                .ok()?
                .iter()
                .any(|s| s.service == service && s.running)
                .then_some(())
        });
        if running.is_none() {
            left.push(Leftover {
                kind: "process".into(),
                what: format!("service `{service}` is not running at `{site}` after the drill"),
                place: site.clone(),
            });
        }
    }
    for dataset in reachable_canaries(ctx, drill, ctx.written).0 {
        let place = probe::active_site(now, &dataset).unwrap_or_default();
        match probe::recovered(now, ctx.engine, ctx.state_dir, &dataset) {
            Ok(0) => {}
            Ok(n) => left.push(Leftover {
                kind: "canary".into(),
                what: format!("{n} canary writes left in `{dataset}`"),
                place,
            }),
            Err(e) => left.push(Leftover {
                kind: "canary".into(),
                what: format!("cannot tell whether the canary left `{dataset}`: {e}"),
                place,
            }),
        }
    }
    left
}
