//! Benchmark: RTO and RPO of the quickstart (SQLite with the backup strategy, built-in proxy
//! route) over several runs of the whole story — lose site a, fail over to b, fail back —
//! through `resurgo demo`, reporting min / median / max with the breakdown. Targets: RTO
//! ≤ 10 s with detection ≤ 3 s; RPO ≤ 5 s with backups.
//!
//! `cargo bench -p resurgo --bench failover` (RESURGO_BENCH_RUNS sets the count, default 5).

mod common;

use std::process::Command;

use common::stats;

fn number_after(line: &str, key: &str) -> Option<f64> {
    let rest = &line[line.find(key)? + key.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // built by `cargo test --benches`; only `cargo bench` runs it.
    }
    let runs = common::runs(5);
    let (mut rto, mut detect, mut fo, mut rpo, mut lost, mut back, mut back_lost) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for i in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_resurgo"))
            .args(["demo", "--dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "run {i}: demo failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = text.lines().find(|l| l.starts_with("RTO ")).expect("an RTO line");
        rto.push(number_after(line, "RTO ").unwrap());
        detect.push(number_after(line, "detection ").unwrap());
        fo.push(number_after(line, "failover ").unwrap());
        rpo.push(number_after(line, "RPO ").unwrap());
        lost.push(number_after(&line[line.find("RPO ").unwrap()..], "s, ").unwrap());
        let back_line = text
            .lines()
            .find(|l| l.starts_with("failed back"))
            .expect("a failback line");
        back.push(number_after(back_line, "failed back to a in ").unwrap());
        back_lost.push(number_after(back_line, "writes lost: ").unwrap());
    }
    println!("failover of the quickstart (SQLite, backup strategy, proxy route), {runs} runs:");
    stats("RTO (fault → healthy)", "s", rto, Some(10.0));
    stats("  detection", "s", detect, Some(3.0));
    stats("  failover steps", "s", fo, None);
    stats("RPO", "s", rpo, Some(5.0));
    stats("  writes lost", "", lost, None);
    stats("failback", "s", back, None);
    stats("  writes lost", "", back_lost, Some(0.0));
}
