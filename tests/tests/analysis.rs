//! The analysis executor against a real Prometheus scraping metrics the test serves: counts
//! and intervals, failure limits that end a metric early, inconclusive results, errors in a
//! row, and an HTTP check with a JSON path.

use std::time::{Duration, Instant};

use baton_schemas::analysis::{AnalysisSpec, Metric};
use baton_schemas::wire::{Job, Outcome, Work};
use baton_schemas::{Attempt, NodeName, RunId, WorkflowName};
use baton_tests::aws::Prometheus;
use baton_workers::executors::{Effect, analysis};
use tokio_util::sync::CancellationToken;

const METRICS: &str =
    "app_success_ratio{version=\"2.0.0\"} 0.99\napp_success_ratio{version=\"3.0.0\"} 0.5\n";

fn metric(prometheus: &Prometheus, yaml: &str) -> Metric {
    let text = yaml.replace("PROMETHEUS", &prometheus.url);
    serde_norway::from_str(&text).expect("a metric")
}

fn job(metrics: Vec<Metric>) -> Job {
    Job {
        timeout_ms: Some(60_000),
        ..Job::new(
            RunId::new("r1"),
            WorkflowName::new("wf"),
            NodeName::new("judge"),
            Attempt(1),
            Work::Analysis(Box::new(AnalysisSpec {
                metrics,
                ..AnalysisSpec::default()
            })),
        )
    }
}

/// Runs an analysis; returns its outcome, its output as JSON, and how long it took.
fn run(metrics: Vec<Metric>) -> (Outcome, serde_json::Value, Duration) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let started = Instant::now();
    let effect = runtime.block_on(analysis::run(
        &analysis::Providers::new(http),
        &job(metrics),
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
    let json = serde_json::from_str(&output).unwrap_or_default();
    (outcome, json, started.elapsed())
}

#[test]
fn prometheus_measurements_are_counted_judged_and_limited() {
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start(dir.path(), METRICS).unwrap();
    prometheus
        .wait_for(
            "app_success_ratio{version=\"3.0.0\"}",
            Duration::from_secs(30),
            |v| v == 0.5,
        )
        .unwrap();

    // Two good measurements, half a second apart.
    let good = metric(
        &prometheus,
        r#"{name: success-rate, count: 2, interval: 500ms, successCondition: "result[0] >= 0.95",
            provider: {prometheus: {address: PROMETHEUS, query: 'app_success_ratio{version="2.0.0"}'}}}"#,
    );
    let (outcome, output, took) = run(vec![good.clone()]);
    assert!(matches!(outcome, Outcome::Succeeded { .. }), "{outcome:?}");
    assert_eq!(output["phase"], "Successful");
    assert_eq!(output["metrics"][0]["successful"], 2);
    assert_eq!(output["metrics"][0]["last"][0]["value"], "[0.99]");
    assert!(took >= Duration::from_millis(500), "{took:?}");

    // 3.0.0 fails every time: one failure is tolerated, the second ends the metric early.
    let bad = metric(
        &prometheus,
        r#"{name: success-rate, count: 5, interval: 200ms, failureLimit: 1, successCondition: "result[0] >= 0.95",
            provider: {prometheus: {address: PROMETHEUS, query: 'app_success_ratio{version="3.0.0"}'}}}"#,
    );
    let (outcome, output, _) = run(vec![good, bad]);
    let Outcome::Failed { error, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        error,
        "analysis failed: metric success-rate failed: 2 failed measurement(s), more than the failureLimit of 1"
    );
    assert_eq!(output["metrics"][1]["failed"], 2, "{output}");

    // Neither condition holds: inconclusive, which a Cell's rollout waits on.
    let unsure = metric(
        &prometheus,
        r#"{name: unsure, successCondition: "result[0] >= 0.95", failureCondition: "result[0] < 0.2",
            provider: {prometheus: {address: PROMETHEUS, query: 'app_success_ratio{version="3.0.0"}'}}}"#,
    );
    let (outcome, output, _) = run(vec![unsure]);
    assert!(matches!(outcome, Outcome::Failed { .. }));
    assert_eq!(output["phase"], "Inconclusive");

    // Every measurement inconclusive, within the inconclusiveLimit: nothing says 3.0.0 is
    // bad, so the analysis is inconclusive (a rollout waits for a person), not failed (a
    // rollout would roll back and block the version).
    let unsure_within = metric(
        &prometheus,
        r#"{name: unsure, count: 2, interval: 100ms, inconclusiveLimit: 2,
            successCondition: "result[0] >= 0.95", failureCondition: "result[0] < 0.2",
            provider: {prometheus: {address: PROMETHEUS, query: 'app_success_ratio{version="3.0.0"}'}}}"#,
    );
    let (outcome, output, _) = run(vec![unsure_within]);
    let Outcome::Failed { error, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(output["phase"], "Inconclusive", "{output}");
    assert_eq!(output["metrics"][0]["inconclusive"], 2, "{output}");
    assert!(error.starts_with("analysis inconclusive"), "{error}");
    // So is a metric whose only measurement was an error within its limit.
    let one_error = metric(
        &prometheus,
        r#"{name: broken, successCondition: "result[0] > 0",
            provider: {prometheus: {address: PROMETHEUS, query: 'rate(app_success_ratio'}}}"#,
    );
    let (_, output, _) = run(vec![one_error]);
    assert_eq!(output["phase"], "Inconclusive", "{output}");

    // A query Prometheus refuses is an error each time; past the limit, the metric fails.
    let broken = metric(
        &prometheus,
        r#"{name: broken, count: 3, interval: 100ms, consecutiveErrorLimit: 1, successCondition: "result[0] > 0",
            provider: {prometheus: {address: PROMETHEUS, query: 'rate(app_success_ratio'}}}"#,
    );
    let (outcome, _, _) = run(vec![broken]);
    let Outcome::Failed { error, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(error.contains("2 errors in a row"), "{error}");
    assert!(
        error.contains("bad_data"),
        "Prometheus's own error is kept: {error}"
    );

    // An HTTP check of Prometheus's own status, read with a JSON path.
    let web = metric(
        &prometheus,
        r#"{name: ready, successCondition: "result == 'success'",
            provider: {web: {url: "PROMETHEUS/api/v1/status/buildinfo", jsonPath: "{$.status}"}}}"#,
    );
    let (outcome, _, _) = run(vec![web]);
    assert!(matches!(outcome, Outcome::Succeeded { .. }), "{outcome:?}");
}
