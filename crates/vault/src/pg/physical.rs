//! Physical backups: a base backup (`pg_basebackup`, one tar, streamed into a snapshot) plus
//! the WAL archive ([`super::wal`]) restore a cluster to any moment after the backup ended.
//!
//! A base backup is self-contained (`-X fetch` puts the WAL it needs in the tar), so it also
//! restores without the archive, to the moment it ended.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use super::target::{execute, query_row, PgTarget};
use crate::archive::LogArchive;
use crate::repo::{BackupMeta, Repository, SnapshotInfo};
use crate::VaultError;

/// The name the base backup's tar has inside its snapshot.
pub const BASE_FILE: &str = "base.tar";

/// SQL giving the current WAL position, its segment and the time, in UTC RFC 3339.
const WAL_NOW: &str = "pg_current_wal_lsn(), pg_walfile_name(pg_current_wal_lsn()), \
     to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

/// Takes a base backup of the whole cluster `target` is on and stores it as a snapshot
/// (`kind` `pg-base`, file [`BASE_FILE`]).
///
/// Labels bound the backup from outside, so each is on the safe side: `wal_start`
/// (segment) and `wal_start_lsn` are read before it starts — the archive must keep every
/// segment from `wal_start` on for it; also `timeline`, `system_identifier` (which
/// cluster), `server_version_num`, `start_time`. `wal_end`, `wal_end_lsn` and `end_time`
/// are read after it finished — any moment after `end_time` is a valid recovery target;
/// they are in the returned labels, and, since the snapshot was already written by then,
/// kept in the log archive of stream `meta.dataset` ([`base_backup_labels`]).
///
/// Runs against a primary (a standby cannot tell its WAL position this way), with one
/// tablespace (the tar goes to standard output, which holds one).
pub fn base_backup(repo: &Repository, target: &PgTarget, meta: &BackupMeta) -> Result<SnapshotInfo, VaultError> {
    let before = query_row(
        target,
        &format!(
            "SELECT {WAL_NOW}, (SELECT system_identifier FROM pg_control_system()), \
             current_setting('server_version_num')"
        ),
        5,
    )?;
    // Names this backup in its labels, in the log archive's end record and in PostgreSQL's
    // own backup history file; survives replication, unlike the snapshot id.
    let backup_id: String = (0..8).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
    let command = vec![
        super::program("pg_basebackup")?.to_string_lossy().into_owned(),
        "--pgdata=-".to_string(),
        "--format=tar".to_string(),
        "--wal-method=fetch".to_string(),
        // Without this, the backup waits for the next spread checkpoint: minutes.
        "--checkpoint=fast".to_string(),
        "--no-password".to_string(),
        format!("--label=resurgo {} {backup_id}", meta.dataset),
        "--dbname".to_string(),
        target.conninfo(),
    ];
    let mut meta = meta.clone();
    meta.kind = "pg-base".to_string();
    let labels = &mut meta.labels;
    labels.insert("backup_id".into(), backup_id.clone());
    labels.insert("wal_start_lsn".into(), before[0].clone());
    labels.insert("wal_start".into(), before[1].clone());
    labels.insert("timeline".into(), before[1].get(..8).unwrap_or_default().to_string());
    labels.insert("start_time".into(), before[2].clone());
    labels.insert("system_identifier".into(), before[3].clone());
    labels.insert("server_version_num".into(), before[4].clone());

    let mut info = repo.backup_command(&command, &target.env(), BASE_FILE, &meta)?;

    // The end is known only now, after the snapshot (and its labels) was written. It is
    // kept beside the WAL instead, in the log archive — replicated with it, and needed with
    // it: a restore to a time must start from a backup that had ended by then.
    let after = query_row(target, &format!("SELECT {WAL_NOW}"), 3)?;
    for (k, v) in [
        ("wal_end_lsn", &after[0]),
        ("wal_end", &after[1]),
        ("end_time", &after[2]),
    ] {
        info.meta.labels.insert(k.into(), v.clone());
    }
    let record = serde_json::json!({ "snapshot": info.id, "labels": info.meta.labels });
    repo.archive()
        .push(
            &meta.dataset,
            &end_record_name(&backup_id),
            record.to_string().as_bytes(),
        )
        .map_err(|e| VaultError::Store {
            location: repo.location(),
            message: format!(
                "base backup {} is stored, but recording its end in the log archive failed: {e}",
                info.id
            ),
        })?;
    Ok(info)
}

/// The log-archive entry that records where the base backup with label `backup_id` ended.
fn end_record_name(backup_id: &str) -> String {
    format!("base-{backup_id}.json")
}

/// The labels of a base backup including its end (`wal_end`, `wal_end_lsn`, `end_time`),
/// from the record [`base_backup`] keeps in the log archive of stream `stream` (the
/// dataset), found by the snapshot's `backup_id` label (snapshot ids change when
/// snapshots are copied to another repository). `None` when there is none (archive not
/// replicated yet, or the backup failed half-way).
pub fn base_backup_labels(
    archive: &LogArchive,
    stream: &str,
    snapshot: &SnapshotInfo,
) -> Result<Option<BTreeMap<String, String>>, VaultError> {
    if snapshot.meta.labels.contains_key("end_time") {
        return Ok(Some(snapshot.meta.labels.clone()));
    }
    let Some(backup_id) = snapshot.meta.labels.get("backup_id") else {
        return Ok(None);
    };
    let name = end_record_name(backup_id);
    let Some(bytes) = archive.fetch(stream, &name)? else {
        return Ok(None);
    };
    #[derive(serde::Deserialize)]
    struct Record {
        labels: BTreeMap<String, String>,
    }
    serde_json::from_slice::<Record>(&bytes)
        .map(|r| Some(r.labels))
        .map_err(|e| VaultError::Corrupt {
            location: archive.location(),
            object: format!("logs/{stream}/{name}"),
            reason: format!("unreadable base backup record: {e}"),
        })
}

/// Turns on continuous archiving on the server `target` is on (as superuser, through
/// `ALTER SYSTEM`): `archive_mode = on` (unless already `on` or `always`), the given
/// `archive_command` (e.g. `resurgo wal push --dataset D %p`), and `archive_timeout`, which
/// bounds the RPO of the backup strategy: a segment is archived at least that often while
/// there are writes. Raises `wal_level` from `minimal` to `replica`.
///
/// Returns whether the server must be restarted for it to take effect (`archive_mode` or
/// `wal_level` changed); the rest is applied by a reload.
pub fn configure_archiving(
    target: &PgTarget,
    archive_command: &str,
    archive_timeout: std::time::Duration,
) -> Result<bool, VaultError> {
    let now = query_row(
        target,
        "SELECT current_setting('archive_mode'), current_setting('wal_level')",
        2,
    )?;
    let mut statements = vec![
        format!(
            "ALTER SYSTEM SET archive_command = {}",
            super::sql_literal(archive_command)
        ),
        format!(
            "ALTER SYSTEM SET archive_timeout = '{}s'",
            archive_timeout.as_secs().max(1)
        ),
    ];
    let mut restart = false;
    if now[0] == "off" {
        statements.push("ALTER SYSTEM SET archive_mode = 'on'".to_string());
        restart = true;
    }
    if now[1] == "minimal" {
        statements.push("ALTER SYSTEM SET wal_level = 'replica'".to_string());
        restart = true;
    }
    statements.push("SELECT pg_reload_conf()".to_string());
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    execute(target, &statements)?;
    Ok(restart)
}

/// How far a restore replays the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// Everything archived, then promote.
    Latest,
    /// Only to the end of the base backup (the earliest consistent moment): fastest, for
    /// seeding workspaces.
    Immediate,
    /// Transactions committed up to and including this moment, then promote.
    Time(RecoveryTime),
}

/// A moment as RFC 3339 with an explicit offset (`2025-01-31T12:00:00.25Z`): PostgreSQL
/// would read a time without one in the server's zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryTime {
    text: String,
    at: jiff::Timestamp,
}

impl RecoveryTime {
    pub fn unix_micros(&self) -> i64 {
        self.at.as_microsecond()
    }
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// As PostgreSQL reads it in `recovery_target_time`: UTC with a numeric offset. Zone
    /// names, even `Z`, are refused there (the abbreviation tables are not loaded yet when
    /// the server checks its configuration).
    pub fn to_postgres(&self) -> String {
        format!("{}+00", self.at.strftime("%Y-%m-%d %H:%M:%S.%6f"))
    }
}

impl std::str::FromStr for RecoveryTime {
    type Err = String;
    /// An impossible date or time (`2025-02-30`, `24:00:01`) is refused, never carried over.
    fn from_str(s: &str) -> Result<RecoveryTime, String> {
        let at = s.parse().map_err(|e| {
            format!(
                "`{}` is not an RFC 3339 time with an offset, like 2025-01-31T12:00:00Z: {e}",
                s.escape_debug()
            )
        })?;
        Ok(RecoveryTime {
            text: s.to_string(),
            at,
        })
    }
}

impl std::fmt::Display for RecoveryTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The newest base backup of `dataset` that can reach `target`: for a time, the newest that
/// had ended by then (per its record in the log archive); otherwise the newest.
/// `snapshots` as [`Repository::snapshots`] lists them.
pub fn choose_base_backup(
    snapshots: &[SnapshotInfo],
    archive: &LogArchive,
    dataset: &str,
    target: &RecoveryTarget,
) -> Result<Option<SnapshotInfo>, VaultError> {
    let mut bases: Vec<&SnapshotInfo> = snapshots
        .iter()
        .filter(|s| s.meta.kind == "pg-base" && s.meta.dataset == dataset)
        .collect();
    bases.sort_by_key(|s| s.unix);
    let RecoveryTarget::Time(t) = target else {
        return Ok(bases.last().map(|s| (*s).clone()));
    };
    for base in bases.into_iter().rev() {
        let Some(labels) = base_backup_labels(archive, dataset, base)? else {
            continue;
        };
        let end = labels.get("end_time").and_then(|e| e.parse::<RecoveryTime>().ok());
        if end.is_some_and(|end| end.at <= t.at) {
            let mut chosen = base.clone();
            chosen.meta.labels = labels;
            return Ok(Some(chosen));
        }
    }
    Ok(None)
}

/// What a point-in-time restore sets up besides the files.
#[derive(Debug, Clone)]
pub struct PhysicalRestore {
    pub target: RecoveryTarget,
    /// Fetches one archived file: `%f` is its name, `%p` where to put it; e.g.
    /// `resurgo wal fetch --dataset D %f %p`.
    pub restore_command: String,
    /// What the restored server archives with once promoted (its own site's repository);
    /// `None` turns archiving off. The primary's setting, copied in the backup, never
    /// survives: it would push into the lost site's repository.
    pub archive_command: Option<String>,
    /// Fetch the whole archive the restore needs (every segment of the stream from the base
    /// backup's start on, and the timeline histories) into `<pgdata>/resurgo-wal` now, with
    /// the repository already open, and recover from that folder alone: one repository open
    /// instead of one per segment (each costs a key derivation). For a failover, whose
    /// archive (the lost site's, replicated) no longer grows. The stream is the dataset.
    pub prefetch: Option<String>,
}

/// The folder inside the data directory that a prefetched restore recovers from.
pub const PREFETCH_DIR: &str = "resurgo-wal";

/// Restores a base backup into `pgdata` (absent or empty) and sets it up so that starting
/// PostgreSQL on it replays the archive to `options.target` and promotes.
///
/// The files get the owner of `pgdata` as the caller made it (so root can restore for the
/// server's user), mode 0700. When the backup carries a manifest, the restored files are
/// checked against it (`pg_verifybackup`) before anything is written.
pub fn restore_physical(
    repo: &Repository,
    snapshot: &str,
    pgdata: &Path,
    options: &PhysicalRestore,
) -> Result<(), VaultError> {
    let owner = super::prepare_pgdata(pgdata)?;
    let mut tar = Command::new("tar");
    // GNU tar: restore modes as archived, owners as the extracting user (fixed below).
    tar.args(["-x", "-f", "-", "--no-same-owner", "-C"]).arg(pgdata);
    super::run_fed(tar, None, |stdin| repo.restore_file(snapshot, BASE_FILE, stdin))?;

    if pgdata.join("backup_manifest").is_file() {
        let mut verify = super::pg_command("pg_verifybackup", None)?;
        verify.args(["--no-parse-wal", "--quiet"]).arg(pgdata);
        super::run(verify, None)?;
    }

    let io = super::io_error;
    let standby_signal = pgdata.join("standby.signal");
    if standby_signal.exists() {
        std::fs::remove_file(&standby_signal).map_err(io("cannot remove", &standby_signal))?;
    }
    let signal = pgdata.join("recovery.signal");
    std::fs::write(&signal, b"").map_err(io("cannot write", &signal))?;

    let restore_command = match &options.prefetch {
        Some(stream) => {
            prefetch(repo, snapshot, stream, &pgdata.join(PREFETCH_DIR))?;
            // Relative to the data directory, where PostgreSQL runs it; exit 1 when absent.
            format!("cp {PREFETCH_DIR}/%f %p")
        }
        None => options.restore_command.clone(),
    };
    let mut settings = vec![("restore_command", restore_command)];
    match &options.target {
        RecoveryTarget::Latest => {}
        RecoveryTarget::Immediate => {
            settings.push(("recovery_target", "immediate".into()));
            settings.push(("recovery_target_action", "promote".into()));
        }
        RecoveryTarget::Time(t) => {
            settings.push(("recovery_target_time", t.to_postgres()));
            settings.push(("recovery_target_inclusive", "on".into()));
            settings.push(("recovery_target_action", "promote".into()));
        }
    }
    settings.push(("recovery_target_timeline", "latest".into()));
    match &options.archive_command {
        Some(command) => {
            settings.push(("archive_mode", "on".into()));
            settings.push(("archive_command", command.clone()));
        }
        None => settings.push(("archive_mode", "off".into())),
    }
    // postgresql.auto.conf: read last, so these win over what the backup carried.
    let auto = pgdata.join("postgresql.auto.conf");
    let mut text = String::from("\n# Point-in-time restore, set by resurgo.\n");
    for (name, value) in settings {
        text.push_str(&format!("{name} = {}\n", super::conf_value(&value)));
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&auto)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(io("cannot write", &auto))?;

    super::finish_pgdata(pgdata, owner)
}

/// Copies the segments of `stream` from the start of base backup `snapshot` on (and every
/// timeline history) from `repo`'s log archive into `dir`, decompressed and checked.
fn prefetch(repo: &Repository, snapshot: &str, stream: &str, dir: &Path) -> Result<usize, VaultError> {
    let io = super::io_error;
    std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    let start = repo
        .snapshots(Some(stream))?
        .into_iter()
        .find(|s| s.id == snapshot)
        .and_then(|s| s.meta.labels.get("wal_start").cloned())
        .unwrap_or_default();
    let archive = repo.archive();
    let mut fetched = 0;
    for segment in archive.list(stream)? {
        let name = &segment.name;
        let wal = name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit());
        let history = name.ends_with(".history");
        // Within a timeline, segment names sort in WAL order; later timelines sort after.
        if ((wal && name.as_str() >= start.as_str()) || history)
            && super::wal_fetch(&archive, stream, name, &dir.join(name))?
        {
            fetched += 1;
        }
    }
    Ok(fetched)
}

/// What PostgreSQL's archiver reports (`pg_stat_archiver`): the WAL archiving status of a
/// primary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Archiver {
    pub last_archived_wal: Option<String>,
    pub last_archived_time: Option<String>,
    pub failed_count: u64,
    pub last_failed_wal: Option<String>,
    pub last_failed_time: Option<String>,
}

impl Archiver {
    /// Whether the newest attempt failed: archiving is stuck, and the RPO grows.
    pub fn failing(&self) -> bool {
        match (&self.last_failed_time, &self.last_archived_time) {
            (Some(failed), Some(archived)) => failed > archived,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// Reads `pg_stat_archiver` on the server `target` is on.
pub fn archiver_status(target: &PgTarget) -> Result<Archiver, VaultError> {
    // Timestamps as UTC text of one fixed shape, so they compare as strings.
    let row = query_row(
        target,
        "SELECT coalesce(last_archived_wal, ''), \
                coalesce(to_char(last_archived_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), ''), \
                failed_count, coalesce(last_failed_wal, ''), \
                coalesce(to_char(last_failed_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '') \
         FROM pg_stat_archiver",
        5,
    )?;
    let opt = |s: &String| (!s.is_empty()).then(|| s.clone());
    Ok(Archiver {
        last_archived_wal: opt(&row[0]),
        last_archived_time: opt(&row[1]),
        failed_count: row[2].parse().unwrap_or(0),
        last_failed_wal: opt(&row[3]),
        last_failed_time: opt(&row[4]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archiver_is_failing_only_when_the_newest_attempt_failed() {
        let at = |t: &str| Some(t.to_string());
        let a = |archived: Option<String>, failed: Option<String>| Archiver {
            last_archived_wal: archived.as_ref().map(|_| "000000010000000000000003".into()),
            last_archived_time: archived,
            failed_count: u64::from(failed.is_some()),
            last_failed_wal: failed.as_ref().map(|_| "000000010000000000000004".into()),
            last_failed_time: failed,
        };
        assert!(!a(None, None).failing(), "nothing tried yet");
        assert!(!a(at("2026-11-21T10:00:00.000000Z"), None).failing());
        assert!(a(at("2026-11-21T10:00:00.000000Z"), at("2026-11-21T10:00:05.000000Z")).failing());
        assert!(
            !a(at("2026-11-21T10:00:09.000000Z"), at("2026-11-21T10:00:05.000000Z")).failing(),
            "recovered"
        );
        assert!(a(None, at("2026-11-21T10:00:05.000000Z")).failing());
    }

    #[test]
    fn rfc3339_times() {
        let micros = |s: &str| s.parse::<RecoveryTime>().map(|t| t.unix_micros());
        assert_eq!(micros("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(micros("2000-03-01T00:00:00.5Z"), Ok(951_868_800_500_000));
        assert_eq!(micros("2000-03-01T01:30:00+01:30"), Ok(951_868_800_000_000));
        assert_eq!(micros("2024-02-29 12:00:00.123456789z"), Ok(1_709_208_000_123_456));
        let t: RecoveryTime = "2000-03-01T01:30:00.25+01:30".parse().unwrap();
        assert_eq!(t.to_postgres(), "2000-03-01 00:00:00.250000+00");
        let t: RecoveryTime = "1969-12-31T23:59:59.5Z".parse().unwrap();
        assert_eq!(t.to_postgres(), "1969-12-31 23:59:59.500000+00");
    }

    /// Regression: the hand-written parser read `2025-02-30` as 2025-03-02, so a
    /// point-in-time restore stopped at another moment (issue 8, item 7).
    #[test]
    fn impossible_or_malformed_times_are_refused_naming_the_text() {
        for bad in [
            "2024-02-29T12:00:00",
            "2024-02-29",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-02-31T00:00:00Z",
            "2026-01-01T24:00:01Z",
        ] {
            let e = bad.parse::<RecoveryTime>().expect_err(bad);
            assert!(e.starts_with(&format!("`{bad}` is not an RFC 3339 time")), "{e}");
        }
    }
}
