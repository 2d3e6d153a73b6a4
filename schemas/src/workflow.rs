//! The `Workflow` document: a DAG of nodes with `needs` (all-of) and `when` conditions.

use std::collections::BTreeMap;

pub use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde::{Deserialize, Serialize};

use crate::{Duration, NodeName, WorkflowName};

/// A `Workflow` document as written by a user (`apiVersion: baton.dev/v1alpha1`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workflow {
    /// Always `baton.dev/v1alpha1`.
    pub api_version: String,
    /// Always `Workflow`.
    pub kind: String,
    /// The object's name and labels.
    pub metadata: Metadata,
    /// What the workflow does.
    pub spec: WorkflowSpec,
    /// What a cluster reported; ignored on input.
    #[serde(default, skip_serializing)]
    pub status: Option<serde_json::Value>,
}

impl Workflow {
    /// Returns the workflow's name (validated by [`crate::validate`]).
    pub fn name(&self) -> WorkflowName {
        WorkflowName::new(self.metadata.name.clone())
    }
}

/// The part of Kubernetes object metadata that Baton reads. Other fields a cluster adds
/// (`uid`, `resourceVersion`, ...) are accepted and ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// The object's name.
    #[serde(default)]
    pub name: String,
    /// The object's namespace, if it lives in a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The body of a workflow.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkflowSpec {
    /// What happens to the rest of the run after a node fails for good.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// The nodes, in any order; `needs` gives the edges.
    pub nodes: Vec<NodeSpec>,
}

/// What a run does after a node has failed for good (its retries used up).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum FailurePolicy {
    /// No new `when: success` node starts after a failure; running nodes finish; failure
    /// and always handlers still run. The default.
    #[default]
    FailFast,
    /// Branches that do not depend on the failed node go on.
    Continue,
}

/// One node of a workflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// The node's name, a DNS-1123 label unique in the workflow.
    pub name: NodeName,
    /// What the node does.
    pub kind: NodeKind,
    /// Nodes that must all have finished before this one is considered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<NodeName>,
    /// On which outcome of `needs` the node runs.
    #[serde(default)]
    pub when: When,
    /// How often a failed attempt is tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    /// How long one attempt may run before it is stopped and counted as failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// `exec`: the program and its arguments (argv, no shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// `exec`: environment variables added to the process.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// `exec`: the working directory of the process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `pod`: the pod to run, used whole (all containers, volumes, resources, ...). Boxed: a
    /// pod template is large, and most nodes of a big workflow have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Box<PodTemplateSpec>>,
    /// `pod`: the namespace of the pod (default: the worker's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `pod`: the container whose termination message is the node's output (default: the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// `webhook`: the request to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Box<crate::task::Webhook>>,
    /// `publish`: the NATS message to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Box<crate::task::Publish>>,
    /// `helm`: the release and what to do to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<Box<crate::helm::HelmSpec>>,
    /// `traffic`: the ALB listener rule to write and its weighted target groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Box<crate::traffic::TrafficSpec>>,
    /// `analysis`: the metrics to measure and judge (templates by name, or inline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::analysis::UncheckedAnalysis>")]
    pub analysis: Option<Box<crate::analysis::AnalysisSpec>>,
}

impl NodeSpec {
    /// Returns a node of `kind` named `name` with every other field at its default: no
    /// needs, `when: success`, no retries or timeout, no kind settings. The planner builds
    /// the nodes it adds to a run (chains, rollouts, release graphs) from it.
    pub fn new(name: NodeName, kind: NodeKind) -> NodeSpec {
        NodeSpec {
            name,
            kind,
            needs: Vec::new(),
            when: When::Success,
            retries: None,
            timeout: None,
            command: None,
            env: BTreeMap::new(),
            working_dir: None,
            template: None,
            namespace: None,
            container: None,
            webhook: None,
            publish: None,
            helm: None,
            traffic: None,
            analysis: None,
        }
    }
}

/// The kinds of node a workflow may hold.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum NodeKind {
    /// Does nothing and succeeds; passes no output.
    Noop,
    /// Runs a local process on a worker.
    Exec,
    /// Runs a Kubernetes pod and takes its termination message as output.
    Pod,
    /// Sends an HTTP request; the response body is the output.
    Webhook,
    /// Publishes a NATS message.
    Publish,
    /// Installs, upgrades or uninstalls a Helm release.
    Helm,
    /// Writes an ALB listener rule's weighted forward action and reads it back.
    Traffic,
    /// Measures metrics (Prometheus queries, HTTP checks) and judges them.
    Analysis,
}

impl NodeKind {
    /// Every kind, in the order workers list them.
    pub const ALL: [NodeKind; 8] = [
        NodeKind::Noop,
        NodeKind::Exec,
        NodeKind::Pod,
        NodeKind::Webhook,
        NodeKind::Publish,
        NodeKind::Helm,
        NodeKind::Traffic,
        NodeKind::Analysis,
    ];

    /// Returns the kind's name as it appears in subjects and specs.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Noop => "noop",
            NodeKind::Exec => "exec",
            NodeKind::Pod => "pod",
            NodeKind::Webhook => "webhook",
            NodeKind::Publish => "publish",
            NodeKind::Helm => "helm",
            NodeKind::Traffic => "traffic",
            NodeKind::Analysis => "analysis",
        }
    }
}

impl std::fmt::Display for NodeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for NodeKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown node kind {s:?} (known: noop, exec, pod, webhook, publish, helm, traffic, analysis)")
            })
    }
}

/// On which outcome of its `needs` a node runs.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum When {
    /// Every need succeeded. The default.
    #[default]
    Success,
    /// Every need finished and at least one failed.
    Failure,
    /// Every need finished, whatever the outcome.
    Always,
}

/// Retry settings of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retries {
    /// How many retries follow the first attempt (so `limit + 1` attempts at most).
    pub limit: u32,
    /// The delay before each retry.
    #[serde(default)]
    pub backoff: Backoff,
}

/// Exponential backoff: the first retry waits `initial`, each further one twice as long, at
/// most `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backoff {
    /// The delay before the first retry. Default 1s.
    #[serde(default = "Backoff::default_initial")]
    pub initial: Duration,
    /// The longest delay. Default 5m.
    #[serde(default = "Backoff::default_max")]
    pub max: Duration,
}

impl Backoff {
    fn default_initial() -> Duration {
        Duration::from_secs(1)
    }

    fn default_max() -> Duration {
        Duration::from_secs(300)
    }

    /// Returns the delay before the retry that follows failed attempt `failed` (1-based).
    pub fn delay_after(&self, failed: u32) -> std::time::Duration {
        let factor = 2u32.saturating_pow(failed.saturating_sub(1));
        self.initial.0.saturating_mul(factor).min(self.max.0)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Self::default_initial(),
            max: Self::default_max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_max() {
        let b = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(5),
        };
        let delays: Vec<u64> = (1..=5).map(|n| b.delay_after(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        assert_eq!(b.delay_after(200).as_secs(), 5);
    }
}

#[cfg(test)]
mod size {
    /// A big workflow holds a node spec per node, twice (registered, and in its run): the
    /// rarely used large parts are boxed so that a node costs a few hundred bytes.
    #[test]
    fn a_node_spec_stays_small() {
        let size = std::mem::size_of::<super::NodeSpec>();
        assert!(size <= 512, "NodeSpec is {size} bytes");
    }
}
