//! Unit tests of tasks, ignitors and chains in the decision core, on an injected clock.

use super::*;
use crate::tests::kit::{apply_docs, finished_job, jobs, ok};
use crate::*;

use baton_schemas::status::State;
use baton_schemas::wire::{FailureKind, Fire, Job, Outcome, Timestamp};
use baton_schemas::{NodeKind, NodeName, RunId};

fn at(text: &str) -> Timestamp {
    let t = humantime::parse_rfc3339(text).unwrap();
    Timestamp(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64)
}

const T0: &str = "2026-11-21T10:03:00Z";

fn task(name: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: sirocco.cloud/v1alpha1\nkind: Task\nmetadata: {{name: {name}}}\nspec:\n{extra}  template: {{spec: {{containers: [{{name: main, image: busybox}}]}}}}\n"
    )
}

fn ignitor(name: &str, scheduled: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: sirocco.cloud/v1alpha1\nkind: Ignitor\nmetadata: {{name: {name}}}\nspec:\n  scheduled: \"{scheduled}\"\n{extra}"
    )
}

/// Applies a tick, then reads back every fire it published, as the planner does through the
/// triggers stream; returns every action.
fn tick(core: &mut Core, now: Timestamp) -> Vec<Action> {
    let mut actions = core.apply(Input::Tick, now);
    let fires: Vec<Fire> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Fire(fire) => Some(fire.clone()),
            _ => None,
        })
        .collect();
    for fire in fires {
        actions.extend(core.apply(Input::Fire(fire), now));
    }
    actions
}

fn fired(actions: &[Action]) -> Vec<(String, Timestamp, Option<RunId>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::IgnitorFired {
                ignitor,
                scheduled,
                run,
            } => Some((ignitor.clone(), *scheduled, run.clone())),
            _ => None,
        })
        .collect()
}

fn status<'a>(core: &'a Core, name: &str) -> (&'a TaskStatus, TaskState) {
    core.tasks()
        .find(|(t, _)| t.task.metadata.name == name)
        .map(|(t, s)| (&t.status, s))
        .unwrap()
}

#[test]
fn an_ignitor_starts_task1_and_task1_passes_its_message_to_task2() {
    let mut core = Core::new(CoreConfig::default());
    let now = at(T0);
    let docs = [
        task("task1", "  startOnIgnition: [ignitor1]\n"),
        task("task2", "  startOnSuccess: [task1]\n"),
        ignitor("ignitor1", "NOW", "  data: from-the-ignitor\n"),
    ]
    .concat();
    assert!(
        apply_docs(&mut core, &docs, now).is_empty(),
        "registering fires nothing by itself"
    );
    assert_eq!(core.next_deadline(), Some(now));
    let actions = tick(&mut core, now);
    let fires = fired(&actions);
    assert_eq!(fires.len(), 1);
    let run = fires[0].2.clone().unwrap();
    assert_eq!(run, chains::fire_run_id("ignitor1", now));
    let first = jobs(&actions);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].node.as_str(), "task1");
    assert_eq!(
        (
            first[0].inputs.initiator.as_str(),
            first[0].inputs.data.as_str()
        ),
        ("ignitor1", "from-the-ignitor")
    );
    assert_eq!(first[0].pod().unwrap().task.as_deref(), Some("task1"));
    assert_eq!(status(&core, "task1").1, TaskState::Running);

    let actions = core.apply(finished_job(first[0], ok("hello"), Timestamp(0)), now);
    let second = jobs(&actions);
    assert_eq!(second.len(), 1);
    assert_eq!(
        (
            second[0].inputs.initiator.as_str(),
            second[0].inputs.data.as_str()
        ),
        ("task1", "hello")
    );
    let actions = core.apply(finished_job(second[0], ok(""), Timestamp(0)), now);
    assert!(actions.contains(&Action::RunFinished {
        run: run.clone(),
        state: State::Succeeded
    }));
    let (task1, state) = status(&core, "task1");
    assert_eq!(
        (task1.last_success, task1.failures_count, state),
        (Some(now), 0, TaskState::Pending)
    );
    assert_eq!(core.run(&run).unwrap().status().workflow, "ignitor1");

    // A one-shot fires once: not again on later ticks, not when a cluster's listing repeats
    // it unchanged.
    assert!(tick(&mut core, now.after(std::time::Duration::from_secs(60))).is_empty());
    let view = core.ignitors().next().unwrap().view();
    assert!(view.spent && view.next_fire.is_none(), "{view:?}");
    apply_docs(
        &mut core,
        &ignitor("ignitor1", "NOW", "  data: from-the-ignitor\n"),
        now,
    );
    assert!(tick(&mut core, now).is_empty());
    // A person applying it again fires it again, as re-applying an Orca ignitor did.
    let later = now.after(std::time::Duration::from_secs(30));
    let again = match baton_schemas::parse_documents(
        "i.yaml",
        &ignitor("ignitor1", "NOW", "  data: from-the-ignitor\n"),
        later,
    )
    .unwrap()
    .remove(0)
    {
        baton_schemas::Document::Ignitor(ignitor) => ignitor,
        _ => unreachable!(),
    };
    core.apply(
        Input::RegisterIgnitor {
            ignitor: again,
            again: true,
        },
        later,
    );
    let actions = tick(&mut core, later);
    assert_eq!(
        fired(&actions),
        [(
            "ignitor1".to_owned(),
            later,
            Some(chains::fire_run_id("ignitor1", later))
        )]
    );
    let refired = jobs(&actions)[0].clone();
    assert_eq!(refired.inputs.data, "from-the-ignitor");
    // Orca skipped a start while the task's pod ran: task1 ends before the next fire.
    core.apply(finished_job(&refired, ok("again"), Timestamp(0)), later);
    // A changed ignitor is armed anew.
    let changed = later.after(std::time::Duration::from_secs(1));
    apply_docs(
        &mut core,
        &ignitor("ignitor1", "NOW", "  data: again\n"),
        changed,
    );
    let actions = tick(&mut core, changed);
    assert_eq!(jobs(&actions)[0].inputs.data, "again");
}

#[test]
fn failures_take_the_failure_path_and_are_counted() {
    let mut core = Core::new(CoreConfig::default());
    let now = at(T0);
    let docs = [
        task("work", "  startOnIgnition: [go]\n"),
        task("cleanup", "  startOnFailure: [work]\n"),
        task("report", "  startOnSuccess: [work]\n"),
        ignitor("go", "NOW", ""),
    ]
    .concat();
    apply_docs(&mut core, &docs, now);
    let actions = tick(&mut core, now);
    let work = jobs(&actions)[0].clone();
    let failed = Outcome::Failed {
        error: "container main exited with code 2".into(),
        output: Some("partial".into()),
        kind: FailureKind::Retryable,
    };
    let actions = core.apply(finished_job(&work, failed, Timestamp(0)), now);
    let next = jobs(&actions);
    assert_eq!(
        next.iter().map(|j| j.node.as_str()).collect::<Vec<_>>(),
        ["cleanup"]
    );
    assert_eq!(
        next[0].inputs.data, "partial",
        "a failed pod's termination message is passed on"
    );
    let (s, _) = status(&core, "work");
    assert_eq!((s.last_failure, s.failures_count), (Some(now), 1));
}

#[test]
fn a_self_retry_loop_stops_at_the_chain_limit() {
    let mut core = Core::new(CoreConfig::default());
    let now = at(T0);
    let docs = [
        task(
            "flaky",
            "  startOnIgnition: [go]\n  startOnFailure: [flaky]\n  chainLimit: 3\n",
        ),
        ignitor("go", "NOW", ""),
    ]
    .concat();
    apply_docs(&mut core, &docs, now);
    let mut actions = tick(&mut core, now);
    let run = fired(&actions)[0].2.clone().unwrap();
    let mut names = Vec::new();
    while let Some(job) = jobs(&actions).first().map(|j| (*j).clone()) {
        names.push(job.node.to_string());
        // Every instance runs the Task `flaky`, whatever its node is called.
        assert_eq!(job.pod().unwrap().task.as_deref(), Some("flaky"));
        actions = core.apply(
            finished_job(&job, Outcome::failed("exit code 1"), Timestamp(0)),
            now,
        );
    }
    assert_eq!(names, ["flaky", "flaky-2", "flaky-3"]);
    // Its graph: each instance drawn after the one whose failure started it, and each names
    // the pod it ran.
    let shown = core.run(&run).unwrap().status();
    let edges: Vec<(&str, Vec<String>)> = shown
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.needs.clone()))
        .collect();
    assert_eq!(
        edges[..3],
        [
            ("flaky", vec![]),
            ("flaky-2", vec!["flaky".to_owned()]),
            ("flaky-3", vec!["flaky-2".to_owned()])
        ]
    );
    let pod = baton_schemas::wire::pod_name(
        &baton_schemas::NodeName::new("flaky-2"),
        &run,
        baton_schemas::Attempt(1),
    );
    assert_eq!(
        shown.nodes[1].touches.as_deref(),
        Some(format!("pod {pod} (in the worker's namespace)").as_str())
    );
    // As in Orca, what follows a failure is started by the task (not its instance) with the
    // pod's termination message, which these pods did not leave: empty, not the error.
    let r = core.run(&run).unwrap();
    for instance in ["flaky-2", "flaky-3"] {
        let by = r.nodes.iter().find(|n| n.name.as_str() == instance);
        let by = by.and_then(|n| n.started_by.clone()).unwrap();
        assert_eq!((by.initiator.as_str(), by.data.as_str()), ("flaky", ""));
    }
    assert!(actions.contains(&Action::RunFinished {
        run: run.clone(),
        state: State::Failed
    }));
    let last = core.run(&run).unwrap().status().nodes.pop().unwrap();
    assert_eq!(last.state, State::Skipped);
    assert!(last.error.unwrap().contains("the chain limit"));
    assert_eq!(status(&core, "flaky").0.failures_count, 3);
}

#[test]
fn cron_fires_on_the_injected_clock_and_catches_up_once_after_downtime() {
    let mut core = Core::new(CoreConfig::default());
    let docs = [
        task("t", "  startOnIgnition: [every10]\n"),
        ignitor("every10", "*/10 * * * *", "  startingDeadline: 5m\n"),
    ]
    .concat();
    apply_docs(&mut core, &docs, at(T0));
    assert_eq!(core.next_deadline(), Some(at("2026-11-21T10:10:00Z")));
    assert!(tick(&mut core, at("2026-11-21T10:09:59Z")).is_empty());
    let actions = tick(&mut core, at("2026-11-21T10:10:00Z"));
    assert_eq!(fired(&actions)[0].1, at("2026-11-21T10:10:00Z"));
    assert_eq!(core.next_deadline(), Some(at("2026-11-21T10:20:00Z")));
    // Down from 10:10 to 10:52: the fires of 10:20 ... 10:50 were missed; one fire, for 10:50.
    let actions = tick(&mut core, at("2026-11-21T10:52:00Z"));
    assert_eq!(
        fired(&actions).iter().map(|f| f.1).collect::<Vec<_>>(),
        [at("2026-11-21T10:50:00Z")]
    );
    assert!(fired(&actions)[0].2.is_some());
    let ig = core.ignitors().next().unwrap();
    assert_eq!(
        (ig.last_fire, ig.next_fire),
        (
            Some(at("2026-11-21T10:50:00Z")),
            Some(at("2026-11-21T11:00:00Z"))
        )
    );
    // Down past the starting deadline: the missed fire is skipped, the schedule goes on.
    let actions = tick(&mut core, at("2026-11-21T11:17:00Z"));
    assert_eq!(
        fired(&actions),
        [("every10".to_owned(), at("2026-11-21T11:10:00Z"), None)]
    );
    assert_eq!(
        core.ignitors().next().unwrap().next_fire,
        Some(at("2026-11-21T11:20:00Z"))
    );
}

/// `0 0 1 * MON` fires on the 1st of the month and on every Monday, as under Orca's cronexpr
/// (and Vixie cron), not only on a 1st that is a Monday.
#[test]
fn a_cron_restricting_both_days_fires_on_either() {
    let mut core = Core::new(CoreConfig::default());
    let docs = [
        task("t", "  startOnIgnition: [monthly-or-monday]\n"),
        ignitor("monthly-or-monday", "0 0 1 * MON", ""),
    ]
    .concat();
    // A Saturday.
    apply_docs(&mut core, &docs, at(T0));
    let mut fires = Vec::new();
    for _ in 0..4 {
        let due = core.next_deadline().expect("armed");
        let actions = tick(&mut core, due);
        fires.extend(fired(&actions).into_iter().map(|f| f.1));
    }
    assert_eq!(
        fires,
        [
            at("2026-11-23T00:00:00Z"),
            at("2026-11-30T00:00:00Z"),
            at("2026-12-01T00:00:00Z"),
            at("2026-12-07T00:00:00Z"),
        ]
    );
}

#[test]
fn a_fire_restored_from_the_store_does_not_fire_twice() {
    let now = at(T0);
    let mut core = Core::new(CoreConfig::default());
    apply_docs(
        &mut core,
        &[
            task("t", "  startOnIgnition: [once]\n"),
            ignitor("once", "NOW", ""),
        ]
        .concat(),
        now,
    );
    let fire = tick(&mut core, now);
    assert_eq!(fired(&fire).len(), 1);
    // What the store kept after the turn that fired: the run and the ignitor's fire.
    let changes = core.take_changes();
    assert!(
        changes
            .ignitors
            .iter()
            .any(|i| i.last_fire == Some(now) && i.next_fire.is_none())
    );
    let restored = Core::restore(
        CoreConfig::default(),
        crate::Snapshot {
            runs: core.runs().cloned().collect(),
            tasks: core.tasks().map(|(t, _)| t.clone()).collect(),
            ignitors: core.ignitors().cloned().collect(),
            ..Default::default()
        },
    );
    let mut restored = restored;
    assert!(
        fired(&tick(
            &mut restored,
            now.after(std::time::Duration::from_secs(5))
        ))
        .is_empty()
    );
}

#[test]
fn concurrency_policies_forbid_or_replace_a_running_task() {
    let now = at(T0);
    for (policy, expect_skip) in [("Forbid", true), ("Replace", false)] {
        let mut core = Core::new(CoreConfig::default());
        let docs = [
            task(
                "busy",
                &format!("  startOnIgnition: [a, b]\n  concurrencyPolicy: {policy}\n"),
            ),
            ignitor("a", "NOW", ""),
        ]
        .concat();
        apply_docs(&mut core, &docs, now);
        let first = tick(&mut core, now);
        let first_run = fired(&first)[0].2.clone().unwrap();
        apply_docs(&mut core, &ignitor("b", "NOW", ""), now);
        let second = tick(&mut core, now);
        let second_run = fired(&second)[0].2.clone().unwrap();
        let started = core.run(&second_run).unwrap().status().nodes;
        if expect_skip {
            assert_eq!(started[0].state, State::Skipped);
            assert!(
                started[0]
                    .error
                    .as_deref()
                    .unwrap()
                    .contains("concurrencyPolicy is Forbid")
            );
            assert!(jobs(&second).is_empty());
        } else {
            assert_eq!(jobs(&second).len(), 1);
            assert!(second.contains(&Action::AnnounceCancel {
                run: first_run.clone(),
                node: Some(NodeName::new("busy"))
            }));
            let old = core.run(&first_run).unwrap().status();
            assert_eq!(
                (old.state, old.nodes[0].state),
                (State::Cancelled, State::Cancelled)
            );
        }
    }
}

#[test]
fn start_on_all_waits_for_every_listed_task() {
    let now = at(T0);
    let mut core = Core::new(CoreConfig::default());
    let docs = [
        task("build", "  startOnIgnition: [go]\n"),
        task("scan", "  startOnIgnition: [go]\n"),
        task(
            "deploy",
            "  startOnAll: [{task: build, on: success}, {task: scan, on: success}]\n",
        ),
        ignitor("go", "NOW", ""),
    ]
    .concat();
    apply_docs(&mut core, &docs, now);
    let actions = tick(&mut core, now);
    let started: Vec<Job> = jobs(&actions).into_iter().cloned().collect();
    assert_eq!(
        started.iter().map(|j| j.node.as_str()).collect::<Vec<_>>(),
        ["build", "scan"]
    );
    assert!(
        jobs(&core.apply(finished_job(&started[0], ok("image"), Timestamp(0)), now)).is_empty()
    );
    let actions = core.apply(finished_job(&started[1], ok("clean"), Timestamp(0)), now);
    let deploy = jobs(&actions);
    assert_eq!(deploy.len(), 1);
    assert_eq!(
        (deploy[0].node.as_str(), deploy[0].inputs.initiator.as_str()),
        ("deploy", "scan")
    );
}

#[test]
fn typed_actions_run_as_nodes_with_orcas_message() {
    let now = at(T0);
    let mut core = Core::new(CoreConfig::default());
    let docs = [
        task("t", "  startOnIgnition: [go]\n  failureActions: [{webhook: {url: \"http://127.0.0.1:9/alert\"}}, {publish: {subject: alerts.t}}]\n"),
        ignitor("go", "NOW", ""),
    ]
    .concat();
    apply_docs(&mut core, &docs, now);
    let t = jobs(&tick(&mut core, now))[0].clone();
    let actions = core.apply(
        finished_job(&t, Outcome::failed("exit code 1"), Timestamp(0)),
        now,
    );
    let hooks = jobs(&actions);
    assert_eq!(
        hooks
            .iter()
            .map(|j| (j.node.as_str(), j.kind()))
            .collect::<Vec<_>>(),
        [
            ("t-on-failure-1", NodeKind::Webhook),
            ("t-on-failure-2", NodeKind::Publish)
        ]
    );
    let body: serde_json::Value =
        serde_json::from_str(hooks[0].webhook().unwrap().body.as_deref().unwrap()).unwrap();
    assert_eq!(
        (
            body["id"].as_str(),
            body["message"].as_str(),
            body["data"].as_str()
        ),
        (Some("t"), Some("FAILURE"), Some("exit code 1"))
    );
    assert_eq!(hooks[1].publish().unwrap().subject, "alerts.t");
}

#[test]
fn a_due_fire_is_published_and_its_chain_starts_once_when_read_back() {
    let now = at(T0);
    let mut core = Core::new(CoreConfig::default());
    apply_docs(
        &mut core,
        &[
            task("t", "  startOnIgnition: [every10]\n"),
            ignitor("every10", "*/10 * * * *", "  data: d\n"),
        ]
        .concat(),
        now,
    );
    let due = at("2026-11-21T10:10:00Z");
    // The tick only publishes the fire, and records it as the ignitor's last.
    let actions = core.apply(Input::Tick, due);
    let fire = match actions.as_slice() {
        [Action::Fire(fire)] => fire.clone(),
        other => panic!("one fire to publish, not {other:?}"),
    };
    assert_eq!(
        (fire.ignitor.as_str(), fire.scheduled, fire.data.as_str()),
        ("every10", due, "d")
    );
    assert_eq!(fire.msg_id(), format!("ignitor.every10.{}", due.0));
    assert_eq!(core.ignitors().next().unwrap().last_fire, Some(due));
    assert_eq!(core.runs().count(), 0, "no chain before the fire is read");
    // Read back: the chain starts. Read again (a replay, a second publish): nothing.
    let later = due.after(std::time::Duration::from_millis(20));
    let actions = core.apply(Input::Fire(fire.clone()), later);
    assert_eq!(jobs(&actions).len(), 1);
    assert_eq!(
        fired(&actions)[0].2,
        Some(chains::fire_run_id("every10", due))
    );
    assert!(core.apply(Input::Fire(fire.clone()), later).is_empty());
    // Even once the chain's run is gone, the ignitor's fire records hold.
    let mut restored = Core::restore(
        CoreConfig::default(),
        crate::Snapshot {
            tasks: core.tasks().map(|(t, _)| t.clone()).collect(),
            ignitors: core.ignitors().cloned().collect(),
            ..Default::default()
        },
    );
    assert!(restored.apply(Input::Fire(fire.clone()), later).is_empty());
    // A fire of an ignitor deleted meanwhile starts nothing.
    core.apply(Input::Remove(Registered::Ignitor("every10".into())), later);
    let next = Fire {
        scheduled: at("2026-11-21T10:20:00Z"),
        ..fire
    };
    assert!(core.apply(Input::Fire(next), later).is_empty());
}

/// Concurrency policies find a task's running instances in the core's index of live task
/// nodes, which a restored core rebuilds and which forgets nodes as they end.
#[test]
fn the_index_of_running_instances_follows_nodes_and_survives_a_restore() {
    let now = at(T0);
    let mut core = Core::new(CoreConfig::default());
    let docs = [
        task(
            "busy",
            "  startOnIgnition: [a, b, c]\n  concurrencyPolicy: Forbid\n",
        ),
        ignitor("a", "NOW", ""),
    ]
    .concat();
    apply_docs(&mut core, &docs, now);
    let first = tick(&mut core, now);
    let job = jobs(&first)[0].clone();
    // Restored while `busy` runs: a second start is still refused.
    let mut restored = Core::restore(
        CoreConfig::default(),
        crate::Snapshot {
            runs: core.runs().cloned().collect(),
            tasks: core.tasks().map(|(t, _)| t.clone()).collect(),
            ignitors: core.ignitors().cloned().collect(),
            ..Default::default()
        },
    );
    assert_eq!(status(&restored, "busy").1, TaskState::Running);
    apply_docs(&mut restored, &ignitor("b", "NOW", ""), now);
    let second = tick(&mut restored, now);
    assert!(jobs(&second).is_empty(), "Forbid: {second:?}");
    // Once it ended, a start goes ahead.
    restored.apply(finished_job(&job, ok(""), Timestamp(0)), now);
    assert_eq!(status(&restored, "busy").1, TaskState::Pending);
    assert!(restored.live_tasks.is_empty());
    apply_docs(&mut restored, &ignitor("c", "NOW", ""), now);
    assert_eq!(jobs(&tick(&mut restored, now)).len(), 1);
}

#[test]
fn a_fire_scheduled_far_after_now_is_not_the_planners_and_stops_nothing() {
    // A message forged on `<p>.triggers.ignitors.<i>` with the latest time there is would
    // mark the ignitor fired up to then, and it would never fire again.
    let now = at(T0);
    let mut core = Core::new(CoreConfig::default());
    apply_docs(
        &mut core,
        &[
            task("t", "  startOnIgnition: [every10]\n"),
            ignitor("every10", "*/10 * * * *", ""),
        ]
        .concat(),
        now,
    );
    let forged = Fire {
        v: baton_schemas::wire::SCHEMA_VERSION,
        ignitor: "every10".into(),
        scheduled: Timestamp(u64::MAX),
        data: String::new(),
    };
    assert!(core.apply(Input::Fire(forged), now).is_empty());
    assert_eq!(core.runs().count(), 0);
    // The real fire at 10:10 still comes and starts its chain.
    let due = at("2026-11-21T10:10:00Z");
    let fire = match core.apply(Input::Tick, due).as_slice() {
        [Action::Fire(fire)] => fire.clone(),
        other => panic!("one fire to publish, not {other:?}"),
    };
    assert_eq!(jobs(&core.apply(Input::Fire(fire), due)).len(), 1);
}

#[test]
fn an_orca_task_skips_a_start_while_it_runs_unless_its_policy_says_otherwise() {
    let now = at(T0);
    for (policy, second) in [
        ("", NodeState::Skipped),
        (
            "  concurrencyPolicy: Allow\n",
            NodeState::Queued {
                attempt: baton_schemas::Attempt(1),
            },
        ),
    ] {
        let mut core = Core::new(CoreConfig::default());
        let docs = [
            task("work", &format!("  startOnIgnition: [a, b]\n{policy}")),
            ignitor("a", "NOW", ""),
            ignitor("b", "NOW", ""),
        ]
        .concat();
        apply_docs(&mut core, &docs, now);
        let actions = tick(&mut core, now);
        let runs: Vec<RunId> = fired(&actions).into_iter().filter_map(|f| f.2).collect();
        assert_eq!(runs.len(), 2);
        let states: Vec<NodeState> = runs
            .iter()
            .map(|run| core.run(run).unwrap().nodes[0].state)
            .collect();
        assert_eq!(
            states[0],
            NodeState::Queued {
                attempt: baton_schemas::Attempt(1)
            },
            "{policy:?}"
        );
        assert_eq!(states[1], second, "{policy:?}");
    }
}
