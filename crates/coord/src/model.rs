//! The coordination model, pure: who is primary for a group ([`Assignment`], with an epoch that
//! every role change increments), a site's [`Lease`], and the timing rules that make two
//! primaries impossible ([`validate_timing`]). No I/O; time is passed in.

use std::time::{Duration, SystemTime};

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

/// A lease held by a site: valid until its deadline unless renewed. Deadlines are wall-clock
/// times so that they mean the same thing to every process reading them on one machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    pub holder: String,
    #[serde(with = "millis")]
    pub ttl: Duration,
    #[serde(with = "unix_ms")]
    pub deadline: SystemTime,
}

impl Lease {
    pub fn grant(holder: &str, ttl: Duration, now: SystemTime) -> Self {
        Lease {
            holder: holder.to_owned(),
            ttl,
            deadline: now + ttl,
        }
    }

    /// Extends the lease by its ttl from `now`; false (and no change) if it has already expired:
    /// an expired lease is gone, and must be granted anew.
    pub fn renew(&mut self, now: SystemTime) -> bool {
        if self.is_expired(now) {
            return false;
        }
        self.deadline = now + self.ttl;
        true
    }

    pub fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.deadline
    }

    /// Time left before expiry (zero once expired).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.deadline.duration_since(now).unwrap_or(Duration::ZERO)
    }
}

/// The failover timing of a group, as configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How often the primary renews its lease and every site sends a heartbeat (Patroni's
    /// `loop_wait`).
    pub heartbeat_interval: Duration,
    /// Consecutive missed heartbeats before a site is suspected.
    pub suspect_after: u32,
    /// Lease time-to-live: after this long without renewal the role is free elsewhere.
    pub lease_ttl: Duration,
    /// How long the primary tolerates failed renewals (counted from the moment it sent the
    /// last successful one) before it fences itself (Patroni's `2·retry_timeout`).
    pub fencing_deadline: Duration,
    /// How long the promoter waits after suspecting the primary before promoting another site
    /// (pg_auto_failover's monitor delay).
    pub promotion_delay: Duration,
}

impl Timing {
    /// Patroni's defaults: loop_wait 10 s, retry_timeout 10 s, ttl 30 s.
    pub const PATRONI: Timing = Timing {
        heartbeat_interval: Duration::from_secs(10),
        suspect_after: 3,
        lease_ttl: Duration::from_secs(30),
        fencing_deadline: Duration::from_secs(20),
        promotion_delay: Duration::from_secs(10),
    };

    /// Latest moment, after the last successful renewal, by which the old primary has fenced:
    /// it checks once per interval, so it notices the deadline up to one interval late.
    pub fn fenced_by(&self) -> Duration {
        self.heartbeat_interval + self.fencing_deadline
    }

    /// Earliest moment, after the last heartbeat seen from the primary, at which the failure
    /// detector path may promote another site.
    pub fn earliest_promotion(&self) -> Duration {
        self.heartbeat_interval * self.suspect_after + self.promotion_delay
    }
}

/// A timing under which the old primary might still accept writes when a new one is promoted,
/// or which would fence on a single blip.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimingError {
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    #[error(
        "the old primary fences only after {fenced_by:?} (heartbeat interval + fencing deadline) but its lease \
         expires after {ttl:?}: need interval + fencing deadline <= lease ttl"
    )]
    FenceAfterLeaseExpiry { fenced_by: Duration, ttl: Duration },
    #[error(
        "a new primary can be promoted after {promotion:?} (interval x suspect-after + promotion delay) but the old \
         one is only fenced after {fenced_by:?}: need promotion later than fencing"
    )]
    PromotionBeforeFence { promotion: Duration, fenced_by: Duration },
    #[error(
        "fencing deadline {fencing:?} is shorter than two heartbeat intervals ({interval:?} each): one late \
         renewal would demote the primary"
    )]
    FencingTooEager { fencing: Duration, interval: Duration },
}

/// Every rule `timing` breaks (empty: safe).
///
/// - Patroni's rule `loop_wait + 2·retry_timeout ≤ ttl`: the primary fences before its lease can
///   expire anywhere else (here `heartbeat_interval + fencing_deadline ≤ lease_ttl`).
/// - pg_auto_failover's rule: an isolated primary fences after X while the monitor waits Y > X
///   (here `heartbeat_interval + fencing_deadline < heartbeat_interval·suspect_after +
///   promotion_delay`), so a promotion decided by the failure detector is also late enough.
/// - Patroni#1195 (demotion on a short store blip): the fencing deadline tolerates at least one
///   missed renewal (`fencing_deadline ≥ 2·heartbeat_interval`).
pub fn validate_timing(timing: &Timing) -> Vec<TimingError> {
    let mut errors = Vec::new();
    for (name, value) in [
        ("heartbeat interval", timing.heartbeat_interval),
        ("lease ttl", timing.lease_ttl),
        ("fencing deadline", timing.fencing_deadline),
    ] {
        if value.is_zero() {
            errors.push(TimingError::Zero(name));
        }
    }
    if timing.suspect_after == 0 {
        errors.push(TimingError::Zero("suspect-after"));
    }
    if !errors.is_empty() {
        return errors;
    }
    if timing.fenced_by() > timing.lease_ttl {
        errors.push(TimingError::FenceAfterLeaseExpiry {
            fenced_by: timing.fenced_by(),
            ttl: timing.lease_ttl,
        });
    }
    if timing.earliest_promotion() <= timing.fenced_by() {
        errors.push(TimingError::PromotionBeforeFence {
            promotion: timing.earliest_promotion(),
            fenced_by: timing.fenced_by(),
        });
    }
    if timing.fencing_deadline < timing.heartbeat_interval * 2 {
        errors.push(TimingError::FencingTooEager {
            fencing: timing.fencing_deadline,
            interval: timing.heartbeat_interval,
        });
    }
    errors
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

    fn timing(interval: u64, suspect_after: u32, ttl: u64, fencing: u64, delay: u64) -> Timing {
        Timing {
            heartbeat_interval: secs(interval),
            suspect_after,
            lease_ttl: secs(ttl),
            fencing_deadline: secs(fencing),
            promotion_delay: secs(delay),
        }
    }

    #[test]
    fn timing_rules() {
        use TimingError::*;
        // (what, timing, expected errors)
        let cases: Vec<(&str, Timing, Vec<TimingError>)> = vec![
            (
                "patroni defaults are safe, the rule holding with equality",
                Timing::PATRONI,
                vec![],
            ),
            (
                "pg_auto_failover: fence after 20 s, promote after 30 s",
                timing(5, 2, 25, 20, 20),
                vec![],
            ),
            (
                "fencing deadline too long for the ttl",
                timing(10, 3, 30, 25, 30),
                vec![FenceAfterLeaseExpiry {
                    fenced_by: secs(35),
                    ttl: secs(30),
                }],
            ),
            (
                "promotion exactly when the old primary fences is refused",
                timing(10, 2, 30, 20, 10),
                vec![PromotionBeforeFence {
                    promotion: secs(30),
                    fenced_by: secs(30),
                }],
            ),
            (
                "monitor waits less than the primary takes to fence",
                timing(5, 1, 60, 20, 10),
                vec![PromotionBeforeFence {
                    promotion: secs(15),
                    fenced_by: secs(25),
                }],
            ),
            (
                "fencing on a single missed renewal",
                timing(10, 3, 30, 15, 10),
                vec![FencingTooEager {
                    fencing: secs(15),
                    interval: secs(10),
                }],
            ),
            (
                "zero values are reported alone",
                timing(0, 0, 30, 20, 0),
                vec![Zero("heartbeat interval"), Zero("suspect-after")],
            ),
        ];
        for (what, t, expected) in cases {
            assert_eq!(validate_timing(&t), expected, "{what}");
        }
    }

    #[test]
    fn timing_errors_read_well() {
        let errors = validate_timing(&timing(10, 3, 30, 25, 30));
        assert!(
            errors[0]
                .to_string()
                .contains("need interval + fencing deadline <= lease ttl"),
            "{}",
            errors[0]
        );
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
        let t0 = SystemTime::UNIX_EPOCH + secs(1000);
        let mut lease = Lease::grant("a", secs(10), t0);
        assert_eq!(lease.remaining(t0 + secs(4)), secs(6));
        assert!(lease.renew(t0 + secs(9)));
        assert_eq!(lease.deadline, t0 + secs(19));
        assert!(!lease.is_expired(t0 + secs(18)));
        assert!(lease.is_expired(t0 + secs(19)));
        assert!(!lease.renew(t0 + secs(20)), "an expired lease cannot be renewed");
        assert_eq!(lease.deadline, t0 + secs(19));
        assert_eq!(lease.remaining(t0 + secs(30)), Duration::ZERO);
    }

    #[test]
    fn assignment_json_is_stable() {
        let a = Assignment::first("db", "a", SystemTime::UNIX_EPOCH + Duration::from_millis(1_500));
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"{"group":"db","primary_site":"a","epoch":1,"since":1500}"#);
        assert_eq!(serde_json::from_str::<Assignment>(&json).unwrap(), a);
    }
}
