//! `Cell`: an ALB listener rule whose forward action Baton moves, step by step, from the target
//! groups of the version serving traffic to those of a newer version. Target groups are found
//! in ELBv2 by their tags; a tag holds each one's version (semver).
//!
//! Accepted as okra's `okra.mumo.co/v1alpha1` documents, verbatim, and as Baton's own
//! `baton.dev/v1alpha1`. The two differ where the decisions say (see the README):
//!
//! | | `okra.mumo.co` | `baton.dev` |
//! |---|---|---|
//! | `setWeight` | cumulative: 20 then 40 gives 20% then 60% | absolute: 20% then 40% |
//! | `pause` without a duration | expires at once | waits for a resume |
//! | default version tag | `okra.mumo.co/version` | `baton.dev/version` |

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::analysis::{self, AnalysisSpec};
use crate::document::SpecError;
use crate::ids::is_dns_label;
use crate::traffic::{Conditions, MAX_PRIORITY, MAX_TARGET_GROUPS};
use crate::workflow::Metadata;

mod experiment;
pub use experiment::{
    DEFAULT_PROGRESS_DEADLINE_SECONDS, ExperimentAnalysis, ExperimentStep, ExperimentTemplate,
    replica_set_problems,
};

/// okra's API version, accepted verbatim.
pub const OKRA_API_VERSION: &str = "okra.mumo.co/v1alpha1";
/// okra's version tag, the default of `okra.mumo.co` Cells.
pub const OKRA_VERSION_LABEL: &str = "okra.mumo.co/version";
/// Baton's version tag, the default of `baton.dev` Cells.
pub const BATON_VERSION_LABEL: &str = "baton.dev/version";
/// The rule priority okra uses when a Cell gives none (or 0).
pub const DEFAULT_PRIORITY: u32 = 100;
/// The only ingress type there is.
pub const ALB_INGRESS: &str = "AWSApplicationLoadBalancer";

/// A `Cell` document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cell {
    /// `okra.mumo.co/v1alpha1` or `baton.dev/v1alpha1`.
    pub api_version: String,
    /// Always `Cell`.
    pub kind: String,
    /// The Cell's name.
    pub metadata: Metadata,
    /// The load balancer, the target groups and the rollout steps.
    pub spec: CellSpec,
    /// What a cluster reported; ignored on input.
    #[serde(default, skip_serializing)]
    pub status: Option<serde_json::Value>,
}

/// How the steps of a Cell are read: by okra's rules or by Baton's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Semantics {
    /// `okra.mumo.co`: cumulative weights, pauses without duration expire at once.
    Okra,
    /// `baton.dev`: absolute weights, pauses without duration wait for a resume.
    Baton,
}

/// The body of a Cell.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CellSpec {
    /// The load balancer in front of the target groups.
    pub ingress: CellIngress,
    /// How many target groups a version needs before it is rolled out (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Pins the version that gets the traffic, at once, whether it is older (a rollback) or
    /// newer than the one serving; newer versions wait while it is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// How a new version is rolled out.
    #[serde(default)]
    pub update_strategy: UpdateStrategy,
    /// What happens to the listener rule when the Cell is deleted (Baton's addition).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// What happens to a Cell's listener rule when the Cell is deleted.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum DeletionPolicy {
    /// The rule stays as it is, serving what it served (okra's behaviour). The default.
    #[default]
    Retain,
    /// The rule is removed.
    Delete,
}

/// The ingress of a Cell.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CellIngress {
    /// `AWSApplicationLoadBalancer` (the default and the only one).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The ALB listener and the target groups.
    #[serde(
        rename = "awsApplicationLoadBalancer",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub alb: Option<AlbIngress>,
    /// okra declares it; Baton refuses it, as okra never implemented it.
    #[serde(
        rename = "awsNetworkLoadBalancer",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<PreservedObject>")]
    pub nlb: Option<serde_json::Value>,
}

/// An object whose fields the CRD keeps as they are; validation judges it.
#[derive(schemars::JsonSchema)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
struct PreservedObject {}

/// An ALB listener, the rule Baton owns on it, and how target groups are found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlbIngress {
    /// The listener's ARN.
    #[serde(rename = "listenerARN")]
    pub listener_arn: String,
    /// The rule.
    #[serde(default)]
    pub listener: Listener,
    /// Which target groups belong to the Cell, and where their version is.
    #[serde(default)]
    pub target_group_selector: TargetGroupSelector,
}

/// The listener part of an ingress.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listener {
    /// The listener rule Baton writes.
    #[serde(default)]
    pub rule: ListenerRule,
}

/// The listener rule of a Cell: its priority (its identity) and its conditions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerRule {
    /// The rule's priority; 0 or none means 100, as with okra.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// `host-header` values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// `path-pattern` values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path_patterns: Vec<String>,
    /// `http-request-method` values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// `source-ip` CIDR blocks.
    #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "sourceIPs")]
    pub source_ips: Vec<String>,
    /// One `http-header` condition per header name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Vec<String>>,
    /// One `query-string` condition with every pair.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query_strings: BTreeMap<String, String>,
    /// Computed by Baton from the discovered target groups; a document leaves it empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<Forward>,
}

/// okra's computed forward action, accepted empty (`forward: {}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Forward {
    /// Must be empty: Baton computes it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<PreservedObject>")]
    pub target_groups: Vec<serde_json::Value>,
}

/// Which target groups belong to a Cell: those whose tags include every `matchLabels` pair.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetGroupSelector {
    /// Tags a target group must have, with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Tag keys holding the version, tried in order, the first present wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub version_labels: Vec<String>,
}

/// How a new version is rolled out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateStrategy {
    /// `Canary` (the default and the only one).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The canary steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// okra declares it; Baton refuses it, as okra never implemented it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<PreservedObject>")]
    pub blue_green: Option<serde_json::Value>,
}

/// Canary steps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Canary {
    /// The steps, in order. Without steps a new version gets the traffic at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// Analysis that runs beside the steps, from `startingStep` until the rollout ends (Argo
    /// Rollouts' background analysis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<BackgroundAnalysis>,
}

/// Background analysis: its templates' metrics run from `startingStep` until the rollout ends,
/// a metric without a `count` measuring until then. A failure gives the stable version its
/// traffic back and blocks the version, as a failed analysis step does; an inconclusive one
/// holds the rollout for a person.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackgroundAnalysis {
    /// Templates by name; their metrics run together.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<analysis::TemplateRef>,
    /// Arguments for the templates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<analysis::Arg>,
    /// The step it starts at (default 0, with the rollout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_step: Option<u32>,
}

impl BackgroundAnalysis {
    /// The analysis it runs.
    pub fn spec(&self) -> AnalysisSpec {
        AnalysisSpec {
            templates: self.templates.clone(),
            args: self.args.clone(),
            ..AnalysisSpec::default()
        }
    }
}

/// One canary step: exactly one of its fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    /// Gives the new version this share of the traffic, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_weight: Option<i64>,
    /// Waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
    /// Runs an analysis; the rollout goes on when it succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisSpec>,
    /// Runs ReplicaSets for a while with analyses beside them; the rollout goes on when the
    /// analyses pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentStep>,
    /// Refused: a Cell shifts traffic, it does not scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<PreservedObject>")]
    pub set_canary_scale: Option<serde_json::Value>,
}

/// A pause step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pause {
    /// How long: whole seconds, or a duration such as `30s` or `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<PauseDuration>,
}

/// A pause's duration as written: seconds or text. Read with [`PauseDuration::get`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PauseDuration {
    /// Whole seconds.
    Seconds(i64),
    /// A duration such as `30s`.
    Text(String),
}

impl<'de> Deserialize<'de> for PauseDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(i64),
            Text(String),
        }
        Ok(match Raw::deserialize(deserializer)? {
            Raw::Seconds(s) => PauseDuration::Seconds(s),
            Raw::Text(t) => PauseDuration::Text(t),
        })
    }
}

impl schemars::JsonSchema for PauseDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PauseDuration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "x-kubernetes-int-or-string": true,
            "description": "Whole seconds, or a duration such as 30s or 5m.",
        })
    }
}

impl PauseDuration {
    /// Returns the duration, or why it cannot be read.
    pub fn get(&self) -> Result<std::time::Duration, String> {
        match self {
            PauseDuration::Seconds(s) if *s >= 0 => Ok(std::time::Duration::from_secs(*s as u64)),
            PauseDuration::Seconds(s) => Err(format!("{s} is negative")),
            PauseDuration::Text(t) => match t.trim().parse::<u64>() {
                Ok(secs) => Ok(std::time::Duration::from_secs(secs)),
                Err(_) => t.parse::<crate::Duration>().map(|d| d.0),
            },
        }
    }
}

/// A step as Baton runs it.
#[derive(Clone, Debug, PartialEq)]
pub enum StepKind<'a> {
    /// Gives the new version this share, in percent (absolute, after okra's sums are added
    /// up).
    SetWeight(u32),
    /// Waits this long; `None` waits for a resume.
    Pause(Option<std::time::Duration>),
    /// Runs an analysis.
    Analysis(&'a AnalysisSpec),
    /// Runs an experiment.
    Experiment(&'a ExperimentStep),
}

impl Cell {
    /// Returns its background analysis, if it has one.
    pub fn background_analysis(&self) -> Option<&BackgroundAnalysis> {
        self.spec.update_strategy.canary.as_ref()?.analysis.as_ref()
    }

    /// Returns how the Cell's steps are read.
    pub fn semantics(&self) -> Semantics {
        if self.api_version == OKRA_API_VERSION {
            Semantics::Okra
        } else {
            Semantics::Baton
        }
    }

    /// Returns the ALB part of the ingress (validation makes sure there is one).
    pub fn alb(&self) -> AlbIngress {
        self.spec.ingress.alb.clone().unwrap_or_default()
    }

    /// Returns how many target groups a version needs.
    pub fn replicas(&self) -> usize {
        self.spec.replicas.unwrap_or(1).max(1) as usize
    }

    /// Returns the rule's priority (okra's default for none or 0).
    pub fn priority(&self) -> u32 {
        match self.alb().listener.rule.priority {
            None | Some(0) => DEFAULT_PRIORITY,
            Some(p) => p,
        }
    }

    /// Returns the tag keys that hold a target group's version, in the order they are tried.
    pub fn version_labels(&self) -> Vec<String> {
        let labels = self.alb().target_group_selector.version_labels;
        if !labels.is_empty() {
            return labels;
        }
        vec![
            match self.semantics() {
                Semantics::Okra => OKRA_VERSION_LABEL,
                Semantics::Baton => BATON_VERSION_LABEL,
            }
            .to_owned(),
        ]
    }

    /// Returns the rule's conditions as Baton writes them (methods upper-cased, as okra did).
    pub fn conditions(&self) -> Conditions {
        let rule = self.alb().listener.rule;
        Conditions {
            hosts: rule.hosts,
            path_patterns: rule.path_patterns,
            methods: rule
                .methods
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect(),
            source_ips: rule.source_ips,
            headers: rule.headers,
            query_strings: rule.query_strings,
        }
    }

    /// Returns the raw steps.
    pub fn raw_steps(&self) -> &[Step] {
        self.spec
            .update_strategy
            .canary
            .as_ref()
            .map(|c| c.steps.as_slice())
            .unwrap_or_default()
    }

    /// Returns the steps as Baton runs them: okra's `setWeight`s added up, okra's pauses
    /// without a duration made instant. Only valid Cells are asked.
    pub fn steps(&self) -> Vec<StepKind<'_>> {
        let okra = self.semantics() == Semantics::Okra;
        let mut total = 0i64;
        self.raw_steps()
            .iter()
            .filter_map(|step| {
                if let Some(w) = step.set_weight {
                    total = if okra { total.saturating_add(w) } else { w };
                    return Some(StepKind::SetWeight(total.clamp(0, 100) as u32));
                }
                if let Some(pause) = &step.pause {
                    let duration = match &pause.duration {
                        Some(d) => Some(d.get().unwrap_or_default()),
                        None if okra => Some(std::time::Duration::ZERO),
                        None => None,
                    };
                    return Some(StepKind::Pause(duration));
                }
                if let Some(experiment) = &step.experiment {
                    return Some(StepKind::Experiment(experiment));
                }
                step.analysis.as_ref().map(StepKind::Analysis)
            })
            .collect()
    }
}

/// Returns every problem of a Cell, or `Ok`.
pub fn validate(cell: &Cell) -> Result<(), Vec<SpecError>> {
    let mut errors = Vec::new();
    let name = &cell.metadata.name;
    if name.is_empty() {
        errors.push(SpecError::new(
            "metadata.name",
            "missing: every cell needs a name",
        ));
    } else if !is_dns_label(name) {
        errors.push(SpecError::new(
            "metadata.name",
            format!("invalid name {name:?}: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"),
        ));
    }
    let spec = &cell.spec;
    let ingress = &spec.ingress;
    if let Some(t) = &ingress.type_
        && t != ALB_INGRESS
    {
        errors.push(SpecError::new(
            "spec.ingress.type",
            format!("{t:?} is not supported: the only ingress type is {ALB_INGRESS}"),
        ));
    }
    if ingress.nlb.is_some() {
        errors.push(SpecError::new(
            "spec.ingress.awsNetworkLoadBalancer",
            "network load balancers are not supported: use awsApplicationLoadBalancer",
        ));
    }
    match &ingress.alb {
        None => errors.push(SpecError::new(
            "spec.ingress.awsApplicationLoadBalancer",
            "missing: give the listenerARN, the listener rule and the targetGroupSelector",
        )),
        Some(alb) => {
            let at = "spec.ingress.awsApplicationLoadBalancer";
            if !(alb.listener_arn.starts_with("arn:") && alb.listener_arn.contains(":listener/")) {
                errors.push(SpecError::new(
                    format!("{at}.listenerARN"),
                    format!(
                        "{:?} is not a listener ARN (arn:...:listener/...)",
                        alb.listener_arn
                    ),
                ));
            }
            let rule = &alb.listener.rule;
            if rule.priority.is_some_and(|p| p > MAX_PRIORITY) {
                errors.push(SpecError::new(
                    format!("{at}.listener.rule.priority"),
                    format!("above ALB's largest rule priority, {MAX_PRIORITY}"),
                ));
            }
            if cell.conditions().is_empty() {
                errors.push(SpecError::new(
                    format!("{at}.listener.rule"),
                    "a listener rule needs at least one condition (hosts, pathPatterns, methods, sourceIPs, headers or queryStrings); Baton never writes the listener's default rule",
                ));
            }
            if rule
                .forward
                .as_ref()
                .is_some_and(|f| !f.target_groups.is_empty())
            {
                errors.push(SpecError::new(
                    format!("{at}.listener.rule.forward.targetGroups"),
                    "computed by Baton from the discovered target groups: leave it out",
                ));
            }
            if alb.target_group_selector.match_labels.is_empty() {
                errors.push(SpecError::new(
                    format!("{at}.targetGroupSelector.matchLabels"),
                    "missing: without tags to match, every target group of the account would belong to the cell",
                ));
            }
        }
    }
    if let Some(r) = spec.replicas
        && !(1..=MAX_TARGET_GROUPS as u32).contains(&r)
    {
        errors.push(SpecError::new(
            "spec.replicas",
            format!("{r}: a version's target groups share one ALB forward action, which holds 1 to {MAX_TARGET_GROUPS}"),
        ));
    }
    if let Some(v) = &spec.version
        && semver::Version::parse(v).is_err()
    {
        errors.push(SpecError::new(
            "spec.version",
            format!("{v:?} is not a semantic version such as 1.2.3"),
        ));
    }
    let strategy = &spec.update_strategy;
    if let Some(t) = &strategy.type_
        && t != "Canary"
    {
        errors.push(SpecError::new(
            "spec.updateStrategy.type",
            format!("{t:?} is not supported: use Canary"),
        ));
    }
    if strategy.blue_green.is_some() {
        errors.push(SpecError::new(
            "spec.updateStrategy.blueGreen",
            "blue-green is not supported: use canary steps",
        ));
    }
    if let Some(background) = strategy.canary.as_ref().and_then(|c| c.analysis.as_ref()) {
        let at = "spec.updateStrategy.canary.analysis";
        errors.extend(analysis::spec_problems(at, &background.spec(), true));
        let steps = cell.raw_steps().len() as u32;
        if background.starting_step.is_some_and(|s| s > steps) {
            errors.push(SpecError::new(
                format!("{at}.startingStep"),
                format!("the Cell has {steps} steps: start at one of them (0 to {steps})"),
            ));
        }
    }
    let okra = cell.semantics() == Semantics::Okra;
    let mut total = 0i64;
    for (i, step) in cell.raw_steps().iter().enumerate() {
        let at = format!("spec.updateStrategy.canary.steps[{i}]");
        let set = [
            step.set_weight.is_some(),
            step.pause.is_some(),
            step.analysis.is_some(),
            step.experiment.is_some(),
            step.set_canary_scale.is_some(),
        ]
        .into_iter()
        .filter(|s| *s)
        .count();
        if set != 1 {
            errors.push(SpecError::new(
                at.clone(),
                "give exactly one of setWeight, pause, analysis or experiment",
            ));
            continue;
        }
        if let Some(e) = &step.experiment {
            errors.extend(experiment::problems(&format!("{at}.experiment"), e));
        }
        if step.set_canary_scale.is_some() {
            errors.push(SpecError::new(
                format!("{at}.setCanaryScale"),
                "not supported: a Cell shifts traffic between target groups, it does not scale them",
            ));
        }
        if let Some(w) = step.set_weight {
            if !(0..=100).contains(&w) {
                errors.push(SpecError::new(
                    format!("{at}.setWeight"),
                    format!("{w} is not a percentage from 0 to 100"),
                ));
            } else if okra {
                total += w;
                if total > 100 {
                    errors.push(SpecError::new(
                        format!("{at}.setWeight"),
                        format!("the setWeight steps add up to {total} here: okra.mumo.co Cells accumulate them, so keep the sum at most 100"),
                    ));
                }
            }
        }
        if let Some(Pause { duration: Some(d) }) = &step.pause
            && let Err(e) = d.get()
        {
            errors.push(SpecError::new(format!("{at}.pause.duration"), e));
        }
        if let Some(a) = &step.analysis {
            errors.extend(analysis::spec_problems(&format!("{at}.analysis"), a, true));
        }
    }
    errors.extend(shared_step_problem(cell));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Returns the problem of a Cell whose shared steps cannot fit one forward action: a step
/// that gives the new version a share strictly between 0 and 100% puts its `replicas` target
/// groups beside the stable version's (at least as many, once a version is complete), so
/// `replicas` of 3 or more make at least 6 where ALB holds 5.
fn shared_step_problem(cell: &Cell) -> Option<SpecError> {
    let replicas = cell.spec.replicas? as usize;
    if 2 * replicas <= MAX_TARGET_GROUPS || replicas > MAX_TARGET_GROUPS {
        return None;
    }
    let okra = cell.semantics() == Semantics::Okra;
    let mut total = 0i64;
    cell.raw_steps().iter().enumerate().find_map(|(i, step)| {
        let w = step.set_weight?;
        total = if okra { total + w } else { w };
        (0 < total && total < 100).then(|| {
            SpecError::new(
                format!("spec.updateStrategy.canary.steps[{i}].setWeight"),
                format!(
                    "gives the new version {total}%, sharing the rule between its {replicas} target groups and at least {replicas} of the stable version: one ALB forward action holds at most {MAX_TARGET_GROUPS}; use replicas of at most {} or only setWeight 0 and 100",
                    MAX_TARGET_GROUPS / 2
                ),
            )
        })
    })
}

#[cfg(test)]
mod tests;
