//! A throw-away PostgreSQL server on a restored data directory, for `resurgo verify`: started on
//! a free port at the site's address, waited for until recovery has ended, queried, stopped and
//! removed. PostgreSQL refuses to run as root; when resurgo is root the server runs as the
//! owner of the restored directory (through `setpriv`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use resurgo_vault::pg::PgTarget;
use resurgo_vault::VaultError;

/// How long a restored server may take to replay its WAL and open.
const READY: Duration = Duration::from_secs(180);

pub struct ScratchServer {
    child: Child,
    pub target: PgTarget,
}

impl ScratchServer {
    /// Starts PostgreSQL on `pgdata` listening on `address`, reachable as `base` names
    /// (user, database, password) on a fresh port; returns once it accepts writes.
    pub fn start(pgdata: &Path, address: std::net::IpAddr, base: &PgTarget) -> Result<ScratchServer, VaultError> {
        let port = free_port(address)?;
        let postgres = resurgo_vault::pg::program("postgres")?;
        let sockets = pgdata.to_path_buf();
        let args: Vec<String> = vec![
            "-D".into(),
            pgdata.display().to_string(),
            "-p".into(),
            port.to_string(),
            "-c".into(),
            format!("listen_addresses={address}"),
            "-c".into(),
            format!("unix_socket_directories={}", sockets.display()),
            "-c".into(),
            "archive_mode=off".into(),
        ];
        let meta = std::fs::metadata(pgdata).map_err(|e| VaultError::Io {
            what: "cannot stat",
            path: pgdata.to_path_buf(),
            source: e,
        })?;
        let mut cmd = if nix::unistd::geteuid().is_root() {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={}", meta.uid()))
                .arg(format!("--regid={}", meta.gid()))
                .arg("--clear-groups")
                .arg("--")
                .arg(&postgres);
            c
        } else {
            Command::new(&postgres)
        };
        let log = pgdata.with_extension("log");
        let log_file = std::fs::File::create(&log).map_err(|e| VaultError::Io {
            what: "cannot create",
            path: log.clone(),
            source: e,
        })?;
        let child = cmd
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| VaultError::Command {
                program: postgres.display().to_string(),
                status: "not started".into(),
                stderr: e.to_string(),
            })?;
        let target = PgTarget {
            host: address.to_string(),
            port,
            ..base.clone()
        };
        let mut server = ScratchServer { child, target };
        let began = Instant::now();
        loop {
            if let Some(status) = server.child.try_wait().ok().flatten() {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                return Err(VaultError::Command {
                    program: "postgres (scratch server)".into(),
                    status: status.to_string(),
                    stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
                });
            }
            if matches!(resurgo_vault::pg::is_in_recovery(&server.target), Ok(false)) {
                return Ok(server);
            }
            if began.elapsed() > READY {
                return Err(VaultError::Command {
                    program: "postgres (scratch server)".into(),
                    status: format!("not ready after {}s", READY.as_secs()),
                    stderr: log.display().to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for ScratchServer {
    /// Fast shutdown (SIGINT), then SIGKILL if it lingers.
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port(address: std::net::IpAddr) -> Result<u16, VaultError> {
    let listener = std::net::TcpListener::bind((address, 0)).map_err(|e| VaultError::Io {
        what: "cannot find a free port on",
        path: PathBuf::from(address.to_string()),
        source: e,
    })?;
    listener.local_addr().map(|a| a.port()).map_err(|e| VaultError::Io {
        what: "cannot find a free port on",
        path: PathBuf::from(address.to_string()),
        source: e,
    })
}
