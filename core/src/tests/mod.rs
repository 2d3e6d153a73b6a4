//! Unit tests of the decision core: inputs in, actions out, no I/O.

use crate::*;
use kit::ok;

mod fuzz;
pub(crate) mod kit;
pub(crate) mod replay;
pub(crate) mod store;
mod summary;
mod tally;
use std::time::Duration;

use baton_schemas::status::State;
use baton_schemas::wire::{Event, Job, Outcome, Timestamp};
use baton_schemas::{Attempt, NodeName, RunId, Workflow, WorkflowName};
use baton_schemas::{Document, parse_documents};

const T0: Timestamp = Timestamp(1_000_000);

fn workflow(nodes: &str) -> Workflow {
    workflow_with("", nodes)
}

fn workflow_with(spec_extra: &str, nodes: &str) -> Workflow {
    let text = format!(
        "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: wf}}\nspec:\n{spec_extra}  nodes:\n{nodes}"
    );
    match parse_documents("test.yaml", &text, T0).unwrap().remove(0) {
        Document::Workflow(w) => w,
        other => panic!("not a workflow: {other:?}"),
    }
}

fn core_with(wf: Workflow) -> Core {
    let mut core = Core::new(CoreConfig {
        timeout_grace: Duration::from_secs(60),
        ..CoreConfig::default()
    });
    assert!(core.apply(Input::Register(wf), T0).is_empty());
    core
}

fn start(core: &mut Core, run: &str) -> Vec<Action> {
    core.apply(
        Input::StartRun {
            run: RunId::new(run),
            workflow: WorkflowName::new("wf"),
            initiator: "api".into(),
            data: "seed".into(),
        },
        T0,
    )
}

fn finished(run: &str, node: &str, attempt: u32, outcome: Outcome) -> Input {
    Input::Bus(Event::NodeFinished {
        run: RunId::new(run),
        node: NodeName::new(node),
        attempt: Attempt(attempt),
        started_at: T0,
        finished_at: T0,
        outcome,
    })
}

fn failed(error: &str) -> Outcome {
    Outcome::failed(error)
}

fn dispatched(actions: &[Action]) -> Vec<(String, u32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Dispatch(job) => Some((job.node.to_string(), job.attempt.0)),
            _ => None,
        })
        .collect()
}

fn job<'a>(actions: &'a [Action], node: &str) -> &'a Job {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Dispatch(job) if job.node.as_str() == node => Some(job),
            _ => None,
        })
        .expect("job dispatched")
}

fn states(core: &Core, run: &str) -> Vec<(String, State)> {
    core.run(&RunId::new(run))
        .unwrap()
        .status()
        .nodes
        .into_iter()
        .map(|n| (n.name, n.state))
        .collect()
}

fn run_state(core: &Core, run: &str) -> State {
    core.run(&RunId::new(run)).unwrap().status().state
}

const DIAMOND: &str = "  - {name: a, kind: noop}\n  - {name: b, kind: noop, needs: [a]}\n  - {name: c, kind: noop, needs: [a]}\n  - {name: d, kind: noop, needs: [b, c]}\n";

#[test]
fn diamond_runs_in_order_and_passes_data() {
    let mut core = core_with(workflow(DIAMOND));
    let actions = start(&mut core, "r1");
    assert_eq!(dispatched(&actions), [("a".into(), 1)]);
    let a = job(&actions, "a");
    assert_eq!(
        (a.inputs.initiator.as_str(), a.inputs.data.as_str()),
        ("api", "seed")
    );
    assert_eq!(a.inputs.inputs, None);

    let actions = core.apply(finished("r1", "a", 1, ok("from-a")), T0);
    assert_eq!(dispatched(&actions), [("b".into(), 1), ("c".into(), 1)]);
    assert_eq!(job(&actions, "b").inputs.data, "from-a");
    assert_eq!(job(&actions, "b").inputs.initiator, "a");

    assert!(dispatched(&core.apply(finished("r1", "c", 1, ok("from-c")), T0)).is_empty());
    let actions = core.apply(finished("r1", "b", 1, ok("from-b")), T0);
    let d = job(&actions, "d");
    assert_eq!(
        d.inputs.initiator, "b",
        "the need that finished last starts d"
    );
    assert_eq!(d.inputs.data, "from-b");
    let inputs = d.inputs.inputs.as_ref().unwrap();
    assert_eq!(inputs[&NodeName::new("b")], "from-b");
    assert_eq!(inputs[&NodeName::new("c")], "from-c");

    let actions = core.apply(finished("r1", "d", 1, ok("")), T0);
    assert_eq!(
        actions,
        [Action::RunFinished {
            run: RunId::new("r1"),
            state: State::Succeeded
        }]
    );
    assert!(
        states(&core, "r1")
            .iter()
            .all(|(_, s)| *s == State::Succeeded)
    );
    assert_eq!(run_state(&core, "r1"), State::Succeeded);
}

#[test]
fn applying_the_same_input_twice_changes_nothing() {
    let mut core = core_with(workflow(DIAMOND));
    start(&mut core, "r1");
    assert!(
        start(&mut core, "r1").is_empty(),
        "a known run id is not started again"
    );
    assert_eq!(
        dispatched(&core.apply(finished("r1", "a", 1, ok("x")), T0)).len(),
        2
    );
    let before = core.run(&RunId::new("r1")).unwrap().clone();
    assert!(core.apply(finished("r1", "a", 1, ok("x")), T0).is_empty());
    assert!(
        core.apply(finished("r1", "a", 1, failed("late")), T0)
            .is_empty()
    );
    assert_eq!(core.run(&RunId::new("r1")).unwrap(), &before);
    assert!(core.apply(finished("nope", "a", 1, ok("x")), T0).is_empty());
    assert!(core.apply(finished("r1", "zz", 1, ok("x")), T0).is_empty());
}

#[test]
fn fail_fast_lets_running_nodes_finish_and_handlers_run() {
    let wf = workflow(
        "  - {name: a, kind: noop}\n  - {name: b, kind: noop, needs: [a]}\n  - {name: c, kind: noop, needs: [a]}\n  - {name: after-c, kind: noop, needs: [c]}\n  - {name: after-b, kind: noop, needs: [b]}\n  - {name: on-fail, kind: noop, needs: [b], when: failure}\n  - {name: cleanup, kind: noop, needs: [after-b, after-c], when: always}\n",
    );
    let mut core = core_with(wf);
    start(&mut core, "r");
    core.apply(finished("r", "a", 1, ok("")), T0);
    let actions = core.apply(finished("r", "b", 1, failed("boom")), T0);
    assert_eq!(
        dispatched(&actions),
        [("on-fail".into(), 1)],
        "failure handlers are not held back"
    );
    // c was running: it finishes, but after-c is a new node and fail-fast holds it back.
    let actions = core.apply(finished("r", "c", 1, ok("")), T0);
    assert_eq!(
        dispatched(&actions),
        [("cleanup".into(), 1)],
        "always handlers are not held back"
    );
    let s = states(&core, "r");
    assert_eq!(s[3], ("after-c".into(), State::Skipped));
    assert_eq!(s[4], ("after-b".into(), State::Skipped));
    let err = core.run(&RunId::new("r")).unwrap().nodes[3]
        .error
        .clone()
        .unwrap();
    assert!(err.contains("fail-fast after node \"b\" failed"), "{err}");
    core.apply(finished("r", "on-fail", 1, ok("")), T0);
    let actions = core.apply(finished("r", "cleanup", 1, ok("")), T0);
    assert_eq!(
        actions,
        [Action::RunFinished {
            run: RunId::new("r"),
            state: State::Failed
        }]
    );
}

#[test]
fn continue_policy_lets_independent_branches_go_on() {
    let wf = workflow_with(
        "  failurePolicy: continue\n",
        "  - {name: a, kind: noop}\n  - {name: b, kind: noop}\n  - {name: after-a, kind: noop, needs: [a]}\n  - {name: after-b, kind: noop, needs: [b]}\n",
    );
    let mut core = core_with(wf);
    assert_eq!(dispatched(&start(&mut core, "r")).len(), 2);
    assert!(dispatched(&core.apply(finished("r", "a", 1, failed("x")), T0)).is_empty());
    assert_eq!(
        dispatched(&core.apply(finished("r", "b", 1, ok("")), T0)),
        [("after-b".into(), 1)]
    );
    let actions = core.apply(finished("r", "after-b", 1, ok("")), T0);
    assert_eq!(
        actions,
        [Action::RunFinished {
            run: RunId::new("r"),
            state: State::Failed
        }]
    );
    assert_eq!(states(&core, "r")[2], ("after-a".into(), State::Skipped));
}

#[test]
fn failure_handler_is_skipped_when_nothing_failed() {
    let wf = workflow(
        "  - {name: a, kind: noop}\n  - {name: on-fail, kind: noop, needs: [a], when: failure}\n  - {name: always, kind: noop, needs: [a], when: always}\n",
    );
    let mut core = core_with(wf);
    start(&mut core, "r");
    let actions = core.apply(finished("r", "a", 1, ok("")), T0);
    assert_eq!(dispatched(&actions), [("always".into(), 1)]);
    let actions = core.apply(finished("r", "always", 1, ok("")), T0);
    assert_eq!(
        actions,
        [Action::RunFinished {
            run: RunId::new("r"),
            state: State::Succeeded
        }]
    );
    assert_eq!(states(&core, "r")[1], ("on-fail".into(), State::Skipped));
}

#[test]
fn failure_handler_gets_the_error_and_the_run_still_fails() {
    let wf = workflow(
        "  - {name: a, kind: noop}\n  - {name: on-fail, kind: noop, needs: [a], when: failure}\n",
    );
    let mut core = core_with(wf);
    start(&mut core, "r");
    let actions = core.apply(finished("r", "a", 1, failed("exit code 3")), T0);
    let handler = job(&actions, "on-fail");
    assert_eq!(
        (
            handler.inputs.initiator.as_str(),
            handler.inputs.data.as_str()
        ),
        ("a", "exit code 3")
    );
    let actions = core.apply(finished("r", "on-fail", 1, ok("")), T0);
    assert_eq!(
        actions,
        [Action::RunFinished {
            run: RunId::new("r"),
            state: State::Failed
        }]
    );
}

#[test]
fn retries_wait_their_backoff() {
    let wf = workflow(
        "  - {name: a, kind: noop, retries: {limit: 2, backoff: {initial: 1s, max: 10s}}}\n  - {name: b, kind: noop, needs: [a]}\n",
    );
    let mut core = core_with(wf);
    start(&mut core, "r");
    assert!(
        core.apply(finished("r", "a", 1, failed("flaky")), T0)
            .is_empty()
    );
    assert_eq!(core.next_deadline(), Some(T0.after(Duration::from_secs(1))));
    assert_eq!(
        states(&core, "r")[0].1,
        State::Running,
        "waiting to retry shows as running"
    );
    assert!(
        core.apply(Input::Tick, T0.after(Duration::from_millis(999)))
            .is_empty()
    );
    let t1 = T0.after(Duration::from_secs(1));
    assert_eq!(dispatched(&core.apply(Input::Tick, t1)), [("a".into(), 2)]);
    assert!(
        core.apply(Input::Tick, t1).is_empty(),
        "a fired retry does not fire again"
    );
    assert!(
        core.apply(finished("r", "a", 2, failed("flaky")), t1)
            .is_empty()
    );
    assert_eq!(
        core.next_deadline(),
        Some(t1.after(Duration::from_secs(2))),
        "backoff doubles"
    );
    let t2 = t1.after(Duration::from_secs(2));
    assert_eq!(dispatched(&core.apply(Input::Tick, t2)), [("a".into(), 3)]);
    assert!(
        core.apply(finished("r", "a", 2, ok("stale")), t2)
            .is_empty(),
        "a stale attempt is ignored"
    );
    let actions = core.apply(finished("r", "a", 3, failed("flaky")), t2);
    assert_eq!(
        actions,
        [Action::RunFinished {
            run: RunId::new("r"),
            state: State::Failed
        }]
    );
    let node = &core.run(&RunId::new("r")).unwrap().status().nodes[0];
    assert_eq!((node.attempts, node.error.as_deref()), (3, Some("flaky")));
}

#[test]
fn a_silent_worker_is_timed_out_by_the_backstop() {
    let wf = workflow("  - {name: a, kind: noop, timeout: 10s, retries: {limit: 1}}\n");
    let mut core = core_with(wf);
    start(&mut core, "r");
    let started = Input::Bus(Event::NodeStarted {
        run: RunId::new("r"),
        node: NodeName::new("a"),
        attempt: Attempt(1),
        at: T0,
    });
    assert!(core.apply(started.clone(), T0).is_empty());
    assert_eq!(
        core.next_deadline(),
        Some(T0.after(Duration::from_secs(70)))
    );
    assert!(
        core.apply(Input::Tick, T0.after(Duration::from_secs(69)))
            .is_empty()
    );
    let t = T0.after(Duration::from_secs(70));
    assert!(core.apply(Input::Tick, t).is_empty());
    assert!(
        core.run(&RunId::new("r")).unwrap().nodes[0]
            .error
            .as_ref()
            .unwrap()
            .starts_with("timed out")
    );
    assert_eq!(
        dispatched(&core.apply(Input::Tick, t.after(Duration::from_secs(1)))),
        [("a".into(), 2)]
    );
    assert!(
        core.apply(started, t).is_empty(),
        "a start of the old attempt changes nothing"
    );
}

#[test]
fn cancel_stops_the_run_and_ignores_late_results() {
    let mut core = core_with(workflow(DIAMOND));
    start(&mut core, "r");
    core.apply(finished("r", "a", 1, ok("")), T0);
    let actions = core.apply(Input::Cancel(RunId::new("r")), T0);
    assert_eq!(
        actions,
        [
            Action::AnnounceCancel {
                run: RunId::new("r"),
                node: None
            },
            Action::RunFinished {
                run: RunId::new("r"),
                state: State::Cancelled
            }
        ]
    );
    assert!(core.apply(finished("r", "b", 1, ok("")), T0).is_empty());
    assert!(core.apply(Input::Cancel(RunId::new("r")), T0).is_empty());
    let s = states(&core, "r");
    assert_eq!(
        s.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        [
            State::Succeeded,
            State::Cancelled,
            State::Cancelled,
            State::Cancelled
        ]
    );
    assert_eq!(
        core.apply(Input::Cancel(RunId::new("nope")), T0),
        [Action::Refused(Refusal::UnknownRun("nope".into()))]
    );
}

#[test]
fn unknown_workflow_is_refused() {
    let mut core = Core::new(CoreConfig::default());
    let actions = core.apply(
        Input::StartRun {
            run: RunId::new("r"),
            workflow: WorkflowName::new("x"),
            initiator: "api".into(),
            data: String::new(),
        },
        T0,
    );
    assert_eq!(
        actions,
        [Action::Refused(Refusal::UnknownWorkflow("x".into()))]
    );
    assert!(core.run(&RunId::new("r")).is_none());
}

#[test]
fn a_run_keeps_the_spec_it_started_with() {
    let mut core = core_with(workflow(DIAMOND));
    start(&mut core, "r");
    core.apply(Input::Register(workflow("  - {name: z, kind: noop}\n")), T0);
    assert_eq!(
        dispatched(&core.apply(finished("r", "a", 1, ok("")), T0)).len(),
        2
    );
    assert_eq!(dispatched(&start(&mut core, "r2")), [("z".into(), 1)]);
}

#[test]
fn skips_cascade_to_the_end() {
    let wf = workflow(
        "  - {name: d, kind: noop, needs: [c]}\n  - {name: c, kind: noop, needs: [b]}\n  - {name: b, kind: noop, needs: [a]}\n  - {name: a, kind: noop}\n",
    );
    let mut core = core_with(wf);
    start(&mut core, "r");
    let actions = core.apply(finished("r", "a", 1, failed("x")), T0);
    assert_eq!(
        actions,
        [Action::RunFinished {
            run: RunId::new("r"),
            state: State::Failed
        }]
    );
    assert_eq!(
        states(&core, "r")
            .iter()
            .filter(|(_, s)| *s == State::Skipped)
            .count(),
        3
    );
}

#[test]
fn exec_jobs_carry_their_command() {
    let wf = workflow(
        "  - {name: a, kind: exec, command: [echo, hi], env: {K: v}, workingDir: /tmp, timeout: 5s}\n",
    );
    let mut core = core_with(wf);
    let actions = start(&mut core, "r");
    let a = job(&actions, "a");
    let exec = a.exec().unwrap();
    assert_eq!(exec.command, ["echo", "hi"]);
    assert_eq!(exec.env["K"], "v");
    assert_eq!(exec.working_dir.as_deref(), Some("/tmp"));
    assert_eq!(a.timeout_ms, Some(5000));
    assert_eq!(a.msg_id(), "r.a.1");
}

#[test]
fn a_run_whose_graph_names_a_node_twice_fails_at_once_instead_of_hanging() {
    // Validation refuses such a spec; a bug that builds one anyway must not leave a run
    // waiting forever for the job of the second node, which the bus drops as a duplicate.
    let mut wf = workflow("    - {name: a, kind: noop}\n    - {name: b, kind: noop, needs: [a]}\n");
    wf.spec.nodes[1].name = NodeName::new("a");
    wf.spec.nodes[1].needs.clear();
    let mut core = core_with(wf);
    let actions = start(&mut core, "r1");
    assert!(dispatched(&actions).is_empty(), "{actions:?}");
    assert!(actions.contains(&Action::RunFinished {
        run: RunId::new("r1"),
        state: State::Failed,
    }));
    let status = core.run(&RunId::new("r1")).unwrap().status();
    assert_eq!(status.state, State::Failed);
    assert_eq!(status.nodes[1].state, State::Failed);
    assert!(
        status.nodes[1]
            .error
            .as_deref()
            .unwrap()
            .contains("names node \"a\" twice"),
        "{status:?}"
    );
}

/// A Workflow's `pod` node runs no Task: its job names none (the worker labels the pod with
/// its node, not with a task it does not have).
#[test]
fn a_workflow_pod_job_names_no_task() {
    let mut core = core_with(workflow(
        "  - {name: migrate, kind: pod, template: {spec: {containers: [{name: main, image: busybox}]}}}\n",
    ));
    let actions = start(&mut core, "r1");
    let pod = job(&actions, "migrate").pod().expect("pod settings");
    assert_eq!(pod.task, None);
}

#[test]
fn an_undeliverable_job_fails_its_node_for_good_and_the_run_goes_on() {
    let wf = workflow(
        "  - {name: a, kind: noop, retries: {limit: 3}}\n  - {name: b, kind: noop, needs: [a]}\n  - {name: handler, kind: noop, needs: [a], when: failure}\n",
    );
    let mut core = core_with(wf);
    assert_eq!(dispatched(&start(&mut core, "r")), [("a".into(), 1)]);
    let undeliverable = |attempt| Input::Undeliverable {
        run: RunId::new("r"),
        node: NodeName::new("a"),
        attempt: Attempt(attempt),
        reason: "job is 2000000 bytes, above the bus's limit of 1048576".into(),
    };
    // Another attempt's report changes nothing.
    assert!(core.apply(undeliverable(2), T0).is_empty());
    // No retry, though the node has three: the same job would be as large again. The failure
    // handler runs.
    assert_eq!(
        dispatched(&core.apply(undeliverable(1), T0)),
        [("handler".into(), 1)]
    );
    let status = core.run(&RunId::new("r")).unwrap().status();
    assert_eq!(status.nodes[0].state, State::Failed);
    assert_eq!(status.nodes[0].attempts, 1);
    assert!(
        status.nodes[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("job is 2000000 bytes")
    );
    assert_eq!(status.nodes[1].state, State::Skipped);
}
