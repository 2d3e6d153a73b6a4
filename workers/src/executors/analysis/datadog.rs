//! The Datadog provider, asking what Argo Rollouts asks:
//! - v1: `GET /api/v1/query?from&to&query`; `result` is the last point of the first series,
//!   `nil` when there is no point;
//! - v2: `POST /api/v2/query/scalar` with the named queries (each reduced by `aggregator`,
//!   default `last`) and the formula; `result` is the formula's value, `nil` when there is none.
//!
//! The keys come from a Secret (`secretRef.name`, default `datadog`) in the worker's namespace,
//! or the analysis' with `secretRef.namespaced`: `api-key`, `app-key`, and `address` (default
//! `https://api.datadoghq.com`). They go in the `DD-API-KEY` and `DD-APPLICATION-KEY` headers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baton_schemas::analysis::DatadogProvider;
use baton_schemas::condition::Value;
use serde_json::json;

use super::secrets::{Revealed, read_secret};

/// How far back a query looks without an `interval`.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// Datadog's API unless the Secret names another site.
const DEFAULT_ADDRESS: &str = "https://api.datadoghq.com";
/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where to ask, and with which keys.
pub(super) struct Account {
    address: String,
    api_key: String,
    app_key: String,
}

/// Reads the account's Secret; its keys are kept in `revealed`, for redaction.
pub(super) async fn account(
    kube: Option<&kube::Client>,
    worker_namespace: &str,
    analysis_namespace: &str,
    provider: &DatadogProvider,
    revealed: &mut Revealed,
) -> Result<Account, String> {
    let Some(kube) = kube else {
        return Err("this worker has no Kubernetes client to read Datadog's keys".to_owned());
    };
    let reference = provider.secret_ref.as_ref();
    let name = reference
        .and_then(|r| r.name.as_deref())
        .unwrap_or("datadog");
    let namespace = match reference.is_some_and(|r| r.namespaced) {
        true => analysis_namespace,
        false => worker_namespace,
    };
    let keys = read_secret(kube, namespace, name).await?;
    let key = |k: &str| {
        keys.get(k)
            .cloned()
            .ok_or_else(|| format!("Secret {namespace}/{name} has no key {k:?}"))
    };
    Ok(Account {
        address: keys
            .get("address")
            .map(|a| a.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| DEFAULT_ADDRESS.to_owned()),
        api_key: revealed.keep(key("api-key")?),
        app_key: revealed.keep(key("app-key")?),
    })
}

/// Takes one measurement.
pub(super) async fn measure(
    http: &reqwest::Client,
    account: &Account,
    provider: &DatadogProvider,
) -> Result<Value, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let interval = provider.interval.map(|d| d.0).unwrap_or(DEFAULT_INTERVAL);
    let from = now.saturating_sub(interval);
    let request = if provider.is_v2() {
        let (queries, formula) = provider.v2_queries();
        let aggregator = provider.aggregator.as_deref().unwrap_or("last");
        let queries: Vec<serde_json::Value> = queries
            .iter()
            .map(|(name, query)| {
                json!({"data_source": "metrics", "query": query, "name": name, "aggregator": aggregator})
            })
            .collect();
        let body = json!({"data": {"type": "scalar_request", "attributes": {
            "from": from.as_millis() as u64,
            "to": now.as_millis() as u64,
            "queries": queries,
            "formulas": [{"formula": formula}],
        }}});
        http.post(format!("{}/api/v2/query/scalar", account.address))
            .json(&body)
    } else {
        let query = provider.query.clone().unwrap_or_default();
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", account.address),
            &[
                ("from", from.as_secs().to_string()),
                ("to", now.as_secs().to_string()),
                ("query", query),
            ],
        )
        .map_err(|e| format!("Datadog address {:?}: {e}", account.address))?;
        http.get(url)
    };
    let request = request
        .header("DD-API-KEY", &account.api_key)
        .header("DD-APPLICATION-KEY", &account.app_key)
        .header("Accept", "application/json")
        .timeout(TIMEOUT);
    let api = if provider.is_v2() { "v2" } else { "v1" };
    let response = crate::executors::send_traced(http, request)
        .await
        .map_err(|e| format!("querying Datadog ({api}): {}", e.without_url()))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!(
            "Datadog ({api}) answered {status}: {}",
            body["errors"]
                .as_array()
                .map(|e| e
                    .iter()
                    .filter_map(|e| e.as_str())
                    .collect::<Vec<_>>()
                    .join("; "))
                .or_else(|| body["error"].as_str().map(str::to_owned))
                .unwrap_or_default()
        ));
    }
    match provider.is_v2() {
        true => v2_result(&body),
        false => v1_result(&body),
    }
}

/// The last point of the first series, `nil` when there is none.
fn v1_result(body: &serde_json::Value) -> Result<Value, String> {
    if body["status"] == "error" {
        return Err(format!(
            "Datadog (v1): {}",
            body["error"]
                .as_str()
                .unwrap_or("an error without a message")
        ));
    }
    let Some(point) = body["series"][0]["pointlist"]
        .as_array()
        .and_then(|points| points.last())
    else {
        return Ok(Value::Nil);
    };
    match &point[1] {
        serde_json::Value::Null => Ok(Value::Nil),
        v => v
            .as_f64()
            .map(Value::Number)
            .ok_or_else(|| format!("Datadog (v1): unreadable point {point}")),
    }
}

/// The formula's value, `nil` when there is none.
fn v2_result(body: &serde_json::Value) -> Result<Value, String> {
    if let Some(errors) = body["errors"].as_str().filter(|e| !e.is_empty()) {
        return Err(format!("Datadog (v2): {errors}"));
    }
    match &body["data"]["attributes"]["columns"][0]["values"][0] {
        serde_json::Value::Null => Ok(Value::Nil),
        v => v
            .as_f64()
            .map(Value::Number)
            .ok_or_else(|| format!("Datadog (v2): unreadable value {v}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_read_as_argo_rollouts_reads_them() {
        let v1 = json!({"status": "ok", "series": [{"pointlist": [[1.0, 0.5], [2.0, 0.25]]}, {"pointlist": [[1.0, 9.0]]}]});
        assert_eq!(v1_result(&v1), Ok(Value::Number(0.25)));
        assert_eq!(
            v1_result(&json!({"status": "ok", "series": []})),
            Ok(Value::Nil)
        );
        assert!(v1_result(&json!({"status": "error", "error": "bad query"})).is_err());
        let v2 = json!({"data": {"type": "scalar_response", "attributes": {"columns": [{"name": "a", "type": "number", "values": [0.01]}]}}});
        assert_eq!(v2_result(&v2), Ok(Value::Number(0.01)));
        let empty = json!({"data": {"attributes": {"columns": [{"values": []}]}}});
        assert_eq!(v2_result(&empty), Ok(Value::Nil));
    }
}
