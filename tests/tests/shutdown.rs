//! Graceful shutdown of a worker on SIGTERM: stop pulling, let jobs in flight finish within
//! the deadline, else stop them and hand their jobs back for another worker.

use std::time::{Duration, Instant};

use baton_schemas::status::State;
use baton_tests::{Env, lines, workflow};

fn env() -> Env {
    Env::new(env!("CARGO_BIN_EXE_baton-under-test")).expect("test env")
}

/// A one-node workflow whose job writes `begin`, sleeps `seconds` (60 on its first delivery
/// when `seconds` is `None`, none on later ones), then writes `end`.
fn slow_workflow(env: &Env, seconds: Option<u32>) -> (std::path::PathBuf, std::path::PathBuf) {
    let file = env.dir.path().join("effects");
    let f = file.display();
    let sleep = match seconds {
        Some(s) => format!("sleep {s}"),
        None => format!("[ $(grep -c begin {f}) -gt 1 ] || sleep 60"),
    };
    let node = format!(
        "{{name: job, kind: exec, command: [sh, -c, 'echo begin >> {f}; {sleep}; echo end >> {f}']}}"
    );
    let wf = env.write("slow.yaml", &workflow("slow", &[node]));
    (wf, file)
}

#[test]
fn sigterm_lets_jobs_in_flight_finish_within_the_deadline() {
    let mut env = env();
    let planner = env.start_planner().unwrap();
    env.keep(planner);
    let mut worker = env
        .start_worker("worker", "exec", &["--shutdown-deadline", "20s"])
        .unwrap();
    let (wf, file) = slow_workflow(&env, Some(2));
    let run = env.apply(&wf).unwrap();
    env.wait_for(&run, Duration::from_secs(20), |_| lines(&file) == ["begin"])
        .unwrap();
    worker.terminate();
    let status = worker.wait_exit(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "the worker exits cleanly: {status:?}");
    let status = env.wait_end(&run, Duration::from_secs(10)).unwrap();
    assert_eq!(status.state, State::Succeeded);
    assert_eq!(lines(&file), ["begin", "end"]);
    assert!(worker.log().contains("worker stopped"));
}

#[test]
fn sigterm_past_the_deadline_hands_the_job_back_to_another_worker() {
    let mut env = env();
    // A long ack wait: a redelivery within it can only come from the hand-back.
    env.job_ack_wait = "60s";
    let planner = env.start_planner().unwrap();
    env.keep(planner);
    let mut first = env
        .start_worker("worker-1", "exec", &["--shutdown-deadline", "500ms"])
        .unwrap();
    // The first delivery outlasts any stop; the handed-back one finishes at once.
    let (wf, file) = slow_workflow(&env, None);
    let run = env.apply(&wf).unwrap();
    env.wait_for(&run, Duration::from_secs(20), |_| lines(&file) == ["begin"])
        .unwrap();
    let stopping = Instant::now();
    first.terminate();
    let status = first.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{status:?}");
    // The 500 ms deadline and the open pull's 2 s bound the stop, far below the job's 60 s.
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "the deadline bounds the shutdown: {:?}",
        stopping.elapsed()
    );
    assert!(first.log().contains("job handed back at shutdown"));
    let second = env.start_worker("worker-2", "exec", &[]).unwrap();
    env.keep(second);
    let status = env.wait_end(&run, Duration::from_secs(20)).unwrap();
    assert_eq!(status.state, State::Succeeded);
    assert_eq!(status.nodes[0].attempts, 1);
    assert_eq!(
        lines(&file),
        ["begin", "begin", "end"],
        "the handed-back process was stopped"
    );
}

/// A job the server delivers to a stopping worker's open pull, which no slot takes any more,
/// is handed back at once, not left to its ack wait.
#[test]
fn a_job_pulled_while_the_worker_stops_goes_to_another_worker_at_once() {
    let mut env = env();
    // A long ack wait: the second job can only run soon if it is handed back.
    env.job_ack_wait = "60s";
    let planner = env.start_planner().unwrap();
    env.keep(planner);
    // Two slots: while the slow job runs, a pull for the free slot stays open, long enough
    // for the quick job to be applied and reach it.
    let mut first = env
        .start_worker(
            "worker-1",
            "exec",
            &[
                "--concurrency",
                "2",
                "--shutdown-deadline",
                "20s",
                "--pull-wait",
                "60s",
            ],
        )
        .unwrap();
    let (wf, file) = slow_workflow(&env, Some(4));
    let slow = env.apply(&wf).unwrap();
    env.wait_for(&slow, Duration::from_secs(20), |_| {
        lines(&file) == ["begin"]
    })
    .unwrap();
    first.terminate();
    let quick = env.write(
        "quick.yaml",
        &workflow(
            "quick",
            &["{name: q, kind: exec, command: [\"true\"]}".to_owned()],
        ),
    );
    let quick = env.apply(&quick).unwrap();
    let second = env.start_worker("worker-2", "exec", &[]).unwrap();
    env.keep(second);
    let status = env.wait_end(&quick, Duration::from_secs(20)).unwrap();
    assert_eq!(status.state, State::Succeeded);
    let status = first.wait_exit(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "the worker exits cleanly: {status:?}");
    // The quick job was published while worker-1's pull for its free slot was open, before
    // worker-2 existed: the server gave it to worker-1, which handed it back.
    assert!(
        first
            .log()
            .contains("jobs pulled but not started handed back"),
        "{}",
        first.log()
    );
    assert_eq!(
        env.wait_end(&slow, Duration::from_secs(10)).unwrap().state,
        State::Succeeded
    );
}

/// A batch of six jobs on a worker with two slots, stopped while the first two run: the
/// others still take the slots freed within the deadline (a batch goes back whole, and the
/// jobs already done would run again), so every job runs once and the worker exits cleanly.
#[test]
fn sigterm_lets_a_batch_waiting_for_slots_finish_within_the_deadline() {
    let mut env = env();
    let planner = env
        .start_planner_with(&["--job-batch-kinds", "exec"])
        .unwrap();
    env.keep(planner);
    let mut worker = env
        .start_worker(
            "worker",
            "exec",
            &["--concurrency", "2", "--shutdown-deadline", "30s"],
        )
        .unwrap();
    let file = env.dir.path().join("effects");
    let f = file.display();
    let leaves: Vec<String> = (0..6).map(|i| format!("leaf{i}")).collect();
    let nodes: Vec<String> = leaves
        .iter()
        .map(|l| {
            format!(
                "{{name: {l}, kind: exec, command: [sh, -c, 'echo start >> {f}; sleep 1; echo {l} >> {f}']}}"
            )
        })
        .collect();
    let run = env
        .apply(&env.write("batch.yaml", &workflow("batch", &nodes)))
        .unwrap();
    // Two leaves run (the worker's two slots); four wait for a slot.
    let started = |lines: &[String]| lines.iter().filter(|l| *l == "start").count();
    env.wait_for(&run, Duration::from_secs(20), |_| {
        started(&lines(&file)) >= 2
    })
    .unwrap();
    worker.terminate();
    let status = worker.wait_exit(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "the worker exits cleanly: {status:?}");
    let status = env.wait_end(&run, Duration::from_secs(10));
    let status = status.unwrap_or_else(|e| panic!("{e}\n{}", worker.log()));
    assert_eq!(status.state, State::Succeeded, "{status:?}");
    let effects = lines(&file);
    assert_eq!(
        started(&effects),
        leaves.len(),
        "each job ran once: {effects:?}"
    );
    let mut ended: Vec<String> = effects.into_iter().filter(|l| l != "start").collect();
    ended.sort();
    assert_eq!(ended, leaves, "each job ran once");
}
