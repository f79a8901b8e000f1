//! `resurgo repo init|check`: create a site's backup repository, or verify one.

use std::process::ExitCode;

use clap::Subcommand;

use crate::common::{Context, SpecArgs};
use crate::exit;
use crate::report::Reporter;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: RepoCommand,
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Create the repository of a site (or of every site that declares one).
    Init {
        #[command(flatten)]
        spec: SpecArgs,
        /// Only this site.
        #[arg(long)]
        site: Option<String>,
        /// Emit JSON lines instead of human output.
        #[arg(long)]
        json: bool,
    },
    /// Check a repository's structure; with --read-data, read and verify every stored byte.
    Check {
        #[command(flatten)]
        spec: SpecArgs,
        #[arg(long)]
        site: Option<String>,
        /// Read and verify all data (slow, thorough).
        #[arg(long)]
        read_data: bool,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (spec, site, json) = match &args.command {
        RepoCommand::Init { spec, site, json } | RepoCommand::Check { spec, site, json, .. } => (spec, site, *json),
    };
    if let Some(desired) = crate::remote::declared(spec) {
        return through_agents(&args, spec, &desired.loaded.system, site.as_deref(), json);
    }
    let Some(ctx) = Context::load(spec, json)? else {
        return Ok(exit::code(exit::ERROR));
    };
    let (system, protector) = (ctx.system(), ctx.protector());
    let sites = crate::common::repository_sites(system, site.as_deref())?;
    let reporter = Reporter::new(json);
    let mut failed = false;
    for site in sites {
        match &args.command {
            RepoCommand::Init { .. } => {
                let step = reporter.step(format!("init repository of site {site}"));
                match protector.init(&site) {
                    Ok(repo) => step.done(
                        &repo.location(),
                        serde_json::json!({"site": site, "location": repo.location()}),
                    ),
                    Err(e) => {
                        failed = true;
                        step.failed(&e.to_string());
                    }
                }
            }
            RepoCommand::Check { read_data, .. } => {
                let what = if *read_data {
                    "check (reading all data)"
                } else {
                    "check"
                };
                let step = reporter.step(format!("{what} repository of site {site}"));
                match protector.open(&site).and_then(|r| Ok(r.check(*read_data)?)) {
                    Ok(report) if report.errors.is_empty() => step.done(
                        &format!(
                            "no errors ({} snapshots, {} packs read)",
                            report.snapshots, report.packs_read
                        ),
                        serde_json::json!({"site": site, "report": report}),
                    ),
                    Ok(report) => {
                        failed = true;
                        step.failed(&format!(
                            "{} errors:\n  {}",
                            report.errors.len(),
                            report.errors.join("\n  ")
                        ));
                    }
                    Err(e) => {
                        failed = true;
                        step.failed(&e.to_string());
                    }
                }
            }
        }
    }
    Ok(exit::code(if failed { exit::ERROR } else { exit::OK }))
}

/// With `api`: each site's agent makes or checks its own repository (the repositories' secrets
/// are at the sites; this host needs none).
fn through_agents(
    args: &Args,
    spec: &SpecArgs,
    system: &resurgo_spec::System,
    only: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use resurgo_api::types::{RepositoryAction, RepositoryDone, RepositoryRequest};
    let body = match &args.command {
        RepoCommand::Init { .. } => RepositoryRequest {
            action: RepositoryAction::Init,
            read_data: false,
        },
        RepoCommand::Check { read_data, .. } => RepositoryRequest {
            action: RepositoryAction::Check,
            read_data: *read_data,
        },
    };
    let client = crate::remote::client(spec, system, std::time::Duration::from_secs(3600))?;
    let mut failed = false;
    for site in crate::common::repository_sites(system, only)? {
        let answer: Result<RepositoryDone, _> =
            client.post(&crate::remote::address(system, &site)?, "/v1/repository", &body);
        match answer {
            Ok(done) if json => println!("{}", serde_json::to_string(&done)?),
            Ok(done) => println!("{site}: {} — {}", done.detail, done.location),
            Err(e) => {
                failed = true;
                eprintln!("{site}: {e}");
            }
        }
    }
    Ok(exit::code(if failed { exit::ERROR } else { exit::OK }))
}
