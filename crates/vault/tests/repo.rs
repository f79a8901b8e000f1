//! The repository against real parts: rustic_core on local folders and on a real S3 server
//! (`rclone serve s3`), and Debian's `restic` reading what we wrote.

mod repo_support;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use repo_support::*;
use resurgo_vault::repo::{RepoConfig, Repository, Retention};
use resurgo_vault::{open_object_store, VaultError};

fn kib(n: u64) -> u64 {
    n * 1024
}

#[test]
fn directory_round_trip_is_byte_identical_with_modes_owners_and_times() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src, 1);
    let repo = Repository::init(&local_config(&tmp.path().join("repo"))).unwrap();

    let started = Instant::now();
    let snap = repo.backup_path(&src, &meta("files")).unwrap();
    let backup = started.elapsed();
    assert_eq!(snap.meta, meta("files"));
    assert_eq!(snap.paths, vec![src.display().to_string()]);
    assert!(snap.files >= 150 && snap.bytes > 4 * 1024 * 1024, "{snap:?}");
    assert_eq!(repo.snapshots(Some("files")).unwrap(), vec![snap.clone()]);
    assert!(repo.snapshots(Some("other")).unwrap().is_empty());

    let restored = tmp.path().join("restored");
    let started = Instant::now();
    repo.restore(&snap.id[..10], &restored).unwrap();
    eprintln!(
        "tree of {} bytes: backup {backup:?}, restore {:?}",
        snap.bytes,
        started.elapsed()
    );
    assert_eq!(describe(&src, false), describe(&restored, false));

    let mut text = Vec::new();
    let n = repo.restore_file(&snap.id, "big/text.txt", &mut text).unwrap();
    assert_eq!(n, text.len() as u64);
    assert_eq!(text, fs::read(src.join("big/text.txt")).unwrap());
    assert!(matches!(
        repo.restore_file(&snap.id, "no/such/file", &mut Vec::new()),
        Err(VaultError::NotFound { .. })
    ));
    assert!(matches!(
        repo.restore("0123456789abcdef", &restored),
        Err(VaultError::NotFound { .. })
    ));

    // The same Repository backs up again after a change: it sees the blobs it stored before
    // (a stale index would store everything again).
    fs::write(src.join("small/00/f000.txt"), b"changed").unwrap();
    let second = repo.backup_path(&src, &meta("files")).unwrap();
    assert!(
        second.added < kib(64),
        "an almost unchanged tree added {} bytes",
        second.added
    );
    let unchanged = Repository::open(&local_config(&tmp.path().join("repo")))
        .unwrap()
        .backup_path(&src, &meta("files"))
        .unwrap();
    assert!(
        unchanged.added < kib(16),
        "an unchanged tree added {} bytes",
        unchanged.added
    );
    assert_eq!(repo.snapshots(None).unwrap().len(), 3);

    // A single file restores into the destination folder under its name.
    let file_snap = repo.backup_path(&src.join("bin/tool.sh"), &meta("script")).unwrap();
    let one = tmp.path().join("one");
    repo.restore(&file_snap.id, &one).unwrap();
    assert_eq!(
        describe(&src.join("bin"), false)["tool.sh"],
        describe(&one, false)["tool.sh"]
    );
}

#[test]
fn command_output_is_streamed_into_a_snapshot_and_restored_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repository::init(&local_config(&tmp.path().join("repo"))).unwrap();
    let count = 1_250_000; // 5 MB
    let mut db = meta("db");
    db.kind = "pg-dump".into();
    let snap = repo.backup_command(&lcg_command(count), &[], "dump.bin", &db).unwrap();
    assert_eq!(snap.paths, vec!["dump.bin".to_string()]);
    assert_eq!((snap.files, snap.bytes), (1, count as u64 * 4));
    assert_eq!(snap.meta, db);

    let mut out = Vec::new();
    let n = repo.restore_file(&snap.id, "dump.bin", &mut out).unwrap();
    assert_eq!(n, out.len() as u64);
    assert!(
        out == lcg_bytes(count),
        "restored output differs from what the command printed"
    );

    // The command gets the environment it is given.
    let argv = ["sh", "-c", "printf %s \"$RESURGO_TEST_VALUE\""].map(String::from);
    let env = [("RESURGO_TEST_VALUE".to_string(), "from the environment".to_string())];
    let snap = repo.backup_command(&argv, &env, "value.txt", &db).unwrap();
    let mut out = Vec::new();
    let _ = repo.restore_file(&snap.id, "value.txt", &mut out).unwrap();
    assert_eq!(out, b"from the environment");
}

#[test]
fn a_failing_command_fails_the_backup_and_leaves_no_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repository::init(&local_config(&tmp.path().join("repo"))).unwrap();
    let argv = [
        "sh",
        "-c",
        "head -c 300000 /dev/urandom; echo 'pg_dump: connection refused' >&2; exit 3",
    ]
    .map(String::from);
    match repo.backup_command(&argv, &[], "dump.sql", &meta("db")) {
        Err(VaultError::Command {
            program,
            status,
            stderr,
        }) => {
            assert_eq!(program, "sh");
            assert!(status.contains('3'), "{status}");
            assert!(stderr.contains("connection refused"), "{stderr}");
        }
        other => panic!("expected a command error, got {other:?}"),
    }
    let argv = ["/no/such/program".to_string()];
    assert!(matches!(
        repo.backup_command(&argv, &[], "dump.sql", &meta("db")),
        Err(VaultError::Command { .. })
    ));
    assert!(repo.snapshots(None).unwrap().is_empty());
    let snapshot_files = tmp.path().join("repo/store/snapshots");
    assert!(
        !snapshot_files.exists() || walk(&snapshot_files).is_empty(),
        "a snapshot file was written"
    );
    assert!(repo.check(true).unwrap().errors.is_empty());
}

#[test]
fn restic_lists_checks_and_restores_what_we_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src, 2);
    let repo = Repository::init(&local_config(&tmp.path().join("repo"))).unwrap();
    let snap = repo.backup_path(&src, &meta("files")).unwrap();
    let dump = repo
        .backup_command(&lcg_command(100_000), &[], "dump.bin", &meta("db"))
        .unwrap();
    let location = repo.restic_location();
    assert_eq!(location, format!("{}/store", tmp.path().join("repo").display()));

    let listed: serde_json::Value = serde_json::from_str(&restic(&location, &["snapshots", "--json"], &[])).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let ours = listed
        .iter()
        .find(|s| s["id"] == snap.id.as_str())
        .expect("restic lists our snapshot");
    assert_eq!(ours["hostname"], "site-a");
    let tags: Vec<&str> = ours["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tags.contains(&"resurgo.dataset=files") && tags.contains(&"resurgo.label.origin=test%2C with comma"),
        "{tags:?}"
    );

    let _ = restic(&location, &["check", "--read-data"], &[]);
    let target = tmp.path().join("by-restic");
    let _ = restic(
        &location,
        &["restore", &snap.id, "--target", target.to_str().unwrap()],
        &[],
    );
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(describe(&src, false), describe(&restored, false));
    let dumped = restic_bytes(&location, &["dump", &dump.id, "/dump.bin"], &[]);
    assert!(
        dumped == lcg_bytes(100_000),
        "restic dumps other bytes than the command printed"
    );
}

#[test]
fn wrong_password_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let src = tmp.path().join("src");
    make_tree(&src, 3);
    let repo = Repository::init(&local_config(&dir)).unwrap();
    let _ = repo.backup_path(&src, &meta("files")).unwrap();
    let before = fingerprint(&dir);

    let wrong = RepoConfig {
        password: "not the password".into(),
        ..local_config(&dir)
    };
    assert!(matches!(
        Repository::open(&wrong),
        Err(VaultError::WrongPassword { .. })
    ));
    assert!(matches!(
        Repository::init(&wrong),
        Err(VaultError::AlreadyExists { .. })
    ));
    assert!(matches!(
        Repository::init(&local_config(&dir)),
        Err(VaultError::AlreadyExists { .. })
    ));
    assert_eq!(fingerprint(&dir), before, "refused operations changed the repository");

    let missing = tmp.path().join("nothing-here");
    assert!(matches!(
        Repository::open(&local_config(&missing)),
        Err(VaultError::NotARepository { .. })
    ));
    assert!(!missing.exists(), "opening a missing repository created something");
}

#[test]
fn a_flipped_byte_in_a_pack_is_reported_naming_the_pack() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let src = tmp.path().join("src");
    make_tree(&src, 4);
    let repo = Repository::init(&local_config(&dir)).unwrap();
    let _ = repo.backup_path(&src, &meta("files")).unwrap();
    let clean = repo.check(true).unwrap();
    assert!(clean.errors.is_empty() && clean.warnings.is_empty(), "{clean:?}");
    assert_eq!(clean.snapshots, 1);
    assert!(clean.packs_read >= 2, "{clean:?}");

    // The largest pack holds file data; flip one byte in its middle.
    let pack = walk(&dir.join("store/data"))
        .into_iter()
        .filter(|p| p.is_file())
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut data = fs::read(&pack).unwrap();
    let middle = data.len() / 2;
    data[middle] ^= 0x40;
    fs::write(&pack, data).unwrap();
    let pack_id = pack.file_name().unwrap().to_str().unwrap().to_string();

    let report = repo.check(true).unwrap();
    assert!(
        report.errors.iter().any(|e| e.contains(&pack_id)),
        "no error names pack {pack_id}: {report:#?}"
    );
    eprintln!("check reports: {:#?}", report.errors);

    // A damaged snapshot file is a finding too, not a failure of the check.
    let snapshot_file = walk(&dir.join("store/snapshots"))
        .into_iter()
        .find(|p| p.is_file())
        .unwrap();
    let mut data = fs::read(&snapshot_file).unwrap();
    data[20] ^= 1;
    fs::write(&snapshot_file, data).unwrap();
    let report = repo.check(false).unwrap();
    assert!(!report.errors.is_empty(), "{report:#?}");
    eprintln!("with a damaged snapshot file: {:#?}", report.errors);
}

/// The child of `a_killed_backup_leaves_a_repository_that_checks_clean`: a long backup,
/// run only when that test asks for it (ignored otherwise, so it never counts as a passing test).
#[test]
#[ignore = "helper entry: run by another test as its child process"]
fn killed_backup_child() {
    let (Ok(repo), Ok(src)) = (
        std::env::var("RESURGO_TEST_KILL_REPO"),
        std::env::var("RESURGO_TEST_KILL_SRC"),
    ) else {
        return;
    };
    let repo = Repository::open(&local_config(Path::new(&repo))).unwrap();
    let _ = repo.backup_path(Path::new(&src), &meta("big")).unwrap();
}

#[test]
fn a_killed_backup_leaves_a_repository_that_checks_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let src = tmp.path().join("src");
    make_large_tree(&src, 128, 1024 * 1024, 5);
    let repo = Repository::init(&local_config(&dir)).unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "--ignored",
            "killed_backup_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RESURGO_TEST_KILL_REPO", &dir)
        .env("RESURGO_TEST_KILL_SRC", &src)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let data = dir.join("store/data");
    // A whole pack written (not only a temporary file being written), no index for it yet.
    wait_for("the backup to write its first pack", Duration::from_secs(120), || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the backup ended ({status}) before it could be killed: make the tree larger");
        }
        complete_pack_in(&data).then_some(())
    });
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait().unwrap();
    assert!(
        repo.snapshots(None).unwrap().is_empty(),
        "the backup finished before it was killed"
    );

    let started = Instant::now();
    let report = repo.check(true).unwrap();
    eprintln!("check of the killed backup's leftovers: {:?}", started.elapsed());
    assert!(report.errors.is_empty(), "{report:#?}");
    eprintln!(
        "after kill -9: {} warnings: {:?}",
        report.warnings.len(),
        report.warnings
    );

    let started = Instant::now();
    let snap = repo.backup_path(&src, &meta("big")).unwrap();
    eprintln!("backup of {} bytes after the kill: {:?}", snap.bytes, started.elapsed());
    let report = repo.check(true).unwrap();
    assert!(report.errors.is_empty(), "{report:#?}");
    let restored = tmp.path().join("restored");
    repo.restore(&snap.id, &restored).unwrap();
    assert_eq!(fingerprint(&src), fingerprint(&restored));

    // Prune takes away what the killed backup left and nothing else.
    let forgot = repo
        .forget(
            &Retention {
                keep_last: Some(1),
                ..Retention::default()
            },
            None,
            true,
        )
        .unwrap();
    assert_eq!(forgot.kept, vec![snap.id.clone()]);
    assert!(repo.check(true).unwrap().errors.is_empty());
}

fn complete_pack_in(dir: &Path) -> bool {
    dir.exists()
        && walk(dir)
            .iter()
            .any(|p| p.file_name().is_some_and(|n| n.len() == 64) && p.is_file())
}

#[test]
fn replicate_copies_only_what_the_target_lacks() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src, 6);
    let a = Repository::init(&local_config(&tmp.path().join("a"))).unwrap();
    let b_config = RepoConfig {
        password: "another password".into(),
        ..local_config(&tmp.path().join("b"))
    };
    let b = Repository::init(&b_config).unwrap();

    let files = a.backup_path(&src, &meta("files")).unwrap();
    let _ = a
        .backup_command(&lcg_command(100_000), &[], "dump.bin", &meta("db"))
        .unwrap();
    let wal = lcg_bytes(4096);
    let _ = a.archive().push("pg-main", "000000010000000000000001", &wal).unwrap();

    let first = a.replicate_to(&b, None).unwrap();
    assert_eq!(
        (first.snapshots_copied, first.snapshots_present, first.segments_copied),
        (2, 0, 1),
        "{first:?}"
    );
    assert!(first.bytes > files.bytes / 2, "{first:?}");
    let again = a.replicate_to(&b, None).unwrap();
    assert_eq!(
        (
            again.snapshots_copied,
            again.snapshots_present,
            again.segments_copied,
            again.bytes
        ),
        (0, 2, 0, 0)
    );

    // The target restores the same bytes, with its own key.
    let b = Repository::open(&b_config).unwrap();
    let at_b = b.snapshots(Some("files")).unwrap();
    assert_eq!(at_b.len(), 1);
    assert_eq!(
        (at_b[0].meta.clone(), at_b[0].time.clone()),
        (files.meta.clone(), files.time.clone())
    );
    let restored = tmp.path().join("restored");
    b.restore(&at_b[0].id, &restored).unwrap();
    assert_eq!(describe(&src, false), describe(&restored, false));
    let dump = &b.snapshots(Some("db")).unwrap()[0];
    let mut out = Vec::new();
    let _ = b.restore_file(&dump.id, "dump.bin", &mut out).unwrap();
    assert!(out == lcg_bytes(100_000));
    assert_eq!(
        b.archive().fetch("pg-main", "000000010000000000000001").unwrap(),
        Some(wal)
    );

    // After a small change only the change travels, and only for the dataset asked for.
    fs::write(src.join("big/text.txt"), b"rewritten").unwrap();
    let _ = a.backup_path(&src, &meta("files")).unwrap();
    let _ = a
        .backup_command(&lcg_command(1000), &[], "dump.bin", &meta("db"))
        .unwrap();
    let third = a.replicate_to(&b, Some("files")).unwrap();
    assert_eq!((third.snapshots_copied, third.snapshots_present), (1, 1), "{third:?}");
    assert!(third.bytes < kib(256), "a small change sent {} bytes", third.bytes);
    assert_eq!(b.snapshots(None).unwrap().len(), 3);
    let report = b.check(true).unwrap();
    assert!(report.errors.is_empty(), "{report:#?}");
}

#[test]
fn forget_keeps_what_the_retention_says_per_dataset_and_prune_frees_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src, 7);
    let repo = Repository::init(&local_config(&tmp.path().join("repo"))).unwrap();
    let mut a = Vec::new();
    for i in 0..3 {
        fs::write(src.join("big/random.bin"), Rng::new(100 + i).bytes(512 * 1024)).unwrap();
        a.push(repo.backup_path(&src, &meta("a")).unwrap().id);
    }
    let b: Vec<String> = (0..2)
        .map(|i| {
            repo.backup_command(&lcg_command(1000 + i), &[], "dump.bin", &meta("b"))
                .unwrap()
                .id
        })
        .collect();

    assert!(matches!(
        repo.forget(&Retention::default(), None, false),
        Err(VaultError::Store { .. })
    ));
    let keep_two = Retention {
        keep_last: Some(2),
        ..Retention::default()
    };
    let report = repo.forget(&keep_two, None, true).unwrap();
    assert_eq!(report.removed, vec![a[0].clone()]);
    let mut kept = report.kept.clone();
    kept.sort();
    let mut expected = vec![a[1].clone(), a[2].clone(), b[0].clone(), b[1].clone()];
    expected.sort();
    assert_eq!(kept, expected);
    assert!(report.pruned_bytes > 0, "{report:?}");
    let ids = |d: &str| {
        repo.snapshots(Some(d))
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids("a"), a[1..].to_vec());
    assert_eq!(ids("b"), b);

    let only_b = repo
        .forget(
            &Retention {
                keep_last: Some(1),
                ..Retention::default()
            },
            Some("b"),
            false,
        )
        .unwrap();
    assert_eq!(only_b.removed, vec![b[0].clone()]);
    assert_eq!(ids("a"), a[1..].to_vec());
    assert!(repo.check(true).unwrap().errors.is_empty());
    repo.restore(&a[1], &tmp.path().join("restored")).unwrap();
}

#[test]
fn s3_repository_on_a_real_server() {
    let mut server = S3Server::start(&["bucket"]);
    let credentials = S3Server::credentials();

    // Object semantics.
    let store = open_object_store(&server.url("bucket", "objects"), &credentials).unwrap();
    assert_eq!(store.get("x/y").unwrap(), None);
    assert!(store.list("x/").unwrap().is_empty());
    assert!(store.put_if_absent("x/y", b"first").unwrap());
    assert!(!store.put_if_absent("x/y", b"second").unwrap());
    assert_eq!(store.get("x/y").unwrap().as_deref(), Some(&b"first"[..]));
    assert_eq!(store.get_range("x/y", 1, 3).unwrap(), b"irs");
    store.put("x/z/w", b"0123").unwrap();
    let mut listed = store.list("x/").unwrap();
    listed.sort();
    assert_eq!(listed, vec![("x/y".to_string(), 5), ("x/z/w".to_string(), 4)]);
    store.delete("x/y").unwrap();
    store.delete("x/y").unwrap();
    assert_eq!(store.get("x/y").unwrap(), None);
    let wrong_keys = resurgo_vault::S3Credentials {
        secret_key: Some("wrong".into()),
        ..credentials.clone()
    };
    let denied = open_object_store(&server.url("bucket", "objects"), &wrong_keys)
        .unwrap()
        .get("x/z/w");
    assert!(matches!(denied, Err(VaultError::Store { .. })), "{denied:?}");

    // A repository.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src, 8);
    let config = RepoConfig {
        url: server.url("bucket", "site-a"),
        password: PASSWORD.into(),
        s3: credentials.clone(),
    };
    let repo = Repository::init(&config).unwrap();
    assert!(matches!(
        Repository::init(&config),
        Err(VaultError::AlreadyExists { .. })
    ));
    let started = Instant::now();
    let snap = repo.backup_path(&src, &meta("files")).unwrap();
    let backup = started.elapsed();
    let dump = repo
        .backup_command(&lcg_command(250_000), &[], "dump.bin", &meta("db"))
        .unwrap();
    let repo = Repository::open(&config).unwrap();
    assert_eq!(repo.snapshots(None).unwrap().len(), 2);
    let restored = tmp.path().join("restored");
    let started = Instant::now();
    repo.restore(&snap.id, &restored).unwrap();
    eprintln!(
        "S3: backup {backup:?}, restore {:?} of {} bytes",
        started.elapsed(),
        snap.bytes
    );
    assert_eq!(describe(&src, false), describe(&restored, false));
    let mut out = Vec::new();
    let _ = repo.restore_file(&dump.id, "dump.bin", &mut out).unwrap();
    assert!(out == lcg_bytes(250_000));
    let report = repo.check(true).unwrap();
    assert!(report.errors.is_empty() && report.packs_read >= 2, "{report:#?}");
    let wrong = RepoConfig {
        password: "nope".into(),
        ..config.clone()
    };
    assert!(matches!(
        Repository::open(&wrong),
        Err(VaultError::WrongPassword { .. })
    ));

    // restic reads it over S3 too.
    let listed = restic(
        &repo.restic_location(),
        &["snapshots", "--json"],
        &[("AWS_ACCESS_KEY_ID", S3_ACCESS), ("AWS_SECRET_ACCESS_KEY", S3_SECRET)],
    );
    assert!(listed.contains(&snap.id), "{listed}");

    server.stop();
    assert!(matches!(Repository::open(&config), Err(VaultError::Unreachable { .. })));
}

/// The snapshot index (`index.rs`) answers as the repository does, whoever wrote it: what
/// another handle (another host) backed up or forgot is seen at the next use; an entry for a
/// snapshot the repository does not hold is never listed; an index of another repository, or
/// unreadable, only costs reads; and a kept repository is the one opened before.
#[test]
fn the_snapshot_index_lists_what_the_repository_holds_whoever_wrote_it() {
    use resurgo_vault::index::SnapshotIndex;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), "one").unwrap();
    let config = local_config(&tmp.path().join("repo"));
    let here = Repository::init(&config).unwrap();
    let index = SnapshotIndex::new(tmp.path().join("state/repositories/a/snapshots.json"));
    assert!(index.snapshots(&here).unwrap().is_empty());

    let first = here.backup_path(&src, &meta("files")).unwrap();
    assert_eq!(index.snapshots(&here).unwrap(), vec![first.clone()]);
    assert!(index.path().exists(), "what was read is indexed");

    // Another host backs up and forgets in the same repository: seen at once.
    let elsewhere = Repository::open(&config).unwrap();
    fs::write(src.join("f"), "two").unwrap();
    let second = elsewhere.backup_path(&src, &meta("files")).unwrap();
    let db = elsewhere
        .backup_command(&lcg_command(1000), &[], "dump.bin", &meta("db"))
        .unwrap();
    let mut all = [first.clone(), second.clone(), db.clone()];
    all.sort_by_key(|s| s.unix);
    assert_eq!(
        index
            .snapshots(&here)
            .unwrap()
            .iter()
            .map(|s| &s.id)
            .collect::<Vec<_>>(),
        all.iter().map(|s| &s.id).collect::<Vec<_>>()
    );
    let keep_last = Retention {
        keep_last: Some(1),
        ..Retention::default()
    };
    elsewhere.forget(&keep_last, Some("files"), false).unwrap();
    let ids = |list: Vec<resurgo_vault::SnapshotInfo>| {
        let mut ids: Vec<String> = list.into_iter().map(|s| s.id).collect();
        ids.sort();
        ids
    };
    let mut now = vec![second.id.clone(), db.id.clone()];
    now.sort();
    assert_eq!(ids(index.snapshots(&here).unwrap()), now);
    assert_eq!(ids(index.snapshots(&here).unwrap()), ids(here.snapshots(None).unwrap()));

    // The index names a snapshot the repository does not hold (a forgotten one, by its
    // content): never listed.
    let stored = fs::read_to_string(index.path()).unwrap();
    let forged = stored.replacen(&second.id, &first.id, 1);
    fs::write(index.path(), &forged).unwrap();
    assert_eq!(ids(index.snapshots(&here).unwrap()), now);
    // An index of another repository, or unreadable: read again from the repository.
    fs::write(index.path(), stored.replace(&here.location(), "elsewhere")).unwrap();
    assert_eq!(ids(index.snapshots(&here).unwrap()), now);
    fs::write(index.path(), "{ not json").unwrap();
    assert_eq!(ids(index.snapshots(&here).unwrap()), now);
    // Not a repository: an error, as without the index.
    let gone = Repository::init(&local_config(&tmp.path().join("gone"))).unwrap();
    fs::remove_file(tmp.path().join("gone/store/config")).unwrap();
    assert!(matches!(index.snapshots(&gone), Err(VaultError::NotARepository { .. })));

    // Kept: opened once per configuration; another password is another open.
    let (_, kept) = Repository::open_kept(&config).unwrap();
    assert!(!kept);
    let (again, kept) = Repository::open_kept(&config).unwrap();
    assert!(kept);
    assert_eq!(ids(index.snapshots(&again).unwrap()), now);
    let wrong = RepoConfig {
        password: "not the password".into(),
        ..config.clone()
    };
    assert!(matches!(
        Repository::open_kept(&wrong),
        Err(VaultError::WrongPassword { .. })
    ));
    Repository::forget_kept(&config);
    assert!(!Repository::open_kept(&config).unwrap().1);
}
