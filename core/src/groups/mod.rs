//! Application groups in the decision core. A group runs one run at a time, and every change
//! of its lifecycle goes through [`Core::group_step`]:
//!
//! - A new spec starts a **forward** run: the releases the last successful spec had and the
//!   new one dropped are uninstalled in reverse dependency order, then every release is
//!   applied in dependency order, fail-fast. A spec equal to the one applied changes nothing.
//! - A forward run that succeeds makes its spec the group's **last successful spec**, kept in
//!   the planner's store (not in an annotation, which a large spec would overflow).
//! - A forward run that fails (or is cancelled) is remediated, whatever the failure: with a
//!   last successful spec, a **rollback** run uninstalls the releases added since in reverse
//!   dependency order and applies the last successful spec again, as one graph; without one,
//!   an **uninstall** run removes every release in reverse dependency order. The status says
//!   which (`remediation: rolledBack | uninstalled`) and whether it worked.
//! - A delete starts a **delete** run (the reverse graph); the group is released when it ends,
//!   with `leftInstalled` naming the releases a failed uninstall left behind.
//! - What a failed run may have left installed is kept (`maybe_installed`): the releases it
//!   applied or began to, and those it started from and did not uninstall for sure. Every
//!   run starts from them and the last successful spec's releases, so a later spec, rollback
//!   or delete uninstalls what no spec wants any more, and the status names what is left
//!   (`leftInstalled`). A run that succeeds makes what is installed known again.
//! - A spec or a delete that arrives while a run goes on waits for that run (and its
//!   remediation) to end, so two runs never work on one release at once. The last request
//!   wins: a delete replaces a waiting spec and a spec a waiting delete, a spec equal to the
//!   one under way drops what waited, and a delete during a delete drops a waiting spec. A
//!   delete waiting behind a failed forward run replaces the remediation: it uninstalls
//!   everything anyway.
//!
//! Pure, like the rest of the core: the status is derived from the group's entry and its runs.

pub mod graph;
mod lifecycle;
mod view;

use std::collections::BTreeSet;

use baton_schemas::group::{ApplicationGroup, ReleaseTask};
use baton_schemas::status::State;
use baton_schemas::wire::Timestamp;
use baton_schemas::{NodeName, RunId};
use serde::{Deserialize, Serialize};

use crate::{NodeState, Run};

/// A registered application group and where it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupEntry {
    /// The group as last applied: the desired state.
    pub group: ApplicationGroup,
    /// How many different specs were applied, counting from 1.
    pub revision: u32,
    /// How many runs the group started; the next run's id counts on from it.
    pub runs_started: u32,
    /// The spec of the last forward run that succeeded.
    pub last_successful: Option<Succeeded>,
    /// Where the group is.
    pub state: GroupState,
    /// What waits for the run under way to end.
    pub pending: Option<Pending>,
    /// The latest forward run.
    pub forward_run: Option<RunId>,
    /// The latest rollback or uninstall run after a failure.
    pub remediation_run: Option<RunId>,
    /// The latest delete run.
    pub delete_run: Option<RunId>,
    /// When `state` last changed.
    pub since: Timestamp,
    /// Releases that may be installed besides the last successful spec's: the tasks of runs
    /// that failed, as far as they did not uninstall them for sure (each release once, as
    /// the newest run had it). Every run starts from them and the last successful spec's
    /// releases ([`GroupEntry::installed`]). Emptied when a run succeeds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maybe_installed: Vec<ReleaseTask>,
    /// A person asked for the group to be let go whatever its delete leaves installed; a new
    /// spec clears it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_delete: bool,
}

impl GroupEntry {
    /// Whether the group may be let go: deleted with every release uninstalled, or with
    /// some left where a person said to let it go anyway. Until then a cluster object is
    /// held by Baton's finalizer.
    pub fn released(&self) -> bool {
        match &self.state {
            GroupState::Deleted { left_installed } => {
                left_installed.is_empty() || self.force_delete
            }
            _ => false,
        }
    }
}

/// A spec whose forward run succeeded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Succeeded {
    /// The spec.
    pub spec: baton_schemas::group::ApplicationGroupSpec,
    /// Its revision.
    pub revision: u32,
    /// Its object's generation, when it came from a cluster.
    pub generation: Option<i64>,
}

/// Where a group is in its life.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "phase")]
pub enum GroupState {
    /// A forward run releases the applied spec.
    Progressing {
        /// The forward run.
        run: RunId,
    },
    /// Every release of the applied spec is released.
    Succeeded,
    /// The forward run failed; a run rolls back or uninstalls.
    Remediating {
        /// The rollback or uninstall run.
        run: RunId,
        /// Which of the two.
        remediation: Remediation,
        /// Why the forward run failed.
        failure: String,
    },
    /// The forward run failed and its remediation ended.
    Failed {
        /// What remediation ran.
        remediation: Remediation,
        /// Why the forward run failed.
        failure: String,
        /// How the remediation ended.
        outcome: RemediationOutcome,
    },
    /// A delete run uninstalls every release in reverse dependency order.
    Deleting {
        /// The delete run.
        run: RunId,
    },
    /// Deleted: nothing runs for the group any more.
    Deleted {
        /// Releases (`namespace/release`) whose uninstall failed and which may be left.
        left_installed: Vec<String>,
    },
}

impl GroupState {
    pub(crate) fn phase(&self) -> &'static str {
        match self {
            GroupState::Progressing { .. } => "Progressing",
            GroupState::Succeeded => "Succeeded",
            GroupState::Remediating {
                remediation: Remediation::RolledBack,
                ..
            } => "RollingBack",
            GroupState::Remediating {
                remediation: Remediation::Uninstalled,
                ..
            } => "Uninstalling",
            GroupState::Failed { .. } => "Failed",
            GroupState::Deleting { .. } => "Deleting",
            GroupState::Deleted { .. } => "Deleted",
        }
    }

    /// Returns the run under way, if one is.
    pub(crate) fn running(&self) -> Option<&RunId> {
        match self {
            GroupState::Progressing { run }
            | GroupState::Remediating { run, .. }
            | GroupState::Deleting { run } => Some(run),
            _ => None,
        }
    }

    /// Returns what the run under way is for, if one is.
    pub(crate) fn purpose(&self) -> Option<Purpose> {
        match self {
            GroupState::Progressing { .. } => Some(Purpose::Forward),
            GroupState::Remediating {
                remediation: Remediation::RolledBack,
                ..
            } => Some(Purpose::Rollback),
            GroupState::Remediating {
                remediation: Remediation::Uninstalled,
                ..
            } => Some(Purpose::Uninstall),
            GroupState::Deleting { .. } => Some(Purpose::Delete),
            GroupState::Succeeded | GroupState::Failed { .. } | GroupState::Deleted { .. } => None,
        }
    }
}

/// How a remediation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RemediationOutcome {
    /// It did what it was for: the last successful spec is applied again, or every release
    /// is uninstalled.
    Succeeded,
    /// It failed: what it left is in the group's `maybe_installed`.
    Failed {
        /// Why.
        error: String,
    },
}

/// How a failed forward run was remediated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Remediation {
    /// Rolled back to the last successful spec.
    RolledBack,
    /// Uninstalled in reverse order: no spec had succeeded.
    Uninstalled,
}

impl Remediation {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Remediation::RolledBack => "rolledBack",
            Remediation::Uninstalled => "uninstalled",
        }
    }
}

/// What waits for a group's run to end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "pending")]
pub enum Pending {
    /// A newer spec.
    Apply {
        /// The group as applied.
        group: Box<ApplicationGroup>,
    },
    /// A delete.
    Delete,
}

/// What happens to a group.
pub(crate) enum GroupEvent {
    /// A spec was applied.
    Applied(Box<ApplicationGroup>),
    /// A delete was asked for.
    DeleteAsked,
    /// One of its runs ended.
    RunEnded(RunId, State),
}

/// What a run of a group is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    Forward,
    Rollback,
    Uninstall,
    Delete,
}

impl Purpose {
    pub(crate) fn letter(self) -> char {
        match self {
            Purpose::Forward => 'f',
            Purpose::Rollback => 'r',
            Purpose::Uninstall => 'u',
            Purpose::Delete => 'd',
        }
    }
}

/// Returns the id of a group's `seq`-th run: the group's name, the sequence number and the
/// purpose's letter (see [`crate::ids::named_run_id`]).
pub(crate) fn group_run_id(name: &str, seq: u32, purpose: Purpose) -> RunId {
    crate::ids::named_run_id(name, &format!("{seq}{}", purpose.letter()))
}

impl GroupEntry {
    /// Returns the tasks of the last successful spec.
    pub(crate) fn last_tasks(&self) -> Vec<ReleaseTask> {
        self.last_successful
            .as_ref()
            .map(|s| s.spec.tasks(self.group.name()))
            .unwrap_or_default()
    }

    /// Returns the releases that may be installed: those failed runs left and the last
    /// successful spec's, each once.
    pub fn installed(&self) -> Vec<ReleaseTask> {
        graph::union(&self.maybe_installed, &self.last_tasks())
    }

    /// Returns the graph of a run for `purpose`, as a function of the entry alone: the same
    /// when the run starts and when it ends (nothing it depends on changes while it runs).
    pub(crate) fn plan(&self, purpose: Purpose) -> graph::GroupGraph {
        let current = self.group.spec.tasks(self.group.name());
        let installed = self.installed();
        match purpose {
            // What the last successful spec installed (and failed runs left) and this one
            // dropped goes first.
            Purpose::Forward => graph::converge(&current, &installed),
            Purpose::Rollback => graph::converge(&self.last_tasks(), &installed),
            Purpose::Uninstall => graph::reverse(&installed),
            Purpose::Delete => graph::delete(&current, &installed),
        }
    }

    /// Returns what may be installed after `run`, a run for `purpose` that failed: the
    /// releases it began to apply, and those it started from that it did not uninstall.
    pub(crate) fn left_after(&self, purpose: Purpose, run: &Run) -> Vec<ReleaseTask> {
        let plan = self.plan(purpose);
        let node = |name: &NodeName| run.index(name).map(|i| &run.nodes[i]);
        let began: BTreeSet<&str> = plan
            .applies
            .iter()
            .filter(|(_, nodes)| {
                nodes
                    .iter()
                    .any(|n| node(n).is_some_and(|n| n.attempts > 0))
            })
            .map(|(task, _)| task.name.as_str())
            .collect();
        let applies: Vec<ReleaseTask> = plan.applies.iter().map(|(t, _)| t.clone()).collect();
        let applied = graph::only(&applies, |t| began.contains(t.name.as_str()));
        let removed: BTreeSet<(String, String)> = plan
            .removes
            .iter()
            .filter(|(_, nodes)| {
                nodes
                    .iter()
                    .all(|n| node(n).is_some_and(|n| n.state == NodeState::Succeeded))
            })
            .map(|(task, _)| task.release_key())
            .collect();
        let kept = graph::only(&self.installed(), |t| !removed.contains(&t.release_key()));
        graph::union(&applied, &kept)
    }

    /// Returns the releases (`namespace/release`) that may be installed though no spec the
    /// group holds to wants them: what failed runs left, less the last successful spec's.
    pub fn left_installed(&self) -> Vec<String> {
        let wanted: BTreeSet<(String, String)> = self
            .last_tasks()
            .iter()
            .map(ReleaseTask::release_key)
            .collect();
        let left: BTreeSet<String> = self
            .maybe_installed
            .iter()
            .map(ReleaseTask::release_key)
            .filter(|k| !wanted.contains(k))
            .map(|(namespace, release)| format!("{namespace}/{release}"))
            .collect();
        left.into_iter().collect()
    }
}

#[cfg(test)]
mod tests;
