//! The tabletop checklist (`resurgo runbook`): the recovery plan as a team rehearses it. Each
//! step with who answers for it, what resurgo runs, how a person does it by hand, and how long
//! it took when it last ran — p50 and p95 over the runs that did it (their journals, the
//! drills' failovers included), with the date of the newest, marked **stale** when that is
//! older than the cadence of the drill that covers the step (90 days without one), or **never
//! exercised** —; and the RTO budget: the objective against the p50s along the critical path.
//!
//! Pure: the caller reads the runs and the clock. Markdown and one self-contained HTML page
//! (inline CSS, the budget drawn in inline SVG, no script, no external resource) come out;
//! every text may come from the spec or a journal, so every text is escaped for the format
//! it goes into.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use resurgo_plan::recovery::{RecoveryStep, Words};
use resurgo_spec::System;

use crate::plan::{human, PlanError, PlanKind, RecoveryPlan, StepSpec};
use crate::run::{RunReport, StepOutcome};

/// How old a step's newest measurement may be when no drill with a cadence covers it.
pub const DEFAULT_FRESHNESS: Duration = Duration::from_secs(90 * 24 * 3600);

/// One measured duration of a step: a run that did the step's work (not one that found it
/// done already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// How long the step's last attempt took, check to finish.
    pub millis: u64,
    /// When it finished (RFC 3339).
    pub at: String,
}

/// The samples of each step, by name, in `runs`: every step a run did (`done`), with its
/// duration and when it finished. A step found already done measured nothing, and one that
/// failed measured a failure: neither counts.
pub fn samples(runs: &[RunReport]) -> BTreeMap<String, Vec<Sample>> {
    let mut out: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for run in runs {
        for step in &run.steps {
            if let (StepOutcome::Done, Some(millis), Some(at)) = (&step.outcome, step.millis, &step.finished) {
                out.entry(step.name.clone())
                    .or_default()
                    .push(Sample { millis, at: at.clone() });
            }
        }
    }
    out
}

/// The `p`th percentile (0 < p ≤ 100) of `sorted` (ascending, not empty) by nearest rank: the
/// smallest value at least `p`% of the values are at or below. Always one of the values.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What the runs measured of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    pub p50: Duration,
    pub p95: Duration,
    /// How many runs did the step.
    pub runs: usize,
    /// When the newest of them finished it (RFC 3339).
    pub newest: String,
}

/// The percentiles and the newest time of `samples`; none when there are none.
pub fn measure(samples: &[Sample]) -> Option<Measured> {
    let newest = samples
        .iter()
        .max_by(|a, b| seconds(&a.at).total_cmp(&seconds(&b.at)))?
        .at
        .clone();
    let mut millis: Vec<u64> = samples.iter().map(|s| s.millis).collect();
    millis.sort_unstable();
    Some(Measured {
        p50: Duration::from_millis(percentile(&millis, 50.0)),
        p95: Duration::from_millis(percentile(&millis, 95.0)),
        runs: samples.len(),
        newest,
    })
}

/// Seconds since the Unix epoch of an RFC 3339 time; an unreadable one counts as the oldest.
fn seconds(at: &str) -> f64 {
    resurgo_spec::units::parse_rfc3339(at).unwrap_or(f64::NEG_INFINITY)
}

/// Whether a step has been exercised lately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exercise {
    /// No run did it.
    Never,
    /// Its newest measurement is within its freshness window.
    Fresh,
    /// Its newest measurement is older than its freshness window.
    Stale,
}

/// One step of the checklist.
#[derive(Debug, Clone)]
pub struct TabletopStep {
    pub step: RecoveryStep,
    /// The wave it belongs to, from 1: the steps of a wave can be done side by side.
    pub wave: usize,
    pub measured: Option<Measured>,
    /// How old its newest measurement may be before it is stale.
    pub fresh_for: Duration,
    /// That window and where it comes from, as words that follow "within": `drill kill-web's
    /// cadence of 30d`, `the default of 90d (no drill covers it)`.
    pub fresh_rule: String,
    pub exercise: Exercise,
}

/// The RTO objective against the time the critical path takes at the measured p50s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// The spec's RTO objective (none: not declared).
    pub objective: Option<Duration>,
    /// The longest chain of steps, each at its p50 (or its estimate when never exercised).
    pub total: Duration,
    /// That chain's steps, in order.
    pub path: Vec<String>,
    /// Of those, the steps counted at their estimate: never exercised.
    pub estimated: Vec<String>,
}

/// The checklist of the recovery plan that moves `from`'s services to `to`.
#[derive(Debug, Clone)]
pub struct Tabletop {
    pub system: String,
    pub from: String,
    pub to: String,
    /// The spec the plan comes from (a commit, or `folder:<digest>`).
    pub source: String,
    /// When the checklist was made (RFC 3339, UTC, seconds).
    pub generated: String,
    /// How many runs of the same move were read for the measurements.
    pub runs_read: usize,
    /// Anything the reader should know first (set by the caller), e.g. that the services
    /// are not where the plan starts from.
    pub note: Option<String>,
    /// The steps in the order they run.
    pub steps: Vec<TabletopStep>,
    pub budget: Budget,
}

/// The freshness window of a step: the shortest cadence of the drills whose scope covers one
/// of its services (a drill run more often is expected to have measured it more recently);
/// without one, [`DEFAULT_FRESHNESS`].
fn window(system: &System, step: &RecoveryStep) -> (Duration, String) {
    let covering: Vec<(&String, &resurgo_spec::Drill)> = system
        .drills
        .iter()
        .filter(|(_, d)| d.scope.services(system).iter().any(|s| step.services.contains(s)))
        .collect();
    let shortest = covering
        .iter()
        .filter_map(|(name, d)| d.cadence.map(|c| (c, *name)))
        .min_by_key(|(c, _)| c.0);
    let default = resurgo_spec::Duration(DEFAULT_FRESHNESS);
    match (shortest, covering.is_empty()) {
        (Some((cadence, name)), _) => (cadence.0, format!("drill {name}'s cadence of {cadence}")),
        (None, true) => (
            DEFAULT_FRESHNESS,
            format!("the default of {default} (no drill covers it)"),
        ),
        (None, false) => (
            DEFAULT_FRESHNESS,
            format!("the default of {default} (the drills that cover it declare no cadence)"),
        ),
    }
}

/// Puts the checklist together: each of `steps` (the recovery plan from `from` to `to`) with
/// what the runs of the same move among `runs` (failovers and failbacks from `from` to `to`,
/// by their plan) measured of it and whether that is fresh at `now`, and the RTO budget.
pub fn tabletop(
    system: &System,
    from: &str,
    to: &str,
    steps: Vec<RecoveryStep>,
    runs: &[RunReport],
    source: &str,
    now: SystemTime,
) -> Result<Tabletop, PlanError> {
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    // Runs of the same move only: `verify` after a failback is not `verify` after a failover.
    let same: Vec<RunReport> = runs
        .iter()
        .filter(|r| {
            [PlanKind::Failover, PlanKind::Failback]
                .iter()
                .any(|k| r.plan == format!("{k}-{from}-to-{to}"))
        })
        .cloned()
        .collect();
    let all = samples(&same);
    let measured: BTreeMap<String, Measured> = steps
        .iter()
        .filter_map(|s| Some((s.name.clone(), measure(all.get(&s.name)?)?)))
        .collect();
    // The plan as the runner would order it, each step at its p50 where one was measured.
    let plan = RecoveryPlan {
        id: format!("tabletop-{from}-to-{to}"),
        kind: PlanKind::Failover,
        epoch: 0,
        steps: steps
            .iter()
            .map(|s| StepSpec {
                name: s.name.clone(),
                depends_on: s.depends_on.clone(),
                timeout: s.timeout.max(Duration::from_millis(1)),
                description: s.description.clone(),
                owner: s.owner.clone(),
                estimate: measured.get(&s.name).map_or(s.estimate, |m| m.p50),
                reversible: false,
            })
            .collect(),
    };
    let waves = plan.waves()?;
    let (total, path) = plan.critical_path()?;
    let wave_of: BTreeMap<&str, usize> = waves
        .iter()
        .enumerate()
        .flat_map(|(i, w)| w.iter().map(move |s| (s.name.as_str(), i + 1)))
        .collect();
    let order: Vec<String> = waves.iter().flatten().map(|s| s.name.clone()).collect();
    let mut by_name: BTreeMap<String, RecoveryStep> = steps.into_iter().map(|s| (s.name.clone(), s)).collect();
    let mut out = Vec::new();
    for name in &order {
        let Some(step) = by_name.remove(name) else { continue };
        let (fresh_for, fresh_rule) = window(system, &step);
        let m = measured.get(name).cloned();
        let exercise = match &m {
            None => Exercise::Never,
            Some(m) if now_s - seconds(&m.newest) > fresh_for.as_secs_f64() => Exercise::Stale,
            Some(_) => Exercise::Fresh,
        };
        out.push(TabletopStep {
            wave: wave_of.get(name.as_str()).copied().unwrap_or(1),
            step,
            measured: m,
            fresh_for,
            fresh_rule,
            exercise,
        });
    }
    let estimated = path.iter().filter(|p| !measured.contains_key(*p)).cloned().collect();
    Ok(Tabletop {
        system: system.name.clone(),
        from: from.to_string(),
        to: to.to_string(),
        source: source.to_string(),
        generated: resurgo_spec::units::format_rfc3339(now, 0),
        runs_read: same.len(),
        note: None,
        steps: out,
        budget: Budget {
            objective: system.objectives.rto.map(|d| d.0),
            total,
            path,
            estimated,
        },
    })
}

/// A duration as people read it: `250ms`, `1.25s`, `1m 5s`.
pub fn short(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if ms < 60_000 {
        let text = format!("{:.2}", d.as_secs_f64());
        return format!("{}s", text.trim_end_matches('0').trim_end_matches('.'));
    }
    human(d)
}

/// The day of an RFC 3339 time (`2026-05-04`), as it was written.
fn day(at: &str) -> &str {
    at.get(..10).unwrap_or(at)
}

/// The budget in one sentence, plain (escaped by the caller).
fn budget_sentence(b: &Budget) -> String {
    let at = if b.estimated.is_empty() {
        "at the measured p50s"
    } else if b.estimated.len() == b.path.len() {
        "at the steps' estimates: none was ever exercised"
    } else {
        "at the measured p50s and the estimates of the steps never exercised"
    };
    let along = format!("{} along the critical path {at}", short(b.total));
    match b.objective {
        Some(o) if b.total <= o => format!(
            "RTO objective {}: {along} — within it, {} to spare.",
            short(o),
            short(o - b.total)
        ),
        Some(o) => format!(
            "RTO objective {}: {along} — over it by {}.",
            short(o),
            short(b.total - o)
        ),
        None => format!("No RTO objective is declared (`objectives.rto`); {along}."),
    }
}

/// The state of a step's measurements, plain: `fresh`, `stale`, `never exercised`.
fn exercise_word(e: Exercise) -> &'static str {
    match e {
        Exercise::Never => "never exercised",
        Exercise::Fresh => "fresh",
        Exercise::Stale => "stale",
    }
}

const INTRO: &str = "Walk through the steps in order. For each: who answers for it, what resurgo runs, and how a \
person does it by hand should resurgo not be able to. Durations are those of past runs of the same step (p50 and \
p95, and the day of the newest); a step is stale when its newest measurement is older than the cadence of the \
drill that covers it (90 days without one).";

/// The checklist as Markdown (CommonMark with GitHub's tables).
pub fn markdown(t: &Tabletop) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Tabletop: failover of {} from {} to {}\n",
        md(&t.system),
        md(&t.from),
        md(&t.to)
    );
    let _ = writeln!(
        o,
        "Spec {} · generated {} · measured from {} run{}.\n",
        md(&t.source),
        md(&t.generated),
        t.runs_read,
        if t.runs_read == 1 { "" } else { "s" }
    );
    if let Some(note) = &t.note {
        let _ = writeln!(o, "{}\n", md(note));
    }
    let _ = writeln!(o, "{INTRO}\n");
    o.push_str("## RTO budget\n\n");
    let _ = writeln!(o, "{}\n", md(&budget_sentence(&t.budget)));
    let _ = writeln!(
        o,
        "Critical path: {}.\n",
        t.budget.path.iter().map(|p| md(p)).collect::<Vec<_>>().join(" → ")
    );
    if !t.budget.estimated.is_empty() {
        let _ = writeln!(
            o,
            "Counted at their estimates (never exercised): {}.\n",
            t.budget.estimated.iter().map(|p| md(p)).collect::<Vec<_>>().join(", ")
        );
    }
    o.push_str("## Steps\n\n");
    o.push_str("| # | step | owner | p50 | p95 | runs | newest | exercised |\n");
    o.push_str("|---|---|---|---|---|---|---|---|\n");
    for (i, s) in t.steps.iter().enumerate() {
        let (p50, p95, runs, newest) = match &s.measured {
            Some(m) => (short(m.p50), short(m.p95), m.runs, day(&m.newest).to_string()),
            None => ("—".into(), "—".into(), 0, "—".into()),
        };
        let state = match s.exercise {
            Exercise::Fresh => "fresh".to_string(),
            e => format!("**{}**", exercise_word(e)),
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {runs} | {} | {state} |",
            i + 1,
            md(&s.step.name),
            md(&s.step.owner),
            md(&p50),
            md(&p95),
            md(&newest)
        );
    }
    o.push('\n');
    let mut wave = 0;
    for s in &t.steps {
        if s.wave != wave {
            wave = s.wave;
            let _ = writeln!(o, "### Wave {wave}\n");
        }
        let _ = writeln!(o, "- [ ] **{}** — owner: {}", md(&s.step.name), md(&s.step.owner));
        let _ = writeln!(o, "  - resurgo runs: {}", md(&s.step.description));
        let _ = writeln!(o, "  - by hand: {}", md_words(&s.step.manual));
        let _ = writeln!(o, "  - measured: {}", md(&measured_sentence(s)));
        if !s.step.depends_on.is_empty() {
            let _ = writeln!(
                o,
                "  - after: {}",
                s.step.depends_on.iter().map(|d| md(d)).collect::<Vec<_>>().join(", ")
            );
        }
        o.push('\n');
    }
    o
}

/// What was measured of a step, in a sentence, plain.
fn measured_sentence(s: &TabletopStep) -> String {
    let window = &s.fresh_rule;
    match (&s.measured, s.exercise) {
        (None, _) => format!(
            "never exercised: no run did this step (estimate {})",
            short(s.step.estimate)
        ),
        (Some(m), e) => format!(
            "p50 {}, p95 {} over {} run{}, newest {}{}",
            short(m.p50),
            short(m.p95),
            m.runs,
            if m.runs == 1 { "" } else { "s" },
            day(&m.newest),
            if e == Exercise::Stale {
                format!(" — stale: older than {window}")
            } else {
                format!(" — within {window}")
            }
        ),
    }
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#222;line-height:1.4}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}h3{font-size:1.05rem}
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums}
.stale,.never,.over{color:#b00020;font-weight:bold}.note{background:#fff6d5;padding:.5rem}.fresh,.within{color:#2c7a2c}
ol.steps{list-style:none;padding-left:0}ol.steps>li{border:1px solid #ddd;border-radius:.3rem;padding:.5rem .75rem;margin:.5rem 0}
ol.steps label{font-weight:bold}dl{margin:.25rem 0 0 1.6rem;display:grid;grid-template-columns:max-content auto;gap:.15rem .75rem}
dt{color:#555}dd{margin:0}code{background:#f4f4f4;padding:0 .2rem;border-radius:.2rem;word-break:break-all}
@media print{input{display:none}ol.steps>li{break-inside:avoid}}
";

/// The checklist as one self-contained HTML5 page: inline CSS, no script, no external
/// resource (its Content-Security-Policy forbids both); the boxes can be ticked while
/// rehearsing.
pub fn html(t: &Tabletop) -> String {
    let mut o = String::new();
    let title = format!("Tabletop: failover of {} from {} to {}", t.system, t.from, t.to);
    let _ = write!(
        o,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <link rel=\"icon\" href=\"data:,\">\n\
         <title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n",
        escape(&title)
    );
    let _ = writeln!(o, "<h1>{}</h1>", escape(&title));
    let _ = writeln!(
        o,
        "<p>Spec <code>{}</code> · generated {} · measured from {} run{}.</p>",
        escape(&t.source),
        escape(&t.generated),
        t.runs_read,
        if t.runs_read == 1 { "" } else { "s" }
    );
    if let Some(note) = &t.note {
        let _ = writeln!(o, "<p class=\"note\">{}</p>", escape(note));
    }
    let _ = writeln!(o, "<p>{}</p>", escape(INTRO));
    o.push_str("<h2>RTO budget</h2>\n");
    let class = match t.budget.objective {
        Some(obj) if t.budget.total > obj => "over",
        Some(_) => "within",
        None => "",
    };
    let _ = writeln!(o, "<p class=\"{class}\">{}</p>", escape(&budget_sentence(&t.budget)));
    let _ = writeln!(
        o,
        "<p>Critical path: {}.</p>",
        t.budget.path.iter().map(|p| escape(p)).collect::<Vec<_>>().join(" → ")
    );
    o.push_str(&budget_svg(t));
    if !t.budget.estimated.is_empty() {
        let _ = writeln!(
            o,
            "<p>Counted at their estimates (never exercised): {}.</p>",
            t.budget
                .estimated
                .iter()
                .map(|p| escape(p))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    o.push_str("<h2>Steps</h2>\n<table class=\"summary\">\n<thead><tr><th>#</th><th>step</th><th>owner</th><th>p50</th><th>p95</th><th>runs</th><th>newest</th><th>exercised</th></tr></thead>\n<tbody>\n");
    for (i, s) in t.steps.iter().enumerate() {
        let (p50, p95, runs, newest) = match &s.measured {
            Some(m) => (short(m.p50), short(m.p95), m.runs, day(&m.newest).to_string()),
            None => ("—".into(), "—".into(), 0, "—".into()),
        };
        let class = match s.exercise {
            Exercise::Never => "never",
            Exercise::Fresh => "fresh",
            Exercise::Stale => "stale",
        };
        let _ = writeln!(
            o,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{runs}</td><td>{}</td><td class=\"{class}\">{}</td></tr>",
            i + 1,
            escape(&s.step.name),
            escape(&s.step.owner),
            escape(&p50),
            escape(&p95),
            escape(&newest),
            exercise_word(s.exercise)
        );
    }
    o.push_str("</tbody>\n</table>\n");
    let mut wave = 0;
    for (i, s) in t.steps.iter().enumerate() {
        if s.wave != wave {
            if wave != 0 {
                o.push_str("</ol>\n");
            }
            wave = s.wave;
            let _ = writeln!(o, "<h3>Wave {wave}</h3>\n<ol class=\"steps\">");
        }
        let id = format!("step-{}", i + 1);
        let _ = writeln!(
            o,
            "<li><input type=\"checkbox\" id=\"{id}\"> <label for=\"{id}\">{}</label>\n<dl>",
            escape(&s.step.name)
        );
        let _ = writeln!(o, "<dt>owner</dt><dd>{}</dd>", escape(&s.step.owner));
        let _ = writeln!(o, "<dt>resurgo runs</dt><dd>{}</dd>", escape(&s.step.description));
        let _ = writeln!(o, "<dt>by hand</dt><dd>{}</dd>", html_words(&s.step.manual));
        let class = match s.exercise {
            Exercise::Never => " class=\"never\"",
            Exercise::Stale => " class=\"stale\"",
            Exercise::Fresh => "",
        };
        let _ = writeln!(o, "<dt>measured</dt><dd{class}>{}</dd>", escape(&measured_sentence(s)));
        if !s.step.depends_on.is_empty() {
            let _ = writeln!(o, "<dt>after</dt><dd>{}</dd>", escape(&s.step.depends_on.join(", ")));
        }
        o.push_str("</dl></li>\n");
    }
    if wave != 0 {
        o.push_str("</ol>\n");
    }
    o.push_str("</body>\n</html>\n");
    o
}

/// The RTO budget drawn: the critical path's steps as consecutive bars, each as long as its
/// p50 (grey when never exercised: its estimate), and the objective as a red line.
fn budget_svg(t: &Tabletop) -> String {
    const WIDTH: f64 = 760.0;
    let b = &t.budget;
    let objective = b.objective.unwrap_or(Duration::ZERO);
    let scale = b.total.max(objective).as_secs_f64();
    let x = |d: Duration| {
        if scale > 0.0 {
            10.0 + WIDTH * d.as_secs_f64() / scale
        } else {
            10.0
        }
    };
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"74\" viewBox=\"0 0 {} 74\" role=\"img\" aria-label=\"{}\">",
        WIDTH + 20.0,
        WIDTH + 20.0,
        escape(&budget_sentence(b))
    );
    let _ = writeln!(
        o,
        "<rect x=\"10\" y=\"10\" width=\"{WIDTH}\" height=\"24\" fill=\"#f4f4f4\"/>"
    );
    let mut at = Duration::ZERO;
    for (i, name) in b.path.iter().enumerate() {
        let Some(step) = t.steps.iter().find(|s| &s.step.name == name) else {
            continue;
        };
        let (took, fill) = match &step.measured {
            Some(m) => (m.p50, if i % 2 == 0 { "#4c78a8" } else { "#72b7b2" }),
            None => (step.step.estimate, "#bbbbbb"),
        };
        let (x0, x1) = (x(at), x(at + took));
        let what = match &step.measured {
            Some(_) => "p50",
            None => "estimate, never exercised",
        };
        let _ = writeln!(
            o,
            "<rect x=\"{x0:.1}\" y=\"10\" width=\"{:.1}\" height=\"24\" fill=\"{fill}\" stroke=\"#fff\"><title>{}</title></rect>",
            (x1 - x0).max(0.5),
            escape(&format!("{name}: {} ({what})", short(took)))
        );
        at += took;
    }
    // The total under the bar's end, on the side where there is room.
    let (label_x, anchor) = if x(b.total) < WIDTH / 2.0 {
        (x(b.total).max(10.0), "start")
    } else {
        (x(b.total), "end")
    };
    let _ = writeln!(
        o,
        "<text x=\"{label_x:.1}\" y=\"52\" font-size=\"12\" fill=\"#222\" text-anchor=\"{anchor}\">{}</text>",
        escape(&format!("critical path {}", short(b.total)))
    );
    if let Some(obj) = b.objective {
        let _ = writeln!(
            o,
            "<line x1=\"{0:.1}\" y1=\"4\" x2=\"{0:.1}\" y2=\"40\" stroke=\"#d62728\" stroke-width=\"2\"/><text x=\"{0:.1}\" y=\"68\" font-size=\"12\" fill=\"#d62728\" text-anchor=\"end\">{1}</text>",
            x(obj),
            escape(&format!("objective {}", short(obj)))
        );
    }
    o.push_str("</svg></figure>\n");
    o
}

use resurgo_drill::{escape_html as escape, escape_markdown as md};

/// A code span holding `code` exactly: fenced by more backticks than any run inside it, padded
/// with a space when it starts or ends with a backtick or a space (CommonMark strips one).
fn md_code(code: &str) -> String {
    let code: String = code
        .chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() || matches!(c, '\u{fffe}' | '\u{ffff}') => '\u{fffd}',
            c => c,
        })
        .collect();
    let longest = code.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if code.starts_with(['`', ' ']) || code.ends_with(['`', ' ']) {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{code}{pad}{fence}")
}

fn md_words(words: &[Words]) -> String {
    words
        .iter()
        .map(|w| match w {
            Words::Text(t) => md(t),
            Words::Code(c) => md_code(c),
        })
        .collect()
}

fn html_words(words: &[Words]) -> String {
    words
        .iter()
        .map(|w| match w {
            Words::Text(t) => escape(t),
            Words::Code(c) => format!("<code>{}</code>", escape(c)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{RunOutcome, StepReport};

    fn system(drills: &str) -> System {
        let text = format!(
            "apiVersion: resurgo.dev/v1alpha1
system: shop
sites:
  a:
    provider: local
    address: 127.0.1.1
    capacity: {{ cpu: 4, memory: 4Gi }}
    repository: {{ url: /r/a, password: {{ env: P }} }}
    owners: [ops-a]
  b:
    provider: local
    address: 127.0.2.1
    capacity: {{ cpu: 4, memory: 4Gi }}
    repository: {{ url: /r/b, password: {{ env: P }} }}
services:
  web:
    command: web
    ports: [8080]
    site: a
    standby: [b]
    owners: [\"<team-web>\"]
  api:
    command: api
    ports: [8081]
    site: a
    standby: [b]
datasets:
  notes: {{ service: web, type: sqlite, path: notes.db }}
routes:
  front: {{ service: web, type: proxy, listen: 127.0.0.1:8080 }}
objectives: {{ rto: 30s, rpo: 5m }}
{drills}"
        );
        match resurgo_spec::load(
            vec![resurgo_spec::SourceFile {
                name: "s.yaml".into(),
                text,
            }],
            &[],
        ) {
            Ok(l) => l.system,
            Err(e) => panic!("{e}"),
        }
    }

    fn run(id: &str, at: &str, steps: &[(&str, u64)]) -> RunReport {
        RunReport {
            run: id.into(),
            plan: "failover-a-to-b".into(),
            kind: PlanKind::Failover,
            epoch: 1,
            outcome: RunOutcome::Succeeded,
            steps: steps
                .iter()
                .map(|(name, ms)| StepReport {
                    name: name.to_string(),
                    started: Some(at.into()),
                    finished: Some(at.into()),
                    millis: Some(*ms),
                    outcome: StepOutcome::Done,
                })
                .collect(),
            notes: vec![],
        }
    }

    fn at(text: &str) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(resurgo_spec::units::parse_rfc3339(text).unwrap())
    }

    #[test]
    fn percentiles_are_by_nearest_rank() {
        assert_eq!(percentile(&[7], 50.0), 7);
        assert_eq!(percentile(&[7], 95.0), 7);
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), 2);
        assert_eq!(percentile(&[1, 2, 3, 4], 95.0), 4);
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 50.0), 50);
        assert_eq!(percentile(&hundred, 95.0), 95);
    }

    #[test]
    fn only_steps_a_run_did_are_measured_with_their_newest_time() {
        let mut r = run("r2", "2026-05-02T10:00:00.000Z", &[("fence a", 300), ("verify", 900)]);
        r.steps[1].outcome = StepOutcome::AlreadyDone;
        let mut failed = run("r3", "2026-05-03T10:00:00.000Z", &[("fence a", 50_000)]);
        failed.steps[0].outcome = StepOutcome::Failed {
            error: "timed out".into(),
        };
        let runs = [
            run("r1", "2026-05-01T10:00:00.000Z", &[("fence a", 100), ("verify", 200)]),
            r,
            failed,
            run("r4", "2026-04-30T10:00:00.000Z", &[("fence a", 200)]),
        ];
        let all = samples(&runs);
        assert_eq!(all["fence a"].len(), 3, "the failed attempt does not count");
        assert_eq!(all["verify"].len(), 1, "found already done: measured nothing");
        let m = measure(&all["fence a"]).unwrap();
        assert_eq!(m.p50, Duration::from_millis(200));
        assert_eq!(m.p95, Duration::from_millis(300));
        assert_eq!(m.runs, 3);
        assert_eq!(m.newest, "2026-05-02T10:00:00.000Z");
        assert!(measure(&[]).is_none());
    }

    #[test]
    fn a_step_is_stale_past_the_cadence_of_the_drill_that_covers_it_and_never_exercised_without_runs() {
        let drills = "drills:\n  kill-web:\n    scope: { service: web }\n    faults: [kill: web]\n    mode: live\n    stop: [unavailable_for: 1m]\n    cadence: 7d\n";
        let sys = system(drills);
        let steps = resurgo_plan::recovery::failover_steps(&sys, "a", "b").unwrap();
        let ran = [
            "fence a",
            "restore notes at b",
            "assign b as primary",
            "start web at b",
            "start api at b",
            "switch route front to b",
            "verify",
        ];
        let old: Vec<(&str, u64)> = ran.iter().map(|s| (*s, 1000)).collect();
        let runs = [run("r1", "2026-04-01T10:00:00.000Z", &old)];
        let t = tabletop(&sys, "a", "b", steps, &runs, "folder:abc", at("2026-04-20T10:00:00Z")).unwrap();
        let step = |name: &str| t.steps.iter().find(|s| s.step.name == name).unwrap();
        // web's steps: drill kill-web (7d) covers them; 19 days is stale.
        assert_eq!(step("start web at b").exercise, Exercise::Stale);
        assert_eq!(step("start web at b").fresh_rule, "drill kill-web's cadence of 7d");
        assert_eq!(step("fence a").exercise, Exercise::Stale, "fence is for web too");
        // api's: no drill covers it, 90 days by default: fresh.
        assert_eq!(step("start api at b").exercise, Exercise::Fresh);
        assert_eq!(step("start api at b").fresh_for, DEFAULT_FRESHNESS);
        assert_eq!(step("notify").exercise, Exercise::Never);
        let mut back = run("r2", "2026-04-19T10:00:00.000Z", &[("verify", 5)]);
        back.plan = "failback-b-to-a".into();
        let steps = resurgo_plan::recovery::failover_steps(&sys, "a", "b").unwrap();
        let t = tabletop(&sys, "a", "b", steps, &[back], "folder:abc", at("2026-04-20T10:00:00Z")).unwrap();
        let verify = t.steps.iter().find(|s| s.step.name == "verify").unwrap();
        assert_eq!(
            verify.exercise,
            Exercise::Never,
            "a failback's verify is another move's"
        );
        assert_eq!(t.runs_read, 0);
        assert_eq!(t.generated, "2026-04-20T10:00:00Z");
        assert_eq!(t.steps[0].step.name, "preempt workspaces at b", "in the order they run");
        assert_eq!(t.steps[1].step.name, "fence a");
        assert_eq!((t.steps[0].wave, t.steps[1].wave), (1, 1));
    }

    #[test]
    fn the_budget_sums_the_p50s_along_the_critical_path() {
        let sys = system("");
        let steps = resurgo_plan::recovery::failover_steps(&sys, "a", "b").unwrap();
        let runs = [
            run(
                "r1",
                "2026-05-01T10:00:00.000Z",
                &[
                    ("fence a", 2000),
                    ("restore notes at b", 5000),
                    ("assign b as primary", 100),
                    ("start web at b", 3000),
                    ("start api at b", 2000),
                    ("switch route front to b", 400),
                ],
            ),
            run("r2", "2026-05-02T10:00:00.000Z", &[("fence a", 4000)]),
        ];
        let t = tabletop(&sys, "a", "b", steps, &runs, "folder:abc", at("2026-05-03T00:00:00Z")).unwrap();
        // fence (p50 of 2 s and 4 s: 2 s) → restore 5 s → assign 0.1 s, then either start api
        // (2 s, nothing after it) or start web 3 s → the route 0.4 s → verify (never exercised:
        // its estimate, 1 s): the longer chain.
        assert_eq!(
            t.budget.total,
            Duration::from_millis(2000 + 5000 + 100 + 3000 + 400 + 1000)
        );
        assert_eq!(
            t.budget.path,
            [
                "fence a",
                "restore notes at b",
                "assign b as primary",
                "start web at b",
                "switch route front to b",
                "verify"
            ]
        );
        assert_eq!(
            t.budget.estimated,
            ["verify"],
            "notify takes no time: verify, first in order, ends the path"
        );
        assert_eq!(t.budget.objective, Some(Duration::from_secs(30)));
        assert_eq!(
            budget_sentence(&t.budget),
            "RTO objective 30s: 11.5s along the critical path at the measured p50s and the estimates of the steps \
             never exercised — within it, 18.5s to spare."
        );
    }

    #[test]
    fn markdown_and_html_show_owners_measures_and_escape_every_text() {
        let sys = system("");
        let steps = resurgo_plan::recovery::failover_steps(&sys, "a", "b").unwrap();
        let runs = [run("r1", "2026-05-01T10:00:00.000Z", &[("start web at b", 1234)])];
        let t = tabletop(&sys, "a", "b", steps, &runs, "folder:abc", at("2026-05-03T00:00:00Z")).unwrap();
        let md = markdown(&t);
        assert!(md.starts_with("# Tabletop: failover of shop from a to b\n"), "{md}");
        assert!(
            md.contains("| 5 | start web at b | \\<team-web\\> | 1.23s | 1.23s | 1 | 2026-05-01 | fresh |"),
            "{md}"
        );
        assert!(
            md.contains("| 2 | fence a | ops-a | — | — | 0 | — | **never exercised** |"),
            "{md}"
        );
        assert!(md.contains("- [ ] **fence a** — owner: ops-a\n"), "{md}");
        assert!(
            md.contains("  - by hand: stop the services at `a` (`127.0.1.1`): `web`, `api` — on its host"),
            "{md}"
        );
        assert!(md.contains("## RTO budget"));
        let html = html(&t);
        assert!(html.contains("<td>&lt;team-web&gt;</td>"), "{html}");
        assert!(!html.contains("<team-web>"), "nothing unescaped");
        assert!(!html.contains("<script"), "no script");
        assert!(html.contains("<code>127.0.1.1</code>"));
        assert!(html.contains("<td class=\"never\">never exercised</td>"));
        assert!(html.ends_with("</html>\n"));
        assert!(
            html.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""),
            "the budget drawn"
        );
        assert!(html.contains("<title>start web at b: 1.23s (p50)</title>"), "{html}");
    }

    #[test]
    fn code_keeps_its_backticks_and_text_its_markup_escaped() {
        assert_eq!(md_code("pg_ctl promote"), "`pg_ctl promote`");
        assert_eq!(md_code("a`b"), "``a`b``");
        assert_eq!(md_code("`x"), "`` `x ``");
        assert_eq!(md("<b>|*_x_"), "\\<b\\>\\|\\*\\_x\\_");
        assert_eq!(md("kill_web"), "kill_web");
        assert_eq!(escape("<a href='x'>&"), "&lt;a href=&#39;x&#39;&gt;&amp;");
    }
}
