//! Data protection through the command line: repositories, backup, replicate, restore,
//! verify, forget, and the controller's schedules and RPO tracking — on real files, real
//! repositories and a real SQLite database being written.

use std::path::Path;
use std::time::Duration;

use crate::util::Env;

/// A spec with a directory dataset `files` and a SQLite dataset `notes`, both owned by `web`
/// at site a, replicated to b.
fn protected_spec(env: &Env, extra_dataset_fields: &str) -> String {
    let web = Env::notes_web(7201 + u16::from(env.block) - 120);
    env.with_repositories(&env.spec(&web))
        + &format!(
            "datasets:\n  files:\n    service: web\n    type: directory\n    path: {}\n    retention: {{ last: 2 }}\n    check: {{ command: [test, -f, tree/deep/er/file-3] }}\n{extra_dataset_fields}  notes:\n    service: web\n    type: sqlite\n    path: data/notes.db\n",
            env.path().join("files").display()
        )
}

fn make_tree(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let deep = root.join("tree/deep/er");
    std::fs::create_dir_all(&deep).unwrap();
    for i in 0..5 {
        std::fs::write(
            deep.join(format!("file-{i}")),
            format!("content {i}\n").repeat(1000 * (i + 1)),
        )
        .unwrap();
    }
    let script = root.join("tree/run.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o750)).unwrap();
}

/// (relative path, bytes, mode, mtime) of every file under `root`, sorted.
fn listing(root: &Path) -> Vec<(String, Vec<u8>, u32, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap(), m.mode(), m.mtime()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn directory_and_sqlite_backed_up_replicated_restored_and_verified() {
    let env = Env::new(121);
    make_tree(&env.path().join("files"));
    env.write_spec(&protected_spec(&env, ""));
    assert_eq!(env.run(&["apply"]).code, 0);
    let init = env.run(&["repo", "init", "--json"]);
    assert_eq!(init.code, 0, "{}{}", init.stdout, init.stderr);
    // The canary has written rows before the backup begins.
    let status = env.status();
    assert_eq!(
        crate::util::find_service(&status, "a", "web").unwrap()["health"],
        "healthy"
    );

    // The canary writer runs all along; note its last acknowledged write before the backup.
    let port = 7201 + u16::from(env.block) - 120;
    let acked_before: i64 = crate::util::poll(Duration::from_secs(10), || {
        let body = crate::util::http_get(&format!("{}:{port}", env.addr(1)), "/canary")?;
        let v: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
        v["seq"].as_i64()
    })
    .expect("the canary has written");
    let backup = env.run(&["backup", "--replicate", "--json"]);
    assert_eq!(backup.code, 0, "{}{}", backup.stdout, backup.stderr);
    let lines: Vec<serde_json::Value> = backup
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let done: Vec<&str> = lines
        .iter()
        .filter(|l| l["event"] == "done")
        .map(|l| l["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        done,
        [
            "back up files at site a",
            "replicate files a → b",
            "back up notes at site a",
            "replicate notes a → b"
        ]
    );

    // Restore at the other site, byte-identical, modes and mtimes kept.
    let to = env.path().join("restored-files");
    let out = env.run(&["restore", "files", "--site", "b", "--to", to.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        listing(&to),
        listing(&env.path().join("files")),
        "restored byte-identical, modes and mtimes kept"
    );

    // The SQLite copy, taken while the writer ran, restored at the other site: intact, and
    // holding every write acknowledged before the backup began.
    let notes_to = env.path().join("restored-notes");
    let out = env.run(&["restore", "notes", "--site", "b", "--to", notes_to.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let db = rusqlite::Connection::open(notes_to.join("notes.db")).expect("restored database opens");
    let integrity: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    let restored_max: i64 = db.query_row("SELECT max(seq) FROM canary", [], |r| r.get(0)).unwrap();
    assert!(
        restored_max >= acked_before,
        "restored canary reaches {restored_max}, acknowledged before the backup: {acked_before}"
    );

    // A second replication transfers nothing new.
    let again = env.run(&["replicate", "files", "--json"]);
    assert_eq!(again.code, 0);
    assert!(again.stdout.contains("\"snapshots_copied\":0"), "{}", again.stdout);

    // Verification by restore, at the replica, with each dataset's check.
    let verify = env.run(&["verify", "notes", "--json"]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    assert!(
        verify.stdout.contains("PRAGMA integrity_check → ok"),
        "{}",
        verify.stdout
    );
    let verify = env.run(&["verify", "files", "--json"]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);

    // Restoring over existing data is refused.
    let refused = env.run(&["restore", "files", "--site", "b", "--to", to.to_str().unwrap()]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("is not empty: restore refuses to overwrite"),
        "{}",
        refused.stderr
    );

    // Status reports the recovery point at both sites.
    let status = env.status();
    let files = status["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dataset"] == "files")
        .unwrap();
    let sites: Vec<&str> = files["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["site"].as_str().unwrap())
        .collect();
    assert_eq!(sites, ["a", "b"]);
    assert!(
        files["points"].as_array().unwrap().iter().all(|p| p["snapshots"] == 1),
        "{files}"
    );
}

#[test]
fn wrong_password_is_a_clear_error_and_changes_nothing() {
    let env = Env::new(122);
    make_tree(&env.path().join("files"));
    env.write_spec(&protected_spec(&env, ""));
    assert_eq!(env.run(&["repo", "init", "--site", "a"]).code, 0);
    let repo = env.path().join("backups/a");
    let before = listing(&repo);
    std::fs::write(env.path().join("backups/password"), "wrong password").unwrap();
    let out = env.run(&["backup", "files", "--json"]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("wrong password for repository"), "{}", out.stdout);
    assert_eq!(listing(&repo), before, "a wrong password changes nothing");
    let missing = {
        std::fs::remove_file(env.path().join("backups/password")).unwrap();
        env.run(&["snapshots", "--site", "a"])
    };
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("cannot read the repository password"),
        "{}",
        missing.stderr
    );
}

#[test]
fn forget_keeps_what_the_retention_says() {
    let env = Env::new(123);
    make_tree(&env.path().join("files"));
    env.write_spec(&protected_spec(&env, ""));
    assert_eq!(env.run(&["repo", "init", "--site", "a"]).code, 0);
    for i in 0..4 {
        std::fs::write(env.path().join("files/tree/changing"), format!("version {i}")).unwrap();
        let out = env.run(&["backup", "files"]);
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    }
    let out = env.run(&["forget", "files", "--site", "a", "--prune", "--json"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let snaps = env
        .run(&["snapshots", "--site", "a", "--dataset", "files", "--json"])
        .json();
    assert_eq!(
        snaps[0]["snapshots"].as_array().unwrap().len(),
        2,
        "retention keeps the last 2"
    );
    let check = env.run(&["repo", "check", "--site", "a", "--read-data", "--json"]);
    assert_eq!(check.code, 0, "pruned repository checks clean: {}", check.stdout);
}

#[test]
fn controller_backs_up_on_schedule_replicates_and_tracks_rpo() {
    let mut env = Env::new(124);
    make_tree(&env.path().join("files"));
    // `files` is backed up every 2 s with an RPO of 3 s. A pre hook fails while a marker file
    // exists: backups then fail, the recovery point ages past the objective, and the event log
    // says so; once the marker is gone the next backup brings it back within.
    let marker = env.path().join("block-backups");
    env.write_spec(&protected_spec(
        &env,
        &format!(
            "    schedule: 2s\n    rpo: 3s\n    verify_every: 1h\n    hooks: {{ pre: [test, \"!\", -e, {}] }}\n",
            marker.display()
        ),
    ));
    assert_eq!(env.run(&["repo", "init"]).code, 0);
    env.start_controller(&[]);
    let finished = env.wait_event("backup_finished", Duration::from_secs(20), |e| {
        e["kind"] == "backup_finished" && e["dataset"] == "files"
    });
    assert_eq!(finished["site"], "a");
    env.wait_event("replication_finished", Duration::from_secs(20), |e| {
        e["kind"] == "replication_finished" && e["dataset"] == "files" && e["site"] == "b"
    });
    env.wait_event("verify_passed", Duration::from_secs(30), |e| {
        e["kind"] == "verify_passed" && e["dataset"] == "files"
    });
    std::fs::write(&marker, "").unwrap();
    let failed = env.wait_event("backup_failed", Duration::from_secs(20), |e| {
        e["kind"] == "backup_failed" && e["dataset"] == "files"
    });
    assert!(failed["message"].as_str().unwrap().contains("pre hook"), "{failed}");
    let breached = env.wait_event("rpo_breached", Duration::from_secs(20), |e| {
        e["kind"] == "rpo_breached" && e["dataset"] == "files"
    });
    assert!(
        breached["message"].as_str().unwrap().contains("objective 3s"),
        "{breached}"
    );
    std::fs::remove_file(&marker).unwrap();
    env.wait_event("rpo_restored", Duration::from_secs(20), |e| {
        e["kind"] == "rpo_restored" && e["dataset"] == "files"
    });
    // Scheduled backups keep coming.
    let count = crate::util::poll(Duration::from_secs(20), || {
        let n = env
            .events()
            .iter()
            .filter(|e| e["kind"] == "backup_finished" && e["dataset"] == "files")
            .count();
        (n >= 3).then_some(n)
    });
    assert!(count.is_some(), "{}", env.dump_events());
}
