//! The planner service: the one loop that feeds the decision core and carries out what it
//! decides.
//!
//! Every turn takes what is ready (a batch of events, a batch of triggers, one API command,
//! or a due timer) and applies it to the core.
//!
//! - Events and triggers come from streams that keep them in a causal order. Their jobs are
//!   published at once, the messages acked, and the state checkpointed to redb every
//!   [`CHECKPOINT_EVERY`] with the stream positions up to which it holds every message. A
//!   crash loses at most that interval, which the restarted planner applies again from the
//!   streams; the jobs it decides again carry the same message ids, and the bus drops them.
//! - API commands, timers and cluster-watch inputs exist nowhere else: their changes are
//!   committed together with the messages they cause (the outbox: jobs, cancel notices,
//!   ignitor fires) before anything is published, and a restart re-sends the outbox.
//! - An ignitor's fire is decided by a timer and published on the triggers stream; its chain
//!   starts when the planner reads it back, as a bus input.
//! - A poison event whose headers name its attempt is applied as that attempt's failure.

mod changes;
mod commands;
mod inbound;
mod outbound;
mod replica;
mod traces;

pub use baton_schemas::ids::new_run_id;
pub use changes::{Changed, Changes};
pub use commands::Command;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::consumer;
use baton_bus::{Bus, Inbound, Outgoing, PreparedJob};
use baton_schemas::status::RunStatus;
use baton_schemas::wire::{Job, Timestamp};
use baton_schemas::{Document, RunId, WorkflowName};
use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::lease::LeaseState;
use crate::store::{Change, Mirror, Store, StoreError, WriteSet};
use baton_core::{
    Action, CellCommand, CellTrigger, ClusterSource, Core, CoreConfig, Expect, Input, Observation,
    Refusal, Registered, TriggerPosition,
};
use replica::Replica;

/// How often a standby planner tries to take the store.
const STANDBY_POLL: Duration = Duration::from_millis(500);

/// How often a standby planner applies to its store what the active one appended to the
/// state stream: what it lacks at a takeover is at most this much of the active one's
/// writes.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// Planner settings.
#[derive(Clone, Debug)]
pub struct PlannerConfig {
    /// Where the redb file (`planner.redb`) lives.
    pub data_dir: PathBuf,
    /// Decision core settings.
    pub core: CoreConfig,
    /// How many bus messages one turn takes at most.
    pub batch: usize,
    /// The most jobs one message carries (see [`DEFAULT_JOB_BATCH`]).
    pub job_batch: usize,
    /// The kinds whose jobs are batched; those of other kinds go alone.
    pub job_batch_kinds: Vec<baton_schemas::NodeKind>,
    /// Woken when a Cell is applied, so that its target groups are discovered at once rather
    /// than at the next sync period.
    pub discover_now: std::sync::Arc<tokio::sync::Notify>,
    /// How much the state stream grows before the planner writes a snapshot there (see
    /// [`DEFAULT_SNAPSHOT_BYTES`]).
    pub snapshot_bytes: u64,
    /// The lease on the bus that makes this planner the active one; `None`: it acts
    /// alone (a test's planner).
    pub lease: Option<crate::lease::LeaseConfig>,
    /// Where the planner counts what it does (registered nowhere by default).
    pub metrics: crate::metrics::PlannerMetrics,
    /// Where it says what each turn changed, for the API's watch streams.
    pub changes: Changes,
}

/// The most jobs one message carries by default: the jobs of one kind that one input
/// dispatches travel up to this many together.
pub use baton_bus::DEFAULT_JOB_BATCH;

/// The kinds whose jobs are batched by default: those that hold a worker's slot for a
/// moment. A worker takes a batch whole, so jobs that hold one for long (a pod, a Helm
/// release, a process) go alone and spread over every worker.
pub const DEFAULT_JOB_BATCH_KINDS: [baton_schemas::NodeKind; 3] = [
    baton_schemas::NodeKind::Noop,
    baton_schemas::NodeKind::Publish,
    baton_schemas::NodeKind::Webhook,
];

/// How much the state stream grows between two snapshots by default: 64 MiB.
pub const DEFAULT_SNAPSHOT_BYTES: u64 = 64 * 1024 * 1024;

impl PlannerConfig {
    /// Returns the default settings with the store under `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            core: CoreConfig::default(),
            batch: 256,
            job_batch: usize::from(DEFAULT_JOB_BATCH),
            job_batch_kinds: DEFAULT_JOB_BATCH_KINDS.to_vec(),
            discover_now: Default::default(),
            snapshot_bytes: DEFAULT_SNAPSHOT_BYTES,
            lease: None,
            metrics: Default::default(),
            changes: Changes::default(),
        }
    }
}

/// Waits for the lease, keeping the store a warm copy of the bus's state meanwhile: every
/// [`FOLLOW_EVERY`] it applies the commits the active planner appended, so that taking over
/// reads only the last moments' commits. It also keeps `mirror`, the store decoded in memory,
/// so that taking over skips reading the store. Returns `false` when `shutdown` fires first.
async fn stand_by(
    bus: &Bus,
    store: &Store,
    mirror: &mut Option<Mirror>,
    lease: &mut watch::Receiver<LeaseState>,
    shutdown: &CancellationToken,
) -> anyhow::Result<bool> {
    let mut following = false;
    match store.mirror() {
        Ok(copy) => *mirror = Some(copy),
        Err(e) => {
            warn!(error = %e, "the store could not be copied into memory; it will be loaded on taking over")
        }
    }
    loop {
        if !matches!(*lease.borrow_and_update(), LeaseState::Waiting) {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(false),
            changed = lease.changed() => {
                changed.context("the lease's thread ended")?;
                continue;
            }
            _ = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
        // The stream missing (no planner ever acted on this bus) or a read failing is left
        // to the next round: a standby's copy is an optimization, and catching up on taking
        // over does the rest.
        match Replica::follow(bus, store, mirror).await {
            Ok(applied) if applied > 0 && !following => {
                info!(applied, "standing by: following the bus's planner state");
                following = true;
            }
            Ok(applied) => debug!(applied, "standby store follows the bus"),
            Err(e) => debug!(error = %e, "standby store did not follow the bus this time"),
        }
    }
    if let LeaseState::Lost(why) = &*lease.borrow() {
        anyhow::bail!("the planner lease: {why}");
    }
    Ok(true)
}

/// Where a turn's inputs come from, which decides when its changes are made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// Events and triggers: kept on the bus in a causal order, so what a crash loses is
    /// applied again from the streams. Their jobs are published at once and the state is
    /// checkpointed every [`CHECKPOINT_EVERY`].
    Bus,
    /// API commands and timers: nothing outside the planner keeps them, so the state is
    /// committed (with the jobs, as an outbox) before any job is published.
    Local,
}

/// How long bus-driven changes may stay in memory only. A crash loses them, and the restarted
/// planner applies the same events again from the streams: the longer this is, the fewer
/// commits under load and the more events a restart replays.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// How long the planner waits before it reads the stream positions again after a read failed
/// (the server restarting): the changes stay unsaved meanwhile, and the planner goes on.
const POSITIONS_RETRY: Duration = Duration::from_secs(1);

/// How often the Cells' and groups' gauges are set from the core at most, while they change.
const DOCUMENT_METRICS_EVERY: Duration = Duration::from_secs(1);

/// The running planner: its core, store and bus.
pub struct Planner {
    bus: Bus,
    store: Store,
    /// The planner's place in the bus's state stream, which every commit goes to first.
    replica: Replica,
    /// How the lease stands, when the planner has one: it stops acting once it is lost. The
    /// guard gives the lease up when the planner is dropped.
    lease: Option<(watch::Receiver<LeaseState>, tokio_util::sync::DropGuard)>,
    core: Core,
    /// When the triggers stream was created (nanoseconds): with a trigger's sequence, it
    /// names the run the trigger starts.
    triggers_created: u64,
    /// The planner's consumers, made anew at start to deliver what the store lacks.
    events: consumer::PullConsumer,
    triggers: consumer::PullConsumer,
    /// Ids of outbox messages the bus has stored, removed from the outbox by the next commit.
    published: Vec<String>,
    /// When the state's changes the store lacks are to be checkpointed with the stream
    /// positions; `None` when it lacks nothing.
    checkpoint_due: Option<Instant>,
    config: PlannerConfig,
    /// Where the triggers read from the bus are recorded.
    audit: crate::audit::Audit,
    /// When the Cells' and groups' gauges are to be set from the core; `None`: they are.
    document_metrics_due: Option<Instant>,
    /// The jobs' trace causes, when spans are exported (`traces.rs`).
    traces: traces::Traces,
    /// The trace context of the command being answered (the API request's).
    command_cause: Option<baton_telemetry::trace::Context>,
}

impl Planner {
    /// Opens the store, restores the core, makes sure the streams exist, re-sends what the
    /// outbox still holds, and applies again what the streams hold past the store's last
    /// checkpoint (triggers first, then events: a trigger's run comes before its events).
    ///
    /// The store's file lock is the planner's lease: while another planner holds it, this one
    /// stands by and takes over as soon as that one exits or dies (the operating system drops
    /// the lock of a killed process). Returns `None` when `shutdown` fires while standing by.
    pub async fn start(
        bus: Bus,
        config: PlannerConfig,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<Planner>> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
        let path = config.data_dir.join("planner.redb");
        let mut standing_by = false;
        let store = loop {
            match Store::open(&path) {
                Ok(store) => break store,
                Err(StoreError::Held) => {
                    if !standing_by {
                        info!(store = %path.display(), "another planner holds the store; standing by");
                        standing_by = true;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(STANDBY_POLL) => {}
                    }
                }
                Err(e) => {
                    return Err(
                        anyhow::Error::new(e).context(format!("opening {}", path.display()))
                    );
                }
            }
        };
        if standing_by {
            info!(store = %path.display(), "the store is free");
        }
        // The store's file lock first: once this process holds it, no other process on this
        // data directory is alive, so a lease held under this directory's id is an earlier
        // process's and is taken back at once.
        let mut mirror = None;
        let lease = match config.lease.clone() {
            None => None,
            Some(lease) => {
                let id = crate::lease::planner_id(&config.data_dir)?;
                // Given up when the planner is dropped, after its last commit: a standby
                // that took it earlier would find its first commit fenced by that one.
                let release = CancellationToken::new();
                let mut state = crate::lease::keep(lease, id, release.clone())?;
                let release = release.drop_guard();
                if !stand_by(&bus, &store, &mut mirror, &mut state, shutdown).await? {
                    return Ok(None);
                }
                if let LeaseState::Held { epoch, .. } = &*state.borrow() {
                    bus.set_epoch(*epoch);
                    config.metrics.set_leader(*epoch);
                }
                Some((state, release))
            }
        };
        if config.lease.is_none() {
            config.metrics.set_leader(0);
        }
        info!("this planner is active now");
        let active_since = Instant::now();
        bus.ensure_streams()
            .await
            .context("creating the bus streams")?;
        bus.ensure_state_stream()
            .await
            .context("creating the state stream")?;
        let replica = Replica::catch_up(&bus, &store, &mut mirror, config.snapshot_bytes).await?;
        let mirror_used = mirror.is_some();
        let mut loaded = match mirror {
            Some(copy) => copy.into_loaded(),
            None => store.load().context("loading the planner store")?,
        };
        let unfinished = loaded
            .state
            .runs
            .iter()
            .filter(|r| r.finished_at.is_none())
            .count();
        info!(
            workflows = loaded.state.workflows.len(),
            runs = loaded.state.runs.len(),
            unfinished,
            outbox = loaded.outbox.len(),
            events_seq = loaded.events_seq,
            triggers_seq = loaded.triggers_seq,
            from_memory = mirror_used,
            elapsed = ?active_since.elapsed(),
            "planner state loaded"
        );
        let core = Core::restore(config.core, std::mem::take(&mut loaded.state));
        let triggers_created = bus.stream_created("TRIGGERS").await?;
        let events = bus.events_consumer(loaded.events_seq).await?;
        let triggers = bus.triggers_consumer(loaded.triggers_seq).await?;
        let mut planner = Planner {
            audit: crate::audit::Audit::new(bus.clone()),
            bus,
            store,
            replica,
            lease,
            core,
            triggers_created,
            events,
            triggers,
            published: Vec::new(),
            checkpoint_due: None,
            config,
            document_metrics_due: Some(Instant::now()),
            traces: Default::default(),
            command_cause: None,
        };
        let (outbox, undeliverable) = planner.fitting(loaded.outbox);
        planner.flush_outbox(outbox).await?;
        if !undeliverable.is_empty() {
            planner.turn(undeliverable, Origin::Local).await?;
        }
        planner.replay().await?;
        Ok(Some(planner))
    }

    /// Applies what the streams hold past the last checkpoint, publishing nothing on the way:
    /// a job dispatched during the replay whose completion the replay also met is not sent
    /// again. The jobs still waiting at the end, and the cancel notices met, are committed as
    /// an outbox and sent (the bus drops those it already has).
    async fn replay(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        // The jobs of each input, apart: they are batched as the input's turn batched them.
        let mut dispatched: Vec<Vec<Box<Job>>> = Vec::new();
        let mut notices = Vec::new();
        let mut applied = 0;
        for which in [Replay::Triggers, Replay::Events] {
            let mut failures = 0;
            loop {
                let consumer = match which {
                    Replay::Triggers => &self.triggers,
                    Replay::Events => &self.events,
                };
                let mut batch = Vec::new();
                if let Err(e) = fetch(consumer, self.config.batch, &mut batch).await {
                    // A consumer just made on a cluster answers 503 until its replicas have
                    // chosen a leader: what was read is applied, and an empty fetch is tried
                    // again, for a bounded time.
                    failures += 1;
                    if batch.is_empty() {
                        if failures > REPLAY_FETCH_TRIES {
                            return Err(e.context("replaying the streams"));
                        }
                        warn!(error = %e, failures, "replay fetch failed; trying again");
                        tokio::time::sleep(baton_bus::pull_retry_delay(failures)).await;
                        continue;
                    }
                } else {
                    failures = 0;
                }
                if batch.is_empty() {
                    break;
                }
                applied += batch.len();
                let inputs = match which {
                    Replay::Triggers => self.trigger_inputs(&batch),
                    Replay::Events => self.event_inputs(&batch).await,
                };
                let now = Timestamp::now();
                let applying = Instant::now();
                for (input, cause) in inputs {
                    let decided = self.core.apply(input, now);
                    if baton_telemetry::trace::enabled() {
                        self.traces.caused(&decided, cause.as_ref());
                    }
                    let mut jobs = Vec::new();
                    for action in decided {
                        match action {
                            Action::Dispatch(job) => jobs.push(job),
                            // Cancel notices are sent again (the bus drops those it has).
                            other => {
                                notices.extend(self.message(&other));
                                self.config
                                    .metrics
                                    .count_actions(std::slice::from_ref(&other));
                                self.log_actions(&[other]);
                            }
                        }
                    }
                    if !jobs.is_empty() {
                        dispatched.push(jobs);
                    }
                }
                self.config.metrics.observe_apply(applying.elapsed());
                self.config
                    .metrics
                    .count_applied(which.stream(), batch.len());
                for message in batch {
                    message.ack_fast().await.ok();
                }
            }
        }
        // An input's jobs are cut into batches again as its turn cut them, and each batch
        // that holds a job still waiting goes again whole: the bus drops one it has, and one
        // without the jobs already done would be another batch, run again. A job sent alone
        // goes again only while it waits.
        let (mut queued, mut starts) = (Vec::new(), Vec::new());
        for jobs in dispatched {
            if jobs
                .iter()
                .any(|j| self.core.is_queued(&j.run, &j.node, j.attempt))
            {
                starts.push(queued.len());
                queued.extend(jobs.into_iter().map(Action::Dispatch));
            }
        }
        let mut waiting = notices;
        let messages = self
            .messages(&mut queued, &starts, Timestamp::now())
            .await?;
        waiting.extend(messages.into_iter().filter(|m| self.waits(m)));
        self.traces.end_turn(&queued);
        self.log_actions(&queued);
        self.config.metrics.count(self.core.take_tally());
        self.config.metrics.set_replayed(applied);
        if applied > 0 {
            info!(
                messages = applied,
                jobs = waiting.len(),
                elapsed = ?started.elapsed(),
                "applied again what the streams hold past the last checkpoint"
            );
        }
        self.checkpoint(waiting.clone(), true).await?;
        self.flush_outbox(waiting).await
    }

    /// Runs until `shutdown` fires, answering `commands`.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut events = baton_bus::PullStream::new(self.events.clone(), self.config.batch);
        let mut triggers = baton_bus::PullStream::new(self.triggers.clone(), self.config.batch);
        info!("planner running");
        let result = loop {
            let now = Instant::now();
            let mut sleep = self
                .core
                .next_deadline()
                .map(|d| d.since(Timestamp::now()))
                .unwrap_or(Duration::from_secs(3600));
            if let Some(due) = self.checkpoint_due {
                sleep = sleep.min(due.saturating_duration_since(now));
            }
            if let Some(due) = self.document_metrics_due {
                sleep = sleep.min(due.saturating_duration_since(now));
            }
            let turn = tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                first = events.next() => {
                    let batch = drain(first, &mut events, self.config.batch);
                    self.on_events(batch).await
                }
                first = triggers.next() => {
                    let batch = drain(first, &mut triggers, self.config.batch);
                    self.on_triggers(batch).await
                }
                Some(command) = commands.recv() => self.on_command(command).await,
                why = lease_lost(self.lease.as_mut().map(|(state, _)| state)) => {
                    break Err(anyhow::anyhow!("this planner lost the lease ({why}); it stops acting"));
                }
                _ = tokio::time::sleep(sleep) => self.on_timer().await,
            };
            if let Err(e) = turn {
                break Err(e);
            }
            if self.checkpoint_due.is_some_and(|due| due <= Instant::now())
                && let Err(e) = self.checkpoint(Vec::new(), true).await
            {
                break Err(e);
            }
            if self
                .document_metrics_due
                .is_some_and(|due| due <= Instant::now())
            {
                self.config.metrics.refresh_documents(&self.core);
                self.document_metrics_due = None;
            }
        };
        // At a stop, what was applied is made durable, so the next start replays nothing. After
        // a failure it is not: the state may hold jobs that a failed publish never sent (a bus
        // turn publishes without an outbox), and a checkpoint would put it past them for good.
        // The next start replays from the last checkpoint instead, as after a kill, and decides
        // and sends those jobs again.
        let result = match result {
            Ok(()) => self.checkpoint(Vec::new(), true).await,
            Err(e) => {
                error!(
                    error = format!("{e:#}"),
                    "planner failed; leaving the state since the last checkpoint to be replayed"
                );
                Err(e)
            }
        };
        // Acks are buffered by the client: send them before the process exits.
        if let Err(e) = self.bus.client().flush().await {
            warn!(error = %e, "flushing the bus connection failed");
        }
        info!("planner stopped");
        result
    }

    /// Fires what is due: retries, timeouts, ignitor schedules.
    async fn on_timer(&mut self) -> anyhow::Result<()> {
        let due = self
            .core
            .next_deadline()
            .is_some_and(|d| d <= Timestamp::now());
        if due {
            self.turn(vec![Input::Tick], Origin::Local).await?;
        }
        Ok(())
    }

    async fn on_events(&mut self, batch: Vec<Inbound>) -> anyhow::Result<()> {
        let inputs = self.event_inputs(&batch).await;
        // Events, not messages: a worker's batch holds many.
        self.config.metrics.count_applied("events", inputs.len());
        self.turn_caused(inputs, Origin::Bus).await?;
        for message in batch {
            message.ack_fast().await.ok();
        }
        Ok(())
    }

    async fn on_triggers(&mut self, batch: Vec<Inbound>) -> anyhow::Result<()> {
        self.config.metrics.count_applied("triggers", batch.len());
        let inputs = self.trigger_inputs(&batch);
        let actions = self.turn_caused(inputs, Origin::Bus).await?;
        let mut refused = 0;
        for action in actions {
            if let Action::Refused(refusal) = action {
                warn!(%refusal, "trigger refused");
                refused += 1;
            }
        }
        self.config.metrics.count_triggers(batch.len(), refused);
        for message in batch {
            message.ack_fast().await.ok();
        }
        Ok(())
    }

    /// Applies `inputs`, publishes the jobs they cause and returns the actions. Local inputs
    /// are committed, with their jobs as an outbox, before anything is published; bus inputs
    /// are published at once and checkpointed later (see [`Origin`]). An error here is a
    /// store or bus failure the planner cannot go on after.
    async fn turn(&mut self, inputs: Vec<Input>, origin: Origin) -> anyhow::Result<Vec<Action>> {
        // A command's inputs were caused by its request.
        let cause = self.command_cause.clone();
        let caused = inputs.into_iter().map(|i| (i, cause.clone())).collect();
        self.turn_caused(caused, origin).await
    }

    /// [`Planner::turn`], each input with the trace context that caused it.
    async fn turn_caused(
        &mut self,
        inputs: Vec<(Input, Option<baton_telemetry::trace::Context>)>,
        origin: Origin,
    ) -> anyhow::Result<Vec<Action>> {
        let now = Timestamp::now();
        let applying = Instant::now();
        let watched = self.config.changes.watched();
        self.core.set_noticing(watched);
        let tracing = baton_telemetry::trace::enabled();
        let mut actions = Vec::new();
        // Where each input's actions begin: the jobs of one input are batched together.
        let mut starts = Vec::with_capacity(inputs.len());
        for (input, cause) in inputs {
            let start = actions.len();
            starts.push(start);
            actions.extend(self.core.apply(input, now));
            if tracing {
                self.traces.caused(&actions[start..], cause.as_ref());
            }
        }
        self.config.metrics.observe_apply(applying.elapsed());
        let jobs = self.messages(&mut actions, &starts, now).await?;
        if tracing {
            self.traces.end_turn(&actions);
        }
        self.config.metrics.count(self.core.take_tally());
        self.config.metrics.count_actions(&actions);
        self.document_metrics_due
            .get_or_insert_with(|| Instant::now() + DOCUMENT_METRICS_EVERY);
        self.check_lease()?;
        match origin {
            Origin::Local => {
                self.checkpoint(jobs.clone(), false).await?;
                self.flush_outbox(jobs).await?;
            }
            Origin::Bus => {
                self.bus
                    .publish_all(&jobs)
                    .await
                    .context("publishing jobs, cancel notices and fires")?;
                self.changed();
            }
        }
        self.log_actions(&actions);
        if watched {
            let runs = self.core.take_noticed();
            self.config.changes.send(Changed { runs });
        }
        Ok(actions)
    }

    /// Commits what the core changed, `outbox` (messages about to be published: jobs, cancel notices, ignitor fires), and the outbox
    /// messages already published. With `streams`, also the stream positions up to which
    /// every message is applied: the consumers' ack floors, since a message is acked only
    /// once applied (a floor read late only makes a restart replay more). Positions that
    /// cannot be read (the server restarting) are left for a later checkpoint, after
    /// [`POSITIONS_RETRY`]: the state is committed without them, and a restart meanwhile
    /// replays more.
    async fn checkpoint(&mut self, outbox: Vec<Outgoing>, streams: bool) -> anyhow::Result<()> {
        self.check_lease()?;
        let (mut events_seq, mut triggers_seq) = (None, None);
        if streams {
            match self.positions().await {
                Ok((events, triggers)) => {
                    (events_seq, triggers_seq) = (Some(events), Some(triggers))
                }
                Err(e) => {
                    warn!(error = %e, "reading the stream positions failed; checkpointing without them");
                    self.checkpoint_due = Some(Instant::now() + POSITIONS_RETRY);
                }
            }
        }
        let published = std::mem::take(&mut self.published);
        let change = Change {
            state: self.core.take_changes(),
            outbox,
            published,
            triggers_seq,
            events_seq,
        };
        if !change.is_empty() {
            let committing = Instant::now();
            // The bus first: a commit the store holds is always on the bus too, so another
            // planner rebuilds all of it; one on the bus that the store lacks (a crash between
            // the two) is applied again at the next start.
            let writes = WriteSet::of(&change);
            let seq = self.replica.append(&self.bus, &writes).await?;
            self.store
                .apply(&writes, Some(seq))
                .context("committing planner state")?;
            self.config.metrics.observe_checkpoint(committing.elapsed());
            if self.replica.snapshot_due() {
                self.replica.snapshot(&self.bus, &self.store).await?;
            }
        }
        // Positions read before a bus turn's changes were made are behind them: only a
        // checkpoint with positions read after leaves nothing unsaved.
        if events_seq.is_some() {
            self.checkpoint_due = None;
        }
        Ok(())
    }

    /// Reads the ack floors of the events and triggers consumers.
    async fn positions(&mut self) -> Result<(u64, u64), baton_bus::BusError> {
        Ok((
            Bus::ack_floor(&mut self.events).await?,
            Bus::ack_floor(&mut self.triggers).await?,
        ))
    }

    /// Notes that the store lacks changes: they are checkpointed within [`CHECKPOINT_EVERY`].
    fn changed(&mut self) {
        self.checkpoint_due
            .get_or_insert_with(|| Instant::now() + CHECKPOINT_EVERY);
    }
}

impl Planner {
    /// Fails when this planner may not act: checked before anything is published, so that a
    /// planner paused past its lease publishes nothing once it runs again, even before its
    /// lease's thread has said the lease is lost.
    fn check_lease(&self) -> anyhow::Result<()> {
        let Some((lease, _)) = &self.lease else {
            return Ok(());
        };
        match lease.borrow().refuses_acting(Instant::now()) {
            None => Ok(()),
            Some(why) => anyhow::bail!("this planner lost the lease ({why}); it stops acting"),
        }
    }
}

/// How many fetches in a row the replay tries before it gives up (about a minute and a half
/// with the pull's growing delays).
const REPLAY_FETCH_TRIES: u32 = 50;

/// Reads one batch of at most `max` messages into `batch`; on an error, `batch` keeps what
/// was read before it.
async fn fetch(
    consumer: &consumer::PullConsumer,
    max: usize,
    batch: &mut Vec<Inbound>,
) -> anyhow::Result<()> {
    let mut messages = consumer
        .fetch()
        .max_messages(max)
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    while let Some(message) = messages.next().await {
        batch.push(Inbound::new(message.map_err(|e| anyhow::anyhow!("{e}"))?));
    }
    Ok(())
}

/// Returns why the lease was lost, when it is; never when the planner has none.
async fn lease_lost(lease: Option<&mut watch::Receiver<LeaseState>>) -> String {
    let Some(lease) = lease else {
        return std::future::pending().await;
    };
    match lease.wait_for(|s| matches!(s, LeaseState::Lost(_))).await {
        Ok(state) => match &*state {
            LeaseState::Lost(why) => why.clone(),
            _ => unreachable!("waited for a lost lease"),
        },
        Err(_) => "the lease's thread ended".to_owned(),
    }
}

/// Which stream a replay reads.
#[derive(Clone, Copy, Debug)]
enum Replay {
    Triggers,
    Events,
}

impl Replay {
    /// The stream's name as a metric's label value.
    fn stream(self) -> &'static str {
        match self {
            Replay::Triggers => "triggers",
            Replay::Events => "events",
        }
    }
}

fn refused(actions: &[Action]) -> Option<Refusal> {
    actions.iter().find_map(|a| match a {
        Action::Refused(r) => Some(r.clone()),
        _ => None,
    })
}

/// Returns `first` and whatever else `pull` has ready, up to `max` messages.
fn drain(first: Inbound, pull: &mut baton_bus::PullStream, max: usize) -> Vec<Inbound> {
    let mut batch = vec![first];
    while batch.len() < max {
        match pull.next().now_or_never() {
            Some(message) => batch.push(message),
            None => break,
        }
    }
    batch
}
