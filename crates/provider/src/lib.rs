//! Providers run services at a site and report what runs there. The [`Provider`] trait is the
//! whole contract: observe, start, stop, remove, probe. It knows nothing of plans or policies;
//! callers decide what to do, a provider only does it and says what it sees.
//!
//! `local` (the embedded default) runs each service as a supervised OS process on this machine.

use std::net::IpAddr;
use std::path::PathBuf;

use resurgo_plan::{ObservedService, RunConfig};

pub mod local;
pub mod probe;

/// Writes JSON to a file atomically (temporary file, fsync, rename); shared with the engine.
pub use shim::write_json_atomic;

/// Reads a secret's value from where its reference points; shared with the engine.
pub use local::read_secret;
pub mod shim;

/// A site as a provider needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteHandle {
    pub name: String,
    pub address: IpAddr,
    /// The site's state folder (local provider).
    pub root: PathBuf,
}

/// The result of one health probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub healthy: bool,
    /// What the probe saw, for messages: `HTTP 200`, `connection refused`, `exit code 1`.
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The site cannot be observed or acted on at all. Retrying later may help.
    #[error("site `{site}` is unreachable: {reason}")]
    SiteUnreachable { site: String, reason: String },
    /// A secret the service's environment refers to cannot be read. Fix the secret.
    #[error("service `{service}`: cannot read secret for `{var}`: {reason}")]
    Secret {
        service: String,
        var: String,
        reason: String,
    },
    /// The process could not be started. Fix the command or its environment.
    #[error("service `{service}` at site `{site}`: cannot start `{command}`: {reason}")]
    Start {
        service: String,
        site: String,
        command: String,
        reason: String,
    },
    /// Reading or writing the site's state failed.
    #[error("site `{site}`: {what} {path}: {source}")]
    Io {
        site: String,
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ProviderError {
    /// Whether trying again later can help.
    pub fn is_transient(&self) -> bool {
        matches!(self, ProviderError::SiteUnreachable { .. } | ProviderError::Io { .. })
    }
}

/// Runs services at sites. Object-safe; shared as `Arc<dyn Provider>`.
pub trait Provider: Send + Sync {
    /// Every service resurgo owns at the site, with process state and (for running
    /// services with a health check) one fresh probe.
    fn observe(&self, site: &SiteHandle) -> Result<Vec<ObservedService>, ProviderError>;

    /// Starts the service with `config`, first stopping an instance that runs already.
    /// Returns once the process has been launched (not once it is healthy).
    fn start(&self, site: &SiteHandle, config: &RunConfig) -> Result<(), ProviderError>;

    /// Stops the service gracefully (SIGTERM, then SIGKILL after its stop timeout). It stays
    /// known, as `stopped`.
    fn stop(&self, site: &SiteHandle, service: &str) -> Result<(), ProviderError>;

    /// Stops the service and forgets it (prune).
    fn remove(&self, site: &SiteHandle, service: &str) -> Result<(), ProviderError>;

    /// Runs the service's health check once.
    fn probe(&self, site: &SiteHandle, config: &RunConfig) -> ProbeResult;

    /// Records that the running instance now serves as `config` (a standby promoted in place:
    /// same process, new role), so it is not restarted to match. Errors if it is not running.
    fn relabel(&self, site: &SiteHandle, config: &RunConfig) -> Result<(), ProviderError>;
}
