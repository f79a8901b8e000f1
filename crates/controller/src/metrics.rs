//! `GET /metrics`: a site's DR gauges and counters in Prometheus's text exposition format
//! (0.0.4), computed when scraped from what is stored — the site's report (`report.rs`: the
//! recovery points in its repository, its standbys' lag, drift, roles from the coordination
//! store, workspaces), the event log (backups and replications), the runs' journals and
//! measures, the drill reports. Nothing is kept in memory between scrapes: a metric kept in a
//! process is wrong after a restart or a move (velero#6809, #8753, #9374).
//!
//! A value that cannot be known (a repository that does not answer, a lag not measured) is
//! left out, never written as 0: an alert on it then sees an absent series, not a healthy one.
//!
//! The exposition is written by hand ([`Exposition`]): a few families, no dependency.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use resurgo_api::types::SiteReport;
use resurgo_spec::System;
use serde::{Deserialize, Serialize};

use crate::events::{Event, EventKind};

/// One metric family: its samples under one `# HELP` and `# TYPE`.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(String, f64)>,
}

/// A text exposition being written: families in the order first named, each with its samples.
#[derive(Default)]
pub struct Exposition {
    families: Vec<Family>,
}

impl Exposition {
    fn family(&mut self, name: &'static str, kind: &'static str, help: &'static str) -> &mut Family {
        let at = match self.families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.families.push(Family {
                    name,
                    kind,
                    help,
                    samples: Vec::new(),
                });
                self.families.len() - 1
            }
        };
        &mut self.families[at]
    }

    /// A gauge's sample.
    pub fn gauge(&mut self, name: &'static str, help: &'static str, labels: &[(&str, &str)], value: f64) {
        self.family(name, "gauge", help)
            .samples
            .push((label_set(labels), value));
    }

    /// A counter's sample (`name` ends with `_total`).
    pub fn counter(&mut self, name: &'static str, help: &'static str, labels: &[(&str, &str)], value: f64) {
        debug_assert!(name.ends_with("_total"), "{name}");
        self.family(name, "counter", help)
            .samples
            .push((label_set(labels), value));
    }

    /// The text: a family with no sample is left out.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in self.families.iter().filter(|f| !f.samples.is_empty()) {
            let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
            for (labels, value) in &f.samples {
                let _ = writeln!(out, "{}{} {}", f.name, labels, number(*value));
            }
        }
        out
    }
}

fn label_set(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// A label value as the format wants it: `\`, `"` and newlines escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn unix(rfc3339: &str) -> Option<f64> {
    resurgo_spec::units::parse_rfc3339(rfc3339).ok()
}

/// What the event log says of one dataset's backups (or replications) at one site.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backups {
    pub last_attempt: Option<f64>,
    pub last_success: Option<f64>,
    pub last_failure: Option<f64>,
    pub succeeded: u64,
    pub failed: u64,
    /// From the newest `backup_started` to the `backup_finished` that followed it.
    pub last_duration_s: Option<f64>,
    /// What the newest successful backup added to the repository.
    pub last_added_bytes: Option<u64>,
    pub added_bytes_total: u64,
}

/// What a `backup_finished` added to the repository: its field, else (a log written before
/// the field) its message (`snapshot <id> (<bytes> bytes, <added> new)`, `schedule.rs`).
fn added_bytes(e: &Event) -> Option<u64> {
    if e.added_bytes.is_some() {
        return e.added_bytes;
    }
    let inside = e.message.rsplit_once('(')?.1;
    let (_, rest) = inside.split_once(" bytes, ")?;
    rest.strip_suffix(" new)")?.trim().parse().ok()
}

/// What one site's event log records for its metrics — the backups it took, per dataset; the
/// replications that followed them, per dataset and site copied into; the notifications it
/// sent, per receiver and result —: the event log folded one event at a time, oldest first
/// ([`LogHistory::add`]), so that a fold can stop and go on later (`fold_log`).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogHistory {
    pub backups: BTreeMap<String, Backups>,
    /// Dataset → site copied into → its replications.
    pub replications: BTreeMap<String, BTreeMap<String, Backups>>,
    /// Per dataset, when the backup in progress at this site started.
    started: BTreeMap<String, f64>,
    /// Per dataset, the site of its newest finished backup.
    backed_up_at: BTreeMap<String, String>,
    /// Receiver → result (`delivered`, `failed`, `undelivered`) → notifications this site
    /// recorded (`crate::notify`).
    #[serde(default)]
    pub notifications: BTreeMap<String, BTreeMap<String, u64>>,
}

/// The result a `notification_*` event records, as the metric names it.
const NOTIFICATION_RESULTS: [(EventKind, &str); 3] = [
    (EventKind::NotificationDelivered, "delivered"),
    (EventKind::NotificationFailed, "failed"),
    (EventKind::NotificationUndelivered, "undelivered"),
];

impl LogHistory {
    /// Adds `e`, the next event, to what `site` did. A replication event names the site copied
    /// into; it is `site`'s when the dataset's newest backup before it was taken at `site`
    /// (the home site backs up and then replicates, `schedule.rs`), so a log shared by several
    /// sites' agents (`controller --agents`) counts each replication once.
    pub fn add(&mut self, e: &Event, site: &str) {
        if let (Some(record), Some((_, result))) = (
            e.notification.as_ref().filter(|_| e.site.as_deref() == Some(site)),
            NOTIFICATION_RESULTS.iter().find(|(k, _)| *k == e.kind),
        ) {
            *self
                .notifications
                .entry(record.receiver.clone())
                .or_default()
                .entry((*result).to_string())
                .or_default() += 1;
            return;
        }
        let (Some(dataset), Some(at), Some(at_site)) = (e.dataset.as_deref(), unix(&e.time), e.site.as_deref()) else {
            return;
        };
        if e.kind == EventKind::BackupFinished {
            self.backed_up_at.insert(dataset.to_string(), at_site.to_string());
        }
        if matches!(e.kind, EventKind::ReplicationFinished | EventKind::ReplicationFailed) {
            if self.backed_up_at.get(dataset).map(String::as_str) != Some(site) {
                return;
            }
            let r = self
                .replications
                .entry(dataset.to_string())
                .or_default()
                .entry(at_site.to_string())
                .or_default();
            if e.kind == EventKind::ReplicationFinished {
                r.succeeded += 1;
                r.last_success = Some(at);
            } else {
                r.failed += 1;
                r.last_failure = Some(at);
            }
            return;
        }
        if at_site != site {
            return;
        }
        match e.kind {
            EventKind::BackupStarted => {
                let b = self.backups.entry(dataset.to_string()).or_default();
                b.last_attempt = Some(at);
                self.started.insert(dataset.to_string(), at);
            }
            EventKind::BackupFinished => {
                let b = self.backups.entry(dataset.to_string()).or_default();
                b.succeeded += 1;
                b.last_success = Some(at);
                b.last_duration_s = self.started.remove(dataset).map(|s| (at - s).max(0.0));
                b.last_added_bytes = added_bytes(e);
                b.added_bytes_total += b.last_added_bytes.unwrap_or(0);
            }
            EventKind::BackupFailed => {
                let b = self.backups.entry(dataset.to_string()).or_default();
                b.failed += 1;
                b.last_failure = Some(at);
                self.started.remove(dataset);
            }
            _ => {}
        }
    }
}

/// From `events` (oldest first): what `site` backed up and replicated.
pub fn backups(events: &[Event], site: &str) -> LogHistory {
    let mut history = LogHistory::default();
    for e in events {
        history.add(e, site);
    }
    history
}

/// Bumped when [`Folded`]'s form or the fold changes: a fold of another format is not used.
const FOLD_FORMAT: u32 = 2;

/// A fold of the event log stored beside it (`<state>/metrics/<site>.backups.json`): the
/// history of `site` up to byte `offset` of the log file `file` (device, inode), whose last
/// line before `offset` was `last_line`.
#[derive(Serialize, Deserialize)]
struct Folded {
    format: u32,
    site: String,
    file: (u64, u64),
    offset: u64,
    last_line: String,
    history: LogHistory,
}

/// Where the fold of `site`'s backup history is stored.
pub fn fold_path(state: &Path, site: &str) -> std::path::PathBuf {
    state.join("metrics").join(format!("{site}.backups.json"))
}

/// What the event log `log` says `site` backed up and replicated, as [`backups`] over the
/// whole log says it, reading only what was appended since the stored fold at `fold` (which
/// is then moved forward). The log is append-only (`events.rs`); a fold that does not fit it —
/// another file (device and inode), a log shorter than the fold's offset, or a line before
/// the offset other than the one the fold ended with — is ignored, and the whole log is read.
/// (A line changed in place further back is not noticed: nothing resurgo runs does that.)
/// A fold that cannot be read or written costs a whole read, nothing else.
pub fn fold_log(log: &Path, fold: &Path, site: &str) -> LogHistory {
    use std::io::{Read as _, Seek as _, SeekFrom};
    use std::os::unix::fs::MetadataExt as _;
    let Ok(mut file) = std::fs::File::open(log) else {
        return LogHistory::default();
    };
    let Ok(meta) = file.metadata() else {
        return LogHistory::default();
    };
    let identity = (meta.dev(), meta.ino());
    let stored: Option<Folded> = std::fs::read(fold)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(|f: &Folded| f.format == FOLD_FORMAT && f.site == site && f.file == identity && f.offset <= meta.len());
    // Read from the start of the fold's last line, to check it is still there.
    let (mut folded, from) = match stored {
        Some(f) if f.offset > 0 => {
            let from = f.offset.saturating_sub(f.last_line.len() as u64 + 1);
            (f, from)
        }
        _ => (
            Folded {
                format: FOLD_FORMAT,
                site: site.to_string(),
                file: identity,
                offset: 0,
                last_line: String::new(),
                history: LogHistory::default(),
            },
            0,
        ),
    };
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(from)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return folded.history;
    }
    let mut start = (folded.offset - from) as usize;
    let expected = [folded.last_line.as_bytes(), b"\n"].concat();
    if folded.offset > 0 && !bytes.starts_with(&expected) {
        // Not the log the fold was made of: all of it, again.
        bytes.clear();
        if file.seek(SeekFrom::Start(0)).is_err() || file.read_to_end(&mut bytes).is_err() {
            return LogHistory::default();
        }
        folded.offset = 0;
        folded.last_line.clear();
        folded.history = LogHistory::default();
        start = 0;
    }
    // Whole lines only: one being appended is read next time.
    let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1).max(start);
    if end == start {
        return folded.history;
    }
    let appended = String::from_utf8_lossy(&bytes[start..end]);
    for line in appended.lines() {
        // Only these kinds count: a line that names none of them is not parsed.
        if !(line.contains("backup_") || line.contains("replication_")) {
            continue;
        }
        if let Ok(e) = serde_json::from_str::<Event>(line) {
            folded.history.add(&e, site);
        }
    }
    // The line that ends at `end`, exactly as it stands.
    let line_start = bytes[..end - 1].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    folded.last_line = String::from_utf8_lossy(&bytes[line_start..end - 1]).into_owned();
    folded.offset += (end - start) as u64;
    let _ = store_fold(fold, &folded);
    folded.history
}

fn store_fold(path: &Path, folded: &Folded) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        resurgo_provider::private_dir(dir)?;
    }
    let text = serde_json::to_vec(folded).map_err(std::io::Error::other)?;
    // A temporary name of this process and call alone: two scrapes at once each store a
    // true fold, and the last one stays.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("{}.{seq}.tmp", std::process::id()));
    let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Everything the metrics are computed from, read at scrape time.
pub struct Inputs<'a> {
    pub system: &'a System,
    /// The commit (or folder digest) of the spec the agent runs.
    pub commit: String,
    pub site: &'a str,
    pub report: SiteReport,
    /// What the event log says this site backed up, replicated and notified.
    pub backups: LogHistory,
    pub runs: Vec<resurgo_api::types::Run>,
    pub drills: Vec<resurgo_drill::Report>,
    /// Per site, whether the witness receives its heartbeats now (it holds the lease
    /// `witness-sees-<site>`); empty without a witness or when the store cannot be read.
    pub witness_sees: Vec<(String, bool)>,
    /// The latest round of heartbeats this site's agent recorded, and its daemon's last
    /// reconcile (`liveness.rs`).
    pub heartbeats: Option<crate::liveness::Heartbeats>,
    pub reconcile: Option<crate::liveness::Reconcile>,
    /// Unix seconds, now.
    pub now: f64,
}

/// The inputs of `site`'s metrics, read from its state folder and the coordination store (its
/// report is made as for `GET /v1/site`).
pub fn read<'a>(
    engine: &crate::engine::Engine,
    system: &'a System,
    source: &resurgo_plan::SourceId,
    state: &Path,
    site: &'a str,
) -> Inputs<'a> {
    let begun = std::time::Instant::now();
    let report = crate::report::site_report(engine, system, source, state, site);
    let reported = begun.elapsed();
    let backups = fold_log(
        crate::events::EventLog::of_state(state).path(),
        &fold_path(state, site),
        site,
    );
    let logged = begun.elapsed();
    let runs = crate::report::runs(state, None).unwrap_or_default();
    let ran = begun.elapsed();
    let drills = crate::drill::reports(state);
    let drilled = begun.elapsed();
    let witness_sees = witness_sees(system, state).unwrap_or_default();
    let seen = begun.elapsed();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    tracing::debug!(
        report_ms = ms(reported),
        events_ms = ms(logged - reported),
        runs_ms = ms(ran - logged),
        drills_ms = ms(drilled - ran),
        witness_ms = ms(seen - drilled),
        "metrics read"
    );
    Inputs {
        system,
        commit: source.label(),
        site,
        report,
        backups,
        runs,
        drills,
        witness_sees,
        heartbeats: crate::liveness::heartbeats(state, site),
        reconcile: crate::liveness::reconcile(state, site),
        now: crate::liveness::unix_now(),
    }
}

/// What the coordination store says of the witness's view of each site. (What this site's
/// agent sees of the others is in its heartbeats' record, `liveness.rs`.)
fn witness_sees(system: &System, state: &Path) -> Result<Vec<(String, bool)>, crate::roles::StoreError> {
    use crate::roles::{coord_dir, is_embedded, open_store, witness_lease};
    if system.failover.witness.is_none() || (is_embedded(system) && !coord_dir(state).exists()) {
        return Ok(vec![]);
    }
    let store = open_store(system, state)?;
    system
        .sites
        .keys()
        .map(|site| Ok((site.clone(), store.lease_holder(&witness_lease(site))?.is_some())))
        .collect()
}

/// The exposition of `inputs`.
pub fn exposition(inputs: &Inputs) -> String {
    let mut x = Exposition::default();
    let site = inputs.site;
    x.gauge(
        "resurgo_build_info",
        "The resurgo version the agent runs and the commit (or folder digest) of the spec it runs; always 1.",
        &[("version", env!("CARGO_PKG_VERSION")), ("commit", &inputs.commit)],
        1.0,
    );
    datasets(&mut x, inputs);
    let LogHistory {
        backups, replications, ..
    } = &inputs.backups;
    for (dataset, b) in backups {
        let l = [("dataset", dataset.as_str()), ("site", site)];
        if let Some(t) = b.last_attempt {
            x.gauge(
                "resurgo_backup_last_attempt_timestamp_seconds",
                "When the newest backup of the dataset at this site started (Unix time).",
                &l,
                t,
            );
        }
        if let Some(t) = b.last_success {
            x.gauge(
                "resurgo_backup_last_success_timestamp_seconds",
                "When the newest successful backup of the dataset at this site finished (Unix time).",
                &l,
                t,
            );
        }
        if let Some(t) = b.last_failure {
            x.gauge(
                "resurgo_backup_last_failure_timestamp_seconds",
                "When the newest failed backup of the dataset at this site failed (Unix time).",
                &l,
                t,
            );
        }
        for (result, n) in [("success", b.succeeded), ("failure", b.failed)] {
            x.counter(
                "resurgo_backups_total",
                "Backups of the dataset at this site by result, as the event log records them.",
                &[("dataset", dataset), ("site", site), ("result", result)],
                n as f64,
            );
        }
        if let Some(d) = b.last_duration_s {
            x.gauge(
                "resurgo_backup_last_duration_seconds",
                "How long the newest successful backup of the dataset took.",
                &l,
                d,
            );
        }
        if let Some(bytes) = b.last_added_bytes {
            x.gauge(
                "resurgo_backup_last_added_bytes",
                "What the newest successful backup of the dataset added to the repository.",
                &l,
                bytes as f64,
            );
        }
        x.counter(
            "resurgo_backup_added_bytes_total",
            "What the dataset's successful backups added to this site's repository, in all.",
            &l,
            b.added_bytes_total as f64,
        );
    }
    for (dataset, to, r) in replications
        .iter()
        .flat_map(|(dataset, to)| to.iter().map(move |(to, r)| (dataset, to, r)))
    {
        let l = [("dataset", dataset.as_str()), ("site", to.as_str()), ("from", site)];
        if let Some(t) = r.last_success {
            x.gauge(
                "resurgo_replication_last_success_timestamp_seconds",
                "When this site last copied the dataset's snapshots into the site's repository (Unix time).",
                &l,
                t,
            );
        }
        if let Some(t) = r.last_failure {
            x.gauge(
                "resurgo_replication_last_failure_timestamp_seconds",
                "When this site last failed to copy the dataset's snapshots into the site's repository (Unix time).",
                &l,
                t,
            );
        }
        for (result, n) in [("success", r.succeeded), ("failure", r.failed)] {
            x.counter(
                "resurgo_replications_total",
                "Replications of the dataset from this site into the site's repository, by result, as the event log records them.",
                &[("dataset", dataset), ("site", to), ("from", site), ("result", result)],
                n as f64,
            );
        }
    }
    roles(&mut x, inputs);
    for (seen, sees) in &inputs.witness_sees {
        x.gauge(
            "resurgo_witness_sees_site",
            "1 while the witness receives the site's heartbeats (it holds the lease witness-sees-<site>), else 0.",
            &[("site", seen), ("observer", "witness")],
            f64::from(u8::from(*sees)),
        );
    }
    liveness(&mut x, inputs);
    services(&mut x, inputs);
    runs(&mut x, inputs);
    drills(&mut x, inputs);
    workspaces(&mut x, inputs);
    notifications(&mut x, inputs);
    x.render()
}

fn datasets(x: &mut Exposition, inputs: &Inputs) {
    for d in &inputs.report.datasets {
        let objective = inputs
            .system
            .datasets
            .get(&d.dataset)
            .and_then(|ds| ds.rpo)
            .or(inputs.system.objectives.rpo)
            .map(|r| r.0.as_secs_f64());
        for p in &d.points {
            let l = [("dataset", d.dataset.as_str()), ("site", p.site.as_str())];
            if let Some(objective) = objective {
                x.gauge(
                    "resurgo_dataset_rpo_objective_seconds",
                    "The dataset's RPO objective: its newest restorable point at the site should be at most this old.",
                    &l,
                    objective,
                );
            }
            if p.error.is_some() {
                continue;
            }
            x.gauge(
                "resurgo_dataset_snapshots",
                "How many snapshots of the dataset the site's repository holds.",
                &l,
                p.snapshots as f64,
            );
            if let Some(t) = p.newest.as_deref().and_then(unix) {
                x.gauge(
                    "resurgo_dataset_newest_point_timestamp_seconds",
                    "When the newest restorable point of the dataset in the site's repository was taken (Unix time).",
                    &l,
                    t,
                );
            }
        }
        for s in d.standby.iter().filter(|s| s.error.is_none()) {
            let l = [("dataset", d.dataset.as_str()), ("site", s.site.as_str())];
            if let Some(secs) = s.lag_seconds {
                x.gauge(
                    "resurgo_standby_lag_seconds",
                    "How far the warm standby at the site is behind its primary, in time.",
                    &l,
                    secs,
                );
            }
            if let Some(bytes) = s.lag_bytes {
                x.gauge(
                    "resurgo_standby_lag_bytes",
                    "How far the warm standby at the site is behind its primary, in WAL bytes.",
                    &l,
                    bytes as f64,
                );
            }
            x.gauge(
                "resurgo_standby_streaming",
                "1 while the warm standby at the site streams from its primary, else 0.",
                &l,
                f64::from(u8::from(s.streaming)),
            );
        }
        if let Some(a) = d.archiving.as_ref().filter(|a| a.error.is_none()) {
            let l = [("dataset", d.dataset.as_str()), ("site", d.home.as_str())];
            x.gauge(
                "resurgo_wal_archiving_failing",
                "1 when PostgreSQL's newest attempt to archive a WAL segment failed, else 0.",
                &l,
                f64::from(u8::from(a.state == resurgo_api::types::ArchivingState::Failing)),
            );
            if let Some(t) = a.last_archived_time.as_deref().and_then(unix) {
                x.gauge(
                    "resurgo_wal_last_archived_timestamp_seconds",
                    "When PostgreSQL last archived a WAL segment of the dataset (Unix time).",
                    &l,
                    t,
                );
            }
        }
    }
}

fn liveness(x: &mut Exposition, inputs: &Inputs) {
    let site = inputs.site;
    if let Some(h) = &inputs.heartbeats {
        // An old round says the heartbeat thread stopped: what it last saw is not now.
        let current = h.current(inputs.now);
        for (seen, s) in &h.sites {
            let l = [("site", seen.as_str()), ("observer", site)];
            if let Some(t) = s.last_answered {
                x.gauge(
                    "resurgo_heartbeat_last_answered_timestamp_seconds",
                    "When the site's agent last answered the observer's heartbeat (Unix time), since the observer's agent started.",
                    &l,
                    t,
                );
            }
            if current {
                x.gauge(
                    "resurgo_heartbeat_answered",
                    "1 when the site's agent answered the observer's latest heartbeat, else 0.",
                    &l,
                    f64::from(u8::from(s.answered)),
                );
            }
        }
    }
    if let Some(r) = &inputs.reconcile {
        x.gauge(
            "resurgo_reconcile_last_duration_seconds",
            "How long the site daemon's last reconcile pass (observe, plan, correct, schedules) took.",
            &[("site", site)],
            r.duration_s,
        );
        x.gauge(
            "resurgo_reconcile_last_timestamp_seconds",
            "When the site daemon's last reconcile pass finished (Unix time).",
            &[("site", site)],
            r.finished,
        );
    }
}

fn roles(x: &mut Exposition, inputs: &Inputs) {
    let report = &inputs.report;
    for r in &report.roles {
        x.gauge(
            "resurgo_group_epoch",
            "The failover group's epoch in the coordination store (it grows with every change of primary).",
            &[("group", &r.group)],
            r.epoch as f64,
        );
        x.gauge(
            "resurgo_group_primary",
            "1 for the site the coordination store assigns the failover group to.",
            &[("group", &r.group), ("site", &r.primary)],
            1.0,
        );
        if let Some(lease) = &r.lease {
            x.gauge(
                "resurgo_group_lease_remaining_seconds",
                "How long the primary lease of the failover group is held still, and by whom.",
                &[("group", &r.group), ("holder", &lease.holder)],
                lease.seconds_left as f64,
            );
        }
    }
    if report.roles_error.is_none() {
        x.gauge(
            "resurgo_maintenance",
            "1 while the maintenance switch is on (no agent fails over by itself), else 0.",
            &[],
            f64::from(u8::from(report.maintenance.is_some())),
        );
    }
}

fn services(x: &mut Exposition, inputs: &Inputs) {
    let status = &inputs.report.site;
    if status.state != "reachable" {
        x.gauge(
            "resurgo_site_observed",
            "1 when the agent could observe its site, else 0 (then its services' series are absent).",
            &[("site", &status.site)],
            0.0,
        );
        return;
    }
    x.gauge(
        "resurgo_site_observed",
        "1 when the agent could observe its site, else 0 (then its services' series are absent).",
        &[("site", &status.site)],
        1.0,
    );
    x.gauge(
        "resurgo_site_in_sync",
        "1 when the site matches the spec (no change planned, nothing orphaned), else 0.",
        &[("site", &status.site)],
        f64::from(u8::from(inputs.report.in_sync)),
    );
    for s in &status.services {
        let role = s.role.as_deref().unwrap_or("active");
        let l = [
            ("site", status.site.as_str()),
            ("service", s.service.as_str()),
            ("role", role),
        ];
        if s.drift != "unknown" {
            x.gauge(
                "resurgo_service_in_sync",
                "1 when the service at the site is as the spec declares it, 0 when it drifted (or is missing).",
                &l,
                f64::from(u8::from(s.drift == "in-sync")),
            );
        }
        if s.health != "unknown" {
            x.gauge(
                "resurgo_service_healthy",
                "1 when the service's health check passed at its last probe, else 0.",
                &l,
                f64::from(u8::from(s.health == "healthy")),
            );
        }
        x.counter(
            "resurgo_service_restarts_total",
            "How often the site's supervisor restarted the service.",
            &l,
            f64::from(s.restarts),
        );
    }
}

fn runs(x: &mut Exposition, inputs: &Inputs) {
    use resurgo_runbook::plan::PlanKind;
    let mut counts: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    // Oldest first: the last one seen of each kind is the newest.
    let mut last: BTreeMap<&str, &resurgo_api::types::Run> = BTreeMap::new();
    for run in &inputs.runs {
        let kind = match run.report.kind {
            PlanKind::Failover => "failover",
            PlanKind::Failback => "failback",
            PlanKind::Drill => "drill",
        };
        // An agent's own failover measured the detection; a person's did not.
        let trigger = match &run.measures {
            Some(m) if m.detection_s.is_some() => "automatic",
            Some(_) => "manual",
            None => "unknown",
        };
        *counts.entry((kind, trigger)).or_default() += 1;
        last.insert(kind, run);
    }
    for ((kind, trigger), n) in counts {
        x.counter(
            "resurgo_failovers_total",
            "Recovery runs journaled at this site (whose target it is), by kind and trigger.",
            &[("site", inputs.site), ("kind", kind), ("trigger", trigger)],
            n as f64,
        );
    }
    for (kind, run) in last {
        let l = [("site", inputs.site), ("kind", kind)];
        if let Some(ms) = crate::failover::started_ms(&run.report.run) {
            x.gauge(
                "resurgo_failover_last_start_timestamp_seconds",
                "When the newest run of the kind at this site started (Unix time).",
                &l,
                ms as f64 / 1000.0,
            );
        }
        let Some(m) = &run.measures else { continue };
        if let Some(rto) = m.rto_s {
            x.gauge(
                "resurgo_failover_last_rto_seconds",
                "The RTO the newest run of the kind at this site measured.",
                &l,
                rto,
            );
        }
        if let Some(rpo) = m.rpo_s {
            x.gauge(
                "resurgo_failover_last_rpo_seconds",
                "The RPO (data that may be lost, as time) the newest run of the kind at this site measured.",
                &l,
                rpo,
            );
        }
    }
}

/// Notifications this site's daemon delivered, per receiver and result, from the records
/// `notify` writes to the event log: `delivered`, `failed` (an attempt that failed and was
/// retried) and `undelivered` (given up, kept in the log). Every declared receiver has its
/// three series (0 until something happens); a receiver no longer declared keeps its own.
fn notifications(x: &mut Exposition, inputs: &Inputs) {
    let mut counts: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for receiver in inputs.system.notifications.keys() {
        for (_, result) in NOTIFICATION_RESULTS {
            counts.insert((receiver, result), 0);
        }
    }
    for (receiver, results) in &inputs.backups.notifications {
        for (result, n) in results {
            counts.insert((receiver, result), *n);
        }
    }
    for ((receiver, result), n) in counts {
        x.counter(
            "resurgo_notifications_total",
            "Notifications this site sent to the receiver, by result: delivered, failed (an attempt, retried after a back-off) or undelivered (given up, kept in the event log).",
            &[("site", inputs.site), ("receiver", receiver), ("result", result)],
            n as f64,
        );
    }
}

fn drills(x: &mut Exposition, inputs: &Inputs) {
    for name in inputs.system.drills.keys() {
        x.gauge(
            "resurgo_drill_info",
            "A drill the spec declares; always 1 (joins the drills that never passed).",
            &[("drill", name)],
            1.0,
        );
    }
    // Newest first.
    let mut seen: Vec<&str> = Vec::new();
    for r in &inputs.drills {
        if seen.contains(&r.drill.as_str()) {
            continue;
        }
        seen.push(&r.drill);
        let l = [("drill", r.drill.as_str())];
        let Some(started) = unix(&r.started) else { continue };
        x.gauge(
            "resurgo_drill_last_run_timestamp_seconds",
            "When the drill's newest run started (Unix time).",
            &l,
            started,
        );
        x.gauge(
            "resurgo_drill_last_passed",
            "1 when the drill's newest run passed, else 0.",
            &l,
            f64::from(u8::from(r.verdict == resurgo_drill::Verdict::Pass)),
        );
        if let Some(rto) = r.rto.as_ref().and_then(|r| r.measured_s) {
            x.gauge(
                "resurgo_drill_last_rto_seconds",
                "The RTO the drill's newest run measured.",
                &l,
                rto,
            );
        }
        if let Some(rpo) = r.rpo.as_ref().and_then(|r| r.seconds) {
            x.gauge(
                "resurgo_drill_last_rpo_seconds",
                "The RPO (data lost, as time) the drill's newest run measured.",
                &l,
                rpo,
            );
        }
        let pass = inputs
            .drills
            .iter()
            .filter(|p| p.drill == r.drill && p.verdict == resurgo_drill::Verdict::Pass)
            .filter_map(|p| unix(&p.started))
            .fold(None, |a: Option<f64>, t| Some(a.map_or(t, |a| a.max(t))));
        if let Some(t) = pass {
            x.gauge(
                "resurgo_drill_last_pass_timestamp_seconds",
                "When the drill's newest passing run started (Unix time).",
                &l,
                t,
            );
        }
    }
}

fn workspaces(x: &mut Exposition, inputs: &Inputs) {
    let workspaces = &inputs.report.workspaces;
    // The states are a closed set and the records were read: a state none is in counts 0.
    let mut by_state: BTreeMap<&str, u64> = [
        crate::workspace::State::Seeding,
        crate::workspace::State::Ready,
        crate::workspace::State::Preempted,
        crate::workspace::State::Failed,
    ]
    .into_iter()
    .map(|s| (s.as_str(), 0))
    .collect();
    for w in workspaces {
        *by_state.entry(w.state.as_str()).or_default() += 1;
    }
    for (state, n) in by_state {
        x.gauge(
            "resurgo_workspaces",
            "Workspaces recorded at the site, by state.",
            &[("site", inputs.site), ("state", state)],
            n as f64,
        );
    }
    for lent in crate::report::capacity_lent(inputs.system, workspaces) {
        let l = [("site", lent.site.as_str())];
        x.gauge(
            "resurgo_workspace_cpu_lent",
            "CPUs (cores) the site lends its workspaces, every recorded one counted.",
            &l,
            lent.cpu,
        );
        x.gauge(
            "resurgo_workspace_memory_lent_bytes",
            "Memory the site lends its workspaces, every recorded one counted.",
            &l,
            lent.memory_bytes as f64,
        );
        if let Some(cpu) = lent.capacity_cpu {
            x.gauge(
                "resurgo_site_capacity_cpu",
                "CPUs (cores) the spec declares for the site.",
                &l,
                cpu,
            );
        }
        if let Some(memory) = lent.capacity_memory_bytes {
            x.gauge(
                "resurgo_site_capacity_memory_bytes",
                "Memory the spec declares for the site.",
                &l,
                memory as f64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_and_type_once_and_labels_are_escaped() {
        let mut x = Exposition::default();
        x.gauge("resurgo_a_seconds", "An a.\nTwo lines.", &[("site", "a\"b\\c\nd")], 1.5);
        x.gauge("resurgo_a_seconds", "An a.", &[("site", "e")], 2.0);
        x.counter("resurgo_b_total", "A b.", &[], 3.0);
        assert_eq!(
            x.render(),
            "# HELP resurgo_a_seconds An a.\\nTwo lines.\n# TYPE resurgo_a_seconds gauge\n\
             resurgo_a_seconds{site=\"a\\\"b\\\\c\\nd\"} 1.5\nresurgo_a_seconds{site=\"e\"} 2\n\
             # HELP resurgo_b_total A b.\n# TYPE resurgo_b_total counter\nresurgo_b_total 3\n"
        );
    }

    fn event(kind: EventKind, time: &str, site: &str, message: &str) -> Event {
        let mut e = Event::new(kind, message).site(site).dataset("orders");
        e.time = time.into();
        e
    }

    #[test]
    fn backups_are_counted_by_result_with_their_duration_and_bytes_at_their_site_only() {
        let events = [
            event(
                EventKind::BackupStarted,
                "2026-11-30T10:00:00Z",
                "a",
                "backing up orders",
            ),
            event(
                EventKind::BackupFinished,
                "2026-11-30T10:00:04Z",
                "a",
                "snapshot 0123abcd (1000 bytes, 200 new)",
            ),
            event(
                EventKind::BackupStarted,
                "2026-11-30T10:01:00Z",
                "a",
                "backing up orders",
            ),
            event(
                EventKind::BackupFailed,
                "2026-11-30T10:01:02Z",
                "a",
                "the repository is gone",
            ),
            event(
                EventKind::BackupStarted,
                "2026-11-30T10:02:00Z",
                "b",
                "backing up orders",
            ),
            event(
                EventKind::ReplicationFinished,
                "2026-11-30T10:00:05Z",
                "c",
                "1 snapshots copied",
            ),
        ];
        let history = backups(&events, "a");
        let (b, r) = (&history.backups, &history.replications);
        let orders = &b["orders"];
        assert_eq!((orders.succeeded, orders.failed), (1, 1));
        assert_eq!(orders.last_duration_s, Some(4.0));
        assert_eq!((orders.last_added_bytes, orders.added_bytes_total), (Some(200), 200));
        assert_eq!(orders.last_attempt, unix("2026-11-30T10:01:00Z"));
        assert_eq!(orders.last_failure, unix("2026-11-30T10:01:02Z"));
        assert_eq!(r["orders"]["c"].succeeded, 1);
        assert!(
            backups(&events, "b").replications.is_empty(),
            "b backed nothing up before it"
        );
        assert!(backups(&events, "c").backups.is_empty());
        // What was added is the event's own field when it has one, not its message.
        let mut history = history.clone();
        history.add(
            &event(
                EventKind::BackupFinished,
                "2026-11-30T11:00:00Z",
                "a",
                "snapshot 4567cdef",
            )
            .added_bytes(300),
            "a",
        );
        let orders = &history.backups["orders"];
        assert_eq!((orders.last_added_bytes, orders.added_bytes_total), (Some(300), 500));
    }

    /// The stored fold (`fold_log`) says what a fold of the whole log says, after appends,
    /// a line being written, and a log that is not the one folded any more.
    #[test]
    fn the_stored_fold_of_the_event_log_is_the_whole_logs_fold() {
        let dir = tempfile::tempdir().unwrap();
        let log = crate::events::EventLog::new(dir.path().join("events.jsonl"));
        let fold = fold_path(dir.path(), "a");
        let whole = || backups(&log.read().unwrap(), "a");
        assert_eq!(fold_log(log.path(), &fold, "a"), LogHistory::default());
        let mut minute = 0;
        let mut backup = |log: &crate::events::EventLog, site: &str| {
            minute += 1;
            let at = format!("2026-11-30T10:{minute:02}:00Z");
            for (kind, message) in [
                (EventKind::BackupStarted, "backing up orders"),
                (EventKind::BackupFinished, "snapshot 0123abcd (1000 bytes, 10 new)"),
                (EventKind::ReplicationFinished, "1 snapshots copied"),
            ] {
                let site = if kind == EventKind::ReplicationFinished {
                    "b"
                } else {
                    site
                };
                log.append(&event(kind, &at, site, message)).unwrap();
            }
            log.append(&Event::new(EventKind::DriftSeen, "web stopped").site(site))
                .unwrap();
        };
        backup(&log, "a");
        assert_eq!(fold_log(log.path(), &fold, "a"), whole());
        assert!(fold.exists());
        backup(&log, "a");
        backup(&log, "b");
        // A line being written is read once it is whole.
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new().append(true).open(log.path()).unwrap();
        let line = serde_json::to_string(&event(
            EventKind::BackupStarted,
            "2026-11-30T11:00:00Z",
            "a",
            "backing up orders",
        ))
        .unwrap();
        f.write_all(&line.as_bytes()[..20]).unwrap();
        let before = fold_log(log.path(), &fold, "a");
        assert_eq!(before.backups["orders"].succeeded, 2);
        assert_eq!(
            before.replications["orders"]["b"].succeeded, 2,
            "b's backup's is not a's"
        );
        f.write_all(&line.as_bytes()[20..]).unwrap();
        f.write_all(b"\n").unwrap();
        assert_eq!(fold_log(log.path(), &fold, "a"), whole());
        assert_eq!(
            fold_log(log.path(), &fold, "a").backups["orders"].last_attempt,
            unix("2026-11-30T11:00:00Z")
        );
        // Another log in its place (rewritten, shorter, or with other lines before the
        // fold's offset): read whole again.
        let events = log.read().unwrap();
        std::fs::remove_file(log.path()).unwrap();
        for e in &events[..4] {
            log.append(e).unwrap();
        }
        assert_eq!(fold_log(log.path(), &fold, "a"), whole());
        let text = std::fs::read_to_string(log.path()).unwrap();
        let rewritten = text
            .replace("10:01:00", "10:01:30")
            .replace("web stopped", "web halted!");
        assert_eq!(rewritten.len(), text.len());
        std::fs::write(log.path(), rewritten).unwrap();
        assert_eq!(fold_log(log.path(), &fold, "a"), whole());
        assert_eq!(whole().backups["orders"].last_success, unix("2026-11-30T10:01:30Z"));
        // Another site's fold is its own.
        assert_eq!(fold_log(log.path(), &fold, "b"), backups(&log.read().unwrap(), "b"));
    }

    fn system() -> System {
        let text = "apiVersion: resurgo.dev/v1alpha1
sites:
  a: { provider: local, address: 127.0.1.1, capacity: { cpu: 4, memory: 4Gi },
       repository: { url: /backups/a, password: { env: P } } }
  b: { provider: local, address: 127.0.2.1, capacity: { cpu: 4, memory: 4Gi },
       repository: { url: /backups/b, password: { env: P } } }
services:
  web: { command: web, site: a, standby: [b] }
objectives: { rto: 30s, rpo: 5m }
datasets:
  notes: { service: web, type: sqlite, path: data/notes.db, rpo: 2m }
  logs: { service: web, type: directory, path: logs }
drills:
  kill-web: { scope: { service: web }, faults: [kill: web], mode: live, stop: [unavailable_for: 1m], cadence: 30d }
  lose-a: { scope: { site: a }, faults: [stop_site: a], mode: live, stop: [unavailable_for: 1m] }
"
        .to_string();
        match resurgo_spec::load(
            vec![resurgo_spec::SourceFile {
                name: "s.yaml".into(),
                text,
            }],
            &[],
        ) {
            Ok(l) => l.system,
            Err(e) => panic!("{e}"),
        }
    }

    fn drill_report(drill: &str, started: &str, verdict: &str, rto: f64) -> resurgo_drill::Report {
        serde_json::from_value(serde_json::json!({
            "schema": resurgo_drill::REPORT_SCHEMA, "run": format!("{drill}-{started}"), "drill": drill,
            "mode": "live", "scope": { "kind": "service", "targets": ["web"] }, "spec_commit": "folder:abc",
            "resurgo_version": "0", "operator": "me", "started": started, "ended": null, "deadline_s": 600.0,
            "outcome": "completed", "timeline": [], "phases": [],
            "rto": { "measured_s": rto, "objective_s": 30.0, "detect_s": null, "decide_s": null,
                     "preempt_s": null, "execute_s": null, "propagate_s": null },
            "rpo": { "objective_s": 300.0, "writes_lost": 0, "seconds": 0.5, "datasets": [] },
            "probes": [], "isolation": null, "data_checks": [], "faults": [], "leftovers": [],
            "verdict": verdict, "findings": []
        }))
        .unwrap()
    }

    fn run(id: &str, kind: &str, detection: Option<f64>, rto: Option<f64>) -> resurgo_api::types::Run {
        serde_json::from_value(serde_json::json!({
            "run": id, "plan": "p", "kind": kind, "epoch": 1, "outcome": { "status": "succeeded" },
            "steps": [], "notes": [],
            "measures": { "detection_s": detection, "decision_s": null, "rto_s": rto, "rpo_s": null,
                          "accept_data_loss": false }
        }))
        .unwrap()
    }

    fn site_report(json: serde_json::Value) -> SiteReport {
        serde_json::from_value(json).unwrap()
    }

    /// The value of `name{labels}` in `text`.
    fn value(text: &str, name: &str, labels: &str) -> Option<f64> {
        let head = format!("{name}{{{labels}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&head))
            .map(|v| v.parse().unwrap())
    }

    #[test]
    fn the_exposition_says_what_is_known_and_leaves_out_what_is_not() {
        let system = system();
        let report = site_report(serde_json::json!({
            "format_version": 1, "system": "test", "desired": "abc",
            "site": { "site": "b", "address": "127.0.2.1", "state": "reachable", "services": [
                { "service": "web", "role": "standby", "process": "running", "health": "healthy",
                  "drift": "in-sync", "changed": [], "restarts": 2 },
                { "service": "api", "process": "absent", "health": "unknown", "drift": "create",
                  "changed": [], "restarts": 0 }
            ], "set_aside": [] },
            "in_sync": false,
            "datasets": [
                { "dataset": "notes", "home": "a", "rpo": "2m",
                  "points": [{ "site": "b", "newest": "2026-11-30T10:00:00Z", "age_seconds": 60, "snapshots": 3 }],
                  "standby": [{ "site": "b", "lag_bytes": 4096, "lag_seconds": null, "streaming": true }] },
                { "dataset": "logs", "home": "a",
                  "points": [{ "site": "b", "snapshots": 0, "error": "the repository does not answer" }],
                  "standby": [] }
            ],
            "roles": [{ "group": "site-a", "primary": "b", "epoch": 3 }],
            "roles_error": null,
            "workspaces": []
        }));
        let inputs = Inputs {
            system: &system,
            commit: "abc".into(),
            site: "b",
            report,
            backups: LogHistory::default(),
            runs: vec![
                run("site-a-to-b-e2-1796000000000", "failover", Some(1.5), Some(12.0)),
                run("site-a-to-b-e3-1796000100000", "failover", None, None),
            ],
            drills: vec![
                drill_report("kill-web", "2026-11-29T00:00:00Z", "fail", 40.0),
                drill_report("kill-web", "2026-11-01T00:00:00Z", "pass", 9.0),
            ],
            witness_sees: vec![("a".into(), false), ("b".into(), true)],
            heartbeats: Some(crate::liveness::Heartbeats {
                written: 1_796_000_000.0,
                interval_s: 1.0,
                sites: [
                    (
                        "a".to_string(),
                        crate::liveness::Seen {
                            last_answered: Some(1_795_999_990.0),
                            answered: false,
                        },
                    ),
                    (
                        "c".to_string(),
                        crate::liveness::Seen {
                            last_answered: None,
                            answered: false,
                        },
                    ),
                ]
                .into(),
            }),
            reconcile: Some(crate::liveness::Reconcile {
                finished: 1_796_000_001.0,
                duration_s: 0.125,
            }),
            now: 1_796_000_002.0,
        };
        let text = exposition(&inputs);
        let a_seen_by_b = "site=\"a\",observer=\"b\"";
        assert_eq!(
            value(&text, "resurgo_heartbeat_last_answered_timestamp_seconds", a_seen_by_b),
            Some(1_795_999_990.0)
        );
        assert_eq!(value(&text, "resurgo_heartbeat_answered", a_seen_by_b), Some(0.0));
        let c_seen_by_b = "site=\"c\",observer=\"b\"";
        assert_eq!(
            value(&text, "resurgo_heartbeat_last_answered_timestamp_seconds", c_seen_by_b),
            None,
            "never answered: no time"
        );
        assert_eq!(
            value(&text, "resurgo_reconcile_last_duration_seconds", "site=\"b\""),
            Some(0.125)
        );
        let build = "version=\"".to_string() + env!("CARGO_PKG_VERSION") + "\",commit=\"abc\"";
        assert_eq!(value(&text, "resurgo_build_info", &build), Some(1.0), "{text}");
        let notes = "dataset=\"notes\",site=\"b\"";
        assert_eq!(
            value(&text, "resurgo_dataset_rpo_objective_seconds", notes),
            Some(120.0)
        );
        assert_eq!(
            value(&text, "resurgo_dataset_newest_point_timestamp_seconds", notes),
            unix("2026-11-30T10:00:00Z")
        );
        assert_eq!(value(&text, "resurgo_standby_lag_bytes", notes), Some(4096.0));
        // Not measured, not known: absent.
        assert_eq!(value(&text, "resurgo_standby_lag_seconds", notes), None, "{text}");
        // `logs` has the system's objective; its repository did not answer: no point, no count.
        let logs = "dataset=\"logs\",site=\"b\"";
        assert_eq!(value(&text, "resurgo_dataset_rpo_objective_seconds", logs), Some(300.0));
        assert_eq!(
            value(&text, "resurgo_dataset_newest_point_timestamp_seconds", logs),
            None
        );
        assert_eq!(value(&text, "resurgo_dataset_snapshots", logs), None);
        assert_eq!(value(&text, "resurgo_group_epoch", "group=\"site-a\""), Some(3.0));
        assert_eq!(
            value(&text, "resurgo_group_primary", "group=\"site-a\",site=\"b\""),
            Some(1.0)
        );
        let web = "site=\"b\",service=\"web\",role=\"standby\"";
        assert_eq!(value(&text, "resurgo_service_in_sync", web), Some(1.0));
        assert_eq!(value(&text, "resurgo_service_restarts_total", web), Some(2.0));
        let api = "site=\"b\",service=\"api\",role=\"active\"";
        assert_eq!(value(&text, "resurgo_service_in_sync", api), Some(0.0));
        assert_eq!(
            value(&text, "resurgo_service_healthy", api),
            None,
            "unknown health is absent"
        );
        let failovers = |trigger: &str| {
            value(
                &text,
                "resurgo_failovers_total",
                &format!("site=\"b\",kind=\"failover\",trigger=\"{trigger}\""),
            )
        };
        assert_eq!((failovers("automatic"), failovers("manual")), (Some(1.0), Some(1.0)));
        // The newest failover measured no RTO: the older one's is not shown as the last.
        assert_eq!(
            value(
                &text,
                "resurgo_failover_last_rto_seconds",
                "site=\"b\",kind=\"failover\""
            ),
            None
        );
        assert_eq!(
            value(
                &text,
                "resurgo_failover_last_start_timestamp_seconds",
                "site=\"b\",kind=\"failover\""
            ),
            Some(1796000100.0)
        );
        let kill = "drill=\"kill-web\"";
        assert_eq!(value(&text, "resurgo_drill_last_passed", kill), Some(0.0));
        assert_eq!(value(&text, "resurgo_drill_last_rto_seconds", kill), Some(40.0));
        assert_eq!(
            value(&text, "resurgo_drill_last_pass_timestamp_seconds", kill),
            unix("2026-11-01T00:00:00Z")
        );
        assert_eq!(value(&text, "resurgo_drill_info", "drill=\"lose-a\""), Some(1.0));
        assert_eq!(
            value(&text, "resurgo_drill_last_run_timestamp_seconds", "drill=\"lose-a\""),
            None
        );
        assert_eq!(
            value(&text, "resurgo_workspaces", "site=\"b\",state=\"ready\""),
            Some(0.0)
        );
        // Every family once, with its help and type.
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            assert_eq!(text.matches(&format!("{line}\n")).count(), 1, "{line}");
        }
        // A round recorded long ago: whether the latest heartbeat was answered is not known.
        let stale = exposition(&Inputs {
            now: 1_796_000_100.0,
            ..inputs
        });
        assert_eq!(value(&stale, "resurgo_heartbeat_answered", a_seen_by_b), None);
        assert!(value(&stale, "resurgo_heartbeat_last_answered_timestamp_seconds", a_seen_by_b).is_some());
    }

    /// `resurgo_notifications_total` counts the records `notify` wrote at this site, per
    /// receiver and result; a declared receiver with none yet is at 0.
    #[test]
    fn notifications_are_counted_by_receiver_and_result_from_the_event_log() {
        let mut system = system();
        let receiver: resurgo_spec::Receiver =
            serde_json::from_value(serde_json::json!({"kind": "alertmanager", "url": "http://x"})).unwrap();
        system.notifications.insert("am".into(), receiver.clone());
        system.notifications.insert("quiet".into(), receiver);
        let record = |kind: EventKind, site: &str| Event {
            notification: Some(crate::events::NotificationRecord {
                receiver: "am".into(),
                event: EventKind::FailoverStarted,
                delivery: "d".into(),
                count: 1,
                attempts: 1,
                error: None,
                payload: None,
            }),
            ..Event::new(kind, "m").site(site)
        };
        let inputs = Inputs {
            system: &system,
            commit: "abc".into(),
            site: "b",
            report: site_report(serde_json::json!({
                "format_version": 1, "system": "test", "desired": "abc",
                "site": { "site": "b", "address": "127.0.2.1", "state": "reachable", "services": [], "set_aside": [] },
                "in_sync": true, "datasets": [], "roles": [], "roles_error": null, "workspaces": []
            })),
            backups: backups(
                &[
                    record(EventKind::NotificationFailed, "b"),
                    record(EventKind::NotificationFailed, "b"),
                    record(EventKind::NotificationDelivered, "b"),
                    // Another site's deliveries (one state folder shared by several daemons).
                    record(EventKind::NotificationUndelivered, "a"),
                ],
                "b",
            ),
            runs: vec![],
            drills: vec![],
            witness_sees: vec![],
            heartbeats: None,
            reconcile: None,
            now: 1_796_000_000.0,
        };
        let mut x = Exposition::default();
        notifications(&mut x, &inputs);
        let text = x.render();
        let n = |receiver: &str, result: &str| {
            value(
                &text,
                "resurgo_notifications_total",
                &format!("site=\"b\",receiver=\"{receiver}\",result=\"{result}\""),
            )
        };
        assert_eq!(n("am", "delivered"), Some(1.0), "{text}");
        assert_eq!(n("am", "failed"), Some(2.0));
        assert_eq!(n("am", "undelivered"), Some(0.0));
        assert_eq!(n("quiet", "delivered"), Some(0.0));
    }
}
