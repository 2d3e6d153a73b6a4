//! The `publish` and `webhook` actions against a real nats-server and a local HTTP listener:
//! what a job delivered twice (its worker died after the effect, before the ack) does the
//! second time.

use std::time::{Duration, Instant};

use async_nats::jetstream::stream;
use baton_bus::{Bus, BusConfig};
use baton_schemas::status::{RunStatus, State};
use baton_schemas::task::{Publish, Webhook};
use baton_schemas::wire::{Job, Outcome, Work};
use baton_schemas::{Attempt, NodeName, RunId, WorkflowName};
use baton_tests::{Env, Nats, workflow};
use baton_workers::executors::action;
use futures::StreamExt;

fn job(work: Work) -> Job {
    Job {
        timeout_ms: Some(10_000),
        ..Job::new(
            RunId::new("r1"),
            WorkflowName::new("wf"),
            NodeName::new("announce"),
            Attempt(1),
            work,
        )
    }
}

fn publish_job(subject: &str) -> Job {
    job(Work::Publish(Box::new(Publish {
        subject: subject.to_owned(),
        data: Some("hello".to_owned()),
    })))
}

fn succeeded(outcome: Outcome) {
    assert!(matches!(outcome, Outcome::Succeeded { .. }), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_job_delivered_twice_stores_one_message() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path()).unwrap();
    let config = BusConfig {
        prefix: "a1".to_owned(),
        ..BusConfig::default()
    };
    let bus = Bus::connect(&nats.url(), config, Duration::from_secs(10))
        .await
        .unwrap();
    // A stream of the user's captures the subject, as Baton's own captures trigger subjects.
    let mut alerts = bus
        .jetstream()
        .create_stream(stream::Config {
            name: "ALERTS".to_owned(),
            subjects: vec!["alerts.>".to_owned()],
            ..Default::default()
        })
        .await
        .unwrap();
    let j = publish_job("alerts.deploy");
    succeeded(action::publish(&bus, &j).await);
    // The redelivery of the same job publishes again: the stream drops it.
    succeeded(action::publish(&bus, &j).await);
    assert_eq!(alerts.info().await.unwrap().state.messages, 1);
    let stored = alerts.get_raw_message(1).await.unwrap();
    let id = stored
        .headers
        .get(async_nats::header::NATS_MESSAGE_ID)
        .map(|v| v.to_string());
    assert_eq!(id.as_deref(), Some("r1.announce.1"));
    assert_eq!(stored.payload.as_ref(), b"hello");

    // A retry is another attempt, and another message.
    let mut retry = j.clone();
    retry.attempt = Attempt(2);
    succeeded(action::publish(&bus, &retry).await);
    assert_eq!(alerts.info().await.unwrap().state.messages, 2);

    // No stream captures the subject: the message goes out on core NATS, with the same header.
    let mut plain = bus.client().subscribe("plain.deploy").await.unwrap();
    bus.client().flush().await.unwrap();
    succeeded(action::publish(&bus, &publish_job("plain.deploy")).await);
    let got = tokio::time::timeout(Duration::from_secs(10), plain.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.payload.as_ref(), b"hello");
    let id = got
        .headers
        .as_ref()
        .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
        .map(|v| v.to_string());
    assert_eq!(id.as_deref(), Some("r1.announce.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_names_its_attempt_for_the_receiver_to_deduplicate() {
    let (port, request) = baton_tests::one_http_request();
    let mut j = job(Work::Webhook(Box::new(Webhook {
        url: format!("http://127.0.0.1:{port}/hook"),
        method: None,
        headers: [("X-Team".to_owned(), "release".to_owned())].into(),
        body: Some("{}".to_owned()),
    })));
    j.attempt = Attempt(3);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().build().unwrap();
    succeeded(action::webhook(&http, &j).await);
    let head = request.join().unwrap().head;
    for line in [
        "idempotency-key: r1.announce.3\r\n",
        "baton-run: r1\r\n",
        "baton-node: announce\r\n",
        "baton-attempt: 3\r\n",
        "x-team: release\r\n",
        "content-type: application/json\r\n",
    ] {
        assert!(head.contains(line), "{line:?} missing from:\n{head}");
    }
}

fn runs(env: &Env) -> Vec<RunStatus> {
    let out = env.cli(&["runs", "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// A `publish` node whose subject is a trigger subject starts a run of that workflow. Its
/// worker is killed after the publish and before the ack; the job comes back to another
/// worker, which publishes again: the trigger stream keeps one message, and one run starts.
#[test]
fn a_publish_redelivered_after_its_worker_is_killed_starts_one_run() {
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).unwrap();
    let planner = env.start_planner().unwrap();
    env.keep(planner);
    let noop = env.start_worker("worker", "noop", &[]).unwrap();
    env.keep(noop);
    let mut first = {
        let mut command = env.baton();
        command
            .args(["worker", "--kinds", "publish"])
            .env("BATON_FAILPOINTS", "publish-after-send");
        env.spawn("worker-1", command).unwrap()
    };
    let echo = env.write(
        "echo.yaml",
        &workflow("echo", &["{name: hello, kind: noop}".to_owned()]),
    );
    let out = env.cli(&["apply", "-f", echo.to_str().unwrap(), "--no-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let announce = env.write(
        "announce.yaml",
        &workflow(
            "announce",
            &[format!(
                "{{name: announce, kind: publish, publish: {{subject: {}.triggers.echo, data: hi}}}}",
                env.prefix
            )],
        ),
    );
    let run = env.apply(&announce).unwrap();
    first
        .wait_log("failpoint reached", Duration::from_secs(60))
        .unwrap();
    first.kill9();
    let second = env.start_worker("worker-2", "publish", &[]).unwrap();
    env.keep(second);
    let status = env.wait_end(&run, Duration::from_secs(60)).unwrap();
    assert_eq!(status.state, State::Succeeded, "{status:?}");
    assert_eq!(status.nodes[0].attempts, 1);
    assert!(
        std::fs::read_to_string(env.dir.path().join("worker-2.log"))
            .unwrap()
            .contains("published to a stream"),
        "the redelivery published again"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stored = runtime.block_on(async {
        let config = BusConfig {
            prefix: env.prefix.clone(),
            ..BusConfig::default()
        };
        let bus = Bus::connect(&env.nats.url(), config, Duration::from_secs(10))
            .await
            .unwrap();
        let mut triggers = bus
            .jetstream()
            .get_stream(bus.stream_name("TRIGGERS"))
            .await
            .unwrap();
        triggers.info().await.unwrap().state.messages
    });
    assert_eq!(stored, 1, "the trigger stream dropped the second publish");
    let echo_runs = |env: &Env| {
        runs(env)
            .into_iter()
            .filter(|r| r.workflow == "echo")
            .collect::<Vec<_>>()
    };
    let started = Instant::now();
    while echo_runs(&env).iter().all(|r| r.state != State::Succeeded) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "echo never ran"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(echo_runs(&env).len(), 1, "{:#?}", echo_runs(&env));
}
