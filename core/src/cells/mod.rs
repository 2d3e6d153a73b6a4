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
//! nodes (a step's weights, the final 100%, a rollback), `analysis` nodes (an experiment step
//! is one too, carrying its ReplicaSets), and pauses, which
//! are planner timers (a [`NodeState::Held`] node, woken by the timer index), not worker jobs.
//! An analysis that fails rolls back to the stable version and blocks the version; an
//! inconclusive one, a pause without duration, or a traffic step that failed for good waits
//! for a person (`resume`, `abort`, `promote`). A newer version arriving mid-rollout replaces
//! the rollout; a changed spec applies from the next step on.

mod experiment;
mod lifecycle;
mod plan;
mod rollout;
mod step;
mod view;

pub use baton_schemas::api::CellCommand;

pub use plan::weights;
use plan::*;
use rollout::{Decision, TRAFFIC_TIMEOUT};
pub use rollout::{Next, Request, Rollout, RolloutKind, Stage, TargetGroup};
pub(crate) use step::CellEvent;

use std::collections::BTreeMap;

use baton_schemas::RunId;
use baton_schemas::cell::Cell;
use baton_schemas::traffic::WeightedTargetGroup;
use baton_schemas::wire::Timestamp;
use serde::{Deserialize, Serialize};

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

/// Where a Cell's target groups come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetGroupSource {
    /// ELBv2, by the target groups' tags.
    #[default]
    Tags,
    /// okra's `AWSTargetGroup` objects in the Cell's namespace, by their labels: used when
    /// there are any.
    #[serde(rename = "AWSTargetGroup")]
    AwsTargetGroup,
}

impl TargetGroupSource {
    /// As the Cell's status shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetGroupSource::Tags => "Tags",
            TargetGroupSource::AwsTargetGroup => "AWSTargetGroup",
        }
    }
}

/// What one discovery saw for one Cell.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// The Cell.
    pub cell: String,
    /// When the discovery began, on the planner's clock: a rule read before the last write
    /// was applied is stale and ignored.
    pub at: Timestamp,
    /// The target groups whose tags (or labels) match the Cell's selector, or why they could
    /// not be read.
    pub target_groups: Result<Vec<SeenTargetGroup>, String>,
    /// Where they came from.
    pub source: TargetGroupSource,
    /// The forward weights of the rule at the Cell's priority (`None`: no such rule), or why
    /// it could not be read.
    pub rule: Result<Option<Vec<WeightedTargetGroup>>, String>,
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
    /// No rollout is under way: a person who saw none (a promote of a blocked version) acts
    /// on none that started since.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idle: bool,
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
            idle: false,
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

/// What Baton knows of a Cell, kept in the store. Its phase is derived from it (see
/// [`Core::cell_phase`]), not kept beside it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CellStatus {
    /// The version that has the traffic (before a rollout under way ends).
    pub serving_version: Option<String>,
    /// The rollout under way.
    pub rollout: Option<Rollout>,
    /// Whether the last rollout ended by giving the stable version its traffic back (its
    /// version blocked): the Cell is degraded until a rollout ends otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rolled_back: bool,
    /// The phase stores kept before it was derived, read once on restore (only `Degraded`
    /// says what the rest cannot).
    #[serde(default, rename = "phase", skip_serializing)]
    stored_phase: Option<CellPhase>,
    /// The rule's forward weights as AWS last showed them (a read-back or a discovery).
    /// Changed only through [`CellStatus::set_weights`], which keeps their history.
    pub weights: Vec<WeightedTargetGroup>,
    /// Every change of `weights`, oldest first, the last [`WEIGHT_HISTORY`] of them: kept in
    /// the store, so a chart of the rollout survives a page reload and a planner restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weight_history: Vec<WeightChange>,
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
    /// Where they came from.
    #[serde(default)]
    pub target_group_source: TargetGroupSource,
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

/// How many weight changes a Cell keeps. A rollout is a handful of changes, so this spans
/// many rollouts, while the entry the store writes on each of the Cell's changes stays small
/// (about 25 KB for two target groups at the bound).
pub const WEIGHT_HISTORY: usize = 100;

/// The rule's forward weights from a moment on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WeightChange {
    /// When Baton saw them (planner clock).
    pub at: Timestamp,
    /// The weights.
    pub weights: Vec<WeightedTargetGroup>,
}

impl CellStatus {
    /// Records the rule's forward weights as AWS showed them at `at`, adding a change to the
    /// history when they differ from the last one.
    pub(crate) fn set_weights(&mut self, weights: Vec<WeightedTargetGroup>, at: Timestamp) {
        let last = self.weight_history.last().map(|c| &c.weights);
        // The first reading is history too, even of an empty rule: the chart starts there.
        if last != Some(&weights) {
            if self.weight_history.len() >= WEIGHT_HISTORY {
                let excess = self.weight_history.len() + 1 - WEIGHT_HISTORY;
                self.weight_history.drain(..excess);
            }
            self.weight_history.push(WeightChange {
                at,
                weights: weights.clone(),
            });
        }
        self.weights = weights;
    }
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

#[cfg(test)]
mod replay_tests;
#[cfg(test)]
mod tests;
