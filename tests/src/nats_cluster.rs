//! A three-node NATS cluster on loopback: three real nats-servers with JetStream, each with its
//! own store, routed to each other, for the tests of what Baton survives when a node of the
//! bus dies. Baton's processes get every member as a seed server and make their streams at R3.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{Env, Nats, free_port};

/// The members a cluster has: three, so that one may die and two still form a quorum.
pub const MEMBERS: usize = 3;

impl Nats {
    /// Starts member `index` of a cluster whose members listen for routes on `route_ports`.
    fn member(dir: &Path, index: usize, route_ports: &[u16]) -> anyhow::Result<Nats> {
        let name = format!("n{}", index + 1);
        let routes = route_ports
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(_, port)| format!("nats-route://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nats = Nats {
            proc: None,
            port: free_port(),
            store: dir.join(format!("nats-{name}")),
            log: dir.join(format!("nats-{name}.log")),
            config: None,
            env: Vec::new(),
            args: vec![
                "--name".into(),
                name,
                "--cluster_name".into(),
                "baton".into(),
                "--cluster".into(),
                format!("nats://127.0.0.1:{}", route_ports[index]),
                "--routes".into(),
                routes,
            ],
        };
        nats.boot()?;
        Ok(nats)
    }

    /// Returns the member's server name (`n1`, `n2`, `n3`).
    pub fn name(&self) -> &str {
        let at = self.args.iter().position(|a| a == "--name");
        at.and_then(|i| self.args.get(i + 1))
            .map_or("nats", String::as_str)
    }
}

impl Env {
    /// Starts a three-node NATS cluster and returns the world around it: Baton's processes
    /// take every member as a seed server and make streams with three replicas. Returns once
    /// the cluster's JetStream answers (its members found each other and chose a leader).
    pub fn on_cluster(program: &'static str) -> anyhow::Result<Env> {
        let route_ports: Vec<u16> = (0..MEMBERS).map(|_| free_port()).collect();
        let mut env = Env::with_nats(program, |dir, _| Nats::member(dir, 0, &route_ports))?;
        for index in 1..MEMBERS {
            let member = Nats::member(env.dir.path(), index, &route_ports)?;
            env.logs.push(member.log.clone());
            env.members.push(member);
        }
        env.logs.push(env.nats.log.clone());
        env.extra_env
            .push(("BATON_REPLICAS".into(), MEMBERS.to_string()));
        wait_for_jetstream(&env.nats_url(), Duration::from_secs(60))?;
        Ok(env)
    }

    /// Returns the cluster member named `name` (`n1`, ...).
    pub fn member(&mut self, name: &str) -> &mut Nats {
        std::iter::once(&mut self.nats)
            .chain(&mut self.members)
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("no cluster member {name}"))
    }
}

/// Waits until the cluster makes and removes an R3 stream: its members found each other and
/// a meta leader answers JetStream's API.
fn wait_for_jetstream(url: &str, within: Duration) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let servers = baton_bus::server_list(url)?;
        let client = async_nats::connect(servers).await?;
        let js = async_nats::jetstream::new(client);
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < within {
            let made = js
                .create_stream(async_nats::jetstream::stream::Config {
                    name: "CLUSTER_READY".into(),
                    subjects: vec!["cluster-ready".into()],
                    num_replicas: MEMBERS,
                    ..Default::default()
                })
                .await;
            match made {
                Ok(_) => {
                    js.delete_stream("CLUSTER_READY")
                        .await
                        .context("removing the readiness stream")?;
                    return Ok(());
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!("the NATS cluster made no R{MEMBERS} stream within {within:?}: {last}")
    })
}

/// Where a stream lives on the cluster.
#[derive(Debug)]
pub struct Placement {
    /// The member that leads it (its server name).
    pub leader: String,
    /// How many replicas its configuration asks for.
    pub replicas: usize,
}

/// Returns where stream `stream` lives, asked of the cluster.
pub fn placement(url: &str, stream: &str) -> anyhow::Result<Placement> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = async_nats::connect(baton_bus::server_list(url)?).await?;
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(stream).await?;
        let info = stream.info().await?;
        let leader = info
            .cluster
            .as_ref()
            .and_then(|c| c.leader.clone())
            .context("the stream has no leader")?;
        Ok(Placement {
            leader,
            replicas: info.config.num_replicas,
        })
    })
}
