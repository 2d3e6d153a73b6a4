//! What observability costs: the chain and the fan-out with the planner and worker counting
//! nothing (`--no-metrics`, no `--metrics-listen`), with metrics on and scraped every second
//! as Prometheus would, and with metrics and traces on (every span exported over OTLP to a
//! receiver the bench runs, which takes and drops them). The three take turns, [`ROUNDS`]
//! times, each on a planner and a worker started for it, so that all see the same machine.

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
    Traced,
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
    pub(crate) chain_traced_p50_ms: f64,
    /// Metrics and traces on over off.
    pub(crate) chain_traced_ratio: f64,
    pub(crate) fan_out_traced_nodes_per_s: f64,
    /// Off over metrics and traces on, for throughput.
    pub(crate) fan_out_traced_ratio: f64,
    /// What the OTLP receiver took while traces were on, in bytes (spans did flow).
    pub(crate) otlp_bytes: u64,
}

/// Runs the turns; `baton` names the bus and the API, and no planner or worker of it runs.
pub(crate) async fn cost(
    baton: &Baton,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    sizes: Sizes,
    concurrency: usize,
) -> anyhow::Result<ObservabilityCost> {
    let (mut chain_off, mut chain_on, mut chain_traced) = (Vec::new(), Vec::new(), Vec::new());
    let (mut fan_off, mut fan_on, mut fan_traced) = (Vec::new(), Vec::new(), Vec::new());
    let receiver = OtlpSink::start().await?;
    for round in 0..ROUNDS {
        for (turn, mode) in [Mode::Off, Mode::Metrics, Mode::Traced]
            .into_iter()
            .enumerate()
        {
            // Names no earlier round used: each turn's planner keeps the same store.
            let id = 1000 + round * 3 + turn;
            let (mut planner, mut worker, scraping) =
                start(baton, mode, concurrency, &receiver.endpoint).await?;
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
            // Stopped, not killed: a tracing process sends its last spans as it exits.
            stop(&mut planner).await;
            stop(&mut worker).await;
            let p50 = percentile(&chain.per_node, 50.0);
            let (chains, fans) = match mode {
                Mode::Off => (&mut chain_off, &mut fan_off),
                Mode::Metrics => (&mut chain_on, &mut fan_on),
                Mode::Traced => (&mut chain_traced, &mut fan_traced),
            };
            chains.push(p50);
            fans.push(fan_out);
        }
    }
    let (chain_off, chain_on) = (percentile(&chain_off, 50.0), percentile(&chain_on, 50.0));
    let chain_traced = percentile(&chain_traced, 50.0);
    let (fan_off, fan_on, fan_traced) = (median(fan_off), median(fan_on), median(fan_traced));
    Ok(ObservabilityCost {
        chain_off_p50_ms: ms(chain_off),
        chain_metrics_p50_ms: ms(chain_on),
        chain_metrics_ratio: chain_on.as_secs_f64() / chain_off.as_secs_f64(),
        fan_out_off_nodes_per_s: fan_off,
        fan_out_metrics_nodes_per_s: fan_on,
        fan_out_metrics_ratio: fan_off / fan_on,
        chain_traced_p50_ms: ms(chain_traced),
        chain_traced_ratio: chain_traced.as_secs_f64() / chain_off.as_secs_f64(),
        fan_out_traced_nodes_per_s: fan_traced,
        fan_out_traced_ratio: fan_off / fan_traced,
        otlp_bytes: receiver.bytes(),
    })
}

/// An OTLP/HTTP receiver that takes every export and drops it, counting its bytes.
struct OtlpSink {
    endpoint: String,
    bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl OtlpSink {
    async fn start() -> anyhow::Result<OtlpSink> {
        use axum::routing::post;
        let bytes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = bytes.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            post(move |body: axum::body::Bytes| {
                counted.fetch_add(body.len() as u64, std::sync::atomic::Ordering::Relaxed);
                // An empty ExportTraceServiceResponse.
                std::future::ready((
                    [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                    Vec::<u8>::new(),
                ))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}/v1/traces", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(OtlpSink { endpoint, bytes })
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Starts a planner and a worker in `mode`; with metrics, also a scraper reading both
/// every second until the token is cancelled.
async fn start(
    baton: &Baton,
    mode: Mode,
    concurrency: usize,
    otlp: &str,
) -> anyhow::Result<(Child, Child, CancellationToken)> {
    let scraping = CancellationToken::new();
    let (mut planner_args, mut worker_args, ports) = match mode {
        Mode::Off => (vec!["--no-metrics".to_owned()], vec![], None),
        Mode::Metrics | Mode::Traced => {
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
    if mode == Mode::Traced {
        for args in [&mut planner_args, &mut worker_args] {
            args.extend(["--otlp-endpoint".to_owned(), otlp.to_owned()]);
        }
    }
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

/// Stops `child` with SIGTERM, waiting up to 30 s before killing it.
async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }
    if tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .is_err()
    {
        child.kill().await.ok();
    }
}
