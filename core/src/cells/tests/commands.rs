//! Writes and their generations, commands from people and from the triggers stream, and
//! deletes.

use super::*;

fn generation(job: &Job) -> Generation {
    job.traffic()
        .as_ref()
        .and_then(|t| t.generation)
        .expect("a fenced traffic job")
}

/// Every write of a Cell, across its runs and after it is deleted and applied again, carries
/// a newer generation than the one before: a job of an older step that a worker gets late
/// finds the rule tagged newer and writes nothing (`tests/tests/alb.rs` shows that half).
#[test]
fn every_write_of_a_cell_carries_a_newer_generation_than_the_one_before() {
    let mut core = serving_v1(OKRA_README);
    let first = core.runs().next().unwrap().clone();
    let first = first.spec.nodes[0]
        .traffic
        .as_ref()
        .unwrap()
        .generation
        .unwrap();
    let step = only_job(&core.apply(observed(&V1_V2, Some(&RULE_V1), at(10)), at(10)));
    let analysis = only_job(&succeed(&mut core, &step, at(11)));
    succeed(&mut core, &analysis, at(12));
    let next = only_job(&core.apply(Input::Tick, at(17)));
    let last = only_job(&succeed(&mut core, &next, at(18)));
    succeed(&mut core, &last, at(19));
    let order = [
        first,
        generation(&step),
        generation(&next),
        generation(&last),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    // Deleted and applied again: the new Cell's first write outranks the old Cell's last.
    core.apply(Input::Remove(Registered::Cell("cell1".into())), at(20));
    let doc = parse_documents("c.yaml", OKRA_README, T0)
        .unwrap()
        .remove(0);
    core.apply(Input::from(doc), at(21));
    let v2 = [("b1", "2.0.0"), ("b2", "2.0.0")];
    let again = only_job(&core.apply(observed(&v2, None, at(22)), at(22)));
    assert!(generation(&again) > generation(&last));
}

fn trigger(command: CellCommand, seq: u64, expect: Expect) -> Input {
    Input::CellCommand {
        cell: "cell1".into(),
        command,
        expect,
        from: Some(TriggerPosition {
            stream_created: 1,
            seq,
        }),
    }
}

/// A Cell paused at step 1 (a pause without duration) of the given steps, in run cell1-2.
fn paused_baton_cell(steps: &str) -> Core {
    let text = OKRA_README
        .replace("okra.mumo.co/v1alpha1", "baton.dev/v1alpha1")
        .replace(
            "      - setWeight: 20\n      - analysis:\n          args:\n          - name: service-name\n            value: exampleapp\n          templates:\n          - templateName: success-rate\n      - pause:\n          duration: 5s\n      - setWeight: 40\n",
            steps,
        );
    let mut core = serving_v1(&text);
    let job = only_job(&core.apply(observed(&V1_V2, Some(&RULE_V1), at(10)), at(10)));
    assert!(jobs(&succeed(&mut core, &job, at(11))).is_empty());
    assert_eq!(phase(&core), CellPhase::Paused);
    core
}

/// A command on the trigger subject is applied once: after a crash the planner reads the
/// triggers stream again from an older position while its store already holds what the
/// command did, and the command, met again, must not skip the next pause.
#[test]
fn a_trigger_command_met_again_in_a_replay_is_ignored() {
    let two_pauses = "      - setWeight: 20\n      - pause: {}\n      - setWeight: 40\n      - pause: {}\n      - setWeight: 60\n";
    let mut core = paused_baton_cell(two_pauses);
    let resume = trigger(CellCommand::Resume, 7, Expect::default());
    let job = only_job(&core.apply(resume.clone(), at(20)));
    assert_eq!(job.node.as_str(), "s2-weight-40");
    assert!(jobs(&succeed(&mut core, &job, at(21))).is_empty());
    let paused = status(&core).rollout.clone().unwrap().stage;
    // The same message again, and an older one: nothing moves, nothing is refused.
    assert!(core.apply(resume, at(22)).is_empty());
    assert!(
        core.apply(trigger(CellCommand::Resume, 5, Expect::default()), at(22))
            .is_empty()
    );
    assert_eq!(status(&core).rollout.as_ref().unwrap().stage, paused);
    assert_eq!(status(&core).last_command.unwrap().seq, 7);
    // A refused command counts as taken too: a replay must not find it acceptable later.
    let actions = core.apply(trigger(CellCommand::Promote, 8, Expect::default()), at(23));
    let promote = only_job(&actions);
    assert_eq!(promote.node.as_str(), "promote");
    let refused = core.apply(trigger(CellCommand::Resume, 9, Expect::default()), at(24));
    assert!(matches!(
        &refused[..],
        [Action::Refused(Refusal::CellCommand(_))]
    ));
    assert_eq!(status(&core).last_command.unwrap().seq, 9);
    // A stream made anew counts from 1 again: its messages are new.
    let renewed = Input::CellCommand {
        cell: "cell1".into(),
        command: CellCommand::Resume,
        expect: Expect::default(),
        from: Some(TriggerPosition {
            stream_created: 2,
            seq: 1,
        }),
    };
    assert!(matches!(
        &core.apply(renewed, at(25))[..],
        [Action::Refused(Refusal::CellCommand(_))]
    ));
    assert_eq!(status(&core).last_command.unwrap().stream_created, 2);
}

/// A command that names a run or a step acts only there: one meant for an earlier rollout or
/// step is refused, with what is under way instead.
#[test]
fn a_command_naming_a_run_or_a_step_acts_only_on_that_rollout() {
    let mut core =
        paused_baton_cell("      - setWeight: 20\n      - pause: {}\n      - setWeight: 40\n");
    let run = status(&core).rollout.as_ref().unwrap().run.clone();
    assert_eq!(run, RunId::new("cell1-2"));
    let named = |run: &str, step: Option<u32>| Expect {
        run: Some(RunId::new(run)),
        step,
        idle: false,
    };
    let refused = core.apply(
        trigger(CellCommand::Resume, 1, named("cell1-1", None)),
        at(20),
    );
    let [Action::Refused(Refusal::CellCommand(why))] = &refused[..] else {
        panic!("{refused:?}")
    };
    assert_eq!(
        why,
        "cell \"cell1\" rolls out in run cell1-2, not in run cell1-1 the command names"
    );
    let refused = core.apply(
        trigger(CellCommand::Abort, 2, named("cell1-2", Some(3))),
        at(20),
    );
    let [Action::Refused(Refusal::CellCommand(why))] = &refused[..] else {
        panic!("{refused:?}")
    };
    assert_eq!(
        why,
        "cell \"cell1\" is at step 1, not at step 3 the command names"
    );
    let job = only_job(&core.apply(
        trigger(CellCommand::Resume, 3, named("cell1-2", Some(1))),
        at(21),
    ));
    assert_eq!(job.node.as_str(), "s2-weight-40");
    // A command meant for a Cell at rest (a promote) is refused once a rollout started.
    let idle = Expect {
        idle: true,
        ..Expect::default()
    };
    let refused = core.apply(trigger(CellCommand::Promote, 4, idle), at(21));
    let [Action::Refused(Refusal::CellCommand(why))] = &refused[..] else {
        panic!("{refused:?}")
    };
    assert_eq!(
        why,
        "cell \"cell1\" rolls out in run cell1-2 now; the command was meant for no rollout"
    );
    // Unknown Cells are told apart from Cells with nothing to do (the API answers 404, 409).
    let unknown = core.apply(
        Input::CellCommand {
            cell: "nope".into(),
            command: CellCommand::Resume,
            expect: Expect::default(),
            from: None,
        },
        at(22),
    );
    assert!(matches!(
        &unknown[..],
        [Action::Refused(r @ Refusal::UnknownCell(_))] if r.is_not_found()
    ));
}

#[test]
fn cell_triggers_are_a_plain_command_or_json_naming_the_rollout() {
    let plain = CellTrigger::parse(b"resume\n").unwrap();
    assert_eq!(
        (plain.command, plain.expect()),
        (CellCommand::Resume, Expect::default())
    );
    let named =
        CellTrigger::parse(br#"{"v": 1, "command": "abort", "run": "web-3", "step": 2}"#).unwrap();
    assert_eq!(named.command, CellCommand::Abort);
    assert_eq!(
        named.expect(),
        Expect {
            run: Some(RunId::new("web-3")),
            step: Some(2),
            idle: false,
        }
    );
    assert!(
        CellTrigger::parse(br#"{"v": 2, "command": "abort"}"#)
            .unwrap_err()
            .contains("unknown schema version 2")
    );
    assert!(CellTrigger::parse(br#"{"v": 1, "command": "jump"}"#).is_err());
    assert!(
        CellTrigger::parse(b"jump")
            .unwrap_err()
            .contains("unknown cell command")
    );
}

/// `deletionPolicy: Delete` never races a write in flight: the delete waits for it to end,
/// then removes the rule, fenced newer than the write.
#[test]
fn deleting_a_cell_waits_for_the_write_in_flight_before_removing_its_rule() {
    let text = OKRA_README.replace("replicas: 2", "replicas: 2\n  deletionPolicy: Delete");
    let mut core = serving_v1(&text);
    let step = only_job(&core.apply(observed(&V1_V2, Some(&RULE_V1), at(10)), at(10)));
    let actions = core.apply(Input::Remove(Registered::Cell("cell1".into())), at(11));
    assert!(
        actions.is_empty(),
        "nothing is sent or stopped yet: {actions:?}"
    );
    let actions = succeed(&mut core, &step, at(12));
    let delete = only_job(&actions);
    let spec = delete.traffic().unwrap();
    assert_eq!(
        (spec.action.clone(), spec.priority),
        (RuleAction::Delete, 10)
    );
    assert!(generation(&delete) > generation(&step));
    let actions = succeed(&mut core, &delete, at(13));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::RunFinished { .. }))
    );

    // With no write in flight (an analysis), the rollout stops and the delete goes at once.
    let mut core = serving_v1(&text);
    let step = only_job(&core.apply(observed(&V1_V2, Some(&RULE_V1), at(10)), at(10)));
    let analysis = only_job(&succeed(&mut core, &step, at(11)));
    let actions = core.apply(Input::Remove(Registered::Cell("cell1".into())), at(12));
    assert!(actions.contains(&Action::AnnounceCancel {
        run: analysis.run.clone(),
        node: None
    }));
    let delete = only_job(&actions);
    assert_eq!(delete.traffic().unwrap().action, RuleAction::Delete);
    assert!(generation(&delete) > generation(&step));
}

#[test]
fn a_rollout_is_aborted_not_cancelled() {
    let mut core = serving_v1(OKRA_README);
    let step = only_job(&core.apply(observed(&V1_V2, Some(&RULE_V1), at(10)), at(10)));
    let actions = core.apply(Input::Cancel(step.run.clone()), at(11));
    let [Action::Refused(refusal)] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert!(!refusal.is_not_found());
    assert_eq!(
        refusal.to_string(),
        "run \"cell1-2\" is a rollout of cell \"cell1\": a rollout is not cancelled but aborted, which gives the stable version its traffic back (`baton cell abort cell1`)"
    );
    assert_eq!(status(&core).rollout.as_ref().unwrap().run, step.run);
    // A finished rollout's run is over: cancelling it does nothing.
    assert!(
        core.apply(Input::Cancel(RunId::new("cell1-1")), at(12))
            .is_empty()
    );
}

/// A write AWS refuses, or one that names what is gone, fails the same way when tried again
/// (the worker says so): the rollout waits for a person at once. Throttling is tried again.
#[test]
fn a_refused_write_waits_for_a_person_at_once_and_throttling_is_retried() {
    use baton_schemas::reports::{TrafficFailure, to_output};
    let failure_output = |kind: &str, operation: &str, code: Option<&str>| {
        to_output(&TrafficFailure::new(kind, operation, code))
    };
    let mut core = serving_v1(OKRA_README);
    let step = only_job(&core.apply(observed(&V1_V2, Some(&RULE_V1), at(10)), at(10)));
    let throttled = Outcome::Failed {
        error: "ModifyRule: Throttling: Rate exceeded".into(),
        output: Some(failure_output(
            "throttled",
            "ModifyRule",
            Some("Throttling"),
        )),
        kind: FailureKind::Retryable,
    };
    assert!(report(&mut core, &step, throttled, at(11)).is_empty());
    assert_eq!(phase(&core), CellPhase::Progressing);
    let retry = only_job(&core.apply(Input::Tick, core.next_deadline().unwrap()));
    assert_eq!(
        (retry.node.clone(), retry.attempt),
        (step.node.clone(), Attempt(2))
    );
    let invalid = Outcome::Failed {
        error: "ModifyRule: ValidationError: bad".into(),
        output: Some(failure_output(
            "invalid",
            "ModifyRule",
            Some("ValidationError"),
        )),
        kind: FailureKind::Final,
    };
    assert!(jobs(&report(&mut core, &retry, invalid, at(20))).is_empty());
    let s = status(&core);
    assert_eq!(phase(&core), CellPhase::Paused);
    assert_eq!(
        s.message.as_deref(),
        Some(
            "step 0 failed: ModifyRule: ValidationError: bad; resume tries it again, abort rolls back"
        )
    );
}

/// A Cell whose rule moves (a new priority or listener) writes the new rule, then removes the
/// old one when its policy is Delete; with Retain the old rule stays.
#[test]
fn a_moved_rule_is_written_anew_and_the_old_one_deleted_under_the_delete_policy() {
    let delete = OKRA_README.replace("replicas: 2", "replicas: 2\n  deletionPolicy: Delete");
    for (text, removes) in [(delete.as_str(), true), (OKRA_README, false)] {
        let mut core = serving_v1(text);
        let moved = text.replace("priority: 10", "priority: 11");
        let doc = parse_documents("c.yaml", &moved, T0).unwrap().remove(0);
        let switch = only_job(&core.apply(Input::from(doc), at(20)));
        assert_eq!(switch.traffic().unwrap().priority, 11);
        let actions = succeed(&mut core, &switch, at(21));
        match removes {
            true => {
                let old = only_job(&actions);
                let spec = old.traffic().unwrap();
                assert_eq!(
                    (spec.action.clone(), spec.priority),
                    (RuleAction::Delete, 10)
                );
                assert!(generation(&old) > generation(&switch));
            }
            false => assert!(jobs(&actions).is_empty()),
        }
        assert_eq!(status(&core).written.as_ref().unwrap().priority, 11);
        assert_eq!(phase(&core), CellPhase::Serving);
    }
}
