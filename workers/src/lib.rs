//! Baton's workers: stateless processes that pull jobs of their kinds from the bus, perform
//! the effect, report the result as an event, and only then acknowledge the job.
//!
//! - [`executors`]: what each job kind does.
//! - [`metrics`]: the worker's Prometheus metrics.
//! - [`service`]: pulling, bounded concurrency, progress acks, cancel notices and shutdown.

pub mod completions;
pub mod executors;
pub mod failpoint;
mod job;
pub mod metrics;
pub mod service;

pub use metrics::WorkerMetrics;
pub use service::{WorkerConfig, run};
