//! What PostgreSQL's `archive_command` (`resurgo wal push --dataset D %p`) and
//! `restore_command` (`resurgo wal fetch --dataset D %f %p`) do, and the exit statuses they
//! must end with.
//!
//! The statuses matter more than they look. PostgreSQL retries an archive_command that
//! fails, so a push may fail freely ([`PUSH_FAILED`]). But a restore_command that fails is
//! read as "this file is not archived": recovery would end there and promote, silently
//! dropping everything after. So a fetch says "missing" ([`FETCH_MISSING`]) only when the
//! archive answered that it does not have the file; any other failure — the repository
//! unreachable, a wrong password, a damaged segment — exits with [`FETCH_FAILED`] (> 125),
//! which PostgreSQL treats as fatal: recovery stops, to be resumed once the cause is fixed,
//! instead of promoting with data missing.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::archive::{LogArchive, Pushed};
use crate::VaultError;

/// Exit status of a failed push: PostgreSQL keeps the segment and retries.
pub const PUSH_FAILED: u8 = 1;
/// Exit status of a fetch of a file the archive does not have: the normal end of recovery,
/// and the normal answer to PostgreSQL probing for a timeline history file.
pub const FETCH_MISSING: u8 = 1;
/// Exit status of a fetch that could not find out (see the module documentation).
pub const FETCH_FAILED: u8 = 126;

/// Attempts for a fetch whose failure may pass (the storage did not answer).
const FETCH_ATTEMPTS: u32 = 4;

/// The file that marks a data directory as a clone (a workspace's): [`wal_push`] refuses
/// anything from a server whose data directory holds it.
pub const CLONE_MARKER: &str = "resurgo-clone";

/// The guard against a clone archiving into production's log archive: a clone shares the
/// production server's system identifier, so segments it pushed would be taken for
/// production's. `%p` is relative to the data directory (PostgreSQL runs `archive_command`
/// there), or absolute (`<pgdata>/pg_wal/<file>`).
fn refuse_clone(wal_path: &Path) -> Result<(), VaultError> {
    let pgdata = if wal_path.is_absolute() {
        wal_path.parent().and_then(Path::parent).map(Path::to_path_buf)
    } else {
        std::env::current_dir().ok()
    };
    match pgdata {
        Some(pgdata) if pgdata.join(CLONE_MARKER).exists() => Err(VaultError::CloneRefused {
            file: wal_path.display().to_string(),
            pgdata: pgdata.display().to_string(),
            marker: CLONE_MARKER,
        }),
        _ => Ok(()),
    }
}

/// Archives the file PostgreSQL names as `%p` (a WAL segment, `.partial`, `.history` or
/// `.backup` file) under its file name in stream `stream`. Idempotent: archiving a file
/// again is a no-op; a different file under an archived name is refused, and so is anything
/// from a clone ([`CLONE_MARKER`]).
pub fn wal_push(archive: &LogArchive, stream: &str, wal_path: &Path) -> Result<Pushed, VaultError> {
    refuse_clone(wal_path)?;
    let name = wal_path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| VaultError::NotFound {
            what: "WAL file name in",
            name: wal_path.display().to_string(),
            location: "archive_command's %p".to_string(),
        })?;
    let data = std::fs::read(wal_path).map_err(|source| VaultError::Io {
        what: "cannot read WAL file",
        path: wal_path.to_path_buf(),
        source,
    })?;
    archive.push(stream, name, &data)
}

/// Fetches archived file `name` (`%f`) of stream `stream` into `dest` (`%p`): `true` if it
/// was archived, `false` if not. The file appears whole or not at all. Transient storage
/// failures are retried a few times before they are reported.
pub fn wal_fetch(archive: &LogArchive, stream: &str, name: &str, dest: &Path) -> Result<bool, VaultError> {
    let mut attempt = 0;
    let data = loop {
        attempt += 1;
        match archive.fetch(stream, name) {
            Ok(Some(data)) => break data,
            Ok(None) => return Ok(false),
            Err(e) if e.is_transient() && attempt < FETCH_ATTEMPTS => {
                std::thread::sleep(Duration::from_millis(250) * 2u32.pow(attempt - 1));
            }
            Err(e) => return Err(e),
        }
    };
    let dir = dest
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.resurgo-{}", std::process::id()));
    let io = super::io_error;
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(&data)?;
        f.sync_all()
    });
    if let Err(e) = written
        .map_err(io("cannot write", &tmp))
        .and_then(|()| std::fs::rename(&tmp, dest).map_err(io("cannot write", dest)))
    {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(true)
}

/// The exit status `resurgo wal push` ends with.
pub fn wal_push_status(result: &Result<Pushed, VaultError>) -> u8 {
    match result {
        Ok(_) => 0,
        Err(_) => PUSH_FAILED,
    }
}

/// The exit status `resurgo wal fetch` ends with. Whatever fails before the fetch itself
/// (opening the repository) must end with [`FETCH_FAILED`] too.
pub fn wal_fetch_status(result: &Result<bool, VaultError>) -> u8 {
    match result {
        Ok(true) => 0,
        Ok(false) => FETCH_MISSING,
        Err(_) => FETCH_FAILED,
    }
}
