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
//!   time from its start to the first job of a new run;
//! - what observability costs: the chain and the fan-out with metrics off and on, taking
//!   turns (`observability.rs`).

mod baton;
mod burst;
mod cluster;
mod cpu;
mod floor;
mod observability;
mod replicated;
mod scenarios;
mod takeover;
mod turns;

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use async_nats::jetstream::{self};
use serde::Serialize;
use tracing::info;

use crate::args::{BenchArgs, Format, Scale};
use crate::nats_server::{self, NatsServer, free_port};

use baton::*;
use burst::*;
use cpu::*;
use floor::*;
use scenarios::*;

/// The sizes of one scale.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Sizes {
    pub(crate) floor_serial: usize,
    pub(crate) floor_pipelined: usize,
    pub(crate) chain: usize,
    pub(crate) fan_out: usize,
    pub(crate) runs: usize,
    pub(crate) run_nodes: usize,
    pub(crate) dag_width: usize,
    pub(crate) dag_depth: usize,
    pub(crate) triggers: usize,
    /// Invalid API requests in flight at once while a chain runs.
    pub(crate) burst: usize,
}

impl Sizes {
    pub(crate) fn of(scale: Scale) -> Sizes {
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
                burst: 1_000,
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
                burst: 50,
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
                burst: 1_000,
            },
        }
    }
}

/// What one run of the benchmark measured. The names are read by programs outside the
/// project: keep them.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) scale: &'static str,
    pub(crate) floor_serial_p50_ms: f64,
    pub(crate) floor_serial_p99_ms: f64,
    pub(crate) floor_pipelined_edges_per_s: f64,
    /// CPU time per edge of the pipelined floor, by process, in microseconds.
    pub(crate) floor_pipelined_cpu_us: CpuPerItem,
    pub(crate) chain_nodes: usize,
    pub(crate) chain_per_node_p50_ms: f64,
    pub(crate) chain_per_node_p99_ms: f64,
    /// Of a chain node: from its job to its end, as the bus shows them.
    pub(crate) chain_worker_p50_ms: f64,
    /// Of a chain node: from its end to the next node's job.
    pub(crate) chain_planner_p50_ms: f64,
    pub(crate) chain_ratio: f64,
    /// Invalid API requests in flight at once while a chain ran, and how many per second
    /// the API answered.
    pub(crate) burst_concurrency: usize,
    pub(crate) burst_requests_per_s: f64,
    /// Requests of the burst not refused with a 4xx (a 5xx, a failed connection).
    pub(crate) burst_unexpected: u64,
    pub(crate) burst_chain_per_node_p50_ms: f64,
    /// The chain's per-node time under the burst over its time idle.
    pub(crate) burst_chain_ratio: f64,
    pub(crate) fan_out_nodes: usize,
    pub(crate) throughput_nodes_per_s: f64,
    pub(crate) throughput_ratio: f64,
    /// CPU time per node of the fan-out, by process, in microseconds.
    pub(crate) fan_out_cpu_us: CpuPerItem,
    pub(crate) concurrent_runs: usize,
    pub(crate) concurrent_run_nodes: usize,
    pub(crate) concurrent_nodes_per_s: f64,
    pub(crate) dag_nodes: usize,
    pub(crate) dag_accepted_s: f64,
    pub(crate) dag_completed: bool,
    pub(crate) dag_wall_s: f64,
    pub(crate) dag_peak_rss_mib: f64,
    pub(crate) triggers: usize,
    pub(crate) triggers_per_s: f64,
    pub(crate) recovery_events: u64,
    pub(crate) recovery_s: f64,
    /// The chain and the fan-out with metrics off and on.
    pub(crate) observability: observability::ObservabilityCost,
    /// The chain and the fan-out again on a three-node cluster, streams at R3.
    pub(crate) r3: Option<replicated::ReplicatedReport>,
}

pub(crate) const PREFIX: &str = "bench";

/// Runs the benchmark and prints its table.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let sizes = Sizes::of(args.scale);
    let dir = std::env::temp_dir().join(format!("baton-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if let Some(kills) = args.takeover_kills {
        let program = nats_server::find(args.nats_server.as_deref())?;
        // The chain must outlast the kills (each stops it for a lease's ttl and more).
        let nodes = match args.scale {
            Scale::Smoke => 2_000,
            Scale::Quick => 20_000,
            Scale::Full => 50_000,
        };
        let ttl = args.takeover_lease_ttl.0;
        let report = takeover::takeover(&program, &dir, kills, ttl, nodes).await;
        keep_files_if(report.is_err(), &dir);
        let report = report?;
        match args.output {
            Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            Format::Text => println!(
                "planner takeover on a three-node NATS cluster (R3), lease ttl {} ms, a chain of {} nodes, {} kills: median {:.2} s, max {:.2} s ({})",
                report.takeover_lease_ttl_ms,
                report.takeover_chain_nodes,
                report.takeover_kills,
                report.takeover_p50_s,
                report.takeover_max_s,
                report
                    .takeover_s
                    .iter()
                    .map(|s| format!("{s:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
        return Ok(());
    }
    if args.throughput_only {
        let program = nats_server::find(args.nats_server.as_deref())?;
        let r1 = replicated::on_server(&args, sizes, &program, &dir.join("r1")).await;
        let both = match r1 {
            Ok(r1) => replicated::on_cluster(&args, sizes, &program, &dir.join("r3"))
                .await
                .map(|r3| [r1, r3]),
            Err(e) => Err(e),
        };
        keep_files_if(both.is_err(), &dir);
        let both = both?;
        match args.output {
            Format::Json => println!("{}", serde_json::to_string_pretty(&both)?),
            Format::Text => {
                for r in &both {
                    println!("{}", replicated::summary(r));
                }
            }
        }
        return Ok(());
    }
    let result = run_in(&args, sizes, &dir).await;
    keep_files_if(result.is_err(), &dir);
    let report = result?;
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print_table(&report, &sizes),
    }
    Ok(())
}

/// Removes the bench's files, unless it failed or logs were asked for with
/// `BATON_BENCH_LOG`: those are kept, and where they are is said.
fn keep_files_if(failed: bool, dir: &Path) {
    if !failed && std::env::var_os("BATON_BENCH_LOG").is_none() {
        let _ = std::fs::remove_dir_all(dir);
    } else {
        eprintln!("bench files kept in {}", dir.display());
    }
}

pub(crate) async fn run_in(args: &BenchArgs, sizes: Sizes, dir: &Path) -> anyhow::Result<Report> {
    let program = nats_server::find(args.nats_server.as_deref())?;
    let nats = NatsServer::start(&program, &dir.join("nats"), free_port()?, None).await?;
    let pid = nats.pid().context("nats-server has exited")?;
    let result = measure(args, sizes, dir, &nats.url, pid).await;
    nats.stop().await;
    let mut report = result?;
    report.r3 = Some(replicated::on_cluster(args, sizes, &program, &dir.join("r3")).await?);
    Ok(report)
}

pub(crate) async fn measure(
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
    let baton = Baton::new(url, dir, api_port, 1)?;
    let mut planner = baton.spawn_planner().await?;
    let mut worker = baton.spawn_worker(args.concurrency)?;
    let mut seen = observe(&client).await?;
    let processes = Processes {
        planner: planner.id().context("the planner has exited")?,
        worker: worker.id().context("the worker has exited")?,
        nats: vec![nats_pid],
    };

    let turns = turns::take_turns(&js, &baton, &mut seen, &processes, sizes).await?;
    let (serial, chain) = (turns.serial, turns.chain);
    info!(
        nodes = sizes.chain,
        concurrency = sizes.burst,
        "chain under a burst of invalid requests"
    );
    let burst = chain_under_burst(&baton, &mut seen, sizes.chain, sizes.burst).await?;
    let (pipelined, fan_out) = (turns.pipelined, turns.fan_out);
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
    let observability = observability::cost(&baton, &mut seen, sizes, args.concurrency).await?;

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
        floor_pipelined_cpu_us: turns.floor_cpu.per_item(),
        chain_nodes: sizes.chain,
        chain_per_node_p50_ms: ms(chain_p50),
        chain_per_node_p99_ms: ms(percentile(&chain.per_node, 99.0)),
        chain_worker_p50_ms: ms(percentile(&chain.worker, 50.0)),
        chain_planner_p50_ms: ms(percentile(&chain.planner, 50.0)),
        chain_ratio: chain_p50.as_secs_f64() / percentile(&serial, 50.0).as_secs_f64(),
        burst_concurrency: sizes.burst,
        burst_requests_per_s: burst.requests_per_s,
        burst_unexpected: burst.unexpected,
        burst_chain_per_node_p50_ms: ms(percentile(&burst.chain.per_node, 50.0)),
        burst_chain_ratio: percentile(&burst.chain.per_node, 50.0).as_secs_f64()
            / chain_p50.as_secs_f64(),
        fan_out_nodes: sizes.fan_out,
        throughput_nodes_per_s: fan_out,
        throughput_ratio: fan_out / pipelined,
        fan_out_cpu_us: turns.fan_out_cpu.per_item(),
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
        observability,
        r3: None,
    })
}

pub(crate) fn print_table(r: &Report, sizes: &Sizes) {
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
            format!(
                "the chain under {} invalid API requests at a time",
                r.burst_concurrency
            ),
            format!(
                "p50 {:.3} ms per node, {:.2}x idle; {:.0} requests/s refused, {} not with a 4xx",
                r.burst_chain_per_node_p50_ms,
                r.burst_chain_ratio,
                r.burst_requests_per_s,
                r.burst_unexpected
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
        (
            "metrics off / on (scraped every second): chain p50 per node".to_owned(),
            format!(
                "{:.3} ms / {:.3} ms ({:.2}x)",
                r.observability.chain_off_p50_ms,
                r.observability.chain_metrics_p50_ms,
                r.observability.chain_metrics_ratio
            ),
        ),
        (
            "metrics off / on: fan-out".to_owned(),
            format!(
                "{:.0} / {:.0} nodes/s ({:.2}x slower with metrics)",
                r.observability.fan_out_off_nodes_per_s,
                r.observability.fan_out_metrics_nodes_per_s,
                r.observability.fan_out_metrics_ratio
            ),
        ),
        (
            "metrics and traces on (every span exported): chain, fan-out".to_owned(),
            format!(
                "{:.3} ms per node ({:.2}x off); {:.0} nodes/s ({:.2}x slower than off); {} KiB of spans",
                r.observability.chain_traced_p50_ms,
                r.observability.chain_traced_ratio,
                r.observability.fan_out_traced_nodes_per_s,
                r.observability.fan_out_traced_ratio,
                r.observability.otlp_bytes / 1024
            ),
        ),
    ];
    let mut rows = rows;
    if let Some(r3) = &r.r3 {
        rows.extend(replicated_rows(r, r3));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    println!("baton bench ({} scale)", r.scale);
    for (k, v) in rows {
        println!("  {k:<width$}  {v}");
    }
}

/// The rows of the cluster's figures, beside the single server's.
fn replicated_rows(r: &Report, r3: &replicated::ReplicatedReport) -> Vec<(String, String)> {
    vec![
        (
            format!("R{}: floor, serial and pipelined", r3.replicas),
            format!(
                "p50 {:.3} ms ({:.2}x R1's); {:.0} edges/s ({:.0}% of R1's)",
                r3.floor_serial_p50_ms,
                r3.floor_serial_p50_ms / r.floor_serial_p50_ms,
                r3.floor_pipelined_edges_per_s,
                r3.floor_pipelined_edges_per_s / r.floor_pipelined_edges_per_s * 100.0
            ),
        ),
        (
            format!("R{}: chain, per node", r3.replicas),
            format!(
                "p50 {:.3} ms ({:.2}x R1's), p99 {:.3} ms, {:.2}x the R{} serial floor",
                r3.chain_per_node_p50_ms,
                r3.chain_per_node_p50_ms / r.chain_per_node_p50_ms,
                r3.chain_per_node_p99_ms,
                r3.chain_ratio,
                r3.replicas
            ),
        ),
        (
            format!("R{}: fan-out/fan-in", r3.replicas),
            format!(
                "{:.0} nodes/s ({:.0}% of R1's), {:.0}% of the R{} pipelined floor; CPU per node: nats (three) {:.1} us, planner {:.1} us, worker {:.1} us",
                r3.throughput_nodes_per_s,
                r3.throughput_nodes_per_s / r.throughput_nodes_per_s * 100.0,
                r3.throughput_ratio * 100.0,
                r3.replicas,
                r3.fan_out_cpu_us.nats,
                r3.fan_out_cpu_us.planner,
                r3.fan_out_cpu_us.worker,
            ),
        ),
    ]
}
