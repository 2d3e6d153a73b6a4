//! What users see of registered documents: the status views of application groups, Cells,
//! tasks and ignitors, as the API serves them, `baton` prints them and a cluster object's
//! status holds them. The core builds them; everything else reads these types, not JSON.
//!
//! A field that may be unknown is `null` rather than absent, as the API has always served
//! it, except in a [`Condition`], which follows Kubernetes' own.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::RunId;

/// A Kubernetes condition, as Orkestra wrote them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `ForwardWorkflowSucceeded`, `RollbackWorkflowSucceeded` or
    /// `ReverseWorkflowSucceeded`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Why, in one word.
    pub reason: String,
    /// Why, in words.
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The generation of the object the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// Returns whether the condition is `type` and says `True`.
    pub fn is(&self, kind: &str) -> bool {
        self.kind == kind && self.status == "True"
    }
}

/// What Baton did with an application group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupView {
    /// The group.
    pub name: String,
    /// The API version it was applied as (Baton's or Orkestra's).
    pub api_version: String,
    /// `Progressing`, `Succeeded`, `RollingBack`, `Uninstalling`, `Failed`, `Deleting` or
    /// `Deleted`.
    pub phase: String,
    /// The revision of the spec applied last (one per change of spec).
    pub revision: u32,
    /// The generation last applied.
    pub observed_generation: Option<i64>,
    /// The revision last released in full.
    pub last_succeeded_revision: Option<u32>,
    /// The generation last released in full.
    pub last_succeeded_generation: Option<i64>,
    /// After a failure: `rolledBack` (to the last successful spec) or `uninstalled` (no spec
    /// had succeeded).
    pub remediation: Option<String>,
    /// The run under way, or the last one.
    pub run: Option<RunId>,
    /// The group's latest runs of each purpose.
    pub runs: GroupRuns,
    /// What waits for the run under way to end: `apply` or `delete`.
    pub pending: Option<String>,
    /// Whether nothing runs and nothing waits.
    pub settled: bool,
    /// Releases a failed uninstall left behind (`namespace/release`).
    pub left_installed: Vec<String>,
    /// Deleted and let go: every release uninstalled, or some left where a person said to
    /// let it go anyway (`--force`). A cluster object is held by Baton's finalizer until then.
    #[serde(default)]
    pub released: bool,
    /// Orkestra's conditions.
    pub conditions: Vec<Condition>,
    /// Every application of the spec applied, with its subcharts.
    pub applications: Vec<ApplicationView>,
}

impl GroupView {
    /// Returns the condition of `kind`, if the group has one.
    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }
}

/// A group's latest runs of each purpose.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupRuns {
    /// The run that applied the latest spec.
    pub forward: Option<RunId>,
    /// The rollback or uninstall after it failed.
    pub remediation: Option<RunId>,
    /// The run that uninstalled the group after its delete.
    pub delete: Option<RunId>,
}

/// One application of a group: its own release, and its subcharts released on their own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationView {
    /// The application.
    pub name: String,
    /// Its own release.
    #[serde(flatten)]
    pub release: Option<ReleaseView>,
    /// Its subcharts released on their own, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subcharts: BTreeMap<String, ReleaseView>,
}

/// A Helm release of a group, as the latest run that touched it left it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseView {
    /// The Helm release's name.
    pub release: String,
    /// The release's namespace.
    pub namespace: String,
    /// The chart version released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its `Ready` condition.
    pub conditions: Vec<Condition>,
}

/// What Baton last saw and did for a Cell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CellView {
    /// The Cell.
    pub name: String,
    /// `Pending`, `Serving`, `Progressing`, `Paused` or `Degraded`.
    pub phase: String,
    /// The version that has the traffic (or had it before the rollout under way).
    pub serving_version: Option<String>,
    /// The version being rolled out, or serving when no rollout is under way.
    pub desired_version: Option<String>,
    /// The index of the rollout step under way.
    pub step: Option<u32>,
    /// The rollout's run.
    pub run: Option<String>,
    /// The rule's forward action as AWS last showed it.
    pub weights: Vec<CellWeight>,
    /// Versions Baton will not roll out again until promoted.
    pub blocked: Vec<BlockedVersion>,
    /// What the Cell waits for, or why a rollout failed (on a cluster object, also why its
    /// document was refused).
    pub message: Option<String>,
    /// When target groups were last discovered (RFC 3339).
    pub last_sync_time: Option<String>,
    /// Where its target groups came from at the last discovery: `AWSTargetGroup` (okra's
    /// objects in its namespace) or `Tags` (ELBv2 tags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group_source: Option<String>,
    /// The rule's forward weights over time, oldest first: each change Baton saw, the last
    /// hundred kept. Only in one Cell's view (`GET /v1/cells/{name}` and its watch), not in
    /// lists, nor in a cluster object's status (see [`CELL_STATUS_FIELDS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weight_history: Vec<CellWeightChange>,
}

impl CellView {
    /// Returns the view as a list shows it: without the weights' history, which only a
    /// page of one Cell draws, so that a list of many Cells stays small.
    pub fn listed(mut self) -> CellView {
        self.weight_history = Vec::new();
        self
    }
}

/// A Cell's rule's forward weights from a moment on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CellWeightChange {
    /// When Baton saw them (RFC 3339).
    pub at: String,
    /// The weights, each target group named as the last discovery saw it.
    pub weights: Vec<CellWeight>,
}

/// One target group's weight in a Cell's rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CellWeight {
    /// The target group's ARN.
    pub arn: String,
    /// Its name, when discovery saw it.
    pub name: Option<String>,
    /// Its version tag.
    pub version: Option<String>,
    /// Its weight.
    pub weight: u32,
}

/// A version a Cell will not roll out again until it is promoted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockedVersion {
    /// The version.
    pub version: String,
    /// Why it was blocked.
    pub cause: String,
    /// When (RFC 3339).
    pub at: String,
}

/// An Orca task and its status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    /// The task.
    pub name: String,
    /// `Pending` or `Running`.
    pub state: String,
    /// When the task last succeeded (RFC 3339, UTC).
    pub last_success: Option<String>,
    /// When the task last failed (RFC 3339, UTC).
    pub last_failure: Option<String>,
    /// Consecutive failures, reset by a success.
    pub failures_count: u32,
    /// The ignitors that start it.
    pub ignitors: Vec<String>,
    /// The tasks whose success starts it.
    pub on_success_task: Vec<String>,
    /// The tasks whose failure starts it.
    pub on_failure_task: Vec<String>,
}

/// An Orca ignitor and its fires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IgnitorView {
    /// The ignitor.
    pub name: String,
    /// Its schedule as written.
    pub scheduled: String,
    /// The scheduled time of the last fire (RFC 3339, UTC).
    pub last_fire: Option<String>,
    /// The next scheduled fire (RFC 3339, UTC).
    pub next_fire: Option<String>,
    /// Why the schedule was refused, when it was.
    pub error: Option<String>,
    /// A one-shot (`NOW`, a time) whose fire started its chain: it fires no more. Orca
    /// deleted such an ignitor from the cluster; Baton does too for Orca's documents.
    #[serde(default)]
    pub spent: bool,
}

/// The fields of a [`TaskView`] that a Task object's status holds.
pub const TASK_STATUS_FIELDS: &[&str] = &["state", "lastSuccess", "lastFailure", "failuresCount"];

/// The fields of an [`IgnitorView`] that an Ignitor object's status holds (its `error` is
/// the status' `message`).
pub const IGNITOR_STATUS_FIELDS: &[&str] = &["lastFire", "nextFire"];

/// The fields of a [`GroupView`] that an ApplicationGroup object's status holds.
pub const GROUP_STATUS_FIELDS: &[&str] = &[
    "observedGeneration",
    "lastSucceededGeneration",
    "phase",
    "remediation",
    "run",
    "leftInstalled",
    "conditions",
    "applications",
];

/// The fields of a [`CellView`] that a Cell object's status holds: all but its name and its
/// weight history, which would make every status write of a Cell kilobytes larger (the API
/// serves it).
pub const CELL_STATUS_FIELDS: &[&str] = &[
    "phase",
    "servingVersion",
    "desiredVersion",
    "step",
    "run",
    "weights",
    "blocked",
    "message",
    "lastSyncTime",
    "targetGroupSource",
];

/// Returns the `fields` of a view, as a cluster object's status holds them. The CRDs' status
/// schemas are the same fields of the same types (`crd.rs`).
pub fn status_fields(view: &impl Serialize, fields: &[&str]) -> serde_json::Value {
    let view = serde_json::to_value(view).expect("views serialize");
    fields
        .iter()
        .map(|f| ((*f).to_owned(), view[*f].clone()))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_application_reads_back_with_and_without_its_own_release() {
        let ready =
            json!([{"type": "Ready", "status": "True", "reason": "Succeeded", "message": "m"}]);
        let with = json!({"name": "shop", "release": "shop", "namespace": "apps", "conditions": ready,
                          "subcharts": {"cart": {"release": "shop-cart", "namespace": "apps", "version": "1.0.0", "conditions": ready}}});
        let app: ApplicationView = serde_json::from_value(with.clone()).unwrap();
        assert_eq!(app.release.as_ref().unwrap().release, "shop");
        assert_eq!(app.subcharts["cart"].version.as_deref(), Some("1.0.0"));
        assert_eq!(serde_json::to_value(&app).unwrap(), with);
        let bare = json!({"name": "shop"});
        let app: ApplicationView = serde_json::from_value(bare.clone()).unwrap();
        assert_eq!(app.release, None);
        assert_eq!(serde_json::to_value(&app).unwrap(), bare);
    }
}
