//! `baton bench`: Baton's orchestration overhead against raw JetStream, measured in one run on
//! one nats-server so that the ratios hold on a noisy machine.
//!
//! It starts its own nats-server, one planner and one noop worker as child processes (the
//! planner in its own process, so its peak memory is its own and it can be killed), and
//! watches the bus with a plain subscription: every job the planner publishes and every
//! event a worker publishes is seen, with the time it was seen. What it measures:
//!
//! - the floor: raw JetStream publish-ack then consume-ack, one DAG edge, serial (p50, p99)
//!   and pipelined (edges/s), on a work-queue stream like Baton's jobs;
//! - a chain of noop nodes: the time between one node's job and the next one's, which holds
//!   the worker's round trip and the planner's (p50, p99), and its ratio to the serial floor;
//! - a fan-out/fan-in and many concurrent runs: node transitions per second, and the ratio to
//!   the pipelined floor;
//! - one large DAG: accepted, completed, wall time, the planner's peak memory (VmHWM);
//! - trigger ingest: trigger messages per second turned into started runs (first job seen);
//! - recovery: the planner killed with SIGKILL after all of the above and started again; the
//!   time from its start to the first job of a new run.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use async_nats::jetstream::{self, consumer, stream};
use baton_schemas::wire::{Event, EventEnvelope, headers};
use futures::StreamExt;
use serde::Serialize;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tracing::info;

use crate::args::{BenchArgs, Format, Scale};
use crate::nats_server::{self, NatsServer};

/// The sizes of one scale.
#[derive(Clone, Copy, Debug, Serialize)]
struct Sizes {
    floor_serial: usize,
    floor_pipelined: usize,
    chain: usize,
    fan_out: usize,
    runs: usize,
    run_nodes: usize,
    dag_width: usize,
    dag_depth: usize,
    triggers: usize,
}

impl Sizes {
    fn of(scale: Scale) -> Sizes {
        match scale {
            Scale::Quick => Sizes {
                floor_serial: 300,
                floor_pipelined: 5_000,
                chain: 200,
                fan_out: 1_000,
                runs: 20,
                run_nodes: 50,
                dag_width: 20,
                dag_depth: 250,
                triggers: 1_000,
            },
            Scale::Smoke => Sizes {
                floor_serial: 50,
                floor_pipelined: 500,
                chain: 20,
                fan_out: 50,
                runs: 3,
                run_nodes: 5,
                dag_width: 10,
                dag_depth: 20,
                triggers: 50,
            },
            Scale::Full => Sizes {
                floor_serial: 1_000,
                floor_pipelined: 20_000,
                chain: 1_000,
                fan_out: 10_000,
                runs: 100,
                run_nodes: 100,
                dag_width: 100,
                dag_depth: 1_000,
                triggers: 10_000,
            },
        }
    }
}

/// What one run of the benchmark measured. The names are read by programs outside the
/// project: keep them.
#[derive(Debug, Serialize)]
struct Report {
    scale: &'static str,
    floor_serial_p50_ms: f64,
    floor_serial_p99_ms: f64,
    floor_pipelined_edges_per_s: f64,
    /// CPU time per edge of the pipelined floor, by process, in microseconds.
    floor_pipelined_cpu_us: CpuPerItem,
    chain_nodes: usize,
    chain_per_node_p50_ms: f64,
    chain_per_node_p99_ms: f64,
    /// Of a chain node: from its job to its end, as the bus shows them.
    chain_worker_p50_ms: f64,
    /// Of a chain node: from its end to the next node's job.
    chain_planner_p50_ms: f64,
    chain_ratio: f64,
    fan_out_nodes: usize,
    throughput_nodes_per_s: f64,
    throughput_ratio: f64,
    /// CPU time per node of the fan-out, by process, in microseconds.
    fan_out_cpu_us: CpuPerItem,
    concurrent_runs: usize,
    concurrent_run_nodes: usize,
    concurrent_nodes_per_s: f64,
    dag_nodes: usize,
    dag_accepted_s: f64,
    dag_completed: bool,
    dag_wall_s: f64,
    dag_peak_rss_mib: f64,
    triggers: usize,
    triggers_per_s: f64,
    recovery_events: u64,
    recovery_s: f64,
}

const PREFIX: &str = "bench";

/// Runs the benchmark and prints its table.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let sizes = Sizes::of(args.scale);
    let dir = std::env::temp_dir().join(format!("baton-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = run_in(&args, sizes, &dir).await;
    // Logs asked for with BATON_BENCH_LOG are kept, as is everything after a failure.
    if result.is_ok() && std::env::var_os("BATON_BENCH_LOG").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("bench files kept in {}", dir.display());
    }
    let report = result?;
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print_table(&report, &sizes),
    }
    Ok(())
}

async fn run_in(args: &BenchArgs, sizes: Sizes, dir: &Path) -> anyhow::Result<Report> {
    let program = nats_server::find(args.nats_server.as_deref())?;
    let nats = NatsServer::start(&program, &dir.join("nats"), free_port()?).await?;
    let pid = nats.pid().context("nats-server has exited")?;
    let result = measure(args, sizes, dir, &nats.url, pid).await;
    nats.stop().await;
    result
}

async fn measure(
    args: &BenchArgs,
    sizes: Sizes,
    dir: &Path,
    url: &str,
    nats_pid: u32,
) -> anyhow::Result<Report> {
    let client = async_nats::ConnectOptions::new()
        .subscription_capacity(1 << 20)
        .connect(url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let js = jetstream::new(client.clone());

    let api_port = free_port()?;
    let baton = Baton {
        url: url.to_owned(),
        dir: dir.to_owned(),
        api: format!("http://127.0.0.1:{api_port}"),
        api_port,
        http: reqwest::Client::new(),
    };
    let mut planner = baton.spawn_planner().await?;
    let mut worker = baton.spawn_worker(args.concurrency)?;
    let mut seen = observe(&client).await?;
    let processes = Processes {
        planner: planner.id().context("the planner has exited")?,
        worker: worker.id().context("the worker has exited")?,
        nats: nats_pid,
    };

    // The floor and Baton take turns, so that both see the same machine: its load, and how
    // fast its idle cores wake up, change from one second to the next.
    let (mut serial, mut chain) = (Vec::new(), Chain::default());
    let (mut pipelined, mut fan_out) = (Vec::new(), Vec::new());
    let (mut floor_cpu, mut fan_out_cpu) = (Cpu::default(), Cpu::default());
    for round in 0..ROUNDS {
        info!(round, samples = sizes.floor_serial, "floor: serial");
        serial.extend(floor_serial(&js, sizes.floor_serial).await?);
        info!(round, nodes = sizes.chain, "chain");
        chain.extend(chain_round(&baton, &mut seen, round, sizes.chain).await?);
        info!(round, edges = sizes.floor_pipelined, "floor: pipelined");
        let before = processes.cpu()?;
        pipelined.push(floor_pipelined(&js, sizes.floor_pipelined).await?);
        floor_cpu.add(processes.cpu()?.since(&before), sizes.floor_pipelined);
        info!(round, nodes = sizes.fan_out, "fan-out/fan-in");
        let before = processes.cpu()?;
        fan_out.push(fan_out_round(&baton, &mut seen, round, sizes.fan_out).await?);
        fan_out_cpu.add(processes.cpu()?.since(&before), sizes.fan_out);
    }
    let (pipelined, fan_out) = (median(pipelined), median(fan_out));
    info!(
        runs = sizes.runs,
        nodes = sizes.run_nodes,
        "concurrent runs"
    );
    let concurrent = concurrent_runs(&baton, &mut seen, sizes.runs, sizes.run_nodes).await?;
    info!(nodes = sizes.dag_width * sizes.dag_depth, "large DAG");
    let dag = large_dag(&baton, &mut seen, sizes.dag_width, sizes.dag_depth).await?;
    let dag_peak_rss_mib = peak_rss_mib(&planner)?;
    info!(triggers = sizes.triggers, "trigger ingest");
    let triggers_per_s = triggers(&baton, &js, &mut seen, sizes.triggers).await?;

    info!("recovery");
    let recovery_events = events_applied(&js).await?;
    planner.kill().await.ok();
    let restarted = Instant::now();
    planner = baton.spawn_planner_nowait()?;
    let recovery = recovery(&js, &mut seen, restarted).await?;
    planner.kill().await.ok();
    worker.kill().await.ok();

    let chain_p50 = percentile(&chain.per_node, 50.0);
    Ok(Report {
        scale: match args.scale {
            Scale::Quick => "quick",
            Scale::Full => "full",
            Scale::Smoke => "smoke",
        },
        floor_serial_p50_ms: ms(percentile(&serial, 50.0)),
        floor_serial_p99_ms: ms(percentile(&serial, 99.0)),
        floor_pipelined_edges_per_s: pipelined,
        floor_pipelined_cpu_us: floor_cpu.per_item(),
        chain_nodes: sizes.chain,
        chain_per_node_p50_ms: ms(chain_p50),
        chain_per_node_p99_ms: ms(percentile(&chain.per_node, 99.0)),
        chain_worker_p50_ms: ms(percentile(&chain.worker, 50.0)),
        chain_planner_p50_ms: ms(percentile(&chain.planner, 50.0)),
        chain_ratio: chain_p50.as_secs_f64() / percentile(&serial, 50.0).as_secs_f64(),
        fan_out_nodes: sizes.fan_out,
        throughput_nodes_per_s: fan_out,
        throughput_ratio: fan_out / pipelined,
        fan_out_cpu_us: fan_out_cpu.per_item(),
        concurrent_runs: sizes.runs,
        concurrent_run_nodes: sizes.run_nodes,
        concurrent_nodes_per_s: concurrent,
        dag_nodes: sizes.dag_width * sizes.dag_depth,
        dag_accepted_s: dag.accepted.as_secs_f64(),
        dag_completed: dag.completed,
        dag_wall_s: dag.wall.as_secs_f64(),
        dag_peak_rss_mib,
        triggers: sizes.triggers,
        triggers_per_s,
        recovery_events,
        recovery_s: recovery.as_secs_f64(),
    })
}

fn print_table(r: &Report, sizes: &Sizes) {
    let rows: Vec<(String, String)> = vec![
        (
            format!(
                "floor: publish-ack + consume-ack, serial ({})",
                sizes.floor_serial
            ),
            format!(
                "p50 {:.3} ms, p99 {:.3} ms",
                r.floor_serial_p50_ms, r.floor_serial_p99_ms
            ),
        ),
        (
            format!("floor: pipelined ({})", sizes.floor_pipelined),
            format!(
                "{:.0} edges/s; CPU per edge: nats {:.1} us, client {:.1} us",
                r.floor_pipelined_edges_per_s,
                r.floor_pipelined_cpu_us.nats,
                r.floor_pipelined_cpu_us.bench
            ),
        ),
        (
            format!("chain of {} noop nodes, per node", r.chain_nodes),
            format!(
                "p50 {:.3} ms (worker {:.3}, planner {:.3}), p99 {:.3} ms, {:.2}x the serial floor",
                r.chain_per_node_p50_ms,
                r.chain_worker_p50_ms,
                r.chain_planner_p50_ms,
                r.chain_per_node_p99_ms,
                r.chain_ratio
            ),
        ),
        (
            format!("fan-out/fan-in of {} nodes", r.fan_out_nodes),
            format!(
                "{:.0} nodes/s, {:.0}% of the pipelined floor; CPU per node: nats {:.1} us, planner {:.1} us, worker {:.1} us, observer {:.1} us",
                r.throughput_nodes_per_s,
                r.throughput_ratio * 100.0,
                r.fan_out_cpu_us.nats,
                r.fan_out_cpu_us.planner,
                r.fan_out_cpu_us.worker,
                r.fan_out_cpu_us.bench,
            ),
        ),
        (
            format!(
                "{} concurrent runs of {} nodes",
                r.concurrent_runs, r.concurrent_run_nodes
            ),
            format!("{:.0} nodes/s", r.concurrent_nodes_per_s),
        ),
        (
            format!("one DAG of {} nodes", r.dag_nodes),
            format!(
                "accepted in {:.2} s, {} in {:.1} s, planner peak {:.0} MiB",
                r.dag_accepted_s,
                if r.dag_completed {
                    "completed"
                } else {
                    "NOT completed"
                },
                r.dag_wall_s,
                r.dag_peak_rss_mib
            ),
        ),
        (
            format!("trigger ingest ({})", r.triggers),
            format!("{:.0} triggers/s started as runs", r.triggers_per_s),
        ),
        (
            format!("planner recovery after {} events", r.recovery_events),
            format!("{:.2} s from restart to the first new job", r.recovery_s),
        ),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    println!("baton bench ({} scale)", r.scale);
    for (k, v) in rows {
        println!("  {k:<width$}  {v}");
    }
}

/// How many rounds the floor and Baton take turns for.
const ROUNDS: usize = 3;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// The processes whose CPU time the bench reads.
struct Processes {
    planner: u32,
    worker: u32,
    nats: u32,
}

/// CPU seconds used so far, by process.
#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    planner: f64,
    worker: f64,
    nats: f64,
    bench: f64,
    /// Items (edges, nodes) the times were spent on.
    items: usize,
}

/// CPU microseconds per item, by process.
#[derive(Clone, Copy, Debug, Default, Serialize)]
struct CpuPerItem {
    planner: f64,
    worker: f64,
    nats: f64,
    bench: f64,
}

impl Processes {
    fn cpu(&self) -> anyhow::Result<Cpu> {
        Ok(Cpu {
            planner: cpu_seconds(self.planner)?,
            worker: cpu_seconds(self.worker)?,
            nats: cpu_seconds(self.nats)?,
            bench: cpu_seconds(std::process::id())?,
            items: 0,
        })
    }
}

impl Cpu {
    fn since(&self, earlier: &Cpu) -> Cpu {
        Cpu {
            planner: self.planner - earlier.planner,
            worker: self.worker - earlier.worker,
            nats: self.nats - earlier.nats,
            bench: self.bench - earlier.bench,
            items: 0,
        }
    }

    fn add(&mut self, spent: Cpu, items: usize) {
        self.planner += spent.planner;
        self.worker += spent.worker;
        self.nats += spent.nats;
        self.bench += spent.bench;
        self.items += items;
    }

    fn per_item(&self) -> CpuPerItem {
        let us = |s: f64| s * 1e6 / self.items.max(1) as f64;
        CpuPerItem {
            planner: us(self.planner),
            worker: us(self.worker),
            nats: us(self.nats),
            bench: us(self.bench),
        }
    }
}

/// Returns the CPU time (user and system) a process has used, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> f64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name, in
    // clock ticks: USER_HZ, 100 on every Linux architecture Baton builds for.
    let hz = 100.0;
    Ok((ticks(11) + ticks(12)) / hz)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(values: &[Duration], p: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A raw work-queue stream and its consumer, like Baton's jobs.
async fn raw_stream(js: &jetstream::Context, name: &str) -> anyhow::Result<consumer::PullConsumer> {
    let stream = js
        .create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![format!("{}.>", name.to_lowercase())],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    Ok(stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("raw".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?)
}

/// Serial edges: publish and await the ack, then take the message and ack it, confirmed.
async fn floor_serial(js: &jetstream::Context, n: usize) -> anyhow::Result<Vec<Duration>> {
    let consumer = raw_stream(js, "RAWSERIAL").await?;
    let mut messages = consumer.messages().await?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let publish = jetstream::message::PublishMessage::build()
            .payload("{}".into())
            .message_id(format!("serial-{i}"));
        js.send_publish("rawserial.job", publish).await?.await?;
        let message = messages.next().await.context("stream ended")??;
        message
            .double_ack()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        samples.push(started.elapsed());
    }
    js.delete_stream("RAWSERIAL").await?;
    Ok(samples)
}

/// Pipelined edges: publishes in windows of awaited acks while a consumer takes and acks
/// every message; edges per second from the first publish to the last message taken.
async fn floor_pipelined(js: &jetstream::Context, n: usize) -> anyhow::Result<f64> {
    let consumer = raw_stream(js, "RAWPIPE").await?;
    let started = Instant::now();
    let taker = tokio::spawn(async move {
        let mut messages = consumer.messages().await?;
        for _ in 0..n {
            let message = messages.next().await.context("stream ended")??;
            message.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        anyhow::Ok(started.elapsed())
    });
    for window in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut acks = Vec::with_capacity(window.len());
        for i in window {
            let publish = jetstream::message::PublishMessage::build()
                .payload("{}".into())
                .message_id(format!("pipe-{i}"));
            acks.push(js.send_publish("rawpipe.job", publish).await?);
        }
        for ack in acks {
            ack.await?;
        }
    }
    let elapsed = taker.await??;
    js.delete_stream("RAWPIPE").await?;
    Ok(n as f64 / elapsed.as_secs_f64())
}

/// What the bench sees on the bus.
#[derive(Debug)]
enum Seen {
    /// The planner published a job.
    Job {
        at: Instant,
        run: String,
        node: String,
    },
    /// A worker published that a node finished.
    Finished { at: Instant, run: String },
}

/// Subscribes to every job and event under the bench prefix.
async fn observe(client: &async_nats::Client) -> anyhow::Result<mpsc::UnboundedReceiver<Seen>> {
    // One subscription sees jobs and events in the order the server handled them.
    let mut all = client.subscribe(format!("{PREFIX}.>")).await?;
    // The floor's messages are observed too, so that the floor carries the same load.
    for subject in ["rawserial.>", "rawpipe.>"] {
        let mut raw = client.subscribe(subject).await?;
        tokio::spawn(async move { while raw.next().await.is_some() {} });
    }
    client.flush().await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let jobs = format!("{PREFIX}.jobs.");
    let events = format!("{PREFIX}.events.");
    tokio::spawn(async move {
        while let Some(m) = all.next().await {
            let at = Instant::now();
            let seen = if m.subject.starts_with(jobs.as_str()) {
                let header = |name: &str| {
                    m.headers
                        .as_ref()
                        .and_then(|h| h.get(name))
                        .map(|v| v.as_str().to_owned())
                        .unwrap_or_default()
                };
                Seen::Job {
                    at,
                    run: header(headers::RUN),
                    node: header(headers::NODE),
                }
            } else if m.subject.starts_with(events.as_str()) {
                match serde_json::from_slice(&m.payload) {
                    Ok(EventEnvelope {
                        event: Event::NodeFinished { run, .. },
                        ..
                    }) => Seen::Finished {
                        at,
                        run: run.to_string(),
                    },
                    _ => continue,
                }
            } else {
                continue;
            };
            if tx.send(seen).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Waits for what the bench sees until `done` says so, at most `within`.
async fn watch(
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    within: Duration,
    mut done: impl FnMut(Seen) -> bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, seen.recv()).await {
            Ok(Some(s)) => {
                if done(s) {
                    return Ok(());
                }
            }
            Ok(None) => bail!("the bus observer stopped"),
            Err(_) => bail!("timed out after {within:?}"),
        }
    }
}

/// The planner and worker under test, and how to reach them.
struct Baton {
    url: String,
    dir: PathBuf,
    api: String,
    api_port: u16,
    http: reqwest::Client,
}

impl Baton {
    fn command(&self, name: &str) -> anyhow::Result<Command> {
        let mut command = Command::new(std::env::current_exe()?);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))?;
        command
            .env(
                "BATON_LOG",
                std::env::var("BATON_BENCH_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .env("BATON_PREFIX", PREFIX)
            .env("BATON_NATS_URL", &self.url)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        Ok(command)
    }

    fn spawn_planner_nowait(&self) -> anyhow::Result<Child> {
        let mut command = self.command("planner")?;
        command
            .arg("planner")
            .arg("--data-dir")
            .arg(self.dir.join("planner"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.api_port));
        Ok(command.spawn()?)
    }

    async fn spawn_planner(&self) -> anyhow::Result<Child> {
        let child = self.spawn_planner_nowait()?;
        let started = Instant::now();
        while self
            .http
            .get(format!("{}/healthz", self.api))
            .send()
            .await
            .is_err()
        {
            ensure!(
                started.elapsed() < Duration::from_secs(30),
                "the planner's API did not answer"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(child)
    }

    fn spawn_worker(&self, concurrency: usize) -> anyhow::Result<Child> {
        let mut command = self.command("worker")?;
        command
            .args(["worker", "--kinds", "noop", "--concurrency"])
            .arg(concurrency.to_string());
        Ok(command.spawn()?)
    }

    /// Registers a workflow of `nodes` (each `(name, needs)`) and, if `start`, starts a run;
    /// returns its id.
    async fn apply(
        &self,
        name: &str,
        nodes: impl Iterator<Item = (String, Vec<String>)>,
        start: bool,
    ) -> anyhow::Result<Option<String>> {
        let nodes: Vec<serde_json::Value> = nodes
            .map(|(n, needs)| serde_json::json!({"name": n, "kind": "noop", "needs": needs}))
            .collect();
        let document = serde_json::json!({
            "apiVersion": "baton.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": name},
            "spec": {"nodes": nodes},
        });
        let response = self
            .http
            .post(format!("{}/v1/apply", self.api))
            .json(&serde_json::json!({"document": document, "run": start}))
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        ensure!(status.is_success(), "apply {name}: {status} {body}");
        Ok(body["run"].as_str().map(str::to_owned))
    }

    async fn start(&self, workflow: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .post(format!("{}/v1/workflows/{workflow}/runs", self.api))
            .json(&serde_json::json!({}))
            .send()
            .await?;
        let body: serde_json::Value = response.json().await?;
        body["run"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("start {workflow}: {body}"))
    }

    async fn state(&self, run: &str) -> anyhow::Result<String> {
        let body: serde_json::Value = self
            .http
            .get(format!("{}/v1/runs/{run}", self.api))
            .send()
            .await?
            .json()
            .await?;
        Ok(body["state"].as_str().unwrap_or_default().to_owned())
    }
}

fn chain_nodes(n: usize) -> impl Iterator<Item = (String, Vec<String>)> {
    (0..n).map(|i| {
        let needs = if i == 0 {
            vec![]
        } else {
            vec![format!("n{}", i - 1)]
        };
        (format!("n{i}"), needs)
    })
}

/// What chains measured, per node: from one job to the next, and its two parts: from a job
/// to its node's end (the worker's share), from that end to the next job (the planner's).
#[derive(Default)]
struct Chain {
    per_node: Vec<Duration>,
    worker: Vec<Duration>,
    planner: Vec<Duration>,
}

impl Chain {
    fn extend(&mut self, other: Chain) {
        self.per_node.extend(other.per_node);
        self.worker.extend(other.worker);
        self.planner.extend(other.planner);
    }
}

/// Times a chain of `n` noop nodes as the bus shows it.
async fn chain_round(
    baton: &Baton,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    round: usize,
    n: usize,
) -> anyhow::Result<Chain> {
    let run = baton
        .apply(&format!("bench-chain-{round}"), chain_nodes(n), true)
        .await?
        .context("no run started")?;
    let mut jobs: Vec<Instant> = Vec::with_capacity(n);
    let mut ends: Vec<Instant> = Vec::with_capacity(n);
    watch(seen, Duration::from_secs(600), |s| match s {
        Seen::Job { at, run: r, .. } if r == run => {
            jobs.push(at);
            false
        }
        Seen::Finished { at, run: r } if r == run => {
            ends.push(at);
            ends.len() == n
        }
        _ => false,
    })
    .await
    .context("the chain")?;
    ensure!(jobs.len() == n, "{} jobs seen for {n} nodes", jobs.len());
    Ok(Chain {
        per_node: jobs.windows(2).map(|w| w[1] - w[0]).collect(),
        worker: jobs
            .iter()
            .zip(&ends)
            .map(|(j, e)| e.saturating_duration_since(*j))
            .collect(),
        planner: ends
            .iter()
            .zip(&jobs[1..])
            .map(|(e, j)| j.saturating_duration_since(*e))
            .collect(),
    })
}

/// Node transitions per second of one fan-out/fan-in run, from its first job to its last
/// finished node.
async fn fan_out_round(
    baton: &Baton,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    round: usize,
    n: usize,
) -> anyhow::Result<f64> {
    let middle: Vec<String> = (1..n - 1).map(|i| format!("m{i}")).collect();
    let nodes = std::iter::once(("root".to_owned(), vec![]))
        .chain(middle.iter().map(|m| (m.clone(), vec!["root".to_owned()])))
        .chain(std::iter::once(("sink".to_owned(), middle.clone())));
    let run = baton
        .apply(&format!("bench-fan-{round}"), nodes, true)
        .await?
        .context("no run started")?;
    let (mut first, mut last, mut finished) = (None, None, 0);
    watch(seen, Duration::from_secs(900), |s| match s {
        Seen::Job { at, run: r, .. } if r == run => {
            first.get_or_insert(at);
            false
        }
        Seen::Finished { at, run: r } if r == run => {
            finished += 1;
            last = Some(at);
            finished == n
        }
        _ => false,
    })
    .await
    .context("the fan-out")?;
    let wall = last.zip(first).map(|(l, f)| l - f).unwrap_or_default();
    Ok(n as f64 / wall.as_secs_f64())
}

/// Node transitions per second of `runs` chains of `nodes` started together.
async fn concurrent_runs(
    baton: &Baton,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    runs: usize,
    nodes: usize,
) -> anyhow::Result<f64> {
    baton.apply("bench-runs", chain_nodes(nodes), false).await?;
    let started = Instant::now();
    let mut ids = std::collections::HashSet::new();
    for _ in 0..runs {
        ids.insert(baton.start("bench-runs").await?);
    }
    let total = runs * nodes;
    let (mut finished, mut last) = (0, started);
    watch(seen, Duration::from_secs(900), |s| match s {
        Seen::Finished { at, run } if ids.contains(&run) => {
            finished += 1;
            last = at;
            finished == total
        }
        _ => false,
    })
    .await
    .context("the concurrent runs")?;
    Ok(total as f64 / (last - started).as_secs_f64())
}

struct Dag {
    accepted: Duration,
    completed: bool,
    wall: Duration,
}

/// One DAG of `width` chains of `depth` nodes under one root: accepted, completed, wall time.
async fn large_dag(
    baton: &Baton,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    width: usize,
    depth: usize,
) -> anyhow::Result<Dag> {
    let n = width * depth;
    let nodes = (0..depth).flat_map(move |d| {
        (0..width).map(move |w| {
            let needs = if d == 0 {
                vec![]
            } else {
                vec![format!("c{w}-{}", d - 1)]
            };
            (format!("c{w}-{d}"), needs)
        })
    });
    let started = Instant::now();
    let run = baton
        .apply("bench-dag", nodes, true)
        .await?
        .context("no run started")?;
    let accepted = started.elapsed();
    let mut finished = 0;
    watch(seen, Duration::from_secs(1800), |s| match s {
        Seen::Finished { run: r, .. } if r == run => {
            finished += 1;
            finished == n
        }
        _ => false,
    })
    .await
    .context("the large DAG")?;
    let wall = started.elapsed();
    // The run's state, once the planner has applied the last event.
    let mut state = String::new();
    for _ in 0..100 {
        state = baton.state(&run).await?;
        if state == "succeeded" || state == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Dag {
        accepted,
        completed: state == "succeeded",
        wall,
    })
}

fn peak_rss_mib(child: &Child) -> anyhow::Result<f64> {
    let pid = child.id().context("the planner has exited")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/PID/status")?;
    Ok(kib / 1024.0)
}

/// Trigger messages per second turned into runs: from the first publish to the first job of
/// the last run.
async fn triggers(
    baton: &Baton,
    js: &jetstream::Context,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    n: usize,
) -> anyhow::Result<f64> {
    baton
        .apply(
            "bench-trigger",
            std::iter::once(("t".to_owned(), vec![])),
            false,
        )
        .await?;
    let subject = format!("{PREFIX}.triggers.bench-trigger");
    let started = Instant::now();
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move {
            for window in (0..n).collect::<Vec<_>>().chunks(1000) {
                let mut acks = Vec::with_capacity(window.len());
                for i in window {
                    let publish = jetstream::message::PublishMessage::build()
                        .payload(format!("trigger {i}").into())
                        .message_id(format!("bench-trigger-{i}"));
                    acks.push(js.send_publish(subject.clone(), publish).await?);
                }
                for ack in acks {
                    ack.await?;
                }
            }
            anyhow::Ok(())
        })
    };
    // Jobs and finished events arrive on two subscriptions, so a run's end may be seen
    // before its job: both are counted in one pass.
    let (mut jobs, mut ends) = (HashSet::with_capacity(n), HashSet::with_capacity(n));
    let (mut both, mut last) = (0, None);
    watch(seen, Duration::from_secs(600), |s| {
        match s {
            Seen::Job { at, run, node } if node == "t" => {
                if !jobs.contains(&run) && ends.contains(&run) {
                    both += 1;
                }
                jobs.insert(run);
                if jobs.len() == n {
                    last = Some(at);
                }
            }
            Seen::Finished { run, .. } => {
                if !ends.contains(&run) && jobs.contains(&run) {
                    both += 1;
                }
                ends.insert(run);
            }
            _ => {}
        }
        last.is_some() && both == n
    })
    .await
    .context("the triggers")?;
    publisher.await??;
    let last = last.expect("checked by the watch");
    let per_second = n as f64 / (last - started).as_secs_f64();
    // Let the planner apply the last events before anything else is measured.
    planner_idle(js).await?;
    Ok(per_second)
}

/// Waits until the planner has taken and acknowledged every event on the bus.
async fn planner_idle(js: &jetstream::Context) -> anyhow::Result<()> {
    let stream = js
        .get_stream(format!("{}_EVENTS", PREFIX.to_uppercase()))
        .await?;
    let mut consumer: consumer::PullConsumer = stream
        .get_consumer("planner-events")
        .await
        .map_err(|e| anyhow::anyhow!("the planner's consumer: {e}"))?;
    let started = Instant::now();
    loop {
        let info = consumer.info().await?;
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return Ok(());
        }
        ensure!(
            started.elapsed() < Duration::from_secs(300),
            "the planner did not catch up with its events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Returns how many events the planner has applied (its consumer's acknowledged floor).
async fn events_applied(js: &jetstream::Context) -> anyhow::Result<u64> {
    let mut stream = js
        .get_stream(format!("{}_EVENTS", PREFIX.to_uppercase()))
        .await?;
    Ok(stream.info().await?.state.messages)
}

/// The time from a planner's start to the first job of a run triggered at that moment.
async fn recovery(
    js: &jetstream::Context,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    restarted: Instant,
) -> anyhow::Result<Duration> {
    let publish = jetstream::message::PublishMessage::build()
        .payload("after restart".into())
        .message_id("bench-recovery");
    js.send_publish(format!("{PREFIX}.triggers.bench-trigger"), publish)
        .await?
        .await?;
    let mut at = restarted;
    watch(seen, Duration::from_secs(300), |s| match s {
        Seen::Job { at: a, node, .. } if node == "t" && a > restarted => {
            at = a;
            true
        }
        _ => false,
    })
    .await
    .context("the restarted planner")?;
    Ok(at - restarted)
}
