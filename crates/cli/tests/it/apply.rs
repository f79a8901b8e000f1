//! plan → apply → status on real processes, saved plans and their staleness, Git sources.

use std::time::Duration;

use crate::util::{alive, find_service, git_repo, poll, Env};

#[test]
fn plan_apply_status_round_trip() {
    let env = Env::new(101);
    let services = [
        Env::web("db", "a", 7001, "manual", &[]),
        Env::web("api", "a", 7002, "manual", &["db"]),
        Env::web("web", "b", 7003, "manual", &["api"]),
    ]
    .concat();
    env.write_spec(&env.spec(&services));

    let plan = env.run(&["plan", "--json"]);
    assert_eq!(plan.code, 2, "changes pending → exit 2\n{}", plan.stderr);
    let p = plan.json();
    assert_eq!(p["format_version"], 1);
    assert_eq!(p["summary"]["create"], 3);
    assert_eq!(p["source"]["kind"], "folder");
    let order: Vec<(String, u64)> = p["sites"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["service"].as_str().unwrap().to_string(), c["wave"].as_u64().unwrap()))
        .collect();
    assert_eq!(order, [("db".to_string(), 0), ("api".to_string(), 1)]);

    let human = env.run(&["plan"]);
    assert!(human.stdout.contains("+ create   db"), "{}", human.stdout);
    assert!(human.stdout.contains("Plan: 3 to create"), "{}", human.stdout);

    let apply = env.run(&["apply", "--json"]);
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    let done: Vec<String> = apply.json()["done"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["service"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        done,
        ["db", "api", "web"],
        "dependants start only after their dependencies are healthy"
    );

    let status = env.status();
    assert_eq!(status["in_sync"], true, "{status}");
    for (site, svc) in [("a", "db"), ("a", "api"), ("b", "web")] {
        let s = find_service(&status, site, svc).unwrap();
        assert_eq!(s["process"], "running", "{svc}: {s}");
        assert_eq!(s["health"], "healthy", "{svc}: {s}");
        assert_eq!(s["drift"], "in-sync");
    }
    assert_eq!(status["last_applied"]["source"]["kind"], "folder");
    assert_eq!(env.run(&["status"]).code, 0);

    // The service really serves at its site's address.
    let body = http(&format!("{}:7003", env.addr(2)), "/");
    assert!(body.contains("hello from web at site b"), "{body}");

    // Nothing left to do: plan exits 0.
    assert_eq!(env.run(&["plan"]).code, 0);

    // A config change is an update naming the field.
    let changed = services.replace(
        "args: [example-app, --port, \"7002\"]",
        &format!("args: [example-app, --port, \"7002\", --address, \"{}\"]", env.addr(1)),
    );
    env.write_spec(&env.spec(&changed));
    let p = env.run(&["plan", "--json"]).json();
    let api = p["sites"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["service"] == "api")
        .unwrap()
        .clone();
    assert_eq!(api["action"], "update");
    assert_eq!(api["fields"], serde_json::json!(["args"]));
    let before = env.healthy_pid("a", "api").unwrap();
    assert_eq!(env.run(&["apply"]).code, 0);
    let after = env.healthy_pid("a", "api").unwrap();
    assert_ne!(before, after, "the update restarted api");
    assert!(!alive(before), "the old api process is gone");
}

#[test]
fn saved_plan_is_applied_exactly_and_refused_when_stale() {
    let env = Env::new(102);
    env.write_spec(&env.spec(&Env::web("web", "a", 7011, "manual", &[])));
    let plan_file = env.path().join("plan.json");
    let out = env.run(&["plan", "--out", plan_file.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.stderr);

    // Applying it works while nothing has moved.
    let applied = env.run(&["apply", plan_file.to_str().unwrap()]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    let pid = env.healthy_pid("a", "web").expect("web runs");

    // The same plan again: the world changed since (web now runs) → refused, nothing done.
    let stale = env.run(&["apply", plan_file.to_str().unwrap()]);
    assert_eq!(stale.code, 1);
    assert!(
        stale.stderr.contains("is stale: what runs at the sites changed"),
        "{}",
        stale.stderr
    );
    assert_eq!(env.healthy_pid("a", "web"), Some(pid), "a refused plan changes nothing");

    // A plan made, then the spec edited → refused too.
    let out = env.run(&["plan", "--out", plan_file.to_str().unwrap()]);
    assert_eq!(out.code, 0);
    env.write_spec(&env.spec(&Env::web("web", "a", 7012, "manual", &[])));
    let stale = env.run(&["apply", plan_file.to_str().unwrap()]);
    assert_eq!(stale.code, 1);
    assert!(stale.stderr.contains("is stale: the spec changed"), "{}", stale.stderr);
    assert_eq!(env.healthy_pid("a", "web"), Some(pid));
}

#[test]
fn failing_health_check_stops_apply_and_names_the_service() {
    let env = Env::new(103);
    // `sick` listens on 7021 but its health check probes 7029, where nothing listens.
    let sick = Env::web("sick", "a", 7021, "manual", &[])
        .replace("http: { port: 7021", "http: { port: 7029")
        .replace("start_timeout: 10s", "start_timeout: 1s");
    let services = [sick, Env::web("after", "a", 7022, "manual", &["sick"])].concat();
    env.write_spec(&env.spec(&services));
    let out = env.run(&["apply"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("service `sick` at site `a` did not become healthy"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("last probe: connection refused"), "{}", out.stderr);
    let status = env.status();
    assert_eq!(
        find_service(&status, "a", "after").unwrap()["process"],
        "absent",
        "a dependant of a failed service is not started"
    );
}

#[test]
fn git_source_records_the_commit() {
    let env = Env::new(104);
    let repo = env.path().join("repo");
    let sha = git_repo(
        &repo,
        &[(
            "deploy/resurgo.yaml",
            &env.spec(&Env::web("web", "a", 7031, "manual", &[])),
        )],
    );
    let repo_s = repo.to_str().unwrap();
    let plan = env.run(&["plan", "--json", "--repo", repo_s, "--ref", "main", "--path", "deploy"]);
    assert_eq!(plan.code, 2, "{}", plan.stderr);
    let p = plan.json();
    assert_eq!(p["source"]["kind"], "git");
    assert_eq!(p["source"]["commit"], sha);

    let apply = env.run(&["apply", "--repo", repo_s, "--ref", "main", "--path", "deploy"]);
    assert_eq!(apply.code, 0, "{}", apply.stderr);
    let events = env.events();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "apply_finished" && e["commit"] == sha),
        "{events:?}"
    );

    let missing = env.run(&["plan", "--repo", repo_s, "--ref", "no-such-branch"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("git ref `no-such-branch` does not exist"),
        "{}",
        missing.stderr
    );
    let gone = env.run(&["plan", "--repo", "/nonexistent/repo"]);
    assert_eq!(gone.code, 1);
    assert!(gone.stderr.contains("is unreachable"), "{}", gone.stderr);
}

fn http(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    poll(Duration::from_secs(5), || {
        let mut s = std::net::TcpStream::connect(addr).ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(text)
    })
    .unwrap_or_default()
}

/// Every file under `dir`, read as text where it is text.
fn all_text_under(dir: &std::path::Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(t) = std::fs::read(&p) {
                out.push_str(&String::from_utf8_lossy(&t));
            }
        }
    }
    out
}

#[test]
fn secrets_reach_the_service_and_nothing_else() {
    let env = Env::new(105);
    let secret = "s3cr3t-9f2c1e7a";
    let secret_file = env.path().join("token");
    std::fs::write(&secret_file, "file-secret-41d8\n").unwrap();
    // The service runs only if both secrets arrived intact; the spec holds only their hashes.
    let check = |var: &str, value: &str| {
        format!(
            "test $(printf %s \\\"${var}\\\" | sha256sum | cut -c1-64) = {}",
            sha256(value)
        )
    };
    let svc = format!(
        "  vault:\n    command: /bin/sh\n    args: [\"-c\", \"{} && {} && exec sleep 600\"]\n    env:\n      DB_PASSWORD: {{ secret: {{ env: RESURGO_TEST_DB_PASSWORD }} }}\n      TOKEN: {{ secret: {{ file: {} }} }}\n    site: a\n",
        check("DB_PASSWORD", secret),
        check("TOKEN", "file-secret-41d8"),
        secret_file.display()
    );
    env.write_spec(&env.spec(&svc));
    let plan = env.run(&["plan", "--json"]);
    assert!(
        plan.stdout.contains("RESURGO_TEST_DB_PASSWORD"),
        "plans show the reference instead"
    );

    let mut cmd = std::process::Command::new(crate::util::BIN);
    cmd.args(["apply", "--json", "--spec"])
        .arg(env.spec_dir())
        .arg("--state")
        .arg(env.state())
        .env("RESURGO_TEST_DB_PASSWORD", secret);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let running = poll(Duration::from_secs(5), || {
        let status = env.status();
        (find_service(&status, "a", "vault")?["process"] == "running").then_some(())
    });
    assert!(
        running.is_some(),
        "the service got both secrets and kept running: {}",
        env.status()
    );

    for (what, text) in [
        ("apply output", String::from_utf8_lossy(&out.stdout).into_owned()),
        ("plan", plan.stdout.clone()),
        ("status", env.status().to_string()),
        (
            "state folder (configs, run records, logs, events)",
            all_text_under(&env.state()),
        ),
    ] {
        assert!(!text.contains(secret), "the secret leaked into the {what}");
        assert!(
            !text.contains("file-secret-41d8"),
            "the file secret leaked into the {what}"
        );
    }
    assert!(
        plan.stdout.contains("RESURGO_TEST_DB_PASSWORD"),
        "plans show the reference instead"
    );
}

#[test]
fn unreadable_secret_is_a_clear_error_and_starts_nothing() {
    let env = Env::new(106);
    let svc = "  app:\n    command: /bin/sleep\n    args: [\"600\"]\n    env:\n      KEY: { secret: { env: RESURGO_TEST_UNSET_SECRET } }\n    site: a\n";
    env.write_spec(&env.spec(svc));
    let out = env.run(&["apply"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("service `app`: cannot read secret for `KEY`"),
        "{}",
        out.stderr
    );
    assert_eq!(find_service(&env.status(), "a", "app").unwrap()["process"], "absent");
}

#[test]
fn prune_is_opt_in_and_capped() {
    let env = Env::new(107);
    let services = [
        Env::web("keep", "a", 7041, "manual", &[]),
        Env::web("old", "a", 7042, "manual", &[]),
    ]
    .concat();
    env.write_spec(&env.spec(&services));
    let out = env.run(&["apply"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let old_pid = env.healthy_pid("a", "old").unwrap();

    env.write_spec(&env.spec(&Env::web("keep", "a", 7041, "manual", &[])));
    let plan = env.run(&["plan", "--json"]).json();
    let old = plan["sites"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["service"] == "old")
        .unwrap()
        .clone();
    assert_eq!(
        old["action"], "orphan",
        "without --prune an undeclared service is only reported"
    );
    assert_eq!(env.run(&["apply"]).code, 0);
    assert!(alive(old_pid), "not pruned without --prune");

    let capped = env.run(&["apply", "--prune", "--max-deletes", "0"]);
    assert_eq!(capped.code, 1);
    assert!(
        capped
            .stderr
            .contains("would delete 1 services (old@a), more than the cap of 0"),
        "{}",
        capped.stderr
    );
    assert!(alive(old_pid), "a capped prune deletes nothing");

    // What the service kept in its folder is its data: pruning sets it aside, never deletes it.
    let data = env.state().join("sites/a/services/old/orders.db");
    std::fs::write(&data, "the only copy").unwrap();
    assert_eq!(env.run(&["apply", "--prune"]).code, 0);
    assert!(
        poll(Duration::from_secs(5), || (!alive(old_pid)).then_some(())).is_some(),
        "pruned service stopped"
    );
    assert!(env.healthy_pid("a", "keep").is_some());
    assert_eq!(env.run(&["plan"]).code, 0);
    let copies = env.run(&["set-aside", "--json"]).json();
    let copy = &copies.as_array().unwrap()[0]["copy"];
    assert!(copy["why"].as_str().unwrap().contains("pruned"), "{copies}");
    let kept = std::path::Path::new(copy["path"].as_str().unwrap()).join("orders.db");
    assert_eq!(std::fs::read_to_string(kept).unwrap(), "the only copy");
}

fn sha256(text: &str) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(text.as_bytes())?;
            c.wait_with_output()
        })
        .expect("sha256sum runs");
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

/// Issue 9: credentials in a Git URL (given through RESURGO_REPO, so resurgo's own command line
/// holds none) never reach a `git` process's arguments — which every user sees in `ps` — nor
/// what resurgo prints; `git` gets them from its environment. A fake `git` first on PATH
/// records what each run was given, then runs the real one.
#[test]
fn git_credentials_never_reach_gits_arguments_or_what_is_printed() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new(105);
    let real_git = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("git"))
        .find(|p| p.is_file())
        .expect("git on PATH");
    let bin = env.path().join("fake-bin");
    std::fs::create_dir(&bin).unwrap();
    let log = env.path().join("git-runs.log");
    std::fs::write(
        bin.join("git"),
        format!(
            "#!/bin/sh\nprintf 'args: %s\\n' \"$*\" >> '{log}'\nprintf 'env password: %s\\n' \"$RESURGO_GIT_PASSWORD\" >> '{log}'\nexec '{git}' \"$@\"\n",
            log = log.display(),
            git = real_git.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(bin.join("git"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    // Nothing listens on port 1: the clone fails, after git has been run with the URL.
    let out = std::process::Command::new(crate::util::BIN)
        .args(["plan", "--state"])
        .arg(env.state())
        .env("PATH", path)
        .env("RESURGO_REPO", "https://deploy:s3cret-token@127.0.0.1:1/spec.git")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("https://127.0.0.1:1/spec.git"), "{stderr}");
    let runs = std::fs::read_to_string(&log).expect("git was run");
    let args: Vec<&str> = runs.lines().filter(|l| l.starts_with("args:")).collect();
    assert!(!args.is_empty() && args.iter().all(|l| !l.contains("s3cret")), "{runs}");
    assert!(
        args.iter().any(|l| l.contains("https://127.0.0.1:1/spec.git")),
        "{runs}"
    );
    assert!(
        runs.contains("env password: s3cret-token"),
        "the token reaches git through its environment: {runs}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
    for file in walk(&env.state()) {
        let text = std::fs::read(&file).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&text).contains("s3cret"),
            "{} holds the token",
            file.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
