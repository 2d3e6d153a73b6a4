//! The `webhook` and `publish` executors: a task's typed actions, and nodes of their own.
//!
//! Both may run twice for one attempt: a job whose worker dies after the effect and before
//! its ack is delivered again. Each carries the attempt's key, `<run>.<node>.<attempt>`, so
//! that the receiver can tell a repeat: a webhook sends it as `Idempotency-Key` (with
//! `Baton-Run`, `Baton-Node` and `Baton-Attempt`); a publish sends it as `Nats-Msg-Id`
//! through JetStream when a stream captures the subject, so the stream stores the message once.

use std::time::Duration;

use async_nats::jetstream::context::{GetStreamByNameErrorKind, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use baton_bus::{Backoff, Bus};
use baton_schemas::OUTPUT_LIMIT_BYTES;
use baton_schemas::wire::{Job, Outcome, headers};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tracing::debug;

use crate::failpoint;

/// The header of a webhook request that names the attempt, the same on a redelivery.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// How long an action waits when its job sets no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends the job's HTTP request. A 2xx answer succeeds with the response body as output (cut
/// to the output limit); anything else fails with the status and the start of the body.
///
/// The request carries `Idempotency-Key: <run>.<node>.<attempt>` and the `Baton-Run`,
/// `Baton-Node` and `Baton-Attempt` headers; headers the action names itself win.
pub async fn webhook(http: &reqwest::Client, job: &Job) -> Outcome {
    let Some(hook) = job.webhook() else {
        return Outcome::failed("not a webhook job".to_owned());
    };
    let method = reqwest::Method::from_bytes(hook.method.as_deref().unwrap_or("POST").as_bytes())
        .unwrap_or(reqwest::Method::POST);
    let mut header_map = HeaderMap::new();
    let ours = [
        ("content-type", "application/json".to_owned()),
        (IDEMPOTENCY_KEY, job.msg_id()),
        (headers::RUN, job.run.to_string()),
        (headers::NODE, job.node.to_string()),
        (headers::ATTEMPT, job.attempt.to_string()),
    ];
    let theirs = hook.headers.iter().map(|(n, v)| (n.as_str(), v.clone()));
    for (name, value) in ours.into_iter().chain(theirs) {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            return Outcome::failed(format!("header {name}: not a valid HTTP header"));
        };
        header_map.insert(name, value);
    }
    let mut request = http
        .request(method, &hook.url)
        .timeout(job.timeout().unwrap_or(DEFAULT_TIMEOUT))
        .headers(header_map);
    if let Some(body) = &hook.body {
        request = request.body(body.clone());
    }
    match super::send_traced(http, request).await {
        Ok(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            let mut cut: String = body.chars().collect();
            if cut.len() > OUTPUT_LIMIT_BYTES {
                let mut end = OUTPUT_LIMIT_BYTES;
                while !cut.is_char_boundary(end) {
                    end -= 1;
                }
                cut.truncate(end);
            }
            if status.is_success() {
                Outcome::Succeeded { output: cut }
            } else {
                let head: String = body.chars().take(200).collect();
                Outcome::failed(format!("{} answered {status}: {head}", hook.url))
            }
        }
        Err(e) => Outcome::failed(format!("request to {} failed: {e}", hook.url)),
    }
}

/// Publishes the job's NATS message and waits until the server has it.
///
/// When a stream captures the subject (a trigger subject, say), the message goes through
/// JetStream with `Nats-Msg-Id: <run>.<node>.<attempt>` and waits for the stream's ack: a
/// redelivered job's second publish is dropped as a duplicate inside the stream's duplicate
/// window instead of starting a second run. When no stream does, the message is published on
/// core NATS with the same header and flushed (a JetStream publish there would reach core
/// subscribers and then wait for an ack that never comes): core subscribers get every
/// publish, and can tell a repeat by the header. Passing failures (a timeout, a reconnect) are
/// tried again with the same id until the job's timeout (30 s without one).
pub async fn publish(bus: &Bus, job: &Job) -> Outcome {
    let Some(message) = job.publish() else {
        return Outcome::failed("not a publish job".to_owned());
    };
    let subject = message.subject.clone();
    let payload = bytes::Bytes::from(message.data.clone().unwrap_or_default());
    let msg_id = job.msg_id();
    let mut backoff =
        Backoff::new(tokio::time::Instant::now() + job.timeout().unwrap_or(DEFAULT_TIMEOUT));
    let outcome = loop {
        match bus.jetstream().stream_by_subject(subject.clone()).await {
            Ok(_) => {}
            Err(e) if e.kind() == GetStreamByNameErrorKind::NotFound => {
                break publish_core(bus, &subject, payload, &msg_id).await;
            }
            Err(e) if e.kind() == GetStreamByNameErrorKind::InvalidSubject => {
                break Outcome::failed(format!("{subject:?} is not a subject to publish on"));
            }
            Err(e) => {
                debug!(%subject, error = %e, "looking up the stream failed");
                if backoff.wait().await {
                    continue;
                }
                break Outcome::failed(format!("finding the stream of {subject}: {e}"));
            }
        }
        let sent = bus
            .jetstream()
            .send_publish(
                subject.clone(),
                PublishMessage::build()
                    .payload(payload.clone())
                    .message_id(&msg_id),
            )
            .await;
        let acked = match sent {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match acked {
            Ok(ack) => {
                debug!(%subject, %msg_id, stream = %ack.stream, seq = ack.sequence, duplicate = ack.duplicate, "published to a stream");
                break Outcome::Succeeded {
                    output: String::new(),
                };
            }
            // Removed since the lookup: look again.
            Err(e) if e.kind() == PublishErrorKind::StreamNotFound => {}
            Err(e)
                if matches!(
                    e.kind(),
                    PublishErrorKind::TimedOut
                        | PublishErrorKind::BrokenPipe
                        | PublishErrorKind::MaxAckPending
                ) && backoff.wait().await =>
            {
                debug!(%subject, %msg_id, error = %e, "publish failed; trying again");
            }
            Err(e) => break Outcome::failed(format!("publishing to {subject}: {e}")),
        }
    };
    if matches!(outcome, Outcome::Succeeded { .. }) {
        failpoint::hang_if("publish-after-send").await;
    }
    outcome
}

/// Publishes on core NATS, with `Nats-Msg-Id`, for a subject no stream captures.
async fn publish_core(bus: &Bus, subject: &str, payload: bytes::Bytes, msg_id: &str) -> Outcome {
    let client = bus.client();
    let mut header_map = async_nats::HeaderMap::new();
    header_map.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
    let published = client
        .publish_with_headers(subject.to_owned(), header_map, payload)
        .await;
    match published {
        Ok(()) => match client.flush().await {
            Ok(()) => {
                debug!(%subject, %msg_id, "no stream captures the subject; published on core NATS");
                Outcome::Succeeded {
                    output: String::new(),
                }
            }
            Err(e) => Outcome::failed(format!("flushing {subject}: {e}")),
        },
        Err(e) => Outcome::failed(format!("publishing to {subject}: {e}")),
    }
}
