//! The `traffic` executor: makes an ALB listener rule forward to weighted target groups, and
//! succeeds only once AWS shows the weights written.
//!
//! The rule is found by its priority, so a job delivered again after its worker died adopts
//! what the first delivery wrote: a rule that already matches is not written a second time.
//! ALB's limits are checked before any call, because an emulator would accept what AWS
//! refuses. The output is JSON: `{"rule", "write", "targetGroups": [{"arn", "weight"}]}`,
//! the weights as read back from AWS.

use std::sync::Arc;

use baton_alb::Alb;
use baton_schemas::wire::{Job, Outcome};
use tokio::sync::OnceCell;
use tracing::warn;

use crate::failpoint;

/// The traffic executor. Its AWS client is built from the standard chain on the first job,
/// so a worker that never gets one never reads AWS settings.
#[derive(Clone, Default)]
pub struct TrafficExecutor {
    alb: Arc<OnceCell<Alb>>,
}

impl TrafficExecutor {
    /// Returns an executor that builds its client from the environment when first used.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns an executor with a client built elsewhere.
    pub fn with_client(alb: Alb) -> Self {
        Self {
            alb: Arc::new(OnceCell::new_with(Some(alb))),
        }
    }

    async fn alb(&self) -> &Alb {
        self.alb.get_or_init(Alb::from_env).await
    }

    /// Applies the job's rule. Idempotent (see the module's docs).
    pub async fn run(&self, job: &Job) -> Outcome {
        let Some(spec) = &job.traffic else {
            return Outcome::failed("traffic job without traffic settings");
        };
        let problems = spec.problems("traffic");
        if !problems.is_empty() {
            let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            return Outcome::failed(format!("refused before any AWS call: {}", list.join("; ")));
        }
        let alb = self.alb().await;
        if spec.delete {
            return match alb.delete_rule(&spec.listener_arn, spec.priority).await {
                Ok(deleted) => Outcome::Succeeded {
                    output: serde_json::json!({"deleted": deleted, "priority": spec.priority})
                        .to_string(),
                },
                Err(e) => Outcome::failed(e.to_string()),
            };
        }
        match alb.apply(spec).await {
            Ok(applied) => {
                // A crash here is the sensitive moment: AWS has the rule, the bus does not
                // know yet. The redelivery must adopt the rule.
                failpoint::hang_if("traffic-after-write").await;
                Outcome::Succeeded {
                    output: serde_json::json!({
                        "rule": applied.rule_arn,
                        "write": applied.write.as_str(),
                        "targetGroups": applied.target_groups,
                    })
                    .to_string(),
                }
            }
            Err(e) => {
                warn!(run = %job.run, node = %job.node, error = %e, "traffic step failed");
                Outcome::failed(e.to_string())
            }
        }
    }
}
