//! The API over HTTPS with certificates made at test time: the CLI trusts the CA it is given,
//! a renewed certificate is served without a restart, and a client that sends nothing is
//! disconnected.

use std::io::Read;
use std::time::{Duration, Instant};

use baton_schemas::status::State;
use baton_tests::tls::Ca;
use baton_tests::{Env, assert_fails, workflow};

fn env() -> Env {
    Env::new(env!("CARGO_BIN_EXE_baton-under-test")).unwrap()
}

/// Writes a file whole under another name and renames it over `path`, as cert-manager and
/// kubelet's secret volumes do.
fn replace(path: &std::path::Path, text: &str) {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, path).unwrap();
}

/// Returns the status of `GET /healthz` over HTTPS trusting only `ca`, or the error.
fn health(url: &str, ca: &str) -> Result<u16, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs = reqwest::Certificate::from_pem_bundle(ca.as_bytes()).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only(certs)
            .build()
            .unwrap();
        match client.get(format!("{url}/healthz")).send().await {
            Ok(r) => Ok(r.status().as_u16()),
            Err(e) => Err(format!("{e:?}")),
        }
    })
}

#[test]
fn the_api_serves_https_and_takes_a_renewed_certificate_without_a_restart() {
    let mut env = env();
    let first = Ca::new("baton-test-api-ca-1").unwrap();
    let pem = first.serving("baton-api", &["localhost"]).unwrap();
    let cert = env.write("api.crt", &pem.cert);
    let key = env.write("api.key", &pem.key);
    let ca_file = env.write("ca.crt", &first.pem);
    let https = format!("https://127.0.0.1:{}", env.api_port);
    env.extra_env
        .push(("BATON_SERVER".to_owned(), https.clone()));
    env.extra_env
        .push(("BATON_CA_CERT".to_owned(), ca_file.display().to_string()));
    let planner = env
        .start_planner_with(&[
            "--api-tls-cert",
            cert.to_str().unwrap(),
            "--api-tls-key",
            key.to_str().unwrap(),
        ])
        .unwrap();
    env.keep(planner);
    let worker = env.start_worker("worker", "noop", &[]).unwrap();
    env.keep(worker);

    // The CLI, trusting the CA it is given, applies and follows a run over HTTPS.
    let file = env.write(
        "hello.yaml",
        &workflow("hello", &["{name: a, kind: noop}".to_owned()]),
    );
    let run = env.apply(&file).unwrap();
    let status = env.wait_end(&run, Duration::from_secs(30)).unwrap();
    assert_eq!(status.state, State::Succeeded);
    // Without that CA, the system's roots do not vouch for the certificate.
    let out = env
        .baton()
        .env_remove("BATON_CA_CERT")
        .args(["runs"])
        .output()
        .unwrap();
    assert_fails(&out, 1, "cannot reach the Baton API at https://");
    // Plain HTTP on the HTTPS port gets no answer.
    let plain = env
        .baton()
        .env("BATON_SERVER", env.server())
        .args(["runs"])
        .output()
        .unwrap();
    assert_eq!(plain.status.code(), Some(1));

    // A renewed pair from another CA (the key written first, as a renewal may): served once
    // both files are in place, with no restart.
    let second = Ca::new("baton-test-api-ca-2").unwrap();
    let renewed = second.serving("baton-api", &["localhost"]).unwrap();
    assert_eq!(health(&https, &first.pem), Ok(200));
    replace(&key, &renewed.key);
    replace(&cert, &renewed.cert);
    let started = Instant::now();
    while health(&https, &second.pem) != Ok(200) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the renewed certificate was not served: {:?}",
            health(&https, &second.pem)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(health(&https, &first.pem).is_err(), "the old one is gone");
}

#[test]
fn a_bad_certificate_stops_the_planner_before_it_starts() {
    let env = env();
    let ca = Ca::new("baton-test-api-ca").unwrap();
    let one = ca.serving("one", &["localhost"]).unwrap();
    let other = ca.serving("other", &["localhost"]).unwrap();
    let cert = env.write("api.crt", &one.cert);
    let key = env.write("api.key", &other.key);
    let out = env
        .baton()
        .args(["planner", "--listen", "127.0.0.1:0", "--api-tls-cert"])
        .arg(&cert)
        .arg("--api-tls-key")
        .arg(&key)
        .output()
        .unwrap();
    let said = assert_fails(
        &out,
        2,
        &format!("{}: the key cannot serve the certificate", key.display()),
    );
    assert!(!said.contains("PRIVATE KEY"), "{said}");
}

/// A client that opens a connection and sends half a request is disconnected after the idle
/// deadline, and the API goes on answering others.
#[test]
fn a_client_that_sends_nothing_is_disconnected() {
    let mut env = env();
    let planner = env
        .start_planner_with(&["--api-idle-timeout", "1s"])
        .unwrap();
    env.keep(planner);
    let mut idle = std::net::TcpStream::connect(("127.0.0.1", env.api_port)).unwrap();
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", env.api_port)).unwrap();
    std::io::Write::write_all(&mut slow, b"GET /v1/runs HTTP/1.1\r\nHost: x\r\n").unwrap();
    for stream in [&mut idle, &mut slow] {
        // Bounded: a server that never closes fails the test after 20 s.
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut rest = Vec::new();
        let closed = stream.read_to_end(&mut rest);
        assert!(
            closed.is_ok(),
            "the API did not close the connection: {closed:?}"
        );
    }
    let out = env.cli(&["runs", "-o", "json"]);
    assert!(out.status.success());
}
