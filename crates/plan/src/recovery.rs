//! Recovery plans, derived from the spec: what moving a system from one site to another
//! takes, as a DAG of steps — fence the old site, bring each dataset to the target (promote a
//! standby, or restore the newest point from the target's own repository), start services in
//! dependency order behind health gates, switch routes, verify, notify. This says *what*; the
//! runbook executes it. Readiness (capabilities, capacity) is checked here, with the reason.

use std::time::Duration;

use resurgo_spec::{DatasetKind, Strategy, System};
use serde::{Deserialize, Serialize};

/// What a step does. The runbook maps each to an implementation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum StepAction {
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
    pub owner: String,
    pub description: String,
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
    let mut steps = Vec::new();
    let fence = format!("fence {from}");
    let stop_max = moving
        .iter()
        .filter_map(|(_, s)| s.stop_timeout.map(|d| d.0))
        .max()
        .unwrap_or(secs(10));
    steps.push(RecoveryStep {
        name: fence.clone(),
        depends_on: vec![],
        action: StepAction::Fence { site: from.into() },
        estimate: secs(1),
        // An unreachable old primary is fenced once its lease has expired.
        timeout: stop_max + system.failover.timing().lease_ttl + secs(5),
        owner: "resurgo".into(),
        description: format!(
            "stop writes at {from}: stop its services if it can be reached, and take the primary lease \
             for {to} (once {from}'s has expired: it fences itself before then)"
        ),
    });
    // Data first: each dataset of a moving service.
    let mut data_steps: Vec<(String, String)> = Vec::new(); // (service, step)
    for (ds_name, ds) in &system.datasets {
        let Some((svc_name, _)) = moving.iter().find(|(n, _)| **n == ds.service) else {
            continue;
        };
        let standby_here = ds.strategy == Strategy::Standby
            && system
                .services
                .get(&ds.service)
                .and_then(|s| s.standby.first())
                .is_some_and(|s| s == to);
        let has_repo = target.repository.is_some();
        let (name, action, estimate, description) = if standby_here {
            (
                format!("promote {ds_name} at {to}"),
                StepAction::Promote {
                    dataset: ds_name.clone(),
                    site: to.into(),
                },
                secs(1),
                format!("promote the warm standby of {ds_name} at {to} (after checking its lag against the RPO)"),
            )
        } else if has_repo {
            let est = if ds.kind == DatasetKind::Postgres {
                secs(10)
            } else {
                secs(2)
            };
            (
                format!("restore {ds_name} at {to}"),
                StepAction::Restore {
                    dataset: ds_name.clone(),
                    site: to.into(),
                },
                est,
                format!("restore the newest point of {ds_name} from {to}'s repository"),
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
            owner: "resurgo".into(),
            description,
        });
    }
    let assign = format!("assign {to} as primary");
    let mut assign_deps = vec![fence.clone()];
    assign_deps.extend(data_steps.iter().map(|(_, step)| step.clone()));
    steps.push(RecoveryStep {
        name: assign.clone(),
        depends_on: assign_deps,
        action: StepAction::Assign {
            from: from.into(),
            to: to.into(),
        },
        estimate: Duration::from_millis(50),
        timeout: secs(10),
        owner: "resurgo".into(),
        description: format!("make {to} the primary site (epoch + 1); {from} may serve again only as standby"),
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
        steps.push(RecoveryStep {
            name: format!("start {name} at {to}"),
            depends_on: deps,
            action: StepAction::Start {
                service: (*name).clone(),
                site: to.into(),
            },
            estimate: secs(1),
            timeout: start_timeout,
            owner: "resurgo".into(),
            description: format!("start {name} at {to} ({}) and wait until healthy", target.address),
        });
    }
    let mut route_steps = Vec::new();
    for (route_name, route) in &system.routes {
        if !moving.iter().any(|(n, _)| **n == route.service) {
            continue;
        }
        let name = format!("switch route {route_name} to {to}");
        route_steps.push(name.clone());
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
            owner: "resurgo".into(),
            description: format!("point {route_name} ({:?}) at {to}", route.kind).to_lowercase(),
        });
    }
    let mut verify_deps = route_steps.clone();
    if verify_deps.is_empty() {
        verify_deps = moving.iter().map(|(n, _)| format!("start {n} at {to}")).collect();
    }
    steps.push(RecoveryStep {
        name: "verify".into(),
        depends_on: verify_deps,
        action: StepAction::Verify,
        estimate: secs(1),
        timeout: secs(30),
        owner: "on-call".into(),
        description: "a request through each route answers healthy from the new site".into(),
    });
    steps.push(RecoveryStep {
        name: "notify".into(),
        depends_on: vec!["verify".into()],
        action: StepAction::Notify,
        estimate: Duration::ZERO,
        timeout: secs(10),
        owner: "on-call".into(),
        description: "tell the people who care, with RTO and RPO".into(),
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
        assert_eq!(steps[5].depends_on, ["start web at b"]);
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
}
