//! What a step is to the runner: the [`Step`] trait (check, act, verify, compensate), the
//! context each call gets (run, epoch, deadline, cancellation) and the typed [`StepError`] that
//! says whether retrying can help.
//!
//! Contract (DESIGN invariant 3): every method is idempotent. `check` looks at the world and
//! says whether the step's effect is already there; the runner calls it before every `act`, and
//! again after a crash, so an `act` that completed but was never journaled is not repeated.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The step's effect is already in place: the runner skips `act` and `verify`.
    AlreadyDone,
    /// Preconditions hold: the runner may act.
    Ready,
    /// Preconditions do not hold yet (e.g. replica still catching up): the runner checks again
    /// with back-off until the step's timeout.
    NotReady(String),
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Check::AlreadyDone => f.write_str("already done"),
            Check::Ready => f.write_str("ready"),
            Check::NotReady(why) => write!(f, "not ready: {why}"),
        }
    }
}

/// Why a step call failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// Worth retrying (network blip, lock held, endpoint not up yet). The runner retries from
    /// `check` with back-off until the step's deadline.
    #[error("transient failure: {0}")]
    Transient(String),
    /// Retrying cannot help; the run aborts and compensates.
    #[error("{0}")]
    Permanent(String),
    /// The step's effect was checked after acting and is not there.
    #[error("verification failed: {0}")]
    Verification(String),
    /// Someone holds a newer epoch: this run is stale and must stop (invariant 4).
    #[error("stale epoch {offered}: epoch {current} is in force")]
    StaleEpoch { offered: u64, current: u64 },
    /// The deadline passed or the run was cancelled; the step noticed and stopped.
    #[error("cancelled: {0}")]
    Cancelled(String),
}

impl StepError {
    /// Whether repeating the call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StepError::Transient(_))
    }
}

/// What every step call is handed. Cheap to clone; clones share the cancellation flag.
#[derive(Debug, Clone)]
pub struct StepContext {
    run: Arc<str>,
    step: Arc<str>,
    epoch: u64,
    deadline: Instant,
    cancelled: Arc<AtomicBool>,
    /// What the step said it is waiting for, last: the runner's reason if it times out.
    waiting: Arc<std::sync::Mutex<Option<String>>>,
}

impl StepContext {
    /// A context for one call of one step; also how a step is tested on its own.
    pub fn new(run: &str, step: &str, epoch: u64, deadline: Instant) -> StepContext {
        StepContext {
            run: run.into(),
            step: step.into(),
            epoch,
            deadline,
            cancelled: Arc::new(AtomicBool::new(false)),
            waiting: Arc::default(),
        }
    }

    /// Says what the step is waiting for now; should its time run out, the run's record of the
    /// failure ends with it (`timed out after 10s; last: the lease is still held`).
    pub fn waiting_on(&self, why: impl Into<String>) {
        *self.waiting.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.into());
    }

    /// What the step last said it was waiting for.
    pub fn waited_on(&self) -> Option<String> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn run_id(&self) -> &str {
        &self.run
    }

    pub fn step(&self) -> &str {
        &self.step
    }

    /// The epoch to stamp on every action this step takes; a target holding a newer one must
    /// refuse it.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Time left before the deadline (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Asks the step to stop; long-running calls should poll [`StepContext::checkpoint`].
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// True once cancelled or past the deadline.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst) || Instant::now() >= self.deadline
    }

    /// `Err(Cancelled)` once cancelled or past the deadline: call between units of work.
    pub fn checkpoint(&self) -> Result<(), StepError> {
        if self.cancelled.load(Ordering::SeqCst) {
            Err(StepError::Cancelled(format!("step `{}` cancelled", self.step)))
        } else if Instant::now() >= self.deadline {
            Err(StepError::Cancelled(format!(
                "step `{}` passed its deadline",
                self.step
            )))
        } else {
            Ok(())
        }
    }

    /// Waits up to `d` (never past the deadline), waking early on cancellation. For back-off
    /// between attempts; returns false if cancelled or out of time.
    pub fn pause(&self, d: Duration) -> bool {
        let until = (Instant::now() + d).min(self.deadline);
        while Instant::now() < until {
            if self.cancelled.load(Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(
                until
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(20)),
            );
        }
        !self.is_cancelled()
    }
}

/// One step of a recovery plan. Object-safe; the runner holds `Arc<dyn Step>`.
pub trait Step: Send + Sync {
    /// Is the effect already there, can we act, or must we wait? Must not change anything.
    fn check(&self, ctx: &StepContext) -> Result<Check, StepError>;
    /// Brings the effect about. Idempotent: may be called again after a crash.
    fn act(&self, ctx: &StepContext) -> Result<()>;
    /// Confirms the effect is in place (e.g. the new primary accepts writes).
    fn verify(&self, ctx: &StepContext) -> Result<()>;
    /// Undoes the effect as far as possible. Idempotent, and must cope with a partial `act`:
    /// it is also called for a step that failed or timed out after it may have started acting.
    fn compensate(&self, ctx: &StepContext) -> Result<()>;
}

/// The result of a step call.
pub type Result<T, E = StepError> = std::result::Result<T, E>;
