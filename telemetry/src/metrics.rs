//! The registry a process serves, its encoding, and its HTTP route.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

pub use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::Histogram;
pub use prometheus_client::registry::Unit;

/// The media type of the OpenMetrics text format, which Prometheus asks for first.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Bucket bounds for durations in seconds from `smallest` on, each twice the one before:
/// `count` of them. Durations here span milliseconds (a no-op node, a commit) to an hour (a
/// Helm release waiting for its pods), which a doubling series covers in few buckets.
pub fn seconds_buckets(smallest: f64, count: u16) -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(smallest, 2.0, count)
}

/// A process's metrics, registered and frozen: what `/metrics` encodes at each scrape.
#[derive(Clone, Debug)]
pub struct Exposition(Arc<Registry>);

impl Exposition {
    /// Freezes `registry`, with the process collector (`process_*`) and the process's client
    /// call counters added.
    pub fn new(mut registry: Registry) -> Self {
        registry.register_collector(Box::new(crate::ProcessCollector));
        crate::client_calls().register(&mut registry);
        Self(Arc::new(registry))
    }

    /// Encodes every metric in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(8 * 1024);
        // Writing into a String fails only if a metric's own encoding does, which a
        // registered family never does.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.0) {
            tracing::error!(error = %e, "metrics could not be encoded");
        }
        text
    }

    /// Answers a scrape.
    pub fn respond(&self) -> Response {
        let mut response = (StatusCode::OK, self.encode()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(METRICS_CONTENT_TYPE),
        );
        response
    }

    /// Returns a router that serves `GET /metrics`.
    pub fn router(&self) -> Router {
        let exposition = self.clone();
        Router::new().route(
            "/metrics",
            get(move || {
                let exposition = exposition.clone();
                async move { exposition.respond() }
            }),
        )
    }

    /// Binds `addr` (a port taken is the user's error, found before anything starts) and
    /// serves `/metrics` on it until `shutdown`. `flag` names the option the address came
    /// from, for the error.
    pub async fn serve(
        &self,
        addr: SocketAddr,
        flag: &str,
        shutdown: CancellationToken,
    ) -> Result<(), std::io::Error> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on {addr} ({flag}): {e}"))
        })?;
        tracing::info!(listen = %addr, flag, "metrics endpoint listening");
        let app = self.router();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "the metrics endpoint stopped");
            }
        });
        Ok(())
    }
}
