//! Jobs on the bus, alone or batched: a batch is built from the single messages the planner
//! prepared (their bodies are not serialized again), and read back job by job, so that one
//! job a worker cannot read is set aside alone and the others run.

use baton_schemas::wire::{
    JOB_BATCH_SCHEMA_VERSION, Job, RawJobBatch, SCHEMA_VERSION, headers, job_batch_msg_id,
};
use baton_schemas::{Attempt, NodeName, RunId};

use crate::inbound::{check_job_names, check_version, poison};
use crate::{Bus, Inbound, Outgoing, Poison};

/// One job of a message, with the trace context of its dispatch when the job carries it
/// apart from the message's headers (a job of a batch); or why it cannot run, naming its
/// attempt when it can.
pub type DecodedJob = Result<(Job, Option<String>), Poison>;

/// The most jobs one message carries unless the planner is told otherwise (its
/// `--job-batch`); a worker's first pull of batches expects this many in each.
pub const DEFAULT_JOB_BATCH: u16 = 64;

/// The bytes a batch adds to its jobs' bodies: its frame and each job's.
const BATCH_FRAME_BYTES: usize = r#"{"v":1,"jobs":[]}"#.len();
const JOB_FRAME_BYTES: usize = r#"{"job":,"traceparent":""},"#.len() + 55;

/// Whether a message of jobs is a batch of them.
pub fn is_job_batch(message: &Inbound) -> bool {
    message.header(headers::JOB_BATCH).is_some()
}

/// How many jobs a message holds, as its header says (1 without one): a hint for how much
/// to pull, read before the message is checked or decoded.
pub fn jobs_in(message: &Inbound) -> usize {
    message
        .header(headers::JOB_COUNT)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

impl Bus {
    /// Returns one message holding `jobs` (single job messages of one kind, as
    /// [`Bus::job_message`] makes them), on their kind's batch subject
    /// ([`Bus::job_batch_subject`]), with id
    /// [`job_batch_msg_id`] of the first and the count, signed as a single job is. A batch of
    /// one is that job's own message.
    pub fn job_batch_message(&self, jobs: &[Outgoing]) -> Outgoing {
        if let [only] = jobs {
            return only.clone();
        }
        let first = jobs.first().expect("a batch holds at least one job");
        let mut payload = Vec::with_capacity(job_batch_bytes(jobs));
        payload
            .extend_from_slice(format!(r#"{{"v":{JOB_BATCH_SCHEMA_VERSION},"jobs":["#).as_bytes());
        for (i, job) in jobs.iter().enumerate() {
            if i > 0 {
                payload.push(b',');
            }
            payload.extend_from_slice(br#"{"job":"#);
            payload.extend_from_slice(&job.payload);
            if let Some(traceparent) = job.header(headers::TRACEPARENT) {
                // A traceparent is hex and dashes: nothing in it needs escaping.
                payload.extend_from_slice(br#","traceparent":""#);
                payload.extend_from_slice(traceparent.as_bytes());
                payload.push(b'"');
            }
            payload.push(b'}');
        }
        payload.extend_from_slice(b"]}");
        // On the kind's batch subject: `<p>.jobs.<kind>.batch`.
        let subject = format!("{}.batch", first.subject);
        let msg_id = job_batch_msg_id(&first.msg_id, jobs.len());
        let mut batch_headers = vec![
            (headers::SCHEMA.to_owned(), SCHEMA_VERSION.to_string()),
            (
                headers::JOB_BATCH.to_owned(),
                JOB_BATCH_SCHEMA_VERSION.to_string(),
            ),
            (headers::JOB_COUNT.to_owned(), jobs.len().to_string()),
        ];
        // The run, when every job is of one run (a fan-out's are): what a reader that cannot
        // open the batch can still say of it.
        if let Some(run) = first.header(headers::RUN)
            && jobs.iter().all(|j| j.header(headers::RUN) == Some(run))
        {
            batch_headers.push((headers::RUN.to_owned(), run.to_owned()));
        }
        self.signed_job(subject, msg_id, payload, batch_headers)
    }
}

/// The size of the batch of `jobs`, as [`Outgoing::size`] counts it, within the headers'
/// few bytes: what a planner cutting batches to the bus's largest message counts.
pub fn job_batch_bytes(jobs: &[Outgoing]) -> usize {
    BATCH_FRAME_BYTES
        + jobs
            .iter()
            .map(|j| j.payload.len() + JOB_FRAME_BYTES)
            .sum::<usize>()
}

/// Decodes a message of jobs: a single job, or a batch of them. A batch that cannot be read
/// at all is poison; a job of a batch that cannot be read is set aside alone.
pub fn decode_jobs(message: &Inbound) -> Result<Vec<DecodedJob>, Poison> {
    if !is_job_batch(message) {
        return crate::decode_job(message).map(|job| vec![Ok((job, None))]);
    }
    let batch: RawJobBatch = serde_json::from_slice(message.payload())
        .map_err(|e| poison(message, format!("undecodable job batch: {e}")))?;
    check_version(message, batch.v, JOB_BATCH_SCHEMA_VERSION)?;
    Ok(batch
        .jobs
        .into_iter()
        .map(|raw| batched_job(message.subject(), raw.get()))
        .collect())
}

/// Decodes one job of a batch, as [`crate::decode_job`] decodes a single one.
fn batched_job(subject: &str, text: &str) -> DecodedJob {
    /// What names the attempt, read on its own so that a job that is otherwise unreadable
    /// can still be reported as that attempt's failure.
    #[derive(Default, serde::Deserialize)]
    struct Head {
        #[serde(default)]
        job: JobHead,
        traceparent: Option<String>,
    }
    #[derive(Default, serde::Deserialize)]
    struct JobHead {
        v: Option<u32>,
        run: Option<String>,
        node: Option<String>,
        attempt: Option<u32>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        job: Job,
    }
    let head: Head = serde_json::from_str(text).unwrap_or_default();
    let set_aside = |reason: String| Poison {
        subject: subject.to_owned(),
        reason,
        run: head
            .job
            .run
            .as_deref()
            .filter(|r| RunId::is_valid(r))
            .map(RunId::new),
        node: head
            .job
            .node
            .as_deref()
            .filter(|n| baton_schemas::ids::is_dns_label(n))
            .map(NodeName::new),
        attempt: head.job.attempt.map(Attempt),
    };
    match head.job.v {
        Some(v) if (1..=SCHEMA_VERSION).contains(&v) => {}
        Some(v) => {
            return Err(set_aside(format!(
                "schema version {v} is not known to this build (it reads 1 to {SCHEMA_VERSION})"
            )));
        }
        None => {
            return Err(set_aside(
                "a job of a batch without a schema version".to_owned(),
            ));
        }
    }
    let Entry { job } = serde_json::from_str(text)
        .map_err(|e| set_aside(format!("undecodable job in a batch: {e}")))?;
    check_job_names(&job).map_err(set_aside)?;
    Ok((job, head.traceparent))
}
