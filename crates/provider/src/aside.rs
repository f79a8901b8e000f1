//! Set-aside copies: data that resurgo moved out of the way instead of deleting it — what a
//! restore found in its destination, an old primary's data before it rejoins as a standby, a
//! pruned service's folder. Nothing in a run deletes them; only a person does, by name
//! (`resurgo set-aside --remove ID --site S`).
//!
//! A copy is renamed (never copied, never deleted) to a name of its own that no later copy can
//! take, `<name>.aside-<UTC time>-<n>` in a folder the caller chooses, and recorded first in the
//! site's register `<root>/set-aside.json` (under `<root>/locks/set-aside.lock`; a site that is
//! not set up is refused, never made anew). A crash after
//! recording and before renaming leaves an entry whose copy does not exist: it is not listed.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::local::{io_error, LocalProvider};
use crate::shim::write_json_atomic;
use crate::{ProviderError, SiteHandle};

const REGISTER: &str = "set-aside.json";
/// The lock every change of the register holds (`<root>/locks/set-aside.lock`).
const LOCK: &str = "set-aside";

/// One set-aside copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SetAside {
    /// Its name in the register (the file name of the copy).
    pub id: String,
    /// Where the data was.
    pub original: PathBuf,
    /// Where it is now.
    pub path: PathBuf,
    /// Why it was set aside, for a person.
    pub why: String,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Bytes it holds (counted when listed; 0 in the register).
    #[serde(default)]
    pub bytes: u64,
}

fn read_register(local: &LocalProvider, site: &SiteHandle) -> Result<Vec<SetAside>, ProviderError> {
    let path = local.root().join(REGISTER);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| io_error(site, "cannot parse", &path)(io::Error::new(io::ErrorKind::InvalidData, e))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_error(site, "cannot read", &path)(e)),
    }
}

fn write_register(local: &LocalProvider, site: &SiteHandle, entries: &[SetAside]) -> Result<(), ProviderError> {
    let path = local.root().join(REGISTER);
    write_json_atomic(&path, &entries).map_err(io_error(site, "cannot write", &path))
}

/// Moves `path` (a file or folder at `site`) into `into` under a name of its own, recorded with
/// `why`. Returns the copy; an absent `path` is an error (there is nothing to keep).
pub fn set_aside(
    local: &LocalProvider,
    site: &SiteHandle,
    path: &Path,
    into: &Path,
    why: &str,
) -> Result<SetAside, ProviderError> {
    let _lock = local.lock_site(site, LOCK)?;
    fs::symlink_metadata(path).map_err(io_error(site, "cannot set aside", path))?;
    fs::create_dir_all(into).map_err(io_error(site, "cannot create", into))?;
    let name = path
        .file_name()
        .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
    let at = crate::shim::rfc3339(SystemTime::now());
    let stamp: String = at.chars().filter(char::is_ascii_alphanumeric).collect();
    let mut entries = read_register(local, site)?;
    let (id, dest) = (0u32..)
        .map(|n| {
            let id = format!("{name}.aside-{stamp}-{n}");
            let dest = into.join(&id);
            (id, dest)
        })
        .find(|(id, dest)| fs::symlink_metadata(dest).is_err() && !entries.iter().any(|e| &e.id == id))
        .expect("an unused name");
    let entry = SetAside {
        id,
        original: path.to_path_buf(),
        path: dest.clone(),
        why: why.to_string(),
        at,
        bytes: 0,
    };
    entries.push(entry.clone());
    write_register(local, site, &entries)?;
    fs::rename(path, &dest).map_err(io_error(site, "cannot set aside", path))?;
    if let Some(dir) = dest.parent() {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(entry)
}

/// The set-aside copies at `site` that exist, with their sizes.
/// A site whose folder cannot be seen is an error, never a site without copies.
pub fn list(local: &LocalProvider, site: &SiteHandle) -> Result<Vec<SetAside>, ProviderError> {
    local.require_set_up(site)?;
    Ok(read_register(local, site)?
        .into_iter()
        .filter(|e| fs::symlink_metadata(&e.path).is_ok())
        .map(|mut e| {
            e.bytes = size(&e.path);
            e
        })
        .collect())
}

/// Deletes the copy named `id` and its entry: the one way set-aside data goes away.
pub fn remove(local: &LocalProvider, site: &SiteHandle, id: &str) -> Result<SetAside, ProviderError> {
    let _lock = local.lock_site(site, LOCK)?;
    let mut entries = read_register(local, site)?;
    let index = entries
        .iter()
        .position(|e| e.id == id)
        .ok_or_else(|| ProviderError::Io {
            site: site.name.clone(),
            what: "no set-aside copy named",
            path: PathBuf::from(id),
            source: io::Error::from(io::ErrorKind::NotFound),
        })?;
    let entry = entries.remove(index);
    let gone = match fs::symlink_metadata(&entry.path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(&entry.path),
        Ok(_) => fs::remove_file(&entry.path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    gone.map_err(io_error(site, "cannot remove", &entry.path))?;
    write_register(local, site, &entries)?;
    Ok(entry)
}

/// Bytes under `path` (symbolic links not followed).
fn size(path: &Path) -> u64 {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| size(&e.path()))
            .sum(),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Provider;

    fn site(root: &Path) -> (LocalProvider, SiteHandle) {
        let handle = SiteHandle {
            name: "a".into(),
            address: "127.0.0.1".parse().unwrap(),
        };
        (LocalProvider::at(root), handle)
    }

    #[test]
    fn copies_get_names_of_their_own_and_go_only_when_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (local, site) = site(&dir.path().join("site"));
        local.set_up(&site).unwrap();
        let data = dir.path().join("data");
        let mut ids = Vec::new();
        for content in ["first", "second"] {
            fs::create_dir_all(&data).unwrap();
            fs::write(data.join("f"), content).unwrap();
            let copy = set_aside(&local, &site, &data, dir.path(), "restore found it").unwrap();
            assert!(!data.exists());
            assert_eq!(fs::read_to_string(copy.path.join("f")).unwrap(), content);
            ids.push(copy.id);
        }
        assert_ne!(ids[0], ids[1], "each copy has a name of its own");
        let listed = list(&local, &site).unwrap();
        assert_eq!(
            listed.iter().map(|e| &e.id).collect::<Vec<_>>(),
            ids.iter().collect::<Vec<_>>()
        );
        assert!(listed.iter().all(|e| e.bytes > 0 && e.why == "restore found it"));

        let gone = remove(&local, &site, &ids[0]).unwrap();
        assert!(!gone.path.exists());
        assert_eq!(list(&local, &site).unwrap().len(), 1);
        let err = remove(&local, &site, "nothing").unwrap_err();
        assert!(err.to_string().contains("no set-aside copy named"), "{err}");
        assert!(
            set_aside(&local, &site, &data, dir.path(), "x").is_err(),
            "nothing to set aside"
        );

        // A site whose folder is gone has unknown copies, not none; nothing is made there.
        fs::rename(local.root(), dir.path().join("elsewhere")).unwrap();
        let err = list(&local, &site).unwrap_err();
        assert!(matches!(err, ProviderError::NotSetUp { .. }), "{err:?}");
        fs::create_dir_all(&data).unwrap();
        assert!(set_aside(&local, &site, &data, dir.path(), "x").is_err());
        assert!(!local.root().exists(), "no folder made in a lost site's place");
    }
}
