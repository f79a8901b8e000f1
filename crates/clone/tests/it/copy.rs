//! The full copy: asked for alone, or reached when reflink is refused and overlay is not
//! allowed; it keeps types, modes, owners and times, and its writes stay out of the golden.

use resurgo_clone::{clone_tree, remove, Method};

use crate::support::{assert_nothing_left, assert_same_tree, assert_writes_stay_in_clone, make_golden, Tmpfs};

#[test]
fn copy_alone_copies_everything() {
    let tmpfs = Tmpfs::new("64m");
    let golden = tmpfs.mnt.join("golden");
    let bytes = make_golden(&golden, 4 << 20);
    let dst = tmpfs.mnt.join("ws");

    let cloned = clone_tree(&golden, &dst, &[Method::Copy]).unwrap();
    assert_eq!(cloned.method, Method::Copy);
    assert_eq!(cloned.bytes, bytes);
    assert!(!resurgo_clone::is_mount(&dst));
    assert_same_tree(&golden, &dst, Method::Copy);
    assert_writes_stay_in_clone(&golden, &dst);
    eprintln!("tmpfs, {bytes} bytes: copy {:?}", cloned.took);

    remove(&dst).unwrap();
    assert_nothing_left(&dst);
}

#[test]
fn reflink_refused_and_overlay_not_allowed_gives_a_copy() {
    let tmpfs = Tmpfs::new("64m");
    let golden = tmpfs.mnt.join("golden");
    make_golden(&golden, 1 << 20);
    let dst = tmpfs.mnt.join("ws");

    let cloned = clone_tree(&golden, &dst, &[Method::Reflink, Method::Copy]).unwrap();
    assert_eq!(cloned.method, Method::Copy);
    assert_same_tree(&golden, &dst, Method::Copy);
    remove(&dst).unwrap();
    assert_nothing_left(&dst);
}
