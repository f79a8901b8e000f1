//! The overlayfs clone: the golden copy as the read-only lower layer, the clone's writes in an
//! upper folder of its own. `dst` is the merged mount point; the upper and work folders live
//! beside it in `<dst>.overlay/{upper,work}` — on dst's filesystem, as overlayfs needs them
//! together, and outside dst so the clone cannot see or remove them.
//!
//! The golden copy must not change while a clone of it is mounted (overlayfs leaves the result
//! undefined); a golden copy is written once and only read after.

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

use crate::{tree, Attempt, CloneError};

/// `<dst>.overlay`: the overlay's private folder. None when `dst` has no name (`/`, `..`).
pub(crate) fn private_dir(dst: &Path) -> Option<PathBuf> {
    let name = dst.file_name()?;
    let mut private = name.to_os_string();
    private.push(".overlay");
    Some(dst.with_file_name(private))
}

/// Mounts an overlay of `golden` (absolute) at `dst`. A refused mount is `Attempt::Refused`;
/// the caller removes what was made.
pub(crate) fn clone(golden: &Path, dst: &Path, private: &Path) -> Result<(), Attempt> {
    let failed = |what, path: &Path, e| Attempt::Failed(CloneError::io(what, path, e));
    let golden_meta = fs::metadata(golden).map_err(|e| failed("read metadata of", golden, e))?;
    // Only root reads the clone's private folders; the merged view has its own permissions.
    if let Err(e) = fs::DirBuilder::new().mode(0o700).create(private) {
        return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
            Attempt::Failed(CloneError::Exists { path: private.into() })
        } else {
            failed("create folder", private, e)
        });
    }
    let upper = private.join("upper");
    let work = private.join("work");
    for dir in [&upper, &work] {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(|e| failed("create folder", dir, e))?;
    }
    if let Err(e) = fs::DirBuilder::new().mode(0o700).create(dst) {
        return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
            // Made by someone else since the caller looked: only the private folder is ours.
            let _ = fs::remove_dir_all(private);
            Attempt::Failed(CloneError::Exists { path: dst.into() })
        } else {
            failed("create folder", dst, e)
        });
    }
    // The merged root is the upper root: give it the golden root's owner, mode and times, or a
    // PostgreSQL data directory would come out root's and 0700.
    tree::copy_metadata(&upper, &golden_meta).map_err(Attempt::Failed)?;
    // overlayfs resolves the layers' paths when it mounts: absolute, whatever the caller's cwd.
    let absolute = |p: &Path| std::path::absolute(p).map_err(|e| failed("resolve", p, e));
    let options = options(golden, &absolute(&upper)?, &absolute(&work)?);
    mount(
        Some("overlay"),
        dst,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_os_str()),
    )
    .map_err(|e| Attempt::Refused(format!("mount of an overlay at {} failed: {e}", dst.display())))
}

/// The mount data: `lowerdir=…,upperdir=…,workdir=…`, with `,` `:` and `\` in the paths escaped
/// by a backslash, as overlayfs reads them (`,` separates options, `:` lower layers).
pub(crate) fn options(lower: &Path, upper: &Path, work: &Path) -> OsString {
    let mut out = Vec::new();
    for (i, (key, path)) in [("lowerdir=", lower), ("upperdir=", upper), ("workdir=", work)]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(key.as_bytes());
        for &b in path.as_os_str().as_bytes() {
            if matches!(b, b',' | b':' | b'\\') {
                out.push(b'\\');
            }
            out.push(b);
        }
    }
    OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn the_private_folder_is_beside_the_clone() {
        assert_eq!(
            private_dir(Path::new("/ws/pg-1")),
            Some(PathBuf::from("/ws/pg-1.overlay"))
        );
        assert_eq!(private_dir(Path::new("rel/x")), Some(PathBuf::from("rel/x.overlay")));
        assert_eq!(private_dir(Path::new("/")), None);
        assert_eq!(private_dir(Path::new("a/..")), None);
    }

    #[test]
    fn option_separators_in_paths_are_escaped() {
        assert_eq!(
            options(
                Path::new("/g,old:en"),
                Path::new("/d.overlay/upper"),
                Path::new("/d\\x.overlay/work")
            ),
            OsStr::new("lowerdir=/g\\,old\\:en,upperdir=/d.overlay/upper,workdir=/d\\\\x.overlay/work")
        );
    }
}
