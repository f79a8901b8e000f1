//! The etcd store over HTTPS with a client certificate and an etcd user, against a real etcd
//! run with `--client-cert-auth` and `auth enable`. Certificates are made per test with the
//! `openssl` program (a CA, the member's certificate for 127.0.0.1, a client certificate; and
//! a second CA with a client certificate of its own, which the member must not trust).

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use resurgo_coord::{Assignment, CasOutcome, CoordStore, EtcdSecurity, EtcdStore, EtcdUser, StoreError};
use serde_json::json;
use tempfile::TempDir;

use crate::etcd::Etcd;
use crate::support;

const PASSWORD: &str = "correct-horse-battery";

/// Certificates in a temp folder: `ca`, `member` (for 127.0.0.1, signed by `ca`), `client`
/// (signed by `ca`), `other-ca`, and `rogue` (a client certificate signed by `other-ca`).
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        for ca in ["ca", "other-ca"] {
            pki.write(
                &format!("{ca}.cnf"),
                &format!(
                    "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = resurgo test {ca}\n\
                     [ext]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign\n\
                     subjectKeyIdentifier = hash\n"
                ),
            );
            pki.openssl(&format!(
                "req -x509 -config {ca}.cnf -extensions ext -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
                 -nodes -days 2 -keyout {ca}.key -out {ca}.pem"
            ));
        }
        // etcd's gateway dials its own member with the member's certificate: it is a client too.
        pki.leaf(
            "member",
            "ca",
            "extendedKeyUsage = serverAuth,clientAuth\nsubjectAltName = IP:127.0.0.1\n",
        );
        pki.leaf("client", "ca", "extendedKeyUsage = clientAuth\n");
        pki.leaf("rogue", "other-ca", "extendedKeyUsage = clientAuth\n");
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    /// `name.pem` and `name.key`, signed by `ca`, with the extensions in `ext`. No CommonName:
    /// with authentication on, etcd's gateway refuses a client certificate that has one.
    fn leaf(&self, name: &str, ca: &str, ext: &str) {
        self.write(
            &format!("{name}.ext"),
            &format!("basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n{ext}"),
        );
        self.openssl(&format!(
            "req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /O=resurgo-test-{name} \
             -keyout {name}.key -out {name}.csr"
        ));
        self.openssl(&format!(
            "x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial -days 2 -extfile {name}.ext \
             -out {name}.pem"
        ));
    }

    /// Runs `openssl` with `args` (split at spaces) in the folder.
    fn openssl(&self, args: &str) {
        let output = match Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(self.dir.path())
            .output()
        {
            Ok(output) => output,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                panic!("`openssl` not found on PATH: these tests make their certificates with it (apt-get install openssl)")
            }
            Err(e) => panic!("cannot run openssl: {e}"),
        };
        assert!(
            output.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// TLS as a well-configured client has it: our CA and our client certificate.
    fn client(&self) -> EtcdSecurity {
        EtcdSecurity {
            ca: Some(self.path("ca.pem")),
            client_cert: Some((self.path("client.pem"), self.path("client.key"))),
            user: None,
        }
    }

    fn client_as(&self, password: &str) -> EtcdSecurity {
        EtcdSecurity {
            user: Some(EtcdUser {
                name: "root".into(),
                password: password.into(),
            }),
            ..self.client()
        }
    }
}

/// A member that serves clients over TLS only and wants a certificate signed by `ca`.
fn start(pki: &Pki) -> Etcd {
    let arg = |flag: &str, file: &str| [OsString::from(flag), pki.path(file).into()];
    let mut args = Vec::new();
    args.extend(arg("--cert-file", "member.pem"));
    args.extend(arg("--key-file", "member.key"));
    args.extend(arg("--trusted-ca-file", "ca.pem"));
    // Fast password hashing: this is a test.
    args.extend(["--client-cert-auth".into(), "--bcrypt-cost".into(), "4".into()]);
    Etcd::start_with("https", &args, &pki.client())
}

/// etcd's administration through its gateway, with our client certificate (no etcdctl needed).
struct Admin<'a> {
    etcd: &'a Etcd,
    client: reqwest::blocking::Client,
}

impl<'a> Admin<'a> {
    fn new(etcd: &'a Etcd, pki: &Pki) -> Admin<'a> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut identity = std::fs::read(pki.path("client.pem")).unwrap();
        identity.extend(std::fs::read(pki.path("client.key")).unwrap());
        let ca = std::fs::read(pki.path("ca.pem")).unwrap();
        let client = reqwest::blocking::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca).unwrap())
            .identity(reqwest::Identity::from_pem(&identity).unwrap())
            .build()
            .unwrap();
        Admin { etcd, client }
    }

    fn post(&self, path: &str, body: serde_json::Value, token: Option<&str>) -> serde_json::Value {
        let mut request = self
            .client
            .post(format!("{}{path}", self.etcd.client_url))
            .body(body.to_string());
        if let Some(token) = token {
            request = request.header("Authorization", token);
        }
        let response = request.send().unwrap();
        let status = response.status();
        let text = response.text().unwrap();
        assert!(status.is_success(), "{path}: {status}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Adds the user `root` (role root) with `PASSWORD` and turns authentication on.
    fn enable_auth(&self) {
        self.post(
            "/v3/auth/user/add",
            json!({ "name": "root", "password": PASSWORD }),
            None,
        );
        self.post("/v3/auth/user/grant", json!({ "user": "root", "role": "root" }), None);
        self.post("/v3/auth/enable", json!({}), None);
    }

    /// Turns authentication off and on again: etcd forgets every token it gave.
    fn forget_tokens(&self) {
        let login = self.post(
            "/v3/auth/authenticate",
            json!({ "name": "root", "password": PASSWORD }),
            None,
        );
        self.post("/v3/auth/disable", json!({}), login["token"].as_str());
        self.post("/v3/auth/enable", json!({}), None);
    }
}

fn store(etcd: &Etcd, security: &EtcdSecurity) -> EtcdStore {
    EtcdStore::open(&[&etcd.client_url], security)
        .unwrap()
        .with_prefix("/secure")
}

/// The error of a first request with `security`; it must not be worth retrying.
fn refusal(etcd: &Etcd, security: &EtcdSecurity) -> String {
    let error = store(etcd, security).get_assignment("db").unwrap_err();
    assert!(
        matches!(error, StoreError::Refused(_)) && !error.is_transient(),
        "{error:?}"
    );
    error.to_string()
}

#[test]
fn tls_with_a_client_certificate_and_a_user_works() {
    let pki = Pki::new();
    let etcd = start(&pki);
    Admin::new(&etcd, &pki).enable_auth();
    let store = store(&etcd, &pki.client_as(PASSWORD));
    support::cas_increments_the_epoch(&store);
    support::stale_cas_is_refused(&store.clone().with_prefix("/secure-stale"));
    let lease = store.grant_lease("primary-db", "a", Duration::from_secs(30)).unwrap();
    assert_eq!(store.lease_holder("primary-db").unwrap().unwrap().0, "a");
    assert!(store.keep_alive(lease).unwrap());
    store.revoke(lease).unwrap();
    // Without a user, the member's authentication refuses the request.
    let anonymous = refusal(&etcd, &pki.client());
    assert!(anonymous.contains(&etcd.client_url), "{anonymous}");
}

#[test]
fn a_wrong_password_names_the_endpoint_and_not_the_password() {
    let pki = Pki::new();
    let etcd = start(&pki);
    Admin::new(&etcd, &pki).enable_auth();
    let message = refusal(&etcd, &pki.client_as("wrong-password-1234"));
    assert!(
        message.contains(&etcd.client_url)
            && message.contains("`root`")
            && message.contains("invalid user ID or password"),
        "{message}"
    );
    assert!(
        !message.contains("wrong-password-1234") && !message.contains(PASSWORD),
        "{message}"
    );
}

#[test]
fn without_a_client_certificate_the_member_refuses() {
    let pki = Pki::new();
    let etcd = start(&pki);
    let security = EtcdSecurity {
        client_cert: None,
        ..pki.client()
    };
    let message = refusal(&etcd, &security);
    assert!(
        message.contains(&etcd.client_url) && message.contains("asks for a client certificate"),
        "{message}"
    );
    // One signed by a CA the member does not trust is no better.
    let rogue = EtcdSecurity {
        client_cert: Some((pki.path("rogue.pem"), pki.path("rogue.key"))),
        ..pki.client()
    };
    let message = refusal(&etcd, &rogue);
    assert!(message.contains("refused the client certificate"), "{message}");
}

#[test]
fn a_member_signed_by_another_ca_is_not_trusted() {
    let pki = Pki::new();
    let etcd = start(&pki);
    let security = EtcdSecurity {
        ca: Some(pki.path("other-ca.pem")),
        ..pki.client()
    };
    let message = refusal(&etcd, &security);
    assert!(
        message.contains(&etcd.client_url) && message.contains("not signed by the CA given"),
        "{message}"
    );
    // Nor is it by the system's roots.
    let security = EtcdSecurity {
        ca: None,
        ..pki.client()
    };
    assert!(refusal(&etcd, &security).contains("invalid peer certificate"));
}

#[test]
fn an_invalid_token_is_replaced_by_logging_in_again() {
    let pki = Pki::new();
    let etcd = start(&pki);
    let admin = Admin::new(&etcd, &pki);
    admin.enable_auth();
    let store = store(&etcd, &pki.client_as(PASSWORD));
    let first = Assignment::first("db", "a", std::time::SystemTime::now());
    assert_eq!(
        store.compare_and_swap_assignment("db", None, &first).unwrap(),
        CasOutcome::Swapped
    );
    // As when a token expires (`--auth-token-ttl`) or its member restarts from a snapshot.
    admin.forget_tokens();
    assert_eq!(store.get_assignment("db").unwrap(), Some(first));
}

#[test]
fn certificate_files_are_read_when_the_store_opens() {
    let pki = Pki::new();
    let missing = EtcdSecurity {
        ca: Some(pki.path("nothing.pem")),
        ..pki.client()
    };
    let error = EtcdStore::open(&["https://127.0.0.1:2379"], &missing).unwrap_err();
    assert!(error.to_string().contains("nothing.pem"), "{error}");
    let swapped = EtcdSecurity {
        client_cert: Some((pki.path("client.key"), pki.path("client.key"))),
        ..pki.client()
    };
    let error = EtcdStore::open(&["https://127.0.0.1:2379"], &swapped).unwrap_err();
    assert!(
        error.to_string().contains("not a PEM certificate and its private key"),
        "{error}"
    );
}
