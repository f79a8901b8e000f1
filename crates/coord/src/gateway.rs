//! The client of etcd's JSON gateway (`POST /v3/...`, JSON in and out): reqwest's blocking
//! client over HTTP/1.1, or HTTPS with rustls over ring (a CA of our own or the system's roots,
//! and a client certificate for members run with `--client-cert-auth`); an etcd user's token
//! on every request; the members tried in order while they cannot be reached.
//!
//! Secrets stay in memory: the password is sent only in the body of `/v3/auth/authenticate`,
//! the token only in the `Authorization` header (marked sensitive); neither is in an error or
//! in `Debug`.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Certificate, Identity};
use serde_json::{json, Value};

use crate::store::{Result, StoreError};

/// How to reach the members beyond plain HTTP. The default is none of it.
#[derive(Clone, Debug, Default)]
pub struct EtcdSecurity {
    /// PEM file of the CA certificates that signed the members' certificates; without it an
    /// `https` endpoint is checked against the system's roots.
    pub ca: Option<PathBuf>,
    /// PEM files of a client certificate and its key, for members that ask for one
    /// (`--client-cert-auth`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// An etcd user (etcd's `auth enable`). Only over `https`: the password and the token would
    /// otherwise cross the network in clear.
    pub user: Option<EtcdUser>,
}

/// An etcd user and its password (the value, read from its secret reference by the caller).
#[derive(Clone)]
pub struct EtcdUser {
    pub name: String,
    pub password: String,
}

impl fmt::Debug for EtcdUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdUser")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The gateway of a cluster: its members' base URLs and one HTTP client for all of them.
#[derive(Clone)]
pub(crate) struct Gateway {
    /// `http://host:port` or `https://host:port` of each member, all with the same scheme.
    endpoints: Vec<String>,
    client: Client,
    user: Option<EtcdUser>,
    /// Whether a client certificate is presented (it changes what a refused handshake means).
    client_cert: bool,
    /// The token of `user` at each member (indexes as `endpoints`): etcd's default "simple"
    /// tokens are known only to the member that issued them. An empty token: the member does
    /// not have authentication enabled.
    tokens: Arc<Mutex<Vec<Option<String>>>>,
    /// The member that answered last, asked first next time: a member cut off from its
    /// cluster (no leader) takes a whole timeout to fail, and it would be paid on every call —
    /// a lease renewal that must finish within the fencing deadline among them.
    answered: Arc<AtomicUsize>,
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("endpoints", &self.endpoints)
            .field("user", &self.user.as_ref().map(|u| &u.name))
            .finish_non_exhaustive()
    }
}

/// An answer, and whether the request may also have been applied by a member that then gave
/// none (a timeout or a lost connection after it was sent, a 503 or 504): a conditional write
/// retried on the next member may then fail because of its own first attempt.
pub(crate) struct Answer {
    pub value: Value,
    pub ambiguous: bool,
}

/// Why one member gave no answer.
enum Failure {
    /// Try the next member. `sent`: the request may have reached it (and been applied).
    Next { error: StoreError, sent: bool },
    /// The member answered, and another would answer the same.
    Stop(StoreError),
}

impl Failure {
    fn unsent(error: StoreError) -> Failure {
        Failure::Next { error, sent: false }
    }
}

impl Gateway {
    /// A gateway to the members at `endpoints` (`http://host:port`, `https://host:port`, or
    /// `host:port` for http). Refuses mixed schemes, TLS settings or a user over plain http, and
    /// certificate files it cannot read.
    pub fn new<S: AsRef<str>>(endpoints: &[S], security: &EtcdSecurity) -> Result<Self> {
        let mut parsed = Vec::new();
        for endpoint in endpoints {
            let endpoint = endpoint.as_ref();
            let (scheme, authority) = match endpoint.split_once("://") {
                Some((scheme @ ("http" | "https"), rest)) => (scheme, rest),
                None => ("http", endpoint),
                Some(_) => {
                    return Err(refused(format!(
                        "{endpoint}: not an etcd endpoint (http:// or https://)"
                    )))
                }
            };
            let authority = authority.trim_end_matches('/');
            if authority.is_empty() || authority.contains('/') {
                return Err(refused(format!("{endpoint}: not an etcd endpoint (http://host:port)")));
            }
            parsed.push(format!("{scheme}://{authority}"));
        }
        let Some(first) = parsed.first() else {
            return Err(refused("no etcd endpoint given".to_owned()));
        };
        let https = first.starts_with("https://");
        if let Some(other) = parsed.iter().find(|e| e.starts_with("https://") != https) {
            return Err(refused(format!(
                "etcd endpoints {first} and {other} mix http and https: use one scheme for all members"
            )));
        }
        if !https && (security.ca.is_some() || security.client_cert.is_some()) {
            return Err(refused(format!(
                "{first}: TLS settings for http endpoints: write the endpoints as https://"
            )));
        }
        if !https && security.user.is_some() {
            return Err(refused(format!(
                "{first}: an etcd user over plain http would send its password in clear: use https endpoints"
            )));
        }
        Ok(Gateway {
            tokens: Arc::new(Mutex::new(vec![None; parsed.len()])),
            answered: Arc::new(AtomicUsize::new(0)),
            endpoints: parsed,
            client: client(security)?,
            user: security.user.clone(),
            client_cert: security.client_cert.is_some(),
        })
    }

    /// One gateway call; the first member that answers decides, asked from the one that
    /// answered last. `timeout` bounds the time spent on each member (connecting, logging in,
    /// sending, reading the answer).
    pub fn call(&self, path: &str, request: &Value, timeout: Duration) -> Result<Answer> {
        let body = serde_json::to_vec(request).expect("JSON values serialize");
        let mut failure: Option<StoreError> = None;
        let mut ambiguous = false;
        let n = self.endpoints.len();
        let first = self.answered.load(Ordering::Relaxed) % n;
        for member in (0..n).map(|i| (first + i) % n) {
            match self.call_member(member, path, &body, Instant::now() + timeout) {
                Ok(value) => {
                    self.answered.store(member, Ordering::Relaxed);
                    return Ok(Answer { value, ambiguous });
                }
                Err(Failure::Stop(error)) => return Err(error),
                Err(Failure::Next { error, sent }) => {
                    tracing::debug!(sent, "etcd member failed, trying the next: {error}");
                    ambiguous |= sent;
                    // A member that refuses our certificates says more than one that is down.
                    if !matches!(failure, Some(StoreError::Refused(_))) {
                        failure = Some(error);
                    }
                }
            }
        }
        Err(failure.expect("at least one endpoint"))
    }

    fn call_member(&self, member: usize, path: &str, body: &[u8], deadline: Instant) -> Result<Value, Failure> {
        let endpoint = &self.endpoints[member];
        let mut authenticated_again = false;
        loop {
            let token = match &self.user {
                // Logging in changes nothing the request is about.
                Some(user) => self.token(member, user, deadline).map_err(|f| match f {
                    Failure::Next { error, .. } => Failure::unsent(error),
                    stop => stop,
                })?,
                None => String::new(),
            };
            let (status, value) = self.post(member, path, body, &token, deadline)?;
            let Some(message) = gateway_error(status, &value) else {
                return Ok(value);
            };
            // Simple tokens expire after `--auth-token-ttl` (5 min) unused and are forgotten
            // when auth is turned off and on; the auth store's revision moves when users or
            // roles change. Neither request was applied: log in again, once.
            let stale_token =
                message.contains("invalid auth token") || message.contains("revision of auth store is old");
            if self.user.is_some() && stale_token && !authenticated_again {
                tracing::debug!(%endpoint, "etcd rejected the token: logging in again");
                self.tokens.lock().expect("token lock")[member] = None;
                authenticated_again = true;
                continue;
            }
            let error = format!("{endpoint}{path}: HTTP {status}: {message}{}", answer_hint(&message));
            // 503 (no leader, member stopping) and 504 (deadline) may pass: try the next member.
            // A 504 ("request timed out") may still be applied, and so may some 503s ("leader
            // changed"): count them as sent.
            if matches!(status, 503 | 504) {
                return Err(Failure::Next {
                    error: StoreError::Unreachable {
                        endpoint: endpoint.clone(),
                        reason: error,
                    },
                    sent: true,
                });
            }
            return Err(Failure::Stop(StoreError::Refused(error)));
        }
    }

    /// The user's token at `member`, logging in there if there is none yet.
    fn token(&self, member: usize, user: &EtcdUser, deadline: Instant) -> Result<String, Failure> {
        if let Some(token) = &self.tokens.lock().expect("token lock")[member] {
            return Ok(token.clone());
        }
        let endpoint = &self.endpoints[member];
        let body = serde_json::to_vec(&json!({ "name": user.name, "password": user.password }))
            .expect("JSON values serialize");
        let (status, value) = self.post(member, "/v3/auth/authenticate", &body, "", deadline)?;
        let token = match gateway_error(status, &value) {
            None => value
                .get("token")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    Failure::Stop(StoreError::Corrupt {
                        location: format!("{endpoint}/v3/auth/authenticate"),
                        reason: "no token in the answer".to_owned(),
                    })
                })?
                .to_owned(),
            // The member does not ask for one (auth being enabled step by step): go without.
            Some(message) if message.contains("authentication is not enabled") => String::new(),
            Some(message) if matches!(status, 503 | 504) => {
                return Err(Failure::unsent(StoreError::Unreachable {
                    endpoint: endpoint.clone(),
                    reason: format!("authenticating: HTTP {status}: {message}"),
                }))
            }
            Some(message) => {
                return Err(Failure::Stop(StoreError::Refused(format!(
                    "{endpoint}: etcd user `{}` cannot log in: {message}{}",
                    user.name,
                    answer_hint(&message)
                ))))
            }
        };
        self.tokens.lock().expect("token lock")[member] = Some(token.clone());
        Ok(token)
    }

    /// POSTs `body` to `path` at `member`; the answer's status and JSON.
    fn post(
        &self,
        member: usize,
        path: &str,
        body: &[u8],
        token: &str,
        deadline: Instant,
    ) -> Result<(u16, Value), Failure> {
        let endpoint = &self.endpoints[member];
        let timeout = deadline.saturating_duration_since(Instant::now());
        if timeout.is_zero() {
            return Err(Failure::unsent(StoreError::Unreachable {
                endpoint: endpoint.clone(),
                reason: format!("no time left for {path}"),
            }));
        }
        let mut request = self
            .client
            .post(format!("{endpoint}{path}"))
            .timeout(timeout)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        if !token.is_empty() {
            let mut value = HeaderValue::from_str(token).map_err(|_| {
                Failure::Stop(StoreError::Corrupt {
                    location: format!("{endpoint}/v3/auth/authenticate"),
                    reason: "the token is not a header value".to_owned(),
                })
            })?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let response = request.send().map_err(|e| self.transport_failure(endpoint, &e))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().map_err(|e| self.transport_failure(endpoint, &e))?;
        match serde_json::from_slice(&bytes) {
            Ok(value) => Ok((status, value)),
            // Not the gateway (or not this version of it: etcd before 3.4 served `/v3beta`), or
            // http to an https member.
            Err(_) if status != 200 => {
                let text = String::from_utf8_lossy(&bytes);
                Err(Failure::Stop(StoreError::Refused(format!(
                    "{endpoint}{path}: HTTP {status}: {}{}",
                    text.trim(),
                    answer_hint(&text)
                ))))
            }
            Err(e) => Err(Failure::Stop(StoreError::Corrupt {
                location: format!("{endpoint}{path}"),
                reason: format!("not JSON: {e}"),
            })),
        }
    }
}

impl Gateway {
    /// A request that got no answer. A TLS failure is a refusal (certificates do not fix
    /// themselves), anything else a member that cannot be reached now. Only a failure to
    /// connect proves that the request was not sent; TLS failures happen before the member
    /// reads it.
    fn transport_failure(&self, endpoint: &str, error: &reqwest::Error) -> Failure {
        if let Some(tls) = tls_error(error) {
            return Failure::unsent(refused(format!(
                "{endpoint}: TLS: {tls}{}",
                tls_hint(tls, self.client_cert)
            )));
        }
        Failure::Next {
            error: StoreError::Unreachable {
                endpoint: endpoint.to_owned(),
                reason: causes(error),
            },
            sent: !error.is_connect(),
        }
    }
}

fn refused(message: String) -> StoreError {
    StoreError::Refused(message)
}

/// The HTTP client for every member: no proxy from the environment, no redirects, only the
/// roots and the identity given.
fn client(security: &EtcdSecurity) -> Result<Client> {
    let read =
        |path: &PathBuf| std::fs::read(path).map_err(|e| refused(format!("cannot read {}: {e}", path.display())));
    // reqwest is built without a crypto provider of its own (as for OpenDAL in resurgo-vault);
    // one installed already by another part of the process is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none());
    if let Some(path) = &security.ca {
        let certs = Certificate::from_pem_bundle(&read(path)?).unwrap_or_default();
        if certs.is_empty() {
            return Err(refused(format!("{}: no PEM certificate in it", path.display())));
        }
        builder = builder.tls_certs_only(certs);
    }
    if let Some((cert, key)) = &security.client_cert {
        let mut pem = read(cert)?;
        pem.push(b'\n');
        pem.extend(read(key)?);
        let identity = Identity::from_pem(&pem).map_err(|e| {
            refused(format!(
                "{} and {}: not a PEM certificate and its private key: {}",
                cert.display(),
                key.display(),
                causes(&e)
            ))
        })?;
        builder = builder.identity(identity);
    }
    builder
        .build()
        .map_err(|e| refused(format!("cannot set up the etcd client: {}", causes(&e))))
}

/// The error message of a gateway answer (None: it is a success).
fn gateway_error(status: u16, value: &Value) -> Option<String> {
    if status == 200 && value.get("error").is_none() {
        return None;
    }
    let message = value
        .get("message")
        .or_else(|| value.get("error"))
        .and_then(Value::as_str)
        .unwrap_or("no message");
    Some(message.to_owned())
}

/// The rustls error under `error`, if TLS is what failed. (`io::Error::source` skips the error
/// it wraps, so that one is looked at through `get_ref`.)
fn tls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| tls_error(inner))
        {
            return Some(tls);
        }
        next = e.source();
    }
    None
}

fn tls_hint(error: &rustls::Error, client_cert: bool) -> &'static str {
    use rustls::AlertDescription as Alert;
    match error {
        rustls::Error::InvalidCertificate(_) => " (the member's certificate is not signed by the CA given)",
        // Go answers a missing certificate with bad_certificate before TLS 1.3's
        // certificate_required.
        rustls::Error::AlertReceived(
            Alert::CertificateRequired | Alert::BadCertificate | Alert::UnknownCA | Alert::CertificateUnknown,
        ) => {
            if client_cert {
                " (the member refused the client certificate)"
            } else {
                " (the member asks for a client certificate and none was given)"
            }
        }
        _ => "",
    }
}

/// What to do about an answer etcd gives for a reason that is not obvious from it.
fn answer_hint(message: &str) -> &'static str {
    if message.contains("CommonName of client sending a request against gateway") {
        // etcd's embed/serve.go: with --client-cert-auth and auth enabled, the gateway cannot
        // pass a certificate's CommonName on as the user, so it refuses any that has one.
        " (with authentication enabled, etcd's JSON gateway takes the user from the token only: \
         give the client certificate no CommonName)"
    } else {
        ""
    }
}

/// What went wrong under a reqwest error, without its first line (which repeats the URL).
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = error.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    if parts.is_empty() {
        error.to_string()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn security(ca: bool, user: bool) -> EtcdSecurity {
        EtcdSecurity {
            ca: ca.then(|| PathBuf::from("/nonexistent/ca.pem")),
            client_cert: None,
            user: user.then(|| EtcdUser {
                name: "root".into(),
                password: "hunter2".into(),
            }),
        }
    }

    fn refusal(endpoints: &[&str], security: &EtcdSecurity) -> String {
        match Gateway::new(endpoints, security) {
            Err(StoreError::Refused(message)) => message,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn endpoints_share_one_scheme_and_tls_needs_https() {
        let none = EtcdSecurity::default();
        assert!(refusal(&["http://a:2379", "https://b:2379"], &none).contains("mix http and https"));
        assert!(refusal(&["ftp://a:2379"], &none).contains("not an etcd endpoint"));
        assert!(refusal(&["http://a:2379/v3"], &none).contains("not an etcd endpoint"));
        assert!(refusal(&[], &none).contains("no etcd endpoint"));
        assert!(refusal(&["http://a:2379"], &security(true, false)).contains("TLS settings for http"));
        let clear = refusal(&["a:2379"], &security(false, true));
        assert!(clear.contains("in clear") && !clear.contains("hunter2"), "{clear}");
        assert!(refusal(&["https://a:2379"], &security(true, false)).contains("cannot read /nonexistent/ca.pem"));
        let gateway = Gateway::new(&["a:2379/", "http://b:2379"], &none).unwrap();
        assert_eq!(gateway.endpoints, ["http://a:2379", "http://b:2379"]);
    }

    #[test]
    fn the_password_is_not_in_debug() {
        let text = format!("{:?}", security(false, true));
        assert!(text.contains("root") && !text.contains("hunter2"), "{text}");
        let gateway = Gateway::new(&["https://a:2379"], &security(false, true)).unwrap();
        assert!(!format!("{gateway:?}").contains("hunter2"));
    }
}
