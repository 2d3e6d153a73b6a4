//! Replays of recorded histories: the core is a deterministic function of its inputs, so the
//! planner can rebuild what a crash lost by applying the event stream again.
//!
//! A history is the events a simulated worker sends for every job it gets (a flaky node fails
//! its first attempt, the others succeed in order). Its transcript of actions is committed
//! under `planner/src/histories/`: a change in what the core decides, or in the jobs it sends,
//! shows as a diff there (`BATON_BLESS=1` writes the new transcript after a deliberate change).

use std::collections::VecDeque;
use std::fmt::Write as _;

use super::*;
use crate::store::{Change, Store};
use baton_schemas::{Document, parse_documents};

const T0: Timestamp = Timestamp(1_700_000_000_000);

const WORKFLOW: &str = "apiVersion: baton.dev/v1alpha1
kind: Workflow
metadata: {name: release}
spec:
  nodes:
    - {name: fetch, kind: exec, command: [fetch]}
    - {name: build, kind: exec, needs: [fetch], command: [build], retries: {limit: 2, backoff: {initial: 1s}}}
    - {name: test, kind: exec, needs: [fetch], command: [test], timeout: 1m}
    - {name: publish, kind: noop, needs: [build, test]}
    - {name: notify, kind: noop, needs: [publish], when: always}
";

/// One step of a history: an input and when it is applied.
type Step = (Input, Timestamp);

fn workflow() -> Workflow {
    match parse_documents("history.yaml", WORKFLOW, T0)
        .unwrap()
        .remove(0)
    {
        Document::Workflow(w) => w,
        other => panic!("not a workflow: {other:?}"),
    }
}

/// Returns a history and the transcript of what the core decided along it. The worker takes
/// jobs in the order they were dispatched; `build` fails its first attempt; a tick fires the
/// retry when its backoff has passed.
fn record() -> (Vec<Step>, String) {
    let mut core = Core::new(CoreConfig::default());
    let mut steps: Vec<Step> = vec![
        (Input::Register(workflow()), T0),
        (
            Input::StartRun {
                run: RunId::new("r1"),
                workflow: WorkflowName::new("release"),
                initiator: "api".into(),
                data: "v1".into(),
            },
            T0,
        ),
    ];
    let mut transcript = String::new();
    let mut queue: VecDeque<Job> = VecDeque::new();
    let mut now = T0;
    let mut i = 0;
    while i < steps.len() {
        let (input, at) = steps[i].clone();
        now = now.max(at);
        let actions = core.apply(input.clone(), at);
        writeln!(transcript, "{}", describe_input(&input)).unwrap();
        for action in &actions {
            writeln!(transcript, "  {}", describe_action(action)).unwrap();
            if let Action::Dispatch(job) = action {
                queue.push_back((**job).clone());
            }
        }
        i += 1;
        if i < steps.len() {
            continue;
        }
        // The worker takes the next job, or time passes to the next retry.
        if let Some(job) = queue.pop_front() {
            now = now.after(std::time::Duration::from_millis(10));
            let outcome = if job.node.as_str() == "build" && job.attempt == Attempt::FIRST {
                Outcome::failed("compiler crashed")
            } else {
                Outcome::Succeeded {
                    output: format!("{}#{}", job.node, job.attempt),
                }
            };
            steps.push((
                Input::Bus(Event::NodeStarted {
                    run: job.run.clone(),
                    node: job.node.clone(),
                    attempt: job.attempt,
                    at: now,
                }),
                now,
            ));
            steps.push((
                Input::Bus(Event::NodeFinished {
                    run: job.run,
                    node: job.node,
                    attempt: job.attempt,
                    started_at: now,
                    finished_at: now,
                    outcome,
                }),
                now,
            ));
        } else if let Some(deadline) = core.next_deadline() {
            steps.push((Input::Tick, deadline));
        }
    }
    let status = core.run(&RunId::new("r1")).unwrap().status();
    writeln!(transcript, "end: {}", status.state).unwrap();
    (steps, transcript)
}

fn describe_input(input: &Input) -> String {
    match input {
        Input::Register(w) => format!("register {}", w.metadata.name),
        Input::StartRun { run, workflow, .. } => format!("start {run} of {workflow}"),
        Input::Bus(Event::NodeStarted {
            run, node, attempt, ..
        }) => format!("started {run}/{node}#{attempt}"),
        Input::Bus(Event::NodeFinished {
            run,
            node,
            attempt,
            outcome,
            ..
        }) => {
            let how = match outcome {
                Outcome::Succeeded { output } => format!("succeeded {output:?}"),
                Outcome::Failed { error, .. } => format!("failed {error:?}"),
            };
            format!("finished {run}/{node}#{attempt} {how}")
        }
        Input::Tick => "tick".to_owned(),
        other => format!("{other:?}"),
    }
}

fn describe_action(action: &Action) -> String {
    match action {
        Action::Dispatch(job) => format!(
            "dispatch {} (initiator {:?}, data {:?}, inputs {:?})",
            job.msg_id(),
            job.inputs.initiator,
            job.inputs.data,
            job.inputs.inputs
        ),
        Action::RunFinished { run, state } => format!("run {run} {state}"),
        other => format!("{other:?}"),
    }
}

#[test]
fn the_recorded_history_decides_what_its_transcript_says() {
    let (_, transcript) = record();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/histories/release.txt");
    if std::env::var_os("BATON_BLESS").is_some() {
        std::fs::write(path, &transcript).unwrap();
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(
        transcript, expected,
        "the core decides otherwise than {path} records; if that is meant, run again with BATON_BLESS=1"
    );
    // The same history, recorded again, gives the same transcript: nothing depends on
    // anything but the inputs.
    assert_eq!(record().1, transcript);
}

/// After a crash the planner holds its last checkpoint and applies again everything the
/// stream holds after the checkpoint's position, which may include events it had applied
/// before: for every crash point and every overlap, the run ends as it did without a crash,
/// and every job decided again carries the id of the one first decided.
#[test]
fn a_replay_from_any_checkpoint_ends_where_the_history_ended() {
    let (steps, _) = record();
    let mut reference = Core::new(CoreConfig::default());
    let mut sent: std::collections::BTreeMap<String, Job> = Default::default();
    for (input, at) in &steps {
        for action in reference.apply(input.clone(), *at) {
            if let Action::Dispatch(job) = action {
                sent.insert(job.msg_id(), *job);
            }
        }
    }
    let expected = reference.run(&RunId::new("r1")).unwrap().clone();
    let dir = tempfile::tempdir().unwrap();
    for crash in 2..steps.len() {
        for overlap in [0, 1, 3] {
            let store = Store::open(&dir.path().join(format!("{crash}-{overlap}.redb"))).unwrap();
            let mut core = Core::new(CoreConfig::default());
            for (input, at) in &steps[..crash] {
                core.apply(input.clone(), *at);
            }
            store
                .commit(&Change {
                    state: core.take_changes(),
                    ..Change::default()
                })
                .unwrap();
            let mut restored = Core::restore(CoreConfig::default(), &mut store.load().unwrap());
            for (input, at) in &steps[crash.saturating_sub(overlap).max(2)..] {
                for action in restored.apply(input.clone(), *at) {
                    if let Action::Dispatch(job) = action {
                        let first = sent.get(&job.msg_id()).unwrap_or_else(|| {
                            panic!("crash at {crash}: a job the history never sent: {job:?}")
                        });
                        assert_eq!(first.node, job.node);
                        assert_eq!(first.attempt, job.attempt);
                    }
                }
            }
            let run = restored.run(&RunId::new("r1")).unwrap();
            assert_eq!(
                run.status(),
                expected.status(),
                "crash after step {crash}, {overlap} steps applied twice"
            );
        }
    }
}
