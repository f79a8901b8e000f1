//! Data protection for the datasets a spec declares: which repository a dataset is backed up
//! to (its service's active site) and replicated to (its `replicate_to`, else its service's
//! standby sites), backing up by dataset type with hooks, replication, restore, verification
//! by restore, retention, and the recovery point each site holds; for `strategy: standby`,
//! seeding the warm standby's data directory at the standby site and measuring its lag.
//!
//! This is the glue between the spec and `resurgo-vault`; the vault knows nothing of specs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use resurgo_plan::{Role, RunConfig};
use resurgo_provider::{read_secret, Provider, SiteHandle};
use resurgo_spec::{Dataset, DatasetKind, PgMethod, RepositorySpec, SecretRef, Strategy, System};
use resurgo_vault::pg::{Lag, PgTarget, PhysicalRestore, RecoveryTarget};

use crate::engine::{Engine, Preparer};
use resurgo_vault::index::SnapshotIndex;
use resurgo_vault::repo::{ForgetReport, ReplicateReport, Retention};
use resurgo_vault::{BackupMeta, RepoConfig, Repository, S3Credentials, SnapshotInfo, VaultError};

#[derive(Debug, thiserror::Error)]
pub enum ProtectError {
    #[error("no dataset `{0}` in the spec")]
    UnknownDataset(String),
    #[error("no site `{0}` in the spec")]
    UnknownSite(String),
    #[error("site `{0}` declares no repository")]
    NoRepository(String),
    #[error("site `{site}`: cannot read the repository {what}: {reason}")]
    Secret {
        site: String,
        what: &'static str,
        reason: String,
    },
    #[error("dataset `{dataset}`: {hook} hook `{command}` failed: {reason}")]
    Hook {
        dataset: String,
        hook: &'static str,
        command: String,
        reason: String,
    },
    #[error("dataset `{dataset}` has no snapshot at site `{site}`{when}")]
    NoSnapshot {
        dataset: String,
        site: String,
        when: String,
    },
    #[error("dataset `{dataset}`: verification failed at site `{site}`: {reason}")]
    VerifyFailed {
        dataset: String,
        site: String,
        reason: String,
    },
    #[error("dataset `{dataset}`: {reason}")]
    Unsupported { dataset: String, reason: String },
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Provider(#[from] resurgo_provider::ProviderError),
}

/// The outcome of a verification.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub dataset: String,
    pub site: String,
    pub snapshot: String,
    pub snapshot_time: String,
    pub check: String,
    pub millis: u64,
}

/// A dataset's newest restorable point at one site.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PointAt {
    pub dataset: String,
    /// Seconds since the epoch; `None` when the site holds nothing restorable yet.
    pub newest: Option<i64>,
    pub snapshots: usize,
}

pub struct Protector<'a> {
    pub system: &'a System,
    pub sites: Vec<SiteHandle>,
    /// The sites' providers: where a dataset lives at a site and who owns it is theirs to say.
    provider: Arc<dyn Provider>,
    pub state_dir: PathBuf,
    /// Scratch space for verification and SQLite copies.
    pub scratch: PathBuf,
}

/// What a restored copy is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreFor {
    /// To become the dataset's own data at the site once moved into place (a failover's
    /// restore into its scratch folder): a PostgreSQL server restored there archives into the
    /// site's repository.
    Serving,
    /// A copy to look at, beside the live data: it archives nothing and replays WAL from the
    /// repository's log archive.
    Inspection,
    /// A copy that runs on its own (a drill's sandbox): the WAL it needs is fetched into it
    /// first, so it never reads the repository, and it archives nothing.
    Detached,
}

impl<'a> Protector<'a> {
    /// The protector of `system`'s datasets, at the sites `engine` serves.
    pub fn new(system: &'a System, engine: &Engine, state_dir: &Path) -> Protector<'a> {
        Protector {
            system,
            sites: engine.sites(system),
            provider: engine.provider.clone(),
            state_dir: state_dir.to_path_buf(),
            scratch: state_dir.join("scratch"),
        }
    }

    /// The `user:` of the service that owns `dataset`, if it names one.
    fn service_user(&self, dataset: &str) -> Option<&'a str> {
        let ds = self.system.datasets.get(dataset)?;
        self.system.services.get(&ds.service)?.user.as_deref()
    }

    fn dataset(&self, name: &str) -> Result<&'a Dataset, ProtectError> {
        self.system
            .datasets
            .get(name)
            .ok_or_else(|| ProtectError::UnknownDataset(name.to_string()))
    }

    fn handle(&self, site: &str) -> Result<&SiteHandle, ProtectError> {
        self.sites
            .iter()
            .find(|s| s.name == site)
            .ok_or_else(|| ProtectError::UnknownSite(site.to_string()))
    }

    /// The site a dataset is backed up at: its service's active site.
    pub fn home_site(&self, dataset: &str) -> Result<String, ProtectError> {
        let ds = self.dataset(dataset)?;
        Ok(self
            .system
            .services
            .get(&ds.service)
            .map(|s| s.site.clone())
            .unwrap_or_default())
    }

    /// The sites a dataset's backups are replicated to.
    pub fn replica_sites(&self, dataset: &str) -> Result<Vec<String>, ProtectError> {
        let ds = self.dataset(dataset)?;
        let sites = if ds.replicate_to.is_empty() {
            self.system
                .services
                .get(&ds.service)
                .map(|s| s.standby.clone())
                .unwrap_or_default()
        } else {
            ds.replicate_to.clone()
        };
        Ok(sites
            .into_iter()
            .filter(|s| self.system.sites.get(s).is_some_and(|s| s.repository.is_some()))
            .collect())
    }

    /// The repository section of a site.
    fn repository(&self, site: &str) -> Result<&'a RepositorySpec, ProtectError> {
        let spec = self
            .system
            .sites
            .get(site)
            .ok_or_else(|| ProtectError::UnknownSite(site.to_string()))?;
        spec.repository
            .as_ref()
            .ok_or_else(|| ProtectError::NoRepository(site.to_string()))
    }

    /// How to open a site's repository, with its secrets read.
    pub fn repo_config(&self, site: &str) -> Result<RepoConfig, ProtectError> {
        repo_config(site, self.repository(site)?)
    }

    pub fn open(&self, site: &str) -> Result<Repository, ProtectError> {
        Ok(Repository::open(&self.repo_config(site)?)?)
    }

    /// The snapshots `site`'s repository holds now, as [`Repository::snapshots`] lists them,
    /// and the repository: opened once per process ([`Repository::open_kept`]) and listed
    /// through the index in `<state>/repositories/<site>/snapshots.json` (`vault::index`: one
    /// listing, and a read only of the snapshots it does not know — never a snapshot the
    /// repository does not hold). A failure with a kept repository (made anew at its URL,
    /// whose files its key cannot read), unless the repository is out of reach, is tried once
    /// more with the repository opened again.
    pub fn listed_snapshots(&self, site: &str) -> Result<(Repository, Vec<SnapshotInfo>), ProtectError> {
        let config = self.repo_config(site)?;
        // A protector with no state folder (`api::standby_groups`) lists without an index.
        let index = (!self.state_dir.as_os_str().is_empty())
            .then(|| SnapshotIndex::new(snapshot_index_path(&self.state_dir, site)));
        let list = |repo: &Repository| match &index {
            Some(index) => index.snapshots(repo),
            None => repo.snapshots(None),
        };
        let (repo, kept) = Repository::open_kept(&config)?;
        match list(&repo) {
            Ok(snapshots) => Ok((repo, snapshots)),
            // A repository out of reach says nothing of the key.
            Err(e) if kept && !matches!(e, VaultError::Unreachable { .. }) => {
                Repository::forget_kept(&config);
                let (repo, _) = Repository::open_kept(&config)?;
                let snapshots = list(&repo)?;
                Ok((repo, snapshots))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn init(&self, site: &str) -> Result<Repository, ProtectError> {
        Ok(Repository::init(&self.repo_config(site)?)?)
    }

    /// Where a file or directory dataset lives at `site`, as the site's provider says: relative
    /// paths are relative to the owning service's working directory there.
    pub fn data_path(&self, dataset: &str, site: &str) -> Result<PathBuf, ProtectError> {
        let ds = self.dataset(dataset)?;
        let path = ds.path.as_deref().unwrap_or_default();
        if Path::new(path).is_absolute() {
            return Ok(PathBuf::from(path));
        }
        let workdir = self.system.services.get(&ds.service).and_then(|s| s.workdir.as_deref());
        Ok(self
            .provider
            .data_path(self.handle(site)?, &ds.service, workdir, path)?)
    }

    /// Who owns `path` at `site` (uid, gid), if the site's provider can see it.
    pub fn owner(&self, site: &str, path: &Path) -> Option<(u32, u32)> {
        self.provider.owner(self.handle(site).ok()?, path)
    }

    fn run_hooks(&self, dataset: &str, hook: &'static str, commands: &[String]) -> Result<(), ProtectError> {
        let Some((program, args)) = commands.split_first() else {
            return Ok(());
        };
        let fail = |reason: String| ProtectError::Hook {
            dataset: dataset.to_string(),
            hook,
            command: commands.join(" "),
            reason,
        };
        let out = Command::new(program)
            .args(args)
            .output()
            .map_err(|e| fail(e.to_string()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(fail(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// Backs up a dataset at its home site, hooks around it.
    pub fn backup(&self, dataset: &str) -> Result<SnapshotInfo, ProtectError> {
        let ds = self.dataset(dataset)?;
        let site = self.home_site(dataset)?;
        let _span = tracing::info_span!("backup", dataset, site = %site).entered();
        let repo = self.open(&site)?;
        let meta = BackupMeta {
            dataset: dataset.to_string(),
            kind: kind_label(ds).to_string(),
            site: site.clone(),
            labels: Default::default(),
        };
        let hooks = ds.hooks.clone().unwrap_or_default();
        self.run_hooks(dataset, "pre", &hooks.pre)?;
        let result = match ds.kind {
            DatasetKind::Directory => {
                let path = self.data_path(dataset, &site)?;
                repo.backup_path(&path, &meta).map_err(ProtectError::from)
            }
            DatasetKind::Sqlite => {
                let path = self.data_path(dataset, &site)?;
                std::fs::create_dir_all(&self.scratch).map_err(|e| VaultError::Io {
                    what: "cannot create",
                    path: self.scratch.clone(),
                    source: e,
                })?;
                resurgo_vault::sqlite::backup(&repo, &path, &self.scratch, &meta).map_err(ProtectError::from)
            }
            DatasetKind::Postgres => self.backup_postgres(dataset, ds, &repo, &meta),
        };
        // `post` always runs; its failure is reported unless the backup already failed.
        let post = self.run_hooks(dataset, "post", &hooks.post);
        let snapshot = result?;
        post?;
        tracing::debug!(snapshot = %snapshot.id, "backed up");
        Ok(snapshot)
    }

    fn backup_postgres(
        &self,
        dataset: &str,
        ds: &Dataset,
        repo: &Repository,
        meta: &BackupMeta,
    ) -> Result<SnapshotInfo, ProtectError> {
        let target = self.pg_target(dataset, ds)?;
        match ds.method.unwrap_or(PgMethod::Physical) {
            PgMethod::Logical => Ok(resurgo_vault::pg::logical_backup(repo, &target, meta)?),
            PgMethod::Physical => {
                // Continuous archiving first: the base backup is only the start of the chain.
                let command = self
                    .write_wal_config(&meta.site)
                    .map(|()| self.wal_command("push", &meta.site, dataset, "%p"))?;
                let timeout = archive_timeout(ds, self.system);
                if resurgo_vault::pg::configure_archiving(&target, &command, timeout)? {
                    return Err(ProtectError::Unsupported {
                        dataset: dataset.to_string(),
                        reason: "WAL archiving was just turned on (archive_mode/wal_level); restart PostgreSQL, then back up again".into(),
                    });
                }
                Ok(resurgo_vault::pg::base_backup(repo, &target, meta)?)
            }
        }
    }

    /// The dataset's PostgreSQL connection, with its password read.
    pub fn pg_target(&self, dataset: &str, ds: &Dataset) -> Result<PgTarget, ProtectError> {
        let unsupported = |reason: String| ProtectError::Unsupported {
            dataset: dataset.to_string(),
            reason,
        };
        let text = ds
            .connection
            .as_deref()
            .ok_or_else(|| unsupported("no `connection` declared".into()))?;
        let mut target = PgTarget::parse(text).map_err(|e| unsupported(e.to_string()))?;
        // A connection to a site's address follows the service: after a failover the active
        // server is at its new site.
        if self.system.sites.values().any(|s| s.address.to_string() == target.host) {
            if let Some(site) = self
                .system
                .services
                .get(&ds.service)
                .and_then(|s| self.system.sites.get(&s.site))
            {
                target.host = site.address.to_string();
            }
        }
        let password = match &ds.password {
            Some(r) => Some(read_secret(r).map_err(|e| unsupported(format!("cannot read the password: {e}")))?),
            None => None,
        };
        Ok(target.with_password(password))
    }

    /// The primary's WAL archiving status, for a physical PostgreSQL dataset (`None` for any
    /// other dataset).
    pub fn archiving(&self, dataset: &str) -> Result<Option<resurgo_vault::pg::Archiver>, ProtectError> {
        let ds = self.dataset(dataset)?;
        if !self.archiving_applies(dataset) {
            return Ok(None);
        }
        Ok(Some(resurgo_vault::pg::archiver_status(&self.pg_target(dataset, ds)?)?))
    }

    /// Whether `dataset` archives WAL (physical PostgreSQL).
    pub fn archiving_applies(&self, dataset: &str) -> bool {
        self.system.datasets.get(dataset).is_some_and(|ds| {
            ds.kind == DatasetKind::Postgres && ds.method.unwrap_or(PgMethod::Physical) == PgMethod::Physical
        })
    }

    /// Records `site`'s repository for `resurgo wal push|fetch` (see [`wal_config_path`]).
    pub fn write_wal_config(&self, site: &str) -> Result<(), ProtectError> {
        let repo = self.repository(site)?;
        // PostgreSQL runs `resurgo wal …` in its data directory: a secret file named relative
        // to where resurgo runs is recorded by its absolute path.
        let mut repo = repo.clone();
        for secret in [
            Some(&mut repo.password),
            repo.access_key.as_mut(),
            repo.secret_key.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            match secret {
                SecretRef::File(file) if Path::new(file).is_relative() => {
                    if let Ok(absolute) = std::path::absolute(&*file) {
                        *file = absolute.display().to_string();
                    }
                }
                _ => {}
            }
        }
        let path = wal_config_path(&self.state_dir, site);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| VaultError::Io {
                what: "cannot create",
                path: dir.to_path_buf(),
                source: e,
            })?;
        }
        resurgo_provider::write_json_atomic(&path, &repo).map_err(|e| VaultError::Io {
            what: "cannot write",
            path: path.clone(),
            source: e,
        })?;
        // PostgreSQL's user runs `resurgo wal …` and reads this record (references only): it
        // is let through the state folder, which stays unlistable (0711).
        for dir in [self.state_dir.as_path(), path.parent().unwrap_or(&self.state_dir)] {
            resurgo_provider::account::allow_search(dir).map_err(|e| VaultError::Io {
                what: "cannot open a way through",
                path: dir.to_path_buf(),
                source: e,
            })?;
        }
        Ok(())
    }

    /// The shell command PostgreSQL runs to push (`%p`) or fetch (`%f %p`) a WAL file.
    pub fn wal_command(&self, verb: &str, site: &str, dataset: &str, args: &str) -> String {
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("resurgo"));
        let state = std::fs::canonicalize(&self.state_dir).unwrap_or_else(|_| self.state_dir.clone());
        let command = format!(
            "{} wal {verb} --state {} --site {} --dataset {}",
            shell_quote(&exe.display().to_string()),
            shell_quote(&state.display().to_string()),
            shell_quote(site),
            shell_quote(dataset)
        );
        // PostgreSQL reads `%` as the start of a placeholder: a literal one is `%%`.
        format!("{} {args}", command.replace('%', "%%"))
    }

    /// Copies a dataset's snapshots (and log segments) from its home site to `to`.
    pub fn replicate(&self, dataset: Option<&str>, from: &str, to: &str) -> Result<ReplicateReport, ProtectError> {
        let _span = tracing::info_span!("replicate", dataset, from, to).entered();
        let source = self.open(from)?;
        let target = self.open(to)?;
        Ok(source.replicate_to(&target, dataset)?)
    }

    /// The newest snapshot of `dataset` at `site`, at or before `at` (RFC 3339) when given.
    pub fn pick_snapshot(
        &self,
        repo: &Repository,
        dataset: &str,
        site: &str,
        at: Option<&str>,
    ) -> Result<SnapshotInfo, ProtectError> {
        let snapshots = repo.snapshots(Some(dataset))?;
        let limit = match at {
            Some(t) => Some(
                resurgo_spec::units::parse_rfc3339(t).map_err(|reason| ProtectError::Unsupported {
                    dataset: dataset.to_string(),
                    reason,
                })?,
            ),
            None => None,
        };
        let chosen = snapshots
            .into_iter()
            .rfind(|s| limit.is_none_or(|l| s.unix as f64 <= l));
        chosen.ok_or_else(|| ProtectError::NoSnapshot {
            dataset: dataset.to_string(),
            site: site.to_string(),
            when: at.map(|t| format!(" at or before {t}")).unwrap_or_default(),
        })
    }

    /// Restores a dataset from `site`'s repository into `to` (a folder for directories, the
    /// folder that receives the database file for SQLite), for `purpose` (which, for a
    /// physical PostgreSQL dataset, says whether the server archives and where it reads WAL).
    pub fn restore(
        &self,
        dataset: &str,
        site: &str,
        at: Option<&str>,
        to: &Path,
        purpose: RestoreFor,
    ) -> Result<SnapshotInfo, ProtectError> {
        let ds = self.dataset(dataset)?;
        let repo = self.open(site)?;
        let snapshot = self.pick_snapshot(&repo, dataset, site, at)?;
        match ds.kind {
            DatasetKind::Directory | DatasetKind::Sqlite => repo.restore(&snapshot.id, to)?,
            DatasetKind::Postgres if ds.method == Some(PgMethod::Logical) => {
                // A dump is restored into the database the dataset names.
                let target = self.pg_target(dataset, ds)?;
                resurgo_vault::pg::logical_restore(&repo, &snapshot.id, &target)?;
            }
            DatasetKind::Postgres => return self.restore_physical(dataset, site, &repo, at, to, purpose),
        }
        Ok(snapshot)
    }

    /// A point-in-time restore of a physical PostgreSQL dataset into `pgdata`: the newest base
    /// backup that reaches the target, then WAL from `site`'s log archive.
    fn restore_physical(
        &self,
        dataset: &str,
        site: &str,
        repo: &Repository,
        at: Option<&str>,
        pgdata: &Path,
        purpose: RestoreFor,
    ) -> Result<SnapshotInfo, ProtectError> {
        let unsupported = |reason: String| ProtectError::Unsupported {
            dataset: dataset.to_string(),
            reason,
        };
        let target = match at {
            Some(t) => RecoveryTarget::Time(t.parse().map_err(unsupported)?),
            None => RecoveryTarget::Latest,
        };
        let snapshots = repo.snapshots(Some(dataset))?;
        let base =
            resurgo_vault::pg::choose_base_backup(&snapshots, &repo.archive(), dataset, &target)?.ok_or_else(|| {
                ProtectError::NoSnapshot {
                    dataset: dataset.to_string(),
                    site: site.to_string(),
                    when: at
                        .map(|t| format!(" whose base backup ended by {t}"))
                        .unwrap_or_default(),
                }
            })?;
        self.write_wal_config(site)?;
        // The folders above the data directory are made here, with the usual modes: the vault
        // makes missing ones 0700 like the data directory itself, and the server's user (not
        // root) must pass through them.
        if let Some(parent) = pgdata.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| VaultError::Io {
                what: "cannot create",
                path: parent.to_path_buf(),
                source: e,
            })?;
        }
        // The vault gives the restored files the data directory's owner: with a `user:` that is
        // the service's user on this host (issue 9), whoever made the folder.
        if let Some(user) = self.service_user(dataset) {
            use std::os::unix::fs::DirBuilderExt;
            let owner = resurgo_provider::Account::lookup(user).map_err(unsupported)?;
            let io = |what: &'static str| {
                move |source| VaultError::Io {
                    what,
                    path: pgdata.to_path_buf(),
                    source,
                }
            };
            if !pgdata.exists() {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(pgdata)
                    .map_err(io("cannot create"))?;
            }
            std::os::unix::fs::chown(pgdata, Some(owner.uid), Some(owner.gid)).map_err(io("cannot give"))?;
        }
        // Restored as the dataset's own data at its active site (a failover's target), the
        // server is the new primary: it archives into that site's repository, as the old one
        // did into its own. Anywhere else (a copy to inspect) it archives nothing.
        let serves = purpose == RestoreFor::Serving
            || (self.home_site(dataset).is_ok_and(|home| home == site)
                && self.data_path(dataset, site).is_ok_and(|own| own == pgdata));
        let options = PhysicalRestore {
            target,
            restore_command: self.wal_command("fetch", site, dataset, "%f %p"),
            archive_command: serves.then(|| self.wal_command("push", site, dataset, "%p")),
            // A failover's restore: the archive no longer grows (its source is lost), so it is
            // fetched whole now rather than one repository open per segment. A detached copy
            // recovers from that folder too: it never reads the repository itself.
            prefetch: (serves || purpose == RestoreFor::Detached).then(|| dataset.to_string()),
        };
        resurgo_vault::pg::restore_physical(repo, &base.id, pgdata, &options)?;
        Ok(base)
    }

    /// Restores the newest snapshot into a scratch folder, runs the dataset's check, and cleans
    /// up whatever the outcome.
    pub fn verify(&self, dataset: &str, site: &str) -> Result<VerifyReport, ProtectError> {
        let _span = tracing::info_span!("verify", dataset, site).entered();
        let started = std::time::Instant::now();
        let ds = self.dataset(dataset)?;
        let scratch = self
            .scratch
            .join(format!("verify-{dataset}-{site}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        let result = (|| {
            if ds.kind == DatasetKind::Postgres {
                self.prepare_scratch_pgdata(dataset, &scratch)?;
            }
            let snapshot = self.restore(dataset, site, None, &scratch, RestoreFor::Inspection)?;
            let check = self.run_check(dataset, site, ds, &scratch, &snapshot)?;
            Ok(VerifyReport {
                dataset: dataset.to_string(),
                site: site.to_string(),
                snapshot: snapshot.id.clone(),
                snapshot_time: snapshot.time.clone(),
                check,
                millis: started.elapsed().as_millis() as u64,
            })
        })();
        let _ = std::fs::remove_dir_all(&scratch);
        result
    }

    /// A scratch data directory owned like the dataset's own (PostgreSQL will not run as
    /// root, and a restore gives its files the directory's owner).
    fn prepare_scratch_pgdata(&self, dataset: &str, scratch: &Path) -> Result<(), ProtectError> {
        let io = |what: &'static str, e: std::io::Error| VaultError::Io {
            what,
            path: scratch.to_path_buf(),
            source: e,
        };
        std::fs::create_dir_all(scratch).map_err(|e| io("cannot create", e))?;
        if !nix::unistd::geteuid().is_root() {
            return Ok(());
        }
        // The service's `user:` (never a folder's owner at another site, issue 9); without one
        // `nobody`, since PostgreSQL refuses root.
        let (uid, gid) = match self.service_user(dataset) {
            Some(user) => {
                let a = resurgo_provider::Account::lookup(user)
                    .map_err(|e| io("cannot hand over", std::io::Error::other(e)))?;
                (a.uid, a.gid)
            }
            None => (65534, 65534),
        };
        for dir in [scratch.parent().unwrap_or(scratch), scratch] {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|e| io("cannot hand over", e))?;
        }
        // The throw-away server runs as that user: it is let through the (0700) state folder.
        for dir in scratch
            .ancestors()
            .skip(2)
            .filter(|_| scratch.starts_with(&self.state_dir))
        {
            resurgo_provider::account::allow_search(dir).map_err(|e| io("cannot open a way through", e))?;
            if dir == self.state_dir {
                break;
            }
        }
        Ok(())
    }

    fn run_check(
        &self,
        dataset: &str,
        site: &str,
        ds: &Dataset,
        restored: &Path,
        snapshot: &SnapshotInfo,
    ) -> Result<String, ProtectError> {
        let failed = |reason: String| ProtectError::VerifyFailed {
            dataset: dataset.to_string(),
            site: site.to_string(),
            reason,
        };
        let check = effective_check(ds);
        // A query's answer against the expected one, if the check names one.
        let judge = |query: &str, answer: &str| match &check.expect {
            Some(expect) if answer.trim() != expect.trim() => Err(failed(format!(
                "`{query}` answered `{}`, expected `{expect}`",
                answer.trim()
            ))),
            _ => Ok(format!("{query} → {}", answer.trim())),
        };
        match (ds.kind, &check.query) {
            (DatasetKind::Sqlite, Some(query)) => {
                let db = resurgo_vault::sqlite::restored_path(restored, snapshot);
                let answer = resurgo_vault::sqlite::query(&db, query).map_err(|e| failed(e.to_string()))?;
                judge(query, &answer)
            }
            (_, None) if !check.command.is_empty() => {
                let out = Command::new(&check.command[0])
                    .args(&check.command[1..])
                    .current_dir(restored)
                    .env("RESURGO_RESTORED", restored)
                    .output()
                    .map_err(|e| failed(format!("cannot run `{}`: {e}", check.command[0])))?;
                if !out.status.success() {
                    return Err(failed(format!(
                        "`{}` {}: {}",
                        check.command.join(" "),
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
                Ok(format!("{} → exit 0", check.command.join(" ")))
            }
            (DatasetKind::Postgres, Some(query)) if ds.method != Some(PgMethod::Logical) => {
                // A physical restore is a data directory: run it, then ask.
                let address = self.handle(site)?.address;
                let base = self.pg_target(dataset, ds)?;
                let server = crate::scratch_pg::ScratchServer::start(restored, address, &base)
                    .map_err(|e| failed(e.to_string()))?;
                let answer = resurgo_vault::pg::query(&server.target, query).map_err(|e| failed(e.to_string()))?;
                drop(server);
                judge(query, &answer)
            }
            _ => Err(failed("the dataset declares no check this kind supports".into())),
        }
    }

    /// The newest point each of `datasets` can be restored to from `site`'s repository: its
    /// newest snapshot or, for physical PostgreSQL, the newest archived WAL segment when that is
    /// later. One listing for all (`listed_snapshots`).
    pub fn recovery_points(&self, site: &str, datasets: &[String]) -> Result<Vec<PointAt>, ProtectError> {
        let begun = std::time::Instant::now();
        let (repo, snapshots) = self.listed_snapshots(site)?;
        tracing::debug!(
            site,
            list_ms = begun.elapsed().as_secs_f64() * 1e3,
            snapshots = snapshots.len(),
            "recovery points"
        );
        let archive = repo.archive();
        let mut out = Vec::new();
        for name in datasets {
            let mine: Vec<_> = snapshots.iter().filter(|s| s.meta.dataset == *name).collect();
            let mut newest = mine.iter().map(|s| s.unix).max();
            let physical_pg = self.system.datasets.get(name).is_some_and(|d| {
                d.kind == DatasetKind::Postgres && d.method.unwrap_or(PgMethod::Physical) == PgMethod::Physical
            });
            if physical_pg && newest.is_some() {
                if let Some((_, Some(at))) = archive.newest_segment(name)? {
                    newest = newest.max(Some(at));
                }
            }
            out.push(PointAt {
                dataset: name.clone(),
                newest,
                snapshots: mine.len(),
            });
        }
        Ok(out)
    }

    /// The site that holds a warm standby of `dataset`: its service's first standby site, for
    /// a `strategy: standby` dataset (where `desired_state` puts the standby instance).
    pub fn standby_site(&self, dataset: &str) -> Result<Option<String>, ProtectError> {
        let ds = self.dataset(dataset)?;
        if ds.strategy != Strategy::Standby || ds.kind != DatasetKind::Postgres {
            return Ok(None);
        }
        let svc = self.system.services.get(&ds.service);
        Ok(svc
            .and_then(|s| s.standby.first())
            .filter(|s| svc.is_some_and(|svc| svc.site != **s))
            .cloned())
    }

    /// The standby server of `dataset` at `site`: the dataset's connection (whose host is the
    /// active site's address) with `site`'s address as host.
    pub fn standby_target(&self, dataset: &str, site: &str) -> Result<PgTarget, ProtectError> {
        let ds = self.dataset(dataset)?;
        let address = self
            .system
            .sites
            .get(site)
            .ok_or_else(|| ProtectError::UnknownSite(site.to_string()))?
            .address;
        let mut target = self.pg_target(dataset, ds)?;
        target.host = address.to_string();
        Ok(target)
    }

    /// How far the standby of `dataset` at `site` is behind the active server.
    pub fn standby_lag(&self, dataset: &str, site: &str) -> Result<Lag, ProtectError> {
        let ds = self.dataset(dataset)?;
        let primary = self.pg_target(dataset, ds)?;
        let standby = self.standby_target(dataset, site)?;
        let lag = resurgo_vault::pg::standby_lag(&primary, &standby)?;
        // The last lag seen is what a promotion after losing the primary would lose: kept
        // for the lag gate, which cannot ask a dead primary.
        record_lag(&self.state_dir, dataset, site, lag.bytes, lag.seconds, lag.streaming);
        Ok(lag)
    }

    /// The lock held while `dataset`'s standby at `site` is seeded (`<state>/locks/`).
    fn seeding_lock(&self, dataset: &str, site: &str) -> Result<nix::fcntl::Flock<std::fs::File>, ProtectError> {
        let dir = self.state_dir.join("locks");
        let path = dir.join(format!("seed-{site}-{dataset}.lock"));
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| ProtectError::Vault(VaultError::Io { what, path, source })
        };
        std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("cannot open", &path))?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| io("cannot lock", &path)(std::io::Error::from(e)))
    }

    /// Makes sure the standby of `dataset` at `site` has a data directory: when
    /// [`data_path`](Self::data_path) at `site` holds no `PG_VERSION`, builds it from the
    /// active server (`pg_basebackup -R` on the slot [`standby_slot`]). Returns whether it
    /// built one; does nothing when the directory is already seeded.
    ///
    /// Ownership: PostgreSQL refuses to run as root and wants its data directory to be its own,
    /// so the directory (mode 0700) is given to the service's `user:` as this host knows it, or
    /// without one to the user resurgo runs as — never the owner of a folder at another site,
    /// which may be another machine's uid (issue 9).
    pub fn seed_standby(&self, dataset: &str, site: &str) -> Result<bool, ProtectError> {
        use std::os::unix::fs::DirBuilderExt;
        let ds = self.dataset(dataset)?;
        let unsupported = |reason: String| ProtectError::Unsupported {
            dataset: dataset.to_string(),
            reason,
        };
        if ds.kind != DatasetKind::Postgres || ds.strategy != Strategy::Standby {
            return Err(unsupported(
                "only a PostgreSQL dataset with `strategy: standby` has a standby to seed".into(),
            ));
        }
        if ds.path.is_none() {
            return Err(unsupported(
                "a standby needs the data directory: declare it as the dataset's `path`".into(),
            ));
        }
        let pgdata = self.data_path(dataset, site)?;
        // One seeding at a time: the agent's rejoin and an operator's apply through the site
        // API may both prepare the standby; the second finds it seeded by the first.
        let _seeding = self.seeding_lock(dataset, site)?;
        if pgdata.join("PG_VERSION").exists() {
            if pgdata.join("standby.signal").exists() {
                return Ok(false);
            }
            // The data of a server that was primary here (before a failover): started as is,
            // it would serve as a second primary. It is set aside — never deleted — and the
            // standby is built afresh from the active server.
            let why = format!("`{dataset}` was primary here before a failover; rejoining as a standby");
            self.provider
                .set_aside(self.handle(site)?, &pgdata, &why)
                .map_err(|e| ProtectError::Unsupported {
                    dataset: dataset.to_string(),
                    reason: format!("cannot set aside the old primary's data: {e}"),
                })?;
        }
        let primary = self.pg_target(dataset, ds)?;
        let user = self.service_user(dataset);
        let owner = resurgo_provider::Account::owner_for(user).map_err(unsupported)?;
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| ProtectError::Vault(VaultError::Io { what, path, source })
        };
        let created = !pgdata.exists();
        if created {
            if let Some(parent) = pgdata.parent() {
                std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
            }
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&pgdata)
                .map_err(io("cannot create", &pgdata))?;
        }
        if created || user.is_some() {
            std::os::unix::fs::chown(&pgdata, Some(owner.uid), Some(owner.gid)).map_err(io("cannot give", &pgdata))?;
        }
        let built = resurgo_vault::pg::build_standby(&primary, &pgdata, &standby_slot(dataset, site));
        if built.is_err() && created {
            // Ours, made just now, and not a data directory: the next attempt starts clean.
            let _ = std::fs::remove_dir_all(&pgdata);
        }
        built?;
        Ok(true)
    }

    /// Applies the dataset's retention at `site`.
    pub fn forget(&self, dataset: &str, site: &str, prune: bool) -> Result<ForgetReport, ProtectError> {
        let ds = self.dataset(dataset)?;
        let r = ds.retention.clone().ok_or_else(|| ProtectError::Unsupported {
            dataset: dataset.to_string(),
            reason: "no `retention` declared; nothing would be kept, so nothing is forgotten".into(),
        })?;
        let keep = Retention {
            keep_last: r.last,
            keep_hourly: r.hourly,
            keep_daily: r.daily,
            keep_weekly: r.weekly,
            keep_monthly: r.monthly,
        };
        Ok(self.open(site)?.forget(&keep, Some(dataset), prune)?)
    }
}

/// The last measured lag of a standby, as recorded at `<state>/lag/<dataset>@<site>.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LagRecord {
    pub bytes: u64,
    pub seconds: Option<f64>,
    pub streaming: bool,
    /// Unix ms of the measurement.
    pub at_ms: u64,
}

/// The index of `site`'s repository's snapshots (`vault::index`).
pub fn snapshot_index_path(state_dir: &Path, site: &str) -> PathBuf {
    state_dir.join("repositories").join(site).join("snapshots.json")
}

pub fn lag_record_path(state_dir: &Path, dataset: &str, site: &str) -> PathBuf {
    state_dir.join("lag").join(format!("{dataset}@{site}.json"))
}

/// Records a standby's lag, measured now (best effort: the gate treats a missing record as
/// an unknown lag).
pub fn record_lag(state_dir: &Path, dataset: &str, site: &str, bytes: u64, seconds: Option<f64>, streaming: bool) {
    let _ = std::fs::create_dir_all(state_dir.join("lag"));
    let _ = resurgo_provider::write_json_atomic(
        &lag_record_path(state_dir, dataset, site),
        &LagRecord {
            bytes,
            seconds,
            streaming,
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        },
    );
}

pub fn read_lag(state_dir: &Path, dataset: &str, site: &str) -> Option<LagRecord> {
    let text = std::fs::read(lag_record_path(state_dir, dataset, site)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The physical replication slot the standby of `dataset` at `site` streams from:
/// `resurgo_<dataset>_<site>`, lowercased, other characters than `[a-z0-9_]` as `_`, at most
/// 63 bytes (PostgreSQL's limit).
pub fn standby_slot(dataset: &str, site: &str) -> String {
    let mut slot: String = format!("resurgo_{dataset}_{site}")
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    slot.truncate(63);
    slot
}

/// The engine's [`Preparer`] for `system`: before a [`Role::Standby`] instance starts, seeds
/// the data directory of each of its service's `strategy: standby` datasets at that site
/// ([`Protector::seed_standby`]); for anything else, nothing.
pub fn standby_preparer(engine: &Engine, system: &System) -> Preparer {
    let system = system.clone();
    let engine = engine.clone();
    Arc::new(move |site: &SiteHandle, config: &RunConfig| {
        if config.role != Role::Standby {
            return Ok(());
        }
        let protector = Protector::new(&system, &engine, &engine.state_dir);
        for (name, ds) in &system.datasets {
            if ds.service == config.service && ds.strategy == Strategy::Standby && ds.kind == DatasetKind::Postgres {
                protector.seed_standby(name, &site.name).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    })
}

/// How often PostgreSQL must archive a segment while there are writes: half the RPO
/// objective, between 1 s and 60 s.
pub fn archive_timeout(ds: &Dataset, system: &System) -> std::time::Duration {
    ds.archive_timeout(system.objectives.rpo)
}

/// Quotes a word for a POSIX shell (PostgreSQL runs archive and restore commands with `sh`).
fn shell_quote(word: &str) -> String {
    if word
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:@".contains(&b))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// How to open the repository `repo` of `site`, with its secrets read.
pub fn repo_config(site: &str, repo: &RepositorySpec) -> Result<RepoConfig, ProtectError> {
    let secret = |what: &'static str, r: &SecretRef| {
        read_secret(r).map_err(|reason| ProtectError::Secret {
            site: site.to_string(),
            what,
            reason,
        })
    };
    Ok(RepoConfig {
        url: repo.url.clone(),
        password: secret("password", &repo.password)?,
        s3: S3Credentials {
            access_key: repo.access_key.as_ref().map(|r| secret("access key", r)).transpose()?,
            secret_key: repo.secret_key.as_ref().map(|r| secret("secret key", r)).transpose()?,
        },
    })
}

/// Where `resurgo wal push|fetch` finds a site's repository: a copy of the spec's repository
/// section (references, never secret values), so PostgreSQL's archive and restore commands
/// need neither the spec nor its Git source.
pub fn wal_config_path(state_dir: &Path, site: &str) -> PathBuf {
    state_dir.join("wal").join(format!("{site}.json"))
}

/// Opens the repository recorded for `site` by [`Protector::write_wal_config`].
pub fn open_recorded(state_dir: &Path, site: &str) -> Result<Repository, ProtectError> {
    let path = wal_config_path(state_dir, site);
    let text = std::fs::read(&path).map_err(|e| VaultError::Io {
        what: "cannot read",
        path: path.clone(),
        source: e,
    })?;
    let spec: RepositorySpec = serde_json::from_slice(&text).map_err(|e| VaultError::Io {
        what: "cannot parse",
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    Ok(Repository::open(&repo_config(site, &spec)?)?)
}

/// The dataset's check, or the default one: SQLite is checked with `PRAGMA integrity_check`;
/// other kinds must declare theirs.
fn effective_check(ds: &Dataset) -> resurgo_spec::DatasetCheck {
    ds.check.clone().unwrap_or_else(|| {
        let sqlite = ds.kind == DatasetKind::Sqlite;
        resurgo_spec::DatasetCheck {
            query: sqlite.then(|| "PRAGMA integrity_check".to_string()),
            expect: sqlite.then(|| "ok".to_string()),
            command: Vec::new(),
        }
    })
}

fn kind_label(ds: &Dataset) -> &'static str {
    match ds.kind {
        DatasetKind::Directory => "directory",
        DatasetKind::Sqlite => "sqlite",
        DatasetKind::Postgres => match ds.method.unwrap_or(PgMethod::Physical) {
            PgMethod::Physical => "pg-base",
            PgMethod::Logical => "pg-dump",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standby_slots_are_valid_slot_names() {
        assert_eq!(standby_slot("orders", "b"), "resurgo_orders_b");
        assert_eq!(standby_slot("Orders-EU", "dr.1"), "resurgo_orders_eu_dr_1");
        let long = standby_slot(&"x".repeat(100), "b");
        assert_eq!(long.len(), 63);
    }
}
