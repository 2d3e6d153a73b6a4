//! The HTTP providers: Prometheus instant queries and web checks.

use std::time::Duration;

use baton_schemas::analysis::{PrometheusProvider, WebProvider};
use baton_schemas::condition::Value;

use super::json_path;

/// Runs an instant query: a vector gives the list of its values, a scalar its value.
pub(super) async fn prometheus(
    http: &reqwest::Client,
    p: &PrometheusProvider,
) -> Result<Value, String> {
    let url = format!("{}/api/v1/query", p.address.trim_end_matches('/'));
    let timeout = p.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(30));
    // POST with a form body, as Prometheus allows: a long query does not hit URL limits.
    let request = http
        .post(&url)
        .form(&[("query", &p.query)])
        .timeout(timeout);
    let response = crate::executors::send_traced(http, request)
        .await
        .map_err(|e| format!("querying {url}: {}", e.without_url()))?;
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
pub(super) async fn web(http: &reqwest::Client, w: &WebProvider) -> Result<Value, String> {
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
    let response = crate::executors::send_traced(http, request)
        .await
        .map_err(|e| format!("requesting {}: {}", w.url, e.without_url()))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        // Cut short only after the Secrets it may echo are redacted (by the caller).
        let head: String = text.chars().take(64 * 1024).collect();
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
