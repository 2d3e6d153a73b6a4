//! The planner's decision core: `(state, input, now) -> actions`, with no I/O, no clock reads
//! and no randomness. The service around it persists the state, executes the actions and
//! feeds it inputs; tests feed inputs and assert on actions.
//!
//! Applying the same input twice changes nothing the second time: every input is checked
//! against the state it expects (a completion must name the attempt in flight, a start must
//! name an unknown run), so redelivered bus messages are harmless.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use baton_schemas::group::ApplicationGroup;
use baton_schemas::status::{NodeStatus, RunStatus, State};
use baton_schemas::task::{Ignitor, Task};
use baton_schemas::wire::{
    Event, ExecJob, Fire, Job, JobInputs, Outcome, PodJob, SCHEMA_VERSION, Timestamp,
};
use baton_schemas::{
    Attempt, FailurePolicy, NodeKind, NodeName, NodeSpec, RunId, When, Workflow, WorkflowName,
    WorkflowSpec,
};
use serde::{Deserialize, Serialize};

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
    RegisterIgnitor(Box<Ignitor>),
    /// Applies an application group: a changed spec starts its forward run.
    RegisterGroup(Box<ApplicationGroup>),
    /// Forgets a registered document (deleted from a cluster, or by a person): a workflow
    /// starts no new run, a task is started by nothing, an ignitor fires no more. Runs
    /// already going on finish. A group is deleted: its releases are uninstalled in reverse
    /// order. An unknown workflow, task or ignitor is refused.
    Remove(Registered),
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
            Document::Ignitor(i) => Input::RegisterIgnitor(i),
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

/// Where a run is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RunPhase {
    /// Nodes start as their needs are met.
    Running,
    /// A node failed for good under fail-fast: only running nodes, retries of them, and
    /// failure or always handlers go on.
    FailingFast,
    /// Every node finished and none failed.
    Succeeded,
    /// Every node finished and at least one failed.
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl RunPhase {
    fn state(self) -> State {
        match self {
            RunPhase::Running | RunPhase::FailingFast => State::Running,
            RunPhase::Succeeded => State::Succeeded,
            RunPhase::Failed => State::Failed,
            RunPhase::Cancelled => State::Cancelled,
        }
    }

    fn is_over(self) -> bool {
        matches!(
            self,
            RunPhase::Succeeded | RunPhase::Failed | RunPhase::Cancelled
        )
    }
}

/// Where a node is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum NodeState {
    /// Waiting for its needs.
    Pending,
    /// The job of `attempt` is on the bus; no worker has reported it yet.
    Queued {
        /// The attempt in flight.
        attempt: Attempt,
    },
    /// A worker began `attempt`; past `deadline` (the timeout plus grace) the planner fails it.
    Running {
        /// The attempt in flight.
        attempt: Attempt,
        /// The timeout backstop, when the node has a timeout.
        deadline: Option<Timestamp>,
    },
    /// `failed` failed and the next attempt is dispatched at `at`.
    RetryWait {
        /// The attempt that failed.
        failed: Attempt,
        /// When the next attempt is dispatched.
        at: Timestamp,
    },
    /// Finished well.
    Succeeded,
    /// Failed for good.
    Failed,
    /// Never ran: its `when` could not be met, or fail-fast held it back.
    Skipped,
    /// Stopped by a cancel.
    Cancelled,
    /// Owned by the core, not by a worker: a Cell's pause, which ends at `until` (or when a
    /// person resumes the rollout, when `until` is `None`). Never dispatched.
    Held {
        /// When the pause ends by itself.
        until: Option<Timestamp>,
    },
}

impl NodeState {
    fn is_terminal(self) -> bool {
        matches!(
            self,
            NodeState::Succeeded | NodeState::Failed | NodeState::Skipped | NodeState::Cancelled
        )
    }

    /// Returns when a `Tick` must look at a node in this state: a retry's start, or a
    /// timeout backstop.
    fn timer(self) -> Option<Timestamp> {
        match self {
            NodeState::RetryWait { at, .. } => Some(at),
            NodeState::Running { deadline, .. } => deadline,
            NodeState::Held { until } => until,
            _ => None,
        }
    }

    fn in_flight(self) -> Option<Attempt> {
        match self {
            NodeState::Queued { attempt } | NodeState::Running { attempt, .. } => Some(attempt),
            _ => None,
        }
    }

    fn shown(self) -> State {
        match self {
            NodeState::Pending => State::Pending,
            NodeState::Queued { .. }
            | NodeState::Running { .. }
            | NodeState::RetryWait { .. }
            | NodeState::Held { .. } => State::Running,
            NodeState::Succeeded => State::Succeeded,
            NodeState::Failed => State::Failed,
            NodeState::Skipped => State::Skipped,
            NodeState::Cancelled => State::Cancelled,
        }
    }
}

/// One node of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// The node's name.
    pub name: NodeName,
    /// Its state.
    pub state: NodeState,
    /// Attempts dispatched so far.
    pub attempts: u32,
    /// The output of the successful attempt.
    pub output: Option<String>,
    /// Why the last attempt failed, or why the node was skipped or cancelled.
    pub error: Option<String>,
    /// When the first attempt began.
    pub started_at: Option<Timestamp>,
    /// When the node reached its final state.
    pub finished_at: Option<Timestamp>,
    /// The order in which nodes finished, for choosing the initiator of what follows.
    pub finish_order: Option<u32>,
    /// In a chain: the task this node runs (or whose action it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// In a chain: what started the node, instead of its needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<StartedBy>,
}

/// What started a node of a chain: the node, ignitor or run that did, and the data it passes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartedBy {
    /// `BATON_INITIATOR` / `ORCA_INITIATOR`.
    pub initiator: String,
    /// `BATON_DATA` / `ORCA_DATA`.
    pub data: String,
}

impl Node {
    fn new(name: NodeName) -> Node {
        Node {
            name,
            state: NodeState::Pending,
            attempts: 0,
            output: None,
            error: None,
            started_at: None,
            finished_at: None,
            finish_order: None,
            task: None,
            started_by: None,
        }
    }
}

/// A run's spec in its stored header: the failure policy; the nodes are stored apart.
mod spec_header {
    use baton_schemas::{FailurePolicy, WorkflowSpec};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Header {
        failure_policy: FailurePolicy,
    }

    pub(super) fn serialize<S: Serializer>(spec: &WorkflowSpec, s: S) -> Result<S::Ok, S::Error> {
        Header {
            failure_policy: spec.failure_policy,
        }
        .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<WorkflowSpec, D::Error> {
        let header = Header::deserialize(d)?;
        Ok(WorkflowSpec {
            failure_policy: header.failure_policy,
            nodes: Vec::new(),
        })
    }
}

/// What a run is of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RunKind {
    /// A registered workflow: its nodes are known at the start.
    #[default]
    Workflow,
    /// A chain of tasks started by an ignitor: nodes are added as tasks start each other.
    Chain,
    /// A run of an application group: forward, rollback, uninstall or delete.
    Group,
    /// A Cell's rollout: nodes are added as its steps go (`cells.rs`).
    Cell,
}

/// One run of a workflow.
///
/// Its serde form is the run's header, without its nodes: the store keeps every node apart
/// (spec and state), so that a change writes what changed, not the whole run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// The run id.
    pub id: RunId,
    /// The workflow's name.
    pub workflow: WorkflowName,
    /// The workflow as it was when the run started; later registrations do not change it.
    #[serde(with = "spec_header")]
    pub spec: WorkflowSpec,
    /// Where the run is.
    pub phase: RunPhase,
    /// Who started it.
    pub initiator: String,
    /// The trigger data.
    pub data: String,
    /// The nodes, in spec order.
    #[serde(skip)]
    pub nodes: Vec<Node>,
    /// When it started.
    pub created_at: Timestamp,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
    /// What the run is of.
    #[serde(default)]
    pub kind: RunKind,
    /// Why the run failed as a whole, before any node could (a trigger set aside).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How many nodes have reached a final state.
    pub(crate) finished_count: u32,
    /// The finish order up to which a chain has started what follows its nodes.
    #[serde(default)]
    pub(crate) followed_up_to: u32,
    /// The edges and counters derived from the spec and the node states; not stored.
    #[serde(skip)]
    graph: Graph,
    /// Nodes changed since the store last wrote them, and since the core last looked at
    /// their timers; not stored.
    #[serde(skip)]
    touched: Touched,
}

/// The nodes of a run that changed: `unsaved` until the store writes them, `untimed` until
/// the core has re-read their timers. Every change of a node goes through [`Run::node_mut`]
/// or [`Run::push_node`], which record it here.
#[derive(Clone, Debug, Default)]
struct Touched {
    unsaved: BTreeSet<u32>,
    untimed: Vec<u32>,
    /// The timer each node has in the core's timer index.
    timers: BTreeMap<u32, Timestamp>,
}

/// Bookkeeping: two runs with the same nodes are equal whatever changed last.
impl PartialEq for Touched {
    fn eq(&self, _: &Touched) -> bool {
        true
    }
}

/// What a run derives from its spec and node states so that an event costs what it touches,
/// not the size of the run: node indices by name, edges both ways, and per node how many of
/// its needs are still open, failed, or ended other than succeeded. Rebuilt from the nodes
/// whenever their number changes (at a run's start, after a restore, when a chain grows).
#[derive(Clone, Debug, Default)]
struct Graph {
    /// How many nodes it was built for.
    built_for: usize,
    index: HashMap<NodeName, u32>,
    needs: Vec<Vec<u32>>,
    dependents: Vec<Vec<u32>>,
    /// Per node: needs not final yet.
    open: Vec<u32>,
    /// Per node: needs that failed.
    failed: Vec<u32>,
    /// Per node: needs that ended other than succeeded.
    unsuccessful: Vec<u32>,
    /// Pending nodes whose readiness may have changed, for the next `advance`.
    candidates: BTreeSet<u32>,
    failed_nodes: u32,
    cancelled_nodes: u32,
    /// The node that failed first.
    first_failed: Option<u32>,
}

/// Derived data: two runs with the same nodes are equal whatever their graphs hold.
impl PartialEq for Graph {
    fn eq(&self, _: &Graph) -> bool {
        true
    }
}

impl Graph {
    fn build(r: &Run) -> Graph {
        let n = r.nodes.len();
        let index: HashMap<NodeName, u32> = r
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (node.name.clone(), i as u32))
            .collect();
        let needs: Vec<Vec<u32>> = r
            .spec
            .nodes
            .iter()
            .map(|spec| {
                spec.needs
                    .iter()
                    .filter_map(|n| index.get(n).copied())
                    .collect()
            })
            .collect();
        let mut graph = Graph {
            built_for: n,
            dependents: vec![Vec::new(); n],
            open: vec![0; n],
            failed: vec![0; n],
            unsuccessful: vec![0; n],
            ..Graph::default()
        };
        for (i, node_needs) in needs.iter().enumerate() {
            for &j in node_needs {
                graph.dependents[j as usize].push(i as u32);
                let state = r.nodes[j as usize].state;
                graph.count_need(i, state);
            }
        }
        for (i, node) in r.nodes.iter().enumerate() {
            match node.state {
                NodeState::Pending => {
                    graph.candidates.insert(i as u32);
                }
                NodeState::Failed => graph.failed_nodes += 1,
                NodeState::Cancelled => graph.cancelled_nodes += 1,
                _ => {}
            }
        }
        graph.first_failed = r
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.state == NodeState::Failed)
            .min_by_key(|(_, n)| n.finish_order)
            .map(|(i, _)| i as u32);
        graph.index = index;
        graph.needs = needs;
        graph
    }

    /// Counts one need of node `i` in `state`.
    fn count_need(&mut self, i: usize, state: NodeState) {
        if !state.is_terminal() {
            self.open[i] += 1;
            return;
        }
        if state == NodeState::Failed {
            self.failed[i] += 1;
        }
        if state != NodeState::Succeeded {
            self.unsuccessful[i] += 1;
        }
    }
}

impl Run {
    /// Returns a new run of `spec` with every node pending, all of them to be written.
    pub(crate) fn new(
        id: RunId,
        workflow: WorkflowName,
        spec: WorkflowSpec,
        kind: RunKind,
        initiator: String,
        data: String,
        now: Timestamp,
    ) -> Run {
        let nodes = spec
            .nodes
            .iter()
            .map(|n| Node::new(n.name.clone()))
            .collect();
        let mut run = Run {
            id,
            workflow,
            spec,
            phase: RunPhase::Running,
            initiator,
            data,
            nodes,
            created_at: now,
            finished_at: None,
            kind,
            error: None,
            finished_count: 0,
            followed_up_to: 0,
            graph: Graph::default(),
            touched: Touched::default(),
        };
        for i in 0..run.nodes.len() {
            run.touch(i);
        }
        run
    }

    /// Returns a run as the store kept it: its header and its nodes with their specs, in
    /// order.
    pub fn from_parts(mut header: Run, nodes: Vec<(NodeSpec, Node)>) -> Run {
        let (specs, nodes): (Vec<NodeSpec>, Vec<Node>) = nodes.into_iter().unzip();
        header.spec.nodes = specs;
        header.nodes = nodes;
        header
    }

    /// Returns node `i` for a change, and records that it changed.
    pub(crate) fn node_mut(&mut self, i: usize) -> &mut Node {
        self.touch(i);
        &mut self.nodes[i]
    }

    /// Adds a node (a chain grows as tasks start each other) and returns its index.
    pub(crate) fn push_node(&mut self, spec: NodeSpec, node: Node) -> usize {
        self.spec.nodes.push(spec);
        self.nodes.push(node);
        let i = self.nodes.len() - 1;
        self.touch(i);
        i
    }

    /// Records that node `i` changed. `untimed` may hold a node twice; reading its timer
    /// twice is harmless.
    fn touch(&mut self, i: usize) {
        let i = i as u32;
        self.touched.unsaved.insert(i);
        self.touched.untimed.push(i);
    }

    /// Returns, and forgets, the nodes changed since the last call, for the store.
    pub(crate) fn take_unsaved(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.touched.unsaved)
            .into_iter()
            .collect()
    }

    /// Returns node `i`'s spec and state, as the store keeps them.
    pub fn node_record(&self, i: u32) -> (&NodeSpec, &Node) {
        (&self.spec.nodes[i as usize], &self.nodes[i as usize])
    }

    /// Returns the status users see.
    pub fn status(&self) -> RunStatus {
        RunStatus {
            run: self.id.to_string(),
            workflow: self.workflow.to_string(),
            state: self.phase.state(),
            error: self.error.clone(),
            nodes: self
                .nodes
                .iter()
                .map(|n| NodeStatus {
                    name: n.name.to_string(),
                    state: n.state.shown(),
                    attempts: n.attempts,
                    output: n.output.clone(),
                    error: n.error.clone(),
                    started_at: n.started_at.map(|t| t.to_string()),
                    finished_at: n.finished_at.map(|t| t.to_string()),
                })
                .collect(),
        }
    }

    fn index(&self, name: &NodeName) -> Option<usize> {
        if self.graph.built_for == self.nodes.len() {
            return self.graph.index.get(name).map(|&i| i as usize);
        }
        self.nodes.iter().position(|n| &n.name == name)
    }

    /// Rebuilds the derived graph if the nodes changed in number since it was built.
    fn ensure_graph(&mut self) {
        if self.graph.built_for != self.nodes.len() {
            self.graph = Graph::build(self);
        }
    }
}

/// The planner's whole state: registered workflows and every run.
#[derive(Clone, Debug, Default)]
pub struct Core {
    config: CoreConfig,
    workflows: BTreeMap<WorkflowName, Workflow>,
    runs: BTreeMap<RunId, Run>,
    tasks: BTreeMap<String, TaskEntry>,
    ignitors: BTreeMap<String, IgnitorEntry>,
    changed_runs: BTreeSet<RunId>,
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
    /// Application groups by name (see `groups.rs`).
    groups: BTreeMap<String, GroupEntry>,
    changed_groups: BTreeSet<String>,
    // --- Cells (`cells.rs`) ---
    cells: BTreeMap<String, CellEntry>,
    templates: BTreeMap<String, baton_schemas::analysis::AnalysisTemplate>,
    changed_cells: BTreeSet<String>,
    changed_templates: BTreeSet<String>,
}

/// Everything a store keeps of the core's state, as [`Changes`] wrote it: what
/// [`Core::restore`] starts from.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Registered workflows.
    pub workflows: Vec<Workflow>,
    /// Registered tasks and their status.
    pub tasks: Vec<TaskEntry>,
    /// Registered ignitors and their fires.
    pub ignitors: Vec<IgnitorEntry>,
    /// Application groups.
    pub groups: Vec<GroupEntry>,
    /// Every run.
    pub runs: Vec<Run>,
    /// Registered Cells and their status.
    pub cells: Vec<CellEntry>,
    /// Registered analysis templates.
    pub templates: Vec<baton_schemas::analysis::AnalysisTemplate>,
    /// The cluster objects documents were applied from.
    pub sources: Vec<(Registered, ClusterSource)>,
}

/// What the store must write after a turn.
#[derive(Debug, Default)]
pub struct Changes<'a> {
    /// Changed runs, each with the indices of its changed nodes.
    pub runs: Vec<(&'a Run, Vec<u32>)>,
    /// Changed workflows.
    pub workflows: Vec<&'a Workflow>,
    /// Changed tasks (spec or status).
    pub tasks: Vec<&'a TaskEntry>,
    /// Changed ignitors (spec or fire times).
    pub ignitors: Vec<&'a IgnitorEntry>,
    /// Removed documents.
    pub removed: Vec<Registered>,
    /// Changed application groups.
    pub groups: Vec<&'a GroupEntry>,
    /// Changed Cells (spec or status).
    pub cells: Vec<&'a CellEntry>,
    /// Changed analysis templates.
    pub templates: Vec<&'a baton_schemas::analysis::AnalysisTemplate>,
    /// Runs pruned, with their number of nodes: their header and node records go.
    pub pruned: Vec<(RunId, u32)>,
    /// Changed cluster sources (`None`: the record goes).
    pub sources: Vec<(Registered, Option<&'a ClusterSource>)>,
}

impl Changes<'_> {
    /// Returns whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
            && self.workflows.is_empty()
            && self.tasks.is_empty()
            && self.ignitors.is_empty()
            && self.removed.is_empty()
            && self.groups.is_empty()
            && self.cells.is_empty()
            && self.templates.is_empty()
            && self.pruned.is_empty()
            && self.sources.is_empty()
    }
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

    /// Returns the earliest time at which a `Tick` would change anything.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let runs = self.timers.first().map(|(at, _, _)| *at);
        let fires = self.ignitors.values().filter_map(|i| i.next_fire);
        let prune = self
            .finished
            .first()
            .map(|(at, _)| at.after(self.config.run_retention));
        runs.into_iter().chain(fires).chain(prune).min()
    }

    /// Removes the finished runs whose retention has passed at `now`. A run a Cell's
    /// rollout still names is kept another retention period.
    fn prune_runs(&mut self, now: Timestamp) {
        let retention = self.config.run_retention;
        while let Some((at, id)) = self.finished.first().cloned() {
            if at.after(retention) > now {
                break;
            }
            self.finished.pop_first();
            let named = self
                .cells
                .values()
                .any(|c| c.status.rollout.as_ref().is_some_and(|ro| ro.run == id));
            if named {
                self.finished.insert((now, id));
                continue;
            }
            if let Some(r) = self.runs.remove(&id) {
                for (i, at) in &r.touched.timers {
                    self.timers.remove(&(*at, id.clone(), *i));
                }
                self.changed_runs.remove(&id);
                self.pruned.push((id, r.nodes.len() as u32));
            }
        }
    }

    /// Records that `run` changed: the store writes it, and the core re-reads the timers of
    /// its changed nodes.
    pub(crate) fn mark_changed(&mut self, run: &RunId) {
        self.changed_runs.insert(run.clone());
        // A run marked twice in one input may be listed twice: reading timers is idempotent.
        if self.untimed_runs.last() != Some(run) {
            self.untimed_runs.push(run.clone());
        }
    }

    /// Brings the timer index up to date with the nodes changed since the last call.
    fn sync_timers(&mut self) {
        for id in std::mem::take(&mut self.untimed_runs) {
            let Some(r) = self.runs.get_mut(&id) else {
                continue;
            };
            let over = r.phase.is_over();
            if let Some(at) = r.finished_at {
                self.finished.insert((at, id.clone()));
            }
            for i in std::mem::take(&mut r.touched.untimed) {
                let node = &r.nodes[i as usize];
                if let Some(task) = &node.task
                    && (over || node.state.is_terminal())
                    && let Some(live) = self.live_tasks.get_mut(task)
                {
                    live.remove(&(id.clone(), i));
                    if live.is_empty() {
                        self.live_tasks.remove(task);
                    }
                }
                let wanted = if over {
                    None
                } else {
                    r.nodes[i as usize].state.timer()
                };
                let had = r.touched.timers.get(&i).copied();
                if had == wanted {
                    continue;
                }
                if let Some(at) = had {
                    self.timers.remove(&(at, id.clone(), i));
                    r.touched.timers.remove(&i);
                }
                if let Some(at) = wanted {
                    self.timers.insert((at, id.clone(), i));
                    r.touched.timers.insert(i, at);
                }
            }
            if over {
                for (i, at) in std::mem::take(&mut r.touched.timers) {
                    self.timers.remove(&(at, id.clone(), i));
                }
            }
        }
    }

    /// Returns, and forgets, what changed since the last call: what the service must write
    /// to its store.
    pub fn take_changes(&mut self) -> Changes<'_> {
        let runs = std::mem::take(&mut self.changed_runs);
        let workflows = std::mem::take(&mut self.changed_workflows);
        let tasks = std::mem::take(&mut self.changed_tasks);
        let ignitors = std::mem::take(&mut self.changed_ignitors);
        let groups = std::mem::take(&mut self.changed_groups);
        let cells = std::mem::take(&mut self.changed_cells);
        let templates = std::mem::take(&mut self.changed_templates);
        // A changed name with no entry left was removed.
        let removed = workflows
            .iter()
            .filter(|w| !self.workflows.contains_key(*w))
            .map(|w| Registered::Workflow(w.clone()))
            .chain(
                tasks
                    .iter()
                    .filter(|t| !self.tasks.contains_key(*t))
                    .map(|t| Registered::Task(t.clone())),
            )
            .chain(
                ignitors
                    .iter()
                    .filter(|i| !self.ignitors.contains_key(*i))
                    .map(|i| Registered::Ignitor(i.clone())),
            )
            .chain(
                cells
                    .iter()
                    .filter(|c| !self.cells.contains_key(*c))
                    .map(|c| Registered::Cell(c.clone())),
            )
            .chain(
                templates
                    .iter()
                    .filter(|t| !self.templates.contains_key(*t))
                    .map(|t| Registered::AnalysisTemplate(t.clone())),
            )
            .collect();
        let pruned = std::mem::take(&mut self.pruned);
        let sources = std::mem::take(&mut self.changed_sources);
        let mut unsaved = Vec::with_capacity(runs.len());
        for id in &runs {
            if let Some(r) = self.runs.get_mut(id) {
                unsaved.push(r.take_unsaved());
            }
        }
        Changes {
            runs: runs
                .iter()
                .filter_map(|r| self.runs.get(r))
                .zip(unsaved)
                .collect(),
            workflows: workflows
                .iter()
                .filter_map(|w| self.workflows.get(w))
                .collect(),
            tasks: tasks.iter().filter_map(|t| self.tasks.get(t)).collect(),
            ignitors: ignitors
                .iter()
                .filter_map(|i| self.ignitors.get(i))
                .collect(),
            removed,
            groups: groups.iter().filter_map(|g| self.groups.get(g)).collect(),
            cells: cells.iter().filter_map(|c| self.cells.get(c)).collect(),
            templates: templates
                .iter()
                .filter_map(|t| self.templates.get(t))
                .collect(),
            pruned,
            sources: sources
                .into_iter()
                .map(|d| {
                    let source = self.sources.get(&d);
                    (d, source)
                })
                .collect(),
        }
    }

    /// Applies one input at `now` and returns what must be done.
    pub fn apply(&mut self, input: Input, now: Timestamp) -> Vec<Action> {
        let mut actions = self.decide(input, now);
        self.follow_groups(now, &mut actions);
        self.sync_timers();
        actions
    }

    fn decide(&mut self, input: Input, now: Timestamp) -> Vec<Action> {
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
            Input::RegisterIgnitor(ignitor) => self.register_ignitor(*ignitor, now, &mut actions),
            Input::RegisterGroup(group) => self.apply_group(*group, now, &mut actions),
            Input::Remove(Registered::Group(name)) => self.delete_group(&name, now, &mut actions),
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
            Input::RegisterCell(cell) => self.register_cell(*cell, now, &mut actions),
            Input::RegisterAnalysisTemplate(t) => self.register_template(*t),
            Input::Remove(Registered::Cell(name)) => self.remove_cell(&name, now, &mut actions),
            Input::Remove(Registered::AnalysisTemplate(name)) => self.remove_template(&name),
            Input::Observed(observation) => self.observe(*observation, now, &mut actions),
            Input::CellCommand {
                cell,
                command,
                expect,
                from,
            } => self.cell_command(&cell, command, &expect, from, now, &mut actions),
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
                self.runs.insert(run.clone(), rejected);
                self.mark_changed(&run);
                actions.push(Action::RunFinished {
                    run,
                    state: State::Failed,
                });
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
                match outcome {
                    Outcome::Succeeded { output } => {
                        let n = r.node_mut(i);
                        n.output = Some(output);
                        n.error = None;
                        finish(r, i, NodeState::Succeeded, finished_at.max(now));
                    }
                    Outcome::Failed { error, output } => {
                        // A traffic write AWS refused, or one out of date, fails the same way
                        // again: no retry.
                        let retry = !(r.spec.nodes[i].kind == NodeKind::Traffic
                            && baton_schemas::traffic::is_final_failure(output.as_deref()));
                        r.node_mut(i).output = output;
                        attempt_failed(r, i, attempt, error, retry, now);
                    }
                }
                self.advance(&run, now, &mut actions);
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
                attempt_failed(r, i, attempt, reason, false, now);
                self.advance(&run, now, &mut actions);
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
                                let job = dispatch(r, i, failed.next());
                                actions.push(Action::Dispatch(Box::new(job)));
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
                            }
                            _ => {}
                        }
                    }
                    self.advance(&run, now, &mut actions);
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
                self.runs.insert(id.clone(), run);
                self.advance(&id, now, actions);
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
                self.runs.insert(id.clone(), run);
                self.mark_changed(&id);
                actions.push(Action::RunFinished {
                    run: id,
                    state: State::Failed,
                });
            }
        }
    }

    /// Cancels a run that is not over: nothing new starts, nodes not finished end
    /// `cancelled`, and workers are told to stop.
    fn cancel_run(&mut self, run: &RunId, now: Timestamp, actions: &mut Vec<Action>) {
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
        self.advance(run, now, actions);
    }

    fn node_mut(&mut self, run: &RunId, node: &NodeName) -> Option<(&mut Run, usize)> {
        let r = self.runs.get_mut(run)?;
        r.ensure_graph();
        let i = r.index(node)?;
        Some((r, i))
    }

    /// Starts or skips every pending node whose needs allow it, then ends the run when every
    /// node is final. Marks the run changed.
    fn advance(&mut self, run: &RunId, now: Timestamp, actions: &mut Vec<Action>) {
        self.mark_changed(run);
        self.follow_chain(run, now, actions);
        self.follow_cell(run, now, actions);
        let r = self
            .runs
            .get_mut(run)
            .expect("advance is called on known runs");
        if r.phase.is_over() && r.finished_at.is_some() {
            return;
        }
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
                        let job = dispatch(r, i, Attempt::FIRST);
                        actions.push(Action::Dispatch(Box::new(job)));
                    }
                }
            }
        }
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
            actions.push(Action::RunFinished {
                run: run.clone(),
                state: r.phase.state(),
            });
        }
    }
}

/// Returns the nodes that node `i` needs, in the order its spec lists them.
fn needs_of(r: &Run, i: usize) -> Vec<&Node> {
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

enum Readiness {
    Wait,
    Ready,
    Skip(String),
}

/// Decides whether pending node `i` can start, must wait, or can never run, from the counts
/// of its needs (the graph is current: `advance` made sure).
fn readiness(r: &Run, i: usize) -> Readiness {
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
fn finish(r: &mut Run, i: usize, state: NodeState, now: Timestamp) {
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
fn attempt_failed(
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

/// Moves node `i` to `Queued` for `attempt` and returns its job, with the data its needs pass.
fn dispatch(r: &mut Run, i: usize, attempt: Attempt) -> Job {
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
    let job = Job {
        v: SCHEMA_VERSION,
        run: r.id.clone(),
        workflow: r.workflow.clone(),
        node: spec.name.clone(),
        attempt,
        kind: spec.kind,
        timeout_ms: spec.timeout.map(|t| t.as_millis()),
        exec: (spec.kind == NodeKind::Exec).then(|| ExecJob {
            command: spec.command.clone().unwrap_or_default(),
            env: spec.env.clone(),
            working_dir: spec.working_dir.clone(),
        }),
        pod: (spec.kind == NodeKind::Pod).then(|| {
            Box::new(PodJob {
                template: spec.template.as_deref().cloned().unwrap_or_default(),
                namespace: spec.namespace.clone(),
                container: spec.container.clone(),
                task: r.nodes[i].task.clone(),
            })
        }),
        webhook: spec.webhook.clone(),
        publish: spec.publish.clone(),
        helm: spec.helm.clone(),
        traffic: spec.traffic.clone(),
        analysis: spec.analysis.clone(),
        inputs,
        inputs_ref: None,
    };
    let n = r.node_mut(i);
    n.state = NodeState::Queued { attempt };
    n.attempts = attempt.0;
    job
}

mod chains;
pub use chains::fire_run_id;
pub use chains::{IgnitorEntry, TaskEntry, TaskState, TaskStatus};

mod groups;
pub use groups::{GroupEntry, GroupState, Pending, Remediation, RemediationOutcome, Succeeded};
mod cells;
pub use cells::{
    Blocked, CellCommand, CellEntry, CellPhase, CellStatus, CellTrigger, Expect, Observation,
    RuleSeen, SeenTargetGroup, TriggerPosition,
};
pub mod group_graph;
pub mod ids;

#[cfg(test)]
mod cells_replay_tests;
#[cfg(test)]
mod cells_tests;
#[cfg(test)]
mod chains_tests;
#[cfg(test)]
mod core_fuzz_tests;
#[cfg(test)]
mod core_tests;
#[cfg(test)]
mod replay_tests;
#[cfg(test)]
mod testkit;
