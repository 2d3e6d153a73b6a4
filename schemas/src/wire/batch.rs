//! Several events of one worker in one message: the completions of jobs that ended while the
//! worker was storing the one before. A fan-out's nodes end together by the thousand; one
//! stored message for each cost the bus as much again as the jobs themselves.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::EventEnvelope;

/// The schema version of an [`EventBatch`] (the batch's own shape; each event in it has its
/// own version, as a single event does).
pub const EVENT_BATCH_SCHEMA_VERSION: u32 = 1;

/// The token after `<p>.events.` that batches are published on (`_` is in no run id, so
/// the subject is no run's). A planner of a build before batches reads a message there as a
/// single event and sets it aside, so planners are upgraded first, as they always were.
pub const BATCH_SUBJECT_TOKEN: &str = "_batch";

/// Events on `<p>.events._batch`. Each event still names its run, node and attempt, and the
/// planner takes each as if it had come alone: one that was already counted (its job was
/// delivered again and finished again) is ignored there, as a repeated single event is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventBatch {
    /// [`EVENT_BATCH_SCHEMA_VERSION`].
    pub v: u32,
    /// The events, in the order the worker had them.
    pub events: Vec<BatchedEvent>,
}

/// One event of a batch: a single event's body, with the trace context a single event
/// carries in its headers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchedEvent {
    /// The event and its schema version.
    #[serde(flatten)]
    pub envelope: EventEnvelope,
    /// The W3C trace context of the execution that ended: the next dispatch is its child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// A batch as read: its version and each event still raw, so that one event a reader cannot
/// decode is set aside alone and the others are taken.
#[derive(Deserialize)]
pub struct RawEventBatch<'a> {
    /// The batch's schema version.
    pub v: u32,
    /// The events, undecoded.
    #[serde(borrow)]
    pub events: Vec<&'a RawValue>,
}
