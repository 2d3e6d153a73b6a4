//! Replays of recorded histories: the core is a deterministic function of its inputs, so the
//! planner can rebuild what a crash lost by applying the event stream again.
//!
//! A history is the events a simulated worker sends for every job it gets (a flaky node fails
//! its first attempt, the others succeed in order). Its transcript of actions is committed
//! under `core/src/histories/`: a change in what the core decides, or in the jobs it sends,
//! shows as a diff there (`BATON_BLESS=1` writes the new transcript after a deliberate change).

use std::collections::VecDeque;
use std::fmt::Write as _;

use crate::*;

use baton_schemas::status::RunStatus;
use baton_schemas::wire::{Event, Job, Outcome, Timestamp};
use baton_schemas::{Attempt, RunId, Workflow, WorkflowName};
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
pub(crate) type Step = (Input, Timestamp);

/// Returns the events a worker sends for `job` when it starts it and ends it at `at`.
pub(crate) fn worked(job: Job, at: Timestamp, outcome: Outcome) -> [Step; 2] {
    [
        (
            Input::Bus(Event::NodeStarted {
                run: job.run.clone(),
                node: job.node.clone(),
                attempt: job.attempt,
                at,
            }),
            at,
        ),
        (super::kit::finished_job(&job, outcome, at), at),
    ]
}

fn workflow() -> Workflow {
    match parse_documents("history.yaml", WORKFLOW, T0)
        .unwrap()
        .remove(0)
    {
        Document::Workflow(w) => w,
        other => panic!("not a workflow: {other:?}"),
    }
}

/// Documents of a chain history: an ignitor fires `NOW`; it starts `task1` and `guard`;
/// `task1`'s success starts `task2` and `guard` again, which `Forbid` refuses while the first
/// `guard` still runs; `task2`'s success starts `flaky`, which fails and starts itself until
/// the chain limit refuses it.
const CHAIN: &str = "apiVersion: sirocco.cloud/v1alpha1
kind: Task
metadata: {name: task1}
spec: {startOnIgnition: [go], template: {spec: {containers: [{name: main, image: busybox}]}}}
---
apiVersion: sirocco.cloud/v1alpha1
kind: Task
metadata: {name: task2}
spec: {startOnSuccess: [task1], template: {spec: {containers: [{name: main, image: busybox}]}}}
---
apiVersion: sirocco.cloud/v1alpha1
kind: Task
metadata: {name: guard}
spec:
  startOnIgnition: [go]
  startOnSuccess: [task1]
  concurrencyPolicy: Forbid
  template: {spec: {containers: [{name: main, image: busybox}]}}
---
apiVersion: sirocco.cloud/v1alpha1
kind: Task
metadata: {name: flaky}
spec:
  startOnSuccess: [task2]
  startOnFailure: [flaky]
  chainLimit: 7
  template: {spec: {containers: [{name: main, image: busybox}]}}
---
apiVersion: sirocco.cloud/v1alpha1
kind: Ignitor
metadata: {name: go}
spec: {scheduled: NOW, data: from-go}
";

/// Returns the first steps of the workflow history: `release` registered and started.
fn release_history() -> Vec<Step> {
    vec![
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
    ]
}

/// Returns the first steps of the chain history: its documents registered, then a tick.
fn chain_history() -> Vec<Step> {
    let mut steps: Vec<Step> = parse_documents("chain.yaml", CHAIN, T0)
        .unwrap()
        .into_iter()
        .map(|d| (Input::from(d), T0))
        .collect();
    steps.push((Input::Tick, T0));
    steps
}

/// Returns a history grown from its first steps and the transcript of what the core decided
/// along it. A fire the core publishes is read back at once, as the planner reads the
/// triggers stream. The worker takes jobs in the order they were dispatched, except that it
/// puts the first `guard` job back once (it runs long); `build` fails its first attempt and
/// `flaky` every attempt; a tick fires a retry when its backoff has passed.
fn record(first: Vec<Step>) -> (Vec<Step>, String) {
    let mut core = Core::new(CoreConfig::default());
    let mut steps = first;
    let mut transcript = String::new();
    let mut queue: VecDeque<Job> = VecDeque::new();
    let mut deferred = false;
    let mut now = T0;
    let mut i = 0;
    while i < steps.len() {
        let (input, at) = steps[i].clone();
        now = now.max(at);
        let actions = core.apply(input.clone(), at);
        writeln!(transcript, "{}", describe_input(&input)).unwrap();
        for action in &actions {
            writeln!(transcript, "  {}", describe_action(action)).unwrap();
            match action {
                Action::Dispatch(job) => queue.push_back((**job).clone()),
                Action::Fire(fire) => steps.push((Input::Fire(fire.clone()), at)),
                _ => {}
            }
        }
        i += 1;
        if i < steps.len() {
            continue;
        }
        // The worker takes the next job, or time passes to the next retry.
        if !deferred && queue.len() > 1 && queue[0].node.as_str() == "guard" {
            deferred = true;
            queue.rotate_left(1);
        }
        if let Some(job) = queue.pop_front() {
            now = now.after(std::time::Duration::from_millis(10));
            let fails = (job.node.as_str() == "build" && job.attempt == Attempt::FIRST)
                || job.node.as_str().starts_with("flaky");
            let outcome = if fails {
                Outcome::failed(format!("{} crashed", job.node))
            } else {
                Outcome::Succeeded {
                    output: format!("{}#{}", job.node, job.attempt),
                }
            };
            steps.extend(worked(job, now, outcome));
        } else if core.runs().any(|r| r.finished_at.is_none())
            && let Some(deadline) = core.next_deadline()
        {
            steps.push((Input::Tick, deadline));
        }
    }
    for run in core.runs() {
        let status = run.status();
        writeln!(transcript, "end: {} {}", run.id, status.state).unwrap();
        for node in &status.nodes {
            let why = node
                .error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            writeln!(transcript, "  {} {}{why}", node.name, node.state).unwrap();
        }
    }
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
        Input::RegisterTask(t) => format!("register task {}", t.metadata.name),
        Input::RegisterIgnitor { ignitor, .. } => {
            format!("register ignitor {}", ignitor.metadata.name)
        }
        Input::Fire(fire) => format!("read fire {}", fire.msg_id()),
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
        Action::Fire(fire) => format!("publish fire {} (data {:?})", fire.msg_id(), fire.data),
        Action::IgnitorFired {
            ignitor,
            scheduled,
            run,
        } => format!("ignitor {ignitor} fired for {scheduled}, chain {run:?}"),
        Action::AnnounceCancel { run, node } => format!("cancel {run} {node:?}"),
        other => format!("{other:?}"),
    }
}

/// Checks a history's transcript against the one committed as `name` (written anew with
/// `BATON_BLESS=1`), and that recording it again gives the same transcript.
/// Compares the transcript a history records with the committed one in `histories/name`
/// (written anew with `BATON_BLESS=1`), and with a second recording of the same history.
pub(crate) fn check_transcript(name: &str, transcript_of_history: impl Fn() -> String) {
    let transcript = transcript_of_history();
    let path = format!("{}/src/histories/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("BATON_BLESS").is_some() {
        std::fs::write(&path, &transcript).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        transcript, expected,
        "the core decides otherwise than {path} records; if that is meant, run again with BATON_BLESS=1"
    );
    // The same history, recorded again, gives the same transcript: nothing depends on
    // anything but the inputs.
    assert_eq!(transcript_of_history(), transcript);
}

#[test]
fn the_recorded_history_decides_what_its_transcript_says() {
    check_transcript("release.txt", || record(release_history()).1);
}

#[test]
fn the_recorded_chain_history_decides_what_its_transcript_says() {
    check_transcript("chain.txt", || record(chain_history()).1);
}

/// After a crash the planner holds its last checkpoint and applies again everything the
/// streams hold after the checkpoint's position, which may include messages it had applied
/// before: for every crash point and every overlap, every run, task and ignitor ends as it
/// did without a crash, and every job or fire published again carries the id of one the
/// history published.
fn replay_from_every_checkpoint(first: fn() -> Vec<Step>, keep: usize) {
    let (steps, _) = record(first());
    let mut reference = Core::new(CoreConfig::default());
    let mut sent: std::collections::BTreeMap<String, Job> = Default::default();
    let mut fires = std::collections::BTreeSet::new();
    for (input, at) in &steps {
        for action in reference.apply(input.clone(), *at) {
            match action {
                Action::Dispatch(job) => {
                    sent.insert(job.msg_id(), *job);
                }
                Action::Fire(fire) => {
                    fires.insert(fire.msg_id());
                }
                _ => {}
            }
        }
    }
    replay_after_every_crash(&steps, keep, |what, restored, actions| {
        for action in actions {
            match action {
                Action::Dispatch(job) => {
                    let first = sent
                        .get(&job.msg_id())
                        .unwrap_or_else(|| panic!("{what}: a job the history never sent: {job:?}"));
                    assert_eq!(first.node, job.node);
                    assert_eq!(first.attempt, job.attempt);
                }
                Action::Fire(fire) => assert!(
                    fires.contains(&fire.msg_id()),
                    "{what}: a fire the history never published: {fire:?}"
                ),
                _ => {}
            }
        }
        let statuses = |core: &Core| -> Vec<RunStatus> { core.runs().map(Run::status).collect() };
        assert_eq!(statuses(restored), statuses(&reference), "{what}");
        let tasks =
            |core: &Core| -> Vec<TaskEntry> { core.tasks().map(|(t, _)| t.clone()).collect() };
        assert_eq!(tasks(restored), tasks(&reference), "{what}");
        let ignitors = |core: &Core| -> Vec<IgnitorEntry> { core.ignitors().cloned().collect() };
        assert_eq!(ignitors(restored), ignitors(&reference), "{what}");
    });
}

/// Crashes a planner after every step of `steps` from `keep` on: a core applies the steps
/// before the crash and checkpoints them to a store; a core restored from the store is given
/// the rest again, the last 0, 1 or 3 steps before the crash twice (their messages were past
/// the checkpoint's stream position). `check` gets what happened (for messages), the
/// restored core at the end, and the actions the steps given again caused.
pub(crate) fn replay_after_every_crash(
    steps: &[Step],
    keep: usize,
    mut check: impl FnMut(&str, &Core, Vec<Action>),
) {
    for crash in keep..steps.len() {
        for overlap in [0, 1, 3] {
            let mut store = super::store::MemoryStore::default();
            let mut core = Core::new(CoreConfig::default());
            for (input, at) in &steps[..crash] {
                core.apply(input.clone(), *at);
            }
            store.commit(&core.take_changes());
            let mut restored = Core::restore(CoreConfig::default(), store.load());
            let mut actions = Vec::new();
            for (input, at) in &steps[crash.saturating_sub(overlap).max(keep)..] {
                actions.extend(restored.apply(input.clone(), *at));
            }
            let what = format!("crash after step {crash}, {overlap} steps applied twice");
            check(&what, &restored, actions);
        }
    }
}

#[test]
fn a_replay_from_any_checkpoint_ends_where_the_history_ended() {
    // The first two steps (register, start) are API commands, committed before they act.
    replay_from_every_checkpoint(release_history, 2);
}

#[test]
fn a_chain_replayed_from_any_checkpoint_ends_where_its_history_ended() {
    // The documents are API commands, committed before they act; the tick is local too, but
    // replayed here like the rest: a fire is recorded with the tick, so a second tick at the
    // same time publishes nothing new.
    replay_from_every_checkpoint(chain_history, 5);
}
