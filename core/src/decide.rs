//! The core's one entry point, [`Core::apply`]: an input decided at `now`, then the runs it
//! touched settled (see `settle.rs`).

use std::collections::{BTreeMap, BTreeSet};

use crate::cells::CellEvent;
use crate::*;
use baton_schemas::status::State;
use baton_schemas::wire::{Event, FailureKind, Outcome, Timestamp};
use baton_schemas::{NodeName, RunId, WorkflowSpec};

impl Core {
    /// Applies one input at `now` and returns what must be done.
    pub fn apply(&mut self, input: Input, now: Timestamp) -> Vec<Action> {
        let mut actions = self.decide(input, now);
        self.settle_touched(now, &mut actions);
        self.sync_timers();
        actions
    }

    pub(crate) fn decide(&mut self, input: Input, now: Timestamp) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Input::Remove(document) = &input {
            let unknown = match document {
                Registered::Workflow(name) if !self.workflows.contains_key(name) => {
                    Some(Refusal::UnknownWorkflow(name.to_string()))
                }
                Registered::Task(name) if !self.tasks.contains_key(name) => {
                    Some(Refusal::UnknownTask(name.clone()))
                }
                Registered::Ignitor(name) if !self.ignitors.contains_key(name) => {
                    Some(Refusal::UnknownIgnitor(name.clone()))
                }
                _ => None,
            };
            if let Some(refusal) = unknown {
                actions.push(Action::Refused(refusal));
                return actions;
            }
            self.set_source(document.clone(), None);
        }
        match input {
            Input::Source { document, source } => self.set_source(document, source),
            Input::RegisterTask(task) => self.register_task(*task),
            Input::RegisterIgnitor { ignitor, again } => {
                self.register_ignitor(*ignitor, again, now)
            }
            Input::RegisterGroup(group) => self.apply_group(*group, now, &mut actions),
            Input::Remove(Registered::Group(name)) => self.delete_group(&name, now, &mut actions),
            Input::ForceDelete(name) => self.force_delete_group(&name, now, &mut actions),
            Input::Remove(Registered::Workflow(name)) => {
                if self.workflows.remove(&name).is_some() {
                    self.changed_workflows.insert(name);
                }
            }
            Input::Remove(Registered::Task(name)) => {
                if self.tasks.remove(&name).is_some() {
                    self.changed_tasks.insert(name);
                }
            }
            Input::Remove(Registered::Ignitor(name)) => {
                if self.ignitors.remove(&name).is_some() {
                    self.changed_ignitors.insert(name);
                }
            }
            Input::RegisterCell(cell) => {
                let name = cell.metadata.name.clone();
                self.cell_step(&name, CellEvent::Applied(cell), now, &mut actions);
            }
            Input::RegisterAnalysisTemplate(t) => self.register_template(*t),
            Input::Remove(Registered::Cell(name)) => {
                self.cell_step(&name, CellEvent::Removed, now, &mut actions)
            }
            Input::Remove(Registered::AnalysisTemplate(name)) => self.remove_template(&name),
            Input::Observed(observation) => {
                let name = observation.cell.clone();
                self.cell_step(&name, CellEvent::Observed(observation), now, &mut actions);
            }
            Input::CellCommand {
                cell,
                command,
                expect,
                from,
            } => {
                let event = CellEvent::Commanded {
                    command,
                    expect,
                    from,
                };
                self.cell_step(&cell, event, now, &mut actions);
            }
            Input::Register(workflow) => {
                let name = workflow.name();
                if self.workflows.get(&name) != Some(&workflow) {
                    self.workflows.insert(name.clone(), workflow);
                    self.changed_workflows.insert(name);
                }
            }
            Input::StartRun {
                run,
                workflow,
                initiator,
                data,
            } => {
                if self.runs.contains_key(&run) {
                    return actions;
                }
                let Some(spec) = self.workflows.get(&workflow).map(|w| w.spec.clone()) else {
                    actions.push(Action::Refused(Refusal::UnknownWorkflow(
                        workflow.to_string(),
                    )));
                    return actions;
                };
                let new = Run::new(
                    run.clone(),
                    workflow,
                    spec,
                    RunKind::Workflow,
                    initiator,
                    data,
                    now,
                );
                self.begin_run(new, now, &mut actions);
            }
            Input::RejectTrigger {
                run,
                workflow,
                reason,
            } => {
                if self.runs.contains_key(&run) {
                    return actions;
                }
                let mut rejected = Run::new(
                    run.clone(),
                    workflow,
                    WorkflowSpec::default(),
                    RunKind::Workflow,
                    "trigger".to_owned(),
                    String::new(),
                    now,
                );
                rejected.phase = RunPhase::Failed;
                rejected.finished_at = Some(now);
                rejected.error = Some(format!("trigger set aside: {reason}"));
                self.add_run(rejected);
                self.mark_changed(&run);
                self.run_ended(&run, State::Failed, now, &mut actions);
            }
            Input::Bus(Event::NodeStarted {
                run,
                node,
                attempt,
                at,
            }) => {
                let grace = self.config.timeout_grace;
                let Some((r, i)) = self.node_mut(&run, &node) else {
                    return actions;
                };
                if r.nodes[i].state == (NodeState::Queued { attempt }) {
                    let timeout = r.spec.nodes[i].timeout.map(|t| t.0);
                    let n = r.node_mut(i);
                    n.state = NodeState::Running {
                        attempt,
                        deadline: timeout.map(|t| at.after(t.saturating_add(grace))),
                    };
                    n.started_at.get_or_insert(at);
                    self.mark_changed(&run);
                }
            }
            Input::Bus(Event::NodeFinished {
                run,
                node,
                attempt,
                started_at,
                finished_at,
                outcome,
            }) => {
                let Some((r, i)) = self.node_mut(&run, &node) else {
                    return actions;
                };
                if r.nodes[i].state.in_flight() != Some(attempt) {
                    return actions;
                }
                r.node_mut(i).started_at.get_or_insert(started_at);
                let kind = r.spec.nodes[i].kind;
                let counted = match &outcome {
                    Outcome::Succeeded { .. } => AttemptOutcome::Succeeded,
                    Outcome::Failed { .. } => AttemptOutcome::Failed,
                };
                match outcome {
                    Outcome::Succeeded { output } => {
                        let n = r.node_mut(i);
                        n.output = Some(output);
                        n.error = None;
                        finish(r, i, NodeState::Succeeded, finished_at.max(now));
                    }
                    Outcome::Failed {
                        error,
                        output,
                        kind,
                    } => {
                        // The worker knows when trying again would fail the same way (a
                        // traffic write AWS refused, or one out of date).
                        let retry = kind == FailureKind::Retryable;
                        r.node_mut(i).output = output;
                        attempt_failed(r, i, attempt, error, retry, now);
                    }
                }
                self.count_attempt(kind, counted);
                self.touch(&run);
            }
            Input::Undeliverable {
                run,
                node,
                attempt,
                reason,
            } => {
                let Some((r, i)) = self.node_mut(&run, &node) else {
                    return actions;
                };
                if r.nodes[i].state != (NodeState::Queued { attempt }) {
                    return actions;
                }
                let kind = r.spec.nodes[i].kind;
                attempt_failed(r, i, attempt, reason, false, now);
                self.count_attempt(kind, AttemptOutcome::Undeliverable);
                self.touch(&run);
            }
            Input::Cancel(run) => {
                let Some(r) = self.runs.get(&run) else {
                    actions.push(Action::Refused(Refusal::UnknownRun(run.to_string())));
                    return actions;
                };
                // A rollout cancelled would leave its Cell's traffic wherever the last step
                // put it: a rollout is aborted, which gives the stable version its traffic back.
                if r.kind == RunKind::Cell && !r.phase.is_over() {
                    actions.push(Action::Refused(Refusal::CellRun {
                        run: run.to_string(),
                        cell: r.workflow.to_string(),
                    }));
                    return actions;
                }
                self.cancel_run(&run, now, &mut actions);
            }
            Input::Fire(fire) => self.start_fire(fire, now, &mut actions),
            Input::Tick => {
                self.prune_runs(now);
                self.fire_due_ignitors(now, &mut actions);
                let mut due: BTreeMap<RunId, Vec<usize>> = BTreeMap::new();
                for (_, run, i) in self.timers.iter().take_while(|(at, _, _)| *at <= now) {
                    due.entry(run.clone()).or_default().push(*i as usize);
                }
                let mut timed_out = Vec::new();
                for (run, mut nodes) in due {
                    nodes.sort_unstable();
                    let Some(r) = self.runs.get_mut(&run) else {
                        // Never expected (a run's timers go with it); dropped rather than
                        // fired at every tick.
                        self.timers.retain(|(_, r, _)| r != &run);
                        continue;
                    };
                    for i in nodes {
                        let Some(node) = r.nodes.get(i) else {
                            continue;
                        };
                        match node.state {
                            NodeState::RetryWait { failed, at } if at <= now => {
                                if let Some(job) = dispatch_or_fail(r, i, failed.next(), now) {
                                    actions.push(Action::Dispatch(Box::new(job)));
                                }
                            }
                            NodeState::Running {
                                attempt,
                                deadline: Some(d),
                            } if d <= now => {
                                let timeout = r.spec.nodes[i].timeout.unwrap_or_default();
                                let error = format!(
                                    "timed out: no result from a worker within the node's timeout ({timeout}) plus {}s of grace",
                                    self.config.timeout_grace.as_secs()
                                );
                                attempt_failed(r, i, attempt, error, true, now);
                                timed_out.push(r.spec.nodes[i].kind);
                            }
                            _ => {}
                        }
                    }
                    self.touch(&run);
                }
                for kind in timed_out {
                    self.count_attempt(kind, AttemptOutcome::TimedOut);
                }
            }
        }
        actions
    }

    /// Adds a new run and starts the nodes that need nothing.
    ///
    /// A spec naming one node twice cannot run: the graph would merge the two, and the run
    /// would wait forever for the job of the second, which the bus drops as a duplicate.
    /// Validation refuses such specs, so only a bug gets here; the run then fails at once,
    /// its second node of the name saying why, instead of hanging.
    pub(crate) fn begin_run(&mut self, mut run: Run, now: Timestamp, actions: &mut Vec<Action>) {
        let id = run.id.clone();
        // A run never replaces another: its nodes' timers and finish records would point
        // into the newcomer. Every caller picks a free id; this is the last guard.
        if self.runs.contains_key(&id) {
            return;
        }
        let mut seen = BTreeSet::new();
        let twice = run.spec.nodes.iter().position(|n| !seen.insert(&n.name));
        match twice {
            None => {
                self.add_run(run);
                self.touch(&id);
            }
            Some(i) => {
                let name = run.spec.nodes[i].name.to_string();
                for j in 0..run.nodes.len() {
                    let (state, error) = if j == i {
                        (
                            NodeState::Failed,
                            format!("the run's graph names node {name:?} twice; it cannot run"),
                        )
                    } else {
                        (
                            NodeState::Skipped,
                            format!("not started: the run's graph names node {name:?} twice"),
                        )
                    };
                    run.node_mut(j).error = Some(error);
                    finish(&mut run, j, state, now);
                }
                run.phase = RunPhase::Failed;
                run.finished_at = Some(now);
                self.add_run(run);
                self.mark_changed(&id);
                self.run_ended(&id, State::Failed, now, actions);
            }
        }
    }

    /// Cancels a run that is not over: nothing new starts, nodes not finished end
    /// `cancelled`, and workers are told to stop.
    pub(crate) fn cancel_run(&mut self, run: &RunId, now: Timestamp, actions: &mut Vec<Action>) {
        let Some(r) = self.runs.get_mut(run) else {
            return;
        };
        if r.phase.is_over() {
            return;
        }
        r.phase = RunPhase::Cancelled;
        for i in 0..r.nodes.len() {
            if !r.nodes[i].state.is_terminal() {
                r.node_mut(i).error = Some("cancelled".to_owned());
                finish(r, i, NodeState::Cancelled, now);
            }
        }
        actions.push(Action::AnnounceCancel {
            run: run.clone(),
            node: None,
        });
        self.touch(run);
    }

    pub(crate) fn node_mut(&mut self, run: &RunId, node: &NodeName) -> Option<(&mut Run, usize)> {
        let r = self.runs.get_mut(run)?;
        r.ensure_graph();
        let i = r.index(node)?;
        Some((r, i))
    }
}
