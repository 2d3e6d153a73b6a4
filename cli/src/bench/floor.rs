//! The floor: raw JetStream publish-ack then consume-ack, serial and pipelined, on a
//! work-queue stream like Baton's jobs.
//!
//! On a cluster a request can find no responder for a moment (a stream just made and not yet
//! heard of on the server the bench talks to, a leader just moved): requests and publishes
//! are tried again then, for a bounded time, as Baton's own are.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;

/// How long a request or publish of the floor is tried again before the bench gives up.
const TRY_FOR: Duration = Duration::from_secs(30);

/// Runs `request` until it succeeds, for at most [`TRY_FOR`].
async fn retried<T, E, F>(what: &str, mut request: impl FnMut() -> F) -> anyhow::Result<T>
where
    F: Future<Output = Result<T, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let deadline = Instant::now() + TRY_FOR;
    loop {
        match request().await {
            Ok(done) => return Ok(done),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, what, "trying again");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e).context(what.to_owned()),
        }
    }
}

/// Publishes one message and waits until it is stored, sent again (same id) while the
/// server has no responder for it.
async fn publish_stored(
    js: &jetstream::Context,
    subject: &'static str,
    id: String,
) -> anyhow::Result<()> {
    retried("publishing a floor message", || async {
        let publish = jetstream::message::PublishMessage::build()
            .payload("{}".into())
            .message_id(id.as_str());
        js.send_publish(subject, publish).await?.await
    })
    .await
    .map(|_| ())
}

/// A raw work-queue stream and its consumer, like Baton's jobs.
pub(crate) async fn raw_stream(
    js: &jetstream::Context,
    name: &str,
    replicas: usize,
) -> anyhow::Result<consumer::PullConsumer> {
    let config = stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{}.>", name.to_lowercase())],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    };
    let stream = retried("making the floor's stream", || {
        js.get_or_create_stream(config.clone())
    })
    .await?;
    retried("making the floor's consumer", || {
        stream.create_consumer(consumer::pull::Config {
            durable_name: Some("raw".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
    })
    .await
}

/// Takes the next message of a floor's consumer.
async fn take(messages: &mut consumer::pull::Stream) -> anyhow::Result<jetstream::Message> {
    messages
        .next()
        .await
        .context("stream ended")?
        .map_err(|e| anyhow::anyhow!("taking a floor message: {e}"))
}

/// Deletes a floor's stream (gone already counts: a delete whose answer was lost).
async fn delete(js: &jetstream::Context, name: &str) -> anyhow::Result<()> {
    retried("deleting the floor's stream", || async {
        match js.delete_stream(name).await {
            Ok(_) => Ok(()),
            Err(_) if js.get_stream(name).await.is_err() => Ok(()),
            Err(e) => Err(e),
        }
    })
    .await
}

/// Serial edges: publish and await the ack, then take the message and ack it, confirmed.
pub(crate) async fn floor_serial(
    js: &jetstream::Context,
    n: usize,
    replicas: usize,
) -> anyhow::Result<Vec<Duration>> {
    let consumer = raw_stream(js, "RAWSERIAL", replicas).await?;
    let mut messages = consumer
        .messages()
        .await
        .context("pulling the floor's messages")?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        publish_stored(js, "rawserial.job", format!("serial-{i}")).await?;
        let message = take(&mut messages).await?;
        message
            .double_ack()
            .await
            .map_err(|e| anyhow::anyhow!("acking a floor message: {e}"))?;
        samples.push(started.elapsed());
    }
    delete(js, "RAWSERIAL").await?;
    Ok(samples)
}

/// Pipelined edges: publishes in windows of awaited acks while a consumer takes and acks
/// every message; edges per second from the first publish to the last message taken.
pub(crate) async fn floor_pipelined(
    js: &jetstream::Context,
    n: usize,
    replicas: usize,
) -> anyhow::Result<f64> {
    let consumer = raw_stream(js, "RAWPIPE", replicas).await?;
    let started = Instant::now();
    let taker = tokio::spawn(async move {
        let mut messages = consumer
            .messages()
            .await
            .context("pulling the floor's messages")?;
        for _ in 0..n {
            let message = take(&mut messages).await?;
            message
                .ack()
                .await
                .map_err(|e| anyhow::anyhow!("acking a floor message: {e}"))?;
        }
        anyhow::Ok(started.elapsed())
    });
    for window in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut acks = Vec::with_capacity(window.len());
        for i in window {
            let publish = jetstream::message::PublishMessage::build()
                .payload("{}".into())
                .message_id(format!("pipe-{i}"));
            acks.push((i, js.send_publish("rawpipe.job", publish).await));
        }
        for (i, ack) in acks {
            let stored = match ack {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            };
            // Sent again, alone, with the same id: the server stores it once.
            if !stored {
                publish_stored(js, "rawpipe.job", format!("pipe-{i}")).await?;
            }
        }
    }
    let elapsed = taker.await??;
    delete(js, "RAWPIPE").await?;
    Ok(n as f64 / elapsed.as_secs_f64())
}
