//! The floor: raw JetStream publish-ack then consume-ack, serial and pipelined, on a
//! work-queue stream like Baton's jobs.

use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;

/// A raw work-queue stream and its consumer, like Baton's jobs.
pub(crate) async fn raw_stream(
    js: &jetstream::Context,
    name: &str,
    replicas: usize,
) -> anyhow::Result<consumer::PullConsumer> {
    let stream = js
        .create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![format!("{}.>", name.to_lowercase())],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        })
        .await?;
    Ok(stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("raw".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?)
}

/// Serial edges: publish and await the ack, then take the message and ack it, confirmed.
pub(crate) async fn floor_serial(
    js: &jetstream::Context,
    n: usize,
    replicas: usize,
) -> anyhow::Result<Vec<Duration>> {
    let consumer = raw_stream(js, "RAWSERIAL", replicas).await?;
    let mut messages = consumer.messages().await?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let publish = jetstream::message::PublishMessage::build()
            .payload("{}".into())
            .message_id(format!("serial-{i}"));
        js.send_publish("rawserial.job", publish).await?.await?;
        let message = messages.next().await.context("stream ended")??;
        message
            .double_ack()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        samples.push(started.elapsed());
    }
    js.delete_stream("RAWSERIAL").await?;
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
        let mut messages = consumer.messages().await?;
        for _ in 0..n {
            let message = messages.next().await.context("stream ended")??;
            message.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        anyhow::Ok(started.elapsed())
    });
    for window in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut acks = Vec::with_capacity(window.len());
        for i in window {
            let publish = jetstream::message::PublishMessage::build()
                .payload("{}".into())
                .message_id(format!("pipe-{i}"));
            acks.push(js.send_publish("rawpipe.job", publish).await?);
        }
        for ack in acks {
            ack.await?;
        }
    }
    let elapsed = taker.await??;
    js.delete_stream("RAWPIPE").await?;
    Ok(n as f64 / elapsed.as_secs_f64())
}
