//! The whole system seen through the agents' site APIs — every site's report, asked of its
//! agent, and the roles they agree on — as the operator's CLI sees it (`resurgo status` when
//! the spec declares `api`) and as each agent's dashboard shows it. Nothing here reads a site's
//! files or the coordination store: an agent that does not answer leaves its site, its
//! services and what it holds of each dataset `unknown`.

use resurgo_api::types::{RoleStatus, SiteReport, Status, STATUS_FORMAT_VERSION};
use resurgo_api::{Client, ClientError};
use resurgo_spec::System;

use crate::desired::Desired;
use crate::engine::Engine;
use crate::report;

/// Each site's report, or why its agent did not give it, in the spec's order.
pub type Reports = Vec<(String, Result<SiteReport, ClientError>)>;

/// Every site's report, asked of all agents at once, in the spec's order.
pub fn site_reports(client: &Client, system: &System) -> Reports {
    let sites: Vec<&String> = system.sites.keys().collect();
    ask_each(client, system, &sites, |client, addr| {
        client.get::<SiteReport>(addr, "/v1/site")
    })
}

/// Asks each of `sites` at once — `ask(client, its agent's address)`, each on a thread of its
/// own —, in their order.
pub fn ask_each<T: Send>(
    client: &Client,
    system: &System,
    sites: &[&String],
    ask: impl Fn(&Client, &str) -> Result<T, ClientError> + Sync,
) -> Vec<(String, Result<T, ClientError>)> {
    std::thread::scope(|scope| {
        let asks: Vec<_> = sites
            .iter()
            .map(|site| {
                let (addr, ask) = (system.api_address(site).unwrap_or_default(), &ask);
                (site.to_string(), scope.spawn(move || ask(client, &addr)))
            })
            .collect();
        asks.into_iter()
            .map(|(site, asked)| {
                let answer = asked
                    .join()
                    .unwrap_or_else(|_| Err(ClientError::Setup(format!("asking site `{site}` failed"))));
                (site, answer)
            })
            .collect()
    })
}

/// The reports of every site, the roles they agree on (per group, the highest epoch any agent
/// read), and the spec with those roles applied: where services are active now.
pub fn current(client: &Client, written: &System) -> (System, Vec<RoleStatus>, Reports) {
    let reports = site_reports(client, written);
    let mut roles: Vec<RoleStatus> = Vec::new();
    for role in reports
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .flat_map(|r| r.roles.iter())
    {
        match roles.iter_mut().find(|r| r.group == role.group) {
            Some(known) if known.epoch >= role.epoch => {}
            Some(known) => *known = role.clone(),
            None => roles.push(role.clone()),
        }
    }
    let mut system = written.clone();
    for role in &roles {
        if let Some(site) = role.group.strip_prefix("site-") {
            if role.primary != site {
                resurgo_plan::recovery::apply_move(&mut system, site, &role.primary);
            }
        }
    }
    (system, roles, reports)
}

/// The status of every site through its agent (`desired`: the spec as written, which names
/// the sites and where to ask them) — the same document as `resurgo status --json` — and the
/// spec with the roles the agents agree on applied.
pub fn status(client: &Client, engine: &Engine, state: &std::path::Path, desired: &Desired) -> (Status, System) {
    let written = &desired.loaded.system;
    let (system, roles, reports) = current(client, written);
    let answered: Vec<&SiteReport> = reports.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
    let roles_error = match answered.iter().find(|r| r.roles_error.is_none()) {
        Some(_) => None,
        None => Some(
            answered
                .iter()
                .find_map(|r| r.roles_error.clone())
                .unwrap_or_else(|| "no agent answered".into()),
        ),
    };
    let maintenance = answered.iter().find_map(|r| r.maintenance.clone());
    let mut sites = Vec::new();
    let mut datasets = Vec::new();
    let mut in_sync = true;
    let mut workspaces = Vec::new();
    for (site, answer) in reports {
        match answer {
            Ok(report) => {
                in_sync &= report.in_sync;
                workspaces.extend(report.workspaces);
                datasets.push((site, Ok(report.datasets)));
                sites.push(report.site);
            }
            Err(e) => {
                in_sync = false;
                sites.push(report::unknown_site(&system, &site, &e.to_string()));
                datasets.push((site.clone(), Err(format!("site `{site}` is unknown: {e}"))));
            }
        }
    }
    let status = Status {
        format_version: STATUS_FORMAT_VERSION,
        system: system.name.clone(),
        desired: desired.source.label(),
        last_applied: None,
        in_sync,
        datasets: report::merge_datasets(engine, &system, state, &datasets),
        sites,
        maintenance,
        roles,
        roles_error,
        lent: report::capacity_lent(written, &workspaces),
        workspaces,
    };
    (status, system)
}

/// What the cost of DR is computed from (`resurgo_plan::cost`), from every site's agent
/// (`GET /v1/cost`: its repository, its replications, its runs and standbys) merged, with the
/// drills run from the state folder `state` (an operator's, or this agent's); and a note for
/// each agent that did not answer.
pub fn measured(
    client: &Client,
    system: &System,
    state: &std::path::Path,
) -> (resurgo_plan::cost::Measured, Vec<String>) {
    let mut measured = resurgo_plan::cost::Measured {
        drills: crate::cost::drills_in(state),
        drill_window_days: crate::cost::DRILL_WINDOW_DAYS,
        ..resurgo_plan::cost::Measured::default()
    };
    let mut notes = Vec::new();
    let sites: Vec<&String> = system.sites.keys().collect();
    let answers = ask_each(client, system, &sites, |client, addr| {
        client.get::<resurgo_plan::cost::CostReport>(addr, "/v1/cost")
    });
    for (site, answer) in answers {
        match answer {
            Ok(report) => measured.merge(report.measured),
            Err(e) => notes.push(format!("site `{site}` did not answer: {e}")),
        }
    }
    (measured, notes)
}

/// What a move of the services active at `from` to `to` asks of `to`'s agent (`POST
/// /v1/runs`): the group moved — named by where the spec as `written` places the services
/// active at `from` in `current` — at the epoch the agents agree on (`roles`). `None`: no
/// service is active at `from`.
pub fn move_request(
    written: &System,
    current: &System,
    roles: &[RoleStatus],
    kind: resurgo_runbook::plan::PlanKind,
    from: &str,
    to: &str,
    accept_data_loss: bool,
) -> Option<resurgo_api::types::StartRun> {
    let group = crate::roles::group_of(&crate::failover::group_site(written, current, from)?);
    Some(resurgo_api::types::StartRun {
        kind,
        from: from.into(),
        to: to.into(),
        epoch: roles.iter().find(|r| r.group == group).map_or(0, |r| r.epoch),
        accept_data_loss,
    })
}
