//! The dashboard each agent serves (`/ui`, through the site API): the whole system at a glance
//! — every site (this one, and the others through their agents' APIs, as `resurgo status`
//! sees them), services and drift, datasets' RPO age against the objective, standby lag, roles
//! and epochs, runs, drills, workspaces and the latest events — and the actions a person may
//! start from it (failover, failback, maintenance, an isolated drill), each behind a page that
//! names its consequences first.
//!
//! Everything here renders HTML from data already gathered (`api.rs` gathers it and acts); the
//! frame, static files and signing in are the site API's (`resurgo_api::ui`). Pages read
//! without JavaScript; the script only keeps them live.

use std::fmt::Write as _;

use resurgo_api::types::{DatasetStatus, Run, Status};
use resurgo_api::ui::escape;
use resurgo_runbook::run::{RunOutcome, StepOutcome};
use resurgo_spec::{Strategy, System};

use crate::events::Event;

/// What the dashboard shows, gathered when it is asked for.
pub struct View<'a> {
    /// The site whose agent serves the page.
    pub here: &'a str,
    /// The spec as written (where services are placed, what is declared).
    pub written: &'a System,
    /// The spec with the roles applied: where services are active now.
    pub current: &'a System,
    /// Every site's status, through the agents.
    pub status: &'a Status,
    /// Each site's runs (newest first), or why its agent did not give them.
    pub runs: Vec<(String, Result<Vec<Run>, String>)>,
    /// The drills this site ran (newest first).
    pub drills: Vec<resurgo_drill::Report>,
    /// The latest events of this site's event log (newest first).
    pub events: Vec<Event>,
}

/// One action the dashboard offers, as the confirmation page's query names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Move the services active at `from` to `to` (a failover, or a failback to their home).
    Move {
        from: String,
        to: String,
        failback: bool,
    },
    Maintenance {
        on: bool,
    },
    /// Run an isolated drill at this site (its DR site).
    Drill {
        name: String,
    },
}

impl Action {
    /// The action a confirmation's query (or an action's form) names, against `current`.
    pub fn parse(fields: &[(String, String)], written: &System, current: &System) -> Result<Action, String> {
        let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        match field("action") {
            Some(kind @ ("failover" | "failback")) => {
                let to = field("to").ok_or("a move needs `to`: the site to move to")?;
                if !written.sites.contains_key(to) {
                    return Err(format!("no site `{to}` in the spec"));
                }
                let failback = kind == "failback";
                // The group moved: on a failover, the services placed and active elsewhere with
                // a standby at `to`; on a failback, those placed at `to` and active elsewhere.
                let from = current
                    .services
                    .iter()
                    .filter(|(_, s)| s.site != to)
                    .filter_map(|(name, s)| {
                        let home = &written.services.get(name)?.site;
                        let fits = if failback {
                            home == to
                        } else {
                            home == &s.site && s.standby.iter().any(|b| b == to)
                        };
                        fits.then(|| s.site.clone())
                    })
                    .next()
                    .ok_or_else(|| format!("nothing to {kind} to `{to}`"))?;
                Ok(Action::Move {
                    from,
                    to: to.to_string(),
                    failback,
                })
            }
            Some("maintenance-on") => Ok(Action::Maintenance { on: true }),
            Some("maintenance-off") => Ok(Action::Maintenance { on: false }),
            Some("drill") => {
                let name = field("drill").ok_or("a drill needs `drill`: its name")?;
                if !written.drills.contains_key(name) {
                    return Err(format!("no drill `{name}` in the spec"));
                }
                Ok(Action::Drill { name: name.to_string() })
            }
            Some(other) => Err(format!(
                "no action `{other}`: failover, failback, maintenance-on, maintenance-off or drill"
            )),
            None => Err("no action named".into()),
        }
    }

    /// The confirmation page's query for this action.
    fn query(&self) -> String {
        match self {
            Action::Move { to, failback, .. } => {
                format!(
                    "action={}&amp;to={}",
                    if *failback { "failback" } else { "failover" },
                    escape(to)
                )
            }
            Action::Maintenance { on } => format!("action=maintenance-{}", if *on { "on" } else { "off" }),
            Action::Drill { name } => format!("action=drill&amp;drill={}", escape(name)),
        }
    }

    fn label(&self) -> String {
        match self {
            Action::Move {
                from,
                to,
                failback: false,
            } => format!("Fail over {from} → {to}"),
            Action::Move {
                from,
                to,
                failback: true,
            } => format!("Fail back {from} → {to}"),
            Action::Maintenance { on: true } => "Turn maintenance on".into(),
            Action::Maintenance { on: false } => "Turn maintenance off".into(),
            Action::Drill { name } => format!("Run isolated drill {name}"),
        }
    }
}

/// The actions the dashboard served by `here` offers now.
pub fn actions(here: &str, written: &System, current: &System, status: &Status) -> Vec<Action> {
    let mut out = Vec::new();
    for role in &status.roles {
        let Some(home) = role.group.strip_prefix("site-") else {
            continue;
        };
        if role.primary == home {
            let mut targets: Vec<&String> = written
                .services
                .values()
                .filter(|s| s.site == home)
                .flat_map(|s| s.standby.iter())
                .collect();
            targets.sort();
            targets.dedup();
            for to in targets {
                out.push(Action::Move {
                    from: home.to_string(),
                    to: to.clone(),
                    failback: false,
                });
            }
        } else {
            out.push(Action::Move {
                from: role.primary.clone(),
                to: home.to_string(),
                failback: true,
            });
        }
    }
    out.push(Action::Maintenance {
        on: status.maintenance.is_none(),
    });
    for (name, drill) in &written.drills {
        if drill.mode == resurgo_spec::DrillMode::Isolated && dr_site(current, drill).as_deref() == Some(here) {
            out.push(Action::Drill { name: name.clone() });
        }
    }
    out
}

/// Where an isolated drill runs its test failover: the first standby site of a service in
/// its scope (as the drill runner picks it).
pub fn dr_site(system: &System, drill: &resurgo_spec::Drill) -> Option<String> {
    drill
        .scope
        .services(system)
        .iter()
        .find_map(|s| system.services.get(s)?.standby.first().cloned())
}

/// The dashboard's live part: everything but the frame and the events.
pub fn panel(view: &View) -> String {
    let mut h = String::new();
    let status = view.status;
    let sync = if status.in_sync {
        "<span class=\"ok\">in sync</span>"
    } else {
        "<span class=\"warn\">not in sync</span>"
    };
    let _ = writeln!(
        h,
        "<h1>System {} <span class=\"note\">— spec {}, {sync}</span></h1>",
        escape(&status.system),
        escape(&status.desired)
    );
    if let Some(m) = &status.maintenance {
        let _ = writeln!(
            h,
            "<p class=\"warn\" id=\"maintenance\">Maintenance is on (by {}, {} s left): no agent fails over by itself.</p>",
            escape(&m.by),
            m.seconds_left
        );
    }
    if let Some(e) = &status.roles_error {
        let _ = writeln!(h, "<p class=\"bad\">Roles unknown: {}</p>", escape(e));
    }
    sites(&mut h, status);
    roles(&mut h, status);
    datasets(&mut h, &status.datasets);
    workspaces(&mut h, status);
    runs(&mut h, &view.runs);
    drills(&mut h, &view.drills);
    let _ = writeln!(
        h,
        "<h2 id=\"cost\">Cost of DR</h2>\n<p><a class=\"action\" href=\"/ui/cost\">What this posture costs a month</a> <span class=\"note\">per site and strategy, and each dataset's cheaper or dearer alternative, from what the sites measured (it lists the repositories: a few seconds)</span></p>"
    );
    let _ = writeln!(h, "<h2 id=\"actions\">Actions</h2>\n<p>");
    for action in actions(view.here, view.written, view.current, status) {
        let danger = if matches!(action, Action::Move { .. }) {
            " danger"
        } else {
            ""
        };
        let _ = write!(
            h,
            "<a class=\"action{danger}\" href=\"/ui/confirm?{}\">{}</a>",
            action.query(),
            escape(&action.label())
        );
    }
    let _ = writeln!(
        h,
        "</p>\n<p class=\"note\">Each action first shows what it will do. Live drills run from the CLI (`resurgo drill run NAME --live`).</p>"
    );
    h
}

/// The whole dashboard page's body: the live part and the latest events.
pub fn body(view: &View) -> String {
    let mut h = format!("<div id=\"panel\">\n{}</div>\n", panel(view));
    let _ = writeln!(
        h,
        "<h2>Events at {}</h2>\n<ol class=\"events\" id=\"events\">",
        escape(view.here)
    );
    for e in &view.events {
        let _ = writeln!(h, "{}", event_item(e));
    }
    h.push_str("</ol>\n");
    h
}

fn event_item(e: &Event) -> String {
    let kind = e.kind.to_string();
    let place: Vec<&str> = [&e.site, &e.service, &e.dataset]
        .into_iter()
        .filter_map(|p| p.as_deref())
        .collect();
    let class = if e.kind.is_trouble() { " class=\"trouble\"" } else { "" };
    format!(
        "<li{class}>{}  {}  {}  {}</li>",
        escape(&e.time),
        escape(&kind),
        escape(&place.join(" ")),
        escape(&e.message)
    )
}

fn sites(h: &mut String, status: &Status) {
    let _ = writeln!(h, "<h2 id=\"sites\">Sites</h2>\n<div class=\"cards\">");
    for site in &status.sites {
        let state = if site.state == "reachable" {
            "<span class=\"ok\">reachable</span>".to_string()
        } else {
            format!("<span class=\"bad\">{}</span>", escape(&site.state))
        };
        let reason = site
            .reason
            .as_deref()
            .map(|r| format!("<div class=\"note\">{}</div>", escape(r)))
            .unwrap_or_default();
        let _ = writeln!(
            h,
            "<div class=\"card\" data-site=\"{0}\" data-state=\"{1}\"><h3>{0} <span class=\"note\">{2}</span></h3>{state}{reason}",
            escape(&site.site),
            escape(&site.state),
            escape(&site.address)
        );
        if site.services.is_empty() {
            h.push_str("<p class=\"note\">no services</p>");
        } else {
            h.push_str("<table><tr><th>service</th><th>role</th><th>process</th><th>health</th><th>drift</th><th>last drill pass</th></tr>\n");
            for s in &site.services {
                let health = match s.health.as_str() {
                    "healthy" => "ok",
                    "unhealthy" => "bad",
                    _ => "dim",
                };
                let drift = if s.drift == "in-sync" {
                    "<span class=\"ok\">in sync</span>".to_string()
                } else {
                    format!(
                        "<span class=\"warn\">{}{}</span>",
                        escape(&s.drift),
                        if s.changed.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", escape(&s.changed.join(", ")))
                        }
                    )
                };
                let pid = s.pid.map(|p| format!(" pid {p}")).unwrap_or_default();
                let restarts = if s.restarts > 0 {
                    format!(", {} restarts", s.restarts)
                } else {
                    String::new()
                };
                let drill = match &s.drill {
                    Some(d) => {
                        let class = if d.due { "warn" } else { "dim" };
                        format!(
                            "<span class=\"{class}\">{} {}</span>",
                            escape(&d.drill),
                            escape(d.last_pass.as_deref().unwrap_or("never"))
                        )
                    }
                    None => String::new(),
                };
                let _ = writeln!(
                    h,
                    "<tr data-service=\"{0}\" data-health=\"{1}\" data-process=\"{3}\" data-pid=\"{4}\"><td>{0}</td><td>{2}</td><td>{3}{pid}{restarts}</td><td class=\"{health}\">{1}</td><td>{drift}</td><td>{drill}</td></tr>",
                    escape(&s.service),
                    escape(&s.health),
                    escape(s.role.as_deref().unwrap_or("")),
                    escape(&s.process),
                    s.pid.map(|p| p.to_string()).unwrap_or_default(),
                );
            }
            h.push_str("</table>");
        }
        h.push_str("</div>\n");
    }
    h.push_str("</div>\n");
}

fn roles(h: &mut String, status: &Status) {
    if status.roles.is_empty() {
        return;
    }
    let _ = writeln!(
        h,
        "<h2 id=\"roles\">Roles</h2>\n<table><tr><th>group</th><th>primary</th><th>epoch</th><th>since</th><th>lease</th></tr>"
    );
    for r in &status.roles {
        let lease = r
            .lease
            .as_ref()
            .map(|l| format!("{} ({} s left)", escape(&l.holder), l.seconds_left))
            .unwrap_or_else(|| "<span class=\"warn\">none</span>".into());
        let _ = writeln!(
            h,
            "<tr data-group=\"{0}\" data-primary=\"{1}\"><td>{0}</td><td>{1}</td><td>{2}</td><td>{3}</td><td>{lease}</td></tr>",
            escape(&r.group),
            escape(&r.primary),
            r.epoch,
            escape(r.since.as_deref().unwrap_or(""))
        );
    }
    h.push_str("</table>\n");
}

/// A bar of `age` against `objective` (seconds): full at twice the objective, the objective
/// marked, red past it.
fn age_bar(age: f64, objective: Option<f64>) -> String {
    let Some(objective) = objective.filter(|o| *o > 0.0) else {
        return String::new();
    };
    let scale = 2.0 * objective;
    let width = (age / scale * 100.0).clamp(0.0, 100.0);
    let colour = if age > objective { "#cf222e" } else { "#1a7f37" };
    format!(
        "<svg class=\"bar\" width=\"160\" height=\"12\" viewBox=\"0 0 100 12\" role=\"img\" aria-label=\"{age:.0} s of {objective:.0} s\"><rect width=\"100\" height=\"12\" fill=\"#eaeef2\"/><rect width=\"{width:.1}\" height=\"12\" fill=\"{colour}\"/><line x1=\"50\" x2=\"50\" y1=\"0\" y2=\"12\" stroke=\"#1f2328\" stroke-width=\"1\"/></svg>"
    )
}

fn seconds(text: Option<&str>) -> Option<f64> {
    text.and_then(|t| resurgo_spec::Duration::parse(t).ok())
        .map(|d| d.0.as_secs_f64())
}

fn datasets(h: &mut String, datasets: &[DatasetStatus]) {
    if datasets.is_empty() {
        return;
    }
    let _ = writeln!(
        h,
        "<h2 id=\"datasets\">Datasets</h2>\n<table><tr><th>dataset</th><th>home</th><th>RPO objective</th><th>newest restore point per site</th><th>standby lag</th><th>log archive</th></tr>"
    );
    for d in datasets {
        let objective = seconds(d.rpo.as_deref());
        let mut points = String::new();
        for p in &d.points {
            let (class, what) = match (p.age_seconds, &p.error) {
                (Some(age), _) => {
                    // A point a moment newer than this host's clock is no older than now.
                    let age = age.max(0);
                    let past = objective.is_some_and(|o| age as f64 > o);
                    (
                        if past { "bad" } else { "ok" },
                        format!(
                            "{age} s old ({} points) {}",
                            p.snapshots,
                            age_bar(age as f64, objective)
                        ),
                    )
                }
                (None, Some(e)) => ("unknown", format!("unknown: {}", escape(e))),
                (None, None) => ("warn", "none yet".into()),
            };
            let within = match p.within_rpo {
                Some(true) => "within",
                Some(false) => "past",
                None => "unknown",
            };
            let _ = write!(
                points,
                "<div data-point=\"{0}\" data-rpo=\"{within}\">{0}: <span class=\"{class}\">{what}</span></div>",
                escape(&p.site)
            );
        }
        let mut lag = String::new();
        for s in &d.standby {
            let what = match (s.lag_seconds, &s.error) {
                (Some(l), _) => format!(
                    "{l:.1} s{}{}",
                    s.lag_bytes.map(|b| format!(", {b} B")).unwrap_or_default(),
                    if s.streaming { ", streaming" } else { ", not streaming" }
                ),
                (None, Some(e)) => format!("unknown: {}", escape(e)),
                (None, None) => "unknown".into(),
            };
            let class = match s.within_rpo {
                Some(true) => "ok",
                Some(false) => "bad",
                None => "unknown",
            };
            let _ = write!(
                lag,
                "<div>{}: <span class=\"{class}\">{what}</span></div>",
                escape(&s.site)
            );
        }
        let archive = d
            .archiving
            .as_ref()
            .map(|a| {
                let state = serde_json::to_value(a.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let class = if state == "ok" || state == "archiving" {
                    "ok"
                } else {
                    "warn"
                };
                format!("<span class=\"{class}\">{}</span>", escape(&state))
            })
            .unwrap_or_default();
        let _ = writeln!(
            h,
            "<tr data-dataset=\"{0}\"><td>{0}</td><td>{1}</td><td>{2}</td><td>{points}</td><td>{lag}</td><td>{archive}</td></tr>",
            escape(&d.dataset),
            escape(&d.home),
            escape(d.rpo.as_deref().unwrap_or("none")),
        );
    }
    h.push_str("</table>\n");
}

fn workspaces(h: &mut String, status: &Status) {
    if status.workspaces.is_empty() {
        return;
    }
    let _ = writeln!(
        h,
        "<h2 id=\"workspaces\">Workspaces</h2>\n<table><tr><th>workspace</th><th>site</th><th>state</th><th>seed</th><th>method</th><th>TTL left</th><th>priority</th><th>resources</th></tr>"
    );
    for w in &status.workspaces {
        let method: Vec<String> = w.points.iter().map(|p| format!("{} {}", p.dataset, p.method)).collect();
        let _ = writeln!(
            h,
            "<tr data-workspace=\"{0}\"><td>{0}</td><td>{1}</td><td>{2}</td><td>{3}</td><td>{4}</td><td>{5} s</td><td>{6}</td><td>{7} cpu, {8} MiB</td></tr>",
            escape(&w.name),
            escape(&w.site),
            escape(&w.state),
            escape(&w.seed),
            escape(&method.join(", ")),
            w.ttl_left_seconds,
            w.priority,
            w.cpu,
            w.memory_bytes / (1024 * 1024)
        );
    }
    h.push_str("</table>\n");
    for lent in &status.lent {
        let _ = writeln!(
            h,
            "<p class=\"note\">{}</p>",
            escape(&serde_json::to_string(lent).unwrap_or_default())
        );
    }
}

fn outcome_class(outcome: &RunOutcome) -> &'static str {
    match outcome {
        RunOutcome::Succeeded => "ok",
        RunOutcome::Incomplete => "warn",
        _ => "bad",
    }
}

fn runs(h: &mut String, runs: &[(String, Result<Vec<Run>, String>)]) {
    let _ = writeln!(
        h,
        "<h2 id=\"runs\">Runs</h2>\n<table><tr><th>run</th><th>at</th><th>kind</th><th>epoch</th><th>outcome</th><th>RTO</th><th>RPO</th></tr>"
    );
    let mut any = false;
    for (site, answer) in runs {
        match answer {
            Ok(list) => {
                for run in list.iter().take(10) {
                    any = true;
                    let r = &run.report;
                    let m = run.measures.as_ref();
                    let _ = writeln!(
                        h,
                        "<tr data-run=\"{0}\"><td><a href=\"/ui/runs/{0}?site={1}\">{0}</a></td><td>{1}</td><td>{2}</td><td>{3}</td><td class=\"{4}\">{5}</td><td>{6}</td><td>{7}</td></tr>",
                        escape(&r.run),
                        escape(site),
                        r.kind,
                        r.epoch,
                        outcome_class(&r.outcome),
                        escape(&r.outcome.to_string()),
                        secs(m.and_then(|m| m.rto_s)),
                        secs(m.and_then(|m| m.rpo_s)),
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(
                    h,
                    "<tr><td colspan=\"7\" class=\"unknown\">{}: runs unknown ({})</td></tr>",
                    escape(site),
                    escape(e)
                );
            }
        }
    }
    if !any {
        h.push_str("<tr><td colspan=\"7\" class=\"note\">no runs yet</td></tr>\n");
    }
    h.push_str("</table>\n");
}

fn secs(s: Option<f64>) -> String {
    s.map(|s| format!("{s:.2} s")).unwrap_or_else(|| "—".into())
}

fn drills(h: &mut String, drills: &[resurgo_drill::Report]) {
    let _ = writeln!(
        h,
        "<h2 id=\"drills\">Drills</h2>\n<table><tr><th>run</th><th>drill</th><th>mode</th><th>started</th><th>RTO</th><th>RPO</th><th>verdict</th></tr>"
    );
    if drills.is_empty() {
        h.push_str("<tr><td colspan=\"7\" class=\"note\">no drills run here yet</td></tr>\n");
    }
    for d in drills.iter().take(10) {
        let verdict = d.verdict.as_str();
        let class = if verdict == "pass" { "ok" } else { "bad" };
        let _ = writeln!(
            h,
            "<tr data-drill-run=\"{0}\"><td><a href=\"/ui/drills/{0}\">{0}</a></td><td>{1}</td><td>{2}</td><td>{3}</td><td>{4}</td><td>{5}</td><td class=\"{class}\">{6}</td></tr>",
            escape(&d.run),
            escape(&d.drill),
            d.mode.as_str(),
            escape(&d.started),
            secs(d.rto.as_ref().and_then(|r| r.measured_s)),
            secs(d.rpo.as_ref().and_then(|r| r.seconds)),
            verdict
        );
    }
    h.push_str("</table>\n");
}

/// The confirmation page's body for `action`: what it will do, named before it is done, and
/// the form that does it (carrying `csrf`).
pub fn confirm(action: &Action, view: &View, csrf: &str) -> String {
    let mut h = String::new();
    let mut consequences: Vec<String> = Vec::new();
    let mut hidden = vec![("csrf", csrf.to_string())];
    let (title, button) = match action {
        Action::Move { from, to, failback } => {
            let kind = if *failback { "failback" } else { "failover" };
            hidden.push(("action", kind.to_string()));
            hidden.push(("to", to.clone()));
            let moving: Vec<&String> = view
                .current
                .services
                .iter()
                .filter(|(_, s)| &s.site == from)
                .map(|(n, _)| n)
                .collect();
            consequences.push(format!(
                "These services stop serving at <b>{}</b> and start at <b>{}</b>: {}.",
                escape(from),
                escape(to),
                escape(&moving.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))
            ));
            consequences.push(format!(
                "<b>{}</b> is fenced: its services there are stopped and its lease revoked — or, if it cannot be seen, waited out until it has expired.",
                escape(from)
            ));
            for (name, d) in &view.written.datasets {
                if !moving.iter().any(|s| **s == d.service) {
                    continue;
                }
                let status = view.status.datasets.iter().find(|s| &s.dataset == name);
                let line = match d.strategy {
                    Strategy::Standby => {
                        let lag = status
                            .and_then(|s| s.standby.iter().find(|l| &l.site == to))
                            .and_then(|l| l.lag_seconds)
                            .map(|l| format!("its replay lag is {l:.1} s now"))
                            .unwrap_or_else(|| "its lag is unknown".into());
                        format!(
                            "Dataset <b>{}</b>: the standby at {} is promoted; {lag}. Writes not yet replayed there are lost.",
                            escape(name),
                            escape(to)
                        )
                    }
                    Strategy::Backup => {
                        let age = status
                            .and_then(|s| s.points.iter().find(|p| &p.site == to))
                            .and_then(|p| p.age_seconds)
                            .map(|a| format!("{a} s old now"))
                            .unwrap_or_else(|| "of unknown age".into());
                        format!(
                            "Dataset <b>{}</b>: restored at {} from its newest restore point there ({age}), and its log archive replayed as far as it reaches. Writes after that are lost.",
                            escape(name),
                            escape(to)
                        )
                    }
                };
                consequences.push(line);
            }
            let lent: Vec<String> = view
                .status
                .workspaces
                .iter()
                .filter(|w| &w.site == to)
                .map(|w| format!("{} ({})", w.name, w.state))
                .collect();
            if !lent.is_empty() && !failback {
                consequences.push(format!(
                    "Workspaces at {} are preempted first, lowest priority first: {}.",
                    escape(to),
                    escape(&lent.join(", "))
                ));
            }
            let epoch = view.status.roles.iter().find(|r| r.primary == *from).map(|r| r.epoch);
            if let Some(e) = epoch {
                consequences.push(format!(
                    "The group's epoch goes from {e} to {}: actions carrying the old one are refused.",
                    e + 1
                ));
            }
            consequences.push("Routes (proxy, DNS, hooks) of the moved services switch to the new site.".into());
            consequences.push(format!(
                "The run is journaled by {}'s agent, which resumes it if it is interrupted; RTO and RPO are measured.",
                escape(to)
            ));
            (
                format!(
                    "{} from {from} to {to}?",
                    if *failback { "Fail back" } else { "Fail over" }
                ),
                format!("{} to {to}", if *failback { "Fail back" } else { "Fail over" }),
            )
        }
        Action::Maintenance { on } => {
            hidden.push(("action", format!("maintenance-{}", if *on { "on" } else { "off" })));
            if *on {
                consequences.push("No agent fails over by itself while maintenance is on (for one hour, unless turned off): a site lost meanwhile stays lost until a person acts.".into());
                consequences.push("Failovers and failbacks started by a person still run.".into());
                ("Turn maintenance on?".into(), "Turn maintenance on".into())
            } else {
                consequences
                    .push("The agents fail over by policy again: a site they see lost is failed over from.".into());
                ("Turn maintenance off?".into(), "Turn maintenance off".into())
            }
        }
        Action::Drill { name } => {
            hidden.push(("action", "drill".into()));
            hidden.push(("drill", name.clone()));
            let services = view
                .written
                .drills
                .get(name)
                .map(|d| d.scope.services(view.written).join(", "))
                .unwrap_or_default();
            consequences.push(format!(
                "A test failover of {} into a sandbox at {}: copies of its newest restore points, its own network namespace, no repository credentials.",
                escape(&services),
                escape(view.here)
            ));
            consequences.push(
                "Production keeps serving; the drill probes it throughout and tears the sandbox down at the end, whatever happens."
                    .into(),
            );
            consequences
                .push("It uses this site's CPU, memory and disk while it runs; its report is kept as evidence.".into());
            (format!("Run isolated drill {name}?"), format!("Run drill {name}"))
        }
    };
    let _ = writeln!(h, "<h1>{}</h1>\n<ul class=\"consequences\">", escape(&title));
    for c in consequences {
        let _ = writeln!(h, "<li>{c}</li>");
    }
    h.push_str("</ul>\n<form method=\"post\" action=\"/ui/act\" id=\"confirm\">\n");
    for (name, value) in hidden {
        let _ = writeln!(
            h,
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(&value)
        );
    }
    if matches!(action, Action::Move { .. }) {
        h.push_str("<p><label><input type=\"checkbox\" name=\"accept_data_loss\" value=\"true\"> Go ahead even if data newer than the RPO objective would be lost</label></p>\n");
    }
    let _ = writeln!(
        h,
        "<button class=\"action danger\" type=\"submit\" id=\"do\">{}</button> <a class=\"action\" href=\"/ui\">Cancel</a>\n</form>",
        escape(&button)
    );
    h
}

/// A run's page: its steps with their outcome and duration, a timeline of them, and its
/// measures; `site`: whose agent runs it.
pub fn run_page(run: &Run, site: &str) -> String {
    let r = &run.report;
    let mut h = String::new();
    let _ = writeln!(
        h,
        "<h1>Run {} <span class=\"note\">at {}</span></h1>\n<p>{} at epoch {}: <span class=\"{}\" id=\"outcome\" data-outcome=\"{}\">{}</span></p>",
        escape(&r.run),
        escape(site),
        r.kind,
        r.epoch,
        outcome_class(&r.outcome),
        match &r.outcome {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Incomplete => "running",
            _ => "failed",
        },
        escape(&r.outcome.to_string())
    );
    if let Some(m) = &run.measures {
        let _ = writeln!(
            h,
            "<table><tr><th>detect</th><th>decide</th><th>preempt</th><th>RTO</th><th>RPO</th></tr><tr><td>{}</td><td>{}</td><td>{}</td><td id=\"rto\">{}</td><td id=\"rpo\">{}</td></tr></table>",
            secs(m.detection_s),
            secs(m.decision_s),
            secs(m.preempt_s),
            secs(m.rto_s),
            secs(m.rpo_s)
        );
    }
    // The timeline: each finished step as a bar from its start, on one scale.
    let starts: Vec<Option<f64>> = r.steps.iter().map(|s| s.started.as_deref().and_then(unix)).collect();
    let t0 = starts.iter().flatten().copied().fold(f64::INFINITY, f64::min);
    let total = r
        .steps
        .iter()
        .zip(&starts)
        .filter_map(|(s, st)| Some(st.as_ref()? - t0 + s.millis? as f64 / 1000.0))
        .fold(0.0, f64::max);
    if t0.is_finite() && total > 0.0 {
        let row = 16.0;
        let height = row * r.steps.len() as f64 + 4.0;
        let _ = writeln!(
            h,
            "<svg class=\"timeline\" viewBox=\"0 0 700 {height}\" role=\"img\" aria-label=\"the run's steps in time, {total:.2} s in all\">"
        );
        for (i, (s, st)) in r.steps.iter().zip(&starts).enumerate() {
            let y = i as f64 * row + 2.0;
            let _ = write!(
                h,
                "<text x=\"0\" y=\"{:.1}\" font-size=\"11\">{}</text>",
                y + 11.0,
                escape(&s.name)
            );
            if let (Some(st), Some(ms)) = (st, s.millis) {
                let x = 250.0 + (st - t0) / total * 440.0;
                let w = (ms as f64 / 1000.0 / total * 440.0).max(1.0);
                let colour = if matches!(s.outcome, StepOutcome::Failed { .. }) {
                    "#cf222e"
                } else {
                    "#0969da"
                };
                let _ = write!(
                    h,
                    "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"12\" fill=\"{colour}\"/>"
                );
            }
        }
        h.push_str("</svg>\n");
    }
    h.push_str("<table><tr><th>step</th><th>outcome</th><th>started</th><th>took</th></tr>\n");
    for s in &r.steps {
        let class = match s.outcome {
            StepOutcome::Done | StepOutcome::AlreadyDone => "ok",
            StepOutcome::Pending | StepOutcome::Running => "dim",
            _ => "bad",
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"{class}\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.name),
            escape(&s.outcome.to_string()),
            escape(s.started.as_deref().unwrap_or("")),
            s.millis
                .map(|m| format!("{:.2} s", m as f64 / 1000.0))
                .unwrap_or_default()
        );
    }
    h.push_str("</table>\n");
    for note in &r.notes {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", escape(note));
    }
    h
}

/// The cost page's body: the monthly total, per site and per part of the posture, each
/// dataset's strategy beside its alternative with their RPO and RTO, and what is unpriced.
pub fn cost_page(report: &resurgo_plan::cost::CostReport) -> String {
    use resurgo_plan::cost::Compared;
    let currency = report.currency.as_deref().unwrap_or("");
    let money = |v: f64, complete: bool| {
        // Small sums keep their first figures: a tiny repository costs cents a month.
        let digits = if v != 0.0 && v.abs() < 1.0 { 4 } else { 2 };
        format!(
            "{}{v:.digits$} {}",
            if complete { "" } else { "at least " },
            escape(currency)
        )
    };
    let mut h = String::new();
    let _ = writeln!(
        h,
        "<h1>Cost of DR <span class=\"note\">— {}, per month ({} h)</span></h1>\n<p id=\"total\">Total: <b>{}</b></p>",
        escape(&report.system),
        report.hours_per_month,
        money(report.total.cost, report.total.complete)
    );
    if report.currency.is_none() {
        h.push_str("<p class=\"warn\">The spec gives no `prices`: every line is unpriced.</p>\n");
    }
    for (title, rows) in [("By site", &report.sites), ("By part", &report.strategies)] {
        let _ = writeln!(h, "<h2>{title}</h2>\n<table><tr><th></th><th>a month</th></tr>");
        for row in rows {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td></tr>",
                escape(&row.name),
                money(row.cost, row.complete)
            );
        }
        h.push_str("</table>\n");
    }
    let _ = writeln!(
        h,
        "<h2>Each dataset and its alternative</h2>\n<table><tr><th>dataset</th><th>strategy</th><th>a month</th><th>RPO</th><th>RTO</th><th>alternative</th></tr>"
    );
    for d in &report.datasets {
        let c = &d.current;
        let alternative = match (&d.alternative, &d.unavailable) {
            (Some(a), _) => format!(
                "{}: {} ({}), RPO {}, RTO {}",
                escape(&format!("{:?}", a.strategy).to_lowercase()),
                money(a.monthly_cost, a.complete),
                match a.compared {
                    Some(Compared::Cheaper) => "cheaper",
                    Some(Compared::Dearer) => "dearer",
                    Some(Compared::Same) => "the same",
                    None => "not comparable",
                },
                secs(a.rpo_s),
                secs(a.rto_s)
            ),
            (None, Some(why)) => format!("<span class=\"note\">none: {}</span>", escape(why)),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            h,
            "<tr data-dataset=\"{0}\"><td>{0}</td><td>{1}</td><td>{2}</td><td>{3}</td><td>{4}</td><td>{alternative}</td></tr>",
            escape(&d.dataset),
            escape(&format!("{:?}", c.strategy).to_lowercase()),
            money(c.monthly_cost, c.complete),
            secs(c.rpo_s),
            secs(c.rto_s)
        );
    }
    h.push_str("</table>\n");
    if !report.unpriced.is_empty() {
        let _ = writeln!(
            h,
            "<p class=\"warn\">Unpriced (counted as nothing above): {}</p>",
            escape(&report.unpriced.join(", "))
        );
    }
    for note in &report.notes {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", escape(note));
    }
    h.push_str("<p><a class=\"action\" href=\"/ui\">Back to the dashboard</a></p>\n");
    h
}

fn unix(rfc3339: &str) -> Option<f64> {
    resurgo_spec::units::parse_rfc3339(rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rpo_bar_is_red_past_its_objective_and_absent_without_one() {
        assert!(age_bar(30.0, Some(60.0)).contains("#1a7f37"));
        assert!(age_bar(90.0, Some(60.0)).contains("#cf222e"));
        assert!(age_bar(500.0, Some(60.0)).contains("width=\"100.0\""));
        assert_eq!(age_bar(30.0, None), "");
    }
}
