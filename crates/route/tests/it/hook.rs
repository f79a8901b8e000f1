//! The exec hook route: its environment, failures with stderr, timeouts, and epochs.

use std::time::{Duration, Instant};

use resurgo_route::{HookError, HookRoute, Route, RouteError};

use crate::support::require_program;

fn sh(script: &str) -> HookRoute {
    let sh = require_program("sh", "dash");
    HookRoute::new("web", sh, vec!["-c".into(), script.into()])
}

#[test]
fn the_hook_sees_the_switch_in_its_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env");
    let hook = sh(&format!(
        r#"printf '%s|%s|%s|%s' "$RESURGO_ROUTE" "$RESURGO_OLD_ADDRESS" "$RESURGO_NEW_ADDRESS" "$RESURGO_EPOCH" > '{}'"#,
        out.display()
    ));

    hook.run(Some("10.0.0.1:80"), "10.0.0.2:80", 7).unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "web|10.0.0.1:80|10.0.0.2:80|7");

    hook.run(None, "10.0.0.3:80", 8).unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "web||10.0.0.3:80|8");
}

#[test]
fn a_failing_hook_is_an_error_with_the_tail_of_its_stderr() {
    let hook = sh("echo starting >&2; i=0; while [ $i -lt 500 ]; do echo noise$i >&2; i=$((i+1)); done; echo 'lb api: 403 forbidden' >&2; exit 3");
    let err = hook.run(None, "10.0.0.2:80", 1).unwrap_err();
    let HookError::Failed {
        status, stderr_tail, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(status, "exit status 3");
    assert!(stderr_tail.ends_with("lb api: 403 forbidden"), "{stderr_tail}");
    assert!(
        !stderr_tail.contains("starting"),
        "only the tail is kept: {stderr_tail}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("route web: hook ") && msg.contains("exit status 3"),
        "{msg}"
    );
}

#[test]
fn a_hook_that_overruns_its_timeout_is_killed_with_its_children() {
    let mut hook = sh("sleep 30 & sleep 30");
    hook.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = hook.run(None, "10.0.0.2:80", 1).unwrap_err();
    assert!(matches!(err, HookError::TimedOut { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("did not finish within"), "{err}");
}

#[test]
fn a_missing_program_is_named() {
    let hook = HookRoute::new("web", "/nonexistent/switch-lb", Vec::new());
    let err = hook.run(None, "10.0.0.2:80", 1).unwrap_err();
    assert!(matches!(err, HookError::Spawn { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/switch-lb"), "{err}");
}

#[test]
fn through_the_route_trait_a_lower_epoch_is_refused_without_running_the_hook() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let hook = sh(&format!(
        r#"echo "$RESURGO_EPOCH $RESURGO_NEW_ADDRESS" >> '{}'"#,
        log.display()
    ));
    let (a, b) = ("10.0.0.1:80".parse().unwrap(), "10.0.0.2:80".parse().unwrap());

    assert_eq!(hook.current().unwrap(), None);
    hook.switch(Some(a), b, 2).unwrap();
    let err = hook.switch(Some(b), a, 1).unwrap_err();
    assert!(matches!(err, RouteError::Stale(_)), "{err}");
    assert_eq!(hook.current().unwrap(), Some(b));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "2 10.0.0.2:80\n");
}
