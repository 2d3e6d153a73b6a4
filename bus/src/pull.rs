//! A consumer's messages, pulled continuously and read where they are used.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, pull};
use futures::StreamExt;
use tracing::{debug, warn};

use crate::Inbound;

/// How long the server may stay silent on an open pull before the client takes it as lost.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long one pull request lives on the server before it is made anew: what a pull lost
/// without a word costs at most.
const EXPIRES: Duration = Duration::from_secs(5);

type Opening = Pin<Box<dyn Future<Output = Result<pull::Stream, consumer::StreamError>> + Send>>;

/// Where a [`PullStream`] is.
enum State {
    /// No pull is open; the next read opens one.
    Closed,
    /// A pull is being opened.
    Opening(Opening),
    /// Messages come as the server sends them; the client keeps a pull request open, renews
    /// it as it is used up, and again after a reconnect.
    Open(Box<pull::Stream>),
    /// Opening failed or the pull ended: wait, then open again.
    Waiting(Pin<Box<tokio::time::Sleep>>),
}

/// The messages of a pull consumer, read inline by whoever handles them: no task or channel
/// stands between the connection and the reader.
///
/// [`PullStream::next`] is cancel-safe: a read dropped in a `select!` loses no message, and a
/// pull being opened goes on being opened by the next read.
pub struct PullStream {
    consumer: consumer::PullConsumer,
    batch: usize,
    state: State,
    failures: u32,
}

impl PullStream {
    /// Returns the messages of `consumer`, asking for up to `batch` at a time.
    pub fn new(consumer: consumer::PullConsumer, batch: usize) -> PullStream {
        PullStream {
            consumer,
            batch: batch.max(1),
            state: State::Closed,
            failures: 0,
        }
    }

    /// Returns the next message, waiting as long as it takes. Failures (a server restart, a
    /// lost pull) are logged and outlived.
    pub async fn next(&mut self) -> Inbound {
        loop {
            let next = match &mut self.state {
                State::Closed => {
                    let consumer = self.consumer.clone();
                    let batch = self.batch;
                    State::Opening(Box::pin(async move {
                        consumer
                            .stream()
                            .max_messages_per_batch(batch)
                            .heartbeat(HEARTBEAT)
                            .expires(EXPIRES)
                            .messages()
                            .await
                    }))
                }
                State::Opening(opening) => match opening.await {
                    Ok(stream) => State::Open(Box::new(stream)),
                    Err(e) => {
                        self.failures += 1;
                        warn!(error = %e, failures = self.failures, "pull not opened; trying again");
                        waiting(self.failures)
                    }
                },
                State::Open(stream) => match stream.next().await {
                    Some(Ok(message)) => {
                        self.failures = 0;
                        return Inbound::new(message);
                    }
                    // A pull that failed or went silent (a server restart) is opened anew
                    // rather than waited for: the old one is gone with the server.
                    Some(Err(e)) => {
                        self.failures += 1;
                        warn!(error = %e, failures = self.failures, "pull failed; opening it again");
                        waiting(self.failures)
                    }
                    None => {
                        self.failures += 1;
                        debug!("pull ended; opening it again");
                        waiting(self.failures)
                    }
                },
                State::Waiting(sleep) => {
                    sleep.await;
                    State::Closed
                }
            };
            self.state = next;
        }
    }
}

/// Returns the state that waits before opening again, longer after each failure in a row.
fn waiting(failures: u32) -> State {
    State::Waiting(Box::pin(tokio::time::sleep(pull_retry_delay(failures))))
}

/// How long a consumer's reader waits before it pulls again after `failures` failed pulls in
/// a row: 200 ms more for each, at most 2 s (a server restarting is back within seconds, and
/// a reader must not hammer it meanwhile).
pub fn pull_retry_delay(failures: u32) -> Duration {
    Duration::from_millis(200 * u64::from(failures.min(10)))
}
