//! The measured figures of the cost of DR (`resurgo cost`, `GET /v1/cost`), gathered from what
//! is stored: each repository's size (a listing of its objects, nothing read) and what its
//! snapshots say of each dataset, the event log's replications of the last 30 days (with the
//! bytes each copied), the drill reports of the last year, the runs' promote and restore steps
//! and the standbys' last lag. The pricing is `resurgo_plan::cost`, pure.

use std::path::Path;

use resurgo_plan::cost::{
    DatasetBytes, DrillTime, Measured, Recovery, RecoveryAction, Replicated, RepositoryBytes, StandbyLag,
};
use resurgo_spec::{Strategy, System};

use crate::engine::Engine;
use crate::events::{Event, EventKind};
use crate::protect::Protector;

/// How far back replications are counted.
pub const REPLICATION_WINDOW_DAYS: f64 = 30.0;

/// How far back drills are counted (then spread over its months).
pub const DRILL_WINDOW_DAYS: f64 = 365.0;

const DAY: f64 = 86_400.0;

fn unix(rfc3339: &str) -> Option<f64> {
    resurgo_spec::units::parse_rfc3339(rfc3339).ok()
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The figures of `site` (its repository, the replications it sent, the runs and drills in
/// this state folder), or of every site (one machine) when `site` is None.
pub fn measure(engine: &Engine, system: &System, state: &Path, site: Option<&str>) -> Measured {
    let now = now_unix();
    let protector = Protector::new(system, engine, state);
    let here = |s: &str| site.is_none_or(|only| only == s);
    let repositories = system
        .sites
        .iter()
        .filter(|(name, s)| s.repository.is_some() && here(name))
        .map(|(name, _)| repository(&protector, system, name))
        .collect();
    let events = crate::events::EventLog::of_state(state).read().unwrap_or_default();
    let standby_lag = system
        .datasets
        .iter()
        .filter(|(_, d)| d.strategy == Strategy::Standby)
        .filter_map(|(name, d)| {
            let at = system.services.get(&d.service)?.standby.first()?;
            here(at).then(|| StandbyLag {
                dataset: name.clone(),
                site: at.clone(),
                seconds: crate::protect::read_lag(state, name, at).and_then(|l| l.seconds),
            })
        })
        .collect();
    Measured {
        repositories,
        replications: replications(&events, site, now),
        drills: drills(&crate::drill::reports(state), now),
        drill_window_days: DRILL_WINDOW_DAYS,
        recoveries: recoveries(&crate::report::runs(state, None).unwrap_or_default()),
        standby_lag,
    }
}

/// What `site`'s repository stores, in all and per dataset.
fn repository(protector: &Protector, system: &System, site: &str) -> RepositoryBytes {
    let failed = |e: String| RepositoryBytes {
        site: site.into(),
        bytes: None,
        error: Some(e),
        datasets: vec![],
    };
    let repo = match protector.open(site) {
        Ok(r) => r,
        Err(e) => return failed(e.to_string()),
    };
    let (bytes, snapshots) = match (repo.stored_bytes(), repo.snapshots(None)) {
        (Ok(b), Ok(s)) => (b, s),
        (Err(e), _) | (_, Err(e)) => return failed(e.to_string()),
    };
    let archive = repo.archive();
    let datasets = system
        .datasets
        .keys()
        .filter_map(|name| {
            let mine: Vec<_> = snapshots.iter().filter(|s| s.meta.dataset == *name).collect();
            let logs: u64 = archive
                .list(name)
                .map(|segments| segments.iter().map(|s| s.size).sum())
                .unwrap_or(0);
            if mine.is_empty() && logs == 0 {
                return None;
            }
            Some(DatasetBytes {
                dataset: name.clone(),
                stored_bytes: mine.iter().map(|s| s.added).sum::<u64>() + logs,
                data_bytes: mine.iter().max_by_key(|s| s.unix).map_or(0, |s| s.bytes),
                snapshots: mine.len() as u64,
            })
        })
        .collect();
    RepositoryBytes {
        site: site.into(),
        bytes: Some(bytes),
        error: None,
        datasets,
    }
}

/// The bytes a `replication_finished` event's message records (`… (<bytes> bytes)`,
/// `schedule.rs`); None for an event written before it did.
fn replicated_bytes(message: &str) -> Option<u64> {
    let inside = message.strip_suffix(" bytes)")?.rsplit_once('(')?.1;
    inside.trim().parse().ok()
}

/// Per (dataset, from, to): what was replicated over the last [`REPLICATION_WINDOW_DAYS`]
/// (less when the log is younger, at least a day). A replication's sender is the site of the
/// dataset's newest backup before it (the home site backs up, then replicates); with `site`,
/// only what it sent.
pub fn replications(events: &[Event], site: Option<&str>, now: f64) -> Vec<Replicated> {
    let since = now - REPLICATION_WINDOW_DAYS * DAY;
    let oldest = events.iter().find_map(|e| unix(&e.time)).unwrap_or(now);
    let days = ((now - oldest.max(since)) / DAY).clamp(1.0, REPLICATION_WINDOW_DAYS);
    let mut out: Vec<Replicated> = Vec::new();
    let mut backed_up_at: std::collections::BTreeMap<&str, &str> = Default::default();
    for e in events {
        let (Some(dataset), Some(at_site), Some(at)) = (e.dataset.as_deref(), e.site.as_deref(), unix(&e.time)) else {
            continue;
        };
        match e.kind {
            EventKind::BackupFinished => {
                backed_up_at.insert(dataset, at_site);
            }
            EventKind::ReplicationFinished if at >= since => {
                let Some(from) = backed_up_at.get(dataset).copied() else {
                    continue;
                };
                if site.is_some_and(|s| s != from) {
                    continue;
                }
                let i = match out
                    .iter()
                    .position(|r| (r.dataset.as_str(), r.from.as_str(), r.to.as_str()) == (dataset, from, at_site))
                {
                    Some(i) => i,
                    None => {
                        out.push(Replicated {
                            dataset: dataset.into(),
                            from: from.into(),
                            to: at_site.into(),
                            bytes: 0,
                            replications: 0,
                            unmeasured: 0,
                            days,
                        });
                        out.len() - 1
                    }
                };
                let r = &mut out[i];
                r.replications += 1;
                match replicated_bytes(&e.message) {
                    Some(b) => r.bytes += b,
                    None => r.unmeasured += 1,
                }
            }
            _ => {}
        }
    }
    out
}

/// The drills run from this state folder (an operator's `resurgo drill run` keeps its reports
/// there) within the last [`DRILL_WINDOW_DAYS`].
pub fn drills_in(state: &Path) -> Vec<DrillTime> {
    drills(&crate::drill::reports(state), now_unix())
}

/// The drills that started within the last [`DRILL_WINDOW_DAYS`] and ended.
fn drills(reports: &[resurgo_drill::Report], now: f64) -> Vec<DrillTime> {
    reports
        .iter()
        .filter_map(|r| {
            let started = unix(&r.started)?;
            let ended = unix(r.ended.as_deref()?)?;
            (started >= now - DRILL_WINDOW_DAYS * DAY).then(|| DrillTime {
                run: r.run.clone(),
                drill: r.drill.clone(),
                started: r.started.clone(),
                hours: (ended - started).max(0.0) / 3600.0,
            })
        })
        .collect()
}

/// The promote and restore steps that finished (`promote <dataset> at <site>`, `restore …`,
/// `resurgo_plan::recovery`), the newest of each, with their run's measures.
fn recoveries(runs: &[resurgo_api::types::Run]) -> Vec<Recovery> {
    let mut out: Vec<Recovery> = Vec::new();
    for run in runs {
        for step in &run.report.steps {
            let (action, rest) = if let Some(rest) = step.name.strip_prefix("promote ") {
                (RecoveryAction::Promote, rest)
            } else if let Some(rest) = step.name.strip_prefix("restore ") {
                (RecoveryAction::Restore, rest)
            } else {
                continue;
            };
            let (Some((dataset, site)), Some(millis), Some(finished)) =
                (rest.rsplit_once(" at "), step.millis, step.finished.as_ref())
            else {
                continue;
            };
            if step.outcome != resurgo_runbook::run::StepOutcome::Done {
                continue;
            }
            let found = Recovery {
                dataset: dataset.into(),
                site: site.into(),
                action,
                seconds: millis as f64 / 1000.0,
                run: run.report.run.clone(),
                finished: finished.clone(),
                rto_s: run.measures.as_ref().and_then(|m| m.rto_s),
                rpo_s: run.measures.as_ref().and_then(|m| m.rpo_s),
            };
            match out
                .iter_mut()
                .find(|r| (&r.dataset, &r.site, r.action) == (&found.dataset, &found.site, found.action))
            {
                Some(r) if r.finished < found.finished => *r = found,
                Some(_) => {}
                None => out.push(found),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, time: &str, site: &str, message: &str) -> Event {
        let mut e = Event::new(kind, message).site(site).dataset("orders");
        e.time = time.into();
        e
    }

    #[test]
    fn replications_are_counted_by_sender_with_their_bytes_over_the_window() {
        let now = unix("2026-03-31T00:00:00Z").unwrap();
        let events = vec![
            event(
                EventKind::BackupFinished,
                "2026-03-01T00:00:00Z",
                "a",
                "snapshot 1 (10 bytes, 5 new)",
            ),
            // Older than 30 days: not counted.
            event(
                EventKind::ReplicationFinished,
                "2026-02-27T00:00:00Z",
                "b",
                "1 snapshots copied from a (999 bytes)",
            ),
            event(
                EventKind::ReplicationFinished,
                "2026-03-02T00:00:00Z",
                "b",
                "1 snapshots copied from a (300 bytes)",
            ),
            event(
                EventKind::ReplicationFinished,
                "2026-03-03T00:00:00Z",
                "b",
                "1 snapshots copied",
            ),
            event(
                EventKind::BackupFinished,
                "2026-03-04T00:00:00Z",
                "b",
                "snapshot 2 (10 bytes, 5 new)",
            ),
            event(
                EventKind::ReplicationFinished,
                "2026-03-05T00:00:00Z",
                "a",
                "1 snapshots copied from b (40 bytes)",
            ),
        ];
        let all = replications(&events, None, now);
        assert_eq!(all.len(), 2, "{all:#?}");
        let ab = &all[0];
        assert_eq!((ab.from.as_str(), ab.to.as_str()), ("a", "b"));
        assert_eq!((ab.bytes, ab.replications, ab.unmeasured, ab.days), (300, 2, 1, 30.0));
        let from_b = replications(&events, Some("b"), now);
        assert_eq!(from_b.len(), 1);
        assert_eq!((from_b[0].to.as_str(), from_b[0].bytes), ("a", 40));
        // A log a day and a half old counts a day and a half, not 30.
        let young = replications(&events[4..], None, unix("2026-03-05T12:00:00Z").unwrap());
        assert_eq!(young[0].days, 1.5);
    }
}
