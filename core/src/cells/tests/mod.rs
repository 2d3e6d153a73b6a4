//! Unit tests of the core's Cell decisions: observations, completions, commands and time in,
//! traffic and analysis jobs out. The clock is the `now` each test passes.

use baton_schemas::traffic::{Generation, RuleAction, WeightedTargetGroup};
use baton_schemas::{Document, parse_documents};

use super::*;
use crate::tests::kit::{finished_job, jobs, only_job};
use crate::*;
use std::collections::BTreeMap;
use std::time::Duration;

use baton_schemas::wire::{FailureKind, Job, Outcome, Timestamp};
use baton_schemas::{Attempt, RunId};

const T0: Timestamp = Timestamp(1_800_000_000_000);
const OKRA_README: &str = include_str!("../../../../examples/cells/okra-readme.yaml");
const TEMPLATE: &str = r#"apiVersion: baton.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: success-rate}
spec:
  args: [{name: service-name}]
  metrics:
    - name: success-rate
      successCondition: result[0] >= 0.95
      provider:
        prometheus: {address: "http://prometheus:9090", query: "up{job=\"{{args.service-name}}\"}"}
"#;

fn at(secs: u64) -> Timestamp {
    T0.after(Duration::from_secs(secs))
}

pub(super) fn arn(name: &str) -> String {
    format!("arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/{name}/0123")
}

/// A core holding the documents of `text` (and the success-rate template).
fn core_with(text: &str) -> Core {
    let mut core = Core::new(CoreConfig::default());
    for doc in parse_documents("t.yaml", &format!("{TEMPLATE}---\n{text}"), T0).unwrap() {
        assert!(matches!(
            doc,
            Document::Cell(_) | Document::AnalysisTemplate(_)
        ));
        core.apply(Input::from(doc), T0);
    }
    core
}

/// What a discovery sees: groups `(name, version)` tagged `role: web` and with both version
/// keys (okra's and baton.dev's), and the rule's weights by group name (`None`: no rule).
pub(super) fn observed(
    groups: &[(&str, &str)],
    rule: Option<&[(&str, u32)]>,
    now: Timestamp,
) -> Input {
    let target_groups = groups
        .iter()
        .map(|(name, version)| SeenTargetGroup {
            arn: arn(name),
            name: (*name).to_owned(),
            tags: BTreeMap::from([
                ("role".to_owned(), "web".to_owned()),
                ("okra.mumo.co/version".to_owned(), (*version).to_owned()),
                ("baton.dev/version".to_owned(), (*version).to_owned()),
            ]),
        })
        .collect();
    let rule = rule.map(|r| {
        r.iter()
            .map(|(name, weight)| WeightedTargetGroup {
                arn: arn(name),
                weight: *weight,
            })
            .collect()
    });
    Input::Observed(Box::new(Observation {
        cell: "cell1".into(),
        at: now,
        target_groups: Ok(target_groups),
        source: crate::TargetGroupSource::Tags,
        rule: Ok(rule),
    }))
}

/// Returns a traffic job's weights by target group name.
fn weights(job: &Job) -> Vec<(String, u32)> {
    let traffic = job.traffic().expect("a traffic job");
    traffic
        .action
        .target_groups()
        .iter()
        .map(|g| {
            let name = g.arn.split('/').nth(1).unwrap().to_owned();
            (name, g.weight)
        })
        .collect()
}

fn named(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
    pairs.iter().map(|(n, w)| ((*n).to_owned(), *w)).collect()
}

/// Reports `job` done as a worker would: a traffic job with the weights it wrote.
fn succeed(core: &mut Core, job: &Job, now: Timestamp) -> Vec<Action> {
    let output = match job.traffic() {
        Some(t) => serde_json::json!({"rule": "arn:rule", "write": "modified", "targetGroups": t.action.target_groups()}).to_string(),
        None => r#"{"phase":"Successful"}"#.to_owned(),
    };
    report(core, job, Outcome::Succeeded { output }, now)
}

fn report(core: &mut Core, job: &Job, outcome: Outcome, now: Timestamp) -> Vec<Action> {
    core.apply(finished_job(job, outcome, now), now)
}

fn status(core: &Core) -> &CellStatus {
    &core.cell("cell1").unwrap().status
}

fn phase(core: &Core) -> CellPhase {
    core.cell_phase(core.cell("cell1").unwrap())
}

fn command(core: &mut Core, command: CellCommand, now: Timestamp) -> Vec<Action> {
    core.apply(
        Input::CellCommand {
            cell: "cell1".into(),
            command,
            expect: Expect::default(),
            from: None,
        },
        now,
    )
}

/// A core whose okra README Cell serves 1.0.0 on `a1`, `a2` (after its first switch).
fn serving_v1(text: &str) -> Core {
    let mut core = core_with(text);
    let v1 = [("a1", "1.0.0"), ("a2", "1.0.0")];
    let job = only_job(&core.apply(observed(&v1, None, at(1)), at(1)));
    assert_eq!(weights(&job), named(&[("a1", 50), ("a2", 50)]));
    let actions = succeed(&mut core, &job, at(2));
    assert!(jobs(&actions).is_empty());
    assert_eq!(status(&core).serving_version.as_deref(), Some("1.0.0"));
    assert_eq!(phase(&core), CellPhase::Serving);
    core
}

const V1_V2: [(&str, &str); 4] = [
    ("a1", "1.0.0"),
    ("a2", "1.0.0"),
    ("b1", "2.0.0"),
    ("b2", "2.0.0"),
];
const RULE_V1: [(&str, u32); 2] = [("a1", 50), ("a2", 50)];

#[test]
fn the_first_version_switches_at_once_and_an_unchanged_rule_is_left_alone() {
    let mut core = serving_v1(OKRA_README);
    // The next discovery sees the rule as written: nothing to do, nothing written.
    let v1 = [("a1", "1.0.0"), ("a2", "1.0.0")];
    assert!(
        core.apply(observed(&v1, Some(&RULE_V1), at(40)), at(40))
            .is_empty()
    );
    assert!(
        core.take_changes().cells.len() == 1,
        "the sync time is kept"
    );
    // Someone changed the rule by hand: Baton writes it back.
    let job = only_job(&core.apply(observed(&v1, Some(&[("a1", 100)]), at(70)), at(70)));
    assert_eq!(weights(&job), named(&[("a1", 50), ("a2", 50)]));
}

#[test]
fn okra_cells_accumulate_weights_run_the_analysis_and_expire_the_pause() {
    let mut core = serving_v1(OKRA_README);
    // 2.0.0 is complete (replicas: 2): the rollout starts by itself.
    let job = only_job(&core.apply(observed(&V1_V2, Some(&RULE_V1), at(10)), at(10)));
    assert_eq!(
        weights(&job),
        named(&[("b1", 10), ("b2", 10), ("a1", 40), ("a2", 40)])
    );
    assert_eq!(phase(&core), CellPhase::Progressing);
    let analysis = only_job(&succeed(&mut core, &job, at(11)));
    let spec = analysis.analysis().unwrap();
    assert_eq!(
        spec.metrics[0].provider.prometheus.as_ref().unwrap().query,
        "up{job=\"exampleapp\"}",
        "the template's argument comes from the step"
    );
    // The analysis passes: a 5 s pause, a planner timer, not a job.
    assert!(jobs(&succeed(&mut core, &analysis, at(12))).is_empty());
    assert_eq!(phase(&core), CellPhase::Paused);
    assert_eq!(core.next_deadline(), Some(at(17)));
    assert!(jobs(&core.apply(Input::Tick, at(16))).is_empty());
    // okra adds the weights up: 20 + 40 = 60.
    let job = only_job(&core.apply(Input::Tick, at(17)));
    assert_eq!(
        weights(&job),
        named(&[("b1", 30), ("b2", 30), ("a1", 20), ("a2", 20)])
    );
    let last = only_job(&succeed(&mut core, &job, at(18)));
    assert_eq!(weights(&last), named(&[("b1", 50), ("b2", 50)]));
    let run = last.run.clone();
    let actions = succeed(&mut core, &last, at(19));
    assert!(actions.contains(&Action::RunFinished {
        run,
        state: baton_schemas::status::State::Succeeded
    }));
    let s = status(&core);
    assert_eq!(s.serving_version.as_deref(), Some("2.0.0"));
    assert_eq!(
        (phase(&core), s.rollout.is_none()),
        (CellPhase::Serving, true)
    );
}

#[test]
fn baton_cells_use_absolute_weights_and_wait_for_a_resume() {
    let text = OKRA_README
        .replace("okra.mumo.co/v1alpha1", "baton.dev/v1alpha1")
        .replace("duration: 5s", "{}");
    let mut core = serving_v1(&text);
    let job = only_job(&core.apply(observed(&V1_V2, Some(&RULE_V1), at(10)), at(10)));
    let analysis = only_job(&succeed(&mut core, &job, at(11)));
    assert!(jobs(&succeed(&mut core, &analysis, at(12))).is_empty());
    assert_eq!(phase(&core), CellPhase::Paused);
    // A pause without a duration never ends by itself.
    assert!(jobs(&core.apply(Input::Tick, at(100_000))).is_empty());
    let job = only_job(&command(&mut core, CellCommand::Resume, at(200)));
    assert_eq!(
        weights(&job),
        named(&[("b1", 20), ("b2", 20), ("a1", 30), ("a2", 30)]),
        "40% absolute"
    );
    // Nothing is paused any more.
    let refused = command(&mut core, CellCommand::Resume, at(201));
    assert!(
        matches!(&refused[..], [Action::Refused(Refusal::CellCommand(why))] if why.contains("not paused"))
    );
}

#[test]
fn a_failing_analysis_gives_the_stable_version_all_traffic_and_blocks_the_version() {
    let mut core = serving_v1(OKRA_README);
    let job = only_job(&core.apply(observed(&V1_V2, Some(&RULE_V1), at(10)), at(10)));
    let analysis = only_job(&succeed(&mut core, &job, at(11)));
    let outcome = Outcome::Failed {
        error: "analysis failed: metric success-rate failed".into(),
        output: Some(r#"{"phase":"Failed"}"#.into()),
        kind: FailureKind::Retryable,
    };
    let rollback = only_job(&report(&mut core, &analysis, outcome, at(12)));
    assert_eq!(weights(&rollback), named(&[("a1", 50), ("a2", 50)]));
    let actions = succeed(&mut core, &rollback, at(13));
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::RunFinished {
            state: baton_schemas::status::State::Failed,
            ..
        }
    )));
    let s = status(&core);
    assert_eq!(phase(&core), CellPhase::Degraded);
    assert_eq!(s.serving_version.as_deref(), Some("1.0.0"));
    assert_eq!(s.blocked[0].version, "2.0.0");
    assert!(s.blocked[0].cause.contains("metric success-rate failed"));
    // The blocked version is not tried again.
    let rule = [("a1", 50), ("a2", 50)];
    assert!(jobs(&core.apply(observed(&V1_V2, Some(&rule), at(40)), at(40))).is_empty());
    assert!(
        status(&core)
            .message
            .as_deref()
            .unwrap()
            .contains("2.0.0 is blocked")
    );
    // A newer version is.
    let mut v3 = V1_V2.to_vec();
    v3.extend([("c1", "3.0.0"), ("c2", "3.0.0")]);
    let job = only_job(&core.apply(observed(&v3, Some(&rule), at(70)), at(70)));
    assert_eq!(weights(&job)[0], ("c1".to_owned(), 10));
    // Promote during its analysis stops the analysis and gives 3.0.0 everything.
    let analysis = only_job(&succeed(&mut core, &job, at(71)));
    let actions = command(&mut core, CellCommand::Promote, at(72));
    assert!(actions.contains(&Action::AnnounceCancel {
        run: analysis.run.clone(),
        node: Some(analysis.node.clone())
    }));
    let last = only_job(&actions);
    assert_eq!(weights(&last), named(&[("c1", 50), ("c2", 50)]));
}

#[test]
fn an_inconclusive_analysis_waits_and_an_abort_rolls_back() {
    let mut core = serving_v1(OKRA_README);
    let job = only_job(&core.apply(observed(&V1_V2, Some(&RULE_V1), at(10)), at(10)));
    let analysis = only_job(&succeed(&mut core, &job, at(11)));
    let outcome = Outcome::Failed {
        error: "analysis inconclusive".into(),
        output: Some(r#"{"phase":"Inconclusive"}"#.into()),
        kind: FailureKind::Retryable,
    };
    assert!(jobs(&report(&mut core, &analysis, outcome, at(12))).is_empty());
    assert_eq!(phase(&core), CellPhase::Paused);
    let rollback = only_job(&command(&mut core, CellCommand::Abort, at(20)));
    assert_eq!(weights(&rollback), named(&RULE_V1));
    succeed(&mut core, &rollback, at(21));
    assert_eq!(status(&core).blocked[0].cause, "aborted by a person");
}

#[test]
fn a_pin_and_vanished_serving_groups_switch_at_once() {
    let mut core = serving_v1(OKRA_README);
    // Roll out 2.0.0 all the way with promote.
    let job = only_job(&core.apply(observed(&V1_V2, Some(&RULE_V1), at(10)), at(10)));
    let promote_pending = command(&mut core, CellCommand::Promote, at(10));
    assert!(
        jobs(&promote_pending).is_empty(),
        "waits for the traffic node in flight"
    );
    let last = only_job(&succeed(&mut core, &job, at(11)));
    assert_eq!(weights(&last), named(&[("b1", 50), ("b2", 50)]));
    succeed(&mut core, &last, at(12));
    assert_eq!(status(&core).serving_version.as_deref(), Some("2.0.0"));
    // Applying a pin to 1.0.0 rolls back at once, no steps.
    let pinned = OKRA_README.replace("replicas: 2", "replicas: 2\n  version: 1.0.0");
    let doc = parse_documents("c.yaml", &pinned, T0).unwrap().remove(0);
    let job = only_job(&core.apply(Input::from(doc), at(20)));
    assert_eq!(weights(&job), named(&RULE_V1));
    let rule_v2 = [("b1", 50), ("b2", 50)];
    assert!(jobs(&core.apply(observed(&V1_V2, Some(&rule_v2), at(21)), at(21))).is_empty());
    succeed(&mut core, &job, at(22));
    assert_eq!(status(&core).serving_version.as_deref(), Some("1.0.0"));
    // 1.0.0's groups disappear while it is pinned: nothing to pin to, nothing written.
    let only_v2 = [("b1", "2.0.0"), ("b2", "2.0.0")];
    assert!(jobs(&core.apply(observed(&only_v2, Some(&RULE_V1), at(31)), at(31))).is_empty());
    assert_eq!(
        status(&core).message.as_deref(),
        Some(
            "the pinned version 1.0.0 has no target groups (2 target group(s) match; versions are read from the tags okra.mumo.co/version)"
        )
    );
    // Unpinned, the remaining version gets the traffic at once: no stable groups to share with.
    let doc = parse_documents("c.yaml", OKRA_README, T0)
        .unwrap()
        .remove(0);
    let job = only_job(&core.apply(Input::from(doc), at(40)));
    assert_eq!(weights(&job), named(&[("b1", 50), ("b2", 50)]));
}

#[test]
fn a_version_waits_for_its_replicas_and_a_newer_one_replaces_a_rollout() {
    let mut core = serving_v1(OKRA_README);
    let partial = [("a1", "1.0.0"), ("a2", "1.0.0"), ("b1", "2.0.0")];
    assert!(jobs(&core.apply(observed(&partial, Some(&RULE_V1), at(10)), at(10))).is_empty());
    assert_eq!(
        status(&core).message.as_deref(),
        Some("version 2.0.0 has 1 of 2 target groups; waiting for the rest")
    );
    let job = only_job(&core.apply(observed(&V1_V2, Some(&RULE_V1), at(20)), at(20)));
    let analysis = only_job(&succeed(&mut core, &job, at(21)));
    // 3.0.0 arrives during the analysis: the analysis is stopped, a new rollout starts.
    let mut v3 = V1_V2.to_vec();
    v3.extend([("c1", "3.0.0"), ("c2", "3.0.0")]);
    let rule = [("b1", 10), ("b2", 10), ("a1", 40), ("a2", 40)];
    let actions = core.apply(observed(&v3, Some(&rule), at(30)), at(30));
    assert!(actions.contains(&Action::AnnounceCancel {
        run: analysis.run.clone(),
        node: Some(analysis.node.clone())
    }));
    let job = only_job(&actions);
    assert_ne!(job.run, analysis.run);
    assert_eq!(
        weights(&job),
        named(&[("c1", 10), ("c2", 10), ("a1", 40), ("a2", 40)]),
        "2.0.0 leaves the rule; 1.0.0 stays the stable version"
    );
}

#[test]
fn the_rollout_survives_a_store_round_trip() {
    let mut store = crate::tests::store::MemoryStore::default();
    let mut core = serving_v1(OKRA_README);
    let job = only_job(&core.apply(observed(&V1_V2, Some(&RULE_V1), at(10)), at(10)));
    let analysis = only_job(&succeed(&mut core, &job, at(11)));
    succeed(&mut core, &analysis, at(12));
    store.commit(&core.take_changes());
    let mut restored = Core::restore(CoreConfig::default(), store.load());
    assert_eq!(restored.cell("cell1"), core.cell("cell1"));
    assert_eq!(restored.analysis_templates().count(), 1);
    // The pause's timer came back with the run: it ends on time in the restored core.
    assert_eq!(restored.next_deadline(), Some(at(17)));
    let job = only_job(&restored.apply(Input::Tick, at(17)));
    assert_eq!(weights(&job)[0], ("b1".to_owned(), 30));
}

/// The weights' history by target group name: what a chart of the Cell draws.
fn history(core: &Core) -> Vec<(Timestamp, Vec<(String, u32)>)> {
    let name = |arn: &str| arn.split('/').nth(1).unwrap().to_owned();
    status(core)
        .weight_history
        .iter()
        .map(|c| {
            let weights = c.weights.iter().map(|w| (name(&w.arn), w.weight));
            (c.at, weights.collect())
        })
        .collect()
}

#[test]
fn the_weight_history_keeps_each_change_in_order_bounded_and_through_a_store_round_trip() {
    let mut store = crate::tests::store::MemoryStore::default();
    let mut core = serving_v1(OKRA_README);
    // The rule seen again as written is no change.
    let v1 = [("a1", "1.0.0"), ("a2", "1.0.0")];
    core.apply(observed(&v1, Some(&RULE_V1), at(5)), at(5));
    let job = only_job(&core.apply(observed(&V1_V2, Some(&RULE_V1), at(10)), at(10)));
    succeed(&mut core, &job, at(11));
    // The rollout's graph: each node follows the one before, and the traffic node names
    // the rule it wrote.
    let shown = core.run(&job.run).unwrap().status();
    assert!(shown.nodes.len() >= 2, "{shown:?}");
    assert!(shown.nodes[0].needs.is_empty());
    assert_eq!(shown.nodes[1].needs, [shown.nodes[0].name.clone()]);
    let touched = shown.nodes[0].touches.as_deref().unwrap_or_default();
    assert!(
        touched.starts_with("listener rule of priority "),
        "{touched}"
    );
    let first_step = named(&[("b1", 10), ("b2", 10), ("a1", 40), ("a2", 40)]);
    assert_eq!(
        history(&core),
        vec![
            (at(1), vec![]),
            (at(2), named(&RULE_V1)),
            (at(11), first_step.clone()),
        ],
        "no rule at first, the switch, the first step"
    );
    let view = core.cell_views().next().unwrap();
    let last = view.weight_history.last().unwrap();
    assert_eq!(last.at, at(11).to_string());
    assert_eq!(
        (
            last.weights[0].name.as_deref(),
            last.weights[0].version.as_deref()
        ),
        (Some("b1"), Some("2.0.0"))
    );
    store.commit(&core.take_changes());
    let restored = Core::restore(CoreConfig::default(), store.load());
    assert_eq!(history(&restored), history(&core));

    // Only the last WEIGHT_HISTORY changes are kept.
    let mut s = CellStatus::default();
    let n = super::WEIGHT_HISTORY as u32 + 10;
    for i in 0..n {
        let weights = vec![WeightedTargetGroup {
            arn: arn("a1"),
            weight: i,
        }];
        s.set_weights(weights, at(u64::from(i)));
    }
    assert_eq!(s.weight_history.len(), super::WEIGHT_HISTORY);
    assert_eq!(s.weight_history[0].weights[0].weight, 10);
    assert_eq!(s.weight_history.last().unwrap().weights[0].weight, n - 1);
    assert_eq!(s.weights[0].weight, n - 1);
}

#[test]
fn weights_split_each_side_evenly_in_name_order() {
    use super::{TargetGroup, weights};
    let g = |n: &str| TargetGroup {
        arn: n.to_owned(),
        name: n.to_owned(),
    };
    let w = |gs: Vec<WeightedTargetGroup>| {
        gs.into_iter()
            .map(|g| (g.arn, g.weight))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        w(weights(&[g("c1"), g("c2"), g("c3")], &[], 100)),
        [("c1".into(), 33), ("c2".into(), 33), ("c3".into(), 34)]
    );
    assert_eq!(
        w(weights(
            &[g("c1"), g("c2"), g("c3")],
            &[g("s1"), g("s2")],
            20
        )),
        [
            ("c1".into(), 6),
            ("c2".into(), 6),
            ("c3".into(), 8),
            ("s1".into(), 40),
            ("s2".into(), 40)
        ]
    );
    assert_eq!(w(weights(&[g("c1")], &[g("s1")], 0)), [("s1".into(), 100)]);
}

#[test]
fn a_step_alb_would_refuse_is_not_sent_and_waits_for_a_person() {
    // replicas: 2 fits (2 + 2), but the serving version has four target groups.
    let mut core = core_with(OKRA_README);
    let v1 = [
        ("a1", "1.0.0"),
        ("a2", "1.0.0"),
        ("a3", "1.0.0"),
        ("a4", "1.0.0"),
    ];
    let job = only_job(&core.apply(observed(&v1, None, at(1)), at(1)));
    assert_eq!(
        weights(&job),
        named(&[("a1", 25), ("a2", 25), ("a3", 25), ("a4", 25)])
    );
    succeed(&mut core, &job, at(2));
    // Two canary groups beside four stable ones make six in one forward action.
    let mut both = v1.to_vec();
    both.extend([("b1", "2.0.0"), ("b2", "2.0.0")]);
    let rule = [("a1", 25), ("a2", 25), ("a3", 25), ("a4", 25)];
    assert!(jobs(&core.apply(observed(&both, Some(&rule), at(10)), at(10))).is_empty());
    let s = status(&core);
    assert_eq!(phase(&core), CellPhase::Paused);
    assert_eq!(
        s.message.as_deref(),
        Some(
            "step 0 cannot be written: 6 target groups: one ALB forward action holds at most 5; promote or abort"
        )
    );
    // Promote skips the steps: 2.0.0 alone fits.
    let last = only_job(&command(&mut core, CellCommand::Promote, at(11)));
    assert_eq!(weights(&last), named(&[("b1", 50), ("b2", 50)]));
}

#[test]
fn a_cell_applied_again_after_its_deletion_gets_new_run_ids() {
    let mut core = serving_v1(OKRA_README);
    let first = core.runs().map(|r| r.id.clone()).collect::<Vec<_>>();
    assert_eq!(first, [RunId::new("cell1-1")]);
    core.apply(Input::Remove(Registered::Cell("cell1".into())), at(5));
    assert!(core.cell("cell1").is_none());
    assert_eq!(
        core.take_changes().removed,
        [Registered::Cell("cell1".into())]
    );
    let doc = parse_documents("c.yaml", OKRA_README, T0)
        .unwrap()
        .remove(0);
    core.apply(Input::from(doc), at(6));
    let v1 = [("a1", "1.0.0"), ("a2", "1.0.0")];
    // The rule the old Cell wrote is adopted as it is: 1.0.0 serves, nothing is written.
    assert!(jobs(&core.apply(observed(&v1, Some(&RULE_V1), at(7)), at(7))).is_empty());
    assert_eq!(status(&core).serving_version.as_deref(), Some("1.0.0"));
    // Without the rule, the first switch is a new run.
    let job = only_job(&core.apply(observed(&v1, None, at(8)), at(8)));
    assert_eq!(
        job.run,
        RunId::new("cell1-2"),
        "cell1-1 is the old Cell's run"
    );
    assert_eq!(core.run(&RunId::new("cell1-1")).unwrap().nodes.len(), 1);
}

mod background;
mod commands;
mod experiment;
mod wire;

/// A Cell's phase is derived from what the store keeps. A store written before carried the
/// phase itself: `Degraded` (the one phase the rest cannot tell) is read from it.
#[test]
fn a_degraded_cell_stays_degraded_through_a_store_that_kept_the_phase() {
    let mut core = serving_v1(OKRA_README);
    let job = only_job(&core.apply(observed(&V1_V2, Some(&RULE_V1), at(10)), at(10)));
    let analysis = only_job(&succeed(&mut core, &job, at(11)));
    let outcome = Outcome::Failed {
        error: "analysis failed".into(),
        output: Some(r#"{"phase":"Failed"}"#.into()),
        kind: FailureKind::Retryable,
    };
    let rollback = only_job(&report(&mut core, &analysis, outcome, at(12)));
    succeed(&mut core, &rollback, at(13));
    assert_eq!(phase(&core), CellPhase::Degraded);

    let entry = core.cell("cell1").unwrap();
    let mut stored = serde_json::to_value(entry).unwrap();
    let status = stored["status"].as_object_mut().unwrap();
    assert_eq!(status.remove("rolledBack"), Some(serde_json::json!(true)));
    assert!(!status.contains_key("phase"), "the phase is not stored");
    status.insert("phase".into(), "Degraded".into());
    let before: CellEntry = serde_json::from_value(stored).unwrap();
    let restored = Core::restore(
        CoreConfig::default(),
        Snapshot {
            cells: vec![before],
            runs: core.runs().cloned().collect(),
            ..Snapshot::default()
        },
    );
    assert_eq!(
        restored.cell_phase(restored.cell("cell1").unwrap()),
        CellPhase::Degraded
    );
    assert!(restored.cell("cell1").unwrap().status.rolled_back);
}

/// A Cell whose first discovery finds its rule already giving the target all the traffic
/// writes nothing, and serves.
#[test]
fn a_cell_that_finds_its_rule_in_place_serves_without_a_write() {
    let mut core = core_with(OKRA_README);
    let v1 = [("a1", "1.0.0"), ("a2", "1.0.0")];
    let actions = core.apply(observed(&v1, Some(&RULE_V1), at(1)), at(1));
    assert!(jobs(&actions).is_empty(), "{actions:?}");
    assert_eq!(status(&core).serving_version.as_deref(), Some("1.0.0"));
    assert_eq!(phase(&core), CellPhase::Serving);
}
