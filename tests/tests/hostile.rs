//! Hostile and extreme input, as a skeptical user tries it: files that must be refused at
//! validation (the committed ones under `tests/hostile/`, and generated ones too large to
//! keep), raw HTTP that must get a 4xx with the one error shape, and raw bus messages that
//! must be set aside where a user sees them, never stop the planner.

use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_schemas::status::State;
use baton_tests::Env;

fn env() -> Env {
    Env::new(env!("CARGO_BIN_EXE_baton-under-test")).expect("test env")
}

fn hostile_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("hostile")
}

/// Runs `validate` and `apply` on `file` and checks both exit 2 naming the file and `expected`.
fn refused(env: &Env, file: &Path, expected: &str) {
    for command in ["validate", "apply"] {
        let out = env.cli(&[command, "-f", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{command} {}: {stderr}",
            file.display()
        );
        assert!(
            stderr.contains(&format!("{}: {expected}", file.display())),
            "{command} {}: expected {expected:?} in:\n{stderr}",
            file.display()
        );
    }
}

#[test]
fn every_committed_hostile_file_is_refused_with_its_field_path() {
    let env = env();
    let mut seen = 0;
    for entry in std::fs::read_dir(hostile_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no '# expect:' line", path.display()));
        refused(&env, &path, expected);
        seen += 1;
    }
    assert!(seen >= 5, "only {seen} hostile files found");
}

const HEAD: &str = "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n";

/// Registers a workflow `name` of one noop node through the CLI, starting no run, and
/// returns its document.
fn register_noop(env: &Env, name: &str) -> serde_json::Value {
    let text = format!(
        "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n  nodes:\n  - {{name: a, kind: noop}}\n"
    );
    let file = env.write(&format!("{name}.yaml"), &text);
    let out = env.cli(&["apply", "-f", file.to_str().unwrap(), "--no-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_norway::from_str(&text).unwrap()
}

#[test]
fn deeply_nested_files_are_refused_before_parsing() {
    let env = env();
    // 200 KB of brackets: the YAML parser alone took 34-83 s on it.
    let deep = format!(
        "{HEAD}  nodes: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let file = env.write("deep.yaml", &deep);
    refused(&env, &file, "line 5: nested deeper than 64 levels");
    let json = format!("{}{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    let file = env.write("deep.json", &json);
    refused(&env, &file, "line 1: nested deeper than 64 levels");
}

#[test]
fn arguments_too_large_for_execve_are_refused() {
    let env = env();
    let arg = "x".repeat(200 * 1024);
    let file = env.write(
        "long-arg.yaml",
        &format!("{HEAD}  nodes:\n  - {{name: a, kind: exec, command: [echo, {arg}]}}\n"),
    );
    refused(
        &env,
        &file,
        "spec.nodes[0].command[1]: is 204800 bytes, above the 131071-byte limit",
    );
    let value = "y".repeat(100 * 1024);
    let env_map: Vec<String> = (0..12).map(|i| format!("V{i}: {value}")).collect();
    let file = env.write(
        "big-env.yaml",
        &format!(
            "{HEAD}  nodes:\n  - {{name: a, kind: exec, command: [\"true\"], env: {{{}}}}}\n",
            env_map.join(", ")
        ),
    );
    refused(&env, &file, "spec.nodes[0]: command and env hold");
}

/// Sends one raw HTTP request and returns its status and JSON body.
fn http(
    rt: &tokio::runtime::Runtime,
    env: &Env,
    method: reqwest::Method,
    url: String,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let bearer = format!("Bearer {}", env.tokens.admin);
    http_with(rt, method, url, &[("authorization", &bearer)], body)
}

/// Sends one raw HTTP request with `headers` and returns its status and JSON body.
fn http_with(
    rt: &tokio::runtime::Runtime,
    method: reqwest::Method,
    url: String,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut request = reqwest::Client::new()
            .request(method, url)
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.body(body).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text:?}"));
        (status, body)
    })
}

fn first_error(body: &serde_json::Value) -> String {
    body["errors"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no errors[0] in {body}"))
        .to_owned()
}

#[test]
fn api_errors_are_4xx_with_one_json_shape() {
    let mut env = env();
    let planner = env.start_planner().unwrap();
    env.keep(planner);
    register_noop(&env, "echo");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let base = env.server();
    use reqwest::Method;

    // A trigger whose body is not UTF-8 is refused before it is published.
    let (status, body) = http(
        &rt,
        &env,
        Method::POST,
        format!("{base}/v1/triggers/echo"),
        vec![b'o', b'k', 0xff, 0xfe],
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        first_error(&body).contains("trigger data is not UTF-8 (invalid byte at offset 2)"),
        "{body}"
    );
    // A trigger above the bus's largest message: 413, the limit named.
    let (status, body) = http(
        &rt,
        &env,
        Method::POST,
        format!("{base}/v1/triggers/echo"),
        vec![b'a'; 1_100_000],
    );
    assert_eq!(status, 413, "{body}");
    assert!(
        first_error(&body)
            .contains("trigger data is 1100000 bytes, above the bus's limit of 1048576 bytes"),
        "{body}"
    );
    // No route, a method the path does not take, a body that is not JSON.
    let (status, body) = http(&rt, &env, Method::GET, format!("{base}/v1/nothing"), vec![]);
    assert_eq!(status, 404, "{body}");
    assert_eq!(first_error(&body), "no such path: GET /v1/nothing");
    let (status, body) = http(&rt, &env, Method::DELETE, format!("{base}/v1/runs"), vec![]);
    assert_eq!(status, 405, "{body}");
    assert!(
        first_error(&body).starts_with("/v1/runs does not take DELETE"),
        "{body}"
    );
    let (status, body) = http(
        &rt,
        &env,
        Method::POST,
        format!("{base}/v1/apply"),
        b"{not json".to_vec(),
    );
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(!first_error(&body).is_empty());
    // None of it started a run.
    let out = env.cli(&["runs", "-o", "json"]);
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(runs.is_empty(), "{runs:?}");
}

/// Publishes raw messages as a foreign client would, each acknowledged by the server.
fn publish_raw(env: &Env, messages: &[(String, Option<&str>, Vec<u8>)]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(env.nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        for (subject, run, payload) in messages {
            let mut headers = async_nats::HeaderMap::new();
            if let Some(run) = run {
                headers.insert("Baton-Run", *run);
            }
            js.publish_with_headers(subject.clone(), headers, payload.clone().into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    });
}

#[test]
fn triggers_set_aside_from_the_bus_are_failed_runs_with_the_reason() {
    let mut env = env();
    env.start_all().unwrap();
    register_noop(&env, "good");
    let p = env.prefix.clone();
    publish_raw(
        &env,
        &[
            // Data that is not UTF-8.
            (
                format!("{p}.triggers.good"),
                Some("bad-bytes"),
                vec![0xff, 0x00, 0xfe],
            ),
            // A nested subject whose last token names a registered workflow.
            (
                format!("{p}.triggers.a.b.good"),
                Some("nested"),
                b"x".to_vec(),
            ),
            // A workflow nobody registered.
            (
                format!("{p}.triggers.ghost"),
                Some("ghost-run"),
                b"x".to_vec(),
            ),
            // And a good one after them: the planner goes on.
            (
                format!("{p}.triggers.good"),
                Some("good-run"),
                b"fine".to_vec(),
            ),
        ],
    );
    let good = env.wait_end("good-run", Duration::from_secs(30)).unwrap();
    assert_eq!(good.state, State::Succeeded);
    for (run, reason) in [
        ("bad-bytes", "trigger set aside: trigger data is not UTF-8"),
        ("nested", "trigger set aside: trigger subject \""),
        (
            "ghost-run",
            "trigger set aside: workflow \"ghost\" is not registered",
        ),
    ] {
        let status = env.wait_end(run, Duration::from_secs(30)).unwrap();
        assert_eq!(status.state, State::Failed, "{run}: {status:?}");
        assert!(status.nodes.is_empty(), "{run}: {status:?}");
        let error = status.error.clone().unwrap_or_default();
        assert!(error.starts_with(reason), "{run}: {error:?}");
    }
    let nested = env.status("nested").unwrap();
    assert_eq!(nested.workflow, "a.b.good");
    assert!(nested.error.unwrap().contains("does not name one workflow"),);
}

/// A chain of `n` noop nodes, each needing the one before; with `cycle`, the first needs the
/// last.
fn long_workflow(name: &str, n: usize, cycle: bool) -> serde_json::Value {
    let nodes: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let need = match (i, cycle) {
                (0, false) => None,
                (0, true) => Some(format!("n{}", n - 1)),
                (i, _) => Some(format!("n{}", i - 1)),
            };
            match need {
                Some(need) => {
                    serde_json::json!({"name": format!("n{i}"), "kind": "noop", "needs": [need]})
                }
                None => serde_json::json!({"name": format!("n{i}"), "kind": "noop"}),
            }
        })
        .collect();
    serde_json::json!({
        "apiVersion": "baton.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"nodes": nodes},
    })
}

/// Graph algorithms are iterative: a 200 000-node chain is validated, applied and run-started
/// through the API without harm (the planner's API threads have 2 MiB stacks, where a
/// recursive search overflowed at about 60 000 nodes), a 200 000-node cycle is refused with a
/// short message, and the node limit is configurable.
#[test]
fn a_200_000_node_chain_and_cycle_are_handled_iteratively() {
    const N: usize = 200_000;
    let mut env = env();
    // 200 000 nodes are about 11 MB of JSON, above the default 8 MiB body limit.
    let planner = env
        .start_planner_with(&["--api-body-limit", "67108864"])
        .unwrap();
    env.keep(planner);
    let chain = long_workflow("chain", N, false);
    let cycle = long_workflow("cycle", N, true);
    let chain_file = env.write("chain.json", &chain.to_string());
    let cycle_file = env.write("cycle.json", &cycle.to_string());

    let out = env.cli(&["validate", "-f", chain_file.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    refused(
        &env,
        &cycle_file,
        "spec.nodes[0].needs: cycle: n0 -> n199999 -> n199998",
    );
    let out = env.cli(&["validate", "-f", cycle_file.to_str().unwrap()]);
    assert!(out.stderr.len() < 1000, "the cycle is shown short");
    let out = env.cli(&[
        "validate",
        "-f",
        chain_file.to_str().unwrap(),
        "--max-nodes",
        "1000",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("spec.nodes: 200000 nodes, above the limit of 1000"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Straight to the API, past the CLI's own validation.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let base = env.server();
    let post = |path: &str, body: serde_json::Value| {
        http(
            &rt,
            &env,
            reqwest::Method::POST,
            format!("{base}{path}"),
            body.to_string().into_bytes(),
        )
    };
    let (status, body) = post("/v1/apply", serde_json::json!({"document": cycle}));
    assert_eq!(status, 400, "{body}");
    assert!(
        first_error(&body).contains("cycle: n0 -> n199999"),
        "{body}"
    );
    let (status, body) = post(
        "/v1/apply",
        serde_json::json!({"document": chain, "run": true}),
    );
    assert_eq!(status, 200, "{body}");
    let run = body["run"].as_str().unwrap().to_owned();
    let started = env
        .wait_for(&run, Duration::from_secs(180), |s| {
            s.nodes.len() == N && s.nodes[0].state != State::Pending
        })
        .unwrap();
    assert_eq!(started.nodes[N - 1].state, State::Pending);
    let (status, body) = post(&format!("/v1/runs/{run}/cancel"), serde_json::json!({}));
    assert_eq!(status, 200, "{body}");
    let ended = env.wait_end(&run, Duration::from_secs(180)).unwrap();
    assert_eq!(ended.state, State::Cancelled);
}

/// A client that sends a start again after an ambiguous failure, with the same
/// `Idempotency-Key`, gets the run the first request started, for each way of starting one.
#[test]
fn a_start_sent_again_with_its_idempotency_key_starts_one_run() {
    let mut env = env();
    env.start_all().unwrap();
    let document = register_noop(&env, "once");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let base = env.server();
    let bearer = format!("Bearer {}", env.tokens.admin);
    let twice = |path: &str, key: &str, body: Vec<u8>| -> String {
        let sent: Vec<(u16, serde_json::Value)> = (0..2)
            .map(|_| {
                http_with(
                    &rt,
                    reqwest::Method::POST,
                    format!("{base}{path}"),
                    &[("Idempotency-Key", key), ("authorization", &bearer)],
                    body.clone(),
                )
            })
            .collect();
        assert!(sent.iter().all(|(s, _)| *s < 300), "{sent:?}");
        assert_eq!(sent[0].1["run"], sent[1].1["run"], "{path}");
        sent[0].1["run"].as_str().unwrap().to_owned()
    };
    let started = twice("/v1/workflows/once/runs", "k-start", b"{}".to_vec());
    let triggered = twice("/v1/triggers/once", "k-trigger", b"data".to_vec());
    let apply = serde_json::json!({"document": document, "run": true});
    let applied = twice("/v1/apply", "k-apply", apply.to_string().into_bytes());
    for run in [&started, &triggered, &applied] {
        let status = env.wait_end(run, Duration::from_secs(30)).unwrap();
        assert_eq!(status.state, State::Succeeded);
    }
    // Without a key, two requests are two runs; a malformed key is refused.
    let (_, first) = http(
        &rt,
        &env,
        reqwest::Method::POST,
        format!("{base}/v1/workflows/once/runs"),
        b"{}".to_vec(),
    );
    let (_, second) = http(
        &rt,
        &env,
        reqwest::Method::POST,
        format!("{base}/v1/workflows/once/runs"),
        b"{}".to_vec(),
    );
    assert_ne!(first["run"], second["run"]);
    let (status, body) = http_with(
        &rt,
        reqwest::Method::POST,
        format!("{base}/v1/triggers/once"),
        &[("Idempotency-Key", "two words"), ("authorization", &bearer)],
        b"x".to_vec(),
    );
    assert_eq!(status, 400, "{body}");
    let out = env.cli(&["runs", "-o", "json"]);
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.len(), 5, "{runs:?}");
}

/// The CLI sends one `Idempotency-Key` per invocation and the same one when it sends again:
/// here the first connection is dropped after the request was read (the client cannot know
/// whether it was acted on), and the second is answered.
#[test]
fn the_cli_sends_a_start_again_with_the_same_key() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let mut keys = Vec::new();
        for answer in [false, true] {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("idempotency-key")
                {
                    keys.push(value.trim().to_owned());
                }
                if line.trim().is_empty() {
                    break;
                }
            }
            if answer {
                let body = "{\"run\":\"r1\"}";
                write!(
                    stream,
                    "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
            }
        }
        keys
    });
    let env = env();
    let out = env
        .baton()
        .env("BATON_SERVER", format!("http://127.0.0.1:{port}"))
        .args(["trigger", "once", "--data", "x"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "r1");
    let keys = server.join().unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0], keys[1]);
    assert!(keys[0].len() >= 16, "{keys:?}");
}

/// A job forged on the bus whose node name is not Baton's (not ASCII, too long: cutting it
/// for a pod name sliced inside a character and panicked the worker's task, redelivered 20
/// times) is set aside (terminated, never redelivered), and the worker goes on running real
/// jobs.
#[test]
fn a_forged_job_with_foreign_names_is_set_aside_and_the_worker_goes_on() {
    let mut env = env();
    env.start_all().unwrap();
    let node = format!("a{}", "é".repeat(40));
    let forged = serde_json::json!({
        "v": baton_schemas::wire::SCHEMA_VERSION, "run": "r", "workflow": "w", "node": node,
        "attempt": 1, "kind": "exec", "exec": {"command": ["true"]},
        "inputs": {"initiator": "", "data": ""},
    });
    let p = env.prefix.clone();
    publish_raw(
        &env,
        &[(
            format!("{p}.jobs.exec"),
            None,
            forged.to_string().into_bytes(),
        )],
    );
    let log = env.dir.path().join("worker.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("which are not Baton's names")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the forged job was never set aside"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The worker is still there for real work.
    let out = env.cli(&["apply", "-f", &register_file(&env, "after"), "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes a workflow `name` of one noop node and returns its path.
fn register_file(env: &Env, name: &str) -> String {
    let text = format!(
        "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n  nodes:\n  - {{name: a, kind: noop}}\n"
    );
    env.write(&format!("{name}.yaml"), &text)
        .to_str()
        .unwrap()
        .to_owned()
}
