//! The site API's server: HTTP/1.1 over TLS, one request per connection, each connection on a
//! thread of its own (as the rest of resurgo: a handful of requests, blocking work behind
//! them). The request head is parsed by httparse; bodies are `Content-Length` only and small.
//!
//! Every request is checked here before the [`Handler`] sees it: the route exists (404), the
//! method fits (405), the caller is authenticated unless the route is public (401 without
//! credentials, 403 with wrong ones). So a refused request reaches no code that could change
//! anything.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::routes::{find, Matched, Op};
use crate::types::Problem;

/// The largest request head read.
const MAX_HEAD: usize = 16 * 1024;
/// The largest request body read.
const MAX_BODY: usize = 1024 * 1024;
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send its request or read an answer.
const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// Answers the routes' requests. Called on the connection's thread, after authentication.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, op: Op, request: &Request) -> Reply;
}

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No credentials (only public routes get here).
    Anyone,
    /// A client certificate signed by the deployment CA.
    Certificate,
    /// The bearer token.
    Token,
}

/// One request, read whole.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub caller: Caller,
}

impl Request {
    /// The query parameter `name`, if given.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body as `T`; a body that is not one is a 400 naming what is wrong.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Reply> {
        if self.body.is_empty() {
            return Err(Reply::problem(400, "the request needs a JSON body"));
        }
        serde_json::from_slice(&self.body).map_err(|e| Reply::problem(400, format!("malformed request body: {e}")))
    }
}

/// The content type of Prometheus's text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes `text/event-stream` until it returns (the client left, or it is done).
pub type EventWriter = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send>;

/// An answer: a JSON document with a status, a text of another type (the metrics), or a
/// stream of server-sent events.
pub enum Reply {
    Json {
        status: u16,
        body: Vec<u8>,
    },
    Text {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    },
    Events(EventWriter),
}

impl Reply {
    pub fn json<T: Serialize>(status: u16, value: &T) -> Reply {
        match serde_json::to_vec_pretty(value) {
            Ok(body) => Reply::Json { status, body },
            Err(e) => Reply::problem(500, format!("cannot write the answer: {e}")),
        }
    }

    /// A failure, with what went wrong for a person.
    pub fn problem(status: u16, error: impl Into<String>) -> Reply {
        let problem = Problem {
            status,
            error: error.into(),
        };
        Reply::Json {
            status,
            body: serde_json::to_vec_pretty(&problem).unwrap_or_default(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Reply::Json { status, .. } | Reply::Text { status, .. } => *status,
            Reply::Events(_) => 200,
        }
    }
}

/// How the server authenticates callers.
#[derive(Clone)]
pub struct ServerConfig {
    pub tls: Arc<rustls::ServerConfig>,
    /// The bearer token accepted besides client certificates (None: certificates only).
    pub token: Option<String>,
}

/// A running server; stops accepting when dropped.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accepting thread so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Listens on `addr` and serves each connection on its own thread.
pub fn serve(addr: SocketAddr, config: ServerConfig, handler: Arc<dyn Handler>) -> io::Result<Server> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new().name("api-accept".into()).spawn(move || {
        for conn in listener.incoming() {
            if stopping.load(Ordering::Relaxed) {
                break;
            }
            let Ok(tcp) = conn else { continue };
            if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                active.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            let (config, handler, active) = (config.clone(), handler.clone(), active.clone());
            let spawned = std::thread::Builder::new().name("api-conn".into()).spawn(move || {
                if let Err(e) = connection(tcp, &config, handler.as_ref()) {
                    tracing::debug!("site API connection: {e}");
                }
                active.fetch_sub(1, Ordering::SeqCst);
            });
            if spawned.is_err() {
                tracing::warn!("site API: cannot start a thread for a connection");
            }
        }
    })?;
    Ok(Server { addr, stop })
}

fn connection(tcp: TcpStream, config: &ServerConfig, handler: &dyn Handler) -> io::Result<()> {
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    let tls = rustls::ServerConnection::new(config.tls.clone()).map_err(io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(tls, tcp);
    let reply = match read_request(&mut stream) {
        Ok(head) => {
            let certified = stream.conn.peer_certificates().is_some_and(|c| !c.is_empty());
            respond(head, certified, config, handler)
        }
        Err(ReadError::Io(e)) => return Err(e),
        Err(ReadError::Bad(status, message)) => Reply::problem(status, message),
    };
    write_reply(&mut stream, reply)?;
    stream.conn.send_close_notify();
    stream.flush()
}

/// A request as read, before authentication.
struct Head {
    method: String,
    target: String,
    authorization: Option<String>,
    body: Vec<u8>,
}

enum ReadError {
    Io(io::Error),
    Bad(u16, String),
}

fn read_request(stream: &mut impl Read) -> Result<Head, ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let status = req
            .parse(&buf)
            .map_err(|e| ReadError::Bad(400, format!("malformed request: {e}")))?;
        let httparse::Status::Complete(head_len) = status else {
            if buf.len() > MAX_HEAD {
                return Err(ReadError::Bad(431, "the request head is too large".into()));
            }
            continue;
        };
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).into_owned())
        };
        if header("transfer-encoding").is_some() {
            return Err(ReadError::Bad(
                400,
                "send the body with Content-Length, not chunked".into(),
            ));
        }
        let length = match header("content-length") {
            None => 0,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map_err(|_| ReadError::Bad(400, format!("malformed Content-Length `{v}`")))?,
        };
        if length > MAX_BODY {
            return Err(ReadError::Bad(413, format!("the body is larger than {MAX_BODY} bytes")));
        }
        let head = Head {
            method: req.method.unwrap_or_default().to_string(),
            target: req.path.unwrap_or_default().to_string(),
            authorization: header("authorization"),
            body: Vec::new(),
        };
        let mut body = buf.split_off(head_len);
        while body.len() < length {
            let n = stream.read(&mut chunk).map_err(ReadError::Io)?;
            if n == 0 {
                return Err(ReadError::Bad(
                    400,
                    "the body is shorter than its Content-Length".into(),
                ));
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(length);
        return Ok(Head { body, ..head });
    }
}

fn respond(head: Head, certified: bool, config: &ServerConfig, handler: &dyn Handler) -> Reply {
    let (path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
    let (route, op) = match find(&head.method, path) {
        Matched::Found(route, op) => (route, op),
        Matched::WrongMethod(allowed) => {
            return Reply::problem(405, format!("{} {path}: use {allowed}", head.method));
        }
        Matched::NotFound => return Reply::problem(404, format!("no route {} {path}", head.method)),
    };
    let caller = match (&head.authorization, &config.token) {
        (Some(given), _) if !given.starts_with("Bearer ") => {
            return Reply::problem(401, "only bearer tokens are accepted (Authorization: Bearer …)");
        }
        (Some(given), Some(token)) if same(&given["Bearer ".len()..], token) => Caller::Token,
        (Some(_), _) => return Reply::problem(403, "wrong credentials: the bearer token is not the deployment's"),
        (None, _) if certified => Caller::Certificate,
        (None, _) => Caller::Anyone,
    };
    if !route.public && caller == Caller::Anyone {
        return Reply::problem(
            401,
            "credentials needed: a client certificate signed by the deployment CA, or the bearer token",
        );
    }
    let Some(query) = parse_query(query) else {
        return Reply::problem(400, "malformed query string");
    };
    let request = Request {
        method: head.method,
        path: path.to_string(),
        query,
        body: head.body,
        caller,
    };
    handler.handle(op, &request)
}

/// Compares in time that does not depend on where the first difference is.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn parse_query(query: &str) -> Option<Vec<(String, String)>> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn write_reply(stream: &mut impl Write, reply: Reply) -> io::Result<()> {
    match reply {
        Reply::Json { status, body } => {
            let auth = if status == 401 {
                "WWW-Authenticate: Bearer\r\n"
            } else {
                ""
            };
            write!(
                stream,
                "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{auth}Connection: close\r\n\r\n",
                reason(status),
                body.len()
            )?;
            stream.write_all(&body)
        }
        Reply::Text {
            status,
            content_type,
            body,
        } => {
            write!(
                stream,
                "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
                reason(status),
                body.len()
            )?;
            stream.write_all(&body)
        }
        Reply::Events(write) => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
            )?;
            stream.flush()?;
            write(stream)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_compared_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("ab", "abc"));
    }

    #[test]
    fn queries_are_decoded_and_malformed_ones_refused() {
        assert_eq!(
            parse_query("max_lag=5s&group=site%2Da"),
            Some(vec![("max_lag".into(), "5s".into()), ("group".into(), "site-a".into())])
        );
        assert_eq!(parse_query("a=%zz"), None);
    }

    #[test]
    fn a_head_without_length_has_no_body_and_a_chunked_one_is_refused() {
        let head = read_request(&mut &b"GET /v1/site HTTP/1.1\r\nHost: x\r\n\r\n"[..])
            .ok()
            .unwrap();
        assert_eq!((head.method.as_str(), head.target.as_str()), ("GET", "/v1/site"));
        assert!(head.body.is_empty());
        let chunked = read_request(&mut &b"POST /v1/runs HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..]);
        assert!(matches!(chunked, Err(ReadError::Bad(400, _))));
        let body = read_request(&mut &b"POST /v1/runs HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"[..])
            .ok()
            .unwrap();
        assert_eq!(body.body, b"{}");
    }
}
