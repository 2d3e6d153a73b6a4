//! The planner's health endpoint, apart from its API: a standby serves no API (only the
//! active planner may), yet it is a healthy pod that a rollout or a node drain must be able
//! to count as ready. `GET /healthz` on `--health-listen` answers 200 from the start, with
//! `standing by` or `active`; probes carry no token. `GET /metrics` there serves the
//! process's metrics, a standby's included.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Whether this planner acts, as the health endpoint reports it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Role(Arc<AtomicBool>);

impl Role {
    /// Notes that this planner holds the lease and acts.
    pub(crate) fn set_active(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn describe(&self) -> &'static str {
        match self.0.load(Ordering::Relaxed) {
            true => "active",
            false => "standing by",
        }
    }
}

/// Binds `addr` (a port taken is the user's error, found before anything starts) and serves
/// `/healthz` and `/metrics` until `shutdown`.
pub(crate) async fn serve(
    addr: SocketAddr,
    role: Role,
    metrics: Option<&baton_telemetry::Exposition>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (--health-listen)"))?;
    info!(listen = %addr, "health endpoint listening");
    let mut app = Router::new().route("/healthz", get(move || async move { role.describe() }));
    if let Some(metrics) = metrics {
        app = app.merge(metrics.router());
    }
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            warn!(error = %e, "the health endpoint stopped");
        }
    });
    Ok(())
}
