//! Planning: what the system should look like ([`desired`]), what it looks like
//! ([`observed`]), and the ordered list of changes between the two ([`plan`]).
//!
//! Everything here is plain data and plain functions: no processes, sockets or disks.

pub mod cost;
pub mod desired;
pub mod observed;
pub mod plan;
pub mod recovery;

pub use desired::{desired_state, Role, RunConfig};
pub use observed::{observed_hash, Health, ObservedService, ObservedSite, ProcessState, SiteState};
pub use plan::{
    make_plan, Action, Change, Plan, PlanError, PlanOptions, SitePlan, SourceId, Summary, PLAN_FORMAT_VERSION,
};
