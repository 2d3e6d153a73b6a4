//! Several events of one worker in one message: the completions of jobs that ended while the
//! worker was storing the one before. A fan-out's nodes end together by the thousand; one
//! stored message for each cost the bus as much again as the jobs themselves.

use serde::{Deserialize, Serialize};

use super::Event;

/// The schema version of an [`EventBatch`]: above [`super::EVENT_SCHEMA_VERSION`], so that a
/// planner of an earlier version (which must be upgraded first) sets a batch aside as a
/// later version instead of misreading it.
pub const EVENT_BATCH_SCHEMA_VERSION: u32 = 3;

/// Events on `<p>.events._batch` (`_` is in no run id, so the subject is no run's). Each
/// event still names its run, node and attempt, and the planner takes each as if it had
/// come alone: one that was already counted (its job was delivered again and finished
/// again) is ignored there, as a repeated single event is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventBatch {
    /// [`EVENT_BATCH_SCHEMA_VERSION`].
    pub v: u32,
    /// The events, in the order the worker had them.
    pub events: Vec<BatchedEvent>,
}

/// One event of a batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchedEvent {
    /// The event, in [`super::EVENT_SCHEMA_VERSION`]'s shape.
    #[serde(flatten)]
    pub event: Event,
    /// The W3C trace context of the execution that ended, which a single event carries in
    /// its headers: the next dispatch is its child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// The token after `<p>.events.` that batches are published on.
pub const BATCH_SUBJECT_TOKEN: &str = "_batch";
