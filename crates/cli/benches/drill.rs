//! Benchmark: drills, several runs each, min / median / max.
//!
//! - **isolated, PostgreSQL reference stack with a 1 GiB dataset**: PostgreSQL at a with its
//!   base backup and WAL archive replicated to b (the tests' `PgPair`), about 1 GiB of rows;
//!   each run is `resurgo drill run try-db` (isolated): a copy of b's newest restore point
//!   restored into a sandbox at b, PostgreSQL started there on it, checked by `pg_amcheck`.
//!   Reported: the time until the sandbox serves (the drill's RTO: restore + start +
//!   recovery) and the whole drill (teardown included).
//! - **live site loss on one machine** (the quickstart's shape: a web service with SQLite, a
//!   proxy route, `controller --agents` with automatic failover): each run is `resurgo drill
//!   run lose-a`: a lost, b's agent fails over, measured, failed back. Reported: RTO (fault →
//!   the route answers from b) with its detection, RPO from the canary, and the whole drill.
//!
//! `cargo bench -p resurgo --bench drill` (RESURGO_BENCH_RUNS, default 3; RESURGO_BENCH_ONLY=
//! isolated|live; RESURGO_BENCH_GIB sets the dataset's size, default 1). Needs root,
//! iproute2 and PostgreSQL, like the tests it borrows from.

#[allow(dead_code, unused_imports)]
#[path = "../tests/it/browser.rs"]
mod browser;
mod common;
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/drill.rs"]
mod drill;
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/pg.rs"]
mod pg;
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/pg_failover.rs"]
mod pg_failover;
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/report_consumers.rs"]
mod report_consumers;
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/util.rs"]
mod util;

use std::time::{Duration, Instant};

use serde_json::Value;

use common::stats;

fn isolated(runs: usize) {
    let gib: f64 = std::env::var("RESURGO_BENCH_GIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let pair = pg_failover::PgPair::start(172, "2s");
    let filled = Instant::now();
    let (_, size) = pair.fill(gib * 1024.0);
    eprintln!(
        "filled {:.2} GiB in {:.0} s",
        size / (1u64 << 30) as f64,
        filled.elapsed().as_secs_f64()
    );
    let backup = Instant::now();
    let out = pair.resurgo(&["backup", "orders", "--replicate", "--json"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    eprintln!("base backup + replication: {:.0} s", backup.elapsed().as_secs_f64());
    let spec = pair.env.spec_dir().join("resurgo.yaml");
    let mut text = std::fs::read_to_string(&spec).unwrap();
    text.push_str("objectives: { rto: 10m, rpo: 1h }\ndrills:\n  try-db:\n    scope: { service: db }\n    faults: [kill: db]\n    deadline: 20m\n");
    std::fs::write(&spec, text).unwrap();
    let (mut serving, mut whole) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let began = Instant::now();
        let out = pair.resurgo(&["drill", "run", "try-db", "--json"]);
        let took = began.elapsed().as_secs_f64();
        let report: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        assert_eq!(report["verdict"], "pass", "{}{}", out.stdout, out.stderr);
        let rto = report["rto"]["measured_s"].as_f64().unwrap();
        eprintln!(
            "  run {i}: sandbox serving after {rto:.2} s (restore {:.2} s, start and recovery {:.2} s); drill {took:.2} s",
            report["rto"]["execute_s"].as_f64().unwrap_or(0.0),
            report["rto"]["propagate_s"].as_f64().unwrap_or(0.0)
        );
        serving.push(rto);
        whole.push(took);
    }
    println!("isolated drill, PostgreSQL with {size} bytes (≈{gib} GiB), {runs} runs:");
    stats("until the sandbox serves", "s", serving, None);
    stats("whole drill (teardown included)", "s", whole, None);
}

fn live(runs: usize) {
    let lose_a = "  lose-a:\n    scope: { site: a }\n    faults: [stop_site: a]\n    mode: live\n    stop: [unavailable_for: 90s]\n    deadline: 3m\n";
    let mut env = drill::drill_env(
        173,
        18173,
        lose_a,
        "failover:\n  automatic: true\n  cooldown: 1s\n  witness: \"127.173.9.1:7411\"\n  heartbeat_interval: 200ms\n  suspect_after: 3\n  lease_ttl: 3s\n  fencing_deadline: 1s\n  promotion_delay: 1s\n",
    );
    let applied = env.run(&["apply"]);
    assert_eq!(applied.code, 0, "{}{}", applied.stdout, applied.stderr);
    for args in [&["repo", "init"][..], &["backup", "--replicate"]] {
        assert_eq!(env.run(args).code, 0, "{args:?}");
    }
    env.start_controller(&["--agents"]);
    env.wait_event("a serving", Duration::from_secs(20), |e| {
        e["kind"] == "unfenced" && e["site"] == "a"
    });
    let (mut rto, mut detect, mut rpo, mut lost, mut whole) = (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..runs {
        // Each run starts with a serving and b its DR site again (the previous one failed back).
        let back = util::poll(Duration::from_secs(60), || env.healthy_pid("a", "web"));
        assert!(back.is_some(), "web does not serve at a before run {i}");
        let began = Instant::now();
        let (_, report, out) = drill::drill(&env, &["drill", "run", "lose-a", "--json"]);
        let took = began.elapsed().as_secs_f64();
        assert_eq!(report["verdict"], "pass", "{out}\n{}", env.dump_events());
        let r = report["rto"]["measured_s"].as_f64().unwrap();
        eprintln!(
            "  run {i}: RTO {r:.2} s (detect {:.2} s), RPO {:.2} s, {} writes lost; drill {took:.2} s",
            report["rto"]["detect_s"].as_f64().unwrap_or(0.0),
            report["rpo"]["seconds"].as_f64().unwrap_or(0.0),
            report["rpo"]["writes_lost"]
        );
        rto.push(r);
        detect.extend(report["rto"]["detect_s"].as_f64());
        rpo.extend(report["rpo"]["seconds"].as_f64());
        lost.extend(report["rpo"]["writes_lost"].as_f64());
        whole.push(took);
    }
    env.stop_controller();
    println!("live site-loss drill on one machine (agents, automatic failover, SQLite, proxy route), {runs} runs:");
    stats("RTO (fault → route answers from b)", "s", rto, Some(10.0));
    stats("  detection", "s", detect, Some(3.0));
    stats("RPO (canary)", "s", rpo, Some(5.0));
    stats("  canary writes lost", "", lost, None);
    stats("whole drill (failback, teardown)", "s", whole, None);
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // built by `cargo test --benches`; only `cargo bench` runs it.
    }
    let runs = common::runs(3);
    let only = std::env::var("RESURGO_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "isolated" {
        isolated(runs);
    }
    if only.is_empty() || only == "live" {
        live(runs);
    }
}
