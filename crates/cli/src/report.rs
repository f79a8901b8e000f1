//! Reporting long work: on a terminal, a line per step with a live elapsed-time spinner; off a
//! terminal (a pipe, a log, CI), one JSON object per line that a machine can follow.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Reporter {
    terminal: bool,
}

/// A step in progress; finish it with [`Step::done`] or [`Step::failed`].
pub struct Step {
    terminal: bool,
    label: String,
    started: Instant,
    stop: Arc<AtomicBool>,
    spinner: Option<std::thread::JoinHandle<()>>,
}

impl Reporter {
    pub fn new(json: bool) -> Reporter {
        let terminal = !json && std::io::stderr().is_terminal();
        // Byte counts cost rustic a size scan: only when someone watches.
        resurgo_vault::progress::enable(terminal);
        Reporter { terminal }
    }

    pub fn step(&self, label: impl Into<String>) -> Step {
        let label = label.into();
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let spinner = if self.terminal {
            let (label, stop) = (label.clone(), stop.clone());
            Some(std::thread::spawn(move || {
                let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (done, total) = resurgo_vault::progress::bytes();
                    let bytes = match (done, total) {
                        (0, _) => String::new(),
                        (d, 0) => format!("  {}", size(d)),
                        (d, t) => format!("  {} of {} ({:.0}%)", size(d), size(t), d as f64 * 100.0 / t as f64),
                    };
                    let secs = started.elapsed().as_secs_f64();
                    eprint!("\r{} {label} {secs:.1}s{bytes} ", frames[i % frames.len()]);
                    let _ = std::io::stderr().flush();
                    i += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }))
        } else {
            emit(serde_json::json!({"event": "started", "step": label}));
            None
        };
        Step {
            terminal: self.terminal,
            label,
            started,
            stop,
            spinner,
        }
    }
}

impl Step {
    fn end(&mut self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.spinner.take() {
            let _ = h.join();
            eprint!("\r\x1b[2K");
        }
        self.started.elapsed().as_secs_f64()
    }

    /// Ends the step: `summary` for people, `detail` in the JSON line.
    pub fn done(mut self, summary: &str, detail: Value) {
        let secs = self.end();
        if self.terminal {
            println!("✓ {} — {summary} ({secs:.1}s)", self.label);
        } else {
            emit(serde_json::json!({"event": "done", "step": self.label, "seconds": secs, "result": detail}));
        }
    }

    pub fn failed(mut self, error: &str) {
        let secs = self.end();
        if self.terminal {
            println!("✗ {} — {error} ({secs:.1}s)", self.label);
        } else {
            emit(serde_json::json!({"event": "failed", "step": self.label, "seconds": secs, "error": error}));
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.spinner.take() {
            let _ = h.join();
        }
    }
}

fn emit(v: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
}

pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}
