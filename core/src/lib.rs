//! The planner's decision core: `(state, input, now) -> actions`, with no I/O, no clock reads
//! and no randomness. The service around it persists the state, executes the actions and
//! feeds it inputs; tests feed inputs and assert on actions.
//!
//! Applying the same input twice changes nothing the second time: every input is checked
//! against the state it expects (a completion must name the attempt in flight, a start must
//! name an unknown run), so redelivered bus messages are harmless.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use baton_schemas::wire::Timestamp;
use baton_schemas::{Attempt, NodeName, RunId, Workflow, WorkflowName};

mod cells;
mod chains;
mod changes;
mod decide;
mod groups;
pub mod ids;
mod input;
mod notice;
mod run;
mod settle;
mod tally;
mod timers;

#[cfg(test)]
mod tests;

pub use cells::{
    Blocked, CellCommand, CellEntry, CellPhase, CellStatus, CellTrigger, Expect, Observation,
    RuleSeen, SeenTargetGroup, TargetGroupSource, TriggerPosition, WEIGHT_HISTORY, WeightChange,
};
pub use chains::{IgnitorEntry, TaskEntry, TaskState, TaskStatus, fire_run_id};
pub use changes::{Changes, Snapshot};
pub use groups::{GroupEntry, GroupState, Pending, Remediation, RemediationOutcome, Succeeded};
pub use input::{Action, ClusterSource, CoreConfig, Input, Refusal, Registered};
use run::step::{Readiness, attempt_failed, dispatch_or_fail, finish, readiness};
pub use run::summary::{PageCursor, RunQuery, page as run_page};
pub use run::{Node, NodeState, Run, RunKind, RunPhase, StartedBy};
pub use tally::{AttemptOutcome, Tally};

/// The planner's whole state: registered workflows and every run.
#[derive(Clone, Debug, Default)]
pub struct Core {
    config: CoreConfig,
    workflows: BTreeMap<WorkflowName, Workflow>,
    runs: BTreeMap<RunId, Run>,
    tasks: BTreeMap<String, TaskEntry>,
    ignitors: BTreeMap<String, IgnitorEntry>,
    changed_runs: BTreeSet<RunId>,
    /// Runs touched by the input being applied and not settled yet, in the order touched.
    unsettled: Vec<RunId>,
    /// Runs changed since their timers were last read into `timers`.
    untimed_runs: Vec<RunId>,
    /// Every node's pending timer (a retry's start, a timeout backstop), soonest first.
    timers: BTreeSet<(Timestamp, RunId, u32)>,
    /// Finished runs by the time they finished, for pruning.
    finished: BTreeSet<(Timestamp, RunId)>,
    /// Runs pruned since the store last wrote, with their number of nodes.
    pruned: Vec<(RunId, u32)>,
    /// Per task, the chain nodes that run it and have not ended, by run and node index: who
    /// a concurrency policy looks at, without a scan of every run. May hold nodes that ended
    /// since (they leave it when the core next syncs its indices); readers check the state.
    live_tasks: HashMap<String, BTreeSet<(RunId, u32)>>,
    /// The cluster objects documents were applied from (see [`ClusterSource`]).
    sources: BTreeMap<Registered, ClusterSource>,
    changed_sources: BTreeSet<Registered>,
    changed_workflows: BTreeSet<WorkflowName>,
    changed_tasks: BTreeSet<String>,
    changed_ignitors: BTreeSet<String>,
    /// Application groups by name (see `groups/`).
    groups: BTreeMap<String, GroupEntry>,
    changed_groups: BTreeSet<String>,
    // --- Cells (`cells/`) ---
    cells: BTreeMap<String, CellEntry>,
    templates: BTreeMap<String, baton_schemas::analysis::AnalysisTemplate>,
    changed_cells: BTreeSet<String>,
    changed_templates: BTreeSet<String>,
    /// What was decided since the planner last read it, for its metrics (`tally.rs`).
    tally: Tally,
    /// Whether changed runs are recorded for watchers, and those recorded (`notice.rs`).
    noticing: bool,
    noticed: Vec<RunId>,
}

impl Core {
    /// Returns an empty state.
    pub fn new(config: CoreConfig) -> Self {
        Self {
            config,
            ..Default::default()
        }
    }

    /// Returns a state holding what a store kept.
    pub fn restore(config: CoreConfig, snapshot: Snapshot) -> Self {
        let Snapshot {
            workflows,
            tasks,
            ignitors,
            groups,
            runs,
            cells,
            templates,
            sources,
        } = snapshot;
        let mut core = Self {
            config,
            workflows: workflows.into_iter().map(|w| (w.name(), w)).collect(),
            runs: runs.into_iter().map(|r| (r.id.clone(), r)).collect(),
            tasks: tasks
                .into_iter()
                .map(|t| (t.task.metadata.name.clone(), t))
                .collect(),
            ignitors: ignitors
                .into_iter()
                .map(|i| (i.ignitor.metadata.name.clone(), i))
                .collect(),
            sources: sources.into_iter().collect(),
            ..Default::default()
        };
        core.restore_groups(groups);
        core.restore_cells(cells, templates);
        let unfinished: Vec<RunId> = core
            .runs
            .values()
            .filter(|r| !r.phase.is_over())
            .map(|r| r.id.clone())
            .collect();
        for r in core.runs.values() {
            if let Some(at) = r.finished_at {
                core.finished.insert((at, r.id.clone()));
            }
        }
        for id in &unfinished {
            let r = &core.runs[id];
            for (i, n) in r.nodes.iter().enumerate() {
                if let Some(task) = &n.task
                    && !n.state.is_terminal()
                {
                    core.live_tasks
                        .entry(task.clone())
                        .or_default()
                        .insert((id.clone(), i as u32));
                }
            }
        }
        for id in unfinished {
            let r = core.runs.get_mut(&id).expect("listed");
            r.touched.untimed = (0..r.nodes.len() as u32).collect();
            core.untimed_runs.push(id);
        }
        core.sync_timers();
        core
    }

    /// Returns a run.
    pub fn run(&self, id: &RunId) -> Option<&Run> {
        self.runs.get(id)
    }

    /// Returns whether `node` of `run` waits for a worker to take `attempt`'s job.
    pub fn is_queued(&self, run: &RunId, node: &NodeName, attempt: Attempt) -> bool {
        self.runs
            .get(run)
            .and_then(|r| r.index(node).map(|i| r.nodes[i].state))
            == Some(NodeState::Queued { attempt })
    }

    /// Returns every run.
    pub fn runs(&self) -> impl Iterator<Item = &Run> {
        self.runs.values()
    }

    /// Returns a registered workflow.
    pub fn workflow(&self, name: &WorkflowName) -> Option<&Workflow> {
        self.workflows.get(name)
    }

    /// Returns every document applied from a cluster object, with that object.
    pub fn cluster_sources(&self) -> impl Iterator<Item = (&Registered, &ClusterSource)> {
        self.sources.iter()
    }

    /// Records where `document` was applied from (see [`Input::Source`]).
    fn set_source(&mut self, document: Registered, source: Option<ClusterSource>) {
        let changed = match source {
            Some(source) if self.is_registered(&document) => {
                let new = self.sources.get(&document) != Some(&source);
                if new {
                    self.sources.insert(document.clone(), source);
                }
                new
            }
            Some(_) => false,
            None => self.sources.remove(&document).is_some(),
        };
        if changed {
            self.changed_sources.insert(document);
        }
    }

    /// Returns whether a document is registered.
    pub fn is_registered(&self, document: &Registered) -> bool {
        match document {
            Registered::Workflow(name) => self.workflows.contains_key(name),
            Registered::Task(name) => self.tasks.contains_key(name),
            Registered::Ignitor(name) => self.ignitors.contains_key(name),
            Registered::Group(name) => self.groups.contains_key(name),
            Registered::Cell(name) => self.cells.contains_key(name),
            Registered::AnalysisTemplate(name) => self.templates.contains_key(name),
        }
    }
}
