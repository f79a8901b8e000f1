//! README's main command: the quickstart demo runs end to end on this machine.

use crate::util::BIN;

#[test]
fn demo_runs_the_quickstart_heals_a_drift_and_drills_the_loss_of_a_site() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["demo", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing alarming is logged on the way (rustic_core's false alarm on every restore of a
    // file is dropped).
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(" ERROR ") && !stderr.contains(" WARN "), "{stderr}");
    for expected in [
        "spec is valid",
        "+ create   web",
        "[1/1]",
        "hello from web at site a",
        "killed web",
        "drift corrected",
        "(route `web`, built-in proxy) → hello from web at site a",
        "in sync",
        "replicate notes a → b",
        "PRAGMA integrity_check → ok",
        "dataset notes (home a, RPO objective 5m)",
        "agents running",
        "site_dead",
        "failover_finished",
        "failed_back",
        "drill lose-site-a",
        ": pass",
        "RTO ",
        "RPO ",
        "leftovers: []",
        "drill report: ",
        "workspace qa serves in its own namespace",
        "preempt ",
    ] {
        assert!(stdout.contains(expected), "demo output lacks {expected:?}:\n{stdout}");
    }
    // The failover and the failback are in the run history, in order, both succeeded.
    let runs = std::process::Command::new(BIN)
        .args(["runs", "--json", "--state"])
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).expect("runs --json");
    let kinds: Vec<(&str, &str)> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["outcome"]["status"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("failover", "succeeded"), ("failback", "succeeded")]);
    // Each run stores what it measured.
    for run in runs["runs"].as_array().unwrap() {
        assert!(run["measures"]["rto_s"].as_f64().is_some_and(|s| s > 0.0), "{run}");
    }
    // The drill's HTML report is written, and opens in a browser without a console error.
    let html = dir.path().join("drill-report.html");
    let errors = crate::report_consumers::open_in_chromium(&html, &dir.path().join("drill-report.png"));
    assert!(errors.is_empty(), "{errors:?}");
    // After the drill, status shows no drift and no orphan (step 9).
    let after = stdout.split("── 9.").nth(1).expect("step 9");
    assert!(
        !after
            .lines()
            .skip(1)
            .any(|l| l.contains("orphan") || l.contains("drift")),
        "{after}"
    );
    // The demo cleans up after itself: no process left under its state.
    let run = dir.path().join("state/sites/a/services/web");
    assert!(!run.exists(), "demo removed its services");
    assert!(
        !dir.path().join("state/workspaces/qa").exists(),
        "demo removed its workspace"
    );
}
