//! Reading documents from YAML or JSON text, with errors that name the field path.

use std::fmt;

use serde::de::DeserializeOwned;

use crate::analysis::AnalysisTemplate;
use crate::analysis::argo::ARGO_API_VERSION;
use crate::cell::{Cell, OKRA_API_VERSION};
use crate::group::{ApplicationGroup, ORKESTRA_API_VERSION};
use crate::okra::OkraObject;
use crate::task::{Ignitor, ORCA_API_VERSION, Task};
use crate::validate;
use crate::wire::Timestamp;
use crate::workflow::Workflow;

mod kinds;
mod replica_sets;
pub mod shape;

pub use kinds::KindSet;

/// One parsed and validated document. It serializes as the document itself (its
/// `apiVersion` and `kind` tell the kind), as the API's apply request carries it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Document {
    /// A `baton.dev/v1alpha1` Workflow.
    Workflow(Workflow),
    /// A Task, Orca's or Baton's.
    Task(Box<Task>),
    /// An Ignitor, Orca's or Baton's.
    Ignitor(Box<Ignitor>),
    /// An ApplicationGroup, Orkestra's or Baton's.
    Group(Box<ApplicationGroup>),
    /// A Cell, okra's or Baton's.
    Cell(Box<Cell>),
    /// A `baton.dev/v1alpha1` AnalysisTemplate.
    AnalysisTemplate(Box<AnalysisTemplate>),
}

impl Document {
    /// Returns the document's kind and name, as `Workflow/diamond`.
    pub fn describe(&self) -> String {
        match self {
            Document::Workflow(w) => format!("Workflow/{}", w.metadata.name),
            Document::Task(t) => format!("Task/{}", t.metadata.name),
            Document::Ignitor(i) => format!("Ignitor/{}", i.metadata.name),
            Document::Group(g) => format!("ApplicationGroup/{}", g.metadata.name),
            Document::Cell(c) => format!("Cell/{}", c.metadata.name),
            Document::AnalysisTemplate(t) => format!("AnalysisTemplate/{}", t.metadata.name),
        }
    }
}

/// One problem in a document: where (a field path such as `spec.nodes[3].needs[0]`) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    /// The field path, or empty when the problem is the whole document.
    pub path: String,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

impl SpecError {
    /// Builds an error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one source (a file, or a request body), with the source's name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct SpecErrors {
    /// The file name or other label the text came from.
    pub source_name: String,
    /// The problems, in document order.
    pub errors: Vec<SpecError>,
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {error}", self.source_name)?;
        }
        Ok(())
    }
}

/// Limits on what one document may hold, checked before it is validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most nodes a workflow may have (`--max-nodes`, `BATON_MAX_NODES`). Every
    /// algorithm over a graph is iterative, so the limit is about memory and time (a
    /// 200 000-node workflow is about 12 MB of YAML and takes seconds to validate), not about
    /// the stack.
    pub max_nodes: usize,
    /// The node kinds documents may use (`--allow-kinds`, `BATON_ALLOW_KINDS`): a document
    /// that makes jobs of another kind is refused at the field that asks for it.
    pub allowed_kinds: KindSet,
}

impl Limits {
    /// The default of [`Limits::max_nodes`].
    pub const DEFAULT_MAX_NODES: usize = 250_000;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_nodes: Limits::DEFAULT_MAX_NODES,
            allowed_kinds: KindSet::ALL,
        }
    }
}

/// Parses every document in `text` (YAML, several documents split by `---`, or JSON) and
/// validates each, within the default [`Limits`]. `source_name` labels the errors, usually
/// the file path.
///
/// `now` is when the documents are applied: a one-shot schedule must lie after it.
///
/// Returns the documents in order, or every error found in any of them.
pub fn parse_documents(
    source_name: &str,
    text: &str,
    now: Timestamp,
) -> Result<Vec<Document>, SpecErrors> {
    parse_documents_within(source_name, text, now, Limits::default())
}

/// Does what [`parse_documents`] does, within `limits`.
pub fn parse_documents_within(
    source_name: &str,
    text: &str,
    now: Timestamp,
    limits: Limits,
) -> Result<Vec<Document>, SpecErrors> {
    parse_all(source_name, text, now, limits, false).map(|(documents, _)| documents)
}

/// Checks every document of a file as `baton validate` does: Baton's documents, and okra's
/// management-cluster kinds (`AWSTargetGroup`, `AWSTargetGroupSet`, `ClusterSet`), which
/// live in the cluster the planner watches rather than going through Baton's API.
pub fn validate_documents_within(
    source_name: &str,
    text: &str,
    now: Timestamp,
    limits: Limits,
) -> Result<(Vec<Document>, Vec<OkraObject>), SpecErrors> {
    parse_all(source_name, text, now, limits, true)
}

/// Reads every document of `text`; okra's management-cluster kinds are taken when `okra`
/// says so, refused (saying where they go) otherwise.
fn parse_all(
    source_name: &str,
    text: &str,
    now: Timestamp,
    limits: Limits,
    okra: bool,
) -> Result<(Vec<Document>, Vec<OkraObject>), SpecErrors> {
    let fail = |errors: Vec<SpecError>| SpecErrors {
        source_name: source_name.to_owned(),
        errors,
    };
    shape::check(text).map_err(|e| fail(vec![e]))?;
    let mut values = Vec::new();
    for raw in serde_norway::Deserializer::from_str(text) {
        match <serde_norway::Value as serde::Deserialize>::deserialize(raw) {
            Ok(serde_norway::Value::Null) => {}
            Ok(value) => values.push(value),
            Err(e) => {
                return Err(fail(vec![SpecError::new(
                    "",
                    format!("not valid YAML or JSON: {e}"),
                )]));
            }
        }
    }
    if values.is_empty() {
        return Err(fail(vec![SpecError::new("", "no document found")]));
    }
    let several = values.len() > 1;
    let mut documents = Vec::new();
    let mut cluster_objects = Vec::new();
    let mut file_replica_sets = Vec::new();
    let mut errors = Vec::new();
    for (index, value) in values.into_iter().enumerate() {
        let prefix = if several {
            format!("(document {}) ", index + 1)
        } else {
            String::new()
        };
        if replica_sets::is_replica_set(&value) {
            let read = replica_sets::read(prefix.clone(), value);
            match read {
                Ok(rs) => file_replica_sets.push(rs),
                Err(found) => errors.extend(found.into_iter().map(|e| SpecError {
                    path: format!("{prefix}{}", e.path),
                    message: e.message,
                })),
            }
            continue;
        }
        let parsed = match parse_okra(&value) {
            Some(Ok(object)) if okra => {
                cluster_objects.push(object);
                Ok(())
            }
            Some(Ok(object)) => Err(vec![SpecError::new(
                "kind",
                format!(
                    "{} is okra's management-cluster kind: the planner reads it from the cluster it watches (--watch-kubernetes), so apply it there with kubectl; `baton validate` checks it",
                    object.describe()
                ),
            )]),
            Some(Err(found)) => Err(found),
            None => parse_one(value, now, limits).map(|doc| documents.push(doc)),
        };
        if let Err(found) = parsed {
            errors.extend(found.into_iter().map(|e| SpecError {
                path: format!("{prefix}{}", e.path),
                message: e.message,
            }));
        }
    }
    for document in &mut documents {
        if let Document::Cell(cell) = document {
            replica_sets::attach(cell, &mut file_replica_sets);
        }
    }
    // A Cell refused above may be the one that names it.
    if errors.is_empty() {
        errors.extend(
            file_replica_sets
                .iter()
                .filter(|rs| !rs.used)
                .map(replica_sets::unused),
        );
    }
    if errors.is_empty() {
        Ok((documents, cluster_objects))
    } else {
        Err(fail(errors))
    }
}

/// Reads one of okra's management-cluster kinds; `None` for any other document.
fn parse_okra(value: &serde_norway::Value) -> Option<Result<OkraObject, Vec<SpecError>>> {
    use crate::okra;
    if value.get("apiVersion").and_then(|v| v.as_str()) != Some(OKRA_API_VERSION) {
        return None;
    }
    let checked = |errors: Vec<SpecError>, object: OkraObject| match errors.is_empty() {
        true => Ok(object),
        false => Err(errors),
    };
    Some(match value.get("kind").and_then(|v| v.as_str())? {
        "AWSTargetGroup" => typed::<okra::AwsTargetGroup>(value.clone())
            .and_then(|t| checked(okra::target_group_problems(&t), OkraObject::TargetGroup(t))),
        "AWSTargetGroupSet" => typed::<okra::AwsTargetGroupSet>(value.clone()).and_then(|s| {
            let problems = okra::generator_problems(s.spec.generators.len());
            checked(problems, OkraObject::TargetGroupSet(s))
        }),
        "ClusterSet" => typed::<okra::ClusterSet>(value.clone()).and_then(|s| {
            let problems = okra::generator_problems(s.spec.generators.len());
            checked(problems, OkraObject::ClusterSet(s))
        }),
        _ => return None,
    })
}

/// Reads and validates one object taken from a cluster (JSON as the API server serves it).
/// `source_name` labels the errors, usually `<resource>/<namespace>/<name>`.
///
/// `now` is when the object was applied: the object's creation time, so that a one-shot
/// schedule that was in the future when the object was created stays valid after it fired.
pub fn parse_object(
    source_name: &str,
    object: &serde_json::Value,
    now: Timestamp,
) -> Result<Document, SpecErrors> {
    parse_object_within(source_name, object, now, Limits::default())
}

/// Does what [`parse_object`] does, within `limits`.
pub fn parse_object_within(
    source_name: &str,
    object: &serde_json::Value,
    now: Timestamp,
    limits: Limits,
) -> Result<Document, SpecErrors> {
    let fail = |errors: Vec<SpecError>| SpecErrors {
        source_name: source_name.to_owned(),
        errors,
    };
    let value = serde_norway::to_value(object)
        .map_err(|e| fail(vec![SpecError::new("", format!("not a document: {e}"))]))?;
    parse_one(value, now, limits).map_err(fail)
}

fn parse_one(
    value: serde_norway::Value,
    now: Timestamp,
    limits: Limits,
) -> Result<Document, Vec<SpecError>> {
    let document = parse_kind(value, now, limits)?;
    let refused = kinds::refused_kinds(&document, limits.allowed_kinds);
    match refused.is_empty() {
        true => Ok(document),
        false => Err(refused),
    }
}

/// Reads a document of the kind its `apiVersion` and `kind` name, and validates it.
fn parse_kind(
    value: serde_norway::Value,
    now: Timestamp,
    limits: Limits,
) -> Result<Document, Vec<SpecError>> {
    let field = |name: &str| {
        value
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| vec![SpecError::new(name, "missing or not a string")])
    };
    let api_version = field("apiVersion")?;
    let kind = field("kind")?;
    match (api_version.as_str(), kind.as_str()) {
        (crate::API_VERSION, "Workflow") => {
            let workflow: Workflow = typed(value)?;
            let nodes = workflow.spec.nodes.len();
            if nodes > limits.max_nodes {
                return Err(vec![SpecError::new(
                    "spec.nodes",
                    format!(
                        "{nodes} nodes, above the limit of {} (--max-nodes, BATON_MAX_NODES)",
                        limits.max_nodes
                    ),
                )]);
            }
            validate::workflow(&workflow)?;
            Ok(Document::Workflow(workflow))
        }
        (crate::API_VERSION | ORCA_API_VERSION, "Task") => {
            let mut task: Task = typed(value)?;
            validate::task(&task)?;
            // A task's pods run in `spec.namespace`, else in the document's own namespace
            // (whether the document came from a file or from a cluster object), else in the
            // worker's default.
            if task.spec.namespace.is_none() {
                task.spec.namespace = task.metadata.namespace.clone();
            }
            Ok(Document::Task(Box::new(task)))
        }
        (crate::API_VERSION | ORCA_API_VERSION, "Ignitor") => {
            let ignitor: Ignitor = typed(value)?;
            validate::ignitor(&ignitor, now)?;
            Ok(Document::Ignitor(Box::new(ignitor)))
        }
        (crate::API_VERSION | ORKESTRA_API_VERSION, "ApplicationGroup") => {
            let group: ApplicationGroup = typed(value)?;
            crate::group::validate(&group)?;
            Ok(Document::Group(Box::new(group)))
        }
        (crate::API_VERSION | OKRA_API_VERSION, "Cell") => {
            let cell: Cell = typed(value)?;
            crate::cell::validate(&cell)?;
            Ok(Document::Cell(Box::new(cell)))
        }
        (ARGO_API_VERSION, "AnalysisTemplate" | "ClusterAnalysisTemplate") => {
            let json = serde_json::to_value(&value)
                .map_err(|e| vec![SpecError::new("", format!("unreadable: {e}"))])?;
            let template = crate::analysis::argo::read(json)?;
            validate::analysis_template(&template)?;
            Ok(Document::AnalysisTemplate(Box::new(template)))
        }
        (crate::API_VERSION, "AnalysisTemplate") => {
            let template: AnalysisTemplate = typed(value)?;
            validate::analysis_template(&template)?;
            Ok(Document::AnalysisTemplate(Box::new(template)))
        }
        (crate::API_VERSION, other) => Err(vec![SpecError::new(
            "kind",
            format!(
                "unsupported kind {other:?} for {api_version} (supported: Workflow, Task, Ignitor, ApplicationGroup, Cell, AnalysisTemplate)"
            ),
        )]),
        (OKRA_API_VERSION, other) => Err(vec![SpecError::new(
            "kind",
            format!(
                "unsupported kind {other:?} for {api_version} (supported: Cell, and in the watched cluster AWSTargetGroup, AWSTargetGroupSet, ClusterSet)"
            ),
        )]),
        (ORKESTRA_API_VERSION, other) => Err(vec![SpecError::new(
            "kind",
            format!("unsupported kind {other:?} for {api_version} (supported: ApplicationGroup)"),
        )]),
        (ORCA_API_VERSION, other) => Err(vec![SpecError::new(
            "kind",
            format!("unsupported kind {other:?} for {api_version} (supported: Task, Ignitor)"),
        )]),
        (ARGO_API_VERSION, other) => Err(vec![SpecError::new(
            "kind",
            format!(
                "unsupported kind {other:?} for {api_version} (supported: AnalysisTemplate, ClusterAnalysisTemplate)"
            ),
        )]),
        (other, _) => Err(vec![SpecError::new(
            "apiVersion",
            format!(
                "unsupported apiVersion {other:?} (supported: {}, {ORCA_API_VERSION}, {ORKESTRA_API_VERSION}, {OKRA_API_VERSION}, {ARGO_API_VERSION})",
                crate::API_VERSION
            ),
        )]),
    }
}

/// Deserializes `value` into `T`, reporting the path of the first field that does not fit.
fn typed<T: DeserializeOwned>(value: serde_norway::Value) -> Result<T, Vec<SpecError>> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        vec![SpecError::new(path, e.into_inner().to_string())]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn errors(text: &str) -> Vec<String> {
        parse_documents("wf.yaml", text, NOW)
            .unwrap_err()
            .to_string()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn parses_a_workflow() {
        let docs = parse_documents("wf.yaml", "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  nodes:\n  - {name: a, kind: noop}\n", NOW)
        .unwrap();
        assert_eq!(docs.len(), 1);
    }

    #[test]
    fn unknown_field_names_its_path() {
        let e = errors(
            "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  nodes:\n  - {name: a, kind: noop, nedds: [b]}\n",
        );
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("wf.yaml: spec.nodes[0]"), "{e:?}");
        assert!(e[0].contains("unknown field `nedds`"), "{e:?}");
    }

    #[test]
    fn bad_duration_names_its_path() {
        let e = errors(
            "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  nodes:\n  - {name: a, kind: noop, timeout: soon}\n",
        );
        assert!(
            e[0].starts_with("wf.yaml: spec.nodes[0].timeout: invalid duration"),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_kind_and_version() {
        let e = errors(
            "apiVersion: baton.dev/v1alpha1\nkind: Pipeline\nmetadata: {name: w}\nspec: {}\n",
        );
        assert!(e[0].starts_with("wf.yaml: kind: unsupported kind"), "{e:?}");
        let e = errors("apiVersion: v9\nkind: Workflow\n");
        assert!(
            e[0].starts_with("wf.yaml: apiVersion: unsupported"),
            "{e:?}"
        );
    }

    #[test]
    fn several_documents_are_numbered() {
        let e = errors(
            "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec: {nodes: [{name: a, kind: noop}]}\n---\napiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w2}\nspec: {nodes: [{name: a, kind: nope}]}\n",
        );
        assert!(
            e[0].starts_with("wf.yaml: (document 2) spec.nodes[0].kind"),
            "{e:?}"
        );
    }

    #[test]
    fn cluster_objects_parse_with_their_server_fields() {
        let object = serde_json::json!({
            "apiVersion": "sirocco.cloud/v1alpha1",
            "kind": "Ignitor",
            "metadata": {"name": "i", "namespace": "ns", "uid": "u", "resourceVersion": "7", "generation": 2,
                         "creationTimestamp": "2027-01-01T00:00:00Z", "managedFields": []},
            "spec": {"scheduled": "2027-01-15T00:00:00Z", "data": "d"},
            "status": {"lastFire": null},
        });
        let created = Timestamp(1_798_761_600_000);
        assert!(matches!(
            parse_object("ignitors/ns/i", &object, created),
            Ok(Document::Ignitor(_))
        ));
        // The same one-shot read after its time: still the document it was when applied.
        let err = parse_object("ignitors/ns/i", &object, Timestamp(1_900_000_000_000)).unwrap_err();
        assert!(
            err.to_string().starts_with("ignitors/ns/i: spec.scheduled"),
            "{err}"
        );
    }

    #[test]
    fn json_is_accepted() {
        let docs = parse_documents("wf.json", r#"{"apiVersion":"baton.dev/v1alpha1","kind":"Workflow","metadata":{"name":"w"},"spec":{"nodes":[{"name":"a","kind":"noop"}]}}"#, NOW)
        .unwrap();
        assert_eq!(docs.len(), 1);
    }
}
