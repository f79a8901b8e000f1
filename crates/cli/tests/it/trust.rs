//! The failover layer on its worst days: a site whose folder this host cannot see, a restore
//! killed part-way, a database slower to start than the fencing deadline, two groups homed at
//! different sites. Each test is set up so that the fault it is about would bite.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use std::process::Command;

use crate::util::{find_service, poll, Daemon, Env, Out, BIN};

/// `resurgo ARGS --spec SPEC --state <state>`.
fn run_with(env: &Env, spec: &Path, args: &[&str]) -> Out {
    let mut all: Vec<&str> = args.to_vec();
    let spec = spec.display().to_string();
    all.extend(["--spec", &spec]);
    env.run(&all)
}

/// Writes `text` as the only file of the spec folder `dir`.
fn spec_at(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("resurgo.yaml"), text).unwrap();
    dir.to_path_buf()
}

/// Fast failover timing with a witness address (nothing listens there: it is never asked).
fn failover_section(env: &Env, automatic: bool) -> String {
    format!(
        "failover:\n  automatic: {automatic}\n  witness: \"{}:7411\"\n  heartbeat_interval: 200ms\n  suspect_after: 3\n  lease_ttl: 3s\n  fencing_deadline: 1s\n  promotion_delay: 1s\n",
        env.addr(9)
    )
}

/// The primary lease of `group` as `status --json` shows it: (holder, seconds left).
fn lease(status: &Value, group: &str) -> Option<(String, u64)> {
    let role = status["roles"].as_array()?.iter().find(|r| r["group"] == group)?;
    let lease = &role["lease"];
    let holder = lease.get("holder").or_else(|| lease.get(0))?.as_str()?.to_string();
    let left = lease.get("seconds_left").or_else(|| lease.get(1))?.as_u64()?;
    Some((holder, left))
}

fn healthy_pid(status: &Value, site: &str, service: &str) -> Option<u32> {
    let s = find_service(status, site, service)?;
    (s["health"] == "healthy").then(|| s["pid"].as_u64().map(|p| p as u32))?
}

/// Site a's folder is not where this state folder, which set a up, expects it (a volume
/// mounted elsewhere, or gone), while a's agent runs and renews its lease: `status` says a is
/// unknown, `failover` does not count a as fenced from what it sees — a's own agent stops a's
/// service and hands the group over before a's lease is revoked —, and a controller makes
/// nothing in a's place. (The same from another host, in its own namespace and mount
/// namespace, with etcd between: `partition::partition_failover_from_a_host_that_cannot_see_a_goes_through_as_own_agent`.)
#[test]
fn a_site_this_host_cannot_see_is_unknown_never_empty_and_only_its_own_agent_fences_it() {
    let env = Env::new(150);
    let web = Env::web("web", "a", 7150, "auto", &[]).replace("    site: a\n", "    site: a\n    standby: [b]\n");
    let with_root = |root: &Path| {
        env.spec(&web).replace(
            "    capacity: { cpu: 8, memory: 8Gi }\n  b:",
            &format!(
                "    capacity: {{ cpu: 8, memory: 8Gi }}\n    root: {}\n  b:",
                root.display()
            ),
        ) + &failover_section(&env, false)
    };
    // a's folder on a's own host is where the harness looks for processes to clean up.
    let a_host = spec_at(&env.path().join("spec-a"), &with_root(&env.state().join("sites/a")));
    let elsewhere = env.path().join("operator/site-a");
    let operator = spec_at(&env.path().join("spec-operator"), &with_root(&elsewhere));

    let applied = run_with(&env, &a_host, &["apply"]);
    assert_eq!(applied.code, 0, "{}{}", applied.stdout, applied.stderr);
    let _agent = Daemon::start(&env, &a_host, &["agent", "--site", "a"], "agent-a.log");
    let held = poll(Duration::from_secs(20), || {
        let status = run_with(&env, &a_host, &["status", "--json"]).json();
        lease(&status, "site-a").filter(|(h, _)| h == "a")
    });
    assert!(held.is_some(), "a's agent never took its lease");
    let pid =
        healthy_pid(&run_with(&env, &a_host, &["status", "--json"]).json(), "a", "web").expect("web healthy at a");

    // status from the host without a's folder: unknown, and not in sync.
    let out = run_with(&env, &operator, &["status", "--json"]);
    assert_eq!(out.code, 2, "an unknown site is not in sync: {}", out.stdout);
    let status = out.json();
    let a = status["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == "a")
        .unwrap();
    assert_eq!(a["state"], "unknown", "{a}");
    assert!(a["reason"].as_str().unwrap().contains("not set up here"), "{a}");
    assert_eq!(find_service(&status, "a", "web").unwrap()["health"], "unknown");

    // failover from that host: a cannot be seen, so this run does not count it as fenced from
    // what it sees: it asks through the store, and a's own agent (which sees a's folder) stops
    // a's service and answers; only then is a's lease revoked and b assigned.
    let failover = run_with(&env, &operator, &["failover", "--to", "b"]);
    assert_eq!(failover.code, 0, "{}{}", failover.stdout, failover.stderr);
    let handed = env.events().into_iter().find(|e| {
        e["kind"] == "fenced"
            && e["site"] == "a"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("handing site-a over to b at epoch 1"))
    });
    assert!(
        handed.is_some(),
        "a's own agent did not hand over:\n{}",
        env.dump_events()
    );
    assert!(!crate::util::alive(pid), "a's service was stopped by a's agent");
    let status = run_with(&env, &a_host, &["status", "--json"]).json();
    let roles = status["roles"].as_array().cloned().unwrap_or_default();
    assert!(
        roles
            .iter()
            .any(|r| r["group"] == "site-a" && r["primary"] == "b" && r["epoch"] == 1),
        "site-a assigned to b at epoch 1: {roles:?}"
    );

    // A controller on that host: a stays unknown, nothing is made where its folder would be.
    let _controller = Daemon::start(
        &env,
        &operator,
        &["controller", "--tick", "200ms", "--poll", "300ms"],
        "controller.log",
    );
    env.wait_event("a unknown to the controller", Duration::from_secs(20), |e| {
        e["kind"] == "site_unreachable" && e["site"] == "a"
    });
    assert!(
        !elsewhere.exists(),
        "the controller made site a anew at {}",
        elsewhere.display()
    );
}

/// A spec with the SQLite dataset `notes` of `web` at a, backed up at a, replicated to b,
/// each site with its own repository.
fn notes_spec(env: &Env, port: u16) -> String {
    env.with_repositories(&env.spec(&Env::notes_web(port)))
        + "datasets:\n  notes:\n    service: web\n    type: sqlite\n    path: data/notes.db\n"
}

/// A failover killed (SIGKILL) in the middle of its restore step at b, then resumed: what the
/// restore found at b was set aside before the kill, and is still there after the resume,
/// byte for byte; the restored data is in place; only `resurgo set-aside --remove` deletes it.
#[test]
fn a_restore_killed_part_way_and_resumed_keeps_what_it_set_aside() {
    let env = Env::new(151);
    env.write_spec(&notes_spec(&env, 7151));
    for args in [&["repo", "init"][..], &["apply"]] {
        let out = env.run(args);
        assert_eq!(out.code, 0, "{args:?}: {}{}", out.stdout, out.stderr);
    }
    assert!(poll(Duration::from_secs(15), || env.healthy_pid("a", "web")).is_some());
    let backup = env.run(&["backup", "notes", "--replicate"]);
    assert_eq!(backup.code, 0, "{}{}", backup.stdout, backup.stderr);

    // b holds data of its own where the restore will land (a copy from an earlier life).
    let at_b = env.state().join("sites/b/services/web/data");
    std::fs::create_dir_all(&at_b).unwrap();
    let kept: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(at_b.join("notes.db"), &kept).unwrap();
    std::fs::write(at_b.join("only-at-b"), "written at b, never replicated").unwrap();

    let killed = Command::new(BIN)
        .args(["failover", "--to", "b", "--state"])
        .arg(env.state())
        .arg("--spec")
        .arg(env.spec_dir())
        .env("RESURGO_CRASH_AT", "restore-before-rename")
        .output()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&killed.status),
        Some(9),
        "the run was to be killed mid-restore: {}",
        String::from_utf8_lossy(&killed.stderr)
    );
    let copies = |env: &Env| -> Vec<Value> {
        let out = env.run(&["set-aside", "--json"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.json().as_array().cloned().unwrap_or_default()
    };
    let check_copy = |copies: &[Value]| {
        assert_eq!(copies.len(), 1, "one copy set aside: {copies:?}");
        assert_eq!(copies[0]["site"], "b");
        let path = PathBuf::from(copies[0]["copy"]["path"].as_str().unwrap());
        assert_eq!(std::fs::read(path.join("notes.db")).unwrap(), kept, "byte-identical");
        assert_eq!(
            std::fs::read_to_string(path.join("only-at-b")).unwrap(),
            "written at b, never replicated"
        );
        copies[0]["copy"]["id"].as_str().unwrap().to_string()
    };
    let id = check_copy(&copies(&env));

    let runs = env.run(&["runs", "--json"]).json();
    let run = runs["runs"].as_array().unwrap().last().unwrap()["run"]
        .as_str()
        .unwrap()
        .to_string();
    let resumed = env.run(&["runs", &run, "--resume"]);
    assert_eq!(resumed.code, 0, "{}{}", resumed.stdout, resumed.stderr);
    assert_eq!(check_copy(&copies(&env)), id, "the same copy, untouched by the resume");
    assert!(
        at_b.join("notes.db").exists() && !at_b.join("only-at-b").exists(),
        "restored in place"
    );
    let status = env.run(&["status", "--json"]).json();
    let b = status["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == "b")
        .unwrap();
    assert_eq!(b["set_aside"].as_array().map(Vec::len), Some(1), "status shows it: {b}");

    let removed = env.run(&["set-aside", "--remove", &id, "--site", "b"]);
    assert_eq!(removed.code, 0, "{}", removed.stderr);
    assert!(copies(&env).is_empty());
}

/// A database that takes longer to start than the fencing deadline (4 s against 1 s), started
/// by its site's agent: the lease is renewed on the agent's own renewal thread meanwhile, so
/// its supervisor never fences it — it comes up once, healthy, and stays.
#[test]
fn a_start_slower_than_the_fencing_deadline_is_not_fenced_by_its_own_supervisor() {
    let mut env = Env::new(152);
    let slow = format!(
        "  db:\n    command: sh\n    args: [-c, \"sleep 4; exec {BIN} example-app --port 7152\"]\n    ports: [7152]\n    health:\n      http: {{ port: 7152, path: /healthz }}\n      interval: 200ms\n      start_timeout: 20s\n    site: a\n    standby: [b]\n    sync: manual\n    stop_timeout: 2s\n"
    );
    env.write_spec(&(env.spec(&slow) + &failover_section(&env, false)));
    env.start_controller(&["--agents"]);
    let up = poll(Duration::from_secs(30), || env.healthy_pid("a", "db"));
    let Some(pid) = up else {
        panic!("db never came up healthy at a:\n{}", env.dump_events());
    };
    // Well past the fencing deadline after it came up: the same process, never fenced.
    let stayed = poll(Duration::from_secs(4), || {
        (env.healthy_pid("a", "db") != Some(pid)).then_some(())
    });
    assert!(stayed.is_none(), "db was restarted or stopped:\n{}", env.dump_events());
    assert!(
        !env.events().iter().any(|e| e["kind"] == "fenced"),
        "a fenced itself:\n{}",
        env.dump_events()
    );
    let status = env.status();
    assert_eq!(find_service(&status, "a", "db").unwrap()["restarts"], 0, "{status}");
}

/// Two groups homed at different sites (web1 at a, web2 at b), the agents in-process. web1 is
/// failed over to b; b's agent records epoch 1 for group site-a — and group site-b, still at
/// epoch 0, keeps its primary b serving and renewing (one epoch memory per group).
#[test]
fn failing_one_group_over_leaves_the_other_groups_primary_serving_and_renewing() {
    let mut env = Env::new(153);
    let web1 = Env::web("web1", "a", 7153, "manual", &[]).replace("    site: a\n", "    site: a\n    standby: [b]\n");
    let web2 = Env::web("web2", "b", 7154, "manual", &[]).replace("    site: b\n", "    site: b\n    standby: [a]\n");
    env.write_spec(&(env.spec(&(web1 + &web2)) + &failover_section(&env, false)));
    let applied = env.run(&["apply"]);
    assert_eq!(applied.code, 0, "{}{}", applied.stdout, applied.stderr);
    env.start_controller(&["--agents"]);
    let both = poll(Duration::from_secs(20), || {
        let status = env.status();
        let a = lease(&status, "site-a").filter(|(h, _)| h == "a");
        let b = lease(&status, "site-b").filter(|(h, _)| h == "b");
        a.zip(b).and(healthy_pid(&status, "b", "web2"))
    });
    let Some(web2_pid) = both else {
        panic!("the agents never held both leases:\n{}", env.dump_events());
    };

    let failover = env.run(&["failover", "--to", "b", "--from", "a"]);
    assert_eq!(failover.code, 0, "{}{}", failover.stdout, failover.stderr);
    let moved = poll(Duration::from_secs(20), || {
        let status = env.status();
        lease(&status, "site-a")
            .filter(|(h, _)| h == "b")
            .and(healthy_pid(&status, "b", "web1"))
    });
    assert!(moved.is_some(), "web1 never served at b:\n{}", env.dump_events());

    // Well past the fencing deadline: group site-b was never fenced and b still renews it.
    let fenced = poll(Duration::from_secs(5), || {
        env.events()
            .into_iter()
            .find(|e| e["kind"] == "fenced" && e["message"].as_str().is_some_and(|m| m.contains("site-b")))
    });
    assert!(
        fenced.is_none(),
        "group site-b was fenced at b: {fenced:?}\n{}",
        env.dump_events()
    );
    let status = env.status();
    assert_eq!(
        healthy_pid(&status, "b", "web2"),
        Some(web2_pid),
        "web2 ran untouched at b"
    );
    let (holder, left) = lease(&status, "site-b").expect("site-b's lease held");
    assert_eq!(holder, "b");
    assert!(left >= 1, "renewed: {left}s left of a 3s lease");
}
