//! The etcd store against a real etcd (Debian package `etcd-server`), one server per test,
//! started on free loopback ports and killed when the test ends, also on panic.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, SystemTime};

use resurgo_coord::{Assignment, CasOutcome, CoordStore, EtcdSecurity, EtcdStore, StoreError};
use tempfile::TempDir;

use crate::support;

/// A running etcd; killed on drop.
pub struct Etcd {
    child: Child,
    pub client_url: String,
    dir: TempDir,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Etcd {
    fn start() -> Etcd {
        Etcd::start_with("http", &[], &EtcdSecurity::default())
    }

    /// A one-member cluster with clients on `scheme://127.0.0.1:<free port>` and `extra` added
    /// to its arguments; started once a store opened with `security` answers.
    pub fn start_with(scheme: &str, extra: &[OsString], security: &EtcdSecurity) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("{scheme}://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut args: Vec<OsString> = vec!["--data-dir".into(), dir.path().join("data").into()];
        for arg in [
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            &format!("default={peer_url}"),
        ] {
            args.push(arg.into());
        }
        args.extend(extra.iter().cloned());
        let child = spawn(&args, dir.path());
        let etcd = Etcd { child, client_url, dir };
        etcd.wait_ready(security);
        etcd
    }

    fn wait_ready(&self, security: &EtcdSecurity) {
        let store = EtcdStore::open(&[&self.client_url], security)
            .unwrap()
            .with_prefix("/ready");
        support::poll("etcd to answer", Duration::from_secs(60), || {
            store.get_assignment("probe").ok()
        });
    }

    /// A store on this server, with keys under its own prefix.
    fn store(&self, prefix: &str) -> EtcdStore {
        EtcdStore::new(&[&self.client_url])
            .unwrap()
            .with_prefix(prefix)
            .with_timeout(Duration::from_secs(5))
    }
}

fn spawn(args: &[OsString], dir: &Path) -> Child {
    let log = File::create(dir.join("etcd.log")).unwrap();
    let child = Command::new("etcd")
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn();
    match child {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            panic!("`etcd` not found on PATH: install the Debian package etcd-server (apt-get install etcd-server)")
        }
        Err(e) => panic!("cannot start etcd: {e}"),
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
            let tail: Vec<_> = log.lines().rev().take(20).collect();
            eprintln!("etcd log (last lines, newest first):\n{}", tail.join("\n"));
        }
    }
}

#[test]
fn cas_increments_the_epoch() {
    let etcd = Etcd::start();
    support::cas_increments_the_epoch(&etcd.store("/t1"));
}

#[test]
fn stale_cas_is_refused_with_the_current_assignment() {
    let etcd = Etcd::start();
    support::stale_cas_is_refused(&etcd.store("/t2"));
}

#[test]
fn racing_cas_has_one_winner() {
    let etcd = Etcd::start();
    support::racing_cas_has_one_winner(|| Box::new(etcd.store("/t3")), 8);
}

#[test]
fn leases_are_granted_renewed_revoked_and_expire() {
    let etcd = Etcd::start();
    // etcd counts whole seconds and raises tiny ttls to its minimum (about 2 s).
    support::leases(&etcd.store("/t4"), Duration::from_secs(1), Duration::from_secs(30));
}

#[test]
fn the_assignment_is_json_under_the_group_key() {
    let etcd = Etcd::start();
    let store = etcd.store("/t5");
    let first = Assignment::first("db", "a", SystemTime::UNIX_EPOCH + Duration::from_millis(1500));
    store.compare_and_swap_assignment("db", None, &first).unwrap();
    // Another prefix sees nothing: keys are `<prefix>/<group>/assignment`.
    assert_eq!(etcd.store("/elsewhere").get_assignment("db").unwrap(), None);
    assert!(matches!(store.get_assignment("a/b"), Err(StoreError::Refused(_))));
    assert_eq!(store.get_assignment("db").unwrap(), Some(first));
}

#[test]
fn an_unreachable_server_is_a_transient_error() {
    // Nothing listens on a port just released.
    let port = free_port();
    let store = EtcdStore::new(&[format!("http://127.0.0.1:{port}")]).unwrap();
    let error = store.get_assignment("db").unwrap_err();
    assert!(
        matches!(error, StoreError::Unreachable { .. }) && error.is_transient(),
        "{error:?}"
    );
    assert!(error.to_string().contains(&port.to_string()), "{error}");

    // A server that accepts and never answers times out.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let store = EtcdStore::new(&[format!("127.0.0.1:{}", silent.local_addr().unwrap().port())])
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    assert!(matches!(
        store.keep_alive(resurgo_coord::LeaseId(1)),
        Err(StoreError::Unreachable { .. })
    ));

    // A server that goes away under a live store.
    let etcd = Etcd::start();
    let store = etcd.store("/t6");
    store.grant_lease("l", "a", Duration::from_secs(30)).unwrap();
    drop(etcd);
    let error = store.lease_holder("l").unwrap_err();
    assert!(error.is_transient(), "{error:?}");
}

#[test]
fn a_second_endpoint_is_tried_when_the_first_is_down() {
    let etcd = Etcd::start();
    let down = format!("http://127.0.0.1:{}", free_port());
    let store = EtcdStore::new(&[down.as_str(), etcd.client_url.as_str()])
        .unwrap()
        .with_prefix("/t7");
    support::cas_increments_the_epoch(&store);
}

/// A member that applies every request and loses every answer: a TCP proxy to `upstream` that
/// passes the request on and, as soon as the answer starts, closes the connection without
/// passing any of it back. Its threads end with the test process.
fn answer_losing_proxy(upstream: &str) -> String {
    let upstream: SocketAddr = upstream.trim_start_matches("http://").parse().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            thread::spawn(move || {
                let Ok(mut server) = TcpStream::connect(upstream) else {
                    return;
                };
                let (mut from_client, mut to_server) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                thread::spawn(move || io::copy(&mut from_client, &mut to_server));
                // The first byte of the answer: the request has been applied.
                let _ = server.read(&mut [0u8; 1]);
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
            });
        }
    });
    url
}

#[test]
fn a_swap_applied_by_a_member_that_lost_its_answer_is_not_a_conflict() {
    let etcd = Etcd::start();
    let lossy = answer_losing_proxy(&etcd.client_url);
    let store = EtcdStore::new(&[lossy.as_str(), etcd.client_url.as_str()])
        .unwrap()
        .with_prefix("/t8");
    let now = SystemTime::now();
    let first = Assignment::first("db", "a", now);
    // Each txn is applied through the proxy, its answer lost, and retried at the member itself,
    // where it fails on the value it wrote.
    assert_eq!(
        store.compare_and_swap_assignment("db", None, &first).unwrap(),
        CasOutcome::Swapped
    );
    let second = first.successor("b", now);
    assert_eq!(
        store.compare_and_swap_assignment("db", Some(1), &second).unwrap(),
        CasOutcome::Swapped
    );
    assert_eq!(etcd.store("/t8").get_assignment("db").unwrap(), Some(second.clone()));
    // A writer that is really behind still conflicts.
    let stale = first.successor("c", now);
    assert_eq!(
        store.compare_and_swap_assignment("db", Some(1), &stale).unwrap(),
        CasOutcome::Conflict(Some(second))
    );
    // So for a lease: the put found on retry is attached to the lease this grant took.
    let lease = store.grant_lease("primary-db", "b", Duration::from_secs(30)).unwrap();
    assert_eq!(etcd.store("/t8").lease_of("primary-db").unwrap(), Some(lease));
    assert!(store.keep_alive(lease).unwrap());
    store.revoke(lease).unwrap();
    assert_eq!(etcd.store("/t8").lease_holder("primary-db").unwrap(), None);
}
