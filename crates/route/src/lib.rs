//! Traffic switching: moving a service's clients from one site to another.
//!
//! Three ways, behind one small trait, [`Route`]: the built-in TCP [`Proxy`] (the embedded
//! default), an A record changed by RFC 2136 UPDATE with TSIG ([`DnsRoute`]), and a command
//! the user provides ([`HookRoute`]). Every switch is a compare-and-swap from the address the
//! caller believes is current, and carries an epoch; a lower epoch is refused (DESIGN.md
//! invariant 4). This crate knows nothing of specs, plans or runbooks: it is handed addresses.

pub mod dns;
pub mod hook;
pub mod proxy;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, MutexGuard};

pub use dns::{query_a, DnsError, DnsRoute};
pub use hook::{HookError, HookRoute};
pub use proxy::{Proxy, Stale};

/// Something that decides where a service's clients go.
pub trait Route: Send + Sync {
    /// Sends clients to `to`, only if they go to `from` now (`None`: nowhere yet), under
    /// `epoch`. Switching to where the route already points is a no-op success (idempotent).
    fn switch(&self, from: Option<SocketAddr>, to: SocketAddr, epoch: u64) -> Result<(), RouteError>;

    /// Where clients go now, as far as the route can tell.
    fn current(&self) -> Result<Option<SocketAddr>, RouteError>;
}

/// A switch or a look-up failed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error(transparent)]
    Stale(#[from] Stale),
    #[error("the route points at {found}, not at {} as the switch expected; someone else changed it", show(*.expected))]
    Moved {
        expected: Option<SocketAddr>,
        found: SocketAddr,
    },
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error("dns route {record}: {address} is not an IPv4 address (only A records are switched)")]
    NotIpv4 { record: String, address: IpAddr },
    #[error("dns route {record}: the A record holds several addresses ({addresses:?}), not one site")]
    Ambiguous {
        record: String,
        addresses: Vec<std::net::Ipv4Addr>,
    },
}

impl RouteError {
    /// Whether trying the same switch again later can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            RouteError::Dns(e) => e.is_retryable(),
            RouteError::Hook(HookError::TimedOut { .. }) => true,
            _ => false,
        }
    }
}

fn show(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "nowhere".to_owned(), |a| a.to_string())
}

/// The epoch a route without a place of its own to keep one (DNS, hooks) has obeyed, and where
/// it sent traffic then. In memory only: across restarts the compare-and-swap on `from` (and,
/// for hooks, `RESURGO_EPOCH`) is what refuses a stale order.
#[derive(Debug, Default)]
pub(crate) struct EpochGate(Mutex<Option<(u64, SocketAddr)>>);

impl EpochGate {
    /// Held for the whole switch, so two switches through one route do not interleave.
    fn lock(&self) -> MutexGuard<'_, Option<(u64, SocketAddr)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The same rule as the proxy's: lower is stale, equal is only a repeat of the same order.
fn admit(last: &Option<(u64, SocketAddr)>, to: SocketAddr, epoch: u64) -> Result<(), Stale> {
    match *last {
        Some((current, at)) if epoch < current || (epoch == current && at != to) => Err(Stale {
            current,
            offered: epoch,
        }),
        _ => Ok(()),
    }
}

impl Route for Proxy {
    fn switch(&self, from: Option<SocketAddr>, to: SocketAddr, epoch: u64) -> Result<(), RouteError> {
        // A proxy always points somewhere: `from: None` asserts nothing.
        match from {
            None => Proxy::switch(self, to, epoch).map_err(RouteError::from),
            Some(expected) => self.switch_from(expected, to, epoch).map_err(|e| match e {
                proxy::SwitchRefused::Stale(s) => RouteError::Stale(s),
                proxy::SwitchRefused::Moved { found } => RouteError::Moved { expected: from, found },
            }),
        }
    }

    fn current(&self) -> Result<Option<SocketAddr>, RouteError> {
        Ok(Some(self.backend()))
    }
}

impl DnsRoute {
    fn ipv4(&self, addr: SocketAddr) -> Result<std::net::Ipv4Addr, RouteError> {
        match addr.ip() {
            IpAddr::V4(ip) => Ok(ip),
            address => Err(RouteError::NotIpv4 {
                record: self.name.clone(),
                address,
            }),
        }
    }
}

impl Route for DnsRoute {
    /// Ports are ignored: an A record holds only the address.
    fn switch(&self, from: Option<SocketAddr>, to: SocketAddr, epoch: u64) -> Result<(), RouteError> {
        let mut last = self.gate.lock();
        admit(&last, to, epoch)?;
        let old = from.map(|f| self.ipv4(f)).transpose()?;
        self.switch_a_record(old, self.ipv4(to)?)?;
        *last = Some((epoch, to));
        Ok(())
    }

    fn current(&self) -> Result<Option<SocketAddr>, RouteError> {
        match self.current_a()?[..] {
            [] => Ok(None),
            [ip] => Ok(Some(SocketAddr::new(ip.into(), self.port))),
            ref many => Err(RouteError::Ambiguous {
                record: self.name.clone(),
                addresses: many.to_vec(),
            }),
        }
    }
}

impl Route for HookRoute {
    fn switch(&self, from: Option<SocketAddr>, to: SocketAddr, epoch: u64) -> Result<(), RouteError> {
        let mut last = self.gate.lock();
        admit(&last, to, epoch)?;
        self.run(from.map(|f| f.to_string()).as_deref(), &to.to_string(), epoch)?;
        *last = Some((epoch, to));
        Ok(())
    }

    /// A hook cannot be asked: this is where this process last sent traffic through it.
    fn current(&self) -> Result<Option<SocketAddr>, RouteError> {
        Ok(self.gate.lock().map(|(_, at)| at))
    }
}
