//! Argo Rollouts' `AnalysisTemplate` and `ClusterAnalysisTemplate` (`argoproj.io/v1alpha1`),
//! read as they are written for Argo and turned into Baton's template, for the providers
//! Baton has. What Baton would measure differently is refused with its field path rather
//! than dropped: a provider Baton lacks, `dryRun`, a TLS check turned off.
//!
//! Argo writes some counts as int-or-string (`count: "5"`) and a Prometheus `timeout` in
//! seconds; those are read as Baton's numbers and durations. A web check's `jsonBody` becomes
//! its body. Baton keeps one name space of templates: a `ClusterAnalysisTemplate` and an
//! `AnalysisTemplate` of one name are the same template, the last applied, and a step's
//! `clusterScope` finds it either way.

use serde_json::Value;

use super::{AnalysisTemplate, PROVIDERS};
use crate::document::SpecError;

/// Argo Rollouts' API version.
pub const ARGO_API_VERSION: &str = "argoproj.io/v1alpha1";

/// Metric fields Argo writes as int-or-string, which Baton takes as numbers.
const COUNTS: [&str; 4] = [
    "count",
    "failureLimit",
    "inconclusiveLimit",
    "consecutiveErrorLimit",
];

/// Reads an Argo Rollouts template (its `kind` either of Argo's two).
pub fn read(mut value: Value) -> Result<AnalysisTemplate, Vec<SpecError>> {
    let mut errors = Vec::new();
    for (field, why) in [
        (
            "dryRun",
            "Baton has no dry run: a metric that fails fails its analysis",
        ),
        (
            "measurementRetention",
            "Baton keeps each metric's last 5 measurements in the node's output",
        ),
    ] {
        if value["spec"].get(field).is_some_and(|v| !v.is_null()) {
            errors.push(SpecError::new(
                format!("spec.{field}"),
                format!("not supported: {why}"),
            ));
        }
    }
    if let Some(metrics) = value["spec"]["metrics"].as_array_mut() {
        for (i, metric) in metrics.iter_mut().enumerate() {
            errors.extend(metric_from_argo(&format!("spec.metrics[{i}]"), metric));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        vec![SpecError::new(
            e.path().to_string(),
            e.into_inner().to_string(),
        )]
    })
}

/// Rewrites one metric in Baton's terms; returns what cannot be.
fn metric_from_argo(at: &str, metric: &mut Value) -> Vec<SpecError> {
    let mut errors = Vec::new();
    for field in COUNTS {
        if let Some(Value::String(text)) = metric.get(field) {
            match text.trim().parse::<u32>() {
                Ok(n) => metric[field] = Value::from(n),
                Err(_) => errors.push(SpecError::new(
                    format!("{at}.{field}"),
                    format!("{text:?}: Baton takes a whole number here (not an argument)"),
                )),
            }
        }
    }
    let Some(provider) = metric.get_mut("provider").and_then(Value::as_object_mut) else {
        return errors;
    };
    for name in provider.keys() {
        if !PROVIDERS.contains(&name.as_str()) {
            errors.push(SpecError::new(
                format!("{at}.provider.{name}"),
                format!(
                    "Baton has no {name} provider; it measures with {}",
                    PROVIDERS.join(", ")
                ),
            ));
        }
    }
    if let Some(prometheus) = provider.get_mut("prometheus") {
        if let Some(seconds) = prometheus.get("timeout").and_then(Value::as_u64) {
            prometheus["timeout"] = Value::from(format!("{seconds}s"));
        }
        for field in ["insecure", "headers", "authentication"] {
            if prometheus
                .get(field)
                .is_some_and(|v| !v.is_null() && v != false)
            {
                errors.push(SpecError::new(
                    format!("{at}.provider.prometheus.{field}"),
                    "not supported by Baton's Prometheus provider",
                ));
            }
        }
        if let Some(p) = prometheus.as_object_mut() {
            p.remove("insecure");
        }
    }
    if let Some(web) = provider.get_mut("web") {
        if web.get("insecure").is_some_and(|v| v == true) {
            errors.push(SpecError::new(
                format!("{at}.provider.web.insecure"),
                "Baton always verifies TLS certificates",
            ));
        }
        if let Some(body) = web.get("jsonBody").cloned().filter(|b| !b.is_null()) {
            web["body"] = Value::from(body.to_string());
        }
        if let Some(w) = web.as_object_mut() {
            w.remove("insecure");
            w.remove("jsonBody");
        }
    }
    errors
}
