//! `resurgo status`: each site (reachable or unknown), each service (process, health,
//! drift, when it last passed a drill — with a warning when that is older than the drill's
//! cadence), the last applied commit, and the workspaces at the sites with the DR capacity
//! each site lends them. Exit 0 when everything is in sync, 2 on drift or an unknown site
//! (workspaces do not count).
//!
//! `--json` prints [`Status`]: a versioned format ([`FORMAT_VERSION`]) whose JSON Schema,
//! generated from these types, is `schema/status.schema.json` (`resurgo schema --output
//! status`). Every field is a named value or object: no tuples, no Rust `Result`s.

use std::process::ExitCode;

use resurgo_controller::engine::read_applied;
use resurgo_controller::report;

use crate::common::{load_or_report, SpecArgs};
use crate::exit;
use crate::remote;
use crate::render::Paint;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

pub use resurgo_api::types::{ArchivingState, LastApplied, Status, STATUS_FORMAT_VERSION as FORMAT_VERSION};

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(desired) = load_or_report(&args.spec, args.json)? else {
        return Ok(exit::code(exit::ERROR));
    };
    let status = if desired.loaded.system.api.is_some() {
        through_agents(&args.spec, &desired)?
    } else {
        on_this_machine(&args.spec, &desired)?
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render_status(&status, &Paint::stdout()));
    }
    Ok(exit::code(if status.in_sync { exit::OK } else { exit::CHANGES }))
}

/// Every site on this machine: each site's part made here, as its agent would make it.
fn on_this_machine(spec: &SpecArgs, desired: &resurgo_controller::Desired) -> anyhow::Result<Status> {
    let engine = spec.engine()?;
    let system = &desired.loaded.system;
    let state = spec.state.as_path();
    let mut parts: Vec<_> = std::thread::scope(|scope| {
        let asks: Vec<_> = system
            .sites
            .keys()
            .map(|site| {
                let engine = &engine;
                scope.spawn(move || {
                    let (status, in_sync) = report::site_status(engine, system, &desired.source, site);
                    let datasets = match status.state.as_str() {
                        "unknown" => Err(format!(
                            "site `{site}` is unknown: {}",
                            status.reason.as_deref().unwrap_or("")
                        )),
                        _ => Ok(report::datasets_at(engine, system, state, site)),
                    };
                    (status, in_sync, datasets)
                })
            })
            .collect();
        asks.into_iter()
            .map(|a| a.join().expect("a site's status panicked"))
            .collect()
    });
    let (roles, maintenance, roles_error) = match report::roles(system, state) {
        Ok((r, m)) => (r, m, None),
        Err(e) => (vec![], None, Some(e.to_string())),
    };
    let datasets: Vec<_> = parts.iter().map(|(s, _, d)| (s.site.clone(), d.clone())).collect();
    let workspaces = report::workspaces_at(state, None);
    let drills = report::drills_of(system, state);
    for (site, _, _) in &mut parts {
        resurgo_controller::freshness::fill(site, &drills);
    }
    Ok(Status {
        format_version: FORMAT_VERSION,
        system: system.name.clone(),
        desired: desired.source.label(),
        last_applied: read_applied(state).map(|a| LastApplied {
            source: a.source,
            time: a.time,
        }),
        in_sync: parts.iter().all(|(_, in_sync, _)| *in_sync),
        datasets: report::merge_datasets(&engine, system, state, &datasets),
        sites: parts.into_iter().map(|(s, _, _)| s).collect(),
        roles,
        maintenance,
        roles_error,
        lent: report::capacity_lent(system, &workspaces),
        workspaces,
    })
}

/// Every site through its agent's API: an agent that does not answer leaves its site, its
/// services and what it holds of each dataset `unknown`.
fn through_agents(spec: &SpecArgs, desired: &resurgo_controller::Desired) -> anyhow::Result<Status> {
    let client = remote::client(spec, &desired.loaded.system, remote::TIMEOUT)?;
    Ok(resurgo_controller::fleet::status(&client, &spec.engine()?, &spec.state, desired).0)
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
            // The drill is shown once, on the active instance.
            let drill = match (&s.role, &s.drill) {
                (None, Some(d)) => format!(", {}", drill_words(d, paint)),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "  {:<20} {}{pid}, {health}{probe}, {drift}{restarts}{drill}",
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
    for w in &status.workspaces {
        let state = match w.state.as_str() {
            "ready" => paint.green("ready"),
            "failed" => paint.red("failed"),
            other => paint.yellow(other),
        };
        let detail = w.detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
        let _ = writeln!(
            out,
            "workspace {} at {}: {state}{detail}, {}, seed {}, ttl {} left, priority {}, cpu {}, memory {}",
            paint.bold(&w.name),
            w.site,
            w.services.join(", "),
            seed_words(&w.points),
            crate::commands::workspace::seconds_words(w.ttl_left_seconds),
            w.priority,
            w.cpu,
            crate::report::size(w.memory_bytes),
        );
    }
    for l in &status.lent {
        let _ = writeln!(out, "{}", crate::commands::workspace::lent_words(l));
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
    let mut warned: Vec<&str> = Vec::new();
    for s in status.sites.iter().flat_map(|site| &site.services) {
        let Some(d) = s.drill.as_ref().filter(|d| d.due) else {
            continue;
        };
        if warned.contains(&s.service.as_str()) {
            continue;
        }
        warned.push(&s.service);
        let _ = writeln!(
            out,
            "{}",
            paint.yellow(&format!(
                "warning: no drill has passed for `{}` within its cadence {}: run `resurgo drill run {}`",
                s.service,
                d.cadence.as_deref().unwrap_or("?"),
                d.drill
            ))
        );
    }
    out
}

/// A service's drill, compactly: `drill kill-web passed 2026-05-04 (RTO 1.2s, RPO 0s)`.
fn drill_words(d: &resurgo_api::types::ServiceDrill, paint: &Paint) -> String {
    let seconds = |v: Option<f64>| v.map_or_else(|| "?".to_string(), |s| format!("{}s", (s * 100.0).round() / 100.0));
    let text = match &d.last_pass {
        Some(at) => format!(
            "drill {} passed {} (RTO {}, RPO {})",
            d.drill,
            at.get(..10).unwrap_or(at),
            seconds(d.rto_s),
            seconds(d.rpo_s)
        ),
        None => format!("drill {} never passed", d.drill),
    };
    if d.due {
        paint.yellow(&format!("{text}, due"))
    } else {
        text
    }
}

/// A workspace's seed, compactly: each dataset's restore point, its age and how it was
/// cloned (`db 3f2a9c1d 2h old by reflink`).
fn seed_words(points: &[resurgo_api::types::WorkspacePoint]) -> String {
    if points.is_empty() {
        return "none yet".into();
    }
    points
        .iter()
        .map(|p| {
            format!(
                "{} {} {} old by {}",
                p.dataset,
                p.snapshot,
                crate::commands::workspace::seconds_words(p.age_seconds.max(0) as u64),
                p.method
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
