//! The clone layer for workspaces: a fast, writable copy of a golden copy's folder tree (a
//! restored and checked dataset: a PostgreSQL data directory, an SQLite file's folder, a plain
//! folder), for dev/test use at a DR site.
//!
//! [`clone_tree`] tries the allowed methods in order, cheapest first by default
//! ([`Method::ALL`]):
//! - **reflink** — each regular file cloned with FICLONE: the clone shares the golden's extents
//!   until either is written (XFS with `reflink=1`, btrfs; golden and clone on one filesystem);
//! - **overlay** — an overlayfs mount with the golden as its read-only lower layer
//!   (`overlay.rs` has the layout);
//! - **copy** — every byte copied.
//!
//! A method the filesystem refuses falls through to the next, and nothing of the failed attempt
//! is left behind. Reflink and copy keep each entry's type, permission bits, owner and times
//! (`tree.rs`). [`remove`] undoes any clone, [`leftovers`] says what is left of one.
//!
//! Needs root (chown, mount). Knows nothing of specs, datasets or providers.

mod error;
mod mounts;
mod overlay;
mod tree;

use std::fmt;
use std::io;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

pub use error::CloneError;

/// How a clone was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Every regular file reflinked (FICLONE): shared extents, copy on write.
    Reflink,
    /// An overlayfs mount over the golden copy.
    Overlay,
    /// A full copy.
    Copy,
}

impl Method {
    /// Every method, in the default order: the cheapest (in time and space) first.
    pub const ALL: [Method; 3] = [Method::Reflink, Method::Overlay, Method::Copy];

    fn as_str(self) -> &'static str {
        match self {
            Method::Reflink => "reflink",
            Method::Overlay => "overlay",
            Method::Copy => "copy",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Method {
    type Err = CloneError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Method::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| CloneError::UnknownMethod { name: s.into() })
    }
}

/// A clone made by [`clone_tree`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloned {
    /// The method that made it.
    pub method: Method,
    /// The whole call, refused attempts included.
    pub took: Duration,
    /// The logical bytes of the tree: the sizes of its regular files.
    pub bytes: u64,
}

/// How one method's attempt ended, when it did not make the clone.
pub(crate) enum Attempt {
    /// The filesystem does not do this method: try the next.
    Refused(String),
    /// A real failure: stop.
    Failed(CloneError),
}

/// Clones the folder tree `golden` into `dst` (which must not exist; its parent must), trying
/// `allowed` in order ([`Method::ALL`] is the default order). A method the filesystem refuses
/// (reflink: FICLONE fails with EOPNOTSUPP, EXDEV, EINVAL or ENOTTY; overlay: the mount fails)
/// falls through to the next, leaving nothing of the failed attempt behind; any other failure
/// ends the call, also leaving nothing behind. Errors name the path and what failed.
pub fn clone_tree(golden: &Path, dst: &Path, allowed: &[Method]) -> Result<Cloned, CloneError> {
    let start = Instant::now();
    let golden_error = |reason: String| CloneError::Golden {
        path: golden.into(),
        reason,
    };
    let golden_meta = std::fs::metadata(golden).map_err(|e| golden_error(e.to_string()))?;
    if !golden_meta.is_dir() {
        return Err(golden_error("not a folder".into()));
    }
    let golden_abs = golden.canonicalize().map_err(|e| golden_error(e.to_string()))?;
    let dst_error = |reason: String| CloneError::Destination {
        path: dst.into(),
        reason,
    };
    let private = overlay::private_dir(dst).ok_or_else(|| dst_error("has no name".into()))?;
    for path in [dst, &private] {
        match std::fs::symlink_metadata(path) {
            Ok(_) => return Err(CloneError::Exists { path: path.into() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CloneError::io("read metadata of", path, e)),
        }
    }
    let parent = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent_abs = parent
        .canonicalize()
        .map_err(|e| dst_error(format!("parent folder {}: {e}", parent.display())))?;
    if parent_abs.starts_with(&golden_abs) {
        return Err(dst_error(format!("inside the golden copy {}", golden_abs.display())));
    }

    let mut reasons = Vec::new();
    for &method in allowed {
        let attempt = match method {
            Method::Reflink => tree::clone(&golden_abs, dst, tree::FileData::Reflink),
            Method::Copy => tree::clone(&golden_abs, dst, tree::FileData::Copy),
            Method::Overlay => tree::logical_bytes(&golden_abs)
                .map_err(Attempt::Failed)
                .and_then(|bytes| overlay::clone(&golden_abs, dst, &private).map(|()| bytes)),
        };
        match attempt {
            Ok(bytes) => {
                let took = start.elapsed();
                tracing::info!(golden = %golden.display(), dst = %dst.display(), %method,
                    took_ms = took.as_millis() as u64, bytes, "cloned");
                return Ok(Cloned { method, took, bytes });
            }
            // Made by someone else since we looked: not ours to remove.
            Err(Attempt::Failed(e @ CloneError::Exists { .. })) => return Err(e),
            Err(Attempt::Failed(e)) => {
                if let Err(cleanup) = remove(dst) {
                    tracing::warn!(dst = %dst.display(), error = %cleanup, "a failed clone's remains were not removed");
                }
                return Err(e);
            }
            Err(Attempt::Refused(why)) => {
                tracing::info!(dst = %dst.display(), %method, reason = %why, "clone method refused; trying the next");
                remove(dst)?;
                reasons.push(format!("{method}: {why}"));
            }
        }
    }
    if reasons.is_empty() {
        reasons.push("no method allowed".into());
    }
    Err(CloneError::Refused {
        golden: golden.into(),
        dst: dst.into(),
        reasons: reasons.join("; "),
    })
}

/// Removes a clone made by [`clone_tree`], whatever its method: unmounts whatever is mounted at
/// or under `dst` (lazily as the last resort), then removes `dst` and the overlay's private
/// folder `<dst>.overlay`. Nothing there is fine: removing twice is removing once.
pub fn remove(dst: &Path) -> Result<(), CloneError> {
    let private = overlay::private_dir(dst).ok_or_else(|| CloneError::Destination {
        path: dst.into(),
        reason: "has no name".into(),
    })?;
    // Stacked or nested mounts come out one by one, deepest first. Bounded, so a mount that
    // keeps coming back cannot hold the call forever.
    for _ in 0..64 {
        let Some(mount) = mounts::at_or_under(dst).into_iter().next() else {
            break;
        };
        mounts::unmount(&mount.point)?;
    }
    if let Some(mount) = mounts::at_or_under(dst).into_iter().next() {
        return Err(CloneError::StillMounted {
            path: mount.point,
            reason: "mounted again after every unmount".into(),
        });
    }
    for path in [dst, &private] {
        remove_any(path)?;
    }
    Ok(())
}

/// What is left of a clone at `dst`, one line each: `overlay mount at …` (any mount at or under
/// it, by its type), `folder …`, `overlay folder …`. Empty when nothing is.
pub fn leftovers(dst: &Path) -> Vec<String> {
    let mut left: Vec<String> = mounts::at_or_under(dst)
        .into_iter()
        .map(|m| format!("{} mount at {}", m.fstype, m.point.display()))
        .collect();
    if let Ok(meta) = std::fs::symlink_metadata(dst) {
        let kind = if meta.is_dir() { "folder" } else { "file" };
        left.push(format!("{kind} {}", dst.display()));
    }
    if let Some(private) = overlay::private_dir(dst) {
        if std::fs::symlink_metadata(&private).is_ok() {
            left.push(format!("overlay folder {}", private.display()));
        }
    }
    left
}

/// Whether `dst` is a mount point, from `/proc/self/mountinfo` (false when it cannot be read).
pub fn is_mount(dst: &Path) -> bool {
    let point = mounts::resolved(dst);
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mounts::parse_mountinfo(&text).iter().any(|m| m.point == point)
}

/// Removes a folder tree, a file or a symlink (never followed); missing is fine.
fn remove_any(path: &Path) -> Result<(), CloneError> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(CloneError::io("remove", path, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_read_and_write_as_lowercase_words() {
        for (m, word) in [
            (Method::Reflink, "reflink"),
            (Method::Overlay, "overlay"),
            (Method::Copy, "copy"),
        ] {
            assert_eq!(m.to_string(), word);
            assert_eq!(word.parse::<Method>().unwrap(), m);
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{word}\""));
            assert_eq!(serde_json::from_str::<Method>(&format!("\"{word}\"")).unwrap(), m);
        }
        let err = "Reflink".parse::<Method>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown clone method `Reflink`: expected reflink, overlay or copy"
        );
    }
}
