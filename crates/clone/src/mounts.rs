//! What is mounted where, from `/proc/self/mountinfo`, and unmounting: a plain unmount, retried
//! while busy, then a lazy one as the last resort.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};

use crate::CloneError;

/// One line of mountinfo, the two fields used here.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Mount {
    pub point: PathBuf,
    pub fstype: String,
}

/// Parses `/proc/self/mountinfo` (proc(5)): the mount point is the fifth field, with space, tab,
/// newline and backslash written as octal escapes; the filesystem type follows the ` - `
/// separator. Lines that do not parse are skipped.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let point = before.split(' ').nth(4)?;
            let fstype = after.split(' ').next()?;
            Some(Mount {
                point: PathBuf::from(unescape(point)),
                fstype: fstype.to_string(),
            })
        })
        .collect()
}

/// Undoes mountinfo's `\ooo` octal escapes.
fn unescape(field: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) && d[0] <= b'3');
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out)
}

/// `path` as mountinfo writes mount points: absolute, symlinks resolved where it exists.
pub(crate) fn resolved(path: &Path) -> PathBuf {
    path.canonicalize()
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// The mounts at `path` or below it, the deepest (and, at one point, the newest) first: the
/// order to unmount them in. Empty when mountinfo cannot be read.
pub(crate) fn at_or_under(path: &Path) -> Vec<Mount> {
    let root = resolved(path);
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<Mount> = parse_mountinfo(&text)
        .into_iter()
        .filter(|m| m.point.starts_with(&root))
        .collect();
    found.reverse(); // mountinfo lists a mount before the ones stacked on it
    found.sort_by_key(|m| std::cmp::Reverse(m.point.components().count()));
    found
}

/// Unmounts `point`: a plain unmount, retried for about a second while it is busy (a process
/// still in the clone), then a lazy one (detached now, released when no longer used).
pub(crate) fn unmount(point: &Path) -> Result<(), CloneError> {
    let mut last = Errno::EBUSY;
    for attempt in 0..5 {
        match umount2(point, MntFlags::empty()) {
            // EINVAL: no longer a mount point (someone else unmounted it).
            Ok(()) | Err(Errno::EINVAL) => return Ok(()),
            Err(Errno::EBUSY) if attempt < 4 => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => {
                last = e;
                break;
            }
        }
    }
    tracing::warn!(point = %point.display(), error = %last, "unmount failed; unmounting lazily");
    match umount2(point, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) => Ok(()),
        Err(e) => Err(CloneError::StillMounted {
            path: point.into(),
            reason: format!("unmount: {last}; lazy unmount: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_gives_mount_points_unescaped_and_their_types() {
        let text = "\
22 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
98 22 0:51 / /tmp/a\\040b\\134c rw,relatime shared:50 - tmpfs tmpfs rw,size=1024k
99 98 0:52 / /tmp/a\\040b\\134c/dst rw,relatime shared:51 - overlay overlay rw,lowerdir=/g
not a mountinfo line
";
        assert_eq!(
            parse_mountinfo(text),
            vec![
                Mount {
                    point: "/".into(),
                    fstype: "ext4".into()
                },
                Mount {
                    point: "/tmp/a b\\c".into(),
                    fstype: "tmpfs".into()
                },
                Mount {
                    point: "/tmp/a b\\c/dst".into(),
                    fstype: "overlay".into()
                },
            ]
        );
    }

    #[test]
    fn a_backslash_not_followed_by_an_octal_byte_stays() {
        assert_eq!(unescape("a\\x\\12"), "a\\x\\12");
        assert_eq!(unescape("\\011\\012"), "\t\n");
    }
}
