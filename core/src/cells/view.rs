//! The status users see of a Cell.

use baton_schemas::traffic::WeightedTargetGroup;
use baton_schemas::views::{BlockedVersion, CellView, CellWeight, CellWeightChange};

use crate::Core;

use super::*;

impl Core {
    /// Returns where a Cell is, derived from what Baton knows of it and its rollout's run.
    pub fn cell_phase(&self, entry: &CellEntry) -> CellPhase {
        let s = &entry.status;
        match &s.rollout {
            Some(rollout) => {
                let node = rollout.stage.node();
                let held = self
                    .runs
                    .get(&rollout.run)
                    .is_some_and(|r| matches!(r.nodes[node].state, crate::NodeState::Held { .. }));
                if held || matches!(rollout.stage, Stage::Waiting { .. }) {
                    CellPhase::Paused
                } else {
                    CellPhase::Progressing
                }
            }
            None if s.rolled_back => CellPhase::Degraded,
            None if s.serving_version.is_some() => CellPhase::Serving,
            None => CellPhase::Pending,
        }
    }

    /// Returns the status users see of every Cell (the API, `baton cells`, a cluster
    /// object's status).
    pub fn cell_views(&self) -> impl Iterator<Item = CellView> + '_ {
        self.cells.values().map(|c| c.view(self.cell_phase(c)))
    }
}

impl CellEntry {
    /// Returns the status users see, at `phase`.
    fn view(&self, phase: CellPhase) -> CellView {
        let s = &self.status;
        let group = |arn: &str| s.target_groups.iter().find(|g| g.arn == arn);
        let named = |weights: &[WeightedTargetGroup]| {
            weights
                .iter()
                .map(|w| {
                    let g = group(&w.arn);
                    CellWeight {
                        arn: w.arn.clone(),
                        name: g.map(|g| g.name.clone()),
                        version: g.and_then(|g| g.version.clone()),
                        weight: w.weight,
                    }
                })
                .collect()
        };
        let weights = named(&s.weights);
        let rollout = s.rollout.as_ref();
        CellView {
            name: self.cell.metadata.name.clone(),
            phase: phase.as_str().to_owned(),
            serving_version: s.serving_version.clone(),
            desired_version: rollout
                .map(|r| r.to.clone())
                .or_else(|| s.serving_version.clone()),
            step: rollout.and_then(|r| r.stage.step()),
            run: rollout.map(|r| r.run.to_string()),
            weights,
            blocked: s
                .blocked
                .iter()
                .map(|b| BlockedVersion {
                    version: b.version.clone(),
                    cause: b.cause.clone(),
                    at: b.at.to_string(),
                })
                .collect(),
            message: s.message.clone(),
            last_sync_time: s.last_sync.map(|t| t.to_string()),
            target_group_source: s
                .last_sync
                .map(|_| s.target_group_source.as_str().to_owned()),
            weight_history: s
                .weight_history
                .iter()
                .map(|c| CellWeightChange {
                    at: c.at.to_string(),
                    weights: named(&c.weights),
                })
                .collect(),
        }
    }
}
