//! The observed state, as a provider reports it.

use serde::{Deserialize, Serialize};

use crate::desired::RunConfig;

/// What a provider saw at one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedSite {
    pub site: String,
    pub state: SiteState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum SiteState {
    /// The site answered; these are the services resurgo owns there.
    Reachable { services: Vec<ObservedService> },
    /// The site could not be observed. Never treated as healthy, never as empty.
    Unknown { reason: String },
}

/// One service resurgo started at a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedService {
    pub service: String,
    /// The config the process was started with.
    pub config: RunConfig,
    pub config_hash: String,
    pub process: ProcessState,
    pub health: Health,
    /// Restarts since the last successful apply.
    pub restarts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum ProcessState {
    Running {
        pid: u32,
        since: String,
    },
    /// The process ended; `how` says how (`exit code 1`, `killed by SIGKILL`, `vanished`).
    Exited {
        how: String,
        at: String,
    },
    /// Deliberately stopped by resurgo.
    Stopped,
}

impl ProcessState {
    pub fn is_running(&self) -> bool {
        matches!(self, ProcessState::Running { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Health {
    Healthy,
    Unhealthy {
        last_probe: String,
    },
    /// Not probed (no health check declared, or the process is not running).
    Unknown,
}

/// A hash of what matters for staleness: which services run where, with which config and pid.
/// Health is left out: it changes without anyone changing anything.
pub fn observed_hash(sites: &[ObservedSite]) -> String {
    let mut parts: Vec<(String, String, String, String)> = Vec::new();
    for site in sites {
        match &site.state {
            SiteState::Unknown { .. } => {
                parts.push((site.site.clone(), String::new(), "unknown".into(), String::new()))
            }
            SiteState::Reachable { services } => {
                for s in services {
                    let pid = match &s.process {
                        ProcessState::Running { pid, .. } => pid.to_string(),
                        ProcessState::Exited { .. } => "exited".into(),
                        ProcessState::Stopped => "stopped".into(),
                    };
                    parts.push((site.site.clone(), s.service.clone(), s.config_hash.clone(), pid));
                }
            }
        }
    }
    parts.sort();
    resurgo_spec::hash_json(&parts)
}
