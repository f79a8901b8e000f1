//! The clock that lease and fence deadlines are measured on: the machine's boot clock
//! (CLOCK_BOOTTIME). NTP never steps it (it only slews it), and it keeps counting while the
//! machine is suspended, so a suspended primary's deadline passes while it sleeps. A reading
//! means the same to every process on one machine — an agent writes a deadline, a service's
//! supervisor in another process compares against it — but only until the machine restarts:
//! each reading carries the boot it was taken in, and a reading of another boot has passed.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One reading of the boot clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootTime {
    /// The kernel's boot id (`/proc/sys/kernel/random/boot_id`).
    pub boot: String,
    /// Milliseconds since that boot.
    pub ms: u64,
}

impl BootTime {
    /// Now, on this machine.
    pub fn now() -> BootTime {
        static BOOT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let boot = BOOT.get_or_init(|| {
            std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        });
        let ms = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
            .map(|t| Duration::from(t).as_millis() as u64)
            // CLOCK_BOOTTIME exists on every Linux resurgo supports; should it fail, the
            // monotonic clock is the next best (it too is never stepped).
            .or_else(|_| {
                nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
                    .map(|t| Duration::from(t).as_millis() as u64)
            })
            .unwrap_or(0);
        BootTime { boot: boot.clone(), ms }
    }

    /// This reading plus `d`.
    pub fn plus(&self, d: Duration) -> BootTime {
        BootTime {
            boot: self.boot.clone(),
            ms: self.ms.saturating_add(d.as_millis() as u64),
        }
    }

    /// Whether this deadline has passed as of `now` (always, for a deadline of another boot).
    pub fn passed(&self, now: &BootTime) -> bool {
        self.boot != now.boot || now.ms >= self.ms
    }

    /// Time from `now` until this deadline (zero once passed).
    pub fn left(&self, now: &BootTime) -> Duration {
        if self.passed(now) {
            Duration::ZERO
        } else {
            Duration::from_millis(self.ms - now.ms)
        }
    }

    /// Whether this reading was taken before `other` in the same boot.
    pub fn before(&self, other: &BootTime) -> bool {
        self.boot == other.boot && self.ms < other.ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(boot: &str, ms: u64) -> BootTime {
        BootTime { boot: boot.into(), ms }
    }

    #[test]
    fn deadlines_pass_on_time_and_at_a_restart() {
        let deadline = at("x", 1000).plus(Duration::from_secs(5));
        assert!(!deadline.passed(&at("x", 5999)));
        assert_eq!(deadline.left(&at("x", 5000)), Duration::from_secs(1));
        assert!(deadline.passed(&at("x", 6000)));
        assert!(deadline.passed(&at("y", 10)), "a deadline of another boot has passed");
        assert_eq!(deadline.left(&at("y", 10)), Duration::ZERO);
        assert!(at("x", 1).before(&at("x", 2)) && !at("x", 1).before(&at("y", 2)));
    }

    #[test]
    fn the_clock_moves_forward() {
        let a = BootTime::now();
        let b = BootTime::now();
        assert!(!a.boot.is_empty(), "boot id readable");
        assert!(b.ms >= a.ms);
    }
}
