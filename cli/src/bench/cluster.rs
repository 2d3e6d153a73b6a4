//! A three-node NATS cluster on loopback for the bench's R3 figures and its takeover
//! measurement: three nats-servers with JetStream, each with its own store, routed to each
//! other.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::nats_server::{NatsServer, free_port};

/// The cluster's members.
pub(crate) const MEMBERS: usize = 3;

/// Starts a three-node cluster in `dir` and returns its members and its URL once it makes
/// an R3 stream.
pub(crate) async fn cluster(
    program: &Path,
    dir: &Path,
) -> anyhow::Result<(Vec<NatsServer>, String)> {
    let ports: Vec<(u16, u16)> = (0..MEMBERS)
        .map(|_| Ok((free_port()?, free_port()?)))
        .collect::<anyhow::Result<_>>()?;
    let mut members = Vec::new();
    for (i, (port, route)) in ports.iter().enumerate() {
        let routes: Vec<String> = ports
            .iter()
            .filter(|(_, r)| r != route)
            .map(|(_, r)| format!("nats-route://127.0.0.1:{r}"))
            .collect();
        let args = [
            "--name".to_owned(),
            format!("n{}", i + 1),
            "--cluster_name".to_owned(),
            "bench".to_owned(),
            "--cluster".to_owned(),
            format!("nats://127.0.0.1:{route}"),
            "--routes".to_owned(),
            routes.join(","),
        ];
        let store = dir.join(format!("nats-n{}", i + 1));
        members.push(NatsServer::start_with(program, &store, *port, None, &args).await?);
    }
    let url = members
        .iter()
        .map(|m| m.url.clone())
        .collect::<Vec<_>>()
        .join(",");
    let client = async_nats::connect(baton_bus::server_list(&url)?).await?;
    let js = async_nats::jetstream::new(client);
    let started = Instant::now();
    loop {
        let made = js
            .create_stream(async_nats::jetstream::stream::Config {
                name: "BENCH_READY".into(),
                subjects: vec!["bench-ready".into()],
                num_replicas: MEMBERS,
                ..Default::default()
            })
            .await;
        if made.is_ok() {
            js.delete_stream("BENCH_READY").await?;
            return Ok((members, url));
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the NATS cluster made no R3 stream within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
