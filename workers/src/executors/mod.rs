//! Executors: one per job kind. Each turns a job into an outcome, and stops early when its
//! stop token fires (a run cancel, or a shutdown past its deadline).

pub mod action;
pub mod analysis;
pub mod exec;
pub mod helm;
pub mod pod;
pub mod traffic;

use baton_schemas::NodeKind;
use baton_schemas::wire::{Job, Outcome};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

/// How an effect ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    /// It ran to an outcome.
    Done(Outcome),
    /// The stop token fired first; what the effect did is not known to be complete.
    Stopped,
}

/// The executors a worker has, built once at start.
///
/// Idempotence: `noop` has no effect; `exec` runs a local process, and a job redelivered after
/// its worker died runs that process again (the first one died with its worker, children and
/// all; a local process cannot be adopted), so `exec` commands should be safe to repeat; `pod`
/// adopts the pod an earlier delivery created, and `helm` the release operation or
/// `HelmRelease` an earlier delivery started; `traffic` finds the rule an earlier delivery
/// wrote by its priority; `analysis` only reads, but for an experiment's ReplicaSets, which a delivery again adopts by name; `webhook` and `publish` name the attempt
/// (`Idempotency-Key`, `Nats-Msg-Id`), so a stream keeps one message and a receiver can drop
/// a repeat.
#[derive(Clone)]
pub struct Executors {
    /// The bus, for `publish` actions.
    pub bus: baton_bus::Bus,
    /// The HTTP client for `webhook` actions.
    pub http: reqwest::Client,
    /// The pod executor, when the worker takes pod jobs.
    pub pod: Option<pod::PodExecutor>,
    /// The helm executor, when the worker takes helm jobs.
    pub helm: Option<helm::HelmExecutor>,
    /// The traffic executor (its AWS client is built on first use).
    pub traffic: traffic::TrafficExecutor,
    /// What analyses measure with (their AWS and Kubernetes clients are built on first use).
    pub analysis: analysis::Providers,
    /// Where executors count what they measure.
    pub metrics: crate::WorkerMetrics,
}

impl Executors {
    /// Runs `job` with the executor of its kind. `stop` ends it early; `handing_back` tells
    /// the executor that the stop is a shutdown handing the job to another worker (so what
    /// it started is left to be adopted) rather than a cancel (so it is torn down).
    pub async fn execute(
        &self,
        job: &Job,
        stop: &CancellationToken,
        handing_back: &CancellationToken,
    ) -> Effect {
        // Each kind's future is boxed: together they are tens of kilobytes, which a job's
        // future would otherwise hold, and copy, even for a noop.
        match job.kind() {
            NodeKind::Noop => Effect::Done(Outcome::Succeeded {
                output: String::new(),
            }),
            NodeKind::Exec => Box::pin(exec::run(job, stop)).await,
            NodeKind::Webhook => Effect::Done(Box::pin(action::webhook(&self.http, job)).await),
            NodeKind::Publish => Effect::Done(Box::pin(action::publish(&self.bus, job)).await),
            NodeKind::Traffic => {
                let span =
                    tracing::info_span!("elbv2", otel.name = "elbv2 traffic", otel.kind = "client");
                Box::pin(self.traffic.run(job, stop).instrument(span)).await
            }
            NodeKind::Analysis => {
                Box::pin(analysis::run(&self.analysis, job, stop, &self.metrics)).await
            }
            NodeKind::Pod => match &self.pod {
                Some(pod) => Box::pin(pod.run(job, stop, handing_back)).await,
                None => Effect::Done(Outcome::failed(
                    "this worker has no Kubernetes client for pod jobs".to_owned(),
                )),
            },
            NodeKind::Helm => match &self.helm {
                Some(helm) => {
                    let release = job.helm().map(|h| h.release.clone()).unwrap_or_default();
                    let span = tracing::info_span!(
                        "helm",
                        otel.name = format!("helm {release}"),
                        otel.kind = "client"
                    );
                    Box::pin(helm.run(job, stop).instrument(span)).await
                }
                None => Effect::Done(Outcome::failed(
                    "this worker does not take helm jobs".to_owned(),
                )),
            },
        }
    }
}

/// Ends when a job's `timeout` has passed; never, for a job without one.
pub(crate) async fn timed_out(timeout: Option<std::time::Duration>) {
    match timeout {
        Some(t) => tokio::time::sleep(t).await,
        None => std::future::pending().await,
    }
}

/// Sends `request` on `http` in a span of its own (`HTTP <method> <host>`), its trace context
/// in the request's `traceparent`, so that a service that traces too continues the trace.
pub(crate) async fn send_traced(
    http: &reqwest::Client,
    request: reqwest::RequestBuilder,
) -> reqwest::Result<reqwest::Response> {
    let mut request = request.build()?;
    if !baton_telemetry::trace::enabled() {
        return http.execute(request).await;
    }
    let span = tracing::info_span!(
        "http",
        otel.name = format!(
            "HTTP {} {}",
            request.method(),
            request.url().host_str().unwrap_or_default()
        ),
        otel.kind = "client",
        http.request.method = %request.method(),
        server.address = request.url().host_str().unwrap_or_default(),
    );
    let mut headers = Vec::new();
    baton_telemetry::trace::inject(&span, &mut headers);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            reqwest::header::HeaderValue::from_str(&value),
        ) {
            request.headers_mut().insert(name, value);
        }
    }
    http.execute(request).instrument(span).await
}
