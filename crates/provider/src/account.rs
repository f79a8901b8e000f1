//! Who a service runs as, and the folders only resurgo may read.
//!
//! A service's `user:` is looked up by name on this host (uid, primary group; the supervisor
//! takes the supplementary groups with `initgroups`). Without one it runs as the user resurgo
//! runs as. Resurgo's own folders (the state folder, each site's, the agents', the coordination
//! store's, the run journals) are 0700: created so, and tightened when found readable or
//! writable by others. The one thing allowed beyond the owner is search (`x` for group and
//! others, 0711): a service's user must pass through the site's folder to reach its own, and
//! PostgreSQL's user through the state folder to `resurgo wal`'s record. Search lists nothing.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::unistd::{Gid, Uid, User};
use serde::{Deserialize, Serialize};

/// A user of this host, as a process is switched to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
}

impl Account {
    /// The user `name` of this host. Errors say which user and why, for a start error.
    pub fn lookup(name: &str) -> Result<Account, String> {
        match User::from_name(name) {
            Ok(Some(u)) => Ok(Account {
                name: u.name,
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
            }),
            Ok(None) => Err(format!("user `{name}` does not exist on this host")),
            Err(e) => Err(format!("cannot look up user `{name}`: {e}")),
        }
    }

    /// The user resurgo runs as (its effective ids).
    pub fn current() -> Account {
        let uid = Uid::effective();
        let name = User::from_uid(uid)
            .ok()
            .flatten()
            .map_or_else(|| uid.to_string(), |u| u.name);
        Account {
            name,
            uid: uid.as_raw(),
            gid: Gid::effective().as_raw(),
        }
    }

    /// Who owns what a service with `user` keeps (its folder, its data directory): that user,
    /// or without one the user resurgo runs as.
    pub fn owner_for(user: Option<&str>) -> Result<Account, String> {
        user.map_or_else(|| Ok(Account::current()), Account::lookup)
    }

    /// The account to switch a service with `user` to, `None` when it runs as resurgo does.
    /// Only root can run a service as another user: otherwise naming one is refused.
    pub fn switch_to(user: Option<&str>) -> Result<Option<Account>, String> {
        let Some(name) = user else { return Ok(None) };
        let account = Account::lookup(name)?;
        let me = Uid::effective();
        if account.uid == me.as_raw() {
            return Ok(None);
        }
        if !me.is_root() {
            return Err(format!(
                "resurgo runs as `{}`, not root, and cannot run a service as `{name}`",
                Account::current().name
            ));
        }
        Ok(Some(account))
    }

    /// Switches this process to the account: supplementary groups, group, then user (after
    /// which it cannot switch back). For the supervisor, before it starts the service.
    pub fn become_it(&self) -> Result<(), String> {
        let name = std::ffi::CString::new(self.name.as_str()).map_err(|e| format!("user `{}`: {e}", self.name))?;
        let gid = Gid::from_raw(self.gid);
        nix::unistd::initgroups(&name, gid).map_err(|e| format!("cannot take the groups of `{}`: {e}", self.name))?;
        nix::unistd::setgid(gid).map_err(|e| format!("cannot take group {} of `{}`: {e}", self.gid, self.name))?;
        nix::unistd::setuid(Uid::from_raw(self.uid)).map_err(|e| format!("cannot become `{}`: {e}", self.name))
    }
}

/// Makes `path` (and missing parents) a folder only its owner may read: mode 0700 when
/// created, and tightened to 0700 when found readable or writable by group or others (search
/// alone, 0711, is left: see the module's doc).
pub fn private_dir(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)?;
    let mode = std::fs::metadata(path)?.mode() & 0o7777;
    if mode & 0o066 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Lets group and others pass through `path` (search, not list), so a service's user can
/// reach its own folder below it.
pub fn allow_search(path: &Path) -> io::Result<()> {
    let mode = std::fs::metadata(path)?.mode() & 0o7777;
    if mode & 0o011 != 0o011 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o011))?;
    }
    Ok(())
}

/// Gives `path` and everything under it to `owner` where it differs (not following links).
pub fn chown_tree(path: &Path, owner: &Account) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if (meta.uid(), meta.gid()) != (owner.uid, owner.gid) {
        std::os::unix::fs::lchown(path, Some(owner.uid), Some(owner.gid))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), owner)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn private_folders_are_made_0700_and_tightened_but_keep_search() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("state/sites/a");
        private_dir(&deep).unwrap();
        assert_eq!(mode(&deep), 0o700);
        assert_eq!(mode(&tmp.path().join("state")), 0o700, "parents made too are private");
        std::fs::set_permissions(&deep, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&deep).unwrap();
        assert_eq!(mode(&deep), 0o700, "a folder found readable by others is tightened");
        allow_search(&deep).unwrap();
        private_dir(&deep).unwrap();
        assert_eq!(mode(&deep), 0o711, "search alone is left for a service's user");
    }

    #[test]
    fn an_unknown_user_is_named_and_no_user_is_no_switch() {
        let e = Account::lookup("no-such-user-resurgo").unwrap_err();
        assert_eq!(e, "user `no-such-user-resurgo` does not exist on this host");
        assert_eq!(Account::switch_to(None), Ok(None));
        let me = Account::current();
        assert_eq!(Account::switch_to(Some(&me.name)), Ok(None), "the user resurgo runs as");
        assert_eq!(Account::owner_for(None).unwrap().uid, me.uid);
    }
}
