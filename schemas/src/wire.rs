//! Messages on the bus. Every message body is JSON with a schema version `v`; a reader
//! rejects versions it does not know instead of guessing.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Attempt, NodeKind, NodeName, RunId, WorkflowName};

/// The schema version of the jobs, fires and cancel notices this build writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The schema version of the events this build writes: 2 since a failed outcome carries its
/// [`FailureKind`]. Events are versioned apart from jobs so that workers of the previous
/// version go on taking a new planner's jobs while they are upgraded (the planner first);
/// a planner reads events of every version up to this one (see [`EventEnvelope::upgrade`]).
pub const EVENT_SCHEMA_VERSION: u32 = 2;

mod batch;
mod job_batch;
pub use batch::{
    BATCH_SUBJECT_TOKEN, BatchedEvent, EVENT_BATCH_SCHEMA_VERSION, EventBatch, RawEventBatch,
};
pub use job_batch::{
    BatchedJob, JOB_BATCH_SCHEMA_VERSION, JobBatch, RawJobBatch, job_batch_msg_id,
};

/// Milliseconds since the Unix epoch, the only clock value on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Reads the system clock. The planner's decision core never calls this: its callers
    /// pass `now` in.
    pub fn now() -> Timestamp {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
    }

    /// Returns this instant moved later by `d`.
    pub fn after(self, d: std::time::Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// Returns the time from `earlier` to this instant, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// Returns the instant as `std::time::SystemTime`.
    pub fn to_system_time(self) -> std::time::SystemTime {
        // Saturates where the platform's time ends, instead of panicking past it.
        std::time::UNIX_EPOCH
            .checked_add(std::time::Duration::from_millis(self.0))
            .unwrap_or(std::time::UNIX_EPOCH + std::time::Duration::from_secs(i32::MAX as u64))
    }
}

impl fmt::Display for Timestamp {
    /// Writes RFC 3339 with milliseconds, in UTC. RFC 3339 ends with the year 9999: a later
    /// instant (a clock or a forged message far off) is written as that end.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const LAST: u64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        let shown = Timestamp(self.0.min(LAST));
        write!(
            f,
            "{}",
            humantime::format_rfc3339_millis(shown.to_system_time())
        )
    }
}

/// What a worker gets: one attempt of one node, with everything it needs to run it.
///
/// Its JSON is the one Baton has always written (`kind` beside one settings field named after
/// it, see [`JobRecord`]): a job is decoded through that record, and one of a kind without its
/// settings is refused there, as malformed.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "JobRecord")]
pub struct Job {
    /// The schema version, [`SCHEMA_VERSION`].
    pub v: u32,
    /// The run the node belongs to.
    pub run: RunId,
    /// The workflow the run is of.
    pub workflow: WorkflowName,
    /// The node to run.
    pub node: NodeName,
    /// Which attempt this is.
    pub attempt: Attempt,
    /// What to do: the executor and its settings.
    pub work: Work,
    /// How long the attempt may run, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Data passed from upstream.
    pub inputs: JobInputs,
    /// Where the data passed from upstream is kept when it was too large to travel in the
    /// job (a wide fan-in, large trigger data): the name of an object in the bus's inputs
    /// store holding the whole [`JobInputs`]. The worker fetches it before it runs the job;
    /// `inputs` then holds only the initiator.
    pub inputs_ref: Option<String>,
    /// The SHA-256 of the object `inputs_ref` names (`sha256:<hex>`), so that the job's
    /// signature covers the inputs kept apart too: a worker refuses an object that is not
    /// the one the planner wrote.
    pub inputs_digest: Option<String>,
}

/// The executor a job is for, with its settings: a job of a kind always has that kind's
/// settings. Large settings are boxed: a job is moved from task to task many times on its way.
#[derive(Clone, Debug, PartialEq)]
pub enum Work {
    /// Does nothing and succeeds.
    Noop,
    /// A local process.
    Exec(ExecJob),
    /// A Kubernetes pod.
    Pod(Box<PodJob>),
    /// An HTTP request, with the body decided.
    Webhook(Box<crate::task::Webhook>),
    /// A NATS message, with the data decided.
    Publish(Box<crate::task::Publish>),
    /// A Helm release.
    Helm(Box<crate::helm::HelmSpec>),
    /// An ALB listener rule's weights.
    Traffic(Box<crate::traffic::TrafficSpec>),
    /// Metrics measured and judged, every template and argument resolved.
    Analysis(Box<crate::analysis::AnalysisSpec>),
}

impl Work {
    /// Returns the executor kind.
    pub fn kind(&self) -> NodeKind {
        match self {
            Work::Noop => NodeKind::Noop,
            Work::Exec(_) => NodeKind::Exec,
            Work::Pod(_) => NodeKind::Pod,
            Work::Webhook(_) => NodeKind::Webhook,
            Work::Publish(_) => NodeKind::Publish,
            Work::Helm(_) => NodeKind::Helm,
            Work::Traffic(_) => NodeKind::Traffic,
            Work::Analysis(_) => NodeKind::Analysis,
        }
    }
}

/// A job as JSON: `kind` and, for a kind with settings, the field named after it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JobRecordRef<'a> {
    v: u32,
    run: &'a RunId,
    workflow: &'a WorkflowName,
    node: &'a NodeName,
    attempt: Attempt,
    kind: NodeKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exec: Option<&'a ExecJob>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod: Option<&'a PodJob>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook: Option<&'a crate::task::Webhook>,
    #[serde(skip_serializing_if = "Option::is_none")]
    publish: Option<&'a crate::task::Publish>,
    #[serde(skip_serializing_if = "Option::is_none")]
    helm: Option<&'a crate::helm::HelmSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traffic: Option<&'a crate::traffic::TrafficSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    analysis: Option<&'a crate::analysis::AnalysisSpec>,
    inputs: &'a JobInputs,
    #[serde(skip_serializing_if = "Option::is_none")]
    inputs_ref: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inputs_digest: Option<&'a String>,
}

impl Serialize for Job {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut record = JobRecordRef {
            v: self.v,
            run: &self.run,
            workflow: &self.workflow,
            node: &self.node,
            attempt: self.attempt,
            kind: self.work.kind(),
            timeout_ms: self.timeout_ms,
            exec: None,
            pod: None,
            webhook: None,
            publish: None,
            helm: None,
            traffic: None,
            analysis: None,
            inputs: &self.inputs,
            inputs_ref: self.inputs_ref.as_ref(),
            inputs_digest: self.inputs_digest.as_ref(),
        };
        match &self.work {
            Work::Noop => {}
            Work::Exec(e) => record.exec = Some(e),
            Work::Pod(p) => record.pod = Some(p),
            Work::Webhook(w) => record.webhook = Some(w),
            Work::Publish(p) => record.publish = Some(p),
            Work::Helm(h) => record.helm = Some(h),
            Work::Traffic(t) => record.traffic = Some(t),
            Work::Analysis(a) => record.analysis = Some(a),
        }
        record.serialize(serializer)
    }
}

/// A job as read from JSON, before its kind and settings are checked to agree. Public only
/// because serde names it.
#[doc(hidden)]
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    v: u32,
    run: RunId,
    workflow: WorkflowName,
    node: NodeName,
    attempt: Attempt,
    kind: NodeKind,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    exec: Option<ExecJob>,
    #[serde(default)]
    pod: Option<Box<PodJob>>,
    #[serde(default)]
    webhook: Option<Box<crate::task::Webhook>>,
    #[serde(default)]
    publish: Option<Box<crate::task::Publish>>,
    #[serde(default)]
    helm: Option<Box<crate::helm::HelmSpec>>,
    #[serde(default)]
    traffic: Option<Box<crate::traffic::TrafficSpec>>,
    #[serde(default)]
    analysis: Option<Box<crate::analysis::AnalysisSpec>>,
    inputs: JobInputs,
    #[serde(default)]
    inputs_ref: Option<String>,
    #[serde(default)]
    inputs_digest: Option<String>,
}

impl TryFrom<JobRecord> for Job {
    type Error = String;

    fn try_from(r: JobRecord) -> Result<Job, String> {
        let kind = r.kind;
        let missing = || format!("a job of kind {kind} without its {kind} settings");
        let work = match kind {
            NodeKind::Noop => Work::Noop,
            NodeKind::Exec => Work::Exec(r.exec.ok_or_else(missing)?),
            NodeKind::Pod => Work::Pod(r.pod.ok_or_else(missing)?),
            NodeKind::Webhook => Work::Webhook(r.webhook.ok_or_else(missing)?),
            NodeKind::Publish => Work::Publish(r.publish.ok_or_else(missing)?),
            NodeKind::Helm => Work::Helm(r.helm.ok_or_else(missing)?),
            NodeKind::Traffic => Work::Traffic(r.traffic.ok_or_else(missing)?),
            NodeKind::Analysis => Work::Analysis(r.analysis.ok_or_else(missing)?),
        };
        Ok(Job {
            v: r.v,
            run: r.run,
            workflow: r.workflow,
            node: r.node,
            attempt: r.attempt,
            work,
            timeout_ms: r.timeout_ms,
            inputs: r.inputs,
            inputs_ref: r.inputs_ref,
            inputs_digest: r.inputs_digest,
        })
    }
}

/// What an `exec` job runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecJob {
    /// argv; the first entry is the program.
    pub command: Vec<String>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

/// What a `pod` job runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodJob {
    /// The pod template, used whole.
    pub template: crate::workflow::PodTemplateSpec,
    /// The pod's namespace; the worker's default when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The container whose termination message is the output; the first when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The Task the pod runs, for a node of a chain (its `baton.dev/task` label); `None` for a
    /// Workflow's `pod` node, which runs no Task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
}

/// Returns the deterministic name of the pod of one attempt of a node, `<node>-<run>-<attempt>`,
/// so that a redelivered job finds the pod its first delivery created. The name fits the 63
/// characters of a DNS label: when it would not, the node's part is cut and ends with a hash of
/// the whole node name, so that two nodes sharing a long beginning (a chain's `task` and
/// `task-2`) never share a pod name. Names that fit are left as they are.
pub fn pod_name(node: &NodeName, run: &RunId, attempt: Attempt) -> String {
    let suffix = format!("-{run}-{attempt}");
    // A run id has at most 40 characters and an attempt at most 10 digits, so at least 11
    // are left: room for a head and the 9 characters of `-<hash>`.
    let room = 63usize.saturating_sub(suffix.len()).max(10);
    format!("{}{suffix}", crate::ids::cut_with_hash(node.as_str(), room))
}

/// Data handed to a node from what came before it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobInputs {
    /// Who started this node: the upstream node whose completion made it ready, or for a
    /// first node what started the run (`api`, or the trigger subject's workflow name).
    pub initiator: String,
    /// The initiator's output, or for a first node the run's trigger data.
    pub data: String,
    /// With several upstreams, every upstream's output by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<BTreeMap<NodeName, String>>,
}

impl Job {
    /// Returns how long the attempt may run, at most ten times [`crate::Duration::MAX`]: a
    /// forged job's larger value cannot overflow the deadline a worker computes from it.
    pub fn timeout(&self) -> Option<std::time::Duration> {
        let cap = crate::Duration::MAX.0.saturating_mul(10);
        self.timeout_ms
            .map(|ms| std::time::Duration::from_millis(ms).min(cap))
    }

    /// Returns a job doing `work` for one attempt of a node, with no timeout and no inputs: a
    /// base to set the rest on.
    pub fn new(
        run: RunId,
        workflow: WorkflowName,
        node: NodeName,
        attempt: Attempt,
        work: Work,
    ) -> Job {
        Job {
            v: SCHEMA_VERSION,
            run,
            workflow,
            node,
            attempt,
            work,
            timeout_ms: None,
            inputs: JobInputs::default(),
            inputs_ref: None,
            inputs_digest: None,
        }
    }

    /// Returns the executor kind.
    pub fn kind(&self) -> NodeKind {
        self.work.kind()
    }
    /// Returns the `exec` settings of a `exec` job.
    pub fn exec(&self) -> Option<&ExecJob> {
        match &self.work {
            Work::Exec(settings) => Some(settings),
            _ => None,
        }
    }

    /// Returns the `pod` settings of a `pod` job.
    pub fn pod(&self) -> Option<&PodJob> {
        match &self.work {
            Work::Pod(settings) => Some(settings),
            _ => None,
        }
    }

    /// Returns the `webhook` settings of a `webhook` job.
    pub fn webhook(&self) -> Option<&crate::task::Webhook> {
        match &self.work {
            Work::Webhook(settings) => Some(settings),
            _ => None,
        }
    }

    /// Returns the `publish` settings of a `publish` job.
    pub fn publish(&self) -> Option<&crate::task::Publish> {
        match &self.work {
            Work::Publish(settings) => Some(settings),
            _ => None,
        }
    }

    /// Returns the `helm` settings of a `helm` job.
    pub fn helm(&self) -> Option<&crate::helm::HelmSpec> {
        match &self.work {
            Work::Helm(settings) => Some(settings),
            _ => None,
        }
    }

    /// Returns the `traffic` settings of a `traffic` job.
    pub fn traffic(&self) -> Option<&crate::traffic::TrafficSpec> {
        match &self.work {
            Work::Traffic(settings) => Some(settings),
            _ => None,
        }
    }

    /// Returns the `analysis` settings of a `analysis` job.
    pub fn analysis(&self) -> Option<&crate::analysis::AnalysisSpec> {
        match &self.work {
            Work::Analysis(settings) => Some(settings),
            _ => None,
        }
    }

    /// Returns the job's `Nats-Msg-Id`: `<run>.<node>.<attempt>`.
    pub fn msg_id(&self) -> String {
        job_msg_id(&self.run, &self.node, self.attempt)
    }

    /// Returns the environment Baton gives the node's process: `BATON_RUN`, `BATON_NODE`,
    /// `BATON_ATTEMPT`, `BATON_INITIATOR`, `BATON_DATA`, and `BATON_INPUTS` (JSON) when the
    /// node has several upstreams.
    pub fn baton_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("BATON_RUN".to_owned(), self.run.to_string()),
            ("BATON_NODE".to_owned(), self.node.to_string()),
            ("BATON_ATTEMPT".to_owned(), self.attempt.to_string()),
            ("BATON_INITIATOR".to_owned(), self.inputs.initiator.clone()),
            ("BATON_DATA".to_owned(), self.inputs.data.clone()),
        ];
        if let Some(inputs) = &self.inputs.inputs {
            let json = serde_json::to_string(inputs).unwrap_or_else(|_| "{}".to_owned());
            env.push(("BATON_INPUTS".to_owned(), json));
        }
        env
    }
}

/// Returns the `Nats-Msg-Id` of a job: `<run>.<node>.<attempt>`.
pub fn job_msg_id(run: &RunId, node: &NodeName, attempt: Attempt) -> String {
    format!("{run}.{node}.{attempt}")
}

/// An event on `<p>.events.<run>`, written by workers, read by the planner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventEnvelope {
    /// The schema version, [`EVENT_SCHEMA_VERSION`].
    pub v: u32,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

impl EventEnvelope {
    /// Wraps an event in this build's schema version.
    pub fn new(event: Event) -> EventEnvelope {
        EventEnvelope {
            v: EVENT_SCHEMA_VERSION,
            event,
        }
    }

    /// Brings an event of an earlier schema version to this one. Version 1 had no failure
    /// kind: a traffic write's failure said in its output whether trying again could mend it
    /// (see [`crate::reports::TrafficFailure::is_final`]), which version 1 planners read.
    pub fn upgrade(mut self) -> EventEnvelope {
        if self.v == 1
            && let Event::NodeFinished {
                outcome: Outcome::Failed { output, kind, .. },
                ..
            } = &mut self.event
            && crate::reports::from_output::<crate::reports::TrafficFailure>(output.as_deref())
                .is_some_and(|f| f.is_final())
        {
            *kind = FailureKind::Final;
        }
        self.v = EVENT_SCHEMA_VERSION;
        self
    }
}

/// What happened to a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Event {
    /// A worker began the attempt. Long jobs report this so the planner can show the start
    /// and arm its timeout backstop; `noop` jobs skip it.
    NodeStarted {
        /// The run.
        run: RunId,
        /// The node.
        node: NodeName,
        /// The attempt.
        attempt: Attempt,
        /// When the worker began.
        at: Timestamp,
    },
    /// The attempt ended.
    NodeFinished {
        /// The run.
        run: RunId,
        /// The node.
        node: NodeName,
        /// The attempt.
        attempt: Attempt,
        /// When the worker began.
        started_at: Timestamp,
        /// When the worker finished.
        finished_at: Timestamp,
        /// How it ended.
        outcome: Outcome,
    },
}

impl Event {
    /// Returns the run the event is about.
    pub fn run(&self) -> &RunId {
        match self {
            Event::NodeStarted { run, .. } | Event::NodeFinished { run, .. } => run,
        }
    }

    /// Returns the node the event is about.
    pub fn node(&self) -> &NodeName {
        match self {
            Event::NodeStarted { node, .. } | Event::NodeFinished { node, .. } => node,
        }
    }

    /// Returns the attempt the event is about.
    pub fn attempt(&self) -> Attempt {
        match self {
            Event::NodeStarted { attempt, .. } | Event::NodeFinished { attempt, .. } => *attempt,
        }
    }

    /// Returns the event's `Nats-Msg-Id`: `<run>.<node>.<attempt>.started` or `.done`.
    pub fn msg_id(&self) -> String {
        match self {
            Event::NodeStarted {
                run, node, attempt, ..
            } => {
                format!("{}.started", job_msg_id(run, node, *attempt))
            }
            Event::NodeFinished {
                run, node, attempt, ..
            } => {
                format!("{}.done", job_msg_id(run, node, *attempt))
            }
        }
    }
}

/// An ignitor's fire, on `<p>.triggers.ignitors.<ignitor>` with the id
/// `ignitor.<ignitor>.<scheduled-unix-ms>`: the planner publishes it when the fire is due and
/// starts the fire's chain when it reads it back, so a fire is applied like any trigger
/// (again after a crash, from the stream) and the server drops one published twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fire {
    /// The schema version, [`SCHEMA_VERSION`].
    pub v: u32,
    /// The ignitor.
    pub ignitor: String,
    /// The time the fire was scheduled for (which names it).
    pub scheduled: Timestamp,
    /// The ignitor's data, as it was when the fire was due: the first tasks' `BATON_DATA`.
    pub data: String,
}

impl Fire {
    /// Returns the fire's `Nats-Msg-Id`: `ignitor.<ignitor>.<scheduled-unix-ms>`.
    pub fn msg_id(&self) -> String {
        format!("ignitor.{}.{}", self.ignitor, self.scheduled.0)
    }
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum Outcome {
    /// It worked; `output` is what the node wrote (at most [`crate::OUTPUT_LIMIT_BYTES`]).
    Succeeded {
        /// The node's output.
        output: String,
    },
    /// It failed; `error` says why, with the last lines of the process's output.
    Failed {
        /// Why it failed.
        error: String,
        /// What the node wrote to its output before it failed (a failed pod's termination
        /// message), passed on to failure handlers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
        /// Whether trying again may mend it, as the worker judged (version 1 events have
        /// none: read as retryable, see [`EventEnvelope::upgrade`]).
        #[serde(default)]
        kind: FailureKind,
    },
}

/// What a worker knows of a failure that decides whether the planner tries again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureKind {
    /// Trying again may work (a timeout, a throttle, a process that failed): the node's
    /// retries apply.
    #[default]
    Retryable,
    /// Trying again fails the same way (a request refused as invalid, a thing not found, a
    /// write a newer one superseded): the node fails at once.
    Final,
}

impl Outcome {
    /// Returns a failure with no output, which may be tried again.
    pub fn failed(error: impl Into<String>) -> Outcome {
        Outcome::Failed {
            error: error.into(),
            output: None,
            kind: FailureKind::Retryable,
        }
    }
}

/// Headers Baton sets on its messages, besides `Nats-Msg-Id`.
pub mod headers {
    /// The schema version of the body.
    pub const SCHEMA: &str = "Baton-Schema";
    /// The run a job or trigger belongs to; on a trigger, the run id the sender chose.
    pub const RUN: &str = "Baton-Run";
    /// The node of a job or an event.
    pub const NODE: &str = "Baton-Node";
    /// The attempt of a job or an event.
    pub const ATTEMPT: &str = "Baton-Attempt";
    /// W3C trace context, passed on from what caused the message.
    pub const TRACEPARENT: &str = "traceparent";
    /// The lease revision of the planner that published the message (its epoch): a planner
    /// that took over publishes with a higher one.
    pub const EPOCH: &str = "Baton-Epoch";
    /// On a message of jobs, that it is a batch of them, and the batch's schema version.
    pub const JOB_BATCH: &str = "Baton-Job-Batch";
    /// On a batch of jobs, how many it holds: what a worker pulls by, before it reads one.
    pub const JOB_COUNT: &str = "Baton-Jobs";
}

#[cfg(test)]
mod tests;
