//! The reconcile loop against real processes: drift healed (auto) or reported (manual),
//! services adopted across a controller restart, Git down, a site unreachable.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::util::{alive, find_service, git, git_repo, poll, signal, Env};

/// Waits until the service runs healthy and returns its pid.
pub(crate) fn wait_healthy(env: &Env, site: &str, service: &str, timeout: Duration) -> u32 {
    poll(timeout, || env.healthy_pid(site, service)).unwrap_or_else(|| {
        panic!(
            "{service}@{site} not healthy within {timeout:?}; events:\n{}",
            env.dump_events()
        )
    })
}

/// Waits until the service runs with a pid other than `old`; returns (pid, time since `since`).
fn wait_new_pid(env: &Env, site: &str, service: &str, old: u32, since: Instant) -> (u32, Duration) {
    let pid = poll(Duration::from_secs(10), || {
        let status = env.status();
        let s = find_service(&status, site, service)?;
        let pid = s["pid"].as_u64()? as u32;
        (s["process"] == "running" && pid != old && alive(pid)).then_some(pid)
    })
    .unwrap_or_else(|| {
        // What the service's supervisor said (a fence, an exit) and the site's fence deadline.
        let dir = env.state().join("sites").join(site);
        let shim = std::fs::read_to_string(dir.join("services").join(service).join("shim.log")).unwrap_or_default();
        let fence = std::fs::read_to_string(dir.join("fence-until")).unwrap_or_default();
        panic!(
            "{service}@{site} was not restarted within 10s; supervisor:\n{shim}\nfence: {fence}\nstatus: {}\nevents:\n{}",
            env.status(),
            env.dump_events()
        )
    });
    (pid, since.elapsed())
}

#[test]
fn killed_service_is_restarted_when_auto() {
    let mut env = Env::new(111);
    env.write_spec(&env.spec(&Env::web("web", "a", 7101, "auto", &[])));
    env.start_controller(&[]);
    let pid = wait_healthy(&env, "a", "web", Duration::from_secs(15));
    env.wait_event("drift_corrected (initial create)", Duration::from_secs(5), |e| {
        e["kind"] == "drift_corrected"
    });

    signal(pid, Signal::SIGKILL);
    let killed = Instant::now();
    let (new_pid, took) = wait_new_pid(&env, "a", "web", pid, killed);
    // How fast is the benchmarks' business; here only that it comes back, well within a deadline.
    eprintln!("restarted {:.2} s after the kill", took.as_secs_f64());
    assert!(took <= Duration::from_secs(15), "restart took {took:?}");
    assert_ne!(new_pid, pid);
    let seen = env.wait_event("drift_seen for the kill", Duration::from_secs(5), |e| {
        e["kind"] == "drift_seen" && e["message"].as_str().is_some_and(|m| m.contains("killed by SIGKILL"))
    });
    assert_eq!(seen["site"], "a");
    assert_eq!(seen["service"], "web");
    assert!(
        seen["commit"].as_str().is_some_and(|c| c.starts_with("folder:")),
        "events name the desired state: {seen}"
    );
    wait_healthy(&env, "a", "web", Duration::from_secs(10));
    let status = env.status();
    assert_eq!(find_service(&status, "a", "web").unwrap()["restarts"], 1);
}

#[test]
fn killed_service_is_only_reported_when_manual() {
    let mut env = Env::new(112);
    env.write_spec(&env.spec(&Env::web("web", "a", 7111, "manual", &[])));
    assert_eq!(env.run(&["apply"]).code, 0);
    let pid = env.healthy_pid("a", "web").unwrap();
    env.start_controller(&[]);
    env.wait_event("controller_started", Duration::from_secs(5), |e| {
        e["kind"] == "controller_started"
    });

    signal(pid, Signal::SIGKILL);
    let seen = env.wait_event("drift_seen", Duration::from_secs(2), |e| {
        e["kind"] == "drift_seen" && e["service"] == "web"
    });
    assert!(
        seen["message"]
            .as_str()
            .unwrap()
            .starts_with("start (process exited: killed by SIGKILL)"),
        "{seen}"
    );
    // Several more ticks: still reported, never corrected.
    let ticks_later = env.events().len();
    poll(Duration::from_secs(1), || None::<()>);
    let status = env.status();
    let web = find_service(&status, "a", "web").unwrap();
    assert_eq!(web["process"], "exited", "manual drift is left alone: {web}");
    assert_eq!(web["drift"], "start");
    assert!(
        !env.events().iter().any(|e| e["kind"] == "drift_corrected"),
        "{}",
        env.dump_events()
    );
    assert_eq!(
        env.events().len(),
        ticks_later,
        "the same drift is reported once, not every tick"
    );
    assert_eq!(env.run(&["status"]).code, 2, "status exits 2 on drift");
}

#[test]
fn restarted_controller_adopts_running_services() {
    let mut env = Env::new(113);
    let services = [
        Env::web("one", "a", 7121, "auto", &[]),
        Env::web("two", "b", 7122, "auto", &["one"]),
    ]
    .concat();
    env.write_spec(&env.spec(&services));
    env.start_controller(&[]);
    let one = wait_healthy(&env, "a", "one", Duration::from_secs(15));
    let two = wait_healthy(&env, "b", "two", Duration::from_secs(15));
    let status = env.stop_controller();
    assert!(status.success(), "SIGTERM is a clean stop: {status:?}");
    env.wait_event("controller_stopped", Duration::from_secs(1), |e| {
        e["kind"] == "controller_stopped"
    });
    assert!(alive(one) && alive(two), "services outlive the controller");

    let before = env.events().len();
    env.start_controller(&[]);
    // The second controller has loaded the spec once it logs desired_changed.
    poll(Duration::from_secs(5), || {
        env.events()[before..]
            .iter()
            .any(|e| e["kind"] == "desired_changed")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("second controller did not load the spec:\n{}", env.dump_events()));
    // Asserting that nothing happens needs a window: six ticks of 200 ms.
    poll(Duration::from_millis(1200), || None::<()>);
    assert_eq!(env.healthy_pid("a", "one"), Some(one), "adopted, not restarted");
    assert_eq!(env.healthy_pid("b", "two"), Some(two), "adopted, not restarted");
    let acted: Vec<_> = env.events()[before..]
        .iter()
        .filter(|e| e["kind"] == "drift_seen" || e["kind"] == "drift_corrected")
        .cloned()
        .collect();
    assert!(acted.is_empty(), "no drift after a restart: {acted:?}");
    // Exactly one example-app process per service port.
    for port in ["7121", "7122"] {
        let count = count_processes(&["example-app", "--port", port]);
        assert_eq!(count, 1, "one process for port {port}, found {count}");
    }
}

fn count_processes(needle: &[&str]) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if needle.iter().all(|w| args.iter().any(|a| a == w)) && !args.iter().any(|a| a == "__shim") {
            n += 1;
        }
    }
    n
}

#[test]
fn git_unreachable_falls_back_to_last_known_good() {
    let mut env = Env::new(114);
    let repo = env.path().join("repo");
    let spec = env.spec(&Env::web("web", "a", 7131, "auto", &[]));
    let sha = git_repo(&repo, &[("resurgo.yaml", &spec)]);
    // `status` in this test reads the same spec from a folder.
    env.write_spec(&spec);
    let repo_s = repo.to_str().unwrap().to_string();
    env.start_controller(&["--repo", &repo_s, "--ref", "main"]);
    let pid = wait_healthy(&env, "a", "web", Duration::from_secs(15));
    let changed = env.wait_event("desired_changed", Duration::from_secs(5), |e| {
        e["kind"] == "desired_changed"
    });
    assert_eq!(changed["commit"], sha);
    env.stop_controller();

    // The Git host goes away.
    std::fs::rename(&repo, env.path().join("repo-gone")).unwrap();
    env.start_controller(&["--repo", &repo_s, "--ref", "main"]);
    let down = env.wait_event("git_unreachable", Duration::from_secs(5), |e| {
        e["kind"] == "git_unreachable"
    });
    assert!(down["message"].as_str().unwrap().contains("is unreachable"), "{down}");
    let lkg = env.wait_event("using_last_known_good", Duration::from_secs(5), |e| {
        e["kind"] == "using_last_known_good"
    });
    assert_eq!(lkg["commit"], sha, "the last-known-good copy is the last commit seen");

    // And it still keeps the system as declared.
    signal(pid, Signal::SIGKILL);
    let (_, took) = wait_new_pid(&env, "a", "web", pid, Instant::now());
    assert!(took <= Duration::from_secs(15), "{took:?}");

    // Git comes back with a new commit: the controller follows it.
    std::fs::rename(env.path().join("repo-gone"), &repo).unwrap();
    std::fs::write(
        repo.join("resurgo.yaml"),
        env.spec(&Env::web("web", "a", 7132, "auto", &[])),
    )
    .unwrap();
    git(
        &repo,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qam",
            "port 7132",
        ],
    );
    let new_sha = git(&repo, &["rev-parse", "HEAD"]).trim().to_string();
    env.wait_event("git_reachable", Duration::from_secs(5), |e| {
        e["kind"] == "git_reachable"
    });
    env.wait_event("desired_changed to the new commit", Duration::from_secs(5), |e| {
        e["kind"] == "desired_changed" && e["commit"] == new_sha
    });
    let corrected = env.wait_event("update corrected", Duration::from_secs(15), |e| {
        e["kind"] == "drift_corrected" && e["commit"] == new_sha
    });
    assert!(corrected["message"].as_str().unwrap().contains("update"), "{corrected}");
}

/// A site's daemon reads the spec from Git itself and keeps the last-known-good copy:
/// restarted while the Git host is down, `agent --site a` runs from that copy — it serves
/// the site and heals it — instead of refusing to start.
#[test]
fn site_agent_restarted_while_git_is_unreachable_runs_from_the_last_known_good_copy() {
    let mut env = Env::new(139);
    let repo = env.path().join("repo");
    // Fast timing: a restarted agent waits out the lease it held before (one ttl).
    let spec = env.spec(&Env::web("web", "a", 7191, "auto", &[]))
        + "failover:\n  heartbeat_interval: 200ms\n  suspect_after: 3\n  lease_ttl: 3s\n  fencing_deadline: 1s\n  promotion_delay: 1s\n";
    let sha = git_repo(&repo, &[("resurgo.yaml", &spec)]);
    // `status` reads the same spec from a folder.
    env.write_spec(&spec);
    let repo_s = repo.to_str().unwrap().to_string();
    let agent = ["agent", "--site", "a"];
    env.start_daemon(&agent, &["--repo", &repo_s, "--ref", "main"], &[]);
    let pid = wait_healthy(&env, "a", "web", Duration::from_secs(15));
    env.wait_event("a's desired state from Git", Duration::from_secs(5), |e| {
        e["kind"] == "desired_changed" && e["commit"] == sha && e["site"] == "a"
    });
    env.stop_controller();

    // The Git host goes away; the site's daemon restarts.
    std::fs::rename(&repo, env.path().join("repo-gone")).unwrap();
    env.start_daemon(&agent, &["--repo", &repo_s, "--ref", "main"], &[]);
    let lkg = env.wait_event("using_last_known_good", Duration::from_secs(10), |e| {
        e["kind"] == "using_last_known_good"
    });
    assert_eq!(lkg["commit"], sha, "{}", env.dump_events());
    assert!(
        env.events().iter().any(|e| e["kind"] == "git_unreachable"),
        "{}",
        env.dump_events()
    );
    env.wait_event("the agent started again", Duration::from_secs(10), |e| {
        e["kind"] == "agent_started" && e["site"] == "a" && e["time"].as_str() >= lkg["time"].as_str()
    });
    // It serves the site — web was fenced by its supervisor once the stopped agent's lease
    // went unrenewed — and keeps it as declared.
    let (pid, _) = wait_new_pid(&env, "a", "web", pid, Instant::now());
    signal(pid, Signal::SIGKILL);
    let (_, took) = wait_new_pid(&env, "a", "web", pid, Instant::now());
    assert!(took <= Duration::from_secs(15), "{took:?}");
    assert_eq!(env.stop_controller().code(), Some(0), "it ran until stopped");
}

#[test]
fn unreachable_site_is_unknown_while_others_reconcile() {
    let mut env = Env::new(115);
    // Site c's state folder sits under a regular file: every access fails.
    let blocker = env.path().join("blocker");
    std::fs::write(&blocker, "not a folder").unwrap();
    let spec = env.spec(&[Env::web("web", "a", 7141, "auto", &[]), Env::web("far", "c", 7142, "auto", &[])].concat()).replace(
        "services:\n",
        &format!("  c:\n    provider: local\n    address: {}\n    capacity: {{ cpu: 8, memory: 8Gi }}\n    root: {}\nservices:\n", env.addr(3), blocker.join("c").display()),
    );
    env.write_spec(&spec);

    let status_out = env.run(&["status", "--json"]);
    assert_eq!(status_out.code, 2, "an unknown site is not in sync");
    let status = status_out.json();
    let c = status["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == "c")
        .unwrap();
    assert_eq!(c["state"], "unknown", "{c}");
    assert!(c["reason"].as_str().unwrap().contains("unreachable"), "{c}");
    assert_eq!(
        find_service(&status, "c", "far").unwrap()["health"],
        "unknown",
        "never healthy when unseen"
    );

    env.start_controller(&[]);
    let pid = wait_healthy(&env, "a", "web", Duration::from_secs(15));
    let ev = env.wait_event("site_unreachable", Duration::from_secs(5), |e| {
        e["kind"] == "site_unreachable"
    });
    assert_eq!(ev["site"], "c");
    signal(pid, Signal::SIGKILL);
    let (_, took) = wait_new_pid(&env, "a", "web", pid, Instant::now());
    assert!(
        took <= Duration::from_secs(15),
        "site a healed in {took:?} while c is unknown"
    );
    let plan = env.run(&["plan", "--json"]).json();
    let c_plan = plan["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == "c")
        .unwrap();
    assert_eq!(c_plan["status"], "unknown");
    assert_eq!(c_plan["changes"], serde_json::json!([]), "nothing is planned blind");
}

#[test]
fn proxy_route_follows_the_service_to_its_active_site() {
    let mut env = Env::new(116);
    let route = "routes:\n  front:\n    service: web\n    type: proxy\n    listen: 127.0.0.1:18116\n";
    env.write_spec(&format!(
        "{}{route}",
        env.spec(&Env::web("web", "a", 7161, "auto", &[]))
    ));
    env.start_controller(&[]);
    wait_healthy(&env, "a", "web", Duration::from_secs(15));
    let through = |want: &str| {
        poll(Duration::from_secs(10), || {
            let body = crate::util::http_get("127.0.0.1:18116", "/")?;
            body.contains(want).then_some(body)
        })
    };
    assert!(through("hello from web at site a").is_some(), "{}", env.dump_events());
    env.wait_event("route_switched", Duration::from_secs(5), |e| {
        e["kind"] == "route_switched"
    });

    // The spec moves the service to b: the controller starts it there and the route follows.
    env.write_spec(&format!(
        "{}{route}",
        env.spec(&Env::web("web", "b", 7161, "auto", &[]))
    ));
    wait_healthy(&env, "b", "web", Duration::from_secs(15));
    assert!(through("hello from web at site b").is_some(), "{}", env.dump_events());
    let switched = env.wait_event("route switched to b", Duration::from_secs(5), |e| {
        e["kind"] == "route_switched" && e["message"].as_str().is_some_and(|m| m.contains("127.116.2.1:7161"))
    });
    assert!(switched["message"].as_str().unwrap().contains("epoch 1"), "{switched}");
}

/// A spec for failover tests: web (with a SQLite canary) at a, standby b, both sites with
/// repositories, a proxy route.
fn failover_env(block: u8, route_port: u16) -> Env {
    let env = Env::new(block);
    let web = Env::web("web", "a", 7171, "auto", &[])
        .replace(
            "args: [example-app, --port, ",
            "args: [example-app, --db, data/notes.db, --port, ",
        )
        .replace("    site: a\n", "    site: a\n    standby: [b]\n");
    let spec = env.with_repositories(&env.spec(&web))
        + &format!(
            "datasets:\n  notes:\n    service: web\n    type: sqlite\n    path: data/notes.db\nroutes:\n  front:\n    service: web\n    type: proxy\n    listen: 127.0.0.1:{route_port}\n"
        );
    env.write_spec(&spec);
    env
}

#[test]
fn failover_killed_at_step_boundaries_resumes_to_the_same_end_state() {
    // The failover's process SIGKILLs itself right after journal record N is durable
    // (RESURGO_CRASH_AFTER_RECORD): every step boundary in turn, until a run completes.
    for kill_after in 1usize.. {
        let mut env = failover_env(117, 18117);
        assert_eq!(env.run(&["apply"]).code, 0);
        assert_eq!(env.run(&["repo", "init"]).code, 0);
        let backup = env.run(&["backup", "--replicate"]);
        assert_eq!(backup.code, 0, "{}{}", backup.stdout, backup.stderr);
        env.start_controller(&[]);
        let at = |site: &str| {
            let want = format!("at site {site}");
            poll(Duration::from_secs(15), || {
                crate::util::http_get("127.0.0.1:18117", "/").filter(|b| b.contains(&want))
            })
        };
        assert!(at("a").is_some(), "route to a: {}", env.dump_events());

        let failover = std::process::Command::new(crate::util::BIN)
            .args(["failover", "--to", "b", "--spec"])
            .arg(env.spec_dir())
            .arg("--state")
            .arg(env.state())
            .env("RESURGO_CRASH_AFTER_RECORD", kill_after.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        if failover.success() {
            // Past the last record: every boundary has been tried.
            let boundaries = kill_after - 1;
            assert!(boundaries >= 20, "only {boundaries} boundaries: {}", env.dump_events());
            eprintln!("the failover was killed at each of its {boundaries} journal records and resumed");
            env.stop_controller();
            break;
        }
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            failover.signal(),
            Some(9),
            "killed after record {kill_after}: {failover:?}"
        );
        let runs = env.state().join("runs");
        let id = std::fs::read_dir(&runs)
            .unwrap()
            .flatten()
            .find(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .expect("the killed run's journal");

        let resumed = env.run(&["runs", &id, "--resume", "--json"]);
        assert_eq!(
            resumed.code, 0,
            "killed after {kill_after} records: {}{}",
            resumed.stdout, resumed.stderr
        );
        assert_eq!(resumed.json()["runs"][0]["outcome"]["status"], "succeeded");
        // The same end state as an uninterrupted failover: the route leads to b, web runs there.
        assert!(
            at("b").is_some(),
            "killed after {kill_after}: route does not reach b\n{}",
            env.dump_events()
        );
        let status = env.status();
        let web = find_service(&status, "b", "web").unwrap();
        assert_eq!(web["process"], "running", "killed after {kill_after}: {web}");
        assert_eq!(web["health"], "healthy");
        let history = env.run(&["runs", "--json"]).json();
        assert_eq!(
            history["runs"].as_array().unwrap().len(),
            1,
            "one run, resumed, not a second one"
        );
        env.stop_controller();
    }
}

/// web at a (standby b), automatic failover with a witness, fast timing; applied, with
/// `controller --agents` running and a serving. Returns the env and web's pid at a.
fn agents_env(block: u8) -> (Env, u32) {
    agents_env_with(block, "")
}

/// [`agents_env`] with `extra` appended to the spec.
pub(crate) fn agents_env_with(block: u8, extra: &str) -> (Env, u32) {
    let mut env = Env::new(block);
    let web = Env::web("web", "a", 8080, "manual", &[]).replace("    site: a\n", "    site: a\n    standby: [b]\n");
    let spec = env.spec(&web)
        + &format!(
            "failover:\n  automatic: true\n  witness: \"{}:7411\"\n  heartbeat_interval: 200ms\n  suspect_after: 3\n  lease_ttl: 3s\n  fencing_deadline: 1s\n  promotion_delay: 1s\n",
            env.addr(9)
        )
        + extra;
    env.write_spec(&spec);
    let applied = env.run(&["apply"]);
    assert_eq!(applied.code, 0, "{}{}", applied.stdout, applied.stderr);
    let pid = wait_healthy(&env, "a", "web", Duration::from_secs(10));
    env.start_controller(&["--agents"]);
    // The agents are up and a holds its lease before the loss.
    env.wait_event("agent started at a", Duration::from_secs(10), |e| {
        e["kind"] == "unfenced" && e["site"] == "a"
    });
    // And b's agent has seen a alive: a site never seen alive from b is not declared dead
    // there (it may not have started), so a loss before that would move nothing.
    let heartbeats = env.state().join("agents/b/heartbeats.json");
    let seen = poll(Duration::from_secs(20), || {
        let round: serde_json::Value = serde_json::from_slice(&std::fs::read(&heartbeats).ok()?).ok()?;
        (round["sites"]["a"]["answered"] == true).then_some(())
    });
    assert!(
        seen.is_some(),
        "b's agent never heard a's heartbeat:\n{}",
        env.dump_events()
    );
    (env, pid)
}

/// Site a is lost: web's process killed, a's state unreachable.
pub(crate) fn lose_site_a(env: &Env, pid: u32) {
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
    let site_a = env.state().join("sites/a");
    // Gone, not replaced by anything: unknown, never an empty site.
    std::fs::rename(&site_a, env.state().join("sites/a.lost")).unwrap();
}

/// The one-machine default of the agents: `resurgo controller --agents` runs an agent per
/// site and the witness in-process. Site a is lost (its process killed, its state
/// unreachable): a's agent stops answering and renewing, the witness loses a, b's agent
/// declares it dead and fails over by policy; web runs at b, the run stored its measures.
#[test]
fn controller_agents_fail_over_automatically_when_a_site_is_lost() {
    let (mut env, pid) = agents_env(136);
    lose_site_a(&env, pid);
    let lost = Instant::now();

    let finished = env.wait_event("failover finished", Duration::from_secs(30), |e| {
        e["kind"] == "failover_finished"
    });
    assert!(
        finished["message"]
            .as_str()
            .unwrap_or_default()
            .ends_with(": succeeded"),
        "{finished}\n{}",
        env.dump_events()
    );
    eprintln!("site lost → failover finished: {:.2} s", lost.elapsed().as_secs_f64());
    for kind in ["site_dead", "failover_started"] {
        assert!(
            env.events().iter().any(|e| e["kind"] == kind),
            "no {kind} event:\n{}",
            env.dump_events()
        );
    }
    wait_healthy(&env, "b", "web", Duration::from_secs(10));
    let runs = env.run(&["runs", "--json"]).json();
    let run = &runs["runs"][0];
    assert!(
        run["measures"]["detection_s"].as_f64().is_some_and(|d| d < 3.0),
        "detection within 3 s: {run}"
    );
    // `status` shows who is primary, at which epoch, and who holds the lease.
    let role = &env.status()["roles"][0];
    assert_eq!(
        (&role["group"], &role["primary"], &role["epoch"]),
        (&"site-a".into(), &"b".into(), &1.into()),
        "{role}"
    );
    assert!(
        role["lease"]["holder"].is_string() && role["lease"]["seconds_left"].is_u64(),
        "{role}"
    );
    // The maintenance switch, as people use it.
    let on = env.run(&["maintenance", "on", "--for", "10m", "--by", "test"]);
    assert_eq!(on.code, 0, "{}{}", on.stdout, on.stderr);
    assert_eq!(env.status()["maintenance"]["by"], "test");
    assert_ne!(env.run(&["maintenance", "on"]).code, 0, "already on");
    assert_eq!(env.run(&["maintenance", "off"]).code, 0);
    assert!(env.status()["maintenance"].is_null());
    env.stop_controller();
}

/// Maintenance suppresses automatic failover: site a is lost while it is on, b's agent
/// declares a dead and reports the failover held back, and nothing moves; once it is off,
/// the failover runs.
#[test]
fn maintenance_holds_back_automatic_failover_until_it_is_off() {
    let (mut env, pid) = agents_env(137);
    let on = env.run(&["maintenance", "on", "--for", "10m", "--by", "change-42"]);
    assert_eq!(on.code, 0, "{}{}", on.stdout, on.stderr);
    lose_site_a(&env, pid);
    env.wait_event("failover held back", Duration::from_secs(20), |e| {
        e["kind"] == "failover_suppressed" && e["message"].as_str().is_some_and(|m| m.contains("maintenance"))
    });
    assert!(
        env.events().iter().all(|e| e["kind"] != "failover_started"),
        "no failover while maintenance is on:\n{}",
        env.dump_events()
    );
    assert_eq!(env.run(&["maintenance", "off"]).code, 0);
    let finished = env.wait_event("failover finished", Duration::from_secs(30), |e| {
        e["kind"] == "failover_finished"
    });
    assert!(
        finished["message"]
            .as_str()
            .unwrap_or_default()
            .ends_with(": succeeded"),
        "{finished}"
    );
    env.stop_controller();
}

/// Routes survive the loss of a site: the proxy of a `type: proxy` route is served by the
/// daemon of the site where its service is active, not by one controller. Site a is lost, b's
/// agent fails over; a's daemon lets the route go and b's serves it, leading to b.
#[test]
fn controller_agents_proxy_route_follows_the_service_to_the_site_it_moved_to() {
    let route = "routes:\n  front:\n    service: web\n    type: proxy\n    listen: 127.0.0.1:18138\n";
    let (mut env, pid) = agents_env_with(138, route);
    let through = |want: &str| {
        poll(Duration::from_secs(15), || {
            let body = crate::util::http_get("127.0.0.1:18138", "/")?;
            body.contains(want).then_some(body)
        })
    };
    assert!(through("at site a").is_some(), "{}", env.dump_events());
    lose_site_a(&env, pid);
    let finished = env.wait_event("failover finished", Duration::from_secs(30), |e| {
        e["kind"] == "failover_finished"
    });
    assert!(
        finished["message"]
            .as_str()
            .unwrap_or_default()
            .ends_with(": succeeded"),
        "{finished}\n{}",
        env.dump_events()
    );
    assert!(through("at site b").is_some(), "{}", env.dump_events());
    let said = |site: &str, what: &str| {
        env.events().iter().any(|e| {
            e["kind"] == "route_switched"
                && e["site"] == site
                && e["message"].as_str().is_some_and(|m| m.contains(what))
        })
    };
    assert!(said("a", "no longer listens here"), "{}", env.dump_events());
    assert!(
        said(
            "b",
            &format!("listens on 127.0.0.1:18138, leads to {}:8080", env.addr(2))
        ),
        "{}",
        env.dump_events()
    );
    env.stop_controller();
}
