//! `resurgo workspace` at the command line and the site API's `/v1/workspaces` routes: what
//! is refused (an undeclared name without `--site`, a declared one with options of a
//! workspace on demand, one at the site where its services are active, a request without
//! credentials or to another site's agent) says what to do and makes nothing; an empty
//! listing is `[]`, on one machine and through the agents. Making a workspace for real is
//! the end-to-end test's.

use std::time::Duration;

use resurgo_api::types::{WorkspaceRecord, Workspaces};
use serde_json::{json, Value};

use crate::api::{status_of, Deployment, TOKEN};
use crate::util::{poll, Env};

/// Two sites on this machine, `web` at a (standby site b), and the workspace `dev` at b.
fn env(block: u8, port: u16) -> Env {
    let env = Env::new(block);
    let services =
        Env::web("web", "a", port, "manual", &[]).replace("    site: a\n", "    site: a\n    standby: [b]\n");
    env.write_spec(&format!(
        "{}workspaces:\n  dev:\n    site: b\n    services: [web]\n    resources: {{ cpu: 1, memory: 1Gi }}\n",
        env.spec(&services)
    ));
    env
}

#[test]
fn workspace_create_refuses_what_it_cannot_tell_or_must_not_make_and_says_what_to_do() {
    let env = env(230, 18230);

    let undeclared = env.run(&["workspace", "create", "scratch"]);
    assert_ne!(undeclared.code, 0, "{}", undeclared.stdout);
    assert_eq!(
        undeclared.code, 64,
        "a command line that cannot say which: {}",
        undeclared.stderr
    );
    for says in [
        "no workspace `scratch` is declared",
        "declared: dev",
        "--site",
        "--services",
    ] {
        assert!(
            undeclared.stderr.contains(says),
            "lacks `{says}`: {}",
            undeclared.stderr
        );
    }

    let half = env.run(&["workspace", "create", "scratch", "--site", "b"]);
    assert_eq!(half.code, 64, "--site without --services: {}", half.stderr);

    let both = env.run(&["workspace", "create", "dev", "--ttl", "2h"]);
    assert_eq!(both.code, 64, "{}", both.stderr);
    assert!(
        both.stderr.contains("declared in the spec") && both.stderr.contains("--ttl"),
        "{}",
        both.stderr
    );

    // On demand, the spec's rules hold: not where the service is active, declared services,
    // a name like any other.
    let production = env.run(&["workspace", "create", "scratch", "--site", "a", "--services", "web"]);
    assert_eq!(production.code, 1, "{}", production.stderr);
    assert!(
        production.stderr.contains("`web` is active") && production.stderr.contains("site: b"),
        "{}",
        production.stderr
    );
    let unknown = env.run(&[
        "workspace",
        "create",
        "scratch",
        "--site",
        "b",
        "--services",
        "web,nothing",
    ]);
    assert_eq!(unknown.code, 1, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("`nothing`, which is not declared"),
        "{}",
        unknown.stderr
    );

    // Nothing was made.
    let listed = env.run(&["workspace", "list", "--json"]);
    assert_eq!(listed.json(), json!([]), "{}", listed.stderr);
    assert!(!env.state().join("workspaces").join("scratch").exists());
}

#[test]
fn an_empty_listing_is_an_empty_array_and_status_says_so() {
    let env = env(231, 18231);
    let listed = env.run(&["workspace", "list", "--json"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(listed.stdout.trim(), "[]");
    let text = env.run(&["workspace", "list", "--site", "b"]);
    assert_eq!((text.code, text.stdout.trim()), (0, "no workspaces"), "{}", text.stderr);
    let elsewhere = env.run(&["workspace", "list", "--site", "z"]);
    assert_eq!(elsewhere.code, 1);
    assert!(elsewhere.stderr.contains("no site `z`"), "{}", elsewhere.stderr);

    let missing = env.run(&["workspace", "show", "dev"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("no workspace `dev`") && missing.stderr.contains("state folder"),
        "{}",
        missing.stderr
    );
    let gone = env.run(&["workspace", "delete", "dev"]);
    assert_eq!(gone.code, 1, "{}", gone.stderr);

    // Like the format's other lists of exceptions, absent when empty (older documents stay
    // valid).
    let status = env.run(&["status", "--json"]);
    let status = status.json();
    assert!(
        status.get("workspaces").is_none() && status.get("lent").is_none(),
        "{status}"
    );
}

#[test]
fn the_workspace_routes_need_credentials_refuse_another_sites_workspace_and_list_through_the_cli() {
    let d = Deployment::new(232, 18232);
    let spec = d.env.spec_dir().join("resurgo.yaml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        format!("{text}workspaces:\n  dev:\n    site: b\n    services: [web]\n"),
    )
    .unwrap();
    let _a = d.agent("a");
    let _b = d.agent("b");
    let anonymous = d.client(&d.anonymous(), None);
    let operator = d.client(&d.certs.join("operator"), None);
    let by_token = d.client(&d.anonymous(), Some(TOKEN));
    for site in [1, 2] {
        let up = poll(Duration::from_secs(20), || {
            operator.get::<Workspaces>(&d.addr(site), "/v1/workspaces").ok()
        });
        assert!(up.is_some(), "agent {site} does not answer:\n{}", d.log("agent-a.log"));
    }

    // Without credentials, nothing: not the listing, not one, not a making, not a deletion.
    assert_eq!(
        status_of(anonymous.get::<Workspaces>(&d.addr(2), "/v1/workspaces").unwrap_err()),
        401
    );
    assert_eq!(
        status_of(
            anonymous
                .get::<WorkspaceRecord>(&d.addr(2), "/v1/workspaces/dev")
                .unwrap_err()
        ),
        401
    );
    let dev = json!({"name": "dev", "policy": {"site": "b", "services": ["web"]}});
    assert_eq!(
        status_of(
            anonymous
                .post::<_, Value>(&d.addr(2), "/v1/workspaces", &dev)
                .unwrap_err()
        ),
        401
    );
    assert_eq!(
        status_of(anonymous.delete::<Value>(&d.addr(2), "/v1/workspaces/dev").unwrap_err()),
        401
    );
    assert_eq!(
        status_of(
            anonymous
                .post::<_, Value>(&d.addr(2), "/v1/workspaces/dev/refresh", &json!({}))
                .unwrap_err()
        ),
        401
    );

    // With credentials: an empty listing; none by that name; refusals before anything is made.
    for client in [&operator, &by_token] {
        let listed: Workspaces = client.get(&d.addr(2), "/v1/workspaces").unwrap();
        assert_eq!(listed.site, "b");
        assert!(listed.workspaces.is_empty(), "{listed:?}");
    }
    assert_eq!(
        status_of(
            operator
                .get::<WorkspaceRecord>(&d.addr(2), "/v1/workspaces/dev")
                .unwrap_err()
        ),
        404
    );
    assert_eq!(
        status_of(
            operator
                .post::<_, Value>(&d.addr(1), "/v1/workspaces", &dev)
                .unwrap_err()
        ),
        400,
        "a workspace is made by its own site's agent"
    );
    let at_a = json!({"name": "scratch", "policy": {"site": "a", "services": ["web"]}});
    assert_eq!(
        status_of(
            operator
                .post::<_, Value>(&d.addr(1), "/v1/workspaces", &at_a)
                .unwrap_err()
        ),
        400,
        "not where its service is active"
    );
    assert_eq!(
        status_of(
            operator
                .post::<_, Value>(&d.addr(2), "/v1/workspaces", &json!({"name": "dev"}))
                .unwrap_err()
        ),
        400
    );
    assert_eq!(
        status_of(operator.delete::<Value>(&d.addr(2), "/v1/workspaces/dev").unwrap_err()),
        404
    );

    // The CLI goes through the agents: an empty listing, and a clear miss.
    let listed = d.operator(&["workspace", "list", "--json"]);
    assert_eq!((listed.code, listed.stdout.trim()), (0, "[]"), "{}", listed.stderr);
    let missing = d.operator(&["workspace", "show", "scratch"]);
    assert_eq!(missing.code, 1, "{}", missing.stdout);
    assert!(
        missing.stderr.contains("no workspace `scratch` at `a`, `b`"),
        "{}",
        missing.stderr
    );
    let undeclared = d.operator(&["workspace", "create", "scratch"]);
    assert_eq!(undeclared.code, 64, "{}", undeclared.stderr);
    let status = d.operator(&["status", "--json"]).json();
    assert!(status.get("workspaces").is_none(), "{status}");
}
