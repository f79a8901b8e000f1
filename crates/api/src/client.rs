//! The site API's client, as the CLI uses it: reqwest's blocking client
//! with the deployment CA as the only root, the host's certificate when it has one (mutual
//! TLS), else the bearer token.

use std::time::Duration;

use reqwest::blocking::Client as Http;
use reqwest::{Certificate, Identity};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::tls::TlsFiles;
use crate::types::Problem;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The agent did not answer: it, its host or the network is down. The site is unknown.
    #[error("the agent at {addr} cannot be reached: {reason}")]
    Unreachable { addr: String, reason: String },
    /// The agent answered no.
    #[error("the agent at {addr} refused: {message} (HTTP {status})")]
    Refused { addr: String, status: u16, message: String },
    /// The client cannot be set up (its TLS files).
    #[error("{0}")]
    Setup(String),
}

/// How the client proves who it is.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The folder with `ca.pem`, and `cert.pem` + `key.pem` for mutual TLS.
    pub tls: TlsFiles,
    /// The bearer token, sent when given.
    pub token: Option<String>,
}

#[derive(Clone)]
pub struct Client {
    http: Http,
    /// The same without an overall timeout, for streams.
    streams: Http,
    token: Option<String>,
}

impl Client {
    /// A client whose requests give up after `timeout`.
    pub fn new(credentials: &Credentials, timeout: Duration) -> Result<Client, ClientError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let read = |path: std::path::PathBuf| {
            std::fs::read(&path).map_err(|e| {
                ClientError::Setup(format!(
                    "cannot read {}: {e} (make the files with `resurgo certs`)",
                    path.display()
                ))
            })
        };
        let tls = &credentials.tls;
        let roots = Certificate::from_pem_bundle(&read(tls.ca())?).unwrap_or_default();
        if roots.is_empty() {
            return Err(ClientError::Setup(format!(
                "{}: no PEM certificate in it",
                tls.ca().display()
            )));
        }
        let identity = if tls.has_identity() {
            let mut pem = read(tls.cert())?;
            pem.push(b'\n');
            pem.extend(read(tls.key())?);
            Some(Identity::from_pem(&pem).map_err(|e| {
                ClientError::Setup(format!("{}: not a certificate and its key: {e}", tls.dir.display()))
            })?)
        } else {
            None
        };
        let build = |timeout: Option<Duration>| {
            let mut builder = Http::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .tls_certs_only(roots.clone())
                .connect_timeout(timeout.unwrap_or(Duration::from_secs(5)).min(Duration::from_secs(5)))
                .timeout(timeout);
            if let Some(identity) = &identity {
                builder = builder.identity(identity.clone());
            }
            builder
                .build()
                .map_err(|e| ClientError::Setup(format!("cannot set up the API client: {e}")))
        };
        Ok(Client {
            http: build(Some(timeout))?,
            streams: build(None)?,
            token: credentials.token.clone(),
        })
    }

    /// `GET https://addr/path` as `T`.
    pub fn get<T: DeserializeOwned>(&self, addr: &str, path: &str) -> Result<T, ClientError> {
        self.send(addr, self.http.get(url(addr, path)))
    }

    /// `GET https://addr/path` as text (the metrics): the body, whatever its type.
    pub fn get_text(&self, addr: &str, path: &str) -> Result<String, ClientError> {
        let (_, body) = self.body(addr, self.http.get(url(addr, path)))?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// `POST https://addr/path` with `body` as JSON, answered as `T`.
    pub fn post<B: Serialize, T: DeserializeOwned>(&self, addr: &str, path: &str, body: &B) -> Result<T, ClientError> {
        let body =
            serde_json::to_vec(body).map_err(|e| ClientError::Setup(format!("cannot write the request: {e}")))?;
        let request = self
            .http
            .post(url(addr, path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.send(addr, request)
    }

    /// `DELETE https://addr/path`, answered as `T`.
    pub fn delete<T: DeserializeOwned>(&self, addr: &str, path: &str) -> Result<T, ClientError> {
        self.send(addr, self.http.delete(url(addr, path)))
    }

    /// `GET https://addr/path` as a stream (the event stream): its body, read as it comes.
    pub fn open(&self, addr: &str, path: &str) -> Result<impl std::io::Read, ClientError> {
        // No overall timeout: a stream lasts as long as it is read.
        let mut request = self.streams.get(url(addr, path));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let answer = request.send().map_err(|e| ClientError::Unreachable {
            addr: addr.to_string(),
            reason: causes(&e),
        })?;
        let status = answer.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(ClientError::Refused {
                addr: addr.to_string(),
                status,
                message: answer.text().unwrap_or_default(),
            });
        }
        Ok(answer)
    }

    fn send<T: DeserializeOwned>(
        &self,
        addr: &str,
        request: reqwest::blocking::RequestBuilder,
    ) -> Result<T, ClientError> {
        let (status, bytes) = self.body(addr, request)?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Refused {
            addr: addr.to_string(),
            status,
            message: format!("an answer this resurgo cannot read (another version?): {e}"),
        })
    }

    /// Sends `request` with the credentials; a 2xx answer's status and body, else the refusal
    /// with the agent's message.
    fn body(&self, addr: &str, mut request: reqwest::blocking::RequestBuilder) -> Result<(u16, Vec<u8>), ClientError> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let unreachable = |e: &dyn std::error::Error| ClientError::Unreachable {
            addr: addr.to_string(),
            reason: causes(e),
        };
        let answer = request.send().map_err(|e| unreachable(&e))?;
        let status = answer.status().as_u16();
        let bytes = answer.bytes().map_err(|e| unreachable(&e))?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<Problem>(&bytes)
                .map(|p| p.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).chars().take(300).collect());
            return Err(ClientError::Refused {
                addr: addr.to_string(),
                status,
                message,
            });
        }
        Ok((status, bytes.to_vec()))
    }
}

fn url(addr: &str, path: &str) -> String {
    format!("https://{addr}{path}")
}

/// An error and its causes, `a: b: c` (reqwest's own message alone says only "error sending
/// request").
fn causes(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}
