//! `resurgo schema`: the JSON Schema of a spec file, generated from the spec's own types.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_: Args) -> anyhow::Result<ExitCode> {
    print!("{}", resurgo_spec::json_schema());
    Ok(crate::exit::code(crate::exit::OK))
}
