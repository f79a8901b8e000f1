//! The failover timing rules, pure: the old primary must fence itself before its lease can
//! expire anywhere else, and before the failure detector can promote another site. Checked when
//! the spec loads (`failover:`), and by the agent that acts on them.

use std::time::Duration;

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
}
