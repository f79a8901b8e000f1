//! Human-readable output: plans as a coloured diff on a terminal, plain text elsewhere.

use std::fmt::Write;
use std::io::IsTerminal;

use resurgo_plan::{Action, Plan};

/// ANSI colours, only when stdout is a terminal and NO_COLOR is unset.
pub struct Paint {
    on: bool,
}

impl Paint {
    pub fn stdout() -> Paint {
        Paint {
            on: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    pub fn green(&self, t: &str) -> String {
        self.wrap("32", t)
    }
    pub fn yellow(&self, t: &str) -> String {
        self.wrap("33", t)
    }
    pub fn red(&self, t: &str) -> String {
        self.wrap("31", t)
    }
    pub fn cyan(&self, t: &str) -> String {
        self.wrap("36", t)
    }
    pub fn bold(&self, t: &str) -> String {
        self.wrap("1", t)
    }
    pub fn dim(&self, t: &str) -> String {
        self.wrap("2", t)
    }
}

pub fn plan(plan: &Plan, paint: &Paint) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        paint.bold(&format!("Plan for system `{}` at {}", plan.system, plan.source.label()))
    );
    for site in &plan.sites {
        if site.status == "unknown" {
            let _ = writeln!(
                out,
                "site {}: {} — {}",
                paint.bold(&site.site),
                paint.red("unknown"),
                site.reason.as_deref().unwrap_or("")
            );
            continue;
        }
        let _ = writeln!(out, "site {}", paint.bold(&site.site));
        let mut unchanged = 0;
        for c in &site.changes {
            let detail = match (&c.action, c.fields.is_empty(), &c.reason) {
                (Action::Update, false, _) => format!(" (changed: {})", c.fields.join(", ")),
                (Action::Orphan, _, _) => " (no longer declared; run with --prune to delete)".into(),
                (_, _, Some(r)) => format!(" ({r})"),
                _ => String::new(),
            };
            let standby = c.config.as_ref().is_some_and(|c| c.role == resurgo_plan::Role::Standby);
            let detail = if standby { format!(" (standby){detail}") } else { detail };
            let line = match c.action {
                Action::Create => paint.green(&format!("  + create   {}", c.service)),
                Action::Update => paint.yellow(&format!("  ~ update   {}", c.service)),
                Action::Start => paint.cyan(&format!("  > start    {}", c.service)),
                Action::Delete => paint.red(&format!("  - delete   {}", c.service)),
                Action::Orphan => paint.dim(&format!("  ? orphan   {}", c.service)),
                Action::Unchanged => {
                    unchanged += 1;
                    continue;
                }
            };
            let _ = writeln!(out, "{line}{detail}");
        }
        if unchanged > 0 {
            let _ = writeln!(out, "{}", paint.dim(&format!("  = {unchanged} unchanged")));
        }
    }
    let s = &plan.summary;
    let _ = write!(
        out,
        "Plan: {} to create, {} to update, {} to start, {} to delete",
        s.create, s.update, s.start, s.delete
    );
    if s.orphan > 0 {
        let _ = write!(out, ", {} orphaned", s.orphan);
    }
    if s.unknown_sites > 0 {
        let _ = write!(out, "; {} site(s) unknown", s.unknown_sites);
    }
    out.push('\n');
    out
}
