//! What the benchmarks share: how many runs, and the min / median / max line with its verdict.

/// The run count: `RESURGO_BENCH_RUNS`, else `default`.
pub fn runs(default: usize) -> usize {
    std::env::var("RESURGO_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// min / median / max of `v`, and the verdict against `target` (on the median; the max is
/// named when it misses).
pub fn stats(name: &str, unit: &str, mut v: Vec<f64>, target: Option<f64>) {
    if v.is_empty() {
        println!("  {name:<34} n/a");
        return;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (min, median, max) = (v[0], v[v.len() / 2], v[v.len() - 1]);
    let verdict = match target {
        Some(t) if t == 0.0 => format!("   target {t}{unit}: {}", if median <= t { "met" } else { "MISSED" }),
        Some(t) => format!(
            "   target ≤ {t}{unit}: median {:.2}× → {}{}",
            median / t,
            if median <= t { "met" } else { "MISSED" },
            if max > t && median <= t {
                format!(" (max {:.2}× over)", max / t)
            } else {
                String::new()
            }
        ),
        None => String::new(),
    };
    println!("  {name:<34} min {min:>6.2}{unit}  median {median:>6.2}{unit}  max {max:>6.2}{unit}{verdict}");
}

/// Kills every service (and its supervisor) the local provider started at `site` under the
/// state folder `state`, as its `run.json` records them: a benchmark's leftovers.
#[allow(dead_code)]
pub fn kill_services(state: &std::path::Path, site: &str) {
    let services = state.join("sites").join(site).join("services");
    for dir in std::fs::read_dir(services).into_iter().flatten().flatten() {
        let Ok(text) = std::fs::read(dir.path().join("run.json")) else {
            continue;
        };
        let run: serde_json::Value = serde_json::from_slice(&text).unwrap_or(serde_json::Value::Null);
        let pid = |key: &str| run[key].as_u64().map(|p| nix::unistd::Pid::from_raw(p as i32));
        if let Some(pid) = pid("pid") {
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        }
        if let Some(shim) = pid("shim_pid") {
            let _ = nix::sys::signal::kill(shim, nix::sys::signal::Signal::SIGKILL);
        }
    }
}
