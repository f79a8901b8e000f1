//! Reflink and full copy of a folder tree, entry by entry, keeping what a data directory needs
//! to stay usable: file types, permission bits, owners and times.
//!
//! Regular files are reflinked (FICLONE) or copied; folders and symlinks are made anew (a
//! symlink's target is copied, never followed); fifos are made anew; sockets and device nodes
//! are skipped (a socket left by a stopped server means nothing in a clone). Hard links become
//! separate files, and extended attributes and ACLs are not copied: a golden copy (a restored
//! PostgreSQL data directory, an SQLite file's folder) has neither. Entries are visited in name
//! order, so what a refusal midway leaves is the same on every run (and is removed anyway).

use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::{utimensat, Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;

use crate::{Attempt, CloneError};

/// How a regular file's data reaches the clone.
#[derive(Clone, Copy)]
pub(crate) enum FileData {
    /// FICLONE: the clone shares the golden's extents until either is written.
    Reflink,
    /// Read and written through a buffer. Not `std::io::copy`, whose `copy_file_range` shares
    /// extents on XFS and btrfs by itself: a full copy is asked for to get blocks of its own.
    Copy,
}

/// Clones the folder `golden` into `dst` (which must not exist; its parent must). Returns the
/// logical bytes of the regular files. A partial `dst` is left for the caller to remove.
pub(crate) fn clone(golden: &Path, dst: &Path, how: FileData) -> Result<u64, Attempt> {
    let meta = fs::metadata(golden).map_err(|e| fail("read metadata of", golden, e))?;
    let mut walk = Walk {
        how,
        buf: Vec::new(),
        bytes: 0,
    };
    walk.folder(golden, dst, &meta, true)?;
    Ok(walk.bytes)
}

/// The logical bytes of the regular files under `root` (symlinks not followed).
pub(crate) fn logical_bytes(root: &Path) -> Result<u64, CloneError> {
    let mut total = 0;
    for entry in fs::read_dir(root).map_err(|e| CloneError::io("read folder", root, e))? {
        let entry = entry.map_err(|e| CloneError::io("read folder", root, e))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(|e| CloneError::io("read metadata of", &path, e))?;
        if meta.is_dir() {
            total += logical_bytes(&path)?;
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// Gives `path` the owner, permission bits and times of `like` (the golden entry). Owner first:
/// chown clears the set-user-ID and set-group-ID bits, which chmod then restores. A symlink's
/// own owner and times are set; it has no permission bits of its own on Linux.
pub(crate) fn copy_metadata(path: &Path, like: &Metadata) -> Result<(), CloneError> {
    std::os::unix::fs::lchown(path, Some(like.uid()), Some(like.gid()))
        .map_err(|e| CloneError::io("set owner of", path, e))?;
    if !like.file_type().is_symlink() {
        fs::set_permissions(path, fs::Permissions::from_mode(like.mode() & 0o7777))
            .map_err(|e| CloneError::io("set permissions of", path, e))?;
    }
    let atime = TimeSpec::new(like.atime(), like.atime_nsec());
    let mtime = TimeSpec::new(like.mtime(), like.mtime_nsec());
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| CloneError::io("set times of", path, e.into()))
}

/// Whether a failed FICLONE means "this filesystem (pair) does not reflink", which makes the
/// caller try the next method, rather than a real failure (no space, I/O error).
pub(crate) fn is_refusal(e: &io::Error) -> bool {
    use nix::libc::{EINVAL, ENOTTY, EOPNOTSUPP, EXDEV};
    matches!(e.raw_os_error(), Some(c) if c == EOPNOTSUPP || c == EXDEV || c == EINVAL || c == ENOTTY)
}

fn fail(what: &'static str, path: &Path, e: io::Error) -> Attempt {
    Attempt::Failed(CloneError::io(what, path, e))
}

struct Walk {
    how: FileData,
    buf: Vec<u8>,
    bytes: u64,
}

impl Walk {
    /// Makes `dst` and its content, then gives it `meta`'s owner, mode and times (last, so the
    /// entries made inside do not move its modification time).
    fn folder(&mut self, src: &Path, dst: &Path, meta: &Metadata, top: bool) -> Result<(), Attempt> {
        if let Err(e) = fs::DirBuilder::new().mode(0o700).create(dst) {
            if top && e.kind() == io::ErrorKind::AlreadyExists {
                // Someone made it since the caller looked: not ours to remove.
                return Err(Attempt::Failed(CloneError::Exists { path: dst.into() }));
            }
            return Err(fail("create folder", dst, e));
        }
        let mut entries = fs::read_dir(src)
            .and_then(|d| d.collect::<io::Result<Vec<_>>>())
            .map_err(|e| fail("read folder", src, e))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let from = entry.path();
            let to = dst.join(entry.file_name());
            let m = fs::symlink_metadata(&from).map_err(|e| fail("read metadata of", &from, e))?;
            let kind = m.file_type();
            if kind.is_dir() {
                self.folder(&from, &to, &m, false)?;
                continue;
            }
            if kind.is_file() {
                self.file(&from, &to)?;
                self.bytes += m.len();
            } else if kind.is_symlink() {
                let target = fs::read_link(&from).map_err(|e| fail("read symlink", &from, e))?;
                std::os::unix::fs::symlink(&target, &to).map_err(|e| fail("create symlink", &to, e))?;
            } else if std::os::unix::fs::FileTypeExt::is_fifo(&kind) {
                nix::unistd::mkfifo(&to, Mode::S_IRUSR | Mode::S_IWUSR)
                    .map_err(|e| fail("create fifo", &to, e.into()))?;
            } else {
                tracing::debug!(path = %from.display(), "not cloned: a socket or a device node");
                continue;
            }
            copy_metadata(&to, &m).map_err(Attempt::Failed)?;
        }
        copy_metadata(dst, meta).map_err(Attempt::Failed)
    }

    fn file(&mut self, from: &Path, to: &Path) -> Result<(), Attempt> {
        let mut src = File::open(from).map_err(|e| fail("open", from, e))?;
        let mut dst = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(to)
            .map_err(|e| fail("create file", to, e))?;
        match self.how {
            FileData::Reflink => rustix::fs::ioctl_ficlone(&dst, &src).map_err(|errno| {
                let e = io::Error::from(errno);
                if is_refusal(&e) {
                    Attempt::Refused(format!("FICLONE of {} refused: {e}", from.display()))
                } else {
                    fail("reflink", from, e)
                }
            }),
            FileData::Copy => {
                if self.buf.is_empty() {
                    self.buf = vec![0; 1 << 20];
                }
                loop {
                    let n = match src.read(&mut self.buf) {
                        Ok(0) => return Ok(()),
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(fail("read", from, e)),
                    };
                    dst.write_all(&self.buf[..n]).map_err(|e| fail("write", to, e))?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_the_errors_of_a_filesystem_that_does_not_reflink() {
        for code in [
            nix::libc::EOPNOTSUPP,
            nix::libc::EXDEV,
            nix::libc::EINVAL,
            nix::libc::ENOTTY,
        ] {
            assert!(is_refusal(&io::Error::from_raw_os_error(code)), "{code}");
        }
        for code in [nix::libc::ENOSPC, nix::libc::EIO, nix::libc::EACCES] {
            assert!(!is_refusal(&io::Error::from_raw_os_error(code)), "{code}");
        }
        assert!(!is_refusal(&io::Error::other("no errno")));
    }
}
