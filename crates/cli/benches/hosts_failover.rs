//! Benchmark: RTO and RPO of the PostgreSQL reference stack with every site on its own host —
//! the deployment of docs/deployment.md, as `tests/it/hosts.rs` builds it (borrowed with the
//! test modules it needs): a, b and the witness in network and mount namespaces of their own,
//! etcd on the three, S3 and Git at an infrastructure node, the agents with automatic failover
//! on. Both strategies, several runs each, min / median / max with the breakdown and a verdict:
//! RTO ≤ 5 s median with a standby, ≤ 10 s with backups; RPO ≤ 1 s with a standby, ≤ 5 s with
//! backups. Detection is included: the fault is site a isolated from everyone, and b's agent
//! detects it, decides and runs the failover with no command.
//!
//! The spec's failover timing is `QUICK`: heartbeats every 300 ms, suspect after three
//! missed, the old primary fenced by 1.8 s, its lease gone at 3 s, a promotion no earlier than
//! 2.4 s (the tests use a slower one).
//!
//! A canary writes one row every 50 ms from the witness's host to whichever server accepts
//! writes; RTO = fault → first write acknowledged at b; RPO = the last acknowledged write at a
//! minus the newest of a's acknowledged writes present at b (0 if all are).
//!
//! `cargo bench -p resurgo --bench hosts_failover` (RESURGO_BENCH_RUNS, default 3;
//! RESURGO_BENCH_ONLY=standby|backup). Needs root, iproute2, etcd, PostgreSQL and rclone, like
//! the tests it borrows from.

mod common;
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/dns_route.rs"]
mod dns_route;
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/hosts.rs"]
mod hosts;
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

use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use common::stats;
use hosts::Hosts;
use pg_failover::{loss, Canary};
use util::poll;

/// The failover timing of the benchmark: heartbeats every 300 ms, suspect after 0.9 s, the old
/// primary fenced by 1.8 s, its lease gone at 3 s, a promotion no earlier than 2.4 s.
const QUICK: &str = "  heartbeat_interval: 300ms\n  suspect_after: 3\n  lease_ttl: 3s\n  fencing_deadline: 1500ms\n  promotion_delay: 1500ms\n  cooldown: 1s\n";

/// What one run measured (seconds).
struct Sample {
    rto: f64,
    detection: Option<f64>,
    decision: Option<f64>,
    steps: Option<f64>,
    rpo: f64,
    lost: f64,
}

fn run(i: usize, strategy: &str) -> Sample {
    let hosts = Hosts::start_timed(&format!("hb{}{i}", &strategy[..1]), strategy, QUICK);
    hosts.succeeds(&["repo", "init"]);
    hosts.succeeds(&["apply"]);
    let standby = strategy == "standby";
    let ready = poll(Duration::from_secs(120), || {
        (hosts.is_primary("a")? && (!standby || !hosts.is_primary("b")?)).then_some(())
    });
    assert!(ready.is_some(), "run {i}: a never served:\n{}", hosts.logs());
    hosts
        .sql(
            "a",
            "CREATE TABLE orders (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())",
        )
        .unwrap();
    if !standby {
        hosts.succeeds(&["backup", "--replicate"]);
    }
    let (a, b) = (hosts.lab.addr("a").to_string(), hosts.lab.addr("b").to_string());
    let conninfo = format!(
        "host={a},{b} port=5432,5432 user=nobody dbname=postgres target_session_attrs=read-write connect_timeout=2"
    );
    let ns = hosts.lab.ns("w");
    let canary = Canary::start(Duration::from_millis(50), move |q| {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &ns]).arg(pg::pg_bin("psql"));
        pg::run_psql(cmd, &conninfo, q)
    });
    // Under load until b's agent has measured b caught up (the lag gate reads it), 5 s at least.
    let loaded = Instant::now();
    if standby {
        let lag = hosts.file("b", &hosts.host.join("state/lag/orders@b.json"));
        let measured = poll(Duration::from_secs(60), || {
            let v: Value = serde_json::from_slice(&std::fs::read(&lag).ok()?).ok()?;
            (v["streaming"] == true && v["seconds"].as_f64().is_some_and(|s| s < 1.0)).then_some(())
        });
        assert!(measured.is_some(), "run {i}: b's lag never measured:\n{}", hosts.logs());
    }
    std::thread::sleep(Duration::from_secs(5).saturating_sub(loaded.elapsed())); // pacing the load
    let fault = SystemTime::now();
    hosts.lab.isolate("a");
    let first = poll(Duration::from_secs(120), || canary.first_ack_at(&b, fault));
    let acks = canary.stop();
    let first = first.unwrap_or_else(|| panic!("run {i}: no write acknowledged at b:\n{}", hosts.logs()));
    let ids: Vec<i64> = hosts
        .sql("b", "SELECT id FROM orders ORDER BY id")
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let (lost, rpo) = loss(&acks, &a, &ids);
    let runs = hosts.file("b", &hosts.host.join("state/runs"));
    let measures = poll(Duration::from_secs(30), || {
        let path = std::fs::read_dir(&runs)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".measures.json"))?;
        serde_json::from_slice::<Value>(&std::fs::read(path).ok()?).ok()
    })
    .unwrap_or_else(|| panic!("run {i}: no measures at b:\n{}", hosts.logs()));
    let f = |k: &str| measures[k].as_f64();
    let (detection, decision) = (f("detection_s"), f("decision_s"));
    Sample {
        rto: first.at.duration_since(fault).unwrap_or_default().as_secs_f64(),
        detection,
        decision,
        steps: f("rto_s").map(|r| r - detection.unwrap_or(0.0) - decision.unwrap_or(0.0)),
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
    for (strategy, rto, rpo, what) in [
        ("standby", 5.0, 1.0, "streaming replica at b, promoted"),
        (
            "backup",
            10.0,
            5.0,
            "base backup + WAL archive at a into a's bucket, shipped to b's; restored at b",
        ),
    ] {
        if !(only.is_empty() || only == strategy) {
            continue;
        }
        eprintln!("{strategy} strategy…");
        let v: Vec<Sample> = (0..runs)
            .map(|i| {
                let s = run(i, strategy);
                eprintln!(
                    "  run {i}: RTO {:.2}s, RPO {:.2}s, {} writes lost",
                    s.rto, s.rpo, s.lost
                );
                s
            })
            .collect();
        println!("PostgreSQL across hosts, strategy: {strategy} ({what}), {runs} runs:");
        println!("  fault: a isolated from everyone; detected and failed over by b's agent; canary every 50 ms");
        stats(
            "RTO (fault → first write at b)",
            "s",
            v.iter().map(|s| s.rto).collect(),
            Some(rto),
        );
        stats("  detection", "s", v.iter().filter_map(|s| s.detection).collect(), None);
        stats(
            "  decision (promotion delay)",
            "s",
            v.iter().filter_map(|s| s.decision).collect(),
            None,
        );
        stats(
            "  failover steps",
            "s",
            v.iter().filter_map(|s| s.steps).collect(),
            None,
        );
        stats("RPO (canary)", "s", v.iter().map(|s| s.rpo).collect(), Some(rpo));
        stats("  writes lost", "", v.iter().map(|s| s.lost).collect(), None);
    }
}
