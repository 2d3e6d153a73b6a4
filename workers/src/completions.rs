//! Completions on their way to the bus, several jobs' in one stored message where they
//! come together.
//!
//! Every finished job hands its completion here and waits until it is stored; only then is
//! the job acknowledged (by the job's own task), so a crash at any point leaves each job
//! either acknowledged with its completion stored, or unacknowledged and delivered again.
//! One publish is in flight at a time. Completions that arrive while it is in flight go out
//! together in the next message, as an [`EventBatch`]: the window is the time the bus takes
//! to store the last one, so it closes at once when nothing else is waiting, and a serial
//! chain's completion goes out alone, as one event, as before.

use baton_bus::{Bus, Outgoing};
use baton_schemas::wire::{BatchedEvent, EVENT_BATCH_SCHEMA_VERSION, Event, EventEnvelope};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::failpoint;

/// The most completions one message holds (a batch is also cut by the bus's message size).
const MOST_PER_BATCH: usize = 1024;

/// What a batch leaves of the bus's largest message for its headers and its own fields.
const SLACK: usize = 4096;

/// How many completions may wait for the publisher: each job task waits for its own.
const QUEUE: usize = 4096;

/// A completion stored, or why it could not be.
pub type Stored = Result<(), String>;

struct Completion {
    event: Event,
    /// The trace context of the execution that ended (when traces are on).
    traceparent: Option<String>,
    stored: oneshot::Sender<Stored>,
}

impl Completion {
    /// The completion as an event of a batch, in JSON: made once, it gives both the size
    /// the cut counts and the bytes the batch is made of.
    fn batched_json(&self) -> Vec<u8> {
        let batched = BatchedEvent {
            envelope: EventEnvelope::new(self.event.clone()),
            traceparent: self.traceparent.clone(),
        };
        serde_json::to_vec(&batched).expect("an event always serializes")
    }
}

/// The worker's way to the bus for completions. Cheap to clone; the publisher stops when
/// every clone is gone.
#[derive(Clone)]
pub struct Completions {
    queue: mpsc::Sender<Completion>,
}

impl Completions {
    /// Starts the publisher. `instance` names this worker process on the bus: batches are
    /// `<instance>.<n>`, so that a re-sent batch is stored once.
    pub fn start(bus: Bus, instance: String) -> Completions {
        let (queue, incoming) = mpsc::channel(QUEUE);
        tokio::spawn(publish(bus, instance, incoming));
        Completions { queue }
    }

    /// Hands over a completion and waits until it is stored.
    pub async fn store(&self, event: Event, traceparent: Option<String>) -> Stored {
        let (stored, done) = oneshot::channel();
        let completion = Completion {
            event,
            traceparent,
            stored,
        };
        if self.queue.send(completion).await.is_err() {
            return Err("the completion publisher has stopped".to_owned());
        }
        done.await
            .unwrap_or_else(|_| Err("the completion publisher has stopped".to_owned()))
    }
}

async fn publish(bus: Bus, instance: String, mut incoming: mpsc::Receiver<Completion>) {
    let mut sent = 0u64;
    let mut waiting = Vec::new();
    while let Some(first) = incoming.recv().await {
        waiting.push(first);
        while waiting.len() < MOST_PER_BATCH {
            match incoming.try_recv() {
                Ok(next) => waiting.push(next),
                Err(_) => break,
            }
        }
        let most = bus.max_message_size();
        for batch in cut(&mut waiting, most.saturating_sub(SLACK).max(1)) {
            // Crash tests slow the store down here, so that completions queue behind it.
            failpoint::sleep_if("completions-slow-store", Duration::from_millis(500)).await;
            let message = match &batch[..] {
                [(one, _)] => single(&bus, one),
                many => {
                    sent += 1;
                    batched(&bus, many, format!("{instance}.{sent}"))
                }
            };
            // The cut leaves the headers a fixed room; a batch above the limit all the same
            // goes as single events instead.
            if batch.len() > 1 && message.size() > most {
                warn!(
                    completions = batch.len(),
                    size = message.size(),
                    "a batch above the bus's largest message; storing its completions one by one"
                );
                for (completion, _) in batch {
                    let result = bus
                        .publish_one(&single(&bus, &completion))
                        .await
                        .map_err(|e| e.to_string());
                    let _ = completion.stored.send(result);
                }
                continue;
            }
            let result = bus.publish_one(&message).await.map_err(|e| e.to_string());
            if result.is_ok() && batch.len() > 1 {
                debug!(completions = batch.len(), id = %message.msg_id, "completions stored in one message");
                // Stored, none acknowledged yet: the crash tests stop here.
                failpoint::hang_if("completions-after-batch-stored").await;
            }
            if let Err(e) = &result {
                warn!(completions = batch.len(), error = %e, "completions not stored");
            }
            for (completion, _) in batch {
                let _ = completion.stored.send(result.clone());
            }
        }
    }
}

/// Splits what waits into messages the bus takes: at most [`MOST_PER_BATCH`] each, their
/// events' JSON within `room` bytes (the bus's largest message less room for the headers).
/// An event larger than that goes alone, as a single event always could.
fn cut(waiting: &mut Vec<Completion>, room: usize) -> Vec<Vec<(Completion, Vec<u8>)>> {
    // One alone goes as a single event: no batch JSON to make (a chain's every node).
    if waiting.len() == 1 {
        return vec![waiting.drain(..).map(|c| (c, Vec::new())).collect()];
    }
    let mut batches = Vec::new();
    let mut batch: Vec<(Completion, Vec<u8>)> = Vec::new();
    let mut size = 0;
    for completion in waiting.drain(..) {
        let json = completion.batched_json();
        // Its JSON and a separator.
        let own = json.len() + 1;
        if !batch.is_empty() && (size + own > room || batch.len() == MOST_PER_BATCH) {
            batches.push(std::mem::take(&mut batch));
            size = 0;
        }
        size += own;
        batch.push((completion, json));
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

/// One completion alone: the single event every earlier build wrote, with its run, node and
/// attempt in its headers and its id `<run>.<node>.<attempt>.done`.
fn single(bus: &Bus, completion: &Completion) -> Outgoing {
    let mut message = bus.event_message(&EventEnvelope::new(completion.event.clone()));
    if let Some(parent) = &completion.traceparent {
        message.headers.retain(|(name, _)| name != "traceparent");
        message
            .headers
            .push(("traceparent".to_owned(), parent.clone()));
    }
    message
}

fn batched(bus: &Bus, completions: &[(Completion, Vec<u8>)], id: String) -> Outgoing {
    bus.event_batch_message(batched_body(completions), id)
}

/// An `EventBatch`'s JSON, from its events' JSON.
fn batched_body(completions: &[(Completion, Vec<u8>)]) -> Vec<u8> {
    let head = format!(r#"{{"v":{EVENT_BATCH_SCHEMA_VERSION},"events":["#);
    let events: usize = completions.iter().map(|(_, json)| json.len() + 1).sum();
    let mut body = Vec::with_capacity(head.len() + events + 2);
    body.extend_from_slice(head.as_bytes());
    for (i, (_, json)) in completions.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(json);
    }
    body.extend_from_slice(b"]}");
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_schemas::wire::{EventBatch, Outcome, Timestamp};
    use baton_schemas::{Attempt, NodeName, RunId};

    fn completion(node: &str, output: usize) -> Completion {
        Completion {
            event: Event::NodeFinished {
                run: RunId::new("r1"),
                node: NodeName::new(node),
                attempt: Attempt(1),
                started_at: Timestamp(1),
                finished_at: Timestamp(2),
                outcome: Outcome::Succeeded {
                    output: "x".repeat(output),
                },
            },
            traceparent: None,
            stored: oneshot::channel().0,
        }
    }

    fn sizes(batches: &[Vec<(Completion, Vec<u8>)>]) -> Vec<usize> {
        batches.iter().map(Vec::len).collect()
    }

    #[test]
    fn a_batch_stays_under_the_bus_limit_and_the_count_limit_and_keeps_the_order() {
        // Each event is a little over 1,100 bytes as JSON: three fit in 4,000.
        let mut waiting: Vec<_> = (0..7).map(|i| completion(&format!("n{i}"), 1000)).collect();
        let batches = cut(&mut waiting, 4000);
        assert_eq!(sizes(&batches), [3, 3, 1]);
        let order: Vec<String> = batches
            .iter()
            .flatten()
            .map(|(c, _)| c.event.node().to_string())
            .collect();
        assert_eq!(order, ["n0", "n1", "n2", "n3", "n4", "n5", "n6"]);
        assert!(waiting.is_empty());
        let mut many: Vec<_> = (0..MOST_PER_BATCH + 5)
            .map(|i| completion(&format!("n{i}"), 0))
            .collect();
        assert_eq!(sizes(&cut(&mut many, usize::MAX)), [MOST_PER_BATCH, 5]);
        // An event above the room goes alone rather than not at all.
        let mut large = vec![completion("big", 5000), completion("small", 0)];
        assert_eq!(sizes(&cut(&mut large, 4000)), [1, 1]);
    }

    #[test]
    fn a_batch_is_read_back_as_its_events_each_with_its_trace_context() {
        let mut events = vec![completion("a", 1), completion("b", 2)];
        events[1].traceparent = Some("00-abc-def-01".to_owned());
        let jsons: Vec<Vec<u8>> = events.iter().map(Completion::batched_json).collect();
        let pairs: Vec<(Completion, Vec<u8>)> = events.into_iter().zip(jsons).collect();
        let text = String::from_utf8(batched_body(&pairs)).unwrap();
        assert!(
            text.starts_with(r#"{"v":1,"events":[{"v":2,"type":"nodeFinished","#),
            "{text}"
        );
        let back: EventBatch = serde_json::from_str(&text).unwrap();
        assert_eq!(back.events.len(), 2);
        assert_eq!(back.events[0].envelope.event, pairs[0].0.event);
        assert_eq!(back.events[1].traceparent.as_deref(), Some("00-abc-def-01"));
        // What the cut counts is the body but for the batch's own fields.
        let counted: usize = pairs.iter().map(|(_, json)| json.len() + 1).sum();
        assert_eq!(counted - 1, text.len() - r#"{"v":1,"events":[]}"#.len());
    }
}
