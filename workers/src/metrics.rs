//! A worker's Prometheus metrics: jobs in flight and how they ended, how long their effects
//! took and how long they waited on the bus before a worker took them, and what the
//! analysis executor measured. Labels are node kinds, outcomes and providers: never a run.

use std::time::{Duration, SystemTime};

use baton_schemas::NodeKind;
use baton_telemetry::metrics::{Counter, Family, Gauge, Histogram, Unit};
use baton_telemetry::seconds_buckets;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MeasurementLabels {
    provider: &'static str,
    result: &'static str,
}

/// How a worker's handling of one job delivery ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// The effect succeeded and its completion is stored.
    Succeeded,
    /// The effect failed and its completion is stored.
    Failed,
    /// Its run or node was cancelled: dropped, or stopped while it ran.
    Cancelled,
    /// Handed back to the bus for another delivery (shutdown, a report the bus did not take).
    HandedBack,
    /// Not the planner's, or not a job at all: set aside.
    SetAside,
}

impl JobOutcome {
    fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Succeeded => "succeeded",
            JobOutcome::Failed => "failed",
            JobOutcome::Cancelled => "cancelled",
            JobOutcome::HandedBack => "handed_back",
            JobOutcome::SetAside => "set_aside",
        }
    }
}

/// A worker's metric families. Cloning shares them.
#[derive(Clone, Debug)]
pub struct WorkerMetrics {
    /// Whether anything is counted: a worker without `--metrics-listen` does no work for
    /// metrics nobody reads.
    on: bool,
    in_flight: Family<KindLabels, Gauge>,
    jobs: Family<JobLabels, Counter>,
    duration: Family<KindLabels, Histogram>,
    queued: Family<KindLabels, Histogram>,
    measurements: Family<MeasurementLabels, Counter>,
}

impl Default for WorkerMetrics {
    /// Counts nothing: a worker whose metrics nobody serves.
    fn default() -> Self {
        Self {
            on: false,
            ..Self::register(&mut Registry::default())
        }
    }
}

fn duration_histogram() -> Histogram {
    // 1 ms to about 9 hours: a no-op to a Helm release that waits for its pods.
    Histogram::new(seconds_buckets(0.001, 25))
}

impl WorkerMetrics {
    /// Makes the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            on: true,
            in_flight: Family::default(),
            jobs: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            queued: Family::new_with_constructor(duration_histogram),
            measurements: Family::default(),
        };
        registry.register(
            "baton_worker_jobs_in_flight",
            "Jobs this worker runs now, by kind.",
            metrics.in_flight.clone(),
        );
        registry.register(
            "baton_worker_jobs",
            "Job deliveries this worker handled, by kind and outcome (succeeded, failed, cancelled, handed_back, set_aside).",
            metrics.jobs.clone(),
        );
        registry.register_with_unit(
            "baton_node_duration",
            "How long a node's effect ran on this worker, by kind.",
            Unit::Seconds,
            metrics.duration.clone(),
        );
        registry.register_with_unit(
            "baton_node_queue",
            "How long a job waited on the bus from its dispatch (stored by the server) to a worker's start, by kind; first deliveries only.",
            Unit::Seconds,
            metrics.queued.clone(),
        );
        registry.register(
            "baton_analysis_measurements",
            "Analysis measurements taken, by provider and result (successful, failed, inconclusive, error).",
            metrics.measurements.clone(),
        );
        metrics
    }

    /// Notes that a job of `kind` starts: counted in flight until the guard drops.
    pub(crate) fn begin(&self, kind: NodeKind) -> InFlight {
        let gauge = self
            .in_flight
            .get_or_create(&KindLabels {
                kind: kind.as_str(),
            })
            .clone();
        gauge.inc();
        InFlight(Some(gauge))
    }

    /// Counts one job delivery of `kind` handled with `outcome`.
    pub(crate) fn count(&self, kind: NodeKind, outcome: JobOutcome) {
        if !self.on {
            return;
        }
        let labels = JobLabels {
            kind: kind.as_str(),
            outcome: outcome.as_str(),
        };
        self.jobs.get_or_create(&labels).inc();
    }

    /// Records how long an effect of `kind` ran.
    pub(crate) fn observe_duration(&self, kind: NodeKind, took: Duration) {
        if !self.on {
            return;
        }
        let labels = KindLabels {
            kind: kind.as_str(),
        };
        self.duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Records how long the job in `message`, of `kind`, waited on the bus for this start:
    /// from when the server stored it, on its first delivery only (a redelivery's wait holds
    /// an earlier worker's time).
    pub(crate) fn observe_queued(&self, kind: NodeKind, message: &baton_bus::Inbound) {
        if !self.on || message.delivered() != 1 {
            return;
        }
        let Some(stored) = message.stored_at() else {
            return;
        };
        // The server's clock and this one differ by their skew; a start "before" the store
        // is counted as no wait.
        let waited = SystemTime::now().duration_since(stored).unwrap_or_default();
        let labels = KindLabels {
            kind: kind.as_str(),
        };
        self.queued
            .get_or_create(&labels)
            .observe(waited.as_secs_f64());
    }

    /// Counts one analysis measurement of `provider` with `result`.
    pub(crate) fn count_measurement(&self, provider: &'static str, result: &'static str) {
        if !self.on {
            return;
        }
        self.measurements
            .get_or_create(&MeasurementLabels { provider, result })
            .inc();
    }
}

/// A job counted in flight; dropping it counts it out.
pub(crate) struct InFlight(Option<Gauge>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(gauge) = &self.0 {
            gauge.dec();
        }
    }
}
