//! `resurgo runbook`: the tabletop checklist after a real failover on one machine — every step
//! measured by that run (p50 and p95, today's date), none never exercised, owners from the
//! spec; the HTML page opened in a real browser.

use std::time::Duration;

use serde_json::Value;

use crate::util::{poll, Env};

/// web (SQLite `notes`) at a, standby b, both sites with repositories, the proxy route `front`
/// on 127.0.0.1:18165; owners on both sites and on web; an RTO objective.
fn runbook_env() -> Env {
    let env = Env::new(165);
    let web = Env::web("web", "a", 7165, "auto", &[])
        .replace(
            "args: [example-app, --port, ",
            "args: [example-app, --db, data/notes.db, --port, ",
        )
        .replace(
            "    site: a\n",
            "    site: a\n    standby: [b]\n    owners: [team-web]\n",
        );
    let spec = env
        .with_repositories(&env.spec(&web))
        .replace(
            "    capacity: { cpu: 8, memory: 8Gi }\n",
            "    capacity: { cpu: 8, memory: 8Gi }\n    owners: [ops-SITE]\n",
        )
        .replacen("ops-SITE", "ops-a", 1)
        .replacen("ops-SITE", "ops-b", 1)
        + "datasets:\n  notes:\n    service: web\n    type: sqlite\n    path: data/notes.db\nroutes:\n  front:\n    service: web\n    type: proxy\n    listen: 127.0.0.1:18165\nobjectives:\n  rto: 30s\n";
    env.write_spec(&spec);
    env
}

/// A duration as the checklist writes it (`250ms`, `1.25s`).
fn short(millis: u64) -> String {
    if millis < 1000 {
        return format!("{millis}ms");
    }
    assert!(millis < 60_000, "a step of a minute on one machine: {millis} ms");
    let text = format!("{:.2}", millis as f64 / 1000.0);
    format!("{}s", text.trim_end_matches('0').trim_end_matches('.'))
}

/// The rows of the Markdown table of steps: step → its cells.
fn rows(md: &str) -> Vec<Vec<String>> {
    md.lines()
        .skip_while(|l| !l.starts_with("| # | step |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.trim_matches('|').split(" | ").map(|c| c.trim().to_string()).collect())
        .collect()
}

#[test]
fn the_runbook_shows_each_step_measured_by_a_real_failover_with_its_owner() {
    let mut env = runbook_env();
    for args in [&["apply"][..], &["repo", "init"], &["backup", "--replicate"]] {
        let out = env.run(args);
        assert_eq!(out.code, 0, "{args:?}: {}{}", out.stdout, out.stderr);
    }
    env.start_controller(&[]);
    let at = |site: &str| {
        let want = format!("at site {site}");
        poll(Duration::from_secs(20), || {
            crate::util::http_get("127.0.0.1:18165", "/").filter(|b| b.contains(&want))
        })
    };
    assert!(at("a").is_some(), "route to a: {}", env.dump_events());

    // Before any run: the plan, every step never exercised.
    let before = env.run(&["runbook", "--to", "b"]);
    assert_eq!(before.code, 0, "{}", before.stderr);
    assert!(
        rows(&before.stdout).iter().all(|r| r[7] == "**never exercised**"),
        "{}",
        before.stdout
    );

    let failover = env.run(&["failover", "--to", "b"]);
    assert_eq!(failover.code, 0, "{}{}", failover.stdout, failover.stderr);
    let runs = env.run(&["runs", "--json"]).json();
    let steps: Vec<Value> = runs["runs"][0]["steps"].as_array().unwrap().clone();
    let today = String::from_utf8(
        std::process::Command::new("date")
            .args(["-u", "+%F"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();

    let out = env.run(&["runbook", "--to", "b", "--format", "md"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let md = out.stdout;
    assert!(md.starts_with("# Tabletop: failover of test from a to b\n"), "{md}");
    assert!(
        md.contains("The services are active at b now, not where the spec places them: this is the plan from their home site a."),
        "once moved, the plan from home: {md}"
    );
    let table = rows(&md);
    assert_eq!(table.len(), steps.len(), "one row per step of the plan:\n{md}");
    let owners = [
        ("preempt workspaces at b", "ops-b"),
        ("fence a", "ops-a"),
        ("restore notes at b", "team-web"),
        ("assign b as primary", "ops-b"),
        ("start web at b", "team-web"),
        ("switch route front to b", "team-web"),
        ("verify", "team-web"),
        ("notify", "team-web"),
    ];
    for (name, owner) in owners {
        let row = table
            .iter()
            .find(|r| r[1] == name)
            .unwrap_or_else(|| panic!("no row for `{name}`:\n{md}"));
        let ran = steps.iter().find(|s| s["name"] == name).unwrap();
        assert_eq!(ran["outcome"]["status"], "done", "the run did `{name}`: {ran}");
        let p50 = short(ran["millis"].as_u64().unwrap());
        assert_eq!(row[2], owner, "{name}: {row:?}");
        assert_eq!(row[3], p50, "{name}: the run's duration is its p50: {row:?}");
        assert_eq!(row[4], p50, "{name}: and its p95, over one run: {row:?}");
        assert_eq!(row[5], "1", "{name}: {row:?}");
        assert_eq!(row[6], today, "{name}: measured today: {row:?}");
        assert_eq!(row[7], "fresh", "{name}: {row:?}");
    }
    assert!(!md.contains("never exercised"), "{md}");
    assert!(md.contains("## RTO budget\n\nRTO objective 30s: "), "{md}");
    assert!(
        md.contains("along the critical path at the measured p50s — within it"),
        "{md}"
    );
    assert!(
        md.contains("  - by hand: stop the services at `a` (`127.165.1.1`): `web` — on its host"),
        "{md}"
    );

    // The HTML page: written to a file, self-contained, opened in Chromium without a complaint.
    let html = env.path().join("runbook.html");
    let out = env.run(&["runbook", "--to", "b", "--format", "html", "-o", html.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!doctype html>"), "{page}");
    assert!(!page.contains("<script"), "no script");
    assert!(page.contains("<td>team-web</td>"), "{page}");
    assert!(!page.contains("never exercised"), "{page}");
    let shot = crate::drill::screenshot_path("runbook.png", &env);
    let errors = crate::report_consumers::open_in_chromium(&html, &shot);
    assert!(errors.is_empty(), "console errors: {errors:?}");
    env.stop_controller();
}
