//! okra's `experiment` step, as okra turned it into an Argo Rollouts Experiment: ReplicaSets
//! made from the templates `specRef` names run scaled up for `duration`, analyses judge them
//! meanwhile, and they are scaled to zero and removed after, pass or fail. The step passes
//! when the analyses do.
//!
//! Baton runs them in the cluster and namespace of the Cell, as okra's Experiment did (it
//! lived beside the Cell in the management cluster): the ReplicaSet `specRef` names is a
//! document of the same file given to `baton apply`, or an object in that namespace.

use serde::{Deserialize, Serialize};

use super::{PauseDuration, PreservedObject};
use crate::analysis::{self, AnalysisSpec, TemplateRef};
use crate::document::SpecError;
use crate::ids::is_dns_label;

/// How long an experiment's ReplicaSets may take to become available, as Argo Rollouts'
/// `progressDeadlineSeconds` defaults.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: u32 = 600;

/// An `experiment` step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExperimentStep {
    /// How long the ReplicaSets run once available: whole seconds, or a duration such as
    /// `5m`. Without it the experiment lasts until its `requiredForCompletion` analyses end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<PauseDuration>,
    /// How long the ReplicaSets may take to become available (default 600); the step fails
    /// when they do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<u32>,
    /// The ReplicaSets to run.
    #[serde(default)]
    pub templates: Vec<ExperimentTemplate>,
    /// The analyses that judge them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analyses: Vec<ExperimentAnalysis>,
}

/// One ReplicaSet of an experiment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExperimentTemplate {
    /// Its name in the experiment: the ReplicaSet is `<cell>-<step>-experiment-<name>`.
    pub name: String,
    /// The ReplicaSet whose pod template it runs, in the Cell's namespace.
    pub spec_ref: String,
    /// How many pods (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// The ReplicaSet `specRef` names, when `baton apply` found it in the same file; without
    /// it the worker reads the ReplicaSet from the Cell's namespace when the step starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<PreservedObject>")]
    pub replica_set: Option<serde_json::Value>,
}

impl ExperimentTemplate {
    /// How many pods it runs.
    pub fn replicas(&self) -> u32 {
        self.replicas.unwrap_or(1).max(0) as u32
    }
}

/// An analysis of an experiment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExperimentAnalysis {
    /// Its name in the experiment.
    pub name: String,
    /// The template it runs.
    pub template_name: String,
    /// Argo Rollouts' mark of a `ClusterAnalysisTemplate` (one name space of templates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
    /// Arguments for the template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<analysis::Arg>,
    /// Whether the experiment waits for it to end; others are stopped when the duration is
    /// over, and count as passed unless they failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_for_completion: Option<bool>,
}

impl ExperimentAnalysis {
    /// The analysis it runs.
    pub fn spec(&self) -> AnalysisSpec {
        AnalysisSpec {
            templates: vec![TemplateRef {
                template_name: self.template_name.clone(),
                cluster_scope: self.cluster_scope,
            }],
            args: self.args.clone(),
            ..AnalysisSpec::default()
        }
    }

    /// Whether the experiment waits for it.
    pub fn required(&self) -> bool {
        self.required_for_completion == Some(true)
    }
}

/// Returns the problems of an experiment step at `at`.
pub fn problems(at: &str, step: &ExperimentStep) -> Vec<SpecError> {
    let mut errors = Vec::new();
    if let Some(Err(e)) = step.duration.as_ref().map(PauseDuration::get) {
        errors.push(SpecError::new(format!("{at}.duration"), e));
    }
    if step.progress_deadline_seconds == Some(0) {
        errors.push(SpecError::new(
            format!("{at}.progressDeadlineSeconds"),
            "must be at least 1",
        ));
    }
    if step.duration.is_none() && !step.analyses.iter().any(ExperimentAnalysis::required) {
        errors.push(SpecError::new(
            format!("{at}.duration"),
            "give a duration, or an analysis with requiredForCompletion: true: an experiment with neither would hold its rollout forever",
        ));
    }
    if step.templates.is_empty() {
        errors.push(SpecError::new(
            format!("{at}.templates"),
            "give at least one template (name, specRef, replicas)",
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, t) in step.templates.iter().enumerate() {
        let path = format!("{at}.templates[{i}]");
        errors.extend(name_problem(&path, &t.name, &mut names, "template"));
        if !is_dns_label(&t.spec_ref) {
            errors.push(SpecError::new(
                format!("{path}.specRef"),
                format!("{:?} is not the name of a ReplicaSet", t.spec_ref),
            ));
        }
        if t.replicas.is_some_and(|r| r < 0) {
            errors.push(SpecError::new(
                format!("{path}.replicas"),
                "must not be negative",
            ));
        }
        if let Some(rs) = &t.replica_set {
            errors.extend(replica_set_problems(&format!("{path}.replicaSet"), rs));
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, a) in step.analyses.iter().enumerate() {
        let path = format!("{at}.analyses[{i}]");
        errors.extend(name_problem(&path, &a.name, &mut names, "analysis"));
        errors.extend(
            analysis::spec_problems(&path, &a.spec(), true)
                .into_iter()
                // The spec's `templates[0].templateName` is this analysis' `templateName`.
                .map(|e| SpecError {
                    path: e.path.replace(
                        &format!("{path}.templates[0].templateName"),
                        &format!("{path}.templateName"),
                    ),
                    message: e.message,
                }),
        );
    }
    errors
}

/// The problem of the `name` of the `what` at `path`: not a DNS label, or one of `seen`.
fn name_problem<'a>(
    path: &str,
    name: &'a str,
    seen: &mut std::collections::BTreeSet<&'a str>,
    what: &str,
) -> Option<SpecError> {
    let problem = match is_dns_label(name) {
        false => format!("{name:?} is not a DNS label"),
        true if !seen.insert(name) => format!("duplicate {what} {name:?}"),
        true => return None,
    };
    Some(SpecError::new(format!("{path}.name"), problem))
}

/// Returns the problems of a ReplicaSet an experiment runs (`at` is its path): an
/// `apps/v1` ReplicaSet with a selector its pod template's labels meet, and containers.
pub fn replica_set_problems(at: &str, rs: &serde_json::Value) -> Vec<SpecError> {
    let mut errors = Vec::new();
    let text = |field: &str| rs.get(field).and_then(|v| v.as_str()).unwrap_or_default();
    if (text("apiVersion"), text("kind")) != ("apps/v1", "ReplicaSet") {
        errors.push(SpecError::new(at, "must be an apps/v1 ReplicaSet"));
    }
    if rs
        .pointer("/spec/template/spec/containers")
        .and_then(|c| c.as_array())
        .is_none_or(|c| c.is_empty())
    {
        errors.push(SpecError::new(
            format!("{at}.spec.template.spec.containers"),
            "a ReplicaSet for an experiment needs a pod template with containers",
        ));
    }
    let labels = rs.pointer("/spec/template/metadata/labels");
    match rs.pointer("/spec/selector") {
        None => errors.push(SpecError::new(format!("{at}.spec.selector"), "is required")),
        Some(selector) if !selector.is_object() => errors.push(SpecError::new(
            format!("{at}.spec.selector"),
            "must be a label selector",
        )),
        Some(selector) => {
            let wanted = selector.get("matchLabels").map(|m| m.as_object());
            match wanted {
                Some(None) => errors.push(SpecError::new(
                    format!("{at}.spec.selector.matchLabels"),
                    "must map label names to values",
                )),
                Some(Some(wanted)) => {
                    for (key, value) in wanted {
                        if labels.and_then(|l| l.get(key)) != Some(value) {
                            errors.push(SpecError::new(
                                format!("{at}.spec.template.metadata.labels"),
                                format!("must have {key}: {value}, which the selector asks for"),
                            ));
                        }
                    }
                }
                None => {}
            }
        }
    }
    if labels.is_some_and(|l| !l.is_object()) {
        errors.push(SpecError::new(
            format!("{at}.spec.template.metadata.labels"),
            "must map label names to values",
        ));
    }
    errors
}
