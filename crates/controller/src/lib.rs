//! The engine around the pure core: reading the desired state (folder or Git, with a
//! last-known-good copy), observing sites through providers, applying plans, the event log,
//! the controller's reconcile loop, the agent, and the site daemon that runs both for one site.

pub mod agent;
pub mod api;
pub mod cost;
pub mod daemon;
pub mod dashboard;
pub mod desired;
pub mod drill;
mod drill_probe;
pub mod engine;
pub mod events;
pub mod failover;
pub mod faults;
pub mod fleet;
pub mod freshness;
pub mod liveness;
pub mod metrics;
pub mod notify;
pub mod protect;
pub mod providers;
pub mod reconcile;
pub mod report;
pub mod roles;
pub mod routes;
pub mod sandbox;
pub mod schedule;
mod scratch_pg;
pub mod site;
pub mod source;
#[cfg(test)]
mod testing;
pub mod workspace;

pub use daemon::{DaemonError, SiteContext, SiteDaemon};
pub use desired::{Desired, LastKnownGood, LoadError, SharedSpec};
pub use engine::{ApplyError, ApplyReport, Engine};
pub use events::{Event, EventKind, EventLog};
pub use providers::Providers;
pub use reconcile::{Controller, ControllerConfig};
pub use source::{Source, SourceError};
