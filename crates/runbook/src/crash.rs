//! Fault injection for tests: a kill -9 at an exact point of a run, which a test then resumes.
//! Compiled in only with the `crash-hooks` feature (the test builds enable it); without it
//! both functions do nothing and read no environment.
//!
//! - `RESURGO_CRASH_AFTER_RECORD=N`: the process SIGKILLs itself right after journal record
//!   `N` is durable (a step boundary).
//! - `RESURGO_CRASH_AT=NAME`: it SIGKILLs itself when it reaches the crash point `NAME` inside
//!   a step (e.g. `restore-before-rename`).

/// Called once each journal record is durable.
pub fn after_record(seq: u64) {
    #[cfg(feature = "crash-hooks")]
    {
        static AT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
        let at = AT.get_or_init(|| {
            std::env::var("RESURGO_CRASH_AFTER_RECORD")
                .ok()
                .and_then(|v| v.parse().ok())
        });
        if *at == Some(seq) {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
    #[cfg(not(feature = "crash-hooks"))]
    let _ = seq;
}

/// A named point inside a step where a test may kill the process.
pub fn crash_point(name: &str) {
    #[cfg(feature = "crash-hooks")]
    if std::env::var("RESURGO_CRASH_AT").is_ok_and(|v| v == name) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    #[cfg(not(feature = "crash-hooks"))]
    let _ = name;
}
