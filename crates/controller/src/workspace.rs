//! Workspaces: the idle DR site lent out as preemptible dev/test copies of some services, on
//! real data, taken back first when a failover needs the site and given back after failback.
//!
//! A workspace is a [`Sandbox`] (its own network namespace, its own supervisors, no repository
//! credentials) whose copies are clones of the site's *golden copies*: per dataset, the newest
//! restore point in the site's own repository, restored and checked once — PostgreSQL promoted
//! and shut down cleanly (clones start without crash recovery), SQLite rewritten with
//! `VACUUM INTO` — then cloned by reflink, else overlayfs, else a full copy
//! ([`resurgo_clone`]). A clone of PostgreSQL shares production's system identifier: it runs
//! with archiving off, and carries [`resurgo_vault::pg::CLONE_MARKER`], which makes the log
//! archive refuse anything it pushes.
//!
//! Everything is under `<state>/workspaces/`: `.golden/<site>/<dataset>/<point>/` (a golden
//! copy and its `golden.json`), and `<name>/` (the workspace's `workspace.json`, written
//! before anything is made so a deletion can undo whatever was made, and its sandbox).
//!
//! [`preempt`] is a failover's first step at its target: every workspace there is stopped (or
//! destroyed) in parallel within a budget, and nothing waits for a workspace, whatever it is
//! doing. [`tend`] is the agent's: it deletes expired workspaces and restarts preempted ones
//! once the site is idle again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use resurgo_spec::{DatasetKind, OnPreempt, System, Workspace};
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::events::{Event, EventKind, EventLog};
use crate::protect::{Protector, RestoreFor};
use crate::sandbox::Sandbox;

/// How long a failover's preempt step may take before what is left of its workspaces is
/// killed (DESIGN §8: preempting 5 workspaces ≤ 2 s).
pub const PREEMPT_BUDGET: Duration = Duration::from_secs(2);

/// What a workspace is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Its copies are being made; not handed out yet.
    Seeding,
    /// Its services run on its copies: handed out.
    Ready,
    /// Stopped by a failover to its site (its copies kept); restarted after failback.
    Preempted,
    /// Its making failed; the reason is in `detail`. Deleted by the next [`tend`].
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Seeding => "seeding",
            State::Ready => "ready",
            State::Preempted => "preempted",
            State::Failed => "failed",
        }
    }
}

/// One dataset's clone in a workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clone {
    pub dataset: String,
    pub kind: DatasetKind,
    /// The restore point it holds (short id) and when it was taken (Unix seconds).
    pub snapshot: String,
    pub taken_unix: i64,
    /// How it was cloned from the golden copy, and how long that took.
    pub method: resurgo_clone::Method,
    pub took_s: f64,
    pub bytes: u64,
    /// Where the clone is (the data folder as the service sees it).
    pub path: PathBuf,
    /// The golden copy it was cloned from (an overlay reads through it).
    pub golden: PathBuf,
}

/// `workspace.json`: a workspace, as declared and as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    pub site: String,
    pub policy: Workspace,
    pub state: State,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub created_unix: i64,
    pub expires_unix: i64,
    /// When its copies were made (its seed), Unix seconds.
    #[serde(default)]
    pub seeded_unix: i64,
    #[serde(default)]
    pub clones: Vec<Clone>,
    /// Time until it served, seconds (copies, start, masking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_s: Option<f64>,
    /// The network namespace its services run in.
    #[serde(default)]
    pub netns: String,
}

/// Why a workspace was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotMade {
    /// Refused before anything was made (its site serves production, a run is in progress,
    /// no room, the name is taken…).
    Refused(String),
    /// Its making failed (a copy, a start, its masking); what was made is removed.
    Failed(String),
}

impl std::fmt::Display for NotMade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotMade::Refused(e) | NotMade::Failed(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for NotMade {}

/// What a failover's preempt step did at its target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Preempted {
    /// Workspaces stopped (their copies kept), lowest priority first.
    pub stopped: Vec<String>,
    /// Workspaces destroyed (`on_preempt: destroy`, or caught while seeding).
    pub destroyed: Vec<String>,
    /// Processes still alive at the budget's end, killed with SIGKILL.
    pub killed: usize,
    pub took_s: f64,
}

/// A golden copy's record (`golden.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Golden {
    pub dataset: String,
    pub site: String,
    pub snapshot: String,
    pub taken_unix: i64,
    pub made_unix: i64,
    /// The check it passed (`PRAGMA integrity_check → ok`, `pg_amcheck …`, files read).
    pub check: String,
    /// The folder cloned: a PostgreSQL data directory, an SQLite file's folder, a directory.
    pub path: PathBuf,
    /// The seed it was made for: a time (its recovery target), or none for the newest point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    /// PostgreSQL: the newest log segment archived in the repository when it was made (what
    /// its recovery could replay up to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_log: Option<String>,
}

/// The folder of workspaces.
pub fn workspaces_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("workspaces")
}

fn dir_of(state_dir: &Path, name: &str) -> PathBuf {
    workspaces_dir(state_dir).join(name)
}

fn golden_root(state_dir: &Path, site: &str, dataset: &str) -> PathBuf {
    workspaces_dir(state_dir).join(".golden").join(site).join(dataset)
}

fn record_path(state_dir: &Path, name: &str) -> PathBuf {
    dir_of(state_dir, name).join("workspace.json")
}

/// The sandbox id of workspace `name`: its folder, so that its namespace (named after it) is
/// this state folder's own, whatever else runs on the host.
fn sandbox_id(state_dir: &Path, name: &str) -> String {
    let state = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    dir_of(&state, name).display().to_string()
}

/// Marks a workspace being preempted: its seeding stops at its next step.
fn preempt_flag(state_dir: &Path, name: &str) -> PathBuf {
    dir_of(state_dir, name).join("preempted")
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn save(state_dir: &Path, record: &Record) -> Result<(), String> {
    let path = record_path(state_dir, &record.name);
    resurgo_provider::write_json_atomic(&path, record).map_err(|e| format!("{}: {e}", path.display()))
}

/// Workspace `name`'s record, if there is one.
pub fn find(state_dir: &Path, name: &str) -> Option<Record> {
    serde_json::from_slice(&std::fs::read(record_path(state_dir, name)).ok()?).ok()
}

/// Every workspace recorded here, by name.
pub fn list(state_dir: &Path) -> Vec<Record> {
    let Ok(entries) = std::fs::read_dir(workspaces_dir(state_dir)) else {
        return Vec::new();
    };
    let mut records: Vec<Record> = entries
        .flatten()
        .filter_map(|e| find(state_dir, e.file_name().to_str()?))
        .collect();
    records.sort_by(|a, b| a.name.cmp(&b.name));
    records
}

/// Whether `site` is active for a group homed elsewhere (a failover moved it there): a
/// workspace is neither made nor restarted there then.
pub fn site_is_taken(system: &System, state_dir: &Path, site: &str) -> Result<bool, String> {
    let store = crate::roles::open_store(system, state_dir).map_err(|e| e.to_string())?;
    for home in system.sites.keys().filter(|s| *s != site) {
        let group = crate::roles::group_of(home);
        match store.get_assignment(&group) {
            Ok(Some(a)) if a.primary_site == site => return Ok(true),
            Ok(_) => {}
            // Unknown is never "free".
            Err(e) => return Err(format!("the coordination store cannot be read: {e}")),
        }
    }
    Ok(false)
}

/// Why a workspace may not be made at `site` now, if it may not.
fn refusal(system: &System, state_dir: &Path, name: &str, policy: &Workspace) -> Option<String> {
    let site = &policy.site;
    let Some(declared) = system.sites.get(site) else {
        return Some(format!("site `{site}` is not declared"));
    };
    if find(state_dir, name).is_some() {
        return Some(format!(
            "workspace `{name}` exists already: `resurgo workspace refresh {name}` re-seeds it, `resurgo workspace delete {name}` drops it"
        ));
    }
    if crate::failover::run_in_progress(state_dir) {
        return Some(format!(
            "a failover or failback is in progress at `{site}`: workspaces are made once it is over"
        ));
    }
    match site_is_taken(system, state_dir, site) {
        Ok(true) => {
            return Some(format!(
                "`{site}` is serving production after a failover: its capacity is not spare until failback"
            ))
        }
        Err(e) => return Some(format!("cannot tell whether `{site}` serves production: {e}")),
        Ok(false) => {}
    }
    for service in &policy.services {
        if !system.services.contains_key(service) {
            return Some(format!("service `{service}` is not declared"));
        }
    }
    // Spare capacity: the site's, less its own services and the workspaces lent already.
    let own = system.services.values().filter(|s| &s.site == site);
    let lent = list(state_dir).into_iter().filter(|r| &r.site == site);
    let (mut cpu, mut mem) = (policy.resources.cpu.0, policy.resources.memory.0);
    for s in own {
        cpu += s.resources.cpu.0;
        mem += s.resources.memory.0;
    }
    for r in lent {
        cpu += r.policy.resources.cpu.0;
        mem += r.policy.resources.memory.0;
    }
    if cpu > declared.capacity.cpu.0 || mem > declared.capacity.memory.0 {
        return Some(format!(
            "`{site}` has no room: its own services, the workspaces there and `{name}` need cpu {}, memory {}; it has cpu {}, memory {}",
            resurgo_spec::Cpu(cpu),
            resurgo_spec::ByteSize(mem),
            declared.capacity.cpu,
            declared.capacity.memory
        ));
    }
    None
}

/// The golden copy of `dataset` at `site` for a seed: the newest one made from the newest
/// restore point (at or before `at`) in the site's repository, made now if there is none.
pub fn golden(
    engine: &Engine,
    system: &System,
    state_dir: &Path,
    site: &str,
    dataset: &str,
    at: Option<&str>,
) -> Result<Golden, String> {
    let protector = Protector::new(system, engine, state_dir);
    let repo = protector.open(site).map_err(|e| e.to_string())?;
    let newest = protector
        .pick_snapshot(&repo, dataset, site, at)
        .map_err(|e| e.to_string())?;
    let short: String = newest.id.chars().take(8).collect();
    let root = golden_root(state_dir, site, dataset);
    // A snapshot is its data. A PostgreSQL golden is its base backup recovered, through the
    // log archived after it, to its seed: the same only for the same seed and the same
    // archive (a segment archived since may hold writes the seed asks for).
    let postgres = system
        .datasets
        .get(dataset)
        .is_some_and(|d| d.kind == DatasetKind::Postgres);
    let newest_log = if postgres { newest_log(&repo, dataset)? } else { None };
    let same =
        |g: &Golden| g.snapshot == short && (!postgres || (g.seed.as_deref() == at && g.newest_log == newest_log));
    if let Some(g) = goldens(&root).into_iter().rev().find(same) {
        return Ok(g);
    }
    make_golden(&protector, system, state_dir, site, dataset, at, newest_log)
}

/// The newest log segment archived for `dataset` in `repo`, by name.
fn newest_log(repo: &resurgo_vault::Repository, dataset: &str) -> Result<Option<String>, String> {
    repo.archive()
        .newest_segment(dataset)
        .map(|n| n.map(|(name, _)| name))
        .map_err(|e| format!("the log archive of `{dataset}`: {e}"))
}

/// The golden copies kept in `root`, oldest first.
fn goldens(root: &Path) -> Vec<Golden> {
    let mut versions: Vec<(u128, Golden)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let golden = serde_json::from_slice(&std::fs::read(e.path().join("golden.json")).ok()?).ok()?;
            Some((version, golden))
        })
        .collect();
    versions.sort_by_key(|(v, _)| *v);
    versions.into_iter().map(|(_, g)| g).collect()
}

/// Restores the newest restore point of `dataset` (at or before `at`) into a new golden copy,
/// checks it, and prunes the others. A previous golden stays while a workspace uses
/// it (overlay clones read through it).
fn make_golden(
    protector: &Protector,
    system: &System,
    state_dir: &Path,
    site: &str,
    dataset: &str,
    at: Option<&str>,
    newest_log: Option<String>,
) -> Result<Golden, String> {
    let ds = system
        .datasets
        .get(dataset)
        .ok_or_else(|| format!("dataset `{dataset}` is not declared"))?;
    let root = golden_root(state_dir, site, dataset);
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let version = format!(
        "{}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let dir = root.join(&version);
    let data = dir.join("data");
    let made = (|| -> Result<Golden, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let into = match ds.kind {
            DatasetKind::Postgres => data.clone(),
            _ => dir.join("restored"),
        };
        if ds.kind != DatasetKind::Postgres {
            std::fs::create_dir_all(&into).map_err(|e| format!("{}: {e}", into.display()))?;
        }
        let snapshot = protector
            .restore(dataset, site, at, &into, RestoreFor::Detached)
            .map_err(|e| format!("restoring `{dataset}` from {site}'s repository: {e}"))?;
        // The restored data keeps its service user's ownership; that user (a database
        // server checking it) is let through to it.
        let_through(&into, state_dir)?;
        let check = match ds.kind {
            DatasetKind::Postgres => pg_golden(protector, system, dataset, ds, site, &data)?,
            DatasetKind::Sqlite => {
                let file = ds.path.as_deref().unwrap_or(dataset);
                let name = Path::new(file)
                    .file_name()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| file.into());
                std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
                let restored = into.join(&name);
                let db = rusqlite::Connection::open(&restored).map_err(|e| format!("{}: {e}", restored.display()))?;
                let target = data.join(&name);
                db.execute("VACUUM INTO ?1", [target.to_string_lossy().as_ref()])
                    .map_err(|e| format!("VACUUM INTO {}: {e}", target.display()))?;
                drop(db);
                copy_owner(&restored, &target);
                copy_owner(&into, &data);
                let _ = std::fs::remove_dir_all(&into);
                let (_, checked) = crate::drill_probe::check_copy(DatasetKind::Sqlite, &target);
                checked?
            }
            DatasetKind::Directory => {
                std::fs::rename(&into, &data).map_err(|e| format!("{}: {e}", data.display()))?;
                let (_, checked) = crate::drill_probe::check_copy(DatasetKind::Directory, &data);
                checked?
            }
        };
        let golden = Golden {
            dataset: dataset.to_string(),
            site: site.to_string(),
            snapshot: snapshot.id.chars().take(8).collect(),
            taken_unix: snapshot.unix,
            made_unix: now_unix(),
            check,
            path: data.clone(),
            seed: at.map(str::to_string),
            newest_log,
        };
        resurgo_provider::write_json_atomic(&dir.join("golden.json"), &golden)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(golden)
    })();
    match made {
        Ok(golden) => {
            prune_goldens(state_dir, &root, &dir);
            Ok(golden)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(format!("the golden copy of `{dataset}` at {site}: {e}"))
        }
    }
}

/// Lets every user search the folders above `path` up to and including `top` (never lists
/// them, never reads what is inside): a service's user reaches its own data.
fn let_through(path: &Path, top: &Path) -> Result<(), String> {
    let mut at = path.parent();
    while let Some(folder) = at {
        resurgo_provider::account::allow_search(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
        if folder == top {
            break;
        }
        at = folder.parent();
    }
    Ok(())
}

/// Gives `to` the owner of `from` (a restore keeps the service user's ownership).
fn copy_owner(from: &Path, to: &Path) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(m) = std::fs::metadata(from) {
        let _ = std::os::unix::fs::chown(to, Some(m.uid()), Some(m.gid()));
    }
}

/// Ends a restored PostgreSQL copy's recovery on a throw-away server (no archiving, a port of
/// its own), checks every table and index with `pg_amcheck`, and shuts it down cleanly: a
/// clone then starts without crash recovery.
fn pg_golden(
    protector: &Protector,
    system: &System,
    dataset: &str,
    ds: &resurgo_spec::Dataset,
    site: &str,
    data: &Path,
) -> Result<String, String> {
    let base = protector.pg_target(dataset, ds).map_err(|e| e.to_string())?;
    let address = system
        .sites
        .get(site)
        .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |s| s.address);
    let server = crate::scratch_pg::ScratchServer::start(data, address, &base).map_err(|e| e.to_string())?;
    let checked = resurgo_vault::pg::amcheck(&server.target).map_err(|e| e.to_string());
    // Dropped: a fast shutdown, which is a clean one.
    drop(server);
    let log = data.with_extension("log");
    let _ = std::fs::remove_file(log);
    checked.map(|c| format!("pg_amcheck: {c}"))
}

/// Removes the golden copies in `root` other than `keep` (the one just made) that no
/// workspace's clone reads through (an overlay's lower layer).
fn prune_goldens(state_dir: &Path, root: &Path, keep: &Path) {
    let in_use: Vec<PathBuf> = list(state_dir)
        .iter()
        .flat_map(|r| r.clones.iter())
        .filter(|c| c.method == resurgo_clone::Method::Overlay)
        .map(|c| c.golden.clone())
        .collect();
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() || path == keep || in_use.iter().any(|l| l.starts_with(&path)) {
            continue;
        }
        let _ = std::fs::remove_dir_all(&path);
    }
}

/// Makes workspace `name` as `policy` declares it: refused while its site serves production,
/// a run is in progress, or there is no room; its record first, then the golden copies, the
/// clones, the services started in the workspace's own namespace, and the masking hooks. A
/// workspace that fails any step (its masking above all) is destroyed, never handed out.
pub fn create(
    engine: &Engine,
    system: &System,
    state_dir: &Path,
    name: &str,
    policy: &Workspace,
) -> Result<Record, NotMade> {
    if let Some(why) = refusal(system, state_dir, name, policy) {
        return Err(NotMade::Refused(format!("workspace `{name}` is not made: {why}")));
    }
    let began = Instant::now();
    let now = now_unix();
    let mut record = Record {
        name: name.to_string(),
        site: policy.site.clone(),
        policy: policy.clone(),
        state: State::Seeding,
        detail: None,
        created_unix: now,
        expires_unix: now + policy.ttl().as_secs() as i64,
        seeded_unix: now,
        clones: Vec::new(),
        ready_s: None,
        netns: String::new(),
    };
    let failed = |e: String| NotMade::Failed(format!("workspace `{name}` was not made: {e}"));
    for dir in [workspaces_dir(state_dir), dir_of(state_dir, name)] {
        resurgo_provider::private_dir(&dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
    }
    save(state_dir, &record).map_err(failed)?;
    match seed(engine, system, state_dir, &mut record, began) {
        Ok(()) => {
            log(
                state_dir,
                Event::new(EventKind::WorkspaceReady, ready_message(&record)).site(&record.site),
            );
            Ok(record)
        }
        Err(e) => {
            let _ = destroy(state_dir, name);
            log(
                state_dir,
                Event::new(
                    EventKind::WorkspaceFailed,
                    format!("workspace `{name}`: {e}; destroyed"),
                )
                .site(&policy.site),
            );
            Err(NotMade::Failed(format!(
                "workspace `{name}` was not handed out: {e} (what was made is removed)"
            )))
        }
    }
}

fn ready_message(record: &Record) -> String {
    let clones: Vec<String> = record
        .clones
        .iter()
        .map(|c| format!("{} by {} in {:.2} s", c.dataset, c.method, c.took_s))
        .collect();
    format!(
        "workspace `{}` serves ({}; ready in {:.2} s)",
        record.name,
        clones.join(", "),
        record.ready_s.unwrap_or_default()
    )
}

/// The seeding of a workspace whose record is written: copies, services, masking. Stops at
/// the next step once the workspace is being preempted.
fn seed(engine: &Engine, system: &System, state_dir: &Path, record: &mut Record, began: Instant) -> Result<(), String> {
    let name = record.name.clone();
    let site = record.site.clone();
    let policy = record.policy.clone();
    let preempted = || preempt_flag(state_dir, &name).exists();
    let at = match &policy.seed {
        resurgo_spec::Seed::Latest => None,
        resurgo_spec::Seed::At(t) => Some(t.clone()),
    };
    let allowed: Vec<resurgo_clone::Method> = match policy.clone {
        resurgo_spec::CloneMethod::Auto => vec![
            resurgo_clone::Method::Reflink,
            resurgo_clone::Method::Overlay,
            resurgo_clone::Method::Copy,
        ],
        resurgo_spec::CloneMethod::Reflink => vec![resurgo_clone::Method::Reflink],
        resurgo_spec::CloneMethod::Overlay => vec![resurgo_clone::Method::Overlay],
        resurgo_spec::CloneMethod::Copy => vec![resurgo_clone::Method::Copy],
    };
    let clones = std::cell::RefCell::new(Vec::new());
    let copy = |dataset: &str, ds: &resurgo_spec::Dataset, into: &Path| -> Result<(String, i64), String> {
        if preempted() {
            return Err("preempted while seeding".into());
        }
        let golden = golden(engine, system, state_dir, &site, dataset, at.as_deref())?;
        if preempted() {
            return Err("preempted while seeding".into());
        }
        // A sandbox restores into `into`; a clone must not find it there.
        let _ = std::fs::remove_dir(into);
        let cloned = resurgo_clone::clone_tree(&golden.path, into, &allowed)
            .map_err(|e| format!("cloning the golden copy of `{dataset}`: {e}"))?;
        if ds.kind == DatasetKind::Postgres {
            detach_pg_clone(into, &name)?;
        }
        clones.borrow_mut().push(Clone {
            dataset: dataset.to_string(),
            kind: ds.kind,
            snapshot: golden.snapshot.clone(),
            taken_unix: golden.taken_unix,
            method: cloned.method,
            took_s: cloned.took.as_secs_f64(),
            bytes: cloned.bytes,
            path: into.to_path_buf(),
            golden: golden.path.clone(),
        });
        Ok((golden.snapshot, golden.taken_unix))
    };
    let root = dir_of(state_dir, &name).join("sandbox");
    let made = Sandbox::create_in(
        system,
        state_dir,
        &root,
        &site,
        &sandbox_id(state_dir, &name),
        &policy.services,
        &copy,
    );
    record.clones = clones.into_inner();
    let (sandbox, _) = made?;
    record.netns = sandbox.netns.clone();
    save(state_dir, record)?;
    if preempted() {
        return Err("preempted while seeding".into());
    }
    wait_serving(engine, system, state_dir, &sandbox)?;
    mask(&sandbox, &policy, system)?;
    if preempted() {
        return Err("preempted while seeding".into());
    }
    record.state = State::Ready;
    record.seeded_unix = now_unix();
    record.ready_s = Some(began.elapsed().as_secs_f64());
    save(state_dir, record)
}

/// Makes a PostgreSQL clone a stranger to production: archiving off, no replication, and the
/// clone marker that makes the log archive refuse whatever it would push.
fn detach_pg_clone(pgdata: &Path, workspace: &str) -> Result<(), String> {
    let marker = pgdata.join(resurgo_vault::pg::CLONE_MARKER);
    std::fs::write(&marker, format!("workspace {workspace}\n")).map_err(|e| format!("{}: {e}", marker.display()))?;
    let conf = pgdata.join("postgresql.auto.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap_or_default();
    text.push_str("\n# resurgo: a workspace's clone archives nothing and replicates from nothing\narchive_mode = 'off'\narchive_command = ''\nprimary_conninfo = ''\nrestore_command = ''\n");
    std::fs::write(&conf, text).map_err(|e| format!("{}: {e}", conf.display()))?;
    for signal in ["standby.signal", "recovery.signal"] {
        let _ = std::fs::remove_file(pgdata.join(signal));
    }
    copy_owner(pgdata, &marker);
    Ok(())
}

/// Waits (up to two minutes) until every service of the workspace answers its health check.
fn wait_serving(engine: &Engine, system: &System, state_dir: &Path, sandbox: &Sandbox) -> Result<(), String> {
    let protector = Protector::new(system, engine, state_dir);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match sandbox.serving(&protector, system) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(format!("it never served: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The workspace's name, from its sandbox's folder (`<state>/workspaces/<name>/sandbox`).
fn policy_name(sandbox: &Sandbox) -> String {
    sandbox
        .root
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Runs the masking hooks inside the workspace's namespace, in order; the first that fails
/// fails the workspace (fail closed).
fn mask(sandbox: &Sandbox, policy: &Workspace, system: &System) -> Result<(), String> {
    for (i, hook) in policy.masking.iter().enumerate() {
        let mut env: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            ),
            ("RESURGO_WORKSPACE".into(), policy_name(sandbox)),
            ("RESURGO_ADDRESS".into(), sandbox.address.to_string()),
        ];
        for copy in &sandbox.copies {
            let key = copy.dataset.to_uppercase().replace('-', "_");
            env.push((format!("RESURGO_DATASET_{key}"), copy.path.display().to_string()));
            if let Some(port) = system
                .datasets
                .get(&copy.dataset)
                .and_then(|ds| system.services.get(&ds.service))
                .and_then(|s| s.ports.first())
            {
                env.push((format!("RESURGO_PORT_{key}"), port.to_string()));
            }
        }
        let hook = hook.clone();
        let root = sandbox.root.clone();
        let out = sandbox.within(move || {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(&hook)
                .env_clear()
                .envs(env)
                .current_dir(&root)
                .output()
        })?;
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return Err(format!(
                    "masking hook {} failed ({}): {}",
                    i + 1,
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
            Err(e) => return Err(format!("masking hook {} could not run: {e}", i + 1)),
        }
    }
    Ok(())
}

/// Destroys workspace `name`, however far it got: its services stopped, its clones removed
/// (an overlay unmounted), its namespace and folder gone. Missing is fine.
pub fn destroy(state_dir: &Path, name: &str) -> Result<(), String> {
    let dir = dir_of(state_dir, name);
    let root = dir.join("sandbox");
    let mut problems = Vec::new();
    // Services first (they hold the clones open), then the clones, then the rest.
    if let Some(sandbox) = Sandbox::find_in(&root) {
        for (service, _) in sandbox.processes() {
            if let Err(e) = sandbox.stop_service(&service) {
                problems.push(e);
            }
        }
    }
    if let Some(record) = find(state_dir, name) {
        for clone in &record.clones {
            if let Err(e) = resurgo_clone::remove(&clone.path) {
                problems.push(e.to_string());
            }
        }
    }
    if let Err(e) = crate::sandbox::destroy_in(&root) {
        problems.push(e);
    }
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => problems.push(format!("{}: {e}", dir.display())),
        _ => {}
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Deletes workspace `name` at a person's request, and says so in the event log.
pub fn delete(state_dir: &Path, name: &str) -> Result<(), String> {
    let record = find(state_dir, name).ok_or_else(|| format!("no workspace `{name}` here"))?;
    destroy(state_dir, name)?;
    log(
        state_dir,
        Event::new(EventKind::WorkspaceDeleted, format!("workspace `{name}` deleted")).site(&record.site),
    );
    Ok(())
}

/// Re-seeds workspace `name` from the newest restore point: destroyed and made again with the
/// same policy (its TTL counts from now).
pub fn refresh(engine: &Engine, system: &System, state_dir: &Path, name: &str) -> Result<Record, NotMade> {
    let record = find(state_dir, name).ok_or_else(|| NotMade::Refused(format!("no workspace `{name}` here")))?;
    destroy(state_dir, name).map_err(NotMade::Failed)?;
    create(engine, system, state_dir, name, &record.policy)
}

/// What is left of workspace `name`: (kind, what, place), empty when nothing is.
pub fn leftovers(state_dir: &Path, name: &str, site: &str) -> Vec<(String, String, String)> {
    let dir = dir_of(state_dir, name);
    let mut left = crate::sandbox::leftovers_in(&dir.join("sandbox"), &sandbox_id(state_dir, name), site);
    // A clone's mounts (an overlay) anywhere under the workspace, and its folder.
    left.extend(resurgo_clone::leftovers(&dir).into_iter().map(|what| {
        let kind = if what.contains(" mount at ") { "mount" } else { "folder" };
        (kind.to_string(), what, site.to_string())
    }));
    left
}

fn log(state_dir: &Path, event: Event) {
    event.log(false);
    let _ = EventLog::of_state(state_dir).append(&event);
}

/// A failover's first step at `site`: every workspace there is taken back — lowest priority
/// first, all at once — within `budget`: each service gets SIGTERM and its grace, and what is
/// still alive at the budget's end gets SIGKILL. `on_preempt: destroy` workspaces, and those
/// caught seeding, are destroyed after the budget, off the failover's path. Never waits for a
/// workspace beyond the budget, whatever it is doing.
pub fn preempt(state_dir: &Path, site: &str, budget: Duration) -> Preempted {
    let began = Instant::now();
    let mut records: Vec<Record> = list(state_dir).into_iter().filter(|r| r.site == site).collect();
    records.sort_by_key(|r| r.policy.priority);
    let mut report = Preempted::default();
    // Seeding stops at its next step, and nothing restarts these until the site is idle.
    for r in &records {
        let _ = std::fs::write(preempt_flag(state_dir, &r.name), b"");
    }
    let mut victims: Vec<(String, u32, Sandbox)> = Vec::new();
    for r in &records {
        if let Some(sandbox) = Sandbox::find_in(&dir_of(state_dir, &r.name).join("sandbox")) {
            for (service, pid) in sandbox.processes() {
                victims.push((service, pid, sandbox.clone()));
            }
        }
    }
    // Each service's own stop (SIGTERM, grace, SIGKILL) on a thread of its own; the budget
    // bounds the wait, not the stops.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for (i, (service, _, sandbox)) in victims.iter().enumerate() {
        let (service, sandbox, done) = (service.clone(), sandbox.clone(), done_tx.clone());
        std::thread::spawn(move || {
            let _ = sandbox.stop_service(&service);
            let _ = done.send(i);
        });
    }
    drop(done_tx);
    let mut finished = vec![false; victims.len()];
    while finished.iter().any(|f| !f) {
        let left = budget.saturating_sub(began.elapsed());
        match done_rx.recv_timeout(left) {
            Ok(i) => finished[i] = true,
            Err(_) => break,
        }
    }
    for (i, (_, pid, _)) in victims.iter().enumerate() {
        if !finished[i] && kill_group(*pid) {
            report.killed += 1;
        }
    }
    let mut to_destroy = Vec::new();
    for mut r in records {
        let destroy_it = r.policy.on_preempt == OnPreempt::Destroy || r.state != State::Ready;
        if destroy_it {
            report.destroyed.push(r.name.clone());
            // One being seeded is destroyed by its seeder, which stops at its next step; the
            // others are marked failed first, so the site's agent finishes the job should
            // this process end before the thread below does.
            if r.state != State::Seeding {
                r.state = State::Failed;
                r.detail = Some(format!("destroyed by a failover to {site}"));
                let _ = save(state_dir, &r);
                to_destroy.push(r.name.clone());
            }
        } else {
            r.state = State::Preempted;
            r.detail = Some(format!(
                "preempted by a failover to {site} at {}",
                resurgo_provider::shim::rfc3339(SystemTime::now())
            ));
            let _ = save(state_dir, &r);
            report.stopped.push(r.name.clone());
        }
        let owners = owners_note(&r.policy);
        log(
            state_dir,
            Event::new(
                EventKind::WorkspacePreempted,
                format!(
                    "workspace `{}` {} for a failover to {site}{owners}",
                    r.name,
                    if destroy_it {
                        "destroyed"
                    } else {
                        "stopped, its data kept,"
                    }
                ),
            )
            .site(site),
        );
    }
    report.took_s = began.elapsed().as_secs_f64();
    if !to_destroy.is_empty() {
        let state_dir = state_dir.to_path_buf();
        std::thread::spawn(move || {
            for name in to_destroy {
                let _ = destroy(&state_dir, &name);
            }
        });
    }
    report
}

/// ` (owners: …)` for the events that tell a workspace's owners, empty without owners.
fn owners_note(policy: &Workspace) -> String {
    if policy.owners.is_empty() {
        String::new()
    } else {
        format!(" (owners: {})", policy.owners.join(", "))
    }
}

/// SIGKILL to the process group led by `pid` (a supervised service leads its own group);
/// whether there was one.
fn kill_group(pid: u32) -> bool {
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .is_ok()
}

/// The agent's care of `site`'s workspaces, each tick: an expired one is deleted; a failed
/// one is removed; once the site serves no production (after failback) and no run is in
/// progress, a preempted one is started again — re-seeded first when its seed is older than
/// its `reseed_after` — and its owners are told.
pub fn tend(engine: &Engine, system: &System, state_dir: &Path, site: &str) {
    let now = now_unix();
    let records: Vec<Record> = list(state_dir).into_iter().filter(|r| r.site == site).collect();
    if records.is_empty() {
        return;
    }
    for r in records
        .iter()
        .filter(|r| r.expires_unix <= now || r.state == State::Failed)
    {
        if r.state == State::Seeding {
            continue;
        }
        let expired = r.expires_unix <= now;
        match destroy(state_dir, &r.name) {
            Ok(()) if expired => log(
                state_dir,
                Event::new(
                    EventKind::WorkspaceExpired,
                    format!(
                        "workspace `{}` expired (ttl {}) and was deleted",
                        r.name,
                        resurgo_spec::Duration(r.policy.ttl())
                    ),
                )
                .site(site),
            ),
            Ok(()) => {}
            Err(e) => tracing::warn!(workspace = %r.name, "cannot delete: {e}"),
        }
    }
    let preempted: Vec<&Record> = records
        .iter()
        .filter(|r| r.state == State::Preempted && r.expires_unix > now)
        .collect();
    if preempted.is_empty()
        || crate::failover::run_in_progress(state_dir)
        || site_is_taken(system, state_dir, site).unwrap_or(true)
    {
        return;
    }
    for r in preempted {
        let stale = r
            .policy
            .reseed_after
            .is_some_and(|d| now - r.seeded_unix > d.0.as_secs() as i64);
        let _ = std::fs::remove_file(preempt_flag(state_dir, &r.name));
        let restored = if stale {
            refresh(engine, system, state_dir, &r.name)
                .map(|_| "re-seeded from the newest restore point")
                .map_err(|e| e.to_string())
        } else {
            restart(system, state_dir, r).map(|()| "restarted on its own data")
        };
        let (kind, what) = match restored {
            Ok(how) => (EventKind::WorkspaceRestored, format!("is back after failback: {how}")),
            Err(e) => (
                EventKind::WorkspaceFailed,
                format!("could not come back after failback: {e}"),
            ),
        };
        let owners = owners_note(&r.policy);
        log(
            state_dir,
            Event::new(kind, format!("workspace `{}` {what}{owners}", r.name)).site(site),
        );
    }
}

/// Starts a preempted workspace's services again on the data it kept.
fn restart(system: &System, state_dir: &Path, record: &Record) -> Result<(), String> {
    let sandbox = Sandbox::find_in(&dir_of(state_dir, &record.name).join("sandbox"))
        .ok_or_else(|| format!("workspace `{}` has no sandbox any more", record.name))?;
    sandbox.start(system)?;
    let mut record = record.clone();
    record.state = State::Ready;
    record.detail = None;
    save(state_dir, &record)
}
