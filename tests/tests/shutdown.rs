//! Graceful shutdown of a worker on SIGTERM: stop pulling, let jobs in flight finish within
//! the deadline, else stop them and hand their jobs back for another worker.

use std::time::{Duration, Instant};

use baton_schemas::status::State;
use baton_tests::{Env, lines, workflow};

fn env() -> Env {
    Env::new(env!("CARGO_BIN_EXE_baton-under-test")).expect("test env")
}

fn slow_workflow(env: &Env, seconds: u32) -> (std::path::PathBuf, std::path::PathBuf) {
    let file = env.dir.path().join("effects");
    let f = file.display();
    let node = format!(
        "{{name: job, kind: exec, command: [sh, -c, 'echo begin >> {f}; sleep {seconds}; echo end >> {f}']}}"
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
    let (wf, file) = slow_workflow(&env, 2);
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
    let (wf, file) = slow_workflow(&env, 3);
    let run = env.apply(&wf).unwrap();
    env.wait_for(&run, Duration::from_secs(20), |_| lines(&file) == ["begin"])
        .unwrap();
    let stopping = Instant::now();
    first.terminate();
    let status = first.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "the deadline bounds the shutdown"
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
