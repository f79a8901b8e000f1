//! Desired vs observed → a plan: per site, in dependency order, what to create, update (and
//! which fields), start, delete, or leave alone. A plan is bound to the spec it came from and
//! to a hash of the observed state, so a saved plan can be refused once the world has moved.

use std::collections::HashMap;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::desired::{Role, RunConfig};
use crate::observed::{observed_hash, ObservedSite, ProcessState, SiteState};

/// Version of the plan's JSON format (`resurgo plan --json`, `--out FILE`; its JSON Schema is
/// `schema/plan.schema.json`). Bump on any incompatible change: a removed or renamed field, a
/// changed meaning. A new field is compatible.
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// Where the desired state came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SourceId {
    /// `git` or `folder`.
    pub kind: String,
    /// Repository URL or path, or folder path.
    pub location: String,
    /// The commit SHA (Git only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// SHA-256 over the spec files.
    pub digest: String,
}

impl SourceId {
    /// The short label events and reports carry: the commit, or `folder:<digest>`.
    pub fn label(&self) -> String {
        match &self.commit {
            Some(c) => c.clone(),
            None => format!("folder:{}", &self.digest[..12.min(self.digest.len())]),
        }
    }
}

/// How the plan was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlanOptions {
    /// Delete owned services that the spec no longer declares.
    pub prune: bool,
    /// Refuse a plan that would delete more than this many services.
    pub max_deletes: usize,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            prune: false,
            max_deletes: 5,
        }
    }
}

/// What the plan does to one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Not running anywhere resurgo knows of: start it.
    Create,
    /// Running with a different config: restart it with the desired one.
    Update,
    /// Known, same config, but not running: start it again.
    Start,
    /// Owned, no longer declared, prune on: stop and forget it.
    Delete,
    /// Owned, no longer declared, prune off: reported, left alone.
    Orphan,
    /// Running as desired: nothing to do.
    Unchanged,
}

/// One service at one site: what to do and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Change {
    /// The service's name in the spec.
    pub service: String,
    /// What to do to it.
    pub action: Action,
    /// For `update`: the fields that differ.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Why, in words (`process exited: killed by SIGKILL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Dependency depth: wave 0 needs nothing, wave n needs something in wave n-1.
    pub wave: usize,
    /// The config to run (create, update, start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RunConfig>,
}

/// The changes at one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SitePlan {
    /// The site's name in the spec.
    pub site: String,
    /// `reachable` or `unknown` (an unknown site gets no changes).
    pub status: String,
    /// Why the site is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Every service the site should or does run, in dependency order (`unchanged` ones too).
    pub changes: Vec<Change>,
}

/// How many changes of each kind, over all sites.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// Services to start that run nowhere.
    pub create: usize,
    /// Services to restart with another config.
    pub update: usize,
    /// Services to start again with the same config.
    pub start: usize,
    /// Services to stop and forget (`--prune`).
    pub delete: usize,
    /// Services no longer declared, left alone.
    pub orphan: usize,
    /// Services running as desired.
    pub unchanged: usize,
    /// Sites that could not be observed.
    pub unknown_sites: usize,
}

impl Summary {
    /// Changes the plan would make (orphans are only reported).
    pub fn changes(&self) -> usize {
        self.create + self.update + self.start + self.delete
    }
}

/// What `resurgo plan` would change, per site, bound to the spec it came from and to the
/// observed state: `resurgo apply FILE` refuses it once either has moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    /// [`PLAN_FORMAT_VERSION`]: bumped on any incompatible change of this format.
    pub format_version: u32,
    /// The system's name in the spec.
    pub system: String,
    /// The spec the plan was made from.
    pub source: SourceId,
    /// SHA-256 of the observed state the plan was made against.
    pub observed_hash: String,
    /// How the plan was asked for.
    pub options: PlanOptions,
    /// How many changes of each kind.
    pub summary: Summary,
    /// One entry per site, in the spec's order.
    pub sites: Vec<SitePlan>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the plan would delete {count} services ({names}), more than the cap of {cap}; review them, then raise --max-deletes")]
    TooManyDeletes { count: usize, cap: usize, names: String },
}

/// Dependency depth of every service (`depends_on` is validated acyclic by the spec). A
/// standby instance comes one wave after its active one (see [`wave_of`]).
fn waves(desired: &IndexMap<String, IndexMap<String, RunConfig>>) -> HashMap<String, usize> {
    let deps: HashMap<&str, &[String]> = desired
        .values()
        .flat_map(|svcs| svcs.values())
        .map(|c| (c.service.as_str(), c.depends_on.as_slice()))
        .collect();
    fn depth<'a>(
        s: &'a str,
        deps: &HashMap<&'a str, &'a [String]>,
        memo: &mut HashMap<String, usize>,
        guard: usize,
    ) -> usize {
        if let Some(d) = memo.get(s) {
            return *d;
        }
        let d = if guard > deps.len() {
            0
        } else {
            deps.get(s)
                .map(|ds| {
                    ds.iter()
                        .map(|d| depth(d, deps, memo, guard + 1) + 1)
                        .max()
                        .unwrap_or(0)
                })
                .unwrap_or(0)
        };
        memo.insert(s.to_string(), d);
        d
    }
    let mut memo = HashMap::new();
    for s in deps.keys() {
        depth(s, &deps, &mut memo, 0);
    }
    memo
}

/// The wave of one instance: its service's depth, plus one for a standby instance, which
/// starts only once its active instance is healthy.
fn wave_of(waves: &HashMap<String, usize>, config: &RunConfig) -> usize {
    let depth = waves.get(&config.service).copied().unwrap_or(0);
    match config.role {
        Role::Active => depth,
        Role::Standby => depth + 1,
    }
}

/// Builds the plan that turns `observed` into `desired`.
pub fn make_plan(
    system: &str,
    source: SourceId,
    desired: &IndexMap<String, IndexMap<String, RunConfig>>,
    observed: &[ObservedSite],
    options: PlanOptions,
) -> Result<Plan, PlanError> {
    let waves = waves(desired);
    let mut summary = Summary::default();
    let mut sites = Vec::new();
    let empty = IndexMap::new();
    let mut site_names: Vec<&String> = desired.keys().collect();
    for o in observed {
        if !desired.contains_key(&o.site) {
            site_names.push(&o.site);
        }
    }
    for site in site_names {
        let want = desired.get(site).unwrap_or(&empty);
        let seen = observed.iter().find(|o| &o.site == site);
        let services = match seen.map(|o| &o.state) {
            Some(SiteState::Unknown { reason }) => {
                summary.unknown_sites += 1;
                sites.push(SitePlan {
                    site: site.clone(),
                    status: "unknown".into(),
                    reason: Some(reason.clone()),
                    changes: Vec::new(),
                });
                continue;
            }
            Some(SiteState::Reachable { services }) => services.as_slice(),
            None => &[],
        };
        let mut changes = Vec::new();
        for (name, config) in want {
            let wave = wave_of(&waves, config);
            let change = match services.iter().find(|s| &s.service == name) {
                None => Change {
                    service: name.clone(),
                    action: Action::Create,
                    fields: vec![],
                    reason: None,
                    wave,
                    config: Some(config.clone()),
                },
                Some(obs) if obs.config_hash != config.hash() => Change {
                    service: name.clone(),
                    action: Action::Update,
                    fields: obs.config.diff(config),
                    reason: None,
                    wave,
                    config: Some(config.clone()),
                },
                Some(obs) => match &obs.process {
                    ProcessState::Running { .. } => Change {
                        service: name.clone(),
                        action: Action::Unchanged,
                        fields: vec![],
                        reason: None,
                        wave,
                        config: None,
                    },
                    ProcessState::Exited { how, .. } => Change {
                        service: name.clone(),
                        action: Action::Start,
                        fields: vec![],
                        reason: Some(format!("process exited: {how}")),
                        wave,
                        config: Some(config.clone()),
                    },
                    ProcessState::Stopped => Change {
                        service: name.clone(),
                        action: Action::Start,
                        fields: vec![],
                        reason: Some("stopped".into()),
                        wave,
                        config: Some(config.clone()),
                    },
                },
            };
            changes.push(change);
        }
        for obs in services.iter().filter(|s| !want.contains_key(&s.service)) {
            let action = if options.prune { Action::Delete } else { Action::Orphan };
            changes.push(Change {
                service: obs.service.clone(),
                action,
                fields: vec![],
                reason: Some("no longer declared at this site".into()),
                wave: usize::MAX,
                config: None,
            });
        }
        changes.sort_by_key(|c| c.wave);
        for c in &changes {
            match c.action {
                Action::Create => summary.create += 1,
                Action::Update => summary.update += 1,
                Action::Start => summary.start += 1,
                Action::Delete => summary.delete += 1,
                Action::Orphan => summary.orphan += 1,
                Action::Unchanged => summary.unchanged += 1,
            }
        }
        sites.push(SitePlan {
            site: site.clone(),
            status: "reachable".into(),
            reason: None,
            changes,
        });
    }
    if summary.delete > options.max_deletes {
        let names: Vec<String> = sites
            .iter()
            .flat_map(|s| {
                s.changes
                    .iter()
                    .filter(|c| c.action == Action::Delete)
                    .map(move |c| format!("{}@{}", c.service, s.site))
            })
            .collect();
        return Err(PlanError::TooManyDeletes {
            count: summary.delete,
            cap: options.max_deletes,
            names: names.join(", "),
        });
    }
    Ok(Plan {
        format_version: PLAN_FORMAT_VERSION,
        system: system.to_string(),
        source,
        observed_hash: observed_hash(observed),
        options,
        summary,
        sites,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::{Health, ObservedService};

    fn config(service: &str, site: &str, deps: &[&str]) -> RunConfig {
        RunConfig {
            service: service.into(),
            site: site.into(),
            address: "127.0.1.1".parse().unwrap(),
            command: "sleep".into(),
            args: vec!["100".into()],
            env: IndexMap::new(),
            workdir: None,
            ports: vec![],
            health: None,
            stop_timeout_ms: 1000,
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            role: Role::Active,
            user: None,
        }
    }

    fn source() -> SourceId {
        SourceId {
            kind: "folder".into(),
            location: "x".into(),
            commit: None,
            digest: "d".repeat(64),
        }
    }

    fn observed(site: &str, services: Vec<ObservedService>) -> ObservedSite {
        ObservedSite {
            site: site.into(),
            state: SiteState::Reachable { services },
        }
    }

    fn running(c: &RunConfig) -> ObservedService {
        ObservedService {
            service: c.service.clone(),
            config: c.clone(),
            config_hash: c.hash(),
            process: ProcessState::Running {
                pid: 42,
                since: "t".into(),
            },
            health: Health::Healthy,
            restarts: 0,
        }
    }

    fn desired(configs: Vec<RunConfig>) -> IndexMap<String, IndexMap<String, RunConfig>> {
        let mut out: IndexMap<String, IndexMap<String, RunConfig>> = IndexMap::new();
        for c in configs {
            out.entry(c.site.clone()).or_default().insert(c.service.clone(), c);
        }
        out
    }

    #[test]
    fn creates_in_dependency_order() {
        let want = desired(vec![
            config("web", "a", &["api"]),
            config("api", "a", &["db"]),
            config("db", "a", &[]),
        ]);
        let plan = make_plan("s", source(), &want, &[observed("a", vec![])], PlanOptions::default()).unwrap();
        let order: Vec<(&str, usize)> = plan.sites[0]
            .changes
            .iter()
            .map(|c| (c.service.as_str(), c.wave))
            .collect();
        assert_eq!(order, [("db", 0), ("api", 1), ("web", 2)]);
        assert_eq!(plan.summary.create, 3);
    }

    #[test]
    fn update_names_the_fields_that_differ() {
        let old = config("web", "a", &[]);
        let mut new = old.clone();
        new.args = vec!["200".into()];
        let plan = make_plan(
            "s",
            source(),
            &desired(vec![new]),
            &[observed("a", vec![running(&old)])],
            PlanOptions::default(),
        )
        .unwrap();
        assert_eq!(plan.sites[0].changes[0].action, Action::Update);
        assert_eq!(plan.sites[0].changes[0].fields, ["args"]);
    }

    #[test]
    fn a_new_user_is_drift_and_no_user_keeps_the_old_hash() {
        let old = config("web", "a", &[]);
        let mut new = old.clone();
        new.user = Some("web".into());
        assert_eq!(old.diff(&new), ["user"]);
        assert!(!serde_json::to_string(&old).unwrap().contains("user"));
    }

    #[test]
    fn dead_process_is_started_and_running_one_is_unchanged() {
        let a = config("a", "s1", &[]);
        let b = config("b", "s1", &[]);
        let mut dead = running(&b);
        dead.process = ProcessState::Exited {
            how: "killed by SIGKILL".into(),
            at: "t".into(),
        };
        let plan = make_plan(
            "s",
            source(),
            &desired(vec![a.clone(), b]),
            &[observed("s1", vec![running(&a), dead])],
            PlanOptions::default(),
        )
        .unwrap();
        let actions: Vec<&Action> = plan.sites[0].changes.iter().map(|c| &c.action).collect();
        assert_eq!(actions, [&Action::Unchanged, &Action::Start]);
        assert_eq!(
            plan.sites[0].changes[1].reason.as_deref(),
            Some("process exited: killed by SIGKILL")
        );
    }

    #[test]
    fn undeclared_services_are_orphans_unless_pruning_and_pruning_is_capped() {
        let gone: Vec<ObservedService> = (0..3).map(|i| running(&config(&format!("old{i}"), "a", &[]))).collect();
        let seen = [observed("a", gone)];
        let want = desired(vec![]);
        let plan = make_plan("s", source(), &want, &seen, PlanOptions::default()).unwrap();
        assert_eq!(plan.summary.orphan, 3);
        assert_eq!(plan.summary.changes(), 0);
        let pruned = make_plan(
            "s",
            source(),
            &want,
            &seen,
            PlanOptions {
                prune: true,
                max_deletes: 3,
            },
        )
        .unwrap();
        assert_eq!(pruned.summary.delete, 3);
        let err = make_plan(
            "s",
            source(),
            &want,
            &seen,
            PlanOptions {
                prune: true,
                max_deletes: 2,
            },
        )
        .unwrap_err();
        assert!(matches!(err, PlanError::TooManyDeletes { count: 3, cap: 2, .. }));
    }

    #[test]
    fn unknown_site_gets_no_changes_and_does_not_block_others() {
        let want = desired(vec![config("x", "a", &[]), config("y", "b", &[])]);
        let seen = [
            ObservedSite {
                site: "a".into(),
                state: SiteState::Unknown {
                    reason: "timed out".into(),
                },
            },
            observed("b", vec![]),
        ];
        let plan = make_plan("s", source(), &want, &seen, PlanOptions::default()).unwrap();
        assert_eq!(plan.sites[0].status, "unknown");
        assert!(plan.sites[0].changes.is_empty());
        assert_eq!(plan.sites[1].changes[0].action, Action::Create);
        assert_eq!(plan.summary.unknown_sites, 1);
    }

    #[test]
    fn observed_hash_ignores_health_but_not_pids() {
        let c = config("x", "a", &[]);
        let mut one = running(&c);
        let base = observed_hash(&[observed("a", vec![one.clone()])]);
        one.health = Health::Unhealthy {
            last_probe: "no".into(),
        };
        assert_eq!(base, observed_hash(&[observed("a", vec![one.clone()])]));
        one.process = ProcessState::Running {
            pid: 43,
            since: "t".into(),
        };
        assert_ne!(base, observed_hash(&[observed("a", vec![one])]));
    }

    const WARM: &str = r#"apiVersion: resurgo.dev/v1alpha1
system: shop
sites:
  a: { provider: local, address: 127.0.1.1, capacity: { cpu: 4, memory: 4Gi }, repository: { url: /r/a, password: { env: P } } }
  b: { provider: local, address: 127.0.2.1, capacity: { cpu: 4, memory: 4Gi }, repository: { url: /r/b, password: { env: P } } }
  c: { provider: local, address: 127.0.3.1, capacity: { cpu: 4, memory: 4Gi } }
services:
  db: { command: postgres, ports: [5432], site: a, standby: [b, c] }
  web: { command: web, ports: [8080], depends_on: [db], site: a, standby: [b] }
datasets:
  orders: { service: db, type: postgres, connection: host=127.0.1.1, strategy: standby }
"#;

    fn warm_desired(text: &str) -> IndexMap<String, IndexMap<String, RunConfig>> {
        let files = vec![resurgo_spec::SourceFile {
            name: "spec.yaml".into(),
            text: text.into(),
        }];
        let loaded = match resurgo_spec::load(files, &[]) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        };
        crate::desired_state(&loaded.system)
    }

    #[test]
    fn a_standby_dataset_wants_a_standby_instance_at_the_first_standby_site() {
        let want = warm_desired(WARM);
        let active = &want["a"]["db"];
        let standby = &want["b"]["db"];
        assert_eq!(active.role, Role::Active);
        assert_eq!(standby.role, Role::Standby);
        assert_eq!(standby.site, "b");
        assert_eq!(standby.address.to_string(), "127.0.2.1");
        assert_eq!((&standby.command, &standby.ports), (&active.command, &active.ports));
        assert_ne!(active.hash(), standby.hash());
        assert_eq!(active.diff(standby), ["site", "address", "role"]);
        assert!(!want["c"].contains_key("db"), "only the first standby site holds one");
        assert!(
            !want["b"].contains_key("web"),
            "a service without a standby dataset has none"
        );
        // Without a standby dataset, nothing at b.
        let cold = warm_desired(&WARM.replace(", strategy: standby", ""));
        assert!(cold["b"].is_empty());
    }

    #[test]
    fn the_active_config_keeps_its_hash_and_json() {
        let want = warm_desired(WARM);
        let json = serde_json::to_value(&want["a"]["db"]).unwrap();
        assert!(json.get("role").is_none(), "active is the default and left out: {json}");
        let standby = serde_json::to_value(&want["b"]["db"]).unwrap();
        assert_eq!(standby["role"], "standby");
        let back: RunConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back.role, Role::Active);
    }

    #[test]
    fn the_standby_instance_comes_after_its_active_one() {
        let want = warm_desired(WARM);
        let plan = make_plan(
            "s",
            source(),
            &want,
            &[observed("a", vec![]), observed("b", vec![]), observed("c", vec![])],
            PlanOptions::default(),
        )
        .unwrap();
        let waves: Vec<(&str, &str, usize)> = plan
            .sites
            .iter()
            .flat_map(|s| {
                s.changes
                    .iter()
                    .map(move |c| (s.site.as_str(), c.service.as_str(), c.wave))
            })
            .collect();
        assert_eq!(waves, [("a", "db", 0), ("a", "web", 1), ("b", "db", 1)]);
        assert_eq!(plan.summary.create, 3);
        // Running as desired: nothing to do at b either.
        let seen = [
            observed("a", want["a"].values().map(running).collect()),
            observed("b", want["b"].values().map(running).collect()),
            observed("c", vec![]),
        ];
        let plan = make_plan("s", source(), &want, &seen, PlanOptions::default()).unwrap();
        assert_eq!(plan.summary.changes(), 0);
        assert_eq!(plan.summary.unchanged, 3);
    }
}
