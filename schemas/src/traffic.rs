//! The `traffic` node: one ALB listener rule, found by its priority, whose `forward` action
//! sends traffic to weighted target groups. A Workflow node writes it out; a Cell's rollout
//! computes it at each step with [`split_evenly`].
//!
//! The limits are ALB's, checked here because an emulator does not check them: at most
//! [`MAX_TARGET_GROUPS`] target groups in one forward action, weights from 0 to
//! [`MAX_WEIGHT`], priorities from 1 to [`MAX_PRIORITY`], and at least one condition (only the
//! listener's default rule goes without, and Baton never touches that one).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::document::SpecError;

/// The most target groups one ALB forward action may hold.
pub const MAX_TARGET_GROUPS: usize = 5;
/// The largest weight ALB accepts for a target group.
pub const MAX_WEIGHT: u32 = 999;
/// The largest rule priority ALB accepts.
pub const MAX_PRIORITY: u32 = 50_000;

/// What a `traffic` node does to its listener rule.
///
/// Written as YAML/JSON with `targetGroups` (forward to them) or `delete: true` (remove the
/// rule), never both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawTrafficSpec", into = "RawTrafficSpec")]
pub struct TrafficSpec {
    /// The listener's ARN.
    pub listener_arn: String,
    /// The rule's priority, which is also its identity: a redelivered job finds the rule the
    /// first delivery wrote by it.
    pub priority: u32,
    /// What requests the rule matches, written in a fixed order so that an unchanged rule
    /// compares equal to what AWS holds.
    pub conditions: Conditions,
    /// What the node makes of the rule.
    pub action: RuleAction,
    /// The write's place among the writes to this rule; a write finding the rule tagged with
    /// a newer generation is superseded and writes nothing. `None` (a Workflow's own traffic
    /// node) writes without fencing.
    pub generation: Option<Generation>,
}

/// What a `traffic` node makes of its rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleAction {
    /// Forward to these weighted target groups (the rule is created when missing).
    Forward(Vec<WeightedTargetGroup>),
    /// Remove the rule (nothing happens when there is none).
    Delete,
}

impl RuleAction {
    /// Returns the forward action's target groups; none for a delete.
    pub fn target_groups(&self) -> &[WeightedTargetGroup] {
        match self {
            RuleAction::Forward(groups) => groups,
            RuleAction::Delete => &[],
        }
    }
}

/// A rising number that orders the writes to one listener rule. Baton tags the rule with the
/// generation of the last write (tag [`GENERATION_TAG`]), and a write of an older generation
/// (a job delivered late, or again, after the rollout moved on) is refused.
///
/// A Cell's writes use its run's number in the high half and the node's index in the low half:
/// later nodes of a run, and every node of a later run, are newer. A Cell deleted and applied
/// again keeps counting, because its new runs never reuse an old run's number.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct Generation(pub u64);

impl Generation {
    /// Returns the generation of node `node` of a Cell's run number `run`.
    pub fn of(run: u32, node: u32) -> Generation {
        Generation((u64::from(run) << 32) | u64::from(node))
    }
}

impl std::fmt::Display for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for Generation {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(Generation)
    }
}

/// The tag key that holds the generation of the last write to a rule.
pub const GENERATION_TAG: &str = "baton.dev/generation";

/// A [`TrafficSpec`] as written in YAML and JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTrafficSpec {
    /// The listener's ARN.
    listener_arn: String,
    /// The rule's priority, which is also its identity.
    priority: u32,
    /// What requests the rule matches.
    #[serde(default)]
    conditions: Conditions,
    /// The weighted target groups of the forward action.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    target_groups: Vec<WeightedTargetGroup>,
    /// Removes the rule at `priority` instead (nothing happens when there is none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    delete: bool,
    /// Set by the planner for a Cell's writes; see [`Generation`]. Not a user's field, so
    /// not in the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    generation: Option<Generation>,
}

impl TryFrom<RawTrafficSpec> for TrafficSpec {
    type Error = String;

    fn try_from(raw: RawTrafficSpec) -> Result<Self, Self::Error> {
        let action = match (raw.delete, raw.target_groups) {
            (false, groups) => RuleAction::Forward(groups),
            (true, groups) if groups.is_empty() => RuleAction::Delete,
            (true, _) => {
                return Err(
                    "a rule being deleted forwards nowhere: leave targetGroups out, or drop delete"
                        .to_owned(),
                );
            }
        };
        Ok(TrafficSpec {
            listener_arn: raw.listener_arn,
            priority: raw.priority,
            conditions: raw.conditions,
            action,
            generation: raw.generation,
        })
    }
}

impl From<TrafficSpec> for RawTrafficSpec {
    fn from(spec: TrafficSpec) -> Self {
        let (target_groups, delete) = match spec.action {
            RuleAction::Forward(groups) => (groups, false),
            RuleAction::Delete => (Vec::new(), true),
        };
        RawTrafficSpec {
            listener_arn: spec.listener_arn,
            priority: spec.priority,
            conditions: spec.conditions,
            target_groups,
            delete,
            generation: spec.generation,
        }
    }
}

impl schemars::JsonSchema for TrafficSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TrafficSpec".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        RawTrafficSpec::json_schema(generator)
    }
}

/// The conditions of a listener rule. Maps are ordered, so a rule is always written the same
/// way.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conditions {
    /// `host-header` values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// `path-pattern` values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path_patterns: Vec<String>,
    /// `http-request-method` values, upper-cased when written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// `source-ip` CIDR blocks.
    #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "sourceIPs")]
    pub source_ips: Vec<String>,
    /// One `http-header` condition per header name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Vec<String>>,
    /// One `query-string` condition with every key/value pair.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query_strings: BTreeMap<String, String>,
}

impl Conditions {
    /// Returns whether no condition is set.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
            && self.path_patterns.is_empty()
            && self.methods.is_empty()
            && self.source_ips.is_empty()
            && self.headers.is_empty()
            && self.query_strings.is_empty()
    }
}

/// A target group of a forward action and its weight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedTargetGroup {
    /// The target group's ARN.
    pub arn: String,
    /// Its share: weights are relative, ALB sends each group `weight / sum` of the traffic.
    pub weight: u32,
}

/// Splits `total` among `n` target groups by integer division, the remainder going to the
/// last: `split_evenly(100, 3) == [33, 33, 34]`, `split_evenly(20, 3) == [6, 6, 8]`. Callers
/// order the groups by name first, so the same groups always get the same weights.
pub fn split_evenly(total: u32, n: usize) -> Vec<u32> {
    if n == 0 {
        return Vec::new();
    }
    let each = total / n as u32;
    let mut weights = vec![each; n];
    weights[n - 1] = total - each * (n as u32 - 1);
    weights
}

impl TrafficSpec {
    /// Returns every problem ALB would refuse, or that would make the rule pointless; `at` is
    /// the field path of the spec.
    pub fn problems(&self, at: &str) -> Vec<SpecError> {
        let mut errors = Vec::new();
        if !(self.listener_arn.starts_with("arn:") && self.listener_arn.contains(":listener/")) {
            errors.push(SpecError::new(
                format!("{at}.listenerArn"),
                format!(
                    "{:?} is not a listener ARN (arn:...:listener/...)",
                    self.listener_arn
                ),
            ));
        }
        if !(1..=MAX_PRIORITY).contains(&self.priority) {
            errors.push(SpecError::new(
                format!("{at}.priority"),
                format!(
                    "{} is outside ALB's rule priorities, 1 to {MAX_PRIORITY}",
                    self.priority
                ),
            ));
        }
        let delete = self.action == RuleAction::Delete;
        if self.conditions.is_empty() && !delete {
            errors.push(SpecError::new(
                format!("{at}.conditions"),
                "a listener rule needs at least one condition (hosts, pathPatterns, methods, sourceIPs, headers or queryStrings); Baton never writes the listener's default rule",
            ));
        }
        for (i, method) in self.conditions.methods.iter().enumerate() {
            if method.is_empty()
                || !method
                    .chars()
                    .all(|c| c.is_ascii_alphabetic() || c == '_' || c == '-')
            {
                errors.push(SpecError::new(
                    format!("{at}.conditions.methods[{i}]"),
                    format!("{method:?} is not an HTTP method"),
                ));
            }
        }
        if let RuleAction::Forward(groups) = &self.action {
            errors.extend(target_group_problems(&format!("{at}.targetGroups"), groups));
        }
        errors
    }
}

/// Returns the problems of a forward action's target groups: their number, ARNs, weights.
pub fn target_group_problems(at: &str, groups: &[WeightedTargetGroup]) -> Vec<SpecError> {
    let mut errors = Vec::new();
    if groups.is_empty() {
        errors.push(SpecError::new(
            at,
            "list at least one target group to forward to",
        ));
    }
    if groups.len() > MAX_TARGET_GROUPS {
        errors.push(SpecError::new(
            at,
            format!(
                "{} target groups: one ALB forward action holds at most {MAX_TARGET_GROUPS}",
                groups.len()
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, group) in groups.iter().enumerate() {
        if !(group.arn.starts_with("arn:") && group.arn.contains(":targetgroup/")) {
            errors.push(SpecError::new(
                format!("{at}[{i}].arn"),
                format!(
                    "{:?} is not a target group ARN (arn:...:targetgroup/...)",
                    group.arn
                ),
            ));
        } else if !seen.insert(group.arn.as_str()) {
            errors.push(SpecError::new(
                format!("{at}[{i}].arn"),
                format!("target group {} is listed twice", group.arn),
            ));
        }
        if group.weight > MAX_WEIGHT {
            errors.push(SpecError::new(
                format!("{at}[{i}].weight"),
                format!(
                    "{} is above ALB's largest weight, {MAX_WEIGHT}",
                    group.weight
                ),
            ));
        }
    }
    if !groups.is_empty() && groups.iter().all(|g| g.weight == 0) {
        errors.push(SpecError::new(
            at,
            "every weight is 0: give at least one target group a weight above 0",
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tg(n: usize, weight: u32) -> WeightedTargetGroup {
        WeightedTargetGroup {
            arn: format!("arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/tg{n}/abc"),
            weight,
        }
    }

    #[test]
    fn even_splits_give_the_remainder_to_the_last() {
        assert_eq!(split_evenly(100, 3), [33, 33, 34]);
        assert_eq!(split_evenly(20, 3), [6, 6, 8]);
        assert_eq!(split_evenly(100, 1), [100]);
        assert_eq!(split_evenly(0, 2), [0, 0]);
        assert_eq!(split_evenly(60, 4), [15, 15, 15, 15]);
        assert!(split_evenly(100, 0).is_empty());
        for n in 1..=5 {
            for total in [0, 1, 7, 20, 33, 99, 100] {
                assert_eq!(split_evenly(total, n).iter().sum::<u32>(), total);
            }
        }
    }

    #[test]
    fn alb_limits_are_checked() {
        let spec = TrafficSpec {
            listener_arn: "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/lb/1/2".into(),
            priority: 10,
            conditions: Conditions {
                hosts: vec!["example.com".into()],
                ..Conditions::default()
            },
            action: RuleAction::Forward(vec![tg(1, 80), tg(2, 20)]),
            generation: None,
        };
        assert!(spec.problems("traffic").is_empty());
        let six = TrafficSpec {
            action: RuleAction::Forward((0..6).map(|n| tg(n, 10)).collect()),
            ..spec.clone()
        };
        let errors = six.problems("traffic");
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "traffic.targetGroups: 6 target groups: one ALB forward action holds at most 5"
        );
        let bad = TrafficSpec {
            listener_arn: "listener-1".into(),
            priority: 50_001,
            conditions: Conditions::default(),
            action: RuleAction::Forward(vec![tg(1, 1000), tg(1, 0)]),
            generation: None,
        };
        let paths: Vec<String> = bad.problems("t").into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            [
                "t.listenerArn",
                "t.priority",
                "t.conditions",
                "t.targetGroups[0].weight",
                "t.targetGroups[1].arn"
            ]
        );
        let zero = TrafficSpec {
            action: RuleAction::Forward(vec![tg(1, 0), tg(2, 0)]),
            ..spec
        };
        assert!(
            zero.problems("t")[0]
                .message
                .starts_with("every weight is 0")
        );
    }

    #[test]
    fn a_spec_reads_and_writes_as_target_groups_or_delete() {
        let text = r#"{"listenerArn": "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/lb/1/2",
            "priority": 7, "delete": true, "generation": 42}"#;
        let spec: TrafficSpec = serde_json::from_str(text).unwrap();
        assert_eq!(
            (spec.action.clone(), spec.generation),
            (RuleAction::Delete, Some(Generation(42)))
        );
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(back["delete"], true);
        assert!(back.get("targetGroups").is_none());
        let both = text.replace(
            r#""delete": true"#,
            r#""delete": true, "targetGroups": [{"arn": "a", "weight": 1}]"#,
        );
        let error = serde_json::from_str::<TrafficSpec>(&both).unwrap_err();
        assert!(
            error.to_string().contains("leave targetGroups out"),
            "{error}"
        );
        // Later nodes of a run, and every node of a later run, are newer.
        assert!(Generation::of(3, 7) < Generation::of(3, 8));
        assert!(Generation::of(3, 8) < Generation::of(4, 0));
        assert_eq!("17179869189".parse(), Ok(Generation::of(4, 5)));
    }
}
