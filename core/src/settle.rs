//! Settling the runs an input touched: the readiness pass that dispatches what may run, the
//! one seam through which a run's owner (a chain, a Cell, an application group) follows it,
//! and the run's end.
//!
//! Nothing here recurses. Whatever changes a run only *touches* it ([`Core::touch`]);
//! [`Core::apply`] then settles the touched runs one at a time. A run touched while another
//! is being settled (a chain's next node, a Cell's next rollout, a group's next run) is
//! settled next, before the runs touched earlier, so the order of actions is the order in
//! which one thing sets off the next.

use std::collections::VecDeque;

use crate::*;
use baton_schemas::status::State;
use baton_schemas::wire::Timestamp;
use baton_schemas::{Attempt, FailurePolicy, RunId, When};

use crate::cells::CellEvent;
use crate::groups::GroupEvent;

impl Core {
    /// Records that `run` changed: it is settled (readiness pass, its owner, its end) before
    /// the input's `apply` returns.
    pub(crate) fn touch(&mut self, run: &RunId) {
        self.mark_changed(run);
        self.unsettled.push(run.clone());
    }

    /// Settles every touched run, and the runs that settling touches in turn.
    pub(crate) fn settle_touched(&mut self, now: Timestamp, actions: &mut Vec<Action>) {
        let mut queue: VecDeque<RunId> = VecDeque::new();
        self.queue_touched(&mut queue);
        while let Some(run) = queue.pop_front() {
            self.settle(&run, now, actions);
            self.queue_touched(&mut queue);
        }
    }

    /// Puts the runs touched since the last call at the front of `queue`, in the order they
    /// were first touched.
    fn queue_touched(&mut self, queue: &mut VecDeque<RunId>) {
        for run in std::mem::take(&mut self.unsettled).into_iter().rev() {
            if let Some(at) = queue.iter().position(|q| q == &run) {
                queue.remove(at);
            }
            queue.push_front(run);
        }
    }

    /// Starts or skips every pending node whose needs allow it; lets the run's owner follow
    /// it; then, unless the owner changed it again, ends the run when every node is final.
    fn settle(&mut self, run: &RunId, now: Timestamp, actions: &mut Vec<Action>) {
        let Some(r) = self.runs.get_mut(run) else {
            return;
        };
        if r.phase.is_over() && r.finished_at.is_some() {
            return;
        }
        readiness_pass(r, now, actions);
        let kind = r.kind;
        match kind {
            RunKind::Chain => self.follow_chain(run, now, actions),
            RunKind::Cell => {
                let cell = r.workflow.to_string();
                self.cell_step(&cell, CellEvent::RunMoved(run.clone()), now, actions);
            }
            RunKind::Workflow | RunKind::Group => {}
        }
        // The owner added nodes or ended some: the run is settled again before it may end.
        if self.unsettled.contains(run) {
            return;
        }
        let r = self.runs.get_mut(run).expect("settled runs exist");
        if r.phase != RunPhase::Cancelled && r.finished_count as usize == r.nodes.len() {
            // Nodes end cancelled outside a run cancel when a task's concurrency policy replaces
            // them: such a chain ends cancelled.
            r.phase = if r.graph.failed_nodes > 0 {
                RunPhase::Failed
            } else if r.graph.cancelled_nodes > 0 {
                RunPhase::Cancelled
            } else {
                RunPhase::Succeeded
            };
        }
        if r.phase.is_over() && r.finished_at.is_none() {
            r.finished_at = Some(now);
            let state = r.phase.state();
            self.run_ended(run, state, now, actions);
        }
    }

    /// Announces that `run` ended, and lets its owner follow.
    pub(crate) fn run_ended(
        &mut self,
        run: &RunId,
        state: State,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        actions.push(Action::RunFinished {
            run: run.clone(),
            state,
        });
        let Some(r) = self.runs.get(run) else {
            return;
        };
        let kind = r.kind;
        let group = (kind == RunKind::Group).then(|| r.workflow.to_string());
        self.count_run_end(kind, state);
        if let Some(group) = group {
            self.group_step(
                &group,
                GroupEvent::RunEnded(run.clone(), state),
                now,
                actions,
            );
        }
    }
}

/// Starts or skips every pending node of `r` whose needs allow it.
fn readiness_pass(r: &mut Run, now: Timestamp, actions: &mut Vec<Action>) {
    r.ensure_graph();
    if r.phase == RunPhase::Running
        && r.spec.failure_policy == FailurePolicy::FailFast
        && r.graph.failed_nodes > 0
    {
        r.phase = RunPhase::FailingFast;
    }
    // Only nodes whose needs changed can change readiness. They are taken in spec order;
    // a skip may unblock nodes earlier in the order (a skip cascades), taken in the next
    // pass, as a scan of the whole run in spec order repeated until nothing changes would.
    while !r.graph.candidates.is_empty() {
        let mut cursor = 0;
        while let Some(&i) = r.graph.candidates.range(cursor..).next() {
            r.graph.candidates.remove(&i);
            cursor = i + 1;
            let i = i as usize;
            if r.nodes[i].state != NodeState::Pending || r.phase.is_over() {
                continue;
            }
            match readiness(r, i) {
                Readiness::Wait => {}
                Readiness::Skip(reason) => {
                    r.node_mut(i).error = Some(reason);
                    finish(r, i, NodeState::Skipped, now);
                }
                Readiness::Ready
                    if r.phase == RunPhase::FailingFast
                        && r.spec.nodes[i].when == When::Success =>
                {
                    let failed = r
                        .graph
                        .first_failed
                        .map(|f| r.nodes[f as usize].name.to_string())
                        .unwrap_or_default();
                    r.node_mut(i).error = Some(format!(
                        "not started: fail-fast after node {failed:?} failed"
                    ));
                    finish(r, i, NodeState::Skipped, now);
                }
                Readiness::Ready => {
                    if let Some(job) = dispatch_or_fail(r, i, Attempt::FIRST, now) {
                        actions.push(Action::Dispatch(Box::new(job)));
                    }
                }
            }
        }
    }
}
