//! The per-service supervisor (a "shim", like conmon or containerd-shim): one small process per
//! running service that owns the service's process, copies its output into rotated log files and
//! records how it ended, so that services and their logs outlive the `resurgo` command that
//! started them.
//!
//! The local provider writes `launch.json` into the service's folder and runs
//! `resurgo __shim <service_dir>` ([`SHIM_SUBCOMMAND`]); the CLI hands that to [`run_shim`]. The
//! shim then:
//!
//! 1. leaves the caller's session (`setsid`), so terminal hang-ups and Ctrl-C do not reach it;
//! 2. reads `launch.json` and deletes it at once (it holds resolved secret values), and
//!    becomes the service's `user:` if it names one (groups, group, then user);
//! 3. starts the service in its own process group, stdin from `/dev/null`, output piped;
//! 4. writes `run.json` (pids, start ticks, config hash, start time);
//! 5. copies stdout and stderr into `logs/stdout.log` and `logs/stderr.log`, rotating by size;
//! 6. forwards a SIGTERM it receives to the service's process group, and ignores SIGHUP/SIGINT;
//! 7. when the service exits, writes `exit.json`, ends whatever the service left behind in its
//!    process group (SIGTERM, SIGKILL a second later) and exits itself.
//!
//! It never restarts the service: restarting is the controller's decision.
//!
//! This file also defines the on-disk records the shim and the provider share, and the small
//! helpers both need (`/proc/PID/stat` parsing, RFC 3339 timestamps, atomic writes).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{killpg, SigSet, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use resurgo_coord::BootTime;
use serde::{Deserialize, Serialize};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The hidden CLI subcommand that runs [`run_shim`]: `resurgo __shim <service_dir>`.
pub const SHIM_SUBCOMMAND: &str = "__shim";

/// Written by the provider (mode 0600), read and deleted by the shim.
pub const LAUNCH_FILE: &str = "launch.json";
/// Written by the shim once the service's process exists.
pub const RUN_FILE: &str = "run.json";
/// Written by the shim when the service's process has ended (or could not start).
pub const EXIT_FILE: &str = "exit.json";
/// The folder holding the service's output.
pub const LOG_DIR: &str = "logs";
/// The shim's own messages (its stdout and stderr, set up by the provider).
pub const SHIM_LOG_FILE: &str = "shim.log";

/// How long the shim lets processes the service left behind in its process group end after
/// SIGTERM, before it kills them.
const LEFTOVER_GRACE: Duration = Duration::from_secs(1);

/// Everything the shim needs to start the service. Holds resolved secrets: written with mode
/// 0600 and deleted by the shim as soon as it has been read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Launch {
    pub program: String,
    pub args: Vec<String>,
    /// The service's whole environment; nothing else is inherited.
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub config_hash: String,
    pub restarts: u32,
    pub logs: LogLimits,
    /// The file where the site's agent keeps the time (on the boot clock,
    /// [`resurgo_coord::BootTime`]) until which the site may serve — when it sent its last
    /// successful lease renewal, plus the fencing deadline.
    /// When that time passes while the service runs (the agent died, or cannot renew), the
    /// shim stops the service itself: the fence does not depend on the agent being alive.
    #[serde(default)]
    pub fence_file: Option<PathBuf>,
    /// How long a fenced service gets between SIGTERM and SIGKILL.
    #[serde(default)]
    pub stop_timeout_ms: u64,
    /// The user the service runs as, when not the one the supervisor was started as: the
    /// supervisor becomes it (groups, group, user) before it opens the logs and starts the
    /// service, so nothing it runs keeps root.
    #[serde(default)]
    pub run_as: Option<crate::account::Account>,
    /// A network namespace (`/run/netns/NAME`) the supervisor enters before it starts the
    /// service, so the service sees only that namespace's network (a drill's sandbox).
    #[serde(default)]
    pub netns: Option<PathBuf>,
}

/// The name of a site's fence file (`<site root>/fence-until`), see [`Launch::fence_file`].
pub const FENCE_FILE: &str = "fence-until";

/// The deadline a fence file holds, if it holds one.
fn fence_deadline(path: &Path) -> Option<BootTime> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

/// Size-based rotation of a service's log files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLimits {
    /// A log file is rotated before it would grow past this many bytes.
    pub max_bytes: u64,
    /// How many rotated files are kept (`.1` newest … `.N` oldest).
    pub keep: u32,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            max_bytes: 10 * 1024 * 1024,
            keep: 3,
        }
    }
}

/// `run.json`: the process the shim started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub shim_pid: u32,
    /// The shim's start time in clock ticks since boot, so a recycled pid is not taken for it.
    pub shim_start_ticks: u64,
    pub pid: u32,
    /// Field 22 of `/proc/PID/stat`: with `pid`, identifies the process across pid reuse.
    pub pid_start_ticks: u64,
    pub config_hash: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub restarts: u32,
}

/// `exit.json`: how the service's process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// `exit code 1`, `killed by SIGKILL`, `cannot start: …`.
    pub how: String,
    /// RFC 3339, UTC.
    pub at: String,
}

/// Runs the shim for the service in `service_dir` until the service exits. The CLI's
/// `__shim` subcommand returns this as its exit code.
pub fn run_shim(service_dir: &Path) -> ExitCode {
    match supervise(service_dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("resurgo shim {}: {message}", service_dir.display());
            ExitCode::FAILURE
        }
    }
}

fn supervise(dir: &Path) -> Result<(), String> {
    // Fails only if we lead a process group already, which means the caller gave us our own
    // group: then we are detached enough from its terminal, so go on.
    if let Err(e) = nix::unistd::setsid() {
        eprintln!("resurgo shim: setsid: {e}");
    }
    // Catch (not block) the signals we handle: a blocked mask would be inherited by the service
    // (std does not reset it), while caught signals return to their default on exec. Unblock
    // everything too, in case whoever started us had signals blocked.
    let signals = Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(|e| format!("cannot handle signals: {e}"))?;
    if let Err(e) = SigSet::all().thread_unblock() {
        eprintln!("resurgo shim: cannot unblock signals: {e}");
    }

    let launch_path = dir.join(LAUNCH_FILE);
    let text = fs::read(&launch_path).map_err(|e| format!("cannot read {}: {e}", launch_path.display()));
    // Secrets are in there: delete before anything else can go wrong.
    if let Err(e) = fs::remove_file(&launch_path) {
        eprintln!("resurgo shim: cannot delete {}: {e}", launch_path.display());
    }
    let launch: Launch =
        serde_json::from_slice(&text?).map_err(|e| format!("malformed {}: {e}", launch_path.display()))?;

    // The namespace first: entering one takes privileges the service's user may not have.
    if let Some(netns) = &launch.netns {
        let entered = fs::File::open(netns)
            .map_err(|e| e.to_string())
            .and_then(|ns| nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string()));
        if let Err(e) = entered {
            let how = format!("cannot enter the network namespace {}: {e}", netns.display());
            let _ = write_json_atomic(
                &dir.join(EXIT_FILE),
                &ExitRecord {
                    how: how.clone(),
                    at: rfc3339(SystemTime::now()),
                },
            );
            return Err(how);
        }
    }
    if let Some(account) = &launch.run_as {
        account.become_it().map_err(|e| {
            let how = format!("cannot start `{}` as `{}`: {e}", launch.program, account.name);
            let _ = write_json_atomic(
                &dir.join(EXIT_FILE),
                &ExitRecord {
                    how: how.clone(),
                    at: rfc3339(SystemTime::now()),
                },
            );
            how
        })?;
    }

    let logs = dir.join(LOG_DIR);
    fs::create_dir_all(&logs).map_err(|e| format!("cannot create {}: {e}", logs.display()))?;
    let stdout_log = RotatingLog::open(logs.join("stdout.log"), launch.logs)
        .map_err(|e| format!("cannot open {}: {e}", logs.join("stdout.log").display()))?;
    let stderr_log = RotatingLog::open(logs.join("stderr.log"), launch.logs)
        .map_err(|e| format!("cannot open {}: {e}", logs.join("stderr.log").display()))?;

    let spawned = Command::new(&launch.program)
        .args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&launch.cwd)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let how = format!("cannot start `{}` in {}: {e}", launch.program, launch.cwd.display());
            let record = ExitRecord {
                how: how.clone(),
                at: rfc3339(SystemTime::now()),
            };
            write_json_atomic(&dir.join(EXIT_FILE), &record)
                .map_err(|e| format!("cannot write {}: {e}", dir.join(EXIT_FILE).display()))?;
            return Err(how);
        }
    };
    let pid = child.id();
    let pgid = Pid::from_raw(pid as i32);

    // Unreaped, the child keeps its /proc entry even if it has exited already.
    let record = RunRecord {
        shim_pid: std::process::id(),
        shim_start_ticks: proc_stat(std::process::id()).map_or(0, |s| s.start_ticks),
        pid,
        pid_start_ticks: proc_stat(pid).map_or(0, |s| s.start_ticks),
        config_hash: launch.config_hash,
        started_at: rfc3339(SystemTime::now()),
        restarts: launch.restarts,
    };
    if let Err(e) = write_json_atomic(&dir.join(RUN_FILE), &record) {
        // Without run.json nobody can find the service again: do not leave it running.
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = child.wait();
        return Err(format!("cannot write {}: {e}", dir.join(RUN_FILE).display()));
    }

    let (done_tx, done_rx) = mpsc::channel();
    let out = child.stdout.take().expect("stdout is piped");
    let err = child.stderr.take().expect("stderr is piped");
    for (pipe, log) in [
        (Box::new(out) as Box<dyn Read + Send>, stdout_log),
        (Box::new(err), stderr_log),
    ] {
        let done = done_tx.clone();
        std::thread::spawn(move || {
            copy_to_log(pipe, log);
            let _ = done.send(());
        });
    }
    drop(done_tx);

    // Whether the child has been reaped: after that its pid (and group id) may name another
    // process, so no more signals go there. Guarded by a lock so that the signal thread never
    // signals between the reap and the flag.
    let reaped = Arc::new(Mutex::new(false));
    {
        let reaped = Arc::clone(&reaped);
        let mut signals = signals;
        std::thread::spawn(move || {
            for signal in signals.forever() {
                // SIGHUP and SIGINT are caught only to be ignored.
                if signal == SIGTERM {
                    let reaped = reaped.lock().unwrap_or_else(|e| e.into_inner());
                    if !*reaped {
                        let _ = killpg(pgid, Signal::SIGTERM);
                    }
                }
            }
        });
    }

    if let Some(fence) = launch.fence_file.clone() {
        let reaped = Arc::clone(&reaped);
        let grace = Duration::from_millis(launch.stop_timeout_ms.max(1000));
        let started = BootTime::now();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            // Only a deadline that passes while the service runs fences it: a stale file left
            // by an agent that stopped long ago (or before a restart) does not stop a service
            // started since.
            let Some(until) = fence_deadline(&fence) else { continue };
            if until.before(&started) || until.boot != started.boot || !until.passed(&BootTime::now()) {
                continue;
            }
            eprintln!(
                "resurgo shim: fenced: the site's agent has not renewed its lease (deadline {} ms after boot)",
                until.ms
            );
            for (signal, wait) in [(Signal::SIGTERM, grace), (Signal::SIGKILL, Duration::ZERO)] {
                {
                    // Held while signalling: once reaped, the group id may name another process.
                    let reaped = reaped.lock().unwrap_or_else(|e| e.into_inner());
                    if *reaped {
                        return;
                    }
                    let _ = killpg(pgid, signal);
                }
                std::thread::sleep(wait);
            }
            return;
        });
    }

    // Wait for the exit without reaping: while the child is a zombie its pid stays ours, so the
    // group id is still safe to signal.
    let exited = loop {
        match waitid(Id::Pid(pgid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other,
        }
    };
    // Record how it ended first: that is what the provider and the controller wait for.
    let exit_path = dir.join(EXIT_FILE);
    let mut recorded = false;
    if let Ok(status) = exited {
        let record = ExitRecord {
            how: describe_wait_status(status),
            at: rfc3339(SystemTime::now()),
        };
        match write_json_atomic(&exit_path, &record) {
            Ok(()) => recorded = true,
            Err(e) => eprintln!("resurgo shim: cannot write {}: {e}", exit_path.display()),
        }
    }

    // Whatever the service left in its group (background children) ends with it, as with
    // systemd's default KillMode=control-group. They usually hold the output pipes, so the
    // log copiers finishing says they are gone.
    let _ = killpg(pgid, Signal::SIGTERM);
    let mut copiers_left = 2;
    wait_for_copiers(&done_rx, &mut copiers_left, LEFTOVER_GRACE);
    let _ = killpg(pgid, Signal::SIGKILL);
    let status = reap(&mut child, &reaped);
    // Output still in flight after the kill drains quickly; a leftover that escaped the group
    // could hold a pipe forever, so do not wait for it long.
    wait_for_copiers(&done_rx, &mut copiers_left, LEFTOVER_GRACE);

    if recorded {
        return Ok(());
    }
    let how = match status {
        Ok(status) => describe_exit(status),
        Err(e) => format!("unknown ({e})"),
    };
    write_json_atomic(
        &exit_path,
        &ExitRecord {
            how,
            at: rfc3339(SystemTime::now()),
        },
    )
    .map_err(|e| format!("cannot write {}: {e}", exit_path.display()))
}

fn wait_for_copiers(done: &mpsc::Receiver<()>, left: &mut u32, limit: Duration) {
    let end = Instant::now() + limit;
    while *left > 0 {
        match done.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(()) => *left -= 1,
            Err(_) => return,
        }
    }
}

fn reap(child: &mut Child, reaped: &Mutex<bool>) -> io::Result<ExitStatus> {
    let mut reaped = reaped.lock().unwrap_or_else(|e| e.into_inner());
    let status = child.wait();
    *reaped = true;
    status
}

fn describe_wait_status(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exit code {code}"),
        WaitStatus::Signaled(_, signal, _) => format!("killed by {}", signal.as_str()),
        other => format!("ended ({other:?})"),
    }
}

/// `exit code 1`, `killed by SIGKILL`.
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exit code {code}")
    } else if let Some(signal) = status.signal() {
        match Signal::try_from(signal) {
            Ok(s) => format!("killed by {}", s.as_str()),
            Err(_) => format!("killed by signal {signal}"),
        }
    } else {
        format!("ended ({status})")
    }
}

fn copy_to_log(mut pipe: Box<dyn Read + Send>, mut log: RotatingLog) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if let Err(e) = log.write(&buf[..n]) {
                    // Keep draining the pipe so the service never blocks on a full pipe.
                    eprintln!("resurgo shim: cannot write {}: {e}", log.path.display());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("resurgo shim: cannot read output for {}: {e}", log.path.display());
                return;
            }
        }
    }
}

/// An append-only log file that is rotated by size: `name` → `name.1` → … → `name.N`, the
/// oldest dropped.
pub struct RotatingLog {
    path: PathBuf,
    limits: LogLimits,
    file: File,
    size: u64,
}

impl RotatingLog {
    /// Opens (appends to) `path`, counting what it holds already.
    pub fn open(path: PathBuf, limits: LogLimits) -> io::Result<RotatingLog> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(RotatingLog {
            path,
            limits,
            file,
            size,
        })
    }

    /// Appends `data`, rotating whenever the file would grow past the limit. Whole lines stay
    /// together where they fit; a line longer than the limit is cut at it.
    pub fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        let max = self.limits.max_bytes.max(1);
        while !data.is_empty() {
            let room = usize::try_from(max.saturating_sub(self.size)).unwrap_or(usize::MAX);
            if data.len() <= room {
                self.file.write_all(data)?;
                self.size += data.len() as u64;
                return Ok(());
            }
            let cut = match data[..room].iter().rposition(|&b| b == b'\n') {
                Some(newline) => newline + 1,
                None if self.size > 0 => 0, // start the line in a fresh file
                None => room,
            };
            self.file.write_all(&data[..cut])?;
            self.size += cut as u64;
            data = &data[cut..];
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let numbered = |n: u32| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if self.limits.keep == 0 {
            remove_if_exists(&self.path)?;
        } else {
            remove_if_exists(&numbered(self.limits.keep))?;
            for n in (1..self.limits.keep).rev() {
                rename_if_exists(&numbered(n), &numbered(n + 1))?;
            }
            rename_if_exists(&self.path, &numbered(1))?;
        }
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Writes `value` as JSON to `path` so that readers see the old content or the new, never half:
/// a temporary file in the same folder, synced, renamed over `path`.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let mut text = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    text.push(b'\n');
    // A temporary name of this process and call alone: two writers of the same file (two
    // services started at once both writing `site.json`) must not rename each other's file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.{seq}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(&text)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// What `/proc/PID/stat` says about a process, as far as we need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// `R`, `S`, `D`, `Z` (zombie), `X` (dead), …
    pub state: char,
    /// Field 22: when the process started, in clock ticks since boot.
    pub start_ticks: u64,
}

impl ProcStat {
    /// Whether the process still runs (a zombie has ended, it only waits to be reaped).
    pub fn is_alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Reads `/proc/PID/stat`; `None` if there is no such process (or no /proc).
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_proc_stat(&text)
}

/// Parses the text of `/proc/PID/stat`. The command name (field 2) is in parentheses and may
/// itself hold spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3), field 22 is the 19th.
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_ticks })
}

/// Whether process `pid` runs and is the one that started at `start_ticks` (not a process that
/// got the same pid later).
pub fn is_running(pid: u32, start_ticks: u64) -> bool {
    pid != 0 && proc_stat(pid).is_some_and(|s| s.is_alive() && s.start_ticks == start_ticks)
}

/// `time` as RFC 3339 UTC with whole seconds.
pub fn rfc3339(time: SystemTime) -> String {
    resurgo_spec::units::format_rfc3339(time, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> String {
        rfc3339(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn rfc3339_formats_utc_with_whole_seconds() {
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_709_211_909), "2024-02-29T13:05:09Z");
        assert_eq!(at(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(at(4_102_444_800), "2100-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_999)),
            "1970-01-01T00:00:01Z"
        );
        assert_eq!(rfc3339(UNIX_EPOCH - Duration::from_secs(1)), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn proc_stat_counts_fields_after_the_last_parenthesis() {
        let fields: Vec<String> = (4..=52).map(|n| n.to_string()).collect();
        let text = format!("1234 (my (odd) name) S {}\n", fields.join(" "));
        assert_eq!(
            parse_proc_stat(&text),
            Some(ProcStat {
                state: 'S',
                start_ticks: 22
            })
        );
        let zombie = text.replace(") S ", ") Z ");
        assert!(!parse_proc_stat(&zombie).unwrap().is_alive());
        assert_eq!(parse_proc_stat("1234 (short) R 1 2 3"), None);
        assert_eq!(parse_proc_stat("garbage"), None);
    }

    #[test]
    fn proc_stat_of_this_process_is_alive_and_stable() {
        let me = proc_stat(std::process::id()).expect("/proc/self/stat");
        assert!(me.is_alive());
        assert!(is_running(std::process::id(), me.start_ticks));
        assert!(!is_running(std::process::id(), me.start_ticks + 1));
        assert!(!is_running(0, 0));
    }

    #[test]
    fn exits_are_described_like_a_person_would() {
        assert_eq!(describe_exit(ExitStatus::from_raw(3 << 8)), "exit code 3");
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "killed by SIGKILL");
        assert_eq!(describe_exit(ExitStatus::from_raw(15)), "killed by SIGTERM");
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_else(|_| "<absent>".into())
    }

    #[test]
    fn logs_rotate_by_size_and_keep_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        let mut log = RotatingLog::open(path.clone(), LogLimits { max_bytes: 10, keep: 2 }).unwrap();
        for chunk in ["aaaa\n", "bbbb\n", "cccc\n", "dddd\n", "eeee\n", "ffff\n", "gggg\n"] {
            log.write(chunk.as_bytes()).unwrap();
        }
        assert_eq!(read(&path), "gggg\n");
        assert_eq!(read(&dir.path().join("stdout.log.1")), "eeee\nffff\n");
        assert_eq!(read(&dir.path().join("stdout.log.2")), "cccc\ndddd\n");
        assert_eq!(read(&dir.path().join("stdout.log.3")), "<absent>");
    }

    #[test]
    fn a_reopened_log_counts_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stderr.log");
        fs::write(&path, "1234567\n").unwrap();
        let mut log = RotatingLog::open(path.clone(), LogLimits { max_bytes: 10, keep: 3 }).unwrap();
        log.write(b"xyz\n").unwrap();
        assert_eq!(read(&path), "xyz\n");
        assert_eq!(read(&dir.path().join("stderr.log.1")), "1234567\n");
    }

    #[test]
    fn lines_stay_whole_where_they_fit_and_overlong_ones_are_cut_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let mut log = RotatingLog::open(path.clone(), LogLimits { max_bytes: 10, keep: 5 }).unwrap();
        log.write(b"ab\ncdef\ngh").unwrap();
        log.write(b"ij\nthis line is longer than the limit\n").unwrap();
        let files: Vec<String> = [
            "out.log.5",
            "out.log.4",
            "out.log.3",
            "out.log.2",
            "out.log.1",
            "out.log",
        ]
        .map(|n| read(&dir.path().join(n)))
        .into();
        // What fits is written at once: a line split across writes may be split across files.
        assert_eq!(
            files,
            [
                "ab\ncdef\ngh",
                "ij\n",
                "this line ",
                "is longer ",
                "than the l",
                "imit\n"
            ]
        );
    }

    #[test]
    fn keep_zero_keeps_only_the_current_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let mut log = RotatingLog::open(path.clone(), LogLimits { max_bytes: 4, keep: 0 }).unwrap();
        log.write(b"abc").unwrap();
        log.write(b"def").unwrap();
        assert_eq!(read(&path), "def");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn atomic_writes_replace_the_whole_file_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit.json");
        fs::write(&path, "old and much longer content").unwrap();
        let record = ExitRecord {
            how: "exit code 0".into(),
            at: at(0),
        };
        write_json_atomic(&path, &record).unwrap();
        let back: ExitRecord = serde_json::from_str(&read(&path)).unwrap();
        assert_eq!(back, record);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
