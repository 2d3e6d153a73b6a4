//! The status users see of a Cell.

use super::*;

impl CellEntry {
    /// Returns the status users see (the API, `baton cells`, a cluster object's status).
    pub fn view(&self) -> serde_json::Value {
        let s = &self.status;
        let group = |arn: &str| s.target_groups.iter().find(|g| g.arn == arn);
        let weights: Vec<serde_json::Value> = s
            .weights
            .iter()
            .map(|w| {
                let g = group(&w.arn);
                serde_json::json!({
                    "arn": w.arn,
                    "name": g.map(|g| g.name.clone()),
                    "version": g.and_then(|g| g.version.clone()),
                    "weight": w.weight,
                })
            })
            .collect();
        let rollout = s.rollout.as_ref();
        serde_json::json!({
            "name": self.cell.metadata.name,
            "phase": s.phase.as_str(),
            "servingVersion": s.serving_version,
            "desiredVersion": rollout.map(|r| r.to.clone()).or_else(|| s.serving_version.clone()),
            "step": rollout.and_then(|r| r.stage.step()),
            "run": rollout.map(|r| r.run.to_string()),
            "weights": weights,
            "blocked": s.blocked.iter().map(|b| serde_json::json!({"version": b.version, "cause": b.cause, "at": b.at.to_string()})).collect::<Vec<_>>(),
            "message": s.message,
            "lastSyncTime": s.last_sync.map(|t| t.to_string()),
        })
    }
}
