//! Baton's bus on NATS JetStream: the four streams, their consumers, and typed,
//! deduplicated, acknowledged publishing.
//!
//! | stream | subjects | retention | consumers |
//! |---|---|---|---|
//! | `<P>_JOBS` | `<p>.jobs.<kind>`, `<p>.jobs.<kind>.batch` | work queue | `worker-<kind>`, `worker-<kind>-batch`, shared by every worker replica |
//! | `<P>_EVENTS` | `<p>.events.<run>` | limits | `planner-events` |
//! | `<P>_TRIGGERS` | `<p>.triggers.<workflow>`, `<p>.triggers.cells.<cell>`, `<p>.triggers.ignitors.<ignitor>` | limits | `planner-triggers` |
//! | `<P>_AUDIT` | `<p>.audit.<action>` | limits | none: read by operators and observers |
//! | `<P>_CANCELS` | `<p>.cancels.<run>`, `<p>.cancels.<run>.<node>` | limits | every worker, an ordered consumer each |
//! | `<P>_STATE` | `<p>.state` | limits, kept | the planner at start (see [`state`]) |
//!
//! Every publish carries a `Nats-Msg-Id` and waits for the stream's ack; a publish that fails
//! for a passing reason (a server restart, a timeout) is sent again with the same id until a
//! deadline, which the server's duplicate window makes safe.

mod backlog;
mod backoff;
mod credentials;
mod error;
mod inbound;
mod inputs;
mod jobs;
mod lease;
mod outgoing;
pub mod permissions;
mod pull;
mod signing;
pub mod state;
mod streams;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use baton_schemas::NodeKind;
use baton_schemas::wire::headers;
use tracing::{debug, error, info, warn};

pub use backlog::{Backlog, ConsumerBacklog, StreamBacklog};
pub use backoff::Backoff;
pub use credentials::{NatsCredentials, read_secret};
pub use error::{BusError, BusErrorKind};
pub use inbound::{
    DecodedEvent, Inbound, Poison, decode_event, decode_events, decode_fire, decode_job,
    decode_trigger,
};
pub use inputs::{INLINE_JOB_BYTES, InputsError, PreparedJob, inputs_digest};
pub use jobs::{
    DEFAULT_JOB_BATCH, DecodedJob, decode_jobs, is_job_batch, job_batch_bytes, jobs_in,
};
pub use lease::{Lease, LeaseError};
pub use outgoing::{Outgoing, has_default_traceparent, traceparent};
pub use pull::{PullStream, pull_retry_delay};
pub use signing::{JobSigner, SIGNATURE_HEADER, SignatureError};
pub use state::{STATE_PART_HEADER, StateCommit, StateReader, StateTail};

/// Bus settings; every field has a default fit for one local server.
#[derive(Clone, Debug)]
pub struct BusConfig {
    /// Subject prefix (`baton`); stream names are its upper-case form (`BATON_JOBS`).
    pub prefix: String,
    /// Stream replicas: 1 for one server, 3 for a cluster.
    pub replicas: usize,
    /// How long a worker may hold a job without acking or reporting progress before the
    /// server hands it to another worker.
    pub job_ack_wait: Duration,
    /// How long the planner may hold an event without acking it.
    pub event_ack_wait: Duration,
    /// How long events, triggers and cancel notices are kept (events and triggers are the
    /// audit log and the replay source).
    pub retention: Duration,
    /// The server's duplicate window: re-sends with the same id inside it are dropped.
    pub duplicate_window: Duration,
    /// How long a publish keeps retrying through passing failures before it gives up.
    pub publish_deadline: Duration,
    /// Who this process is to the NATS server, and which servers it trusts.
    pub credentials: NatsCredentials,
    /// The file holding the key jobs are signed with (the planner) and checked against (a
    /// worker, which then runs only jobs signed with it).
    pub job_signing_key_file: Option<PathBuf>,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            prefix: "baton".to_owned(),
            replicas: 1,
            job_ack_wait: Duration::from_secs(30),
            event_ack_wait: Duration::from_secs(30),
            retention: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(10 * 60),
            publish_deadline: Duration::from_secs(120),
            credentials: NatsCredentials::default(),
            job_signing_key_file: None,
        }
    }
}

/// Returns a NATS URL (or a comma-separated list of them) as logs and errors may show it:
/// without the user and password, or token, it may carry.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|one| match (one.find("://"), one.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}***@{}", &one[..scheme + 3], &one[at + 1..])
            }
            (None, Some(at)) => format!("***@{}", &one[at + 1..]),
            _ => one.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses `--nats-url`: one server, or a comma-separated list of a cluster's seed servers as
/// NATS clients take them (`nats://a:4222,nats://b:4222`). The client connects to one of them
/// and learns the rest of the cluster from it, and moves to another member when its server
/// dies.
pub fn server_list(url: &str) -> Result<Vec<async_nats::ServerAddr>, BusError> {
    let servers: Vec<_> = url
        .split(',')
        .map(str::trim)
        .filter(|one| !one.is_empty())
        .map(|one| {
            one.parse::<async_nats::ServerAddr>().map_err(|e| {
                BusError::new(
                    BusErrorKind::Config,
                    format!("nats url {}: {e}", redact_url(one)),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    if servers.is_empty() {
        return Err(BusError::new(
            BusErrorKind::Config,
            "nats url: no server named".to_owned(),
        ));
    }
    Ok(servers)
}

/// How the first connection went, as the client's events tell it.
#[derive(Clone, Debug)]
enum FirstConnect {
    /// No word yet.
    Pending,
    /// Not connected yet; the last thing that went wrong (a refused TCP connection, a TLS
    /// failure), kept for the timeout's message.
    Trouble(String),
    Connected,
    /// The server refused the credentials before the first connection.
    Refused(String),
}

impl FirstConnect {
    fn refuse(&mut self, why: &str) -> bool {
        match self {
            FirstConnect::Connected => false,
            _ => {
                *self = FirstConnect::Refused(why.to_owned());
                true
            }
        }
    }

    fn note(&mut self, trouble: String) -> bool {
        match self {
            FirstConnect::Pending | FirstConnect::Trouble(_) => {
                *self = FirstConnect::Trouble(trouble);
                true
            }
            _ => false,
        }
    }
}

/// Durable consumer names.
pub mod consumers {
    /// The planner's consumer of `<p>.events.>`.
    pub const PLANNER_EVENTS: &str = "planner-events";
    /// The planner's consumer of `<p>.triggers.>`.
    pub const PLANNER_TRIGGERS: &str = "planner-triggers";
}

/// A connection to the bus: a NATS client, its JetStream context and the subject layout.
#[derive(Clone, Debug)]
pub struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
    config: BusConfig,
    signer: Option<Arc<JobSigner>>,
    /// The lease revision of the planner publishing through this bus (0: none), sent as
    /// `Baton-Epoch` on everything it publishes, so that what a planner published is told
    /// from what the one before or after it did.
    epoch: Arc<std::sync::atomic::AtomicU64>,
}

impl Bus {
    /// Connects to `url` with the configured credentials, waiting up to `connect_timeout` for
    /// the first connection (and failing at once when the server refuses the credentials),
    /// then reconnecting without limit.
    pub async fn connect(
        url: &str,
        config: BusConfig,
        connect_timeout: Duration,
    ) -> Result<Bus, BusError> {
        validate_prefix(&config.prefix)?;
        let signer = match &config.job_signing_key_file {
            Some(file) => Some(Arc::new(JobSigner::read(file)?)),
            None => None,
        };
        let (state, mut first) = tokio::sync::watch::channel(FirstConnect::Pending);
        let options = async_nats::ConnectOptions::new()
            .name("baton")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((100 * attempts as u64).min(2_000))
            })
            .event_callback(move |event| {
                let state = state.clone();
                async move {
                    match &event {
                        async_nats::Event::Connected => {
                            info!(%event, "nats connection");
                            state.send_replace(FirstConnect::Connected);
                        }
                        // Refused at the first connection (the connector says so in a
                        // client error) or later (the server does).
                        async_nats::Event::ServerError(
                            async_nats::ServerError::AuthorizationViolation,
                        ) => {
                            error!(%event, "nats refused this process's credentials");
                            state.send_if_modified(|s| s.refuse("authorization violation"));
                        }
                        async_nats::Event::ClientError(async_nats::ClientError::Other(e))
                            if e == "authorization violation" || e == "failed signing nonce" =>
                        {
                            error!(%event, "nats refused this process's credentials");
                            let why = e.clone();
                            state.send_if_modified(|s| s.refuse(&why));
                        }
                        async_nats::Event::ServerError(async_nats::ServerError::Other(e))
                            if e.to_ascii_lowercase().contains("permissions violation") =>
                        {
                            // A subject these credentials may not use: a deployment's
                            // permissions and Baton's needs disagree.
                            error!(%event, "nats refused a subject to this process");
                        }
                        async_nats::Event::Disconnected => warn!(%event, "nats connection"),
                        other => {
                            debug!(event = %other, "nats connection");
                            let text = other.to_string();
                            state.send_if_modified(|s| s.note(text));
                        }
                    }
                }
            });
        let options = config.credentials.apply(options).await?;
        let servers = server_list(url)?;
        let client = options
            .connect(servers)
            .await
            .map_err(|e| BusError::with_source(BusErrorKind::Disconnected, "connect", e))?;
        let waited = tokio::time::timeout(
            connect_timeout,
            first.wait_for(|s| !matches!(s, FirstConnect::Pending | FirstConnect::Trouble(_))),
        )
        .await;
        let refusal = match waited.map(|state| state.map(|s| s.clone())) {
            Ok(Ok(FirstConnect::Connected)) => None,
            Ok(Ok(FirstConnect::Refused(why))) => Some(why),
            // The client dropped its event sender: it will never connect.
            Ok(_) => {
                return Err(BusError::new(
                    BusErrorKind::Disconnected,
                    format!(
                        "the nats client for {} stopped before it connected",
                        redact_url(url)
                    ),
                ));
            }
            Err(_) => {
                let last = match &*first.borrow() {
                    FirstConnect::Trouble(why) => format!(": {why}"),
                    _ => String::new(),
                };
                return Err(BusError::new(
                    BusErrorKind::TimedOut,
                    format!(
                        "could not connect to nats at {} within {connect_timeout:?}{last}",
                        redact_url(url)
                    ),
                ));
            }
        };
        if let Some(why) = refusal {
            return Err(BusError::new(
                BusErrorKind::Refused,
                format!(
                    "nats at {} refused {} ({why})",
                    redact_url(url),
                    config.credentials.describe()
                ),
            ));
        }
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(5))
            .max_ack_inflight(4096)
            .build(client.clone());
        Ok(Bus {
            client,
            js,
            config,
            signer,
            epoch: Default::default(),
        })
    }

    /// Stamps everything published through this bus (and its clones) from now on with
    /// lease revision `epoch`.
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch
            .store(epoch, std::sync::atomic::Ordering::Relaxed);
    }

    /// Returns the epoch this bus stamps on what it publishes (0: none).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Returns `message` as it is published, stamped with the epoch when there is one.
    fn publication(&self, message: &Outgoing) -> async_nats::jetstream::message::PublishMessage {
        self.stamped(message.to_publish())
    }

    /// Adds the `Baton-Epoch` header when this bus publishes for a lease holder.
    fn stamped(
        &self,
        publish: async_nats::jetstream::message::PublishMessage,
    ) -> async_nats::jetstream::message::PublishMessage {
        match self.epoch.load(std::sync::atomic::Ordering::Relaxed) {
            0 => publish,
            epoch => publish.header(headers::EPOCH, epoch.to_string().as_str()),
        }
    }

    /// Returns the job signing key, when the bus has one.
    pub fn signer(&self) -> Option<&JobSigner> {
        self.signer.as_deref()
    }

    /// Returns the settings.
    pub fn config(&self) -> &BusConfig {
        &self.config
    }

    /// Returns the largest message the server takes (its `max_payload`, headers included),
    /// as the client last heard it: an atomic read, cheap enough for every job.
    pub fn max_message_size(&self) -> usize {
        self.client.max_payload()
    }

    /// Returns the plain NATS client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Returns the JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Returns `<p>.jobs.<kind>`.
    pub fn job_subject(&self, kind: NodeKind) -> String {
        format!("{}.jobs.{kind}", self.config.prefix)
    }

    /// Returns `<p>.jobs.<kind>.batch`, where batches of jobs go: a consumer of its own
    /// takes them, so a worker of a build before batches never sees one (they wait for an
    /// upgraded worker instead of being set aside).
    pub fn job_batch_subject(&self, kind: NodeKind) -> String {
        format!("{}.jobs.{kind}.batch", self.config.prefix)
    }

    /// Returns `<p>.events.<run>`.
    pub fn event_subject(&self, run: &baton_schemas::RunId) -> String {
        format!("{}.events.{run}", self.config.prefix)
    }

    /// Returns `<p>.audit.<action>`, where audit records go.
    pub fn audit_subject(&self, action: &str) -> String {
        format!("{}.audit.{action}", self.config.prefix)
    }

    /// Returns `<p>.triggers.<workflow>`.
    pub fn trigger_subject(&self, workflow: &str) -> String {
        format!("{}.triggers.{workflow}", self.config.prefix)
    }

    /// Returns `<p>.triggers.ignitors.<ignitor>`, where the planner publishes an ignitor's
    /// fires.
    pub fn fire_subject(&self, ignitor: &str) -> String {
        format!("{}.triggers.ignitors.{ignitor}", self.config.prefix)
    }

    /// Returns the subject of a cancel notice: `<p>.cancels.<run>` for a whole run,
    /// `<p>.cancels.<run>.<node>` for one node of it.
    pub fn cancel_subject(
        &self,
        run: &baton_schemas::RunId,
        node: Option<&baton_schemas::NodeName>,
    ) -> String {
        match node {
            Some(node) => format!("{}.cancels.{run}.{node}", self.config.prefix),
            None => format!("{}.cancels.{run}", self.config.prefix),
        }
    }

    /// Returns the run (and node) a cancel notice's subject names, or `None` for a subject
    /// that is not a cancel notice's.
    pub fn cancel_target(
        &self,
        subject: &str,
    ) -> Option<(baton_schemas::RunId, Option<baton_schemas::NodeName>)> {
        let rest = subject
            .strip_prefix(self.config.prefix.as_str())?
            .strip_prefix(".cancels.")?;
        let (run, node) = match rest.split_once('.') {
            Some((run, node)) => (run, Some(node)),
            None => (rest, None),
        };
        if !baton_schemas::RunId::is_valid(run)
            || node.is_some_and(|n| !baton_schemas::ids::is_dns_label(n))
        {
            return None;
        }
        Some((
            baton_schemas::RunId::new(run),
            node.map(baton_schemas::NodeName::new),
        ))
    }

    /// Returns the name of a stream: `<P>_JOBS`, `<P>_EVENTS`, `<P>_TRIGGERS` or
    /// `<P>_CANCELS`.
    pub fn stream_name(&self, which: &str) -> String {
        format!(
            "{}_{which}",
            self.config.prefix.to_ascii_uppercase().replace('-', "_")
        )
    }

    /// Returns the durable pull consumer that every worker of `kind` shares, creating it if
    /// needed.
    pub async fn job_consumer(&self, kind: NodeKind) -> Result<consumer::PullConsumer, BusError> {
        self.jobs_consumer(format!("worker-{kind}"), self.job_subject(kind))
            .await
    }

    /// Returns the durable pull consumer of `kind`'s batches of jobs (`worker-<kind>-batch`),
    /// which every worker of `kind` shares, creating it if needed.
    pub async fn job_batch_consumer(
        &self,
        kind: NodeKind,
    ) -> Result<consumer::PullConsumer, BusError> {
        self.jobs_consumer(format!("worker-{kind}-batch"), self.job_batch_subject(kind))
            .await
    }

    async fn jobs_consumer(
        &self,
        durable: String,
        filter_subject: String,
    ) -> Result<consumer::PullConsumer, BusError> {
        let config = consumer::pull::Config {
            durable_name: Some(durable),
            filter_subject,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.config.job_ack_wait,
            // A job that no worker could finish in this many deliveries (a worker that crashes
            // on it every time) is dropped; the planner's timeout backstop then fails the node.
            max_deliver: 20,
            max_ack_pending: 10_000,
            ..Default::default()
        };
        self.consumer("JOBS", config).await
    }

    /// Returns the planner's durable consumer of every event, made anew to deliver every
    /// event after stream sequence `after` (see [`Bus::planner_consumer`]).
    pub async fn events_consumer(&self, after: u64) -> Result<consumer::PullConsumer, BusError> {
        self.planner_consumer("EVENTS", consumers::PLANNER_EVENTS, "events", after)
            .await
    }

    /// Returns the planner's durable consumer of every trigger, made anew to deliver every
    /// trigger after stream sequence `after` (see [`Bus::planner_consumer`]).
    pub async fn triggers_consumer(&self, after: u64) -> Result<consumer::PullConsumer, BusError> {
        self.planner_consumer("TRIGGERS", consumers::PLANNER_TRIGGERS, "triggers", after)
            .await
    }

    /// Deletes and creates one of the planner's durable consumers so that it delivers, in
    /// stream order, every message after sequence `after`: what the planner's last durable
    /// checkpoint had not applied yet. Only the active planner calls this, at its start.
    ///
    /// The stream order is causal (a job's completion is stored after the event that
    /// dispatched it), so replaying from the checkpoint rebuilds what a crash lost in the
    /// order it happened.
    async fn planner_consumer(
        &self,
        stream: &str,
        durable: &str,
        subjects: &str,
        after: u64,
    ) -> Result<consumer::PullConsumer, BusError> {
        let stream_name = self.stream_name(stream);
        let deliver_policy = if after == 0 {
            consumer::DeliverPolicy::All
        } else {
            consumer::DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            }
        };
        let config = consumer::pull::Config {
            durable_name: Some(durable.to_owned()),
            filter_subject: format!("{}.{subjects}.>", self.config.prefix),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.config.event_ack_wait,
            max_ack_pending: 10_000,
            deliver_policy,
            ..Default::default()
        };
        // A consumer that does not exist yet is no failure; any other failure to delete
        // shows in the create that follows, which cannot change a delivery start.
        if let Err(e) = self
            .js
            .delete_consumer_from_stream(durable, &stream_name)
            .await
        {
            debug!(durable, stream = %stream_name, error = %e, "planner consumer not deleted");
        }
        self.consumer(stream, config).await
    }

    /// Returns every cancel notice the bus keeps, and those published later, in order: an
    /// ordered consumer of `<p>.cancels.>` from the start of the stream, which remakes itself
    /// after a server restart. Also returns how many notices the stream held when it was made,
    /// so that the caller knows when it has read all of those.
    pub async fn follow_cancels(&self) -> Result<(u64, consumer::pull::Ordered), BusError> {
        self.ordered(
            "CANCELS",
            consumer::pull::OrderedConfig {
                filter_subject: format!("{}.cancels.>", self.config.prefix),
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            },
        )
        .await
    }

    /// Returns stream `which` (`EVENTS`, `STATE`, ...), which must exist.
    pub(crate) async fn stream(&self, which: &str) -> Result<stream::Stream, BusError> {
        let name = self.stream_name(which);
        self.js.get_stream(&name).await.map_err(|e| {
            BusError::with_source(BusErrorKind::StreamMissing, format!("stream {name}"), e)
        })
    }

    /// Returns the messages of a new ordered consumer of stream `which`, and how many it had
    /// pending when it was made.
    pub(crate) async fn ordered(
        &self,
        which: &str,
        config: consumer::pull::OrderedConfig,
    ) -> Result<(u64, consumer::pull::Ordered), BusError> {
        let name = self.stream_name(which);
        let consumer = self
            .stream(which)
            .await?
            .create_consumer(config)
            .await
            .map_err(|e| {
                BusError::with_source(
                    BusErrorKind::from_consumer(&e),
                    format!("ordered consumer on {name}"),
                    e,
                )
            })?;
        let held = consumer.cached_info().num_pending;
        let messages = consumer.messages().await.map_err(|e| {
            BusError::with_source(BusErrorKind::Disconnected, format!("following {name}"), e)
        })?;
        Ok((held, messages))
    }

    /// Returns the sequence up to which a consumer has had every message acknowledged.
    pub async fn ack_floor(consumer: &mut consumer::PullConsumer) -> Result<u64, BusError> {
        consumer
            .info()
            .await
            .map(|info| info.ack_floor.stream_sequence)
            .map_err(|e| BusError::with_source(BusErrorKind::TimedOut, "consumer info", e))
    }

    /// Returns when the stream behind `which` (`EVENTS`, `TRIGGERS`, ...) was created, in
    /// nanoseconds since the Unix epoch: with a message's sequence it names the message for
    /// good, even across a stream deleted and made anew.
    pub async fn stream_created(&self, which: &str) -> Result<u64, BusError> {
        let name = self.stream_name(which);
        let mut stream = self.stream(which).await?;
        let info = stream.info().await.map_err(|e| {
            BusError::with_source(BusErrorKind::TimedOut, format!("stream {name}"), e)
        })?;
        Ok(u64::try_from(info.created.unix_timestamp_nanos()).unwrap_or(0))
    }

    async fn consumer(
        &self,
        stream: &str,
        config: consumer::pull::Config,
    ) -> Result<consumer::PullConsumer, BusError> {
        let stream_name = self.stream_name(stream);
        let durable = config.durable_name.clone().unwrap_or_default();
        self.with_retry("create consumer", || {
            self.js
                .create_consumer_on_stream(config.clone(), stream_name.as_str())
        })
        .await
        .map_err(|e| {
            BusError::with_source(
                BusErrorKind::from_consumer(&e),
                format!("consumer {durable} on {stream_name}"),
                e,
            )
        })
    }

    /// Publishes every message, pipelined (all sent, then all acks awaited, in windows of
    /// [`PUBLISH_WINDOW`]). A message whose publish fails for a passing reason is sent again
    /// with the same `Nats-Msg-Id` until [`BusConfig::publish_deadline`]. Returns when every
    /// message is stored.
    pub async fn publish_all(&self, messages: &[Outgoing]) -> Result<(), BusError> {
        for window in messages.chunks(PUBLISH_WINDOW) {
            let mut pending = Vec::with_capacity(window.len());
            for message in window {
                pending.push((
                    message,
                    self.js
                        .send_publish(message.subject.clone(), self.publication(message))
                        .await,
                ));
            }
            for (message, sent) in pending {
                let result = match sent {
                    Ok(ack) => ack.await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(ack) => {
                        debug!(subject = %message.subject, msg_id = %message.msg_id, seq = ack.sequence, duplicate = ack.duplicate, "published");
                    }
                    Err(e) => {
                        warn!(subject = %message.subject, msg_id = %message.msg_id, error = %e, "publish failed; sending again");
                        self.publish_one(message).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Publishes one message and waits for its ack, retrying passing failures with the same id.
    pub async fn publish_one(&self, message: &Outgoing) -> Result<(), BusError> {
        self.with_retry("publish", || async {
            self.js
                .send_publish(message.subject.clone(), self.publication(message))
                .await?
                .await
        })
        .await
        .map(|_| ())
        .map_err(|e| {
            BusError::with_source(
                BusErrorKind::from_publish(&e),
                format!("publish {} to {}", message.msg_id, message.subject),
                e,
            )
        })
    }

    /// Runs `op` until it succeeds, or its error is not passing, or the publish deadline is
    /// reached. The delay between tries grows from 50 ms to 2 s.
    async fn with_retry<T, E, F, Fut>(&self, what: &str, mut op: F) -> Result<T, E>
    where
        E: std::fmt::Display + error::Passing,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut backoff = Backoff::new(tokio::time::Instant::now() + self.config.publish_deadline);
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_passing() => match backoff.next_delay() {
                    Some(delay) => {
                        debug!(what, error = %e, ?delay, "passing bus failure; trying again");
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }
}

/// How many publishes are in flight before their acks are awaited. Kept below async-nats'
/// in-flight ack limit, past which a publish blocks forever.
pub const PUBLISH_WINDOW: usize = 1000;

fn validate_prefix(prefix: &str) -> Result<(), BusError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 32
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(BusError::new(
            BusErrorKind::Config,
            format!("invalid subject prefix {prefix:?}: use 1 to 32 of [a-z0-9_-]"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_secrets_in_logs() {
        assert_eq!(
            redact_url("nats://planner:s3cret@10.0.0.1:4222,tls://tok@h:4222,nats://h2:4222"),
            "nats://***@10.0.0.1:4222,tls://***@h:4222,nats://h2:4222"
        );
        assert_eq!(redact_url("u:p@h:4222"), "***@h:4222");
    }

    #[test]
    fn a_cluster_is_named_by_its_seed_servers() {
        let servers = server_list("nats://a:4222, nats://b:4223,tls://c:4224,").unwrap();
        let ports: Vec<u16> = servers.iter().map(|s| s.port()).collect();
        assert_eq!(ports, [4222, 4223, 4224]);
        let e = server_list("nats://u:s3cret@a:4222,nats://u:s3cret@b:x").unwrap_err();
        assert_eq!(e.kind(), BusErrorKind::Config);
        assert!(e.to_string().contains("nats://***@b:x"), "{e}");
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert_eq!(server_list(" , ").unwrap_err().kind(), BusErrorKind::Config);
    }
}
