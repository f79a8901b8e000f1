//! Reflink on XFS (`reflink=1`): the default order picks it, the clone keeps everything and
//! shares the golden's extents (free space barely moves, where a full copy of the same tree
//! takes its size); a refusal midway leaves nothing behind.

use std::fs;

use resurgo_clone::{clone_tree, leftovers, remove, Method};

use crate::support::{
    assert_nothing_left, assert_same_tree, assert_writes_stay_in_clone, free_bytes, make_golden, run, Xfs,
};

const MIB: u64 = 1 << 20;

#[test]
fn on_xfs_the_default_order_reflinks_and_shares_extents() {
    let xfs = Xfs::new(512 * MIB);
    let golden = xfs.mnt.join("golden");
    let bytes = make_golden(&golden, 64 << 20);

    let dst = xfs.mnt.join("ws-reflink");
    let before = free_bytes(&xfs.mnt);
    let cloned = clone_tree(&golden, &dst, &Method::ALL).unwrap();
    let used = before.saturating_sub(free_bytes(&xfs.mnt));
    assert_eq!(cloned.method, Method::Reflink);
    assert_eq!(cloned.bytes, bytes);
    assert!(
        used < 4 * MIB,
        "a reflinked clone of {bytes} bytes took {used} bytes of free space"
    );
    assert_same_tree(&golden, &dst, Method::Reflink);
    assert_writes_stay_in_clone(&golden, &dst);

    // The same tree copied: the control for the free-space measure, and the time to beat.
    let copy = xfs.mnt.join("ws-copy");
    let before = free_bytes(&xfs.mnt);
    let copied = clone_tree(&golden, &copy, &[Method::Copy]).unwrap();
    let writeback = std::time::Instant::now();
    let used_by_copy = before.saturating_sub(free_bytes(&xfs.mnt));
    let writeback = writeback.elapsed();
    assert_eq!(copied.method, Method::Copy);
    assert!(
        used_by_copy >= 64 * MIB,
        "a full copy of {bytes} bytes took only {used_by_copy} bytes of free space"
    );
    assert_same_tree(&golden, &copy, Method::Copy);
    eprintln!(
        "XFS, {:.1} MiB tree: reflink {:?} ({} KiB of free space), copy {:?} + {:?} to write \
         back ({} KiB)",
        bytes as f64 / MIB as f64,
        cloned.took,
        used >> 10,
        copied.took,
        writeback,
        used_by_copy >> 10
    );

    for dst in [&dst, &copy] {
        assert!(!leftovers(dst).is_empty());
        remove(dst).unwrap();
        assert_nothing_left(dst);
    }
    assert_eq!(fs::read(golden.join("PG_VERSION")).unwrap(), b"15\n");
}

/// The golden copy spans two filesystems: its `zz` folder is a tmpfs, so the first files
/// reflink and the one under `zz` is refused (EXDEV). What was made is removed.
#[test]
fn a_reflink_refused_midway_leaves_nothing_and_falls_through() {
    let xfs = Xfs::new(512 * MIB);
    let golden = xfs.mnt.join("golden");
    fs::create_dir_all(golden.join("a/b")).unwrap();
    fs::write(golden.join("a/b/first"), b"reflinked").unwrap();
    fs::write(golden.join("second"), b"reflinked").unwrap();
    fs::create_dir(golden.join("zz")).unwrap();
    let _tmpfs_guard = TmpfsAt::mount(&golden.join("zz"));
    fs::write(golden.join("zz/on-tmpfs"), b"refused").unwrap();

    let dst = xfs.mnt.join("ws");
    let err = clone_tree(&golden, &dst, &[Method::Reflink]).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("reflink: FICLONE of"), "{message}");
    assert!(message.contains("zz/on-tmpfs"), "{message}");
    assert_nothing_left(&dst);

    let cloned = clone_tree(&golden, &dst, &[Method::Reflink, Method::Copy]).unwrap();
    assert_eq!(cloned.method, Method::Copy);
    assert_eq!(fs::read(dst.join("zz/on-tmpfs")).unwrap(), b"refused");
    assert_eq!(fs::read(dst.join("a/b/first")).unwrap(), b"reflinked");
    remove(&dst).unwrap();
    assert_nothing_left(&dst);
}

/// A tmpfs mounted on a folder that already exists; unmounted when dropped.
struct TmpfsAt(std::path::PathBuf);

impl TmpfsAt {
    fn mount(at: &std::path::Path) -> TmpfsAt {
        run(
            "mount",
            &["-t", "tmpfs", "-o", "size=1m", "tmpfs", at.to_str().unwrap()],
        );
        TmpfsAt(at.into())
    }
}

impl Drop for TmpfsAt {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
