//! The coordination model, pure: who is primary for a group ([`Assignment`], with an epoch that
//! every role change increments) and a site's [`Lease`]. The timing rules that make two
//! primaries impossible live with the spec (`resurgo_spec::timing`), which checks them at load.
//! No I/O; time is passed in.

use std::time::{Duration, SystemTime};

use crate::clock::BootTime;

use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// The primary role of one failover group (a system, or a group within it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    pub group: String,
    pub primary_site: String,
    /// Incremented by every role change; a writer holding a lower epoch is refused everywhere.
    pub epoch: u64,
    /// When this assignment was made (wall clock, stored as Unix milliseconds; the constructors
    /// round to that).
    #[serde(with = "unix_ms")]
    pub since: SystemTime,
}

impl Assignment {
    /// The first assignment of a group (epoch 1).
    pub fn first(group: &str, primary_site: &str, now: SystemTime) -> Self {
        Assignment {
            group: group.to_owned(),
            primary_site: primary_site.to_owned(),
            epoch: 1,
            since: to_ms(now),
        }
    }

    /// The assignment that moves the role to `primary_site`, one epoch later.
    pub fn successor(&self, primary_site: &str, now: SystemTime) -> Self {
        Assignment {
            group: self.group.clone(),
            primary_site: primary_site.to_owned(),
            epoch: self.epoch + 1,
            since: to_ms(now),
        }
    }
}

/// Checks that `new` may replace an assignment at `expected_epoch` (None: there is none yet):
/// the group matches and the epoch moves strictly forward. Every store calls this before a
/// compare-and-swap, so a stale or replayed assignment is refused without touching the store.
pub fn check_successor(group: &str, expected_epoch: Option<u64>, new: &Assignment) -> Result<(), StoreError> {
    if new.group != group {
        return Err(StoreError::Refused(format!(
            "assignment for group `{}` written under group `{group}`",
            new.group
        )));
    }
    let floor = expected_epoch.unwrap_or(0);
    if new.epoch <= floor {
        return Err(StoreError::Refused(format!(
            "epoch {} for group `{group}` does not move past {floor}",
            new.epoch
        )));
    }
    Ok(())
}

/// A lease held by a site: valid until its deadline unless renewed. Deadlines are on the boot
/// clock ([`BootTime`]): never stepped by NTP, meaningful to every process on one machine, and
/// passed once the machine restarts (every holder on it is gone then).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    pub holder: String,
    #[serde(with = "millis")]
    pub ttl: Duration,
    pub deadline: BootTime,
}

impl Lease {
    pub fn grant(holder: &str, ttl: Duration, now: &BootTime) -> Self {
        Lease {
            holder: holder.to_owned(),
            ttl,
            deadline: now.plus(ttl),
        }
    }

    /// Extends the lease by its ttl from `now`; false (and no change) if it has already expired:
    /// an expired lease is gone, and must be granted anew.
    pub fn renew(&mut self, now: &BootTime) -> bool {
        if self.is_expired(now) {
            return false;
        }
        self.deadline = now.plus(self.ttl);
        true
    }

    pub fn is_expired(&self, now: &BootTime) -> bool {
        self.deadline.passed(now)
    }

    /// Time left before expiry (zero once expired).
    pub fn remaining(&self, now: &BootTime) -> Duration {
        self.deadline.left(now)
    }
}

/// `t` at the precision it is stored with, so an assignment reads back equal to itself.
fn to_ms(t: SystemTime) -> SystemTime {
    from_unix_ms(to_unix_ms(t))
}

/// Unix milliseconds <-> `SystemTime`.
pub(crate) fn to_unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn from_unix_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

mod unix_ms {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(super::to_unix_ms(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        u64::deserialize(d).map(super::from_unix_ms)
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn successor_moves_the_epoch_forward_only() {
        let now = SystemTime::UNIX_EPOCH + secs(1000);
        let first = Assignment::first("db", "a", now);
        let second = first.successor("b", now);
        assert_eq!((second.epoch, second.primary_site.as_str()), (2, "b"));
        assert!(check_successor("db", None, &first).is_ok());
        assert!(check_successor("db", Some(1), &second).is_ok());
        assert!(matches!(
            check_successor("db", Some(2), &second),
            Err(StoreError::Refused(_))
        ));
        assert!(matches!(
            check_successor("db", Some(5), &second),
            Err(StoreError::Refused(_))
        ));
        assert!(matches!(
            check_successor("web", Some(1), &second),
            Err(StoreError::Refused(_))
        ));
        let mut zero = first.clone();
        zero.epoch = 0;
        assert!(matches!(
            check_successor("db", None, &zero),
            Err(StoreError::Refused(_))
        ));
    }

    #[test]
    fn lease_grant_renew_expire() {
        let t = |s: u64| BootTime {
            boot: "b".into(),
            ms: 1_000_000 + s * 1000,
        };
        let mut lease = Lease::grant("a", secs(10), &t(0));
        assert_eq!(lease.remaining(&t(4)), secs(6));
        assert!(lease.renew(&t(9)));
        assert_eq!(lease.deadline, t(19));
        assert!(!lease.is_expired(&t(18)));
        assert!(lease.is_expired(&t(19)));
        assert!(!lease.renew(&t(20)), "an expired lease cannot be renewed");
        assert_eq!(lease.deadline, t(19));
        assert_eq!(lease.remaining(&t(30)), Duration::ZERO);
        let rebooted = BootTime {
            boot: "c".into(),
            ms: 5,
        };
        assert!(
            lease.is_expired(&rebooted),
            "a lease does not outlive a restart of the machine"
        );
    }

    #[test]
    fn assignment_json_is_stable() {
        let a = Assignment::first("db", "a", SystemTime::UNIX_EPOCH + Duration::from_millis(1_500));
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"{"group":"db","primary_site":"a","epoch":1,"since":1500}"#);
        assert_eq!(serde_json::from_str::<Assignment>(&json).unwrap(), a);
    }
}
