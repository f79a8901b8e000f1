//! Sandboxes at a DR site: services started on copies of the site's latest restore point, in a
//! network namespace of their own, so they can be tried (an isolated drill's test failover)
//! without touching production. The namespace has only its loopback: nothing in it reaches
//! another host, and [`Sandbox::attempts`] proves that by trying production's endpoints from
//! inside. The copies are restored from the DR site's repository by resurgo; the services in
//! the sandbox get no repository credentials (services never do) and are found by their own
//! supervisor, which enters the namespace before it starts them.
//!
//! Everything a sandbox makes is under `<state>/sandboxes/<id>/` and its namespace
//! `resurgo-<id>`; its record (`sandbox.json`) is written before anything is made, so
//! [`destroy`] can undo a sandbox whose maker died, and [`leftovers`] says what is left.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use resurgo_plan::RunConfig;
use resurgo_provider::local::LocalProvider;
use resurgo_provider::{Provider, SiteHandle};
use resurgo_spec::{Dataset, DatasetKind, System};
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::protect::Protector;

/// What a sandbox's record says: enough to find and undo it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sandbox {
    pub id: String,
    /// The DR site it stands in for.
    pub site: String,
    /// Its network namespace (`/run/netns/<netns>`).
    pub netns: String,
    /// Its folder: the copies and the services' state.
    pub root: PathBuf,
    /// The site's address, which its services listen on inside the namespace.
    pub address: std::net::IpAddr,
    pub services: Vec<String>,
    /// The copies it runs on, once made.
    #[serde(default)]
    pub copies: Vec<Copy>,
    /// The state folder it is made in: its services' users are let through up to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
}

/// A copy the sandbox runs on: which restore point, how old it was when copied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Copy {
    pub dataset: String,
    pub kind: DatasetKind,
    pub snapshot: String,
    /// When the restore point was taken (Unix seconds).
    pub taken_unix: i64,
    pub path: PathBuf,
}

/// Makes one dataset's copy for a sandbox (see [`Sandbox::create_in`]).
pub type CopyMaker<'a> = dyn Fn(&str, &Dataset, &Path) -> Result<(String, i64), String> + 'a;

/// The folder of sandboxes.
pub fn sandboxes_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("sandboxes")
}

fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Sandbox {
    fn record_path(root: &Path) -> PathBuf {
        root.join("sandbox.json")
    }

    fn provider(&self) -> LocalProvider {
        let provider = LocalProvider::at(self.root.join("site")).in_netns(netns_path(&self.netns));
        // A service's user is let through up to the state folder (for a record made before
        // it was kept: `<state>/sandboxes/<id>`).
        let state = self
            .state_dir
            .clone()
            .or_else(|| self.root.parent().and_then(Path::parent).map(Path::to_path_buf));
        match state {
            Some(state) => provider.with_state_dir(state),
            None => provider,
        }
    }

    fn handle(&self) -> SiteHandle {
        SiteHandle {
            name: self.site.clone(),
            address: self.address,
        }
    }

    /// Makes sandbox `id` at `site` for `services`: its record, its namespace, copies of the
    /// newest restore point of each of their datasets in `site`'s repository, and the services
    /// started inside, in dependency order. Returns the copies made.
    pub fn create(
        engine: &Engine,
        system: &System,
        state_dir: &Path,
        site: &str,
        id: &str,
        services: &[String],
    ) -> Result<(Sandbox, Vec<Copy>), String> {
        let protector = Protector::new(system, engine, state_dir);
        let restore = |name: &str, ds: &Dataset, into: &Path| -> Result<(String, i64), String> {
            let snapshot = protector
                .restore(name, site, None, into, crate::protect::RestoreFor::Detached)
                .map_err(|e| format!("copying `{name}` from {site}'s repository: {e}"))?;
            let _ = ds;
            Ok((snapshot.id.chars().take(8).collect(), snapshot.unix))
        };
        let root = sandboxes_dir(state_dir).join(id);
        Self::create_in(system, state_dir, &root, site, id, services, &restore)
    }

    /// [`Sandbox::create`] in folder `root`, each dataset's copy made by `copy` (dataset,
    /// declaration, the folder to fill as a restore would — for SQLite the folder of its
    /// file), which answers the restore point's short id and time: a drill restores it from
    /// the repository, a workspace clones its golden copy.
    pub fn create_in(
        system: &System,
        state_dir: &Path,
        root: &Path,
        site: &str,
        id: &str,
        services: &[String],
        copy: &CopyMaker<'_>,
    ) -> Result<(Sandbox, Vec<Copy>), String> {
        let address = system
            .sites
            .get(site)
            .map(|s| s.address)
            .ok_or_else(|| format!("site `{site}` is not declared"))?;
        let root = root.to_path_buf();
        resurgo_provider::private_dir(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let sandbox = Sandbox {
            id: id.to_string(),
            site: site.to_string(),
            netns: netns_of(id),
            root: root.clone(),
            address,
            services: services.to_vec(),
            copies: Vec::new(),
            state_dir: Some(state_dir.to_path_buf()),
        };
        // The record first: whatever happens next, `destroy` knows what to undo.
        let text = serde_json::to_vec_pretty(&sandbox).map_err(|e| e.to_string())?;
        std::fs::write(Self::record_path(&root), text).map_err(|e| format!("{}: {e}", root.display()))?;
        // A namespace of this name is this sandbox's own, left by an attempt that died.
        if netns_path(&sandbox.netns).exists() {
            ip(&["netns", "del", &sandbox.netns])?;
        }
        ip(&["netns", "add", &sandbox.netns])?;
        ip(&["-n", &sandbox.netns, "link", "set", "lo", "up"])?;
        // The site's own address, inside only: the services listen where they would after a
        // failover, and nothing outside can reach it.
        if !address.is_loopback() {
            let prefix = if address.is_ipv4() { 32 } else { 128 };
            ip(&[
                "-n",
                &sandbox.netns,
                "addr",
                "add",
                &format!("{address}/{prefix}"),
                "dev",
                "lo",
            ])?;
        }
        let provider = sandbox.provider();
        let handle = sandbox.handle();
        provider.set_up(&handle).map_err(|e| e.to_string())?;
        let mut copies = Vec::new();
        for (name, ds) in &system.datasets {
            if !services.contains(&ds.service) {
                continue;
            }
            let svc = &system.services[&ds.service];
            let path = provider
                .data_path(
                    &handle,
                    &ds.service,
                    svc.workdir.as_deref(),
                    ds.path.as_deref().unwrap_or(name),
                )
                .map_err(|e| e.to_string())?;
            let into = match ds.kind {
                DatasetKind::Sqlite => path.parent().map(Path::to_path_buf).unwrap_or_else(|| path.clone()),
                DatasetKind::Directory => path.clone(),
                // A physical copy: its data directory, recovered from WAL fetched into it
                // first, archiving off and no replication (`RestoreFor::Detached`).
                DatasetKind::Postgres if ds.method != Some(resurgo_spec::PgMethod::Logical) => path.clone(),
                DatasetKind::Postgres => {
                    return Err(format!(
                        "dataset `{name}`: a logical dump restores into a running server, which a sandbox does not have yet; use `method: physical` for isolated drills"
                    ))
                }
            };
            let made = if ds.kind == DatasetKind::Postgres {
                into.parent().unwrap_or(&into)
            } else {
                &into
            };
            std::fs::create_dir_all(made).map_err(|e| format!("{}: {e}", made.display()))?;
            let (snapshot, taken_unix) = copy(name, ds, &into)?;
            copies.push(Copy {
                dataset: name.clone(),
                kind: ds.kind,
                snapshot,
                taken_unix,
                path,
            });
        }
        let sandbox = Sandbox {
            copies: copies.clone(),
            ..sandbox
        };
        let text = serde_json::to_vec_pretty(&sandbox).map_err(|e| e.to_string())?;
        std::fs::write(Self::record_path(&root), text).map_err(|e| format!("{}: {e}", root.display()))?;
        sandbox.start(system)?;
        Ok((sandbox, copies))
    }

    /// Runs `f` on a thread inside the sandbox's namespace (only that thread enters it).
    pub fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, String> {
        let ns = std::fs::File::open(netns_path(&self.netns))
            .map_err(|e| format!("the sandbox's namespace {}: {e}", self.netns))?;
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(|e| format!("cannot enter {}: {e}", self.netns))?;
                    Ok(f())
                })
                .join()
                .map_err(|_| "a sandbox probe panicked".to_string())?
        })
    }

    /// Whether every service of the sandbox answers its own health check, asked from inside,
    /// and every PostgreSQL copy takes queries (its recovery is over); the first failure's
    /// detail when not.
    pub fn serving(&self, protector: &Protector, system: &System) -> Result<(), String> {
        for (name, ds) in &system.datasets {
            if ds.kind == DatasetKind::Postgres && self.services.contains(&ds.service) {
                let recovering = self
                    .pg_query(protector, system, name, "SELECT pg_is_in_recovery()")
                    .map_err(|e| format!("`{name}` in the sandbox takes no queries yet: {e}"))?;
                if recovering.trim() != "f" {
                    return Err(format!("`{name}` in the sandbox is still replaying WAL"));
                }
            }
        }
        let checks: Vec<(String, resurgo_spec::HealthCheck)> = self
            .services
            .iter()
            .filter_map(|s| Some((s.clone(), system.services.get(s)?.health.clone()?)))
            .collect();
        let workdir = self.root.clone();
        let address = self.address;
        self.within(move || {
            for (service, check) in &checks {
                let result = resurgo_provider::probe::probe(address, check, &workdir);
                if !result.healthy {
                    return Err(format!("`{service}` in the sandbox: {}", result.detail));
                }
            }
            Ok(())
        })?
    }

    /// Tries each endpoint from inside the sandbox: (what, endpoint, reached, what happened).
    pub fn attempts(&self, endpoints: &[(String, SocketAddr)]) -> Vec<(String, SocketAddr, bool, String)> {
        let endpoints = endpoints.to_vec();
        self.within(move || {
            endpoints
                .into_iter()
                .map(
                    |(what, addr)| match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                        Ok(_) => (what, addr, true, "connected".to_string()),
                        Err(e) => (what, addr, false, e.to_string()),
                    },
                )
                .collect()
        })
        .unwrap_or_else(|e| {
            // Not entered: nothing was proven either way.
            vec![("sandbox".into(), SocketAddr::from(([0, 0, 0, 0], 0)), true, e)]
        })
    }

    /// One statement against the sandbox's copy of PostgreSQL dataset `dataset`, from inside.
    fn pg_query(&self, protector: &Protector, system: &System, dataset: &str, sql: &str) -> Result<String, String> {
        let ds = system
            .datasets
            .get(dataset)
            .ok_or_else(|| format!("dataset `{dataset}` is not declared"))?;
        let mut target = protector.pg_target(dataset, ds).map_err(|e| e.to_string())?;
        target.host = self.address.to_string();
        let sql = sql.to_string();
        self.within(move || resurgo_vault::pg::query(&target, &sql).map_err(|e| e.to_string()))?
    }

    /// The highest canary number the copy holds (0: none), read from the copy itself or, for
    /// PostgreSQL, through its server in the sandbox.
    pub fn recovered(&self, protector: &Protector, system: &System, copy: &Copy) -> Result<u64, String> {
        if copy.kind != DatasetKind::Postgres {
            return crate::drill_probe::recovered_in(copy.kind, &copy.path);
        }
        crate::drill_probe::pg_canary_max(|sql| self.pg_query(protector, system, &copy.dataset, sql))
    }

    /// Checks the copy: SQLite's `integrity_check`, a directory's files read, PostgreSQL's
    /// `pg_amcheck` run against the server in the sandbox (every table and index).
    pub fn check(&self, protector: &Protector, system: &System, copy: &Copy) -> (String, Result<String, String>) {
        if copy.kind != DatasetKind::Postgres {
            return crate::drill_probe::check_copy(copy.kind, &copy.path);
        }
        let Some(ds) = system.datasets.get(&copy.dataset) else {
            return (
                "pg_amcheck".into(),
                Err(format!("dataset `{}` is not declared", copy.dataset)),
            );
        };
        let target = match protector.pg_target(&copy.dataset, ds) {
            Ok(mut t) => {
                t.host = self.address.to_string();
                t
            }
            Err(e) => return ("pg_amcheck".into(), Err(e.to_string())),
        };
        let result = self.within(move || resurgo_vault::pg::amcheck(&target).map_err(|e| e.to_string()));
        ("pg_amcheck".into(), result.and_then(|r| r))
    }

    /// The sandbox recorded under `id`, if any.
    pub fn find(state_dir: &Path, id: &str) -> Option<Sandbox> {
        Self::find_in(&sandboxes_dir(state_dir).join(id))
    }

    /// The sandbox recorded in folder `root`, if any.
    pub fn find_in(root: &Path) -> Option<Sandbox> {
        let text = std::fs::read(Self::record_path(root)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Starts the sandbox's services again (after [`Sandbox::stop`]), as they were declared.
    pub fn start(&self, system: &System) -> Result<(), String> {
        let provider = self.provider();
        let handle = self.handle();
        for config in self.configs(system) {
            provider.start(&handle, &config).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The run configurations of the sandbox's services, as they would run at its site after
    /// a failover.
    fn configs(&self, system: &System) -> Vec<RunConfig> {
        let mut moved = system.clone();
        for name in &self.services {
            if let Some(svc) = moved.services.get_mut(name) {
                svc.site = self.site.clone();
                svc.standby.clear();
            }
        }
        resurgo_plan::desired::desired_state(&moved)
            .get(&self.site)
            .map(|at| self.services.iter().filter_map(|name| at.get(name).cloned()).collect())
            .unwrap_or_default()
    }

    /// The running processes of the sandbox's services now: (service, pid).
    pub fn processes(&self) -> Vec<(String, u32)> {
        let provider = self.provider();
        provider
            .observe(&self.handle())
            .map(|seen| {
                seen.into_iter()
                    .filter_map(|s| match s.process {
                        resurgo_plan::ProcessState::Running { pid, .. } => Some((s.service, pid)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stops one service of the sandbox (its supervisor's stop: SIGTERM, its grace, SIGKILL).
    pub fn stop_service(&self, service: &str) -> Result<(), String> {
        self.provider().stop(&self.handle(), service).map_err(|e| e.to_string())
    }
}

/// A short, stable name part for `id` (namespace names stay readable and short).
/// The network namespace of sandbox `id` (a drill's run id, a workspace's name).
pub fn netns_of(id: &str) -> String {
    format!("resurgo-{}", short(id))
}

fn short(id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    format!("{:012x}", h & 0xffff_ffff_ffff)
}

/// Undoes sandbox `id`, whoever made it and however far it got: its services stopped (every
/// process of its supervisors killed), its namespace deleted, its folder and copies removed.
pub fn destroy(state_dir: &Path, id: &str) -> Result<(), String> {
    destroy_in(&sandboxes_dir(state_dir).join(id))
}

/// [`destroy`] for the sandbox in folder `root`.
pub fn destroy_in(root: &Path) -> Result<(), String> {
    let root = root.to_path_buf();
    let Some(sandbox) = Sandbox::find_in(&root) else {
        // No record: nothing was made (the record comes first), or it is gone already.
        return match std::fs::remove_dir_all(&root) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("{}: {e}", root.display())),
            _ => Ok(()),
        };
    };
    let mut problems = Vec::new();
    let provider = sandbox.provider();
    let handle = sandbox.handle();
    if let Ok(seen) = provider.observe(&handle) {
        for s in seen {
            if let Err(e) = provider.remove(&handle, &s.service) {
                problems.push(format!("cannot stop `{}` in the sandbox: {e}", s.service));
            }
        }
    }
    if netns_path(&sandbox.netns).exists() {
        if let Err(e) = ip(&["netns", "del", &sandbox.netns]) {
            problems.push(e);
        }
    }
    if let Err(e) = std::fs::remove_dir_all(&root) {
        if e.kind() != std::io::ErrorKind::NotFound {
            problems.push(format!("{}: {e}", root.display()));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// What is left of sandbox `id`: (kind, what, place), empty when nothing is.
pub fn leftovers(state_dir: &Path, id: &str, site: &str) -> Vec<(String, String, String)> {
    leftovers_in(&sandboxes_dir(state_dir).join(id), id, site)
}

/// [`leftovers`] of sandbox `id` made in folder `root`.
pub fn leftovers_in(root: &Path, id: &str, site: &str) -> Vec<(String, String, String)> {
    let mut left = Vec::new();
    let netns = netns_of(id);
    if netns_path(&netns).exists() {
        left.push((
            "namespace".into(),
            format!("network namespace {netns}"),
            site.to_string(),
        ));
    }
    if root.exists() {
        left.push((
            "clone".into(),
            format!("sandbox folder {} (copies of the restore point)", root.display()),
            site.to_string(),
        ));
    }
    left
}

/// Makes sandbox `id` at `site` ([`Sandbox::create`]), as the site API answers it.
pub fn make(
    engine: &Engine,
    system: &System,
    state_dir: &Path,
    site: &str,
    id: &str,
    services: &[String],
) -> Result<resurgo_api::types::SandboxMade, String> {
    let (sandbox, copies) = Sandbox::create(engine, system, state_dir, site, id, services)?;
    Ok(resurgo_api::types::SandboxMade {
        netns: sandbox.netns,
        copies: copies
            .into_iter()
            .map(|c| resurgo_api::types::SandboxCopy {
                dataset: c.dataset,
                kind: crate::drill_probe::kind_name(c.kind).into(),
                snapshot: c.snapshot,
                taken_unix: c.taken_unix,
            })
            .collect(),
    })
}

/// Sandbox `id` at `site` now: whether it serves (asked from inside), and what of it exists.
pub fn state(
    engine: &Engine,
    system: &System,
    state_dir: &Path,
    site: &str,
    id: &str,
) -> resurgo_api::types::SandboxState {
    let leftovers = leftovers(state_dir, id, site)
        .into_iter()
        .map(|(kind, what, place)| resurgo_api::types::SandboxLeftover { kind, what, place })
        .collect();
    let serving = match Sandbox::find(state_dir, id) {
        Some(sandbox) => sandbox.serving(&Protector::new(system, engine, state_dir), system),
        None => Err(format!("no sandbox {id} here")),
    };
    resurgo_api::types::SandboxState {
        serving: serving.is_ok(),
        detail: serving.err(),
        leftovers,
    }
}

/// Tries `endpoints` from inside sandbox `id` and reads and checks its copies.
pub fn check(
    engine: &Engine,
    system: &System,
    state_dir: &Path,
    id: &str,
    endpoints: &[resurgo_api::types::Endpoint],
) -> Result<resurgo_api::types::SandboxChecked, String> {
    let sandbox = Sandbox::find(state_dir, id).ok_or_else(|| format!("no sandbox {id} here"))?;
    let addresses: Vec<(String, SocketAddr)> = endpoints
        .iter()
        .filter_map(|e| Some((e.what.clone(), e.address.parse().ok()?)))
        .collect();
    let attempts = sandbox
        .attempts(&addresses)
        .into_iter()
        .map(|(what, to, reached, detail)| resurgo_api::types::SandboxAttempt {
            what,
            address: to.to_string(),
            reached,
            detail,
        })
        .collect();
    let protector = Protector::new(system, engine, state_dir);
    let copies = sandbox
        .copies
        .iter()
        .map(|copy| {
            let recovered = sandbox.recovered(&protector, system, copy);
            let (method, checked) = sandbox.check(&protector, system, copy);
            resurgo_api::types::SandboxCopyCheck {
                dataset: copy.dataset.clone(),
                recovered: recovered.as_ref().ok().copied(),
                recovered_error: recovered.err(),
                method,
                passed: checked.is_ok(),
                detail: checked.unwrap_or_else(|e| e),
            }
        })
        .collect();
    Ok(resurgo_api::types::SandboxChecked { attempts, copies })
}
