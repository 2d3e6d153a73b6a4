//! okra's kinds that feed Cells from a management cluster (`okra.mumo.co/v1alpha1`, verbatim
//! from okra's README):
//!
//! - `AWSTargetGroup`: one target group, its ARN in `spec.arn`, its version and other labels
//!   in `metadata.labels` (`okra.mumo.co/version: 1.0.0`, `role: web`). A Cell selects these
//!   by label, in its own namespace, when there are any; otherwise it finds target groups by
//!   their ELBv2 tags.
//! - `AWSTargetGroupSet`: makes `AWSTargetGroup`s from the `TargetGroupBinding`s (AWS Load
//!   Balancer Controller, `elbv2.k8s.aws`) of member clusters, which Argo CD cluster Secrets
//!   (`argocd.argoproj.io/secret-type: cluster`) selected by `clusterSelector` list.
//! - `ClusterSet`: makes those Argo CD cluster Secrets for the EKS clusters whose tags
//!   `generators[].awseks.selector.matchTags` match.
//!
//! These live in the cluster the planner watches; Baton's API does not take them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::document::SpecError;
use crate::workflow::Metadata;

/// The label that gives an `AWSTargetGroup` (and a target group's tag) its version.
pub const VERSION_LABEL: &str = "okra.mumo.co/version";
/// The label of Argo CD's cluster Secrets.
pub const ARGOCD_SECRET_TYPE: &str = "argocd.argoproj.io/secret-type";
/// The label a set puts on what it made, naming the set, so that what it no longer finds is
/// deleted and nothing else is.
pub const MADE_BY_SET: &str = "okra.mumo.co/awstargetgroupset";
/// The label a ClusterSet puts on the Secrets it made.
pub const MADE_BY_CLUSTER_SET: &str = "okra.mumo.co/clusterset";

/// An `AWSTargetGroup` object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsTargetGroup {
    /// `okra.mumo.co/v1alpha1`.
    pub api_version: String,
    /// Always `AWSTargetGroup`.
    pub kind: String,
    /// Its name, namespace and labels (the version among them).
    pub metadata: Metadata,
    /// The target group.
    pub spec: AwsTargetGroupSpec,
    /// What a cluster reported; ignored on input.
    #[serde(default, skip_serializing)]
    pub status: Option<serde_json::Value>,
}

/// Which target group an `AWSTargetGroup` is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsTargetGroupSpec {
    /// The target group's ARN.
    pub arn: String,
}

/// An `AWSTargetGroupSet` object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsTargetGroupSet {
    /// `okra.mumo.co/v1alpha1`.
    pub api_version: String,
    /// Always `AWSTargetGroupSet`.
    pub kind: String,
    /// Its name and namespace (where its `AWSTargetGroup`s are made).
    pub metadata: Metadata,
    /// Where to look and what to make.
    pub spec: AwsTargetGroupSetSpec,
    /// What a cluster reported; ignored on input.
    #[serde(default, skip_serializing)]
    pub status: Option<serde_json::Value>,
}

/// Where an `AWSTargetGroupSet` looks, and what it makes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsTargetGroupSetSpec {
    /// Each generator lists clusters and the bindings in them.
    pub generators: Vec<BindingGenerator>,
    /// Labels and annotations added to every `AWSTargetGroup` made.
    #[serde(default)]
    pub template: Template,
}

/// One source of target groups.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BindingGenerator {
    /// `TargetGroupBinding`s of the clusters Argo CD knows.
    pub awseks: EksBindings,
}

/// Which clusters, and which of their bindings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EksBindings {
    /// The bindings' labels.
    #[serde(default)]
    pub binding_selector: LabelSelector,
    /// The labels of the clusters' Argo CD Secrets.
    #[serde(default)]
    pub cluster_selector: LabelSelector,
}

/// A `ClusterSet` object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSet {
    /// `okra.mumo.co/v1alpha1`.
    pub api_version: String,
    /// Always `ClusterSet`.
    pub kind: String,
    /// Its name and namespace (where its Secrets are made).
    pub metadata: Metadata,
    /// Which clusters, and what their Secrets carry.
    pub spec: ClusterSetSpec,
    /// What a cluster reported; ignored on input.
    #[serde(default, skip_serializing)]
    pub status: Option<serde_json::Value>,
}

/// Which clusters a `ClusterSet` makes Secrets for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSetSpec {
    /// Each generator finds clusters.
    pub generators: Vec<ClusterGenerator>,
    /// Labels and annotations added to every Secret made.
    #[serde(default)]
    pub template: Template,
}

/// One source of clusters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterGenerator {
    /// EKS clusters, by their tags.
    pub awseks: EksClusters,
}

/// EKS clusters by tag.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EksClusters {
    /// The tags.
    pub selector: TagSelector,
}

/// Tags a cluster must have, each with the value given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagSelector {
    /// The tags.
    #[serde(default)]
    pub match_tags: BTreeMap<String, String>,
}

/// Labels something must have, each with the value given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// The labels.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

impl LabelSelector {
    /// Whether `labels` hold every label the selector names.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    }

    /// The selector as Kubernetes' `labelSelector` query (`a=b,c=d`).
    pub fn query(&self) -> String {
        self.match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What is added to every object a set makes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Template {
    /// Its metadata.
    #[serde(default)]
    pub metadata: TemplateMetadata,
}

/// Labels and annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateMetadata {
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One of okra's management-cluster kinds.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum OkraObject {
    /// An `AWSTargetGroup`.
    TargetGroup(AwsTargetGroup),
    /// An `AWSTargetGroupSet`.
    TargetGroupSet(AwsTargetGroupSet),
    /// A `ClusterSet`.
    ClusterSet(ClusterSet),
}

impl OkraObject {
    /// The object's kind and name, as `AWSTargetGroup/default-web1`.
    pub fn describe(&self) -> String {
        match self {
            OkraObject::TargetGroup(t) => format!("AWSTargetGroup/{}", t.metadata.name),
            OkraObject::TargetGroupSet(s) => format!("AWSTargetGroupSet/{}", s.metadata.name),
            OkraObject::ClusterSet(s) => format!("ClusterSet/{}", s.metadata.name),
        }
    }
}

/// Returns the problems of an `AWSTargetGroup`.
pub fn target_group_problems(t: &AwsTargetGroup) -> Vec<SpecError> {
    let mut errors = Vec::new();
    if !is_target_group_arn(&t.spec.arn) {
        errors.push(SpecError::new(
            "spec.arn",
            format!(
                "{:?} is not a target group ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)",
                t.spec.arn
            ),
        ));
    }
    if let Some(version) = t.metadata.labels.get(VERSION_LABEL)
        && semver::Version::parse(version.trim_start_matches('v')).is_err()
    {
        errors.push(SpecError::new(
            format!("metadata.labels.{VERSION_LABEL}"),
            format!("{version:?} is not a semantic version (1.2.3)"),
        ));
    }
    errors
}

/// Returns the problems of a set or a ClusterSet: at least one generator.
pub fn generator_problems(generators: usize) -> Vec<SpecError> {
    match generators {
        0 => vec![SpecError::new(
            "spec.generators",
            "list at least one generator (awseks)",
        )],
        _ => Vec::new(),
    }
}

/// Whether `arn` is an ELBv2 target group's ARN.
pub fn is_target_group_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "elasticloadbalancing"
        && parts[5].starts_with("targetgroup/")
}

/// The name of the `AWSTargetGroup` made for a binding: okra's, the binding's namespace and
/// name joined by `-`.
pub fn target_group_object_name(binding_namespace: &str, binding_name: &str) -> String {
    format!("{binding_namespace}-{binding_name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn okras_readme_documents_validate_and_apply_refuses_them_saying_where_they_go() {
        let text = include_str!("../../examples/okra/management-cluster.yaml");
        let now = crate::wire::Timestamp(1_800_000_000_000);
        let limits = crate::Limits::default();
        let (documents, objects) =
            crate::document::validate_documents_within("m.yaml", text, now, limits).unwrap();
        assert!(documents.is_empty());
        let kinds: Vec<String> = objects.iter().map(OkraObject::describe).collect();
        assert_eq!(
            kinds,
            [
                "ClusterSet/cell1",
                "AWSTargetGroup/default-web1",
                "AWSTargetGroupSet/cell1"
            ]
        );
        let OkraObject::TargetGroupSet(set) = &objects[2] else {
            panic!()
        };
        let generator = &set.spec.generators[0].awseks;
        assert_eq!(generator.binding_selector.query(), "role=web");
        assert_eq!(generator.cluster_selector.query(), "service=demo");
        let refused = crate::parse_documents("m.yaml", text, now).unwrap_err();
        assert!(
            refused.to_string().contains("(document 1) kind: ClusterSet/cell1 is okra's management-cluster kind: the planner reads it from the cluster it watches (--watch-kubernetes), so apply it there with kubectl"),
            "{refused}"
        );
        // A malformed ARN or version is refused with its path.
        let bad = text
            .replace("targetgroup/NAME/ID", "loadbalancer/app/x")
            .replace("okra.mumo.co/version: 1.0.0", "okra.mumo.co/version: one");
        let errors = crate::document::validate_documents_within("m.yaml", &bad, now, limits)
            .unwrap_err()
            .to_string();
        assert!(errors.contains("m.yaml: (document 2) spec.arn: \"arn:aws:elasticloadbalancing:REGION:ACCOUNT:loadbalancer/app/x\" is not a target group ARN"), "{errors}");
        assert!(errors.contains("(document 2) metadata.labels.okra.mumo.co/version: \"one\" is not a semantic version"), "{errors}");
    }

    #[test]
    fn target_group_arns_are_recognised() {
        assert!(is_target_group_arn(
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123abcd"
        ));
        assert!(!is_target_group_arn(
            "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/x/1"
        ));
        assert!(!is_target_group_arn("web"));
    }

    #[test]
    fn a_selector_matches_labels_and_reads_as_a_query() {
        let selector = LabelSelector {
            match_labels: BTreeMap::from([("role".into(), "web".into()), ("a".into(), "b".into())]),
        };
        let labels = BTreeMap::from([
            ("role".to_owned(), "web".to_owned()),
            ("a".to_owned(), "b".to_owned()),
            ("x".to_owned(), "y".to_owned()),
        ]);
        assert!(selector.matches(&labels));
        assert!(!selector.matches(&BTreeMap::new()));
        assert_eq!(selector.query(), "a=b,role=web");
    }
}
