//! Unit tests of the faults: orders written down before they are applied, refused when they
//! are not the site's, applied once, undone when they fail half-way, reverted by their
//! `until` with no drill alive (the dead man's switch); and the `tc` commands a network fault
//! runs and undoes, against a recording of `tc` and `ip` (the real ones run in the hosts
//! tests, in network namespaces).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::*;
use crate::testing::{two_sites, Fixture};

fn order(id: &str, fault: Fault, in_s: f64) -> FaultOrder {
    FaultOrder {
        id: id.into(),
        fault,
        until_unix: now_unix() + in_s,
    }
}

fn started(f: &Fixture, site: &str, service: &str) {
    let system = &f.spec;
    let handle = f.engine.site(system, site).unwrap();
    let config = resurgo_plan::desired_state(system)[site][service].clone();
    f.engine.provider.start(&handle, &config).unwrap();
}

#[test]
fn a_site_loss_is_recorded_before_it_is_applied_and_its_until_reverts_it_with_no_drill_alive() {
    let f = Fixture::new(two_sites(false));
    started(&f, "a", "web");
    let answering = AtomicBool::new(true);
    let at = FaultSite {
        site: "a",
        system: &f.spec,
        engine: &f.engine,
        state_dir: f.dir.path(),
        answering: Some(&answering),
    };
    let applied = apply(&at, &order("drill-x-0", Fault::StopSite("a".into()), 0.6)).unwrap();
    assert!(!answering.load(Ordering::Relaxed), "the agent is silenced");
    assert!(!f.provider.running("a", "web"), "its services are killed");
    assert_eq!(applied.done.len(), 2, "{:?}", applied.done);
    // The record is there, in a private folder, and says the site is dark.
    let path = f.dir.path().join("faults/a/drill-x-0.json");
    assert!(path.exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert!(dark(f.dir.path(), "a"));
    assert!(!dark(f.dir.path(), "b"));
    // Before its until, the switch leaves it alone.
    assert!(revert_expired(&at).is_empty());
    assert_eq!(in_force(f.dir.path(), "a").unwrap().len(), 1);
    // Past it, the site reverts it by itself — a fresh switch, as in an agent that restarted.
    std::thread::sleep(Duration::from_millis(700));
    let restarted = AtomicBool::new(false);
    let at = FaultSite {
        answering: Some(&restarted),
        ..at
    };
    let reverted = revert_expired(&at);
    assert_eq!(reverted.len(), 1);
    assert!(reverted[0].1.is_ok(), "{:?}", reverted[0].1);
    assert!(restarted.load(Ordering::Relaxed), "the agent answers again");
    assert!(!path.exists(), "the record is gone");
    assert!(!dark(f.dir.path(), "a"));
    let events = EventLog::of_state(f.dir.path()).read().unwrap();
    assert!(events.iter().any(|e| e.kind == EventKind::FaultApplied));
    assert!(events
        .iter()
        .any(|e| e.kind == EventKind::FaultExpired && e.message.contains("drill-x-0")));
    // Reverting it again is no error.
    assert!(!revert(&at, "drill-x-0").unwrap());
}

#[test]
fn without_an_agent_a_site_loss_disconnects_the_site_and_the_revert_reconnects_it() {
    let f = Fixture::new(two_sites(false));
    started(&f, "a", "web");
    let at = FaultSite {
        site: "a",
        system: &f.spec,
        engine: &f.engine,
        state_dir: f.dir.path(),
        answering: None,
    };
    apply(&at, &order("drill-x-0", Fault::StopSite("a".into()), 60.0)).unwrap();
    let handle = f.engine.site(&f.spec, "a").unwrap();
    assert!(f.engine.provider.observe(&handle).is_err(), "a is out of reach");
    assert!(revert(&at, "drill-x-0").unwrap());
    assert!(f.engine.provider.observe(&handle).is_ok(), "a is back");
    assert!(in_force(f.dir.path(), "a").unwrap().is_empty());
}

#[test]
fn a_fault_that_is_not_the_sites_is_refused_and_the_same_order_is_applied_once() {
    let f = Fixture::new(two_sites(false));
    started(&f, "a", "web");
    let at = |site| FaultSite {
        site,
        system: &f.spec,
        engine: &f.engine,
        state_dir: f.dir.path(),
        answering: None,
    };
    let kill = order("drill-k-0", Fault::Kill("web".into()), 60.0);
    let refused = apply(&at("b"), &kill).unwrap_err();
    assert!(matches!(refused, FaultError::NotHere(_)), "{refused}");
    assert!(refused.to_string().contains("active at `a`"), "{refused}");
    let other = apply(&at("b"), &order("drill-s-0", Fault::StopSite("a".into()), 60.0)).unwrap_err();
    assert!(matches!(other, FaultError::NotHere(_)), "{other}");
    assert!(in_force(f.dir.path(), "b").unwrap().is_empty(), "nothing recorded at b");

    apply(&at("a"), &kill).unwrap();
    assert!(!f.provider.running("a", "web"));
    // The answer was lost and the order sent again: nothing more happens.
    apply(&at("a"), &kill).unwrap();
    let kills = f.provider.log().iter().filter(|l| l.starts_with("kill ")).count();
    assert_eq!(kills, 1);
    assert!(revert(&at("a"), "drill-k-0").unwrap());
}

#[test]
fn an_order_that_fails_half_way_is_undone_and_leaves_no_record() {
    let f = Fixture::new(two_sites(false));
    let at = FaultSite {
        site: "a",
        system: &f.spec,
        engine: &f.engine,
        state_dir: f.dir.path(),
        answering: None,
    };
    // web is not running: nothing to kill.
    let e = apply(&at, &order("drill-k-0", Fault::Kill("web".into()), 60.0)).unwrap_err();
    assert!(e.to_string().contains("nothing to kill"), "{e}");
    assert!(in_force(f.dir.path(), "a").unwrap().is_empty());
    // An order must be bounded, and its id a name.
    for bad in [
        order("drill-k-0", Fault::Kill("web".into()), -1.0),
        order("drill-k-0", Fault::Kill("web".into()), 3.0 * 24.0 * 3600.0),
        order("../x", Fault::Kill("web".into()), 60.0),
    ] {
        assert!(matches!(apply(&at, &bad), Err(FaultError::Bad(_))), "{bad:?}");
    }
}

#[test]
fn orders_of_a_run_are_told_apart_from_another_runs() {
    assert!(of_run(&order_id("drill-a-1", 0), "drill-a-1"));
    assert!(!of_run("drill-a-10-0", "drill-a-1"));
    assert!(!of_run("drill-a-1", "drill-a-1"));
}

#[test]
fn an_isolation_cuts_every_other_site_the_witness_and_the_stores_hosts_but_not_itself() {
    let mut system = two_sites(false);
    system.failover.coordination = Some(resurgo_spec::Coordination {
        etcd: Some(resurgo_spec::EtcdCluster {
            endpoints: vec![
                "http://127.0.0.1:2379".into(),
                "http://127.0.0.2:2379".into(),
                "http://[::1]:2379".into(),
            ],
            tls: None,
            auth: None,
        }),
    });
    let ips = |v: &[&str]| v.iter().map(|s| s.parse::<IpAddr>().unwrap()).collect::<Vec<_>>();
    assert_eq!(
        peers(&Fault::IsolateSite("a".into()), "a", &system),
        ips(&["127.0.0.2", "127.0.0.9", "::1"])
    );
    assert_eq!(
        peers(&Fault::CutLink(vec!["a".into(), "b".into()]), "b", &system),
        ips(&["127.0.0.1"])
    );
}

fn fake(routes: &[(&str, &str)]) -> Tc {
    Tc::Fake(Mutex::new(FakeNet {
        routes: routes
            .iter()
            .map(|(a, d)| (a.parse().unwrap(), d.to_string()))
            .collect(),
        ..Default::default()
    }))
}

fn set_show(tc: &Tc, args: &str, answer: &str) {
    let Tc::Fake(net) = tc else { unreachable!() };
    net.lock().unwrap().shows.insert(args.into(), answer.into());
}

fn ran(tc: &Tc) -> Vec<String> {
    let Tc::Fake(net) = tc else { unreachable!() };
    std::mem::take(&mut net.lock().unwrap().ran)
}

#[test]
fn a_cut_on_one_machine_matches_source_and_destination_and_its_revert_removes_exactly_it() {
    let tc = fake(&[("127.0.0.2", "lo")]);
    set_show(&tc, "qdisc show dev lo root", "qdisc noqueue 0: root refcnt 2\n");
    let own: IpAddr = "127.0.0.1".parse().unwrap();
    let plan = plan_filters(&tc, own, &["127.0.0.2".parse().unwrap()], None).unwrap();
    assert_eq!(
        plan,
        vec![Done::Filter {
            device: "lo".into(),
            pref: 100,
            peer: "127.0.0.2".parse().unwrap(),
            source: Some(own),
            class: DROP,
            netem: None,
        }]
    );
    add_filter(&tc, &plan[0]).unwrap();
    assert_eq!(
        ran(&tc),
        [
            "tc qdisc add dev lo root handle d700: htb",
            "tc class add dev lo parent d700: classid d700:1 htb rate 10gbit",
            "tc qdisc add dev lo parent d700:1 handle d701: pfifo limit 0",
            "tc filter add dev lo parent d700: protocol ip pref 100 u32 match ip src 127.0.0.1/32 match ip dst 127.0.0.2/32 classid d700:1",
        ]
    );
    // Another filter is there besides it: the revert removes its own and leaves the qdisc.
    set_show(
        &tc,
        "qdisc show dev lo root",
        "qdisc htb d700: root refcnt 2 r2q 10 default 0\n",
    );
    set_show(
        &tc,
        "filter show dev lo parent d700:",
        "filter protocol ip pref 100 u32 chain 0\nfilter protocol ip pref 101 u32 chain 0\n",
    );
    set_show(
        &tc,
        "class show dev lo",
        "class htb d700:1 root leaf d701: prio 0 rate 10Gbit\n",
    );
    remove_filter(&tc, &plan[0]).unwrap();
    assert_eq!(ran(&tc), ["tc filter del dev lo parent d700: pref 100"]);
    // The last one: the root qdisc goes too. Gone already: nothing to do.
    set_show(&tc, "filter show dev lo parent d700:", "");
    remove_filter(&tc, &plan[0]).unwrap();
    assert_eq!(ran(&tc), ["tc qdisc del dev lo root"]);
    set_show(&tc, "qdisc show dev lo root", "qdisc noqueue 0: root refcnt 2\n");
    remove_filter(&tc, &plan[0]).unwrap();
    assert!(ran(&tc).is_empty());
}

#[test]
fn between_hosts_a_degraded_link_gets_a_class_of_its_own_and_a_foreign_root_qdisc_is_never_replaced() {
    let tc = fake(&[("10.0.0.2", "eth0"), ("10.0.0.3", "eth0")]);
    set_show(&tc, "qdisc show dev eth0 root", "qdisc htb d700: root refcnt 2\n");
    set_show(
        &tc,
        "filter show dev eth0 parent d700:",
        "filter protocol ip pref 100 u32 chain 0\n",
    );
    set_show(&tc, "class show dev eth0", "class htb d700:1 root leaf d701: prio 0\n");
    let netem = netem_args(Some(Duration::from_millis(200)), Some(5.0));
    assert_eq!(netem, "delay 200000us loss 5%");
    let own = "10.0.0.1".parse().unwrap();
    let plan = plan_filters(
        &tc,
        own,
        &["10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap()],
        Some(&netem),
    )
    .unwrap();
    let prefs_classes: Vec<(u32, u32, bool)> = plan
        .iter()
        .map(|d| match d {
            Done::Filter {
                pref, class, source, ..
            } => (*pref, *class, source.is_some()),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        prefs_classes,
        [(101, 2, false), (102, 3, false)],
        "free priorities and classes"
    );
    add_filter(&tc, &plan[0]).unwrap();
    assert_eq!(
        ran(&tc),
        [
            "tc class add dev eth0 parent d700: classid d700:2 htb rate 10gbit",
            "tc qdisc add dev eth0 parent d700:2 handle d702: netem delay 200000us loss 5%",
            "tc filter add dev eth0 parent d700: protocol ip pref 101 u32 match ip dst 10.0.0.2/32 classid d700:2",
        ]
    );
    set_show(&tc, "qdisc show dev eth0 root", "qdisc fq_codel 8001: root refcnt 2\n");
    let e = plan_filters(&tc, own, &["10.0.0.2".parse().unwrap()], None).unwrap_err();
    assert!(e.contains("root qdisc of its own (fq_codel 8001:)"), "{e}");
}
