//! A listener rule found by its priority and made to match a [`TrafficSpec`]: created when
//! missing, modified when it differs, left alone when it matches, then read back until AWS
//! shows the weights written. A write carries a generation, kept in the rule's tag
//! `baton.dev/generation`: a write older than the rule's is refused.
//!
//! The comparison is made on a canonical form (conditions sorted by field, values sorted,
//! weights by target group ARN), so the order in which AWS returns things causes no write.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, HostHeaderConditionConfig,
    HttpHeaderConditionConfig, HttpRequestMethodConditionConfig, PathPatternConditionConfig,
    QueryStringConditionConfig, QueryStringKeyValuePair, Rule, RuleCondition,
    SourceIpConditionConfig, Tag, TargetGroupStickinessConfig, TargetGroupTuple,
};
use backon::{BackoffBuilder, ExponentialBuilder};
use baton_schemas::traffic::{
    Conditions, GENERATION_TAG, Generation, RuleAction, TrafficSpec, WeightedTargetGroup,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::{Alb, AlbError, AlbErrorKind};

/// How long a write may take to show in DescribeRules before the step fails.
const READ_BACK_DEADLINE: Duration = Duration::from_secs(20);

/// A listener rule as AWS holds it, in Baton's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleState {
    /// The rule's ARN.
    pub arn: String,
    /// The conditions, canonical: `(field, sorted values)` sorted by field; an `http-header`
    /// condition's field is `http-header:<name>`, a query string's values are `key=value`.
    pub conditions: Vec<(String, Vec<String>)>,
    /// The weights of the forward action, by target group ARN; empty when the rule does not
    /// consist of exactly one forward action.
    pub weights: BTreeMap<String, u32>,
    /// Whether the rule's actions are exactly one forward action.
    pub forward_only: bool,
}

impl RuleState {
    /// Returns the forward action's target groups, ordered by ARN.
    pub fn target_groups(&self) -> Vec<WeightedTargetGroup> {
        self.weights
            .iter()
            .map(|(arn, weight)| WeightedTargetGroup {
                arn: arn.clone(),
                weight: *weight,
            })
            .collect()
    }
}

/// What [`Alb::apply`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The rule's ARN.
    pub rule_arn: String,
    /// The write it made.
    pub write: Write,
    /// The forward action's target groups as AWS shows them after the write (as they are,
    /// when superseded).
    pub target_groups: Vec<WeightedTargetGroup>,
}

/// The write [`Alb::apply`] made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// The rule did not exist: CreateRule.
    Created,
    /// The rule differed: ModifyRule.
    Modified,
    /// The rule already matched: no write to the rule (at most its generation tag raised).
    Unchanged,
    /// The rule carries this newer generation: the spec is out of date, nothing was written.
    Superseded(Generation),
}

impl Write {
    /// Returns the write's name, as logged and reported.
    pub fn as_str(self) -> &'static str {
        match self {
            Write::Created => "created",
            Write::Modified => "modified",
            Write::Unchanged => "unchanged",
            Write::Superseded(_) => "superseded",
        }
    }
}

/// What [`Alb::delete_rule`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    /// The rule was there and is gone.
    Deleted,
    /// There was no rule at the priority.
    Absent,
    /// The rule carries this newer generation: it belongs to a later write, and stays.
    Superseded(Generation),
}

impl Deleted {
    /// Returns the outcome's name, as reported.
    pub fn as_str(self) -> &'static str {
        match self {
            Deleted::Deleted => "deleted",
            Deleted::Absent => "absent",
            Deleted::Superseded(_) => "superseded",
        }
    }
}

impl Alb {
    /// Finds the rule of `listener_arn` with `priority`, reading DescribeRules page by page.
    pub async fn find_rule(
        &self,
        listener_arn: &str,
        priority: u32,
    ) -> Result<Option<RuleState>, AlbError> {
        let wanted = priority.to_string();
        let mut pages = self
            .client
            .describe_rules()
            .listener_arn(listener_arn)
            .set_page_size(self.page_size)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AlbError::from_sdk("DescribeRules", e))?;
            if let Some(rule) = page
                .rules()
                .iter()
                .find(|r| r.priority() == Some(wanted.as_str()))
            {
                return Ok(Some(state(rule)));
            }
        }
        Ok(None)
    }

    /// Returns the generation a rule is tagged with, if any (a tag that does not read as a
    /// generation counts as none).
    pub async fn rule_generation(&self, rule_arn: &str) -> Result<Option<Generation>, AlbError> {
        let out = self
            .client
            .describe_tags()
            .resource_arns(rule_arn)
            .send()
            .await
            .map_err(|e| AlbError::from_sdk("DescribeTags", e))?;
        Ok(out
            .tag_descriptions()
            .iter()
            .flat_map(|d| d.tags())
            .find(|t| t.key() == Some(GENERATION_TAG))
            .and_then(|t| t.value()?.parse().ok()))
    }

    /// Makes the rule at the spec's priority forward to the spec's weighted target groups
    /// under its conditions, then reads it back until AWS shows the weights. The spec must
    /// forward ([`RuleAction::Forward`]); a delete goes through [`Alb::delete_rule`].
    ///
    /// Idempotent: a rule that already matches is not written, and a rule that another
    /// delivery of the same job created is found by its priority and adopted.
    ///
    /// Fenced: with a generation, a rule tagged with a newer one is left alone
    /// ([`Write::Superseded`]); otherwise the rule is tagged with the spec's generation before
    /// its actions are written, so that an older write arriving later finds it. `stop` is
    /// looked at before every write; once it fired, nothing more is written
    /// ([`AlbErrorKind::Stopped`]).
    pub async fn apply(
        &self,
        spec: &TrafficSpec,
        stop: &CancellationToken,
    ) -> Result<Applied, AlbError> {
        let RuleAction::Forward(groups) = &spec.action else {
            return Err(AlbError::new(
                AlbErrorKind::Invalid,
                "ModifyRule",
                "a delete is not applied: use delete_rule",
            ));
        };
        let desired_weights = weights_of(groups);
        // A create that finds the priority taken (another delivery created the rule since it
        // was looked up) looks again and adopts that rule.
        for _ in 0..2 {
            match self.find_rule(&spec.listener_arn, spec.priority).await? {
                Some(rule) => {
                    return self
                        .update(rule, spec, groups, &desired_weights, stop)
                        .await;
                }
                None => match self.create(spec, groups, stop).await {
                    Ok(arn) => {
                        return self
                            .confirm(arn, Write::Created, spec, &desired_weights)
                            .await;
                    }
                    Err(e) if e.code.as_deref() == Some("PriorityInUse") => {
                        debug!(
                            priority = spec.priority,
                            "the priority was taken meanwhile; adopting that rule"
                        );
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            }
        }
        Err(AlbError::new(
            AlbErrorKind::Other,
            "CreateRule",
            format!(
                "priority {} is taken, yet no rule shows at it",
                spec.priority
            ),
        ))
    }

    /// Logs a write and reads the rule back until AWS shows `desired` weights.
    async fn confirm(
        &self,
        arn: String,
        write: Write,
        spec: &TrafficSpec,
        desired: &BTreeMap<String, u32>,
    ) -> Result<Applied, AlbError> {
        info!(rule = %arn, priority = spec.priority, write = write.as_str(), generation = ?spec.generation, weights = ?desired, "rule written");
        let shown = self.read_back(&arn, desired).await?;
        Ok(Applied {
            rule_arn: arn,
            write,
            target_groups: shown.target_groups(),
        })
    }

    /// Brings an existing rule to the spec: writes nothing when it is unchanged or carries a
    /// newer generation, else modifies it and reads it back.
    async fn update(
        &self,
        rule: RuleState,
        spec: &TrafficSpec,
        groups: &[WeightedTargetGroup],
        desired: &BTreeMap<String, u32>,
        stop: &CancellationToken,
    ) -> Result<Applied, AlbError> {
        let matches = rule.forward_only
            && rule.conditions == canonical_conditions(&spec.conditions)
            && rule.weights == *desired;
        let tagged = match spec.generation {
            Some(_) => self.rule_generation(&rule.arn).await?,
            None => None,
        };
        if let (Some(tagged), Some(mine)) = (tagged, spec.generation)
            && tagged > mine
        {
            info!(rule = %rule.arn, priority = spec.priority, generation = %mine, newer = %tagged, "superseded: the rule carries a newer generation; nothing written");
            return Ok(Applied {
                rule_arn: rule.arn.clone(),
                write: Write::Superseded(tagged),
                target_groups: rule.target_groups(),
            });
        }
        // The tag goes first: a write of an older generation that looks after it refuses.
        if let Some(mine) = spec.generation
            && tagged != Some(mine)
        {
            stopped(stop, "AddTags")?;
            self.tag_generation(&rule.arn, mine).await?;
        }
        if matches {
            debug!(rule = %rule.arn, priority = spec.priority, "rule unchanged; nothing written");
            return Ok(Applied {
                rule_arn: rule.arn.clone(),
                write: Write::Unchanged,
                target_groups: rule.target_groups(),
            });
        }
        stopped(stop, "ModifyRule")?;
        self.modify(&rule.arn, spec, groups).await?;
        self.confirm(rule.arn, Write::Modified, spec, desired).await
    }

    async fn tag_generation(&self, rule_arn: &str, generation: Generation) -> Result<(), AlbError> {
        self.client
            .add_tags()
            .resource_arns(rule_arn)
            .tags(generation_tag(generation))
            .send()
            .await
            .map_err(|e| AlbError::from_sdk("AddTags", e))?;
        Ok(())
    }

    /// Deletes the rule at the spec's priority, if there is one, unless it carries a newer
    /// generation than the spec's. Idempotent: a rule another delivery deleted meanwhile
    /// counts as absent.
    pub async fn delete_rule(
        &self,
        spec: &TrafficSpec,
        stop: &CancellationToken,
    ) -> Result<Deleted, AlbError> {
        let Some(rule) = self.find_rule(&spec.listener_arn, spec.priority).await? else {
            return Ok(Deleted::Absent);
        };
        if let Some(mine) = spec.generation
            && let Some(tagged) = self.rule_generation(&rule.arn).await?
            && tagged > mine
        {
            info!(rule = %rule.arn, priority = spec.priority, generation = %mine, newer = %tagged, "superseded: the rule carries a newer generation; not deleted");
            return Ok(Deleted::Superseded(tagged));
        }
        stopped(stop, "DeleteRule")?;
        match self.client.delete_rule().rule_arn(&rule.arn).send().await {
            Ok(_) => {
                info!(rule = %rule.arn, priority = spec.priority, "rule deleted");
                Ok(Deleted::Deleted)
            }
            Err(e) => {
                let e = AlbError::from_sdk("DeleteRule", e);
                // Deleted by another delivery meanwhile.
                if e.kind == AlbErrorKind::NotFound {
                    Ok(Deleted::Absent)
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn create(
        &self,
        spec: &TrafficSpec,
        groups: &[WeightedTargetGroup],
        stop: &CancellationToken,
    ) -> Result<String, AlbError> {
        let priority = i32::try_from(spec.priority).map_err(|_| {
            AlbError::new(AlbErrorKind::Invalid, "CreateRule", "priority out of range")
        })?;
        stopped(stop, "CreateRule")?;
        let tags = spec.generation.map(|g| vec![generation_tag(g)]);
        let out = self
            .client
            .create_rule()
            .listener_arn(&spec.listener_arn)
            .priority(priority)
            .set_conditions(Some(conditions(&spec.conditions)))
            .set_actions(Some(vec![forward(groups)]))
            .set_tags(tags)
            .send()
            .await
            .map_err(|e| AlbError::from_sdk("CreateRule", e))?;
        out.rules()
            .first()
            .and_then(|r| r.rule_arn())
            .map(str::to_owned)
            .ok_or_else(|| {
                AlbError::new(AlbErrorKind::Other, "CreateRule", "no rule in the answer")
            })
    }

    async fn modify(
        &self,
        rule_arn: &str,
        spec: &TrafficSpec,
        groups: &[WeightedTargetGroup],
    ) -> Result<(), AlbError> {
        self.client
            .modify_rule()
            .rule_arn(rule_arn)
            .set_conditions(Some(conditions(&spec.conditions)))
            .set_actions(Some(vec![forward(groups)]))
            .send()
            .await
            .map_err(|e| AlbError::from_sdk("ModifyRule", e))?;
        Ok(())
    }

    /// Reads the rule until its weights are `desired`, backing off from 100 ms to 2 s, at
    /// most [`READ_BACK_DEADLINE`].
    async fn read_back(
        &self,
        rule_arn: &str,
        desired: &BTreeMap<String, u32>,
    ) -> Result<RuleState, AlbError> {
        let started = tokio::time::Instant::now();
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(2))
            .without_max_times()
            .build();
        loop {
            let delay = delays.next().expect("the schedule has no end");
            let out = self
                .client
                .describe_rules()
                .rule_arns(rule_arn)
                .send()
                .await
                .map_err(|e| AlbError::from_sdk("DescribeRules", e))?;
            let shown = out.rules().first().map(state);
            match shown {
                Some(rule) if &rule.weights == desired => return Ok(rule),
                other if started.elapsed() + delay > READ_BACK_DEADLINE => {
                    let shown = other.map(|r| r.weights).unwrap_or_default();
                    return Err(AlbError::new(
                        AlbErrorKind::NotConfirmed,
                        "DescribeRules",
                        format!(
                            "after {READ_BACK_DEADLINE:?} AWS shows weights {shown:?}, not the {desired:?} written"
                        ),
                    ));
                }
                _ => tokio::time::sleep(delay).await,
            }
        }
    }
}

/// Returns the conditions in Baton's fixed order: host, path, method, source IP, one header
/// condition per name (by name), one query-string condition.
fn conditions(c: &Conditions) -> Vec<RuleCondition> {
    let mut out = Vec::new();
    if !c.hosts.is_empty() {
        out.push(
            RuleCondition::builder()
                .field("host-header")
                .host_header_config(
                    HostHeaderConditionConfig::builder()
                        .set_values(Some(c.hosts.clone()))
                        .build(),
                )
                .build(),
        );
    }
    if !c.path_patterns.is_empty() {
        out.push(
            RuleCondition::builder()
                .field("path-pattern")
                .path_pattern_config(
                    PathPatternConditionConfig::builder()
                        .set_values(Some(c.path_patterns.clone()))
                        .build(),
                )
                .build(),
        );
    }
    if !c.methods.is_empty() {
        out.push(
            RuleCondition::builder()
                .field("http-request-method")
                .http_request_method_config(
                    HttpRequestMethodConditionConfig::builder()
                        .set_values(Some(upper(&c.methods)))
                        .build(),
                )
                .build(),
        );
    }
    if !c.source_ips.is_empty() {
        out.push(
            RuleCondition::builder()
                .field("source-ip")
                .source_ip_config(
                    SourceIpConditionConfig::builder()
                        .set_values(Some(c.source_ips.clone()))
                        .build(),
                )
                .build(),
        );
    }
    for (name, values) in &c.headers {
        out.push(
            RuleCondition::builder()
                .field("http-header")
                .http_header_config(
                    HttpHeaderConditionConfig::builder()
                        .http_header_name(name)
                        .set_values(Some(values.clone()))
                        .build(),
                )
                .build(),
        );
    }
    if !c.query_strings.is_empty() {
        let pairs = c
            .query_strings
            .iter()
            .map(|(k, v)| {
                QueryStringKeyValuePair::builder()
                    .set_key((!k.is_empty()).then(|| k.clone()))
                    .value(v)
                    .build()
            })
            .collect();
        out.push(
            RuleCondition::builder()
                .field("query-string")
                .query_string_config(
                    QueryStringConditionConfig::builder()
                        .set_values(Some(pairs))
                        .build(),
                )
                .build(),
        );
    }
    out
}

/// Returns the forward action: the weighted groups, stickiness off, and the lone group's ARN
/// when there is one (as AWS itself returns such an action, so that it compares equal).
fn forward(groups: &[WeightedTargetGroup]) -> Action {
    let tuples = groups
        .iter()
        .map(|g| {
            TargetGroupTuple::builder()
                .target_group_arn(&g.arn)
                .weight(g.weight as i32)
                .build()
        })
        .collect();
    let config = ForwardActionConfig::builder()
        .set_target_groups(Some(tuples))
        .target_group_stickiness_config(
            TargetGroupStickinessConfig::builder()
                .enabled(false)
                .build(),
        )
        .build();
    let lone = match groups {
        [one] => Some(one.arn.clone()),
        _ => None,
    };
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(config)
        .set_target_group_arn(lone)
        .build()
}

/// Returns the error of a write that `stop` forbids, once it fired.
fn stopped(stop: &CancellationToken, operation: &'static str) -> Result<(), AlbError> {
    match stop.is_cancelled() {
        true => Err(AlbError::new(
            AlbErrorKind::Stopped,
            operation,
            "stopped before the write: the job was cancelled",
        )),
        false => Ok(()),
    }
}

/// The tag that fences a rule's writes by generation.
fn generation_tag(generation: Generation) -> Tag {
    Tag::builder()
        .key(GENERATION_TAG)
        .value(generation.to_string())
        .build()
}

fn weights_of(groups: &[WeightedTargetGroup]) -> BTreeMap<String, u32> {
    groups.iter().map(|g| (g.arn.clone(), g.weight)).collect()
}

fn upper(values: &[String]) -> Vec<String> {
    values.iter().map(|v| v.to_ascii_uppercase()).collect()
}

/// Returns Baton's canonical form of the conditions it would write.
pub(crate) fn canonical_conditions(c: &Conditions) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut push = |field: String, mut values: Vec<String>| {
        values.sort();
        out.push((field, values));
    };
    if !c.hosts.is_empty() {
        push("host-header".into(), c.hosts.clone());
    }
    if !c.path_patterns.is_empty() {
        push("path-pattern".into(), c.path_patterns.clone());
    }
    if !c.methods.is_empty() {
        push("http-request-method".into(), upper(&c.methods));
    }
    if !c.source_ips.is_empty() {
        push("source-ip".into(), c.source_ips.clone());
    }
    for (name, values) in &c.headers {
        push(format!("http-header:{name}"), values.clone());
    }
    if !c.query_strings.is_empty() {
        push(
            "query-string".into(),
            c.query_strings
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        );
    }
    out.sort();
    out
}

/// Reads a rule into Baton's canonical form.
fn state(rule: &Rule) -> RuleState {
    let mut conditions: Vec<(String, Vec<String>)> = rule
        .conditions()
        .iter()
        .map(|c| {
            let field = c.field().unwrap_or_default().to_owned();
            let legacy = c.values().to_vec();
            let (key, mut values) = match field.as_str() {
                "host-header" => (
                    field.clone(),
                    c.host_header_config()
                        .map(|h| h.values().to_vec())
                        .unwrap_or(legacy),
                ),
                "path-pattern" => (
                    field.clone(),
                    c.path_pattern_config()
                        .map(|p| p.values().to_vec())
                        .unwrap_or(legacy),
                ),
                "http-request-method" => (
                    field.clone(),
                    c.http_request_method_config()
                        .map(|m| m.values().to_vec())
                        .unwrap_or(legacy),
                ),
                "source-ip" => (
                    field.clone(),
                    c.source_ip_config()
                        .map(|s| s.values().to_vec())
                        .unwrap_or(legacy),
                ),
                "http-header" => {
                    let header = c.http_header_config();
                    (
                        format!(
                            "http-header:{}",
                            header
                                .and_then(|h| h.http_header_name())
                                .unwrap_or_default()
                        ),
                        header.map(|h| h.values().to_vec()).unwrap_or(legacy),
                    )
                }
                "query-string" => (
                    field.clone(),
                    c.query_string_config()
                        .map(|q| {
                            q.values()
                                .iter()
                                .map(|p| {
                                    format!(
                                        "{}={}",
                                        p.key().unwrap_or_default(),
                                        p.value().unwrap_or_default()
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or(legacy),
                ),
                _ => (field.clone(), legacy),
            };
            values.sort();
            (key, values)
        })
        .collect();
    conditions.sort();
    let forwards: Vec<&Action> = rule
        .actions()
        .iter()
        .filter(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
        .collect();
    let forward_only = rule.actions().len() == 1 && forwards.len() == 1;
    let weights = match forwards.first() {
        Some(action) => match action.forward_config() {
            Some(config) if !config.target_groups().is_empty() => config
                .target_groups()
                .iter()
                .filter_map(|t| {
                    Some((
                        t.target_group_arn()?.to_owned(),
                        t.weight().unwrap_or(1).max(0) as u32,
                    ))
                })
                .collect(),
            // An action given as a lone TargetGroupArn: AWS counts it as weight 1.
            _ => action
                .target_group_arn()
                .map(|arn| BTreeMap::from([(arn.to_owned(), 1)]))
                .unwrap_or_default(),
        },
        None => BTreeMap::new(),
    };
    RuleState {
        arn: rule.rule_arn().unwrap_or_default().to_owned(),
        conditions,
        weights,
        forward_only,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_are_written_in_a_fixed_order_and_read_back_equal() {
        let c = Conditions {
            hosts: vec!["b.example.com".into(), "a.example.com".into()],
            path_patterns: vec!["/api/*".into()],
            methods: vec!["get".into()],
            source_ips: vec!["10.0.0.0/8".into()],
            headers: BTreeMap::from([
                ("X-Zone".to_owned(), vec!["a".to_owned()]),
                ("X-Canary".to_owned(), vec!["yes".to_owned()]),
            ]),
            query_strings: BTreeMap::from([("v".to_owned(), "2".to_owned())]),
        };
        let written = conditions(&c);
        let fields: Vec<String> = written
            .iter()
            .map(|c| match c.http_header_config() {
                Some(h) => format!("http-header:{}", h.http_header_name().unwrap()),
                None => c.field().unwrap().to_owned(),
            })
            .collect();
        assert_eq!(
            fields,
            [
                "host-header",
                "path-pattern",
                "http-request-method",
                "source-ip",
                "http-header:X-Canary",
                "http-header:X-Zone",
                "query-string"
            ]
        );
        // What AWS would return (the same conditions, in any order) reads as what Baton wants.
        let mut shuffled = written.clone();
        shuffled.reverse();
        let rule = Rule::builder()
            .rule_arn("arn:r")
            .set_conditions(Some(shuffled))
            .actions(forward(&[WeightedTargetGroup {
                arn: "arn:tg".into(),
                weight: 100,
            }]))
            .build();
        let read = state(&rule);
        assert_eq!(read.conditions, canonical_conditions(&c));
        assert!(read.forward_only);
        assert_eq!(read.weights, BTreeMap::from([("arn:tg".to_owned(), 100)]));
    }
}
