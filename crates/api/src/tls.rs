//! TLS for the site API: a deployment CA of our own, a certificate per host (each agent's, the
//! witness's, the operator's), and the rustls configurations made from them.
//!
//! A host's folder (`api.tls` in the spec, `--tls` for the CLI) holds `ca.pem`, `cert.pem` and
//! `key.pem`, as [`issue`] writes them. Agents present their certificate and check clients'
//! against the CA; clients check the agent's against the CA and present theirs (mutual TLS) —
//! or, without one, a bearer token.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason} (make the files with `resurgo certs`)")]
    Read { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot make a certificate: {0}")]
    Make(String),
}

/// The files of one host's folder.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub dir: PathBuf,
}

impl TlsFiles {
    pub fn new(dir: impl Into<PathBuf>) -> TlsFiles {
        TlsFiles { dir: dir.into() }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    fn roots(&self) -> Result<rustls::RootCertStore, TlsError> {
        let path = self.ca();
        let certs = read_certs(&path)?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs {
            roots.add(cert).map_err(|e| TlsError::Invalid {
                path: path.clone(),
                reason: format!("not a CA certificate: {e}"),
            })?;
        }
        Ok(roots)
    }

    fn identity(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let certs = read_certs(&self.cert())?;
        let key_path = self.key();
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| read_error(&key_path, e))?;
        Ok((certs, key))
    }

    /// Whether the folder holds a certificate of the host's own (for mutual TLS).
    pub fn has_identity(&self) -> bool {
        self.cert().exists() && self.key().exists()
    }

    /// An agent's server configuration: its certificate; a client certificate is checked
    /// against the CA when one is presented (and then proves who the client is), and may be
    /// left out (health checks, bearer tokens).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Invalid {
                path: self.ca(),
                reason: e.to_string(),
            })?;
        let (certs, key) = self.identity()?;
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Make(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Invalid {
                path: self.cert(),
                reason: format!("the certificate and key do not go together: {e}"),
            })?;
        Ok(Arc::new(config))
    }
}

fn read_error(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_error(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Invalid {
            path: path.to_path_buf(),
            reason: "no PEM certificate in it".into(),
        });
    }
    Ok(certs)
}

/// Who a certificate is for: its name (the CommonName) and the addresses and names it is valid at.
#[derive(Debug, Clone)]
pub struct Subject {
    /// `site-a`, `witness`, `operator`…: the subfolder and the CommonName.
    pub name: String,
    /// IP addresses and DNS names (servers; empty for a client).
    pub alt_names: Vec<String>,
}

/// What [`issue`] did for each subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issued {
    Made,
    Kept,
}

/// Writes the deployment CA into `out` (`ca.pem`, and `ca-key.pem`, which signs and should be
/// kept offline) — or reuses the one there — and a folder per subject (`out/<name>/` with
/// `ca.pem`, `cert.pem`, `key.pem`: what that host's `api.tls` folder holds). A subject whose
/// folder holds a certificate already is kept unless `renew`. Keys are 0600, folders 0700.
pub fn issue(out: &Path, subjects: &[Subject], renew: bool) -> Result<Vec<(String, Issued)>, TlsError> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};
    make_private_dir(out)?;
    let ca_path = out.join("ca.pem");
    let ca_key_path = out.join("ca-key.pem");
    let make = |e: rcgen::Error| TlsError::Make(e.to_string());
    let (ca_pem, issuer) = if ca_path.exists() {
        let pem = std::fs::read_to_string(&ca_path).map_err(|e| read_error(&ca_path, e))?;
        let key_pem = std::fs::read_to_string(&ca_key_path).map_err(|e| read_error(&ca_key_path, e))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::Invalid {
            path: ca_key_path.clone(),
            reason: e.to_string(),
        })?;
        // The issuer of a new certificate is the CA's name and key: the same parameters as
        // when it was made, and its key.
        (pem, Issuer::new(ca_params()?, key))
    } else {
        let key = KeyPair::generate().map_err(make)?;
        let params = ca_params()?;
        let cert = params.self_signed(&key).map_err(make)?;
        write_private(&ca_key_path, &key.serialize_pem())?;
        write_file(&ca_path, &cert.pem())?;
        (cert.pem(), Issuer::new(params, key))
    };
    let mut done = Vec::new();
    for subject in subjects {
        let dir = out.join(&subject.name);
        if dir.join("cert.pem").exists() && !renew {
            done.push((subject.name.clone(), Issued::Kept));
            continue;
        }
        make_private_dir(&dir)?;
        let key = KeyPair::generate().map_err(make)?;
        let mut params = CertificateParams::new(subject.alt_names.clone()).map_err(make)?;
        params.distinguished_name.push(DnType::CommonName, subject.name.clone());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if !subject.alt_names.is_empty() {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        params.not_after = rcgen::date_time_ymd(2035, 1, 1);
        let cert = params.signed_by(&key, &issuer).map_err(make)?;
        write_file(&dir.join("ca.pem"), &ca_pem)?;
        write_private(&dir.join("key.pem"), &key.serialize_pem())?;
        write_file(&dir.join("cert.pem"), &cert.pem())?;
        done.push((subject.name.clone(), Issued::Made));
    }
    Ok(done)
}

/// The deployment CA's name and constraints.
fn ca_params() -> Result<rcgen::CertificateParams, TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose};
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| TlsError::Make(e.to_string()))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "resurgo deployment CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    Ok(params)
}

fn make_private_dir(dir: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let write = |source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(write)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(write)
}

fn write_file(path: &Path, text: &str) -> Result<(), TlsError> {
    std::fs::write(path, text).map_err(|source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a private key: 0600 from the first byte.
fn write_private(path: &Path, text: &str) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let write = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(write)?;
    file.write_all(text.as_bytes()).map_err(write)?;
    file.sync_all().map_err(write)
}
