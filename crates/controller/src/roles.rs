//! Where roles live and what they are called: the coordination store a spec asks for (etcd
//! when `failover.coordination.etcd` lists endpoints, else the embedded store in the state
//! folder), and the names of its assignment groups and leases.
//!
//! - group `site-<s>`: the services the spec places at site `s`; its assignment names the site
//!   where they are active now (absent: `s`, epoch 0).
//! - lease `primary-<group>`: held by the primary site's agent (or by a run taking over);
//!   while it is valid, no other site may be promoted.
//! - lease `witness-sees-<s>`: held by the witness while it receives `s`'s heartbeats.
//! - lease `maintenance`: while valid, agents detect but never fail over.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use resurgo_coord::StoreError;
use resurgo_coord::{CoordStore, EmbeddedStore, EtcdStore};
use resurgo_spec::System;

pub const MAINTENANCE: &str = "maintenance";

/// The coordination store of the one-machine default, in the state folder.
pub fn coord_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("coord")
}

/// The assignment group of the services a spec places at `site`.
pub fn group_of(site: &str) -> String {
    format!("site-{site}")
}

pub fn primary_lease(group: &str) -> String {
    format!("primary-{group}")
}

pub fn witness_lease(site: &str) -> String {
    format!("witness-sees-{site}")
}

/// The store the spec names. Requests to etcd time out after one heartbeat interval (at least
/// 500 ms), so an agent cut from its quorum notices within its fencing deadline.
pub fn open_store(system: &System, state_dir: &Path) -> Result<Arc<dyn CoordStore>, StoreError> {
    match system.failover.coordination.as_ref().filter(|c| !c.etcd.is_empty()) {
        Some(c) => {
            let timeout = system
                .failover
                .timing()
                .heartbeat_interval
                .max(Duration::from_millis(500));
            let prefix = format!("/resurgo/{}", system.name);
            Ok(Arc::new(
                EtcdStore::new(&c.etcd)?.with_prefix(&prefix).with_timeout(timeout),
            ))
        }
        None => Ok(Arc::new(EmbeddedStore::open(coord_dir(state_dir))?)),
    }
}

/// Whether the store uses the state folder (nothing to read when it was never created).
pub fn is_embedded(system: &System) -> bool {
    system.failover.coordination.as_ref().is_none_or(|c| c.etcd.is_empty())
}
