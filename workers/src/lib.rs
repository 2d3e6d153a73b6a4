//! Baton's workers: stateless processes that pull jobs of their kinds from the bus, perform
//! the effect, report the result as an event, and only then acknowledge the job.
//!
//! - [`executors`]: what each job kind does.
//! - [`service`]: pulling, bounded concurrency, progress acks, cancel notices and shutdown.

pub mod executors;
pub mod failpoint;
pub mod service;

pub use service::{WorkerConfig, run};
