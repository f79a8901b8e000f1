//! Notifications against real receivers, started by the tests on loopback: a webhook receiver
//! that checks each request's HMAC signature, a real Alertmanager (the Debian package
//! `prometheus-alertmanager`), and a receiver that is down — retried, then delivered once it
//! is up; given up past its limit and kept in the event log. The events are those of a real
//! failover: `controller --agents` with site a lost (as in `controller.rs`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{KeyInit, Mac};
use serde_json::Value;

use crate::controller::{agents_env_with, lose_site_a, wait_healthy};
use crate::util::{http_get, poll, Env};

/// A request the webhook receiver took: its body, and whether its signature was right.
#[derive(Debug, Clone)]
struct Received {
    body: Value,
    verified: bool,
    delivery: String,
}

/// A webhook receiver on loopback: verifies `X-Resurgo-Signature` (HMAC-SHA256 under `key`
/// of `<X-Resurgo-Timestamp>.<body>`, computed here with the `hmac` crate, not resurgo's
/// code), answers 204 when it holds and 401 when not, and records every request.
struct Webhook {
    addr: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Webhook {
    fn start(key: &[u8]) -> Webhook {
        Webhook::on(TcpListener::bind("127.0.0.1:0").unwrap(), key)
    }

    fn on(listener: TcpListener, key: &[u8]) -> Webhook {
        let addr = listener.local_addr().unwrap().to_string();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (log, key) = (received.clone(), key.to_vec());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Some(r) = serve(stream, &key) {
                    log.lock().unwrap().push(r);
                }
            }
        });
        Webhook { addr, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits for a verified request about an event of `kind`.
    fn wait(&self, kind: &str, timeout: Duration) -> Option<Received> {
        poll(timeout, || {
            self.received()
                .into_iter()
                .find(|r| r.verified && r.body["event"]["kind"] == kind)
        })
    }
}

/// Reads one request, checks its signature, answers.
fn serve(stream: TcpStream, key: &[u8]) -> Option<Received> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut headers = std::collections::HashMap::new();
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break;
        };
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    let len: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let header = |name: &str| headers.get(name).cloned().unwrap_or_default();
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(format!("{}.", header("x-resurgo-timestamp")).as_bytes());
    mac.update(&body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let verified = header("x-resurgo-signature") == format!("sha256={hex}");
    let answer = if verified {
        "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"
    } else {
        "HTTP/1.1 401 Unauthorized\r\ncontent-length: 13\r\nconnection: close\r\n\r\nbad signature"
    };
    let mut stream = stream;
    stream.write_all(answer.as_bytes()).ok()?;
    Some(Received {
        body: serde_json::from_slice(&body).ok()?,
        verified,
        delivery: header("x-resurgo-delivery"),
    })
}

/// Writes `text` into `dir`; its path (for a `{file: …}` secret reference).
fn secret_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// The records of `kind` (`notification_delivered`, …) for `receiver`, in the event log.
fn records(env: &Env, kind: &str, receiver: &str) -> Vec<Value> {
    env.events()
        .into_iter()
        .filter(|e| e["kind"] == kind && e["notification"]["receiver"] == receiver)
        .collect()
}

/// Waits until a record of `kind` for `receiver` about an event of `event` is in the log.
fn wait_record(env: &Env, kind: &str, receiver: &str, event: &str, timeout: Duration) -> Value {
    poll(timeout, || {
        records(env, kind, receiver)
            .into_iter()
            .find(|r| r["notification"]["event"] == event)
    })
    .unwrap_or_else(|| {
        panic!(
            "no {kind} of {event} for `{receiver}` within {timeout:?}:\n{}",
            env.dump_events()
        )
    })
}

/// A failover (site a lost, the agents fail over to b) is sent to a webhook, signed: the
/// receiver verifies each request with the key it shares; one that holds another key refuses
/// them, and those are recorded undelivered with what would have been sent. No URL or key is
/// written to the event log.
#[test]
fn a_failover_is_notified_to_a_webhook_that_verifies_its_signature() {
    let key = "s3cret-key-of-the-hook";
    let hook = Webhook::start(key.as_bytes());
    let forged = Webhook::start(b"another key");
    let secrets = tempfile::tempdir().unwrap();
    let extra = format!(
        "notifications:\n  hook:\n    kind: webhook\n    url: http://{}/resurgo\n    hmac_key: {{ file: {} }}\n    events: [failover_started, failover_finished]\n  forged:\n    kind: webhook\n    url: {{ secret: {{ file: {} }} }}\n    hmac_key: {{ file: {} }}\n    events: [failover_started]\n",
        hook.addr,
        secret_file(secrets.path(), "hook.key", &format!("{key}\n")),
        secret_file(secrets.path(), "forged.url", &format!("http://{}/forged-url-path", forged.addr)),
        secret_file(secrets.path(), "forged.key", key),
    );
    let (mut env, pid) = agents_env_with(180, &extra);
    lose_site_a(&env, pid);

    let started = hook
        .wait("failover_started", Duration::from_secs(60))
        .unwrap_or_else(|| {
            panic!(
                "no verified failover_started: {:?}\n{}",
                hook.received(),
                env.dump_events()
            )
        });
    assert_eq!(started.body["schema"], "resurgo.notification/v1");
    assert_eq!(started.body["system"], "test");
    assert_eq!(started.body["receiver"], "hook");
    assert_eq!(started.body["event"]["site"], "b", "{:#}", started.body);
    assert_eq!(started.body["count"], 1);
    assert_eq!(started.body["delivery"], started.delivery.as_str());
    let finished = hook
        .wait("failover_finished", Duration::from_secs(60))
        .unwrap_or_else(|| {
            panic!(
                "no verified failover_finished: {:?}\n{}",
                hook.received(),
                env.dump_events()
            )
        });
    assert!(
        finished.body["event"]["message"]
            .as_str()
            .unwrap()
            .ends_with(": succeeded"),
        "{:#}",
        finished.body
    );
    assert!(hook.received().iter().all(|r| r.verified), "{:?}", hook.received());
    let delivered = wait_record(
        &env,
        "notification_delivered",
        "hook",
        "failover_finished",
        Duration::from_secs(5),
    );
    assert_eq!(delivered["notification"]["attempts"], 1, "{delivered}");
    let lag = |kind: &str| {
        let at = |e: &Value| resurgo_spec::units::parse_rfc3339(e["time"].as_str().unwrap()).unwrap();
        let event = env.events().into_iter().find(|e| e["kind"] == kind).unwrap();
        let record = wait_record(&env, "notification_delivered", "hook", kind, Duration::from_secs(5));
        at(&record) - at(&event)
    };
    eprintln!(
        "event → delivered and recorded: failover_started {:.2} s, failover_finished {:.2} s",
        lag("failover_started"),
        lag("failover_finished")
    );

    // The other receiver checks with another key: it refuses, and the refusal is for good.
    let refused = wait_record(
        &env,
        "notification_undelivered",
        "forged",
        "failover_started",
        Duration::from_secs(60),
    );
    assert!(forged.received().iter().all(|r| !r.verified));
    let payload = &refused["notification"]["payload"];
    assert_eq!(payload["event"]["kind"], "failover_started", "{refused}");
    assert!(
        refused["notification"]["error"].as_str().unwrap().contains("HTTP 401"),
        "{refused}"
    );
    // Secrets stay out of the record: the key, and the URL given as a secret.
    let log = env.dump_events();
    for secret in [key, "forged-url-path"] {
        assert!(!log.contains(secret), "`{secret}` in the event log:\n{log}");
    }
    wait_healthy(&env, "b", "web", Duration::from_secs(10));
    env.stop_controller();
}

/// `prometheus-alertmanager` (Debian), started on a loopback port with its own storage and
/// no cluster; its absence fails the test.
struct Alertmanager {
    child: Child,
    addr: String,
}

impl Alertmanager {
    fn start(dir: &Path) -> Alertmanager {
        let bin = ["prometheus-alertmanager", "alertmanager"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
            .unwrap_or_else(|| {
                panic!("Alertmanager is missing: install the Debian package `prometheus-alertmanager` (apt-get install --no-install-recommends prometheus-alertmanager)")
            });
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("alertmanager.yml");
        std::fs::write(&config, "route:\n  receiver: none\nreceivers:\n  - name: none\n").unwrap();
        let log = std::fs::File::create(dir.join("alertmanager.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let am = Alertmanager { child, addr };
        let ready = poll(Duration::from_secs(60), || http_get(&am.addr, "/-/ready"));
        assert!(
            ready.is_some(),
            "Alertmanager not ready within 30 s:\n{}",
            std::fs::read_to_string(dir.join("alertmanager.log")).unwrap_or_default()
        );
        am
    }

    /// The alerts it holds as active (`GET /api/v2/alerts`).
    fn alerts(&self) -> Vec<Value> {
        http_get(&self.addr, "/api/v2/alerts")
            .and_then(|body| serde_json::from_str::<Vec<Value>>(&body).ok())
            .unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Alertmanager receives the failover: the finished failover's alert is active, with
/// the system, the site and its severity as labels; the started one was sent first, then
/// resolved by it.
#[test]
fn a_real_alertmanager_receives_the_failover_alert() {
    let dir = tempfile::tempdir().unwrap();
    let am = Alertmanager::start(dir.path());
    let extra = format!(
        "notifications:\n  am:\n    kind: alertmanager\n    url: http://{}\n",
        am.addr
    );
    let (mut env, pid) = agents_env_with(181, &extra);
    lose_site_a(&env, pid);

    let alert = poll(Duration::from_secs(40), || {
        am.alerts()
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "ResurgoFailoverFinished")
    })
    .unwrap_or_else(|| {
        panic!(
            "no failover alert in Alertmanager: {:?}\n{}",
            am.alerts(),
            env.dump_events()
        )
    });
    let labels = &alert["labels"];
    assert_eq!(
        (&labels["system"], &labels["site"], &labels["severity"]),
        (&"test".into(), &"b".into(), &"info".into()),
        "{alert:#}"
    );
    assert!(
        alert["annotations"]["summary"].as_str().unwrap().contains("succeeded"),
        "{alert:#}"
    );
    assert_eq!(alert["status"]["state"], "active", "{alert:#}");
    // The start went before, delivered; the finish resolved it.
    let started = wait_record(
        &env,
        "notification_delivered",
        "am",
        "failover_started",
        Duration::from_secs(5),
    );
    let finished = wait_record(
        &env,
        "notification_delivered",
        "am",
        "failover_finished",
        Duration::from_secs(5),
    );
    assert!(started["time"].as_str() <= finished["time"].as_str());
    assert!(
        am.alerts()
            .iter()
            .all(|a| a["labels"]["alertname"] != "ResurgoFailoverStarted"),
        "the started alert is resolved: {:?}",
        am.alerts()
    );
    env.stop_controller();
}

/// A receiver that is down: the failover's notifications are retried with back-off (each
/// failed attempt recorded), and arrive once it is up. A receiver that stays down past its
/// `give_up_after` has every one recorded undelivered, with its payload: nothing the log
/// recorded is lost.
#[test]
fn a_receiver_that_is_down_gets_retries_and_nothing_is_lost() {
    let key = b"late key";
    // Ports known, nothing listening yet (the late one) or ever (the gone one).
    let late_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gone_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let secrets = tempfile::tempdir().unwrap();
    let extra = format!(
        "notifications:\n  late:\n    kind: webhook\n    url: http://127.0.0.1:{late_port}/\n    hmac_key: {{ file: {} }}\n    events: [failover_started, failover_finished]\n    dedupe_window: 0s\n  gone:\n    kind: webhook\n    url: http://127.0.0.1:{gone_port}/\n    hmac_key: {{ file: {} }}\n    events: [failover_started, failover_finished]\n    give_up_after: 3s\n",
        secret_file(secrets.path(), "late.key", "late key"),
        secret_file(secrets.path(), "gone.key", "gone key"),
    );
    let (mut env, pid) = agents_env_with(182, &extra);
    lose_site_a(&env, pid);
    env.wait_event("failover finished", Duration::from_secs(60), |e| {
        e["kind"] == "failover_finished"
    });

    // Retried: failed attempts one after another, spaced by the back-off.
    let retried = poll(Duration::from_secs(20), || {
        let failed = records(&env, "notification_failed", "late");
        (failed.len() >= 3).then_some(failed)
    })
    .unwrap_or_else(|| panic!("no retries for `late`:\n{}", env.dump_events()));
    let attempts: Vec<u64> = retried
        .iter()
        .map(|r| r["notification"]["attempts"].as_u64().unwrap())
        .collect();
    assert_eq!(&attempts[..3], [1, 2, 3], "{retried:#?}");
    assert!(records(&env, "notification_delivered", "late").is_empty());

    // Up at last: everything arrives, in order.
    let late = Webhook::on(TcpListener::bind(("127.0.0.1", late_port)).unwrap(), key);
    let up = std::time::Instant::now();
    for kind in ["failover_started", "failover_finished"] {
        late.wait(kind, Duration::from_secs(70))
            .unwrap_or_else(|| panic!("`late` never got {kind}: {:?}\n{}", late.received(), env.dump_events()));
    }
    eprintln!(
        "receiver down: {} failed attempts recorded; up → both delivered in {:.1} s",
        records(&env, "notification_failed", "late").len(),
        up.elapsed().as_secs_f64()
    );
    let order: Vec<Value> = late
        .received()
        .iter()
        .map(|r| r.body["event"]["kind"].clone())
        .collect();
    assert_eq!(order, ["failover_started", "failover_finished"], "once each, in order");
    let delivered = wait_record(
        &env,
        "notification_delivered",
        "late",
        "failover_started",
        Duration::from_secs(5),
    );
    assert!(
        delivered["notification"]["attempts"].as_u64().unwrap() > 3,
        "{delivered}"
    );

    // Never up: given up past 3 s, each kept with what would have been sent.
    for kind in ["failover_started", "failover_finished"] {
        let given = wait_record(&env, "notification_undelivered", "gone", kind, Duration::from_secs(60));
        assert_eq!(given["notification"]["payload"]["event"]["kind"], kind, "{given}");
        assert!(given["notification"]["attempts"].as_u64().unwrap() >= 1, "{given}");
    }
    // Nothing lost: every failover event the log holds was delivered to `late` and recorded
    // undelivered for `gone`.
    let events = env.events();
    let failover_events = events
        .iter()
        .filter(|e| e["kind"] == "failover_started" || e["kind"] == "failover_finished")
        .count();
    let accounted = |kind: &str, receiver: &str| records(&env, kind, receiver).len();
    assert_eq!(
        accounted("notification_delivered", "late"),
        failover_events,
        "{}",
        env.dump_events()
    );
    assert_eq!(
        accounted("notification_undelivered", "gone"),
        failover_events,
        "{}",
        env.dump_events()
    );
    env.stop_controller();
}
