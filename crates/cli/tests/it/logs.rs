//! Logs: on stderr only, one JSON object per line with `RESURGO_LOG_FORMAT=json` (level, target,
//! fields, and the spans with theirs), filtered by `RESURGO_LOG`; a bad value is a warning
//! naming the variable, never a failure.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::util::{Env, Out, BIN};

/// `resurgo ARGS --spec … --state …` with `vars` set and any inherited `RESURGO_LOG*` removed.
fn run_with(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Out {
    let out = Command::new(BIN)
        .args(args)
        .arg("--spec")
        .arg(env.spec_dir())
        .arg("--state")
        .arg(env.state())
        .env_remove("RESURGO_LOG")
        .env_remove("RESURGO_LOG_FORMAT")
        .envs(vars.iter().copied())
        .output()
        .expect("run resurgo");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every line of `text` as a JSON log record; panics on a line that is not one.
fn records(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
            assert!(v["timestamp"].is_string(), "no timestamp: {l}");
            assert!(v["level"].is_string(), "no level: {l}");
            assert!(v["target"].is_string(), "no target: {l}");
            assert!(v["fields"]["message"].is_string(), "no fields.message: {l}");
            v
        })
        .collect()
}

/// The spec of these tests: one service, `sync: manual` (the controller reports, never starts).
fn spec(env: &Env) {
    env.write_spec(&env.spec(&Env::web("web", "a", 7401, "manual", &[])));
}

#[test]
fn json_logs_go_to_stderr_with_their_spans_and_stdout_stays_json() {
    let env = Env::new(141);
    spec(&env);
    let json = [("RESURGO_LOG_FORMAT", "json"), ("RESURGO_LOG", "debug")];
    let status = run_with(&env, &["status", "--json"], &json);
    assert!(status.code == 0 || status.code == 2, "{}", status.stderr);
    let doc: Value = serde_json::from_str(&status.stdout)
        .unwrap_or_else(|e| panic!("stdout is not pure JSON ({e}): {}", status.stdout));
    assert_eq!(doc["system"], "test");
    let logged = records(&status.stderr);
    assert!(
        logged.iter().any(|r| r["level"] == "DEBUG"
            && r["target"] == "resurgo_controller::engine"
            && r["fields"]["site"] == "a"),
        "a debug record of site a's observation: {}",
        status.stderr
    );

    // Only what is asked: resurgo_controller at debug, the rest of resurgo at info.
    let some = run_with(
        &env,
        &["status", "--json"],
        &[
            ("RESURGO_LOG_FORMAT", "json"),
            ("RESURGO_LOG", "resurgo_controller=debug"),
        ],
    );
    assert!(
        records(&some.stderr).iter().all(|r| r["level"] != "DEBUG"
            || r["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("resurgo_controller"))),
        "{}",
        some.stderr
    );
    // By default, no debug records at all, and text.
    let quiet = run_with(&env, &["status", "--json"], &[]);
    assert!(!quiet.stderr.contains("DEBUG"), "{}", quiet.stderr);
    serde_json::from_str::<Value>(&quiet.stdout).expect("status JSON");
}

#[test]
fn the_controller_logs_events_inside_its_reconcile_span() {
    let mut env = Env::new(142);
    spec(&env);
    env.start_controller_env(&[], &[("RESURGO_LOG_FORMAT", "json"), ("RESURGO_LOG", "debug")]);
    env.wait_event("drift_seen", Duration::from_secs(15), |e| e["kind"] == "drift_seen");
    env.stop_controller();
    let text = std::fs::read_to_string(env.path().join("controller-0.log")).unwrap();
    let logged = records(&text);
    let started = logged
        .iter()
        .find(|r| r["fields"]["kind"] == "controller_started")
        .unwrap_or_else(|| panic!("no controller_started record:\n{text}"));
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["target"], "resurgo_controller::events");
    let drift = logged
        .iter()
        .find(|r| r["fields"]["kind"] == "drift_seen")
        .unwrap_or_else(|| panic!("no drift_seen record:\n{text}"));
    assert_eq!(drift["fields"]["site"], "a");
    assert_eq!(drift["fields"]["service"], "web");
    assert_eq!(drift["span"]["name"], "reconcile", "{drift}");
    assert!(
        drift["span"]["commit"]
            .as_str()
            .is_some_and(|c| c.starts_with("folder:")),
        "the tick's span names the commit: {drift}"
    );
}

#[test]
fn a_bad_log_variable_is_a_warning_that_names_it() {
    let env = Env::new(143);
    spec(&env);
    let out = run_with(
        &env,
        &["validate"],
        &[("RESURGO_LOG", "nonsense"), ("RESURGO_LOG_FORMAT", "yaml")],
    );
    assert_eq!(out.code, 0, "a logging typo stops nothing: {}", out.stderr);
    assert!(
        out.stderr.contains("RESURGO_LOG: `nonsense` is not a level"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("RESURGO_LOG_FORMAT: `yaml` is neither `text` nor `json`"),
        "{}",
        out.stderr
    );
}
