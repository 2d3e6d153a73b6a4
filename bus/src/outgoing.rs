//! Messages on their way out: subject, `Nats-Msg-Id`, body and headers.

use async_nats::jetstream::message::PublishMessage;
use baton_schemas::wire::{
    BATCH_SUBJECT_TOKEN, EVENT_BATCH_SCHEMA_VERSION, EventEnvelope, Job, SCHEMA_VERSION, headers,
};
use bytes::Bytes;

use crate::Bus;

/// A message ready to publish. Cheap to clone and to send again: a re-send carries the same
/// `Nats-Msg-Id`, so the server stores it once.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outgoing {
    /// Where it goes.
    pub subject: String,
    /// Its `Nats-Msg-Id`.
    pub msg_id: String,
    /// Its body.
    pub payload: Bytes,
    /// Headers besides `Nats-Msg-Id`.
    pub headers: Vec<(String, String)>,
}

impl Outgoing {
    /// Returns the value of header `name`, if the message has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Returns the message's size as the server counts it against its largest message
    /// (`max_payload`): the body and the header block, `Nats-Msg-Id` included, and the
    /// longest `Baton-Epoch` a publishing planner adds.
    pub fn size(&self) -> usize {
        const HEADER_LINE: usize = "NATS/1.0\r\n".len() + "\r\n".len();
        const EPOCH: usize = headers::EPOCH.len() + ": \r\n".len() + "18446744073709551615".len();
        let id = "Nats-Msg-Id: \r\n".len() + self.msg_id.len();
        let others: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len() + ": \r\n".len())
            .sum();
        self.payload.len() + HEADER_LINE + EPOCH + id + others
    }

    pub(crate) fn to_publish(&self) -> PublishMessage {
        let mut publish = PublishMessage::build()
            .payload(self.payload.clone())
            .message_id(&self.msg_id);
        for (name, value) in &self.headers {
            publish = publish.header(name.as_str(), value.as_str());
        }
        publish
    }
}

impl Bus {
    /// Returns the message for a job, on `<p>.jobs.<kind>` with id `<run>.<node>.<attempt>`.
    pub fn job_message(&self, job: &Job) -> Outgoing {
        let payload = serde_json::to_vec(job).expect("a job always serializes");
        let subject = self.job_subject(job.kind());
        let msg_id = job.msg_id();
        let headers = vec![
            (headers::SCHEMA.to_owned(), SCHEMA_VERSION.to_string()),
            (headers::RUN.to_owned(), job.run.to_string()),
            (headers::NODE.to_owned(), job.node.to_string()),
            (headers::ATTEMPT.to_owned(), job.attempt.to_string()),
            (
                headers::TRACEPARENT.to_owned(),
                traceparent(&job.run, &msg_id),
            ),
        ];
        self.signed_job(subject, msg_id, payload, headers)
    }

    /// Returns a message of jobs (one or a batch), signed under this bus's key when it has
    /// one: the signature covers its subject, id and body.
    pub(crate) fn signed_job(
        &self,
        subject: String,
        msg_id: String,
        payload: Vec<u8>,
        mut headers: Vec<(String, String)>,
    ) -> Outgoing {
        if let Some(signer) = self.signer() {
            headers.push((
                crate::SIGNATURE_HEADER.to_owned(),
                signer.sign(&subject, &msg_id, &payload),
            ));
        }
        Outgoing {
            subject,
            msg_id,
            payload: payload.into(),
            headers,
        }
    }

    /// Returns the message for a batch of events (an `EventBatch`'s JSON), on
    /// `<p>.events._batch` with id `id`: one
    /// the sender makes unique (its instance and a sequence) and keeps for every re-send.
    pub fn event_batch_message(&self, batch: Vec<u8>, id: String) -> Outgoing {
        Outgoing {
            subject: format!("{}.events.{BATCH_SUBJECT_TOKEN}", self.config().prefix),
            msg_id: id,
            payload: batch.into(),
            headers: vec![(
                headers::SCHEMA.to_owned(),
                EVENT_BATCH_SCHEMA_VERSION.to_string(),
            )],
        }
    }

    /// Returns the message for an event, on `<p>.events.<run>`, with headers naming its run,
    /// node and attempt.
    pub fn event_message(&self, event: &EventEnvelope) -> Outgoing {
        let payload = serde_json::to_vec(event).expect("an event always serializes");
        Outgoing {
            subject: self.event_subject(event.event.run()),
            msg_id: event.event.msg_id(),
            payload: payload.into(),
            headers: vec![
                (headers::SCHEMA.to_owned(), event.v.to_string()),
                (headers::RUN.to_owned(), event.event.run().to_string()),
                // The node and attempt let a reader that cannot decode the body still say
                // whose attempt it was (a poison event is reported as that attempt's failure).
                (headers::NODE.to_owned(), event.event.node().to_string()),
                (
                    headers::ATTEMPT.to_owned(),
                    event.event.attempt().to_string(),
                ),
                (
                    headers::TRACEPARENT.to_owned(),
                    traceparent(event.event.run(), &event.event.msg_id()),
                ),
            ],
        }
    }

    /// Returns an ignitor's fire, on `<p>.triggers.ignitors.<ignitor>` with id
    /// `ignitor.<ignitor>.<scheduled-unix-ms>`.
    pub fn fire_message(&self, fire: &baton_schemas::wire::Fire) -> Outgoing {
        let payload = serde_json::to_vec(fire).expect("a fire always serializes");
        Outgoing {
            subject: self.fire_subject(&fire.ignitor),
            msg_id: fire.msg_id(),
            payload: payload.into(),
            headers: vec![(headers::SCHEMA.to_owned(), SCHEMA_VERSION.to_string())],
        }
    }

    /// Returns the cancel notice of a run (of one node of it, with `node`), on
    /// `<p>.cancels.<run>[.<node>]` with id `cancel.<run>[.<node>]`: a run or node cancelled
    /// stays cancelled, so one notice each is all there ever is.
    pub fn cancel_message(
        &self,
        run: &baton_schemas::RunId,
        node: Option<&baton_schemas::NodeName>,
    ) -> Outgoing {
        let mut headers = vec![
            (headers::SCHEMA.to_owned(), SCHEMA_VERSION.to_string()),
            (headers::RUN.to_owned(), run.to_string()),
        ];
        let msg_id = match node {
            Some(node) => {
                headers.push((headers::NODE.to_owned(), node.to_string()));
                format!("cancel.{run}.{node}")
            }
            None => format!("cancel.{run}"),
        };
        Outgoing {
            subject: self.cancel_subject(run, node),
            msg_id,
            payload: Bytes::new(),
            headers,
        }
    }

    /// Returns a trigger for `workflow` carrying `data`; `run` is the run id the sender chose,
    /// which is also the message id, so a re-sent trigger starts one run.
    pub fn trigger_message(
        &self,
        workflow: &str,
        data: Bytes,
        run: &baton_schemas::RunId,
    ) -> Outgoing {
        Outgoing {
            subject: self.trigger_subject(workflow),
            msg_id: format!("trigger.{run}"),
            payload: data,
            headers: vec![(headers::RUN.to_owned(), run.to_string())],
        }
    }
}

/// Returns a W3C `traceparent` whose trace id is derived from the run and whose span id is
/// derived from the message: every message of one run shares a trace, with no state kept.
pub fn traceparent(run: &baton_schemas::RunId, msg_id: &str) -> String {
    use baton_schemas::ids::{FNV_OFFSET, fnv1a};
    let trace_hi = fnv1a(run.as_str().bytes(), FNV_OFFSET);
    let trace_lo = fnv1a(run.as_str().bytes(), 0x8422_2325_cbf2_9ce4);
    let span = fnv1a(msg_id.bytes(), FNV_OFFSET).max(1);
    format!("00-{trace_hi:016x}{trace_lo:016x}-{span:016x}-01")
}

/// Whether `message` carries only the `traceparent` every message of its run has by default
/// ([`traceparent`]): its parent span was never exported, so it names no cause.
pub fn has_default_traceparent(message: &crate::Inbound) -> bool {
    match (
        message.header(headers::TRACEPARENT),
        message.header(headers::RUN),
        message.header("Nats-Msg-Id"),
    ) {
        (Some(sent), Some(run), Some(id)) => {
            sent == traceparent(&baton_schemas::RunId::new(run), id)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_stable_per_run() {
        let run = baton_schemas::RunId::new("abc");
        let a = traceparent(&run, "abc.n.1");
        let b = traceparent(&run, "abc.n.1.done");
        assert_eq!(a.len(), 55);
        assert!(a.starts_with("00-") && a.ends_with("-01"));
        assert_eq!(a[3..35], b[3..35], "one trace per run");
        assert_ne!(a[36..52], b[36..52], "one span per message");
        assert_eq!(a, traceparent(&run, "abc.n.1"));
    }
}
