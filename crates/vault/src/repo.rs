//! A site's repository: the restic-format snapshot store (rustic_core behind this small API)
//! and the log archive beside it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::archive::LogArchive;
use crate::object::S3Credentials;
use crate::VaultError;

/// How to reach and open a repository. The password is resolved by the caller from the
/// secret reference the spec names, and never stored or printed.
#[derive(Clone)]
pub struct RepoConfig {
    pub url: String,
    pub password: String,
    pub s3: S3Credentials,
}

impl std::fmt::Debug for RepoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoConfig")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// What a snapshot is of; stored with it (as restic tags), so the catalogue can be rebuilt
/// from the repository alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupMeta {
    pub dataset: String,
    /// `directory`, `sqlite`, `pg-dump`, `pg-base`.
    pub kind: String,
    /// The site the data was taken at.
    pub site: String,
    /// Driver-specific facts, e.g. `wal_start`, `wal_end` for a base backup.
    pub labels: BTreeMap<String, String>,
}

/// One snapshot, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Full hex id.
    pub id: String,
    /// RFC 3339, UTC.
    pub time: String,
    /// Seconds since the epoch.
    pub unix: i64,
    pub meta: BackupMeta,
    pub paths: Vec<String>,
    pub files: u64,
    /// Bytes of the data backed up.
    pub bytes: u64,
    /// Bytes newly stored by this snapshot (after deduplication and compression).
    pub added: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// One line per problem, naming the damaged object.
    pub errors: Vec<String>,
    pub snapshots: usize,
    pub packs_read: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplicateReport {
    pub snapshots_copied: usize,
    pub snapshots_present: usize,
    pub segments_copied: usize,
    pub bytes: u64,
}

/// How many snapshots of each dataset to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ForgetReport {
    pub kept: Vec<String>,
    pub removed: Vec<String>,
    pub pruned_bytes: u64,
}

/// An open repository.
pub struct Repository {
    _private: (),
}

impl Repository {
    /// Creates a new repository at `config.url`; refuses if one exists.
    pub fn init(config: &RepoConfig) -> Result<Repository, VaultError> {
        let _ = config;
        todo!()
    }

    /// Opens an existing repository. A wrong password is [`VaultError::WrongPassword`].
    pub fn open(config: &RepoConfig) -> Result<Repository, VaultError> {
        let _ = config;
        todo!()
    }

    /// The repository URL, without credentials.
    pub fn location(&self) -> String {
        todo!()
    }

    /// What `restic -r` needs to read the snapshot store.
    pub fn restic_location(&self) -> String {
        todo!()
    }

    /// Backs up a file or folder.
    pub fn backup_path(&self, path: &Path, meta: &BackupMeta) -> Result<SnapshotInfo, VaultError> {
        let _ = (path, meta);
        todo!()
    }

    /// Backs up the standard output of `command` (argv, extra env) as one file named
    /// `filename`, streamed: nothing is written to local disk. Fails if the command fails.
    pub fn backup_command(
        &self,
        command: &[String],
        env: &[(String, String)],
        filename: &str,
        meta: &BackupMeta,
    ) -> Result<SnapshotInfo, VaultError> {
        let _ = (command, env, filename, meta);
        todo!()
    }

    /// Snapshots, oldest first; only `dataset`'s when given.
    pub fn snapshots(&self, dataset: Option<&str>) -> Result<Vec<SnapshotInfo>, VaultError> {
        let _ = dataset;
        todo!()
    }

    /// Restores a snapshot (id or unique id prefix) into `dest`, keeping permissions and times.
    pub fn restore(&self, snapshot: &str, dest: &Path) -> Result<(), VaultError> {
        let _ = (snapshot, dest);
        todo!()
    }

    /// Streams one file of a snapshot (e.g. a dump or a tar) into `out`.
    pub fn restore_file(
        &self,
        snapshot: &str,
        filename: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, VaultError> {
        let _ = (snapshot, filename, out);
        todo!()
    }

    /// Checks the repository's structure; with `read_data`, reads and verifies every pack.
    pub fn check(&self, read_data: bool) -> Result<CheckReport, VaultError> {
        let _ = read_data;
        todo!()
    }

    /// Copies to `target` the snapshots (of `dataset`, or all) and log segments it lacks —
    /// only missing data is transferred — and verifies what arrived.
    pub fn replicate_to(&self, target: &Repository, dataset: Option<&str>) -> Result<ReplicateReport, VaultError> {
        let _ = (target, dataset);
        todo!()
    }

    /// Removes snapshots the policy does not keep (per dataset); with `prune`, frees their data.
    pub fn forget(&self, keep: &Retention, dataset: Option<&str>, prune: bool) -> Result<ForgetReport, VaultError> {
        let _ = (keep, dataset, prune);
        todo!()
    }

    /// The log archive beside the snapshot store.
    pub fn archive(&self) -> LogArchive {
        todo!()
    }
}
