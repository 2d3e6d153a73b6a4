//! Baton's spec and wire types: the documents users write, the messages on the bus, the run
//! status the API serves, and the validation that runs before anything else does.
//!
//! This crate does no I/O. Parsing takes text and a name to report it by; validation returns
//! every problem it finds with the document's field path.

pub mod analysis;
pub mod api;
pub mod cell;
pub mod condition;
pub mod crd;
pub mod document;
pub mod duration;
pub mod group;
pub mod helm;
pub mod ids;
pub mod okra;
pub mod reports;
pub mod schedule;
pub mod status;
pub mod task;
pub mod traffic;
pub mod validate;
pub mod views;
pub mod watch;
pub mod wire;
pub mod workflow;
pub mod yaml;

pub use document::{Document, KindSet, Limits, SpecError, SpecErrors, parse_documents};
pub use duration::Duration;
pub use ids::{Attempt, NodeName, RunId, WorkflowName};
pub use workflow::{FailurePolicy, NodeKind, NodeSpec, Retries, When, Workflow, WorkflowSpec};

/// The API version of Baton's own documents.
pub const API_VERSION: &str = "baton.dev/v1alpha1";

/// The largest output a node may produce, in bytes: the size of a Kubernetes termination log.
///
/// An `exec` node whose output file is larger fails with an error naming the size; nothing is
/// truncated silently, since a cut JSON document would mislead the next node.
pub const OUTPUT_LIMIT_BYTES: usize = 4096;

/// Reads `null` as the default: a YAML key with nothing after it (`dependencies:`), as
/// Orca's and Orkestra's examples have.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    Ok(<Option<T> as serde::Deserialize>::deserialize(deserializer)?.unwrap_or_default())
}
