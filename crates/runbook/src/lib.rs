//! The runbook: executes recovery plans (failover, failback, drills).
//!
//! A [`RecoveryPlan`] is a DAG of named steps (`plan`, pure); each step is an implementation
//! of [`Step`] (`step`) that checks before it acts, acts idempotently, verifies, and can be
//! compensated. [`Runner`] (`run`) executes a plan in dependency order and writes the durable
//! [`Journal`] (`journal`) before and after every step, so that a run killed at any point resumes
//! to the same end state (DESIGN invariant 3); every record and every step carries the run's
//! epoch, and a resume offered a lower epoch than the journal holds is refused (invariant 4).
//!
//! Knows nothing of what a step does inside: fencing, promotion and route switching are `Step`s
//! supplied by the caller. `tabletop` renders a recovery plan's steps (from `resurgo-plan`) as
//! the checklist a team rehearses, with what past runs measured of each.

pub mod crash;
pub mod journal;
pub mod plan;
pub mod run;
pub mod step;
pub mod tabletop;

pub use crash::crash_point;
pub use journal::{Journal, JournalContents, JournalError, Phase, Record, TornTail};
pub use plan::{PlanError, PlanKind, RecoveryPlan, StepSpec};
pub use run::{Observer, RunError, RunOutcome, RunReport, Runner, StepOutcome, StepReport, Steps};
pub use step::{Check, Step, StepContext, StepError};
