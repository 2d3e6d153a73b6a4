//! What metrics cost: the chain and the fan-out with the planner and worker counting nothing
//! (`--no-metrics`, no `--metrics-listen`) beside the same with metrics on and scraped every
//! second, as Prometheus would. The two take turns, [`ROUNDS`] times, each on a planner and a
//! worker started for it, so that both see the same machine.

use std::time::Duration;

use serde::Serialize;
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::*;

/// How the planner and worker of one turn run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Off,
    Metrics,
}

/// The chain's per-node p50 and the fan-out's throughput in each mode.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ObservabilityCost {
    pub(crate) chain_off_p50_ms: f64,
    pub(crate) chain_metrics_p50_ms: f64,
    /// Metrics on over off: 1.10 is 10 % slower.
    pub(crate) chain_metrics_ratio: f64,
    pub(crate) fan_out_off_nodes_per_s: f64,
    pub(crate) fan_out_metrics_nodes_per_s: f64,
    /// Off over metrics on, for throughput: 1.10 is 10 % slower with metrics.
    pub(crate) fan_out_metrics_ratio: f64,
}

/// Runs the turns; `baton` names the bus and the API, and no planner or worker of it runs.
pub(crate) async fn cost(
    baton: &Baton,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    sizes: Sizes,
    concurrency: usize,
) -> anyhow::Result<ObservabilityCost> {
    let (mut chain_off, mut chain_on) = (Vec::new(), Vec::new());
    let (mut fan_off, mut fan_on) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        for mode in [Mode::Off, Mode::Metrics] {
            // Names no earlier round used: each turn's planner keeps the same store.
            let id = 1000 + round * 2 + usize::from(mode == Mode::Metrics);
            let (mut planner, mut worker, scraping) = start(baton, mode, concurrency).await?;
            info!(
                round,
                ?mode,
                nodes = sizes.chain,
                "observability cost: chain"
            );
            let chain = chain_round(baton, seen, id, sizes.chain).await?;
            info!(
                round,
                ?mode,
                nodes = sizes.fan_out,
                "observability cost: fan-out"
            );
            let fan_out = fan_out_round(baton, seen, id, sizes.fan_out).await?;
            scraping.cancel();
            planner.kill().await.ok();
            worker.kill().await.ok();
            let p50 = percentile(&chain.per_node, 50.0);
            match mode {
                Mode::Off => {
                    chain_off.push(p50);
                    fan_off.push(fan_out);
                }
                Mode::Metrics => {
                    chain_on.push(p50);
                    fan_on.push(fan_out);
                }
            }
        }
    }
    let (chain_off, chain_on) = (median_duration(chain_off), median_duration(chain_on));
    let (fan_off, fan_on) = (median(fan_off), median(fan_on));
    Ok(ObservabilityCost {
        chain_off_p50_ms: ms(chain_off),
        chain_metrics_p50_ms: ms(chain_on),
        chain_metrics_ratio: chain_on.as_secs_f64() / chain_off.as_secs_f64(),
        fan_out_off_nodes_per_s: fan_off,
        fan_out_metrics_nodes_per_s: fan_on,
        fan_out_metrics_ratio: fan_off / fan_on,
    })
}

/// Starts a planner and a worker in `mode`; with metrics, also a scraper reading both
/// every second until the token is cancelled.
async fn start(
    baton: &Baton,
    mode: Mode,
    concurrency: usize,
) -> anyhow::Result<(Child, Child, CancellationToken)> {
    let scraping = CancellationToken::new();
    let (planner_args, worker_args, ports) = match mode {
        Mode::Off => (vec!["--no-metrics".to_owned()], vec![], None),
        Mode::Metrics => {
            let (health, metrics) = (free_port()?, free_port()?);
            (
                vec!["--health-listen".to_owned(), format!("127.0.0.1:{health}")],
                vec![
                    "--metrics-listen".to_owned(),
                    format!("127.0.0.1:{metrics}"),
                ],
                Some((health, metrics)),
            )
        }
    };
    let planner = baton.spawn_planner_with(&planner_args).await?;
    let worker = baton.spawn_worker_with(concurrency, &worker_args)?;
    if let Some((health, metrics)) = ports {
        tokio::spawn(scrape(
            baton.http.clone(),
            [health, metrics],
            scraping.clone(),
        ));
    }
    Ok((planner, worker, scraping))
}

/// GETs `/metrics` on each port every second, as Prometheus would, until `stop`.
async fn scrape(http: reqwest::Client, ports: [u16; 2], stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        for port in ports {
            // A worker still starting refuses; the next second tries again.
            if let Ok(answer) = http
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
            {
                let _ = answer.bytes().await;
            }
        }
    }
}

fn median_duration(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}
