//! A site's repository: the restic-format snapshot store (rustic_core behind this small API)
//! and the log archive beside it.
//!
//! Each operation builds a fresh rustic_core repository over the object store, opened with the
//! master key found once by [`Repository::open`]: no key derivation per operation, and every
//! operation reads the current index (a rustic repository indexed once does not see blobs
//! written after, and would store them again).
//!
//! What a snapshot is of travels with it as restic tags — `resurgo.dataset=NAME`,
//! `resurgo.kind=KIND`, `resurgo.site=SITE`, `resurgo.label.KEY=VALUE` — with `%`, `,` and `=`
//! in names and values escaped as `%25`, `%2C`, `%3D` (restic splits tag lists at commas); the
//! snapshot's hostname is the site.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustic_core::repofile::{MasterKey, SnapshotFile};
use rustic_core::{
    BackupOptions, CheckOptions, ConfigOptions, Credentials, KeepOptions, KeyOptions, LocalDestination, LsOptions,
    OpenStatus, PathList, PruneOptions, RepositoryBackends, RepositoryOptions, RestoreOptions, RusticError,
    SnapshotGroupCriterion, SnapshotOptions, StringList,
};
use serde::{Deserialize, Serialize};

use crate::archive::{ArchiveKey, LogArchive};
use crate::object::{open_object_store, ObjectStore, S3Credentials};
use crate::progress::QuietProgress;
use crate::rustic::{essence, vault_error, CommandSource, StoreBackend, Veto};
use crate::VaultError;

/// The folder of the object store that holds the restic repository.
const STORE: &str = "store";
/// The folder of the log archive.
const LOGS: &str = "logs";
/// Age after which a temporary file of an interrupted write is removed by a prune.
const STALE_TEMPORARIES: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

type RusticRepo = rustic_core::Repository<OpenStatus>;

/// The repositories [`Repository::open_kept`] keeps, with what opened them.
static KEPT: Mutex<Vec<(RepoConfig, Repository)>> = Mutex::new(Vec::new());

/// How to reach and open a repository. The password is resolved by the caller from the
/// secret reference the spec names, and never stored or printed.
#[derive(Clone, PartialEq, Eq)]
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
    /// Findings that lose nothing, e.g. data of an interrupted backup that no index names yet
    /// (a later prune removes it).
    pub warnings: Vec<String>,
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
#[derive(Clone)]
pub struct Repository {
    url: String,
    objects: Arc<dyn ObjectStore>,
    key: MasterKey,
}

impl Repository {
    /// Creates a new repository at `config.url`; refuses if one exists.
    pub fn init(config: &RepoConfig) -> Result<Repository, VaultError> {
        let objects = open_object_store(&config.url, &config.s3)?;
        let location = objects.location();
        if objects.size(&config_key())?.is_some() {
            return Err(VaultError::AlreadyExists { location });
        }
        let backend = Arc::new(StoreBackend::new(objects.clone(), STORE));
        let created = rustic_core::Repository::new_with_progress(
            &repo_options(),
            &RepositoryBackends::new(backend.clone(), None),
            QuietProgress,
        )
        .and_then(|repo| {
            repo.init(
                &Credentials::password(&config.password),
                &KeyOptions::default(),
                &config_options(),
            )
        });
        match created {
            Ok(repo) => Ok(Repository {
                url: config.url.clone(),
                objects,
                key: repo.key(),
            }),
            Err(err) => {
                let err = vault_error(&location, &err);
                if matches!(err, VaultError::AlreadyExists { .. }) {
                    // Another init wrote `config` first: take back the key written here, which
                    // would open nothing of that repository.
                    for id in backend.keys_written() {
                        backend.remove_key(&id)?;
                    }
                }
                Err(err)
            }
        }
    }

    /// Opens an existing repository. A wrong password is [`VaultError::WrongPassword`].
    pub fn open(config: &RepoConfig) -> Result<Repository, VaultError> {
        let objects = open_object_store(&config.url, &config.s3)?;
        let location = objects.location();
        if objects.size(&config_key())?.is_none() {
            return Err(VaultError::NotARepository { location });
        }
        let backend = Arc::new(StoreBackend::new(objects.clone(), STORE));
        // Only reads: a wrong password changes nothing.
        let repo = rustic_core::Repository::new_with_progress(
            &repo_options(),
            &RepositoryBackends::new(backend, None),
            QuietProgress,
        )
        .and_then(|repo| repo.open(&Credentials::password(&config.password)))
        .map_err(|err| vault_error(&location, &err))?;
        Ok(Repository {
            url: config.url.clone(),
            objects,
            key: repo.key(),
        })
    }

    /// [`Repository::open`], once per process for each `config`: a key derivation costs about
    /// half a second, and a repository's master key never changes. Returns whether it was
    /// kept from an earlier open. A repository made anew at the same URL is another one, whose
    /// files the kept key cannot read: a caller that fails with a kept repository
    /// [forgets](Repository::forget_kept) it and opens again.
    pub fn open_kept(config: &RepoConfig) -> Result<(Repository, bool), VaultError> {
        let kept = || KEPT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, repo)) = kept().iter().find(|(c, _)| c == config) {
            return Ok((repo.clone(), true));
        }
        let repo = Repository::open(config)?;
        let mut all = kept();
        all.retain(|(c, _)| c != config);
        all.push((config.clone(), repo.clone()));
        Ok((repo, false))
    }

    /// Forgets the repository [`Repository::open_kept`] keeps for `config`.
    pub fn forget_kept(config: &RepoConfig) {
        KEPT.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(c, _)| c != config);
    }

    /// The ids (full hex) of the snapshots the repository holds now: one listing of its
    /// `snapshots/` folder, nothing read or decrypted. A store without the repository's
    /// `config` is not a repository (as for [`Repository::open`]), never an empty one.
    pub fn snapshot_ids(&self) -> Result<Vec<String>, VaultError> {
        if self.objects.size(&config_key())?.is_none() {
            return Err(VaultError::NotARepository {
                location: self.location(),
            });
        }
        let prefix = format!("{STORE}/snapshots/");
        Ok(self
            .objects
            .list(&prefix)?
            .into_iter()
            .filter_map(|(key, _)| key.strip_prefix(&prefix).map(str::to_string))
            // Only ids: a temporary file of a write in progress is not a snapshot yet.
            .filter(|name| name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect())
    }

    /// The snapshots with these full ids, each read and decrypted (one read each, no listing).
    pub fn snapshots_with_ids(&self, ids: &[String]) -> Result<Vec<SnapshotInfo>, VaultError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let repo = self.rustic(Arc::new(self.backend()))?;
        let snaps = repo.get_snapshots(ids).map_err(|e| self.error(&e))?;
        Ok(snaps.iter().map(snapshot_info).collect())
    }

    /// The repository URL, without credentials.
    pub fn location(&self) -> String {
        self.objects.location()
    }

    /// Every byte the repository's objects take — snapshot store and log archive — from a
    /// listing of its objects (their sizes as the store reports them; nothing is read).
    pub fn stored_bytes(&self) -> Result<u64, VaultError> {
        Ok(self.objects.list("")?.iter().map(|(_, size)| size).sum())
    }

    /// What `restic -r` needs to read the snapshot store.
    pub fn restic_location(&self) -> String {
        crate::object::restic_location(&self.url, &*self.objects, STORE)
    }

    /// Backs up a file or folder.
    pub fn backup_path(&self, path: &Path, meta: &BackupMeta) -> Result<SnapshotInfo, VaultError> {
        let path = std::fs::canonicalize(path).map_err(|source| VaultError::Io {
            what: "cannot back up",
            path: path.to_path_buf(),
            source,
        })?;
        let repo = self
            .rustic(Arc::new(self.backend()))?
            .to_indexed_ids()
            .map_err(|e| self.error(&e))?;
        let path_text = path.to_string_lossy().into_owned();

        // The parent (whose unchanged files are not read again) is the dataset's latest
        // snapshot of the same path, whichever site took it.
        let parent = repo
            .get_matching_snapshots(|sn| {
                decode_meta(sn).dataset == meta.dataset && sn.paths.iter().map(String::as_str).eq([path_text.as_str()])
            })
            .map_err(|e| self.error(&e))?
            .into_iter()
            .max_by(|a, b| a.time.cmp(&b.time));
        let mut opts = BackupOptions::default();
        opts.parent_opts.group_by = Some(SnapshotGroupCriterion::new());
        match parent {
            Some(parent) => opts.parent_opts.parents = vec![parent.id.to_hex().to_string()],
            None => opts.parent_opts.force = true,
        }
        let source = PathList::from_iter([path]);
        let snap = repo
            .backup(&opts, &source, self.new_snapshot(meta)?)
            .map_err(|e| self.error(&e))?;
        Ok(snapshot_info(&snap))
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
        if filename.is_empty() || filename.contains('/') || filename == "." || filename == ".." {
            return Err(VaultError::Store {
                location: self.location(),
                message: format!("`{filename}` is not a file name for a command's output"),
            });
        }
        let veto: Veto = Arc::new(Mutex::new(None));
        let backend = Arc::new(self.backend().with_veto(veto.clone()));
        // Open and index first: an unreachable repository does not start the command.
        let repo = self.rustic(backend)?.to_indexed_ids().map_err(|e| self.error(&e))?;
        let snap = self.new_snapshot(meta)?;
        let source = CommandSource::spawn(command, env, filename, veto)?;
        let mut opts = BackupOptions::default();
        // A stream has no parent whose files could be reused.
        opts.parent_opts.force = true;
        let archived = repo.archive(&opts, &source, snap, &[PathBuf::from(filename)]);
        // The veto kept a failed command from leaving a snapshot; `finish` says why.
        match (archived, source.finish()) {
            (Ok(snap), Ok(())) => Ok(snapshot_info(&snap)),
            (Ok(snap), Err(failed)) => {
                // Not expected (the backup read the output to its end), but never keep a
                // snapshot of a failed command.
                repo.delete_snapshots(&[snap.id]).map_err(|e| self.error(&e))?;
                Err(failed)
            }
            (Err(_), Err(failed)) => Err(failed),
            (Err(err), Ok(())) => Err(self.error(&err)),
        }
    }

    /// Snapshots, oldest first; only `dataset`'s when given.
    pub fn snapshots(&self, dataset: Option<&str>) -> Result<Vec<SnapshotInfo>, VaultError> {
        let repo = self.rustic(Arc::new(self.backend()))?;
        let mut snaps = self.matching(&repo, dataset)?;
        snaps.sort_unstable_by(|a, b| a.time.cmp(&b.time));
        Ok(snaps.iter().map(snapshot_info).collect())
    }

    /// Restores a snapshot (id or unique id prefix) into `dest`, keeping permissions and times.
    ///
    /// A snapshot of a folder restores its content into `dest`; a snapshot of a file restores
    /// it as `dest/<file name>`.
    pub fn restore(&self, snapshot: &str, dest: &Path) -> Result<(), VaultError> {
        let repo = self
            .rustic(Arc::new(self.backend()))?
            .to_indexed()
            .map_err(|e| self.error(&e))?;
        let snap = self.find_snapshot(&repo, snapshot)?;
        let root = match snap.paths.iter().collect::<Vec<_>>()[..] {
            [one] => one.clone(),
            _ => String::new(),
        };
        let node = repo
            .node_from_snapshot_and_path(&snap, &root)
            .map_err(|e| self.error(&e))?;
        let target = if node.is_dir() {
            dest.to_path_buf()
        } else {
            dest.join(node.name())
        };
        let target_text = target.to_str().ok_or_else(|| VaultError::Io {
            what: "cannot restore into",
            path: target.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path is not UTF-8"),
        })?;
        let destination = LocalDestination::new(target_text, true, !node.is_dir()).map_err(|e| self.error(&e))?;
        let opts = RestoreOptions::default();
        let nodes = repo.ls(&node, &LsOptions::default()).map_err(|e| self.error(&e))?;
        let plan = repo
            .prepare_restore(&opts, nodes.clone(), &destination, false)
            .map_err(|e| self.error(&e))?;
        repo.restore(plan, &opts, nodes, &destination)
            .map_err(|e| self.error(&e))
    }

    /// Streams one file of a snapshot (e.g. a dump or a tar) into `out`.
    ///
    /// `filename` is relative to what was backed up: the name given to
    /// [`Repository::backup_command`], a path inside a backed-up folder, or the name of a
    /// backed-up file.
    pub fn restore_file(
        &self,
        snapshot: &str,
        filename: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, VaultError> {
        let repo = self
            .rustic(Arc::new(self.backend()))?
            .to_indexed()
            .map_err(|e| self.error(&e))?;
        let snap = self.find_snapshot(&repo, snapshot)?;
        let path = match snap.paths.iter().collect::<Vec<_>>()[..] {
            [one] if Path::new(one).file_name() == Some(filename.as_ref()) => PathBuf::from(one),
            [one] => Path::new(one).join(filename),
            _ => PathBuf::from(filename),
        };
        let not_found = || VaultError::NotFound {
            what: "file",
            name: filename.to_string(),
            location: format!("snapshot {}", snap.id.to_hex().as_str()),
        };
        let node = repo
            .node_from_snapshot_and_path(&snap, &path.to_string_lossy())
            .map_err(|e| match self.error(&e) {
                VaultError::Store { .. } => not_found(),
                other => other,
            })?;
        if !node.is_file() {
            return Err(not_found());
        }
        let mut counting = CountingWriter { inner: out, written: 0 };
        repo.dump(&node, &mut counting).map_err(|e| self.error(&e))?;
        Ok(counting.written)
    }

    /// Checks the repository's structure; with `read_data`, reads and verifies every pack.
    pub fn check(&self, read_data: bool) -> Result<CheckReport, VaultError> {
        let backend = Arc::new(self.backend().counting_pack_reads());
        let repo = self.rustic(backend.clone())?;
        let mut report = CheckReport::default();
        // A damaged index or snapshot file stops rustic: report it as a finding, unless the
        // storage did not answer.
        let stopped = |err: Box<RusticError>, report: &mut CheckReport| match self.error(&err) {
            unreachable @ VaultError::Unreachable { .. } => Err(unreachable),
            other => {
                let text = other.to_string();
                if !report.errors.contains(&text) {
                    report.errors.push(text);
                }
                Ok(())
            }
        };
        match repo.get_all_snapshots() {
            Ok(snapshots) => report.snapshots = snapshots.len(),
            Err(err) => stopped(err, &mut report)?,
        }
        match repo.check(CheckOptions::default().read_data(read_data)) {
            Ok(results) => {
                for (level, finding) in results.0 {
                    // rustic_core does not export the finding types; their Display names a
                    // short id and their Debug the full one.
                    let text = describe_finding(&finding.to_string(), &format!("{finding:?}"));
                    if format!("{level:?}") == "Warn" {
                        report.warnings.push(text);
                    } else {
                        report.errors.push(text);
                    }
                }
            }
            Err(err) => stopped(err, &mut report)?,
        }
        report.packs_read = backend.packs_read();
        Ok(report)
    }

    /// Copies to `target` the snapshots (of `dataset`, or all) and log segments it lacks —
    /// only missing data is transferred — and verifies what arrived.
    pub fn replicate_to(&self, target: &Repository, dataset: Option<&str>) -> Result<ReplicateReport, VaultError> {
        let mut report = ReplicateReport::default();
        let source = self.rustic(Arc::new(self.backend()))?;
        let target_backend = Arc::new(target.backend());
        let dest = target.rustic(target_backend.clone())?;

        // A snapshot is present at the target if one there has the same origin (restic's
        // `original`, set on every copy) or the same time and tree.
        let present = dest.get_all_snapshots().map_err(|e| target.error(&e))?;
        let origins: BTreeSet<_> = present.iter().map(|sn| sn.original.unwrap_or(sn.id)).collect();
        let same: BTreeSet<_> = present.iter().map(|sn| (sn.time.timestamp(), sn.tree)).collect();
        let mut missing = Vec::new();
        for mut sn in self.matching(&source, dataset)? {
            let origin = sn.original.unwrap_or(sn.id);
            if origins.contains(&origin) || same.contains(&(sn.time.timestamp(), sn.tree)) {
                report.snapshots_present += 1;
            } else {
                sn.original = Some(origin);
                missing.push(sn);
            }
        }

        if !missing.is_empty() {
            let source = source.to_indexed().map_err(|e| self.error(&e))?;
            let dest = dest.to_indexed_ids().map_err(|e| target.error(&e))?;
            source.copy(&dest, missing.iter()).map_err(|e| self.error(&e))?;
            report.snapshots_copied = missing.len();
            report.bytes += target_backend.bytes_written();
            target.verify_copies(&missing)?;
        }

        let streams: BTreeSet<String> = self
            .objects
            .list(&format!("{LOGS}/"))?
            .into_iter()
            .filter_map(|(key, _)| key.split('/').nth(1).map(str::to_string))
            .collect();
        let (archive, target_archive) = (self.archive(), target.archive());
        for stream in streams {
            let before: BTreeSet<String> = target_archive.list(&stream)?.into_iter().map(|s| s.name).collect();
            report.segments_copied += archive.copy_to(&target_archive, &stream)?;
            report.bytes += target_archive
                .list(&stream)?
                .into_iter()
                .filter(|s| !before.contains(&s.name))
                .map(|s| s.size)
                .sum::<u64>();
        }
        Ok(report)
    }

    /// Removes snapshots the policy does not keep (per dataset); with `prune`, frees their data.
    ///
    /// Prune is rustic's lock-free one: data it no longer needs is first marked, and deleted
    /// by a later prune once the mark is a day old, so a backup running meanwhile loses nothing.
    pub fn forget(&self, keep: &Retention, dataset: Option<&str>, prune: bool) -> Result<ForgetReport, VaultError> {
        let keep = keep_options(keep).ok_or_else(|| VaultError::Store {
            location: self.location(),
            message: "the retention policy keeps nothing: set at least one keep_* (refusing to forget every snapshot)"
                .to_string(),
        })?;
        let repo = self.rustic(Arc::new(self.backend()))?;
        // Snapshots without a dataset were not made by resurgo: never ours to forget.
        let mut groups: BTreeMap<String, Vec<SnapshotFile>> = BTreeMap::new();
        for sn in self.matching(&repo, dataset)? {
            let dataset = decode_meta(&sn).dataset;
            if !dataset.is_empty() {
                groups.entry(dataset).or_default().push(sn);
            }
        }
        let now = rustic_core::jiff::Zoned::now();
        let mut report = ForgetReport::default();
        let mut remove = Vec::new();
        for (_, snaps) in groups {
            for decided in keep.apply(snaps, &now).map_err(|e| self.error(&e))? {
                let id = decided.snapshot.id.to_hex().to_string();
                if decided.keep {
                    report.kept.push(id);
                } else {
                    report.removed.push(id);
                    remove.push(decided.snapshot.id);
                }
            }
        }
        repo.delete_snapshots(&remove).map_err(|e| self.error(&e))?;
        if prune {
            let opts = PruneOptions::default();
            let plan = repo.prune_plan(&opts).map_err(|e| self.error(&e))?;
            let sizes = plan.stats.size_sum();
            report.pruned_bytes = sizes.remove + sizes.repackrm + plan.stats.size_unref;
            repo.prune(&opts, plan).map_err(|e| self.error(&e))?;
            // Writes interrupted a day ago (a killed backup's half-written pack) are dead.
            let _ = self.objects.remove_stale_temporaries(STALE_TEMPORARIES)?;
        }
        Ok(report)
    }

    /// The log archive beside the snapshot store.
    pub fn archive(&self) -> LogArchive {
        let mut key = [0u8; 64];
        let material = self.key.encrypt.iter().chain(&self.key.mac.k).chain(&self.key.mac.r);
        for (dst, src) in key.iter_mut().zip(material) {
            *dst = *src;
        }
        LogArchive::new(self.objects.clone(), ArchiveKey(key))
    }

    // -----------------------------------------------------------------------------------------

    fn backend(&self) -> StoreBackend {
        StoreBackend::new(self.objects.clone(), STORE)
    }

    /// A rustic repository over `backend`, opened with the master key.
    fn rustic(&self, backend: Arc<StoreBackend>) -> Result<RusticRepo, VaultError> {
        rustic_core::Repository::new_with_progress(
            &repo_options(),
            &RepositoryBackends::new(backend, None),
            QuietProgress,
        )
        .and_then(|repo| repo.open(&Credentials::Masterkey(self.key.clone())))
        .map_err(|e| self.error(&e))
    }

    fn error(&self, err: &RusticError) -> VaultError {
        vault_error(&self.location(), err)
    }

    fn matching(&self, repo: &RusticRepo, dataset: Option<&str>) -> Result<Vec<SnapshotFile>, VaultError> {
        repo.get_matching_snapshots(|sn| dataset.is_none_or(|d| decode_meta(sn).dataset == d))
            .map_err(|e| self.error(&e))
    }

    fn find_snapshot<S: rustic_core::Open>(
        &self,
        repo: &rustic_core::Repository<S>,
        id: &str,
    ) -> Result<SnapshotFile, VaultError> {
        repo.get_snapshot_from_str(id, |_| true)
            .map_err(|e| match self.error(&e) {
                VaultError::Store { .. } => VaultError::NotFound {
                    what: "snapshot",
                    name: id.to_string(),
                    location: self.location(),
                },
                other => other,
            })
    }

    fn new_snapshot(&self, meta: &BackupMeta) -> Result<SnapshotFile, VaultError> {
        let mut snap = SnapshotOptions::default().to_snapshot().map_err(|e| self.error(&e))?;
        if !meta.site.is_empty() {
            snap.hostname = meta.site.clone();
        }
        let mut tags = StringList::default();
        for tag in encode_meta(meta) {
            tags.add(tag);
        }
        snap.tags = tags;
        Ok(snap)
    }

    /// After a copy: the copied snapshots are listed at this repository, and their trees and
    /// the data they name are all there (rustic's structural check, limited to those trees).
    fn verify_copies(&self, copied: &[SnapshotFile]) -> Result<(), VaultError> {
        let repo = self.rustic(Arc::new(self.backend()))?;
        let present = repo.get_all_snapshots().map_err(|e| self.error(&e))?;
        let origins: BTreeSet<_> = present.iter().filter_map(|sn| sn.original).collect();
        if let Some(lost) = copied
            .iter()
            .find(|sn| !sn.original.is_some_and(|o| origins.contains(&o)))
        {
            return Err(VaultError::Corrupt {
                location: self.location(),
                object: format!("snapshot {}", lost.original.unwrap_or(lost.id).to_hex().as_str()),
                reason: "copied, but not listed at the target".to_string(),
            });
        }
        let trees = copied.iter().map(|sn| sn.tree).collect();
        let results = repo
            .check_with_trees(CheckOptions::default(), trees)
            .map_err(|e| self.error(&e))?;
        let errors: Vec<String> = results
            .0
            .iter()
            .filter(|(level, _)| format!("{level:?}") != "Warn")
            .map(|(_, finding)| describe_finding(&finding.to_string(), &format!("{finding:?}")))
            .collect();
        if !errors.is_empty() {
            return Err(VaultError::Corrupt {
                location: self.location(),
                object: "copied snapshots".to_string(),
                reason: errors.join("; "),
            });
        }
        Ok(())
    }
}

fn config_key() -> String {
    format!("{STORE}/config")
}

fn repo_options() -> RepositoryOptions {
    // No local cache: the controller must not depend on state outside the repository, and
    // index and snapshot files are small next to the data.
    RepositoryOptions::default().no_cache(true)
}

fn keep_options(keep: &Retention) -> Option<KeepOptions> {
    let n = |v: Option<u32>| v.map(|v| i32::try_from(v).unwrap_or(i32::MAX));
    let mut opts = KeepOptions::default();
    opts.keep_last = n(keep.keep_last);
    opts.keep_hourly = n(keep.keep_hourly);
    opts.keep_daily = n(keep.keep_daily);
    opts.keep_weekly = n(keep.keep_weekly);
    opts.keep_monthly = n(keep.keep_monthly);
    let any = [
        keep.keep_last,
        keep.keep_hourly,
        keep.keep_daily,
        keep.keep_weekly,
        keep.keep_monthly,
    ]
    .iter()
    .any(Option::is_some);
    any.then_some(opts)
}

fn snapshot_info(sn: &SnapshotFile) -> SnapshotInfo {
    let summary = sn.summary.as_ref();
    let time = sn.time.timestamp();
    SnapshotInfo {
        id: sn.id.to_hex().to_string(),
        time: time.to_string(),
        unix: time.as_second(),
        meta: decode_meta(sn),
        paths: sn.paths.iter().cloned().collect(),
        files: summary.map_or(0, |s| s.total_files_processed),
        bytes: summary.map_or(0, |s| s.total_bytes_processed),
        added: summary.map_or(0, |s| s.data_added_packed),
    }
}

const TAG_DATASET: &str = "resurgo.dataset=";
const TAG_KIND: &str = "resurgo.kind=";
const TAG_SITE: &str = "resurgo.site=";
const TAG_LABEL: &str = "resurgo.label.";

fn encode_meta(meta: &BackupMeta) -> Vec<String> {
    let mut tags = vec![
        format!("{TAG_DATASET}{}", escape(&meta.dataset)),
        format!("{TAG_KIND}{}", escape(&meta.kind)),
        format!("{TAG_SITE}{}", escape(&meta.site)),
    ];
    tags.extend(
        meta.labels
            .iter()
            .map(|(k, v)| format!("{TAG_LABEL}{}={}", escape(k), escape(v))),
    );
    tags
}

fn decode_meta(sn: &SnapshotFile) -> BackupMeta {
    let mut meta = BackupMeta::default();
    for tag in sn.tags.iter() {
        if let Some(v) = tag.strip_prefix(TAG_DATASET) {
            meta.dataset = unescape(v);
        } else if let Some(v) = tag.strip_prefix(TAG_KIND) {
            meta.kind = unescape(v);
        } else if let Some(v) = tag.strip_prefix(TAG_SITE) {
            meta.site = unescape(v);
        } else if let Some((k, v)) = tag.strip_prefix(TAG_LABEL).and_then(|kv| kv.split_once('=')) {
            let _ = meta.labels.insert(unescape(k), unescape(v));
        }
    }
    meta
}

fn escape(s: &str) -> String {
    s.replace('%', "%25").replace(',', "%2C").replace('=', "%3D")
}

fn unescape(s: &str) -> String {
    s.replace("%3D", "=").replace("%2C", ",").replace("%25", "%")
}

/// One line for a check finding, with full object ids: `display` names ids by their first 8
/// hex digits, `debug` by all 64.
fn describe_finding(display: &str, debug: &str) -> String {
    // "error checking pack ID : <rustic's full error display>"
    let mut text = match display.split_once(" : ") {
        Some((what, cause)) => format!("{what}: {}", essence(cause)),
        None => essence(display),
    };
    for id in full_ids(debug) {
        if !text.contains(id) {
            if let Some(at) = text.find(&id[..8]) {
                text.replace_range(at..at + 8, id);
            }
        }
    }
    text
}

/// Runs of exactly 64 hex digits.
fn full_ids(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut ids = Vec::new();
    let mut start = 0;
    for i in 0..=bytes.len() {
        let hex = i < bytes.len() && bytes[i].is_ascii_hexdigit();
        if !hex {
            if i - start == 64 {
                ids.push(&text[start..i]);
            }
            start = i + 1;
        }
    }
    ids
}

struct CountingWriter<'a> {
    inner: &'a mut dyn std::io::Write,
    written: u64,
}

impl std::io::Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The repository settings resurgo creates repositories with. Compression level comes from
/// `RESURGO_ZSTD_LEVEL` when set (for measurements), else zstd's level 1: the mixed data DR
/// backs up is dominated by already-compressed and random bytes, where higher levels cost
/// throughput and save little.
fn config_options() -> ConfigOptions {
    let level = std::env::var("RESURGO_ZSTD_LEVEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    ConfigOptions::default().set_compression(level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        let meta = BackupMeta {
            dataset: "db,main=1%".into(),
            kind: "pg-base".into(),
            site: "site-a".into(),
            labels: [
                ("wal_start".to_string(), "0/3000028".to_string()),
                ("a=b".into(), "c,d".into()),
            ]
            .into(),
        };
        let tags = encode_meta(&meta);
        assert!(tags.iter().all(|t| !t.contains(',')), "{tags:?}");
        let mut snap = SnapshotOptions::default().to_snapshot().unwrap();
        for tag in tags {
            snap.tags.add(tag);
        }
        assert_eq!(decode_meta(&snap), meta);
    }

    #[test]
    fn findings_name_full_ids() {
        let id = "ab".repeat(32);
        let text = describe_finding(
            "error checking pack abababab : `rustic_core` experienced an error related to `cryptographic operations`.\n\nMessage:\nData decryption failed.\n\nFor more information, see: https://x/C001\n\nSome additional details ...\n\nBacktrace:\n",
            &format!("ErrorCheckingPack {{ id: PackId({id}), source: .. }}"),
        );
        assert_eq!(text, format!("error checking pack {id}: Data decryption failed."));
    }
}
