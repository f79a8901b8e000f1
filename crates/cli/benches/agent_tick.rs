//! Benchmark: the steady state of one site's daemon (issue 9) — `resurgo agent --site a
//! --tick 500ms` beside 300 running services, each a small real process (`resurgo
//! example-app` on a port of its own) with a health check: most every 5 s, a few every 1 s;
//! `sync: manual`. Targets: a controller tick (observe + plan + the lease gate, with the
//! probes that are due) ≤ 250 ms, and the agent process ≤ 150 MB at its peak (VmHWM; the
//! services are processes of their own and do not count).
//!
//! The spec is applied (every service healthy), then the daemon runs for a while with
//! `RESURGO_LOG=resurgo_controller=debug,resurgo_provider=debug` in JSON: each tick logs its
//! duration (`tick`, `millis`) and each observation how many probes it ran (`observed`,
//! `probed`), inside the controller's `reconcile` span or the agent's.
//!
//! `cargo bench -p resurgo --bench agent_tick` (RESURGO_BENCH_SECS sets how long the daemon
//! runs, default 60; RESURGO_BENCH_SERVICES how many services, default 300;
//! RESURGO_BENCH_INTERVAL gives every check that interval instead — `1ms` probes every service
//! at every observation, as resurgo did before it honoured `health.interval`).

#[allow(dead_code)] // `runs`: this benchmark is one long run.
mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::stats;

const BIN: &str = env!("CARGO_BIN_EXE_resurgo");
const ADDRESS: &str = "127.77.0.1";
const FIRST_PORT: u16 = 21000;
const TICK_MS: f64 = 500.0;
/// Every this many services, one is checked every 1 s (the rest every 5 s); every
/// [`TCP_EVERY`]th has a `tcp` check instead of `http`.
const FAST_EVERY: usize = 30;
const TCP_EVERY: usize = 10;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn spec(services: usize) -> String {
    let mut s = format!(
        "apiVersion: resurgo.dev/v1alpha1\nsystem: bench\ninputs:\n  resurgo: {BIN}\nsites:\n  a:\n    provider: local\n    address: {ADDRESS}\n    capacity: {{ cpu: 1000, memory: 1Ti }}\nservices:\n"
    );
    for n in 0..services {
        let port = FIRST_PORT + n as u16;
        let probe = if n % TCP_EVERY == 0 {
            format!("tcp: {{ port: {port} }}")
        } else {
            format!("http: {{ port: {port}, path: /healthz }}")
        };
        let interval = match std::env::var("RESURGO_BENCH_INTERVAL") {
            Ok(every) => every,
            Err(_) if n % FAST_EVERY == 0 => "1s".into(),
            Err(_) => "5s".into(),
        };
        let _ = write!(
            s,
            "  svc{n:03}:\n    command: ${{inputs.resurgo}}\n    args: [example-app, --port, \"{port}\"]\n    ports: [{port}]\n    health:\n      {probe}\n      interval: {interval}\n      start_timeout: 60s\n    site: a\n    sync: manual\n    stop_timeout: 2s\n"
        );
    }
    s
}

/// Kills every service (and its supervisor) recorded under the state folder, and the daemon,
/// however the benchmark ends.
struct Cleanup {
    state: PathBuf,
    daemon: Option<std::process::Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        common::kill_services(&self.state, "a");
    }
}

/// The stderr of each service that has ended (an apply that failed says why).
fn ended_services(state: &Path) -> String {
    let mut out = String::new();
    for dir in std::fs::read_dir(state.join("sites/a/services"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if dir.path().join("exit.json").exists() {
            let log = std::fs::read_to_string(dir.path().join("logs/stderr.log")).unwrap_or_default();
            let _ = writeln!(out, "{}: {}", dir.file_name().to_string_lossy(), log.trim());
        }
    }
    out
}

fn resurgo(spec: &Path, state: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--spec")
        .arg(spec)
        .arg("--state")
        .arg(state)
        .output()
        .expect("run resurgo")
}

/// A value of `/proc/<pid>/status` in MB (`VmHWM`, `VmRSS`).
fn proc_mb(pid: u32, key: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Whether the log line's spans include one named `name`.
fn in_span(line: &Value, name: &str) -> bool {
    line["spans"]
        .as_array()
        .is_some_and(|spans| spans.iter().any(|s| s["name"] == name))
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // built by `cargo test --benches`; only `cargo bench` runs it.
    }
    let services = env_number("RESURGO_BENCH_SERVICES", 300) as usize;
    let secs = env_number("RESURGO_BENCH_SECS", 60);
    let dir = tempfile::tempdir().expect("temp dir");
    let spec_dir = dir.path().join("spec");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&spec_dir).unwrap();
    std::fs::write(spec_dir.join("resurgo.yaml"), spec(services)).unwrap();
    let mut cleanup = Cleanup {
        state: state.clone(),
        daemon: None,
    };

    let begun = Instant::now();
    let out = resurgo(&spec_dir, &state, &["apply"]);
    let applied = begun.elapsed();
    assert!(
        out.status.success(),
        "apply failed:\n{}\n{}\nthe services that ended said:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        ended_services(&state)
    );
    let out = resurgo(&spec_dir, &state, &["status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let healthy = status.to_string().matches("\"health\":\"healthy\"").count();
    assert_eq!(healthy, services, "every service healthy after apply");

    let log_path = dir.path().join("agent.log");
    let daemon = Command::new(BIN)
        .args(["agent", "--site", "a", "--tick", "500ms", "--spec"])
        .arg(&spec_dir)
        .arg("--state")
        .arg(&state)
        .env("RESURGO_LOG", "resurgo_controller=debug,resurgo_provider=debug")
        .env("RESURGO_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("start the agent");
    let pid = daemon.id();
    cleanup.daemon = Some(daemon);
    let mut rss = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        let alive = cleanup.daemon.as_mut().unwrap().try_wait().unwrap().is_none();
        assert!(
            alive,
            "the agent ended:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        rss.extend(proc_mb(pid, "VmRSS:"));
    }
    let peak = proc_mb(pid, "VmHWM:").expect("the agent's VmHWM");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = cleanup.daemon.take().unwrap().wait();

    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let message = |l: &Value| l["fields"]["message"].as_str().unwrap_or_default().to_string();
    let ticks: Vec<f64> = lines
        .iter()
        .filter(|l| message(l) == "tick" && l["target"] == "resurgo_controller::reconcile")
        .filter_map(|l| l["fields"]["millis"].as_f64())
        .collect();
    let observes: Vec<(bool, f64)> = lines
        .iter()
        .filter(|l| message(l) == "observed" && l["target"] == "resurgo_provider::local")
        .filter_map(|l| Some((in_span(l, "reconcile"), l["fields"]["probed"].as_f64()?)))
        .collect();
    assert!(ticks.len() > 2, "too few ticks logged:\n{log}");
    let in_ticks: Vec<f64> = observes.iter().filter(|(t, _)| *t).map(|(_, p)| *p).collect();
    let elsewhere: Vec<f64> = observes.iter().filter(|(t, _)| !*t).map(|(_, p)| *p).collect();
    let total_probes: f64 = observes.iter().map(|(_, p)| p).sum();

    let fast = services.div_ceil(FAST_EVERY);
    let overridden = std::env::var("RESURGO_BENCH_INTERVAL").ok();
    let expected = match &overridden {
        Some(_) => services as f64,
        None => (services - fast) as f64 * TICK_MS / 5000.0 + fast as f64 * TICK_MS / 1000.0,
    };
    let checks = match &overridden {
        Some(every) => format!("all checked every {every}"),
        None => format!("{} checked every 5 s, {fast} every 1 s", services - fast),
    };
    println!(
        "agent --site a, tick {TICK_MS} ms, {services} services (example-app; {checks}), {secs} s; apply took {:.1} s",
        applied.as_secs_f64()
    );
    println!("  first tick (nothing probed yet)    {:>6.2}ms", ticks[0]);
    stats("tick (observe + plan), steady", "ms", ticks[1..].to_vec(), Some(250.0));
    println!(
        "  peak RSS of the agent (VmHWM)      {peak:>6.1}MB   (VmRSS last {:.1}MB)   target ≤ 150MB: {}",
        rss.last().copied().unwrap_or_default(),
        if peak <= 150.0 { "met" } else { "MISSED" }
    );
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    println!(
        "  probes per tick                    mean {:>6.1} over {} ticks (steady mean {:.1}; the intervals allow ≈ {expected:.1})",
        mean(&in_ticks),
        in_ticks.len(),
        mean(in_ticks.get(1..).unwrap_or_default()),
    );
    println!(
        "  probes elsewhere (the agent's own observations)  {} observes, mean {:.1} probes; all probes {:.1}/s",
        elsewhere.len(),
        mean(&elsewhere),
        total_probes / secs as f64
    );
}
