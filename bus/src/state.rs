//! The planner's state on the bus: every commit of its store, as the write set the store
//! applies, appended to the `<P>_STATE` stream before the store applies it. Another planner
//! (or this one after its disk is lost) reads the stream and applies the same commits to its
//! own store, so the stream, replicated like the others, is the state's source of truth and
//! the store a local copy.
//!
//! A commit larger than a message travels in parts (`Baton-State-Part: <i>/<n>`), each
//! published expecting the stream's last sequence to be the one its writer saw last: a
//! second writer's part in between fails the write ([`BusErrorKind::Fenced`]) instead of
//! interleaving two planners' commits. A commit whose writer died before its last part is
//! ignored by readers: its writer never applied it either.

use async_nats::jetstream::{consumer, context::PublishErrorKind, stream};
use bytes::Bytes;
use futures::StreamExt as _;

use crate::{Bus, BusError, BusErrorKind};

/// The header that numbers a commit's parts: `<i>/<n>`, from 1.
pub const STATE_PART_HEADER: &str = "Baton-State-Part";

/// The largest part of a commit: far below the usual 1 MiB limit of a message.
const PART_BYTES: usize = 512 * 1024;

/// Where the state stream stands: its first and last sequences (both 0 when it is empty).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateTail {
    /// The first sequence it still holds.
    pub first: u64,
    /// The last sequence written.
    pub last: u64,
}

/// A whole commit read back from the stream.
#[derive(Debug)]
pub struct StateCommit {
    /// The sequence of its last part: the stream position the store is at once it is applied.
    pub seq: u64,
    /// The commit as its writer gave it.
    pub bytes: Vec<u8>,
}

/// Reads commits in stream order up to a sequence fixed when it was made.
pub struct StateReader {
    messages: Option<consumer::pull::Ordered>,
    until: u64,
    partial: Vec<u8>,
    /// The part the commit being read needs next (0: none begun).
    next_part: u32,
}

impl Bus {
    /// Returns the state stream's configuration: its commits are kept until a snapshot makes
    /// them unneeded, whatever the bus's retention.
    fn state_stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream_name("STATE"),
            subjects: vec![format!("{}.state", self.config.prefix)],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            num_replicas: self.config.replicas,
            duplicate_window: self.config.duplicate_window,
            ..Default::default()
        }
    }

    /// Creates the state stream, or updates it when it is configured otherwise: the planner's
    /// alone (workers neither read nor may see it).
    pub async fn ensure_state_stream(&self) -> Result<(), BusError> {
        self.ensure_stream(self.state_stream_config()).await
    }

    /// Returns where the state stream stands.
    pub async fn state_tail(&self) -> Result<StateTail, BusError> {
        let name = self.stream_name("STATE");
        let mut stream = self.stream("STATE").await?;
        let info = stream.info().await.map_err(|e| {
            BusError::with_source(BusErrorKind::TimedOut, format!("{name} info"), e)
        })?;
        Ok(StateTail {
            first: info.state.first_sequence,
            last: info.state.last_sequence,
        })
    }

    /// Appends one commit after stream sequence `after` (the last one this writer saw), in
    /// parts as needed; `writer` names this process for the life of its writes, so that a
    /// retried part is dropped as a duplicate and never taken for another writer's. Returns
    /// the sequence of the commit's last part. Fails with [`BusErrorKind::Fenced`] when the
    /// stream has moved past `after`.
    pub async fn append_state(
        &self,
        after: u64,
        commit: &[u8],
        writer: &str,
    ) -> Result<u64, BusError> {
        let part_bytes = PART_BYTES.min(self.max_message_size().saturating_sub(4096).max(1));
        let parts: Vec<&[u8]> = match commit.is_empty() {
            true => vec![commit],
            false => commit.chunks(part_bytes).collect(),
        };
        let subject = format!("{}.state", self.config.prefix);
        let mut last = after;
        for (i, part) in parts.iter().enumerate() {
            let payload = Bytes::copy_from_slice(part);
            let header = format!("{}/{}", i + 1, parts.len());
            let id = format!("state.{writer}.{last}");
            let ack = self
                .with_retry("append state", || async {
                    let message = self.stamped(
                        async_nats::jetstream::message::PublishMessage::build()
                            .payload(payload.clone())
                            .header(STATE_PART_HEADER, header.as_str())
                            .message_id(&id)
                            .expected_last_sequence(last),
                    );
                    self.js.send_publish(subject.clone(), message).await?.await
                })
                .await
                .map_err(|e| {
                    let kind = match e.kind() {
                        PublishErrorKind::WrongLastSequence => BusErrorKind::Fenced,
                        _ => BusErrorKind::from_publish(&e),
                    };
                    BusError::with_source(kind, format!("append state after {last}"), e)
                })?;
            last = ack.sequence;
        }
        Ok(last)
    }

    /// Removes every message of the state stream before sequence `keep_from` (the first part
    /// of a commit that holds the whole state): they are no longer needed to rebuild it.
    pub async fn purge_state_before(&self, keep_from: u64) -> Result<u64, BusError> {
        let name = self.stream_name("STATE");
        self.stream("STATE")
            .await?
            .purge()
            .sequence(keep_from)
            .await
            .map(|purged| purged.purged)
            .map_err(|e| BusError::with_source(BusErrorKind::TimedOut, format!("purge {name}"), e))
    }

    /// Returns a reader of the commits after sequence `after` up to sequence `until` (the
    /// stream's last when the caller looked).
    pub async fn read_state(&self, after: u64, until: u64) -> Result<StateReader, BusError> {
        if until <= after {
            return Ok(StateReader::done(until));
        }
        let (_, messages) = self
            .ordered(
                "STATE",
                consumer::pull::OrderedConfig {
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: after + 1,
                    },
                    ..Default::default()
                },
            )
            .await?;
        Ok(StateReader {
            messages: Some(messages),
            until,
            partial: Vec::new(),
            next_part: 0,
        })
    }
}

impl StateReader {
    fn done(until: u64) -> StateReader {
        StateReader {
            messages: None,
            until,
            partial: Vec::new(),
            next_part: 0,
        }
    }

    /// Returns the next whole commit, or `None` past the reader's last sequence.
    pub async fn next(&mut self) -> Result<Option<StateCommit>, BusError> {
        loop {
            let Some(messages) = self.messages.as_mut() else {
                return Ok(None);
            };
            let message = match messages.next().await {
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    return Err(BusError::with_source(
                        BusErrorKind::Disconnected,
                        "reading the state stream",
                        e,
                    ));
                }
                None => {
                    return Err(BusError::new(
                        BusErrorKind::Disconnected,
                        "the state stream's reader ended",
                    ));
                }
            };
            let seq = message
                .info()
                .map_err(|e| {
                    BusError::new(BusErrorKind::Other, format!("a state message's info: {e}"))
                })?
                .stream_sequence;
            if seq >= self.until {
                self.messages = None;
            }
            let (part, parts) = message
                .headers
                .as_ref()
                .and_then(|h| h.get(STATE_PART_HEADER))
                .and_then(|v| parse_part(v.as_str()))
                .ok_or_else(|| {
                    BusError::new(
                        BusErrorKind::Other,
                        format!("state message {seq} has no valid {STATE_PART_HEADER} header"),
                    )
                })?;
            // A first part begins a commit, dropping one whose writer died before its end.
            if part == 1 {
                self.partial.clear();
                self.next_part = 1;
            }
            if part != self.next_part {
                // The rest of a commit whose beginning the reader never saw (it began before
                // `after`) or of one abandoned: skipped.
                self.next_part = 0;
                continue;
            }
            self.partial.extend_from_slice(&message.payload);
            if part == parts {
                self.next_part = 0;
                return Ok(Some(StateCommit {
                    seq,
                    bytes: std::mem::take(&mut self.partial),
                }));
            }
            self.next_part += 1;
        }
    }
}

/// Parses `<i>/<n>`, 1 ≤ i ≤ n.
fn parse_part(text: &str) -> Option<(u32, u32)> {
    let (i, n) = text.split_once('/')?;
    let (i, n) = (i.parse().ok()?, n.parse().ok()?);
    (1..=n).contains(&i).then_some((i, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_numbered_from_one() {
        assert_eq!(parse_part("1/1"), Some((1, 1)));
        assert_eq!(parse_part("2/3"), Some((2, 3)));
        assert_eq!(parse_part("0/3"), None);
        assert_eq!(parse_part("4/3"), None);
        assert_eq!(parse_part("x"), None);
    }
}
