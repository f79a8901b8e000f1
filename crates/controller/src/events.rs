//! The event log: append-only JSON lines, one per thing that happened, each with its time,
//! site, service and the commit of the desired state it was judged against.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What happened. A closed set: readers can rely on every kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ControllerStarted,
    ControllerStopped,
    DesiredChanged,
    SpecInvalid,
    GitUnreachable,
    GitReachable,
    UsingLastKnownGood,
    DriftSeen,
    DriftCorrected,
    DriftCleared,
    ApplyStarted,
    ApplyFinished,
    ApplyFailed,
    SiteUnreachable,
    SiteReachable,
    BackupStarted,
    BackupFinished,
    BackupFailed,
    ReplicationFinished,
    ReplicationFailed,
    /// A dataset's newest restorable point at a site is older than its RPO objective.
    RpoBreached,
    RpoRestored,
    VerifyPassed,
    VerifyFailed,
    /// PostgreSQL's newest attempt to archive a WAL segment failed.
    ArchivingFailing,
    ArchivingRecovered,
    /// A failover or failback changed which site is primary.
    AssignmentChanged,
    FailoverStarted,
    FailoverFinished,
    /// A run's `notify` step: the services of a group now serve at another site.
    ServicesMoved,
    FailoverFailed,
    /// A route now leads somewhere else (or started listening).
    RouteSwitched,
    RouteFailed,
    /// A warm standby is behind its primary by more than the dataset's RPO objective, is not
    /// streaming, or cannot be measured.
    StandbyLagging,
    /// A warm standby is streaming and within the RPO objective (again, or at first sight).
    StandbyCaughtUp,
    /// A site's agent started.
    AgentStarted,
    /// A workspace was handed out (its copies made, its services serving, masked).
    WorkspaceReady,
    /// A workspace could not be made or brought back; what was made is removed.
    WorkspaceFailed,
    /// A workspace was deleted at a person's request.
    WorkspaceDeleted,
    /// A workspace's TTL passed: it was deleted.
    WorkspaceExpired,
    /// A failover took a workspace's capacity back (stopped, or destroyed).
    WorkspacePreempted,
    /// A preempted workspace is back after failback.
    WorkspaceRestored,
    /// A site missed heartbeats (and whether the witness vetoed its death).
    SiteSuspect,
    /// Suspect here and lost by the witness.
    SiteDead,
    /// The agent stopped its site's writers: it could not renew the primary lease in time.
    Fenced,
    /// The agent holds the primary lease and serves.
    Unfenced,
    /// A former primary came back as a standby.
    Rejoined,
    /// A failover was due but the policy held it back (off, maintenance, cool-down).
    FailoverSuppressed,
    /// A drill began (`resurgo drill run`).
    DrillStarted,
    /// A drill ended and its report's verdict is pass.
    DrillPassed,
    /// A drill ended and its report's verdict is fail (an objective missed, something left
    /// behind, or it did not complete).
    DrillFailed,
    /// A drill's fault was applied at this site (written down first, bounded in time).
    FaultApplied,
    /// A drill's fault was reverted at this site, as its drill asked.
    FaultReverted,
    /// A drill's fault outlived its `until` and was reverted by the site itself (its drill
    /// died, or could not reach the site to revert it).
    FaultExpired,
    /// A notification reached its receiver (`notification` says which, and of what).
    NotificationDelivered,
    /// An attempt to deliver a notification failed; it is tried again after a back-off.
    NotificationFailed,
    /// A notification was given up (its receiver stayed down past `give_up_after`, or refused
    /// it): `notification.payload` holds what would have been sent.
    NotificationUndelivered,
}

/// The kind as the event log spells it (`failover_finished`), so echoed lines and the log agree.
impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(name)) => f.write_str(&name),
            _ => write!(f, "{self:?}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// The commit (or `folder:<digest>`) of the desired state in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub message: String,
    /// The `notification_*` kinds: which notification, to whom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<NotificationRecord>,
    /// What a `backup_finished` added to the repository, in bytes (after deduplication and
    /// compression). Older logs have it only in the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_bytes: Option<u64>,
}

/// What the event log records of a notification (`crate::notify`). Never its receiver's URL
/// or key: the receiver is named.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationRecord {
    /// The receiver, as the spec names it.
    pub receiver: String,
    /// The kind of the event notified.
    pub event: EventKind,
    /// The same for every attempt at one notification (the `X-Resurgo-Delivery` header): a
    /// receiver can drop one it has seen.
    pub delivery: String,
    /// The events it stands for: the first and the repeats folded into it.
    pub count: u32,
    /// Attempts so far.
    pub attempts: u32,
    /// Why the attempt failed (`notification_failed`, `notification_undelivered`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What would have been sent (`notification_undelivered`): the body, without the URL or
    /// the signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

impl Event {
    pub fn new(kind: EventKind, message: impl Into<String>) -> Event {
        Event {
            time: now_rfc3339(),
            kind,
            site: None,
            service: None,
            dataset: None,
            commit: None,
            message: message.into(),
            notification: None,
            added_bytes: None,
        }
    }
    pub fn site(mut self, site: &str) -> Event {
        self.site = Some(site.to_string());
        self
    }
    pub fn service(mut self, service: &str) -> Event {
        self.service = Some(service.to_string());
        self
    }
    pub fn dataset(mut self, dataset: &str) -> Event {
        self.dataset = Some(dataset.to_string());
        self
    }
    pub fn commit(mut self, commit: Option<&str>) -> Event {
        self.commit = commit.map(str::to_string);
        self
    }
    pub fn added_bytes(mut self, bytes: u64) -> Event {
        self.added_bytes = Some(bytes);
        self
    }

    /// Logs the event (besides the event log, which is the record): a warning when something
    /// failed or was lost, else info; at debug when `quiet` — a caller that tells its own story,
    /// like the demo. Its fields go with it, so a log shipper can filter on them.
    pub fn log(&self, quiet: bool) {
        // The kind as the event log names it (`drift_seen`).
        let kind = match serde_json::to_value(self.kind) {
            Ok(serde_json::Value::String(name)) => name,
            _ => format!("{:?}", self.kind),
        };
        macro_rules! at {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    kind = kind.as_str(),
                    site = self.site.as_deref(),
                    service = self.service.as_deref(),
                    dataset = self.dataset.as_deref(),
                    commit = self.commit.as_deref(),
                    "{}",
                    self.message
                )
            };
        }
        match (quiet, self.kind.is_trouble()) {
            (true, _) => at!(tracing::Level::DEBUG),
            (false, true) => at!(tracing::Level::WARN),
            (false, false) => at!(tracing::Level::INFO),
        }
    }
}

impl EventKind {
    /// Something failed, was lost or is behind its objective: logged as a warning.
    pub fn is_trouble(self) -> bool {
        use EventKind::*;
        matches!(
            self,
            SpecInvalid
                | GitUnreachable
                | UsingLastKnownGood
                | ApplyFailed
                | SiteUnreachable
                | BackupFailed
                | ReplicationFailed
                | RpoBreached
                | VerifyFailed
                | ArchivingFailing
                | FailoverFailed
                | RouteFailed
                | StandbyLagging
                | SiteSuspect
                | SiteDead
                | Fenced
                | FailoverSuppressed
                | DrillFailed
                | FaultExpired
                | NotificationFailed
                | NotificationUndelivered
        )
    }
}

/// Appends events to a JSON-lines file. Each event is one `write` of one line on a file
/// opened for appending, so lines from concurrent writers never interleave.
#[derive(Debug, Clone)]
pub struct EventLog {
    path: PathBuf,
}

impl EventLog {
    pub fn new(path: impl Into<PathBuf>) -> EventLog {
        EventLog { path: path.into() }
    }

    /// The event log of a state folder (`<state>/events.jsonl`).
    pub fn of_state(state_dir: &Path) -> EventLog {
        EventLog::new(state_dir.join("events.jsonl"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&self, event: &Event) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            resurgo_provider::private_dir(dir)?;
        }
        let mut line = serde_json::to_vec(event).expect("events serialize");
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        f.write_all(&line)
    }

    /// All events so far; unreadable lines are skipped.
    pub fn read(&self) -> std::io::Result<Vec<Event>> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

/// Follows an append-only JSON-lines file from a byte offset: each read gets only what was
/// appended since, and only whole lines.
pub struct Tail {
    path: std::path::PathBuf,
    offset: u64,
}

impl Tail {
    /// Follows the event log `log` from its end now: only events appended from here on.
    pub fn of_log_from_end(log: &EventLog) -> Tail {
        let offset = std::fs::metadata(log.path()).map_or(0, |m| m.len());
        Tail {
            path: log.path().to_path_buf(),
            offset,
        }
    }

    /// The events appended since the last call (whole lines; unreadable ones skipped).
    pub fn new_events(&mut self) -> Vec<Event> {
        self.new_lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn new(path: std::path::PathBuf) -> Tail {
        Tail { path, offset: 0 }
    }

    /// Follows `path` from `offset` (a position a previous `Tail` reached, kept on disk). A
    /// file now shorter than that was replaced: it is followed from its start.
    pub fn at(path: std::path::PathBuf, offset: u64) -> Tail {
        let len = std::fs::metadata(&path).map_or(0, |m| m.len());
        Tail {
            path,
            offset: if len < offset { 0 } else { offset },
        }
    }

    /// The offset up to which the file has been read (always just after a whole line).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The events appended since the last call, each with the offset its line starts at.
    pub fn new_events_at(&mut self) -> Vec<(u64, Event)> {
        self.new_raw_lines()
            .into_iter()
            .filter_map(|(at, line)| Some((at, serde_json::from_str(&line).ok()?)))
            .collect()
    }

    /// The whole non-empty lines appended since the last call.
    pub fn new_lines(&mut self) -> Vec<String> {
        self.new_raw_lines()
            .into_iter()
            .map(|(_, line)| line)
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// Every whole line appended since the last call, empty ones too, without its newline,
    /// with the offset it starts at.
    fn new_raw_lines(&mut self) -> Vec<(u64, String)> {
        use std::io::{Read, Seek, SeekFrom};
        let mut bytes = Vec::new();
        let read = std::fs::File::open(&self.path).and_then(|mut f| {
            f.seek(SeekFrom::Start(self.offset))?;
            f.read_to_end(&mut bytes)
        });
        if read.is_err() {
            return Vec::new();
        }
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        self.offset += whole as u64;
        // Split on the newline byte, not on lossy text: offsets count the bytes as written.
        let mut at = self.offset - whole as u64;
        bytes[..whole]
            .split_inclusive(|b| *b == b'\n')
            .map(|line| {
                let start = at;
                at += line.len() as u64;
                (start, String::from_utf8_lossy(&line[..line.len() - 1]).into_owned())
            })
            .collect()
    }
}

/// Current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    format_rfc3339(std::time::SystemTime::now())
}

/// Formats a time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339(t: std::time::SystemTime) -> String {
    resurgo_spec::units::format_rfc3339(t, 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::new(dir.path().join("events.jsonl"));
        log.append(
            &Event::new(EventKind::DriftSeen, "x")
                .site("a")
                .service("web")
                .commit(Some("abc")),
        )
        .unwrap();
        log.append(&Event::new(EventKind::DriftCorrected, "y")).unwrap();
        let events = log.read().unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].site.as_deref(), Some("a"));
        assert_eq!(events[1].kind, EventKind::DriftCorrected);
    }

    /// Each event comes with the offset its line starts at, so a reader that keeps an offset
    /// on disk (`notify`) starts again exactly at an event; a torn last line waits.
    #[test]
    fn a_tail_gives_each_event_with_where_its_line_starts() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::new(dir.path().join("events.jsonl"));
        log.append(&Event::new(EventKind::Fenced, "é")).unwrap();
        log.append(&Event::new(EventKind::Unfenced, "x")).unwrap();
        let mut tail = Tail::new(log.path().to_path_buf());
        let read = tail.new_events_at();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].0, 0);
        let mut again = Tail::at(log.path().to_path_buf(), read[1].0);
        assert_eq!(again.new_events_at()[0].1.kind, EventKind::Unfenced);
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(log.path()).unwrap();
        f.write_all(b"{\"torn").unwrap();
        assert!(tail.new_events_at().is_empty());
        assert_eq!(tail.offset(), std::fs::metadata(log.path()).unwrap().len() - 6);
        // A log shorter than the offset kept was replaced: read from its start.
        assert_eq!(Tail::at(log.path().to_path_buf(), 1 << 40).offset(), 0);
    }

    #[test]
    fn a_kind_is_shown_as_the_log_spells_it() {
        assert_eq!(EventKind::FailoverFinished.to_string(), "failover_finished");
    }
}
