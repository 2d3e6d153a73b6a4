//! Baton's planner: turns registered workflows into runs, decides which node runs next, and
//! keeps every run's state in redb so that a crash loses nothing.
//!
//! - [`core`]: the pure decision core.
//! - [`store`]: the redb store.
//! - [`service`]: the loop that feeds the core from the bus and the API and executes its actions.
//! - [`api`]: the HTTP API.
//! - [`cluster`]: watching Workflow, Task, Ignitor, ApplicationGroup, Cell and AnalysisTemplate
//!   objects in a Kubernetes cluster.
//! - [`group_graph`]: compiling application groups into graphs of `helm` nodes.
//! - [`discovery`]: discovering Cells' target groups and rules in ELBv2.
//! - [`ids`]: run ids derived from what names a run.

pub mod api;
pub mod cluster;
pub mod core;
pub mod discovery;
pub mod group_graph;
pub mod ids;
pub mod service;
pub mod store;
