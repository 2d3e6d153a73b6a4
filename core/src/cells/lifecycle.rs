//! A Cell's life in the core: registered, restored, observed, commanded, followed as its
//! rollout's nodes end, reconciled with what discovery saw, and removed.

use baton_schemas::NodeKind;
use baton_schemas::analysis::AnalysisTemplate;
use baton_schemas::cell::{Cell, DeletionPolicy};
use baton_schemas::traffic::{RuleAction, TrafficSpec};
use baton_schemas::wire::Timestamp;
use semver::Version;

use crate::{Action, Core, NodeState, Refusal};

use super::*;

impl Core {
    /// Returns every Cell.
    pub fn cells(&self) -> impl Iterator<Item = &CellEntry> {
        self.cells.values()
    }

    /// Returns one Cell.
    pub fn cell(&self, name: &str) -> Option<&CellEntry> {
        self.cells.get(name)
    }

    /// Returns every analysis template.
    pub fn analysis_templates(&self) -> impl Iterator<Item = &AnalysisTemplate> {
        self.templates.values()
    }

    /// Puts back the Cells and analysis templates a store kept.
    pub(crate) fn restore_cells(
        &mut self,
        cells: Vec<CellEntry>,
        templates: Vec<AnalysisTemplate>,
    ) {
        self.cells = cells
            .into_iter()
            .map(|mut c| {
                if c.status.stored_phase.take() == Some(CellPhase::Degraded) {
                    c.status.rolled_back = true;
                }
                (c.cell.metadata.name.clone(), c)
            })
            .collect();
        self.templates = templates
            .into_iter()
            .map(|t| (t.metadata.name.clone(), t))
            .collect();
    }

    pub(crate) fn register_template(&mut self, template: AnalysisTemplate) {
        let name = template.metadata.name.clone();
        if self.templates.get(&name) != Some(&template) {
            self.templates.insert(name.clone(), template);
            self.changed_templates.insert(name);
        }
    }

    pub(crate) fn remove_template(&mut self, name: &str) {
        if self.templates.remove(name).is_some() {
            self.changed_templates.insert(name.to_owned());
        }
    }

    pub(crate) fn register_cell(&mut self, cell: Cell, now: Timestamp, actions: &mut Vec<Action>) {
        let name = cell.metadata.name.clone();
        match self.cells.get_mut(&name) {
            Some(entry) if entry.cell == cell => return,
            Some(entry) => entry.cell = cell,
            None => {
                let status = CellStatus {
                    message: Some("waiting for the first discovery of target groups".to_owned()),
                    ..CellStatus::default()
                };
                self.cells.insert(name.clone(), CellEntry { cell, status });
            }
        }
        self.changed_cells.insert(name.clone());
        self.reconcile_cell(&name, now, actions);
    }

    /// Returns whether the rollout's current node is a traffic write still in flight.
    pub(crate) fn traffic_in_flight(&self, rollout: &Rollout) -> bool {
        let (r, i) = (&self.runs[&rollout.run], rollout.stage.node());
        r.spec.nodes[i].kind == NodeKind::Traffic && !r.nodes[i].state.is_terminal()
    }

    /// Forgets a Cell. Its rollout is cancelled; with `deletionPolicy: Delete` a traffic node
    /// removes its listener rule. A traffic write in flight is never raced: the delete waits
    /// for it to end (it joins the rollout's run, after the write), as abort and promote do.
    pub(crate) fn remove_cell(&mut self, name: &str, now: Timestamp, actions: &mut Vec<Action>) {
        let Some(mut entry) = self.cells.remove(name) else {
            return;
        };
        self.changed_cells.insert(name.to_owned());
        let delete = entry.cell.spec.deletion_policy == DeletionPolicy::Delete;
        let cell = &entry.cell;
        let spec = TrafficSpec {
            listener_arn: cell.alb().listener_arn,
            priority: cell.priority(),
            conditions: cell.conditions(),
            action: RuleAction::Delete,
            generation: None,
        };
        let rollout = entry.status.rollout.take();
        let writing = rollout
            .as_ref()
            .filter(|ro| self.traffic_in_flight(ro))
            .map(|ro| (ro.run.clone(), ro.stage.node()));
        match (delete, writing) {
            (true, Some((run, i))) => {
                let number = entry.status.runs;
                let r = self.runs.get_mut(&run).expect("rollout runs exist");
                push_traffic_after(r, "delete-rule", spec, number, i);
                self.touch(&run);
            }
            (_, _) => {
                if let Some(rollout) = rollout {
                    self.cancel_run(&rollout.run, now, actions);
                }
                if delete {
                    let (run, number) = free_run_id(&self.runs, name, entry.status.runs + 1);
                    let mut r = new_run(run.clone(), name, now);
                    push_traffic(&mut r, "delete-rule", spec, number);
                    self.add_run(r);
                    self.touch(&run);
                }
            }
        }
    }

    /// Applies what a discovery saw, then decides.
    pub(crate) fn observe(&mut self, obs: Observation, now: Timestamp, actions: &mut Vec<Action>) {
        let Some(entry) = self.cells.get_mut(&obs.cell) else {
            return;
        };
        // An observation older than one already applied (met again when a history is applied
        // again) would move the Cell back to what it saw then.
        if entry.status.last_sync.is_some_and(|last| obs.at < last) {
            return;
        }
        self.changed_cells.insert(obs.cell.clone());
        let status = &mut entry.status;
        status.last_sync = Some(obs.at);
        let groups = match obs.target_groups {
            Ok(groups) => groups,
            Err(e) => {
                status.message = Some(format!("discovery failed: {e}"));
                return;
            }
        };
        let labels = entry.cell.version_labels();
        let mut seen: Vec<GroupSeen> = groups
            .into_iter()
            .map(|g| GroupSeen {
                version: labels
                    .iter()
                    .find_map(|l| g.tags.get(l).filter(|v| !v.is_empty()))
                    .cloned(),
                arn: g.arn,
                name: g.name,
            })
            .collect();
        seen.sort_by(|a, b| (&a.name, &a.arn).cmp(&(&b.name, &b.arn)));
        status.target_groups = seen;
        status.target_group_source = obs.source;
        let fresh = status.written.as_ref().is_none_or(|w| obs.at >= w.at);
        if let (Ok(rule), true) = (obs.rule, fresh) {
            if status.rollout.is_none() {
                status.set_weights(rule.clone().unwrap_or_default(), obs.at);
            }
            status.observed_rule = match rule {
                Some(weights) => RuleSeen::Forwards(weights),
                None => RuleSeen::Absent,
            };
        }
        if status.serving_version.is_none() && status.rollout.is_none() {
            status.serving_version = serving_from_rule(status);
        }
        self.reconcile_cell(&obs.cell, now, actions);
    }

    /// Handles a person's command. A command from the triggers stream is applied once: one
    /// at or before the last one taken is ignored (see [`CellStatus::last_command`]). A
    /// command that names a run or a step is refused unless the rollout is there.
    pub(crate) fn cell_command(
        &mut self,
        name: &str,
        command: CellCommand,
        expect: &Expect,
        from: Option<TriggerPosition>,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        let refuse = |actions: &mut Vec<Action>, why: String| {
            actions.push(Action::Refused(Refusal::CellCommand(why)));
        };
        let Some(entry) = self.cells.get_mut(name) else {
            return actions.push(Action::Refused(Refusal::UnknownCell(name.to_owned())));
        };
        if let Some(at) = from {
            let taken = entry
                .status
                .last_command
                .is_some_and(|last| last.stream_created == at.stream_created && last.seq >= at.seq);
            if taken {
                return;
            }
            // Recorded whatever the command does, refused or not: applied again after a crash,
            // it would meet a later state.
            entry.status.last_command = Some(at);
            self.changed_cells.insert(name.to_owned());
        }
        let entry = &self.cells[name];
        if let Some(why) = mismatch(name, entry.status.rollout.as_ref(), expect) {
            return refuse(actions, why);
        }
        let Some(rollout) = entry.status.rollout.clone() else {
            if command == CellCommand::Promote
                && let Some(blocked) = self.newest_blocked(name)
            {
                let entry = self.cells.get_mut(name).expect("checked");
                entry
                    .status
                    .blocked
                    .retain(|b| b.version != blocked.to_string());
                self.changed_cells.insert(name.to_owned());
                let groups = self.groups_of(name, &blocked);
                self.start_rollout(name, RolloutKind::Switch, &blocked, groups, Vec::new(), now);
                return;
            }
            let phase = self.cell_phase(entry).as_str();
            return refuse(
                actions,
                format!(
                    "cell {name:?} has no rollout under way to {} (phase {phase})",
                    command.as_str()
                ),
            );
        };
        let run = rollout.run.clone();
        let i = rollout.stage.node();
        let node_state = self.runs[&run].nodes[i].state;
        let traffic_in_flight = self.traffic_in_flight(&rollout);
        match (command, rollout.stage) {
            (_, Stage::RollingBack { .. }) => {
                return refuse(
                    actions,
                    format!(
                        "cell {name:?} is rolling back; nothing to {}",
                        command.as_str()
                    ),
                );
            }
            (CellCommand::Resume, Stage::Waiting { then, .. }) => {
                self.end_node(&run, i, NodeState::Succeeded, "resumed", now, actions);
                self.go(name, then, now);
            }
            (CellCommand::Resume, Stage::Step { step, .. })
                if matches!(node_state, NodeState::Held { .. }) =>
            {
                self.end_node(
                    &run,
                    i,
                    NodeState::Succeeded,
                    "resumed before the pause ended",
                    now,
                    actions,
                );
                self.go(name, Next::Step { step: step + 1 }, now);
            }
            (CellCommand::Resume, _) => {
                return refuse(
                    actions,
                    format!("cell {name:?} is not paused; nothing to resume"),
                );
            }
            (CellCommand::Abort | CellCommand::Promote, _) if traffic_in_flight => {
                let request = match command {
                    CellCommand::Abort => Request::Abort,
                    _ => Request::Promote,
                };
                let entry = self.cells.get_mut(name).expect("checked");
                if let Some(r) = &mut entry.status.rollout {
                    r.pending = Some(request);
                }
                self.changed_cells.insert(name.to_owned());
            }
            (CellCommand::Abort, _) => {
                self.end_node(
                    &run,
                    i,
                    NodeState::Cancelled,
                    "cancelled: the rollout was aborted",
                    now,
                    actions,
                );
                self.block(name, &rollout.to, "aborted by a person".to_owned(), now);
                self.go(name, Next::Rollback, now);
            }
            (CellCommand::Promote, Stage::Finishing { .. }) => {}
            (CellCommand::Promote, _) => {
                self.end_node(
                    &run,
                    i,
                    NodeState::Cancelled,
                    "cancelled: the rollout was promoted",
                    now,
                    actions,
                );
                self.go(name, Next::Finish, now);
            }
        }
        self.touch(&run);
    }

    /// Decides what a Cell without a rollout needs, or whether a rollout under way must give
    /// way, and acts.
    pub(crate) fn reconcile_cell(&mut self, name: &str, now: Timestamp, actions: &mut Vec<Action>) {
        let Some(entry) = self.cells.get(name) else {
            return;
        };
        if entry.status.last_sync.is_none() {
            return;
        }
        let by = versions(entry);
        if let Some(rollout) = entry.status.rollout.clone() {
            if let Some(why) = supersede(entry, &rollout, &by) {
                self.supersede(name, &rollout, why, now, actions);
            }
            return;
        }
        match plan(entry, &by) {
            Decision::Nothing(message) => {
                let entry = self.cells.get_mut(name).expect("checked");
                if entry.status.message != message {
                    entry.status.message = message;
                    self.changed_cells.insert(name.to_owned());
                }
            }
            Decision::Switch { to, why } => {
                let groups = by.get(&to).cloned().unwrap_or_default();
                let entry = self.cells.get_mut(name).expect("checked");
                entry.status.message = Some(why);
                self.start_rollout(name, RolloutKind::Switch, &to, groups, Vec::new(), now);
            }
            Decision::Canary { to, from } => {
                let canary = by.get(&to).cloned().unwrap_or_default();
                let stable = by.get(&from).cloned().unwrap_or_default();
                let entry = self.cells.get_mut(name).expect("checked");
                entry.status.message = None;
                self.start_rollout(name, RolloutKind::Canary, &to, canary, stable, now);
            }
        }
    }

    /// Ends a rollout that a newer version or a changed set of groups replaces: at once, or
    /// when its traffic node in flight ends.
    pub(crate) fn supersede(
        &mut self,
        name: &str,
        rollout: &Rollout,
        why: String,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        let (run, i) = (rollout.run.clone(), rollout.stage.node());
        let in_flight_traffic = self.traffic_in_flight(rollout);
        let entry = self.cells.get_mut(name).expect("caller checked");
        entry.status.message = Some(why.clone());
        self.changed_cells.insert(name.to_owned());
        if in_flight_traffic {
            if let Some(ro) = self.rollout_mut(name) {
                ro.pending = Some(Request::Supersede);
            }
            return;
        }
        self.end_node(
            &run,
            i,
            NodeState::Cancelled,
            &format!("cancelled: {why}"),
            now,
            actions,
        );
        self.end_rollout(name, None);
        self.touch(&run);
        self.reconcile_cell(name, now, actions);
    }

    /// Starts a rollout run to `to`.
    #[allow(clippy::too_many_arguments)] // the parts of one rollout, named at the call
    pub(crate) fn start_rollout(
        &mut self,
        name: &str,
        kind: RolloutKind,
        to: &Version,
        canary: Vec<TargetGroup>,
        stable: Vec<TargetGroup>,
        now: Timestamp,
    ) {
        let entry = self.cells.get_mut(name).expect("caller checked");
        // A Cell deleted and applied again counts from 1 again: its old runs keep their ids.
        let (run, n) = free_run_id(&self.runs, name, entry.status.runs + 1);
        entry.status.runs = n;
        let from = entry.status.serving_version.clone();
        entry.status.rollout = Some(Rollout {
            run: run.clone(),
            kind,
            to: to.to_string(),
            from,
            canary,
            stable,
            // Replaced below, before anything reads it.
            stage: Stage::Finishing { node: 0 },
            pending: None,
            background: None,
            background_handled: false,
        });
        self.changed_cells.insert(name.to_owned());
        self.add_run(new_run(run.clone(), name, now));
        match kind {
            RolloutKind::Switch => self.go(name, Next::Finish, now),
            RolloutKind::Canary => self.go(name, Next::Step { step: 0 }, now),
        }
        self.touch(&run);
    }
}
