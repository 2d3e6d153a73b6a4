//! CustomResourceDefinitions for the documents Baton reads from a cluster, generated from the
//! same types that parse them: Baton's own `Workflow`, `Task`, `Ignitor`, `ApplicationGroup`,
//! `Cell` and `AnalysisTemplate` (`baton.dev`), Orca's `Task` and `Ignitor` (`sirocco.cloud`),
//! Orkestra's `ApplicationGroup` (`orkestra.azure.microsoft.com`) and okra's `Cell`
//! (`okra.mumo.co`), so that Orca's, Orkestra's and okra's manifests apply unchanged.
//!
//! `baton crds` prints them; the copies committed under `deploy/crds/` are checked against
//! this module by a test, so they cannot drift.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec, CustomResourceDefinitionVersion, CustomResourceSubresourceStatus,
    CustomResourceSubresources, CustomResourceValidation, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use serde_json::json;

use crate::analysis::AnalysisTemplateSpec;
use crate::cell::CellSpec;
use crate::group::ApplicationGroupSpec;
use crate::task::{IgnitorSpec, TaskSpec};
use crate::views::{
    CELL_STATUS_FIELDS, CellView, GROUP_STATUS_FIELDS, GroupView, IGNITOR_STATUS_FIELDS,
    IgnitorView, TASK_STATUS_FIELDS, TaskView,
};
use crate::workflow::WorkflowSpec;

/// Baton's API group.
pub const BATON_GROUP: &str = "baton.dev";
/// Orca's API group, served so that Orca's documents apply verbatim.
pub const ORCA_GROUP: &str = "sirocco.cloud";
/// Orkestra's API group, served so that Orkestra's documents apply verbatim.
pub const ORKESTRA_GROUP: &str = "orkestra.azure.microsoft.com";
/// okra's API group, served so that okra's Cells apply verbatim.
pub const OKRA_GROUP: &str = "okra.mumo.co";
/// The version of every kind Baton serves.
pub const VERSION: &str = "v1alpha1";

/// One kind Baton reads from a cluster: where it is served and what it is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    /// The API group.
    pub group: &'static str,
    /// The kind (`Task`).
    pub kind: &'static str,
    /// The resource's plural (`tasks`).
    pub plural: &'static str,
}

impl Kind {
    /// Returns `group/version`.
    pub fn api_version(&self) -> String {
        format!("{}/{VERSION}", self.group)
    }

    /// Returns whether objects of the kind live in a namespace. Application groups are
    /// cluster-scoped, as Orkestra's were: their releases go to namespaces of their own.
    pub fn namespaced(&self) -> bool {
        self.kind != "ApplicationGroup"
    }
}

/// Every kind the planner watches.
pub const KINDS: [Kind; 10] = [
    Kind {
        group: BATON_GROUP,
        kind: "Workflow",
        plural: "workflows",
    },
    Kind {
        group: BATON_GROUP,
        kind: "Task",
        plural: "tasks",
    },
    Kind {
        group: BATON_GROUP,
        kind: "Ignitor",
        plural: "ignitors",
    },
    Kind {
        group: ORCA_GROUP,
        kind: "Task",
        plural: "tasks",
    },
    Kind {
        group: ORCA_GROUP,
        kind: "Ignitor",
        plural: "ignitors",
    },
    Kind {
        group: BATON_GROUP,
        kind: "ApplicationGroup",
        plural: "applicationgroups",
    },
    Kind {
        group: ORKESTRA_GROUP,
        kind: "ApplicationGroup",
        plural: "applicationgroups",
    },
    Kind {
        group: BATON_GROUP,
        kind: "Cell",
        plural: "cells",
    },
    Kind {
        group: BATON_GROUP,
        kind: "AnalysisTemplate",
        plural: "analysistemplates",
    },
    Kind {
        group: OKRA_GROUP,
        kind: "Cell",
        plural: "cells",
    },
];

/// okra's management-cluster kinds: not documents the planner registers, but objects its okra
/// controllers read and write (`baton_schemas::okra`). Their CRDs come with the others.
pub const OKRA_KINDS: [Kind; 3] = [
    Kind {
        group: OKRA_GROUP,
        kind: "AWSTargetGroup",
        plural: "awstargetgroups",
    },
    Kind {
        group: OKRA_GROUP,
        kind: "AWSTargetGroupSet",
        plural: "awstargetgroupsets",
    },
    Kind {
        group: OKRA_GROUP,
        kind: "ClusterSet",
        plural: "clustersets",
    },
];

/// Every kind with a CRD: [`KINDS`], then [`OKRA_KINDS`].
pub fn crd_kinds() -> impl Iterator<Item = &'static Kind> {
    KINDS.iter().chain(OKRA_KINDS.iter())
}

/// Returns every CustomResourceDefinition, in the order of [`crd_kinds`].
pub fn crds() -> Vec<CustomResourceDefinition> {
    crd_kinds().map(crd).collect()
}

/// Returns the CustomResourceDefinition of one kind.
pub fn crd(kind: &Kind) -> CustomResourceDefinition {
    let (spec, status, columns) = match kind.kind {
        // Node fields that other kinds document (pod templates, traffic, analysis, helm) go
        // without descriptions here, or the CRD would not fit kubectl's annotation.
        "Workflow" => (
            schema_of::<WorkflowSpec>(&["template", "traffic", "analysis", "helm"]),
            workflow_status(),
            workflow_columns(),
        ),
        "Task" => (
            schema_of::<TaskSpec>(&["template"]),
            view_status::<TaskView>(TASK_STATUS_FIELDS, None, REFUSED),
            task_columns(),
        ),
        "Ignitor" => (
            schema_of::<IgnitorSpec>(&[]),
            view_status::<IgnitorView>(
                IGNITOR_STATUS_FIELDS,
                None,
                "Why the schedule or document was refused, when it was.",
            ),
            ignitor_columns(),
        ),
        "ApplicationGroup" => (
            schema_of::<ApplicationGroupSpec>(&["template"]),
            view_status::<GroupView>(
                GROUP_STATUS_FIELDS,
                Some(
                    "What Baton did with the group: conditions as Orkestra wrote them, per application and subchart.",
                ),
                REFUSED,
            ),
            group_columns(),
        ),
        "Cell" => (
            schema_of::<CellSpec>(&[]),
            view_status::<CellView>(
                CELL_STATUS_FIELDS,
                Some(
                    "What Baton last saw and did: the versions, the rollout step, the weights AWS holds, blocked versions.",
                ),
                REFUSED,
            ),
            cell_columns(),
        ),
        "AnalysisTemplate" => (
            schema_of::<AnalysisTemplateSpec>(&[]),
            analysis_template_status(),
            vec![age()],
        ),
        "AWSTargetGroup" => (
            schema_of::<crate::okra::AwsTargetGroupSpec>(&[]),
            analysis_template_status(),
            vec![
                column("ARN", "string", ".spec.arn", "The target group"),
                column(
                    "Version",
                    "string",
                    ".metadata.labels.okra\\.mumo\\.co/version",
                    "The version the target group serves",
                ),
                age(),
            ],
        ),
        "AWSTargetGroupSet" => (
            schema_of::<crate::okra::AwsTargetGroupSetSpec>(&[]),
            okra_set_status("targetGroups", "AWSTargetGroups this set made, by name."),
            vec![age()],
        ),
        "ClusterSet" => (
            schema_of::<crate::okra::ClusterSetSpec>(&[]),
            okra_set_status(
                "clusters",
                "The Argo CD cluster Secrets this set made, by name.",
            ),
            vec![age()],
        ),
        other => unreachable!("no CRD for kind {other}"),
    };
    let status = with_kstatus(status);
    let singular = kind.kind.to_ascii_lowercase();
    // Orca's short names, kept for its users; Baton's kinds go without, so that both groups
    // can be installed side by side without kubectl finding `tk` ambiguous.
    let short_names = match (kind.group, kind.kind) {
        (ORCA_GROUP, "Task") => Some(vec!["tk".to_owned()]),
        (ORCA_GROUP, "Ignitor") => Some(vec!["ig".to_owned()]),
        (ORKESTRA_GROUP, "ApplicationGroup") => Some(vec!["ag".to_owned(), "appgroup".to_owned()]),
        _ => None,
    };
    let root = json!({
        "type": "object",
        "description": format!(
            "{} {} ({}): see Baton's README.",
            if kind.kind.starts_with(['A', 'E', 'I', 'O', 'U']) { "An" } else { "A" },
            kind.kind,
            kind.api_version()
        ),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    });
    CustomResourceDefinition {
        metadata: ObjectMeta {
            name: Some(format!("{}.{}", kind.plural, kind.group)),
            labels: Some([("app.kubernetes.io/part-of".to_owned(), "baton".to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: CustomResourceDefinitionSpec {
            group: kind.group.to_owned(),
            names: CustomResourceDefinitionNames {
                kind: kind.kind.to_owned(),
                list_kind: Some(format!("{}List", kind.kind)),
                plural: kind.plural.to_owned(),
                singular: Some(singular),
                short_names,
                categories: Some(vec!["baton".to_owned()]),
            },
            scope: if kind.namespaced() {
                "Namespaced"
            } else {
                "Cluster"
            }
            .to_owned(),
            versions: vec![CustomResourceDefinitionVersion {
                name: VERSION.to_owned(),
                served: true,
                storage: true,
                additional_printer_columns: Some(columns),
                schema: Some(CustomResourceValidation {
                    open_api_v3_schema: Some(
                        serde_json::from_value::<JSONSchemaProps>(root)
                            .expect("generated schemas are JSONSchemaProps"),
                    ),
                }),
                subresources: Some(CustomResourceSubresources {
                    status: Some(CustomResourceSubresourceStatus(json!({}))),
                    scale: None,
                }),
                ..CustomResourceDefinitionVersion::default()
            }],
            ..CustomResourceDefinitionSpec::default()
        },
        status: None,
    }
}

/// Returns every CRD as one YAML stream, each document after a `---` line.
pub fn crds_yaml() -> String {
    crd_kinds().map(crd_yaml).collect()
}

/// Returns one kind's CRD as a YAML document, as committed in `deploy/crds/`.
pub fn crd_yaml(kind: &Kind) -> String {
    format!(
        "# Generated by `baton crds` from the schemas crate; do not edit.\n---\n{}",
        crate::yaml::to_string(&serde_json::to_value(crd(kind)).expect("CRDs serialize"))
    )
}

/// Returns the file name a CRD is committed under in `deploy/crds/`.
pub fn file_name(kind: &Kind) -> String {
    format!("{}.{}.yaml", kind.plural, kind.group)
}

/// Returns the structural OpenAPI v3 schema of `T`, as Kubernetes wants it: no `$ref`s, no
/// `$schema`, enums and untagged variants folded into objects, `nullable` for options. The
/// object fields named in `terse` lose their descriptions.
fn schema_of<T: JsonSchema>(terse: &[&str]) -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(schemars::transform::AddNullable::default())
        .with_transform(kube_core::schema::StructuralSchemaRewriter)
        .with_transform(kube_core::schema::OptionalEnum)
        .with_transform(kube_core::schema::OptionalIntOrString)
        .into_generator();
    let mut schema =
        serde_json::to_value(generator.into_root_schema_for::<T>()).expect("schemas serialize");
    if let Some(object) = schema.as_object_mut() {
        object.remove("title");
    }
    drop_descriptions(&mut schema, terse, false);
    kubernetes_formats(&mut schema);
    schema
}

/// Replaces the integer formats schemars writes for unsigned and small Rust integers
/// (`uint32`, `uint8`, ...), which Kubernetes does not know (it warns `unrecognized format`),
/// by the ones it does: `int32` or `int64`, wide enough for the values. The `minimum: 0`
/// schemars writes beside them keeps unsigned values unsigned.
fn kubernetes_formats(schema: &mut serde_json::Value) {
    match schema {
        serde_json::Value::Object(object) => {
            if let Some(serde_json::Value::String(format)) = object.get_mut("format") {
                let known = match format.as_str() {
                    "int8" | "int16" | "uint8" | "uint16" => Some("int32"),
                    "uint32" | "uint64" | "uint" | "int" => Some("int64"),
                    _ => None,
                };
                if let Some(known) = known {
                    *format = known.to_owned();
                }
            }
            object.values_mut().for_each(kubernetes_formats);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(kubernetes_formats),
        _ => {}
    }
}

/// Removes the descriptions inside the object fields named in `terse`: Kubernetes' own
/// documentation of the pod fields would make each CRD about 500 KB, above what `kubectl
/// apply` can keep in its last-applied annotation (256 KB). `kubectl explain pod.spec` still
/// documents them, as the AnalysisTemplate CRD documents metrics.
fn drop_descriptions(schema: &mut serde_json::Value, terse: &[&str], inside: bool) {
    match schema {
        serde_json::Value::Object(object) => {
            if inside {
                object.remove("description");
            }
            for (key, value) in object.iter_mut() {
                let named = terse.contains(&key.as_str()) && value.get("properties").is_some();
                drop_descriptions(value, terse, inside || named);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                drop_descriptions(item, terse, inside);
            }
        }
        _ => {}
    }
}

/// What a status' `message` says when a document was refused.
const REFUSED: &str = "Why the document was refused, when it was.";

fn string(description: &str) -> serde_json::Value {
    json!({"type": "string", "description": description})
}

/// Returns the status schema of a kind whose status holds the `fields` of the view `V` (see
/// `views.rs`: the cluster watch writes those fields of the view), with a `message` described
/// as `message` says (why a document was refused) unless the view has one of its own. Nothing
/// is required: the status is written in parts (a refusal's message alone, say).
fn view_status<V: JsonSchema>(
    fields: &[&str],
    description: Option<&str>,
    message: &str,
) -> serde_json::Value {
    let mut schema = schema_of::<V>(&[]);
    let object = schema
        .as_object_mut()
        .expect("a view's schema is an object");
    object.remove("required");
    if let Some(serde_json::Value::Object(properties)) = object.get_mut("properties") {
        properties.retain(|name, _| fields.contains(&name.as_str()));
        properties
            .entry("message")
            .or_insert_with(|| string(message));
    }
    match description {
        Some(d) => object.insert("description".to_owned(), json!(d)),
        None => object.remove("description"),
    };
    schema
}

/// Adds what kstatus reads (`observedGeneration`, `conditions`: `Ready`, `Reconciling`,
/// `Stalled`) to a status schema that lacks them; a group's Orkestra conditions stay.
fn with_kstatus(mut status: serde_json::Value) -> serde_json::Value {
    let properties = status["properties"]
        .as_object_mut()
        .expect("a status schema has properties");
    properties.entry("observedGeneration").or_insert_with(|| {
        json!({"type": "integer", "format": "int64", "description": "The generation Baton last applied."})
    });
    properties.entry("conditions").or_insert_with(|| {
        json!({
            "type": "array",
            "description": "kstatus conditions: Ready, Reconciling and Stalled.",
            "items": {
                "type": "object",
                "required": ["type", "status"],
                "properties": {
                    "type": string("Ready, Reconciling or Stalled."),
                    "status": string("True, False or Unknown."),
                    "reason": string("Why, in one word."),
                    "message": string("Why, in words."),
                    "lastTransitionTime": string("When the status last changed (RFC 3339)."),
                    "observedGeneration": {"type": "integer", "format": "int64"},
                },
            },
        })
    });
    status
}

fn workflow_status() -> serde_json::Value {
    json!({
        "type": "object",
        "description": "The run this generation of the workflow started.",
        "properties": {
            "observedGeneration": {"type": "integer", "format": "int64", "description": "The generation the run was started for."},
            "run": string("The id of the run (baton status RUN)."),
            "state": string("pending, running, succeeded, failed or cancelled."),
            "startedAt": string("When the run started (RFC 3339)."),
            "finishedAt": string("When the run ended (RFC 3339)."),
            "failure": string("Why a failed run failed: its first failed node and the last line of its error."),
            "message": string("Why the document was refused, when it was."),
        },
    })
}

fn cell_columns() -> Vec<CustomResourceColumnDefinition> {
    vec![
        column("Phase", "string", ".status.phase", "The rollout's phase"),
        column(
            "Serving",
            "string",
            ".status.servingVersion",
            "The version with the traffic",
        ),
        column(
            "Desired",
            "string",
            ".status.desiredVersion",
            "The version being rolled out",
        ),
        column("Step", "integer", ".status.step", "The step under way"),
        column(
            "Last Sync",
            "date",
            ".status.lastSyncTime",
            "When target groups were last discovered",
        ),
    ]
}

fn analysis_template_status() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "message": string("Why the document was refused, when it was."),
        },
    })
}

/// The status of okra's sets: what they made, and why the last round failed.
fn okra_set_status(made: &str, description: &str) -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            made: {"type": "array", "items": {"type": "string"}, "description": description},
            "message": string("Why the last round did not finish, when it did not."),
        },
    })
}

/// Orkestra's columns.
fn group_columns() -> Vec<CustomResourceColumnDefinition> {
    vec![
        column(
            "Ready",
            "string",
            ".status.conditions[?(@.type==\"Ready\")].status",
            "Whether the group is released",
        ),
        column(
            "Reason",
            "string",
            ".status.conditions[?(@.type==\"Ready\")].reason",
            "Why",
        ),
        column(
            "Message",
            "string",
            ".status.conditions[?(@.type==\"Ready\")].message",
            "Why, in words",
        ),
        column(
            "RolledBack",
            "string",
            ".status.conditions[?(@.type==\"RollbackWorkflowSucceeded\")].status",
            "Whether a rollback to the last successful spec succeeded",
        ),
        age(),
    ]
}

fn column(
    name: &str,
    type_: &str,
    path: &str,
    description: &str,
) -> CustomResourceColumnDefinition {
    CustomResourceColumnDefinition {
        name: name.to_owned(),
        type_: type_.to_owned(),
        json_path: path.to_owned(),
        description: Some(description.to_owned()),
        ..CustomResourceColumnDefinition::default()
    }
}

fn age() -> CustomResourceColumnDefinition {
    column("Age", "date", ".metadata.creationTimestamp", "Age")
}

fn workflow_columns() -> Vec<CustomResourceColumnDefinition> {
    vec![
        column("Run", "string", ".status.run", "The run of this generation"),
        column("State", "string", ".status.state", "The run's state"),
        age(),
    ]
}

/// Orca's columns, in Orca's order and with Orca's names.
fn task_columns() -> Vec<CustomResourceColumnDefinition> {
    vec![
        column("state", "string", ".status.state", "State"),
        column(
            "lastSuccess",
            "string",
            ".status.lastSuccess",
            "Last success",
        ),
        column(
            "lastFailure",
            "string",
            ".status.lastFailure",
            "Last failure",
        ),
        column(
            "failuresCount",
            "integer",
            ".status.failuresCount",
            "count of last consecutive failures",
        ),
        column("ignitors", "string", ".spec.startOnIgnition", "Ignitors"),
        column(
            "onSuccessTask",
            "string",
            ".spec.startOnSuccess",
            "On success of",
        ),
        column(
            "onFailureTask",
            "string",
            ".spec.startOnFailure",
            "On failure of",
        ),
    ]
}

/// Orca's `scheduled` column, then Baton's last and next fire.
fn ignitor_columns() -> Vec<CustomResourceColumnDefinition> {
    vec![
        column("scheduled", "string", ".spec.scheduled", "Schedule"),
        column("lastFire", "string", ".status.lastFire", "Last fire"),
        column("nextFire", "string", ".status.nextFire", "Next fire"),
    ]
}

#[cfg(test)]
mod tests;
