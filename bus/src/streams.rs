//! Baton's streams: made (or set right) by the planner, awaited by workers, which only use
//! them: a worker started with other settings (another `--replicas`) must not rewrite a
//! stream the planner made, and under least privilege it may not.

use std::time::Duration;

use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::{ErrorCode, stream};
use tracing::{info, warn};

use crate::{Bus, BusError, BusErrorKind};

/// The streams every Baton process uses.
pub(crate) const STREAMS: [&str; 5] = ["JOBS", "EVENTS", "TRIGGERS", "AUDIT", "CANCELS"];

impl Bus {
    /// Creates the streams, or updates those configured otherwise: the planner's (and `baton
    /// up`'s) to do, at every start.
    pub async fn ensure_streams(&self) -> Result<(), BusError> {
        let p = &self.config.prefix;
        let common = stream::Config {
            storage: stream::StorageType::File,
            num_replicas: self.config.replicas,
            duplicate_window: self.config.duplicate_window,
            ..Default::default()
        };
        let streams = [
            stream::Config {
                name: self.stream_name("JOBS"),
                subjects: vec![format!("{p}.jobs.>")],
                retention: stream::RetentionPolicy::WorkQueue,
                ..common.clone()
            },
            stream::Config {
                name: self.stream_name("EVENTS"),
                subjects: vec![format!("{p}.events.>")],
                retention: stream::RetentionPolicy::Limits,
                max_age: self.config.retention,
                ..common.clone()
            },
            stream::Config {
                name: self.stream_name("TRIGGERS"),
                subjects: vec![format!("{p}.triggers.>")],
                retention: stream::RetentionPolicy::Limits,
                max_age: self.config.retention,
                ..common.clone()
            },
            // The audit trail: every change asked through the API or a trigger.
            stream::Config {
                name: self.stream_name("AUDIT"),
                subjects: vec![format!("{p}.audit.>")],
                retention: stream::RetentionPolicy::Limits,
                max_age: self.config.retention,
                // Refused requests are recorded too: a flood of them drops the oldest records
                // rather than filling the server's disk.
                max_bytes: AUDIT_MAX_BYTES,
                ..common.clone()
            },
            // Cancel notices are kept, not only sent: a worker that takes a job after its
            // run was cancelled (the job waited in the queue) finds the notice and drops it.
            stream::Config {
                name: self.stream_name("CANCELS"),
                subjects: vec![format!("{p}.cancels.>")],
                retention: stream::RetentionPolicy::Limits,
                max_age: self.config.retention,
                ..common
            },
        ];
        for config in streams {
            self.ensure_stream(config).await?;
        }
        self.ensure_inputs_store().await
    }

    /// Creates a stream, or updates it when it is configured otherwise.
    pub(crate) async fn ensure_stream(&self, config: stream::Config) -> Result<(), BusError> {
        let name = config.name.clone();
        // An update, even to the same configuration, makes the server redeliver the work
        // queue's jobs in flight at once: a planner restarting would run them twice. Only a
        // stream that is missing or configured otherwise is written.
        if let Ok(existing) = self.js.get_stream(&name).await
            && same_settings(&existing.cached_info().config, &config)
        {
            return Ok(());
        }
        self.with_retry("create stream", || {
            self.js.create_or_update_stream(config.clone())
        })
        .await
        .map(|_| ())
        .map_err(|e| {
            BusError::with_source(BusErrorKind::from_stream(&e), format!("stream {name}"), e)
        })
    }

    /// Waits until every stream exists, as the planner makes them: a worker started first
    /// waits for it, as does one whose bus is choosing stream leaders. A stream's settings
    /// are the planner's, whatever this process's.
    pub async fn await_streams(&self) {
        for which in STREAMS {
            let name = self.stream_name(which);
            let mut delay = Duration::from_millis(100);
            let mut waited = false;
            while let Err(e) = self.js.get_stream(&name).await {
                let missing = matches!(
                    e.kind(),
                    GetStreamErrorKind::JetStream(ref js) if js.error_code() == ErrorCode::STREAM_NOT_FOUND
                );
                if missing && !waited {
                    info!(stream = %name, "waiting for the planner to make the stream");
                } else if !missing {
                    warn!(stream = %name, error = %e, "the stream could not be read; trying again");
                }
                waited = true;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            if waited {
                info!(stream = %name, "the stream is there");
            }
        }
    }
}

/// Returns whether a stream's configuration already has every setting Baton chooses.
fn same_settings(existing: &stream::Config, wanted: &stream::Config) -> bool {
    existing.subjects == wanted.subjects
        && existing.retention == wanted.retention
        && existing.storage == wanted.storage
        && existing.num_replicas == wanted.num_replicas
        && existing.duplicate_window == wanted.duplicate_window
        && existing.max_age == wanted.max_age
        // The server says -1 for "no limit" where a config asks for it with 0.
        && existing.max_bytes.max(0) == wanted.max_bytes.max(0)
}

/// The most the audit stream keeps: 1 GiB, about four million records.
const AUDIT_MAX_BYTES: i64 = 1 << 30;
