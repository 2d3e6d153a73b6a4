//! Analysis: metrics measured `count` times, `interval` apart, each measurement judged by a
//! success and a failure condition over its result — a Prometheus query (`/api/v1/query`) or
//! an HTTP check. Shaped like Argo Rollouts' analysis templates, which okra's Cells reference,
//! so such a template moves over by changing its `apiVersion`.
//!
//! - [`AnalysisTemplate`] (`baton.dev/v1alpha1`): named metrics with declared `args`, used in
//!   text as `{{args.NAME}}`.
//! - [`AnalysisSpec`]: what an `analysis` node runs: templates by name with arguments, or
//!   metrics written inline. The planner resolves it into metrics with every argument filled
//!   in before the job leaves.
//!
//! A measurement is *successful* when the success condition holds, *failed* when the failure
//! condition holds (or the success condition does not, when it is the only one), and
//! *inconclusive* when both are given and neither holds; a query that cannot be made or judged
//! is an *error*. A metric fails once its failed measurements exceed `failureLimit`, is
//! inconclusive once its inconclusive ones exceed `inconclusiveLimit`, and fails once its
//! consecutive errors exceed `consecutiveErrorLimit`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::document::SpecError;
use crate::workflow::Metadata;
use crate::{Duration, ids::is_dns_label};

/// An `AnalysisTemplate` document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisTemplate {
    /// Always `baton.dev/v1alpha1`.
    pub api_version: String,
    /// Always `AnalysisTemplate`.
    pub kind: String,
    /// The template's name, which steps and nodes reference.
    pub metadata: Metadata,
    /// The arguments and metrics.
    pub spec: AnalysisTemplateSpec,
    /// What a cluster reported; ignored on input.
    #[serde(default, skip_serializing)]
    pub status: Option<serde_json::Value>,
}

/// The body of an analysis template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisTemplateSpec {
    /// The arguments the metrics use as `{{args.NAME}}`, with optional defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<ArgDeclaration>,
    /// The metrics, all measured at once.
    pub metrics: Vec<Metric>,
}

/// An argument a template declares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArgDeclaration {
    /// The name used in `{{args.NAME}}`.
    pub name: String,
    /// The value used when the caller gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// One metric: how to measure, how often, and how to judge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metric {
    /// The metric's name, unique in an analysis.
    pub name: String,
    /// The time between two measurements (default: none, for a single measurement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// How long to wait before the first measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<Duration>,
    /// How many measurements to take (default 1). Required with an `interval`: an analysis
    /// that never ends would hold a rollout forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// How many failed measurements are tolerated (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<u32>,
    /// How many inconclusive measurements are tolerated (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<u32>,
    /// How many errors in a row are tolerated (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_error_limit: Option<u32>,
    /// When a measurement is successful, over `result` (`result[0] >= 0.95`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,
    /// When a measurement is failed, over `result`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    /// Where the measurement comes from.
    pub provider: Provider,
}

impl Metric {
    /// The number of measurements.
    pub fn count(&self) -> u32 {
        self.count.unwrap_or(1).max(1)
    }

    /// The longest the metric takes when every measurement answers at once.
    pub fn duration(&self) -> std::time::Duration {
        let interval = self.interval.map(|d| d.0).unwrap_or_default();
        let delay = self.initial_delay.map(|d| d.0).unwrap_or_default();
        delay.saturating_add(interval.saturating_mul(self.count().saturating_sub(1)))
    }
}

/// Where a measurement comes from: exactly one of the providers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Provider {
    /// A Prometheus instant query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusProvider>,
    /// An HTTP request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebProvider>,
}

/// A Prometheus instant query: `result` is the list of the vector's sample values, or the
/// scalar's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusProvider {
    /// The server, as `http://prometheus:9090`.
    pub address: String,
    /// The PromQL query.
    pub query: String,
    /// How long one query may take (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// An HTTP check: `result` is the JSON the response holds (at `jsonPath` when given), or its
/// text. Without conditions a 2xx answer is a success.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebProvider {
    /// The URL (http or https).
    pub url: String,
    /// The method (default GET).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<WebHeader>,
    /// The request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Where in the JSON answer the result is: `$.data.ok`, `{$.items[0].value}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
    /// How long the request may take, in seconds (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
}

/// One request header of an HTTP check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebHeader {
    /// The header's name.
    pub key: String,
    /// Its value.
    pub value: String,
}

/// An `analysis` node's settings as the Workflow CRD describes them: an object the API server
/// keeps as it is and Baton validates when it reads it. The AnalysisTemplate CRD documents the
/// metric fields; writing them out again here would push the Workflow CRD past what `kubectl
/// apply` can keep in its last-applied annotation.
#[derive(schemars::JsonSchema)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct UncheckedAnalysis {}

/// What an `analysis` node runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisSpec {
    /// Templates by name; their metrics run together.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<TemplateRef>,
    /// Arguments for the templates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
    /// Metrics written inline (and, in a job, the templates' metrics with their arguments
    /// filled in).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
}

/// A reference to an analysis template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateRef {
    /// The template's name.
    pub template_name: String,
}

/// An argument given to a template: a value, or a field of the Cell that runs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Arg {
    /// The argument's name.
    pub name: String,
    /// Its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where its value comes from, instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFrom>,
}

/// The source of an argument's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValueFrom {
    /// A field of the Cell.
    pub field_ref: FieldRef,
}

/// A field of the Cell, by path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldRef {
    /// The path: `status.desiredVersion`, `status.servingVersion`, `metadata.name`, ...
    pub field_path: String,
}

/// Field paths an argument may read, and what they are.
pub const FIELD_PATHS: [&str; 4] = [
    "status.desiredVersion",
    "status.servingVersion",
    "metadata.name",
    "metadata.namespace",
];

/// Returns the argument names a text uses as `{{args.NAME}}`, in order of appearance.
pub fn placeholders(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        let inner = rest[start + 2..start + end].trim();
        if let Some(name) = inner.strip_prefix("args.") {
            names.push(name.trim().to_owned());
        }
        rest = &rest[start + end + 2..];
    }
    names
}

/// Replaces every `{{args.NAME}}` in `text` with its value; an argument without a value is
/// left as it is (validation makes sure none is).
pub fn fill(text: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        let inner = rest[start + 2..start + end].trim();
        out.push_str(&rest[..start]);
        match inner.strip_prefix("args.").and_then(|n| args.get(n.trim())) {
            Some(value) => out.push_str(value),
            None => out.push_str(&rest[start..start + end + 2]),
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

/// Reads a web check's `jsonPath`: JSONPath as RFC 9535 writes it (`$.data.items[0]`), and as
/// Kubernetes and Argo Rollouts users write it (`{$.data.ok}`, `.data.ok` without the `$`).
pub fn json_path(text: &str) -> Result<serde_json_path::JsonPath, String> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(text.trim())
        .trim();
    let query = if inner.starts_with('$') {
        inner.to_owned()
    } else {
        format!("${inner}")
    };
    serde_json_path::JsonPath::parse(&query)
        .map_err(|e| format!("{text:?} is not a JSONPath (RFC 9535): {e}"))
}

impl Metric {
    /// Returns the metric with every `{{args.NAME}}` in its provider filled in.
    pub fn filled(&self, args: &BTreeMap<String, String>) -> Metric {
        let mut metric = self.clone();
        if let Some(p) = &mut metric.provider.prometheus {
            p.address = fill(&p.address, args);
            p.query = fill(&p.query, args);
        }
        if let Some(w) = &mut metric.provider.web {
            w.url = fill(&w.url, args);
            w.body = w.body.as_deref().map(|b| fill(b, args));
            for h in &mut w.headers {
                h.value = fill(&h.value, args);
            }
        }
        metric
    }

    /// Returns every text of the provider that may hold placeholders.
    fn texts(&self) -> Vec<&str> {
        let mut texts = Vec::new();
        if let Some(p) = &self.provider.prometheus {
            texts.extend([p.address.as_str(), p.query.as_str()]);
        }
        if let Some(w) = &self.provider.web {
            texts.push(w.url.as_str());
            texts.extend(w.body.as_deref());
            texts.extend(w.headers.iter().map(|h| h.value.as_str()));
        }
        texts
    }
}

/// Returns the problems of a list of metrics; `at` is the path of the list, `declared` the
/// argument names the metrics may use (`None`: they may use none, they are final).
pub fn metric_problems(
    at: &str,
    metrics: &[Metric],
    declared: Option<&BTreeSet<String>>,
) -> Vec<SpecError> {
    let mut errors = Vec::new();
    let mut names = BTreeSet::new();
    for (i, m) in metrics.iter().enumerate() {
        let path = format!("{at}[{i}]");
        if m.name.is_empty()
            || !m
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            errors.push(SpecError::new(
                format!("{path}.name"),
                format!(
                    "invalid metric name {:?}: use letters, digits, '-' and '_'",
                    m.name
                ),
            ));
        } else if !names.insert(m.name.as_str()) {
            errors.push(SpecError::new(
                format!("{path}.name"),
                format!("duplicate metric name {:?}", m.name),
            ));
        }
        if m.interval.is_some() && m.count.is_none() {
            errors.push(SpecError::new(
                format!("{path}.count"),
                "a metric with an interval needs a count: an analysis that never ends would hold its rollout forever",
            ));
        }
        if m.interval.is_some_and(|d| d.0.is_zero()) {
            errors.push(SpecError::new(
                format!("{path}.interval"),
                "must be longer than zero",
            ));
        }
        if m.count == Some(0) {
            errors.push(SpecError::new(
                format!("{path}.count"),
                "must be at least 1",
            ));
        }
        for (field, text) in [
            ("successCondition", &m.success_condition),
            ("failureCondition", &m.failure_condition),
        ] {
            if let Some(text) = text
                && let Err(e) = Condition::parse(text)
            {
                errors.push(SpecError::new(format!("{path}.{field}"), e));
            }
        }
        match (&m.provider.prometheus, &m.provider.web) {
            (Some(p), None) => {
                if !(p.address.starts_with("http://")
                    || p.address.starts_with("https://")
                    || p.address.starts_with("{{"))
                {
                    errors.push(SpecError::new(
                        format!("{path}.provider.prometheus.address"),
                        format!("{:?} is not an http or https URL", p.address),
                    ));
                }
                if p.query.trim().is_empty() {
                    errors.push(SpecError::new(
                        format!("{path}.provider.prometheus.query"),
                        "missing: write a PromQL query",
                    ));
                }
            }
            (None, Some(w)) => {
                if !(w.url.starts_with("http://")
                    || w.url.starts_with("https://")
                    || w.url.starts_with("{{"))
                {
                    errors.push(SpecError::new(
                        format!("{path}.provider.web.url"),
                        format!("{:?} is not an http or https URL", w.url),
                    ));
                }
                if let Some(method) = &w.method
                    && !matches!(
                        method.as_str(),
                        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD"
                    )
                {
                    errors.push(SpecError::new(
                        format!("{path}.provider.web.method"),
                        format!("{method:?}: use GET, POST, PUT, PATCH, DELETE or HEAD"),
                    ));
                }
                if let Some(Err(e)) = w.json_path.as_deref().map(json_path) {
                    errors.push(SpecError::new(format!("{path}.provider.web.jsonPath"), e));
                }
            }
            (None, None) => errors.push(SpecError::new(
                format!("{path}.provider"),
                "missing: give a prometheus query or a web check",
            )),
            (Some(_), Some(_)) => errors.push(SpecError::new(
                format!("{path}.provider"),
                "give one provider, prometheus or web, not both",
            )),
        }
        for text in m.texts() {
            for name in placeholders(text) {
                let known = declared.is_some_and(|d| d.contains(&name));
                if !known {
                    let fix = match declared {
                        Some(_) => "declare it in spec.args",
                        None => "inline metrics take no arguments; write the value",
                    };
                    errors.push(SpecError::new(
                        format!("{path}.provider"),
                        format!("uses {{{{args.{name}}}}}, which is not declared: {fix}"),
                    ));
                }
            }
        }
    }
    errors
}

/// Returns every problem of a template (names are checked by the caller).
pub fn template_problems(template: &AnalysisTemplate) -> Vec<SpecError> {
    let mut errors = Vec::new();
    let mut declared = BTreeSet::new();
    for (i, arg) in template.spec.args.iter().enumerate() {
        if arg.name.is_empty() || arg.name.contains(['{', '}', ' ']) {
            errors.push(SpecError::new(
                format!("spec.args[{i}].name"),
                format!("invalid argument name {:?}", arg.name),
            ));
        } else if !declared.insert(arg.name.clone()) {
            errors.push(SpecError::new(
                format!("spec.args[{i}].name"),
                format!("duplicate argument {:?}", arg.name),
            ));
        }
    }
    if template.spec.metrics.is_empty() {
        errors.push(SpecError::new("spec.metrics", "list at least one metric"));
    }
    errors.extend(metric_problems(
        "spec.metrics",
        &template.spec.metrics,
        Some(&declared),
    ));
    errors
}

/// Returns the problems of an analysis given by a node or a step; `at` is its path.
pub fn spec_problems(at: &str, spec: &AnalysisSpec, field_refs_allowed: bool) -> Vec<SpecError> {
    let mut errors = Vec::new();
    if spec.templates.is_empty() && spec.metrics.is_empty() {
        errors.push(SpecError::new(
            at,
            "give templates (by templateName) or metrics",
        ));
    }
    for (i, t) in spec.templates.iter().enumerate() {
        if !is_dns_label(&t.template_name) {
            errors.push(SpecError::new(
                format!("{at}.templates[{i}].templateName"),
                format!("{:?} is not a template name", t.template_name),
            ));
        }
    }
    let mut names = BTreeSet::new();
    for (i, arg) in spec.args.iter().enumerate() {
        let path = format!("{at}.args[{i}]");
        if !names.insert(arg.name.as_str()) {
            errors.push(SpecError::new(
                format!("{path}.name"),
                format!("duplicate argument {:?}", arg.name),
            ));
        }
        match (&arg.value, &arg.value_from) {
            (Some(_), Some(_)) => {
                errors.push(SpecError::new(path, "give value or valueFrom, not both"))
            }
            (None, None) => errors.push(SpecError::new(path, "give value or valueFrom")),
            (None, Some(from)) => {
                if !field_refs_allowed {
                    errors.push(SpecError::new(
                        format!("{path}.valueFrom"),
                        "only a Cell's analysis steps can read fields (there is no Cell here)",
                    ));
                } else if !FIELD_PATHS.contains(&from.field_ref.field_path.as_str()) {
                    errors.push(SpecError::new(
                        format!("{path}.valueFrom.fieldRef.fieldPath"),
                        format!(
                            "{:?} is not a field Baton provides (use one of: {})",
                            from.field_ref.field_path,
                            FIELD_PATHS.join(", ")
                        ),
                    ));
                }
            }
            (Some(_), None) => {}
        }
    }
    errors.extend(metric_problems(
        &format!("{at}.metrics"),
        &spec.metrics,
        None,
    ));
    errors
}

/// Resolves an analysis into final metrics: each template's metrics with its arguments filled
/// in (the caller's value first, then the template's default), followed by the inline
/// metrics. `fields` gives the values of `valueFrom` field paths. Fails, naming the template
/// or argument, when a template is unknown or an argument has no value.
pub fn resolve(
    spec: &AnalysisSpec,
    find: impl Fn(&str) -> Option<AnalysisTemplateSpec>,
    fields: &BTreeMap<String, String>,
) -> Result<Vec<Metric>, String> {
    let mut given = BTreeMap::new();
    for arg in &spec.args {
        let value = match (&arg.value, &arg.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => {
                fields
                    .get(&from.field_ref.field_path)
                    .cloned()
                    .ok_or_else(|| {
                        format!(
                            "argument {:?}: {} has no value yet",
                            arg.name, from.field_ref.field_path
                        )
                    })?
            }
            (None, None) => continue,
        };
        given.insert(arg.name.clone(), value);
    }
    let mut metrics = Vec::new();
    for t in &spec.templates {
        let template = find(&t.template_name)
            .ok_or_else(|| format!("AnalysisTemplate {:?} is not registered", t.template_name))?;
        let mut values = BTreeMap::new();
        for declared in &template.args {
            let value = given
                .get(&declared.name)
                .or(declared.value.as_ref())
                .ok_or_else(|| {
                    format!(
                        "AnalysisTemplate {:?} needs argument {:?}, which has no value",
                        t.template_name, declared.name
                    )
                })?;
            values.insert(declared.name.clone(), value.clone());
        }
        metrics.extend(template.metrics.iter().map(|m| m.filled(&values)));
    }
    metrics.extend(spec.metrics.iter().cloned());
    let mut seen = BTreeSet::new();
    if let Some(dup) = metrics.iter().find(|m| !seen.insert(m.name.clone())) {
        return Err(format!(
            "two metrics are named {:?}; metric names must be unique across the templates",
            dup.name
        ));
    }
    Ok(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(query: &str) -> Metric {
        Metric {
            name: "rate".into(),
            interval: None,
            initial_delay: None,
            count: None,
            failure_limit: None,
            inconclusive_limit: None,
            consecutive_error_limit: None,
            success_condition: Some("result[0] > 0.9".into()),
            failure_condition: None,
            provider: Provider {
                prometheus: Some(PrometheusProvider {
                    address: "http://prom:9090".into(),
                    query: query.into(),
                    timeout: None,
                }),
                web: None,
            },
        }
    }

    #[test]
    fn placeholders_are_found_and_filled() {
        let text = "rate{service=\"{{args.service-name}}\",v=\"{{ args.version }}\"}";
        assert_eq!(placeholders(text), ["service-name", "version"]);
        let args = BTreeMap::from([
            ("service-name".to_owned(), "web".to_owned()),
            ("version".to_owned(), "2.0.0".to_owned()),
        ]);
        assert_eq!(fill(text, &args), "rate{service=\"web\",v=\"2.0.0\"}");
        assert_eq!(fill("{{args.other}} {{x", &args), "{{args.other}} {{x");
    }

    #[test]
    fn templates_resolve_with_values_defaults_and_fields() {
        let template = AnalysisTemplateSpec {
            args: vec![
                ArgDeclaration {
                    name: "service-name".into(),
                    value: None,
                },
                ArgDeclaration {
                    name: "cluster-version".into(),
                    value: Some("0.0.0".into()),
                },
            ],
            metrics: vec![metric(
                "up{job=\"{{args.service-name}}\",version=\"{{args.cluster-version}}\"}",
            )],
        };
        let spec = AnalysisSpec {
            templates: vec![TemplateRef {
                template_name: "success-rate".into(),
            }],
            args: vec![
                Arg {
                    name: "service-name".into(),
                    value: Some("web".into()),
                    value_from: None,
                },
                Arg {
                    name: "cluster-version".into(),
                    value: None,
                    value_from: Some(ValueFrom {
                        field_ref: FieldRef {
                            field_path: "status.desiredVersion".into(),
                        },
                    }),
                },
            ],
            metrics: vec![],
        };
        let fields = BTreeMap::from([("status.desiredVersion".to_owned(), "2.0.0".to_owned())]);
        let find = |name: &str| (name == "success-rate").then(|| template.clone());
        let metrics = resolve(&spec, find, &fields).unwrap();
        assert_eq!(
            metrics[0].provider.prometheus.as_ref().unwrap().query,
            "up{job=\"web\",version=\"2.0.0\"}"
        );
        // The default applies when the caller gives nothing.
        let defaults = AnalysisSpec {
            args: spec.args[..1].to_vec(),
            ..spec.clone()
        };
        let metrics = resolve(&defaults, find, &fields).unwrap();
        assert!(
            metrics[0]
                .provider
                .prometheus
                .as_ref()
                .unwrap()
                .query
                .contains("0.0.0")
        );
        let missing = AnalysisSpec {
            args: vec![],
            ..spec.clone()
        };
        assert_eq!(
            resolve(&missing, find, &fields).unwrap_err(),
            "AnalysisTemplate \"success-rate\" needs argument \"service-name\", which has no value"
        );
        let unknown = AnalysisSpec {
            templates: vec![TemplateRef {
                template_name: "nope".into(),
            }],
            ..spec
        };
        assert_eq!(
            resolve(&unknown, find, &fields).unwrap_err(),
            "AnalysisTemplate \"nope\" is not registered"
        );
    }

    #[test]
    fn metric_problems_name_their_fields() {
        let mut m = metric("up{job=\"{{args.job}}\"}");
        m.interval = Some(Duration::from_secs(5));
        m.success_condition = Some("result[0] >".into());
        let errors = metric_problems("spec.metrics", &[m], Some(&BTreeSet::new()));
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            lines,
            [
                "spec.metrics[0].count: a metric with an interval needs a count: an analysis that never ends would hold its rollout forever",
                "spec.metrics[0].successCondition: the condition ends too early",
                "spec.metrics[0].provider: uses {{args.job}}, which is not declared: declare it in spec.args",
            ]
        );
    }

    #[test]
    fn a_web_check_json_path_is_read_as_its_users_write_it_and_refused_when_broken() {
        for written in ["$.data.ok", "{$.data.ok}", ".data.ok", "$.items[0]['a-b']"] {
            assert!(json_path(written).is_ok(), "{written}");
        }
        let mut m = metric("up");
        m.provider.prometheus = None;
        m.provider.web = Some(WebProvider {
            url: "http://127.0.0.1:1/health".into(),
            method: None,
            headers: Vec::new(),
            body: None,
            json_path: Some("$.data[".into()),
            timeout_seconds: None,
        });
        let errors = metric_problems("spec.metrics", &[m], None);
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with(
                "spec.metrics[0].provider.web.jsonPath: \"$.data[\" is not a JSONPath"
            ),
            "{lines:?}"
        );
    }
}
