//! Crash safety, proven by killing real processes with SIGKILL: a worker in the middle of an
//! exec node, the planner in the middle of a run (several times), and the nats-server itself.
//! Each exec node appends a line to a file, so the file tells how often each effect ran.

use std::time::{Duration, Instant};

use baton_schemas::status::State;
use baton_tests::{Env, exec_chain, first_runs, lines, workflow};

fn env() -> Env {
    Env::new(env!("CARGO_BIN_EXE_baton-under-test")).expect("test env")
}

#[test]
fn a_worker_killed_mid_node_is_replaced_and_the_node_redelivered() {
    let mut env = env();
    let planner = env.start_planner().unwrap();
    env.keep(planner);
    let mut first = env.start_worker("worker-1", "exec", &[]).unwrap();
    let file = env.dir.path().join("effects");
    let f = file.display();
    let nodes = [
        format!(
            r#"{{name: long, kind: exec, command: [sh, -c, 'echo begin >> {f}; sleep 3; echo end >> {f}; printf done > "$BATON_OUTPUT"']}}"#
        ),
        format!("{{name: next, kind: exec, needs: [long], command: [sh, -c, 'echo next >> {f}']}}"),
    ];
    let wf = env.write("slow.yaml", &workflow("slow", &nodes));
    let run = env.apply(&wf).unwrap();
    env.wait_for(&run, Duration::from_secs(20), |_| lines(&file) == ["begin"])
        .unwrap();
    first.kill9();
    let second = env.start_worker("worker-2", "exec", &[]).unwrap();
    env.keep(second);
    // The job's ack wait (2s) passes without progress acks, the server redelivers it to the
    // new worker, and the run completes.
    let status = env.wait_end(&run, Duration::from_secs(40)).unwrap();
    assert_eq!(status.state, State::Succeeded, "{status:?}");
    let long = status.nodes.iter().find(|n| n.name == "long").unwrap();
    assert_eq!(
        long.attempts, 1,
        "a redelivery is the same attempt, not a retry"
    );
    assert_eq!(long.output.as_deref(), Some("done"));
    assert_eq!(
        lines(&file),
        ["begin", "begin", "end", "next"],
        "the killed process never ended; the redelivery ran once"
    );
}

#[test]
fn a_planner_killed_mid_run_resumes_and_runs_no_node_twice() {
    let mut env = env();
    let worker = env.start_worker("worker", "exec", &[]).unwrap();
    env.keep(worker);
    let mut planner = env.start_planner().unwrap();
    let file = env.dir.path().join("effects");
    let n = 12;
    let wf = env.write("chain.yaml", &exec_chain("chain", n, &file, "0.2"));
    let run = env.apply(&wf).unwrap();
    // Kill the planner three times at different points of the run, and start it again: it
    // applies what its last checkpoint lacks again from the event stream.
    for kill in 1..=3 {
        env.wait_for(&run, Duration::from_secs(90), |_| {
            lines(&file).len() >= kill * 3
        })
        .unwrap();
        planner.kill9();
        std::thread::sleep(Duration::from_millis(300 * kill as u64));
        planner = env.start_planner().unwrap();
    }
    let status = env.wait_end(&run, Duration::from_secs(120)).unwrap();
    assert_eq!(status.state, State::Succeeded, "{status:?}");
    let expected: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    assert_eq!(
        lines(&file),
        expected,
        "every node ran exactly once, in order"
    );
    assert!(status.nodes.iter().all(|n| n.attempts == 1));
    env.keep(planner);
}

#[test]
fn a_planner_killed_while_it_publishes_loses_no_job() {
    // A wide fan-out makes the planner publish many jobs in one turn; kill it right after the
    // run starts, repeatedly, so some kills land between the redb commit and the publishes.
    let mut env = env();
    let worker = env
        .start_worker("worker", "exec,noop", &["--concurrency", "16"])
        .unwrap();
    env.keep(worker);
    let file = env.dir.path().join("effects");
    let width = 40;
    let mut text = String::from(
        "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: fan}\nspec:\n  nodes:\n    - {name: root, kind: noop}\n",
    );
    for i in 0..width {
        text.push_str(&format!("    - {{name: w{i}, kind: exec, needs: [root], command: [sh, -c, 'echo w{i} >> {}']}}\n", file.display()));
    }
    text.push_str(&format!(
        "    - {{name: join, kind: noop, needs: [{}]}}\n",
        (0..width)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let wf = env.write("fan.yaml", &text);
    let mut planner = env.start_planner().unwrap();
    let run = env.apply(&wf).unwrap();
    for delay_ms in [5, 20, 60] {
        std::thread::sleep(Duration::from_millis(delay_ms));
        planner.kill9();
        planner = env.start_planner().unwrap();
    }
    let status = env.wait_end(&run, Duration::from_secs(60)).unwrap();
    assert_eq!(status.state, State::Succeeded, "{status:?}");
    let mut effects = lines(&file);
    effects.sort();
    let mut expected: Vec<String> = (0..width).map(|i| format!("w{i}")).collect();
    expected.sort();
    assert_eq!(effects, expected, "each fan-out node ran exactly once");
    env.keep(planner);
}

#[test]
fn a_planner_killed_between_checkpoints_replays_the_streams_and_runs_no_node_twice() {
    // Fast nodes keep the planner busy applying events it has not checkpointed yet (it does
    // every 100 ms): most kills lose applied events, and jobs already published for them,
    // which the restarted planner must apply again from the stream without running any
    // node a second time.
    let mut env = env();
    let worker = env
        .start_worker("worker", "exec", &["--concurrency", "8"])
        .unwrap();
    env.keep(worker);
    let file = env.dir.path().join("effects");
    let (width, depth) = (8, 8);
    let mut nodes = Vec::new();
    for d in 0..depth {
        for w in 0..width {
            let needs = if d == 0 {
                String::new()
            } else {
                format!(", needs: [c{w}x{}]", d - 1)
            };
            nodes.push(format!(
                "{{name: c{w}x{d}, kind: exec{needs}, command: [sh, -c, 'sleep 0.1; echo c{w}x{d} >> {}']}}",
                file.display()
            ));
        }
    }
    let wf = env.write("grid.yaml", &workflow("grid", &nodes));
    let mut planner = env.start_planner().unwrap();
    let run = env.apply(&wf).unwrap();
    for kill in 0..8u64 {
        std::thread::sleep(Duration::from_millis(60 + 25 * kill));
        planner.kill9();
        planner = env.start_planner().unwrap();
        if lines(&file).len() == width * depth {
            break;
        }
    }
    let kills = planner.log().matches("planner state loaded").count() - 1;
    let status = env.wait_end(&run, Duration::from_secs(90)).unwrap();
    assert_eq!(status.state, State::Succeeded, "{status:?}");
    let mut effects = lines(&file);
    effects.sort();
    let mut expected: Vec<String> = (0..depth)
        .flat_map(|d| (0..width).map(move |w| format!("c{w}x{d}")))
        .collect();
    expected.sort();
    assert_eq!(effects, expected, "every node ran exactly once");
    assert!(status.nodes.iter().all(|n| n.attempts == 1), "{status:?}");
    assert!(
        planner
            .log()
            .contains("applied again what the streams hold"),
        "none of {kills} kills landed between checkpoints: {}",
        planner.log()
    );
    eprintln!("{kills} kills");
    env.keep(planner);
}

#[test]
fn nats_server_restarts_mid_run_lose_nothing() {
    let mut env = env();
    let planner = env.start_planner().unwrap();
    let worker = env.start_worker("worker", "exec", &[]).unwrap();
    env.keep(worker);
    let file = env.dir.path().join("effects");
    let (n, kills) = (14, 6);
    let wf = env.write("chain.yaml", &exec_chain("chain", n, &file, "0.3"));
    let run = env.apply(&wf).unwrap();
    // The planner checkpoints 100 ms after it dispatched the next node, reading the stream
    // positions from the server then. Each kill lands a little later after a node's effect,
    // around that moment, so that some catch the planner asking a server that dies: it must
    // live through that.
    for kill in 0..kills {
        let seen = lines(&file).len();
        let started = Instant::now();
        while lines(&file).len() == seen {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no node ran after kill {kill}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(92 + 4 * kill));
        env.nats.kill9();
        std::thread::sleep(Duration::from_secs(1));
        env.nats.restart().unwrap();
    }
    let status = env.wait_end(&run, Duration::from_secs(90)).unwrap();
    assert_eq!(status.state, State::Succeeded, "{status:?}");
    let expected: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    let effects = lines(&file);
    // A killed server can lose the acks it had not yet written: a job acked just before the
    // kill, or running while the server was down, is then delivered again after the restart
    // and its exec process runs again (the same attempt; the planner ignores the second
    // completion). Every node ran, they first ran in order, and the repeats are few.
    assert_eq!(first_runs(&effects), expected, "{effects:?}");
    assert!(effects.len() <= n + 2 * kills as usize, "{effects:?}");
    assert!(status.nodes.iter().all(|n| n.attempts == 1), "{status:?}");
    // Whether a kill hit a checkpoint is up to timing; printed, not asserted.
    let unread = planner.log().matches("checkpointing without them").count();
    eprintln!("{kills} kills; stream positions unread {unread} times");
}

#[test]
fn a_standby_planner_takes_over_when_the_active_one_dies() {
    let mut env = env();
    let mut active = env.start_planner().unwrap();
    let worker = env.start_worker("worker", "exec", &[]).unwrap();
    env.keep(worker);
    // The standby shares the store (its lock is the lease) and the API address, which it
    // binds only once it is active.
    let standby = env.start_standby_planner().unwrap();
    env.keep(standby);
    let file = env.dir.path().join("effects");
    let n = 6;
    let wf = env.write("chain.yaml", &exec_chain("chain", n, &file, "0.3"));
    let run = env.apply(&wf).unwrap();
    env.wait_for(&run, Duration::from_secs(30), |_| lines(&file).len() >= 2)
        .unwrap();
    active.kill9();
    let status = env.wait_end(&run, Duration::from_secs(60)).unwrap();
    assert_eq!(status.state, State::Succeeded, "{status:?}");
    let expected: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    assert_eq!(lines(&file), expected, "every node ran exactly once");
}

/// A publish that fails for good in a turn driven by the bus (here the jobs stream is deleted
/// while a node runs, and publishes give up after a second) stops the planner without a
/// checkpoint past the job it never sent. The next start replays the completion that decided
/// the job and sends it: the run ends, each effect once. (A checkpoint at that exit left such
/// a run `running` forever.)
#[test]
fn a_planner_stopped_by_a_failed_publish_sends_the_job_after_its_restart() {
    let mut env = env();
    let mut planner = env
        .start_planner_with(&["--publish-deadline", "1s"])
        .unwrap();
    let worker = env.start_worker("worker-1", "exec", &[]).unwrap();
    let file = env.dir.path().join("effects");
    let started = env.dir.path().join("started");
    let gate = env.dir.path().join("gate");
    let nodes = [
        format!(
            "{{name: a, kind: exec, command: [sh, -c, 'echo a >> {f}; touch {s}; {wait}']}}",
            f = file.display(),
            s = started.display(),
            wait = baton_tests::wait_for_gate(&gate)
        ),
        format!(
            "{{name: b, kind: exec, needs: [a], command: [sh, -c, 'echo b >> {}']}}",
            file.display()
        ),
    ];
    let wf = env.write("gated.yaml", &workflow("gated", &nodes));
    let run = env.apply(&wf).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !started.exists() {
        assert!(Instant::now() < deadline, "node a never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(env.nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let stream = format!("{}_JOBS", env.prefix.to_ascii_uppercase());
        js.delete_stream(&stream).await.unwrap();
    });
    baton_tests::open_gate(&gate);
    planner
        .wait_exit(Duration::from_secs(60))
        .expect("the planner stops when b's job cannot be published");
    drop(worker);
    let planner = env.start_planner().unwrap();
    env.keep(planner);
    let worker = env.start_worker("worker-2", "exec", &[]).unwrap();
    env.keep(worker);
    let status = env.wait_end(&run, Duration::from_secs(60)).unwrap();
    assert_eq!(status.state, State::Succeeded, "{status:?}");
    assert_eq!(lines(&file), ["a", "b"]);
}

/// A worker killed after it stored a batch of completions and before it acknowledged their
/// jobs: the jobs are delivered again, as the same attempts, and finish again; their second
/// completions are ignored. Nothing is lost and no node counts twice: the run succeeds and
/// each node, the join after them included, has one attempt. (A leaf's command may run twice,
/// as any exec command whose worker dies; the README says so.)
#[test]
fn a_worker_killed_between_storing_a_batch_of_completions_and_acking_its_jobs_loses_nothing() {
    let mut env = env();
    let planner = env.start_planner().unwrap();
    env.keep(planner);
    let file = env.dir.path().join("effects");
    let gate = env.dir.path().join("gate");
    let (f, g) = (file.display(), gate.display());
    // Twelve leaves wait for one gate, so that they end together and their completions
    // queue behind one another into a batch.
    let leaves: Vec<String> = (0..12).map(|i| format!("leaf{i}")).collect();
    let mut nodes: Vec<String> = leaves
        .iter()
        .map(|leaf| {
            format!(
                r#"{{name: {leaf}, kind: exec, command: [sh, -c, 'for i in $(seq 600); do [ -e {g} ] && break; sleep 0.1; done; echo {leaf} >> {f}']}}"#
            )
        })
        .collect();
    // The join is a noop, taken by a worker of its own: the worker killed below must not
    // run it (an exec command whose worker dies may run twice, which is not this test's).
    nodes.push(format!(
        "{{name: join, kind: noop, needs: [{}]}}",
        leaves.join(", ")
    ));
    let wf = env.write("batch.yaml", &workflow("batch", &nodes));
    let mut first = {
        let mut command = env.baton();
        command
            .args(["worker", "--kinds", "exec", "--concurrency", "16"])
            // Each store is slowed by 500 ms, so the leaves' completions queue behind the
            // first one and go together in the next message.
            .env(
                "BATON_FAILPOINTS",
                "completions-slow-store,completions-after-batch-stored",
            );
        env.spawn("worker-1", command).unwrap()
    };
    let joiner = env.start_worker("joiner", "noop", &[]).unwrap();
    env.keep(joiner);
    let run = env.apply(&wf).unwrap();
    env.wait_for(&run, Duration::from_secs(30), |s| {
        s.nodes.iter().filter(|n| n.state == State::Running).count() == leaves.len()
    })
    .unwrap();
    std::fs::write(&gate, "go").unwrap();
    first
        .wait_log("failpoint reached", Duration::from_secs(60))
        .unwrap();
    first.kill9();
    let second = env.start_worker("worker-2", "exec", &[]).unwrap();
    env.keep(second);
    // The run ends on the completions the batch stored.
    let status = env.wait_end(&run, Duration::from_secs(90)).unwrap();
    assert_eq!(status.state, State::Succeeded, "{status:?}");
    // The batch's jobs, never acknowledged, are delivered again (after the ack wait) and run
    // again: at least two of them, as the failpoint is on the way of a batch only.
    let ran_twice = |effects: &[String]| {
        leaves
            .iter()
            .filter(|leaf| effects.iter().filter(|l| l == leaf).count() == 2)
            .count()
    };
    let started = std::time::Instant::now();
    while ran_twice(&lines(&file)) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the batch's jobs were not delivered again: {:?}",
            lines(&file)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Their second completions counted for nothing: once every job is acked (its completion
    // stored) and the planner has read every event, the run is as it was.
    baton_tests::settle(
        &env,
        &[("JOBS", "worker-exec"), ("EVENTS", "planner-events")],
    );
    let after = env.status(&run).unwrap();
    assert_eq!(after, status, "the run changed after its jobs ran again");
    for leaf in &leaves {
        assert!(lines(&file).contains(leaf), "{leaf} never ran");
    }
}

/// A worker killed in the middle of a batch of jobs (the leaves one decision dispatched
/// together, some done and reported, the others still running): the batch was never
/// acknowledged, so it is delivered again whole, as the same attempts. Nothing is lost and no
/// node counts twice: the run succeeds, each node has one attempt, and the leaves already
/// reported ran again without changing the run. (An exec command whose worker dies may run
/// twice; the README says so.)
#[test]
fn a_worker_killed_in_the_middle_of_a_batch_of_jobs_loses_nothing() {
    let mut env = env();
    // Exec jobs go alone by default (they hold a slot for long); this planner batches them.
    let planner = env
        .start_planner_with(&["--job-batch-kinds", "exec,noop"])
        .unwrap();
    env.keep(planner);
    let file = env.dir.path().join("effects");
    let gate = env.dir.path().join("gate");
    let (f, g) = (file.display(), gate.display());
    // Twelve leaves start together, so the planner sends them as one batch: six end at once,
    // six wait for a gate that opens only after the kill.
    let quick: Vec<String> = (0..6).map(|i| format!("quick{i}")).collect();
    let gated: Vec<String> = (0..6).map(|i| format!("gated{i}")).collect();
    let mut nodes: Vec<String> = quick
        .iter()
        .map(|leaf| {
            format!(r#"{{name: {leaf}, kind: exec, command: [sh, -c, 'echo {leaf} >> {f}']}}"#)
        })
        .collect();
    nodes.extend(gated.iter().map(|leaf| {
        format!(
            r#"{{name: {leaf}, kind: exec, command: [sh, -c, 'for i in $(seq 600); do [ -e {g} ] && break; sleep 0.1; done; echo {leaf} >> {f}']}}"#
        )
    }));
    let leaves: Vec<&String> = quick.iter().chain(&gated).collect();
    nodes.push(format!(
        "{{name: join, kind: noop, needs: [{}]}}",
        leaves
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let wf = env.write("jobs.yaml", &workflow("jobs", &nodes));
    let mut first = env
        .start_worker("worker-1", "exec", &["--concurrency", "16"])
        .unwrap();
    let joiner = env.start_worker("joiner", "noop", &[]).unwrap();
    env.keep(joiner);
    let run = env.apply(&wf).unwrap();
    // The quick leaves are reported and applied while the gated ones run.
    env.wait_for(&run, Duration::from_secs(30), |s| {
        let state = |name: &str| s.nodes.iter().find(|n| n.name == name).map(|n| n.state);
        quick.iter().all(|l| state(l) == Some(State::Succeeded))
            && gated.iter().all(|l| state(l) == Some(State::Running))
    })
    .unwrap();
    first.kill9();
    std::fs::write(&gate, "go").unwrap();
    let second = env
        .start_worker("worker-2", "exec", &["--concurrency", "16"])
        .unwrap();
    env.keep(second);
    let status = env.wait_end(&run, Duration::from_secs(90)).unwrap();
    assert_eq!(status.state, State::Succeeded, "{status:?}");
    assert!(status.nodes.iter().all(|n| n.attempts == 1), "{status:?}");
    // The batch came again whole: the quick leaves, reported before the kill, ran again.
    let started = std::time::Instant::now();
    while !quick
        .iter()
        .all(|leaf| lines(&file).iter().filter(|l| *l == leaf).count() >= 2)
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the batch was not delivered again whole: {:?}",
            lines(&file)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Their second completions counted for nothing.
    baton_tests::settle(
        &env,
        &[
            ("JOBS", "worker-exec"),
            ("JOBS", "worker-exec-batch"),
            ("EVENTS", "planner-events"),
        ],
    );
    let after = env.status(&run).unwrap();
    assert_eq!(after, status, "the run changed after its jobs ran again");
    for leaf in &gated {
        assert!(lines(&file).contains(leaf), "{leaf} never ran");
    }
}
