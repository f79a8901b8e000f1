//! Reading the desired state: fetch the spec from its source, load and validate it, and keep
//! a last-known-good copy on local disk so the controller can act while Git is down.

use std::path::{Path, PathBuf};

use resurgo_plan::SourceId;
use resurgo_spec::{Loaded, SourceFile, SpecError};
use serde::{Deserialize, Serialize};

use crate::source::{Fetched, Source, SourceError};

/// A valid spec and where it came from.
#[derive(Debug, Clone)]
pub struct Desired {
    pub loaded: Loaded,
    pub source: SourceId,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{0}")]
    Spec(#[from] SpecError),
    /// Who is primary cannot be read: acting on the spec alone could start a second primary.
    #[error("cannot read the primary assignments in {path}: {reason}")]
    Assignments { path: String, reason: String },
}

pub use crate::roles::{coord_dir, group_of};

/// Applies the primary assignments (failovers done and not undone) to the desired state: the
/// services of a site whose group is assigned elsewhere are active there.
pub fn with_assignments(mut desired: Desired, state_dir: &Path) -> Result<Desired, LoadError> {
    let system = &desired.loaded.system;
    let dir = coord_dir(state_dir);
    let embedded = crate::roles::is_embedded(system);
    if embedded && !dir.exists() {
        return Ok(desired);
    }
    let location = if embedded {
        dir.display().to_string()
    } else {
        "etcd".to_string()
    };
    let fail = |e: &dyn std::fmt::Display| LoadError::Assignments {
        path: location.clone(),
        reason: e.to_string(),
    };
    let store = crate::roles::open_store(system, state_dir).map_err(|e| fail(&e))?;
    let sites: Vec<String> = desired.loaded.system.sites.keys().cloned().collect();
    for site in sites {
        if let Some(a) = store.get_assignment(&group_of(&site)).map_err(|e| fail(&e))? {
            if a.primary_site != site {
                resurgo_plan::recovery::apply_move(&mut desired.loaded.system, &site, &a.primary_site);
            }
        }
    }
    Ok(desired)
}

/// Fetches and loads the spec.
pub fn load(source: &Source, cache: &Path, overrides: &[(String, String)]) -> Result<Desired, LoadError> {
    let fetched = source.fetch(cache)?;
    load_fetched(&fetched, overrides)
}

fn load_fetched(fetched: &Fetched, overrides: &[(String, String)]) -> Result<Desired, LoadError> {
    let loaded = resurgo_spec::load(fetched.files.clone(), overrides)?;
    let source = fetched.source_id(&loaded.digest);
    Ok(Desired { loaded, source })
}

#[derive(Serialize, Deserialize)]
struct Stored {
    kind: String,
    location: String,
    commit: Option<String>,
    files: Vec<(String, String)>,
}

/// The local copy of the last spec that loaded cleanly.
#[derive(Debug, Clone)]
pub struct LastKnownGood {
    path: PathBuf,
}

impl LastKnownGood {
    pub fn new(state_dir: &Path) -> LastKnownGood {
        LastKnownGood {
            path: state_dir.join("last-known-good.json"),
        }
    }

    /// Saves the files of a spec that loaded cleanly (write to a temporary file, then rename,
    /// so a crash never leaves half a copy).
    pub fn save(&self, fetched: &Fetched) -> std::io::Result<()> {
        let stored = Stored {
            kind: fetched.kind.clone(),
            location: fetched.location.clone(),
            commit: fetched.commit.clone(),
            files: fetched.files.iter().map(|f| (f.name.clone(), f.text.clone())).collect(),
        };
        if let Some(dir) = self.path.parent() {
            resurgo_provider::private_dir(dir)?;
        }
        resurgo_provider::write_json_atomic(&self.path, &stored)
    }

    pub fn load(&self, overrides: &[(String, String)]) -> Option<Desired> {
        let text = std::fs::read(&self.path).ok()?;
        let stored: Stored = serde_json::from_slice(&text).ok()?;
        let fetched = Fetched {
            files: stored
                .files
                .into_iter()
                .map(|(name, text)| SourceFile { name, text })
                .collect(),
            kind: stored.kind,
            location: stored.location,
            commit: stored.commit,
        };
        load_fetched(&fetched, overrides).ok()
    }
}

/// Fetches, loads and, on success, records the spec as last-known-good.
pub fn load_and_remember(
    source: &Source,
    cache: &Path,
    overrides: &[(String, String)],
    lkg: &LastKnownGood,
) -> Result<Desired, LoadError> {
    let fetched = source.fetch(cache)?;
    let desired = load_fetched(&fetched, overrides)?;
    // A failed save only costs resilience, not correctness: keep going.
    let _ = lkg.save(&fetched);
    Ok(desired)
}

/// The desired state a daemon holds, shared between its threads: its controller loop publishes
/// each spec it adopts (from the source, or the last-known-good copy); its agent, and whatever
/// else serves the site, read the newest. The spec as written: the assignments are not applied
/// (they are read from the store when needed). Cheap to clone; every clone is the same cell.
#[derive(Debug, Clone, Default)]
pub struct SharedSpec(
    std::sync::Arc<std::sync::RwLock<Option<Published>>>,
    /// Someone asked for the source to be read again now (the site API, before an apply).
    std::sync::Arc<std::sync::atomic::AtomicBool>,
);

/// A published spec: its generation and the spec.
pub type Published = (u64, std::sync::Arc<Desired>);

impl SharedSpec {
    /// Makes `desired` the current spec.
    pub fn publish(&self, desired: Desired) {
        let mut cell = self.0.write().unwrap_or_else(|e| e.into_inner());
        let generation = cell.as_ref().map_or(1, |(g, _)| g + 1);
        *cell = Some((generation, std::sync::Arc::new(desired)));
    }

    /// Asks the controller that publishes here to read its source again at its next tick,
    /// whatever its poll interval.
    pub fn request_poll(&self) {
        self.1.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a poll was asked for since the last call.
    pub fn take_poll_request(&self) -> bool {
        self.1.swap(false, std::sync::atomic::Ordering::SeqCst)
    }

    /// The current spec and its generation (1 for the first published, then one more each
    /// time), or `None` before the first.
    pub fn current(&self) -> Option<Published> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
