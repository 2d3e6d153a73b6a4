//! What a worker runs for a Cell's experiment step: the planner resolves the step (its
//! analyses' templates and arguments, its names and labels) into an [`Experiment`] carried by
//! an analysis job, so that the worker needs nothing but the job and the cluster.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Metric;
use crate::Duration;

/// The label every ReplicaSet of an experiment, and its pods, carry: which ReplicaSet they
/// belong to, so that no two ReplicaSets (the experiment's and the one it copies) select the
/// same pods.
pub const EXPERIMENT_LABEL: &str = "baton.dev/experiment";

/// An experiment as a job carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Experiment {
    /// Its name, `<cell>-<step>-experiment` as okra names it.
    pub name: String,
    /// How long the ReplicaSets run once available; `None`: until the required analyses end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    /// How long the ReplicaSets may take to become available.
    pub progress_deadline: Duration,
    /// The ReplicaSets.
    pub replica_sets: Vec<ExperimentReplicaSet>,
    /// The analyses, their templates resolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analyses: Vec<ExperimentAnalysis>,
    /// Labels for every ReplicaSet and pod (the Cell and the run).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A ReplicaSet of an experiment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExperimentReplicaSet {
    /// The ReplicaSet's name: `<experiment>-<template>`.
    pub name: String,
    /// The ReplicaSet whose pod template it runs.
    pub spec_ref: String,
    /// How many pods.
    pub replicas: u32,
    /// That ReplicaSet, when the Cell carries it; else the worker reads `spec_ref`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_set: Option<serde_json::Value>,
}

/// An analysis of an experiment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExperimentAnalysis {
    /// Its name in the experiment.
    pub name: String,
    /// Its metrics, arguments filled in.
    pub metrics: Vec<Metric>,
    /// Whether the experiment waits for it to end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
}

/// Returns `text` as a label value: itself when it fits 63 characters, else its first 54
/// followed by a hash of the whole, so that long names stay distinct.
pub fn label_value(text: &str) -> String {
    if text.len() <= 63 {
        return text.to_owned();
    }
    // FNV-1a: stable across builds and machines, unlike the standard library's hasher.
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let cut: String = text.chars().take(54).collect();
    format!(
        "{}-{:08x}",
        cut.trim_end_matches(['-', '.', '_']),
        hash as u32
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_become_distinct_label_values() {
        assert_eq!(label_value("web-3-experiment-wy"), "web-3-experiment-wy");
        let long = "a".repeat(70);
        let other = format!("{}b", "a".repeat(69));
        assert!(label_value(&long).len() <= 63);
        assert_ne!(label_value(&long), label_value(&other));
        assert_eq!(label_value(&long), label_value(&long));
    }
}
