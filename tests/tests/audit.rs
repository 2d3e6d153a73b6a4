//! The audit trail: every change asked through the API (refused ones included) or a trigger
//! on the bus is a log line and a message in the `<P>_AUDIT` stream, saying who, what, when
//! and from where.

use std::time::{Duration, Instant};

use baton_schemas::api::AuditRecord;
use baton_tests::{Env, workflow};
use futures::StreamExt;

fn env() -> Env {
    Env::new(env!("CARGO_BIN_EXE_baton-under-test")).unwrap()
}

/// Reads the audit stream until `done` holds for what it read (bounded).
async fn audit_records(env: &Env, done: impl Fn(&[AuditRecord]) -> bool) -> Vec<AuditRecord> {
    let client = async_nats::connect(env.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_stream(format!("{}_AUDIT", env.prefix.to_ascii_uppercase()))
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(&records) {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = tokio::time::timeout(left, messages.next())
            .await
            .unwrap_or_else(|_| panic!("the audit trail lacks records: {records:#?}"));
        let message = next.unwrap().unwrap();
        records.push(serde_json::from_slice(&message.payload).unwrap());
    }
    records
}

#[test]
fn api_changes_refusals_and_bus_triggers_are_recorded_with_who_and_from_where() {
    let mut env = env();
    env.start_all().unwrap();
    let file = env.write(
        "w.yaml",
        &workflow("audited", &["{name: a, kind: noop}".to_owned()]),
    );
    // A viewer may not apply: refused, and recorded.
    let refused = env
        .baton()
        .env("BATON_TOKEN", &env.tokens.viewer)
        .args(["apply", "-f", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    // An admin applies; a trigger arrives on the bus.
    let run = env.apply(&file).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let p = env.prefix.clone();
    let records = rt.block_on(async {
        let client = async_nats::connect(env.nats.url()).await.unwrap();
        async_nats::jetstream::new(client)
            .publish(format!("{p}.triggers.audited"), "from-the-bus".into())
            .await
            .unwrap()
            .await
            .unwrap();
        audit_records(&env, |records| {
            records.len() >= 3 && records.iter().any(|r| r.via == "bus")
        })
        .await
    });
    let viewer = records
        .iter()
        .find(|r| r.status == Some(403))
        .expect("the refusal is recorded");
    assert_eq!(viewer.action, "apply");
    assert_eq!(viewer.actor.as_deref(), Some("test-viewer"));
    assert_eq!(viewer.role.as_deref(), Some("viewer"));
    assert_eq!(viewer.request, "POST /v1/apply");
    assert!(viewer.from.starts_with("127.0.0.1:"), "{viewer:?}");
    let admin = records
        .iter()
        .find(|r| r.status == Some(200) && r.action == "apply")
        .unwrap_or_else(|| panic!("the apply is recorded: {records:#?}"));
    assert_eq!(admin.actor.as_deref(), Some("test-admin"));
    assert_eq!(admin.via, "api");
    let bus = records.iter().find(|r| r.via == "bus").unwrap();
    assert_eq!(bus.action, "trigger");
    assert_eq!(bus.request, format!("{p}.triggers.audited"));
    assert!(bus.from.contains(" #"), "{bus:?}");
    // Reads are not changes: `baton status` left no record.
    env.status(&run).unwrap();
    assert!(records.iter().all(|r| !r.request.starts_with("GET")));
    // And the planner's log has the same lines, on the audit target.
    let log = std::fs::read_to_string(env.dir.path().join("planner.log")).unwrap();
    assert!(
        log.lines().any(|l| l.contains("baton::audit")
            && l.contains("actor=test-viewer")
            && l.contains("status=403")),
        "{log}"
    );
}
