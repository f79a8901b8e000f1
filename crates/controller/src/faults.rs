//! A drill's faults, applied at the site they hit by code that runs at that site: the drill's
//! runner in-process on one machine ([`InProcess`]), or the site's agent (`POST /v1/faults`).
//!
//! Injected faults that outlive their injector are the worst failure of chaos tools, so every
//! order is bounded in time and written down before it is applied: `apply` writes the order
//! and exactly what it is about to do under the site's state
//! (`<state>/faults/<site>/<id>.json`, a 0700 folder, fsynced), then does it; `revert` undoes
//! what the record says and removes it — whoever calls it, after a restart too. Past the
//! order's `until` the site reverts it by itself ([`revert_expired`], every agent tick and
//! when an agent starts; the controller's loop does it where no agent runs): a dead man's
//! switch, so a drill whose process died, or which cannot reach the site, leaves nothing
//! behind for long.
//!
//! The kinds, as this site applies them:
//! - `kill: svc` — the service's processes are SIGKILLed here, where it is active. Nothing to
//!   undo: what restarts crashed services (the controller, the agent serving its group)
//!   restarts it.
//! - `stop_site: s` — the site goes dark as a lost host would. With an agent (the order came
//!   through the site API), the agent stops answering heartbeats and renewing its leases, and
//!   its daemon changes nothing here, then every service here is killed: the site fences
//!   itself, the witness loses it, and another site's agent fails over — with no command. The
//!   site API keeps answering, so the drill can revert it. The runner in-process on one
//!   machine disconnects the site through its provider instead (its state out of reach, its
//!   services killed), which is how an in-process agent loses its site. Undone: the agent
//!   answers and renews again (or the site is reconnected), and the agent's usual logic makes
//!   it rejoin as a standby if the group moved meanwhile.
//! - `isolate_site: s`, `cut_link: [a, b]`, `degrade_link` — Linux traffic control (`tc`,
//!   iproute2; `tc` needs CAP_NET_ADMIN). On the device that routes to each peer (`ip route
//!   get`), a root HTB qdisc of resurgo's own (handle `d700:`; unclassified traffic passes
//!   unshaped) whose class `d700:1` drops everything steered into it (a `pfifo` of length 0:
//!   neither the `prio` qdisc nor the gact `drop` action is in every kernel), and one `u32`
//!   filter per peer steering the traffic to it there — or, for a degraded link, into a class
//!   of its own whose leaf is `netem delay … loss …%`. Egress only, so each end applies its
//!   half: a link's order goes to both of its sites. A peer reached through `lo` (every site
//!   on one machine) is matched by source and destination address, so that only that pair is
//!   cut — which also means a process there that does not send from its site's address is
//!   not cut. Established connections are not reset: their packets are dropped, as on a
//!   broken network. `isolate_site` drops the traffic to every other site, the witness and
//!   the coordination store's members' hosts; `cut_link` only between its two sites. Revert
//!   removes the filters (and a degraded link's class) the record names, and the root qdisc
//!   once no filter of resurgo's is left under it; a root qdisc that is not resurgo's is
//!   never replaced (the fault is refused).

use resurgo_api::types::{Endpoint, SandboxChecked, SandboxMade, SandboxState};
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use nix::fcntl::{Flock, FlockArg};
use resurgo_api::types::{FaultInForce, FaultOrder};
use resurgo_provider::Provider;
use resurgo_spec::{Fault, System};
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::events::{Event, EventKind, EventLog};

/// How long after its drill's deadline an order stays in force at most: the drill reverts its
/// faults first thing in its teardown, which begins at the deadline at the latest.
pub const UNTIL_MARGIN: Duration = Duration::from_secs(15);

/// The longest an order may be in force: a fault is bounded in time, and not by much.
const LONGEST: Duration = Duration::from_secs(24 * 3600);

/// resurgo's root qdisc on a device (`d700:`); class `d700:N`'s leaf qdisc is `d700+N:`.
const ROOT: u32 = 0xd700;
/// The class whose leaf drops everything.
const DROP: u32 = 1;
/// The rate of resurgo's classes: none of them is meant to shape anything.
const RATE: &str = "10gbit";

/// The id of fault `index` of drill run `run`.
pub fn order_id(run: &str, index: usize) -> String {
    format!("{run}-{index}")
}

/// Whether order `id` is one of drill run `run`'s.
pub fn of_run(id: &str, run: &str) -> bool {
    id.strip_prefix(run)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|index| index.parse::<usize>().is_ok())
}

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// The fault is not this site's to apply: ask the site it names.
    #[error("{0}")]
    NotHere(String),
    /// The order itself is wrong (its id, its `until`).
    #[error("{0}")]
    Bad(String),
    /// Its record cannot be written or read: nothing was applied.
    #[error("fault record {path}: {reason}")]
    Record { path: String, reason: String },
    /// Applying or reverting failed. A failed apply undid what it had done; a failed revert
    /// keeps the record, so that it is tried again (by the drill, or at the order's `until`).
    #[error("{0}")]
    Failed(String),
}

/// The site where faults are applied, and what is needed to act on it: its name, the spec
/// with the primary assignments applied (where services are active now), the engine, the
/// state folder, and — when the site's agent applies them — the agent's switch.
pub struct FaultSite<'a> {
    pub site: &'a str,
    pub system: &'a System,
    pub engine: &'a Engine,
    pub state_dir: &'a Path,
    /// The agent's switch (true: it answers heartbeats and renews its leases), which a
    /// `stop_site` order turns off; `None` for the runner in-process, which disconnects the
    /// site through its provider instead.
    pub answering: Option<&'a AtomicBool>,
}

/// One thing done for an order, recorded before it is done, so that exactly it is undone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Done {
    /// The service's processes were killed (nothing to undo).
    Killed { service: String },
    /// The site was disconnected through its provider (undo: reconnect it).
    Disconnected,
    /// The agent stopped answering heartbeats and renewing leases (undo: it resumes).
    Silenced,
    /// A `u32` filter under resurgo's root qdisc on `device`, at priority `pref`, steering
    /// the traffic to `peer` (from `source`, when matched) into class `class`: the drop class,
    /// or a class of its own with a `netem` leaf.
    Filter {
        device: String,
        pref: u32,
        peer: IpAddr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<IpAddr>,
        class: u32,
        /// The `netem` arguments of a degraded link's class (`delay 200ms loss 5%`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        netem: Option<String>,
    },
}

impl Done {
    /// For people.
    fn describe(&self) -> String {
        match self {
            Done::Killed { service } => format!("service `{service}` killed"),
            Done::Disconnected => "the site disconnected (its state out of reach, its services killed)".into(),
            Done::Silenced => "the agent silenced (no heartbeats answered, no lease renewed)".into(),
            Done::Filter {
                device,
                peer,
                source,
                netem,
                ..
            } => {
                let what = match netem {
                    Some(n) => format!("{n} on the traffic"),
                    None => "drop the traffic".into(),
                };
                let from = source.map(|s| format!(" from {s}")).unwrap_or_default();
                format!("tc on {device}: {what}{from} to {peer}")
            }
        }
    }
}

/// An order as the site keeps it while it is in force.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    order: FaultOrder,
    site: String,
    /// When it was applied (seconds since the Unix epoch).
    applied_unix: f64,
    done: Vec<Done>,
}

impl Record {
    fn in_force(&self) -> FaultInForce {
        FaultInForce {
            site: self.site.clone(),
            order: self.order.clone(),
            done: self.done.iter().map(Done::describe).collect(),
        }
    }
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn faults_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("faults")
}

fn site_dir(state_dir: &Path, site: &str) -> PathBuf {
    faults_dir(state_dir).join(site)
}

/// The sites an order for `fault` goes to: where the service is active (a kill), the site (a
/// site's loss or isolation), or both ends of a link.
pub fn sites_of(fault: &Fault, system: &System) -> Vec<String> {
    match fault {
        Fault::Kill(service) => system
            .services
            .get(service)
            .map(|s| s.site.clone())
            .into_iter()
            .collect(),
        Fault::StopSite(site) | Fault::IsolateSite(site) => vec![site.clone()],
        Fault::CutLink(link) => link.clone(),
        Fault::DegradeLink(d) => d.between.clone(),
    }
}

/// Why `fault` is not `site`'s to apply, if it is not.
fn refusal(fault: &Fault, site: &str, system: &System) -> Option<String> {
    if !system.sites.contains_key(site) {
        return Some(format!("`{site}` is not a site of the spec"));
    }
    let mine = sites_of(fault, system).iter().any(|s| s == site);
    (!mine).then(|| match fault {
        Fault::Kill(service) => match system.services.get(service) {
            Some(s) => format!(
                "service `{service}` is active at `{}`, not here at `{site}`: send the order to `{}`",
                s.site, s.site
            ),
            None => format!("service `{service}` is not declared"),
        },
        _ => format!(
            "fault {} {} is not `{site}`'s to apply: send it to {}",
            fault.kind(),
            fault.target(),
            sites_of(fault, system).join(" and ")
        ),
    })
}

/// Holds the lock under which faults are applied and reverted at this state folder (one at a
/// time: they share the devices' root qdiscs). The kernel drops it with the process.
fn lock(state_dir: &Path) -> Result<Flock<std::fs::File>, FaultError> {
    let dir = faults_dir(state_dir);
    let fail = |e: std::io::Error| FaultError::Record {
        path: dir.display().to_string(),
        reason: e.to_string(),
    };
    resurgo_provider::private_dir(&dir).map_err(fail)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .map_err(fail)?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| fail(e.into()))
}

fn record_path(state_dir: &Path, site: &str, id: &str) -> PathBuf {
    site_dir(state_dir, site).join(format!("{id}.json"))
}

/// The records of the orders in force at `site`, oldest first.
fn records(state_dir: &Path, site: &str) -> Result<Vec<Record>, FaultError> {
    let dir = site_dir(state_dir, site);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(FaultError::Record {
                path: dir.display().to_string(),
                reason: e.to_string(),
            })
        }
    };
    let mut all = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let record = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Record>(&b).map_err(|e| e.to_string()))
            .map_err(|reason| FaultError::Record {
                path: path.display().to_string(),
                reason: format!("{reason} (remove it once what it did is undone by hand)"),
            })?;
        all.push(record);
    }
    all.sort_by(|a, b| a.applied_unix.total_cmp(&b.applied_unix));
    Ok(all)
}

fn read_record(state_dir: &Path, site: &str, id: &str) -> Result<Option<Record>, FaultError> {
    let path = record_path(state_dir, site, id);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| FaultError::Record {
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FaultError::Record {
            path: path.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

/// Writes the record durably: the file (fsynced, renamed into place) and its folder.
fn write_record(state_dir: &Path, record: &Record) -> Result<(), FaultError> {
    let dir = site_dir(state_dir, &record.site);
    let path = record_path(state_dir, &record.site, &record.order.id);
    let fail = |e: std::io::Error| FaultError::Record {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    resurgo_provider::private_dir(&dir).map_err(fail)?;
    resurgo_provider::write_json_atomic(&path, record).map_err(fail)?;
    std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(fail)
}

fn remove_record(state_dir: &Path, site: &str, id: &str) -> Result<(), FaultError> {
    let path = record_path(state_dir, site, id);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(FaultError::Record {
            path: path.display().to_string(),
            reason: e.to_string(),
        }),
        _ => {
            let _ = std::fs::File::open(site_dir(state_dir, site)).and_then(|d| d.sync_all());
            Ok(())
        }
    }
}

/// A name's characters only: the id names a file.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Applies `order` at `at.site`: writes it down (with what it is about to do), then does it.
/// The same id again changes nothing and answers what is in force. A fault that is not this
/// site's is refused ([`FaultError::NotHere`]); one that fails half-way is undone.
pub fn apply(at: &FaultSite, order: &FaultOrder) -> Result<FaultInForce, FaultError> {
    if !valid_id(&order.id) {
        return Err(FaultError::Bad(format!(
            "fault id `{}`: letters, digits, `-`, `_` and `.` only",
            order.id
        )));
    }
    let now = now_unix();
    let ahead = order.until_unix - now;
    if ahead.is_nan() || ahead <= 0.0 || ahead > LONGEST.as_secs_f64() {
        return Err(FaultError::Bad(format!(
            "fault `{}`: `until_unix` must be in the future and within {} h (it is {:.0} s from now)",
            order.id,
            LONGEST.as_secs() / 3600,
            order.until_unix - now
        )));
    }
    let _lock = lock(at.state_dir)?;
    if let Some(record) = read_record(at.state_dir, at.site, &order.id)? {
        return Ok(record.in_force());
    }
    if let Some(why) = refusal(&order.fault, at.site, at.system) {
        return Err(FaultError::NotHere(why));
    }
    let done = plan(at, &order.fault)?;
    let record = Record {
        order: order.clone(),
        site: at.site.to_string(),
        applied_unix: now,
        done,
    };
    write_record(at.state_dir, &record)?;
    let mut failure = None;
    for step in &record.done {
        if let Err(e) = carry_out(at, step, &order.fault) {
            failure = Some(e);
            break;
        }
    }
    if let Some(e) = failure {
        let undone = undo_all(at, &record);
        let _ = remove_record(at.state_dir, at.site, &order.id);
        let also = undone.err().map(|u| format!("; undoing it: {u}")).unwrap_or_default();
        return Err(FaultError::Failed(format!(
            "fault {} {} at `{}`: {e}{also}",
            order.fault.kind(),
            order.fault.target(),
            at.site
        )));
    }
    let in_force = record.in_force();
    emit(
        at,
        EventKind::FaultApplied,
        format!(
            "drill fault {} {} ({}), in force until {}: {}",
            order.fault.kind(),
            order.fault.target(),
            order.id,
            rfc3339(order.until_unix),
            in_force.done.join("; ")
        ),
    );
    Ok(in_force)
}

/// Reverts order `id` at `at.site`: undoes what its record says, newest first, then removes
/// the record. Whether it was in force (an order reverted already, or never applied here, is
/// no error).
pub fn revert(at: &FaultSite, id: &str) -> Result<bool, FaultError> {
    revert_as(at, id, EventKind::FaultReverted)
}

fn revert_as(at: &FaultSite, id: &str, kind: EventKind) -> Result<bool, FaultError> {
    if !valid_id(id) {
        return Err(FaultError::Bad(format!(
            "fault id `{id}`: letters, digits, `-`, `_` and `.` only"
        )));
    }
    let _lock = lock(at.state_dir)?;
    let Some(record) = read_record(at.state_dir, at.site, id)? else {
        return Ok(false);
    };
    undo_all(at, &record).map_err(|e| {
        FaultError::Failed(format!(
            "reverting fault {} {} ({id}) at `{}`: {e}; its record stays, and it is tried again at its `until` ({})",
            record.order.fault.kind(),
            record.order.fault.target(),
            at.site,
            rfc3339(record.order.until_unix)
        ))
    })?;
    remove_record(at.state_dir, at.site, id)?;
    let why = match kind {
        EventKind::FaultExpired => format!(
            "its `until` ({}) passed and no drill had reverted it: reverted by the site itself",
            rfc3339(record.order.until_unix)
        ),
        _ => "reverted".to_string(),
    };
    emit(
        at,
        kind,
        format!(
            "drill fault {} {} ({id}): {why}",
            record.order.fault.kind(),
            record.order.fault.target()
        ),
    );
    Ok(true)
}

/// The orders in force at `site`, oldest first.
pub fn in_force(state_dir: &Path, site: &str) -> Result<Vec<FaultInForce>, FaultError> {
    Ok(records(state_dir, site)?.iter().map(Record::in_force).collect())
}

/// Reverts every order in force at `at.site` whose `until` has passed: the dead man's switch.
/// Each one reverted, and each that could not be, with why.
pub fn revert_expired(at: &FaultSite) -> Vec<(FaultInForce, Result<(), FaultError>)> {
    let Ok(all) = records(at.state_dir, at.site) else {
        return Vec::new();
    };
    let now = now_unix();
    all.into_iter()
        .filter(|r| r.order.until_unix <= now)
        .map(|r| {
            let result = revert_as(at, &r.order.id, EventKind::FaultExpired).map(drop);
            (r.in_force(), result)
        })
        .collect()
}

/// Whether a `stop_site` order for `site` is in force: the site is dark, its agent answers no
/// heartbeat and renews no lease, its daemon changes nothing.
pub fn dark(state_dir: &Path, site: &str) -> bool {
    records(state_dir, site).is_ok_and(|all| {
        all.iter()
            .any(|r| matches!(&r.order.fault, Fault::StopSite(s) if s == site))
    })
}

fn emit(at: &FaultSite, kind: EventKind, message: String) {
    let event = Event::new(kind, message).site(at.site);
    event.log(false);
    let _ = EventLog::of_state(at.state_dir).append(&event);
}

fn rfc3339(unix: f64) -> String {
    crate::events::format_rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(unix.max(0.0)))
}

/// What applying `fault` at `at.site` will do, step by step.
fn plan(at: &FaultSite, fault: &Fault) -> Result<Vec<Done>, FaultError> {
    match fault {
        Fault::Kill(service) => Ok(vec![Done::Killed {
            service: service.clone(),
        }]),
        Fault::StopSite(_) if at.answering.is_none() => Ok(vec![Done::Disconnected]),
        Fault::StopSite(_) => {
            // Silenced first: nothing here restarts what is killed next.
            let mut done = vec![Done::Silenced];
            let handle = handle(at)?;
            let seen = at
                .engine
                .provider
                .observe(&handle)
                .map_err(|e| FaultError::Failed(format!("site `{}` cannot be observed: {e}", at.site)))?;
            done.extend(
                seen.into_iter()
                    .filter(|s| s.process.is_running())
                    .map(|s| Done::Killed { service: s.service }),
            );
            Ok(done)
        }
        Fault::IsolateSite(_) | Fault::CutLink(_) | Fault::DegradeLink(_) => {
            let netem = match fault {
                Fault::DegradeLink(d) => Some(netem_args(d.latency.map(|l| l.0), d.loss)),
                _ => None,
            };
            let own = at
                .system
                .sites
                .get(at.site)
                .map(|s| s.address)
                .ok_or_else(|| FaultError::NotHere(format!("`{}` is not a site of the spec", at.site)))?;
            let peers = peers(fault, at.site, at.system);
            if peers.is_empty() {
                return Err(FaultError::Failed(format!(
                    "fault {} {}: no peer address to cut `{}` from",
                    fault.kind(),
                    fault.target(),
                    at.site
                )));
            }
            plan_filters(&Tc::System, own, &peers, netem.as_deref()).map_err(FaultError::Failed)
        }
    }
}

fn handle(at: &FaultSite) -> Result<resurgo_provider::SiteHandle, FaultError> {
    at.engine
        .site(at.system, at.site)
        .ok_or_else(|| FaultError::NotHere(format!("`{}` is not a site of the spec", at.site)))
}

/// `netem`'s arguments for a degraded link: `delay 200ms loss 5%`.
fn netem_args(latency: Option<Duration>, loss: Option<f64>) -> String {
    let mut args = Vec::new();
    if let Some(l) = latency {
        args.push(format!("delay {}us", l.as_micros()));
    }
    if let Some(loss) = loss {
        args.push(format!("loss {loss}%"));
    }
    if args.is_empty() {
        // Nothing asked for: a degradation of nothing still goes through netem.
        args.push("delay 0us".into());
    }
    args.join(" ")
}

/// The addresses `site` must not reach under `fault`: the other end of a link; for an
/// isolation every other site, the witness and the coordination store's members' hosts.
/// Never the site's own address.
fn peers(fault: &Fault, site: &str, system: &System) -> Vec<IpAddr> {
    let own = system.sites.get(site).map(|s| s.address);
    let mut out: Vec<IpAddr> = Vec::new();
    let other_end = |link: &[String]| -> Vec<IpAddr> {
        link.iter()
            .filter(|s| *s != site)
            .filter_map(|s| system.sites.get(s).map(|x| x.address))
            .collect()
    };
    match fault {
        Fault::CutLink(link) => out.extend(other_end(link)),
        Fault::DegradeLink(d) => out.extend(other_end(&d.between)),
        Fault::IsolateSite(_) => {
            out.extend(
                system
                    .sites
                    .iter()
                    .filter(|(name, _)| *name != site)
                    .map(|(_, s)| s.address),
            );
            out.extend(system.failover.witness.map(|w| w.ip()));
            let endpoints = system
                .failover
                .coordination
                .as_ref()
                .and_then(|c| c.etcd.as_ref())
                .map(|e| e.endpoints.clone())
                .unwrap_or_default();
            for endpoint in endpoints {
                out.extend(endpoint_hosts(&endpoint));
            }
        }
        Fault::Kill(_) | Fault::StopSite(_) => {}
    }
    let mut unique = Vec::new();
    for ip in out {
        if Some(ip) != own && !unique.contains(&ip) {
            unique.push(ip);
        }
    }
    unique
}

/// The addresses of an etcd endpoint's host (`http://host:2379`), resolved if it is a name.
fn endpoint_hosts(endpoint: &str) -> Vec<IpAddr> {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, p)) => (h, p.trim_start_matches(':')),
            None => (v6, ""),
        },
        None => authority.rsplit_once(':').unwrap_or((authority, "")),
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![ip];
    }
    let port: u16 = port.parse().unwrap_or(2379);
    (host, port)
        .to_socket_addrs()
        .map(|a| a.map(|s| s.ip()).collect())
        .unwrap_or_default()
}

/// Does one step of an order for `fault`.
fn carry_out(at: &FaultSite, step: &Done, fault: &Fault) -> Result<(), String> {
    match step {
        Done::Killed { service } => {
            let handle = handle(at).map_err(|e| e.to_string())?;
            let killed = at.engine.provider.kill(&handle, service).map_err(|e| e.to_string());
            // A lost site's services die with it: one that ended meanwhile is no failure.
            match fault {
                Fault::StopSite(_) => Ok(()),
                _ => killed,
            }
        }
        Done::Disconnected => {
            let handle = handle(at).map_err(|e| e.to_string())?;
            at.engine.provider.disconnect(&handle).map_err(|e| e.to_string())
        }
        Done::Silenced => {
            if let Some(switch) = at.answering {
                switch.store(false, Ordering::Relaxed);
            }
            Ok(())
        }
        Done::Filter { .. } => add_filter(&Tc::System, step),
    }
}

/// Undoes a step. Undoing what is not there is no error.
fn undo(at: &FaultSite, step: &Done) -> Result<(), String> {
    match step {
        Done::Killed { .. } => Ok(()),
        Done::Disconnected => {
            let handle = handle(at).map_err(|e| e.to_string())?;
            at.engine
                .provider
                .reconnect(&handle)
                .map(drop)
                .map_err(|e| e.to_string())
        }
        Done::Silenced => {
            // The agent resumes at once; its next tick agrees (no stop_site order left).
            if let Some(switch) = at.answering {
                switch.store(true, Ordering::Relaxed);
            }
            Ok(())
        }
        Done::Filter { .. } => remove_filter(&Tc::System, step),
    }
}

/// Undoes every step of `record`, newest first; the first error after trying them all.
fn undo_all(at: &FaultSite, record: &Record) -> Result<(), String> {
    let mut errors = Vec::new();
    // The silencing is undone last: the site answers again only once everything else is back.
    let (silence, rest): (Vec<&Done>, Vec<&Done>) = record.done.iter().partition(|d| **d == Done::Silenced);
    for step in rest.into_iter().rev().chain(silence) {
        if let Err(e) = undo(at, step) {
            errors.push(e);
        }
    }
    match errors.is_empty() {
        true => Ok(()),
        false => Err(errors.join("; ")),
    }
}

/// How `tc` and `ip` are run: the system's, or (in tests) a recording of what would run.
enum Tc {
    System,
    #[cfg(test)]
    Fake(std::sync::Mutex<FakeNet>),
}

#[cfg(test)]
#[derive(Default)]
struct FakeNet {
    /// `ip route get` answers: address → device.
    routes: std::collections::BTreeMap<IpAddr, String>,
    /// What `tc … show` answers, by the arguments after `tc`.
    shows: std::collections::BTreeMap<String, String>,
    /// The commands that changed something.
    ran: Vec<String>,
}

impl Tc {
    /// Runs `program args`; its stdout, or why it failed.
    fn run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        match self {
            Tc::System => {
                let out = Command::new(program)
                    .args(args)
                    .output()
                    .map_err(|e| format!("cannot run `{program}` (iproute2, for network faults): {e}"))?;
                if out.status.success() {
                    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
                } else {
                    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
                    let hint = if err.contains("Operation not permitted") {
                        " (network faults need root or CAP_NET_ADMIN)"
                    } else if err.contains("qdisc kind is unknown") && args.contains(&"netem") {
                        " (this kernel has no netem qdisc, sch_netem: a link cannot be degraded here)"
                    } else {
                        ""
                    };
                    Err(format!("`{program} {}`: {err}{hint}", args.join(" ")))
                }
            }
            #[cfg(test)]
            Tc::Fake(net) => {
                let mut net = net.lock().unwrap();
                let line = args.join(" ");
                if program == "ip" {
                    let addr: IpAddr = args.last().unwrap().parse().unwrap();
                    return net
                        .routes
                        .get(&addr)
                        .map(|dev| format!("{addr} dev {dev} src 10.0.0.1 uid 0\n    cache\n"))
                        .ok_or_else(|| "no route".to_string());
                }
                if args.contains(&"show") {
                    return Ok(net.shows.get(&line).cloned().unwrap_or_default());
                }
                net.ran.push(format!("tc {line}"));
                Ok(String::new())
            }
        }
    }

    fn tc(&self, args: &[&str]) -> Result<String, String> {
        self.run("tc", args)
    }

    /// The device traffic to `peer` leaves by.
    fn device_to(&self, peer: IpAddr) -> Result<String, String> {
        let out = self.run("ip", &["route", "get", &peer.to_string()])?;
        let mut words = out.split_whitespace();
        while let Some(w) = words.next() {
            if w == "dev" {
                if let Some(dev) = words.next() {
                    return Ok(dev.to_string());
                }
            }
        }
        Err(format!("`ip route get {peer}` names no device: {}", out.trim()))
    }

    /// The root qdisc of `device`: its kind and handle (`htb`, `d700:`).
    fn root(&self, device: &str) -> Result<Option<(String, String)>, String> {
        let out = self.tc(&["qdisc", "show", "dev", device, "root"])?;
        Ok(out.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("qdisc"))
                .then(|| (w.next().unwrap_or("").to_string(), w.next().unwrap_or("").to_string()))
        }))
    }

    /// The priorities of the filters under resurgo's root qdisc on `device`.
    fn prefs(&self, device: &str) -> Vec<u32> {
        let out = self
            .tc(&["filter", "show", "dev", device, "parent", &handle_of(ROOT)])
            .unwrap_or_default();
        let mut prefs: Vec<u32> = out
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                while let Some(x) = w.next() {
                    if x == "pref" {
                        return w.next()?.parse().ok();
                    }
                }
                None
            })
            .collect();
        prefs.sort_unstable();
        prefs.dedup();
        prefs
    }

    /// The minor numbers of the classes under resurgo's root qdisc on `device`.
    fn classes(&self, device: &str) -> Vec<u32> {
        let out = self.tc(&["class", "show", "dev", device]).unwrap_or_default();
        let prefix = format!("{:x}:", ROOT);
        out.lines()
            .filter_map(|l| {
                let id = l.split_whitespace().nth(2)?;
                u32::from_str_radix(id.strip_prefix(&prefix)?, 16).ok()
            })
            .collect()
    }
}

/// `d700:` for a qdisc handle.
fn handle_of(major: u32) -> String {
    format!("{major:x}:")
}

/// `d700:N` for class N of resurgo's root qdisc.
fn class_of(minor: u32) -> String {
    format!("{ROOT:x}:{minor:x}")
}

/// The filters cutting (or, with `netem`, degrading) the traffic from `own` to each of
/// `peers`: on the device that routes to it, at a priority free there, into the drop class or
/// a class of its own. A peer through `lo` is matched by source too.
fn plan_filters(tc: &Tc, own: IpAddr, peers: &[IpAddr], netem: Option<&str>) -> Result<Vec<Done>, String> {
    let mut done: Vec<Done> = Vec::new();
    for peer in peers {
        let device = tc.device_to(*peer)?;
        if let Some((kind, handle)) = tc.root(&device)? {
            if handle != handle_of(ROOT) && handle != "0:" {
                return Err(format!(
                    "device {device} has a root qdisc of its own ({kind} {handle}): resurgo does not replace it; remove it, or cut this link another way"
                ));
            }
        }
        let planned = |f: &dyn Fn(&Done) -> Option<u32>| -> Vec<u32> { done.iter().filter_map(f).collect() };
        let same_device = |d: &Done| match d {
            Done::Filter { device: x, .. } => *x == device,
            _ => false,
        };
        let mut taken = tc.prefs(&device);
        taken.extend(planned(&|d| match d {
            Done::Filter { pref, .. } if same_device(d) => Some(*pref),
            _ => None,
        }));
        let pref = (100..).find(|p| !taken.contains(p)).unwrap_or(100);
        let class = match netem {
            None => DROP,
            Some(_) => {
                let mut used = tc.classes(&device);
                used.extend(planned(&|d| match d {
                    Done::Filter { class, .. } if same_device(d) => Some(*class),
                    _ => None,
                }));
                (DROP + 1..0x100)
                    .find(|c| !used.contains(c))
                    .ok_or_else(|| format!("device {device}: no class left for another degraded link"))?
            }
        };
        let source = (device == "lo").then_some(own);
        done.push(Done::Filter {
            device,
            pref,
            peer: *peer,
            source,
            class,
            netem: netem.map(str::to_string),
        });
    }
    Ok(done)
}

/// Adds one filter (and what it needs: the root qdisc, its class).
fn add_filter(tc: &Tc, step: &Done) -> Result<(), String> {
    let Done::Filter {
        device,
        pref,
        peer,
        source,
        class,
        netem,
    } = step
    else {
        return Ok(());
    };
    let root = handle_of(ROOT);
    match tc.root(device)? {
        Some((_, h)) if h == root => {}
        Some((kind, h)) if h != "0:" => {
            return Err(format!(
                "device {device} has a root qdisc of its own ({kind} {h}): resurgo does not replace it"
            ))
        }
        // The device's default qdisc: resurgo's takes its place (unclassified traffic passes
        // through HTB's direct queue, unshaped).
        _ => {
            tc.tc(&["qdisc", "add", "dev", device, "root", "handle", &root, "htb"])?;
        }
    }
    if !tc.classes(device).contains(class) {
        let id = class_of(*class);
        tc.tc(&[
            "class", "add", "dev", device, "parent", &root, "classid", &id, "htb", "rate", RATE,
        ])?;
        let leaf = handle_of(ROOT + class);
        let mut args = vec!["qdisc", "add", "dev", device, "parent", &id, "handle", &leaf];
        let netem_args: Vec<&str>;
        match netem {
            Some(n) => {
                netem_args = n.split_whitespace().collect();
                args.push("netem");
                args.extend(netem_args.iter().copied());
            }
            // A queue of length 0: every packet steered here is dropped.
            None => args.extend(["pfifo", "limit", "0"]),
        }
        tc.tc(&args)?;
    }
    let (protocol, word, bits) = match peer {
        IpAddr::V4(_) => ("ip", "ip", 32),
        IpAddr::V6(_) => ("ipv6", "ip6", 128),
    };
    let pref = pref.to_string();
    let mut args: Vec<String> = [
        "filter", "add", "dev", device, "parent", &root, "protocol", protocol, "pref", &pref, "u32",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(src) = source {
        args.extend(["match".into(), word.into(), "src".into(), format!("{src}/{bits}")]);
    }
    args.extend([
        "match".into(),
        word.into(),
        "dst".into(),
        format!("{peer}/{bits}"),
        "classid".into(),
        class_of(*class),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    tc.tc(&args).map(drop)
}

/// Removes one filter (and its own class), then resurgo's root qdisc once no filter of
/// resurgo's is left under it.
fn remove_filter(tc: &Tc, step: &Done) -> Result<(), String> {
    let Done::Filter {
        device, pref, class, ..
    } = step
    else {
        return Ok(());
    };
    let root = handle_of(ROOT);
    let ours = matches!(tc.root(device), Ok(Some((_, h))) if h == root);
    if !ours {
        // Gone already (reverted, or the device was reset): nothing of it is left.
        return Ok(());
    }
    if tc.prefs(device).contains(pref) {
        tc.tc(&[
            "filter",
            "del",
            "dev",
            device,
            "parent",
            &root,
            "pref",
            &pref.to_string(),
        ])?;
    }
    if *class != DROP && tc.classes(device).contains(class) {
        tc.tc(&["class", "del", "dev", device, "classid", &class_of(*class)])?;
    }
    if tc.prefs(device).is_empty() {
        tc.tc(&["qdisc", "del", "dev", device, "root"])?;
    }
    Ok(())
}

/// How a drill reaches the sites: applies and reverts its faults where they go, asks which are
/// in force, and sees what runs at a site. [`InProcess`] on one machine; through each site's
/// agent when the sites are on hosts of their own (the CLI's).
pub trait FaultSink {
    /// Applies `order` at `site` (`system`: the spec with the assignments applied).
    fn apply(&self, system: &System, site: &str, order: &FaultOrder) -> Result<FaultInForce, String>;
    /// Reverts order `id` at `site`; whether it was in force there.
    fn revert(&self, system: &System, site: &str, id: &str) -> Result<bool, String>;
    /// The orders in force at `site`.
    fn in_force(&self, site: &str) -> Result<Vec<FaultInForce>, String>;
    /// What runs at `site` now, or why it cannot be observed.
    fn observe(&self, system: &System, site: &str) -> Result<Vec<Seen>, String>;
    /// Whether the sites are on other hosts: what needs a site's files (a SQLite or directory
    /// canary, a route listening on a loopback address) cannot be reached from here.
    fn across_hosts(&self) -> bool;
    /// Makes sandbox `id` at `site` for `services` ([`crate::sandbox`]), by that site.
    fn make_sandbox(&self, system: &System, site: &str, id: &str, services: &[String]) -> Result<SandboxMade, String>;
    /// Whether sandbox `id` at `site` serves, and what of it exists.
    fn sandbox(&self, system: &System, site: &str, id: &str) -> Result<SandboxState, String>;
    /// Tries `endpoints` from inside sandbox `id` at `site`; reads and checks its copies.
    fn check_sandbox(
        &self,
        system: &System,
        site: &str,
        id: &str,
        endpoints: &[Endpoint],
    ) -> Result<SandboxChecked, String>;
    /// Destroys sandbox `id` at `site`; what is left of it.
    fn destroy_sandbox(&self, system: &System, site: &str, id: &str) -> Result<SandboxState, String>;
}

/// A service (or standby instance) seen at a site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub service: String,
    pub standby: bool,
    pub running: bool,
}

/// The runner in-process on one machine: faults applied here, through this machine's
/// providers, recorded in the state folder every site's daemon reads.
pub struct InProcess<'a> {
    pub engine: &'a Engine,
    pub state_dir: &'a Path,
}

impl InProcess<'_> {
    fn at<'s>(&'s self, system: &'s System, site: &'s str) -> FaultSite<'s> {
        FaultSite {
            site,
            system,
            engine: self.engine,
            state_dir: self.state_dir,
            answering: None,
        }
    }
}

impl FaultSink for InProcess<'_> {
    fn apply(&self, system: &System, site: &str, order: &FaultOrder) -> Result<FaultInForce, String> {
        apply(&self.at(system, site), order).map_err(|e| e.to_string())
    }

    fn revert(&self, system: &System, site: &str, id: &str) -> Result<bool, String> {
        revert(&self.at(system, site), id).map_err(|e| e.to_string())
    }

    fn in_force(&self, site: &str) -> Result<Vec<FaultInForce>, String> {
        in_force(self.state_dir, site).map_err(|e| e.to_string())
    }

    fn observe(&self, system: &System, site: &str) -> Result<Vec<Seen>, String> {
        let handle = self
            .engine
            .site(system, site)
            .ok_or_else(|| format!("`{site}` is not a site of the spec"))?;
        let seen = self.engine.provider.observe(&handle).map_err(|e| e.to_string())?;
        Ok(seen
            .into_iter()
            .map(|s| Seen {
                standby: s.config.role == resurgo_plan::Role::Standby,
                running: s.process.is_running(),
                service: s.service,
            })
            .collect())
    }

    fn across_hosts(&self) -> bool {
        false
    }

    fn make_sandbox(&self, system: &System, site: &str, id: &str, services: &[String]) -> Result<SandboxMade, String> {
        crate::sandbox::make(self.engine, system, self.state_dir, site, id, services)
    }

    fn sandbox(&self, system: &System, site: &str, id: &str) -> Result<SandboxState, String> {
        Ok(crate::sandbox::state(self.engine, system, self.state_dir, site, id))
    }

    fn check_sandbox(
        &self,
        system: &System,
        _: &str,
        id: &str,
        endpoints: &[Endpoint],
    ) -> Result<SandboxChecked, String> {
        crate::sandbox::check(self.engine, system, self.state_dir, id, endpoints)
    }

    fn destroy_sandbox(&self, system: &System, site: &str, id: &str) -> Result<SandboxState, String> {
        crate::sandbox::destroy(self.state_dir, id)?;
        Ok(crate::sandbox::state(self.engine, system, self.state_dir, site, id))
    }
}

#[cfg(test)]
#[path = "faults_tests.rs"]
mod tests;
