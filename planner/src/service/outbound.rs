//! What the planner sends: the messages a turn's actions publish (large inputs written to
//! the inputs store first, jobs the bus cannot carry failed instead), the outbox kept from an
//! earlier start, and the log of what was done.

use super::*;

impl Planner {
    /// Splits an outbox kept from an earlier start into the messages the bus takes and, for
    /// jobs larger than it takes now (committed before the bus's largest message shrank, or
    /// by a build that did not keep large inputs apart), the failure of their node. Without
    /// this, such a job would stop every start of the planner. The jobs set aside leave the
    /// outbox with the next commit.
    pub(super) fn fitting(&mut self, outbox: Vec<Outgoing>) -> (Vec<Outgoing>, Vec<Input>) {
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
            if message.header(headers::JOB_BATCH).is_some() {
                // A batch's jobs each fail: the batch was written by this planner's build.
                let jobs =
                    serde_json::from_slice::<baton_schemas::wire::JobBatch>(&message.payload)
                        .map(|b| b.jobs)
                        .unwrap_or_default();
                undeliverable.extend(jobs.into_iter().map(|b| Input::Undeliverable {
                    run: b.job.run,
                    node: b.job.node,
                    attempt: b.job.attempt,
                    reason: reason.clone(),
                }));
            } else if let (Some(run), Some(node), Some(attempt)) = (
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

    /// Returns the messages `actions` publish, in order: jobs, cancel notices, ignitor fires.
    /// The actions of each input begin at an index of `starts`: the jobs of one kind that one
    /// input dispatched travel together ([`Batches`]). A job whose inputs make it large keeps
    /// them in the bus's inputs store, written here, before the job is committed or
    /// published. A job the bus cannot carry even so fails its node at once, for good
    /// ([`Input::Undeliverable`]), instead of stopping the planner or being checkpointed
    /// past: what the core decides then (a failure handler, the run's end) is appended to
    /// `actions` and published too.
    pub(super) async fn messages(
        &mut self,
        actions: &mut Vec<Action>,
        starts: &[usize],
        now: Timestamp,
    ) -> anyhow::Result<Vec<Outgoing>> {
        let mut messages = Vec::with_capacity(actions.len());
        // What the core decides for each undeliverable job is an input of its own.
        let decided = actions.len();
        let mut undeliverable_starts: Vec<usize> = Vec::new();
        let input_of = |i: usize, undeliverable_starts: &[usize]| match i < decided {
            true => starts.partition_point(|&s| s <= i),
            false => starts.len() + undeliverable_starts.partition_point(|&s| s <= i),
        };
        let mut batches = Batches::new(
            self.config.job_batch,
            self.bus
                .max_message_size()
                .saturating_sub(BATCH_HEADER_BYTES),
        );
        let mut i = 0;
        while i < actions.len() {
            let Action::Dispatch(job) = &actions[i] else {
                messages.extend(self.message(&actions[i]));
                i += 1;
                continue;
            };
            let input = input_of(i, &undeliverable_starts);
            if batches.input != Some(input) {
                batches.flush(&self.bus, &mut messages);
                batches.input = Some(input);
            }
            let tracing = baton_telemetry::trace::enabled();
            match self.bus.prepare_job(job) {
                PreparedJob::Inline(mut message) => {
                    if tracing {
                        self.traces.dispatched(job, &mut message.headers);
                    }
                    match self.config.job_batch_kinds.contains(&job.kind()) {
                        true => batches.add(message, &self.bus, &mut messages),
                        false => messages.push(message),
                    }
                }
                PreparedJob::ByReference {
                    mut message,
                    name,
                    inputs,
                } => {
                    self.bus
                        .put_inputs(&name, &inputs)
                        .await
                        .context("writing a job's inputs to the bus")?;
                    if tracing {
                        self.traces.dispatched(job, &mut message.headers);
                    }
                    match self.config.job_batch_kinds.contains(&job.kind()) {
                        true => batches.add(message, &self.bus, &mut messages),
                        false => messages.push(message),
                    }
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
                    undeliverable_starts.push(actions.len());
                    actions.extend(decided);
                }
            }
            i += 1;
        }
        batches.flush(&self.bus, &mut messages);
        Ok(messages)
    }

    /// Whether a message of jobs holds a job the core still waits to see dispatched: a
    /// single job by its headers, a batch by any job in it. Other messages always wait.
    pub(super) fn waits(&self, message: &Outgoing) -> bool {
        use baton_schemas::wire::{JobBatch, headers};
        let queued = |run: &str, node: &str, attempt: u32| {
            self.core.is_queued(
                &RunId::new(run),
                &baton_schemas::NodeName::new(node),
                baton_schemas::Attempt(attempt),
            )
        };
        if message.header(headers::JOB_BATCH).is_some() {
            return serde_json::from_slice::<JobBatch>(&message.payload).map_or(true, |batch| {
                batch
                    .jobs
                    .iter()
                    .any(|b| queued(b.job.run.as_str(), b.job.node.as_str(), b.job.attempt.0))
            });
        }
        match (
            message.header(headers::RUN),
            message.header(headers::NODE),
            message
                .header(headers::ATTEMPT)
                .and_then(|a| a.parse().ok()),
        ) {
            (Some(run), Some(node), Some(attempt)) => queued(run, node, attempt),
            _ => true,
        }
    }

    /// Returns the message of a cancel notice or an ignitor fire; `None` for other actions
    /// (jobs go through [`Planner::messages`]). Notices go out as a turn's jobs do (in the
    /// outbox for local inputs), so one is never lost: a worker drops a job it takes after
    /// the notice, and stops one it runs.
    pub(super) fn message(&self, action: &Action) -> Option<Outgoing> {
        match action {
            Action::AnnounceCancel { run, node } => {
                Some(self.bus.cancel_message(run, node.as_ref()))
            }
            Action::Fire(fire) => Some(self.bus.fire_message(fire)),
            _ => None,
        }
    }

    /// Logs what `actions` did besides publishing.
    pub(super) fn log_actions(&self, actions: &[Action]) {
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

    /// Publishes outbox messages and records them as published, for the next commit.
    pub(super) async fn flush_outbox(&mut self, outbox: Vec<Outgoing>) -> anyhow::Result<()> {
        if outbox.is_empty() {
            return Ok(());
        }
        self.check_lease()?;
        self.bus
            .publish_all(&outbox)
            .await
            .context("publishing jobs, cancel notices and fires")?;
        self.published.extend(outbox.into_iter().map(|m| m.msg_id));
        self.changed();
        Ok(())
    }
}

/// Room left in a batch for its headers (ids, signature, trace context): far more than they
/// take.
const BATCH_HEADER_BYTES: usize = 4 * 1024;

/// The jobs of one input being gathered into batches, one open batch per kind. A batch is
/// cut when it holds `max` jobs or the next would take it past `bytes`, so the same input
/// always makes the same batches: a planner that applies it again after a restart sends
/// batches the bus already has, under the same ids, and the bus stores them once.
struct Batches {
    /// The input whose jobs are gathered (an index into a turn's inputs).
    input: Option<usize>,
    max: usize,
    bytes: usize,
    /// The open batch of each kind (by subject), in the order each kind first came.
    open: Vec<(String, Vec<Outgoing>)>,
}

impl Batches {
    fn new(max: usize, bytes: usize) -> Batches {
        Batches {
            input: None,
            max: max.max(1),
            bytes,
            open: Vec::new(),
        }
    }

    /// Adds a job's message, sending its kind's batch first when the job does not fit in it.
    fn add(&mut self, job: Outgoing, bus: &Bus, messages: &mut Vec<Outgoing>) {
        if self.max == 1 {
            return messages.push(job);
        }
        let position = match self.open.iter().position(|(s, _)| *s == job.subject) {
            Some(p) => p,
            None => {
                self.open.push((job.subject.clone(), Vec::new()));
                self.open.len() - 1
            }
        };
        let batch = &mut self.open[position].1;
        if !batch.is_empty() {
            let full = batch.len() >= self.max;
            let too_large = baton_bus::job_batch_bytes(batch)
                + baton_bus::job_batch_bytes(std::slice::from_ref(&job))
                > self.bytes;
            if full || too_large {
                messages.push(bus.job_batch_message(batch));
                batch.clear();
            }
        }
        batch.push(job);
    }

    /// Sends every open batch: the input's jobs are all gathered.
    fn flush(&mut self, bus: &Bus, messages: &mut Vec<Outgoing>) {
        for (_, batch) in self.open.drain(..) {
            if !batch.is_empty() {
                messages.push(bus.job_batch_message(&batch));
            }
        }
    }
}
