//! Commands that drive a running Baton through its HTTP API.

use baton_schemas::views::{CellView, GroupView, IgnitorView, TaskView};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use baton_schemas::Document;
use baton_schemas::api::{
    ApplyRequest, ApplyResponse, CellCommand, CellCommandRequest, CellResponse, DeleteResponse,
    ErrorResponse, RunResponse,
};
use baton_schemas::document::parse_documents_within;
use baton_schemas::status::RunStatus;
use baton_schemas::wire::Timestamp;
use serde::de::DeserializeOwned;
use tracing::debug;

use crate::args::{
    ApplyArgs, CancelArgs, CellAction, CellArgs, CellsArgs, DeleteArgs, DeleteKind, Format,
    GroupsArgs, ListArgs, RunsArgs, ServerArgs, StatusArgs, TriggerArgs,
};
use crate::credentials;
use crate::live::Screen;
use crate::{Failure, output};

/// Reads and validates a file. Every failure here is the user's input: exit code 2.
pub(crate) fn read_documents(
    path: &Path,
    limits: baton_schemas::Limits,
) -> Result<Vec<Document>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(anyhow!("{}: cannot read: {e}", path.display())))?;
    let source = path.display().to_string();
    let documents =
        parse_documents_within(&source, &text, Timestamp::now(), limits).map_err(Failure::usage)?;
    // What a valid document asks for that Baton leaves out (an Orca plugin name), said where
    // a person sees it: beside the result, not in it.
    for document in &documents {
        for warning in baton_schemas::validate::warnings(document) {
            eprintln!("warning: {source}: {}: {warning}", document.describe());
        }
    }
    Ok(documents)
}

/// Checks a file as `baton validate` does (okra's management-cluster kinds included);
/// returns how many documents it holds. Every failure here is the user's input: exit code 2.
pub(crate) fn validate_documents(
    path: &Path,
    limits: baton_schemas::Limits,
) -> Result<usize, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(anyhow!("{}: cannot read: {e}", path.display())))?;
    let source = path.display().to_string();
    let (documents, cluster_objects) = baton_schemas::document::validate_documents_within(
        &source,
        &text,
        Timestamp::now(),
        limits,
    )
    .map_err(Failure::usage)?;
    for document in &documents {
        for warning in baton_schemas::validate::warnings(document) {
            eprintln!("warning: {source}: {}: {warning}", document.describe());
        }
    }
    Ok(documents.len() + cluster_objects.len())
}

pub(crate) struct Api {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    /// Sent with every request that starts runs, the same on each retry of this invocation,
    /// so that a retry after an ambiguous failure starts nothing twice.
    idempotency_key: String,
}

/// The API's 400: what was sent is invalid (a document that uses a node kind the planner does
/// not allow, say), which is the user's input like a file that does not validate (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct InvalidRequest(String);

/// Returns the failure of a request: exit 2 when the API found the request invalid.
fn request_failure(error: anyhow::Error) -> Failure {
    match error.is::<InvalidRequest>() {
        true => Failure::usage(error),
        false => Failure::from(error),
    }
}

/// How many times a request that starts runs is sent before its failure is reported.
const SENDS: u32 = 5;

impl Api {
    pub(crate) fn new(args: &ServerArgs) -> anyhow::Result<Api> {
        let server = &args.server;
        let headers = match credentials::client_token(server, args.token_file.as_deref())? {
            Some(token) => credentials::bearer_headers(&token)?,
            None => reqwest::header::HeaderMap::new(),
        };
        let mut http = reqwest::Client::builder().default_headers(headers);
        if let Some(path) = &args.ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("{}: cannot read the CA certificates", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{}: not PEM CA certificates", path.display()))?;
            http = http.tls_certs_only(certs);
        }
        let http = http.build().context("cannot set up the HTTP client")?;
        Ok(Api {
            http,
            base: server.trim_end_matches('/').to_owned(),
            // Two random run ids: 24 letters and digits, about 124 bits.
            idempotency_key: format!(
                "{}{}",
                baton_schemas::ids::new_run_id(),
                baton_schemas::ids::new_run_id()
            ),
        })
    }

    pub(crate) async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        self.answer(request.send().await).await
    }

    /// Sends a request that starts runs with this invocation's `Idempotency-Key`, again (up
    /// to [`SENDS`] times, waiting 250 ms doubling) when the API cannot be reached, the
    /// connection fails mid-request or the planner answers 503: the API starts one run per
    /// key, however often it hears the request.
    async fn send_idempotent<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let request = request.header("Idempotency-Key", &self.idempotency_key);
        let mut delay = Duration::from_millis(250);
        for _ in 1..SENDS {
            let this = request
                .try_clone()
                .context("a request body that cannot be re-sent")?;
            match this.send().await {
                Err(e) => debug!(error = %e, ?delay, "the Baton API did not answer; sending again"),
                Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                    debug!(?delay, "the Baton API is unavailable; sending again")
                }
                result => return self.answer(result).await,
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        self.answer(request.send().await).await
    }

    pub(crate) async fn answer<T: DeserializeOwned>(
        &self,
        sent: reqwest::Result<reqwest::Response>,
    ) -> anyhow::Result<T> {
        let response =
            sent.with_context(|| format!("cannot reach the Baton API at {}", self.base))?;
        let status = response.status();
        if status.is_success() {
            return response
                .json()
                .await
                .context("unexpected answer from the Baton API");
        }
        let text = response.text().await.unwrap_or_default();
        let errors = match serde_json::from_str::<ErrorResponse>(&text) {
            Ok(e) => e.errors.join("\n"),
            Err(_) => bail!("the Baton API answered {status}: {text}"),
        };
        if status == reqwest::StatusCode::BAD_REQUEST {
            return Err(InvalidRequest(errors).into());
        }
        match status {
            reqwest::StatusCode::UNAUTHORIZED => bail!(
                "the Baton API at {} refused the request (401, not authenticated): {errors}; give its token in {} or a file with --token-file",
                self.base,
                credentials::TOKEN_VARIABLE
            ),
            reqwest::StatusCode::FORBIDDEN => bail!(
                "the Baton API at {} refused the request (403, beyond the token's role): {errors}",
                self.base
            ),
            _ => bail!("{errors}"),
        }
    }

    async fn run(&self, run: &str) -> anyhow::Result<RunStatus> {
        self.send(self.http.get(format!("{}/v1/runs/{run}", self.base)))
            .await
    }

    async fn group(&self, name: &str) -> anyhow::Result<GroupView> {
        self.send(self.http.get(format!("{}/v1/groups/{name}", self.base)))
            .await
    }

    /// Polls a group until nothing runs or waits for it.
    async fn wait_group(&self, name: &str) -> anyhow::Result<GroupView> {
        poll(|| self.group(name), |group| group.settled).await
    }
}

/// Reads with `read` every 250 ms until `done` holds for what it read. Failures to reach the
/// API are retried for a minute, so a planner restart does not end the wait.
async fn poll<T, F>(read: impl Fn() -> F, done: impl Fn(&T) -> bool) -> anyhow::Result<T>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut unreachable_since = None;
    loop {
        match read().await {
            Ok(found) if done(&found) => return Ok(found),
            Ok(_) => unreachable_since = None,
            Err(e) => {
                let since = *unreachable_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > Duration::from_secs(60) {
                    return Err(e);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub(crate) async fn apply(args: ApplyArgs) -> Result<u8, Failure> {
    let docs = read_documents(&args.file, args.limits.limits())?;
    let api = Api::new(&args.server)?;
    let mut runs = Vec::new();
    let mut groups = Vec::new();
    for doc in docs {
        let document = serde_json::to_value(&doc).context("encoding the document")?;
        let is_group = if let Document::Group(g) = &doc {
            groups.push(g.name().to_owned());
            true
        } else {
            false
        };
        let request = ApplyRequest {
            document,
            run: !args.no_run,
            data: args.data.clone(),
        };
        let applied: ApplyResponse = api
            .send_idempotent(
                api.http
                    .post(format!("{}/v1/apply", api.base))
                    .json(&request),
            )
            .await
            .map_err(request_failure)?;
        match (args.output, &applied.run) {
            (Format::Json, _) if !args.wait => {
                println!("{}", serde_json::to_string(&applied).context("json")?)
            }
            (Format::Text, Some(run)) => println!("{run}"),
            (Format::Text, None) => println!("{} applied", applied.applied),
            _ => {}
        }
        if !is_group {
            runs.extend(applied.run);
        }
    }
    if !args.wait {
        return Ok(0);
    }
    let mut all_succeeded = true;
    for run in runs {
        // Progress goes beside the result: stdout keeps the final status alone.
        let status = api.watch_run(&run, &mut Screen::beside_result()).await?;
        all_succeeded &= status.state == baton_schemas::status::State::Succeeded;
        output::print_status(&status, args.output)?;
    }
    for name in groups {
        let group = api.watch_group(&name, &mut Screen::beside_result()).await?;
        all_succeeded &= group.phase == "Succeeded";
        output::print_group(&group, args.output)?;
    }
    Ok(if all_succeeded { 0 } else { 1 })
}

pub(crate) async fn status(args: StatusArgs) -> Result<u8, Failure> {
    let api = Api::new(&args.server)?;
    if args.watch {
        let status = api.watch_run(&args.run, &mut Screen::stdout()).await?;
        return Ok(match status.state {
            baton_schemas::status::State::Succeeded => 0,
            _ => 1,
        });
    }
    output::print_status(&api.run(&args.run).await?, args.output)?;
    Ok(0)
}

pub(crate) async fn runs(args: RunsArgs) -> Result<u8, Failure> {
    let api = Api::new(&args.server)?;
    let runs: Vec<RunStatus> = api
        .send(api.http.get(format!("{}/v1/runs", api.base)))
        .await?;
    output::print_runs(&runs, args.output)?;
    Ok(0)
}

pub(crate) async fn cancel(args: CancelArgs) -> Result<u8, Failure> {
    let api = Api::new(&args.server)?;
    let done: RunResponse = api
        .send(
            api.http
                .post(format!("{}/v1/runs/{}/cancel", api.base, args.run)),
        )
        .await?;
    println!("run {} cancelled", done.run);
    Ok(0)
}

pub(crate) async fn trigger(args: TriggerArgs) -> Result<u8, Failure> {
    let api = Api::new(&args.server)?;
    let started: RunResponse = api
        .send_idempotent(
            api.http
                .post(format!("{}/v1/triggers/{}", api.base, args.name))
                .body(args.data),
        )
        .await?;
    println!("{}", started.run);
    Ok(0)
}

/// Lists tasks (`what` = `tasks`) or ignitors (`ignitors`) with their status.
pub(crate) async fn list(args: ListArgs, what: &str) -> Result<u8, Failure> {
    let api = Api::new(&args.server)?;
    let get = api.http.get(format!("{}/v1/{what}", api.base));
    if what == "tasks" {
        let items: Vec<TaskView> = api.send(get).await?;
        output::print_tasks(&items, args.output)?;
    } else {
        let items: Vec<IgnitorView> = api.send(get).await?;
        output::print_ignitors(&items, args.output)?;
    }
    Ok(0)
}

/// Lists application groups, or shows one.
pub(crate) async fn groups(args: GroupsArgs) -> Result<u8, Failure> {
    let api = Api::new(&args.server)?;
    match &args.name {
        Some(name) => output::print_group(&api.group(name).await?, args.output)?,
        None => {
            let all: Vec<GroupView> = api
                .send(api.http.get(format!("{}/v1/groups", api.base)))
                .await?;
            output::print_groups(&all, args.output)?;
        }
    }
    Ok(0)
}

/// Deletes an application group (with `--wait`, exit 0 only when every release is gone), or
/// forgets a workflow, task or ignitor.
pub(crate) async fn delete(args: DeleteArgs) -> Result<u8, Failure> {
    let api = Api::new(&args.server)?;
    let plural = match args.kind {
        DeleteKind::Group => None,
        DeleteKind::Workflow => Some("workflows"),
        DeleteKind::Task => Some("tasks"),
        DeleteKind::Ignitor => Some("ignitors"),
    };
    if let Some(plural) = plural {
        if args.force {
            return Err(Failure::usage(anyhow!(
                "--force: only an application group is held after its delete; a {plural} is forgotten at once"
            )));
        }
        let done: DeleteResponse = api
            .send(
                api.http
                    .delete(format!("{}/v1/{plural}/{}", api.base, args.name)),
            )
            .await?;
        match args.output {
            Format::Json => println!("{}", serde_json::to_string(&done).context("json")?),
            Format::Text => println!("{} deleted", done.deleted),
        }
        return Ok(0);
    }
    let force = if args.force { "?force=true" } else { "" };
    let group: GroupView = api
        .send(
            api.http
                .delete(format!("{}/v1/groups/{}{force}", api.base, args.name)),
        )
        .await?;
    if !args.wait {
        match args.output {
            Format::Json => println!("{}", serde_json::to_string(&group).context("json")?),
            Format::Text => println!(
                "application group {} deleting{}",
                args.name,
                match group.pending.as_deref() {
                    Some("delete") => " once its run under way ends".to_owned(),
                    _ => format!(
                        " (run {})",
                        group
                            .run
                            .as_ref()
                            .map(|r| r.to_string())
                            .unwrap_or_default()
                    ),
                }
            ),
        }
        return Ok(0);
    }
    let group = api.wait_group(&args.name).await?;
    output::print_group(&group, args.output)?;
    let clean = group.phase == "Deleted" && group.left_installed.is_empty();
    Ok(if clean { 0 } else { 1 })
}

/// Lists Cells with their phase, versions, step and weights; with `--watch`, follows them.
pub(crate) async fn cells(args: CellsArgs) -> Result<u8, Failure> {
    let api = Api::new(&args.server)?;
    if args.watch {
        api.watch_cells(args.name.as_deref(), &mut Screen::stdout())
            .await?;
        return Ok(0);
    }
    let items: Vec<CellView> = match &args.name {
        Some(name) => vec![
            api.send(api.http.get(format!("{}/v1/cells/{name}", api.base)))
                .await?,
        ],
        None => {
            api.send(api.http.get(format!("{}/v1/cells", api.base)))
                .await?
        }
    };
    output::print_cells(&items, args.output)?;
    Ok(0)
}

/// Resumes, aborts, promotes or deletes a Cell.
pub(crate) async fn cell(args: CellArgs) -> Result<u8, Failure> {
    let api = Api::new(&args.server)?;
    let url = format!("{}/v1/cells/{}", api.base, args.name);
    let command = match args.command {
        CellAction::Delete => None,
        CellAction::Resume => Some(CellCommand::Resume),
        CellAction::Abort => Some(CellCommand::Abort),
        CellAction::Promote => Some(CellCommand::Promote),
    };
    let request = match command {
        None if args.run.is_some() || args.step.is_some() => {
            return Err(Failure::usage(anyhow!(
                "--run and --step name a rollout; delete acts on the Cell itself"
            )));
        }
        None => api.http.delete(url),
        Some(command) => {
            api.http
                .post(format!("{url}/{}", command.as_str()))
                .json(&CellCommandRequest {
                    run: args.run,
                    step: args.step,
                    idle: false,
                })
        }
    };
    let done: CellResponse = api.send(request).await?;
    println!("cell {}: {} done", done.cell, done.command);
    Ok(0)
}
