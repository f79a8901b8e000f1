//! Headless Chromium under the DevTools protocol, for the tests that open what resurgo shows
//! people: a drill report's page (`report_consumers.rs`) and the agents' dashboard
//! (`dashboard.rs`). The browser reads commands on its file descriptor 3 and answers on 4
//! (`--remote-debugging-pipe`), each message JSON ended by a NUL. Every browser is killed, with
//! all its processes, at its deadline.
//!
//! [`Browser`] is one page driven step by step: go to a URL, evaluate script in it, wait for
//! a condition, take a screenshot, and collect every console error and warning, exception and
//! failed load on the way ([`problem`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

/// Chromium, from the PATH.
pub(crate) fn chromium() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("chromium"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "chromium is not installed (Debian package `chromium`: \
                 `apt-get install --no-install-recommends chromium`; scripts/test.sh installs it)"
            )
        })
}

/// Kills a child's whole process group (the browser and its helpers) once the deadline
/// passes, unless the child was reaped first: the kill and the reaping are under one lock,
/// so a process id that was reaped — and could be reused — is never signalled.
pub(crate) struct Watchdog {
    state: Arc<Mutex<WatchState>>,
    deadline: Duration,
    _disarm: mpsc::Sender<()>,
}

#[derive(Default)]
struct WatchState {
    reaped: bool,
    fired: bool,
}

impl Watchdog {
    /// `child` must lead its own process group (`process_group(0)`).
    pub(crate) fn arm(child: &Child, deadline: Duration) -> Watchdog {
        let group = Pid::from_raw(child.id() as i32);
        let state = Arc::new(Mutex::new(WatchState::default()));
        let (disarm, disarmed) = mpsc::channel::<()>();
        let watched = state.clone();
        std::thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = disarmed.recv_timeout(deadline) {
                let mut state = watched.lock().unwrap();
                if !state.reaped {
                    state.fired = true;
                    let _ = killpg(group, Signal::SIGKILL);
                }
            }
        });
        Watchdog {
            state,
            deadline,
            _disarm: disarm,
        }
    }

    /// Waits for the child to end, and panics if it had to be killed.
    pub(crate) fn reap(self, child: &mut Child, doing: &str) -> ExitStatus {
        loop {
            {
                let mut state = self.state.lock().unwrap();
                if let Some(status) = child.try_wait().unwrap() {
                    state.reaped = true;
                    assert!(
                        !state.fired,
                        "chromium did not finish {doing} within {:?}: killed",
                        self.deadline
                    );
                    return status;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A DevTools event as a problem, if it is one: a console error or warning, an exception, or
/// a log entry at error or warning level (a failed load, blocked content, an intervention).
pub(crate) fn problem(event: &Value) -> Option<String> {
    let params = &event["params"];
    match event["method"].as_str()? {
        "Runtime.consoleAPICalled" => {
            let kind = params["type"].as_str()?;
            if !["error", "warning", "assert"].contains(&kind) {
                return None;
            }
            let args: Vec<String> = params["args"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| match &a["value"] {
                    Value::String(s) => s.clone(),
                    Value::Null => a["description"].as_str().unwrap_or("?").to_string(),
                    other => other.to_string(),
                })
                .collect();
            Some(format!("console.{kind}: {}", args.join(" ")))
        }
        "Runtime.exceptionThrown" => {
            let details = &params["exceptionDetails"];
            let what = details["exception"]["description"]
                .as_str()
                .or(details["text"].as_str())
                .unwrap_or("?");
            Some(format!("uncaught exception: {what}"))
        }
        "Log.entryAdded" => {
            let entry = &params["entry"];
            let level = entry["level"].as_str()?;
            if !["error", "warning"].contains(&level) {
                return None;
            }
            Some(format!(
                "{} {level}: {} ({})",
                entry["source"].as_str().unwrap_or("?"),
                entry["text"].as_str().unwrap_or("?"),
                entry["url"].as_str().unwrap_or("")
            ))
        }
        _ => None,
    }
}

/// A DevTools protocol connection over Chromium's pipe.
struct Cdp {
    to: ChildStdin,
    from: BufReader<std::process::ChildStdout>,
    next: u64,
    /// Events received so far, in order.
    events: Vec<Value>,
    /// Chromium's stderr, shown when it stops answering.
    log: PathBuf,
}

impl Cdp {
    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> u64 {
        self.next += 1;
        let mut message = json!({"id": self.next, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        if let Err(e) = self.to.write_all(&bytes).and_then(|()| self.to.flush()) {
            panic!("chromium stopped reading ({method}: {e}):\n{}", self.log_text());
        }
        self.next
    }

    /// Sends a command and returns its result, keeping the events that arrive meanwhile.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.send(session, method, params);
        loop {
            let message = self.receive(method);
            if message["id"] == json!(id) {
                assert!(message.get("error").is_none(), "chromium refused {method}: {message}");
                return message["result"].clone();
            }
            self.events.push(message);
        }
    }

    fn receive(&mut self, waiting_for: &str) -> Value {
        let mut bytes = Vec::new();
        match self.from.read_until(0, &mut bytes) {
            Ok(n) if n > 0 && bytes.last() == Some(&0) => {
                bytes.pop();
                serde_json::from_slice(&bytes).unwrap()
            }
            outcome => panic!(
                "chromium stopped answering while waiting for {waiting_for} ({outcome:?}; killed at its deadline?):\n{}",
                self.log_text()
            ),
        }
    }

    fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }
}

/// One Chromium page, driven step by step under the DevTools protocol.
pub(crate) struct Browser {
    child: Child,
    watchdog: Option<Watchdog>,
    cdp: Cdp,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts headless Chromium (killed after `deadline`) with one blank page. It accepts the
    /// test deployment's certificates (made by `resurgo certs`, signed by a CA it does not
    /// know).
    pub(crate) fn start(deadline: Duration) -> Browser {
        let chromium = chromium();
        let profile = tempfile::tempdir().unwrap();
        let log = profile.path().join("chromium.log");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$@" 3<&0 4>&1 </dev/null >&2"#)
            .arg("sh")
            .arg(&chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600"])
            .args(["--ignore-certificate-errors", "--remote-debugging-pipe"])
            .arg(format!("--user-data-dir={}", profile.path().join("profile").display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
        let watchdog = Watchdog::arm(&child, deadline);
        let mut cdp = Cdp {
            to: child.stdin.take().unwrap(),
            from: BufReader::new(child.stdout.take().unwrap()),
            next: 0,
            events: Vec::new(),
            log,
        };
        let target = cdp.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let attached = cdp.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        let session = attached["sessionId"].as_str().unwrap().to_string();
        for domain in ["Runtime", "Log", "Page"] {
            cdp.call(Some(&session), &format!("{domain}.enable"), json!({}));
        }
        Browser {
            child,
            watchdog: Some(watchdog),
            cdp,
            session,
            _profile: profile,
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.cdp.call(Some(&session), method, params)
    }

    /// Opens `url` and waits until it has loaded.
    pub(crate) fn goto(&mut self, url: &str) {
        let seen = self.cdp.events.len();
        let navigated = self.call("Page.navigate", json!({"url": url}));
        assert!(
            navigated.get("errorText").is_none(),
            "chromium could not open {url}: {navigated}"
        );
        while !self.cdp.events[seen..]
            .iter()
            .any(|e| e["method"] == "Page.loadEventFired")
        {
            let message = self.cdp.receive("Page.loadEventFired");
            self.cdp.events.push(message);
        }
    }

    /// The value of `expression` evaluated in the page (a promise is awaited).
    pub(crate) fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = result.get("exceptionDetails") {
            panic!("the page threw evaluating `{expression}`: {e}");
        }
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is truthy (neither null, false, 0 nor ""), at most
    /// until `deadline`; panics naming `what`, with the page's text, if it never is.
    pub(crate) fn wait_until(&mut self, what: &str, expression: &str, deadline: Duration) -> Value {
        let end = Instant::now() + deadline;
        loop {
            // During a navigation the old document may be gone: asked again.
            let value = self
                .call(
                    "Runtime.evaluate",
                    json!({"expression": expression, "returnByValue": true}),
                )
                .get("result")
                .and_then(|r| r.get("value"))
                .cloned()
                .unwrap_or(Value::Null);
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() >= end {
                let text = self.eval("document.body ? document.body.innerText : ''");
                panic!(
                    "{what}: not within {deadline:?} (`{expression}`); the page at {} says:\n{}",
                    self.eval("location.href"),
                    text.as_str().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The document as it stands (what `--dump-dom` prints).
    pub(crate) fn dom(&mut self) -> String {
        let document = self.call("DOM.getDocument", json!({"depth": 0}));
        self.call("DOM.getOuterHTML", json!({"nodeId": document["root"]["nodeId"]}))["outerHTML"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Saves a PNG screenshot of the page to `path`.
    pub(crate) fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64(shot["data"].as_str().expect("a screenshot"));
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        std::fs::write(path, png).unwrap();
    }

    /// Every console error and warning, exception and failed load so far.
    pub(crate) fn problems(&self) -> Vec<String> {
        self.cdp.events.iter().filter_map(problem).collect()
    }

    /// Forgets the events so far (their problems included).
    pub(crate) fn forget(&mut self) {
        self.cdp.events.clear();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.cdp.send(None, "Browser.close", json!({}));
        if let Some(watchdog) = self.watchdog.take() {
            if !std::thread::panicking() {
                watchdog.reap(&mut self.child, "closing");
            } else {
                let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
                let _ = self.child.wait();
            }
        }
    }
}

/// Standard base64 (with padding) decoded; what DevTools sends binary data in.
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for chunk in text.as_bytes().chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').collect();
        let mut n = 0u32;
        for (i, &c) in data.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        for i in 0..data.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn base64_decodes_as_rfc_4648_says() {
    assert_eq!(base64("Zm9vYmFy"), b"foobar");
    assert_eq!(base64("Zm9vYg=="), b"foob");
    assert_eq!(base64("Zm9vYmE="), b"fooba");
}
