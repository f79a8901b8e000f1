//! Providers run services at a site and report what runs there. The [`Provider`] trait is the
//! whole contract: observe, start, stop, remove, probe, the fence deadline, set-aside copies,
//! where a dataset lives and who owns it. It knows nothing of plans or policies; callers
//! decide what to do, a provider only does it and says what it sees. Each site has a provider
//! of its own (the controller builds them from each site's `provider:`); callers never reach
//! into a provider's layout.
//!
//! `local` (the embedded default) runs each service as a supervised OS process on this machine,
//! its state in the site's folder.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use resurgo_plan::{ObservedService, RunConfig};

pub mod account;
pub mod aside;
pub mod local;
pub mod probe;

pub use account::{private_dir, Account};
pub use aside::SetAside;

/// Writes JSON to a file atomically (temporary file, fsync, rename); shared with the engine.
pub use shim::write_json_atomic;

/// Reads a secret's value from where its reference points; shared with the engine.
pub use local::read_secret;
pub mod shim;

/// A site as a provider's callers name it. Where and how the site keeps its state is the
/// provider's own business: each site has a provider of its own, built for it (the local one
/// knows its folder), so a handle carries no path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteHandle {
    pub name: String,
    pub address: IpAddr,
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
    /// The site's folder is not there, or holds no site (an empty mount point): the site is
    /// lost, its volume is not mounted, or it was never set up on this machine. It is
    /// `unknown`, never empty.
    #[error("site `{site}` is not set up here: no site at {at} (the site is lost, its volume not mounted, or it was never set up on this machine)")]
    NotSetUp {
        site: String,
        /// Where the provider looked, for people (the local provider's folder).
        at: String,
    },
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
        matches!(
            self,
            ProviderError::SiteUnreachable { .. } | ProviderError::NotSetUp { .. } | ProviderError::Io { .. }
        )
    }
}

/// Runs services at sites. Object-safe; shared as `Arc<dyn Provider>`.
pub trait Provider: Send + Sync {
    /// Makes the site ready to run services (its folder, its record). Only an explicit request
    /// does this: a site that is not set up is `unknown` to everything else.
    fn set_up(&self, site: &SiteHandle) -> Result<(), ProviderError>;

    /// Every service resurgo owns at the site, with process state and (for running
    /// services with a health check) one fresh probe. A site that is not there is an error
    /// ([`ProviderError::NotSetUp`]), never an empty list.
    fn observe(&self, site: &SiteHandle) -> Result<Vec<ObservedService>, ProviderError>;

    /// Starts the service with `config`, first stopping an instance that runs already.
    /// Returns once the process has been launched (not once it is healthy).
    fn start(&self, site: &SiteHandle, config: &RunConfig) -> Result<(), ProviderError>;

    /// Stops the service gracefully (SIGTERM, then SIGKILL after its stop timeout). It stays
    /// known, as `stopped`.
    fn stop(&self, site: &SiteHandle, service: &str) -> Result<(), ProviderError>;

    /// Stops the service and forgets it (prune). What its folder holds (its data) is set aside,
    /// never deleted.
    fn remove(&self, site: &SiteHandle, service: &str) -> Result<(), ProviderError>;

    /// Runs the service's health check once.
    fn probe(&self, site: &SiteHandle, config: &RunConfig) -> ProbeResult;

    /// Records that the running instance now serves as `config` (a standby promoted in place:
    /// same process, new role), so it is not restarted to match. Errors if it is not running.
    fn relabel(&self, site: &SiteHandle, config: &RunConfig) -> Result<(), ProviderError>;

    /// Sets the time until which the site's writable services may run: each one's supervisor
    /// stops it once that time passes while it runs, so the site fences itself even when its
    /// agent is dead. The agent moves it forward after each lease renewal.
    fn extend_fence(&self, site: &SiteHandle, until: &resurgo_coord::BootTime) -> Result<(), ProviderError>;

    /// Moves `path` at the site out of the way, under a name of its own beside it, recorded
    /// with `why` ([`aside`]). Nothing set aside is deleted except by [`Provider::drop_set_aside`].
    fn set_aside(&self, site: &SiteHandle, path: &Path, why: &str) -> Result<SetAside, ProviderError>;

    /// The set-aside copies at the site, with their sizes.
    fn set_aside_copies(&self, site: &SiteHandle) -> Result<Vec<SetAside>, ProviderError>;

    /// Deletes the set-aside copy `id` at the site (a person asked for it by name).
    fn drop_set_aside(&self, site: &SiteHandle, id: &str) -> Result<SetAside, ProviderError>;

    /// Where the dataset path `path` of `service` lives at the site: an absolute path as it
    /// is; a relative one under the service's working directory there — `workdir` (the
    /// spec's) relative to where the provider keeps the service, or that place itself.
    fn data_path(
        &self,
        site: &SiteHandle,
        service: &str,
        workdir: Option<&str>,
        path: &str,
    ) -> Result<PathBuf, ProviderError>;

    /// Who owns `path` at the site (uid, gid), if it can be seen: a restored PostgreSQL data
    /// directory is given to the owner of the one it replaces.
    fn owner(&self, site: &SiteHandle, path: &Path) -> Option<(u32, u32)>;

    /// Where the site is, for people (`set-up` says it): the local provider's folder.
    fn describe(&self, site: &SiteHandle) -> String;

    /// A drill's fault: kills the service's process at once (SIGKILL), as a crash would. It
    /// stays known, as exited; whatever restarts crashed services restarts it.
    fn kill(&self, site: &SiteHandle, _service: &str) -> Result<(), ProviderError> {
        Err(ProviderError::SiteUnreachable {
            site: site.name.clone(),
            reason: "this provider cannot inject a drill's faults".into(),
        })
    }

    /// A drill's fault: the site is lost, as its host would be — every service's process
    /// killed and the site's state out of reach (it observes as not set up, `unknown`) until
    /// [`Provider::reconnect`]. Doing it twice is doing it once.
    fn disconnect(&self, site: &SiteHandle) -> Result<(), ProviderError> {
        Err(ProviderError::SiteUnreachable {
            site: site.name.clone(),
            reason: "this provider cannot inject a drill's faults".into(),
        })
    }

    /// Undoes [`Provider::disconnect`]: the site's state is back within reach (its services
    /// stay as the loss left them). Returns whether it was disconnected.
    fn reconnect(&self, site: &SiteHandle) -> Result<bool, ProviderError> {
        Err(ProviderError::SiteUnreachable {
            site: site.name.clone(),
            reason: "this provider cannot inject a drill's faults".into(),
        })
    }
}
