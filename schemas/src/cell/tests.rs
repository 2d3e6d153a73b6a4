use super::*;
use crate::wire::Timestamp;
use crate::{Document, parse_documents};

const OKRA_README: &str = include_str!("../../../examples/cells/okra-readme.yaml");

fn cell(text: &str) -> Cell {
    match parse_documents("c.yaml", text, Timestamp(0))
        .unwrap()
        .remove(0)
    {
        Document::Cell(c) => *c,
        other => panic!("not a cell: {other:?}"),
    }
}

fn errors(text: &str) -> Vec<String> {
    parse_documents("c.yaml", text, Timestamp(0))
        .unwrap_err()
        .errors
        .iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn okras_readme_cell_parses_with_okras_semantics() {
    let c = cell(OKRA_README);
    assert_eq!(c.semantics(), Semantics::Okra);
    assert_eq!(c.replicas(), 2);
    assert_eq!(c.priority(), 10);
    assert_eq!(c.version_labels(), [OKRA_VERSION_LABEL]);
    assert_eq!(c.conditions().hosts, ["example.com"]);
    let steps = c.steps();
    assert_eq!(steps[0], StepKind::SetWeight(20));
    assert!(
        matches!(steps[1], StepKind::Analysis(a) if a.templates[0].template_name == "success-rate")
    );
    assert_eq!(
        steps[2],
        StepKind::Pause(Some(std::time::Duration::from_secs(5)))
    );
    // okra adds the weights up: 20, then 20 + 40.
    assert_eq!(steps[3], StepKind::SetWeight(60));
}

#[test]
fn baton_cells_use_absolute_weights_and_pauses_that_wait() {
    let text = OKRA_README
        .replace(OKRA_API_VERSION, crate::API_VERSION)
        .replace("duration: 5s", "{}");
    let c = cell(&text);
    assert_eq!(c.semantics(), Semantics::Baton);
    assert_eq!(c.version_labels(), [BATON_VERSION_LABEL]);
    let steps = c.steps();
    assert_eq!(steps[2], StepKind::Pause(None));
    assert_eq!(steps[3], StepKind::SetWeight(40));
    // The same pause in an okra Cell expires at once.
    let okra = cell(&OKRA_README.replace("duration: 5s", "{}"));
    assert_eq!(
        okra.steps()[2],
        StepKind::Pause(Some(std::time::Duration::ZERO))
    );
}

#[test]
fn what_baton_refuses_is_named_with_its_path() {
    let text = OKRA_README
        .replace("      - setWeight: 40\n", "      - setWeight: 90\n      - experiment: {duration: 5m}\n      - {setWeight: 10, pause: {}}\n")
        .replace("replicas: 2", "replicas: 6\n  version: v2")
        .replace("type: AWSApplicationLoadBalancer", "type: AWSNetworkLoadBalancer");
    let e = errors(&text);
    assert_eq!(
        e,
        [
            "spec.ingress.type: \"AWSNetworkLoadBalancer\" is not supported: the only ingress type is AWSApplicationLoadBalancer",
            "spec.replicas: 6: a version's target groups share one ALB forward action, which holds 1 to 5",
            "spec.version: \"v2\" is not a semantic version such as 1.2.3",
            "spec.updateStrategy.canary.steps[3].setWeight: the setWeight steps add up to 110 here: okra.mumo.co Cells accumulate them, so keep the sum at most 100",
            "spec.updateStrategy.canary.steps[4].experiment.templates: give at least one template (name, specRef, replicas)",
            "spec.updateStrategy.canary.steps[5]: give exactly one of setWeight, pause, analysis or experiment",
        ]
    );
    let three = OKRA_README.replace("replicas: 2", "replicas: 3");
    assert_eq!(
        errors(&three),
        [
            "spec.updateStrategy.canary.steps[0].setWeight: gives the new version 20%, sharing the rule between its 3 target groups and at least 3 of the stable version: one ALB forward action holds at most 5; use replicas of at most 2 or only setWeight 0 and 100"
        ]
    );
    let no_selector = OKRA_README.replace(
        "      targetGroupSelector:\n        matchLabels:\n          role: web\n",
        "",
    );
    assert!(errors(&no_selector)[0].contains("targetGroupSelector.matchLabels: missing"));
    let no_condition = OKRA_README.replace("          hosts:\n          - example.com\n", "");
    assert!(errors(&no_condition)[0].contains("needs at least one condition"));
}

#[test]
fn the_baton_examples_are_valid() {
    let c = cell(include_str!("../../../examples/cells/baton-cell.yaml"));
    assert_eq!(c.semantics(), Semantics::Baton);
    assert_eq!(c.spec.deletion_policy, DeletionPolicy::Delete);
    assert_eq!(c.steps()[2], StepKind::Pause(None));
    let docs = parse_documents(
        "t.yaml",
        include_str!("../../../examples/cells/success-rate.yaml"),
        Timestamp(0),
    )
    .unwrap();
    assert_eq!(docs[0].describe(), "AnalysisTemplate/success-rate");
}

#[test]
fn pause_durations_are_seconds_or_text() {
    assert_eq!(
        PauseDuration::Seconds(5).get(),
        Ok(std::time::Duration::from_secs(5))
    );
    assert_eq!(
        PauseDuration::Text("90".into()).get(),
        Ok(std::time::Duration::from_secs(90))
    );
    assert_eq!(
        PauseDuration::Text("1m30s".into()).get(),
        Ok(std::time::Duration::from_secs(90))
    );
    assert!(PauseDuration::Text("soon".into()).get().is_err());
    assert!(PauseDuration::Seconds(-1).get().is_err());
}

#[test]
fn okras_experiment_cell_takes_its_replica_set_from_the_same_file() {
    let text = include_str!("../../../examples/okra/experiment-cell.yaml");
    let c = cell(text);
    let StepKind::Experiment(e) = c.steps()[1].clone() else {
        panic!("not an experiment: {:?}", c.steps()[1]);
    };
    assert_eq!(e.duration.as_ref().unwrap().get().unwrap().as_secs(), 300);
    assert_eq!(e.templates[0].replicas(), 1);
    let rs = e.templates[0].replica_set.as_ref().expect("carried");
    assert_eq!(
        rs["spec"]["template"]["spec"]["containers"][0]["image"],
        "mumoshu/wy:latest"
    );
    assert_eq!(
        e.analyses[0].spec().templates[0].template_name,
        "success-rate-dd"
    );

    // A ReplicaSet no Cell names is not Baton's to keep; one without a pod template cannot run.
    let unused = text.replace("specRef: wy", "specRef: other");
    assert_eq!(
        errors(&unused),
        [
            "(document 2) kind: ReplicaSet/wy: Baton reads a ReplicaSet only as the template of a Cell's experiment step in the same file (specRef), and no Cell here names it; apply it to a cluster with kubectl"
        ]
    );
    let no_containers = text.replace("      containers:\n", "      initContainers:\n");
    assert_eq!(
        errors(&no_containers),
        [
            "(document 2) spec.template.spec.containers: a ReplicaSet for an experiment needs a pod template with containers"
        ]
    );
    // A template whose labels its selector does not match would be refused by the API server.
    let mismatched = text.replace(
        "      labels:\n        app: wy\n    spec:",
        "      labels:\n        app: other\n    spec:",
    );
    assert_eq!(
        errors(&mismatched),
        [
            "(document 2) spec.template.metadata.labels: must have app: \"wy\", which the selector asks for"
        ]
    );
    // An experiment that could never end, and one without templates, are refused.
    let endless = text.replace("          duration: 5m\n", "");
    let no_templates = text.replace(
        "          templates:\n          - name: wy\n",
        "          templates: []\n          unused:\n          - name: wy\n",
    );
    assert_eq!(
        errors(&endless),
        [
            "(document 1) spec.updateStrategy.canary.steps[1].experiment.duration: give a duration, or an analysis with requiredForCompletion: true: an experiment with neither would hold its rollout forever"
        ]
    );
    assert!(
        errors(&no_templates)[0].contains("unknown field `unused`"),
        "{:?}",
        errors(&no_templates)
    );
    let required = endless.replace(
        "            templateName: success-rate-dd\n",
        "            templateName: success-rate-dd\n            requiredForCompletion: true\n",
    );
    assert!(matches!(
        cell(&required).steps()[1],
        StepKind::Experiment(_)
    ));
}
