//! The bridge to rustic_core: its backend traits over an [`ObjectStore`], a backup source that
//! streams a command's standard output, and the translation of its errors.
//!
//! The restic layout lives under a prefix of the object store (`store/`): `config`,
//! `keys/ID`, `data/XX/ID`, `index/ID`, `snapshots/ID` (`locks/` is restic's; rustic_core is
//! lock-free and never reads or writes it).

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rustic_core::repofile::{Metadata, Node, NodeType};
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, ReadSource, ReadSourceEntry, RusticError, RusticResult,
    WriteBackend,
};

use crate::object::ObjectStore;
use crate::VaultError;

/// Shared between a backup's source and its backend: once set (to why), no snapshot file may
/// be written, so a backup whose input turned out incomplete leaves no snapshot.
pub(crate) type Veto = Arc<Mutex<Option<String>>>;

/// rustic_core's view of a restic repository kept under `root` of an object store.
pub(crate) struct StoreBackend {
    store: Arc<dyn ObjectStore>,
    root: String,
    veto: Option<Veto>,
    /// Bytes written, for reports.
    written: AtomicU64,
    /// Packs read with ranged reads (what `check --read-data` reads), when counting.
    packs_read: Option<Mutex<HashSet<Id>>>,
    /// Key files written (by an init), so that an init that lost a race can take its key back.
    keys_written: Mutex<Vec<Id>>,
}

impl StoreBackend {
    /// `root` is the folder of the restic repository in the store, e.g. `store`.
    pub(crate) fn new(store: Arc<dyn ObjectStore>, root: &str) -> StoreBackend {
        StoreBackend {
            store,
            root: format!("{}/", root.trim_matches('/')),
            veto: None,
            written: AtomicU64::new(0),
            packs_read: None,
            keys_written: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn with_veto(mut self, veto: Veto) -> StoreBackend {
        self.veto = Some(veto);
        self
    }

    pub(crate) fn counting_pack_reads(mut self) -> StoreBackend {
        self.packs_read = Some(Mutex::new(HashSet::new()));
        self
    }

    pub(crate) fn bytes_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    pub(crate) fn packs_read(&self) -> usize {
        self.packs_read
            .as_ref()
            .map_or(0, |set| set.lock().expect("not poisoned").len())
    }

    pub(crate) fn keys_written(&self) -> Vec<Id> {
        self.keys_written.lock().expect("not poisoned").clone()
    }

    pub(crate) fn remove_key(&self, id: &Id) -> Result<(), VaultError> {
        self.store.delete(&self.key(FileType::Key, id))
    }

    fn key(&self, tpe: FileType, id: &Id) -> String {
        let hex = id.to_hex();
        let hex = hex.as_str();
        match tpe {
            FileType::Config => format!("{}config", self.root),
            FileType::Pack => format!("{}data/{}/{hex}", self.root, &hex[..2]),
            _ => format!("{}{}/{hex}", self.root, tpe.dirname()),
        }
    }
}

/// Wraps a storage error for rustic_core, keeping it as the source so that
/// [`vault_error`] can give it back unchanged (e.g. [`VaultError::Unreachable`]).
fn backend_error(err: VaultError) -> Box<RusticError> {
    RusticError::with_source(ErrorKind::Backend, "storage operation failed", err)
}

impl ReadBackend for StoreBackend {
    fn location(&self) -> String {
        format!("{}/{}", self.store.location(), self.root.trim_end_matches('/'))
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            let size = self.store.size(&self.key(tpe, &Id::default())).map_err(backend_error)?;
            return Ok(size.map(|n| (Id::default(), n as u32)).into_iter().collect());
        }
        let prefix = format!("{}{}/", self.root, tpe.dirname());
        let listed = self.store.list(&prefix).map_err(backend_error)?;
        Ok(listed
            .into_iter()
            .filter_map(|(key, size)| {
                // Anything that is not named by an id (a stray file) is not part of the repository.
                let name = key.rsplit('/').next()?;
                let id = (name.len() == 64).then(|| name.parse::<Id>().ok()).flatten()?;
                Some((id, u32::try_from(size).unwrap_or(u32::MAX)))
            })
            .collect())
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let key = self.key(tpe, id);
        match self.store.get(&key).map_err(backend_error)? {
            Some(data) => Ok(Bytes::from(data)),
            None => Err(backend_error(VaultError::NotFound {
                what: "repository file",
                name: key,
                location: self.store.location(),
            })),
        }
    }

    fn read_partial(&self, tpe: FileType, id: &Id, _cacheable: bool, offset: u32, length: u32) -> RusticResult<Bytes> {
        if let (FileType::Pack, Some(set)) = (tpe, &self.packs_read) {
            let _ = set.lock().expect("not poisoned").insert(*id);
        }
        let data = self
            .store
            .get_range(&self.key(tpe, id), offset.into(), length.into())
            .map_err(backend_error)?;
        Ok(Bytes::from(data))
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.key(tpe, id)
    }
}

impl WriteBackend for StoreBackend {
    fn write_bytes(&self, tpe: FileType, id: &Id, _cacheable: bool, content: BytesList) -> RusticResult<()> {
        if tpe == FileType::Snapshot {
            if let Some(why) = self.veto.as_ref().and_then(|v| v.lock().expect("not poisoned").clone()) {
                return Err(
                    RusticError::new(ErrorKind::ExternalCommand, "no snapshot written: {why}")
                        .attach_context("why", why),
                );
            }
        }
        let key = self.key(tpe, id);
        if tpe == FileType::Config {
            // Only an init writes the config here: never over another repository's.
            let data: Vec<u8> = content.slice().concat();
            if !self.store.put_if_absent(&key, &data).map_err(backend_error)? {
                return Err(backend_error(VaultError::AlreadyExists {
                    location: self.store.location(),
                }));
            }
        } else {
            let parts: Vec<&[u8]> = content.slice().iter().map(|b| &b[..]).collect();
            self.store.put_parts(&key, &parts).map_err(backend_error)?;
        }
        if tpe == FileType::Key {
            self.keys_written.lock().expect("not poisoned").push(*id);
        }
        let _ = self.written.fetch_add(content.size() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        self.store.delete(&self.key(tpe, id)).map_err(backend_error)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Translates a rustic_core error: a storage error it carries comes back as it was; a wrong
/// password is [`VaultError::WrongPassword`]; anything else is [`VaultError::Store`] with
/// rustic's message on one line.
pub(crate) fn vault_error(location: &str, err: &RusticError) -> VaultError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(inner) = cause.downcast_ref::<VaultError>() {
            return copy_error(inner);
        }
        source = cause.source();
    }
    if err.is_incorrect_password() {
        return VaultError::WrongPassword {
            location: location.to_string(),
        };
    }
    VaultError::Store {
        location: location.to_string(),
        message: message(err),
    }
}

/// rustic's message and its causes on one line, without its preamble, links and backtraces.
fn message(err: &RusticError) -> String {
    let log = err.display_log();
    let log = log.strip_prefix("Error: ").unwrap_or(&log);
    let own = log.split(": caused by: ").next().unwrap_or(log);
    let mut parts = vec![one_line(own.split(" (kind: related to ").next().unwrap_or(own))];
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(cause) = source {
        let part = essence(&cause.to_string());
        if !part.is_empty() && !parts.iter().any(|p| p.contains(&part)) {
            parts.push(part);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// The message of a rustic error's full display (which has a preamble, links, context and a
/// backtrace); other text as it is, on one line.
pub(crate) fn essence(text: &str) -> String {
    let Some((_, message)) = text.split_once("Message:\n") else {
        return one_line(text);
    };
    let end = [
        "\n\nFor more information",
        "\n\nRelated issues",
        "\n\nWe believe",
        "\n\nSome additional details",
    ]
    .iter()
    .filter_map(|marker| message.find(marker))
    .min()
    .unwrap_or(message.len());
    one_line(&message[..end])
}

/// rustic's messages span lines; ours do not.
pub(crate) fn one_line(text: &str) -> String {
    let text = text.strip_prefix("Error: ").unwrap_or(text);
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A copy of a [`VaultError`] seen by reference inside a rustic error.
fn copy_error(err: &VaultError) -> VaultError {
    use VaultError::*;
    match err {
        WrongPassword { location } => WrongPassword {
            location: location.clone(),
        },
        CloneRefused { file, pgdata, marker } => CloneRefused {
            file: file.clone(),
            pgdata: pgdata.clone(),
            marker,
        },
        NotARepository { location } => NotARepository {
            location: location.clone(),
        },
        AlreadyExists { location } => AlreadyExists {
            location: location.clone(),
        },
        Unreachable { location, reason } => Unreachable {
            location: location.clone(),
            reason: reason.clone(),
        },
        ServerUnreachable { server, reason } => ServerUnreachable {
            server: server.clone(),
            reason: reason.clone(),
        },
        Corrupt {
            location,
            object,
            reason,
        } => Corrupt {
            location: location.clone(),
            object: object.clone(),
            reason: reason.clone(),
        },
        Io { what, path, source } => Io {
            what,
            path: path.clone(),
            source: io::Error::new(source.kind(), source.to_string()),
        },
        Command {
            program,
            status,
            stderr,
        } => Command {
            program: program.clone(),
            status: status.clone(),
            stderr: stderr.clone(),
        },
        NotFound { what, name, location } => NotFound {
            what,
            name: name.clone(),
            location: location.clone(),
        },
        BadUrl { url, reason } => BadUrl {
            url: url.clone(),
            reason: reason.clone(),
        },
        Store { location, message } => Store {
            location: location.clone(),
            message: message.clone(),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// A command's standard output as a backup source

/// How much of a failing command's standard error is kept for the error message.
const STDERR_KEPT: usize = 8 * 1024;

/// A running command whose standard output is backed up as one file. Nothing touches the
/// local disk. If the command exits non-zero (or its output cannot be read), the veto is set:
/// rustic_core would otherwise skip the unreadable file and save the snapshot anyway.
pub(crate) struct CommandSource {
    program: String,
    filename: PathBuf,
    child: Arc<Mutex<Option<Child>>>,
    stdout: Mutex<Option<ChildStdout>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_done: Mutex<mpsc::Receiver<()>>,
    veto: Veto,
}

impl CommandSource {
    pub(crate) fn spawn(
        argv: &[String],
        env: &[(String, String)],
        filename: &str,
        veto: Veto,
    ) -> Result<Self, VaultError> {
        let program = argv.first().cloned().unwrap_or_default();
        if program.is_empty() {
            return Err(VaultError::Command {
                program,
                status: "not started".into(),
                stderr: "empty command line".into(),
            });
        }
        let mut child = Command::new(&program)
            .args(&argv[1..])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| VaultError::Command {
                program: program.clone(),
                status: "not started".into(),
                stderr: err.to_string(),
            })?;
        let stdout = child.stdout.take();
        let mut child_stderr = child.stderr.take().expect("stderr is piped");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, stderr_done) = mpsc::channel();
        {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = child_stderr.read(&mut buf) {
                    let mut kept = stderr.lock().expect("not poisoned");
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > STDERR_KEPT {
                        let cut = kept.len() - STDERR_KEPT;
                        let _ = kept.drain(..cut);
                    }
                }
                let _ = done_tx.send(());
            });
        }
        Ok(CommandSource {
            program,
            filename: PathBuf::from(filename),
            child: Arc::new(Mutex::new(Some(child))),
            stdout: Mutex::new(stdout),
            stderr,
            stderr_done: Mutex::new(stderr_done),
            veto,
        })
    }

    /// Ends the command (killing it if the backup stopped reading early) and says how it went:
    /// `Err` if it failed, with its status and the end of its standard error.
    pub(crate) fn finish(self) -> Result<(), VaultError> {
        if let Some(mut child) = self.child.lock().expect("not poisoned").take() {
            // Still running: the backup did not read to the end (it failed on its own).
            let _ = child.kill();
            let _ = child.wait();
            self.veto
                .lock()
                .expect("not poisoned")
                .get_or_insert_with(|| "the backup stopped reading".into());
        }
        let failed = self.veto.lock().expect("not poisoned").clone();
        match failed {
            None => Ok(()),
            Some(status) => {
                // The pipe closes when the command exits, unless it left children behind
                // holding it: do not wait for those.
                let _ = self
                    .stderr_done
                    .lock()
                    .expect("not poisoned")
                    .recv_timeout(Duration::from_secs(2));
                let stderr = String::from_utf8_lossy(&self.stderr.lock().expect("not poisoned"))
                    .trim()
                    .to_string();
                Err(VaultError::Command {
                    program: self.program,
                    status,
                    stderr,
                })
            }
        }
    }
}

impl ReadSource for CommandSource {
    type Open = CommandReader;
    type Iter = std::iter::Once<RusticResult<ReadSourceEntry<CommandReader>>>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(None)
    }

    fn entries(&self) -> Self::Iter {
        let Some(stdout) = self.stdout.lock().expect("not poisoned").take() else {
            return std::iter::once(Err(RusticError::new(ErrorKind::Internal, "command output read twice")));
        };
        let name = self.filename.file_name().unwrap_or(self.filename.as_os_str());
        let meta = Metadata {
            mode: Some(0o600),
            mtime: Some(rustic_core::jiff::Timestamp::now()),
            uid: Some(nix::unistd::getuid().as_raw()),
            gid: Some(nix::unistd::getgid().as_raw()),
            ..Metadata::default()
        };
        let node = Node::new_node(name, NodeType::File, meta);
        let reader = CommandReader {
            stdout,
            child: self.child.clone(),
            veto: self.veto.clone(),
        };
        std::iter::once(Ok(ReadSourceEntry {
            path: self.filename.clone(),
            node,
            open: Some(reader),
        }))
    }
}

/// The command's standard output; at its end, the command's exit status decides whether the
/// read succeeded.
pub(crate) struct CommandReader {
    stdout: ChildStdout,
    child: Arc<Mutex<Option<Child>>>,
    veto: Veto,
}

impl CommandReader {
    fn fail(&self, why: String) -> io::Error {
        let error = io::Error::other(why.clone());
        let _ = self.veto.lock().expect("not poisoned").get_or_insert(why);
        error
    }
}

impl Read for CommandReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.stdout.read(buf) {
            Ok(0) if !buf.is_empty() => {
                let child = self.child.lock().expect("not poisoned").take();
                let Some(mut child) = child else { return Ok(0) };
                match child.wait() {
                    Ok(status) if status.success() => Ok(0),
                    Ok(status) => Err(self.fail(status.to_string())),
                    Err(err) => Err(self.fail(format!("cannot wait for it: {err}"))),
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Err(err),
            Err(err) => Err(self.fail(format!("cannot read its output: {err}"))),
            ok => ok,
        }
    }
}
