//! A recorded history of a Cell's decisions, replayed: a discovery of the first version, its
//! switch, a discovery of a second version, and the canary of okra's README Cell through its
//! weights, its analysis, its timed pause and the final 100%. The transcript of what the core
//! decided is committed as `core/src/histories/cell.txt`: a change in a Cell's decisions or
//! in the jobs it sends (weights, generations) shows there as a diff (`BATON_BLESS=1` writes
//! the new transcript after a deliberate change).

use std::collections::VecDeque;
use std::fmt::Write as _;

use baton_schemas::{Document, parse_documents};

use crate::*;
use std::collections::BTreeMap;

use baton_schemas::wire::{Event, Job, Outcome, Timestamp};

const T0: Timestamp = Timestamp(1_700_000_000_000);
const OKRA_README: &str = include_str!("../../../examples/cells/okra-readme.yaml");
const TEMPLATE: &str = include_str!("../../../examples/cells/success-rate.yaml");

use super::tests::observed;
use crate::tests::replay::{Step, replay_after_every_crash, worked};

/// Returns the history and its transcript. A worker takes the jobs in order and succeeds:
/// a traffic job reports the weights it wrote, an analysis passes. Discoveries come at fixed
/// times; a tick comes when nothing else is left and a timer is due.
fn record() -> (Vec<Step>, String) {
    let v1 = [("a1", "1.0.0"), ("a2", "1.0.0")];
    let v1_v2 = [
        ("a1", "1.0.0"),
        ("a2", "1.0.0"),
        ("b1", "2.0.0"),
        ("b2", "2.0.0"),
    ];
    let mut steps: Vec<Step> =
        parse_documents("history.yaml", &format!("{TEMPLATE}---\n{OKRA_README}"), T0)
            .unwrap()
            .into_iter()
            .map(|d: Document| (Input::from(d), T0))
            .collect();
    steps.push((observed(&v1, None, T0), T0));
    let later = T0.after(std::time::Duration::from_secs(30));
    // The discovery after the switch, and the one that finds a complete 2.0.0.
    let discoveries = [
        (observed(&v1, Some(&[("a1", 50), ("a2", 50)]), later), later),
        (
            observed(
                &v1_v2,
                Some(&[("a1", 50), ("a2", 50)]),
                later.after(std::time::Duration::from_secs(30)),
            ),
            later.after(std::time::Duration::from_secs(30)),
        ),
    ];
    let mut discoveries = VecDeque::from(discoveries);
    let mut core = Core::new(CoreConfig::default());
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
        if let Some(entry) = core.cell("cell1") {
            let status = &entry.status;
            writeln!(
                transcript,
                "  = {} serving {:?} stage {:?} message {:?}",
                core.cell_phase(entry).as_str(),
                status.serving_version,
                status.rollout.as_ref().map(|r| r.stage),
                status.message
            )
            .unwrap();
        }
        i += 1;
        if i < steps.len() {
            continue;
        }
        if let Some(job) = queue.pop_front() {
            now = now.after(std::time::Duration::from_millis(10));
            let output = match job.traffic() {
                Some(t) => serde_json::json!({
                    "rule": "arn:rule/1",
                    "write": "modified",
                    "generation": t.generation,
                    "targetGroups": t.action.target_groups(),
                })
                .to_string(),
                None => r#"{"phase":"Successful"}"#.to_owned(),
            };
            steps.extend(worked(job, now, Outcome::Succeeded { output }));
        } else if let Some(deadline) = core.next_deadline() {
            steps.push((Input::Tick, deadline));
        } else if let Some(discovery) = discoveries.pop_front() {
            steps.push(discovery);
        }
    }
    (steps, transcript)
}

fn describe_input(input: &Input) -> String {
    match input {
        Input::RegisterCell(c) => format!("register cell {}", c.metadata.name),
        Input::RegisterAnalysisTemplate(t) => format!("register template {}", t.metadata.name),
        Input::Observed(o) => {
            let groups: Vec<String> = o
                .target_groups
                .as_ref()
                .map(|g| {
                    g.iter()
                        .map(|g| format!("{}@{}", g.name, g.tags["okra.mumo.co/version"]))
                        .collect()
                })
                .unwrap_or_default();
            let rule = match &o.rule {
                Ok(Some(w)) => format!("{} group(s)", w.len()),
                Ok(None) => "none".to_owned(),
                Err(e) => e.clone(),
            };
            format!("observed {} rule {rule}", groups.join(" "))
        }
        Input::Bus(Event::NodeStarted {
            run, node, attempt, ..
        }) => format!("started {run}/{node}#{attempt}"),
        Input::Bus(Event::NodeFinished {
            run, node, attempt, ..
        }) => format!("finished {run}/{node}#{attempt}"),
        Input::Tick => "tick".to_owned(),
        other => format!("{other:?}"),
    }
}

fn describe_action(action: &Action) -> String {
    match action {
        Action::Dispatch(job) => match job.traffic() {
            Some(t) => {
                let weights: Vec<String> = t
                    .action
                    .target_groups()
                    .iter()
                    .map(|g| format!("{}={}", g.arn.split('/').nth(1).unwrap_or(&g.arn), g.weight))
                    .collect();
                format!(
                    "dispatch {} traffic priority {} generation {} [{}]",
                    job.msg_id(),
                    t.priority,
                    t.generation.map(|g| g.to_string()).unwrap_or_default(),
                    weights.join(" ")
                )
            }
            None => format!("dispatch {} {}", job.msg_id(), job.kind()),
        },
        Action::RunFinished { run, state } => format!("run {run} {state}"),
        other => format!("{other:?}"),
    }
}

#[test]
fn the_recorded_cell_history_decides_what_its_transcript_says() {
    crate::tests::replay::check_transcript("cell.txt", || record().1);
}

/// For every crash point and overlap, a core restored from the checkpoint and given the rest
/// of the history again (some of it twice) ends with the Cell and its runs where the history
/// ended, and every job it decides again carries the id of one the history sent.
#[test]
fn a_cell_replayed_from_any_checkpoint_ends_where_its_history_ended() {
    let (steps, _) = record();
    let mut reference = Core::new(CoreConfig::default());
    let mut sent: BTreeMap<String, Job> = BTreeMap::new();
    for (input, at) in &steps {
        for action in reference.apply(input.clone(), *at) {
            if let Action::Dispatch(job) = action {
                sent.insert(job.msg_id(), *job);
            }
        }
    }
    let expected_cell = reference.cell("cell1").unwrap().clone();
    let expected_phase = reference.cell_phase(&expected_cell);
    assert_eq!(
        expected_cell.status.serving_version.as_deref(),
        Some("2.0.0")
    );
    let expected_runs: Vec<_> = reference.runs().map(|r| r.status()).collect();
    replay_after_every_crash(&steps, 2, |what, restored, actions| {
        for action in actions {
            if let Action::Dispatch(job) = action {
                let first = sent
                    .get(&job.msg_id())
                    .unwrap_or_else(|| panic!("{what}: a job the history never sent: {job:?}"));
                assert_eq!(first.traffic(), job.traffic(), "{what}");
            }
        }
        let cell = restored.cell("cell1").unwrap();
        assert_eq!(
            (
                &cell.status.serving_version,
                restored.cell_phase(cell),
                &cell.status.rollout
            ),
            (
                &expected_cell.status.serving_version,
                expected_phase,
                &expected_cell.status.rollout
            ),
            "{what}"
        );
        let runs: Vec<_> = restored.runs().map(|r| r.status()).collect();
        assert_eq!(runs, expected_runs, "{what}");
    });
}
