//! A group's lifecycle in the core: applied, deleted, followed as its runs end, stepped
//! through [`Core::group_step`], and its runs started.

use baton_schemas::group::ApplicationGroup;
use baton_schemas::status::State;
use baton_schemas::wire::Timestamp;
use baton_schemas::{FailurePolicy, RunId, WorkflowName, WorkflowSpec};

use crate::{Action, Core, Refusal, Run, RunKind};

use super::view::describe_failure;
use super::*;

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
    pub(crate) fn apply_group(
        &mut self,
        group: ApplicationGroup,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        let name = group.name().to_owned();
        self.group_step(&name, GroupEvent::Applied(Box::new(group)), now, actions);
    }

    /// Deletes a group: its releases are uninstalled in reverse order.
    pub(crate) fn delete_group(&mut self, name: &str, now: Timestamp, actions: &mut Vec<Action>) {
        if !self.groups.contains_key(name) {
            actions.push(Action::Refused(Refusal::UnknownGroup(name.to_owned())));
            return;
        }
        self.group_step(name, GroupEvent::DeleteAsked, now, actions);
    }

    /// Deletes a group and lets it go whatever its delete leaves installed.
    pub(crate) fn force_delete_group(
        &mut self,
        name: &str,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        let Some(entry) = self.groups.get_mut(name) else {
            actions.push(Action::Refused(Refusal::UnknownGroup(name.to_owned())));
            return;
        };
        entry.force_delete = true;
        self.changed_groups.insert(name.to_owned());
        // A delete that ended with releases left is not run again: forced, it lets go.
        if !matches!(entry.state, GroupState::Deleted { .. }) {
            self.group_step(name, GroupEvent::DeleteAsked, now, actions);
        }
    }

    /// The one transition function of a group's lifecycle.
    pub(crate) fn group_step(
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
                    force_delete: false,
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
                        entry.force_delete = false;
                        self.start_group_run(name, Purpose::Forward, now, actions);
                    }
                }
            }
            GroupEvent::DeleteAsked => match state {
                GroupState::Deleted { left_installed } if left_installed.is_empty() => {}
                // Asked again after an uninstall failed (its cause fixed, say): the delete
                // runs again for what it left.
                GroupState::Deleted { .. } if !entry.force_delete => {
                    self.start_group_run(name, Purpose::Delete, now, actions);
                }
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
    pub(crate) fn take_pending(&mut self, name: &str, now: Timestamp, actions: &mut Vec<Action>) {
        let entry = self.groups.get_mut(name).expect("known group");
        match entry.pending.take() {
            None => {}
            Some(Pending::Delete) => {
                self.start_group_run(name, Purpose::Delete, now, actions);
            }
            Some(Pending::Apply { group }) => {
                if matches!(entry.state, GroupState::Deleted { .. }) {
                    entry.last_successful = None;
                    entry.force_delete = false;
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
    pub(crate) fn start_group_run(
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
}
