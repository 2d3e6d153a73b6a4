//! The counts the planner's metrics are made of.

use super::*;
use crate::{AttemptOutcome, RunKind};
use baton_schemas::NodeKind;

#[test]
fn tally_counts_runs_and_attempts_once_each() {
    let wf = workflow(
        "  - {name: a, kind: noop, timeout: 10s, retries: {limit: 2}}\n  - {name: b, kind: noop, needs: [a]}\n",
    );
    let mut core = core_with(wf);
    assert!(core.take_tally().is_empty(), "registering starts no run");
    start(&mut core, "r");
    let started = core.take_tally();
    assert_eq!(started.runs_started, [(RunKind::Workflow, 1)].into());
    assert!(started.runs_finished.is_empty() && started.attempts.is_empty());

    // Attempt 1 times out, attempt 2 fails (a retryable failure), attempt 3 succeeds.
    let running = Input::Bus(Event::NodeStarted {
        run: RunId::new("r"),
        node: NodeName::new("a"),
        attempt: Attempt(1),
        at: T0,
    });
    core.apply(running, T0);
    core.apply(Input::Tick, T0.after(Duration::from_secs(70)));
    core.apply(Input::Tick, T0.after(Duration::from_secs(71)));
    core.apply(finished("r", "a", 2, failed("boom")), T0);
    // The same completion delivered again is not counted again.
    core.apply(finished("r", "a", 2, failed("boom")), T0);
    core.apply(Input::Tick, T0.after(Duration::from_secs(200)));
    core.apply(finished("r", "a", 3, ok("")), T0);
    core.apply(finished("r", "b", 1, ok("")), T0);
    let tally = core.take_tally();
    assert_eq!(
        tally.attempts,
        [
            ((NodeKind::Noop, AttemptOutcome::Succeeded), 2),
            ((NodeKind::Noop, AttemptOutcome::Failed), 1),
            ((NodeKind::Noop, AttemptOutcome::TimedOut), 1),
        ]
        .into()
    );
    assert_eq!(
        tally.runs_finished,
        [((RunKind::Workflow, State::Succeeded), 1)].into()
    );
    assert!(tally.runs_started.is_empty());
    assert!(core.take_tally().is_empty(), "taking the tally resets it");
}
