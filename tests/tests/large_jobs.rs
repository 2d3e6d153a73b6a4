//! Jobs larger than the bus carries: a wide fan-in and large trigger data travel by
//! reference (the inputs store), and a job too large even so fails its node with the sizes,
//! never stopping the planner or losing the run.

use std::time::Duration;

use baton_schemas::status::State;
use baton_tests::Env;

fn env() -> Env {
    Env::new(env!("CARGO_BIN_EXE_baton-under-test")).expect("test env")
}

/// Runs `baton apply -f <name>` with `extra` flags on `text`, checks it succeeded, and
/// returns what it printed (the run id, when it started one).
fn apply(env: &Env, name: &str, text: &str, extra: &[&str]) -> String {
    let file = env.write(name, text);
    let mut args = vec!["apply", "-f", file.to_str().unwrap()];
    args.extend(extra);
    let out = env.cli(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// 300 branches each write a 4000-byte output (under the 4096-byte cap); the node that needs
/// them all gets 1.2 MB of `BATON_INPUTS`, above the bus's 1 MiB: the job names its inputs,
/// the worker fetches them, and the process reads them from `BATON_INPUTS_FILE` (too large
/// for one environment entry, `BATON_INPUTS` itself is unset).
#[test]
fn a_fan_in_of_300_large_outputs_runs_with_its_inputs_by_reference() {
    let mut env = env();
    env.start_planner().map(|p| env.keep(p)).unwrap();
    let worker = env
        .start_worker("worker", "exec", &["--concurrency", "8"])
        .unwrap();
    env.keep(worker);
    let mut nodes = String::new();
    for i in 0..300 {
        nodes.push_str(&format!(
            "  - {{name: b{i}, kind: exec, command: [sh, -c, 'head -c 4000 /dev/zero | tr \"\\\\000\" x > \"$BATON_OUTPUT\"']}}\n"
        ));
    }
    let needs: Vec<String> = (0..300).map(|i| format!("b{i}")).collect();
    nodes.push_str(&format!(
        "  - {{name: join, kind: exec, needs: [{}], command: [sh, -c, 'test -z \"$BATON_INPUTS\" && wc -c < \"$BATON_INPUTS_FILE\" | tr -d \" \" > \"$BATON_OUTPUT\"']}}\n",
        needs.join(", ")
    ));
    let text = format!(
        "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: wide}}\nspec:\n  nodes:\n{nodes}"
    );
    let run = apply(&env, "wide.yaml", &text, &[]);
    let status = env.wait_end(&run, Duration::from_secs(300)).unwrap();
    let join = status.nodes.iter().find(|n| n.name == "join").unwrap();
    assert_eq!(status.state, State::Succeeded, "{join:?}");
    let size: usize = join.output.as_deref().unwrap().trim().parse().unwrap();
    // Each entry is `"bN":"xxxx..."`: 4000 bytes and its name and punctuation.
    assert!(size > 300 * 4000, "{size}");
}

/// 200 KiB of control characters as trigger data becomes a 1.2 MB job once JSON-escaped: it
/// travels by reference and the first node reads the data whole from `BATON_DATA_FILE`.
#[test]
fn large_trigger_data_reaches_the_first_node_whole() {
    let mut env = env();
    env.start_all().unwrap();
    let text = "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: big}\nspec:\n  nodes:\n  - {name: first, kind: exec, command: [sh, -c, 'wc -c < \"$BATON_DATA_FILE\" | tr -d \" \" > \"$BATON_OUTPUT\"']}\n";
    apply(&env, "big.yaml", text, &["--no-run"]);
    let data: Vec<u8> = (0..200 * 1024).map(|i| (i % 31 + 1) as u8).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!("{}/v1/triggers/big", env.server());
    let body: serde_json::Value = rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let response = reqwest::Client::new()
            .post(url)
            .bearer_auth(&env.tokens.admin)
            .body(data)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
        response.json().await.unwrap()
    });
    let run = body["run"].as_str().unwrap();
    let status = env.wait_end(run, Duration::from_secs(60)).unwrap();
    assert_eq!(status.state, State::Succeeded, "{status:?}");
    assert_eq!(
        status.nodes[0].output.as_deref().map(str::trim),
        Some("204800")
    );
}

/// On a server whose largest message is 64 KiB, a node whose own settings take 100 KB cannot
/// be sent at all: it fails at once, for good, with the sizes; its failure handler runs; the
/// planner goes on with the next run and after a restart.
#[test]
fn a_job_the_bus_cannot_carry_fails_its_node_and_nothing_else() {
    let mut env = env();
    env.nats.restart_with_max_payload(64 * 1024).unwrap();
    env.start_all().unwrap();
    let value = "v".repeat(100 * 1024);
    let text = format!(
        "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: heavy}}\nspec:\n  nodes:\n  - {{name: big, kind: exec, command: [\"true\"], env: {{BIG: {value}}}, retries: {{limit: 3}}}}\n  - {{name: after, kind: noop, needs: [big]}}\n  - {{name: handler, kind: noop, needs: [big], when: failure}}\n"
    );
    let run = apply(&env, "heavy.yaml", &text, &[]);
    let status = env.wait_end(&run, Duration::from_secs(60)).unwrap();
    assert_eq!(status.state, State::Failed);
    let big = &status.nodes[0];
    assert_eq!((big.state, big.attempts), (State::Failed, 1), "{big:?}");
    let error = big.error.as_deref().unwrap();
    assert!(
        error.starts_with("job is ") && error.contains("above the bus's limit of 65536"),
        "{error}"
    );
    assert_eq!(status.nodes[1].state, State::Skipped);
    assert_eq!(status.nodes[2].state, State::Succeeded);
    // The planner is still there, and so is a small run.
    let small = "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: small}\nspec:\n  nodes:\n  - {name: a, kind: noop}\n";
    apply(&env, "small.yaml", small, &["--wait"]);
}

/// A job committed to the planner's outbox that the bus no longer takes (its largest message
/// shrank while the planner was down, or an older build committed it whole) used to stop
/// every start of the planner. Now the start sets it aside: its node fails for good with the
/// sizes, the run goes on, and the planner serves.
#[test]
fn an_outbox_job_the_bus_no_longer_takes_fails_its_node_at_the_next_start() {
    let mut env = env();
    let mut planner = env.start_planner().unwrap();
    let value = "v".repeat(100 * 1024);
    let text = format!(
        "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: heavy}}\nspec:\n  nodes:\n  - {{name: big, kind: exec, command: [\"true\"], env: {{BIG: {value}}}}}\n  - {{name: handler, kind: noop, needs: [big], when: failure}}\n"
    );
    let run = apply(&env, "heavy.yaml", &text, &[]);
    env.wait_for(&run, Duration::from_secs(30), |s| {
        s.nodes[0].state == State::Running
    })
    .unwrap();
    // Stopped, not killed: a planner appends each commit to the bus's state stream before its
    // store applies it, so one killed between the two would have its next start apply that
    // commit over the one this test writes into the store below.
    planner.terminate();
    planner.wait_exit(Duration::from_secs(30)).unwrap();
    // The job as a planner that died between its commit and its publish left it.
    let store = baton_planner::store::Store::open(
        &env.dir.path().join("planner-data").join("planner.redb"),
    )
    .unwrap();
    let job = baton_bus::Outgoing {
        subject: format!("{}.jobs.exec", env.prefix),
        msg_id: format!("{run}.big.1"),
        payload: bytes::Bytes::from(vec![b'x'; 100 * 1024]),
        headers: vec![
            ("Baton-Run".into(), run.clone()),
            ("Baton-Node".into(), "big".into()),
            ("Baton-Attempt".into(), "1".into()),
        ],
    };
    store
        .commit(&baton_planner::store::Change {
            state: Default::default(),
            outbox: vec![job],
            published: Vec::new(),
            triggers_seq: None,
            events_seq: None,
        })
        .unwrap();
    drop(store);
    env.nats.restart_with_max_payload(64 * 1024).unwrap();
    let planner = env.start_planner().unwrap();
    env.keep(planner);
    let worker = env.start_worker("worker", "noop", &[]).unwrap();
    env.keep(worker);
    let status = env.wait_end(&run, Duration::from_secs(60)).unwrap();
    assert_eq!(status.state, State::Failed);
    let error = status.nodes[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("above the bus's limit of 65536"), "{error}");
    assert_eq!(status.nodes[1].state, State::Succeeded);
}
