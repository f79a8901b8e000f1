//! `resurgo status`: each site (reachable or unknown), each service (process, health,
//! drift), and the last applied commit. Exit 0 when everything is in sync, 2 on drift or an
//! unknown site.
//!
//! `--json` prints [`Status`]: a versioned format ([`FORMAT_VERSION`]) whose JSON Schema,
//! generated from these types, is `schema/status.schema.json` (`resurgo schema --output
//! status`). Every field is a named value or object: no tuples, no Rust `Result`s.

use std::process::ExitCode;

use resurgo_controller::engine::{index_observed, read_applied};
use resurgo_plan::{make_plan, Action, Health, PlanOptions, ProcessState, Role, SiteState};
use resurgo_provider::Provider as _;
use schemars::JsonSchema;
use serde::Serialize;

use crate::common::{load_or_report, SpecArgs};
use crate::exit;
use crate::render::Paint;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Version of the `status --json` format. Bump on any incompatible change (a field removed,
/// renamed or changing meaning); a new field is compatible.
pub const FORMAT_VERSION: u32 = 1;

/// The state of a system: its sites and services, its datasets' recovery points, and who is
/// primary (`resurgo status --json`).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Status {
    /// The version of this format; 1 so far.
    pub format_version: u32,
    /// The system's name in the spec.
    pub system: String,
    /// The desired state's source: a commit, or `folder:<digest>`.
    pub desired: String,
    /// The last successful `resurgo apply` from this state folder (null: never).
    pub last_applied: Option<LastApplied>,
    /// Whether every service runs as desired, every site was observed and nothing is orphaned.
    pub in_sync: bool,
    /// Each site in the spec, in its order.
    pub sites: Vec<SiteStatus>,
    /// Each dataset in the spec, in its order.
    pub datasets: Vec<DatasetStatus>,
    /// Who is primary for each group that has moved or holds a lease, from the coordination
    /// store; empty when nothing was ever assigned.
    pub roles: Vec<RoleStatus>,
    /// Automatic failover held back by `resurgo maintenance on` (null: off).
    pub maintenance: Option<Maintenance>,
    /// Why the roles could not be read (the store is unreachable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles_error: Option<String>,
}

/// The last apply: which spec, when.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LastApplied {
    /// The spec that was applied.
    pub source: resurgo_plan::SourceId,
    /// When (RFC 3339, UTC).
    pub time: String,
}

/// The maintenance switch, while it is on.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Maintenance {
    /// Who turned it on (`--by`).
    pub by: String,
    /// Seconds until it turns itself off.
    pub seconds_left: u64,
}

/// One failover group's primary, as the coordination store holds it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RoleStatus {
    /// The group (`site-<site>`: the services the spec puts at that site).
    pub group: String,
    /// The site where the group's services are active.
    pub primary: String,
    /// The assignment's epoch: 0 until the group first moved, then one more per move.
    pub epoch: u64,
    /// RFC 3339 time of the last change (null: never assigned).
    pub since: Option<String>,
    /// The group's primary lease (null: nobody holds it).
    pub lease: Option<Lease>,
}

/// A lease and its holder.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Lease {
    /// Who holds it: a site's agent, or a run that took it.
    pub holder: String,
    /// Seconds until it expires unless renewed.
    pub seconds_left: u64,
}

/// A dataset's newest restorable point at each site that should hold it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DatasetStatus {
    /// The dataset's name in the spec.
    pub dataset: String,
    /// The site its service is active at, whose repository it is backed up to.
    pub home: String,
    /// The RPO objective (`5m`), when declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpo: Option<String>,
    /// The newest restorable point at the home site, then at each site it is replicated to.
    pub points: Vec<RecoveryPoint>,
    /// `strategy: standby`: the warm standby at each site that keeps one, and its lag.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub standby: Vec<StandbyLag>,
    /// Physical PostgreSQL: the primary's WAL archiving (`pg_stat_archiver`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archiving: Option<Archiving>,
}

/// WAL archiving at a PostgreSQL primary, as `pg_stat_archiver` reports it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Archiving {
    /// Whether archiving works.
    pub state: ArchivingState,
    /// The newest segment archived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_archived_wal: Option<String>,
    /// When it was archived (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_archived_time: Option<String>,
    /// Failed attempts since the statistics were reset (absent when `unknown`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_count: Option<u64>,
    /// The segment of the newest failed attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failed_wal: Option<String>,
    /// When it failed (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failed_time: Option<String>,
    /// Why the archiver could not be read (`unknown`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether WAL archiving works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArchivingState {
    /// The newest attempt succeeded, or none was made yet.
    Ok,
    /// The newest attempt failed: archiving is stuck, and the RPO grows.
    Failing,
    /// The archiver could not be read (see `error`).
    Unknown,
}

impl Archiving {
    fn of(read: Result<resurgo_vault::pg::Archiver, String>) -> Archiving {
        match read {
            Ok(a) => Archiving {
                state: if a.failing() {
                    ArchivingState::Failing
                } else {
                    ArchivingState::Ok
                },
                failed_count: Some(a.failed_count),
                last_archived_wal: a.last_archived_wal,
                last_archived_time: a.last_archived_time,
                last_failed_wal: a.last_failed_wal,
                last_failed_time: a.last_failed_time,
                error: None,
            },
            Err(error) => Archiving {
                state: ArchivingState::Unknown,
                last_archived_wal: None,
                last_archived_time: None,
                failed_count: None,
                last_failed_wal: None,
                last_failed_time: None,
                error: Some(error),
            },
        }
    }
}

/// How far a warm standby is behind its primary, measured now.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StandbyLag {
    /// The standby's site.
    pub site: String,
    /// WAL written at the primary and not yet replayed at the standby.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<u64>,
    /// Time the standby's replay is behind (0 when caught up); absent while unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// Whether it receives WAL from the primary right now.
    pub streaming: bool,
    /// Whether the lag is within the RPO objective (absent without one or without a figure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within_rpo: Option<bool>,
    /// Why the lag could not be measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The newest restorable point of a dataset at one site.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RecoveryPoint {
    /// The site whose repository holds it.
    pub site: String,
    /// Time of the newest snapshot there (RFC 3339), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest: Option<String>,
    /// Its age in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<i64>,
    /// How many snapshots of the dataset the repository holds.
    pub snapshots: usize,
    /// Whether the age is within the RPO objective (absent without an objective or a point).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within_rpo: Option<bool>,
    /// Why the repository could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One site and the services it runs.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SiteStatus {
    /// The site's name in the spec.
    pub site: String,
    /// Its address.
    pub address: String,
    /// `reachable` or `unknown` (it could not be observed: its services show `unknown`).
    pub state: String,
    /// Why it is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The services planned or found there, active and standby.
    pub services: Vec<ServiceStatus>,
    /// Data resurgo set aside at this site instead of deleting it (`resurgo set-aside`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub set_aside: Vec<SetAsideStatus>,
}

/// One set-aside copy: what, where, how big, how old, and why.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SetAsideStatus {
    #[serde(flatten)]
    pub copy: resurgo_provider::SetAside,
    /// Seconds since it was set aside (null: its time could not be read).
    pub age_seconds: Option<u64>,
}

/// One service (or its standby instance) at one site.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ServiceStatus {
    /// The service's name in the spec.
    pub service: String,
    /// `standby` for the warm standby instance of a service; absent for the active one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `running`, `exited`, `stopped`, `absent` or `unknown`.
    pub process: String,
    /// The service's process id, while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// `healthy`, `unhealthy` or `unknown`.
    pub health: String,
    /// What the failing health check said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_probe: Option<String>,
    /// `in-sync`, the plan action that would correct it (`create`, `update`, `start`,
    /// `delete`, `orphan`), or `unknown` at an unknown site.
    pub drift: String,
    /// For `update`: the fields of its config that differ.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// How many times its supervisor restarted it.
    pub restarts: u32,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(desired) = load_or_report(&args.spec, args.json)? else {
        return Ok(exit::code(exit::ERROR));
    };
    let engine = args.spec.engine()?;
    let system = &desired.loaded.system;
    let sites = engine.sites(system);
    let observed = engine.observe(&sites);
    let plan = make_plan(
        &system.name,
        desired.source.clone(),
        &resurgo_plan::desired_state(system),
        &observed,
        PlanOptions::default(),
    )?;
    let index = index_observed(&observed);
    let mut status = Status {
        format_version: FORMAT_VERSION,
        system: system.name.clone(),
        desired: desired.source.label(),
        last_applied: read_applied(&args.spec.state).map(|a| LastApplied {
            source: a.source,
            time: a.time,
        }),
        in_sync: plan.summary.changes() == 0 && plan.summary.unknown_sites == 0 && plan.summary.orphan == 0,
        sites: Vec::new(),
        datasets: dataset_status(system, &engine, &args.spec.state),
        roles: Vec::new(),
        maintenance: None,
        roles_error: None,
    };
    if let Err(e) = read_roles(system, &args.spec.state, &mut status) {
        status.roles_error = Some(e.to_string());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    for (handle, seen) in sites.iter().zip(&observed) {
        let (state, reason) = match &seen.state {
            SiteState::Reachable { .. } => ("reachable", None),
            SiteState::Unknown { reason } => ("unknown", Some(reason.clone())),
        };
        let mut services = Vec::new();
        let site_plan = plan.sites.iter().find(|p| p.site == handle.name);
        for change in site_plan.map(|p| p.changes.as_slice()).unwrap_or(&[]) {
            let obs = index.get(&(handle.name.clone(), change.service.clone()));
            let (process, pid) = match obs.map(|o| &o.process) {
                Some(ProcessState::Running { pid, .. }) => ("running", Some(*pid)),
                Some(ProcessState::Exited { .. }) => ("exited", None),
                Some(ProcessState::Stopped) => ("stopped", None),
                None => ("absent", None),
            };
            let (health, last_probe) = match obs.map(|o| &o.health) {
                Some(Health::Healthy) => ("healthy", None),
                Some(Health::Unhealthy { last_probe }) => ("unhealthy", Some(last_probe.clone())),
                _ => ("unknown", None),
            };
            let drift = match change.action {
                Action::Unchanged => "in-sync".to_string(),
                ref a => serde_json::to_value(a)?.as_str().unwrap_or("").to_string(),
            };
            let role = match (&change.config, obs) {
                (Some(c), _) => c.role,
                (None, Some(o)) => o.config.role,
                (None, None) => Role::Active,
            };
            services.push(ServiceStatus {
                service: change.service.clone(),
                role: (role == Role::Standby).then(|| "standby".to_string()),
                process: process.into(),
                pid,
                health: health.into(),
                last_probe,
                drift,
                changed: change.fields.clone(),
                restarts: obs.map_or(0, |o| o.restarts),
            });
        }
        if state == "unknown" {
            for (name, svc) in &system.services {
                if svc.site == handle.name {
                    services.push(ServiceStatus {
                        service: name.clone(),
                        role: None,
                        process: "unknown".into(),
                        pid: None,
                        health: "unknown".into(),
                        last_probe: None,
                        drift: "unknown".into(),
                        changed: vec![],
                        restarts: 0,
                    });
                }
            }
        }
        let set_aside = match &seen.state {
            SiteState::Reachable { .. } => engine.provider.set_aside_copies(handle).unwrap_or_default(),
            SiteState::Unknown { .. } => Vec::new(),
        };
        status.sites.push(SiteStatus {
            site: handle.name.clone(),
            address: handle.address.to_string(),
            state: state.into(),
            reason,
            services,
            set_aside: set_aside
                .into_iter()
                .map(|copy| SetAsideStatus {
                    age_seconds: resurgo_spec::units::parse_rfc3339(&copy.at)
                        .ok()
                        .map(|t| (now - t).max(0.0) as u64),
                    copy,
                })
                .collect(),
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render_status(&status, &Paint::stdout()));
    }
    Ok(exit::code(if status.in_sync { exit::OK } else { exit::CHANGES }))
}

/// The assignments, primary leases and maintenance switch from the coordination store.
fn read_roles(
    system: &resurgo_spec::System,
    state: &std::path::Path,
    status: &mut Status,
) -> Result<(), resurgo_controller::roles::StoreError> {
    use resurgo_controller::roles::{group_of, open_store, primary_lease, MAINTENANCE};
    if resurgo_controller::roles::is_embedded(system) && !resurgo_controller::roles::coord_dir(state).exists() {
        return Ok(());
    }
    let store = open_store(system, state)?;
    for site in system.sites.keys() {
        let group = group_of(site);
        let assignment = store.get_assignment(&group)?;
        let lease = store.lease_holder(&primary_lease(&group))?.map(|(holder, left)| Lease {
            holder,
            seconds_left: left.as_secs(),
        });
        if assignment.is_none() && lease.is_none() {
            continue;
        }
        status.roles.push(RoleStatus {
            primary: assignment
                .as_ref()
                .map_or_else(|| site.clone(), |a| a.primary_site.clone()),
            epoch: assignment.as_ref().map_or(0, |a| a.epoch),
            since: assignment
                .as_ref()
                .map(|a| resurgo_spec::units::format_rfc3339(a.since, 3)),
            lease,
            group,
        });
    }
    status.maintenance = store.lease_holder(MAINTENANCE)?.map(|(by, left)| Maintenance {
        by,
        seconds_left: left.as_secs(),
    });
    Ok(())
}

fn dataset_status(
    system: &resurgo_spec::System,
    engine: &resurgo_controller::Engine,
    state: &std::path::Path,
) -> Vec<DatasetStatus> {
    let protector = resurgo_controller::protect::Protector::new(system, engine, state);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    // Which datasets each site should hold, so that each repository is opened once.
    let mut wanted: indexmap::IndexMap<String, Vec<String>> = indexmap::IndexMap::new();
    let mut homes = Vec::new();
    for name in system.datasets.keys() {
        let home = protector.home_site(name).unwrap_or_default();
        let mut sites = vec![home.clone()];
        sites.extend(protector.replica_sites(name).unwrap_or_default());
        for site in &sites {
            wanted.entry(site.clone()).or_default().push(name.clone());
        }
        homes.push((name.clone(), home, sites));
    }
    let found: std::collections::HashMap<String, Result<Vec<resurgo_controller::protect::PointAt>, String>> = wanted
        .iter()
        .map(|(site, names)| {
            (
                site.clone(),
                protector.recovery_points(site, names).map_err(|e| e.to_string()),
            )
        })
        .collect();
    let mut out = Vec::new();
    for (name, home, sites) in homes {
        let ds = &system.datasets[&name];
        let rpo = ds.rpo.or(system.objectives.rpo);
        let points = sites
            .into_iter()
            .map(|site| match &found[&site] {
                Ok(list) => {
                    let p = list.iter().find(|p| p.dataset == name);
                    let newest = p.and_then(|p| p.newest);
                    let age = newest.map(|t| now - t);
                    RecoveryPoint {
                        newest: newest.map(|t| {
                            resurgo_controller::events::format_rfc3339(
                                std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64),
                            )
                        }),
                        age_seconds: age,
                        snapshots: p.map_or(0, |p| p.snapshots),
                        within_rpo: rpo.zip(age).map(|(r, a)| a <= r.0.as_secs() as i64),
                        error: None,
                        site,
                    }
                }
                Err(e) => RecoveryPoint {
                    site,
                    newest: None,
                    age_seconds: None,
                    snapshots: 0,
                    within_rpo: None,
                    error: Some(e.clone()),
                },
            })
            .collect();
        let standby = protector
            .standby_site(&name)
            .ok()
            .flatten()
            .map(|site| match protector.standby_lag(&name, &site) {
                Ok(lag) => StandbyLag {
                    site,
                    lag_bytes: Some(lag.bytes),
                    lag_seconds: lag.seconds,
                    streaming: lag.streaming,
                    within_rpo: rpo.zip(lag.seconds).map(|(r, s)| s <= r.0.as_secs_f64()),
                    error: None,
                },
                Err(e) => StandbyLag {
                    site,
                    lag_bytes: None,
                    lag_seconds: None,
                    streaming: false,
                    within_rpo: None,
                    error: Some(e.to_string()),
                },
            })
            .into_iter()
            .collect();
        let archiving = protector
            .archiving(&name)
            .map_err(|e| e.to_string())
            .transpose()
            .map(Archiving::of);
        out.push(DatasetStatus {
            dataset: name,
            home,
            rpo: rpo.map(|r| r.to_string()),
            points,
            standby,
            archiving,
        });
    }
    out
}

pub fn render_status(status: &Status, paint: &Paint) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let applied = status.last_applied.as_ref().map_or_else(
        || "never".to_string(),
        |a| format!("{} at {}", a.source.label(), a.time),
    );
    let _ = writeln!(
        out,
        "{}",
        paint.bold(&format!(
            "System `{}` — desired {}, last applied {}",
            status.system, status.desired, applied
        ))
    );
    for site in &status.sites {
        let state = if site.state == "reachable" {
            paint.green("reachable")
        } else {
            paint.red("unknown")
        };
        let reason = site.reason.as_deref().map(|r| format!(" — {r}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "site {} ({}): {state}{reason}",
            paint.bold(&site.site),
            site.address
        );
        for s in &site.services {
            let health = match s.health.as_str() {
                "healthy" => paint.green("healthy"),
                "unhealthy" => paint.red("unhealthy"),
                h => paint.dim(h),
            };
            let drift = if s.drift == "in-sync" {
                paint.green("in sync")
            } else if s.changed.is_empty() {
                paint.yellow(&format!("drift: {}", s.drift))
            } else {
                paint.yellow(&format!("drift: {} ({})", s.drift, s.changed.join(", ")))
            };
            let pid = s.pid.map(|p| format!(" pid {p}")).unwrap_or_default();
            let probe = s.last_probe.as_deref().map(|p| format!(" [{p}]")).unwrap_or_default();
            let restarts = if s.restarts > 0 {
                format!(", {} restarts", s.restarts)
            } else {
                String::new()
            };
            let name = match &s.role {
                Some(role) => format!("{} ({role})", s.service),
                None => s.service.clone(),
            };
            let _ = writeln!(
                out,
                "  {:<20} {}{pid}, {health}{probe}, {drift}{restarts}",
                name, s.process
            );
        }
        for a in &site.set_aside {
            let age = a.age_seconds.map(|s| format!(", {s}s old")).unwrap_or_default();
            let _ = writeln!(
                out,
                "  {} {} ({}{age}): {}",
                paint.yellow("set aside"),
                a.copy.id,
                crate::report::size(a.copy.bytes),
                a.copy.why
            );
        }
    }
    for d in &status.datasets {
        let rpo = d
            .rpo
            .as_deref()
            .map(|r| format!(", RPO objective {r}"))
            .unwrap_or_default();
        let _ = writeln!(out, "dataset {} (home {}{rpo})", paint.bold(&d.dataset), d.home);
        if let Some(a) = &d.archiving {
            let line = match a.state {
                ArchivingState::Failing => paint.red(&format!(
                    "FAILING: {} at {} ({} failures)",
                    a.last_failed_wal.as_deref().unwrap_or("?"),
                    a.last_failed_time.as_deref().unwrap_or("?"),
                    a.failed_count.unwrap_or(0)
                )),
                ArchivingState::Ok => paint.green(&match (&a.last_archived_wal, &a.last_archived_time) {
                    (Some(w), Some(t)) => format!("last archived {w} at {t}"),
                    _ => "nothing archived yet".into(),
                }),
                ArchivingState::Unknown => paint.red(&format!("unknown — {}", a.error.as_deref().unwrap_or("?"))),
            };
            let _ = writeln!(out, "  archiving        {line}");
        }
        for p in &d.points {
            let line = match (&p.error, &p.newest, p.age_seconds) {
                (Some(e), _, _) => paint.red(&format!("unknown — {e}")),
                (None, Some(t), Some(age)) => {
                    let text = format!("newest point {t} ({age}s old), {} snapshots", p.snapshots);
                    if p.within_rpo == Some(false) {
                        paint.red(&format!("{text} — RPO breached"))
                    } else {
                        paint.green(&text)
                    }
                }
                _ => paint.yellow("no snapshot yet"),
            };
            let _ = writeln!(out, "  at {:<17} {line}", p.site);
        }
        for l in &d.standby {
            let line = match (&l.error, l.lag_bytes) {
                (Some(e), _) => paint.red(&format!("unknown — {e}")),
                (None, bytes) => {
                    let seconds = l.lag_seconds.map_or_else(|| "?".to_string(), |s| format!("{s:.3}"));
                    let text = format!(
                        "{} bytes, {seconds} s behind, {}",
                        bytes.unwrap_or(0),
                        if l.streaming { "streaming" } else { "not streaming" }
                    );
                    if !l.streaming || l.within_rpo == Some(false) {
                        paint.red(&format!("{text} — lagging"))
                    } else {
                        paint.green(&text)
                    }
                }
            };
            let _ = writeln!(out, "  standby at {:<9} {line}", l.site);
        }
    }
    for r in &status.roles {
        let lease = r.lease.as_ref().map_or_else(
            || "no primary lease held".to_string(),
            |l| format!("lease held by {}, {}s left", l.holder, l.seconds_left),
        );
        let since = r.since.as_deref().map(|t| format!(" since {t}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "role {}: primary {} (epoch {}{since}), {lease}",
            r.group, r.primary, r.epoch
        );
    }
    if let Some(m) = &status.maintenance {
        let _ = writeln!(
            out,
            "{}",
            paint.yellow(&format!(
                "maintenance on (by {}, {}s left): no automatic failover",
                m.by, m.seconds_left
            ))
        );
    }
    if let Some(e) = &status.roles_error {
        let _ = writeln!(out, "{}", paint.red(&format!("roles unknown: {e}")));
    }
    out
}
