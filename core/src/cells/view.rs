//! The status users see of a Cell.

use baton_schemas::views::{BlockedVersion, CellView, CellWeight};

use super::*;

impl CellEntry {
    /// Returns the status users see (the API, `baton cells`, a cluster object's status).
    pub fn view(&self) -> CellView {
        let s = &self.status;
        let group = |arn: &str| s.target_groups.iter().find(|g| g.arn == arn);
        let weights = s
            .weights
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
            .collect();
        let rollout = s.rollout.as_ref();
        CellView {
            name: self.cell.metadata.name.clone(),
            phase: s.phase.as_str().to_owned(),
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
        }
    }
}
