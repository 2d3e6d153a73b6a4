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
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use async_nats::jetstream::consumer;
use baton_bus::{Bus, Inbound, Outgoing, PreparedJob};
use baton_schemas::status::RunStatus;
use baton_schemas::wire::Timestamp;
use baton_schemas::{Document, RunId, WorkflowName};
use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::core::{
    Action, CellCommand, CellTrigger, ClusterSource, Core, CoreConfig, Expect, Input, Observation,
    Refusal, Registered, TriggerPosition,
};
use crate::store::{Change, Store, StoreError};

/// How often a standby planner tries to take the store.
const STANDBY_POLL: Duration = Duration::from_millis(500);

/// Planner settings.
#[derive(Clone, Debug)]
pub struct PlannerConfig {
    /// Where the redb file (`planner.redb`) lives.
    pub data_dir: PathBuf,
    /// Decision core settings.
    pub core: CoreConfig,
    /// How many bus messages one turn takes at most.
    pub batch: usize,
    /// Woken when a Cell is applied, so that its target groups are discovered at once rather
    /// than at the next sync period.
    pub discover_now: std::sync::Arc<tokio::sync::Notify>,
}

impl PlannerConfig {
    /// Returns the default settings with the store under `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            core: CoreConfig::default(),
            batch: 256,
            discover_now: Default::default(),
        }
    }
}

/// A request from the API, answered by the loop.
#[derive(Debug)]
pub enum Command {
    /// Registers a validated document and, for a workflow with `start`, starts a run of it
    /// with that data.
    Apply {
        /// The document.
        document: Box<Document>,
        /// The run's trigger data, when a run should start.
        start: Option<String>,
        /// The id of that run (default: a new one). An id already known starts nothing, so
        /// a caller that derives the id from what it applies may apply it again safely.
        run: Option<RunId>,
        /// The cluster object the document comes from; `None` for the API.
        source: Option<ClusterSource>,
        /// The new run's id, when one started.
        reply: oneshot::Sender<Result<Option<RunId>, Refusal>>,
    },
    /// Starts a run of a registered workflow.
    Start {
        /// The workflow.
        workflow: WorkflowName,
        /// The run's id, when the caller chose one (an idempotency key's); a new one
        /// otherwise. A run id already known starts nothing and is answered again.
        run: Option<RunId>,
        /// The trigger data.
        data: String,
        /// The new run's id.
        reply: oneshot::Sender<Result<RunId, Refusal>>,
    },
    /// Cancels a run.
    Cancel {
        /// The run.
        run: RunId,
        /// Done, or why not.
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// Forgets a registered document (deleted from a cluster, or by a person); an application
    /// group's releases are uninstalled in reverse order first.
    Remove {
        /// The document.
        document: Registered,
        /// Done (for a group: its delete run started or waits), or why not (a workflow, task
        /// or ignitor that is not registered).
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// Reads every document applied from a cluster object, with that object.
    Sources {
        /// The documents and objects.
        reply: oneshot::Sender<Vec<(Registered, ClusterSource)>>,
    },
    /// Says whether a document is registered.
    Exists {
        /// The document.
        document: Registered,
        /// Whether it is.
        reply: oneshot::Sender<bool>,
    },
    /// Reads one run.
    Status {
        /// The run.
        run: RunId,
        /// Its status, if it exists.
        reply: oneshot::Sender<Option<RunStatus>>,
    },
    /// Reads every task's status.
    Tasks {
        /// The tasks, by name.
        reply: oneshot::Sender<Vec<serde_json::Value>>,
    },
    /// Reads every ignitor's status.
    Ignitors {
        /// The ignitors, by name.
        reply: oneshot::Sender<Vec<serde_json::Value>>,
    },
    /// Reads every run, oldest first.
    List {
        /// The runs.
        reply: oneshot::Sender<Vec<RunStatus>>,
    },
    /// Reads every application group's status.
    Groups {
        /// The groups' views, by name.
        reply: oneshot::Sender<Vec<serde_json::Value>>,
    },
    // --- Cells ---
    /// Reads every Cell's status.
    Cells {
        /// The Cells, by name.
        reply: oneshot::Sender<Vec<serde_json::Value>>,
    },
    /// Reads every Cell's spec, for the discovery.
    CellSpecs {
        /// The Cells.
        reply: oneshot::Sender<Vec<baton_schemas::cell::Cell>>,
    },
    /// Applies what a discovery saw.
    Observe {
        /// What it saw.
        observation: Box<Observation>,
        /// Done.
        reply: oneshot::Sender<()>,
    },
    /// Resumes, aborts or promotes a Cell's rollout.
    CellCommand {
        /// The Cell.
        cell: String,
        /// What to do.
        command: CellCommand,
        /// The rollout and step the command is meant for, when the caller named them.
        expect: Expect,
        /// Done, or why not.
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
}

/// Returns a new run id: 12 lowercase letters and digits from the clock and a random seed.
pub fn new_run_id() -> RunId {
    use std::hash::BuildHasher;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut n = std::collections::hash_map::RandomState::new().hash_one(nanos);
    let mut id = String::with_capacity(12);
    for _ in 0..12 {
        id.push(char::from_digit((n % 36) as u32, 36).expect("below 36"));
        n /= 36;
    }
    RunId::new(id)
}

/// Returns the run id of a trigger that names none: `t` and 12 lowercase letters and digits
/// derived from the message's place in its stream, so that applying the trigger again (after
/// a crash, from the stream) starts nothing new.
pub fn trigger_run_id(stream_created: u64, seq: u64) -> RunId {
    crate::ids::hashed_run_id(
        't',
        [stream_created, seq].iter().flat_map(|v| v.to_le_bytes()),
    )
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

/// The running planner: its core, store and bus.
pub struct Planner {
    bus: Bus,
    store: Store,
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
            info!(store = %path.display(), "the store is free; this planner is active now");
        }
        let mut loaded = store.load().context("loading the planner store")?;
        let unfinished = loaded
            .runs
            .iter()
            .filter(|r| r.finished_at.is_none())
            .count();
        info!(
            workflows = loaded.workflows.len(),
            runs = loaded.runs.len(),
            unfinished,
            outbox = loaded.outbox.len(),
            events_seq = loaded.events_seq,
            triggers_seq = loaded.triggers_seq,
            "planner state loaded"
        );
        let core = Core::restore(config.core, &mut loaded);
        bus.ensure_streams()
            .await
            .context("creating the bus streams")?;
        let triggers_created = bus.stream_created("TRIGGERS").await?;
        let events = bus.events_consumer(loaded.events_seq).await?;
        let triggers = bus.triggers_consumer(loaded.triggers_seq).await?;
        let mut planner = Planner {
            bus,
            store,
            core,
            triggers_created,
            events,
            triggers,
            published: Vec::new(),
            checkpoint_due: None,
            config,
        };
        let (outbox, undeliverable) = planner.fitting(loaded.outbox);
        planner.flush_outbox(outbox).await?;
        if !undeliverable.is_empty() {
            planner.turn(undeliverable, Origin::Local).await?;
        }
        planner.replay().await?;
        Ok(Some(planner))
    }

    /// Splits an outbox kept from an earlier start into the messages the bus takes and, for
    /// jobs larger than it takes now (committed before the bus's largest message shrank, or
    /// by a build that did not keep large inputs apart), the failure of their node. Without
    /// this, such a job would stop every start of the planner. The jobs set aside leave the
    /// outbox with the next commit.
    fn fitting(&mut self, outbox: Vec<Outgoing>) -> (Vec<Outgoing>, Vec<Input>) {
        let limit = self.bus.max_message_size();
        let mut fits = Vec::with_capacity(outbox.len());
        let mut undeliverable = Vec::new();
        for message in outbox {
            if message.size() <= limit {
                fits.push(message);
                continue;
            }
            let reason = PreparedJob::too_large(message.size(), limit);
            error!(subject = %message.subject, msg_id = %message.msg_id, %reason, "an outbox message the bus cannot carry set aside");
            use baton_schemas::wire::headers;
            if let (Some(run), Some(node), Some(attempt)) = (
                message.header(headers::RUN),
                message.header(headers::NODE),
                message
                    .header(headers::ATTEMPT)
                    .and_then(|a| a.parse().ok()),
            ) {
                undeliverable.push(Input::Undeliverable {
                    run: RunId::new(run),
                    node: baton_schemas::NodeName::new(node),
                    attempt: baton_schemas::Attempt(attempt),
                    reason,
                });
            }
            self.published.push(message.msg_id);
        }
        (fits, undeliverable)
    }

    /// Applies what the streams hold past the last checkpoint, publishing nothing on the way:
    /// a job dispatched during the replay whose completion the replay also met is not sent
    /// again. The jobs still waiting at the end, and the cancel notices met, are committed as
    /// an outbox and sent (the bus drops those it already has).
    async fn replay(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut jobs = Vec::new();
        let mut notices = Vec::new();
        let mut applied = 0;
        for which in [Replay::Triggers, Replay::Events] {
            loop {
                let consumer = match which {
                    Replay::Triggers => &self.triggers,
                    Replay::Events => &self.events,
                };
                let mut batch = Vec::new();
                let mut messages = consumer
                    .fetch()
                    .max_messages(self.config.batch)
                    .messages()
                    .await
                    .context("replaying the streams")?;
                while let Some(message) = messages.next().await {
                    batch.push(Inbound::new(message.map_err(|e| anyhow::anyhow!("{e}"))?));
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
                for input in inputs {
                    for action in self.core.apply(input, now) {
                        match action {
                            Action::Dispatch(job) => jobs.push(job),
                            // Cancel notices are sent again (the bus drops those it has).
                            other => {
                                notices.extend(self.message(&other));
                                self.log_actions(&[other]);
                            }
                        }
                    }
                }
                for message in batch {
                    message.ack_fast().await.ok();
                }
            }
        }
        let mut queued: Vec<Action> = jobs
            .into_iter()
            .filter(|j| self.core.is_queued(&j.run, &j.node, j.attempt))
            .map(Action::Dispatch)
            .collect();
        let mut waiting = notices;
        waiting.extend(self.messages(&mut queued, Timestamp::now()).await?);
        self.log_actions(&queued);
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

    /// Decodes events; a poison event is terminated and reported: as the failure of the
    /// attempt its headers name (workers name the run, node and attempt of every event),
    /// otherwise in the log.
    async fn event_inputs(&self, batch: &[Inbound]) -> Vec<Input> {
        let mut inputs = Vec::with_capacity(batch.len());
        for message in batch {
            match baton_bus::decode_event(message) {
                Ok(envelope) => inputs.push(Input::Bus(envelope.event)),
                Err(poison) => {
                    message.term().await.ok();
                    let baton_bus::Poison {
                        subject,
                        reason,
                        run,
                        node,
                        attempt,
                    } = poison;
                    let (Some(run), Some(node), Some(attempt)) = (run.clone(), node, attempt)
                    else {
                        error!(%subject, %reason, run = ?run, "poison event set aside");
                        continue;
                    };
                    error!(%subject, %reason, %run, %node, %attempt, "poison event set aside; reported as the attempt's failure");
                    let now = Timestamp::now();
                    inputs.push(Input::Bus(baton_schemas::wire::Event::NodeFinished {
                        run,
                        node,
                        attempt,
                        started_at: now,
                        finished_at: now,
                        outcome: baton_schemas::wire::Outcome::failed(format!(
                            "event set aside: {reason}"
                        )),
                    }));
                }
            }
        }
        inputs
    }

    /// Decodes triggers into run starts and Cell commands. A trigger without a run id gets
    /// one derived from its place in the stream. A trigger that cannot start its run (poison,
    /// or a workflow not registered) is reported and recorded as a failed run with the
    /// reason; a poison Cell command or fire is reported in the log.
    fn trigger_inputs(&self, batch: &[Inbound]) -> Vec<Input> {
        let mut inputs = Vec::with_capacity(batch.len());
        let cell_subject = format!("{}.triggers.cells.", self.bus.config().prefix);
        let fire_subject = format!("{}.triggers.ignitors.", self.bus.config().prefix);
        for message in batch {
            // `<p>.triggers.ignitors.<ignitor>` carries a fire the planner published.
            if message.subject().starts_with(&fire_subject) {
                match baton_bus::decode_fire(message) {
                    Ok(fire) => inputs.push(Input::Fire(fire)),
                    Err(poison) => {
                        error!(subject = %poison.subject, reason = %poison.reason, "poison ignitor fire set aside")
                    }
                }
                continue;
            }
            // `<p>.triggers.cells.<cell>` carries a Cell command in its body.
            if let Some(cell) = message.subject().strip_prefix(&cell_subject) {
                match CellTrigger::parse(message.payload()) {
                    Ok(trigger) => inputs.push(Input::CellCommand {
                        cell: cell.to_owned(),
                        command: trigger.command,
                        expect: trigger.expect(),
                        from: Some(TriggerPosition {
                            stream_created: self.triggers_created,
                            seq: message.stream_sequence(),
                        }),
                    }),
                    Err(e) => {
                        error!(subject = %message.subject(), reason = %e, "poison cell trigger set aside")
                    }
                }
                continue;
            }
            let derived_run = || trigger_run_id(self.triggers_created, message.stream_sequence());
            let prefix = &self.bus.config().prefix;
            match baton_bus::decode_trigger(message, prefix) {
                Ok((workflow, run, data)) => {
                    let run = run.unwrap_or_else(derived_run);
                    let name = WorkflowName::new(workflow.clone());
                    if self.core.is_registered(&Registered::Workflow(name.clone())) {
                        inputs.push(Input::StartRun {
                            run,
                            workflow: name,
                            initiator: workflow,
                            data,
                        });
                    } else {
                        warn!(%run, workflow = %name, "trigger for a workflow not registered; recorded as a failed run");
                        inputs.push(Input::RejectTrigger {
                            run,
                            reason: format!("workflow {workflow:?} is not registered"),
                            workflow: name,
                        });
                    }
                }
                Err(poison) => {
                    let run = poison.run.clone().unwrap_or_else(derived_run);
                    error!(subject = %poison.subject, reason = %poison.reason, %run, "poison trigger set aside; recorded as a failed run");
                    let subject_rest = poison
                        .subject
                        .strip_prefix(prefix.as_str())
                        .and_then(|s| s.strip_prefix(".triggers."))
                        .unwrap_or(&poison.subject);
                    inputs.push(Input::RejectTrigger {
                        run,
                        workflow: WorkflowName::new(subject_rest),
                        reason: poison.reason,
                    });
                }
            }
        }
        inputs
    }

    async fn on_events(&mut self, batch: Vec<Inbound>) -> anyhow::Result<()> {
        let inputs = self.event_inputs(&batch).await;
        self.turn(inputs, Origin::Bus).await?;
        for message in batch {
            message.ack_fast().await.ok();
        }
        Ok(())
    }

    async fn on_triggers(&mut self, batch: Vec<Inbound>) -> anyhow::Result<()> {
        let inputs = self.trigger_inputs(&batch);
        let actions = self.turn(inputs, Origin::Bus).await?;
        for action in actions {
            if let Action::Refused(refusal) = action {
                warn!(%refusal, "trigger refused");
            }
        }
        for message in batch {
            message.ack_fast().await.ok();
        }
        Ok(())
    }

    async fn on_command(&mut self, command: Command) -> anyhow::Result<()> {
        match command {
            Command::Apply {
                document,
                start,
                run,
                source,
                reply,
            } => {
                if matches!(*document, Document::Cell(_)) {
                    self.config.discover_now.notify_one();
                }
                // Committed with the registration: where the document came from.
                let sourced = Input::Source {
                    document: Registered::of(&document),
                    source,
                };
                let (mut inputs, name) = match *document {
                    Document::Workflow(w) => {
                        let name = w.name();
                        (vec![Input::Register(w)], Some(name))
                    }
                    Document::Task(t) => (vec![Input::RegisterTask(t)], None),
                    Document::Ignitor(i) => (vec![Input::RegisterIgnitor(i)], None),
                    Document::Group(g) => {
                        let group = g.name().to_owned();
                        let actions = self
                            .turn(vec![Input::RegisterGroup(g), sourced], Origin::Local)
                            .await?;
                        // The run releasing the spec: the one it started, or the one under way.
                        let run = self
                            .core
                            .group(&group)
                            .and_then(|entry| match &entry.state {
                                crate::core::GroupState::Progressing { run } => Some(run.clone()),
                                _ => None,
                            });
                        let _ = reply.send(refused(&actions).map_or(Ok(run), Err));
                        return Ok(());
                    }
                    Document::Cell(c) => (vec![Input::RegisterCell(c)], None),
                    Document::AnalysisTemplate(t) => {
                        (vec![Input::RegisterAnalysisTemplate(t)], None)
                    }
                };
                inputs.push(sourced);
                let run = name
                    .as_ref()
                    .and(start.as_ref())
                    .map(|_| run.unwrap_or_else(new_run_id));
                if let (Some(run), Some(name), Some(data)) = (&run, name, start) {
                    inputs.push(Input::StartRun {
                        run: run.clone(),
                        workflow: name,
                        initiator: "api".to_owned(),
                        data,
                    });
                }
                let actions = self.turn(inputs, Origin::Local).await?;
                let _ = reply.send(refused(&actions).map_or(Ok(run), Err));
            }
            Command::Start {
                workflow,
                run,
                data,
                reply,
            } => {
                let run = run.unwrap_or_else(new_run_id);
                let input = Input::StartRun {
                    run: run.clone(),
                    workflow,
                    initiator: "api".to_owned(),
                    data,
                };
                let actions = self.turn(vec![input], Origin::Local).await?;
                let _ = reply.send(refused(&actions).map_or(Ok(run), Err));
            }
            Command::Remove { document, reply } => {
                let actions = self
                    .turn(vec![Input::Remove(document)], Origin::Local)
                    .await?;
                let _ = reply.send(refused(&actions).map_or(Ok(()), Err));
            }
            Command::Sources { reply } => {
                let sources = self
                    .core
                    .cluster_sources()
                    .map(|(d, s)| (d.clone(), s.clone()))
                    .collect();
                let _ = reply.send(sources);
            }
            Command::Cancel { run, reply } => {
                let actions = self.turn(vec![Input::Cancel(run)], Origin::Local).await?;
                let _ = reply.send(refused(&actions).map_or(Ok(()), Err));
            }
            Command::Exists { document, reply } => {
                let _ = reply.send(self.core.is_registered(&document));
            }
            Command::Tasks { reply } => {
                let _ = reply.send(self.core.tasks().map(|(t, state)| t.view(state)).collect());
            }
            Command::Ignitors { reply } => {
                let _ = reply.send(self.core.ignitors().map(|i| i.view()).collect());
            }
            Command::Status { run, reply } => {
                let _ = reply.send(self.core.run(&run).map(|r| r.status()));
            }
            Command::Groups { reply } => {
                let views = self
                    .core
                    .groups()
                    .map(|g| self.core.group_view(g))
                    .collect();
                let _ = reply.send(views);
            }
            Command::Cells { reply } => {
                let _ = reply.send(self.core.cells().map(|c| c.view()).collect());
            }
            Command::CellSpecs { reply } => {
                let _ = reply.send(self.core.cells().map(|c| c.cell.clone()).collect());
            }
            Command::Observe { observation, reply } => {
                self.turn(vec![Input::Observed(observation)], Origin::Local)
                    .await?;
                let _ = reply.send(());
            }
            Command::CellCommand {
                cell,
                command,
                expect,
                reply,
            } => {
                let input = Input::CellCommand {
                    cell,
                    command,
                    expect,
                    from: None,
                };
                let actions = self.turn(vec![input], Origin::Local).await?;
                let _ = reply.send(refused(&actions).map_or(Ok(()), Err));
            }
            Command::List { reply } => {
                let mut runs: Vec<_> = self.core.runs().collect();
                runs.sort_by_key(|r| (r.created_at, r.id.clone()));
                let _ = reply.send(runs.into_iter().map(|r| r.status()).collect());
            }
        }
        Ok(())
    }

    /// Applies `inputs`, publishes the jobs they cause and returns the actions. Local inputs
    /// are committed, with their jobs as an outbox, before anything is published; bus inputs
    /// are published at once and checkpointed later (see [`Origin`]). An error here is a
    /// store or bus failure the planner cannot go on after.
    async fn turn(&mut self, inputs: Vec<Input>, origin: Origin) -> anyhow::Result<Vec<Action>> {
        let now = Timestamp::now();
        let mut actions = Vec::new();
        for input in inputs {
            actions.extend(self.core.apply(input, now));
        }
        let jobs = self.messages(&mut actions, now).await?;
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
        Ok(actions)
    }

    /// Returns the messages `actions` publish, in order: jobs, cancel notices, ignitor fires.
    /// A job whose inputs make it large keeps them in the bus's inputs store, written here,
    /// before the job is committed or published. A job the bus cannot carry even so fails its
    /// node at once, for good ([`Input::Undeliverable`]), instead of stopping the planner or
    /// being checkpointed past: what the core decides then (a failure handler, the run's end)
    /// is appended to `actions` and published too.
    async fn messages(
        &mut self,
        actions: &mut Vec<Action>,
        now: Timestamp,
    ) -> anyhow::Result<Vec<Outgoing>> {
        let mut messages = Vec::with_capacity(actions.len());
        let mut i = 0;
        while i < actions.len() {
            let Action::Dispatch(job) = &actions[i] else {
                messages.extend(self.message(&actions[i]));
                i += 1;
                continue;
            };
            match self.bus.prepare_job(job) {
                PreparedJob::Inline(message) => messages.push(message),
                PreparedJob::ByReference {
                    message,
                    name,
                    inputs,
                } => {
                    self.bus
                        .put_inputs(&name, &inputs)
                        .await
                        .context("writing a job's inputs to the bus")?;
                    messages.push(message);
                }
                PreparedJob::TooLarge { size, limit } => {
                    let reason = PreparedJob::too_large(size, limit);
                    warn!(run = %job.run, node = %job.node, attempt = %job.attempt, %reason, "job cannot be sent; its node fails");
                    let input = Input::Undeliverable {
                        run: job.run.clone(),
                        node: job.node.clone(),
                        attempt: job.attempt,
                        reason,
                    };
                    let decided = self.core.apply(input, now);
                    actions.extend(decided);
                }
            }
            i += 1;
        }
        Ok(messages)
    }

    /// Returns the message of a cancel notice or an ignitor fire; `None` for other actions
    /// (jobs go through [`Planner::messages`]). Notices go out as a turn's jobs do (in the
    /// outbox for local inputs), so one is never lost: a worker drops a job it takes after
    /// the notice, and stops one it runs.
    fn message(&self, action: &Action) -> Option<Outgoing> {
        match action {
            Action::AnnounceCancel { run, node } => {
                Some(self.bus.cancel_message(run, node.as_ref()))
            }
            Action::Fire(fire) => Some(self.bus.fire_message(fire)),
            _ => None,
        }
    }

    /// Logs what `actions` did besides publishing.
    fn log_actions(&self, actions: &[Action]) {
        for action in actions {
            match action {
                Action::AnnounceCancel { run, node } => {
                    info!(%run, node = ?node.as_ref().map(|n| n.as_str()), "cancel notice published")
                }
                Action::RunFinished { run, state } => info!(%run, %state, "run finished"),
                Action::Dispatch(job) => {
                    debug!(run = %job.run, node = %job.node, attempt = %job.attempt, "dispatched")
                }
                Action::Refused(_) => {}
                Action::Fire(fire) => {
                    info!(ignitor = %fire.ignitor, scheduled = %fire.scheduled, "ignitor fire due; published")
                }
                Action::IgnitorFired {
                    ignitor,
                    scheduled,
                    run,
                } => match run {
                    Some(run) => info!(%ignitor, %scheduled, %run, "ignitor fired"),
                    None => info!(%ignitor, %scheduled, "ignitor fired; no task started"),
                },
            }
        }
    }

    /// Commits what the core changed, `outbox` (messages about to be published: jobs, cancel notices, ignitor fires), and the outbox
    /// messages already published. With `streams`, also the stream positions up to which
    /// every message is applied: the consumers' ack floors, since a message is acked only
    /// once applied (a floor read late only makes a restart replay more). Positions that
    /// cannot be read (the server restarting) are left for a later checkpoint, after
    /// [`POSITIONS_RETRY`]: the state is committed without them, and a restart meanwhile
    /// replays more.
    async fn checkpoint(&mut self, outbox: Vec<Outgoing>, streams: bool) -> anyhow::Result<()> {
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
            self.store
                .commit(&change)
                .context("committing planner state")?;
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

    /// Publishes outbox messages and records them as published, for the next commit.
    async fn flush_outbox(&mut self, outbox: Vec<Outgoing>) -> anyhow::Result<()> {
        if outbox.is_empty() {
            return Ok(());
        }
        self.bus
            .publish_all(&outbox)
            .await
            .context("publishing jobs, cancel notices and fires")?;
        self.published.extend(outbox.into_iter().map(|m| m.msg_id));
        self.changed();
        Ok(())
    }

    /// Notes that the store lacks changes: they are checkpointed within [`CHECKPOINT_EVERY`].
    fn changed(&mut self) {
        self.checkpoint_due
            .get_or_insert_with(|| Instant::now() + CHECKPOINT_EVERY);
    }
}

/// Which stream a replay reads.
#[derive(Clone, Copy, Debug)]
enum Replay {
    Triggers,
    Events,
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
