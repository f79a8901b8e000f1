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

use crate::dns_route::{Knot, DNS_PORT, KEY, KEY_NAME, RECORD, ZONE};
use crate::netns::Lab;
use crate::pg::{give, initdb_as_nobody, pg_bin};
use crate::util::{poll, BIN};

const PORT: u16 = 5432;

/// The reference stack of the partition tests, in a lab of three namespaces (a, b and the
/// witness w): an etcd member in each, PostgreSQL at a (`strategy: standby`, a streaming
/// standby at b), an agent at every node. Everything is killed and removed when dropped.
pub struct Stack {
    pub lab: Lab,
    pub root: PathBuf,
    agents: std::collections::BTreeMap<String, Child>,
    spec_dir: PathBuf,
    /// The authoritative DNS server of the `www` route, at the witness's node.
    pub knot: Knot,
    _tmp: tempfile::TempDir,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for child in self.agents.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Stack {
    /// Builds the lab, etcd, a's cluster and the spec (`failover:` gets `failover_extra`
    /// appended, e.g. timing), and starts the witness and both agents.
    pub fn start(tag: &str, failover_extra: &str) -> Stack {
        Stack::start_with(tag, "standby", failover_extra)
    }

    /// [`Stack::start`] with the dataset's `strategy` (`standby`, or `backup`: archived at a
    /// into a's repository, replicated to b's, no server at b until a failover restores one).
    pub fn start_with(tag: &str, strategy: &str, failover_extra: &str) -> Stack {
        let lab = Lab::new(tag, &["a", "b", "w"]);
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
            &format!(
                "\nunix_socket_directories = ''\nwal_level = replica\nmax_wal_senders = 10\nmax_replication_slots = 10\n\
             hot_standby = on\nshared_buffers = 32MB\nmax_connections = 30\nlog_line_prefix = '%m [%p] '\n{}",
                if strategy == "backup" { "archive_mode = on\n" } else { "" }
            ),
            "host all all 10.0.0.0/8 trust\nhost replication all 10.0.0.0/8 trust\n",
        );
        // resurgo runs it as `nobody` (the service's `user:`) when the tests run as root.
        let user = crate::pg::pg_service_user("    ");
        let mut postgres: Vec<String> = Vec::new();
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
        let dns = std::net::SocketAddr::from((w, DNS_PORT));
        let knot = Knot::start_in(Some((&lab, "w")), root.join("knot"), dns, a);
        let tsig = root.join("tsig.secret");
        std::fs::write(&tsig, KEY).unwrap();
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
                 \x20   site: a\n    standby: [b]\n    stop_timeout: 5s\n{user}\
                 datasets:\n  orders:\n    service: db\n    type: postgres\n    path: data\n\
                 \x20   connection: \"host={a} port={PORT} user=nobody dbname=postgres\"\n    strategy: {strategy}\n    rpo: {rpo}\n    replicate_to: [b]\n\
                 routes:\n  www:\n    service: db\n    type: dns\n\
                 \x20   dns: {{ server: \"{dns}\", zone: {ZONE}, name: {RECORD}, ttl: 5, key: {{ name: {KEY_NAME}, secret: {{ file: {tsig} }} }} }}\n\
                 failover:\n  automatic: true\n  witness: \"{w}:7411\"\n  coordination: {{ etcd: {{ endpoints: [{endpoints}] }} }}\n{failover_extra}",
                ra = root.join("a").display(),
                rb = root.join("b").display(),
                repo_a = repo("a"),
                repo_b = repo("b"),
                tsig = tsig.display(),
                rpo = if strategy == "backup" { "4s" } else { "2s" },
            ),
        )
        .unwrap();
        let mut stack = Stack {
            lab,
            root,
            agents: Default::default(),
            spec_dir,
            knot,
            _tmp: tmp,
        };
        for node in ["w", "a", "b"] {
            stack.start_agent(node);
        }
        stack
    }

    /// Timing for the tests: detection in 1.5 s, fenced by 2.5 s, lease 4 s.
    pub const FAST: &'static str = "  cooldown: 1s\n  heartbeat_interval: 500ms\n  suspect_after: 3\n  lease_ttl: 4s\n\
                                    \x20 fencing_deadline: 2s\n  promotion_delay: 2s\n";

    pub fn state(&self, node: &str) -> PathBuf {
        self.root.join(format!("state-{node}"))
    }

    /// When (Unix seconds) the first run at `node` became ready to act on its first step whose
    /// name starts with `prefix` (its `checked`/`ready` journal record), if one did.
    pub fn step_ready_at(&self, node: &str, prefix: &str) -> Option<f64> {
        use resurgo_runbook::journal::{Journal, Phase, CHECKED_READY};
        let runs = self.state(node).join("runs");
        std::fs::read_dir(&runs)
            .ok()?
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| Journal::read(&e.path().join("journal.jsonl")).ok())
            .flat_map(|j| j.records)
            .filter(|r| r.step.as_deref().is_some_and(|s| s.starts_with(prefix)))
            .filter(|r| r.phase == Phase::Checked && r.detail == CHECKED_READY)
            .filter_map(|r| resurgo_spec::units::parse_rfc3339(&r.time).ok())
            .reduce(f64::min)
    }

    /// Starts (or restarts) the agent of `node` (`w`: the witness), appending to its log.
    pub fn start_agent(&mut self, node: &str) {
        let who: Vec<&str> = if node == "w" {
            vec!["agent", "--witness"]
        } else {
            vec!["agent", "--site", node]
        };
        self.start_process(node, node, &who);
    }

    /// Starts `resurgo ARGS --spec … --state <node's state>` in `node`'s namespace as the
    /// process `key` (killed with the stack), its output appended to `agent-<key>.log`.
    pub fn start_process(&mut self, node: &str, key: &str, args: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join(format!("agent-{key}.log")))
            .unwrap();
        let child = self
            .command(node, node, args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start resurgo");
        self.agents.insert(key.to_string(), child);
    }

    /// Runs `resurgo ARGS` to its end in `node`'s namespace with `state`'s state folder.
    pub fn resurgo(&self, node: &str, state: &str, args: &[&str]) -> std::process::Output {
        self.command(node, state, args).output().expect("run resurgo")
    }

    /// `resurgo ARGS --spec … --state <state>` in `node`'s namespace, umask 0: the folders it
    /// creates (b's service folder) must be usable by PostgreSQL's user.
    fn command(&self, node: &str, state: &str, args: &[&str]) -> std::process::Command {
        let mut cmd = self.lab.command(node, "sh");
        cmd.args(["-c", "umask 0 && exec \"$0\" \"$@\"", BIN])
            .args(args)
            .arg("--spec")
            .arg(&self.spec_dir)
            .arg("--state")
            .arg(self.state(state))
            .stdin(Stdio::null());
        cmd
    }

    /// [`Stack::resurgo`] as a host on which `site`'s folder is an empty mount point (its
    /// volume not mounted there): a private mount namespace with an empty tmpfs over it.
    pub fn resurgo_without(&self, node: &str, state: &str, site: &str, args: &[&str]) -> std::process::Output {
        let mut cmd = self.lab.command(node, "unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount -t tmpfs none \"$1\" && shift && umask 0 && exec \"$@\"")
            .arg("sh")
            .arg(self.root.join(site))
            .arg(BIN)
            .args(args)
            .arg("--spec")
            .arg(&self.spec_dir)
            .arg("--state")
            .arg(self.state(state))
            .stdin(Stdio::null());
        cmd.output().expect("run resurgo")
    }

    /// SIGKILLs the agent of `node` (the services it started keep running, as after a crash
    /// of the agent alone).
    pub fn kill_agent(&mut self, node: &str) {
        if let Some(mut child) = self.agents.remove(node) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Panics if an agent exited on its own.
    pub fn check_agents(&mut self) {
        for (node, child) in &mut self.agents {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the agent of {node} exited ({status}):\n{}", logs(&self.root));
            }
        }
    }

    /// One statement through `psql` run in `from`'s namespace against `to`'s server.
    pub fn sql(&self, from: &str, to: &str, q: &str) -> Result<String, String> {
        sql(&self.lab, from, &self.lab.addr(to).to_string(), q)
    }

    /// Whether `node`'s server answers as a primary (Some(true)) or a standby (Some(false)),
    /// asked from the witness's node.
    pub fn is_primary(&self, node: &str) -> Option<bool> {
        match self.sql("w", node, "SELECT pg_is_in_recovery()").ok()?.as_str() {
            "f" => Some(true),
            "t" => Some(false),
            _ => None,
        }
    }

    /// Waits until a serves as the primary and b follows it.
    pub fn wait_ready(&mut self) {
        let ready = poll(Duration::from_secs(120), || {
            self.check_agents();
            (self.is_primary("a")? && !self.is_primary("b")?).then_some(())
        });
        assert!(ready.is_some(), "a never served with b following:\n{}", self.logs());
    }

    /// What the DNS server answers for the route's record, asked from the witness's node.
    pub fn www(&self) -> Vec<std::net::Ipv4Addr> {
        let server = std::net::SocketAddr::from((self.lab.addr("w"), DNS_PORT));
        self.lab
            .within("w", || resurgo_route::dns::query_a(server, RECORD))
            .unwrap_or_else(|e| panic!("{e}\n{}", self.knot.log()))
    }

    pub fn events(&self, node: &str) -> Vec<(String, String, f64)> {
        events(&self.state(node))
    }

    pub fn logs(&self) -> String {
        logs(&self.root)
    }
}

/// One statement through `psql` run inside `from`'s namespace, against `host`.
pub(crate) fn sql(lab: &Lab, from: &str, host: &str, q: &str) -> Result<String, String> {
    let conninfo = format!("host={host} port={PORT} user=nobody dbname=postgres connect_timeout=2");
    crate::pg::run_psql(lab.command(from, pg_bin("psql")), &conninfo, q)
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
            lines[lines.len().saturating_sub(60)..].join("\n")
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
    let mut stack = Stack::start("part", Stack::FAST);
    stack.wait_ready();
    assert_eq!(stack.www(), [stack.lab.addr("a")], "the DNS record leads to a");
    let logs = |stack: &Stack| stack.logs();
    let b_addr = |stack: &Stack| stack.lab.addr("b");
    stack
        .sql("w", "a", "CREATE TABLE orders (id bigint PRIMARY KEY)")
        .unwrap();
    let mut written = 0;
    let mut write_at = |stack: &Stack, node: &str, n: u32| {
        for _ in 0..n {
            written += 1;
            stack
                .sql("w", node, &format!("INSERT INTO orders VALUES ({written})"))
                .unwrap_or_else(|e| panic!("insert {written} at {node}: {e}\n{}", stack.logs()));
        }
        written
    };
    let count = |stack: &Stack, node: &str| stack.sql("w", node, "SELECT count(*) FROM orders").ok();
    let before_cut = write_at(&stack, "a", 20);
    assert!(
        poll(Duration::from_secs(30), || (count(&stack, "b")?
            == before_cut.to_string())
        .then_some(()))
        .is_some(),
        "rows did not reach b:\n{}",
        logs(&stack)
    );

    // 1. a↔b cut: b suspects a, the witness vetoes, nothing moves.
    stack.lab.cut("a", "b");
    let vetoed = poll(Duration::from_secs(20), || {
        stack
            .events("b")
            .iter()
            .any(|e| e.0 == "site_suspect" && e.1.contains("witness still sees it"))
            .then_some(())
    });
    assert!(
        vetoed.is_some(),
        "b never suspected a with the witness's veto:\n{}",
        logs(&stack)
    );
    // Longer than promotion delay + lease ttl: a failover would have happened by now.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(8) {
        assert_eq!(
            stack.is_primary("a"),
            Some(true),
            "a must stay primary while only a↔b is cut:\n{}",
            logs(&stack)
        );
        assert!(
            first(&stack.events("b"), "failover_started").is_none(),
            "b failed over although the witness saw a:\n{}",
            logs(&stack)
        );
        std::thread::sleep(Duration::from_millis(500)); // observation interval, not synchronisation
    }
    assert!(
        stack.events("a").iter().all(|e| e.0 != "fenced"),
        "a fenced although it held its lease"
    );
    stack.lab.heal();
    let healed_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let before_isolation = write_at(&stack, "a", 20);
    assert!(
        poll(Duration::from_secs(30), || (count(&stack, "b")?
            == before_isolation.to_string())
        .then_some(()))
        .is_some(),
        "b did not catch up after the heal:\n{}",
        logs(&stack)
    );

    // b's agent has measured b streaming and caught up since (the lag gate reads it).
    let measured = poll(Duration::from_secs(30), || {
        let text = std::fs::read(stack.state("b").join("lag/orders@b.json")).ok()?;
        let lag: Value = serde_json::from_slice(&text).ok()?;
        let fresh = lag["at_ms"].as_u64().is_some_and(|t| t > healed_ms);
        (fresh && lag["streaming"] == true && lag["seconds"].as_f64() == Some(0.0)).then_some(())
    });
    assert!(
        measured.is_some(),
        "b's agent never measured b caught up:\n{}",
        logs(&stack)
    );

    // 2. a cut from everyone: a fences itself, then b is promoted.
    let cut_at = Instant::now();
    stack.lab.isolate("a");
    let promoted = poll(Duration::from_secs(60), || stack.is_primary("b")?.then_some(()));
    assert!(
        promoted.is_some(),
        "b was not promoted after a was isolated:\n{}",
        logs(&stack)
    );
    eprintln!("isolation → b promoted: {:.2} s", cut_at.elapsed().as_secs_f64());
    // b takes writes once its run promotes the standby — with the primary lease, which a's
    // renewals kept until its fence (b deciding to fail over may come first: it then waits).
    let fenced = first(&stack.events("a"), "fenced");
    let promoted = stack.step_ready_at("b", "promote ");
    let (Some(fenced), Some(promoted)) = (fenced, promoted) else {
        panic!(
            "a's fence ({fenced:?}) or b's promotion ({promoted:?}) not recorded:\n{}",
            logs(&stack)
        );
    };
    assert!(
        fenced < promoted,
        "a must fence ({fenced}) before b is promoted ({promoted}):\n{}",
        logs(&stack)
    );
    assert_eq!(
        count(&stack, "b").as_deref(),
        Some(before_isolation.to_string().as_str()),
        "every row acknowledged before the isolation is at b"
    );
    // The run switches the record after the promotion.
    let switched = poll(Duration::from_secs(30), || {
        (stack.www() == [b_addr(&stack)]).then_some(())
    });
    assert!(switched.is_some(), "the DNS record never led to b:\n{}", logs(&stack));
    let after_failover = write_at(&stack, "b", 10);
    // a's PostgreSQL is stopped: nothing answers inside a's namespace either.
    assert!(
        stack.sql("a", "a", "SELECT 1").is_err(),
        "a's PostgreSQL still answers after its fence"
    );

    // 3. Heal: a comes back as b's standby and receives b's rows.
    stack.lab.heal();
    let rejoined = poll(Duration::from_secs(90), || (!stack.is_primary("a")?).then_some(()));
    assert!(
        rejoined.is_some(),
        "a did not come back as a standby:\n{}",
        logs(&stack)
    );
    assert!(
        poll(Duration::from_secs(30), || (count(&stack, "a")?
            == after_failover.to_string())
        .then_some(()))
        .is_some(),
        "a did not receive b's rows as a standby:\n{}",
        logs(&stack)
    );
    assert_eq!(
        stack.is_primary("b"),
        Some(true),
        "b is still the primary:\n{}",
        logs(&stack)
    );
    let set_aside: Vec<PathBuf> = std::fs::read_dir(stack.root.join("a/services/db"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("data.aside-"))
        .collect();
    assert_eq!(set_aside.len(), 1, "a's old data is kept aside, not deleted");
    // A restarted agent at a checks the epoch before serving: a stays a standby.
    stack.kill_agent("a");
    stack.start_agent("a");
    let restarted = poll(Duration::from_secs(20), || {
        (stack.events("a").iter().filter(|e| e.0 == "agent_started").count() == 2).then_some(())
    });
    assert!(restarted.is_some(), "a's agent did not restart:\n{}", logs(&stack));
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            stack.is_primary("a"),
            Some(false),
            "a restarted as primary:\n{}",
            logs(&stack)
        );
        std::thread::sleep(Duration::from_millis(500)); // observation interval, not synchronisation
    }
    assert_eq!(stack.is_primary("b"), Some(true));
    // The run at b stored what it measured.
    let runs = std::fs::read_dir(stack.state("b").join("runs")).unwrap();
    let measures: Vec<PathBuf> = runs
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".measures.json"))
        .collect();
    assert_eq!(measures.len(), 1, "one run at b, with its measures");
    let m: Value = serde_json::from_slice(&std::fs::read(&measures[0]).unwrap()).unwrap();
    eprintln!("measures: {m}");
    assert!(
        m["detection_s"].as_f64().is_some_and(|d| d > 0.0 && d < 5.0),
        "{m}\n{}",
        logs(&stack)
    );

    // 4. Failback: a planned switch back to a, run by a person from the witness's node while
    //    the agents run: b stops cleanly, a has replayed b's last WAL, a is promoted; b comes
    //    back as a's standby. Nothing is lost.
    let failback = stack.resurgo("w", "operator", &["failback"]);
    assert!(
        failback.status.success(),
        "failback:\n{}{}\n{}",
        String::from_utf8_lossy(&failback.stdout),
        String::from_utf8_lossy(&failback.stderr),
        logs(&stack)
    );
    assert_eq!(stack.is_primary("a"), Some(true), "a is primary after the failback");
    assert_eq!(stack.www(), [stack.lab.addr("a")], "the DNS record leads back to a");
    assert_eq!(
        count(&stack, "a").as_deref(),
        Some(after_failover.to_string().as_str()),
        "every row written at b is at a after the failback"
    );
    let after_failback = write_at(&stack, "a", 5);
    let b_follows = poll(Duration::from_secs(90), || {
        (!stack.is_primary("b")? && count(&stack, "b")? == after_failback.to_string()).then_some(())
    });
    assert!(
        b_follows.is_some(),
        "b did not come back as a's standby:\n{}",
        logs(&stack)
    );
}

/// DESIGN §6.2 with the backup strategy, in the namespaces: a's base backup and WAL archive in
/// a's repository, shipped to b's by a's agent (its site daemon); a is cut from everyone; b's agent
/// declares it dead and fails over, restoring the newest point from b's own repository. Every
/// row whose WAL reached b is there, b accepts writes, and the DNS record leads to b.
#[test]
fn partition_backup_strategy_isolated_primary_restored_at_b() {
    let mut stack = Stack::start_with("bkp", "backup", Stack::FAST);
    let primary = poll(Duration::from_secs(120), || {
        stack.check_agents();
        stack.is_primary("a")?.then_some(())
    });
    assert!(primary.is_some(), "a never served:\n{}", stack.logs());
    stack
        .sql("w", "a", "CREATE TABLE orders (id bigint PRIMARY KEY)")
        .unwrap();
    // The repositories, then the first backup (base backup + archiving), from a's node.
    for args in [&["repo", "init"][..], &["backup", "orders", "--replicate"]] {
        let out = stack.resurgo("a", "a", args);
        assert!(
            out.status.success(),
            "{args:?}:\n{}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            stack.logs()
        );
    }
    // a's agent ships the archive to b's repository: the datasets homed at a are its site
    // daemon's to protect (no other process runs at a).
    for id in 1..=30 {
        stack
            .sql("w", "a", &format!("INSERT INTO orders VALUES ({id})"))
            .unwrap_or_else(|e| panic!("insert {id}: {e}\n{}", stack.logs()));
    }
    let segment = stack
        .sql("w", "a", "SELECT pg_walfile_name(pg_current_wal_lsn())")
        .unwrap();
    stack.sql("w", "a", "SELECT pg_switch_wal()").unwrap();
    let shipped = poll(Duration::from_secs(30), || {
        crate::util::holds_file(&stack.root.join("backups-b"), &segment).then_some(())
    });
    assert!(
        shipped.is_some(),
        "segment {segment} never reached b's repository:\n{}",
        stack.logs()
    );

    let cut_at = Instant::now();
    stack.lab.isolate("a");
    let restored = poll(Duration::from_secs(90), || stack.is_primary("b")?.then_some(()));
    assert!(restored.is_some(), "b was not restored and promoted:\n{}", stack.logs());
    eprintln!(
        "isolation → b restored and serving: {:.2} s",
        cut_at.elapsed().as_secs_f64()
    );
    assert_eq!(
        stack
            .sql("w", "b", "SELECT count(*), min(id), max(id) FROM orders")
            .as_deref(),
        Ok("30|1|30"),
        "every row whose WAL reached b is there"
    );
    stack.sql("w", "b", "INSERT INTO orders VALUES (31)").unwrap();
    let switched = poll(Duration::from_secs(30), || {
        (stack.www() == [stack.lab.addr("b")]).then_some(())
    });
    assert!(switched.is_some(), "the DNS record never led to b:\n{}", stack.logs());
    // b takes over when its run, holding the primary lease, assigns it: a has fenced by then.
    let fenced = first(&stack.events("a"), "fenced");
    let assigned = stack.step_ready_at("b", "assign ");
    assert!(
        matches!((fenced, assigned), (Some(f), Some(s)) if f < s),
        "a must fence ({fenced:?}) before b takes over ({assigned:?}):\n{}",
        stack.logs()
    );
}

/// An operator's host — the witness's namespace, its own state folder — on which site a's
/// folder is an empty mount point (a's volume is not mounted there), while a runs, its agent
/// renewing its lease in etcd from a's own namespace. From that host a is unknown, not empty,
/// and `failover --to b` never counts a as fenced from what it sees: it asks through etcd, and
/// a's own agent stops a's services and answers; only then is a's lease revoked and b
/// promoted. There is never a second primary.
#[test]
fn partition_failover_from_a_host_that_cannot_see_a_goes_through_as_own_agent() {
    let mut stack = Stack::start("unseen", Stack::FAST);
    stack.wait_ready();

    let out = stack.resurgo_without("w", "w", "a", &["status", "--json"]);
    assert_eq!(out.status.code(), Some(2), "an unknown site is not in sync");
    let status: Value = serde_json::from_slice(&out.stdout).expect("status --json");
    let a = status["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == "a")
        .unwrap();
    assert_eq!(a["state"], "unknown", "{a}");
    assert!(a["reason"].as_str().unwrap().contains("not set up here"), "{a}");

    let out = stack.resurgo_without("w", "w", "a", &["failover", "--to", "b"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the run goes through a's agent:\n{said}\n{}",
        stack.logs()
    );
    assert_eq!(stack.is_primary("b"), Some(true), "b is the primary:\n{}", stack.logs());
    // a's own agent stopped a's services before b was promoted.
    let handed = stack
        .events("a")
        .into_iter()
        .find(|e| e.0 == "fenced" && e.1.contains("handing site-a over to b at epoch 1"))
        .map(|e| e.2);
    let promoted = stack.step_ready_at("w", "promote ");
    assert!(
        matches!((handed, promoted), (Some(h), Some(p)) if h < p),
        "a's agent must hand over ({handed:?}) before b is promoted ({promoted:?}):\n{}",
        stack.logs()
    );
    let rejoined = poll(Duration::from_secs(90), || (!stack.is_primary("a")?).then_some(()));
    assert!(
        rejoined.is_some(),
        "a did not come back as a standby:\n{}",
        stack.logs()
    );
    assert_eq!(stack.is_primary("b"), Some(true), "still one primary, b");
}
