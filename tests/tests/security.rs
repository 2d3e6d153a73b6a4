//! Who may call the API: bearer tokens and roles, every refusal and every allowed path,
//! against a real planner, with the CLI and with raw HTTP requests.

use std::time::Duration;

use baton_schemas::status::State;
use baton_tests::{Env, assert_fails, workflow};

fn env() -> Env {
    Env::new(env!("CARGO_BIN_EXE_baton-under-test")).unwrap()
}

/// One HTTP request with an optional bearer token; returns the status, the
/// `WWW-Authenticate` header and the JSON body.
fn request(
    env: &Env,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: serde_json::Value,
) -> (u16, Option<String>, serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", env.server()))
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, challenge, body)
    })
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_planner_does_not_serve_its_api_without_a_way_to_authenticate() {
    let env = env();
    let out = env
        .baton()
        .env_remove("BATON_API_TOKEN_FILE")
        .args(["planner", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_fails(
        &out,
        2,
        "the API needs --api-token-file (BATON_API_TOKEN_FILE) or --api-auth-kubernetes, or --api-no-auth",
    );

    // A token file with a bad line: the file and line are named, the tokens are not.
    let file = env.write(
        "bad-tokens.csv",
        "first-secret-0123456789,ci,operator\nsecond-secret-0123456789,bob,superuser\n",
    );
    let out = env
        .baton()
        .env("BATON_API_TOKEN_FILE", &file)
        .args(["planner", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let said = assert_fails(
        &out,
        2,
        &format!(
            "{}:2: the role (third field) is not viewer, operator or admin",
            file.display()
        ),
    );
    assert!(!said.contains("secret-0123456789"), "{said}");
}

#[test]
fn each_role_may_do_what_it_is_given_and_is_told_why_not_beyond() {
    use reqwest::Method;
    let mut env = env();
    env.start_all().unwrap();
    let tokens = env.tokens.clone();
    let file = env.write(
        "hello.yaml",
        &workflow("hello", &["{name: a, kind: noop}".to_owned()]),
    );
    let document: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let apply = serde_json::json!({"document": document, "run": false});
    let none = serde_json::json!({});

    // The health probe is open; everything else needs a known token.
    let (status, _, _) = request(&env, Method::GET, "/healthz", None, none.clone());
    assert_eq!(status, 200);
    for token in [None, Some("not-a-token-anyone-was-given")] {
        let (status, challenge, body) = request(&env, Method::GET, "/v1/runs", token, none.clone());
        assert_eq!(status, 401, "{body}");
        assert_eq!(challenge.as_deref(), Some("Bearer realm=\"baton\""));
        let why = body["errors"][0].as_str().unwrap();
        assert!(
            why == "no bearer token: the API takes `Authorization: Bearer <token>`"
                || why == "the bearer token is not one the API knows",
            "{body}"
        );
    }
    // A path with no route is not shown to strangers either.
    let (status, _, _) = request(&env, Method::GET, "/v1/nothing", None, none.clone());
    assert_eq!(status, 401);

    // A viewer reads, and may not start or apply.
    let viewer = Some(tokens.viewer.as_str());
    let (status, _, body) = request(&env, Method::GET, "/v1/runs", viewer, none.clone());
    assert_eq!((status, body), (200, serde_json::json!([])));
    let (status, _, body) = request(&env, Method::POST, "/v1/apply", viewer, apply.clone());
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["errors"][0],
        "test-viewer has the viewer role; POST /v1/apply needs admin"
    );

    // An operator starts and cancels runs, and may not apply or delete.
    let operator = Some(tokens.operator.as_str());
    let (status, _, body) = request(&env, Method::POST, "/v1/apply", operator, apply.clone());
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = request(&env, Method::POST, "/v1/apply", Some(&tokens.admin), apply);
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = request(
        &env,
        Method::POST,
        "/v1/workflows/hello/runs",
        viewer,
        none.clone(),
    );
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = request(
        &env,
        Method::POST,
        "/v1/workflows/hello/runs",
        operator,
        none.clone(),
    );
    assert_eq!(status, 200, "{body}");
    let run = body["run"].as_str().unwrap().to_owned();
    let (status, _, body) = request(
        &env,
        Method::DELETE,
        "/v1/workflows/hello",
        operator,
        none.clone(),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["errors"][0],
        "test-operator has the operator role; DELETE /v1/workflows/hello needs admin"
    );
    let ended = env.wait_end(&run, Duration::from_secs(30)).unwrap();
    assert_eq!(ended.state, State::Succeeded);

    // The CLI sends BATON_TOKEN, or the token in --token-file, and says why it was refused.
    let file_arg = file.to_str().unwrap();
    let out = env
        .baton()
        .env("BATON_TOKEN", &tokens.viewer)
        .args(["apply", "-f", file_arg])
        .output()
        .unwrap();
    assert_fails(
        &out,
        1,
        "refused the request (403, beyond the token's role): test-viewer has the viewer role; POST /v1/apply needs admin",
    );
    let out = env
        .baton()
        .env_remove("BATON_TOKEN")
        .args(["runs"])
        .output()
        .unwrap();
    assert_fails(
        &out,
        1,
        "refused the request (401, not authenticated): no bearer token: the API takes `Authorization: Bearer <token>`; give its token in BATON_TOKEN or a file with --token-file",
    );
    let token_file = env.write("operator.token", &format!("{}\n", tokens.operator));
    let out = env
        .baton()
        .env_remove("BATON_TOKEN")
        .arg("apply")
        .arg("--token-file")
        .arg(&token_file)
        .args(["-f", file_arg])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "an operator may not apply");
    let out = env
        .baton()
        .env_remove("BATON_TOKEN")
        .env("BATON_TOKEN_FILE", &token_file)
        .args(["status", &run, "-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // No token is written to any log.
    assert_no_log_holds(env, &[&tokens.admin, &tokens.operator, &tokens.viewer]);
}

/// Stops the env's processes and checks that none of `secrets` is in its logs.
fn assert_no_log_holds(env: Env, secrets: &[&str]) {
    let dir = env.dir.path().to_owned();
    let logs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    assert!(logs.iter().any(|p| p.ends_with("planner.log")), "{logs:?}");
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        for secret in secrets {
            assert!(!text.contains(secret), "{} holds a token", log.display());
        }
    }
    drop(env);
}

/// `exec` nodes run any command on a worker: a planner refuses documents that use them
/// unless --allow-kinds names them, at apply, with the field path and exit 2.
#[test]
fn a_planner_refuses_exec_nodes_unless_allowed() {
    let mut env = env();
    let mut planner = env.planner_command();
    planner.env_remove("BATON_ALLOW_KINDS");
    let planner = env.spawn("planner", planner).unwrap();
    env.keep(planner);
    baton_tests::wait_for_port(env.api_port, Duration::from_secs(30)).unwrap();
    let file = env.write(
        "shell.yaml",
        &workflow(
            "shell",
            &[
                "{name: a, kind: noop}".to_owned(),
                "{name: b, kind: exec, command: [id], needs: [a]}".to_owned(),
            ],
        ),
    );
    let out = env.cli(&["apply", "-f", file.to_str().unwrap()]);
    assert_fails(
        &out,
        2,
        "spec.nodes[1].kind: exec nodes are not allowed by this planner (it allows: noop, pod, webhook, publish, helm, traffic, analysis; --allow-kinds, BATON_ALLOW_KINDS)",
    );
    let noop = env.write(
        "fine.yaml",
        &workflow("fine", &["{name: a, kind: noop}".to_owned()]),
    );
    let out = env.cli(&["apply", "-f", noop.to_str().unwrap(), "--no-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.cli(&["runs", "-o", "json"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "[]",
        "nothing ran"
    );
}

/// A token granted or revoked in the token file counts within seconds, without a restart;
/// a file rewritten into one that does not read keeps the tokens before it.
#[test]
fn the_token_file_is_read_again_when_it_changes() {
    use reqwest::Method;
    let mut env = env();
    let planner = env.start_planner().unwrap();
    env.keep(planner);
    let none = serde_json::Value::Null;
    let file = env.dir.path().join("api-tokens.csv");
    let newcomer = "newcomer-token-0123456789";
    let status_of =
        |token: &str| request(&env, Method::GET, "/v1/runs", Some(token), none.clone()).0;
    assert_eq!(status_of(newcomer), 401);
    // Granted to a newcomer, revoked from the viewer.
    std::fs::write(
        &file,
        format!(
            "{},test-admin,admin\n{newcomer},newcomer,viewer\n",
            env.tokens.admin
        ),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while status_of(newcomer) != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new token never counted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status_of(&env.tokens.viewer), 401);
    // A broken rewrite keeps what was read last, and says so without a token.
    std::fs::write(&file, format!("{newcomer},broken\n")).unwrap();
    let log = env.dir.path().join("planner.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("the previous ones are kept")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the broken file was not reported"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status_of(newcomer), 200);
    assert_no_log_holds(env, &[newcomer]);
}

/// A body above `--api-body-limit` is answered 413 with the limit named, before the
/// planner reads it; one below is read.
#[test]
fn a_body_above_the_limit_is_refused_with_413() {
    use reqwest::Method;
    let mut env = env();
    let planner = env
        .start_planner_with(&["--api-body-limit", "4096"])
        .unwrap();
    env.keep(planner);
    let admin = Some(env.tokens.admin.as_str());
    let large = serde_json::json!({"document": {"padding": "x".repeat(8192)}});
    let (status, _, body) = request(&env, Method::POST, "/v1/apply", admin, large);
    assert_eq!(status, 413, "{body}");
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("limit of 4096 bytes (--api-body-limit)"),
        "{body}"
    );
    let small = serde_json::json!({"document": {"apiVersion": "baton.dev/v1alpha1", "kind": "Workflow",
        "metadata": {"name": "small"}, "spec": {"nodes": [{"name": "a", "kind": "noop"}]}}, "run": false});
    let (status, _, body) = request(&env, Method::POST, "/v1/apply", admin, small);
    assert_eq!(status, 200, "{body}");
}
