//! Pure planning functions of a Cell: versions and their target groups, the target, what
//! to do about it, the nodes a rollout pushes, and the weights of a step.

use std::collections::BTreeMap;
use std::time::Duration;

use baton_schemas::traffic::{Generation, TrafficSpec, WeightedTargetGroup, split_evenly};
use baton_schemas::wire::Timestamp;
use baton_schemas::workflow::{Backoff, NodeSpec};
use baton_schemas::{FailurePolicy, NodeKind, Retries, RunId, When, WorkflowName, WorkflowSpec};
use semver::Version;

use crate::chains::unique_name;
use crate::{Node, NodeState, Run, RunKind, StartedBy};

use super::*;

/// Returns the run id of a Cell's `n`th run: `<name>-<n>`, the name cut to fit 40 characters.
/// Returns the first run id `<name>-<k>`, `k >= n`, that no run has yet, and its `k`.
pub(crate) fn free_run_id(runs: &BTreeMap<RunId, Run>, name: &str, n: u32) -> (RunId, u32) {
    (n..)
        .map(|k| (crate::ids::named_run_id(name, &k.to_string()), k))
        .find(|(id, _)| !runs.contains_key(id))
        .expect("some number is free")
}

pub(crate) fn new_run(id: RunId, name: &str, now: Timestamp) -> Run {
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

pub(crate) fn push(r: &mut Run, spec: NodeSpec, state: NodeState, now: Timestamp) -> u32 {
    let mut node = Node::new(spec.name.clone());
    node.started_by = Some(StartedBy {
        initiator: r.initiator.clone(),
        data: String::new(),
        after: None,
    });
    if matches!(state, NodeState::Held { .. }) {
        node.started_at = Some(now);
    }
    node.state = state;
    r.push_node(spec, node) as u32
}

/// Returns what ALB would refuse in a rule the core is about to write (most often: more
/// target groups than one forward action holds), so that no job is sent that must fail.
pub(crate) fn refused(spec: &TrafficSpec) -> Option<String> {
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
pub(crate) fn push_traffic(r: &mut Run, label: &str, traffic: TrafficSpec, number: u32) -> u32 {
    let spec = traffic_node(r, label, traffic, number);
    push(r, spec, NodeState::Pending, Timestamp(0))
}

/// Pushes a traffic node like [`push_traffic`] that starts only once node `after` has ended,
/// however it ended.
pub(crate) fn push_traffic_after(
    r: &mut Run,
    label: &str,
    traffic: TrafficSpec,
    number: u32,
    after: usize,
) {
    let mut spec = traffic_node(r, label, traffic, number);
    spec.needs = vec![r.nodes[after].name.clone()];
    spec.when = When::Always;
    let node = Node::new(spec.name.clone());
    r.push_node(spec, node);
}

pub(crate) fn traffic_node(
    r: &Run,
    label: &str,
    mut traffic: TrafficSpec,
    number: u32,
) -> NodeSpec {
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

pub(crate) fn push_analysis(
    r: &mut Run,
    label: &str,
    step: baton_schemas::analysis::AnalysisSpec,
    metrics: Vec<baton_schemas::analysis::Metric>,
) -> u32 {
    let longest = measuring_time(&metrics);
    let mut spec = NodeSpec::new(unique_name(r, label), NodeKind::Analysis);
    spec.analysis = Some(Box::new(baton_schemas::analysis::AnalysisSpec {
        metrics,
        ..step
    }));
    // A background analysis' metric without a count measures until the rollout stops it.
    let unbounded = spec
        .analysis
        .as_ref()
        .is_some_and(|a| a.metrics.iter().any(|m| m.is_unbounded()));
    spec.timeout = (!unbounded)
        .then(|| baton_schemas::Duration(longest.saturating_add(Duration::from_secs(60))));
    push(r, spec, NodeState::Pending, Timestamp(0))
}

/// The longest the metrics' measurements take: they run side by side, and each query may
/// wait its timeout (30 s by default).
pub(crate) fn measuring_time(metrics: &[baton_schemas::analysis::Metric]) -> Duration {
    metrics
        .iter()
        .map(|m| {
            m.duration()
                .saturating_add(Duration::from_secs(30).saturating_mul(m.count()))
        })
        .max()
        .unwrap_or_default()
}

pub(crate) fn push_held(r: &mut Run, label: &str, until: Option<Timestamp>, now: Timestamp) -> u32 {
    let spec = NodeSpec::new(unique_name(r, label), NodeKind::Noop);
    push(r, spec, NodeState::Held { until }, now)
}

/// Returns the forward action's groups: `canary_weight` split over the canary groups, the
/// rest over the stable ones, each side in name order; groups at 0 are left out.
pub fn weights(
    canary: &[TargetGroup],
    stable: &[TargetGroup],
    canary_weight: u32,
) -> Vec<WeightedTargetGroup> {
    let side = |groups: &[TargetGroup], total: u32| {
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
pub(crate) fn versions(entry: &CellEntry) -> BTreeMap<Version, Vec<TargetGroup>> {
    let mut by: BTreeMap<Version, Vec<TargetGroup>> = BTreeMap::new();
    for g in &entry.status.target_groups {
        if let Some(v) = g.version.as_deref().and_then(|v| Version::parse(v).ok()) {
            by.entry(v).or_default().push(TargetGroup {
                arn: g.arn.clone(),
                name: g.name.clone(),
            });
        }
    }
    by
}

/// Returns the version that owns most of the rule's weight, for a Cell Baton never wrote.
pub(crate) fn serving_from_rule(status: &CellStatus) -> Option<String> {
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
pub(crate) fn supersede(
    entry: &CellEntry,
    rollout: &Rollout,
    by: &BTreeMap<Version, Vec<TargetGroup>>,
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
pub(crate) fn target(
    entry: &CellEntry,
    by: &BTreeMap<Version, Vec<TargetGroup>>,
) -> Result<Version, String> {
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
pub(crate) fn plan(entry: &CellEntry, by: &BTreeMap<Version, Vec<TargetGroup>>) -> Decision {
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
            return Decision::Nothing(Some(message));
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
            return Decision::Nothing(waiting);
        }
        let why = if spec_ok {
            format!("the rule does not forward to {to} as Baton set it; writing it again")
        } else {
            "the Cell's rule changed; writing it".to_owned()
        };
        return Decision::Switch { to, why };
    }
    let Some(from) = serving else {
        return Decision::Switch {
            to: to.clone(),
            why: format!("first version {to}: switched at once"),
        };
    };
    if cell.spec.version.is_some() {
        return Decision::Switch {
            to: to.clone(),
            why: format!("pinned to {to}: switched at once"),
        };
    }
    if to < from {
        return Decision::Switch {
            to: to.clone(),
            why: format!("{to} is older than {from}: rolled back at once"),
        };
    }
    if !by.contains_key(&from) {
        return Decision::Switch {
            to: to.clone(),
            why: format!("the target groups of {from} are gone: traffic moved to {to} at once"),
        };
    }
    if cell.steps().is_empty() {
        return Decision::Switch {
            to: to.clone(),
            why: format!("no steps: switched to {to} at once"),
        };
    }
    Decision::Canary { to, from }
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
pub(crate) fn mismatch(name: &str, rollout: Option<&Rollout>, expect: &Expect) -> Option<String> {
    if let (true, Some(r)) = (expect.idle, rollout) {
        return Some(format!(
            "cell {name:?} rolls out in run {} now; the command was meant for no rollout",
            r.run
        ));
    }
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
