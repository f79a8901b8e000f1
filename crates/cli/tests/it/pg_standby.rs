//! A PostgreSQL warm standby through the `resurgo` binary (design §6.2, `strategy: standby`):
//! PostgreSQL is a resurgo service at site a, run as `nobody` through `setpriv`, on a data
//! directory relative to its service folder and listening on `$RESURGO_ADDRESS`. `resurgo
//! apply` starts it at a, then seeds its standby instance at b (`pg_basebackup -R` on a slot)
//! and starts that, which follows a by streaming. Rows written at a arrive at b; `resurgo
//! status` shows the standby's lag; the controller sees no drift and a caught-up standby.
//! Behind a proxy route, under pgbench, it fails over to b with pgbench's invariant intact.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::pg::{give, initdb_as_nobody, pg_bin, psql, stop_immediately};
use crate::util::{find_service, poll, signal, Env};

/// The end of a site's PostgreSQL log (the service's stderr), for failure messages.
fn service_log(env: &Env, site: &str) -> String {
    let path = env.state().join(format!("sites/{site}/services/db/logs/stderr.log"));
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "--- site {site}'s PostgreSQL ---\n{}",
        lines[lines.len().saturating_sub(30)..].join("\n")
    )
}

fn logs(env: &Env) -> String {
    format!("{}\n{}", service_log(env, "a"), service_log(env, "b"))
}

/// Both PostgreSQL servers (resurgo services), shut down immediately when dropped — also on
/// a panic — before `Env` kills whatever is left.
struct Servers(Vec<crate::util::Proc>);

impl Drop for Servers {
    fn drop(&mut self) {
        for server in &self.0 {
            if server.alive() {
                stop_immediately(server.pid);
            }
        }
    }
}

/// Creates `path` as an empty data directory of PostgreSQL's user, its parents below `root`
/// traversable by all.
fn pgdata_at(root: &Path, path: &Path) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    for dir in path.ancestors().skip(1) {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        if dir == root {
            break;
        }
    }
    std::fs::create_dir(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
    give(path);
    path.to_path_buf()
}

/// PostgreSQL at a as the resurgo service `db` (data in its service folder), its dataset
/// `orders` with `strategy: standby` at b (RPO objective 2 s), each site with its repository;
/// `extra` is appended to the spec (routes). Applied: both instances healthy.
struct StandbyPair {
    port: u16,
    addr_a: String,
    addr_b: String,
    servers: Servers,
}

fn standby_pair(env: &Env, extra: &str) -> StandbyPair {
    let root = env.path().to_path_buf();
    let (addr_a, addr_b) = (env.addr(1), env.addr(2));
    let port = crate::pg::free_port_on_both(&addr_a, &addr_b);

    // Site a's cluster, in the service's own folder (the dataset's `path` is relative to it).
    let pgdata = pgdata_at(&root, &env.state().join("sites/a/services/db/data"));
    // listen_addresses is not here: the same command runs at both sites and takes the site's
    // address from the environment. pg_hba: replication from site b (the seeding runs from
    // resurgo, streaming from b's server; on loopback either may come from any 127/8 address).
    initdb_as_nobody(
        &root,
        &pgdata,
        "\nunix_socket_directories = ''\nwal_level = replica\nmax_wal_senders = 10\n\
         max_replication_slots = 10\nhot_standby = on\nshared_buffers = 32MB\nmax_connections = 30\n\
         log_line_prefix = '%m [%p] '\n",
        &format!(
            "host all all 127.0.0.0/8 trust\nhost replication all {addr_b}/32 trust\nhost replication all 127.0.0.0/8 trust\n"
        ),
    );

    let backups = root.join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    let password = backups.join("password");
    std::fs::write(&password, "pg standby").unwrap();
    let repo = |site: &str| {
        format!(
            "    repository: {{ url: {}, password: {{ file: {} }} }}\n",
            backups.join(site).display(),
            password.display()
        )
    };
    // resurgo runs it as `nobody` (the service's `user:`) when the tests run as root.
    let user = crate::pg::pg_service_user("    ");
    let mut postgres: Vec<String> = Vec::new();
    postgres.extend([
        pg_bin("postgres").display().to_string(),
        "-D".into(),
        "data".into(),
        "-p".into(),
        port.to_string(),
    ]);
    let script = format!("exec {} -c listen_addresses=$RESURGO_ADDRESS", postgres.join(" "));
    env.write_spec(&format!(
        "apiVersion: resurgo.dev/v1alpha1\nsystem: pgstandby\nsites:\n  a:\n    provider: local\n    address: {addr_a}\n    capacity: {{ cpu: 4, memory: 4Gi }}\n{}  b:\n    provider: local\n    address: {addr_b}\n    capacity: {{ cpu: 4, memory: 4Gi }}\n{}\
         services:\n  db:\n    command: sh\n    args: [\"-c\", \"{script}\"]\n    ports: [{port}]\n    health:\n      tcp: {{ port: {port} }}\n      interval: 200ms\n      start_timeout: 120s\n    site: a\n    standby: [b]\n    stop_timeout: 5s\n{user}\
         datasets:\n  orders:\n    service: db\n    type: postgres\n    path: data\n    connection: \"host={addr_a} port={port} user=nobody dbname=postgres\"\n    strategy: standby\n    rpo: 2s\n{extra}",
        repo("a"),
        repo("b"),
    ));

    let init = env.run_shared(&["repo", "init"]);
    assert_eq!(init.code, 0, "repo init:\n{}{}", init.stdout, init.stderr);
    let plan = env.run_shared(&["plan"]);
    assert!(
        plan.stdout.contains("create   db (standby)"),
        "the plan names the standby instance:\n{}{}",
        plan.stdout,
        plan.stderr
    );
    let started = Instant::now();
    let apply = env.run_shared(&["apply"]);
    let mut servers = Servers(Vec::new());
    for site in ["a", "b"] {
        if let Some(pid) = healthy_pid(env, site) {
            servers.0.push(crate::util::Proc::of(pid));
        }
    }
    assert_eq!(apply.code, 0, "apply:\n{}{}\n{}", apply.stdout, apply.stderr, logs(env));
    eprintln!(
        "apply (primary, then standby seeded and started): {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(servers.0.len(), 2, "both instances healthy after apply:\n{}", logs(env));
    StandbyPair {
        port,
        addr_a,
        addr_b,
        servers,
    }
}

/// The pid of `db` at `site` while it is healthy.
fn healthy_pid(env: &Env, site: &str) -> Option<u32> {
    let status: Value = serde_json::from_str(&env.run_shared(&["status", "--json"]).stdout).ok()?;
    let db = find_service(&status, site, "db")?;
    db["pid"]
        .as_u64()
        .map(|p| p as u32)
        .filter(|_| db["health"] == "healthy")
}

#[test]
fn pg_standby_is_seeded_streams_and_reports_its_lag() {
    let mut env = Env::new(132);
    let StandbyPair {
        port,
        addr_a,
        addr_b,
        servers,
    } = standby_pair(&env, "");
    let seeded = env.state().join("sites/b/services/db/data");
    assert!(
        seeded.join("standby.signal").exists(),
        "b's data directory is a standby"
    );
    assert!(seeded.join("PG_VERSION").exists());

    let at = |addr: &str, q: &str| psql(addr, port, q);
    let sql_a = |q: &str| at(&addr_a, q).unwrap_or_else(|e| panic!("{q}: {e}\n{}", logs(&env)));
    let ready = poll(Duration::from_secs(60), || {
        at(&addr_b, "SELECT pg_is_in_recovery()").ok()
    });
    assert_eq!(
        ready.as_deref(),
        Some("t"),
        "b's server is in recovery:\n{}",
        logs(&env)
    );
    assert_eq!(sql_a("SELECT pg_is_in_recovery()"), "f");
    assert_eq!(
        sql_a("SELECT slot_name, active FROM pg_replication_slots"),
        "resurgo_orders_b|t",
        "b streams on its slot"
    );

    // Rows written at a arrive at b.
    sql_a("CREATE TABLE orders (id bigint PRIMARY KEY, note text NOT NULL)");
    for id in 1..=20 {
        sql_a(&format!("INSERT INTO orders VALUES ({id}, 'order {id}')"));
    }
    let written = Instant::now();
    let arrived = poll(Duration::from_secs(30), || {
        (at(&addr_b, "SELECT count(*) FROM orders").ok()? == "20").then_some(())
    });
    assert!(
        arrived.is_some(),
        "rows did not arrive at b within 30 s:\n{}",
        logs(&env)
    );
    eprintln!(
        "20 rows written at a visible at b after {:.3} s",
        written.elapsed().as_secs_f64()
    );

    // Status reports the standby's lag at b.
    let status = env.run_shared(&["status", "--json"]);
    assert_eq!(status.code, 0, "in sync:\n{}{}", status.stdout, status.stderr);
    let status = status.json();
    let b = find_service(&status, "b", "db").expect("db at b");
    assert_eq!(b["role"], "standby", "{b}");
    assert!(find_service(&status, "a", "db").unwrap().get("role").is_none());
    let orders = status["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dataset"] == "orders")
        .expect("orders in status");
    let lag = &orders["standby"][0];
    assert_eq!(lag["site"], "b", "{orders}");
    assert_eq!(lag["streaming"], true, "{orders}");
    let (bytes, seconds) = (lag["lag_bytes"].as_u64(), lag["lag_seconds"].as_f64());
    assert!(
        bytes.is_some() && seconds.is_some(),
        "lag in bytes and seconds: {orders}"
    );
    eprintln!(
        "status: standby at b {} bytes, {:.3} s behind",
        bytes.unwrap(),
        seconds.unwrap()
    );
    let human = env.run_shared(&["status"]);
    for line in human
        .stdout
        .lines()
        .filter(|l| l.contains("standby at") || l.contains("(standby)"))
    {
        eprintln!("status: {}", line.trim());
    }
    assert!(
        human.stdout.contains("standby at b") && human.stdout.contains("streaming"),
        "{}",
        human.stdout
    );

    // The controller: no drift, and the standby is judged caught up.
    env.start_controller(&[]);
    let caught_up = env.wait_event("StandbyCaughtUp", Duration::from_secs(30), |e| {
        e["kind"] == "standby_caught_up" && e["dataset"] == "orders" && e["site"] == "b"
    });
    eprintln!("controller: standby_caught_up: {}", caught_up["message"]);
    // A light load while the controller measures (every 2 s): each row is awaited at b.
    let load = Instant::now();
    let mut id = 100;
    let mut worst = Duration::ZERO;
    while load.elapsed() < Duration::from_secs(5) {
        id += 1;
        psql(&addr_a, port, &format!("INSERT INTO orders VALUES ({id}, 'light')")).unwrap();
        let t = Instant::now();
        let seen = poll(Duration::from_secs(10), || {
            (psql(&addr_b, port, &format!("SELECT count(*) FROM orders WHERE id = {id}")).ok()? == "1").then_some(())
        });
        assert!(seen.is_some(), "row {id} did not reach b within 10 s");
        worst = worst.max(t.elapsed());
    }
    eprintln!(
        "light load: {} rows, each visible at b within {:.3} s (worst)",
        id - 100,
        worst.as_secs_f64()
    );
    let status = env.stop_controller();
    assert!(status.success(), "controller exit: {status}");
    let events = env.events();
    let bad: Vec<&Value> = events
        .iter()
        .filter(|e| ["drift_seen", "standby_lagging", "apply_failed"].contains(&e["kind"].as_str().unwrap_or("")))
        .collect();
    assert!(
        bad.is_empty(),
        "no drift, no lagging standby: {bad:?}\n{}",
        env.dump_events()
    );
    drop(servers);
}

/// PostgreSQL behind a built-in proxy route, as a new user would run it: pgbench's load
/// through the route, a's server SIGKILLed, `resurgo failover --to b`. The run verifies the
/// route with the service's own check (a TCP check: a connection through the route that the
/// new primary holds open) and succeeds; pgbench runs through the route again, now to b; and
/// pgbench's own invariant holds at b — every balance equals the sum of its history deltas,
/// for accounts, tellers and branches.
#[test]
fn pg_behind_a_proxy_route_fails_over_under_pgbench_and_its_invariant_holds_at_b() {
    let mut env = Env::new(133);
    let route_addr = env.addr(0);
    let route_port = crate::pg::free_port(&route_addr);
    let pair = standby_pair(
        &env,
        &format!("routes:\n  sql:\n    service: db\n    type: proxy\n    listen: \"{route_addr}:{route_port}\"\n"),
    );
    // The controller runs the proxy route, and measures the standby's lag for the lag gate.
    env.start_controller(&[]);
    let pgbench = |args: &[&str]| {
        let mut cmd = std::process::Command::new(pg_bin("pgbench"));
        cmd.args(["-h", &route_addr, "-p", &route_port.to_string(), "-U", "nobody"])
            .args(args)
            .arg("postgres")
            .stdin(std::process::Stdio::null());
        cmd
    };
    let through_route = poll(Duration::from_secs(30), || {
        psql(&route_addr, route_port, "SELECT 1").ok()
    });
    assert!(through_route.is_some(), "the route never led to a:\n{}", logs(&env));
    let init = pgbench(&["-i", "-s", "2", "-q"]).output().unwrap();
    assert!(
        init.status.success(),
        "pgbench -i: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let mut load = pgbench(&["-n", "-c", "4", "-j", "2", "-T", "120"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Under load, the controller has measured the standby caught up (the lag gate reads it).
    env.wait_event("standby measured caught up", Duration::from_secs(30), |e| {
        e["kind"] == "standby_caught_up" && e["dataset"] == "orders"
    });
    let busy = poll(Duration::from_secs(30), || {
        let n: u64 = psql(&pair.addr_a, pair.port, "SELECT count(*) FROM pgbench_history")
            .ok()?
            .parse()
            .ok()?;
        (n > 200).then_some(n)
    });
    assert!(busy.is_some(), "pgbench made no progress through the route");

    // a's server dies under load.
    signal(pair.servers.0[0].pid, Signal::SIGKILL);
    let failover = env.run_shared(&["failover", "--to", "b"]);
    let _ = load.kill();
    let load = load.wait_with_output().unwrap();
    assert_eq!(
        failover.code,
        0,
        "failover:\n{}{}\npgbench: {}\n{}",
        failover.stdout,
        failover.stderr,
        String::from_utf8_lossy(&load.stderr),
        logs(&env)
    );

    // The route leads to b now, and b takes pgbench's writes.
    let after = pgbench(&["-n", "-c", "2", "-T", "3"]).output().unwrap();
    assert!(
        after.status.success(),
        "pgbench through the route after the failover: {}{}",
        String::from_utf8_lossy(&after.stdout),
        String::from_utf8_lossy(&after.stderr)
    );
    let at_b = |q: &str| psql(&pair.addr_b, pair.port, q).unwrap_or_else(|e| panic!("{q}: {e}\n{}", logs(&env)));
    assert_eq!(at_b("SELECT pg_is_in_recovery()"), "f", "b is the primary");
    for (table, balance) in [
        ("pgbench_accounts", "abalance"),
        ("pgbench_tellers", "tbalance"),
        ("pgbench_branches", "bbalance"),
    ] {
        let holds = at_b(&format!(
            "SELECT (SELECT coalesce(sum({balance}), 0) FROM {table}) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history)"
        ));
        assert_eq!(holds, "t", "sum of {table}.{balance} = sum of history deltas at b");
    }
    let history: u64 = at_b("SELECT count(*) FROM pgbench_history").parse().unwrap();
    eprintln!(
        "pgbench: {} transactions before the loss, {history} in b's history after the failover and more load",
        busy.unwrap()
    );
    drop(pair.servers);
}
