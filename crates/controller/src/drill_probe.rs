//! What a drill measures with: client probes through routes (RTO: the first answer after the
//! fault) and canary writes into datasets (RPO: the numbered writes the recovered copy
//! lacks), and the data check of each recovered dataset. Probes and canaries run on threads
//! of their own while the drill waits; each keeps what it saw, in seconds since the drill
//! began.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use resurgo_spec::{Dataset, DatasetKind, System};

use crate::engine::Engine;
use crate::protect::Protector;

/// How often a probe asks and a canary writes.
const PACE: Duration = Duration::from_millis(100);
/// The table (SQLite, PostgreSQL) or folder (directory) a canary writes into.
pub const CANARY: &str = "resurgo_drill_canary";

/// One route probed from the drill's start to its end.
pub struct RouteProbe {
    pub route: String,
    pub listen: SocketAddr,
    /// Each answer: (seconds since the drill began, served).
    pub seen: Arc<Mutex<Vec<(f64, bool)>>>,
    /// The last failure's detail.
    pub last_error: Arc<Mutex<Option<String>>>,
}

impl RouteProbe {
    /// The routes to probe: those the drill names, else every proxy route of a service in
    /// scope (a DNS or hook route has no one address a probe here could ask).
    pub fn for_drill(system: &System, routes: &[String], services: &[String]) -> Vec<(String, SocketAddr, u16)> {
        system
            .routes
            .iter()
            .filter(|(name, r)| {
                if routes.is_empty() {
                    services.contains(&r.service)
                } else {
                    routes.contains(name)
                }
            })
            .filter_map(|(name, r)| {
                let listen = r.listen?;
                let svc = system.services.get(&r.service)?;
                let port = r.port.or_else(|| svc.ports.first().copied())?;
                Some((name.clone(), listen, port))
            })
            .collect()
    }

    /// Starts probing `listen` with `service`'s own health check, every [`PACE`], until `stop`.
    pub fn start(
        route: &str,
        listen: SocketAddr,
        port: u16,
        check: Option<resurgo_spec::HealthCheck>,
        began: Instant,
        stop: Arc<AtomicBool>,
    ) -> RouteProbe {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let last_error = Arc::new(Mutex::new(None));
        let (s, e) = (seen.clone(), last_error.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let result = resurgo_provider::probe::through_route(listen, port, check.as_ref());
                let at = began.elapsed().as_secs_f64();
                if !result.healthy {
                    *e.lock().unwrap_or_else(|p| p.into_inner()) = Some(result.detail);
                }
                s.lock().unwrap_or_else(|p| p.into_inner()).push((at, result.healthy));
                std::thread::sleep(PACE);
            }
        });
        RouteProbe {
            route: route.to_string(),
            listen,
            seen,
            last_error,
        }
    }

    pub fn answers(&self) -> Vec<(f64, bool)> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// When the service came back through a route after a fault injected at `fault_s`: the first
/// answer after the first failure that followed the fault — or, if it never failed, the first
/// answer after the fault. `None`: it has not come back (yet).
pub fn back_at(answers: &[(f64, bool)], fault_s: f64) -> Option<f64> {
    let after: Vec<&(f64, bool)> = answers.iter().filter(|(t, _)| *t >= fault_s).collect();
    match after.iter().position(|(_, ok)| !ok) {
        Some(first_failure) => after[first_failure..].iter().find(|(_, ok)| *ok).map(|(t, _)| *t),
        None => after.first().map(|(t, _)| *t),
    }
}

/// How long the probe has failed without a break, as of its newest answer.
pub fn failing_for(answers: &[(f64, bool)]) -> f64 {
    let Some(&(newest, false)) = answers.last() else {
        return 0.0;
    };
    let since = answers
        .iter()
        .rev()
        .take_while(|(_, ok)| !ok)
        .last()
        .map_or(newest, |(t, _)| *t);
    newest - since
}

/// Numbered writes into a dataset, acknowledged ones remembered with their time.
pub struct Canary {
    pub dataset: String,
    pub kind: DatasetKind,
    /// Each acknowledged write: (number, seconds since the drill began).
    pub acked: Arc<Mutex<Vec<(u64, f64)>>>,
    pub last_error: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
}

impl Canary {
    /// Starts writing into `dataset` where its service is active now, every [`PACE`], until
    /// [`Canary::halt`] (the drill halts it as it injects the first fault: what was
    /// acknowledged until then is what the recovery must keep).
    pub fn start(system: &System, engine: &Engine, state_dir: &Path, dataset: &str, began: Instant) -> Canary {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let last_error = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let kind = system.datasets.get(dataset).map_or(DatasetKind::Directory, |d| d.kind);
        let (a, e, s) = (acked.clone(), last_error.clone(), stop.clone());
        let (system, engine, state_dir, name) = (
            system.clone(),
            engine.clone(),
            state_dir.to_path_buf(),
            dataset.to_string(),
        );
        std::thread::spawn(move || {
            let mut seq = 0u64;
            while !s.load(Ordering::Relaxed) {
                seq += 1;
                match write(&system, &engine, &state_dir, &name, seq, began.elapsed().as_secs_f64()) {
                    Ok(()) => a
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((seq, began.elapsed().as_secs_f64())),
                    Err(err) => *e.lock().unwrap_or_else(|p| p.into_inner()) = Some(err),
                }
                std::thread::sleep(PACE);
            }
        });
        Canary {
            dataset: dataset.to_string(),
            kind,
            acked,
            last_error,
            stop,
        }
    }

    /// Stops writing; returns what was acknowledged.
    pub fn halt(&self) -> Vec<(u64, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        // A write in flight may still be acknowledged: wait it out.
        std::thread::sleep(PACE * 2);
        self.acked.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The kind of a dataset, as reports name it.
pub fn kind_name(kind: DatasetKind) -> &'static str {
    match kind {
        DatasetKind::Directory => "directory",
        DatasetKind::Sqlite => "sqlite",
        DatasetKind::Postgres => "postgres",
    }
}

fn dataset<'a>(system: &'a System, name: &str) -> Result<&'a Dataset, String> {
    system
        .datasets
        .get(name)
        .ok_or_else(|| format!("dataset `{name}` is not declared"))
}

/// The site where `name`'s service is active.
pub fn active_site(system: &System, name: &str) -> Result<String, String> {
    let ds = dataset(system, name)?;
    system
        .services
        .get(&ds.service)
        .map(|s| s.site.clone())
        .ok_or_else(|| format!("dataset `{name}`: its service `{}` is not declared", ds.service))
}

/// Writes canary number `seq` into `name` where its service is active.
fn write(system: &System, engine: &Engine, state_dir: &Path, name: &str, seq: u64, at: f64) -> Result<(), String> {
    let ds = dataset(system, name)?;
    let protector = Protector::new(system, engine, state_dir);
    match ds.kind {
        DatasetKind::Sqlite => {
            let path = live_path(&protector, system, name)?;
            let db = open_sqlite(&path, Duration::from_secs(1))?;
            db.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {CANARY} (seq INTEGER PRIMARY KEY, at REAL NOT NULL)"
            ))
            .map_err(|e| e.to_string())?;
            db.execute(
                &format!("INSERT INTO {CANARY} (seq, at) VALUES (?1, ?2)"),
                (seq as i64, at),
            )
            .map_err(|e| e.to_string())?;
            Ok(())
        }
        DatasetKind::Directory => {
            let dir = live_path(&protector, system, name)?.join(CANARY);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let path = dir.join(format!("{seq:012}"));
            let file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            file.sync_all().map_err(|e| format!("{}: {e}", path.display()))
        }
        DatasetKind::Postgres => {
            let target = protector.pg_target(name, ds).map_err(|e| e.to_string())?;
            resurgo_vault::pg::query(
                &target,
                &format!(
                    "CREATE TABLE IF NOT EXISTS {CANARY} (seq bigint PRIMARY KEY, at double precision NOT NULL); \
                     INSERT INTO {CANARY} (seq, at) VALUES ({seq}, {at})"
                ),
            )
            .map(drop)
            .map_err(|e| e.to_string())
        }
    }
}

/// Where `name` lives at the site where its service is active now.
fn live_path(protector: &Protector, system: &System, name: &str) -> Result<std::path::PathBuf, String> {
    protector
        .data_path(name, &active_site(system, name)?)
        .map_err(|e| e.to_string())
}

/// An SQLite database, opened to write, waiting up to `wait` for a lock.
fn open_sqlite(path: &Path, wait: Duration) -> Result<rusqlite::Connection, String> {
    let db = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    db.busy_timeout(wait).map_err(|e| e.to_string())?;
    Ok(db)
}

/// The highest canary number `name` holds where its service is active now (0: none).
pub fn recovered(system: &System, engine: &Engine, state_dir: &Path, name: &str) -> Result<u64, String> {
    let ds = dataset(system, name)?;
    let protector = Protector::new(system, engine, state_dir);
    match ds.kind {
        DatasetKind::Sqlite | DatasetKind::Directory => {
            let path = live_path(&protector, system, name)?;
            recovered_in(ds.kind, &path)
        }
        DatasetKind::Postgres => {
            let target = protector.pg_target(name, ds).map_err(|e| e.to_string())?;
            pg_canary_max(|sql| resurgo_vault::pg::query(&target, sql).map_err(|e| e.to_string()))
        }
    }
}

/// The highest canary number a PostgreSQL server holds (0: no canary table), asked through
/// `query`.
pub fn pg_canary_max(query: impl Fn(&str) -> Result<String, String>) -> Result<u64, String> {
    // Two statements: a query naming a table that does not exist fails even where its branch
    // would not run.
    if query(&format!("SELECT to_regclass('{CANARY}') IS NOT NULL"))?.trim() != "t" {
        return Ok(0);
    }
    let out = query(&format!("SELECT coalesce(max(seq), 0) FROM {CANARY}"))?;
    out.trim()
        .parse()
        .map_err(|_| format!("unexpected answer `{}`", out.trim()))
}

/// The highest canary number a copy at `path` holds (an SQLite file or a directory; 0: none).
pub fn recovered_in(kind: DatasetKind, path: &Path) -> Result<u64, String> {
    match kind {
        DatasetKind::Sqlite => {
            let db = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let exists: bool = db
                .query_row(
                    "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                    [CANARY],
                    |r| r.get(0),
                )
                .map_err(|e| e.to_string())?;
            if !exists {
                return Ok(0);
            }
            db.query_row(&format!("SELECT coalesce(max(seq), 0) FROM {CANARY}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(|e| e.to_string())
        }
        DatasetKind::Directory => {
            let dir = path.join(CANARY);
            let entries = match std::fs::read_dir(&dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                other => other.map_err(|e| format!("{}: {e}", dir.display()))?,
            };
            Ok(entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
                .max()
                .unwrap_or(0))
        }
        DatasetKind::Postgres => Err("a PostgreSQL copy is read through its server".into()),
    }
}

/// Removes the canary from `name` where its service is active (teardown). Whether anything of
/// it is left is what [`recovered`] then says.
pub fn remove(system: &System, engine: &Engine, state_dir: &Path, name: &str) -> Result<(), String> {
    let ds = dataset(system, name)?;
    let protector = Protector::new(system, engine, state_dir);
    match ds.kind {
        DatasetKind::Sqlite => {
            let path = live_path(&protector, system, name)?;
            let db = open_sqlite(&path, Duration::from_secs(5))?;
            db.execute_batch(&format!("DROP TABLE IF EXISTS {CANARY}"))
                .map_err(|e| e.to_string())
        }
        DatasetKind::Directory => {
            let dir = live_path(&protector, system, name)?.join(CANARY);
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("{}: {e}", dir.display())),
                _ => Ok(()),
            }
        }
        DatasetKind::Postgres => {
            let target = protector.pg_target(name, ds).map_err(|e| e.to_string())?;
            resurgo_vault::pg::query(&target, &format!("DROP TABLE IF EXISTS {CANARY}"))
                .map(drop)
                .map_err(|e| e.to_string())
        }
    }
}

/// Checks the recovered copy of `name` where its service is active: SQLite's
/// `integrity_check`, PostgreSQL's check query (`SELECT 1` when none is declared), every
/// file of a directory readable. The method and what it said, or why it failed.
pub fn data_check(system: &System, engine: &Engine, state_dir: &Path, name: &str) -> (String, Result<String, String>) {
    let Ok(ds) = dataset(system, name) else {
        return ("none".into(), Err(format!("dataset `{name}` is not declared")));
    };
    let protector = Protector::new(system, engine, state_dir);
    match ds.kind {
        DatasetKind::Sqlite | DatasetKind::Directory => {
            match active_site(system, name).and_then(|site| protector.data_path(name, &site).map_err(|e| e.to_string()))
            {
                Ok(path) => check_copy(ds.kind, &path),
                Err(e) => (
                    if ds.kind == DatasetKind::Sqlite {
                        "integrity_check"
                    } else {
                        "files"
                    }
                    .into(),
                    Err(e),
                ),
            }
        }
        DatasetKind::Postgres => {
            let query = ds
                .check
                .as_ref()
                .and_then(|c| c.query.clone())
                .unwrap_or_else(|| "SELECT 1".into());
            let result = protector
                .pg_target(name, ds)
                .map_err(|e| e.to_string())
                .and_then(|t| resurgo_vault::pg::query(&t, &query).map_err(|e| e.to_string()))
                .and_then(|answer| {
                    let answer = answer.trim().to_string();
                    match ds.check.as_ref().and_then(|c| c.expect.as_ref()) {
                        Some(want) if *want != answer => Err(format!("{query} → {answer}, expected {want}")),
                        _ => Ok(format!("{query} → {answer}")),
                    }
                });
            ("query".into(), result)
        }
    }
}

/// Checks a copy at `path`: an SQLite file's `integrity_check`, or every file of a directory
/// read. The method and what it said, or why it failed.
pub fn check_copy(kind: DatasetKind, path: &Path) -> (String, Result<String, String>) {
    match kind {
        DatasetKind::Sqlite => ("integrity_check".into(), {
            rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(|e| format!("{}: {e}", path.display()))
                .and_then(|db| {
                    db.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
                        .map_err(|e| e.to_string())
                })
                .and_then(|answer| {
                    if answer == "ok" {
                        Ok("PRAGMA integrity_check → ok".to_string())
                    } else {
                        Err(format!("PRAGMA integrity_check → {answer}"))
                    }
                })
        }),
        DatasetKind::Directory => ("files".into(), {
            let mut files = 0u64;
            let mut stack = vec![path.to_path_buf()];
            let mut result = Ok(());
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) => {
                        result = Err(format!("{}: {e}", dir.display()));
                        break;
                    }
                };
                for entry in entries.flatten() {
                    let p = entry.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if let Err(e) = std::fs::read(&p) {
                        result = Err(format!("{}: {e}", p.display()));
                    } else {
                        files += 1;
                    }
                }
            }
            result.map(|()| format!("{files} files read"))
        }),
        DatasetKind::Postgres => (
            "query".into(),
            Err("a PostgreSQL copy is checked through its server".into()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_is_the_first_answer_after_the_outage_that_followed_the_fault() {
        let answers = [
            (0.5, true),
            (1.0, true),
            (1.5, false),
            (2.0, false),
            (2.5, true),
            (3.0, true),
        ];
        assert_eq!(back_at(&answers, 1.2), Some(2.5));
        assert_eq!(
            back_at(&answers, 2.8),
            Some(3.0),
            "no outage after the fault: the first answer"
        );
        assert_eq!(back_at(&answers[..4], 1.2), None, "not back yet");
    }

    #[test]
    fn failing_for_counts_the_unbroken_failures_up_to_the_newest_answer() {
        assert_eq!(failing_for(&[(0.0, true), (1.0, false), (3.5, false)]), 2.5);
        assert_eq!(failing_for(&[(0.0, false), (1.0, true)]), 0.0);
        assert_eq!(failing_for(&[]), 0.0);
    }
}
