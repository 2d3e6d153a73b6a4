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
    /// No rollout is under way: refused (409) if one is.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idle: bool,
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

/// One change made through the API or a trigger, as the audit trail keeps it: a log line on
/// the `baton::audit` target and a message on `<p>.audit.<action>`, kept in `<P>_AUDIT`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The record's schema version.
    pub v: u32,
    /// When the change was asked for.
    pub at: crate::wire::Timestamp,
    /// What was asked: `apply`, `delete`, `start`, `trigger`, `cancel`, `cell`.
    pub action: String,
    /// Who asked: the token's name for the API (`None` for a request without a known token,
    /// or an API serving without authentication), `None` on the bus (the stream keeps no
    /// publisher; the server's permissions say who may publish there).
    pub actor: Option<String>,
    /// The actor's role on the API.
    pub role: Option<String>,
    /// Where it came from: `api` or `bus`.
    pub via: String,
    /// The client's address (API) or the subject and stream sequence (bus).
    pub from: String,
    /// The request (`POST /v1/apply`) or, on the bus, the subject.
    pub request: String,
    /// The API's answer (200, 401, 403, ...); `None` on the bus.
    pub status: Option<u16>,
}

impl AuditRecord {
    /// The version this build writes.
    pub const VERSION: u32 = 1;

    /// Returns the action a request changes something with, or `None` for a request that
    /// only reads (`GET`, `HEAD`).
    pub fn action_of(method: &str, path: &str) -> Option<&'static str> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            ("GET" | "HEAD" | "OPTIONS", _) => None,
            ("DELETE", _) => Some("delete"),
            (_, ["v1", "apply"]) => Some("apply"),
            (_, ["v1", "workflows", _, "runs"]) => Some("start"),
            (_, ["v1", "triggers", _]) => Some("trigger"),
            (_, ["v1", "runs", _, "cancel"]) => Some("cancel"),
            (_, ["v1", "cells", _, _]) => Some("cell"),
            _ => Some("other"),
        }
    }
}
