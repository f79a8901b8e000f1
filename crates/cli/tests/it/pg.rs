//! PostgreSQL through the `resurgo` binary (design §6.2, backup strategy): PostgreSQL itself
//! is a resurgo service at site a, run as `nobody` through `setpriv`; `resurgo backup` turns
//! WAL archiving on (`resurgo wal push` into a's repository) and takes a base backup; a write
//! load; `resurgo replicate` to b; site a — server and repository — is lost; `resurgo
//! restore --site b` (whose `resurgo wal fetch` reads b's repository alone) to the newest
//! point and to an earlier time.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::util::{alive, poll, Env, BIN};

/// The user PostgreSQL runs as (it refuses root): `nobody` when the tests run as root.
pub(crate) fn pg_user() -> Option<(u32, u32)> {
    if nix::unistd::geteuid().is_root() {
        let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
        let f: Vec<&str> = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f[0] == "nobody")
            .expect("user `nobody` exists");
        Some((f[2].parse().unwrap(), f[3].parse().unwrap()))
    } else {
        None
    }
}

/// The `user:` line of a PostgreSQL service (at `indent`), naming [`pg_user`] when the tests
/// run as root: resurgo runs the server as that user and gives it its folder and data.
pub(crate) fn pg_service_user(indent: &str) -> String {
    if pg_user().is_some() {
        format!("{indent}user: nobody\n")
    } else {
        String::new()
    }
}

/// The words that run a program as [`pg_user`]: `setpriv …` as root, nothing otherwise.
pub(crate) fn as_pg_user() -> Vec<String> {
    let Some((uid, gid)) = pg_user() else {
        return Vec::new();
    };
    let setpriv = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("setpriv"))
        .find(|p| p.is_file())
        .expect("`setpriv` (util-linux) is needed to run PostgreSQL as nobody, and is not on PATH");
    vec![
        setpriv.display().to_string(),
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--clear-groups".into(),
        "--".into(),
    ]
}

pub(crate) fn command(words: &[String]) -> Command {
    let mut cmd = Command::new(&words[0]);
    cmd.args(&words[1..]).stdin(Stdio::null());
    cmd
}

/// Gives `path` to [`pg_user`].
pub(crate) fn give(path: &Path) {
    if let Some((uid, gid)) = pg_user() {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
}

/// One of PostgreSQL's programs, found as the vault finds them: `pg_config --bindir`, else
/// the newest /usr/lib/postgresql/*/bin.
pub(crate) fn pg_bin(name: &str) -> PathBuf {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    debian.sort();
    from_pg_config
        .into_iter()
        .chain(debian.into_iter().rev().map(|(_, bin)| bin))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("PostgreSQL's `{name}` is needed and was found neither by `pg_config --bindir` nor in /usr/lib/postgresql/*/bin")
        })
}

/// A free port on `addr`.
pub(crate) fn free_port(addr: &str) -> u16 {
    std::net::TcpListener::bind((addr, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One statement through `psql` (autocommit): its rows, `|`-separated.
pub(crate) fn psql(addr: &str, port: u16, sql: &str) -> Result<String, String> {
    let conninfo = format!("host={addr} port={port} user=nobody dbname=postgres connect_timeout=5");
    run_psql(Command::new(pg_bin("psql")), &conninfo, sql)
}

/// Runs a `--json` command that must succeed; its `done` lines.
fn done_steps(env: &Env, args: &[&str]) -> Vec<Value> {
    let out = env.run_shared(args);
    assert_eq!(
        out.code,
        0,
        "resurgo {args:?}:\n{}{}\n--- site a's PostgreSQL ---\n{}",
        out.stdout,
        out.stderr,
        service_log(env)
    );
    out.stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|l| l["event"] == "done")
        .collect()
}

/// The end of site a's PostgreSQL log (the service's stderr), for failure messages.
fn service_log(env: &Env) -> String {
    let text = std::fs::read_to_string(env.state().join("sites/a/services/db/logs/stderr.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A restored PostgreSQL, a plain child process in its own process group; shut down
/// (immediately) when dropped.
struct Server {
    child: Child,
    addr: String,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn start(pgdata: &Path, addr: &str, log: PathBuf) -> Server {
        let port = free_port(addr);
        let mut words = as_pg_user();
        words.push(pg_bin("postgres").display().to_string());
        let file = std::fs::File::create(&log).unwrap();
        let child = command(&words)
            .arg("-D")
            .arg(pgdata)
            .args(["-p", &port.to_string(), "-c", &format!("listen_addresses={addr}")])
            .args(["-c", "unix_socket_directories="])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .process_group(0)
            .spawn()
            .expect("start postgres");
        Server {
            child,
            addr: addr.to_string(),
            port,
            log,
        }
    }

    /// Waits until recovery is over and the server accepts writes.
    fn wait_until_primary(&mut self) -> Duration {
        let started = Instant::now();
        let up = poll(Duration::from_secs(300), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("restored PostgreSQL exited ({status}):\n{}", self.log());
            }
            psql(&self.addr, self.port, "SELECT pg_is_in_recovery()")
                .ok()
                .filter(|r| r == "f")
        });
        assert!(
            up.is_some(),
            "restored PostgreSQL did not finish recovery within 300 s:\n{}",
            self.log()
        );
        started.elapsed()
    }

    fn ids(&self) -> Vec<i64> {
        psql(&self.addr, self.port, "SELECT id FROM orders ORDER BY id")
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log()))
            .lines()
            .map(|l| l.parse().unwrap())
            .collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        stop_immediately(self.child.id());
        let _ = self.child.wait();
    }
}

/// `pg_ctl stop -m immediate`: SIGQUIT to the postmaster, which ends its children and exits
/// at once (nothing more is written or archived); SIGKILL to its process group if it lingers.
pub(crate) fn stop_immediately(pid: u32) {
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGQUIT);
    if poll(Duration::from_secs(20), || (!alive(pid)).then_some(())).is_none() {
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

/// Site a's PostgreSQL (a resurgo service), shut down immediately when dropped, before `Env`
/// kills whatever is left.
struct Primary(crate::util::Proc);

impl Drop for Primary {
    fn drop(&mut self) {
        if self.0.alive() {
            stop_immediately(self.0.pid);
        }
    }
}

/// A moment as RFC 3339 UTC with microseconds.
fn rfc3339(t: SystemTime) -> String {
    resurgo_spec::units::format_rfc3339(t, 6)
}

/// Creates an empty data directory for [`pg_user`] under `parent`.
fn pgdata_in(parent: &Path) -> PathBuf {
    std::fs::create_dir_all(parent).unwrap();
    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pgdata = parent.join("data");
    std::fs::create_dir(&pgdata).unwrap();
    std::fs::set_permissions(&pgdata, std::fs::Permissions::from_mode(0o700)).unwrap();
    give(&pgdata);
    pgdata
}

#[test]
fn pg_physical_backup_replicated_and_restored_to_newest_and_earlier_time() {
    let env = Env::new(131);
    let root = env.path().to_path_buf();
    // PostgreSQL's user reaches the state folder, the repositories and the binary through it.
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (addr_a, addr_b) = (env.addr(1), env.addr(2));

    // Site a's cluster: archiving on (no command yet: `resurgo backup` sets it), on a's address.
    let pgdata = pgdata_in(&root.join("pg-a"));
    let port = free_port(&addr_a);
    initdb_as_nobody(
        &root,
        &pgdata,
        &format!(
            "\nlisten_addresses = '{addr_a}'\nunix_socket_directories = ''\narchive_mode = on\n\
             wal_level = replica\nshared_buffers = 32MB\nmax_connections = 30\nlog_line_prefix = '%m [%p] '\n"
        ),
        "host all all 127.0.0.0/8 trust\nhost replication all 127.0.0.0/8 trust\n",
    );

    // The repositories' password, readable by PostgreSQL's user (for `resurgo wal …`) alone;
    // named relative to where resurgo runs, not where PostgreSQL runs `resurgo wal …`.
    let backups = root.join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    let password = backups.join("password");
    std::fs::write(&password, "pg end to end").unwrap();
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
    give(&password);
    let repo = |site: &str| {
        format!(
            "    repository: {{ url: {}, password: {{ file: {} }} }}\n",
            backups.join(site).display(),
            password.strip_prefix(&root).unwrap().display()
        )
    };
    let postgres = [
        pg_bin("postgres").display().to_string(),
        "-D".into(),
        pgdata.display().to_string(),
        "-p".into(),
        port.to_string(),
    ];
    let (program, args) = postgres.split_first().unwrap();
    let args: Vec<String> = args.iter().map(|a| format!("\"{a}\"")).collect();
    env.write_spec(&format!(
        "apiVersion: resurgo.dev/v1alpha1\nsystem: pg\nsites:\n  a:\n    provider: local\n    address: {addr_a}\n    capacity: {{ cpu: 4, memory: 4Gi }}\n{}  b:\n    provider: local\n    address: {addr_b}\n    capacity: {{ cpu: 4, memory: 4Gi }}\n{}\
         services:\n  db:\n    command: {program}\n    args: [{}]\n    ports: [{port}]\n    health:\n      tcp: {{ port: {port} }}\n      interval: 200ms\n      start_timeout: 120s\n    site: a\n    standby: [b]\n    stop_timeout: 5s\n{}\
         datasets:\n  orders:\n    service: db\n    type: postgres\n    connection: \"host={addr_a} port={port} user=nobody dbname=postgres\"\n    rpo: 4s\n    replicate_to: [b]\n    check: {{ query: \"SELECT count(*) FROM orders\", expect: \"45\" }}\n",
        repo("a"),
        repo("b"),
        args.join(", "),
        pg_service_user("    ")
    ));

    let apply = env.run_shared(&["apply"]);
    assert_eq!(
        apply.code,
        0,
        "apply:\n{}{}\n{}",
        apply.stdout,
        apply.stderr,
        service_log(&env)
    );
    let healthy = || {
        let status: Value = serde_json::from_str(&env.run_shared(&["status", "--json"]).stdout).ok()?;
        let db = crate::util::find_service(&status, "a", "db")?;
        let pid = db["pid"].as_u64().map(|p| p as u32);
        pid.filter(|_| db["health"] == "healthy")
    };
    let pid = poll(Duration::from_secs(120), healthy)
        .unwrap_or_else(|| panic!("site a's PostgreSQL is not healthy:\n{}", service_log(&env)));
    let primary = Primary(crate::util::Proc::of(pid));
    let sql = |q: &str| psql(&addr_a, port, q).unwrap_or_else(|e| panic!("{q}: {e}\n{}", service_log(&env)));
    let ready = poll(Duration::from_secs(120), || psql(&addr_a, port, "SELECT 1").ok());
    assert!(
        ready.is_some(),
        "site a's PostgreSQL accepts no queries:\n{}",
        service_log(&env)
    );
    sql("CREATE TABLE orders (id bigint PRIMARY KEY, note text NOT NULL, \
         at timestamptz NOT NULL DEFAULT clock_timestamp())");

    // Writes one row in autocommit; returns when it was acknowledged.
    let mut acked: Vec<(i64, SystemTime)> = Vec::new();
    let write = |acked: &mut Vec<(i64, SystemTime)>| {
        let id = acked.len() as i64 + 1;
        sql(&format!("INSERT INTO orders (id, note) VALUES ({id}, 'order {id}')"));
        acked.push((id, SystemTime::now()));
    };
    for _ in 0..5 {
        write(&mut acked);
    }

    // The backup sets up archiving (ALTER SYSTEM + reload) and takes a base backup.
    let init = env.run_shared(&["repo", "init", "--json"]);
    assert_eq!(init.code, 0, "repo init:\n{}{}", init.stdout, init.stderr);
    let started = Instant::now();
    let done = done_steps(&env, &["backup", "orders", "--replicate", "--json"]);
    let steps: Vec<&str> = done.iter().map(|l| l["step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["back up orders at site a", "replicate orders a → b"]);
    let snapshot = &done[0]["result"]["snapshot"];
    assert_eq!(snapshot["meta"]["kind"], "pg-base", "{snapshot}");
    eprintln!(
        "backup --replicate: {:.2} s, base backup {} bytes",
        started.elapsed().as_secs_f64(),
        snapshot["bytes"]
    );
    let settled = poll(Duration::from_secs(30), || {
        (psql(&addr_a, port, "SHOW archive_timeout").ok()? == "2s").then_some(())
    });
    assert!(settled.is_some(), "rpo 4s gives archive_timeout 2s");
    let archive_command = sql("SHOW archive_command");
    for part in [" wal push ", "--site a", "--dataset orders", BIN] {
        assert!(
            archive_command.contains(part),
            "archive_command lacks `{part}`: {archive_command}"
        );
    }

    // The load: a batch, a pause around T, another batch.
    for _ in 0..20 {
        write(&mut acked);
    }
    let last_before = acked.last().unwrap().1;
    let t = last_before + Duration::from_millis(750);
    let resume = last_before + Duration::from_millis(1500);
    // Pacing the load, not waiting for anything.
    std::thread::sleep(resume.duration_since(SystemTime::now()).unwrap_or_default());
    for _ in 0..20 {
        write(&mut acked);
    }
    let last = acked.last().unwrap().1;

    // archive_timeout alone gets the segment holding the last write archived (by `resurgo wal
    // push`, run by PostgreSQL as its user).
    let segment = sql("SELECT pg_walfile_name(pg_current_wal_lsn())");
    let archived = poll(Duration::from_secs(120), || {
        let row = psql(
            &addr_a,
            port,
            "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
        )
        .ok()?;
        (row.len() == 24 && row >= segment).then_some(())
    });
    assert!(
        archived.is_some(),
        "segment {segment} not archived within 120 s: {}\n{}",
        sql("SELECT * FROM pg_stat_archiver"),
        service_log(&env)
    );
    let archived_after = SystemTime::now().duration_since(last).unwrap_or_default();
    assert_eq!(
        sql("SELECT failed_count FROM pg_stat_archiver"),
        "0",
        "{}",
        service_log(&env)
    );

    // `status` reports the archiver: working, with a last archived segment.
    let status = env.run_shared(&["status", "--json"]);
    let status: Value = serde_json::from_str(&status.stdout).unwrap_or_else(|e| panic!("{e}: {}", status.stdout));
    let orders = status["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dataset"] == "orders")
        .unwrap();
    let archiving = &orders["archiving"];
    assert_eq!(archiving["state"], "ok", "{orders}");
    assert_eq!(archiving["failed_count"], 0, "{orders}");
    assert!(archiving["last_archived_wal"].is_string(), "{orders}");

    let done = done_steps(&env, &["replicate", "orders", "--json"]);
    let in_b_after = SystemTime::now().duration_since(last).unwrap_or_default();
    assert_eq!(done.len(), 1, "{done:?}");
    let report = &done[0]["result"]["report"];
    assert!(report["segments_copied"].as_u64().unwrap() > 0, "{report}");
    eprintln!(
        "RPO-ish: last acknowledged write archived at a after {:.2} s (archive_timeout 2 s), in b's archive after {:.2} s",
        archived_after.as_secs_f64(),
        in_b_after.as_secs_f64()
    );

    // Verification by restore at b: a scratch server on the restored data answers the check.
    let verified = done_steps(&env, &["verify", "orders", "--site", "b", "--json"]);
    assert_eq!(verified.len(), 1, "{verified:?}");
    assert_eq!(
        verified[0]["result"]["check"], "SELECT count(*) FROM orders → 45",
        "{verified:?}"
    );

    // Site a is lost: its server, and its repository with it.
    drop(primary);
    assert!(!alive(pid));
    std::fs::rename(backups.join("a"), backups.join("a-lost")).unwrap();

    // Restores at b, from b's repository alone: the newest point has every acknowledged write…
    let refused = env.run_shared(&["restore", "orders", "--site", "b"]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("give --to, an empty folder"),
        "{}",
        refused.stderr
    );
    let all: Vec<i64> = acked.iter().map(|(id, _)| *id).collect();
    let newest = pgdata_in(&root.join("restored-newest"));
    let started = Instant::now();
    done_steps(
        &env,
        &[
            "restore",
            "orders",
            "--site",
            "b",
            "--to",
            newest.to_str().unwrap(),
            "--json",
        ],
    );
    let mut server = Server::start(&newest, &addr_b, root.join("restored-newest/server.log"));
    server.wait_until_primary();
    eprintln!(
        "restore to the newest point: {:.2} s until it accepts writes",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(server.ids(), all, "every acknowledged write survives");
    drop(server);

    // …and T has exactly those acknowledged by then.
    let by_t: Vec<i64> = acked.iter().filter(|(_, at)| *at <= t).map(|(id, _)| *id).collect();
    assert_eq!(by_t.len(), 25);
    let earlier = pgdata_in(&root.join("restored-earlier"));
    let at = rfc3339(t);
    done_steps(
        &env,
        &[
            "restore",
            "orders",
            "--site",
            "b",
            "--at",
            &at,
            "--to",
            earlier.to_str().unwrap(),
            "--json",
        ],
    );
    let mut server = Server::start(&earlier, &addr_b, root.join("restored-earlier/server.log"));
    server.wait_until_primary();
    assert_eq!(server.ids(), by_t, "exactly the writes acknowledged by {at}");
}

/// `initdb` as PostgreSQL's user into `pgdata`, then `conf` appended to postgresql.conf and
/// `hba` to pg_hba.conf.
pub(crate) fn initdb_as_nobody(root: &Path, pgdata: &Path, conf: &str, hba: &str) {
    let mut initdb = as_pg_user();
    initdb.push(pg_bin("initdb").display().to_string());
    let out = command(&initdb)
        .arg("-D")
        .arg(pgdata)
        .args(["-U", "nobody", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"])
        .current_dir(root)
        .output()
        .expect("run initdb");
    assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
    for (file, text) in [("postgresql.conf", conf), ("pg_hba.conf", hba)] {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(pgdata.join(file))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }
}

/// A port free on both addresses (each site's server listens on its own address).
pub(crate) fn free_port_on_both(a: &str, b: &str) -> u16 {
    loop {
        let port = free_port(a);
        if std::net::TcpListener::bind((b, port)).is_ok() {
            return port;
        }
    }
}

/// `psql CONNINFO -c Q` (autocommit; several statements run as one transaction): the last
/// statement's rows.
pub(crate) fn run_psql(mut cmd: Command, conninfo: &str, q: &str) -> Result<String, String> {
    let out = cmd
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", q])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}
