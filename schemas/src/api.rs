//! The HTTP API's request and answer bodies, shared by the planner that serves them and the
//! CLI and tests that call it. Status views are in [`crate::views`], run status in
//! [`crate::status`].

use serde::{Deserialize, Serialize};

/// The body of `POST /v1/apply`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// The document: a Workflow, Task or Ignitor.
    pub document: serde_json::Value,
    /// Whether to start a run of it (workflows only).
    #[serde(default)]
    pub run: bool,
    /// The run's trigger data.
    #[serde(default)]
    pub data: String,
}

/// The answer of `POST /v1/apply`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyResponse {
    /// What was applied, as `Workflow/diamond`.
    pub applied: String,
    /// The run started, if one was.
    pub run: Option<String>,
}

/// The body of `POST /v1/workflows/{name}/runs`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StartRequest {
    /// The run's trigger data.
    #[serde(default)]
    pub data: String,
}

/// An answer naming a run.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunResponse {
    /// The run id.
    pub run: String,
}

/// The answer of a delete of a workflow, task or ignitor.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeleteResponse {
    /// What was deleted, as `Task/task1`.
    pub deleted: String,
}

/// The answer of a Cell command.
#[derive(Debug, Serialize, Deserialize)]
pub struct CellResponse {
    /// The Cell.
    pub cell: String,
    /// The command carried out (`resume`, `abort`, `promote`, `delete`).
    pub command: String,
}

/// The optional body of a Cell command: what the caller means it for.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellCommandRequest {
    /// The rollout's run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// The step the rollout is at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
}

/// An error answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// What went wrong, one entry per problem.
    pub errors: Vec<String>,
}

/// What a person asks of a Cell's rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CellCommand {
    /// Goes on past a pause, an inconclusive analysis, or a failed step (which is tried again).
    Resume,
    /// Stops the rollout: the stable version gets 100% and the version is blocked.
    Abort,
    /// Skips the remaining steps: the new version gets 100% now. On a blocked version, it
    /// unblocks it and switches to it at once.
    Promote,
}

impl CellCommand {
    /// Returns the command's name.
    pub fn as_str(self) -> &'static str {
        match self {
            CellCommand::Resume => "resume",
            CellCommand::Abort => "abort",
            CellCommand::Promote => "promote",
        }
    }
}

impl std::str::FromStr for CellCommand {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "resume" => Ok(CellCommand::Resume),
            "abort" => Ok(CellCommand::Abort),
            "promote" => Ok(CellCommand::Promote),
            other => Err(format!(
                "unknown cell command {other:?} (use resume, abort or promote)"
            )),
        }
    }
}
