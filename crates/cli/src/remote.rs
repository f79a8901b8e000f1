//! Reaching the sites through their agents' APIs: what the commands do when the spec declares
//! `api` (every site its own host). Nothing here reads a site's files or the coordination
//! store: an agent that does not answer leaves its site `unknown`.

use std::time::Duration;

use anyhow::Context as _;
use resurgo_api::types::{RoleStatus, SiteReport};
use resurgo_api::{Client, ClientError, Credentials, TlsFiles};
use resurgo_spec::System;

use crate::common::SpecArgs;

use resurgo_controller::fleet::ask_each;
pub use resurgo_controller::fleet::current;

/// How long a request to an agent may take before its site counts as unknown.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The API client with this host's credentials: the TLS folder (`--tls`, else the spec's
/// `api.tls`), and a client certificate there or a bearer token (RESURGO_API_TOKEN,
/// `--token-file`, else the spec's `api.token`).
pub fn client(spec: &SpecArgs, system: &System, timeout: Duration) -> anyhow::Result<Client> {
    let api = system.api.as_ref().context("the spec declares no `api`")?;
    let tls = TlsFiles::new(spec.tls.clone().unwrap_or_else(|| api.tls.clone().into()));
    let token = match (std::env::var("RESURGO_API_TOKEN").ok(), &spec.token_file, &api.token) {
        (Some(token), _, _) => Some(token),
        (None, Some(file), _) => Some(
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the token file {}", file.display()))?
                .trim_end()
                .to_string(),
        ),
        (None, None, Some(secret)) => resurgo_provider::read_secret(secret).ok(),
        (None, None, None) => None,
    };
    anyhow::ensure!(
        token.is_some() || tls.has_identity(),
        "no credentials for the agents: put a client certificate (cert.pem, key.pem) in {} — `resurgo certs` makes one — or give the bearer token (RESURGO_API_TOKEN or --token-file)",
        tls.dir.display()
    );
    Ok(Client::new(&Credentials { tls, token }, timeout)?)
}

/// Where site `site`'s agent answers.
pub fn address(system: &System, site: &str) -> anyhow::Result<String> {
    system
        .api_address(site)
        .with_context(|| format!("no site `{site}` with an API address in the spec"))
}

/// The workspaces at each site (`only`, or every site), asked of their agents at once
/// (`GET /v1/workspaces`), in the spec's order.
pub fn workspaces(
    client: &Client,
    system: &System,
    only: Option<&str>,
) -> Vec<(String, Result<resurgo_api::types::Workspaces, ClientError>)> {
    let sites: Vec<&String> = system.sites.keys().filter(|s| only.is_none_or(|o| o == *s)).collect();
    ask_each(client, system, &sites, |client, addr| {
        client.get(addr, "/v1/workspaces")
    })
}

/// What [`start_and_follow`] prints on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// Each step as it ends, then the outcome, for people.
    Text,
    /// The run, as JSON, once it ends.
    Json,
    /// Nothing (a drill's failback: the drill prints its own report).
    Quiet,
}

impl Echo {
    pub fn json(json: bool) -> Echo {
        if json {
            Echo::Json
        } else {
            Echo::Text
        }
    }
}

/// Asks `to`'s agent to run the move of the services active at `from` (a failover or a
/// failback), then follows the run's journal until it ends, printing each step as it
/// finishes. An agent killed mid-run resumes the run when it restarts: the journal is asked
/// again until `wait` has passed.
#[allow(clippy::too_many_arguments)]
pub fn start_and_follow(
    client: &Client,
    written: &System,
    current: &System,
    roles: &[RoleStatus],
    kind: resurgo_runbook::plan::PlanKind,
    from: &str,
    to: &str,
    accept_data_loss: bool,
    wait: Duration,
    echo: Echo,
) -> anyhow::Result<bool> {
    use resurgo_api::types::{RunStarted, Runs};
    use resurgo_runbook::run::{RunOutcome, StepOutcome};
    let text = echo == Echo::Text;
    let start = resurgo_controller::fleet::move_request(written, current, roles, kind, from, to, accept_data_loss)
        .with_context(|| format!("no service is active at `{from}`"))?;
    let addr = address(written, to)?;
    // The runs `to` knows already: if its agent dies before it answers, the run it may have
    // begun is the new one of this move once it answers again.
    let known: Vec<String> = client
        .get::<Runs>(&addr, "/v1/runs")
        .map(|r| r.runs.into_iter().map(|r| r.report.run).collect())
        .unwrap_or_default();
    let asked = client.post::<_, RunStarted>(&addr, "/v1/runs", &start);
    let started = match asked {
        Ok(started) => started,
        Err(e @ ClientError::Unreachable { .. }) => {
            eprintln!("{e}; asking `{to}`'s agent again whether the {kind} began");
            let plan = format!("{kind}-{from}-to-{to}");
            // Asked until the agent answers (it may be restarting), then its answer stands.
            let until = std::time::Instant::now() + wait;
            let begun = loop {
                if let Ok(runs) = client.get::<Runs>(&addr, "/v1/runs") {
                    break runs
                        .runs
                        .into_iter()
                        .find(|r| r.report.plan == plan && !known.contains(&r.report.run))
                        .map(|r| RunStarted { run: r.report.run });
                }
                if std::time::Instant::now() >= until {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(500));
            };
            match begun {
                Some(started) => started,
                None => return Err(anyhow::Error::new(e).context(format!("asking `{to}`'s agent to run the {kind}"))),
            }
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("asking `{to}`'s agent to run the {kind}"))),
    };
    if text {
        println!("run {} started by `{to}`'s agent", started.run);
    }
    let deadline = std::time::Instant::now() + wait;
    let mut printed = 0;
    let mut lost = false;
    let path = format!("/v1/runs/{}", started.run);
    loop {
        match client.get::<Runs>(&addr, &path) {
            Ok(mut runs) => {
                if lost && text {
                    println!("`{to}`'s agent answers again");
                }
                lost = false;
                let Some(run) = runs.runs.pop() else {
                    anyhow::bail!("`{to}`'s agent no longer knows run {}", started.run);
                };
                let report = &run.report;
                // Steps end in order: print each once it has ended.
                while printed < report.steps.len()
                    && !matches!(
                        report.steps[printed].outcome,
                        StepOutcome::Pending | StepOutcome::Running
                    )
                {
                    let s = &report.steps[printed];
                    if text {
                        let took = s
                            .millis
                            .map(|m| format!(" ({:.2}s)", m as f64 / 1000.0))
                            .unwrap_or_default();
                        println!("{}: {}{took}", s.name, s.outcome);
                    }
                    printed += 1;
                }
                if report.outcome != RunOutcome::Incomplete {
                    if echo == Echo::Json {
                        println!("{}", serde_json::to_string_pretty(&run)?);
                    } else if text {
                        let rto = run
                            .measures
                            .as_ref()
                            .and_then(|m| m.rto_s)
                            .map(|s| format!(", RTO {s:.2}s"))
                            .unwrap_or_default();
                        println!("run {} (epoch {}{rto}): {}", report.run, report.epoch, report.outcome);
                    }
                    return Ok(report.outcome == RunOutcome::Succeeded);
                }
            }
            Err(e @ ClientError::Unreachable { .. }) => {
                if !lost {
                    eprintln!("{e}; the agent resumes the run when it restarts — still asking");
                }
                lost = true;
            }
            Err(e) => return Err(e.into()),
        }
        if std::time::Instant::now() >= deadline {
            anyhow::bail!(
                "run {} has not ended within {wait:?}; follow it with `resurgo runs {}`",
                started.run,
                started.run
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Each site's plan, asked of its agent, as one plan in the spec's order: an agent that does
/// not answer leaves its site `unknown`, with no changes. A site whose agent runs another spec
/// than `desired` is named in `stale`.
pub fn plan(
    client: &Client,
    system: &System,
    desired: &resurgo_plan::SourceId,
    options: resurgo_plan::PlanOptions,
) -> (resurgo_plan::Plan, Vec<String>) {
    use resurgo_plan::{Plan, SitePlan, Summary, PLAN_FORMAT_VERSION};
    let path = format!("/v1/plan?prune={}&max_deletes={}", options.prune, options.max_deletes);
    let sites: Vec<&String> = system.sites.keys().collect();
    let answers = ask_each(client, system, &sites, |client, addr| client.get::<Plan>(addr, &path));
    let mut summary = Summary::default();
    let mut sites = Vec::new();
    let mut hashes = Vec::new();
    let mut stale = Vec::new();
    for (site, answer) in answers {
        match answer {
            Ok(plan) => {
                if plan.source.label() != desired.label() {
                    stale.push(format!("`{site}`'s agent runs {}", plan.source.label()));
                }
                let s = plan.summary;
                summary.create += s.create;
                summary.update += s.update;
                summary.start += s.start;
                summary.delete += s.delete;
                summary.orphan += s.orphan;
                summary.unchanged += s.unchanged;
                summary.unknown_sites += s.unknown_sites;
                hashes.push(plan.observed_hash);
                sites.extend(plan.sites.into_iter().filter(|p| p.site == site));
            }
            Err(e) => {
                summary.unknown_sites += 1;
                sites.push(SitePlan {
                    site,
                    status: "unknown".into(),
                    reason: Some(e.to_string()),
                    changes: vec![],
                });
            }
        }
    }
    let plan = Plan {
        format_version: PLAN_FORMAT_VERSION,
        system: system.name.clone(),
        source: desired.clone(),
        observed_hash: hashes.join(","),
        options,
        summary,
        sites,
    };
    (plan, stale)
}

/// Asks every site's agent to apply the spec it runs, which must be `desired`; each site's
/// outcome in the spec's order. Sites where services are active go first, all at once, then the
/// others: a standby is seeded from its primary, which must be up by then.
pub fn apply(
    client: &Client,
    system: &System,
    current: &System,
    desired: &resurgo_plan::SourceId,
    options: resurgo_plan::PlanOptions,
) -> Vec<(String, Result<resurgo_api::types::Applied, ClientError>)> {
    let body = resurgo_api::types::ApplyRequest {
        desired: desired.label(),
        prune: options.prune,
        max_deletes: options.max_deletes,
    };
    let active = |site: &str| current.services.values().any(|s| s.site == site);
    let (first, then): (Vec<&String>, Vec<&String>) = system.sites.keys().partition(|s| active(s));
    let mut outcomes = Vec::new();
    for (i, wave) in [first, then].into_iter().enumerate() {
        if i == 1 {
            // A standby is seeded from its primary: the second wave waits (a while) for the
            // services active at the first wave's sites to serve.
            wait_healthy(client, system, current, &outcomes, PRIMARIES_WAIT);
        }
        outcomes.extend(ask_each(client, system, &wave, |client, addr| {
            client.post(addr, "/v1/apply", &body)
        }));
    }
    outcomes.sort_by_key(|(site, _)| system.sites.get_index_of(site));
    outcomes
}

/// How long an apply through the agents waits for the primaries to serve before it applies
/// their standbys' sites.
const PRIMARIES_WAIT: Duration = Duration::from_secs(60);

/// Waits until every service `current` places at a site applied without error in `applied`
/// is healthy there (as its agent reports it; running, if it declares no health check), or
/// `wait` has passed.
fn wait_healthy(
    client: &Client,
    system: &System,
    current: &System,
    applied: &[(String, Result<resurgo_api::types::Applied, ClientError>)],
    wait: Duration,
) {
    let sites: Vec<&String> = applied.iter().filter(|(_, o)| o.is_ok()).map(|(s, _)| s).collect();
    let until = std::time::Instant::now() + wait;
    while std::time::Instant::now() < until {
        let reports = ask_each(client, system, &sites, |client, addr| {
            client.get::<SiteReport>(addr, "/v1/site")
        });
        let serving = reports.iter().all(|(site, report)| {
            report.as_ref().is_ok_and(|r| {
                current
                    .services
                    .iter()
                    .filter(|(_, s)| &s.site == site)
                    .all(|(name, declared)| {
                        // Without a health check, running is serving.
                        r.site.services.iter().any(|s| {
                            &s.service == name
                                && (s.health == "healthy" || (declared.health.is_none() && s.process == "running"))
                        })
                    })
            })
        });
        if serving {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The spec, when it declares `api`: the command then reaches the sites through their agents.
pub fn declared(spec: &SpecArgs) -> Option<resurgo_controller::Desired> {
    spec.load().ok().filter(|d| d.loaded.system.api.is_some())
}

/// What to do with a dataset at a site's agent.
pub enum DatasetAction<'a> {
    Backup { replicate: bool },
    Verify,
    Restore { at: Option<&'a str> },
}

/// Asks `site`'s agent to do `action` with `dataset` there, with the epoch of the dataset's
/// group as the agents report it.
pub fn dataset_op(
    client: &Client,
    written: &System,
    roles: &[RoleStatus],
    site: &str,
    dataset: &str,
    action: DatasetAction<'_>,
) -> anyhow::Result<resurgo_api::types::DatasetDone> {
    let (action, at, replicate) = match action {
        DatasetAction::Backup { replicate } => ("backup", None, replicate),
        DatasetAction::Verify => ("verify", None, false),
        DatasetAction::Restore { at } => ("restore", at, false),
    };
    let ds = written
        .datasets
        .get(dataset)
        .with_context(|| format!("no dataset `{dataset}` in the spec"))?;
    let group = written
        .services
        .get(&ds.service)
        .map(|s| format!("site-{}", s.site))
        .unwrap_or_default();
    let epoch = roles.iter().find(|r| r.group == group).map_or(0, |r| r.epoch);
    let body = resurgo_api::types::DatasetRequest {
        epoch,
        at: at.map(String::from),
        replicate,
    };
    Ok(client.post(
        &address(written, site)?,
        &format!("/v1/datasets/{dataset}/{action}"),
        &body,
    )?)
}

/// The maintenance switch, asked of the first site's agent that answers (they share the
/// coordination store): `asked` changes it, `None` only reads it.
pub fn maintenance(
    client: &Client,
    system: &System,
    asked: Option<resurgo_api::types::MaintenanceRequest>,
) -> anyhow::Result<resurgo_api::types::MaintenanceState> {
    let mut last = None;
    for site in system.sites.keys() {
        let addr = address(system, site)?;
        let answer = match &asked {
            Some(body) => client.post(&addr, "/v1/maintenance", body),
            None => client.get(&addr, "/v1/maintenance"),
        };
        match answer {
            Ok(state) => return Ok(state),
            Err(e @ ClientError::Unreachable { .. }) => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("the spec declares no site"), Into::into))
}

/// A drill's faults through the agents: each order is sent to the agent of the site it goes to
/// (`/v1/faults`), which writes it down, applies it and reverts it by itself past its
/// `until`; a site is seen through its agent's report (`GET /v1/site`).
pub struct RemoteFaults {
    pub client: Client,
    /// The spec as written: where each agent answers.
    pub system: System,
}

impl RemoteFaults {
    fn addr(&self, site: &str) -> Result<String, String> {
        address(&self.system, site).map_err(|e| e.to_string())
    }
}

impl resurgo_controller::faults::FaultSink for RemoteFaults {
    fn apply(
        &self,
        _: &System,
        site: &str,
        order: &resurgo_api::types::FaultOrder,
    ) -> Result<resurgo_api::types::FaultInForce, String> {
        self.client
            .post(&self.addr(site)?, "/v1/faults", order)
            .map_err(|e| e.to_string())
    }

    fn revert(&self, _: &System, site: &str, id: &str) -> Result<bool, String> {
        self.client
            .delete::<resurgo_api::types::FaultReverted>(&self.addr(site)?, &format!("/v1/faults/{id}"))
            .map(|r| r.was_in_force)
            .map_err(|e| e.to_string())
    }

    fn in_force(&self, site: &str) -> Result<Vec<resurgo_api::types::FaultInForce>, String> {
        self.client
            .get::<resurgo_api::types::Faults>(&self.addr(site)?, "/v1/faults")
            .map(|f| f.faults)
            .map_err(|e| e.to_string())
    }

    fn observe(&self, _: &System, site: &str) -> Result<Vec<resurgo_controller::faults::Seen>, String> {
        let report: SiteReport = self
            .client
            .get(&self.addr(site)?, "/v1/site")
            .map_err(|e| e.to_string())?;
        if report.site.state != "reachable" {
            return Err(report
                .site
                .reason
                .unwrap_or_else(|| format!("its agent reports it {}", report.site.state)));
        }
        Ok(report
            .site
            .services
            .into_iter()
            .map(|s| resurgo_controller::faults::Seen {
                standby: s.role.as_deref() == Some("standby"),
                running: s.process == "running",
                service: s.service,
            })
            .collect())
    }

    fn across_hosts(&self) -> bool {
        true
    }

    fn make_sandbox(
        &self,
        _: &System,
        site: &str,
        id: &str,
        services: &[String],
    ) -> Result<resurgo_api::types::SandboxMade, String> {
        let asked = resurgo_api::types::SandboxRequest {
            id: id.to_string(),
            services: services.to_vec(),
        };
        self.client
            .post(&self.addr(site)?, "/v1/sandboxes", &asked)
            .map_err(|e| e.to_string())
    }

    fn sandbox(&self, _: &System, site: &str, id: &str) -> Result<resurgo_api::types::SandboxState, String> {
        self.client
            .get(&self.addr(site)?, &format!("/v1/sandboxes/{id}"))
            .map_err(|e| e.to_string())
    }

    fn check_sandbox(
        &self,
        _: &System,
        site: &str,
        id: &str,
        endpoints: &[resurgo_api::types::Endpoint],
    ) -> Result<resurgo_api::types::SandboxChecked, String> {
        let asked = resurgo_api::types::SandboxCheckRequest {
            endpoints: endpoints.to_vec(),
        };
        self.client
            .post(&self.addr(site)?, &format!("/v1/sandboxes/{id}/check"), &asked)
            .map_err(|e| e.to_string())
    }

    fn destroy_sandbox(&self, _: &System, site: &str, id: &str) -> Result<resurgo_api::types::SandboxState, String> {
        self.client
            .delete(&self.addr(site)?, &format!("/v1/sandboxes/{id}"))
            .map_err(|e| e.to_string())
    }
}

/// Copies every agent's events into `log` from now on, each agent's on a thread of its own
/// (`GET /v1/events`, followed again after a break from where it stopped): a drill reads
/// what the agents detected and did from its own event log, as on one machine. The streams
/// are open when this returns. An agent whose event log is `log` itself (every site in one
/// process with this state folder) is noticed by its echo and no longer followed.
pub fn mirror_events(client: &Client, system: &System, log: resurgo_controller::EventLog) {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};
    let written: Arc<Mutex<HashSet<String>>> = Arc::default();
    for site in system.sites.keys() {
        let Ok(addr) = address(system, site) else {
            continue;
        };
        let first = client
            .open(&addr, "/v1/events")
            .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>);
        let (client, log, written) = (client.clone(), log.clone(), written.clone());
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut stream = first.ok();
            let mut since: Option<u64> = None;
            loop {
                let reader = stream.take().unwrap_or_else(|| Box::new(std::io::empty()));
                for line in std::io::BufReader::new(reader).lines() {
                    let Ok(line) = line else { break };
                    if let Some(id) = line.strip_prefix("id: ") {
                        since = id.trim().parse().ok();
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        let Ok(event) = serde_json::from_str::<resurgo_controller::Event>(data) else {
                            continue;
                        };
                        let text = serde_json::to_string(&event).unwrap_or_default();
                        let mut seen = written.lock().unwrap_or_else(|e| e.into_inner());
                        if seen.contains(&text) {
                            // Our own line coming back: this agent writes the log we write.
                            return;
                        }
                        if log.append(&event).is_ok() {
                            seen.insert(text);
                        }
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
                let path = since.map_or_else(|| "/v1/events".to_string(), |n| format!("/v1/events?since={n}"));
                stream = client
                    .open(&addr, &path)
                    .ok()
                    .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>);
            }
        });
    }
}
