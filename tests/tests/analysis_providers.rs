//! The analysis providers beyond Prometheus and web checks, against what stands in for them
//! here: CloudWatch's `GetMetricData` against moto's CloudWatch, and Datadog's v1 and v2
//! query APIs against a responder that answers in Datadog's documented response format (no
//! real Datadog is reachable from these machines). Keys come from Secrets on the tests'
//! Kubernetes API server, and never show in what an analysis reports.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_cloudwatch as cw;
use baton_schemas::analysis::{AnalysisSpec, Metric};
use baton_schemas::wire::{Job, Outcome, Work};
use baton_schemas::{Attempt, NodeName, RunId, WorkflowName};
use baton_tests::aws::Moto;
use baton_tests::kube::KubeEnv;
use baton_workers::executors::{Effect, analysis};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

fn metric(yaml: &str) -> Metric {
    serde_norway::from_str(yaml).expect("a metric")
}

/// Runs an analysis of `metrics` (its Secrets read in `namespace`) on `runtime`; returns its
/// outcome and its output as JSON.
fn run(
    runtime: &tokio::runtime::Runtime,
    providers: &analysis::Providers,
    namespace: Option<&str>,
    metrics: Vec<Metric>,
) -> (Outcome, serde_json::Value) {
    let job = Job {
        timeout_ms: Some(60_000),
        ..Job::new(
            RunId::new("r1"),
            WorkflowName::new("wf"),
            NodeName::new("judge"),
            Attempt(1),
            Work::Analysis(Box::new(AnalysisSpec {
                metrics,
                namespace: namespace.map(str::to_owned),
                ..AnalysisSpec::default()
            })),
        )
    };
    let effect = runtime.block_on(analysis::run(
        providers,
        &job,
        &CancellationToken::new(),
        &baton_workers::WorkerMetrics::default(),
    ));
    let Effect::Done(outcome) = effect else {
        panic!("stopped")
    };
    let output = match &outcome {
        Outcome::Succeeded { output } => output.clone(),
        Outcome::Failed { output, .. } => output.clone().unwrap_or_default(),
    };
    (outcome, serde_json::from_str(&output).unwrap_or_default())
}

fn runtime() -> tokio::runtime::Runtime {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn cloudwatch_metric_data_is_judged_as_argo_rollouts_templates_write_it() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start(dir.path()).unwrap();
    let conf = cw::Config::builder()
        .behavior_version(cw::config::BehaviorVersion::latest())
        .region(cw::config::Region::new("us-east-1"))
        .credentials_provider(cw::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .endpoint_url(&moto.url)
        .http_client(baton_alb::http_client())
        .build();
    let client = cw::Client::from_conf(conf);
    let runtime = runtime();
    // Error rates of two versions' load balancers over the last minutes.
    let now = std::time::SystemTime::now();
    for (balancer, rates) in [
        ("app/v2", [0.001, 0.004, 0.002]),
        ("app/v3", [0.001, 0.3, 0.2]),
    ] {
        for (i, rate) in rates.iter().enumerate() {
            let at = now - Duration::from_secs(60 * (i as u64 + 1));
            let datum = cw::types::MetricDatum::builder()
                .metric_name("ErrorRate")
                .dimensions(
                    cw::types::Dimension::builder()
                        .name("LoadBalancer")
                        .value(balancer)
                        .build(),
                )
                .timestamp(aws_smithy_types::DateTime::from(at))
                .value(*rate)
                .build();
            runtime
                .block_on(
                    client
                        .put_metric_data()
                        .namespace("Baton/Test")
                        .metric_data(datum)
                        .send(),
                )
                .unwrap();
        }
    }
    let providers = analysis::Providers::new(reqwest::Client::new()).with_cloudwatch(client);
    let judged = |balancer: &str| {
        metric(&format!(
            r#"
name: error-rate
successCondition: "len(result[0].Values) >= 3 and all(result[0].Values, {{# <= 0.01}})"
failureCondition: "any(result[0].Values, {{# > 0.1}})"
provider:
  cloudWatch:
    interval: 15m
    metricDataQueries:
    - id: rate
      metricStat:
        metric:
          namespace: Baton/Test
          metricName: ErrorRate
          dimensions: [{{name: LoadBalancer, value: "{balancer}"}}]
        period: 60
        stat: Maximum
"#
        ))
    };
    let (outcome, output) = run(&runtime, &providers, None, vec![judged("app/v2")]);
    assert!(matches!(outcome, Outcome::Succeeded { .. }), "{output:#}");
    let seen = output["metrics"][0]["last"][0]["value"].as_str().unwrap();
    assert!(seen.contains("\"Id\"") && seen.contains("0.004"), "{seen}");
    let (outcome, output) = run(&runtime, &providers, None, vec![judged("app/v3")]);
    assert!(matches!(outcome, Outcome::Failed { .. }), "{output:#}");
    assert_eq!(output["metrics"][0]["phase"], "Failed");
}

/// What the Datadog stand-in saw: each request's path and query, and whether its keys were
/// right.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

/// Answers as Datadog does: `GET /api/v1/query` with a series (its last point 0.02), `POST
/// /api/v2/query/scalar` with one column (0.004); 403 without the right keys, as Datadog does.
/// `/echo` answers 500 with the request's Authorization header in its body.
fn datadog_stand_in(runtime: &tokio::runtime::Runtime, seen: Seen) -> u16 {
    use axum::extract::State;
    use axum::http::Uri;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};
    fn keys_ok(headers: &HeaderMap) -> bool {
        headers.get("DD-API-KEY").is_some_and(|v| v == "api-123")
            && headers
                .get("DD-APPLICATION-KEY")
                .is_some_and(|v| v == "app-456")
    }
    let forbidden = || {
        (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({"errors": ["Forbidden"]})),
        )
    };
    let app = axum::Router::new()
        .route(
            "/api/v1/query",
            get(
                move |State(seen): State<Seen>, uri: Uri, headers: HeaderMap| async move {
                    seen.0.lock().unwrap().push(uri.to_string());
                    if !keys_ok(&headers) {
                        return forbidden();
                    }
                    (StatusCode::OK, axum::Json(serde_json::json!({
                        "status": "ok", "res_type": "time_series", "from_date": 1, "to_date": 2,
                        "query": "avg:requests.error.rate{service:web}",
                        "series": [{"metric": "requests.error.rate", "pointlist": [[1.0, 0.5], [2.0, 0.02]],
                                    "scope": "service:web", "length": 2}]
                    })))
                },
            ),
        )
        .route(
            "/api/v2/query/scalar",
            post(
                move |State(seen): State<Seen>, headers: HeaderMap, body: String| async move {
                    seen.0.lock().unwrap().push(body);
                    if !keys_ok(&headers) {
                        return forbidden();
                    }
                    (StatusCode::OK, axum::Json(serde_json::json!({
                        "data": {"type": "scalar_response", "attributes": {"columns": [
                            {"name": "a", "type": "number", "values": [0.004], "meta": {"unit": null}}
                        ]}}
                    })))
                },
            ),
        )
        .route(
            "/echo",
            get(|headers: HeaderMap| async move {
                let token = headers
                    .get("Authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                (StatusCode::INTERNAL_SERVER_ERROR, format!("refused {token}"))
            }),
        )
        .with_state(seen);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    runtime.spawn(async move { axum::serve(listener, app).await });
    port
}

#[test]
fn datadog_v1_and_v2_queries_with_keys_from_secrets_that_never_show() {
    let dir = tempfile::tempdir().unwrap();
    let kube = KubeEnv::new(dir.path()).unwrap();
    let runtime = runtime();
    let seen = Seen::default();
    let port = datadog_stand_in(&runtime, seen.clone());
    let secrets: Api<Secret> = Api::namespaced(kube.client.clone(), &kube.namespace);
    for (name, data) in [
        (
            "dd-keys",
            BTreeMap::from([
                ("address".to_owned(), format!("http://127.0.0.1:{port}")),
                ("api-key".to_owned(), "api-123".to_owned()),
                ("app-key".to_owned(), "app-456".to_owned()),
            ]),
        ),
        (
            "tokens",
            BTreeMap::from([("web".to_owned(), "s3cr3t-token".to_owned())]),
        ),
    ] {
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            string_data: Some(data),
            ..Default::default()
        };
        kube.block_on(secrets.create(&PostParams::default(), &secret))
            .unwrap();
    }
    let providers = analysis::Providers::new(reqwest::Client::new()).with_kube(kube.client.clone());
    let ns = Some(kube.namespace.as_str());
    let v1 = metric(
        r#"
name: v1
successCondition: result < 0.05
provider:
  datadog:
    interval: 5m
    query: "avg:requests.error.rate{service:web}"
    secretRef: {name: dd-keys, namespaced: true}
"#,
    );
    let v2 = metric(
        r#"
name: v2
successCondition: default(result, 0) < 0.01
provider:
  datadog:
    apiVersion: v2
    queries:
      a: "sum:requests.errors{service:web}.as_count()"
      b: "sum:requests{service:web}.as_count()"
    formula: a / b
    aggregator: sum
    secretRef: {name: dd-keys, namespaced: true}
"#,
    );
    let (outcome, output) = run(&runtime, &providers, ns, vec![v1, v2]);
    assert!(matches!(outcome, Outcome::Succeeded { .. }), "{output:#}");
    assert_eq!(output["metrics"][0]["last"][0]["value"], "0.02");
    assert_eq!(output["metrics"][1]["last"][0]["value"], "0.004");
    let requests = seen.0.lock().unwrap().clone();
    let v1_request = requests
        .iter()
        .find(|r| r.starts_with("/api/v1/query"))
        .unwrap();
    assert!(
        v1_request.contains("query=avg%3Arequests.error.rate%7Bservice%3Aweb%7D")
            && v1_request.contains("from="),
        "{v1_request}"
    );
    let v2_request: serde_json::Value = requests
        .iter()
        .find_map(|r| serde_json::from_str(r).ok())
        .unwrap();
    let attributes = &v2_request["data"]["attributes"];
    assert_eq!(attributes["formulas"][0]["formula"], "a / b");
    assert_eq!(attributes["queries"][0]["aggregator"], "sum");
    assert_eq!(
        attributes["queries"][1]["query"],
        "sum:requests{service:web}.as_count()"
    );

    // A web check's header from a Secret: the answer that echoes it is redacted.
    let echo = metric(&format!(
        r#"
name: echo
provider:
  web:
    url: "http://127.0.0.1:{port}/echo"
    headers: [{{key: Authorization, value: "Bearer {{{{secret:tokens:web}}}}"}}]
"#
    ));
    let (outcome, output) = run(&runtime, &providers, ns, vec![echo]);
    let text = format!("{outcome:?} {output}");
    assert!(text.contains("refused Bearer ***"), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");

    // A missing Secret leaves the metric unmeasured: inconclusive, for a person to mend.
    let missing = metric(
        r#"
name: missing
provider:
  datadog: {query: "avg:x{*}", secretRef: {name: nope, namespaced: true}}
"#,
    );
    let (outcome, output) = run(&runtime, &providers, ns, vec![missing]);
    assert!(matches!(outcome, Outcome::Failed { .. }));
    assert_eq!(output["phase"], "Inconclusive", "{output:#}");
    let message = output["metrics"][0]["message"].as_str().unwrap();
    assert_eq!(
        message,
        format!(
            "could not be measured: Secret {}/nope not found",
            kube.namespace
        )
    );
}
