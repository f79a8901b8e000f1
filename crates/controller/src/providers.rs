//! A provider per site. Each site of the spec gets its own [`Provider`], built by [`build`]
//! from the site's `provider:` — the one place that names a concrete provider, so another kind
//! (Docker, Kubernetes) is added there and nowhere else. [`Providers`] holds them and is itself
//! a [`Provider`] that hands each call to the provider of the handle's site, so the engine and
//! the runs call it without knowing which kind runs where or how a site keeps its state.
//!
//! The providers follow the spec the caller holds ([`Providers::follow`], which
//! [`crate::Engine::sites`] calls): a site new to it or declared differently gets a provider
//! built anew, a site no longer declared loses its own, and a call for a site without one is an
//! error ([`ProviderError::SiteUnreachable`]) — never an empty site.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use resurgo_coord::BootTime;
use resurgo_plan::{ObservedService, RunConfig};
use resurgo_provider::local::LocalProvider;
use resurgo_provider::{ProbeResult, Provider, ProviderError, SetAside, SiteHandle};
use resurgo_spec::{ProviderKind, Site, System};

/// Builds the provider of one site: `(name, declaration, state folder)`.
pub type Factory = Arc<dyn Fn(&str, &Site, &Path) -> Arc<dyn Provider> + Send + Sync>;

/// The provider of the site `name` declared as `site`, from its `provider:`. The one function
/// that names a concrete provider. It does no I/O: a provider that needs a connection makes it
/// when first called, so building never holds up the other sites.
pub fn build(name: &str, site: &Site, state_dir: &Path) -> Arc<dyn Provider> {
    match site.provider {
        ProviderKind::Local => {
            Arc::new(LocalProvider::at(local_root(state_dir, name, site)).with_state_dir(state_dir.to_path_buf()))
        }
    }
}

/// The folder of a `local` site: its `root`, else `<state>/sites/<name>`.
pub fn local_root(state_dir: &Path, name: &str, site: &Site) -> PathBuf {
    site.root
        .as_ref()
        .map_or_else(|| state_dir.join("sites").join(name), PathBuf::from)
}

/// One provider per site of the spec, by site name.
pub struct Providers {
    state_dir: PathBuf,
    factory: Factory,
    sites: RwLock<BTreeMap<String, Built>>,
}

/// A site's provider and the declaration it was built from.
struct Built {
    declared: String,
    provider: Arc<dyn Provider>,
}

impl Providers {
    /// Providers built by [`build`]; none until [`Providers::follow`] is given a spec.
    pub fn new(state_dir: impl Into<PathBuf>) -> Providers {
        Providers::with_factory(state_dir, Arc::new(build))
    }

    /// Providers built by `factory` instead (tests hand in an in-memory one).
    pub fn with_factory(state_dir: impl Into<PathBuf>, factory: Factory) -> Providers {
        Providers {
            state_dir: state_dir.into(),
            factory,
            sites: RwLock::new(BTreeMap::new()),
        }
    }

    /// Makes the providers match `system`'s sites: one built for each site that has none or
    /// was declared differently when it was built, none kept for a site no longer declared.
    /// Cheap when nothing changed (the spec is reloaded every tick).
    pub fn follow(&self, system: &System) {
        // The whole declaration counts: whatever a provider reads of it, a change rebuilds it.
        let declared: BTreeMap<&str, String> = system
            .sites
            .iter()
            .map(|(name, site)| (name.as_str(), serde_json::to_string(site).unwrap_or_default()))
            .collect();
        let current = |sites: &BTreeMap<String, Built>| {
            sites.len() == declared.len()
                && declared
                    .iter()
                    .all(|(name, d)| sites.get(*name).is_some_and(|b| &b.declared == d))
        };
        if current(&self.read()) {
            return;
        }
        // Built outside the lock: lookups (the renewer's among them) never wait for a build.
        let built: Vec<(String, Built)> = declared
            .iter()
            .filter(|(name, d)| self.read().get(**name).is_none_or(|b| &b.declared != *d))
            .map(|(name, d)| {
                let provider = (self.factory)(name, &system.sites[*name], &self.state_dir);
                tracing::debug!(site = %name, "provider built");
                (
                    name.to_string(),
                    Built {
                        declared: d.clone(),
                        provider,
                    },
                )
            })
            .collect();
        let mut sites = self.sites.write().unwrap_or_else(|e| e.into_inner());
        sites.retain(|name, _| declared.contains_key(name.as_str()));
        sites.extend(built);
    }

    /// The provider of `site`; a site the spec does not declare (as last followed) has none.
    pub fn get(&self, site: &str) -> Result<Arc<dyn Provider>, ProviderError> {
        self.read()
            .get(site)
            .map(|b| Arc::clone(&b.provider))
            .ok_or_else(|| ProviderError::SiteUnreachable {
                site: site.to_string(),
                reason: "it has no provider: the spec declares no such site".into(),
            })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Built>> {
        self.sites.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Each call goes to the provider of `site.name`.
impl Provider for Providers {
    fn set_up(&self, site: &SiteHandle) -> Result<(), ProviderError> {
        self.get(&site.name)?.set_up(site)
    }

    fn observe(&self, site: &SiteHandle) -> Result<Vec<ObservedService>, ProviderError> {
        self.get(&site.name)?.observe(site)
    }

    fn start(&self, site: &SiteHandle, config: &RunConfig) -> Result<(), ProviderError> {
        self.get(&site.name)?.start(site, config)
    }

    fn stop(&self, site: &SiteHandle, service: &str) -> Result<(), ProviderError> {
        self.get(&site.name)?.stop(site, service)
    }

    fn kill(&self, site: &SiteHandle, service: &str) -> Result<(), ProviderError> {
        self.get(&site.name)?.kill(site, service)
    }

    fn disconnect(&self, site: &SiteHandle) -> Result<(), ProviderError> {
        self.get(&site.name)?.disconnect(site)
    }

    fn reconnect(&self, site: &SiteHandle) -> Result<bool, ProviderError> {
        self.get(&site.name)?.reconnect(site)
    }

    fn remove(&self, site: &SiteHandle, service: &str) -> Result<(), ProviderError> {
        self.get(&site.name)?.remove(site, service)
    }

    fn probe(&self, site: &SiteHandle, config: &RunConfig) -> ProbeResult {
        match self.get(&site.name) {
            Ok(provider) => provider.probe(site, config),
            Err(e) => ProbeResult {
                healthy: false,
                detail: e.to_string(),
            },
        }
    }

    fn relabel(&self, site: &SiteHandle, config: &RunConfig) -> Result<(), ProviderError> {
        self.get(&site.name)?.relabel(site, config)
    }

    fn extend_fence(&self, site: &SiteHandle, until: &BootTime) -> Result<(), ProviderError> {
        self.get(&site.name)?.extend_fence(site, until)
    }

    fn set_aside(&self, site: &SiteHandle, path: &Path, why: &str) -> Result<SetAside, ProviderError> {
        self.get(&site.name)?.set_aside(site, path, why)
    }

    fn set_aside_copies(&self, site: &SiteHandle) -> Result<Vec<SetAside>, ProviderError> {
        self.get(&site.name)?.set_aside_copies(site)
    }

    fn drop_set_aside(&self, site: &SiteHandle, id: &str) -> Result<SetAside, ProviderError> {
        self.get(&site.name)?.drop_set_aside(site, id)
    }

    fn data_path(
        &self,
        site: &SiteHandle,
        service: &str,
        workdir: Option<&str>,
        path: &str,
    ) -> Result<PathBuf, ProviderError> {
        self.get(&site.name)?.data_path(site, service, workdir, path)
    }

    fn owner(&self, site: &SiteHandle, path: &Path) -> Option<(u32, u32)> {
        self.get(&site.name).ok()?.owner(site, path)
    }

    fn describe(&self, site: &SiteHandle) -> String {
        match self.get(&site.name) {
            Ok(provider) => provider.describe(site),
            Err(e) => e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(a_root: &Path, b_root: Option<&Path>) -> System {
        let site = |address: &str, root: Option<&Path>| {
            let root = root.map_or_else(String::new, |r| format!("    root: {}\n", r.display()));
            format!("    provider: local\n    address: {address}\n    capacity: {{ cpu: 8, memory: 8Gi }}\n{root}")
        };
        crate::testing::system(&format!(
            "apiVersion: resurgo.dev/v1alpha1\nsystem: unit\nsites:\n  a:\n{}  b:\n{}services:\n  web:\n    command: /bin/true\n    site: a\n",
            site("127.0.0.1", Some(a_root)),
            site("127.0.0.2", b_root),
        ))
    }

    fn handle(name: &str) -> SiteHandle {
        SiteHandle {
            name: name.into(),
            address: "127.0.0.1".parse().unwrap(),
        }
    }

    #[test]
    fn each_site_gets_its_own_provider_at_its_own_folder() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let providers = Providers::new(&state);
        providers.follow(&spec(&dir.path().join("disk-a"), None));
        let (a, b) = (providers.get("a").unwrap(), providers.get("b").unwrap());
        assert!(!Arc::ptr_eq(&a, &b), "one provider per site");
        assert_eq!(
            providers.describe(&handle("a")),
            dir.path().join("disk-a").display().to_string()
        );
        assert_eq!(
            providers.describe(&handle("b")),
            state.join("sites/b").display().to_string(),
            "the one-machine default folder"
        );

        // Set up through the providers, each site lands in its own folder.
        providers.set_up(&handle("a")).unwrap();
        providers.set_up(&handle("b")).unwrap();
        assert!(dir.path().join("disk-a/site.json").exists());
        assert!(state.join("sites/b/site.json").exists());
        assert!(!state.join("sites/a").exists(), "a's root is its own, not the default");

        // The same spec again keeps the providers; a site declared differently gets a new one.
        providers.follow(&spec(&dir.path().join("disk-a"), None));
        assert!(Arc::ptr_eq(&a, &providers.get("a").unwrap()), "unchanged: kept");
        providers.follow(&spec(&dir.path().join("disk-a2"), None));
        assert!(!Arc::ptr_eq(&a, &providers.get("a").unwrap()), "moved: rebuilt");
        assert!(Arc::ptr_eq(&b, &providers.get("b").unwrap()), "b unchanged");
        let err = providers.observe(&handle("a")).unwrap_err();
        assert!(
            matches!(err, ProviderError::NotSetUp { .. }),
            "the new folder is not set up: {err:?}"
        );
    }

    #[test]
    fn a_site_without_a_provider_is_an_error_not_an_empty_site() {
        let dir = tempfile::tempdir().unwrap();
        let providers = Providers::new(dir.path());
        let err = providers.observe(&handle("a")).unwrap_err();
        assert!(
            matches!(err, ProviderError::SiteUnreachable { .. }),
            "before any spec: {err:?}"
        );

        providers.follow(&spec(&dir.path().join("disk-a"), None));
        providers.set_up(&handle("a")).unwrap();
        assert_eq!(providers.observe(&handle("a")).unwrap(), Vec::new());
        for err in [
            providers.observe(&handle("c")).unwrap_err(),
            providers.set_aside_copies(&handle("c")).unwrap_err(),
            providers.stop(&handle("c"), "web").unwrap_err(),
        ] {
            assert!(
                err.to_string()
                    .contains("site `c` is unreachable: it has no provider: the spec declares no such site"),
                "{err}"
            );
        }
        let probe = providers.probe(
            &handle("c"),
            &resurgo_plan::desired_state(&spec(dir.path(), None))["a"]["web"],
        );
        assert!(!probe.healthy && probe.detail.contains("no provider"), "{probe:?}");

        // A site that leaves the spec leaves with its provider.
        let mut without_b = spec(&dir.path().join("disk-a"), None);
        without_b.sites.shift_remove("b");
        providers.follow(&without_b);
        assert!(providers.get("b").is_err());
        assert!(providers.get("a").is_ok());
    }
}
