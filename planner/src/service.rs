//! The planner service: the one loop that feeds the decision core and carries out what it
//! decides.
//!
//! Every turn takes what is ready (a batch of events, a batch of triggers, one API command,
//! or a due timer), applies it to the core, commits the changed runs together with the jobs
//! they cause (the outbox) in one redb transaction, acknowledges the inbound messages, and
//! only then publishes the outbox. A crash before the commit redelivers the messages; a crash
//! after it re-sends the outbox at start, and the bus drops what was already stored.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use baton_bus::{Bus, Inbound, Outgoing};
use baton_schemas::status::RunStatus;
use baton_schemas::wire::Timestamp;
use baton_schemas::{Document, RunId, WorkflowName};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::core::{Action, CellCommand, Core, CoreConfig, Input, Observation, Refusal, Registered};
use crate::store::{Change, Store, StoreError};

/// How often a standby planner tries to take the store.
const STANDBY_POLL: Duration = Duration::from_millis(500);

/// How long published messages may stay in the outbox while the planner is idle. They are
/// cleared with the next change; an idle planner clears them after this long, so that a
/// restart much later does not send them again outside the bus's duplicate window.
const OUTBOX_IDLE_CLEAR: Duration = Duration::from_secs(1);

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
        /// The new run's id, when one started.
        reply: oneshot::Sender<Result<Option<RunId>, Refusal>>,
    },
    /// Starts a run of a registered workflow.
    Start {
        /// The workflow.
        workflow: WorkflowName,
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
    /// Forgets a registered document (deleted from a cluster).
    Remove {
        /// The document.
        document: Registered,
        /// Done.
        reply: oneshot::Sender<()>,
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

/// The running planner: its core, store and bus.
pub struct Planner {
    bus: Bus,
    store: Store,
    core: Core,
    triggers_seq: u64,
    /// Ids of outbox messages the bus has stored, removed from the outbox by the next commit.
    published: Vec<String>,
    config: PlannerConfig,
}

impl Planner {
    /// Opens the store, restores the core, makes sure the streams exist, and re-sends what
    /// the outbox still holds.
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
        let loaded = store.load().context("loading the planner store")?;
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
            "planner state loaded"
        );
        let mut core = Core::restore(
            config.core,
            loaded.workflows,
            loaded.runs,
            loaded.tasks,
            loaded.ignitors,
        );
        core.restore_cells(loaded.cells, loaded.templates);
        bus.ensure_streams()
            .await
            .context("creating the bus streams")?;
        let mut planner = Planner {
            bus,
            store,
            core,
            triggers_seq: loaded.triggers_seq,
            published: Vec::new(),
            config,
        };
        planner.flush_outbox(loaded.outbox).await?;
        Ok(Some(planner))
    }

    /// Runs until `shutdown` fires, answering `commands`.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let events_consumer = self.bus.events_consumer().await?;
        let triggers_consumer = self.bus.triggers_consumer().await?;
        let pulls = shutdown.child_token();
        let (mut events, events_task) =
            baton_bus::subscribe(events_consumer, self.config.batch, pulls.clone());
        let (mut triggers, triggers_task) =
            baton_bus::subscribe(triggers_consumer, self.config.batch, pulls.clone());
        info!("planner running");
        let result = loop {
            let deadline = self.core.next_deadline();
            let mut sleep = deadline
                .map(|d| d.since(Timestamp::now()))
                .unwrap_or(Duration::from_secs(3600));
            if !self.published.is_empty() {
                sleep = sleep.min(OUTBOX_IDLE_CLEAR);
            }
            let turn = tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                Some(first) = events.recv() => {
                    let batch = drain(first, &mut events, self.config.batch);
                    self.on_events(batch).await
                }
                Some(first) = triggers.recv() => {
                    let batch = drain(first, &mut triggers, self.config.batch);
                    self.on_triggers(batch).await
                }
                Some(command) = commands.recv() => self.on_command(command).await,
                _ = tokio::time::sleep(sleep) => self.turn(vec![Input::Tick], None).await.map(|_| ()),
            };
            if let Err(e) = turn {
                break Err(e);
            }
        };
        pulls.cancel();
        let _ = events_task.await;
        let _ = triggers_task.await;
        // Acks are buffered by the client: send them before the process exits.
        if let Err(e) = self.bus.client().flush().await {
            warn!(error = %e, "flushing the bus connection failed");
        }
        info!("planner stopped");
        result
    }

    async fn on_events(&mut self, batch: Vec<Inbound>) -> anyhow::Result<()> {
        let mut inputs = Vec::with_capacity(batch.len());
        let mut settle = Vec::with_capacity(batch.len());
        for message in batch {
            match baton_bus::decode_event(&message) {
                Ok(envelope) => {
                    inputs.push(Input::Bus(envelope.event));
                    settle.push(message);
                }
                Err(poison) => {
                    error!(subject = %poison.subject, reason = %poison.reason, run = ?poison.run, "poison event set aside");
                    message.term().await.ok();
                }
            }
        }
        self.turn(inputs, None).await?;
        for message in settle {
            message.ack_fast().await.ok();
        }
        Ok(())
    }

    async fn on_triggers(&mut self, batch: Vec<Inbound>) -> anyhow::Result<()> {
        let mut inputs = Vec::new();
        let mut last_seq = None;
        let cell_subject = format!("{}.triggers.cells.", self.bus.config().prefix);
        for message in &batch {
            let seq = message.stream_sequence();
            if seq <= self.triggers_seq {
                debug!(seq, "trigger already applied");
                continue;
            }
            last_seq = Some(seq);
            // `<p>.triggers.cells.<cell>` carries a Cell command in its body.
            if let Some(cell) = message.subject().strip_prefix(&cell_subject) {
                let body = String::from_utf8_lossy(message.payload());
                match body.parse::<CellCommand>() {
                    Ok(command) => inputs.push(Input::CellCommand {
                        cell: cell.to_owned(),
                        command,
                    }),
                    Err(e) => {
                        error!(subject = %message.subject(), reason = %e, "poison cell trigger set aside")
                    }
                }
                continue;
            }
            match baton_bus::decode_trigger(message) {
                Ok((workflow, run, data)) => inputs.push(Input::StartRun {
                    run: run.unwrap_or_else(new_run_id),
                    workflow: WorkflowName::new(workflow.clone()),
                    initiator: workflow,
                    data,
                }),
                Err(poison) => {
                    error!(subject = %poison.subject, reason = %poison.reason, "poison trigger set aside")
                }
            }
        }
        let actions = self.turn(inputs, last_seq).await?;
        if let Some(seq) = last_seq {
            self.triggers_seq = seq;
        }
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
                reply,
            } => {
                if matches!(*document, Document::Cell(_)) {
                    self.config.discover_now.notify_one();
                }
                let (mut inputs, name) = match *document {
                    Document::Workflow(w) => {
                        let name = w.name();
                        (vec![Input::Register(w)], Some(name))
                    }
                    Document::Task(t) => (vec![Input::RegisterTask(t)], None),
                    Document::Ignitor(i) => (vec![Input::RegisterIgnitor(i)], None),
                    Document::Cell(c) => (vec![Input::RegisterCell(c)], None),
                    Document::AnalysisTemplate(t) => {
                        (vec![Input::RegisterAnalysisTemplate(t)], None)
                    }
                };
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
                let actions = self.turn(inputs, None).await?;
                let _ = reply.send(refused(&actions).map_or(Ok(run), Err));
            }
            Command::Start {
                workflow,
                data,
                reply,
            } => {
                let run = new_run_id();
                let input = Input::StartRun {
                    run: run.clone(),
                    workflow,
                    initiator: "api".to_owned(),
                    data,
                };
                let actions = self.turn(vec![input], None).await?;
                let _ = reply.send(refused(&actions).map_or(Ok(run), Err));
            }
            Command::Remove { document, reply } => {
                self.turn(vec![Input::Remove(document)], None).await?;
                let _ = reply.send(());
            }
            Command::Cancel { run, reply } => {
                let actions = self.turn(vec![Input::Cancel(run)], None).await?;
                let _ = reply.send(refused(&actions).map_or(Ok(()), Err));
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
            Command::Cells { reply } => {
                let _ = reply.send(self.core.cells().map(|c| c.view()).collect());
            }
            Command::CellSpecs { reply } => {
                let _ = reply.send(self.core.cells().map(|c| c.cell.clone()).collect());
            }
            Command::Observe { observation, reply } => {
                self.turn(vec![Input::Observed(observation)], None).await?;
                let _ = reply.send(());
            }
            Command::CellCommand {
                cell,
                command,
                reply,
            } => {
                let actions = self
                    .turn(vec![Input::CellCommand { cell, command }], None)
                    .await?;
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

    /// Applies `inputs`, commits the result with its outbox, publishes the outbox and returns
    /// the actions. The messages published by earlier turns leave the outbox in the same
    /// commit. An error here is a store or bus failure the planner cannot go on after.
    async fn turn(
        &mut self,
        inputs: Vec<Input>,
        triggers_seq: Option<u64>,
    ) -> anyhow::Result<Vec<Action>> {
        let now = Timestamp::now();
        let mut actions = Vec::new();
        for input in inputs {
            actions.extend(self.core.apply(input, now));
        }
        let outbox: Vec<Outgoing> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Dispatch(job) => Some(self.bus.job_message(job)),
                _ => None,
            })
            .collect();
        let published = std::mem::take(&mut self.published);
        let change = Change {
            state: self.core.take_changes(),
            outbox,
            published,
            triggers_seq,
        };
        if !change.is_empty() {
            self.store
                .commit(&change)
                .context("committing planner state")?;
        }
        let outbox = change.outbox;
        self.flush_outbox(outbox).await?;
        for action in &actions {
            match action {
                Action::AnnounceCancel { run, node } => {
                    let notice = match node {
                        Some(node) => format!("{run}/{node}"),
                        None => run.to_string(),
                    };
                    if let Err(e) = self
                        .bus
                        .client()
                        .publish(self.bus.cancel_subject(), notice.into())
                        .await
                    {
                        warn!(%run, error = %e, "cancel notice not sent; running nodes finish on their own");
                    }
                }
                Action::RunFinished { run, state } => info!(%run, %state, "run finished"),
                Action::Dispatch(job) => {
                    debug!(run = %job.run, node = %job.node, attempt = %job.attempt, "dispatched")
                }
                Action::Refused(_) => {}
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
        Ok(actions)
    }

    /// Publishes outbox messages and records them as published, for the next commit.
    async fn flush_outbox(&mut self, outbox: Vec<Outgoing>) -> anyhow::Result<()> {
        if outbox.is_empty() {
            return Ok(());
        }
        self.bus
            .publish_all(&outbox)
            .await
            .context("publishing jobs")?;
        self.published.extend(outbox.into_iter().map(|m| m.msg_id));
        Ok(())
    }
}

fn refused(actions: &[Action]) -> Option<Refusal> {
    actions.iter().find_map(|a| match a {
        Action::Refused(r) => Some(r.clone()),
        _ => None,
    })
}

fn drain(first: Inbound, rx: &mut mpsc::Receiver<Inbound>, max: usize) -> Vec<Inbound> {
    let mut batch = vec![first];
    while batch.len() < max {
        match rx.try_recv() {
            Ok(message) => batch.push(message),
            Err(_) => break,
        }
    }
    batch
}
