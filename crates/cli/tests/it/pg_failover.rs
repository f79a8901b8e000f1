//! DESIGN §6.2 with the backup strategy, through `resurgo failover`: PostgreSQL at site a (a
//! resurgo service run as `nobody`), base backup + continuous WAL archiving into a's
//! repository, replicated to b; a write load with acknowledged ids and times; site a lost — its
//! server SIGKILLed, its repository gone —; `resurgo failover --to b` restores the newest point
//! from b's own repository, starts PostgreSQL at b and waits until it accepts writes. At b every
//! write acknowledged before the last replication is there, the ids form an unbroken prefix
//! from 1, and writes succeed.
//!
//! [`PgPair`] and [`Canary`] are also used by the PostgreSQL failover benchmark
//! (`benches/pg_failover.rs`).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::pg::{give, initdb_as_nobody, pg_bin, psql, stop_immediately};
use crate::util::{alive, find_service, holds_file, poll, Env, Out};

/// Two loopback sites, a and b, each with its own repository; PostgreSQL at a as the resurgo
/// service `db` (data in its service folder, `path: data`), the dataset `orders` with the
/// backup strategy, archived and replicated to b. Site a's server is shut down when dropped;
/// `Env` kills whatever else is left.
pub(crate) struct PgPair {
    pub env: Env,
    pub root: PathBuf,
    pub addr_a: String,
    pub addr_b: String,
    pub port: u16,
    pub backups: PathBuf,
    /// Site a's postmaster.
    pub pid_a: u32,
    /// The same, as first seen: what `Drop` may stop.
    proc_a: Option<crate::util::Proc>,
}

impl Drop for PgPair {
    fn drop(&mut self) {
        if let Some(a) = self.proc_a.filter(crate::util::Proc::alive) {
            stop_immediately(a.pid);
        }
    }
}

impl PgPair {
    /// Builds a's cluster and the spec (`rpo` is the dataset's objective: archive_timeout is
    /// half of it), applies, creates `orders (id, at)`, initialises both repositories, and
    /// takes the first base backup (which turns archiving on), replicated to b.
    pub fn start(block: u8, rpo: &str) -> PgPair {
        let env = Env::new(block);
        let root = env.path().to_path_buf();
        // PostgreSQL's user reaches the state folder, the repositories and its data through it.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (addr_a, addr_b) = (env.addr(1), env.addr(2));
        let port = crate::pg::free_port_on_both(&addr_a, &addr_b);

        // a's cluster in its service folder (the dataset's `path` is relative to it); b gets
        // the same layout from the failover's restore.
        let pgdata = root.join("a/services/db/data");
        for dir in ["a", "a/services", "a/services/db"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
            std::fs::set_permissions(root.join(dir), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::create_dir(&pgdata).unwrap();
        std::fs::set_permissions(&pgdata, std::fs::Permissions::from_mode(0o700)).unwrap();
        give(&pgdata);
        initdb_as_nobody(
            &root,
            &pgdata,
            "\nunix_socket_directories = ''\narchive_mode = on\nwal_level = replica\n\
             shared_buffers = 32MB\nmax_connections = 30\nlog_line_prefix = '%m [%p] '\n",
            "host all all 127.0.0.0/8 trust\nhost replication all 127.0.0.0/8 trust\n",
        );

        let backups = root.join("backups");
        std::fs::create_dir_all(&backups).unwrap();
        let password = backups.join("password");
        std::fs::write(&password, "pg failover").unwrap();
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
        give(&password);
        let site = |name: &str, addr: &str| {
            format!(
                "  {name}: {{ provider: local, address: {addr}, capacity: {{ cpu: 4, memory: 4Gi }}, root: {}, \
                 repository: {{ url: {}, password: {{ file: {} }} }} }}\n",
                root.join(name).display(),
                backups.join(name).display(),
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
            "apiVersion: resurgo.dev/v1alpha1\nsystem: pgfo\nsites:\n{}{}\
             services:\n  db:\n    command: sh\n    args: [\"-c\", \"{script}\"]\n    ports: [{port}]\n\
             \x20   health: {{ tcp: {{ port: {port} }}, interval: 200ms, start_timeout: 120s }}\n\
             \x20   site: a\n    standby: [b]\n    stop_timeout: 5s\n{user}\
             datasets:\n  orders:\n    service: db\n    type: postgres\n    path: data\n\
             \x20   connection: \"host={addr_a} port={port} user=nobody dbname=postgres\"\n\
             \x20   rpo: {rpo}\n    replicate_to: [b]\n",
            site("a", &addr_a),
            site("b", &addr_b),
        ));
        let mut pair = PgPair {
            env,
            root,
            addr_a,
            addr_b,
            port,
            backups,
            pid_a: 0,
            proc_a: None,
        };
        let init = pair.resurgo(&["repo", "init", "--json"]);
        assert_eq!(init.code, 0, "repo init:\n{}{}", init.stdout, init.stderr);
        let apply = pair.resurgo(&["apply"]);
        assert_eq!(
            apply.code,
            0,
            "apply:\n{}{}\n{}",
            apply.stdout,
            apply.stderr,
            pair.log("a")
        );
        let healthy = || {
            let status: Value = serde_json::from_str(&pair.resurgo(&["status", "--json"]).stdout).ok()?;
            let db = find_service(&status, "a", "db")?;
            db["pid"]
                .as_u64()
                .map(|p| p as u32)
                .filter(|_| db["health"] == "healthy")
        };
        pair.pid_a = poll(Duration::from_secs(120), healthy)
            .unwrap_or_else(|| panic!("site a's PostgreSQL is not healthy:\n{}", pair.log("a")));
        pair.proc_a = Some(crate::util::Proc::of(pair.pid_a));
        let ready = poll(Duration::from_secs(120), || pair.sql("a", "SELECT 1").ok());
        assert!(
            ready.is_some(),
            "site a's PostgreSQL accepts no queries:\n{}",
            pair.log("a")
        );
        pair.sql(
            "a",
            "CREATE TABLE orders (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())",
        )
        .unwrap();

        // The first backup sets up archiving (ALTER SYSTEM + reload) and takes a base backup.
        let backup = pair.resurgo(&["backup", "orders", "--replicate", "--json"]);
        assert_eq!(
            backup.code,
            0,
            "backup:\n{}{}\n{}",
            backup.stdout,
            backup.stderr,
            pair.log("a")
        );
        let timeout = format!(
            "{}s",
            resurgo_spec::units::Duration::parse(rpo).unwrap().0.as_secs() / 2
        );
        let settled = poll(Duration::from_secs(30), || {
            (pair.sql("a", "SHOW archive_timeout").ok()? == timeout).then_some(())
        });
        assert!(settled.is_some(), "rpo {rpo} gives archive_timeout {timeout}");
        pair
    }

    /// About `mib` MiB of rows in a new table `big` at a, 1 KiB of text each (the benchmarks'
    /// dataset); returns the rows and the database's size in bytes.
    #[allow(dead_code)] // used by the benchmarks (`benches/drill.rs`, `benches/workspace.rs`) only
    pub fn fill(&self, mib: f64) -> (u64, f64) {
        let rows = (mib * 1024.0) as u64;
        self.sql("a", "CREATE TABLE big (id bigint PRIMARY KEY, body text NOT NULL)")
            .unwrap();
        let chunk = 100_000;
        let mut at = 0;
        while at < rows {
            let to = (at + chunk).min(rows);
            self.sql(
                "a",
                &format!(
                    "INSERT INTO big SELECT g, repeat(md5(g::text), 32) FROM generate_series({}, {to}) g",
                    at + 1
                ),
            )
            .unwrap();
            at = to;
        }
        let size = self.sql("a", "SELECT pg_database_size('postgres')").unwrap();
        (rows, size.parse().unwrap_or(0.0))
    }

    /// `resurgo ARGS` with the shared umask (see [`Env::run_shared`]).
    pub fn resurgo(&self, args: &[&str]) -> Out {
        self.env.run_shared(args)
    }

    pub fn addr(&self, site: &str) -> &str {
        if site == "a" {
            &self.addr_a
        } else {
            &self.addr_b
        }
    }

    /// One statement at `site`'s server.
    pub fn sql(&self, site: &str, q: &str) -> Result<String, String> {
        psql(self.addr(site), self.port, q)
    }

    /// The canary's statement runner: `psql` to whichever of a and b accepts writes.
    pub fn writer(&self) -> impl Fn(&str) -> Result<String, String> + Send + 'static {
        let conninfo = format!(
            "host={a},{b} port={p},{p} user=nobody dbname=postgres target_session_attrs=read-write connect_timeout=2",
            a = self.addr_a,
            b = self.addr_b,
            p = self.port
        );
        move |q: &str| crate::pg::run_psql(Command::new(pg_bin("psql")), &conninfo, q)
    }

    /// Waits until a has archived the WAL segment being written now (archive_timeout closes it).
    pub fn wait_archived(&self, timeout: Duration) {
        let segment = self.sql("a", "SELECT pg_walfile_name(pg_current_wal_lsn())").unwrap();
        let archived = poll(timeout, || {
            let last = self
                .sql("a", "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
                .ok()?;
            (last.len() == 24 && last >= segment).then_some(())
        });
        assert!(
            archived.is_some(),
            "segment {segment} not archived within {timeout:?}: {:?}\n{}",
            self.sql("a", "SELECT * FROM pg_stat_archiver"),
            self.log("a")
        );
    }

    /// Site a is lost: its server SIGKILLed (nothing more is written or archived), its
    /// repository made unreachable. Returns when the server is gone.
    pub fn lose_a(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid_a as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        std::fs::rename(self.backups.join("a"), self.backups.join("a-lost")).unwrap();
        assert!(
            poll(Duration::from_secs(10), || (!alive(self.pid_a)).then_some(())).is_some(),
            "a's postmaster survived SIGKILL"
        );
    }

    /// The ids in `orders` at `site`, ascending.
    pub fn ids(&self, site: &str) -> Vec<i64> {
        self.sql(site, "SELECT id FROM orders ORDER BY id")
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log(site)))
            .lines()
            .map(|l| l.parse().unwrap())
            .collect()
    }

    /// The end of `site`'s PostgreSQL log (the service's stderr), for failure messages.
    pub fn log(&self, site: &str) -> String {
        let text =
            std::fs::read_to_string(self.root.join(format!("{site}/services/db/logs/stderr.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- {site}'s PostgreSQL ---\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }
}

/// One write the canary saw acknowledged: its id, when, and which server (address).
#[derive(Clone, Debug)]
pub(crate) struct Ack {
    pub id: i64,
    pub at: SystemTime,
    pub server: String,
}

/// A client writing one row to `orders` every `every`, to whichever server its runner reaches
/// (the runner picks the primary: `target_session_attrs=read-write`). Ids go up by one per
/// acknowledged write only; a write that failed is retried with the same id (`ON CONFLICT DO
/// NOTHING`: it may have committed without the acknowledgement arriving), so the rows form an
/// unbroken run from 1 unless acknowledged writes are lost.
pub(crate) struct Canary {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Canary {
    pub fn start(every: Duration, run: impl Fn(&str) -> Result<String, String> + Send + 'static) -> Canary {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
        let thread = {
            let (stop, acks) = (stop.clone(), acks.clone());
            std::thread::spawn(move || {
                let mut next = 1;
                while !stop.load(Ordering::SeqCst) {
                    let tick = Instant::now();
                    let q = format!(
                        "INSERT INTO orders (id) VALUES ({next}) ON CONFLICT DO NOTHING; SELECT host(inet_server_addr())"
                    );
                    if let Ok(server) = run(&q) {
                        acks.lock().unwrap().push(Ack {
                            id: next,
                            at: SystemTime::now(),
                            server,
                        });
                        next += 1;
                    }
                    // Pacing the load, not waiting for anything.
                    std::thread::sleep(every.saturating_sub(tick.elapsed()));
                }
            })
        };
        Canary {
            stop,
            acks,
            thread: Some(thread),
        }
    }

    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap().clone()
    }

    /// The first write acknowledged by `server` at or after `since`.
    pub fn first_ack_at(&self, server: &str, since: SystemTime) -> Option<Ack> {
        self.acks().into_iter().find(|a| a.server == server && a.at >= since)
    }

    pub fn stop(mut self) -> Vec<Ack> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.acks()
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// What the failover lost, from the canary's view: the writes acknowledged by `old` (the lost
/// primary) missing from `present` (the ids at the new primary), and the RPO as time — the last
/// acknowledged write at `old` minus the newest of those writes present (0 if all are).
pub(crate) fn loss(acks: &[Ack], old: &str, present: &[i64]) -> (usize, f64) {
    let at_old: Vec<&Ack> = acks.iter().filter(|a| a.server == old).collect();
    let present: std::collections::HashSet<i64> = present.iter().copied().collect();
    let lost: Vec<&&Ack> = at_old.iter().filter(|a| !present.contains(&a.id)).collect();
    let (Some(last), false) = (at_old.last(), lost.is_empty()) else {
        return (0, 0.0);
    };
    let newest_present = at_old.iter().filter(|a| present.contains(&a.id)).map(|a| a.at).max();
    let rpo = match newest_present {
        Some(t) => last.at.duration_since(t).unwrap_or_default().as_secs_f64(),
        None => last.at.duration_since(at_old[0].at).unwrap_or_default().as_secs_f64(),
    };
    (lost.len(), rpo)
}

/// The run's measures as `resurgo runs --json` shows them (the newest run).
pub(crate) fn newest_run(runs: &Value) -> &Value {
    runs["runs"]
        .as_array()
        .and_then(|r| r.last())
        .unwrap_or_else(|| panic!("no run in {runs}"))
}

/// A run's steps with how long each took: `fence a 0.12s, …`.
pub(crate) fn step_times(run: &Value) -> String {
    let steps = run["steps"].as_array().map(Vec::as_slice).unwrap_or_default();
    steps
        .iter()
        .map(|s| {
            format!(
                "{} {:.2}s",
                s["name"].as_str().unwrap_or("?"),
                s["millis"].as_f64().unwrap_or(0.0) / 1000.0
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn pg_backup_strategy_site_lost_failover_restores_newest_point_at_b() {
    let pair = PgPair::start(133, "2s");
    let canary = Canary::start(Duration::from_millis(20), pair.writer());

    // The load runs while a's WAL is archived and replicated to b, twice; `covered` is the
    // last write acknowledged before a segment a has archived, before each replication.
    let mut covered = 0;
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(700)); // pacing the load
        let mark = canary.acks().last().map_or(0, |a| a.id);
        pair.wait_archived(Duration::from_secs(60));
        let replicate = pair.resurgo(&["replicate", "orders", "--json"]);
        assert_eq!(
            replicate.code,
            0,
            "replicate:\n{}{}\n{}",
            replicate.stdout,
            replicate.stderr,
            pair.log("a")
        );
        covered = mark;
    }
    assert!(covered >= 10, "the load wrote too little: {covered}");
    std::thread::sleep(Duration::from_millis(500)); // more writes, after the last replication

    // Site a is lost, while the canary writes.
    let lost_at = SystemTime::now();
    pair.lose_a();
    let before_loss: Vec<Ack> = canary.acks();
    let last_at_a = before_loss.last().unwrap().id;
    let replicate = pair.resurgo(&["replicate", "orders"]);
    assert_ne!(replicate.code, 0, "replicate with a lost:\n{}", replicate.stdout);

    let started = Instant::now();
    let failover = pair.resurgo(&["failover", "--to", "b", "--json"]);
    let took = started.elapsed();
    assert_eq!(
        failover.code,
        0,
        "failover:\n{}{}\n{}",
        failover.stdout,
        failover.stderr,
        pair.log("b")
    );

    // The canary's writes now land at b.
    let first_at_b = poll(Duration::from_secs(30), || canary.first_ack_at(&pair.addr_b, lost_at));
    let acks = canary.stop();
    let first_at_b =
        first_at_b.unwrap_or_else(|| panic!("no write acknowledged at b after the failover:\n{}", pair.log("b")));
    let ids = pair.ids("b");
    // Every write acknowledged before the last replication is at b…
    for id in 1..=covered {
        assert!(
            ids.binary_search(&id).is_ok(),
            "write {id}, acknowledged before the last replication, is missing at b"
        );
    }
    // …the rows form an unbroken run from 1 up to what a had written (WAL replays a prefix),
    // then the canary's writes at b follow on.
    let restored: Vec<i64> = ids.iter().copied().filter(|id| *id < first_at_b.id).collect();
    assert_eq!(
        restored,
        (1..=restored.len() as i64).collect::<Vec<_>>(),
        "the rows restored at b are not an unbroken run from 1"
    );
    assert!(restored.len() as i64 <= last_at_a + 1, "b has writes a never made");
    let (lost, rpo) = loss(&acks, &pair.addr_a, &ids);
    eprintln!(
        "failover --to b: {:.2} s; first write at b {:.2} s after the loss; acknowledged at a: {last_at_a}, \
         restored: {}, covered by the last replication: {covered}, lost: {lost} ({rpo:.2} s of writes)",
        took.as_secs_f64(),
        first_at_b.at.duration_since(lost_at).unwrap_or_default().as_secs_f64(),
        restored.len()
    );
    // Writes succeed at b, directly too.
    let next = ids.last().unwrap() + 1;
    pair.sql("b", &format!("INSERT INTO orders (id) VALUES ({next})"))
        .unwrap_or_else(|e| panic!("write at b: {e}\n{}", pair.log("b")));

    // b's server archives into b's repository now (it was restored as the primary).
    let archive_command = pair.sql("b", "SHOW archive_command").unwrap();
    assert!(
        archive_command.contains(" wal push ") && archive_command.contains("--site b"),
        "{archive_command}"
    );
    pair.sql("b", "SELECT pg_switch_wal()").unwrap();
    let archived_at_b = poll(Duration::from_secs(60), || {
        let row = pair
            .sql(
                "b",
                "SELECT coalesce(last_archived_wal, ''), failed_count FROM pg_stat_archiver",
            )
            .ok()?;
        (!row.starts_with('|')).then_some(row)
    });
    assert!(
        archived_at_b.is_some(),
        "b's server archives nothing: {:?}\n{}",
        pair.sql("b", "SELECT * FROM pg_stat_archiver"),
        pair.log("b")
    );

    // The run is in the history, finished, with what it measured.
    let runs = pair.resurgo(&["runs", "--json"]);
    assert_eq!(runs.code, 0, "runs: {}", runs.stderr);
    let runs = runs.json();
    let run = newest_run(&runs);
    eprintln!("{}", step_times(run));
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(run["outcome"]["status"], "succeeded", "{run}");
    let rto = run["measures"]["rto_s"].as_f64();
    assert!(rto.is_some_and(|s| s > 0.0 && s <= took.as_secs_f64() + 1.0), "{run}");
}

/// The controller ships the WAL archived at a to b's repository every archive timeout (half
/// the RPO objective), without a backup or a `resurgo replicate`: what bounds the backup
/// strategy's RPO to seconds.
#[test]
fn controller_ships_archived_wal_to_the_replica_site() {
    let mut pair = PgPair::start(135, "2s");
    pair.env.start_controller(&[]);
    for id in 1..=20 {
        pair.sql("a", &format!("INSERT INTO orders (id) VALUES ({id})"))
            .unwrap();
    }
    let segment = pair.sql("a", "SELECT pg_walfile_name(pg_current_wal_lsn())").unwrap();
    pair.wait_archived(Duration::from_secs(30));
    let archived_at = Instant::now();
    let at_b = pair.backups.join("b");
    let shipped = poll(Duration::from_secs(30), || holds_file(&at_b, &segment).then_some(()));
    assert!(
        shipped.is_some(),
        "segment {segment} never reached b's repository; events:\n{}",
        pair.env.dump_events()
    );
    eprintln!(
        "segment {segment} at b {:.2} s after a archived it",
        archived_at.elapsed().as_secs_f64()
    );
    pair.env.stop_controller();
}
