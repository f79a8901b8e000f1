//! A local index of a repository's snapshots, so that knowing what a repository holds costs
//! one listing of its `snapshots/` folder rather than one read and decryption per snapshot
//! (`/metrics`, `status` and the schedule ask often; a repository holds thousands).
//!
//! It cannot make an answer wrong, only cheaper. *Which* snapshots exist is never taken from
//! the index: every use lists the repository, keeps only the ids listed, and reads the ones
//! the index does not know. *What* a snapshot is can be: a snapshot's id is the hash of its
//! file as stored (restic's format) and a snapshot file is never rewritten, so what was read
//! under an id is what the repository holds under it for as long as it holds it. Hence a
//! repository another host wrote (a replication into it, a forget elsewhere) is seen at
//! once, with no hook in the code that writes; and an index that is absent, unreadable,
//! partial, of another repository (its `location` differs) or written by a concurrent use
//! costs reads, never a wrong list. A repository that cannot be listed is an error, as
//! without the index.
//!
//! The file is JSON, rewritten (a temporary file, then renamed) only when the listing
//! changed: two uses at once each write a true index, and the last one stays.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::repo::{Repository, SnapshotInfo};
use crate::VaultError;

/// Bumped when the stored form changes: an index of another format is not read.
const FORMAT: u32 = 1;

/// The index of one repository, in a file of the caller's state folder.
#[derive(Debug, Clone)]
pub struct SnapshotIndex {
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    format: u32,
    /// The repository indexed ([`Repository::location`]).
    location: String,
    snapshots: Vec<SnapshotInfo>,
}

impl SnapshotIndex {
    pub fn new(path: impl Into<PathBuf>) -> SnapshotIndex {
        SnapshotIndex { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The snapshots `repo` holds now, oldest first, as [`Repository::snapshots`] lists them:
    /// the ids listed from the repository, each described by the index or, when it does not
    /// know it, read from the repository (and then added to the index).
    pub fn snapshots(&self, repo: &Repository) -> Result<Vec<SnapshotInfo>, VaultError> {
        let location = repo.location();
        let ids = repo.snapshot_ids()?;
        let mut known: BTreeMap<String, SnapshotInfo> = self
            .load()
            .filter(|s| s.format == FORMAT && s.location == location)
            .map(|s| s.snapshots.into_iter().map(|i| (i.id.clone(), i)).collect())
            .unwrap_or_default();
        let indexed = known.len();
        let missing: Vec<String> = ids.iter().filter(|id| !known.contains_key(*id)).cloned().collect();
        let still_indexed = ids.len() - missing.len();
        for info in repo.snapshots_with_ids(&missing)? {
            known.insert(info.id.clone(), info);
        }
        let mut listed: Vec<SnapshotInfo> = ids.iter().filter_map(|id| known.remove(id)).collect();
        listed.sort_unstable_by(|a, b| (a.unix, &a.time, &a.id).cmp(&(b.unix, &b.time, &b.id)));
        // Changed when a snapshot was read or one indexed is gone.
        if !missing.is_empty() || indexed != still_indexed {
            // An index not written costs reads next time, nothing else.
            let _ = self.store(&location, &listed);
        }
        Ok(listed)
    }

    fn load(&self) -> Option<Stored> {
        serde_json::from_slice(&std::fs::read(&self.path).ok()?).ok()
    }

    fn store(&self, location: &str, snapshots: &[SnapshotInfo]) -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::DirBuilderExt as _;
        if let Some(dir) = self.path.parent() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        let stored = Stored {
            format: FORMAT,
            location: location.to_string(),
            snapshots: snapshots.to_vec(),
        };
        let text = serde_json::to_vec(&stored).map_err(std::io::Error::other)?;
        // A temporary name of this process and call alone: concurrent uses never rename
        // each other's file.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(format!(".{}.{seq}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let written = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(&text))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}
