//! DNS and hook routes from the spec, switched by a failover run: the glue between a spec's
//! `routes:` and `resurgo-route`. (Proxy routes are not switched here: the controller runs
//! them and keeps each on its service's active site, `reconcile.rs`.)
//!
//! A DNS switch reads the record first: already at the new site's address is done (a resumed
//! run must not fail); at another site's address (or absent) it is moved with that address as
//! the compare-and-swap prerequisite; at an address that is no site's, someone else changed it
//! and it is left alone. The TSIG secret is read when the switch runs and never appears in an
//! error.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use resurgo_route::{query_a, DnsError, DnsRoute, HookError, HookRoute};
use resurgo_runbook::step::StepError;
use resurgo_spec::{DnsRecord, Route, RouteKind, System};

/// The record's TTL when the spec gives none (the spec's documented default).
const DEFAULT_TTL: u32 = 30;
/// How long a hook may run when the spec gives no timeout.
const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// A route could not be switched or confirmed. Every message names the route; none holds a
/// secret.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// The switch cannot be done as asked: the spec lacks something, a secret cannot be read,
    /// or the record is in a state resurgo did not put it in. A person must look.
    #[error("route `{route}`: {reason}")]
    Refused { route: String, reason: String },
    #[error("route `{route}`: {source}")]
    Dns {
        route: String,
        #[source]
        source: Box<DnsError>,
    },
    #[error("route `{route}`: record {record} on {server} serves {found:?}, not {expected}, the new site's address")]
    NotConfirmed {
        route: String,
        record: String,
        server: SocketAddr,
        expected: Ipv4Addr,
        found: Vec<Ipv4Addr>,
    },
    /// Hook errors name their route already.
    #[error(transparent)]
    Hook(#[from] HookError),
}

impl SwitchError {
    /// Whether trying the same switch again later can help: the server did not answer or
    /// failed, the record is not served yet, a hook overran its timeout. A refusal (wrong key,
    /// a record someone else moved, a hook that exited non-zero) needs a person instead.
    pub fn is_retryable(&self) -> bool {
        match self {
            SwitchError::Refused { .. } => false,
            SwitchError::Dns { source, .. } => source.is_retryable(),
            SwitchError::NotConfirmed { .. } => true,
            SwitchError::Hook(e) => matches!(e, HookError::TimedOut { .. }),
        }
    }
}

/// Retryable errors are transient, so the runbook tries again until the step's timeout;
/// refusals are permanent, so the run stops at once instead of repeating a wrong key or
/// fighting whoever else moved the record until the timeout.
impl From<SwitchError> for StepError {
    fn from(e: SwitchError) -> StepError {
        if e.is_retryable() {
            StepError::Transient(e.to_string())
        } else {
            StepError::Permanent(e.to_string())
        }
    }
}

/// Points the dns or hook route `route` at `to_site`, under `epoch`. `system` is the system
/// after the move (the route's service is active at `to_site`); `from_site` is where the
/// service was before it (the hook's `RESURGO_OLD_ADDRESS`; None when unknown). Idempotent.
pub fn switch(
    system: &System,
    route: &str,
    from_site: Option<&str>,
    to_site: &str,
    epoch: u64,
) -> Result<(), SwitchError> {
    let r = find(system, route)?;
    match r.kind {
        RouteKind::Dns => switch_dns(system, route, dns_of(route, r)?, to_site),
        RouteKind::Hook => {
            let hook = r
                .hook
                .as_ref()
                .ok_or_else(|| refused(route, "a hook route needs `hook`"))?;
            let port = port_of(system, route, r)?;
            let new = SocketAddr::new(site_address(system, route, to_site)?, port).to_string();
            let old = from_site
                .filter(|s| *s != to_site)
                .map(|s| site_address(system, route, s).map(|ip| SocketAddr::new(ip, port).to_string()))
                .transpose()?;
            let mut h = HookRoute::new(route, &hook.command, hook.args.clone());
            h.timeout = hook.timeout.map_or(DEFAULT_HOOK_TIMEOUT, |d| d.0);
            Ok(h.run(old.as_deref(), &new, epoch)?)
        }
        RouteKind::Proxy => Err(proxy_here(route)),
    }
}

/// Checks that the route leads to `to_site`: a dns route's server serves exactly the site's
/// address; a hook route cannot be asked (the hook's exit status was the answer).
pub fn confirm(system: &System, route: &str, to_site: &str) -> Result<(), SwitchError> {
    let r = find(system, route)?;
    match r.kind {
        RouteKind::Dns => {
            let dns = dns_of(route, r)?;
            let expected = site_ipv4(system, route, to_site)?;
            let found = query_a(dns.server, &dns.name).map_err(|source| SwitchError::Dns {
                route: route.to_owned(),
                source: Box::new(source),
            })?;
            if found == [expected] {
                Ok(())
            } else {
                Err(SwitchError::NotConfirmed {
                    route: route.to_owned(),
                    record: dns.name.clone(),
                    server: dns.server,
                    expected,
                    found,
                })
            }
        }
        RouteKind::Hook => Ok(()),
        RouteKind::Proxy => Err(proxy_here(route)),
    }
}

fn switch_dns(system: &System, route: &str, dns: &DnsRecord, to_site: &str) -> Result<(), SwitchError> {
    let new = site_ipv4(system, route, to_site)?;
    let mut r = DnsRoute::new(
        dns.server,
        &dns.zone,
        &dns.name,
        &dns.key.name,
        tsig_secret(route, dns)?,
    );
    r.ttl = dns.ttl.unwrap_or(DEFAULT_TTL);
    let dns_error = |source| SwitchError::Dns {
        route: route.to_owned(),
        source: Box::new(source),
    };
    let old = match r.current_a().map_err(dns_error)?[..] {
        [ip] if ip == new => return Ok(()),
        [] => None,
        [ip] if system.sites.values().any(|s| s.address == IpAddr::V4(ip)) => Some(ip),
        [ip] => {
            return Err(refused(
                route,
                format!(
                "record {} on {} points at {ip}, which is no site's address: someone else changed it; leaving it alone",
                dns.name, dns.server
            ),
            ))
        }
        ref many => {
            return Err(refused(
                route,
                format!(
                    "record {} on {} holds several addresses ({many:?}), not one site's: leaving it alone",
                    dns.name, dns.server
                ),
            ))
        }
    };
    r.switch_a_record(old, new).map_err(dns_error)
}

/// The TSIG secret's bytes. The spec's secret is base64, as in the server's configuration;
/// neither the value nor a decoding error's detail (which quotes a character and its offset)
/// goes into a message.
fn tsig_secret(route: &str, dns: &DnsRecord) -> Result<Vec<u8>, SwitchError> {
    let text = resurgo_provider::read_secret(&dns.key.secret)
        .map_err(|e| refused(route, format!("the secret of TSIG key `{}`: {e}", dns.key.name)))?;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| {
            refused(
                route,
                format!("the secret of TSIG key `{}` is not valid base64", dns.key.name),
            )
        })
}

fn find<'a>(system: &'a System, route: &str) -> Result<&'a Route, SwitchError> {
    system
        .routes
        .get(route)
        .ok_or_else(|| refused(route, "the spec declares no such route"))
}

fn dns_of<'a>(route: &str, r: &'a Route) -> Result<&'a DnsRecord, SwitchError> {
    r.dns.as_ref().ok_or_else(|| refused(route, "a dns route needs `dns`"))
}

fn site_address(system: &System, route: &str, site: &str) -> Result<IpAddr, SwitchError> {
    system
        .sites
        .get(site)
        .map(|s| s.address)
        .ok_or_else(|| refused(route, format!("the spec declares no site `{site}`")))
}

fn site_ipv4(system: &System, route: &str, site: &str) -> Result<Ipv4Addr, SwitchError> {
    match site_address(system, route, site)? {
        IpAddr::V4(ip) => Ok(ip),
        ip => Err(refused(
            route,
            format!("site `{site}` has the IPv6 address {ip}; a dns route switches an A record"),
        )),
    }
}

/// The route's port, else its service's first port.
fn port_of(system: &System, route: &str, r: &Route) -> Result<u16, SwitchError> {
    let svc = system
        .services
        .get(&r.service)
        .ok_or_else(|| refused(route, format!("the spec declares no service `{}`", r.service)))?;
    r.port
        .or_else(|| svc.ports.first().copied())
        .ok_or_else(|| refused(route, format!("service `{}` declares no ports", r.service)))
}

fn proxy_here(route: &str) -> SwitchError {
    refused(route, "a proxy route is run by the controller, not switched by a run")
}

fn refused(route: &str, reason: impl Into<String>) -> SwitchError {
    SwitchError::Refused {
        route: route.to_owned(),
        reason: reason.into(),
    }
}
