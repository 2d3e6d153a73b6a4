//! The dashboard in a real browser: Debian's Chromium, headless, driven by playwright-core
//! (`tests/browser/dashboard.mjs`; `scripts/tools.sh --test` installs both). The planner
//! serves the page; the test starts the diamond and retry examples and the browser watches
//! them: the runs page lists them, the diamond's graph shows every node from the start and
//! turns green without a reload, and the retry example's failed node shows its error.
//! Screenshots go to the test's output directory (`target/dashboard/`).

use std::path::{Path, PathBuf};

use baton_schemas::status::State;
use baton_tests::Env;
use serde_json::Value;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

#[test]
fn the_dashboard_shows_runs_live_in_a_real_browser() {
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).expect("test env");
    env.start_all().unwrap();
    baton_tests::wait_for_port(env.api_port, std::time::Duration::from_secs(10)).unwrap();
    // The diamond's first node waits (at most 60 s) until the browser has drawn the graph;
    // a copy of it waits (at most 10 minutes) on a file never made, until the page cancels it.
    let gate = env.dir.path().join("gate");
    let gated = |name: &str, gate: &Path, tries: u32| {
        let wait = format!(
            "for i in $(seq {tries}); do [ -e {} ] && break; sleep 0.2; done; echo \"fetched",
            gate.display()
        );
        let text = std::fs::read_to_string(example("diamond.yaml"))
            .unwrap()
            .replace("name: diamond", &format!("name: {name}"))
            .replace("echo \"fetched", &wait);
        env.write(&format!("{name}.yaml"), &text)
    };
    let diamond = gated("diamond", &gate, 300);
    let waiting = gated("waiting", &env.dir.path().join("never"), 3000);
    let run_ok = env.apply(&diamond).unwrap();
    let run_failed = env.apply(&example("retry-and-handler.yaml")).unwrap();
    let run_cancel = env.apply(&waiting).unwrap();
    let seen = baton_tests::browser::run(
        "dashboard.mjs",
        &[
            ("BATON_URL", format!("http://127.0.0.1:{}", env.api_port)),
            ("RUN_OK", run_ok),
            ("RUN_FAILED", run_failed),
            ("FAILED_NODE", "migrate".to_owned()),
            // A viewer may read all the page shows.
            ("TOKEN", env.tokens.viewer.clone()),
            ("GATE", gate.display().to_string()),
            ("RUN_CANCEL", run_cancel.clone()),
            ("OPERATOR_TOKEN", env.tokens.operator.clone()),
        ],
    );
    assert_eq!(seen["ok"], true, "{seen:#}");
    assert_eq!(seen["nodesAtFirst"], 4, "{seen:#}");
    assert_eq!(seen["edges"], 4, "{seen:#}");
    let first: Vec<&str> = seen["statesAtFirst"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        first.iter().all(|s| *s != "succeeded"),
        "the graph was drawn before the run went on: {first:?}"
    );
    assert_eq!(seen["runState"], "succeeded", "{seen:#}");
    assert_eq!(seen["notReloaded"], true, "the page was not reloaded");
    assert!(
        seen["error"].as_str().unwrap_or_default().contains("exit"),
        "{seen:#}"
    );
    let refused = seen["viewerCancel"].as_str().unwrap_or_default();
    assert!(refused.starts_with("forbidden: "), "{refused}");
    assert!(refused.contains("operator"), "{refused}");
    assert_eq!(seen["cancelledState"], "cancelled", "{seen:#}");
    let cancelled = env.status(&run_cancel).unwrap();
    assert_eq!(cancelled.state, State::Cancelled);
    for shot in ["runs.png", "dag.png", "failed-node.png", "cancelled.png"] {
        assert!(
            baton_tests::browser::output_dir().join(shot).exists(),
            "{shot}"
        );
    }
}

/// A fan-out of `width` nodes between a root and `width / 1000` joins (at least one) and
/// an end: a join needs at most a thousand nodes, as a node's settings are bounded.
fn fan_out(name: &str, width: usize) -> String {
    let leaf = |i: usize| format!("n{i:06}");
    let mut nodes = vec![serde_json::json!({"name": "root", "kind": "noop"})];
    nodes.extend(
        (0..width).map(|i| serde_json::json!({"name": leaf(i), "kind": "noop", "needs": ["root"]})),
    );
    let joins: Vec<String> = (0..width.div_ceil(1000))
        .map(|j| format!("join{j:03}"))
        .collect();
    for (j, join) in joins.iter().enumerate() {
        let needs: Vec<String> = (j * 1000..((j + 1) * 1000).min(width)).map(leaf).collect();
        nodes.push(serde_json::json!({"name": join, "kind": "noop", "needs": needs}));
    }
    nodes.push(serde_json::json!({"name": "end", "kind": "noop", "needs": joins}));
    serde_json::json!({
        "apiVersion": "baton.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"nodes": nodes},
    })
    .to_string()
}

/// Runs of 10,000 and 100,000 nodes open in the browser: the page measures its first paint
/// (from the start of its load, snapshot and layout included), its longest task, a frame of
/// the whole graph and a zoom, checks two nodes are drawn in their states' colours, and opens
/// each by a click. No worker runs: every node but the root stays pending, so the page is
/// measured against a planner that is not busy with the runs (other tests may still share
/// the machine, hence bounds far above the figures).
#[test]
fn runs_of_ten_and_a_hundred_thousand_nodes_open_quickly_and_stay_responsive() {
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).expect("test env");
    let _planner = env.start_planner().unwrap();
    let mut runs = Vec::new();
    for width in [10_000, 100_000] {
        let file = env.write(
            &format!("fan-{width}.json"),
            &fan_out(&format!("fan-{width}"), width),
        );
        let run = env.apply(&file).unwrap();
        runs.push(serde_json::json!({
            "run": run,
            "nodes": width + width.div_ceil(1000) + 2,
            "probes": [{"name": "root", "state": "running"}, {"name": "n000005", "state": "pending"}],
        }));
    }
    let seen = baton_tests::browser::run(
        "large-graph.mjs",
        &[
            ("BATON_URL", format!("http://127.0.0.1:{}", env.api_port)),
            ("TOKEN", env.tokens.viewer.clone()),
            ("RUNS", Value::Array(runs).to_string()),
        ],
    );
    assert_eq!(seen["ok"], true, "{seen:#}");
    // The figures go to the test's output for the record (`--nocapture`).
    eprintln!("large graphs: {seen:#}");
    for (run, first_paint_bound) in seen["runs"].as_array().unwrap().iter().zip([5_000, 30_000]) {
        assert_eq!(run["renderer"], "CanvasRenderer", "{run:#}");
        for probe in run["probes"].as_array().unwrap() {
            assert_eq!(probe["colour"], probe["expected"], "{probe:#}");
            assert_eq!(probe["shownState"], probe["state"], "{probe:#}");
        }
        // The goal is under 2 s for 10,000 nodes on a quiet machine; the bound is generous,
        // as tests share the machine.
        let first_paint = run["firstPaintMs"].as_u64().unwrap();
        assert!(first_paint < first_paint_bound, "{run:#}");
        assert!(run["zoomToFrameMs"].as_u64().unwrap() < 10_000, "{run:#}");
        assert!(run["longestTaskMs"].as_u64().unwrap() < 10_000, "{run:#}");
    }
}
