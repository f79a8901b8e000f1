//! RFC 2136 DNS UPDATE with TSIG against a real authoritative server: Knot (`knotd`), started
//! by each test in a temp dir on a free loopback port and killed when the test ends.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use resurgo_route::dns::DnsErrorKind;
use resurgo_route::{query_a, DnsRoute, Proxy, Route, RouteError};

use crate::support::{require_program, wait_for};

const ZONE: &str = "example.test";
const KEY_NAME: &str = "resurgo-test.";
const KEY: &[u8; 32] = b"resurgo-route-test-key-32-bytes!";
const SITE_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SITE_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const SITE_C: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);

/// A running `knotd`, killed on drop (also when the test panics).
struct Knot {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Knot {
    /// Serves `example.test` with `www` at site A and `big` with 60 addresses (more than a
    /// 512-byte UDP answer holds), accepting updates signed with [`KEY`].
    fn start() -> Knot {
        let knotd = require_program("knotd", "knot");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("run")).unwrap();
        std::fs::create_dir_all(d.join("db")).unwrap();
        let mut zone = format!(
            "$ORIGIN {ZONE}.\n$TTL 60\n\
             @ SOA ns.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 60\n\
             @ NS ns.{ZONE}.\n\
             ns A 127.0.0.1\n\
             www A {SITE_A}\n\
             www TXT \"not ours\"\n"
        );
        for i in 1..=60 {
            zone.push_str(&format!("big A 198.51.100.{i}\n"));
        }
        std::fs::write(d.join("example.test.zone"), zone).unwrap();

        let port = free_port();
        let conf = format!(
            r#"server:
    rundir: "{run}"
    listen: 127.0.0.1@{port}
log:
  - target: stderr
    any: info
database:
    storage: "{db}"
key:
  - id: {KEY_NAME}
    algorithm: hmac-sha256
    secret: {secret}
acl:
  - id: update-with-key
    key: {KEY_NAME}
    action: update
template:
  - id: default
    storage: "{dir}"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: {ZONE}.
    file: "{dir}/example.test.zone"
    acl: update-with-key
"#,
            run = d.join("run").display(),
            db = d.join("db").display(),
            dir = d.display(),
            secret = base64(KEY),
        );
        let conf_path = d.join("knot.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log = File::create(d.join("knotd.log")).unwrap();
        let child = Command::new(knotd)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut knot = Knot {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            dir,
        };
        wait_for("knotd to answer", Duration::from_secs(15), || {
            if let Some(status) = knot.child.try_wait().unwrap() {
                panic!("knotd exited ({status}):\n{}", knot.log());
            }
            query_a(knot.addr, "www.example.test").ok().filter(|a| a == &[SITE_A])
        });
        knot
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("knotd.log")).unwrap_or_default()
    }

    fn route(&self, name: &str, key: &[u8]) -> DnsRoute {
        let mut route = DnsRoute::new(self.addr, ZONE, name, KEY_NAME, key);
        route.ttl = 30;
        route.port = 8080;
        route
    }

    fn a(&self, name: &str) -> Vec<Ipv4Addr> {
        query_a(self.addr, name).unwrap()
    }
}

/// A loopback port free for both UDP and TCP (knotd listens on both).
fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port for both udp and tcp");
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn a_switch_moves_the_record_and_is_verified_by_a_query() {
    let knot = Knot::start();
    let route = knot.route("www.example.test", KEY);
    route
        .switch_a_record(Some(SITE_A), SITE_B)
        .unwrap_or_else(|e| panic!("{e}\n{}", knot.log()));
    assert_eq!(knot.a("www.example.test"), [SITE_B]);

    // Repeating the switch that was done is a no-op success.
    route.switch_a_record(Some(SITE_B), SITE_B).unwrap();
    assert_eq!(knot.a("www.example.test"), [SITE_B]);
}

#[test]
fn a_switch_refuses_when_someone_else_changed_the_record_and_leaves_it_alone() {
    let knot = Knot::start();
    // Someone else moves www to C behind our back.
    knot.route("www.example.test", KEY)
        .switch_a_record(Some(SITE_A), SITE_C)
        .unwrap();

    let err = knot
        .route("www.example.test", KEY)
        .switch_a_record(Some(SITE_A), SITE_B)
        .unwrap_err();
    assert!(matches!(err.kind, DnsErrorKind::Moved { .. }), "{err}");
    assert!(!err.is_retryable());
    let msg = err.to_string();
    for part in [
        "someone else changed it",
        "NXRRSET",
        "www.example.test",
        "zone example.test",
        &knot.addr.to_string(),
    ] {
        assert!(msg.contains(part), "{part:?} missing from: {msg}");
    }
    assert_eq!(knot.a("www.example.test"), [SITE_C]);
}

#[test]
fn a_first_switch_requires_that_no_a_record_exists() {
    let knot = Knot::start();
    let route = knot.route("new.example.test", KEY);
    route.switch_a_record(None, SITE_A).unwrap();
    assert_eq!(knot.a("new.example.test"), [SITE_A]);

    let err = route.switch_a_record(None, SITE_B).unwrap_err();
    assert!(matches!(err.kind, DnsErrorKind::Moved { .. }), "{err}");
    assert!(err.to_string().contains("YXRRSET"), "{err}");
    assert_eq!(knot.a("new.example.test"), [SITE_A]);
}

#[test]
fn a_wrong_tsig_key_is_refused_and_changes_nothing() {
    let knot = Knot::start();
    let err = knot
        .route("www.example.test", b"not-the-key")
        .switch_a_record(Some(SITE_A), SITE_B)
        .unwrap_err();
    assert!(matches!(err.kind, DnsErrorKind::Refused { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("check the TSIG key and the zone's update policy") && msg.contains("BADSIG"),
        "{msg}"
    );

    let mut unknown = knot.route("www.example.test", KEY);
    unknown.key_name = "someone-else.".into();
    let err = unknown.switch_a_record(Some(SITE_A), SITE_B).unwrap_err();
    assert!(matches!(err.kind, DnsErrorKind::Refused { .. }), "{err}");
    assert!(err.to_string().contains("BADKEY"), "{err}");

    assert_eq!(knot.a("www.example.test"), [SITE_A]);
}

#[test]
fn the_route_trait_switches_by_address_and_reports_the_current_site() {
    let knot = Knot::start();
    let route = knot.route("www.example.test", KEY);
    let (a, b) = (SocketAddr::from((SITE_A, 8080)), SocketAddr::from((SITE_B, 8080)));

    assert_eq!(route.current().unwrap(), Some(a));
    route.switch(Some(a), b, 3).unwrap();
    assert_eq!(route.current().unwrap(), Some(b));
    assert!(matches!(route.switch(Some(b), a, 2), Err(RouteError::Stale(_))));
    assert_eq!(route.current().unwrap(), Some(b));
    let v6 = "[2001:db8::1]:8080".parse().unwrap();
    assert!(matches!(route.switch(Some(b), v6, 4), Err(RouteError::NotIpv4 { .. })));

    let big = knot.route("big.example.test", KEY);
    assert!(matches!(big.current(), Err(RouteError::Ambiguous { .. })));
}

/// A server that says yes and keeps serving the old record (as PowerDNS does with updates
/// disabled): updates (TCP) reach one real Knot, queries (UDP) are relayed to a second one
/// that never sees them.
#[test]
fn an_update_the_server_does_not_serve_is_an_error() {
    let (updated, stale) = (Knot::start(), Knot::start());
    let (front, _proxy) = (0..50)
        .find_map(|_| {
            let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
            let proxy = Proxy::start(udp.local_addr().unwrap(), updated.addr).ok()?;
            Some((udp, proxy))
        })
        .expect("a loopback port free for both udp and tcp");
    let addr = front.local_addr().unwrap();
    let upstream = stale.addr;
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, client)) = front.recv_from(&mut buf) {
            let relay = UdpSocket::bind("127.0.0.1:0").unwrap();
            relay.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            relay.send_to(&buf[..n], upstream).unwrap();
            let mut answer = [0u8; 4096];
            if let Ok(m) = relay.recv(&mut answer) {
                let _ = front.send_to(&answer[..m], client);
            }
        }
    });

    let route = DnsRoute::new(addr, ZONE, "www.example.test", KEY_NAME, KEY.as_slice());
    let err = route.switch_a_record(Some(SITE_A), SITE_B).unwrap_err();
    assert!(
        matches!(&err.kind, DnsErrorKind::NotApplied { found, .. } if found == &[SITE_A]),
        "{err}"
    );
    assert!(err.is_retryable());
    assert!(err.to_string().contains("may drop updates silently"), "{err}");
    assert_eq!(updated.a("www.example.test"), [SITE_B]);
}

#[test]
fn a_truncated_udp_answer_is_asked_again_over_tcp() {
    let knot = Knot::start();
    let addrs = knot.a("big.example.test");
    assert_eq!(addrs.len(), 60, "{addrs:?}");
    assert_eq!(knot.a("nothing-here.example.test"), Vec::<Ipv4Addr>::new());
}

#[test]
fn a_record_outside_the_zone_is_refused_before_anything_is_sent() {
    let unroutable: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let route = DnsRoute::new(unroutable, ZONE, "www.example.org", KEY_NAME, KEY.as_slice());
    let err = route.switch_a_record(Some(SITE_A), SITE_B).unwrap_err();
    assert!(matches!(err.kind, DnsErrorKind::InvalidName(_)), "{err}");
}

#[test]
fn base64_matches_the_rfc_4648_vectors() {
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
}
