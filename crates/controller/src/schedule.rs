//! Scheduled data protection inside the controller: backups on each dataset's schedule, each
//! followed by replication to its replica sites; verification by restore every `verify_every`;
//! and RPO tracking — for every dataset at every site that holds it, the age of the newest
//! point restorable *at that site*, with an event when it exceeds the dataset's RPO objective.
//!
//! Warm standbys (`strategy: standby`) are measured every [`LAG_EVERY`]: how far each is behind
//! its primary, with an event when it starts lagging (behind by more than the RPO objective,
//! or not streaming) and when it has caught up.
//!
//! A site daemon's protection is scoped to its site ([`Protection::scoped`]): the datasets
//! whose service is active there now (their home) — backups into its repository, replication
//! and log shipping from it to the others', verification, RPO, archiving status — and the warm
//! standbys kept there. When a service moves, its datasets' schedules move with it.
//!
//! Everything here is rebuilt from the repositories at start (invariant: no state the
//! controller cannot rebuild). Work runs on background threads, one job per dataset at a time,
//! so a slow backup never delays the reconcile loop.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use resurgo_spec::{DatasetKind, PgMethod, Strategy, System};

use crate::engine::Engine;
use crate::events::{Event, EventKind};
use crate::protect::Protector;

/// How often recovery points are re-read from the repositories.
const REFRESH: Duration = Duration::from_secs(60);

/// How often warm standbys are measured.
pub const LAG_EVERY: Duration = Duration::from_secs(2);

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[derive(Debug, Default)]
struct DatasetState {
    /// Unix time of the newest snapshot at the home site.
    last_backup: Option<i64>,
    last_verify: Option<Instant>,
    busy: bool,
    /// Site → unix time of the newest restorable point there.
    points: HashMap<String, i64>,
    breached: HashSet<String>,
}

enum Outcome {
    Backup {
        dataset: String,
        site: String,
        result: Result<resurgo_vault::SnapshotInfo, String>,
        replicas: Vec<(String, Result<resurgo_vault::repo::ReplicateReport, String>)>,
    },
    Points {
        points: Vec<(String, String, Option<i64>)>,
        errors: Vec<(String, String)>,
    },
    Verify {
        dataset: String,
        site: String,
        result: Result<crate::protect::VerifyReport, String>,
    },
    Lags(Vec<Measured>),
    /// `(dataset, archiving status)` of each physical PostgreSQL dataset's primary.
    Archiving(Vec<(String, Result<resurgo_vault::pg::Archiver, String>)>),
    /// A log-shipping round ended: `(dataset, to, error)` of each copy that failed.
    Shipped(Vec<(String, String, String)>),
}

/// `(dataset, site, RPO objective, lag)` of one warm standby.
type Measured = (String, String, Option<Duration>, Result<resurgo_vault::pg::Lag, String>);

/// What is known of one warm standby.
#[derive(Debug, Clone, Default)]
struct StandbyState {
    /// `None` until the first measurement.
    lagging: Option<bool>,
    last: Option<resurgo_vault::pg::Lag>,
}

/// The protection part of the controller's state.
pub struct Protection {
    /// The site whose datasets this protects (a site daemon's), or `None`: every site's.
    scope: Option<String>,
    /// The datasets protected here at the last tick (when they change, points are re-read).
    homed: Vec<String>,
    datasets: HashMap<String, DatasetState>,
    refreshed: Option<Instant>,
    refreshing: bool,
    /// (dataset, site) → the standby there.
    standbys: HashMap<(String, String), StandbyState>,
    lag_measured: Option<Instant>,
    measuring: bool,
    /// Dataset → whether its archiving was failing at the last look.
    archiving_failing: HashMap<String, bool>,
    /// Site → the repository error reported last.
    repo_errors: HashMap<String, String>,
    /// Log shipping: the archives opened once (site → archive) and the last round.
    archives: std::sync::Arc<std::sync::Mutex<HashMap<String, resurgo_vault::archive::LogArchive>>>,
    shipped: Option<Instant>,
    shipping: bool,
    tx: mpsc::Sender<Outcome>,
    rx: mpsc::Receiver<Outcome>,
}

impl Default for Protection {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel();
        Protection {
            scope: None,
            homed: Vec::new(),
            datasets: HashMap::new(),
            refreshed: None,
            refreshing: false,
            standbys: HashMap::new(),
            lag_measured: None,
            measuring: false,
            archiving_failing: HashMap::new(),
            repo_errors: HashMap::new(),
            archives: Default::default(),
            shipped: None,
            shipping: false,
            tx,
            rx,
        }
    }
}

/// Newest restorable point of each dataset at each site, as `(dataset, site, unix time)`.
fn read_points(system: &System, engine: &Engine, state_dir: &std::path::Path) -> Outcome {
    let protector = Protector::new(system, engine, state_dir);
    let mut points = Vec::new();
    let mut errors = Vec::new();
    let mut by_site: HashMap<String, Vec<String>> = HashMap::new();
    for name in system.datasets.keys() {
        let mut sites = protector.replica_sites(name).unwrap_or_default();
        if let Ok(home) = protector.home_site(name) {
            sites.push(home);
        }
        for s in sites {
            by_site.entry(s).or_default().push(name.clone());
        }
    }
    for (site, datasets) in by_site {
        match protector.recovery_points(&site, &datasets) {
            Ok(found) => points.extend(found.into_iter().map(|p| (p.dataset, site.clone(), p.newest))),
            Err(e) => errors.push((site, e.to_string())),
        }
    }
    Outcome::Points { points, errors }
}

impl Protection {
    /// The protection of `site`'s datasets and standbys (`None`: every site's).
    pub fn scoped(site: Option<String>) -> Protection {
        Protection {
            scope: site,
            ..Default::default()
        }
    }

    /// Whether a dataset whose service is active at `home` is protected here.
    fn homed_here(&self, home: &str) -> bool {
        self.scope.as_deref().is_none_or(|s| s == home)
    }

    /// One pass: collect finished work, start what is due, re-evaluate RPOs.
    pub fn tick(&mut self, system: &System, engine: &Engine, state_dir: &std::path::Path, emit: &mut dyn FnMut(Event)) {
        while let Ok(outcome) = self.rx.try_recv() {
            self.absorb(outcome, emit);
        }
        if system.datasets.is_empty() {
            return;
        }
        // Standbys are measured where they are kept, so they are judged against the whole spec.
        self.forget_standbys(system);
        self.measure_standbys(system, engine, state_dir);
        // Everything else concerns the datasets homed here: the rest of the spec is left out.
        let view;
        let system = match &self.scope {
            None => system,
            Some(_) => {
                let mut scoped = system.clone();
                scoped.datasets.retain(|_, ds| {
                    system
                        .services
                        .get(&ds.service)
                        .is_some_and(|svc| self.homed_here(&svc.site))
                });
                view = scoped;
                &view
            }
        };
        let homed: Vec<String> = system.datasets.keys().cloned().collect();
        if homed != self.homed {
            // A dataset moved here (a failover): what its repositories hold is read again
            // before anything is scheduled.
            if !self.refreshing {
                self.refreshed = None;
            }
            self.homed = homed;
        }
        if system.datasets.is_empty() {
            return;
        }
        if !self.refreshing && self.refreshed.is_none_or(|t| t.elapsed() >= REFRESH) {
            self.refreshing = true;
            let (system, engine, state_dir, tx) =
                (system.clone(), engine.clone(), state_dir.to_path_buf(), self.tx.clone());
            std::thread::spawn(move || {
                let _ = tx.send(read_points(&system, &engine, &state_dir));
            });
        }
        self.ship_logs(system, engine, state_dir);
        // Until the first refresh is in, nothing is known: do not schedule blind.
        if self.refreshed.is_none() {
            return;
        }
        let now = now_unix();
        for (name, ds) in &system.datasets {
            let state = self.datasets.entry(name.clone()).or_default();
            if state.busy {
                continue;
            }
            if let Some(every) = ds.schedule {
                let due = state.last_backup.is_none_or(|t| now - t >= every.0.as_secs() as i64);
                if due {
                    state.busy = true;
                    self.spawn_backup(name, system, engine, state_dir, emit);
                    continue;
                }
            }
            if let Some(every) = ds.verify_every {
                let due = state.last_verify.is_none_or(|t| t.elapsed() >= every.0);
                if due && !state.points.is_empty() {
                    state.busy = true;
                    state.last_verify = Some(Instant::now());
                    self.spawn_verify(name, system, engine, state_dir);
                }
            }
        }
        self.check_rpo(system, now, emit);
    }

    fn spawn_backup(
        &self,
        dataset: &str,
        system: &System,
        engine: &Engine,
        state_dir: &std::path::Path,
        emit: &mut dyn FnMut(Event),
    ) {
        let (system, engine, state_dir, tx, dataset) = (
            system.clone(),
            engine.clone(),
            PathBuf::from(state_dir),
            self.tx.clone(),
            dataset.to_string(),
        );
        let protector = Protector::new(&system, &engine, &state_dir);
        let site = protector.home_site(&dataset).unwrap_or_default();
        emit(
            Event::new(EventKind::BackupStarted, format!("backing up {dataset}"))
                .site(&site)
                .dataset(&dataset),
        );
        std::thread::spawn(move || {
            let protector = Protector::new(&system, &engine, &state_dir);
            let result = protector.backup(&dataset).map_err(|e| e.to_string());
            let mut replicas = Vec::new();
            if result.is_ok() {
                for to in protector.replica_sites(&dataset).unwrap_or_default() {
                    let r = protector
                        .replicate(Some(&dataset), &site, &to)
                        .map_err(|e| e.to_string());
                    replicas.push((to, r));
                }
            }
            let _ = tx.send(Outcome::Backup {
                dataset,
                site,
                result,
                replicas,
            });
        });
    }

    /// Log shipping: the WAL archived at a physical PostgreSQL dataset's home site is copied
    /// to its replica sites every archive timeout (half the RPO objective), not only after
    /// each base backup — what bounds the backup strategy's RPO to seconds. The archives are
    /// opened once (a repository open costs a key derivation) and reused.
    fn ship_logs(&mut self, system: &System, engine: &Engine, state_dir: &std::path::Path) {
        let shipped: Vec<(String, std::time::Duration)> = system
            .datasets
            .iter()
            .filter(|(_, d)| {
                d.kind == DatasetKind::Postgres
                    && d.strategy == Strategy::Backup
                    && d.method.unwrap_or(PgMethod::Physical) == PgMethod::Physical
            })
            .map(|(n, d)| (n.clone(), crate::protect::archive_timeout(d, system)))
            .collect();
        let Some(every) = shipped.iter().map(|(_, t)| *t).min() else {
            return;
        };
        if self.shipping || self.shipped.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.shipping = true;
        self.shipped = Some(Instant::now());
        let (system, engine, state_dir, tx, archives) = (
            system.clone(),
            engine.clone(),
            state_dir.to_path_buf(),
            self.tx.clone(),
            self.archives.clone(),
        );
        std::thread::spawn(move || {
            let protector = Protector::new(&system, &engine, &state_dir);
            let archive = |site: &str| -> Result<resurgo_vault::archive::LogArchive, String> {
                let mut cache = archives.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(a) = cache.get(site) {
                    return Ok(a.clone());
                }
                let a = protector.open(site).map_err(|e| e.to_string())?.archive();
                cache.insert(site.to_string(), a.clone());
                Ok(a)
            };
            let mut failed = Vec::new();
            for (dataset, _) in shipped {
                let Ok(home) = protector.home_site(&dataset) else {
                    continue;
                };
                for to in protector.replica_sites(&dataset).unwrap_or_default() {
                    let copied = archive(&home)
                        .and_then(|from| from.copy_to(&archive(&to)?, &dataset).map_err(|e| e.to_string()));
                    if let Err(e) = copied {
                        // Opened anew next round: the repository may have moved or healed.
                        archives.lock().unwrap_or_else(|e| e.into_inner()).clear();
                        failed.push((dataset.clone(), to, e));
                    }
                }
            }
            let _ = tx.send(Outcome::Shipped(failed));
        });
    }

    /// Every [`LAG_EVERY`], measures every warm standby on a background thread (one
    /// measurement round at a time).
    fn measure_standbys(&mut self, system: &System, engine: &Engine, state_dir: &std::path::Path) {
        if self.measuring || self.lag_measured.is_some_and(|t| t.elapsed() < LAG_EVERY) {
            return;
        }
        let protector = Protector::new(system, engine, state_dir);
        let pairs: Vec<(String, String, Option<Duration>)> = system
            .datasets
            .iter()
            .filter_map(|(d, ds)| {
                let site = protector.standby_site(d).ok()??;
                self.homed_here(&site)
                    .then(|| (d.clone(), site, ds.rpo.or(system.objectives.rpo).map(|r| r.0)))
            })
            .collect();
        let archived: Vec<String> = system
            .datasets
            .iter()
            .filter(|(d, ds)| {
                ds.kind == resurgo_spec::DatasetKind::Postgres
                    && ds.method.unwrap_or(resurgo_spec::PgMethod::Physical) == resurgo_spec::PgMethod::Physical
                    && protector.home_site(d).is_ok_and(|home| self.homed_here(&home))
            })
            .map(|(d, _)| d.clone())
            .collect();
        if pairs.is_empty() && archived.is_empty() {
            return;
        }
        self.measuring = true;
        self.lag_measured = Some(Instant::now());
        let (system, engine, state_dir, tx) =
            (system.clone(), engine.clone(), state_dir.to_path_buf(), self.tx.clone());
        std::thread::spawn(move || {
            let protector = Protector::new(&system, &engine, &state_dir);
            let lags = pairs
                .into_iter()
                .map(|(dataset, site, rpo)| {
                    let lag = protector.standby_lag(&dataset, &site).map_err(|e| e.to_string());
                    (dataset, site, rpo, lag)
                })
                .collect();
            let _ = tx.send(Outcome::Lags(lags));
            let archiving = archived
                .into_iter()
                .map(|d| {
                    let status = protector.archiving(&d).map_err(|e| e.to_string());
                    (d, status.and_then(|s| s.ok_or_else(|| "not archived".to_string())))
                })
                .collect();
            let _ = tx.send(Outcome::Archiving(archiving));
        });
    }

    /// The newest lag measured of each warm standby, as `(dataset, site, lag)`.
    pub fn standby_lags(&self) -> Vec<(String, String, resurgo_vault::pg::Lag)> {
        let mut out: Vec<_> = self
            .standbys
            .iter()
            .filter_map(|((d, s), st)| Some((d.clone(), s.clone(), st.last?)))
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }

    fn spawn_verify(&self, dataset: &str, system: &System, engine: &Engine, state_dir: &std::path::Path) {
        let (system, engine, state_dir, tx, dataset) = (
            system.clone(),
            engine.clone(),
            PathBuf::from(state_dir),
            self.tx.clone(),
            dataset.to_string(),
        );
        std::thread::spawn(move || {
            let protector = Protector::new(&system, &engine, &state_dir);
            let sites = protector.replica_sites(&dataset).unwrap_or_default();
            let sites = if sites.is_empty() {
                protector.home_site(&dataset).into_iter().collect()
            } else {
                sites
            };
            for site in sites {
                let result = protector.verify(&dataset, &site).map_err(|e| e.to_string());
                let _ = tx.send(Outcome::Verify {
                    dataset: dataset.clone(),
                    site,
                    result,
                });
            }
        });
    }

    fn absorb(&mut self, outcome: Outcome, emit: &mut dyn FnMut(Event)) {
        match outcome {
            Outcome::Shipped(failed) => {
                self.shipping = false;
                for (dataset, to, e) in failed {
                    let key = format!("ship {dataset} {to}");
                    if self.repo_errors.get(&key) != Some(&e) {
                        self.repo_errors.insert(key, e.clone());
                        emit(
                            Event::new(EventKind::ReplicationFailed, format!("shipping WAL: {e}"))
                                .site(&to)
                                .dataset(&dataset),
                        );
                    }
                }
            }
            Outcome::Points { points, errors } => {
                self.refreshing = false;
                self.refreshed = Some(Instant::now());
                for (dataset, site, newest) in points {
                    let state = self.datasets.entry(dataset).or_default();
                    if let Some(t) = newest {
                        state.points.insert(site, t);
                    }
                }
                for state in self.datasets.values_mut() {
                    state.last_backup = state.points.values().copied().max().max(state.last_backup);
                }
                // Reported when a repository's problem appears or changes, not every refresh.
                let now_failing: HashMap<String, String> = errors.into_iter().collect();
                for (site, error) in &now_failing {
                    if self.repo_errors.get(site) != Some(error) {
                        emit(Event::new(EventKind::SiteUnreachable, format!("repository: {error}")).site(site));
                    }
                }
                self.repo_errors = now_failing;
            }
            Outcome::Backup {
                dataset,
                site,
                result,
                replicas,
            } => {
                let state = self.datasets.entry(dataset.clone()).or_default();
                state.busy = false;
                match result {
                    Ok(snap) => {
                        state.last_backup = Some(snap.unix);
                        state.points.insert(site.clone(), snap.unix);
                        emit(
                            Event::new(
                                EventKind::BackupFinished,
                                format!(
                                    "snapshot {} ({} bytes, {} new)",
                                    &snap.id[..8.min(snap.id.len())],
                                    snap.bytes,
                                    snap.added
                                ),
                            )
                            .site(&site)
                            .dataset(&dataset)
                            .added_bytes(snap.added),
                        );
                        for (to, r) in replicas {
                            match r {
                                Ok(report) => {
                                    state.points.insert(to.clone(), snap.unix);
                                    emit(
                                        Event::new(
                                            EventKind::ReplicationFinished,
                                            // `cost.rs` reads the bytes back (`(<bytes> bytes)`).
                                            format!(
                                                "{} snapshots copied from {site} ({} bytes)",
                                                report.snapshots_copied, report.bytes
                                            ),
                                        )
                                        .site(&to)
                                        .dataset(&dataset),
                                    );
                                }
                                Err(e) => emit(Event::new(EventKind::ReplicationFailed, e).site(&to).dataset(&dataset)),
                            }
                        }
                    }
                    Err(e) => {
                        // Try again at the next schedule, not at the next tick.
                        state.last_backup = Some(now_unix());
                        emit(Event::new(EventKind::BackupFailed, e).site(&site).dataset(&dataset));
                    }
                }
            }
            Outcome::Lags(lags) => {
                self.measuring = false;
                self.lag_measured = Some(Instant::now());
                for (dataset, site, rpo, lag) in lags {
                    let state = self.standbys.entry((dataset.clone(), site.clone())).or_default();
                    let (lagging, message) = judge_lag(&lag, rpo);
                    state.last = lag.ok();
                    if state.lagging != Some(lagging) {
                        state.lagging = Some(lagging);
                        let kind = if lagging {
                            EventKind::StandbyLagging
                        } else {
                            EventKind::StandbyCaughtUp
                        };
                        emit(Event::new(kind, message).site(&site).dataset(&dataset));
                    }
                }
            }
            Outcome::Archiving(statuses) => {
                for (dataset, status) in statuses {
                    // An unreachable primary is the reconcile loop's to report; judge what answers.
                    let Ok(status) = status else { continue };
                    let failing = status.failing();
                    let was = self.archiving_failing.insert(dataset.clone(), failing);
                    if was == Some(failing) || (was.is_none() && !failing) {
                        continue;
                    }
                    let (kind, message) = if failing {
                        (
                            EventKind::ArchivingFailing,
                            format!(
                                "archiving {} failed at {} ({} failures so far); the RPO grows until it works",
                                status.last_failed_wal.as_deref().unwrap_or("?"),
                                status.last_failed_time.as_deref().unwrap_or("?"),
                                status.failed_count
                            ),
                        )
                    } else {
                        (
                            EventKind::ArchivingRecovered,
                            format!(
                                "archived {} at {}",
                                status.last_archived_wal.as_deref().unwrap_or("?"),
                                status.last_archived_time.as_deref().unwrap_or("?")
                            ),
                        )
                    };
                    emit(Event::new(kind, message).dataset(&dataset));
                }
            }
            Outcome::Verify { dataset, site, result } => {
                if let Some(state) = self.datasets.get_mut(&dataset) {
                    state.busy = false;
                }
                match result {
                    Ok(r) => emit(
                        Event::new(
                            EventKind::VerifyPassed,
                            format!("snapshot {}: {}", &r.snapshot[..8.min(r.snapshot.len())], r.check),
                        )
                        .site(&site)
                        .dataset(&dataset),
                    ),
                    Err(e) => emit(Event::new(EventKind::VerifyFailed, e).site(&site).dataset(&dataset)),
                }
            }
        }
    }

    /// Forgets standbys the spec no longer declares (so they are judged afresh if they return).
    fn forget_standbys(&mut self, system: &System) {
        self.standbys.retain(|(dataset, site), _| {
            system.datasets.get(dataset).is_some_and(|ds| {
                ds.strategy == resurgo_spec::Strategy::Standby
                    && system
                        .services
                        .get(&ds.service)
                        .and_then(|s| s.standby.first())
                        .is_some_and(|s| s == site)
            })
        });
    }

    /// Emits an event when a dataset's newest point at a site ages past its RPO objective, and
    /// when it comes back within it.
    fn check_rpo(&mut self, system: &System, now: i64, emit: &mut dyn FnMut(Event)) {
        for (name, ds) in &system.datasets {
            let Some(rpo) = ds.rpo.or(system.objectives.rpo) else {
                continue;
            };
            let Some(state) = self.datasets.get_mut(name) else {
                continue;
            };
            for (site, point) in &state.points {
                let age = now - point;
                let breached = age > rpo.0.as_secs() as i64;
                if breached && state.breached.insert(site.clone()) {
                    emit(
                        Event::new(
                            EventKind::RpoBreached,
                            format!("newest restorable point is {age}s old, objective {rpo}"),
                        )
                        .site(site)
                        .dataset(name),
                    );
                } else if !breached && state.breached.remove(site) {
                    emit(
                        Event::new(
                            EventKind::RpoRestored,
                            format!("newest restorable point is {age}s old, within {rpo}"),
                        )
                        .site(site)
                        .dataset(name),
                    );
                }
            }
        }
    }

    /// `(dataset, site, age in seconds)` of every known recovery point, for status.
    pub fn recovery_points(&self) -> Vec<(String, String, i64)> {
        let now = now_unix();
        let mut out: Vec<_> = self
            .datasets
            .iter()
            .flat_map(|(d, s)| s.points.iter().map(move |(site, t)| (d.clone(), site.clone(), now - t)))
            .collect();
        out.sort();
        out
    }
}

/// Whether a standby is lagging — it cannot be measured, is not streaming, or is behind by
/// more than the RPO objective — and why, in words.
fn judge_lag(lag: &Result<resurgo_vault::pg::Lag, String>, rpo: Option<Duration>) -> (bool, String) {
    let lag = match lag {
        Ok(lag) => lag,
        Err(e) => return (true, format!("cannot measure the standby: {e}")),
    };
    let seconds = lag.seconds.map_or_else(|| "unknown".to_string(), |s| format!("{s:.3}"));
    let figures = format!("{} bytes, {seconds} s behind", lag.bytes);
    let objective = rpo.map(|r| format!(", objective {}", resurgo_spec::Duration(r)));
    if !lag.streaming {
        return (true, format!("not streaming from the primary ({figures})"));
    }
    match (lag.seconds, rpo) {
        (Some(s), Some(r)) if s > r.as_secs_f64() => (true, format!("{figures}{}", objective.unwrap_or_default())),
        _ => (false, format!("streaming, {figures}{}", objective.unwrap_or_default())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resurgo_vault::pg::Lag;

    #[test]
    fn a_standby_lags_when_behind_the_objective_not_streaming_or_unmeasured() {
        let rpo = Some(Duration::from_secs(1));
        let lag = |seconds: Option<f64>, streaming: bool| {
            Ok(Lag {
                bytes: 100,
                seconds,
                streaming,
            })
        };
        assert!(!judge_lag(&lag(Some(0.2), true), rpo).0);
        assert!(judge_lag(&lag(Some(1.5), true), rpo).0);
        assert!(
            !judge_lag(&lag(Some(100.0), true), None).0,
            "no objective: only streaming counts"
        );
        assert!(!judge_lag(&lag(None, true), rpo).0, "not known yet is not lagging");
        let (lagging, why) = judge_lag(&lag(Some(0.0), false), rpo);
        assert!(lagging && why.contains("not streaming"), "{why}");
        let (lagging, why) = judge_lag(&Err("connection refused".into()), rpo);
        assert!(lagging && why.contains("connection refused"), "{why}");
    }
}
