//! Recovery plans as plain data: the DAG of steps, its validation, its waves, the tabletop
//! checklist and the `--dry-run` estimate. Pure: no I/O, no clock.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a recovery plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PlanKind {
    /// Moves services away from a lost or failing site.
    Failover,
    /// Moves them back to their home site, planned, with no data lost.
    Failback,
    /// A rehearsal of a recovery.
    Drill,
}

impl PlanKind {
    fn title(self) -> &'static str {
        match self {
            PlanKind::Failover => "Failover",
            PlanKind::Failback => "Failback",
            PlanKind::Drill => "Drill",
        }
    }
}

/// The kind as people read it in a sentence (`failover`), the same word as in the JSON.
impl std::fmt::Display for PlanKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PlanKind::Failover => "failover",
            PlanKind::Failback => "failback",
            PlanKind::Drill => "drill",
        })
    }
}

/// The DAG of steps that moves services from one site to another, bound to one epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryPlan {
    pub id: String,
    pub kind: PlanKind,
    /// The primary assignment this plan acts under; stamped on every journal record and step.
    pub epoch: u64,
    pub steps: Vec<StepSpec>,
}

/// One node of the plan. What the step *does* is a [`crate::Step`] registered under `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub name: String,
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Bound on check + act + verify (with retries); also bounds the step's compensation.
    #[serde(with = "millis")]
    pub timeout: Duration,
    #[serde(default)]
    pub description: String,
    /// Who performs or watches this step in a tabletop exercise.
    #[serde(default)]
    pub owner: String,
    /// Expected duration, for the checklist and the critical-path estimate.
    #[serde(with = "millis")]
    pub estimate: Duration,
    /// Whether the step's effect can be undone (its `compensate` means something). Once a step
    /// that cannot has acted, a later failure compensates nothing: the run stops where it is
    /// and is finished by resuming it (see [`crate::run`]).
    #[serde(default = "reversible_default")]
    pub reversible: bool,
}

fn reversible_default() -> bool {
    true
}

impl StepSpec {
    /// A step with no dependencies, no owner, the given timeout and an estimate of zero.
    pub fn new(name: impl Into<String>, timeout: Duration) -> StepSpec {
        StepSpec {
            name: name.into(),
            depends_on: Vec::new(),
            timeout,
            description: String::new(),
            owner: String::new(),
            estimate: Duration::ZERO,
            reversible: true,
        }
    }

    /// Marks the step as one whose effect cannot be undone (builder style).
    pub fn irreversible(mut self) -> StepSpec {
        self.reversible = false;
        self
    }

    /// Adds dependencies (builder style, for code and tests).
    pub fn after(mut self, deps: &[&str]) -> StepSpec {
        self.depends_on.extend(deps.iter().map(|d| d.to_string()));
        self
    }
}

/// Durations are written as integer milliseconds (`timeout_ms` reads worse in YAML than a
/// number, and serde's default `{secs, nanos}` is worse still).
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Why a plan is refused. Never retryable: the plan must be changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("recovery plan has an empty id")]
    EmptyId,
    #[error("recovery plan `{0}` has no steps")]
    NoSteps(String),
    #[error("a step of recovery plan `{0}` has an empty name")]
    EmptyName(String),
    #[error("step `{0}` is declared twice")]
    DuplicateStep(String),
    #[error("step `{step}` has a zero timeout")]
    ZeroTimeout { step: String },
    #[error("step `{step}` depends on unknown step `{dependency}`")]
    UnknownDependency { step: String, dependency: String },
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

impl RecoveryPlan {
    /// Checks names, dependencies and acyclicity; the first problem found is returned.
    pub fn validate(&self) -> Result<(), PlanError> {
        self.waves().map(|_| ())
    }

    /// The steps in dependency order, grouped in waves: every step of a wave depends only on
    /// steps of earlier waves, so the steps of one wave could run in parallel. Within a wave the
    /// plan's own order is kept, so the order is deterministic.
    pub fn waves(&self) -> Result<Vec<Vec<&StepSpec>>, PlanError> {
        if self.id.trim().is_empty() {
            return Err(PlanError::EmptyId);
        }
        if self.steps.is_empty() {
            return Err(PlanError::NoSteps(self.id.clone()));
        }
        let mut index = HashMap::new();
        for (i, s) in self.steps.iter().enumerate() {
            if s.name.trim().is_empty() {
                return Err(PlanError::EmptyName(self.id.clone()));
            }
            if index.insert(s.name.as_str(), i).is_some() {
                return Err(PlanError::DuplicateStep(s.name.clone()));
            }
            if s.timeout.is_zero() {
                return Err(PlanError::ZeroTimeout { step: s.name.clone() });
            }
        }
        for s in &self.steps {
            for d in &s.depends_on {
                if !index.contains_key(d.as_str()) {
                    return Err(PlanError::UnknownDependency {
                        step: s.name.clone(),
                        dependency: d.clone(),
                    });
                }
            }
        }
        if let Some(cycle) = self.find_cycle(&index) {
            return Err(PlanError::Cycle(cycle));
        }
        // Longest-path layering: a step's wave is one more than its latest dependency's.
        let mut wave_of: Vec<Option<usize>> = vec![None; self.steps.len()];
        fn wave(plan: &RecoveryPlan, index: &HashMap<&str, usize>, memo: &mut [Option<usize>], i: usize) -> usize {
            if let Some(w) = memo[i] {
                return w;
            }
            let w = plan.steps[i]
                .depends_on
                .iter()
                .map(|d| wave(plan, index, memo, index[d.as_str()]) + 1)
                .max()
                .unwrap_or(0);
            memo[i] = Some(w);
            w
        }
        let mut waves: Vec<Vec<&StepSpec>> = Vec::new();
        for i in 0..self.steps.len() {
            let w = wave(self, &index, &mut wave_of, i);
            if waves.len() <= w {
                waves.resize_with(w + 1, Vec::new);
            }
            waves[w].push(&self.steps[i]);
        }
        Ok(waves)
    }

    /// The steps in the order the runner executes them (the waves, flattened).
    pub fn order(&self) -> Result<Vec<&StepSpec>, PlanError> {
        Ok(self.waves()?.into_iter().flatten().collect())
    }

    /// The step named `name`, if any.
    pub fn step(&self, name: &str) -> Option<&StepSpec> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Depth-first search with three colours; returns the first cycle found, closed (its first
    /// step repeated at the end), so the error can name it: `a -> b -> a`.
    fn find_cycle(&self, index: &HashMap<&str, usize>) -> Option<Vec<String>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Colour {
            White,
            Grey,
            Black,
        }
        fn visit(
            plan: &RecoveryPlan,
            index: &HashMap<&str, usize>,
            colour: &mut [Colour],
            path: &mut Vec<usize>,
            i: usize,
        ) -> Option<Vec<String>> {
            colour[i] = Colour::Grey;
            path.push(i);
            for d in &plan.steps[i].depends_on {
                let j = index[d.as_str()];
                match colour[j] {
                    Colour::Grey => {
                        let from = path.iter().position(|&p| p == j).unwrap_or(0);
                        // Dependencies point backwards in time; name the cycle in execution
                        // order (a runs before b) by reversing the DFS path.
                        let mut names: Vec<String> =
                            path[from..].iter().rev().map(|&p| plan.steps[p].name.clone()).collect();
                        names.push(names[0].clone());
                        return Some(names);
                    }
                    Colour::White => {
                        if let Some(c) = visit(plan, index, colour, path, j) {
                            return Some(c);
                        }
                    }
                    Colour::Black => {}
                }
            }
            path.pop();
            colour[i] = Colour::Black;
            None
        }
        let mut colour = vec![Colour::White; self.steps.len()];
        for i in 0..self.steps.len() {
            if colour[i] == Colour::White {
                if let Some(c) = visit(self, index, &mut colour, &mut Vec::new(), i) {
                    return Some(c);
                }
            }
        }
        None
    }

    /// The longest chain of estimates through the DAG and its total: what `--dry-run` shows as
    /// the expected duration when independent steps run side by side.
    pub fn critical_path(&self) -> Result<(Duration, Vec<String>), PlanError> {
        let order = self.order()?;
        // finish[name] = (earliest finish, predecessor on the longest chain)
        let mut finish: BTreeMap<&str, (Duration, Option<&str>)> = BTreeMap::new();
        for s in &order {
            let (start, pred) = s
                .depends_on
                .iter()
                .map(|d| (finish[d.as_str()].0, Some(d.as_str())))
                .max_by_key(|(t, _)| *t)
                .unwrap_or((Duration::ZERO, None));
            finish.insert(s.name.as_str(), (start + s.estimate, pred));
        }
        // The latest-finishing step; on ties the first in execution order.
        let mut end: Option<(&str, Duration)> = None;
        for s in &order {
            let t = finish[s.name.as_str()].0;
            if end.is_none_or(|(_, best)| t > best) {
                end = Some((s.name.as_str(), t));
            }
        }
        let Some((last, total)) = end else {
            return Ok((Duration::ZERO, Vec::new()));
        };
        let mut path = vec![last.to_string()];
        let mut cur = last;
        while let Some(p) = finish[cur].1 {
            path.push(p.to_string());
            cur = p;
        }
        path.reverse();
        Ok((total, path))
    }

    /// Total expected duration along the critical path.
    pub fn estimate(&self) -> Result<Duration, PlanError> {
        Ok(self.critical_path()?.0)
    }

    /// A Markdown checklist for tabletop exercises: one section per wave, one box per step with
    /// its owner, estimate, timeout and dependencies.
    pub fn render_checklist(&self) -> Result<String, PlanError> {
        let waves = self.waves()?;
        let (total, path) = self.critical_path()?;
        let mut out = String::new();
        let _ = writeln!(out, "# {} `{}` (epoch {})\n", self.kind.title(), self.id, self.epoch);
        let _ = writeln!(
            out,
            "Estimated duration: {} along the critical path ({}).\n",
            human(total),
            path.join(" → ")
        );
        for (i, wave) in waves.iter().enumerate() {
            let _ = writeln!(out, "## Wave {}\n", i + 1);
            for s in wave {
                let owner = if s.owner.is_empty() {
                    "unassigned"
                } else {
                    s.owner.as_str()
                };
                let _ = write!(out, "- [ ] **{}**", s.name);
                if !s.description.is_empty() {
                    let _ = write!(out, " — {}", s.description);
                }
                let _ = write!(
                    out,
                    "  \n  owner: {owner} · estimate: {} · timeout: {}",
                    human(s.estimate),
                    human(s.timeout)
                );
                if !s.depends_on.is_empty() {
                    let _ = write!(out, " · after: {}", s.depends_on.join(", "));
                }
                out.push('\n');
            }
            out.push('\n');
        }
        Ok(out)
    }
}

/// `1h 2m 3s`, `45s`, `250ms`: short and exact enough for people.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s % 3600 / 60, s % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if s > 0 || parts.is_empty() {
        parts.push(format!("{s}s"));
    }
    parts.join(" ")
}
