//! A lab of network namespaces for partition tests (DESIGN §6.3): one namespace per node
//! (`rz-<tag>-<node>`), all plugged into one Linux bridge that lives in its own namespace
//! (`rz-<tag>-hub`) through veth pairs; each node is `10.<x>.0.<i+1>/24` on its `eth0`.
//! Partitions are made with iproute2 alone (no iptables/nft): see [`Lab::cut`].
//!
//! Needs root and iproute2 (`ip`, `ss`); the lab panics naming what is missing, it never
//! skips. Every namespace, and every process still in one, is gone when the lab is dropped,
//! also on panic. Tags must be unique among tests that run at the same time.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A set of network namespaces wired to one bridge; torn down on drop.
pub struct Lab {
    tag: String,
    subnet: u8,
    nodes: Vec<String>,
    /// Processes this lab started (etcd members), with their log files.
    children: RefCell<Vec<(Child, PathBuf)>>,
}

impl Lab {
    /// Builds the namespaces, the bridge and the links; loopback up everywhere. A namespace of
    /// the same name left by a killed run is emptied and deleted first.
    pub fn new(tag: &str, nodes: &[&str]) -> Lab {
        preflight();
        assert!(!nodes.is_empty(), "a lab needs nodes");
        for node in nodes {
            // The hub's end of the link is `v-<node>`; interface names are at most 15 bytes.
            assert!(
                !node.is_empty() && node.len() <= 13 && node.bytes().all(|b| b.is_ascii_alphanumeric()),
                "node name {node:?}: 1 to 13 ASCII letters or digits"
            );
        }
        assert!(nodes.len() < 254, "at most 253 nodes");
        let lab = Lab {
            tag: tag.to_string(),
            subnet: subnet_of(tag),
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            children: RefCell::new(Vec::new()),
        };
        let hub = lab.hub();
        let existing = netns_list();
        for ns in lab.namespaces() {
            if existing.contains(&ns) {
                kill_all_in(&ns);
                ip(&["netns", "del", &ns]);
            }
        }
        add_netns(&hub);
        ip(&["-n", &hub, "link", "set", "lo", "up"]);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        for node in nodes {
            let ns = lab.ns(node);
            let port = format!("v-{node}");
            add_netns(&ns);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", lab.addr(node)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
        lab
    }

    /// The namespace of `node`: `rz-<tag>-<node>`.
    pub fn ns(&self, node: &str) -> String {
        assert!(
            self.nodes.iter().any(|n| n == node),
            "no node {node:?} in lab {}",
            self.tag
        );
        format!("rz-{}-{node}", self.tag)
    }

    /// The address of `node` on the lab's network.
    pub fn addr(&self, node: &str) -> Ipv4Addr {
        let i = self.index(node);
        Ipv4Addr::new(10, self.subnet, 0, i as u8 + 1)
    }

    /// Runs `f` on a thread that has entered `node`'s network namespace (setns applies to the
    /// calling thread alone), so a test can talk to a node's network with library calls.
    pub fn within<T: Send>(&self, node: &str, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.ns(node));
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                        .unwrap_or_else(|e| panic!("cannot enter {path}: {e}"));
                    f()
                })
                .join()
                .expect("the thread inside the namespace panicked")
        })
    }

    /// `ip netns exec <ns> program`: add arguments, environment, stdio as usual.
    pub fn command(&self, node: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(node)]).arg(program);
        cmd
    }

    /// `x` and `y` can no longer reach each other, in either direction; the others are
    /// unaffected. Idempotent.
    ///
    /// Each side gets an `unreachable` route for the other's /32, more specific than the
    /// connected /24: a local sender gets EHOSTUNREACH ("No route to host") at once, on
    /// `connect` and on every later send, so clients fail in microseconds instead of waiting
    /// for a timeout (`blackhole` fails with a puzzling EINVAL, `prohibit` with EACCES, which
    /// reads like a permission problem). A route stops new traffic only: TCP connections
    /// already established would keep buffering writes and hang until their own timeouts,
    /// so the sockets between the two are then destroyed with `ss -K` (SOCK_DESTROY), and
    /// their owners see ECONNABORTED on the next call.
    pub fn cut(&self, x: &str, y: &str) {
        assert_ne!(x, y, "cut a node from itself");
        for (from, to) in [(x, y), (y, x)] {
            let ns = self.ns(from);
            ip(&[
                "-n",
                &ns,
                "route",
                "replace",
                "unreachable",
                &format!("{}/32", self.addr(to)),
            ]);
        }
        for (from, to) in [(x, y), (y, x)] {
            let out = self
                .command(from, "ss")
                .args(["-K", "-t", "dst", &self.addr(to).to_string()])
                .stdout(Stdio::null())
                .output()
                .expect("run ss");
            assert!(
                out.status.success(),
                "ss -K in {}: {}",
                self.ns(from),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// `x` reaches nobody and nobody reaches `x`: [`Lab::cut`] from every other node.
    /// Idempotent.
    pub fn isolate(&self, x: &str) {
        for y in &self.nodes {
            if y != x {
                self.cut(x, y);
            }
        }
    }

    /// Undoes every cut and isolation (connections destroyed stay destroyed). Idempotent.
    pub fn heal(&self) {
        for node in &self.nodes {
            ip(&["-n", &self.ns(node), "route", "flush", "type", "unreachable"]);
        }
    }

    /// Whether a TCP connection from `from`'s namespace to `to:port` is accepted within 1 s.
    /// A cut answers at once (no route to host); so does a closed port (refused).
    pub fn reachable(&self, from: &str, to: Ipv4Addr, port: u16) -> bool {
        self.command(from, "timeout")
            .args([
                "1",
                "bash",
                "-c",
                "exec 3<>/dev/tcp/$0/$1",
                &to.to_string(),
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run bash")
            .success()
    }

    /// An HTTP/1.0 request from inside `from`'s namespace to `to` (`host:port`), over bash's
    /// /dev/tcp (no curl needed); the status and body, or `None` when there is no complete
    /// answer within `timeout`.
    pub fn http(
        &self,
        from: &str,
        to: &str,
        method: &str,
        path: &str,
        body: &str,
        timeout: Duration,
    ) -> Option<(u16, String)> {
        const SCRIPT: &str = r#"exec 3<>"/dev/tcp/${0%:*}/${0##*:}" || exit 1
printf '%s %s HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\n\r\n%s' "$1" "$2" "$0" "${#3}" "$3" >&3
exec cat <&3"#;
        let out: Output = self
            .command(from, "timeout")
            .arg(format!("{:.3}", timeout.as_secs_f64()))
            .args(["bash", "-c", SCRIPT, to, method, path, body])
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .expect("run bash");
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    }

    /// Starts one etcd member per node in `nodes`, inside its namespace, as one cluster:
    /// clients on `<addr>:2379`, peers on `<addr>:2380`, data and logs (`<node>.etcd`,
    /// `<node>.etcd.log`) under `dir`, elections tuned for tests (heartbeat 100 ms, election
    /// timeout 1 s). Returns once a write through every member succeeds; the client URLs, in
    /// the order of `nodes`. The members are killed when the lab is dropped.
    ///
    /// Seen with etcd 3.4 in this lab: a member cut off from the quorum answers `GET /health`
    /// with 503 `{"health":"false"}` at once, but writes and linearizable reads through it
    /// hang about 7 s (5 s + 2 × election timeout) before a 503 "etcdserver: request timed
    /// out", so give clients a shorter timeout; serializable reads still answer, stale. A
    /// lease asked for 1 s is granted 2 s (the minimum, 1.5 × election timeout rounded up).
    pub fn etcd(&self, nodes: &[&str], dir: &Path) -> Vec<String> {
        let cluster = nodes
            .iter()
            .map(|n| format!("{n}=http://{}:2380", self.addr(n)))
            .collect::<Vec<_>>()
            .join(",");
        let mut urls = Vec::new();
        for node in nodes {
            let addr = self.addr(node);
            let client = format!("http://{addr}:2379");
            let peer = format!("http://{addr}:2380");
            let log_path = dir.join(format!("{node}.etcd.log"));
            let log = File::create(&log_path).expect("create etcd log");
            let child = self
                .command(node, "etcd")
                .args(["--name", node])
                .arg("--data-dir")
                .arg(dir.join(format!("{node}.etcd")))
                .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &cluster, "--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &format!("rz-{}", self.tag)])
                .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
                // As docs/deployment.md asks: a member cut off from the leader does not, when the
                // link heals, depose it with the terms it raised alone (etcd 3.4's default).
                .arg("--pre-vote")
                .args(["--logger", "zap", "--log-outputs", "stderr"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("run ip netns exec");
            self.children.borrow_mut().push((child, log_path));
            urls.push(client);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in nodes {
            loop {
                if self.etcd_put(node, "/rz-lab/ready", node, Duration::from_secs(2)) {
                    break;
                }
                let exited = self
                    .children
                    .borrow_mut()
                    .iter_mut()
                    .any(|(c, _)| matches!(c.try_wait(), Ok(Some(_))));
                if exited || Instant::now() >= deadline {
                    panic!(
                        "etcd cluster {cluster}: {} through {node}'s member\n{}",
                        if exited {
                            "a member exited before a write went"
                        } else {
                            "no write within 30 s"
                        },
                        self.etcd_logs()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        urls
    }

    /// Puts `key` = `value` through `node`'s own etcd member (its JSON gateway,
    /// `POST /v3/kv/put`), from inside `node`'s namespace; whether etcd acknowledged it
    /// within `timeout`.
    pub fn etcd_put(&self, node: &str, key: &str, value: &str, timeout: Duration) -> bool {
        let body = format!(
            r#"{{"key":"{}","value":"{}"}}"#,
            base64(key.as_bytes()),
            base64(value.as_bytes())
        );
        let to = format!("{}:2379", self.addr(node));
        matches!(self.http(node, &to, "POST", "/v3/kv/put", &body, timeout),
            Some((200, body)) if body.contains("\"header\""))
    }

    /// Reads `key` through `node`'s own etcd member (`POST /v3/kv/range`): `None` when the
    /// request fails, `Some(None)` when the key is absent.
    pub fn etcd_get(&self, node: &str, key: &str, timeout: Duration) -> Option<Option<String>> {
        let body = format!(r#"{{"key":"{}"}}"#, base64(key.as_bytes()));
        let to = format!("{}:2379", self.addr(node));
        let (status, body) = self.http(node, &to, "POST", "/v3/kv/range", &body, timeout)?;
        if status != 200 {
            return None;
        }
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        json.get("header")?;
        match json["kvs"].as_array().and_then(|kvs| kvs.first()) {
            None => Some(None),
            Some(kv) => Some(Some(
                String::from_utf8_lossy(&unbase64(kv["value"].as_str().unwrap_or(""))).into_owned(),
            )),
        }
    }

    /// The last lines of every etcd member's log.
    pub fn etcd_logs(&self) -> String {
        let mut text = String::new();
        for (_, path) in self.children.borrow().iter() {
            let log = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<_> = log.lines().collect();
            text += &format!("--- {} (last lines)\n", path.display());
            for line in &lines[lines.len().saturating_sub(15)..] {
                text += line;
                text += "\n";
            }
        }
        text
    }

    fn index(&self, node: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n == node)
            .unwrap_or_else(|| panic!("no node {node:?} in lab {}", self.tag))
    }

    fn hub(&self) -> String {
        format!("rz-{}-hub", self.tag)
    }

    fn namespaces(&self) -> Vec<String> {
        let mut all: Vec<_> = self.nodes.iter().map(|n| self.ns(n)).collect();
        all.push(self.hub());
        all
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.children.borrow().is_empty() {
            eprintln!("{}", self.etcd_logs());
        }
        for (child, _) in self.children.borrow_mut().iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.namespaces() {
            kill_all_in(&ns);
            let _ = Command::new("ip")
                .args(["netns", "del", &ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The second octet: from the tag, so parallel labs usually differ. A clash would be
/// harmless — each lab is a separate network — only confusing in logs.
fn subnet_of(tag: &str) -> u8 {
    let hash = tag
        .bytes()
        .fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    (hash % 254) as u8 + 1
}

/// Panics naming what the lab needs and does not have.
fn preflight() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or("?");
    assert!(
        euid == "0",
        "network-namespace tests must run as root (effective uid is {euid})"
    );
    for (program, arg, package) in [
        ("ip", "-V", "iproute2"),
        ("ss", "-V", "iproute2"),
        ("bash", "--version", "bash"),
        ("timeout", "--version", "coreutils"),
    ] {
        match Command::new(program)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                panic!("network-namespace tests need `{program}` on PATH (Debian package {package})")
            }
            Err(e) => panic!("cannot run `{program}`: {e}"),
        }
    }
}

/// Runs `ip ARGS`; panics with its stderr when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// `ip netns add`, retried: the first namespaces of a boot set up /run/netns, and two labs
/// doing it at once can trip over each other.
fn add_netns(ns: &str) {
    for _ in 0..5 {
        let ok = Command::new("ip")
            .args(["netns", "add", ns])
            .stderr(Stdio::null())
            .status()
            .expect("run ip")
            .success();
        if ok {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ip(&["netns", "add", ns]);
}

fn netns_list() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("run ip");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// SIGKILLs every process in `ns` (`ip netns pids`), and waits a little for them to go.
fn kill_all_in(ns: &str) {
    let pids = || -> Vec<i32> {
        let out = Command::new("ip")
            .args(["netns", "pids", ns])
            .stderr(Stdio::null())
            .output();
        out.map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = pids();
        if left.is_empty() || Instant::now() >= deadline {
            return;
        }
        for pid in left {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut n, mut bits) = (0u32, 0);
    for c in text.bytes().take_while(|&c| c != b'=') {
        let Some(v) = B64.iter().position(|&b| b == c) else {
            continue;
        };
        n = n << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((n >> bits) as u8);
        }
    }
    out
}

#[test]
fn netns_lab_cut_isolate_heal() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let nodes = ["a", "b", "w"];
    let lab = Lab::new("nt", &nodes);
    assert_eq!(lab.ns("a"), "rz-nt-a");
    let x = lab.addr("a").octets()[1];
    assert_eq!(lab.addr("w"), Ipv4Addr::new(10, x, 0, 3));
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(unbase64(&base64(b"/rz-lab/ready")), b"/rz-lab/ready");

    let urls = lab.etcd(&nodes, dir.path());
    let want: Vec<_> = nodes.iter().map(|n| format!("http://{}:2379", lab.addr(n))).collect();
    assert_eq!(urls, want);

    // `reaches[i][j]`: node i connects to node j's etcd client port.
    let check = |what: &str, reaches: [[bool; 3]; 3]| {
        for (i, from) in nodes.iter().enumerate() {
            for (j, to) in nodes.iter().enumerate() {
                assert_eq!(
                    lab.reachable(from, lab.addr(to), 2379),
                    reaches[i][j],
                    "{what}: {from} reaches {to}"
                );
            }
        }
    };
    check("before any cut", [[true; 3]; 3]);
    // The /health endpoint over the gateway, from w.
    let (status, body) = lab
        .http(
            "w",
            &format!("{}:2379", lab.addr("a")),
            "GET",
            "/health",
            "",
            Duration::from_secs(2),
        )
        .expect("GET /health");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"health\":\"true\""), "{body}");

    lab.cut("a", "b");
    lab.cut("b", "a");
    check(
        "a and b cut",
        [[true, false, true], [false, true, true], [true, true, true]],
    );

    lab.isolate("a");
    lab.isolate("a");
    check(
        "a isolated",
        [[true, false, false], [false, true, true], [false, true, true]],
    );
    // b and w are a quorum: a write through b goes once they have (re)elected a leader.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab.etcd_put("b", "/rz-lab/k", "majority", Duration::from_secs(2)) {
        assert!(
            Instant::now() < deadline,
            "no write through b with a isolated\n{}",
            lab.etcd_logs()
        );
    }
    // a alone is not.
    let t = Instant::now();
    assert!(!lab.etcd_put("a", "/rz-lab/lost", "minority", Duration::from_secs(2)));
    eprintln!("write through isolated a failed after {:?}", t.elapsed());

    lab.heal();
    lab.heal();
    check("healed", [[true; 3]; 3]);
    // a rejoins: it serves writes again, has b's write, and never committed its own.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab.etcd_put("a", "/rz-lab/back", "yes", Duration::from_secs(2)) {
        assert!(Instant::now() < deadline, "a did not rejoin\n{}", lab.etcd_logs());
    }
    let timeout = Duration::from_secs(2);
    assert_eq!(lab.etcd_get("a", "/rz-lab/k", timeout), Some(Some("majority".into())));
    assert_eq!(lab.etcd_get("b", "/rz-lab/lost", timeout), Some(None));

    drop(lab);
    assert!(
        !netns_list().iter().any(|ns| ns.starts_with("rz-nt-")),
        "namespaces left behind"
    );
    eprintln!("netns lab self-test: {:?}", started.elapsed());
}
