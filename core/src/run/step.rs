//! One node's step through its run: whether it may start, its dispatch as a job, how it
//! ends, and how a failed attempt is retried or given up.

use crate::*;
use baton_schemas::wire::{ExecJob, Job, JobInputs, PodJob, SCHEMA_VERSION, Timestamp, Work};
use baton_schemas::{Attempt, NodeKind, When};

/// Returns the nodes that node `i` needs, in the order its spec lists them.
pub(crate) fn needs_of(r: &Run, i: usize) -> Vec<&Node> {
    if r.graph.built_for == r.nodes.len() {
        return r.graph.needs[i]
            .iter()
            .map(|&j| &r.nodes[j as usize])
            .collect();
    }
    r.spec.nodes[i]
        .needs
        .iter()
        .filter_map(|n| r.index(n))
        .map(|j| &r.nodes[j])
        .collect()
}

pub(crate) enum Readiness {
    Wait,
    Ready,
    Skip(String),
}

/// Decides whether pending node `i` can start, must wait, or can never run, from the counts
/// of its needs (the graph is current: the readiness pass made sure).
pub(crate) fn readiness(r: &Run, i: usize) -> Readiness {
    if r.nodes[i].started_by.is_some() {
        return Readiness::Ready;
    }
    let g = &r.graph;
    let (open, failed, unsuccessful) = (g.open[i], g.failed[i], g.unsuccessful[i]);
    match r.spec.nodes[i].when {
        When::Success if unsuccessful > 0 => {
            let n = needs_of(r, i)
                .into_iter()
                .find(|n| n.state.is_terminal() && n.state != NodeState::Succeeded)
                .expect("counted");
            Readiness::Skip(format!(
                "not started: need {:?} ended {}",
                n.name.as_str(),
                n.state.shown()
            ))
        }
        When::Success if open == 0 => Readiness::Ready,
        When::Success => Readiness::Wait,
        When::Failure if open > 0 => Readiness::Wait,
        When::Failure if failed > 0 => Readiness::Ready,
        When::Failure => Readiness::Skip("not started: no need failed".to_owned()),
        When::Always if open == 0 => Readiness::Ready,
        When::Always => Readiness::Wait,
    }
}

/// Ends node `i` in a final `state`, and counts it for the nodes that need it.
pub(crate) fn finish(r: &mut Run, i: usize, state: NodeState, now: Timestamp) {
    r.finished_count += 1;
    let order = r.finished_count;
    let n = r.node_mut(i);
    n.state = state;
    n.finished_at = Some(now);
    n.finish_order = Some(order);
    // A graph built before this node existed is rebuilt from the states anyway.
    if r.graph.built_for != r.nodes.len() {
        return;
    }
    let g = &mut r.graph;
    match state {
        NodeState::Failed => {
            g.failed_nodes += 1;
            g.first_failed.get_or_insert(i as u32);
        }
        NodeState::Cancelled => g.cancelled_nodes += 1,
        _ => {}
    }
    for k in 0..g.dependents[i].len() {
        let d = g.dependents[i][k] as usize;
        g.open[d] -= 1;
        g.count_need(d, state);
        g.candidates.insert(d as u32);
    }
}

/// Records a failed attempt: waits to retry if the failure may be retried (`retry`: not a
/// traffic write that fails the same way again), retries are left and the run goes on; else
/// fails the node.
pub(crate) fn attempt_failed(
    r: &mut Run,
    i: usize,
    attempt: Attempt,
    error: String,
    retry: bool,
    now: Timestamp,
) {
    r.node_mut(i).error = Some(error);
    let retries = r.spec.nodes[i].retries;
    match retries {
        Some(retries) if retry && attempt.0 <= retries.limit && !r.phase.is_over() => {
            let at = now.after(retries.backoff.delay_after(attempt.0));
            r.node_mut(i).state = NodeState::RetryWait {
                failed: attempt,
                at,
            };
        }
        _ => finish(r, i, NodeState::Failed, now),
    }
}

/// Moves node `i` to `Queued` for `attempt` and returns its job; a node that cannot be run
/// fails for good, saying why.
pub(crate) fn dispatch_or_fail(
    r: &mut Run,
    i: usize,
    attempt: Attempt,
    now: Timestamp,
) -> Option<Job> {
    match dispatch(r, i, attempt) {
        Ok(job) => Some(job),
        Err(error) => {
            r.node_mut(i).error = Some(error);
            finish(r, i, NodeState::Failed, now);
            None
        }
    }
}

/// Moves node `i` to `Queued` for `attempt` and returns its job, with the data its needs pass.
/// A node of a kind without that kind's settings (which validation refuses, and the core
/// never builds) cannot be run: the error says so, and the node is left as it was.
fn dispatch(r: &mut Run, i: usize, attempt: Attempt) -> Result<Job, String> {
    let spec = &r.spec.nodes[i];
    let needs = needs_of(r, i);
    let passed = |n: &Node| {
        n.output
            .clone()
            .or_else(|| n.error.clone())
            .unwrap_or_default()
    };
    let inputs = match needs.iter().max_by_key(|n| n.finish_order) {
        _ if r.nodes[i].started_by.is_some() => {
            let by = r.nodes[i].started_by.clone().expect("checked");
            JobInputs {
                initiator: by.initiator,
                data: by.data,
                inputs: None,
            }
        }
        None => JobInputs {
            initiator: r.initiator.clone(),
            data: r.data.clone(),
            inputs: None,
        },
        Some(last) => JobInputs {
            initiator: last.name.to_string(),
            data: passed(last),
            inputs: (needs.len() > 1)
                .then(|| needs.iter().map(|n| (n.name.clone(), passed(n))).collect()),
        },
    };
    let missing = || {
        format!(
            "a node of kind {} without its {} settings",
            spec.kind, spec.kind
        )
    };
    let work = match spec.kind {
        NodeKind::Noop => Work::Noop,
        NodeKind::Exec => Work::Exec(ExecJob {
            command: spec.command.clone().unwrap_or_default(),
            env: spec.env.clone(),
            working_dir: spec.working_dir.clone(),
        }),
        NodeKind::Pod => Work::Pod(Box::new(PodJob {
            template: spec.template.as_deref().cloned().unwrap_or_default(),
            namespace: spec.namespace.clone(),
            container: spec.container.clone(),
            task: r.nodes[i].task.clone(),
        })),
        NodeKind::Webhook => Work::Webhook(spec.webhook.clone().ok_or_else(missing)?),
        NodeKind::Publish => Work::Publish(spec.publish.clone().ok_or_else(missing)?),
        NodeKind::Helm => Work::Helm(spec.helm.clone().ok_or_else(missing)?),
        NodeKind::Traffic => Work::Traffic(spec.traffic.clone().ok_or_else(missing)?),
        NodeKind::Analysis => Work::Analysis(spec.analysis.clone().ok_or_else(missing)?),
    };
    let job = Job {
        v: SCHEMA_VERSION,
        run: r.id.clone(),
        workflow: r.workflow.clone(),
        node: spec.name.clone(),
        attempt,
        work,
        timeout_ms: spec.timeout.map(|t| t.as_millis()),
        inputs,
        inputs_ref: None,
        inputs_digest: None,
    };
    let n = r.node_mut(i);
    n.state = NodeState::Queued { attempt };
    n.attempts = attempt.0;
    Ok(job)
}
