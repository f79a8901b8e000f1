//! The command line: one file per command. Each exposes `Args` (clap) and
//! `run(args) -> anyhow::Result<ExitCode>`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod agent;
pub mod apply;
pub mod backup;
pub mod certs;
pub mod controller;
pub mod cost;
pub mod demo;
pub mod drill;
pub mod example_app;
pub mod failback;
pub mod failover;
pub mod forget;
pub mod maintenance;
pub mod plan;
pub mod replicate;
pub mod repo;
pub mod restore;
pub mod runbook;
pub mod runs;
pub mod schema;
pub mod set_aside;
pub mod set_up;
pub mod shim;
pub mod snapshots;
pub mod status;
pub mod validate;
pub mod verify;
pub mod wal;
pub mod workspace;

/// Disaster recovery as code.
///
/// resurgo keeps a whole system — its sites, services, data and the plan to move them —
/// declared in a spec (YAML, in Git or a folder), keeps every site as declared, and reports
/// or corrects drift.
///
/// Start with `resurgo demo`. Exit codes: 0 success / no change, 1 error, 2 changes pending or
/// drift (plan, status), 64 bad command line.
///
/// Logs go to stderr (stdout is the command's output). RESURGO_LOG sets what is logged: a level
/// (`debug`) or `TARGET=LEVEL` pairs (`resurgo_controller=debug,info`); by default info for
/// resurgo, warn for the libraries it uses. RESURGO_LOG_FORMAT=json writes one JSON object per
/// line (level, target, fields, spans) for log shippers; the default is `text`.
#[derive(Debug, Parser)]
#[command(name = "resurgo", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the quickstart: two sites on this machine, plan, apply, status, a drift healed.
    Demo(demo::Args),
    /// Check a spec: syntax, types, references, cycles, capabilities, capacity, ports.
    Validate(validate::Args),
    /// Print the JSON Schema of a spec file, or of `status`, `runs` or `plan` output.
    Schema(schema::Args),
    /// Compare the spec with what runs and show the changes, in dependency order.
    Plan(plan::Args),
    /// Make the sites match the spec (or apply exactly a saved plan).
    Apply(apply::Args),
    /// Show sites, services, health, drift and the last applied commit.
    Status(status::Args),
    /// Run the reconcile loop: watch the spec and the sites, report and correct drift.
    Controller(controller::Args),
    /// Set up a site anew after it was lost (apply sets up only sites never set up).
    #[command(name = "set-up")]
    SetUp(set_up::Args),
    /// List the data resurgo set aside instead of deleting it, or remove one copy.
    #[command(name = "set-aside")]
    SetAside(set_aside::Args),
    /// Create or check a site's backup repository.
    Repo(repo::Args),
    /// Back up datasets at their home site.
    Backup(backup::Args),
    /// List the snapshots in each site's repository.
    Snapshots(snapshots::Args),
    /// Restore a dataset from a site's repository, to the newest point or a chosen time.
    Restore(restore::Args),
    /// Copy backups to the sites they will be restored at (only what is missing).
    Replicate(replicate::Args),
    /// Prove a backup works: restore it into a scratch place and run the dataset's check.
    Verify(verify::Args),
    /// Remove snapshots the retention policy does not keep (and, with --prune, their data).
    Forget(forget::Args),
    /// Plan moving every service to another site (with --dry-run: a checklist with estimates).
    Failover(failover::Args),
    /// Run a site's agent (or the witness): leases, fencing, heartbeats, automatic failover,
    /// and the site API.
    Agent(agent::Args),
    /// Make the deployment CA and the certificates of the agents, the witness and the
    /// operator for the site API.
    Certs(certs::Args),
    /// Suppress automatic failover for a while (planned work), or allow it again.
    Maintenance(maintenance::Args),
    /// Move the services back where the spec places them: reverse replication, then a planned
    /// switch with no data loss.
    Failback(failback::Args),
    /// The history of failovers and failbacks, with timelines.
    Runs(runs::Args),
    /// The recovery plan as the checklist a team rehearses: each step's owner, what resurgo
    /// runs, how to do it by hand, its measured p50/p95 (stale or never exercised), and the
    /// RTO budget; Markdown or an HTML page.
    Runbook(runbook::Args),
    /// What the DR posture costs per month, per site and per strategy (standby capacity,
    /// repository storage, replication transfer, drills), priced from `--prices` or the spec's
    /// `prices`; and each dataset's other strategy (backup ↔ standby) with its cost, RPO and RTO.
    Cost(cost::Args),
    /// Practise a declared loss (a service, a workload, a site, a link) and keep the
    /// evidence: run a drill, finish one whose process died, list them, render a report.
    Drill(drill::Args),
    /// Workspaces: preemptible dev/test copies of some services and their data at a DR site,
    /// on its spare capacity, taken back first when a failover needs the site: create one
    /// (declared in the spec, or on demand), list, show, refresh or delete them.
    ///
    /// On one machine the workspaces are in the state folder (`--state`); when the spec
    /// declares `api`, each is made, seen, refreshed and deleted by its site's agent
    /// (`/v1/workspaces`). Exit codes: 0 done, 1 failed or refused (the message says what, at
    /// which site, and why — e.g. the site serves production after a failover), 64 a bad
    /// command line (a name the spec does not declare without `--site` and `--services`, or
    /// one it declares with options of a workspace on demand).
    Workspace(workspace::Args),
    /// PostgreSQL's archive and restore commands: push or fetch one WAL file.
    Wal(wal::Args),
    /// A tiny HTTP service used by the quickstart example.
    #[command(name = "example-app")]
    ExampleApp(example_app::Args),
    /// Internal: supervise one service process (started by the local provider).
    #[command(name = "__shim", hide = true)]
    Shim(shim::Args),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Validate(a) => validate::run(a),
        Command::Schema(a) => schema::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Apply(a) => apply::run(a),
        Command::Status(a) => status::run(a),
        Command::Controller(a) => controller::run(a),
        Command::SetUp(a) => set_up::run(a),
        Command::SetAside(a) => set_aside::run(a),
        Command::Repo(a) => repo::run(a),
        Command::Backup(a) => backup::run(a),
        Command::Snapshots(a) => snapshots::run(a),
        Command::Restore(a) => restore::run(a),
        Command::Replicate(a) => replicate::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Forget(a) => forget::run(a),
        Command::Failover(a) => failover::run(a),
        Command::Agent(a) => agent::run(a),
        Command::Certs(a) => certs::run(a),
        Command::Maintenance(a) => maintenance::run(a),
        Command::Failback(a) => failback::run(a),
        Command::Runs(a) => runs::run(a),
        Command::Runbook(a) => runbook::run(a),
        Command::Cost(a) => cost::run(a),
        Command::Drill(a) => drill::run(a),
        Command::Workspace(a) => workspace::run(a),
        Command::Wal(a) => wal::run(a),
        Command::ExampleApp(a) => example_app::run(a),
        Command::Shim(a) => shim::run(a),
    }
}
