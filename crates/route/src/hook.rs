//! The exec hook route: traffic switching by a command the user provides (a load balancer's
//! CLI, a cloud API call, a script), for everything resurgo does not speak itself.
//!
//! The command gets the switch in its environment — `RESURGO_ROUTE`, `RESURGO_OLD_ADDRESS`
//! (empty when there is none), `RESURGO_NEW_ADDRESS`, `RESURGO_EPOCH` — so it can do its own
//! compare-and-swap and refuse a stale epoch. Exit 0 is success; any other exit is an error
//! carrying the tail of its stderr. It runs in its own process group, and the whole group is
//! killed when it overruns its timeout, so a hung `curl` in a script cannot outlive it.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::EpochGate;

/// How much of the command's stderr an error keeps (the end of it, where the reason usually is).
const STDERR_TAIL: usize = 2048;

/// A route switched by running a command.
#[derive(Debug)]
pub struct HookRoute {
    /// The route's name, passed as `RESURGO_ROUTE`.
    pub name: String,
    /// The program to run (found on `PATH` when it has no `/`).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// How long it may run before its process group is killed.
    pub timeout: Duration,
    pub(crate) gate: EpochGate,
}

/// The hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("route {route}: cannot run hook {program}: {source}")]
    Spawn {
        route: String,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("route {route}: hook {program} failed ({status}): {stderr_tail}")]
    Failed {
        route: String,
        program: String,
        status: String,
        stderr_tail: String,
    },
    #[error("route {route}: hook {program} did not finish within {timeout:?} and was killed")]
    TimedOut {
        route: String,
        program: String,
        timeout: Duration,
    },
}

impl HookRoute {
    /// A hook route named `name` running `program` with `args`, with a 60 s timeout.
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>, args: Vec<String>) -> HookRoute {
        HookRoute {
            name: name.into(),
            program: program.into(),
            args,
            timeout: Duration::from_secs(60),
            gate: EpochGate::default(),
        }
    }

    /// Runs the hook once for a switch from `old` to `new` under `epoch`.
    pub fn run(&self, old: Option<&str>, new: &str, epoch: u64) -> Result<(), HookError> {
        let program = self.program.display().to_string();
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .env("RESURGO_ROUTE", &self.name)
            .env("RESURGO_OLD_ADDRESS", old.unwrap_or(""))
            .env("RESURGO_NEW_ADDRESS", new)
            .env("RESURGO_EPOCH", epoch.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|source| HookError::Spawn {
                route: self.name.clone(),
                program: program.clone(),
                source,
            })?;

        // Read stderr on its own thread so a chatty hook cannot block on a full pipe.
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let (tail_tx, tail_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tail = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
            let _ = tail_tx.send(tail);
        });

        let status = match wait_with_deadline(&mut child, Instant::now() + self.timeout) {
            Ok(Some(status)) => status,
            Ok(None) | Err(_) => {
                kill_group(child.id());
                let _ = child.wait();
                return Err(HookError::TimedOut {
                    route: self.name.clone(),
                    program,
                    timeout: self.timeout,
                });
            }
        };
        if status.success() {
            return Ok(());
        }
        // Something the hook started in the background may still hold stderr open: take what
        // has arrived by then rather than wait for it.
        let tail = tail_rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default();
        let status = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => status.to_string(),
        };
        let text = String::from_utf8_lossy(&tail);
        let text = text.trim();
        Err(HookError::Failed {
            route: self.name.clone(),
            program,
            status,
            stderr_tail: if text.is_empty() {
                "(no output on stderr)".into()
            } else {
                text.to_owned()
            },
        })
    }
}

/// Waits for the child until `deadline`; `None` when it is still running then.
fn wait_with_deadline(child: &mut std::process::Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    // std has no wait-with-timeout: poll, starting fast so quick hooks return quickly.
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}
