//! Every site on its own host (the deployment of docs/deployment.md), with everything real:
//! sites a and b, the witness w, an infrastructure node (S3 and the Git server) and the
//! operator's machine, each in its own network namespace; and a, b, w and the operator each in
//! a mount namespace of its own too, whose private tmpfs holds that host's state folder, TLS
//! files and secrets at the same path on every host — so no host can see another's folders, as
//! on separate machines. etcd runs a member at a, b and w; each site's repository is a bucket on
//! a real S3 server (`rclone serve s3`); every agent reads the spec from a Git server
//! (`git daemon`); the operator runs the CLI, which reaches the sites only through their agents'
//! API (mutual TLS with certificates from `resurgo certs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::netns::Lab;
use crate::pg::pg_bin;
use crate::util::{git, git_repo, poll, BIN};

pub(crate) const PORT: u16 = 5432;
const S3_PORT: u16 = 9000;
const S3_ACCESS: &str = "hosts-access";
const S3_SECRET: &str = "hosts-secret-key";
const API_TOKEN: &str = "hosts-api-token-0123456789";

/// The lab: five nodes, four of them hosts with a private folder, the servers, and the agents.
pub struct Hosts {
    pub lab: Lab,
    /// The test's folder, in the root mount namespace (the infrastructure node's data, logs).
    pub root: PathBuf,
    /// The folder every host mounts its own tmpfs on: its state, TLS files and secrets.
    pub host: PathBuf,
    /// Per host, the process that holds its mount namespace (a `sleep` inside it).
    keepers: BTreeMap<String, Child>,
    agents: BTreeMap<String, Child>,
    servers: Vec<Child>,
    /// The spec's Git URL, and its working copy (to commit changes).
    pub repo: String,
    work: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for child in self
            .agents
            .values_mut()
            .chain(self.servers.iter_mut())
            .chain(self.keepers.values_mut())
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Hosts {
    /// The timing of the tests: detection in 1.5 s, fenced by 2.5 s, lease 4 s.
    const FAST: &'static str = "  heartbeat_interval: 500ms\n  suspect_after: 3\n  lease_ttl: 4s\n  fencing_deadline: 2s\n  promotion_delay: 2s\n  cooldown: 1s\n";

    /// Builds the lab, the hosts' private folders, S3, Git and etcd, the deployment's
    /// certificates and secrets at each host, and starts the witness's and the sites' agents.
    /// `strategy` is the dataset's (`standby` or `backup`).
    pub fn start(tag: &str, strategy: &str) -> Hosts {
        Hosts::start_timed(tag, strategy, Hosts::FAST)
    }

    /// [`Hosts::start`] with the spec's failover `timing` (lines of `failover:`).
    pub fn start_timed(tag: &str, strategy: &str, timing: &str) -> Hosts {
        let lab = Lab::new(tag, &["a", "b", "w", "infra", "op"]);
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let host = root.join("host");
        std::fs::create_dir_all(&host).unwrap();
        open(&root);
        let mut hosts = Hosts {
            lab,
            root: root.clone(),
            host,
            keepers: BTreeMap::new(),
            agents: BTreeMap::new(),
            servers: Vec::new(),
            repo: String::new(),
            work: root.join("spec-work"),
            _tmp: tmp,
        };
        for node in ["a", "b", "w", "op"] {
            hosts.make_host(node);
        }
        hosts.start_s3();
        let etcd = hosts.lab.etcd(&["a", "b", "w"], &root);
        hosts.start_git(&etcd, strategy, timing);
        hosts.issue_certificates();
        for node in ["w", "a", "b"] {
            hosts.start_agent(node, &[]);
        }
        hosts.wait_agents();
        hosts
    }

    /// Waits until the operator's `status` reaches both sites' agents.
    pub fn wait_agents(&mut self) {
        let up = poll(Duration::from_secs(60), || {
            self.check_agents();
            let out = self.operator(&["status", "--json"]);
            let status: Value = serde_json::from_str(&out.stdout).ok()?;
            (status["sites"][0]["state"] == "reachable" && status["sites"][1]["state"] == "reachable").then_some(())
        });
        assert!(up.is_some(), "the agents never answered the operator:\n{}", self.logs());
    }

    /// Gives `node` a mount namespace of its own with a private tmpfs on [`Hosts::host`], held by
    /// a keeper process, and its secrets.
    fn make_host(&mut self, node: &str) {
        let child = self
            .lab
            .command(node, "unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount -t tmpfs -o mode=0755 tmpfs \"$0\" && touch \"$0/.mounted\" && exec sleep 100000")
            .arg(&self.host)
            .stdin(Stdio::null())
            .spawn()
            .expect("run unshare");
        self.keepers.insert(node.to_string(), child);
        let mounted = poll(Duration::from_secs(10), || {
            self.file(node, &self.host.join(".mounted")).exists().then_some(())
        });
        assert!(mounted.is_some(), "{node}'s private folder was not mounted");
        assert!(
            !self.host.join(".mounted").exists(),
            "{node}'s private folder is visible outside its host"
        );
        // The sites hold the secrets the spec refers to; the operator's machine holds none: it
        // has only its client certificate.
        if node == "op" {
            return;
        }
        let secrets = self.host.join("secrets");
        for (name, text) in [
            ("password", "hosts-repository-password"),
            ("s3-access", S3_ACCESS),
            ("s3-secret", S3_SECRET),
            ("api-token", API_TOKEN),
        ] {
            let path = self.file(node, &secrets.join(name));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
        }
    }

    /// `path` on `node`'s host, as seen from the test: through its keeper's root.
    pub fn file(&self, node: &str, path: &Path) -> PathBuf {
        let pid = self.keepers[node].id();
        PathBuf::from(format!("/proc/{pid}/root")).join(path.strip_prefix("/").unwrap())
    }

    /// `program` on `node`'s host: its network and mount namespaces.
    pub fn command(&self, node: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let pid = self.keepers[node].id().to_string();
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &pid, "-m", "-n", "--"]).arg(program);
        cmd
    }

    fn start_s3(&mut self) {
        let addr = format!("{}:{S3_PORT}", self.lab.addr("infra"));
        let child = crate::util::serve_s3(
            self.lab.command("infra", crate::util::rclone()),
            &self.root,
            &addr,
            &format!("{S3_ACCESS},{S3_SECRET}"),
        );
        self.servers.push(child);
        let up = poll(Duration::from_secs(20), || {
            self.lab.reachable("a", self.lab.addr("infra"), S3_PORT).then_some(())
        });
        assert!(up.is_some(), "the S3 server never listened:\n{}", self.tail("s3.log"));
    }

    /// The spec in a Git repository served by `git daemon` at the infrastructure node.
    fn start_git(&mut self, etcd: &[String], strategy: &str, timing: &str) {
        let served = self.root.join("git");
        std::fs::create_dir_all(&served).unwrap();
        git_repo(&self.work, &[("resurgo.yaml", &self.spec(etcd, strategy, timing))]);
        git(
            &served,
            &["clone", "-q", "--bare", &self.work.display().to_string(), "spec.git"],
        );
        git(
            &self.work,
            &[
                "remote",
                "add",
                "served",
                &served.join("spec.git").display().to_string(),
            ],
        );
        let infra = self.lab.addr("infra");
        let log = std::fs::File::create(self.root.join("git.log")).unwrap();
        let child = self
            .lab
            .command("infra", "git")
            .args(["daemon", "--reuseaddr", "--export-all"])
            .arg(format!("--base-path={}", served.display()))
            .arg(format!("--listen={infra}"))
            .arg(&served)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run git daemon");
        self.servers.push(child);
        let up = poll(Duration::from_secs(20), || {
            self.lab.reachable("a", infra, 9418).then_some(())
        });
        assert!(up.is_some(), "git daemon never listened:\n{}", self.tail("git.log"));
        self.repo = format!("git://{infra}/spec.git");
    }

    /// The spec: a and b with their S3 repositories, PostgreSQL at a (`user: nobody`), its
    /// standby (or, with `backup`, its restore) at b, etcd, the witness, the site API, and two
    /// live drills run through it: `lose-a` (a's host lost) and `cut-a-b` (the link between
    /// a and b cut; a failover would abort it).
    fn spec(&self, etcd: &[String], strategy: &str, timing: &str) -> String {
        let script = self.root.join("start-db.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n# A PostgreSQL server in the service's folder, made on its first start.\n\
                 if [ ! -s data/PG_VERSION ]; then\n\
                 \x20 {initdb} -D data -U nobody -A trust >/dev/null || exit 1\n\
                 \x20 printf \"wal_level = replica\\nmax_wal_senders = 10\\nmax_replication_slots = 10\\nhot_standby = on\\nshared_buffers = 32MB\\nmax_connections = 30\\narchive_mode = on\\n\" >> data/postgresql.conf\n\
                 \x20 printf \"host all all 10.0.0.0/8 trust\\nhost replication all 10.0.0.0/8 trust\\n\" >> data/pg_hba.conf\n\
                 fi\n\
                 exec {postgres} -D data -p {PORT} -c listen_addresses=\"$RESURGO_ADDRESS\" -c unix_socket_directories=''\n",
                initdb = pg_bin("initdb").display(),
                postgres = pg_bin("postgres").display(),
            ),
        )
        .unwrap();
        open(&script);
        let secrets = self.host.join("secrets");
        let secret = |name: &str| format!("{{ file: {} }}", secrets.join(name).display());
        let infra = self.lab.addr("infra");
        let site = |name: &str| {
            format!(
                "  {name}:\n    provider: local\n    address: {}\n    capacity: {{ cpu: 4, memory: 4Gi }}\n    repository:\n      url: \"s3://bucket-{name}/repo?endpoint=http://{infra}:{S3_PORT}&region=us-east-1\"\n      password: {}\n      access_key: {}\n      secret_key: {}\n",
                self.lab.addr(name),
                secret("password"),
                secret("s3-access"),
                secret("s3-secret"),
            )
        };
        let endpoints = etcd.iter().map(|u| format!("\"{u}\"")).collect::<Vec<_>>().join(", ");
        format!(
            "apiVersion: resurgo.dev/v1alpha1\nsystem: hosts\nsites:\n{}{}\
             services:\n  db:\n    command: sh\n    args: [\"{script}\"]\n    user: nobody\n    ports: [{PORT}]\n\
             \x20   health: {{ tcp: {{ port: {PORT} }}, interval: 200ms, start_timeout: 120s }}\n\
             \x20   site: a\n    standby: [b]\n    stop_timeout: 10s\n\
             datasets:\n  orders:\n    service: db\n    type: postgres\n    path: data\n\
             \x20   connection: \"host={a} port={PORT} user=nobody dbname=postgres\"\n    strategy: {strategy}\n    rpo: {rpo}\n    schedule: 1h\n    replicate_to: [b]\n\
             \x20   check: {{ query: \"SELECT count(*) > 0 FROM orders\", expect: t }}\n\
             failover:\n  automatic: true\n  witness: \"{w}:7411\"\n  coordination: {{ etcd: {{ endpoints: [{endpoints}] }} }}\n{fast}\
             api:\n  tls: {tls}\n  token: {token}\n\
             drills:\n\
             \x20 lose-a:\n    scope: {{ site: a }}\n    faults: [stop_site: a]\n    mode: live\n\
             \x20   objectives: {{ rto: 60s, rpo: 5s }}\n    stop: [unavailable_for: 2m]\n    deadline: 3m\n\
             \x20 cut-a-b:\n    scope: {{ link: [a, b] }}\n    faults: [cut_link: [a, b]]\n    mode: live\n\
             \x20   objectives: {{ rto: 60s, rpo: 5s }}\n    stop: [event: failover_started]\n    deadline: 2m\n\
             \x20 try-b:\n    scope: {{ service: db }}\n    faults: [kill: db]\n    mode: isolated\n\
             \x20   objectives: {{ rto: 2m, rpo: 1h }}\n    deadline: 4m\n\
             \x20 kill-db:\n    scope: {{ service: db }}\n    faults: [kill: db]\n    mode: live\n\
             \x20   objectives: {{ rto: 60s, rpo: 5s }}\n    stop: [event: failover_started]\n    deadline: 2m\n\
             \x20 lose-data-tier:\n    scope: {{ services: [db] }}\n    faults: [kill: db]\n    mode: live\n\
             \x20   objectives: {{ rto: 60s, rpo: 5s }}\n    stop: [event: failover_started]\n    deadline: 2m\n",
            site("a"),
            site("b"),
            script = script.display(),
            a = self.lab.addr("a"),
            w = self.lab.addr("w"),
            rpo = if strategy == "backup" { "5s" } else { "2s" },
            fast = timing,
            tls = self.host.join("tls").display(),
            token = secret("api-token"),
        )
    }

    /// `resurgo certs` at the operator's host, then each host's folder copied to its `tls`.
    fn issue_certificates(&self) {
        let out_dir = self.host.join("certs");
        let out = self.resurgo("op", &["certs", "--out", &out_dir.display().to_string()]);
        assert!(out.status.success(), "certs: {}", String::from_utf8_lossy(&out.stderr));
        for (node, folder) in [("a", "a"), ("b", "b"), ("w", "witness"), ("op", "operator")] {
            let tls = self.file(node, &self.host.join("tls"));
            std::fs::create_dir_all(&tls).unwrap();
            for name in ["ca.pem", "cert.pem", "key.pem"] {
                std::fs::copy(self.file("op", &out_dir.join(folder).join(name)), tls.join(name)).unwrap();
            }
        }
    }

    /// Starts (or restarts) `node`'s agent (`w`: the witness), its log appended to
    /// `agent-<node>.log`, with extra environment variables.
    pub fn start_agent(&mut self, node: &str, vars: &[(&str, &str)]) {
        let who: Vec<&str> = if node == "w" {
            vec!["agent", "--witness"]
        } else {
            vec!["agent", "--site", node, "--tick", "300ms", "--poll", "2s"]
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join(format!("agent-{node}.log")))
            .unwrap();
        let child = self
            .resurgo_command(node, &who)
            .envs(vars.iter().copied())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start resurgo");
        self.agents.insert(node.to_string(), child);
    }

    /// SIGKILLs `node`'s agent (its services keep running, as after a crash of the agent alone).
    pub fn kill_agent(&mut self, node: &str) {
        if let Some(mut child) = self.agents.remove(node) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether `node`'s agent has exited (it was asked to crash), reaping it.
    pub fn agent_exited(&mut self, node: &str) -> bool {
        let exited = self
            .agents
            .get_mut(node)
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
        if exited {
            self.agents.remove(node);
        }
        exited
    }

    /// `resurgo ARGS --repo <git> --state <host's state>` on `node`'s host.
    pub fn resurgo_command(&self, node: &str, args: &[&str]) -> Command {
        let mut cmd = self.command(node, BIN);
        cmd.args(args)
            .args(["--repo", &self.repo])
            .arg("--state")
            .arg(self.host.join("state"))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `resurgo ARGS` to its end on `node`'s host.
    pub fn resurgo(&self, node: &str, args: &[&str]) -> std::process::Output {
        self.resurgo_command(node, args).output().expect("run resurgo")
    }

    /// `resurgo ARGS` as the operator: its own host, only its client certificate.
    pub fn operator(&self, args: &[&str]) -> crate::util::Out {
        let out = self
            .resurgo_command("op", args)
            .env("RESURGO_TLS", self.host.join("tls"))
            .output()
            .expect("run resurgo");
        crate::util::Out::of(out)
    }

    /// `resurgo ARGS` as the operator, which must succeed (else the agents' logs are shown).
    pub fn succeeds(&self, args: &[&str]) -> crate::util::Out {
        let out = self.operator(args);
        assert_eq!(out.code, 0, "{args:?}:\n{}{}\n{}", out.stdout, out.stderr, self.logs());
        out
    }

    /// The operator's `status --json`.
    pub fn status(&self) -> Value {
        let out = self.operator(&["status", "--json"]);
        assert!(
            out.code == 0 || out.code == 2,
            "status: {}\n{}",
            out.stderr,
            self.logs()
        );
        out.json()
    }

    /// One statement through `psql` on the witness's host against `to`'s server.
    pub fn sql(&self, to: &str, q: &str) -> Result<String, String> {
        let conninfo = format!(
            "host={} port={PORT} user=nobody dbname=postgres connect_timeout=2",
            self.lab.addr(to)
        );
        crate::pg::run_psql(self.lab.command("w", pg_bin("psql")), &conninfo, q)
    }

    /// Whether `node`'s server answers as a primary (Some(true)) or a standby (Some(false)).
    pub fn is_primary(&self, node: &str) -> Option<bool> {
        match self.sql(node, "SELECT pg_is_in_recovery()").ok()?.as_str() {
            "f" => Some(true),
            "t" => Some(false),
            _ => None,
        }
    }

    /// The rows of `orders` at `node`.
    pub fn count(&self, node: &str) -> Option<u64> {
        self.sql(node, "SELECT count(*) FROM orders").ok()?.parse().ok()
    }

    /// Panics if an agent exited on its own.
    pub fn check_agents(&mut self) {
        for (node, child) in &mut self.agents {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the agent of {node} exited ({status})");
            }
        }
    }

    fn tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.root.join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// The end of every agent's log and of both PostgreSQL logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for node in ["a", "b", "w"] {
            out.push_str(&format!(
                "--- agent {node} ---\n{}\n",
                self.tail(&format!("agent-{node}.log"))
            ));
        }
        for node in ["a", "b"] {
            let path = self.file(
                node,
                &self
                    .host
                    .join("state/sites")
                    .join(node)
                    .join("services/db/logs/stderr.log"),
            );
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!(
                "--- postgres {node} ---\n{}\n",
                lines[lines.len().saturating_sub(30)..].join("\n")
            ));
        }
        out
    }
}

/// Makes `path` readable (and a folder traversable) by PostgreSQL's user.
fn open(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Waits until a serves as the primary and b follows it (`standby`), or a serves (`backup`).
pub fn wait_serving(hosts: &mut Hosts, standby: bool) {
    let ready = poll(Duration::from_secs(120), || {
        hosts.check_agents();
        let a = hosts.is_primary("a")?;
        (a && (!standby || !hosts.is_primary("b")?)).then_some(())
    });
    assert!(
        ready.is_some(),
        "a never served{}:\n{}",
        if standby { " with b following" } else { "" },
        hosts.logs()
    );
}

pub fn insert(hosts: &Hosts, node: &str, from: u64, to: u64) {
    for id in from..to {
        hosts
            .sql(node, &format!("INSERT INTO orders VALUES ({id})"))
            .unwrap_or_else(|e| panic!("insert {id} at {node}: {e}\n{}", hosts.logs()));
    }
}

#[test]
fn sites_on_their_own_hosts_standby_apply_back_up_verify_switch_and_survive_the_loss_of_a() {
    let mut hosts = Hosts::start("hst", "standby");
    // The operator's host sees no site's folder.
    assert!(!hosts.file("op", &hosts.host.join("state/sites")).exists());

    // The repositories, each made by its own site's agent (the operator holds no secret).
    let init = hosts.operator(&["repo", "init"]);
    assert_eq!(init.code, 0, "repo init:\n{}{}", init.stdout, init.stderr);
    // apply through the agents: each applies its own site (a's primary, b's standby seeded
    // from a over the network).
    hosts.succeeds(&["apply", "--json"]);
    wait_serving(&mut hosts, true);
    let status = hosts.status();
    for (i, site) in ["a", "b"].iter().enumerate() {
        assert_eq!(status["sites"][i]["state"], "reachable", "{site}: {status}");
    }
    assert!(
        !hosts.file("op", &hosts.host.join("state/sites")).exists(),
        "the operator made site folders"
    );
    assert!(
        !hosts.file("a", &hosts.host.join("state/sites/b")).exists(),
        "a holds b's folder"
    );
    assert!(
        !hosts.file("b", &hosts.host.join("state/sites/a")).exists(),
        "b holds a's folder"
    );

    hosts.sql("a", "CREATE TABLE orders (id bigint PRIMARY KEY)").unwrap();
    insert(&hosts, "a", 0, 20);

    // Backup at a (where the data is) into a's S3 bucket, replicated to b's; verified at b from
    // b's own repository.
    let backup = hosts.succeeds(&["backup", "--replicate"]);
    assert!(backup.stdout.contains("replicated to b"), "{}", backup.stdout);
    hosts.succeeds(&["verify", "orders", "--site", "b"]);
    let status = hosts.status();
    let points = &status["datasets"][0]["points"];
    for (i, site) in ["a", "b"].iter().enumerate() {
        assert_eq!(points[i]["site"], *site, "{status}");
        assert!(
            points[i]["snapshots"].as_u64() >= Some(1),
            "{site} holds no snapshot: {status}"
        );
    }
    assert!(
        hosts.root.join("s3/bucket-b/repo").exists(),
        "b's repository is in its bucket"
    );

    // A planned failover, asked of b's agent: a's agent hands the group over; nothing is lost.
    hosts.succeeds(&["failover", "--to", "b"]);
    assert_eq!(hosts.is_primary("b"), Some(true), "b is primary:\n{}", hosts.logs());
    assert_eq!(hosts.count("b"), Some(20), "every row is at b");
    insert(&hosts, "b", 20, 30);

    // Failback: a rejoins as b's standby, catches up, b hands the group back: nothing lost.
    hosts.succeeds(&["failback"]);
    assert_eq!(
        hosts.is_primary("a"),
        Some(true),
        "a is primary again:\n{}",
        hosts.logs()
    );
    assert_eq!(hosts.count("a"), Some(30), "every row written at b is at a");
    wait_serving(&mut hosts, true);

    // A failover whose target's agent is killed -9 in the middle of the run (once the journal's
    // fifth record is durable): the restarted agent resumes it to the end; the operator's CLI
    // follows it through the restart.
    hosts.kill_agent("b");
    hosts.start_agent("b", &[("RESURGO_CRASH_AFTER_RECORD", "5")]);
    hosts.wait_agents();
    let operator = {
        let cmd = hosts.resurgo_command("op", &["failover", "--to", "b", "--wait", "3m"]);
        let mut cmd = cmd;
        cmd.env("RESURGO_TLS", hosts.host.join("tls"));
        std::thread::spawn(move || crate::util::Out::of(cmd.output().expect("run resurgo")))
    };
    let crashed = poll(Duration::from_secs(60), || hosts.agent_exited("b").then_some(()));
    assert!(crashed.is_some(), "b's agent did not crash mid-run:\n{}", hosts.logs());
    hosts.start_agent("b", &[]);
    let out = operator.join().unwrap();
    assert_eq!(
        out.code,
        0,
        "the resumed failover:\n{}{}\n{}",
        out.stdout,
        out.stderr,
        hosts.logs()
    );
    let events = std::fs::read_to_string(hosts.file("b", &hosts.host.join("state/events.jsonl"))).unwrap();
    assert!(
        events.contains("resuming run failover-a-to-b-e3"),
        "b's restarted agent did not resume the run:\n{events}"
    );
    assert_eq!(hosts.is_primary("b"), Some(true), "b is primary after the resumed run");
    assert_eq!(hosts.count("b"), Some(30));
    let runs = hosts.operator(&["runs", "--json"]).json();
    let resumed = runs["runs"].as_array().unwrap().last().cloned().unwrap();
    assert_eq!(resumed["outcome"]["status"], "succeeded", "{runs}");

    // Fail back to a, then lose a for real: a cut off from everyone fences itself, b's agent
    // fails over by itself (the witness no longer sees a), every row acknowledged is at b.
    hosts.succeeds(&["failback"]);
    wait_serving(&mut hosts, true);
    insert(&hosts, "a", 30, 40);
    let caught_up = poll(Duration::from_secs(30), || (hosts.count("b")? == 40).then_some(()));
    assert!(caught_up.is_some(), "b did not receive a's rows:\n{}", hosts.logs());

    // Only the link a↔b cut (DESIGN §6.3): b suspects a, the witness still sees it and vetoes;
    // nothing moves, for longer than a failover would take.
    hosts.lab.cut("a", "b");
    let events_b =
        || std::fs::read_to_string(hosts.file("b", &hosts.host.join("state/events.jsonl"))).unwrap_or_default();
    let vetoed = poll(Duration::from_secs(20), || {
        events_b().contains("witness still sees it").then_some(())
    });
    assert!(
        vetoed.is_some(),
        "b never suspected a with the witness's veto:\n{}",
        hosts.logs()
    );
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(8) {
        assert_eq!(
            hosts.is_primary("a"),
            Some(true),
            "a must stay primary while only a↔b is cut:\n{}",
            hosts.logs()
        );
        std::thread::sleep(Duration::from_millis(500)); // observation interval, not synchronisation
    }
    hosts.lab.heal();
    let caught_up = poll(Duration::from_secs(30), || (hosts.count("b")? == 40).then_some(()));
    assert!(
        caught_up.is_some(),
        "b did not follow a again after the heal:\n{}",
        hosts.logs()
    );

    let cut = Instant::now();
    hosts.lab.isolate("a");
    let promoted = poll(Duration::from_secs(60), || hosts.is_primary("b")?.then_some(()));
    assert!(
        promoted.is_some(),
        "b was not promoted after a was isolated:\n{}",
        hosts.logs()
    );
    eprintln!("isolation → b promoted: {:.2} s", cut.elapsed().as_secs_f64());
    assert_eq!(
        hosts.count("b"),
        Some(40),
        "every row acknowledged before the isolation is at b"
    );
    let status = hosts.status();
    assert_eq!(status["sites"][0]["state"], "unknown", "a cannot be reached: {status}");
    assert_eq!(status["sites"][0]["services"][0]["health"], "unknown", "{status}");

    // Healed, a comes back as b's standby — never a second primary.
    hosts.lab.heal();
    let rejoined = poll(Duration::from_secs(90), || (!hosts.is_primary("a")?).then_some(()));
    assert!(
        rejoined.is_some(),
        "a did not come back as a standby:\n{}",
        hosts.logs()
    );
    let b_primary = poll(Duration::from_secs(30), || hosts.is_primary("b")?.then_some(()));
    assert!(
        b_primary.is_some(),
        "b is not the primary after the heal:\n{}",
        hosts.logs()
    );
}

#[test]
fn sites_on_their_own_hosts_backup_strategy_a_lost_is_restored_at_b_from_bs_own_bucket() {
    let mut hosts = Hosts::start("hsb", "backup");
    let init = hosts.operator(&["repo", "init"]);
    assert_eq!(init.code, 0, "repo init:\n{}{}", init.stdout, init.stderr);
    hosts.succeeds(&["apply"]);
    wait_serving(&mut hosts, false);
    hosts.sql("a", "CREATE TABLE orders (id bigint PRIMARY KEY)").unwrap();
    insert(&hosts, "a", 0, 30);

    // A base backup at a into a's bucket, replicated from a into b's; verified at b.
    hosts.succeeds(&["backup", "--replicate"]);
    let verify = hosts.succeeds(&["verify", "orders"]);
    assert!(
        verify.stdout.contains("orders at b"),
        "verified at the replica site: {}",
        verify.stdout
    );

    // Later writes reach b's bucket as archived WAL, shipped by a's agent.
    insert(&hosts, "a", 30, 40);
    let segment = hosts.sql("a", "SELECT pg_walfile_name(pg_current_wal_lsn())").unwrap();
    hosts.sql("a", "SELECT pg_switch_wal()").unwrap();
    let shipped = poll(Duration::from_secs(60), || {
        crate::util::holds_file(&hosts.root.join("s3/bucket-b"), &segment).then_some(())
    });
    assert!(
        shipped.is_some(),
        "segment {segment} never reached b's bucket:\n{}",
        hosts.logs()
    );

    // a is lost: b's agent restores the newest point from b's own bucket and serves.
    let cut = Instant::now();
    hosts.lab.isolate("a");
    let restored = poll(Duration::from_secs(120), || hosts.is_primary("b")?.then_some(()));
    assert!(restored.is_some(), "b was not restored and promoted:\n{}", hosts.logs());
    eprintln!(
        "isolation → b restored and serving: {:.2} s",
        cut.elapsed().as_secs_f64()
    );
    assert_eq!(
        hosts.count("b"),
        Some(40),
        "every row whose WAL reached b's bucket is at b"
    );
    let status = hosts.status();
    assert_eq!(status["sites"][0]["state"], "unknown", "{status}");
    assert_eq!(status["sites"][1]["services"][0]["health"], "healthy", "{status}");
}
