//! The `local` provider: each service runs as an OS process on this machine, watched by its
//! own supervisor process (see [`crate::shim`]), so services keep running when the `resurgo`
//! command or the controller that started them ends.
//!
//! A site whose root does not exist, or holds no `site.json`, is not set up here
//! ([`ProviderError::NotSetUp`]): it is reported as such and nothing is created in its place
//! except by [`Provider::set_up`].
//!
//! A `LocalProvider` serves one site, built with its folder ([`LocalProvider::at`]); the folder
//! is known only here, never to callers. All state is on disk under it, so any `LocalProvider`
//! of that folder (a new CLI run, a restarted controller) sees the same services and adopts the
//! running ones:
//!
//! ```text
//! <root>/site.json                     {site, address}, written when the site is set up
//! <root>/set-aside.json                the register of set-aside copies (see [`crate::aside`])
//! <root>/set-aside/<service>.aside-…   a pruned service's folder, data and all
//! <root>/locks/<service>.lock          serialises start/stop/remove of one service
//! <root>/services/<service>/
//!     config.json                      the RunConfig it was started with (secret references only)
//!     launch.json                      handed to the shim, mode 0600, deleted by it at once
//!     run.json                         written by the shim: pids, start ticks, config hash, restarts
//!     exit.json                        written by the shim: how the process ended
//!     stopped                          marker: resurgo stopped it on purpose
//!     shim.log                         the shim's own messages
//!     logs/stdout.log, logs/stderr.log the service's output, rotated (.1 .2 .3)
//! ```
//!
//! A process counts as running only if its pid is alive *and* started at the recorded clock
//! tick, so a pid recycled by the kernel is never taken for the service.
//!
//! Observing probes a running service only once its check's `interval` has passed since its
//! last probe; in between it reports the last result, which the provider keeps in memory
//! (shared by its clones) for that process and that check. A daemon observes its site every
//! tick, from more than one thread; without this every observation probed every service.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use resurgo_plan::desired::DEFAULT_STOP_TIMEOUT_MS;
use resurgo_plan::{Health, ObservedService, ProcessState, RunConfig};
use resurgo_spec::{EnvValue, HealthCheck, SecretRef};
use serde::{Deserialize, Serialize};

use crate::account::{private_dir, Account};
use crate::shim::{
    is_running, rfc3339, write_json_atomic, ExitRecord, Launch, LogLimits, RunRecord, EXIT_FILE, LAUNCH_FILE, LOG_DIR,
    RUN_FILE, SHIM_LOG_FILE, SHIM_SUBCOMMAND,
};
use crate::{ProbeResult, Provider, ProviderError, SiteHandle};

const SITE_FILE: &str = "site.json";
const SERVICES_DIR: &str = "services";
const LOCKS_DIR: &str = "locks";
const CONFIG_FILE: &str = "config.json";
const STOPPED_FILE: &str = "stopped";
/// Where pruned services' folders are set aside.
const SET_ASIDE_DIR: &str = "set-aside";

/// How long a start waits for the shim to report the process launched.
const START_DEADLINE: Duration = Duration::from_secs(5);
/// How long the shim may take to record the exit and leave once the service has ended (it
/// gives leftovers in the service's group up to 2 × 1s).
const SHIM_EXIT_DEADLINE: Duration = Duration::from_secs(5);
/// How long observe waits for the shim of a process that has just ended to record how.
const EXIT_RECORD_DEADLINE: Duration = Duration::from_secs(1);
/// How long a SIGKILLed process may take to disappear.
const KILL_DEADLINE: Duration = Duration::from_secs(2);
/// Health probes run in parallel during observe, at most this many at once.
const PROBE_WORKERS: usize = 8;
/// Lines of stderr quoted when a start fails.
const TAIL_LINES: usize = 10;

/// Variables passed from resurgo's own environment to the processes it starts. Nothing else
/// is inherited: resurgo's environment holds the secrets of every service (`{secret: {env}}`),
/// and a service must see only its own.
const INHERITED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
];

/// The environment every process resurgo starts begins with: [`INHERITED_ENV`] from resurgo's
/// own, and a default `PATH` if it has none.
pub(crate) fn base_env() -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = INHERITED_ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    }
    env
}

/// Runs one site's services as supervised processes on this machine, its state in the
/// site's folder (`root`).
#[derive(Debug, Clone)]
pub struct LocalProvider {
    root: PathBuf,
    shim_exe: PathBuf,
    log_limits: LogLimits,
    /// The state folder the sites' folders live in by default: a service's user is let
    /// through it (search only) to reach its folder, and no further up.
    state_dir: Option<PathBuf>,
    /// The last probe of each running service, by service name (see the module's doc).
    probed: Arc<Mutex<HashMap<String, LastProbe>>>,
    /// The network namespace every service of this provider runs in (a drill's sandbox).
    netns: Option<PathBuf>,
}

/// A service's last probe: of which process, with which check, when, and what it saw.
#[derive(Debug, Clone)]
struct LastProbe {
    pid: u32,
    pid_start_ticks: u64,
    check: HealthCheck,
    at: Instant,
    result: ProbeResult,
}

impl LastProbe {
    /// Whether this result still stands for `run` checked by `check` at `now`: the same
    /// process, the same check, and less than the check's interval ago.
    fn stands_for(&self, pid: u32, pid_start_ticks: u64, check: &HealthCheck, now: Instant) -> bool {
        self.pid == pid
            && self.pid_start_ticks == pid_start_ticks
            && &self.check == check
            && now.saturating_duration_since(self.at) < crate::probe::interval(check)
    }
}

/// `site.json`: which site a root belongs to.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct SiteRecord {
    site: String,
    address: IpAddr,
}

/// What is on disk about one service.
struct Recorded {
    config: RunConfig,
    run: Option<RunRecord>,
    exit: Option<ExitRecord>,
    stopped: bool,
}

impl LocalProvider {
    /// The provider of the site whose folder is `root`. Its shims are the running executable
    /// (the `resurgo` binary).
    pub fn at(root: impl Into<PathBuf>) -> LocalProvider {
        LocalProvider {
            root: root.into(),
            // /proc/self/exe runs the same program even if its path cannot be read.
            shim_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe")),
            log_limits: LogLimits::default(),
            state_dir: None,
            probed: Arc::default(),
            netns: None,
        }
    }

    /// Runs every service it starts inside the network namespace at `netns`
    /// (`/run/netns/NAME`): a sandbox whose services see only that namespace's network.
    pub fn in_netns(mut self, netns: PathBuf) -> LocalProvider {
        self.netns = Some(netns);
        self
    }

    /// Sets the program its shims run as, `shim_exe __shim <service_dir>`; it must hand that
    /// to [`crate::shim::run_shim`].
    pub fn with_shim(mut self, shim_exe: PathBuf) -> LocalProvider {
        self.shim_exe = shim_exe;
        self
    }

    /// Sets the state folder that holds sites' folders (see [`LocalProvider::state_dir`]).
    pub fn with_state_dir(mut self, state_dir: PathBuf) -> LocalProvider {
        self.state_dir = Some(state_dir);
        self
    }

    /// Sets how services' logs are rotated (default: 10 MiB, keep 3), from the next start on.
    pub fn with_log_limits(mut self, limits: LogLimits) -> LocalProvider {
        self.log_limits = limits;
        self
    }

    pub fn shim_exe(&self) -> &Path {
        &self.shim_exe
    }

    /// The site's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder holding a service's state and logs.
    pub fn service_dir(&self, service: &str) -> PathBuf {
        self.root.join(SERVICES_DIR).join(service)
    }

    fn launch(&self, site: &SiteHandle, config: &RunConfig) -> Result<(), ProviderError> {
        let service = config.service.as_str();
        let dir = self.service_dir(service);
        // Read secrets before touching anything: a missing secret leaves a running instance be.
        let env = service_env(site, config)?;

        let start_error = |reason: String| ProviderError::Start {
            service: service.to_string(),
            site: site.name.clone(),
            command: config.command.clone(),
            reason,
        };
        // Who it runs as, checked before anything is touched too.
        let run_as = Account::switch_to(config.user.as_deref()).map_err(start_error)?;

        for private in [self.root.clone(), self.root.join(SERVICES_DIR), dir.clone()] {
            private_dir(&private).map_err(io_error(site, "cannot create", &private))?;
        }
        fs::create_dir_all(dir.join(LOG_DIR)).map_err(io_error(site, "cannot create", &dir.join(LOG_DIR)))?;
        if let Some(account) = &run_as {
            self.hand_over(site, &dir, account)?;
        }
        write_site_record(site, &self.root)?;

        let (previous_run, grace) = previous_run(site, &dir)?;
        if let Some(run) = &previous_run {
            terminate(run, grace);
        }
        // A port held by a process we do not manage would make our process fail to bind while
        // the health check happily probes the stranger: refuse up front, naming the port. In a
        // namespace of its own (a sandbox, made for these services) the ports seen from here
        // are the host's, not its: nothing else listens there.
        let taken = |p: &&u16| self.netns.is_none() && port_taken(site.address, **p);
        if let Some(port) = config.ports.iter().find(taken) {
            return Err(ProviderError::Start {
                service: service.to_string(),
                site: site.name.clone(),
                command: config.command.clone(),
                reason: format!(
                    "port {port} on {} is already in use by a process resurgo does not manage",
                    site.address
                ),
            });
        }
        let config_hash = config.hash();
        let restarts = match &previous_run {
            Some(run) if run.config_hash == config_hash => run.restarts.saturating_add(1),
            _ => 0,
        };

        let config_path = dir.join(CONFIG_FILE);
        write_json_atomic(&config_path, config).map_err(io_error(site, "cannot write", &config_path))?;
        for name in [RUN_FILE, EXIT_FILE, STOPPED_FILE, LAUNCH_FILE] {
            remove_if_exists(&dir.join(name)).map_err(io_error(site, "cannot remove", &dir.join(name)))?;
        }

        let launch = Launch {
            program: config.command.clone(),
            args: config.args.clone(),
            env,
            cwd: workdir(&dir, config),
            config_hash: config_hash.clone(),
            restarts,
            logs: self.log_limits,
            // Every instance, standbys too: a standby promoted in place keeps its supervisor,
            // which must then fence it like any primary.
            fence_file: Some(self.root.join(crate::shim::FENCE_FILE)),
            stop_timeout_ms: config.stop_timeout_ms,
            run_as,
            netns: self.netns.clone(),
        };
        let launch_path = dir.join(LAUNCH_FILE);
        write_launch(&launch_path, &launch).map_err(|e| {
            let _ = fs::remove_file(&launch_path);
            io_error(site, "cannot write", &launch_path)(e)
        })?;

        let shim_log_path = dir.join(SHIM_LOG_FILE);
        let spawned = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&shim_log_path)
            .and_then(|log| {
                Command::new(&self.shim_exe)
                    .arg(SHIM_SUBCOMMAND)
                    .arg(&dir)
                    .env_clear()
                    .envs(base_env())
                    .current_dir(&dir)
                    .stdin(Stdio::null())
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .spawn()
            });
        let mut shim = match spawned {
            Ok(child) => child,
            Err(e) => {
                let _ = fs::remove_file(&launch_path);
                return Err(start_error(format!(
                    "cannot run the supervisor {}: {e}",
                    self.shim_exe.display()
                )));
            }
        };

        // The shim writes run.json once the process exists, or exit.json and leaves if it could
        // not start it.
        let deadline = Instant::now() + START_DEADLINE;
        let mut pause = Duration::from_millis(1);
        let outcome = loop {
            if let Ok(Some(run)) = read_json::<RunRecord>(&dir.join(RUN_FILE)) {
                if run.shim_pid == shim.id() {
                    break Ok(());
                }
            }
            match shim.try_wait() {
                Ok(Some(status)) => {
                    let mut reason = match read_json::<ExitRecord>(&dir.join(EXIT_FILE)) {
                        Ok(Some(exit)) => exit.how,
                        _ => format!("the supervisor {} ended ({status})", self.shim_exe.display()),
                    };
                    let stderr = tail(&dir.join(LOG_DIR).join("stderr.log"));
                    let shim_log = tail(&shim_log_path);
                    if !stderr.is_empty() {
                        reason.push_str(&format!("; last lines of stderr:\n{stderr}"));
                    } else if !shim_log.is_empty() {
                        reason.push_str(&format!("; supervisor log:\n{shim_log}"));
                    }
                    break Err(start_error(reason));
                }
                Ok(None) => {}
                Err(e) => break Err(start_error(format!("cannot wait for the supervisor: {e}"))),
            }
            if Instant::now() >= deadline {
                let _ = shim.kill();
                let _ = shim.wait();
                break Err(start_error(format!(
                    "the supervisor did not report within {}s (see {})",
                    START_DEADLINE.as_secs(),
                    shim_log_path.display()
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(25));
        };
        // The shim is our child until we exit: reap it whenever it ends, so it never lingers as
        // a zombie of a long-running controller.
        std::thread::spawn(move || {
            let _ = shim.wait();
        });
        if outcome.is_err() {
            let _ = fs::remove_file(&launch_path);
        }
        outcome
    }

    /// Makes the service's folder its user's: the folder (0700) and its logs are given to it —
    /// the supervisor runs as that user and writes them —, and the folders above it, up to the
    /// state folder, let it pass (search only, see [`crate::account`]).
    fn hand_over(&self, site: &SiteHandle, dir: &Path, account: &Account) -> Result<(), ProviderError> {
        for path in [dir.to_path_buf(), dir.join(LOG_DIR)] {
            std::os::unix::fs::lchown(&path, Some(account.uid), Some(account.gid)).map_err(io_error(
                site,
                "cannot give",
                &path,
            ))?;
        }
        let logs = dir.join(LOG_DIR);
        crate::account::chown_tree(&logs, account).map_err(io_error(site, "cannot give", &logs))?;
        let top = match &self.state_dir {
            Some(state) if self.root.starts_with(state) => state.clone(),
            _ => self.root.clone(),
        };
        let mut at = dir.parent();
        while let Some(folder) = at {
            crate::account::allow_search(folder).map_err(io_error(site, "cannot open a way through", folder))?;
            if folder == top {
                break;
            }
            at = folder.parent();
        }
        Ok(())
    }

    fn stop_locked(&self, site: &SiteHandle, dir: &Path) -> Result<(), ProviderError> {
        if !dir.is_dir() {
            return Ok(());
        }
        if let (Some(run), grace) = previous_run(site, dir)? {
            terminate(&run, grace);
        }
        let marker = dir.join(STOPPED_FILE);
        fs::write(&marker, format!("{}\n", rfc3339(SystemTime::now()))).map_err(io_error(site, "cannot write", &marker))
    }

    /// Holds the service's lock: starts, stops and removes of one service never interleave
    /// (a controller and a CLI may act on the same site).
    fn lock(&self, site: &SiteHandle, service: &str) -> Result<Flock<File>, ProviderError> {
        self.check_name(site, service)?;
        self.lock_site(site, service)
    }
}

impl Provider for LocalProvider {
    fn set_up(&self, site: &SiteHandle) -> Result<(), ProviderError> {
        private_dir(&self.root).map_err(io_error(site, "cannot create", &self.root))?;
        write_site_record(site, &self.root)
    }

    fn observe(&self, site: &SiteHandle) -> Result<Vec<ObservedService>, ProviderError> {
        let unreachable = |reason: String| ProviderError::SiteUnreachable {
            site: site.name.clone(),
            reason,
        };
        self.require_set_up(site)?;
        let services_dir = self.root.join(SERVICES_DIR);
        let entries = match fs::read_dir(&services_dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(unreachable(format!("cannot read {}: {e}", services_dir.display()))),
            Ok(entries) => entries,
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| unreachable(format!("cannot read {}: {e}", services_dir.display())))?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_string());
                }
            }
        }
        names.sort();

        let mut observed = Vec::with_capacity(names.len());
        // The running services with a check.
        let mut checked = Vec::new();
        for name in names {
            let dir = services_dir.join(&name);
            // A folder without config.json is a start in progress or debris, not a service.
            let Some(recorded) = read_recorded(site, &dir)? else {
                continue;
            };
            let Recorded {
                config,
                run,
                mut exit,
                stopped,
            } = recorded;
            let running = run.as_ref().filter(|r| is_running(r.pid, r.pid_start_ticks));
            if let (None, None, false, Some(run)) = (running, &exit, stopped, &run) {
                // The process has just ended and its shim is recording how: wait for that
                // rather than report a vanished process.
                if is_running(run.shim_pid, run.shim_start_ticks) {
                    let path = dir.join(EXIT_FILE);
                    wait_until(EXIT_RECORD_DEADLINE, || path.exists());
                    exit = read_json(&path).ok().flatten();
                }
            }
            let process = if let Some(run) = running {
                ProcessState::Running {
                    pid: run.pid,
                    since: run.started_at.clone(),
                }
            } else if stopped {
                ProcessState::Stopped
            } else if let Some(exit) = exit {
                ProcessState::Exited {
                    how: exit.how,
                    at: exit.at,
                }
            } else {
                // Nobody recorded the end: the shim was killed, or the machine rebooted.
                ProcessState::Exited {
                    how: "vanished".into(),
                    at: String::new(),
                }
            };
            if let (Some(run), Some(_)) = (running, &config.health) {
                checked.push(ProbeJob {
                    index: observed.len(),
                    pid: run.pid,
                    pid_start_ticks: run.pid_start_ticks,
                    workdir: workdir(&dir, &config),
                });
            }
            observed.push(ObservedService {
                service: config.service.clone(),
                config_hash: run.as_ref().map_or_else(|| config.hash(), |r| r.config_hash.clone()),
                restarts: run.as_ref().map_or(0, |r| r.restarts),
                config,
                process,
                health: Health::Unknown,
            });
        }

        // A check whose interval has not passed since its last probe of this process keeps
        // that result; the others are probed now.
        let now = Instant::now();
        let mut due = Vec::new();
        {
            let memory = self.probed.lock().unwrap_or_else(|e| e.into_inner());
            for job in checked {
                let service = &mut observed[job.index];
                let check = service.config.health.as_ref().expect("only services with a check");
                match memory.get(&service.service) {
                    Some(last) if last.stands_for(job.pid, job.pid_start_ticks, check, now) => {
                        service.health = health_of(&last.result);
                    }
                    _ => due.push(job),
                }
            }
        }
        let results = probe_all(site.address, &observed, &due);
        tracing::debug!(site = %site.name, services = observed.len(), probed = due.len(), "observed");
        let mut memory = self.probed.lock().unwrap_or_else(|e| e.into_inner());
        for (job, result) in due.iter().zip(results) {
            let service = &mut observed[job.index];
            service.health = health_of(&result);
            let check = service.config.health.clone().expect("only services with a check");
            let last = LastProbe {
                pid: job.pid,
                pid_start_ticks: job.pid_start_ticks,
                check,
                at: now,
                result,
            };
            memory.insert(service.service.clone(), last);
        }
        // What no longer runs is forgotten.
        let running: HashSet<&str> = observed
            .iter()
            .filter(|s| matches!(s.process, ProcessState::Running { .. }))
            .map(|s| s.service.as_str())
            .collect();
        memory.retain(|name, _| running.contains(name.as_str()));
        drop(memory);
        Ok(observed)
    }

    fn start(&self, site: &SiteHandle, config: &RunConfig) -> Result<(), ProviderError> {
        let _lock = self.lock(site, &config.service)?;
        self.launch(site, config)
    }

    fn extend_fence(&self, site: &SiteHandle, until: &resurgo_coord::BootTime) -> Result<(), ProviderError> {
        self.require_set_up(site)?;
        let path = self.root.join(crate::shim::FENCE_FILE);
        write_json_atomic(&path, until).map_err(io_error(site, "cannot write", &path))
    }

    fn relabel(&self, site: &SiteHandle, config: &RunConfig) -> Result<(), ProviderError> {
        let service = &config.service;
        self.check_name(site, service)?;
        let dir = self.service_dir(service);
        let _lock = self.lock(site, service)?;
        let run_path = dir.join(RUN_FILE);
        let mut run = read_json::<RunRecord>(&run_path)
            .map_err(io_error(site, "cannot read", &run_path))?
            .ok_or_else(|| ProviderError::Start {
                service: service.clone(),
                site: site.name.clone(),
                command: config.command.clone(),
                reason: "it is not running, so there is nothing to relabel".into(),
            })?;
        let config_path = dir.join(CONFIG_FILE);
        write_json_atomic(&config_path, config).map_err(io_error(site, "cannot write", &config_path))?;
        run.config_hash = config.hash();
        write_json_atomic(&run_path, &run).map_err(io_error(site, "cannot write", &run_path))
    }

    fn stop(&self, site: &SiteHandle, service: &str) -> Result<(), ProviderError> {
        self.check_name(site, service)?;
        self.require_set_up(site)?;
        let dir = self.service_dir(service);
        if !dir.is_dir() {
            return Ok(());
        }
        let _lock = self.lock(site, service)?;
        self.stop_locked(site, &dir)
    }

    fn remove(&self, site: &SiteHandle, service: &str) -> Result<(), ProviderError> {
        self.check_name(site, service)?;
        let dir = self.service_dir(service);
        if !dir.is_dir() {
            return Ok(());
        }
        let _lock = self.lock(site, service)?;
        self.stop_locked(site, &dir)?;
        // Its folder holds its data: kept, out of the services' way.
        crate::aside::set_aside(
            self,
            site,
            &dir,
            &self.root.join(SET_ASIDE_DIR),
            "pruned: the service left the spec",
        )
        .map(drop)
    }

    fn probe(&self, site: &SiteHandle, config: &RunConfig) -> ProbeResult {
        let Some(check) = &config.health else {
            // Nothing says it works, so it is not called healthy.
            return ProbeResult {
                healthy: false,
                detail: "no health check declared".into(),
            };
        };
        let dir = self.service_dir(&config.service);
        crate::probe::probe(site.address, check, &workdir(&dir, config))
    }

    fn set_aside(&self, site: &SiteHandle, path: &Path, why: &str) -> Result<crate::SetAside, ProviderError> {
        let into = path.parent().unwrap_or(Path::new("/"));
        crate::aside::set_aside(self, site, path, into, why)
    }

    fn set_aside_copies(&self, site: &SiteHandle) -> Result<Vec<crate::SetAside>, ProviderError> {
        crate::aside::list(self, site)
    }

    fn drop_set_aside(&self, site: &SiteHandle, id: &str) -> Result<crate::SetAside, ProviderError> {
        crate::aside::remove(self, site, id)
    }

    fn data_path(
        &self,
        site: &SiteHandle,
        service: &str,
        workdir: Option<&str>,
        path: &str,
    ) -> Result<PathBuf, ProviderError> {
        self.check_name(site, service)?;
        // `join` keeps an absolute path as it is.
        let dir = self.service_dir(service);
        Ok(match workdir {
            Some(w) => dir.join(w),
            None => dir,
        }
        .join(path))
    }

    fn owner(&self, _: &SiteHandle, path: &Path) -> Option<(u32, u32)> {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(path).ok().map(|m| (m.uid(), m.gid()))
    }

    fn describe(&self, _: &SiteHandle) -> String {
        self.root.display().to_string()
    }

    fn kill(&self, site: &SiteHandle, service: &str) -> Result<(), ProviderError> {
        self.check_name(site, service)?;
        let seen = self.observe(site)?;
        let pid = seen
            .iter()
            .find(|s| s.service == service)
            .and_then(|s| match s.process {
                ProcessState::Running { pid, .. } => Some(pid),
                _ => None,
            });
        let Some(pid) = pid else {
            return Err(ProviderError::SiteUnreachable {
                site: site.name.clone(),
                reason: format!("service `{service}` is not running there: nothing to kill"),
            });
        };
        // The service leads its own process group: the whole group dies, as in a crash; its
        // supervisor records the end.
        killpg(Pid::from_raw(pid as i32), Signal::SIGKILL).map_err(|e| ProviderError::SiteUnreachable {
            site: site.name.clone(),
            reason: format!("cannot kill service `{service}` (pid {pid}): {e}"),
        })
    }

    fn disconnect(&self, site: &SiteHandle) -> Result<(), ProviderError> {
        let lost = self.lost_root();
        if !self.root.exists() && lost.exists() {
            return Ok(());
        }
        for s in self.observe(site)? {
            if let ProcessState::Running { pid, .. } = s.process {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
        // Out of reach, not gone: the site observes as not set up (unknown, never empty).
        fs::rename(&self.root, &lost).map_err(io_error(site, "cannot move aside", &self.root))
    }

    fn reconnect(&self, site: &SiteHandle) -> Result<bool, ProviderError> {
        let lost = self.lost_root();
        if self.root.exists() || !lost.exists() {
            return Ok(false);
        }
        fs::rename(&lost, &self.root).map_err(io_error(site, "cannot move back", &lost))?;
        Ok(true)
    }
}

impl LocalProvider {
    /// Where a disconnected site's folder is kept (a drill's site loss): beside it.
    fn lost_root(&self) -> PathBuf {
        self.root.with_extension("lost")
    }
}

fn health_of(result: &ProbeResult) -> Health {
    if result.healthy {
        Health::Healthy
    } else {
        Health::Unhealthy {
            last_probe: result.detail.clone(),
        }
    }
}

/// A running service to probe: its index in what is observed, its process, its workdir.
struct ProbeJob {
    index: usize,
    pid: u32,
    pid_start_ticks: u64,
    workdir: PathBuf,
}

/// Runs the health check of each job's service, a few at a time; the results in the jobs' order.
fn probe_all(address: IpAddr, observed: &[ObservedService], jobs: &[ProbeJob]) -> Vec<ProbeResult> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(vec![None; jobs.len()]);
    std::thread::scope(|scope| {
        for _ in 0..jobs.len().min(PROBE_WORKERS) {
            scope.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(n) else { break };
                let check = observed[job.index]
                    .config
                    .health
                    .as_ref()
                    .expect("only services with a check are probed");
                let result = crate::probe::probe(address, check, &job.workdir);
                results.lock().unwrap_or_else(|e| e.into_inner())[n] = Some(result);
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.into_iter().map(|r| r.expect("every job is probed")).collect()
}

/// Ends the run's process group: SIGTERM, then SIGKILL after `grace`; then waits for the shim
/// to record the exit and leave, killing it if it lingers.
fn terminate(run: &RunRecord, grace: Duration) {
    let gone = || !is_running(run.pid, run.pid_start_ticks);
    if !gone() {
        // The service leads its own process group (the shim starts it so).
        let group = Pid::from_raw(run.pid as i32);
        let _ = killpg(group, Signal::SIGTERM);
        if !wait_until(grace, gone) {
            let _ = killpg(group, Signal::SIGKILL);
            wait_until(KILL_DEADLINE, gone);
        }
    }
    let shim_gone = || !is_running(run.shim_pid, run.shim_start_ticks);
    if !wait_until(SHIM_EXIT_DEADLINE, shim_gone) {
        let _ = kill(Pid::from_raw(run.shim_pid as i32), Signal::SIGKILL);
        wait_until(KILL_DEADLINE, shim_gone);
    }
}

/// Polls `done` until it holds or `limit` passes; says whether it held.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    loop {
        if done() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// The process's working directory: the declared one (relative to the service's folder) or
/// the service's folder itself.
fn workdir(dir: &Path, config: &RunConfig) -> PathBuf {
    match &config.workdir {
        Some(w) => dir.join(w), // `join` keeps an absolute path as it is.
        None => dir.to_path_buf(),
    }
}

/// The service's whole environment: the inherited basics, its declared variables with secrets
/// read, and `RESURGO_SITE`, `RESURGO_SERVICE`, `RESURGO_ADDRESS`.
fn service_env(site: &SiteHandle, config: &RunConfig) -> Result<Vec<(String, String)>, ProviderError> {
    let mut env = base_env();
    let mut set = |key: &str, value: String| match env.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => env.push((key.to_string(), value)),
    };
    for (var, value) in &config.env {
        let value = match value {
            EnvValue::Plain(text) => text.clone(),
            EnvValue::Secret { secret } => read_secret(secret).map_err(|reason| ProviderError::Secret {
                service: config.service.clone(),
                var: var.clone(),
                reason,
            })?,
        };
        set(var, value);
    }
    set("RESURGO_SITE", site.name.clone());
    set("RESURGO_SERVICE", config.service.clone());
    set("RESURGO_ADDRESS", site.address.to_string());
    Ok(env)
}

/// Whether something already listens on `address:port` (binding it fails with "in use").
fn port_taken(address: IpAddr, port: u16) -> bool {
    matches!(std::net::TcpListener::bind((address, port)), Err(e) if e.kind() == io::ErrorKind::AddrInUse)
}

/// A secret's value. Errors name where it was looked for, never what it holds.
pub fn read_secret(secret: &SecretRef) -> Result<String, String> {
    match secret {
        SecretRef::Env(name) => std::env::var(name).map_err(|e| match e {
            std::env::VarError::NotPresent => format!("environment variable `{name}` is not set"),
            std::env::VarError::NotUnicode(_) => {
                format!("environment variable `{name}` is not valid UTF-8")
            }
        }),
        SecretRef::File(path) => {
            let text = fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            let text = text
                .strip_suffix('\n')
                .map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
            Ok(text.to_string())
        }
    }
}

/// Writes launch.json readable by its owner only, from the first byte.
fn write_launch(path: &Path, launch: &Launch) -> io::Result<()> {
    let text = serde_json::to_vec(launch).map_err(io::Error::other)?;
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(&text)?;
    file.sync_all()
}

fn write_site_record(site: &SiteHandle, root: &Path) -> Result<(), ProviderError> {
    let path = root.join(SITE_FILE);
    let record = SiteRecord {
        site: site.name.clone(),
        address: site.address,
    };
    if read_json::<SiteRecord>(&path).ok().flatten().as_ref() == Some(&record) {
        return Ok(());
    }
    write_json_atomic(&path, &record).map_err(io_error(site, "cannot write", &path))
}

/// What is recorded about the service in `dir`; `None` if it has no config.json.
fn read_recorded(site: &SiteHandle, dir: &Path) -> Result<Option<Recorded>, ProviderError> {
    let read = |name: &str| {
        let path = dir.join(name);
        move |e: io::Error| match e.kind() {
            io::ErrorKind::InvalidData => io_error(site, "cannot parse", &path)(e),
            _ => ProviderError::SiteUnreachable {
                site: site.name.clone(),
                reason: format!("cannot read {}: {e}", path.display()),
            },
        }
    };
    let Some(config) = read_json::<RunConfig>(&dir.join(CONFIG_FILE)).map_err(read(CONFIG_FILE))? else {
        return Ok(None);
    };
    let run = read_json::<RunRecord>(&dir.join(RUN_FILE)).map_err(read(RUN_FILE))?;
    let exit = read_json::<ExitRecord>(&dir.join(EXIT_FILE)).map_err(read(EXIT_FILE))?;
    let stopped = dir.join(STOPPED_FILE).exists();
    Ok(Some(Recorded {
        config,
        run,
        exit,
        stopped,
    }))
}

/// The run recorded in `dir` and its grace period (stop timeout), for stopping it. A run.json
/// that does not parse is an error (acting blind could start a second instance); a config.json
/// that does not parse only costs the declared grace period.
fn previous_run(site: &SiteHandle, dir: &Path) -> Result<(Option<RunRecord>, Duration), ProviderError> {
    let run_path = dir.join(RUN_FILE);
    let run = read_json::<RunRecord>(&run_path).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => io_error(site, "cannot parse", &run_path)(e),
        _ => io_error(site, "cannot read", &run_path)(e),
    })?;
    let config_path = dir.join(CONFIG_FILE);
    let config = match read_json::<RunConfig>(&config_path) {
        Err(e) if e.kind() == io::ErrorKind::InvalidData => None,
        other => other.map_err(io_error(site, "cannot read", &config_path))?,
    };
    let grace = config.map_or(DEFAULT_STOP_TIMEOUT_MS, |c| c.stop_timeout_ms);
    Ok((run, Duration::from_millis(grace)))
}

/// Reads a JSON file; `None` if it does not exist, `InvalidData` if it does not parse.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The last [`TAIL_LINES`] lines of a log (from its last 4 KiB), or "" if it has none.
fn tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(4096)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

impl LocalProvider {
    /// Holds `<root>/locks/<name>.lock` of a site that is set up (a lock never makes a lost
    /// site's folder anew).
    pub(crate) fn lock_site(&self, site: &SiteHandle, name: &str) -> Result<Flock<File>, ProviderError> {
        self.require_set_up(site)?;
        let dir = self.root.join(LOCKS_DIR);
        private_dir(&dir).map_err(io_error(site, "cannot create", &dir))?;
        let path = dir.join(format!("{name}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error(site, "cannot open", &path))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| io_error(site, "cannot lock", &path)(e.into()))
    }

    /// The site's folder must be there, with its record (`site.json`, written by `set_up`): an
    /// absent folder, or one without the record (a volume that did not mount), is a site that is
    /// lost, not mounted or never set up here — `unknown`, never empty, and nothing is created in
    /// its place.
    pub(crate) fn require_set_up(&self, site: &SiteHandle) -> Result<(), ProviderError> {
        match fs::metadata(&self.root) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ProviderError::NotSetUp {
                site: site.name.clone(),
                at: self.root.display().to_string(),
            }),
            Err(e) => Err(ProviderError::SiteUnreachable {
                site: site.name.clone(),
                reason: format!("cannot read {}: {e}", self.root.display()),
            }),
            Ok(m) if !m.is_dir() => Err(ProviderError::SiteUnreachable {
                site: site.name.clone(),
                reason: format!("{} is not a directory", self.root.display()),
            }),
            // A folder without the site's record is a mount point whose volume is not mounted (or
            // a folder made by something else): not this site, and nothing is made in it.
            Ok(_) => match fs::metadata(self.root.join(SITE_FILE)) {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ProviderError::NotSetUp {
                    site: site.name.clone(),
                    at: self.root.display().to_string(),
                }),
                Err(e) => Err(ProviderError::SiteUnreachable {
                    site: site.name.clone(),
                    reason: format!("cannot read {}: {e}", self.root.join(SITE_FILE).display()),
                }),
            },
        }
    }

    /// Service names become folder names: refuse anything that would leave `services/`.
    fn check_name(&self, site: &SiteHandle, service: &str) -> Result<(), ProviderError> {
        if service.is_empty() || service == "." || service == ".." || service.contains(['/', '\0']) {
            let path = self.root.join(SERVICES_DIR).join(service);
            let reason = io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{service}` is not a valid service name"),
            );
            return Err(io_error(site, "refusing", &path)(reason));
        }
        Ok(())
    }
}

pub(crate) fn io_error(site: &SiteHandle, what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ProviderError {
    let (site, path) = (site.name.clone(), path.to_path_buf());
    move |source| ProviderError::Io {
        site,
        what,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    //! End to end through real processes. The shim is this test binary itself: the provider
    //! runs `<wrapper> __shim <dir>`, and the wrapper (a script each fixture writes, see
    //! [`fixture`]) execs `<test binary> --exact --ignored local::tests::__shim_entry … __shim <dir>`:
    //! [`__shim_entry`] is ignored in a normal run (so it never counts as a passing test), and
    //! becomes the shim when run this way (the extra arguments match no test name exactly).

    use std::net::Ipv4Addr;
    use std::process::ExitCode;

    use crate::shim;
    use indexmap::IndexMap;
    use resurgo_spec::{ExecProbe, HealthCheck};

    use super::*;

    /// Not a test of its own: the shim's entry point when this binary runs as one.
    #[test]
    #[ignore = "helper entry: run by another test as its child process"]
    fn __shim_entry() {
        let args: Vec<String> = std::env::args().collect();
        let at = args.iter().rposition(|a| a == SHIM_SUBCOMMAND);
        if let Some(dir) = at.and_then(|i| args.get(i + 1)) {
            let code = shim::run_shim(Path::new(dir));
            std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        site: SiteHandle,
        provider: LocalProvider,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let site = SiteHandle {
            name: "a".into(),
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        // `exec` keeps the pid the provider spawned, which the shim records as its own.
        let wrapper = dir.path().join("shim");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec '{}' --exact --ignored --quiet --test-threads=1 local::tests::__shim_entry \"$@\"\n",
                std::env::current_exe().unwrap().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let provider = LocalProvider::at(dir.path().join("sites/a"))
            .with_shim(wrapper)
            .with_state_dir(dir.path().to_path_buf());
        provider.set_up(&site).unwrap();
        Fixture {
            _dir: dir,
            site,
            provider,
        }
    }

    fn sh(service: &str, script: &str) -> RunConfig {
        RunConfig {
            service: service.into(),
            site: "a".into(),
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            command: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: IndexMap::new(),
            workdir: None,
            ports: Vec::new(),
            health: None,
            stop_timeout_ms: 5_000,
            depends_on: Vec::new(),
            role: Default::default(),
            user: None,
        }
    }

    impl Fixture {
        fn observe_one(&self, service: &str) -> ObservedService {
            let all = self.provider.observe(&self.site).unwrap();
            all.into_iter()
                .find(|s| s.service == service)
                .unwrap_or_else(|| panic!("`{service}` not observed"))
        }

        fn dir(&self, service: &str) -> PathBuf {
            self.provider.service_dir(service)
        }

        fn running_pid(&self, service: &str) -> u32 {
            match self.observe_one(service).process {
                ProcessState::Running { pid, .. } => pid,
                other => panic!("`{service}` is {other:?}, not running"),
            }
        }

        /// Polls observe until `service`'s process state satisfies `want`.
        fn await_process(&self, service: &str, want: impl Fn(&ProcessState) -> bool) -> ProcessState {
            let mut last = None;
            let ok = wait_until(Duration::from_secs(10), || {
                let state = self.observe_one(service).process;
                let done = want(&state);
                last = Some(state);
                done
            });
            assert!(ok, "`{service}` never reached the wanted state; last {last:?}");
            last.unwrap()
        }
    }

    fn await_file(path: &Path, want: &str) -> String {
        let mut text = String::new();
        let ok = wait_until(Duration::from_secs(10), || {
            text = fs::read_to_string(path).unwrap_or_default();
            text.contains(want)
        });
        assert!(ok, "{} never contained {want:?}; it holds {text:?}", path.display());
        text
    }

    fn process_alive(pid: u32) -> bool {
        shim::proc_stat(pid).is_some_and(|s| s.is_alive())
    }

    #[test]
    fn a_started_service_runs_logs_and_stops() {
        let f = fixture();
        let secret_file = f._dir.path().join("token");
        fs::write(&secret_file, "s3cr3t\n").unwrap();
        let mut config = sh(
            "web",
            r#"echo "token=$TOKEN same_path=$([ "$SECRET_PATH" = "$PATH" ] && echo yes) svc=$RESURGO_SERVICE site=$RESURGO_SITE at=$RESURGO_ADDRESS"; echo oops >&2; exec sleep 60"#,
        );
        config.env.insert(
            "TOKEN".into(),
            EnvValue::Secret {
                secret: SecretRef::File(secret_file.display().to_string()),
            },
        );
        config.env.insert(
            "SECRET_PATH".into(),
            EnvValue::Secret {
                secret: SecretRef::Env("PATH".into()),
            },
        );
        f.provider.start(&f.site, &config).unwrap();

        let dir = f.dir("web");
        assert!(
            !dir.join(LAUNCH_FILE).exists(),
            "launch.json holds secrets and must be gone"
        );
        let recorded = fs::read_to_string(dir.join(CONFIG_FILE)).unwrap();
        assert!(
            !recorded.contains("s3cr3t") && !recorded.contains(&std::env::var("PATH").unwrap()),
            "{recorded}"
        );
        let site: SiteRecord = read_json(&f.provider.root().join(SITE_FILE)).unwrap().unwrap();
        assert_eq!(
            site,
            SiteRecord {
                site: "a".into(),
                address: f.site.address
            }
        );

        let seen = f.observe_one("web");
        assert_eq!(seen.config, config);
        assert_eq!(seen.config_hash, config.hash());
        assert_eq!(seen.health, Health::Unknown);
        assert_eq!(seen.restarts, 0);
        let pid = f.running_pid("web");
        await_file(
            &dir.join("logs/stdout.log"),
            "token=s3cr3t same_path=yes svc=web site=a at=127.0.0.1\n",
        );
        await_file(&dir.join("logs/stderr.log"), "oops\n");

        f.provider.stop(&f.site, "web").unwrap();
        assert!(!process_alive(pid));
        assert_eq!(f.observe_one("web").process, ProcessState::Stopped);
        let exit: ExitRecord = read_json(&dir.join(EXIT_FILE)).unwrap().unwrap();
        assert_eq!(exit.how, "killed by SIGTERM");
    }

    #[test]
    fn restarts_count_same_config_starts_and_a_new_provider_adopts_what_runs() {
        let f = fixture();
        let config = sh("db", "exec sleep 60");
        f.provider.start(&f.site, &config).unwrap();
        let first = f.running_pid("db");
        f.provider.start(&f.site, &config).unwrap();
        let second = f.running_pid("db");
        assert_ne!(first, second);
        assert!(
            !process_alive(first),
            "the old process must be stopped before the new one starts"
        );
        assert_eq!(f.observe_one("db").restarts, 1);

        let adopted = LocalProvider::at(f.provider.root())
            .with_shim(PathBuf::from("/nonexistent/shim"))
            .observe(&f.site)
            .unwrap();
        assert_eq!(adopted.len(), 1);
        assert_eq!(adopted[0].process, f.observe_one("db").process);
        assert_eq!(adopted[0].config_hash, config.hash());

        let mut changed = config.clone();
        changed.args = vec!["-c".into(), "exec sleep 61".into()];
        f.provider.start(&f.site, &changed).unwrap();
        let seen = f.observe_one("db");
        assert_eq!((seen.restarts, seen.config_hash), (0, changed.hash()));

        let third = f.running_pid("db");
        f.provider.remove(&f.site, "db").unwrap();
        assert!(!process_alive(third));
        assert!(!f.dir("db").exists());
        assert_eq!(f.provider.observe(&f.site).unwrap(), Vec::new());
    }

    #[test]
    fn exits_are_recorded_with_how_they_happened() {
        let f = fixture();
        f.provider.start(&f.site, &sh("job", "exit 3")).unwrap();
        let state = f.await_process("job", |p| matches!(p, ProcessState::Exited { .. }));
        let ProcessState::Exited { how, at } = state else {
            unreachable!()
        };
        assert_eq!(how, "exit code 3");
        assert!(at.ends_with('Z') && at.len() == 20, "{at}");

        f.provider.start(&f.site, &sh("victim", "exec sleep 60")).unwrap();
        let pid = f.running_pid("victim");
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        let state = f.await_process("victim", |p| !p.is_running());
        assert_eq!(
            state,
            ProcessState::Exited {
                how: "killed by SIGKILL".into(),
                at: exit_at(&f, "victim")
            }
        );
    }

    fn exit_at(f: &Fixture, service: &str) -> String {
        read_json::<ExitRecord>(&f.dir(service).join(EXIT_FILE))
            .unwrap()
            .unwrap()
            .at
    }

    /// Regression: the shim once blocked SIGTERM to `sigwait` for it, std passed the blocked
    /// mask on to the service, and every stop had to wait for SIGKILL.
    #[test]
    fn regression_services_start_with_no_signals_blocked_or_ignored() {
        let f = fixture();
        f.provider.start(&f.site, &sh("plain", "exec sleep 60")).unwrap();
        let pid = f.running_pid("plain");
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        // Bit n-1 stands for signal n. Other ignored signals may come from whoever ran the tests.
        let ours = [Signal::SIGHUP, Signal::SIGINT, Signal::SIGPIPE, Signal::SIGTERM];
        let mask: u64 = ours.iter().map(|s| 1u64 << (*s as i32 - 1)).sum();
        for field in ["SigBlk:", "SigIgn:"] {
            let line = status.lines().find(|l| l.starts_with(field)).unwrap();
            let bits = u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap();
            assert_eq!(bits & mask, 0, "{line}");
        }
        f.provider.remove(&f.site, "plain").unwrap();
    }

    /// Field `n` (1-based, as in proc(5)) of `/proc/PID/stat`, for fields after the name.
    fn stat_field(pid: u32, n: usize) -> String {
        let text = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        text[text.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .nth(n - 3)
            .unwrap()
            .to_string()
    }

    #[test]
    fn the_shim_has_its_own_session_ignores_hup_and_int_and_forwards_term() {
        let f = fixture();
        f.provider.start(&f.site, &sh("svc", "exec sleep 60")).unwrap();
        let run: RunRecord = read_json(&f.dir("svc").join(RUN_FILE)).unwrap().unwrap();
        assert_eq!(
            stat_field(run.shim_pid, 6),
            run.shim_pid.to_string(),
            "the shim leads its own session"
        );
        assert_eq!(
            stat_field(run.pid, 5),
            run.pid.to_string(),
            "the service leads its own process group"
        );
        assert_eq!(
            stat_field(run.pid, 6),
            run.shim_pid.to_string(),
            "the service is in the shim's session"
        );

        let shim = Pid::from_raw(run.shim_pid as i32);
        kill(shim, Signal::SIGHUP).unwrap();
        kill(shim, Signal::SIGINT).unwrap();
        kill(shim, Signal::SIGTERM).unwrap();
        // Had HUP or INT ended the shim, nobody would have recorded the exit.
        let state = f.await_process("svc", |p| !p.is_running());
        assert_eq!(
            state,
            ProcessState::Exited {
                how: "killed by SIGTERM".into(),
                at: exit_at(&f, "svc")
            }
        );
        assert!(wait_until(Duration::from_secs(10), || !is_running(
            run.shim_pid,
            run.shim_start_ticks
        )));
    }

    #[test]
    fn service_logs_rotate_with_the_providers_limits() {
        let mut f = fixture();
        f.provider = f.provider.with_log_limits(LogLimits {
            max_bytes: 1000,
            keep: 2,
        });
        let script = "i=0; while [ $i -lt 400 ]; do echo line $i; i=$((i+1)); done; echo done; exec sleep 60";
        f.provider.start(&f.site, &sh("chatty", script)).unwrap();
        let logs = f.dir("chatty").join(LOG_DIR);
        await_file(&logs.join("stdout.log"), "done\n");
        let size = |name: &str| fs::metadata(logs.join(name)).map(|m| m.len()).unwrap_or(0);
        assert!(
            size("stdout.log.1") > 0 && size("stdout.log.2") > 0,
            "rotated files are kept"
        );
        assert!(!logs.join("stdout.log.3").exists(), "only two are kept");
        for name in ["stdout.log", "stdout.log.1", "stdout.log.2"] {
            assert!(size(name) <= 1000, "{name} is {} bytes", size(name));
        }
        f.provider.remove(&f.site, "chatty").unwrap();
    }

    #[test]
    fn an_unreadable_run_record_is_an_error_and_changes_nothing() {
        let f = fixture();
        let config = sh("kept", "exec sleep 60");
        f.provider.start(&f.site, &config).unwrap();
        let pid = f.running_pid("kept");
        let run_path = f.dir("kept").join(RUN_FILE);
        let good = fs::read_to_string(&run_path).unwrap();
        fs::write(&run_path, "{").unwrap();
        for err in [
            f.provider.observe(&f.site).unwrap_err(),
            f.provider.start(&f.site, &config).unwrap_err(),
            f.provider.stop(&f.site, "kept").unwrap_err(),
        ] {
            let text = err.to_string();
            assert!(
                text.starts_with("site `a`: cannot parse ") && text.contains("run.json"),
                "{text}"
            );
        }
        assert!(process_alive(pid));
        fs::write(&run_path, good).unwrap();
        fs::write(f.dir("kept").join(CONFIG_FILE), "not json").unwrap();
        f.provider.stop(&f.site, "kept").unwrap();
        assert!(!process_alive(pid));
    }

    #[test]
    fn what_a_service_leaves_in_its_group_ends_with_it() {
        let f = fixture();
        f.provider
            .start(&f.site, &sh("forker", "sleep 60 & echo $! > bg.pid; exit 0"))
            .unwrap();
        f.await_process("forker", |p| matches!(p, ProcessState::Exited { .. }));
        let text = await_file(&f.dir("forker").join("bg.pid"), "\n");
        let bg: u32 = text.trim().parse().unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || !process_alive(bg)),
            "background child {bg} survived"
        );
    }

    #[test]
    fn a_service_that_ignores_sigterm_is_killed_after_its_stop_timeout() {
        let f = fixture();
        let mut config = sh("stubborn", r#"trap "" TERM; echo ready; while :; do sleep 1; done"#);
        config.stop_timeout_ms = 300;
        f.provider.start(&f.site, &config).unwrap();
        let pid = f.running_pid("stubborn");
        await_file(&f.dir("stubborn").join("logs/stdout.log"), "ready");
        f.provider.stop(&f.site, "stubborn").unwrap();
        assert!(!process_alive(pid));
        assert_eq!(f.observe_one("stubborn").process, ProcessState::Stopped);
        assert_eq!(
            read_json::<ExitRecord>(&f.dir("stubborn").join(EXIT_FILE))
                .unwrap()
                .unwrap()
                .how,
            "killed by SIGKILL"
        );
    }

    #[test]
    fn a_command_that_cannot_start_is_a_start_error() {
        let f = fixture();
        let mut config = sh("ghost", "");
        config.command = "/nonexistent/server".into();
        let err = f.provider.start(&f.site, &config).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ProviderError::Start { .. }), "{err:?}");
        assert!(
            text.contains("cannot start `/nonexistent/server`") && text.contains("No such file"),
            "{text}"
        );
        assert!(!err.is_transient());
        let ProcessState::Exited { how, .. } = f.observe_one("ghost").process else {
            panic!("not exited")
        };
        assert!(how.starts_with("cannot start"), "{how}");
    }

    /// Issue 9: a service runs as its `user:` — its uid, group and supplementary groups —, its
    /// folder and logs are that user's, and the folders above let it through without listing.
    #[test]
    fn a_service_runs_as_its_user_in_a_folder_of_its_own() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert!(
            nix::unistd::geteuid().is_root(),
            "switching users needs root: run the provider's tests as root"
        );
        let f = fixture();
        let nobody = Account::lookup("nobody").unwrap();
        let mut config = sh("as-nobody", "id -u; id -g; touch mine; sleep 30");
        config.user = Some("nobody".into());
        f.provider.start(&f.site, &config).unwrap();
        assert!(wait_until(Duration::from_secs(10), || f
            .dir("as-nobody")
            .join("mine")
            .exists()));
        let out = await_file(
            &f.dir("as-nobody").join("logs/stdout.log"),
            &format!("{}\n{}\n", nobody.uid, nobody.gid),
        );
        assert!(out.starts_with(&format!("{}\n", nobody.uid)), "{out}");
        for path in [
            f.dir("as-nobody"),
            f.dir("as-nobody").join("logs/stdout.log"),
            f.dir("as-nobody").join("mine"),
        ] {
            assert_eq!(fs::metadata(&path).unwrap().uid(), nobody.uid, "{}", path.display());
        }
        assert_eq!(fs::metadata(f.dir("as-nobody")).unwrap().mode() & 0o777, 0o700);
        for folder in [f.provider.root().to_path_buf(), f.provider.root().join(SERVICES_DIR)] {
            assert_eq!(
                fs::metadata(&folder).unwrap().permissions().mode() & 0o777,
                0o711,
                "{}",
                folder.display()
            );
        }
        f.provider.stop(&f.site, "as-nobody").unwrap();
    }

    #[test]
    fn a_user_that_does_not_exist_is_a_start_error_naming_service_and_user() {
        let f = fixture();
        let mut config = sh("ghost-user", "sleep 30");
        config.user = Some("no-such-user-resurgo".into());
        let err = f.provider.start(&f.site, &config).unwrap_err();
        assert!(matches!(err, ProviderError::Start { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("service `ghost-user`") && text.contains("user `no-such-user-resurgo` does not exist"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_secret_fails_the_start_and_leaves_the_running_instance_alone() {
        let f = fixture();
        let config = sh("api", "exec sleep 60");
        f.provider.start(&f.site, &config).unwrap();
        let pid = f.running_pid("api");
        let mut broken = config.clone();
        broken.env.insert(
            "KEY".into(),
            EnvValue::Secret {
                secret: SecretRef::Env("RESURGO_TEST_NO_SUCH_VAR".into()),
            },
        );
        let err = f.provider.start(&f.site, &broken).unwrap_err();
        assert_eq!(
            err.to_string(),
            "service `api`: cannot read secret for `KEY`: environment variable `RESURGO_TEST_NO_SUCH_VAR` is not set"
        );
        assert_eq!(f.running_pid("api"), pid);
        f.provider.remove(&f.site, "api").unwrap();
    }

    #[test]
    fn running_services_with_a_check_are_probed_in_their_workdir() {
        let f = fixture();
        let mut config = sh("checked", "mkdir -p work && exec sleep 60");
        config.workdir = Some("work".into());
        config.health = Some(HealthCheck {
            http: None,
            tcp: None,
            exec: Some(ExecProbe {
                command: vec!["test".into(), "-f".into(), "ready".into()],
            }),
            // Probed at every observe (see the next test for the interval).
            interval: Some(resurgo_spec::Duration(Duration::from_millis(1))),
            timeout: None,
            start_timeout: None,
        });
        fs::create_dir_all(f.dir("checked").join("work")).unwrap();
        f.provider.start(&f.site, &config).unwrap();
        assert_eq!(
            f.observe_one("checked").health,
            Health::Unhealthy {
                last_probe: "exit code 1".into()
            }
        );
        fs::write(f.dir("checked").join("work/ready"), "").unwrap();
        assert_eq!(f.observe_one("checked").health, Health::Healthy);
        assert!(f.provider.probe(&f.site, &config).healthy);
        f.provider.stop(&f.site, "checked").unwrap();
        assert_eq!(f.observe_one("checked").health, Health::Unknown);
    }

    /// A daemon observes its site every tick, from more than one thread (issue 9): a service
    /// is probed only once its check's `interval` has passed since its last probe of that
    /// process, and in between the last result stands. A new process, a changed check or a new
    /// provider (a restarted daemon) is probed at once.
    #[test]
    fn observe_probes_a_service_only_once_its_interval_has_passed() {
        let f = fixture();
        let checked_every = |ms: u64| HealthCheck {
            http: None,
            tcp: None,
            // Each probe leaves a line in `probes`.
            exec: Some(ExecProbe {
                command: ["sh", "-c", "echo >> probes; test -f ready"].map(String::from).to_vec(),
            }),
            interval: Some(resurgo_spec::Duration(Duration::from_millis(ms))),
            timeout: None,
            start_timeout: None,
        };
        let mut config = sh("paced", "exec sleep 60");
        config.health = Some(checked_every(3_600_000));
        f.provider.start(&f.site, &config).unwrap();
        let probes = || fs::read_to_string(f.dir("paced").join("probes")).map_or(0, |t| t.lines().count());
        let unhealthy = Health::Unhealthy {
            last_probe: "exit code 1".into(),
        };

        assert_eq!(f.observe_one("paced").health, unhealthy);
        assert_eq!(probes(), 1);
        fs::write(f.dir("paced").join("ready"), "").unwrap();
        for _ in 0..3 {
            assert_eq!(f.observe_one("paced").health, unhealthy, "the last result stands");
        }
        assert_eq!(probes(), 1, "no probe before the interval has passed");
        let clone = f.provider.clone();
        assert_eq!(clone.observe(&f.site).unwrap()[0].health, unhealthy, "clones share it");

        let restarted = LocalProvider::at(f.provider.root());
        assert_eq!(restarted.observe(&f.site).unwrap()[0].health, Health::Healthy);
        assert_eq!(probes(), 2, "a new provider remembers nothing");

        // A new process with a new check, probed every 200 ms.
        fs::remove_file(f.dir("paced").join("ready")).unwrap();
        config.health = Some(checked_every(200));
        f.provider.start(&f.site, &config).unwrap();
        let before = probes();
        assert_eq!(f.observe_one("paced").health, unhealthy, "probed at once");
        fs::write(f.dir("paced").join("ready"), "").unwrap();
        assert_eq!(f.observe_one("paced").health, unhealthy);
        assert_eq!(probes(), before + 1);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(f.observe_one("paced").health, Health::Healthy, "probed again");
        assert_eq!(probes(), before + 2);
        f.provider.remove(&f.site, "paced").unwrap();
    }

    #[test]
    fn an_absent_root_is_not_set_up_and_an_unreadable_one_is_unreachable() {
        let f = fixture();
        assert_eq!(f.provider.observe(&f.site).unwrap(), Vec::new(), "set up and empty");
        fs::remove_dir_all(f.provider.root()).unwrap();
        // Lost, not mounted, or never set up: not an empty site, and nothing is made there.
        let err = f.provider.observe(&f.site).unwrap_err();
        assert!(matches!(err, ProviderError::NotSetUp { .. }), "{err:?}");
        assert!(err.to_string().contains("is not set up here"), "{err}");
        let stop = f.provider.stop(&f.site, "web").unwrap_err();
        assert!(
            matches!(stop, ProviderError::NotSetUp { .. }),
            "a stop fences nothing: {stop:?}"
        );
        assert!(f.provider.start(&f.site, &sh("web", "sleep 60")).is_err());
        assert!(!f.provider.root().exists(), "nothing created in the lost site's place");

        // A mount point whose volume did not mount: the folder is there, the site is not.
        fs::create_dir_all(f.provider.root()).unwrap();
        let err = f.provider.observe(&f.site).unwrap_err();
        assert!(
            matches!(err, ProviderError::NotSetUp { .. }),
            "an empty mount point: {err:?}"
        );
        assert!(f.provider.start(&f.site, &sh("web", "sleep 60")).is_err());
        assert_eq!(
            fs::read_dir(f.provider.root()).unwrap().count(),
            0,
            "nothing made in it"
        );
        fs::remove_dir(f.provider.root()).unwrap();

        fs::write(f.provider.root(), "not a folder").unwrap();
        let err = f.provider.observe(&f.site).unwrap_err();
        assert!(matches!(err, ProviderError::SiteUnreachable { .. }), "{err:?}");
        assert!(err.to_string().ends_with("is not a directory"), "{err}");
        assert!(err.is_transient());
    }

    #[test]
    fn a_pruned_service_is_stopped_and_its_folder_set_aside_with_its_data() {
        let f = fixture();
        f.provider
            .start(&f.site, &sh("db", "echo kept > data; exec sleep 60"))
            .unwrap();
        await_file(&f.dir("db").join("data"), "kept");
        f.provider.remove(&f.site, "db").unwrap();
        assert!(f.provider.observe(&f.site).unwrap().is_empty(), "forgotten");
        let copies = f.provider.set_aside_copies(&f.site).unwrap();
        assert_eq!(copies.len(), 1, "{copies:?}");
        assert_eq!(fs::read_to_string(copies[0].path.join("data")).unwrap(), "kept\n");
        assert!(copies[0].why.contains("pruned"), "{copies:?}");
    }

    #[test]
    fn stopping_or_removing_an_unknown_service_is_a_no_op_and_bad_names_are_refused() {
        let f = fixture();
        f.provider.stop(&f.site, "nothing").unwrap();
        f.provider.remove(&f.site, "nothing").unwrap();
        assert!(!f.provider.root().join("services").exists());
        let err = f.provider.stop(&f.site, "../escape").unwrap_err();
        assert!(
            err.to_string().contains("`../escape` is not a valid service name"),
            "{err}"
        );
    }

    #[test]
    fn secrets_from_files_lose_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        for (content, want) in [("v\n", "v"), ("v\r\n", "v"), ("v\n\n", "v\n"), ("v", "v")] {
            fs::write(&path, content).unwrap();
            assert_eq!(read_secret(&SecretRef::File(path.display().to_string())).unwrap(), want);
        }
        let missing = read_secret(&SecretRef::File("/nonexistent/secret".into())).unwrap_err();
        assert!(missing.starts_with("cannot read /nonexistent/secret: "), "{missing}");
    }

    /// What callers ask instead of knowing the folder: where a dataset lives, who owns it,
    /// and where the site is.
    #[test]
    fn dataset_paths_owners_and_the_description_come_from_the_sites_own_folder() {
        let f = fixture();
        let web = f.provider.service_dir("web");
        let at = |workdir, path| f.provider.data_path(&f.site, "web", workdir, path).unwrap();
        assert_eq!(at(None, "data/x.db"), web.join("data/x.db"));
        assert_eq!(at(Some("work"), "x.db"), web.join("work/x.db"));
        assert_eq!(at(Some("/srv/web"), "x.db"), PathBuf::from("/srv/web/x.db"));
        assert_eq!(at(None, "/var/lib/x.db"), PathBuf::from("/var/lib/x.db"));
        assert!(f.provider.data_path(&f.site, "../escape", None, "x").is_err());

        let me = fs::metadata(f.provider.root()).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(f.provider.owner(&f.site, f.provider.root()), Some((me.uid(), me.gid())));
        assert_eq!(f.provider.owner(&f.site, &web.join("absent")), None);
        assert_eq!(f.provider.describe(&f.site), f.provider.root().display().to_string());
    }

    #[test]
    fn tails_keep_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let text: String = (1..=30).map(|n| format!("line {n}\n")).collect();
        fs::write(&path, text).unwrap();
        let tail = tail(&path);
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert!(tail.starts_with("line 21\n") && tail.ends_with("line 30"), "{tail}");
        assert_eq!(super::tail(&dir.path().join("absent")), "");
    }
}
