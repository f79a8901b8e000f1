//! `resurgo`: disaster recovery as code. `main` only parses the command line and maps the
//! outcome to an exit code; each command lives in its own file under `commands/`.

mod commands;
mod common;
mod exit;
mod logging;
mod remote;
mod render;
mod report;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match commands::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return exit::code(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    // The per-service supervisor writes plain lines to the service's log file of its own.
    if !matches!(cli.command, commands::Command::Shim(_)) {
        logging::init();
    }
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::code(exit::ERROR)
        }
    }
}
