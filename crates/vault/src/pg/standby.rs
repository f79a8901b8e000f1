//! Warm standbys: a streaming replica at the DR site, built from the primary with
//! `pg_basebackup -R` on a physical replication slot (so the primary keeps the WAL the
//! standby has not received yet), watched for lag, promoted on failover.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::target::{is_in_recovery, query_row, Lsn, PgTarget};
use crate::VaultError;

/// Builds a standby of `primary` in `pgdata` (absent or empty): creates the physical
/// replication slot `slot` on the primary if missing, copies the cluster with
/// `pg_basebackup -X stream -R -S slot`, which writes `standby.signal` and
/// `primary_conninfo`. Start PostgreSQL on `pgdata` and it follows the primary.
///
/// The files get the owner of `pgdata` as the caller made it, mode 0700. With a password,
/// `primary_conninfo` (in `postgresql.auto.conf`, inside the 0700 data directory) holds it:
/// that is where PostgreSQL reads it from. The primary's `archive_command` comes along and
/// runs if the standby is promoted: set the new primary's own after promotion.
pub fn build_standby(primary: &PgTarget, pgdata: &Path, slot: &str) -> Result<(), VaultError> {
    let owner = super::prepare_pgdata(pgdata)?;
    let slot_literal = super::sql_literal(slot);
    query_row(
        primary,
        &format!(
            "SELECT count(pg_create_physical_replication_slot({slot_literal}, true)) \
             WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = {slot_literal})"
        ),
        1,
    )?;
    let mut cmd = super::pg_command("pg_basebackup", Some(primary))?;
    cmd.arg("--pgdata")
        .arg(pgdata)
        .args([
            "--format=plain",
            "--wal-method=stream",
            "--write-recovery-conf",
            "--checkpoint=fast",
            "--no-password",
        ])
        .arg(format!("--slot={slot}"))
        .arg("--dbname")
        .arg(primary.conninfo());
    super::run(cmd, Some(&primary.location()))?;
    super::finish_pgdata(pgdata, owner)
}

/// How far a standby is behind its primary.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Lag {
    /// WAL the primary has written and the standby has not replayed yet.
    pub bytes: u64,
    /// Time the standby's replay is behind: 0 when caught up; while behind, PostgreSQL's
    /// own measure (`replay_lag`) when the primary reports one, else the age of the last
    /// transaction replayed; `None` when neither is known yet.
    pub seconds: Option<f64>,
    /// Whether the standby is receiving WAL from the primary right now.
    pub streaming: bool,
}

/// Measures `standby`'s lag behind `primary`. The standby is read first, so the figures
/// err on the side of more lag, never less.
pub fn standby_lag(primary: &PgTarget, standby: &PgTarget) -> Result<Lag, VaultError> {
    let s = query_row(
        standby,
        "SELECT pg_is_in_recovery(), COALESCE(pg_last_wal_replay_lsn()::text, ''), \
         COALESCE(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::text, ''), \
         COALESCE((SELECT status FROM pg_stat_wal_receiver), ''), \
         COALESCE((SELECT slot_name FROM pg_stat_wal_receiver), '')",
        5,
    )?;
    if s[0] != "t" {
        return Err(VaultError::Command {
            program: "psql".to_string(),
            status: "not a standby".to_string(),
            stderr: format!("{standby} is not in recovery: it was promoted or is a primary"),
        });
    }
    let replayed: Option<Lsn> = s[1].parse().ok();
    let replay_lag_sql = if s[4].is_empty() {
        "''".to_string()
    } else {
        format!(
            "COALESCE((SELECT extract(epoch FROM r.replay_lag)::text FROM pg_stat_replication r \
             JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name = {}), '')",
            super::sql_literal(&s[4])
        )
    };
    let p = query_row(primary, &format!("SELECT pg_current_wal_lsn(), {replay_lag_sql}"), 2)?;
    let current: Lsn = p[0].parse().map_err(|e: String| VaultError::Command {
        program: "psql".to_string(),
        status: "unexpected answer".to_string(),
        stderr: e,
    })?;
    let bytes = current.0.saturating_sub(replayed.map_or(0, |l| l.0));
    let seconds = if bytes == 0 {
        Some(0.0)
    } else if s[3] == "streaming" {
        // Streaming: the primary's own measure. None there means the standby has caught up
        // and the primary is idle (the few bytes behind are WAL without commits, such as
        // PostgreSQL's periodic running-transactions record).
        Some(p[1].parse::<f64>().map_or(0.0, |x| x.max(0.0)))
    } else {
        // Not streaming: how old the newest transaction replayed here is — a bound on what
        // the standby may be missing, as long as the primary was writing.
        p[1].parse::<f64>()
            .ok()
            .or_else(|| s[2].parse::<f64>().ok())
            .map(|x| x.max(0.0))
    };
    Ok(Lag {
        bytes,
        seconds,
        streaming: s[3] == "streaming",
    })
}

/// Promotes a standby and waits (up to `timeout`) until it accepts writes. Promoting a
/// server that is already a primary is a no-op.
pub fn promote(standby: &PgTarget, timeout: Duration) -> Result<(), VaultError> {
    if !is_in_recovery(standby)? {
        return Ok(());
    }
    let seconds = timeout.as_secs().clamp(1, i32::MAX as u64);
    let promoted = query_row(standby, &format!("SELECT pg_promote(true, {seconds})"), 1)?;
    if promoted[0] == "t" || !is_in_recovery(standby)? {
        return Ok(());
    }
    Err(VaultError::Command {
        program: "psql".to_string(),
        status: "promotion timed out".to_string(),
        stderr: format!("{standby} did not leave recovery within {seconds} s"),
    })
}

/// Whether `standby` has replayed everything the server whose data directory is `old_pgdata`
/// wrote before it was shut down cleanly (a planned switch's final sync): its replay position
/// has reached the shutdown checkpoint `pg_controldata` reads there. `Ok(None)` when that
/// server was not shut down cleanly (killed, or still running): nothing can be said.
pub fn caught_up_with_shutdown(standby: &PgTarget, old_pgdata: &Path) -> Result<Option<bool>, VaultError> {
    match shutdown_checkpoint(old_pgdata)? {
        Some(checkpoint) => replayed_to(standby, checkpoint).map(Some),
        None => Ok(None),
    }
}

/// The checkpoint a cleanly shut down server wrote last, as `pg_controldata` reads it in its
/// data directory: everything it wrote is at or before it. `None` when the server was not shut
/// down cleanly (killed, or still running). Read where the data directory is: a site's agent,
/// handing its group over, tells the new primary this.
pub fn shutdown_checkpoint(pgdata: &Path) -> Result<Option<Lsn>, VaultError> {
    let mut cmd = std::process::Command::new(super::program("pg_controldata")?);
    cmd.arg(pgdata).env("LC_ALL", "C");
    let text = super::run(cmd, Some(&pgdata.display().to_string()))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    if field("Database cluster state:").as_deref() != Some("shut down") {
        return Ok(None);
    }
    Ok(field("Latest checkpoint location:").and_then(|v| v.parse::<Lsn>().ok()))
}

/// Whether `standby` has replayed the WAL up to `lsn`.
pub fn replayed_to(standby: &PgTarget, lsn: Lsn) -> Result<bool, VaultError> {
    let replayed = query_row(standby, "SELECT COALESCE(pg_last_wal_replay_lsn()::text, '')", 1)?;
    Ok(replayed[0].parse::<Lsn>().is_ok_and(|r| r.0 >= lsn.0))
}
