//! Benchmark: `resurgo plan` over a generated spec of 10,000 services across 3 sites.
//! Runs the real binary, as a user would, and reports wall time and peak memory (max RSS of
//! the child) against the targets: ≤ 1 s and ≤ 200 MB.
//!
//! `cargo bench -p resurgo --bench plan` (set RESURGO_BENCH_SERVICES to change the size).

use std::fmt::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, UsageWho};

fn spec(services: usize) -> String {
    let mut s =
        String::from("apiVersion: resurgo.dev/v1alpha1\nsystem: bench\ninputs:\n  binary: /bin/sleep\nsites:\n");
    for (i, site) in ["a", "b", "c"].iter().enumerate() {
        let _ = write!(
            s,
            "  {site}:\n    provider: local\n    address: 127.0.{}.1\n    region: r{i}\n    capacity: {{ cpu: 100000, memory: 10Ti }}\n    capabilities: [ssd]\n",
            200 + i
        );
    }
    s.push_str("services:\n");
    let sites = ["a", "b", "c"];
    for n in 0..services {
        let site = sites[n % 3];
        let standby = sites[(n + 1) % 3];
        let _ = write!(
            s,
            "  svc{n}:\n    command: ${{inputs.binary}}\n    args: [\"3600\"]\n    ports: [{}]\n    requires: [ssd]\n    resources: {{ cpu: 100m, memory: 64Mi }}\n    site: {site}\n    standby: [{standby}]\n    health:\n      tcp: {{ port: {} }}\n",
            10000 + n,
            10000 + n
        );
        // Chains of ten: every service but the first of each ten depends on its predecessor.
        if n % 10 != 0 {
            let _ = writeln!(s, "    depends_on: [svc{}]", n - 1);
        }
    }
    s
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this too, and must not take long.
    let services: usize = std::env::var("RESURGO_BENCH_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let runs: usize = if std::env::args().any(|a| a == "--bench") { 5 } else { 1 };
    let dir = tempfile::tempdir().expect("temp dir");
    let spec_path = dir.path().join("spec.yaml");
    let text = spec(services);
    std::fs::write(&spec_path, &text).expect("write spec");
    let exe = env!("CARGO_BIN_EXE_resurgo");
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let out = Command::new(exe)
            .args(["plan", "--json", "--spec"])
            .arg(&spec_path)
            .arg("--state")
            .arg(dir.path().join("state"))
            .output()
            .expect("run resurgo");
        times.push(t.elapsed());
        assert_eq!(
            out.status.code(),
            Some(2),
            "plan should report changes: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
        assert_eq!(plan["summary"]["create"], services, "every service is planned");
    }
    times.sort();
    let peak_kib = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage").max_rss();
    let median = times[times.len() / 2];
    let peak_mb = peak_kib as f64 / 1024.0;
    println!(
        "plan over {services} services, 3 sites, spec {:.1} MiB, {runs} run(s)",
        text.len() as f64 / (1 << 20) as f64
    );
    println!(
        "  time: min {:.3}s, median {:.3}s, max {:.3}s   (target ≤ 1 s: {})",
        times[0].as_secs_f64(),
        median.as_secs_f64(),
        times[times.len() - 1].as_secs_f64(),
        verdict(median <= Duration::from_secs(1))
    );
    println!(
        "  peak memory: {peak_mb:.1} MB   (target ≤ 200 MB: {})",
        verdict(peak_mb <= 200.0)
    );
    println!(
        "  ratio to target: time {:.2}×, memory {:.2}×",
        median.as_secs_f64() / 1.0,
        peak_mb / 200.0
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}
