//! The drill report: the one JSON document a drill run writes, and the types it is made of.
//! Every field's doc comment is its description in `schema/drill-report.schema.json`.
//!
//! Times inside a drill are seconds since it started (`at_s`, `start_s`, …), so the phases,
//! the timeline and the measures share one axis; the two wall-clock times (`started`,
//! `ended`) are RFC 3339 strings in UTC, kept as the runner wrote them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The value of [`Report::schema`]: names this format and its version. A new version is made
/// only for an incompatible change (a field removed, renamed or given another meaning).
pub const REPORT_SCHEMA: &str = "resurgo.drill-report/v1";

/// What a drill proved: which spec was tested, what was lost and for how long, what failed,
/// and what was left behind. Markdown, HTML and JUnit XML are renderings of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// The format of this document: always `resurgo.drill-report/v1`.
    pub schema: String,
    /// The run's id, unique per run of a drill (for example `drill-lose-a-20261130T101500Z`).
    pub run: String,
    /// The drill's name in the spec.
    pub drill: String,
    /// Whether the drill ran in a sandbox cut off from production, or against production.
    pub mode: Mode,
    /// What the drill made fail.
    pub scope: Scope,
    /// The commit (or, for a folder, the hash of its files) of the spec that was tested.
    pub spec_commit: String,
    /// The version of resurgo that ran the drill.
    pub resurgo_version: String,
    /// Who started the drill, as `user@host`.
    pub operator: String,
    /// When the drill started (RFC 3339, UTC). Every `*_s` time counts from here.
    pub started: String,
    /// When the drill ended (RFC 3339, UTC); null while it runs, or if it never ended cleanly.
    pub ended: Option<String>,
    /// How long the drill was allowed to run, in seconds; past it, the drill is stopped.
    pub deadline_s: f64,
    /// How the run ended.
    pub outcome: Outcome,
    /// What happened, in order: faults injected, detection, promotion, routes switched, health,
    /// faults reverted, teardown.
    pub timeline: Vec<TimelineEntry>,
    /// How long each phase of the recovery took.
    pub phases: Vec<Phase>,
    /// Recovery time: how long the service was down, against its objective; null when the
    /// drill measures none.
    pub rto: Option<Rto>,
    /// Recovery point: how much acknowledged data was lost, against the objective; null when
    /// the drill measures none.
    pub rpo: Option<Rpo>,
    /// The probes that watched the service through the drill.
    pub probes: Vec<Probe>,
    /// For an isolated drill: the attempts, from inside the sandbox, to reach production; null
    /// when none was made (then isolation is not proven).
    pub isolation: Option<Isolation>,
    /// The checks of the recovered data's integrity.
    pub data_checks: Vec<DataCheck>,
    /// The faults the drill injected, and how each is undone.
    pub faults: Vec<FaultRecord>,
    /// What the drill left behind after its teardown. Always written: an empty list is the
    /// proof that nothing was left.
    pub leftovers: Vec<Leftover>,
    /// The verdict, computed from the rest of the report (`Report::judge`).
    pub verdict: Verdict,
    /// One sentence for each thing that failed, naming it and where; empty when the verdict
    /// is `pass`. Computed with the verdict.
    pub findings: Vec<String>,
}

/// Where a drill runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// In a sandbox: copies of the services and data, which must not reach production.
    Isolated,
    /// Against the production system itself.
    Live,
}

/// What a drill makes fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Scope {
    /// The kind of thing that is lost.
    pub kind: ScopeKind,
    /// The names of the things lost (services, workloads, sites, or links as `a-b`).
    pub targets: Vec<String>,
}

/// The kinds of thing a drill can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    /// One or more services.
    Service,
    /// A workload: a group of services that move together.
    Workload,
    /// A whole site.
    Site,
    /// The network link between two sites.
    Link,
}

/// How a drill run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It ran to its end.
    Completed,
    /// A stop condition fired and the drill was stopped.
    Aborted,
    /// It was stopped at its deadline.
    DeadlinePassed,
    /// It was interrupted (SIGINT or SIGTERM).
    Interrupted,
    /// It could not go on: a step failed.
    Failed,
    /// It has not ended yet.
    InProgress,
}

/// One thing that happened during the drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TimelineEntry {
    /// When, in seconds since the drill started.
    pub at_s: f64,
    /// What kind of event, for example `fault_injected`, `detected`, `promoted`,
    /// `route_switched`, `healthy`, `fault_reverted`, `teardown`.
    pub kind: String,
    /// What happened, in a sentence.
    pub message: String,
}

/// One phase of the recovery, on the drill's time axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Phase {
    /// Which phase.
    pub name: PhaseName,
    /// When it started, in seconds since the drill started.
    pub start_s: f64,
    /// When it ended, in seconds since the drill started.
    pub end_s: f64,
}

/// The phases of a recovery, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhaseName {
    /// From the fault until resurgo noticed it.
    Detect,
    /// From noticing until deciding to fail over.
    Decide,
    /// Stopping lower-priority work (workspaces) to make room at the target.
    Preempt,
    /// Fencing, promoting or restoring the data, starting the services.
    Execute,
    /// Switching the routes until clients reach the new site.
    Propagate,
    /// Moving back to the original site.
    Failback,
    /// Undoing the faults and removing what the drill made.
    Teardown,
}

impl PhaseName {
    /// Every phase, in order.
    pub const ALL: [PhaseName; 7] = [
        PhaseName::Detect,
        PhaseName::Decide,
        PhaseName::Preempt,
        PhaseName::Execute,
        PhaseName::Propagate,
        PhaseName::Failback,
        PhaseName::Teardown,
    ];

    /// The name as the report writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseName::Detect => "detect",
            PhaseName::Decide => "decide",
            PhaseName::Preempt => "preempt",
            PhaseName::Execute => "execute",
            PhaseName::Propagate => "propagate",
            PhaseName::Failback => "failback",
            PhaseName::Teardown => "teardown",
        }
    }
}

/// The recovery time: from the fault until clients were served again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Rto {
    /// The measured RTO in seconds; null if the service never came back.
    pub measured_s: Option<f64>,
    /// The objective the spec declares, in seconds.
    pub objective_s: f64,
    /// Of the RTO, the seconds spent detecting the fault; null if not measured.
    pub detect_s: Option<f64>,
    /// Of the RTO, the seconds spent deciding to fail over; null if not measured.
    pub decide_s: Option<f64>,
    /// Of the RTO, the seconds spent making room at the target; null if not measured.
    pub preempt_s: Option<f64>,
    /// Of the RTO, the seconds spent executing the recovery plan; null if not measured.
    pub execute_s: Option<f64>,
    /// Of the RTO, the seconds until the routes sent clients to the new site; null if not
    /// measured.
    pub propagate_s: Option<f64>,
}

/// The recovery point: how much acknowledged data was lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Rpo {
    /// The objective the spec declares: the most data, in seconds of writes, that may be lost.
    pub objective_s: f64,
    /// Acknowledged writes lost, over every dataset; null if not counted.
    pub writes_lost: Option<u64>,
    /// The data lost, in seconds of writes (the worst dataset); 0 when nothing was lost; null
    /// if not measured.
    pub seconds: Option<f64>,
    /// What each dataset's canary found.
    pub datasets: Vec<CanaryResult>,
}

/// What a canary found in one dataset: writes acknowledged before the fault, against what
/// the recovered copy holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CanaryResult {
    /// The dataset's name in the spec.
    pub dataset: String,
    /// The dataset's type: `postgres`, `sqlite` or `directory`.
    pub kind: String,
    /// The site whose recovered copy was read.
    pub site: String,
    /// Canary writes the dataset acknowledged before the fault.
    pub acknowledged: u64,
    /// Of those, the writes found in the recovered copy; null if it could not be read.
    pub recovered: Option<u64>,
    /// Acknowledged writes missing from the recovered copy; null if not counted.
    pub writes_lost: Option<u64>,
    /// The data lost, in seconds of writes (from the newest recovered write to the newest
    /// acknowledged one); 0 when nothing was lost; null if not measured.
    pub seconds: Option<f64>,
    /// What went wrong reading the canary, or anything else worth saying.
    pub detail: Option<String>,
}

/// A probe that watched a service through the drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Probe {
    /// The probe's name.
    pub name: String,
    /// What the probe exercises.
    pub kind: ProbeKind,
    /// What it probed: a URL, `host:port`, or a service's name.
    pub target: String,
    /// How many times it probed.
    pub attempts: u64,
    /// How many of those failed.
    pub failures: u64,
    /// Whether the probe's own rule was met. A probe never attempted does not pass.
    pub passed: bool,
    /// Why it failed, or anything else worth saying.
    pub detail: Option<String>,
}

/// What a probe exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// The service through its route, as a client reaches it.
    Route,
    /// Canary writes and reads, which measure the data lost.
    Canary,
    /// A production endpoint, watched to prove the drill did not disturb it.
    Production,
}

/// Proof that an isolated drill stayed isolated: production endpoints tried from inside the
/// sandbox, none of which may be reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Isolation {
    /// The sandbox the drill ran in (its name, or its network namespace).
    pub sandbox: String,
    /// Each production endpoint tried from inside the sandbox.
    pub attempts: Vec<ConnectionAttempt>,
}

/// One attempt to reach a production endpoint from inside the sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConnectionAttempt {
    /// Where the attempt was made from (a service or a network namespace in the sandbox).
    pub from: String,
    /// The production endpoint tried, as `host:port`.
    pub to: String,
    /// Whether it was reached (a connection was made): isolation is then broken.
    pub reached: bool,
    /// What happened: `connection refused`, `timed out after 2 s`, `connected`, …
    pub detail: String,
}

/// A check of the recovered data's integrity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DataCheck {
    /// The dataset's name in the spec.
    pub dataset: String,
    /// The site whose copy was checked.
    pub site: String,
    /// How it was checked: `pg_amcheck`, `query`, `integrity_check` or `files`.
    pub method: String,
    /// Whether the data was found sound.
    pub passed: bool,
    /// What was found wrong, or anything else worth saying.
    pub detail: Option<String>,
}

/// A fault the drill injected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FaultRecord {
    /// What kind of fault (for example `kill`, `partition`, `stop_site`, `delay`).
    pub kind: String,
    /// What it was injected into (a service, a site, a link).
    pub target: String,
    /// When it was injected, in seconds since the drill started; null if it never was.
    pub injected_at_s: Option<f64>,
    /// When it was reverted, in seconds since the drill started; null if it never was (an
    /// injected fault never reverted fails the leak check).
    pub reverted_at_s: Option<f64>,
    /// How to undo it by hand, should resurgo not have.
    pub undo: String,
}

/// Something the drill left behind after its teardown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Leftover {
    /// What kind of thing: `process`, `namespace`, `clone`, `route`, `port`, `set_aside`,
    /// `fault`.
    pub kind: String,
    /// Which one (for example `web (pid 4242)`).
    pub what: String,
    /// Where it is, as words that follow "at": `site b`, `host 10.0.0.5`.
    pub place: String,
}

/// Whether the drill proved recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every check passed.
    Pass,
    /// At least one check failed, or a measure is unknown: the findings say which.
    Fail,
}

impl Mode {
    /// The name as the report writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Isolated => "isolated",
            Mode::Live => "live",
        }
    }
}

impl ScopeKind {
    /// The name as the report writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Service => "service",
            ScopeKind::Workload => "workload",
            ScopeKind::Site => "site",
            ScopeKind::Link => "link",
        }
    }
}

impl Outcome {
    /// The name as the report writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Aborted => "aborted",
            Outcome::DeadlinePassed => "deadline_passed",
            Outcome::Interrupted => "interrupted",
            Outcome::Failed => "failed",
            Outcome::InProgress => "in_progress",
        }
    }
}

impl ProbeKind {
    /// The name as the report writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Route => "route",
            ProbeKind::Canary => "canary",
            ProbeKind::Production => "production",
        }
    }
}

impl Verdict {
    /// The name as the report writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
        }
    }
}

impl Report {
    /// How long the drill ran, as far as the report shows: the latest phase end or timeline
    /// entry, in seconds; 0 when it holds neither.
    pub fn duration_s(&self) -> f64 {
        let ends = self.phases.iter().map(|p| p.end_s);
        let events = self.timeline.iter().map(|e| e.at_s);
        ends.chain(events).filter(|s| s.is_finite()).fold(0.0, f64::max)
    }
}
