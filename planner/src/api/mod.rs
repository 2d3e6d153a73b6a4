//! The HTTP API: register workflows, start, trigger, cancel and read runs.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `POST /v1/apply` | `{"document": <Workflow, Task, Ignitor or ApplicationGroup>, "run": bool, "data": "..."}` | `{"applied", "run"}` |
//! | `GET /v1/groups`, `GET /v1/groups/{name}` | | application groups' status |
//! | `DELETE /v1/groups/{name}` | | 202, the group's status: its releases are uninstalled in reverse order; a group whose uninstall failed is held (its cluster object by Baton's finalizer) and deleted again by this |
//! | `DELETE /v1/groups/{name}?force=true` | | 202, the group's status: deleted as above, and let go whatever its delete leaves installed |
//! | `GET /v1/tasks`, `GET /v1/ignitors` | | their status |
//! | `DELETE /v1/workflows/{name}`, `/v1/tasks/{name}`, `/v1/ignitors/{name}` | | `{"deleted"}`: forgotten (404 when not registered) |
//! | `POST /v1/workflows/{name}/runs` | `{"data": "..."}` | `{"run"}` |
//! | `POST /v1/triggers/{name}` | the trigger data, as is | `{"run"}` (202: started through the bus; 404 for a workflow not registered) |
//! | `GET /v1/runs` | | `[<run status>]` |
//! | `GET /v1/run-summaries?workflow=&state=&since=&until=&limit=&continue=` | | `{"runs": [<run summary>], "continue"}`: a page of runs, newest first, without their nodes (counts by state instead); `continue` is where the next page starts (`run_query.rs`) |
//! | `GET /v1/runs/{run}` | | `<run status>` |
//! | `GET /v1/runs/{run}/watch`, `/v1/cells/{name}/watch`, `/v1/watch/cells`, `/v1/groups/{name}/watch` | | server-sent events of its changes as they happen (`watch.rs`, [`baton_schemas::watch`]) |
//! | `POST /v1/runs/{run}/cancel` | | `{"run"}` |
//! | `GET /v1/cells`, `GET /v1/cells/{name}` | | Cell status |
//! | `POST /v1/cells/{name}/{resume,abort,promote}` | optional `{"run": "...", "step": N}`: refused (409) unless the rollout is that run, at that step; or `{"idle": true}`: refused (409) if a rollout is under way | `{"cell", "command"}` |
//! | `DELETE /v1/cells/{name}` | | `{"cell"}` (the rule goes too with `deletionPolicy: Delete`) |
//! | `GET /charts/{path}/index.yaml`, `GET /charts/{path}/{chart}.tgz` | | a Helm chart repository of the subcharts an umbrella chart of a registered group vendors (`crate::charts`), for the `flux` driver |
//! | `GET /`, `GET /ui/`, `GET /ui/{*file}` | | the dashboard's page and scripts (`ui.rs`) |
//! | `GET /healthz` | | `ok` |
//!
//! Every path but `/healthz`, the dashboard's assets and `GET /charts/...` takes a bearer token and a role
//! (`auth.rs`): 401 without a known token, 403 beyond the caller's role.
//!
//! `POST /v1/apply`, `POST /v1/workflows/{name}/runs` and `POST /v1/triggers/{name}` take an
//! `Idempotency-Key` header (1 to 255 visible ASCII characters): the run they start is named
//! after the key and the workflow, so a client that sends the request again after an
//! ambiguous failure (a timeout, a dropped connection) gets the run the first one started,
//! not a second one, for as long as the run is kept (`--run-retention`).
//!
//! Errors answer `{"errors": ["<path>: <message>", ...]}` with 400, 404 (what the request
//! names does not exist, or a path with no route), 405 (a method the path does not take),
//! 409 (its state does not allow the request: a Cell with nothing to resume, a Cell's rollout
//! cancelled instead of aborted), 413 (a body above `--api-body-limit`, 8 MiB by default, or for a
//! trigger the bus's largest message), 415 (a body that is not JSON), 408 (a request that took longer
//! than [`REQUEST_DEADLINE`]) or 503. Every error answer, axum's
//! own rejections included, has that one shape.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use baton_bus::Bus;
use baton_schemas::views::{CellView, GroupView, IgnitorView, TaskView};
use baton_schemas::wire::Timestamp;
use baton_schemas::{RunId, WorkflowName};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::audit::Audit;
use crate::service::{Changes, Command};

mod audit;
mod auth;
mod charts;
mod kube_auth;
mod listen;
mod live_tokens;
mod run_query;
mod ui;
mod watch;

pub use auth::{Auth, Caller, MIN_TOKEN_LEN, Role, TokenFileError, Tokens};
use baton_core::ids::idempotent_run_id;
use baton_core::{Expect, Refusal, Registered};
use baton_schemas::api::CellCommand;
use baton_schemas::api::{
    ApplyRequest, ApplyResponse, CellCommandRequest, CellResponse, DeleteResponse, ErrorResponse,
    RunResponse, StartRequest,
};
use baton_schemas::ids::new_run_id;
pub use kube_auth::KubernetesAuth;
pub use listen::{HANDSHAKE_DEADLINE, REQUEST_DEADLINE, ServerTls, TlsError, TlsFiles};
pub use live_tokens::LiveTokens;

#[derive(Clone)]
struct Api {
    commands: mpsc::Sender<Command>,
    bus: Bus,
    limits: baton_schemas::Limits,
    /// The planner's change notices, which the watch streams follow.
    changes: Changes,
    /// Fired when the planner stops: watch streams end.
    shutdown: CancellationToken,
    /// The subcharts the chart repository serves.
    charts: crate::charts::ChartCache,
}

struct ApiError(StatusCode, Vec<String>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorResponse { errors: self.1 })).into_response()
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let status = match r.is_not_found() {
            true => StatusCode::NOT_FOUND,
            false => StatusCode::CONFLICT,
        };
        ApiError(status, vec![r.to_string()])
    }
}

fn unavailable() -> ApiError {
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        vec!["the planner is shutting down".to_owned()],
    )
}

impl Api {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        let mut command = make(tx);
        // What the command causes joins the request's trace.
        if let Some(traceparent) = baton_telemetry::trace::enabled()
            .then(|| baton_telemetry::trace::traceparent(&tracing::Span::current()))
            .flatten()
        {
            command = Command::Traced {
                traceparent,
                command: Box::new(command),
            };
        }
        self.commands
            .send(command)
            .await
            .map_err(|_| unavailable())?;
        rx.await.map_err(|_| unavailable())
    }
}

/// What the API is set up with.
#[derive(Debug)]
pub struct ApiConfig {
    /// What one document may hold.
    pub limits: baton_schemas::Limits,
    /// Who may call it.
    pub auth: Auth,
    /// Its certificate and key: HTTPS instead of HTTP.
    pub tls: Option<ServerTls>,
    /// How long a client has to send a request's head, and a kept-alive connection may stay
    /// idle, before it is closed.
    pub idle_timeout: std::time::Duration,
    /// The largest request body, in bytes; a larger one is answered 413.
    pub body_limit: usize,
    /// The process's metrics, served at `GET /metrics` to callers that may read.
    pub metrics: Option<baton_telemetry::Exposition>,
    /// The planner's change notices (its [`PlannerConfig::changes`](crate::service::PlannerConfig::changes)),
    /// which the watch streams follow.
    pub changes: Changes,
}

impl ApiConfig {
    /// The default largest request body: 8 MiB, room for a 100 000-node workflow (about
    /// 6 MB), small enough that a burst of large bodies cannot exhaust the planner's memory.
    pub const DEFAULT_BODY_LIMIT: usize = 8 << 20;
}

/// Returns the API's router, sending its requests to the planner loop through `commands`;
/// its watch streams end when `shutdown` fires. (`config`'s TLS and idle timeout are the
/// listener's, not the router's.)
pub fn router(
    commands: mpsc::Sender<Command>,
    bus: Bus,
    config: ApiConfig,
    shutdown: CancellationToken,
) -> Router {
    let ApiConfig {
        limits,
        auth,
        body_limit,
        metrics,
        changes,
        ..
    } = config;
    let routes = match metrics {
        Some(metrics) => Router::new().route(
            "/metrics",
            get(move || std::future::ready(metrics.respond())),
        ),
        None => Router::new(),
    };
    routes
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/apply", post(apply))
        .route("/v1/tasks", get(tasks))
        .route("/v1/tasks/{name}", delete(delete_task))
        .route("/v1/ignitors", get(ignitors))
        .route("/v1/ignitors/{name}", delete(delete_ignitor))
        .route("/v1/workflows/{name}", delete(delete_workflow))
        .route("/v1/workflows/{name}/runs", post(start))
        .route("/v1/triggers/{name}", post(trigger))
        .route("/v1/runs", get(list))
        .route("/v1/run-summaries", get(run_summaries))
        .route("/v1/runs/{run}", get(status))
        .route("/v1/runs/{run}/watch", get(watch::run))
        .route("/v1/runs/{run}/cancel", post(cancel))
        .route("/v1/groups", get(groups))
        .route("/v1/groups/{name}", get(group).delete(delete_group))
        .route("/v1/groups/{name}/watch", get(watch::group))
        .route("/v1/cells", get(cells))
        .route("/v1/cells/{name}", get(cell).delete(delete_cell))
        .route("/v1/cells/{name}/watch", get(watch::cell))
        .route("/v1/watch/cells", get(watch::cells))
        .route("/v1/cells/{name}/{command}", post(cell_command))
        .route("/charts/{path}/{file}", get(charts::file))
        .route("/", get(ui::root))
        .route("/ui/", get(ui::index))
        .route("/ui/{*file}", get(ui::file))
        .fallback(no_route)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        // Outside the routes and their extractors: a caller is known before a body is read.
        .layer(axum::middleware::from_fn_with_state(auth, auth::authorize))
        .layer(axum::middleware::from_fn(listen::request_deadline))
        .layer(axum::middleware::from_fn_with_state(
            body_limit,
            json_errors,
        ))
        // Outermost: refusals are recorded too.
        .layer(axum::middleware::from_fn_with_state(
            Audit::new(bus.clone()),
            audit::record,
        ))
        // A span per request, continuing the caller's trace (its `traceparent`).
        .layer(axum::middleware::from_fn(traced))
        .with_state(Api {
            commands,
            bus,
            limits,
            changes,
            shutdown,
            charts: crate::charts::ChartCache::default(),
        })
}

/// Runs the request in a span of its own (when spans are exported), child of the caller's
/// `traceparent` when it sends one.
async fn traced(request: Request, next: Next) -> Response {
    use tracing::Instrument as _;
    if !baton_telemetry::trace::enabled() {
        return next.run(request).await;
    }
    let parent = {
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        baton_telemetry::trace::extract(header("traceparent"), header("tracestate"))
    };
    let span = tracing::info_span!(
        "request",
        otel.name = format!("{} {}", request.method(), request.uri().path()),
        otel.kind = "server",
        http.request.method = %request.method(),
        url.path = %request.uri().path(),
    );
    if let Some(parent) = parent {
        baton_telemetry::trace::set_parent(&span, parent);
    }
    next.run(request).instrument(span).await
}

/// Reads the `Idempotency-Key` header: `None` without one, 400 for one that is empty, longer
/// than 255 characters, or not visible ASCII.
fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default();
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            vec!["Idempotency-Key must be 1 to 255 visible ASCII characters".to_owned()],
        ));
    }
    Ok(Some(key.to_owned()))
}

/// Answers a path with no route.
async fn no_route(request: Request) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        vec![format!(
            "no such path: {} {}",
            request.method(),
            request.uri().path()
        )],
    )
}

/// Gives every error answer the one JSON shape of [`ErrorResponse`]: axum's own rejections
/// (a body that is not JSON or too large, a method the path does not take) answer plain text
/// or nothing, which a client would have to special-case.
async fn json_errors(State(body_limit): State<usize>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            format!("{path} does not take {method} (it takes: {allowed})")
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!(
                "the request body is above the API's limit of {body_limit} bytes (--api-body-limit)"
            )
        }
        _ if text.is_empty() => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase(),
        _ => text,
    };
    let mut answer = ApiError(status, vec![message]).into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        answer.headers_mut().insert(header::ALLOW, allow.clone());
    }
    answer
}

/// Serves the API on a bound `listener` until `shutdown` fires: over TLS when `config` gives
/// a certificate, reloaded when its files change.
pub async fn serve(
    listener: tokio::net::TcpListener,
    commands: mpsc::Sender<Command>,
    bus: Bus,
    mut config: ApiConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tls = config
        .tls
        .take()
        .map(|tls| listen::acceptor(tls, &shutdown));
    let idle_timeout = config.idle_timeout;
    if let Auth::Tokens(tokens) = &config.auth {
        tokio::spawn(tokens.clone().watch(shutdown.clone()));
    }
    let router = router(commands, bus, config, shutdown.clone());
    listen::serve(listener, router, tls, idle_timeout, shutdown).await?;
    Ok(())
}

async fn apply(
    State(api): State<Api>,
    headers: axum::http::HeaderMap,
    Json(request): Json<ApplyRequest>,
) -> Result<Json<ApplyResponse>, ApiError> {
    let key = idempotency_key(&headers)?;
    let document = baton_schemas::document::parse_object_within(
        "request",
        &request.document,
        Timestamp::now(),
        api.limits,
    )
    .map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            e.errors.iter().map(|e| e.to_string()).collect(),
        )
    })?;
    drop(request.document);
    run_data_fits(&api, &request.data)?;
    let applied = document.describe();
    let start = request.run.then_some(request.data);
    let run = key.map(|k| idempotent_run_id(&k, Registered::of(&document).name()));
    let run = api
        .ask(|reply| Command::Apply {
            document: Box::new(document),
            start,
            run,
            source: None,
            reply,
        })
        .await??;
    Ok(Json(ApplyResponse {
        applied,
        run: run.map(|r| r.to_string()),
    }))
}

/// Refuses run data larger than a trigger may carry: whichever way a run starts, its data
/// has one limit (the bus's largest message).
fn run_data_fits(api: &Api, data: &str) -> Result<(), ApiError> {
    let limit = api.bus.max_message_size();
    match data.len() > limit {
        true => Err(above_bus_limit("run data", data.len(), limit)),
        false => Ok(()),
    }
}

/// The 413 of data larger than the bus's largest message.
fn above_bus_limit(what: &str, size: usize, limit: usize) -> ApiError {
    ApiError(
        StatusCode::PAYLOAD_TOO_LARGE,
        vec![format!(
            "{what} is {size} bytes, above the bus's limit of {limit} bytes for one message"
        )],
    )
}

async fn tasks(State(api): State<Api>) -> Result<Json<Vec<TaskView>>, ApiError> {
    Ok(Json(api.ask(|reply| Command::Tasks { reply }).await?))
}

async fn ignitors(State(api): State<Api>) -> Result<Json<Vec<IgnitorView>>, ApiError> {
    Ok(Json(api.ask(|reply| Command::Ignitors { reply }).await?))
}

/// Forgets a workflow, task or ignitor: it starts no run, is started by nothing, fires no
/// more. Runs already going on finish.
async fn remove(
    api: &Api,
    document: Registered,
    kind: &str,
) -> Result<Json<DeleteResponse>, ApiError> {
    let deleted = format!("{kind}/{}", document.name());
    api.ask(|reply| Command::Remove { document, reply })
        .await??;
    Ok(Json(DeleteResponse { deleted }))
}

async fn delete_workflow(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<DeleteResponse>, ApiError> {
    let document = Registered::Workflow(WorkflowName::new(name));
    remove(&api, document, "Workflow").await
}

async fn delete_task(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<DeleteResponse>, ApiError> {
    remove(&api, Registered::Task(name), "Task").await
}

async fn delete_ignitor(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<DeleteResponse>, ApiError> {
    remove(&api, Registered::Ignitor(name), "Ignitor").await
}

async fn start(
    State(api): State<Api>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    body: Option<Json<StartRequest>>,
) -> Result<Json<RunResponse>, ApiError> {
    let key = idempotency_key(&headers)?;
    let data = body.map(|b| b.0.data).unwrap_or_default();
    run_data_fits(&api, &data)?;
    let run = key.map(|k| idempotent_run_id(&k, &name));
    let run = api
        .ask(|reply| Command::Start {
            workflow: WorkflowName::new(name),
            run,
            data,
            reply,
        })
        .await??;
    Ok(Json(RunResponse {
        run: run.to_string(),
    }))
}

async fn trigger(
    State(api): State<Api>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<RunResponse>), ApiError> {
    let key = idempotency_key(&headers)?;
    if !baton_schemas::ids::is_dns_label(&name) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            vec![format!("invalid workflow name {name:?}")],
        ));
    }
    // The run starts when the planner reads the trigger; a workflow nobody registered would
    // only be set aside there, after the caller was handed a run id that never exists.
    let workflow = Registered::Workflow(WorkflowName::new(name.clone()));
    if !api
        .ask(|reply| Command::Exists {
            document: workflow,
            reply,
        })
        .await?
    {
        return Err(Refusal::UnknownWorkflow(name).into());
    }
    if let Err(e) = std::str::from_utf8(&body) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            vec![format!(
                "trigger data is not UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            )],
        ));
    }
    // With a key, a trigger sent again carries the same run id, which is also its message id:
    // the bus drops it within its duplicate window, the planner ignores it after.
    let run = key.map_or_else(new_run_id, |k| idempotent_run_id(&k, &name));
    let mut message = api.bus.trigger_message(&name, body, &run);
    // The run the trigger starts joins the request's trace.
    baton_telemetry::trace::inject(&tracing::Span::current(), &mut message.headers);
    let limit = api.bus.max_message_size();
    if message.size() > limit {
        return Err(above_bus_limit(
            "trigger data",
            message.payload.len(),
            limit,
        ));
    }
    api.bus
        .publish_one(&message)
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, vec![format!("{e}")]))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RunResponse {
            run: run.to_string(),
        }),
    ))
}

async fn list(
    State(api): State<Api>,
) -> Result<Json<Vec<baton_schemas::status::RunStatus>>, ApiError> {
    Ok(Json(api.ask(|reply| Command::List { reply }).await?))
}

/// `GET /v1/run-summaries`: what a runs list needs, a page at a time.
async fn run_summaries(
    State(api): State<Api>,
    query: Result<
        axum::extract::Query<run_query::RunSummaryQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Json<baton_schemas::status::RunPage>, ApiError> {
    let query = query
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, vec![e.body_text()]))?
        .0
        .parse()
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, vec![e]))?;
    Ok(Json(
        api.ask(|reply| Command::RunSummaries { query, reply })
            .await?,
    ))
}

async fn status(
    State(api): State<Api>,
    Path(run): Path<String>,
) -> Result<Json<baton_schemas::status::RunStatus>, ApiError> {
    api.ask(|reply| Command::Status {
        run: RunId::new(run.clone()),
        reply,
    })
    .await?
    .map(Json)
    .ok_or_else(|| Refusal::UnknownRun(run).into())
}

async fn cancel(
    State(api): State<Api>,
    Path(run): Path<String>,
) -> Result<Json<RunResponse>, ApiError> {
    api.ask(|reply| Command::Cancel {
        run: RunId::new(run.clone()),
        reply,
    })
    .await??;
    Ok(Json(RunResponse { run }))
}

async fn groups(State(api): State<Api>) -> Result<Json<Vec<GroupView>>, ApiError> {
    Ok(Json(api.ask(|reply| Command::Groups { reply }).await?))
}

async fn find_group(api: &Api, name: &str) -> Result<GroupView, ApiError> {
    api.ask(|reply| Command::Groups { reply })
        .await?
        .into_iter()
        .find(|g| g.name == name)
        .ok_or_else(|| Refusal::UnknownGroup(name.to_owned()).into())
}

async fn group(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<GroupView>, ApiError> {
    Ok(Json(find_group(&api, &name).await?))
}

/// The query of `DELETE /v1/groups/{name}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteGroupQuery {
    /// Let the group go whatever its delete leaves installed.
    #[serde(default)]
    force: bool,
}

async fn delete_group(
    State(api): State<Api>,
    Path(name): Path<String>,
    query: Result<axum::extract::Query<DeleteGroupQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<(StatusCode, Json<GroupView>), ApiError> {
    let force = query
        .map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                vec![format!("query: {}", e.body_text())],
            )
        })?
        .force;
    // Its releases are uninstalled in reverse order.
    if force {
        api.ask(|reply| Command::ForceDelete {
            group: name.clone(),
            reply,
        })
        .await??;
    } else {
        api.ask(|reply| Command::Remove {
            document: Registered::Group(name.clone()),
            reply,
        })
        .await??;
    }
    Ok((StatusCode::ACCEPTED, Json(find_group(&api, &name).await?)))
}

async fn cells(State(api): State<Api>) -> Result<Json<Vec<CellView>>, ApiError> {
    let cells = api.ask(|reply| Command::Cells { reply }).await?;
    Ok(Json(cells.into_iter().map(CellView::listed).collect()))
}

async fn cell(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<CellView>, ApiError> {
    api.ask(|reply| Command::Cells { reply })
        .await?
        .into_iter()
        .find(|c| c.name == name)
        .map(Json)
        .ok_or_else(|| Refusal::UnknownCell(name).into())
}

async fn cell_command(
    State(api): State<Api>,
    Path((name, command)): Path<(String, String)>,
    body: Option<Json<CellCommandRequest>>,
) -> Result<Json<CellResponse>, ApiError> {
    let parsed: CellCommand = command
        .parse()
        .map_err(|e: String| ApiError(StatusCode::BAD_REQUEST, vec![e]))?;
    let request = body.map(|b| b.0).unwrap_or_default();
    let expect = Expect {
        run: request.run.map(RunId::new),
        step: request.step,
        idle: request.idle,
    };
    api.ask(|reply| Command::CellCommand {
        cell: name.clone(),
        command: parsed,
        expect,
        reply,
    })
    .await??;
    Ok(Json(CellResponse {
        cell: name,
        command: parsed.as_str().to_owned(),
    }))
}

async fn delete_cell(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<CellResponse>, ApiError> {
    let known = api
        .ask(|reply| Command::Exists {
            document: Registered::Cell(name.clone()),
            reply,
        })
        .await?;
    if !known {
        return Err(Refusal::UnknownCell(name).into());
    }
    api.ask(|reply| Command::Remove {
        document: Registered::Cell(name.clone()),
        reply,
    })
    .await??;
    Ok(Json(CellResponse {
        cell: name,
        command: "delete".to_owned(),
    }))
}
