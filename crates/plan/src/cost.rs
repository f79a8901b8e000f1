//! The cost of DR (DESIGN §2.3, issue 12): what the DR posture costs per month, per site and
//! per strategy, from the spec (the standby capacity kept running), the measured figures
//! (repository bytes stored, bytes replicated, drill hours) and the user's unit prices — and,
//! for each dataset, the other strategy (backup ↔ standby) with its cost and its RPO/RTO.
//!
//! Pure: the figures are measured at the edges (`controller/src/cost.rs`) and handed in as
//! [`Measured`]; nothing here reads a clock, a file or a repository.
//!
//! The model, in words (docs/cost.md says the same for users):
//! - **Backups** (both strategies: a standby dataset is backed up too): the bytes each site's
//!   repository stores of the dataset × that site's storage price; the bytes replicated to
//!   other sites per month × the sending site's transfer price.
//! - **Standby** (`strategy: standby`): the service's resources kept running at its first
//!   standby site for the whole month (cpu × core-hour, memory × GiB-hour; once per service,
//!   however many of its datasets are warm), the standby's copy of the data (the size of its
//!   newest backup) × storage, and its stream (as much again as its replication carries).
//! - **Drills**: people's hours (the drills of the last year, per month) × the drill-hour price
//!   of the drill's DR site, and the scope's services run there for as long (cpu, memory).
//! - **Repository**: what a repository stores beyond the declared datasets' backups (indexes,
//!   keys, data of datasets no longer declared).
//!
//! A price that is missing for something with a quantity is *unpriced*: its line has no cost,
//! it is named in [`CostReport::unpriced`], and the total says it is incomplete. Never 0.

use indexmap::IndexMap;
use resurgo_spec::{DatasetKind, PgMethod, Prices, Strategy, System};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the `resurgo cost --json` / `GET /v1/cost` document; bumped only on an
/// incompatible change.
pub const COST_FORMAT_VERSION: u32 = 1;

/// Hours in a month: a year's 8,760 over 12.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// Days in a month, as [`HOURS_PER_MONTH`] counts it.
pub const DAYS_PER_MONTH: f64 = HOURS_PER_MONTH / 24.0;

/// How fast a restore is assumed to read when no run has measured one: 100 MiB/s.
pub const RESTORE_BYTES_PER_S: f64 = 100.0 * 1024.0 * 1024.0;

/// What a restore takes besides reading its bytes (open the repository, move into place),
/// and what a promotion takes, when no run has measured one (`recovery.rs` estimates the same).
pub const RESTORE_FIXED_S: f64 = 2.0;
pub const PROMOTE_S: f64 = 1.0;

/// What a streaming standby is assumed to lag when its lag was never measured: what is in
/// flight, about a second.
pub const STANDBY_LAG_S: f64 = 1.0;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The figures measured at the sites: what a site's agent answers (`GET /v1/cost` carries its
/// own), and what the CLI merges from every site. Each list names its site, so merging is
/// putting the lists together.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Measured {
    /// Each repository that was measured: what it stores, in all and per dataset.
    pub repositories: Vec<RepositoryBytes>,
    /// Bytes replicated from a site into another's repository, per dataset, over the window
    /// the event log covers (at most 30 days).
    pub replications: Vec<Replicated>,
    /// The drills run in the last year (`drill_window_days`), each with its duration.
    pub drills: Vec<DrillTime>,
    /// How many days the drills were counted over (365).
    pub drill_window_days: f64,
    /// The newest measured promotion or restore of each dataset at each site (from the runs'
    /// journals: failovers, failbacks, live drills).
    pub recoveries: Vec<Recovery>,
    /// The last measured lag of each warm standby.
    pub standby_lag: Vec<StandbyLag>,
}

impl Measured {
    /// Puts another site's figures beside these (a repository, a run or a drill measured by
    /// two sides counts once).
    pub fn merge(&mut self, other: Measured) {
        for r in other.repositories {
            if !self.repositories.iter().any(|m| m.site == r.site) {
                self.repositories.push(r);
            }
        }
        for r in other.replications {
            if !self
                .replications
                .iter()
                .any(|m| (&m.dataset, &m.from, &m.to) == (&r.dataset, &r.from, &r.to))
            {
                self.replications.push(r);
            }
        }
        for d in other.drills {
            if !self.drills.iter().any(|m| m.run == d.run) {
                self.drills.push(d);
            }
        }
        self.drill_window_days = self.drill_window_days.max(other.drill_window_days);
        for r in other.recoveries {
            match self
                .recoveries
                .iter_mut()
                .find(|m| (&m.dataset, &m.site, m.action) == (&r.dataset, &r.site, r.action))
            {
                Some(m) if m.finished < r.finished => *m = r,
                Some(_) => {}
                None => self.recoveries.push(r),
            }
        }
        for l in other.standby_lag {
            if !self
                .standby_lag
                .iter()
                .any(|m| (&m.dataset, &m.site) == (&l.dataset, &l.site))
            {
                self.standby_lag.push(l);
            }
        }
    }
}

/// What one site's repository stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RepositoryBytes {
    /// The site whose repository it is.
    pub site: String,
    /// Every byte its objects take (snapshot store and log archive); null when it could not
    /// be measured (then `error` says why).
    pub bytes: Option<u64>,
    /// Why it could not be measured.
    pub error: Option<String>,
    /// What it stores of each dataset.
    pub datasets: Vec<DatasetBytes>,
}

/// What a repository stores of one dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DatasetBytes {
    /// The dataset's name in the spec.
    pub dataset: String,
    /// What its snapshots added to the repository (after deduplication and compression),
    /// plus its archived log segments.
    pub stored_bytes: u64,
    /// The size of the data its newest snapshot holds (what a restore reads, and what a
    /// standby keeps).
    pub data_bytes: u64,
    /// How many snapshots of it the repository holds.
    pub snapshots: u64,
}

/// Bytes one site replicated into another's repository, for one dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Replicated {
    /// The dataset's name in the spec.
    pub dataset: String,
    /// The site that sent them (where its backups are taken).
    pub from: String,
    /// The site whose repository received them.
    pub to: String,
    /// Bytes copied over the window.
    pub bytes: u64,
    /// Replications counted.
    pub replications: u64,
    /// Of those, how many recorded no byte count (older events): counted as 0 bytes.
    pub unmeasured: u64,
    /// The window, in days: 30, or less when the event log is younger.
    pub days: f64,
}

/// One drill run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DrillTime {
    /// The run's id.
    pub run: String,
    /// The drill's name in the spec.
    pub drill: String,
    /// When it started (RFC 3339).
    pub started: String,
    /// How long it ran, in hours (from its start to its end).
    pub hours: f64,
}

/// How to bring a dataset's data at a failover's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecoveryAction {
    /// A warm standby was promoted.
    Promote,
    /// The newest point was restored from the target's repository.
    Restore,
}

/// A measured promotion or restore: a step of a run, with the run's RTO and RPO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Recovery {
    /// The dataset's name in the spec.
    pub dataset: String,
    /// The site it was brought to.
    pub site: String,
    /// Promoted or restored.
    pub action: RecoveryAction,
    /// How long the step took, in seconds.
    pub seconds: f64,
    /// The run it was a step of.
    pub run: String,
    /// When the step finished (RFC 3339).
    pub finished: String,
    /// The run's measured RTO, in seconds (null: not measured).
    pub rto_s: Option<f64>,
    /// The run's measured RPO, in seconds (null: not measured).
    pub rpo_s: Option<f64>,
}

/// The last measured lag of a warm standby.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StandbyLag {
    /// The dataset's name in the spec.
    pub dataset: String,
    /// The site that keeps the standby.
    pub site: String,
    /// How far behind it was, in seconds of writes (null: not known).
    pub seconds: Option<f64>,
}

/// What a DR posture costs per month, and what each dataset's other strategy would cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CostReport {
    /// The version of this format; 1 so far.
    pub format_version: u32,
    /// The system's name in the spec.
    pub system: String,
    /// The prices' currency; null when no prices were given (every line is then unpriced).
    pub currency: Option<String>,
    /// Hours a month counts (730): standby capacity runs all of them.
    pub hours_per_month: f64,
    /// Every cost, one line per item, dataset or service, and site.
    pub lines: Vec<CostLine>,
    /// The monthly cost at each site.
    pub sites: Vec<Subtotal>,
    /// The monthly cost of each part of the posture: `backup`, `standby`, `drills`,
    /// `repository`.
    pub strategies: Vec<Subtotal>,
    /// The whole posture's monthly cost, of what is priced.
    pub total: Total,
    /// What costs something but has no price, as `price at site` (e.g. `cpu_core_hour at b`).
    pub unpriced: Vec<String>,
    /// Each dataset: its strategy and the other one, each with its cost, RPO and RTO.
    pub datasets: Vec<DatasetCost>,
    /// Things to know about the figures (a repository that did not answer, a service that
    /// declares no resources).
    pub notes: Vec<String>,
    /// The measured figures the costs were computed from.
    pub measured: Measured,
}

/// What a cost line is part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// Datasets with `strategy: backup`.
    Backup,
    /// Datasets with `strategy: standby`, and their services' standby instances.
    Standby,
    /// Drills.
    Drills,
    /// What repositories store beyond the declared datasets' backups.
    Repository,
}

impl Part {
    fn of(strategy: Strategy) -> Part {
        match strategy {
            Strategy::Backup => Part::Backup,
            Strategy::Standby => Part::Standby,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Part::Backup => "backup",
            Part::Standby => "standby",
            Part::Drills => "drills",
            Part::Repository => "repository",
        }
    }
}

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Item {
    /// CPU of a standby instance kept running (core-hours).
    StandbyCpu,
    /// Memory of a standby instance kept running (GiB-hours).
    StandbyMemory,
    /// A standby's copy of its data (GiB-months).
    StandbyStorage,
    /// A standby's replication stream (GiB).
    StandbyTransfer,
    /// Backups kept in a repository (GiB-months).
    Storage,
    /// Backups replicated to another site (GiB).
    Transfer,
    /// People's time in drills (hours).
    DrillPeople,
    /// CPU a drill's services used at the DR site (core-hours).
    DrillCpu,
    /// Memory a drill's services used at the DR site (GiB-hours).
    DrillMemory,
}

impl Item {
    /// The price that prices it.
    pub fn price_name(self) -> &'static str {
        match self {
            Item::StandbyCpu | Item::DrillCpu => "cpu_core_hour",
            Item::StandbyMemory | Item::DrillMemory => "memory_gib_hour",
            Item::StandbyStorage | Item::Storage => "storage_gib_month",
            Item::StandbyTransfer | Item::Transfer => "transfer_gib",
            Item::DrillPeople => "drill_hour",
        }
    }

    /// The unit its quantity is in.
    pub fn unit(self) -> &'static str {
        match self {
            Item::StandbyCpu | Item::DrillCpu => "core-hour",
            Item::StandbyMemory | Item::DrillMemory => "GiB-hour",
            Item::StandbyStorage | Item::Storage => "GiB-month",
            Item::StandbyTransfer | Item::Transfer => "GiB",
            Item::DrillPeople => "hour",
        }
    }
}

/// Where a quantity comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// Declared in the spec (a service's resources).
    Spec,
    /// Measured at the sites (a repository's bytes, the event log, drill reports).
    Measured,
    /// Derived from a measure by an assumption the line's detail states.
    Estimated,
}

/// One monthly cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CostLine {
    /// The site it is paid at; null when it is at no one site (a drill no longer declared).
    pub site: Option<String>,
    /// What it is part of.
    pub part: Part,
    /// What is counted.
    pub item: Item,
    /// The dataset it is for, if any.
    pub dataset: Option<String>,
    /// The service it is for, if any.
    pub service: Option<String>,
    /// How much per month, in `unit`.
    pub quantity: f64,
    /// The unit of `quantity` (`core-hour`, `GiB-hour`, `GiB-month`, `GiB`, `hour`).
    pub unit: String,
    /// The unit price at the site; null when none is given (unpriced).
    pub price: Option<f64>,
    /// quantity × price; null when unpriced.
    pub cost: Option<f64>,
    /// Where the quantity comes from.
    pub basis: Basis,
    /// How it was counted, in words.
    pub detail: String,
}

/// A sum of cost lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Subtotal {
    /// The site or part summed (`-` for lines at no one site).
    pub name: String,
    /// The monthly cost of its priced lines.
    pub cost: f64,
    /// Whether every line with a quantity is priced (else `cost` is a lower bound).
    pub complete: bool,
}

/// The whole posture's monthly cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Total {
    /// The monthly cost of every priced line.
    pub cost: f64,
    /// Whether every line with a quantity is priced (else `cost` is a lower bound).
    pub complete: bool,
}

/// One dataset's strategy and the other one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DatasetCost {
    /// The dataset's name in the spec.
    pub dataset: String,
    /// The service that owns it.
    pub service: String,
    /// Its RPO objective in seconds (its own, else the system's); null when none is declared.
    pub rpo_objective_s: Option<f64>,
    /// The system's RTO objective in seconds; null when none is declared.
    pub rto_objective_s: Option<f64>,
    /// The strategy the spec declares.
    pub current: StrategyCost,
    /// The other strategy; null when the dataset cannot have it (`unavailable` says why).
    pub alternative: Option<StrategyCost>,
    /// Why there is no alternative.
    pub unavailable: Option<String>,
}

/// One strategy for one dataset: its monthly cost, RPO and RTO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StrategyCost {
    /// `backup` or `standby`.
    pub strategy: Strategy,
    /// Its monthly cost, of what is priced (with a standby, the service's whole standby
    /// instance, even when the service has other warm datasets).
    pub monthly_cost: f64,
    /// Whether every part of it is priced (else `monthly_cost` is a lower bound).
    pub complete: bool,
    /// For the alternative: `cheaper`, `dearer` or `same` than the current strategy.
    pub compared: Option<Compared>,
    /// For the alternative: its monthly cost minus the current one's (null when a part that
    /// differs is unpriced).
    pub difference: Option<f64>,
    /// The data it would lose, in seconds (null: unknown).
    pub rpo_s: Option<f64>,
    /// How the RPO was found, in words.
    pub rpo_basis: String,
    /// The time until the data is back at the DR site, in seconds: detection and decision, then
    /// the promotion or the restore (null: unknown).
    pub rto_s: Option<f64>,
    /// How the RTO was found, in words.
    pub rto_basis: String,
}

/// How an alternative's cost compares with the current strategy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compared {
    Cheaper,
    Dearer,
    Same,
}

/// The unit price of `item` at `site`: the site's own, else the system's.
pub fn price(prices: Option<&Prices>, site: Option<&str>, item: Item) -> Option<f64> {
    let prices = prices?;
    let own = site.and_then(|s| prices.sites.get(s));
    let pick = |p: &resurgo_spec::SitePrices| match item.price_name() {
        "cpu_core_hour" => p.cpu_core_hour,
        "memory_gib_hour" => p.memory_gib_hour,
        "storage_gib_month" => p.storage_gib_month,
        "transfer_gib" => p.transfer_gib,
        _ => p.drill_hour,
    };
    let top = resurgo_spec::SitePrices {
        cpu_core_hour: prices.cpu_core_hour,
        memory_gib_hour: prices.memory_gib_hour,
        storage_gib_month: prices.storage_gib_month,
        transfer_gib: prices.transfer_gib,
        drill_hour: prices.drill_hour,
    };
    own.and_then(pick).or_else(|| pick(&top)).map(|p| p.0)
}

struct Lines<'a> {
    prices: Option<&'a Prices>,
    out: Vec<CostLine>,
}

impl Lines<'_> {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        site: Option<&str>,
        part: Part,
        item: Item,
        dataset: Option<&str>,
        service: Option<&str>,
        quantity: f64,
        basis: Basis,
        detail: String,
    ) {
        let price = price(self.prices, site, item);
        self.out.push(CostLine {
            site: site.map(str::to_string),
            part,
            item,
            dataset: dataset.map(str::to_string),
            service: service.map(str::to_string),
            quantity,
            unit: item.unit().into(),
            price,
            cost: price.map(|p| p * quantity),
            basis,
            detail,
        });
    }
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / GIB
}

fn bytes_text(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.2} GiB", b / GIB)
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else {
        format!("{bytes} bytes")
    }
}

/// The site that keeps (or would keep) a standby of `dataset`: its service's first standby site.
fn standby_site<'a>(system: &'a System, dataset: &str) -> Option<&'a str> {
    let ds = system.datasets.get(dataset)?;
    let svc = system.services.get(&ds.service)?;
    svc.standby.first().map(String::as_str)
}

/// Bytes replicated per month of `dataset`, per (from, to).
fn monthly_replication<'a>(measured: &'a Measured, dataset: &'a str) -> impl Iterator<Item = (&'a Replicated, f64)> {
    measured
        .replications
        .iter()
        .filter(move |r| r.dataset == dataset)
        .map(|r| (r, r.bytes as f64 * DAYS_PER_MONTH / r.days.max(1.0)))
}

/// The size of a dataset's data: its newest snapshot's, at any site.
fn data_bytes(measured: &Measured, dataset: &str) -> Option<u64> {
    measured
        .repositories
        .iter()
        .flat_map(|r| &r.datasets)
        .filter(|d| d.dataset == dataset && d.snapshots > 0)
        .map(|d| d.data_bytes)
        .max()
}

/// The lines of one dataset under `strategy` (the service's standby instance apart).
fn dataset_lines(system: &System, measured: &Measured, lines: &mut Lines, name: &str, strategy: Strategy) {
    let Some(ds) = system.datasets.get(name) else { return };
    let part = Part::of(strategy);
    let service = Some(ds.service.as_str());
    for repo in &measured.repositories {
        let Some(held) = repo.datasets.iter().find(|d| d.dataset == name) else {
            continue;
        };
        lines.push(
            Some(&repo.site),
            part,
            Item::Storage,
            Some(name),
            service,
            gib(held.stored_bytes),
            Basis::Measured,
            format!(
                "{} in {}'s repository ({} snapshots)",
                bytes_text(held.stored_bytes),
                repo.site,
                held.snapshots
            ),
        );
    }
    let mut stream: Option<f64> = None;
    let standby_at = standby_site(system, name);
    for (r, monthly) in monthly_replication(measured, name) {
        let mut detail = format!(
            "{} replicated to {} in {} replications over {:.0} days",
            bytes_text(r.bytes),
            r.to,
            r.replications,
            r.days
        );
        if r.unmeasured > 0 {
            detail.push_str(&format!(" ({} recorded no size: counted as 0)", r.unmeasured));
        }
        lines.push(
            Some(&r.from),
            part,
            Item::Transfer,
            Some(name),
            service,
            monthly / GIB,
            Basis::Measured,
            detail,
        );
        if Some(r.to.as_str()) == standby_at || stream.is_none() {
            stream = Some(monthly);
        }
    }
    if strategy != Strategy::Standby {
        return;
    }
    let Some(at) = standby_at else { return };
    let (size, size_detail) = match data_bytes(measured, name) {
        Some(b) => (
            gib(b),
            format!("the standby's copy: {}, as its newest backup", bytes_text(b)),
        ),
        None => (0.0, "the standby's copy: size unknown (no backup measured)".to_string()),
    };
    lines.push(
        Some(at),
        part,
        Item::StandbyStorage,
        Some(name),
        service,
        size,
        Basis::Estimated,
        size_detail,
    );
    let (monthly, detail) = match stream {
        Some(m) => (
            m,
            "the standby's stream: as much as its replication carries".to_string(),
        ),
        None => (
            0.0,
            "the standby's stream: unknown (no replication measured)".to_string(),
        ),
    };
    lines.push(
        Some(&system.services[&ds.service].site),
        part,
        Item::StandbyTransfer,
        Some(name),
        service,
        monthly / GIB,
        Basis::Estimated,
        detail,
    );
}

/// The lines of `service`'s standby instance at its first standby site, kept running all month.
fn standby_instance_lines(system: &System, lines: &mut Lines, service: &str) {
    let Some(svc) = system.services.get(service) else {
        return;
    };
    let Some(at) = svc.standby.first() else { return };
    let cores = svc.resources.cpu.0 as f64 / 1000.0;
    let memory = gib(svc.resources.memory.0);
    let detail = |what: String| format!("{what} of {service}'s standby instance at {at}, all month");
    lines.push(
        Some(at),
        Part::Standby,
        Item::StandbyCpu,
        None,
        Some(service),
        cores * HOURS_PER_MONTH,
        Basis::Spec,
        detail(format!("{} cores", svc.resources.cpu)),
    );
    lines.push(
        Some(at),
        Part::Standby,
        Item::StandbyMemory,
        None,
        Some(service),
        memory * HOURS_PER_MONTH,
        Basis::Spec,
        detail(format!("{} memory", svc.resources.memory)),
    );
}

/// Services with a warm standby under the spec's strategies.
fn warm_services(system: &System) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for ds in system.datasets.values() {
        let has_site = system.services.get(&ds.service).is_some_and(|s| !s.standby.is_empty());
        if ds.strategy == Strategy::Standby && has_site && !out.contains(&ds.service.as_str()) {
            out.push(&ds.service);
        }
    }
    out
}

/// The drills' lines: people's time and the scope's services at the drill's DR site.
fn drill_lines(system: &System, measured: &Measured, lines: &mut Lines) {
    let months = (measured.drill_window_days / DAYS_PER_MONTH).max(1.0);
    let mut per_drill: IndexMap<&str, (f64, usize)> = IndexMap::new();
    for d in &measured.drills {
        let e = per_drill.entry(d.drill.as_str()).or_default();
        e.0 += d.hours;
        e.1 += 1;
    }
    for (drill, (hours, runs)) in per_drill {
        let monthly = hours / months;
        let declared = system.drills.get(drill);
        let services: Vec<String> = declared.map(|d| d.scope.services(system)).unwrap_or_default();
        // Where the drill's failover or sandbox runs: the first standby site of its services.
        let site = services
            .iter()
            .filter_map(|s| system.services.get(s)?.standby.first())
            .next()
            .map(String::as_str);
        let over = format!(
            "drill {drill}: {runs} runs, {hours:.2} hours over {:.0} days",
            measured.drill_window_days
        );
        lines.push(
            site,
            Part::Drills,
            Item::DrillPeople,
            None,
            None,
            monthly,
            Basis::Measured,
            format!("{over}, per month"),
        );
        let (cores, memory) = services
            .iter()
            .filter_map(|s| system.services.get(s))
            .fold((0.0, 0.0), |(c, m), s| {
                (c + s.resources.cpu.0 as f64 / 1000.0, m + gib(s.resources.memory.0))
            });
        if site.is_some() && (cores > 0.0 || memory > 0.0) {
            let words = format!("{over}: its services' resources at the DR site for as long");
            lines.push(
                site,
                Part::Drills,
                Item::DrillCpu,
                None,
                None,
                cores * monthly,
                Basis::Estimated,
                words.clone(),
            );
            lines.push(
                site,
                Part::Drills,
                Item::DrillMemory,
                None,
                None,
                memory * monthly,
                Basis::Estimated,
                words,
            );
        }
    }
}

fn sum(lines: &[CostLine]) -> (f64, bool) {
    // Folded from +0.0: an empty `sum()` of floats is -0.0, which reads "-0.00".
    let cost = lines.iter().filter_map(|l| l.cost).fold(0.0, |a, b| a + b);
    let complete = lines.iter().all(|l| l.cost.is_some() || l.quantity == 0.0);
    (cost, complete)
}

fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

/// Detection and decision: what an automatic failover waits before it acts (the spec's
/// timing: heartbeats missed, then the promotion delay).
fn detection_s(system: &System) -> f64 {
    let t = system.failover.timing();
    secs(t.heartbeat_interval) * f64::from(t.suspect_after) + secs(t.promotion_delay)
}

/// The newest measured recovery of `dataset` by `action`.
fn last_recovery<'a>(measured: &'a Measured, dataset: &str, action: RecoveryAction) -> Option<&'a Recovery> {
    measured
        .recoveries
        .iter()
        .filter(|r| r.dataset == dataset && r.action == action)
        .max_by(|a, b| a.finished.cmp(&b.finished))
}

/// RPO and RTO of `dataset` under `strategy`, measured where a run measured them, else
/// estimated from the spec and the measured sizes.
fn objectives(
    system: &System,
    measured: &Measured,
    name: &str,
    strategy: Strategy,
) -> (Option<f64>, String, Option<f64>, String) {
    let ds = &system.datasets[name];
    let detect = detection_s(system);
    match strategy {
        Strategy::Standby => {
            let lag = standby_site(system, name).and_then(|site| {
                measured
                    .standby_lag
                    .iter()
                    .find(|l| l.dataset == name && l.site == site)
                    .and_then(|l| l.seconds)
            });
            let last = last_recovery(measured, name, RecoveryAction::Promote);
            let (rpo, rpo_basis) = match (last.and_then(|r| r.rpo_s), lag) {
                (Some(r), _) => (r, format!("measured: run {}", last.map_or("", |l| &l.run))),
                (None, Some(l)) => (l, "measured: the standby's last lag".to_string()),
                (None, None) => (
                    STANDBY_LAG_S,
                    "estimated: a streaming standby loses what is in flight".to_string(),
                ),
            };
            let (rto, rto_basis) = match last {
                Some(r) => match r.rto_s {
                    Some(rto) => (rto, format!("measured: run {}", r.run)),
                    None => (
                        detect + r.seconds,
                        format!(
                            "detection {detect:.0}s + the promotion run {} measured ({:.1}s)",
                            r.run, r.seconds
                        ),
                    ),
                },
                None => (
                    detect + PROMOTE_S,
                    format!("estimated: detection {detect:.0}s + promotion {PROMOTE_S:.0}s"),
                ),
            };
            (Some(rpo), rpo_basis, Some(rto), rto_basis)
        }
        Strategy::Backup => {
            let last = last_recovery(measured, name, RecoveryAction::Restore);
            let physical =
                ds.kind == DatasetKind::Postgres && ds.method.unwrap_or(PgMethod::Physical) == PgMethod::Physical;
            let (rpo, rpo_basis) = match last.and_then(|r| r.rpo_s.map(|v| (v, r))) {
                Some((v, r)) => (Some(v), format!("measured: run {}", r.run)),
                None if physical => {
                    let every = ds.archive_timeout(system.objectives.rpo);
                    (
                        Some(secs(every)),
                        format!("estimated: its log archive is shipped every {:.0}s", secs(every)),
                    )
                }
                None => match ds.schedule {
                    Some(s) => (Some(secs(s.0)), format!("estimated: a backup every {s}")),
                    None => (None, "unknown: no backup schedule".to_string()),
                },
            };
            let (rto, rto_basis) = match last {
                Some(r) => match r.rto_s {
                    Some(rto) => (Some(rto), format!("measured: run {}", r.run)),
                    None => (
                        Some(detect + r.seconds),
                        format!(
                            "detection {detect:.0}s + the restore run {} measured ({:.1}s)",
                            r.run, r.seconds
                        ),
                    ),
                },
                None => match data_bytes(measured, name) {
                    Some(b) => {
                        let restore = RESTORE_FIXED_S + b as f64 / RESTORE_BYTES_PER_S;
                        (
                            Some(detect + restore),
                            format!(
                                "estimated: detection {detect:.0}s + restoring {} at 100 MiB/s ({restore:.1}s)",
                                bytes_text(b)
                            ),
                        )
                    }
                    None => (None, "unknown: no backup measured to restore".to_string()),
                },
            };
            (rpo, rpo_basis, rto, rto_basis)
        }
    }
}

/// Why `dataset` cannot have `strategy`, if it cannot (the spec's own rules for standbys).
fn unavailable(system: &System, name: &str, strategy: Strategy) -> Option<String> {
    let ds = &system.datasets[name];
    match strategy {
        Strategy::Backup => None,
        Strategy::Standby if ds.kind != DatasetKind::Postgres => {
            Some("only a PostgreSQL dataset keeps a warm standby".into())
        }
        Strategy::Standby if standby_site(system, name).is_none() => Some(format!(
            "service `{}` lists no standby site to keep a standby at",
            ds.service
        )),
        Strategy::Standby => None,
    }
}

/// One dataset under `strategy`: its lines (with its service's standby instance when warm).
fn option_lines(
    system: &System,
    measured: &Measured,
    prices: Option<&Prices>,
    name: &str,
    strategy: Strategy,
) -> Vec<CostLine> {
    let mut lines = Lines {
        prices,
        out: Vec::new(),
    };
    dataset_lines(system, measured, &mut lines, name, strategy);
    if strategy == Strategy::Standby {
        standby_instance_lines(system, &mut lines, &system.datasets[name].service);
    }
    lines.out
}

/// What the DR posture of `system` costs per month at `prices` (none: every line unpriced),
/// from the `measured` figures; and each dataset's other strategy.
pub fn cost(system: &System, prices: Option<&Prices>, measured: &Measured) -> CostReport {
    let mut lines = Lines {
        prices,
        out: Vec::new(),
    };
    let mut notes = Vec::new();
    for (name, ds) in &system.datasets {
        dataset_lines(system, measured, &mut lines, name, ds.strategy);
    }
    for service in warm_services(system) {
        standby_instance_lines(system, &mut lines, service);
        let r = system.services[service].resources;
        if r.cpu.0 == 0 || r.memory.0 == 0 {
            notes.push(format!(
                "service `{service}` declares no {}: its standby instance's {} counts as 0",
                if r.cpu.0 == 0 { "cpu" } else { "memory" },
                if r.cpu.0 == 0 { "cpu" } else { "memory" },
            ));
        }
    }
    drill_lines(system, measured, &mut lines);
    for repo in &measured.repositories {
        match (repo.bytes, &repo.error) {
            (_, Some(e)) => notes.push(format!("the repository of `{}` was not measured: {e}", repo.site)),
            (Some(total), None) => {
                let attributed: u64 = repo.datasets.iter().map(|d| d.stored_bytes).sum();
                let other = total.saturating_sub(attributed);
                if other > 0 {
                    lines.push(
                        Some(&repo.site),
                        Part::Repository,
                        Item::Storage,
                        None,
                        None,
                        gib(other),
                        Basis::Measured,
                        format!(
                            "{} of {}'s repository beyond the datasets' backups (indexes, keys, data of datasets no longer declared; {} in all)",
                            bytes_text(other),
                            repo.site,
                            bytes_text(total)
                        ),
                    );
                }
            }
            (None, None) => {}
        }
    }
    for site in system.sites.keys() {
        let declares = system.sites[site].repository.is_some();
        if declares && !measured.repositories.iter().any(|r| &r.site == site) {
            notes.push(format!(
                "the repository of `{site}` was not measured (its site did not answer)"
            ));
        }
    }
    let lines = lines.out;

    let mut unpriced: Vec<String> = Vec::new();
    for l in lines.iter().filter(|l| l.cost.is_none() && l.quantity > 0.0) {
        let what = format!("{} at {}", l.item.price_name(), l.site.as_deref().unwrap_or("-"));
        if !unpriced.contains(&what) {
            unpriced.push(what);
        }
    }
    let mut site_names: Vec<Option<&str>> = system.sites.keys().map(|s| Some(s.as_str())).collect();
    if lines.iter().any(|l| l.site.is_none()) {
        site_names.push(None);
    }
    let sites = site_names
        .into_iter()
        .map(|site| {
            let mine: Vec<CostLine> = lines.iter().filter(|l| l.site.as_deref() == site).cloned().collect();
            let (cost, complete) = sum(&mine);
            Subtotal {
                name: site.unwrap_or("-").into(),
                cost,
                complete,
            }
        })
        .collect();
    let strategies = [Part::Backup, Part::Standby, Part::Drills, Part::Repository]
        .into_iter()
        .map(|part| {
            let mine: Vec<CostLine> = lines.iter().filter(|l| l.part == part).cloned().collect();
            let (cost, complete) = sum(&mine);
            Subtotal {
                name: part.name().into(),
                cost,
                complete,
            }
        })
        .collect();
    let (total, complete) = sum(&lines);

    let datasets = system
        .datasets
        .iter()
        .map(|(name, ds)| {
            let option = |strategy: Strategy, current: Option<&[CostLine]>| {
                let mine = option_lines(system, measured, prices, name, strategy);
                let (monthly_cost, complete) = sum(&mine);
                let (rpo_s, rpo_basis, rto_s, rto_basis) = objectives(system, measured, name, strategy);
                // A standby's lines are a backup's and more: what differs is the standby's own.
                let (compared, difference) = match current {
                    None => (None, None),
                    Some(current) => {
                        let standby_only = |l: &&CostLine| {
                            matches!(
                                l.item,
                                Item::StandbyCpu | Item::StandbyMemory | Item::StandbyStorage | Item::StandbyTransfer
                            )
                        };
                        let extra: Vec<&CostLine> = if strategy == Strategy::Standby {
                            mine.iter().filter(standby_only).collect()
                        } else {
                            current.iter().filter(standby_only).collect()
                        };
                        let more = extra.iter().any(|l| l.quantity > 0.0);
                        let priced = extra.iter().all(|l| l.cost.is_some() || l.quantity == 0.0);
                        let delta: f64 = extra.iter().filter_map(|l| l.cost).fold(0.0, |a, b| a + b);
                        let sign = if strategy == Strategy::Standby { 1.0 } else { -1.0 };
                        let compared = match (more, strategy) {
                            (false, _) => Compared::Same,
                            (true, Strategy::Standby) => Compared::Dearer,
                            (true, Strategy::Backup) => Compared::Cheaper,
                        };
                        (Some(compared), priced.then_some(sign * delta))
                    }
                };
                (
                    StrategyCost {
                        strategy,
                        monthly_cost,
                        complete,
                        compared,
                        difference,
                        rpo_s,
                        rpo_basis,
                        rto_s,
                        rto_basis,
                    },
                    mine,
                )
            };
            let (current, current_lines) = option(ds.strategy, None);
            let other = match ds.strategy {
                Strategy::Backup => Strategy::Standby,
                Strategy::Standby => Strategy::Backup,
            };
            let why = unavailable(system, name, other);
            let alternative = why.is_none().then(|| option(other, Some(&current_lines)).0);
            DatasetCost {
                dataset: name.clone(),
                service: ds.service.clone(),
                rpo_objective_s: ds.rpo.or(system.objectives.rpo).map(|d| secs(d.0)),
                rto_objective_s: system.objectives.rto.map(|d| secs(d.0)),
                current,
                alternative,
                unavailable: why,
            }
        })
        .collect();

    CostReport {
        format_version: COST_FORMAT_VERSION,
        system: system.name.clone(),
        currency: prices.map(|p| p.currency.clone()),
        hours_per_month: HOURS_PER_MONTH,
        lines,
        sites,
        strategies,
        total: Total { cost: total, complete },
        unpriced,
        datasets,
        notes,
        measured: measured.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resurgo_spec::SourceFile;

    const GIB_U: u64 = 1 << 30;

    fn system(datasets: &str) -> System {
        let text = format!(
            r#"apiVersion: resurgo.dev/v1alpha1
sites:
  a: {{ provider: local, address: 127.0.1.1, capacity: {{ cpu: 8, memory: 16Gi }},
       repository: {{ url: /backups/a, password: {{ env: P }} }} }}
  b: {{ provider: local, address: 127.0.1.2, capacity: {{ cpu: 8, memory: 16Gi }},
       capabilities: [postgres],
       repository: {{ url: /backups/b, password: {{ env: P }} }} }}
services:
  db:
    command: postgres
    site: a
    standby: [b]
    requires: []
    resources: {{ cpu: 2, memory: 4Gi }}
  web:
    command: web
    site: a
    standby: [b]
    resources: {{ cpu: 1, memory: 1Gi }}
datasets:
{datasets}
"#
        );
        let files = vec![SourceFile {
            name: "spec.yaml".into(),
            text,
        }];
        resurgo_spec::load(files, &[])
            .map(|l| l.system)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    const PG_STANDBY: &str = "  orders:\n    service: db\n    type: postgres\n    connection: host=127.0.1.1\n    strategy: standby\n    schedule: 1h\n    rpo: 1m\n";
    const NOTES: &str = "  notes:\n    service: web\n    type: sqlite\n    path: notes.db\n    schedule: 15m\n";

    fn prices(text: &str, system: &System) -> Prices {
        let file = SourceFile {
            name: "prices.yaml".into(),
            text: text.into(),
        };
        resurgo_spec::read_prices(&file, system).unwrap_or_else(|d| panic!("{d}"))
    }

    const ALL: &str = "currency: EUR\ncpu_core_hour: 0.02\nmemory_gib_hour: 0.005\nstorage_gib_month: 0.03\ntransfer_gib: 0.01\ndrill_hour: 80\n";

    fn measured() -> Measured {
        Measured {
            repositories: vec![
                RepositoryBytes {
                    site: "a".into(),
                    bytes: Some(12 * GIB_U),
                    error: None,
                    datasets: vec![
                        DatasetBytes {
                            dataset: "orders".into(),
                            stored_bytes: 8 * GIB_U,
                            data_bytes: 5 * GIB_U,
                            snapshots: 10,
                        },
                        DatasetBytes {
                            dataset: "notes".into(),
                            stored_bytes: 2 * GIB_U,
                            data_bytes: GIB_U,
                            snapshots: 4,
                        },
                    ],
                },
                RepositoryBytes {
                    site: "b".into(),
                    bytes: Some(10 * GIB_U),
                    error: None,
                    datasets: vec![DatasetBytes {
                        dataset: "orders".into(),
                        stored_bytes: 8 * GIB_U,
                        data_bytes: 5 * GIB_U,
                        snapshots: 10,
                    }],
                },
            ],
            replications: vec![Replicated {
                dataset: "orders".into(),
                from: "a".into(),
                to: "b".into(),
                bytes: 15 * GIB_U,
                replications: 30,
                unmeasured: 0,
                days: 15.0,
            }],
            drills: vec![DrillTime {
                run: "r1".into(),
                drill: "gone".into(),
                started: "2026-01-01T00:00:00Z".into(),
                hours: 12.0,
            }],
            drill_window_days: 365.0,
            recoveries: vec![],
            standby_lag: vec![],
        }
    }

    fn line<'a>(r: &'a CostReport, item: Item, site: &str, dataset: Option<&str>) -> &'a CostLine {
        r.lines
            .iter()
            .find(|l| l.item == item && l.site.as_deref() == Some(site) && l.dataset.as_deref() == dataset)
            .unwrap_or_else(|| panic!("no {item:?} at {site} for {dataset:?} in {:#?}", r.lines))
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_standby_datasets_alternative_is_backup_cheaper_with_a_longer_rpo() {
        let sys = system(PG_STANDBY);
        let report = cost(&sys, Some(&prices(ALL, &sys)), &measured());
        let orders = &report.datasets[0];
        assert_eq!(orders.current.strategy, Strategy::Standby);
        let alt = orders.alternative.as_ref().expect("backup is always possible");
        assert_eq!(alt.strategy, Strategy::Backup);
        assert_eq!(alt.compared, Some(Compared::Cheaper));
        assert!(alt.monthly_cost < orders.current.monthly_cost, "{orders:#?}");
        // What backup saves is exactly the standby's own lines: compute, copy, stream.
        let saved = 2.0 * 730.0 * 0.02 + 4.0 * 730.0 * 0.005 + 5.0 * 0.03 + 15.0 * DAYS_PER_MONTH / 15.0 * 0.01;
        assert!(close(alt.difference.unwrap(), -saved), "{alt:#?}");
        assert!(close(orders.current.monthly_cost - alt.monthly_cost, saved));
        // A standby loses what is in flight; backup what its log shipping has not sent (rpo/2).
        assert!(alt.rpo_s.unwrap() > orders.current.rpo_s.unwrap(), "{orders:#?}");
        assert_eq!(alt.rpo_s, Some(30.0));
        assert!(alt.rto_s.unwrap() > orders.current.rto_s.unwrap(), "{orders:#?}");
        assert!(alt.rto_basis.contains("5.00 GiB at 100 MiB/s"), "{}", alt.rto_basis);
    }

    #[test]
    fn a_backup_datasets_alternative_is_standby_dearer_or_unavailable_with_the_reason() {
        let sys = system(&(PG_STANDBY.replace("strategy: standby", "strategy: backup") + NOTES));
        let report = cost(&sys, Some(&prices(ALL, &sys)), &measured());
        let orders = &report.datasets[0];
        let alt = orders.alternative.as_ref().unwrap();
        assert_eq!(
            (alt.strategy, alt.compared),
            (Strategy::Standby, Some(Compared::Dearer))
        );
        assert!(alt.difference.unwrap() > 0.0);
        let notes = &report.datasets[1];
        assert!(notes.alternative.is_none());
        assert_eq!(
            notes.unavailable.as_deref(),
            Some("only a PostgreSQL dataset keeps a warm standby")
        );
        assert_eq!(notes.current.rpo_s, Some(900.0), "{notes:#?}");
        // Nothing is warm: no standby line at all.
        assert!(
            report.lines.iter().all(|l| l.part != Part::Standby),
            "{:#?}",
            report.lines
        );
    }

    #[test]
    fn figures_add_up_per_line_site_part_and_total() {
        let sys = system(&(PG_STANDBY.to_string() + NOTES));
        let report = cost(&sys, Some(&prices(ALL, &sys)), &measured());
        let storage = line(&report, Item::Storage, "b", Some("orders"));
        assert!(close(storage.cost.unwrap(), 8.0 * 0.03));
        let transfer = line(&report, Item::Transfer, "a", Some("orders"));
        // 15 GiB over 15 days is ~30.4 GiB a month, paid where it leaves.
        assert!(close(transfer.quantity, DAYS_PER_MONTH));
        // a's repository holds 12 GiB, 10 of them the datasets': 2 are its own.
        let other = report
            .lines
            .iter()
            .find(|l| l.part == Part::Repository && l.site.as_deref() == Some("a"))
            .unwrap();
        assert!(close(other.quantity, 2.0));
        let a_storage: f64 = report
            .lines
            .iter()
            .filter(|l| l.site.as_deref() == Some("a") && l.item == Item::Storage)
            .filter_map(|l| l.cost)
            .sum();
        assert!(
            close(a_storage, 12.0 * 0.03),
            "the site's storage is its repository's bytes × price"
        );
        let by_site: f64 = report.sites.iter().map(|s| s.cost).sum();
        let by_part: f64 = report.strategies.iter().map(|s| s.cost).sum();
        assert!(close(by_site, report.total.cost) && close(by_part, report.total.cost));
        assert!(report.total.complete && report.unpriced.is_empty());
        // The drill is no longer declared: its people's time is at no site, 12 h a year.
        let drill = report.lines.iter().find(|l| l.item == Item::DrillPeople).unwrap();
        assert_eq!(drill.site, None);
        assert!(close(drill.quantity, 12.0 / (365.0 / DAYS_PER_MONTH)));
    }

    #[test]
    fn a_sites_own_prices_override_the_systems() {
        let sys = system(PG_STANDBY);
        let text = format!("{ALL}sites:\n  b:\n    cpu_core_hour: 0.05\n    storage_gib_month: 0.1\n");
        let report = cost(&sys, Some(&prices(&text, &sys)), &measured());
        assert_eq!(line(&report, Item::StandbyCpu, "b", None).price, Some(0.05));
        assert_eq!(line(&report, Item::Storage, "b", Some("orders")).price, Some(0.1));
        assert_eq!(line(&report, Item::Storage, "a", Some("orders")).price, Some(0.03));
        // What b does not override is the system's.
        assert_eq!(line(&report, Item::StandbyMemory, "b", None).price, Some(0.005));
    }

    #[test]
    fn what_has_no_price_is_unpriced_never_free() {
        let sys = system(PG_STANDBY);
        let text = "currency: EUR\nstorage_gib_month: 0.03\nsites:\n  b:\n    cpu_core_hour: 0.05\n";
        let report = cost(&sys, Some(&prices(text, &sys)), &measured());
        let memory = line(&report, Item::StandbyMemory, "b", None);
        assert_eq!((memory.price, memory.cost), (None, None));
        assert!(
            report.unpriced.contains(&"memory_gib_hour at b".to_string()),
            "{:?}",
            report.unpriced
        );
        assert!(report.unpriced.contains(&"transfer_gib at a".to_string()));
        assert!(report.unpriced.contains(&"drill_hour at -".to_string()));
        assert!(!report.unpriced.iter().any(|u| u.starts_with("cpu_core_hour")));
        assert!(!report.total.complete);
        let b = report.sites.iter().find(|s| s.name == "b").unwrap();
        assert!(!b.complete);
        // The alternative's saving includes an unpriced line: no difference is claimed.
        let alt = report.datasets[0].alternative.as_ref().unwrap();
        assert_eq!((alt.compared, alt.difference), (Some(Compared::Cheaper), None));
        // Without any prices, every line with a quantity is unpriced and there is no currency.
        let bare = cost(&sys, None, &measured());
        assert_eq!(bare.currency, None);
        assert_eq!(bare.total.cost, 0.0);
        assert!(!bare.total.complete);
    }

    #[test]
    fn measured_recoveries_and_lag_are_preferred_to_estimates() {
        let sys = system(PG_STANDBY);
        let mut m = measured();
        m.standby_lag.push(StandbyLag {
            dataset: "orders".into(),
            site: "b".into(),
            seconds: Some(0.25),
        });
        m.recoveries.push(Recovery {
            dataset: "orders".into(),
            site: "b".into(),
            action: RecoveryAction::Restore,
            seconds: 40.0,
            run: "run-7".into(),
            finished: "2026-01-01T00:00:00Z".into(),
            rto_s: Some(52.0),
            rpo_s: Some(12.0),
        });
        let report = cost(&sys, None, &m);
        let orders = &report.datasets[0];
        assert_eq!(orders.current.rpo_s, Some(0.25));
        let alt = orders.alternative.as_ref().unwrap();
        assert_eq!((alt.rpo_s, alt.rto_s), (Some(12.0), Some(52.0)));
        assert_eq!(alt.rto_basis, "measured: run run-7");
    }

    #[test]
    fn a_malformed_price_file_is_refused_at_its_line_and_field() {
        let sys = system(PG_STANDBY);
        let read = |text: &str| {
            resurgo_spec::read_prices(
                &SourceFile {
                    name: "prices.yaml".into(),
                    text: text.into(),
                },
                &sys,
            )
            .unwrap_err()
        };
        let d = read("currency: EUR\ncpu_core_hour: cheap\n");
        assert_eq!((d.file.as_str(), d.line), ("prices.yaml", 2), "{d}");
        assert!(d.message.starts_with("cpu_core_hour: "), "{d}");
        let d = read("currency: EUR\nsites:\n  b:\n    storage_gib_month: -1\n");
        assert_eq!(d.line, 4, "{d}");
        assert!(d.message.contains("zero or more"), "{d}");
        let d = read("currency: EUR\ncpu_hour: 1\n");
        assert_eq!(d.line, 2, "{d}");
        assert!(d.message.contains("unknown field `cpu_hour`"), "{d}");
        let d = read("currency: EUR\nsites:\n  z:\n    cpu_core_hour: 1\n");
        assert_eq!(d.line, 3, "{d}");
        assert!(d.message.contains("site `z` is not declared"), "{d}");
    }

    #[test]
    fn merging_sites_measures_counts_each_thing_once() {
        let mut a = measured();
        let b = measured();
        a.merge(b);
        assert_eq!(a, measured());
    }
}
