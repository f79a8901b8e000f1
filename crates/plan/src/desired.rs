//! The desired state: for each site, the exact configuration each service must run with.

use indexmap::IndexMap;
use resurgo_spec::{EnvValue, HealthCheck, System};
use serde::{Deserialize, Serialize};

/// Everything needed to run one service at one site, and nothing that is secret: secret
/// environment values stay references and are read only when the process starts.
///
/// The provider records this with every process it starts; comparing the recorded copy with
/// the desired one names the fields that drifted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub service: String,
    pub site: String,
    pub address: std::net::IpAddr,
    pub command: String,
    pub args: Vec<String>,
    pub env: IndexMap<String, EnvValue>,
    pub workdir: Option<String>,
    pub ports: Vec<u16>,
    pub health: Option<HealthCheck>,
    /// Milliseconds between SIGTERM and SIGKILL on a graceful stop.
    pub stop_timeout_ms: u64,
    pub depends_on: Vec<String>,
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
        a.iter()
            .filter(|(k, v)| b.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// Default grace period between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_TIMEOUT_MS: u64 = 10_000;

/// Site → service → config, for every service at its active site, in spec order.
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
        };
        out.entry(svc.site.clone()).or_default().insert(name.clone(), config);
    }
    out
}
