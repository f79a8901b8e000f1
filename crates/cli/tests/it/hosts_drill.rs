//! Live drills with every site on its own host (the lab of `hosts.rs`), run by the operator
//! through the agents' API: the faults are orders the sites' agents apply themselves — a link
//! cut with `tc` at both of its ends, a site gone dark as a lost host — and revert at teardown.

use std::time::Duration;

use serde_json::Value;

use crate::hosts::{insert, wait_serving, Hosts};
use crate::util::poll;

/// The drill's report, from the operator's `drill run NAME --json`, run on a thread of its own.
fn drill_in_background(hosts: &Hosts, name: &str) -> std::thread::JoinHandle<crate::util::Out> {
    let mut cmd = hosts.resurgo_command("op", &["drill", "run", name, "--json"]);
    cmd.env("RESURGO_TLS", hosts.host.join("tls"));
    std::thread::spawn(move || crate::util::Out::of(cmd.output().expect("run resurgo")))
}

fn report_of(out: &crate::util::Out, hosts: &Hosts) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "no report (exit {}):\n{}{}\n{}",
            out.code,
            out.stdout,
            out.stderr,
            hosts.logs()
        )
    })
}

/// The fault records in force at `node` (its agent's state), by file name.
fn records(hosts: &Hosts, node: &str) -> Vec<String> {
    let dir = hosts.file(node, &hosts.host.join("state/faults").join(node));
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default()
}

fn events(hosts: &Hosts, node: &str) -> String {
    std::fs::read_to_string(hosts.file(node, &hosts.host.join("state/events.jsonl"))).unwrap_or_default()
}

/// DESIGN §11 across hosts. A link drill (`cut_link: [a, b]`): each end's agent drops its half
/// with `tc`; while it is in force a connection from a to b (and from b to a) fails, the
/// witness still reaches both, b suspects a but the witness vetoes, nothing moves; teardown
/// removes the filters and the link works again. Then a site drill (`stop_site: a`): a's agent
/// goes dark (its database killed, no heartbeat, no renewal), b's agent declares a dead and
/// fails over by itself — taking back first the workspace lent at b (the RTO's preempt phase),
/// which b's agent gives back after failback —; the drill measures RPO with its canary at b,
/// tears down (a answers again and rejoins as b's standby), fails back through a's agent, and
/// leaves nothing.
#[test]
fn drills_through_the_agents_a_cut_link_moves_nothing_and_a_lost_site_fails_over_and_back() {
    let mut hosts = Hosts::start("hdf", "standby");
    let init = hosts.operator(&["repo", "init"]);
    assert_eq!(init.code, 0, "repo init:\n{}{}", init.stdout, init.stderr);
    hosts.succeeds(&["apply"]);
    wait_serving(&mut hosts, true);
    hosts.sql("a", "CREATE TABLE orders (id bigint PRIMARY KEY)").unwrap();
    insert(&hosts, "a", 0, 20);
    let caught_up = poll(Duration::from_secs(30), || (hosts.count("b")? == 20).then_some(()));
    assert!(caught_up.is_some(), "b did not follow a:\n{}", hosts.logs());
    let (a, b, w) = (hosts.lab.addr("a"), hosts.lab.addr("b"), hosts.lab.addr("w"));
    assert!(hosts.lab.reachable("a", b, 7411) && hosts.lab.reachable("b", a, 7411));

    // The link a↔b.
    let drill = drill_in_background(&hosts, "cut-a-b");
    let cut = poll(Duration::from_secs(60), || {
        (!records(&hosts, "a").is_empty() && !records(&hosts, "b").is_empty()).then_some(())
    });
    assert!(
        cut.is_some(),
        "the cut was never in force at both ends:\n{}",
        hosts.logs()
    );
    let filters = hosts
        .lab
        .command("a", "tc")
        .args(["filter", "show", "dev", "eth0", "parent", "d700:"])
        .output()
        .unwrap();
    let filters = String::from_utf8_lossy(&filters.stdout);
    assert!(filters.contains("u32"), "a's half is a tc filter on eth0: {filters}");
    // The fault bites: neither end reaches the other, both reach the witness.
    assert!(!hosts.lab.reachable("a", b, 7411), "a still reaches b through the cut");
    assert!(!hosts.lab.reachable("b", a, 7411), "b still reaches a through the cut");
    assert!(hosts.lab.reachable("a", w, 7411) && hosts.lab.reachable("b", w, 7411));
    assert_eq!(hosts.is_primary("a"), Some(true), "a serves through the cut");
    let out = drill.join().unwrap();
    let report = report_of(&out, &hosts);
    assert_eq!(report["outcome"], "completed", "{report:#}\n{}", hosts.logs());
    assert_eq!(report["leftovers"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["verdict"], "pass", "{report:#}");
    assert_eq!(out.code, 0);
    eprintln!(
        "link drill across hosts: the cut in force from {} s to {} s into the drill",
        report["faults"][0]["injected_at_s"], report["faults"][0]["reverted_at_s"]
    );
    assert_eq!(report["faults"][0]["kind"], "cut_link");
    assert!(report["faults"][0]["reverted_at_s"].is_number(), "{report:#}");
    let timeline = report["timeline"].as_array().unwrap();
    assert!(
        !timeline.iter().any(|e| e["kind"] == "failover_started"),
        "a cut link moved something: {report:#}"
    );
    assert!(
        timeline
            .iter()
            .any(|e| e["kind"] == "fault_applied" && e["message"].as_str().unwrap_or("").starts_with("b:")),
        "the agents' events are in the drill's timeline: {report:#}"
    );
    assert_eq!(report["rpo"]["writes_lost"], 0, "{report:#}");
    assert!(records(&hosts, "a").is_empty() && records(&hosts, "b").is_empty());
    assert!(
        hosts.lab.reachable("a", b, 7411) && hosts.lab.reachable("b", a, 7411),
        "the link is healed"
    );
    let qdisc = hosts
        .lab
        .command("a", "tc")
        .args(["qdisc", "show", "dev", "eth0"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&qdisc.stdout).contains("d700:"),
        "resurgo's qdisc is gone from a's eth0"
    );
    // Nothing moved. (a may fence itself for a moment as the link heals: etcd's member at a,
    // cut off from b's, elects anew when it rejoins, and a's renewals can wait past the
    // fencing deadline; it serves again on its own, at the same epoch.)
    let a_serves = poll(Duration::from_secs(30), || hosts.is_primary("a")?.then_some(()));
    assert!(a_serves.is_some(), "a does not serve after the cut:\n{}", hosts.logs());
    let status = hosts.status();
    assert!(
        status["roles"].as_array().unwrap().iter().all(|r| r["epoch"] == 0),
        "no epoch moved: {status}"
    );
    // b's standby streams from a again, within its objective as b's agent measures it: the
    // failover of the next drill does not promote a standby that is behind (it would refuse).
    insert(&hosts, "a", 20, 25);
    let following = poll(Duration::from_secs(60), || {
        hosts.check_agents();
        let standby = hosts.status()["datasets"][0]["standby"][0].clone();
        (hosts.count("b")? == 25 && standby["streaming"] == true && standby["within_rpo"] == true).then_some(())
    });
    assert!(
        following.is_some(),
        "b's standby does not follow a again:\n{}",
        hosts.logs()
    );

    // A workspace lent at b, from b's own repository: the failover takes it back first.
    hosts.succeeds(&["backup", "orders", "--replicate"]);
    lend_workspace(&hosts);

    // Site a lost: its agent goes dark; b's agent fails over by itself; teardown brings a back
    // as b's standby and fails back.
    let drill = drill_in_background(&hosts, "lose-a");
    let dark = poll(Duration::from_secs(60), || {
        events(&hosts, "a").contains("drill fault stop_site a").then_some(())
    });
    assert!(dark.is_some(), "a never went dark:\n{}", hosts.logs());
    let promoted = poll(Duration::from_secs(90), || hosts.is_primary("b")?.then_some(()));
    assert!(promoted.is_some(), "b's agent did not fail over:\n{}", hosts.logs());
    let out = drill.join().unwrap();
    let report = report_of(&out, &hosts);
    eprintln!(
        "site drill across hosts: RPO {} s, {} writes lost; phases {}",
        report["rpo"]["seconds"], report["rpo"]["writes_lost"], report["phases"]
    );
    assert_eq!(report["outcome"], "completed", "{report:#}\n{}", hosts.logs());
    assert_eq!(
        report["leftovers"],
        serde_json::json!([]),
        "{report:#}\n{}",
        hosts.logs()
    );
    assert_eq!(report["verdict"], "pass", "{report:#}\n{}", hosts.logs());
    assert_eq!(out.code, 0);
    let kinds: Vec<&str> = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for kind in [
        "fault_applied",
        "site_dead",
        "workspace_preempted",
        "failover_finished",
        "fault_reverted",
        "failed_back",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from the timeline: {kinds:?}");
    }
    assert!(
        report["phases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "preempt"),
        "the recovery shows the preempt phase: {report:#}"
    );
    // b's agent gives the workspace back once b serves no production any more.
    let back = poll(Duration::from_secs(60), || {
        let listed = hosts.operator(&["workspace", "list", "--json"]);
        let list: serde_json::Value = serde_json::from_str(&listed.stdout).ok()?;
        list.as_array()?
            .iter()
            .any(|w| w["name"] == "qa" && w["state"] == "ready")
            .then_some(())
    });
    assert!(back.is_some(), "qa is not back after failback:\n{}", hosts.logs());
    let out = hosts.operator(&["workspace", "delete", "qa"]);
    assert_eq!(out.code, 0, "workspace delete:\n{}{}", out.stdout, out.stderr);
    assert_eq!(
        report["rpo"]["datasets"][0]["site"], "b",
        "the canary is read at b: {report:#}"
    );
    assert!(records(&hosts, "a").is_empty(), "nothing in force at a");
    // Back as the spec has it: a primary, b its standby, every row kept.
    assert_eq!(
        hosts.is_primary("a"),
        Some(true),
        "a is primary again:\n{}",
        hosts.logs()
    );
    let b_follows = poll(Duration::from_secs(60), || (!hosts.is_primary("b")?).then_some(()));
    assert!(b_follows.is_some(), "b is not a standby again:\n{}", hosts.logs());
    assert_eq!(hosts.count("a"), Some(25), "every row is at a");
}

/// DESIGN §11 across hosts, isolated: the operator runs `try-b` through the agents; b's agent
/// makes the sandbox itself — a network namespace at b holding b's address on its loopback
/// only, a copy of the newest restore point in b's own S3 bucket with its WAL fetched in,
/// PostgreSQL started inside as the service's user — and answers for it: it serves, `pg_amcheck`
/// finds nothing, production's endpoints (a's PostgreSQL, etcd, the S3 server) are tried from
/// inside and none is reached. Production keeps its primary and every row; nothing is left at b.
/// Then a workspace at b made by b's agent; then a live service drill and a live workload
/// drill (`kill: db`) through a's agent.
#[test]
fn an_isolated_drill_then_a_service_and_a_workload_drill_through_the_agents() {
    let mut hosts = Hosts::start("hdi", "standby");
    let init = hosts.operator(&["repo", "init"]);
    assert_eq!(init.code, 0, "repo init:\n{}{}", init.stdout, init.stderr);
    hosts.succeeds(&["apply"]);
    wait_serving(&mut hosts, true);
    hosts.sql("a", "CREATE TABLE orders (id bigint PRIMARY KEY)").unwrap();
    insert(&hosts, "a", 1, 20);
    hosts.succeeds(&["backup", "orders", "--replicate"]);
    let rows = hosts.count("a");
    let out = drill_in_background(&hosts, "try-b").join().unwrap();
    let report = report_of(&out, &hosts);
    eprintln!(
        "isolated across hosts: sandbox serving after {} s; restore point {} s old",
        report["rto"]["measured_s"], report["rpo"]["seconds"]
    );
    assert_eq!(report["mode"], "isolated", "{report:#}");
    assert_eq!(report["outcome"], "completed", "{report:#}\n{}", hosts.logs());
    let attempts = report["isolation"]["attempts"].as_array().expect("the isolation proof");
    let a = hosts.lab.addr("a").to_string();
    assert!(
        attempts.iter().any(|t| t["to"].as_str().unwrap().contains(&a)),
        "{attempts:?}"
    );
    assert!(attempts.iter().all(|t| t["reached"] == false), "{attempts:?}");
    assert_eq!(report["data_checks"][0]["method"], "pg_amcheck", "{report:#}");
    assert_eq!(report["data_checks"][0]["passed"], true, "{report:#}");
    assert_eq!(report["leftovers"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["verdict"], "pass", "{report:#}");
    assert_eq!(out.code, 0);
    // Production untouched.
    assert_eq!(hosts.is_primary("a"), Some(true));
    assert_eq!(hosts.count("a"), rows, "every row still at a");
    let sandbox = report["isolation"]["sandbox"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    assert!(sandbox.starts_with("resurgo-"), "{sandbox}");
    assert!(
        !netns_at(&hosts, "b").iter().any(|n| n.starts_with(&sandbox)),
        "the sandbox's namespace {sandbox} is gone"
    );

    // A workspace at b, asked of b's agent: made at b alone, from b's own repository (golden
    // copy, clone, PostgreSQL in a namespace of its own), its data the restore point's.
    let ws = lend_workspace(&hosts);
    assert_eq!(ws["state"], "ready", "{ws:#}");
    let netns = ws["netns"].as_str().unwrap().to_string();
    assert!(netns_at(&hosts, "b").contains(&netns), "{netns} at b");
    let conninfo = format!(
        "host={} port={} user=nobody dbname=postgres connect_timeout=5",
        hosts.lab.addr("b"),
        crate::hosts::PORT
    );
    let mut psql = hosts.command("b", "ip");
    psql.args(["netns", "exec", &netns]).arg(crate::pg::pg_bin("psql"));
    let counted = crate::pg::run_psql(psql, &conninfo, "SELECT count(*) FROM orders");
    assert_eq!(
        counted.ok().and_then(|c| c.parse().ok()),
        rows,
        "the workspace holds every row backed up"
    );
    let listed = hosts.operator(&["workspace", "list", "--json"]);
    assert!(listed.stdout.contains("\"qa\""), "{}{}", listed.stdout, listed.stderr);
    let out = hosts.operator(&["workspace", "delete", "qa"]);
    assert_eq!(out.code, 0, "workspace delete:\n{}{}", out.stdout, out.stderr);
    assert!(!netns_at(&hosts, "b").contains(&netns), "{netns} left at b");
    assert_eq!(hosts.is_primary("a"), Some(true), "production untouched");

    // A service, then a workload (the data tier, one service here), live: a's agent kills its
    // PostgreSQL (the order it was sent) and restarts it as a crashed primary; nothing fails
    // over (a failover would be a stop condition), the canary through the network loses
    // nothing, nothing is left.
    for (drill, kind) in [("kill-db", "service"), ("lose-data-tier", "workload")] {
        drill_kills_db_and_leaves_nothing(&hosts, drill, kind, rows);
    }
}

/// Runs `drill` (a live `kill: db`, of scope `kind`) through the agents and checks its report:
/// completed, nothing lost, nothing left, a serving again with its `rows`.
fn drill_kills_db_and_leaves_nothing(hosts: &Hosts, drill: &str, kind: &str, rows: Option<u64>) {
    let out = drill_in_background(hosts, drill).join().unwrap();
    let report = report_of(&out, hosts);
    assert_eq!(report["scope"]["kind"], kind, "{report:#}");
    assert_eq!(report["outcome"], "completed", "{report:#}\n{}", hosts.logs());
    assert_eq!(report["faults"][0]["kind"], "kill", "{report:#}");
    assert!(report["faults"][0]["injected_at_s"].is_number(), "{report:#}");
    assert_eq!(report["rpo"]["writes_lost"], 0, "{report:#}");
    assert_eq!(report["leftovers"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["verdict"], "pass", "{report:#}");
    assert!(
        poll(Duration::from_secs(60), || hosts.is_primary("a")?.then_some(())).is_some(),
        "a serves again after the kill:\n{}",
        hosts.logs()
    );
    assert_eq!(hosts.count("a"), rows, "every row still at a");
}

/// The network namespaces `ip netns` lists at `node`.
/// Workspace `qa` of `db` at b, asked of b's agent through the operator's CLI: its record.
fn lend_workspace(hosts: &Hosts) -> serde_json::Value {
    let out = hosts.operator(&["workspace", "create", "qa", "--site", "b", "--services", "db", "--json"]);
    assert_eq!(
        out.code,
        0,
        "workspace create:\n{}{}\n{}",
        out.stdout,
        out.stderr,
        hosts.logs()
    );
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn netns_at(hosts: &Hosts, node: &str) -> Vec<String> {
    let out = hosts.command(node, "ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}
