//! The status users see of a group: Orkestra's conditions, every application and subchart,
//! and Baton's phase, remediation and runs.

use baton_schemas::group::{FORCE_DELETE_ANNOTATION, ReleaseTask};
use baton_schemas::helm::HelmAction;
use baton_schemas::status::State;
use baton_schemas::views::{ApplicationView, Condition, GroupRuns, GroupView, ReleaseView};
use baton_schemas::{NodeKind, RunId};

use crate::{Core, NodeState, Run};

use super::*;

impl Core {
    /// Returns what the API and a cluster object's status show of a group: Orkestra's
    /// conditions (`Ready`, `ForwardWorkflowSucceeded`, `RollbackWorkflowSucceeded`,
    /// `ReverseWorkflowSucceeded`), every application and subchart with its own `Ready`
    /// condition, and Baton's phase, remediation and runs.
    pub fn group_view(&self, entry: &GroupEntry) -> GroupView {
        let state = &entry.state;
        let generation = entry.group.metadata.generation;
        let at = entry.since.to_string();
        let condition =
            |kind: &str, status: &str, reason: &str, message: &str, at: &str| Condition {
                kind: kind.to_owned(),
                status: status.to_owned(),
                reason: reason.to_owned(),
                message: message.to_owned(),
                last_transition_time: Some(at.to_owned()),
                observed_generation: generation,
            };
        let (ready, reason, message) = match state {
            GroupState::Progressing { .. } => (
                "Unknown",
                "Progressing",
                "workflow is reconciling...".to_owned(),
            ),
            GroupState::Succeeded => (
                "True",
                "Succeeded",
                "workflow and reconciliation succeeded".to_owned(),
            ),
            GroupState::Remediating {
                remediation,
                failure,
                ..
            } => (
                "False",
                "WorkflowFailed",
                match remediation {
                    Remediation::RolledBack => format!(
                        "{failure}; rolling back to the last successful spec (revision {})",
                        entry.last_successful.as_ref().map_or(0, |s| s.revision)
                    ),
                    Remediation::Uninstalled => {
                        format!(
                            "{failure}; no spec has succeeded yet: uninstalling in reverse order"
                        )
                    }
                },
            ),
            GroupState::Failed {
                remediation,
                failure,
                outcome,
            } => (
                "False",
                "WorkflowFailed",
                match (remediation, outcome) {
                    (Remediation::RolledBack, RemediationOutcome::Succeeded) => format!(
                        "{failure}; rolled back to the last successful spec (revision {})",
                        entry.last_successful.as_ref().map_or(0, |s| s.revision)
                    ),
                    (Remediation::Uninstalled, RemediationOutcome::Succeeded) => {
                        format!("{failure}; uninstalled in reverse order")
                    }
                    (r, RemediationOutcome::Failed { error }) => {
                        let mut message = format!(
                            "{failure}; {} failed: {error}",
                            match r {
                                Remediation::RolledBack => "the rollback",
                                Remediation::Uninstalled => "the uninstall",
                            },
                        );
                        let left = entry.left_installed();
                        if !left.is_empty() {
                            message.push_str(&format!("; left installed: {}", left.join(", ")));
                        }
                        message
                    }
                },
            ),
            GroupState::Deleting { .. } => (
                "False",
                "Terminating",
                "application group is terminating...".to_owned(),
            ),
            GroupState::Deleted { left_installed } if left_installed.is_empty() => {
                ("False", "Deleted", "every release uninstalled".to_owned())
            }
            GroupState::Deleted { left_installed } if entry.force_delete => (
                "False",
                "DeleteFailed",
                format!(
                    "let go as asked (--force), leaving installed: {}",
                    left_installed.join(", ")
                ),
            ),
            GroupState::Deleted { left_installed } => (
                "False",
                "DeleteFailed",
                format!(
                    "left installed: {}; the group is held until they are gone: fix the cause and delete it again (baton delete group {name}), or let it go leaving them installed (baton delete group {name} --force, or the annotation {FORCE_DELETE_ANNOTATION}: \"true\")",
                    left_installed.join(", "),
                    name = entry.group.name(),
                ),
            ),
        };
        let mut conditions = vec![condition("Ready", ready, reason, &message, &at)];
        let run_condition = |kind: &str, run: &Option<RunId>| {
            let r = self.runs.get(run.as_ref()?)?;
            let (status, reason) = match r.phase.state() {
                State::Succeeded => ("True", "Succeeded"),
                State::Failed | State::Cancelled | State::Skipped => ("False", "Failed"),
                State::Pending | State::Running => ("Unknown", "Progressing"),
            };
            let message = match r.phase.state() {
                State::Succeeded => format!("run {} succeeded", r.id),
                State::Pending | State::Running => format!("run {} is under way", r.id),
                _ => format!("run {}: {}", r.id, describe_failure(r)),
            };
            let at = r.finished_at.unwrap_or(r.created_at).to_string();
            Some(condition(kind, status, reason, &message, &at))
        };
        conditions.extend(run_condition(
            "ForwardWorkflowSucceeded",
            &entry.forward_run,
        ));
        let remediation = match state {
            GroupState::Remediating { remediation, .. }
            | GroupState::Failed { remediation, .. } => Some(*remediation),
            _ => None,
        };
        match remediation {
            Some(Remediation::RolledBack) => conditions.extend(run_condition(
                "RollbackWorkflowSucceeded",
                &entry.remediation_run,
            )),
            Some(Remediation::Uninstalled) => conditions.extend(run_condition(
                "ReverseWorkflowSucceeded",
                &entry.remediation_run,
            )),
            None => {}
        }
        if matches!(
            state,
            GroupState::Deleting { .. } | GroupState::Deleted { .. }
        ) {
            conditions.extend(run_condition("ReverseWorkflowSucceeded", &entry.delete_run));
        }
        let left_installed = match state {
            GroupState::Deleted { left_installed } => left_installed.clone(),
            _ => entry.left_installed(),
        };
        GroupView {
            name: entry.group.name().to_owned(),
            api_version: entry.group.api_version.clone(),
            phase: state.phase().to_owned(),
            revision: entry.revision,
            observed_generation: generation,
            last_succeeded_revision: entry.last_successful.as_ref().map(|s| s.revision),
            last_succeeded_generation: entry.last_successful.as_ref().and_then(|s| s.generation),
            remediation: remediation.map(|r| r.as_str().to_owned()),
            run: state.running().cloned().or_else(|| {
                [
                    &entry.delete_run,
                    &entry.remediation_run,
                    &entry.forward_run,
                ]
                .into_iter()
                .find_map(|r| r.clone())
            }),
            runs: GroupRuns {
                forward: entry.forward_run.clone(),
                remediation: entry.remediation_run.clone(),
                delete: entry.delete_run.clone(),
            },
            pending: entry.pending.as_ref().map(|p| {
                match p {
                    Pending::Apply { .. } => "apply",
                    Pending::Delete => "delete",
                }
                .to_owned()
            }),
            settled: state.running().is_none() && entry.pending.is_none(),
            left_installed,
            released: entry.released(),
            conditions,
            applications: self.applications_view(entry),
        }
    }

    /// Returns every application of the applied spec, with its subcharts, as the latest run
    /// that touched it left it.
    fn applications_view(&self, entry: &GroupEntry) -> Vec<ApplicationView> {
        let name = entry.group.name();
        let tasks = entry.group.spec.tasks(name);
        let runs: Vec<(&Run, Purpose)> = [
            (&entry.delete_run, Purpose::Delete),
            (
                &entry.remediation_run,
                match &entry.state {
                    GroupState::Remediating {
                        remediation: Remediation::Uninstalled,
                        ..
                    }
                    | GroupState::Failed {
                        remediation: Remediation::Uninstalled,
                        ..
                    } => Purpose::Uninstall,
                    _ => Purpose::Rollback,
                },
            ),
            (&entry.forward_run, Purpose::Forward),
        ]
        .into_iter()
        .filter_map(|(id, purpose)| Some((self.runs.get(id.as_ref()?)?, purpose)))
        .collect();
        let mut apps = Vec::new();
        for app in &entry.group.spec.applications {
            let mut view = ApplicationView {
                name: app.name.clone(),
                release: None,
                subcharts: Default::default(),
            };
            for task in tasks.iter().filter(|t| t.app == app.name) {
                let status = task_view(task, &runs);
                match &task.subchart {
                    Some(sub) => {
                        view.subcharts.insert(sub.clone(), status);
                    }
                    None => view.release = Some(status),
                }
            }
            apps.push(view);
        }
        apps
    }
}

/// Returns a task's status from the first run (delete, remediation, forward) holding nodes
/// of it: its `Ready` condition, version, release and error.
fn task_view(task: &ReleaseTask, runs: &[(&Run, Purpose)]) -> ReleaseView {
    let mut bases = vec![task.name.clone()];
    bases.extend(
        task.executors
            .iter()
            .map(|e| format!("{}-{}", task.name, e.name)),
    );
    let mut view = ReleaseView {
        release: task.helm.release.clone(),
        namespace: task.helm.namespace.clone(),
        version: None,
        error: None,
        conditions: Vec::new(),
    };
    let ready = |status: &str, reason: &str, message: String, at: Option<String>| Condition {
        kind: "Ready".to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time: at,
        observed_generation: None,
    };
    for (run, purpose) in runs {
        let nodes: Vec<usize> = run
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                let name = n.name.as_str();
                bases
                    .iter()
                    .any(|b| name == b || name.strip_prefix("uninstall-") == Some(b.as_str()))
            })
            .map(|(i, _)| i)
            .collect();
        if nodes.is_empty() {
            continue;
        }
        let states: Vec<NodeState> = nodes.iter().map(|&i| run.nodes[i].state).collect();
        let helm = nodes.iter().find_map(|&i| {
            run.spec.nodes[i]
                .helm
                .as_ref()
                .filter(|_| run.spec.nodes[i].kind == NodeKind::Helm)
        });
        let removed = helm.is_some_and(|h| h.action == HelmAction::Uninstall);
        let error = nodes.iter().find_map(|&i| {
            let n = &run.nodes[i];
            matches!(
                n.state,
                NodeState::Failed | NodeState::Skipped | NodeState::Cancelled
            )
            .then(|| n.error.clone())
            .flatten()
        });
        let (status, reason, message) = if states.contains(&NodeState::Failed) {
            ("False", "Failed", error.clone().unwrap_or_default())
        } else if states
            .iter()
            .any(|s| s.in_flight().is_some() || matches!(s, NodeState::RetryWait { .. }))
        {
            ("Unknown", "Progressing", format!("run {}", run.id))
        } else if states.contains(&NodeState::Pending) {
            (
                "Unknown",
                "Pending",
                format!("run {}: waiting for what it depends on", run.id),
            )
        } else if states.iter().all(|s| *s == NodeState::Succeeded) {
            match (removed, purpose) {
                (true, _) => (
                    "False",
                    "Uninstalled",
                    format!("uninstalled by run {}", run.id),
                ),
                (false, Purpose::Rollback) => (
                    "True",
                    "RolledBack",
                    format!("applied the last successful spec again (run {})", run.id),
                ),
                (false, _) => ("True", "Succeeded", format!("released by run {}", run.id)),
            }
        } else {
            ("False", "NotStarted", error.clone().unwrap_or_default())
        };
        if let Some(version) = helm
            .filter(|h| h.action == HelmAction::Apply)
            .and_then(|h| h.chart.as_ref()?.version.clone())
        {
            view.version = Some(version);
        }
        if reason == "Failed" {
            view.error = Some(error.unwrap_or_default());
        }
        let at = nodes
            .iter()
            .filter_map(|&i| run.nodes[i].finished_at.or(run.nodes[i].started_at))
            .max()
            .unwrap_or(run.created_at);
        view.conditions = vec![ready(status, reason, message, Some(at.to_string()))];
        return view;
    }
    view.conditions = vec![ready(
        "Unknown",
        "Pending",
        "not released yet".to_owned(),
        None,
    )];
    view
}

/// Says why a run failed: its first failed node and that node's error.
pub(crate) fn describe_failure(run: &Run) -> String {
    let failed = run
        .nodes
        .iter()
        .filter(|n| n.state == NodeState::Failed)
        .min_by_key(|n| n.finish_order);
    match failed {
        Some(n) => format!(
            "{} failed: {}",
            n.name,
            n.error.as_deref().unwrap_or("no error given")
        ),
        None if run.phase.state() == State::Cancelled => "the run was cancelled".to_owned(),
        None => "the run failed".to_owned(),
    }
}
