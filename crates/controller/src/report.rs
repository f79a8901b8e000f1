//! What a site reports of itself — its services and their drift, its set-aside copies, what it
//! holds of each dataset — and how the reports of all sites make one status.
//!
//! A site's agent makes its [`SiteReport`] for `GET /v1/site`; `resurgo status` on one machine
//! makes the same parts for each site in-process. Either way the status is put together by
//! [`merge_datasets`] and the same rules: a site that did not answer is `unknown`, and so is
//! every part of a dataset it holds — never empty, never healthy. Each service carries when
//! it last passed a drill (`freshness`), from the reports in the reporting side's own state
//! folder.

use resurgo_api::types::{
    Archiving, ArchivingState, CapacityLent, DatasetStatus, Lease, Maintenance, Measures, RecoveryPoint, RoleStatus,
    Run, ServiceStatus, SetAsideStatus, SiteReport, SiteStatus, StandbyLag, WorkspaceClone, WorkspacePoint,
    WorkspaceRecord, WorkspaceStatus, API_FORMAT_VERSION,
};
use resurgo_plan::{make_plan, Action, Health, PlanOptions, ProcessState, Role, SiteState, SourceId};
use resurgo_provider::Provider as _;
use resurgo_spec::System;

use crate::engine::{index_observed, Engine};
use crate::protect::Protector;

/// Seconds since the Unix epoch, now.
fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The site `site` of `system` (assignments applied): observed now, each service planned or
/// found there with its drift, and its set-aside copies. Returns whether it is in sync.
pub fn site_status(engine: &Engine, system: &System, source: &SourceId, site: &str) -> (SiteStatus, bool) {
    let Some(handle) = engine.site(system, site) else {
        return (unknown_site(system, site, "not a site of the spec"), false);
    };
    let observed = engine.observe(std::slice::from_ref(&handle));
    let mut desired = resurgo_plan::desired_state(system);
    desired.retain(|s, _| s == site);
    let plan = match make_plan(
        &system.name,
        source.clone(),
        &desired,
        &observed,
        PlanOptions::default(),
    ) {
        Ok(plan) => plan,
        Err(e) => return (unknown_site(system, site, &format!("cannot plan: {e}")), false),
    };
    if let SiteState::Unknown { reason } = &observed[0].state {
        return (unknown_site(system, site, reason), false);
    }
    let index = index_observed(&observed);
    let mut services = Vec::new();
    let changes = plan
        .sites
        .iter()
        .find(|p| p.site == site)
        .map(|p| p.changes.as_slice())
        .unwrap_or(&[]);
    for change in changes {
        let obs = index.get(&(site.to_string(), change.service.clone()));
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
            ref a => serde_json::to_value(a)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
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
            drill: None,
        });
    }
    let now = now_secs();
    let set_aside = engine
        .provider
        .set_aside_copies(&handle)
        .unwrap_or_default()
        .into_iter()
        .map(|copy| SetAsideStatus {
            age_seconds: resurgo_spec::units::parse_rfc3339(&copy.at)
                .ok()
                .map(|t| (now - t).max(0.0) as u64),
            copy,
        })
        .collect();
    let in_sync = plan.summary.changes() == 0 && plan.summary.unknown_sites == 0 && plan.summary.orphan == 0;
    let status = SiteStatus {
        site: site.to_string(),
        address: handle.address.to_string(),
        state: "reachable".into(),
        reason: None,
        services,
        set_aside,
    };
    (status, in_sync)
}

/// A site that could not be observed or did not answer: `unknown`, and so is every service the
/// spec puts there.
pub fn unknown_site(system: &System, site: &str, reason: &str) -> SiteStatus {
    let desired = resurgo_plan::desired_state(system);
    let services = desired
        .get(site)
        .into_iter()
        .flat_map(|services| services.values())
        .map(|config| ServiceStatus {
            service: config.service.clone(),
            role: (config.role == Role::Standby).then(|| "standby".to_string()),
            process: "unknown".into(),
            pid: None,
            health: "unknown".into(),
            last_probe: None,
            drift: "unknown".into(),
            changed: vec![],
            restarts: 0,
            drill: None,
        })
        .collect();
    SiteStatus {
        site: site.to_string(),
        address: system
            .sites
            .get(site)
            .map(|s| s.address.to_string())
            .unwrap_or_default(),
        state: "unknown".into(),
        reason: Some(reason.to_string()),
        services,
        set_aside: vec![],
    }
}

/// The sites that should hold a recovery point of `dataset`: its home, then its replicas.
fn holders(protector: &Protector, dataset: &str) -> (String, Vec<String>) {
    let home = protector.home_site(dataset).unwrap_or_default();
    let mut sites = vec![home.clone()];
    // After a failover a replica site may be the home: listed once.
    sites.extend(
        protector
            .replica_sites(dataset)
            .unwrap_or_default()
            .into_iter()
            .filter(|s| *s != home),
    );
    (home, sites)
}

/// What `site` holds of each dataset: its newest point in `site`'s repository (when the site
/// should hold one), the standby kept at `site` and its lag, and the archiving when `site` is
/// the home. Reads only `site`'s own repository and servers.
pub fn datasets_at(engine: &Engine, system: &System, state: &std::path::Path, site: &str) -> Vec<DatasetStatus> {
    let protector = Protector::new(system, engine, state);
    let now = now_secs() as i64;
    let held: Vec<String> = system
        .datasets
        .keys()
        .filter(|name| holders(&protector, name).1.iter().any(|s| s == site))
        .cloned()
        .collect();
    let found = if held.is_empty() {
        Ok(Vec::new())
    } else {
        protector.recovery_points(site, &held).map_err(|e| e.to_string())
    };
    let mut out = Vec::new();
    for (name, ds) in &system.datasets {
        let (home, _) = holders(&protector, name);
        let rpo = ds.rpo.or(system.objectives.rpo);
        let points = if !held.contains(name) {
            vec![]
        } else {
            vec![match &found {
                Ok(list) => {
                    let p = list.iter().find(|p| p.dataset == *name);
                    let newest = p.and_then(|p| p.newest);
                    let age = newest.map(|t| now - t);
                    RecoveryPoint {
                        site: site.to_string(),
                        newest: newest.map(|t| {
                            crate::events::format_rfc3339(
                                std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64),
                            )
                        }),
                        age_seconds: age,
                        snapshots: p.map_or(0, |p| p.snapshots),
                        within_rpo: rpo.zip(age).map(|(r, a)| a <= r.0.as_secs() as i64),
                        error: None,
                    }
                }
                Err(e) => unknown_point(site, e),
            }]
        };
        let standby = match protector.standby_site(name).ok().flatten() {
            Some(s) if s == site => vec![match protector.standby_lag(name, site) {
                Ok(lag) => StandbyLag {
                    site: site.to_string(),
                    lag_bytes: Some(lag.bytes),
                    lag_seconds: lag.seconds,
                    streaming: lag.streaming,
                    within_rpo: rpo.zip(lag.seconds).map(|(r, s)| s <= r.0.as_secs_f64()),
                    error: None,
                },
                Err(e) => unknown_lag(site, &e.to_string()),
            }],
            _ => vec![],
        };
        let archiving = if home == site {
            protector
                .archiving(name)
                .map_err(|e| e.to_string())
                .transpose()
                .map(archiving_of)
        } else {
            None
        };
        out.push(DatasetStatus {
            dataset: name.clone(),
            home,
            rpo: rpo.map(|r| r.to_string()),
            points,
            standby,
            archiving,
        });
    }
    out
}

fn unknown_point(site: &str, error: &str) -> RecoveryPoint {
    RecoveryPoint {
        site: site.to_string(),
        newest: None,
        age_seconds: None,
        snapshots: 0,
        within_rpo: None,
        error: Some(error.to_string()),
    }
}

fn unknown_lag(site: &str, error: &str) -> StandbyLag {
    StandbyLag {
        site: site.to_string(),
        lag_bytes: None,
        lag_seconds: None,
        streaming: false,
        within_rpo: None,
        error: Some(error.to_string()),
    }
}

/// The archiving status the vault read, as `status` shows it.
fn archiving_of(read: Result<resurgo_vault::pg::Archiver, String>) -> Archiving {
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

/// Each dataset's status from what each site holds of it (`parts`: per site, its
/// [`datasets_at`], or why it could not be had). A part a site did not give is unknown with
/// that site's reason.
pub fn merge_datasets(
    engine: &Engine,
    system: &System,
    state: &std::path::Path,
    parts: &[(String, Result<Vec<DatasetStatus>, String>)],
) -> Vec<DatasetStatus> {
    let protector = Protector::new(system, engine, state);
    let part = |site: &str, dataset: &str| -> Result<Option<&DatasetStatus>, String> {
        match parts.iter().find(|(s, _)| s == site) {
            Some((_, Ok(list))) => Ok(list.iter().find(|d| d.dataset == dataset)),
            Some((_, Err(e))) => Err(e.clone()),
            None => Err(format!("site `{site}` was not asked")),
        }
    };
    let mut out = Vec::new();
    for (name, ds) in &system.datasets {
        let (home, sites) = holders(&protector, name);
        let rpo = ds.rpo.or(system.objectives.rpo);
        let points = sites
            .iter()
            .map(|site| match part(site, name) {
                Ok(d) => d
                    .and_then(|d| d.points.iter().find(|p| p.site == *site).cloned())
                    .unwrap_or_else(|| unknown_point(site, "the site's agent did not report it")),
                Err(e) => unknown_point(site, &e),
            })
            .collect();
        let standby = match protector.standby_site(name).ok().flatten() {
            Some(site) => vec![match part(&site, name) {
                Ok(d) => d
                    .and_then(|d| d.standby.first().cloned())
                    .unwrap_or_else(|| unknown_lag(&site, "the site's agent did not report it")),
                Err(e) => unknown_lag(&site, &e),
            }],
            None => vec![],
        };
        let archiving = match part(&home, name) {
            Ok(d) => d.and_then(|d| d.archiving.clone()),
            Err(e) => protector.archiving_applies(name).then(|| archiving_of(Err(e))),
        };
        out.push(DatasetStatus {
            dataset: name.clone(),
            home,
            rpo: rpo.map(|r| r.to_string()),
            points,
            standby,
            archiving,
        });
    }
    out
}

/// The assignments, primary leases and maintenance switch from the coordination store.
pub fn roles(
    system: &System,
    state: &std::path::Path,
) -> Result<(Vec<RoleStatus>, Option<Maintenance>), crate::roles::StoreError> {
    use crate::roles::{coord_dir, group_of, is_embedded, open_store, primary_lease, MAINTENANCE};
    if is_embedded(system) && !coord_dir(state).exists() {
        return Ok((vec![], None));
    }
    let store = open_store(system, state)?;
    let mut roles = Vec::new();
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
        roles.push(RoleStatus {
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
    let maintenance = store.lease_holder(MAINTENANCE)?.map(|(by, left)| Maintenance {
        by,
        seconds_left: left.as_secs(),
    });
    Ok((roles, maintenance))
}

/// Each service's drill (the drills whose reports are in `state`), now: what `status` shows
/// of when it last passed a drill, and whether one is due.
pub fn drills_of(
    system: &System,
    state: &std::path::Path,
) -> std::collections::BTreeMap<String, resurgo_api::types::ServiceDrill> {
    if system.drills.is_empty() {
        return Default::default();
    }
    crate::freshness::services(system, &crate::drill::reports(state), now_secs())
}

/// What `site`'s agent reports of it (`GET /v1/site`): its services (each with its drill,
/// from the drill reports in this agent's own state folder), its datasets and the roles.
pub fn site_report(
    engine: &Engine,
    system: &System,
    source: &SourceId,
    state: &std::path::Path,
    site: &str,
) -> SiteReport {
    let begun = std::time::Instant::now();
    let (mut status, in_sync) = site_status(engine, system, source, site);
    let observed = begun.elapsed();
    crate::freshness::fill(&mut status, &drills_of(system, state));
    let drilled = begun.elapsed();
    let datasets = datasets_at(engine, system, state, site);
    let listed = begun.elapsed();
    let (roles, maintenance, roles_error) = match roles(system, state) {
        Ok((r, m)) => (r, m, None),
        Err(e) => (vec![], None, Some(e.to_string())),
    };
    let roled = begun.elapsed();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    tracing::debug!(
        observe_ms = ms(observed),
        drills_ms = ms(drilled - observed),
        datasets_ms = ms(listed - drilled),
        roles_ms = ms(roled - listed),
        "site report"
    );
    SiteReport {
        format_version: API_FORMAT_VERSION,
        system: system.name.clone(),
        desired: source.label(),
        site: status,
        in_sync,
        datasets,
        roles,
        maintenance,
        roles_error,
        workspaces: workspaces_at(state, Some(site)),
    }
}

/// A workspace's record (`workspace.json`) as the site API carries it.
pub fn workspace_record(record: &crate::workspace::Record) -> WorkspaceRecord {
    let word = |v: serde_json::Result<serde_json::Value>| {
        v.ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
    };
    WorkspaceRecord {
        name: record.name.clone(),
        site: record.site.clone(),
        policy: record.policy.clone(),
        state: record.state.as_str().to_string(),
        detail: record.detail.clone(),
        created_unix: record.created_unix,
        expires_unix: record.expires_unix,
        seeded_unix: record.seeded_unix,
        clones: record
            .clones
            .iter()
            .map(|c| WorkspaceClone {
                dataset: c.dataset.clone(),
                kind: word(serde_json::to_value(c.kind)),
                snapshot: c.snapshot.clone(),
                taken_unix: c.taken_unix,
                method: c.method.to_string(),
                took_s: c.took_s,
                bytes: c.bytes,
                path: c.path.display().to_string(),
                golden: c.golden.display().to_string(),
            })
            .collect(),
        ready_s: record.ready_s,
        netns: record.netns.clone(),
    }
}

/// The workspaces recorded in `state` (those at `site`, or all), as the site API carries them.
pub fn workspace_records(state: &std::path::Path, site: Option<&str>) -> Vec<WorkspaceRecord> {
    crate::workspace::list(state)
        .iter()
        .filter(|r| site.is_none_or(|s| r.site == s))
        .map(workspace_record)
        .collect()
}

/// What `status` shows of the workspaces recorded in `state` (at `site`, or all).
pub fn workspaces_at(state: &std::path::Path, site: Option<&str>) -> Vec<WorkspaceStatus> {
    let now = now_secs() as i64;
    workspace_records(state, site)
        .iter()
        .map(|r| workspace_status(r, now))
        .collect()
}

/// A workspace as `status` shows it, `now` (Unix seconds).
pub fn workspace_status(record: &WorkspaceRecord, now: i64) -> WorkspaceStatus {
    WorkspaceStatus {
        name: record.name.clone(),
        site: record.site.clone(),
        state: record.state.clone(),
        detail: record.detail.clone(),
        services: record.policy.services.clone(),
        seed: serde_json::to_value(&record.policy.seed)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        points: record
            .clones
            .iter()
            .map(|c| WorkspacePoint {
                dataset: c.dataset.clone(),
                snapshot: c.snapshot.clone(),
                taken: crate::events::format_rfc3339(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(c.taken_unix.max(0) as u64),
                ),
                age_seconds: (now - c.taken_unix).max(0),
                method: c.method.clone(),
            })
            .collect(),
        ttl_left_seconds: (record.expires_unix - now).max(0) as u64,
        priority: record.policy.priority,
        cpu: record.policy.resources.cpu.0 as f64 / 1000.0,
        memory_bytes: record.policy.resources.memory.0,
    }
}

/// Per site with workspaces (in the spec's order, then any other), the capacity lent to them
/// in total against the site's declared capacity. Every workspace counts, preempted or
/// failed ones too: a new one is refused room they hold (`workspace::create`).
pub fn capacity_lent(system: &System, workspaces: &[WorkspaceStatus]) -> Vec<CapacityLent> {
    let mut sites: Vec<&str> = system
        .sites
        .keys()
        .map(String::as_str)
        .filter(|s| workspaces.iter().any(|w| w.site == *s))
        .collect();
    for w in workspaces {
        if !sites.contains(&w.site.as_str()) {
            sites.push(&w.site);
        }
    }
    sites
        .into_iter()
        .map(|site| {
            let here: Vec<&WorkspaceStatus> = workspaces.iter().filter(|w| w.site == site).collect();
            let declared = system.sites.get(site);
            CapacityLent {
                site: site.to_string(),
                workspaces: here.len(),
                cpu: (here.iter().map(|w| w.cpu).sum::<f64>() * 1000.0).round() / 1000.0,
                memory_bytes: here.iter().map(|w| w.memory_bytes).sum(),
                capacity_cpu: declared.map(|s| s.capacity.cpu.0 as f64 / 1000.0),
                capacity_memory_bytes: declared.map(|s| s.capacity.memory.0),
            }
        })
        .collect()
}

/// A run's report with the measures stored beside its journal.
pub fn run_of(report: resurgo_runbook::run::RunReport, state: &std::path::Path) -> Run {
    let measures = crate::failover::measures(state, &report.run).map(|m| Measures {
        detection_s: m.detection_s,
        decision_s: m.decision_s,
        rto_s: m.rto_s,
        rpo_s: m.rpo_s,
        accept_data_loss: m.accept_data_loss,
        preempt_s: m.preempt_s,
    });
    Run { report, measures }
}

/// The runs journaled in `state` (`<state>/runs/`), oldest first: every one, or the one named
/// (none when there is no such run).
pub fn runs(state: &std::path::Path, only: Option<&str>) -> Result<Vec<Run>, String> {
    let dir = state.join("runs");
    let runner = resurgo_runbook::run::Runner::new(&dir);
    let mut ids: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|id| only.is_none_or(|o| o == id))
                .collect()
        })
        .unwrap_or_default();
    // Run ids end with their start time in milliseconds: oldest first.
    ids.sort_by_key(|id| crate::failover::started_ms(id).unwrap_or(0));
    ids.iter()
        .map(|id| {
            runner
                .report(id)
                .map(|r| run_of(r, state))
                .map_err(|e| format!("run `{id}`: {e}"))
        })
        .collect()
}
