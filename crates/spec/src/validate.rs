//! The semantic rules of a spec: names are names, references resolve, dependencies form no
//! cycle, every site a service may run on offers what it requires and has room for it, no two
//! services share an address and port, objectives are achievable, workspaces borrow only a DR
//! site's spare capacity and data that can be cloned, and durations that pace or bound work are
//! not zero. Each rule has its own message, pointed at the offending key or value.

use std::collections::{BTreeMap, HashMap};

use indexmap::IndexMap;

use crate::diag::Diagnostic;
use crate::load::{list_or_none, Sources};
use crate::model::{
    DatasetKind, Drill, DrillMode, EnvValue, EtcdCluster, Fault, PgMethod, PlainOrSecret, Prices, ReceiverKind,
    Resources, RouteKind, SecretRef, Seed, StopCondition, Strategy, System,
};
use crate::units::Duration;
use crate::yaml::Seg;

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

struct Checker<'a> {
    system: &'a System,
    sources: &'a Sources,
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn err(&mut self, section: &str, name: &str, rest: &[Seg], message: String) {
        self.diags.push(self.sources.diag(section, name, rest, false, message));
    }

    fn err_key(&mut self, section: &str, name: &str, rest: &[Seg], message: String) {
        self.diags.push(self.sources.diag(section, name, rest, true, message));
    }

    fn names(&self, section: &str) -> String {
        let names: Vec<&str> = match section {
            "sites" => self.system.sites.keys().map(String::as_str).collect(),
            "services" => self.system.services.keys().map(String::as_str).collect(),
            _ => Vec::new(),
        };
        list_or_none(&names)
    }
}

/// Something a valid spec should not do, which `validate` reports without refusing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The service it is about.
    pub service: String,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The warnings for `system` when resurgo runs as root (`as_root`, the caller's knowledge:
/// this crate does no I/O): every service that names no `user:` would run as root.
pub fn warnings(system: &System, as_root: bool) -> Vec<Warning> {
    if !as_root {
        return Vec::new();
    }
    system
        .services
        .iter()
        .filter(|(_, svc)| svc.user.is_none())
        .map(|(name, _)| Warning {
            service: name.clone(),
            message: format!(
                "service `{name}` names no `user:` and resurgo runs as root: it would run as root; name the user it should run as"
            ),
        })
        .collect()
}

/// Runs every rule; returns all problems found.
pub fn validate(system: &System, sources: &Sources) -> Vec<Diagnostic> {
    let mut c = Checker {
        system,
        sources,
        diags: Vec::new(),
    };
    check_system_name(&mut c);
    check_names(&mut c);
    check_sites(&mut c);
    check_services(&mut c);
    check_cycles(&mut c);
    check_capacity(&mut c);
    check_ports(&mut c);
    check_datasets(&mut c);
    check_routes(&mut c);
    check_failover(&mut c);
    check_drills(&mut c);
    check_workspaces(&mut c);
    check_workspace_capacity(&mut c);
    check_notifications(&mut c);
    check_positive_durations(&mut c);
    check_prices(&mut c);
    c.diags
}

/// The spec's `prices` name only declared sites, and name a currency.
fn check_prices(c: &mut Checker) {
    let Some(prices) = &c.system.prices else { return };
    if prices.currency.trim().is_empty() {
        c.err(
            "prices",
            "",
            &[key("currency")],
            "prices: `currency` must name the currency (`EUR`, `USD`…)".into(),
        );
    }
    if let Some((site, message)) = unknown_price_site(prices, c.system) {
        c.err_key("prices", "", &[key("sites"), key(&site)], message);
    }
}

/// The first site a price list names that the spec does not declare, with the message that
/// says so (for the spec's `prices` and for a price file alike).
pub(crate) fn unknown_price_site(prices: &Prices, system: &System) -> Option<(String, String)> {
    let site = prices.sites.keys().find(|s| !system.sites.contains_key(*s))?;
    let declared: Vec<&str> = system.sites.keys().map(String::as_str).collect();
    Some((
        site.clone(),
        format!(
            "prices: site `{site}` is not declared; declared sites: {}",
            declared.join(", ")
        ),
    ))
}

pub(crate) fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
}

/// `system:`, when given, names the system: not empty, and a name like any other, since it
/// keys the coordination store (`/resurgo/<name>` in etcd). Left out, the system is `system`.
fn check_system_name(c: &mut Checker) {
    let name = &c.system.name;
    if name.trim().is_empty() {
        c.err_key(
            "system",
            "",
            &[],
            "`system` is empty: name the system (`system: shop`), or leave the key out".into(),
        );
    } else if !valid_name(name) {
        c.err(
            "system",
            "",
            &[],
            format!("invalid system name `{name}`: use lowercase letters, digits, `-` and `_`, at most 63, starting and ending with a letter or digit"),
        );
    }
}

fn check_names(c: &mut Checker) {
    let sections: [(&str, &str, Vec<&String>); 7] = [
        ("sites", "site", c.system.sites.keys().collect()),
        ("services", "service", c.system.services.keys().collect()),
        ("datasets", "dataset", c.system.datasets.keys().collect()),
        ("routes", "route", c.system.routes.keys().collect()),
        ("drills", "drill", c.system.drills.keys().collect()),
        ("workspaces", "workspace", c.system.workspaces.keys().collect()),
        ("notifications", "receiver", c.system.notifications.keys().collect()),
    ];
    for (section, what, names) in sections {
        for name in names {
            if !valid_name(name) {
                c.err_key(
                    section,
                    name,
                    &[],
                    format!("invalid {what} name `{name}`: use lowercase letters, digits, `-` and `_`, at most 63, starting and ending with a letter or digit"),
                );
            }
        }
    }
}

fn check_sites(c: &mut Checker) {
    let mut by_address: HashMap<std::net::IpAddr, &str> = HashMap::new();
    for (name, site) in &c.system.sites {
        if let Some(other) = by_address.insert(site.address, name) {
            c.err(
                "sites",
                name,
                &[key("address")],
                format!(
                    "sites `{other}` and `{name}` share the address {}; each site needs its own",
                    site.address
                ),
            );
        }
        if let Some(repo) = &site.repository {
            if let Err(e) = crate::units::check_repository_url(&repo.url) {
                c.err(
                    "sites",
                    name,
                    &[key("repository"), key("url")],
                    format!("site `{name}`: {e}"),
                );
            } else if c.system.api.is_some() && !repo.url.starts_with("s3://") {
                // Each site is its own host: another site's agent replicates into this
                // repository and restores from it, and a folder on this host is neither
                // reachable from there nor safe from this host's loss.
                c.err(
                    "sites",
                    name,
                    &[key("repository"), key("url")],
                    format!(
                        "site `{name}`: the repository `{}` is a folder on one host, but with `api` every site is its own host: the other sites' agents replicate into it and restore from it, and it would be lost with this host; use an s3:// repository",
                        repo.url
                    ),
                );
            }
        }
        if let Some(addr) = &site.api {
            if c.system.api.is_none() {
                c.err(
                    "sites",
                    name,
                    &[key("api")],
                    format!("site `{name}`: `api` needs a top-level `api` section (the TLS files and credentials)"),
                );
            } else if !valid_host_port(addr) {
                c.err(
                    "sites",
                    name,
                    &[key("api")],
                    format!("site `{name}`: `api` must be host:port, like `10.0.0.1:7443` or `a.example.net:7443`; got `{addr}`"),
                );
            }
        }
    }
    if let Some(api) = &c.system.api {
        if api.tls.trim().is_empty() {
            c.err("api", "", &[key("tls")], "api: `tls` must name the folder of this host's ca.pem, cert.pem and key.pem (`resurgo certs` writes them)".into());
        }
        if api.port == Some(0) {
            c.err("api", "", &[key("port")], "api: `port` must be 1 to 65535".into());
        }
    }
}

/// `host:port` with a port from 1 to 65535 and a host of letters, digits, `.`, `-` or `:`
/// (a bracketed IPv6 address).
fn valid_host_port(addr: &str) -> bool {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        && port.parse::<u16>().is_ok_and(|p| p > 0)
}

fn check_services(c: &mut Checker) {
    let system = c.system;
    for (name, svc) in &system.services {
        if svc.command.trim().is_empty() {
            c.err(
                "services",
                name,
                &[key("command")],
                format!("service `{name}` has an empty command"),
            );
        }
        if let Some(user) = &svc.user {
            // A name as `useradd` takes it (no separators, no spaces), never a number: a uid
            // would mean different people on different hosts.
            let valid = !user.is_empty()
                && user.len() <= 32
                && !user.starts_with('-')
                && !user.chars().all(|c| c.is_ascii_digit())
                && user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !valid {
                c.err(
                    "services",
                    name,
                    &[key("user")],
                    format!(
                        "service `{name}`: `{user}` is not a user name (letters, digits, `_`, `-`, `.`; not a number)"
                    ),
                );
            }
        }
        match system.sites.get(&svc.site) {
            None => {
                let msg = format!(
                    "service `{name}` is active at site `{}`, which is not declared; declared sites: {}",
                    svc.site,
                    c.names("sites")
                );
                c.err("services", name, &[key("site")], msg);
            }
            Some(site) => {
                for cap in &svc.requires {
                    if !site.capabilities.contains(cap) {
                        let msg = format!(
                            "service `{name}` requires capability `{cap}`, which its site `{}` does not offer (offers: {})",
                            svc.site,
                            list_or_none(&site.capabilities.iter().map(String::as_str).collect::<Vec<_>>())
                        );
                        c.err("services", name, &[key("site")], msg);
                    }
                }
            }
        }
        for (i, standby) in svc.standby.iter().enumerate() {
            let at = [key("standby"), Seg::Index(i)];
            if standby == &svc.site {
                c.err(
                    "services",
                    name,
                    &at,
                    format!("service `{name}` lists its active site `{standby}` as a standby"),
                );
                continue;
            }
            if svc.standby[..i].contains(standby) {
                c.err(
                    "services",
                    name,
                    &at,
                    format!("service `{name}` lists standby site `{standby}` twice"),
                );
                continue;
            }
            let Some(site) = system.sites.get(standby) else {
                let msg = format!(
                    "service `{name}` names standby site `{standby}`, which is not declared; declared sites: {}",
                    c.names("sites")
                );
                c.err("services", name, &at, msg);
                continue;
            };
            for cap in &svc.requires {
                if !site.capabilities.contains(cap) {
                    let msg = format!(
                        "standby site `{standby}` of service `{name}` lacks capability `{cap}` (offers: {})",
                        list_or_none(&site.capabilities.iter().map(String::as_str).collect::<Vec<_>>())
                    );
                    c.err("services", name, &at, msg);
                }
            }
        }
        for (i, dep) in svc.depends_on.iter().enumerate() {
            let at = [key("depends_on"), Seg::Index(i)];
            if dep == name {
                c.err("services", name, &at, format!("service `{name}` depends on itself"));
            } else if !system.services.contains_key(dep) {
                let msg = format!(
                    "service `{name}` depends on `{dep}`, which is not a declared service; declared services: {}",
                    c.names("services")
                );
                c.err("services", name, &at, msg);
            }
        }
        for (var, value) in &svc.env {
            if var.is_empty() || var.contains('=') || var.contains('\0') {
                c.err_key(
                    "services",
                    name,
                    &[key("env"), key(var)],
                    format!("service `{name}`: invalid environment variable name `{var}`"),
                );
            }
            if let EnvValue::Secret {
                secret: SecretRef::Env(v) | SecretRef::File(v),
            } = value
            {
                if v.is_empty() {
                    c.err(
                        "services",
                        name,
                        &[key("env"), key(var)],
                        format!("service `{name}`: secret for `{var}` names nothing"),
                    );
                }
            }
        }
        if let Some(h) = &svc.health {
            let kinds = [h.http.is_some(), h.tcp.is_some(), h.exec.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if kinds != 1 {
                c.err_key(
                    "services",
                    name,
                    &[key("health")],
                    format!(
                        "service `{name}`: a health check needs exactly one of `http`, `tcp`, `exec` (found {kinds})"
                    ),
                );
            }
            if let Some(exec) = &h.exec {
                if exec.command.is_empty() {
                    c.err(
                        "services",
                        name,
                        &[key("health"), key("exec"), key("command")],
                        format!("service `{name}`: the exec health check has an empty command"),
                    );
                }
            }
            if let Some(http) = &h.http {
                if !http.path.starts_with('/') {
                    c.err(
                        "services",
                        name,
                        &[key("health"), key("http"), key("path")],
                        format!(
                            "service `{name}`: malformed health check path `{}`: it must start with `/`",
                            http.path
                        ),
                    );
                }
            }
        }
    }
}

/// Finds dependency cycles and names each one once, e.g. `a → b → c → a`.
fn check_cycles(c: &mut Checker) {
    let services = &c.system.services;
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks: IndexMap<&str, Mark> = services.keys().map(|k| (k.as_str(), Mark::New)).collect();
    let mut cycles: Vec<Vec<String>> = Vec::new();
    for start in services.keys() {
        if marks[start.as_str()] != Mark::New {
            continue;
        }
        // Iterative DFS: (service, index of the next dependency to visit).
        let mut stack: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        marks.insert(start, Mark::Active);
        while let Some((node, next)) = stack.last().copied() {
            let deps = &services[node].depends_on;
            if next >= deps.len() {
                marks.insert(node, Mark::Done);
                stack.pop();
                continue;
            }
            stack.last_mut().expect("non-empty").1 += 1;
            let dep = deps[next].as_str();
            match marks.get(dep) {
                Some(Mark::New) => {
                    marks.insert(dep, Mark::Active);
                    stack.push((dep, 0));
                }
                Some(Mark::Active) if dep != node => {
                    let from = stack
                        .iter()
                        .position(|(n, _)| *n == dep)
                        .expect("active node is on the stack");
                    let mut cycle: Vec<String> = stack[from..].iter().map(|(n, _)| n.to_string()).collect();
                    cycle.push(dep.to_string());
                    cycles.push(cycle);
                }
                _ => {}
            }
        }
    }
    for cycle in cycles {
        let first = cycle[0].clone();
        let idx = services[&first]
            .depends_on
            .iter()
            .position(|d| *d == cycle[1])
            .unwrap_or(0);
        c.err(
            "services",
            &first,
            &[key("depends_on"), Seg::Index(idx)],
            format!("dependency cycle: {}", cycle.join(" → ")),
        );
    }
}

fn add(a: Resources, b: Resources) -> Resources {
    Resources {
        cpu: crate::units::Cpu(a.cpu.0 + b.cpu.0),
        memory: crate::units::ByteSize(a.memory.0 + b.memory.0),
    }
}

/// Each site must hold its own active services; each standby site must also hold, on top of
/// its own, every service that would fail over to it from any one other site.
fn check_capacity(c: &mut Checker) {
    let system = c.system;
    let mut active: BTreeMap<&str, (Resources, Vec<&str>)> = BTreeMap::new();
    for (name, svc) in &system.services {
        let e = active.entry(svc.site.as_str()).or_default();
        e.0 = add(e.0, svc.resources);
        e.1.push(name);
    }
    for (site_name, site) in &system.sites {
        let (own, own_names) = active.get(site_name.as_str()).cloned().unwrap_or_default();
        if own.cpu > site.capacity.cpu || own.memory > site.capacity.memory {
            let msg = format!(
                "site `{site_name}` lacks the capacity for its own services ({}): they need cpu {}, memory {}; it has cpu {}, memory {}",
                own_names.join(", "), own.cpu, own.memory, site.capacity.cpu, site.capacity.memory
            );
            c.err("sites", site_name, &[key("capacity")], msg);
            continue;
        }
        for from in system.sites.keys().filter(|s| *s != site_name) {
            let incoming: Vec<(&String, Resources)> = system
                .services
                .iter()
                .filter(|(_, s)| s.site == *from && s.standby.first() == Some(site_name))
                .map(|(n, s)| (n, s.resources))
                .collect();
            if incoming.is_empty() {
                continue;
            }
            let need = incoming.iter().fold(own, |acc, (_, r)| add(acc, *r));
            if need.cpu > site.capacity.cpu || need.memory > site.capacity.memory {
                let names: Vec<&str> = incoming.iter().map(|(n, _)| n.as_str()).collect();
                let msg = format!(
                    "standby site `{site_name}` lacks the capacity to take over from `{from}`: its own services and {} need cpu {}, memory {}; it has cpu {}, memory {}",
                    names.join(", "), need.cpu, need.memory, site.capacity.cpu, site.capacity.memory
                );
                c.err("sites", site_name, &[key("capacity")], msg);
            }
        }
    }
}

/// No two services on one address and port — neither where they run now, nor where a
/// failover would put them.
fn check_ports(c: &mut Checker) {
    let system = c.system;
    let mut taken: HashMap<(&str, u16), &str> = HashMap::new();
    for (name, svc) in &system.services {
        for (i, port) in svc.ports.iter().enumerate() {
            if *port == 0 {
                c.err(
                    "services",
                    name,
                    &[key("ports"), Seg::Index(i)],
                    format!("service `{name}`: port 0 is not a port"),
                );
                continue;
            }
            if let Some(other) = taken.insert((svc.site.as_str(), *port), name) {
                if other != name {
                    let addr = system
                        .sites
                        .get(&svc.site)
                        .map(|s| s.address.to_string())
                        .unwrap_or_default();
                    c.err(
                        "services",
                        name,
                        &[key("ports"), Seg::Index(i)],
                        format!(
                            "services `{other}` and `{name}` both listen on {addr}:{port} at site `{}`",
                            svc.site
                        ),
                    );
                }
            }
        }
    }
    for (name, svc) in &system.services {
        let Some(target) = svc.standby.first() else { continue };
        for (i, port) in svc.ports.iter().enumerate() {
            if let Some(other) = taken.get(&(target.as_str(), *port)).filter(|o| **o != name.as_str()) {
                c.err(
                    "services",
                    name,
                    &[key("ports"), Seg::Index(i)],
                    format!(
                        "service `{name}` would collide with `{other}` on port {port} after failing over to `{target}`"
                    ),
                );
            }
        }
    }
    for (name, route) in &system.routes {
        let Some(listen) = route.listen else { continue };
        for (site_name, site) in &system.sites {
            if site.address == listen.ip() {
                if let Some(other) = taken.get(&(site_name.as_str(), listen.port())) {
                    c.err(
                        "routes",
                        name,
                        &[key("listen")],
                        format!(
                            "route `{name}` listens on {listen}, where service `{other}` listens at site `{site_name}`"
                        ),
                    );
                }
            }
        }
    }
}

fn check_datasets(c: &mut Checker) {
    let system = c.system;
    for (name, ds) in &system.datasets {
        let Some(svc) = system.services.get(&ds.service) else {
            let msg = format!(
                "dataset `{name}` belongs to service `{}`, which is not declared; declared services: {}",
                ds.service,
                c.names("services")
            );
            c.err("datasets", name, &[key("service")], msg);
            continue;
        };
        match ds.kind {
            DatasetKind::Directory | DatasetKind::Sqlite if ds.path.is_none() => {
                c.err_key("datasets", name, &[], format!("dataset `{name}` needs a `path`"));
            }
            DatasetKind::Postgres if ds.connection.is_none() => {
                c.err_key("datasets", name, &[], format!("dataset `{name}` needs a `connection`"));
            }
            _ => {}
        }
        if ds.strategy == Strategy::Standby && ds.kind != DatasetKind::Postgres {
            c.err(
                "datasets",
                name,
                &[key("strategy")],
                format!("dataset `{name}`: strategy `standby` needs a PostgreSQL dataset; use `backup`"),
            );
        }
        if ds.strategy == Strategy::Standby && svc.standby.is_empty() {
            c.err(
                "datasets",
                name,
                &[key("strategy")],
                format!(
                    "dataset `{name}`: strategy `standby` keeps a replica at a standby site, but service `{}` lists no `standby` sites",
                    ds.service
                ),
            );
        }
        if system.sites.get(&svc.site).is_some_and(|s| s.repository.is_none()) {
            c.err(
                "datasets",
                name,
                &[key("service")],
                format!(
                    "dataset `{name}` is backed up at site `{}`, which declares no `repository`",
                    svc.site
                ),
            );
        }
        if ds.method.is_some() && ds.kind != DatasetKind::Postgres {
            c.err(
                "datasets",
                name,
                &[key("method")],
                format!("dataset `{name}`: `method` applies to PostgreSQL datasets only"),
            );
        }
        if let Some(check) = &ds.check {
            let kinds = usize::from(check.query.is_some()) + usize::from(!check.command.is_empty());
            if kinds != 1 {
                c.err_key(
                    "datasets",
                    name,
                    &[key("check")],
                    format!("dataset `{name}`: a check needs exactly one of `query`, `command` (found {kinds})"),
                );
            }
            if check.query.is_some() && ds.kind == DatasetKind::Directory {
                c.err(
                    "datasets",
                    name,
                    &[key("check"), key("query")],
                    format!("dataset `{name}`: a directory is checked with a `command`, not a `query`"),
                );
            }
        }
        for (i, site) in ds.replicate_to.iter().enumerate() {
            if system.sites.get(site).is_some_and(|s| s.repository.is_none()) {
                c.err(
                    "datasets",
                    name,
                    &[key("replicate_to"), Seg::Index(i)],
                    format!("dataset `{name}` replicates to site `{site}`, which declares no `repository`"),
                );
                continue;
            }
            if !system.sites.contains_key(site) {
                let msg = format!(
                    "dataset `{name}` replicates to site `{site}`, which is not declared; declared sites: {}",
                    c.names("sites")
                );
                c.err("datasets", name, &[key("replicate_to"), Seg::Index(i)], msg);
            } else if *site == svc.site {
                c.err(
                    "datasets",
                    name,
                    &[key("replicate_to"), Seg::Index(i)],
                    format!("dataset `{name}` replicates to its own site `{site}`"),
                );
            }
        }
        let rpo = ds.rpo.or(system.objectives.rpo);
        if let (Some(rpo), Some(schedule)) = (rpo, ds.schedule) {
            let continuous = ds.kind == DatasetKind::Postgres;
            if !continuous && schedule > rpo {
                let at = if ds.rpo.is_some() { key("rpo") } else { key("schedule") };
                c.err(
                    "datasets",
                    name,
                    &[at],
                    format!("dataset `{name}`: an RPO of {rpo} is impossible with a backup every {schedule}; back up at least every {rpo} or relax the RPO"),
                );
            }
        }
    }
}

fn check_routes(c: &mut Checker) {
    let system = c.system;
    let mut listens: HashMap<std::net::SocketAddr, &str> = HashMap::new();
    for (name, route) in &system.routes {
        let Some(svc) = system.services.get(&route.service) else {
            let msg = format!(
                "route `{name}` leads to service `{}`, which is not declared; declared services: {}",
                route.service,
                c.names("services")
            );
            c.err("routes", name, &[key("service")], msg);
            continue;
        };
        match route.port {
            Some(p) if !svc.ports.contains(&p) => {
                c.err(
                    "routes",
                    name,
                    &[key("port")],
                    format!(
                        "route `{name}` leads to port {p}, which service `{}` does not declare",
                        route.service
                    ),
                );
            }
            None if svc.ports.is_empty() => {
                c.err_key(
                    "routes",
                    name,
                    &[],
                    format!(
                        "route `{name}` leads to service `{}`, which declares no ports",
                        route.service
                    ),
                );
            }
            _ => {}
        }
        for (field, present, wanted) in [
            ("listen", route.listen.is_some(), RouteKind::Proxy),
            ("dns", route.dns.is_some(), RouteKind::Dns),
            ("hook", route.hook.is_some(), RouteKind::Hook),
        ] {
            if present && route.kind != wanted {
                c.err_key(
                    "routes",
                    name,
                    &[key(field)],
                    format!(
                        "route `{name}` is of type `{}`: `{field}` belongs to a `{}` route",
                        route_kind(route.kind),
                        route_kind(wanted)
                    ),
                );
            }
        }
        match (route.kind, &route.dns, &route.hook) {
            (RouteKind::Dns, None, _) => c.err_key(
                "routes",
                name,
                &[],
                format!("dns route `{name}` needs `dns` (server, zone, name, key)"),
            ),
            (RouteKind::Dns, Some(dns), _) => {
                let (zone, record) = (dns.zone.trim_end_matches('.'), dns.name.trim_end_matches('.'));
                if record != zone && !record.ends_with(&format!(".{zone}")) {
                    c.err(
                        "routes",
                        name,
                        &[key("dns"), key("name")],
                        format!(
                            "route `{name}`: record `{}` is not inside zone `{}`",
                            dns.name, dns.zone
                        ),
                    );
                }
                for site in std::iter::once(&svc.site).chain(&svc.standby) {
                    if let Some(s) = system.sites.get(site).filter(|s| !s.address.is_ipv4()) {
                        c.err(
                            "routes",
                            name,
                            &[key("dns")],
                            format!(
                                "route `{name}` is an A record, but site `{site}` has the IPv6 address {}",
                                s.address
                            ),
                        );
                    }
                }
            }
            (RouteKind::Hook, _, None) => c.err_key(
                "routes",
                name,
                &[],
                format!("hook route `{name}` needs `hook` (command, args)"),
            ),
            _ => {}
        }
        if route.kind == RouteKind::Proxy {
            match route.listen {
                None => c.err_key(
                    "routes",
                    name,
                    &[],
                    format!("proxy route `{name}` needs `listen` (address:port)"),
                ),
                Some(addr) => {
                    if let Some(other) = listens.insert(addr, name) {
                        c.err(
                            "routes",
                            name,
                            &[key("listen")],
                            format!("routes `{other}` and `{name}` both listen on {addr}"),
                        );
                    }
                }
            }
        }
    }
}

fn route_kind(kind: RouteKind) -> &'static str {
    match kind {
        RouteKind::Proxy => "proxy",
        RouteKind::Dns => "dns",
        RouteKind::Hook => "hook",
    }
}

/// The timing rules (the old primary fences before it can be replaced), a witness for
/// automatic failover, and the etcd cluster.
fn check_failover(c: &mut Checker) {
    let failover = &c.system.failover;
    for error in crate::timing::validate_timing(&failover.timing()) {
        c.err_key("failover", "", &[], format!("failover timing: {error}"));
    }
    if failover.automatic && failover.witness.is_none() {
        c.err(
            "failover",
            "",
            &[key("automatic")],
            "automatic failover needs a `witness` (address:port): without a second view, a cut link would look like a lost site".into(),
        );
    }
    if let Some(etcd) = failover.etcd() {
        check_etcd(c, etcd);
    }
}

/// etcd: endpoints that are URLs of one scheme; TLS only for https, with a client certificate
/// and its key together; a user only over https (its password would cross in clear).
fn check_etcd(c: &mut Checker, etcd: &EtcdCluster) {
    let at = |rest: &[Seg]| -> Vec<Seg> { [key("coordination"), key("etcd")].iter().chain(rest).cloned().collect() };
    if etcd.endpoints.is_empty() {
        c.err(
            "failover",
            "",
            &at(&[key("endpoints")]),
            "etcd needs at least one endpoint (http://host:2379 or https://host:2379)".into(),
        );
    }
    let scheme = |e: &str| {
        ["http", "https"]
            .into_iter()
            .find(|s| e.starts_with(&format!("{s}://")))
    };
    let mut first: Option<(&str, &str)> = None;
    for (i, endpoint) in etcd.endpoints.iter().enumerate() {
        let here = at(&[key("endpoints"), Seg::Index(i)]);
        match (scheme(endpoint), first) {
            (None, _) => c.err(
                "failover",
                "",
                &here,
                format!("etcd endpoint `{endpoint}` is not a URL: write it as http://host:2379 or https://host:2379"),
            ),
            (Some(s), None) => first = Some((s, endpoint)),
            (Some(s), Some((f, other))) if s != f => c.err(
                "failover",
                "",
                &here,
                format!("etcd endpoint `{endpoint}` is {s} but `{other}` is {f}: use one scheme for all members"),
            ),
            _ => {}
        }
    }
    let http = first.is_some_and(|(s, _)| s == "http");
    if let Some(tls) = &etcd.tls {
        if http {
            c.err_key(
                "failover",
                "",
                &at(&[key("tls")]),
                "etcd `tls` with http endpoints: write the endpoints as https://host:2379".into(),
            );
        }
        if tls.cert.is_some() != tls.key.is_some() {
            c.err_key(
                "failover",
                "",
                &at(&[key("tls")]),
                "etcd `tls` needs `cert` and `key` together (a client certificate and its private key)".into(),
            );
        }
    }
    if let Some(auth) = &etcd.auth {
        if http {
            c.err_key(
                "failover",
                "",
                &at(&[key("auth")]),
                "etcd `auth` over http would send the password in clear: use https endpoints".into(),
            );
        }
        if auth.user.is_empty() {
            c.err(
                "failover",
                "",
                &at(&[key("auth"), key("user")]),
                "etcd `auth` names no user".into(),
            );
        }
        let (SecretRef::Env(v) | SecretRef::File(v)) = &auth.password;
        if v.is_empty() {
            c.err(
                "failover",
                "",
                &at(&[key("auth"), key("password")]),
                "etcd password secret names nothing".into(),
            );
        }
    }
}

/// Drills: one scope, references that resolve, faults inside the scope, stop conditions for a
/// live drill, and somewhere for an isolated one to run its test failover.
fn check_drills(c: &mut Checker) {
    let system = c.system;
    for (name, drill) in &system.drills {
        check_drill_scope(c, name, drill);
        if drill.faults.is_empty() {
            c.err_key(
                "drills",
                name,
                &[key("faults")],
                format!("drill `{name}` injects no fault: list at least one under `faults`"),
            );
        }
        for (i, fault) in drill.faults.iter().enumerate() {
            if let Some(why) = fault_problem(system, drill, fault) {
                c.err(
                    "drills",
                    name,
                    &[key("faults"), Seg::Index(i)],
                    format!("drill `{name}`: {why}"),
                );
            }
        }
        let objectives = drill.objectives.unwrap_or(system.objectives);
        for (what, missing) in [("rto", objectives.rto.is_none()), ("rpo", objectives.rpo.is_none())] {
            if missing {
                c.err_key(
                    "drills",
                    name,
                    &[],
                    format!("drill `{name}` is judged against an {} objective, and none is declared: set `objectives.{what}` for the system or the drill", what.to_uppercase()),
                );
            }
        }
        if drill.scheduled && (drill.mode != DrillMode::Isolated || drill.cadence.is_none()) {
            c.err_key(
                "drills",
                name,
                &[key("scheduled")],
                format!("drill `{name}`: only an isolated drill with a `cadence` runs on a schedule (its DR site's agent runs it when its last run is older than the cadence)"),
            );
        }
        if drill.mode == DrillMode::Live && drill.stop.is_empty() {
            c.err_key(
                "drills",
                name,
                &[key("mode")],
                format!("drill `{name}` is live but has no `stop` conditions: a live drill must say what aborts it (e.g. `stop: [unavailable_for: 2m]`)"),
            );
        }
        if drill.mode == DrillMode::Isolated && !drill.scope.link.is_empty() {
            c.err_key(
                "drills",
                name,
                &[key("scope")],
                format!("drill `{name}`: a link cannot be cut in a sandbox; a link drill is `mode: live`"),
            );
        } else if drill.mode == DrillMode::Isolated {
            for svc in drill.scope.services(system) {
                if system.services.get(&svc).is_some_and(|s| s.standby.is_empty()) {
                    c.err_key(
                        "drills",
                        name,
                        &[key("scope")],
                        format!("drill `{name}` is isolated, a test failover at the DR site, but service `{svc}` names no `standby` site to run it at"),
                    );
                }
            }
        }
        for (i, route) in drill.probes.routes.iter().enumerate() {
            if !system.routes.contains_key(route) {
                c.err(
                    "drills",
                    name,
                    &[key("probes"), key("routes"), Seg::Index(i)],
                    format!("drill `{name}` probes route `{route}`, which is not declared"),
                );
            }
        }
        for (i, ds) in drill.probes.canaries.iter().enumerate() {
            if !system.datasets.contains_key(ds) {
                c.err(
                    "drills",
                    name,
                    &[key("probes"), key("canaries"), Seg::Index(i)],
                    format!("drill `{name}` writes a canary into dataset `{ds}`, which is not declared"),
                );
            }
        }
        for (i, stop) in drill.stop.iter().enumerate() {
            let bad = match stop {
                StopCondition::UnavailableFor(d) => {
                    d.0.is_zero()
                        .then(|| "`unavailable_for` must be greater than zero".to_string())
                }
                StopCondition::WritesLostOver(_) => None,
                StopCondition::Event(kind) => {
                    (!valid_name(kind)).then(|| format!("`{kind}` is not an event kind (e.g. `apply_failed`)"))
                }
            };
            if let Some(why) = bad {
                c.err(
                    "drills",
                    name,
                    &[key("stop"), Seg::Index(i)],
                    format!("drill `{name}`: {why}"),
                );
            }
        }
        for (field, value) in [("deadline", drill.deadline), ("cadence", drill.cadence)] {
            if value.is_some_and(|d| d.0.is_zero()) {
                c.err(
                    "drills",
                    name,
                    &[key(field)],
                    format!("drill `{name}`: {field} must be greater than zero"),
                );
            }
        }
    }
}

/// Workspaces: a declared DR site, where none of its services is active (a workspace borrows
/// spare capacity that a failover takes back); declared services whose data can be cloned
/// from a golden copy; a seed that names a restore point; lifetimes that are not zero; masking
/// commands that say something.
fn check_workspaces(c: &mut Checker) {
    let system = c.system;
    for (name, ws) in &system.workspaces {
        if !system.sites.contains_key(&ws.site) {
            let msg = format!(
                "workspace `{name}` is at site `{}`, which is not declared; declared sites: {}",
                ws.site,
                c.names("sites")
            );
            c.err("workspaces", name, &[key("site")], msg);
        }
        if ws.services.is_empty() {
            c.err(
                "workspaces",
                name,
                &[key("services")],
                format!("workspace `{name}` copies no service: list at least one under `services`"),
            );
        }
        let mut active_here: Vec<&str> = Vec::new();
        for (i, svc_name) in ws.services.iter().enumerate() {
            let at = [key("services"), Seg::Index(i)];
            if ws.services[..i].contains(svc_name) {
                c.err(
                    "workspaces",
                    name,
                    &at,
                    format!("workspace `{name}` lists service `{svc_name}` twice"),
                );
                continue;
            }
            let Some(svc) = system.services.get(svc_name) else {
                let msg = format!(
                    "workspace `{name}` copies service `{svc_name}`, which is not declared; declared services: {}",
                    c.names("services")
                );
                c.err("workspaces", name, &at, msg);
                continue;
            };
            if svc.site == ws.site {
                active_here.push(svc_name);
            }
            // A logical backup (pg_dump) restores into a running server; there is no data
            // directory to keep as a golden copy and clone.
            for (ds_name, ds) in system.datasets.iter().filter(|(_, d)| d.service == *svc_name) {
                if ds.kind == DatasetKind::Postgres && ds.method == Some(PgMethod::Logical) {
                    c.err(
                        "workspaces",
                        name,
                        &at,
                        format!(
                            "workspace `{name}` copies service `{svc_name}`, whose dataset `{ds_name}` is backed up with `method: logical` (pg_dump), which cannot be cloned: give `{ds_name}` `method: physical`, or leave `{svc_name}` out of the workspace"
                        ),
                    );
                }
            }
        }
        if !active_here.is_empty() && system.sites.contains_key(&ws.site) {
            let (what, names) = match active_here.as_slice() {
                [one] => ("service", format!("`{one}` is")),
                many => (
                    "services",
                    format!(
                        "{} are",
                        many.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                    ),
                ),
            };
            // A DR site of those services, else any other site.
            let standby = active_here.iter().find_map(|n| {
                system.services[*n]
                    .standby
                    .iter()
                    .find(|s| **s != ws.site && system.sites.contains_key(*s))
                    .map(|s| (s, n))
            });
            let other = system.sites.keys().find(|s| **s != ws.site);
            let next = match (standby, other) {
                (Some((s, svc)), _) => format!("put it at a DR site, e.g. `site: {s}` (a standby site of `{svc}`)"),
                (None, Some(s)) => format!("put it at another site, e.g. `site: {s}`"),
                (None, None) => "declare a DR site for it".to_string(),
            };
            c.err(
                "workspaces",
                name,
                &[key("site")],
                format!(
                    "workspace `{name}` is at site `{}`, where {what} {names} active: a workspace lends a DR site's spare capacity, taken back when a failover needs it; {next}",
                    ws.site
                ),
            );
        }
        if let Seed::At(time) = &ws.seed {
            if let Err(e) = crate::units::parse_rfc3339(time) {
                // Past its first character, jiff's reason only helps a text that looks like a time.
                let msg = if time.starts_with(|c: char| c.is_ascii_digit()) {
                    format!("workspace `{name}`: seed: {e}")
                } else {
                    format!("workspace `{name}`: seed `{time}` is neither `latest` nor an RFC 3339 time: write `latest`, or a time with an offset such as `2026-11-21T10:15:00Z`")
                };
                c.err("workspaces", name, &[key("seed")], msg);
            }
        }
        for (field, value) in [("ttl", ws.ttl), ("reseed_after", ws.reseed_after)] {
            if value.is_some_and(|d| d.0.is_zero()) {
                c.err(
                    "workspaces",
                    name,
                    &[key(field)],
                    format!("workspace `{name}`: {field} must be greater than zero"),
                );
            }
        }
        for (i, command) in ws.masking.iter().enumerate() {
            if command.trim().is_empty() {
                c.err(
                    "workspaces",
                    name,
                    &[key("masking"), Seg::Index(i)],
                    format!(
                        "workspace `{name}`: masking command {} is empty: write the shell command to run, or remove it",
                        i + 1
                    ),
                );
            }
        }
    }
}

/// The rules a declared workspace keeps, for one made on demand (`resurgo workspace create
/// NAME --site S --services …`) that no spec file holds: a name like any other, a declared DR
/// site where none of its services is active, declared services whose data can be cloned, a
/// seed that names a restore point, lifetimes that are not zero, masking commands that say
/// something. Each problem is a sentence. Room at the site is not checked here: it depends on
/// what is lent when the workspace is made, which the maker checks.
pub fn check_workspace(system: &System, name: &str, workspace: &crate::model::Workspace) -> Vec<String> {
    let mut alone = system.clone();
    alone.workspaces = IndexMap::from([(name.to_string(), workspace.clone())]);
    let sources = Sources::default();
    let mut c = Checker {
        system: &alone,
        sources: &sources,
        diags: Vec::new(),
    };
    if !valid_name(name) {
        c.diags.push(Diagnostic::bare(format!(
            "invalid workspace name `{name}`: use lowercase letters, digits, `-` and `_`, at most 63, starting and ending with a letter or digit"
        )));
    }
    check_workspaces(&mut c);
    c.diags.into_iter().map(|d| d.message).collect()
}

/// The workspaces at a site, with the services active there, fit its capacity. A failover
/// takes them back, so they are not counted against what a standby site must hold to take
/// over; but until then they run beside the site's own services.
fn check_workspace_capacity(c: &mut Checker) {
    let system = c.system;
    for (site_name, site) in &system.sites {
        let own_names: Vec<&str> = system
            .services
            .iter()
            .filter(|(_, s)| s.site == *site_name)
            .map(|(n, _)| n.as_str())
            .collect();
        let own = own_names
            .iter()
            .fold(Resources::default(), |acc, n| add(acc, system.services[*n].resources));
        if own.cpu > site.capacity.cpu || own.memory > site.capacity.memory {
            continue; // check_capacity has said so
        }
        let here: Vec<(&String, &crate::model::Workspace)> =
            system.workspaces.iter().filter(|(_, w)| w.site == *site_name).collect();
        let sum = here
            .iter()
            .fold(Resources::default(), |acc, (_, w)| add(acc, w.resources));
        let need = add(own, sum);
        if need.cpu <= site.capacity.cpu && need.memory <= site.capacity.memory {
            continue;
        }
        // Pointed at the workspace that tips the site over.
        let mut running = own;
        let culprit = here
            .iter()
            .find(|(_, w)| {
                running = add(running, w.resources);
                running.cpu > site.capacity.cpu || running.memory > site.capacity.memory
            })
            .map_or(here[0].0, |(n, _)| n);
        let names: Vec<&str> = here.iter().map(|(n, _)| n.as_str()).collect();
        let besides = if own == Resources::default() {
            String::new()
        } else {
            format!(
                ", beside cpu {}, memory {} for the services active there ({})",
                own.cpu,
                own.memory,
                own_names.join(", ")
            )
        };
        let at: &[Seg] = if system.workspaces[culprit.as_str()].resources == Resources::default() {
            &[]
        } else {
            &[key("resources")]
        };
        c.err_key(
            "workspaces",
            culprit,
            at,
            format!(
                "site `{site_name}` lacks the capacity for its workspaces ({}): they need cpu {}, memory {}{besides}; it has cpu {}, memory {}; shrink their `resources` or put one at another DR site",
                names.join(", "),
                sum.cpu,
                sum.memory,
                site.capacity.cpu,
                site.capacity.memory
            ),
        );
    }
}

fn check_drill_scope(c: &mut Checker, name: &str, drill: &Drill) {
    let scope = &drill.scope;
    let given = [
        scope.service.is_some(),
        !scope.services.is_empty(),
        scope.site.is_some(),
        !scope.link.is_empty(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        c.err_key(
            "drills",
            name,
            &[key("scope")],
            format!(
                "drill `{name}`: the scope is exactly one of `service`, `services`, `site` or `link` ({given} given)"
            ),
        );
        return;
    }
    let services = c.names("services");
    for svc in scope.service.iter().chain(&scope.services) {
        if !c.system.services.contains_key(svc) {
            c.err(
                "drills",
                name,
                &[key("scope")],
                format!("drill `{name}`: unknown service `{svc}` in its scope (services: {services})"),
            );
        }
    }
    let sites = c.names("sites");
    if let Some(site) = &scope.site {
        if !c.system.sites.contains_key(site) {
            c.err(
                "drills",
                name,
                &[key("scope"), key("site")],
                format!("drill `{name}`: unknown site `{site}` (sites: {sites})"),
            );
        }
    }
    if !scope.link.is_empty() {
        if let Some(why) = link_problem(c.system, &scope.link) {
            c.err(
                "drills",
                name,
                &[key("scope"), key("link")],
                format!("drill `{name}`: {why}"),
            );
        }
    }
}

/// What is wrong with a link `[a, b]`, if anything.
fn link_problem(system: &System, link: &[String]) -> Option<String> {
    if link.len() != 2 || link[0] == link[1] {
        return Some(format!(
            "a link is two different sites, e.g. `[a, b]` (given [{}])",
            link.join(", ")
        ));
    }
    link.iter()
        .find(|s| !system.sites.contains_key(*s))
        .map(|s| format!("unknown site `{s}` in the link [{}]", link.join(", ")))
}

/// What is wrong with a fault of a drill, if anything: it names what exists, inside the scope.
fn fault_problem(system: &System, drill: &Drill, fault: &Fault) -> Option<String> {
    let scope = &drill.scope;
    let same_link = |l: &[String]| {
        let mut a = l.to_vec();
        let mut b = scope.link.clone();
        a.sort();
        b.sort();
        a == b
    };
    match fault {
        Fault::Kill(svc) => {
            if !system.services.contains_key(svc) {
                Some(format!("`kill` names unknown service `{svc}`"))
            } else if !scope.services(system).contains(svc) {
                Some(format!("`kill: {svc}` is outside the drill's scope"))
            } else {
                None
            }
        }
        Fault::StopSite(site) | Fault::IsolateSite(site) => {
            if !system.sites.contains_key(site) {
                Some(format!("`{}` names unknown site `{site}`", fault.kind()))
            } else if scope.site.as_deref() != Some(site.as_str()) {
                Some(format!("`{}: {site}` needs the scope `site: {site}`", fault.kind()))
            } else {
                None
            }
        }
        Fault::CutLink(link) | Fault::DegradeLink(crate::model::LinkDegradation { between: link, .. }) => {
            if let Some(why) = link_problem(system, link) {
                return Some(why);
            }
            if !same_link(link) {
                let link = link.join(", ");
                return Some(format!(
                    "`{}` of [{link}] needs the scope `link: [{link}]`",
                    fault.kind()
                ));
            }
            match fault {
                Fault::DegradeLink(d) if d.loss.is_some_and(|l| !(0.0..=100.0).contains(&l)) => {
                    Some("`loss` is a percentage, from 0 to 100".to_string())
                }
                Fault::DegradeLink(d) if d.latency.is_none() && d.loss.is_none() => {
                    Some("`degrade_link` adds `latency`, `loss` or both".to_string())
                }
                _ => None,
            }
        }
    }
}

/// Durations that pace or bound work are greater than zero: a zero `schedule` would back up
/// without pause, a zero probe interval would spin, a zero timeout would fail at once.
/// Receivers: a URL that is one (or a secret reference, which Slack's must be: its URL is its
/// credential), an HMAC key exactly for the generic webhook, and events to send.
fn check_notifications(c: &mut Checker) {
    let system = c.system;
    for (name, receiver) in &system.notifications {
        let kind = match receiver.kind {
            ReceiverKind::Webhook => "webhook",
            ReceiverKind::Alertmanager => "alertmanager",
            ReceiverKind::Slack => "slack",
        };
        match &receiver.url {
            PlainOrSecret::Plain(_) if receiver.kind == ReceiverKind::Slack => c.err(
                "notifications",
                name,
                &[key("url")],
                format!("receiver `{name}`: a Slack webhook's URL is its credential: give it as a secret reference, `{{secret: {{env: NAME}}}}` or `{{secret: {{file: PATH}}}}`"),
            ),
            PlainOrSecret::Plain(url) if !plain_http_url(url) => c.err(
                "notifications",
                name,
                &[key("url")],
                format!("receiver `{name}`: `{url}` is not an http:// or https:// URL"),
            ),
            PlainOrSecret::Secret {
                secret: SecretRef::Env(v) | SecretRef::File(v),
            } if v.is_empty() => c.err(
                "notifications",
                name,
                &[key("url")],
                format!("receiver `{name}`: the URL's secret reference names nothing"),
            ),
            _ => {}
        }
        match (&receiver.hmac_key, receiver.kind) {
            (None, ReceiverKind::Webhook) => c.err_key(
                "notifications",
                name,
                &[],
                format!("receiver `{name}`: a webhook is signed: give its `hmac_key` as a secret reference (`{{env: NAME}}` or `{{file: PATH}}`)"),
            ),
            (Some(_), ReceiverKind::Alertmanager | ReceiverKind::Slack) => c.err_key(
                "notifications",
                name,
                &[key("hmac_key")],
                format!("receiver `{name}`: `hmac_key` signs a `webhook`'s requests; a `{kind}` receiver sends none"),
            ),
            (Some(SecretRef::Env(v) | SecretRef::File(v)), _) if v.is_empty() => c.err(
                "notifications",
                name,
                &[key("hmac_key")],
                format!("receiver `{name}`: the HMAC key's secret reference names nothing"),
            ),
            _ => {}
        }
        let events = receiver.events.as_deref().unwrap_or_default();
        if receiver.events.as_ref().is_some_and(Vec::is_empty) {
            c.err_key(
                "notifications",
                name,
                &[key("events")],
                format!("receiver `{name}` is sent no event: list the kinds under `events`, or leave `events` out for all of them"),
            );
        }
        for (i, event) in events.iter().enumerate() {
            if events[..i].contains(event) {
                c.err(
                    "notifications",
                    name,
                    &[key("events"), Seg::Index(i)],
                    format!("receiver `{name}` lists `{}` twice", event.as_str()),
                );
            }
        }
    }
}

/// `http://host…` or `https://host…`.
fn plain_http_url(url: &str) -> bool {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or_default();
        !host.is_empty() && !host.contains(char::is_whitespace)
    })
}

fn check_positive_durations(c: &mut Checker) {
    let system = c.system;
    let zero = |d: Option<Duration>| d.is_some_and(|d| d.0.is_zero());
    for (name, svc) in &system.services {
        let Some(h) = &svc.health else { continue };
        for (field, value) in [
            ("interval", h.interval),
            ("timeout", h.timeout),
            ("start_timeout", h.start_timeout),
        ] {
            if zero(value) {
                c.err(
                    "services",
                    name,
                    &[key("health"), key(field)],
                    format!("service `{name}`: health check {field} must be greater than zero"),
                );
            }
        }
    }
    for (name, ds) in &system.datasets {
        for (field, value) in [("schedule", ds.schedule), ("verify_every", ds.verify_every)] {
            if zero(value) {
                c.err(
                    "datasets",
                    name,
                    &[key(field)],
                    format!("dataset `{name}`: {field} must be greater than zero"),
                );
            }
        }
    }
    for (name, receiver) in &system.notifications {
        if zero(receiver.give_up_after) {
            c.err(
                "notifications",
                name,
                &[key("give_up_after")],
                format!("receiver `{name}`: give_up_after must be greater than zero"),
            );
        }
    }
    for (name, route) in &system.routes {
        if zero(route.hook.as_ref().and_then(|h| h.timeout)) {
            c.err(
                "routes",
                name,
                &[key("hook"), key("timeout")],
                format!("route `{name}`: hook timeout must be greater than zero"),
            );
        }
    }
}
