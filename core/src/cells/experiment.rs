//! A Cell's experiment step, planned: its analyses resolved against the templates and the
//! Cell's fields, its ReplicaSets named as okra named Argo's (`<cell>-<step>-experiment-<t>`),
//! into one analysis job that a worker runs whole (it makes the ReplicaSets, waits for them,
//! measures, and removes them, pass or fail). A failed experiment rolls back and blocks the
//! version, as a failed analysis step does.

use std::collections::BTreeMap;
use std::time::Duration;

use baton_schemas::analysis::experiment::{
    EXPERIMENT_LABEL, Experiment, ExperimentAnalysis, ExperimentReplicaSet, label_value,
};
use baton_schemas::analysis::{self, AnalysisSpec, AnalysisTemplateSpec};
use baton_schemas::cell::{Cell, DEFAULT_PROGRESS_DEADLINE_SECONDS, ExperimentStep};
use baton_schemas::wire::Timestamp;
use baton_schemas::workflow::NodeSpec;
use baton_schemas::{NodeKind, RunId};

use crate::chains::unique_name;
use crate::{NodeState, Run};

use super::plan::{measuring_time, push};

/// Resolves experiment step `step` of `cell` into the analysis a job carries, or says why
/// it cannot run.
pub(crate) fn plan(
    cell: &Cell,
    run: &RunId,
    step: u32,
    spec: &ExperimentStep,
    find: impl Fn(&str) -> Option<AnalysisTemplateSpec>,
    fields: &BTreeMap<String, String>,
) -> Result<AnalysisSpec, String> {
    // Its ReplicaSets run in the Cell's namespace; never in the worker's own, where Baton's
    // credentials are.
    let Some(namespace) = cell.metadata.namespace.clone() else {
        return Err(
            "an experiment runs its ReplicaSets in the Cell's namespace: give the Cell metadata.namespace".to_owned(),
        );
    };
    // Named after the rollout's run (`<cell>-<n>`): a rollout that replaces another never
    // meets the ReplicaSets the other is removing.
    let name = format!("{run}-{step}-experiment");
    let mut analyses = Vec::new();
    for a in &spec.analyses {
        let metrics = analysis::resolve(&a.spec(), &find, fields)
            .map_err(|e| format!("analysis {}: {e}", a.name))?;
        // Without a duration the experiment ends with its required analyses, which must end;
        // others are stopped when the duration is over.
        if (a.required() || spec.duration.is_none())
            && let Some(problem) = analysis::unbounded_problem(&metrics)
        {
            return Err(format!("analysis {}: {problem}", a.name));
        }
        analyses.push(ExperimentAnalysis {
            name: a.name.clone(),
            metrics,
            required: a.required(),
        });
    }
    let replica_sets = spec
        .templates
        .iter()
        .map(|t| ExperimentReplicaSet {
            name: format!("{name}-{}", t.name),
            spec_ref: t.spec_ref.clone(),
            replicas: t.replicas(),
            replica_set: t.replica_set.clone(),
        })
        .collect();
    let labels = BTreeMap::from([
        (
            "baton.dev/cell".to_owned(),
            label_value(&cell.metadata.name),
        ),
        ("baton.dev/run".to_owned(), label_value(run.as_str())),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "baton".to_owned(),
        ),
    ]);
    debug_assert!(!labels.contains_key(EXPERIMENT_LABEL));
    let deadline = spec
        .progress_deadline_seconds
        .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS);
    Ok(AnalysisSpec {
        // The ReplicaSets run, and Secrets are read, in the Cell's namespace.
        namespace: Some(namespace),
        experiment: Some(Box::new(Experiment {
            name,
            duration: spec
                .duration
                .as_ref()
                .map(|d| baton_schemas::Duration(d.get().unwrap_or_default())),
            progress_deadline: baton_schemas::Duration::from_secs(u64::from(deadline)),
            replica_sets,
            analyses,
            labels,
        })),
        ..AnalysisSpec::default()
    })
}

/// Pushes the analysis node that runs `spec`'s experiment. Its timeout covers the wait for
/// the ReplicaSets, the duration or the required analyses (whichever is longer), and the
/// removal after.
pub(crate) fn push_experiment(r: &mut Run, label: &str, spec: AnalysisSpec) -> u32 {
    let experiment = spec.experiment.as_deref().expect("planned experiments");
    let required = experiment
        .analyses
        .iter()
        .filter(|a| a.required || experiment.duration.is_none())
        .map(|a| measuring_time(&a.metrics))
        .max()
        .unwrap_or_default();
    let running = experiment
        .duration
        .map(|d| d.0)
        .unwrap_or_default()
        .max(required);
    let timeout = experiment
        .progress_deadline
        .0
        .saturating_add(running)
        .saturating_add(Duration::from_secs(120));
    let mut node = NodeSpec::new(unique_name(r, label), NodeKind::Analysis);
    node.analysis = Some(Box::new(spec));
    node.timeout = Some(baton_schemas::Duration(timeout));
    push(r, node, NodeState::Pending, Timestamp(0))
}
