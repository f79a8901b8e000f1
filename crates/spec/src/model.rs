//! The spec's types. These structs *are* the format: serde reads them (unknown fields are
//! refused), schemars derives the JSON Schema from them, and nothing else describes the format.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::units::{ByteSize, Cpu, Duration};

/// The only `apiVersion` this build reads.
pub const API_VERSION: &str = "resurgo.dev/v1alpha1";

/// One spec file. A spec is one file or a folder of them; their sections are merged, and a
/// name defined twice is an error.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Version of the format; must be `resurgo.dev/v1alpha1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Name of the system (lowercase letters, digits, `-` and `_`); given once across all
    /// files. Left out, the system is named `system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Parameters that differ between deployments (regions, ports, scale). Use them in any
    /// value as `${inputs.NAME}`; override with `--set NAME=VALUE`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub inputs: IndexMap<String, Input>,
    /// Failure domains where services run.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub sites: IndexMap<String, Site>,
    /// Workloads.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub services: IndexMap<String, Service>,
    /// Data the services own.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub datasets: IndexMap<String, Dataset>,
    /// How clients reach services.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub routes: IndexMap<String, Route>,
    /// Recovery objectives for the whole system; datasets may set a stricter RPO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objectives: Option<Objectives>,
    /// When and how a site is declared lost and the system fails over; given once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
    /// The site API each site's agent serves; given once. Declared, every site is its own
    /// host: the CLI reaches a site only through its agent, never through its files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<Api>,
    /// Practised losses: scenarios of faults run against the objectives, each leaving a
    /// report as evidence (`resurgo drill run NAME`).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub drills: IndexMap<String, Drill>,
    /// Preemptible dev/test copies of services, with their data, on a DR site's spare
    /// capacity, seeded from its newest verified restore point and taken back when a failover
    /// needs the site.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub workspaces: IndexMap<String, Workspace>,
    /// What DR capacity costs, for `resurgo cost` (and `GET /v1/cost`); given once.
    /// `resurgo cost --prices FILE` reads the same shape from a file of its own instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prices: Option<Prices>,
    /// Where people are told what happened (a failover, a fence, an RPO breached, a failed
    /// backup or drill, a workspace taken back): receivers by name, each sent the kinds of
    /// events it asks for by the site daemon that records them, retried with back-off, and
    /// kept in the event log when they cannot be delivered.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub notifications: IndexMap<String, Receiver>,
}

/// An input: a default value, optionally described.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Input {
    /// A bare default: `region: eu-west-1`.
    Value(InputValue),
    /// A default with a description.
    Described {
        default: InputValue,
        #[serde(default)]
        description: Option<String>,
    },
}

impl Input {
    pub fn default_value(&self) -> &InputValue {
        match self {
            Input::Value(v) | Input::Described { default: v, .. } => v,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum InputValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
}

/// A failure domain: a region, a data centre, a cluster, or (with the `local` provider) an
/// address on this machine.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// Which provider runs this site's services.
    pub provider: ProviderKind,
    /// The IP address services at this site listen on (for `local`, a loopback address such
    /// as `127.0.1.1`, so every site keeps the declared ports).
    pub address: std::net::IpAddr,
    /// Region or location label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// What the site can hold.
    pub capacity: Resources,
    /// Capabilities the site offers (`postgres`, `gpu`, `ssd`…), matched against services'
    /// `requires`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// Where this site keeps backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositorySpec>,
    /// `local` provider: the site's state folder (default: `<state>/sites/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Where this site's agent serves the site API, `host:port` (default: the site's
    /// `address` and `api.port`). Only with a top-level `api`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// Who answers for this site (names, teams or addresses): in the recovery plan, the
    /// owners of fencing it when it is left and of making it primary when it takes over
    /// (`resurgo runbook`, `resurgo failover --dry-run`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
}

/// The site API (HTTP/1.1 + JSON over TLS) that each site's agent serves at `<site address>:<port>`
/// (or the site's own `api`). Clients prove who they are with a client certificate signed by
/// the deployment CA, or with the bearer token; the health endpoints (`/health`, `/primary`,
/// `/standby`) answer anyone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// The port every agent serves the API on (default 7443).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The folder, on each host, of that host's TLS files as `resurgo certs` writes them:
    /// `ca.pem` (the deployment CA), `cert.pem` and `key.pem` (the host's own certificate).
    pub tls: String,
    /// A bearer token clients may present instead of a client certificate (a secret
    /// reference; the agents compare it, the CLI sends it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretRef>,
}

impl Api {
    pub const DEFAULT_PORT: u16 = 7443;

    pub fn port(&self) -> u16 {
        self.port.unwrap_or(Self::DEFAULT_PORT)
    }
}

/// A site's backup repository: a restic-format snapshot store and a log archive, always
/// encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepositorySpec {
    /// `file:///path`, `/path`, or `s3://bucket/prefix?endpoint=http://host:port&region=r`.
    pub url: String,
    /// The repository password (a secret reference; backups are always encrypted).
    pub password: SecretRef,
    /// S3 access key id (default: the `AWS_ACCESS_KEY_ID` environment variable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<SecretRef>,
    /// S3 secret access key (default: the `AWS_SECRET_ACCESS_KEY` environment variable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<SecretRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Supervised processes on this machine.
    Local,
}

/// CPU and memory, asked for by a service or offered by a site.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default)]
    pub cpu: Cpu,
    #[serde(default)]
    pub memory: ByteSize,
}

/// A workload.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The program to run.
    pub command: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment: plain values, or references to secrets (`{secret: {env: NAME}}` or
    /// `{secret: {file: PATH}}`) that are read when the service starts and never recorded.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub env: IndexMap<String, EnvValue>,
    /// Working directory (default: the service's state folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// TCP ports the service listens on, on its site's address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// How to tell that the service works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
    /// Services that must be healthy before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Capabilities a site must offer to run this service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    #[serde(default)]
    pub resources: Resources,
    /// The site where the service is active.
    pub site: String,
    /// Sites that can take the service over, in order of preference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standby: Vec<String>,
    /// What the controller does about drift: `manual` reports it, `auto` corrects it.
    #[serde(default)]
    pub sync: SyncPolicy,
    /// How long a graceful stop waits after SIGTERM before SIGKILL (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<Duration>,
    /// The operating-system user the service runs as (its uid, primary group and supplementary
    /// groups are looked up by name on the site's host). Its folder and log files become that
    /// user's, and data restored or seeded for it (a PostgreSQL data directory) is given to it.
    /// Without one the service runs as the user resurgo runs as; `validate` warns when that is
    /// root. Unless resurgo runs as root, only the user it runs as can be named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Who answers for this service (names, teams or addresses): in the recovery plan, the
    /// owners of bringing its data to the target, starting it there, switching its routes and
    /// checking it answers (`resurgo runbook`, `resurgo failover --dry-run`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
}

/// The value of an environment variable: plain text, or a reference to a secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum EnvValue {
    Plain(String),
    Secret {
        /// Where the value is read from when the service starts.
        secret: SecretRef,
    },
}

/// Where a secret's value is read from. The value itself never appears in a spec, a plan, a
/// log or a report.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SecretRef {
    /// An environment variable of the resurgo process.
    Env(String),
    /// A file whose content (without a trailing newline) is the value.
    File(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SyncPolicy {
    /// Report drift, change nothing (the default: correcting is opted into).
    #[default]
    Manual,
    /// Correct drift: restart dead processes, restart changed ones with the declared config.
    Auto,
}

/// A health check: exactly one of `http`, `tcp`, `exec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// An HTTP GET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,
    /// A TCP connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProbe>,
    /// A command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecProbe>,
    /// Time between probes (default 1s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Time one probe may take (default 1s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// How long a start may take to become healthy before it has failed (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timeout: Option<Duration>,
}

/// Healthy when `GET path` on the site's address answers 2xx.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    /// The port, on the site's address.
    pub port: u16,
    /// The path to GET (default `/`).
    #[serde(default = "default_http_path")]
    pub path: String,
}

fn default_http_path() -> String {
    "/".into()
}

/// Healthy when a TCP connection to the port succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpProbe {
    /// The port, on the site's address.
    pub port: u16,
}

/// Healthy when the command exits 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecProbe {
    /// The program and its arguments, run in the service's working directory.
    pub command: Vec<String>,
}

/// Data a service owns. Protection (schedules, replication, restore) reads these.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// The service that owns the data.
    pub service: String,
    /// What kind of data it is.
    #[serde(rename = "type")]
    pub kind: DatasetKind,
    /// Directory or SQLite file, relative to the service's working directory or absolute. For
    /// PostgreSQL, the data directory (`PGDATA`) the service runs on: with `strategy: standby`,
    /// resurgo seeds it at the standby site (`pg_basebackup` from the active one) before it
    /// starts the standby instance there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// PostgreSQL connection (`host=… port=… user=… dbname=…`); the password is a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    /// How the DR site is kept ready: `backup` (restore from replicated backups) or
    /// `standby` (a live replica).
    #[serde(default)]
    pub strategy: Strategy,
    /// Time between backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Duration>,
    /// Most data that may be lost, as time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo: Option<Duration>,
    /// Sites the backups are replicated to (default: the owning service's standby sites).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicate_to: Vec<String>,
    /// PostgreSQL: `physical` (base backups + WAL archive: point-in-time restore; the
    /// default) or `logical` (pg_dump).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<PgMethod>,
    /// How many snapshots `resurgo forget` keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// How `resurgo verify` proves a restored copy is usable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<DatasetCheck>,
    /// Time between scheduled verifications by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_every: Option<Duration>,
    /// Commands run around each backup, for application-consistent copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Hooks>,
}

impl Dataset {
    /// How often a physical PostgreSQL dataset's archived WAL is shipped to its replica sites
    /// (and each segment is closed): half its RPO objective (`system_rpo` when it sets none,
    /// else one minute), between one second and one minute.
    pub fn archive_timeout(&self, system_rpo: Option<Duration>) -> std::time::Duration {
        let rpo = self
            .rpo
            .or(system_rpo)
            .map_or(std::time::Duration::from_secs(60), |d| d.0);
        (rpo / 2).clamp(std::time::Duration::from_secs(1), std::time::Duration::from_secs(60))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PgMethod {
    Physical,
    Logical,
}

/// Snapshots to keep, per dataset; unset fields keep nothing by that rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly: Option<u32>,
}

/// A check run against a restored copy: a SQL query that must succeed (and, with `expect`,
/// print that), or a command run in the restored folder that must exit 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

/// Commands (argv) run before and after a backup; a failing `pre` cancels the backup, `post`
/// always runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    Directory,
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    #[default]
    Backup,
    Standby,
}

/// How clients reach a service.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The service the route leads to, at whichever site it is active.
    pub service: String,
    /// The service port the route leads to (default: the service's first port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(rename = "type")]
    pub kind: RouteKind,
    /// `proxy`: the address:port the built-in proxy listens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<std::net::SocketAddr>,
    /// `dns`: the A record pointed at the active site's address (RFC 2136 UPDATE with TSIG).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsRecord>,
    /// `hook`: the command that points clients at the active site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<RouteHook>,
}

/// An A record at an authoritative server that accepts dynamic updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsRecord {
    /// The authoritative server's address:port (it must accept RFC 2136 UPDATE).
    pub server: std::net::SocketAddr,
    /// The zone the record lives in, e.g. `example.com`.
    pub zone: String,
    /// The record's name, e.g. `www.example.com`; inside `zone`.
    pub name: String,
    /// TTL of the record, in seconds (default 30: keep it low before any event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// The TSIG key (hmac-sha256) the server knows.
    pub key: TsigKey,
}

/// A TSIG key: its name and its secret (base64, as in the server's configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TsigKey {
    pub name: String,
    pub secret: SecretRef,
}

/// A command run to switch a route. It gets `RESURGO_ROUTE`, `RESURGO_OLD_ADDRESS`,
/// `RESURGO_NEW_ADDRESS` (address:port) and `RESURGO_EPOCH`; exit 0 means switched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteHook {
    pub command: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// How long it may run before it is killed (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// Failure detection and automatic failover. Timing is checked when the spec loads: the old
/// primary fences itself (heartbeat interval + fencing deadline) before its lease expires and
/// before another site can be promoted (interval × suspect-after + promotion delay).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Failover {
    /// Fail over without a person when a site is declared dead (default false: the agents
    /// detect and report, a person runs `resurgo failover`).
    #[serde(default)]
    pub automatic: bool,
    /// No automatic failover within this long after any failover (default 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Duration>,
    /// How often agents renew the primary lease and send heartbeats (default 1s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval: Option<Duration>,
    /// Missed heartbeats before a site is suspect (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspect_after: Option<u32>,
    /// The primary lease's time to live (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ttl: Option<Duration>,
    /// How long the primary tolerates failed renewals before it fences itself (default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fencing_deadline: Option<Duration>,
    /// How long after suspecting the primary before another site is promoted (default 4s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_delay: Option<Duration>,
    /// The port each site's agent listens on for heartbeats, at the site's address
    /// (default 7411).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_port: Option<u16>,
    /// The witness agent's address:port: a second, independent view of every site; without
    /// one, no site is ever declared dead automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness: Option<std::net::SocketAddr>,
    /// Where roles, epochs and leases live (default: embedded, in the state folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordination: Option<Coordination>,
}

/// The coordination store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Coordination {
    /// An etcd v3 cluster (default: the embedded store, in the state folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdCluster>,
}

/// An etcd v3 cluster, reached through its JSON gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EtcdCluster {
    /// The members' client URLs, one per failure domain: all `http://host:2379` or all
    /// `https://host:2379`.
    pub endpoints: Vec<String>,
    /// TLS for `https` endpoints. Without it (or without its `ca`) the members' certificates are
    /// checked against the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<EtcdTls>,
    /// An etcd user (etcd's `auth enable`); only with `https` endpoints, so that the password
    /// never crosses the network in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<EtcdAuth>,
}

/// Certificate files (PEM) for etcd, read when resurgo opens the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EtcdTls {
    /// The CA certificates that signed the members' certificates (default: the system's roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// A client certificate, for members run with `--client-cert-auth`; with `key`. With `auth`
    /// it must have no CommonName: etcd's JSON gateway refuses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// The client certificate's private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// An etcd user and where its password is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EtcdAuth {
    pub user: String,
    /// The user's password (a secret reference: `{env: NAME}` or `{file: PATH}`).
    pub password: SecretRef,
}

impl Failover {
    /// The timing in force, defaults filled in.
    pub fn timing(&self) -> crate::timing::Timing {
        let d = |v: Option<Duration>, default: u64| v.map_or(std::time::Duration::from_millis(default), |d| d.0);
        crate::timing::Timing {
            heartbeat_interval: d(self.heartbeat_interval, 1000),
            suspect_after: self.suspect_after.unwrap_or(3),
            lease_ttl: d(self.lease_ttl, 10_000),
            fencing_deadline: d(self.fencing_deadline, 5000),
            promotion_delay: d(self.promotion_delay, 4000),
        }
    }

    pub fn cooldown(&self) -> std::time::Duration {
        self.cooldown.map_or(std::time::Duration::from_secs(600), |d| d.0)
    }

    pub fn agent_port(&self) -> u16 {
        self.agent_port.unwrap_or(7411)
    }

    /// The etcd cluster, if the spec names one (else the store is embedded).
    pub fn etcd(&self) -> Option<&EtcdCluster> {
        self.coordination.as_ref()?.etcd.as_ref()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    Proxy,
    Dns,
    Hook,
}

/// Recovery objectives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Objectives {
    /// Longest time until service is back after a site is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto: Option<Duration>,
    /// Most data that may be lost, as time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo: Option<Duration>,
}

/// A drill: the loss of a service, a workload, a site or a link, practised. Its faults are
/// injected, the recovery is measured against the objectives, and every fault is undone at
/// teardown, whatever happens (`resurgo drill run NAME`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Drill {
    /// What the drill puts at risk: exactly one of `service`, `services` (a workload),
    /// `site` or `link`. A drill is refused while a failover, a failback or another drill
    /// runs on the same services.
    pub scope: DrillScope,
    /// The faults, injected in this order once the probes answer. Each has its undo, written
    /// down before the fault is injected and run at teardown.
    pub faults: Vec<Fault>,
    /// `isolated` (a test failover in a sandbox at the DR site, production untouched) or
    /// `live` (the faults are real: the agents detect them and fail over). `resurgo drill run`
    /// may choose the other with `--isolated` or `--live`.
    #[serde(default)]
    pub mode: DrillMode,
    /// Client probes through routes (for RTO) and canary writes into datasets (for RPO).
    #[serde(default)]
    pub probes: DrillProbes,
    /// The objectives the drill is judged against; left out, the spec's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objectives: Option<Objectives>,
    /// How long the whole drill may take, teardown excluded; past it the drill goes straight
    /// to teardown. Default 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Duration>,
    /// What aborts a drill and reverts its faults at once. Required for `live` drills.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<StopCondition>,
    /// How old the last passing run may be before `status` warns, e.g. `30d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cadence: Option<Duration>,
    /// Who answers for this drill (names, teams or addresses), shown in its report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
    /// Live drills: fail back to the original site once recovery is measured. Default true.
    #[serde(default = "yes")]
    pub failback: bool,
    /// Isolated drills: the DR site's agent runs it by itself whenever its last run is older
    /// than its `cadence` (both required). Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scheduled: bool,
}

fn yes() -> bool {
    true
}

impl Drill {
    /// How long the drill may take before it goes straight to teardown.
    pub fn deadline(&self) -> std::time::Duration {
        self.deadline.map_or(std::time::Duration::from_secs(600), |d| d.0)
    }
}

/// What a drill puts at risk. Exactly one field is given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DrillScope {
    /// One service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// A workload: a named set of services, lost together.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// A whole site, with every service active there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The link between two sites, e.g. `[a, b]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<String>,
}

impl DrillScope {
    /// The kind of scope, as reports name it.
    pub fn kind(&self) -> &'static str {
        if self.service.is_some() {
            "service"
        } else if !self.services.is_empty() {
            "workload"
        } else if self.site.is_some() {
            "site"
        } else {
            "link"
        }
    }

    /// The names the scope lists: services, the site, or the link's two sites.
    pub fn targets(&self) -> Vec<String> {
        match (&self.service, &self.site) {
            (Some(s), _) => vec![s.clone()],
            (_, Some(site)) => vec![site.clone()],
            _ if !self.services.is_empty() => self.services.clone(),
            _ => self.link.clone(),
        }
    }

    /// The services at risk: those named, those active at the site, or (a link) every
    /// service active at either end.
    pub fn services(&self, system: &System) -> Vec<String> {
        let at = |sites: &[String]| -> Vec<String> {
            system
                .services
                .iter()
                .filter(|(_, s)| sites.contains(&s.site))
                .map(|(n, _)| n.clone())
                .collect()
        };
        match (&self.service, &self.site) {
            (Some(s), _) => vec![s.clone()],
            (_, Some(site)) => at(std::slice::from_ref(site)),
            _ if !self.services.is_empty() => self.services.clone(),
            _ => at(&self.link),
        }
    }
}

/// A fault a drill injects, each with its undo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Kill a service's process (SIGKILL) where it is active. Undo: start it again.
    Kill(String),
    /// Stop a whole site: its services and its agent, as if the host were lost. Undo: the
    /// site comes back (as a standby, if the system failed over meanwhile).
    StopSite(String),
    /// Cut a site off from every other site, the witness and the coordination store. Undo:
    /// the network is healed.
    IsolateSite(String),
    /// Cut the link between two sites, e.g. `[a, b]`; each still reaches the others. Undo:
    /// the link is healed.
    CutLink(Vec<String>),
    /// Add latency and loss on the link between two sites. Undo: the link is healed.
    DegradeLink(LinkDegradation),
}

impl Fault {
    /// The fault's kind, as reports name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Kill(_) => "kill",
            Fault::StopSite(_) => "stop_site",
            Fault::IsolateSite(_) => "isolate_site",
            Fault::CutLink(_) => "cut_link",
            Fault::DegradeLink(_) => "degrade_link",
        }
    }

    /// What it is injected into: a service, a site, or `a-b` for a link.
    pub fn target(&self) -> String {
        match self {
            Fault::Kill(s) | Fault::StopSite(s) | Fault::IsolateSite(s) => s.clone(),
            Fault::CutLink(l) => l.join("-"),
            Fault::DegradeLink(d) => d.between.join("-"),
        }
    }
}

/// Latency and loss added on a link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkDegradation {
    /// The link's two sites.
    pub between: Vec<String>,
    /// Delay added to every packet, e.g. `200ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Duration>,
    /// Share of packets dropped, in percent (0 to 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
}

/// Whether a drill touches production.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DrillMode {
    /// A test failover in a sandbox at the DR site, on copies of its latest restore point;
    /// production keeps serving and is provably unreachable from the sandbox.
    #[default]
    Isolated,
    /// The faults are real: the agents detect them and fail over; measured, then failed back.
    Live,
}

/// A drill's probes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DrillProbes {
    /// Routes a client probe goes through, from the drill's start to its end: RTO is the time
    /// from the fault to the first answer after it. Left out: every route of a service in
    /// scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    /// Datasets the drill writes a numbered canary into (PostgreSQL, SQLite or directory):
    /// RPO is what the recovered copy lacks. Left out: every dataset of a service in scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canaries: Vec<String>,
}

/// What aborts a drill and reverts its faults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StopCondition {
    /// A probe has failed without a break for this long, e.g. `2m`.
    UnavailableFor(Duration),
    /// More canary writes than this are lost.
    WritesLostOver(u64),
    /// An event of this kind is logged during the drill, e.g. `apply_failed`.
    Event(String),
}

/// A workspace: a named, preemptible dev/test copy of some services, with their datasets, at a
/// DR site. Its data is cloned from golden copies of the site's newest verified restore point,
/// never from production; a failover that needs the site takes the workspace back first
/// (lowest `priority` first) and failback gives it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workspace {
    /// The DR site whose spare capacity it uses: not a site where any of its services is
    /// active.
    pub site: String,
    /// The services copied, each with its datasets (at least one).
    pub services: Vec<String>,
    /// The restore point it starts from: `latest` (the default: the newest verified point) or
    /// an RFC 3339 time (the newest verified point at or before it).
    #[serde(default)]
    pub seed: Seed,
    /// How long it lives after it is created (default 24h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// Which workspaces a failover takes back first: the lowest. Default 0.
    #[serde(default)]
    pub priority: i32,
    /// What it takes of its site's capacity.
    #[serde(default)]
    pub resources: Resources,
    /// What preemption does to it: `stop` (the default: its data is kept and it is restarted
    /// after failback) or `destroy`.
    #[serde(default)]
    pub on_preempt: OnPreempt,
    /// Restarted after a failback, a workspace whose seed is older than this is seeded afresh
    /// first. Left out, a seed is never refreshed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reseed_after: Option<Duration>,
    /// How each dataset is copied from its golden copy: `auto` (the default: reflink, else
    /// overlay, else a full copy), `reflink`, `overlay` or `copy`.
    #[serde(default)]
    pub clone: CloneMethod,
    /// Shell commands run inside the workspace, in order, before it is handed out (to mask
    /// personal data); if any fails, the workspace is destroyed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masking: Vec<String>,
    /// Who is told when it is preempted or given back (names, teams or addresses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
}

impl Workspace {
    /// How long a workspace lives when its spec gives no `ttl`.
    pub const DEFAULT_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

    /// How long it lives after it is created.
    pub fn ttl(&self) -> std::time::Duration {
        self.ttl.map_or(Self::DEFAULT_TTL, |d| d.0)
    }
}

/// The restore point a workspace is seeded from. Written as the string `latest` or an RFC 3339
/// time; the time is checked when the spec is validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Seed {
    /// The newest verified restore point.
    #[default]
    Latest,
    /// The newest verified restore point at or before this RFC 3339 time, as written.
    At(String),
}

impl Serialize for Seed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Seed::Latest => s.serialize_str("latest"),
            Seed::At(t) => s.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for Seed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(if text == "latest" { Seed::Latest } else { Seed::At(text) })
    }
}

impl JsonSchema for Seed {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Seed")
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`latest` (the newest verified restore point) or an RFC 3339 time with an offset (the newest verified point at or before it), e.g. `2026-11-21T10:15:00Z`.",
            "anyOf": [
                { "type": "string", "const": "latest" },
                { "type": "string", "format": "date-time" }
            ]
        })
    }
}

/// What preempting a workspace does to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnPreempt {
    /// Stop its services and keep its data; it is restarted after failback.
    #[default]
    Stop,
    /// Remove it with its data.
    Destroy,
}

/// How a workspace's datasets are copied from their golden copies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CloneMethod {
    /// A reflink where the file system offers one, else an overlay, else a full copy.
    #[default]
    Auto,
    /// A copy-on-write clone of the files (btrfs, XFS): instant, sharing unchanged blocks.
    Reflink,
    /// An overlayfs mount with the golden copy as its lower layer.
    Overlay,
    /// A full copy of the files.
    Copy,
}

/// Unit prices of what a DR posture costs, in one currency, for `resurgo cost`: standby
/// capacity kept running, repository storage, replication transfer and people's time in
/// drills. Every price may be left out: what costs something and has no price is shown as
/// unpriced, never as free. A site may override any of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    /// The currency every price is in (`EUR`, `USD`…): a label, never converted.
    pub currency: String,
    /// One CPU core kept running for an hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_core_hour: Option<Price>,
    /// One GiB of memory kept for an hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_gib_hour: Option<Price>,
    /// One GiB stored for a month (repositories, a standby's copy of its data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_gib_month: Option<Price>,
    /// One GiB sent from a site to another (replication, a standby's stream), charged at the
    /// sending site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_gib: Option<Price>,
    /// One hour of people's time in a drill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_hour: Option<Price>,
    /// Prices that differ at a site (by its name); a price left out there is the one above.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub sites: IndexMap<String, SitePrices>,
}

/// The prices of one site that differ from the system's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SitePrices {
    /// One CPU core kept running for an hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_core_hour: Option<Price>,
    /// One GiB of memory kept for an hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_gib_hour: Option<Price>,
    /// One GiB stored for a month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_gib_month: Option<Price>,
    /// One GiB sent from this site to another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_gib: Option<Price>,
    /// One hour of people's time in a drill whose DR site this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_hour: Option<Price>,
}

/// A unit price: a number, zero or more (a negative or non-finite one is refused where it is
/// written).
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd, Serialize)]
pub struct Price(pub f64);

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if !v.is_finite() || v < 0.0 {
            return Err(serde::de::Error::custom(format!(
                "a price must be a number, zero or more (got {v})"
            )));
        }
        Ok(Price(v))
    }
}

impl JsonSchema for Price {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Price")
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A unit price in the file's currency: a number, zero or more.",
            "type": "number",
            "minimum": 0
        })
    }
}

/// A receiver of notifications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    /// `webhook` (resurgo's own JSON, signed with HMAC-SHA256), `alertmanager` (Prometheus
    /// Alertmanager's v2 API) or `slack` (a Slack-compatible incoming webhook).
    pub kind: ReceiverKind,
    /// Where notifications are posted: the webhook's URL; Alertmanager's base URL
    /// (`http://host:9093`, `/api/v2/alerts` is appended); the incoming webhook's URL. A plain
    /// `http(s)://` URL, or a secret reference (`{secret: {env: NAME}}` or
    /// `{secret: {file: PATH}}`) — required for `slack`, whose URL is its credential.
    pub url: PlainOrSecret,
    /// `webhook` (and only it): the key each request's body is signed with (HMAC-SHA256, in
    /// the `X-Resurgo-Signature` header). A secret reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_key: Option<SecretRef>,
    /// The kinds of events sent (default: all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<NotifyEvent>>,
    /// How long after an event its notification is retried (back-off from 1 s, doubling, at
    /// most 60 s apart) before it is given up and recorded `notification_undelivered` in the
    /// event log with what would have been sent (default 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub give_up_after: Option<Duration>,
    /// Repeats of an event (the same kind, site, service and dataset) within this long of the
    /// first are not sent again: they are counted, and the count goes with the next one sent
    /// (default 60s; `0s` sends every one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe_window: Option<Duration>,
}

impl Receiver {
    /// How long a notification is retried when the spec does not say.
    pub const DEFAULT_GIVE_UP_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);
    /// The de-duplication window when the spec does not say.
    pub const DEFAULT_DEDUPE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

    /// The kinds of events sent: those listed, else all.
    pub fn events(&self) -> &[NotifyEvent] {
        self.events.as_deref().unwrap_or(&NotifyEvent::ALL)
    }

    pub fn give_up_after(&self) -> std::time::Duration {
        self.give_up_after.map_or(Self::DEFAULT_GIVE_UP_AFTER, |d| d.0)
    }

    pub fn dedupe_window(&self) -> std::time::Duration {
        self.dedupe_window.map_or(Self::DEFAULT_DEDUPE_WINDOW, |d| d.0)
    }
}

/// What a receiver speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverKind {
    /// resurgo's JSON (`resurgo.notification/v1`), POSTed and signed with the `hmac_key`.
    Webhook,
    /// Alerts POSTed to Alertmanager's `/api/v2/alerts`; a restored RPO or workspace, or a
    /// finished failover, resolves the alert its trouble raised.
    Alertmanager,
    /// `{"text": …}` POSTed to a Slack-compatible incoming webhook.
    Slack,
}

/// A kind of event a receiver can be sent (as the event log spells it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// A failover or failback began (an agent's, by policy, or a person's).
    FailoverStarted,
    /// A failover or failback ended (its outcome in the message).
    FailoverFinished,
    /// A failover or failback could not run.
    FailoverFailed,
    /// A site's agent stopped its writers: it could not renew its primary lease in time.
    Fenced,
    /// A dataset's newest restorable point at a site is older than its RPO objective.
    RpoBreached,
    /// It is within its objective again.
    RpoRestored,
    /// A backup failed.
    BackupFailed,
    /// A drill ended and passed.
    DrillPassed,
    /// A drill ended and failed.
    DrillFailed,
    /// A failover took a workspace's capacity back.
    WorkspacePreempted,
    /// A preempted workspace is back after failback.
    WorkspaceRestored,
}

impl NotifyEvent {
    /// Every kind, the default of a receiver's `events`.
    pub const ALL: [NotifyEvent; 11] = [
        NotifyEvent::FailoverStarted,
        NotifyEvent::FailoverFinished,
        NotifyEvent::FailoverFailed,
        NotifyEvent::Fenced,
        NotifyEvent::RpoBreached,
        NotifyEvent::RpoRestored,
        NotifyEvent::BackupFailed,
        NotifyEvent::DrillPassed,
        NotifyEvent::DrillFailed,
        NotifyEvent::WorkspacePreempted,
        NotifyEvent::WorkspaceRestored,
    ];

    /// The kind as the spec and the event log spell it (`failover_started`).
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::FailoverStarted => "failover_started",
            NotifyEvent::FailoverFinished => "failover_finished",
            NotifyEvent::FailoverFailed => "failover_failed",
            NotifyEvent::Fenced => "fenced",
            NotifyEvent::RpoBreached => "rpo_breached",
            NotifyEvent::RpoRestored => "rpo_restored",
            NotifyEvent::BackupFailed => "backup_failed",
            NotifyEvent::DrillPassed => "drill_passed",
            NotifyEvent::DrillFailed => "drill_failed",
            NotifyEvent::WorkspacePreempted => "workspace_preempted",
            NotifyEvent::WorkspaceRestored => "workspace_restored",
        }
    }
}

/// A value that is either written in the spec or read from a secret when it is needed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PlainOrSecret {
    Plain(String),
    Secret {
        /// Where the value is read from when it is needed; it is never recorded.
        secret: SecretRef,
    },
}

/// A whole system: all files merged, inputs resolved. What validation and planning read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct System {
    pub name: String,
    pub inputs: IndexMap<String, InputValue>,
    pub sites: IndexMap<String, Site>,
    pub services: IndexMap<String, Service>,
    pub datasets: IndexMap<String, Dataset>,
    pub routes: IndexMap<String, Route>,
    pub objectives: Objectives,
    pub failover: Failover,
    /// The site API (None: every site is on this machine, reached through its files).
    pub api: Option<Api>,
    pub drills: IndexMap<String, Drill>,
    pub workspaces: IndexMap<String, Workspace>,
    /// The unit prices `resurgo cost` reads when it is given no price file.
    pub prices: Option<Prices>,
    pub notifications: IndexMap<String, Receiver>,
}

impl System {
    /// Where site `name`'s agent serves the site API, when the spec declares one.
    pub fn api_address(&self, name: &str) -> Option<String> {
        let api = self.api.as_ref()?;
        let site = self.sites.get(name)?;
        Some(site.api.clone().unwrap_or_else(|| match site.address {
            std::net::IpAddr::V4(a) => format!("{a}:{}", api.port()),
            std::net::IpAddr::V6(a) => format!("[{a}]:{}", api.port()),
        }))
    }
}
