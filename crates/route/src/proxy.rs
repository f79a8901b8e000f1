//! The built-in TCP proxy route: the embedded default for traffic switching on one machine.
//!
//! Clients connect to a fixed listen address; each accepted connection is forwarded to the
//! backend chosen *at accept time*. A switch changes only that choice, atomically, so new
//! connections go to the new backend while connections in flight finish on the old one — a
//! failover does not cut a transfer that the old site can still complete.
//!
//! Every switch carries an epoch (DESIGN.md invariant 4): a lower epoch is refused with
//! [`Stale`], so a delayed order from a superseded failover can never move traffic back.
//!
//! Threads, not async: each connection gets two (one per direction), bounded by a connection
//! limit; the proxy serves the handful of connections a demo or a small site sees.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How many connections one proxy forwards at once unless told otherwise; beyond it new
/// connections are closed at once (the client sees a reset/EOF and can retry).
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// How long connecting to a backend may take before the client's connection is dropped.
const BACKEND_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A switch was refused because it carried an older epoch than the proxy has already obeyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stale epoch {offered}: the route is already at epoch {current}")]
pub struct Stale {
    /// The epoch the route is at.
    pub current: u64,
    /// The epoch the refused switch carried.
    pub offered: u64,
}

/// The proxy's routing decision: where new connections go, and under which epoch.
#[derive(Debug, Clone, Copy)]
struct Target {
    backend: SocketAddr,
    epoch: u64,
}

struct Shared {
    target: Mutex<Target>,
    stopping: AtomicBool,
    max_connections: usize,
    /// Connections in flight, by id: the client side, kept so `stop` can shut them down.
    connections: Mutex<HashMap<u64, TcpStream>>,
    next_id: AtomicU64,
}

impl Shared {
    fn target(&self) -> MutexGuard<'_, Target> {
        // A panic while holding this lock cannot leave a half-written `Target` (it is `Copy`).
        self.target.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn connections(&self) -> MutexGuard<'_, HashMap<u64, TcpStream>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running TCP proxy. Dropping it stops it.
pub struct Proxy {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = *self.shared.target();
        f.debug_struct("Proxy")
            .field("listen", &self.local_addr)
            .field("backend", &target.backend)
            .field("epoch", &target.epoch)
            .finish()
    }
}

impl Proxy {
    /// Listens on `listen` (port 0 picks a free port: see [`Proxy::local_addr`]) and forwards to
    /// `backend`, at epoch 0, with [`DEFAULT_MAX_CONNECTIONS`].
    pub fn start(listen: SocketAddr, backend: SocketAddr) -> io::Result<Proxy> {
        Self::start_bounded(listen, backend, DEFAULT_MAX_CONNECTIONS)
    }

    /// Like [`Proxy::start`], forwarding at most `max_connections` connections at once.
    pub fn start_bounded(listen: SocketAddr, backend: SocketAddr, max_connections: usize) -> io::Result<Proxy> {
        let listener = TcpListener::bind(listen)?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target: Mutex::new(Target { backend, epoch: 0 }),
            stopping: AtomicBool::new(false),
            max_connections: max_connections.max(1),
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("proxy-accept-{local_addr}"))
                .spawn(move || accept_loop(listener, shared))?
        };
        Ok(Proxy {
            shared,
            local_addr,
            acceptor: Some(acceptor),
        })
    }

    /// The address the proxy listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where new connections go now.
    pub fn backend(&self) -> SocketAddr {
        self.shared.target().backend
    }

    /// The epoch of the last switch obeyed (0 before any).
    pub fn epoch(&self) -> u64 {
        self.shared.target().epoch
    }

    /// How many connections are being forwarded now.
    pub fn active_connections(&self) -> usize {
        self.shared.connections().len()
    }

    /// Sends new connections to `backend` from now on; connections in flight stay where they are.
    ///
    /// A lower epoch than the current one is refused. The same epoch is accepted only for the
    /// same backend (a repeated, idempotent order); the same epoch naming another backend is
    /// two different decisions under one epoch, and is refused too.
    pub fn switch(&self, backend: SocketAddr, epoch: u64) -> Result<(), Stale> {
        let mut target = self.shared.target();
        check_epoch(&target, backend, epoch)?;
        *target = Target { backend, epoch };
        Ok(())
    }

    /// [`Proxy::switch`], refused also when the proxy points neither at `expected` nor already
    /// at `backend`: the compare-and-swap the [`crate::Route`] trait offers.
    pub(crate) fn switch_from(
        &self,
        expected: SocketAddr,
        backend: SocketAddr,
        epoch: u64,
    ) -> Result<(), SwitchRefused> {
        let mut target = self.shared.target();
        check_epoch(&target, backend, epoch).map_err(SwitchRefused::Stale)?;
        if target.backend != expected && target.backend != backend {
            return Err(SwitchRefused::Moved { found: target.backend });
        }
        *target = Target { backend, epoch };
        Ok(())
    }

    /// Stops accepting, shuts down the connections in flight, and waits for the acceptor.
    /// Idempotent.
    pub fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            // Wake the blocking `accept` with a connection of our own; it sees `stopping`. If
            // that fails the acceptor is left behind rather than hang the caller: it ends at
            // the next connection it accepts.
            if TcpStream::connect_timeout(&wake_address(self.local_addr), Duration::from_secs(1)).is_ok() {
                let _ = acceptor.join();
            }
        }
        for (_, conn) in self.shared.connections().drain() {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

fn check_epoch(target: &Target, backend: SocketAddr, epoch: u64) -> Result<(), Stale> {
    if epoch < target.epoch || (epoch == target.epoch && backend != target.backend) {
        return Err(Stale {
            current: target.epoch,
            offered: epoch,
        });
    }
    Ok(())
}

/// Why [`Proxy::switch_from`] refused.
#[derive(Debug)]
pub(crate) enum SwitchRefused {
    Stale(Stale),
    Moved { found: SocketAddr },
}

/// The address to connect to in order to reach our own listener (an unspecified listen
/// address is reachable on loopback).
fn wake_address(listen: SocketAddr) -> SocketAddr {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else {
            // Per-connection failures (the client went away, out of descriptors for a moment)
            // must not end the proxy.
            continue;
        };
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut conns = shared.connections();
            if conns.len() >= shared.max_connections {
                drop(conns);
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
            match client.try_clone() {
                Ok(c) => {
                    conns.insert(id, c);
                }
                Err(_) => continue,
            }
        }
        // The decision is taken here, at accept time: a switch after this point does not move
        // this connection.
        let backend = shared.target().backend;
        let conn_shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name(format!("proxy-conn-{id}"))
            .spawn(move || {
                forward(client, backend);
                conn_shared.connections().remove(&id);
            });
        if spawned.is_err() {
            if let Some(c) = shared.connections().remove(&id) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Copies both ways between `client` and a new connection to `backend` until both directions
/// have ended, passing each half-close on.
fn forward(client: TcpStream, backend: SocketAddr) {
    let Ok(server) = TcpStream::connect_timeout(&backend, BACKEND_CONNECT_TIMEOUT) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
        return;
    };
    let upstream = std::thread::Builder::new().spawn(move || copy_half(client2, server2));
    copy_half(server, client);
    if let Ok(upstream) = upstream {
        let _ = upstream.join();
    }
}

/// Copies `from` to `to` until EOF or an error, then half-closes `to` for writing (the peer
/// sees EOF, and may still answer). On an error both sides are shut down, so the other
/// direction ends too.
fn copy_half(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
