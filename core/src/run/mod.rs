//! A run and its nodes: their lifecycles, what is stored of them, and what they derive.

use std::collections::{BTreeMap, BTreeSet};

use baton_schemas::status::State;
use baton_schemas::wire::Timestamp;
use baton_schemas::{Attempt, NodeName, NodeSpec, RunId, WorkflowName, WorkflowSpec};
use serde::{Deserialize, Serialize};

mod graph;
mod status;
pub(crate) mod step;
pub(crate) mod summary;

use graph::Graph;

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
    pub(crate) fn state(self) -> State {
        match self {
            RunPhase::Running | RunPhase::FailingFast => State::Running,
            RunPhase::Succeeded => State::Succeeded,
            RunPhase::Failed => State::Failed,
            RunPhase::Cancelled => State::Cancelled,
        }
    }

    pub(crate) fn is_over(self) -> bool {
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
    pub(crate) fn is_terminal(self) -> bool {
        matches!(
            self,
            NodeState::Succeeded | NodeState::Failed | NodeState::Skipped | NodeState::Cancelled
        )
    }

    /// Returns when a `Tick` must look at a node in this state: a retry's start, or a
    /// timeout backstop.
    pub(crate) fn timer(self) -> Option<Timestamp> {
        match self {
            NodeState::RetryWait { at, .. } => Some(at),
            NodeState::Running { deadline, .. } => deadline,
            NodeState::Held { until } => until,
            _ => None,
        }
    }

    pub(crate) fn in_flight(self) -> Option<Attempt> {
        match self {
            NodeState::Queued { attempt } | NodeState::Running { attempt, .. } => Some(attempt),
            _ => None,
        }
    }

    pub(crate) fn shown(self) -> State {
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
    /// The node whose end started it (the initiator names only its task): the edge a graph
    /// of the chain draws. None for a node an ignitor started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<NodeName>,
}

impl Node {
    pub(crate) fn new(name: NodeName) -> Node {
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
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
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
    pub(crate) graph: Graph,
    /// Nodes changed since the store last wrote them, and since the core last looked at
    /// their timers; not stored.
    #[serde(skip)]
    pub(crate) touched: Touched,
}

/// The nodes of a run that changed: `unsaved` until the store writes them, `untimed` until
/// the core has re-read their timers. Every change of a node goes through [`Run::node_mut`]
/// or [`Run::push_node`], which record it here.
#[derive(Clone, Debug, Default)]
pub(crate) struct Touched {
    pub(crate) unsaved: BTreeSet<u32>,
    pub(crate) untimed: Vec<u32>,
    /// The timer each node has in the core's timer index.
    pub(crate) timers: BTreeMap<u32, Timestamp>,
}

/// Bookkeeping: two runs with the same nodes are equal whatever changed last.
impl PartialEq for Touched {
    fn eq(&self, _: &Touched) -> bool {
        true
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
    pub(crate) fn touch(&mut self, i: usize) {
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

    pub(crate) fn index(&self, name: &NodeName) -> Option<usize> {
        if self.graph.built_for == self.nodes.len() {
            return self.graph.index.get(name).map(|&i| i as usize);
        }
        self.nodes.iter().position(|n| &n.name == name)
    }

    /// Rebuilds the derived graph if the nodes changed in number since it was built.
    pub(crate) fn ensure_graph(&mut self) {
        if self.graph.built_for != self.nodes.len() {
            self.graph = Graph::build(self);
        }
    }
}
