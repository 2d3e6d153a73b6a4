//! ReplicaSets in a file of documents: Baton reads an `apps/v1` ReplicaSet only as the
//! template of a Cell's experiment step in the same file (`specRef`), and carries it with
//! that Cell, so that `baton apply` needs no cluster to hold it. One that no Cell names is
//! refused: it belongs to a cluster, where `kubectl apply` puts it.

use crate::cell::{Cell, replica_set_problems};

use super::SpecError;

/// A ReplicaSet document of a file, by its place in the file.
pub(super) struct FileReplicaSet {
    /// Where it is, as errors name it (`(document 3) `, or empty for a lone document).
    pub prefix: String,
    /// The document.
    pub value: serde_json::Value,
    /// Whether a Cell took it.
    pub used: bool,
}

/// Whether `value` is an `apps/v1` ReplicaSet.
pub(super) fn is_replica_set(value: &serde_norway::Value) -> bool {
    let text = |field: &str| value.get(field).and_then(|v| v.as_str());
    text("apiVersion") == Some("apps/v1") && text("kind") == Some("ReplicaSet")
}

/// Reads a ReplicaSet document as JSON, checked as an experiment's template.
pub(super) fn read(
    prefix: String,
    value: serde_norway::Value,
) -> Result<FileReplicaSet, Vec<SpecError>> {
    let value = serde_json::to_value(&value)
        .map_err(|e| vec![SpecError::new("", format!("unreadable: {e}"))])?;
    let problems = replica_set_problems("", &value);
    if !problems.is_empty() {
        return Err(problems
            .into_iter()
            .map(|e| SpecError::new(e.path.trim_start_matches('.'), e.message))
            .collect());
    }
    Ok(FileReplicaSet {
        prefix,
        value,
        used: false,
    })
}

/// Gives each experiment template of `cell` that carries no ReplicaSet the one of `file`
/// its `specRef` names, in the Cell's namespace.
pub(super) fn attach(cell: &mut Cell, file: &mut [FileReplicaSet]) {
    let namespace = cell.metadata.namespace.clone();
    let Some(canary) = cell.spec.update_strategy.canary.as_mut() else {
        return;
    };
    for step in &mut canary.steps {
        let Some(experiment) = step.experiment.as_mut() else {
            continue;
        };
        for template in &mut experiment.templates {
            if template.replica_set.is_some() {
                continue;
            }
            let found = file.iter_mut().find(|rs| {
                let meta = &rs.value["metadata"];
                let same_namespace = match (meta["namespace"].as_str(), namespace.as_deref()) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                };
                meta["name"].as_str() == Some(template.spec_ref.as_str()) && same_namespace
            });
            if let Some(rs) = found {
                rs.used = true;
                template.replica_set = Some(rs.value.clone());
            }
        }
    }
}

/// The error for a ReplicaSet no Cell of the file names.
pub(super) fn unused(rs: &FileReplicaSet) -> SpecError {
    let name = rs.value["metadata"]["name"].as_str().unwrap_or_default();
    SpecError::new(
        format!("{}kind", rs.prefix),
        format!(
            "ReplicaSet/{name}: Baton reads a ReplicaSet only as the template of a Cell's experiment step in the same file (specRef), and no Cell here names it; apply it to a cluster with kubectl"
        ),
    )
}
