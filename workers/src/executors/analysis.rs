//! The `analysis` executor: measures each metric `count` times, `interval` apart, from
//! Prometheus (`/api/v1/query`) or an HTTP check, and judges every measurement with the
//! metric's conditions (see `baton_schemas::analysis` for the rules).
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
//! Measuring only reads, so a job delivered again starts over without harm.

use std::time::Duration;

use baton_schemas::OUTPUT_LIMIT_BYTES;
use baton_schemas::analysis::{Metric, PrometheusProvider, WebProvider};
use baton_schemas::condition::{Condition, Value};
use baton_schemas::reports::{
    AnalysisPhase as Phase, AnalysisReport, Measurement, MetricReport, to_output,
};
use baton_schemas::wire::{FailureKind, Job, Outcome};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::Effect;

/// The default number of errors in a row a metric tolerates.
const CONSECUTIVE_ERROR_LIMIT: u32 = 4;
/// How many measurements of each metric the output keeps (the last ones).
const KEPT: usize = 5;

/// Runs the job's analysis to its verdict, its timeout, or `stop`.
pub async fn run(
    http: &reqwest::Client,
    job: &Job,
    stop: &CancellationToken,
    metrics: &crate::WorkerMetrics,
) -> Effect {
    let Some(spec) = job.analysis() else {
        return Effect::Done(Outcome::failed("not an analysis job"));
    };
    if spec.metrics.is_empty() {
        return Effect::Done(Outcome::failed(
            "analysis job without metrics (its templates were not resolved)",
        ));
    }
    let all = futures::future::join_all(
        spec.metrics
            .iter()
            .map(|m| measure_metric(http, m, stop, metrics)),
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
    let output = report(phase, &reports);
    Effect::Done(match phase {
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
    })
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

/// The provider a metric measures with, as a metric's label value.
fn provider_name(metric: &Metric) -> &'static str {
    match (&metric.provider.prometheus, &metric.provider.web) {
        (Some(_), _) => "prometheus",
        (None, Some(_)) => "web",
        (None, None) => "none",
    }
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
    http: &reqwest::Client,
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
    let mut consecutive_errors = 0;
    for i in 0..metric.count() {
        let wait = match i {
            0 => metric.initial_delay.map(|d| d.0).unwrap_or_default(),
            _ => metric.interval.map(|d| d.0).unwrap_or_default(),
        };
        if !wait.is_zero() {
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let (phase, value) = match take(http, metric).await {
            Ok(result) => match judge(success.as_ref(), failure.as_ref(), &result) {
                Ok(phase) => (phase, result.to_string()),
                Err(e) => (Phase::Error, format!("{result}: {e}")),
            },
            Err(e) => (Phase::Error, e),
        };
        debug!(metric = %metric.name, measurement = i + 1, ?phase, %value, "measured");
        metrics.count_measurement(provider_name(metric), phase_name(phase));
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

/// Takes one measurement.
async fn take(http: &reqwest::Client, metric: &Metric) -> Result<Value, String> {
    match (&metric.provider.prometheus, &metric.provider.web) {
        (Some(p), _) => prometheus(http, p).await,
        (None, Some(w)) => web(http, w).await,
        (None, None) => Err("no provider".to_owned()),
    }
}

/// Runs an instant query: a vector gives the list of its values, a scalar its value.
async fn prometheus(http: &reqwest::Client, p: &PrometheusProvider) -> Result<Value, String> {
    let url = format!("{}/api/v1/query", p.address.trim_end_matches('/'));
    let timeout = p.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(30));
    // POST with a form body, as Prometheus allows: a long query does not hit URL limits.
    let request = http
        .post(&url)
        .form(&[("query", &p.query)])
        .timeout(timeout);
    let response = super::send_traced(http, request)
        .await
        .map_err(|e| format!("querying {url}: {e}"))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| format!("{url} answered {status} with no JSON: {e}"))?;
    if body["status"] != "success" {
        return Err(format!(
            "{url} answered {status}: {} {}",
            body["errorType"].as_str().unwrap_or_default(),
            body["error"].as_str().unwrap_or("no error given")
        ));
    }
    let data = &body["data"];
    let sample = |v: &serde_json::Value| -> Result<f64, String> {
        v[1].as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .ok_or_else(|| format!("unreadable sample {v}"))
    };
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|item| sample(&item["value"]).map(Value::Number))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::List)
            })
            .unwrap_or(Ok(Value::List(Vec::new()))),
        Some("scalar") => sample(&data["result"]).map(Value::Number),
        Some("string") => Ok(Value::String(
            data["result"][1].as_str().unwrap_or_default().to_owned(),
        )),
        other => Err(format!(
            "the query gave a {} result: write a query that gives a vector or a scalar",
            other.unwrap_or("missing")
        )),
    }
}

/// Sends an HTTP check: the JSON answer (at `jsonPath`), or its text; a non-2xx answer is an
/// error.
async fn web(http: &reqwest::Client, w: &WebProvider) -> Result<Value, String> {
    let method = reqwest::Method::from_bytes(w.method.as_deref().unwrap_or("GET").as_bytes())
        .unwrap_or(reqwest::Method::GET);
    let mut request = http
        .request(method, &w.url)
        .timeout(Duration::from_secs(u64::from(
            w.timeout_seconds.unwrap_or(10),
        )));
    for h in &w.headers {
        request = request.header(&h.key, &h.value);
    }
    if let Some(body) = &w.body {
        request = request.body(body.clone());
    }
    let response = super::send_traced(http, request)
        .await
        .map_err(|e| format!("requesting {}: {e}", w.url))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let head: String = text.chars().take(200).collect();
        return Err(format!("{} answered {status}: {head}", w.url));
    }
    let json: Option<serde_json::Value> = serde_json::from_str(&text).ok();
    match (&w.json_path, json) {
        (Some(path), Some(json)) => json_path(&json, path).map(|v| Value::from_json(&v)),
        (Some(_), None) => Err(format!(
            "{} answered text, not JSON, and jsonPath needs JSON",
            w.url
        )),
        (None, Some(json)) => Ok(Value::from_json(&json)),
        (None, None) => Ok(Value::String(text)),
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
