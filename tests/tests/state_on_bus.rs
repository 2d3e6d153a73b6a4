//! The planner's state lives on the bus: a planner started with an empty data directory (a
//! lost disk, another machine) on a bus with history rebuilds the store the last planner had,
//! from the state stream, and its API shows what the dead one showed.

use std::time::{Duration, Instant};

use baton_bus::{Bus, BusConfig, BusErrorKind, STATE_PART_HEADER};
use baton_schemas::status::State;
use baton_tests::{Env, wait_for_port, workflow};
use serde_json::Value;

fn example(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../examples/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// What the API shows of everything the planner holds, through the CLI.
fn views(env: &Env) -> Vec<(&'static str, Value)> {
    ["runs", "tasks", "ignitors", "groups", "cells"]
        .into_iter()
        .map(|what| {
            let out = env.cli(&[what, "-o", "json"]);
            assert!(
                out.status.success(),
                "{what}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            (what, serde_json::from_slice(&out.stdout).unwrap())
        })
        .collect()
}

fn count(views: &[(&str, Value)], what: &str) -> usize {
    views
        .iter()
        .find(|(w, _)| *w == what)
        .and_then(|(_, v)| v.as_array())
        .map_or(0, Vec::len)
}

#[test]
fn a_planner_with_an_empty_disk_rebuilds_the_state_from_the_bus() {
    rebuild_from_the_bus(&[]);
}

/// With a snapshot after every commit, the stream holds the last snapshot and what came
/// after it: the rebuild reads those alone.
#[test]
fn a_planner_rebuilds_from_the_last_snapshot_and_what_followed() {
    let planner = rebuild_from_the_bus(&["--state-snapshot-bytes", "1"]);
    let purged = planner
        .lines()
        .filter(|l| l.contains("planner state snapshot written"))
        .filter_map(|l| l.split("purged=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .sum::<u64>();
    assert!(
        purged > 0,
        "no commit was dropped after a snapshot:\n{planner}"
    );
}

/// Builds a state, kills the planner (started with `args`), starts one with an empty data
/// directory, and compares what the API shows; returns the first planner's log.
fn rebuild_from_the_bus(args: &[&str]) -> String {
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).unwrap();
    let mut planner = env.start_planner_with(args).unwrap();
    let worker = env.start_worker("worker", "noop,exec", &[]).unwrap();
    env.keep(worker);
    // A finished run, Orca's tasks and ignitor (its fire starts a pod task no worker takes),
    // an application group (no helm worker: its releases wait), and okra's Cell.
    let nodes = [
        "{name: a, kind: noop}".to_owned(),
        "{name: b, kind: exec, command: ['true'], needs: [a]}".to_owned(),
    ];
    let run = env
        .apply(&env.write("w.yaml", &workflow("chain", &nodes)))
        .unwrap();
    assert_eq!(
        env.wait_end(&run, Duration::from_secs(60)).unwrap().state,
        State::Succeeded
    );
    for (name, text) in [
        ("orca.yaml", example("orca/task1-task2-ignitor1.yaml")),
        ("group.yaml", example("applicationgroups/bookinfo.yaml")),
        ("cell.yaml", example("cells/okra-readme.yaml")),
    ] {
        env.apply(&env.write(name, &text)).unwrap();
    }
    // The ignitor fires at once; its run is the last thing to appear.
    let started = Instant::now();
    let before = loop {
        let seen = views(&env);
        if count(&seen, "runs") >= 3 && count(&seen, "cells") == 1 {
            break seen;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the state never formed: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    planner.kill9();
    let wiped = env.dir.path().join("planner-data-2");
    let mut command = env.baton();
    command
        .args(["planner", "--data-dir"])
        .arg(&wiped)
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", env.api_port));
    let rebuilt = env.spawn("planner-rebuilt", command).unwrap();
    wait_for_port(env.api_port, Duration::from_secs(30)).unwrap();
    // It filled its store from the bus while it waited for the dead planner's lease to
    // expire, or on taking over.
    let log = rebuilt.log();
    assert!(
        log.contains("standing by: following the bus's planner state")
            || log.contains("store caught up with the bus's planner state"),
        "{log}"
    );
    let after = views(&env);
    for ((what, was), (_, is)) in before.iter().zip(&after) {
        match *what {
            // A Cell's status says when discovery last looked: compare what it is.
            "cells" => {
                let names = |v: &Value| {
                    v.as_array()
                        .unwrap()
                        .iter()
                        .map(|c| c["name"].clone())
                        .collect::<Vec<_>>()
                };
                assert_eq!(names(was), names(is), "cells");
            }
            _ => assert_eq!(was, is, "{what} differ after the rebuild"),
        }
    }
    assert_eq!(env.status(&run).unwrap().state, State::Succeeded);
    env.keep(rebuilt);
    planner.log()
}

/// What a reader of the state stream takes: whole commits, in order, a large one from its
/// parts; a commit whose writer died between its parts is skipped, as its writer's store
/// never applied it either; and a second writer that expects the stream where it no longer
/// ends is fenced.
#[test]
fn the_state_stream_yields_whole_commits_and_fences_a_second_writer() {
    let env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = BusConfig {
            prefix: env.prefix.clone(),
            ..BusConfig::default()
        };
        let bus = Bus::connect(&env.nats.url(), config, Duration::from_secs(20))
            .await
            .unwrap();
        bus.ensure_state_stream().await.unwrap();
        let small = b"{\"ops\":[]}".to_vec();
        // Larger than a part: it travels in three.
        let large: Vec<u8> = (0..1_200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let after_small = bus.append_state(0, &small, "w1").await.unwrap();
        assert_eq!(after_small, 1);
        // A writer that died after the first of two parts.
        let dangling = async_nats::jetstream::message::PublishMessage::build()
            .payload(b"half".as_slice().into())
            .header(STATE_PART_HEADER, "1/2")
            .expected_last_sequence(after_small);
        bus.jetstream()
            .send_publish(format!("{}.state", env.prefix), dangling)
            .await
            .unwrap()
            .await
            .unwrap();
        // A writer that still believes the stream ends at the small commit is fenced.
        let fenced = bus
            .append_state(after_small, &small, "w2")
            .await
            .unwrap_err();
        assert_eq!(fenced.kind(), BusErrorKind::Fenced, "{fenced}");
        let tail = bus.state_tail().await.unwrap();
        let after_large = bus.append_state(tail.last, &large, "w3").await.unwrap();
        assert_eq!(after_large, tail.last + 3);
        let mut reader = bus.read_state(0, after_large).await.unwrap();
        let first = reader.next().await.unwrap().unwrap();
        assert_eq!((first.seq, first.bytes), (after_small, small));
        let second = reader.next().await.unwrap().unwrap();
        assert_eq!(second.seq, after_large);
        assert!(second.bytes == large, "the large commit came back altered");
        assert!(reader.next().await.unwrap().is_none());
    });
}
