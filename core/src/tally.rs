//! What the core decided since it last said: runs started and ended, node attempts ended by
//! outcome. The planner turns these into its Prometheus counters after each turn; nothing
//! here is stored, so counts start at zero with the process, as a counter's do.

use std::collections::BTreeMap;

use baton_schemas::NodeKind;
use baton_schemas::status::State;

use crate::*;

/// How a node's attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AttemptOutcome {
    /// The worker reported success.
    Succeeded,
    /// The worker reported a failure.
    Failed,
    /// No result came within the node's timeout and its grace.
    TimedOut,
    /// The job could not be sent (larger than the bus takes) or was set aside as poison.
    Undeliverable,
}

impl AttemptOutcome {
    /// The outcome as a metric's label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::TimedOut => "timed_out",
            AttemptOutcome::Undeliverable => "undeliverable",
        }
    }
}

/// Counts since the last [`Core::take_tally`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Runs started, by what they are of.
    pub runs_started: BTreeMap<RunKind, u64>,
    /// Runs ended, by what they are of and how they ended.
    pub runs_finished: BTreeMap<(RunKind, State), u64>,
    /// Node attempts ended, by the node's kind and the attempt's outcome.
    pub attempts: BTreeMap<(NodeKind, AttemptOutcome), u64>,
}

impl Tally {
    /// Returns whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.runs_started.is_empty() && self.runs_finished.is_empty() && self.attempts.is_empty()
    }
}

impl Core {
    /// Returns what was counted since the last call, and starts counting anew.
    pub fn take_tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }

    /// Adds `run` to the runs, counting it started. Every new run comes through here.
    pub(crate) fn add_run(&mut self, run: Run) {
        *self.tally.runs_started.entry(run.kind).or_default() += 1;
        self.runs.insert(run.id.clone(), run);
    }

    /// Counts that a run of `kind` ended as `state`.
    pub(crate) fn count_run_end(&mut self, kind: RunKind, state: State) {
        *self.tally.runs_finished.entry((kind, state)).or_default() += 1;
    }

    /// Counts that an attempt of a node of `kind` ended with `outcome`.
    pub(crate) fn count_attempt(&mut self, kind: NodeKind, outcome: AttemptOutcome) {
        *self.tally.attempts.entry((kind, outcome)).or_default() += 1;
    }
}

impl RunKind {
    /// The kind as a metric's label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Workflow => "workflow",
            RunKind::Chain => "chain",
            RunKind::Group => "group",
            RunKind::Cell => "cell",
        }
    }
}
