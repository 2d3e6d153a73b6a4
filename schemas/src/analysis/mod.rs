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

pub mod argo;
pub mod experiment;
mod providers;
use crate::workflow::Metadata;
use crate::{Duration, ids::is_dns_label};
pub use providers::*;

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
    /// Where its value comes from instead: a key of a Secret, read by the worker as it
    /// measures, so the value is never in a job, a log or a status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFrom>,
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
    /// The namespace the metrics' Secrets are read from (the Cell's or workflow's), which
    /// the planner sets in a job; the worker's own when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// A Cell's experiment step, which the planner sets in a job: ReplicaSets that run while
    /// the experiment's analyses judge them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub experiment: Option<Box<experiment::Experiment>>,
}

/// A reference to an analysis template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateRef {
    /// The template's name.
    pub template_name: String,
    /// Argo Rollouts' mark of a `ClusterAnalysisTemplate`. Baton keeps one name space of
    /// templates, so it finds the template either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<FieldRef>,
    /// A key of a Secret in the analysis' namespace (the Cell's or the workflow's; the
    /// worker's own when it has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

/// A key of a Secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// The Secret's name.
    pub name: String,
    /// The key.
    pub key: String,
}

impl SecretKeyRef {
    /// The marker a resolved metric holds where the Secret's value goes: the worker puts the
    /// value in as it measures (`secret_markers`). Neither a Secret's name nor a key can
    /// hold `:` or `}`.
    pub fn marker(&self) -> String {
        format!("{{{{secret:{}:{}}}}}", self.name, self.key)
    }
}

/// How a Secret marker begins (see [`SecretKeyRef::marker`]).
pub const SECRET_MARKER: &str = "{{secret:";

/// Returns the Secret keys a text names with [`SecretKeyRef::marker`], each with its marker.
pub fn secret_markers(text: &str) -> Vec<(String, SecretKeyRef)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(SECRET_MARKER) {
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        let inner = &rest[start + SECRET_MARKER.len()..start + end];
        if let Some((name, key)) = inner.split_once(':') {
            found.push((
                rest[start..start + end + 2].to_owned(),
                SecretKeyRef {
                    name: name.to_owned(),
                    key: key.to_owned(),
                },
            ));
        }
        rest = &rest[start + end + 2..];
    }
    found
}

/// Returns the problems of an argument's `valueFrom`; `fields` says whether a Cell's fields
/// may be read there.
fn value_from_problems(path: &str, from: &ValueFrom, fields: bool) -> Vec<SpecError> {
    let mut errors = Vec::new();
    match (&from.field_ref, &from.secret_key_ref) {
        (Some(_), Some(_)) => errors.push(SpecError::new(
            path,
            "give fieldRef or secretKeyRef, not both",
        )),
        (None, None) => errors.push(SpecError::new(path, "give fieldRef or secretKeyRef")),
        (Some(_), None) if !fields => errors.push(SpecError::new(
            path,
            "only a Cell's analysis steps can read fields (there is no Cell here)",
        )),
        (Some(f), None) if !FIELD_PATHS.contains(&f.field_path.as_str()) => {
            errors.push(SpecError::new(
                format!("{path}.fieldRef.fieldPath"),
                format!(
                    "{:?} is not a field Baton provides (use one of: {})",
                    f.field_path,
                    FIELD_PATHS.join(", ")
                ),
            ))
        }
        (None, Some(s)) => {
            for (field, value) in [("name", &s.name), ("key", &s.key)] {
                if value.is_empty() || value.contains([':', '}', '{', '/']) {
                    errors.push(SpecError::new(
                        format!("{path}.secretKeyRef.{field}"),
                        format!("{value:?} is not a Secret {field}"),
                    ));
                }
            }
        }
        _ => {}
    }
    errors
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
    /// Whether it measures until stopped: an interval and no count (as Argo Rollouts' metrics
    /// of a background analysis do).
    pub fn is_unbounded(&self) -> bool {
        self.interval.is_some() && self.count.is_none()
    }

    /// Returns the metric with every `{{args.NAME}}` in its provider filled in.
    pub fn filled(&self, args: &BTreeMap<String, String>) -> Metric {
        let mut metric = self.clone();
        metric.provider.fill(args);
        metric
    }

    /// Returns every text of the provider that may hold placeholders.
    fn texts(&self) -> Vec<&str> {
        self.provider.texts()
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
        // A template's metric may measure until stopped, which background analysis does; a
        // step's or a node's must end.
        if m.is_unbounded() && declared.is_none() {
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
        errors.extend(m.provider.problems(&format!("{path}.provider")));
        for text in m.texts() {
            if text.contains(SECRET_MARKER) {
                errors.push(SpecError::new(
                    format!("{path}.provider"),
                    "{{secret:...}} is how Baton carries a Secret to its worker, not text a document writes: name the Secret with an argument's valueFrom.secretKeyRef",
                ));
            }
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
        if let Some(from) = &arg.value_from {
            if arg.value.is_some() {
                errors.push(SpecError::new(
                    format!("spec.args[{i}]"),
                    "give value or valueFrom, not both",
                ));
            }
            // A template's own arguments read Secrets; a Cell's fields come with a step's.
            errors.extend(value_from_problems(
                &format!("spec.args[{i}].valueFrom"),
                from,
                false,
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
    if spec.namespace.is_some() {
        errors.push(SpecError::new(
            format!("{at}.namespace"),
            "set by Baton (a Cell's own namespace), not by a document",
        ));
    }
    if spec.experiment.is_some() {
        errors.push(SpecError::new(
            format!("{at}.experiment"),
            "set by Baton for a Cell's experiment step, not by a document",
        ));
    }
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
            (None, Some(from)) => errors.extend(value_from_problems(
                &format!("{path}.valueFrom"),
                from,
                field_refs_allowed,
            )),
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

/// Returns why resolved metrics cannot run as a step or a node: one measures until stopped,
/// which only a Cell's background analysis does.
pub fn unbounded_problem(metrics: &[Metric]) -> Option<String> {
    let m = metrics.iter().find(|m| m.is_unbounded())?;
    Some(format!(
        "metric {} has an interval and no count: it measures until stopped, which only a Cell's background analysis (spec.updateStrategy.canary.analysis) does; give it a count",
        m.name
    ))
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
    // Only a secretKeyRef makes a Secret marker: a value that holds one (a field read from
    // a target group's tags, say) would make the worker read a Secret nobody named.
    let plain = |name: &str, value: String| match value.contains(SECRET_MARKER) {
        true => Err(format!(
            "argument {name:?}: its value holds {{{{secret:, which only a secretKeyRef may"
        )),
        false => Ok(value),
    };
    let mut given = BTreeMap::new();
    for arg in &spec.args {
        let value = match (&arg.value, &arg.value_from) {
            (Some(v), _) => plain(&arg.name, v.clone())?,
            (None, Some(from)) => match (&from.field_ref, &from.secret_key_ref) {
                (Some(f), _) => plain(
                    &arg.name,
                    fields.get(&f.field_path).cloned().ok_or_else(|| {
                        format!("argument {:?}: {} has no value yet", arg.name, f.field_path)
                    })?,
                )?,
                (None, Some(secret)) => secret.marker(),
                (None, None) => continue,
            },
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
            let from_secret = declared
                .value_from
                .as_ref()
                .and_then(|f| f.secret_key_ref.as_ref())
                .map(SecretKeyRef::marker);
            let default = match &declared.value {
                Some(v) => Some(plain(&declared.name, v.clone())?),
                None => None,
            };
            let value = given
                .get(&declared.name)
                .or(default.as_ref())
                .or(from_secret.as_ref())
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
mod tests;
