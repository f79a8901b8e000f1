//! Exit codes. Scripts rely on them, so they are named, documented and never reused.

use std::process::ExitCode;

/// Success; for `plan` and `status`: nothing to change, everything in sync.
pub const OK: u8 = 0;
/// Something failed: the message says what and what to do next.
pub const ERROR: u8 = 1;
/// `plan`: changes are pending. `status`: drift, or a site is unknown.
pub const CHANGES: u8 = 2;
/// The command line itself is wrong (unknown flag, missing argument).
pub const USAGE: u8 = 64;

pub fn code(c: u8) -> ExitCode {
    ExitCode::from(c)
}
