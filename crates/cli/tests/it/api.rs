//! The site API, served by real agents over TLS with certificates from `resurgo certs`: what it
//! refuses (no or wrong credentials, malformed bodies, a stale epoch, a run asked of the wrong
//! agent) changes nothing; every route of the committed OpenAPI document is served; `status`
//! and `failover` reach the sites only through it, and an agent that does not answer leaves its
//! site unknown.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use resurgo_api::types::{Health, Runs, SiteReport};
use resurgo_api::{Client, ClientError, Credentials, TlsFiles};
use serde_json::{json, Value};

use crate::util::{find_service, poll, Daemon, Env, Out, BIN};

pub(crate) const TOKEN: &str = "a-long-random-deployment-token";
pub(crate) const PORT: u16 = 7443;

/// Two sites on this machine whose agents serve the API, `web` at a (standby site b), fast
/// failover timing, and the deployment's certificates made by `resurgo certs`.
pub(crate) struct Deployment {
    pub(crate) env: Env,
    pub(crate) certs: PathBuf,
}

impl Deployment {
    pub(crate) fn new(block: u8, web_port: u16) -> Deployment {
        let env = Env::new(block);
        let certs = env.path().join("certs");
        let services =
            Env::web("web", "a", web_port, "manual", &[]).replace("    site: a\n", "    site: a\n    standby: [b]\n");
        let spec = format!(
            "{}failover:\n  witness: \"{}:7411\"\n  heartbeat_interval: 200ms\n  suspect_after: 3\n  lease_ttl: 3s\n  fencing_deadline: 1s\n  promotion_delay: 1s\napi:\n  tls: {}\n  port: {PORT}\n  token: {{ env: RESURGO_TEST_API_TOKEN }}\n",
            env.spec(&services),
            env.addr(9),
            certs.join("operator").display()
        );
        env.write_spec(&spec);
        let made = env.run(&["certs", "--out", &certs.display().to_string()]);
        assert_eq!(made.code, 0, "certs: {}", made.stderr);
        for host in ["a", "b", "witness", "operator"] {
            assert!(made.stdout.contains(&format!("{host}: made")), "{}", made.stdout);
        }
        Deployment { env, certs }
    }

    pub(crate) fn agent(&self, site: &str) -> Daemon {
        let tls = self.certs.join(site).display().to_string();
        Daemon::start_with(
            &self.env,
            &self.env.spec_dir(),
            &["agent", "--site", site, "--tls", &tls],
            &format!("agent-{site}.log"),
            &[("RESURGO_TEST_API_TOKEN", TOKEN)],
        )
    }

    pub(crate) fn addr(&self, site: u8) -> String {
        format!("{}:{PORT}", self.env.addr(site))
    }

    /// A client from `folder` (`ca.pem`, and a certificate when there is one), with `token`.
    pub(crate) fn client(&self, folder: &Path, token: Option<&str>) -> Client {
        Client::new(
            &Credentials {
                tls: TlsFiles::new(folder),
                token: token.map(String::from),
            },
            Duration::from_secs(10),
        )
        .unwrap()
    }

    /// A folder with the deployment's CA only: no identity.
    pub(crate) fn anonymous(&self) -> PathBuf {
        let dir = self.env.path().join("anonymous");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(self.certs.join("ca.pem"), dir.join("ca.pem")).unwrap();
        dir
    }

    /// `resurgo ARGS` as the operator: the spec, its own state folder, and only the API.
    pub(crate) fn operator(&self, args: &[&str]) -> Out {
        let out = Command::new(BIN)
            .args(args)
            .arg("--spec")
            .arg(self.env.spec_dir())
            .arg("--state")
            .arg(self.env.path().join("operator-state"))
            .env("RESURGO_TLS", self.certs.join("operator"))
            .env_remove("RESURGO_TEST_API_TOKEN")
            .output()
            .expect("run resurgo");
        Out::of(out)
    }

    /// `resurgo apply` as the operator, once both agents answer: each applies its own site.
    pub(crate) fn apply(&self) {
        let anonymous = self.client(&self.anonymous(), None);
        for site in [1, 2] {
            let up = poll(Duration::from_secs(20), || {
                anonymous.get::<Health>(&self.addr(site), "/health").ok()
            });
            assert!(
                up.is_some(),
                "agent {site} does not answer:\n{}",
                self.log("agent-a.log")
            );
        }
        let applied = self.operator(&["apply", "--json"]);
        assert_eq!(applied.code, 0, "apply: {}{}", applied.stdout, applied.stderr);
        let sites = applied.json()["sites"].clone();
        assert_eq!(sites[0]["applied"], true, "{sites}");
        assert_eq!(sites[1]["applied"], true, "{sites}");
    }

    pub(crate) fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.env.path().join(name)).unwrap_or_default()
    }
}

pub(crate) fn status_of(e: ClientError) -> u16 {
    match e {
        ClientError::Refused { status, .. } => status,
        other => panic!("expected an HTTP refusal, got: {other}"),
    }
}

#[test]
fn the_site_api_refuses_without_changing_anything_and_serves_every_documented_route() {
    let d = Deployment::new(160, 18160);
    // The keys are the host's alone; the folders private.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&d.certs.join("a/key.pem")), 0o600);
    assert_eq!(mode(&d.certs.join("ca-key.pem")), 0o600);
    assert_eq!(mode(&d.certs.join("a")), 0o700);
    let _a = d.agent("a");
    let _b = d.agent("b");
    d.apply();

    let anonymous = d.client(&d.anonymous(), None);
    let operator = d.client(&d.certs.join("operator"), None);
    let by_token = d.client(&d.anonymous(), Some(TOKEN));
    // Health answers anyone: a is primary once its agent holds the lease; b is not.
    let primary = poll(Duration::from_secs(20), || {
        anonymous.get::<Health>(&d.addr(1), "/primary").ok().filter(|h| h.ok)
    });
    assert!(
        primary.is_some(),
        "a never answered /primary with 200:\n{}",
        d.log("agent-a.log")
    );
    assert_eq!(
        status_of(anonymous.get::<Health>(&d.addr(2), "/primary").unwrap_err()),
        503
    );
    let health: Health = anonymous.get(&d.addr(2), "/health").unwrap();
    assert!(health.ok && health.primary_for.is_empty(), "{health:?}");
    assert_eq!(
        status_of(
            anonymous
                .get::<Health>(&d.addr(1), "/primary?group=site-b")
                .unwrap_err()
        ),
        503
    );
    assert_eq!(
        status_of(
            anonymous
                .get::<Health>(&d.addr(2), "/standby?max_lag=soon")
                .unwrap_err()
        ),
        400
    );

    // Everything else needs credentials.
    assert_eq!(
        status_of(anonymous.get::<SiteReport>(&d.addr(1), "/v1/site").unwrap_err()),
        401
    );
    let wrong = d.client(&d.anonymous(), Some("not-the-token"));
    assert_eq!(
        status_of(wrong.get::<SiteReport>(&d.addr(1), "/v1/site").unwrap_err()),
        403
    );
    for client in [&operator, &by_token] {
        // A health check reports what its last probe saw (at most one `interval` old): polled.
        let healthy = poll(Duration::from_secs(20), || {
            let report: SiteReport = client.get(&d.addr(1), "/v1/site").unwrap();
            assert_eq!(report.site.site, "a");
            let web = report
                .site
                .services
                .iter()
                .find(|s| s.service == "web")
                .cloned()
                .expect("web at a");
            (web.process == "running" && web.health == "healthy").then_some(())
        });
        assert!(healthy.is_some(), "web never reported healthy through the API");
    }

    // Runs that must not start: no credentials, a malformed body, the wrong agent, a stale
    // epoch. None of them changes anything.
    let run = |epoch: u64, to: &str| json!({"kind": "failover", "from": "a", "to": to, "epoch": epoch});
    let post = |client: &Client, site: u8, body: &Value| {
        status_of(client.post::<_, Value>(&d.addr(site), "/v1/runs", body).unwrap_err())
    };
    assert_eq!(post(&anonymous, 2, &run(0, "b")), 401);
    assert_eq!(post(&wrong, 2, &run(0, "b")), 403);
    assert_eq!(post(&operator, 2, &json!("fail over, please")), 400);
    assert_eq!(post(&operator, 2, &json!({"kind": "failover", "from": "a"})), 400);
    assert_eq!(
        post(
            &operator,
            2,
            &json!({"kind": "sideways", "from": "a", "to": "b", "epoch": 0})
        ),
        400
    );
    assert_eq!(
        post(&operator, 1, &run(0, "b")),
        400,
        "a run is asked of its target's agent"
    );
    assert_eq!(post(&operator, 2, &run(7, "b")), 409, "epoch 7 is not the group's");
    let backup = operator.post::<_, Value>(&d.addr(1), "/v1/datasets/nothing/backup", &json!({"epoch": 0}));
    assert_eq!(status_of(backup.unwrap_err()), 404);
    let runs: Runs = operator.get(&d.addr(2), "/v1/runs").unwrap();
    assert!(runs.runs.is_empty(), "a refused request started a run: {runs:?}");
    let report: SiteReport = operator.get(&d.addr(1), "/v1/site").unwrap();
    let web = report.site.services.iter().find(|s| s.service == "web").unwrap();
    assert_eq!(web.process, "running");
    let role = report.roles.iter().find(|r| r.group == "site-a").expect("a's role");
    assert_eq!((role.primary.as_str(), role.epoch), ("a", 0));

    // Every route of the committed OpenAPI document is served (none is 404 or 405); one that
    // is not in it is 404.
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/site-api.openapi.json"))
            .unwrap(),
    )
    .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 10, "{paths:?}");
    for (path, methods) in paths {
        let path = path
            .replace("{id}", "no-such-run")
            .replace("{run}", "no-such-run")
            .replace("{name}", "no-such-dataset");
        for method in methods.as_object().unwrap().keys() {
            let status = match method.as_str() {
                "get" if path == "/v1/events" || path == "/ui/events" => {
                    let mut lines =
                        BufReader::new(operator.open(&d.addr(1), &format!("{path}?since=0")).unwrap()).lines();
                    let first = lines.next().unwrap().unwrap();
                    let event: Value = serde_json::from_str(
                        &lines
                            .find_map(|l| l.ok()?.strip_prefix("data: ").map(String::from))
                            .unwrap(),
                    )
                    .unwrap();
                    assert!(
                        first.starts_with("id: ") && event["kind"].is_string(),
                        "{first} {event}"
                    );
                    200
                }
                "get" if path == "/metrics" => match operator.get_text(&d.addr(1), &path) {
                    Ok(body) => {
                        assert!(body.contains("# TYPE resurgo_build_info gauge"), "{body}");
                        200
                    }
                    Err(e) => status_of(e),
                },
                "get" => match operator.get::<Value>(&d.addr(1), &path) {
                    Ok(_) => 200,
                    Err(e) => status_of(e),
                },
                "delete" => match operator.delete::<Value>(&d.addr(1), &path) {
                    Ok(_) => 200,
                    Err(e) => status_of(e),
                },
                _ => match operator.post::<_, Value>(&d.addr(1), &path, &json!({"epoch": 99})) {
                    Ok(_) => 200,
                    Err(e) => status_of(e),
                },
            };
            assert!(![405].contains(&status), "{method} {path}: {status}");
            // The only 404s are for the run and the dataset that do not exist.
            assert!(status != 404 || path.contains("no-such"), "{method} {path}: 404");
        }
    }
    assert_eq!(
        status_of(operator.get::<Value>(&d.addr(1), "/v1/nothing").unwrap_err()),
        404
    );
}

#[test]
fn status_and_failover_reach_the_sites_only_through_their_agents() {
    let d = Deployment::new(161, 18161);
    let a = d.agent("a");
    let b = d.agent("b");
    d.apply();
    let anonymous = d.client(&d.anonymous(), None);
    let ready = poll(Duration::from_secs(20), || {
        anonymous.get::<Health>(&d.addr(1), "/primary").ok().filter(|h| h.ok)
    });
    assert!(ready.is_some(), "a never became primary:\n{}", d.log("agent-a.log"));

    // The operator has its own state folder and no token: only its client certificate. (A
    // health check reports its last probe, at most one `interval` old: polled.)
    let status = poll(Duration::from_secs(20), || {
        let out = d.operator(&["status", "--json"]);
        assert!(out.code == 0 || out.code == 2, "status: {}", out.stderr);
        let status = out.json();
        (find_service(&status, "a", "web")?["health"] == "healthy").then_some(status)
    })
    .expect("web never reported healthy through the agents");
    assert_eq!(status["sites"][0]["state"], "reachable", "{status}");
    assert_eq!(status["sites"][1]["state"], "reachable", "{status}");
    assert!(
        !d.env.path().join("operator-state/sites").exists(),
        "the operator's status looked for sites on its own disk"
    );
    // The maintenance switch, through an agent: status shows it, off clears it.
    let on = d.operator(&["maintenance", "on", "--for", "5m", "--by", "api-test"]);
    assert_eq!(on.code, 0, "{}", on.stderr);
    assert!(on.stdout.contains("maintenance on (by api-test)"), "{}", on.stdout);
    assert_eq!(
        d.operator(&["status", "--json"]).json()["maintenance"]["by"],
        "api-test"
    );
    assert_eq!(d.operator(&["maintenance", "off"]).code, 0);
    assert!(d.operator(&["status", "--json"]).json()["maintenance"].is_null());

    // b's agent is gone: b is unknown, never healthy or empty.
    drop(b);
    let out = d.operator(&["status", "--json"]);
    assert_eq!(out.code, 2, "an unknown site is not in sync: {}", out.stdout);
    let status = out.json();
    let site_b = &status["sites"][1];
    assert_eq!(site_b["state"], "unknown", "{status}");
    assert!(
        site_b["reason"].as_str().unwrap().contains("cannot be reached"),
        "{site_b}"
    );

    // Site a is lost (its agent killed -9, its services fenced by their supervisors when the
    // fence deadline passes). b's agent, back, is asked to fail over: it waits out a's lease
    // and serves web.
    drop(a);
    let _b = d.agent("b");
    let up = poll(Duration::from_secs(20), || {
        anonymous.get::<Health>(&d.addr(2), "/health").ok()
    });
    assert!(
        up.is_some(),
        "b's agent does not answer again:\n{}",
        d.log("agent-b.log")
    );
    let out = d.operator(&["failover", "--to", "b", "--wait", "60s"]);
    assert_eq!(
        out.code,
        0,
        "failover through b's agent:\n{}\n{}\n{}",
        out.stdout,
        out.stderr,
        d.log("agent-b.log")
    );
    assert!(out.stdout.contains("started by `b`'s agent"), "{}", out.stdout);
    let status = d.operator(&["status", "--json"]).json();
    let role = status["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == "site-a")
        .cloned();
    assert_eq!(
        role.as_ref().map(|r| (r["primary"].clone(), r["epoch"].clone())),
        Some((json!("b"), json!(1))),
        "{status}"
    );
    assert_eq!(
        find_service(&status, "b", "web").unwrap()["health"],
        "healthy",
        "{status}"
    );
    let runs = d.operator(&["runs", "--json"]);
    assert_eq!(runs.code, 0, "{}", runs.stderr);
}

#[test]
fn a_planned_failover_and_failback_through_the_agents_are_handed_over_by_the_live_old_primary() {
    // A lease long enough that waiting it out would show: each switch must take far less.
    let d = Deployment::new(162, 18162);
    let spec = std::fs::read_to_string(d.env.spec_dir().join("resurgo.yaml"))
        .unwrap()
        .replace("lease_ttl: 3s", "lease_ttl: 20s")
        .replace("fencing_deadline: 1s", "fencing_deadline: 10s")
        .replace("promotion_delay: 1s", "promotion_delay: 10s");
    d.env.write_spec(&spec);
    let _a = d.agent("a");
    let _b = d.agent("b");
    d.apply();
    let anonymous = d.client(&d.anonymous(), None);
    let primary_at = |site: u8| {
        poll(Duration::from_secs(30), || {
            anonymous.get::<Health>(&d.addr(site), "/primary").ok().filter(|h| h.ok)
        })
    };
    assert!(
        primary_at(1).is_some(),
        "a never became primary:\n{}",
        d.log("agent-a.log")
    );

    let started = std::time::Instant::now();
    let out = d.operator(&["failover", "--to", "b", "--wait", "60s"]);
    assert_eq!(
        out.code,
        0,
        "failover:\n{}\n{}\n{}",
        out.stdout,
        out.stderr,
        d.log("agent-a.log")
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the failover took {:?}: a's lease (20 s) was waited out instead of handed over",
        started.elapsed()
    );
    assert!(primary_at(2).is_some(), "b is not primary after the failover");
    let status = d.operator(&["status", "--json"]).json();
    assert_eq!(
        find_service(&status, "b", "web").unwrap()["health"],
        "healthy",
        "{status}"
    );
    let events = d.env.dump_events();
    assert!(events.contains("handing site-a over to b at epoch 1"), "{events}");

    let started = std::time::Instant::now();
    let out = d.operator(&["failback"]);
    assert_eq!(
        out.code,
        0,
        "failback:\n{}\n{}\n{}",
        out.stdout,
        out.stderr,
        d.log("agent-b.log")
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the failback took {:?}: b's lease was waited out",
        started.elapsed()
    );
    assert!(primary_at(1).is_some(), "a is not primary after the failback");
    let status = d.operator(&["status", "--json"]).json();
    let role = status["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == "site-a")
        .cloned()
        .unwrap();
    assert_eq!(
        (role["primary"].clone(), role["epoch"].clone()),
        (json!("a"), json!(2)),
        "{status}"
    );
    assert_eq!(
        find_service(&status, "a", "web").unwrap()["health"],
        "healthy",
        "{status}"
    );
}
