//! Calls to the services Baton drives, counted by operation and outcome: ELBv2 (each
//! attempt, as the SDK's interceptor sees it, so throttled attempts the SDK retried are
//! counted too) and the Kubernetes API (each request through the client's tower stack).
//!
//! One set of families per process, process-wide: the clients are built in many places
//! (discovery, executors, the cluster watch), and a call is counted wherever it is made.
//! [`Exposition::new`](crate::Exposition::new) registers them.

use std::sync::LazyLock;
use std::task::{Context, Poll};

use http::{Method, Request, Response, Uri};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// The service answered with success.
    Ok,
    /// The service refused for its rate limit (ELBv2 `Throttling`, Kubernetes 429).
    Throttled,
    /// A conflict (Kubernetes 409: an object changed since it was read, or exists).
    Conflict,
    /// What was asked for does not exist.
    NotFound,
    /// Any other error answer.
    Error,
    /// No answer: the connection failed or timed out.
    Unreachable,
}

impl CallOutcome {
    fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Throttled => "throttled",
            CallOutcome::Conflict => "conflict",
            CallOutcome::NotFound => "not_found",
            CallOutcome::Error => "error",
            CallOutcome::Unreachable => "unreachable",
        }
    }

    /// The outcome of an HTTP answer with `status`.
    pub fn of_status(status: u16) -> CallOutcome {
        match status {
            200..=399 => CallOutcome::Ok,
            404 => CallOutcome::NotFound,
            409 => CallOutcome::Conflict,
            429 => CallOutcome::Throttled,
            _ => CallOutcome::Error,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Elbv2Labels {
    operation: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KubeLabels {
    verb: &'static str,
    resource: String,
    outcome: &'static str,
}

/// The process's client call counters.
#[derive(Clone, Debug, Default)]
pub struct ClientCalls {
    elbv2: Family<Elbv2Labels, Counter>,
    kubernetes: Family<KubeLabels, Counter>,
}

static CALLS: LazyLock<ClientCalls> = LazyLock::new(ClientCalls::default);

/// Returns the process's client call counters.
pub fn client_calls() -> &'static ClientCalls {
    &CALLS
}

impl ClientCalls {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "baton_elbv2_calls",
            "ELBv2 API call attempts, by operation and outcome (ok, throttled, not_found, error, unreachable); the SDK retries throttled ones.",
            self.elbv2.clone(),
        );
        registry.register(
            "baton_kubernetes_calls",
            "Kubernetes API requests, by verb, resource and outcome (ok, throttled, conflict, not_found, error, unreachable).",
            self.kubernetes.clone(),
        );
    }

    /// Counts one ELBv2 call attempt of `operation` (`DescribeRules`, ...).
    pub fn count_elbv2(&self, operation: &str, outcome: CallOutcome) {
        let labels = Elbv2Labels {
            operation: operation.to_owned(),
            outcome: outcome.as_str(),
        };
        self.elbv2.get_or_create(&labels).inc();
    }

    fn count_kubernetes(&self, (verb, resource): (&'static str, String), outcome: CallOutcome) {
        let labels = KubeLabels {
            verb,
            resource,
            outcome: outcome.as_str(),
        };
        self.kubernetes.get_or_create(&labels).inc();
    }
}

/// Names a Kubernetes API request by verb (`get`, `list`, `watch`, `create`, `update`,
/// `patch`, `delete`) and resource (`pods`, `pods/log`, `workflows.baton.dev`, ...), as the
/// API server's own metrics do, from its method and path.
pub fn kube_request(method: &Method, uri: &Uri) -> (&'static str, String) {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // `/api/v1/...` (the core group) or `/apis/<group>/<version>/...`.
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => ("", &[][..]),
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    let (resource, named, subresource) = match rest {
        [] => ("", false, None),
        [resource] => (*resource, false, None),
        [resource, _name] => (*resource, true, None),
        [resource, _name, sub, ..] => (*resource, true, Some(*sub)),
    };
    let mut name = match group {
        "" => resource.to_owned(),
        group => format!("{resource}.{group}"),
    };
    if let Some(sub) = subresource {
        name = format!("{name}/{sub}");
    }
    let watching = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let verb = match *method {
        Method::GET if watching => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "other",
    };
    (verb, name)
}

/// A tower layer counting each Kubernetes API request (see [`kube_request`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct CountKubeCalls;

impl<S> tower::Layer<S> for CountKubeCalls {
    type Service = CountedKubeCalls<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountedKubeCalls(inner)
    }
}

/// The service [`CountKubeCalls`] wraps.
#[derive(Clone, Debug)]
pub struct CountedKubeCalls<S>(S);

impl<S, B, R> tower::Service<Request<B>> for CountedKubeCalls<S>
where
    S: tower::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let described = kube_request(request.method(), request.uri());
        // A span per request, in the trace of whoever made it (a job's execution).
        let span = match crate::trace::enabled() {
            true => tracing::info_span!(
                "kubernetes",
                otel.name = format!("kubernetes {} {}", described.0, described.1),
                otel.kind = "client",
            ),
            false => tracing::Span::none(),
        };
        let answer = self.0.call(request);
        Box::pin(tracing::Instrument::instrument(
            async move {
                let answer = answer.await;
                let outcome = match &answer {
                    Ok(response) => CallOutcome::of_status(response.status().as_u16()),
                    Err(_) => CallOutcome::Unreachable,
                };
                client_calls().count_kubernetes(described, outcome);
                answer
            },
            span,
        ))
    }
}

/// Returns a Kubernetes client from the environment's configuration (KUBECONFIG, or the
/// pod's service account), as `kube::Client::try_default` does, with its requests counted.
pub async fn kube_client() -> Result<kube::Client, kube::Error> {
    let config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    kube_client_from(config)
}

/// Returns a Kubernetes client of `config` (a member cluster's, say), its requests counted.
pub fn kube_client_from(config: kube::Config) -> Result<kube::Client, kube::Error> {
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&CountKubeCalls)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(method: Method, uri: &str) -> (&'static str, String) {
        kube_request(&method, &uri.parse().unwrap())
    }

    #[test]
    fn requests_are_named_as_the_api_server_names_them() {
        let cases = [
            (Method::GET, "/api/v1/namespaces/ns/pods/p1", "get", "pods"),
            (
                Method::GET,
                "/api/v1/namespaces/ns/pods?labelSelector=a",
                "list",
                "pods",
            ),
            (
                Method::GET,
                "/api/v1/pods?watch=true&resourceVersion=1",
                "watch",
                "pods",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/ns/pods/p1/log?container=main",
                "get",
                "pods/log",
            ),
            (Method::POST, "/api/v1/namespaces/ns/pods", "create", "pods"),
            (
                Method::DELETE,
                "/api/v1/namespaces/ns/pods/p1",
                "delete",
                "pods",
            ),
            (
                Method::PATCH,
                "/apis/baton.dev/v1alpha1/namespaces/ns/workflows/w/status",
                "patch",
                "workflows.baton.dev/status",
            ),
            (
                Method::PUT,
                "/apis/discovery.k8s.io/v1/namespaces/ns/endpointslices/s",
                "update",
                "endpointslices.discovery.k8s.io",
            ),
            (
                Method::POST,
                "/apis/authentication.k8s.io/v1/tokenreviews",
                "create",
                "tokenreviews.authentication.k8s.io",
            ),
            (Method::GET, "/api/v1/namespaces/ns", "get", "namespaces"),
            (
                Method::GET,
                "/apis/baton.dev/v1alpha1/workflows",
                "list",
                "workflows.baton.dev",
            ),
        ];
        for (method, uri, verb, resource) in cases {
            assert_eq!(describe(method, uri), (verb, resource.to_owned()), "{uri}");
        }
    }

    #[test]
    fn statuses_are_outcomes() {
        assert_eq!(CallOutcome::of_status(201), CallOutcome::Ok);
        assert_eq!(CallOutcome::of_status(429), CallOutcome::Throttled);
        assert_eq!(CallOutcome::of_status(409), CallOutcome::Conflict);
        assert_eq!(CallOutcome::of_status(404), CallOutcome::NotFound);
        assert_eq!(CallOutcome::of_status(500), CallOutcome::Error);
    }
}
