//! Tasks and ignitors in the decision core: an ignitor's fire starts a chain (a run of kind
//! `Chain`), and every task node that succeeds or fails starts the tasks that listen to it —
//! `startOnSuccess` / `startOnFailure` (any one) or `startOnAll` (all of them, in the same
//! chain) — and its typed actions. Pure, like the rest of the core.

use baton_schemas::schedule::Schedule;
use baton_schemas::task::{
    Action as TaskAction, ActionEntry, ConcurrencyPolicy, DEFAULT_CHAIN_LIMIT, Ignitor,
    Outcome as TaskOutcome, Task,
};
use baton_schemas::wire::{Fire, Timestamp};
use baton_schemas::workflow::NodeSpec;
use baton_schemas::{FailurePolicy, NodeKind, NodeName, RunId, WorkflowName, WorkflowSpec};
use serde::{Deserialize, Serialize};

use crate::{Action, Core, Node, NodeState, Run, RunKind, StartedBy, finish};

/// How far after the planner's clock a fire may be scheduled and still be taken: planners
/// on two machines (an active one that published it, a standby that reads it) disagree by
/// this much at most.
const FIRE_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(3600);

/// A registered task and what it did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskEntry {
    /// The task as applied.
    pub task: Task,
    /// What it did.
    pub status: TaskStatus,
}

/// What a task did, as Orca showed it (times in RFC 3339, UTC).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    /// When it last succeeded.
    pub last_success: Option<Timestamp>,
    /// When it last failed.
    pub last_failure: Option<Timestamp>,
    /// How many times it failed in a row since its last success.
    pub failures_count: u32,
}

/// Whether a task runs now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    /// No pod of it runs.
    Pending,
    /// A pod of it runs (or waits to retry) in some chain.
    Running,
}

/// A registered ignitor and its fires.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IgnitorEntry {
    /// The ignitor as applied.
    pub ignitor: Ignitor,
    /// The scheduled time of the last fire.
    pub last_fire: Option<Timestamp>,
    /// When it fires next; `None` once a one-shot has fired.
    pub next_fire: Option<Timestamp>,
    /// The scheduled time of the last fire whose chain started (read back from the bus): a
    /// fire read again, after a crash or from a second publish, starts nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Timestamp>,
    /// Why its schedule cannot be read, if it cannot.
    pub error: Option<String>,
}

/// Returns the deterministic run id of an ignitor's fire, so a fire seen twice (a restart, a
/// second planner) starts one chain.
pub fn fire_run_id(ignitor: &str, scheduled: Timestamp) -> RunId {
    let seed = format!("ignitor\0{ignitor}\0{}", scheduled.0);
    crate::ids::hashed_run_id('f', seed.bytes())
}

impl Core {
    /// Returns every task with its state.
    pub fn tasks(&self) -> impl Iterator<Item = (&TaskEntry, TaskState)> {
        self.tasks
            .values()
            .map(|t| (t, self.task_state(&t.task.metadata.name)))
    }

    /// Returns every ignitor.
    pub fn ignitors(&self) -> impl Iterator<Item = &IgnitorEntry> {
        self.ignitors.values()
    }

    fn task_state(&self, task: &str) -> TaskState {
        if self.running_instances(task).is_empty() {
            TaskState::Pending
        } else {
            TaskState::Running
        }
    }

    /// Returns (run, node index) of every node of `task` that runs or waits to retry, from
    /// the index of the task's nodes that have not ended (not a scan of every run).
    fn running_instances(&self, task: &str) -> Vec<(RunId, usize)> {
        let Some(live) = self.live_tasks.get(task) else {
            return Vec::new();
        };
        live.iter()
            .filter(|(run, i)| {
                self.runs.get(run).is_some_and(|r| {
                    let state = r.nodes[*i as usize].state;
                    !r.phase.is_over()
                        && (state.in_flight().is_some()
                            || matches!(state, NodeState::RetryWait { .. }))
                })
            })
            .map(|(run, i)| (run.clone(), *i as usize))
            .collect()
    }

    pub(super) fn register_task(&mut self, task: Task) {
        let name = task.metadata.name.clone();
        let status = self
            .tasks
            .get(&name)
            .map(|t| t.status.clone())
            .unwrap_or_default();
        let entry = TaskEntry { task, status };
        if self.tasks.get(&name) != Some(&entry) {
            self.tasks.insert(name.clone(), entry);
            self.changed_tasks.insert(name);
        }
    }

    /// Registers an ignitor; a changed one is armed anew, and so is a `NOW` one that fired
    /// when a person applies it `again`.
    pub(super) fn register_ignitor(&mut self, ignitor: Ignitor, again: bool, now: Timestamp) {
        let name = ignitor.metadata.name.clone();
        let existing = self.ignitors.get(&name);
        if let Some(e) = existing.filter(|e| e.ignitor.spec == ignitor.spec) {
            let fired_now = e.next_fire.is_none()
                && e.last_fire.is_some()
                && matches!(
                    Schedule::read(&e.ignitor.spec.scheduled, None),
                    Ok(Schedule::Now)
                );
            if again && fired_now {
                let entry = self.ignitors.get_mut(&name).expect("registered");
                entry.next_fire = Some(now);
                self.changed_ignitors.insert(name);
            }
            return;
        }
        let last_fire = existing.and_then(|e| e.last_fire);
        let started = existing.and_then(|e| e.started);
        let (next_fire, error) =
            match Schedule::read(&ignitor.spec.scheduled, ignitor.spec.time_zone.as_deref()) {
                Ok(Schedule::Now) => (Some(now), None),
                Ok(Schedule::At(at)) => (Some(at), None),
                Ok(cron @ Schedule::Cron { .. }) => (cron.next_after(now), None),
                Err(e) => (None, Some(e)),
            };
        self.ignitors.insert(
            name.clone(),
            IgnitorEntry {
                ignitor,
                last_fire,
                next_fire,
                started,
                error,
            },
        );
        self.changed_ignitors.insert(name);
    }

    /// Fires every ignitor that is due at `now`: records the fire as its last and asks for it
    /// to be published ([`Action::Fire`]); its chain starts when the planner reads it back
    /// ([`Core::start_fire`]). A cron ignitor that missed several times while the planner was
    /// down fires once, for the latest time it missed, unless that time is older than its
    /// `startingDeadline`.
    pub(super) fn fire_due_ignitors(&mut self, now: Timestamp, actions: &mut Vec<Action>) {
        let due: Vec<String> = self
            .ignitors
            .values()
            .filter(|i| i.next_fire.is_some_and(|t| t <= now))
            .map(|i| i.ignitor.metadata.name.clone())
            .collect();
        for name in due {
            let entry = self.ignitors.get_mut(&name).expect("due ignitors exist");
            let next_fire = entry.next_fire.expect("due ignitors have a next fire");
            let spec = entry.ignitor.spec.clone();
            let Ok(schedule) = Schedule::read(&spec.scheduled, spec.time_zone.as_deref()) else {
                entry.next_fire = None;
                continue;
            };
            let since = entry
                .last_fire
                .unwrap_or(Timestamp(next_fire.0.saturating_sub(1)))
                .max(Timestamp(next_fire.0.saturating_sub(1)));
            let scheduled = match schedule {
                Schedule::Cron { .. } => schedule.latest_between(since, now).unwrap_or(next_fire),
                _ => next_fire,
            };
            entry.next_fire = schedule.next_after(now);
            self.changed_ignitors.insert(name.clone());
            if spec
                .starting_deadline
                .is_some_and(|d| now.since(scheduled) > d.0)
            {
                actions.push(Action::IgnitorFired {
                    ignitor: name,
                    scheduled,
                    run: None,
                });
                continue;
            }
            entry.last_fire = Some(scheduled);
            actions.push(Action::Fire(Fire {
                v: baton_schemas::wire::SCHEMA_VERSION,
                ignitor: name,
                scheduled,
                data: spec.data.clone().unwrap_or_default(),
            }));
        }
    }

    /// Starts the chain of a fire read from the bus, unless the ignitor is gone or the fire
    /// started its chain already (its fire records say so; the chain's run may have been
    /// pruned since).
    pub(super) fn start_fire(&mut self, fire: Fire, now: Timestamp, actions: &mut Vec<Action>) {
        let Fire {
            ignitor: name,
            scheduled,
            data,
            ..
        } = fire;
        let Some(entry) = self.ignitors.get_mut(&name) else {
            return;
        };
        // The planner publishes a fire once it is due, so one scheduled well after `now` was
        // not the planner's (a message forged on the triggers subject): taken, it would mark
        // the ignitor as fired up to that time and stop it for good.
        if scheduled > now.after(FIRE_CLOCK_SKEW) {
            return;
        }
        if entry.started.is_some_and(|started| started >= scheduled) {
            return;
        }
        entry.started = Some(scheduled);
        self.changed_ignitors.insert(name.clone());
        let run = fire_run_id(&name, scheduled);
        if self.runs.contains_key(&run) {
            return;
        }
        let mut listeners: Vec<String> = self
            .tasks
            .values()
            .filter(|t| t.task.spec.start_on_ignition.contains(&name))
            .map(|t| t.task.metadata.name.clone())
            .collect();
        listeners.sort();
        if listeners.is_empty() {
            actions.push(Action::IgnitorFired {
                ignitor: name,
                scheduled,
                run: None,
            });
            return;
        }
        let chain = Run::new(
            run.clone(),
            WorkflowName::new(name.clone()),
            WorkflowSpec {
                failure_policy: FailurePolicy::Continue,
                nodes: Vec::new(),
            },
            RunKind::Chain,
            name.clone(),
            data.clone(),
            now,
        );
        self.add_run(chain);
        for task in listeners {
            self.start_task(
                &run,
                &task,
                StartedBy {
                    initiator: name.clone(),
                    data: data.clone(),
                    after: None,
                },
                now,
                actions,
            );
        }
        actions.push(Action::IgnitorFired {
            ignitor: name,
            scheduled,
            run: Some(run.clone()),
        });
        self.touch(&run);
    }

    /// Starts what follows every task node of a chain that succeeded or failed since the last
    /// call: its actions, then the tasks that listen to it. Updates the tasks' status.
    pub(super) fn follow_chain(&mut self, run: &RunId, now: Timestamp, actions: &mut Vec<Action>) {
        let Some(r) = self.runs.get_mut(run) else {
            return;
        };
        if r.kind != RunKind::Chain || r.phase.is_over() {
            return;
        }
        let watermark = r.followed_up_to;
        r.followed_up_to = r.finished_count;
        let nodes_before = r.nodes.len();
        let mut finished: Vec<(u32, usize)> = r
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.task.is_some() && n.finish_order.is_some_and(|o| o > watermark))
            .filter(|(_, n)| matches!(n.state, NodeState::Succeeded | NodeState::Failed))
            .map(|(i, n)| (n.finish_order.expect("filtered"), i))
            .collect();
        finished.sort();
        for (_, i) in finished {
            let r = &self.runs[run];
            let node = &r.nodes[i];
            let task = node.task.clone().expect("filtered");
            let outcome = if node.state == NodeState::Succeeded {
                TaskOutcome::Success
            } else {
                TaskOutcome::Failure
            };
            // As in Orca: what follows gets the task's termination message (empty when a
            // failed pod left none, not the error) and the task's name, whichever instance of
            // it (`task1-2`) ended.
            let started_by = StartedBy {
                initiator: task.clone(),
                data: node.output.clone().unwrap_or_default(),
                after: Some(node.name.clone()),
            };
            // An action's message says why a task failed when the pod left no message.
            let data = node
                .output
                .clone()
                .or_else(|| node.error.clone())
                .unwrap_or_default();
            let finished_at = node.finished_at.unwrap_or(now);
            let node_name = node.name.clone();
            if let Some(entry) = self.tasks.get_mut(&task) {
                match outcome {
                    TaskOutcome::Success => {
                        entry.status.last_success = Some(finished_at);
                        entry.status.failures_count = 0;
                    }
                    TaskOutcome::Failure => {
                        entry.status.last_failure = Some(finished_at);
                        entry.status.failures_count += 1;
                    }
                }
                self.changed_tasks.insert(task.clone());
            }
            let task_actions = self.tasks.get(&task).map(|t| match outcome {
                TaskOutcome::Success => t.task.spec.success_actions.clone(),
                TaskOutcome::Failure => t.task.spec.failure_actions.clone(),
            });
            for (k, entry) in task_actions.unwrap_or_default().into_iter().enumerate() {
                if let ActionEntry::Typed(action) = entry {
                    self.add_action_node(
                        run,
                        &node_name,
                        &task,
                        outcome,
                        k,
                        action,
                        &data,
                        started_by.clone(),
                    );
                }
            }
            for next in self.listeners(run, &task, outcome) {
                self.start_task(run, &next, started_by.clone(), now, actions);
            }
        }
        // Touched last, so that runs a concurrency policy stopped end first.
        if self.runs[run].nodes.len() != nodes_before {
            self.touch(run);
        }
    }

    /// Returns the tasks that start when `task` ended with `outcome` in `run`, by name.
    fn listeners(&self, run: &RunId, task: &str, outcome: TaskOutcome) -> Vec<String> {
        let r = &self.runs[run];
        let latest = |t: &str| {
            r.nodes
                .iter()
                .filter(|n| {
                    n.task.as_deref() == Some(t)
                        && matches!(n.state, NodeState::Succeeded | NodeState::Failed)
                })
                .max_by_key(|n| n.finish_order)
                .map(|n| {
                    if n.state == NodeState::Succeeded {
                        TaskOutcome::Success
                    } else {
                        TaskOutcome::Failure
                    }
                })
        };
        let mut names: Vec<String> = self
            .tasks
            .values()
            .filter(|t| {
                let spec = &t.task.spec;
                let any = match outcome {
                    TaskOutcome::Success => spec.start_on_success.iter().any(|s| s == task),
                    TaskOutcome::Failure => spec.start_on_failure.iter().any(|s| s == task),
                };
                let all = spec
                    .start_on_all
                    .iter()
                    .any(|c| c.task == task && c.outcome == outcome)
                    && spec
                        .start_on_all
                        .iter()
                        .all(|c| latest(&c.task) == Some(c.outcome));
                any || all
            })
            .map(|t| t.task.metadata.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Adds a node running `task` to the chain `run`, or a skipped node saying why it may not
    /// run (the chain limit, or its concurrency policy): a refused start is recorded, not lost.
    fn start_task(
        &mut self,
        run: &RunId,
        task: &str,
        started_by: StartedBy,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        let Some(entry) = self.tasks.get(task) else {
            return;
        };
        let spec = entry.task.spec.clone();
        let policy = entry.task.concurrency_policy();
        let limit = spec.chain_limit.unwrap_or(DEFAULT_CHAIN_LIMIT);
        let in_chain = self.runs[run]
            .nodes
            .iter()
            .filter(|n| n.task.is_some())
            .count();
        let mut refusal = None;
        if in_chain >= limit as usize {
            refusal = Some(format!(
                "not started: the chain already holds {in_chain} task runs, the chain limit of {task}"
            ));
        } else {
            let running = self.running_instances(task);
            match policy {
                ConcurrencyPolicy::Allow => {}
                ConcurrencyPolicy::Forbid => {
                    if let Some((other, i)) = running.first() {
                        let node = &self.runs[other].nodes[*i].name;
                        refusal = Some(format!(
                            "not started: task {task} is already running (run {other}, node {node}) and its concurrencyPolicy is Forbid"
                        ));
                    }
                }
                ConcurrencyPolicy::Replace => {
                    for (other, i) in running {
                        let r = self.runs.get_mut(&other).expect("running runs exist");
                        r.node_mut(i).error = Some(format!(
                            "cancelled: replaced by a new start of {task} in run {run}"
                        ));
                        finish(r, i, NodeState::Cancelled, now);
                        actions.push(Action::AnnounceCancel {
                            run: other.clone(),
                            node: Some(r.nodes[i].name.clone()),
                        });
                        self.touch(&other);
                    }
                }
            }
        }
        let r = self.runs.get_mut(run).expect("chains exist");
        let name = unique_name(r, task);
        let spec = NodeSpec {
            retries: spec.retries,
            timeout: spec.timeout,
            template: Some(Box::new(spec.template.clone())),
            namespace: spec.namespace.clone(),
            container: spec.container.clone(),
            ..NodeSpec::new(name.clone(), NodeKind::Pod)
        };
        let mut node = Node::new(name);
        node.task = Some(task.to_owned());
        node.started_by = Some(started_by);
        let i = r.push_node(spec, node);
        match refusal {
            Some(reason) => {
                r.node_mut(i).error = Some(reason);
                finish(r, i, NodeState::Skipped, now);
            }
            None => {
                self.live_tasks
                    .entry(task.to_owned())
                    .or_default()
                    .insert((run.clone(), i as u32));
            }
        }
        self.mark_changed(run);
    }

    /// Adds a node running one of a task's actions. Without a body (or data), the action
    /// sends Orca's JSON: `{"id", "message": "SUCCESS"|"FAILURE", "run", "data"}`.
    #[allow(clippy::too_many_arguments)] // the parts of one follow-up, kept apart for clarity
    fn add_action_node(
        &mut self,
        run: &RunId,
        node: &NodeName,
        task: &str,
        outcome: TaskOutcome,
        k: usize,
        action: TaskAction,
        data: &str,
        started_by: StartedBy,
    ) {
        let message = match outcome {
            TaskOutcome::Success => "SUCCESS",
            TaskOutcome::Failure => "FAILURE",
        };
        let orca =
            serde_json::json!({"id": task, "message": message, "run": run.as_str(), "data": data})
                .to_string();
        let (kind, webhook, publish) = match action {
            TaskAction::Webhook(mut w) => {
                w.body.get_or_insert(orca);
                (NodeKind::Webhook, Some(w), None)
            }
            TaskAction::Publish(mut p) => {
                p.data.get_or_insert(orca);
                (NodeKind::Publish, None, Some(p))
            }
        };
        let r = self.runs.get_mut(run).expect("chains exist");
        let suffix = if outcome == TaskOutcome::Success {
            "on-success"
        } else {
            "on-failure"
        };
        let name = unique_name(r, &format!("{node}-{suffix}-{}", k + 1));
        let spec = NodeSpec {
            retries: Some(baton_schemas::Retries {
                limit: 3,
                backoff: Default::default(),
            }),
            timeout: Some(baton_schemas::Duration::from_secs(30)),
            webhook: webhook.map(Box::new),
            publish: publish.map(Box::new),
            ..NodeSpec::new(name.clone(), kind)
        };
        let mut action_node = Node::new(name);
        action_node.started_by = Some(started_by);
        r.push_node(spec, action_node);
        self.mark_changed(run);
    }
}

/// Returns `base` if no node of the run has that name yet, else `base-2`, `base-3`, ...; cut
/// to 63 characters.
pub(super) fn unique_name(r: &Run, base: &str) -> NodeName {
    let cut = |s: &str| {
        s.chars()
            .take(63)
            .collect::<String>()
            .trim_end_matches('-')
            .to_owned()
    };
    let taken = |s: &str| r.nodes.iter().any(|n| n.name.as_str() == s);
    let first = cut(base);
    if !taken(&first) {
        return NodeName::new(first);
    }
    (2..)
        .map(|k| {
            let suffix = format!("-{k}");
            format!(
                "{}{suffix}",
                cut(&base.chars().take(63 - suffix.len()).collect::<String>())
            )
        })
        .find(|name| !taken(name))
        .map(NodeName::new)
        .expect("some suffix is free")
}

impl TaskEntry {
    /// Returns the status shown to users.
    pub fn view(&self, state: TaskState) -> baton_schemas::views::TaskView {
        baton_schemas::views::TaskView {
            name: self.task.metadata.name.clone(),
            state: match state {
                TaskState::Pending => "Pending",
                TaskState::Running => "Running",
            }
            .to_owned(),
            last_success: self.status.last_success.map(|t| t.to_string()),
            last_failure: self.status.last_failure.map(|t| t.to_string()),
            failures_count: self.status.failures_count,
            ignitors: self.task.spec.start_on_ignition.clone(),
            on_success_task: self.task.spec.start_on_success.clone(),
            on_failure_task: self.task.spec.start_on_failure.clone(),
        }
    }
}

impl IgnitorEntry {
    /// Returns the status shown to users.
    pub fn view(&self) -> baton_schemas::views::IgnitorView {
        let spec = &self.ignitor.spec;
        let one_shot = matches!(
            Schedule::read(&spec.scheduled, spec.time_zone.as_deref()),
            Ok(Schedule::Now | Schedule::At(_))
        );
        baton_schemas::views::IgnitorView {
            name: self.ignitor.metadata.name.clone(),
            scheduled: spec.scheduled.clone(),
            last_fire: self.last_fire.map(|t| t.to_string()),
            next_fire: self.next_fire.map(|t| t.to_string()),
            error: self.error.clone(),
            spent: one_shot
                && self.next_fire.is_none()
                && self.last_fire.is_some()
                && self.started >= self.last_fire,
        }
    }
}

#[cfg(test)]
mod tests;
