//! Every way NATS users have credentials, against a real nats-server configured for it: a
//! token, an NKey seed, a `.creds` file (JWT, decentralized accounts), TLS with a CA made at
//! test time and mutual TLS. Each is accepted when right and refused when wrong, and a
//! process given the wrong one exits 2 without printing the secret.

use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_bus::{Bus, BusConfig, BusError, BusErrorKind, NatsCredentials};
use baton_tests::nats_jwt::Operator;
use baton_tests::tls::Ca;
use baton_tests::{Nats, assert_fails};

const PROGRAM: &str = env!("CARGO_BIN_EXE_baton-under-test");

/// A nats-server with `config` in its own directory.
struct Server {
    dir: tempfile::TempDir,
    nats: Nats,
}

impl Server {
    fn start(config: impl FnOnce(&Path) -> String) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let text = config(dir.path());
        let file = dir.path().join("nats-server.conf");
        std::fs::write(&file, text).unwrap();
        let nats = Nats::start_configured(dir.path(), file, Vec::new()).unwrap();
        Server { dir, nats }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Connects a bus with `credentials` to `url` (the server's, unless given).
    fn connect(&self, url: Option<&str>, credentials: NatsCredentials) -> Result<Bus, BusError> {
        let url = url.map_or_else(|| self.nats.url(), str::to_owned);
        runtime().block_on(async {
            let bus = open(&url, credentials, Duration::from_secs(20)).await?;
            // Connected and allowed to use the bus: a round trip to the server.
            bus.client()
                .flush()
                .await
                .map_err(|e| BusError::with_source(BusErrorKind::Disconnected, "flush", e))?;
            Ok(bus)
        })
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Opens a bus with `credentials` on `url`, waiting at most `within` for the first
/// connection.
async fn open(url: &str, credentials: NatsCredentials, within: Duration) -> Result<Bus, BusError> {
    let config = BusConfig {
        prefix: "cred".into(),
        credentials,
        ..BusConfig::default()
    };
    Bus::connect(url, config, within).await
}

/// Tries to connect for a few seconds: for credentials that can never connect, whose failure
/// a server reports only by closing the connection (a TLS handshake refused).
fn connect_briefly(url: &str, credentials: NatsCredentials) -> Result<Bus, BusError> {
    runtime().block_on(open(url, credentials, Duration::from_secs(3)))
}

fn refused(result: Result<Bus, BusError>) -> String {
    let e = result.expect_err("refused");
    assert_eq!(e.kind(), BusErrorKind::Refused, "{e}");
    e.to_string()
}

#[test]
fn a_token_file() {
    let server = Server::start(|_| "authorization { token: \"tok-7f3a9c1e5b\" }\n".into());
    let right = server.write("token", "tok-7f3a9c1e5b\n");
    let wrong = server.write("wrong", "tok-0000000000\n");
    server
        .connect(
            None,
            NatsCredentials {
                token_file: Some(right),
                ..Default::default()
            },
        )
        .unwrap();
    let said = refused(server.connect(
        None,
        NatsCredentials {
            token_file: Some(wrong.clone()),
            ..Default::default()
        },
    ));
    assert!(!said.contains("tok-0000000000"), "{said}");
    // The worker process says so, exit 2, without the token.
    let out = std::process::Command::new(PROGRAM)
        .args(["worker", "--kinds", "noop", "--nats-url"])
        .arg(server.nats.url())
        .env("BATON_NATS_TOKEN_FILE", &wrong)
        .output()
        .unwrap();
    let said = assert_fails(&out, 2, "refused a token");
    assert!(!said.contains("tok-0000000000"), "{said}");
}

#[test]
fn an_nkey_seed_file() {
    let user = nkeys::KeyPair::new_user();
    let public = user.public_key();
    let server =
        Server::start(|_| format!("authorization {{ users = [ {{ nkey: {public} }} ] }}\n"));
    let seed = server.write("seed", &format!("{}\n", user.seed().unwrap()));
    server
        .connect(
            None,
            NatsCredentials {
                nkey_seed_file: Some(seed),
                ..Default::default()
            },
        )
        .unwrap();
    let stranger = nkeys::KeyPair::new_user();
    let other = server.write("other", &stranger.seed().unwrap());
    refused(server.connect(
        None,
        NatsCredentials {
            nkey_seed_file: Some(other),
            ..Default::default()
        },
    ));
}

#[test]
fn a_creds_file_of_decentralized_accounts() {
    let operator = Operator::new().unwrap();
    let server = Server::start(|dir| {
        let jwt = dir.join("operator.jwt");
        std::fs::write(&jwt, &operator.jwt).unwrap();
        operator.server_config(&jwt)
    });
    let creds = server.write("planner.creds", &operator.user_creds("planner").unwrap());
    server
        .connect(
            None,
            NatsCredentials {
                creds_file: Some(creds),
                ..Default::default()
            },
        )
        .unwrap();
    // A user of an account this operator never signed.
    let stranger = Operator::new().unwrap();
    let foreign = server.write("foreign.creds", &stranger.user_creds("spy").unwrap());
    refused(server.connect(
        None,
        NatsCredentials {
            creds_file: Some(foreign),
            ..Default::default()
        },
    ));
    // A file that is no creds file is named, its contents are not.
    let garbage = server.write("garbage.creds", "secret-looking-garbage\n");
    let e = server
        .connect(
            None,
            NatsCredentials {
                creds_file: Some(garbage),
                ..Default::default()
            },
        )
        .err()
        .unwrap();
    assert_eq!(e.kind(), BusErrorKind::Config, "{e}");
    assert!(e.to_string().contains("garbage.creds"), "{e}");
    assert!(!e.to_string().contains("secret-looking-garbage"), "{e}");
}

#[test]
fn tls_with_a_ca_and_mutual_tls() {
    let ca = Ca::new("baton-test-nats-ca").unwrap();
    let serving = ca.serving("nats", &["localhost"]).unwrap();
    let client = ca.client("worker-noop").unwrap();
    let server = Server::start(|dir| {
        std::fs::write(dir.join("server.pem"), &serving.cert).unwrap();
        std::fs::write(dir.join("server.key"), &serving.key).unwrap();
        std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
        format!(
            "tls {{\n  cert_file: \"{0}/server.pem\"\n  key_file: \"{0}/server.key\"\n  ca_file: \"{0}/ca.pem\"\n  verify: true\n  timeout: 5\n}}\n",
            dir.display()
        )
    });
    let ca_file = server.dir.path().join("ca.pem");
    let cert = server.write("client.pem", &client.cert);
    let key = server.write("client.key", &client.key);
    let url = format!("tls://127.0.0.1:{}", server.nats.port);
    server
        .connect(
            Some(&url),
            NatsCredentials {
                tls_ca: Some(ca_file.clone()),
                tls_cert: Some(cert),
                tls_key: Some(key),
                ..Default::default()
            },
        )
        .unwrap();
    // Without a client certificate the server does not let it in; with a CA that did not
    // sign the server's certificate the client does not trust it. Neither ever connects.
    let no_client_cert = connect_briefly(
        &url,
        NatsCredentials {
            tls_ca: Some(ca_file),
            ..Default::default()
        },
    );
    assert!(no_client_cert.is_err());
    let other_ca = Ca::new("another-ca").unwrap();
    let other = server.write("other-ca.pem", &other_ca.pem);
    let untrusted = connect_briefly(
        &url,
        NatsCredentials {
            tls_ca: Some(other),
            tls_cert: Some(server.dir.path().join("client.pem")),
            tls_key: Some(server.dir.path().join("client.key")),
            ..Default::default()
        },
    );
    assert!(untrusted.is_err());
}
