//! Background analysis (`canary.analysis`): it runs beside the steps from `startingStep`, a
//! failure rolls back and blocks the version whatever step is under way, and it stops when
//! the rollout ends.

use super::*;

const BACKGROUND: &str = r#"apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: error-rate}
spec:
  args: [{name: version}]
  metrics:
    - name: error-rate
      interval: 1m
      successCondition: result[0] < 0.01
      provider:
        prometheus: {address: "http://prometheus:9090", query: "errors{version=\"{{args.version}}\"}"}
---
"#;

/// okra's README Cell with a background analysis starting at `step`.
fn with_background(step: u32) -> String {
    let background = format!(
        "      analysis:\n        startingStep: {step}\n        templates: [{{templateName: error-rate}}]\n        args: [{{name: version, valueFrom: {{fieldRef: {{fieldPath: status.desiredVersion}}}}}}]\n"
    );
    let steps = "    canary:\n      steps:\n";
    assert!(OKRA_README.contains(steps));
    let cell = OKRA_README.replace(steps, &format!("    canary:\n{background}      steps:\n"));
    format!("{BACKGROUND}{cell}")
}

fn split(actions: &[Action]) -> (Option<Job>, Option<Job>) {
    let all = jobs(actions);
    let background = all
        .iter()
        .find(|j| j.node.as_str().starts_with("background-analysis"))
        .map(|j| (*j).clone());
    let other = all
        .iter()
        .find(|j| !j.node.as_str().starts_with("background-analysis"))
        .map(|j| (*j).clone());
    (background, other)
}

#[test]
fn a_failing_background_analysis_rolls_back_whatever_step_is_under_way() {
    let mut core = serving_v1(&with_background(0));
    let actions = core.apply(observed(&V1_V2, Some(&RULE_V1), at(10)), at(10));
    let (background, weight) = split(&actions);
    let background = background.expect("the background analysis starts with the rollout");
    let weight = weight.expect("step 0's weights");
    assert_eq!(
        weights(&weight),
        named(&[("b1", 10), ("b2", 10), ("a1", 40), ("a2", 40)])
    );
    // It measures until stopped: no count, no timeout; the version comes from the Cell.
    assert_eq!(background.timeout_ms, None);
    let metric = &background.analysis().unwrap().metrics[0];
    assert!(metric.is_unbounded());
    assert_eq!(
        metric.provider.prometheus.as_ref().unwrap().query,
        "errors{version=\"2.0.0\"}"
    );
    // Step 1's analysis runs; the background analysis fails meanwhile.
    let step = only_job(&succeed(&mut core, &weight, at(11)));
    assert_eq!(step.node.as_str(), "s1-analysis");
    let outcome = Outcome::Failed {
        error: "analysis failed: metric error-rate failed".into(),
        output: Some(r#"{"phase":"Failed"}"#.into()),
        kind: FailureKind::Retryable,
    };
    let actions = report(&mut core, &background, outcome, at(12));
    assert!(actions.contains(&Action::AnnounceCancel {
        run: step.run.clone(),
        node: Some(step.node.clone())
    }));
    let rollback = only_job(&actions);
    assert_eq!(weights(&rollback), named(&RULE_V1));
    succeed(&mut core, &rollback, at(13));
    let s = status(&core);
    assert_eq!(phase(&core), CellPhase::Degraded);
    assert_eq!(s.blocked[0].version, "2.0.0");
    assert_eq!(
        s.blocked[0].cause,
        "background analysis: analysis failed: metric error-rate failed"
    );
}

#[test]
fn a_background_analysis_starts_at_its_step_and_stops_when_the_rollout_ends() {
    let mut core = serving_v1(&with_background(2));
    let weight = only_job(&core.apply(observed(&V1_V2, Some(&RULE_V1), at(10)), at(10)));
    let analysis = only_job(&succeed(&mut core, &weight, at(11)));
    // Step 2 (the pause) starts it.
    let (background, other) = split(&succeed(&mut core, &analysis, at(12)));
    let background = background.expect("started at step 2");
    assert!(other.is_none(), "the pause is no job");
    // The pause expires, the last weights and the final switch are written.
    let next = only_job(&core.apply(Input::Tick, at(20)));
    let last = only_job(&succeed(&mut core, &next, at(21)));
    assert_eq!(last.node.as_str(), "promote");
    let actions = succeed(&mut core, &last, at(22));
    assert!(actions.contains(&Action::AnnounceCancel {
        run: background.run.clone(),
        node: Some(background.node.clone())
    }));
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::RunFinished {
            state: baton_schemas::status::State::Succeeded,
            ..
        }
    )));
    assert_eq!(status(&core).serving_version.as_deref(), Some("2.0.0"));
}

#[test]
fn an_inconclusive_background_analysis_holds_the_rollout_for_a_person() {
    let mut core = serving_v1(&with_background(0));
    let (background, weight) = split(&core.apply(observed(&V1_V2, Some(&RULE_V1), at(10)), at(10)));
    let (background, weight) = (background.unwrap(), weight.unwrap());
    // While step 0's weights are being written, the verdict waits for the write to end.
    let outcome = Outcome::Failed {
        error: "analysis inconclusive".into(),
        output: Some(r#"{"phase":"Inconclusive"}"#.into()),
        kind: FailureKind::Retryable,
    };
    assert!(jobs(&report(&mut core, &background, outcome, at(11))).is_empty());
    assert_eq!(phase(&core), CellPhase::Progressing);
    assert!(jobs(&succeed(&mut core, &weight, at(12))).is_empty());
    assert_eq!(phase(&core), CellPhase::Paused);
    // Resumed, the rollout goes on without it.
    let analysis = only_job(&command(&mut core, CellCommand::Resume, at(20)));
    assert_eq!(analysis.node.as_str(), "s1-analysis");
}
