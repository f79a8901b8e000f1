//! Recovery plans, derived from the spec: what moving a system from one site to another
//! takes, as a DAG of steps — fence the old site, bring each dataset to the target (promote a
//! standby, or restore the newest point from the target's own repository), start services in
//! dependency order behind health gates, switch routes, verify, notify. This says *what*; the
//! runbook executes it. Readiness (capabilities, capacity) is checked here, with the reason.
//!
//! Each step also says who answers for it (the `owners` of the sites and services it is for)
//! and how a person does it by hand, should resurgo not be able to: the tabletop checklist
//! (`resurgo runbook`) is rehearsed from these.

use std::time::Duration;

use resurgo_spec::{DatasetKind, RouteKind, Strategy, System};
use serde::{Deserialize, Serialize};

/// What a step does. The runbook maps each to an implementation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum StepAction {
    /// Take the target's capacity back from its workspaces (stopped or destroyed, all at
    /// once, within a budget): a failover never waits for a workspace.
    Preempt { site: String },
    /// Stop the writable services at the old site (or demote its databases), so it cannot
    /// accept writes while the target takes over.
    Fence { site: String },
    /// Promote the warm standby of a dataset at the target.
    Promote { dataset: String, site: String },
    /// Restore the newest point of a dataset at the target, from the target's repository.
    Restore { dataset: String, site: String },
    /// Record the target as primary: the assignment's epoch moves up by compare-and-swap, and
    /// from then on the desired state places the moved services at the target.
    Assign { from: String, to: String },
    /// Start a service at the target and wait for its health check.
    Start { service: String, site: String },
    /// Point a route at the target.
    SwitchRoute { route: String, site: String },
    /// A request through every route answers.
    Verify,
    /// Tell people.
    Notify,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryStep {
    pub name: String,
    pub depends_on: Vec<String>,
    pub action: StepAction,
    pub estimate: Duration,
    pub timeout: Duration,
    /// Who answers for the step: the declared `owners` of the site or services it is for
    /// (joined by `, `), else `resurgo` for what resurgo does alone and `on-call` for people.
    pub owner: String,
    /// What resurgo does, in a sentence.
    pub description: String,
    /// How a person does it by hand, should resurgo not be able to.
    #[serde(default)]
    pub manual: Vec<Words>,
    /// The services the step is for (a drill covering one of them exercises it).
    #[serde(default)]
    pub services: Vec<String>,
}

/// Words for people, in parts: prose, and what a person types or reads exactly as it is (a
/// command, a path, a name), which renderings show as code and escape either way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Words {
    Text(String),
    Code(String),
}

/// `words` as plain text, code between backticks: for a terminal or a log.
pub fn plain(words: &[Words]) -> String {
    words
        .iter()
        .map(|w| match w {
            Words::Text(t) => t.clone(),
            Words::Code(c) => format!("`{c}`"),
        })
        .collect()
}

fn text(t: impl Into<String>) -> Words {
    Words::Text(t.into())
}

fn code(c: impl Into<String>) -> Words {
    Words::Code(c.into())
}

/// `names` as code, separated by `, `.
fn codes(names: &[String]) -> Vec<Words> {
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            out.push(text(", "));
        }
        out.push(code(n.clone()));
    }
    out
}

/// A command line as a person types it: arguments with spaces or quotes single-quoted.
fn command_line(command: &str, args: &[String]) -> String {
    let quote = |a: &str| {
        if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c)) {
            a.to_string()
        } else {
            format!("'{}'", a.replace('\'', "'\\''"))
        }
    };
    std::iter::once(quote(command))
        .chain(args.iter().map(|a| quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Who answers for something: the declared owners, else `fallback`.
fn owners(declared: &[String], fallback: &str) -> String {
    if declared.is_empty() {
        fallback.to_string()
    } else {
        declared.join(", ")
    }
}

/// Why a site cannot take over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no site `{0}` in the spec")]
    UnknownSite(String),
    #[error("`{0}` is both the site to leave and the target")]
    SameSite(String),
    #[error("no service is active at site `{0}`: nothing to move")]
    NothingToMove(String),
    #[error("site `{site}` cannot run service `{service}`: it lacks capability `{capability}`")]
    MissingCapability {
        site: String,
        service: String,
        capability: String,
    },
    #[error("site `{site}` lacks the capacity: {detail}")]
    Capacity { site: String, detail: String },
    #[error("dataset `{dataset}` cannot be brought to `{site}`: {reason}")]
    NoData {
        dataset: String,
        site: String,
        reason: String,
    },
}

/// Moves every service active at `from` that can stand by at `to` over to `to`, the old site
/// becoming its standby: what an assignment of `to` as primary means for the desired state.
pub fn apply_move(system: &mut System, from: &str, to: &str) {
    for svc in system.services.values_mut() {
        if svc.site == from && svc.standby.iter().any(|s| s == to) {
            svc.site = to.to_string();
            for s in svc.standby.iter_mut() {
                if s == to {
                    *s = from.to_string();
                }
            }
        }
    }
}

/// The steps that move every service active at `from` to `to`.
pub fn failover_steps(system: &System, from: &str, to: &str) -> Result<Vec<RecoveryStep>, Refusal> {
    let target = system.sites.get(to).ok_or_else(|| Refusal::UnknownSite(to.into()))?;
    if !system.sites.contains_key(from) {
        return Err(Refusal::UnknownSite(from.into()));
    }
    if from == to {
        return Err(Refusal::SameSite(to.into()));
    }
    let moving: Vec<(&String, &resurgo_spec::Service)> =
        system.services.iter().filter(|(_, s)| s.site == from).collect();
    if moving.is_empty() {
        return Err(Refusal::NothingToMove(from.into()));
    }
    // Readiness: every capability, and room for the target's own services plus the movers.
    for (name, svc) in &moving {
        if let Some(cap) = svc.requires.iter().find(|c| !target.capabilities.contains(c)) {
            return Err(Refusal::MissingCapability {
                site: to.into(),
                service: (*name).clone(),
                capability: cap.clone(),
            });
        }
    }
    let sum = |svcs: &mut dyn Iterator<Item = &resurgo_spec::Service>| {
        svcs.fold((0u64, 0u64), |(c, m), s| {
            (c + s.resources.cpu.0, m + s.resources.memory.0)
        })
    };
    let (cpu, mem) = sum(&mut system.services.values().filter(|s| s.site == to || s.site == from));
    if cpu > target.capacity.cpu.0 || mem > target.capacity.memory.0 {
        return Err(Refusal::Capacity {
            site: to.into(),
            detail: format!(
                "its own services and {} need cpu {}, memory {}; it has cpu {}, memory {}",
                moving.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "),
                resurgo_spec::Cpu(cpu),
                resurgo_spec::ByteSize(mem),
                target.capacity.cpu,
                target.capacity.memory
            ),
        });
    }

    let secs = Duration::from_secs;
    let source = &system.sites[from];
    let moving_names: Vec<String> = moving.iter().map(|(n, _)| (*n).clone()).collect();
    // The people of the moving services, each once, in the spec's order.
    let mut people: Vec<String> = Vec::new();
    for (_, svc) in &moving {
        for o in &svc.owners {
            if !people.contains(o) {
                people.push(o.clone());
            }
        }
    }
    let mut steps = Vec::new();
    steps.push(RecoveryStep {
        name: format!("preempt workspaces at {to}"),
        depends_on: vec![],
        action: StepAction::Preempt { site: to.into() },
        estimate: secs(1),
        timeout: secs(10),
        owner: owners(&target.owners, "resurgo"),
        description: format!(
            "take {to}'s spare capacity back from its workspaces: all stopped at once (SIGTERM, grace, SIGKILL) within a 2 s budget, lowest priority first; never waits for one"
        ),
        manual: vec![
            text(format!("on {to}'s host: ")),
            code(format!("resurgo workspace list --site {to}")),
            text(", then for each: "),
            code("resurgo workspace delete NAME"),
        ],
        services: vec![],
    });
    let fence = format!("fence {from}");
    let stop_max = moving
        .iter()
        .filter_map(|(_, s)| s.stop_timeout.map(|d| d.0))
        .max()
        .unwrap_or(secs(10));
    let lease_ttl = system.failover.timing().lease_ttl;
    let mut fence_manual = vec![
        text("stop the services at "),
        code(from),
        text(" ("),
        code(source.address.to_string()),
        text("): "),
    ];
    fence_manual.extend(codes(&moving_names));
    fence_manual.push(text(format!(
        " — on its host, or, if it cannot be reached, by powering it off or cutting it off the network; \
         keep them stopped: no write may reach {from} once {to} takes over (its own agent stops them \
         within the fencing deadline when it loses its lease, which lasts {})",
        resurgo_spec::Duration(lease_ttl)
    )));
    steps.push(RecoveryStep {
        name: fence.clone(),
        depends_on: vec![],
        action: StepAction::Fence { site: from.into() },
        estimate: secs(1),
        // An unreachable old primary is fenced once its lease has expired.
        timeout: stop_max + lease_ttl + secs(5),
        owner: owners(&source.owners, "resurgo"),
        description: format!(
            "stop writes at {from}: stop its services if it can be reached, and take the primary lease \
             for {to} (once {from}'s has expired: it fences itself before then)"
        ),
        manual: fence_manual,
        services: moving_names.clone(),
    });
    // Data first: each dataset of a moving service.
    let mut data_steps: Vec<(String, String)> = Vec::new(); // (service, step)
    for (ds_name, ds) in &system.datasets {
        let Some((svc_name, svc)) = moving.iter().find(|(n, _)| **n == ds.service) else {
            continue;
        };
        let standby_here = ds.strategy == Strategy::Standby
            && system
                .services
                .get(&ds.service)
                .and_then(|s| s.standby.first())
                .is_some_and(|s| s == to);
        let has_repo = target.repository.is_some();
        let path = ds.path.clone();
        let (name, action, estimate, description, manual) = if standby_here {
            let manual = match ds.kind {
                DatasetKind::Postgres => {
                    let mut m = vec![
                        text(format!("on {to}'s host, as the database's user: ")),
                        code(format!(
                            "pg_ctl promote -D {}",
                            path.as_deref().unwrap_or("DATA_DIRECTORY")
                        )),
                        text(", once its replay lag ("),
                        code("SELECT now() - pg_last_xact_replay_timestamp()"),
                        text(") is within the RPO"),
                    ];
                    if let Some(rpo) = ds.rpo.or(system.objectives.rpo) {
                        m.push(text(format!(" ({rpo})")));
                    }
                    m
                }
                _ => vec![
                    text(format!("make the standby copy of {ds_name} at {to} writable: ")),
                    code(path.clone().unwrap_or_else(|| ds_name.clone())),
                ],
            };
            (
                format!("promote {ds_name} at {to}"),
                StepAction::Promote {
                    dataset: ds_name.clone(),
                    site: to.into(),
                },
                secs(1),
                format!("promote the warm standby of {ds_name} at {to} (after checking its lag against the RPO)"),
                manual,
            )
        } else if has_repo {
            let est = if ds.kind == DatasetKind::Postgres {
                secs(10)
            } else {
                secs(2)
            };
            let mut manual = vec![
                code(format!("resurgo restore {ds_name} --site {to} --to EMPTY_FOLDER")),
                text(" (the newest point; "),
                code("--at TIME"),
                text(" for an earlier one), then move what it wrote into place"),
            ];
            if let Some(p) = &path {
                manual.extend([text(" as "), code(p.clone())]);
            }
            manual.extend([
                text(" for "),
                code((*svc_name).clone()),
                text(format!(
                    " at {to}, moving aside (never deleting) what is there{}",
                    if svc.user.is_some() {
                        ", owned by the service's user"
                    } else {
                        ""
                    }
                )),
            ]);
            (
                format!("restore {ds_name} at {to}"),
                StepAction::Restore {
                    dataset: ds_name.clone(),
                    site: to.into(),
                },
                est,
                format!("restore the newest point of {ds_name} from {to}'s repository"),
                manual,
            )
        } else {
            return Err(Refusal::NoData {
                dataset: ds_name.clone(),
                site: to.into(),
                reason: format!("`{to}` keeps no standby of it and has no repository"),
            });
        };
        data_steps.push(((*svc_name).clone(), name.clone()));
        steps.push(RecoveryStep {
            name,
            depends_on: vec![fence.clone()],
            action,
            estimate,
            timeout: estimate * 6 + secs(30),
            owner: owners(&svc.owners, &owners(&target.owners, "resurgo")),
            description,
            manual,
            services: vec![(*svc_name).clone()],
        });
    }
    let assign = format!("assign {to} as primary");
    let mut assign_deps = vec![fence.clone()];
    assign_deps.extend(data_steps.iter().map(|(_, step)| step.clone()));
    let mut assign_manual = vec![text(format!("from here on {to} is primary: nobody starts "))];
    assign_manual.extend(codes(&moving_names));
    assign_manual.extend([
        text(format!(
            " at {from} again (it is their standby now). resurgo records this in the coordination store \
             with the next epoch; if the store cannot be reached, wait until it can and resume the run: "
        )),
        code("resurgo runs RUN --resume"),
    ]);
    steps.push(RecoveryStep {
        name: assign.clone(),
        depends_on: assign_deps,
        action: StepAction::Assign {
            from: from.into(),
            to: to.into(),
        },
        estimate: Duration::from_millis(50),
        timeout: secs(10),
        owner: owners(&target.owners, "resurgo"),
        description: format!("make {to} the primary site (epoch + 1); {from} may serve again only as standby"),
        manual: assign_manual,
        services: moving_names.clone(),
    });
    // Services in dependency order (depends_on is acyclic: the spec says so).
    for (name, svc) in &moving {
        let mut deps = vec![assign.clone()];
        deps.extend(
            svc.depends_on
                .iter()
                .filter(|d| moving.iter().any(|(n, _)| n == d))
                .map(|d| format!("start {d} at {to}")),
        );
        let start_timeout = svc
            .health
            .as_ref()
            .and_then(|h| h.start_timeout)
            .map_or(secs(30), |d| d.0);
        let mut manual = vec![
            text(format!("on {to}'s host ({}), in ", target.address)),
            code((*name).clone()),
            text("'s folder"),
        ];
        if let Some(user) = &svc.user {
            manual.extend([text(" as "), code(user.clone())]);
        }
        if !svc.env.is_empty() {
            manual.push(text(
                " with its environment from the spec (secrets read from where it names them)",
            ));
        }
        manual.extend([text(", run "), code(command_line(&svc.command, &svc.args))]);
        match svc.health.as_ref() {
            Some(h) if h.http.is_some() => {
                let http = h.http.as_ref().expect("checked");
                manual.extend([
                    text(", then check it is healthy: "),
                    code(format!(
                        "curl -fsS http://{}:{}{}",
                        target.address, http.port, http.path
                    )),
                ]);
            }
            Some(h) if h.tcp.is_some() => {
                let tcp = h.tcp.as_ref().expect("checked");
                manual.extend([
                    text(", then check it accepts connections: "),
                    code(format!("nc -z {} {}", target.address, tcp.port)),
                ]);
            }
            Some(h) if h.exec.is_some() => {
                let exec = h.exec.as_ref().expect("checked");
                manual.extend([
                    text(", then check it is healthy: "),
                    code(exec.command.join(" ")),
                    text(" exits 0"),
                ]);
            }
            _ => manual.push(text(", then check it keeps running")),
        }
        steps.push(RecoveryStep {
            name: format!("start {name} at {to}"),
            depends_on: deps,
            action: StepAction::Start {
                service: (*name).clone(),
                site: to.into(),
            },
            estimate: secs(1),
            timeout: start_timeout,
            owner: owners(&svc.owners, "resurgo"),
            description: format!("start {name} at {to} ({}) and wait until healthy", target.address),
            manual,
            services: vec![(*name).clone()],
        });
    }
    let mut route_steps = Vec::new();
    let mut verify_manual = vec![text(format!("check that each route answers from {to}: "))];
    for (route_name, route) in &system.routes {
        let Some((_, svc)) = moving.iter().find(|(n, _)| **n == route.service) else {
            continue;
        };
        let name = format!("switch route {route_name} to {to}");
        route_steps.push(name.clone());
        let port = route.port.or_else(|| svc.ports.first().copied()).unwrap_or(0);
        let new_address = format!("{}:{port}", target.address);
        let manual = match (&route.kind, &route.listen, &route.dns, &route.hook) {
            (RouteKind::Dns, _, Some(dns), _) => vec![
                text(format!("update the DNS record {} (zone {}) at ", dns.name, dns.zone)),
                code(dns.server.to_string()),
                text(format!(" to {}, with ", target.address)),
                code(format!("nsupdate -y hmac-sha256:{}:SECRET", dns.key.name)),
                text(": "),
                code(format!(
                    "update delete {name} A; update add {name} {ttl} A {address}; send",
                    name = dns.name,
                    ttl = dns.ttl.unwrap_or(30),
                    address = target.address
                )),
            ],
            (RouteKind::Hook, _, _, Some(hook)) => vec![
                text("run "),
                code(command_line(&hook.command, &hook.args)),
                text(" with "),
                code(format!(
                    "RESURGO_ROUTE={route_name} RESURGO_NEW_ADDRESS={new_address} RESURGO_EPOCH=EPOCH"
                )),
                text(" set"),
            ],
            (_, Some(listen), _, _) => vec![
                text("the built-in proxy at "),
                code(listen.to_string()),
                text(format!(
                    " follows the service by itself while resurgo's controller or {to}'s agent runs; without them, \
                     point its clients at "
                )),
                code(new_address.clone()),
            ],
            _ => vec![text("point its clients at "), code(new_address.clone())],
        };
        if route_steps.len() > 1 {
            verify_manual.push(text(", "));
        }
        verify_manual.push(match (&route.listen, &route.dns) {
            (_, Some(dns)) => code(format!("dig +short {}", dns.name)),
            (Some(listen), None) => code(format!("curl -fsS http://{listen}/")),
            (None, None) => code(route_name.clone()),
        });
        steps.push(RecoveryStep {
            name,
            depends_on: vec![format!("start {} at {to}", route.service)],
            action: StepAction::SwitchRoute {
                route: route_name.clone(),
                site: to.into(),
            },
            estimate: Duration::from_millis(100),
            // A hook may take its own timeout (default 60 s); the step outlasts it.
            timeout: route
                .hook
                .as_ref()
                .map_or(secs(30), |h| h.timeout.map_or(secs(60), |t| t.0) + secs(10)),
            owner: owners(&svc.owners, "resurgo"),
            description: format!("point {route_name} ({:?}) at {to}", route.kind).to_lowercase(),
            manual,
            services: vec![route.service.clone()],
        });
    }
    let mut verify_deps = route_steps.clone();
    if verify_deps.is_empty() {
        verify_deps = moving.iter().map(|(n, _)| format!("start {n} at {to}")).collect();
        verify_manual = vec![text(format!(
            "no route leads to these services: check each one's health check answers at {to}"
        ))];
    }
    steps.push(RecoveryStep {
        name: "verify".into(),
        depends_on: verify_deps,
        action: StepAction::Verify,
        estimate: secs(1),
        timeout: secs(30),
        owner: owners(&people, "on-call"),
        description: "a request through each route answers healthy from the new site".into(),
        manual: verify_manual,
        services: moving_names.clone(),
    });
    let mut notify_manual = vec![text("tell the people who care that ")];
    notify_manual.extend(codes(&moving_names));
    notify_manual.extend([
        text(format!(" moved from {from} to {to}, with the RTO and RPO that ")),
        code("resurgo runs"),
        text(" shows"),
    ]);
    steps.push(RecoveryStep {
        name: "notify".into(),
        depends_on: vec!["verify".into()],
        action: StepAction::Notify,
        estimate: Duration::ZERO,
        timeout: secs(10),
        owner: owners(&people, "on-call"),
        description: "tell the people who care, with RTO and RPO".into(),
        manual: notify_manual,
        services: moving_names,
    });
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system(extra_site_b: &str, extra: &str) -> System {
        let text = format!(
            "apiVersion: resurgo.dev/v1alpha1
sites:
  a:
    provider: local
    address: 127.0.1.1
    capacity: {{ cpu: 4, memory: 4Gi }}
    capabilities: [postgres]
    repository: {{ url: /r/a, password: {{ env: P }} }}
  b:
    provider: local
    address: 127.0.2.1
    capacity: {{ cpu: 4, memory: 4Gi }}
    repository: {{ url: /r/b, password: {{ env: P }} }}
{extra_site_b}services:
  db:
    command: postgres
    ports: [5432]
    site: a
    standby: [b]
  web:
    command: web
    ports: [8080]
    depends_on: [db]
    site: a
    standby: [b]
datasets:
  notes:
    service: web
    type: sqlite
    path: notes.db
{extra}routes:
  web:
    service: web
    type: proxy
    listen: 127.0.0.1:8080
"
        );
        match resurgo_spec::load(
            vec![resurgo_spec::SourceFile {
                name: "s.yaml".into(),
                text,
            }],
            &[],
        ) {
            Ok(l) => l.system,
            Err(e) => panic!("{e}"),
        }
    }

    fn names(steps: &[RecoveryStep]) -> Vec<&str> {
        steps.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn failover_fences_brings_data_starts_in_order_switches_and_verifies() {
        let steps = failover_steps(&system("", ""), "a", "b").unwrap();
        assert_eq!(
            names(&steps),
            [
                "preempt workspaces at b",
                "fence a",
                "restore notes at b",
                "assign b as primary",
                "start db at b",
                "start web at b",
                "switch route web to b",
                "verify",
                "notify"
            ]
        );
        let web = steps.iter().find(|s| s.name == "start web at b").unwrap();
        assert_eq!(web.depends_on, ["assign b as primary", "start db at b"]);
        let assign = steps.iter().find(|s| s.name == "assign b as primary").unwrap();
        assert_eq!(assign.depends_on, ["fence a", "restore notes at b"]);
        assert_eq!(steps[6].depends_on, ["start web at b"]);
    }

    #[test]
    fn a_standby_is_promoted_instead_of_restored() {
        let extra =
            "  orders:\n    service: db\n    type: postgres\n    connection: host=127.0.1.1\n    strategy: standby\n";
        let text_system = system("", extra);
        let steps = failover_steps(&text_system, "a", "b").unwrap();
        let promote = steps.iter().find(|s| s.name == "promote orders at b").unwrap();
        assert_eq!(
            promote.action,
            StepAction::Promote {
                dataset: "orders".into(),
                site: "b".into()
            }
        );
        let assign = steps.iter().find(|s| s.name == "assign b as primary").unwrap();
        assert!(assign.depends_on.contains(&"promote orders at b".to_string()));
    }

    #[test]
    fn a_move_swaps_active_and_standby() {
        let mut sys = system("", "");
        apply_move(&mut sys, "a", "b");
        assert_eq!(sys.services["web"].site, "b");
        assert_eq!(sys.services["web"].standby, ["a"]);
        apply_move(&mut sys, "b", "a");
        assert_eq!(sys.services["web"].site, "a");
        assert_eq!(sys.services["web"].standby, ["b"]);
    }

    #[test]
    fn a_site_that_cannot_take_over_is_refused_with_the_reason() {
        let sys = system("", "");
        let mut tight = sys.clone();
        tight.services.get_mut("db").unwrap().requires = vec!["postgres".into()];
        assert_eq!(
            failover_steps(&tight, "a", "b").unwrap_err().to_string(),
            "site `b` cannot run service `db`: it lacks capability `postgres`"
        );
        let mut full = sys.clone();
        full.services.get_mut("web").unwrap().resources.cpu = resurgo_spec::Cpu(5000);
        assert!(failover_steps(&full, "a", "b")
            .unwrap_err()
            .to_string()
            .starts_with("site `b` lacks the capacity"));
        assert_eq!(
            failover_steps(&sys, "a", "a").unwrap_err(),
            Refusal::SameSite("a".into())
        );
        assert_eq!(
            failover_steps(&sys, "b", "a").unwrap_err(),
            Refusal::NothingToMove("b".into())
        );
    }

    #[test]
    fn step_owners_come_from_the_sites_and_services_they_are_for() {
        let mut sys = system("", "");
        let steps = failover_steps(&sys, "a", "b").unwrap();
        let owner = |steps: &[RecoveryStep], name: &str| steps.iter().find(|s| s.name == name).unwrap().owner.clone();
        assert_eq!(owner(&steps, "fence a"), "resurgo", "nothing declared: resurgo does it");
        assert_eq!(owner(&steps, "verify"), "on-call");
        sys.sites.get_mut("a").unwrap().owners = vec!["ops-a".into()];
        sys.sites.get_mut("b").unwrap().owners = vec!["ops-b".into()];
        sys.services.get_mut("web").unwrap().owners = vec!["team-web".into(), "alice".into()];
        sys.services.get_mut("db").unwrap().owners = vec!["dba".into(), "alice".into()];
        let steps = failover_steps(&sys, "a", "b").unwrap();
        assert_eq!(owner(&steps, "fence a"), "ops-a");
        assert_eq!(owner(&steps, "restore notes at b"), "team-web, alice");
        assert_eq!(owner(&steps, "assign b as primary"), "ops-b");
        assert_eq!(owner(&steps, "start db at b"), "dba, alice");
        assert_eq!(owner(&steps, "switch route web to b"), "team-web, alice");
        assert_eq!(owner(&steps, "verify"), "dba, alice, team-web", "each person once");
        let verify = steps.iter().find(|s| s.name == "verify").unwrap();
        assert_eq!(verify.services, ["db", "web"]);
        let restore = steps.iter().find(|s| s.name == "restore notes at b").unwrap();
        assert_eq!(restore.services, ["web"]);
    }

    #[test]
    fn every_step_says_how_a_person_does_it_by_hand() {
        let extra =
            "  orders:\n    service: db\n    type: postgres\n    path: /srv/pg\n    connection: host=127.0.1.1\n    strategy: standby\n    rpo: 1m\n";
        let steps = failover_steps(&system("", extra), "a", "b").unwrap();
        let manual = |name: &str| plain(&steps.iter().find(|s| s.name == name).unwrap().manual);
        for s in &steps {
            assert!(!s.manual.is_empty(), "{} has no manual fallback", s.name);
        }
        assert_eq!(
            manual("fence a"),
            "stop the services at `a` (`127.0.1.1`): `db`, `web` — on its host, or, if it cannot be reached, \
             by powering it off or cutting it off the network; keep them stopped: no write may reach a once b \
             takes over (its own agent stops them within the fencing deadline when it loses its lease, which \
             lasts 10s)"
        );
        assert!(manual("promote orders at b").contains("`pg_ctl promote -D /srv/pg`"));
        assert!(manual("promote orders at b").ends_with("is within the RPO (1m)"));
        assert!(manual("restore notes at b")
            .starts_with("`resurgo restore notes --site b --to EMPTY_FOLDER` (the newest point; `--at TIME`"));
        assert!(manual("restore notes at b").contains(" as `notes.db` for `web` at b"));
        assert!(
            manual("start web at b").contains("run `web`"),
            "{}",
            manual("start web at b")
        );
        assert_eq!(
            manual("switch route web to b"),
            "the built-in proxy at `127.0.0.1:8080` follows the service by itself while resurgo's controller \
             or b's agent runs; without them, point its clients at `127.0.2.1:8080`"
        );
        assert_eq!(
            manual("verify"),
            "check that each route answers from b: `curl -fsS http://127.0.0.1:8080/`"
        );
    }

    #[test]
    fn a_command_line_is_quoted_as_a_person_types_it() {
        assert_eq!(
            command_line(
                "/usr/bin/app",
                &["--port".into(), "80".into(), "a b".into(), "it's".into()]
            ),
            "/usr/bin/app --port 80 'a b' 'it'\\''s'"
        );
    }
}
