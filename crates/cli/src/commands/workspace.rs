//! `resurgo workspace create|list|show|refresh|delete`: workspaces — preemptible dev/test
//! copies of some services and their data at a DR site, lent its spare capacity until a
//! failover needs it (`resurgo_controller::workspace`).
//!
//! A workspace is one the spec declares (`workspaces:`) or one made on demand from the
//! command line (`--site`, `--services` and the rest, checked by the spec's own rules). As the
//! other commands do, this one works in the state folder on one machine, and through the
//! site's agent (`/v1/workspaces…`) when the spec declares `api`: a workspace is made, seen,
//! refreshed and deleted by the agent of its own site, from that site's repository.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use resurgo_api::types::{CapacityLent, SandboxLeftover, WorkspaceDeleted, WorkspaceRecord};
use resurgo_api::{Client, ClientError};
use resurgo_controller::{report, workspace};
use resurgo_spec::{System, Workspace};

use crate::common::{load_or_report, SpecArgs};
use crate::exit;
use crate::render::Paint;

/// How long making a workspace through an agent may take: golden copies are restored from the
/// repository (a large PostgreSQL base backup and its WAL), then the services must serve.
const MAKE_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: WorkspaceCommand,
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Make a workspace: golden copies of the site's newest verified restore point (restored
    /// and checked once, kept for the next), cloned per dataset (reflink, else overlay, else a
    /// full copy), the services started in a network namespace of their own, the masking
    /// commands run. Handed out only once it serves; refused while the site serves production
    /// (after a failover), a failover or failback runs, or the site has no spare room.
    ///
    /// NAME is a workspace the spec declares under `workspaces:` (give no other option), or a
    /// new name with at least `--site` and `--services` for one on demand. Prints each
    /// dataset's clone method and time, the time until it served, its network namespace and
    /// how to reach its services, and when it expires.
    Create(CreateArgs),
    /// The workspaces, one line each: site, state, services, seed point (snapshot and age),
    /// clone methods, TTL left, priority, resources; then the DR capacity lent per site
    /// against the site's capacity. `--json`: the records, as a JSON array.
    List {
        /// Only the workspaces at this site.
        #[arg(long, value_name = "SITE")]
        site: Option<String>,
        #[command(flatten)]
        spec: SpecArgs,
        #[arg(long)]
        json: bool,
    },
    /// Everything recorded of one workspace: its policy, state, clones, times, namespace.
    Show(Named),
    /// Seed a workspace again from the newest restore point, with the same policy: it is
    /// destroyed and made again (its data is lost, its TTL counts from now).
    Refresh(Named),
    /// Delete a workspace — services, clones (an overlay unmounted), namespace, folder — then
    /// look for anything left of it. Exit 1 when something is left (it is named).
    Delete(Named),
}

/// One workspace, by name: `show`, `refresh`, `delete`.
#[derive(Debug, clap::Args)]
pub struct Named {
    pub name: String,
    /// Its site (default: the spec's declaration, else every site is asked).
    #[arg(long, value_name = "SITE")]
    pub site: Option<String>,
    #[command(flatten)]
    pub spec: SpecArgs,
    #[arg(long)]
    pub json: bool,
}

/// `workspace create`: a declared workspace by name, or one on demand.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The workspace's name: one the spec declares under `workspaces:`, or a new one
    /// (lowercase letters, digits, `-`, `_`) with `--site` and `--services`.
    pub name: String,
    /// On demand: the DR site whose spare capacity it uses (none of its services may be
    /// active there).
    #[arg(long, value_name = "SITE")]
    pub site: Option<String>,
    /// On demand: the services copied, with their datasets (comma-separated).
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub services: Vec<String>,
    /// On demand: how long it lives (default 24h); it is deleted once it expires.
    #[arg(long, value_name = "DURATION", value_parser = crate::common::positive_duration)]
    pub ttl: Option<Duration>,
    /// On demand: which workspaces a failover takes back first, the lowest (default 0).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// On demand: what a failover does to it: `stop` (default; its data kept, restarted after
    /// failback) or `destroy`.
    #[arg(long, value_name = "stop|destroy", value_parser = parse_on_preempt)]
    pub on_preempt: Option<resurgo_spec::OnPreempt>,
    /// On demand: how each dataset is copied from its golden copy: `auto` (default: reflink,
    /// else overlay, else a full copy), `reflink`, `overlay` or `copy`.
    #[arg(long, value_name = "METHOD", value_parser = parse_clone)]
    pub clone: Option<resurgo_spec::CloneMethod>,
    /// On demand: the restore point it starts from: `latest` (default) or an RFC 3339 time
    /// (the newest verified point at or before it).
    #[arg(long, value_name = "latest|TIME", value_parser = parse_seed)]
    pub seed: Option<resurgo_spec::Seed>,
    /// On demand: a shell command run inside it before it is handed out, to mask personal
    /// data (repeatable, run in order; if one fails, the workspace is destroyed).
    #[arg(long, value_name = "CMD")]
    pub mask: Vec<String>,
    /// On demand: who is told when it is preempted or given back (repeatable).
    #[arg(long, value_name = "WHO")]
    pub owner: Vec<String>,
    /// On demand: the CPU it takes of its site's capacity (`500m`, `2`).
    #[arg(long, value_name = "CPU", value_parser = resurgo_spec::Cpu::parse)]
    pub cpu: Option<resurgo_spec::Cpu>,
    /// On demand: the memory it takes of its site's capacity (`512Mi`).
    #[arg(long, value_name = "SIZE", value_parser = resurgo_spec::ByteSize::parse)]
    pub memory: Option<resurgo_spec::ByteSize>,
    /// On demand: restarted after a failback, it is seeded afresh first when its seed is older
    /// than this.
    #[arg(long, value_name = "DURATION", value_parser = crate::common::positive_duration)]
    pub reseed_after: Option<Duration>,
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Print the workspace's record as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_on_preempt(s: &str) -> Result<resurgo_spec::OnPreempt, String> {
    serde_json::from_value(serde_json::Value::String(s.into())).map_err(|_| format!("`{s}`: `stop` or `destroy`"))
}

fn parse_clone(s: &str) -> Result<resurgo_spec::CloneMethod, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("`{s}`: `auto`, `reflink`, `overlay` or `copy`"))
}

fn parse_seed(s: &str) -> Result<resurgo_spec::Seed, String> {
    if s == "latest" {
        return Ok(resurgo_spec::Seed::Latest);
    }
    crate::common::parse_time(s)
        .map(resurgo_spec::Seed::At)
        .map_err(|e| format!("`latest` or an RFC 3339 time: {e}"))
}

impl CreateArgs {
    /// The options given for a workspace on demand, by flag name.
    fn on_demand_flags(&self) -> Vec<&'static str> {
        let given = [
            ("--site", self.site.is_some()),
            ("--services", !self.services.is_empty()),
            ("--ttl", self.ttl.is_some()),
            ("--priority", self.priority.is_some()),
            ("--on-preempt", self.on_preempt.is_some()),
            ("--clone", self.clone.is_some()),
            ("--seed", self.seed.is_some()),
            ("--mask", !self.mask.is_empty()),
            ("--owner", !self.owner.is_empty()),
            ("--cpu", self.cpu.is_some()),
            ("--memory", self.memory.is_some()),
            ("--reseed-after", self.reseed_after.is_some()),
        ];
        given.iter().filter(|(_, on)| *on).map(|(f, _)| *f).collect()
    }

    /// The workspace to make: the spec's declaration of NAME, or the one the options describe.
    /// `Err` is a command line that cannot say which (exit 64), with what to do.
    fn policy(&self, system: &System) -> Result<Workspace, String> {
        let name = &self.name;
        let flags = self.on_demand_flags();
        if let Some(declared) = system.workspaces.get(name) {
            if !flags.is_empty() {
                return Err(format!(
                    "workspace `{name}` is declared in the spec (at site `{}`), so it is made as declared: drop {}, change its declaration under `workspaces:`, or give a workspace on demand another name",
                    declared.site,
                    flags.join(", ")
                ));
            }
            return Ok(declared.clone());
        }
        let declared: Vec<&str> = system.workspaces.keys().map(String::as_str).collect();
        let declared = if declared.is_empty() {
            "the spec declares none".to_string()
        } else {
            format!("declared: {}", declared.join(", "))
        };
        let (Some(site), false) = (&self.site, self.services.is_empty()) else {
            let example_site = system
                .sites
                .keys()
                .nth(1)
                .or_else(|| system.sites.keys().next())
                .map_or("SITE", String::as_str);
            let example_services = system.services.keys().next().map_or("SERVICE", String::as_str);
            return Err(format!(
                "no workspace `{name}` is declared in the spec ({declared}): to make one on demand give at least --site and --services, e.g. `resurgo workspace create {name} --site {example_site} --services {example_services}`, or declare it under `workspaces:`"
            ));
        };
        Ok(Workspace {
            site: site.clone(),
            services: self.services.clone(),
            seed: self.seed.clone().unwrap_or_default(),
            ttl: self.ttl.map(resurgo_spec::Duration),
            priority: self.priority.unwrap_or(0),
            resources: resurgo_spec::Resources {
                cpu: self.cpu.unwrap_or_default(),
                memory: self.memory.unwrap_or_default(),
            },
            on_preempt: self.on_preempt.unwrap_or_default(),
            reseed_after: self.reseed_after.map(resurgo_spec::Duration),
            clone: self.clone.unwrap_or_default(),
            masking: self.mask.clone(),
            owners: self.owner.clone(),
        })
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        WorkspaceCommand::Create(a) => create(a),
        WorkspaceCommand::List { site, spec, json } => list(&spec, site.as_deref(), json),
        WorkspaceCommand::Show(n) => show(&n.spec, &n.name, n.site.as_deref(), n.json),
        WorkspaceCommand::Refresh(n) => refresh(&n.spec, &n.name, n.site.as_deref(), n.json),
        WorkspaceCommand::Delete(n) => delete(&n.spec, &n.name, n.site.as_deref(), n.json),
    }
}

/// Where the command works: the state folder on this machine, or the sites' agents.
enum Place {
    Here(resurgo_controller::Desired),
    Agents(resurgo_controller::Desired, Client),
}

impl Place {
    /// The spec loaded (its errors printed: `None`) and where the workspaces are.
    fn of(spec: &SpecArgs, json: bool, timeout: Duration) -> anyhow::Result<Option<Place>> {
        let Some(desired) = load_or_report(spec, json)? else {
            return Ok(None);
        };
        if desired.loaded.system.api.is_some() {
            let client = crate::remote::client(spec, &desired.loaded.system, timeout)?;
            return Ok(Some(Place::Agents(desired, client)));
        }
        Ok(Some(Place::Here(desired)))
    }

    fn system(&self) -> &System {
        match self {
            Place::Here(d) | Place::Agents(d, _) => &d.loaded.system,
        }
    }
}

fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let Some(place) = Place::of(&args.spec, args.json, MAKE_TIMEOUT)? else {
        return Ok(exit::code(exit::ERROR));
    };
    let system = place.system();
    let name = &args.name;
    let policy = match args.policy(system) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::code(exit::USAGE));
        }
    };
    let problems = resurgo_spec::check_workspace(system, name, &policy);
    if !problems.is_empty() {
        bail!("workspace `{name}` is not made: {}", problems.join("; "));
    }
    let label = format!("make workspace {name} at {}", policy.site);
    let made = match &place {
        Place::Here(desired) => {
            let engine = args.spec.engine()?;
            with_progress(args.json, label, || {
                workspace::create(&engine, &desired.loaded.system, &args.spec.state, name, &policy)
                    .map(|r| report::workspace_record(&r))
                    .map_err(|e| e.to_string())
            })
        }
        Place::Agents(_, client) => {
            let addr = crate::remote::address(system, &policy.site)?;
            let body = resurgo_api::types::WorkspaceRequest {
                name: name.clone(),
                policy: policy.clone(),
            };
            with_progress(args.json, label, || {
                client
                    .post::<_, WorkspaceRecord>(&addr, "/v1/workspaces", &body)
                    .map_err(|e| agent_error(&policy.site, e))
            })
        }
    };
    let record = made.map_err(anyhow::Error::msg)?;
    print_made(&record, system, args.json)?;
    Ok(exit::code(exit::OK))
}

fn list(spec: &SpecArgs, site: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let Some(place) = Place::of(spec, json, crate::remote::TIMEOUT)? else {
        return Ok(exit::code(exit::ERROR));
    };
    let system = place.system();
    if let Some(site) = site.filter(|s| !system.sites.contains_key(*s)) {
        bail!("no site `{site}` in the spec; declared sites: {}", sites_of(system));
    }
    let mut failed = false;
    let records = match &place {
        Place::Here(_) => report::workspace_records(&spec.state, site),
        Place::Agents(_, client) => {
            let mut records = Vec::new();
            for (asked, answer) in crate::remote::workspaces(client, system, site) {
                match answer {
                    Ok(w) => records.extend(w.workspaces),
                    Err(e) => {
                        failed = true;
                        eprintln!("error: the workspaces at `{asked}` are unknown: {e}");
                    }
                }
            }
            records
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else {
        print!("{}", render_list(&records, system, &Paint::stdout()));
    }
    Ok(exit::code(if failed { exit::ERROR } else { exit::OK }))
}

fn show(spec: &SpecArgs, name: &str, site: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let Some(place) = Place::of(spec, json, crate::remote::TIMEOUT)? else {
        return Ok(exit::code(exit::ERROR));
    };
    let record = locate(&place, spec, name, site)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        print!("{}", render_show(&record, place.system(), &Paint::stdout()));
    }
    Ok(exit::code(exit::OK))
}

fn refresh(spec: &SpecArgs, name: &str, site: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let Some(place) = Place::of(spec, json, MAKE_TIMEOUT)? else {
        return Ok(exit::code(exit::ERROR));
    };
    let found = locate(&place, spec, name, site)?;
    let label = format!("refresh workspace {name} at {}", found.site);
    let made = match &place {
        Place::Here(desired) => {
            let engine = spec.engine()?;
            with_progress(json, label, || {
                workspace::refresh(&engine, &desired.loaded.system, &spec.state, name)
                    .map(|r| report::workspace_record(&r))
                    .map_err(|e| e.to_string())
            })
        }
        Place::Agents(desired, client) => {
            let addr = crate::remote::address(&desired.loaded.system, &found.site)?;
            with_progress(json, label, || {
                client
                    .post::<_, WorkspaceRecord>(
                        &addr,
                        &format!("/v1/workspaces/{name}/refresh"),
                        &serde_json::json!({}),
                    )
                    .map_err(|e| agent_error(&found.site, e))
            })
        }
    };
    let record = made.map_err(anyhow::Error::msg)?;
    print_made(&record, place.system(), json)?;
    Ok(exit::code(exit::OK))
}

fn delete(spec: &SpecArgs, name: &str, site: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let Some(place) = Place::of(spec, json, MAKE_TIMEOUT)? else {
        return Ok(exit::code(exit::ERROR));
    };
    let found = locate(&place, spec, name, site)?;
    let deleted = match &place {
        Place::Here(_) => {
            workspace::delete(&spec.state, name)
                .map_err(|e| anyhow::anyhow!("workspace `{name}` at `{}` could not be deleted: {e}", found.site))?;
            WorkspaceDeleted {
                site: found.site.clone(),
                name: name.to_string(),
                leftovers: workspace::leftovers(&spec.state, name, &found.site)
                    .into_iter()
                    .map(|(kind, what, place)| SandboxLeftover { kind, what, place })
                    .collect(),
            }
        }
        Place::Agents(desired, client) => {
            let addr = crate::remote::address(&desired.loaded.system, &found.site)?;
            client
                .delete::<WorkspaceDeleted>(&addr, &format!("/v1/workspaces/{name}"))
                .map_err(|e| anyhow::anyhow!(agent_error(&found.site, e)))?
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&deleted)?);
    } else if deleted.leftovers.is_empty() {
        println!("workspace {name} at {} deleted; nothing is left of it", deleted.site);
    } else {
        println!(
            "workspace {name} at {} deleted, but {} thing(s) are left of it:",
            deleted.site,
            deleted.leftovers.len()
        );
        for l in &deleted.leftovers {
            println!("  {} at {}: {}", l.kind, l.place, l.what);
        }
    }
    Ok(exit::code(if deleted.leftovers.is_empty() {
        exit::OK
    } else {
        exit::ERROR
    }))
}

/// Workspace `name`'s record: from the state folder here, or from the agent of its site —
/// `site` if given, else the spec's declaration, else every agent is asked.
fn locate(place: &Place, spec: &SpecArgs, name: &str, site: Option<&str>) -> anyhow::Result<WorkspaceRecord> {
    let system = place.system();
    if let Some(site) = site.filter(|s| !system.sites.contains_key(*s)) {
        bail!("no site `{site}` in the spec; declared sites: {}", sites_of(system));
    }
    match place {
        Place::Here(_) => workspace::find(&spec.state, name)
            .filter(|r| site.is_none_or(|s| r.site == s))
            .map(|r| report::workspace_record(&r))
            .with_context(|| {
                format!(
                    "no workspace `{name}`{} in the state folder {} (`resurgo workspace list` shows them)",
                    site.map(|s| format!(" at `{s}`")).unwrap_or_default(),
                    spec.state.display()
                )
            }),
        Place::Agents(_, client) => {
            let declared = system.workspaces.get(name).map(|w| w.site.as_str());
            let asked: Vec<&str> = match site.or(declared) {
                Some(s) => vec![s],
                None => system.sites.keys().map(String::as_str).collect(),
            };
            let mut unknown = Vec::new();
            for s in &asked {
                let addr = crate::remote::address(system, s)?;
                match client.get::<WorkspaceRecord>(&addr, &format!("/v1/workspaces/{name}")) {
                    Ok(record) => return Ok(record),
                    Err(ClientError::Refused { status: 404, .. }) => {}
                    Err(e) => unknown.push(format!("`{s}`: {e}")),
                }
            }
            let at = asked.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ");
            if unknown.is_empty() {
                bail!("no workspace `{name}` at {at} (`resurgo workspace list` shows them)");
            }
            bail!(
                "workspace `{name}` was not found, and not every site could be asked: {}",
                unknown.join("; ")
            )
        }
    }
}

/// An agent's refusal or silence, naming the site.
fn agent_error(site: &str, e: ClientError) -> String {
    match e {
        ClientError::Refused { message, status, .. } => format!("`{site}`'s agent refused (HTTP {status}): {message}"),
        other => format!("`{site}`'s agent: {other}"),
    }
}

/// Runs `work`, with a spinner and the time it takes on a terminal (and nothing on stdout
/// otherwise, so `--json` prints only the record).
fn with_progress<T>(json: bool, label: String, work: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    if json || !std::io::stderr().is_terminal() {
        return work();
    }
    let step = crate::report::Reporter::new(false).step(label);
    let result = work();
    match &result {
        Ok(_) => step.done("serving", serde_json::Value::Null),
        Err(e) => step.failed(e),
    }
    result
}

fn sites_of(system: &System) -> String {
    system.sites.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn time_of(unix: i64) -> String {
    resurgo_controller::events::format_rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64))
}

/// A duration for people: `45s`, `12m`, `3h 20m`, `2d 4h`.
pub fn seconds_words(s: u64) -> String {
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// A site's lent capacity: `b lends 2 workspaces cpu 1.5 of 8, memory 1.0 GiB of 8.0 GiB`.
pub fn lent_words(l: &CapacityLent) -> String {
    let of = |cap: Option<String>| cap.map(|c| format!(" of {c}")).unwrap_or_default();
    format!(
        "{} lends {} workspace{}: cpu {}{}, memory {}{}",
        l.site,
        l.workspaces,
        if l.workspaces == 1 { "" } else { "s" },
        l.cpu,
        of(l.capacity_cpu.map(|c| c.to_string())),
        crate::report::size(l.memory_bytes),
        of(l.capacity_memory_bytes.map(crate::report::size)),
    )
}

/// How to reach a workspace's services: each at the site's address inside the namespace.
fn reach_lines(record: &WorkspaceRecord, system: &System) -> Vec<String> {
    let mut lines = Vec::new();
    if record.netns.is_empty() {
        return lines;
    }
    let address = system.sites.get(&record.site).map(|s| s.address);
    for service in &record.policy.services {
        let ports = system.services.get(service).map(|s| s.ports.as_slice()).unwrap_or(&[]);
        match (address, ports.first()) {
            (Some(a), Some(_)) => {
                let at: Vec<String> = ports
                    .iter()
                    .map(|p| std::net::SocketAddr::new(a, *p).to_string())
                    .collect();
                lines.push(format!("{service} at {} inside it", at.join(", ")));
            }
            _ => lines.push(format!("{service} (no port declared)")),
        }
    }
    lines.push(format!(
        "reach them from the site's host with `ip netns exec {} COMMAND` (e.g. `ip netns exec {} sh`)",
        record.netns, record.netns
    ));
    lines
}

/// What `create` and `refresh` print.
fn print_made(record: &WorkspaceRecord, system: &System, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(record)?);
        return Ok(());
    }
    let paint = Paint::stdout();
    let ready = record
        .ready_s
        .map(|s| format!(", serving {s:.2} s after it was asked for"))
        .unwrap_or_default();
    println!(
        "{}",
        paint.bold(&format!(
            "workspace {} at {}: {}{ready}",
            record.name, record.site, record.state
        ))
    );
    let now = now_unix();
    for c in &record.clones {
        println!(
            "  {}: snapshot {} ({} old), cloned by {} in {:.3} s ({})",
            c.dataset,
            c.snapshot,
            seconds_words((now - c.taken_unix).max(0) as u64),
            c.method,
            c.took_s,
            crate::report::size(c.bytes)
        );
    }
    println!("  namespace {}", record.netns);
    for line in reach_lines(record, system) {
        println!("  {line}");
    }
    println!(
        "  expires {} (in {}); `resurgo workspace delete {}` ends it sooner",
        time_of(record.expires_unix),
        seconds_words((record.expires_unix - now).max(0) as u64),
        record.name
    );
    Ok(())
}

/// The table `list` prints, and the capacity lent per site.
pub fn render_list(records: &[WorkspaceRecord], system: &System, paint: &Paint) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if records.is_empty() {
        let _ = writeln!(out, "no workspaces");
        return out;
    }
    let now = now_unix();
    let header = [
        "NAME",
        "SITE",
        "STATE",
        "SERVICES",
        "SEED",
        "METHOD",
        "TTL LEFT",
        "PRIORITY",
        "RESOURCES",
    ];
    let mut rows: Vec<[String; 9]> = Vec::new();
    for r in records {
        let status = report::workspace_status(r, now);
        let seed = if status.points.is_empty() {
            "-".to_string()
        } else {
            status
                .points
                .iter()
                .map(|p| format!("{} ({})", p.snapshot, seconds_words(p.age_seconds.max(0) as u64)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut methods: Vec<&str> = status.points.iter().map(|p| p.method.as_str()).collect();
        methods.sort_unstable();
        methods.dedup();
        rows.push([
            r.name.clone(),
            r.site.clone(),
            r.state.clone(),
            r.policy.services.join(","),
            seed,
            if methods.is_empty() {
                "-".into()
            } else {
                methods.join(",")
            },
            seconds_words(status.ttl_left_seconds),
            r.policy.priority.to_string(),
            format!("cpu {}, mem {}", r.policy.resources.cpu, r.policy.resources.memory),
        ]);
    }
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let _ = writeln!(out, "{}", paint.bold(&line(&header.map(String::from))));
    for row in &rows {
        let _ = writeln!(out, "{}", line(row));
    }
    let statuses: Vec<_> = records.iter().map(|r| report::workspace_status(r, now)).collect();
    for l in report::capacity_lent(system, &statuses) {
        let _ = writeln!(out, "{}", lent_words(&l));
    }
    out
}

/// Everything in a workspace's record, for people.
pub fn render_show(r: &WorkspaceRecord, system: &System, paint: &Paint) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let now = now_unix();
    let p = &r.policy;
    let state = match r.state.as_str() {
        "ready" => paint.green("ready"),
        "failed" => paint.red("failed"),
        other => paint.yellow(other),
    };
    let _ = writeln!(out, "{}", paint.bold(&format!("workspace {} at {}", r.name, r.site)));
    let _ = writeln!(out, "  state         {state}");
    if let Some(d) = &r.detail {
        let _ = writeln!(out, "  detail        {d}");
    }
    let _ = writeln!(out, "  services      {}", p.services.join(", "));
    let seed = match &p.seed {
        resurgo_spec::Seed::Latest => "latest".to_string(),
        resurgo_spec::Seed::At(t) => format!("the newest point at or before {t}"),
    };
    let _ = writeln!(out, "  seed          {seed}");
    let _ = writeln!(out, "  created       {}", time_of(r.created_unix));
    let _ = writeln!(
        out,
        "  seeded        {} ({} ago)",
        time_of(r.seeded_unix),
        seconds_words((now - r.seeded_unix).max(0) as u64)
    );
    let _ = writeln!(
        out,
        "  expires       {} (ttl {}, {} left)",
        time_of(r.expires_unix),
        resurgo_spec::Duration(p.ttl()),
        seconds_words((r.expires_unix - now).max(0) as u64)
    );
    if let Some(s) = r.ready_s {
        let _ = writeln!(out, "  served after  {s:.2} s");
    }
    let _ = writeln!(out, "  priority      {} (the lowest is taken back first)", p.priority);
    let _ = writeln!(
        out,
        "  resources     cpu {}, memory {}",
        p.resources.cpu, p.resources.memory
    );
    let on_preempt = match p.on_preempt {
        resurgo_spec::OnPreempt::Stop => "stop (its data kept, restarted after failback)",
        resurgo_spec::OnPreempt::Destroy => "destroy",
    };
    let _ = writeln!(out, "  on preempt    {on_preempt}");
    if let Some(d) = p.reseed_after {
        let _ = writeln!(out, "  reseed after  {d}");
    }
    let clone = serde_json::to_value(p.clone)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let _ = writeln!(out, "  clone         {clone}");
    for (i, m) in p.masking.iter().enumerate() {
        let _ = writeln!(out, "  masking {}     {m}", i + 1);
    }
    if !p.owners.is_empty() {
        let _ = writeln!(out, "  owners        {}", p.owners.join(", "));
    }
    if !r.netns.is_empty() {
        let _ = writeln!(out, "  namespace     {}", r.netns);
        for line in reach_lines(r, system) {
            let _ = writeln!(out, "                {line}");
        }
    }
    for c in &r.clones {
        let _ = writeln!(out, "  dataset {} ({})", paint.bold(&c.dataset), c.kind);
        let _ = writeln!(
            out,
            "    snapshot    {} taken {} ({} old)",
            c.snapshot,
            time_of(c.taken_unix),
            seconds_words((now - c.taken_unix).max(0) as u64)
        );
        let _ = writeln!(
            out,
            "    clone       {} in {:.3} s, {}",
            c.method,
            c.took_s,
            crate::report::size(c.bytes)
        );
        let _ = writeln!(out, "    path        {}", c.path);
        let _ = writeln!(out, "    golden      {}", c.golden);
    }
    out
}
