//! Health probes: run one [`HealthCheck`] once against a service's address and say what was
//! seen. `http` is a bare HTTP/1.0 GET over TCP (status line only, no HTTP library), `tcp` a
//! connect, `exec` a command run with a deadline. Every probe is bounded by the check's
//! `timeout` (default 1s).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use resurgo_spec::HealthCheck;

use crate::ProbeResult;

/// A probe's time limit when the check names none.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The time between probes when the check names none (`health.interval`).
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The time between probes of `check`: its `interval`, else [`DEFAULT_PROBE_INTERVAL`].
pub fn interval(check: &HealthCheck) -> Duration {
    check.interval.map_or(DEFAULT_PROBE_INTERVAL, |d| d.0)
}

/// Runs `check` once against `address`. `exec` probes run in `workdir` with `RESURGO_ADDRESS`
/// set. Never fails: every outcome, including "could not even try", is an unhealthy result
/// with a detail.
pub fn probe(address: IpAddr, check: &HealthCheck, workdir: &Path) -> ProbeResult {
    // A zero timeout would make `connect_timeout` fail with an error of its own.
    let timeout = check
        .timeout
        .map_or(DEFAULT_PROBE_TIMEOUT, |d| d.0)
        .max(Duration::from_millis(1));
    if let Some(http) = &check.http {
        probe_http(SocketAddr::new(address, http.port), &http.path, timeout)
    } else if let Some(tcp) = &check.tcp {
        probe_tcp(SocketAddr::new(address, tcp.port), timeout)
    } else if let Some(exec) = &check.exec {
        probe_exec(address, &exec.command, workdir, timeout)
    } else {
        unhealthy("no probe declared (need one of http, tcp, exec)".into())
    }
}

/// Runs the service's own health check through a route that forwards `listen` to the
/// service's `port`: an `http` check on that port is sent to `listen`; anything else (a `tcp`
/// or `exec` check, a check on another port, no check) becomes a connection through the route
/// that the route must hold open — a proxy whose backend does not answer closes it at once.
pub fn through_route(listen: SocketAddr, port: u16, check: Option<&HealthCheck>) -> ProbeResult {
    let timeout = check
        .and_then(|c| c.timeout)
        .map_or(DEFAULT_PROBE_TIMEOUT, |d| d.0)
        .max(Duration::from_millis(1));
    match check.and_then(|c| c.http.as_ref()).filter(|h| h.port == port) {
        Some(http) => probe_http(listen, &http.path, timeout),
        None => probe_held_open(listen, timeout),
    }
}

/// Connects to `addr` and waits a moment: a connection closed or reset at once is not served
/// (a proxy with no backend); one held open, or answered, is.
fn probe_held_open(addr: SocketAddr, timeout: Duration) -> ProbeResult {
    let mut stream = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => return unhealthy(describe_io(&e, timeout)),
    };
    let _ = stream.set_read_timeout(Some(HELD_OPEN));
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => unhealthy(format!(
            "{addr} closed the connection at once: nothing answers behind it"
        )),
        Ok(_) => healthy(format!("{addr} answered")),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            healthy(format!("{addr} held the connection open"))
        }
        Err(e) => unhealthy(format!("{addr}: {e}")),
    }
}

/// How long a connection through a route must stay open to count as served.
const HELD_OPEN: Duration = Duration::from_millis(300);

fn healthy(detail: String) -> ProbeResult {
    ProbeResult { healthy: true, detail }
}

fn unhealthy(detail: String) -> ProbeResult {
    ProbeResult { healthy: false, detail }
}

fn probe_tcp(addr: SocketAddr, timeout: Duration) -> ProbeResult {
    match TcpStream::connect_timeout(&addr, timeout) {
        Ok(_) => healthy(format!("connected to {addr}")),
        Err(e) => unhealthy(describe_io(&e, timeout)),
    }
}

fn probe_http(addr: SocketAddr, path: &str, timeout: Duration) -> ProbeResult {
    let deadline = Instant::now() + timeout;
    match http_status(addr, path, deadline) {
        Ok(Ok(code)) if (200..300).contains(&code) => healthy(format!("HTTP {code}")),
        Ok(Ok(code)) => unhealthy(format!("HTTP {code}")),
        Ok(Err(detail)) => unhealthy(detail),
        Err(e) => unhealthy(describe_io(&e, timeout)),
    }
}

/// The status code of `GET path`, or what was wrong with the answer.
fn http_status(addr: SocketAddr, path: &str, deadline: Instant) -> io::Result<Result<u16, String>> {
    let left = || {
        let d = deadline.saturating_duration_since(Instant::now());
        if d.is_zero() {
            Err(io::Error::from(io::ErrorKind::TimedOut))
        } else {
            Ok(d)
        }
    };
    let mut stream = TcpStream::connect_timeout(&addr, left()?)?;
    stream.set_write_timeout(Some(left()?))?;
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())?;

    // Only the status line matters; it fits in a few dozen bytes.
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        stream.set_read_timeout(Some(left()?))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if head.is_empty() {
        return Ok(Err("connection closed without an answer".into()));
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end();
    Ok(parse_status_line(line).ok_or_else(|| {
        let shown: String = line.chars().take(60).collect();
        format!("not an HTTP answer: `{shown}`")
    }))
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.split_ascii_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

fn probe_exec(address: IpAddr, argv: &[String], workdir: &Path, timeout: Duration) -> ProbeResult {
    let Some((program, args)) = argv.split_first() else {
        return unhealthy("empty exec command".into());
    };
    let deadline = Instant::now() + timeout;
    let spawned = Command::new(program)
        .args(args)
        .env_clear()
        .envs(crate::local::base_env())
        .env("RESURGO_ADDRESS", address.to_string())
        .current_dir(workdir)
        // Its own group, so that a timeout also ends whatever the probe started.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return unhealthy(format!(
                "cannot run `{program}` in {}: {}",
                workdir.display(),
                describe_io(&e, timeout)
            ))
        }
    };
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return match (status.code(), status.signal()) {
                    (Some(0), _) => healthy("exit code 0".into()),
                    (Some(code), _) => unhealthy(format!("exit code {code}")),
                    _ => unhealthy(crate::shim::describe_exit(status)),
                }
            }
            Ok(None) => {}
            Err(e) => return unhealthy(format!("cannot wait for `{program}`: {e}")),
        }
        let now = Instant::now();
        if now >= deadline {
            // Not reaped yet, so the pid (and the group id) still belong to our child.
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
            return unhealthy(format!("timed out after {}", human(timeout)));
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// What an I/O error means to someone reading a health report.
fn describe_io(e: &io::Error, timeout: Duration) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            format!("timed out after {}", human(timeout))
        }
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::NotFound => "not found".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let text = e.to_string();
            // "Network is unreachable (os error 101)" → "network is unreachable (os error 101)"
            let mut chars = text.chars();
            chars
                .next()
                .map(|c| c.to_lowercase().chain(chars).collect())
                .unwrap_or(text)
        }
    }
}

/// `1s`, `1500ms`.
fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, TcpListener};
    use std::thread;

    use resurgo_spec::{Duration as SpecDuration, ExecProbe, HttpProbe, TcpProbe};

    use super::*;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn check() -> HealthCheck {
        HealthCheck {
            http: None,
            tcp: None,
            exec: None,
            interval: None,
            timeout: None,
            start_timeout: None,
        }
    }

    fn http(port: u16, path: &str) -> HealthCheck {
        HealthCheck {
            http: Some(HttpProbe {
                port,
                path: path.into(),
            }),
            ..check()
        }
    }

    fn tcp(port: u16) -> HealthCheck {
        HealthCheck {
            tcp: Some(TcpProbe { port }),
            ..check()
        }
    }

    fn exec(argv: &[&str], timeout_ms: u64) -> HealthCheck {
        HealthCheck {
            exec: Some(ExecProbe {
                command: argv.iter().map(|s| s.to_string()).collect(),
            }),
            timeout: Some(SpecDuration(Duration::from_millis(timeout_ms))),
            ..check()
        }
    }

    /// Serves one connection with `answer` and hands back the request it read.
    fn serve_once(answer: &'static str) -> (u16, thread::JoinHandle<String>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 512];
            while !request.ends_with(b"\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            conn.write_all(answer.as_bytes()).unwrap();
            String::from_utf8(request).unwrap()
        });
        (port, handle)
    }

    /// A port nothing listens on: bound, then released.
    fn closed_port() -> u16 {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn http_2xx_is_healthy_and_the_request_is_plain_http_1_0() {
        let (port, server) = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let result = probe(LOCALHOST, &http(port, "/healthz"), Path::new("/"));
        assert_eq!(
            result,
            ProbeResult {
                healthy: true,
                detail: "HTTP 200".into()
            }
        );
        let request = server.join().unwrap();
        assert_eq!(
            request,
            format!("GET /healthz HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
        );
    }

    #[test]
    fn http_503_is_unhealthy() {
        let (port, server) = serve_once("HTTP/1.0 503 Service Unavailable\r\n\r\n");
        let result = probe(LOCALHOST, &http(port, "/"), Path::new("/"));
        assert_eq!(
            result,
            ProbeResult {
                healthy: false,
                detail: "HTTP 503".into()
            }
        );
        server.join().unwrap();
    }

    #[test]
    fn http_that_is_not_http_is_unhealthy() {
        let (port, server) = serve_once("SSH-2.0-OpenSSH\r\n");
        let result = probe(LOCALHOST, &http(port, "/"), Path::new("/"));
        assert_eq!(
            result,
            ProbeResult {
                healthy: false,
                detail: "not an HTTP answer: `SSH-2.0-OpenSSH`".into()
            }
        );
        server.join().unwrap();
    }

    #[test]
    fn http_that_never_answers_times_out() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut check = http(port, "/");
        check.timeout = Some(SpecDuration(Duration::from_millis(200)));
        let result = probe(LOCALHOST, &check, Path::new("/"));
        assert_eq!(
            result,
            ProbeResult {
                healthy: false,
                detail: "timed out after 200ms".into()
            }
        );
        drop(listener);
    }

    #[test]
    fn refused_connections_are_unhealthy() {
        let port = closed_port();
        let expected = ProbeResult {
            healthy: false,
            detail: "connection refused".into(),
        };
        assert_eq!(probe(LOCALHOST, &tcp(port), Path::new("/")), expected);
        assert_eq!(probe(LOCALHOST, &http(port, "/"), Path::new("/")), expected);
    }

    #[test]
    fn tcp_connect_is_healthy() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let result = probe(LOCALHOST, &tcp(port), Path::new("/"));
        assert_eq!(
            result,
            ProbeResult {
                healthy: true,
                detail: format!("connected to 127.0.0.1:{port}")
            }
        );
    }

    #[test]
    fn exec_reports_the_exit_code_and_sees_its_workdir_and_address() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ready"), "").unwrap();
        let script = r#"test -f ready && test "$RESURGO_ADDRESS" = 127.0.0.1"#;
        let ok = probe(LOCALHOST, &exec(&["sh", "-c", script], 5000), dir.path());
        assert_eq!(
            ok,
            ProbeResult {
                healthy: true,
                detail: "exit code 0".into()
            }
        );
        let failed = probe(LOCALHOST, &exec(&["sh", "-c", "exit 3"], 5000), dir.path());
        assert_eq!(
            failed,
            ProbeResult {
                healthy: false,
                detail: "exit code 3".into()
            }
        );
    }

    #[test]
    fn exec_past_its_timeout_is_killed() {
        let started = Instant::now();
        let result = probe(LOCALHOST, &exec(&["sleep", "30"], 100), Path::new("/"));
        assert_eq!(
            result,
            ProbeResult {
                healthy: false,
                detail: "timed out after 100ms".into()
            }
        );
        assert!(started.elapsed() < Duration::from_secs(10), "the probe was not killed");
    }

    #[test]
    fn exec_of_a_missing_program_says_so() {
        let result = probe(LOCALHOST, &exec(&["/nonexistent/check"], 1000), Path::new("/"));
        assert_eq!(
            result,
            ProbeResult {
                healthy: false,
                detail: "cannot run `/nonexistent/check` in /: not found".into()
            }
        );
        assert_eq!(
            probe(LOCALHOST, &exec(&[], 1000), Path::new("/")).detail,
            "empty exec command"
        );
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status_line("HTTP/1.1 204 No Content"), Some(204));
        assert_eq!(parse_status_line("HTTP/1.0 200"), Some(200));
        assert_eq!(parse_status_line("HTTP/1.1 2000 x"), None);
        assert_eq!(parse_status_line("FTP 200"), None);
        assert_eq!(parse_status_line(""), None);
    }
}
