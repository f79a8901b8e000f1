//! The site API's types: what an agent answers and what the CLI prints, shared by both. The
//! CLI's `status --json` and `runs --json` are made of them, so a remote site and a local
//! one read the same. Every field is named and documented; a new field is a compatible
//! change, a removed or renamed one bumps the format's version.

use resurgo_runbook::run::RunReport;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use resurgo_provider::SetAside;

/// Version of the `status --json` format. Bump on any incompatible change (a field removed,
/// renamed or changing meaning); a new field is compatible.
pub const STATUS_FORMAT_VERSION: u32 = 1;

/// Version of the `runs --json` format. Bump on any incompatible change.
pub const RUNS_FORMAT_VERSION: u32 = 1;

/// The state of a system: its sites and services, its datasets' recovery points, and who is
/// primary (`resurgo status --json`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Status {
    /// The version of this format; 1 so far.
    pub format_version: u32,
    /// The system's name in the spec.
    pub system: String,
    /// The desired state's source: a commit, or `folder:<digest>`.
    pub desired: String,
    /// The last successful `resurgo apply` from this state folder (null: never).
    pub last_applied: Option<LastApplied>,
    /// Whether every service runs as desired, every site was observed and nothing is orphaned.
    pub in_sync: bool,
    /// Each site in the spec, in its order.
    pub sites: Vec<SiteStatus>,
    /// Each dataset in the spec, in its order.
    pub datasets: Vec<DatasetStatus>,
    /// Who is primary for each group that has moved or holds a lease, from the coordination
    /// store; empty when nothing was ever assigned.
    pub roles: Vec<RoleStatus>,
    /// Automatic failover held back by `resurgo maintenance on` (null: off).
    pub maintenance: Option<Maintenance>,
    /// Why the roles could not be read (the store is unreachable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles_error: Option<String>,
    /// The workspaces at the sites (`resurgo workspace`), by site then name; absent when
    /// there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workspaces: Vec<WorkspaceStatus>,
    /// Per site with workspaces: the DR capacity they are lent in total, against the site's;
    /// absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lent: Vec<CapacityLent>,
}

/// The last apply: which spec, when.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LastApplied {
    /// The spec that was applied.
    pub source: resurgo_plan::SourceId,
    /// When (RFC 3339, UTC).
    pub time: String,
}

/// The maintenance switch, while it is on.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Maintenance {
    /// Who turned it on (`--by`).
    pub by: String,
    /// Seconds until it turns itself off.
    pub seconds_left: u64,
}

/// One failover group's primary, as the coordination store holds it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RoleStatus {
    /// The group (`site-<site>`: the services the spec puts at that site).
    pub group: String,
    /// The site where the group's services are active.
    pub primary: String,
    /// The assignment's epoch: 0 until the group first moved, then one more per move.
    pub epoch: u64,
    /// RFC 3339 time of the last change (null: never assigned).
    pub since: Option<String>,
    /// The group's primary lease (null: nobody holds it).
    pub lease: Option<Lease>,
}

/// A lease and its holder.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Lease {
    /// Who holds it: a site's agent, or a run that took it.
    pub holder: String,
    /// Seconds until it expires unless renewed.
    pub seconds_left: u64,
}

/// A dataset's newest restorable point at each site that should hold it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DatasetStatus {
    /// The dataset's name in the spec.
    pub dataset: String,
    /// The site its service is active at, whose repository it is backed up to.
    pub home: String,
    /// The RPO objective (`5m`), when declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpo: Option<String>,
    /// The newest restorable point at the home site, then at each site it is replicated to.
    pub points: Vec<RecoveryPoint>,
    /// `strategy: standby`: the warm standby at each site that keeps one, and its lag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standby: Vec<StandbyLag>,
    /// Physical PostgreSQL: the primary's WAL archiving (`pg_stat_archiver`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archiving: Option<Archiving>,
}

/// WAL archiving at a PostgreSQL primary, as `pg_stat_archiver` reports it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Archiving {
    /// Whether archiving works.
    pub state: ArchivingState,
    /// The newest segment archived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_archived_wal: Option<String>,
    /// When it was archived (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_archived_time: Option<String>,
    /// Failed attempts since the statistics were reset (absent when `unknown`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_count: Option<u64>,
    /// The segment of the newest failed attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failed_wal: Option<String>,
    /// When it failed (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failed_time: Option<String>,
    /// Why the archiver could not be read (`unknown`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether WAL archiving works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArchivingState {
    /// The newest attempt succeeded, or none was made yet.
    Ok,
    /// The newest attempt failed: archiving is stuck, and the RPO grows.
    Failing,
    /// The archiver could not be read (see `error`).
    Unknown,
}

/// How far a warm standby is behind its primary, measured now.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StandbyLag {
    /// The standby's site.
    pub site: String,
    /// WAL written at the primary and not yet replayed at the standby.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<u64>,
    /// Time the standby's replay is behind (0 when caught up); absent while unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// Whether it receives WAL from the primary right now.
    pub streaming: bool,
    /// Whether the lag is within the RPO objective (absent without one or without a figure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within_rpo: Option<bool>,
    /// Why the lag could not be measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The newest restorable point of a dataset at one site.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RecoveryPoint {
    /// The site whose repository holds it.
    pub site: String,
    /// Time of the newest snapshot there (RFC 3339), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest: Option<String>,
    /// Its age in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<i64>,
    /// How many snapshots of the dataset the repository holds.
    pub snapshots: usize,
    /// Whether the age is within the RPO objective (absent without an objective or a point).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within_rpo: Option<bool>,
    /// Why the repository could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One site and the services it runs.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SiteStatus {
    /// The site's name in the spec.
    pub site: String,
    /// Its address.
    pub address: String,
    /// `reachable` or `unknown` (it could not be observed: its services show `unknown`).
    pub state: String,
    /// Why it is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The services planned or found there, active and standby.
    pub services: Vec<ServiceStatus>,
    /// Data resurgo set aside at this site instead of deleting it (`resurgo set-aside`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_aside: Vec<SetAsideStatus>,
}

/// One set-aside copy: what, where, how big, how old, and why.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SetAsideStatus {
    #[serde(flatten)]
    pub copy: SetAside,
    /// Seconds since it was set aside (null: its time could not be read).
    pub age_seconds: Option<u64>,
}

/// One service (or its standby instance) at one site.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServiceStatus {
    /// The service's name in the spec.
    pub service: String,
    /// `standby` for the warm standby instance of a service; absent for the active one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `running`, `exited`, `stopped`, `absent` or `unknown`.
    pub process: String,
    /// The service's process id, while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// `healthy`, `unhealthy` or `unknown`.
    pub health: String,
    /// What the failing health check said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_probe: Option<String>,
    /// `in-sync`, the plan action that would correct it (`create`, `update`, `start`,
    /// `delete`, `orphan`), or `unknown` at an unknown site.
    pub drift: String,
    /// For `update`: the fields of its config that differ.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// How many times its supervisor restarted it.
    pub restarts: u32,
    /// The newest evidence that it recovers: a drill that covers it and its last pass
    /// (absent when no drill in the spec covers the service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<ServiceDrill>,
}

/// When a service last passed a drill, and whether that is older than the drill's cadence.
/// Of the drills that cover the service, the one shown is a due one if any (the first in the
/// spec), else the one that passed most recently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceDrill {
    /// The drill's name in the spec (`resurgo drill run NAME`).
    pub drill: String,
    /// Its cadence (`30d`): how old its last pass may be; null when it declares none.
    pub cadence: Option<String>,
    /// When its newest passing run started (RFC 3339, UTC); null when it never passed.
    pub last_pass: Option<String>,
    /// That run's id (`resurgo drill report RUN`); null when it never passed.
    pub run: Option<String>,
    /// The RTO that run measured, in seconds; null when it never passed or measured none.
    pub rto_s: Option<f64>,
    /// The RPO that run measured (data lost, in seconds of writes); null when it never passed
    /// or measured none.
    pub rpo_s: Option<f64>,
    /// Whether the drill is due: it has a cadence and no pass within it.
    pub due: bool,
}

/// Failover and failback runs, oldest first (`resurgo runs --json`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Runs {
    /// The version of this format; 1 so far.
    pub format_version: u32,
    /// The runs asked for: every run, or the one named (resumed with `--resume`).
    pub runs: Vec<Run>,
}

/// One run: its report, read from its journal, and what it measured.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Run {
    #[serde(flatten)]
    pub report: RunReport,
    /// What the run measured (null: it stored nothing, e.g. it did not finish).
    pub measures: Option<Measures>,
}

/// What a run measured, in seconds (null: not measured).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Measures {
    /// Last heartbeat from the lost site → declared dead (runs an agent started).
    pub detection_s: Option<f64>,
    /// Declared dead → failover decided (promotion delay and policy).
    pub decision_s: Option<f64>,
    /// The fault (for a run started by a person, the run's start) → the services answer at
    /// the target.
    pub rto_s: Option<f64>,
    /// Writes that may be lost, as time: for a promoted standby, its last measured lag.
    pub rpo_s: Option<f64>,
    /// Whether the run was allowed to promote beyond the RPO objective.
    pub accept_data_loss: bool,
    /// Of the RTO, the time the run's first step took to take the target's capacity back
    /// from its workspaces.
    #[serde(default)]
    pub preempt_s: Option<f64>,
}

/// Version of the site API's own documents ([`SiteReport`]).
pub const API_FORMAT_VERSION: u32 = 1;

/// What a site's agent reports of its site (`GET /v1/site`): its services, the parts of each
/// dataset it holds, and the roles as the coordination store has them. The CLI's `status`
/// is these reports put together, one per site.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SiteReport {
    /// The version of this format; 1 so far.
    pub format_version: u32,
    /// The system's name in the spec the agent runs.
    pub system: String,
    /// The spec the agent runs: a commit, or `folder:<digest>`.
    pub desired: String,
    /// The site, its services and its set-aside copies.
    pub site: SiteStatus,
    /// Whether every service here runs as desired and nothing is orphaned.
    pub in_sync: bool,
    /// Each dataset with what this site holds of it: its recovery point in this site's
    /// repository, its standby here, its archiving when its home is here.
    pub datasets: Vec<DatasetStatus>,
    /// Who is primary for each group, from the coordination store.
    pub roles: Vec<RoleStatus>,
    /// Automatic failover held back by `resurgo maintenance on` (null: off).
    pub maintenance: Option<Maintenance>,
    /// Why the roles could not be read (the store is unreachable from this site).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles_error: Option<String>,
    /// The workspaces at this site; absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workspaces: Vec<WorkspaceStatus>,
}

/// A health answer (`/health`, `/primary`, `/standby`): 200 when the answer is yes, 503 when
/// it is no or unknown. It tells only role and health, so it needs no credentials.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    /// The site answering.
    pub site: String,
    /// Whether the answer is yes (the HTTP status is 200) or no (503).
    pub ok: bool,
    /// The groups this site is primary for right now (it holds their leases, not fenced).
    pub primary_for: Vec<String>,
    /// The groups this site keeps a standby of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standby_for: Vec<String>,
    /// The standby's replay lag in seconds, when asked for with `max_lag` and measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// Why the answer is no, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Which run to start (`POST /v1/runs`). The target is always the site whose agent is asked:
/// a run is executed where it moves the services to.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// `failover` or `failback`.
    pub kind: resurgo_runbook::plan::PlanKind,
    /// The site the services leave.
    pub from: String,
    /// The site they move to: the agent's own (anything else is refused).
    pub to: String,
    /// The epoch of the group at `from` as the caller last saw it (`status`): if the group
    /// has moved since, the request is stale and refused (409).
    pub epoch: u64,
    /// Promote a standby even when its lag exceeds the dataset's RPO objective.
    #[serde(default)]
    pub accept_data_loss: bool,
}

/// A run the agent started (`POST /v1/runs`, 202): follow it with `GET /v1/runs/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunStarted {
    /// The run's id.
    pub run: String,
}

/// An operation on a dataset at the agent's site (`POST /v1/datasets/{name}/{backup,verify,restore}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetRequest {
    /// The epoch of the dataset's group as the caller last saw it: refused (409) if the group
    /// has moved since.
    pub epoch: u64,
    /// `restore`: the point in time to restore to (RFC 3339; default the newest point).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// `backup`: also replicate the new snapshot to the dataset's replica sites' repositories
    /// (from here, where the data is).
    #[serde(default)]
    pub replicate: bool,
}

/// What a dataset operation did.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DatasetDone {
    pub dataset: String,
    pub site: String,
    /// `backup`, `verify` or `restore`.
    pub action: String,
    /// What was done, for a person (the snapshot made, checked or restored).
    pub detail: String,
}

/// The body of every answer that is not a success: the HTTP status and what went wrong.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Problem {
    pub status: u16,
    /// What went wrong and what to do, for a person.
    pub error: String,
}

/// Apply the spec at the agent's site (`POST /v1/apply`): the agent applies the spec it runs,
/// which must be the one the caller planned with.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// The spec the caller planned with (`status`'s `desired`: a commit, or `folder:<digest>`).
    /// If the agent runs another, nothing is applied (409).
    pub desired: String,
    /// Delete services resurgo started that the spec no longer declares.
    #[serde(default)]
    pub prune: bool,
    /// With `prune`: refuse to delete more than this many services.
    #[serde(default = "default_max_deletes")]
    pub max_deletes: usize,
}

fn default_max_deletes() -> usize {
    5
}

/// What an apply did at one site, in order of completion.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Applied {
    pub site: String,
    /// The spec applied.
    pub desired: String,
    pub done: Vec<AppliedChange>,
}

/// One change an apply made.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AppliedChange {
    pub service: String,
    /// `create`, `update`, `start` or `delete`.
    pub action: resurgo_plan::Action,
    pub millis: u64,
}

/// Turn the maintenance switch on or off (`POST /v1/maintenance`): while it is on, no agent
/// fails over by itself.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRequest {
    pub on: bool,
    /// With `on`: for how many seconds (it ends by itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
    /// With `on`: who or why, shown by `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// The maintenance switch (`GET` and `POST /v1/maintenance`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MaintenanceState {
    /// While it is on: who turned it on, and for how much longer.
    pub maintenance: Option<Maintenance>,
}

/// What to do with the site's backup repository (`POST /v1/repository`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RepositoryAction {
    /// Create it (refused if one is there already).
    Init,
    /// Check its structure (with `read_data`, every stored byte).
    Check,
}

/// A request about the site's own backup repository.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepositoryRequest {
    pub action: RepositoryAction,
    /// `check`: read and verify all data (slow, thorough).
    #[serde(default)]
    pub read_data: bool,
}

/// What was done with the site's repository.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RepositoryDone {
    pub site: String,
    pub action: RepositoryAction,
    /// Where the repository is.
    pub location: String,
    /// What was found or made, for a person.
    pub detail: String,
}

/// A drill's fault, ordered at one site (`POST /v1/faults`) and applied there by the site's
/// agent. The agent writes the order down before it applies it, and reverts it by itself
/// once `until_unix` has passed, whether or not the drill that ordered it is still running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultOrder {
    /// The order's id, unique per drill run and fault (`<run>-<index>`): a name's characters
    /// (letters, digits, `-`, `_`, `.`). Ordering the same id again changes nothing.
    pub id: String,
    /// The fault, as the spec's drill declares it. The site applies its own part: a link's
    /// two ends each cut (or slow) their half.
    pub fault: resurgo_spec::Fault,
    /// When the site reverts it by itself (seconds since the Unix epoch): the drill's start
    /// plus its deadline and a margin.
    pub until_unix: f64,
}

/// A fault in force at a site: the order, and what was done for it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FaultInForce {
    /// The site it is in force at.
    pub site: String,
    pub order: FaultOrder,
    /// What was done, for a person (`tc filter on eth0: drop to 10.0.0.2`), each undone by
    /// the revert.
    pub done: Vec<String>,
}

/// The faults in force at a site (`GET /v1/faults`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Faults {
    /// The site answering.
    pub site: String,
    /// Its faults in force, oldest order first.
    pub faults: Vec<FaultInForce>,
}

/// A fault reverted (`DELETE /v1/faults/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FaultReverted {
    pub site: String,
    pub id: String,
    /// Whether the fault was in force here until now; false when it was not (never applied
    /// here, or reverted already — by an earlier request or by its `until_unix`).
    pub was_in_force: bool,
}

/// Make a sandbox at this site (an isolated drill's test failover): its own network namespace,
/// copies of the newest restore point of the services' datasets from this site's repository,
/// the services started inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxRequest {
    /// The sandbox's id: the drill run's (a name's characters).
    pub id: String,
    /// The services to start in it, as the spec names them.
    pub services: Vec<String>,
}

/// A copy a sandbox runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SandboxCopy {
    pub dataset: String,
    /// `postgres`, `sqlite` or `directory`.
    pub kind: String,
    /// The restore point copied (short id).
    pub snapshot: String,
    /// When that restore point was taken (seconds since the Unix epoch).
    pub taken_unix: i64,
}

/// A sandbox made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SandboxMade {
    /// Its network namespace at the site.
    pub netns: String,
    pub copies: Vec<SandboxCopy>,
}

/// Something a sandbox left (or leaves) at the site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SandboxLeftover {
    /// `namespace` or `clone`.
    pub kind: String,
    pub what: String,
    pub place: String,
}

/// A sandbox now: whether its services serve (asked from inside), and what of it exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SandboxState {
    pub serving: bool,
    /// Why it does not serve yet, when it does not.
    pub detail: Option<String>,
    /// What of the sandbox exists at the site (empty once it is destroyed).
    pub leftovers: Vec<SandboxLeftover>,
}

/// An endpoint to try from inside a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// What it is, for people (`` `db` at a ``, `coordination store`).
    pub what: String,
    /// `host:port`.
    pub address: String,
}

/// Check a sandbox: try production's endpoints from inside it, read and check its copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxCheckRequest {
    pub endpoints: Vec<Endpoint>,
}

/// One endpoint tried from inside a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SandboxAttempt {
    pub what: String,
    pub address: String,
    /// Whether a connection was made: production reached from the sandbox.
    pub reached: bool,
    pub detail: String,
}

/// A copy in a sandbox, read and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SandboxCopyCheck {
    pub dataset: String,
    /// The highest drill canary number the copy holds (0: none), when it could be read.
    pub recovered: Option<u64>,
    /// Why it could not be read.
    pub recovered_error: Option<String>,
    /// `pg_amcheck`, `integrity_check` or `files`.
    pub method: String,
    pub passed: bool,
    pub detail: String,
}

/// What a sandbox check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SandboxChecked {
    pub attempts: Vec<SandboxAttempt>,
    pub copies: Vec<SandboxCopyCheck>,
}

/// A workspace in `status`: where it is, what it does, what it started from, how long it has
/// left and what it takes of its site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkspaceStatus {
    /// Its name (`resurgo workspace show NAME`).
    pub name: String,
    /// The DR site whose spare capacity it uses.
    pub site: String,
    /// `seeding`, `ready`, `preempted` or `failed`.
    pub state: String,
    /// Why it is preempted or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The services it copies.
    pub services: Vec<String>,
    /// Its seed as asked: `latest`, or an RFC 3339 time.
    pub seed: String,
    /// What each dataset was cloned from, and how.
    pub points: Vec<WorkspacePoint>,
    /// Seconds until it expires and is deleted (0: expired, deleted at the agent's next tick).
    pub ttl_left_seconds: u64,
    /// Which of a site's workspaces a failover takes back first: the lowest.
    pub priority: i32,
    /// What it takes of its site's capacity: CPU in cores.
    pub cpu: f64,
    /// What it takes of its site's capacity: memory in bytes.
    pub memory_bytes: u64,
}

/// One dataset's clone in a workspace: the restore point it holds and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkspacePoint {
    /// The dataset's name in the spec.
    pub dataset: String,
    /// The restore point (short snapshot id).
    pub snapshot: String,
    /// When that point was taken (RFC 3339, UTC).
    pub taken: String,
    /// Its age now, in seconds.
    pub age_seconds: i64,
    /// How it was cloned from the golden copy: `reflink`, `overlay` or `copy`.
    pub method: String,
}

/// The DR capacity a site lends to its workspaces, against what it has. Every workspace
/// recorded there counts, preempted ones too: their room is kept for them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CapacityLent {
    /// The site's name in the spec.
    pub site: String,
    /// How many workspaces are there.
    pub workspaces: usize,
    /// CPU lent, in cores.
    pub cpu: f64,
    /// Memory lent, in bytes.
    pub memory_bytes: u64,
    /// The site's declared capacity: CPU in cores (null: the site is not in the spec).
    pub capacity_cpu: Option<f64>,
    /// The site's declared capacity: memory in bytes (null: the site is not in the spec).
    pub capacity_memory_bytes: Option<u64>,
}

/// Make a workspace at this site (`POST /v1/workspaces`): one the spec declares, or one on
/// demand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceRequest {
    /// Its name: lowercase letters, digits, `-` and `_`.
    pub name: String,
    /// What it is, as the spec's `workspaces:` declares one; its `site` must be the agent's.
    pub policy: resurgo_spec::Workspace,
}

/// A workspace as its site records it (`workspace.json`): as declared and as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkspaceRecord {
    /// Its name.
    pub name: String,
    /// The DR site whose spare capacity it uses, whose agent made it.
    pub site: String,
    /// What it was made from: the spec's declaration, or the options given on demand.
    pub policy: resurgo_spec::Workspace,
    /// `seeding`, `ready`, `preempted` or `failed`.
    pub state: String,
    /// Why it is preempted or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When it was made (seconds since the Unix epoch).
    pub created_unix: i64,
    /// When it expires and is deleted (seconds since the Unix epoch).
    pub expires_unix: i64,
    /// When its copies were made (seconds since the Unix epoch).
    pub seeded_unix: i64,
    /// Its datasets' clones.
    pub clones: Vec<WorkspaceClone>,
    /// Seconds until it served (copies, start, masking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_s: Option<f64>,
    /// The network namespace its services run in (`ip netns exec NETNS …` reaches them).
    pub netns: String,
}

/// One dataset's clone in a workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkspaceClone {
    /// The dataset's name in the spec.
    pub dataset: String,
    /// `postgres`, `sqlite` or `directory`.
    pub kind: String,
    /// The restore point it holds (short snapshot id).
    pub snapshot: String,
    /// When that point was taken (seconds since the Unix epoch).
    pub taken_unix: i64,
    /// How it was cloned from the golden copy: `reflink`, `overlay` or `copy`.
    pub method: String,
    /// How long the clone took, in seconds.
    pub took_s: f64,
    /// How many bytes it holds.
    pub bytes: u64,
    /// Where the clone is at the site (the data folder as the service sees it).
    pub path: String,
    /// The golden copy it was cloned from (an overlay reads through it).
    pub golden: String,
}

/// The workspaces at a site (`GET /v1/workspaces`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Workspaces {
    /// The site answering.
    pub site: String,
    /// Its workspaces, by name.
    pub workspaces: Vec<WorkspaceRecord>,
}

/// A workspace deleted (`DELETE /v1/workspaces/{name}`), and what is left of it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WorkspaceDeleted {
    /// The site whose agent deleted it.
    pub site: String,
    /// The workspace's name.
    pub name: String,
    /// What of it is still at the site (empty: nothing; else a person must remove it).
    pub leftovers: Vec<SandboxLeftover>,
}
