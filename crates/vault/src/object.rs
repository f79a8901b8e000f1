//! Object stores: the few operations a repository needs from its storage, behind one small
//! trait, with two implementations — a local folder and S3 (through OpenDAL, S3 only).

use std::sync::Arc;

use crate::VaultError;

/// Access keys for S3; empty for a local folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
}

/// Storage of named objects. Keys are `/`-separated paths relative to the repository root.
pub trait ObjectStore: Send + Sync + 'static {
    /// Where this is, for messages (never includes credentials).
    fn location(&self) -> String;
    /// The whole object, or `None` if it does not exist.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, VaultError>;
    /// `len` bytes from `offset`.
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, VaultError>;
    /// Writes the object whole, atomically: a reader sees the old or the new content.
    fn put(&self, key: &str, data: &[u8]) -> Result<(), VaultError>;
    /// Writes the object only if no object has that key; `Ok(false)` if one already had.
    fn put_if_absent(&self, key: &str, data: &[u8]) -> Result<bool, VaultError>;
    /// Keys and sizes of all objects under `prefix` (recursively).
    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, VaultError>;
    /// Removes the object; removing a missing object is not an error.
    fn delete(&self, key: &str) -> Result<(), VaultError>;
}

/// Opens the object store a repository URL names: `file:///path`, `/path`, or
/// `s3://bucket[/prefix]?endpoint=http://host:port[&region=r]`.
pub fn open_object_store(url: &str, credentials: &S3Credentials) -> Result<Arc<dyn ObjectStore>, VaultError> {
    let _ = (url, credentials);
    todo!("object stores")
}
