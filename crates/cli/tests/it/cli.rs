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
}

#[test]
fn bad_command_line_exits_64() {
    let out = std::process::Command::new(BIN)
        .args(["plan", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
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

#[test]
fn validate_accepts_the_quickstart() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/quickstart");
    let out = std::process::Command::new(BIN)
        .args(["validate", "--json", "--spec", dir])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["sites"], 2);
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
