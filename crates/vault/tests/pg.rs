//! PostgreSQL protection end to end, against real servers (PostgreSQL 15, initdb in temp
//! folders): base backup + continuous WAL archiving under a write load, replicated to a
//! second repository and restored there to the newest point and to a chosen earlier time;
//! logical dumps; a warm standby, its lag, its promotion. Measured figures are printed
//! (`--nocapture` shows them).

mod pg_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pg_support::{poll, rfc3339, secs, Cluster, Load, CANARY_TABLE};
use resurgo_vault::archive::Pushed;
use resurgo_vault::pg::{self, PhysicalRestore, RecoveryTarget};
use resurgo_vault::{BackupMeta, Repository};

/// Not a test: the entry point the archive_command / restore_command scripts run (the test
/// binary itself, filtered to this name and run with `--ignored`). Ignored in a normal run, so
/// it never counts as a passing test; does nothing unless the scripts set its variables.
#[test]
#[ignore = "helper entry: run by another test as its child process"]
fn wal_entry() {
    pg_support::wal_entry_if_asked();
}

fn meta(dataset: &str) -> BackupMeta {
    BackupMeta {
        dataset: dataset.into(),
        site: "a".into(),
        ..BackupMeta::default()
    }
}

/// The ids in the canary table, in order, with each row's `inserted_at` (seconds).
fn canary_rows(cluster: &Cluster) -> Vec<(i64, f64)> {
    let out = cluster.query("SELECT id, extract(epoch FROM inserted_at) FROM canary ORDER BY id");
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (id, at) = l.split_once('|').unwrap();
            (id.parse().unwrap(), at.parse().unwrap())
        })
        .collect()
}

/// Restores `snapshot` of `repo` into a new cluster `name` and starts it; returns it once it
/// left recovery, with how long that took.
fn restore_and_start(
    root: &Path,
    name: &str,
    repo: &Repository,
    snapshot: &str,
    options: &PhysicalRestore,
) -> (Cluster, Duration) {
    let started = Instant::now();
    let cluster = Cluster::adopt(root, name);
    pg::restore_physical(repo, snapshot, &cluster.pgdata, options).unwrap();
    cluster.start();
    if let Err(e) = pg::wait_until_primary(&cluster.target(), Duration::from_secs(120)) {
        panic!(
            "{name} did not finish recovery: {e}\n--- server log ---\n{}",
            cluster.log()
        );
    }
    (cluster, started.elapsed())
}

/// Scenario 2 of the design, backup strategy: site A runs the primary, takes a base backup
/// and archives WAL continuously into its repository, which is replicated to site B's
/// repository while the load runs; site A is lost mid-load; B restores from its own
/// repository alone — to the newest point (RPO measured from the last acknowledged write) and
/// to a chosen earlier moment (exactly the writes acknowledged by then).
#[test]
fn point_in_time_restore_at_the_other_site_under_write_load() {
    let _serial = pg_support::serial();
    let root = pg_support::temp_root();
    let root = root.path();
    let (repo_a, config_a) = pg_support::repository(root, "repo-a");
    let (repo_b, config_b) = pg_support::repository(root, "repo-b");
    let at_a = pg_support::wal_commands(root, "a", &config_a, "shop");
    let at_b = pg_support::wal_commands(root, "b", &config_b, "shop");

    let primary = Cluster::init(root, "primary");
    primary.start();
    let target = primary.target();
    let restart = pg::configure_archiving(&target, &at_a.archive_command, Duration::from_secs(1)).unwrap();
    assert!(restart, "archive_mode was off: a restart is needed");
    primary.restart();
    assert_eq!(primary.query("SHOW archive_timeout"), "1s");
    primary.query(CANARY_TABLE);

    let load = Load::start(primary.port, Duration::from_millis(20));
    load.wait_for_count(20, Duration::from_secs(30));

    let started = Instant::now();
    let base = pg::base_backup(&repo_a, &target, &meta("shop")).unwrap_or_else(|e| panic!("base backup: {e}"));
    eprintln!(
        "base backup: {:.2} s, {} bytes, labels {:?}",
        started.elapsed().as_secs_f64(),
        base.bytes,
        base.meta.labels
    );
    assert_eq!(base.meta.kind, "pg-base");
    for label in [
        "wal_start",
        "wal_start_lsn",
        "wal_end",
        "end_time",
        "timeline",
        "system_identifier",
    ] {
        assert!(
            base.meta.labels.contains_key(label),
            "label {label}: {:?}",
            base.meta.labels
        );
    }
    let stored = repo_a.snapshots(Some("shop")).unwrap();
    assert_eq!(stored.len(), 1);
    let ended = pg::base_backup_labels(&repo_a.archive(), "shop", &stored[0])
        .unwrap()
        .expect("end record");
    assert_eq!(ended.get("end_time"), base.meta.labels.get("end_time"));

    // Site B's repository follows A's while the load runs, as replication would.
    let replicating = Arc::new(AtomicBool::new(true));
    let rounds = Arc::new(AtomicUsize::new(0));
    let (repo_a, repo_b) = (Arc::new(repo_a), Arc::new(repo_b));
    let replicator = {
        let (a, b, replicating, rounds) = (repo_a.clone(), repo_b.clone(), replicating.clone(), rounds.clone());
        std::thread::spawn(move || {
            while replicating.load(Ordering::SeqCst) {
                a.replicate_to(&b, Some("shop"))
                    .unwrap_or_else(|e| panic!("replicate: {e}"));
                rounds.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // The first round copies the base backup; from then on each round copies a few segments.
    poll("the base backup to reach site B", Duration::from_secs(300), || {
        rounds.load(Ordering::SeqCst) >= 1
    });

    // The chosen earlier moment: between two writes, with the load paused around it.
    let before_t = load.count() + 50;
    load.wait_for_count(before_t, Duration::from_secs(60));
    load.pause();
    let acked_by_t = load.acks();
    let t = SystemTime::now();
    poll("the clock to pass T", Duration::from_secs(5), || {
        SystemTime::now().duration_since(t).unwrap_or_default() > Duration::from_millis(300)
    });
    load.resume();
    let k = acked_by_t.last().unwrap().id;

    // More writes (~5 s), then site A is lost in the middle of them.
    load.wait_for_count(acked_by_t.len() + 200, Duration::from_secs(60));
    primary.kill();
    let fault = SystemTime::now();
    let (acks, error) = load.finish();
    assert!(error.is_some(), "the load stops when the primary dies");
    replicating.store(false, Ordering::SeqCst);
    replicator.join().unwrap();
    let rounds = rounds.load(Ordering::SeqCst);
    let last = *acks.last().unwrap();
    eprintln!(
        "load: {} writes acknowledged; last id {} at {:.3}; fault at {:.3}; {rounds} replication rounds",
        acks.len(),
        last.id,
        secs(last.at),
        secs(fault)
    );
    let pushes = std::fs::read_to_string(&at_a.log).unwrap();
    let push_times: Vec<u128> = pushes
        .lines()
        .filter_map(|l| l.split(" total=").nth(1)?.split("ms").next()?.parse().ok())
        .collect();
    eprintln!(
        "archive_command: {} runs, {} ms mean, {} ms max",
        push_times.len(),
        push_times.iter().sum::<u128>() / push_times.len().max(1) as u128,
        push_times.iter().max().unwrap_or(&0)
    );
    assert!(!pushes.contains("exit=1"), "every push succeeded:\n{pushes}");

    // Site B: restore from B's repository only, to the newest point.
    let snapshots = repo_b.snapshots(Some("shop")).unwrap();
    let latest = pg::choose_base_backup(&snapshots, &repo_b.archive(), "shop", &RecoveryTarget::Latest)
        .unwrap()
        .expect("the base backup was replicated");
    let (restored, took) = restore_and_start(
        root,
        "restored-latest",
        &repo_b,
        &latest.id,
        &PhysicalRestore {
            target: RecoveryTarget::Latest,
            restore_command: at_b.restore_command.clone(),
            archive_command: None,
            prefetch: None,
        },
    );
    let rows = canary_rows(&restored);
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let m = *ids.last().unwrap();
    assert_eq!(
        ids,
        (1..=m).collect::<Vec<_>>(),
        "recovered writes are a prefix, without holes"
    );
    assert!(
        m <= last.id + 1,
        "at most the one write in flight was committed unacknowledged"
    );
    assert!(
        m >= k,
        "everything up to T ({k}) is archived and replicated long before the fault"
    );
    let newest_recovered_ack = acks.iter().rfind(|a| a.id <= m).unwrap().at;
    let rpo = last.at.duration_since(newest_recovered_ack).unwrap_or_default();
    eprintln!(
        "RESTORE LATEST at site B: {:.2} s from empty folder to promoted; recovered ids 1..={m} of {} acknowledged; \
         RPO {:.3} s ({} acknowledged writes lost)",
        took.as_secs_f64(),
        last.id,
        rpo.as_secs_f64(),
        (last.id - m).max(0)
    );
    assert!(
        rpo <= Duration::from_secs(30),
        "writes lost beyond the archive timeout's reach: {rpo:?}"
    );
    restored.query("INSERT INTO canary (id, payload) VALUES (-1, 'written at site B')");
    drop(restored);

    // Site B: restore to T, exactly the writes acknowledged by then.
    let t_target = RecoveryTarget::Time(rfc3339(t).parse().unwrap());
    let chosen = pg::choose_base_backup(&snapshots, &repo_b.archive(), "shop", &t_target)
        .unwrap()
        .expect("a base backup ended before T");
    assert_eq!(chosen.meta.labels.get("backup_id"), base.meta.labels.get("backup_id"));
    let (at_t, took) = restore_and_start(
        root,
        "restored-at-t",
        &repo_b,
        &chosen.id,
        &PhysicalRestore {
            target: t_target,
            restore_command: at_b.restore_command.clone(),
            archive_command: None,
            prefetch: None,
        },
    );
    let ids: BTreeSet<i64> = canary_rows(&at_t).into_iter().map(|r| r.0).collect();
    let expected: BTreeSet<i64> = acked_by_t.iter().map(|a| a.id).collect();
    assert_eq!(ids, expected, "exactly the writes acknowledged by T = {}", rfc3339(t));
    eprintln!(
        "RESTORE TO T at site B: {:.2} s; {} rows, exactly those acknowledged by T",
        took.as_secs_f64(),
        ids.len()
    );
}

/// A logical dump streamed into the repository restores, into another server, to the same
/// content; restoring again over it is harmless.
#[test]
fn logical_dump_round_trip() {
    let _serial = pg_support::serial();
    let root = pg_support::temp_root();
    let root = root.path();
    let (repo, _) = pg_support::repository(root, "repo");
    let source = Cluster::init(root, "source");
    source.start();
    source.query("CREATE DATABASE shop");
    let shop = source.target().with_dbname("shop");
    pg::query(
        &shop,
        "CREATE TABLE item (id serial PRIMARY KEY, name text NOT NULL, price numeric(10,2), tags text[]);
         CREATE INDEX item_name ON item (name);
         INSERT INTO item (name, price, tags)
           SELECT 'item ' || g || ' ✓ ''quoted''', g * 1.25, ARRAY['a', 'b' || g] FROM generate_series(1, 5000) g;
         CREATE VIEW dear AS SELECT * FROM item WHERE price > 100;",
    )
    .unwrap();
    let digest = "SELECT md5(string_agg(i::text, ',' ORDER BY id)) || ' ' || (SELECT count(*) FROM dear) \
                  || ' ' || (SELECT last_value FROM item_id_seq) FROM item i";
    let before = pg::query(&shop, digest).unwrap();

    let snap = pg::logical_backup(&repo, &shop, &meta("shop")).unwrap();
    assert_eq!(snap.meta.kind, "pg-dump");
    assert_eq!(snap.meta.labels.get("dbname").map(String::as_str), Some("shop"));
    eprintln!("logical dump: {} bytes, {} stored", snap.bytes, snap.added);

    let other = Cluster::init(root, "other");
    other.start();
    other.query("CREATE DATABASE shop");
    let restored = other.target().with_dbname("shop");
    pg::logical_restore(&repo, &snap.id, &restored).unwrap();
    assert_eq!(pg::query(&restored, digest).unwrap(), before);
    pg::logical_restore(&repo, &snap.id, &restored).unwrap();
    assert_eq!(pg::query(&restored, "SELECT count(*) FROM item").unwrap(), "5000");

    // A failing restore (no such database) says which program failed.
    let err = pg::logical_restore(&repo, &snap.id, &other.target().with_dbname("nope")).unwrap_err();
    assert!(err.to_string().contains("pg_restore"), "{err}");
}

/// Warm standby: built from the primary on a slot, follows it under a write load with
/// measured lag, and is promoted when the primary is lost, losing at most the last instants.
#[test]
fn standby_follows_under_load_and_is_promoted() {
    let _serial = pg_support::serial();
    let root = pg_support::temp_root();
    let root = root.path();
    let primary = Cluster::init(root, "primary");
    primary.start();
    primary.query(CANARY_TABLE);

    // pgbench's tables, for a heavier load later.
    let pgbench = pg::program("pgbench").unwrap();
    let init = std::process::Command::new(&pgbench)
        .args(["-i", "-q", "-s", "5", "-h", "127.0.0.1", "-U", "postgres", "-p"])
        .arg(primary.port.to_string())
        .arg("postgres")
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));

    let standby = Cluster::adopt(root, "standby");
    // A first attempt (abandoned), then the standby: the slot is created once and reused.
    pg::build_standby(
        &primary.target(),
        &pg_support::mkdir_for_user(&root.join("abandoned")),
        "site_b",
    )
    .unwrap();
    let started = Instant::now();
    pg::build_standby(&primary.target(), &standby.pgdata, "site_b").unwrap();
    let built = started.elapsed();
    // A folder with content is refused.
    let err = pg::build_standby(&primary.target(), &standby.pgdata, "site_b").unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(
        primary.query("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'site_b'"),
        "1"
    );
    assert!(standby.pgdata.join("standby.signal").exists());
    standby.start();
    pg::wait_ready(&standby.target(), Duration::from_secs(60)).unwrap();
    eprintln!("standby built in {:.2} s", built.as_secs_f64());
    assert!(pg::is_in_recovery(&standby.target()).unwrap());

    let load = Load::start(primary.port, Duration::from_millis(10));
    load.wait_for_count(50, Duration::from_secs(30));
    let (count_before, sampling_from) = (load.count(), Instant::now());
    let mut samples = Vec::new();
    let sampling_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < sampling_until {
        samples.push(pg::standby_lag(&primary.target(), &standby.target()).unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(samples.iter().all(|l| l.streaming), "{samples:?}");
    let max_bytes = samples.iter().map(|l| l.bytes).max().unwrap();
    let mean_bytes = samples.iter().map(|l| l.bytes).sum::<u64>() / samples.len() as u64;
    let seconds: Vec<f64> = samples.iter().filter_map(|l| l.seconds).collect();
    let max_seconds = seconds.iter().cloned().fold(0.0, f64::max);
    let rate = (load.count() - count_before) as f64 / sampling_from.elapsed().as_secs_f64();
    eprintln!(
        "STANDBY LAG under {rate:.0} writes/s: {} samples, bytes mean {mean_bytes} max {max_bytes}, \
         seconds max {max_seconds:.4}",
        samples.len()
    );
    assert!(max_seconds < 1.0, "lag within the standby RPO objective: {samples:?}");

    // Heavier: pgbench (4 clients, TPC-B-like) beside the canary.
    let mut bench = std::process::Command::new(&pgbench)
        .args([
            "-c",
            "4",
            "-j",
            "2",
            "-T",
            "4",
            "-n",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-p",
        ])
        .arg(primary.port.to_string())
        .arg("postgres")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut heavy = Vec::new();
    while bench.try_wait().unwrap().is_none() {
        heavy.push(pg::standby_lag(&primary.target(), &standby.target()).unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut report = String::new();
    std::io::Read::read_to_string(&mut bench.stdout.take().unwrap(), &mut report).unwrap();
    let tps = report
        .lines()
        .find(|l| l.starts_with("tps"))
        .unwrap_or("tps unknown")
        .to_string();
    let heavy_bytes = heavy.iter().map(|l| l.bytes).max().unwrap_or(0);
    let heavy_seconds = heavy.iter().filter_map(|l| l.seconds).fold(0.0, f64::max);
    eprintln!(
        "STANDBY LAG under pgbench ({tps}): {} samples, bytes max {heavy_bytes}, seconds max {heavy_seconds:.4}",
        heavy.len()
    );
    assert!(heavy.iter().all(|l| l.streaming), "{heavy:?}");

    // Rows arrive at the standby.
    let on_primary = load.acks().last().unwrap().id;
    poll("rows to arrive at the standby", Duration::from_secs(10), || {
        standby
            .query("SELECT coalesce(max(id), 0) FROM canary")
            .parse::<i64>()
            .unwrap()
            >= on_primary
    });

    // The primary is lost mid-load; the standby is promoted.
    primary.kill();
    let (acks, error) = load.finish();
    assert!(error.is_some());
    let promoting = Instant::now();
    pg::promote(&standby.target(), Duration::from_secs(60)).unwrap();
    let promote_time = promoting.elapsed();
    pg::promote(&standby.target(), Duration::from_secs(60)).unwrap();
    let ids: Vec<i64> = canary_rows(&standby).into_iter().map(|r| r.0).collect();
    let m = *ids.last().unwrap();
    assert_eq!(ids, (1..=m).collect::<Vec<_>>(), "a prefix of the writes");
    let last = *acks.last().unwrap();
    assert!(m <= last.id + 1);
    let newest = acks.iter().rfind(|a| a.id <= m).unwrap().at;
    let rpo = last.at.duration_since(newest).unwrap_or_default();
    eprintln!(
        "STANDBY PROMOTED in {:.3} s; recovered 1..={m} of {} acknowledged; RPO {:.3} s ({} writes lost)",
        promote_time.as_secs_f64(),
        last.id,
        rpo.as_secs_f64(),
        (last.id - m).max(0)
    );
    assert!(
        rpo <= Duration::from_secs(10),
        "a streaming standby lost {rpo:?} of writes"
    );
    standby.query("INSERT INTO canary (id, payload) VALUES (-1, 'after promotion')");
}

/// archive_command / restore_command semantics, without a server: idempotent push, the
/// statuses PostgreSQL relies on, history and partial files, atomic fetch.
#[test]
fn wal_push_and_fetch_follow_the_archive_and_restore_command_contracts() {
    let root = pg_support::temp_root();
    let root = root.path();
    let (repo, _) = pg_support::repository(root, "repo");
    let archive = repo.archive();
    let wal = root.join("pg_wal");
    std::fs::create_dir_all(&wal).unwrap();
    let segment: Vec<u8> = (0..16 * 1024 * 1024u32).map(|i| (i / 4096) as u8).collect();
    let seg = wal.join("000000010000000000000007");
    std::fs::write(&seg, &segment).unwrap();
    std::fs::write(
        wal.join("00000002.history"),
        "1\t0/7000000\tno recovery target specified\n",
    )
    .unwrap();
    std::fs::write(wal.join("000000010000000000000008.partial"), b"partial").unwrap();

    let first = pg::wal_push(&archive, "shop", &seg);
    assert_eq!(pg::wal_push_status(&first), 0);
    assert_eq!(first.unwrap(), Pushed::Stored);
    assert_eq!(
        pg::wal_push(&archive, "shop", &seg).unwrap(),
        Pushed::AlreadyPresent,
        "a retried push succeeds"
    );
    pg::wal_push(&archive, "shop", &wal.join("00000002.history")).unwrap();
    pg::wal_push(&archive, "shop", &wal.join("000000010000000000000008.partial")).unwrap();
    let stored = archive.list("shop").unwrap();
    let size: u64 = stored.iter().map(|s| s.size).sum();
    assert!(size < 1024 * 1024, "16 MiB of WAL compressed to {size} bytes");

    // Another file under an archived name: refused, non-zero, the archive keeps the first.
    std::fs::write(&seg, b"different").unwrap();
    let conflict = pg::wal_push(&archive, "shop", &seg);
    assert_eq!(pg::wal_push_status(&conflict), pg::PUSH_FAILED);
    assert!(conflict.unwrap_err().to_string().contains("different segment"));
    // A missing file to push fails, naming it.
    let missing = pg::wal_push(&archive, "shop", &wal.join("000000010000000000000009"));
    assert!(missing.unwrap_err().to_string().contains("000000010000000000000009"));

    let dest = wal.join("RECOVERYXLOG");
    let got = pg::wal_fetch(&archive, "shop", "000000010000000000000007", &dest);
    assert_eq!(pg::wal_fetch_status(&got), 0);
    assert_eq!(std::fs::read(&dest).unwrap(), segment);
    let history = pg::wal_fetch(&archive, "shop", "00000002.history", &wal.join("RECOVERYHISTORY")).unwrap();
    assert!(history);
    let absent = pg::wal_fetch(&archive, "shop", "00000003.history", &wal.join("RECOVERYHISTORY"));
    assert_eq!(
        pg::wal_fetch_status(&absent),
        pg::FETCH_MISSING,
        "a missing file is the normal end of recovery"
    );

    // A damaged segment must stop recovery, not end it: status > 125.
    let object = root.join("repo/logs/shop/000000010000000000000007");
    let mut raw = std::fs::read(&object).unwrap();
    let middle = raw.len() / 2;
    raw[middle] ^= 0xff;
    std::fs::write(&object, raw).unwrap();
    let damaged = pg::wal_fetch(&archive, "shop", "000000010000000000000007", &wal.join("RECOVERYXLOG2"));
    assert_eq!(pg::wal_fetch_status(&damaged), pg::FETCH_FAILED);
    const { assert!(pg::FETCH_FAILED > 125) };
    assert!(damaged
        .unwrap_err()
        .to_string()
        .contains("logs/shop/000000010000000000000007"));
    assert!(
        !wal.join("RECOVERYXLOG2").exists(),
        "nothing half-written is left for PostgreSQL"
    );
}

/// Missing programs and unreachable servers give clear errors.
#[test]
fn errors_name_the_program_and_the_server() {
    let err = pg::program("pg_no_such_tool").unwrap_err();
    assert!(err.to_string().contains("pg_no_such_tool"), "{err}");
    let nowhere = pg::PgTarget::new("127.0.0.1", 1, "postgres", "postgres").with_password(Some("hunter2".into()));
    let err = pg::query(&nowhere, "SELECT 1").unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    assert!(!err.to_string().contains("hunter2"));
}
