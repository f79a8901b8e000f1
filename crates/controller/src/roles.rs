//! Where roles live and what they are called: the coordination store a spec asks for (etcd
//! when `failover.coordination.etcd` names a cluster — with its TLS files and user —, else the
//! embedded store in the state folder), and the names of its assignment groups and leases.
//!
//! - group `site-<s>`: the services the spec places at site `s`; its assignment names the site
//!   where they are active now (absent: `s`, epoch 0).
//! - lease `primary-<group>`: held by the primary site's agent (or by a run taking over);
//!   while it is valid, no other site may be promoted.
//! - lease `witness-sees-<s>`: held by the witness while it receives `s`'s heartbeats.
//! - lease `maintenance`: while valid, agents detect but never fail over.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub use resurgo_coord::StoreError;
use resurgo_coord::{CoordStore, EmbeddedStore, EtcdSecurity, EtcdStore, EtcdUser};
use resurgo_spec::{EtcdCluster, System};

pub const MAINTENANCE: &str = "maintenance";

/// The coordination store of the one-machine default, in the state folder.
pub fn coord_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("coord")
}

/// The assignment group of the services a spec places at `site`.
pub fn group_of(site: &str) -> String {
    format!("site-{site}")
}

pub fn primary_lease(group: &str) -> String {
    format!("primary-{group}")
}

pub fn witness_lease(site: &str) -> String {
    format!("witness-sees-{site}")
}

/// A planned handover through the coordination store, for a run whose target cannot reach the
/// old primary's files (another host): the run asks (the lease `handover-<group>`, held by
/// `<to>@<epoch>`), the old primary's own agent stops the group's services — writers first,
/// then databases, whose clean shutdown sends their last WAL to the standbys — and answers (the
/// lease `handed-over-<group>`, held by `<from>@<epoch>` and each database's shutdown checkpoint).
/// The run then counts the old primary as fenced, revokes its lease and checks that each standby
/// has replayed up to its checkpoint: no acknowledged write is lost. An old primary that does not
/// answer (lost, cut off) is waited out as before: its lease expires.
pub mod handover {
    /// The lease a run holds while it asks for `group`.
    pub fn request_lease(group: &str) -> String {
        format!("handover-{group}")
    }

    /// The lease the old primary's agent grants once it has stopped `group`'s services.
    pub fn answer_lease(group: &str) -> String {
        format!("handed-over-{group}")
    }

    /// A run's request: hand the group over to `to`, which will take it at `epoch`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Request {
        pub to: String,
        pub epoch: u64,
    }

    impl Request {
        pub fn holder(&self) -> String {
            format!("{}@{}", self.to, self.epoch)
        }

        pub fn parse(holder: &str) -> Option<Request> {
            let (to, epoch) = holder.rsplit_once('@')?;
            Some(Request {
                to: to.to_string(),
                epoch: epoch.parse().ok()?,
            })
        }
    }

    /// The old primary's answer: `from` stopped the group's services for `epoch`; each
    /// database (dataset) was shut down cleanly at its checkpoint (an LSN, `0/3000028`).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Answer {
        pub from: String,
        pub epoch: u64,
        pub checkpoints: Vec<(String, String)>,
    }

    impl Answer {
        pub fn holder(&self) -> String {
            let mut out = format!("{}@{}", self.from, self.epoch);
            for (dataset, lsn) in &self.checkpoints {
                out.push_str(&format!(";{dataset}={lsn}"));
            }
            out
        }

        pub fn parse(holder: &str) -> Option<Answer> {
            let mut parts = holder.split(';');
            let (from, epoch) = parts.next()?.rsplit_once('@')?;
            let checkpoints = parts
                .map(|p| p.split_once('=').map(|(d, l)| (d.to_string(), l.to_string())))
                .collect::<Option<Vec<_>>>()?;
            Some(Answer {
                from: from.to_string(),
                epoch: epoch.parse().ok()?,
                checkpoints,
            })
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn requests_and_answers_read_back_as_written() {
            let r = Request {
                to: "b".into(),
                epoch: 3,
            };
            assert_eq!(Request::parse(&r.holder()), Some(r));
            let a = Answer {
                from: "a".into(),
                epoch: 3,
                checkpoints: vec![("orders".into(), "0/3000028".into())],
            };
            assert_eq!(a.holder(), "a@3;orders=0/3000028");
            assert_eq!(Answer::parse(&a.holder()), Some(a));
            assert_eq!(Answer::parse("a@x"), None);
            assert_eq!(Request::parse("b"), None);
        }
    }
}

/// The store the spec names. Requests to etcd time out after one heartbeat interval (at least
/// 500 ms), so an agent cut from its quorum notices within its fencing deadline.
pub fn open_store(system: &System, state_dir: &Path) -> Result<Arc<dyn CoordStore>, StoreError> {
    match system.failover.etcd() {
        Some(etcd) => {
            let timeout = system
                .failover
                .timing()
                .heartbeat_interval
                .max(Duration::from_millis(500));
            Ok(open_etcd(etcd, &format!("/resurgo/{}", system.name), timeout)?)
        }
        None => Ok(Arc::new(EmbeddedStore::open(coord_dir(state_dir))?)),
    }
}

/// Whether the store uses the state folder (nothing to read when it was never created).
pub fn is_embedded(system: &System) -> bool {
    system.failover.etcd().is_none()
}

/// What an etcd store was opened with; the same again means the same store.
#[derive(PartialEq)]
struct EtcdOpened {
    cluster: EtcdCluster,
    prefix: String,
    timeout: Duration,
    /// The password as read, and when each certificate file last changed: a rotated secret
    /// or certificate opens a new store.
    password: Option<String>,
    modified: Vec<Option<SystemTime>>,
}

/// The etcd stores this process opened. The controller asks for its store every tick, and a
/// new one would log in again (a bcrypt hash at the member) and make new TLS connections.
static ETCD_STORES: Mutex<Vec<(EtcdOpened, Arc<EtcdStore>)>> = Mutex::new(Vec::new());

/// The etcd store of `cluster`, as given by the spec: TLS files as named, the password read
/// from its secret reference now (an error names the reference, never the value).
fn open_etcd(cluster: &EtcdCluster, prefix: &str, timeout: Duration) -> Result<Arc<EtcdStore>, StoreError> {
    let tls = cluster.tls.clone().unwrap_or_default();
    let user = match &cluster.auth {
        None => None,
        Some(auth) => Some(EtcdUser {
            name: auth.user.clone(),
            password: resurgo_provider::read_secret(&auth.password).map_err(|reason| {
                StoreError::Refused(format!("the password of etcd user `{}`: {reason}", auth.user))
            })?,
        }),
    };
    let files = [&tls.ca, &tls.cert, &tls.key];
    let opened = EtcdOpened {
        cluster: cluster.clone(),
        prefix: prefix.to_owned(),
        timeout,
        password: user.as_ref().map(|u| u.password.clone()),
        modified: files
            .iter()
            .map(|f| {
                f.as_ref()
                    .and_then(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
            })
            .collect(),
    };
    let mut stores = ETCD_STORES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, store)) = stores.iter().find(|(o, _)| *o == opened) {
        return Ok(store.clone());
    }
    let security = EtcdSecurity {
        ca: tls.ca.map(PathBuf::from),
        client_cert: tls.cert.zip(tls.key).map(|(cert, key)| (cert.into(), key.into())),
        user,
    };
    let store = Arc::new(
        EtcdStore::open(&cluster.endpoints, &security)?
            .with_prefix(prefix)
            .with_timeout(timeout),
    );
    // One store per system (prefix): the one it replaces was opened with an older spec.
    stores.retain(|(o, _)| o.prefix != prefix);
    stores.push((opened, store.clone()));
    Ok(store)
}

#[cfg(test)]
mod tests {
    use resurgo_spec::{EtcdAuth, EtcdTls, SecretRef};

    use super::*;

    #[test]
    fn etcd_is_opened_once_with_the_password_read_from_its_reference() {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("etcd-password");
        std::fs::write(&password, "first-secret\n").unwrap();
        let mut cluster = EtcdCluster {
            endpoints: vec!["https://127.0.0.1:2379".into()],
            tls: None,
            auth: Some(EtcdAuth {
                user: "resurgo".into(),
                password: SecretRef::File(password.display().to_string()),
            }),
        };
        let timeout = Duration::from_secs(1);
        let first = open_etcd(&cluster, "/resurgo/roles-test", timeout).unwrap();
        let again = open_etcd(&cluster, "/resurgo/roles-test", timeout).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "one store per spec, not one per tick");
        std::fs::write(&password, "rotated-secret\n").unwrap();
        let rotated = open_etcd(&cluster, "/resurgo/roles-test", timeout).unwrap();
        assert!(!Arc::ptr_eq(&first, &rotated), "a rotated password opens a new store");
        assert!(!format!("{rotated:?}").contains("rotated-secret"));

        // A password that cannot be read names its reference and the user, never a value.
        cluster.auth = Some(EtcdAuth {
            user: "resurgo".into(),
            password: SecretRef::File(dir.path().join("missing").display().to_string()),
        });
        let error = open_etcd(&cluster, "/resurgo/roles-test", timeout)
            .unwrap_err()
            .to_string();
        assert!(error.contains("`resurgo`") && error.contains("missing"), "{error}");
        // Certificate files are read when the store opens.
        cluster.auth = None;
        cluster.tls = Some(EtcdTls {
            ca: Some(dir.path().join("no-ca.pem").display().to_string()),
            ..EtcdTls::default()
        });
        let error = open_etcd(&cluster, "/resurgo/roles-test", timeout)
            .unwrap_err()
            .to_string();
        assert!(error.contains("no-ca.pem"), "{error}");
    }
}
