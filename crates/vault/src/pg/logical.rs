//! Logical backups: `pg_dump` in custom format streamed into a snapshot, and `pg_restore`
//! fed from it. Nothing touches local disk on the way.

use super::target::{query_row, PgTarget};
use crate::repo::{BackupMeta, Repository, SnapshotInfo};
use crate::VaultError;

/// The name the dump has inside its snapshot.
pub const DUMP_FILE: &str = "pg_dump.custom";

/// Dumps `target`'s database into a snapshot (`kind` `pg-dump`; labels `dbname`,
/// `server_version_num`).
///
/// The dump is uncompressed (`-Z0`): the repository compresses, and can then deduplicate
/// one day's dump against the next.
pub fn logical_backup(repo: &Repository, target: &PgTarget, meta: &BackupMeta) -> Result<SnapshotInfo, VaultError> {
    let version = query_row(target, "SELECT current_setting('server_version_num')", 1)?.remove(0);
    let mut meta = meta.clone();
    meta.kind = "pg-dump".to_string();
    meta.labels.insert("dbname".to_string(), target.dbname.clone());
    meta.labels.insert("server_version_num".to_string(), version);

    let command = vec![
        super::program("pg_dump")?.to_string_lossy().into_owned(),
        "--format=custom".to_string(),
        "--compress=0".to_string(),
        "--no-password".to_string(),
        "--dbname".to_string(),
        target.conninfo(),
    ];
    repo.backup_command(&command, &target.env(), DUMP_FILE, &meta)
}

/// Restores a dump snapshot into `target`'s database, which must exist: objects the dump
/// holds are dropped and re-created (`--clean --if-exists`), all in one transaction, so a
/// failed restore leaves the database as it was. Objects are owned by `target`'s user
/// (`--no-owner`): the roles of the site the dump came from need not exist here.
pub fn logical_restore(repo: &Repository, snapshot: &str, target: &PgTarget) -> Result<(), VaultError> {
    let mut cmd = super::pg_command("pg_restore", Some(target))?;
    cmd.args([
        "--clean",
        "--if-exists",
        "--no-owner",
        "--single-transaction",
        "--exit-on-error",
        "--no-password",
    ])
    .arg("--dbname")
    .arg(target.conninfo());
    super::run_fed(cmd, Some(&target.location()), |stdin| {
        repo.restore_file(snapshot, DUMP_FILE, stdin)
    })
    .map(drop)
}
