//! What a site's agent decides, as pure functions over plain data, plus the one piece of local
//! state it needs (the last epoch it saw, behind [`EpochMemory`]).
//!
//! - Each interval ([`decide_tick`]): renewed → keep serving; renewals failing for longer than
//!   the fencing deadline → fence (stop writable services, demote).
//! - After a restart, before serving ([`decide_startup`]): primary only if the assignment names
//!   this site and its epoch is not below the last one this site saw; otherwise standby or
//!   fenced (bitnami/charts#20998: a restarted old primary came back as primary).
//! - The failure detector ([`FailureDetector`]): a site is `Suspect` after N consecutive missed
//!   heartbeats and `Dead` only if the witness, an independent view, agrees; a witness that still
//!   sees the site vetoes (repmgr#821).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::model::Assignment;

/// What a serving primary does after this interval's renewal attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickDecision {
    /// Renewed: keep serving; the fencing clock restarts from this attempt.
    KeepServing,
    /// Not renewed, but still within the fencing deadline: keep serving, retry next interval
    /// (a short store blip must not demote the primary: patroni#1195).
    Retry { fence_in: Duration },
    /// Not renewed for longer than the fencing deadline: stop accepting writes now.
    Fence,
}

/// The decision for one interval. Times are monotonic (any origin, e.g. since the agent
/// started); `last_renewed` is when the agent *sent* its last successful renewal — the store
/// counts the ttl from when it received it, so this errs on the safe side.
pub fn decide_tick(renewed: bool, last_renewed: Duration, now: Duration, fencing_deadline: Duration) -> TickDecision {
    if renewed {
        return TickDecision::KeepServing;
    }
    let since = now.saturating_sub(last_renewed);
    if since >= fencing_deadline {
        TickDecision::Fence
    } else {
        TickDecision::Retry {
            fence_in: fencing_deadline - since,
        }
    }
}

/// What the coordination store said when asked, before serving.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreView {
    Assignment(Assignment),
    /// The group has never had a primary.
    NoAssignment,
    /// The store could not be read.
    Unreachable,
}

/// How a restarted site comes up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartupDecision {
    /// Serve as primary at this epoch (record it as last seen, then take the lease).
    Primary { epoch: u64 },
    /// Another site is primary (or none is): come up as a standby.
    Standby {
        primary: Option<String>,
        epoch: Option<u64>,
    },
    /// Serve nothing writable: the role cannot be confirmed.
    Fenced { reason: FenceReason },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FenceReason {
    /// The store could not be read: without it a site cannot know it is still primary.
    StoreUnreachable,
    /// The store holds an epoch below one this site has already seen: it was rolled back or
    /// replaced, and nothing it says about roles can be trusted.
    StaleStore { stored: u64, last_seen: u64 },
}

pub fn decide_startup(site: &str, view: &StoreView, last_seen_epoch: Option<u64>) -> StartupDecision {
    let assignment = match view {
        StoreView::Unreachable => {
            return StartupDecision::Fenced {
                reason: FenceReason::StoreUnreachable,
            }
        }
        StoreView::NoAssignment => {
            return match last_seen_epoch {
                Some(last_seen) => StartupDecision::Fenced {
                    reason: FenceReason::StaleStore { stored: 0, last_seen },
                },
                None => StartupDecision::Standby {
                    primary: None,
                    epoch: None,
                },
            };
        }
        StoreView::Assignment(a) => a,
    };
    if let Some(last_seen) = last_seen_epoch.filter(|&e| assignment.epoch < e) {
        return StartupDecision::Fenced {
            reason: FenceReason::StaleStore {
                stored: assignment.epoch,
                last_seen,
            },
        };
    }
    if assignment.primary_site == site {
        StartupDecision::Primary {
            epoch: assignment.epoch,
        }
    } else {
        StartupDecision::Standby {
            primary: Some(assignment.primary_site.clone()),
            epoch: Some(assignment.epoch),
        }
    }
}

/// Where a site keeps the last epoch it saw, across restarts.
pub trait EpochMemory {
    fn load(&self) -> io::Result<Option<u64>>;
    /// Records `epoch` if it is higher than the one recorded (never moves backwards).
    fn record(&self, epoch: u64) -> io::Result<()>;
}

/// [`EpochMemory`] in a small file (decimal text), replaced atomically (temp + fsync + rename).
#[derive(Clone, Debug)]
pub struct EpochFile {
    path: PathBuf,
}

impl EpochFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        EpochFile { path: path.into() }
    }
}

impl EpochMemory for EpochFile {
    fn load(&self) -> io::Result<Option<u64>> {
        match fs::read_to_string(&self.path) {
            Ok(text) => text.trim().parse().map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not an epoch: {e}", self.path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn record(&self, epoch: u64) -> io::Result<()> {
        if self.load()?.is_some_and(|seen| seen >= epoch) {
            return Ok(());
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // An agent's folder is resurgo's alone: 0700 (issue 9).
            std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700).create(dir)?;
        }
        let temp = self.path.with_extension("tmp");
        let mut file = File::create(&temp)?;
        writeln!(file, "{epoch}")?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, &self.path)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// What the witness (a second, independent observer) reports about a site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WitnessView {
    /// The witness still receives the site's heartbeats.
    Sees,
    /// The witness has lost the site too.
    Lost,
    /// The witness could not be asked.
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteStatus {
    Alive,
    /// Missed `misses` consecutive heartbeats; not enough to act on.
    Suspect {
        misses: u32,
        vetoed: bool,
    },
    /// Suspect here and lost by the witness: failover may proceed.
    Dead,
}

/// Per-site consecutive missed heartbeats, from this observer's point of view.
#[derive(Clone, Debug)]
pub struct FailureDetector {
    suspect_after: u32,
    misses: BTreeMap<String, u32>,
}

impl FailureDetector {
    /// `suspect_after` consecutive misses make a site suspect (at least 1).
    pub fn new(suspect_after: u32) -> Self {
        FailureDetector {
            suspect_after: suspect_after.max(1),
            misses: BTreeMap::new(),
        }
    }

    /// Records one heartbeat interval for `site`: received or missed.
    pub fn heartbeat(&mut self, site: &str, received: bool) {
        let misses = self.misses.entry(site.to_owned()).or_default();
        *misses = if received { 0 } else { misses.saturating_add(1) };
    }

    /// The site's status given what the witness reports now.
    pub fn status(&self, site: &str, witness: WitnessView) -> SiteStatus {
        let misses = self.misses.get(site).copied().unwrap_or(0);
        if misses < self.suspect_after {
            return SiteStatus::Alive;
        }
        match witness {
            WitnessView::Lost => SiteStatus::Dead,
            WitnessView::Sees => SiteStatus::Suspect { misses, vetoed: true },
            WitnessView::Unknown => SiteStatus::Suspect { misses, vetoed: false },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn tick_decisions() {
        // (renewed, last renewed, now, fencing deadline, decision)
        let cases = [
            (true, 0, 100, 20, TickDecision::KeepServing),
            (false, 90, 100, 20, TickDecision::Retry { fence_in: s(10) }),
            (false, 81, 100, 20, TickDecision::Retry { fence_in: s(1) }),
            (false, 80, 100, 20, TickDecision::Fence),
            (false, 10, 100, 20, TickDecision::Fence),
            // A clock that reads earlier than the last renewal counts as no time passed.
            (false, 120, 100, 20, TickDecision::Retry { fence_in: s(20) }),
        ];
        for (renewed, last, now, deadline, expected) in cases {
            assert_eq!(
                decide_tick(renewed, s(last), s(now), s(deadline)),
                expected,
                "renewed={renewed} last={last} now={now}"
            );
        }
    }

    fn assigned(site: &str, epoch: u64) -> StoreView {
        let mut a = Assignment::first("db", site, SystemTime::UNIX_EPOCH);
        a.epoch = epoch;
        StoreView::Assignment(a)
    }

    #[test]
    fn startup_decisions() {
        use StartupDecision::*;
        let standby = |primary: &str, epoch| Standby {
            primary: Some(primary.to_owned()),
            epoch: Some(epoch),
        };
        // (what, store view, last seen epoch at site "a", decision)
        let cases = [
            ("named, first start", assigned("a", 1), None, Primary { epoch: 1 }),
            (
                "named, same epoch as seen",
                assigned("a", 4),
                Some(4),
                Primary { epoch: 4 },
            ),
            ("named, newer epoch", assigned("a", 6), Some(4), Primary { epoch: 6 }),
            ("old primary after failover", assigned("b", 5), Some(4), standby("b", 5)),
            ("other site, first start", assigned("b", 1), None, standby("b", 1)),
            (
                "named, but store rolled back",
                assigned("a", 3),
                Some(4),
                Fenced {
                    reason: FenceReason::StaleStore {
                        stored: 3,
                        last_seen: 4,
                    },
                },
            ),
            (
                "other site, store rolled back",
                assigned("b", 3),
                Some(4),
                Fenced {
                    reason: FenceReason::StaleStore {
                        stored: 3,
                        last_seen: 4,
                    },
                },
            ),
            (
                "store unreachable",
                StoreView::Unreachable,
                Some(4),
                Fenced {
                    reason: FenceReason::StoreUnreachable,
                },
            ),
            (
                "nothing assigned yet",
                StoreView::NoAssignment,
                None,
                Standby {
                    primary: None,
                    epoch: None,
                },
            ),
            (
                "assignment lost after epoch seen",
                StoreView::NoAssignment,
                Some(2),
                Fenced {
                    reason: FenceReason::StaleStore {
                        stored: 0,
                        last_seen: 2,
                    },
                },
            ),
        ];
        for (what, view, last_seen, expected) in cases {
            assert_eq!(decide_startup("a", &view, last_seen), expected, "{what}");
        }
    }

    #[test]
    fn failure_detector_needs_the_witness() {
        use SiteStatus::*;
        use WitnessView::*;
        // (heartbeats received in order, witness, status) with suspect-after 3
        let cases: [(&[bool], WitnessView, SiteStatus); 8] = [
            (&[], Lost, Alive),
            (&[true, true], Lost, Alive),
            (&[false, false], Lost, Alive),
            (&[false, false, false], Lost, Dead),
            (
                &[false, false, false],
                Sees,
                Suspect {
                    misses: 3,
                    vetoed: true,
                },
            ),
            (
                &[false, false, false, false],
                Unknown,
                Suspect {
                    misses: 4,
                    vetoed: false,
                },
            ),
            (&[false, false, true, false, false], Lost, Alive),
            (&[false, false, false, true], Lost, Alive),
        ];
        for (beats, witness, expected) in cases {
            let mut detector = FailureDetector::new(3);
            detector.heartbeat("b", true);
            for &received in beats {
                detector.heartbeat("a", received);
            }
            assert_eq!(detector.status("a", witness), expected, "{beats:?} witness {witness:?}");
            assert_eq!(detector.status("b", Lost), Alive, "other sites are independent");
        }
    }

    #[test]
    fn epoch_file_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let memory = EpochFile::new(dir.path().join("epoch"));
        assert_eq!(memory.load().unwrap(), None);
        memory.record(3).unwrap();
        memory.record(2).unwrap();
        assert_eq!(memory.load().unwrap(), Some(3));
        memory.record(7).unwrap();
        assert_eq!(EpochFile::new(dir.path().join("epoch")).load().unwrap(), Some(7));
        fs::write(dir.path().join("epoch"), "x").unwrap();
        assert_eq!(memory.load().unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
