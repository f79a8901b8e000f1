//! Progress of rustic_core's long operations, as process-wide byte counters that a command
//! line can draw (the CLI's spinner shows "1.2 GiB of 3.4 GiB"). Off by default: a visible
//! progress makes rustic scan sizes before a backup, which costs time nobody watches.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rustic_core::{Progress, ProgressBars, ProgressType, RusticProgress};

static ENABLED: AtomicBool = AtomicBool::new(false);
static DONE: AtomicU64 = AtomicU64::new(0);
static TOTAL: AtomicU64 = AtomicU64::new(0);

/// Turns byte counting on (a person is watching) or off.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Bytes done and bytes expected (0 when unknown) of the running operation.
pub fn bytes() -> (u64, u64) {
    (DONE.load(Ordering::Relaxed), TOTAL.load(Ordering::Relaxed))
}

/// Progress bars that are drawn by whoever reads [`bytes`], or not at all.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct QuietProgress;

impl ProgressBars for QuietProgress {
    fn progress(&self, progress_type: ProgressType, _prefix: &str) -> Progress {
        if matches!(progress_type, ProgressType::Bytes) && ENABLED.load(Ordering::Relaxed) {
            DONE.store(0, Ordering::Relaxed);
            TOTAL.store(0, Ordering::Relaxed);
            Progress::new(ByteCounter)
        } else {
            Progress::hidden()
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct ByteCounter;

impl RusticProgress for ByteCounter {
    fn is_hidden(&self) -> bool {
        false
    }
    fn set_length(&self, len: u64) {
        TOTAL.store(len, Ordering::Relaxed);
    }
    fn set_title(&self, _title: &str) {}
    fn inc(&self, inc: u64) {
        DONE.fetch_add(inc, Ordering::Relaxed);
    }
    fn finish(&self) {}
}
