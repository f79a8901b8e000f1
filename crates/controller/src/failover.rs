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

use resurgo_coord::{Assignment, CasOutcome, CoordStore, EmbeddedStore};
use resurgo_plan::recovery::{failover_steps, StepAction};
use resurgo_plan::ProcessState;
use resurgo_runbook::plan::{PlanKind, RecoveryPlan, StepSpec};
use resurgo_runbook::run::{RunReport, Runner, Steps};
use resurgo_runbook::step::{Check, Step, StepContext, StepError};
use resurgo_spec::{DatasetKind, System};

use crate::desired::{coord_dir, group_of};
use crate::engine::Engine;
use crate::protect::Protector;

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

/// Plans and runs the move of every service active at `from` (in `system`, assignments
/// applied) to `to`. `spec_system` is the spec as written, to name the assignment group.
pub fn execute(
    spec_system: &System,
    system: &System,
    engine: &Engine,
    state_dir: &Path,
    from: &str,
    to: &str,
    kind: PlanKind,
) -> Result<RunReport, FailoverError> {
    let refused = |reason: String| FailoverError::Refused { to: to.into(), reason };
    let steps = failover_steps(system, from, to).map_err(|e| refused(e.to_string()))?;
    // The group: where the spec places the services that now run at `from`.
    let group_site = system
        .services
        .iter()
        .find(|(_, s)| s.site == from)
        .and_then(|(n, _)| spec_system.services.get(n))
        .map(|s| s.site.clone())
        .ok_or_else(|| refused(format!("no service is active at `{from}`")))?;
    let store = EmbeddedStore::open(coord_dir(state_dir)).map_err(|e| FailoverError::Coord(e.to_string()))?;
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
    };
    let runs = state_dir.join("runs");
    std::fs::create_dir_all(&runs).map_err(|e| FailoverError::Run(e.to_string()))?;
    resurgo_provider::write_json_atomic(&moves_path(state_dir, &run_id), &sidecar)
        .map_err(|e| FailoverError::Run(e.to_string()))?;
    // While the run moves services, the controller must not "correct" them under its feet.
    let _active = ActiveRun::mark(state_dir).map_err(|e| FailoverError::Run(e.to_string()))?;
    Runner::new(runs)
        .start_as(&run_id, &plan, &impls(&steps, &ctx))
        .map_err(|e| FailoverError::Run(e.to_string()))
}

/// Resumes a failover or failback run that was interrupted (its process killed): finished
/// steps are skipped, a started one is checked again, and the run ends where it would have.
pub fn resume(system: &System, engine: &Engine, state_dir: &Path, run_id: &str) -> Result<RunReport, FailoverError> {
    let text =
        std::fs::read(moves_path(state_dir, run_id)).map_err(|e| FailoverError::Run(format!("run `{run_id}`: {e}")))?;
    let moves: Moves = serde_json::from_slice(&text).map_err(|e| FailoverError::Run(format!("run `{run_id}`: {e}")))?;
    // `system` has the assignments in force: if this run already assigned the target, the
    // services are there; otherwise they are still at `from`.
    let (before, after) = if assigned(state_dir, &moves)? {
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
    });
    let _active = ActiveRun::mark(state_dir).map_err(|e| FailoverError::Run(e.to_string()))?;
    Runner::new(state_dir.join("runs"))
        .resume(run_id, moves.epoch, &impls(&moves.steps, &ctx))
        .map_err(|e| FailoverError::Run(e.to_string()))
}

/// Whether the run's assignment (its epoch, its target) is in force.
fn assigned(state_dir: &Path, moves: &Moves) -> Result<bool, FailoverError> {
    let store = EmbeddedStore::open(coord_dir(state_dir)).map_err(|e| FailoverError::Coord(e.to_string()))?;
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
}

fn moves_path(state_dir: &Path, run_id: &str) -> PathBuf {
    state_dir.join("runs").join(format!("{run_id}.moves.json"))
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
        })
        .collect()
}

/// `<state>/runs/ACTIVE`, holding the pid of the process running a recovery plan; removed
/// when the run ends. A marker whose process is gone (a crash) does not count.
struct ActiveRun(PathBuf);

impl ActiveRun {
    fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("runs").join("ACTIVE")
    }

    fn mark(state_dir: &Path) -> std::io::Result<ActiveRun> {
        let path = Self::path(state_dir);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, std::process::id().to_string())?;
        Ok(ActiveRun(path))
    }
}

impl Drop for ActiveRun {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether a recovery plan is being run right now (by a live process).
pub fn run_in_progress(state_dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(ActiveRun::path(state_dir)) else {
        return false;
    };
    text.trim()
        .parse::<u32>()
        .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// Stops every service active at `site` (a planned switch's "stop writes"); returns how
/// many. Deliberately stopped services are not restarted by the controller.
pub fn fence(engine: &Engine, system: &System, site: &str) -> Result<usize, FailoverError> {
    let handle = engine
        .sites(system)
        .into_iter()
        .find(|h| h.name == site)
        .ok_or_else(|| FailoverError::Refused {
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
            .sites(&self.ctx.before)
            .into_iter()
            .find(|h| h.name == site)
            .ok_or_else(|| permanent(format!("no site `{site}`")))
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
        let protector = Protector::new(
            &self.ctx.after,
            self.ctx.engine.sites(&self.ctx.after),
            &self.ctx.state_dir,
        );
        let path = protector.data_path(dataset, site).map_err(permanent)?;
        let kind = self.ctx.after.datasets.get(dataset).map(|d| d.kind);
        let dir = match kind {
            Some(DatasetKind::Sqlite) => path.parent().map(Path::to_path_buf).unwrap_or(path),
            Some(DatasetKind::Directory) => path,
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
        http_ok(listen).map_err(|e| {
            StepError::Transient(format!(
                "route `{route}` on {listen}: {e} (the controller runs proxy routes: is it running?)"
            ))
        })
    }
}

impl Step for ActionStep {
    fn check(&self, ctx: &StepContext) -> Result<Check, StepError> {
        match &self.action {
            StepAction::Fence { site } => {
                let handle = self.handle(site)?;
                match self.ctx.engine.provider.observe(&handle) {
                    // An unreachable site cannot be stopped from here; its agent fences it when
                    // it cannot renew its lease. In the one-machine default, a lost site's
                    // processes are gone with it.
                    Err(_) => Ok(Check::AlreadyDone),
                    Ok(seen) => {
                        let moving = self.moving(site);
                        let any = seen
                            .iter()
                            .any(|s| moving.contains(&s.service) && matches!(s.process, ProcessState::Running { .. }));
                        Ok(if any { Check::Ready } else { Check::AlreadyDone })
                    }
                }
            }
            StepAction::Restore { dataset, site } => {
                let (_, marker) = self.restore_target(dataset, site)?;
                let done = std::fs::read_to_string(&marker).is_ok_and(|t| t.trim() == ctx.epoch().to_string());
                Ok(if done { Check::AlreadyDone } else { Check::Ready })
            }
            StepAction::Assign { to, .. } => {
                let store = EmbeddedStore::open(coord_dir(&self.ctx.state_dir))
                    .map_err(|e| StepError::Transient(e.to_string()))?;
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
            StepAction::Promote { dataset, .. } => Err(permanent(format!(
                "dataset `{dataset}`: promoting a standby during a failover is not supported by this version yet"
            ))),
            StepAction::SwitchRoute { .. } | StepAction::Verify | StepAction::Notify => Ok(Check::Ready),
        }
    }

    fn act(&self, ctx: &StepContext) -> Result<(), StepError> {
        match &self.action {
            StepAction::Fence { site } => {
                let handle = self.handle(site)?;
                for service in self.moving(site) {
                    self.ctx
                        .engine
                        .provider
                        .stop(&handle, &service)
                        .map_err(|e| StepError::Transient(e.to_string()))?;
                }
                Ok(())
            }
            StepAction::Restore { dataset, site } => {
                let (dir, marker) = self.restore_target(dataset, site)?;
                // What is there already is kept aside, never deleted.
                if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
                    let aside = dir.with_file_name(format!(
                        "{}.before-epoch-{}",
                        dir.file_name()
                            .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned()),
                        ctx.epoch()
                    ));
                    let _ = std::fs::remove_dir_all(&aside);
                    std::fs::rename(&dir, &aside).map_err(permanent)?;
                }
                let protector = Protector::new(
                    &self.ctx.after,
                    self.ctx.engine.sites(&self.ctx.after),
                    &self.ctx.state_dir,
                );
                protector.restore(dataset, site, None, &dir).map_err(permanent)?;
                resurgo_provider::write_json_atomic(&marker, &ctx.epoch()).map_err(permanent)
            }
            StepAction::Assign { to, .. } => {
                let store = EmbeddedStore::open(coord_dir(&self.ctx.state_dir))
                    .map_err(|e| StepError::Transient(e.to_string()))?;
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
                self.ctx.engine.start_healthy(&handle, config).map_err(permanent)
            }
            StepAction::SwitchRoute { route, .. } => {
                let deadline = Instant::now() + ctx.remaining();
                loop {
                    match self.proxy_answers(route) {
                        Ok(()) => return Ok(()),
                        Err(e) if Instant::now() >= deadline => return Err(e),
                        Err(_) => {
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
                }
                Ok(())
            }
            StepAction::Notify => Ok(()),
            StepAction::Promote { .. } => Err(permanent("not supported")),
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
        // Nothing is undone automatically: fenced sites stay fenced and restored data stays
        // (set aside data is kept); a person decides, with the journal in hand.
        Ok(())
    }
}

/// `GET /` through `addr` answers 2xx.
fn http_ok(addr: std::net::SocketAddr) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).map_err(|e| e.to_string())?;
    let status = String::from_utf8_lossy(&head[9..12]).to_string();
    if status.starts_with('2') {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}
