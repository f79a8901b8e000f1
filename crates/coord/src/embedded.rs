//! The one-machine coordination store: everything in one JSON state file in a folder.
//!
//! Every operation takes an exclusive `flock` on `<dir>/lock` (so processes and threads on the
//! machine serialize), reads `<dir>/state.json`, and — if it changed anything — writes
//! `state.json.tmp`, fsyncs it, renames it over `state.json` and fsyncs the folder, so a crash
//! leaves either the old or the new state, never a torn one (a torn temporary file is simply
//! overwritten by the next write; it is never read).
//!
//! Lease deadlines are on the machine's boot clock ([`crate::clock::BootTime`]): NTP cannot
//! step it, every process on the machine reads the same one, and a restart of the machine
//! ends every lease (all their holders ended with it). The store is for one machine.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::clock::BootTime;
use crate::model::{check_successor, Assignment, Lease};
use crate::store::{CasOutcome, CoordStore, LeaseId, Result, StoreError};

const STATE: &str = "state.json";
const TEMP: &str = "state.json.tmp";
const LOCK: &str = "lock";

/// A coordination store in a local folder.
#[derive(Clone, Debug)]
pub struct EmbeddedStore {
    dir: PathBuf,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    /// Last lease id handed out; ids are never reused.
    last_lease: u64,
    assignments: BTreeMap<String, Assignment>,
    /// Valid leases by name (expired ones are dropped on the next write).
    leases: BTreeMap<String, StoredLease>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredLease {
    id: u64,
    lease: Lease,
}

impl EmbeddedStore {
    /// Opens (creating it if needed) the store in `dir`; refuses a state file it cannot read.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let store = EmbeddedStore { dir: dir.into() };
        // The coordination folder is resurgo's alone: 0700 (issue 9).
        std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
            .create(&store.dir)
            .map_err(|e| store.io_error(e))?;
        store.with_state(|_, _| Ok(((), false)))?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io_error(&self, e: io::Error) -> StoreError {
        StoreError::Unreachable {
            endpoint: self.dir.display().to_string(),
            reason: e.to_string(),
        }
    }

    /// Runs `f` on the state under the lock; writes the state back if `f` says it changed it.
    fn with_state<T>(&self, f: impl FnOnce(&mut State, &BootTime) -> Result<(T, bool)>) -> Result<T> {
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(LOCK))
            .map_err(|e| self.io_error(e))?;
        let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| self.io_error(io::Error::from(errno)))?;
        let mut state = self.read()?;
        let now = BootTime::now();
        let before = state.leases.len();
        state.leases.retain(|_, l| !l.lease.is_expired(&now));
        let expired = state.leases.len() != before;
        let (value, changed) = f(&mut state, &now)?;
        if changed || expired {
            self.write(&state).map_err(|e| self.io_error(e))?;
        }
        Ok(value)
    }

    fn read(&self) -> Result<State> {
        let path = self.dir.join(STATE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                location: path.display().to_string(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(self.io_error(e)),
        }
    }

    fn write(&self, state: &State) -> io::Result<()> {
        let temp = self.dir.join(TEMP);
        let mut file = File::create(&temp)?;
        file.write_all(&serde_json::to_vec_pretty(state).map_err(io::Error::other)?)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, self.dir.join(STATE))?;
        File::open(&self.dir)?.sync_all()
    }
}

impl CoordStore for EmbeddedStore {
    fn get_assignment(&self, group: &str) -> Result<Option<Assignment>> {
        self.with_state(|state, _| Ok((state.assignments.get(group).cloned(), false)))
    }

    fn compare_and_swap_assignment(
        &self,
        group: &str,
        expected_epoch: Option<u64>,
        new: &Assignment,
    ) -> Result<CasOutcome> {
        check_successor(group, expected_epoch, new)?;
        self.with_state(|state, _| {
            let current = state.assignments.get(group);
            if current.map(|a| a.epoch) != expected_epoch {
                return Ok((CasOutcome::Conflict(current.cloned()), false));
            }
            state.assignments.insert(group.to_owned(), new.clone());
            Ok((CasOutcome::Swapped, true))
        })
    }

    fn grant_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<LeaseId> {
        if ttl.is_zero() {
            return Err(StoreError::Refused(format!("lease `{name}` with a zero ttl")));
        }
        self.with_state(|state, now| {
            if let Some(held) = state.leases.get(name) {
                return Err(StoreError::LeaseHeld {
                    name: name.to_owned(),
                    holder: held.lease.holder.clone(),
                });
            }
            state.last_lease += 1;
            let id = state.last_lease;
            state.leases.insert(
                name.to_owned(),
                StoredLease {
                    id,
                    lease: Lease::grant(holder, ttl, now),
                },
            );
            Ok((LeaseId(id), true))
        })
    }

    fn keep_alive(&self, lease: LeaseId) -> Result<bool> {
        self.with_state(|state, now| {
            // Expired leases were dropped before this runs: an unknown id is an expired one.
            match state.leases.values_mut().find(|l| l.id == lease.0) {
                Some(stored) => Ok((stored.lease.renew(now), true)),
                None => Ok((false, false)),
            }
        })
    }

    fn lease_holder(&self, name: &str) -> Result<Option<(String, Duration)>> {
        self.with_state(|state, now| {
            let held = state
                .leases
                .get(name)
                .map(|l| (l.lease.holder.clone(), l.lease.remaining(now)));
            Ok((held, false))
        })
    }

    fn lease_of(&self, name: &str) -> Result<Option<LeaseId>> {
        self.with_state(|state, _| Ok((state.leases.get(name).map(|l| LeaseId(l.id)), false)))
    }

    fn revoke(&self, lease: LeaseId) -> Result<()> {
        self.with_state(|state, _| {
            let before = state.leases.len();
            state.leases.retain(|_, l| l.id != lease.0);
            Ok(((), state.leases.len() != before))
        })
    }
}
