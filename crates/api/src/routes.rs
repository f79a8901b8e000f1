//! The site API's routes: one table that the server dispatches on and the OpenAPI document is
//! generated from, so the two cannot disagree (`schema/site-api.openapi.json` is checked
//! against it).

use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::types::{
    Applied, ApplyRequest, DatasetDone, DatasetRequest, FaultInForce, FaultOrder, FaultReverted, Faults, Health,
    MaintenanceRequest, MaintenanceState, Problem, RepositoryDone, RepositoryRequest, RunStarted, Runs,
    SandboxCheckRequest, SandboxChecked, SandboxMade, SandboxRequest, SandboxState, SiteReport, StartRun,
    WorkspaceDeleted, WorkspaceRecord, WorkspaceRequest, Workspaces,
};

/// What a request asks for, with its path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Health,
    Primary,
    Standby,
    Site,
    Plan,
    Apply,
    Maintenance,
    SetMaintenance,
    Repository,
    Runs,
    Run {
        id: String,
    },
    StartRun,
    Backup {
        dataset: String,
    },
    Verify {
        dataset: String,
    },
    Restore {
        dataset: String,
    },
    Faults,
    MakeSandbox,
    Sandbox {
        id: String,
    },
    CheckSandbox {
        id: String,
    },
    DestroySandbox {
        id: String,
    },
    ApplyFault,
    RevertFault {
        id: String,
    },
    Workspaces,
    MakeWorkspace,
    Workspace {
        name: String,
    },
    DeleteWorkspace {
        name: String,
    },
    RefreshWorkspace {
        name: String,
    },
    Events,
    Metrics,
    /// The dashboard (`/ui…`): its page, the live part of it, its event stream, a
    /// confirmation, an action, a run's and a drill's page, its static files, signing in.
    Dashboard,
    Panel,
    UiEvents,
    Confirm,
    Act,
    UiRun {
        id: String,
    },
    UiDrill {
        run: String,
    },
    UiCost,
    Asset {
        name: String,
    },
    LoginPage,
    Login,
    Logout,
    Cost,
}

/// One route: its method and path (`{name}` for a parameter), whether it answers without
/// credentials, and its documentation.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    /// Answers anyone: it tells only role and health (a load balancer's check).
    pub public: bool,
    pub operation: &'static str,
    pub summary: &'static str,
    request: Option<fn(&mut SchemaGenerator) -> schemars::Schema>,
    response: Body,
    /// The successful status.
    pub status: u16,
}

enum Body {
    Json(fn(&mut SchemaGenerator) -> schemars::Schema),
    EventStream,
    /// Prometheus's text exposition format.
    Metrics,
    /// A page of the dashboard (or one of its static files).
    Html,
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<T>()
}

/// Every route the site API serves.
pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/health",
        public: true,
        operation: "health",
        summary: "200 while the agent runs and observes its site; 503 when its site cannot be observed.",
        request: None,
        response: Body::Json(schema::<Health>),
        status: 200,
    },
    Route {
        method: "GET",
        path: "/primary",
        public: true,
        operation: "primary",
        summary: "200 when this site is primary (holds the lease, not fenced) for `group` (default: any group); else 503.",
        request: None,
        response: Body::Json(schema::<Health>),
        status: 200,
    },
    Route {
        method: "GET",
        path: "/standby",
        public: true,
        operation: "standby",
        summary: "200 when this site keeps a standby of `group` (default: any group) whose replay lag is at most `max_lag` (a duration, `5s`); else 503.",
        request: None,
        response: Body::Json(schema::<Health>),
        status: 200,
    },
    Route {
        method: "GET",
        path: "/v1/site",
        public: false,
        operation: "site",
        summary: "The site's observed state: services, drift, set-aside copies, what it holds of each dataset, and the roles.",
        request: None,
        response: Body::Json(schema::<SiteReport>),
        status: 200,
    },
    Route {
        method: "GET",
        path: "/v1/plan",
        public: false,
        operation: "plan",
        summary: "What an apply would change at this site, against the spec its agent runs (`prune`, `max_deletes` as for `resurgo plan`).",
        request: None,
        response: Body::Json(schema::<resurgo_plan::Plan>),
        status: 200,
    },
    Route {
        method: "POST",
        path: "/v1/apply",
        public: false,
        operation: "apply",
        summary: "Make this site match the spec its agent runs; refused (409) when that is not the spec the caller planned with.",
        request: Some(schema::<ApplyRequest>),
        response: Body::Json(schema::<Applied>),
        status: 200,
    },
    Route {
        method: "GET",
        path: "/v1/maintenance",
        public: false,
        operation: "maintenance",
        summary: "Whether the maintenance switch is on (no agent fails over by itself), by whom, for how long.",
        request: None,
        response: Body::Json(schema::<MaintenanceState>),
        status: 200,
    },
    Route {
        method: "POST",
        path: "/v1/maintenance",
        public: false,
        operation: "set_maintenance",
        summary: "Turn the maintenance switch on (for `seconds`, by `by`) or off; refused (409) when it is on already.",
        request: Some(schema::<MaintenanceRequest>),
        response: Body::Json(schema::<MaintenanceState>),
        status: 200,
    },
    Route {
        method: "GET",
        path: "/v1/runs",
        public: false,
        operation: "runs",
        summary: "The failover and failback runs this site's agent executed, oldest first, with their measures.",
        request: None,
        response: Body::Json(schema::<Runs>),
        status: 200,
    },
    Route {
        method: "GET",
        path: "/v1/runs/{id}",
        public: false,
        operation: "run",
        summary: "One run: its journal so far as a report (follow it by asking again until it is no longer running).",
        request: None,
        response: Body::Json(schema::<Runs>),
        status: 200,
    },
    Route {
        method: "POST",
        path: "/v1/runs",
        public: false,
        operation: "start_run",
        summary: "Start a failover or failback whose target is this site; refused (409) when the epoch given is stale or a run is in progress.",
        request: Some(schema::<StartRun>),
        response: Body::Json(schema::<RunStarted>),
        status: 202,
    },
    Route {
        method: "POST",
        path: "/v1/repository",
        public: false,
        operation: "repository",
        summary: "Create (`init`) or check (`check`, `read_data`) this site's backup repository, from this site.",
        request: Some(schema::<RepositoryRequest>),
        response: Body::Json(schema::<RepositoryDone>),
        status: 200,
    },
    Route {
        method: "POST",
        path: "/v1/datasets/{name}/backup",
        public: false,
        operation: "backup",
        summary: "Back the dataset up now into this site's repository (its home must be this site).",
        request: Some(schema::<DatasetRequest>),
        response: Body::Json(schema::<DatasetDone>),
        status: 200,
    },
    Route {
        method: "POST",
        path: "/v1/datasets/{name}/verify",
        public: false,
        operation: "verify",
        summary: "Verify the dataset's newest point in this site's repository by restoring it aside and checking it.",
        request: Some(schema::<DatasetRequest>),
        response: Body::Json(schema::<DatasetDone>),
        status: 200,
    },
    Route {
        method: "POST",
        path: "/v1/datasets/{name}/restore",
        public: false,
        operation: "restore",
        summary: "Restore the dataset at this site from this site's repository (the services using it must be stopped here).",
        request: Some(schema::<DatasetRequest>),
        response: Body::Json(schema::<DatasetDone>),
        status: 200,
    },
    Route {
        method: "GET",
        path: "/v1/faults",
        public: false,
        operation: "faults",
        summary: "The drill faults in force at this site, each with what was done for it.",
        request: None,
        response: Body::Json(schema::<Faults>),
        status: 200,
    },
    Route {
        method: "POST",
        path: "/v1/faults",
        public: false,
        operation: "apply_fault",
        summary: "Apply a drill's fault here: the order is written down first, then applied, and reverted by this site itself once `until_unix` has passed. Refused (409) when the fault is not this site's to apply.",
        request: Some(schema::<FaultOrder>),
        response: Body::Json(schema::<FaultInForce>),
        status: 201,
    },
    Route {
        method: "DELETE",
        path: "/v1/faults/{id}",
        public: false,
        operation: "revert_fault",
        summary: "Revert the drill fault `id` here (undo exactly what was done for it); a fault no longer in force is no error.",
        request: None,
        response: Body::Json(schema::<FaultReverted>),
        status: 200,
    },
    Route {
        method: "POST",
        path: "/v1/sandboxes",
        public: false,
        operation: "make_sandbox",
        summary: "Make a sandbox here (an isolated drill's test failover): the record first, a network namespace of its own, copies of this site's newest restore point of the services' datasets (no repository credentials in them), the services started inside.",
        request: Some(schema::<SandboxRequest>),
        response: Body::Json(schema::<SandboxMade>),
        status: 201,
    },
    Route {
        method: "GET",
        path: "/v1/sandboxes/{id}",
        public: false,
        operation: "sandbox",
        summary: "Whether sandbox `id`'s services serve (asked from inside it), and what of it exists here.",
        request: None,
        response: Body::Json(schema::<SandboxState>),
        status: 200,
    },
    Route {
        method: "POST",
        path: "/v1/sandboxes/{id}/check",
        public: false,
        operation: "check_sandbox",
        summary: "Try the given production endpoints from inside sandbox `id` (none may answer: the isolation proof) and read and check its copies (canary, `pg_amcheck` or `integrity_check`).",
        request: Some(schema::<SandboxCheckRequest>),
        response: Body::Json(schema::<SandboxChecked>),
        status: 200,
    },
    Route {
        method: "DELETE",
        path: "/v1/sandboxes/{id}",
        public: false,
        operation: "destroy_sandbox",
        summary: "Destroy sandbox `id`: its services, its namespace, its copies; what is left afterwards.",
        request: None,
        response: Body::Json(schema::<SandboxState>),
        status: 200,
    },
    Route {
        method: "GET",
        path: "/v1/workspaces",
        public: false,
        operation: "workspaces",
        summary: "The workspaces at this site, as it records them: policy, state, clones (restore point, method, time), expiry, namespace.",
        request: None,
        response: Body::Json(schema::<Workspaces>),
        status: 200,
    },
    Route {
        method: "POST",
        path: "/v1/workspaces",
        public: false,
        operation: "make_workspace",
        summary: "Make a workspace here (its policy's `site` must be this one): golden copies of this site's newest verified restore point, cloned, the services started in a namespace of their own, the masking run; answered once it serves. Refused (409) while this site serves production, a run is in progress, the name is taken or there is no room; 400 when the policy breaks a rule of the spec.",
        request: Some(schema::<WorkspaceRequest>),
        response: Body::Json(schema::<WorkspaceRecord>),
        status: 201,
    },
    Route {
        method: "GET",
        path: "/v1/workspaces/{name}",
        public: false,
        operation: "workspace",
        summary: "Workspace `name` as this site records it (404: there is none here).",
        request: None,
        response: Body::Json(schema::<WorkspaceRecord>),
        status: 200,
    },
    Route {
        method: "DELETE",
        path: "/v1/workspaces/{name}",
        public: false,
        operation: "delete_workspace",
        summary: "Delete workspace `name`: its services stopped, its clones removed (an overlay unmounted), its namespace and folder gone; what is left afterwards (404: there is none here).",
        request: None,
        response: Body::Json(schema::<WorkspaceDeleted>),
        status: 200,
    },
    Route {
        method: "POST",
        path: "/v1/workspaces/{name}/refresh",
        public: false,
        operation: "refresh_workspace",
        summary: "Seed workspace `name` again from the newest restore point, with the same policy (its TTL counts from now): destroyed and made again (404: there is none here).",
        request: None,
        response: Body::Json(schema::<WorkspaceRecord>),
        status: 200,
    },
    Route {
        method: "GET",
        path: "/v1/events",
        public: false,
        operation: "events",
        summary: "The site's event log as server-sent events, from `since` (a line number; default: only new events).",
        request: None,
        response: Body::EventStream,
        status: 200,
    },
    Route {
        method: "GET",
        path: "/v1/cost",
        public: false,
        operation: "cost",
        summary: "What the DR posture costs per month from this site's figures (its repository's bytes, the replications it sent, the runs and drills it holds), priced with the spec's `prices` (none: every line unpriced), and each dataset's other strategy with its cost, RPO and RTO. `measured` carries the figures, which `resurgo cost` merges across sites and prices itself.",
        request: None,
        response: Body::Json(schema::<resurgo_plan::cost::CostReport>),
        status: 200,
    },
    Route {
        method: "GET",
        path: "/metrics",
        public: false,
        operation: "metrics",
        summary: "This site's DR gauges and counters in Prometheus's text format (0.0.4), computed when scraped from what is stored: recovery points against their objectives, backups, standby lag, roles and epochs, drift, runs, drills, workspaces. Needs the same credentials as the rest of the API (a scrape sends the bearer token, or a client certificate).",
        request: None,
        response: Body::Metrics,
        status: 200,
    },
    Route {
        method: "GET",
        path: "/ui",
        public: false,
        operation: "dashboard",
        summary: "The dashboard: every site (this one, and the others through their agents' APIs), its services and drift, datasets' RPO age against the objective, standby lag, roles and epochs, runs, drills, workspaces; live through server-sent events; readable without JavaScript. A browser signs in at `/ui/login` (the session cookie opens only `/ui` routes).",
        request: None,
        response: Body::Html,
        status: 200,
    },
    Route {
        method: "GET",
        path: "/ui/panel",
        public: false,
        operation: "panel",
        summary: "The live part of the dashboard, which its page fetches again when an event arrives.",
        request: None,
        response: Body::Html,
        status: 200,
    },
    Route {
        method: "GET",
        path: "/ui/events",
        public: false,
        operation: "ui_events",
        summary: "The event stream of `/v1/events`, for the dashboard's page (its session cookie is accepted here).",
        request: None,
        response: Body::EventStream,
        status: 200,
    },
    Route {
        method: "GET",
        path: "/ui/confirm",
        public: false,
        operation: "confirm",
        summary: "What an action would do (`action`: failover, failback, maintenance-on, maintenance-off, drill; with `to`, `drill`), named before it is done, with the form that does it.",
        request: None,
        response: Body::Html,
        status: 200,
    },
    Route {
        method: "POST",
        path: "/ui/act",
        public: false,
        operation: "act",
        summary: "Do the action a confirmation page named (a form carrying its anti-forgery token); answers with where to follow it.",
        request: None,
        response: Body::Html,
        status: 303,
    },
    Route {
        method: "GET",
        path: "/ui/runs/{id}",
        public: false,
        operation: "ui_run",
        summary: "One run's page: its steps and timeline, RTO and RPO, followed live until it ends.",
        request: None,
        response: Body::Html,
        status: 200,
    },
    Route {
        method: "GET",
        path: "/ui/drills/{run}",
        public: false,
        operation: "ui_drill",
        summary: "One drill's report, as its HTML rendering.",
        request: None,
        response: Body::Html,
        status: 200,
    },
    Route {
        method: "GET",
        path: "/ui/cost",
        public: false,
        operation: "ui_cost",
        summary: "What the DR posture costs a month, per site and strategy, and each dataset's alternative — from every agent's figures (`GET /v1/cost`), priced by the spec's `prices`.",
        request: None,
        response: Body::Html,
        status: 200,
    },
    Route {
        method: "GET",
        path: "/ui/assets/{name}",
        public: true,
        operation: "asset",
        summary: "The dashboard's static files (its style sheet, script and icon), the same for everyone.",
        request: None,
        response: Body::Html,
        status: 200,
    },
    Route {
        method: "GET",
        path: "/ui/login",
        public: true,
        operation: "login_page",
        summary: "The dashboard's sign-in form (the bearer token; a browser with a client certificate needs none).",
        request: None,
        response: Body::Html,
        status: 200,
    },
    Route {
        method: "POST",
        path: "/ui/login",
        public: true,
        operation: "login",
        summary: "Sign in with the bearer token (a form field `token`): a session cookie for the `/ui` routes (HttpOnly, Secure, SameSite=Strict); 403 with a wrong token.",
        request: None,
        response: Body::Html,
        status: 303,
    },
    Route {
        method: "POST",
        path: "/ui/logout",
        public: true,
        operation: "logout",
        summary: "Sign out: the session cookie is cleared.",
        request: None,
        response: Body::Html,
        status: 303,
    },
];

/// Whether the dashboard's session cookie authenticates requests to `route`: only the
/// dashboard's own routes, never the JSON API (a session is a browser's, and a browser may be
/// led by another site to send requests).
pub fn accepts_session(route: &Route) -> bool {
    route.path == "/ui" || route.path.starts_with("/ui/")
}

/// What a request path and method mean.
pub enum Matched {
    Found(&'static Route, Op),
    /// The path exists, but not with this method.
    WrongMethod(&'static str),
    NotFound,
}

/// Finds the route for `method` and `path` (without the query).
pub fn find(method: &str, path: &str) -> Matched {
    let mut allowed = None;
    for route in ROUTES {
        let Some(params) = match_path(route.path, path) else {
            continue;
        };
        if route.method != method {
            allowed = Some(route.method);
            continue;
        }
        let param = |i: usize| params.get(i).cloned().unwrap_or_default();
        let op = match route.operation {
            "health" => Op::Health,
            "primary" => Op::Primary,
            "standby" => Op::Standby,
            "site" => Op::Site,
            "plan" => Op::Plan,
            "apply" => Op::Apply,
            "maintenance" => Op::Maintenance,
            "set_maintenance" => Op::SetMaintenance,
            "repository" => Op::Repository,
            "runs" => Op::Runs,
            "run" => Op::Run { id: param(0) },
            "start_run" => Op::StartRun,
            "backup" => Op::Backup { dataset: param(0) },
            "verify" => Op::Verify { dataset: param(0) },
            "restore" => Op::Restore { dataset: param(0) },
            "faults" => Op::Faults,
            "apply_fault" => Op::ApplyFault,
            "revert_fault" => Op::RevertFault { id: param(0) },
            "make_sandbox" => Op::MakeSandbox,
            "sandbox" => Op::Sandbox { id: param(0) },
            "check_sandbox" => Op::CheckSandbox { id: param(0) },
            "destroy_sandbox" => Op::DestroySandbox { id: param(0) },
            "workspaces" => Op::Workspaces,
            "make_workspace" => Op::MakeWorkspace,
            "workspace" => Op::Workspace { name: param(0) },
            "delete_workspace" => Op::DeleteWorkspace { name: param(0) },
            "refresh_workspace" => Op::RefreshWorkspace { name: param(0) },
            "events" => Op::Events,
            "metrics" => Op::Metrics,
            "dashboard" => Op::Dashboard,
            "panel" => Op::Panel,
            "ui_events" => Op::UiEvents,
            "confirm" => Op::Confirm,
            "act" => Op::Act,
            "ui_run" => Op::UiRun { id: param(0) },
            "ui_drill" => Op::UiDrill { run: param(0) },
            "ui_cost" => Op::UiCost,
            "asset" => Op::Asset { name: param(0) },
            "login_page" => Op::LoginPage,
            "login" => Op::Login,
            "logout" => Op::Logout,
            "cost" => Op::Cost,
            other => unreachable!("route `{other}` has no operation"),
        };
        return Matched::Found(route, op);
    }
    allowed.map_or(Matched::NotFound, Matched::WrongMethod)
}

/// The parameters of `path` if it matches `pattern`; a parameter is one non-empty segment of
/// names' characters (letters, digits, `-`, `_`, `.`), never `..`.
fn match_path(pattern: &str, path: &str) -> Option<Vec<String>> {
    let mut params = Vec::new();
    let mut got = path.split('/');
    for want in pattern.split('/') {
        let seg = got.next()?;
        if want.starts_with('{') {
            let ok = !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok {
                return None;
            }
            params.push(seg.to_string());
        } else if want != seg {
            return None;
        }
    }
    got.next().is_none().then_some(params)
}

/// The OpenAPI 3.1 document of [`ROUTES`], its schemas generated from the types.
pub fn openapi() -> Value {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "#/components/schemas/".into())
        .into_generator();
    let problem = schema::<Problem>(&mut generator);
    let mut paths = Map::new();
    for route in ROUTES {
        let mut parameters = Vec::new();
        for name in route
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        {
            parameters.push(json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}));
        }
        let query: &[(&str, &str)] = match route.operation {
            "primary" => &[("group", "A failover group (`site-<site>`).")],
            "standby" => &[
                ("group", "A failover group (`site-<site>`)."),
                ("max_lag", "The most replay lag to accept, as a duration (`5s`)."),
            ],
            "events" | "ui_events" => &[("since", "The event log line to start from (0: the beginning).")],
            "confirm" => &[
                (
                    "action",
                    "`failover`, `failback`, `maintenance-on`, `maintenance-off` or `drill`.",
                ),
                ("to", "The site a failover or failback moves to."),
                (
                    "drill",
                    "The drill to run (an isolated drill whose DR site is this one).",
                ),
            ],
            "plan" => &[
                ("prune", "`true`: plan deleting services the spec no longer declares."),
                ("max_deletes", "With `prune`: the most deletions allowed (default 5)."),
            ],
            _ => &[],
        };
        for (name, description) in query {
            parameters.push(json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}}));
        }
        let ok = match &route.response {
            Body::Json(f) => {
                json!({"description": "Success.", "content": {"application/json": {"schema": f(&mut generator)}}})
            }
            Body::EventStream => {
                json!({"description": "One `data:` line per event (a JSON object), as they are written.", "content": {"text/event-stream": {"schema": {"type": "string"}}}})
            }
            Body::Metrics => {
                json!({"description": "Prometheus text exposition format 0.0.4: `# HELP` and `# TYPE` per family, `resurgo_` names in base units.", "content": {crate::server::METRICS_CONTENT_TYPE: {"schema": {"type": "string"}}}})
            }
            Body::Html if route.status == 303 => {
                json!({"description": "Done: `Location` says where to go next."})
            }
            Body::Html => {
                json!({"description": "A page (HTML; a static file has its own type).", "content": {"text/html": {"schema": {"type": "string"}}}})
            }
        };
        let mut responses = Map::new();
        responses.insert(route.status.to_string(), ok);
        let problem_body =
            |d: &str| json!({"description": d, "content": {"application/json": {"schema": problem.clone()}}});
        if route.public {
            responses.insert("503".into(), json!({"description": "No (or not known).", "content": {"application/json": {"schema": schema::<Health>(&mut generator)}}}));
        } else {
            responses.insert(
                "401".into(),
                problem_body("No credentials: a client certificate or a bearer token."),
            );
            responses.insert("403".into(), problem_body("Wrong credentials."));
        }
        if route.request.is_some() || !parameters.is_empty() {
            responses.insert("400".into(), problem_body("A malformed request."));
        }
        match route.operation {
            "apply_fault" => {
                responses.insert(
                    "409".into(),
                    problem_body(
                        "The fault is not this site's to apply (another site's, or a service not active here).",
                    ),
                );
            }
            "make_workspace" | "refresh_workspace" => {
                responses.insert(
                    "409".into(),
                    problem_body(
                        "This site serves production, a run is in progress, the name is taken, or there is no room.",
                    ),
                );
            }
            _ if route.method == "POST" && !accepts_session(route) => {
                responses.insert("409".into(), problem_body("A stale epoch, or a run in progress."));
            }
            _ => {}
        }
        let mut op = json!({
            "operationId": route.operation,
            "summary": route.summary,
            "responses": responses,
        });
        if !parameters.is_empty() {
            op["parameters"] = Value::Array(parameters);
        }
        if let Some(f) = route.request {
            op["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": f(&mut generator)}}});
        }
        if !route.public && accepts_session(route) {
            op["security"] = json!([{"bearer": []}, {"mutualTLS": []}, {"session": []}]);
        } else if !route.public {
            op["security"] = json!([{"bearer": []}, {"mutualTLS": []}]);
        }
        let entry = paths.entry(route.path).or_insert_with(|| json!({}));
        entry[route.method.to_ascii_lowercase()] = op;
    }
    let schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "resurgo site API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Served by each site's agent over TLS. Health endpoints answer anyone; every other request needs a client certificate signed by the deployment CA or the bearer token.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "mutualTLS": {"type": "mutualTLS"},
                "session": {"type": "apiKey", "in": "cookie", "name": crate::server::SESSION_COOKIE, "description": "The dashboard's session, from signing in at `/ui/login`; accepted only by `/ui` routes."},
            },
        },
    })
}

/// [`openapi`] as the committed file holds it: pretty, with a final newline.
pub fn openapi_text() -> String {
    let mut text = serde_json::to_string_pretty(&openapi()).expect("a document serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_with_their_parameters_and_nothing_else() {
        assert!(matches!(find("GET", "/v1/runs/r-1"), Matched::Found(_, Op::Run { id }) if id == "r-1"));
        assert!(matches!(find("POST", "/v1/runs"), Matched::Found(_, Op::StartRun)));
        assert!(matches!(find("DELETE", "/v1/runs"), Matched::WrongMethod("POST")));
        assert!(matches!(find("GET", "/v1/runs/.."), Matched::NotFound));
        assert!(matches!(find("GET", "/v1/runs/a/b"), Matched::NotFound));
        assert!(
            matches!(find("POST", "/v1/datasets/orders/backup"), Matched::Found(_, Op::Backup { dataset }) if dataset == "orders")
        );
        assert!(matches!(find("GET", "/v1/site/"), Matched::NotFound));
        // The metrics need credentials, as a Prometheus scrape with the bearer token sends.
        assert!(matches!(find("GET", "/metrics"), Matched::Found(r, Op::Metrics) if !r.public));
        assert!(matches!(find("GET", "/v1/faults"), Matched::Found(_, Op::Faults)));
        assert!(matches!(find("POST", "/v1/faults"), Matched::Found(_, Op::ApplyFault)));
        assert!(
            matches!(find("DELETE", "/v1/faults/drill-x-1"), Matched::Found(_, Op::RevertFault { id }) if id == "drill-x-1")
        );
        assert!(matches!(
            find("GET", "/v1/faults/drill-x-1"),
            Matched::WrongMethod("DELETE")
        ));
        assert!(matches!(
            find("GET", "/v1/workspaces"),
            Matched::Found(_, Op::Workspaces)
        ));
        assert!(matches!(
            find("POST", "/v1/workspaces"),
            Matched::Found(_, Op::MakeWorkspace)
        ));
        assert!(
            matches!(find("GET", "/v1/workspaces/dev-1"), Matched::Found(_, Op::Workspace { name }) if name == "dev-1")
        );
        assert!(
            matches!(find("DELETE", "/v1/workspaces/dev-1"), Matched::Found(_, Op::DeleteWorkspace { name }) if name == "dev-1")
        );
        assert!(
            matches!(find("POST", "/v1/workspaces/dev-1/refresh"), Matched::Found(_, Op::RefreshWorkspace { name }) if name == "dev-1")
        );
        assert!(matches!(
            find("GET", "/v1/workspaces/dev-1/refresh"),
            Matched::WrongMethod("POST")
        ));
    }

    #[test]
    fn the_document_has_every_route_and_resolves_every_reference() {
        let doc = openapi();
        for route in ROUTES {
            assert!(
                doc["paths"][route.path][route.method.to_ascii_lowercase()].is_object(),
                "{}",
                route.path
            );
        }
        let text = doc.to_string();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(doc["components"]["schemas"][name].is_object(), "unresolved {name}");
        }
    }
}
