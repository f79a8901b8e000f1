//! Data protection. A site's **repository** is a restic-format snapshot store (through
//! rustic_core, wrapped in [`repo::Repository`]) plus an append-only **log archive** for
//! database logs ([`archive::LogArchive`]), side by side on one object store ([`object`]): a
//! local folder or any S3-compatible service.
//!
//! Layout of a repository at URL `R`: `R/store/` is a plain restic repository (the `restic`
//! CLI reads it with `-r R/store`); `R/logs/` holds the log archive, encrypted with the same
//! master key.
//!
//! rustic_core is synchronous (rayon): everything here blocks; async callers use
//! `spawn_blocking`.

pub mod archive;
mod error;
pub mod index;
pub mod object;
pub mod pg;
pub mod progress;
pub mod repo;
mod rustic;
pub mod sqlite;

pub use error::VaultError;
pub use object::{open_object_store, ObjectStore, S3Credentials};
pub use repo::{BackupMeta, RepoConfig, Repository, SnapshotInfo};
