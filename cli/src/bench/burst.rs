//! A chain under a burst of invalid API requests: the planner's loop must not stall while its
//! API refuses a flood. Waves of concurrent requests, half without a token (401) and half
//! with a body that is not JSON (400 or 415), are sent for as long as a chain runs; the
//! chain's per-node time is compared with the same chain run idle just before.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;

/// How long one request of the flood may take.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a chain under a burst of invalid requests measured.
pub(crate) struct Burst {
    /// The chain's per-node times.
    pub(crate) chain: Chain,
    /// Requests answered per second during the chain.
    pub(crate) requests_per_s: f64,
    /// Answers that were not the refusal expected (4xx): a 5xx, or a request that failed.
    pub(crate) unexpected: u64,
}

/// Runs a chain of `n` nodes while waves of `concurrency` invalid requests go on.
pub(crate) async fn chain_under_burst(
    baton: &Baton,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Burst> {
    let stop = CancellationToken::new();
    let answered = Arc::new(AtomicU64::new(0));
    let unexpected = Arc::new(AtomicU64::new(0));
    // A client of its own, without the benchmark's token, and one connection per request in
    // flight: a flood of clients, not one polite one.
    let anonymous = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    // On a thread and runtime of its own: the flood must not delay the benchmark's observer,
    // whose clock times the chain.
    let flood = std::thread::spawn({
        let (stop, answered, unexpected) = (stop.clone(), answered.clone(), unexpected.clone());
        let (api, admin) = (baton.api.clone(), baton.http.clone());
        move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                while !stop.is_cancelled() {
                    let wave = (0..concurrency).map(|i| {
                        // Bounded: a request the API never answers is counted, and cannot
                        // hold the wave (and the benchmark) forever.
                        let request = match i % 2 {
                            0 => anonymous.post(format!("{api}/v1/apply")).body("{}"),
                            _ => admin
                                .post(format!("{api}/v1/apply"))
                                .header("content-type", "application/json")
                                .body("{not json"),
                        }
                        .timeout(REQUEST_TIMEOUT);
                        let (answered, unexpected) = (answered.clone(), unexpected.clone());
                        async move {
                            match request.send().await {
                                Ok(r) if r.status().is_client_error() => {}
                                answer => {
                                    // Said, so that a figure above zero can be looked into.
                                    match answer {
                                        Ok(r) => tracing::warn!(status = %r.status(), "burst: an answer that is not a 4xx"),
                                        Err(e) => tracing::warn!(error = ?e, "burst: a request that failed"),
                                    }
                                    unexpected.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                    futures::future::join_all(wave).await;
                }
            });
            Ok(())
        }
    });
    let started = Instant::now();
    let chain = chain_round(baton, seen, ROUNDS, n).await;
    let elapsed = started.elapsed();
    stop.cancel();
    flood
        .join()
        .map_err(|_| anyhow::anyhow!("the request flood panicked"))??;
    let requests = answered.load(Ordering::Relaxed);
    Ok(Burst {
        chain: chain?,
        requests_per_s: requests as f64 / elapsed.as_secs_f64(),
        unexpected: unexpected.load(Ordering::Relaxed),
    })
}
