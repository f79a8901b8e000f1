//! What clone_tree refuses, and what a failed attempt leaves: each error names the path and
//! what failed, and nothing of a failed clone stays behind.

use std::fs;
use std::path::Path;

use resurgo_clone::{clone_tree, leftovers, CloneError, Method};

use crate::support::{assert_nothing_left, noise, Tmpfs};

fn small_golden(root: &Path) {
    fs::create_dir_all(root.join("a/b/c")).unwrap();
    fs::write(root.join("a/b/c/file"), b"golden").unwrap();
}

#[test]
fn an_existing_destination_is_named_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let golden = dir.path().join("golden");
    small_golden(&golden);
    let dst = dir.path().join("ws");
    fs::create_dir(&dst).unwrap();
    fs::write(dst.join("mine"), b"keep").unwrap();

    let err = clone_tree(&golden, &dst, &Method::ALL).unwrap_err();
    assert!(matches!(err, CloneError::Exists { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("clone destination {} already exists", dst.display())
    );
    assert_eq!(fs::read(dst.join("mine")).unwrap(), b"keep");

    // An overlay's private folder left beside a destination is in the way too.
    let other = dir.path().join("other");
    fs::create_dir(dir.path().join("other.overlay")).unwrap();
    let err = clone_tree(&golden, &other, &Method::ALL).unwrap_err();
    assert!(err.to_string().contains("other.overlay already exists"), "{err}");
    assert!(!other.exists());
}

#[test]
fn a_missing_golden_copy_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let golden = dir.path().join("no-such-golden");
    let dst = dir.path().join("ws");
    let err = clone_tree(&golden, &dst, &Method::ALL).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "golden copy {}: No such file or directory (os error 2)",
            golden.display()
        )
    );
    assert!(!err.is_transient());
    assert!(!dst.exists());

    fs::write(&golden, b"a file").unwrap();
    let err = clone_tree(&golden, &dst, &Method::ALL).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("golden copy {}: not a folder", golden.display())
    );
}

#[test]
fn a_destination_without_parent_or_inside_the_golden_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let golden = dir.path().join("golden");
    small_golden(&golden);

    let dst = dir.path().join("missing/ws");
    let err = clone_tree(&golden, &dst, &Method::ALL).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("clone destination {}: parent folder", dst.display())),
        "{message}"
    );

    let dst = golden.join("a/ws");
    let err = clone_tree(&golden, &dst, &[Method::Copy]).unwrap_err();
    assert!(err.to_string().contains("inside the golden copy"), "{err}");
    assert!(!dst.exists());

    let err = clone_tree(&golden, &dir.path().join("ws"), &[]).unwrap_err();
    assert!(err.to_string().ends_with(": no method allowed"), "{err}");
}

/// Folders are made before the first file is reached; the refused reflink removes them.
#[test]
fn a_refused_reflink_leaves_no_partial_clone() {
    let tmpfs = Tmpfs::new("16m");
    let golden = tmpfs.mnt.join("golden");
    small_golden(&golden);
    let dst = tmpfs.mnt.join("ws");

    let err = clone_tree(&golden, &dst, &[Method::Reflink]).unwrap_err();
    assert!(matches!(err, CloneError::Refused { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&dst.display().to_string()), "{message}");
    assert!(
        message.contains(&format!("reflink: FICLONE of {}/a/b/c/file refused", golden.display())),
        "{message}"
    );
    assert_nothing_left(&dst);
}

/// A copy that runs out of space fails (it is not a refusal), names the file, and leaves
/// nothing.
#[test]
fn a_failed_copy_names_the_file_and_leaves_nothing() {
    let source = Tmpfs::new("8m");
    let golden = source.mnt.join("golden");
    fs::create_dir(&golden).unwrap();
    fs::write(golden.join("small"), b"fits").unwrap();
    fs::write(golden.join("too-big"), noise(3, 2 << 20)).unwrap();
    let small = Tmpfs::new("1m");
    let dst = small.mnt.join("ws");

    let err = clone_tree(&golden, &dst, &[Method::Reflink, Method::Copy]).unwrap_err();
    assert!(matches!(err, CloneError::Io { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "write {}: No space left on device (os error 28)",
            dst.join("too-big").display()
        )
    );
    assert_eq!(leftovers(&dst), Vec::<String>::new());
    assert!(!dst.exists());
}
