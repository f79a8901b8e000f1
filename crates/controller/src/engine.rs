//! The engine: turns a spec into site handles, observes every site in parallel (a site that
//! does not answer in time is `unknown` and holds up no other), and executes plans — starting
//! services in dependency order, independent ones in parallel, each gated on its health check
//! (a standby instance after its active one), each prepared first by an optional hook.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use resurgo_plan::{Action, Change, ObservedSite, Plan, Role, RunConfig, SiteState};
use resurgo_provider::{Provider, ProviderError, SiteHandle};
use resurgo_spec::System;

use crate::providers::Providers;

/// How long one site may take to be observed before it is reported `unknown`.
pub const OBSERVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Default wait for a started service to become healthy.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Makes a site ready for a service before it starts (seeds a standby's data directory).
/// Called before every start, so it must do nothing when there is nothing to do.
pub type Preparer = Arc<dyn Fn(&SiteHandle, &RunConfig) -> Result<(), String> + Send + Sync>;

#[derive(Clone)]
pub struct Engine {
    /// Each site's provider, following the spec [`Engine::sites`] was last given; itself a
    /// [`Provider`] that hands each call to the handle's site.
    pub provider: Arc<Providers>,
    /// This controller's state folder (and, for `local` sites, the default home of their
    /// folders: `<state>/sites/<name>`).
    pub state_dir: PathBuf,
    pub observe_timeout: Duration,
    /// Run before each start (see [`Preparer`]); a failure fails the start.
    pub preparer: Option<Preparer>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("service `{service}` at site `{site}` did not become healthy within {waited:?}; last probe: {last_probe}")]
    Unhealthy {
        service: String,
        site: String,
        waited: Duration,
        last_probe: String,
    },
    #[error("service `{service}` at site `{site}` exited while starting: {how}")]
    Exited { service: String, site: String, how: String },
    #[error("service `{service}` at site `{site}` could not be prepared: {reason}")]
    Prepare {
        service: String,
        site: String,
        reason: String,
    },
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("site `{0}` in the plan is not declared in the spec")]
    UnknownSite(String),
}

/// What an apply did, in order of completion.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ApplyReport {
    pub done: Vec<Done>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Done {
    pub site: String,
    pub service: String,
    pub action: Action,
    pub millis: u64,
}

impl Engine {
    /// An engine whose sites each get the provider their `provider:` names
    /// ([`crate::providers::build`]).
    pub fn new(state_dir: impl Into<PathBuf>) -> Engine {
        let state_dir = state_dir.into();
        Engine::with_providers(Providers::new(&state_dir), state_dir)
    }

    /// An engine over `providers` (tests hand in providers of their own).
    pub fn with_providers(providers: Providers, state_dir: impl Into<PathBuf>) -> Engine {
        Engine {
            provider: Arc::new(providers),
            state_dir: state_dir.into(),
            observe_timeout: OBSERVE_TIMEOUT,
            preparer: None,
        }
    }

    /// The same engine with `preparer` run before each start.
    pub fn with_preparer(mut self, preparer: Preparer) -> Engine {
        self.preparer = Some(preparer);
        self
    }

    /// The handles of the spec's sites, each served by the provider its `provider:` names:
    /// the providers follow `system` ([`Providers::follow`]), so a spec reloaded with a site
    /// added, changed or gone is served as it now reads.
    pub fn sites(&self, system: &System) -> Vec<SiteHandle> {
        self.provider.follow(system);
        system
            .sites
            .iter()
            .map(|(name, site)| SiteHandle {
                name: name.clone(),
                address: site.address,
            })
            .collect()
    }

    /// The handle of the site `name` of `system`, if it has one.
    pub fn site(&self, system: &System, name: &str) -> Option<SiteHandle> {
        self.sites(system).into_iter().find(|h| h.name == name)
    }

    /// Observes all sites at once. Each site gets its own thread and `observe_timeout`; one
    /// that fails or does not answer is `unknown` with the reason.
    pub fn observe(&self, sites: &[SiteHandle]) -> Vec<ObservedSite> {
        self.observe_with(sites, &Default::default()).0
    }

    /// What a person's `plan` and `apply` see: [`Engine::observe`], except that a site this
    /// state folder has never set up, and whose folder does not exist, is new — empty, to be
    /// set up by `apply` ([`Engine::set_up`]). A site once set up from here whose folder is
    /// gone is lost or not mounted: `unknown`, and nothing is made in its place. Returns the
    /// observation and the new sites.
    pub fn observe_for_apply(&self, sites: &[SiteHandle]) -> (Vec<ObservedSite>, Vec<String>) {
        // A record that cannot be read says nothing: then no missing site counts as new.
        let never_set_up: BTreeSet<String> = match SetUpRecord::load(&self.state_dir) {
            Ok(set_up) => sites
                .iter()
                .map(|s| s.name.clone())
                .filter(|name| !set_up.0.contains(name))
                .collect(),
            Err(_) => BTreeSet::new(),
        };
        self.observe_with(sites, &never_set_up)
    }

    /// Observes `sites`; a site in `may_be_new` whose folder does not exist is new (empty).
    fn observe_with(&self, sites: &[SiteHandle], may_be_new: &BTreeSet<String>) -> (Vec<ObservedSite>, Vec<String>) {
        let mut new = Vec::new();
        let observed = self
            .observe_results(sites)
            .into_iter()
            .zip(sites)
            .map(|(result, site)| {
                let state = match result {
                    Ok(services) => SiteState::Reachable { services },
                    Err(ObserveError::Provider(ProviderError::NotSetUp { .. })) if may_be_new.contains(&site.name) => {
                        new.push(site.name.clone());
                        SiteState::Reachable { services: Vec::new() }
                    }
                    Err(e @ ObserveError::Provider(ProviderError::NotSetUp { .. })) => SiteState::Unknown {
                        reason: format!(
                            "{e}; if it was set up before, it is lost or not mounted: `resurgo set-up {}` \
                             makes it anew, empty",
                            site.name
                        ),
                    },
                    Err(e) => SiteState::Unknown { reason: e.to_string() },
                };
                ObservedSite {
                    site: site.name.clone(),
                    state,
                }
            })
            .collect();
        (observed, new)
    }

    /// Sets up `names` (sites of `sites`) and records them as set up from this state folder.
    pub fn set_up(&self, sites: &[SiteHandle], names: &[String]) -> Result<(), ProviderError> {
        if names.is_empty() {
            return Ok(());
        }
        let path = SetUpRecord::path(&self.state_dir);
        let io = |source| ProviderError::Io {
            site: names.join(", "),
            what: "cannot record as set up in",
            path: path.clone(),
            source,
        };
        // Several daemons may share this state folder (`controller --agents`: one per site, one
        // process); the record is read, changed and written under a lock so none loses another's.
        let _lock = lock_file(&self.state_dir.join("sites-set-up.lock")).map_err(io)?;
        let mut record = SetUpRecord::load(&self.state_dir).map_err(io)?;
        for site in sites.iter().filter(|s| names.contains(&s.name)) {
            self.provider.set_up(site)?;
            record.0.insert(site.name.clone());
        }
        record.save(&self.state_dir).map_err(io)
    }

    fn observe_results(&self, sites: &[SiteHandle]) -> Vec<Result<Vec<resurgo_plan::ObservedService>, ObserveError>> {
        let (tx, rx) = mpsc::channel();
        for (i, site) in sites.iter().enumerate() {
            let tx = tx.clone();
            let provider = Arc::clone(&self.provider);
            let site = site.clone();
            // Detached on purpose: a hung site must not hang us. Its answer, if it ever
            // comes, goes to a closed channel. What the provider logs is the caller's (a tick's).
            let span = tracing::Span::current();
            std::thread::spawn(move || {
                let _ = tx.send((i, span.in_scope(|| provider.observe(&site))));
            });
        }
        drop(tx);
        let mut results: Vec<Option<Result<_, ObserveError>>> = (0..sites.len()).map(|_| None).collect();
        let deadline = Instant::now() + self.observe_timeout;
        while results.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((i, result)) => results[i] = Some(result.map_err(ObserveError::Provider)),
                Err(_) => break,
            }
        }
        let results: Vec<_> = results
            .into_iter()
            .map(|r| r.unwrap_or(Err(ObserveError::Timeout(self.observe_timeout))))
            .collect();
        for (site, result) in sites.iter().zip(&results) {
            match result {
                Ok(services) => tracing::debug!(site = %site.name, services = services.len(), "observed"),
                Err(e) => tracing::debug!(site = %site.name, "cannot observe: {e}"),
            }
        }
        results
    }

    /// Executes a plan: deletions first, then every create/update/start in dependency order,
    /// in parallel where independent. A service's dependants start only once its active
    /// instance is healthy; a standby instance starts only once its active instance is.
    /// The first failure stops further starts; those already running finish.
    pub fn apply(
        &self,
        plan: &Plan,
        sites: &[SiteHandle],
        progress: &dyn Fn(&Done),
    ) -> Result<ApplyReport, ApplyError> {
        let handle = |name: &str| {
            sites
                .iter()
                .find(|s| s.name == name)
                .cloned()
                .ok_or_else(|| ApplyError::UnknownSite(name.to_string()))
        };
        let mut report = ApplyReport::default();
        for site in &plan.sites {
            for change in site.changes.iter().filter(|c| c.action == Action::Delete) {
                let t = Instant::now();
                self.provider.remove(&handle(&site.site)?, &change.service)?;
                let done = Done {
                    site: site.site.clone(),
                    service: change.service.clone(),
                    action: Action::Delete,
                    millis: t.elapsed().as_millis() as u64,
                };
                progress(&done);
                report.done.push(done);
            }
        }
        let mut tasks: Vec<(SiteHandle, &Change, &RunConfig)> = Vec::new();
        for site in &plan.sites {
            for change in &site.changes {
                if let (Some(config), Action::Create | Action::Update | Action::Start) =
                    (&change.config, &change.action)
                {
                    tasks.push((handle(&site.site)?, change, config));
                }
            }
        }
        // Service → the task that starts its active instance, when the plan starts it.
        let active_task: HashMap<&str, usize> = tasks
            .iter()
            .enumerate()
            .filter(|(_, (_, _, config))| config.role == Role::Active)
            .map(|(i, (_, change, _))| (change.service.as_str(), i))
            .collect();
        let mut finished = vec![false; tasks.len()];
        let mut started = vec![false; tasks.len()];
        let mut running = 0usize;
        let mut failure: Option<ApplyError> = None;
        let (tx, rx) = mpsc::channel::<(usize, Result<u64, ApplyError>)>();
        std::thread::scope(|scope| loop {
            if failure.is_none() {
                for (i, (site, change, config)) in tasks.iter().enumerate() {
                    let waits_for = |service: &str| active_task.get(service).is_some_and(|t| !finished[*t]);
                    let waiting = config.depends_on.iter().any(|d| waits_for(d))
                        || (config.role == Role::Standby && waits_for(&config.service));
                    if started[i] || waiting {
                        continue;
                    }
                    started[i] = true;
                    running += 1;
                    let tx = tx.clone();
                    let engine = self.clone();
                    let site = site.clone();
                    let _ = change;
                    scope.spawn(move || {
                        let t = Instant::now();
                        let result = engine
                            .start_healthy(&site, config)
                            .map(|()| t.elapsed().as_millis() as u64);
                        let _ = tx.send((i, result));
                    });
                }
            }
            if running == 0 {
                break;
            }
            let Ok((i, result)) = rx.recv() else { break };
            running -= 1;
            let (site, change, _) = &tasks[i];
            match result {
                Ok(millis) => {
                    finished[i] = true;
                    let done = Done {
                        site: site.name.clone(),
                        service: change.service.clone(),
                        action: change.action.clone(),
                        millis,
                    };
                    progress(&done);
                    report.done.push(done);
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        });
        match failure {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Starts one service and waits until its health check passes (or, without one, until
    /// its process is seen running).
    pub fn start_healthy(&self, site: &SiteHandle, config: &RunConfig) -> Result<(), ApplyError> {
        if let Some(prepare) = &self.preparer {
            prepare(site, config).map_err(|reason| ApplyError::Prepare {
                service: config.service.clone(),
                site: site.name.clone(),
                reason,
            })?;
        }
        self.provider.start(site, config)?;
        let Some(health) = &config.health else { return Ok(()) };
        let interval = health
            .interval
            .map_or(Duration::from_millis(200), |d| d.0.min(Duration::from_millis(200)));
        let limit = health.start_timeout.map_or(DEFAULT_START_TIMEOUT, |d| d.0);
        let begin = Instant::now();
        loop {
            let result = self.provider.probe(site, config);
            // Healthy only counts while our own process runs: the answer could come from a
            // stranger on the same port.
            let exited = self.exited(site, &config.service);
            if result.healthy && exited.is_none() {
                return Ok(());
            }
            if let Some(how) = exited {
                return Err(ApplyError::Exited {
                    service: config.service.clone(),
                    site: site.name.clone(),
                    how,
                });
            }
            if begin.elapsed() >= limit {
                return Err(ApplyError::Unhealthy {
                    service: config.service.clone(),
                    site: site.name.clone(),
                    waited: limit,
                    last_probe: result.detail,
                });
            }
            std::thread::sleep(interval);
        }
    }

    /// How the service's process ended, if it has.
    fn exited(&self, site: &SiteHandle, service: &str) -> Option<String> {
        let services = self.provider.observe(site).ok()?;
        let s = services.into_iter().find(|s| s.service == service)?;
        match s.process {
            resurgo_plan::ProcessState::Exited { how, .. } => Some(how),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ObserveError {
    #[error(transparent)]
    Provider(ProviderError),
    #[error("no answer within {}s", .0.as_secs_f32())]
    Timeout(Duration),
}

/// The sites set up from this state folder (`<state>/sites-set-up.json`): what tells a new
/// site (no folder yet: `apply` sets it up) from a lost one (no folder any more: unknown).
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct SetUpRecord(BTreeSet<String>);

impl SetUpRecord {
    fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("sites-set-up.json")
    }

    /// The record; none yet is an empty one, one that cannot be read is an error.
    fn load(state_dir: &Path) -> std::io::Result<SetUpRecord> {
        match std::fs::read(Self::path(state_dir)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SetUpRecord::default()),
            Err(e) => Err(e),
        }
    }

    fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        resurgo_provider::private_dir(state_dir)?;
        resurgo_provider::write_json_atomic(&Self::path(state_dir), self)
    }
}

/// Makes the state folder and the folders resurgo keeps in it — each site's (by default
/// `sites/<site>`), the agents', the coordination store's, the run journals, the Git cache —
/// 0700, and tightens any found readable or writable by others (issue 9; search alone is left,
/// see `resurgo_provider::account`). Run before anything else touches the state folder.
pub fn secure_state(state_dir: &Path) -> std::io::Result<()> {
    use resurgo_provider::private_dir;
    private_dir(state_dir)?;
    for sub in ["sites", "agents", "coord", "runs", "git"] {
        let dir = state_dir.join(sub);
        if !dir.is_dir() {
            continue;
        }
        private_dir(&dir)?;
        if sub == "sites" || sub == "agents" || sub == "runs" {
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.is_dir() {
                    private_dir(&path)?;
                }
            }
        }
    }
    Ok(())
}

/// Holds an exclusive lock on the file at `path` (made if absent) until the result is dropped:
/// against other processes and, since each call opens the file anew, other threads.
pub(crate) fn lock_file(path: &Path) -> std::io::Result<nix::fcntl::Flock<std::fs::File>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e.into())
}

/// Index of observed services by (site, service), for status and the reconcile loop.
pub fn index_observed(observed: &[ObservedSite]) -> HashMap<(String, String), resurgo_plan::ObservedService> {
    let mut out = HashMap::new();
    for site in observed {
        if let SiteState::Reachable { services } = &site.state {
            for s in services {
                out.insert((site.site.clone(), s.service.clone()), s.clone());
            }
        }
    }
    out
}

/// The last successful apply, as recorded in the state folder.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    pub source: resurgo_plan::SourceId,
    pub time: String,
}

fn applied_path(state_dir: &Path) -> PathBuf {
    state_dir.join("applied.json")
}

/// Records a successful apply of `source` (atomically: temporary file, then rename).
pub fn record_applied(state_dir: &Path, source: &resurgo_plan::SourceId) -> std::io::Result<()> {
    let applied = Applied {
        source: source.clone(),
        time: crate::events::now_rfc3339(),
    };
    resurgo_provider::private_dir(state_dir)?;
    resurgo_provider::write_json_atomic(&applied_path(state_dir), &applied)
}

pub fn read_applied(state_dir: &Path) -> Option<Applied> {
    serde_json::from_slice(&std::fs::read(applied_path(state_dir)).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use indexmap::IndexMap;
    use resurgo_plan::{make_plan, ObservedService, PlanOptions, SourceId};
    use resurgo_provider::ProbeResult;
    use resurgo_spec::{HealthCheck, TcpProbe};

    use super::*;

    /// Records what happens, in order. `b/db` turns healthy only once `a/web` has started, so
    /// an apply where `web` waited for the standby instance would time out.
    #[derive(Default)]
    struct Recorder {
        log: Mutex<Vec<String>>,
    }

    impl Recorder {
        fn push(&self, line: String) {
            self.log.lock().unwrap().push(line);
        }
        fn has(&self, line: &str) -> bool {
            self.log.lock().unwrap().iter().any(|l| l == line)
        }
    }

    impl Provider for Recorder {
        fn set_up(&self, _: &SiteHandle) -> Result<(), ProviderError> {
            Ok(())
        }

        fn set_aside(&self, _: &SiteHandle, _: &Path, _: &str) -> Result<resurgo_provider::SetAside, ProviderError> {
            unimplemented!("not asked in these tests")
        }

        fn set_aside_copies(&self, _: &SiteHandle) -> Result<Vec<resurgo_provider::SetAside>, ProviderError> {
            Ok(Vec::new())
        }

        fn drop_set_aside(&self, _: &SiteHandle, _: &str) -> Result<resurgo_provider::SetAside, ProviderError> {
            unimplemented!("not asked in these tests")
        }

        fn data_path(&self, _: &SiteHandle, _: &str, _: Option<&str>, _: &str) -> Result<PathBuf, ProviderError> {
            unimplemented!("not asked in these tests")
        }

        fn owner(&self, _: &SiteHandle, _: &Path) -> Option<(u32, u32)> {
            None
        }

        fn describe(&self, _: &SiteHandle) -> String {
            "recorder".into()
        }

        fn extend_fence(&self, _: &SiteHandle, _: &resurgo_coord::BootTime) -> Result<(), ProviderError> {
            Ok(())
        }

        fn relabel(&self, _: &SiteHandle, _: &RunConfig) -> Result<(), ProviderError> {
            Ok(())
        }

        fn observe(&self, _: &SiteHandle) -> Result<Vec<ObservedService>, ProviderError> {
            Ok(Vec::new())
        }
        fn start(&self, site: &SiteHandle, config: &RunConfig) -> Result<(), ProviderError> {
            self.push(format!("start {}/{}", site.name, config.service));
            Ok(())
        }
        fn stop(&self, _: &SiteHandle, _: &str) -> Result<(), ProviderError> {
            Ok(())
        }
        fn remove(&self, _: &SiteHandle, _: &str) -> Result<(), ProviderError> {
            Ok(())
        }
        fn probe(&self, site: &SiteHandle, config: &RunConfig) -> ProbeResult {
            let healthy = site.name != "b" || self.has("start a/web");
            if healthy {
                self.push(format!("healthy {}/{}", site.name, config.service));
            }
            ProbeResult {
                healthy,
                detail: String::new(),
            }
        }
    }

    fn config(service: &str, site: &str, role: Role, deps: &[&str]) -> RunConfig {
        RunConfig {
            service: service.into(),
            site: site.into(),
            address: "127.0.0.1".parse().unwrap(),
            command: "x".into(),
            args: vec![],
            env: IndexMap::new(),
            workdir: None,
            ports: vec![],
            health: Some(HealthCheck {
                http: None,
                tcp: Some(TcpProbe { port: 1 }),
                exec: None,
                interval: None,
                timeout: None,
                start_timeout: Some(resurgo_spec::Duration(Duration::from_secs(10))),
            }),
            stop_timeout_ms: 1000,
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            role,
            user: None,
        }
    }

    /// Issue 9: the state folder and what resurgo keeps in it are 0700; wider ones are tightened.
    #[test]
    fn the_state_folder_and_its_folders_are_made_and_kept_0700() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for dir in ["sites/a", "agents/a", "coord", "runs/r1", "git"] {
            std::fs::create_dir_all(state.join(dir)).unwrap();
            std::fs::set_permissions(state.join(dir), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
        secure_state(&state).unwrap();
        for dir in ["", "sites", "sites/a", "agents/a", "coord", "runs/r1", "git"] {
            assert_eq!(mode(&state.join(dir)), 0o700, "{dir}");
        }
        let fresh = tmp.path().join("fresh/state");
        secure_state(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
    }

    #[test]
    fn a_standby_starts_after_its_active_instance_and_dependants_wait_for_the_active_one_only() {
        let recorder = Arc::new(Recorder::default());
        let prepared = Arc::clone(&recorder);
        let factory = {
            let recorder = Arc::clone(&recorder);
            Arc::new(move |_: &str, _: &resurgo_spec::Site, _: &Path| recorder.clone() as Arc<dyn Provider>)
        };
        let providers = Providers::with_factory("/nonexistent", factory);
        let engine = Engine::with_providers(providers, "/nonexistent").with_preparer(Arc::new(move |site, config| {
            prepared.push(format!("prepare {}/{}", site.name, config.service));
            Ok(())
        }));
        let mut desired: IndexMap<String, IndexMap<String, RunConfig>> = IndexMap::new();
        for c in [
            config("db", "a", Role::Active, &[]),
            config("web", "a", Role::Active, &["db"]),
            config("db", "b", Role::Standby, &[]),
        ] {
            desired.entry(c.site.clone()).or_default().insert(c.service.clone(), c);
        }
        let sites = engine.sites(&crate::testing::two_sites(false));
        let source = SourceId {
            kind: "folder".into(),
            location: "x".into(),
            commit: None,
            digest: "d".repeat(64),
        };
        let plan = make_plan("s", source, &desired, &engine.observe(&sites), PlanOptions::default()).unwrap();
        engine.apply(&plan, &sites, &|_| {}).unwrap();
        let log = recorder.log.lock().unwrap().clone();
        let at = |line: &str| {
            log.iter()
                .position(|l| l == line)
                .unwrap_or_else(|| panic!("no `{line}` in {log:?}"))
        };
        assert!(at("healthy a/db") < at("prepare b/db"), "{log:?}");
        assert!(at("prepare b/db") < at("start b/db"), "{log:?}");
        assert!(at("healthy a/db") < at("start a/web"), "{log:?}");
        assert!(at("start a/web") < at("healthy b/db"), "{log:?}");
    }

    /// A site never set up from this state folder is new; once set up, losing its folder makes
    /// it unknown, not new again; and a record that cannot be read makes no site new.
    #[test]
    fn only_a_site_never_set_up_from_here_is_new() {
        let f = crate::testing::Fixture::new(crate::testing::two_sites(false));
        f.provider.site("b", false);
        let sites = f.engine.sites(&f.spec);
        let state_of = |observed: &[ObservedSite], site: &str| {
            let s = observed.iter().find(|o| o.site == site).unwrap();
            matches!(s.state, SiteState::Reachable { .. })
        };

        let (observed, new) = f.engine.observe_for_apply(&sites);
        assert_eq!(new, ["b"]);
        assert!(state_of(&observed, "b"), "new: empty, to be set up");
        assert!(!state_of(&f.engine.observe(&sites), "b"), "observe alone: unknown");
        f.engine.set_up(&sites, &new).unwrap();

        f.provider.site("b", false);
        let (observed, new) = f.engine.observe_for_apply(&sites);
        assert!(new.is_empty() && !state_of(&observed, "b"), "lost: unknown, not new");

        std::fs::write(f.dir.path().join("sites-set-up.json"), "not json").unwrap();
        let (observed, new) = f.engine.observe_for_apply(&sites);
        assert!(
            new.is_empty() && !state_of(&observed, "b"),
            "an unreadable record says nothing"
        );
        assert!(
            f.engine.set_up(&sites, &["b".to_string()]).is_err(),
            "and is not overwritten"
        );
    }
}
