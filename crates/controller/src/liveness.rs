//! What a site's daemon records of its own loops, for `GET /metrics` to read at scrape time
//! (metrics are never kept in memory, velero#6809): the heartbeats its agent saw of the
//! other sites (`<state>/agents/<site>/heartbeats.json`, written by the heartbeat thread
//! after each round) and its last reconcile (`<state>/agents/<site>/reconcile.json`,
//! written after each tick).
//!
//! Small files, overwritten whole (a temporary file, then renamed) and not synced: one lost
//! to a crash is written again by the next round. Each record says when it was written, so
//! a loop that stopped shows as a record growing old, never as a fresh one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What the agent's heartbeat thread saw in its latest round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeats {
    /// When the round ended (Unix seconds).
    pub written: f64,
    /// The heartbeat interval (seconds).
    pub interval_s: f64,
    /// Per site heartbeated.
    pub sites: BTreeMap<String, Seen>,
}

/// What the agent saw of one site's agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    /// When it last answered a heartbeat (Unix seconds), since the agent started.
    pub last_answered: Option<f64>,
    /// Whether it answered the latest one.
    pub answered: bool,
}

impl Heartbeats {
    /// Whether the round is recent (within three intervals, and at least 5 s): an older
    /// record says the thread stopped heartbeating, and its `answered` no longer stands.
    pub fn current(&self, now: f64) -> bool {
        now - self.written <= (3.0 * self.interval_s).max(5.0)
    }
}

/// The daemon's last reconcile pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reconcile {
    /// When it finished (Unix seconds).
    pub finished: f64,
    pub duration_s: f64,
}

fn dir(state: &Path, site: &str) -> PathBuf {
    state.join("agents").join(site)
}

/// Records `heartbeats` as `site`'s agent's latest round (best effort).
pub fn record_heartbeats(state: &Path, site: &str, heartbeats: &Heartbeats) {
    write(&dir(state, site).join("heartbeats.json"), heartbeats);
}

/// The latest round of heartbeats `site`'s agent recorded.
pub fn heartbeats(state: &Path, site: &str) -> Option<Heartbeats> {
    read(&dir(state, site).join("heartbeats.json"))
}

/// Records a reconcile pass of `site`'s daemon that took `took` and finished now (best effort).
pub fn record_reconcile(state: &Path, site: &str, took: std::time::Duration) {
    let record = Reconcile {
        finished: unix_now(),
        duration_s: took.as_secs_f64(),
    };
    write(&dir(state, site).join("reconcile.json"), &record);
}

/// The last reconcile pass `site`'s daemon recorded.
pub fn reconcile(state: &Path, site: &str) -> Option<Reconcile> {
    read(&dir(state, site).join("reconcile.json"))
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    unix(std::time::SystemTime::now())
}

pub fn unix(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn write<T: Serialize>(path: &Path, value: &T) {
    let Ok(text) = serde_json::to_vec(value) else { return };
    if let Some(dir) = path.parent() {
        if resurgo_provider::private_dir(dir).is_err() {
            return;
        }
    }
    // One writer per file (the site's daemon); the name is still this process's alone.
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    if std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .is_err()
    {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_and_an_old_round_is_not_current() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(heartbeats(dir.path(), "a"), None);
        let round = Heartbeats {
            written: 1000.0,
            interval_s: 1.0,
            sites: [(
                "b".to_string(),
                Seen {
                    last_answered: Some(999.5),
                    answered: true,
                },
            )]
            .into(),
        };
        record_heartbeats(dir.path(), "a", &round);
        assert_eq!(heartbeats(dir.path(), "a"), Some(round.clone()));
        assert!(round.current(1004.0) && !round.current(1006.0));
        record_reconcile(dir.path(), "a", std::time::Duration::from_millis(250));
        let r = reconcile(dir.path(), "a").unwrap();
        assert_eq!(r.duration_s, 0.25);
        assert!((unix_now() - r.finished).abs() < 60.0);
    }
}
