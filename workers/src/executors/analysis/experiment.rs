//! The experiment part of the `analysis` executor: a Cell's experiment step, run whole.
//!
//! 1. Each template's ReplicaSet is made (server-side apply, so a job delivered again after
//!    its worker died adopts what the first delivery made) in the Cell's namespace, from the
//!    ReplicaSet the job carries or the one `specRef` names there. It keeps that ReplicaSet's
//!    pod template and selector, both marked with its own [`EXPERIMENT_LABEL`], so that it
//!    owns only its own pods. An object of its name that is not this experiment's is left
//!    alone and fails the step.
//! 2. It waits until every ReplicaSet has its replicas available, within the progress
//!    deadline; one that does not fails the experiment, as Argo Rollouts' did. One that stays
//!    unavailable that long later on fails it too.
//! 3. The analyses run while the ReplicaSets do. A failed (or inconclusive) analysis ends the
//!    experiment at once with its phase; otherwise it succeeds once the duration is over and
//!    every `requiredForCompletion` analysis has ended. Analyses still running then stop.
//! 4. Pass, fail or stop, every ReplicaSet made is scaled to zero and deleted (the object
//!    made, by its uid).
//!
//! A worker that stops hands the job back after removing the ReplicaSets; one killed leaves
//! them, and the delivery again adopts them. Either way the duration starts over.

use std::time::Duration;

use baton_schemas::analysis::experiment::{
    EXPERIMENT_LABEL, Experiment, ExperimentReplicaSet, label_value,
};
use baton_schemas::reports::{AnalysisPhase as Phase, MetricReport};
use baton_schemas::wire::{FailureKind, Outcome};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Effect, Providers, measure_metric, outcome, report};

/// The field manager of the ReplicaSets an experiment makes.
const FIELD_MANAGER: &str = "baton-experiment";
/// How long the removal of the ReplicaSets may take, stop or not.
const REMOVAL_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the ReplicaSets' availability is read.
const POLL: Duration = Duration::from_secs(1);

/// How an experiment ended, before its ReplicaSets are removed.
enum Ended {
    /// The analyses' verdict, with their reports.
    Verdict(Phase, Vec<MetricReport>),
    /// It could not be run or judged: its phase and why.
    Problem(Phase, String),
    /// The stop token fired.
    Stopped,
}

/// Runs `experiment` in `namespace` (the worker's own when `None`) to its verdict.
pub(super) async fn run(
    providers: &Providers,
    namespace: Option<&str>,
    experiment: &Experiment,
    stop: &CancellationToken,
    metrics: &crate::WorkerMetrics,
    timeout: Option<Duration>,
) -> Effect {
    let Some(kube) = providers.kube().await else {
        return Effect::Done(problem(
            experiment,
            Phase::Inconclusive,
            "this worker has no Kubernetes client (KUBECONFIG or the in-cluster config) to run ReplicaSets with".to_owned(),
        ));
    };
    let namespace = namespace.unwrap_or(kube.default_namespace()).to_owned();
    let api: Api<ReplicaSet> = Api::namespaced(kube.clone(), &namespace);
    let mut made = Vec::new();
    let ended = tokio::select! {
        ended = run_until_judged(providers, &api, &namespace, experiment, &mut made, stop, metrics) => ended,
        // Not a verdict on the version: something it waited on (a provider, the API server)
        // was slow.
        _ = super::super::timed_out(timeout) => Ended::Problem(
            Phase::Inconclusive,
            "timed out before the experiment ended".to_owned(),
        ),
    };
    let left = remove(&api, &made).await;
    for (name, e) in &left {
        warn!(replica_set = %name, namespace, error = %e, "an experiment's ReplicaSet was not removed");
    }
    let left = match left.is_empty() {
        true => String::new(),
        false => format!(
            "; not removed: {}",
            left.iter()
                .map(|(name, e)| format!("{name} ({e})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Effect::Done(match ended {
        Ended::Stopped => return Effect::Stopped,
        Ended::Verdict(phase, reports) => match outcome(phase, &reports) {
            Outcome::Failed {
                error,
                output,
                kind,
            } => Outcome::Failed {
                error: format!("experiment {}: {error}{left}", experiment.name),
                output,
                kind,
            },
            succeeded => succeeded,
        },
        Ended::Problem(phase, why) => problem(experiment, phase, format!("{why}{left}")),
    })
}

fn problem(experiment: &Experiment, phase: Phase, why: String) -> Outcome {
    Outcome::Failed {
        error: format!("experiment {}: {why}", experiment.name),
        output: Some(report(phase, &[])),
        kind: FailureKind::Retryable,
    }
}

/// Makes the ReplicaSets (their names go to `made` as they are applied), waits for them and
/// judges the analyses.
async fn run_until_judged(
    providers: &Providers,
    api: &Api<ReplicaSet>,
    namespace: &str,
    experiment: &Experiment,
    made: &mut Vec<(String, String)>,
    stop: &CancellationToken,
    metrics: &crate::WorkerMetrics,
) -> Ended {
    sweep(api, experiment).await;
    for rs in &experiment.replica_sets {
        let source = match &rs.replica_set {
            Some(carried) => carried.clone(),
            None => match api.get_opt(&rs.spec_ref).await {
                Ok(Some(found)) => serde_json::to_value(found).unwrap_or_default(),
                Ok(None) => {
                    return Ended::Problem(
                        Phase::Inconclusive,
                        format!(
                            "ReplicaSet {:?} (specRef) is not in namespace {namespace}",
                            rs.spec_ref
                        ),
                    );
                }
                Err(e) => {
                    return Ended::Problem(
                        Phase::Inconclusive,
                        format!("reading ReplicaSet {:?}: {e}", rs.spec_ref),
                    );
                }
            },
        };
        let manifest = match manifest(&source, rs, experiment) {
            Ok(manifest) => manifest,
            Err(e) => return Ended::Problem(Phase::Inconclusive, e),
        };
        // Only this experiment's own object is adopted (a delivery again after a worker died).
        let mark = label_value(&rs.name);
        match api.get_opt(&rs.name).await {
            Ok(Some(found)) if found.labels().get(EXPERIMENT_LABEL) != Some(&mark) => {
                return Ended::Problem(
                    Phase::Inconclusive,
                    format!(
                        "a ReplicaSet {} is in namespace {namespace} and is not this experiment's: it is left alone",
                        rs.name
                    ),
                );
            }
            Ok(_) => {}
            Err(e) => {
                return Ended::Problem(
                    Phase::Inconclusive,
                    format!("reading ReplicaSet {}: {e}", rs.name),
                );
            }
        }
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match api.patch(&rs.name, &params, &Patch::Apply(&manifest)).await {
            Ok(applied) => made.push((rs.name.clone(), applied.uid().unwrap_or_default())),
            Err(e) => {
                return Ended::Problem(
                    Phase::Inconclusive,
                    format!("making ReplicaSet {}: {e}", rs.name),
                );
            }
        }
        info!(replica_set = %rs.name, namespace, replicas = rs.replicas, "experiment ReplicaSet made");
    }
    let deadline = experiment.progress_deadline.0;
    tokio::select! {
        _ = stop.cancelled() => return Ended::Stopped,
        _ = tokio::time::sleep(deadline) => {
            let waiting = unavailable(api, experiment).await.join(", ");
            return Ended::Problem(
                Phase::Failed,
                format!("not available within the progress deadline of {}s: {waiting}", deadline.as_secs()),
            );
        }
        () = wait_available(api, experiment) => {}
    }
    tokio::select! {
        ended = judge(providers, namespace, experiment, stop, metrics) => ended,
        why = stays_available(api, experiment) => Ended::Problem(Phase::Failed, why),
    }
}

/// Returns, with why, once a ReplicaSet has been short of available pods for the progress
/// deadline after it was first available.
async fn stays_available(api: &Api<ReplicaSet>, experiment: &Experiment) -> String {
    let mut short_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::time::sleep(POLL).await;
        let waiting = unavailable(api, experiment).await;
        if waiting.is_empty() {
            short_since = None;
            continue;
        }
        let since = *short_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() >= experiment.progress_deadline.0 {
            return format!(
                "unavailable for the progress deadline of {}s: {}",
                experiment.progress_deadline.0.as_secs(),
                waiting.join(", ")
            );
        }
    }
}

/// Removes the experiment ReplicaSets of the Cell that earlier rollouts left (their worker
/// was killed while the rollout ended, so no one removed them). Only runs numbered below
/// this one's: a job of a rollout that is over never removes a newer rollout's. Best effort:
/// what cannot be listed or removed is logged and left for the next experiment.
async fn sweep(api: &Api<ReplicaSet>, experiment: &Experiment) {
    let (Some(cell), Some(run)) = (
        experiment.labels.get("baton.dev/cell"),
        experiment.labels.get("baton.dev/run"),
    ) else {
        return;
    };
    let Some((prefix, ours)) = run_number(run) else {
        return;
    };
    let selector = format!("baton.dev/cell={cell},app.kubernetes.io/managed-by=baton");
    let listed = match api.list(&ListParams::default().labels(&selector)).await {
        Ok(listed) => listed,
        Err(e) => {
            warn!(error = %e, "listing the Cell's earlier experiment ReplicaSets");
            return;
        }
    };
    let stale: Vec<(String, String)> = listed
        .into_iter()
        .filter(|rs| {
            rs.labels()
                .get("baton.dev/run")
                .and_then(|r| run_number(r))
                .is_some_and(|(p, theirs)| p == prefix && theirs < ours)
        })
        .map(|rs| (rs.name_any(), rs.uid().unwrap_or_default()))
        .collect();
    for (name, _) in &stale {
        info!(replica_set = %name, "an earlier rollout's experiment ReplicaSet is removed");
    }
    for (name, why) in remove(api, &stale).await {
        warn!(replica_set = %name, error = %why, "an earlier rollout's experiment ReplicaSet was not removed");
    }
}

/// A Cell's run id (`<cell>-<n>`) as its prefix and number.
fn run_number(run: &str) -> Option<(&str, u64)> {
    let (prefix, number) = run.rsplit_once('-')?;
    Some((prefix, number.parse().ok()?))
}

/// The ReplicaSet an experiment runs: `source`'s pod template and selector, both marked as
/// this ReplicaSet's, `rs.replicas` pods, the experiment's labels.
fn manifest(
    source: &Value,
    rs: &ExperimentReplicaSet,
    experiment: &Experiment,
) -> Result<Value, String> {
    let unusable = |what: &str| format!("ReplicaSet {:?}: {what}", rs.spec_ref);
    let Some(mut template) = source
        .pointer("/spec/template")
        .filter(|t| t.is_object())
        .cloned()
    else {
        return Err(unusable("it has no pod template (spec.template)"));
    };
    let mark = label_value(&rs.name);
    let mut selector = source
        .pointer("/spec/selector")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if !selector.is_object() || selector.get("matchLabels").is_some_and(|m| !m.is_object()) {
        return Err(unusable("its spec.selector is not a label selector"));
    }
    if template.get("metadata").is_some_and(|m| !m.is_object())
        || template
            .pointer("/metadata/labels")
            .is_some_and(|l| !l.is_object())
    {
        return Err(unusable("its spec.template.metadata.labels is not a map"));
    }
    if !selector["matchLabels"].is_object() {
        selector["matchLabels"] = json!({});
    }
    selector["matchLabels"][EXPERIMENT_LABEL] = json!(mark);
    if !template["metadata"].is_object() {
        template["metadata"] = json!({});
    }
    if let Some(meta) = template["metadata"].as_object_mut() {
        meta.remove("creationTimestamp");
    }
    if !template["metadata"]["labels"].is_object() {
        template["metadata"]["labels"] = json!({});
    }
    let mut labels = json!(experiment.labels);
    labels[EXPERIMENT_LABEL] = json!(mark);
    for (key, value) in labels.as_object().into_iter().flatten() {
        template["metadata"]["labels"][key] = value.clone();
    }
    let mut spec = json!({
        "replicas": rs.replicas,
        "selector": selector,
        "template": template,
    });
    if let Some(ready) = source.pointer("/spec/minReadySeconds") {
        spec["minReadySeconds"] = ready.clone();
    }
    Ok(json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": rs.name,
            "labels": labels,
            "annotations": {"baton.dev/experiment-of": rs.spec_ref},
        },
        "spec": spec,
    }))
}

/// Returns once every ReplicaSet has its replicas available (reads that fail are read again).
async fn wait_available(api: &Api<ReplicaSet>, experiment: &Experiment) {
    while !unavailable(api, experiment).await.is_empty() {
        tokio::time::sleep(POLL).await;
    }
}

/// The ReplicaSets without all their replicas available, each with how many are.
async fn unavailable(api: &Api<ReplicaSet>, experiment: &Experiment) -> Vec<String> {
    let mut waiting = Vec::new();
    for rs in &experiment.replica_sets {
        let available = match api.get(&rs.name).await {
            Ok(found) => found
                .status
                .and_then(|s| s.available_replicas)
                .unwrap_or(0)
                .max(0) as u32,
            Err(e) => {
                waiting.push(format!("{} (unreadable: {e})", rs.name));
                continue;
            }
        };
        if available < rs.replicas {
            waiting.push(format!("{} {available}/{} available", rs.name, rs.replicas));
        }
    }
    waiting
}

/// Runs the analyses beside the ReplicaSets until the experiment's verdict.
async fn judge(
    providers: &Providers,
    namespace: &str,
    experiment: &Experiment,
    stop: &CancellationToken,
    metrics: &crate::WorkerMetrics,
) -> Ended {
    let mut running: FuturesUnordered<_> = experiment
        .analyses
        .iter()
        .map(|a| async move {
            let measured = futures::future::join_all(
                a.metrics
                    .iter()
                    .map(|m| measure_metric(providers, Some(namespace), m, stop, metrics)),
            )
            .await;
            (a, measured.into_iter().collect::<Option<Vec<_>>>())
        })
        .collect();
    let mut required = experiment.analyses.iter().filter(|a| a.required).count();
    let timer = async {
        match experiment.duration {
            Some(d) => tokio::time::sleep(d.0).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timer);
    let mut over = experiment.duration.is_none();
    let mut reports = Vec::new();
    while !(over && required == 0) {
        tokio::select! {
            _ = stop.cancelled() => return Ended::Stopped,
            _ = &mut timer, if !over => over = true,
            Some((analysis, measured)) = running.next() => {
                let Some(measured) = measured else {
                    return Ended::Stopped;
                };
                if analysis.required {
                    required -= 1;
                }
                let phase = measured.iter().map(|r| r.phase).max().unwrap_or(Phase::Successful);
                reports.extend(measured.into_iter().map(|r| MetricReport {
                    name: format!("{}/{}", analysis.name, r.name),
                    ..r
                }));
                // A verdict that is not a pass ends the experiment at once.
                if phase != Phase::Successful {
                    return Ended::Verdict(phase, reports);
                }
            }
        }
    }
    Ended::Verdict(Phase::Successful, reports)
}

/// Scales each ReplicaSet `made` (name, uid) to zero and deletes it, all at once within
/// [`REMOVAL_TIMEOUT`]; returns those it could not remove, with why.
async fn remove(api: &Api<ReplicaSet>, made: &[(String, String)]) -> Vec<(String, String)> {
    let removals = made.iter().map(|(name, uid)| async move {
        // Only the object made: one deleted and made again by someone else is not touched.
        let zero = Patch::Merge(json!({
            "metadata": {"uid": uid},
            "spec": {"replicas": 0},
        }));
        let delete = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        let scaled_and_deleted = async {
            ignore_gone(
                api.patch(name, &PatchParams::default(), &zero)
                    .await
                    .map(drop),
            )?;
            ignore_gone(api.delete(name, &delete).await.map(drop))
        };
        let why = match tokio::time::timeout(REMOVAL_TIMEOUT, scaled_and_deleted).await {
            Ok(Ok(())) => {
                info!(replica_set = %name, "experiment ReplicaSet removed");
                return None;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        Some((name.clone(), why))
    });
    futures::future::join_all(removals)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// A ReplicaSet already gone is removed.
fn ignore_gone(result: kube::Result<()>) -> kube::Result<()> {
    match result {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::run_number;

    #[test]
    fn a_cells_runs_are_ordered_by_their_number() {
        assert_eq!(run_number("web-12"), Some(("web", 12)));
        assert_eq!(run_number("my-cell-3"), Some(("my-cell", 3)));
        assert_eq!(run_number("web"), None);
        assert_eq!(run_number("web-x"), None);
    }
}
