//! The bus against a real nats-server: idempotent setup, deduplicated and pipelined
//! publishing, explicit settlement, and a server restart in the middle of publishing.

use std::collections::BTreeSet;
use std::time::Duration;

use baton_bus::{Bus, BusConfig, Outgoing};
use baton_schemas::NodeKind;
use baton_tests::Nats;
use futures::StreamExt;

fn config(prefix: &str) -> BusConfig {
    BusConfig {
        prefix: prefix.to_owned(),
        job_ack_wait: Duration::from_secs(1),
        ..BusConfig::default()
    }
}

fn message(bus: &Bus, id: usize) -> Outgoing {
    Outgoing {
        subject: bus.job_subject(NodeKind::Noop),
        msg_id: format!("m{id}"),
        payload: format!("{{\"n\":{id}}}").into(),
        headers: vec![],
    }
}

async fn stream_messages(bus: &Bus, which: &str) -> u64 {
    let mut stream = bus
        .jetstream()
        .get_stream(bus.stream_name(which))
        .await
        .unwrap();
    stream.info().await.unwrap().state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_is_idempotent_and_publishes_are_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path()).unwrap();
    let bus = Bus::connect(&nats.url(), config("b1"), Duration::from_secs(10))
        .await
        .unwrap();
    bus.ensure_streams().await.unwrap();
    let other = Bus::connect(&nats.url(), config("b1"), Duration::from_secs(10))
        .await
        .unwrap();
    other.ensure_streams().await.unwrap();
    bus.job_consumer(NodeKind::Noop).await.unwrap();
    other.job_consumer(NodeKind::Noop).await.unwrap();

    // More than async-nats' in-flight ack limit would hang if acks were not awaited in windows.
    let messages: Vec<Outgoing> = (0..6000).map(|i| message(&bus, i)).collect();
    bus.publish_all(&messages).await.unwrap();
    assert_eq!(stream_messages(&bus, "JOBS").await, 6000);
    // The same ids again: the server drops them all.
    bus.publish_all(&messages[..100]).await.unwrap();
    bus.publish_one(&messages[0]).await.unwrap();
    assert_eq!(stream_messages(&bus, "JOBS").await, 6000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nak_redelivers_term_does_not_and_ack_removes() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path()).unwrap();
    // A long ack wait: every redelivery here comes from the NAK, however slow the machine.
    let config = BusConfig {
        job_ack_wait: Duration::from_secs(30),
        ..config("b2")
    };
    let bus = Bus::connect(&nats.url(), config, Duration::from_secs(10))
        .await
        .unwrap();
    bus.ensure_streams().await.unwrap();
    let consumer = bus.job_consumer(NodeKind::Noop).await.unwrap();
    bus.publish_all(&[message(&bus, 1), message(&bus, 2)])
        .await
        .unwrap();
    let mut pull = baton_bus::PullStream::new(consumer, 8);
    let first = pull.next().await;
    let second = pull.next().await;
    assert_eq!(first.delivered(), 1);
    first.nak(Some(Duration::from_millis(100))).await.unwrap();
    second.term().await.unwrap();
    let again = tokio::time::timeout(Duration::from_secs(5), pull.next())
        .await
        .unwrap();
    assert_eq!(again.payload(), first.payload());
    assert_eq!(again.delivered(), 2);
    again.ack().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(2), pull.next())
            .await
            .is_err(),
        "nothing else comes"
    );
    assert_eq!(
        stream_messages(&bus, "JOBS").await,
        0,
        "work queue: settled messages are gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_and_consuming_survive_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::start(dir.path()).unwrap();
    let bus = Bus::connect(&nats.url(), config("b3"), Duration::from_secs(10))
        .await
        .unwrap();
    bus.ensure_streams().await.unwrap();
    let consumer = bus.job_consumer(NodeKind::Noop).await.unwrap();
    let mut pull = baton_bus::PullStream::new(consumer, 16);
    bus.publish_all(&(0..10).map(|i| message(&bus, i)).collect::<Vec<_>>())
        .await
        .unwrap();
    for _ in 0..10 {
        pull.next().await.ack().await.unwrap();
    }
    nats.kill9();
    // Publish while the server is down: the publish retries until the server is back.
    let publisher = {
        let bus = bus.clone();
        let messages: Vec<Outgoing> = (10..20).map(|i| message(&bus, i)).collect();
        tokio::spawn(async move { bus.publish_all(&messages).await })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    nats.restart().unwrap();
    tokio::time::timeout(Duration::from_secs(60), publisher)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // At least once, never lost: every message published around the restart comes, and an
    // ack confirmed just before the kill -9 may not have reached the server's disk, so some
    // of the first ten may come again. Everything acked, the work queue ends empty.
    let must_come: BTreeSet<String> = (10..20).map(|i| format!("{{\"n\":{i}}}")).collect();
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !must_come.is_subset(&seen) {
        let m = tokio::time::timeout_at(deadline, pull.next())
            .await
            .unwrap_or_else(|_| panic!("missing after restart: {:?}", must_come.difference(&seen)));
        seen.insert(String::from_utf8(m.payload().to_vec()).unwrap());
        m.ack().await.unwrap();
    }
    // Late redeliveries of the first ten come after the 1 s ack wait; settle them too.
    while stream_messages(&bus, "JOBS").await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the work queue never drained"
        );
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(500), pull.next()).await {
            m.ack().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_prefix_is_refused() {
    let err = Bus::connect(
        "nats://127.0.0.1:1",
        config("Bad.Prefix"),
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), baton_bus::BusErrorKind::Config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoders_reject_what_they_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path()).unwrap();
    let bus = Bus::connect(&nats.url(), config("b4"), Duration::from_secs(10))
        .await
        .unwrap();
    bus.ensure_streams().await.unwrap();
    let consumer = bus.job_consumer(NodeKind::Exec).await.unwrap();
    let mut bad = message(&bus, 1);
    bad.subject = bus.job_subject(NodeKind::Exec);
    bad.headers = vec![
        ("Baton-Run".into(), "r1".into()),
        ("Baton-Node".into(), "n".into()),
        ("Baton-Attempt".into(), "2".into()),
    ];
    bus.publish_one(&bad).await.unwrap();
    let mut batch = consumer
        .batch()
        .max_messages(1)
        .expires(Duration::from_secs(10))
        .messages()
        .await
        .unwrap();
    let m = baton_bus::Inbound::new(batch.next().await.unwrap().unwrap());
    let poison = baton_bus::decode_job(&m).unwrap_err();
    assert_eq!(poison.run.as_ref().map(|r| r.as_str()), Some("r1"));
    assert_eq!(poison.node.as_ref().map(|n| n.as_str()), Some("n"));
    assert_eq!(poison.attempt, Some(baton_schemas::Attempt(2)));
    assert!(
        poison.reason.starts_with("undecodable job"),
        "{}",
        poison.reason
    );
    m.term().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_jobs_is_signed_whole_and_read_job_by_job() {
    use baton_schemas::wire::{Job, Work};
    use baton_schemas::{Attempt, NodeName, RunId, WorkflowName};
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path()).unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "a key of thirty-two bytes or more, for the test").unwrap();
    let bus = Bus::connect(
        &nats.url(),
        BusConfig {
            job_signing_key_file: Some(key),
            ..config("b5")
        },
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    bus.ensure_streams().await.unwrap();
    let consumer = bus.job_batch_consumer(NodeKind::Noop).await.unwrap();
    let job = |node: &str| {
        Job::new(
            RunId::new("r1"),
            WorkflowName::new("w"),
            NodeName::new(node),
            Attempt(1),
            Work::Noop,
        )
    };
    let singles: Vec<Outgoing> = ["a", "b", "c"]
        .iter()
        .map(|n| bus.job_message(&job(n)))
        .collect();
    let batch = bus.job_batch_message(&singles);
    assert_eq!(batch.msg_id, "r1.a.1.batch3");
    assert_eq!(batch.subject, bus.job_batch_subject(NodeKind::Noop));
    assert!(batch.size() <= baton_bus::job_batch_bytes(&singles) + 4096);
    // A batch of one is that job's own message.
    assert_eq!(bus.job_batch_message(&singles[..1]), singles[0]);
    // One job of a batch that this build cannot read (of a kind it does not know): its
    // attempt is named, the others run.
    let mut text = String::from_utf8(batch.payload.to_vec()).unwrap();
    let last = text
        .rfind("\"kind\":\"noop\"")
        .expect("the last job's kind");
    text.replace_range(last..last + "\"kind\":\"noop\"".len(), "\"kind\":\"nope\"");
    let mut unreadable = batch.clone();
    unreadable.msg_id = "unreadable".into();
    unreadable.payload = text.clone().into();
    // Signed as the planner would have, so that only the job is at fault.
    let signature =
        bus.signer()
            .unwrap()
            .sign(&unreadable.subject, &unreadable.msg_id, &unreadable.payload);
    for (name, value) in &mut unreadable.headers {
        if name == baton_bus::SIGNATURE_HEADER {
            *value = signature.clone();
        }
    }
    // A batch altered on the way fails its signature: nothing of it is read.
    let mut forged = batch.clone();
    forged.msg_id = "forged".into();
    forged.payload = text.into();
    for m in [&batch, &unreadable, &forged] {
        bus.publish_one(m).await.unwrap();
    }
    let mut pull = consumer
        .batch()
        .max_messages(3)
        .expires(Duration::from_secs(10))
        .messages()
        .await
        .unwrap();
    let mut read = Vec::new();
    for _ in 0..3 {
        read.push(baton_bus::Inbound::new(pull.next().await.unwrap().unwrap()));
    }
    // The whole batch: three jobs.
    assert!(baton_bus::is_job_batch(&read[0]));
    assert_eq!(baton_bus::jobs_in(&read[0]), 3);
    bus.check_job_signature(&read[0]).unwrap();
    let jobs = baton_bus::decode_jobs(&read[0]).unwrap();
    let names: Vec<String> = jobs
        .iter()
        .map(|j| j.as_ref().unwrap().0.node.to_string())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    // Each with the trace context its single message had.
    for (decoded, single) in jobs.iter().zip(&singles) {
        let traceparent = decoded.as_ref().unwrap().1.as_deref();
        assert!(traceparent.is_some());
        assert_eq!(traceparent, single.header("traceparent"));
    }
    // The unreadable job alone is set aside, naming its attempt.
    bus.check_job_signature(&read[1]).unwrap();
    let jobs = baton_bus::decode_jobs(&read[1]).unwrap();
    assert!(jobs[0].is_ok() && jobs[1].is_ok());
    let poison = jobs[2].as_ref().unwrap_err();
    assert_eq!(poison.node.as_ref().map(|n| n.as_str()), Some("c"));
    assert_eq!(poison.attempt, Some(baton_schemas::Attempt(1)));
    assert!(
        poison.reason.contains("undecodable job in a batch"),
        "{}",
        poison.reason
    );
    // The forged one is refused before anything of it is read.
    let refused = bus.check_job_signature(&read[2]).unwrap_err();
    assert!(refused.node.is_none(), "{refused:?}");
    for m in read {
        m.ack().await.unwrap();
    }
}
