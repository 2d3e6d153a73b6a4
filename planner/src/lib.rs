//! Baton's planner: the service around the decision core ([`baton_core`]). It feeds the core
//! from the bus, the API and the cluster, executes its actions, and keeps every run's state in
//! redb so that a crash loses nothing.
//!
//! - [`store`]: the redb store.
//! - [`service`]: the loop that feeds the core from the bus and the API and executes its actions.
//! - [`api`]: the HTTP API.
//! - [`cluster`]: watching Workflow, Task, Ignitor, ApplicationGroup, Cell and AnalysisTemplate
//!   objects in a Kubernetes cluster.
//! - [`discovery`]: discovering Cells' target groups and rules in ELBv2.
//! - [`lease`]: which planner acts, by a lease on the bus.
//! - [`metrics`]: the planner's Prometheus metrics.
//! - [`supervise`]: the loop and the tasks beside it stop together.

pub mod api;
pub mod audit;
pub mod charts;
pub mod cluster;
pub mod discovery;
pub mod lease;
pub mod metrics;
pub mod okra;
pub mod service;
pub mod store;
pub mod supervise;
