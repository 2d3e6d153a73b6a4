//! Experiment steps: the step becomes one analysis job carrying the experiment (its
//! ReplicaSets named and its analyses resolved), the rollout goes on when it passes, and a
//! failed experiment rolls back and blocks the version, as a failed analysis does.

use super::*;

const ANALYSIS_STEP: &str = "      - analysis:\n          args:\n          - name: service-name\n            value: exampleapp\n          templates:\n          - templateName: success-rate\n";

/// okra's README Cell with its analysis step an experiment running `wy` (in the same file).
fn with_experiment(template: &str) -> String {
    let experiment = format!(
        "      - experiment:\n          duration: 30s\n          templates:\n          - {{name: wy, specRef: wy, replicas: 2}}\n          analyses:\n          - name: rate\n            templateName: {template}\n            args: [{{name: service-name, valueFrom: {{fieldRef: {{fieldPath: status.desiredVersion}}}}}}]\n"
    );
    assert!(OKRA_README.contains(ANALYSIS_STEP));
    let cell = OKRA_README
        .replace(ANALYSIS_STEP, &experiment)
        .replace("  name: cell1\n", "  name: cell1\n  namespace: web\n");
    format!(
        "{cell}---\napiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {{name: wy}}\nspec:\n  selector: {{matchLabels: {{app: wy}}}}\n  template:\n    metadata: {{labels: {{app: wy}}}}\n    spec: {{containers: [{{name: wy, image: mumoshu/wy}}]}}\n"
    )
}

#[test]
fn an_experiment_step_is_one_job_and_the_rollout_goes_on_when_it_passes() {
    let mut core = serving_v1(&with_experiment("success-rate"));
    let weight = only_job(&core.apply(observed(&V1_V2, Some(&RULE_V1), at(10)), at(10)));
    let job = only_job(&succeed(&mut core, &weight, at(11)));
    assert_eq!(job.node.as_str(), "s1-experiment");
    let spec = job.analysis().expect("an analysis job");
    let e = spec.experiment.as_deref().expect("carrying the experiment");
    // Named after the rollout's run, which the Cell's second run is.
    assert_eq!(e.name, "cell1-2-1-experiment");
    assert_eq!(spec.namespace.as_deref(), Some("web"));
    assert_eq!(e.duration.map(|d| d.0.as_secs()), Some(30));
    assert_eq!(e.progress_deadline.0.as_secs(), 600);
    let rs = &e.replica_sets[0];
    assert_eq!(
        (rs.name.as_str(), rs.spec_ref.as_str(), rs.replicas),
        ("cell1-2-1-experiment-wy", "wy", 2)
    );
    let carried = rs.replica_set.as_ref().expect("the file's ReplicaSet");
    assert_eq!(
        carried["spec"]["template"]["metadata"]["labels"]["app"],
        "wy"
    );
    assert_eq!(e.labels["baton.dev/cell"], "cell1");
    assert_eq!(e.labels["baton.dev/run"], "cell1-2");
    // The analysis is resolved with the Cell's fields.
    assert_eq!(e.analyses[0].name, "rate");
    assert!(!e.analyses[0].required);
    assert_eq!(
        e.analyses[0].metrics[0]
            .provider
            .prometheus
            .as_ref()
            .unwrap()
            .query,
        "up{job=\"2.0.0\"}"
    );
    // Room for the ReplicaSets to come up, the duration, and their removal.
    assert_eq!(job.timeout_ms, Some((600 + 30 + 120) * 1000));
    // It passes: the pause (step 2) follows, then the last weights.
    assert!(jobs(&succeed(&mut core, &job, at(50))).is_empty());
    let next = only_job(&core.apply(Input::Tick, at(60)));
    assert_eq!(weights(&next)[0], ("b1".to_owned(), 30));
}

#[test]
fn a_failed_experiment_rolls_back_and_blocks_the_version() {
    let mut core = serving_v1(&with_experiment("success-rate"));
    let weight = only_job(&core.apply(observed(&V1_V2, Some(&RULE_V1), at(10)), at(10)));
    let job = only_job(&succeed(&mut core, &weight, at(11)));
    let outcome = Outcome::Failed {
        error: "experiment cell1-2-1-experiment: not available within the progress deadline of 600s: cell1-2-1-experiment-wy 0/2 available".into(),
        output: Some(r#"{"phase":"Failed"}"#.into()),
        kind: FailureKind::Retryable,
    };
    let rollback = only_job(&report(&mut core, &job, outcome, at(12)));
    assert_eq!(weights(&rollback), named(&RULE_V1));
    succeed(&mut core, &rollback, at(13));
    let s = status(&core);
    assert_eq!(s.blocked[0].version, "2.0.0");
    assert!(
        s.blocked[0]
            .cause
            .starts_with("step 1: experiment cell1-2-1-experiment: not available")
    );
}

#[test]
fn an_experiment_that_cannot_be_planned_waits_for_a_person() {
    let mut core = serving_v1(&with_experiment("missing"));
    let weight = only_job(&core.apply(observed(&V1_V2, Some(&RULE_V1), at(10)), at(10)));
    assert!(jobs(&succeed(&mut core, &weight, at(11))).is_empty());
    assert_eq!(phase(&core), CellPhase::Paused);
    assert_eq!(
        status(&core).message.as_deref(),
        Some(
            "step 1: analysis rate: AnalysisTemplate \"missing\" is not registered; resume tries again"
        )
    );
}

#[test]
fn an_experiment_of_a_cell_without_a_namespace_waits_and_says_why() {
    // It would run in the worker's own namespace, where Baton's credentials are.
    let text = with_experiment("success-rate").replace("  namespace: web\n", "");
    let mut core = serving_v1(&text);
    let weight = only_job(&core.apply(observed(&V1_V2, Some(&RULE_V1), at(10)), at(10)));
    assert!(jobs(&succeed(&mut core, &weight, at(11))).is_empty());
    assert!(
        status(&core)
            .message
            .as_deref()
            .unwrap()
            .contains("give the Cell metadata.namespace"),
    );
}
