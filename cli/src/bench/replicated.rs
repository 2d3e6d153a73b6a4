//! The chain and the fan-out again on a three-node NATS cluster with every stream at R3,
//! beside their own floor on R3 streams: what replication costs, in the same run as the
//! single server's figures.

use std::path::Path;

use anyhow::Context;
use async_nats::jetstream;
use serde::Serialize;

use super::cluster::cluster;
use super::turns::take_turns;
use super::{Baton, CpuPerItem, Processes, Sizes, ms, observe, percentile};
use crate::args::BenchArgs;
use crate::nats_server::free_port;

/// The figures on the cluster.
#[derive(Debug, Serialize)]
pub(crate) struct ReplicatedReport {
    pub(crate) replicas: usize,
    pub(crate) floor_serial_p50_ms: f64,
    pub(crate) floor_pipelined_edges_per_s: f64,
    pub(crate) chain_per_node_p50_ms: f64,
    pub(crate) chain_per_node_p99_ms: f64,
    /// The chain's per-node time over the serial floor's, both on the cluster.
    pub(crate) chain_ratio: f64,
    pub(crate) throughput_nodes_per_s: f64,
    /// The fan-out over the pipelined floor, both on the cluster.
    pub(crate) throughput_ratio: f64,
    /// CPU time per node of the fan-out; `nats` sums the three servers.
    pub(crate) fan_out_cpu_us: CpuPerItem,
}

/// Starts one server in `dir`, a planner and a worker on it, and measures the turns alone
/// (`baton bench --throughput-only`, beside [`on_cluster`]).
pub(crate) async fn on_server(
    args: &BenchArgs,
    sizes: Sizes,
    program: &Path,
    dir: &Path,
) -> anyhow::Result<ReplicatedReport> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let nats =
        crate::nats_server::NatsServer::start(program, &dir.join("nats"), free_port()?, None)
            .await?;
    let url = nats.url.clone();
    let members = [nats];
    let result = measure(args, sizes, dir, &url, &members).await;
    let [nats] = members;
    nats.stop().await;
    result
}

/// Starts a cluster in `dir`, a planner and a worker on it, and measures.
pub(crate) async fn on_cluster(
    args: &BenchArgs,
    sizes: Sizes,
    program: &Path,
    dir: &Path,
) -> anyhow::Result<ReplicatedReport> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (members, url) = cluster(program, dir).await?;
    let result = measure(args, sizes, dir, &url, &members).await;
    for member in members {
        member.stop().await;
    }
    result
}

async fn measure(
    args: &BenchArgs,
    sizes: Sizes,
    dir: &Path,
    url: &str,
    members: &[crate::nats_server::NatsServer],
) -> anyhow::Result<ReplicatedReport> {
    let client = async_nats::ConnectOptions::new()
        .subscription_capacity(1 << 20)
        .connect(baton_bus::server_list(url)?)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let js = jetstream::new(client.clone());
    let baton = Baton::new(url, dir, free_port()?, members.len())?;
    let mut planner = baton.spawn_planner().await?;
    let mut worker = baton.spawn_worker(args.concurrency)?;
    let mut seen = observe(&client).await?;
    let processes = Processes {
        planner: planner.id().context("the planner has exited")?,
        worker: worker.id().context("the worker has exited")?,
        nats: members
            .iter()
            .map(|m| m.pid().context("a nats-server has exited"))
            .collect::<anyhow::Result<_>>()?,
    };
    let turns = take_turns(&js, &baton, &mut seen, &processes, sizes).await;
    planner.kill().await.ok();
    worker.kill().await.ok();
    let turns = turns?;
    let chain_p50 = percentile(&turns.chain.per_node, 50.0);
    let serial_p50 = percentile(&turns.serial, 50.0);
    Ok(ReplicatedReport {
        replicas: members.len(),
        floor_serial_p50_ms: ms(serial_p50),
        floor_pipelined_edges_per_s: turns.pipelined,
        chain_per_node_p50_ms: ms(chain_p50),
        chain_per_node_p99_ms: ms(percentile(&turns.chain.per_node, 99.0)),
        chain_ratio: chain_p50.as_secs_f64() / serial_p50.as_secs_f64(),
        throughput_nodes_per_s: turns.fan_out,
        throughput_ratio: turns.fan_out / turns.pipelined,
        fan_out_cpu_us: turns.fan_out_cpu.per_item(),
    })
}

/// One line of the figures, for `--throughput-only`.
pub(crate) fn summary(r: &ReplicatedReport) -> String {
    let cpu = &r.fan_out_cpu_us;
    format!(
        "R{}: floor p50 {:.3} ms, {:.0} edges/s; chain p50 {:.3} ms ({:.2}x the serial floor), p99 {:.3} ms; fan-out {:.0} nodes/s ({:.0}% of the pipelined floor); CPU per node: nats {:.1} us, planner {:.1} us, worker {:.1} us, bench (observer) {:.1} us",
        r.replicas,
        r.floor_serial_p50_ms,
        r.floor_pipelined_edges_per_s,
        r.chain_per_node_p50_ms,
        r.chain_ratio,
        r.chain_per_node_p99_ms,
        r.throughput_nodes_per_s,
        r.throughput_ratio * 100.0,
        cpu.nats,
        cpu.planner,
        cpu.worker,
        cpu.bench,
    )
}
