//! The clone layer's errors: each names the path and what failed, and says whether trying
//! again can help.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CloneError {
    /// The golden copy is missing or is not a folder. Retrying cannot help.
    #[error("golden copy {}: {reason}", path.display())]
    Golden { path: PathBuf, reason: String },
    /// The clone's destination (or an overlay's private folder beside it) already exists: a
    /// clone is never made over something. Remove it first.
    #[error("clone destination {} already exists", path.display())]
    Exists { path: PathBuf },
    /// The clone's destination cannot be made there (no parent folder, inside the golden copy).
    #[error("clone destination {}: {reason}", path.display())]
    Destination { path: PathBuf, reason: String },
    /// Every allowed method was refused by the filesystems (or none was allowed); nothing was
    /// left behind.
    #[error("no clone method worked for {} → {}: {reasons}", golden.display(), dst.display())]
    Refused {
        golden: PathBuf,
        dst: PathBuf,
        /// One `method: why` per method tried, `; `-separated.
        reasons: String,
    },
    /// A file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A clone is still mounted after every way of unmounting it was tried.
    #[error("{} is still mounted: {reason}", path.display())]
    StillMounted { path: PathBuf, reason: String },
    /// Not one of `reflink`, `overlay`, `copy`.
    #[error("unknown clone method `{name}`: expected reflink, overlay or copy")]
    UnknownMethod { name: String },
}

impl CloneError {
    /// Whether trying again later can help: a busy mount, an interrupted or would-block call.
    pub fn is_transient(&self) -> bool {
        match self {
            CloneError::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(e) if e == nix::libc::EBUSY || e == nix::libc::EAGAIN || e == nix::libc::EINTR
            ),
            CloneError::StillMounted { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CloneError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
