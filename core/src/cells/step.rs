//! A Cell's one step function, [`Core::cell_step`]: every input that moves a Cell, and its
//! rollout's run once settled, go through it.

use baton_schemas::cell::Cell;
use baton_schemas::reports::{AnalysisPhase, AnalysisVerdict, from_output};
use baton_schemas::wire::Timestamp;
use baton_schemas::{NodeKind, RunId};

use crate::{Action, Core, NodeState};

use super::*;

/// Where a rollout's background analysis stands, for the step that follows the rollout.
enum Background {
    /// Running, passed, absent, or with no more say: the rollout goes on.
    Running,
    /// It failed while a traffic write is in flight: acted on once the write ends.
    AfterTheWrite,
    /// It failed and was acted on.
    ActedOn,
}

/// What moves a Cell.
#[derive(Debug)]
pub(crate) enum CellEvent {
    /// Its spec was applied.
    Applied(Box<Cell>),
    /// A discovery saw its target groups and rule.
    Observed(Box<Observation>),
    /// A person's command (see [`Core::cell_command`]).
    Commanded {
        command: CellCommand,
        expect: Expect,
        from: Option<TriggerPosition>,
    },
    /// Its rollout's run was settled: the rollout's current node may have ended.
    RunMoved(RunId),
    /// It was deleted.
    Removed,
}

impl Core {
    /// The one transition function of a Cell.
    pub(crate) fn cell_step(
        &mut self,
        name: &str,
        event: CellEvent,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        match event {
            CellEvent::Applied(cell) => self.register_cell(*cell, now, actions),
            CellEvent::Observed(observation) => self.observe(*observation, now, actions),
            CellEvent::Commanded {
                command,
                expect,
                from,
            } => self.cell_command(name, command, &expect, from, now, actions),
            CellEvent::RunMoved(run) => self.follow_rollout(name, &run, now, actions),
            CellEvent::Removed => self.remove_cell(name, now, actions),
        }
    }

    /// Follows a Cell's rollout run after it was settled: ends an expired pause, and moves
    /// the rollout on when its current node has ended.
    fn follow_rollout(
        &mut self,
        name: &str,
        run: &RunId,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        if !self.runs.contains_key(run) {
            return;
        }
        let Some(rollout) = self
            .cells
            .get(name)
            .and_then(|e| e.status.rollout.clone())
            .filter(|ro| &ro.run == run)
        else {
            // The rollout ended (or its Cell went): its background analysis stops with it.
            self.stop_background(run, now, actions);
            return;
        };
        match self.follow_background(name, run, &rollout, now, actions) {
            Background::Running => {}
            // The verdict waits for the traffic write in flight, whose end settles the run
            // again.
            Background::AfterTheWrite => return,
            Background::ActedOn => {
                self.touch(run);
                return;
            }
        }
        let r = &self.runs[run];
        let i = rollout.stage.node();
        let node = &r.nodes[i];
        let succeeded = match node.state {
            NodeState::Held { until: Some(t) } if t <= now => {
                let paused = t.since(node.started_at.unwrap_or(t));
                self.end_node(
                    run,
                    i,
                    NodeState::Succeeded,
                    &format!("paused {}s", paused.as_secs()),
                    now,
                    actions,
                );
                true
            }
            NodeState::Succeeded => true,
            NodeState::Failed => false,
            _ => return,
        };
        self.rollout_node_ended(name, run, rollout, succeeded, now, actions);
        // Touched last: a rollout that replaces this one is dispatched before this run ends.
        self.touch(run);
    }

    /// Acts on the background analysis when it failed or was inconclusive: the stable version
    /// gets its traffic back and the version is blocked, or the rollout waits for a person.
    /// A traffic write in flight ends first.
    fn follow_background(
        &mut self,
        name: &str,
        run: &RunId,
        rollout: &Rollout,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) -> Background {
        let Some(b) = rollout.background.map(|b| b as usize) else {
            return Background::Running;
        };
        let r = &self.runs[run];
        if rollout.background_handled || r.nodes[b].state != NodeState::Failed {
            return Background::Running;
        }
        // Once the final switch or a rollback is under way, the background analysis has no
        // more say.
        let step = match rollout.stage {
            Stage::Step { step, .. } | Stage::Waiting { step, .. } => step,
            Stage::Finishing { .. } | Stage::RollingBack { .. } => return Background::Running,
        };
        if self.traffic_in_flight(rollout) {
            return Background::AfterTheWrite;
        }
        let error = r.nodes[b].error.clone().unwrap_or_default();
        let output = r.nodes[b].output.clone();
        let i = rollout.stage.node();
        // A step that ended before the verdict is done: a resume goes on after it.
        let step_done =
            matches!(rollout.stage, Stage::Step { .. }) && r.nodes[i].state == NodeState::Succeeded;
        if r.spec.nodes[i].kind == NodeKind::Traffic && r.nodes[i].state == NodeState::Succeeded {
            self.record_write(name, run, i, now);
        }
        self.end_node(
            run,
            i,
            NodeState::Cancelled,
            "cancelled: the background analysis ended the step",
            now,
            actions,
        );
        if let Some(ro) = self.rollout_mut(name) {
            ro.background_handled = true;
        }
        self.changed_cells.insert(name.to_owned());
        let verdict = from_output::<AnalysisVerdict>(output.as_deref());
        if verdict.is_some_and(|v| v.phase == AnalysisPhase::Inconclusive) {
            let next = if step_done { step + 1 } else { step };
            let why = format!(
                "background analysis: {error}; resume goes on with step {next}, abort rolls back"
            );
            self.wait(name, step, Next::Step { step: next }, why, now);
        } else {
            self.block(
                name,
                &rollout.to,
                format!("background analysis: {error}"),
                now,
            );
            self.go(name, Next::Rollback, now);
        }
        Background::ActedOn
    }

    /// Stops the background analysis of a rollout run that ended. It found nothing wrong up
    /// to then, so it ends succeeded: a rollout that went through is not counted cancelled.
    fn stop_background(&mut self, run: &RunId, now: Timestamp, actions: &mut Vec<Action>) {
        let live: Vec<usize> = self.runs[run]
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.name.as_str().starts_with("background-analysis"))
            .filter(|(_, n)| !n.state.is_terminal())
            .map(|(i, _)| i)
            .collect();
        for i in live {
            self.end_node(
                run,
                i,
                NodeState::Succeeded,
                "stopped: the rollout ended",
                now,
                actions,
            );
        }
    }

    /// Moves the rollout on from its current node, which ended (`succeeded` or not).
    fn rollout_node_ended(
        &mut self,
        name: &str,
        run: &RunId,
        rollout: Rollout,
        succeeded: bool,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        let i = rollout.stage.node();
        let kind = self.runs[run].spec.nodes[i].kind;
        let output = self.runs[run].nodes[i].output.clone().unwrap_or_default();
        let error = self.runs[run].nodes[i].error.clone().unwrap_or_default();
        if kind == NodeKind::Traffic && succeeded {
            self.record_write(name, run, i, now);
        }
        self.changed_cells.insert(name.to_owned());
        if let Some(request) = rollout.pending {
            if let Some(ro) = self.rollout_mut(name) {
                ro.pending = None;
            }
            match request {
                Request::Abort => {
                    self.block(name, &rollout.to, "aborted by a person".to_owned(), now);
                    self.go(name, Next::Rollback, now);
                }
                Request::Promote => self.go(name, Next::Finish, now),
                Request::Supersede => {
                    self.end_rollout(name, None);
                    self.reconcile_cell(name, now, actions);
                }
            }
            return;
        }
        match (rollout.stage, succeeded) {
            (Stage::Step { step, .. }, true) => self.go(name, Next::Step { step: step + 1 }, now),
            (Stage::Step { step, .. }, false) if kind == NodeKind::Analysis => {
                let verdict = from_output::<AnalysisVerdict>(Some(&output));
                if verdict.is_some_and(|v| v.phase == AnalysisPhase::Inconclusive) {
                    let why = format!("step {step}: {error}; resume to go on, abort to roll back");
                    self.wait(name, step, Next::Step { step: step + 1 }, why, now);
                } else {
                    let cause = format!("step {step}: {error}");
                    self.block(name, &rollout.to, cause, now);
                    self.go(name, Next::Rollback, now);
                }
            }
            (Stage::Step { step, .. }, false) => {
                let why =
                    format!("step {step} failed: {error}; resume tries it again, abort rolls back");
                self.wait(name, step, Next::Step { step }, why, now);
            }
            (Stage::Finishing { .. }, true) => {
                self.end_rollout(name, Some(rollout.to.clone()));
            }
            (Stage::Finishing { .. }, false) => {
                let step = self.steps_len(name);
                let why = format!(
                    "the final switch to {} failed: {error}; resume tries it again",
                    rollout.to
                );
                self.wait(name, step, Next::Finish, why, now);
            }
            (Stage::RollingBack { .. }, true) => self.end_rollout(name, None),
            (Stage::RollingBack { .. }, false) => {
                let why = format!("the rollback failed: {error}; resume tries it again");
                self.wait(name, 0, Next::Rollback, why, now);
            }
            (Stage::Waiting { .. }, _) => {}
        }
    }
}
