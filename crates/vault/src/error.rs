//! The vault's errors: each says what failed and where, and whether trying again can help.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The password does not open any key of the repository. Nothing was changed.
    #[error(
        "wrong password for repository {location}: no key opens it; check the password's environment variable or file"
    )]
    WrongPassword { location: String },
    #[error("no repository at {location}; create one with `resurgo repo init`")]
    NotARepository { location: String },
    #[error("a repository already exists at {location}")]
    AlreadyExists { location: String },
    /// The storage did not answer. Retrying later may help.
    #[error("repository {location} is unreachable: {reason}")]
    Unreachable { location: String, reason: String },
    /// A database server did not answer (refused, timed out, starting or shutting down).
    /// Retrying later may help.
    #[error("database server {server} is unreachable: {reason}")]
    ServerUnreachable { server: String, reason: String },
    /// Stored data failed verification.
    #[error("repository {location}: damaged object {object}: {reason}")]
    Corrupt {
        location: String,
        object: String,
        reason: String,
    },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// An external program (pg_dump, pg_basebackup, a hook) failed.
    #[error("`{program}` failed ({status}): {stderr}")]
    Command {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("{what} `{name}` not found in {location}")]
    NotFound {
        what: &'static str,
        name: String,
        location: String,
    },
    #[error("malformed repository URL `{url}`: {reason}")]
    BadUrl { url: String, reason: String },
    /// A clone of a database (a workspace's) tried to archive: it shares production's system
    /// identifier, so what it pushes would corrupt production's log archive.
    #[error(
        "refused to archive {file}: the server in {pgdata} is a clone ({marker} is there) and shares production's system identifier; a clone never archives into a production repository"
    )]
    CloneRefused {
        file: String,
        pgdata: String,
        marker: &'static str,
    },
    /// Anything else the snapshot store reported.
    #[error("repository {location}: {message}")]
    Store { location: String, message: String },
}

impl VaultError {
    /// Whether trying again later can help.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            VaultError::Unreachable { .. } | VaultError::ServerUnreachable { .. }
        )
    }
}
