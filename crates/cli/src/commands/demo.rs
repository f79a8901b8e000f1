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

    step(
        paint,
        6,
        "lend b's spare capacity: a QA workspace of web on b's newest restore point",
    );
    lend_a_workspace(paint, spec)?;

    step(paint, 7, "drift: kill the service's process; the controller heals it");
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

    let _ = stop_tx.send(());
    let _ = controller.join();

    step(
        paint,
        8,
        "a live drill: site a is lost; the agents detect it and fail over to b by themselves",
    );
    drill_site_loss(paint, spec)?;

    step(paint, 9, "status after the drill: no drift, no orphan");
    status::run(status::Args {
        spec: spec.clone(),
        json: false,
    })?;
    Ok(())
}

/// Makes the quickstart's workspace `qa` at b: web on a clone of b's golden copy of `notes`,
/// in a network namespace of its own. The drill's failover takes it back first (its
/// `preempt` phase); b's agent restarts it after failback. Network namespaces need root:
/// without it the step says so and the demo goes on without a workspace.
fn lend_a_workspace(paint: &Paint, spec: &SpecArgs) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        println!(
            "{} not root: a workspace runs in a network namespace of its own, which needs root; the demo goes on without one",
            paint.yellow("!")
        );
        return Ok(());
    }
    let desired = spec.load().map_err(|e| anyhow::anyhow!("{e}"))?;
    let system = &desired.loaded.system;
    let policy = system
        .workspaces
        .get("qa")
        .context("the quickstart declares no workspace `qa`")?;
    let engine = spec.engine().map_err(|e| anyhow::anyhow!("{e}"))?;
    let record = resurgo_controller::workspace::create(&engine, system, &spec.state, "qa", policy)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for c in &record.clones {
        println!(
            "workspace qa: {} (snapshot {}) cloned by {} in {:.3}s",
            c.dataset, c.snapshot, c.method, c.took_s
        );
    }
    println!(
        "workspace qa serves in its own namespace after {:.2}s: ip netns exec {} curl http://{}:8080/",
        record.ready_s.unwrap_or_default(),
        record.netns,
        system
            .sites
            .get("b")
            .map_or("127.0.2.1".into(), |s| s.address.to_string())
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

/// Step 7: the agents of both sites and the witness run in the background (`resurgo controller
/// --agents`, what each site's host runs as `resurgo agent`), and the quickstart's drill
/// `lose-site-a` runs live: site a is lost, b's agent declares it dead and fails over with no
/// command, the drill measures RTO and RPO, fails back and checks that nothing is left. Its
/// report is written beside the spec as HTML.
fn drill_site_loss(paint: &Paint, spec: &SpecArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the resurgo binary")?;
    let dir = spec.state.parent().unwrap_or(&spec.state).to_path_buf();
    let log = std::fs::File::create(dir.join("agents.log")).context("cannot create agents.log")?;
    let mut agents = std::process::Command::new(exe);
    agents
        .args(["controller", "--agents", "--tick", "200ms", "--poll", "60s", "--spec"])
        .arg(&spec.spec)
        .arg("--state")
        .arg(&spec.state);
    for (name, value) in &spec.set {
        agents.arg("--set").arg(format!("{name}={value}"));
    }
    let mut agents = agents
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start the agents")?;
    let events = EventLog::of_state(&spec.state);
    let before = events.read()?.len();
    let serving = (0..300).any(|_| {
        let up = events
            .read()
            .unwrap_or_default()
            .iter()
            .skip(before)
            .any(|e| e.kind == EventKind::Unfenced && e.site.as_deref() == Some("a"));
        if !up {
            std::thread::sleep(Duration::from_millis(100));
        }
        up
    });
    let outcome = if serving {
        println!("agents running: a holds the primary lease; b and the witness watch it");
        crate::commands::drill::execute(spec, |ctx| {
            resurgo_controller::drill::run(ctx, "lose-site-a", resurgo_spec::DrillMode::Live)
        })
    } else {
        Err(anyhow::anyhow!(
            "the agents did not start within 30s; see {}",
            dir.join("agents.log").display()
        ))
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agents.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let _ = agents.wait();
    let report = match outcome? {
        Ok(report) => report,
        Err(why) => bail!("the drill was refused: {why}"),
    };
    for e in &report.timeline {
        println!("  {:>7.2}s  {:<18} {}", e.at_s, e.kind, e.message);
    }
    crate::commands::drill::print_summary(&report, &spec.state);
    let html = dir.join("drill-report.html");
    std::fs::write(&html, resurgo_drill::html(&report)).with_context(|| format!("cannot write {}", html.display()))?;
    println!("{}", paint.bold(&format!("drill report: {}", html.display())));
    if report.verdict != resurgo_drill::Verdict::Pass {
        bail!("the drill did not pass: {}", report.findings.join("; "));
    }
    Ok(())
}

/// Stops every service the demo started.
fn teardown(spec: &SpecArgs) {
    for w in resurgo_controller::workspace::list(&spec.state) {
        let _ = resurgo_controller::workspace::destroy(&spec.state, &w.name);
    }
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
