//! The worker service: one pull loop per job kind, each with its own bound on jobs in
//! flight, progress acks for long jobs, cancel notices, and a graceful shutdown.
//!
//! A job is acknowledged only after its completion event is stored on the bus. Shutdown
//! stops pulling, gives jobs in flight `shutdown_deadline` to finish, then stops the rest and
//! hands their jobs back (NAK without delay) for another worker to take.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_bus::{Bus, Inbound, Poison};
use baton_schemas::wire::{Event, EventEnvelope, Job, Outcome, SCHEMA_VERSION, Timestamp};
use baton_schemas::{NodeKind, NodeName, RunId};
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::executors::helm::{HelmConfig, HelmExecutor};
use crate::executors::pod::{PodConfig, PodExecutor};
use crate::executors::{Effect, Executors};

/// Worker settings.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The job kinds this worker takes.
    pub kinds: Vec<NodeKind>,
    /// How many jobs of each kind run at once, at most.
    pub concurrency: usize,
    /// How long jobs in flight may go on after a shutdown begins before they are handed back.
    pub shutdown_deadline: Duration,
    /// Pod executor settings.
    pub pod: PodConfig,
    /// Helm executor settings.
    pub helm: HelmConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            kinds: NodeKind::ALL.to_vec(),
            concurrency: 4,
            shutdown_deadline: Duration::from_secs(30),
            pod: PodConfig::default(),
            helm: HelmConfig::default(),
        }
    }
}

/// Jobs in flight by message id, so a cancel notice can stop those of its run.
#[derive(Clone, Default)]
struct InFlight(Arc<Mutex<HashMap<String, InFlightJob>>>);

/// A job in flight: its run, its node, and the token that stops it.
type InFlightJob = (RunId, NodeName, CancellationToken);

impl InFlight {
    fn insert(&self, job: &Job, stop: CancellationToken) {
        let entry = (job.run.clone(), job.node.clone(), stop);
        self.0
            .lock()
            .expect("in-flight lock")
            .insert(job.msg_id(), entry);
    }

    fn remove(&self, id: &str) {
        self.0.lock().expect("in-flight lock").remove(id);
    }

    /// Stops the jobs a cancel notice names: `<run>` (all its jobs) or `<run>/<node>`.
    fn cancel(&self, notice: &str) -> usize {
        let (run, node) = match notice.split_once('/') {
            Some((run, node)) => (run, Some(node)),
            None => (notice, None),
        };
        let jobs = self.0.lock().expect("in-flight lock");
        let mut n = 0;
        for (job_run, job_node, stop) in jobs.values() {
            if job_run.as_str() == run && node.is_none_or(|node| job_node.as_str() == node) {
                stop.cancel();
                n += 1;
            }
        }
        n
    }
}

/// Runs the worker until `shutdown` fires and jobs in flight are done or handed back.
pub async fn run(
    bus: Bus,
    config: WorkerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    bus.ensure_streams().await?;
    let tracker = TaskTracker::new();
    let hand_back = CancellationToken::new();
    let in_flight = InFlight::default();
    let progress_every = bus.config().job_ack_wait / 3;
    // Webhooks use rustls with ring, the one crypto provider the workspace builds (a no-op
    // when the binary installed it already).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut executors = Executors {
        bus: bus.clone(),
        http: reqwest::Client::builder().build()?,
        pod: None,
        helm: None,
        traffic: crate::executors::traffic::TrafficExecutor::new(),
    };
    // One Kubernetes client, built once, for every executor that talks to the API: they
    // share its connections. `None` when no executor of this worker needs one.
    let kube_client =
        if config.kinds.contains(&NodeKind::Helm) || config.kinds.contains(&NodeKind::Pod) {
            Some(kube::Client::try_default().await)
        } else {
            None
        };
    if config.kinds.contains(&NodeKind::Helm) {
        // The flux driver works through the API; the cli driver reads valuesFrom and
        // authSecretRef with it when it can.
        let client = match &kube_client {
            Some(Ok(client)) => Some(client.clone()),
            None => None,
            Some(Err(e)) if config.helm.driver == baton_schemas::helm::HelmDriver::Flux => {
                anyhow::bail!(
                    "the flux helm driver needs a Kubernetes client (KUBECONFIG or in-cluster config): {e}"
                );
            }
            Some(Err(e)) => {
                info!(error = %e, "no Kubernetes client: helm jobs cannot read valuesFrom or authSecretRef");
                None
            }
        };
        executors.helm = Some(HelmExecutor::new(config.helm.clone(), client));
    }
    if config.kinds.contains(&NodeKind::Pod) {
        let client = match &kube_client {
            Some(Ok(client)) => client.clone(),
            Some(Err(e)) => anyhow::bail!(
                "pod jobs need a Kubernetes client (KUBECONFIG or in-cluster config): {e}"
            ),
            None => unreachable!("built for pod workers"),
        };
        let pods = PodExecutor::new(client, config.pod.clone());
        tokio::spawn(
            pods.clone()
                .janitor(Duration::from_secs(10), shutdown.clone()),
        );
        executors.pod = Some(pods);
    }

    let mut cancels = bus.client().subscribe(bus.cancel_subject()).await?;
    let listener = {
        let in_flight = in_flight.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    notice = cancels.next() => match notice {
                        Some(notice) => {
                            let run = String::from_utf8_lossy(&notice.payload).into_owned();
                            let stopped = in_flight.cancel(&run);
                            info!(%run, stopped, "run cancelled");
                        }
                        None => return,
                    },
                }
            }
        })
    };

    let mut loops = Vec::new();
    for kind in config.kinds.iter().copied() {
        let consumer = bus.job_consumer(kind).await?;
        let ctx = JobContext {
            bus: bus.clone(),
            executors: executors.clone(),
            in_flight: in_flight.clone(),
            hand_back: hand_back.clone(),
            progress_every,
        };
        let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
        loops.push(tokio::spawn(pull_loop(
            kind,
            consumer,
            slots,
            ctx,
            tracker.clone(),
            shutdown.clone(),
        )));
    }
    info!(kinds = ?config.kinds, concurrency = config.concurrency, "worker running");
    shutdown.cancelled().await;
    for pull in loops {
        let _ = pull.await;
    }
    tracker.close();
    info!(in_flight = tracker.len(), deadline = ?config.shutdown_deadline, "worker stopping");
    if tokio::time::timeout(config.shutdown_deadline, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            in_flight = tracker.len(),
            "shutdown deadline passed; handing jobs back"
        );
        hand_back.cancel();
        tracker.wait().await;
    }
    listener.abort();
    // Acks and NAKs are buffered by the client: send them before the process exits.
    if let Err(e) = bus.client().flush().await {
        warn!(error = %e, "flushing the bus connection failed");
    }
    info!("worker stopped");
    Ok(())
}

#[derive(Clone)]
struct JobContext {
    bus: Bus,
    executors: Executors,
    in_flight: InFlight,
    hand_back: CancellationToken,
    progress_every: Duration,
}

/// Pulls jobs of one kind while free slots remain: each pull asks for as many jobs as there
/// are free slots, so no job waits in this worker's buffer while another worker is idle.
async fn pull_loop(
    kind: NodeKind,
    consumer: async_nats::jetstream::consumer::PullConsumer,
    slots: Arc<Semaphore>,
    ctx: JobContext,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let expires = Duration::from_secs(2);
    let mut failures = 0u32;
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        let pull = consumer
            .batch()
            .max_messages(permits.len())
            .expires(expires)
            .messages();
        let mut batch = match tokio::select! { _ = shutdown.cancelled() => return, b = pull => b } {
            Ok(batch) => batch,
            Err(e) => {
                failures += 1;
                warn!(%kind, error = %e, failures, "pull failed; trying again");
                drop(permits);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(200 * u64::from(failures.min(10)))) => {}
                }
                continue;
            }
        };
        while let Some(permit) = permits.pop() {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = tokio::time::timeout(expires + Duration::from_secs(3), batch.next()) => next,
            };
            match next {
                Ok(Some(Ok(message))) => {
                    failures = 0;
                    let ctx = ctx.clone();
                    tracker.spawn(async move {
                        handle(kind, Inbound::new(message), &ctx).await;
                        drop(permit);
                    });
                }
                Ok(Some(Err(e))) => {
                    debug!(%kind, error = %e, "pull ended with an error");
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
}

/// Handles one delivery of a job. Idempotent per attempt as far as the bus goes: the events it
/// publishes carry ids derived from the attempt, so a redelivery's duplicates are dropped.
async fn handle(kind: NodeKind, message: Inbound, ctx: &JobContext) {
    let job = match baton_bus::decode_job(&message) {
        Ok(job) if job.kind == kind => job,
        Ok(job) => {
            let poison = Poison {
                subject: message.subject().to_owned(),
                reason: format!("a {} job on the {kind} subject", job.kind),
                run: Some(job.run),
                node: Some(job.node),
                attempt: Some(job.attempt),
            };
            return set_aside(&message, poison, ctx).await;
        }
        Err(poison) => return set_aside(&message, poison, ctx).await,
    };
    // From here to the final ack the job is ours: reporting its start and its completion can
    // take a while on a busy server, as can the effect itself.
    keep_alive(work(kind, &job, &message, ctx), &job, &message, ctx).await;
}

/// Reports the job started, runs its effect, and reports how it ended (see [`handle`]).
async fn work(kind: NodeKind, job: &Job, message: &Inbound, ctx: &JobContext) {
    let started_at = Timestamp::now();
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
            .publish_one(&ctx.bus.event_message(&envelope(started)))
            .await
        {
            warn!(run = %job.run, node = %job.node, error = %e, "start not reported; handing the job back");
            message.nak(Some(Duration::from_secs(1))).await.ok();
            return;
        }
    }
    let stop = ctx.hand_back.child_token();
    ctx.in_flight.insert(job, stop.clone());
    let effect = ctx.executors.execute(job, &stop, &ctx.hand_back).await;
    ctx.in_flight.remove(&job.msg_id());
    let outcome = match effect {
        Effect::Done(outcome) => outcome,
        Effect::Stopped if ctx.hand_back.is_cancelled() => {
            info!(run = %job.run, node = %job.node, attempt = %job.attempt, "job handed back at shutdown");
            message.nak(None).await.ok();
            return;
        }
        Effect::Stopped => Outcome::failed("cancelled".to_owned()),
    };
    finish(job, started_at, outcome, message, ctx).await;
}

/// Runs `work` while sending in-progress acks for `message` every `ctx.progress_every`, so the
/// server does not redeliver a job that is still being worked on or reported.
async fn keep_alive<T>(
    work: impl Future<Output = T>,
    job: &Job,
    message: &Inbound,
    ctx: &JobContext,
) -> T {
    let every = ctx.progress_every;
    tokio::pin!(work);
    // The first tick comes early, a quarter of the way, in case the message waited in the
    // client's buffer on a starved machine; a job done sooner (most are) sends none.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every / 4, every);
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = ticks.tick() => {
                if let Err(e) = message.progress().await {
                    warn!(node = %job.node, error = %e, "progress ack failed");
                }
            }
        }
    }
}

/// Publishes the completion, then acknowledges the job. If the completion cannot be stored
/// the job is handed back, to be run again, rather than acknowledged unreported.
async fn finish(
    job: &Job,
    started_at: Timestamp,
    outcome: Outcome,
    message: &Inbound,
    ctx: &JobContext,
) {
    let succeeded = matches!(outcome, Outcome::Succeeded { .. });
    let done = Event::NodeFinished {
        run: job.run.clone(),
        node: job.node.clone(),
        attempt: job.attempt,
        started_at,
        finished_at: Timestamp::now(),
        outcome,
    };
    if let Err(e) = ctx
        .bus
        .publish_one(&ctx.bus.event_message(&envelope(done)))
        .await
    {
        error!(run = %job.run, node = %job.node, error = %e, "completion not stored; handing the job back");
        message.nak(Some(Duration::from_secs(5))).await.ok();
        return;
    }
    // Not waiting for the server to confirm the ack: the ack is lost only with the connection
    // or the server, and then the job is delivered once more (its completion is stored, the
    // planner ignores the second), as after a server crash that lost a confirmed ack.
    if let Err(e) = message.ack_fast().await {
        warn!(run = %job.run, node = %job.node, error = %e, "ack not sent; a redelivery will be ignored by the planner");
    }
    debug!(run = %job.run, node = %job.node, attempt = %job.attempt, succeeded, "job finished");
}

/// Terminates a job that can never run and reports it as the node's failure when the message
/// says which node it is; otherwise logs it.
async fn set_aside(message: &Inbound, poison: Poison, ctx: &JobContext) {
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
                .publish_one(&ctx.bus.event_message(&envelope(done)))
                .await
            {
                warn!(error = %e, "poison report not stored; terminating the job anyway");
            }
        }
        _ => {
            error!(subject = %poison.subject, reason = %poison.reason, "poison job names no node; set aside")
        }
    }
    message.term().await.ok();
}

fn envelope(event: Event) -> EventEnvelope {
    EventEnvelope {
        v: SCHEMA_VERSION,
        event,
    }
}
