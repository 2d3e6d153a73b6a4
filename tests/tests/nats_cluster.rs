//! Baton on a three-node NATS cluster (real nats-servers routed over loopback, streams at R3):
//! a member of the bus killed with SIGKILL in the middle of a run, and restarted later, costs
//! the run nothing. Each exec node appends a line to a file, so the file tells how often each
//! effect ran.

use std::path::Path;
use std::time::{Duration, Instant};

use baton_schemas::status::State;
use baton_tests::nats_cluster::{MEMBERS, placement};
use baton_tests::{Env, exec_chain, first_runs, lines};

/// Waits until `file` holds at least `count` lines.
fn wait_for_effects(file: &Path, count: usize, within: Duration) {
    let started = Instant::now();
    while lines(file).len() < count {
        assert!(
            started.elapsed() < within,
            "{} of {count} effects after {within:?}",
            lines(file).len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The member leading the jobs stream is killed while a node runs; the run goes on with two
/// members; the dead one comes back while it still runs, and then the leader of the events
/// stream is killed too. Every node runs, in order, each attempt once but for what the README
/// allows when a server dies with acks it had not replicated (an exec command again, as the
/// same attempt, whose second completion the planner ignores).
#[test]
fn a_bus_member_killed_mid_run_costs_the_run_nothing() {
    let mut env = Env::on_cluster(env!("CARGO_BIN_EXE_baton-under-test")).expect("cluster env");
    // The lease lives on the cluster too: its ttl outlasts the election of new leaders after
    // a member dies (seconds, more on a busy machine), so the planner keeps it throughout.
    let planner = env.start_planner_with(&["--lease-ttl", "30s"]).unwrap();
    env.keep(planner);
    // A worker started with another --replicas uses the planner's streams as they are: the
    // placements below stay at R3.
    let mut worker = env.baton();
    worker.args(["worker", "--kinds", "exec", "--replicas", "1"]);
    let worker = env.spawn("worker", worker).unwrap();
    env.keep(worker);
    let file = env.dir.path().join("effects");
    let n = 12;
    let run = env
        .apply(&env.write("chain.yaml", &exec_chain("chain", n, &file, "0.3")))
        .unwrap();
    let streams = env.prefix.to_ascii_uppercase();
    let mut killed = Vec::new();
    for (stream, after) in [("JOBS", 3), ("EVENTS", 7)] {
        wait_for_effects(&file, after, Duration::from_secs(60));
        let placement = placement(&env.nats_url(), &format!("{streams}_{stream}")).unwrap();
        assert_eq!(placement.replicas, MEMBERS, "{placement:?}");
        let leader = placement.leader;
        eprintln!("killing {leader}, the leader of {stream}, after {after} effects");
        env.member(&leader).kill9();
        // The run goes on without it: two more nodes run.
        wait_for_effects(&file, after + 2, Duration::from_secs(60));
        env.member(&leader).restart().unwrap();
        killed.push(leader);
    }
    let status = env.wait_end(&run, Duration::from_secs(120)).unwrap();
    assert_eq!(status.state, State::Succeeded, "{status:?}");
    let expected: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    let effects = lines(&file);
    assert_eq!(first_runs(&effects), expected, "{effects:?}");
    assert!(effects.len() <= n + 2 * killed.len(), "{effects:?}");
    assert!(status.nodes.iter().all(|n| n.attempts == 1), "{status:?}");
    eprintln!("killed {killed:?}; {} effects for {n} nodes", effects.len());
}
