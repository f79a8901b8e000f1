//! SQLite: a consistent copy of a live database through SQLite's online backup API, taken in
//! one step under a read transaction, so it holds exactly the writes committed before it began
//! while the application keeps writing.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::repo::{BackupMeta, Repository, SnapshotInfo};
use crate::VaultError;

fn sqlite_err(path: &Path, e: rusqlite::Error) -> VaultError {
    VaultError::Store {
        location: path.display().to_string(),
        message: format!("sqlite: {e}"),
    }
}

/// Copies the live database `src` into `dest` (created or replaced), consistently.
pub fn consistent_copy(src: &Path, dest: &Path) -> Result<(), VaultError> {
    if !src.exists() {
        return Err(VaultError::NotFound {
            what: "SQLite database",
            name: src.display().to_string(),
            location: "the local disk".into(),
        });
    }
    let source = Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| sqlite_err(src, e))?;
    // A writer may hold the lock for a moment: wait rather than fail.
    source
        .busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| sqlite_err(src, e))?;
    let _ = std::fs::remove_file(dest);
    let mut target = Connection::open(dest).map_err(|e| sqlite_err(dest, e))?;
    let backup = rusqlite::backup::Backup::new(&source, &mut target).map_err(|e| sqlite_err(dest, e))?;
    // All pages in one step (-1): the copy is one read transaction of the source. A writer
    // holding its lock makes the step report busy; wait and try again, within a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match backup.step(-1).map_err(|e| sqlite_err(src, e))? {
            rusqlite::backup::StepResult::Done => return Ok(()),
            _ if std::time::Instant::now() >= deadline => {
                return Err(VaultError::Store {
                    location: src.display().to_string(),
                    message: "sqlite: the database stayed locked for 30s; no consistent copy could be taken".into(),
                })
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

/// Backs up a live database: a consistent copy in `scratch` (removed afterwards), stored under
/// the database's file name.
pub fn backup(repo: &Repository, db: &Path, scratch: &Path, meta: &BackupMeta) -> Result<SnapshotInfo, VaultError> {
    let name = db
        .file_name()
        .map_or_else(|| "database.sqlite".into(), |n| n.to_string_lossy().into_owned());
    let dir = scratch.join(format!("sqlite-{}-{}", meta.dataset, std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| VaultError::Io {
        what: "cannot create",
        path: dir.clone(),
        source: e,
    })?;
    let copy = dir.join(&name);
    let result = consistent_copy(db, &copy).and_then(|()| {
        let mut meta = meta.clone();
        meta.labels.insert("file".into(), name.clone());
        repo.backup_path(&copy, &meta)
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Runs a query and returns its rows, one per line, columns separated by `|`.
pub fn query(db: &Path, sql: &str) -> Result<String, VaultError> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| sqlite_err(db, e))?;
    let mut stmt = conn.prepare(sql).map_err(|e| sqlite_err(db, e))?;
    let columns = stmt.column_count();
    let mut rows = stmt.query([]).map_err(|e| sqlite_err(db, e))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| sqlite_err(db, e))? {
        let mut cells = Vec::with_capacity(columns);
        for i in 0..columns {
            let v: rusqlite::types::Value = row.get(i).map_err(|e| sqlite_err(db, e))?;
            cells.push(match v {
                rusqlite::types::Value::Null => String::new(),
                rusqlite::types::Value::Integer(i) => i.to_string(),
                rusqlite::types::Value::Real(f) => f.to_string(),
                rusqlite::types::Value::Text(t) => t,
                rusqlite::types::Value::Blob(b) => format!("<{} bytes>", b.len()),
            });
        }
        out.push(cells.join("|"));
    }
    Ok(out.join("\n"))
}

/// `PRAGMA integrity_check`: `Ok(())` when SQLite answers `ok`.
pub fn integrity_check(db: &Path) -> Result<(), VaultError> {
    let answer = query(db, "PRAGMA integrity_check")?;
    if answer.trim() == "ok" {
        Ok(())
    } else {
        Err(VaultError::Corrupt {
            location: db.display().to_string(),
            object: db.display().to_string(),
            reason: format!("integrity_check: {}", answer.trim()),
        })
    }
}

/// Where a restored database is: the snapshot holds one file named by its `file` label.
pub fn restored_path(restored_root: &Path, snapshot: &SnapshotInfo) -> PathBuf {
    let name = snapshot
        .meta
        .labels
        .get("file")
        .cloned()
        .unwrap_or_else(|| "database.sqlite".into());
    restored_root.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_of_a_database_being_written_is_consistent_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
            .unwrap();
        drop(conn);
        // A writer commits rows one by one and reports each acknowledged id.
        let (tx, rx) = std::sync::mpsc::channel::<i64>();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let db = db.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let conn = Connection::open(&db).unwrap();
                conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    conn.execute("INSERT INTO t(id, v) VALUES (?1, hex(randomblob(200)))", [i])
                        .unwrap();
                    tx.send(i).unwrap();
                }
            })
        };
        // Wait until some writes are acknowledged, then copy while the writer goes on.
        let mut acked = 0;
        while acked < 500 {
            acked = rx.recv().unwrap();
        }
        let copy = dir.path().join("copy.db");
        consistent_copy(&db, &copy).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        integrity_check(&copy).unwrap();
        let max: i64 = query(&copy, "SELECT max(id) FROM t").unwrap().parse().unwrap();
        let count: i64 = query(&copy, "SELECT count(*) FROM t").unwrap().parse().unwrap();
        assert!(
            max >= acked,
            "every write acknowledged before the copy began is in it ({max} < {acked})"
        );
        assert_eq!(count, max, "no gaps: the copy is one consistent state");
    }
}
