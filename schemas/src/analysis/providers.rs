//! Where a measurement comes from: Prometheus, an HTTP check, CloudWatch's `GetMetricData`, or
//! Datadog's query APIs, with the fields Argo Rollouts' analysis templates give them, so that
//! such a template's metrics read the same in Baton.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{fill, json_path};
use crate::Duration;
use crate::document::SpecError;

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
    /// CloudWatch metric data (`GetMetricData`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_watch: Option<CloudWatchProvider>,
    /// A Datadog query (v1 `query` API, or v2 scalar queries with a formula).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datadog: Option<DatadogProvider>,
}

/// The providers' names as documents write them.
pub const PROVIDERS: [&str; 4] = ["prometheus", "web", "cloudWatch", "datadog"];

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

/// CloudWatch's `GetMetricData` over the last `interval`: `result` is the list of its metric
/// data results, each `{Id, Label, StatusCode, Timestamps, Values}` (as Argo Rollouts gives
/// them: `all(result[0].Values, {# <= 0.01})`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudWatchProvider {
    /// How far back the data goes (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// The queries, as `GetMetricData` takes them.
    pub metric_data_queries: Vec<MetricDataQuery>,
}

/// One query of `GetMetricData`: a metric's statistic, or an expression over other queries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricDataQuery {
    /// The query's id (a lowercase letter first), which expressions name.
    pub id: String,
    /// A metric math expression, instead of `metricStat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    /// A label for the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The metric and its statistic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_stat: Option<MetricStat>,
    /// The period of an expression's data points, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Seconds>,
    /// Whether the query's data is returned (default true; false for an expression's inputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_data: Option<bool>,
}

/// A metric and the statistic taken of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricStat {
    /// The metric.
    pub metric: CloudWatchMetric,
    /// The period of each data point, in seconds (a multiple of 60, or 1, 5, 10, 30).
    pub period: Seconds,
    /// The statistic: `Sum`, `Average`, `Maximum`, `Minimum`, `SampleCount`, `p99`, ...
    pub stat: String,
    /// The unit, when the metric has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// A CloudWatch metric by namespace, name and dimensions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudWatchMetric {
    /// Its namespace (`AWS/ApplicationELB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its name.
    pub metric_name: String,
    /// Its dimensions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dimensions: Vec<Dimension>,
}

/// A dimension of a CloudWatch metric.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dimension {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// A number of seconds written as a number or a string of digits (Kubernetes' int-or-string,
/// which Argo Rollouts uses for periods).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Seconds(pub u32);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u32),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Number(n) => Ok(Seconds(n)),
            Written::Text(t) => t.trim().parse().map(Seconds).map_err(|_| {
                serde::de::Error::custom(format!("{t:?} is not a whole number of seconds"))
            }),
        }
    }
}

impl schemars::JsonSchema for Seconds {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Seconds".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Seconds, as a number or a string of digits.",
            "x-kubernetes-int-or-string": true,
        })
    }
}

/// A Datadog query over the last `interval`, as Argo Rollouts makes it. `v1` (the default)
/// asks `GET /api/v1/query`: `result` is the last point of the first series, `nil` when there
/// is none. `v2` asks `POST /api/v2/query/scalar` with `queries` (or `query`) and `formula`:
/// `result` is the formula's value, `nil` when there is none. The keys come from a Secret
/// (`secretRef`, default `datadog`) with `api-key`, `app-key` and optionally `address`
/// (default `https://api.datadoghq.com`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatadogProvider {
    /// `v1` (default) or `v2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// How far back the query looks (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// The query (v1; in v2, a single query named `query`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Named queries (v2), combined by `formula`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub queries: BTreeMap<String, String>,
    /// How the named queries combine (v2), as `a / b`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formula: Option<String>,
    /// How each v2 query's points become one value: `last` (default), `avg`, `min`, `max`,
    /// `sum`, `mean`, `l2norm`, `area`, `percentile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregator: Option<String>,
    /// The Secret holding the keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<DatadogSecretRef>,
}

/// Which Secret holds Datadog's keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatadogSecretRef {
    /// Its name (default `datadog`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whether it is in the analysis' namespace (the Cell's or workflow's), rather than the
    /// worker's own (as Argo Rollouts' controller reads it from its own namespace).
    #[serde(default)]
    pub namespaced: bool,
}

/// The Datadog aggregators of v2 scalar queries.
const DATADOG_AGGREGATORS: [&str; 9] = [
    "avg",
    "min",
    "max",
    "sum",
    "last",
    "percentile",
    "mean",
    "l2norm",
    "area",
];

impl DatadogProvider {
    /// Whether it asks Datadog's v2 API.
    pub fn is_v2(&self) -> bool {
        self.api_version.as_deref() == Some("v2")
    }

    /// The v2 queries by name, and the formula that combines them.
    pub fn v2_queries(&self) -> (BTreeMap<String, String>, String) {
        let mut queries = self.queries.clone();
        if let Some(q) = &self.query {
            queries.insert("query".to_owned(), q.clone());
        }
        let formula = self
            .formula
            .clone()
            .unwrap_or_else(|| queries.keys().next().cloned().unwrap_or_default());
        (queries, formula)
    }
}

impl Provider {
    /// The provider's name, as documents write it; `none` when none is given.
    pub fn name(&self) -> &'static str {
        match self {
            Provider {
                prometheus: Some(_),
                ..
            } => "prometheus",
            Provider { web: Some(_), .. } => "web",
            Provider {
                cloud_watch: Some(_),
                ..
            } => "cloudWatch",
            Provider {
                datadog: Some(_), ..
            } => "datadog",
            _ => "none",
        }
    }

    /// How many providers are given.
    fn given(&self) -> usize {
        usize::from(self.prometheus.is_some())
            + usize::from(self.web.is_some())
            + usize::from(self.cloud_watch.is_some())
            + usize::from(self.datadog.is_some())
    }

    /// Fills every `{{args.NAME}}` of the provider's texts.
    pub(super) fn fill(&mut self, args: &BTreeMap<String, String>) {
        if let Some(p) = &mut self.prometheus {
            p.address = fill(&p.address, args);
            p.query = fill(&p.query, args);
        }
        if let Some(w) = &mut self.web {
            w.url = fill(&w.url, args);
            w.body = w.body.as_deref().map(|b| fill(b, args));
            for h in &mut w.headers {
                h.value = fill(&h.value, args);
            }
        }
        if let Some(c) = &mut self.cloud_watch {
            for q in &mut c.metric_data_queries {
                q.expression = q.expression.as_deref().map(|e| fill(e, args));
                if let Some(stat) = &mut q.metric_stat {
                    for d in &mut stat.metric.dimensions {
                        d.value = fill(&d.value, args);
                    }
                }
            }
        }
        if let Some(d) = &mut self.datadog {
            d.query = d.query.as_deref().map(|q| fill(q, args));
            for q in d.queries.values_mut() {
                *q = fill(q, args);
            }
        }
    }

    /// Returns every text of the provider that may hold placeholders.
    pub fn texts(&self) -> Vec<&str> {
        let mut texts = Vec::new();
        if let Some(p) = &self.prometheus {
            texts.extend([p.address.as_str(), p.query.as_str()]);
        }
        if let Some(w) = &self.web {
            texts.push(w.url.as_str());
            texts.extend(w.body.as_deref());
            texts.extend(w.headers.iter().map(|h| h.value.as_str()));
        }
        if let Some(c) = &self.cloud_watch {
            for q in &c.metric_data_queries {
                texts.extend(q.expression.as_deref());
                if let Some(stat) = &q.metric_stat {
                    texts.extend(stat.metric.dimensions.iter().map(|d| d.value.as_str()));
                }
            }
        }
        if let Some(d) = &self.datadog {
            texts.extend(d.query.as_deref());
            texts.extend(d.queries.values().map(String::as_str));
        }
        texts
    }

    /// Returns the provider's problems; `at` is its path.
    pub fn problems(&self, at: &str) -> Vec<SpecError> {
        let mut errors = Vec::new();
        match self.given() {
            0 => errors.push(SpecError::new(
                at,
                format!("missing: give one of {}", PROVIDERS.join(", ")),
            )),
            1 => {}
            _ => errors.push(SpecError::new(
                at,
                format!("give one provider ({}), not several", PROVIDERS.join(", ")),
            )),
        }
        let is_url =
            |u: &str| u.starts_with("http://") || u.starts_with("https://") || u.starts_with("{{");
        if let Some(p) = &self.prometheus {
            if !is_url(&p.address) {
                errors.push(SpecError::new(
                    format!("{at}.prometheus.address"),
                    format!("{:?} is not an http or https URL", p.address),
                ));
            }
            if p.query.trim().is_empty() {
                errors.push(SpecError::new(
                    format!("{at}.prometheus.query"),
                    "missing: write a PromQL query",
                ));
            }
        }
        if let Some(w) = &self.web {
            if !is_url(&w.url) {
                errors.push(SpecError::new(
                    format!("{at}.web.url"),
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
                    format!("{at}.web.method"),
                    format!("{method:?}: use GET, POST, PUT, PATCH, DELETE or HEAD"),
                ));
            }
            if let Some(Err(e)) = w.json_path.as_deref().map(json_path) {
                errors.push(SpecError::new(format!("{at}.web.jsonPath"), e));
            }
        }
        if let Some(c) = &self.cloud_watch {
            errors.extend(cloud_watch_problems(&format!("{at}.cloudWatch"), c));
        }
        if let Some(d) = &self.datadog {
            errors.extend(datadog_problems(&format!("{at}.datadog"), d));
        }
        errors
    }
}

fn cloud_watch_problems(at: &str, c: &CloudWatchProvider) -> Vec<SpecError> {
    let mut errors = Vec::new();
    if c.metric_data_queries.is_empty() {
        errors.push(SpecError::new(
            format!("{at}.metricDataQueries"),
            "list at least one query",
        ));
    }
    let mut ids = std::collections::BTreeSet::new();
    for (i, q) in c.metric_data_queries.iter().enumerate() {
        let path = format!("{at}.metricDataQueries[{i}]");
        // GetMetricData's rule: a lowercase letter, then letters, digits and underscores.
        let id_ok = q.id.starts_with(|c: char| c.is_ascii_lowercase())
            && q.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !id_ok {
            errors.push(SpecError::new(
                format!("{path}.id"),
                format!(
                    "{:?}: an id starts with a lowercase letter, then letters, digits and '_'",
                    q.id
                ),
            ));
        } else if !ids.insert(q.id.as_str()) {
            errors.push(SpecError::new(
                format!("{path}.id"),
                format!("duplicate id {:?}", q.id),
            ));
        }
        match (&q.expression, &q.metric_stat) {
            (Some(_), Some(_)) => errors.push(SpecError::new(
                path.clone(),
                "give expression or metricStat, not both",
            )),
            (None, None) => errors.push(SpecError::new(
                path.clone(),
                "give expression or metricStat",
            )),
            _ => {}
        }
        if let Some(stat) = &q.metric_stat {
            let period = stat.period.0;
            if !(matches!(period, 1 | 5 | 10 | 30) || (period > 0 && period % 60 == 0)) {
                errors.push(SpecError::new(
                    format!("{path}.metricStat.period"),
                    format!("{period}: CloudWatch takes 1, 5, 10, 30 or a multiple of 60 seconds"),
                ));
            }
            if stat.stat.trim().is_empty() {
                errors.push(SpecError::new(
                    format!("{path}.metricStat.stat"),
                    "missing: Sum, Average, Maximum, Minimum, SampleCount or a percentile (p99)",
                ));
            }
        }
    }
    if c.interval.is_some_and(|d| d.0.is_zero()) {
        errors.push(SpecError::new(
            format!("{at}.interval"),
            "must be longer than zero",
        ));
    }
    errors
}

fn datadog_problems(at: &str, d: &DatadogProvider) -> Vec<SpecError> {
    let mut errors = Vec::new();
    match d.api_version.as_deref() {
        None | Some("v1") => {
            if d.query.as_deref().is_none_or(|q| q.trim().is_empty()) {
                errors.push(SpecError::new(
                    format!("{at}.query"),
                    "missing: v1 takes one query",
                ));
            }
            for (field, given) in [
                ("queries", !d.queries.is_empty()),
                ("formula", d.formula.is_some()),
                ("aggregator", d.aggregator.is_some()),
            ] {
                if given {
                    errors.push(SpecError::new(
                        format!("{at}.{field}"),
                        "only apiVersion v2 takes it",
                    ));
                }
            }
        }
        Some("v2") => {
            let (queries, formula) = d.v2_queries();
            if queries.is_empty() {
                errors.push(SpecError::new(at, "give query or queries"));
            }
            if d.query.is_some() && !d.queries.is_empty() {
                errors.push(SpecError::new(
                    format!("{at}.query"),
                    "give query or queries, not both",
                ));
            }
            if queries.len() > 1 && d.formula.is_none() {
                errors.push(SpecError::new(
                    format!("{at}.formula"),
                    "missing: several queries need a formula that combines them",
                ));
            }
            if formula.trim().is_empty() && !queries.is_empty() {
                errors.push(SpecError::new(format!("{at}.formula"), "is empty"));
            }
            if let Some(a) = &d.aggregator
                && !DATADOG_AGGREGATORS.contains(&a.as_str())
            {
                errors.push(SpecError::new(
                    format!("{at}.aggregator"),
                    format!("{a:?}: use one of {}", DATADOG_AGGREGATORS.join(", ")),
                ));
            }
        }
        Some(other) => errors.push(SpecError::new(
            format!("{at}.apiVersion"),
            format!("{other:?}: use v1 or v2"),
        )),
    }
    if d.interval.is_some_and(|i| i.0.is_zero()) {
        errors.push(SpecError::new(
            format!("{at}.interval"),
            "must be longer than zero",
        ));
    }
    errors
}
