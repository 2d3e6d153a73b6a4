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

use baton_bus::{Bus, Inbound};
use baton_schemas::wire::Job;
use baton_schemas::{NodeKind, NodeName, RunId};
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::completions::Completions;
use crate::executors::Executors;
use crate::executors::helm::{HelmConfig, HelmExecutor};
use crate::executors::pod::{PodConfig, PodExecutor};
use crate::job::JobContext;
use crate::metrics::WorkerMetrics;

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
pub(crate) struct Cancels(Arc<Mutex<CancelState>>);

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
    pub(crate) fn begin(&self, job: &Job, stop: CancellationToken) -> bool {
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
    pub(crate) fn end(&self, id: &str) {
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
        // Without the batch consumer (a NATS server whose permissions predate batches) the
        // worker still takes single jobs; batches wait for a worker that may take them.
        let batches = match bus.job_batch_consumer(kind).await {
            Ok(consumer) => Some(consumer),
            Err(e) => {
                error!(%kind, error = %e, "the consumer of batches of jobs cannot be made; taking single jobs only (does the NATS server have this build's permissions, deploy/nats/permissions.conf?)");
                None
            }
        };
        let ctx = Arc::new(JobContext {
            bus: bus.clone(),
            completions: completions.clone(),
            executors: executors.clone(),
            cancels: cancels.clone(),
            hand_back: hand_back.clone(),
            stopping: shutdown.clone(),
            progress_every,
            metrics: config.metrics.clone(),
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
        });
        let pull_wait = config.pull_wait.max(Duration::from_millis(100));
        // A first pull of batches expects full ones: it must not take a whole fan-out. Its
        // pulls wait at most BATCH_PULL_WAIT: a stopping worker reads its open pulls until
        // they end, and the batch consumer is idle while single jobs come.
        let loops_of_kind = [
            (Some(consumer), 1.0, pull_wait),
            (
                batches,
                f64::from(baton_bus::DEFAULT_JOB_BATCH),
                pull_wait.min(BATCH_PULL_WAIT),
            ),
        ];
        for (consumer, expected, wait) in loops_of_kind {
            let Some(consumer) = consumer else { continue };
            loops.push(tokio::spawn(pull_loop(
                kind,
                consumer,
                JobsPerMessage(expected),
                ctx.clone(),
                tracker.clone(),
                shutdown.clone(),
                wait,
            )));
        }
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

/// Pulls messages of one consumer of jobs (single jobs, or batches) while free slots remain.
/// A pull asks for as many messages as there are free slots over the jobs a message has held
/// lately, so that few jobs wait in this worker's buffer while another worker is idle. The
/// slots are not held by the pull: each job takes one before it starts (see
/// [`crate::job::handle`]), and the next pull waits until the jobs before it all have one
/// and a slot is free again; the kind's two consumers (single jobs and batches) share them.
async fn pull_loop(
    kind: NodeKind,
    consumer: async_nats::jetstream::consumer::PullConsumer,
    mut jobs_per_message: JobsPerMessage,
    ctx: Arc<JobContext>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    expires: Duration,
) {
    let mut failures = 0u32;
    loop {
        // Slots are granted in turn, so this waits behind every job already waiting for one.
        let free = tokio::select! {
            _ = shutdown.cancelled() => return,
            slot = ctx.slots.acquire() => {
                let _slot = slot.expect("the semaphore is never closed");
                ctx.slots.available_permits() + 1
            }
        };
        let wanted = jobs_per_message.messages_for(free);
        // Not given up at shutdown: once the request is out the server delivers what it
        // asks for, and those messages are handed back below.
        let pull = consumer
            .batch()
            .max_messages(wanted)
            .expires(expires)
            .messages()
            .await;
        let mut batch = match pull {
            Ok(batch) => batch,
            Err(e) => {
                failures += 1;
                warn!(%kind, error = %e, failures, "pull failed; trying again");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(baton_bus::pull_retry_delay(failures)) => {}
                }
                continue;
            }
        };
        for _ in 0..wanted {
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
                    let message = Inbound::new(message);
                    jobs_per_message.saw(baton_bus::jobs_in(&message));
                    tracker.spawn(crate::job::handle(kind, message, ctx.clone()));
                }
                Ok(Some(Err(e))) => {
                    // A pull that ends in an error (a leader moving, a consumer gone) is made
                    // again after a pause that grows, not at once.
                    failures += 1;
                    debug!(%kind, error = %e, failures, "pull ended with an error");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(baton_bus::pull_retry_delay(failures)) => {}
                    }
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        // The jobs just taken queue for their slots before the next pull counts the free
        // ones (this runtime may have one thread).
        tokio::task::yield_now().await;
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

/// The longest a pull of batches waits at the server (less when `--pull-wait` is less).
const BATCH_PULL_WAIT: Duration = Duration::from_secs(2);

/// How many jobs the messages of one kind held lately (a moving average, at least 1), as
/// their headers say: a pull asks for as many messages as there are free slots over it.
#[derive(Debug)]
struct JobsPerMessage(f64);

impl Default for JobsPerMessage {
    fn default() -> Self {
        JobsPerMessage(1.0)
    }
}

impl JobsPerMessage {
    /// Notes a message of `jobs` jobs.
    fn saw(&mut self, jobs: usize) {
        self.0 = (self.0 * 0.75 + jobs.max(1) as f64 * 0.25).max(1.0);
    }

    /// How many messages to ask for with `free` slots: at least one.
    fn messages_for(&self, free: usize) -> usize {
        ((free as f64 / self.0).floor() as usize).clamp(1, free.max(1))
    }
}

#[cfg(test)]
mod pull_tests {
    use super::JobsPerMessage;

    #[test]
    fn pulls_ask_for_fewer_messages_while_batches_come() {
        let mut seen = JobsPerMessage::default();
        assert_eq!(seen.messages_for(256), 256, "single jobs: a message a slot");
        for _ in 0..20 {
            seen.saw(64);
        }
        assert!((3..=4).contains(&seen.messages_for(256)), "{seen:?}");
        assert_eq!(seen.messages_for(10), 1, "always at least one");
        for _ in 0..40 {
            seen.saw(1);
        }
        assert!(seen.messages_for(256) >= 250, "{seen:?}");
    }
}
