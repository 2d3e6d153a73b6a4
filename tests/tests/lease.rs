//! Which planner acts is decided by a lease on the bus, not by a file: planners with their own
//! data directories (other machines) stand by, the one holding the lease acts, and a standby
//! takes over when the holder dies or stalls, from the state the bus keeps. Each exec node
//! appends a line to a file, so the file tells how often each effect ran.

use std::path::Path;
use std::time::{Duration, Instant};

use baton_schemas::status::{RunStatus, State};
use baton_tests::{Env, Proc, exec_chain, free_port, lines, wait_for_port};
use nix::sys::signal::Signal;

const TTL: &str = "2s";

/// A planner with its own data directory and API port, as on another machine.
struct Other {
    proc: Proc,
    server: String,
}

fn start_other(env: &mut Env, name: &str) -> Other {
    let port = free_port();
    let mut command = env.baton();
    command
        .args(["planner", "--lease-ttl", TTL, "--data-dir"])
        .arg(env.dir.path().join(format!("{name}-data")))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"));
    let proc = env.spawn(name, command).unwrap();
    Other {
        proc,
        server: format!("http://127.0.0.1:{port}"),
    }
}

fn status_at(env: &Env, server: &str, run: &str) -> Option<RunStatus> {
    let out = env
        .baton()
        .env("BATON_SERVER", server)
        .args(["status", run, "-o", "json"])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

fn wait_end_at(env: &Env, server: &str, run: &str, within: Duration) -> RunStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = status_at(env, server, run)
            && status.state.is_terminal()
        {
            return status;
        }
        assert!(
            started.elapsed() < within,
            "run {run} not ended at {server}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_effects(file: &Path, count: usize) {
    let started = Instant::now();
    while lines(file).len() < count {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{:?}",
            lines(file)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every node ran, first in order; `repeats` more runs of an effect are allowed.
fn assert_each_ran_once(file: &Path, n: usize, status: &RunStatus) {
    let effects = lines(file);
    let expected: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    assert_eq!(effects, expected, "every node ran exactly once");
    assert_eq!(status.state, State::Succeeded, "{status:?}");
    assert!(status.nodes.iter().all(|n| n.attempts == 1), "{status:?}");
}

/// Two planners with their own data directories, the first active, the second standing
/// by, and a chain of exec nodes running, two of which have run.
struct Pair {
    env: Env,
    first: Proc,
    second: Other,
    file: std::path::PathBuf,
    run: String,
}

/// The chain's length.
const N: usize = 8;

fn two_planners_and_a_run() -> Pair {
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).unwrap();
    let first = env.start_planner_with(&["--lease-ttl", TTL]).unwrap();
    first
        .wait_log("this planner is active now", Duration::from_secs(30))
        .unwrap();
    let worker = env.start_worker("worker", "exec", &[]).unwrap();
    env.keep(worker);
    let second = start_other(&mut env, "second");
    second
        .proc
        .wait_log("standing by", Duration::from_secs(30))
        .unwrap();
    let file = env.dir.path().join("effects");
    let run = env
        .apply(&env.write("chain.yaml", &exec_chain("chain", N, &file, "0.3")))
        .unwrap();
    wait_effects(&file, 2);
    Pair {
        env,
        first,
        second,
        file,
        run,
    }
}

/// The active planner is killed; a standby with its own, empty data directory takes over
/// within the lease's ttl from the bus's state and finishes the run.
#[test]
fn a_standby_on_another_disk_takes_over_from_a_killed_planner() {
    let Pair {
        mut env,
        mut first,
        second,
        file,
        run,
    } = two_planners_and_a_run();
    // The standby keeps its own store a copy of the active planner's while it waits.
    second
        .proc
        .wait_log(
            "standing by: following the bus's planner state",
            Duration::from_secs(30),
        )
        .unwrap();
    first.kill9();
    let killed = Instant::now();
    second
        .proc
        .wait_log("this planner is active now", Duration::from_secs(30))
        .unwrap();
    eprintln!(
        "the standby was active {:?} after the kill",
        killed.elapsed()
    );
    let port: u16 = second.server.rsplit(':').next().unwrap().parse().unwrap();
    wait_for_port(port, Duration::from_secs(30)).unwrap();
    let status = wait_end_at(&env, &second.server, &run, Duration::from_secs(90));
    assert_each_ran_once(&file, N, &status);
    env.keep(second.proc);
}

/// The active planner is paused (SIGSTOP) past its lease, as a long stall or a partition
/// would; a standby takes over and finishes the run; resumed, the first planner finds it
/// lost the lease and stops, having changed nothing: the run stays as the standby left it.
#[test]
fn a_paused_planner_that_lost_its_lease_stops_and_changes_nothing() {
    let Pair {
        mut env,
        mut first,
        second,
        file,
        run,
    } = two_planners_and_a_run();
    first.signal(Signal::SIGSTOP);
    second
        .proc
        .wait_log("this planner is active now", Duration::from_secs(30))
        .unwrap();
    let status = wait_end_at(&env, &second.server, &run, Duration::from_secs(90));
    assert_each_ran_once(&file, N, &status);
    first.signal(Signal::SIGCONT);
    let exit = first.wait_exit(Duration::from_secs(30)).unwrap();
    assert!(!exit.success(), "{}", first.log());
    assert!(first.log().contains("lost the lease"), "{}", first.log());
    let after = status_at(&env, &second.server, &run).unwrap();
    assert_eq!(
        serde_json::to_value(&after).unwrap(),
        serde_json::to_value(&status).unwrap()
    );
    assert_each_ran_once(&file, N, &after);
    env.keep(second.proc);
}
