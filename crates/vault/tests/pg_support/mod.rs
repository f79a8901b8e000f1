//! Test harness for PostgreSQL: real clusters made with initdb in temp folders, each on its
//! own port on 127.0.0.1, run as an unprivileged user when the tests run as root
//! (PostgreSQL refuses root), stopped when dropped; the test binary itself as
//! archive_command / restore_command; a canary write load that records when each write was
//! acknowledged.

#![allow(dead_code)]

pub mod wire;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use resurgo_vault::pg::{self, PgTarget};
use resurgo_vault::{RepoConfig, Repository, S3Credentials};

/// The user clusters run as: `nobody` when the tests run as root, else the current user.
#[derive(Debug, Clone)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

fn euid() -> u32 {
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX)
}

pub fn run_as() -> Option<&'static RunAs> {
    static RUN_AS: OnceLock<Option<RunAs>> = OnceLock::new();
    RUN_AS
        .get_or_init(|| {
            if euid() != 0 {
                return None;
            }
            let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
            let nobody = passwd
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.first() == Some(&"nobody"))
                .expect("user `nobody` exists");
            Some(RunAs {
                uid: nobody[2].parse().unwrap(),
                gid: nobody[3].parse().unwrap(),
            })
        })
        .as_ref()
}

/// Process-wide set-up, once: a umask that lets the unprivileged user read and write what
/// the tests (root) create in repositories.
pub fn setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if run_as().is_some() {
            nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        }
    });
}

/// Heavy tests (clusters under load, timing figures) run one at a time.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A command run as the cluster user.
pub fn as_user(program: impl AsRef<std::ffi::OsStr>) -> Command {
    match run_as() {
        Some(u) => {
            let mut cmd = Command::new("setpriv");
            cmd.arg(format!("--reuid={}", u.uid))
                .arg(format!("--regid={}", u.gid))
                .arg("--clear-groups")
                .arg("--")
                .arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Makes `path` belong to the cluster user.
pub fn give(path: &Path) {
    if let Some(u) = run_as() {
        std::os::unix::fs::chown(path, Some(u.uid), Some(u.gid)).unwrap();
    }
}

/// A folder for one test, open to the cluster user.
pub fn temp_root() -> tempfile::TempDir {
    setup();
    let keep = std::env::var_os("RESURGO_TEST_KEEP").is_some();
    let dir = tempfile::Builder::new()
        .prefix("resurgo-pg-")
        .disable_cleanup(keep)
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

pub fn mkdir_for_user(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
    give(path);
    path.to_path_buf()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn check(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One PostgreSQL cluster in `dir`.
pub struct Cluster {
    pub name: String,
    pub dir: PathBuf,
    pub pgdata: PathBuf,
    pub port: u16,
    running: AtomicBool,
}

impl Cluster {
    /// A new cluster (initdb, superuser `postgres`, trust on loopback).
    pub fn init(root: &Path, name: &str) -> Cluster {
        let cluster = Cluster::adopt(root, name);
        check(
            as_user(pg::program("initdb").unwrap())
                .arg("-D")
                .arg(&cluster.pgdata)
                .args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-instructions",
                ]),
            "initdb",
        );
        cluster.append_conf(
            "shared_buffers = 32MB\nmax_connections = 40\nfsync = on\nwal_level = replica\n\
             log_line_prefix = '%m [%p] '\nlog_checkpoints = off\n",
        );
        cluster
    }

    /// A cluster whose data folder (`root/name/data`, empty, owned by the cluster user) is
    /// filled by someone else: a restore, a standby build.
    pub fn adopt(root: &Path, name: &str) -> Cluster {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        give(&dir);
        let pgdata = dir.join("data");
        mkdir_for_user(&pgdata);
        Cluster {
            name: name.to_string(),
            dir,
            pgdata,
            port: free_port(),
            running: AtomicBool::new(false),
        }
    }

    pub fn append_conf(&self, text: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.pgdata.join("postgresql.conf"))
            .unwrap();
        writeln!(f, "{text}").unwrap();
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts the server; with `wait`, until it accepts connections (or, recovering, is
    /// consistent).
    pub fn start(&self) {
        let out = as_user(pg::program("pg_ctl").unwrap())
            .arg("-D")
            .arg(&self.pgdata)
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "120", "-o"])
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{}'",
                self.port,
                self.dir.display()
            ))
            .arg("start")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        self.running.store(true, Ordering::SeqCst);
        assert!(
            out.status.success(),
            "pg_ctl start {} failed: {}\n--- server log ---\n{}",
            self.name,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// The site is lost: the server dies at once, nothing is flushed or archived.
    pub fn kill(&self) {
        if self.running.swap(false, Ordering::SeqCst) {
            let _ = as_user(pg::program("pg_ctl").unwrap())
                .arg("-D")
                .arg(&self.pgdata)
                .args(["-m", "immediate", "-w", "stop"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    pub fn restart(&self) {
        check(
            as_user(pg::program("pg_ctl").unwrap())
                .arg("-D")
                .arg(&self.pgdata)
                .args(["-m", "fast", "-w", "stop"]),
            "pg_ctl stop",
        );
        self.running.store(false, Ordering::SeqCst);
        self.start();
    }

    pub fn target(&self) -> PgTarget {
        PgTarget::new("127.0.0.1", self.port, "postgres", "postgres")
    }

    pub fn query(&self, sql: &str) -> String {
        pg::query(&self.target(), sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}\n--- {} log ---\n{}", self.name, self.log()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A repository for a test, usable by the cluster user too.
pub fn repository(root: &Path, name: &str) -> (Repository, RepoConfig) {
    let config = RepoConfig {
        url: format!("file://{}", root.join(name).display()),
        password: format!("{name}-password"),
        s3: S3Credentials::default(),
    };
    let repo = Repository::init(&config).unwrap();
    (repo, config)
}

// ---------------------------------------------------------------------------------------------
// The test binary as archive_command / restore_command.

/// What `wal_entry` (an ignored `#[test]` in pg.rs that does nothing unless asked) does when a
/// script below runs the test binary for PostgreSQL: push or fetch one file, then exit the
/// process with the status `resurgo wal push|fetch` would.
pub fn wal_entry_if_asked() {
    let Ok(mode) = std::env::var("RESURGO_TEST_WAL") else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let started = Instant::now();
    let config = RepoConfig {
        url: var("RESURGO_TEST_REPO"),
        password: std::fs::read_to_string(var("RESURGO_TEST_PASSWORD_FILE")).unwrap_or_default(),
        s3: S3Credentials::default(),
    };
    let stream = var("RESURGO_TEST_STREAM");
    let (arg1, arg2) = (var("RESURGO_TEST_ARG1"), var("RESURGO_TEST_ARG2"));
    // What `resurgo wal push|fetch` does: open the repository (scrypt) for every file.
    let opened = Repository::open(&config).map(|repo| repo.archive());
    let open_time = started.elapsed();
    let (code, outcome) = match (mode.as_str(), opened) {
        ("push", Ok(archive)) => {
            let r = pg::wal_push(&archive, &stream, Path::new(&arg1));
            (pg::wal_push_status(&r), format!("{r:?}"))
        }
        ("push", Err(e)) => (pg::PUSH_FAILED, format!("{e}")),
        (_, Ok(archive)) => {
            let r = pg::wal_fetch(&archive, &stream, &arg1, Path::new(&arg2));
            (pg::wal_fetch_status(&r), format!("{r:?}"))
        }
        (_, Err(e)) => (pg::FETCH_FAILED, format!("{e}")),
    };
    let name = Path::new(&arg1)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let line = format!(
        "{:.3} {mode} {name} exit={code} open={}ms total={}ms {outcome}\n",
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64(),
        open_time.as_millis(),
        started.elapsed().as_millis()
    );
    if code != 0 && !(mode == "fetch" && code == pg::FETCH_MISSING) {
        eprintln!("resurgo test wal {mode}: {line}");
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(var("RESURGO_TEST_WAL_LOG"))
    {
        use std::io::Write;
        let _ = f.write_all(line.as_bytes());
    }
    std::process::exit(i32::from(code));
}

/// The test binary, where the cluster user can run it.
fn test_exe(root: &Path) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let reachable = as_user("test").arg("-x").arg(&exe).status().is_ok_and(|s| s.success());
    if reachable {
        return exe;
    }
    let copy = root.join("test-exe");
    std::fs::copy(&exe, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

/// Where archive_command and restore_command go: scripts that run the test binary's
/// `wal_entry` against `config`'s repository and stream `stream`.
pub struct WalCommands {
    pub archive_command: String,
    pub restore_command: String,
    pub log: PathBuf,
}

pub fn wal_commands(root: &Path, name: &str, config: &RepoConfig, stream: &str) -> WalCommands {
    let dir = root.join(format!("wal-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let password_file = dir.join("password");
    std::fs::write(&password_file, &config.password).unwrap();
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    give(&password_file);
    let home = mkdir_for_user(&dir.join("home"));
    let log = dir.join("wal.log");
    std::fs::write(&log, "").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
    let exe = test_exe(root);
    let script = |mode: &str| {
        let path = dir.join(format!("wal-{mode}.sh"));
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nRESURGO_TEST_WAL={mode} RESURGO_TEST_REPO='{}' RESURGO_TEST_PASSWORD_FILE='{}' \
                 RESURGO_TEST_STREAM='{stream}' RESURGO_TEST_WAL_LOG='{}' HOME='{}' \
                 RESURGO_TEST_ARG1=\"$1\" RESURGO_TEST_ARG2=\"$2\" \
                 exec '{}' wal_entry --exact --ignored --quiet --nocapture --test-threads=1 >/dev/null\n",
                config.url,
                password_file.display(),
                log.display(),
                home.display(),
                exe.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    };
    let push = script("push");
    let fetch = script("fetch");
    WalCommands {
        archive_command: format!("'{}' \"%p\"", push.display()),
        restore_command: format!("'{}' \"%f\" \"%p\"", fetch.display()),
        log,
    }
}

// ---------------------------------------------------------------------------------------------
// The canary write load.

/// One acknowledged write.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    pub id: i64,
    pub at: SystemTime,
}

/// A thread inserting `(id, payload, inserted_at)` rows one by one in autocommit, every
/// `pace`, recording each acknowledged id and when it was acknowledged. Stops at the first
/// error (the server is gone) or when asked.
pub struct Load {
    acks: Arc<Mutex<Vec<Ack>>>,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    /// Increments each time the thread is idle because paused: proof nothing is in flight.
    idle_ticks: Arc<AtomicU64>,
    handle: Option<JoinHandle<Option<String>>>,
}

pub const CANARY_TABLE: &str = "CREATE TABLE canary (id bigint PRIMARY KEY, payload text NOT NULL, \
     inserted_at timestamptz NOT NULL DEFAULT clock_timestamp())";

impl Load {
    pub fn start(port: u16, pace: Duration) -> Load {
        let acks = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let idle_ticks = Arc::new(AtomicU64::new(0));
        let (a, s, p, t) = (acks.clone(), stop.clone(), paused.clone(), idle_ticks.clone());
        let handle = std::thread::spawn(move || {
            let mut client = match wire::Client::connect(port, "postgres", "postgres") {
                Ok(c) => c,
                Err(e) => return Some(e),
            };
            let mut id = 0i64;
            while !s.load(Ordering::SeqCst) {
                if p.load(Ordering::SeqCst) {
                    t.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                id += 1;
                let sql = format!(
                    "INSERT INTO canary (id, payload) VALUES ({id}, 'row {id} {}')",
                    "x".repeat(100)
                );
                match client.query(&sql) {
                    Ok(_) => a.lock().unwrap().push(Ack {
                        id,
                        at: SystemTime::now(),
                    }),
                    Err(e) => return Some(e),
                }
                std::thread::sleep(pace);
            }
            None
        });
        Load {
            acks,
            stop,
            paused,
            idle_ticks,
            handle: Some(handle),
        }
    }

    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.acks.lock().unwrap().len()
    }

    /// Waits (with a deadline) until `n` writes in all were acknowledged.
    pub fn wait_for_count(&self, n: usize, timeout: Duration) {
        poll(&format!("{n} acknowledged writes"), timeout, || self.count() >= n);
    }

    /// Pauses and returns once no write is in flight.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        let seen = self.idle_ticks.load(Ordering::SeqCst);
        poll("the load to pause", Duration::from_secs(30), || {
            self.idle_ticks.load(Ordering::SeqCst) > seen
        });
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Stops (or sees it stopped by an error); all acknowledged writes, and the error.
    pub fn finish(mut self) -> (Vec<Ack>, Option<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let error = self.handle.take().unwrap().join().unwrap();
        (self.acks(), error)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Polls `cond` until true, panicking after `timeout`.
pub fn poll(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Seconds since the epoch.
pub fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// A moment as RFC 3339 UTC with microseconds.
pub fn rfc3339(t: SystemTime) -> String {
    let t = rustic_core::jiff::Timestamp::try_from(t).expect("a representable time");
    t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}
