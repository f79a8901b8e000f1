//! A `type: dns` route through `resurgo failover`, against a real authoritative server: Knot
//! (`knotd`, Debian package `knot`), started by each test on one of its loopback addresses
//! with a zone that accepts RFC 2136 updates signed with a TSIG key, and killed when the test
//! ends.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use resurgo_route::dns::query_a;

use crate::netns::Lab;
use crate::util::{poll, Env};

pub(crate) const ZONE: &str = "example.test";
pub(crate) const RECORD: &str = "www.example.test";
pub(crate) const KEY_NAME: &str = "resurgo-cli-test.";
/// The key the server knows, base64 as in knot.conf and in the spec.
pub(crate) const KEY: &str = "cmVzdXJnby1jbGktZG5zLXJvdXRlLXRlc3Qta2V5ISE=";
/// A well-formed key of the same length that the server does not know.
const WRONG_KEY: &str = "bm90LXRoZS1rZXktdGhlLXNlcnZlci1rbm93cy0zMmI=";
pub(crate) const DNS_PORT: u16 = 5300;

/// A running `knotd`, killed on drop (also when the test panics).
pub(crate) struct Knot {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Knot {
    /// Serves `example.test` on `listen`, with `www` pointing at `www`, accepting updates
    /// signed with [`KEY`]; its files live in `dir`.
    fn start(dir: PathBuf, listen: SocketAddr, www: Ipv4Addr) -> Knot {
        Knot::start_in(None, dir, listen, www)
    }

    /// [`Knot::start`] inside a node of a network-namespace lab (None: here).
    pub(crate) fn start_in(lab: Option<(&Lab, &str)>, dir: PathBuf, listen: SocketAddr, www: Ipv4Addr) -> Knot {
        let knotd = find_program("knotd", "knot");
        for sub in ["run", "db"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let zone_file = dir.join("example.test.zone");
        std::fs::write(
            &zone_file,
            format!(
                "$ORIGIN {ZONE}.\n$TTL 60\n\
                 @ SOA ns.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 60\n\
                 @ NS ns.{ZONE}.\n\
                 ns A 127.0.0.1\n\
                 www A {www}\n"
            ),
        )
        .unwrap();
        let conf = format!(
            r#"server:
    rundir: "{run}"
    listen: {ip}@{port}
log:
  - target: stderr
    any: info
database:
    storage: "{db}"
key:
  - id: {KEY_NAME}
    algorithm: hmac-sha256
    secret: {KEY}
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
    file: "{zone}"
    acl: update-with-key
"#,
            run = dir.join("run").display(),
            db = dir.join("db").display(),
            dir = dir.display(),
            zone = zone_file.display(),
            ip = listen.ip(),
            port = listen.port(),
        );
        let conf_path = dir.join("knot.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log = dir.join("knotd.log");
        let out = File::create(&log).unwrap();
        let mut command = match lab {
            Some((lab, node)) => lab.command(node, knotd),
            None => Command::new(knotd),
        };
        let child = command
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut knot = Knot {
            child,
            addr: listen,
            log,
        };
        let up = poll(Duration::from_secs(15), || {
            if let Some(status) = knot.child.try_wait().unwrap() {
                panic!("knotd exited ({status}):\n{}", knot.log());
            }
            let answer = match lab {
                Some((lab, node)) => lab.within(node, || query_a(knot.addr, RECORD)),
                None => query_a(knot.addr, RECORD),
            };
            answer.ok().filter(|a| a == &[www])
        });
        assert!(up.is_some(), "knotd did not answer within 15s:\n{}", knot.log());
        knot
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn a(&self) -> Vec<Ipv4Addr> {
        query_a(self.addr, RECORD).unwrap_or_else(|e| panic!("{e}\n{}", self.log()))
    }
}

/// The path of `program`, on PATH or in the sbin directories (where Debian puts daemons);
/// panics naming the Debian package that provides it.
fn find_program(program: &str, debian_package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{program}` is not installed: install the Debian package `{debian_package}` (apt-get install {debian_package})")
        })
}

/// A spec with `web` at a (standby b) and a dns route `www` for it, whose TSIG secret is read
/// from a file holding `secret`; and a Knot serving the record at `www` (default: a's address).
fn setup(block: u8, port: u16, secret: &str, www: Option<Ipv4Addr>) -> (Env, Knot) {
    let env = Env::new(block);
    let ip = |site: u8| env.addr(site).parse::<Ipv4Addr>().unwrap();
    let server = SocketAddr::from((ip(9), DNS_PORT));
    let knot_dir = env.path().join("knot");
    let knot = Knot::start(knot_dir, server, www.unwrap_or(ip(1)));

    let secret_file = env.path().join("tsig.secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let web = Env::web("web", "a", port, "manual", &[]).replace("    site: a\n", "    site: a\n    standby: [b]\n");
    let spec = env.spec(&web)
        + &format!(
            "routes:\n  www:\n    service: web\n    type: dns\n    dns:\n      server: {server}\n      zone: {ZONE}\n      name: {RECORD}\n      ttl: 5\n      key: {{ name: {KEY_NAME}, secret: {{ file: {} }} }}\n",
            secret_file.display()
        );
    env.write_spec(&spec);
    let applied = env.run(&["apply"]);
    assert_eq!(applied.code, 0, "{}{}", applied.stdout, applied.stderr);
    (env, knot)
}

#[test]
fn failover_and_failback_move_the_dns_record() {
    let (env, knot) = setup(217, 7217, KEY, None);
    let a: Ipv4Addr = env.addr(1).parse().unwrap();
    let b: Ipv4Addr = env.addr(2).parse().unwrap();
    assert_eq!(knot.a(), [a]);

    for (to, want) in [("b", b), ("a", a)] {
        let out = env.run(&["failover", "--to", to, "--json"]);
        assert_eq!(
            out.code,
            0,
            "failover to {to}: {}{}\nknotd:\n{}",
            out.stdout,
            out.stderr,
            knot.log()
        );
        let report = out.json();
        assert_eq!(report["outcome"]["status"], "succeeded", "{report}");
        let switched = report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == format!("switch route www to {to}"))
            .unwrap_or_else(|| panic!("no route step in {report}"));
        assert_eq!(switched["outcome"]["status"], "done", "{report}");
        assert_eq!(knot.a(), [want], "after the failover to {to}");
    }
}

#[test]
fn a_wrong_tsig_secret_fails_the_run_naming_the_route_without_the_secret() {
    let (env, knot) = setup(218, 7218, WRONG_KEY, None);
    let a: Ipv4Addr = env.addr(1).parse().unwrap();

    let out = env.run(&["failover", "--to", "b", "--json"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let report = out.json();
    // Past the point of no return (b was assigned and started): stopped, not compensated.
    assert_eq!(report["outcome"]["status"], "stopped", "{report}");
    assert_eq!(report["outcome"]["step"], "switch route www to b", "{report}");
    let error = report["outcome"]["error"].as_str().unwrap();
    for part in ["route `www`", RECORD, "refused", "TSIG"] {
        assert!(error.contains(part), "{part:?} missing from: {error}");
    }
    // A refusal stops the run at once: it is not retried until the step's timeout.
    assert!(!error.contains("transient"), "{error}");
    for secret in [WRONG_KEY, KEY] {
        let everywhere = format!("{}{}", out.stdout, out.stderr);
        assert!(!everywhere.contains(secret), "a secret leaked: {everywhere}");
        let written = files_containing(&env.state(), secret);
        assert!(written.is_empty(), "the secret is written in {written:?}");
    }
    // The refused update changed nothing.
    assert_eq!(knot.a(), [a]);
}

#[test]
fn a_record_someone_else_pointed_elsewhere_is_left_alone() {
    let elsewhere = Ipv4Addr::new(192, 0, 2, 99);
    let (env, knot) = setup(219, 7219, KEY, Some(elsewhere));

    let out = env.run(&["failover", "--to", "b", "--json"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let report = out.json();
    assert_eq!(report["outcome"]["step"], "switch route www to b", "{report}");
    let error = report["outcome"]["error"].as_str().unwrap();
    for part in [
        "route `www`",
        "192.0.2.99",
        "no site's address",
        "someone else changed it",
    ] {
        assert!(error.contains(part), "{part:?} missing from: {error}");
    }
    assert_eq!(knot.a(), [elsewhere]);
}

/// The files under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes())) {
            found.push(path);
        }
    }
    found
}
