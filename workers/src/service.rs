//! The worker service: one pull loop per job kind, each with its own bound on jobs in
//! flight, progress acks for long jobs, cancel notices, and a graceful shutdown.
//!
//! A job is acknowledged only after its completion event is stored on the bus. Shutdown
//! stops pulling, hands back (NAK without delay) the jobs a pull delivered that no slot took,
//! gives jobs in flight `shutdown_deadline` to finish, then stops the rest and hands their
//! jobs back for another worker to take.
//!
//! Cancel notices are kept on the bus (`<p>.cancels.<run>[.<node>]`). Every worker reads them
//! all, before it takes its first job and then as they come. A job whose run or node a notice
//! names is dropped when it is taken (acknowledged with no event: the planner ended the node
//! when it decided the cancel), and stopped if it runs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_bus::{Bus, Inbound, Poison};
use baton_schemas::wire::{Event, EventEnvelope, Job, Outcome, Timestamp};
use baton_schemas::{NodeKind, NodeName, RunId};
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument as _, debug, error, info, warn};

use crate::completions::Completions;
use crate::executors::helm::{HelmConfig, HelmExecutor};
use crate::executors::pod::{PodConfig, PodExecutor};
use crate::executors::{Effect, Executors};
use crate::metrics::{JobOutcome, WorkerMetrics};

/// Worker settings.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The job kinds this worker takes.
    pub kinds: Vec<NodeKind>,
    /// How many jobs of each kind run at once, at most.
    pub concurrency: usize,
    /// How long jobs in flight may go on after a shutdown begins before they are handed back.
    pub shutdown_deadline: Duration,
    /// How long one pull request waits at the server for jobs (at least 100 ms). A stopping
    /// worker hands back what its open pull still delivers, so a stop can take this long.
    pub pull_wait: Duration,
    /// Pod executor settings.
    pub pod: PodConfig,
    /// Helm executor settings.
    pub helm: HelmConfig,
    /// Where the worker counts what it does (registered nowhere by default).
    pub metrics: WorkerMetrics,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            kinds: NodeKind::ALL.to_vec(),
            concurrency: 4,
            shutdown_deadline: Duration::from_secs(30),
            pull_wait: Duration::from_secs(2),
            pod: PodConfig::default(),
            helm: HelmConfig::default(),
            metrics: WorkerMetrics::default(),
        }
    }
}

/// The jobs in flight and the cancel notices read, under one lock, so that a notice and the
/// start of a job it names cannot miss each other: either the job begins first and the notice
/// stops it, or the notice comes first and the job never begins.
#[derive(Clone, Default)]
struct Cancels(Arc<Mutex<CancelState>>);

#[derive(Default)]
struct CancelState {
    /// Jobs in flight by message id.
    in_flight: HashMap<String, InFlightJob>,
    /// Runs cancelled as a whole.
    runs: HashSet<RunId>,
    /// Nodes cancelled one by one (a task replaced under `concurrencyPolicy: Replace`, a
    /// Cell's step a person stopped).
    nodes: HashSet<(RunId, NodeName)>,
}

/// A job in flight: its run, its node, and the token that stops it.
type InFlightJob = (RunId, NodeName, CancellationToken);

impl Cancels {
    /// Records `job` as in flight, stopped by `stop`. Returns false, and records nothing,
    /// when a notice read earlier cancelled its run or node.
    fn begin(&self, job: &Job, stop: CancellationToken) -> bool {
        let mut state = self.0.lock().expect("cancels lock");
        if state.runs.contains(&job.run)
            || state.nodes.contains(&(job.run.clone(), job.node.clone()))
        {
            return false;
        }
        let entry = (job.run.clone(), job.node.clone(), stop);
        state.in_flight.insert(job.msg_id(), entry);
        true
    }

    /// Forgets a job that is no longer in flight.
    fn end(&self, id: &str) {
        self.0.lock().expect("cancels lock").in_flight.remove(id);
    }

    /// Records a notice cancelling `run` (only `node` of it, when set) and stops the jobs in
    /// flight it names. Returns how many it stopped.
    fn cancel(&self, run: RunId, node: Option<NodeName>) -> usize {
        let mut state = self.0.lock().expect("cancels lock");
        let mut n = 0;
        for (job_run, job_node, stop) in state.in_flight.values() {
            if *job_run == run && node.as_ref().is_none_or(|node| job_node == node) {
                stop.cancel();
                n += 1;
            }
        }
        match node {
            Some(node) => state.nodes.insert((run, node)),
            None => state.runs.insert(run),
        };
        n
    }
}

/// How long a starting worker reads the cancel notices the bus holds before it takes jobs
/// anyway (it goes on reading them as it works).
const CANCELS_CATCH_UP: Duration = Duration::from_secs(10);

/// Reads every cancel notice the bus holds into `cancels`, for at most [`CANCELS_CATCH_UP`],
/// and returns the notices to follow from there.
async fn catch_up_cancels(
    bus: &Bus,
    cancels: &Cancels,
) -> anyhow::Result<async_nats::jetstream::consumer::pull::Ordered> {
    let (held, mut notices) = bus.follow_cancels().await?;
    let mut read = 0u64;
    let caught_up = tokio::time::timeout(CANCELS_CATCH_UP, async {
        while read < held {
            match notices.next().await {
                Some(Ok(notice)) => {
                    read += 1;
                    note_cancel(bus, cancels, &notice);
                    if notice.info().is_ok_and(|i| i.pending == 0) {
                        break;
                    }
                }
                Some(Err(e)) => warn!(error = %e, "reading cancel notices failed; trying again"),
                None => break,
            }
        }
    })
    .await;
    if caught_up.is_err() {
        warn!(
            read,
            held, "not every cancel notice read in time; taking jobs, reading on"
        );
    }
    debug!(read, "cancel notices read");
    Ok(notices)
}

/// Follows cancel notices until `stop` fires, stopping the jobs in flight they name. The bus
/// keeps them, so a follow that ends (a server gone for good) is made anew, from the start.
async fn follow_cancels(
    bus: Bus,
    cancels: Cancels,
    mut notices: async_nats::jetstream::consumer::pull::Ordered,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            notice = notices.next() => match notice {
                Some(Ok(notice)) => note_cancel(&bus, &cancels, &notice),
                Some(Err(e)) => warn!(error = %e, "reading cancel notices failed; trying again"),
                None => {
                    warn!("cancel notices ended; following them anew");
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        match bus.follow_cancels().await {
                            Ok((_, fresh)) => {
                                notices = fresh;
                                break;
                            }
                            Err(e) => warn!(error = %e, "following cancel notices failed; trying again"),
                        }
                    }
                }
            },
        }
    }
}

fn note_cancel(bus: &Bus, cancels: &Cancels, notice: &async_nats::jetstream::Message) {
    match bus.cancel_target(notice.subject.as_str()) {
        Some((run, node)) => {
            let label = node.as_ref().map(|n| n.to_string());
            let stopped = cancels.cancel(run.clone(), node);
            if stopped > 0 {
                info!(%run, node = ?label, stopped, "cancel notice: jobs stopped");
            } else {
                debug!(%run, node = ?label, "cancel notice");
            }
        }
        None => warn!(subject = %notice.subject, "not a cancel notice; ignored"),
    }
}

/// Runs the worker until `shutdown` fires and jobs in flight are done or handed back.
pub async fn run(
    bus: Bus,
    config: WorkerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // The planner makes the streams and says how they are replicated; a worker uses them.
    bus.await_streams().await;
    if bus.signer().is_none() {
        warn!(
            "no --job-signing-key-file: this worker runs any job published on its subjects, signed or not"
        );
    }
    // Jobs in flight, waited for (then handed back) at shutdown.
    let tracker = TaskTracker::new();
    // What runs beside them: the cancel follower (until the jobs are done) and the pod
    // janitor (until shutdown).
    let background = TaskTracker::new();
    let hand_back = CancellationToken::new();
    let cancels = Cancels::default();
    let progress_every = bus.config().job_ack_wait / 3;
    // Webhooks use rustls with ring, the one crypto provider the workspace builds (a no-op
    // when the binary installed it already).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().build()?;
    let mut executors = Executors {
        bus: bus.clone(),
        http: http.clone(),
        pod: None,
        helm: None,
        traffic: crate::executors::traffic::TrafficExecutor::new(),
        analysis: crate::executors::analysis::Providers::new(http),
        metrics: config.metrics.clone(),
    };
    // One Kubernetes client, built once, for every executor that talks to the API: they
    // share its connections. `None` when no executor of this worker needs one.
    let kube_client =
        if config.kinds.contains(&NodeKind::Helm) || config.kinds.contains(&NodeKind::Pod) {
            Some(baton_telemetry::kube_client().await)
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
        background.spawn(
            pods.clone()
                .janitor(Duration::from_secs(10), shutdown.clone()),
        );
        executors.pod = Some(pods);
    }

    // Notices are read before the first job is taken, and followed until the jobs in flight
    // are done or handed back: a job draining at shutdown can still be cancelled.
    let notices = catch_up_cancels(&bus, &cancels).await?;
    let follower_stop = CancellationToken::new();
    background.spawn(follow_cancels(
        bus.clone(),
        cancels.clone(),
        notices,
        follower_stop.clone(),
    ));

    // One publisher of completions for every kind: a batch gathers what ends together.
    let completions = Completions::start(
        bus.clone(),
        format!("w{}", baton_schemas::ids::new_run_id()),
    );
    let mut loops = Vec::new();
    for kind in config.kinds.iter().copied() {
        let consumer = bus.job_consumer(kind).await?;
        let ctx = JobContext {
            bus: bus.clone(),
            completions: completions.clone(),
            executors: executors.clone(),
            cancels: cancels.clone(),
            hand_back: hand_back.clone(),
            progress_every,
            metrics: config.metrics.clone(),
        };
        let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
        loops.push(tokio::spawn(pull_loop(
            kind,
            consumer,
            slots,
            ctx,
            tracker.clone(),
            shutdown.clone(),
            config.pull_wait.max(Duration::from_millis(100)),
        )));
    }
    info!(kinds = ?config.kinds, concurrency = config.concurrency, "worker running");
    shutdown.cancelled().await;
    // The deadline counts from the shutdown, not from the end of the open pulls.
    let stop_by = tokio::time::Instant::now() + config.shutdown_deadline;
    for pull in loops {
        let _ = pull.await;
    }
    tracker.close();
    info!(in_flight = tracker.len(), deadline = ?config.shutdown_deadline, "worker stopping");
    if tokio::time::timeout_at(stop_by, tracker.wait())
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
    follower_stop.cancel();
    background.close();
    background.wait().await;
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
    /// Where completions go: stored several to a message when they come together.
    completions: Completions,
    executors: Executors,
    cancels: Cancels,
    hand_back: CancellationToken,
    progress_every: Duration,
    metrics: WorkerMetrics,
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
    expires: Duration,
) {
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
        // Not given up at shutdown: once the request is out the server delivers what it
        // asks for, and those messages are handed back below.
        let pull = consumer
            .batch()
            .max_messages(permits.len())
            .expires(expires)
            .messages()
            .await;
        let mut batch = match pull {
            Ok(batch) => batch,
            Err(e) => {
                failures += 1;
                warn!(%kind, error = %e, failures, "pull failed; trying again");
                drop(permits);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(baton_bus::pull_retry_delay(failures)) => {}
                }
                continue;
            }
        };
        while let Some(permit) = permits.pop() {
            let next = tokio::select! {
                _ = shutdown.cancelled() => {
                    hand_back_batch(kind, batch, expires).await;
                    return;
                }
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

/// Hands back (NAK without delay) every job the rest of a pull delivers, at shutdown: no
/// slot will take them, and unsettled they would wait out their ack wait before another
/// worker could. The pull ends when it has delivered all it asked for or expires.
async fn hand_back_batch(
    kind: NodeKind,
    mut batch: async_nats::jetstream::consumer::pull::Batch,
    expires: Duration,
) {
    let mut handed = 0;
    let rest = async {
        while let Some(message) = batch.next().await {
            match message {
                Ok(message) => {
                    Inbound::new(message).nak(None).await.ok();
                    handed += 1;
                }
                Err(e) => {
                    debug!(%kind, error = %e, "pull ended with an error");
                    break;
                }
            }
        }
    };
    if tokio::time::timeout(expires + Duration::from_secs(1), rest)
        .await
        .is_err()
    {
        debug!(%kind, "pull still open at shutdown; what it delivers later waits out its ack wait");
    }
    if handed > 0 {
        info!(%kind, handed, "jobs pulled but not started handed back at shutdown");
    }
}

/// Handles one delivery of a job. Idempotent per attempt as far as the bus goes: the events it
/// publishes carry ids derived from the attempt, so a redelivery's duplicates are dropped.
async fn handle(kind: NodeKind, message: Inbound, ctx: &JobContext) {
    // Nothing of a job is read before it is known to be the planner's.
    if let Err(poison) = ctx.bus.check_job_signature(&message) {
        return set_aside(&message, poison, ctx).await;
    }
    let job = match baton_bus::decode_job(&message) {
        Ok(job) if job.kind() == kind => job,
        Ok(job) => {
            let poison = Poison {
                subject: message.subject().to_owned(),
                reason: format!("a {} job on the {kind} subject", job.kind()),
                run: Some(job.run),
                node: Some(job.node),
                attempt: Some(job.attempt),
            };
            return set_aside(&message, poison, ctx).await;
        }
        Err(poison) => return set_aside(&message, poison, ctx).await,
    };
    // Inputs kept apart on the bus are fetched first: the executors see a whole job.
    let job = match job.inputs_ref.is_none() {
        true => job,
        false => match ctx.bus.resolve_inputs(job.clone()).await {
            Ok(resolved) => resolved,
            Err(baton_bus::InputsError::Bus(e)) => {
                warn!(run = %job.run, node = %job.node, error = %e, "inputs not read; handing the job back");
                message.nak(Some(Duration::from_secs(1))).await.ok();
                ctx.metrics.count(kind, JobOutcome::HandedBack);
                return;
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
                return set_aside(&message, poison, ctx).await;
            }
            Err(e) => {
                error!(run = %job.run, node = %job.node, attempt = %job.attempt, error = %e, "job cannot run");
                let now = Timestamp::now();
                let stored = finish(&job, now, Outcome::failed(e.to_string()), &message, ctx).await;
                let outcome = if stored {
                    JobOutcome::Failed
                } else {
                    JobOutcome::HandedBack
                };
                ctx.metrics.count(kind, outcome);
                return;
            }
        },
    };
    // From here to the final ack the job is ours: reporting its start and its completion can
    // take a while on a busy server, as can the effect itself.
    let work = keep_alive(work(kind, &job, &message, ctx), &job, &message, ctx);
    match baton_telemetry::trace::enabled() {
        true => work.instrument(execute_span(kind, &job, &message)).await,
        false => work.await,
    }
}

/// The span of one job's execution: a child of the planner's dispatch span, whose context
/// the job's headers carry; what the executor calls (Kubernetes, Helm, ELBv2, HTTP) nests
/// under it, and the completion carries its context on to the next dispatch.
fn execute_span(kind: NodeKind, job: &Job, message: &Inbound) -> tracing::Span {
    let span = tracing::info_span!(
        "execute",
        otel.name = format!("execute {kind} {}/{}", job.workflow, job.node),
        otel.kind = "consumer",
        run = %job.run,
        node = %job.node,
        attempt = %job.attempt,
        kind = %kind,
    );
    if let Some(parent) =
        baton_telemetry::trace::extract(message.header("traceparent"), message.header("tracestate"))
    {
        baton_telemetry::trace::set_parent(&span, parent);
    }
    span
}

/// Drops a job whose run or node was cancelled; otherwise reports it started, runs its
/// effect, and reports how it ended (see [`handle`]).
async fn work(kind: NodeKind, job: &Job, message: &Inbound, ctx: &JobContext) {
    let stop = ctx.hand_back.child_token();
    if !ctx.cancels.begin(job, stop.clone()) {
        // The planner ended the node when it decided the cancel: nothing to report.
        info!(run = %job.run, node = %job.node, attempt = %job.attempt, "job of a cancelled run or node dropped");
        if let Err(e) = message.ack_fast().await {
            warn!(run = %job.run, node = %job.node, error = %e, "ack not sent; the job will be dropped again");
        }
        ctx.metrics.count(kind, JobOutcome::Cancelled);
        return;
    }
    let _in_flight = ctx.metrics.begin(kind);
    ctx.metrics.observe_queued(kind, message);
    let started_at = Timestamp::now();
    let running = std::time::Instant::now();
    let effect = start(kind, job, message, ctx, &stop, started_at).await;
    ctx.cancels.end(&job.msg_id());
    let (outcome, counted) = match effect {
        None => return ctx.metrics.count(kind, JobOutcome::HandedBack),
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
            message.nak(None).await.ok();
            return ctx.metrics.count(kind, JobOutcome::HandedBack);
        }
        Some(Effect::Stopped) => (
            Outcome::failed("cancelled".to_owned()),
            JobOutcome::Cancelled,
        ),
    };
    let stored = finish(job, started_at, outcome, message, ctx).await;
    ctx.metrics.count(
        kind,
        if stored {
            counted
        } else {
            JobOutcome::HandedBack
        },
    );
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
            .publish_one(&ctx.bus.event_message(&envelope(started)))
            .await
        {
            warn!(run = %job.run, node = %job.node, error = %e, "start not reported; handing the job back");
            message.nak(Some(Duration::from_secs(1))).await.ok();
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
/// the job is handed back, to be run again, rather than acknowledged unreported. Returns
/// whether the completion is stored.
async fn finish(
    job: &Job,
    started_at: Timestamp,
    outcome: Outcome,
    message: &Inbound,
    ctx: &JobContext,
) -> bool {
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
        message.nak(Some(Duration::from_secs(5))).await.ok();
        return false;
    }
    // Not waiting for the server to confirm the ack: the ack is lost only with the connection
    // or the server, and then the job is delivered once more (its completion is stored, the
    // planner ignores the second), as after a server crash that lost a confirmed ack.
    if let Err(e) = message.ack_fast().await {
        warn!(run = %job.run, node = %job.node, error = %e, "ack not sent; a redelivery will be ignored by the planner");
    }
    debug!(run = %job.run, node = %job.node, attempt = %job.attempt, succeeded, "job finished");
    true
}

/// Terminates a job that can never run and reports it as the node's failure when the message
/// says which node it is; otherwise logs it.
async fn set_aside(message: &Inbound, poison: Poison, ctx: &JobContext) {
    if let Some(kind) = job_kind_of(message.subject()) {
        ctx.metrics.count(kind, JobOutcome::SetAside);
    }
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

/// The kind a job subject (`<p>.jobs.<kind>`) names.
fn job_kind_of(subject: &str) -> Option<NodeKind> {
    subject.rsplit('.').next()?.parse().ok()
}

fn envelope(event: Event) -> EventEnvelope {
    EventEnvelope::new(event)
}
