//! What several commands share: where the spec is, where state lives, and loading the spec
//! with errors printed the way a person can act on.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use resurgo_controller::{desired, Desired, Engine, LoadError, Source};

/// Where the spec comes from and where state is kept.
#[derive(Debug, Clone, Args)]
pub struct SpecArgs {
    /// Spec file or folder of *.yaml files.
    #[arg(long, short = 's', env = "RESURGO_SPEC", default_value = ".", value_name = "PATH")]
    pub spec: PathBuf,
    /// Read the spec from this Git repository (URL or path) instead of --spec.
    #[arg(long, env = "RESURGO_REPO", value_name = "URL")]
    pub repo: Option<String>,
    /// Branch, tag or commit of --repo.
    #[arg(long = "ref", default_value = "HEAD", value_name = "REF", requires = "repo")]
    pub reference: String,
    /// A token for --repo (its password), read from this environment variable — so it is in
    /// no command line and no URL. A URL's own credentials (`https://user:token@host/…`,
    /// best given through RESURGO_REPO) work too, and are never shown or passed to `git` as an
    /// argument.
    #[arg(long, value_name = "VAR", requires = "repo", conflicts_with = "repo_token_file")]
    pub repo_token_env: Option<String>,
    /// A token for --repo, read from this file (without a trailing newline).
    #[arg(long, env = "RESURGO_REPO_TOKEN_FILE", value_name = "PATH", requires = "repo")]
    pub repo_token_file: Option<String>,
    /// Folder of the spec inside --repo.
    #[arg(long, value_name = "DIR", requires = "repo")]
    pub path: Option<String>,
    /// Override an input declared in the spec (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
    pub set: Vec<(String, String)>,
    /// State folder: site state, event log, Git cache, last-known-good spec.
    #[arg(long, env = "RESURGO_STATE", default_value = ".resurgo", value_name = "DIR")]
    pub state: PathBuf,
    /// With a spec that declares `api`: the folder of this host's TLS files (`ca.pem`, and
    /// `cert.pem` + `key.pem` for a client certificate), as `resurgo certs` writes them
    /// (default: the spec's `api.tls`).
    #[arg(long, env = "RESURGO_TLS", value_name = "DIR")]
    pub tls: Option<PathBuf>,
    /// With a spec that declares `api`: a file holding the bearer token for the agents
    /// (or set RESURGO_API_TOKEN; default: the spec's `api.token`).
    #[arg(long, env = "RESURGO_API_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected NAME=VALUE, got `{s}`"))
}

/// `--at TIME`: checked as the command line is read, so a malformed or impossible time
/// (`2026-02-31T00:00:00Z`) is a usage error (exit 64) naming the text, before anything runs.
pub fn parse_time(s: &str) -> Result<String, String> {
    resurgo_spec::units::parse_rfc3339(s).map(|_| s.to_string())
}

/// A duration flag that paces or bounds work (`--tick`, `--poll`, `--for`…): zero would spin
/// or end at once, so it is refused.
pub fn positive_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = resurgo_spec::Duration::parse(s)?.0;
    if d.is_zero() {
        return Err(format!("`{s}` is zero: give a duration greater than zero"));
    }
    Ok(d)
}

impl SpecArgs {
    pub fn source(&self) -> Source {
        match &self.repo {
            Some(repo) => Source::Git {
                token: self.repo_token(),
                repo: repo.clone(),
                reference: self.reference.clone(),
                subdir: self.path.clone(),
            },
            None => Source::Folder(self.spec.clone()),
        }
    }

    fn repo_token(&self) -> Option<resurgo_spec::SecretRef> {
        (self.repo_token_env.clone().map(resurgo_spec::SecretRef::Env))
            .or_else(|| self.repo_token_file.clone().map(resurgo_spec::SecretRef::File))
    }

    /// Loads and validates the spec. Spec errors are returned as [`Failed::Spec`] so the
    /// caller can print them whole.
    ///
    /// With `api` declared the sites are other hosts: who is primary is theirs to say (their
    /// agents report it), so the spec is returned as written, without reading a store here.
    pub fn load(&self) -> Result<Desired, LoadError> {
        let loaded = desired::load(&self.source(), &self.state.join("git"), &self.set)?;
        if loaded.loaded.system.api.is_some() {
            return Ok(loaded);
        }
        desired::with_assignments(loaded, &self.state)
    }

    pub fn engine(&self) -> anyhow::Result<Engine> {
        resurgo_controller::engine::secure_state(&self.state)
            .with_context(|| format!("cannot create state folder {}", self.state.display()))?;
        Ok(Engine::new(self.state.clone()))
    }

    /// The engine for applying `desired`: standby instances get their data seeded before
    /// they start (see [`resurgo_controller::protect::standby_preparer`]).
    pub fn engine_for(&self, desired: &Desired) -> anyhow::Result<Engine> {
        let engine = self.engine()?;
        let preparer = resurgo_controller::protect::standby_preparer(&engine, &desired.loaded.system);
        Ok(engine.with_preparer(preparer))
    }
}

/// Loads the spec, printing spec errors in full. `Ok(None)` means the spec was invalid and
/// its errors were printed.
pub fn load_or_report(args: &SpecArgs, json: bool) -> anyhow::Result<Option<Desired>> {
    match args.load() {
        Ok(d) => Ok(Some(d)),
        Err(LoadError::Spec(e)) => {
            if json {
                println!("{}", serde_json::json!({ "valid": false, "errors": e.diagnostics }));
            } else {
                eprintln!("{e}");
            }
            Ok(None)
        }
        Err(e @ LoadError::Assignments { .. }) => Err(e.into()),
        Err(LoadError::Source(e)) => {
            let hint = if e.is_transient() {
                "; check the URL and the network, or read a local copy with --spec"
            } else {
                ""
            };
            Err(anyhow::anyhow!("{e}{hint}"))
        }
    }
}

/// The sites whose repositories a command works on: `only`, or every site with one.
pub fn repository_sites(system: &resurgo_spec::System, only: Option<&str>) -> anyhow::Result<Vec<String>> {
    match only {
        Some(site) => {
            let spec = system
                .sites
                .get(site)
                .ok_or_else(|| anyhow::anyhow!("no site `{site}` in the spec"))?;
            anyhow::ensure!(spec.repository.is_some(), "site `{site}` declares no repository");
            Ok(vec![site.to_string()])
        }
        None => {
            let sites: Vec<String> = system
                .sites
                .iter()
                .filter(|(_, s)| s.repository.is_some())
                .map(|(n, _)| n.clone())
                .collect();
            anyhow::ensure!(!sites.is_empty(), "no site declares a repository");
            Ok(sites)
        }
    }
}

/// The datasets a command works on: `only`, or all.
pub fn datasets(system: &resurgo_spec::System, only: Option<&str>) -> anyhow::Result<Vec<String>> {
    match only {
        Some(d) if system.datasets.contains_key(d) => Ok(vec![d.to_string()]),
        Some(d) => {
            let known: Vec<&str> = system.datasets.keys().map(String::as_str).collect();
            anyhow::bail!("no dataset `{d}` in the spec; declared datasets: {}", known.join(", "))
        }
        None => Ok(system.datasets.keys().cloned().collect()),
    }
}

/// What the data-protection commands work with: the loaded spec, the engine for its sites,
/// and a [`Protector`](resurgo_controller::protect::Protector) over both.
pub struct Context {
    pub desired: Desired,
    pub engine: Engine,
    state: PathBuf,
}

impl Context {
    /// Loads the spec (printing its errors; `Ok(None)` when invalid) and builds the engine.
    pub fn load(spec: &SpecArgs, json: bool) -> anyhow::Result<Option<Context>> {
        let Some(desired) = load_or_report(spec, json)? else {
            return Ok(None);
        };
        let engine = spec.engine()?;
        Ok(Some(Context {
            desired,
            engine,
            state: spec.state.clone(),
        }))
    }

    pub fn system(&self) -> &resurgo_spec::System {
        &self.desired.loaded.system
    }

    pub fn protector(&self) -> resurgo_controller::protect::Protector<'_> {
        let system = self.system();
        resurgo_controller::protect::Protector::new(system, &self.engine, &self.state)
    }
}
