//! The harness of Baton's end-to-end tests: a real `nats-server` on a free loopback port with
//! a temporary store, and Baton processes (planner, workers) started from the real binary,
//! each of which a test can kill with SIGKILL and start again.
//!
//! Every test gets its own subject prefix, data directory and ports, and everything it
//! started is killed when its [`Env`] is dropped. The logs of every process are printed when
//! a test fails.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use baton_schemas::status::RunStatus;

pub mod aws;
pub mod browser;
pub mod bus_auth;
pub mod chart_repo;
pub mod install;
pub mod kube;
pub mod nats_cluster;
pub mod nats_jwt;
pub mod otlp;
pub mod prometheus;
pub mod tls;

/// Returns a loopback port that was free a moment ago and that this process has not handed
/// out before (see [`baton_cli::nats_server::free_port`]).
pub fn free_port() -> u16 {
    baton_cli::nats_server::free_port().expect("a free loopback port")
}

/// Returns the nats-server program: `$NATS_SERVER`, then the repository's `.tools`, then PATH.
pub fn nats_server_program() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(path);
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/nats-server");
    if local.is_file() {
        return local;
    }
    PathBuf::from("nats-server")
}

/// Waits until `addr` accepts TCP connections.
pub fn wait_for_port(port: u16, within: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > within {
            bail!("nothing listens on 127.0.0.1:{port} after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A child process whose output goes to a log file; killed on drop.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Returns the process's command line as `/proc` shows it to every user of the machine.
    pub fn cmdline(&self) -> String {
        std::fs::read(format!("/proc/{}/cmdline", self.child.id()))
            .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
            .unwrap_or_default()
    }

    /// Starts `command`, its stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: PathBuf) -> anyhow::Result<Proc> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// Kills the process with SIGKILL, as a crash would, and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    /// Sends `signal` (SIGSTOP pauses the process as a long stall or a partition would,
    /// SIGCONT resumes it).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
    }

    /// Waits for the process to exit, at most `within`.
    pub fn wait_exit(&mut self, within: Duration) -> anyhow::Result<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > within {
                bail!("{} still running after {within:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Returns the process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the process's log says `text`, at most `within`.
    pub fn wait_log(&self, text: &str, within: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        while !self.log().contains(text) {
            if started.elapsed() > within {
                bail!("{} never said {text:?}: {}", self.name, self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A real nats-server with JetStream on a free loopback port and a temporary store.
pub struct Nats {
    proc: Option<Proc>,
    /// The port it listens on (kept across restarts).
    pub port: u16,
    store: PathBuf,
    log: PathBuf,
    /// A configuration file given with `-c`, if any.
    config: Option<PathBuf>,
    /// Environment the server reads its configuration's variables from (passwords).
    env: Vec<(String, String)>,
    /// More command-line arguments (a cluster member's name, cluster port and routes).
    args: Vec<String>,
}

impl Nats {
    /// Starts a server storing under `dir`.
    pub fn start(dir: &Path) -> anyhow::Result<Nats> {
        let mut nats = Nats {
            proc: None,
            port: free_port(),
            store: dir.join("nats"),
            log: dir.join("nats.log"),
            config: None,
            env: Vec::new(),
            args: Vec::new(),
        };
        nats.boot()?;
        Ok(nats)
    }

    /// Starts a server storing under `dir` with the configuration file `config` (its listen
    /// address and store still come from the command line), its variables read from `env`.
    pub fn start_configured(
        dir: &Path,
        config: PathBuf,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<Nats> {
        let mut nats = Nats {
            proc: None,
            port: free_port(),
            store: dir.join("nats"),
            log: dir.join("nats.log"),
            config: Some(config),
            env,
            args: Vec::new(),
        };
        nats.boot()?;
        Ok(nats)
    }

    fn boot(&mut self) -> anyhow::Result<()> {
        let mut command =
            baton_cli::nats_server::server_command(&nats_server_program(), &self.store, self.port);
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        command.args(&self.args);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        self.proc = Some(Proc::spawn("nats-server", command, self.log.clone())?);
        wait_for_port(self.port, Duration::from_secs(15))
    }

    /// Returns `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server with SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    /// Starts the server again with `max_payload` (its largest message) set to `bytes`.
    pub fn restart_with_max_payload(&mut self, bytes: usize) -> anyhow::Result<()> {
        let config = self.store.with_extension("conf");
        std::fs::write(&config, format!("max_payload: {bytes}\n"))?;
        self.config = Some(config);
        self.restart()
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.boot()
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Returns a number unique in this test process.
pub fn next_id() -> u32 {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One test's world: a nats-server, a prefix, a data directory, and the Baton processes.
pub struct Env {
    /// The temporary directory everything lives in.
    pub dir: tempfile::TempDir,
    /// The baton binary under test (`env!("CARGO_BIN_EXE_baton-under-test")` in a test).
    pub program: &'static str,
    /// The nats-server (on a cluster, its first member).
    pub nats: Nats,
    /// The other members of the cluster, when the env runs on one ([`Env::on_cluster`]).
    pub members: Vec<Nats>,
    /// The subject prefix of this test.
    pub prefix: String,
    /// The API port of the planner.
    pub api_port: u16,
    /// How long a worker may hold a job silently: short, so kill tests redeliver fast, yet
    /// long enough that a stall of a busy 2-core machine does not redeliver a job in progress.
    pub job_ack_wait: &'static str,
    /// More environment for every baton process (`KUBECONFIG`, say).
    pub extra_env: Vec<(String, String)>,
    /// The API's bearer tokens, one per role (the token file the planner reads has them).
    pub tokens: ApiTokens,
    procs: Vec<Proc>,
    logs: Vec<PathBuf>,
}

/// The API tokens of a test, one per role.
#[derive(Clone, Debug)]
pub struct ApiTokens {
    /// May do anything.
    pub admin: String,
    /// May start, trigger and cancel runs and command Cells.
    pub operator: String,
    /// May read.
    pub viewer: String,
}

impl ApiTokens {
    /// Returns tokens unique to a test (`unique` is its prefix): a grep of logs for them finds
    /// no other test's.
    fn new(unique: &str) -> ApiTokens {
        let token = |role: &str| format!("{role}-secret-{unique}-{}", next_id());
        ApiTokens {
            admin: token("admin"),
            operator: token("operator"),
            viewer: token("viewer"),
        }
    }

    /// Returns the token file that gives them their roles.
    fn file(&self) -> String {
        format!(
            "# token,name,role\n{},test-admin,admin\n{},test-operator,operator\n{},test-viewer,viewer\n",
            self.admin, self.operator, self.viewer
        )
    }
}

impl Env {
    /// Starts a nats-server and returns the world around it; `program` is the baton binary.
    pub fn new(program: &'static str) -> anyhow::Result<Env> {
        Env::with_nats(program, |dir, _prefix| Nats::start(dir))
    }

    /// Returns the world around the nats-server `start` starts in the env's directory for
    /// the env's subject prefix.
    pub fn with_nats(
        program: &'static str,
        start: impl FnOnce(&Path, &str) -> anyhow::Result<Nats>,
    ) -> anyhow::Result<Env> {
        let dir = tempfile::Builder::new().prefix("baton-e2e-").tempdir()?;
        let n = next_id();
        let prefix = format!("t{}x{n}", std::process::id());
        let nats = start(dir.path(), &prefix)?;
        let logs = vec![dir.path().join("nats.log")];
        let tokens = ApiTokens::new(&prefix);
        std::fs::write(dir.path().join("api-tokens.csv"), tokens.file())?;
        Ok(Env {
            dir,
            program,
            nats,
            members: Vec::new(),
            prefix,
            api_port: free_port(),
            job_ack_wait: "5s",
            extra_env: Vec::new(),
            tokens,
            procs: Vec::new(),
            logs,
        })
    }

    /// Returns the bus's URL: the server's, or on a cluster every member's, comma-separated.
    pub fn nats_url(&self) -> String {
        std::iter::once(&self.nats)
            .chain(&self.members)
            .map(Nats::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Returns the planner's API URL.
    pub fn server(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// Returns a `baton` command set up for this env (prefix, NATS URL, API URL and its
    /// token file for a planner, the admin's token for a client, ack wait).
    pub fn baton(&self) -> Command {
        let mut command = Command::new(self.program);
        command
            .env("BATON_PREFIX", &self.prefix)
            .env("BATON_NATS_URL", self.nats_url())
            .env("BATON_SERVER", self.server())
            .env(
                "BATON_API_TOKEN_FILE",
                self.dir.path().join("api-tokens.csv"),
            )
            .env("BATON_TOKEN", &self.tokens.admin)
            // The tests run exec nodes; a planner's default refuses them.
            .env(
                "BATON_ALLOW_KINDS",
                baton_schemas::KindSet::ALL.to_string().replace(' ', ""),
            )
            .env("BATON_JOB_ACK_WAIT", self.job_ack_wait)
            .env("BATON_LOG", "info,baton_planner=debug,baton_workers=debug")
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path());
        command
    }

    /// Starts `command` as a process whose log is printed if the test fails.
    pub fn spawn(&mut self, name: &str, command: Command) -> anyhow::Result<Proc> {
        let log = self.dir.path().join(format!("{name}.log"));
        if !self.logs.contains(&log) {
            self.logs.push(log.clone());
        }
        Proc::spawn(name, command, log)
    }

    /// Returns the command of a planner on the env's store and API address.
    pub fn planner_command(&self) -> Command {
        let mut command = self.baton();
        command
            .args(["planner", "--data-dir", "planner-data", "--listen"])
            .arg(format!("127.0.0.1:{}", self.api_port));
        command
    }

    /// Starts the planner (with its API) and waits until the API answers.
    pub fn start_planner(&mut self) -> anyhow::Result<Proc> {
        self.start_planner_with(&[])
    }

    /// Starts the planner with `args` added and waits until the API answers.
    pub fn start_planner_with(&mut self, args: &[&str]) -> anyhow::Result<Proc> {
        let mut command = self.planner_command();
        command.args(args);
        let proc = self.spawn("planner", command)?;
        wait_for_port(self.api_port, Duration::from_secs(30))?;
        Ok(proc)
    }

    /// Starts a second planner on the same store and API address, and waits until it says it
    /// stands by: it takes over when the active one dies.
    pub fn start_standby_planner(&mut self) -> anyhow::Result<Proc> {
        let standby = self.spawn("planner-standby", self.planner_command())?;
        standby.wait_log("standing by", Duration::from_secs(20))?;
        Ok(standby)
    }

    /// Starts a worker for `kinds` with `args` added.
    pub fn start_worker(&mut self, name: &str, kinds: &str, args: &[&str]) -> anyhow::Result<Proc> {
        let mut command = self.baton();
        command.args(["worker", "--kinds", kinds]).args(args);
        self.spawn(name, command)
    }

    /// Starts a planner and one worker for every kind, kept by the env.
    pub fn start_all(&mut self) -> anyhow::Result<()> {
        let planner = self.start_planner()?;
        let worker = self.start_worker("worker", "noop,exec", &[])?;
        self.procs.push(planner);
        self.procs.push(worker);
        Ok(())
    }

    /// Keeps a process until the env is dropped.
    pub fn keep(&mut self, proc: Proc) {
        self.procs.push(proc);
    }

    /// Runs a baton client command to its end.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.baton().args(args).output().expect("running baton")
    }

    /// Writes `text` to a file in the env's directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("writing a test file");
        path
    }

    /// Registers and starts the workflow in `file`, returning the run id.
    pub fn apply(&self, file: &Path) -> anyhow::Result<String> {
        let out = self.cli(&["apply", "-f", file.to_str().expect("utf-8 path")]);
        if !out.status.success() {
            bail!("apply failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    /// Reads a run's status through the CLI.
    pub fn status(&self, run: &str) -> anyhow::Result<RunStatus> {
        let out = self.cli(&["status", run, "-o", "json"]);
        if !out.status.success() {
            bail!("status failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// Polls a run until `done` holds for its status, at most `within`. Failures to reach the
    /// API (a planner being restarted) are retried.
    pub fn wait_for(
        &self,
        run: &str,
        within: Duration,
        done: impl Fn(&RunStatus) -> bool,
    ) -> anyhow::Result<RunStatus> {
        poll(&format!("run {run}"), within, || self.status(run), done)
    }

    /// Waits until the run has ended.
    pub fn wait_end(&self, run: &str, within: Duration) -> anyhow::Result<RunStatus> {
        self.wait_for(run, within, |s| s.state.is_terminal())
    }

    /// Reads the planner's `/metrics` with the viewer's token.
    pub fn metrics(&self) -> anyhow::Result<String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let answer = reqwest::Client::new()
                .get(format!("{}/metrics", self.server()))
                .bearer_auth(&self.tokens.viewer)
                .send()
                .await?;
            anyhow::ensure!(answer.status().is_success(), "GET /metrics: {answer:?}");
            Ok(answer.text().await?)
        })
    }

    /// Waits until the planner's `/metrics` has the sample `series` (name and labels, as
    /// printed) with a value for which `done` holds, at most `within`; returns the value.
    pub fn wait_metric(
        &self,
        series: &str,
        within: Duration,
        done: impl Fn(f64) -> bool,
    ) -> anyhow::Result<f64> {
        let value = poll(
            series,
            within,
            || Ok(sample(&self.metrics()?, series)),
            |v| v.is_some_and(&done),
        )?;
        Ok(value.expect("polled until there"))
    }

    /// Reads an application group's status through the CLI (`baton groups NAME -o json`).
    pub fn group(&self, name: &str) -> anyhow::Result<serde_json::Value> {
        let out = self.cli(&["groups", name, "-o", "json"]);
        if !out.status.success() {
            bail!("groups failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// Polls a group until `done` holds for its status, at most `within`. Failures to reach
    /// the API are retried.
    pub fn wait_group(
        &self,
        name: &str,
        within: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        poll(&format!("group {name}"), within, || self.group(name), done)
    }

    /// Waits until nothing runs or waits for the group.
    pub fn wait_group_settled(
        &self,
        name: &str,
        within: Duration,
    ) -> anyhow::Result<serde_json::Value> {
        self.wait_group(name, within, |g| g["settled"] == true)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for p in &mut self.procs {
            p.kill9();
        }
        self.nats.kill9();
        for member in &mut self.members {
            member.kill9();
        }
        if std::thread::panicking() {
            for log in &self.logs {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(80).collect();
                eprintln!("===== {} (last {} lines) =====", log.display(), tail.len());
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// Reads `what` with `read` every 100 ms until `done` holds for it, at most `within`; a read
/// that fails (the API of a planner being restarted) is tried again.
fn poll<T: std::fmt::Debug>(
    what: &str,
    within: Duration,
    read: impl Fn() -> anyhow::Result<T>,
    done: impl Fn(&T) -> bool,
) -> anyhow::Result<T> {
    let started = Instant::now();
    let mut last = None;
    loop {
        match read() {
            Ok(found) if done(&found) => return Ok(found),
            Ok(found) => last = Some(found),
            Err(_) => {}
        }
        if started.elapsed() > within {
            bail!("{what} not there after {within:?}; last status: {last:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Returns the value of the sample `series` (name and labels, as printed) in the metrics
/// text `text`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split(' ').next()?.parse().ok())
}

/// Says that `test` did not run here, and why, on the test process's standard error itself:
/// the harness captures what a passing test prints, and a test that returns early must not
/// look like one that passed.
pub fn skip(test: &str, why: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// An HTTP request [`one_http_request`] received.
pub struct HttpRequest {
    /// The request line and headers, lower-cased.
    pub head: String,
    /// The body, as sent.
    pub body: String,
}

/// Accepts one HTTP request on a loopback port, answers it `200 ok`, and returns it through
/// the handle (reads time out after 10 s).
pub fn one_http_request() -> (u16, std::thread::JoinHandle<HttpRequest>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let (mut head, mut length) = (String::new(), 0);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            .unwrap();
        HttpRequest {
            head,
            body: String::from_utf8(body).unwrap(),
        }
    });
    (port, handle)
}

/// Waits (at most 20 s each) until each `(stream, consumer)` of `env`'s bus (stream names
/// without the prefix, as `JOBS`) has nothing pending and nothing waiting for an ack.
pub fn settle(env: &Env, consumers: &[(&str, &str)]) {
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let client = async_nats::connect(env.nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        for (stream, consumer) in consumers {
            let stream = format!("{}_{stream}", env.prefix.to_uppercase());
            let mut c: async_nats::jetstream::consumer::PullConsumer = js
                .get_consumer_from_stream(*consumer, &stream)
                .await
                .unwrap();
            let started = Instant::now();
            loop {
                let info = c.info().await.unwrap().clone();
                if (info.num_pending, info.num_ack_pending) == (0, 0) {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "{consumer} still holds messages: {info:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
}

/// Returns the lines of a file, or none if it does not exist.
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// A chain of `n` exec nodes `s0`, `s1`, ...; node `sN` appends `sN` to `file` after `sleep`
/// seconds, so the file tells how often each effect ran.
pub fn exec_chain(name: &str, n: usize, file: &Path, sleep: &str) -> String {
    let nodes: Vec<String> = (0..n)
        .map(|i| {
            let needs = if i == 0 { String::new() } else { format!(", needs: [s{}]", i - 1) };
            format!("{{name: s{i}, kind: exec{needs}, command: [sh, -c, 'sleep {sleep}; echo s{i} >> {}']}}", file.display())
        })
        .collect();
    workflow(name, &nodes)
}

/// Returns each effect once, in the order it first ran.
pub fn first_runs(effects: &[String]) -> Vec<String> {
    let mut first: Vec<String> = Vec::new();
    for effect in effects {
        if !first.contains(effect) {
            first.push(effect.clone());
        }
    }
    first
}

/// A shell command that waits until the file `gate` exists, at most 60 s: a job that holds
/// its worker until the test has done what it must do meanwhile (create the file with
/// [`open_gate`]), however slow the machine.
pub fn wait_for_gate(gate: &Path) -> String {
    format!(
        "for i in $(seq 600); do [ -e {} ] && break; sleep 0.1; done",
        gate.display()
    )
}

/// Creates the file a [`wait_for_gate`] command waits for.
pub fn open_gate(gate: &Path) {
    std::fs::write(gate, "").expect("creating a gate file");
}

/// Returns a Workflow document named `name` whose nodes are the given YAML flow mappings,
/// one per line (`{name: a, kind: noop}`).
pub fn workflow(name: &str, nodes: &[String]) -> String {
    let mut text = format!(
        "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n  nodes:\n"
    );
    for node in nodes {
        text.push_str(&format!("    - {node}\n"));
    }
    text
}

/// Asserts that a finished command exited with `code` and that its stderr says `says`;
/// returns the stderr, for what else the test checks in it.
#[track_caller]
pub fn assert_fails(out: &Output, code: i32, says: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(says), "expected {says:?} in:\n{stderr}");
    stderr
}
