//! What the tests share: filesystems made and torn down by a guard (an XFS image on a loop
//! device, a tmpfs), a golden tree shaped like a PostgreSQL data directory, and the checks a
//! clone must pass against it.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use resurgo_clone::Method;

/// The user PostgreSQL data is owned by in the tests.
pub const NOBODY: u32 = 65534;

/// Runs a command, panicking with its output when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{program}`: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fails (never skips) when a program the tests need is missing, naming its Debian package.
pub fn need(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| dir.join(program).is_file());
    assert!(
        found,
        "`{program}` not found: install the Debian package {package} (scripts/test.sh does)"
    );
}

/// Unmounts `mnt` and everything below it; lazily if it is busy (a test failed mid-way).
fn unmount_tree(mnt: &Path) {
    let mnt = mnt.to_str().unwrap();
    let ok = Command::new("umount")
        .args(["-R", mnt])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = Command::new("umount").args(["-l", mnt]).status();
    }
}

/// An XFS filesystem with reflink on a loop device over an image in a temp folder, mounted at
/// `mnt`; unmounted and detached when dropped, also when the test fails.
pub struct Xfs {
    pub mnt: PathBuf,
    device: String,
    _dir: tempfile::TempDir,
}

impl Xfs {
    pub fn new(size: u64) -> Xfs {
        need("mkfs.xfs", "xfsprogs");
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("xfs.img");
        fs::File::create(&image).unwrap().set_len(size).unwrap();
        let image = image.to_str().unwrap();
        run("mkfs.xfs", &["-q", "-m", "reflink=1", image]);
        let device = run("losetup", &["--find", "--show", image]).trim().to_string();
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        let xfs = Xfs { mnt, device, _dir: dir };
        run("mount", &[&xfs.device, xfs.mnt.to_str().unwrap()]);
        xfs
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        unmount_tree(&self.mnt);
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

/// A tmpfs (no reflink) mounted in a temp folder; unmounted when dropped.
pub struct Tmpfs {
    pub mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn new(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("tmpfs");
        fs::create_dir(&mnt).unwrap();
        let options = format!("size={size},mode=0755");
        run(
            "mount",
            &["-t", "tmpfs", "-o", &options, "tmpfs", mnt.to_str().unwrap()],
        );
        Tmpfs { mnt, _dir: dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        unmount_tree(&self.mnt);
    }
}

/// Free bytes of the filesystem holding `path`, after writing back what is dirty.
pub fn free_bytes(path: &Path) -> u64 {
    nix::unistd::sync();
    let st = nix::sys::statvfs::statvfs(path).unwrap();
    st.blocks_free() * st.fragment_size()
}

/// Deterministic bytes that do not compress or deduplicate.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The seed of `big.dat`'s content.
pub const BIG_SEED: u64 = 0x5eed;

/// A golden tree at `root`, like a PostgreSQL data directory: the root 0750 and `base` 0700,
/// owned by nobody; `big.dat` of `big` bytes; a set-user-ID script (chown clears that bit);
/// a file owned by root; an empty file; a symlink and a dangling one; a fifo and a socket; every
/// entry with an old modification time of its own, nanoseconds included. Returns the logical
/// bytes of its regular files.
pub fn make_golden(root: &Path, big: usize) -> u64 {
    fs::create_dir(root).unwrap();
    let file = |rel: &str, content: &[u8], mode: u32, uid: u32| {
        let path = root.join(rel);
        fs::File::create(&path).unwrap().write_all(content).unwrap();
        std::os::unix::fs::chown(&path, Some(uid), Some(uid)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    };
    let dir = |rel: &str, mode: u32| {
        let path = root.join(rel);
        if rel != "." {
            fs::create_dir(&path).unwrap();
        }
        std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    };
    dir(".", 0o750);
    dir("base", 0o700);
    dir("base/1", 0o700);
    dir("pg_wal", 0o700);
    file("PG_VERSION", b"15\n", 0o600, NOBODY);
    file("base/1/16384", &noise(7, 256 << 10), 0o600, NOBODY);
    file("pg_wal/000000010000000000000001", &noise(9, 1 << 20), 0o600, NOBODY);
    file("big.dat", &noise(BIG_SEED, big), 0o640, NOBODY);
    file("run.sh", b"#!/bin/sh\necho hi\n", 0o4755, NOBODY);
    file("owned-by-root", b"root's\n", 0o644, 0);
    file("empty", b"", 0o600, NOBODY);
    std::os::unix::fs::symlink("base/1/16384", root.join("link")).unwrap();
    std::os::unix::fs::lchown(root.join("link"), Some(NOBODY), Some(NOBODY)).unwrap();
    std::os::unix::fs::symlink("no/such/file", root.join("dangling")).unwrap();
    nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o640)).unwrap();
    std::os::unix::fs::chown(root.join("fifo"), Some(NOBODY), Some(NOBODY)).unwrap();
    drop(std::os::unix::net::UnixListener::bind(root.join(".s.PGSQL.5432")).unwrap());
    // Old times, one per entry, deepest first so a folder's is set after its entries.
    let mut entries = Vec::new();
    walk(root, Path::new(""), &mut entries);
    entries.sort_by_key(|rel| std::cmp::Reverse(rel.components().count()));
    for (i, rel) in entries.iter().enumerate() {
        let at = TimeSpec::new(1_000_000_000 + i as i64 * 1000, 123_456_789 + i as i64);
        let mtime = TimeSpec::new(1_000_000_000 + i as i64 * 1000 + 7, 987_654_321 - i as i64);
        utimensat(
            nix::fcntl::AT_FDCWD,
            &root.join(rel),
            &at,
            &mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }
    (3 + (256 << 10) + (1 << 20) + big + 18 + 7) as u64
}

/// Every entry under `root` (relative; `""` is the root), in name order.
fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    out.push(rel.to_path_buf());
    let mut names: Vec<_> = fs::read_dir(root.join(rel))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let child = rel.join(name);
        if fs::symlink_metadata(root.join(&child)).unwrap().is_dir() {
            walk(root, &child, out);
        } else {
            out.push(child);
        }
    }
}

fn same_content(a: &Path, b: &Path) -> bool {
    let (mut a, mut b) = (fs::File::open(a).unwrap(), fs::File::open(b).unwrap());
    let (mut x, mut y) = (vec![0; 1 << 20], vec![0; 1 << 20]);
    loop {
        let n = a.read(&mut x).unwrap();
        let mut m = 0;
        while m < n {
            let k = b.read(&mut y[m..n]).unwrap();
            if k == 0 {
                return false;
            }
            m += k;
        }
        if x[..n] != y[..n] {
            return false;
        }
        if n == 0 {
            return b.read(&mut y).unwrap() == 0;
        }
    }
}

/// Asserts `clone` is `golden` entry for entry: type, permission bits, owner, modification
/// time, size and bytes of files, symlink targets. A clone by reflink or copy leaves out
/// sockets; an overlay shows them.
pub fn assert_same_tree(golden: &Path, clone: &Path, method: Method) {
    let mut in_golden = Vec::new();
    walk(golden, Path::new(""), &mut in_golden);
    in_golden.retain(|rel| {
        let socket = fs::symlink_metadata(golden.join(rel)).unwrap().file_type().is_socket();
        !(socket && method != Method::Overlay)
    });
    let mut in_clone = Vec::new();
    walk(clone, Path::new(""), &mut in_clone);
    assert_eq!(in_clone, in_golden, "the clone's entries");
    for rel in &in_golden {
        let (g, c) = (golden.join(rel), clone.join(rel));
        let (gm, cm) = (fs::symlink_metadata(&g).unwrap(), fs::symlink_metadata(&c).unwrap());
        let what = |field: &str| format!("{field} of {} ({method})", c.display());
        assert_eq!(cm.file_type(), gm.file_type(), "{}", what("type"));
        if !gm.file_type().is_symlink() {
            assert_eq!(cm.mode() & 0o7777, gm.mode() & 0o7777, "{}", what("mode"));
        }
        assert_eq!((cm.uid(), cm.gid()), (gm.uid(), gm.gid()), "{}", what("owner"));
        assert_eq!(
            (cm.mtime(), cm.mtime_nsec()),
            (gm.mtime(), gm.mtime_nsec()),
            "{}",
            what("mtime")
        );
        if gm.is_file() {
            assert_eq!(cm.len(), gm.len(), "{}", what("size"));
            assert!(same_content(&g, &c), "{}", what("content"));
        }
        if gm.file_type().is_symlink() {
            assert_eq!(
                fs::read_link(&c).unwrap(),
                fs::read_link(&g).unwrap(),
                "{}",
                what("target")
            );
        }
    }
}

/// Writes to the clone (overwrites, appends, creates, deletes, chmods) and asserts each shows
/// in the clone and none in the golden.
pub fn assert_writes_stay_in_clone(golden: &Path, clone: &Path) {
    let head = noise(BIG_SEED, 4096);
    let mut big = fs::OpenOptions::new().write(true).open(clone.join("big.dat")).unwrap();
    big.write_all(&[0xAA; 4096]).unwrap();
    big.sync_all().unwrap();
    drop(big);
    fs::OpenOptions::new()
        .append(true)
        .open(clone.join("PG_VERSION"))
        .unwrap()
        .write_all(b"changed\n")
        .unwrap();
    fs::write(clone.join("base/new"), b"new").unwrap();
    fs::remove_file(clone.join("base/1/16384")).unwrap();
    fs::set_permissions(clone.join("base"), fs::Permissions::from_mode(0o755)).unwrap();

    let mut first = vec![0; 4096];
    fs::File::open(clone.join("big.dat"))
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    assert_eq!(first, vec![0xAA; 4096], "the clone's write");
    fs::File::open(golden.join("big.dat"))
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    assert_eq!(first, head, "the golden's big.dat after a write to the clone");
    assert_eq!(fs::read(golden.join("PG_VERSION")).unwrap(), b"15\n");
    assert_eq!(fs::read(clone.join("PG_VERSION")).unwrap(), b"15\nchanged\n");
    assert!(!golden.join("base/new").exists());
    assert!(golden.join("base/1/16384").exists());
    assert!(!clone.join("base/1/16384").exists());
    assert_eq!(fs::metadata(golden.join("base")).unwrap().mode() & 0o7777, 0o700);
}

/// Asserts nothing is left of a clone at `dst`: no leftovers, not in mountinfo.
pub fn assert_nothing_left(dst: &Path) {
    assert_eq!(resurgo_clone::leftovers(dst), Vec::<String>::new());
    assert!(!resurgo_clone::is_mount(dst));
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(dst.to_str().unwrap()),
        "{} still in mountinfo:\n{mountinfo}",
        dst.display()
    );
    assert!(!dst.exists());
    let mut private = dst.as_os_str().to_os_string();
    private.push(".overlay");
    assert!(!Path::new(&private).exists());
}
