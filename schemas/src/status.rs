//! The run status the API serves and `baton status -o json` prints.

use serde::{Deserialize, Serialize};

/// The state of a run or of one node, as users see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum State {
    /// Not started yet.
    Pending,
    /// Started and not finished (a node waiting to retry is running too).
    Running,
    /// Finished well.
    Succeeded,
    /// Finished badly.
    Failed,
    /// Never ran: its conditions could no longer be met.
    Skipped,
    /// Stopped by a cancel.
    Cancelled,
}

impl State {
    /// Returns whether nothing more will happen.
    pub fn is_terminal(self) -> bool {
        !matches!(self, State::Pending | State::Running)
    }

    /// Returns the state's name as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Running => "running",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Skipped => "skipped",
            State::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run and its nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    /// The run id.
    pub run: String,
    /// The workflow's name.
    pub workflow: String,
    /// The run's state.
    pub state: State,
    /// Why the run failed as a whole, before any node could (a trigger set aside).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every node, in spec order.
    pub nodes: Vec<NodeStatus>,
}

/// One node of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// The node's name.
    pub name: String,
    /// The node's state.
    pub state: State,
    /// How many attempts were started.
    pub attempts: u32,
    /// The output of the successful attempt.
    pub output: Option<String>,
    /// Why the last attempt failed, or why the node was skipped or cancelled.
    pub error: Option<String>,
    /// When the first attempt started (RFC 3339).
    pub started_at: Option<String>,
    /// When the node finished (RFC 3339).
    pub finished_at: Option<String>,
    /// The nodes it needs: the run's graph, as a dashboard draws it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// What its last attempt acts on outside Baton: `pod <namespace>/<name>`,
    /// `release <namespace>/<name>`, or the load balancer rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub touches: Option<String>,
}

/// A run without its nodes: one line of a runs list ([`RunPage`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// The run id.
    pub run: String,
    /// The workflow's name.
    pub workflow: String,
    /// The run's state.
    pub state: State,
    /// Why the run failed as a whole, before any node could.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it started (RFC 3339).
    pub created_at: String,
    /// When it finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// How many nodes it has.
    pub nodes: usize,
    /// How many nodes are in each state (states with none left out).
    pub counts: std::collections::BTreeMap<State, usize>,
}

/// One page of runs, newest first (`GET /v1/run-summaries`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunPage {
    /// The runs of this page.
    pub runs: Vec<RunSummary>,
    /// Where the next page starts (its `continue` parameter); none on the last page.
    #[serde(rename = "continue", default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}
