//! What waits on the bus: each stream's stored messages and each durable consumer's pending
//! and unacknowledged messages. The planner reads it for its metrics; a worker autoscaler
//! reads `worker-<kind>`'s pending count from there.

use futures::TryStreamExt;

use crate::streams::STREAMS;
use crate::{Bus, BusError, BusErrorKind};

/// One stream's size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamBacklog {
    /// The stream, without the prefix (`JOBS`, `EVENTS`, ...).
    pub stream: &'static str,
    /// Messages stored.
    pub messages: u64,
    /// Bytes stored.
    pub bytes: u64,
}

/// One durable consumer's backlog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerBacklog {
    /// The stream it reads, without the prefix.
    pub stream: &'static str,
    /// The durable name (`worker-pod`, `planner-events`, ...).
    pub consumer: String,
    /// Messages not delivered yet.
    pub pending: u64,
    /// Messages delivered and not acknowledged yet.
    pub ack_pending: u64,
    /// Messages delivered more than once and not acknowledged yet.
    pub redelivered: u64,
}

/// The streams' sizes and the durable consumers' backlogs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Every stream Baton uses that exists.
    pub streams: Vec<StreamBacklog>,
    /// Every durable consumer of those streams. Ordered consumers (each worker's reader of
    /// cancel notices) have random names and come and go with processes: left out.
    pub consumers: Vec<ConsumerBacklog>,
}

impl Bus {
    /// Reads the backlog of every stream Baton uses. A stream missing (not made yet) is left
    /// out; any other failure is returned.
    pub async fn backlog(&self) -> Result<Backlog, BusError> {
        let mut backlog = Backlog::default();
        for which in STREAMS {
            let mut stream = match self.stream(which).await {
                Ok(stream) => stream,
                Err(e) if e.kind() == BusErrorKind::StreamMissing => continue,
                Err(e) => return Err(e),
            };
            let info = stream.info().await.map_err(|e| {
                BusError::with_source(BusErrorKind::TimedOut, format!("stream {which}"), e)
            })?;
            backlog.streams.push(StreamBacklog {
                stream: which,
                messages: info.state.messages,
                bytes: info.state.bytes,
            });
            let consumers: Vec<_> = stream.consumers().try_collect().await.map_err(|e| {
                BusError::with_source(BusErrorKind::TimedOut, format!("consumers of {which}"), e)
            })?;
            for consumer in consumers {
                let Some(durable) = consumer.config.durable_name else {
                    continue;
                };
                backlog.consumers.push(ConsumerBacklog {
                    stream: which,
                    consumer: durable,
                    pending: consumer.num_pending,
                    ack_pending: consumer.num_ack_pending as u64,
                    redelivered: consumer.num_redelivered as u64,
                });
            }
        }
        Ok(backlog)
    }
}
