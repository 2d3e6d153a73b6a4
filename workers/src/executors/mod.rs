//! Executors: one per job kind. Each turns a job into an outcome, and stops early when its
//! stop token fires (a run cancel, or a shutdown past its deadline).

pub mod exec;

use baton_schemas::NodeKind;
use baton_schemas::wire::{Job, Outcome};
use tokio_util::sync::CancellationToken;

/// How an effect ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    /// It ran to an outcome.
    Done(Outcome),
    /// The stop token fired first; what the effect did is not known to be complete.
    Stopped,
}

/// Runs `job` with the executor of its kind.
///
/// Idempotence: `noop` has no effect; `exec` runs a local process, and a job redelivered after
/// a worker died runs that process again (local processes cannot be adopted), which is why
/// `exec` commands should be safe to repeat.
pub async fn execute(job: &Job, stop: &CancellationToken) -> Effect {
    match job.kind {
        NodeKind::Noop => Effect::Done(Outcome::Succeeded {
            output: String::new(),
        }),
        NodeKind::Exec => exec::run(job, stop).await,
    }
}
