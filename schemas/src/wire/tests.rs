use super::*;

#[test]
fn event_json_is_stable() {
    let e = EventEnvelope {
        v: EVENT_SCHEMA_VERSION,
        event: Event::NodeFinished {
            run: RunId::new("r1"),
            node: NodeName::new("a"),
            attempt: Attempt(2),
            started_at: Timestamp(1),
            finished_at: Timestamp(2),
            outcome: Outcome::Succeeded { output: "x".into() },
        },
    };
    let json = serde_json::to_string(&e).unwrap();
    assert_eq!(
        json,
        r#"{"v":2,"type":"nodeFinished","run":"r1","node":"a","attempt":2,"startedAt":1,"finishedAt":2,"outcome":{"result":"succeeded","output":"x"}}"#
    );
    assert_eq!(serde_json::from_str::<EventEnvelope>(&json).unwrap(), e);
    assert_eq!(e.event.msg_id(), "r1.a.2.done");
}

/// A failure of version 1 carried no kind: a traffic write's final failure is read as
/// final from its output, as version 1 planners read it; anything else may be retried.
#[test]
fn a_version_1_failure_is_read_with_the_kind_its_output_implies() {
    let failure = |output: &str| {
        format!(
            r#"{{"v":1,"type":"nodeFinished","run":"r1","node":"a","attempt":1,"startedAt":1,"finishedAt":2,"outcome":{{"result":"failed","error":"e","output":{}}}}}"#,
            serde_json::to_string(output).unwrap()
        )
    };
    let kind_of = |json: &str| {
        let e = serde_json::from_str::<EventEnvelope>(json)
            .unwrap()
            .upgrade();
        assert_eq!(e.v, EVENT_SCHEMA_VERSION);
        match e.event {
            Event::NodeFinished {
                outcome: Outcome::Failed { kind, .. },
                ..
            } => kind,
            other => panic!("{other:?}"),
        }
    };
    let traffic = |kind: &str| {
        crate::reports::to_output(&crate::reports::TrafficFailure::new(
            kind,
            "ModifyRule",
            None,
        ))
    };
    assert_eq!(kind_of(&failure(&traffic("invalid"))), FailureKind::Final);
    assert_eq!(
        kind_of(&failure(&traffic("superseded"))),
        FailureKind::Final
    );
    assert_eq!(
        kind_of(&failure(&traffic("throttled"))),
        FailureKind::Retryable
    );
    assert_eq!(kind_of(&failure("exit 1")), FailureKind::Retryable);
    // A version 2 event says its kind itself, and keeps it.
    let v2 = failure(&traffic("invalid")).replacen(r#""v":1"#, r#""v":2"#, 1);
    assert_eq!(kind_of(&v2), FailureKind::Retryable);
}

#[test]
fn pod_names_are_deterministic_and_fit_a_label() {
    let run = RunId::new("abc");
    assert_eq!(
        pod_name(&NodeName::new("task1"), &run, Attempt(2)),
        "task1-abc-2"
    );
    // A name that just fits is not touched.
    let fits = "a".repeat(63 - "-abc-2".len());
    assert_eq!(
        pod_name(&NodeName::new(fits.clone()), &run, Attempt(2)),
        format!("{fits}-abc-2")
    );
    let long = NodeName::new(format!("{}-x", "a".repeat(60)));
    let name = pod_name(&long, &RunId::new("r0123456789ab"), Attempt(12));
    assert_eq!(name.len(), 63);
    assert!(name.ends_with("-r0123456789ab-12"), "{name}");
    assert!(crate::ids::is_dns_label(&name), "{name}");
    assert_eq!(
        name,
        pod_name(&long, &RunId::new("r0123456789ab"), Attempt(12))
    );
}

/// A chain names the instances of one task `task`, `task-2`, ...: with a long task name
/// and a long run id, cutting must not give them one pod name.
#[test]
fn instances_of_a_long_task_get_pod_names_of_their_own() {
    // The run id of a Workflow object's run is long (`named_run_id`: up to 40 characters).
    let runs = [
        RunId::new("f0123456789ab"),
        RunId::new("nightly-data-pipeline-7f3a2c-12345-9z"),
        RunId::new("x".repeat(40)),
    ];
    let task = "a-task-whose-name-is-forty-five-characters-xy";
    assert_eq!(task.len(), 45);
    for run in &runs {
        for attempt in [Attempt(1), Attempt(4_000_000_000)] {
            let names: Vec<String> = [
                task.to_owned(),
                format!("{task}-2"),
                format!("{task}-3"),
                format!("{task}-10"),
            ]
            .iter()
            .map(|n| pod_name(&NodeName::new(n.clone()), run, attempt))
            .collect();
            let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
            assert_eq!(distinct.len(), names.len(), "{names:?}");
            for name in &names {
                assert!(name.len() <= 63, "{name}");
                assert!(crate::ids::is_dns_label(name), "{name}");
                assert!(name.ends_with(&format!("-{run}-{attempt}")), "{name}");
            }
        }
    }
}

#[test]
fn timestamps_print_rfc3339() {
    assert_eq!(Timestamp(1_500).to_string(), "1970-01-01T00:00:01.500Z");
    assert_eq!(Timestamp(u64::MAX).to_string(), "9999-12-31T23:59:59.999Z");
}

/// Jobs move from task to task on their way through a worker: they stay small.
#[test]
fn a_job_stays_small() {
    let size = std::mem::size_of::<Job>();
    assert!(size <= 384, "Job is {size} bytes");
}
