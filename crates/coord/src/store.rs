//! The coordination store as the rest of resurgo sees it: a small, object-safe trait over
//! assignments (changed only by compare-and-swap on the epoch) and named leases, and its error
//! type, which says whether trying again can help.

use std::time::Duration;

use crate::model::Assignment;

/// A granted lease, as the store that granted it names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub u64);

/// What a compare-and-swap did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CasOutcome {
    Swapped,
    /// The stored assignment was not at the expected epoch; this is what it is (None: absent).
    Conflict(Option<Assignment>),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or did not answer in time: retrying may help, and the
    /// caller must not assume anything about the state (a primary keeps counting toward its
    /// fencing deadline).
    #[error("coordination store {endpoint} unreachable: {reason}")]
    Unreachable { endpoint: String, reason: String },
    /// The store (or this crate, before asking it) refused the request: retrying the same
    /// request cannot help.
    #[error("coordination store refused: {0}")]
    Refused(String),
    /// The lease name is held by another holder (or by this one under another lease).
    #[error("lease `{name}` is held by `{holder}`")]
    LeaseHeld { name: String, holder: String },
    /// What the store holds cannot be read as ours: give up and let a person look.
    #[error("coordination store {location} is corrupt: {reason}")]
    Corrupt { location: String, reason: String },
}

impl StoreError {
    /// True when the same request may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unreachable { .. })
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A coordination store. Implementations: [`crate::EmbeddedStore`] (one machine),
/// [`crate::EtcdStore`] (etcd v3).
pub trait CoordStore: Send + Sync {
    fn get_assignment(&self, group: &str) -> Result<Option<Assignment>>;

    /// Replaces the group's assignment with `new` if the stored one is at `expected_epoch`
    /// (None: there is none yet). `new.epoch` must be greater than `expected_epoch`, else the
    /// request is refused ([`StoreError::Refused`]) without touching the store.
    fn compare_and_swap_assignment(
        &self,
        group: &str,
        expected_epoch: Option<u64>,
        new: &Assignment,
    ) -> Result<CasOutcome>;

    /// Grants the lease `name` to `holder` for `ttl`; [`StoreError::LeaseHeld`] if a lease of
    /// that name is still valid (whoever holds it: a restarted holder waits for expiry).
    fn grant_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<LeaseId>;

    /// Renews the lease for its ttl; false if it has expired or was revoked (it is then gone
    /// and must be granted anew).
    fn keep_alive(&self, lease: LeaseId) -> Result<bool>;

    /// Who holds the lease `name` and for how much longer (None: nobody).
    fn lease_holder(&self, name: &str) -> Result<Option<(String, Duration)>>;

    /// The id of the lease `name` while it is valid (None: nobody holds it), so that a process
    /// other than the one that was granted it can renew it (an agent adopting the lease a run
    /// took for its site) or revoke it (a planned switch, once the holder is fenced).
    fn lease_of(&self, name: &str) -> Result<Option<LeaseId>>;

    /// Gives the lease up; revoking an unknown or expired lease is not an error.
    fn revoke(&self, lease: LeaseId) -> Result<()>;
}
