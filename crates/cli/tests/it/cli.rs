//! The command line itself: help, exit codes, validation output, the schema.

use crate::util::{Env, BIN};

#[test]
fn help_explains_the_commands() {
    let out = std::process::Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["demo", "validate", "plan", "apply", "status", "controller", "schema"] {
        assert!(text.contains(cmd), "--help lacks `{cmd}`:\n{text}");
    }
    assert!(!text.contains("__shim"), "internal commands stay hidden");
    for var in ["RESURGO_LOG", "RESURGO_LOG_FORMAT=json"] {
        assert!(text.contains(var), "--help explains `{var}`:\n{text}");
    }
}

#[test]
fn bad_command_line_exits_64() {
    let out = std::process::Command::new(BIN)
        .args(["plan", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

/// Regression: `--at 2026-02-31…` was read as 3 March and restored another point in time;
/// `--tick 0s` spun (issue 8, item 7). A bad value is a bad command line: exit 64, naming it.
#[test]
fn impossible_times_and_zero_intervals_exit_64_naming_the_value() {
    for (args, says) in [
        (
            &["restore", "db", "--site", "a", "--at", "2026-02-31T10:00:00Z"][..],
            "day",
        ),
        (
            &["restore", "db", "--site", "a", "--at", "2026-13-01T10:00:00Z"],
            "month",
        ),
        (
            &["restore", "db", "--site", "a", "--at", "2026-01-01T24:00:01Z"],
            "hour",
        ),
        (&["restore", "db", "--site", "a", "--at", "yesterday"], "RFC 3339"),
        (&["controller", "--tick", "0s"], "greater than zero"),
        (&["controller", "--poll", "0ms"], "greater than zero"),
        (&["controller", "--tick", "99999999999999999999h"], "too large"),
        (&["maintenance", "on", "--for", "0s"], "greater than zero"),
    ] {
        let out = std::process::Command::new(BIN).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        let value = args.last().unwrap();
        assert!(
            stderr.contains(&format!("invalid value '{value}'")),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn validate_reports_position_and_exits_1() {
    let env = Env::new(90);
    env.write_spec(&env.spec(&Env::web("web", "a", 8080, "auto", &["nope"])));
    let out = env.run(&["validate"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("service `web` depends on `nope`, which is not a declared service"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--> resurgo.yaml:"), "{}", out.stderr);
    assert!(out.stderr.contains("nothing was changed"), "{}", out.stderr);

    let json = env.run(&["validate", "--json"]);
    assert_eq!(json.code, 1);
    let v = json.json();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["file"], "resurgo.yaml");
    assert!(v["errors"][0]["line"].as_u64().unwrap() > 0);
}

/// Issue 9: a service that would run as root is named, but the spec stays valid (exit 0).
#[test]
fn validate_as_root_warns_about_each_service_without_a_user() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test checks what `validate` says when run as root: run the suite as root"
    );
    let env = Env::new(93);
    let services = format!(
        "{}{}    user: nobody\n",
        Env::web("web", "a", 8080, "auto", &[]),
        Env::web("api", "a", 8081, "auto", &[])
    );
    env.write_spec(&env.spec(&services));
    let out = env.run(&["validate"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("warning: service `web` names no `user:`"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("`api`"), "{}", out.stderr);
    let v = env.run(&["validate", "--json"]).json();
    assert_eq!(v["valid"], true);
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(1), "{v}");
}

/// `resurgo validate --json` of an example in the repository: valid, with `sites` sites.
fn example_is_valid(name: &str, sites: u64) {
    let dir = format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(BIN)
        .args(["validate", "--json", "--spec", &dir])
        .output()
        .unwrap();
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true, "{name}: {v}");
    assert_eq!(v["sites"], sites, "{name}: {v}");
}

#[test]
fn validate_accepts_the_quickstart() {
    example_is_valid("quickstart", 2);
}

#[test]
fn validate_accepts_the_three_host_example() {
    example_is_valid("three-hosts", 2);
}

#[test]
fn missing_spec_folder_is_a_clear_error() {
    let env = Env::new(91);
    let out = env.run(&["plan", "--spec", "/nonexistent/spec"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("cannot read spec /nonexistent/spec"),
        "{}",
        out.stderr
    );
}

#[test]
fn schema_is_printed() {
    let out = std::process::Command::new(BIN).arg("schema").output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["title"], "Document");
}

#[test]
fn failover_dry_run_prints_the_plan_and_changes_nothing() {
    let env = Env::new(92);
    let web = Env::web("web", "a", 8080, "auto", &[]).replace("    site: a\n", "    site: a\n    standby: [b]\n");
    let api = Env::web("api", "a", 8081, "auto", &["web"]).replace("    site: a\n", "    site: a\n    standby: [b]\n");
    env.write_spec(&format!(
        "{}routes:\n  front:\n    service: api\n    type: proxy\n    listen: 127.0.0.1:18092\n",
        env.spec(&(web + &api))
    ));
    let out = env.run(&["failover", "--to", "b", "--dry-run", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan = out.json();
    let names: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "preempt workspaces at b",
            "fence a",
            "assign b as primary",
            "start web at b",
            "start api at b",
            "switch route front to b",
            "verify",
            "notify"
        ]
    );
    assert_eq!(plan["from"], "a");
    assert!(plan["estimate_seconds"].as_f64().unwrap() > 0.0);
    assert!(!env.state().join("sites").exists(), "a dry run starts nothing");

    let human = env.run(&["failover", "--to", "b", "--dry-run"]);
    assert!(human.stdout.contains("- [ ] **start api at b**"), "{}", human.stdout);

    let nowhere = env.run(&["failover", "--to", "nowhere", "--dry-run"]);
    assert_eq!(nowhere.code, 1);
    assert!(
        nowhere
            .stderr
            .contains("refusing `nowhere` as a target: no site `nowhere` in the spec"),
        "{}",
        nowhere.stderr
    );
}
