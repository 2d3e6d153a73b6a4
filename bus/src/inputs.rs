//! Inputs that travel by reference: a job whose upstream data would make it larger than the
//! bus carries (a fan-in of hundreds of branches, megabytes of trigger data) keeps that data
//! in the `<P>_INPUTS` object store and names it; the worker fetches it before it runs.
//!
//! The object is written before the job is published (and, for the planner's outbox, before
//! the outbox is committed), under the job's own id, with the same content whenever the job
//! is decided again: a replay or a re-send writes the same object once more and nothing else
//! changes. Objects expire with the bus's retention, as events do.

use async_nats::jetstream::object_store::{self, ObjectStore};
use baton_schemas::wire::{Job, JobInputs};
use bytes::Bytes;

use crate::{Bus, BusError, BusErrorKind, Outgoing};

/// A job made ready for the bus.
#[derive(Debug)]
pub enum PreparedJob {
    /// It travels as it is.
    Inline(Outgoing),
    /// Its inputs travel apart: `inputs` is to be written as object `name` of the inputs
    /// store before `message` is published.
    ByReference {
        /// The job, naming its inputs.
        message: Outgoing,
        /// The object's name.
        name: String,
        /// The inputs, as JSON.
        inputs: Bytes,
    },
    /// Even without its inputs the job is larger than the bus's largest message
    /// ([`PreparedJob::too_large`] says so).
    TooLarge {
        /// Its size without its inputs, as the server counts it.
        size: usize,
        /// The bus's largest message.
        limit: usize,
    },
}

impl PreparedJob {
    /// Returns why a job of `size` bytes cannot travel on a bus whose largest message is
    /// `limit` bytes: the failure its node ends with.
    pub fn too_large(size: usize, limit: usize) -> String {
        format!("job is {size} bytes, above the bus's limit of {limit}")
    }
}

/// Why a job's inputs could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    /// The object is not in the store (expired with the bus's retention, or never written):
    /// the job can never run as meant.
    #[error("the job's inputs ({0}) are not on the bus: expired or never written")]
    Gone(String),
    /// The object is not a job's inputs.
    #[error("the job's inputs ({name}) are not readable: {reason}")]
    Unreadable {
        /// The object's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The object is not the one the planner wrote for the job (its digest differs from the
    /// signed job's), or a job that names inputs on a bus that signs jobs carries no digest
    /// to check them by: the job is forged or altered and is set aside.
    #[error("the job's inputs ({name}) are not the planner's: {reason}")]
    Altered {
        /// The object's name.
        name: String,
        /// What does not match.
        reason: String,
    },
    /// Reading failed for a passing reason (the server restarting): worth a later try.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Returns the digest a job names its kept-apart inputs by: `sha256:<hex>`.
pub fn inputs_digest(inputs: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, inputs);
    format!("sha256:{}", crate::signing::hex(digest.as_ref()))
}

/// The largest job that travels with its inputs: larger ones keep them apart. Far below the
/// usual 1 MiB, so that a job is cheap to move and redeliver, and well above what ordinary
/// data passing (outputs of at most 4 KiB) needs.
pub const INLINE_JOB_BYTES: usize = 256 * 1024;

impl Bus {
    /// Returns the name of the inputs object store: `<P>_INPUTS`.
    pub fn inputs_bucket(&self) -> String {
        self.stream_name("INPUTS")
    }

    /// Makes sure the inputs store exists, with the bus's retention and replicas.
    pub(crate) async fn ensure_inputs_store(&self) -> Result<(), BusError> {
        let bucket = self.inputs_bucket();
        if self.js.get_object_store(&bucket).await.is_ok() {
            return Ok(());
        }
        self.js
            .create_object_store(object_store::Config {
                bucket: bucket.clone(),
                description: Some("inputs of jobs too large to carry them".to_owned()),
                max_age: self.config.retention,
                storage: async_nats::jetstream::stream::StorageType::File,
                num_replicas: self.config.replicas,
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(|e| {
                BusError::with_source(BusErrorKind::Other, format!("object store {bucket}"), e)
            })
    }

    async fn inputs_store(&self) -> Result<ObjectStore, BusError> {
        let bucket = self.inputs_bucket();
        self.js.get_object_store(&bucket).await.map_err(|e| {
            BusError::with_source(
                BusErrorKind::StreamMissing,
                format!("object store {bucket}"),
                e,
            )
        })
    }

    /// Returns `job` ready for the bus: as it is when it is small, with its inputs kept apart
    /// when they make it large, or why it cannot travel at all.
    pub fn prepare_job(&self, job: &Job) -> PreparedJob {
        let message = self.job_message(job);
        let limit = self.max_message_size();
        if message.size() <= INLINE_JOB_BYTES.min(limit) {
            return PreparedJob::Inline(message);
        }
        let name = job.msg_id();
        let inputs = serde_json::to_vec(&job.inputs).expect("inputs always serialize");
        let mut apart = job.clone();
        apart.inputs = JobInputs {
            initiator: job.inputs.initiator.clone(),
            ..JobInputs::default()
        };
        apart.inputs_ref = Some(name.clone());
        apart.inputs_digest = Some(inputs_digest(&inputs));
        let message = self.job_message(&apart);
        if message.size() > limit {
            return PreparedJob::TooLarge {
                size: message.size(),
                limit,
            };
        }
        PreparedJob::ByReference {
            message,
            name,
            inputs: inputs.into(),
        }
    }

    /// Writes a job's inputs under `name`. Idempotent: the same job writes the same content.
    pub async fn put_inputs(&self, name: &str, inputs: &Bytes) -> Result<(), BusError> {
        let store = self.inputs_store().await?;
        self.with_retry("write inputs", || async {
            let mut reader: &[u8] = inputs;
            store.put(name, &mut reader).await
        })
        .await
        .map(|_| ())
        .map_err(|e| {
            let kind = match e.kind() {
                object_store::PutErrorKind::TimedOut => BusErrorKind::TimedOut,
                _ => BusErrorKind::Other,
            };
            BusError::with_source(kind, format!("write inputs {name}"), e)
        })
    }

    /// Returns `job` with the inputs it names filled in (as it is when it names none).
    pub async fn resolve_inputs(&self, mut job: Job) -> Result<Job, InputsError> {
        let Some(name) = job.inputs_ref.take() else {
            return Ok(job);
        };
        let expected = job.inputs_digest.take();
        if expected.is_none() && self.signer().is_some() {
            // The signature covers the job's body only: without a digest in it, nothing
            // vouches for the object.
            return Err(InputsError::Altered {
                name,
                reason: "the job names no digest of them".to_owned(),
            });
        }
        let bytes = self.read_inputs(&name).await?;
        if let Some(expected) = expected {
            let found = inputs_digest(&bytes);
            if found != expected {
                return Err(InputsError::Altered {
                    name,
                    reason: format!("their digest is {found}, the job names {expected}"),
                });
            }
        }
        job.inputs = serde_json::from_slice(&bytes).map_err(|e| InputsError::Unreadable {
            name,
            reason: e.to_string(),
        })?;
        Ok(job)
    }

    /// Reads object `name` of the inputs store chunk by chunk with direct gets: a worker
    /// needs no consumer of the store (and so no right to make one, whose delivery subject
    /// it could choose), only reads of single messages.
    async fn read_inputs(&self, name: &str) -> Result<Vec<u8>, InputsError> {
        let store = self.inputs_store().await?;
        let read_failed = |e: &dyn std::fmt::Display| {
            InputsError::Bus(BusError::new(
                BusErrorKind::TimedOut,
                format!("read inputs {name}: {e}"),
            ))
        };
        let info = match store.info(name).await {
            Ok(info) if !info.deleted => info,
            Ok(_) => return Err(InputsError::Gone(name.to_owned())),
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => {
                return Err(InputsError::Gone(name.to_owned()));
            }
            Err(e) => return Err(read_failed(&e)),
        };
        let stream_name = format!("OBJ_{}", self.inputs_bucket());
        let stream = self
            .js
            .get_stream_no_info(&stream_name)
            .await
            .map_err(|e| read_failed(&e))?;
        let chunks = format!("$O.{}.C.{}", self.inputs_bucket(), info.nuid);
        let mut bytes = Vec::with_capacity(info.size);
        let mut next = 1;
        for _ in 0..info.chunks {
            // A chunk gone midway means the object is being written anew (a replayed job):
            // worth a later try, which reads the new one whole.
            let chunk = stream
                .direct_get_next_for_subject(&chunks, Some(next))
                .await
                .map_err(|e| read_failed(&e))?;
            bytes.extend_from_slice(&chunk.payload);
            next = chunk.sequence + 1;
        }
        if bytes.len() != info.size {
            return Err(InputsError::Unreadable {
                name: name.to_owned(),
                reason: format!("{} bytes read, the object has {}", bytes.len(), info.size),
            });
        }
        Ok(bytes)
    }
}
