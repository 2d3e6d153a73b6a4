//! Cells in the decision core: what a discovery of target groups means for a Cell's listener
//! rule, and the rollout runs that move its traffic. Pure, like the rest of the core.
//!
//! A Cell's target groups are grouped by version. The *target* is the pinned version
//! (`spec.version`), or else the newest version that is not blocked, once it has `replicas`
//! target groups (until then the serving version stays; if the serving version's groups are
//! gone, what remains gets the traffic). Then:
//!
//! | situation | what happens |
//! |---|---|
//! | the target serves and the rule matches | nothing: no write |
//! | the target serves, the rule differs (drift, new conditions, a group added) | a *switch* run rewrites it |
//! | nothing served yet, a pin, a rollback (older target), serving groups gone, no steps | a *switch*: the target gets 100% at once |
//! | a newer version | a *canary* run walks the steps |
//!
//! A rollout is a run of kind `Cell` whose nodes the core pushes one at a time: `traffic`
//! nodes (a step's weights, the final 100%, a rollback), `analysis` nodes, and pauses, which
//! are planner timers (a [`NodeState::Held`] node, woken by the timer index), not worker jobs.
//! An analysis that fails rolls back to the stable version and blocks the version; an
//! inconclusive one, a pause without duration, or a traffic step that failed for good waits
//! for a person (`resume`, `abort`, `promote`). A newer version arriving mid-rollout replaces
//! the rollout; a changed spec applies from the next step on.

use std::collections::BTreeMap;
use std::time::Duration;

use baton_schemas::analysis::{self, AnalysisTemplate};
use baton_schemas::cell::{Cell, DeletionPolicy, StepKind};
use baton_schemas::traffic::{
    Generation, RuleAction, TrafficSpec, WeightedTargetGroup, split_evenly,
};
use baton_schemas::wire::Timestamp;
use baton_schemas::workflow::{Backoff, NodeSpec};
use baton_schemas::{FailurePolicy, NodeKind, Retries, RunId, When, WorkflowName, WorkflowSpec};
use semver::Version;
use serde::{Deserialize, Serialize};

use super::chains::unique_name;
use super::{Action, Core, Node, NodeState, Refusal, Run, RunKind, StartedBy, finish};

/// A target group a discovery saw, with its tags.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenTargetGroup {
    /// Its ARN.
    pub arn: String,
    /// Its name.
    pub name: String,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}

/// What one discovery saw for one Cell.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// The Cell.
    pub cell: String,
    /// When the discovery began, on the planner's clock: a rule read before the last write
    /// was applied is stale and ignored.
    pub at: Timestamp,
    /// The target groups whose tags match the Cell's selector, or why they could not be read.
    pub target_groups: Result<Vec<SeenTargetGroup>, String>,
    /// The forward weights of the rule at the Cell's priority (`None`: no such rule), or why
    /// it could not be read.
    pub rule: Result<Option<Vec<WeightedTargetGroup>>, String>,
}

/// What a person asks of a Cell's rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CellCommand {
    /// Goes on past a pause, an inconclusive analysis, or a failed step (which is tried again).
    Resume,
    /// Stops the rollout: the stable version gets 100% and the version is blocked.
    Abort,
    /// Skips the remaining steps: the new version gets 100% now. On a blocked version, it
    /// unblocks it and switches to it at once.
    Promote,
}

impl CellCommand {
    /// Returns the command's name.
    pub fn as_str(self) -> &'static str {
        match self {
            CellCommand::Resume => "resume",
            CellCommand::Abort => "abort",
            CellCommand::Promote => "promote",
        }
    }
}

impl std::str::FromStr for CellCommand {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "resume" => Ok(CellCommand::Resume),
            "abort" => Ok(CellCommand::Abort),
            "promote" => Ok(CellCommand::Promote),
            other => Err(format!(
                "unknown cell command {other:?} (use resume, abort or promote)"
            )),
        }
    }
}

/// What a command names, when its sender wants it to act only on the rollout it saw: the
/// command is refused when another rollout, or another step, is under way.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expect {
    /// The rollout's run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunId>,
    /// The step the rollout is at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
}

/// Where a message sits in the triggers stream: the stream (by when it was created) and the
/// message's sequence in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerPosition {
    /// When the triggers stream was created (nanoseconds).
    pub stream_created: u64,
    /// The message's sequence.
    pub seq: u64,
}

/// A command published on a Cell's trigger subject (`<prefix>.triggers.cells.<cell>`).
///
/// The body is either the command's name alone (`resume`), as okra-style tooling sends it, or
/// JSON naming what it acts on: `{"v": 1, "command": "resume", "run": "<run>", "step": 2}`
/// (`run` and `step` each optional). Either form is applied at most once, however often a
/// crash makes the planner read the stream again; only the named form makes sure the command
/// acts on the rollout and step its sender saw, not on one that came after.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellTrigger {
    /// The schema version, 1.
    pub v: u32,
    /// What to do.
    pub command: CellCommand,
    /// The rollout's run, when named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunId>,
    /// The step the rollout is at, when named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
}

impl CellTrigger {
    /// Reads a trigger's body: JSON when it starts with `{`, else a plain command name.
    pub fn parse(body: &[u8]) -> Result<CellTrigger, String> {
        let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())?;
        if text.trim_start().starts_with('{') {
            let trigger: CellTrigger = serde_json::from_str(text).map_err(|e| {
                format!("{e} (write {{\"v\": 1, \"command\": \"resume\", \"run\": \"<run>\", \"step\": <n>}})")
            })?;
            if trigger.v != 1 {
                return Err(format!("unknown schema version {} (known: 1)", trigger.v));
            }
            return Ok(trigger);
        }
        Ok(CellTrigger {
            v: 1,
            command: text.parse()?,
            run: None,
            step: None,
        })
    }

    /// Returns what the trigger names.
    pub fn expect(&self) -> Expect {
        Expect {
            run: self.run.clone(),
            step: self.step,
        }
    }
}

/// A registered Cell and what Baton knows and does about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CellEntry {
    /// The Cell as applied.
    pub cell: Cell,
    /// What Baton knows.
    pub status: CellStatus,
}

/// Where a Cell is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CellPhase {
    /// No version serves yet: waiting for the first discovery, or for a complete version.
    #[default]
    Pending,
    /// A version has the traffic; no rollout is under way.
    Serving,
    /// A rollout is under way.
    Progressing,
    /// A rollout waits: for a pause to end, or for a person.
    Paused,
    /// The last rollout failed or was aborted: the stable version got the traffic back and the
    /// version is blocked.
    Degraded,
}

impl CellPhase {
    /// Returns the phase's name.
    pub fn as_str(self) -> &'static str {
        match self {
            CellPhase::Pending => "Pending",
            CellPhase::Serving => "Serving",
            CellPhase::Progressing => "Progressing",
            CellPhase::Paused => "Paused",
            CellPhase::Degraded => "Degraded",
        }
    }
}

/// What Baton knows of a Cell, kept in the store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CellStatus {
    /// Where the Cell is.
    pub phase: CellPhase,
    /// The version that has the traffic (before a rollout under way ends).
    pub serving_version: Option<String>,
    /// The rollout under way.
    pub rollout: Option<Rollout>,
    /// The rule's forward weights as AWS last showed them (a read-back or a discovery).
    pub weights: Vec<WeightedTargetGroup>,
    /// The rule as Baton last wrote it, and when the write was confirmed (planner clock).
    pub written: Option<Written>,
    /// Versions that will not be rolled out again unless promoted.
    pub blocked: Vec<Blocked>,
    /// What the Cell waits for, or why something failed.
    pub message: Option<String>,
    /// When target groups were last discovered.
    pub last_sync: Option<Timestamp>,
    /// The target groups last discovered, with their versions.
    pub target_groups: Vec<GroupSeen>,
    /// The rule as the last discovery (or read-back) showed it.
    #[serde(default, deserialize_with = "RuleSeen::read")]
    pub observed_rule: RuleSeen,
    /// How many runs the Cell has started (for run ids).
    pub runs: u32,
    /// The last command taken from the triggers stream: one at or before it is applied
    /// already (a replay after a crash meets it again) and is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_command: Option<TriggerPosition>,
}

/// The Cell's rule as ELBv2 last showed it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "seen", content = "targetGroups")]
pub enum RuleSeen {
    /// Not read yet.
    #[default]
    NotRead,
    /// There is no rule at the Cell's priority.
    Absent,
    /// The rule forwards to these weighted target groups.
    Forwards(Vec<WeightedTargetGroup>),
}

impl RuleSeen {
    /// Reads the stored form, or the form stores kept before there was one (a list of
    /// weights, or `null`, which could not tell "never read" from "no rule": read as not
    /// read, so the next discovery reads it again).
    fn read<'de, D: serde::Deserializer<'de>>(d: D) -> Result<RuleSeen, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Now(RuleSeen),
            Before(Option<Vec<WeightedTargetGroup>>),
        }
        Ok(match Stored::deserialize(d)? {
            Stored::Now(seen) => seen,
            Stored::Before(Some(weights)) => RuleSeen::Forwards(weights),
            Stored::Before(None) => RuleSeen::NotRead,
        })
    }
}

/// A listener rule as Baton last wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Written {
    /// The listener.
    pub listener_arn: String,
    /// The priority.
    pub priority: u32,
    /// The conditions.
    pub conditions: baton_schemas::traffic::Conditions,
    /// When the write was confirmed.
    pub at: Timestamp,
}

/// A blocked version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blocked {
    /// The version.
    pub version: String,
    /// Why.
    pub cause: String,
    /// When.
    pub at: Timestamp,
}

/// A discovered target group and its version (`None`: no readable version tag).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupSeen {
    /// Its ARN.
    pub arn: String,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: Option<String>,
}

/// A target group of a rollout, by name order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
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
    pub canary: Vec<Group>,
    /// The serving version's target groups, by name.
    pub stable: Vec<Group>,
    /// What the run's current node does.
    pub stage: Stage,
    /// A request that waits for the traffic node in flight to end.
    pub pending: Option<Request>,
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
    fn node(self) -> usize {
        match self {
            Stage::Step { node, .. }
            | Stage::Waiting { node, .. }
            | Stage::Finishing { node }
            | Stage::RollingBack { node } => node as usize,
        }
    }

    fn step(self) -> Option<u32> {
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
enum Plan {
    /// Nothing to do; the message says what the Cell waits for, if anything.
    Nothing(Option<String>),
    /// The target gets 100% at once.
    Switch { to: Version, why: String },
    /// The target is rolled out step by step from `from`.
    Canary { to: Version, from: Version },
}

/// How long a traffic node may take, retries apart.
const TRAFFIC_TIMEOUT: Duration = Duration::from_secs(120);

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
            .map(|c| (c.cell.metadata.name.clone(), c))
            .collect();
        self.templates = templates
            .into_iter()
            .map(|t| (t.metadata.name.clone(), t))
            .collect();
    }

    pub(super) fn register_template(&mut self, template: AnalysisTemplate) {
        let name = template.metadata.name.clone();
        if self.templates.get(&name) != Some(&template) {
            self.templates.insert(name.clone(), template);
            self.changed_templates.insert(name);
        }
    }

    pub(super) fn remove_template(&mut self, name: &str) {
        if self.templates.remove(name).is_some() {
            self.changed_templates.insert(name.to_owned());
        }
    }

    pub(super) fn register_cell(&mut self, cell: Cell, now: Timestamp, actions: &mut Vec<Action>) {
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
    fn traffic_in_flight(&self, rollout: &Rollout) -> bool {
        let (r, i) = (&self.runs[&rollout.run], rollout.stage.node());
        r.spec.nodes[i].kind == NodeKind::Traffic && !r.nodes[i].state.is_terminal()
    }

    /// Forgets a Cell. Its rollout is cancelled; with `deletionPolicy: Delete` a traffic node
    /// removes its listener rule. A traffic write in flight is never raced: the delete waits
    /// for it to end (it joins the rollout's run, after the write), as abort and promote do.
    pub(super) fn remove_cell(&mut self, name: &str, now: Timestamp, actions: &mut Vec<Action>) {
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
                self.advance(&run, now, actions);
            }
            (_, _) => {
                if let Some(rollout) = rollout {
                    self.cancel_run(&rollout.run, now, actions);
                }
                if delete {
                    let (run, number) = free_run_id(&self.runs, name, entry.status.runs + 1);
                    let mut r = new_run(run.clone(), name, now);
                    push_traffic(&mut r, "delete-rule", spec, number);
                    self.runs.insert(run.clone(), r);
                    self.advance(&run, now, actions);
                }
            }
        }
    }

    /// Applies what a discovery saw, then decides.
    pub(super) fn observe(&mut self, obs: Observation, now: Timestamp, actions: &mut Vec<Action>) {
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
        let fresh = status.written.as_ref().is_none_or(|w| obs.at >= w.at);
        if let (Ok(rule), true) = (obs.rule, fresh) {
            if status.rollout.is_none() {
                status.weights = rule.clone().unwrap_or_default();
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
    pub(super) fn cell_command(
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
                self.start_rollout(
                    name,
                    RolloutKind::Switch,
                    &blocked,
                    groups,
                    Vec::new(),
                    now,
                    actions,
                );
                return;
            }
            let phase = entry.status.phase.as_str();
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
        self.advance(&run, now, actions);
    }

    /// Looks at a Cell run after one of its nodes changed: ends an expired pause, and moves
    /// the rollout on when its current node has ended. Called by `advance`.
    pub(super) fn follow_cell(&mut self, run: &RunId, now: Timestamp, actions: &mut Vec<Action>) {
        let Some(r) = self.runs.get(run) else {
            return;
        };
        if r.kind != RunKind::Cell {
            return;
        }
        let name = r.workflow.to_string();
        let Some(rollout) = self
            .cells
            .get(&name)
            .and_then(|e| e.status.rollout.clone())
            .filter(|ro| &ro.run == run)
        else {
            return;
        };
        let i = rollout.stage.node();
        let node = &r.nodes[i];
        let kind = r.spec.nodes[i].kind;
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
        let output = self.runs[run].nodes[i].output.clone().unwrap_or_default();
        let error = self.runs[run].nodes[i].error.clone().unwrap_or_default();
        if kind == NodeKind::Traffic && succeeded {
            self.record_write(&name, run, i, now);
        }
        self.changed_cells.insert(name.clone());
        if let Some(request) = rollout.pending {
            if let Some(ro) = self.rollout_mut(&name) {
                ro.pending = None;
            }
            match request {
                Request::Abort => {
                    self.block(&name, &rollout.to, "aborted by a person".to_owned(), now);
                    self.go(&name, Next::Rollback, now);
                }
                Request::Promote => self.go(&name, Next::Finish, now),
                Request::Supersede => {
                    self.end_rollout(&name, None);
                    self.reconcile_cell(&name, now, actions);
                }
            }
            return;
        }
        match (rollout.stage, succeeded) {
            (Stage::Step { step, .. }, true) => self.go(&name, Next::Step { step: step + 1 }, now),
            (Stage::Step { step, .. }, false) if kind == NodeKind::Analysis => {
                let phase = serde_json::from_str::<serde_json::Value>(&output)
                    .ok()
                    .and_then(|v| v["phase"].as_str().map(str::to_owned));
                if phase.as_deref() == Some("Inconclusive") {
                    let why = format!("step {step}: {error}; resume to go on, abort to roll back");
                    self.wait(&name, step, Next::Step { step: step + 1 }, why, now);
                } else {
                    let cause = format!("step {step}: {error}");
                    self.block(&name, &rollout.to, cause, now);
                    self.go(&name, Next::Rollback, now);
                }
            }
            (Stage::Step { step, .. }, false) => {
                let why =
                    format!("step {step} failed: {error}; resume tries it again, abort rolls back");
                self.wait(&name, step, Next::Step { step }, why, now);
            }
            (Stage::Finishing { .. }, true) => {
                self.end_rollout(&name, Some(rollout.to.clone()));
            }
            (Stage::Finishing { .. }, false) => {
                let step = self.steps_len(&name);
                let why = format!(
                    "the final switch to {} failed: {error}; resume tries it again",
                    rollout.to
                );
                self.wait(&name, step, Next::Finish, why, now);
            }
            (Stage::RollingBack { .. }, true) => self.end_rollout(&name, None),
            (Stage::RollingBack { .. }, false) => {
                let why = format!("the rollback failed: {error}; resume tries it again");
                self.wait(&name, 0, Next::Rollback, why, now);
            }
            (Stage::Waiting { .. }, _) => {}
        }
    }

    /// Decides what a Cell without a rollout needs, or whether a rollout under way must give
    /// way, and acts.
    fn reconcile_cell(&mut self, name: &str, now: Timestamp, actions: &mut Vec<Action>) {
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
            Plan::Nothing(message) => {
                let entry = self.cells.get_mut(name).expect("checked");
                if entry.status.message != message {
                    entry.status.message = message;
                    self.changed_cells.insert(name.to_owned());
                }
            }
            Plan::Switch { to, why } => {
                let groups = by.get(&to).cloned().unwrap_or_default();
                let entry = self.cells.get_mut(name).expect("checked");
                entry.status.message = Some(why);
                self.start_rollout(
                    name,
                    RolloutKind::Switch,
                    &to,
                    groups,
                    Vec::new(),
                    now,
                    actions,
                );
            }
            Plan::Canary { to, from } => {
                let canary = by.get(&to).cloned().unwrap_or_default();
                let stable = by.get(&from).cloned().unwrap_or_default();
                let entry = self.cells.get_mut(name).expect("checked");
                entry.status.message = None;
                self.start_rollout(name, RolloutKind::Canary, &to, canary, stable, now, actions);
            }
        }
    }

    /// Ends a rollout that a newer version or a changed set of groups replaces: at once, or
    /// when its traffic node in flight ends.
    fn supersede(
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
        self.advance(&run, now, actions);
        self.reconcile_cell(name, now, actions);
    }

    /// Starts a rollout run to `to`.
    #[allow(clippy::too_many_arguments)] // the parts of one rollout, named at the call
    fn start_rollout(
        &mut self,
        name: &str,
        kind: RolloutKind,
        to: &Version,
        canary: Vec<Group>,
        stable: Vec<Group>,
        now: Timestamp,
        actions: &mut Vec<Action>,
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
        });
        self.changed_cells.insert(name.to_owned());
        self.runs
            .insert(run.clone(), new_run(run.clone(), name, now));
        match kind {
            RolloutKind::Switch => self.go(name, Next::Finish, now),
            RolloutKind::Canary => self.go(name, Next::Step { step: 0 }, now),
        }
        self.advance(&run, now, actions);
    }

    /// Moves a rollout to `next`: pushes the node that does it and records the stage. Zero
    /// pauses are passed over.
    fn go(&mut self, name: &str, next: Next, now: Timestamp) {
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
                Some(StepKind::Analysis(spec)) => {
                    let fields = BTreeMap::from([
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
                    ]);
                    let templates = &self.templates;
                    let resolved = analysis::resolve(
                        spec,
                        |n| templates.get(n).map(|t| t.spec.clone()),
                        &fields,
                    );
                    match resolved {
                        Ok(metrics) => {
                            let r = self.runs.get_mut(&run).expect("rollout runs exist");
                            let node = push_analysis(
                                r,
                                &format!("s{step}-analysis"),
                                (*spec).clone(),
                                metrics,
                            );
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

    /// Holds the rollout at `step` until a person resumes it (then `then`) or aborts it.
    fn wait(&mut self, name: &str, step: u32, then: Next, why: String, now: Timestamp) {
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
    fn end_node(
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
    fn end_rollout(&mut self, name: &str, serving: Option<String>) {
        let entry = self.cells.get_mut(name).expect("callers checked");
        let status = &mut entry.status;
        let rolled_back = status
            .rollout
            .as_ref()
            .is_some_and(|r| status.blocked.iter().any(|b| b.version == r.to));
        status.rollout = None;
        match serving {
            Some(v) => {
                status.serving_version = Some(v);
                status.phase = CellPhase::Serving;
                status.message = None;
            }
            None if rolled_back => status.phase = CellPhase::Degraded,
            None if status.serving_version.is_some() => status.phase = CellPhase::Serving,
            None => status.phase = CellPhase::Pending,
        }
        self.changed_cells.insert(name.to_owned());
    }

    fn set_stage(&mut self, name: &str, stage: Stage) {
        let waiting = matches!(stage, Stage::Waiting { .. });
        let entry = self.cells.get_mut(name).expect("callers checked");
        let pause = match (&entry.status.rollout, stage) {
            (Some(r), Stage::Step { node, .. }) => self.runs.get(&r.run).is_some_and(|run| {
                matches!(run.nodes[node as usize].state, NodeState::Held { .. })
            }),
            _ => false,
        };
        if let Some(r) = &mut entry.status.rollout {
            r.stage = stage;
        }
        entry.status.phase = if waiting || pause {
            CellPhase::Paused
        } else {
            CellPhase::Progressing
        };
        if !waiting {
            entry.status.message = None;
        }
        self.changed_cells.insert(name.to_owned());
    }

    fn set_message(&mut self, name: &str, message: String) {
        if let Some(entry) = self.cells.get_mut(name) {
            entry.status.message = Some(message);
            self.changed_cells.insert(name.to_owned());
        }
    }

    fn rollout_mut(&mut self, name: &str) -> Option<&mut Rollout> {
        self.cells.get_mut(name)?.status.rollout.as_mut()
    }

    fn steps_len(&self, name: &str) -> u32 {
        self.cells
            .get(name)
            .map(|e| e.cell.steps().len() as u32)
            .unwrap_or(0)
    }

    fn block(&mut self, name: &str, version: &str, cause: String, now: Timestamp) {
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
    fn record_write(&mut self, name: &str, run: &RunId, i: usize, now: Timestamp) {
        let r = &self.runs[run];
        let output = r.nodes[i].output.as_deref().unwrap_or_default();
        let shown: Option<Vec<WeightedTargetGroup>> =
            serde_json::from_str::<serde_json::Value>(output)
                .ok()
                .and_then(|v| serde_json::from_value(v["targetGroups"].clone()).ok());
        let Some(spec) = r.spec.nodes[i].traffic.as_deref().cloned() else {
            return;
        };
        let entry = self.cells.get_mut(name).expect("callers checked");
        if let Some(weights) = shown {
            entry.status.weights = weights.clone();
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

    fn newest_blocked(&self, name: &str) -> Option<Version> {
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

    fn groups_of(&self, name: &str, version: &Version) -> Vec<Group> {
        self.cells
            .get(name)
            .and_then(|e| versions(e).remove(version))
            .unwrap_or_default()
    }
}

/// Returns the run id of a Cell's `n`th run: `<name>-<n>`, the name cut to fit 40 characters.
/// Returns the first run id `<name>-<k>`, `k >= n`, that no run has yet, and its `k`.
fn free_run_id(runs: &BTreeMap<RunId, Run>, name: &str, n: u32) -> (RunId, u32) {
    (n..)
        .map(|k| (crate::ids::named_run_id(name, &k.to_string()), k))
        .find(|(id, _)| !runs.contains_key(id))
        .expect("some number is free")
}

fn new_run(id: RunId, name: &str, now: Timestamp) -> Run {
    Run::new(
        id,
        WorkflowName::new(name),
        WorkflowSpec {
            // Every node is pushed after the one before it has ended; a failed node must not
            // keep the rollback from running.
            failure_policy: FailurePolicy::Continue,
            nodes: Vec::new(),
        },
        RunKind::Cell,
        format!("cell/{name}"),
        String::new(),
        now,
    )
}

fn push(r: &mut Run, spec: NodeSpec, state: NodeState, now: Timestamp) -> u32 {
    let mut node = Node::new(spec.name.clone());
    node.started_by = Some(StartedBy {
        initiator: r.initiator.clone(),
        data: String::new(),
    });
    if matches!(state, NodeState::Held { .. }) {
        node.started_at = Some(now);
    }
    node.state = state;
    r.push_node(spec, node) as u32
}

/// Returns what ALB would refuse in a rule the core is about to write (most often: more
/// target groups than one forward action holds), so that no job is sent that must fail.
fn refused(spec: &TrafficSpec) -> Option<String> {
    let problems = spec.problems("rule");
    (!problems.is_empty()).then(|| {
        problems
            .iter()
            .map(|p| p.message.clone())
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Pushes a traffic node writing `traffic`, fenced with the generation of its place: the
/// Cell's run number `number` and the node's index (see [`Generation`]).
fn push_traffic(r: &mut Run, label: &str, traffic: TrafficSpec, number: u32) -> u32 {
    let spec = traffic_node(r, label, traffic, number);
    push(r, spec, NodeState::Pending, Timestamp(0))
}

/// Pushes a traffic node like [`push_traffic`] that starts only once node `after` has ended,
/// however it ended.
fn push_traffic_after(r: &mut Run, label: &str, traffic: TrafficSpec, number: u32, after: usize) {
    let mut spec = traffic_node(r, label, traffic, number);
    spec.needs = vec![r.nodes[after].name.clone()];
    spec.when = When::Always;
    let node = Node::new(spec.name.clone());
    r.push_node(spec, node);
}

fn traffic_node(r: &Run, label: &str, mut traffic: TrafficSpec, number: u32) -> NodeSpec {
    traffic.generation = Some(Generation::of(number, r.nodes.len() as u32));
    let mut spec = NodeSpec::new(unique_name(r, label), NodeKind::Traffic);
    spec.traffic = Some(Box::new(traffic));
    spec.timeout = Some(baton_schemas::Duration(TRAFFIC_TIMEOUT));
    spec.retries = Some(Retries {
        limit: 3,
        backoff: Backoff {
            initial: baton_schemas::Duration::from_secs(2),
            max: baton_schemas::Duration::from_secs(30),
        },
    });
    spec
}

fn push_analysis(
    r: &mut Run,
    label: &str,
    step: baton_schemas::analysis::AnalysisSpec,
    metrics: Vec<baton_schemas::analysis::Metric>,
) -> u32 {
    // Measurements run side by side; each may wait its query timeout (30s by default).
    let longest = metrics
        .iter()
        .map(|m| {
            m.duration()
                .saturating_add(Duration::from_secs(30).saturating_mul(m.count()))
        })
        .max()
        .unwrap_or_default();
    let mut spec = NodeSpec::new(unique_name(r, label), NodeKind::Analysis);
    spec.analysis = Some(Box::new(baton_schemas::analysis::AnalysisSpec {
        metrics,
        ..step
    }));
    spec.timeout = Some(baton_schemas::Duration(
        longest.saturating_add(Duration::from_secs(60)),
    ));
    push(r, spec, NodeState::Pending, Timestamp(0))
}

fn push_held(r: &mut Run, label: &str, until: Option<Timestamp>, now: Timestamp) -> u32 {
    let spec = NodeSpec::new(unique_name(r, label), NodeKind::Noop);
    push(r, spec, NodeState::Held { until }, now)
}

/// Returns the forward action's groups: `canary_weight` split over the canary groups, the
/// rest over the stable ones, each side in name order; groups at 0 are left out.
pub fn weights(canary: &[Group], stable: &[Group], canary_weight: u32) -> Vec<WeightedTargetGroup> {
    let side = |groups: &[Group], total: u32| {
        groups
            .iter()
            .zip(split_evenly(total, groups.len()))
            .map(|(g, weight)| WeightedTargetGroup {
                arn: g.arn.clone(),
                weight,
            })
            .collect::<Vec<_>>()
    };
    let mut out = side(canary, canary_weight);
    out.extend(side(stable, 100 - canary_weight.min(100)));
    out.retain(|g| g.weight > 0);
    out
}

/// Returns the discovered groups by version, each list in name order.
fn versions(entry: &CellEntry) -> BTreeMap<Version, Vec<Group>> {
    let mut by: BTreeMap<Version, Vec<Group>> = BTreeMap::new();
    for g in &entry.status.target_groups {
        if let Some(v) = g.version.as_deref().and_then(|v| Version::parse(v).ok()) {
            by.entry(v).or_default().push(Group {
                arn: g.arn.clone(),
                name: g.name.clone(),
            });
        }
    }
    by
}

/// Returns the version that owns most of the rule's weight, for a Cell Baton never wrote.
fn serving_from_rule(status: &CellStatus) -> Option<String> {
    let RuleSeen::Forwards(rule) = &status.observed_rule else {
        return None;
    };
    let mut by_version: BTreeMap<String, u32> = BTreeMap::new();
    for w in rule {
        if let Some(v) = status
            .target_groups
            .iter()
            .find(|g| g.arn == w.arn)
            .and_then(|g| g.version.clone())
        {
            *by_version.entry(v).or_default() += w.weight;
        }
    }
    by_version
        .into_iter()
        .filter(|(_, w)| *w > 0)
        .max_by_key(|(_, w)| *w)
        .map(|(v, _)| v)
}

/// Returns why a rollout under way must give way, if it must: the target changed, or its
/// groups did, or the stable groups are gone.
fn supersede(
    entry: &CellEntry,
    rollout: &Rollout,
    by: &BTreeMap<Version, Vec<Group>>,
) -> Option<String> {
    if !matches!(rollout.stage, Stage::Step { .. } | Stage::Waiting { .. }) {
        return None;
    }
    let target = match target(entry, by) {
        Ok(v) => v,
        Err(_) => return None,
    };
    if target.to_string() != rollout.to {
        return Some(format!(
            "version {target} replaces the rollout of {}",
            rollout.to
        ));
    }
    if by.get(&target) != Some(&rollout.canary) {
        return Some(format!(
            "the target groups of {target} changed; the rollout starts over"
        ));
    }
    let stable_left = rollout
        .stable
        .iter()
        .any(|s| entry.status.target_groups.iter().any(|g| g.arn == s.arn));
    if rollout.kind == RolloutKind::Canary && !stable_left {
        return Some(format!(
            "the target groups of {} are gone; traffic moves to {target} at once",
            rollout.from.as_deref().unwrap_or("the stable version")
        ));
    }
    None
}

/// Returns the version that should have the traffic, or why there is none.
fn target(entry: &CellEntry, by: &BTreeMap<Version, Vec<Group>>) -> Result<Version, String> {
    let cell = &entry.cell;
    if let Some(pin) = cell
        .spec
        .version
        .as_deref()
        .and_then(|v| Version::parse(v).ok())
    {
        return match by.contains_key(&pin) {
            true => Ok(pin),
            false => Err(format!("the pinned version {pin} has no target groups")),
        };
    }
    let blocked = |v: &Version| {
        entry
            .status
            .blocked
            .iter()
            .any(|b| b.version == v.to_string())
    };
    let complete = |v: &Version| by.get(v).is_some_and(|g| g.len() >= cell.replicas());
    let serving = entry
        .status
        .serving_version
        .as_deref()
        .and_then(|v| Version::parse(v).ok())
        .filter(|v| by.contains_key(v));
    let fresh: Vec<&Version> = by.keys().rev().filter(|v| !blocked(v)).collect();
    if let Some(v) = fresh.first()
        && complete(v)
    {
        return Ok((*v).clone());
    }
    if let Some(v) = serving {
        return Ok(v);
    }
    // The serving groups are gone (or nothing served yet): what remains gets the traffic.
    fresh
        .iter()
        .find(|v| complete(v))
        .or(fresh.first())
        .map(|v| (*v).clone())
        .or_else(|| by.keys().next_back().cloned())
        .ok_or_else(|| "no discovered target group has a version tag".to_owned())
}

/// Decides what a Cell without a rollout under way needs.
fn plan(entry: &CellEntry, by: &BTreeMap<Version, Vec<Group>>) -> Plan {
    let cell = &entry.cell;
    let status = &entry.status;
    let to = match target(entry, by) {
        Ok(v) => v,
        Err(why) => {
            let labels = cell.version_labels().join(", ");
            let message = match status.target_groups.len() {
                0 => "no target group matches the selector".to_owned(),
                n => format!(
                    "{why} ({n} target group(s) match; versions are read from the tags {labels})"
                ),
            };
            return Plan::Nothing(Some(message));
        }
    };
    // What the Cell waits for, if its newest version is not the target.
    let waiting = by
        .keys()
        .next_back()
        .filter(|newest| **newest > to)
        .map(|newest| {
            match status
                .blocked
                .iter()
                .find(|b| b.version == newest.to_string())
            {
                Some(b) => format!(
                    "version {newest} is blocked ({}); promote rolls it out",
                    b.cause
                ),
                None => format!(
                    "version {newest} has {} of {} target groups; waiting for the rest",
                    by[newest].len(),
                    cell.replicas()
                ),
            }
        });
    let serving = status
        .serving_version
        .as_deref()
        .and_then(|v| Version::parse(v).ok());
    let groups = &by[&to];
    if serving.as_ref() == Some(&to) {
        let desired = weights(groups, &[], 100);
        let rule_ok = match &status.observed_rule {
            RuleSeen::Forwards(rule) => same_weights(rule, &desired),
            RuleSeen::Absent => false,
            RuleSeen::NotRead => true,
        };
        let spec_ok = status.written.as_ref().is_none_or(|w| {
            w.listener_arn == cell.alb().listener_arn
                && w.priority == cell.priority()
                && w.conditions == cell.conditions()
        });
        if rule_ok && spec_ok {
            return Plan::Nothing(waiting);
        }
        let why = if spec_ok {
            format!("the rule does not forward to {to} as Baton set it; writing it again")
        } else {
            "the Cell's rule changed; writing it".to_owned()
        };
        return Plan::Switch { to, why };
    }
    let Some(from) = serving else {
        return Plan::Switch {
            to: to.clone(),
            why: format!("first version {to}: switched at once"),
        };
    };
    if cell.spec.version.is_some() {
        return Plan::Switch {
            to: to.clone(),
            why: format!("pinned to {to}: switched at once"),
        };
    }
    if to < from {
        return Plan::Switch {
            to: to.clone(),
            why: format!("{to} is older than {from}: rolled back at once"),
        };
    }
    if !by.contains_key(&from) {
        return Plan::Switch {
            to: to.clone(),
            why: format!("the target groups of {from} are gone: traffic moved to {to} at once"),
        };
    }
    if cell.steps().is_empty() {
        return Plan::Switch {
            to: to.clone(),
            why: format!("no steps: switched to {to} at once"),
        };
    }
    Plan::Canary { to, from }
}

fn same_weights(a: &[WeightedTargetGroup], b: &[WeightedTargetGroup]) -> bool {
    let map = |w: &[WeightedTargetGroup]| -> BTreeMap<String, u32> {
        w.iter()
            .filter(|g| g.weight > 0)
            .map(|g| (g.arn.clone(), g.weight))
            .collect()
    };
    map(a) == map(b)
}

/// Returns why a command naming `expect` does not fit the rollout under way, if it does not.
fn mismatch(name: &str, rollout: Option<&Rollout>, expect: &Expect) -> Option<String> {
    if let Some(run) = &expect.run {
        match rollout {
            None => {
                return Some(format!(
                    "cell {name:?} has no rollout under way; the command names run {run}"
                ));
            }
            Some(r) if &r.run != run => {
                return Some(format!(
                    "cell {name:?} rolls out in run {}, not in run {run} the command names",
                    r.run
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(step) = expect.step {
        let at = rollout.and_then(|r| r.stage.step());
        if at != Some(step) {
            let now = match at {
                Some(at) => format!("at step {at}"),
                None => "at no step".to_owned(),
            };
            return Some(format!(
                "cell {name:?} is {now}, not at step {step} the command names"
            ));
        }
    }
    None
}

impl CellEntry {
    /// Returns the status users see (the API, `baton cells`, a cluster object's status).
    pub fn view(&self) -> serde_json::Value {
        let s = &self.status;
        let group = |arn: &str| s.target_groups.iter().find(|g| g.arn == arn);
        let weights: Vec<serde_json::Value> = s
            .weights
            .iter()
            .map(|w| {
                let g = group(&w.arn);
                serde_json::json!({
                    "arn": w.arn,
                    "name": g.map(|g| g.name.clone()),
                    "version": g.and_then(|g| g.version.clone()),
                    "weight": w.weight,
                })
            })
            .collect();
        let rollout = s.rollout.as_ref();
        serde_json::json!({
            "name": self.cell.metadata.name,
            "phase": s.phase.as_str(),
            "servingVersion": s.serving_version,
            "desiredVersion": rollout.map(|r| r.to.clone()).or_else(|| s.serving_version.clone()),
            "step": rollout.and_then(|r| r.stage.step()),
            "run": rollout.map(|r| r.run.to_string()),
            "weights": weights,
            "blocked": s.blocked.iter().map(|b| serde_json::json!({"version": b.version, "cause": b.cause, "at": b.at.to_string()})).collect::<Vec<_>>(),
            "message": s.message,
            "lastSyncTime": s.last_sync.map(|t| t.to_string()),
        })
    }
}
