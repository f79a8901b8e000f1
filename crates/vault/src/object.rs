//! Object stores: the few operations a repository needs from its storage, behind one small
//! trait, with two implementations — a local folder and S3 (through OpenDAL, S3 only).
//!
//! Both give the guarantees the restic format and the log archive rely on: a reader never sees
//! a half-written object (local: temporary file, fsync, rename; S3: a PUT is atomic), and
//! `put_if_absent` never replaces an existing object.

use std::fs::{self, File};
use std::future::IntoFuture;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

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

    /// Like [`ObjectStore::put`], with the content given in parts (a pack file is its blobs
    /// plus a header): stores that can write the parts one after another avoid joining them.
    fn put_parts(&self, key: &str, parts: &[&[u8]]) -> Result<(), VaultError> {
        match parts {
            [one] => self.put(key, one),
            _ => self.put(key, &parts.concat()),
        }
    }

    /// The object's size, or `None` if it does not exist.
    fn size(&self, key: &str) -> Result<Option<u64>, VaultError> {
        Ok(self.get(key)?.map(|data| data.len() as u64))
    }

    /// When the object was last written, in seconds since the epoch (`None`: absent or unknown).
    /// For a copied object that is when it arrived here.
    fn modified(&self, key: &str) -> Result<Option<i64>, VaultError> {
        let _ = key;
        Ok(None)
    }

    /// Removes what writes interrupted more than `age` ago left behind (a local store's
    /// temporary files after a crash); returns how many. Nothing to do for most stores.
    fn remove_stale_temporaries(&self, age: Duration) -> Result<usize, VaultError> {
        let _ = age;
        Ok(0)
    }
}

/// Opens the object store a repository URL names: `file:///path`, `/path`, or
/// `s3://bucket[/prefix]?endpoint=http://host:port[&region=r]`.
pub fn open_object_store(url: &str, credentials: &S3Credentials) -> Result<Arc<dyn ObjectStore>, VaultError> {
    if url.starts_with("s3://") {
        return Ok(Arc::new(S3Store::open(url, credentials)?));
    }
    let path = match url.strip_prefix("file://") {
        Some(path) => path,
        None if url.contains("://") => {
            return Err(bad_url(
                url,
                "unknown scheme: use a local path, file:///path or s3://bucket/prefix",
            ))
        }
        None => url,
    };
    if !path.starts_with('/') {
        return Err(bad_url(url, "a local repository needs an absolute path"));
    }
    Ok(Arc::new(LocalStore::new(PathBuf::from(percent_decode(path)))))
}

fn bad_url(url: &str, reason: &str) -> VaultError {
    VaultError::BadUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    }
}

/// Refuses keys that could leave the store's root.
fn check_key(location: impl Fn() -> String, key: &str) -> Result<(), VaultError> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key.split('/').any(|part| part == ".." || part == ".")
        || key.contains('\0');
    if bad {
        return Err(VaultError::Store {
            location: location(),
            message: format!("invalid object key `{key}`"),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Local folder

/// Temporary files of writes in progress start with this; listings skip them.
const TEMP_PREFIX: &str = ".tmp-";

/// A folder on a local file system. Writes go to a temporary file in the target's folder,
/// are fsynced and then renamed (or hard-linked, for create-if-absent) into place, and the
/// folder is fsynced: an object is either whole or absent, also after a crash.
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: PathBuf) -> LocalStore {
        LocalStore { root }
    }

    fn path(&self, key: &str) -> Result<PathBuf, VaultError> {
        check_key(|| self.location(), key)?;
        Ok(self.root.join(key))
    }

    fn io(&self, what: &'static str, path: &Path, source: io::Error) -> VaultError {
        VaultError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Writes `parts` to a new temporary file beside `path`, synced; returns its path.
    fn write_temp(&self, path: &Path, parts: &[&[u8]]) -> Result<PathBuf, VaultError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = path.parent().expect("object paths have a parent");
        let name = format!(
            "{TEMP_PREFIX}{}-{}-{:016x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u64>()
        );
        let temp = dir.join(name);
        let mut file = match File::options().write(true).create_new(true).open(&temp) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(|e| self.io("cannot create folder", dir, e))?;
                File::options()
                    .write(true)
                    .create_new(true)
                    .open(&temp)
                    .map_err(|e| self.io("cannot create", &temp, e))?
            }
            Err(err) => return Err(self.io("cannot create", &temp, err)),
        };
        let written = parts
            .iter()
            .try_for_each(|part| file.write_all(part))
            .and_then(|()| file.sync_all());
        if let Err(err) = written {
            drop(file);
            let _ = fs::remove_file(&temp);
            return Err(self.io("cannot write", &temp, err));
        }
        Ok(temp)
    }

    fn sync_dir(&self, path: &Path) -> Result<(), VaultError> {
        let dir = path.parent().expect("object paths have a parent");
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io("cannot sync folder", dir, e))
    }

    /// Walks `dir` (whose key is `dir_key`, empty or ending in `/`), collecting objects whose
    /// key starts with `prefix`; only descends where such keys can be.
    fn walk(&self, dir: &Path, dir_key: &str, prefix: &str, out: &mut Vec<(String, u64)>) -> Result<(), VaultError> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(self.io("cannot list", dir, err)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| self.io("cannot list", dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TEMP_PREFIX) {
                continue;
            }
            let key = format!("{dir_key}{name}");
            let file_type = entry
                .file_type()
                .map_err(|e| self.io("cannot stat", &entry.path(), e))?;
            if file_type.is_dir() {
                let sub = format!("{key}/");
                if sub.starts_with(prefix) || prefix.starts_with(&sub) {
                    self.walk(&entry.path(), &sub, prefix, out)?;
                }
            } else if file_type.is_file() && key.starts_with(prefix) {
                match entry.metadata() {
                    Ok(meta) => out.push((key, meta.len())),
                    // Deleted while listing.
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(self.io("cannot stat", &entry.path(), err)),
                }
            }
        }
        Ok(())
    }
}

impl ObjectStore for LocalStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, VaultError> {
        let path = self.path(key)?;
        match fs::read(&path) {
            Ok(data) => Ok(Some(data)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(self.io("cannot read", &path, err)),
        }
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, VaultError> {
        let path = self.path(key)?;
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(VaultError::NotFound {
                    what: "object",
                    name: key.to_string(),
                    location: self.location(),
                })
            }
            Err(err) => return Err(self.io("cannot open", &path, err)),
        };
        let len =
            usize::try_from(len).map_err(|_| self.io("cannot read", &path, io::ErrorKind::InvalidInput.into()))?;
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| self.io("cannot read", &path, e))?;
        Ok(buf)
    }

    fn put(&self, key: &str, data: &[u8]) -> Result<(), VaultError> {
        self.put_parts(key, &[data])
    }

    fn put_parts(&self, key: &str, parts: &[&[u8]]) -> Result<(), VaultError> {
        let path = self.path(key)?;
        let temp = self.write_temp(&path, parts)?;
        if let Err(err) = fs::rename(&temp, &path) {
            let _ = fs::remove_file(&temp);
            return Err(self.io("cannot rename into place", &path, err));
        }
        self.sync_dir(&path)
    }

    fn put_if_absent(&self, key: &str, data: &[u8]) -> Result<bool, VaultError> {
        let path = self.path(key)?;
        if path.exists() {
            return Ok(false);
        }
        let temp = self.write_temp(&path, &[data])?;
        // link(2) never replaces an existing name: this is the create-if-absent.
        let linked = fs::hard_link(&temp, &path);
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => {
                self.sync_dir(&path)?;
                Ok(true)
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(err) => Err(self.io("cannot link into place", &path, err)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, VaultError> {
        if !prefix.is_empty() {
            check_key(|| self.location(), prefix)?;
        }
        // Start at the deepest folder the prefix names.
        let dir_key = prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
        let (dir, dir_key) = if dir_key.is_empty() {
            (self.root.clone(), String::new())
        } else {
            (self.root.join(dir_key), format!("{dir_key}/"))
        };
        let mut out = Vec::new();
        self.walk(&dir, &dir_key, prefix, &mut out)?;
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), VaultError> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(self.io("cannot remove", &path, err)),
        }
    }

    fn remove_stale_temporaries(&self, age: Duration) -> Result<usize, VaultError> {
        let mut removed = 0;
        let mut dirs = vec![self.root.clone()];
        while let Some(dir) = dirs.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(self.io("cannot list", &dir, err)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.io("cannot list", &dir, e))?;
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    dirs.push(entry.path());
                } else if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
                    && meta
                        .modified()
                        .ok()
                        .and_then(|m| m.elapsed().ok())
                        .is_some_and(|elapsed| elapsed > age)
                    && fs::remove_file(entry.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    fn size(&self, key: &str) -> Result<Option<u64>, VaultError> {
        let path = self.path(key)?;
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            Ok(_) => Ok(None),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(self.io("cannot stat", &path, err)),
        }
    }

    fn modified(&self, key: &str) -> Result<Option<i64>, VaultError> {
        let path = self.path(key)?;
        match fs::metadata(&path).and_then(|m| m.modified()) {
            Ok(t) => Ok(t.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs() as i64)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(self.io("cannot stat", &path, err)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// S3

/// How often a call that failed transiently (connection, timeout, 5xx) is tried in all.
const S3_ATTEMPTS: u32 = 3;

/// A bucket (and prefix) of an S3-compatible service, path-style addressing.
///
/// Callers are synchronous (rustic_core runs on rayon threads), so each call blocks on a tokio
/// runtime; many threads may block at once. All S3 stores of the process share one runtime
/// and one HTTP client: a runtime owned by a store would take pooled connections down with it
/// (the pool is the client's), and dropping a runtime panics in async code — a store dropped
/// by the controller's async code must be harmless.
pub struct S3Store {
    op: opendal::Operator,
    runtime: &'static tokio::runtime::Runtime,
    location: String,
}

/// The parts of an `s3://bucket[/prefix]?endpoint=…&region=…` URL.
struct S3Url {
    bucket: String,
    prefix: String,
    endpoint: String,
    region: String,
}

impl S3Url {
    fn parse(url: &str) -> Result<S3Url, VaultError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad_url(url, "not an s3:// URL"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        let prefix = percent_decode(prefix.trim_matches('/'));
        if bucket.is_empty() {
            return Err(bad_url(url, "no bucket name"));
        }
        let mut endpoint = None;
        let mut region = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            match name {
                "endpoint" => endpoint = Some(value),
                "region" => region = Some(value),
                _ => {
                    return Err(bad_url(
                        url,
                        &format!("unknown parameter `{name}` (known: endpoint, region)"),
                    ))
                }
            }
        }
        let region = region.unwrap_or_else(|| "us-east-1".to_string());
        let endpoint = endpoint.unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(bad_url(url, "the endpoint must start with http:// or https://"));
        }
        let endpoint = endpoint.trim_end_matches('/').to_string();
        Ok(S3Url {
            bucket: bucket.to_string(),
            prefix,
            endpoint,
            region,
        })
    }

    /// `s3:http://host:port/bucket/prefix/key`, the form restic understands.
    fn restic(&self, key: &str) -> String {
        let mut out = format!("s3:{}/{}", self.endpoint, self.bucket);
        for part in [self.prefix.as_str(), key.trim_matches('/')] {
            if !part.is_empty() {
                out.push('/');
                out.push_str(part);
            }
        }
        out
    }
}

impl S3Store {
    fn open(url: &str, credentials: &S3Credentials) -> Result<S3Store, VaultError> {
        let S3Url {
            bucket,
            prefix,
            endpoint,
            region,
        } = S3Url::parse(url)?;
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let access_key = credentials.access_key.clone().or_else(|| env("AWS_ACCESS_KEY_ID"));
        let secret_key = credentials.secret_key.clone().or_else(|| env("AWS_SECRET_ACCESS_KEY"));

        let mut builder = opendal::services::S3::default()
            .bucket(&bucket)
            .root(&format!("/{prefix}"))
            .endpoint(&endpoint)
            .region(&region)
            .disable_config_load()
            .disable_ec2_metadata();
        match (access_key, secret_key) {
            (Some(access), Some(secret)) => builder = builder.access_key_id(&access).secret_access_key(&secret),
            (None, None) => builder = builder.skip_signature(),
            _ => return Err(bad_url(url, "S3 credentials need both an access key and a secret key")),
        }

        let location = format!("s3://{bucket}/{prefix} at {endpoint}");
        let (runtime, transport) = s3_client()?;
        let op = opendal::Operator::new(builder)
            .map_err(|err| bad_url(url, &err.to_string()))?
            .with_context(opendal::OperationContext::new().with_http_transport(transport));
        Ok(S3Store { op, runtime, location })
    }

    /// Runs `call` to completion, trying again (with a short back-off) while it fails
    /// transiently. Only idempotent calls go through here.
    fn run<T, F, Fut>(&self, call: F) -> Result<T, opendal::Error>
    where
        F: Fn() -> Fut,
        Fut: IntoFuture<Output = Result<T, opendal::Error>>,
    {
        let mut attempt = 1;
        loop {
            match self.runtime.block_on(call().into_future()) {
                Err(err) if attempt < S3_ATTEMPTS && is_transient(&err) => {
                    std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    fn error(&self, key: &str, err: opendal::Error) -> VaultError {
        if is_transient(&err) {
            VaultError::Unreachable {
                location: self.location.clone(),
                reason: error_chain(&err),
            }
        } else {
            VaultError::Store {
                location: self.location.clone(),
                message: format!("`{key}`: {}", error_chain(&err)),
            }
        }
    }
}

impl ObjectStore for S3Store {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, VaultError> {
        check_key(|| self.location(), key)?;
        match self.run(|| self.op.read(key)) {
            Ok(buf) => Ok(Some(buf.to_vec())),
            Err(err) if err.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(self.error(key, err)),
        }
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, VaultError> {
        check_key(|| self.location(), key)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        match self.run(|| self.op.read_with(key).range(offset..offset + len)) {
            Ok(buf) if buf.len() as u64 == len => Ok(buf.to_vec()),
            Ok(buf) => Err(VaultError::Store {
                location: self.location(),
                message: format!("`{key}`: short read: {} of {len} bytes at offset {offset}", buf.len()),
            }),
            Err(err) if err.kind() == opendal::ErrorKind::NotFound => Err(VaultError::NotFound {
                what: "object",
                name: key.to_string(),
                location: self.location(),
            }),
            Err(err) => Err(self.error(key, err)),
        }
    }

    fn put(&self, key: &str, data: &[u8]) -> Result<(), VaultError> {
        self.put_parts(key, &[data])
    }

    fn put_parts(&self, key: &str, parts: &[&[u8]]) -> Result<(), VaultError> {
        check_key(|| self.location(), key)?;
        let parts: Vec<bytes::Bytes> = parts.iter().map(|p| bytes::Bytes::copy_from_slice(p)).collect();
        self.run(|| self.op.write(key, opendal::Buffer::from(parts.clone())))
            .map(drop)
            .map_err(|err| self.error(key, err))
    }

    fn put_if_absent(&self, key: &str, data: &[u8]) -> Result<bool, VaultError> {
        check_key(|| self.location(), key)?;
        // A cheap look first: the common "already there" case (a retried push) needs no upload,
        // and it keeps servers that ignore `If-None-Match` (below) from overwriting in the
        // sequential case.
        if self.size(key)?.is_some() {
            return Ok(false);
        }
        let body = bytes::Bytes::copy_from_slice(data);
        let conditional = self
            .runtime
            .block_on(self.op.write_with(key, body.clone()).if_not_exists(true).into_future());
        match conditional {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == opendal::ErrorKind::ConditionNotMatch => Ok(false),
            Err(err) if err.kind() == opendal::ErrorKind::Unsupported || rejects_condition(&err) => {
                // The server does not do conditional writes. Fall back to the check above plus a
                // plain write. RACE: two writers that both saw the key absent both write, and
                // the last one wins; callers write content-addressed or identical data under a
                // key, so the loser's copy is equivalent.
                self.run(|| self.op.write(key, body.clone()))
                    .map_err(|err| self.error(key, err))?;
                Ok(true)
            }
            Err(err) => Err(self.error(key, err)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, VaultError> {
        if !prefix.is_empty() {
            check_key(|| self.location(), prefix)?;
        }
        // List the folder the prefix names, then keep the keys that start with the prefix.
        let dir = prefix.rfind('/').map_or("", |i| &prefix[..=i]);
        let listed = self.run(|| self.op.list_with(dir).recursive(true));
        let entries = match listed {
            Ok(entries) => entries,
            Err(err) if err.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(self.error(prefix, err)),
        };
        Ok(entries
            .into_iter()
            .filter(|e| !e.path().ends_with('/') && e.path().starts_with(prefix))
            .map(|e| (e.path().to_string(), e.metadata().content_length()))
            .collect())
    }

    fn delete(&self, key: &str) -> Result<(), VaultError> {
        check_key(|| self.location(), key)?;
        match self.run(|| self.op.delete(key)) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == opendal::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(self.error(key, err)),
        }
    }

    fn size(&self, key: &str) -> Result<Option<u64>, VaultError> {
        check_key(|| self.location(), key)?;
        match self.run(|| self.op.stat(key)) {
            Ok(meta) => Ok(Some(meta.content_length())),
            Err(err) if err.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(self.error(key, err)),
        }
    }

    fn modified(&self, key: &str) -> Result<Option<i64>, VaultError> {
        check_key(|| self.location(), key)?;
        match self.run(|| self.op.stat(key)) {
            Ok(meta) => Ok(meta.last_modified().map(|t| t.into_inner().as_second())),
            Err(err) if err.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(self.error(key, err)),
        }
    }
}

/// The runtime and HTTP client all S3 stores of the process share.
fn s3_client() -> Result<(&'static tokio::runtime::Runtime, opendal::HttpTransporter), VaultError> {
    static CLIENT: OnceLock<Result<(tokio::runtime::Runtime, reqwest::Client), String>> = OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        // reqwest is built without a crypto provider of its own; another part of the process
        // may have installed one already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("resurgo-s3")
            .enable_all()
            .build()
            .map_err(|err| format!("cannot start a runtime: {err}"))?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|err| format!("cannot start an HTTP client: {err}"))?;
        Ok((runtime, client))
    });
    match client {
        Ok((runtime, client)) => Ok((
            runtime,
            opendal::HttpTransporter::new(opendal_http_transport_reqwest::ReqwestTransport::new(client.clone())),
        )),
        Err(err) => Err(VaultError::Store {
            location: "s3".to_string(),
            message: err.clone(),
        }),
    }
}

/// Whether an S3 error means "the storage did not answer" (or answered "try later").
fn is_transient(err: &opendal::Error) -> bool {
    if err.is_temporary() {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(e) = cause.downcast_ref::<reqwest::Error>() {
            if e.is_connect() || e.is_timeout() {
                return true;
            }
        }
        if let Some(e) = cause.downcast_ref::<io::Error>() {
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::NetworkUnreachable
            ) {
                return true;
            }
        }
        source = cause.source();
    }
    false
}

/// Whether the server refused a conditional write as something it does not implement.
fn rejects_condition(err: &opendal::Error) -> bool {
    let text = err.to_string();
    text.contains("NotImplemented") || text.contains("501")
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Decodes `%XX` escapes (URL paths and query values); leaves anything malformed as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The address restic uses for folder `key` of the store a repository URL names.
pub(crate) fn restic_location(url: &str, store: &dyn ObjectStore, key: &str) -> String {
    match S3Url::parse(url) {
        Ok(s3) => s3.restic(key),
        Err(_) => format!("{}/{}", store.location().trim_end_matches('/'), key.trim_matches('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("http%3A%2F%2F127.0.0.1%3A9000"), "http://127.0.0.1:9000");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn urls() {
        assert!(matches!(
            open_object_store("relative/path", &S3Credentials::default()),
            Err(VaultError::BadUrl { .. })
        ));
        assert!(matches!(
            open_object_store("ftp://x", &S3Credentials::default()),
            Err(VaultError::BadUrl { .. })
        ));
        assert!(matches!(
            open_object_store("s3://", &S3Credentials::default()),
            Err(VaultError::BadUrl { .. })
        ));
        assert!(matches!(
            open_object_store("s3://b/p?color=red", &S3Credentials::default()),
            Err(VaultError::BadUrl { .. })
        ));
        let store = open_object_store("file:///tmp/x", &S3Credentials::default()).unwrap();
        assert_eq!(store.location(), "/tmp/x");
    }

    #[test]
    fn local_store_semantics() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("repo"));
        assert_eq!(store.get("a/b").unwrap(), None);
        assert!(store.list("").unwrap().is_empty());
        store.put("a/b", b"one").unwrap();
        store.put("a/b", b"two").unwrap();
        assert_eq!(store.get("a/b").unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(store.get_range("a/b", 1, 2).unwrap(), b"wo");
        assert!(store.put_if_absent("a/c/d", b"x").unwrap());
        assert!(!store.put_if_absent("a/c/d", b"y").unwrap());
        assert_eq!(store.get("a/c/d").unwrap().as_deref(), Some(&b"x"[..]));
        store.put_parts("z", &[b"ab", b"cd"]).unwrap();
        let mut all = store.list("").unwrap();
        all.sort();
        assert_eq!(all, vec![("a/b".into(), 3), ("a/c/d".into(), 1), ("z".into(), 4)]);
        assert_eq!(store.list("a/c").unwrap(), vec![("a/c/d".into(), 1)]);
        assert_eq!(store.list("a/b").unwrap(), vec![("a/b".into(), 3)]);
        assert_eq!(store.size("z").unwrap(), Some(4));
        assert_eq!(store.size("a").unwrap(), None);
        store.delete("a/b").unwrap();
        store.delete("a/b").unwrap();
        assert!(store.get("../x").is_err());
        // Temporary files of interrupted writes: invisible, and removed once stale.
        let stale = dir.path().join("repo/a/.tmp-1-2-3");
        fs::write(&stale, b"half").unwrap();
        assert!(store.list("").unwrap().iter().all(|(k, _)| !k.contains(".tmp-")));
        assert_eq!(store.remove_stale_temporaries(Duration::from_secs(3600)).unwrap(), 0);
        File::open(&stale)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(7200))
            .unwrap();
        assert_eq!(store.remove_stale_temporaries(Duration::from_secs(3600)).unwrap(), 1);
        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("repo/a"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            names.iter().all(|n| !n.to_string_lossy().starts_with(TEMP_PREFIX)),
            "{names:?}"
        );
    }
}
