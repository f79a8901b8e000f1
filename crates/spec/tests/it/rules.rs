//! One test per rule. Snapshots hold the exact message a person sees.

use insta::assert_snapshot;
use resurgo_spec::{load, InputValue, NotifyEvent, PlainOrSecret, ReceiverKind, SecretRef};

use crate::{base_with, err, err_files, files, ok, BASE};

#[test]
fn base_spec_is_valid_and_inputs_are_resolved() {
    let l = ok(BASE);
    let s = &l.system;
    assert_eq!(s.sites["a"].region.as_deref(), Some("eu-west-1"));
    assert_eq!(s.services["web"].ports, [8080]);
    assert_eq!(
        s.services["web"].args,
        ["--port", "8080"],
        "a quoted reference stays a string"
    );
    assert_eq!(l.digest.len(), 64);
}

#[test]
fn set_overrides_an_input() {
    let l = load(files(&[("spec.yaml", BASE)]), &[("port".into(), "9090".into())]).unwrap();
    assert_eq!(l.system.services["web"].ports, [9090]);
    assert_eq!(l.system.inputs["port"], InputValue::Int(9090));
}

#[test]
fn set_of_an_undeclared_input() {
    let e = load(files(&[("spec.yaml", BASE)]), &[("prot".into(), "1".into())]).unwrap_err();
    assert_snapshot!(e.to_string());
}

#[test]
fn syntax_error() {
    assert_snapshot!(err(&base_with("    command: web\n", "    command: [web\n")));
}

#[test]
fn duplicate_key_in_one_file() {
    assert_snapshot!(err(&base_with("  web:\n", "  db:\n")));
}

#[test]
fn unknown_field() {
    assert_snapshot!(err(&base_with("    command: web\n", "    comand: web\n")));
}

#[test]
fn wrong_type() {
    assert_snapshot!(err(&base_with("ports: [5432]", "ports: [fivefour]")));
}

#[test]
fn missing_field() {
    assert_snapshot!(err(&base_with("    command: postgres\n", "")));
}

#[test]
fn unsupported_api_version() {
    assert_snapshot!(err(&base_with("resurgo.dev/v1alpha1", "resurgo.dev/v9")));
}

#[test]
fn unknown_input_reference() {
    assert_snapshot!(err(&base_with("${inputs.region_a}", "${inputs.region}")));
}

#[test]
fn duplicate_name_across_files() {
    let second = "apiVersion: resurgo.dev/v1alpha1\nservices:\n  web:\n    command: x\n    site: b\n";
    assert_snapshot!(err_files(&[("a.yaml", BASE), ("b.yaml", second)]));
}

#[test]
fn unknown_site_reference() {
    assert_snapshot!(err(&base_with(
        "    site: a\n    standby: [b]\n  web",
        "    site: c\n    standby: [b]\n  web"
    )));
}

#[test]
fn unknown_standby_site() {
    assert_snapshot!(err(&base_with(
        "    standby: [b]\n    sync",
        "    standby: [z]\n    sync"
    )));
}

#[test]
fn unknown_dependency() {
    assert_snapshot!(err(&base_with("depends_on: [db]", "depends_on: [dbx]")));
}

#[test]
fn dependency_cycle_is_named() {
    let text = base_with(
        "    command: postgres\n",
        "    command: postgres\n    depends_on: [web]\n",
    );
    assert_snapshot!(err(&text));
}

#[test]
fn longer_cycle_is_named_once() {
    let text = format!(
        "{BASE}  a1:\n    command: x\n    site: b\n    depends_on: [a2]\n  a2:\n    command: x\n    site: b\n    depends_on: [a3]\n  a3:\n    command: x\n    site: b\n    depends_on: [a1]\n"
    );
    let e = err(&text);
    assert_eq!(e.matches("dependency cycle").count(), 1, "{e}");
    assert_snapshot!(e);
}

#[test]
fn standby_lacks_required_capability() {
    let text = base_with(
        "    capacity: { cpu: 4, memory: 4Gi }\n    capabilities: [postgres]\nservices",
        "    capacity: { cpu: 4, memory: 4Gi }\n    capabilities: [ssd]\nservices",
    );
    assert_snapshot!(err(&text));
}

#[test]
fn active_site_lacks_required_capability() {
    let text = base_with(
        "    capabilities: [postgres]\n    repository",
        "    capabilities: []\n    repository",
    );
    assert_snapshot!(err(&text));
}

#[test]
fn standby_lacks_capacity() {
    let text = base_with(
        "    capacity: { cpu: 4, memory: 4Gi }\n    capabilities: [postgres]\nservices",
        "    capacity: { cpu: 500m, memory: 4Gi }\n    capabilities: [postgres]\nservices",
    );
    assert_snapshot!(err(&text));
}

#[test]
fn site_lacks_capacity_for_its_own_services() {
    assert_snapshot!(err(&base_with(
        "capacity: { cpu: 4, memory: 4Gi }",
        "capacity: { cpu: 4, memory: 512Mi }"
    )));
}

#[test]
fn two_services_on_one_address_and_port() {
    assert_snapshot!(err(&base_with("ports: [${inputs.port}]", "ports: [5432]")));
}

#[test]
fn collision_after_failover() {
    let text = format!("{BASE}  cache:\n    command: x\n    ports: [5432]\n    site: b\n");
    assert_snapshot!(err(&text));
}

#[test]
fn malformed_duration() {
    assert_snapshot!(err(&base_with("interval: 1s", "interval: 1sec")));
}

/// Regression: this panicked in `Duration::from_secs_f64` (issue 8, item 7).
#[test]
fn duration_too_large() {
    assert_snapshot!(err(&base_with("interval: 1s", "interval: 99999999999999999999h")));
}

#[test]
fn malformed_size() {
    assert_snapshot!(err(&base_with("memory: 1Gi }", "memory: 1GB }")));
}

#[test]
fn malformed_url() {
    assert_snapshot!(err(&base_with("file:///var/backups/a", "ftp://backups/a")));
}

#[test]
fn malformed_address() {
    assert_snapshot!(err(&base_with("address: 127.0.2.1", "address: 127.0.2")));
}

#[test]
fn sites_sharing_an_address() {
    assert_snapshot!(err(&base_with("address: 127.0.2.1", "address: 127.0.1.1")));
}

#[test]
fn health_check_needs_exactly_one_probe() {
    assert_snapshot!(err(&base_with(
        "      http: { port: 8080, path: /healthz }\n",
        "      http: { port: 8080, path: /healthz }\n      tcp: { port: 8080 }\n"
    )));
}

#[test]
fn standby_equal_to_active_site() {
    assert_snapshot!(err(&base_with(
        "    standby: [b]\n    sync",
        "    standby: [a]\n    sync"
    )));
}

#[test]
fn invalid_name() {
    assert_snapshot!(err(&base_with("  web:\n", "  Web Server:\n")));
}

#[test]
fn secret_reference_is_accepted_and_never_a_value() {
    let text = base_with("    sync: auto\n", "    sync: auto\n    env:\n      PLAIN: x\n      DB_PASSWORD: { secret: { env: SHOP_DB_PASSWORD } }\n      TOKEN: { secret: { file: /run/secrets/token } }\n");
    let l = ok(&text);
    assert_eq!(l.system.services["web"].env.len(), 3);
}

#[test]
fn malformed_secret_reference() {
    let text = base_with(
        "    sync: auto\n",
        "    sync: auto\n    env:\n      DB_PASSWORD: { secret: { vault: x } }\n",
    );
    assert_snapshot!(err(&text));
}

#[test]
fn dataset_rules() {
    let text = format!(
        "{BASE}datasets:\n  orders:\n    service: dbx\n    type: postgres\n    connection: host=x\n  files:\n    service: web\n    type: directory\n    path: data\n    schedule: 1h\n    rpo: 5m\n    replicate_to: [q]\n"
    );
    assert_snapshot!(err(&text));
}

#[test]
fn route_rules() {
    let text = format!(
        "{BASE}routes:\n  web:\n    service: web\n    type: proxy\n    port: 9999\n  db:\n    service: db\n    type: proxy\n    listen: 127.0.1.1:5432\n"
    );
    assert_snapshot!(err(&text));
}

/// A valid dns route's `dns` block, for the rules that break one part of a route.
const DNS: &str = "    dns:\n      server: 127.0.0.1:53\n      zone: example.com\n      name: www.example.com\n      key: { name: resurgo., secret: { env: TSIG_SECRET } }\n";

#[test]
fn dns_route_without_dns() {
    let text = format!("{BASE}routes:\n  www:\n    service: web\n    type: dns\n");
    assert_snapshot!(err(&text));
}

#[test]
fn listen_on_a_dns_route() {
    let text = format!("{BASE}routes:\n  www:\n    service: web\n    type: dns\n    listen: 127.0.0.1:8443\n{DNS}");
    assert_snapshot!(err(&text));
}

#[test]
fn dns_record_outside_its_zone() {
    let text = format!("{BASE}routes:\n  www:\n    service: web\n    type: dns\n{DNS}")
        .replace("name: www.example.com", "name: www.example.org");
    assert_snapshot!(err(&text));
}

#[test]
fn hook_route_without_hook() {
    let text = format!("{BASE}routes:\n  lb:\n    service: web\n    type: hook\n");
    assert_snapshot!(err(&text));
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = base_with("depends_on: [db]", "depends_on: [nope]").replacen(
        "    standby: [b]\n    sync",
        "    standby: [zz]\n    sync",
        1,
    );
    let e = err(&text);
    assert!(e.contains("`nope`") && e.contains("`zz`"), "{e}");
    assert!(e.ends_with("the spec has 2 errors; nothing was changed"), "{e}");
}

#[test]
fn a_folder_of_files_merges() {
    let sites = "apiVersion: resurgo.dev/v1alpha1\nsites:\n  a:\n    provider: local\n    address: 127.0.1.1\n    capacity: { cpu: 1, memory: 1Gi }\n";
    let services = "apiVersion: resurgo.dev/v1alpha1\nsystem: split\nservices:\n  s:\n    command: x\n    site: a\n";
    let l = load(files(&[("sites.yaml", sites), ("services/s.yaml", services)]), &[]).unwrap();
    assert_eq!(l.system.name, "split");
    assert_eq!(l.system.services["s"].site, "a");
}

#[test]
fn dataset_protection_rules() {
    let text = format!(
        "{BASE}datasets:\n  orders:\n    service: db\n    type: postgres\n    connection: host=x\n    replicate_to: [b]\n    check: {{ query: select 1, command: [\"true\"] }}\n  files:\n    service: web\n    type: directory\n    path: data\n    method: logical\n"
    );
    assert_snapshot!(err(&text));
}

#[test]
fn standby_dataset_without_a_standby_site() {
    let text = format!(
        "{}datasets:\n  orders:\n    service: db\n    type: postgres\n    connection: host=127.0.1.1\n    strategy: standby\n",
        base_with("    site: a\n    standby: [b]\n  web", "    site: a\n  web")
    );
    assert_snapshot!(err(&text));
}

#[test]
fn failover_timing_that_could_leave_two_primaries() {
    // Fenced only after 1 s + 9 s = 10 s, but the lease expires after 5 s and another site
    // may be promoted after 3 × 1 s + 1 s = 4 s; and automatic failover without a witness.
    let text = format!(
        "{BASE}failover:\n  automatic: true\n  heartbeat_interval: 1s\n  lease_ttl: 5s\n  fencing_deadline: 9s\n  promotion_delay: 1s\n  coordination: {{ etcd: {{ endpoints: [\"10.0.0.1:2379\"] }} }}\n"
    );
    assert_snapshot!(err(&text));
}

#[test]
fn etcd_over_https_with_a_client_certificate_and_a_user() {
    let l = ok(&format!(
        "{BASE}failover:\n  coordination:\n    etcd:\n      endpoints: [https://10.0.0.1:2379, https://10.0.0.2:2379]\n      \
         tls: {{ ca: /etc/resurgo/etcd-ca.pem, cert: /etc/resurgo/etcd.pem, key: /etc/resurgo/etcd.key }}\n      \
         auth: {{ user: resurgo, password: {{ env: ETCD_PASSWORD }} }}\n"
    ));
    let etcd = l.system.failover.etcd().unwrap();
    assert_eq!(etcd.endpoints.len(), 2);
    assert_eq!(etcd.tls.as_ref().unwrap().key.as_deref(), Some("/etc/resurgo/etcd.key"));
    let auth = etcd.auth.as_ref().unwrap();
    assert_eq!(auth.password, resurgo_spec::SecretRef::Env("ETCD_PASSWORD".into()));
    // https alone: the system's roots, no client certificate, no user.
    let l = ok(&format!(
        "{BASE}failover:\n  coordination: {{ etcd: {{ endpoints: [https://etcd.example.com:2379] }} }}\n"
    ));
    assert_eq!(l.system.failover.etcd().unwrap().tls, None);
}

#[test]
fn etcd_rules() {
    // Schemes mixed (the first decides: http), TLS and a user over http, a certificate without
    // its key, a user without a name and a password that names nothing.
    let text = format!(
        "{BASE}failover:\n  coordination:\n    etcd:\n      endpoints: [http://10.0.0.1:2379, https://10.0.0.2:2379, 10.0.0.3:2379]\n      \
         tls: {{ cert: /etc/resurgo/etcd.pem }}\n      auth: {{ user: \"\", password: {{ file: \"\" }} }}\n"
    );
    assert_snapshot!(err(&text));
    let text = format!("{BASE}failover:\n  coordination: {{ etcd: {{ endpoints: [] }} }}\n");
    assert_snapshot!("etcd_without_endpoints", err(&text));
}

#[test]
fn failover_defaults_are_safe() {
    let l = ok(&format!("{BASE}failover:\n  automatic: false\n"));
    assert!(resurgo_spec::timing::validate_timing(&l.system.failover.timing()).is_empty());
    assert!(!l.system.failover.automatic);
}

/// Regression: `system:` with no name was read as an absent one (issue 8, item 7).
#[test]
fn empty_system_name() {
    assert_snapshot!(err(&base_with("system: shop\n", "system:\n")));
    assert!(err(&base_with("system: shop\n", "system: \"\"\n")).contains("`system` is empty"));
    assert_eq!(
        ok(&base_with("system: shop\n", "")).system.name,
        "system",
        "left out: the default"
    );
}

#[test]
fn invalid_system_name() {
    assert_snapshot!(err(&base_with("system: shop\n", "system: My Shop\n")));
}

/// Regression: `schedule: 0s` was accepted and backed up without pause (issue 8, item 7).
#[test]
fn zero_intervals() {
    let text = format!(
        "{}datasets:\n  files:\n    service: web\n    type: directory\n    path: data\n    schedule: 0s\n    verify_every: 0ms\nroutes:\n  www:\n    service: web\n    type: hook\n    hook: {{ command: switch, timeout: 0s }}\n",
        base_with("      interval: 1s\n", "      interval: 0s\n")
    );
    assert_snapshot!(err(&text));
}

#[test]
fn sites_on_their_own_hosts_keep_repositories_on_s3() {
    // With `api`, each site is its own host: a's folder repository is refused, with why;
    // a site's own API address must be host:port.
    let text = BASE.replace("    capabilities: [postgres]\n  db:", "").replace(
        "  b:\n    provider: local\n    address: 127.0.2.1\n",
        "  b:\n    provider: local\n    address: 127.0.2.1\n    api: b.example.net\n",
    );
    let text = format!("{text}api:\n  tls: /etc/resurgo/tls\n  token: {{ env: RESURGO_API_TOKEN }}\n");
    assert_snapshot!(err(&text));
}

#[test]
fn the_site_api_address_defaults_to_the_site_address_and_port() {
    let text = BASE.replace(
        "repository: { url: file:///var/backups/a,",
        "repository: { url: \"s3://backups/a?endpoint=http://10.0.9.1:9000\",",
    );
    let l = ok(&format!("{text}api:\n  tls: /etc/resurgo/tls\n  port: 9443\n"));
    assert_eq!(l.system.api_address("a").as_deref(), Some("127.0.1.1:9443"));
    let l = ok(&text);
    assert_eq!(
        l.system.api_address("a"),
        None,
        "without `api` the sites are reached through their files"
    );
}

#[test]
fn a_user_must_be_a_name() {
    assert_snapshot!(err(&base_with(
        "    command: web\n",
        "    command: web\n    user: \"1000\"\n"
    )));
}

#[test]
fn as_root_every_service_without_a_user_is_warned_about_and_only_as_root() {
    let loaded = ok(&base_with(
        "    command: postgres\n",
        "    command: postgres\n    user: postgres\n",
    ));
    assert_eq!(loaded.system.services["db"].user.as_deref(), Some("postgres"));
    let warnings = resurgo_spec::warnings(&loaded.system, true);
    let named: Vec<&str> = warnings.iter().map(|w| w.service.as_str()).collect();
    assert_eq!(named, ["web"]);
    assert!(
        warnings[0].to_string().contains("service `web` names no `user:`"),
        "{}",
        warnings[0]
    );
    assert!(resurgo_spec::warnings(&loaded.system, false).is_empty());
}

/// BASE with one drill appended.
fn with_drill(drill: &str) -> String {
    format!("{BASE}objectives: {{ rto: 1m, rpo: 5m }}\ndrills:\n{drill}")
}

#[test]
fn drills_of_each_scope_load_with_their_defaults() {
    let l = ok(&with_drill(
        "  lose-web:\n    scope: { service: web }\n    faults: [kill: web]\n  lose-a:\n    scope: { site: a }\n    faults: [stop_site: a]\n    mode: live\n    stop: [unavailable_for: 2m, writes_lost_over: 100, event: apply_failed]\n    cadence: 30d\n    owners: [sre]\n  slow-link:\n    scope: { link: [a, b] }\n    faults: [{ degrade_link: { between: [b, a], latency: 200ms, loss: 5 } }]\n    mode: live\n    stop: [unavailable_for: 1m]\n",
    ));
    let d = &l.system.drills;
    assert_eq!(
        d["lose-web"].mode,
        resurgo_spec::DrillMode::Isolated,
        "isolated by default"
    );
    assert_eq!(d["lose-web"].deadline(), std::time::Duration::from_secs(600));
    assert!(d["lose-a"].failback, "a live drill fails back by default");
    assert_eq!(d["lose-a"].scope.services(&l.system), ["db", "web"]);
    assert_eq!(d["slow-link"].scope.kind(), "link");
    assert_eq!(d["slow-link"].faults[0].target(), "b-a");
}

#[test]
fn a_drill_scope_is_exactly_one_thing() {
    assert_snapshot!(err(&with_drill(
        "  x:\n    scope: { service: web, site: a }\n    faults: [kill: web]\n"
    )));
}

#[test]
fn a_drill_fault_outside_its_scope() {
    assert_snapshot!(err(&with_drill(
        "  x:\n    scope: { service: web }\n    faults: [kill: web, kill: db]\n"
    )));
}

#[test]
fn a_live_drill_without_stop_conditions() {
    assert_snapshot!(err(&with_drill(
        "  x:\n    scope: { site: a }\n    faults: [stop_site: a]\n    mode: live\n"
    )));
}

#[test]
fn an_isolated_drill_needs_a_standby_site_and_a_link_drill_is_live() {
    let no_standby = BASE.replace("    site: a\n    standby: [b]\n  web", "    site: a\n  web");
    assert_snapshot!(err(&format!(
        "{no_standby}drills:\n  x:\n    scope: {{ service: db }}\n    faults: [kill: db]\n  y:\n    scope: {{ link: [a, b] }}\n    faults: [cut_link: [a, b]]\n"
    )));
}

#[test]
fn a_drill_names_what_exists() {
    assert_snapshot!(err(&with_drill(
        "  x:\n    scope: { link: [a, c] }\n    faults: [{ degrade_link: { between: [a, b], loss: 150 } }]\n    mode: live\n    stop: [event: Bad-Kind]\n    probes: { routes: [www], canaries: [orders] }\n    deadline: 0s\n"
    )));
}

#[test]
fn a_drill_needs_objectives_to_be_judged_against() {
    assert_snapshot!(err(&format!(
        "{BASE}drills:\n  x:\n    scope: {{ service: web }}\n    faults: [kill: web]\n    objectives: {{ rto: 30s }}\n"
    )));
}

#[test]
fn only_an_isolated_drill_with_a_cadence_runs_on_a_schedule() {
    assert_snapshot!(err(&with_drill(
        "  x:\n    scope: { service: web }\n    faults: [kill: web]\n    scheduled: true\n"
    )));
}

/// BASE with `workspaces:` appended.
fn with_workspaces(workspaces: &str) -> String {
    format!("{BASE}workspaces:\n{workspaces}")
}

#[test]
fn a_workspace_loads_with_its_defaults() {
    use resurgo_spec::{CloneMethod, OnPreempt, Resources, Seed};
    let l = ok(&with_workspaces("  qa:\n    site: b\n    services: [web, db]\n"));
    let w = &l.system.workspaces["qa"];
    assert_eq!(w.site, "b");
    assert_eq!(w.services, ["web", "db"]);
    assert_eq!(w.seed, Seed::Latest);
    assert_eq!(w.ttl, None);
    assert_eq!(w.ttl(), std::time::Duration::from_secs(24 * 3600));
    assert_eq!(w.priority, 0);
    assert_eq!(w.resources, Resources::default());
    assert_eq!(w.on_preempt, OnPreempt::Stop);
    assert_eq!(w.reseed_after, None);
    assert_eq!(w.clone, CloneMethod::Auto);
    assert!(w.masking.is_empty() && w.owners.is_empty());
}

#[test]
fn a_workspace_with_every_field() {
    use resurgo_spec::{CloneMethod, OnPreempt, Seed};
    let l = ok(&with_workspaces(
        "  qa:\n    site: b\n    services: [web, db]\n    seed: 2026-11-21T10:15:00Z\n    ttl: 8h\n    priority: -3\n    resources: { cpu: 2, memory: 2Gi }\n    on_preempt: destroy\n    reseed_after: 7d\n    clone: reflink\n    masking: [\"psql -c 'update users set email = md5(email)'\"]\n    owners: [qa-team]\n  perf:\n    site: b\n    services: [db]\n    seed: latest\n    clone: overlay\n",
    ));
    let w = &l.system.workspaces["qa"];
    assert_eq!(w.seed, Seed::At("2026-11-21T10:15:00Z".into()));
    assert_eq!(w.ttl(), std::time::Duration::from_secs(8 * 3600));
    assert_eq!(w.priority, -3);
    assert_eq!(w.resources.cpu.0, 2000);
    assert_eq!(w.on_preempt, OnPreempt::Destroy);
    assert_eq!(w.reseed_after.map(|d| d.0.as_secs()), Some(7 * 86_400));
    assert_eq!(w.clone, CloneMethod::Reflink);
    assert_eq!(w.masking, ["psql -c 'update users set email = md5(email)'"]);
    assert_eq!(w.owners, ["qa-team"]);
    assert_eq!(l.system.workspaces["perf"].seed, Seed::Latest);
    assert_eq!(l.system.workspaces["perf"].clone, CloneMethod::Overlay);
    // The seed is written back as it was read.
    let json = serde_json::to_value(w).unwrap();
    assert_eq!(json["seed"], "2026-11-21T10:15:00Z");
    assert_eq!(
        serde_json::to_value(&l.system.workspaces["perf"]).unwrap()["seed"],
        "latest"
    );
}

#[test]
fn a_workspace_names_what_exists() {
    assert_snapshot!(err(&with_workspaces(
        "  QA:\n    site: z\n    services: [web, nope, web]\n  empty:\n    site: b\n    services: []\n"
    )));
}

#[test]
fn a_workspace_field_is_known() {
    assert_snapshot!(err(&with_workspaces(
        "  qa:\n    site: b\n    services: [web]\n    clone: zfs\n"
    )));
}

#[test]
fn a_workspace_defined_twice_across_files() {
    let second = "apiVersion: resurgo.dev/v1alpha1\nworkspaces:\n  qa:\n    site: b\n    services: [db]\n";
    assert_snapshot!(err_files(&[
        ("a.yaml", &with_workspaces("  qa:\n    site: b\n    services: [web]\n")),
        ("b.yaml", second),
    ]));
}

#[test]
fn a_workspace_is_not_at_a_site_where_its_services_are_active() {
    assert_snapshot!(err(&with_workspaces(
        "  qa:\n    site: a\n    services: [web, db]\n  one:\n    site: a\n    services: [db]\n"
    )));
}

#[test]
fn a_workspace_cannot_clone_a_logical_postgres_dataset() {
    let text = format!(
        "{BASE}datasets:\n  orders:\n    service: db\n    type: postgres\n    connection: host=127.0.1.1 port=5432 user=app dbname=orders\n    method: logical\nworkspaces:\n  qa:\n    site: b\n    services: [web, db]\n"
    );
    assert_snapshot!(err(&text));
}

#[test]
fn a_workspace_seed_lifetimes_and_masking() {
    assert_snapshot!(err(&with_workspaces(
        "  qa:\n    site: b\n    services: [web]\n    seed: yesterday\n    ttl: 0s\n    reseed_after: 0s\n    masking: [\"./mask.sh\", \"  \"]\n  later:\n    site: b\n    services: [db]\n    seed: 2026-02-31T00:00:00Z\n"
    )));
}

#[test]
fn workspaces_must_fit_their_site() {
    assert_snapshot!(err(&with_workspaces(
        "  qa:\n    site: b\n    services: [web]\n    resources: { cpu: 2, memory: 2Gi }\n  perf:\n    site: b\n    services: [db]\n    resources: { cpu: 3, memory: 1Gi }\n"
    )));
}

#[test]
fn workspaces_run_beside_their_site_own_services() {
    let text = base_with(
        "    sync: auto\n",
        "    sync: auto\n  cache:\n    command: cache\n    resources: { cpu: 1, memory: 3Gi }\n    site: b\n",
    );
    assert_snapshot!(err(&format!(
        "{text}workspaces:\n  qa:\n    site: b\n    services: [web]\n    resources: {{ cpu: 1, memory: 2Gi }}\n"
    )));
}

/// The quickstart declares the workspace its demo makes.
#[test]
fn the_quickstart_declares_its_workspace() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart/resurgo.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let l = ok(&text);
    assert_eq!(l.system.workspaces["qa"].services, ["web"]);
    assert_eq!(l.system.workspaces["qa"].site, "b");
}

/// A workspace made on demand (`resurgo workspace create NAME --site … --services …`) keeps
/// the rules a declared one does, each problem a sentence (there is no file to point into).
#[test]
fn a_workspace_on_demand_keeps_the_rules_of_a_declared_one() {
    let l = ok(BASE);
    let policy = |v: serde_json::Value| -> resurgo_spec::Workspace { serde_json::from_value(v).unwrap() };
    let fine = policy(serde_json::json!({"site": "b", "services": ["web", "db"]}));
    assert_eq!(
        resurgo_spec::check_workspace(&l.system, "qa", &fine),
        Vec::<String>::new()
    );
    let at_a = policy(serde_json::json!({"site": "a", "services": ["web"], "ttl": "0s"}));
    let problems = resurgo_spec::check_workspace(&l.system, "Bad Name", &at_a);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems[0].starts_with("invalid workspace name `Bad Name`"),
        "{problems:?}"
    );
    assert!(problems[1].contains("where service `web` is active"), "{problems:?}");
    assert!(problems[2].contains("ttl must be greater than zero"), "{problems:?}");
}

/// BASE with `notifications:` appended.
fn with_notifications(receivers: &str) -> String {
    format!("{BASE}notifications:\n{receivers}")
}

#[test]
fn receivers_of_each_kind_load_with_their_defaults() {
    let l = ok(&with_notifications(
        "  oncall:\n    kind: webhook\n    url: https://hooks.example.com/resurgo\n    hmac_key: { env: HOOK_KEY }\n    events: [failover_started, rpo_breached]\n  am:\n    kind: alertmanager\n    url: { secret: { file: /run/secrets/am-url } }\n    give_up_after: 10m\n    dedupe_window: 0s\n  chat:\n    kind: slack\n    url: { secret: { env: SLACK_URL } }\n",
    ));
    let n = &l.system.notifications;
    assert_eq!(n["oncall"].kind, ReceiverKind::Webhook);
    assert_eq!(
        n["oncall"].events(),
        [NotifyEvent::FailoverStarted, NotifyEvent::RpoBreached]
    );
    assert_eq!(n["oncall"].give_up_after(), std::time::Duration::from_secs(3600));
    assert_eq!(n["oncall"].dedupe_window(), std::time::Duration::from_secs(60));
    assert_eq!(n["am"].give_up_after(), std::time::Duration::from_secs(600));
    assert_eq!(n["am"].dedupe_window(), std::time::Duration::ZERO);
    assert_eq!(n["chat"].events(), NotifyEvent::ALL, "every kind when none is listed");
    assert_eq!(
        n["chat"].url,
        PlainOrSecret::Secret {
            secret: SecretRef::Env("SLACK_URL".into())
        }
    );
}

#[test]
fn a_receiver_is_sent_what_it_can_be_sent() {
    assert_snapshot!(err(&with_notifications(
        "  Oncall:\n    kind: webhook\n    url: ftp://example.com\n  chat:\n    kind: slack\n    url: https://hooks.slack.com/services/T0/B0/secret\n    hmac_key: { env: KEY }\n  am:\n    kind: alertmanager\n    url: http://127.0.0.1:9093\n    events: []\n    give_up_after: 0s\n  twice:\n    kind: alertmanager\n    url: http://127.0.0.1:9093\n    events: [fenced, fenced]\n"
    )));
}

#[test]
fn a_receiver_event_kind_is_known() {
    assert_snapshot!(err(&with_notifications(
        "  am:\n    kind: alertmanager\n    url: http://127.0.0.1:9093\n    events: [failover_started, drift_seen]\n"
    )));
}
