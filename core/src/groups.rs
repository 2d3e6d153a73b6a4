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

use std::collections::BTreeSet;

use baton_schemas::group::{ApplicationGroup, ReleaseTask};
use baton_schemas::helm::HelmAction;
use baton_schemas::status::State;
use baton_schemas::wire::Timestamp;
use baton_schemas::{FailurePolicy, NodeKind, NodeName, RunId, WorkflowName, WorkflowSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Action, Core, NodeState, Refusal, Run, RunKind};
use crate::group_graph;

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
    fn phase(&self) -> &'static str {
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
    fn running(&self) -> Option<&RunId> {
        match self {
            GroupState::Progressing { run }
            | GroupState::Remediating { run, .. }
            | GroupState::Deleting { run } => Some(run),
            _ => None,
        }
    }

    /// Returns what the run under way is for, if one is.
    fn purpose(&self) -> Option<Purpose> {
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
    fn as_str(self) -> &'static str {
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
enum GroupEvent {
    /// A spec was applied.
    Applied(Box<ApplicationGroup>),
    /// A delete was asked for.
    DeleteAsked,
    /// One of its runs ended.
    RunEnded(RunId, State),
}

/// What a run of a group is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Forward,
    Rollback,
    Uninstall,
    Delete,
}

impl Purpose {
    fn letter(self) -> char {
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
fn group_run_id(name: &str, seq: u32, purpose: Purpose) -> RunId {
    crate::ids::named_run_id(name, &format!("{seq}{}", purpose.letter()))
}

impl GroupEntry {
    /// Returns the tasks of the last successful spec.
    fn last_tasks(&self) -> Vec<ReleaseTask> {
        self.last_successful
            .as_ref()
            .map(|s| s.spec.tasks(self.group.name()))
            .unwrap_or_default()
    }

    /// Returns the releases that may be installed: those failed runs left and the last
    /// successful spec's, each once.
    pub fn installed(&self) -> Vec<ReleaseTask> {
        group_graph::union(&self.maybe_installed, &self.last_tasks())
    }

    /// Returns the graph of a run for `purpose`, as a function of the entry alone: the same
    /// when the run starts and when it ends (nothing it depends on changes while it runs).
    fn plan(&self, purpose: Purpose) -> group_graph::Plan {
        let current = self.group.spec.tasks(self.group.name());
        let installed = self.installed();
        match purpose {
            // What the last successful spec installed (and failed runs left) and this one
            // dropped goes first.
            Purpose::Forward => group_graph::converge(&current, &installed),
            Purpose::Rollback => group_graph::converge(&self.last_tasks(), &installed),
            Purpose::Uninstall => group_graph::reverse(&installed),
            Purpose::Delete => group_graph::delete(&current, &installed),
        }
    }

    /// Returns what may be installed after `run`, a run for `purpose` that failed: the
    /// releases it began to apply, and those it started from that it did not uninstall.
    fn left_after(&self, purpose: Purpose, run: &Run) -> Vec<ReleaseTask> {
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
        let applied = group_graph::only(&applies, |t| began.contains(t.name.as_str()));
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
        let kept = group_graph::only(&self.installed(), |t| !removed.contains(&t.release_key()));
        group_graph::union(&applied, &kept)
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

impl Core {
    /// Returns every group.
    pub fn groups(&self) -> impl Iterator<Item = &GroupEntry> {
        self.groups.values()
    }

    /// Returns a group.
    pub fn group(&self, name: &str) -> Option<&GroupEntry> {
        self.groups.get(name)
    }

    /// Adds the groups a store kept to a restored core.
    pub(crate) fn restore_groups(&mut self, groups: Vec<GroupEntry>) {
        self.groups = groups
            .into_iter()
            .map(|g| (g.group.name().to_owned(), g))
            .collect();
    }

    /// Applies a group's spec.
    pub(super) fn apply_group(
        &mut self,
        group: ApplicationGroup,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        let name = group.name().to_owned();
        self.group_step(&name, GroupEvent::Applied(Box::new(group)), now, actions);
    }

    /// Deletes a group: its releases are uninstalled in reverse order.
    pub(super) fn delete_group(&mut self, name: &str, now: Timestamp, actions: &mut Vec<Action>) {
        if !self.groups.contains_key(name) {
            actions.push(Action::Refused(Refusal::UnknownGroup(name.to_owned())));
            return;
        }
        self.group_step(name, GroupEvent::DeleteAsked, now, actions);
    }

    /// Moves the groups whose runs ended in this input on. Runs the groups start here may
    /// end at once only if they have no node, which the graphs never are; the loop takes
    /// them anyway.
    pub(super) fn follow_groups(&mut self, now: Timestamp, actions: &mut Vec<Action>) {
        let mut i = 0;
        while i < actions.len() {
            if let Action::RunFinished { run, state } = &actions[i]
                && let Some(r) = self.runs.get(run)
                && r.kind == RunKind::Group
            {
                let (run, state, name) = (run.clone(), *state, r.workflow.to_string());
                self.group_step(&name, GroupEvent::RunEnded(run, state), now, actions);
            }
            i += 1;
        }
    }

    /// The one transition function of a group's lifecycle.
    fn group_step(
        &mut self,
        name: &str,
        event: GroupEvent,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        let event = match event {
            GroupEvent::Applied(group) if !self.groups.contains_key(name) => {
                let entry = GroupEntry {
                    group: *group,
                    revision: 1,
                    runs_started: 0,
                    last_successful: None,
                    state: GroupState::Deleted {
                        left_installed: Vec::new(),
                    },
                    pending: None,
                    forward_run: None,
                    remediation_run: None,
                    delete_run: None,
                    since: now,
                    maybe_installed: Vec::new(),
                };
                self.groups.insert(name.to_owned(), entry);
                self.start_group_run(name, Purpose::Forward, now, actions);
                return;
            }
            other => other,
        };
        let Some(entry) = self.groups.get_mut(name) else {
            return;
        };
        self.changed_groups.insert(name.to_owned());
        let state = entry.state.clone();
        match event {
            GroupEvent::Applied(group) => {
                let same = entry.group.spec == group.spec;
                match state {
                    GroupState::Progressing { .. } | GroupState::Remediating { .. } if same => {
                        // Back to the spec under way: the last request wins, and what
                        // waited (a newer spec, a delete) is no longer wanted.
                        entry.pending = None;
                    }
                    GroupState::Progressing { .. }
                    | GroupState::Remediating { .. }
                    | GroupState::Deleting { .. } => {
                        entry.pending = Some(Pending::Apply { group });
                    }
                    GroupState::Succeeded | GroupState::Failed { .. } if same => {
                        entry.group.metadata = group.metadata;
                    }
                    GroupState::Succeeded | GroupState::Failed { .. } => {
                        entry.group = *group;
                        entry.revision += 1;
                        self.start_group_run(name, Purpose::Forward, now, actions);
                    }
                    GroupState::Deleted { .. } => {
                        entry.group = *group;
                        entry.revision += 1;
                        entry.last_successful = None;
                        self.start_group_run(name, Purpose::Forward, now, actions);
                    }
                }
            }
            GroupEvent::DeleteAsked => match state {
                GroupState::Deleted { .. } => {}
                GroupState::Deleting { .. } => {
                    // The delete under way is the last request: a spec waiting for it to end
                    // is no longer wanted.
                    entry.pending = None;
                }
                GroupState::Progressing { .. } | GroupState::Remediating { .. } => {
                    entry.pending = Some(Pending::Delete);
                }
                GroupState::Succeeded | GroupState::Failed { .. } => {
                    self.start_group_run(name, Purpose::Delete, now, actions);
                }
            },
            GroupEvent::RunEnded(run, outcome) => {
                let (Some(running), Some(purpose)) = (state.running(), state.purpose()) else {
                    return;
                };
                if *running != run {
                    return;
                }
                let succeeded = outcome == State::Succeeded;
                let ended = self.runs.get(&run);
                let failure = ended.map(describe_failure).unwrap_or_default();
                // A run that succeeded leaves what is installed known: the spec it applied
                // (now the last successful one), or nothing.
                entry.maybe_installed = match ended {
                    Some(ended) if !succeeded => entry.left_after(purpose, ended),
                    _ => Vec::new(),
                };
                entry.since = now;
                match state {
                    GroupState::Progressing { .. } if succeeded => {
                        entry.last_successful = Some(Succeeded {
                            spec: entry.group.spec.clone(),
                            revision: entry.revision,
                            generation: entry.group.metadata.generation,
                        });
                        entry.state = GroupState::Succeeded;
                        self.take_pending(name, now, actions);
                    }
                    GroupState::Progressing { .. } if entry.pending == Some(Pending::Delete) => {
                        // The delete uninstalls everything: no remediation before it.
                        entry.pending = None;
                        self.start_group_run(name, Purpose::Delete, now, actions);
                    }
                    GroupState::Progressing { .. } => {
                        let (purpose, remediation) = match entry.last_successful {
                            Some(_) => (Purpose::Rollback, Remediation::RolledBack),
                            None => (Purpose::Uninstall, Remediation::Uninstalled),
                        };
                        // The state says what the run is for before its graph is made.
                        entry.state = GroupState::Remediating {
                            run: run.clone(),
                            remediation,
                            failure,
                        };
                        self.start_group_run(name, purpose, now, actions);
                    }
                    GroupState::Remediating {
                        remediation,
                        failure: forward_failure,
                        ..
                    } => {
                        entry.state = GroupState::Failed {
                            remediation,
                            failure: forward_failure,
                            outcome: if succeeded {
                                RemediationOutcome::Succeeded
                            } else {
                                RemediationOutcome::Failed { error: failure }
                            },
                        };
                        self.take_pending(name, now, actions);
                    }
                    GroupState::Deleting { .. } => {
                        entry.last_successful = None;
                        entry.state = GroupState::Deleted {
                            left_installed: entry.left_installed(),
                        };
                        self.take_pending(name, now, actions);
                    }
                    GroupState::Succeeded
                    | GroupState::Failed { .. }
                    | GroupState::Deleted { .. } => {}
                }
            }
        }
    }

    /// Starts what waited for the group's run to end, if anything did.
    fn take_pending(&mut self, name: &str, now: Timestamp, actions: &mut Vec<Action>) {
        let entry = self.groups.get_mut(name).expect("known group");
        match entry.pending.take() {
            None => {}
            Some(Pending::Delete) => {
                self.start_group_run(name, Purpose::Delete, now, actions);
            }
            Some(Pending::Apply { group }) => {
                if matches!(entry.state, GroupState::Deleted { .. }) {
                    entry.last_successful = None;
                } else if entry.group.spec == group.spec
                    && !matches!(entry.state, GroupState::Failed { .. })
                {
                    entry.group.metadata = group.metadata;
                    return;
                }
                entry.group = *group;
                entry.revision += 1;
                self.start_group_run(name, Purpose::Forward, now, actions);
            }
        }
    }

    /// Starts a run of the group for `purpose` and moves it to the state the run stands for
    /// (a remediation's state is set by the caller, which knows why). Returns the run's id.
    fn start_group_run(
        &mut self,
        name: &str,
        purpose: Purpose,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) -> RunId {
        let entry = self.groups.get_mut(name).expect("known group");
        entry.since = now;
        // A group's run ids are predictable (`web-2f`): one taken already (by a trigger that
        // chose it, say) is skipped, as a replay skips it too.
        let id = loop {
            entry.runs_started += 1;
            let id = group_run_id(name, entry.runs_started, purpose);
            if !self.runs.contains_key(&id) {
                break id;
            }
        };
        let nodes = entry.plan(purpose).nodes;
        match purpose {
            Purpose::Forward => {
                entry.forward_run = Some(id.clone());
                entry.remediation_run = None;
                entry.state = GroupState::Progressing { run: id.clone() };
            }
            Purpose::Rollback | Purpose::Uninstall => {
                entry.remediation_run = Some(id.clone());
                if let GroupState::Remediating { run, .. } = &mut entry.state {
                    *run = id.clone();
                }
            }
            Purpose::Delete => {
                entry.delete_run = Some(id.clone());
                entry.state = GroupState::Deleting { run: id.clone() };
            }
        }
        self.changed_groups.insert(name.to_owned());
        let run = Run::new(
            id.clone(),
            WorkflowName::new(name),
            WorkflowSpec {
                failure_policy: FailurePolicy::FailFast,
                nodes,
            },
            RunKind::Group,
            "group".to_owned(),
            String::new(),
            now,
        );
        self.begin_run(run, now, actions);
        id
    }

    /// Returns what the API and a cluster object's status show of a group: Orkestra's
    /// conditions (`Ready`, `ForwardWorkflowSucceeded`, `RollbackWorkflowSucceeded`,
    /// `ReverseWorkflowSucceeded`), every application and subchart with its own `Ready`
    /// condition, and Baton's phase, remediation and runs.
    pub fn group_view(&self, entry: &GroupEntry) -> Value {
        let state = &entry.state;
        let generation = entry.group.metadata.generation;
        let at = entry.since.to_string();
        let condition = |kind: &str, status: &str, reason: &str, message: &str, at: &str| {
            let mut c = json!({"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": at});
            if let Some(g) = generation {
                c["observedGeneration"] = json!(g);
            }
            c
        };
        let (ready, reason, message) = match state {
            GroupState::Progressing { .. } => (
                "Unknown",
                "Progressing",
                "workflow is reconciling...".to_owned(),
            ),
            GroupState::Succeeded => (
                "True",
                "Succeeded",
                "workflow and reconciliation succeeded".to_owned(),
            ),
            GroupState::Remediating {
                remediation,
                failure,
                ..
            } => (
                "False",
                "WorkflowFailed",
                match remediation {
                    Remediation::RolledBack => format!(
                        "{failure}; rolling back to the last successful spec (revision {})",
                        entry.last_successful.as_ref().map_or(0, |s| s.revision)
                    ),
                    Remediation::Uninstalled => {
                        format!(
                            "{failure}; no spec has succeeded yet: uninstalling in reverse order"
                        )
                    }
                },
            ),
            GroupState::Failed {
                remediation,
                failure,
                outcome,
            } => (
                "False",
                "WorkflowFailed",
                match (remediation, outcome) {
                    (Remediation::RolledBack, RemediationOutcome::Succeeded) => format!(
                        "{failure}; rolled back to the last successful spec (revision {})",
                        entry.last_successful.as_ref().map_or(0, |s| s.revision)
                    ),
                    (Remediation::Uninstalled, RemediationOutcome::Succeeded) => {
                        format!("{failure}; uninstalled in reverse order")
                    }
                    (r, RemediationOutcome::Failed { error }) => {
                        let mut message = format!(
                            "{failure}; {} failed: {error}",
                            match r {
                                Remediation::RolledBack => "the rollback",
                                Remediation::Uninstalled => "the uninstall",
                            },
                        );
                        let left = entry.left_installed();
                        if !left.is_empty() {
                            message.push_str(&format!("; left installed: {}", left.join(", ")));
                        }
                        message
                    }
                },
            ),
            GroupState::Deleting { .. } => (
                "False",
                "Terminating",
                "application group is terminating...".to_owned(),
            ),
            GroupState::Deleted { left_installed } if left_installed.is_empty() => {
                ("False", "Deleted", "every release uninstalled".to_owned())
            }
            GroupState::Deleted { left_installed } => (
                "False",
                "DeleteFailed",
                format!("left installed: {}", left_installed.join(", ")),
            ),
        };
        let mut conditions = vec![condition("Ready", ready, reason, &message, &at)];
        let run_condition = |kind: &str, run: &Option<RunId>| {
            let r = self.runs.get(run.as_ref()?)?;
            let (status, reason) = match r.phase.state() {
                State::Succeeded => ("True", "Succeeded"),
                State::Failed | State::Cancelled | State::Skipped => ("False", "Failed"),
                State::Pending | State::Running => ("Unknown", "Progressing"),
            };
            let message = match r.phase.state() {
                State::Succeeded => format!("run {} succeeded", r.id),
                State::Pending | State::Running => format!("run {} is under way", r.id),
                _ => format!("run {}: {}", r.id, describe_failure(r)),
            };
            let at = r.finished_at.unwrap_or(r.created_at).to_string();
            Some(condition(kind, status, reason, &message, &at))
        };
        conditions.extend(run_condition(
            "ForwardWorkflowSucceeded",
            &entry.forward_run,
        ));
        let remediation = match state {
            GroupState::Remediating { remediation, .. }
            | GroupState::Failed { remediation, .. } => Some(*remediation),
            _ => None,
        };
        match remediation {
            Some(Remediation::RolledBack) => conditions.extend(run_condition(
                "RollbackWorkflowSucceeded",
                &entry.remediation_run,
            )),
            Some(Remediation::Uninstalled) => conditions.extend(run_condition(
                "ReverseWorkflowSucceeded",
                &entry.remediation_run,
            )),
            None => {}
        }
        if matches!(
            state,
            GroupState::Deleting { .. } | GroupState::Deleted { .. }
        ) {
            conditions.extend(run_condition("ReverseWorkflowSucceeded", &entry.delete_run));
        }
        let left_installed = match state {
            GroupState::Deleted { left_installed } => left_installed.clone(),
            _ => entry.left_installed(),
        };
        json!({
            "name": entry.group.name(),
            "apiVersion": entry.group.api_version,
            "phase": state.phase(),
            "revision": entry.revision,
            "observedGeneration": generation,
            "lastSucceededRevision": entry.last_successful.as_ref().map(|s| s.revision),
            "lastSucceededGeneration": entry.last_successful.as_ref().and_then(|s| s.generation),
            "remediation": remediation.map(Remediation::as_str),
            "run": state.running().cloned().or_else(|| {
                [&entry.delete_run, &entry.remediation_run, &entry.forward_run]
                    .into_iter()
                    .find_map(|r| r.clone())
            }),
            "runs": {"forward": entry.forward_run, "remediation": entry.remediation_run, "delete": entry.delete_run},
            "pending": entry.pending.as_ref().map(|p| match p { Pending::Apply { .. } => "apply", Pending::Delete => "delete" }),
            "settled": state.running().is_none() && entry.pending.is_none(),
            "leftInstalled": left_installed,
            "conditions": conditions,
            "applications": self.applications_view(entry),
        })
    }

    /// Returns every application of the applied spec, with its subcharts, as the latest run
    /// that touched it left it.
    fn applications_view(&self, entry: &GroupEntry) -> Vec<Value> {
        let name = entry.group.name();
        let tasks = entry.group.spec.tasks(name);
        let runs: Vec<(&Run, Purpose)> = [
            (&entry.delete_run, Purpose::Delete),
            (
                &entry.remediation_run,
                match &entry.state {
                    GroupState::Remediating {
                        remediation: Remediation::Uninstalled,
                        ..
                    }
                    | GroupState::Failed {
                        remediation: Remediation::Uninstalled,
                        ..
                    } => Purpose::Uninstall,
                    _ => Purpose::Rollback,
                },
            ),
            (&entry.forward_run, Purpose::Forward),
        ]
        .into_iter()
        .filter_map(|(id, purpose)| Some((self.runs.get(id.as_ref()?)?, purpose)))
        .collect();
        let mut apps = Vec::new();
        for app in &entry.group.spec.applications {
            let mut view = json!({"name": app.name});
            let mut subcharts = serde_json::Map::new();
            for task in tasks.iter().filter(|t| t.app == app.name) {
                let status = task_view(task, &runs);
                match &task.subchart {
                    Some(sub) => {
                        subcharts.insert(sub.clone(), status);
                    }
                    None => {
                        for (key, value) in status.as_object().into_iter().flatten() {
                            view[key] = value.clone();
                        }
                    }
                }
            }
            if !subcharts.is_empty() {
                view["subcharts"] = Value::Object(subcharts);
            }
            apps.push(view);
        }
        apps
    }
}

/// Returns a task's status from the first run (delete, remediation, forward) holding nodes
/// of it: its `Ready` condition, version, release and error.
fn task_view(task: &ReleaseTask, runs: &[(&Run, Purpose)]) -> Value {
    let mut bases = vec![task.name.clone()];
    bases.extend(
        task.executors
            .iter()
            .map(|e| format!("{}-{}", task.name, e.name)),
    );
    let mut view = json!({"release": task.helm.release, "namespace": task.helm.namespace});
    for (run, purpose) in runs {
        let nodes: Vec<usize> = run
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                let name = n.name.as_str();
                bases
                    .iter()
                    .any(|b| name == b || name.strip_prefix("uninstall-") == Some(b.as_str()))
            })
            .map(|(i, _)| i)
            .collect();
        if nodes.is_empty() {
            continue;
        }
        let states: Vec<NodeState> = nodes.iter().map(|&i| run.nodes[i].state).collect();
        let helm = nodes.iter().find_map(|&i| {
            run.spec.nodes[i]
                .helm
                .as_ref()
                .filter(|_| run.spec.nodes[i].kind == NodeKind::Helm)
        });
        let removed = helm.is_some_and(|h| h.action == HelmAction::Uninstall);
        let error = nodes.iter().find_map(|&i| {
            let n = &run.nodes[i];
            matches!(
                n.state,
                NodeState::Failed | NodeState::Skipped | NodeState::Cancelled
            )
            .then(|| n.error.clone())
            .flatten()
        });
        let (status, reason, message) = if states.contains(&NodeState::Failed) {
            ("False", "Failed", error.clone().unwrap_or_default())
        } else if states
            .iter()
            .any(|s| s.in_flight().is_some() || matches!(s, NodeState::RetryWait { .. }))
        {
            ("Unknown", "Progressing", format!("run {}", run.id))
        } else if states.contains(&NodeState::Pending) {
            (
                "Unknown",
                "Pending",
                format!("run {}: waiting for what it depends on", run.id),
            )
        } else if states.iter().all(|s| *s == NodeState::Succeeded) {
            match (removed, purpose) {
                (true, _) => (
                    "False",
                    "Uninstalled",
                    format!("uninstalled by run {}", run.id),
                ),
                (false, Purpose::Rollback) => (
                    "True",
                    "RolledBack",
                    format!("applied the last successful spec again (run {})", run.id),
                ),
                (false, _) => ("True", "Succeeded", format!("released by run {}", run.id)),
            }
        } else {
            ("False", "NotStarted", error.clone().unwrap_or_default())
        };
        if let Some(version) = helm
            .filter(|h| h.action == HelmAction::Apply)
            .and_then(|h| h.chart.as_ref()?.version.clone())
        {
            view["version"] = json!(version);
        }
        if reason == "Failed" {
            view["error"] = json!(error.unwrap_or_default());
        }
        let at = nodes
            .iter()
            .filter_map(|&i| run.nodes[i].finished_at.or(run.nodes[i].started_at))
            .max()
            .unwrap_or(run.created_at);
        view["conditions"] = json!([{
            "type": "Ready", "status": status, "reason": reason, "message": message,
            "lastTransitionTime": at.to_string(),
        }]);
        return view;
    }
    view["conditions"] = json!([{"type": "Ready", "status": "Unknown", "reason": "Pending", "message": "not released yet"}]);
    view
}

/// Says why a run failed: its first failed node and that node's error.
fn describe_failure(run: &Run) -> String {
    let failed = run
        .nodes
        .iter()
        .filter(|n| n.state == NodeState::Failed)
        .min_by_key(|n| n.finish_order);
    match failed {
        Some(n) => format!(
            "{} failed: {}",
            n.name,
            n.error.as_deref().unwrap_or("no error given")
        ),
        None if run.phase.state() == State::Cancelled => "the run was cancelled".to_owned(),
        None => "the run failed".to_owned(),
    }
}

#[cfg(test)]
#[path = "groups_tests.rs"]
mod tests;
