//! Test fixtures: steps whose effects are files (so a killed process leaves them behind for
//! the next one to find), a gate that stops a run at its N-th boundary, and polling helpers.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use resurgo_runbook::run::{Observer, Steps};
use resurgo_runbook::{Check, PlanKind, RecoveryPlan, Step, StepContext, StepError, StepSpec};

/// Counts the boundaries a run passes (each journal record, and the points inside a step
/// between its effect and the record of it); at boundary `stop_at` it writes `marker` with the
/// boundary's label and blocks for good, waiting to be killed. `stop_at == 0` only counts.
pub struct Gate {
    count: AtomicUsize,
    stop_at: usize,
    marker: PathBuf,
    labels: Mutex<Vec<String>>,
}

impl Gate {
    pub fn new(stop_at: usize, marker: PathBuf) -> Arc<Gate> {
        Arc::new(Gate {
            count: AtomicUsize::new(0),
            stop_at,
            marker,
            labels: Mutex::new(Vec::new()),
        })
    }

    pub fn counting() -> Arc<Gate> {
        Gate::new(0, PathBuf::new())
    }

    pub fn point(&self, label: &str) {
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        self.labels.lock().unwrap().push(label.to_string());
        if n == self.stop_at {
            // Written whole, then renamed: the parent must never read a half-written marker.
            let tmp = self.marker.with_extension("tmp");
            std::fs::write(&tmp, label).unwrap();
            std::fs::rename(&tmp, &self.marker).unwrap();
            // Never returns: the parent kills this process (SIGKILL) once it sees the marker.
            loop {
                std::thread::park();
            }
        }
    }

    pub fn labels(&self) -> Vec<String> {
        self.labels.lock().unwrap().clone()
    }

    pub fn observer(self: &Arc<Gate>) -> Observer {
        let gate = self.clone();
        Arc::new(move |r| {
            gate.point(&format!(
                "record {} {:?} {}",
                r.step.as_deref().unwrap_or("<run>"),
                r.phase,
                r.detail
            ));
        })
    }
}

/// A step whose effect is the file `effects/<name>` (holding the epoch) plus the line `<name>`
/// in `ledger`, each made at most once; compensation removes the file and adds `undo <name>`
/// once. `calls` records every call, in order, across steps sharing it.
pub struct FileStep {
    pub name: String,
    pub root: PathBuf,
    pub fail_verify: bool,
    pub fail_compensate: bool,
    /// `act` runs until cancelled (for timeouts).
    pub hang: bool,
    pub calls: Arc<Mutex<Vec<String>>>,
    pub gate: Option<Arc<Gate>>,
}

impl FileStep {
    fn effect(&self) -> PathBuf {
        self.root.join("effects").join(&self.name)
    }

    fn point(&self, what: &str) {
        if let Some(g) = &self.gate {
            g.point(&format!("{what} {}", self.name));
        }
    }

    fn log(&self, what: &str) {
        self.calls.lock().unwrap().push(format!("{what} {}", self.name));
    }
}

pub fn ledger(root: &Path) -> String {
    std::fs::read_to_string(root.join("ledger")).unwrap_or_default()
}

fn ledger_has(root: &Path, line: &str) -> bool {
    ledger(root).lines().any(|l| l == line)
}

fn ledger_add_once(root: &Path, line: &str) {
    if !ledger_has(root, line) {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.join("ledger"))
            .unwrap();
        f.write_all(format!("{line}\n").as_bytes()).unwrap();
    }
}

impl Step for FileStep {
    fn check(&self, _ctx: &StepContext) -> Result<Check, StepError> {
        self.log("check");
        Ok(if self.effect().exists() && ledger_has(&self.root, &self.name) {
            Check::AlreadyDone
        } else {
            Check::Ready
        })
    }

    fn act(&self, ctx: &StepContext) -> Result<(), StepError> {
        self.log("act");
        if self.hang {
            ctx.waiting_on("a reply that never comes");
            while ctx.pause(Duration::from_millis(10)) {}
            return Err(StepError::Cancelled("gave up".into()));
        }
        ledger_add_once(&self.root, &self.name);
        self.point("mid-act");
        if !self.effect().exists() {
            std::fs::create_dir_all(self.root.join("effects")).unwrap();
            std::fs::write(self.effect(), format!("epoch={}", ctx.epoch())).unwrap();
        }
        self.point("after-act");
        Ok(())
    }

    fn verify(&self, _ctx: &StepContext) -> Result<(), StepError> {
        self.log("verify");
        if self.fail_verify {
            return Err(StepError::Verification(format!("{} is not serving", self.name)));
        }
        match self.effect().exists() && ledger_has(&self.root, &self.name) {
            true => Ok(()),
            false => Err(StepError::Verification(format!("{} has no effect", self.name))),
        }
    }

    fn compensate(&self, _ctx: &StepContext) -> Result<(), StepError> {
        self.log("compensate");
        if self.fail_compensate {
            return Err(StepError::Permanent(format!("cannot undo {}", self.name)));
        }
        if self.effect().exists() {
            std::fs::remove_file(self.effect()).unwrap();
        }
        self.point("mid-compensate");
        ledger_add_once(&self.root, &format!("undo {}", self.name));
        self.point("after-compensate");
        Ok(())
    }
}

/// Builds steps for `names` under `root`; `tweak` adjusts each one.
pub fn file_steps(
    root: &Path,
    names: &[&str],
    calls: &Arc<Mutex<Vec<String>>>,
    gate: Option<Arc<Gate>>,
    tweak: impl Fn(&mut FileStep),
) -> Steps {
    let mut out: Steps = HashMap::new();
    for n in names {
        let mut s = FileStep {
            name: n.to_string(),
            root: root.to_path_buf(),
            fail_verify: false,
            fail_compensate: false,
            hang: false,
            calls: calls.clone(),
            gate: gate.clone(),
        };
        tweak(&mut s);
        out.insert(n.to_string(), Arc::new(s) as Arc<dyn Step>);
    }
    out
}

pub const EPOCH: u64 = 7;

/// a → {b, c} → d: waves [a], [b, c], [d].
pub fn diamond() -> RecoveryPlan {
    let t = Duration::from_secs(30);
    RecoveryPlan {
        id: "failover-db".into(),
        kind: PlanKind::Failover,
        epoch: EPOCH,
        steps: vec![
            StepSpec::new("a", t),
            StepSpec::new("b", t).after(&["a"]),
            StepSpec::new("c", t).after(&["a"]),
            StepSpec::new("d", t).after(&["b", "c"]),
        ],
    }
}

pub fn calls() -> Arc<Mutex<Vec<String>>> {
    Arc::new(Mutex::new(Vec::new()))
}

pub fn taken(calls: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    std::mem::take(&mut *calls.lock().unwrap())
}

/// Polls `ready` until it holds or `within` passes; the poll interval is not synchronisation,
/// only how often to look.
pub fn wait_for(within: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn journal_path(runs: &Path, run: &str) -> PathBuf {
    runs.join(run).join("journal.jsonl")
}
