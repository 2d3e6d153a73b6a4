//! Baton's ELBv2 client and traffic executor against a real ELBv2 emulator (moto): rules found
//! by priority across pages, written once, read back, left alone when unchanged; target
//! groups and their tags read in DescribeTags batches of 20; ALB's limits refused before any
//! AWS call.

use std::time::{Duration, Instant};

use baton_alb::{AlbErrorKind, Deleted, Write};
use baton_schemas::traffic::{
    Conditions, Generation, RuleAction, TrafficSpec, WeightedTargetGroup,
};
use baton_schemas::wire::{Job, Outcome, Work};
use baton_schemas::{Attempt, NodeName, RunId, WorkflowName};
use baton_tests::aws::Moto;
use baton_workers::executors::Effect;
use baton_workers::executors::traffic::TrafficExecutor;
use tokio_util::sync::CancellationToken;

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
        action: RuleAction::Forward(
            groups
                .iter()
                .map(|(arn, weight)| WeightedTargetGroup {
                    arn: (*arn).to_owned(),
                    weight: *weight,
                })
                .collect(),
        ),
        generation: None,
    }
}

fn fenced(spec: TrafficSpec, generation: Generation) -> TrafficSpec {
    TrafficSpec {
        generation: Some(generation),
        ..spec
    }
}

fn deletion(listener: &str, priority: u32) -> TrafficSpec {
    TrafficSpec {
        action: RuleAction::Delete,
        ..spec(listener, priority, &[])
    }
}

fn go() -> CancellationToken {
    CancellationToken::new()
}

fn job(spec: TrafficSpec) -> Job {
    Job {
        ..Job::new(
            RunId::new("r1"),
            WorkflowName::new("wf"),
            NodeName::new("shift"),
            Attempt(1),
            Work::Traffic(Box::new(spec)),
        )
    }
}

/// Runs a traffic job to its outcome.
fn run(moto: &Moto, executor: &TrafficExecutor, spec: TrafficSpec) -> Outcome {
    match moto.block_on(executor.run(&job(spec), &go())) {
        Effect::Done(outcome) => outcome,
        Effect::Stopped => panic!("stopped"),
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
        moto.block_on(alb.apply(&spec(&listener.arn, p, &[(&a, 1)]), &go()))
            .unwrap();
    }
    let first = moto
        .block_on(alb.apply(&spec(&listener.arn, 10, &[(&a, 80), (&b, 20)]), &go()))
        .unwrap();
    assert_eq!(first.write.as_str(), "created");
    let shown: Vec<u32> = first.target_groups.iter().map(|g| g.weight).collect();
    assert_eq!(shown, [80, 20], "read back from the emulator");

    // The same spec again: found on its page, compared, not written.
    let mark = moto.mark();
    let again = moto
        .block_on(alb.apply(&spec(&listener.arn, 10, &[(&a, 80), (&b, 20)]), &go()))
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
        .block_on(alb.apply(&spec(&listener.arn, 10, &[(&a, 50), (&b, 50)]), &go()))
        .unwrap();
    assert_eq!(modified.write.as_str(), "modified");
    assert_eq!(writes(&moto.actions_since(mark)), ["ModifyRule"]);
    assert_eq!(
        moto.weights(&listener.arn, 10).unwrap().unwrap(),
        [("tg-a".to_owned(), 50), ("tg-b".to_owned(), 50)]
    );
    assert_eq!(moto.rules_at(&listener.arn, 10).unwrap(), 1);

    // Deleting finds the rule by priority; a second delete finds nothing.
    let delete = deletion(&listener.arn, 10);
    assert_eq!(
        moto.block_on(alb.delete_rule(&delete, &go())).unwrap(),
        Deleted::Deleted
    );
    assert_eq!(
        moto.block_on(alb.delete_rule(&delete, &go())).unwrap(),
        Deleted::Absent
    );
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
    let mark = moto.mark();
    let six: Vec<(&str, u32)> = arns.iter().map(|a| (a.as_str(), 10)).collect();
    let outcome = run(&moto, &executor, spec(&listener.arn, 10, &six));
    let Outcome::Failed { error, .. } = outcome else {
        panic!("six target groups accepted")
    };
    assert!(
        error.contains("6 target groups: one ALB forward action holds at most 5"),
        "{error}"
    );
    let outcome = run(
        &moto,
        &executor,
        spec(&listener.arn, 10, &[(&arns[0], 1000)]),
    );
    let Outcome::Failed { error, .. } = outcome else {
        panic!("weight 1000 accepted")
    };
    assert!(
        error.contains("1000 is above ALB's largest weight, 999"),
        "{error}"
    );
    assert!(moto.actions_since(mark).is_empty(), "no AWS call was made");
    // Within the limits, the output is what AWS shows.
    let outcome = run(
        &moto,
        &executor,
        spec(
            &listener.arn,
            10,
            &[(&arns[0], 33), (&arns[1], 33), (&arns[2], 34)],
        ),
    );
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

/// A job of an older generation that arrives after a newer one has written (its ack was
/// lost and it came again, or the planner retried it while the first attempt still ran)
/// writes nothing: neither its weights nor a delete. The same generation again adopts.
#[test]
fn an_older_generation_arriving_after_a_newer_one_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start(dir.path()).unwrap();
    let listener = moto.listener().unwrap();
    let a = moto.target_group(&listener.vpc_id, "tg-a", &[]).unwrap();
    let b = moto.target_group(&listener.vpc_id, "tg-b", &[]).unwrap();
    let executor = TrafficExecutor::with_client(moto.alb().clone());
    let step = |weight_b: u32, node: u32| {
        fenced(
            spec(&listener.arn, 10, &[(&a, 100 - weight_b), (&b, weight_b)]),
            Generation::of(3, node),
        )
    };
    let named = |pairs: &[(&str, u32)]| -> Vec<(String, u32)> {
        pairs.iter().map(|(n, w)| ((*n).to_owned(), *w)).collect()
    };
    assert!(matches!(
        run(&moto, &executor, step(20, 0)),
        Outcome::Succeeded { .. }
    ));
    assert!(matches!(
        run(&moto, &executor, step(40, 2)),
        Outcome::Succeeded { .. }
    ));
    assert_eq!(
        moto.weights(&listener.arn, 10).unwrap().unwrap(),
        named(&[("tg-a", 60), ("tg-b", 40)])
    );

    let mark = moto.mark();
    let Outcome::Failed {
        error,
        output,
        kind,
    } = run(&moto, &executor, step(20, 0))
    else {
        panic!("the late step wrote")
    };
    assert!(error.starts_with("superseded"), "{error}");
    assert!(
        baton_schemas::reports::from_output::<baton_schemas::reports::TrafficFailure>(
            output.as_deref()
        )
        .is_some_and(|f| f.is_final()),
        "its output names the kind: {output:?}"
    );
    assert_eq!(
        kind,
        baton_schemas::wire::FailureKind::Final,
        "the planner does not retry it"
    );
    let late_delete = TrafficSpec {
        generation: Some(Generation::of(3, 1)),
        ..deletion(&listener.arn, 10)
    };
    let Outcome::Failed { error, .. } = run(&moto, &executor, late_delete) else {
        panic!("the late delete deleted")
    };
    assert!(error.starts_with("superseded"), "{error}");
    assert!(writes(&moto.actions_since(mark)).is_empty());
    assert!(!moto.actions_since(mark).iter().any(|a| a == "AddTags"));
    assert_eq!(
        moto.weights(&listener.arn, 10).unwrap().unwrap(),
        named(&[("tg-a", 60), ("tg-b", 40)])
    );

    // The newer job delivered again finds its own write: nothing written.
    let mark = moto.mark();
    let Outcome::Succeeded { output } = run(&moto, &executor, step(40, 2)) else {
        panic!("the redelivery failed")
    };
    assert!(output.contains("\"write\":\"unchanged\""), "{output}");
    assert!(writes(&moto.actions_since(mark)).is_empty());
    // A newer generation writes, and a stopped job writes nothing.
    let stop = CancellationToken::new();
    stop.cancel();
    let mark = moto.mark();
    let effect = moto.block_on(executor.run(&job(step(100, 5)), &stop));
    assert_eq!(effect, Effect::Stopped);
    assert!(writes(&moto.actions_since(mark)).is_empty());
    assert!(matches!(
        run(&moto, &executor, step(100, 5)),
        Outcome::Succeeded { .. }
    ));
    assert_eq!(
        moto.weights(&listener.arn, 10).unwrap().unwrap(),
        named(&[("tg-a", 0), ("tg-b", 100)])
    );
}

/// Two deliveries of one job racing to create the rule: one creates it, the other finds the
/// priority taken, adopts the rule, and says it wrote nothing (it did not).
#[test]
fn a_create_that_finds_the_priority_taken_adopts_the_rule_without_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start(dir.path()).unwrap();
    let listener = moto.listener().unwrap();
    let a = moto.target_group(&listener.vpc_id, "tg-a", &[]).unwrap();
    let alb = moto.alb().clone();
    // Whether the deliveries' DescribeRules all come before the first CreateRule is up to
    // moto's threads: up to five rounds, each on a fresh priority, until two creates race.
    let raced = (30..35).any(|priority| {
        let wanted = fenced(
            spec(&listener.arn, priority, &[(&a, 100)]),
            Generation::of(1, 0),
        );
        let mark = moto.mark();
        let stop = go();
        let applied: Vec<_> = moto.block_on(futures::future::join_all(
            (0..4).map(|_| alb.apply(&wanted, &stop)),
        ));
        let writes: Vec<Write> = applied.into_iter().map(|a| a.unwrap().write).collect();
        let creates = moto
            .actions_since(mark)
            .iter()
            .filter(|a| *a == "CreateRule")
            .count();
        assert_eq!(
            writes.iter().filter(|w| **w == Write::Created).count(),
            1,
            "{writes:?}"
        );
        assert!(
            writes
                .iter()
                .all(|w| matches!(w, Write::Created | Write::Unchanged)),
            "an adoption reported a write it did not make: {writes:?}"
        );
        assert_eq!(moto.rules_at(&listener.arn, priority).unwrap(), 1);
        creates >= 2
    });
    assert!(raced, "the deliveries never raced in five rounds");
}

/// An endpoint that takes the connection and never answers: every call fails within its
/// operation timeout instead of hanging, as a timeout (the planner's discovery goes on).
#[test]
fn a_call_to_an_endpoint_that_never_answers_times_out() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let alb = runtime.block_on(baton_alb::Alb::from_loader(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(url)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_elasticloadbalancingv2::config::Credentials::new(
                "testing", "testing", None, None, "test",
            )),
        baton_alb::Timeouts {
            attempt: Duration::from_millis(300),
            operation: Duration::from_secs(1),
            connect: Duration::from_millis(300),
        },
    ));
    let started = Instant::now();
    let error = runtime
        .block_on(alb.find_rule(
            "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/lb/1/2",
            10,
        ))
        .unwrap_err();
    assert_eq!(error.kind, AlbErrorKind::TimedOut, "{error}");
    assert!(
        std::error::Error::source(&error).is_some(),
        "the SDK's error is kept"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}
