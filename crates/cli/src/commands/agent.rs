//! `resurgo agent --site S` (or `--witness`): the process that runs at each site and makes
//! roles real — renews the primary lease and fences the site's writers when it cannot,
//! answers heartbeats, watches the primary from a standby site and, when the policy says so,
//! fails over to it; the witness holds a second view of every site. See
//! `resurgo_controller::agent`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use resurgo_controller::agent::{Agent, Role};

use crate::common::SpecArgs;
use crate::exit;

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("who").required(true).args(["site", "witness"]))]
pub struct Args {
    /// The site this agent runs at: it acts on this site only.
    #[arg(long)]
    pub site: Option<String>,
    /// Run as the witness (at `failover.witness`): report which sites it still sees.
    #[arg(long)]
    pub witness: bool,
    /// Serve the site API on this address instead of the site's (`api` in the spec).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub spec: SpecArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // The spec as written: the agent reads the assignments from the store every interval.
    let loaded =
        match resurgo_controller::desired::load(&args.spec.source(), &args.spec.state.join("git"), &args.spec.set) {
            Ok(loaded) => loaded,
            Err(resurgo_controller::LoadError::Spec(e)) => {
                eprintln!("{e}");
                return Ok(exit::code(exit::ERROR));
            }
            Err(e) => anyhow::bail!("{e}"),
        };
    let role = match &args.site {
        Some(site) => Role::Site(site.clone()),
        None => Role::Witness,
    };
    let engine = args.spec.engine()?;
    // With `api`, the site's agent serves the site API for as long as it runs.
    let _api = match (&args.site, &loaded.loaded.system.api) {
        (Some(site), Some(_)) => Some(serve_api(&args, site, &loaded, &engine)?),
        _ => None,
    };
    let agent = Agent::new(loaded.loaded.system, loaded.source, engine, &args.spec.state, role)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            flag.store(true, Ordering::Relaxed);
        }
    });
    agent.run(&stop).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(exit::code(exit::OK))
}

/// Starts the site API of `site` at its address (or `--listen`), with this host's TLS files
/// and the deployment's token.
fn serve_api(
    args: &Args,
    site: &str,
    loaded: &resurgo_controller::Desired,
    engine: &resurgo_controller::Engine,
) -> anyhow::Result<resurgo_api::Server> {
    use anyhow::Context as _;
    let system = &loaded.loaded.system;
    let api = system.api.as_ref().context("the spec declares no `api`")?;
    let tls = resurgo_api::TlsFiles::new(args.spec.tls.clone().unwrap_or_else(|| api.tls.clone().into()));
    let token = match &api.token {
        Some(secret) => Some(
            resurgo_provider::read_secret(secret)
                .map_err(|e| anyhow::anyhow!("api.token: {e}; the agent needs the token it checks"))?,
        ),
        None => None,
    };
    let listen = match &args.listen {
        Some(addr) => *addr,
        None => {
            let addr = system
                .api_address(site)
                .with_context(|| format!("no site `{site}` in the spec"))?;
            std::net::ToSocketAddrs::to_socket_addrs(&addr)
                .with_context(|| format!("cannot resolve the API address {addr}"))?
                .next()
                .with_context(|| format!("the API address {addr} resolves to nothing"))?
        }
    };
    let spec = std::sync::Arc::new(std::sync::RwLock::new(loaded.clone()));
    let reload: resurgo_controller::api::Reload = {
        let (spec, source, cache, set) = (
            spec.clone(),
            args.spec.source(),
            args.spec.state.join("git"),
            args.spec.set.clone(),
        );
        std::sync::Arc::new(move || {
            let fresh = resurgo_controller::desired::load(&source, &cache, &set).map_err(|e| e.to_string())?;
            *spec.write().unwrap_or_else(|e| e.into_inner()) = fresh;
            Ok(())
        })
    };
    let handler = resurgo_controller::api::SiteApi {
        site: site.to_string(),
        state_dir: args.spec.state.clone(),
        engine: engine.clone(),
        spec,
        reload: Some(reload),
    };
    let config = resurgo_api::ServerConfig {
        tls: tls.server_config()?,
        token,
    };
    let server = resurgo_api::server::serve(listen, config, std::sync::Arc::new(handler))
        .with_context(|| format!("cannot serve the site API on {listen}"))?;
    tracing::info!(site, addr = %server.addr(), "serving the site API");
    Ok(server)
}
