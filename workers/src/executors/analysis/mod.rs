//! The `analysis` executor: measures each metric `count` times, `interval` apart (a
//! background analysis' metric without a count until the planner stops it), from Prometheus
//! (`/api/v1/query`), an HTTP check, CloudWatch or Datadog, and judges every measurement with
//! the metric's conditions (see `baton_schemas::analysis` for the rules).
//!
//! - Successful: the node succeeds.
//! - Failed (or too many errors in a row): the node fails.
//! - Inconclusive (more inconclusive measurements than `inconclusiveLimit`, or none successful
//!   or failed: only inconclusive ones and errors within their limits): the node fails with the
//!   phase `Inconclusive` in its output; a Cell's rollout then waits for a person to resume or
//!   abort it rather than rolling back.
//!
//! The output is an [`AnalysisReport`] as JSON, at most the output limit: the verdict and each
//! metric's result with its last measurements.
//! Measuring only reads, so a job delivered again starts over without harm. A Cell's
//! experiment step is an analysis job too: see [`experiment`].

use std::sync::Arc;

use baton_schemas::OUTPUT_LIMIT_BYTES;
use baton_schemas::analysis::Metric;
use baton_schemas::condition::{Condition, Value};
use baton_schemas::reports::{
    AnalysisPhase as Phase, AnalysisReport, Measurement, MetricReport, to_output,
};
use baton_schemas::wire::{FailureKind, Job, Outcome};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::Effect;

mod cloudwatch;
mod datadog;
mod experiment;
mod http;
mod secrets;

/// What measurements are taken with: the HTTP client, and the CloudWatch and Kubernetes
/// clients, each built on first use (a worker that never measures CloudWatch or reads a
/// Secret never reads their settings).
#[derive(Clone)]
pub struct Providers {
    /// For Prometheus, web checks and Datadog.
    pub http: reqwest::Client,
    cloudwatch: Arc<OnceCell<aws_sdk_cloudwatch::Client>>,
    kube: Arc<OnceCell<Option<kube::Client>>>,
}

impl Providers {
    /// Returns providers whose AWS and Kubernetes clients come from the environment.
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            cloudwatch: Arc::default(),
            kube: Arc::default(),
        }
    }

    /// Uses `kube` to read Secrets.
    #[must_use]
    pub fn with_kube(self, kube: kube::Client) -> Self {
        Self {
            kube: Arc::new(OnceCell::new_with(Some(Some(kube)))),
            ..self
        }
    }

    /// Uses `client` for CloudWatch.
    #[must_use]
    pub fn with_cloudwatch(self, client: aws_sdk_cloudwatch::Client) -> Self {
        Self {
            cloudwatch: Arc::new(OnceCell::new_with(Some(client))),
            ..self
        }
    }

    async fn cloudwatch(&self) -> &aws_sdk_cloudwatch::Client {
        self.cloudwatch
            .get_or_init(|| async {
                let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                let config = baton_alb::sdk_config(loader, baton_alb::Timeouts::default()).await;
                aws_sdk_cloudwatch::Client::new(&config)
            })
            .await
    }

    async fn kube(&self) -> Option<&kube::Client> {
        self.kube
            .get_or_init(|| async { baton_telemetry::kube_client().await.ok() })
            .await
            .as_ref()
    }
}

/// The default number of errors in a row a metric tolerates.
const CONSECUTIVE_ERROR_LIMIT: u32 = 4;
/// How many measurements of each metric the output keeps (the last ones).
const KEPT: usize = 5;

/// Runs the job's analysis to its verdict, its timeout, or `stop`.
pub async fn run(
    providers: &Providers,
    job: &Job,
    stop: &CancellationToken,
    metrics: &crate::WorkerMetrics,
) -> Effect {
    let Some(spec) = job.analysis() else {
        return Effect::Done(Outcome::failed("not an analysis job"));
    };
    if let Some(e) = &spec.experiment {
        let namespace = spec.namespace.as_deref();
        return experiment::run(providers, namespace, e, stop, metrics, job.timeout()).await;
    }
    if spec.metrics.is_empty() {
        return Effect::Done(Outcome::failed(
            "analysis job without metrics (its templates were not resolved)",
        ));
    }
    let all = futures::future::join_all(
        spec.metrics
            .iter()
            .map(|m| measure_metric(providers, spec.namespace.as_deref(), m, stop, metrics)),
    );
    let timeout = job.timeout();
    let reports = tokio::select! {
        _ = stop.cancelled() => return Effect::Stopped,
        _ = super::timed_out(timeout) => {
            return Effect::Done(Outcome::failed("analysis timed out before every measurement was taken"));
        }
        reports = all => reports,
    };
    let Some(reports) = reports.into_iter().collect::<Option<Vec<_>>>() else {
        return Effect::Stopped;
    };
    let phase = reports
        .iter()
        .map(|r| r.phase)
        .max()
        .unwrap_or(Phase::Successful);
    Effect::Done(outcome(phase, &reports))
}

/// The node's outcome for the analyses' `phase` and their reports.
fn outcome(phase: Phase, reports: &[MetricReport]) -> Outcome {
    let output = report(phase, reports);
    match phase {
        Phase::Successful => Outcome::Succeeded { output },
        other => {
            let worst: Vec<String> = reports
                .iter()
                .filter(|r| r.phase == other)
                .map(|r| {
                    format!(
                        "metric {} {}",
                        r.name,
                        r.message.as_deref().unwrap_or("did not pass")
                    )
                })
                .collect();
            let verdict = match other {
                Phase::Inconclusive => "analysis inconclusive",
                _ => "analysis failed",
            };
            Outcome::Failed {
                error: format!("{verdict}: {}", worst.join("; ")),
                output: Some(output),
                kind: FailureKind::Retryable,
            }
        }
    }
}

/// Returns the report as JSON within the output limit, dropping kept measurements if needed,
/// then every metric's result.
fn report(phase: Phase, reports: &[MetricReport]) -> String {
    let mut report = AnalysisReport {
        metrics: Some(reports.to_vec()),
        phase,
    };
    let mut text = to_output(&report);
    if text.len() > OUTPUT_LIMIT_BYTES {
        for m in report.metrics.iter_mut().flatten() {
            m.last.clear();
        }
        text = to_output(&report);
    }
    if text.len() > OUTPUT_LIMIT_BYTES {
        report.metrics = None;
        text = to_output(&report);
    }
    text
}

/// A measurement's phase as a metric's label value.
fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Successful => "successful",
        Phase::Failed => "failed",
        Phase::Inconclusive => "inconclusive",
        Phase::Error => "error",
    }
}

/// Takes one metric's measurements; `None` when stopped.
async fn measure_metric(
    providers: &Providers,
    namespace: Option<&str>,
    metric: &Metric,
    stop: &CancellationToken,
    metrics: &crate::WorkerMetrics,
) -> Option<MetricReport> {
    let mut r = MetricReport {
        name: metric.name.clone(),
        phase: Phase::Successful,
        successful: 0,
        failed: 0,
        inconclusive: 0,
        errors: 0,
        last: Vec::new(),
        message: None,
    };
    let failure_limit = metric.failure_limit.unwrap_or(0);
    let inconclusive_limit = metric.inconclusive_limit.unwrap_or(0);
    let error_limit = metric
        .consecutive_error_limit
        .unwrap_or(CONSECUTIVE_ERROR_LIMIT);
    let success = metric.success_condition.as_deref().map(Condition::parse);
    let failure = metric.failure_condition.as_deref().map(Condition::parse);
    let kube = providers.kube().await;
    let worker_namespace = kube.map_or("default", |k| k.default_namespace()).to_owned();
    let namespace = namespace.unwrap_or(&worker_namespace);
    let prepared = prepare(kube, &worker_namespace, namespace, metric).await;
    let (metric, source, revealed) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            // Not a sign the version is bad: a rollout waits for a person to mend and resume.
            r.phase = Phase::Inconclusive;
            r.message = Some(format!("could not be measured: {e}"));
            return Some(r);
        }
    };
    let metric = &metric;
    let mut consecutive_errors = 0;
    // A background analysis' metric without a count measures until the planner stops it.
    let limit = (!metric.is_unbounded()).then(|| metric.count());
    let mut i = 0u32;
    while limit.is_none_or(|n| i < n) {
        i = i.saturating_add(1);
        let wait = match i - 1 {
            0 => metric.initial_delay.map(|d| d.0).unwrap_or_default(),
            _ => metric.interval.map(|d| d.0).unwrap_or_default(),
        };
        if !wait.is_zero() {
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let (phase, value) = match take(providers, &source, metric).await {
            Ok(result) => match judge(success.as_ref(), failure.as_ref(), &result) {
                Ok(phase) => (phase, result.to_string()),
                Err(e) => (Phase::Error, format!("{result}: {e}")),
            },
            Err(e) => (Phase::Error, e),
        };
        // What the provider answered may echo what it was sent.
        let value = revealed.redact(&value);
        debug!(metric = %metric.name, measurement = i, ?phase, %value, "measured");
        metrics.count_measurement(metric.provider.name(), phase_name(phase));
        match phase {
            Phase::Successful => r.successful += 1,
            Phase::Failed => r.failed += 1,
            Phase::Inconclusive => r.inconclusive += 1,
            Phase::Error => r.errors += 1,
        }
        consecutive_errors = if phase == Phase::Error {
            consecutive_errors + 1
        } else {
            0
        };
        let mut value = value;
        if value.len() > 200 {
            let mut end = 200;
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            value.truncate(end);
        }
        r.last.push(Measurement { phase, value });
        if r.last.len() > KEPT {
            r.last.remove(0);
        }
        // A verdict that can no longer change ends the metric early.
        if r.failed > failure_limit {
            r.phase = Phase::Failed;
            r.message = Some(format!(
                "failed: {} failed measurement(s), more than the failureLimit of {failure_limit}",
                r.failed
            ));
            return Some(r);
        }
        if consecutive_errors > error_limit {
            r.phase = Phase::Failed;
            r.message = Some(format!(
                "failed: {consecutive_errors} errors in a row, more than the consecutiveErrorLimit of {error_limit}; last: {}",
                r.last.last().map(|m| m.value.as_str()).unwrap_or_default()
            ));
            return Some(r);
        }
        if r.inconclusive > inconclusive_limit {
            r.phase = Phase::Inconclusive;
            r.message = Some(format!(
                "was inconclusive {} time(s), more than the inconclusiveLimit of {inconclusive_limit}",
                r.inconclusive
            ));
            return Some(r);
        }
    }
    r.phase = verdict(r.successful, r.failed);
    let last = r.last.last().map(|m| m.value.as_str()).unwrap_or_default();
    match r.phase {
        Phase::Failed => {
            r.message = Some(format!(
                "failed: no measurement succeeded and {} failed; last: {last}",
                r.failed
            ));
        }
        Phase::Inconclusive => {
            r.message = Some(format!(
                "was inconclusive: no measurement succeeded or failed ({} inconclusive, {} error(s)); last: {last}",
                r.inconclusive, r.errors
            ));
        }
        _ => {}
    }
    Some(r)
}

/// Returns a metric's phase once its measurements are all taken within their limits (the
/// limits end a metric early otherwise): successful when one succeeded (as Argo Rollouts
/// judges a metric within its limits); failed when none did and one failed; inconclusive when
/// measurements were only inconclusive or errors. Nothing then says the version is bad, so a
/// Cell's rollout waits for a person rather than rolling back and blocking it.
pub fn verdict(successful: u32, failed: u32) -> Phase {
    match (successful, failed) {
        (1.., _) => Phase::Successful,
        (0, 1..) => Phase::Failed,
        (0, 0) => Phase::Inconclusive,
    }
}

/// Judges one result: failure first, then success (see the module's docs).
pub fn judge(
    success: Option<&Result<Condition, String>>,
    failure: Option<&Result<Condition, String>>,
    result: &Value,
) -> Result<Phase, String> {
    let holds = |c: Option<&Result<Condition, String>>| -> Result<Option<bool>, String> {
        match c {
            None => Ok(None),
            Some(Ok(c)) => c.holds(result).map(Some),
            Some(Err(e)) => Err(e.clone()),
        }
    };
    let failed = holds(failure)?;
    let succeeded = holds(success)?;
    Ok(match (succeeded, failed) {
        (_, Some(true)) => Phase::Failed,
        (Some(true), _) => Phase::Successful,
        (Some(false), None) => Phase::Failed,
        (Some(false), Some(false)) => Phase::Inconclusive,
        (None, _) => Phase::Successful,
    })
}

/// What a metric's measurements need beyond the metric: a Datadog account.
enum Source {
    Plain,
    Datadog(datadog::Account),
}

/// Returns the metric with its Secrets' values in, what it measures from, and the values read.
async fn prepare(
    kube: Option<&kube::Client>,
    worker_namespace: &str,
    namespace: &str,
    metric: &Metric,
) -> Result<(Metric, Source, secrets::Revealed), String> {
    let (metric, mut revealed) = secrets::reveal(kube, namespace, metric).await?;
    let source = match &metric.provider.datadog {
        Some(d) => Source::Datadog(
            datadog::account(kube, worker_namespace, namespace, d, &mut revealed).await?,
        ),
        None => Source::Plain,
    };
    Ok((metric, source, revealed))
}

/// Takes one measurement.
async fn take(providers: &Providers, source: &Source, metric: &Metric) -> Result<Value, String> {
    let p = &metric.provider;
    match (source, &p.prometheus, &p.web, &p.cloud_watch, &p.datadog) {
        (_, Some(prometheus), ..) => http::prometheus(&providers.http, prometheus).await,
        (_, _, Some(web), ..) => http::web(&providers.http, web).await,
        (_, _, _, Some(c), _) => cloudwatch::measure(providers.cloudwatch().await, c).await,
        (Source::Datadog(account), .., Some(d)) => {
            datadog::measure(&providers.http, account, d).await
        }
        _ => Err("no provider".to_owned()),
    }
}

/// Returns what `path` (see [`baton_schemas::analysis::json_path`]) selects in `json`: the
/// one value it names, or a list of the values a wildcard or filter selects.
pub fn json_path(json: &serde_json::Value, path: &str) -> Result<serde_json::Value, String> {
    let query = baton_schemas::analysis::json_path(path).map_err(|e| format!("jsonPath {e}"))?;
    match query.query(json).all().as_slice() {
        [] => Err(format!("jsonPath {path}: no field or element there")),
        [one] => Ok((*one).clone()),
        many => Ok(serde_json::Value::Array(
            many.iter().map(|v| (*v).clone()).collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(text: &str) -> Result<Condition, String> {
        Condition::parse(text)
    }

    #[test]
    fn measurements_are_judged_failure_first() {
        let v = Value::List(vec![Value::Number(0.9)]);
        let ok = c("result[0] >= 0.95");
        let bad = c("result[0] < 0.5");
        assert_eq!(judge(Some(&ok), None, &v), Ok(Phase::Failed));
        assert_eq!(judge(Some(&ok), Some(&bad), &v), Ok(Phase::Inconclusive));
        assert_eq!(judge(None, Some(&bad), &v), Ok(Phase::Successful));
        assert_eq!(judge(None, None, &v), Ok(Phase::Successful));
        let low = Value::List(vec![Value::Number(0.1)]);
        assert_eq!(judge(Some(&ok), Some(&bad), &low), Ok(Phase::Failed));
        let empty = Value::List(vec![]);
        assert!(judge(Some(&ok), None, &empty).is_err());
    }

    #[test]
    fn json_paths() {
        let json = serde_json::json!({"data": {"ok": true, "items": [{"v": 3}], "a-b": 1}});
        assert_eq!(
            json_path(&json, "$.data.ok").unwrap(),
            serde_json::json!(true)
        );
        assert_eq!(
            json_path(&json, "{$.data.items[0].v}").unwrap(),
            serde_json::json!(3)
        );
        assert_eq!(
            json_path(&json, ".data['a-b']").unwrap(),
            serde_json::json!(1)
        );
        assert!(
            json_path(&json, "$.data.nope")
                .unwrap_err()
                .contains("no field")
        );
        // What RFC 9535 adds: a filter, and a wildcard selecting several values.
        let many = serde_json::json!({"items": [{"v": 3, "ok": true}, {"v": 4, "ok": false}]});
        assert_eq!(
            json_path(&many, "$.items[?@.ok == true].v").unwrap(),
            serde_json::json!(3)
        );
        assert_eq!(
            json_path(&many, "$.items[*].v").unwrap(),
            serde_json::json!([3, 4])
        );
        assert!(
            json_path(&json, "$.data[")
                .unwrap_err()
                .contains("JSONPath")
        );
    }

    #[test]
    fn a_metric_without_a_success_is_failed_only_when_a_measurement_failed() {
        assert_eq!(verdict(1, 1), Phase::Successful);
        assert_eq!(verdict(0, 1), Phase::Failed);
        // Only inconclusive measurements, or errors, within their limits: a person decides.
        assert_eq!(verdict(0, 0), Phase::Inconclusive);
    }
}
