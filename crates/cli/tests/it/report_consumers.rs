//! A drill report's renderings as the tools outside resurgo read them: the JUnit XML through
//! Python's `junitparser`, the HTML page in headless Chromium (it must open offline with no
//! console error). [`junit_cases`] and [`open_in_chromium`] are for every test that produces
//! a real report; the tests here run them on a sample report rendered through
//! `resurgo-drill`, and prove the Chromium check can fail.
//!
//! How Chromium's complaints are caught. With `--enable-logging=stderr`, Chromium logs what a
//! page writes to its console (and its uncaught exceptions) as lines whose source is
//! `CONSOLE`, all at one level, among its own noise (D-Bus, GPU, sandbox lines, some marked
//! `ERROR:`, none a page's). It does not log a resource that failed to load (a broken
//! image): that only reaches DevTools. So a page is opened twice: once for the screenshot,
//! whose log is read for `CONSOLE` lines, and once under the DevTools protocol
//! (`--remote-debugging-pipe`), which reports console errors and warnings, exceptions, and
//! the browser's own log entries — failed loads, blocked content — and gives the DOM after
//! load (what `--dump-dom` prints). Each run is killed, with all its processes, after 60 s.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::browser::{chromium, Browser, Watchdog};

/// How long one Chromium run may take before it is killed.
const CHROMIUM_DEADLINE: Duration = Duration::from_secs(60);

/// Every test case of a JUnit XML file as `junitparser` reads it: its name and whether it
/// passed, in order. Panics if the file does not parse, or if a suite's `tests`, `failures`,
/// `errors` and `skipped` counts disagree with the cases it holds.
pub(crate) fn junit_cases(path: &Path) -> Vec<(String, bool)> {
    const SCRIPT: &str = r#"
import json, sys
try:
    from junitparser import JUnitXml, TestSuite
except ImportError:
    sys.exit(3)
xml = JUnitXml.fromfile(sys.argv[1])
suites = [xml] if isinstance(xml, TestSuite) else list(xml)
for suite in suites:
    cases = list(suite)
    not_passed = sum(1 for c in cases if not c.is_passed)
    counted = (suite.failures or 0) + (suite.errors or 0) + (suite.skipped or 0)
    if suite.tests != len(cases) or counted != not_passed:
        sys.exit("suite %r says tests=%s failures=%s errors=%s skipped=%s, but holds %d cases of which %d did not pass"
                 % (suite.name, suite.tests, suite.failures, suite.errors, suite.skipped, len(cases), not_passed))
    for case in cases:
        print(json.dumps([case.name, case.is_passed]))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed to read JUnit XML with junitparser: {e}"));
    if out.status.code() == Some(3) {
        panic!(
            "the Python package junitparser is not installed: `pip install junitparser` \
             (scripts/test.sh installs it)"
        );
    }
    assert!(
        out.status.success(),
        "junitparser could not read {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Opens `html` (an HTML page or an SVG image) in headless Chromium, saves a screenshot to
/// `screenshot`, and returns every console error and warning the page caused, failed loads
/// included; empty for a clean page. Panics if Chromium is missing, does not finish within 60
/// s, writes no screenshot, or the loaded document holds no `<svg`.
pub(crate) fn open_in_chromium(html: &Path, screenshot: &Path) -> Vec<String> {
    let chromium = chromium();
    let url = file_url(html);
    let scratch = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();

    // The screenshot, with Chromium's log on stderr.
    let _ = std::fs::remove_file(screenshot);
    let log_path = scratch.path().join("screenshot.log");
    let mut command = Command::new(&chromium);
    command
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .args(["--enable-logging=stderr", "--v=0", "--window-size=1280,2000"])
        .arg(format!(
            "--user-data-dir={}",
            scratch.path().join("profile-screenshot").display()
        ))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .process_group(0);
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
    let status = Watchdog::arm(&child, CHROMIUM_DEADLINE).reap(&mut child, "taking the screenshot");
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.success(),
        "chromium failed ({status}) taking the screenshot of {url}:\n{log}"
    );
    problems.extend(console_lines(&log));
    let size = std::fs::metadata(screenshot).map_or(0, |m| m.len());
    assert!(
        size > 0,
        "chromium wrote no screenshot of {url} to {}:\n{log}",
        screenshot.display()
    );

    // The page again, under the DevTools protocol.
    let session = devtools(&url);
    assert!(
        session.dom.contains("<svg"),
        "the document chromium loaded from {url} holds no <svg:\n{}",
        session.dom
    );
    problems.extend(session.problems);
    problems
}

/// The lines of Chromium's log that carry a page's console message. A log line reads
/// `[pid:tid:MMDD/HHMMSS.micros:LEVEL:source.cc:line] text`; a page's message has the source
/// `CONSOLE` (`CONSOLE(line)` in older versions). Chromium logs every console message at the
/// same level, so a `console.log` is reported too: a report's page runs no script at all.
fn console_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| {
            let (head, text) = line.strip_prefix('[')?.split_once("] ")?;
            let source = head.split(':').nth(4)?;
            source.starts_with("CONSOLE").then(|| format!("console: {text}"))
        })
        .collect()
}

/// A `file://` URL for a path, its bytes percent-encoded where a URL needs it.
fn file_url(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let path = path
        .canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut url = String::from("file://");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// What the DevTools session saw: console errors and warnings, exceptions, the browser's
/// error and warning log entries, and the document after load.
struct Session {
    problems: Vec<String>,
    dom: String,
}

/// Loads `url` in Chromium under the DevTools protocol (`browser.rs`).
fn devtools(url: &str) -> Session {
    let mut browser = Browser::start(CHROMIUM_DEADLINE);
    browser.goto(url);
    let dom = browser.dom();
    Session {
        problems: browser.problems(),
        dom,
    }
}

/// A report as a runner writes it — a failing isolated drill — with text in it that would
/// break a rendering, or run in it, were it not escaped.
fn sample_report() -> resurgo_drill::Report {
    let hostile = "<script>alert(1)</script>&\"'";
    let report = json!({
        "schema": resurgo_drill::REPORT_SCHEMA,
        "run": "drill-lose-a-20261130T101500Z",
        "drill": "lose-a",
        "mode": "isolated",
        "scope": {"kind": "site", "targets": ["a"]},
        "spec_commit": "3f2a9c1e0b7d",
        "resurgo_version": "0.1.0",
        "operator": "ops@bastion",
        "started": "2026-11-30T10:15:00Z",
        "ended": "2026-11-30T10:16:02Z",
        "deadline_s": 600.0,
        "outcome": "completed",
        "timeline": [
            {"at_s": 0.0, "kind": "fault_injected", "message": "site a stopped"},
            {"at_s": 1.5, "kind": "detected", "message": "site a missed 3 heartbeats"},
            {"at_s": 9.8, "kind": "promoted", "message": format!("orders promoted at b {hostile}")},
            {"at_s": 14.2, "kind": "healthy", "message": "web answers at b"},
            {"at_s": 40.0, "kind": "fault_reverted", "message": "site a started again"},
            {"at_s": 61.0, "kind": "teardown", "message": "sandbox removed"}
        ],
        "phases": [
            {"name": "detect", "start_s": 0.0, "end_s": 1.5},
            {"name": "decide", "start_s": 1.5, "end_s": 2.1},
            {"name": "execute", "start_s": 2.1, "end_s": 12.0},
            {"name": "propagate", "start_s": 12.0, "end_s": 14.2},
            {"name": "teardown", "start_s": 40.0, "end_s": 61.0}
        ],
        "rto": {"measured_s": 14.2, "objective_s": 10.0, "detect_s": 1.5, "decide_s": 0.6,
                "preempt_s": null, "execute_s": 9.9, "propagate_s": 2.2},
        "rpo": {"objective_s": 5.0, "writes_lost": 0, "seconds": 0.0, "datasets": [
            {"dataset": "orders", "kind": "postgres", "site": "b", "acknowledged": 120,
             "recovered": 120, "writes_lost": 0, "seconds": 0.0, "detail": null}
        ]},
        "probes": [
            {"name": format!("web {hostile}"), "kind": "route", "target": "http://web.test/health",
             "attempts": 40, "failures": 6, "passed": false, "detail": format!("HTTP 503 {hostile}")},
            {"name": "canary", "kind": "canary", "target": "orders", "attempts": 120,
             "failures": 0, "passed": true, "detail": null}
        ],
        "isolation": {"sandbox": "drill-lose-a", "attempts": [
            {"from": "web", "to": "10.0.0.1:5432", "reached": false, "detail": "connection refused"}
        ]},
        "data_checks": [
            {"dataset": "orders", "site": "b", "method": "pg_amcheck", "passed": true, "detail": null}
        ],
        "faults": [
            {"kind": "stop_site", "target": "a", "injected_at_s": 0.0, "reverted_at_s": 40.0,
             "undo": "resurgo set-up a"}
        ],
        "leftovers": [
            {"kind": "process", "what": format!("web (pid 4242) {hostile}"), "place": "site b"}
        ],
        "verdict": "pass",
        "findings": []
    });
    let mut report: resurgo_drill::Report = serde_json::from_value(report).unwrap();
    report.judge();
    report
}

#[test]
fn junit_of_a_report_reads_in_junitparser_with_every_case_and_failure() {
    let report = sample_report();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drill.xml");
    std::fs::write(&path, resurgo_drill::junit(&report)).unwrap();
    let cases = junit_cases(&path);
    let expected: Vec<(String, bool)> = [
        ("outcome", true),
        ("objective rto", false),
        ("objective rpo", true),
        ("probe web <script>alert(1)</script>&\"'", false),
        ("probe canary", true),
        ("isolation", true),
        ("data check orders@b", true),
        ("leak check", false),
    ]
    .into_iter()
    .map(|(name, passed)| (name.to_string(), passed))
    .collect();
    assert_eq!(cases, expected);
    assert_eq!(report.findings.len(), 3, "{:?}", report.findings);
}

#[test]
fn html_of_a_report_opens_in_chromium_without_a_console_error() {
    let report = sample_report();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("drill.html");
    std::fs::write(&page, resurgo_drill::html(&report)).unwrap();
    let screenshot = dir.path().join("drill.png");
    let problems = open_in_chromium(&page, &screenshot);
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 0);
}

#[test]
fn the_timeline_svg_opens_in_chromium_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("timeline.svg");
    std::fs::write(&image, resurgo_drill::timeline_svg(&sample_report())).unwrap();
    let problems = open_in_chromium(&image, &dir.path().join("timeline.png"));
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The check is worth something only if it can fail: a script's console error and a broken
/// image are both reported.
#[test]
fn the_chromium_check_reports_console_errors_and_broken_images() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("broken.html");
    std::fs::write(
        &page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>broken</title></head><body>\
         <script>console.error(\"x\")</script><img src=missing.png alt=\"\">\
         <svg viewBox=\"0 0 10 10\"></svg></body></html>",
    )
    .unwrap();
    let problems = open_in_chromium(&page, &dir.path().join("broken.png"));
    assert!(
        problems.iter().any(|p| p.starts_with("console.error: x")),
        "the console error was missed: {problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with("console: \"x\"")),
        "the console error was missed in Chromium's log: {problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("missing.png")),
        "the broken image was missed: {problems:#?}"
    );
}
