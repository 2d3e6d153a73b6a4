//! End-to-end: workflows run through a real nats-server with the planner and a worker as
//! separate `baton` processes, driven by the real CLI.

use std::time::Duration;

use baton_schemas::status::{RunStatus, State};
use baton_tests::{Env, lines, open_gate, wait_for_gate, workflow};

fn env() -> Env {
    Env::new(env!("CARGO_BIN_EXE_baton-under-test")).expect("test env")
}

/// A message as a foreign client publishes it: subject, headers, payload.
type Raw<'a> = (String, &'a [(&'a str, &'a str)], &'a str);

/// Publishes messages on the bus as a foreign client would, each one acknowledged by the
/// server.
fn publish_raw(rt: &tokio::runtime::Runtime, env: &Env, messages: &[Raw<'_>]) {
    rt.block_on(async {
        let client = async_nats::connect(env.nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        for (subject, headers, payload) in messages {
            let mut map = async_nats::HeaderMap::new();
            for (name, value) in *headers {
                map.insert(*name, *value);
            }
            js.publish_with_headers(subject.clone(), map, payload.to_string().into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    });
}

fn node<'a>(status: &'a RunStatus, name: &str) -> &'a baton_schemas::status::NodeStatus {
    status
        .nodes
        .iter()
        .find(|n| n.name == name)
        .expect("node in status")
}

fn examples(name: &str) -> String {
    format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn diamond_example_runs_with_data_passing() {
    let mut env = env();
    env.start_all().unwrap();
    let out = env.cli(&[
        "apply",
        "-f",
        &examples("diamond.yaml"),
        "--wait",
        "-o",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: RunStatus = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status.state, State::Succeeded);
    assert_eq!(node(&status, "fetch").output.as_deref(), Some("v1.4.2"));
    assert_eq!(
        node(&status, "build").output.as_deref(),
        Some("image:v1.4.2")
    );
    assert_eq!(
        node(&status, "test").output.as_deref(),
        Some("tests passed for v1.4.2")
    );
    let release = node(&status, "release");
    assert!(
        release.output.as_deref().unwrap().starts_with("released "),
        "{release:?}"
    );
    for n in &status.nodes {
        assert_eq!(n.attempts, 1);
        assert!(n.started_at.is_some() && n.finished_at.is_some(), "{n:?}");
    }
    // The node after the diamond saw both outputs in BATON_INPUTS.
    let wf = env.write(
        "inputs.yaml",
        r#"apiVersion: baton.dev/v1alpha1
kind: Workflow
metadata: {name: inputs}
spec:
  nodes:
    - {name: a, kind: exec, command: [sh, -c, 'printf A > "$BATON_OUTPUT"']}
    - {name: b, kind: exec, command: [sh, -c, 'printf B > "$BATON_OUTPUT"']}
    - {name: join, kind: exec, needs: [a, b], command: [sh, -c, 'printf "%s|%s" "$BATON_INPUTS" "$BATON_RUN" > "$BATON_OUTPUT"']}
"#,
    );
    let run = env.apply(&wf).unwrap();
    let status = env.wait_end(&run, Duration::from_secs(30)).unwrap();
    assert_eq!(
        node(&status, "join").output.as_deref(),
        Some(format!(r#"{{"a":"A","b":"B"}}|{run}"#).as_str())
    );
}

#[test]
fn failing_node_retries_then_its_handler_runs_and_the_run_fails() {
    let mut env = env();
    env.start_all().unwrap();
    let out = env.cli(&[
        "apply",
        "-f",
        &examples("retry-and-handler.yaml"),
        "--wait",
        "-o",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed run exits 1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: RunStatus = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status.state, State::Failed);
    let migrate = node(&status, "migrate");
    assert_eq!((migrate.state, migrate.attempts), (State::Failed, 3));
    let error = migrate.error.as_deref().unwrap();
    assert!(
        error.starts_with("exit code 3") && error.contains("attempt 3: database not reachable"),
        "{error}"
    );
    assert_eq!(node(&status, "deploy").state, State::Skipped);
    let notify = node(&status, "notify");
    assert_eq!(
        (notify.state, notify.output.as_deref()),
        (State::Succeeded, Some("paged"))
    );
}

#[test]
fn invalid_specs_are_refused_with_file_and_field_path() {
    let env = env();
    let bad = env.write(
        "bad.yaml",
        "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: bad}\nspec:\n  nodes:\n  - {name: a, kind: noop}\n  - {name: b, kind: noop}\n  - {name: c, kind: noop}\n  - {name: d, kind: noop, needs: [db]}\n",
    );
    for args in [vec!["validate", "-f"], vec!["apply", "-f"]] {
        let mut args = args;
        args.push(bad.to_str().unwrap());
        let out = env.cli(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "{}: spec.nodes[3].needs[0]: unknown node \"db\"",
                bad.display()
            )),
            "{stderr}"
        );
    }
    let cycle = env.write(
        "cycle.yaml",
        "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: c}\nspec:\n  nodes:\n  - {name: a, kind: noop, needs: [b]}\n  - {name: b, kind: noop, needs: [a]}\n",
    );
    let out = env.cli(&["validate", "-f", cycle.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec.nodes[0].needs: cycle: a -> b -> a")
    );
    let out = env.cli(&["validate", "-f", "/no/such/file.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/file.yaml: cannot read"));
    let out = env.cli(&["validate", "-f", &examples("diamond.yaml")]);
    assert_eq!(out.status.code(), Some(0));
}

/// Every kind of mistake in a spec, through the binary: exit code 2 and a message naming the
/// file and the field path, for `validate` and for `apply` alike.
#[test]
fn every_kind_of_spec_mistake_exits_2_naming_file_and_field() {
    let env = env();
    let head = "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n";
    let cases = [
        (
            "duplicate.yaml",
            "  nodes:\n  - {name: a, kind: noop}\n  - {name: a, kind: noop}\n",
            "spec.nodes[1].name: duplicate node name \"a\" (first used at spec.nodes[0])",
        ),
        (
            "invalid-name.yaml",
            "  nodes:\n  - {name: Bad_Name, kind: noop}\n",
            "spec.nodes[0].name: invalid name \"Bad_Name\": use at most 63 lowercase letters",
        ),
        (
            "bad-duration.yaml",
            "  nodes:\n  - {name: a, kind: exec, command: [\"true\"], timeout: 5 parsecs}\n",
            "spec.nodes[0].timeout: invalid duration \"5 parsecs\"",
        ),
        (
            "bad-backoff.yaml",
            "  nodes:\n  - {name: a, kind: exec, command: [\"true\"], retries: {limit: 2, backoff: {initial: soon}}}\n",
            "spec.nodes[0].retries.backoff.initial: invalid duration \"soon\"",
        ),
        (
            "zero-timeout.yaml",
            "  nodes:\n  - {name: a, kind: exec, command: [\"true\"], timeout: 0s}\n",
            "spec.nodes[0].timeout: must be longer than zero",
        ),
        (
            "unknown-node-field.yaml",
            "  nodes:\n  - {name: a, kind: noop, retires: 3}\n",
            "spec.nodes[0].retires: unknown field `retires`",
        ),
        (
            "unknown-spec-field.yaml",
            "  bogus: 1\n  nodes:\n  - {name: a, kind: noop}\n",
            "spec.bogus: unknown field `bogus`",
        ),
    ];
    for (name, body, expected) in cases {
        let file = env.write(name, &format!("{head}{body}"));
        for command in ["validate", "apply"] {
            let out = env.cli(&[command, "-f", file.to_str().unwrap()]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {name}: {stderr}");
            assert!(
                stderr.contains(&format!("{}: {expected}", file.display())),
                "{command} {name}: {stderr}"
            );
        }
    }
}

const ECHO_DATA: &str = r#"apiVersion: baton.dev/v1alpha1
kind: Workflow
metadata: {name: echo}
spec:
  nodes:
    - {name: first, kind: exec, command: [sh, -c, 'printf "%s from %s" "$BATON_DATA" "$BATON_INITIATOR" > "$BATON_OUTPUT"']}
"#;

#[test]
fn a_message_on_the_trigger_subject_starts_a_run_with_its_data() {
    let mut env = env();
    env.start_all().unwrap();
    let wf = env.write("echo.yaml", ECHO_DATA);
    let out = env.cli(&["apply", "-f", wf.to_str().unwrap(), "--no-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env.status_list().is_empty(), "--no-run starts nothing");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(env.nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.publish(format!("{}.triggers.echo", env.prefix), "payload-1".into())
            .await
            .unwrap()
            .await
            .unwrap();
    });
    let run = wait_for_first_run(&env);
    let status = env.wait_end(&run, Duration::from_secs(30)).unwrap();
    assert_eq!(status.state, State::Succeeded);
    assert_eq!(
        node(&status, "first").output.as_deref(),
        Some("payload-1 from echo")
    );

    // `baton trigger` goes the same way and prints the run id it chose.
    let out = env.cli(&["trigger", "echo", "--data", "payload-2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let status = env.wait_end(&run, Duration::from_secs(30)).unwrap();
    assert_eq!(
        node(&status, "first").output.as_deref(),
        Some("payload-2 from echo")
    );

    // `baton trigger` for a workflow nobody registered is refused: exit 1, no run id.
    let before = env.status_list().len();
    let out = env.cli(&["trigger", "nobody", "--data", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no run id is printed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("workflow \"nobody\" is not registered"),
        "{stderr}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(env.status_list().len(), before, "no run started");
}

fn wait_for_first_run(env: &Env) -> String {
    for _ in 0..100 {
        if let Some(run) = env.status_list().first() {
            return run.run.clone();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no run started");
}

trait ListRuns {
    fn status_list(&self) -> Vec<RunStatus>;
}

impl ListRuns for Env {
    fn status_list(&self) -> Vec<RunStatus> {
        let out = self.cli(&["runs", "-o", "json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

#[test]
fn cancel_stops_running_nodes_and_nothing_new_starts() {
    let mut env = env();
    env.start_all().unwrap();
    let marker = env.dir.path().join("marker");
    let m = marker.display();
    let nodes = [
        format!(
            "{{name: sleeper, kind: exec, command: [sh, -c, 'echo started >> {m}; sleep 20; echo finished >> {m}']}}"
        ),
        format!(
            "{{name: after, kind: exec, needs: [sleeper], command: [sh, -c, 'echo after >> {m}']}}"
        ),
    ];
    let wf = env.write("slow.yaml", &workflow("slow", &nodes));
    let run = env.apply(&wf).unwrap();
    env.wait_for(&run, Duration::from_secs(20), |_| lines(&marker).len() == 1)
        .unwrap();
    let out = env.cli(&["cancel", &run]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = env.wait_end(&run, Duration::from_secs(5)).unwrap();
    assert_eq!(status.state, State::Cancelled);
    assert!(
        status.nodes.iter().all(|n| n.state == State::Cancelled),
        "{status:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        lines(&marker),
        ["started"],
        "the sleeping process was killed and nothing new started"
    );
    let out = env.cli(&["cancel", "nosuchrun"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn a_cancelled_run_whose_job_waits_in_the_queue_never_runs_it() {
    let mut env = env();
    let planner = env.start_planner().unwrap();
    env.keep(planner);
    // One exec job at a time: the second run's job waits in the queue behind the first's.
    let worker = env
        .start_worker("worker", "noop,exec", &["--concurrency", "1"])
        .unwrap();
    let marker = env.dir.path().join("marker");
    let m = marker.display();
    // `hold` keeps the only slot until the queued run has been cancelled.
    let gate = env.dir.path().join("gate");
    let busy = env.write(
        "busy.yaml",
        &workflow(
            "busy",
            &[format!(
                "{{name: hold, kind: exec, command: [sh, -c, 'echo hold >> {m}; {}']}}",
                wait_for_gate(&gate)
            )],
        ),
    );
    let queued = env.write(
        "queued.yaml",
        &workflow(
            "queued",
            &[format!(
                "{{name: never, kind: exec, command: [sh, -c, 'echo never >> {m}']}}"
            )],
        ),
    );
    let busy = env.apply(&busy).unwrap();
    env.wait_for(&busy, Duration::from_secs(20), |_| {
        lines(&marker).len() == 1
    })
    .unwrap();
    let queued = env.apply(&queued).unwrap();
    let out = env.cli(&["cancel", &queued]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        env.wait_end(&queued, Duration::from_secs(5)).unwrap().state,
        State::Cancelled
    );
    open_gate(&gate);
    assert_eq!(
        env.wait_end(&busy, Duration::from_secs(30)).unwrap().state,
        State::Succeeded
    );
    // The worker is free now; it takes the cancelled run's job and drops it.
    worker
        .wait_log(
            "job of a cancelled run or node dropped",
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("the cancelled job was never taken: {e}"));
    assert_eq!(lines(&marker), ["hold"], "the queued command never ran");
}

#[test]
fn node_timeout_kills_the_process_and_fails_the_node() {
    let mut env = env();
    env.start_all().unwrap();
    let wf = env.write(
        "timeout.yaml",
        r#"apiVersion: baton.dev/v1alpha1
kind: Workflow
metadata: {name: timeout}
spec:
  nodes:
    - {name: hang, kind: exec, timeout: 500ms, command: [sh, -c, 'echo hanging; sleep 30']}
"#,
    );
    let run = env.apply(&wf).unwrap();
    let status = env.wait_end(&run, Duration::from_secs(15)).unwrap();
    let hang = node(&status, "hang");
    assert_eq!(hang.state, State::Failed);
    assert!(
        hang.error
            .as_deref()
            .unwrap()
            .starts_with("timed out after 500ms; last output:\nhanging"),
        "{hang:?}"
    );
}

#[test]
fn poison_messages_are_set_aside_and_reported() {
    let mut env = env();
    env.start_all().unwrap();
    // `slow` runs until the poison job's failure has ended its run.
    let gate = env.dir.path().join("gate");
    let wf = env.write(
        "victim.yaml",
        &workflow(
            "victim",
            &[format!(
                "{{name: slow, kind: exec, command: [sh, -c, '{}']}}",
                wait_for_gate(&gate)
            )],
        ),
    );
    let run = env.apply(&wf).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let poison_job_headers = [
        ("Baton-Run", run.as_str()),
        ("Baton-Node", "slow"),
        ("Baton-Attempt", "1"),
        ("Nats-Msg-Id", "poison-1"),
    ];
    let events = format!("{}.events.{run}", env.prefix);
    publish_raw(
        &rt,
        &env,
        &[
            // A job that does not decode, but whose headers name the node: reported as its
            // failure.
            (
                format!("{}.jobs.exec", env.prefix),
                &poison_job_headers,
                "{not json",
            ),
            // An event that does not decode and a job that names nothing: logged and set aside.
            (events.clone(), &[], "garbage"),
            (format!("{}.jobs.noop", env.prefix), &[], "garbage"),
            (events, &[], r#"{"v":99,"type":"nodeFinished"}"#),
        ],
    );
    let status = env.wait_end(&run, Duration::from_secs(20)).unwrap();
    open_gate(&gate);
    let slow = node(&status, "slow");
    assert_eq!(slow.state, State::Failed);
    assert!(
        slow.error
            .as_deref()
            .unwrap()
            .starts_with("job set aside: undecodable job"),
        "{slow:?}"
    );

    // Nothing is retried forever: every consumer is drained and Baton still runs workflows.
    let wf = env.write("echo.yaml", ECHO_DATA);
    let run = env.apply(&wf).unwrap();
    assert_eq!(
        env.wait_end(&run, Duration::from_secs(20)).unwrap().state,
        State::Succeeded
    );
    // The real job of `slow` may still be sleeping: it has a few seconds to be acked.
    baton_tests::settle(
        &env,
        &[
            ("EVENTS", "planner-events"),
            ("JOBS", "worker-noop"),
            ("JOBS", "worker-noop-batch"),
            ("JOBS", "worker-exec"),
        ],
    );
    let planner_log = std::fs::read_to_string(env.dir.path().join("planner.log")).unwrap();
    assert!(
        planner_log.contains("poison event set aside"),
        "the planner reports what it sets aside"
    );
    assert!(planner_log.contains("schema version 99 is not known"));
    let worker_log = std::fs::read_to_string(env.dir.path().join("worker.log")).unwrap();
    assert!(worker_log.contains("poison job names no node; set aside"));

    // An event that does not decode, whose headers name the attempt (as every event a worker
    // publishes does): the attempt fails with the reason, and the run ends.
    let wf = env.write(
        "victim2.yaml",
        &workflow(
            "victim2",
            &["{name: slow, kind: exec, command: [sh, -c, 'sleep 10']}".to_owned()],
        ),
    );
    let run = env.apply(&wf).unwrap();
    env.wait_for(&run, Duration::from_secs(20), |s| {
        s.nodes[0].started_at.is_some()
    })
    .unwrap();
    publish_raw(
        &rt,
        &env,
        &[(
            format!("{}.events.{run}", env.prefix),
            &[
                ("Baton-Run", run.as_str()),
                ("Baton-Node", "slow"),
                ("Baton-Attempt", "1"),
            ],
            "{\"v\":1,\"type\":\"nodeFinished\"",
        )],
    );
    let status = env.wait_end(&run, Duration::from_secs(5)).unwrap();
    assert_eq!(status.state, State::Failed, "{status:?}");
    let slow = node(&status, "slow");
    assert_eq!(slow.state, State::Failed);
    assert!(
        slow.error
            .as_deref()
            .unwrap()
            .starts_with("event set aside: undecodable event"),
        "{slow:?}"
    );
}

#[test]
fn a_job_longer_than_its_ack_wait_is_kept_alive_by_progress_acks() {
    let mut env = env();
    // The job takes three ack waits; progress acks go every third of one, which leaves a
    // busy machine some seconds of slack.
    env.job_ack_wait = "6s";
    env.start_all().unwrap();
    let file = env.dir.path().join("effects");
    let f = file.display();
    let node = format!(
        "{{name: long, kind: exec, command: [sh, -c, 'echo begin >> {f}; sleep 18; echo end >> {f}']}}"
    );
    let wf = env.write("long.yaml", &workflow("long", &[node]));
    let run = env.apply(&wf).unwrap();
    let status = env.wait_end(&run, Duration::from_secs(60)).unwrap();
    assert_eq!(status.state, State::Succeeded);
    assert_eq!(
        lines(&file),
        ["begin", "end"],
        "no redelivery while the worker reports progress"
    );
}

#[test]
fn finished_runs_are_forgotten_after_the_run_retention() {
    let mut env = env();
    let mut planner = env.start_planner_with(&["--run-retention", "2s"]).unwrap();
    let worker = env.start_worker("worker", "noop,exec", &[]).unwrap();
    env.keep(worker);
    let wf = env.write(
        "quick.yaml",
        &workflow("quick", &["{name: a, kind: noop}".to_owned()]),
    );
    let run = env.apply(&wf).unwrap();
    assert_eq!(
        env.wait_end(&run, Duration::from_secs(20)).unwrap().state,
        State::Succeeded
    );
    let started = std::time::Instant::now();
    while !env.status_list().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the finished run is still kept"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(env.status(&run).is_err(), "the run is gone from the API");
    // Gone from the store too: a restarted planner does not bring it back.
    planner.kill9();
    drop(planner);
    let planner = env.start_planner().unwrap();
    env.keep(planner);
    assert!(env.status_list().is_empty());
}

#[test]
fn delete_forgets_a_workflow_task_or_ignitor_by_kind_and_name() {
    let mut env = env();
    env.start_all().unwrap();
    let text = [
        workflow("hello", &["{name: a, kind: noop}".to_owned()]),
        "---\napiVersion: sirocco.cloud/v1alpha1\nkind: Task\nmetadata: {name: t1}\nspec: {startOnIgnition: [hourly], template: {spec: {containers: [{name: c, image: busybox}]}}}\n---\napiVersion: sirocco.cloud/v1alpha1\nkind: Ignitor\nmetadata: {name: hourly}\nspec: {scheduled: '@hourly'}\n".to_owned(),
    ]
    .concat();
    let file = env.write("docs.yaml", &text);
    let out = env.cli(&["apply", "-f", file.to_str().unwrap(), "--no-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = |what: &str| -> Vec<String> {
        let out = env.cli(&[what, "-o", "json"]);
        let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        all.iter()
            .map(|v| v["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        (names("tasks"), names("ignitors")),
        (vec!["t1".to_owned()], vec!["hourly".to_owned()])
    );
    for (kind, name, shown) in [
        ("task", "t1", "Task/t1 deleted"),
        ("ig", "hourly", "Ignitor/hourly deleted"),
        ("workflow", "hello", "Workflow/hello deleted"),
    ] {
        let out = env.cli(&["delete", kind, name]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), shown);
    }
    assert!(names("tasks").is_empty() && names("ignitors").is_empty());
    // The workflow is gone: it starts no run.
    let out = env.cli(&["trigger", "hello"]);
    assert_eq!(out.status.code(), Some(1));
    // An unknown name is exit 1 with the reason; an unknown kind is a usage error, exit 2.
    let out = env.cli(&["delete", "task", "t1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("task \"t1\" is not registered"));
    let out = env.cli(&["delete", "workflow", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("workflow \"nope\" is not registered"));
    let out = env.cli(&["delete", "gadget", "x"]);
    assert_eq!(out.status.code(), Some(2));
}
