//! The `traffic` executor: makes an ALB listener rule forward to weighted target groups (or
//! removes it), and succeeds only once AWS shows the weights written.
//!
//! The rule is found by its priority, so a job delivered again after its worker died adopts
//! what the first delivery wrote: a rule that already matches is not written a second time.
//! A job of a Cell carries a generation, and a rule tagged with a newer one is left alone: a
//! job delivered late (its ack lost, or retried by the planner while the first attempt still
//! ran) cannot put back an older step's weights. The stop token is looked at before every
//! write. ALB's limits are checked before any call, because an emulator would accept what
//! AWS refuses.
//!
//! The output is JSON: `{"rule", "write", "generation", "targetGroups": [{"arn", "weight"}]}`,
//! the weights as read back from AWS; a delete's is `{"deleted", "priority"}`. A failure's
//! output names its kind, `{"error": {"kind", "operation", "code"}}`, so that the planner
//! retries what may pass (throttling, timeouts, a connection) and waits for a person at once
//! on what cannot (`baton_schemas::reports::FINAL_FAILURES`).

use std::sync::Arc;

use baton_alb::{Alb, AlbError, AlbErrorKind, Deleted, Write};
use baton_schemas::reports::{RuleDeleted, RuleWritten, TrafficFailure, to_output};
use baton_schemas::traffic::{Generation, RuleAction, TrafficSpec};
use baton_schemas::wire::{FailureKind, Job, Outcome};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Effect;
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

    /// Applies the job's rule, unless `stop` fires first. Idempotent (see the module's docs).
    pub async fn run(&self, job: &Job, stop: &CancellationToken) -> Effect {
        let Some(spec) = job.traffic() else {
            return Effect::Done(Outcome::failed("not a traffic job"));
        };
        let problems = spec.problems("traffic");
        if !problems.is_empty() {
            let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            return Effect::Done(Outcome::Failed {
                error: format!("refused before any AWS call: {}", list.join("; ")),
                output: Some(to_output(&TrafficFailure::new(
                    AlbErrorKind::Invalid.as_str(),
                    "none",
                    None,
                ))),
                kind: FailureKind::Final,
            });
        }
        let alb = self.alb().await;
        if spec.action == RuleAction::Delete {
            return match alb.delete_rule(spec, stop).await {
                Ok(Deleted::Superseded(newer)) => Effect::Done(superseded(spec, newer)),
                Ok(deleted) => Effect::Done(Outcome::Succeeded {
                    output: to_output(&RuleDeleted {
                        deleted: deleted.as_str().to_owned(),
                        priority: spec.priority,
                    }),
                }),
                Err(e) => failed(job, e),
            };
        }
        match alb.apply(spec, stop).await {
            Ok(applied) => {
                if let Write::Superseded(newer) = applied.write {
                    return Effect::Done(superseded(spec, newer));
                }
                // A crash here is the sensitive moment: AWS has the rule, the bus does not
                // know yet. The redelivery must adopt the rule.
                failpoint::hang_if("traffic-after-write").await;
                Effect::Done(Outcome::Succeeded {
                    output: to_output(&RuleWritten {
                        rule: applied.rule_arn,
                        write: applied.write.as_str().to_owned(),
                        generation: spec.generation,
                        target_groups: applied.target_groups,
                    }),
                })
            }
            Err(e) => failed(job, e),
        }
    }
}

fn failed(job: &Job, e: AlbError) -> Effect {
    if e.kind == baton_alb::AlbErrorKind::Stopped {
        return Effect::Stopped;
    }
    warn!(run = %job.run, node = %job.node, kind = e.kind.as_str(), error = %e, "traffic step failed");
    let failure = TrafficFailure::new(e.kind.as_str(), e.operation, e.code.as_deref());
    Effect::Done(Outcome::Failed {
        error: e.to_string(),
        kind: failure_kind(&failure),
        output: Some(to_output(&failure)),
    })
}

fn superseded(spec: &TrafficSpec, newer: Generation) -> Outcome {
    let mine = spec.generation.map(|g| g.to_string()).unwrap_or_default();
    Outcome::Failed {
        error: format!(
            "superseded: the rule at priority {} carries generation {newer}, newer than this job's {mine}; nothing written",
            spec.priority
        ),
        output: Some(to_output(&TrafficFailure::new(
            "superseded",
            "DescribeTags",
            None,
        ))),
        kind: FailureKind::Final,
    }
}

/// Whether the planner may try a failed write again: not when it would fail the same way.
fn failure_kind(failure: &TrafficFailure) -> FailureKind {
    if failure.is_final() {
        FailureKind::Final
    } else {
        FailureKind::Retryable
    }
}
