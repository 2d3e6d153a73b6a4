//! One delivered message of jobs, from its delivery to its settlement: a single job, or a
//! batch of the jobs one decision of the planner dispatched together.
//!
//! Each job of a batch runs as a single job does, in a slot of its own, and is reported by
//! its own completion; the message is settled once, when every job in it is done with. It is
//! acknowledged when every job is reported, and handed back whole when one must run again
//! (the others then run again too, as the same attempts: their second completions are
//! dropped by the bus or ignored by the planner, as a redelivered single job's are).

use std::sync::Arc;
use std::time::Duration;

use baton_bus::{Bus, DecodedJob, Inbound, Poison};
use baton_schemas::NodeKind;
use baton_schemas::wire::{Event, EventEnvelope, Job, Outcome, Timestamp};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, error, info, warn};

use crate::completions::Completions;
use crate::executors::{Effect, Executors};
use crate::metrics::{JobOutcome, WorkerMetrics};
use crate::service::Cancels;

/// What every job of one kind needs, shared by the messages in flight.
pub(crate) struct JobContext {
    pub(crate) bus: Bus,
    /// Where completions go: stored several to a message when they come together.
    pub(crate) completions: Completions,
    pub(crate) executors: Executors,
    pub(crate) cancels: Cancels,
    pub(crate) hand_back: CancellationToken,
    /// Fires when the worker begins to stop: a single job still waiting for a slot then
    /// never starts, and goes back (`hand_back` fires at the shutdown deadline).
    pub(crate) stopping: CancellationToken,
    pub(crate) progress_every: Duration,
    pub(crate) metrics: WorkerMetrics,
    /// The kind's slots: a job runs only in one of them.
    pub(crate) slots: Arc<Semaphore>,
}

/// How a message of jobs is settled once its jobs are done with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settle {
    /// Every job is reported, or was dropped by a cancel: acknowledged.
    Ack,
    /// A job must run again: the message is handed back (NAK), to come again after the delay.
    HandBack(Option<Duration>),
    /// Nothing of a job was done (its inputs or its start could not be read or reported): a
    /// single job is handed back after the delay, a job of a batch is tried again in place
    /// (the message kept alive meanwhile), so that the others need not run again.
    Retry(Duration),
    /// It can never run (reported as its node's failure when it names one): terminated.
    Term,
}

impl Settle {
    /// How a batch settles, given how it settles so far and how one more of its jobs did. A
    /// job set aside is reported, so it settles as done; one handed back hands the whole
    /// message back, after the longest delay any job asked for.
    fn and(self, job: Settle) -> Settle {
        let job = match job {
            Settle::Retry(delay) => Settle::HandBack(Some(delay)),
            other => other,
        };
        match (self, job) {
            (Settle::HandBack(a), Settle::HandBack(b)) => Settle::HandBack(a.max(b)),
            (back @ Settle::HandBack(_), _) | (_, back @ Settle::HandBack(_)) => back,
            _ => Settle::Ack,
        }
    }
}

/// How many times a job of a batch is tried again in place before its batch is handed back.
const RETRIES_IN_PLACE: u32 = 3;

/// Handles one delivery of a message of jobs: each job runs in a slot of its own, taken in
/// turn. Idempotent per attempt as far as the bus goes: the events it publishes carry ids
/// derived from each attempt, so a redelivery's duplicates are dropped.
pub(crate) async fn handle(kind: NodeKind, message: Inbound, ctx: Arc<JobContext>) {
    // Nothing of a message is read before it is known to be the planner's.
    let decoded = ctx
        .bus
        .check_job_signature(&message)
        .and_then(|()| baton_bus::decode_jobs(&message));
    let jobs = match decoded {
        Ok(jobs) => jobs,
        Err(poison) => {
            set_aside(kind, poison, &ctx).await;
            message.term().await.ok();
            return;
        }
    };
    let batch = baton_bus::is_job_batch(&message);
    let message = &message;
    let ctx = &ctx;
    // From here to the settlement the jobs are ours: reporting their start and their
    // completion can take a while on a busy server, as can the effects themselves.
    let settle = keep_alive(
        async move {
            // A single job still waiting for a slot when the worker begins to stop goes back
            // at once; a batch's jobs go on until the shutdown deadline, since a batch goes
            // back whole and its jobs already done would run again.
            let give_up = match batch {
                true => &ctx.hand_back,
                false => &ctx.stopping,
            };
            let runs = jobs.into_iter().map(|job| async move {
                let Some(_slot) = slot(ctx, give_up).await else {
                    return Settle::HandBack(None);
                };
                let mut tries = 0;
                loop {
                    match run(kind, &job, batch, message, ctx).await {
                        Settle::Retry(delay) if batch && tries < RETRIES_IN_PLACE => {
                            tries += 1;
                            tokio::select! {
                                _ = give_up.cancelled() => return Settle::HandBack(None),
                                _ = tokio::time::sleep(delay) => {}
                            }
                        }
                        settle => return settle,
                    }
                }
            });
            let settles = futures::future::join_all(runs).await;
            match batch {
                false => settles.into_iter().next().unwrap_or(Settle::Term),
                true => settles.into_iter().fold(Settle::Ack, Settle::and),
            }
        },
        message,
        ctx,
    )
    .await;
    let settled = match settle {
        Settle::Ack => message.ack_fast().await,
        Settle::HandBack(delay) => message.nak(delay).await,
        Settle::Retry(delay) => message.nak(Some(delay)).await,
        Settle::Term => message.term().await,
    };
    // Not waiting for the server to confirm an ack: it is lost only with the connection or
    // the server, and then the message is delivered once more (its completions are stored,
    // the planner ignores the second ones), as after a server crash that lost a confirmed
    // ack.
    if let Err(e) = settled {
        warn!(subject = %message.subject(), ?settle, error = %e, "a message of jobs not settled; it will be delivered again");
    }
}

/// Takes a slot for a job, in turn; `None` when `give_up` fires first (the job then never
/// starts, and goes back).
async fn slot(ctx: &JobContext, give_up: &CancellationToken) -> Option<OwnedSemaphorePermit> {
    tokio::select! {
        biased;
        _ = give_up.cancelled() => None,
        slot = ctx.slots.clone().acquire_owned() => Some(slot.expect("the semaphore is never closed")),
    }
}

/// Runs one job of a message, and says how it settles.
async fn run(
    kind: NodeKind,
    decoded: &DecodedJob,
    batch: bool,
    message: &Inbound,
    ctx: &JobContext,
) -> Settle {
    let (job, traceparent) = match decoded {
        Ok((job, traceparent)) if job.kind() == kind => (job, traceparent.as_deref()),
        Ok((job, _)) => {
            let poison = Poison {
                subject: message.subject().to_owned(),
                reason: format!("a {} job on the {kind} subject", job.kind()),
                run: Some(job.run.clone()),
                node: Some(job.node.clone()),
                attempt: Some(job.attempt),
            };
            return set_aside(kind, poison, ctx).await;
        }
        Err(poison) => return set_aside(kind, poison.clone(), ctx).await,
    };
    // Inputs kept apart on the bus are fetched first: the executors see a whole job.
    let resolved;
    let job = match job.inputs_ref.is_none() {
        true => job,
        false => match ctx.bus.resolve_inputs(job.clone()).await {
            Ok(whole) => {
                resolved = whole;
                &resolved
            }
            Err(baton_bus::InputsError::Bus(e)) => {
                warn!(run = %job.run, node = %job.node, error = %e, "inputs not read; trying the job again");
                ctx.metrics.count(kind, JobOutcome::HandedBack);
                return Settle::Retry(Duration::from_secs(1));
            }
            Err(e @ baton_bus::InputsError::Altered { .. }) => {
                // The job itself is signed, so its run and node are the planner's: the node
                // fails with the reason, and nothing of the altered inputs runs.
                let poison = Poison {
                    subject: message.subject().to_owned(),
                    reason: e.to_string(),
                    run: Some(job.run.clone()),
                    node: Some(job.node.clone()),
                    attempt: Some(job.attempt),
                };
                return set_aside(kind, poison, ctx).await;
            }
            Err(e) => {
                error!(run = %job.run, node = %job.node, attempt = %job.attempt, error = %e, "job cannot run");
                let now = Timestamp::now();
                let settle = finish(job, now, Outcome::failed(e.to_string()), ctx).await;
                let outcome = match settle {
                    Settle::Ack => JobOutcome::Failed,
                    _ => JobOutcome::HandedBack,
                };
                ctx.metrics.count(kind, outcome);
                return settle;
            }
        },
    };
    let work = work(kind, job, message, ctx);
    match baton_telemetry::trace::enabled() {
        true => {
            let span = execute_span(kind, job, message, batch, traceparent);
            work.instrument(span).await
        }
        false => work.await,
    }
}

/// The span of one job's execution: a child of the planner's dispatch span, whose context
/// the job's headers carry (a job of a batch carries its own); what the executor calls
/// (Kubernetes, Helm, ELBv2, HTTP) nests under it, and the completion carries its context on
/// to the next dispatch.
fn execute_span(
    kind: NodeKind,
    job: &Job,
    message: &Inbound,
    batch: bool,
    traceparent: Option<&str>,
) -> tracing::Span {
    let span = tracing::info_span!(
        "execute",
        otel.name = format!("execute {kind} {}/{}", job.workflow, job.node),
        otel.kind = "consumer",
        run = %job.run,
        node = %job.node,
        attempt = %job.attempt,
        kind = %kind,
    );
    let (traceparent, tracestate) = match batch {
        true => (traceparent, None),
        false => (message.header("traceparent"), message.header("tracestate")),
    };
    if let Some(parent) = baton_telemetry::trace::extract(traceparent, tracestate) {
        baton_telemetry::trace::set_parent(&span, parent);
    }
    span
}

/// Drops a job whose run or node was cancelled; otherwise reports it started, runs its
/// effect, and reports how it ended.
async fn work(kind: NodeKind, job: &Job, message: &Inbound, ctx: &JobContext) -> Settle {
    let stop = ctx.hand_back.child_token();
    if !ctx.cancels.begin(job, stop.clone()) {
        // The planner ended the node when it decided the cancel: nothing to report.
        info!(run = %job.run, node = %job.node, attempt = %job.attempt, "job of a cancelled run or node dropped");
        ctx.metrics.count(kind, JobOutcome::Cancelled);
        return Settle::Ack;
    }
    let _in_flight = ctx.metrics.begin(kind);
    ctx.metrics.observe_queued(kind, message);
    let started_at = Timestamp::now();
    let running = std::time::Instant::now();
    let effect = start(kind, job, message, ctx, &stop, started_at).await;
    ctx.cancels.end(&job.msg_id());
    let (outcome, counted) = match effect {
        None => {
            ctx.metrics.count(kind, JobOutcome::HandedBack);
            return Settle::Retry(Duration::from_secs(1));
        }
        Some(Effect::Done(outcome)) => {
            ctx.metrics.observe_duration(kind, running.elapsed());
            let counted = match &outcome {
                Outcome::Succeeded { .. } => JobOutcome::Succeeded,
                Outcome::Failed { .. } => JobOutcome::Failed,
            };
            (outcome, counted)
        }
        Some(Effect::Stopped) if ctx.hand_back.is_cancelled() => {
            info!(run = %job.run, node = %job.node, attempt = %job.attempt, "job handed back at shutdown");
            ctx.metrics.count(kind, JobOutcome::HandedBack);
            return Settle::HandBack(None);
        }
        Some(Effect::Stopped) => (
            Outcome::failed("cancelled".to_owned()),
            JobOutcome::Cancelled,
        ),
    };
    let settle = finish(job, started_at, outcome, ctx).await;
    ctx.metrics.count(
        kind,
        match settle {
            Settle::Ack => counted,
            _ => JobOutcome::HandedBack,
        },
    );
    settle
}

/// Reports the job started and runs its effect, unless `stop` fired first. Returns `None`
/// when the start could not be reported (the job is handed back).
async fn start(
    kind: NodeKind,
    job: &Job,
    message: &Inbound,
    ctx: &JobContext,
    stop: &CancellationToken,
    started_at: Timestamp,
) -> Option<Effect> {
    debug!(run = %job.run, node = %job.node, attempt = %job.attempt, delivered = message.delivered(), "job started");
    if kind != NodeKind::Noop {
        let started = Event::NodeStarted {
            run: job.run.clone(),
            node: job.node.clone(),
            attempt: job.attempt,
            at: started_at,
        };
        if let Err(e) = ctx
            .bus
            .publish_one(&ctx.bus.event_message(&EventEnvelope::new(started)))
            .await
        {
            warn!(run = %job.run, node = %job.node, error = %e, "start not reported; trying the job again");
            return None;
        }
    }
    // Cancelled (or shutting down past the deadline) while the start was reported: the
    // effect never begins.
    if stop.is_cancelled() {
        return Some(Effect::Stopped);
    }
    Some(ctx.executors.execute(job, stop, &ctx.hand_back).await)
}

/// Runs `work` while sending in-progress acks for `message` every `ctx.progress_every`, so the
/// server does not redeliver jobs that are still being worked on or reported.
async fn keep_alive<T>(work: impl Future<Output = T>, message: &Inbound, ctx: &JobContext) -> T {
    let every = ctx.progress_every;
    tokio::pin!(work);
    // The first tick comes early, a quarter of the way, in case the message waited in the
    // client's buffer on a starved machine; jobs done sooner (most are) send none.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every / 4, every);
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = ticks.tick() => {
                if let Err(e) = message.progress().await {
                    warn!(subject = %message.subject(), error = %e, "progress ack failed");
                }
            }
        }
    }
}

/// Stores the completion. If it cannot be stored the job is handed back, to be run again,
/// rather than acknowledged unreported.
async fn finish(job: &Job, started_at: Timestamp, outcome: Outcome, ctx: &JobContext) -> Settle {
    let succeeded = matches!(outcome, Outcome::Succeeded { .. });
    let done = Event::NodeFinished {
        run: job.run.clone(),
        node: job.node.clone(),
        attempt: job.attempt,
        started_at,
        finished_at: Timestamp::now(),
        outcome,
    };
    // The next dispatch is a child of this execution.
    let traceparent = baton_telemetry::trace::traceparent(&tracing::Span::current());
    if let Err(e) = ctx.completions.store(done, traceparent).await {
        error!(run = %job.run, node = %job.node, error = %e, "completion not stored; handing the job back");
        return Settle::HandBack(Some(Duration::from_secs(5)));
    }
    debug!(run = %job.run, node = %job.node, attempt = %job.attempt, succeeded, "job finished");
    Settle::Ack
}

/// Reports a job that can never run as its node's failure when it says which node it is;
/// otherwise logs it. It settles as terminated.
async fn set_aside(kind: NodeKind, poison: Poison, ctx: &JobContext) -> Settle {
    ctx.metrics.count(kind, JobOutcome::SetAside);
    match (&poison.run, &poison.node, poison.attempt) {
        (Some(run), Some(node), Some(attempt)) => {
            error!(%run, %node, %attempt, reason = %poison.reason, "poison job reported as the node's failure");
            let done = Event::NodeFinished {
                run: run.clone(),
                node: node.clone(),
                attempt,
                started_at: Timestamp::now(),
                finished_at: Timestamp::now(),
                outcome: Outcome::failed(format!("job set aside: {}", poison.reason)),
            };
            if let Err(e) = ctx
                .bus
                .publish_one(&ctx.bus.event_message(&EventEnvelope::new(done)))
                .await
            {
                warn!(error = %e, "poison report not stored; terminating the job anyway");
            }
        }
        _ => {
            error!(subject = %poison.subject, reason = %poison.reason, "poison job names no node; set aside")
        }
    }
    Settle::Term
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_handed_back_whole_when_one_job_must_run_again() {
        let one = Some(Duration::from_secs(1));
        let five = Some(Duration::from_secs(5));
        let fold = |settles: &[Settle]| settles.iter().copied().fold(Settle::Ack, Settle::and);
        assert_eq!(fold(&[Settle::Ack, Settle::Term, Settle::Ack]), Settle::Ack);
        assert_eq!(fold(&[Settle::Term, Settle::Term]), Settle::Ack);
        assert_eq!(
            fold(&[Settle::Ack, Settle::HandBack(one), Settle::Term]),
            Settle::HandBack(one)
        );
        assert_eq!(
            fold(&[Settle::HandBack(five), Settle::Ack, Settle::HandBack(one)]),
            Settle::HandBack(five)
        );
        assert_eq!(
            fold(&[Settle::HandBack(None), Settle::HandBack(one)]),
            Settle::HandBack(one)
        );
        // A job still to be tried again when its tries ran out hands the batch back.
        assert_eq!(
            fold(&[Settle::Ack, Settle::Retry(Duration::from_secs(1))]),
            Settle::HandBack(one)
        );
    }
}
