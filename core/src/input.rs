//! What goes into the core and what comes out: its settings, inputs, actions and refusals,
//! and how documents are named once registered.

use std::time::Duration;

use baton_schemas::group::ApplicationGroup;
use baton_schemas::status::State;
use baton_schemas::task::{Ignitor, Task};
use baton_schemas::wire::{Event, Fire, Job, Timestamp};
use baton_schemas::{Attempt, NodeName, RunId, Workflow, WorkflowName};
use serde::{Deserialize, Serialize};

use crate::*;

/// Settings of the decision core.
#[derive(Clone, Copy, Debug)]
pub struct CoreConfig {
    /// How long past a node's timeout the planner waits for a worker's result before it
    /// fails the attempt itself. It covers a worker dying (the job's ack wait) and clock skew.
    pub timeout_grace: Duration,
    /// How long a finished run is kept (shown by the API, held in the store) before it is
    /// pruned.
    pub run_retention: Duration,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            timeout_grace: Duration::from_secs(60),
            run_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Something the planner is told.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// Registers (or replaces) a workflow under its name.
    Register(Workflow),
    /// Registers (or replaces) a task under its name.
    RegisterTask(Box<Task>),
    /// Registers (or replaces) an ignitor under its name; a changed schedule is armed anew.
    RegisterIgnitor {
        /// The ignitor.
        ignitor: Box<Ignitor>,
        /// Whether a person applied it (through the API), rather than a cluster's listing
        /// repeating what it holds: a `NOW` ignitor that fired fires again, as re-applying
        /// an Orca ignitor did (Orca deleted one-shots once fired).
        again: bool,
    },
    /// Applies an application group: a changed spec starts its forward run.
    RegisterGroup(Box<ApplicationGroup>),
    /// Forgets a registered document (deleted from a cluster, or by a person): a workflow
    /// starts no new run, a task is started by nothing, an ignitor fires no more. Runs
    /// already going on finish. A group is deleted: its releases are uninstalled in reverse
    /// order. An unknown workflow, task or ignitor is refused.
    Remove(Registered),
    /// Deletes a group as [`Input::Remove`] does, and lets it go whatever its delete leaves
    /// installed (`baton delete group --force`, or the object's `baton.dev/force-delete`
    /// annotation): a group whose delete ended with releases left is let go at once. An
    /// unknown group is refused.
    ForceDelete(String),
    /// Records where a registered document was applied from: a cluster object, or not
    /// (`None`, the API). Applied with the document's registration; ignored for a document
    /// that is not registered (refused).
    Source {
        /// The document.
        document: Registered,
        /// The object it came from, if any.
        source: Option<ClusterSource>,
    },
    /// Starts a run of a registered workflow. A run id already known is ignored.
    StartRun {
        /// The new run's id, chosen by the caller.
        run: RunId,
        /// The workflow to run.
        workflow: WorkflowName,
        /// Who started it (`api`, or the trigger's name); the first nodes' `BATON_INITIATOR`.
        initiator: String,
        /// The trigger data; the first nodes' `BATON_DATA`.
        data: String,
    },
    /// A trigger read from the bus that cannot start a run (undecodable data, a subject that
    /// names no workflow, a workflow not registered): the run is recorded as failed with the
    /// reason, so that whoever sent it finds out where runs are looked at. A run id already
    /// known is ignored.
    RejectTrigger {
        /// The run the trigger was to start: the id its sender chose, or one derived from its
        /// place in the stream.
        run: RunId,
        /// The workflow it named, as far as it could be read.
        workflow: WorkflowName,
        /// Why it was set aside.
        reason: String,
    },
    /// A job the bus cannot carry (larger than its largest message even with its inputs
    /// kept apart): the attempt fails for good with `reason`, without a retry (the same job
    /// would be as large again), and the run goes on by its failure policy. Ignored unless
    /// the node is queued with that attempt.
    Undeliverable {
        /// The run.
        run: RunId,
        /// The node.
        node: NodeName,
        /// The attempt whose job could not be sent.
        attempt: Attempt,
        /// Why, with the sizes.
        reason: String,
    },
    /// A worker's report from the bus.
    Bus(Event),
    /// An ignitor's fire read from the bus: starts its chain, once.
    Fire(Fire),
    /// Cancels a run: nothing new starts, nodes not finished end `cancelled`.
    Cancel(RunId),
    /// Time passed: due retries, timeouts and ignitors fire; finished runs past their
    /// retention are pruned.
    Tick,
    // --- Cells (`cells.rs`) ---
    /// Registers (or replaces) a Cell under its name.
    RegisterCell(Box<baton_schemas::cell::Cell>),
    /// Registers (or replaces) an analysis template under its name.
    RegisterAnalysisTemplate(Box<baton_schemas::analysis::AnalysisTemplate>),
    /// What a discovery of target groups saw for a Cell.
    Observed(Box<Observation>),
    /// A person's resume, abort or promote of a Cell's rollout.
    CellCommand {
        /// The Cell.
        cell: String,
        /// What to do.
        command: CellCommand,
        /// The rollout the sender means, when it names one: refused if another is under way.
        expect: Expect,
        /// Where the command sits in the triggers stream, when it came from there: applied at
        /// most once, however often the stream is replayed.
        from: Option<TriggerPosition>,
    },
}

impl From<baton_schemas::Document> for Input {
    /// Returns the input that registers a document.
    fn from(document: baton_schemas::Document) -> Input {
        use baton_schemas::Document;
        match document {
            Document::Workflow(w) => Input::Register(w),
            Document::Task(t) => Input::RegisterTask(t),
            Document::Ignitor(i) => Input::RegisterIgnitor {
                ignitor: i,
                again: false,
            },
            Document::Group(g) => Input::RegisterGroup(g),
            Document::Cell(c) => Input::RegisterCell(c),
            Document::AnalysisTemplate(t) => Input::RegisterAnalysisTemplate(t),
        }
    }
}

/// A registered document, by kind and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "name")]
pub enum Registered {
    /// A workflow.
    Workflow(WorkflowName),
    /// A task.
    Task(String),
    /// An ignitor.
    Ignitor(String),
    /// An application group.
    Group(String),
    /// A Cell.
    Cell(String),
    /// An analysis template.
    AnalysisTemplate(String),
}

impl Registered {
    /// Returns what registering `document` registers.
    pub fn of(document: &baton_schemas::Document) -> Registered {
        use baton_schemas::Document;
        match document {
            Document::Workflow(w) => Registered::Workflow(w.name()),
            Document::Task(t) => Registered::Task(t.metadata.name.clone()),
            Document::Ignitor(i) => Registered::Ignitor(i.metadata.name.clone()),
            Document::Group(g) => Registered::Group(g.name().to_owned()),
            Document::Cell(c) => Registered::Cell(c.metadata.name.clone()),
            Document::AnalysisTemplate(t) => Registered::AnalysisTemplate(t.metadata.name.clone()),
        }
    }

    /// Returns the document's name.
    pub fn name(&self) -> &str {
        match self {
            Registered::Workflow(name) => name.as_str(),
            Registered::Task(name)
            | Registered::Ignitor(name)
            | Registered::Group(name)
            | Registered::Cell(name)
            | Registered::AnalysisTemplate(name) => name,
        }
    }
}

/// The cluster object a registered document was last applied from: the planner forgets the
/// document when it finds the object gone, even when it was deleted while no planner
/// watched. A document applied through the API has none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSource {
    /// The object's API group (`baton.dev`, `sirocco.cloud`, ...).
    pub group: String,
    /// Its kind.
    pub kind: String,
    /// Its namespace (empty for a cluster-scoped object).
    pub namespace: String,
}

/// Something the service must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Publish this job.
    Dispatch(Box<Job>),
    /// Tell workers to stop what they run for this run (one node of it, when `node` is set).
    AnnounceCancel {
        /// The run.
        run: RunId,
        /// The node, or every node of the run.
        node: Option<NodeName>,
    },
    /// Publish an ignitor's fire that came due. Its chain starts when the fire is read back
    /// from the bus ([`Input::Fire`]).
    Fire(Fire),
    /// An ignitor fired (or its fire was skipped, with no run).
    IgnitorFired {
        /// The ignitor.
        ignitor: String,
        /// The scheduled time of the fire.
        scheduled: Timestamp,
        /// The chain it started, if any task listens to it.
        run: Option<RunId>,
    },
    /// A run ended.
    RunFinished {
        /// The run.
        run: RunId,
        /// How it ended.
        state: State,
    },
    /// An input was refused; the reason is for the caller.
    Refused(Refusal),
}

/// Why an input was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A run of a workflow that is not registered.
    #[error("workflow {0:?} is not registered")]
    UnknownWorkflow(String),
    /// A cancel of a run that does not exist.
    #[error("run {0:?} does not exist")]
    UnknownRun(String),
    /// A delete of a group that does not exist.
    #[error("application group {0:?} does not exist")]
    UnknownGroup(String),
    /// A delete of a task that is not registered.
    #[error("task {0:?} is not registered")]
    UnknownTask(String),
    /// A delete of an ignitor that is not registered.
    #[error("ignitor {0:?} is not registered")]
    UnknownIgnitor(String),
    /// A command to a Cell that does not exist.
    #[error("cell {0:?} does not exist")]
    UnknownCell(String),
    /// A Cell command the Cell's state does not allow: nothing to resume, a rollback under
    /// way, or a run or step other than the one the command names.
    #[error("{0}")]
    CellCommand(String),
    /// A cancel of a Cell's rollout, which is aborted instead.
    #[error(
        "run {run:?} is a rollout of cell {cell:?}: a rollout is not cancelled but aborted, which gives the stable version its traffic back (`baton cell abort {cell}`)"
    )]
    CellRun {
        /// The run.
        run: String,
        /// Its Cell.
        cell: String,
    },
}

impl Refusal {
    /// Returns whether the refusal is about something that does not exist (rather than a
    /// state that does not allow the request).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Refusal::UnknownWorkflow(_)
                | Refusal::UnknownRun(_)
                | Refusal::UnknownGroup(_)
                | Refusal::UnknownTask(_)
                | Refusal::UnknownIgnitor(_)
                | Refusal::UnknownCell(_)
        )
    }
}
