//! PostgreSQL: logical dumps (pg_dump, streamed), physical base backups (pg_basebackup,
//! streamed) with continuous WAL archiving for point-in-time restore, and warm standbys.
//!
//! Everything goes through PostgreSQL's own programs (psql, pg_dump, pg_restore,
//! pg_basebackup, pg_verifybackup): no client library to build, and every authentication
//! setup libpq supports works. Passwords reach the programs only through `PGPASSWORD` in
//! their environment, never on a command line or in a message.
//!
//! - [`target`]: where a server is ([`PgTarget`]) and how to query it.
//! - [`logical`]: `pg_dump -Fc` into a snapshot, `pg_restore` back.
//! - [`physical`]: base backups, archiving setup, point-in-time restore.
//! - [`wal`]: what `archive_command` and `restore_command` run.
//! - [`standby`]: streaming replicas: build, measure lag, promote.

pub mod logical;
pub mod physical;
pub mod standby;
pub mod target;
pub mod wal;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub use logical::{logical_backup, logical_restore, DUMP_FILE};
pub use physical::{
    archiver_status, base_backup, base_backup_labels, choose_base_backup, configure_archiving, restore_physical,
    Archiver, PhysicalRestore, RecoveryTarget, RecoveryTime, BASE_FILE,
};
pub use standby::{
    build_standby, caught_up_with_shutdown, promote, replayed_to, shutdown_checkpoint, standby_lag, Lag,
};
pub use target::{is_in_recovery, query, wait_for, wait_ready, wait_until_primary, BadConnection, Lsn, PgTarget};
pub use wal::{
    wal_fetch, wal_fetch_status, wal_push, wal_push_status, CLONE_MARKER, FETCH_FAILED, FETCH_MISSING, PUSH_FAILED,
};

use crate::VaultError;

/// The folder PostgreSQL's programs are in, when one could be found.
fn bindir() -> Option<&'static Path> {
    static BINDIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    BINDIR
        .get_or_init(|| {
            if let Some(dir) = std::env::var_os("RESURGO_PG_BINDIR") {
                return Some(PathBuf::from(dir));
            }
            if let Ok(out) = Command::new("pg_config").arg("--bindir").stderr(Stdio::null()).output() {
                let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
                if out.status.success() && dir.join("postgres").is_file() {
                    return Some(dir);
                }
            }
            // Debian and Ubuntu: /usr/lib/postgresql/<major>/bin; take the newest.
            let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .flatten()
                .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
                .filter(|(_, bin): &(u32, PathBuf)| bin.is_dir())
                .collect();
            versions.sort();
            versions.pop().map(|(_, bin)| bin)
        })
        .as_deref()
}

/// The path of one of PostgreSQL's programs (`pg_dump`, `pg_basebackup`…): from
/// `RESURGO_PG_BINDIR`, `pg_config --bindir`, `/usr/lib/postgresql/<newest>/bin`, then `PATH`.
pub fn program(name: &str) -> Result<PathBuf, VaultError> {
    if let Some(path) = bindir().map(|d| d.join(name)).filter(|p| p.is_file()) {
        return Ok(path);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| VaultError::NotFound {
            what: "PostgreSQL program",
            name: name.to_string(),
            location: "RESURGO_PG_BINDIR, `pg_config --bindir`, /usr/lib/postgresql/*/bin or PATH".to_string(),
        })
}

/// A command for one of PostgreSQL's programs, reaching `target` (connection in the
/// environment, password only there), never prompting.
fn pg_command(name: &str, target: Option<&target::PgTarget>) -> Result<Command, VaultError> {
    let mut cmd = Command::new(program(name)?);
    if let Some(t) = target {
        cmd.envs(t.env());
    }
    Ok(cmd)
}

/// Checks every table and index of every database `target`'s server holds for corruption
/// (`pg_amcheck --all`, installing the `amcheck` extension where it is missing). What it said.
pub fn amcheck(target: &target::PgTarget) -> Result<String, VaultError> {
    let mut cmd = pg_command("pg_amcheck", Some(target))?;
    cmd.args([
        "--host",
        &target.host,
        "--port",
        &target.port.to_string(),
        "--username",
        &target.user,
    ])
    .args([
        "--maintenance-db",
        &target.dbname,
        "--all",
        "--install-missing",
        "--no-password",
    ]);
    let server = target.to_string();
    run(cmd, Some(&server)).map(|out| {
        let out = out.trim();
        if out.is_empty() {
            "pg_amcheck --all: no corruption found".to_string()
        } else {
            format!("pg_amcheck --all: {out}")
        }
    })
}

/// The last part of a program's standard error, trimmed: enough to say what went wrong
/// without flooding a message.
fn tail(stderr: &[u8]) -> String {
    const MAX: usize = 2000;
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    match text.char_indices().rev().nth(MAX) {
        Some((cut, _)) => format!("…{}", &text[cut..]),
        None => text.to_string(),
    }
}

/// Whether a libpq program's complaint means the server could not be reached (which a
/// later attempt may fix) rather than that it refused the request.
fn unreachable(stderr: &str) -> bool {
    [
        "Connection refused",
        "Is the server running",
        "could not connect",
        "timeout expired",
        "No route to host",
        "could not translate host name",
        "the database system is starting up",
        "the database system is shutting down",
        "the database system is not yet accepting connections",
        "server closed the connection unexpectedly",
    ]
    .iter()
    .any(|needle| stderr.contains(needle))
}

fn command_error(cmd: &Command, status: std::process::ExitStatus, stderr: &[u8], server: Option<&str>) -> VaultError {
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program())
        .to_string_lossy()
        .into_owned();
    let stderr = tail(stderr);
    match server {
        Some(server) if unreachable(&stderr) => VaultError::ServerUnreachable {
            server: server.to_string(),
            reason: format!("{program}: {stderr}"),
        },
        _ => VaultError::Command {
            program,
            status: status.to_string(),
            stderr,
        },
    }
}

fn spawn_error(cmd: &Command, e: std::io::Error) -> VaultError {
    VaultError::Io {
        what: "cannot run",
        path: PathBuf::from(cmd.get_program()),
        source: e,
    }
}

/// Runs a command to completion; its standard output, or what it said on failure.
fn run(mut cmd: Command, server: Option<&str>) -> Result<String, VaultError> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| spawn_error(&cmd, e))?;
    if !out.status.success() {
        return Err(command_error(&cmd, out.status, &out.stderr, server));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command with `feed` writing its standard input (a stream from the repository),
/// reading its standard error on the side. A failure of the command is reported before a
/// failure of the feed: when the command dies, the feed only sees a broken pipe.
fn run_fed(
    mut cmd: Command,
    server: Option<&str>,
    feed: impl FnOnce(&mut dyn Write) -> Result<u64, VaultError>,
) -> Result<u64, VaultError> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error(&cmd, e))?;
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let mut stdin = child.stdin.take().expect("piped");
    let fed = feed(&mut stdin);
    drop(stdin);
    let status = child.wait().map_err(|e| spawn_error(&cmd, e))?;
    let stderr = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(command_error(&cmd, status, &stderr, server));
    }
    fed
}

/// Maps an I/O error to one naming what was done to which path.
fn io_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VaultError {
    let path = path.to_path_buf();
    move |source| VaultError::Io { what, path, source }
}

/// Gives `path` and everything under it to `owner` (uid, gid) where it differs, so a data
/// directory extracted or copied by another user (root, in a restore) is the server's.
fn chown_tree(path: &Path, owner: (u32, u32)) -> Result<(), VaultError> {
    use std::os::unix::fs::MetadataExt;
    let io = io_error;
    let meta = std::fs::symlink_metadata(path).map_err(io("cannot read", path))?;
    if (meta.uid(), meta.gid()) != owner {
        std::os::unix::fs::lchown(path, Some(owner.0), Some(owner.1))
            .map_err(io("cannot change the owner of", path))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io("cannot read", path))? {
            let entry = entry.map_err(io("cannot read", path))?;
            chown_tree(&entry.path(), owner)?;
        }
    }
    Ok(())
}

/// Prepares an empty data directory: creates it (mode 0700) if missing, refuses one that
/// has content. Returns the owner its content must get.
fn prepare_pgdata(pgdata: &Path) -> Result<(u32, u32), VaultError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let io = |what| {
        move |source| VaultError::Io {
            what,
            path: pgdata.to_path_buf(),
            source,
        }
    };
    if !pgdata.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(pgdata)
            .map_err(io("cannot create"))?;
    }
    if std::fs::read_dir(pgdata).map_err(io("cannot read"))?.next().is_some() {
        return Err(VaultError::Io {
            what: "refusing to restore into",
            path: pgdata.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "the folder is not empty"),
        });
    }
    let meta = std::fs::metadata(pgdata).map_err(io("cannot read"))?;
    Ok((meta.uid(), meta.gid()))
}

/// Makes a restored or copied data directory startable: mode 0700 (PostgreSQL refuses
/// more) and owned like the folder the caller gave.
fn finish_pgdata(pgdata: &Path, owner: (u32, u32)) -> Result<(), VaultError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(pgdata, std::fs::Permissions::from_mode(0o700)).map_err(|source| VaultError::Io {
        what: "cannot set the mode of",
        path: pgdata.to_path_buf(),
        source,
    })?;
    chown_tree(pgdata, owner)
}

/// A string as an SQL literal (`standard_conforming_strings` is on since PostgreSQL 9.1).
fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A value for postgresql.conf: single-quoted, quotes doubled, backslashes escaped.
fn conf_value(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    /// A database is a database server in what people read, not a "repository" (issue 8,
    /// item 9); and an unreachable one is still worth retrying.
    #[test]
    fn an_unreachable_server_is_called_a_database_server() {
        let error = command_error(
            &Command::new("/usr/bin/psql"),
            std::process::ExitStatus::from_raw(2 << 8),
            b"psql: error: connection to server at \"127.0.0.1\", port 5432 failed: could not connect",
            Some("postgresql nobody@127.0.0.1:5432/postgres"),
        );
        assert!(error.is_transient());
        let text = error.to_string();
        assert!(
            text.starts_with("database server postgresql nobody@127.0.0.1:5432/postgres is unreachable: psql: "),
            "{text}"
        );
    }
}
