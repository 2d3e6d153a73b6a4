//! Messages coming in: typed decoding, and acks that say what the handler decided.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use baton_schemas::wire::{
    BATCH_SUBJECT_TOKEN, EVENT_BATCH_SCHEMA_VERSION, EVENT_SCHEMA_VERSION, Event, EventEnvelope,
    Job, RawEventBatch, SCHEMA_VERSION, headers,
};
use baton_schemas::{Attempt, NodeName, RunId};

use crate::{BusError, BusErrorKind};

/// A delivered JetStream message and the ways to settle it.
#[derive(Debug)]
pub struct Inbound {
    message: jetstream::Message,
}

impl Inbound {
    /// Wraps a delivered message.
    pub fn new(message: jetstream::Message) -> Self {
        Self { message }
    }

    /// Returns the subject it was published on.
    pub fn subject(&self) -> &str {
        self.message.subject.as_str()
    }

    /// Returns the body.
    pub fn payload(&self) -> &[u8] {
        &self.message.payload
    }

    /// Returns a header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.message.headers.as_ref()?.get(name).map(|v| v.as_str())
    }

    /// Returns the message's sequence in its stream.
    pub fn stream_sequence(&self) -> u64 {
        self.message.info().map(|i| i.stream_sequence).unwrap_or(0)
    }

    /// Returns when the server stored it (the server's clock).
    pub fn stored_at(&self) -> Option<std::time::SystemTime> {
        let nanos = self.message.info().ok()?.published.unix_timestamp_nanos();
        let nanos = u64::try_from(nanos).ok()?;
        Some(std::time::UNIX_EPOCH + Duration::from_nanos(nanos))
    }

    /// Returns how often the server has delivered it (1 on the first delivery).
    pub fn delivered(&self) -> i64 {
        self.message.info().map(|i| i.delivered).unwrap_or(1)
    }

    /// Acknowledges and waits for the server to confirm, so the message is not delivered
    /// again once this returns.
    pub async fn ack(&self) -> Result<(), BusError> {
        self.message.double_ack().await.map_err(|e| {
            BusError::new(
                BusErrorKind::TimedOut,
                format!("ack {}: {e}", self.subject()),
            )
        })
    }

    /// Acknowledges without waiting for the server. A lost ack means one more delivery, which
    /// the receiver must handle as a duplicate.
    pub async fn ack_fast(&self) -> Result<(), BusError> {
        self.message.ack().await.map_err(|e| {
            BusError::new(
                BusErrorKind::Disconnected,
                format!("ack {}: {e}", self.subject()),
            )
        })
    }

    /// Hands the message back to be delivered again after `delay` (at once when `None`), and
    /// waits for the server to confirm.
    pub async fn nak(&self, delay: Option<Duration>) -> Result<(), BusError> {
        self.settle_confirmed(AckKind::Nak(delay)).await
    }

    /// Tells the server the handler is still working, restarting the ack wait.
    pub async fn progress(&self) -> Result<(), BusError> {
        self.settle(AckKind::Progress).await
    }

    /// Stops all further deliveries of a message that can never be handled, and waits for
    /// the server to confirm.
    pub async fn term(&self) -> Result<(), BusError> {
        self.settle_confirmed(AckKind::Term).await
    }

    async fn settle_confirmed(&self, kind: AckKind) -> Result<(), BusError> {
        self.message.double_ack_with(kind).await.map_err(|e| {
            BusError::new(
                BusErrorKind::TimedOut,
                format!("settle {}: {e}", self.subject()),
            )
        })
    }

    async fn settle(&self, kind: AckKind) -> Result<(), BusError> {
        self.message.ack_with(kind).await.map_err(|e| {
            BusError::new(
                BusErrorKind::Disconnected,
                format!("settle {}: {e}", self.subject()),
            )
        })
    }
}

/// A message that can never be handled, with what is known of where it belongs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("poison message on {subject}: {reason}")]
pub struct Poison {
    /// The subject it came on.
    pub subject: String,
    /// Why it cannot be handled.
    pub reason: String,
    /// The run it names in its headers, if any.
    pub run: Option<RunId>,
    /// The node it names in its headers, if any.
    pub node: Option<NodeName>,
    /// The attempt it names in its headers, if any.
    pub attempt: Option<Attempt>,
}

pub(crate) fn poison(message: &Inbound, reason: String) -> Poison {
    let run = message
        .header(headers::RUN)
        .filter(|r| RunId::is_valid(r))
        .map(RunId::new);
    let node = message
        .header(headers::NODE)
        .filter(|n| baton_schemas::ids::is_dns_label(n))
        .map(NodeName::new);
    let attempt = message
        .header(headers::ATTEMPT)
        .and_then(|a| a.parse().ok())
        .map(Attempt);
    Poison {
        subject: message.subject().to_owned(),
        reason,
        run,
        node,
        attempt,
    }
}

pub(crate) fn check_version(message: &Inbound, v: u32, known: u32) -> Result<(), Poison> {
    if (1..=known).contains(&v) {
        Ok(())
    } else {
        Err(poison(
            message,
            format!("schema version {v} is not known to this build (it reads 1 to {known})"),
        ))
    }
}

impl crate::Bus {
    /// Checks that a job comes from the planner: signed under this bus's key, when it has
    /// one. A job that fails is poison that names no node (what it says of its run and node is
    /// not to be believed, so it cannot fail someone else's node either).
    pub fn check_job_signature(&self, message: &Inbound) -> Result<(), Poison> {
        let Some(signer) = self.signer() else {
            return Ok(());
        };
        signer
            .verify(
                message.subject(),
                message
                    .header(async_nats::header::NATS_MESSAGE_ID.as_ref())
                    .unwrap_or_default(),
                message.payload(),
                message.header(crate::SIGNATURE_HEADER),
            )
            .map_err(|e| Poison {
                subject: message.subject().to_owned(),
                reason: e.to_string(),
                run: None,
                node: None,
                attempt: None,
            })
    }
}

/// Decodes a job, or says why it is poison.
pub fn decode_job(message: &Inbound) -> Result<Job, Poison> {
    let job: Job = serde_json::from_slice(message.payload())
        .map_err(|e| poison(message, format!("undecodable job: {e}")))?;
    check_version(message, job.v, SCHEMA_VERSION)?;
    check_job_names(&job).map_err(|reason| poison(message, reason))?;
    Ok(job)
}

/// Checks that a job names its run and node the way the planner does: anything else was not
/// its job, and its names would reach pod names, labels and files.
pub(crate) fn check_job_names(job: &Job) -> Result<(), String> {
    if RunId::is_valid(job.run.as_str()) && baton_schemas::ids::is_dns_label(job.node.as_str()) {
        return Ok(());
    }
    Err(format!(
        "a job naming run {:?} and node {:?}, which are not Baton's names",
        job.run.as_str(),
        job.node.as_str()
    ))
}

/// One event of a message, with the trace context of the execution it ends when the event
/// carries it apart from the message's headers (an event of a batch); or why it cannot be
/// taken, naming its attempt when it can.
pub type DecodedEvent = Result<(Event, Option<String>), Poison>;

/// Decodes a message of events: a single event on `<p>.events.<run>`, or a worker's batch on
/// `<p>.events._batch`. A batch that cannot be read at all is poison; an event of a batch
/// that cannot be read is set aside alone, and the others are taken.
pub fn decode_events(message: &Inbound) -> Result<Vec<DecodedEvent>, Poison> {
    let is_batch = message
        .subject()
        .rsplit('.')
        .next()
        .is_some_and(|token| token == BATCH_SUBJECT_TOKEN);
    if !is_batch {
        return decode_event(message).map(|envelope| vec![Ok((envelope.event, None))]);
    }
    let batch: RawEventBatch = serde_json::from_slice(message.payload())
        .map_err(|e| poison(message, format!("undecodable event batch: {e}")))?;
    check_version(message, batch.v, EVENT_BATCH_SCHEMA_VERSION)?;
    Ok(batch
        .events
        .into_iter()
        .map(|raw| batched_event(message.subject(), raw.get()))
        .collect())
}

/// Decodes one event of a batch, as [`decode_event`] decodes a single one.
fn batched_event(subject: &str, text: &str) -> DecodedEvent {
    /// What names the attempt, read on its own so that an event that is otherwise
    /// unreadable can still be reported as that attempt's failure.
    #[derive(Default, serde::Deserialize)]
    struct Head {
        v: Option<u32>,
        run: Option<String>,
        node: Option<String>,
        attempt: Option<u32>,
        traceparent: Option<String>,
    }
    let head: Head = serde_json::from_str(text).unwrap_or_default();
    let set_aside = |reason: String| Poison {
        subject: subject.to_owned(),
        reason,
        run: head.run.as_deref().map(RunId::new),
        node: head.node.as_deref().map(NodeName::new),
        attempt: head.attempt.map(Attempt),
    };
    match head.v {
        Some(v) if (1..=EVENT_SCHEMA_VERSION).contains(&v) => {}
        Some(v) => {
            return Err(set_aside(format!(
                "schema version {v} is not known to this build (it reads 1 to {EVENT_SCHEMA_VERSION})"
            )));
        }
        None => {
            return Err(set_aside(
                "an event of a batch without a schema version".to_owned(),
            ));
        }
    }
    let envelope: EventEnvelope = serde_json::from_str(text)
        .map_err(|e| set_aside(format!("undecodable event in a batch: {e}")))?;
    Ok((envelope.upgrade().event, head.traceparent))
}

/// Decodes an event, or says why it is poison.
pub fn decode_event(message: &Inbound) -> Result<EventEnvelope, Poison> {
    #[derive(serde::Deserialize)]
    struct Version {
        v: u32,
    }
    let version: Version = serde_json::from_slice(message.payload())
        .map_err(|e| poison(message, format!("undecodable event: {e}")))?;
    check_version(message, version.v, EVENT_SCHEMA_VERSION)?;
    serde_json::from_slice::<EventEnvelope>(message.payload())
        .map(EventEnvelope::upgrade)
        .map_err(|e| poison(message, format!("undecodable event: {e}")))
}

/// Decodes an ignitor's fire, or says why it is poison.
pub fn decode_fire(message: &Inbound) -> Result<baton_schemas::wire::Fire, Poison> {
    let fire: baton_schemas::wire::Fire = serde_json::from_slice(message.payload())
        .map_err(|e| poison(message, format!("undecodable ignitor fire: {e}")))?;
    check_version(message, fire.v, SCHEMA_VERSION)?;
    Ok(fire)
}

/// Decodes a trigger on `<prefix>.triggers.<workflow>`: the workflow it names, the run id its
/// sender chose (if any) and its data (the body, as UTF-8).
///
/// A trigger subject has exactly one token after `triggers`, a workflow's name (a DNS label);
/// `triggers.cells.<cell>` and `triggers.ignitors.<ignitor>` carry Cell commands and fires
/// and are read apart. Any other nested subject (`triggers.a.b.good`) is refused, not read
/// as its last token: who may publish on which subject is a permission, and a subject that
/// names one workflow must start only that one.
pub fn decode_trigger(
    message: &Inbound,
    prefix: &str,
) -> Result<(String, Option<RunId>, String), Poison> {
    let workflow = message
        .subject()
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix(".triggers."))
        .filter(|name| baton_schemas::ids::is_dns_label(name))
        .ok_or_else(|| {
            poison(
                message,
                format!(
                    "trigger subject {:?} does not name one workflow: publish on {prefix}.triggers.<workflow>",
                    message.subject()
                ),
            )
        })?
        .to_owned();
    let data = String::from_utf8(message.payload().to_vec())
        .map_err(|_| poison(message, "trigger data is not UTF-8".to_owned()))?;
    let run = match message.header(headers::RUN) {
        None => None,
        Some(r) if RunId::is_valid(r) => Some(RunId::new(r)),
        Some(r) => {
            return Err(poison(
                message,
                format!("invalid run id {r:?} in {}", headers::RUN),
            ));
        }
    };
    Ok((workflow, run, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_of_a_batch_is_taken_or_set_aside_alone_naming_its_attempt() {
        let written = baton_schemas::wire::BatchedEvent {
            envelope: EventEnvelope::new(Event::NodeFinished {
                run: RunId::new("r1"),
                node: NodeName::new("a"),
                attempt: Attempt(1),
                started_at: baton_schemas::wire::Timestamp(1),
                finished_at: baton_schemas::wire::Timestamp(2),
                outcome: baton_schemas::wire::Outcome::Succeeded {
                    output: "x".to_owned(),
                },
            }),
            traceparent: Some("00-abc-def-01".to_owned()),
        };
        let good = serde_json::to_string(&written).unwrap();
        let (event, traceparent) = batched_event("baton.events._batch", &good).unwrap();
        assert_eq!(event, written.envelope.event);
        assert_eq!((event.run().as_str(), event.node().as_str()), ("r1", "a"));
        assert_eq!(traceparent.as_deref(), Some("00-abc-def-01"));
        // A later version, and an unknown event type: set aside, naming the attempt.
        for bad in [
            r#"{"v":9,"type":"nodeFinished","run":"r1","node":"b","attempt":2}"#,
            r#"{"v":2,"type":"nodeExploded","run":"r1","node":"b","attempt":2}"#,
        ] {
            let poison = batched_event("baton.events._batch", bad).unwrap_err();
            assert_eq!(
                (poison.run.unwrap().as_str(), poison.node.unwrap().as_str()),
                ("r1", "b")
            );
            assert_eq!(poison.attempt, Some(Attempt(2)));
        }
        // Nothing to name: set aside all the same.
        let poison = batched_event("baton.events._batch", "[1, 2]").unwrap_err();
        assert!(poison.run.is_none() && poison.reason.contains("without a schema version"));
    }
}
