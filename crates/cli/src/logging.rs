//! Logs: one `tracing` subscriber for the whole process, on stderr, so stdout stays the
//! command's output (`--json` stays pure JSON). The libraries log through `tracing` (with spans:
//! reconcile tick, run, step, backup, agent, group); rustic_core and OpenDAL log through `log`,
//! bridged in.
//!
//! `RESURGO_LOG` filters by target, as `RUST_LOG` does: `debug`, or
//! `resurgo_controller=debug,info` — a bare level sets the default for everything, `TARGET=LEVEL`
//! one target and what is below it. Unset, resurgo's crates log at info and the rest at warn;
//! a target set alone keeps those defaults for the others. `RESURGO_LOG_FORMAT` is `text`
//! (default) or `json`: one object per line with `timestamp`, `level`, `target`, `fields` and
//! the spans with their fields, for log shippers.
//!
//! Decision: `filter::Targets` rather than `EnvFilter` — the same `target=level` syntax without
//! span and field matching, which resurgo does not need, and without the regex engine. A value
//! that does not parse is a warning, not a refusal: a typo in a logging variable must not stop
//! a failover.

use std::str::FromStr;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub const LOG_VAR: &str = "RESURGO_LOG";
pub const FORMAT_VAR: &str = "RESURGO_LOG_FORMAT";

/// Sets up the subscriber from the environment. A bad value is reported on stderr and the
/// default used in its place.
pub fn init() {
    let (filter, filter_error) = match std::env::var(LOG_VAR) {
        Ok(value) => match parse_filter(&value) {
            Ok(filter) => (filter, None),
            Err(e) => (default_filter(), Some(e)),
        },
        Err(_) => (default_filter(), None),
    };
    let (json, format_error) = match std::env::var(FORMAT_VAR).as_deref() {
        Err(_) | Ok("" | "text") => (false, None),
        Ok("json") => (true, None),
        Ok(other) => (false, Some(format!("`{other}` is neither `text` nor `json`"))),
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter).with(QuietRestore);
    // Another subscriber already set (never, in the binary) keeps its place.
    let _ = if json {
        registry.with(fmt.json()).try_init()
    } else {
        registry.with(fmt).try_init()
    };
    if let Some(e) = filter_error {
        tracing::warn!("{LOG_VAR}: {e}; using the default (info for resurgo, warn for the rest)");
    }
    if let Some(e) = format_error {
        tracing::warn!("{FORMAT_VAR}: {e}; using text");
    }
}

/// resurgo's crates (`resurgo`, `resurgo_*`: a target matches its prefix) at info, the rest at
/// warn.
fn default_filter() -> Targets {
    Targets::new()
        .with_target("resurgo", LevelFilter::INFO)
        .with_default(LevelFilter::WARN)
}

/// `LEVEL` or `TARGET=LEVEL`, comma-separated, over the defaults. Unlike `RUST_LOG`, a bare
/// target is refused: `nonsense` is far more often a typo than a crate to trace.
fn parse_filter(value: &str) -> Result<Targets, String> {
    let mut filter = default_filter();
    for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = |text: &str| {
            LevelFilter::from_str(text)
                .map_err(|_| format!("`{text}` is not a level (off, error, warn, info, debug, trace)"))
        };
        match directive.split_once('=') {
            None => {
                // A bare level is the level of everything, resurgo included.
                let level = level(directive)?;
                filter = filter.with_target("resurgo", level).with_default(level);
            }
            Some((target, text)) => {
                let valid = !target.is_empty()
                    && target.split("::").all(|part| {
                        !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    });
                if !valid {
                    return Err(format!(
                        "`{directive}`: `{target}` is not a target (a crate or module path)"
                    ));
                }
                let level = level(text).map_err(|e| format!("`{directive}`: {e}"))?;
                filter = filter.with_target(target, level);
            }
        }
    }
    Ok(filter)
}

/// Drops rustic_core's false alarm on every restore of a single file: it walks the
/// destination for what is already there, and logs an error when there is nothing — the
/// normal case, since resurgo restores only into a destination that does not exist yet. Its
/// other records from the restore (a chmod that failed, …) pass.
struct QuietRestore;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for QuietRestore {
    fn event_enabled(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) -> bool {
        // A record bridged from `log` carries its target as a field, `log.target`.
        #[derive(Default)]
        struct Fields {
            target: String,
            message: String,
        }
        impl tracing::field::Visit for Fields {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "log.target" {
                    self.target = value.to_string();
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.message = format!("{value:?}");
                }
            }
        }
        if event.metadata().level() != &tracing::Level::ERROR {
            return true;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let m = &fields.message;
        !(fields.target == "rustic_core::commands::restore"
            && m.starts_with("Error during collection of files")
            && m.contains("depth: 0")
            && m.contains("NotFound"))
    }
}
