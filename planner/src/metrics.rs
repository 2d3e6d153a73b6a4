//! The planner's Prometheus metrics: what it decided (runs, node attempts, triggers, ignitor
//! fires), what its loop costs (applying inputs, checkpoints, the replay at start), what
//! waits on the bus, whether it leads, and where each Cell and application group stands.
//!
//! Labels are low-cardinality: kinds, outcomes, states, stream and consumer names, and the
//! names of Cells and groups (documents a platform team writes, not runs). No run id is a
//! label.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use baton_core::{Action, Core, Tally};
use baton_telemetry::metrics::{Counter, Family, Gauge, Histogram, Unit};
use baton_telemetry::seconds_buckets;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// How often the backlog on the bus is read while the planner acts.
pub const BACKLOG_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunEndLabels {
    kind: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabels {
    stream: &'static str,
    consumer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CellVersionLabels {
    cell: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CellPhaseLabels {
    cell: String,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupPhaseLabels {
    group: String,
    phase: String,
}

/// The planner's metric families. Cloning shares them.
#[derive(Clone, Debug)]
pub struct PlannerMetrics {
    /// Whether anything is counted: a planner whose metrics nobody serves does no work for
    /// them (`--no-metrics`, tests, the bench's baseline).
    on: bool,
    runs_started: Family<RunLabels, Counter>,
    runs_finished: Family<RunEndLabels, Counter>,
    attempts: Family<AttemptLabels, Counter>,
    apply: Histogram,
    checkpoint: Histogram,
    applied: Family<StreamLabels, Counter>,
    replayed: Gauge,
    triggers: Family<OutcomeLabels, Counter>,
    fires: Family<OutcomeLabels, Counter>,
    leader: Gauge,
    epoch: Gauge,
    stream_messages: Family<StreamLabels, Gauge>,
    stream_bytes: Family<StreamLabels, Gauge>,
    consumer_pending: Family<ConsumerLabels, Gauge>,
    consumer_ack_pending: Family<ConsumerLabels, Gauge>,
    consumer_redelivered: Family<ConsumerLabels, Gauge>,
    cell_weight: Family<CellVersionLabels, Gauge>,
    cell_phase: Family<CellPhaseLabels, Gauge>,
    group_phase: Family<GroupPhaseLabels, Gauge>,
    /// The label sets the last refresh set, so that those gone since are removed.
    shown: std::sync::Arc<std::sync::Mutex<Shown>>,
}

#[derive(Debug, Default)]
struct Shown {
    weights: BTreeSet<(String, String)>,
    cells: BTreeSet<String>,
    groups: BTreeMap<String, String>,
}

impl Default for PlannerMetrics {
    /// Counts nothing: a planner whose metrics nobody serves.
    fn default() -> Self {
        Self {
            on: false,
            ..Self::register(&mut Registry::default())
        }
    }
}

impl PlannerMetrics {
    /// Makes the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            on: true,
            runs_started: Family::default(),
            runs_finished: Family::default(),
            attempts: Family::default(),
            apply: Histogram::new(seconds_buckets(0.000_05, 18)),
            checkpoint: Histogram::new(seconds_buckets(0.000_1, 18)),
            applied: Family::default(),
            replayed: Gauge::default(),
            triggers: Family::default(),
            fires: Family::default(),
            leader: Gauge::default(),
            epoch: Gauge::default(),
            stream_messages: Family::default(),
            stream_bytes: Family::default(),
            consumer_pending: Family::default(),
            consumer_ack_pending: Family::default(),
            consumer_redelivered: Family::default(),
            cell_weight: Family::default(),
            cell_phase: Family::default(),
            group_phase: Family::default(),
            shown: Default::default(),
        };
        let r = registry;
        r.register(
            "baton_runs_started",
            "Runs started, by what they are of (workflow, chain, group, cell).",
            metrics.runs_started.clone(),
        );
        r.register(
            "baton_runs_finished",
            "Runs ended, by what they are of and their final state.",
            metrics.runs_finished.clone(),
        );
        r.register("baton_node_attempts", "Node attempts ended, by node kind and outcome (succeeded, failed, timed_out, undeliverable).", metrics.attempts.clone());
        r.register_with_unit(
            "baton_planner_apply",
            "Time to apply one turn's inputs to the decision core.",
            Unit::Seconds,
            metrics.apply.clone(),
        );
        r.register_with_unit(
            "baton_planner_checkpoint",
            "Time to commit the planner's state (state stream and store).",
            Unit::Seconds,
            metrics.checkpoint.clone(),
        );
        r.register(
            "baton_planner_messages_applied",
            "Bus messages applied, by stream (events, triggers).",
            metrics.applied.clone(),
        );
        r.register("baton_planner_replayed_messages", "Messages applied again from the streams at the last start (what the last checkpoint lacked).", metrics.replayed.clone());
        r.register(
            "baton_triggers",
            "Trigger messages applied, by outcome (accepted, refused).",
            metrics.triggers.clone(),
        );
        r.register("baton_ignitor_fires", "Ignitor fires, by outcome (started: a chain began; skipped: no task listens or its policy skipped it).", metrics.fires.clone());
        r.register(
            "baton_planner_leader",
            "1 when this planner holds the lease and acts, 0 while it stands by.",
            metrics.leader.clone(),
        );
        r.register(
            "baton_planner_epoch",
            "The lease epoch this planner acts under (0 while standing by).",
            metrics.epoch.clone(),
        );
        r.register(
            "baton_stream_messages",
            "Messages stored in each of Baton's streams.",
            metrics.stream_messages.clone(),
        );
        r.register_with_unit(
            "baton_stream",
            "Bytes stored in each of Baton's streams.",
            Unit::Bytes,
            metrics.stream_bytes.clone(),
        );
        r.register("baton_consumer_pending", "Messages a durable consumer has not delivered yet (for worker-<kind>: jobs waiting for a worker).", metrics.consumer_pending.clone());
        r.register("baton_consumer_ack_pending", "Messages a durable consumer delivered and that are not acknowledged yet (jobs running).", metrics.consumer_ack_pending.clone());
        r.register(
            "baton_consumer_redelivered",
            "Messages delivered more than once and not acknowledged yet.",
            metrics.consumer_redelivered.clone(),
        );
        r.register(
            "baton_cell_weight",
            "A Cell's ALB forward weight per version, as AWS last showed it.",
            metrics.cell_weight.clone(),
        );
        r.register("baton_cell_phase", "1 for a Cell's phase (Pending, Serving, Progressing, Paused, Degraded), 0 for the others.", metrics.cell_phase.clone());
        r.register(
            "baton_group_phase",
            "1 for an application group's phase (Progressing, Succeeded, RollingBack, Uninstalling, Failed, Deleting, Deleted), 0 for the others.",
            metrics.group_phase.clone(),
        );
        metrics
    }

    /// Counts what the core decided since the last call.
    pub(crate) fn count(&self, tally: Tally) {
        if !self.on {
            return;
        }
        for (kind, n) in tally.runs_started {
            self.runs_started
                .get_or_create(&RunLabels {
                    kind: kind.as_str(),
                })
                .inc_by(n);
        }
        for ((kind, state), n) in tally.runs_finished {
            let labels = RunEndLabels {
                kind: kind.as_str(),
                state: state.as_str(),
            };
            self.runs_finished.get_or_create(&labels).inc_by(n);
        }
        for ((kind, outcome), n) in tally.attempts {
            let labels = AttemptLabels {
                kind: kind.as_str(),
                outcome: outcome.as_str(),
            };
            self.attempts.get_or_create(&labels).inc_by(n);
        }
    }

    /// Counts the ignitor fires among `actions`.
    pub(crate) fn count_actions(&self, actions: &[Action]) {
        if !self.on {
            return;
        }
        for action in actions {
            if let Action::IgnitorFired { run, .. } = action {
                let outcome = if run.is_some() { "started" } else { "skipped" };
                self.fires.get_or_create(&OutcomeLabels { outcome }).inc();
            }
        }
    }

    /// Counts `total` trigger messages applied, `refused` of them refused.
    pub(crate) fn count_triggers(&self, total: usize, refused: usize) {
        if !self.on {
            return;
        }
        let accepted = total.saturating_sub(refused) as u64;
        self.triggers
            .get_or_create(&OutcomeLabels {
                outcome: "accepted",
            })
            .inc_by(accepted);
        self.triggers
            .get_or_create(&OutcomeLabels { outcome: "refused" })
            .inc_by(refused as u64);
    }

    /// Counts `n` messages applied from `stream` (`events`, `triggers`).
    pub(crate) fn count_applied(&self, stream: &'static str, n: usize) {
        if !self.on {
            return;
        }
        self.applied
            .get_or_create(&StreamLabels { stream })
            .inc_by(n as u64);
    }

    pub(crate) fn observe_apply(&self, took: Duration) {
        if !self.on {
            return;
        }
        self.apply.observe(took.as_secs_f64());
    }

    pub(crate) fn observe_checkpoint(&self, took: Duration) {
        if !self.on {
            return;
        }
        self.checkpoint.observe(took.as_secs_f64());
    }

    pub(crate) fn set_replayed(&self, messages: usize) {
        if !self.on {
            return;
        }
        self.replayed.set(messages as i64);
    }

    /// Notes that this planner acts under `epoch` (0: without a lease).
    pub fn set_leader(&self, epoch: u64) {
        if !self.on {
            return;
        }
        self.leader.set(1);
        self.epoch.set(epoch as i64);
    }

    /// Sets the backlog gauges.
    pub fn set_backlog(&self, backlog: &baton_bus::Backlog) {
        if !self.on {
            return;
        }
        for s in &backlog.streams {
            let labels = StreamLabels { stream: s.stream };
            self.stream_messages
                .get_or_create(&labels)
                .set(s.messages as i64);
            self.stream_bytes.get_or_create(&labels).set(s.bytes as i64);
        }
        for c in &backlog.consumers {
            let labels = ConsumerLabels {
                stream: c.stream,
                consumer: c.consumer.clone(),
            };
            self.consumer_pending
                .get_or_create(&labels)
                .set(c.pending as i64);
            self.consumer_ack_pending
                .get_or_create(&labels)
                .set(c.ack_pending as i64);
            self.consumer_redelivered
                .get_or_create(&labels)
                .set(c.redelivered as i64);
        }
    }

    /// Sets the Cells' and groups' gauges from the core, removing those of documents gone.
    pub(crate) fn refresh_documents(&self, core: &Core) {
        if !self.on {
            return;
        }
        let mut shown = self.shown.lock().expect("metrics lock");
        let mut weights = BTreeSet::new();
        let mut cells = BTreeSet::new();
        for view in core.cell_views() {
            let mut by_version: BTreeMap<String, i64> = BTreeMap::new();
            for w in &view.weights {
                let version = w.version.clone().unwrap_or_default();
                *by_version.entry(version).or_default() += i64::from(w.weight);
            }
            for (version, weight) in by_version {
                let labels = CellVersionLabels {
                    cell: view.name.clone(),
                    version: version.clone(),
                };
                self.cell_weight.get_or_create(&labels).set(weight);
                weights.insert((view.name.clone(), version));
            }
            for phase in CELL_PHASES {
                let labels = CellPhaseLabels {
                    cell: view.name.clone(),
                    phase,
                };
                self.cell_phase
                    .get_or_create(&labels)
                    .set(i64::from(view.phase == phase));
            }
            cells.insert(view.name);
        }
        for (cell, version) in shown.weights.difference(&weights) {
            self.cell_weight.remove(&CellVersionLabels {
                cell: cell.clone(),
                version: version.clone(),
            });
        }
        for cell in shown.cells.difference(&cells) {
            for phase in CELL_PHASES {
                self.cell_phase.remove(&CellPhaseLabels {
                    cell: cell.clone(),
                    phase,
                });
            }
        }
        let mut groups = BTreeMap::new();
        for entry in core.groups() {
            let view = core.group_view(entry);
            groups.insert(view.name, view.phase);
        }
        for (group, phase) in &shown.groups {
            if !groups.contains_key(group) {
                for phase in GROUP_PHASES.iter().copied().chain([phase.as_str()]) {
                    let labels = GroupPhaseLabels {
                        group: group.clone(),
                        phase: phase.to_owned(),
                    };
                    self.group_phase.remove(&labels);
                }
            }
        }
        for (group, current) in &groups {
            for phase in GROUP_PHASES.iter().copied().chain([current.as_str()]) {
                let labels = GroupPhaseLabels {
                    group: group.clone(),
                    phase: phase.to_owned(),
                };
                self.group_phase
                    .get_or_create(&labels)
                    .set(i64::from(phase == current));
            }
        }
        *shown = Shown {
            weights,
            cells,
            groups,
        };
    }
}

const CELL_PHASES: [&str; 5] = ["Pending", "Serving", "Progressing", "Paused", "Degraded"];

/// An application group's phases as its status names them; one the core adds later is shown
/// too (as the group's current phase), only without its zeros.
const GROUP_PHASES: [&str; 7] = [
    "Progressing",
    "Succeeded",
    "RollingBack",
    "Uninstalling",
    "Failed",
    "Deleting",
    "Deleted",
];

/// Reads the bus's backlog every [`BACKLOG_EVERY`] into `metrics` until `shutdown`. A read
/// that fails (the server restarting) is tried again at the next period.
pub async fn follow_backlog(
    bus: baton_bus::Bus,
    metrics: PlannerMetrics,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(BACKLOG_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match bus.backlog().await {
            Ok(backlog) => metrics.set_backlog(&backlog),
            Err(e) => debug!(error = %e, "the bus's backlog was not read this time"),
        }
    }
}
