//! Traces across the bus, exported over OTLP to a real receiver (decoding the protobuf with
//! the OpenTelemetry project's own classes): a diamond workflow started through the API with
//! the caller's `traceparent` is one trace, the caller's, whose spans nest as the DAG ran.

use std::collections::HashMap;
use std::time::Duration;

use baton_schemas::status::State;
use baton_tests::Env;
use baton_tests::otlp::{Receiver, Span};

const BATON: &str = env!("CARGO_BIN_EXE_baton-under-test");

/// POSTs `document` to `/v1/apply` with `traceparent`; returns the run started.
fn apply_traced(env: &Env, document: serde_json::Value, traceparent: &str) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let answer = reqwest::Client::new()
            .post(format!("{}/v1/apply", env.server()))
            .bearer_auth(&env.tokens.admin)
            .header("traceparent", traceparent)
            .json(&serde_json::json!({"document": document, "run": true}))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{answer:?}");
        let body: serde_json::Value = answer.json().await.unwrap();
        body["run"].as_str().unwrap().to_owned()
    })
}

#[test]
fn a_diamond_started_with_a_callers_traceparent_is_one_trace_nested_as_it_ran() {
    let mut env = Env::new(BATON).unwrap();
    let receiver = Receiver::start(env.dir.path()).unwrap();
    env.extra_env = vec![
        ("BATON_OTLP_ENDPOINT".into(), receiver.endpoint.clone()),
        // Batches go out every 100 ms, not every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
    ];
    env.start_all().unwrap();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = "00f067aa0ba902b7";
    let diamond = serde_json::json!({
        "apiVersion": "baton.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "traced"},
        "spec": {"nodes": [
            {"name": "a", "kind": "noop"},
            {"name": "b", "kind": "exec", "needs": ["a"], "command": ["true"]},
            {"name": "c", "kind": "noop", "needs": ["a"]},
            {"name": "d", "kind": "noop", "needs": ["b", "c"]},
        ]},
    });
    let run = apply_traced(&env, diamond, &format!("00-{trace_id}-{caller}-01"));
    assert_eq!(
        env.wait_end(&run, Duration::from_secs(60)).unwrap().state,
        State::Succeeded
    );

    let named = |spans: &[Span], name: &str| spans.iter().any(|s| s.name == name);
    let spans = receiver
        .wait(Duration::from_secs(60), |spans| {
            ["a", "b", "c", "d"].iter().all(|n| {
                named(spans, &format!("dispatch traced/{n}"))
                    && spans.iter().any(|s| {
                        s.name.starts_with("execute") && s.name.ends_with(&format!("traced/{n}"))
                    })
            })
        })
        .unwrap();
    let ours: Vec<&Span> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let by_name: HashMap<&str, &Span> = ours.iter().map(|s| (s.name.as_str(), *s)).collect();
    let find = |name: &str| -> &Span {
        by_name
            .get(name)
            .copied()
            .unwrap_or_else(|| panic!("no span {name} in the caller's trace: {spans:#?}"))
    };
    // The API request continues the caller's span.
    let request = find("POST /v1/apply");
    assert_eq!(request.parent_span_id, caller);
    assert_eq!(request.service_name.as_deref(), Some("baton-planner"));
    let dispatch = |n: &str| find(&format!("dispatch traced/{n}"));
    let execute = |n: &str, kind: &str| find(&format!("execute {kind} traced/{n}"));
    // Each job's execution is the child of its dispatch, on the worker.
    for (n, kind) in [("a", "noop"), ("b", "exec"), ("c", "noop"), ("d", "noop")] {
        assert_eq!(execute(n, kind).parent_span_id, dispatch(n).span_id, "{n}");
        assert_eq!(
            execute(n, kind).service_name.as_deref(),
            Some("baton-worker")
        );
        assert_eq!(dispatch(n).service_name.as_deref(), Some("baton-planner"));
    }
    // The DAG as it ran: a was dispatched for the request; b and c for a's completion; d for
    // the completion of whichever of b and c finished last.
    assert_eq!(dispatch("a").parent_span_id, request.span_id);
    assert_eq!(dispatch("b").parent_span_id, execute("a", "noop").span_id);
    assert_eq!(dispatch("c").parent_span_id, execute("a", "noop").span_id);
    let d_parent = &dispatch("d").parent_span_id;
    assert!(
        d_parent == &execute("b", "exec").span_id || d_parent == &execute("c", "noop").span_id,
        "d's dispatch follows b's or c's end: {spans:#?}"
    );
    // Every span of the run is in the caller's trace.
    let run_spans = spans
        .iter()
        .filter(|s| s.attributes.get("run").and_then(|r| r.as_str()) == Some(run.as_str()));
    for span in run_spans {
        assert_eq!(span.trace_id, trace_id, "{span:#?}");
    }
}
