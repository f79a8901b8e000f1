//! Benchmark: workspaces on DR capacity (DESIGN §8, §12), several runs each, min / median / max.
//!
//! - **time until a workspace serves, PostgreSQL with a 1 GiB dataset**: PostgreSQL at a with
//!   its base backup and WAL archive replicated to b (the tests' `PgPair`), about 1 GiB of rows;
//!   `<state>/workspaces` on an XFS filesystem with reflink (a loop device over a sparse image,
//!   the tests' `Xfs`). The first `resurgo workspace create` makes the golden copy (restore
//!   from b's repository, recovery, `pg_amcheck`, clean shutdown), reported on its own; then,
//!   each run, one workspace per clone method — `--clone reflink`, `overlay`, `copy` — made
//!   (`--site b --services db`, PostgreSQL started in the workspace's network namespace) and
//!   deleted. Reported: the record's `ready_s` (time until it served), the clone's own
//!   `took_s`, and the command's wall time. Every workspace is seeded at one pinned restore
//!   point (`--seed TIME`): each reuses the golden copy whatever is archived meanwhile (with
//!   `latest`, a segment archived since makes a new one). The baseline is the full restore —
//!   what a workspace costs without a golden copy — measured as the isolated drill
//!   `resurgo drill run try-db` does it (`rto.measured_s`: restore from b's repository +
//!   start + recovery into a sandbox at b). Target: reflink ≤ 5 s.
//! - **preempt phase of a failover, 5 workspaces**: a fresh pair per run with a small dataset
//!   (50 MiB: the phase stops processes, it copies nothing); 5 workspaces at b by reflink, each
//!   with its own PostgreSQL in its own namespace; a lost (`PgPair::lose_a`), `resurgo failover
//!   --to b`. Reported: the run's `measures.preempt_s`, its first step's own duration, and
//!   how many processes outlived the budget (SIGKILLed). Target: ≤ 2 s.
//!
//! `cargo bench -p resurgo --bench workspace` (RESURGO_BENCH_RUNS, default 3;
//! RESURGO_BENCH_GIB sets the dataset's size, default 1; RESURGO_BENCH_ONLY=serving|preempt).
//! Needs root, xfsprogs (`mkfs.xfs`), iproute2 and PostgreSQL, like the tests it borrows from.

mod common;
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/pg.rs"]
mod pg;
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/pg_failover.rs"]
mod pg_failover;
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/util.rs"]
mod util;
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/workspace.rs"]
mod ws_it;

use std::time::Instant;

use serde_json::Value;

use common::stats;
use pg_failover::PgPair;
use ws_it::Xfs;

/// `RESURGO_BENCH_GIB`, default 1.
fn gib() -> f64 {
    std::env::var("RESURGO_BENCH_GIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0)
}

/// `resurgo workspace create NAME --site b --services db --clone METHOD [--seed SEED] --json`:
/// the record and the command's wall time. The workspace must be ready, cloned by `method`.
fn create(pair: &PgPair, name: &str, method: &str, seed: Option<&str>) -> (Value, f64) {
    let mut args = vec![
        "workspace",
        "create",
        name,
        "--site",
        "b",
        "--services",
        "db",
        "--clone",
        method,
        "--json",
    ];
    if let Some(seed) = seed {
        args.extend(["--seed", seed]);
    }
    let began = Instant::now();
    let out = pair.resurgo(&args);
    let wall = began.elapsed().as_secs_f64();
    assert_eq!(out.code, 0, "workspace create {name}:\n{}{}", out.stdout, out.stderr);
    let record: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert_eq!(record["state"], "ready", "{record:#}");
    let clone = &record["clones"][0];
    assert_eq!(clone["method"], method, "{record:#}");
    (record, wall)
}

fn delete(pair: &PgPair, name: &str) {
    let out = pair.resurgo(&["workspace", "delete", name, "--site", "b"]);
    assert_eq!(out.code, 0, "workspace delete {name}:\n{}{}", out.stdout, out.stderr);
}

/// (min, median, max) of `v`.
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn brief(v: &[f64]) -> String {
    let (min, median, max) = spread(v);
    format!("median {median:.2} s ({min:.2}–{max:.2})")
}

fn serving(runs: usize) {
    let gib = gib();
    let pair = PgPair::start(180, "2s");
    let filled = Instant::now();
    let (rows, size) = pair.fill(gib * 1024.0);
    eprintln!(
        "filled {:.2} GiB ({rows} rows) in {:.0} s",
        size / (1u64 << 30) as f64,
        filled.elapsed().as_secs_f64()
    );
    let backup = Instant::now();
    let out = pair.resurgo(&["backup", "orders", "--replicate", "--json"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    eprintln!("base backup + replication: {:.0} s", backup.elapsed().as_secs_f64());
    // The pinned restore point: now, with a commit after it archived and replicated to b (a
    // recovery to a time stops at the first commit past it).
    let seed = pair
        .sql(
            "a",
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
        )
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100)); // a commit in a later second
    pair.sql("a", "INSERT INTO orders (id) VALUES (1)").unwrap();
    pair.sql("a", "SELECT pg_switch_wal()").unwrap();
    pair.wait_archived(std::time::Duration::from_secs(60));
    let out = pair.resurgo(&["replicate", "orders"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    // Room for the golden copy, a full copy and an overlay's upper layer: a sparse image.
    let image_mib = ((size / (1u64 << 20) as f64) * 4.0).max(2048.0) as u64 + 4096;
    let xfs = Xfs::mount(&pair.env.state().join("workspaces"), image_mib);
    let seed = Some(seed.as_str());
    let (first, first_wall) = create(&pair, "golden", "reflink", seed);
    let first_ready = first["ready_s"].as_f64().unwrap();
    eprintln!(
        "golden copy made by the first workspace: ready in {first_ready:.2} s (wall {first_wall:.2} s; its reflink {:.3} s)",
        first["clones"][0]["took_s"].as_f64().unwrap_or(0.0)
    );
    delete(&pair, "golden");

    let methods = ["reflink", "overlay", "copy"];
    let mut ready: Vec<Vec<f64>> = vec![Vec::new(); methods.len()];
    let mut took: Vec<Vec<f64>> = vec![Vec::new(); methods.len()];
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); methods.len()];
    for i in 0..runs {
        for (m, method) in methods.iter().enumerate() {
            let name = format!("{method}-{i}");
            let (record, w) = create(&pair, &name, method, seed);
            let (r, t) = (
                record["ready_s"].as_f64().unwrap(),
                record["clones"][0]["took_s"].as_f64().unwrap(),
            );
            // It serves the restore point's rows (checked outside the times).
            let netns = record["netns"].as_str().unwrap();
            let top = ws_it::psql_in(netns, &pair.addr_b, pair.port, "SELECT max(id) FROM big")
                .unwrap_or_else(|e| panic!("workspace {name}'s PostgreSQL: {e}"));
            assert_eq!(top, rows.to_string(), "workspace {name}");
            eprintln!("  run {i}: {method:<7} ready {r:.2} s (clone {t:.3} s), wall {w:.2} s");
            delete(&pair, &name);
            ready[m].push(r);
            took[m].push(t);
            wall[m].push(w);
        }
    }
    drop(xfs);

    // The baseline: no golden copy, a restore from the repository and a start.
    let spec = pair.env.spec_dir().join("resurgo.yaml");
    let mut text = std::fs::read_to_string(&spec).unwrap();
    text.push_str("objectives: { rto: 10m, rpo: 1h }\ndrills:\n  try-db:\n    scope: { service: db }\n    faults: [kill: db]\n    deadline: 20m\n");
    std::fs::write(&spec, text).unwrap();
    let mut restore = Vec::new();
    for i in 0..runs {
        let out = pair.resurgo(&["drill", "run", "try-db", "--json"]);
        let report: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        assert_eq!(report["verdict"], "pass", "{}{}", out.stdout, out.stderr);
        let rto = report["rto"]["measured_s"].as_f64().unwrap();
        eprintln!(
            "  run {i}: full restore serving after {rto:.2} s (restore {:.2} s, start and recovery {:.2} s)",
            report["rto"]["execute_s"].as_f64().unwrap_or(0.0),
            report["rto"]["propagate_s"].as_f64().unwrap_or(0.0)
        );
        restore.push(rto);
    }

    println!(
        "workspace serving, PostgreSQL with {size:.0} bytes (≈{gib} GiB), <state>/workspaces on XFS with reflink, {runs} runs:"
    );
    println!("  golden copy made (first create)    {first_ready:.2}s (once: restore, recovery, pg_amcheck, a reflink, start)");
    for (m, method) in methods.iter().enumerate() {
        let target = (*method == "reflink").then_some(5.0);
        stats(&format!("{method}: until it serves"), "s", ready[m].clone(), target);
        stats(&format!("{method}: the clone itself"), "s", took[m].clone(), None);
        stats(&format!("{method}: command wall time"), "s", wall[m].clone(), None);
    }
    stats("full restore (isolated drill RTO)", "s", restore.clone(), None);
    let ratio = spread(&restore).1 / spread(&ready[0]).1;
    println!(
        "workspace serving ({:.1} GiB PostgreSQL): reflink {}, overlay {}, full copy {}, full restore {}; full restore / reflink = {ratio:.1}×",
        size / (1u64 << 30) as f64,
        brief(&ready[0]),
        brief(&ready[1]),
        brief(&ready[2]),
        brief(&restore)
    );
    println!(
        "  (the first create, which made the golden copy — a restore, its checks, a start — took {first_ready:.2} s: {:.1}× reflink's median)",
        first_ready / spread(&ready[0]).1
    );
}

fn preempt(runs: usize) {
    const WORKSPACES: usize = 5;
    let mib = 50.0;
    let (mut phase, mut step, mut rto, mut killed) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let pair = PgPair::start(181 + i as u8, "2s");
        let (_, size) = pair.fill(mib);
        let out = pair.resurgo(&["backup", "orders", "--replicate", "--json"]);
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        let xfs = Xfs::mount(&pair.env.state().join("workspaces"), 2048);
        let names: Vec<String> = (1..=WORKSPACES).map(|k| format!("ws{k}")).collect();
        let (mut made, mut netns) = (Vec::new(), Vec::new());
        for name in &names {
            let (record, _) = create(&pair, name, "reflink", None);
            made.push(record["ready_s"].as_f64().unwrap());
            netns.push(record["netns"].as_str().unwrap().to_string());
        }

        pair.lose_a();
        let began = Instant::now();
        let failover = pair.resurgo(&["failover", "--to", "b", "--json"]);
        let took = began.elapsed().as_secs_f64();
        assert_eq!(
            failover.code,
            0,
            "failover:\n{}{}\n{}",
            failover.stdout,
            failover.stderr,
            pair.log("b")
        );
        let runs_json = pair.resurgo(&["runs", "--json"]).json();
        let run = pg_failover::newest_run(&runs_json).clone();
        let first = &run["steps"][0];
        assert_eq!(first["name"], "preempt workspaces at b", "{run:#}");
        let p = run["measures"]["preempt_s"]
            .as_f64()
            .unwrap_or_else(|| panic!("{run:#}"));
        let s = first["millis"].as_f64().unwrap_or(0.0) / 1000.0;
        let listed = pair.resurgo(&["workspace", "list", "--json"]).json();
        for name in &names {
            let w = listed
                .as_array()
                .and_then(|l| l.iter().find(|w| w["name"] == name.as_str()))
                .unwrap_or_else(|| panic!("{name} is not listed: {listed:#}"));
            assert_eq!(w["state"], "preempted", "{w:#}");
        }
        for (name, netns) in names.iter().zip(&netns) {
            let answer = ws_it::psql_in(netns, &pair.addr_b, pair.port, "SELECT 1");
            assert!(answer.is_err(), "{name}'s PostgreSQL still answers after the failover");
        }
        let done: Value = std::fs::read(
            pair.env
                .state()
                .join("runs")
                .join(format!("{}.preempted.json", run["run"].as_str().unwrap())),
        )
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok())
        .unwrap_or(Value::Null);
        let k = done["killed"].as_f64().unwrap_or(0.0);
        eprintln!(
            "  run {i}: {WORKSPACES} workspaces ({:.0} MiB each, ready in {}) preempted in {p:.2} s (step {s:.2} s, {k} killed); RTO {} s, failover command {took:.2} s; {}",
            size / (1u64 << 20) as f64,
            made.iter().map(|r| format!("{r:.1}")).collect::<Vec<_>>().join("/"),
            run["measures"]["rto_s"],
            pg_failover::step_times(&run)
        );
        phase.push(p);
        step.push(s);
        rto.extend(run["measures"]["rto_s"].as_f64());
        killed.push(k);
        for name in &names {
            delete(&pair, name);
        }
        drop(xfs);
    }
    println!("preempt phase of a failover to b, {WORKSPACES} workspaces with PostgreSQL (reflink clones of a {mib} MiB dataset), {runs} runs:");
    stats("preempt phase (measures.preempt_s)", "s", phase.clone(), Some(2.0));
    stats("  the preempt step", "s", step, None);
    stats("  processes SIGKILLed at the budget", "", killed, None);
    stats("failover RTO", "s", rto, None);
    println!("preempt {WORKSPACES} workspaces: {}", brief(&phase));
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // built by `cargo test --benches`; only `cargo bench` runs it.
    }
    let runs = common::runs(3);
    let only = std::env::var("RESURGO_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "serving" {
        serving(runs);
    }
    if only.is_empty() || only == "preempt" {
        preempt(runs);
    }
}
