//! DESIGN §6.3, partitions, with everything real: sites a and b and the witness w each in its
//! own network namespace, an etcd member in each (the coordination store), PostgreSQL at a
//! with a streaming standby at b (`strategy: standby`), and `resurgo agent` at every node with
//! automatic failover on.
//!
//! 1. Cut a↔b only: b suspects a, the witness still sees a and vetoes; no failover.
//! 2. Cut a from everyone: a fences itself (stops PostgreSQL) before b is promoted; the rows
//!    written before the cut are at b, and b accepts writes.
//! 3. Heal: a comes back as a standby of b (its old data set aside), never as a primary.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::netns::Lab;
use crate::pg::{as_pg_user, give, initdb_as_nobody, pg_bin};
use crate::util::{poll, BIN};

const PORT: u16 = 5432;

/// The agents, killed (with everything they started) when dropped.
struct Agents(Vec<Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One statement through `psql` run inside `from`'s namespace, against `host`.
fn sql(lab: &Lab, from: &str, host: &str, q: &str) -> Result<String, String> {
    let out = lab
        .command(from, pg_bin("psql"))
        .args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            host,
            "-U",
            "nobody",
        ])
        .args(["-d", "postgres", "-p", &PORT.to_string(), "-c", q])
        .env("PGCONNECT_TIMEOUT", "2")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// The events an agent logged: (kind, message, time in Unix seconds).
fn events(state: &Path) -> Vec<(String, String, f64)> {
    let text = std::fs::read_to_string(state.join("events.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or_default().to_string(),
                e["message"].as_str().unwrap_or_default().to_string(),
                resurgo_spec::units::parse_rfc3339(e["time"].as_str().unwrap_or_default()).unwrap_or(0.0),
            )
        })
        .collect()
}

fn first(events: &[(String, String, f64)], kind: &str) -> Option<f64> {
    events.iter().find(|e| e.0 == kind).map(|e| e.2)
}

/// The end of every agent's log and of both PostgreSQL logs, for failure messages.
fn logs(root: &Path) -> String {
    let mut out = String::new();
    for (name, path) in [
        ("agent a", root.join("agent-a.log")),
        ("agent b", root.join("agent-b.log")),
        ("witness", root.join("agent-w.log")),
        ("postgres a", root.join("a/services/db/logs/stderr.log")),
        ("postgres b", root.join("b/services/db/logs/stderr.log")),
    ] {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out.push_str(&format!(
            "--- {name} ---\n{}\n",
            lines[lines.len().saturating_sub(25)..].join("\n")
        ));
    }
    out
}

/// Makes `dir` and its parents below `root` traversable by PostgreSQL's user.
fn open_up(root: &Path, dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    for d in dir.ancestors() {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        if d == root {
            break;
        }
    }
}

#[test]
fn partition_cut_link_no_failover_isolated_primary_fenced_then_replaced_healed_as_standby() {
    let lab = Lab::new("part", &["a", "b", "w"]);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    open_up(&root, &root);
    let (a, b, w) = (lab.addr("a"), lab.addr("b"), lab.addr("w"));
    let etcd = lab.etcd(&["a", "b", "w"], &root);

    // a's cluster in its service folder (the dataset's `path` is relative to it).
    let pgdata = root.join("a/services/db/data");
    open_up(&root, pgdata.parent().unwrap());
    std::fs::create_dir(&pgdata).unwrap();
    give(&pgdata);
    initdb_as_nobody(
        &root,
        &pgdata,
        "\nunix_socket_directories = ''\nwal_level = replica\nmax_wal_senders = 10\nmax_replication_slots = 10\n\
         hot_standby = on\nshared_buffers = 32MB\nmax_connections = 30\nlog_line_prefix = '%m [%p] '\n",
        "host all all 10.0.0.0/8 trust\nhost replication all 10.0.0.0/8 trust\n",
    );
    let mut postgres = as_pg_user();
    postgres.extend([
        pg_bin("postgres").display().to_string(),
        "-D".into(),
        "data".into(),
        "-p".into(),
        PORT.to_string(),
    ]);
    let script = format!("exec {} -c listen_addresses=$RESURGO_ADDRESS", postgres.join(" "));
    let password = root.join("password");
    std::fs::write(&password, "partition").unwrap();
    let repo = |site: &str| {
        format!(
            "repository: {{ url: {}, password: {{ file: {} }} }}",
            root.join(format!("backups-{site}")).display(),
            password.display()
        )
    };
    let spec_dir = root.join("spec");
    std::fs::create_dir_all(&spec_dir).unwrap();
    let endpoints = etcd.iter().map(|u| format!("\"{u}\"")).collect::<Vec<_>>().join(", ");
    std::fs::write(
        spec_dir.join("resurgo.yaml"),
        format!(
            "apiVersion: resurgo.dev/v1alpha1\nsystem: partition\nsites:\n\
             \x20 a: {{ provider: local, address: {a}, capacity: {{ cpu: 4, memory: 4Gi }}, root: {ra}, {repo_a} }}\n\
             \x20 b: {{ provider: local, address: {b}, capacity: {{ cpu: 4, memory: 4Gi }}, root: {rb}, {repo_b} }}\n\
             services:\n  db:\n    command: sh\n    args: [\"-c\", \"{script}\"]\n    ports: [{PORT}]\n\
             \x20   health: {{ tcp: {{ port: {PORT} }}, interval: 200ms, start_timeout: 120s }}\n\
             \x20   site: a\n    standby: [b]\n    stop_timeout: 5s\n\
             datasets:\n  orders:\n    service: db\n    type: postgres\n    path: data\n\
             \x20   connection: \"host={a} port={PORT} user=nobody dbname=postgres\"\n    strategy: standby\n    rpo: 2s\n\
             failover:\n  automatic: true\n  cooldown: 1s\n  heartbeat_interval: 500ms\n  suspect_after: 3\n\
             \x20 lease_ttl: 4s\n  fencing_deadline: 2s\n  promotion_delay: 2s\n  witness: \"{w}:7411\"\n\
             \x20 coordination: {{ etcd: [{endpoints}] }}\n",
            ra = root.join("a").display(),
            repo_a = repo("a"),
            repo_b = repo("b"),
            rb = root.join("b").display(),
        ),
    )
    .unwrap();

    let state = |node: &str| root.join(format!("state-{node}"));
    let mut agents = Agents(Vec::new());
    for node in ["w", "a", "b"] {
        let log = std::fs::File::create(root.join(format!("agent-{node}.log"))).unwrap();
        let who: Vec<String> = if node == "w" {
            vec!["--witness".into()]
        } else {
            vec!["--site".into(), node.into()]
        };
        // umask 0: the folders the agents create (b's service folder) must be usable by
        // PostgreSQL's user.
        let child = lab
            .command(node, "sh")
            .args(["-c", "umask 0 && exec \"$0\" \"$@\"", BIN, "agent"])
            .args(&who)
            .arg("--spec")
            .arg(&spec_dir)
            .arg("--state")
            .arg(state(node))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start agent");
        agents.0.push(child);
    }

    // a serves as primary, b follows as a standby; the client is at the witness's node.
    let (ha, hb) = (a.to_string(), b.to_string());
    let primary_a = poll(Duration::from_secs(90), || {
        for child in &mut agents.0 {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("an agent exited ({status}):\n{}", logs(&root));
            }
        }
        (sql(&lab, "w", &ha, "SELECT pg_is_in_recovery()").ok()? == "f").then_some(())
    });
    assert!(primary_a.is_some(), "a never served as primary:\n{}", logs(&root));
    let standby_b = poll(Duration::from_secs(90), || {
        (sql(&lab, "w", &hb, "SELECT pg_is_in_recovery()").ok()? == "t").then_some(())
    });
    assert!(standby_b.is_some(), "b never followed as a standby:\n{}", logs(&root));
    sql(&lab, "w", &ha, "CREATE TABLE orders (id bigint PRIMARY KEY)").unwrap();
    let mut written = 0;
    let mut write_at = |host: &str, n: u32| {
        for _ in 0..n {
            written += 1;
            sql(&lab, "w", host, &format!("INSERT INTO orders VALUES ({written})"))
                .unwrap_or_else(|e| panic!("insert {written} at {host}: {e}\n{}", logs(&root)));
        }
        written
    };
    let count = |host: &str| sql(&lab, "w", host, "SELECT count(*) FROM orders").ok();
    let before_cut = write_at(&ha, 20);
    assert!(
        poll(Duration::from_secs(30), || (count(&hb)? == before_cut.to_string())
            .then_some(()))
        .is_some(),
        "rows did not reach b:\n{}",
        logs(&root)
    );

    // 1. a↔b cut: b suspects a, the witness vetoes, nothing moves.
    lab.cut("a", "b");
    let vetoed = poll(Duration::from_secs(20), || {
        events(&state("b"))
            .iter()
            .any(|e| e.0 == "site_suspect" && e.1.contains("witness still sees it"))
            .then_some(())
    });
    assert!(
        vetoed.is_some(),
        "b never suspected a with the witness's veto:\n{}",
        logs(&root)
    );
    // Longer than promotion delay + lease ttl: a failover would have happened by now.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(8) {
        assert_eq!(
            sql(&lab, "w", &ha, "SELECT pg_is_in_recovery()").as_deref(),
            Ok("f"),
            "a must stay primary while only a↔b is cut:\n{}",
            logs(&root)
        );
        let b_events = events(&state("b"));
        assert!(
            first(&b_events, "failover_started").is_none(),
            "b failed over although the witness saw a:\n{}",
            logs(&root)
        );
        std::thread::sleep(Duration::from_millis(500)); // observation interval, not synchronisation
    }
    assert!(
        events(&state("a")).iter().all(|e| e.0 != "fenced"),
        "a fenced although it held its lease"
    );
    lab.heal();
    let before_isolation = write_at(&ha, 20);
    assert!(
        poll(Duration::from_secs(30), || (count(&hb)?
            == before_isolation.to_string())
        .then_some(()))
        .is_some(),
        "b did not catch up after the heal:\n{}",
        logs(&root)
    );

    // 2. a cut from everyone: a fences itself, then b is promoted.
    let cut_at = Instant::now();
    lab.isolate("a");
    let promoted = poll(Duration::from_secs(60), || {
        (sql(&lab, "w", &hb, "SELECT pg_is_in_recovery()").ok()? == "f").then_some(())
    });
    assert!(
        promoted.is_some(),
        "b was not promoted after a was isolated:\n{}",
        logs(&root)
    );
    eprintln!("isolation → b promoted: {:.2} s", cut_at.elapsed().as_secs_f64());
    let fenced = first(&events(&state("a")), "fenced");
    let started = first(&events(&state("b")), "failover_started");
    let (Some(fenced), Some(started)) = (fenced, started) else {
        panic!(
            "a's fence ({fenced:?}) or b's failover ({started:?}) not logged:\n{}",
            logs(&root)
        );
    };
    assert!(
        fenced < started,
        "a must fence ({fenced}) before b starts taking over ({started}):\n{}",
        logs(&root)
    );
    assert_eq!(
        count(&hb).as_deref(),
        Some(before_isolation.to_string().as_str()),
        "every row acknowledged before the isolation is at b"
    );
    let after_failover = write_at(&hb, 10);
    // a's PostgreSQL is stopped: nothing answers inside a's namespace either.
    assert!(
        sql(&lab, "a", &ha, "SELECT 1").is_err(),
        "a's PostgreSQL still answers after its fence"
    );

    // 3. Heal: a comes back as b's standby and receives b's rows.
    lab.heal();
    let rejoined = poll(Duration::from_secs(90), || {
        (sql(&lab, "w", &ha, "SELECT pg_is_in_recovery()").ok()? == "t").then_some(())
    });
    assert!(rejoined.is_some(), "a did not come back as a standby:\n{}", logs(&root));
    assert!(
        poll(Duration::from_secs(30), || (count(&ha)? == after_failover.to_string())
            .then_some(()))
        .is_some(),
        "a did not receive b's rows as a standby:\n{}",
        logs(&root)
    );
    assert_eq!(
        sql(&lab, "w", &hb, "SELECT pg_is_in_recovery()").as_deref(),
        Ok("f"),
        "b is still the primary"
    );
    let set_aside: Vec<PathBuf> = std::fs::read_dir(root.join("a/services/db"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("data.old-primary-"))
        .collect();
    assert_eq!(set_aside.len(), 1, "a's old data is kept aside, not deleted");
    drop(agents);
}
