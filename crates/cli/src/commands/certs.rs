//! `resurgo certs --out DIR`: the deployment CA and a certificate for each site's agent, the
//! witness and the operator, for the site API's mutual TLS. Each host gets its own folder
//! (`DIR/<name>/`: `ca.pem`, `cert.pem`, `key.pem`) to copy to where the spec's `api.tls`
//! points on that host. `DIR/ca-key.pem` signs new certificates: keep it off the hosts.

use std::path::PathBuf;
use std::process::ExitCode;

use resurgo_api::tls::{issue, Issued, Subject};

use crate::common::{load_or_report, SpecArgs};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the CA and the hosts' folders (reused: an existing CA signs, existing
    /// certificates are kept).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Make new certificates even for hosts that have one (the CA is kept).
    #[arg(long)]
    pub renew: bool,
    /// More client certificates to make besides `operator` (a CI job, a second operator).
    #[arg(long = "client", value_name = "NAME")]
    pub clients: Vec<String>,
    #[command(flatten)]
    pub spec: SpecArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(desired) = load_or_report(&args.spec, false)? else {
        return Ok(exit::code(exit::ERROR));
    };
    let system = &desired.loaded.system;
    let mut subjects = Vec::new();
    for (name, site) in &system.sites {
        // Valid at the site's address and at its own API host, when it names one.
        let mut alt_names = vec![site.address.to_string()];
        if let Some(api) = system.api_address(name) {
            let host = api.rsplit_once(':').map_or(api.as_str(), |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
            if !alt_names.contains(&host) {
                alt_names.push(host);
            }
        }
        subjects.push(Subject {
            name: name.clone(),
            alt_names,
        });
    }
    if let Some(witness) = system.failover.witness {
        subjects.push(Subject {
            name: "witness".into(),
            alt_names: vec![witness.ip().to_string()],
        });
    }
    for client in std::iter::once("operator".to_string()).chain(args.clients.iter().cloned()) {
        anyhow::ensure!(
            !system.sites.contains_key(&client) && client != "witness",
            "`{client}` is a site or the witness: name client certificates otherwise"
        );
        subjects.push(Subject {
            name: client,
            alt_names: vec![],
        });
    }
    for (name, issued) in issue(&args.out, &subjects, args.renew)? {
        let what = match issued {
            Issued::Made => "made",
            Issued::Kept => "kept (--renew to replace)",
        };
        println!("{name}: {what} — {}", args.out.join(&name).display());
    }
    println!(
        "copy each host's folder to its `api.tls` folder; keep {} off the hosts",
        args.out.join("ca-key.pem").display()
    );
    Ok(exit::code(exit::OK))
}
