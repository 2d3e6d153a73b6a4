//! Property test: no sequence of inputs panics the core.
//!
//! The core is replayed at every start, so an input that panics it is a crash loop. This
//! drives `Core::apply` with arbitrary sequences: workflows built without validation (cycles,
//! unknown needs, durations up to `u64::MAX` milliseconds), the committed example documents
//! (chains, groups, Cells), worker reports for real and made-up nodes and attempts, cancels,
//! removals, rejected triggers, Cell commands, and clocks that jump to the ends of time and
//! back.

use proptest::prelude::*;

use crate::*;

use baton_schemas::wire::{Event, Outcome, Timestamp};
use baton_schemas::{
    Attempt, FailurePolicy, NodeKind, NodeName, NodeSpec, RunId, When, Workflow, WorkflowName,
};
use baton_schemas::{Document, Duration as SpecDuration, Retries, parse_documents};

/// The example documents, read once: Orca's chain, an application group, Cells.
fn examples() -> &'static [Document] {
    static EXAMPLES: std::sync::OnceLock<Vec<Document>> = std::sync::OnceLock::new();
    EXAMPLES.get_or_init(read_examples)
}

fn read_examples() -> Vec<Document> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut documents = Vec::new();
    for file in [
        "orca/task1-task2-ignitor1.yaml",
        "applicationgroups/bookinfo.yaml",
        "cells/baton-cell.yaml",
        "cells/okra-readme.yaml",
        "cells/success-rate.yaml",
        "diamond.yaml",
        "retry-and-handler.yaml",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        documents.extend(parse_documents(file, &text, Timestamp(0)).unwrap());
    }
    documents
}

/// A node: its name's number, its needs' numbers, `when`, timeout, and retries (limit,
/// initial and longest backoff).
type NodeShape = (
    u8,
    Vec<u8>,
    u8,
    Option<SpecDuration>,
    Option<(u32, SpecDuration, SpecDuration)>,
);

/// A workflow as no validation would let through.
#[derive(Clone, Debug)]
struct Shape {
    nodes: Vec<NodeShape>,
    continue_on_failure: bool,
}

fn shape() -> impl Strategy<Value = Shape> {
    // Validation bounds durations; the core must not rely on it.
    let duration = prop_oneof![
        (0..5_000u64).prop_map(SpecDuration::from_millis),
        Just(SpecDuration(std::time::Duration::MAX)),
        any::<u64>().prop_map(SpecDuration::from_secs),
        any::<u64>().prop_map(SpecDuration::from_millis),
    ];
    let node = (
        0..6u8,
        proptest::collection::vec(0..7u8, 0..3),
        0..3u8,
        proptest::option::of(duration.clone()),
        proptest::option::of((0..4u32, duration.clone(), duration)),
    );
    (proptest::collection::vec(node, 1..6), any::<bool>()).prop_map(|(nodes, c)| Shape {
        nodes,
        continue_on_failure: c,
    })
}

fn build(shape: &Shape) -> Workflow {
    let nodes = shape
        .nodes
        .iter()
        .map(|(name, needs, when, timeout, retries)| {
            let mut spec = NodeSpec::new(NodeName::new(format!("n{name}")), NodeKind::Noop);
            spec.needs = needs
                .iter()
                .map(|n| NodeName::new(format!("n{n}")))
                .collect();
            spec.when = [When::Success, When::Failure, When::Always][*when as usize % 3];
            spec.timeout = *timeout;
            spec.retries = retries.map(|(limit, initial, max)| Retries {
                limit,
                backoff: baton_schemas::workflow::Backoff { initial, max },
            });
            spec
        })
        .collect();
    let text = "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: fuzz}\nspec: {nodes: [{name: a, kind: noop}]}\n";
    let Document::Workflow(mut wf) = parse_documents("f", text, Timestamp(0)).unwrap().remove(0)
    else {
        unreachable!()
    };
    wf.spec.nodes = nodes;
    if shape.continue_on_failure {
        wf.spec.failure_policy = FailurePolicy::Continue;
    }
    wf
}

/// One input, with indices resolved against the state when it is applied, so that most
/// reports name runs and nodes that exist.
#[derive(Clone, Debug)]
enum Step {
    Register(Shape),
    Document(usize),
    Start {
        workflow: usize,
        run: u8,
        data: String,
    },
    Started {
        run: usize,
        node: usize,
        attempt: u32,
    },
    Finished {
        run: usize,
        node: usize,
        attempt: u32,
        ok: bool,
        output: String,
    },
    Undeliverable {
        run: usize,
        node: usize,
        attempt: u32,
    },
    Cancel(usize),
    Remove(usize),
    Reject(u8),
    CellCommand {
        cell: usize,
        command: u8,
        step: Option<u32>,
    },
    Tick,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => shape().prop_map(Step::Register),
        2 => any::<usize>().prop_map(Step::Document),
        3 => (any::<usize>(), 0..4u8, ".{0,8}").prop_map(|(workflow, run, data)| Step::Start { workflow, run, data }),
        4 => (any::<usize>(), any::<usize>(), 0..4u32).prop_map(|(run, node, attempt)| Step::Started { run, node, attempt }),
        6 => (any::<usize>(), any::<usize>(), 0..4u32, any::<bool>(), ".{0,8}").prop_map(|(run, node, attempt, ok, output)| Step::Finished { run, node, attempt, ok, output }),
        1 => (any::<usize>(), any::<usize>(), 0..4u32).prop_map(|(run, node, attempt)| Step::Undeliverable { run, node, attempt }),
        1 => any::<usize>().prop_map(Step::Cancel),
        1 => any::<usize>().prop_map(Step::Remove),
        1 => (0..4u8).prop_map(Step::Reject),
        1 => (any::<usize>(), 0..3u8, proptest::option::of(0..4u32)).prop_map(|(cell, command, step)| Step::CellCommand { cell, command, step }),
        3 => Just(Step::Tick),
    ]
}

/// The clock: mostly forward by a little, sometimes to the ends of time and back.
fn clock() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => 0..120_000u64,
        1 => Just(u64::MAX),
        1 => Just(0u64),
        1 => any::<u64>(),
    ]
}

fn pick<T: Clone>(items: &[T], i: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[i % items.len()].clone())
}

fn input(core: &Core, documents: &[Document], step: Step, now: Timestamp) -> Option<Input> {
    let runs: Vec<(RunId, Vec<NodeName>)> = core
        .runs()
        .map(|r| {
            (
                r.id.clone(),
                r.nodes.iter().map(|n| n.name.clone()).collect(),
            )
        })
        .collect();
    let node_of = |run: usize, node: usize| {
        let (id, nodes) = pick(&runs, run)?;
        let name = pick(&nodes, node).unwrap_or_else(|| NodeName::new("ghost"));
        Some((id, name))
    };
    let workflows = ["fuzz", "fuzz", "diamond", "retry-and-handler", "ghost"];
    Some(match step {
        Step::Register(shape) => Input::Register(build(&shape)),
        Step::Document(i) => Input::from(pick(documents, i)?),
        Step::Start {
            workflow,
            run,
            data,
        } => Input::StartRun {
            run: RunId::new(format!("r{run}")),
            workflow: WorkflowName::new(workflows[workflow % workflows.len()]),
            initiator: "fuzz".into(),
            data,
        },
        Step::Started { run, node, attempt } => {
            let (run, node) = node_of(run, node)?;
            Input::Bus(Event::NodeStarted {
                run,
                node,
                attempt: Attempt(attempt),
                at: now,
            })
        }
        Step::Finished {
            run,
            node,
            attempt,
            ok,
            output,
        } => {
            let (run, node) = node_of(run, node)?;
            let outcome = match ok {
                true => Outcome::Succeeded { output },
                false => Outcome::failed(output),
            };
            Input::Bus(Event::NodeFinished {
                run,
                node,
                attempt: Attempt(attempt),
                started_at: now,
                finished_at: now,
                outcome,
            })
        }
        Step::Undeliverable { run, node, attempt } => {
            let (run, node) = node_of(run, node)?;
            Input::Undeliverable {
                run,
                node,
                attempt: Attempt(attempt),
                reason: "too large".into(),
            }
        }
        Step::Cancel(i) => Input::Cancel(pick(&runs, i)?.0),
        Step::Remove(i) => Input::Remove(Registered::of(&pick(documents, i)?)),
        Step::Reject(run) => Input::RejectTrigger {
            run: RunId::new(format!("r{run}")),
            workflow: WorkflowName::new("a.b"),
            reason: "fuzz".into(),
        },
        Step::CellCommand {
            cell,
            command,
            step,
        } => {
            let cells: Vec<String> = core.cells().map(|c| c.cell.metadata.name.clone()).collect();
            Input::CellCommand {
                cell: pick(&cells, cell).unwrap_or_else(|| "ghost".into()),
                command: [
                    CellCommand::Resume,
                    CellCommand::Abort,
                    CellCommand::Promote,
                ][command as usize % 3],
                expect: Expect {
                    run: pick(&runs, cell).map(|r| r.0),
                    step,
                    idle: false,
                },
                from: None,
            }
        }
        Step::Tick => Input::Tick,
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_input_sequence_panics_the_core(
        steps in proptest::collection::vec((step(), clock()), 1..60),
    ) {
        let documents = examples();
        let mut core = Core::new(CoreConfig::default());
        for (step, now) in steps {
            let now = Timestamp(now);
            if let Some(input) = input(&core, documents, step, now) {
                core.apply(input, now);
            }
            let _ = core.next_deadline();
            let _ = core.take_changes();
        }
        for run in core.runs() {
            let _ = run.status();
        }
    }
}
