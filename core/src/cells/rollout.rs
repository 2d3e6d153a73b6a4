//! A rollout under way: its target groups, stage and requests, and the one step function
//! that moves it (`go`) with the bookkeeping around it.

use baton_schemas::reports::{RuleWritten, from_output};
use std::collections::BTreeMap;
use std::time::Duration;

use baton_schemas::RunId;
use baton_schemas::analysis::{self};
use baton_schemas::cell::{DeletionPolicy, StepKind};
use baton_schemas::traffic::{RuleAction, TrafficSpec, WeightedTargetGroup};
use baton_schemas::wire::Timestamp;
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::{Action, Core, NodeState, finish};

use super::*;

/// A target group of a rollout, by name order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroup {
    /// Its ARN.
    pub arn: String,
    /// Its name.
    pub name: String,
}

/// A rollout under way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// Its run.
    pub run: RunId,
    /// Steps or at once.
    pub kind: RolloutKind,
    /// The version rolled out.
    pub to: String,
    /// The version that served before, if one did.
    pub from: Option<String>,
    /// The new version's target groups, by name.
    pub canary: Vec<TargetGroup>,
    /// The serving version's target groups, by name.
    pub stable: Vec<TargetGroup>,
    /// What the run's current node does.
    pub stage: Stage,
    /// A request that waits for the traffic node in flight to end.
    pub pending: Option<Request>,
    /// The node of the background analysis, once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<u32>,
    /// Whether its end was acted on (a rollback, or a hold a person resumed past).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub background_handled: bool,
}

/// How a rollout goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RolloutKind {
    /// Step by step.
    Canary,
    /// At once: the first version, a pin, a rollback, a rule to rewrite.
    Switch,
}

/// What the current node of a rollout run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "stage")]
pub enum Stage {
    /// Step `step` runs in node `node` (its weights, its analysis, or its timed pause).
    Step {
        /// The step's index.
        step: u32,
        /// The node.
        node: u32,
    },
    /// Node `node` is held until a person resumes (or aborts, or promotes); a resume goes on
    /// with `then`.
    Waiting {
        /// The step the rollout is at.
        step: u32,
        /// The held node.
        node: u32,
        /// What a resume does.
        then: Next,
    },
    /// Node `node` gives the new version 100%.
    Finishing {
        /// The node.
        node: u32,
    },
    /// Node `node` gives the stable version 100% back.
    RollingBack {
        /// The node.
        node: u32,
    },
}

impl Stage {
    pub(crate) fn node(self) -> usize {
        match self {
            Stage::Step { node, .. }
            | Stage::Waiting { node, .. }
            | Stage::Finishing { node }
            | Stage::RollingBack { node } => node as usize,
        }
    }

    pub(crate) fn step(self) -> Option<u32> {
        match self {
            Stage::Step { step, .. } | Stage::Waiting { step, .. } => Some(step),
            _ => None,
        }
    }
}

/// Where a resumed rollout goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "to")]
pub enum Next {
    /// The step with this index (the next one, or the one that failed, again).
    Step {
        /// The step's index.
        step: u32,
    },
    /// The final 100%.
    Finish,
    /// The rollback.
    Rollback,
}

/// A request kept until the traffic node in flight ends (two writes to one rule never race).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Abort.
    Abort,
    /// Promote.
    Promote,
    /// End the rollout: a newer version or a changed set of target groups replaces it.
    Supersede,
}

/// What the discovery decides for a Cell without a rollout under way.
#[derive(Debug, PartialEq)]
pub(crate) enum Decision {
    /// Nothing to do; the message says what the Cell waits for, if anything.
    Nothing(Option<String>),
    /// The target gets 100% at once.
    Switch { to: Version, why: String },
    /// The target is rolled out step by step from `from`.
    Canary { to: Version, from: Version },
}

/// The Cell's fields an analysis argument may read (`valueFrom.fieldRef`).
fn fields(cell: &baton_schemas::cell::Cell, rollout: &Rollout) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("status.desiredVersion".to_owned(), rollout.to.clone()),
        (
            "status.servingVersion".to_owned(),
            rollout.from.clone().unwrap_or_default(),
        ),
        ("metadata.name".to_owned(), cell.metadata.name.clone()),
        (
            "metadata.namespace".to_owned(),
            cell.metadata.namespace.clone().unwrap_or_default(),
        ),
    ])
}

/// How long a traffic node may take, retries apart.
pub(crate) const TRAFFIC_TIMEOUT: Duration = Duration::from_secs(120);

impl Core {
    /// Moves a rollout to `next`: pushes the node that does it and records the stage. Zero
    /// pauses are passed over.
    pub(crate) fn go(&mut self, name: &str, next: Next, now: Timestamp) {
        let entry = &self.cells[name];
        let number = entry.status.runs;
        let cell = entry.cell.clone();
        let rollout = entry
            .status
            .rollout
            .clone()
            .expect("callers have a rollout");
        let run = rollout.run.clone();
        let rule = |groups: Vec<WeightedTargetGroup>| TrafficSpec {
            listener_arn: cell.alb().listener_arn,
            priority: cell.priority(),
            conditions: cell.conditions(),
            action: RuleAction::Forward(groups),
            generation: None,
        };
        let steps = cell.steps();
        if let (Next::Step { step }, RolloutKind::Canary, None) =
            (next, rollout.kind, rollout.background)
            && let Some(background) = cell.background_analysis()
            && step >= background.starting_step.unwrap_or(0)
            && let Err(e) = self.start_background(name, &run, &cell, &rollout, background)
        {
            self.wait(
                name,
                step,
                next,
                format!("background analysis: {e}; resume tries again"),
                now,
            );
            return;
        }
        let mut step = match next {
            Next::Step { step } => step,
            Next::Finish => steps.len() as u32,
            Next::Rollback => {
                if rollout.stable.is_empty() {
                    self.end_rollout(name, None);
                    self.set_message(
                        name,
                        format!(
                            "no stable target groups to roll back to; the rule keeps {}",
                            rollout.to
                        ),
                    );
                    return;
                }
                let spec = rule(weights(&[], &rollout.stable, 0));
                if let Some(why) = refused(&spec) {
                    self.wait(
                        name,
                        0,
                        Next::Rollback,
                        format!("the rollback cannot be written: {why}"),
                        now,
                    );
                    return;
                }
                let r = self.runs.get_mut(&run).expect("rollout runs exist");
                let node = push_traffic(r, "rollback", spec, number);
                self.set_stage(name, Stage::RollingBack { node });
                return;
            }
        };
        loop {
            let stage = match steps.get(step as usize) {
                None => {
                    let spec = rule(weights(&rollout.canary, &[], 100));
                    let label = match rollout.kind {
                        RolloutKind::Canary => "promote",
                        RolloutKind::Switch => "switch",
                    };
                    if let Some(why) = refused(&spec) {
                        let why = format!("{} cannot get the traffic: {why}", rollout.to);
                        self.wait(name, step, Next::Finish, why, now);
                        return;
                    }
                    let r = self.runs.get_mut(&run).expect("rollout runs exist");
                    let node = push_traffic(r, label, spec, number);
                    Stage::Finishing { node }
                }
                // With no stable groups left there is nothing to share traffic with.
                Some(StepKind::SetWeight(_)) if rollout.stable.is_empty() => {
                    step = steps.len() as u32;
                    continue;
                }
                Some(StepKind::SetWeight(w)) => {
                    let spec = rule(weights(&rollout.canary, &rollout.stable, *w));
                    if let Some(why) = refused(&spec) {
                        let why = format!("step {step} cannot be written: {why}; promote or abort");
                        self.wait(name, step, Next::Step { step }, why, now);
                        return;
                    }
                    let r = self.runs.get_mut(&run).expect("rollout runs exist");
                    let node = push_traffic(r, &format!("s{step}-weight-{w}"), spec, number);
                    Stage::Step { step, node }
                }
                Some(StepKind::Pause(Some(d))) if d.is_zero() => {
                    step += 1;
                    continue;
                }
                Some(StepKind::Pause(d)) => {
                    let until = d.map(|d| now.after(d));
                    let r = self.runs.get_mut(&run).expect("rollout runs exist");
                    let node = push_held(r, &format!("s{step}-pause"), until, now);
                    match d {
                        Some(_) => Stage::Step { step, node },
                        None => {
                            self.set_message(
                                name,
                                format!("paused at step {step}; resume to go on"),
                            );
                            Stage::Waiting {
                                step,
                                node,
                                then: Next::Step { step: step + 1 },
                            }
                        }
                    }
                }
                Some(StepKind::Experiment(spec)) => {
                    let templates = &self.templates;
                    let planned = super::experiment::plan(
                        &cell,
                        &run,
                        step,
                        spec,
                        |n| templates.get(n).map(|t| t.spec.clone()),
                        &fields(&cell, &rollout),
                    );
                    match planned {
                        Ok(job) => {
                            let r = self.runs.get_mut(&run).expect("rollout runs exist");
                            let label = format!("s{step}-experiment");
                            let node = super::experiment::push_experiment(r, &label, job);
                            Stage::Step { step, node }
                        }
                        Err(e) => {
                            let why = format!("step {step}: {e}; resume tries again");
                            self.wait(name, step, Next::Step { step }, why, now);
                            return;
                        }
                    }
                }
                Some(StepKind::Analysis(spec)) => {
                    let templates = &self.templates;
                    let resolved = analysis::resolve(
                        spec,
                        |n| templates.get(n).map(|t| t.spec.clone()),
                        &fields(&cell, &rollout),
                    )
                    .and_then(|metrics| {
                        match analysis::unbounded_problem(&metrics) {
                            Some(problem) => Err(problem),
                            None => Ok(metrics),
                        }
                    });
                    match resolved {
                        Ok(metrics) => {
                            let r = self.runs.get_mut(&run).expect("rollout runs exist");
                            // Secrets the metrics name are read in the Cell's namespace.
                            let step_spec = analysis::AnalysisSpec {
                                namespace: cell.metadata.namespace.clone(),
                                ..(**spec).clone()
                            };
                            let node =
                                push_analysis(r, &format!("s{step}-analysis"), step_spec, metrics);
                            Stage::Step { step, node }
                        }
                        Err(e) => {
                            self.wait(
                                name,
                                step,
                                Next::Step { step },
                                format!("step {step}: {e}; resume tries again"),
                                now,
                            );
                            return;
                        }
                    }
                }
            };
            self.set_stage(name, stage);
            return;
        }
    }

    /// Starts the Cell's background analysis beside the rollout's steps.
    fn start_background(
        &mut self,
        name: &str,
        run: &RunId,
        cell: &baton_schemas::cell::Cell,
        rollout: &Rollout,
        background: &baton_schemas::cell::BackgroundAnalysis,
    ) -> Result<(), String> {
        let spec = analysis::AnalysisSpec {
            namespace: cell.metadata.namespace.clone(),
            ..background.spec()
        };
        let templates = &self.templates;
        let metrics = analysis::resolve(
            &spec,
            |n| templates.get(n).map(|t| t.spec.clone()),
            &fields(cell, rollout),
        )?;
        let r = self.runs.get_mut(run).expect("rollout runs exist");
        let node = push_analysis(r, "background-analysis", spec, metrics);
        if let Some(ro) = self.rollout_mut(name) {
            ro.background = Some(node);
        }
        self.changed_cells.insert(name.to_owned());
        Ok(())
    }

    /// Holds the rollout at `step` until a person resumes it (then `then`) or aborts it.
    pub(crate) fn wait(&mut self, name: &str, step: u32, then: Next, why: String, now: Timestamp) {
        let Some(run) = self.rollout_mut(name).map(|r| r.run.clone()) else {
            return;
        };
        let r = self.runs.get_mut(&run).expect("rollout runs exist");
        let node = push_held(r, &format!("s{step}-hold"), None, now);
        self.set_stage(name, Stage::Waiting { step, node, then });
        self.set_message(name, why);
    }

    /// Ends node `i` of `run` (a pause, or a node a person stopped), telling workers to stop
    /// it if it is a job in flight.
    pub(crate) fn end_node(
        &mut self,
        run: &RunId,
        i: usize,
        state: NodeState,
        why: &str,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        let r = self.runs.get_mut(run).expect("rollout runs exist");
        let node = &r.nodes[i];
        if node.state.is_terminal() {
            return;
        }
        if node.state.in_flight().is_some() {
            actions.push(Action::AnnounceCancel {
                run: run.clone(),
                node: Some(node.name.clone()),
            });
        }
        r.ensure_graph();
        let n = r.node_mut(i);
        if state == NodeState::Succeeded {
            n.output = Some(why.to_owned());
        } else {
            n.error = Some(why.to_owned());
        }
        finish(r, i, state, now);
        self.mark_changed(run);
    }

    /// Ends the rollout: `serving` is the version that now has the traffic, when it changed.
    pub(crate) fn end_rollout(&mut self, name: &str, serving: Option<String>) {
        let entry = self.cells.get_mut(name).expect("callers checked");
        let status = &mut entry.status;
        let rolled_back = status
            .rollout
            .as_ref()
            .is_some_and(|r| status.blocked.iter().any(|b| b.version == r.to));
        // Settled again, the run stops its background analysis (`follow_rollout`).
        let ended = status.rollout.take().map(|r| r.run);
        if let Some(run) = ended {
            self.touch(&run);
        }
        let status = &mut self.cells.get_mut(name).expect("callers checked").status;
        status.rolled_back = serving.is_none() && rolled_back;
        if let Some(v) = serving {
            status.serving_version = Some(v);
            status.message = None;
        }
        self.changed_cells.insert(name.to_owned());
    }

    pub(crate) fn set_stage(&mut self, name: &str, stage: Stage) {
        let waiting = matches!(stage, Stage::Waiting { .. });
        let entry = self.cells.get_mut(name).expect("callers checked");
        if let Some(r) = &mut entry.status.rollout {
            r.stage = stage;
        }
        if !waiting {
            entry.status.message = None;
        }
        self.changed_cells.insert(name.to_owned());
    }

    pub(crate) fn set_message(&mut self, name: &str, message: String) {
        if let Some(entry) = self.cells.get_mut(name) {
            entry.status.message = Some(message);
            self.changed_cells.insert(name.to_owned());
        }
    }

    pub(crate) fn rollout_mut(&mut self, name: &str) -> Option<&mut Rollout> {
        self.cells.get_mut(name)?.status.rollout.as_mut()
    }

    pub(crate) fn steps_len(&self, name: &str) -> u32 {
        self.cells
            .get(name)
            .map(|e| e.cell.steps().len() as u32)
            .unwrap_or(0)
    }

    pub(crate) fn block(&mut self, name: &str, version: &str, cause: String, now: Timestamp) {
        let entry = self.cells.get_mut(name).expect("callers checked");
        if !entry.status.blocked.iter().any(|b| b.version == version) {
            entry.status.blocked.push(Blocked {
                version: version.to_owned(),
                cause: cause.clone(),
                at: now,
            });
        }
        entry.status.message = Some(format!("version {version} blocked: {cause}"));
        self.changed_cells.insert(name.to_owned());
    }

    /// Records the confirmed write of node `i` of `run`: the weights AWS showed, and the rule
    /// as written. When the write put the rule somewhere else than the one before it (the
    /// Cell's priority or listener changed), a `deletionPolicy: Delete` Cell's old rule is
    /// removed by a node of the same run, now that the new one serves.
    pub(crate) fn record_write(&mut self, name: &str, run: &RunId, i: usize, now: Timestamp) {
        let r = &self.runs[run];
        let output = r.nodes[i].output.as_deref().unwrap_or_default();
        let shown: Option<Vec<WeightedTargetGroup>> =
            from_output::<RuleWritten>(Some(output)).map(|w| w.target_groups);
        let Some(spec) = r.spec.nodes[i].traffic.as_deref().cloned() else {
            return;
        };
        let entry = self.cells.get_mut(name).expect("callers checked");
        if let Some(weights) = shown {
            entry.status.set_weights(weights.clone(), now);
            entry.status.observed_rule = RuleSeen::Forwards(weights);
        }
        let before = entry.status.written.replace(Written {
            listener_arn: spec.listener_arn.clone(),
            priority: spec.priority,
            conditions: spec.conditions.clone(),
            at: now,
        });
        let moved = before.filter(|w| {
            (w.listener_arn.as_str(), w.priority) != (spec.listener_arn.as_str(), spec.priority)
        });
        if let Some(old) = moved
            && entry.cell.spec.deletion_policy == DeletionPolicy::Delete
        {
            let number = entry.status.runs;
            let retire = TrafficSpec {
                listener_arn: old.listener_arn,
                priority: old.priority,
                conditions: old.conditions,
                action: RuleAction::Delete,
                generation: None,
            };
            let r = self.runs.get_mut(run).expect("rollout runs exist");
            push_traffic(r, "delete-old-rule", retire, number);
        }
    }

    pub(crate) fn newest_blocked(&self, name: &str) -> Option<Version> {
        let entry = self.cells.get(name)?;
        let by = versions(entry);
        by.keys()
            .rev()
            .find(|v| {
                entry
                    .status
                    .blocked
                    .iter()
                    .any(|b| b.version == v.to_string())
            })
            .cloned()
    }

    pub(crate) fn groups_of(&self, name: &str, version: &Version) -> Vec<TargetGroup> {
        self.cells
            .get(name)
            .and_then(|e| versions(e).remove(version))
            .unwrap_or_default()
    }
}
