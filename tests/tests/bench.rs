//! Benchmark (ignored by default; `make bench` runs it): Baton's per-node overhead on a chain
//! of noop nodes, next to the raw JetStream round trip measured in the same run against the
//! same server: publish and await the ack, then pull the message and ack it (confirmed).
//!
//! Both are measured several times, alternating, and the medians are compared, because the
//! machine is shared and noisy. Environment: `BENCH_NODES` (default 200), `BENCH_ROUNDS` (3).

use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::{self, consumer, stream};
use baton_schemas::status::State;
use baton_tests::{Env, workflow};
use futures::StreamExt;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn parse_time(text: &str) -> SystemTime {
    humantime::parse_rfc3339(text).expect("an RFC 3339 time")
}

/// Returns the mean raw round trip over `n` messages.
async fn raw_round_trip(url: &str, round: usize, n: usize) -> Duration {
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    let name = format!("RAW{round}");
    let stream = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("raw{round}.>")],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("raw".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let started = Instant::now();
    for i in 0..n {
        let publish = jetstream::message::PublishMessage::build()
            .payload("{}".into())
            .message_id(format!("raw-{round}-{i}"));
        js.send_publish(format!("raw{round}.job"), publish)
            .await
            .unwrap()
            .await
            .unwrap();
        let message = messages.next().await.unwrap().unwrap();
        message.double_ack().await.unwrap();
    }
    let elapsed = started.elapsed();
    js.delete_stream(&name).await.unwrap();
    elapsed / n as u32
}

/// Returns Baton's time per node on a chain of `n` noop nodes, from the first node's start
/// to the last node's end as the worker recorded them.
fn chain_per_node(env: &Env, round: usize, n: usize) -> Duration {
    let nodes: Vec<String> = (0..n)
        .map(|i| {
            let needs = if i == 0 {
                String::new()
            } else {
                format!(", needs: [n{}]", i - 1)
            };
            format!("{{name: n{i}, kind: noop{needs}}}")
        })
        .collect();
    let file = env.write(
        &format!("chain{round}.yaml"),
        &workflow(&format!("chain{round}"), &nodes),
    );
    let run = env.apply(&file).unwrap();
    let status = env.wait_end(&run, Duration::from_secs(600)).unwrap();
    assert_eq!(status.state, State::Succeeded);
    let first = parse_time(status.nodes[0].started_at.as_deref().unwrap());
    let last = parse_time(status.nodes[n - 1].finished_at.as_deref().unwrap());
    last.duration_since(first).unwrap() / n as u32
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[test]
#[ignore = "a benchmark: run with `make bench`"]
fn chain_overhead_against_raw_jetstream() {
    let nodes = env_number("BENCH_NODES", 200);
    let rounds = env_number("BENCH_ROUNDS", 3);
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).unwrap();
    env.start_all().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut raw, mut baton) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        raw.push(rt.block_on(raw_round_trip(&env.nats.url(), round, nodes)));
        baton.push(chain_per_node(&env, round, nodes));
        println!(
            "round {round}: raw round trip {:?}, baton per node {:?}",
            raw[round], baton[round]
        );
    }
    let (raw, baton) = (median(raw), median(baton));
    println!(
        "{nodes}-node noop chain, median of {rounds}: baton {:.2} ms/node, raw JetStream publish-ack + consume-ack {:.3} ms, ratio {:.1}x",
        baton.as_secs_f64() * 1e3,
        raw.as_secs_f64() * 1e3,
        baton.as_secs_f64() / raw.as_secs_f64()
    );
}
