//! Integration tests of the runbook, one binary: plans, runs, the journal, and resume after
//! SIGKILL at every boundary.

mod journal;
mod kill;
mod logs;
mod plan;
mod run;
mod util;
