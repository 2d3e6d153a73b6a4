//! The core's test kit: what the core's tests do to a core (apply documents, report a job's
//! end as a worker would) and read from what it answers (the jobs it dispatched), written
//! once for the tests of runs, chains, groups and Cells.

use baton_schemas::parse_documents;
use baton_schemas::wire::{Event, Job, Outcome, Timestamp};

use crate::{Action, Core, Input};

/// Applies every document of `text` at `now`; returns every action.
pub(crate) fn apply_docs(core: &mut Core, text: &str, now: Timestamp) -> Vec<Action> {
    let mut actions = Vec::new();
    for doc in parse_documents("test.yaml", text, now).unwrap() {
        actions.extend(core.apply(Input::from(doc), now));
    }
    actions
}

/// Returns the jobs dispatched, in order.
pub(crate) fn jobs(actions: &[Action]) -> Vec<&Job> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Dispatch(job) => Some(job.as_ref()),
            _ => None,
        })
        .collect()
}

/// Returns the one job dispatched, checking there is exactly one.
pub(crate) fn only_job(actions: &[Action]) -> Job {
    let jobs = jobs(actions);
    assert_eq!(jobs.len(), 1, "{actions:?}");
    jobs[0].clone()
}

/// Returns a success with `output`.
pub(crate) fn ok(output: &str) -> Outcome {
    Outcome::Succeeded {
        output: output.into(),
    }
}

/// Returns the event a worker sends when `job` ended with `outcome` at `at`.
pub(crate) fn finished_job(job: &Job, outcome: Outcome, at: Timestamp) -> Input {
    Input::Bus(Event::NodeFinished {
        run: job.run.clone(),
        node: job.node.clone(),
        attempt: job.attempt,
        started_at: at,
        finished_at: at,
        outcome,
    })
}
