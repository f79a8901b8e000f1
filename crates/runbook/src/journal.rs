//! The durable journal of a run: `<dir>/<run-id>/journal.jsonl`, append-only JSON lines, one
//! record per phase of each step, and `<dir>/<run-id>/plan.json`, the plan as it was at start.
//!
//! Durability: each append is a single `write` of a whole line followed by `fsync`, and the run
//! directory is fsynced when it is created, so a record that `append` returned is on disk. A
//! crash in the middle of a write can leave a torn last line: reading tolerates it and reports
//! it ([`TornTail`]); opening for append cuts it off first, so the next record starts on a line
//! of its own. A malformed line anywhere else is corruption and is refused.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::RecoveryPlan;

pub const JOURNAL_FILE: &str = "journal.jsonl";
pub const PLAN_FILE: &str = "plan.json";

/// Where a step (or, with no step, the run) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The run was created (run record) with the plan stored beside the journal.
    Planned,
    /// About to call `check`: written before the step touches anything.
    Started,
    /// `check` answered; detail `ready` (about to act — the undo record) or `already done`.
    Checked,
    Acted,
    Verified,
    /// The step is complete (step record), or the whole run succeeded (run record).
    Finished,
    /// The step failed (detail: the error); after `compensating`, the compensation failed.
    Failed,
    Compensating,
    Compensated,
    /// The run ended without completing (run record; detail: the error).
    Aborted,
    /// A step failed after a step that cannot be undone had acted (run record; detail: the
    /// error): nothing was compensated, and resuming the run retries from the failed step.
    Stopped,
}

/// `detail` of a `checked` record when the runner is about to act.
pub const CHECKED_READY: &str = "ready";
/// `detail` of a `checked` record when the effect was already in place.
pub const CHECKED_ALREADY_DONE: &str = "already done";

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub run: String,
    pub epoch: u64,
    /// `None` for records about the run as a whole.
    pub step: Option<String>,
    pub phase: Phase,
    #[serde(default)]
    pub detail: String,
    /// How long the phase that just ended took (0 for records that open a phase).
    #[serde(default)]
    pub millis: u64,
}

/// A partial last line left by a crash in the middle of a write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TornTail {
    /// Byte offset where the torn line starts (where the file is cut on open).
    pub offset: u64,
    pub bytes: usize,
}

/// Everything a journal file holds.
#[derive(Debug, Clone, Default)]
pub struct JournalContents {
    pub records: Vec<Record>,
    pub torn: Option<TornTail>,
}

/// Journal and plan-file failures. Only I/O may be worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("run directory {} already exists", .0.display())]
    Exists(PathBuf),
    #[error("no run at {}", .0.display())]
    NotFound(PathBuf),
    #[error("corrupt journal {}, line {line}: {message}", path.display())]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("unreadable plan {}: {message}", path.display())]
    BadPlan { path: PathBuf, message: String },
}

impl JournalError {
    /// Whether trying again can help: I/O errors may be passing (disk full, NFS hiccup);
    /// corruption and missing runs are not.
    pub fn is_retryable(&self) -> bool {
        matches!(self, JournalError::Io { .. })
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// An open journal, positioned for appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    run: String,
    next_seq: u64,
}

impl Journal {
    /// The directory of run `run` under `dir`.
    pub fn run_dir(dir: &Path, run: &str) -> PathBuf {
        dir.join(run)
    }

    /// Creates `<dir>/<run>/` with `plan.json` and an empty journal. Refuses an existing run.
    pub fn create(dir: &Path, run: &str, plan: &RecoveryPlan) -> Result<Journal, JournalError> {
        // Journals are resurgo's alone: 0700 (issue 9).
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("create", dir))?;
        let run_dir = Self::run_dir(dir, run);
        match std::fs::DirBuilder::new().mode(0o700).create(&run_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(JournalError::Exists(run_dir)),
            Err(e) => return Err(io("create", &run_dir)(e)),
        }
        fsync_dir(dir)?;
        write_atomic(
            &run_dir.join(PLAN_FILE),
            &serde_json::to_vec_pretty(plan).unwrap_or_default(),
        )?;
        let path = run_dir.join(JOURNAL_FILE);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(io("create", &path))?;
        file.sync_all().map_err(io("fsync", &path))?;
        fsync_dir(&run_dir)?;
        Ok(Journal {
            path,
            file,
            run: run.to_string(),
            next_seq: 1,
        })
    }

    /// Opens an existing run's journal for appending, cutting off a torn last line (reported in
    /// the returned contents).
    pub fn open(dir: &Path, run: &str) -> Result<(Journal, JournalContents), JournalError> {
        let path = Self::run_dir(dir, run).join(JOURNAL_FILE);
        if !path.exists() {
            return Err(JournalError::NotFound(Self::run_dir(dir, run)));
        }
        let contents = Self::read(&path)?;
        let file = OpenOptions::new().append(true).open(&path).map_err(io("open", &path))?;
        if let Some(torn) = &contents.torn {
            file.set_len(torn.offset).map_err(io("truncate", &path))?;
            file.sync_all().map_err(io("fsync", &path))?;
        }
        let next_seq = contents.records.last().map_or(1, |r| r.seq + 1);
        Ok((
            Journal {
                path,
                file,
                run: run.to_string(),
                next_seq,
            },
            contents,
        ))
    }

    /// Reads a journal file. A last line without its newline that does not parse is a torn
    /// tail (reported, not an error); any other bad line is corruption.
    pub fn read(path: &Path) -> Result<JournalContents, JournalError> {
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io("read", path))?;
        let mut out = JournalContents::default();
        let mut offset = 0usize;
        let mut line_no = 0usize;
        while offset < bytes.len() {
            line_no += 1;
            let (line, complete) = match bytes[offset..].iter().position(|&b| b == b'\n') {
                Some(n) => (&bytes[offset..offset + n], true),
                None => (&bytes[offset..], false),
            };
            match serde_json::from_slice::<Record>(line) {
                // A complete record whose newline was lost is still a record.
                Ok(r) => out.records.push(r),
                Err(_) if !complete => {
                    out.torn = Some(TornTail {
                        offset: offset as u64,
                        bytes: line.len(),
                    });
                }
                Err(e) => {
                    return Err(JournalError::Corrupt {
                        path: path.to_path_buf(),
                        line: line_no,
                        message: e.to_string(),
                    })
                }
            }
            offset += line.len() + usize::from(complete);
        }
        // A record without its newline must not be followed by the next append on the same
        // line: treat it as torn too, so `open` cuts it and it is not half-trusted.
        if out.torn.is_none() && !bytes.is_empty() && bytes.last() != Some(&b'\n') {
            let start = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
            out.records.pop();
            out.torn = Some(TornTail {
                offset: start as u64,
                bytes: bytes.len() - start,
            });
        }
        Ok(out)
    }

    /// The plan stored at the start of run `run`.
    pub fn load_plan(dir: &Path, run: &str) -> Result<RecoveryPlan, JournalError> {
        let path = Self::run_dir(dir, run).join(PLAN_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(JournalError::NotFound(Self::run_dir(dir, run)))
            }
            Err(e) => return Err(io("read", &path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| JournalError::BadPlan {
            path,
            message: e.to_string(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn run(&self) -> &str {
        &self.run
    }

    /// Appends one record: one write of the whole line, then fsync. Returns the record written.
    pub fn append(
        &mut self,
        epoch: u64,
        step: Option<&str>,
        phase: Phase,
        detail: &str,
        millis: u64,
    ) -> Result<Record, JournalError> {
        let record = Record {
            seq: self.next_seq,
            time: resurgo_spec::units::format_rfc3339(std::time::SystemTime::now(), 3),
            run: self.run.clone(),
            epoch,
            step: step.map(str::to_string),
            phase,
            detail: detail.to_string(),
            millis,
        };
        let mut line = serde_json::to_vec(&record).unwrap_or_default();
        line.push(b'\n');
        self.file.write_all(&line).map_err(io("append to", &self.path))?;
        self.file.sync_data().map_err(io("fsync", &self.path))?;
        self.next_seq += 1;
        crate::crash::after_record(record.seq);
        Ok(record)
    }
}

/// Write to a temporary file, fsync, rename over `path`, fsync the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), JournalError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
    f.write_all(bytes).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("fsync", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io("rename", path))?;
    if let Some(parent) = path.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

fn fsync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("fsync", dir))
}
