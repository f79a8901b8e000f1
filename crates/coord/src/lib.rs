//! Coordination for failover: which site is primary for a group (an [`Assignment`] with a
//! monotonic epoch, changed only by compare-and-swap), leases that a primary must keep renewing,
//! the fencing decision an agent makes each interval and after a restart, and the failure
//! detector that needs a witness to agree before a site is declared dead.
//!
//! `model` and `fence` are pure; `store` is the small trait the rest of resurgo uses;
//! `embedded` (one machine, a state file) and `etcd` (etcd v3 over its JSON gateway) implement
//! it; `gateway` is etcd's client: HTTP or HTTPS through reqwest, with an etcd user.

pub mod clock;
pub mod embedded;
pub mod etcd;
pub mod fence;
mod gateway;
pub mod model;
pub mod store;

pub use clock::BootTime;
pub use embedded::EmbeddedStore;
pub use etcd::EtcdStore;
pub use gateway::{EtcdSecurity, EtcdUser};
pub use model::{check_successor, Assignment, Lease};
pub use resurgo_spec::timing::{validate_timing, Timing, TimingError};
pub use store::{CasOutcome, CoordStore, LeaseId, StoreError};
