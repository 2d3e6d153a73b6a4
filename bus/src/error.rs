//! Bus errors, matchable by kind so that callers decide retry, NAK or terminate with a `match`.

use async_nats::jetstream::context::{
    CreateStreamError, CreateStreamErrorKind, PublishError, PublishErrorKind,
};
use async_nats::jetstream::stream::{ConsumerError, ConsumerErrorKind};

/// What kind of bus failure happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusErrorKind {
    /// The server did not answer in time, even after retries.
    TimedOut,
    /// The connection is down and did not come back in time.
    Disconnected,
    /// A stream the operation needs does not exist.
    StreamMissing,
    /// JetStream is not enabled on the server.
    JetStreamUnavailable,
    /// The message is larger than the server accepts.
    TooLarge,
    /// Baton's own settings are wrong (a bad prefix, an unreadable credentials file).
    Config,
    /// The server refused this process's credentials.
    Refused,
    /// A write that expected the stream to end where this process last saw it found another
    /// writer's messages there: another planner wrote the state stream.
    Fenced,
    /// Anything else the server refused.
    Other,
}

/// A bus failure: its kind, what Baton was doing, and the client's error.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {kind:?}")]
pub struct BusError {
    kind: BusErrorKind,
    context: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl BusError {
    /// Builds an error without a source.
    pub fn new(kind: BusErrorKind, context: impl Into<String>) -> Self {
        Self {
            kind,
            context: context.into(),
            source: None,
        }
    }

    /// Builds an error caused by `source`.
    pub fn with_source(
        kind: BusErrorKind,
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind,
            context: context.into(),
            source: Some(Box::new(source)),
        }
    }

    /// Returns the kind.
    pub fn kind(&self) -> BusErrorKind {
        self.kind
    }
}

impl BusErrorKind {
    pub(crate) fn from_publish(e: &PublishError) -> Self {
        match e.kind() {
            PublishErrorKind::TimedOut | PublishErrorKind::MaxAckPending => BusErrorKind::TimedOut,
            PublishErrorKind::BrokenPipe => BusErrorKind::Disconnected,
            PublishErrorKind::StreamNotFound => BusErrorKind::StreamMissing,
            PublishErrorKind::MaxPayloadExceeded => BusErrorKind::TooLarge,
            PublishErrorKind::WrongLastSequence => BusErrorKind::Fenced,
            _ => BusErrorKind::Other,
        }
    }

    pub(crate) fn from_stream(e: &CreateStreamError) -> Self {
        match e.kind() {
            CreateStreamErrorKind::TimedOut => BusErrorKind::TimedOut,
            CreateStreamErrorKind::JetStreamUnavailable => BusErrorKind::JetStreamUnavailable,
            CreateStreamErrorKind::EmptyStreamName | CreateStreamErrorKind::InvalidStreamName => {
                BusErrorKind::Config
            }
            _ => BusErrorKind::Other,
        }
    }

    pub(crate) fn from_consumer(e: &ConsumerError) -> Self {
        match e.kind() {
            ConsumerErrorKind::TimedOut => BusErrorKind::TimedOut,
            ConsumerErrorKind::InvalidName | ConsumerErrorKind::InvalidConsumerType => {
                BusErrorKind::Config
            }
            ConsumerErrorKind::JetStream(js)
                if js.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                BusErrorKind::StreamMissing
            }
            _ => BusErrorKind::Other,
        }
    }
}

/// Whether a client error may clear by itself (a restart, a timeout), so trying again is right.
pub(crate) trait Passing {
    fn is_passing(&self) -> bool;
}

impl Passing for PublishError {
    fn is_passing(&self) -> bool {
        !matches!(
            self.kind(),
            PublishErrorKind::MaxPayloadExceeded
                | PublishErrorKind::WrongLastMessageId
                | PublishErrorKind::WrongLastSequence
        )
    }
}

impl Passing for async_nats::jetstream::object_store::PutError {
    fn is_passing(&self) -> bool {
        use async_nats::jetstream::object_store::PutErrorKind;
        matches!(
            self.kind(),
            PutErrorKind::TimedOut | PutErrorKind::PublishChunks | PutErrorKind::PublishMetadata
        )
    }
}

impl Passing for CreateStreamError {
    fn is_passing(&self) -> bool {
        matches!(
            self.kind(),
            CreateStreamErrorKind::TimedOut
                | CreateStreamErrorKind::JetStreamUnavailable
                | CreateStreamErrorKind::Response
        )
    }
}

impl Passing for ConsumerError {
    fn is_passing(&self) -> bool {
        matches!(
            self.kind(),
            ConsumerErrorKind::TimedOut | ConsumerErrorKind::Request
        )
    }
}
