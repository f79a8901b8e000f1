//! The site API as a site's agent answers it (`resurgo_api` carries it and checks credentials
//! first). Everything here acts on this site only: its provider, its repository, its state
//! folder, its network (a drill's faults, [`crate::faults`]), and the coordination store —
//! never another site's files.

use std::io::Write;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use resurgo_api::types::{DatasetDone, DatasetRequest, Health, RunStarted, Runs, StartRun, RUNS_FORMAT_VERSION};
use resurgo_api::{Handler, Op, Reply, Request};
use resurgo_plan::SiteState;
use resurgo_runbook::plan::PlanKind;

use crate::daemon::SiteContext;
use crate::desired::Desired;
use crate::engine::Engine;
use crate::failover::RunOptions;
use crate::protect::Protector;
use crate::roles::{group_of, open_store};

/// How long an apply waits for the daemon to read a spec it does not run yet.
const RELOAD_WAIT: Duration = Duration::from_secs(15);

/// How long a failback asked through the API waits for this site's standbys to catch up.
const FAILBACK_CATCH_UP: Duration = Duration::from_secs(300);

/// A site's agent's answers, over the state its daemon shares ([`SiteContext`]).
pub struct SiteApi {
    context: SiteContext,
    /// How the dashboard asks the other sites' agents (and this one, as they do): this host's
    /// certificate or the deployment's token. `None`: the dashboard cannot be shown.
    peers: Option<resurgo_api::Client>,
}

impl SiteApi {
    pub fn new(context: SiteContext) -> SiteApi {
        SiteApi { context, peers: None }
    }

    /// The API that shows every site on its dashboard by asking their agents with `client`.
    pub fn with_peers(mut self, client: resurgo_api::Client) -> SiteApi {
        self.peers = Some(client);
        self
    }

    fn site(&self) -> &str {
        self.context.site()
    }

    fn state_dir(&self) -> &Path {
        self.context.state_dir()
    }

    fn engine(&self) -> &Engine {
        self.context.engine()
    }

    /// The spec the daemon runs, as written (the daemon has one before it serves).
    fn written(&self) -> Result<Desired, Reply> {
        self.context
            .spec()
            .map(|d| Desired::clone(&d))
            .ok_or_else(|| Reply::problem(503, "the agent has no spec yet"))
    }

    /// The spec with the store's assignments applied (where services are active now).
    fn current(&self) -> Result<Desired, Reply> {
        match self.context.desired() {
            Ok(Some(d)) => Ok(d),
            Ok(None) => Err(Reply::problem(503, "the agent has no spec yet")),
            Err(e) => Err(Reply::problem(503, format!("cannot read the assignments: {e}"))),
        }
    }

    /// The spec with the store's assignments applied, or as written when the store cannot be
    /// read (what a scrape or a cost report is computed against: they report the store's
    /// trouble themselves).
    fn current_or_written(&self) -> Result<Desired, Reply> {
        let written = self.written()?;
        Ok(match self.context.desired() {
            Ok(Some(current)) => current,
            _ => written,
        })
    }

    /// The groups this site's agent serves as primary now (holds the lease, not fencing).
    fn primary_for(&self, desired: &Desired) -> Vec<String> {
        desired
            .loaded
            .system
            .sites
            .keys()
            .map(|s| group_of(s))
            .filter(|g| self.context.serves(g))
            .collect()
    }

    /// Whether this site can be observed right now, or why not.
    fn observed(&self, desired: &Desired) -> Result<(), String> {
        let handle = self
            .engine()
            .site(&desired.loaded.system, self.site())
            .ok_or_else(|| format!("`{}` is not a site of the spec", self.site()))?;
        match &self.engine().observe(std::slice::from_ref(&handle))[0].state {
            SiteState::Reachable { .. } => Ok(()),
            SiteState::Unknown { reason } => Err(reason.clone()),
        }
    }

    fn health(&self, op: &Op, request: &Request) -> Reply {
        let mut answer = Health {
            site: self.site().to_string(),
            ok: false,
            primary_for: vec![],
            standby_for: vec![],
            lag_seconds: None,
            detail: None,
        };
        let group = request.query("group");
        let max_lag = match request.query("max_lag").map(resurgo_spec::Duration::parse).transpose() {
            Ok(d) => d.map(|d| d.0),
            Err(e) => return Reply::problem(400, format!("max_lag: {e}")),
        };
        let outcome = (|| -> Result<bool, String> {
            let written = self.written().map_err(|_| "the agent has no spec yet".to_string())?;
            self.observed(&written)?;
            if crate::faults::dark(self.state_dir(), self.site()) {
                return Err("a drill's stop_site is in force: this site is dark, as if its host were lost".into());
            }
            let current = self
                .context
                .desired()
                .map_err(|e| e.to_string())?
                .unwrap_or(written.clone());
            answer.primary_for = self.primary_for(&current);
            answer.standby_for = standby_groups(self.engine(), &written, &current, self.site());
            let wanted = |groups: &[String]| group.map_or(!groups.is_empty(), |g| groups.iter().any(|x| x == g));
            Ok(match op {
                Op::Primary => wanted(&answer.primary_for),
                Op::Standby => {
                    if !wanted(&answer.standby_for) {
                        false
                    } else if let Some(max) = max_lag {
                        let lag = self.standby_lag(&current)?;
                        answer.lag_seconds = Some(lag);
                        lag <= max.as_secs_f64()
                    } else {
                        true
                    }
                }
                _ => true,
            })
        })();
        match outcome {
            Ok(ok) => answer.ok = ok,
            Err(e) => answer.detail = Some(e),
        }
        Reply::json(if answer.ok { 200 } else { 503 }, &answer)
    }

    fn standby_lag(&self, current: &Desired) -> Result<f64, String> {
        let system = &current.loaded.system;
        let protector = Protector::new(system, self.engine(), self.state_dir());
        let mut worst: f64 = 0.0;
        for name in system.datasets.keys() {
            if protector.standby_site(name).ok().flatten().as_deref() == Some(self.site()) {
                let lag = protector.standby_lag(name, self.site()).map_err(|e| e.to_string())?;
                worst = worst.max(lag.seconds.ok_or_else(|| format!("the lag of `{name}` is unknown"))?);
            }
        }
        Ok(worst)
    }

    fn start_run(&self, request: &Request) -> Reply {
        let start: StartRun = match request.json() {
            Ok(s) => s,
            Err(reply) => return reply,
        };
        if start.to != self.site() {
            return Reply::problem(
                400,
                format!(
                    "this is site `{}`'s agent: a run is executed by its target's agent; ask `{}`'s",
                    self.site(),
                    start.to
                ),
            );
        }
        let written = match self.written() {
            Ok(w) => w,
            Err(reply) => return reply,
        };
        if !written.loaded.system.sites.contains_key(&start.from) {
            return Reply::problem(400, format!("no site `{}` in the spec", start.from));
        }
        let current = match self.current() {
            Ok(c) => c,
            Err(reply) => return reply,
        };
        let Some(group_site) = crate::failover::group_site(&written.loaded.system, &current.loaded.system, &start.from)
        else {
            return Reply::problem(
                409,
                format!("no service is active at `{}`: nothing to move", start.from),
            );
        };
        if let Err(reply) = self.check_epoch(&written, &group_site, start.epoch) {
            return reply;
        }
        if crate::failover::run_in_progress(self.state_dir()) {
            return Reply::problem(409, "a run is in progress at this site; follow it with `resurgo runs`");
        }
        let options = RunOptions {
            failback: start.kind == PlanKind::Failback,
            local: Some(self.site().to_string()),
            accept_data_loss: start.accept_data_loss,
            detection: None,
        };
        let (tx, rx) = mpsc::channel::<Result<String, String>>();
        let (engine, state_dir, from, to) = (
            self.engine().clone(),
            self.state_dir().to_path_buf(),
            start.from,
            start.to,
        );
        let spawned = std::thread::Builder::new().name("api-run".into()).spawn(move || {
            // A failback first brings this site up as a standby of the current primary and
            // waits for it to catch up.
            if options.failback {
                let prepared = crate::failover::prepare_failback(
                    &engine
                        .clone()
                        .with_preparer(crate::protect::standby_preparer(&engine, &current.loaded.system)),
                    &current,
                    &state_dir,
                    &from,
                    &to,
                    FAILBACK_CATCH_UP,
                    &|line| tracing::info!("{line}"),
                );
                if let Err(e) = prepared {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
            // mpsc senders are not Sync: shared behind a lock with the journal's observer.
            let announce = std::sync::Mutex::new(tx.clone());
            crate::failover::record_start(&state_dir, &from, &to, options.failback);
            let result = crate::failover::execute_announced(
                &written.loaded.system,
                &current.loaded.system,
                &engine,
                &state_dir,
                &from,
                &to,
                options,
                Box::new(move |id: &str| {
                    let _ = announce
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .send(Ok(id.to_string()));
                }),
            );
            crate::failover::record_end(&state_dir, &to, &result);
            if let Err(e) = result {
                let _ = tx.send(Err(e.to_string()));
            }
        });
        if let Err(e) = spawned {
            return Reply::problem(500, format!("cannot start the run: {e}"));
        }
        match rx.recv_timeout(FAILBACK_CATCH_UP + Duration::from_secs(60)) {
            Ok(Ok(run)) => Reply::json(202, &RunStarted { run }),
            Ok(Err(e)) => Reply::problem(409, e),
            Err(_) => Reply::problem(
                500,
                "the run did not start within 60 s; see `resurgo runs` at this site",
            ),
        }
    }

    /// Refuses an action whose caller saw `group_site`'s group at another epoch than the
    /// store's: it acted on a view that has changed since.
    fn check_epoch(&self, desired: &Desired, group_site: &str, epoch: u64) -> Result<(), Reply> {
        let group = group_of(group_site);
        let store = open_store(&desired.loaded.system, self.state_dir())
            .map_err(|e| Reply::problem(503, format!("cannot read the coordination store: {e}")))?;
        let now = store
            .get_assignment(&group)
            .map_err(|e| Reply::problem(503, format!("cannot read the coordination store: {e}")))?
            .map_or(0, |a| a.epoch);
        if now != epoch {
            return Err(Reply::problem(
                409,
                format!("stale epoch: group `{group}` is at epoch {now}, the request was made at epoch {epoch}; read `resurgo status` again"),
            ));
        }
        Ok(())
    }

    fn plan(&self, request: &Request) -> Reply {
        let prune = match request.query("prune") {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Reply::problem(400, format!("prune: `true` or `false`, not `{other}`")),
        };
        let max_deletes = match request.query("max_deletes").map(str::parse::<usize>).transpose() {
            Ok(n) => n.unwrap_or(5),
            Err(_) => return Reply::problem(400, "max_deletes: a number"),
        };
        let current = match self.current() {
            Ok(c) => c,
            Err(reply) => return reply,
        };
        match crate::site::plan_site(
            self.engine(),
            &current,
            self.site(),
            resurgo_plan::PlanOptions { prune, max_deletes },
        ) {
            Ok((plan, _)) => Reply::json(200, &plan),
            Err(e) => Reply::problem(409, e),
        }
    }

    fn apply(&self, request: &Request) -> Reply {
        let asked: resurgo_api::types::ApplyRequest = match request.json() {
            Ok(a) => a,
            Err(reply) => return reply,
        };
        // The spec asked for may be a commit just pushed: have the source read again, and
        // wait a little for it.
        let runs_asked = |api: &SiteApi| api.written().is_ok_and(|w| w.source.label() == asked.desired);
        if !runs_asked(self) {
            self.context.request_poll();
            let deadline = std::time::Instant::now() + RELOAD_WAIT;
            while !runs_asked(self) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let current = match self.current() {
            Ok(c) => c,
            Err(reply) => return reply,
        };
        let running = current.source.label();
        if running != asked.desired {
            return Reply::problem(
                409,
                format!(
                    "`{}`'s agent runs the spec {running}, not {}: push the change to the spec's repository (the agents read it themselves), then plan and apply again",
                    self.site(), asked.desired
                ),
            );
        }
        let options = resurgo_plan::PlanOptions {
            prune: asked.prune,
            max_deletes: asked.max_deletes,
        };
        match crate::site::apply_site(self.engine(), &current, self.state_dir(), self.site(), options) {
            Ok(applied) => Reply::json(200, &applied),
            Err(e) => Reply::problem(500, e),
        }
    }

    /// The maintenance switch (the lease `maintenance` in the store), changed as `asked`.
    fn maintenance(&self, asked: Option<resurgo_api::types::MaintenanceRequest>) -> Reply {
        use crate::roles::MAINTENANCE;
        let written = match self.written() {
            Ok(w) => w,
            Err(reply) => return reply,
        };
        let store = match open_store(&written.loaded.system, self.state_dir()) {
            Ok(s) => s,
            Err(e) => return Reply::problem(503, format!("cannot open the coordination store: {e}")),
        };
        let unavailable = |e: resurgo_coord::StoreError| Reply::problem(503, format!("coordination store: {e}"));
        match asked {
            Some(asked) if asked.on => {
                let Some(seconds) = asked.seconds.filter(|s| *s > 0) else {
                    return Reply::problem(
                        400,
                        "maintenance on needs `seconds` greater than zero: it ends by itself",
                    );
                };
                let by = asked.by.unwrap_or_else(|| "the site API".into());
                match store.grant_lease(MAINTENANCE, &by, Duration::from_secs(seconds)) {
                    Ok(_) => {}
                    Err(resurgo_coord::StoreError::LeaseHeld { holder, .. }) => {
                        return Reply::problem(
                            409,
                            format!("maintenance is already on (by {holder}); turn it off first"),
                        )
                    }
                    Err(e) => return unavailable(e),
                }
            }
            Some(_) => match store.lease_of(MAINTENANCE) {
                Ok(Some(id)) => {
                    if let Err(e) = store.revoke(id) {
                        return unavailable(e);
                    }
                }
                Ok(None) => {}
                Err(e) => return unavailable(e),
            },
            None => {}
        }
        match store.lease_holder(MAINTENANCE) {
            Ok(held) => Reply::json(
                200,
                &resurgo_api::types::MaintenanceState {
                    maintenance: held.map(|(by, left)| resurgo_api::types::Maintenance {
                        by,
                        seconds_left: left.as_secs(),
                    }),
                },
            ),
            Err(e) => unavailable(e),
        }
    }

    /// This site's own repository: made or checked from here.
    fn repository(&self, request: &Request) -> Reply {
        use resurgo_api::types::{RepositoryAction, RepositoryDone, RepositoryRequest};
        let asked: RepositoryRequest = match request.json() {
            Ok(a) => a,
            Err(reply) => return reply,
        };
        let written = match self.written() {
            Ok(w) => w,
            Err(reply) => return reply,
        };
        let system = &written.loaded.system;
        let protector = Protector::new(system, self.engine(), self.state_dir());
        let done = |location: String, detail: String| {
            Reply::json(
                200,
                &RepositoryDone {
                    site: self.site().to_string(),
                    action: asked.action,
                    location,
                    detail,
                },
            )
        };
        let failed = |e: String| Reply::problem(500, format!("the repository of `{}`: {e}", self.site()));
        match asked.action {
            RepositoryAction::Init => match protector.init(self.site()) {
                Ok(repo) => done(repo.location(), "created".into()),
                Err(e) => failed(e.to_string()),
            },
            RepositoryAction::Check => match protector.open(self.site()) {
                Ok(repo) => match repo.check(asked.read_data) {
                    Ok(report) if report.errors.is_empty() => done(
                        repo.location(),
                        format!(
                            "no errors ({} snapshots, {} packs read)",
                            report.snapshots, report.packs_read
                        ),
                    ),
                    Ok(report) => failed(format!("{} errors: {}", report.errors.len(), report.errors.join("; "))),
                    Err(e) => failed(e.to_string()),
                },
                Err(e) => failed(e.to_string()),
            },
        }
    }

    fn runs(&self, only: Option<&str>) -> Reply {
        match crate::report::runs(self.state_dir(), only) {
            Ok(runs) if only.is_some() && runs.is_empty() => {
                Reply::problem(404, format!("no run `{}` at this site", only.unwrap_or("")))
            }
            Ok(runs) => Reply::json(
                200,
                &Runs {
                    format_version: RUNS_FORMAT_VERSION,
                    runs,
                },
            ),
            Err(e) => Reply::problem(500, e),
        }
    }

    fn dataset(&self, action: &str, dataset: &str, request: &Request) -> Reply {
        let asked: DatasetRequest = match request.json() {
            Ok(a) => a,
            Err(reply) => return reply,
        };
        let written = match self.written() {
            Ok(w) => w,
            Err(reply) => return reply,
        };
        let Some(ds) = written.loaded.system.datasets.get(dataset) else {
            return Reply::problem(404, format!("no dataset `{dataset}` in the spec"));
        };
        let Some(owner) = written.loaded.system.services.get(&ds.service) else {
            return Reply::problem(404, format!("dataset `{dataset}`: no service `{}`", ds.service));
        };
        if let Err(reply) = self.check_epoch(&written, &owner.site.clone(), asked.epoch) {
            return reply;
        }
        let current = match self.current() {
            Ok(c) => c,
            Err(reply) => return reply,
        };
        let system = &current.loaded.system;
        let protector = Protector::new(system, self.engine(), self.state_dir());
        let done = |detail: String| {
            Reply::json(
                200,
                &DatasetDone {
                    dataset: dataset.to_string(),
                    site: self.site().to_string(),
                    action: action.to_string(),
                    detail,
                },
            )
        };
        let failed = |e: crate::protect::ProtectError| {
            Reply::problem(500, format!("{action} of `{dataset}` at `{}`: {e}", self.site()))
        };
        match action {
            "backup" => {
                if protector.home_site(dataset).ok().as_deref() != Some(self.site()) {
                    return Reply::problem(
                        409,
                        format!(
                            "`{dataset}` is not active at `{}`: back it up at its home site",
                            self.site()
                        ),
                    );
                }
                let snapshot = match protector.backup(dataset) {
                    Ok(s) => s,
                    Err(e) => return failed(e),
                };
                let mut detail = format!(
                    "snapshot {} at {} ({} bytes)",
                    &snapshot.id[..snapshot.id.len().min(8)],
                    snapshot.time,
                    snapshot.bytes
                );
                if asked.replicate {
                    // From here, where the data is, into each replica site's repository.
                    for to in protector.replica_sites(dataset).unwrap_or_default() {
                        match protector.replicate(Some(dataset), self.site(), &to) {
                            Ok(r) => detail.push_str(&format!(
                                "; replicated to {to} ({} snapshots copied)",
                                r.snapshots_copied
                            )),
                            Err(e) => return failed(e),
                        }
                    }
                }
                done(detail)
            }
            "verify" => match protector.verify(dataset, self.site()) {
                Ok(v) => done(format!(
                    "snapshot {} of {} verified: {}",
                    v.snapshot, v.snapshot_time, v.check
                )),
                Err(e) => failed(e),
            },
            _ => {
                // Restored beside the live data, never over it: a person moves it into place.
                let to = self
                    .state_dir()
                    .join("restores")
                    .join(format!("{dataset}-{}", crate::events::now_rfc3339().replace(':', "")));
                match protector.restore(
                    dataset,
                    self.site(),
                    asked.at.as_deref(),
                    &to,
                    crate::protect::RestoreFor::Inspection,
                ) {
                    Ok(s) => done(format!(
                        "snapshot {} of {} restored into {}",
                        &s.id[..s.id.len().min(8)],
                        s.time,
                        to.display()
                    )),
                    Err(e) => failed(e),
                }
            }
        }
    }

    /// Where this site's faults are applied: the spec with the assignments applied (a kill is
    /// for where the service is active now), and the agent's switch.
    fn fault_site<'a>(
        &'a self,
        system: &'a resurgo_spec::System,
        switch: &'a std::sync::atomic::AtomicBool,
    ) -> crate::faults::FaultSite<'a> {
        crate::faults::FaultSite {
            site: self.site(),
            system,
            engine: self.engine(),
            state_dir: self.state_dir(),
            answering: Some(switch),
        }
    }

    fn fault_error(e: crate::faults::FaultError) -> Reply {
        use crate::faults::FaultError;
        let status = match &e {
            FaultError::NotHere(_) => 409,
            FaultError::Bad(_) => 400,
            FaultError::Record { .. } | FaultError::Failed(_) => 500,
        };
        Reply::problem(status, e.to_string())
    }

    fn apply_fault(&self, request: &Request) -> Reply {
        let order: resurgo_api::types::FaultOrder = match request.json() {
            Ok(o) => o,
            Err(reply) => return reply,
        };
        let current = match self.current() {
            Ok(c) => c,
            Err(reply) => return reply,
        };
        let switch = self.context.agent_switch();
        match crate::faults::apply(&self.fault_site(&current.loaded.system, &switch), &order) {
            Ok(in_force) => Reply::json(201, &in_force),
            Err(e) => Self::fault_error(e),
        }
    }

    fn revert_fault(&self, id: &str) -> Reply {
        let written = match self.written() {
            Ok(w) => w,
            Err(reply) => return reply,
        };
        let switch = self.context.agent_switch();
        match crate::faults::revert(&self.fault_site(&written.loaded.system, &switch), id) {
            Ok(was) => Reply::json(
                200,
                &resurgo_api::types::FaultReverted {
                    site: self.site().to_string(),
                    id: id.to_string(),
                    was_in_force: was,
                },
            ),
            Err(e) => Self::fault_error(e),
        }
    }

    /// A sandbox at this site for an isolated drill's test failover ([`crate::sandbox`]): made
    /// from this site's own repository, by this site, with the spec as it stands here.
    fn make_sandbox(&self, request: &Request) -> Reply {
        let asked: resurgo_api::types::SandboxRequest = match request.json() {
            Ok(a) => a,
            Err(reply) => return reply,
        };
        let written = match self.written() {
            Ok(w) => w,
            Err(reply) => return reply,
        };
        if asked.id.is_empty() || !asked.id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Reply::problem(
                400,
                format!("sandbox id `{}`: use letters, digits, `-`, `_`, `.`", asked.id),
            );
        }
        match crate::sandbox::make(
            self.engine(),
            &written.loaded.system,
            self.state_dir(),
            self.site(),
            &asked.id,
            &asked.services,
        ) {
            Ok(made) => Reply::json(201, &made),
            Err(e) => Reply::problem(500, format!("the sandbox could not be made here: {e}")),
        }
    }

    fn sandbox_state(&self, id: &str) -> resurgo_api::types::SandboxState {
        let system = self.written().map(|w| w.loaded.system.clone()).unwrap_or_default();
        crate::sandbox::state(self.engine(), &system, self.state_dir(), self.site(), id)
    }

    fn sandbox(&self, id: &str) -> Reply {
        Reply::json(200, &self.sandbox_state(id))
    }

    fn check_sandbox(&self, id: &str, request: &Request) -> Reply {
        let asked: resurgo_api::types::SandboxCheckRequest = match request.json() {
            Ok(a) => a,
            Err(reply) => return reply,
        };
        let written = match self.written() {
            Ok(w) => w,
            Err(reply) => return reply,
        };
        match crate::sandbox::check(
            self.engine(),
            &written.loaded.system,
            self.state_dir(),
            id,
            &asked.endpoints,
        ) {
            Ok(checked) => Reply::json(200, &checked),
            Err(e) => Reply::problem(404, e),
        }
    }

    /// Workspace `name` if it is recorded here and is this site's (one state folder may hold
    /// every site's, with `controller --agents`).
    fn own_workspace(&self, name: &str) -> Result<crate::workspace::Record, Reply> {
        crate::workspace::find(self.state_dir(), name)
            .filter(|r| r.site == self.site())
            .ok_or_else(|| Reply::problem(404, format!("no workspace `{name}` at `{}`", self.site())))
    }

    /// A workspace's making (or re-making) failed: refused before anything was made (409), or
    /// failed and cleaned up (500).
    fn workspace_error(e: crate::workspace::NotMade) -> Reply {
        match e {
            crate::workspace::NotMade::Refused(e) => Reply::problem(409, e),
            crate::workspace::NotMade::Failed(e) => Reply::problem(500, e),
        }
    }

    fn workspaces(&self) -> Reply {
        Reply::json(
            200,
            &resurgo_api::types::Workspaces {
                site: self.site().to_string(),
                workspaces: crate::report::workspace_records(self.state_dir(), Some(self.site())),
            },
        )
    }

    /// A workspace made here ([`crate::workspace::create`]), from this site's own repository,
    /// with the spec as written here; answered once it serves.
    fn make_workspace(&self, request: &Request) -> Reply {
        let asked: resurgo_api::types::WorkspaceRequest = match request.json() {
            Ok(a) => a,
            Err(reply) => return reply,
        };
        if asked.policy.site != self.site() {
            return Reply::problem(
                400,
                format!(
                    "this is site `{}`'s agent: a workspace is made by its own site's agent; ask `{}`'s",
                    self.site(),
                    asked.policy.site
                ),
            );
        }
        let written = match self.written() {
            Ok(w) => w,
            Err(reply) => return reply,
        };
        let system = &written.loaded.system;
        let problems = resurgo_spec::check_workspace(system, &asked.name, &asked.policy);
        if !problems.is_empty() {
            return Reply::problem(400, problems.join("; "));
        }
        match crate::workspace::create(self.engine(), system, self.state_dir(), &asked.name, &asked.policy) {
            Ok(record) => Reply::json(201, &crate::report::workspace_record(&record)),
            Err(e) => Self::workspace_error(e),
        }
    }

    fn delete_workspace(&self, name: &str) -> Reply {
        if let Err(reply) = self.own_workspace(name) {
            return reply;
        }
        if let Err(e) = crate::workspace::delete(self.state_dir(), name) {
            return Reply::problem(
                500,
                format!("workspace `{name}` could not be deleted at `{}`: {e}", self.site()),
            );
        }
        let leftovers = crate::workspace::leftovers(self.state_dir(), name, self.site())
            .into_iter()
            .map(|(kind, what, place)| resurgo_api::types::SandboxLeftover { kind, what, place })
            .collect();
        Reply::json(
            200,
            &resurgo_api::types::WorkspaceDeleted {
                site: self.site().to_string(),
                name: name.to_string(),
                leftovers,
            },
        )
    }

    fn refresh_workspace(&self, name: &str) -> Reply {
        if let Err(reply) = self.own_workspace(name) {
            return reply;
        }
        let written = match self.written() {
            Ok(w) => w,
            Err(reply) => return reply,
        };
        match crate::workspace::refresh(self.engine(), &written.loaded.system, self.state_dir(), name) {
            Ok(record) => Reply::json(200, &crate::report::workspace_record(&record)),
            Err(e) => Self::workspace_error(e),
        }
    }

    fn faults(&self) -> Reply {
        match crate::faults::in_force(self.state_dir(), self.site()) {
            Ok(faults) => Reply::json(
                200,
                &resurgo_api::types::Faults {
                    site: self.site().to_string(),
                    faults,
                },
            ),
            Err(e) => Self::fault_error(e),
        }
    }

    fn events(&self, request: &Request) -> Reply {
        let since = match request.query("since").map(str::parse::<usize>).transpose() {
            Ok(s) => s,
            Err(_) => return Reply::problem(400, "since: a line number"),
        };
        let path = crate::events::EventLog::of_state(self.state_dir()).path().to_path_buf();
        Reply::Events(Box::new(move |out: &mut dyn Write| {
            // Lines already there are skipped unless asked for; then every new line is sent
            // once it is whole, with a comment every 10 s so that a dead client is noticed.
            let mut tail = crate::events::Tail::new(path);
            let there = tail.new_lines();
            let mut sent = since.unwrap_or(there.len()).min(there.len());
            let mut pending = there[sent..].to_vec();
            let mut idle = std::time::Instant::now();
            loop {
                let lines = if pending.is_empty() {
                    tail.new_lines()
                } else {
                    std::mem::take(&mut pending)
                };
                for line in &lines {
                    sent += 1;
                    write!(out, "id: {sent}\ndata: {line}\n\n")?;
                }
                if !lines.is_empty() {
                    out.flush()?;
                    idle = std::time::Instant::now();
                } else if idle.elapsed() >= Duration::from_secs(10) {
                    out.write_all(b": keep-alive\n\n")?;
                    out.flush()?;
                    idle = std::time::Instant::now();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }))
    }
}

impl SiteApi {
    /// This site's metrics, computed now from what is stored (`metrics.rs`), against the spec
    /// with the store's assignments applied (as `GET /v1/site`).
    fn metrics(&self) -> Reply {
        let begun = std::time::Instant::now();
        let current = match self.current_or_written() {
            Ok(c) => c,
            Err(reply) => return reply,
        };
        let loaded = begun.elapsed();
        let inputs = crate::metrics::read(
            self.engine(),
            &current.loaded.system,
            &current.source,
            self.state_dir(),
            self.site(),
        );
        let read = begun.elapsed();
        let body = crate::metrics::exposition(&inputs).into_bytes();
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        tracing::debug!(
            millis = ms(begun.elapsed()),
            spec_ms = ms(loaded),
            read_ms = ms(read - loaded),
            render_ms = ms(begun.elapsed() - read),
            bytes = body.len(),
            "scrape"
        );
        Reply::Text {
            status: 200,
            content_type: resurgo_api::server::METRICS_CONTENT_TYPE,
            body,
        }
    }
}

impl SiteApi {
    /// `GET /v1/cost`: this site's figures, priced with the spec's prices.
    fn cost(&self) -> Reply {
        let current = match self.current_or_written() {
            Ok(c) => c,
            Err(reply) => return reply,
        };
        let system = &current.loaded.system;
        let measured = crate::cost::measure(self.engine(), system, self.state_dir(), Some(self.site()));
        Reply::json(
            200,
            &resurgo_plan::cost::cost(system, system.prices.as_ref(), &measured),
        )
    }
}

/// The groups whose standby this site keeps: a `strategy: standby` dataset's service placed
/// (in the spec as written) at the group's site, with its standby here now.
fn standby_groups(engine: &Engine, written: &Desired, current: &Desired, site: &str) -> Vec<String> {
    let system = &current.loaded.system;
    let protector = Protector::new(system, engine, std::path::Path::new(""));
    let mut groups: Vec<String> = system
        .datasets
        .iter()
        .filter(|(name, _)| protector.standby_site(name).ok().flatten().as_deref() == Some(site))
        .filter_map(|(_, ds)| written.loaded.system.services.get(&ds.service))
        .map(|svc| group_of(&svc.site))
        .collect();
    groups.dedup();
    groups
}

impl Handler for SiteApi {
    fn handle(&self, op: Op, request: &Request) -> Reply {
        match &op {
            Op::Health | Op::Primary | Op::Standby => self.health(&op, request),
            Op::Site => {
                let written = match self.written() {
                    Ok(w) => w,
                    Err(reply) => return reply,
                };
                // The store cannot be read: the site as written, and why the roles are missing.
                let (current, error) = match self.context.desired() {
                    Ok(Some(current)) => (current, None),
                    Ok(None) => (written, None),
                    Err(e) => (written, Some(e.to_string())),
                };
                let mut report = crate::report::site_report(
                    self.engine(),
                    &current.loaded.system,
                    &current.source,
                    self.state_dir(),
                    self.site(),
                );
                if error.is_some() {
                    report.roles_error = error;
                }
                Reply::json(200, &report)
            }
            Op::Plan => self.plan(request),
            Op::Apply => self.apply(request),
            Op::Maintenance => self.maintenance(None),
            Op::SetMaintenance => match request.json::<resurgo_api::types::MaintenanceRequest>() {
                Ok(asked) => self.maintenance(Some(asked)),
                Err(reply) => reply,
            },
            Op::Repository => self.repository(request),
            Op::Runs => self.runs(None),
            Op::Run { id } => self.runs(Some(id)),
            Op::StartRun => self.start_run(request),
            Op::Backup { dataset } => self.dataset("backup", dataset, request),
            Op::Verify { dataset } => self.dataset("verify", dataset, request),
            Op::Restore { dataset } => self.dataset("restore", dataset, request),
            Op::Faults => self.faults(),
            Op::ApplyFault => self.apply_fault(request),
            Op::RevertFault { id } => self.revert_fault(id),
            Op::MakeSandbox => self.make_sandbox(request),
            Op::Sandbox { id } => self.sandbox(id),
            Op::CheckSandbox { id } => self.check_sandbox(id, request),
            Op::DestroySandbox { id } => match crate::sandbox::destroy(self.state_dir(), id) {
                Ok(()) => Reply::json(200, &self.sandbox_state(id)),
                Err(e) => Reply::problem(500, format!("sandbox {id} could not be destroyed here: {e}")),
            },
            Op::Workspaces => self.workspaces(),
            Op::MakeWorkspace => self.make_workspace(request),
            Op::Workspace { name } => match self.own_workspace(name) {
                Ok(record) => Reply::json(200, &crate::report::workspace_record(&record)),
                Err(reply) => reply,
            },
            Op::DeleteWorkspace { name } => self.delete_workspace(name),
            Op::RefreshWorkspace { name } => self.refresh_workspace(name),
            Op::Events | Op::UiEvents => self.events(request),
            Op::Metrics => self.metrics(),
            Op::Dashboard | Op::Panel | Op::Confirm | Op::Act | Op::UiRun { .. } | Op::UiDrill { .. } | Op::UiCost => {
                self.dashboard(op, request)
            }
            // Answered by the server itself (static files, signing in and out).
            Op::Cost => self.cost(),
            Op::Asset { .. } | Op::LoginPage | Op::Login | Op::Logout => Reply::problem(404, "not the handler's"),
        }
    }
}

/// The dashboard (`dashboard.rs` renders it): every site through the agents, and the actions
/// it starts — each through the agent that carries it out, as the CLI asks them.
impl SiteApi {
    fn dashboard(&self, op: Op, request: &Request) -> Reply {
        use resurgo_api::ui::{message_page, page, Frame};
        let Some(client) = &self.peers else {
            return message_page(
                503,
                "No dashboard",
                "This agent has no credentials to ask the sites' agents.",
            );
        };
        let written = match self.written() {
            Ok(w) => w,
            Err(_) => return message_page(503, "No dashboard yet", "The agent has no spec yet."),
        };
        let system = &written.loaded.system;
        let subtitle = format!("{} — served by {}", system.name, self.site());
        let framed = |title: &str, refresh: Option<&str>, body: &str| {
            let frame = Frame {
                title,
                subtitle: &subtitle,
                refresh,
                signed_in: true,
            };
            Reply::html(200, page(&frame, body))
        };
        // Every site through the agents: asked only by the pages that show or act on it.
        let fleet = || crate::fleet::status(client, self.engine(), self.state_dir(), &written);
        let view = |status, current, runs, drills, events| crate::dashboard::View {
            here: self.site(),
            written: system,
            current,
            status,
            runs,
            drills,
            events,
        };
        match op {
            Op::Dashboard | Op::Panel => {
                let (status, current) = fleet();
                let runs = self.all_runs(client, system);
                let drills = crate::drill::reports(self.state_dir());
                if op == Op::Panel {
                    let view = view(&status, &current, runs, drills, Vec::new());
                    return Reply::html(200, crate::dashboard::panel(&view));
                }
                // Only the whole page lists the latest events; the script adds new ones.
                let events = crate::events::EventLog::of_state(self.state_dir())
                    .read()
                    .unwrap_or_default()
                    .into_iter()
                    .rev()
                    .take(30)
                    .collect();
                let view = view(&status, &current, runs, drills, events);
                framed("Dashboard", Some("/ui/panel"), &crate::dashboard::body(&view))
            }
            Op::Confirm => {
                let (status, current) = fleet();
                match crate::dashboard::Action::parse(&request.query, system, &current) {
                    Ok(action) => {
                        let view = view(&status, &current, Vec::new(), Vec::new(), Vec::new());
                        framed(
                            "Confirm",
                            None,
                            &crate::dashboard::confirm(&action, &view, &request.csrf),
                        )
                    }
                    Err(e) => message_page(400, "No such action", &e),
                }
            }
            Op::Act => {
                let (status, current) = fleet();
                let fields = request.form().unwrap_or_default();
                match crate::dashboard::Action::parse(&fields, system, &current) {
                    Ok(action) => self.act(client, &written, &current, &status, &action, &fields),
                    Err(e) => message_page(400, "Not done", &e),
                }
            }
            Op::UiRun { id } => {
                let site = request.query("site").unwrap_or(self.site()).to_string();
                let path = format!("/v1/runs/{id}");
                let addr = system.api_address(&site).unwrap_or_default();
                let run = match client.get::<Runs>(&addr, &path) {
                    Ok(mut runs) => match runs.runs.pop() {
                        Some(run) => run,
                        None => return message_page(404, "No such run", &format!("`{site}`'s agent has no run {id}")),
                    },
                    Err(resurgo_api::ClientError::Refused { status: 404, .. }) => {
                        return message_page(404, "No such run", &format!("`{site}`'s agent has no run {id}"))
                    }
                    Err(e) => return message_page(502, "Run unknown", &format!("asking `{site}`'s agent: {e}")),
                };
                let body = crate::dashboard::run_page(&run, &site);
                if request.query("part") == Some("panel") {
                    return Reply::html(200, body);
                }
                let refresh = format!("/ui/runs/{id}?site={site}&part=panel");
                framed(
                    "Run",
                    Some(&refresh),
                    &format!("<div id=\"panel\">\n{body}</div>\n<p><a class=\"action\" href=\"/ui\">Back to the dashboard</a></p>"),
                )
            }
            Op::UiCost => {
                let (measured, notes) = crate::fleet::measured(client, system, self.state_dir());
                let mut report = resurgo_plan::cost::cost(system, system.prices.as_ref(), &measured);
                report.notes.extend(notes);
                framed("Cost of DR", None, &crate::dashboard::cost_page(&report))
            }
            Op::UiDrill { run } => {
                let Some(report) = crate::drill::report(self.state_dir(), &run) else {
                    return message_page(
                        404,
                        "No such drill report",
                        &format!("no report of drill run {run} here"),
                    );
                };
                // The report is a document of its own, its style inline.
                Reply::Page {
                    status: 200,
                    content_type: "text/html; charset=utf-8",
                    body: resurgo_drill::html(&report).into_bytes(),
                    headers: vec![(
                        "Content-Security-Policy",
                        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'".into(),
                    )],
                }
            }
            _ => Reply::problem(404, "not a dashboard page"),
        }
    }

    /// Each site's runs, newest first, asked of its agent.
    fn all_runs(
        &self,
        client: &resurgo_api::Client,
        system: &resurgo_spec::System,
    ) -> Vec<(String, Result<Vec<resurgo_api::types::Run>, String>)> {
        let sites: Vec<&String> = system.sites.keys().collect();
        crate::fleet::ask_each(client, system, &sites, |client, addr| {
            client.get::<Runs>(addr, "/v1/runs")
        })
        .into_iter()
        .map(|(site, answer)| {
            (
                site,
                answer
                    .map(|r| r.runs.into_iter().rev().collect())
                    .map_err(|e| e.to_string()),
            )
        })
        .collect()
    }

    /// Does what a confirmed form asks: a move through its target's agent (as `resurgo
    /// failover` asks it), the maintenance switch, or an isolated drill here.
    fn act(
        &self,
        client: &resurgo_api::Client,
        written: &Desired,
        current: &resurgo_spec::System,
        status: &resurgo_api::types::Status,
        action: &crate::dashboard::Action,
        fields: &[(String, String)],
    ) -> Reply {
        use crate::dashboard::Action;
        use resurgo_api::ui::message_page;
        let who = format!("the dashboard at {}", self.site());
        match action {
            Action::Move { from, to, failback } => {
                let system = &written.loaded.system;
                let kind = if *failback {
                    PlanKind::Failback
                } else {
                    PlanKind::Failover
                };
                let accept_data_loss = fields.iter().any(|(k, v)| k == "accept_data_loss" && v == "true");
                let Some(start) =
                    crate::fleet::move_request(system, current, &status.roles, kind, from, to, accept_data_loss)
                else {
                    return message_page(409, "Not done", &format!("no service is active at `{from}`"));
                };
                let addr = system.api_address(to).unwrap_or_default();
                match client.post::<_, RunStarted>(&addr, "/v1/runs", &start) {
                    Ok(started) => {
                        tracing::info!(run = %started.run, from = %from, to = %to, "{who} started a {}", start.kind);
                        Reply::see_other(&format!("/ui/runs/{}?site={to}", started.run))
                    }
                    Err(e) => message_page(
                        409,
                        "Not started",
                        &format!("`{to}`'s agent refused the {}: {e}", start.kind),
                    ),
                }
            }
            Action::Maintenance { on } => {
                let reply = self.maintenance(Some(resurgo_api::types::MaintenanceRequest {
                    on: *on,
                    seconds: on.then_some(3600),
                    by: Some(who),
                }));
                if reply.status() == 200 {
                    Reply::see_other("/ui")
                } else {
                    message_page(
                        409,
                        "Not done",
                        "the maintenance switch did not change: see the event log",
                    )
                }
            }
            Action::Drill { name } => {
                let (context, name_run) = (self.context.clone(), name.clone());
                let spawned = std::thread::Builder::new().name("ui-drill".into()).spawn(move || {
                    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                    match crate::daemon::run_drill_here(&context, &name_run, who, stop) {
                        Ok(report) => tracing::info!(drill = %name_run, run = %report.run, verdict = report.verdict.as_str(), "drill ran"),
                        Err(e) => tracing::warn!(drill = %name_run, "drill not run: {e}"),
                    }
                });
                match spawned {
                    Ok(_) => Reply::see_other("/ui#drills"),
                    Err(e) => message_page(500, "Not started", &format!("cannot start the drill: {e}")),
                }
            }
        }
    }
}
