//! `resurgo demo`: the quickstart, end to end, on this machine with nothing but this binary.
//! Two sites on loopback, one HTTP service: validate, plan, apply, status; then the service's
//! process is killed and the controller notices and heals the drift.
//!
//! The demo is a script of the real commands over the embedded `examples/quickstart` spec.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use resurgo_controller::{Controller, ControllerConfig, EventKind, EventLog};
use resurgo_plan::{PlanOptions, ProcessState};
use resurgo_provider::Provider as _;

use crate::commands::{apply, backup, plan, repo, snapshots, status, validate, verify};
use crate::common::SpecArgs;
use crate::render::Paint;

const QUICKSTART: &str = include_str!("../../../../examples/quickstart/resurgo.yaml");

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder for the demo's spec and state (default: a new temporary folder).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Leave the services running at the end.
    #[arg(long)]
    pub keep: bool,
}

fn step(paint: &Paint, n: u32, title: &str) {
    println!("\n{}", paint.bold(&format!("── {n}. {title}")));
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let paint = Paint::stdout();
    let (dir, tmp) = match &args.dir {
        Some(d) => (d.clone(), None),
        None => {
            let tmp = tempfile::Builder::new().prefix("resurgo-demo-").tempdir()?;
            (tmp.path().to_path_buf(), Some(tmp))
        }
    };
    let spec_dir = dir.join("spec");
    std::fs::create_dir_all(&spec_dir).with_context(|| format!("cannot create {}", spec_dir.display()))?;
    std::fs::write(spec_dir.join("resurgo.yaml"), QUICKSTART)?;
    let exe = std::env::current_exe().context("cannot find the resurgo binary")?;
    let backups = dir.join("backups");
    write_password(&backups.join("password"))?;
    let spec = SpecArgs {
        spec: spec_dir.clone(),
        repo: None,
        repo_token_env: None,
        repo_token_file: None,
        reference: "HEAD".into(),
        path: None,
        set: vec![
            ("resurgo".into(), exe.display().to_string()),
            ("backups".into(), backups.display().to_string()),
        ],
        state: dir.join("state"),
        tls: None,
        token_file: None,
    };
    println!(
        "{}",
        paint.bold("resurgo quickstart: two sites on this machine (a = 127.0.1.1, b = 127.0.2.1)")
    );
    println!("spec and state in {}", dir.display());

    let outcome = script(&paint, &spec);
    if args.keep {
        // The running services live in the folder: keep it.
        if let Some(tmp) = tmp {
            let _ = tmp.keep();
        }
        println!("\nServices left running (--keep); state in {}.", dir.display());
    } else {
        teardown(&spec);
    }
    outcome?;
    Ok(crate::exit::code(crate::exit::OK))
}

fn script(paint: &Paint, spec: &SpecArgs) -> anyhow::Result<()> {
    step(paint, 1, "validate the spec");
    validate::run(validate::Args {
        spec: spec.clone(),
        json: false,
    })?;

    step(paint, 2, "plan: what would change");
    plan::run(plan::Args {
        spec: spec.clone(),
        flags: plan::PlanFlags {
            prune: false,
            max_deletes: 5,
        },
        out: None,
        json: false,
    })?;

    step(paint, 3, "apply: start services in dependency order, gated on health");
    let code = apply::run(apply::Args {
        plan: None,
        spec: spec.clone(),
        flags: plan::PlanFlags {
            prune: false,
            max_deletes: 5,
        },
        json: false,
    })?;
    if code != crate::exit::code(crate::exit::OK) {
        bail!("apply failed");
    }

    step(paint, 4, "status");
    status::run(status::Args {
        spec: spec.clone(),
        json: false,
    })?;
    let body = http_get("127.0.1.1:8080", "/").unwrap_or_else(|e| format!("(no answer: {e})"));
    println!("GET http://127.0.1.1:8080/ → {}", body.trim());

    step(
        paint,
        5,
        "protect the data: back up at site a, replicate to b, verify by restoring at b",
    );
    let ok = |code: ExitCode| {
        if code == crate::exit::code(crate::exit::OK) {
            Ok(())
        } else {
            Err(anyhow::anyhow!("step failed"))
        }
    };
    ok(repo::run(repo::Args {
        command: repo::RepoCommand::Init {
            spec: spec.clone(),
            site: None,
            json: false,
        },
    })?)?;
    ok(backup::run(backup::Args {
        dataset: None,
        spec: spec.clone(),
        replicate: true,
        json: false,
    })?)?;
    ok(snapshots::run(snapshots::Args {
        spec: spec.clone(),
        site: None,
        dataset: None,
        json: false,
    })?)?;
    ok(verify::run(verify::Args {
        dataset: "notes".into(),
        spec: spec.clone(),
        site: Some("b".into()),
        json: false,
    })?)?;

    step(paint, 6, "drift: kill the service's process; the controller heals it");
    let desired = spec.load().map_err(|e| anyhow::anyhow!("{e}"))?;
    let engine = spec.engine()?;
    let sites = engine.sites(&desired.loaded.system);
    let pid = running_pid(&engine, &sites, "web").context("web is not running after apply")?;
    let config = ControllerConfig {
        site: None,
        source: spec.source(),
        overrides: spec.set.clone(),
        state_dir: spec.state.clone(),
        tick: Duration::from_millis(200),
        poll: Duration::from_secs(60),
        plan_options: PlanOptions::default(),
        echo: false,
    };
    let (stop_tx, stop_rx) = std::sync::mpsc::channel();
    let controller = std::thread::spawn({
        let engine = engine.clone();
        move || Controller::new(engine, config).run(stop_rx)
    });
    let events = EventLog::of_state(&spec.state);
    let before = events.read()?.len();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let killed = Instant::now();
    println!("killed web (pid {pid}) with SIGKILL");
    let deadline = killed + Duration::from_secs(15);
    let mut seen = None;
    let mut healed = None;
    while Instant::now() < deadline && healed.is_none() {
        for e in events.read()?.into_iter().skip(before) {
            if e.service.as_deref() != Some("web") {
                continue;
            }
            if e.kind == EventKind::DriftSeen && seen.is_none() {
                seen = Some(killed.elapsed());
                println!("  {} drift seen: {}", paint.yellow("!"), e.message);
            }
            if e.kind == EventKind::DriftCorrected {
                healed = Some(killed.elapsed());
                println!(
                    "  {} drift corrected (commit {})",
                    paint.green("✓"),
                    e.commit.unwrap_or_default()
                );
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The controller also runs the route: clients reach the service through 127.0.0.1:8080.
    let through_route = (0..50).find_map(|_| {
        let answer = http_get("127.0.0.1:8080", "/").ok().filter(|b| b.contains("hello"));
        if answer.is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
        answer
    });
    match through_route {
        Some(body) => println!(
            "GET http://127.0.0.1:8080/ (route `web`, built-in proxy) → {}",
            body.trim()
        ),
        None => println!("route `web` on 127.0.0.1:8080 did not answer (is the port taken?)"),
    }
    match (seen, healed) {
        (Some(s), Some(h)) => println!(
            "drift noticed {:.2}s after the kill, service healthy again after {:.2}s",
            s.as_secs_f64(),
            h.as_secs_f64()
        ),
        _ => bail!(
            "the controller did not heal the killed service within 15s; see {}",
            events.path().display()
        ),
    }

    step(paint, 7, "lose site a; fail over to b; measure RTO and RPO");
    let outcome = lose_site_and_fail_over(paint, spec, &engine, &events);
    let _ = stop_tx.send(());
    let _ = controller.join();
    outcome?;

    step(paint, 9, "status after failing back");
    status::run(status::Args {
        spec: spec.clone(),
        json: false,
    })?;
    Ok(())
}

/// The newest canary write the service acknowledged, read through the route: (seq, time).
fn canary() -> Option<(i64, String)> {
    let body = http_get("127.0.0.1:8080", "/canary").ok()?;
    let v: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    Some((v["seq"].as_i64()?, v["at"].as_str()?.to_string()))
}

/// Waits (polling) until the route answers from `site`; returns when it did.
fn wait_route(site: &str, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if http_get("127.0.0.1:8080", "/").is_ok_and(|b| b.contains(&format!("at site {site}"))) {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The newest canary row written at `site` in a database file: (seq, time).
fn newest_row(db: &std::path::Path, site: &str) -> anyhow::Result<(i64, String)> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let row = conn.query_row(
        "SELECT seq, at FROM canary WHERE site = ?1 ORDER BY seq DESC LIMIT 1",
        [site],
        |r| Ok((r.get(0)?, r.get(1)?)),
    );
    row.with_context(|| format!("no canary row written at site {site} in {}", db.display()))
}

fn seconds_between(earlier: &str, later: &str) -> f64 {
    let p = |t: &str| resurgo_spec::units::parse_rfc3339(t).unwrap_or(0.0);
    (p(later) - p(earlier)).max(0.0)
}

fn lose_site_and_fail_over(
    paint: &Paint,
    spec: &SpecArgs,
    engine: &resurgo_controller::Engine,
    events: &EventLog,
) -> anyhow::Result<()> {
    let raw = resurgo_controller::desired::load(&spec.source(), &spec.state.join("git"), &spec.set)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // The last write the service acknowledged before the disaster.
    let acked = canary().context("the canary did not answer through the route")?;
    let before = events.read()?.len();
    // Site a is lost: its processes die and its state can no longer be read. The demo's sites
    // are `local`, so losing a means losing its folder.
    let site_a = resurgo_controller::providers::local_root(&spec.state, "a", &raw.loaded.system.sites["a"]);
    for s in engine
        .provider
        .observe(&engine.sites(&raw.loaded.system)[0])
        .unwrap_or_default()
    {
        if let ProcessState::Running { pid, .. } = s.process {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let lost = site_a.with_extension("lost");
    // Its folder is gone: a site that cannot be seen is unknown, never empty.
    std::fs::rename(&site_a, &lost)?;
    let fault = Instant::now();
    println!(
        "site a lost at t=0 (processes killed, its state unreachable); last acknowledged write #{}",
        acked.0
    );
    let detected = loop {
        if events
            .read()?
            .iter()
            .skip(before)
            .any(|e| e.kind == EventKind::SiteUnreachable && e.site.as_deref() == Some("a"))
        {
            break fault.elapsed();
        }
        if fault.elapsed() > Duration::from_secs(10) {
            bail!("the controller did not notice site a's loss within 10s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    println!("  detected: site a unreachable after {:.2}s", detected.as_secs_f64());
    let desired = spec.load().map_err(|e| anyhow::anyhow!("{e}"))?;
    let report = resurgo_controller::failover::execute(
        &raw.loaded.system,
        &desired.loaded.system,
        engine,
        &spec.state,
        "a",
        "b",
        Default::default(),
    )?;
    for st in &report.steps {
        println!(
            "  {} {} ({:.2}s)",
            paint.green("✓"),
            st.name,
            st.millis.unwrap_or(0) as f64 / 1000.0
        );
    }
    if !matches!(report.outcome, resurgo_runbook::run::RunOutcome::Succeeded) {
        bail!("the failover did not succeed: {}", report.outcome);
    }
    let healthy = wait_route("b", Duration::from_secs(30)).context("the route did not answer from site b")?;
    let rto = healthy.duration_since(fault);
    let protector = resurgo_controller::protect::Protector::new(&desired.loaded.system, engine, &spec.state);
    let db = protector.data_path("notes", "b").map_err(|e| anyhow::anyhow!("{e}"))?;
    // The newest row the restore brought back (read before the service at b writes more).
    // The newest write from site a that the restore brought back to b.
    let recovered = newest_row(&db, "a")?;
    let rpo = seconds_between(&recovered.1, &acked.1);
    println!(
        "{}",
        paint.bold(&format!(
            "RTO {:.2}s (detection {:.2}s, failover {:.2}s; objective 10s) · RPO {:.1}s, {} acknowledged writes lost (objective 5m, backups every 1m)",
            rto.as_secs_f64(),
            detected.as_secs_f64(),
            rto.saturating_sub(detected).as_secs_f64(),
            rpo,
            (acked.0 - recovered.0).max(0)
        ))
    );

    step(paint, 8, "site a comes back as standby; fail back with no data lost");
    std::fs::rename(&lost, &site_a)?;
    // A planned switch: stop writes at b, final backup and replication, then move.
    let desired = spec.load().map_err(|e| anyhow::anyhow!("{e}"))?;
    let protector = resurgo_controller::protect::Protector::new(&desired.loaded.system, engine, &spec.state);
    let at_b = resurgo_controller::failover::fence(engine, &desired.loaded.system, "b")?;
    let last_at_b = newest_row(&db, "b")?;
    protector.backup("notes").map_err(|e| anyhow::anyhow!("{e}"))?;
    protector
        .replicate(Some("notes"), "b", "a")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "  writes stopped at b ({} services), final backup replicated to a (last write #{})",
        at_b, last_at_b.0
    );
    let desired = spec.load().map_err(|e| anyhow::anyhow!("{e}"))?;
    let began = Instant::now();
    let report = resurgo_controller::failover::execute(
        &raw.loaded.system,
        &desired.loaded.system,
        engine,
        &spec.state,
        "b",
        "a",
        resurgo_controller::failover::RunOptions {
            failback: true,
            ..Default::default()
        },
    )?;
    if !matches!(report.outcome, resurgo_runbook::run::RunOutcome::Succeeded) {
        bail!("the failback did not succeed: {}", report.outcome);
    }
    wait_route("a", Duration::from_secs(30)).context("the route did not answer from site a")?;
    let back = resurgo_controller::protect::Protector::new(&raw.loaded.system, engine, &spec.state);
    let restored_a = newest_row(&back.data_path("notes", "a").map_err(|e| anyhow::anyhow!("{e}"))?, "b")?;
    println!(
        "{}",
        paint.bold(&format!(
            "failed back to a in {:.2}s; writes lost: {} (last write at b #{}, newest of b's writes at a #{})",
            began.elapsed().as_secs_f64(),
            (last_at_b.0 - restored_a.0).max(0),
            last_at_b.0,
            restored_a.0
        ))
    );
    Ok(())
}

fn running_pid(
    engine: &resurgo_controller::Engine,
    sites: &[resurgo_provider::SiteHandle],
    service: &str,
) -> Option<u32> {
    for site in sites {
        for s in engine.provider.observe(site).ok()? {
            if let (true, ProcessState::Running { pid, .. }) = (s.service == service, &s.process) {
                return Some(*pid);
            }
        }
    }
    None
}

/// Stops every service the demo started.
fn teardown(spec: &SpecArgs) {
    let Ok(desired) = spec.load() else { return };
    let Ok(engine) = spec.engine() else { return };
    for site in engine.sites(&desired.loaded.system) {
        for s in engine.provider.observe(&site).unwrap_or_default() {
            let _ = engine.provider.remove(&site, &s.service);
        }
    }
}

/// A minimal HTTP GET, enough to show what the service answers.
pub fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().map_err(std::io::Error::other)?, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

/// A fresh random repository password, readable by its owner only.
fn write_password(path: &std::path::Path) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        return Ok(());
    }
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(hex.as_bytes())?;
    Ok(())
}
