//! The site API's server: HTTP/1.1 over TLS, one request per connection, each connection on a
//! thread of its own (as the rest of resurgo: a handful of requests, blocking work behind
//! them). The request head is parsed by httparse; bodies are `Content-Length` only and small.
//!
//! Every request is checked here before the [`Handler`] sees it: the route exists (404), the
//! method fits (405), the caller is authenticated unless the route is public (401 without
//! credentials, 403 with wrong ones). So a refused request reaches no code that could change
//! anything.
//!
//! The dashboard's browser signs in here too (`POST /ui/login` with the bearer token): it gets
//! a session cookie derived from the token, which opens only the `/ui` routes
//! ([`crate::routes::accepts_session`]); an action it posts (`/ui/act`) must carry the
//! anti-forgery token of its caller ([`Request::csrf`]), checked here as well.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use sha2::{Digest, Sha256};

use crate::routes::{accepts_session, find, Matched, Op};
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
    /// The dashboard's session cookie (only on `/ui` routes).
    Session,
}

/// The dashboard's session cookie.
pub const SESSION_COOKIE: &str = "resurgo_session";

/// One request, read whole.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub caller: Caller,
    /// The anti-forgery token of this caller: a form that acts must carry it back (field
    /// `csrf`); it is derived from the caller's credentials and the server's secret.
    pub csrf: String,
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

    /// The body as an HTML form's fields (`application/x-www-form-urlencoded`).
    pub fn form(&self) -> Option<Vec<(String, String)>> {
        parse_query(std::str::from_utf8(&self.body).ok()?)
    }

    /// Form field `name`, if the body is a form that has it.
    pub fn field(&self, name: &str) -> Option<String> {
        self.form()?.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// The content type of Prometheus's text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes `text/event-stream` until it returns (the client left, or it is done).
pub type EventWriter = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send>;

/// An answer: a JSON document with a status, a text of another type (the metrics), a page of
/// the dashboard, or a stream of server-sent events.
pub enum Reply {
    /// A page (or static file) of the dashboard, with its headers (`Location`, `Set-Cookie`);
    /// sent with a content security policy that allows only this origin's scripts and styles.
    Page {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
        headers: Vec<(&'static str, String)>,
    },
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

    /// An HTML page.
    pub fn html(status: u16, body: String) -> Reply {
        Reply::Page {
            status,
            content_type: "text/html; charset=utf-8",
            body: body.into_bytes(),
            headers: Vec::new(),
        }
    }

    /// "See other": go to `location` (after a form is posted).
    pub fn see_other(location: &str) -> Reply {
        Reply::Page {
            status: 303,
            content_type: "text/plain; charset=utf-8",
            body: Vec::new(),
            headers: vec![("Location", location.to_string())],
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
            Reply::Json { status, .. } | Reply::Text { status, .. } | Reply::Page { status, .. } => *status,
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
    let mut secret = [0u8; 32];
    config
        .tls
        .crypto_provider()
        .secure_random
        .fill(&mut secret)
        .map_err(|_| io::Error::other("no randomness for the anti-forgery secret"))?;
    let secret = Arc::new(secret);
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
            let (config, handler, active, secret) = (config.clone(), handler.clone(), active.clone(), secret.clone());
            let spawned = std::thread::Builder::new().name("api-conn".into()).spawn(move || {
                if let Err(e) = connection(tcp, &config, &secret, handler.as_ref()) {
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

fn connection(tcp: TcpStream, config: &ServerConfig, secret: &[u8; 32], handler: &dyn Handler) -> io::Result<()> {
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    let tls = rustls::ServerConnection::new(config.tls.clone()).map_err(io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(tls, tcp);
    let reply = match read_request(&mut stream) {
        Ok(head) => {
            let certificate = stream
                .conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().to_vec());
            respond(head, certificate.as_deref(), config.token.as_deref(), secret, handler)
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
    cookie: Option<String>,
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
            cookie: header("cookie"),
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

fn respond(
    head: Head,
    certificate: Option<&[u8]>,
    token: Option<&str>,
    secret: &[u8; 32],
    handler: &dyn Handler,
) -> Reply {
    let (path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
    let (route, op) = match find(&head.method, path) {
        Matched::Found(route, op) => (route, op),
        Matched::WrongMethod(allowed) => {
            return Reply::problem(405, format!("{} {path}: use {allowed}", head.method));
        }
        Matched::NotFound => return Reply::problem(404, format!("no route {} {path}", head.method)),
    };
    let session = head
        .cookie
        .as_deref()
        .and_then(|c| cookie(c, SESSION_COOKIE))
        .filter(|_| accepts_session(route));
    let caller = match (&head.authorization, token) {
        (Some(given), _) if !given.starts_with("Bearer ") => {
            return Reply::problem(401, "only bearer tokens are accepted (Authorization: Bearer …)");
        }
        (Some(given), Some(token)) if same(&given["Bearer ".len()..], token) => Caller::Token,
        (Some(_), _) => return Reply::problem(403, "wrong credentials: the bearer token is not the deployment's"),
        (None, _) if certificate.is_some() => Caller::Certificate,
        (None, Some(token)) if session.is_some_and(|s| same(s, &session_of(token))) => Caller::Session,
        (None, _) => Caller::Anyone,
    };
    if !route.public && caller == Caller::Anyone {
        if accepts_session(route) {
            return crate::ui::login_page(401, "Sign in to see this site's dashboard.");
        }
        return Reply::problem(
            401,
            "credentials needed: a client certificate signed by the deployment CA, or the bearer token",
        );
    }
    let Some(query) = parse_query(query) else {
        return Reply::problem(400, "malformed query string");
    };
    let identity = match caller {
        Caller::Session => session.unwrap_or_default().as_bytes().to_vec(),
        Caller::Certificate => certificate.unwrap_or_default().to_vec(),
        Caller::Token => b"the bearer token".to_vec(),
        Caller::Anyone => Vec::new(),
    };
    let request = Request {
        method: head.method,
        path: path.to_string(),
        query,
        body: head.body,
        csrf: hex(&Sha256::new().chain_update(secret).chain_update(&identity).finalize()),
        caller,
    };
    match op {
        Op::Asset { name } => crate::ui::asset(&name),
        Op::LoginPage => crate::ui::login_page(200, ""),
        Op::Login => login(&request, token),
        Op::Logout => {
            let mut reply = Reply::see_other("/ui/login");
            if let Reply::Page { headers, .. } = &mut reply {
                headers.push((
                    "Set-Cookie",
                    format!("{SESSION_COOKIE}=; Path=/ui; Max-Age=0; HttpOnly; Secure; SameSite=Strict"),
                ));
            }
            reply
        }
        Op::Act if !request.field("csrf").is_some_and(|c| same(&c, &request.csrf)) => crate::ui::message_page(
            403,
            "Not done",
            "The form did not carry this session's anti-forgery token: open the confirmation again from the dashboard.",
        ),
        op => handler.handle(op, &request),
    }
}

/// Signing in to the dashboard with the bearer token: a session cookie for the `/ui` routes.
fn login(request: &Request, token: Option<&str>) -> Reply {
    let Some(token) = token else {
        return crate::ui::login_page(
            403,
            "This deployment accepts only client certificates: open the dashboard with a browser that presents one signed by the deployment CA.",
        );
    };
    match request.field("token") {
        Some(given) if same(given.trim(), token) => {
            let mut reply = Reply::see_other("/ui");
            if let Reply::Page { headers, .. } = &mut reply {
                headers.push((
                    "Set-Cookie",
                    format!(
                        "{SESSION_COOKIE}={}; Path=/ui; HttpOnly; Secure; SameSite=Strict",
                        session_of(token)
                    ),
                ));
            }
            reply
        }
        _ => crate::ui::login_page(403, "Wrong token: it is not the deployment's bearer token."),
    }
}

/// The session cookie's value for `token`: derived from it, so that the cookie does not carry
/// the token itself, and void once the token changes.
fn session_of(token: &str) -> String {
    hex(&Sha256::new()
        .chain_update(b"resurgo dashboard session\0")
        .chain_update(token.as_bytes())
        .finalize())
}

/// Cookie `name`'s value in a `Cookie` header.
fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        303 => "See Other",
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
        Reply::Page {
            status,
            content_type,
            body,
            headers,
        } => {
            write!(
                stream,
                "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{}Connection: close\r\n",
                reason(status),
                body.len(),
                crate::ui::SECURITY_HEADERS
            )?;
            if !headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("content-security-policy"))
            {
                write!(stream, "Content-Security-Policy: {}\r\n", crate::ui::CSP)?;
            }
            for (name, value) in headers {
                write!(stream, "{name}: {value}\r\n")?;
            }
            stream.write_all(b"\r\n")?;
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

    /// Answers every request with what it asked for and who asked.
    struct Echo;

    impl Handler for Echo {
        fn handle(&self, op: Op, request: &Request) -> Reply {
            Reply::json(200, &format!("{op:?} by {:?}", request.caller))
        }
    }

    const SECRET: [u8; 32] = [7; 32];

    fn ask(method: &str, target: &str, cookie: Option<&str>, body: &str) -> (u16, String, Vec<(&'static str, String)>) {
        let head = Head {
            method: method.into(),
            target: target.into(),
            authorization: None,
            cookie: cookie.map(String::from),
            body: body.as_bytes().to_vec(),
        };
        match respond(head, None, Some("the-token"), &SECRET, &Echo) {
            Reply::Json { status, body } | Reply::Text { status, body, .. } => {
                (status, String::from_utf8(body).unwrap(), Vec::new())
            }
            Reply::Page {
                status, body, headers, ..
            } => (status, String::from_utf8(body).unwrap(), headers),
            Reply::Events(_) => (200, "events".into(), Vec::new()),
        }
    }

    #[test]
    fn signing_in_sets_a_cookie_derived_from_the_token_and_a_wrong_token_gets_none() {
        let (status, _, headers) = ask("POST", "/ui/login", None, "token=the-token");
        assert_eq!(status, 303);
        let cookie = &headers.iter().find(|(n, _)| *n == "Set-Cookie").unwrap().1;
        assert!(
            cookie.starts_with(&format!("{SESSION_COOKIE}={};", session_of("the-token"))),
            "{cookie}"
        );
        assert!(!cookie.contains("the-token"), "the cookie does not carry the token");
        for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/ui"] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        let (status, body, headers) = ask("POST", "/ui/login", None, "token=not-it");
        assert_eq!(status, 403);
        assert!(body.contains("Wrong token"));
        assert!(headers.iter().all(|(n, _)| *n != "Set-Cookie"));
    }

    #[test]
    fn the_session_opens_only_the_dashboards_routes() {
        let session = format!("other=1; {SESSION_COOKIE}={}", session_of("the-token"));
        let (status, body, _) = ask("GET", "/ui", Some(&session), "");
        assert_eq!((status, body.as_str()), (200, "\"Dashboard by Session\""));
        assert_eq!(ask("GET", "/ui/events", Some(&session), "").0, 200);
        // Not the JSON API: a browser may be led by another site to send requests there.
        assert_eq!(ask("GET", "/v1/site", Some(&session), "").0, 401);
        assert_eq!(ask("POST", "/v1/runs", Some(&session), "{}").0, 401);
        assert_eq!(ask("GET", "/metrics", Some(&session), "").0, 401);
        // A session made from another token, or none: the sign-in page, refused.
        let stale = format!("{SESSION_COOKIE}={}", session_of("an-old-token"));
        let (status, body, _) = ask("GET", "/ui", Some(&stale), "");
        assert_eq!(status, 401);
        assert!(body.contains("action=\"/ui/login\""), "{body}");
        assert_eq!(ask("GET", "/ui/panel", None, "").0, 401);
        // The static files and the sign-in page are anyone's.
        assert_eq!(ask("GET", "/ui/assets/app.js", None, "").0, 200);
        assert_eq!(ask("GET", "/ui/login", None, "").0, 200);
    }

    #[test]
    fn an_action_needs_its_callers_anti_forgery_token() {
        let session = format!("{SESSION_COOKIE}={}", session_of("the-token"));
        let csrf = hex(&Sha256::new()
            .chain_update(SECRET)
            .chain_update(session_of("the-token").as_bytes())
            .finalize());
        let (status, body, _) = ask("POST", "/ui/act", Some(&session), "action=maintenance-on");
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("anti-forgery"), "{body}");
        assert_eq!(
            ask("POST", "/ui/act", Some(&session), "action=maintenance-on&csrf=0000").0,
            403
        );
        let (status, body, _) = ask(
            "POST",
            "/ui/act",
            Some(&session),
            &format!("action=maintenance-on&csrf={csrf}"),
        );
        assert_eq!((status, body.as_str()), (200, "\"Act by Session\""));
    }

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
