//! The floor and Baton taking turns: the serial floor, a chain, the pipelined floor and a
//! fan-out, [`ROUNDS`] times, so that both see the same machine (its load, and how fast its
//! idle cores wake up, change from one second to the next).

use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::mpsc;
use tracing::info;

use super::{
    Baton, Chain, Cpu, Processes, ROUNDS, Seen, Sizes, chain_round, fan_out_round, floor_pipelined,
    floor_serial, median,
};

/// What the turns measured.
pub(crate) struct Turns {
    /// Every serial floor edge.
    pub(crate) serial: Vec<Duration>,
    /// Every chain node.
    pub(crate) chain: Chain,
    /// The pipelined floor's median, in edges per second.
    pub(crate) pipelined: f64,
    /// The fan-out's median, in nodes per second.
    pub(crate) fan_out: f64,
    pub(crate) floor_cpu: Cpu,
    pub(crate) fan_out_cpu: Cpu,
}

/// Takes the turns on a bus whose streams have `replicas` replicas.
pub(crate) async fn take_turns(
    js: &jetstream::Context,
    baton: &Baton,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    processes: &Processes,
    sizes: Sizes,
) -> anyhow::Result<Turns> {
    let replicas = baton.replicas;
    let (mut serial, mut chain) = (Vec::new(), Chain::default());
    let (mut pipelined, mut fan_out) = (Vec::new(), Vec::new());
    let (mut floor_cpu, mut fan_out_cpu) = (Cpu::default(), Cpu::default());
    for round in 0..ROUNDS {
        info!(
            round,
            replicas,
            samples = sizes.floor_serial,
            "floor: serial"
        );
        serial.extend(floor_serial(js, sizes.floor_serial, replicas).await?);
        info!(round, replicas, nodes = sizes.chain, "chain");
        chain.extend(chain_round(baton, seen, round, sizes.chain).await?);
        info!(
            round,
            replicas,
            edges = sizes.floor_pipelined,
            "floor: pipelined"
        );
        let before = processes.cpu()?;
        pipelined.push(floor_pipelined(js, sizes.floor_pipelined, replicas).await?);
        floor_cpu.add(processes.cpu()?.since(&before), sizes.floor_pipelined);
        info!(round, replicas, nodes = sizes.fan_out, "fan-out/fan-in");
        let before = processes.cpu()?;
        fan_out.push(fan_out_round(baton, seen, round, sizes.fan_out).await?);
        fan_out_cpu.add(processes.cpu()?.since(&before), sizes.fan_out);
    }
    Ok(Turns {
        serial,
        chain,
        pipelined: median(pipelined),
        fan_out: median(fan_out),
        floor_cpu,
        fan_out_cpu,
    })
}
