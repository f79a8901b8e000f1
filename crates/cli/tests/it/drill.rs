//! Drills on one machine, live: a service killed and a site lost, each measured, torn down
//! and reported; the drill's own process killed at each journal boundary, interrupted by
//! SIGINT, or out of time, and its teardown still complete; a second drill refused while one
//! runs. The reports are read by a real JUnit consumer and opened in a real browser. `status`
//! shows each service's last pass and warns when its drill is due.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{poll, signal, Env, BIN};

/// web at a (standby b) writing to its SQLite dataset `notes`, restarted by the controller
/// (`sync: auto`); the proxy route `front` at `127.0.0.1:<route>`; the drills of `drills`.
pub(crate) fn drill_env(block: u8, route: u16, drills: &str, extra: &str) -> Env {
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

pub(crate) fn applied_with_controller(env: &mut Env) {
    let applied = env.run(&["apply"]);
    assert_eq!(applied.code, 0, "{}{}", applied.stdout, applied.stderr);
    env.start_controller(&[]);
    assert!(
        poll(Duration::from_secs(20), || env.healthy_pid("a", "web")).is_some(),
        "web never healthy:\n{}",
        env.dump_events()
    );
}

pub(crate) fn drill(env: &Env, args: &[&str]) -> (i32, Value, String) {
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

/// Freshness: after kill-web passes, `status` shows for web when it last passed a drill, with
/// the RTO and RPO that run measured, not due (cadence 30d); once the cadence is shorter than
/// the pass's age (`cadence: 1s`, two seconds later), it is due and the human output warns,
/// naming the drill to run.
#[test]
fn status_shows_each_services_last_drill_pass_and_warns_when_its_cadence_has_passed() {
    let mut env = drill_env(164, 18164, KILL_WEB, "");
    applied_with_controller(&mut env);
    let before = env.status();
    let web = crate::util::find_service(&before, "a", "web").unwrap();
    assert_eq!(web["drill"]["drill"], "kill-web", "{web:#}");
    assert_eq!(web["drill"]["due"], true, "never passed, with a cadence: {web:#}");
    assert!(web["drill"]["last_pass"].is_null(), "{web:#}");

    let (code, report, out) = drill(&env, &["drill", "run", "kill-web", "--json"]);
    assert_eq!(code, 0, "the drill passes:\n{out}\n{}", env.dump_events());
    let status = env.status();
    let web = crate::util::find_service(&status, "a", "web").unwrap();
    let shown = &web["drill"];
    assert_eq!(shown["drill"], "kill-web", "{web:#}");
    assert_eq!(shown["run"], report["run"], "{web:#}");
    assert_eq!(shown["last_pass"], report["started"], "{web:#}");
    assert_eq!(shown["rto_s"], report["rto"]["measured_s"], "{web:#}");
    assert!(shown["rto_s"].as_f64().is_some_and(|r| r > 0.0), "{web:#}");
    assert_eq!(shown["rpo_s"], report["rpo"]["seconds"], "{web:#}");
    assert_eq!(shown["cadence"], "30d");
    assert_eq!(shown["due"], false, "{web:#}");
    let human = env.run(&["status"]);
    assert!(human.stdout.contains("drill kill-web passed "), "{}", human.stdout);
    assert!(!human.stdout.contains("warning: no drill"), "{}", human.stdout);

    // The cadence shorter than the pass's age: due, and a warning.
    let spec = std::fs::read_to_string(env.spec_dir().join("resurgo.yaml")).unwrap();
    env.write_spec(&spec.replace("    cadence: 30d\n", "    cadence: 1s\n"));
    std::thread::sleep(Duration::from_secs(2));
    let status = env.status();
    let web = crate::util::find_service(&status, "a", "web").unwrap();
    assert_eq!(web["drill"]["due"], true, "{web:#}");
    assert_eq!(web["drill"]["cadence"], "1s");
    assert_eq!(web["drill"]["run"], report["run"], "still its last pass: {web:#}");
    let human = env.run(&["status"]);
    assert!(
        human
            .stdout
            .contains("no drill has passed for `web` within its cadence 1s: run `resurgo drill run kill-web`"),
        "{}",
        human.stdout
    );
    env.stop_controller();
}

/// Where a test keeps a screenshot: `RESURGO_SCREENSHOTS` if set, else the test's folder.
pub(crate) fn screenshot_path(name: &str, env: &Env) -> std::path::PathBuf {
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
/// within reach and fails back (writes at b stopped, a final backup replicated to a, restored
/// there); web serves at a again and nothing is left.
#[test]
fn a_live_site_drill_is_detected_and_failed_over_by_the_agents() {
    let lose_a = "  lose-a:\n    scope: { site: a }\n    faults: [stop_site: a]\n    mode: live\n    stop: [unavailable_for: 90s]\n    deadline: 3m\n";
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
    assert!(
        report["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "failed_back"),
        "{report:#}"
    );
    assert!(
        report["phases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "failback"),
        "{report:#}"
    );
    assert!(
        poll(Duration::from_secs(30), || env.healthy_pid("a", "web")).is_some(),
        "web serves at a after the failback:\n{}",
        env.dump_events()
    );
    // No drift and no orphan anywhere.
    let status = env.run(&["status", "--json"]).json();
    for site in status["sites"].as_array().unwrap() {
        for svc in site["services"].as_array().unwrap() {
            assert_eq!(svc["drift"], "in-sync", "{status:#}");
        }
    }
    env.stop_controller();
}

/// The network namespaces resurgo's sandboxes use that exist now.
/// The network namespace of the sandbox an isolated drill's run makes (named after its run).
pub(crate) fn report_namespace(report: &Value) -> String {
    let run = report["run"]
        .as_str()
        .unwrap_or_else(|| panic!("no run in the report: {report:#}"));
    resurgo_controller::sandbox::netns_of(run)
}

pub(crate) fn sandbox_namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("resurgo-"))
        .map(str::to_string)
        .collect()
}

/// DESIGN §11, isolated: a test failover of web into a sandbox at b (its own network
/// namespace) on a copy of b's newest restore point, while production at a keeps serving.
/// Production's canary loses nothing and its route never fails; the report carries the
/// isolation proof (production's endpoints tried from inside, none reached); the sandbox's
/// namespace, processes and copies are gone afterwards. Killed after it made its sandbox,
/// the drill is resumed and the sandbox is destroyed all the same.
#[test]
fn an_isolated_drill_tries_the_failover_in_a_sandbox_and_leaves_production_untouched() {
    let try_b = "  try-b:\n    scope: { service: web }\n    faults: [kill: web]\n    deadline: 2m\n  try-site-b:\n    scope: { site: a }\n    faults: [stop_site: a]\n    deadline: 2m\n  try-tier-b:\n    scope: { services: [web] }\n    faults: [kill: web]\n    deadline: 2m\n";
    let mut env = drill_env(166, 18166, try_b, "");
    applied_with_controller(&mut env);
    for args in [&["repo", "init"][..], &["backup", "--replicate"]] {
        let out = env.run(args);
        assert_eq!(out.code, 0, "{args:?}: {}{}", out.stdout, out.stderr);
    }
    let web_pid = env.healthy_pid("a", "web").unwrap();
    let (code, report, out) = drill(&env, &["drill", "run", "try-b", "--json"]);
    eprintln!(
        "isolated drill: sandbox serving after {} s (execute {}, propagate {}); restore point {} s old",
        report["rto"]["measured_s"], report["rto"]["execute_s"], report["rto"]["propagate_s"], report["rpo"]["seconds"]
    );
    assert_eq!(report["mode"], "isolated", "{out}");
    assert_eq!(report["outcome"], "completed", "{report:#}\n{}", env.dump_events());
    assert_eq!(report["verdict"], "pass", "{report:#}");
    assert_eq!(code, 0);
    assert!(report["rto"]["measured_s"].as_f64().is_some(), "{report:#}");
    // Production untouched: the same process served throughout, its route never failed, its
    // canary lost nothing.
    assert_eq!(
        env.healthy_pid("a", "web"),
        Some(web_pid),
        "production's web was not touched"
    );
    let probes = report["probes"].as_array().unwrap();
    let route = probes
        .iter()
        .find(|p| p["kind"] == "production")
        .expect("a production probe");
    assert_eq!(route["failures"], 0, "{route}");
    assert!(route["attempts"].as_u64().unwrap() > 0);
    let canary = probes
        .iter()
        .find(|p| p["kind"] == "canary")
        .expect("a production canary");
    assert_eq!(canary["passed"], true, "{canary}");
    // The isolation proof: production's endpoints tried from inside the sandbox, none reached.
    let attempts = report["isolation"]["attempts"].as_array().expect("isolation proof");
    assert!(
        attempts
            .iter()
            .any(|a| a["to"].as_str().unwrap().contains(&env.addr(1))),
        "web at a was tried: {attempts:?}"
    );
    assert!(attempts.iter().all(|a| a["reached"] == false), "{attempts:?}");
    assert_eq!(report["data_checks"][0]["passed"], true, "{report:#}");
    assert!(
        report["rpo"]["seconds"].as_f64().is_some_and(|s| s < 300.0),
        "{report:#}"
    );
    assert_eq!(report["leftovers"], serde_json::json!([]), "{report:#}");
    assert!(
        !sandbox_namespaces().contains(&report_namespace(&report)),
        "the sandbox's namespace is gone"
    );
    assert!(
        std::fs::read_dir(env.state().join("sandboxes")).map_or(true, |mut d| d.next().is_none()),
        "the sandbox's folder is gone"
    );
    let junit = env.path().join("isolated.xml");
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
    assert!(cases.iter().any(|(n, ok)| n == "isolation" && *ok), "{cases:?}");
    let html = env.path().join("isolated.html");
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
    let errors = crate::report_consumers::open_in_chromium(&html, &screenshot_path("drill-isolated.png", &env));
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // The same test failover for a whole site and for a workload: isolated too, production
    // untouched, nothing left.
    for (name, kind) in [("try-site-b", "site"), ("try-tier-b", "workload")] {
        let (code, report, out) = drill(&env, &["drill", "run", name, "--json"]);
        assert_eq!(report["scope"]["kind"], kind, "{out}");
        assert_eq!(report["mode"], "isolated", "{report:#}");
        assert_eq!(report["verdict"], "pass", "{report:#}");
        assert_eq!(code, 0);
        let attempts = report["isolation"]["attempts"].as_array().expect("isolation proof");
        assert!(
            !attempts.is_empty() && attempts.iter().all(|a| a["reached"] == false),
            "{attempts:?}"
        );
        assert_eq!(report["leftovers"], serde_json::json!([]), "{report:#}");
        assert_eq!(
            env.healthy_pid("a", "web"),
            Some(web_pid),
            "production's web was not touched"
        );
    }

    // Killed once its sandbox is made and serving: resumed, it destroys the sandbox.
    let before = sandbox_namespaces();
    let out = Command::new(BIN)
        .args(["drill", "run", "try-b", "--json", "--state"])
        .arg(env.state())
        .arg("--spec")
        .arg(env.spec_dir())
        .env("RESURGO_CRASH_AT", "drill-sandbox-made")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&out.status), Some(9));
    // Other tests make sandboxes too: this drill's is the new one its report names.
    let made: Vec<String> = sandbox_namespaces()
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    let (_, report, out) = drill(&env, &["drill", "resume", "--json"]);
    assert_eq!(report["leftovers"], serde_json::json!([]), "{out}");
    let namespace = report_namespace(&report);
    assert!(
        made.contains(&namespace),
        "the sandbox {namespace} was made before the kill: {made:?}"
    );
    assert!(!sandbox_namespaces().contains(&namespace), "no namespace left");
    assert_eq!(
        env.healthy_pid("a", "web"),
        Some(web_pid),
        "production's web still untouched"
    );
    env.stop_controller();
}

/// The PostgreSQL reference stack, isolated: a's cluster backed up and its WAL archived and
/// replicated to b; the drill restores b's newest point into a sandbox at b — the WAL fetched
/// in first, archiving off, no replication — starts PostgreSQL there, checks the copy with
/// `pg_amcheck` and reads the canary through the sandboxed server, while a keeps serving and
/// its canary loses nothing.
#[test]
fn an_isolated_drill_of_postgresql_runs_a_detached_copy_at_b() {
    let pair = crate::pg_failover::PgPair::start(167, "2s");
    let spec = pair.env.spec_dir().join("resurgo.yaml");
    let mut text = std::fs::read_to_string(&spec).unwrap();
    text.push_str("objectives: { rto: 2m, rpo: 5m }\ndrills:\n  try-db:\n    scope: { service: db }\n    faults: [kill: db]\n    deadline: 3m\n");
    std::fs::write(&spec, text).unwrap();
    pair.wait_archived(Duration::from_secs(60));
    let replicate = pair.resurgo(&["replicate", "orders", "--json"]);
    assert_eq!(replicate.code, 0, "{}{}", replicate.stdout, replicate.stderr);
    let out = pair.resurgo(&["drill", "run", "try-db", "--json"]);
    let report: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    eprintln!(
        "isolated PostgreSQL drill: sandbox serving after {} s; restore point {} s old",
        report["rto"]["measured_s"], report["rpo"]["seconds"]
    );
    assert_eq!(
        report["outcome"],
        "completed",
        "{}{}\n{}",
        out.stdout,
        out.stderr,
        pair.log("a")
    );
    let check = &report["data_checks"][0];
    assert_eq!(check["method"], "pg_amcheck", "{report:#}");
    assert_eq!(check["passed"], true, "{report:#}");
    assert!(
        report["rpo"]["datasets"][0]["recovered"].is_u64(),
        "the canary was read in the sandbox: {report:#}"
    );
    let canary = report["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "canary")
        .cloned()
        .expect("a production canary");
    assert_eq!(canary["passed"], true, "{canary}");
    assert!(report["isolation"]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["reached"] == false));
    assert_eq!(report["leftovers"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["verdict"], "pass", "{report:#}");
    assert!(
        !sandbox_namespaces().contains(&report_namespace(&report)),
        "the sandbox's namespace is gone"
    );
    assert_eq!(
        pair.sql("a", "SELECT pg_is_in_recovery()").unwrap(),
        "f",
        "a still the primary"
    );
}

/// DESIGN §11, a workload (two services lost together), live: both processes killed, both
/// restarted by the controller, RTO through web's route; and a drill is refused while a
/// recovery run holds the runs' lock (a failover or failback in progress), changing nothing.
#[test]
fn a_workload_drill_kills_its_services_together_and_no_drill_runs_beside_a_failover() {
    let workload = "  lose-shop:\n    scope: { services: [web, api] }\n    faults: [kill: web, kill: api]\n    mode: live\n    stop: [unavailable_for: 40s]\n    deadline: 2m\n";
    let api = Env::web("api", "a", 8081, "auto", &[]);
    let mut env = drill_env(168, 18168, workload, "");
    let spec = std::fs::read_to_string(env.spec_dir().join("resurgo.yaml")).unwrap();
    env.write_spec(&spec.replacen("datasets:\n", &format!("{api}datasets:\n"), 1));
    applied_with_controller(&mut env);
    let api_pid = poll(Duration::from_secs(20), || env.healthy_pid("a", "api")).expect("api serves");
    let web_pid = env.healthy_pid("a", "web").unwrap();
    // A recovery run in progress: it holds its share of `<state>/runs/active.lock`.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(env.state().join("runs/active.lock"))
        .or_else(|_| {
            std::fs::create_dir_all(env.state().join("runs")).unwrap();
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(env.state().join("runs/active.lock"))
        })
        .unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockShared).unwrap();
    let refused = env.run(&["drill", "run", "lose-shop"]);
    assert_eq!(refused.code, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("failover or failback is in progress"),
        "{}",
        refused.stderr
    );
    assert_eq!(env.healthy_pid("a", "web"), Some(web_pid), "nothing was injected");
    assert!(
        !env.state().join("drills").exists() || drill_runs(&env) == 0,
        "no drill run began"
    );
    drop(held);

    let (code, report, out) = drill(&env, &["drill", "run", "lose-shop", "--json"]);
    assert_eq!(code, 0, "{out}\n{}", env.dump_events());
    assert_eq!(report["scope"]["kind"], "workload");
    assert_eq!(report["faults"].as_array().unwrap().len(), 2, "{report:#}");
    assert_eq!(report["leftovers"], serde_json::json!([]), "{report:#}");
    for (service, old) in [("web", web_pid), ("api", api_pid)] {
        let new = poll(Duration::from_secs(20), || env.healthy_pid("a", service)).expect("restarted");
        assert_ne!(new, old, "{service} was killed and restarted");
    }
    env.stop_controller();
}

/// How many drill runs have a journal.
fn drill_runs(env: &Env) -> usize {
    std::fs::read_dir(env.state().join("drills"))
        .map(|d| d.flatten().filter(|e| e.path().join("journal.jsonl").exists()).count())
        .unwrap_or(0)
}

/// Item 6: the DR site's agent runs a scheduled isolated drill by itself when it is due (it
/// never ran), with no command; its report is a person's, named after the agent; and `drill
/// list` shows it passed and is not due again.
#[test]
fn the_dr_sites_agent_runs_a_scheduled_isolated_drill_when_it_is_due() {
    let nightly =
        "  nightly:\n    scope: { service: web }\n    faults: [kill: web]\n    scheduled: true\n    cadence: 1h\n";
    let env_extra = "failover:\n  witness: \"127.169.9.1:7411\"\n  heartbeat_interval: 200ms\n  suspect_after: 3\n  lease_ttl: 3s\n  fencing_deadline: 1s\n  promotion_delay: 1s\n";
    let mut env = drill_env(169, 18169, nightly, env_extra);
    let applied = env.run(&["apply"]);
    assert_eq!(applied.code, 0, "{}{}", applied.stdout, applied.stderr);
    for args in [&["repo", "init"][..], &["backup", "--replicate"]] {
        let out = env.run(args);
        assert_eq!(out.code, 0, "{args:?}: {}{}", out.stdout, out.stderr);
    }
    env.start_controller(&["--agents"]);
    let passed = env.wait_event("the scheduled drill", Duration::from_secs(90), |e| {
        e["kind"] == "drill_passed" || e["kind"] == "drill_failed"
    });
    assert_eq!(passed["kind"], "drill_passed", "{passed}\n{}", env.dump_events());
    let list = env.run(&["drill", "list", "--json"]).json();
    assert_eq!(list["drills"][0]["last_verdict"], "pass", "{list:#}");
    assert_eq!(list["drills"][0]["due"], false, "{list:#}");
    let report = env.run(&["drill", "report", "latest", "--format", "json"]);
    let report: Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(report["operator"], "the agent at b (scheduled)", "{report:#}");
    assert_eq!(report["mode"], "isolated");
    // Once is enough within the cadence.
    std::thread::sleep(Duration::from_secs(5)); // two scheduler rounds: nothing new may start
    assert_eq!(drill_runs(&env), 1, "not run again within its cadence");
    env.stop_controller();
    assert!(
        !sandbox_namespaces().contains(&report_namespace(&report)),
        "the sandbox's namespace is gone"
    );
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
    // The record goes before the event is written: waited for, not raced.
    env.wait_event("fault_expired at a", Duration::from_secs(10), |e| {
        e["kind"] == "fault_expired" && e["site"] == "a"
    });
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
