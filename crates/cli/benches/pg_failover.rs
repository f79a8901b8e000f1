//! Benchmark: RTO and RPO of the PostgreSQL reference stack (PostgreSQL at site a, site a
//! lost, recovered at b), both strategies, each over several runs, reporting min / median /
//! max with the breakdown and a verdict per target: RTO ≤ 10 s from fault to the first
//! acknowledged write at the DR site, with detection ≤ 3 s; RPO ≤ 1 s with a standby, ≤ 5 s
//! with backups.
//!
//! - standby: the partition tests' stack (`Stack`, borrowed with the test modules it needs) (network namespaces a, b and the witness w, a 3-member
//!   etcd, agents with automatic failover, a streaming standby at b); fault = a isolated.
//! - backup: two loopback sites, base backup + WAL archiving at a, replicated to b every second;
//!   fault = a's PostgreSQL SIGKILLed and its repository gone; `resurgo failover --to b` is
//!   started at once.
//!
//! In both, a canary client writes one row every 50 ms to whichever server accepts writes
//! (`target_session_attrs=read-write`), recording each acknowledged write's id and time. RTO =
//! fault → first acknowledged write at b; RPO = the last acknowledged write at a minus the
//! newest of a's acknowledged writes present at b (0 if all are).
//!
//! `cargo bench -p resurgo --bench pg_failover` (RESURGO_BENCH_RUNS sets the count, default 3;
//! RESURGO_BENCH_ONLY=standby|backup runs one strategy). Needs root, iproute2, etcd and
//! PostgreSQL, like the tests it borrows from.

mod common;
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/dns_route.rs"]
mod dns_route;
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/netns.rs"]
mod netns;
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/partition.rs"]
mod partition;
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/pg.rs"]
mod pg;
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/pg_failover.rs"]
mod pg_failover;
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/util.rs"]
mod util;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use common::stats;
use partition::Stack;
use pg::run_psql;
use pg_failover::{loss, newest_run, Canary, PgPair};
use util::poll;

/// What one run measured (seconds; None: not part of this strategy's figure).
#[derive(Default)]
struct Sample {
    detection: Option<f64>,
    decision: Option<f64>,
    steps: f64,
    restore: Option<f64>,
    start: Option<f64>,
    rto: f64,
    run_rto: f64,
    rpo: f64,
    lost: f64,
}

fn secs_between(a: SystemTime, b: SystemTime) -> f64 {
    b.duration_since(a).unwrap_or_default().as_secs_f64()
}

/// The duration of the run's step whose name starts with `prefix`.
fn step_secs(run: &Value, prefix: &str) -> Option<f64> {
    run["steps"]
        .as_array()?
        .iter()
        .find(|s| s["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
        .and_then(|s| s["millis"].as_f64())
        .map(|ms| ms / 1000.0)
}

fn all_steps_secs(run: &Value) -> f64 {
    run["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["millis"].as_f64()).sum::<f64>() / 1000.0)
        .unwrap_or(0.0)
}

fn standby_run(i: usize) -> Sample {
    let mut stack = Stack::start("pgbench", Stack::FAST);
    stack.wait_ready();
    stack
        .sql(
            "w",
            "a",
            "CREATE TABLE orders (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())",
        )
        .unwrap();
    let (a, b) = (stack.lab.addr("a").to_string(), stack.lab.addr("b").to_string());
    let ns = stack.lab.ns("w");
    let conninfo = format!(
        "host={a},{b} port=5432,5432 user=nobody dbname=postgres target_session_attrs=read-write connect_timeout=2"
    );
    let canary = Canary::start(Duration::from_millis(50), move |q| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns]).arg(pg::pg_bin("psql"));
        run_psql(cmd, &conninfo, q)
    });
    // The load runs until b's agent has measured b streaming and caught up under it (the
    // promotion's lag gate reads that measurement), and for 3 s at least.
    let loaded = Instant::now();
    let measured = poll(Duration::from_secs(60), || {
        let text = std::fs::read(stack.state("b").join("lag/orders@b.json")).ok()?;
        let lag: Value = serde_json::from_slice(&text).ok()?;
        (lag["streaming"] == true && lag["seconds"].as_f64().is_some_and(|s| s < 1.0)).then_some(())
    });
    assert!(measured.is_some(), "run {i}: b's lag never measured:\n{}", stack.logs());
    std::thread::sleep(Duration::from_secs(3).saturating_sub(loaded.elapsed())); // pacing the load
    assert!(
        canary.acks().iter().any(|w| w.server == a),
        "run {i}: the canary wrote nothing at a:\n{}",
        stack.logs()
    );

    let fault = SystemTime::now();
    stack.lab.isolate("a");
    let first = poll(Duration::from_secs(60), || canary.first_ack_at(&b, fault));
    let acks = canary.stop();
    let first = first.unwrap_or_else(|| panic!("run {i}: no write acknowledged at b:\n{}", stack.logs()));
    let ids: Vec<i64> = stack
        .sql("w", "b", "SELECT id FROM orders ORDER BY id")
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let (lost, rpo) = loss(&acks, &a, &ids);
    // The run's measures, written when it finishes.
    let measures = poll(Duration::from_secs(30), || {
        let runs = std::fs::read_dir(stack.state("b").join("runs")).ok()?;
        let path = runs
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".measures.json"))?;
        serde_json::from_slice::<Value>(&std::fs::read(path).ok()?).ok()
    })
    .unwrap_or_else(|| panic!("run {i}: no measures at b:\n{}", stack.logs()));
    let f = |k: &str| measures[k].as_f64();
    let (detection, decision, run_rto) = (f("detection_s"), f("decision_s"), f("rto_s").unwrap_or(0.0));
    Sample {
        detection,
        decision,
        steps: run_rto - detection.unwrap_or(0.0) - decision.unwrap_or(0.0),
        restore: None,
        start: None,
        rto: secs_between(fault, first.at),
        run_rto,
        rpo,
        lost: lost as f64,
    }
}

fn backup_run(i: usize) -> Sample {
    let pair = PgPair::start(134, "2s");
    let canary = Canary::start(Duration::from_millis(50), pair.writer());
    let stop = AtomicBool::new(false);
    let fault = std::thread::scope(|s| {
        // Replication every second: stands for the controller's replication cadence.
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let tick = Instant::now();
                let _ = pair.resurgo(&["replicate", "orders"]);
                std::thread::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed()));
            }
        });
        std::thread::sleep(Duration::from_secs(6)); // pacing the load
        let fault = SystemTime::now();
        pair.lose_a();
        stop.store(true, Ordering::SeqCst);
        fault
    });
    let started = Instant::now();
    let failover = pair.resurgo(&["failover", "--to", "b", "--json"]);
    let took = started.elapsed().as_secs_f64();
    assert_eq!(
        failover.code,
        0,
        "run {i}: failover:\n{}{}\n{}",
        failover.stdout,
        failover.stderr,
        pair.log("b")
    );
    let first = poll(Duration::from_secs(30), || canary.first_ack_at(&pair.addr_b, fault));
    let acks = canary.stop();
    let first = first.unwrap_or_else(|| panic!("run {i}: no write acknowledged at b:\n{}", pair.log("b")));
    let ids = pair.ids("b");
    let (lost, rpo) = loss(&acks, &pair.addr_a, &ids);
    let runs = pair.resurgo(&["runs", "--json"]).json();
    let run = newest_run(&runs);
    Sample {
        detection: None,
        decision: None,
        steps: all_steps_secs(run).max(0.0).min(took),
        restore: step_secs(run, "restore"),
        start: step_secs(run, "start"),
        rto: secs_between(fault, first.at),
        run_rto: run["measures"]["rto_s"].as_f64().unwrap_or(took),
        rpo,
        lost: lost as f64,
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // built by `cargo test --benches`; only `cargo bench` runs it.
    }
    let runs = common::runs(3);
    let only = std::env::var("RESURGO_BENCH_ONLY").unwrap_or_default();
    let collect = |f: &dyn Fn(usize) -> Sample| -> Vec<Sample> {
        (0..runs)
            .map(|i| {
                let s = f(i);
                eprintln!(
                    "  run {i}: RTO {:.2}s, RPO {:.2}s, {} writes lost",
                    s.rto, s.rpo, s.lost
                );
                s
            })
            .collect()
    };
    let pick = |v: &[Sample], f: fn(&Sample) -> Option<f64>| v.iter().filter_map(f).collect::<Vec<f64>>();
    if only.is_empty() || only == "standby" {
        eprintln!("standby strategy…");
        let v = collect(&standby_run);
        println!(
            "PostgreSQL, strategy: standby (streaming replica at b, promoted; network namespaces, etcd, agents), {runs} runs:"
        );
        println!("  fault: a isolated from b and the witness; canary every 50 ms from the witness's node");
        stats(
            "RTO (fault → first write at b)",
            "s",
            pick(&v, |s| Some(s.rto)),
            Some(10.0),
        );
        stats("  detection", "s", pick(&v, |s| s.detection), Some(3.0));
        stats("  decision (promotion delay)", "s", pick(&v, |s| s.decision), None);
        stats("  failover steps", "s", pick(&v, |s| Some(s.steps)), None);
        stats(
            "  run's own RTO (last heartbeat →)",
            "s",
            pick(&v, |s| Some(s.run_rto)),
            None,
        );
        stats("RPO (canary)", "s", pick(&v, |s| Some(s.rpo)), Some(1.0));
        stats("  writes lost", "", pick(&v, |s| Some(s.lost)), None);
    }
    if only.is_empty() || only == "backup" {
        eprintln!("backup strategy…");
        let v = collect(&backup_run);
        println!(
            "PostgreSQL, strategy: backup (base backup + WAL archive at a, archive_timeout 1 s, replicated to b), {runs} runs:"
        );
        println!(
            "  fault: a's PostgreSQL SIGKILLed and its repository lost; `resurgo failover --to b` started at once:\n  \
             detection is not part of this figure (an agent would add its detection and decision, as above).\n  \
             `resurgo replicate` runs every 1 s, as the controller's log shipping does (every archive timeout,\n  \
             half the RPO objective): RPO ≈ archive_timeout (1 s) + shipping interval (1 s) + one copy."
        );
        stats(
            "RTO (fault → first write at b)",
            "s",
            pick(&v, |s| Some(s.rto)),
            Some(10.0),
        );
        stats("  detection", "s", pick(&v, |s| s.detection), None);
        stats("  failover steps (run)", "s", pick(&v, |s| Some(s.steps)), None);
        stats("    restore base backup", "s", pick(&v, |s| s.restore), None);
        stats("    start + WAL replay", "s", pick(&v, |s| s.start), None);
        stats(
            "  run's own RTO (start → end)",
            "s",
            pick(&v, |s| Some(s.run_rto)),
            None,
        );
        stats("RPO (canary)", "s", pick(&v, |s| Some(s.rpo)), Some(5.0));
        stats("  writes lost", "", pick(&v, |s| Some(s.lost)), None);
    }
}
