//! Workspaces on DR capacity (DESIGN §6.5, §12), through the `resurgo` binary: a QA workspace
//! at b seeded from a's replicated backups — PostgreSQL and SQLite — cloned by reflink from
//! golden copies on a real XFS filesystem (a loop device the test makes), its data equal to
//! the restore point; its PostgreSQL cannot archive into the production repository; a failover
//! to b preempts it first (the run's `preempt` step and phase) and b's agent brings it back
//! after failback. On demand: a workspace past its TTL is deleted by b's agent with nothing
//! left, a failover preempts a workspace still being seeded without waiting for it, and one
//! whose masking fails is destroyed, never handed out.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::pg::{pg_bin, run_psql};
use crate::pg_failover::PgPair;
use crate::util::{files_under, poll, Env, BIN};

/// An XFS filesystem with reflink, on a loop device over a file the test made, mounted at a
/// folder; unmounted (and the device freed) when dropped, whatever happened.
pub(crate) struct Xfs {
    pub at: PathBuf,
    image: PathBuf,
}

impl Xfs {
    /// Makes a `size_mib` XFS (`mkfs.xfs -m reflink=1`, Debian xfsprogs) and mounts it at `at`.
    pub fn mount(at: &Path, size_mib: u64) -> Xfs {
        let image = at.with_extension("xfs.img");
        let file = std::fs::File::create(&image).unwrap();
        file.set_len(size_mib << 20).unwrap();
        drop(file);
        let mkfs = Command::new("mkfs.xfs")
            .args(["-q", "-f", "-m", "reflink=1"])
            .arg(&image)
            .output()
            .unwrap_or_else(|e| panic!("mkfs.xfs (Debian package xfsprogs) cannot run: {e}"));
        assert!(
            mkfs.status.success(),
            "mkfs.xfs: {}",
            String::from_utf8_lossy(&mkfs.stderr)
        );
        std::fs::create_dir_all(at).unwrap();
        let mount = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(at)
            .output()
            .unwrap();
        assert!(
            mount.status.success(),
            "mount -o loop: {}",
            String::from_utf8_lossy(&mount.stderr)
        );
        Xfs {
            at: at.to_path_buf(),
            image,
        }
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        // Whatever a failed test left mounted below it first (an overlay clone).
        let _ = Command::new("umount").args(["-R", "-l"]).arg(&self.at).status();
        let _ = std::fs::remove_file(&self.image);
    }
}

/// The workspace `name` in `resurgo workspace list --json`, if listed.
fn listed(env: &Env, name: &str) -> Option<Value> {
    let out = env.run_shared(&["workspace", "list", "--json"]);
    let list: Value = serde_json::from_str(&out.stdout).ok()?;
    list.as_array()?.iter().find(|w| w["name"] == name).cloned()
}

/// `psql` run inside network namespace `netns` (a workspace's), against `addr:port`.
pub(crate) fn psql_in(netns: &str, addr: &str, port: u16, sql: &str) -> Result<String, String> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns]).arg(pg_bin("psql"));
    run_psql(
        cmd,
        &format!("host={addr} port={port} user=nobody dbname=postgres connect_timeout=5"),
        sql,
    )
}

/// The example app's writes (seq, time, site) in an SQLite file, up to `upto`.
fn notes(db: &Path, upto: i64) -> Vec<(i64, String, String)> {
    let db = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt = db
        .prepare("SELECT seq, at, site FROM canary WHERE seq <= ?1 ORDER BY seq")
        .unwrap();
    stmt.query_map([upto], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn max_note(db: &Path) -> i64 {
    let db = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    db.query_row("SELECT coalesce(max(seq), 0) FROM canary", [], |r| r.get(0))
        .unwrap_or(0)
}

/// Network namespaces of workspaces and sandboxes now.
fn namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// DESIGN §6.5 end to end.
#[test]
fn a_qa_workspace_at_b_is_seeded_from_as_backups_preempted_by_a_failover_and_back_after_failback() {
    let mut pair = PgPair::start(175, "2s");
    let web_port = 7551;
    // web (SQLite notes, written every 20 ms) beside db at a; the QA workspace at b.
    let spec_path = pair.env.spec_dir().join("resurgo.yaml");
    let text = std::fs::read_to_string(&spec_path).unwrap();
    let text = text
        .replacen("sites:\n", &format!("inputs:\n  resurgo: {BIN}\nsites:\n"), 1)
        .replacen("datasets:\n", &format!("{}datasets:\n", Env::notes_web(web_port)), 1)
        + "  notes:\n    service: web\n    type: sqlite\n    path: data/notes.db\n    replicate_to: [b]\n\
           workspaces:\n  qa:\n    site: b\n    services: [db, web]\n    priority: 5\n    resources: { cpu: 1, memory: 1Gi }\n\
           \x20   owners: [qa-team]\n    masking: [\"test -n \\\"$RESURGO_DATASET_NOTES\\\"\"]\n";
    std::fs::write(&spec_path, text).unwrap();
    let apply = pair.resurgo(&["apply"]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    let notes_at_a = pair.root.join("a/services/web/data/notes.db");
    assert!(
        poll(Duration::from_secs(20), || (notes_at_a.exists()
            && max_note(&notes_at_a) > 5)
            .then_some(()))
        .is_some(),
        "web writes no notes at a"
    );

    // Production data, backed up and replicated to b.
    for id in 1..=50 {
        pair.sql("a", &format!("INSERT INTO orders (id) VALUES ({id})"))
            .unwrap();
    }
    pair.sql("a", "SELECT pg_switch_wal()").unwrap();
    pair.wait_archived(Duration::from_secs(60));
    for args in [["replicate", "orders"], ["backup", "notes"], ["replicate", "notes"]] {
        let out = pair.resurgo(&args);
        assert_eq!(out.code, 0, "{args:?}: {}{}", out.stdout, out.stderr);
    }

    // The golden copies and the clones on XFS with reflink.
    let xfs = Xfs::mount(&pair.env.state().join("workspaces"), 1024);
    let out = pair.resurgo(&["workspace", "create", "qa", "--json"]);
    assert_eq!(
        out.code,
        0,
        "workspace create:\n{}{}\n{}",
        out.stdout,
        out.stderr,
        pair.log("a")
    );
    let qa: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert_eq!(qa["state"], "ready", "{qa:#}");
    let clones = qa["clones"].as_array().unwrap();
    assert_eq!(clones.len(), 2, "{qa:#}");
    for clone in clones {
        assert_eq!(clone["method"], "reflink", "on XFS with reflink: {clone}");
        assert!(
            Path::new(clone["path"].as_str().unwrap()).starts_with(&xfs.at),
            "{clone}"
        );
    }
    eprintln!(
        "workspace qa ready in {:.2} s: {}",
        qa["ready_s"].as_f64().unwrap(),
        clones
            .iter()
            .map(|c| format!(
                "{} by {} in {:.3} s",
                c["dataset"],
                c["method"],
                c["took_s"].as_f64().unwrap()
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let netns = qa["netns"].as_str().unwrap().to_string();
    assert!(namespaces().contains(&netns), "{netns}");
    // `status` shows it, with the capacity b lends.
    let status = pair.resurgo(&["status", "--json"]).json();
    let shown = status["workspaces"]
        .as_array()
        .and_then(|w| w.iter().find(|w| w["name"] == "qa"))
        .unwrap_or_else(|| panic!("status shows no workspace qa: {status:#}"));
    assert_eq!(shown["state"], "ready", "{shown:#}");
    assert!(status["lent"].to_string().contains("\"b\""), "{status:#}");

    // Its data is the restore point's: every order, and the notes of the replicated snapshot.
    let ids = psql_in(
        &netns,
        &pair.addr_b,
        pair.port,
        "SELECT string_agg(id::text, ',' ORDER BY id) FROM orders",
    )
    .unwrap_or_else(|e| panic!("the workspace's PostgreSQL: {e}"));
    assert_eq!(ids, (1..=50).map(|i| i.to_string()).collect::<Vec<_>>().join(","));
    let restored = pair.env.path().join("notes-restored");
    let out = pair.resurgo(&["restore", "notes", "--site", "b", "--to", restored.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let snapshot_db = restored.join("notes.db");
    let upto = max_note(&snapshot_db);
    let clone_db = clones.iter().find(|c| c["dataset"] == "notes").unwrap()["path"]
        .as_str()
        .unwrap()
        .to_string();
    let clone_db = PathBuf::from(clone_db).join("notes.db");
    assert!(upto > 0);
    assert_eq!(
        notes(&clone_db, upto),
        notes(&snapshot_db, upto),
        "the clone holds the restore point's notes"
    );
    // Production was not touched: a still the primary, writing.
    assert_eq!(pair.sql("a", "SELECT pg_is_in_recovery()").unwrap(), "f");

    // The clone never archives, and the log archive refuses it even if it tried.
    assert_eq!(
        psql_in(&netns, &pair.addr_b, pair.port, "SHOW archive_mode").unwrap(),
        "off"
    );
    let pgdata = PathBuf::from(
        clones.iter().find(|c| c["dataset"] == "orders").unwrap()["path"]
            .as_str()
            .unwrap(),
    );
    let segment = std::fs::read_dir(pgdata.join("pg_wal"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.len() == 24)
        .expect("a WAL segment in the clone");
    let archived_before = files_under(&pair.backups.join("b"));
    let push = Command::new(BIN)
        .args(["wal", "push", "--state"])
        .arg(pair.env.state())
        .args(["--site", "b", "--dataset", "orders"])
        .arg(format!("pg_wal/{segment}"))
        .current_dir(&pgdata)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&push.stderr);
    assert!(!push.status.success(), "a clone's segment was archived: {said}");
    assert!(said.contains("is a clone"), "{said}");
    assert_eq!(
        files_under(&pair.backups.join("b")),
        archived_before,
        "b's repository unchanged"
    );

    // Site a is lost; the failover to b takes qa's capacity back first.
    pair.lose_a();
    let failover = pair.resurgo(&["failover", "--to", "b", "--json"]);
    assert_eq!(
        failover.code,
        0,
        "failover:\n{}{}\n{}",
        failover.stdout,
        failover.stderr,
        pair.log("b")
    );
    let runs = pair.resurgo(&["runs", "--json"]).json();
    let run = runs["runs"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(run["steps"][0]["name"], "preempt workspaces at b", "{run:#}");
    let preempt_s = run["measures"]["preempt_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("{run:#}"));
    eprintln!(
        "failover to b: preempt phase {preempt_s:.2} s of RTO {}",
        run["measures"]["rto_s"]
    );
    assert!(preempt_s < 10.0, "{preempt_s}");
    let qa = listed(&pair.env, "qa").expect("qa is kept (on_preempt: stop)");
    assert_eq!(qa["state"], "preempted", "{qa:#}");
    assert!(
        psql_in(&netns, &pair.addr_b, pair.port, "SELECT 1").is_err(),
        "qa's PostgreSQL still answers"
    );
    let events = pair.env.events();
    let preempted = events
        .iter()
        .find(|e| e["kind"] == "workspace_preempted")
        .unwrap_or_else(|| panic!("{}", pair.env.dump_events()));
    assert!(
        preempted["message"].as_str().unwrap().contains("qa-team"),
        "{preempted}"
    );
    // No workspace is made while b serves production.
    let refused = pair.resurgo(&[
        "workspace",
        "create",
        "qa2",
        "--site",
        "b",
        "--services",
        "web",
        "--json",
    ]);
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("serving production") || refused.stderr.contains("where service `web` is active"),
        "{}",
        refused.stderr
    );

    // a comes back (its repository reachable again); failback; b's agent restarts qa.
    std::fs::rename(pair.backups.join("a-lost"), pair.backups.join("a")).unwrap();
    let failback = pair.resurgo(&["failback", "--json"]);
    assert_eq!(
        failback.code,
        0,
        "failback:\n{}{}\n{}",
        failback.stdout,
        failback.stderr,
        pair.log("a")
    );
    pair.env.start_controller(&["--agents"]);
    let back = poll(Duration::from_secs(60), || {
        listed(&pair.env, "qa").filter(|w| w["state"] == "ready")
    });
    assert!(back.is_some(), "qa never came back:\n{}", pair.env.dump_events());
    let ids = poll(Duration::from_secs(60), || {
        psql_in(&netns, &pair.addr_b, pair.port, "SELECT count(*) FROM orders").ok()
    });
    assert_eq!(ids.as_deref(), Some("50"), "qa serves its own data again");
    let restored = pair
        .env
        .events()
        .into_iter()
        .find(|e| e["kind"] == "workspace_restored")
        .unwrap_or_else(|| panic!("{}", pair.env.dump_events()));
    assert!(restored["message"].as_str().unwrap().contains("qa-team"), "{restored}");
    pair.env.stop_controller();

    let out = pair.resurgo(&["workspace", "delete", "qa"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(!namespaces().contains(&netns), "qa's namespace is left");
    drop(xfs);
}

/// web (SQLite notes) at a, backed up and replicated to b, and b's agent running.
fn notes_env(block: u8) -> Env {
    let mut env = Env::new(block);
    let spec = env.spec(&Env::notes_web(7560 + block as u16 % 10))
        + "datasets:\n  notes:\n    service: web\n    type: sqlite\n    path: data/notes.db\n    replicate_to: [b]\n";
    env.write_spec(&env.with_repositories(&spec));
    for args in [
        &["repo", "init"][..],
        &["apply"],
        &["backup", "notes"],
        &["replicate", "notes"],
    ] {
        let out = env.run(args);
        assert_eq!(out.code, 0, "{args:?}: {}{}", out.stdout, out.stderr);
    }
    env.start_controller(&["--agents"]);
    env
}

/// A workspace made on demand with a short TTL: b's agent deletes it once it has passed, and
/// nothing of it is left (namespace, clones, folder).
#[test]
fn a_workspace_past_its_ttl_is_deleted_by_its_sites_agent_leaving_nothing() {
    let env = notes_env(176);
    let out = env.run(&[
        "workspace",
        "create",
        "tmp",
        "--site",
        "b",
        "--services",
        "web",
        "--ttl",
        "4s",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let ws: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(ws["state"], "ready", "{ws:#}");
    let netns = ws["netns"].as_str().unwrap().to_string();
    assert!(namespaces().contains(&netns), "{netns}");
    let folder = env.state().join("workspaces").join("tmp");
    assert!(folder.exists());
    let gone = poll(Duration::from_secs(60), || listed(&env, "tmp").is_none().then_some(()));
    assert!(gone.is_some(), "tmp outlived its TTL:\n{}", env.dump_events());
    env.wait_event("workspace_expired", Duration::from_secs(10), |e| {
        e["kind"] == "workspace_expired"
    });
    assert!(!folder.exists(), "its folder is left");
    assert!(!namespaces().contains(&netns), "its namespace is left");
}

/// A failover to b while a workspace there is still being seeded (its masking hook is slow):
/// the failover does not wait for it, and the workspace is destroyed, never handed out.
#[test]
fn a_failover_preempts_a_workspace_being_seeded_without_waiting_for_it() {
    let mut env = notes_env(177);
    let seeding = Command::new(BIN)
        .args([
            "workspace",
            "create",
            "slow",
            "--site",
            "b",
            "--services",
            "web",
            "--mask",
            "sleep 20",
        ])
        .arg("--state")
        .arg(env.state())
        .arg("--spec")
        .arg(env.spec_dir())
        .current_dir(env.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seeded = poll(Duration::from_secs(60), || {
        listed(&env, "slow").filter(|w| w["state"] == "seeding" && w["netns"] != "")
    });
    let netns = seeded.expect("slow never got to its masking")["netns"]
        .as_str()
        .unwrap()
        .to_string();
    env.stop_controller();
    let began = Instant::now();
    let failover = env.run(&["failover", "--to", "b", "--json"]);
    let took = began.elapsed();
    assert_eq!(failover.code, 0, "{}{}", failover.stdout, failover.stderr);
    assert!(
        took < Duration::from_secs(20),
        "the failover waited for the workspace: {took:?}"
    );
    let out = seeding.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a preempted workspace was handed out");
    assert!(said.contains("preempted"), "{said}");
    assert!(listed(&env, "slow").is_none(), "slow is still listed");
    assert!(!namespaces().contains(&netns), "its namespace is left");
}

/// Masking fails closed: a workspace whose masking hook fails is destroyed, never handed out,
/// and the command says which hook failed and what it printed.
#[test]
fn a_workspace_whose_masking_fails_is_destroyed_never_handed_out() {
    let env = notes_env(178);
    let out = env.run(&[
        "workspace",
        "create",
        "leaky",
        "--site",
        "b",
        "--services",
        "web",
        "--mask",
        "true",
        "--mask",
        "echo cannot mask the emails >&2; exit 3",
    ]);
    assert_ne!(
        out.code, 0,
        "a workspace whose masking failed was handed out: {}",
        out.stdout
    );
    assert!(out.stderr.contains("masking hook 2 failed"), "{}", out.stderr);
    assert!(out.stderr.contains("cannot mask the emails"), "{}", out.stderr);
    assert!(listed(&env, "leaky").is_none(), "leaky is listed");
    assert!(
        !env.state().join("workspaces").join("leaky").exists(),
        "its folder is left"
    );
    env.wait_event("workspace_failed", Duration::from_secs(10), |e| {
        e["kind"] == "workspace_failed"
    });
}

/// Golden copies are reused only when they hold what the seed asks for: a workspace seeded at
/// a time before some writes gets none of them even though a newer golden copy of the same
/// base backup exists, and a second `latest` workspace, nothing archived since, reuses the
/// first one's golden copy instead of restoring again.
#[test]
fn a_golden_copy_is_reused_only_for_the_same_seed_and_the_same_log_archive() {
    let pair = PgPair::start(179, "2s");
    let count = |netns: &str| psql_in(netns, &pair.addr_b, pair.port, "SELECT count(*) FROM orders");
    let write = |from: i64, to: i64| {
        for id in from..=to {
            pair.sql("a", &format!("INSERT INTO orders (id) VALUES ({id})"))
                .unwrap();
        }
        pair.sql("a", "SELECT pg_switch_wal()").unwrap();
        pair.wait_archived(Duration::from_secs(60));
    };
    write(1, 10);
    std::thread::sleep(Duration::from_millis(1100)); // a second between the two batches' commits
    let between = pair
        .sql(
            "a",
            "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    write(11, 20);
    let out = pair.resurgo(&["replicate", "orders"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let create = |name: &str, seed: &str| -> Value {
        let out = pair.resurgo(&[
            "workspace",
            "create",
            name,
            "--site",
            "b",
            "--services",
            "db",
            "--seed",
            seed,
            "--json",
        ]);
        assert_eq!(out.code, 0, "workspace create {name}:\n{}{}", out.stdout, out.stderr);
        serde_json::from_str(&out.stdout).unwrap()
    };
    let goldens = || {
        files_under(&pair.env.state().join("workspaces/.golden"))
            .into_iter()
            .filter(|f| f.ends_with("golden.json"))
            .count()
    };
    let newest = create("w1", "latest");
    assert_eq!(count(newest["netns"].as_str().unwrap()).as_deref(), Ok("20"));
    let pinned = create("w2", &between);
    assert_eq!(
        count(pinned["netns"].as_str().unwrap()).as_deref(),
        Ok("10"),
        "a workspace seeded at {between} holds only what was written before"
    );
    assert_eq!(goldens(), 2, "one golden copy per seed");
    let again = create("w3", "latest");
    assert_eq!(count(again["netns"].as_str().unwrap()).as_deref(), Ok("20"));
    assert_eq!(goldens(), 2, "nothing archived since: w1's golden copy is reused");
    for name in ["w1", "w2", "w3"] {
        let out = pair.resurgo(&["workspace", "delete", name]);
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    }
}
