//! The server's gate over real TLS: certificates from `tls::issue`, a client of our own and the
//! server on loopback. The handler here only echoes what reached it, so a refused request is
//! seen never to reach it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use resurgo_api::tls::{issue, Subject};
use resurgo_api::types::{Health, StartRun};
use resurgo_api::{Client, ClientError, Credentials, Handler, Op, Reply, Request, ServerConfig, TlsFiles};

struct Echo(AtomicUsize);

impl Handler for Echo {
    fn handle(&self, op: Op, request: &Request) -> Reply {
        self.0.fetch_add(1, Ordering::SeqCst);
        match op {
            Op::StartRun => match request.json::<StartRun>() {
                Ok(run) => Reply::json(202, &serde_json::json!({"run": format!("{}-{}", run.from, run.to)})),
                Err(reply) => reply,
            },
            _ => Reply::json(
                200,
                &Health {
                    site: format!("{:?}", request.caller),
                    ok: true,
                    primary_for: vec![],
                    standby_for: vec![],
                    lag_seconds: None,
                    detail: None,
                },
            ),
        }
    }
}

fn refused(e: ClientError) -> u16 {
    match e {
        ClientError::Refused { status, .. } => status,
        other => panic!("expected a refusal, got {other}"),
    }
}

#[test]
fn only_the_deployments_certificates_and_token_get_past_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let subjects = [
        Subject {
            name: "a".into(),
            alt_names: vec!["127.0.0.1".into()],
        },
        Subject {
            name: "operator".into(),
            alt_names: vec![],
        },
    ];
    issue(&certs, &subjects, false).unwrap();
    // Issuing again keeps what is there, with the same CA.
    let again = issue(&certs, &subjects, false).unwrap();
    assert!(again.iter().all(|(_, i)| *i == resurgo_api::tls::Issued::Kept));
    // Another deployment's CA and operator.
    let other = dir.path().join("other");
    issue(&other, &subjects[1..], false).unwrap();

    let echo = Arc::new(Echo(AtomicUsize::new(0)));
    let server = resurgo_api::server::serve(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig {
            tls: TlsFiles::new(certs.join("a")).server_config().unwrap(),
            token: Some("s3cret-token".into()),
        },
        echo.clone(),
    )
    .unwrap();
    let addr = server.addr().to_string();
    let client = |folder: &std::path::Path, token: Option<&str>| {
        Client::new(
            &Credentials {
                tls: TlsFiles::new(folder),
                token: token.map(String::from),
            },
            Duration::from_secs(5),
        )
        .unwrap()
    };
    // The CA alone (a folder with only ca.pem): no identity.
    let anonymous_dir = dir.path().join("anonymous");
    std::fs::create_dir(&anonymous_dir).unwrap();
    std::fs::copy(certs.join("ca.pem"), anonymous_dir.join("ca.pem")).unwrap();
    let anonymous = client(&anonymous_dir, None);

    let health: Health = anonymous.get(&addr, "/health").unwrap();
    assert_eq!(health.site, "Anyone", "health answers without credentials");
    assert_eq!(echo.0.load(Ordering::SeqCst), 1);

    assert_eq!(refused(anonymous.get::<Health>(&addr, "/v1/site").unwrap_err()), 401);
    assert_eq!(
        refused(
            client(&anonymous_dir, Some("wrong"))
                .get::<Health>(&addr, "/v1/site")
                .unwrap_err()
        ),
        403
    );
    assert_eq!(echo.0.load(Ordering::SeqCst), 1, "a refused request reaches no handler");

    let by_token: Health = client(&anonymous_dir, Some("s3cret-token"))
        .get(&addr, "/v1/site")
        .unwrap();
    assert_eq!(by_token.site, "Token");
    let by_cert: Health = client(&certs.join("operator"), None).get(&addr, "/v1/site").unwrap();
    assert_eq!(by_cert.site, "Certificate");

    // Another deployment's client certificate fails the handshake; its CA does not trust ours.
    let before = echo.0.load(Ordering::SeqCst);
    let mut foreign = other.join("operator");
    let err = client(&foreign, None).get::<Health>(&addr, "/v1/site").unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
    foreign = anonymous_dir.clone();
    std::fs::copy(other.join("ca.pem"), foreign.join("ca.pem")).unwrap();
    let err = client(&foreign, Some("s3cret-token"))
        .get::<Health>(&addr, "/v1/site")
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(echo.0.load(Ordering::SeqCst), before);

    // Malformed and unknown requests.
    let operator = client(&certs.join("operator"), None);
    let status = refused(
        operator
            .post::<_, serde_json::Value>(&addr, "/v1/runs", &serde_json::json!({"kind": "sideways"}))
            .unwrap_err(),
    );
    assert_eq!(status, 400);
    assert_eq!(
        refused(operator.get::<serde_json::Value>(&addr, "/v1/nothing").unwrap_err()),
        404
    );
    assert_eq!(
        refused(
            operator
                .post::<_, serde_json::Value>(&addr, "/v1/site", &1)
                .unwrap_err()
        ),
        405
    );
    let started: serde_json::Value = operator
        .post(
            &addr,
            "/v1/runs",
            &serde_json::json!({"kind": "failover", "from": "a", "to": "b", "epoch": 0}),
        )
        .unwrap();
    assert_eq!(started["run"], "a-b");
}
