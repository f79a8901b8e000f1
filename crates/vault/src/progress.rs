//! Progress reporting for rustic_core's long operations. For now it draws nothing: the
//! controller reports outcomes, not bars. A hidden progress also lets rustic skip work done
//! only for display (e.g. the size scan before a backup).
//!
//! To report progress later (metrics, the dashboard), return a `Progress::new(..)` of a type
//! implementing `rustic_core::RusticProgress` from [`QuietProgress::progress`].

use rustic_core::{Progress, ProgressBars, ProgressType};

/// Progress bars that are never drawn.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct QuietProgress;

impl ProgressBars for QuietProgress {
    fn progress(&self, _progress_type: ProgressType, _prefix: &str) -> Progress {
        Progress::hidden()
    }
}
