//! Which runs each input changed, for whoever watches them live (the API's watch streams).
//! Recorded only while someone watches: the planner turns it on when a watcher subscribes,
//! so an unwatched planner pays nothing for it.

use baton_schemas::RunId;

use crate::*;

impl Core {
    /// Starts or stops recording which runs change ([`Core::take_noticed`]).
    pub fn set_noticing(&mut self, on: bool) {
        self.noticing = on;
        if !on {
            self.noticed.clear();
        }
    }

    /// Returns the runs changed since the last call (each once, in the order first changed),
    /// while noticing is on.
    pub fn take_noticed(&mut self) -> Vec<RunId> {
        let mut runs = std::mem::take(&mut self.noticed);
        let mut seen = std::collections::HashSet::with_capacity(runs.len());
        runs.retain(|r| seen.insert(r.clone()));
        runs
    }

    /// Records that `run` changed, when noticing.
    pub(crate) fn notice(&mut self, run: &RunId) {
        if self.noticing && self.noticed.last() != Some(run) {
            self.noticed.push(run.clone());
        }
    }
}
