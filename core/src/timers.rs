//! The core's timers: when a `Tick` is next due, finished runs pruned, and the index of
//! every node's pending timer kept in step with the nodes.

use crate::*;
use baton_schemas::RunId;
use baton_schemas::wire::Timestamp;

impl Core {
    /// Returns the earliest time at which a `Tick` would change anything.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let runs = self.timers.first().map(|(at, _, _)| *at);
        let fires = self.ignitors.values().filter_map(|i| i.next_fire);
        let prune = self
            .finished
            .first()
            .map(|(at, _)| at.after(self.config.run_retention));
        runs.into_iter().chain(fires).chain(prune).min()
    }

    /// Removes the finished runs whose retention has passed at `now`. A run a Cell's
    /// rollout still names is kept another retention period.
    pub(crate) fn prune_runs(&mut self, now: Timestamp) {
        let retention = self.config.run_retention;
        while let Some((at, id)) = self.finished.first().cloned() {
            if at.after(retention) > now {
                break;
            }
            self.finished.pop_first();
            let named = self
                .cells
                .values()
                .any(|c| c.status.rollout.as_ref().is_some_and(|ro| ro.run == id));
            if named {
                self.finished.insert((now, id));
                continue;
            }
            if let Some(r) = self.runs.remove(&id) {
                for (i, at) in &r.touched.timers {
                    self.timers.remove(&(*at, id.clone(), *i));
                }
                self.changed_runs.remove(&id);
                self.pruned.push((id, r.nodes.len() as u32));
            }
        }
    }

    /// Records that `run` changed: the store writes it, and the core re-reads the timers of
    /// its changed nodes.
    pub(crate) fn mark_changed(&mut self, run: &RunId) {
        self.notice(run);
        self.changed_runs.insert(run.clone());
        // A run marked twice in one input may be listed twice: reading timers is idempotent.
        if self.untimed_runs.last() != Some(run) {
            self.untimed_runs.push(run.clone());
        }
    }

    /// Brings the timer index up to date with the nodes changed since the last call.
    pub(crate) fn sync_timers(&mut self) {
        for id in std::mem::take(&mut self.untimed_runs) {
            let Some(r) = self.runs.get_mut(&id) else {
                continue;
            };
            let over = r.phase.is_over();
            if let Some(at) = r.finished_at {
                self.finished.insert((at, id.clone()));
            }
            for i in std::mem::take(&mut r.touched.untimed) {
                let node = &r.nodes[i as usize];
                if let Some(task) = &node.task
                    && (over || node.state.is_terminal())
                    && let Some(live) = self.live_tasks.get_mut(task)
                {
                    live.remove(&(id.clone(), i));
                    if live.is_empty() {
                        self.live_tasks.remove(task);
                    }
                }
                let wanted = if over {
                    None
                } else {
                    r.nodes[i as usize].state.timer()
                };
                let had = r.touched.timers.get(&i).copied();
                if had == wanted {
                    continue;
                }
                if let Some(at) = had {
                    self.timers.remove(&(at, id.clone(), i));
                    r.touched.timers.remove(&i);
                }
                if let Some(at) = wanted {
                    self.timers.insert((at, id.clone(), i));
                    r.touched.timers.insert(i, at);
                }
            }
            if over {
                for (i, at) in std::mem::take(&mut r.touched.timers) {
                    self.timers.remove(&(at, id.clone(), i));
                }
            }
        }
    }
}
