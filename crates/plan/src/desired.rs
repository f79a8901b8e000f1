//! The desired state: for each site, the exact configuration each service must run with.

use indexmap::IndexMap;
use resurgo_spec::{EnvValue, HealthCheck, Strategy, System};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Everything needed to run one service at one site, and nothing that is secret: secret
/// environment values stay references and are read only when the process starts.
///
/// The provider records this with every process it starts; comparing the recorded copy with
/// the desired one names the fields that drifted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunConfig {
    /// The service's name in the spec.
    pub service: String,
    /// The site it runs at.
    pub site: String,
    /// The site's address, which the service listens on.
    pub address: std::net::IpAddr,
    /// The program to run.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its environment: plain values, or references to secrets (never their values).
    pub env: IndexMap<String, EnvValue>,
    /// Its working directory (null: the service's state folder at the site).
    pub workdir: Option<String>,
    /// The ports it listens on.
    pub ports: Vec<u16>,
    /// How its health is checked (null: it is not, and its health shows `unknown`).
    pub health: Option<HealthCheck>,
    /// Milliseconds between SIGTERM and SIGKILL on a graceful stop.
    pub stop_timeout_ms: u64,
    /// Services that must be healthy before this one starts.
    pub depends_on: Vec<String>,
    /// `active` (the service itself) or `standby` (a warm replica of it at a standby site, for
    /// a service that owns a `strategy: standby` dataset). Left out of the JSON when `active`,
    /// so configs recorded before the field existed keep their hash.
    #[serde(default, skip_serializing_if = "Role::is_active")]
    pub role: Role,
    /// The user it runs as (null: the user resurgo runs as). Left out of the JSON when null,
    /// so configs recorded before the field existed keep their hash; a change is drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// Which instance of a service a [`RunConfig`] runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The instance that serves, at the service's `site`.
    #[default]
    Active,
    /// A warm replica at the service's first standby site, fed by the active instance.
    Standby,
}

impl Role {
    pub fn is_active(&self) -> bool {
        *self == Role::Active
    }
}

impl RunConfig {
    /// The hash a running process is compared by.
    pub fn hash(&self) -> String {
        resurgo_spec::hash_json(self)
    }

    /// Names of the fields where `self` and `other` differ.
    pub fn diff(&self, other: &RunConfig) -> Vec<String> {
        let a = serde_json::to_value(self).expect("serializable");
        let b = serde_json::to_value(other).expect("serializable");
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
            return Vec::new();
        };
        // Fields left out when at their default (`role`) count on either side.
        a.keys()
            .chain(b.keys().filter(|k| !a.contains_key(*k)))
            .filter(|k| a.get(*k) != b.get(*k))
            .cloned()
            .collect()
    }
}

/// Default grace period between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_TIMEOUT_MS: u64 = 10_000;

/// Site → service → config, for every service at its active site, in spec order; and, for
/// every service that owns a `strategy: standby` dataset, a [`Role::Standby`] instance at its
/// first standby site (the same config with that site's name and address).
pub fn desired_state(system: &System) -> IndexMap<String, IndexMap<String, RunConfig>> {
    let mut out: IndexMap<String, IndexMap<String, RunConfig>> =
        system.sites.keys().map(|s| (s.clone(), IndexMap::new())).collect();
    for (name, svc) in &system.services {
        let Some(site) = system.sites.get(&svc.site) else {
            continue;
        };
        let config = RunConfig {
            service: name.clone(),
            site: svc.site.clone(),
            address: site.address,
            command: svc.command.clone(),
            args: svc.args.clone(),
            env: svc.env.clone(),
            workdir: svc.workdir.clone(),
            ports: svc.ports.clone(),
            health: svc.health.clone(),
            stop_timeout_ms: svc
                .stop_timeout
                .map_or(DEFAULT_STOP_TIMEOUT_MS, |d| d.0.as_millis() as u64),
            depends_on: svc.depends_on.clone(),
            role: Role::Active,
            user: svc.user.clone(),
        };
        let warm = system
            .datasets
            .values()
            .any(|d| d.service == *name && d.strategy == Strategy::Standby);
        let standby = svc
            .standby
            .first()
            .filter(|s| warm && **s != svc.site)
            .and_then(|s| system.sites.get_key_value(s));
        if let Some((standby_name, standby_site)) = standby {
            let replica = RunConfig {
                site: standby_name.clone(),
                address: standby_site.address,
                role: Role::Standby,
                ..config.clone()
            };
            out.entry(standby_name.clone())
                .or_default()
                .insert(name.clone(), replica);
        }
        out.entry(svc.site.clone()).or_default().insert(name.clone(), config);
    }
    out
}
