//! `GET /metrics` on the agents' site API (issue 12, item 1): a live exposition passes
//! `promtool check metrics`, a scrape without credentials is refused, the shipped alerting
//! rules pass their unit tests, the newest-point age at the DR site crosses its objective
//! once backups stop reaching it, and a point that cannot be read is absent, never 0.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::api::{status_of, Deployment, TOKEN};
use crate::util::{poll, Daemon};

/// `promtool`, from the Debian package `prometheus`; its absence fails the test.
fn promtool() -> Command {
    let found = Command::new("promtool").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "promtool is missing: install the Debian package `prometheus` (apt-get install --no-install-recommends prometheus)"
    );
    Command::new("promtool")
}

/// `promtool check metrics` on `body`: its output, or the problems it found.
fn check_metrics(body: &str) -> Result<(), String> {
    let mut child = promtool()
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(said)
    }
}

/// The value of the sample `name{labels}` (labels exactly as written, in order) in `body`.
fn sample(body: &str, name: &str, labels: &str) -> Option<f64> {
    let head = format!("{name}{{{labels}}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&head))
        .and_then(|v| v.trim().parse().ok())
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

const RPO: f64 = 6.0;

const S3_PORT: u16 = 19190;

/// The deployment of `api.rs` (web at a, b its standby site, both agents serving the API)
/// with a repository per site on a real S3 server (`rclone serve s3`, as every site is its
/// own host), and a directory dataset of web's backed up every second at a and replicated to
/// b, with an RPO objective of 6 s. Returns the S3 server too (stopped when dropped).
pub(crate) fn protected(block: u8, web_port: u16) -> (Deployment, Daemon) {
    let d = Deployment::new(block, web_port);
    let env = &d.env;
    let s3 = format!("{}:{S3_PORT}", env.addr(9));
    let server = crate::util::serve_s3(
        Command::new(crate::util::rclone()),
        env.path(),
        &s3,
        "metrics-access,metrics-secret",
    );
    let server = Daemon(server);
    let up = poll(Duration::from_secs(20), || std::net::TcpStream::connect(&s3).ok());
    assert!(up.is_some(), "the S3 server never listened:\n{}", d.log("s3.log"));
    let secrets = env.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    for (name, value) in [
        ("password", "correct horse battery staple"),
        ("access", "metrics-access"),
        ("secret", "metrics-secret"),
    ] {
        std::fs::write(secrets.join(name), value).unwrap();
    }
    let secret = |name: &str| format!("{{ file: {} }}", secrets.join(name).display());
    let repository = |site: &str| {
        format!(
            "    repository:\n      url: \"s3://bucket-{site}/repo?endpoint=http://{s3}&region=us-east-1\"\n      password: {}\n      access_key: {}\n      secret_key: {}\n",
            secret("password"),
            secret("access"),
            secret("secret")
        )
    };
    let files = env.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("ledger"), "entry\n".repeat(1000)).unwrap();
    let spec = std::fs::read_to_string(env.spec_dir().join("resurgo.yaml")).unwrap();
    let capacity = "    capacity: { cpu: 8, memory: 8Gi }\n";
    let spec = spec
        .replacen(
            &format!("{capacity}  b:"),
            &format!("{capacity}{}  b:", repository("a")),
            1,
        )
        .replacen(
            &format!("{capacity}services:"),
            &format!("{capacity}{}services:", repository("b")),
            1,
        )
        + &format!(
            "datasets:\n  files:\n    service: web\n    type: directory\n    path: {}\n    schedule: 1s\n    rpo: {RPO}s\n    replicate_to: [b]\n    verify_every: 1h\n",
            files.display()
        );
    assert_eq!(spec.matches("s3://").count(), 2, "{spec}");
    env.write_spec(&spec);
    (d, server)
}

#[test]
fn a_live_scrape_passes_promtool_and_the_rpo_age_crosses_its_objective_when_backups_stop() {
    let (d, s3) = protected(190, 18190);
    let a = d.agent("a");
    let _b = d.agent("b");
    d.apply();
    let init = d.operator(&["repo", "init"]);
    assert_eq!(init.code, 0, "repo init: {}{}", init.stdout, init.stderr);

    // Without credentials, or with the wrong ones, a scrape is refused.
    let anonymous = d.client(&d.anonymous(), None);
    assert_eq!(status_of(anonymous.get_text(&d.addr(1), "/metrics").unwrap_err()), 401);
    let wrong = d.client(&d.anonymous(), Some("not-the-token"));
    assert_eq!(status_of(wrong.get_text(&d.addr(1), "/metrics").unwrap_err()), 403);
    let scraper = d.client(&d.anonymous(), Some(TOKEN));
    let by_certificate = d.client(&d.certs.join("operator"), None);

    // While backups run and replicate, b's newest point of `files` is within its objective.
    let files_at = |site: &str| format!("dataset=\"files\",site=\"{site}\"");
    let within = poll(Duration::from_secs(60), || {
        let body = scraper.get_text(&d.addr(2), "/metrics").ok()?;
        let newest = sample(&body, "resurgo_dataset_newest_point_timestamp_seconds", &files_at("b"))?;
        (now() - newest <= RPO).then_some(body)
    });
    let b_body = within.unwrap_or_else(|| {
        panic!(
            "b never reported a point of `files` within {RPO}s:\n{}\n{}",
            scraper.get_text(&d.addr(2), "/metrics").unwrap_or_default(),
            d.log("agent-a.log")
        )
    });
    assert_eq!(
        sample(&b_body, "resurgo_dataset_rpo_objective_seconds", &files_at("b")),
        Some(RPO)
    );
    // a's exposition, once a backup finished there, has its backups and roles.
    let a_body = poll(Duration::from_secs(30), || {
        let body = by_certificate.get_text(&d.addr(1), "/metrics").ok()?;
        let ok = sample(
            &body,
            "resurgo_backups_total",
            "dataset=\"files\",site=\"a\",result=\"success\"",
        )? >= 1.0;
        ok.then_some(body)
    })
    .expect("a reports a successful backup of `files`");
    for (body, site) in [(&a_body, "a"), (&b_body, "b")] {
        if let Err(problems) = check_metrics(body) {
            panic!("promtool check metrics on {site}'s /metrics:\n{problems}\n{body}");
        }
        assert_eq!(
            body.lines().filter(|l| l.starts_with("resurgo_build_info{")).count(),
            1,
            "{body}"
        );
        assert!(
            body.contains("# TYPE resurgo_backups_total counter") || site == "b",
            "{body}"
        );
    }
    assert_eq!(
        sample(&a_body, "resurgo_group_primary", "group=\"site-a\",site=\"a\""),
        Some(1.0),
        "{a_body}"
    );
    assert!(
        sample(&a_body, "resurgo_backup_last_success_timestamp_seconds", &files_at("a")).is_some(),
        "{a_body}"
    );
    // a replicated what it backed up into b's repository.
    let replicated = poll(Duration::from_secs(30), || {
        let body = by_certificate.get_text(&d.addr(1), "/metrics").ok()?;
        sample(
            &body,
            "resurgo_replications_total",
            "dataset=\"files\",site=\"b\",from=\"a\",result=\"success\"",
        )
        .filter(|n| *n >= 1.0)
    });
    assert!(replicated.is_some(), "{a_body}");
    assert_eq!(
        sample(
            &a_body,
            "resurgo_service_in_sync",
            "site=\"a\",service=\"web\",role=\"active\""
        ),
        Some(1.0),
        "{a_body}"
    );

    // Backups stop reaching b: a's agent, which takes and replicates them, is gone. Once
    // the objective has passed, the age of b's newest point is past it.
    drop(a);
    let breached = poll(Duration::from_secs(60), || {
        let body = scraper.get_text(&d.addr(2), "/metrics").ok()?;
        let newest = sample(&body, "resurgo_dataset_newest_point_timestamp_seconds", &files_at("b"))?;
        let objective = sample(&body, "resurgo_dataset_rpo_objective_seconds", &files_at("b"))?;
        (now() - newest > objective).then_some(body)
    });
    let body = breached.unwrap_or_else(|| {
        panic!(
            "b's newest point never aged past {RPO}s:\n{}",
            scraper.get_text(&d.addr(2), "/metrics").unwrap_or_default()
        )
    });
    check_metrics(&body).unwrap_or_else(|p| panic!("{p}\n{body}"));

    // b's repository does not answer: its newest point is unknown, so its series is absent
    // (never 0, never the last value seen), while the objective is still declared.
    drop(s3);
    let unknown = poll(Duration::from_secs(60), || {
        let body = scraper.get_text(&d.addr(2), "/metrics").ok()?;
        let gone = sample(&body, "resurgo_dataset_newest_point_timestamp_seconds", &files_at("b")).is_none()
            && sample(&body, "resurgo_dataset_snapshots", &files_at("b")).is_none();
        gone.then_some(body)
    });
    let body = unknown.expect("b still reports a point of a repository that does not answer");
    assert_eq!(
        sample(&body, "resurgo_dataset_rpo_objective_seconds", &files_at("b")),
        Some(RPO),
        "{body}"
    );
    check_metrics(&body).unwrap_or_else(|p| panic!("{p}\n{body}"));
}

#[test]
fn the_shipped_alerting_rules_pass_their_unit_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus");
    for args in [
        &["check", "rules", "resurgo.rules.yml"][..],
        &["test", "rules", "resurgo.rules.test.yml"][..],
    ] {
        let out = promtool().args(args).current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
