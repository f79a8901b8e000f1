//! `resurgo schema`: the JSON Schema of a spec file, generated from the spec's own types; with
//! `--output status|runs|plan|cost`, the schema of that command's `--json` output instead,
//! generated from the types the command prints; with `--output openapi`, the site API's
//! OpenAPI document; with `--output drill-report`, the schema of a drill's report. The
//! committed copies under `schema/` are checked to be current by the tests.

use std::process::ExitCode;

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the schema of this command's `--json` output instead of the spec's.
    #[arg(long, value_enum, value_name = "COMMAND")]
    pub output: Option<Output>,
}

/// The commands whose JSON output has a versioned, documented shape.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Output {
    /// `resurgo status --json` (schema/status.schema.json).
    Status,
    /// `resurgo runs --json` (schema/runs.schema.json).
    Runs,
    /// `resurgo plan --json`, and a plan saved with `--out` (schema/plan.schema.json).
    Plan,
    /// The site API that each agent serves, as an OpenAPI 3.1 document
    /// (schema/site-api.openapi.json).
    Openapi,
    /// The report a drill run writes (schema/drill-report.schema.json).
    DrillReport,
    /// `resurgo cost --json`, and `GET /v1/cost` (schema/cost.schema.json).
    Cost,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let text = match args.output {
        None => resurgo_spec::json_schema(),
        Some(Output::Status) => output_schema::<super::status::Status>(),
        Some(Output::Runs) => output_schema::<super::runs::Runs>(),
        Some(Output::Plan) => output_schema::<resurgo_plan::Plan>(),
        Some(Output::Openapi) => resurgo_api::routes::openapi_text(),
        Some(Output::DrillReport) => resurgo_drill::report_schema_text(),
        Some(Output::Cost) => output_schema::<resurgo_plan::cost::CostReport>(),
    };
    print!("{text}");
    Ok(crate::exit::code(crate::exit::OK))
}

/// The schema of what `T` serializes to (a field skipped when empty is optional; one that
/// is always written, even as null, is required), pretty-printed.
fn output_schema<T: JsonSchema>() -> String {
    let schema = SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<T>();
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    text
}
