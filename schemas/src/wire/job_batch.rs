//! Several jobs of one kind in one message: the jobs one decision of the planner dispatches
//! together (a fan-out's nodes, by the thousand). One stored message, one delivery and one
//! ack for each cost the bus more than everything else a node does.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::Job;

/// The schema version of a [`JobBatch`] (the batch's own shape; each job in it has its own
/// version, as a single job does). A batch carries it in the [`super::headers::JOB_BATCH`]
/// header, which is what tells it from a single job on the same subject.
pub const JOB_BATCH_SCHEMA_VERSION: u32 = 1;

/// Jobs of one kind on `<p>.jobs.<kind>`, with the header [`super::headers::JOB_BATCH`].
/// Each job still names its run, node and attempt, and a worker runs each as if it had come
/// alone; the message is acknowledged once every job in it is reported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobBatch {
    /// [`JOB_BATCH_SCHEMA_VERSION`].
    pub v: u32,
    /// The jobs, in the order the planner decided them.
    pub jobs: Vec<BatchedJob>,
}

/// One job of a batch, with the trace context a single job carries in its headers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchedJob {
    /// The job.
    pub job: Job,
    /// The W3C trace context of the planner's dispatch: the execution is its child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// A batch as read: its version and each job still raw, so that one job a worker cannot
/// decode is set aside alone and the others run.
#[derive(Deserialize)]
pub struct RawJobBatch<'a> {
    /// The batch's schema version.
    pub v: u32,
    /// The jobs, undecoded.
    #[serde(borrow)]
    pub jobs: Vec<&'a RawValue>,
}

/// Returns the `Nats-Msg-Id` of a batch whose first job has id `first` and which holds
/// `count` jobs: `<first>.batch<count>`. The planner batches the jobs of one decision the
/// same way each time it makes it (again after a restart), so a batch sent again carries
/// the same id and the bus stores it once.
pub fn job_batch_msg_id(first: &str, count: usize) -> String {
    format!("{first}.batch{count}")
}
