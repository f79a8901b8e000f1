//! overlayfs: the default order on a filesystem without reflink (tmpfs); the clone reads the
//! golden, its writes stay out of it, and `remove` unmounts it (lazily when busy) and leaves
//! nothing. A mount the kernel refuses falls through to a copy.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;

use resurgo_clone::{clone_tree, is_mount, leftovers, remove, Method};

use crate::support::{assert_nothing_left, assert_same_tree, assert_writes_stay_in_clone, make_golden, Tmpfs};

#[test]
fn without_reflink_the_default_order_mounts_an_overlay() {
    let tmpfs = Tmpfs::new("64m");
    let golden = tmpfs.mnt.join("golden");
    let bytes = make_golden(&golden, 4 << 20);
    let dst = tmpfs.mnt.join("ws");

    let cloned = clone_tree(&golden, &dst, &Method::ALL).unwrap();
    assert_eq!(cloned.method, Method::Overlay);
    assert_eq!(cloned.bytes, bytes);
    assert!(is_mount(&dst));
    let overlay_folder = tmpfs.mnt.join("ws.overlay");
    assert_eq!(
        leftovers(&dst),
        [
            format!("overlay mount at {}", dst.display()),
            format!("folder {}", dst.display()),
            format!("overlay folder {}", overlay_folder.display()),
        ]
    );
    // Only root reads the clone's private layers.
    assert_eq!(fs::metadata(&overlay_folder).unwrap().mode() & 0o7777, 0o700);
    assert_same_tree(&golden, &dst, Method::Overlay);
    assert_writes_stay_in_clone(&golden, &dst);
    // The writes went to the upper layer, beside the clone.
    assert_eq!(fs::read(overlay_folder.join("upper/base/new")).unwrap(), b"new");
    eprintln!("tmpfs, {bytes} bytes: overlay {:?}", cloned.took);

    remove(&dst).unwrap();
    assert_nothing_left(&dst);
    remove(&dst).unwrap(); // idempotent
    assert!(golden.join("base/1/16384").exists());
}

#[test]
fn a_busy_overlay_is_unmounted_lazily() {
    let tmpfs = Tmpfs::new("64m");
    let golden = tmpfs.mnt.join("golden");
    make_golden(&golden, 1 << 20);
    let dst = tmpfs.mnt.join("ws");
    assert_eq!(
        clone_tree(&golden, &dst, &[Method::Overlay]).unwrap().method,
        Method::Overlay
    );
    let mut open = fs::File::open(dst.join("PG_VERSION")).unwrap();

    remove(&dst).unwrap();
    assert_nothing_left(&dst);
    // The process that held it keeps reading what it had open.
    let mut content = String::new();
    open.read_to_string(&mut content).unwrap();
    assert_eq!(content, "15\n");
}

/// overlayfs refuses an upper folder on an overlay (EINVAL): cloning into an overlay clone
/// falls through to a copy, and nothing of the overlay attempt is left.
#[test]
fn a_refused_mount_falls_through_to_a_copy() {
    let tmpfs = Tmpfs::new("64m");
    let golden = tmpfs.mnt.join("golden");
    make_golden(&golden, 1 << 20);
    let outer = tmpfs.mnt.join("outer");
    fs::create_dir(tmpfs.mnt.join("empty")).unwrap();
    clone_tree(&tmpfs.mnt.join("empty"), &outer, &[Method::Overlay]).unwrap();

    let inner = outer.join("inner");
    let cloned = clone_tree(&golden, &inner, &Method::ALL).unwrap();
    assert_eq!(cloned.method, Method::Copy);
    assert!(!outer.join("inner.overlay").exists());
    assert_same_tree(&golden, &inner, Method::Copy);

    let err = clone_tree(&golden, &outer.join("again"), &[Method::Overlay]).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("overlay: mount of an overlay at"), "{message}");
    assert_nothing_left(&outer.join("again"));

    // Removing the outer clone takes the inner one with it.
    remove(&outer).unwrap();
    assert_nothing_left(&outer);
}

/// `,` and `:` separate overlay mount options and lower layers: they are escaped.
#[test]
fn paths_with_option_separators_mount() {
    let tmpfs = Tmpfs::new("16m");
    let golden = tmpfs.mnt.join("gold,en:1");
    fs::create_dir(&golden).unwrap();
    fs::write(golden.join("f"), b"golden").unwrap();
    let dst = tmpfs.mnt.join("ws,1:a b");

    let cloned = clone_tree(&golden, &dst, &[Method::Overlay]).unwrap();
    assert_eq!(cloned.method, Method::Overlay);
    assert!(is_mount(&dst));
    assert_eq!(fs::read(dst.join("f")).unwrap(), b"golden");
    remove(&dst).unwrap();
    assert!(!is_mount(&dst));
    assert_eq!(leftovers(&dst), Vec::<String>::new());
}
