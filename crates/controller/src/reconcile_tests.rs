//! A controller scoped to one site (a site daemon's) over an in-memory provider: it observes and
//! corrects only its site, and serves a proxy route only while the route's service is active
//! there.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use resurgo_coord::{Assignment, CasOutcome};

use super::{Controller, ControllerConfig};
use crate::engine::Engine;
use crate::events::{EventKind, EventLog};
use crate::roles::group_of;
use crate::source::Source;
use crate::testing::Recording;

/// Sites a and b; `web` at a (standby b) and `api` at b, both corrected automatically;
/// `route` appended as is.
fn spec(route: &str) -> String {
    let service = |name: &str, site: &str, standby: &str, port: u16| {
        format!(
            "  {name}:\n    command: /bin/true\n    ports: [{port}]\n    sync: auto\n    site: {site}\n    standby: [{standby}]\n    health:\n      tcp: {{ port: {port} }}\n"
        )
    };
    format!(
        "apiVersion: resurgo.dev/v1alpha1\nsystem: unit\nsites:\n  a:\n    provider: local\n    address: 127.0.0.1\n    capacity: {{ cpu: 8, memory: 8Gi }}\n  b:\n    provider: local\n    address: 127.0.0.2\n    capacity: {{ cpu: 8, memory: 8Gi }}\nservices:\n{}{}{route}",
        service("web", "a", "b", 8080),
        service("api", "b", "a", 8081),
    )
}

/// A controller over `provider` and the spec in `dir/spec`, scoped to `site`.
fn controller(dir: &Path, provider: &Arc<Recording>, site: Option<&str>) -> Controller {
    let engine = Engine::with_providers(crate::testing::providers(dir, provider), dir);
    Controller::new(
        engine,
        ControllerConfig {
            site: site.map(str::to_string),
            source: Source::Folder(dir.join("spec")),
            overrides: Vec::new(),
            state_dir: dir.to_path_buf(),
            tick: Duration::from_millis(50),
            poll: Duration::from_secs(60),
            plan_options: Default::default(),
            echo: false,
        },
    )
}

fn write_spec(dir: &Path, text: &str) {
    std::fs::create_dir_all(dir.join("spec")).unwrap();
    std::fs::write(dir.join("spec/resurgo.yaml"), text).unwrap();
}

/// Ticks `controller` until `done` holds (corrections run on threads of their own).
fn tick_until(controller: &mut Controller, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        controller.tick();
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Site b was set up from this state folder and its folder is gone now: to an all-sites
/// controller it is unknown. A controller scoped to a never even asks b's provider: it does
/// not report b, touches nothing there, and corrects a.
#[test]
fn a_scoped_controller_observes_and_corrects_only_its_site() {
    let dir = tempfile::tempdir().unwrap();
    write_spec(dir.path(), &spec(""));
    std::fs::write(dir.path().join("sites-set-up.json"), r#"["a","b"]"#).unwrap();
    let provider = Arc::new(Recording::default());
    provider.site("a", true);

    let mut a = controller(dir.path(), &provider, Some("a"));
    assert!(
        tick_until(&mut a, || provider.running("a", "web")),
        "web started at a: {:?}",
        provider.log()
    );
    assert!(
        provider.observed().iter().all(|s| s == "a"),
        "{:?}",
        provider.observed()
    );
    assert!(
        provider.log().iter().all(|call| !call.contains(" b")),
        "nothing done at b: {:?}",
        provider.log()
    );
    let events = EventLog::of_state(dir.path()).read().unwrap();
    assert!(
        events
            .iter()
            .all(|e| e.kind != EventKind::SiteUnreachable && e.site.as_deref() == Some("a")),
        "every event is a's, none says a site is unreachable: {events:?}"
    );

    // The same state seen by the all-sites controller: b is unknown, never set up anew.
    let mut all = controller(dir.path(), &provider, None);
    all.tick();
    let events = EventLog::of_state(dir.path()).read().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == EventKind::SiteUnreachable && e.site.as_deref() == Some("b")),
        "{events:?}"
    );
    assert!(
        !provider.log().iter().any(|call| call == "set-up b"),
        "{:?}",
        provider.log()
    );
}

/// Two site daemons' controllers over one state (as `controller --agents` runs them): the
/// proxy of `front` is served by a's while web is active at a; once web's group is assigned
/// to b, a's stops listening and b's listens, leading to b.
#[test]
fn a_proxy_route_follows_its_service_across_site_controllers() {
    let dir = tempfile::tempdir().unwrap();
    let listen = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    write_spec(
        dir.path(),
        &spec(&format!(
            "routes:\n  front:\n    service: web\n    type: proxy\n    listen: {listen}\n"
        )),
    );
    let provider = Arc::new(Recording::default());
    provider.site("a", true);
    provider.site("b", true);
    let mut a = controller(dir.path(), &provider, Some("a"));
    let mut b = controller(dir.path(), &provider, Some("b"));
    a.tick();
    b.tick();
    let backend = |c: &Controller| c.proxies.get("front").map(|p| p.backend().to_string());
    assert_eq!(backend(&a).as_deref(), Some("127.0.0.1:8080"));
    assert_eq!(backend(&b), None, "web is not active at b");
    assert!(std::net::TcpStream::connect(listen).is_ok(), "a's proxy listens");

    // A failover assigns a's group to b: a lets the route go, b takes it up.
    let store = crate::roles::open_store(
        &crate::testing::system(&std::fs::read_to_string(dir.path().join("spec/resurgo.yaml")).unwrap()),
        dir.path(),
    )
    .unwrap();
    let moved = Assignment::first(&group_of("a"), "b", SystemTime::now());
    assert_eq!(
        store.compare_and_swap_assignment(&group_of("a"), None, &moved).unwrap(),
        CasOutcome::Swapped
    );
    a.tick();
    assert_eq!(backend(&a), None, "a no longer serves the route");
    b.tick();
    assert_eq!(backend(&b).as_deref(), Some("127.0.0.2:8080"));
    assert!(std::net::TcpStream::connect(listen).is_ok(), "b's proxy listens");
    let events = EventLog::of_state(dir.path()).read().unwrap();
    let said = |site: &str, what: &str| {
        events
            .iter()
            .any(|e| e.kind == EventKind::RouteSwitched && e.site.as_deref() == Some(site) && e.message.contains(what))
    };
    assert!(
        said("a", "no longer listens here: its service is active at b"),
        "{events:?}"
    );
    assert!(said("b", "leads to 127.0.0.2:8080"), "{events:?}");
}

/// Beside a site's agent that does not serve web's group (it holds no lease yet), the
/// controller reports web missing at a but does not start it: the lease decides who writes.
#[test]
fn beside_an_agent_the_controller_starts_no_active_instance_of_a_group_the_agent_does_not_serve() {
    let dir = tempfile::tempdir().unwrap();
    let text = spec("");
    write_spec(dir.path(), &text);
    let provider = Arc::new(Recording::default());
    provider.site("a", true);
    let source = resurgo_plan::SourceId {
        kind: "folder".into(),
        location: "unit".into(),
        commit: None,
        digest: "unit".into(),
    };
    let agent = crate::agent::Agent::new(
        crate::testing::system(&text),
        source,
        Engine::with_providers(crate::testing::providers(dir.path(), &provider), dir.path()),
        dir.path(),
        crate::agent::Role::Site("a".into()),
    )
    .unwrap();
    let mut a = controller(dir.path(), &provider, Some("a")).gated(agent.serving());
    for _ in 0..5 {
        a.tick();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!provider.running("a", "web"), "{:?}", provider.log());
    let events = EventLog::of_state(dir.path()).read().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == EventKind::DriftSeen && e.service.as_deref() == Some("web")),
        "{events:?}"
    );
}
