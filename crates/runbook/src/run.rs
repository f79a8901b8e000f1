//! The runner: executes a recovery plan step by step in dependency order, journaling before
//! and after every step, compensates on failure, and resumes a killed run from its journal.
//!
//! Per step: `started` → `check` (`checked`: `ready` or `already done`) → `act` (`acted`,
//! skipped when already done) → `verify` (`verified`, always) → `finished`. A transient error or `NotReady` goes back to `check` with
//! back-off until the step's timeout; a permanent error, a failed verification or the timeout
//! journals `failed` and the run compensates (below) and ends `aborted`.
//!
//! Decisions:
//! - The journal is the only state. Resume and the report are both computed from it, so a
//!   resumed run and a report of a finished run agree by construction.
//! - Compensation covers every step this run may have changed — a `checked: ready` record is
//!   the undo record written before acting (ANCHORS, "Drills and chaos") — including the step
//!   that failed or timed out part-way, newest first. A step whose effect was already in place
//!   before this run touched it is not undone: the run did not do it. Every compensation runs
//!   even when an earlier one fails (a failed rollback does not stop the others), and a resume
//!   of an aborting run finishes the compensations not yet journaled `compensated`.
//! - A step runs on its own thread so its timeout holds even if it ignores cancellation; once
//!   the deadline passes, the runner stops journaling for that attempt (under the journal lock),
//!   cancels it, gives it `cancel_grace` to return, and moves on.
//! - Steps run one at a time, in wave order: recovery steps are few and mostly wait on remote
//!   systems, and one-at-a-time keeps "the N-th boundary" of the journal well defined.
//! - A step may be declared irreversible ([`crate::StepSpec::reversible`]): once one has
//!   acted, a failure compensates nothing (an undo that means nothing is not run) and the run
//!   ends `stopped` — past its point of no return, part-way — and a resume retries from the
//!   failed step to finish it.
//! - Resuming with a lower epoch than the journal holds is refused (invariant 4); a higher one
//!   is accepted (the resumer holds the newer assignment) and stamped on what follows.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::journal::{Journal, JournalError, Phase, Record, CHECKED_ALREADY_DONE, CHECKED_READY};
use crate::plan::{human, PlanError, PlanKind, RecoveryPlan, StepSpec};
use crate::step::{Check, Step, StepContext, StepError};

/// Called after each record is durably appended (progress display; tests use it to stop a
/// run at an exact journal boundary).
pub type Observer = Arc<dyn Fn(&Record) + Send + Sync>;

/// The step implementations of a plan, by step name.
pub type Steps = HashMap<String, Arc<dyn Step>>;

/// Why a run could not be started, resumed or completed (a step failing is not a `RunError`:
/// it is an `aborted` run in the report).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid recovery plan: {0}")]
    Plan(#[from] PlanError),
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("step `{0}` of the plan has no implementation")]
    MissingStep(String),
    #[error("run `{run}` is stale: offered epoch {offered}, its journal holds epoch {journal}")]
    StaleEpoch { run: String, offered: u64, journal: u64 },
}

impl RunError {
    /// Whether resuming later can help: only a journal I/O failure may pass.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RunError::Journal(e) if e.is_retryable())
    }
}

/// How a run ended (or where it stands, for a run that was interrupted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum RunOutcome {
    /// Every step finished.
    Succeeded,
    /// A step failed; the steps the run had changed were compensated, newest first.
    Aborted {
        /// The step that failed.
        step: String,
        /// Why it failed.
        error: String,
    },
    /// A step failed after the point of no return (a step that cannot be undone had acted):
    /// nothing was compensated; the system is part-way, and resuming the run finishes it.
    Stopped {
        /// The step that failed.
        step: String,
        /// Why it failed.
        error: String,
    },
    /// Interrupted before its end: resume it.
    Incomplete,
}

/// Reads as the end of a sentence about the run (`run r1: succeeded`).
impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunOutcome::Succeeded => f.write_str("succeeded"),
            RunOutcome::Aborted { step, error } => write!(
                f,
                "aborted at step `{step}`: {error}; what the run had changed was undone as far as it could be"
            ),
            RunOutcome::Stopped { step, error } => write!(
                f,
                "stopped at step `{step}`, past the point of no return: {error}; nothing was undone"
            ),
            RunOutcome::Incomplete => {
                f.write_str("interrupted before its end; `resurgo runs RUN --resume` finishes it")
            }
        }
    }
}

/// Where a step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum StepOutcome {
    /// Not started.
    Pending,
    /// Started but neither finished nor failed (the run was interrupted).
    Running,
    /// This run brought the effect about.
    Done,
    /// The effect was in place before this run touched the step.
    AlreadyDone,
    /// The step failed and the run stopped there.
    Failed {
        /// Why it failed.
        error: String,
    },
    /// Its compensation started but did not finish (the run was interrupted).
    Compensating,
    /// What the step had changed was undone.
    Compensated,
    /// Undoing what the step had changed failed: look at it by hand.
    CompensationFailed {
        /// Why the compensation failed.
        error: String,
    },
}

/// Reads as what became of the step (`fence a: done`).
impl fmt::Display for StepOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepOutcome::Pending => f.write_str("not started"),
            StepOutcome::Running => f.write_str("started, not finished"),
            StepOutcome::Done => f.write_str("done"),
            StepOutcome::AlreadyDone => f.write_str("already done"),
            StepOutcome::Failed { error } => write!(f, "failed: {error}"),
            StepOutcome::Compensating => f.write_str("being undone, not finished"),
            StepOutcome::Compensated => f.write_str("undone"),
            // The journal's detail already starts with "compensation failed: ".
            StepOutcome::CompensationFailed { error } => write!(
                f,
                "could not be undone: {}",
                error.strip_prefix("compensation failed: ").unwrap_or(error)
            ),
        }
    }
}

/// One step of a run, as its journal stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepReport {
    /// The step's name in the recovery plan (`promote orders at b`).
    pub name: String,
    /// RFC 3339 time of the first `started` record.
    pub started: Option<String>,
    /// RFC 3339 time of the last record that ended the step (finished, failed, compensated).
    pub finished: Option<String>,
    /// Duration of the last attempt (check → finish or failure), in milliseconds.
    pub millis: Option<u64>,
    /// Where the step ended.
    pub outcome: StepOutcome,
}

/// What a run did, computed from its journal alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunReport {
    /// The run's id (`<plan>-e<epoch>-<unix millis>`).
    pub run: String,
    /// The recovery plan's id.
    pub plan: String,
    /// What the run was for.
    pub kind: PlanKind,
    /// The highest epoch in the journal.
    pub epoch: u64,
    /// How the run ended, or where it stands.
    pub outcome: RunOutcome,
    /// Every step of the plan, in execution order.
    pub steps: Vec<StepReport>,
    /// Things the operator should know (e.g. a torn journal line was cut).
    pub notes: Vec<String>,
}

/// Executes and resumes runs whose journals live under one directory.
#[derive(Clone)]
pub struct Runner {
    dir: PathBuf,
    cancel_grace: Duration,
    observer: Option<Observer>,
}

impl Runner {
    pub fn new(dir: impl Into<PathBuf>) -> Runner {
        Runner {
            dir: dir.into(),
            cancel_grace: Duration::from_secs(5),
            observer: None,
        }
    }

    /// How long a timed-out step gets to notice cancellation before the runner moves on.
    pub fn cancel_grace(mut self, grace: Duration) -> Runner {
        self.cancel_grace = grace;
        self
    }

    pub fn observer(mut self, observer: Observer) -> Runner {
        self.observer = Some(observer);
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts a new run with a generated id `<plan>-e<epoch>-<unix millis>`.
    pub fn start(&self, plan: &RecoveryPlan, steps: &Steps) -> Result<RunReport, RunError> {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        self.start_as(&format!("{}-e{}-{millis}", plan.id, plan.epoch), plan, steps)
    }

    /// Starts a new run with the given id; refuses an id already used under this directory.
    /// Nothing is written unless the plan is valid and every step has an implementation.
    pub fn start_as(&self, run: &str, plan: &RecoveryPlan, steps: &Steps) -> Result<RunReport, RunError> {
        check_steps(plan, steps)?;
        let _span = run_span(run, plan, plan.epoch).entered();
        let mut journal = Journal::create(&self.dir, run, plan)?;
        let record = journal.append(plan.epoch, None, Phase::Planned, &plan.id, 0)?;
        log(&record);
        let writer = Writer::new(journal, self.observer.clone(), plan.epoch);
        writer.observe(&record);
        self.drive(run, plan, plan.epoch, &writer, steps, Vec::new())
    }

    /// Resumes run `run` under epoch `epoch`: finished steps are skipped, a step that started
    /// but did not finish is re-run from `check`, an aborting run finishes its compensations.
    /// A finished run is only reported.
    pub fn resume(&self, run: &str, epoch: u64, steps: &Steps) -> Result<RunReport, RunError> {
        let plan = Journal::load_plan(&self.dir, run)?;
        check_steps(&plan, steps)?;
        let _span = run_span(run, &plan, epoch).entered();
        let path = Journal::run_dir(&self.dir, run).join(crate::journal::JOURNAL_FILE);
        // Refuse before writing anything, even the cut of a torn tail.
        let peek = Journal::read(&path)?;
        let journal_epoch = peek.records.iter().map(|r| r.epoch).max().unwrap_or(0).max(plan.epoch);
        if journal_epoch > epoch {
            return Err(RunError::StaleEpoch {
                run: run.to_string(),
                offered: epoch,
                journal: journal_epoch,
            });
        }
        tracing::debug!("run resumed");
        let (journal, contents) = Journal::open(&self.dir, run)?;
        let mut notes = Vec::new();
        if let Some(t) = contents.torn {
            notes.push(format!(
                "journal {} ended in a torn line ({} bytes at offset {}), left by a crash mid-write; it was cut",
                path.display(),
                t.bytes,
                t.offset
            ));
        }
        let writer = Writer::new(journal, self.observer.clone(), epoch);
        self.drive(run, &plan, epoch, &writer, steps, notes)
    }

    /// The report of run `run` as its journal stands, without changing anything.
    pub fn report(&self, run: &str) -> Result<RunReport, RunError> {
        let plan = Journal::load_plan(&self.dir, run)?;
        plan.validate()?;
        let contents = Journal::read(&Journal::run_dir(&self.dir, run).join(crate::journal::JOURNAL_FILE))?;
        let mut notes = Vec::new();
        if let Some(t) = contents.torn {
            notes.push(format!("journal ends in a torn line ({} bytes)", t.bytes));
        }
        Ok(build_report(run, &plan, &contents.records, notes))
    }

    fn drive(
        &self,
        run: &str,
        plan: &RecoveryPlan,
        epoch: u64,
        writer: &Writer,
        steps: &Steps,
        notes: Vec<String>,
    ) -> Result<RunReport, RunError> {
        let order = plan.order()?;
        let state = RunState::from_records(&writer.records()?);
        if state.terminal.is_some() {
            return Ok(build_report(run, plan, &writer.records()?, notes));
        }
        let mut failed = state.abort.is_some();
        if !failed {
            for spec in &order {
                if state.step(&spec.name).is_some_and(|s| s.is_complete()) {
                    continue;
                }
                if !self.execute(run, epoch, spec, &steps[&spec.name], writer)? {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            let records = writer.records()?;
            let state = RunState::from_records(&records);
            let (step, error) = state.abort.clone().unwrap_or_default();
            let past_no_return = state
                .steps
                .iter()
                .any(|(name, s)| s.touched.is_some() && plan.step(name).is_some_and(|spec| !spec.reversible));
            if past_no_return {
                writer.write(
                    None,
                    Phase::Stopped,
                    &format!("step `{step}` failed after the point of no return: {error}"),
                    0,
                )?;
                return Ok(build_report(run, plan, &writer.records()?, notes));
            }
            let mut pending: Vec<(&String, &StepState)> = state
                .steps
                .iter()
                .filter(|(_, s)| s.touched.is_some() && s.status != Status::Compensated)
                .collect();
            pending.sort_by_key(|(_, s)| std::cmp::Reverse(s.touched));
            for (name, _) in pending {
                let Some(spec) = plan.step(name) else { continue };
                self.compensate(run, epoch, spec, &steps[name], writer)?;
            }
            writer.write(None, Phase::Aborted, &format!("step `{step}` failed: {error}"), 0)?;
        } else {
            writer.write(None, Phase::Finished, "", 0)?;
        }
        Ok(build_report(run, plan, &writer.records()?, notes))
    }

    /// Runs one step to its end; `Ok(false)` when the step failed (journaled `failed`).
    fn execute(
        &self,
        run: &str,
        epoch: u64,
        spec: &StepSpec,
        step: &Arc<dyn Step>,
        writer: &Writer,
    ) -> Result<bool, RunError> {
        let name = spec.name.as_str();
        let span = tracing::info_span!("step", step = name);
        let _entered = span.enter();
        writer.write(Some(name), Phase::Started, "", 0)?;
        let t0 = Instant::now();
        let ctx = StepContext::new(run, name, epoch, t0 + spec.timeout);
        let abandoned = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        {
            let (step, ctx, writer, abandoned) = (step.clone(), ctx.clone(), writer.clone(), abandoned.clone());
            let span = span.clone();
            std::thread::spawn(move || {
                let _entered = span.enter();
                let _ = tx.send(attempt(&*step, &ctx, &writer, &abandoned));
            });
        }
        let ms = |t: Instant| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX);
        let outcome = match rx.recv_timeout(spec.timeout) {
            Ok(o) => o,
            Err(RecvTimeoutError::Timeout) => {
                writer.abandon(&abandoned);
                ctx.cancel();
                let stopped = rx.recv_timeout(self.cancel_grace).is_ok();
                let mut detail = timed_out(spec, &ctx);
                if !stopped {
                    detail.push_str(&format!(
                        "; still running {} after cancellation",
                        human(self.cancel_grace)
                    ));
                }
                writer.write(Some(name), Phase::Failed, &detail, ms(t0))?;
                return Ok(false);
            }
            Err(RecvTimeoutError::Disconnected) => Attempt::Failed(StepError::Permanent("step panicked".into())),
        };
        match outcome {
            // Whether the effect was already there is in the `checked` record; `finished` is
            // the same either way, so a resumed run's journal settles like an uninterrupted one.
            Attempt::Done => {
                writer.write(Some(name), Phase::Finished, "", ms(t0))?;
                Ok(true)
            }
            // The step noticed its deadline a moment before the runner did.
            Attempt::Failed(StepError::Cancelled(_)) if t0.elapsed() >= spec.timeout => {
                let detail = timed_out(spec, &ctx);
                writer.write(Some(name), Phase::Failed, &detail, ms(t0))?;
                Ok(false)
            }
            Attempt::OutOfTime(last) => {
                let detail = format!("timed out after {}; last: {last}", human(spec.timeout));
                writer.write(Some(name), Phase::Failed, &detail, ms(t0))?;
                Ok(false)
            }
            Attempt::Failed(e) => {
                writer.write(Some(name), Phase::Failed, &e.to_string(), ms(t0))?;
                Ok(false)
            }
            Attempt::Journal(e) => Err(e.into()),
            // Only set after a timeout, which returned above.
            Attempt::Abandoned => Ok(false),
        }
    }

    /// Compensates one step, bounded by its timeout; a failure is journaled, not returned.
    fn compensate(
        &self,
        run: &str,
        epoch: u64,
        spec: &StepSpec,
        step: &Arc<dyn Step>,
        writer: &Writer,
    ) -> Result<(), RunError> {
        let name = spec.name.as_str();
        let span = tracing::info_span!("step", step = name);
        let _entered = span.enter();
        writer.write(Some(name), Phase::Compensating, "", 0)?;
        let t0 = Instant::now();
        let ctx = StepContext::new(run, name, epoch, t0 + spec.timeout);
        let (tx, rx) = mpsc::channel();
        {
            let (step, ctx, span) = (step.clone(), ctx.clone(), span.clone());
            std::thread::spawn(move || {
                let _entered = span.enter();
                let _ = tx.send(step.compensate(&ctx));
            });
        }
        let result = match rx.recv_timeout(spec.timeout) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => {
                ctx.cancel();
                Err(StepError::Cancelled(format!("timed out after {}", human(spec.timeout))))
            }
            Err(RecvTimeoutError::Disconnected) => Err(StepError::Permanent("compensation panicked".into())),
        };
        let millis = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        match result {
            Ok(()) => writer.write(Some(name), Phase::Compensated, "", millis)?,
            Err(e) => writer.write(Some(name), Phase::Failed, &format!("compensation failed: {e}"), millis)?,
        };
        Ok(())
    }
}

/// The span of a run: every record it journals is logged inside it.
fn run_span(run: &str, plan: &RecoveryPlan, epoch: u64) -> tracing::Span {
    tracing::info_span!("run", id = run, epoch, kind = serialized(plan.kind).as_str())
}

/// A unit variant as the journal spells it (`failover`, `compensating`).
fn serialized<T: Serialize + std::fmt::Debug>(value: T) -> String {
    match serde_json::to_value(&value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{value:?}"),
    }
}

/// Logs a journal record once it is durable: a failure or a compensation as a warning, the
/// rest at debug. Who runs the run says more at info: the agent logs its failover's start and
/// end as events, the person running `resurgo failover` sees the progress from the observer.
fn log(record: &Record) {
    let phase = serialized(record.phase);
    let (phase, millis) = (phase.as_str(), record.millis);
    let message = if record.detail.is_empty() {
        phase
    } else {
        record.detail.as_str()
    };
    match (record.step.is_some(), record.phase) {
        (_, Phase::Failed | Phase::Compensating | Phase::Aborted | Phase::Stopped) => {
            tracing::warn!(phase, millis, "{message}")
        }
        (false, Phase::Planned) => tracing::debug!(phase, "run started"),
        (false, Phase::Finished) => tracing::debug!(phase, "run finished"),
        _ => tracing::debug!(phase, millis, "{message}"),
    }
}

fn check_steps(plan: &RecoveryPlan, steps: &Steps) -> Result<(), RunError> {
    plan.validate()?;
    match plan.steps.iter().find(|s| !steps.contains_key(&s.name)) {
        Some(s) => Err(RunError::MissingStep(s.name.clone())),
        None => Ok(()),
    }
}

enum Attempt {
    Done,
    Failed(StepError),
    /// Retries ran out of time; the last retryable error.
    OutOfTime(String),
    Journal(JournalError),
    /// The runner gave up on this attempt (timeout); nothing more was journaled.
    Abandoned,
}

/// check → act → verify, retrying from `check` on `NotReady` and transient errors with
/// back-off until the deadline. Runs on the step's own thread.
fn attempt(step: &dyn Step, ctx: &StepContext, writer: &Writer, abandoned: &AtomicBool) -> Attempt {
    let mut backoff = Duration::from_millis(50);
    loop {
        match pass(step, ctx, writer, abandoned) {
            Ok(()) => return Attempt::Done,
            Err(Attempt::Failed(e)) if e.is_retryable() => {
                if !ctx.pause(backoff) {
                    return Attempt::OutOfTime(e.to_string());
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(stop) => return stop,
        }
    }
}

/// One pass of check → act → verify.
fn pass(step: &dyn Step, ctx: &StepContext, writer: &Writer, abandoned: &AtomicBool) -> Result<(), Attempt> {
    let record = |phase, detail: &str| match writer.write_unless(abandoned, Some(ctx.step()), phase, detail) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Attempt::Abandoned),
        Err(e) => Err(Attempt::Journal(e)),
    };
    ctx.checkpoint().map_err(Attempt::Failed)?;
    match step.check(ctx).map_err(Attempt::Failed)? {
        Check::AlreadyDone => record(Phase::Checked, CHECKED_ALREADY_DONE)?,
        Check::NotReady(why) => return Err(Attempt::Failed(StepError::Transient(format!("not ready: {why}")))),
        Check::Ready => {
            record(Phase::Checked, CHECKED_READY)?;
            step.act(ctx).map_err(Attempt::Failed)?;
            record(Phase::Acted, "")?;
        }
    }
    // Verified even when `check` found the effect in place: after a crash between `act` and
    // `verify`, `check` sees the effect and only `verify` can tell whether it is right.
    step.verify(ctx).map_err(Attempt::Failed)?;
    record(Phase::Verified, "")
}

/// The journal, shared between the runner and a step's thread.
#[derive(Clone)]
struct Writer {
    inner: Arc<Mutex<(Journal, Option<Observer>)>>,
    epoch: u64,
}

impl Writer {
    fn new(journal: Journal, observer: Option<Observer>, epoch: u64) -> Writer {
        Writer {
            inner: Arc::new(Mutex::new((journal, observer))),
            epoch,
        }
    }

    fn lock(&self) -> MutexGuard<'_, (Journal, Option<Observer>)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn observe(&self, record: &Record) {
        if let Some(o) = &self.lock().1 {
            o(record);
        }
    }

    fn write(&self, step: Option<&str>, phase: Phase, detail: &str, millis: u64) -> Result<Record, JournalError> {
        let mut g = self.lock();
        let record = g.0.append(self.epoch, step, phase, detail, millis)?;
        log(&record);
        if let Some(o) = &g.1 {
            o(&record);
        }
        Ok(record)
    }

    /// Writes unless the runner has abandoned this attempt; the check and the write happen
    /// under the journal lock, so no record of an abandoned attempt follows its `failed`.
    fn write_unless(
        &self,
        abandoned: &AtomicBool,
        step: Option<&str>,
        phase: Phase,
        detail: &str,
    ) -> Result<bool, JournalError> {
        let mut g = self.lock();
        if abandoned.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let record = g.0.append(self.epoch, step, phase, detail, 0)?;
        log(&record);
        if let Some(o) = &g.1 {
            o(&record);
        }
        Ok(true)
    }

    fn abandon(&self, abandoned: &AtomicBool) {
        let _g = self.lock();
        abandoned.store(true, Ordering::SeqCst);
    }

    fn records(&self) -> Result<Vec<Record>, JournalError> {
        let g = self.lock();
        Ok(Journal::read(g.0.path())?.records)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    Running,
    Done,
    AlreadyDone,
    Failed,
    Compensating,
    Compensated,
    CompensationFailed,
}

#[derive(Debug, Clone)]
struct StepState {
    status: Status,
    /// Seq of the first record showing this run may have changed something (the undo record).
    touched: Option<u64>,
    started: Option<String>,
    finished: Option<String>,
    millis: Option<u64>,
    error: Option<String>,
}

impl StepState {
    fn is_complete(&self) -> bool {
        matches!(self.status, Status::Done | Status::AlreadyDone)
    }
}

/// What the journal says, folded record by record.
#[derive(Debug, Default)]
struct RunState {
    steps: HashMap<String, StepState>,
    /// The first step failure: (step, error).
    abort: Option<(String, String)>,
    terminal: Option<Phase>,
    /// The run stopped after the point of no return (step, error) and nothing ran since.
    stopped: Option<(String, String)>,
}

impl RunState {
    fn step(&self, name: &str) -> Option<&StepState> {
        self.steps.get(name)
    }

    fn from_records(records: &[Record]) -> RunState {
        let mut st = RunState::default();
        for r in records {
            let Some(name) = &r.step else {
                match r.phase {
                    Phase::Finished | Phase::Aborted => st.terminal = Some(r.phase),
                    // Not an end: a resume retries from the failed step.
                    Phase::Stopped => st.stopped = st.abort.take(),
                    _ => {}
                }
                continue;
            };
            st.stopped = None;
            let s = st.steps.entry(name.clone()).or_insert(StepState {
                status: Status::Pending,
                touched: None,
                started: None,
                finished: None,
                millis: None,
                error: None,
            });
            match r.phase {
                Phase::Started => {
                    s.started.get_or_insert_with(|| r.time.clone());
                    s.status = Status::Running;
                }
                Phase::Checked if r.detail == CHECKED_READY => {
                    s.touched.get_or_insert(r.seq);
                }
                Phase::Acted => {
                    s.touched.get_or_insert(r.seq);
                }
                Phase::Finished => {
                    s.status = if s.touched.is_some() {
                        Status::Done
                    } else {
                        Status::AlreadyDone
                    };
                    s.finished = Some(r.time.clone());
                    s.millis = Some(r.millis);
                }
                Phase::Failed if s.status == Status::Compensating => {
                    s.status = Status::CompensationFailed;
                    s.error = Some(r.detail.clone());
                    s.finished = Some(r.time.clone());
                }
                Phase::Failed => {
                    s.status = Status::Failed;
                    s.error = Some(r.detail.clone());
                    s.finished = Some(r.time.clone());
                    s.millis = Some(r.millis);
                    if st.abort.is_none() {
                        st.abort = Some((name.clone(), r.detail.clone()));
                    }
                }
                Phase::Compensating => s.status = Status::Compensating,
                Phase::Compensated => {
                    s.status = Status::Compensated;
                    s.finished = Some(r.time.clone());
                }
                _ => {}
            }
        }
        st
    }
}

/// Why a step failed when its time ran out, with what it said it was waiting for.
fn timed_out(spec: &StepSpec, ctx: &StepContext) -> String {
    match ctx.waited_on() {
        Some(why) => format!("timed out after {}; last: {why}", human(spec.timeout)),
        None => format!("timed out after {}", human(spec.timeout)),
    }
}

fn build_report(run: &str, plan: &RecoveryPlan, records: &[Record], notes: Vec<String>) -> RunReport {
    let state = RunState::from_records(records);
    let order: Vec<&StepSpec> = plan.order().unwrap_or_else(|_| plan.steps.iter().collect());
    let steps = order
        .iter()
        .map(|spec| {
            let s = state.step(&spec.name);
            let outcome = match s {
                None => StepOutcome::Pending,
                Some(s) => {
                    let error = s.error.clone().unwrap_or_default();
                    match s.status {
                        Status::Pending => StepOutcome::Pending,
                        Status::Running => StepOutcome::Running,
                        Status::Done => StepOutcome::Done,
                        Status::AlreadyDone => StepOutcome::AlreadyDone,
                        Status::Failed => StepOutcome::Failed { error },
                        Status::Compensating => StepOutcome::Compensating,
                        Status::Compensated => StepOutcome::Compensated,
                        Status::CompensationFailed => StepOutcome::CompensationFailed { error },
                    }
                }
            };
            StepReport {
                name: spec.name.clone(),
                started: s.and_then(|s| s.started.clone()),
                finished: s.and_then(|s| s.finished.clone()),
                millis: s.and_then(|s| s.millis),
                outcome,
            }
        })
        .collect();
    let outcome = match state.terminal {
        Some(Phase::Finished) => RunOutcome::Succeeded,
        Some(_) => {
            let (step, error) = state.abort.unwrap_or_default();
            RunOutcome::Aborted { step, error }
        }
        None => match state.stopped {
            Some((step, error)) => RunOutcome::Stopped { step, error },
            None => RunOutcome::Incomplete,
        },
    };
    RunReport {
        run: run.to_string(),
        plan: plan.id.clone(),
        kind: plan.kind,
        epoch: records.iter().map(|r| r.epoch).max().unwrap_or(plan.epoch),
        outcome,
        steps,
        notes,
    }
}
