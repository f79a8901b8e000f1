//! Executing a failover (or a failback, which is a failover back): the recovery plan derived
//! from the spec ([`resurgo_plan::recovery`]), each step implemented here over the providers,
//! the vault, the coordination store and the routes, and run by the journaled runbook — so a
//! run killed at any point resumes to the same end state.
//!
//! Steps check before they act: a fenced site is not fenced twice, restored data is not
//! restored again (a marker records the epoch that restored it), an assignment already at the
//! run's epoch is left alone, a service already healthy at the target is not restarted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use resurgo_coord::{Assignment, CasOutcome, CoordStore, StoreError};
use resurgo_plan::recovery::{failover_steps, StepAction};
use resurgo_plan::ProcessState;
use resurgo_provider::Provider;
use resurgo_runbook::plan::{PlanKind, RecoveryPlan, StepSpec};
use resurgo_runbook::run::{RunReport, Runner, Steps};
use resurgo_runbook::step::{Check, Step, StepContext, StepError};
use resurgo_spec::{DatasetKind, PgMethod, System};

use crate::engine::Engine;
use crate::protect::Protector;
use crate::roles::{group_of, primary_lease};

/// What the steps share.
struct Ctx {
    /// The system as it is now (assignments applied), services still at `from`.
    before: System,
    /// The system once `to` is primary.
    after: System,
    engine: Engine,
    state_dir: PathBuf,
    /// The assignment group: the site the spec places these services at.
    group: String,
    store: Arc<dyn CoordStore>,
    options: RunOptions,
    /// The site the run moves from, and the one it moves to.
    from: String,
    to: String,
}

/// Where a planned switch's final sync learns the old primary's shutdown checkpoints: from its
/// data directory (a site this process reaches), or from its agent's handover answer.
#[derive(Clone, Copy)]
enum Checkpoints<'a> {
    At(&'a str),
    Told(&'a crate::roles::handover::Answer),
}

/// How a run may act.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct RunOptions {
    /// A failover (the default) or a failback: only the run's name and history differ.
    #[serde(default)]
    pub failback: bool,
    /// The site this process runs at (an agent): only its services are touched; other sites
    /// are reached through the coordination store only. None: every site is reachable from
    /// here (the one-machine default, or an operator's machine).
    #[serde(default)]
    pub local: Option<String>,
    /// Promote a standby even if its lag exceeds the RPO objective (recorded with the run).
    #[serde(default)]
    pub accept_data_loss: bool,
    /// How the loss was detected, when an agent decided (recorded with the run).
    #[serde(default)]
    pub detection: Option<Detection>,
}

/// What the agent that decided a failover measured.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Detection {
    /// Unix ms of the last heartbeat received from the lost site.
    pub last_heartbeat_ms: u64,
    /// Unix ms when the site was declared dead (suspect here, lost by the witness).
    pub declared_dead_ms: u64,
    /// Unix ms when the failover was decided (after the promotion delay and the policy).
    pub decided_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    #[error("refusing `{to}` as a target: {reason}")]
    Refused { to: String, reason: String },
    #[error("cannot read or write the primary assignment: {0}")]
    Coord(String),
    #[error("the run could not proceed: {0}")]
    Run(String),
}

/// The group a move from `from` moves: the site where the spec (`spec_system`, as written)
/// places the services that are active at `from` now (`system`, assignments applied).
pub fn group_site(spec_system: &System, system: &System, from: &str) -> Option<String> {
    system
        .services
        .iter()
        .find(|(_, s)| s.site == from)
        .and_then(|(n, _)| spec_system.services.get(n))
        .map(|s| s.site.clone())
}

/// Writes the start of a run a person asked for to the event log (`failover_started` at its
/// target; an agent writes those it decides itself), so that the record and the
/// notifications (`crate::notify`) see every failover and failback.
pub fn record_start(state_dir: &Path, from: &str, to: &str, failback: bool) {
    let what = if failback { "failback" } else { "failover" };
    let event = crate::events::Event::new(
        crate::events::EventKind::FailoverStarted,
        format!("{what} from {from} to {to}, asked by a person"),
    )
    .site(to);
    event.log(true);
    let _ = crate::events::EventLog::of_state(state_dir).append(&event);
}

/// Writes the end of a run [`record_start`] announced: `failover_finished` with its outcome,
/// or `failover_failed`.
pub fn record_end(state_dir: &Path, to: &str, result: &Result<RunReport, FailoverError>) {
    use crate::events::{Event, EventKind};
    let event = match result {
        Ok(report) => Event::new(
            EventKind::FailoverFinished,
            format!("run {}: {}", report.run, report.outcome),
        ),
        Err(e) => Event::new(EventKind::FailoverFailed, e.to_string()),
    }
    .site(to);
    event.log(true);
    let _ = crate::events::EventLog::of_state(state_dir).append(&event);
}

/// Plans and runs the move of every service active at `from` (in `system`, assignments
/// applied) to `to`. `spec_system` is the spec as written, to name the assignment group.
pub fn execute(
    spec_system: &System,
    system: &System,
    engine: &Engine,
    state_dir: &Path,
    from: &str,
    to: &str,
    options: RunOptions,
) -> Result<RunReport, FailoverError> {
    execute_announced(
        spec_system,
        system,
        engine,
        state_dir,
        from,
        to,
        options,
        Box::new(|_| {}),
    )
}

/// [`execute`], telling `announce` the run's id once its journal has begun (the site API
/// answers with it, then the run goes on).
#[allow(clippy::too_many_arguments)]
pub fn execute_announced(
    spec_system: &System,
    system: &System,
    engine: &Engine,
    state_dir: &Path,
    from: &str,
    to: &str,
    options: RunOptions,
    announce: Box<dyn Fn(&str) + Send + Sync>,
) -> Result<RunReport, FailoverError> {
    let kind = if options.failback {
        PlanKind::Failback
    } else {
        PlanKind::Failover
    };
    let refused = |reason: String| FailoverError::Refused { to: to.into(), reason };
    let steps = failover_steps(system, from, to).map_err(|e| refused(e.to_string()))?;
    let group_site =
        group_site(spec_system, system, from).ok_or_else(|| refused(format!("no service is active at `{from}`")))?;
    let store = crate::roles::open_store(system, state_dir).map_err(|e| FailoverError::Coord(e.to_string()))?;
    let current = store
        .get_assignment(&group_of(&group_site))
        .map_err(|e| FailoverError::Coord(e.to_string()))?;
    let epoch = current.as_ref().map_or(1, |a| a.epoch + 1);
    let mut after = system.clone();
    resurgo_plan::recovery::apply_move(&mut after, from, to);
    let ctx = Arc::new(Ctx {
        before: system.clone(),
        after,
        engine: engine.clone(),
        state_dir: state_dir.to_path_buf(),
        group: group_of(&group_site),
        store,
        options: options.clone(),
        from: from.to_string(),
        to: to.to_string(),
    });
    let plan = RecoveryPlan {
        id: format!(
            "{}-{from}-to-{to}",
            if kind == PlanKind::Failback {
                "failback"
            } else {
                "failover"
            }
        ),
        kind,
        epoch,
        steps: step_specs(&steps),
    };
    let run_id = format!("{}-e{epoch}-{}", plan.id, now_millis());
    // What resuming needs besides the journal: which move this is, and each step's action.
    let sidecar = Moves {
        from: from.into(),
        to: to.into(),
        group: ctx.group.clone(),
        epoch,
        steps: steps.clone(),
        options,
    };
    let runs = state_dir.join("runs");
    resurgo_provider::private_dir(&runs).map_err(|e| FailoverError::Run(e.to_string()))?;
    resurgo_provider::write_json_atomic(&moves_path(state_dir, &run_id), &sidecar)
        .map_err(|e| FailoverError::Run(e.to_string()))?;
    // While the run moves services, the controller must not "correct" them under its feet.
    let _active = ActiveRun::mark(state_dir).map_err(|e| FailoverError::Run(e.to_string()))?;
    let _keeper = LeaseKeeper::start(&ctx, to);
    // Announced once the journal holds its first record: a reader asking for the run then
    // finds it.
    let announced = std::sync::Once::new();
    let id = run_id.clone();
    let announce = std::sync::Arc::new(move |_: &resurgo_runbook::journal::Record| {
        announced.call_once(|| announce(&id));
    });
    let report = Runner::new(runs)
        .observer(announce)
        .start_as(&run_id, &plan, &impls(&steps, &ctx))
        .map_err(|e| FailoverError::Run(e.to_string()))?;
    record_measures(&ctx, &run_id, &sidecar.options);
    Ok(report)
}

/// Reverse replication before a failback from `from` to `to`: brings `to` up as a standby of
/// the current primary (an old primary's data is set aside and the standby seeded afresh) and
/// waits until each of its standbys streams less than a second behind, for at most `catch_up`.
/// A dataset kept by backups has no standby: the writes at `from` stop (its services are
/// stopped), a final backup is taken there (PostgreSQL's clean shutdown archives its last WAL
/// instead) and replicated to `to`, whose restore then has every write. `desired` has the
/// assignments applied. Tells `progress` what it sees.
pub fn prepare_failback(
    engine: &Engine,
    desired: &crate::Desired,
    state_dir: &Path,
    from: &str,
    to: &str,
    catch_up: std::time::Duration,
    progress: &dyn Fn(String),
) -> Result<(), String> {
    let system = &desired.loaded.system;
    // Standbys only: no lease is held at `to` yet, and what is active there is its agent's.
    crate::agent::serve_site(engine, system, &desired.source, to, &|_| false)
        .map_err(|e| format!("bringing {to} up as a standby of {from}: {e}"))?;
    let protector = crate::protect::Protector::new(system, engine, state_dir);
    let by_backup: Vec<(&String, &resurgo_spec::Dataset)> = system
        .datasets
        .iter()
        .filter(|(_, d)| d.strategy == resurgo_spec::Strategy::Backup)
        .filter(|(_, d)| system.services.get(&d.service).is_some_and(|s| s.site == from))
        .collect();
    if !by_backup.is_empty() {
        let stopped = fence(engine, system, from).map_err(|e| format!("stopping the writes at {from}: {e}"))?;
        progress(format!(
            "writes stopped at {from} ({stopped} services) for the final backup"
        ));
        for (name, ds) in by_backup {
            if ds.kind != resurgo_spec::DatasetKind::Postgres {
                let snapshot = protector
                    .backup(name)
                    .map_err(|e| format!("the final backup of `{name}` at {from}: {e}"))?;
                progress(format!(
                    "final backup of `{name}` at {from}: {}",
                    &snapshot.id[..8.min(snapshot.id.len())]
                ));
            }
            protector
                .replicate(Some(name), from, to)
                .map_err(|e| format!("replicating `{name}` from {from} to {to}: {e}"))?;
            progress(format!("`{name}` replicated from {from} to {to}"));
        }
    }
    let deadline = std::time::Instant::now() + catch_up;
    let behind =
        |name: &str, lag: String| format!("`{name}` at {to} has not caught up with {from} within {catch_up:?}: {lag}");
    for name in system.datasets.keys() {
        if protector.standby_site(name).map_err(|e| e.to_string())?.as_deref() != Some(to) {
            continue;
        }
        loop {
            match protector.standby_lag(name, to) {
                Ok(lag) if lag.streaming && lag.seconds.is_some_and(|s| s < 1.0) => {
                    progress(format!(
                        "reverse replication: `{name}` at {to} follows {from} ({} bytes behind)",
                        lag.bytes
                    ));
                    break;
                }
                Ok(_) | Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(200))
                }
                Ok(lag) => {
                    return Err(behind(
                        name,
                        format!(
                            "{} bytes behind, {}, {}",
                            lag.bytes,
                            lag.seconds
                                .map_or_else(|| "time behind unknown".to_string(), |s| format!("{s:.1}s behind")),
                            if lag.streaming { "streaming" } else { "not streaming" }
                        ),
                    ))
                }
                Err(e) => return Err(behind(name, e.to_string())),
            }
        }
    }
    Ok(())
}

/// What a run measured, stored beside its journal (`<run>.measures.json`).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Measures {
    /// Last heartbeat from the lost site → declared dead (agent runs only).
    pub detection_s: Option<f64>,
    /// Declared dead → failover decided (promotion delay and policy).
    pub decision_s: Option<f64>,
    /// Last heartbeat (the latest the fault can have happened) → run finished: the services
    /// answer at the target. For a run started by a person, from the run's start.
    pub rto_s: Option<f64>,
    /// Data that may be lost, as time: for a promoted standby its last measured lag; None
    /// when the run measured nothing (a canary writer measures it end to end).
    pub rpo_s: Option<f64>,
    /// Whether the run was allowed to promote beyond the RPO objective.
    pub accept_data_loss: bool,
    /// Of the RTO, the time spent taking the target's capacity back from its workspaces.
    #[serde(default)]
    pub preempt_s: Option<f64>,
}

fn record_measures(ctx: &Ctx, run_id: &str, options: &RunOptions) {
    let now = now_millis() as u64;
    let started = started_ms(run_id).unwrap_or(now);
    let d = options.detection.as_ref();
    let secs = |a: u64, b: u64| Some(b.saturating_sub(a) as f64 / 1000.0);
    let promoted: Vec<f64> = ctx
        .after
        .datasets
        .iter()
        .filter(|(_, ds)| ds.strategy == resurgo_spec::Strategy::Standby && ds.kind == DatasetKind::Postgres)
        .filter_map(|(name, _)| crate::protect::read_lag(&ctx.state_dir, name, &ctx.to).and_then(|l| l.seconds))
        .collect();
    let measures = Measures {
        detection_s: d.and_then(|d| secs(d.last_heartbeat_ms, d.declared_dead_ms)),
        decision_s: d.and_then(|d| secs(d.declared_dead_ms, d.decided_ms)),
        rto_s: secs(d.map_or(started, |d| d.last_heartbeat_ms), now),
        rpo_s: promoted.into_iter().reduce(f64::max),
        accept_data_loss: options.accept_data_loss,
        preempt_s: preempted(&ctx.state_dir, run_id).map(|p| p.took_s),
    };
    let _ = resurgo_provider::write_json_atomic(&measures_path(&ctx.state_dir, run_id), &measures);
}

/// What the run's preempt step did (`<run>.preempted.json`).
fn preempted_path(state_dir: &Path, run_id: &str) -> PathBuf {
    state_dir.join("runs").join(format!("{run_id}.preempted.json"))
}

/// What run `run_id`'s preempt step did, once it ran.
pub fn preempted(state_dir: &Path, run_id: &str) -> Option<crate::workspace::Preempted> {
    serde_json::from_slice(&std::fs::read(preempted_path(state_dir, run_id)).ok()?).ok()
}

fn measures_path(state_dir: &Path, run_id: &str) -> PathBuf {
    state_dir.join("runs").join(format!("{run_id}.measures.json"))
}

/// The measures stored with a run, if it finished.
pub fn measures(state_dir: &Path, run_id: &str) -> Option<Measures> {
    serde_json::from_slice(&std::fs::read(measures_path(state_dir, run_id)).ok()?).ok()
}

/// Resumes a failover or failback run that was interrupted (its process killed): finished
/// steps are skipped, a started one is checked again, and the run ends where it would have.
pub fn resume(system: &System, engine: &Engine, state_dir: &Path, run_id: &str) -> Result<RunReport, FailoverError> {
    let moves = read_moves(state_dir, run_id).map_err(|e| FailoverError::Run(format!("run `{run_id}`: {e}")))?;
    // `system` has the assignments in force: if this run already assigned the target, the
    // services are there; otherwise they are still at `from`.
    let store = crate::roles::open_store(system, state_dir).map_err(|e| FailoverError::Coord(e.to_string()))?;
    let (before, after) = if assigned(store.as_ref(), &moves)? {
        let mut before = system.clone();
        resurgo_plan::recovery::apply_move(&mut before, &moves.to, &moves.from);
        (before, system.clone())
    } else {
        let mut after = system.clone();
        resurgo_plan::recovery::apply_move(&mut after, &moves.from, &moves.to);
        (system.clone(), after)
    };
    let ctx = Arc::new(Ctx {
        before,
        after,
        engine: engine.clone(),
        state_dir: state_dir.to_path_buf(),
        group: moves.group.clone(),
        store,
        options: moves.options.clone(),
        from: moves.from.clone(),
        to: moves.to.clone(),
    });
    let _active = ActiveRun::mark(state_dir).map_err(|e| FailoverError::Run(e.to_string()))?;
    let _keeper = LeaseKeeper::start(&ctx, &moves.to);
    let report = Runner::new(state_dir.join("runs"))
        .resume(run_id, moves.epoch, &impls(&moves.steps, &ctx))
        .map_err(|e| FailoverError::Run(e.to_string()))?;
    record_measures(&ctx, run_id, &moves.options);
    Ok(report)
}

/// Whether a run moving `group` to `to` is at work now (in this process or another sharing the
/// state folder): the site's agent then leaves the group's services to it.
pub fn moving_to(state_dir: &Path, to: &str, group: &str) -> bool {
    run_in_progress(state_dir)
        && moves_of(state_dir)
            .into_iter()
            .any(|(id, m)| m.to == to && m.group == group && outcome_is(state_dir, &id, incomplete))
}

/// The runs whose target is `to` that were interrupted (their process died mid-run), oldest
/// first: a site's daemon, restarted, resumes them to their end.
pub fn interrupted(state_dir: &Path, to: &str) -> Vec<String> {
    moves_of(state_dir)
        .into_iter()
        .filter(|(id, m)| m.to == to && outcome_is(state_dir, id, incomplete))
        .map(|(id, _)| id)
        .collect()
}

/// The newest run moving `from` → `to` that was interrupted or stopped part-way (to resume
/// rather than start another, which would find nothing left to move).
pub fn unfinished(state_dir: &Path, from: &str, to: &str) -> Option<String> {
    use resurgo_runbook::run::RunOutcome;
    moves_of(state_dir)
        .into_iter()
        .rev()
        .filter(|(_, m)| m.from == from && m.to == to)
        .map(|(id, _)| id)
        .find(|id| {
            outcome_is(state_dir, id, |o| {
                matches!(o, RunOutcome::Stopped { .. } | RunOutcome::Incomplete)
            })
        })
}

/// Every run that recorded its move (`<id>.moves.json`), oldest first.
fn moves_of(state_dir: &Path) -> Vec<(String, Moves)> {
    let mut runs: Vec<(u64, String, Moves)> = std::fs::read_dir(state_dir.join("runs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let id = e.file_name().to_string_lossy().strip_suffix(".moves.json")?.to_string();
            let moves = read_moves(state_dir, &id).ok()?;
            Some((started_ms(&id)?, id, moves))
        })
        .collect();
    runs.sort_by_key(|(at, id, _)| (*at, id.clone()));
    runs.into_iter().map(|(_, id, m)| (id, m)).collect()
}

/// Whether run `id`'s journal, as it stands, ends as `wanted` says.
fn outcome_is(state_dir: &Path, id: &str, wanted: impl Fn(&resurgo_runbook::run::RunOutcome) -> bool) -> bool {
    Runner::new(state_dir.join("runs"))
        .report(id)
        .is_ok_and(|r| wanted(&r.outcome))
}

fn incomplete(outcome: &resurgo_runbook::run::RunOutcome) -> bool {
    *outcome == resurgo_runbook::run::RunOutcome::Incomplete
}

/// For a run that did not succeed, a sentence for a person: where the system stands and how
/// to finish the run. None for a run that succeeded.
pub fn where_it_stands(system: &System, state_dir: &Path, report: &RunReport) -> Option<String> {
    use resurgo_runbook::run::RunOutcome;
    if report.outcome == RunOutcome::Succeeded {
        return None;
    }
    let Ok(moves) = read_moves(state_dir, &report.run) else {
        return Some(format!(
            "finish it with `resurgo runs {} --resume` once the cause is fixed",
            report.run
        ));
    };
    let primary = crate::roles::open_store(system, state_dir)
        .ok()
        .and_then(|store| store.get_assignment(&moves.group).ok())
        .map(|a| match a {
            Some(a) => format!(
                "the primary of {} is {} (epoch {})",
                moves.group, a.primary_site, a.epoch
            ),
            None => format!("{} has never moved", moves.group),
        })
        .unwrap_or_else(|| format!("the primary of {} cannot be read from the store", moves.group));
    Some(format!(
        "the run moving {} from {} to {} stopped part-way: {primary}; nothing was undone. \
         Fix the cause, then finish it with `resurgo runs {} --resume`",
        moves.group, moves.from, moves.to, report.run
    ))
}

/// Whether the run's assignment (its epoch, its target) is in force.
fn assigned(store: &dyn CoordStore, moves: &Moves) -> Result<bool, FailoverError> {
    let current = store
        .get_assignment(&moves.group)
        .map_err(|e| FailoverError::Coord(e.to_string()))?;
    Ok(current.is_some_and(|a| a.epoch == moves.epoch && a.primary_site == moves.to))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Moves {
    from: String,
    to: String,
    group: String,
    epoch: u64,
    steps: Vec<resurgo_plan::recovery::RecoveryStep>,
    #[serde(default)]
    options: RunOptions,
}

/// Keeps the primary lease the run took for its target alive while the run lasts (the agent
/// at the target adopts it afterwards), so the old primary cannot take it back mid-run.
struct LeaseKeeper(Option<std::sync::mpsc::Sender<()>>);

impl LeaseKeeper {
    fn start(ctx: &Arc<Ctx>, to: &str) -> LeaseKeeper {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let ctx = ctx.clone();
        let to = to.to_string();
        let every = ctx.before.failover.timing().lease_ttl / 4;
        std::thread::spawn(move || {
            let name = primary_lease(&ctx.group);
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                if let Ok(Some((holder, _))) = ctx.store.lease_holder(&name) {
                    if holder == to {
                        if let Ok(Some(id)) = ctx.store.lease_of(&name) {
                            let _ = ctx.store.keep_alive(id);
                        }
                    }
                }
            }
        });
        LeaseKeeper(Some(stop))
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}

fn moves_path(state_dir: &Path, run_id: &str) -> PathBuf {
    state_dir.join("runs").join(format!("{run_id}.moves.json"))
}

/// What resuming run `run_id` needs besides its journal.
fn read_moves(state_dir: &Path, run_id: &str) -> Result<Moves, String> {
    let text = std::fs::read(moves_path(state_dir, run_id)).map_err(|e| e.to_string())?;
    serde_json::from_slice(&text).map_err(|e| e.to_string())
}

/// When a run started (Unix ms): its id ends with it.
pub fn started_ms(run_id: &str) -> Option<u64> {
    run_id.rsplit('-').next()?.parse().ok()
}

fn now_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn impls(steps: &[resurgo_plan::recovery::RecoveryStep], ctx: &Arc<Ctx>) -> Steps {
    steps
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                Arc::new(ActionStep {
                    action: s.action.clone(),
                    ctx: ctx.clone(),
                }) as Arc<dyn Step>,
            )
        })
        .collect::<HashMap<_, _>>()
}

/// The runbook's view of recovery steps: names, dependencies, timeouts, owners, estimates.
pub fn step_specs(steps: &[resurgo_plan::recovery::RecoveryStep]) -> Vec<StepSpec> {
    steps
        .iter()
        .map(|s| StepSpec {
            name: s.name.clone(),
            depends_on: s.depends_on.clone(),
            timeout: s.timeout.max(Duration::from_millis(1)),
            description: s.description.clone(),
            owner: s.owner.clone(),
            estimate: s.estimate,
            reversible: false,
        })
        .collect()
}

/// A recovery plan being run: a shared advisory lock (flock) on `<state>/runs/active.lock`,
/// held by the run for its whole duration. The kernel drops it when the run's process ends,
/// however it ends, so a crash leaves nothing that counts as a run; runs in parallel (two
/// groups at once) each hold their own share. The file itself is never removed: a lock file
/// deleted while someone locks it would split later runs over two files.
struct ActiveRun {
    _lock: Flock<std::fs::File>,
}

impl ActiveRun {
    fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("runs").join("active.lock")
    }

    fn open(state_dir: &Path) -> std::io::Result<std::fs::File> {
        let path = Self::path(state_dir);
        if let Some(dir) = path.parent() {
            resurgo_provider::private_dir(dir)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
    }

    fn mark(state_dir: &Path) -> std::io::Result<ActiveRun> {
        // Blocking: a `run_in_progress` test holds the lock exclusively only for an instant.
        Flock::lock(Self::open(state_dir)?, FlockArg::LockShared)
            .map(|lock| ActiveRun { _lock: lock })
            .map_err(|(_, e)| e.into())
    }
}

/// Whether a recovery plan is being run right now (by a live process): some run holds its
/// share of the lock, so an exclusive one cannot be had.
pub fn run_in_progress(state_dir: &Path) -> bool {
    // Opened, not created: looking makes nothing (no lock file: no run has ever started).
    let Ok(file) = std::fs::File::open(ActiveRun::path(state_dir)) else {
        return false;
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(_free) => false,
        Err((_, e)) => e == nix::errno::Errno::EWOULDBLOCK,
    }
}

/// Stops every service active at `site` (a planned switch's "stop writes"); returns how
/// many. Deliberately stopped services are not restarted by the controller.
pub fn fence(engine: &Engine, system: &System, site: &str) -> Result<usize, FailoverError> {
    let handle = engine.site(system, site).ok_or_else(|| FailoverError::Refused {
        to: site.into(),
        reason: format!("no site `{site}`"),
    })?;
    let mut n = 0;
    for (name, svc) in &system.services {
        if svc.site == site {
            engine
                .provider
                .stop(&handle, name)
                .map_err(|e| FailoverError::Run(e.to_string()))?;
            n += 1;
        }
    }
    Ok(n)
}

/// How long a step that waits in a loop may wait, out of the `remaining` time of its step:
/// it gives up early enough (a fifth, at least 2 s) to say why before the runner's timeout.
fn give_up_within(remaining: Duration) -> Duration {
    remaining.saturating_sub(remaining.mul_f32(0.2).max(Duration::from_secs(2)))
}

struct ActionStep {
    action: StepAction,
    ctx: Arc<Ctx>,
}

fn permanent(e: impl std::fmt::Display) -> StepError {
    StepError::Permanent(e.to_string())
}

impl ActionStep {
    fn handle(&self, site: &str) -> Result<resurgo_provider::SiteHandle, StepError> {
        self.ctx
            .engine
            .site(&self.ctx.before, site)
            .ok_or_else(|| permanent(format!("no site `{site}`")))
    }

    fn target(&self) -> String {
        self.ctx.to.clone()
    }

    fn protector(&self) -> Protector<'_> {
        Protector::new(&self.ctx.after, &self.ctx.engine, &self.ctx.state_dir)
    }

    /// Refuses to promote a standby whose lag exceeds the dataset's RPO objective — measured
    /// now when the old primary answers, else the last measurement recorded — unless the run
    /// accepts data loss (recorded with the run).
    fn lag_gate(&self, dataset: &str, site: &str) -> Result<(), StepError> {
        let ds = &self.ctx.after.datasets[dataset];
        let Some(rpo) = ds.rpo.or(self.ctx.after.objectives.rpo).map(|d| d.0) else {
            return Ok(());
        };
        if self.ctx.options.accept_data_loss {
            return Ok(());
        }
        let before = Protector::new(&self.ctx.before, &self.ctx.engine, &self.ctx.state_dir);
        let measured = before
            .standby_lag(dataset, site)
            .ok()
            .map(|l| (l.seconds, "now".to_string()));
        let (seconds, when) = match measured {
            Some(m) => m,
            None => match crate::protect::read_lag(&self.ctx.state_dir, dataset, site) {
                Some(r) => (
                    r.seconds,
                    format!(
                        "{:.1}s before the run",
                        (now_millis() as u64).saturating_sub(r.at_ms) as f64 / 1000.0
                    ),
                ),
                None => (None, String::new()),
            },
        };
        match seconds {
            Some(s) if s <= rpo.as_secs_f64() => Ok(()),
            Some(s) => Err(StepError::Permanent(format!(
                "promoting the standby of `{dataset}` at {site} would lose up to {s:.1}s of writes (lag measured {when}), more than its RPO objective of {rpo:?}; rerun with --accept-data-loss to promote anyway"
            ))),
            None => Err(StepError::Permanent(format!(
                "the lag of the standby of `{dataset}` at {site} is unknown (never measured while the primary answered): promoting it could lose more than its RPO objective of {rpo:?}; rerun with --accept-data-loss to promote anyway"
            ))),
        }
    }

    /// Stops the services of `site` that move: the ones that write to databases first, then
    /// the databases (a clean shutdown, during which PostgreSQL sends its last WAL to a
    /// connected standby).
    fn stop_writers(&self, site: &str, seen: &[resurgo_plan::ObservedService]) -> Result<(), StepError> {
        let handle = self.handle(site)?;
        let moving = self.moving(site);
        let owns_database = |service: &str| {
            self.ctx
                .before
                .datasets
                .values()
                .any(|d| d.service == service && d.kind == DatasetKind::Postgres)
        };
        let running: Vec<&str> = seen
            .iter()
            .filter(|s| moving.contains(&s.service) && matches!(s.process, ProcessState::Running { .. }))
            .map(|s| s.service.as_str())
            .collect();
        let (databases, writers): (Vec<&str>, Vec<&str>) = running.into_iter().partition(|s| owns_database(s));
        for service in writers.into_iter().chain(databases) {
            self.ctx
                .engine
                .provider
                .stop(&handle, service)
                .map_err(|e| StepError::Transient(e.to_string()))?;
        }
        Ok(())
    }

    /// Whether none of the services of `site` that move runs, in `seen`.
    fn none_running(&self, site: &str, seen: &[resurgo_plan::ObservedService]) -> bool {
        let moving = self.moving(site);
        !seen
            .iter()
            .any(|s| moving.contains(&s.service) && matches!(s.process, ProcessState::Running { .. }))
    }

    /// Asks `from`'s agent, through the store, to hand the group over to `to` at `epoch` (the
    /// request lease is made or kept alive), and returns its answer once it has stopped the
    /// group's services there ([`crate::roles::handover`]). `None` while it has not (or cannot:
    /// a site that is lost never answers, and its lease is waited out).
    fn handed_over(&self, from: &str, to: &str, epoch: u64) -> Option<crate::roles::handover::Answer> {
        use crate::roles::handover::{answer_lease, Answer};
        // Only a move a person asked for asks a live primary to stand down. An agent's own
        // failover is for a primary it believes dead: one that still answers keeps serving, and
        // the run waits its lease out (it gives up while the primary renews it).
        if self.ctx.options.detection.is_some() {
            return None;
        }
        // And only once the target can take over: a primary that stood down for a standby
        // that is not there would leave nothing serving.
        if !self.standbys_answer(to) {
            return None;
        }
        if !self.ask(to, epoch) {
            return None;
        }
        let (holder, _) = self.ctx.store.lease_holder(&answer_lease(&self.ctx.group)).ok()??;
        Answer::parse(&holder).filter(|a| a.from == from && a.epoch == epoch)
    }

    /// Makes or keeps alive this run's request to hand the group over to `to` at `epoch` (the
    /// old primary does not serve it while the request stands); whether it stands.
    fn ask(&self, to: &str, epoch: u64) -> bool {
        use crate::roles::handover::{request_lease, Request};
        let store = &self.ctx.store;
        let name = request_lease(&self.ctx.group);
        let request = Request {
            to: to.to_string(),
            epoch,
        };
        let ttl = self.ctx.before.failover.timing().lease_ttl;
        match store.lease_holder(&name) {
            Ok(Some((holder, _))) if holder == request.holder() => match store.lease_of(&name) {
                Ok(Some(id)) => store.keep_alive(id).unwrap_or(false),
                _ => false,
            },
            Ok(None) => store.grant_lease(&name, &request.holder(), ttl).is_ok(),
            _ => false,
        }
    }

    /// Whether every standby the move promotes at `to` answers (as a standby or already
    /// promoted).
    fn standbys_answer(&self, to: &str) -> bool {
        let before = Protector::new(&self.ctx.before, &self.ctx.engine, &self.ctx.state_dir);
        self.ctx.before.datasets.iter().all(|(name, ds)| {
            ds.strategy != resurgo_spec::Strategy::Standby
                || before.standby_site(name).ok().flatten().as_deref() != Some(to)
                || before
                    .standby_target(name, to)
                    .is_ok_and(|target| resurgo_vault::pg::is_in_recovery(&target).is_ok())
        })
    }

    /// Withdraws this run's handover request, once the group's lease is the run's.
    fn end_handover_request(&self) {
        let name = crate::roles::handover::request_lease(&self.ctx.group);
        if let Ok(Some(id)) = self.ctx.store.lease_of(&name) {
            let _ = self.ctx.store.revoke(id);
        }
    }

    /// A planned switch's final sync: each standby at `to` has replayed everything its old
    /// primary at `from` wrote before its clean shutdown; recorded as a lag of zero, which the
    /// promotion's lag gate reads. A primary that did not shut down cleanly says nothing.
    fn final_sync(
        &self,
        from: &str,
        to: &str,
        deadline: Instant,
        ctx: &StepContext,
        checkpoints: Checkpoints<'_>,
    ) -> Result<(), StepError> {
        let before = Protector::new(&self.ctx.before, &self.ctx.engine, &self.ctx.state_dir);
        for (name, ds) in &self.ctx.before.datasets {
            if ds.strategy != resurgo_spec::Strategy::Standby
                || before.standby_site(name).ok().flatten().as_deref() != Some(to)
            {
                continue;
            }
            let Ok(standby) = before.standby_target(name, to) else {
                continue;
            };
            loop {
                let caught_up = match checkpoints {
                    Checkpoints::At(site) => match before.data_path(name, site) {
                        Ok(pgdata) => resurgo_vault::pg::caught_up_with_shutdown(&standby, &pgdata),
                        Err(_) => Ok(None),
                    },
                    Checkpoints::Told(answer) => match self.ask(to, answer.epoch).then_some(answer).and_then(|answer| {
                        answer
                            .checkpoints
                            .iter()
                            .find(|(d, _)| d == name)
                            .and_then(|(_, lsn)| lsn.parse::<resurgo_vault::pg::Lsn>().ok())
                    }) {
                        Some(lsn) => resurgo_vault::pg::replayed_to(&standby, lsn).map(Some),
                        None => Ok(None),
                    },
                };
                match caught_up {
                    Ok(Some(true)) => {
                        crate::protect::record_lag(&self.ctx.state_dir, name, to, 0, Some(0.0), true);
                        break;
                    }
                    Ok(None) => break,
                    Ok(Some(false)) | Err(_) if Instant::now() < deadline => {
                        if !ctx.pause(Duration::from_millis(100)) {
                            return Err(StepError::Cancelled(format!("final sync of {name}")));
                        }
                    }
                    Ok(Some(false)) => {
                        return Err(StepError::Transient(format!(
                            "the standby of `{name}` at {to} has not replayed {from}'s last WAL"
                        )))
                    }
                    Err(e) => return Err(StepError::Transient(e.to_string())),
                }
            }
        }
        Ok(())
    }

    /// Whether this process may act on `site` directly (an agent acts on its own site only).
    fn local(&self, site: &str) -> bool {
        self.ctx.options.local.as_deref().is_none_or(|l| l == site)
    }

    /// The services of `site` that run now, if it can be reached from here (None: it cannot).
    fn observe_site(&self, site: &str) -> Option<Vec<resurgo_plan::ObservedService>> {
        if !self.local(site) {
            return None;
        }
        let handle = self.handle(site).ok()?;
        self.ctx.engine.provider.observe(&handle).ok()
    }

    fn store_error(e: StoreError) -> StepError {
        StepError::Transient(format!("coordination store: {e}"))
    }

    /// Holds the group's primary lease for `to`, taking it when it is free. The old primary
    /// `from` holds it while its agent renews it: if this run stopped `from`'s services
    /// (`fenced`), the lease is revoked; otherwise the run waits for it to expire — the agent
    /// that cannot renew fences itself before then (the timing rules checked at load).
    /// Returns whether the lease is now held for `to`.
    fn take_lease(&self, from: &str, to: &str, fenced: bool) -> Result<bool, StepError> {
        let store = &self.ctx.store;
        let name = primary_lease(&self.ctx.group);
        match store.lease_holder(&name).map_err(Self::store_error)? {
            Some((holder, _)) if holder == to => Ok(true),
            Some((holder, _)) if holder == from && fenced => {
                if let Some(id) = store.lease_of(&name).map_err(Self::store_error)? {
                    store.revoke(id).map_err(Self::store_error)?;
                }
                Ok(false)
            }
            Some(_) => Ok(false),
            None => {
                let ttl = self.ctx.before.failover.timing().lease_ttl;
                match store.grant_lease(&name, to, ttl) {
                    Ok(_) => Ok(true),
                    Err(StoreError::LeaseHeld { .. }) => Ok(false),
                    Err(e) => Err(Self::store_error(e)),
                }
            }
        }
    }

    /// The services of `site` in the system before the move (the ones to fence).
    fn moving(&self, site: &str) -> Vec<String> {
        self.ctx
            .before
            .services
            .iter()
            .filter(|(_, s)| s.site == site)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Where a dataset's restore lands at `site`, and the marker saying which epoch restored it.
    fn restore_target(&self, dataset: &str, site: &str) -> Result<(PathBuf, PathBuf), StepError> {
        let protector = Protector::new(&self.ctx.after, &self.ctx.engine, &self.ctx.state_dir);
        let path = protector.data_path(dataset, site).map_err(permanent)?;
        let kind = self.ctx.after.datasets.get(dataset).map(|d| d.kind);
        let physical_pg = self
            .ctx
            .after
            .datasets
            .get(dataset)
            .is_some_and(|d| d.method != Some(PgMethod::Logical));
        let dir = match kind {
            Some(DatasetKind::Sqlite) => path.parent().map(Path::to_path_buf).unwrap_or(path),
            Some(DatasetKind::Directory) => path,
            Some(DatasetKind::Postgres) if physical_pg => path,
            _ => {
                return Err(permanent(format!(
                    "dataset `{dataset}`: restoring this kind during a failover is not supported yet"
                )))
            }
        };
        let marker = dir.with_file_name(format!(
            ".{}.resurgo-restored",
            dir.file_name()
                .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned())
        ));
        Ok((dir, marker))
    }

    /// A restored PostgreSQL data directory belongs to the user the server runs as: the
    /// service's `user:` as this host knows it, or without one the user resurgo runs as — never
    /// the owner of a folder at another site (issue 9). Mode 0700: PostgreSQL refuses more.
    fn give_pgdata(&self, dataset: &str, dir: &Path) -> Result<(), StepError> {
        use std::os::unix::fs::PermissionsExt;
        let service = &self.ctx.after.datasets[dataset].service;
        let user = self.ctx.after.services.get(service).and_then(|s| s.user.as_deref());
        let owner = resurgo_provider::Account::owner_for(user).map_err(permanent)?;
        resurgo_provider::account::chown_tree(dir, &owner).map_err(permanent)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(permanent)
    }

    fn running(&self, site: &str, service: &str) -> Result<bool, StepError> {
        let handle = self.handle(site)?;
        let seen = self
            .ctx
            .engine
            .provider
            .observe(&handle)
            .map_err(|e| StepError::Transient(e.to_string()))?;
        Ok(seen
            .iter()
            .any(|s| s.service == service && matches!(s.process, ProcessState::Running { .. })))
    }

    fn proxy_answers(&self, route: &str) -> Result<(), StepError> {
        let r = self
            .ctx
            .after
            .routes
            .get(route)
            .ok_or_else(|| permanent(format!("no route `{route}`")))?;
        let Some(listen) = r.listen else {
            return Err(permanent(format!(
                "route `{route}`: only proxy routes are switched by this version"
            )));
        };
        // The service's own health check, through the route.
        let svc = self.ctx.after.services.get(&r.service);
        let port = r
            .port
            .or_else(|| svc.and_then(|s| s.ports.first().copied()))
            .unwrap_or(listen.port());
        let probe = resurgo_provider::probe::through_route(listen, port, svc.and_then(|s| s.health.as_ref()));
        if probe.healthy {
            Ok(())
        } else {
            Err(StepError::Transient(format!(
                "route `{route}` on {listen}: {} (the controller runs proxy routes: is it running?)",
                probe.detail
            )))
        }
    }
}

impl Step for ActionStep {
    fn check(&self, ctx: &StepContext) -> Result<Check, StepError> {
        match &self.action {
            StepAction::Fence { .. } | StepAction::Preempt { .. } => Ok(Check::Ready),
            StepAction::Restore { dataset, site } => {
                let (_, marker) = self.restore_target(dataset, site)?;
                let done = std::fs::read_to_string(&marker).is_ok_and(|t| t.trim() == ctx.epoch().to_string());
                Ok(if done { Check::AlreadyDone } else { Check::Ready })
            }
            StepAction::Assign { to, .. } => {
                let store = &self.ctx.store;
                match store
                    .get_assignment(&self.ctx.group)
                    .map_err(|e| StepError::Transient(e.to_string()))?
                {
                    Some(a) if a.epoch > ctx.epoch() => Err(StepError::StaleEpoch {
                        offered: ctx.epoch(),
                        current: a.epoch,
                    }),
                    Some(a) if a.epoch == ctx.epoch() && a.primary_site == *to => Ok(Check::AlreadyDone),
                    _ => Ok(Check::Ready),
                }
            }
            StepAction::Start { service, site } => Ok(if self.running(site, service)? {
                Check::AlreadyDone
            } else {
                Check::Ready
            }),
            StepAction::Promote { dataset, site } => {
                let target = self.protector().standby_target(dataset, site).map_err(permanent)?;
                match resurgo_vault::pg::is_in_recovery(&target) {
                    Ok(false) => Ok(Check::AlreadyDone),
                    Ok(true) => Ok(Check::Ready),
                    Err(e) => Err(StepError::Transient(format!(
                        "the standby of `{dataset}` at {site} does not answer: {e}"
                    ))),
                }
            }
            StepAction::SwitchRoute { .. } | StepAction::Verify | StepAction::Notify => Ok(Check::Ready),
        }
    }

    fn act(&self, ctx: &StepContext) -> Result<(), StepError> {
        match &self.action {
            StepAction::Preempt { site } => {
                let done = crate::workspace::preempt(&self.ctx.state_dir, site, crate::workspace::PREEMPT_BUDGET);
                let path = preempted_path(&self.ctx.state_dir, ctx.run_id());
                resurgo_provider::write_json_atomic(&path, &done)
                    .map_err(|e| StepError::Transient(format!("{}: {e}", path.display())))
            }
            StepAction::Fence { site } => {
                let to = self.target();
                // Its own deadline well before the step's, so the run says why it gave up.
                let deadline = Instant::now() + give_up_within(ctx.remaining());
                let held = || {
                    format!(
                        "the primary lease of {} is still held: {site} has not fenced itself (is it alive?)",
                        self.ctx.group
                    )
                };
                loop {
                    // A site reachable from here is fenced here: its writers are stopped. One
                    // that is not (lost, or another machine) fences itself when it cannot renew
                    // its lease, and the lease tells when that must have happened.
                    // Fenced only once its services are *seen* stopped: a site that cannot be
                    // observed is unknown, never counted as fenced.
                    // One on another host is asked through the store to hand the group over,
                    // and counted as fenced once its own agent answers that it stopped.
                    let fenced = match self.observe_site(site) {
                        Some(seen) => {
                            self.stop_writers(site, &seen)?;
                            self.final_sync(site, &to, deadline, ctx, Checkpoints::At(site))?;
                            self.observe_site(site)
                                .is_some_and(|seen| self.none_running(site, &seen))
                        }
                        // Its agent, handing over, let go of its lease itself: the run then
                        // takes it once it is free, never revoking it — had that primary
                        // served again meanwhile, its lease would be held and the run wait.
                        None => {
                            if let Some(answer) = self.handed_over(site, &to, ctx.epoch()) {
                                self.final_sync(site, &to, deadline, ctx, Checkpoints::Told(&answer))?;
                            }
                            false
                        }
                    };
                    let waiting = match self.take_lease(site, &to, fenced) {
                        Ok(true) => {
                            self.end_handover_request();
                            return Ok(());
                        }
                        Ok(false) => StepError::Transient(held()),
                        Err(e) => e,
                    };
                    if Instant::now() >= deadline {
                        return Err(waiting);
                    }
                    ctx.waiting_on(waiting.to_string());
                    if !ctx.pause(Duration::from_millis(100)) {
                        return Err(StepError::Cancelled(format!("fence {site}")));
                    }
                }
            }
            StepAction::Restore { dataset, site } => {
                let (dir, marker) = self.restore_target(dataset, site)?;
                // What is there already is set aside under a name of its own, never deleted —
                // a resumed run finds it set aside and leaves it be.
                if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
                    let why = format!(
                        "found at {} where run {} (epoch {}) restored `{dataset}`",
                        dir.display(),
                        ctx.run_id(),
                        ctx.epoch()
                    );
                    self.ctx
                        .engine
                        .provider
                        .set_aside(&self.handle(site)?, &dir, &why)
                        .map_err(permanent)?;
                }
                // Restored into this run's scratch folder and moved into place once whole, so a
                // restore cut short leaves nothing at `dir`; a resumed run starts its scratch
                // folder afresh (it holds only the run's own partial output).
                let name = dir
                    .file_name()
                    .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
                let scratch = dir.with_file_name(format!(".{name}.restoring-e{}", ctx.epoch()));
                if scratch.exists() {
                    std::fs::remove_dir_all(&scratch).map_err(permanent)?;
                }
                self.protector()
                    .restore(dataset, site, None, &scratch, crate::protect::RestoreFor::Serving)
                    .map_err(permanent)?;
                if self.ctx.after.datasets[dataset].kind == DatasetKind::Postgres {
                    self.give_pgdata(dataset, &scratch)?;
                }
                resurgo_runbook::crash_point("restore-before-rename");
                if dir.exists() {
                    // Empty (anything in it was set aside above).
                    std::fs::remove_dir(&dir).map_err(permanent)?;
                }
                std::fs::rename(&scratch, &dir).map_err(permanent)?;
                resurgo_provider::write_json_atomic(&marker, &ctx.epoch()).map_err(permanent)
            }
            StepAction::Assign { to, .. } => {
                let store = &self.ctx.store;
                // Only the holder of the primary lease may be made primary.
                match store
                    .lease_holder(&primary_lease(&self.ctx.group))
                    .map_err(Self::store_error)?
                {
                    Some((holder, _)) if holder == *to => {}
                    other => {
                        return Err(StepError::Permanent(format!(
                            "the primary lease of {} is held by {}, not {to}: refusing to assign",
                            self.ctx.group,
                            other.map_or_else(|| "nobody".to_string(), |(h, _)| h)
                        )))
                    }
                }
                let current = store
                    .get_assignment(&self.ctx.group)
                    .map_err(|e| StepError::Transient(e.to_string()))?;
                let now = std::time::SystemTime::now();
                let next = match &current {
                    Some(a) => a.successor(to, now),
                    None => Assignment::first(&self.ctx.group, to, now),
                };
                if next.epoch != ctx.epoch() {
                    return Err(StepError::StaleEpoch {
                        offered: ctx.epoch(),
                        current: next.epoch - 1,
                    });
                }
                match store.compare_and_swap_assignment(&self.ctx.group, current.map(|a| a.epoch), &next) {
                    Ok(CasOutcome::Swapped) => Ok(()),
                    Ok(CasOutcome::Conflict(now)) => Err(StepError::StaleEpoch {
                        offered: ctx.epoch(),
                        current: now.map_or(0, |a| a.epoch),
                    }),
                    Err(e) => Err(StepError::Transient(e.to_string())),
                }
            }
            StepAction::Start { service, site } => {
                let configs = resurgo_plan::desired_state(&self.ctx.after);
                let config = configs
                    .get(site)
                    .and_then(|c| c.get(service))
                    .ok_or_else(|| permanent(format!("service `{service}` is not wanted at `{site}`")))?;
                let handle = self.handle(site)?;
                self.ctx.engine.start_healthy(&handle, config).map_err(permanent)?;
                // A restored PostgreSQL accepts connections while it replays the archive:
                // what depends on it starts once it accepts writes.
                for (name, ds) in &self.ctx.after.datasets {
                    if ds.service == *service
                        && ds.kind == DatasetKind::Postgres
                        && ds.method != Some(PgMethod::Logical)
                    {
                        let target = self.protector().standby_target(name, site).map_err(permanent)?;
                        resurgo_vault::pg::wait_until_primary(&target, ctx.remaining())
                            .map_err(|e| StepError::Transient(e.to_string()))?;
                        // The archive a restore prefetched has been replayed: it would only
                        // weigh on the next base backup.
                        if let Ok(pgdata) = self.protector().data_path(name, site) {
                            let _ = std::fs::remove_dir_all(pgdata.join(resurgo_vault::pg::physical::PREFETCH_DIR));
                        }
                    }
                }
                Ok(())
            }
            StepAction::SwitchRoute { route, site } => {
                // DNS and hook routes are switched here; a refusal (wrong key, a record someone
                // else moved) is permanent and stops the run, anything that may heal is
                // transient and retried until the step's timeout (`routes::SwitchError`).
                if let Some(r) = self
                    .ctx
                    .after
                    .routes
                    .get(route)
                    .filter(|r| matches!(r.kind, resurgo_spec::RouteKind::Dns | resurgo_spec::RouteKind::Hook))
                {
                    let from = self.ctx.before.services.get(&r.service).map(|s| s.site.as_str());
                    return Ok(crate::routes::switch(&self.ctx.after, route, from, site, ctx.epoch())?);
                }
                // Proxy routes: the controller runs them; wait until the route answers (giving
                // up well before the step's deadline, so the run says why).
                let deadline = Instant::now() + give_up_within(ctx.remaining());
                loop {
                    match self.proxy_answers(route) {
                        Ok(()) => return Ok(()),
                        Err(e) if Instant::now() >= deadline => return Err(e),
                        Err(e) => {
                            ctx.waiting_on(e.to_string());
                            if !ctx.pause(Duration::from_millis(50)) {
                                return Err(StepError::Cancelled(format!("route `{route}`")));
                            }
                        }
                    }
                }
            }
            StepAction::Verify => {
                // Every proxy route of a service that moved answers.
                for (name, route) in &self.ctx.after.routes {
                    let moved = self.ctx.after.services.get(&route.service).map(|s| &s.site)
                        != self.ctx.before.services.get(&route.service).map(|s| &s.site);
                    if route.listen.is_some() && moved {
                        self.proxy_answers(name)?;
                    }
                    // Every dns route of a service that moved serves the new site's address.
                    let svc = self.ctx.after.services.get(&route.service);
                    if let Some(svc) = svc.filter(|_| route.kind == resurgo_spec::RouteKind::Dns && moved) {
                        crate::routes::confirm(&self.ctx.after, name, &svc.site)?;
                    }
                }
                Ok(())
            }
            StepAction::Notify => {
                // The event log is the record every receiver reads (and the dashboard shows).
                let event = crate::events::Event::new(
                    crate::events::EventKind::ServicesMoved,
                    format!(
                        "{}: run {} (epoch {}) moved its services from {} to {}",
                        self.ctx.group,
                        ctx.run_id(),
                        ctx.epoch(),
                        self.ctx.from,
                        self.ctx.to
                    ),
                )
                .site(&self.ctx.to);
                // At debug in the logs: whoever started the run reports its end (the agent's
                // failover_finished, the command's own output).
                event.log(true);
                crate::events::EventLog::of_state(&self.ctx.state_dir)
                    .append(&event)
                    .map_err(|e| StepError::Transient(format!("cannot write the event log: {e}")))
            }
            StepAction::Promote { dataset, site } => {
                self.lag_gate(dataset, site)?;
                let target = self.protector().standby_target(dataset, site).map_err(permanent)?;
                resurgo_vault::pg::promote(&target, ctx.remaining())
                    .map_err(|e| StepError::Transient(e.to_string()))?;
                // The same process now serves as the active instance: record it so, or it
                // would be restarted to match the desired state.
                let service = &self.ctx.after.datasets[dataset].service;
                let configs = resurgo_plan::desired_state(&self.ctx.after);
                if let Some(config) = configs.get(site).and_then(|c| c.get(service)) {
                    let handle = self.handle(site)?;
                    self.ctx
                        .engine
                        .provider
                        .relabel(&handle, config)
                        .map_err(|e| StepError::Transient(e.to_string()))?;
                }
                Ok(())
            }
        }
    }

    fn verify(&self, _ctx: &StepContext) -> Result<(), StepError> {
        match &self.action {
            StepAction::Start { service, site } if !self.running(site, service)? => Err(StepError::Verification(
                format!("service `{service}` is not running at `{site}`"),
            )),
            _ => Ok(()),
        }
    }

    fn compensate(&self, _ctx: &StepContext) -> Result<(), StepError> {
        // Never called: every step of a failover is irreversible (`step_specs`) — a fenced
        // site is not unfenced, a promoted standby not demoted. A run that fails stops where
        // it is, and is finished by resuming it.
        Ok(())
    }
}

#[cfg(test)]
#[path = "failover_tests.rs"]
mod tests;
