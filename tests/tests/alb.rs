//! Baton's ELBv2 client and traffic executor against a real ELBv2 emulator (moto): rules found
//! by priority across pages, written once, read back, left alone when unchanged; target
//! groups and their tags read in DescribeTags batches of 20; ALB's limits refused before any
//! AWS call.

use baton_schemas::traffic::{Conditions, TrafficSpec, WeightedTargetGroup};
use baton_schemas::wire::{Job, JobInputs, Outcome, SCHEMA_VERSION};
use baton_schemas::{Attempt, NodeKind, NodeName, RunId, WorkflowName};
use baton_tests::aws::Moto;
use baton_workers::executors::traffic::TrafficExecutor;

fn spec(listener: &str, priority: u32, groups: &[(&str, u32)]) -> TrafficSpec {
    TrafficSpec {
        listener_arn: listener.to_owned(),
        priority,
        conditions: Conditions {
            hosts: vec!["example.com".into()],
            headers: [("X-Canary".to_owned(), vec!["yes".to_owned()])].into(),
            query_strings: [("v".to_owned(), "2".to_owned())].into(),
            methods: vec!["get".into()],
            ..Conditions::default()
        },
        target_groups: groups
            .iter()
            .map(|(arn, weight)| WeightedTargetGroup {
                arn: (*arn).to_owned(),
                weight: *weight,
            })
            .collect(),
        delete: false,
    }
}

fn writes(actions: &[String]) -> Vec<&String> {
    actions
        .iter()
        .filter(|a| matches!(a.as_str(), "CreateRule" | "ModifyRule" | "DeleteRule"))
        .collect()
}

#[test]
fn rules_are_found_by_priority_across_pages_written_once_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start(dir.path()).unwrap();
    let listener = moto.listener().unwrap();
    let a = moto.target_group(&listener.vpc_id, "tg-a", &[]).unwrap();
    let b = moto.target_group(&listener.vpc_id, "tg-b", &[]).unwrap();
    // Other rules at priorities 1 to 4 put priority 10 on the fifth page of one rule each.
    let alb = moto.alb().clone().with_page_size(1);
    for p in 1..=4 {
        moto.block_on(alb.apply(&spec(&listener.arn, p, &[(&a, 1)])))
            .unwrap();
    }
    let first = moto
        .block_on(alb.apply(&spec(&listener.arn, 10, &[(&a, 80), (&b, 20)])))
        .unwrap();
    assert_eq!(first.write.as_str(), "created");
    let shown: Vec<u32> = first.target_groups.iter().map(|g| g.weight).collect();
    assert_eq!(shown, [80, 20], "read back from the emulator");

    // The same spec again: found on its page, compared, not written.
    let mark = moto.mark();
    let again = moto
        .block_on(alb.apply(&spec(&listener.arn, 10, &[(&a, 80), (&b, 20)])))
        .unwrap();
    assert_eq!(again.write.as_str(), "unchanged");
    let actions = moto.actions_since(mark);
    assert!(writes(&actions).is_empty(), "{actions:?}");
    assert!(
        actions.iter().filter(|a| *a == "DescribeRules").count() >= 5,
        "paged one rule at a time: {actions:?}"
    );

    // New weights: one ModifyRule, read back.
    let mark = moto.mark();
    let modified = moto
        .block_on(alb.apply(&spec(&listener.arn, 10, &[(&a, 50), (&b, 50)])))
        .unwrap();
    assert_eq!(modified.write.as_str(), "modified");
    assert_eq!(writes(&moto.actions_since(mark)), ["ModifyRule"]);
    assert_eq!(
        moto.weights(&listener.arn, 10).unwrap().unwrap(),
        [("tg-a".to_owned(), 50), ("tg-b".to_owned(), 50)]
    );
    assert_eq!(moto.rules_at(&listener.arn, 10).unwrap(), 1);

    // Deleting finds the rule by priority; a second delete finds nothing.
    assert!(moto.block_on(alb.delete_rule(&listener.arn, 10)).unwrap());
    assert!(!moto.block_on(alb.delete_rule(&listener.arn, 10)).unwrap());
    assert!(moto.weights(&listener.arn, 10).unwrap().is_none());
}

#[test]
fn target_groups_and_tags_are_read_across_pages_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start(dir.path()).unwrap();
    let listener = moto.listener().unwrap();
    // More than one DescribeTags batch (20 ARNs).
    for i in 0..23 {
        let version = format!("1.0.{i}");
        moto.target_group(
            &listener.vpc_id,
            &format!("tg-{i:02}"),
            &[("role", "web"), ("baton.dev/version", &version)],
        )
        .unwrap();
    }
    let alb = moto.alb().clone().with_page_size(5);
    let mark = moto.mark();
    let groups = moto.block_on(alb.tagged_target_groups()).unwrap();
    assert_eq!(groups.len(), 23);
    for g in &groups {
        let i: u32 = g.name["tg-".len()..].parse().unwrap();
        assert_eq!(g.tags["role"], "web");
        assert_eq!(g.tags["baton.dev/version"], format!("1.0.{i}"));
    }
    // moto answers DescribeTargetGroups in one page whatever the page size (AWS pages it;
    // the client follows NextMarker either way); DescribeTags takes 20 ARNs at most.
    let actions = moto.actions_since(mark);
    let count = |name: &str| actions.iter().filter(|a| *a == name).count();
    assert_eq!(count("DescribeTags"), 2, "{actions:?}");
}

#[test]
fn the_traffic_executor_refuses_what_alb_would_before_calling_aws() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start(dir.path()).unwrap();
    let listener = moto.listener().unwrap();
    let executor = TrafficExecutor::with_client(moto.alb().clone());
    let arns: Vec<String> = (0..6)
        .map(|i| {
            moto.target_group(&listener.vpc_id, &format!("six-{i}"), &[])
                .unwrap()
        })
        .collect();
    let job = |spec: TrafficSpec| Job {
        v: SCHEMA_VERSION,
        run: RunId::new("r1"),
        workflow: WorkflowName::new("wf"),
        node: NodeName::new("shift"),
        attempt: Attempt(1),
        kind: NodeKind::Traffic,
        timeout_ms: None,
        exec: None,
        pod: None,
        webhook: None,
        publish: None,
        helm: None,
        traffic: Some(Box::new(spec)),
        analysis: None,
        inputs: JobInputs::default(),
    };
    let mark = moto.mark();
    let six: Vec<(&str, u32)> = arns.iter().map(|a| (a.as_str(), 10)).collect();
    let outcome = moto.block_on(executor.run(&job(spec(&listener.arn, 10, &six))));
    let Outcome::Failed { error, .. } = outcome else {
        panic!("six target groups accepted")
    };
    assert!(
        error.contains("6 target groups: one ALB forward action holds at most 5"),
        "{error}"
    );
    let outcome = moto.block_on(executor.run(&job(spec(&listener.arn, 10, &[(&arns[0], 1000)]))));
    let Outcome::Failed { error, .. } = outcome else {
        panic!("weight 1000 accepted")
    };
    assert!(
        error.contains("1000 is above ALB's largest weight, 999"),
        "{error}"
    );
    assert!(moto.actions_since(mark).is_empty(), "no AWS call was made");
    // Within the limits, the output is what AWS shows.
    let outcome = moto.block_on(executor.run(&job(spec(
        &listener.arn,
        10,
        &[(&arns[0], 33), (&arns[1], 33), (&arns[2], 34)],
    ))));
    let Outcome::Succeeded { output } = outcome else {
        panic!("{outcome:?}")
    };
    let output: serde_json::Value = serde_json::from_str(&output).unwrap();
    assert_eq!(output["write"], "created");
    let weights: Vec<u64> = output["targetGroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["weight"].as_u64().unwrap())
        .collect();
    assert_eq!(weights, [33, 33, 34]);
}
