//! What Baton's processes tell an operator beside their logs: Prometheus metrics in the
//! OpenMetrics text format ([`metrics`]), with the process's own figures (`process`) and
//! its calls to ELBv2 and the Kubernetes API ([`clients`]).
//!
//! Each process builds one [`Registry`](prometheus_client::registry::Registry) at start,
//! registers its families into it (the planner's in `baton-planner`, a worker's in
//! `baton-workers`), and serves it frozen as an [`Exposition`]: families are shared handles,
//! so updating one needs no lock on the registry.

pub mod clients;
pub mod metrics;
mod process;
pub mod trace;

pub use clients::{CallOutcome, client_calls, kube_client, kube_client_from};
pub use metrics::{Exposition, METRICS_CONTENT_TYPE, seconds_buckets};
pub use process::ProcessCollector;
