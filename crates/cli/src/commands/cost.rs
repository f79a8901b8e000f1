//! `resurgo cost`: what the DR posture costs per month — per site and per strategy, standby
//! capacity kept running, repository bytes stored, bytes replicated, drill hours — priced
//! from a price file (`--prices`) or the spec's `prices`; and, per dataset, the other strategy
//! (backup ↔ standby) with its monthly cost, marked cheaper or dearer, and its RPO and RTO.
//!
//! The figures are measured where they are kept: on one machine from the state folder and the
//! repositories; with `api`, each agent measures its own (`GET /v1/cost`) and this command
//! merges them and prices them itself. The model is `resurgo_plan::cost`, pure.
//!
//! `--json` prints [`CostReport`]: a versioned format whose JSON Schema, generated from the
//! types, is `schema/cost.schema.json` (`resurgo schema --output cost`).

use std::path::PathBuf;
use std::process::ExitCode;

use resurgo_plan::cost::{CostReport, Measured, StrategyCost};

use crate::common::{load_or_report, SpecArgs};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// The unit prices: a YAML or JSON file shaped like the spec's `prices` (currency,
    /// cpu_core_hour, memory_gib_hour, storage_gib_month, transfer_gib, drill_hour, sites).
    /// Default: the spec's `prices`; without either, every cost is shown unpriced.
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
    /// Print the costs as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(desired) = load_or_report(&args.spec, args.json)? else {
        return Ok(exit::code(exit::ERROR));
    };
    let system = &desired.loaded.system;
    let prices = match &args.prices {
        None => system.prices.clone(),
        Some(path) => {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: cannot read the price file {}: {e}", path.display());
                    return Ok(exit::code(exit::ERROR));
                }
            };
            let file = resurgo_spec::SourceFile {
                name: path.display().to_string(),
                text,
            };
            match resurgo_spec::read_prices(&file, system) {
                Ok(p) => Some(p),
                Err(d) => {
                    eprint!("{d}");
                    return Ok(exit::code(exit::ERROR));
                }
            }
        }
    };
    let (measured, unanswered) = if system.api.is_some() {
        through_agents(&args.spec, system)?
    } else {
        let engine = args.spec.engine_for(&desired)?;
        (
            resurgo_controller::cost::measure(&engine, system, &args.spec.state, None),
            vec![],
        )
    };
    let mut report = resurgo_plan::cost::cost(system, prices.as_ref(), &measured);
    report.notes.extend(unanswered);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(exit::code(exit::OK))
}

/// Each agent's figures, merged, with the drills run from this host; and a note for each
/// agent that did not answer.
fn through_agents(spec: &SpecArgs, system: &resurgo_spec::System) -> anyhow::Result<(Measured, Vec<String>)> {
    let client = crate::remote::client(spec, system, std::time::Duration::from_secs(120))?;
    Ok(resurgo_controller::fleet::measured(&client, system, &spec.state))
}

fn money(v: f64) -> String {
    format!("{v:.2}")
}

fn duration(s: Option<f64>) -> String {
    match s {
        None => "unknown".into(),
        Some(s) if s < 120.0 => format!("{s:.0}s"),
        Some(s) if s < 7200.0 => format!("{:.0}m", s / 60.0),
        Some(s) => format!("{:.1}h", s / 3600.0),
    }
}

fn lower_bound(complete: bool) -> &'static str {
    if complete {
        ""
    } else {
        " (at least: some of it is unpriced)"
    }
}

fn option(o: &StrategyCost, currency: &str) -> String {
    let strategy = match o.strategy {
        resurgo_spec::Strategy::Backup => "backup",
        resurgo_spec::Strategy::Standby => "standby",
    };
    let mut text = format!("{strategy:<8} {} {currency}/month", money(o.monthly_cost));
    if !o.complete {
        text.push_str(" (at least)");
    }
    match (o.compared, o.difference) {
        (Some(c), Some(d)) => text.push_str(&format!(
            ", {} by {} {currency}",
            match c {
                resurgo_plan::cost::Compared::Cheaper => "cheaper",
                resurgo_plan::cost::Compared::Dearer => "dearer",
                resurgo_plan::cost::Compared::Same => "the same",
            },
            money(d.abs())
        )),
        (Some(c), None) => text.push_str(match c {
            resurgo_plan::cost::Compared::Cheaper => ", cheaper",
            resurgo_plan::cost::Compared::Dearer => ", dearer",
            resurgo_plan::cost::Compared::Same => ", the same",
        }),
        _ => {}
    }
    text.push_str(&format!(
        "; RPO {} ({}), RTO {} ({})",
        duration(o.rpo_s),
        o.rpo_basis,
        duration(o.rto_s),
        o.rto_basis
    ));
    text
}

/// The report as a person reads it: the lines as a table, the sums, then each dataset with
/// its alternative.
pub fn render(r: &CostReport) -> String {
    let currency = r.currency.as_deref().unwrap_or("");
    let mut out = format!(
        "DR cost of {} per month ({}{} hours)\n\n",
        r.system,
        r.currency
            .as_deref()
            .map_or("no prices given: every line unpriced; ".into(), |c| format!("{c}, ")),
        r.hours_per_month
    );
    let rows: Vec<[String; 7]> = r
        .lines
        .iter()
        .map(|l| {
            [
                l.site.clone().unwrap_or_else(|| "-".into()),
                l.part.name().into(),
                serde_json::to_value(l.item)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                l.dataset
                    .clone()
                    .or_else(|| l.service.clone())
                    .unwrap_or_else(|| "-".into()),
                format!("{:.3} {}", l.quantity, l.unit),
                l.price.map_or("-".into(), |p| format!("{p}")),
                l.cost.map_or_else(|| "unpriced".into(), money),
            ]
        })
        .collect();
    let head = ["SITE", "PART", "ITEM", "FOR", "QUANTITY", "PRICE", "COST"].map(String::from);
    let mut widths = [0usize; 7];
    for row in std::iter::once(&head).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&head).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| if i >= 4 { format!("{c:>w$}") } else { format!("{c:<w$}") })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(nothing measured yet: no backups, no standbys, no drills)\n");
    }
    let sums = |list: &[resurgo_plan::cost::Subtotal]| {
        list.iter()
            .map(|s| format!("{} {}{}", s.name, money(s.cost), if s.complete { "" } else { "+" }))
            .collect::<Vec<_>>()
            .join(", ")
    };
    out.push_str(&format!("\nper site: {}\n", sums(&r.sites)));
    out.push_str(&format!("per part: {}\n", sums(&r.strategies)));
    out.push_str(&format!(
        "total:    {} {currency}/month{}\n",
        money(r.total.cost),
        lower_bound(r.total.complete)
    ));
    if !r.unpriced.is_empty() {
        out.push_str(&format!("unpriced: {}\n", r.unpriced.join(", ")));
    }
    if !r.datasets.is_empty() {
        out.push_str("\ndatasets (the strategy declared, then the other):\n");
    }
    for d in &r.datasets {
        out.push_str(&format!("  {} ({})\n", d.dataset, d.service));
        out.push_str(&format!("    now  {}\n", option(&d.current, currency)));
        match (&d.alternative, &d.unavailable) {
            (Some(a), _) => out.push_str(&format!("    else {}\n", option(a, currency))),
            (None, Some(why)) => out.push_str(&format!("    else none: {why}\n")),
            (None, None) => {}
        }
    }
    for note in &r.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}
