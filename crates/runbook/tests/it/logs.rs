//! What a run logs: every event — the runner's and a step's own, on the step's thread — inside
//! the `run` span (id, epoch, kind) and the `step` span (name).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use resurgo_runbook::{Runner, Step, StepContext, Steps};
use serde_json::Value;

use crate::util::{calls, diamond, file_steps, EPOCH};

/// Everything logged in this test binary, as JSON lines (one global subscriber: steps log
/// from threads of their own).
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || Sink(sink.clone()))
            .init();
        buffer
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A step that says what it does, then does it.
struct Loud(Arc<dyn Step>);

impl Step for Loud {
    fn check(&self, ctx: &StepContext) -> Result<resurgo_runbook::Check, resurgo_runbook::StepError> {
        self.0.check(ctx)
    }
    fn act(&self, ctx: &StepContext) -> resurgo_runbook::step::Result<()> {
        tracing::info!("acting");
        self.0.act(ctx)
    }
    fn verify(&self, ctx: &StepContext) -> resurgo_runbook::step::Result<()> {
        self.0.verify(ctx)
    }
    fn compensate(&self, ctx: &StepContext) -> resurgo_runbook::step::Result<()> {
        tracing::info!("undoing");
        self.0.compensate(ctx)
    }
}

#[test]
fn a_run_logs_inside_its_run_and_step_spans_even_on_step_threads() {
    let buffer = captured();
    let tmp = tempfile::tempdir().unwrap();
    let steps: Steps = file_steps(tmp.path(), &["a", "b", "c", "d"], &calls(), None, |s| {
        s.fail_verify = s.name == "d"
    })
    .into_iter()
    .map(|(name, step)| (name, Arc::new(Loud(step)) as Arc<dyn Step>))
    .collect();
    Runner::new(tmp.path().join("runs"))
        .start_as("logged-run", &diamond(), &steps)
        .unwrap();

    let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
    let ours: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["spans"][0]["id"] == "logged-run")
        .collect();
    let find = |message: &str, step: &str| {
        ours.iter()
            .find(|r| r["fields"]["message"] == message && r["spans"][1]["step"] == step)
            .unwrap_or_else(|| panic!("no `{message}` in step {step}:\n{text}"))
            .clone()
    };
    let acting = find("acting", "a");
    assert_eq!(acting["spans"][0]["name"], "run");
    assert_eq!(acting["spans"][0]["epoch"], EPOCH);
    assert_eq!(acting["spans"][0]["kind"], "failover");
    assert_eq!(acting["spans"][1]["name"], "step");
    assert_eq!(acting["level"], "INFO");
    // A compensation runs on a thread of its own too; a failure is a warning.
    find("undoing", "c");
    let failed = ours
        .iter()
        .find(|r| r["fields"]["phase"] == "failed" && r["spans"][1]["step"] == "d")
        .unwrap_or_else(|| panic!("no failed record of d:\n{text}"));
    assert_eq!(failed["level"], "WARN");
}
