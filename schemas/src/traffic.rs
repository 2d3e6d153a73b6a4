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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficSpec {
    /// The listener's ARN.
    pub listener_arn: String,
    /// The rule's priority, which is also its identity: a redelivered job finds the rule the
    /// first delivery wrote by it.
    pub priority: u32,
    /// What requests the rule matches, written in a fixed order so that an unchanged rule
    /// compares equal to what AWS holds.
    #[serde(default)]
    pub conditions: Conditions,
    /// The weighted target groups of the forward action.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_groups: Vec<WeightedTargetGroup>,
    /// Removes the rule at `priority` instead (nothing happens when there is none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete: bool,
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
        if self.conditions.is_empty() && !self.delete {
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
        if self.delete {
            if !self.target_groups.is_empty() {
                errors.push(SpecError::new(
                    format!("{at}.targetGroups"),
                    "a rule being deleted forwards nowhere: leave targetGroups out",
                ));
            }
            return errors;
        }
        errors.extend(target_group_problems(
            &format!("{at}.targetGroups"),
            &self.target_groups,
        ));
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
            target_groups: vec![tg(1, 80), tg(2, 20)],
            delete: false,
        };
        assert!(spec.problems("traffic").is_empty());
        let six = TrafficSpec {
            target_groups: (0..6).map(|n| tg(n, 10)).collect(),
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
            target_groups: vec![tg(1, 1000), tg(1, 0)],
            delete: false,
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
            target_groups: vec![tg(1, 0), tg(2, 0)],
            ..spec
        };
        assert!(
            zero.problems("t")[0]
                .message
                .starts_with("every weight is 0")
        );
    }
}
