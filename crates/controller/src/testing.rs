//! For unit tests of the controller's riskiest files (failover steps, the agent's decisions):
//! a provider that keeps its sites in memory and records what it is asked, and a spec parser.
//! The coordination store in these tests is the real embedded one, in a temporary folder.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use resurgo_coord::{BootTime, CoordStore};
use resurgo_plan::{Health, ObservedService, ProcessState, RunConfig};
use resurgo_provider::{ProbeResult, Provider, ProviderError, SetAside, SiteHandle};
use resurgo_spec::System;

/// Sites in memory, one `Recording` serving every site (as the providers of all of them). A
/// site absent from `sites` is not set up (unknown); every call is logged as
/// `verb site/service`. Data paths name no real place (`/nonexistent/<site>/…`), and nothing
/// is ever set aside there.
#[derive(Default)]
pub struct Recording {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    sites: BTreeMap<String, BTreeMap<String, (RunConfig, ProcessState)>>,
    /// Sites whose services ignore a stop (a supervisor that hangs, a stop that fails silently).
    stubborn: BTreeSet<String>,
    log: Vec<String>,
    /// The sites observed, in order (kept apart from `log`: observing changes nothing).
    observed: Vec<String>,
    fence: BTreeMap<String, BootTime>,
    /// Sites disconnected (a drill's site loss), kept aside until reconnected.
    lost: BTreeMap<String, BTreeMap<String, (RunConfig, ProcessState)>>,
}

impl Recording {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `site` as set up (empty) — or, with `false`, as gone.
    pub fn site(&self, site: &str, present: bool) {
        let mut st = self.state();
        if present {
            st.sites.entry(site.to_string()).or_default();
        } else {
            st.sites.remove(site);
        }
    }

    /// From now on, stopping a service at `site` leaves it running.
    pub fn stubborn(&self, site: &str) {
        self.state().stubborn.insert(site.to_string());
    }

    /// Whether `service` runs at `site`.
    pub fn running(&self, site: &str, service: &str) -> bool {
        self.state()
            .sites
            .get(site)
            .and_then(|s| s.get(service))
            .is_some_and(|(_, p)| matches!(p, ProcessState::Running { .. }))
    }

    /// The calls so far, in order.
    pub fn log(&self) -> Vec<String> {
        self.state().log.clone()
    }

    /// The sites observed so far, in order.
    pub fn observed(&self) -> Vec<String> {
        self.state().observed.clone()
    }

    /// The fence deadline last set at `site`.
    pub fn fence(&self, site: &str) -> Option<BootTime> {
        self.state().fence.get(site).cloned()
    }

    fn not_set_up(site: &SiteHandle) -> ProviderError {
        ProviderError::NotSetUp {
            site: site.name.clone(),
            at: "memory".into(),
        }
    }
}

impl Provider for Recording {
    fn set_up(&self, site: &SiteHandle) -> Result<(), ProviderError> {
        let mut st = self.state();
        st.log.push(format!("set-up {}", site.name));
        st.sites.entry(site.name.clone()).or_default();
        Ok(())
    }

    fn observe(&self, site: &SiteHandle) -> Result<Vec<ObservedService>, ProviderError> {
        let mut st = self.state();
        st.observed.push(site.name.clone());
        let services = st.sites.get(&site.name).ok_or_else(|| Self::not_set_up(site))?;
        Ok(services
            .iter()
            .map(|(name, (config, process))| ObservedService {
                service: name.clone(),
                config: config.clone(),
                config_hash: config.hash(),
                process: process.clone(),
                health: if matches!(process, ProcessState::Running { .. }) {
                    Health::Healthy
                } else {
                    Health::Unknown
                },
                restarts: 0,
            })
            .collect())
    }

    fn start(&self, site: &SiteHandle, config: &RunConfig) -> Result<(), ProviderError> {
        let mut st = self.state();
        st.log.push(format!("start {}/{}", site.name, config.service));
        let services = st.sites.get_mut(&site.name).ok_or_else(|| Self::not_set_up(site))?;
        let running = ProcessState::Running {
            pid: 1,
            since: String::new(),
        };
        services.insert(config.service.clone(), (config.clone(), running));
        Ok(())
    }

    fn stop(&self, site: &SiteHandle, service: &str) -> Result<(), ProviderError> {
        let mut st = self.state();
        st.log.push(format!("stop {}/{service}", site.name));
        let stubborn = st.stubborn.contains(&site.name);
        let services = st.sites.get_mut(&site.name).ok_or_else(|| Self::not_set_up(site))?;
        if let Some((_, process)) = services.get_mut(service).filter(|_| !stubborn) {
            *process = ProcessState::Stopped;
        }
        Ok(())
    }

    fn remove(&self, site: &SiteHandle, service: &str) -> Result<(), ProviderError> {
        let mut st = self.state();
        st.log.push(format!("remove {}/{service}", site.name));
        let services = st.sites.get_mut(&site.name).ok_or_else(|| Self::not_set_up(site))?;
        services.remove(service);
        Ok(())
    }

    fn probe(&self, site: &SiteHandle, config: &RunConfig) -> ProbeResult {
        let healthy = self.running(&site.name, &config.service);
        ProbeResult {
            healthy,
            detail: if healthy { "running" } else { "not running" }.into(),
        }
    }

    fn relabel(&self, _: &SiteHandle, _: &RunConfig) -> Result<(), ProviderError> {
        Ok(())
    }

    fn extend_fence(&self, site: &SiteHandle, until: &BootTime) -> Result<(), ProviderError> {
        let mut st = self.state();
        if !st.sites.contains_key(&site.name) {
            return Err(Self::not_set_up(site));
        }
        st.fence.insert(site.name.clone(), until.clone());
        Ok(())
    }

    fn set_aside(&self, site: &SiteHandle, path: &Path, _: &str) -> Result<SetAside, ProviderError> {
        self.state()
            .log
            .push(format!("set-aside {} {}", site.name, path.display()));
        Err(ProviderError::SiteUnreachable {
            site: site.name.clone(),
            reason: "the recording provider keeps no data to set aside".into(),
        })
    }

    fn set_aside_copies(&self, site: &SiteHandle) -> Result<Vec<SetAside>, ProviderError> {
        match self.state().sites.contains_key(&site.name) {
            true => Ok(Vec::new()),
            false => Err(Self::not_set_up(site)),
        }
    }

    fn drop_set_aside(&self, site: &SiteHandle, id: &str) -> Result<SetAside, ProviderError> {
        Err(ProviderError::SiteUnreachable {
            site: site.name.clone(),
            reason: format!("no set-aside copy named {id}"),
        })
    }

    fn data_path(
        &self,
        site: &SiteHandle,
        service: &str,
        _: Option<&str>,
        path: &str,
    ) -> Result<PathBuf, ProviderError> {
        Ok(Path::new("/nonexistent").join(&site.name).join(service).join(path))
    }

    fn owner(&self, _: &SiteHandle, _: &Path) -> Option<(u32, u32)> {
        None
    }

    fn describe(&self, site: &SiteHandle) -> String {
        format!("site {} in memory", site.name)
    }

    fn kill(&self, site: &SiteHandle, service: &str) -> Result<(), ProviderError> {
        let mut st = self.state();
        st.log.push(format!("kill {}/{service}", site.name));
        let services = st.sites.get_mut(&site.name).ok_or_else(|| Self::not_set_up(site))?;
        match services.get_mut(service) {
            Some((_, process)) if process.is_running() => {
                *process = ProcessState::Exited {
                    how: "killed by SIGKILL".into(),
                    at: String::new(),
                };
                Ok(())
            }
            _ => Err(ProviderError::SiteUnreachable {
                site: site.name.clone(),
                reason: format!("service `{service}` is not running there: nothing to kill"),
            }),
        }
    }

    fn disconnect(&self, site: &SiteHandle) -> Result<(), ProviderError> {
        let mut st = self.state();
        st.log.push(format!("disconnect {}", site.name));
        if let Some(mut services) = st.sites.remove(&site.name) {
            for (_, process) in services.values_mut() {
                if process.is_running() {
                    *process = ProcessState::Exited {
                        how: "killed by SIGKILL".into(),
                        at: String::new(),
                    };
                }
            }
            st.lost.insert(site.name.clone(), services);
        }
        Ok(())
    }

    fn reconnect(&self, site: &SiteHandle) -> Result<bool, ProviderError> {
        let mut st = self.state();
        st.log.push(format!("reconnect {}", site.name));
        match st.lost.remove(&site.name) {
            Some(services) => {
                st.sites.insert(site.name.clone(), services);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Providers whose every site is served by `recording`.
pub fn providers(state_dir: &Path, recording: &Arc<Recording>) -> crate::Providers {
    let recording = Arc::clone(recording);
    crate::Providers::with_factory(
        state_dir,
        Arc::new(move |_, _, _| recording.clone() as Arc<dyn Provider>),
    )
}

/// A spec from YAML text (panics with the diagnostics if it is invalid).
pub fn system(yaml: &str) -> System {
    let file = resurgo_spec::SourceFile {
        name: "resurgo.yaml".into(),
        text: yaml.into(),
    };
    match resurgo_spec::load(vec![file], &[]) {
        Ok(loaded) => loaded.system,
        Err(e) => panic!("invalid test spec: {e}"),
    }
}

/// Two sites (a, b); `web` at a with b as its standby site; `api` at b with a as its standby
/// site when `two_groups`; fast failover timing, embedded coordination.
pub fn two_sites(two_groups: bool) -> System {
    let service = |name: &str, site: &str, standby: &str, port: u16| {
        format!(
            "  {name}:\n    command: /bin/true\n    ports: [{port}]\n    stop_timeout: 500ms\n    site: {site}\n    standby: [{standby}]\n    health:\n      tcp: {{ port: {port} }}\n"
        )
    };
    let mut services = service("web", "a", "b", 8080);
    if two_groups {
        services += &service("api", "b", "a", 8081);
    }
    system(&format!(
        "apiVersion: resurgo.dev/v1alpha1\nsystem: unit\nsites:\n  a:\n    provider: local\n    address: 127.0.0.1\n    capacity: {{ cpu: 8, memory: 8Gi }}\n  b:\n    provider: local\n    address: 127.0.0.2\n    capacity: {{ cpu: 8, memory: 8Gi }}\nservices:\n{services}failover:\n  witness: \"127.0.0.9:7411\"\n  heartbeat_interval: 100ms\n  suspect_after: 3\n  lease_ttl: 1500ms\n  fencing_deadline: 500ms\n  promotion_delay: 500ms\n"
    ))
}

/// A state folder, the recording provider with sites a and b set up, an engine over them, and
/// the spec.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub provider: Arc<Recording>,
    pub engine: crate::engine::Engine,
    pub spec: System,
}

impl Fixture {
    pub fn new(spec: System) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let provider = Arc::new(Recording::default());
        provider.site("a", true);
        provider.site("b", true);
        Fixture {
            engine: crate::engine::Engine::with_providers(providers(dir.path(), &provider), dir.path()),
            provider,
            spec,
            dir,
        }
    }

    /// The spec's coordination store (the embedded one, in the state folder).
    pub fn store(&self) -> Arc<dyn CoordStore> {
        crate::roles::open_store(&self.spec, self.dir.path()).unwrap()
    }
}
