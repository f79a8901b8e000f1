//! `resurgo wal push|fetch`: PostgreSQL's `archive_command` and `restore_command`.
//!
//! They read the site's repository from the state folder (written when archiving is set up
//! or a restore is prepared), not from the spec, so they work without the spec's source and
//! cost one repository open per file. Exit codes follow PostgreSQL's contract: `push` exits
//! non-zero on any failure (PostgreSQL retries); `fetch` exits 1 only when the file is not
//! archived, and 126 on any other failure so that recovery stops rather than promoting early.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use resurgo_controller::protect::open_recorded;
use resurgo_vault::pg;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: WalCommand,
}

#[derive(Debug, clap::Args)]
pub struct Where {
    /// State folder holding the recorded repository (`wal/<site>.json`).
    #[arg(long, env = "RESURGO_STATE", default_value = ".resurgo")]
    pub state: PathBuf,
    /// The site whose repository to use.
    #[arg(long)]
    pub site: String,
    /// The dataset (the log archive's stream).
    #[arg(long)]
    pub dataset: String,
}

#[derive(Debug, Subcommand)]
pub enum WalCommand {
    /// Archive one WAL file (archive_command = '… wal push … %p').
    Push {
        #[command(flatten)]
        at: Where,
        /// The file PostgreSQL hands over (%p).
        path: PathBuf,
    },
    /// Fetch one archived WAL file (restore_command = '… wal fetch … %f %p').
    Fetch {
        #[command(flatten)]
        at: Where,
        /// The file's name (%f).
        name: String,
        /// Where to write it (%p).
        dest: PathBuf,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        WalCommand::Push { at, path } => {
            let result = open_recorded(&at.state, &at.site)
                .map_err(|e| resurgo_vault::VaultError::Store {
                    location: at.site.clone(),
                    message: e.to_string(),
                })
                .and_then(|repo| pg::wal_push(&repo.archive(), &at.dataset, &path));
            if let Err(e) = &result {
                eprintln!("resurgo wal push {}: {e}", path.display());
            }
            Ok(ExitCode::from(pg::wal_push_status(&result)))
        }
        WalCommand::Fetch { at, name, dest } => {
            let result = open_recorded(&at.state, &at.site)
                .map_err(|e| resurgo_vault::VaultError::Store {
                    location: at.site.clone(),
                    message: e.to_string(),
                })
                .and_then(|repo| pg::wal_fetch(&repo.archive(), &at.dataset, &name, &dest));
            if let Err(e) = &result {
                eprintln!("resurgo wal fetch {name}: {e}");
            }
            Ok(ExitCode::from(pg::wal_fetch_status(&result)))
        }
    }
}
