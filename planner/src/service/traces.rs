//! The planner's part of a run's trace: a `dispatch` span for each job, child of what caused
//! it (the API request or trigger that started the run, or the worker's `execute` span whose
//! completion made the node ready), its context in the job's `traceparent`. A job with no
//! cause in this process (a retry a timer started) joins its run's trace under a parent that
//! stands for the run. Nothing here runs unless this process exports spans.

use std::collections::HashMap;

use baton_core::Action;
use baton_schemas::RunId;
use baton_schemas::wire::Job;
use baton_telemetry::trace::{self, Context};

/// What each job waiting to be published was caused by, and each run's trace.
#[derive(Default)]
pub(super) struct Traces {
    /// By job message id.
    causes: HashMap<String, Context>,
    /// By run: the trace its causes were in (32 hex digits).
    runs: HashMap<RunId, String>,
}

impl Traces {
    /// Notes that `cause` (the trace context of the input just applied) caused `actions`'
    /// jobs, and forgets runs that ended.
    pub(super) fn caused(&mut self, actions: &[Action], cause: Option<&Context>) {
        for action in actions {
            match action {
                Action::Dispatch(job) => {
                    let Some(cause) = cause else { continue };
                    self.causes.insert(job.msg_id(), cause.clone());
                    if let Some(id) = trace::context_trace_id(cause) {
                        self.runs.entry(job.run.clone()).or_insert(id);
                    }
                }
                Action::RunFinished { run, .. } => {
                    self.runs.remove(run);
                }
                _ => {}
            }
        }
    }

    /// Forgets the causes of jobs decided this turn and not dispatched (too large to send, or
    /// replayed and no longer waiting), and the runs `actions` ended: called when a turn's
    /// messages are built.
    pub(super) fn end_turn(&mut self, actions: &[Action]) {
        self.causes.clear();
        for action in actions {
            if let Action::RunFinished { run, .. } = action {
                self.runs.remove(run);
            }
        }
    }

    /// Starts and ends `job`'s dispatch span and writes its context into `headers`.
    pub(super) fn dispatched(&mut self, job: &Job, headers: &mut Vec<(String, String)>) {
        let parent = self.causes.remove(&job.msg_id()).or_else(|| {
            // The run's trace as its causes showed it; a run none showed in this process
            // (started before a restart, or by an ignitor) has the trace its job headers
            // always carried, derived from its id.
            let derived = baton_bus::traceparent(&job.run, job.run.as_str());
            let trace_id = self
                .runs
                .get(&job.run)
                .cloned()
                .unwrap_or_else(|| derived[3..35].to_owned());
            let stands_for_run = u64::from_str_radix(&derived[36..52], 16).unwrap_or(1);
            trace::in_trace(&trace_id, stands_for_run)
        });
        let span = tracing::info_span!(
            "dispatch",
            otel.name = format!("dispatch {}/{}", job.workflow, job.node),
            otel.kind = "producer",
            run = %job.run,
            node = %job.node,
            attempt = %job.attempt,
            kind = %job.kind(),
        );
        if let Some(parent) = parent {
            trace::set_parent(&span, parent);
        }
        trace::inject(&span, headers);
    }
}
