//! Drills on one machine, live: a service killed and a site lost, each measured, torn down
//! and reported; the drill's own process killed at each journal boundary, interrupted by
//! SIGINT, or out of time, and its teardown still complete; a second drill refused while one
//! runs. The reports are read by a real JUnit consumer and opened in a real browser.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{poll, signal, Env, BIN};

/// web at a (standby b) writing to its SQLite dataset `notes`, restarted by the controller
/// (`sync: auto`); the proxy route `front` at `127.0.0.1:<route>`; the drills of `drills`.
fn drill_env(block: u8, route: u16, drills: &str, extra: &str) -> Env {
    let env = Env::new(block);
    let web = Env::notes_web(8080).replace("    sync: manual\n", "    sync: auto\n");
    let spec = env.spec(&web)
        + &format!(
            "datasets:\n  notes:\n    service: web\n    type: sqlite\n    path: data/notes.db\n    rpo: 5m\nroutes:\n  front:\n    service: web\n    type: proxy\n    listen: 127.0.0.1:{route}\nobjectives:\n  rto: 30s\n  rpo: 5m\ndrills:\n{drills}{extra}"
        );
    env.write_spec(&env.with_repositories(&spec));
    env
}

/// A live drill that kills web: the controller restarts it.
const KILL_WEB: &str = "  kill-web:\n    scope: { service: web }\n    faults: [kill: web]\n    mode: live\n    stop: [unavailable_for: 40s]\n    deadline: 2m\n    cadence: 30d\n    owners: [team-web]\n";

fn applied_with_controller(env: &mut Env) {
    let applied = env.run(&["apply"]);
    assert_eq!(applied.code, 0, "{}{}", applied.stdout, applied.stderr);
    env.start_controller(&[]);
    assert!(
        poll(Duration::from_secs(20), || env.healthy_pid("a", "web")).is_some(),
        "web never healthy:\n{}",
        env.dump_events()
    );
}

fn drill(env: &Env, args: &[&str]) -> (i32, Value, String) {
    let out = env.run(args);
    let json = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    (out.code, json, format!("{}{}", out.stdout, out.stderr))
}

/// The table the canary writes into, if any row of it is left in web's database at a.
fn canary_rows(env: &Env) -> i64 {
    let db = env.state().join("sites/a/services/web/data/notes.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE name = 'resurgo_drill_canary'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// DESIGN §11, a service: web's process is SIGKILLed; the controller notices and restarts it;
/// the probe through the route measures RTO, the canary in `notes` RPO (nothing lost: the data
/// stays where it was); teardown leaves nothing; the report renders as JUnit (read by
/// junitparser) and HTML (opened in Chromium without a console error).
#[test]
fn a_live_service_drill_measures_the_restart_and_leaves_nothing_behind() {
    let mut env = drill_env(160, 18160, KILL_WEB, "");
    applied_with_controller(&mut env);
    let (code, report, out) = drill(&env, &["drill", "run", "kill-web", "--json"]);
    assert_eq!(code, 0, "the drill passes:\n{out}\n{}", env.dump_events());
    assert_eq!(report["verdict"], "pass", "{report:#}");
    assert_eq!(report["outcome"], "completed");
    assert_eq!(report["mode"], "live");
    assert_eq!(report["leftovers"], serde_json::json!([]), "{report:#}");
    let rto = report["rto"]["measured_s"].as_f64().expect("RTO measured");
    assert!(rto > 0.0 && rto < 30.0, "{report:#}");
    assert!(
        report["rto"]["detect_s"].as_f64().is_some(),
        "detection from the event log: {report:#}"
    );
    assert_eq!(report["rpo"]["writes_lost"], 0, "a restart loses nothing: {report:#}");
    assert!(report["rpo"]["datasets"][0]["acknowledged"].as_u64().unwrap() > 0);
    assert_eq!(report["data_checks"][0]["passed"], true, "{report:#}");
    assert!(report["spec_commit"].as_str().unwrap().starts_with("folder:"));
    assert_eq!(report["faults"][0]["kind"], "kill");
    assert!(report["faults"][0]["reverted_at_s"].is_number());
    assert_eq!(canary_rows(&env), 0, "the canary is gone from the data");
    // The renderings, each read by what reads it.
    let junit = env.path().join("drill.xml");
    let out = env.run(&[
        "drill",
        "report",
        "latest",
        "--format",
        "junit",
        "-o",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let cases = crate::report_consumers::junit_cases(&junit);
    for name in ["objective rto", "objective rpo", "leak check"] {
        assert!(cases.iter().any(|(n, ok)| n == name && *ok), "{name} passes: {cases:?}");
    }
    assert!(cases.iter().all(|(_, ok)| *ok), "{cases:?}");
    let html = env.path().join("drill.html");
    let out = env.run(&[
        "drill",
        "report",
        "latest",
        "--format",
        "html",
        "-o",
        html.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let shot = screenshot_path("drill-report.png", &env);
    let errors = crate::report_consumers::open_in_chromium(&html, &shot);
    assert!(errors.is_empty(), "console errors: {errors:?}");
    // `drill list` shows the pass and that the drill is not due.
    let list = env.run(&["drill", "list", "--json"]).json();
    assert_eq!(list["drills"][0]["last_verdict"], "pass", "{list:#}");
    assert_eq!(list["drills"][0]["due"], false, "{list:#}");
    // The event log says it ran, and passed.
    assert!(env.events().iter().any(|e| e["kind"] == "drill_passed"));
    env.stop_controller();
}

/// Where a test keeps a screenshot: `RESURGO_SCREENSHOTS` if set, else the test's folder.
fn screenshot_path(name: &str, env: &Env) -> std::path::PathBuf {
    match std::env::var_os("RESURGO_SCREENSHOTS") {
        Some(dir) => {
            std::fs::create_dir_all(&dir).unwrap();
            Path::new(&dir).join(name)
        }
        None => env.path().join(name),
    }
}

/// The drill killed (SIGKILL) right after each journal record: `drill resume` tears it down,
/// the leak check is empty, and web serves at a as before. Then: a second drill is refused
/// while one runs; SIGINT ends a drill with a complete teardown.
#[test]
fn a_killed_drill_resumes_to_a_complete_teardown_and_one_drill_runs_at_a_time() {
    let mut env = drill_env(161, 18161, KILL_WEB, "");
    applied_with_controller(&mut env);
    // Records: begun, undo, injected, measured, teardown begun, reverted, ended.
    for record in 1..=6 {
        let out = Command::new(BIN)
            .args(["drill", "run", "kill-web", "--json", "--state"])
            .arg(env.state())
            .arg("--spec")
            .arg(env.spec_dir())
            .env("RESURGO_CRASH_AFTER_RECORD", record.to_string())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(9),
            "killed after record {record}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let refused = env.run(&["drill", "run", "kill-web"]);
        assert_eq!(refused.code, 1, "an unfinished drill must be resumed first");
        assert!(refused.stderr.contains("drill resume"), "{}", refused.stderr);
        let (code, report, out) = drill(&env, &["drill", "resume", "--json"]);
        assert!(report.is_object(), "record {record}: {out}");
        assert_eq!(
            report["leftovers"],
            serde_json::json!([]),
            "record {record}: {report:#}"
        );
        assert_ne!(report["outcome"], "in_progress", "record {record}");
        if record < 4 {
            assert_eq!(report["outcome"], "interrupted", "record {record}: {report:#}");
            assert_eq!(code, 1, "an interrupted drill does not pass");
        }
        assert!(
            poll(Duration::from_secs(20), || env.healthy_pid("a", "web")).is_some(),
            "web serves at a after record {record}:\n{}",
            env.dump_events()
        );
        assert_eq!(canary_rows(&env), 0, "record {record}: the canary is gone");
    }
    // One drill at a time.
    let first = Command::new(BIN)
        .args(["drill", "run", "kill-web", "--json", "--state"])
        .arg(env.state())
        .arg("--spec")
        .arg(env.spec_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let running = poll(Duration::from_secs(20), || {
        std::fs::read_dir(env.state().join("drills"))
            .ok()?
            .flatten()
            .any(|e| {
                std::fs::read_to_string(e.path().join("journal.jsonl"))
                    .is_ok_and(|j| j.contains("\"undo\"") && !j.contains("\"ended\""))
            })
            .then_some(())
    });
    assert!(running.is_some(), "the first drill never injected its fault");
    let second = env.run(&["drill", "run", "kill-web"]);
    assert_eq!(second.code, 1);
    assert!(second.stderr.contains("another drill is running"), "{}", second.stderr);
    // SIGINT: the drill ends, its teardown complete.
    signal(first.id(), nix::sys::signal::Signal::SIGINT);
    let out = first.wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(report.is_object(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(report["leftovers"], serde_json::json!([]), "{report:#}");
    assert!(
        report["outcome"] == "interrupted" || report["outcome"] == "completed",
        "{report:#}"
    );
    assert!(report["faults"][0]["reverted_at_s"].is_number(), "{report:#}");
    env.stop_controller();
}

/// A deadline that passes mid-drill: the site loss is never recovered from (no agents run),
/// the drill stops at its deadline and tears down — the site is back within reach and
/// nothing is left.
#[test]
fn a_drill_past_its_deadline_goes_straight_to_teardown() {
    let lose_a = "  lose-a:\n    scope: { site: a }\n    faults: [stop_site: a]\n    mode: live\n    stop: [unavailable_for: 5m]\n    deadline: 8s\n    failback: false\n";
    let mut env = drill_env(162, 18162, lose_a, "");
    applied_with_controller(&mut env);
    let began = Instant::now();
    let (code, report, out) = drill(&env, &["drill", "run", "lose-a", "--json"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(report["outcome"], "deadline_passed", "{report:#}");
    assert!(
        began.elapsed() < Duration::from_secs(120),
        "teardown is not a second drill"
    );
    assert!(report["rto"]["measured_s"].is_null(), "never back: {report:#}");
    assert_eq!(report["verdict"], "fail");
    assert!(
        env.state().join("sites/a/site.json").exists(),
        "site a is back within reach"
    );
    assert_eq!(report["leftovers"], serde_json::json!([]), "{report:#}");
    env.stop_controller();
}

/// DESIGN §11, a site, live, on one machine with the agents (`controller --agents`): site a is
/// lost; b's agent declares it dead and fails over by itself (no command); the drill measures
/// RTO through the route and RPO from the canary against b's restore; teardown brings a back
/// within reach; nothing is left.
#[test]
fn a_live_site_drill_is_detected_and_failed_over_by_the_agents() {
    let lose_a = "  lose-a:\n    scope: { site: a }\n    faults: [stop_site: a]\n    mode: live\n    stop: [unavailable_for: 90s]\n    deadline: 3m\n    failback: false\n";
    let mut env = drill_env(
        163,
        18163,
        lose_a,
        &format!(
            "failover:\n  automatic: true\n  witness: \"{}:7411\"\n  heartbeat_interval: 200ms\n  suspect_after: 3\n  lease_ttl: 3s\n  fencing_deadline: 1s\n  promotion_delay: 1s\n",
            "127.163.9.1"
        ),
    );
    let applied = env.run(&["apply"]);
    assert_eq!(applied.code, 0, "{}{}", applied.stdout, applied.stderr);
    for args in [&["repo", "init"][..], &["backup", "--replicate"]] {
        let out = env.run(args);
        assert_eq!(out.code, 0, "{args:?}: {}{}", out.stdout, out.stderr);
    }
    env.start_controller(&["--agents"]);
    env.wait_event("a serving", Duration::from_secs(20), |e| {
        e["kind"] == "unfenced" && e["site"] == "a"
    });
    let (code, report, out) = drill(&env, &["drill", "run", "lose-a", "--json"]);
    eprintln!(
        "site drill: RTO {} s (detect {}, decide {}, execute {}, propagate {}); RPO {} s, {} writes lost",
        report["rto"]["measured_s"],
        report["rto"]["detect_s"],
        report["rto"]["decide_s"],
        report["rto"]["execute_s"],
        report["rto"]["propagate_s"],
        report["rpo"]["seconds"],
        report["rpo"]["writes_lost"]
    );
    assert_eq!(report["outcome"], "completed", "{out}\n{}", env.dump_events());
    assert!(
        report["rto"]["measured_s"].as_f64().is_some_and(|r| r < 30.0),
        "{report:#}"
    );
    assert!(report["rto"]["detect_s"].as_f64().is_some(), "{report:#}");
    assert!(report["rto"]["execute_s"].as_f64().is_some(), "{report:#}");
    assert!(
        report["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "failover_finished"),
        "{report:#}"
    );
    let rpo = &report["rpo"]["datasets"][0];
    assert_eq!(
        rpo["site"], "b",
        "the canary is read where the data was recovered: {report:#}"
    );
    assert!(rpo["writes_lost"].as_u64().is_some(), "{report:#}");
    assert_eq!(report["leftovers"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["verdict"], "pass", "{report:#}");
    assert_eq!(code, 0);
    assert!(
        env.state().join("sites/a/site.json").exists(),
        "site a is back within reach"
    );
    env.stop_controller();
}

/// The dead man's switch, on one machine with the agents (`controller --agents`): the drill is
/// killed -9 right after its fault went in (site a lost) and nothing resumes it. a's agent
/// reverts the fault by itself once the order's `until` — the drill's start, its deadline and
/// a margin — has passed, and not before; a is back within reach and web serves there again.
/// A later `drill resume` finds nothing left to revert and nothing left behind.
#[test]
fn a_fault_whose_drill_died_is_reverted_by_the_site_itself_at_its_until() {
    let lose_a = "  lose-a:\n    scope: { site: a }\n    faults: [stop_site: a]\n    mode: live\n    stop: [unavailable_for: 5m]\n    deadline: 4s\n    failback: false\n";
    let mut env = drill_env(
        171,
        18171,
        lose_a,
        "failover:\n  witness: \"127.171.9.1:7411\"\n  heartbeat_interval: 200ms\n  suspect_after: 3\n  lease_ttl: 3s\n  fencing_deadline: 1s\n  promotion_delay: 1s\n",
    );
    let applied = env.run(&["apply"]);
    assert_eq!(applied.code, 0, "{}{}", applied.stdout, applied.stderr);
    env.start_controller(&["--agents"]);
    env.wait_event("a serving", Duration::from_secs(20), |e| {
        e["kind"] == "unfenced" && e["site"] == "a"
    });
    assert!(
        poll(Duration::from_secs(20), || env.healthy_pid("a", "web")).is_some(),
        "web never healthy:\n{}",
        env.dump_events()
    );
    // Records: begun, undo, injected — killed right after the fault went in.
    let out = Command::new(BIN)
        .args(["drill", "run", "lose-a", "--json", "--state"])
        .arg(env.state())
        .arg("--spec")
        .arg(env.spec_dir())
        .env("RESURGO_CRASH_AFTER_RECORD", "3")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let faults = env.state().join("faults/a");
    let record: Value = std::fs::read_dir(&faults)
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap())
        .expect("the order was written down at a before it was applied");
    assert_eq!(record["order"]["fault"], serde_json::json!({"stop_site": "a"}));
    assert!(!env.state().join("sites/a/site.json").exists(), "a is lost");
    let until = record["order"]["until_unix"].as_f64().unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    assert!(
        until - now() > 10.0,
        "bounded by the deadline and a margin, not less: {record}"
    );
    let in_force = || {
        std::fs::read_dir(&faults).is_ok_and(|d| d.flatten().any(|e| e.path().extension().is_some_and(|x| x == "json")))
    };
    // Not before its until…
    while now() < until - 2.0 {
        assert!(in_force(), "reverted {:.1} s before its until", until - now());
        assert!(!env.state().join("sites/a/site.json").exists());
        std::thread::sleep(Duration::from_millis(500));
    }
    // …but soon after it, by a's agent, with no drill alive.
    let reverted = poll(Duration::from_secs(15), || (!in_force()).then_some(()));
    assert!(
        reverted.is_some(),
        "the fault outlived its until:\n{}",
        env.dump_events()
    );
    eprintln!("reverted {:.2} s after its until", now() - until);
    assert!(env.state().join("sites/a/site.json").exists(), "a is back within reach");
    assert!(
        env.events()
            .iter()
            .any(|e| e["kind"] == "fault_expired" && e["site"] == "a"),
        "{}",
        env.dump_events()
    );
    assert!(
        poll(Duration::from_secs(30), || env.healthy_pid("a", "web")).is_some(),
        "web serves at a again:\n{}",
        env.dump_events()
    );
    let (_, report, out) = drill(&env, &["drill", "resume", "--json"]);
    assert_eq!(report["leftovers"], serde_json::json!([]), "{out}");
    assert_eq!(report["outcome"], "interrupted", "{report:#}");
    env.stop_controller();
}
