//! A smoke run of `baton bench`: every part of the benchmark runs (its own nats-server,
//! planner and noop worker, the raw floor, chains, fan-outs, concurrent runs, a DAG, trigger
//! ingest, a planner restart) and reports every figure under its stable JSON key. The sizes
//! are tiny and the figures are not judged: speed is measured with `make bench`, not here.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use baton_tests::nats_server_program;

/// The keys programs outside the project read.
const KEYS: [&str; 12] = [
    "floor_serial_p50_ms",
    "floor_pipelined_edges_per_s",
    "chain_per_node_p50_ms",
    "chain_per_node_p99_ms",
    "chain_ratio",
    "throughput_nodes_per_s",
    "throughput_ratio",
    "dag_nodes",
    "dag_wall_s",
    "dag_peak_rss_mib",
    "triggers_per_s",
    "recovery_s",
];

/// Runs `baton bench` with `args` (at most 300 s) and returns its JSON report.
fn bench(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton-under-test"))
        .arg("bench")
        .args(args)
        .env("BATON_NATS_SERVER", nats_server_program())
        .env("TMPDIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(300) {
            child.kill().ok();
            panic!("baton bench {args:?} ran past 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "baton bench failed: {stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn the_benchmark_runs_end_to_end_and_reports_every_figure() {
    let report = bench(&["--scale", "smoke", "-o", "json"]);
    for key in KEYS {
        let value = report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {report}"));
        assert!(
            value.is_finite() && value > 0.0,
            "{key} = {value}: {report}"
        );
    }
    // The same turns on a three-node cluster, streams at R3.
    assert_eq!(report["r3"]["replicas"], 3, "{report}");
    for key in [
        "floor_serial_p50_ms",
        "floor_pipelined_edges_per_s",
        "chain_per_node_p50_ms",
        "chain_ratio",
        "throughput_nodes_per_s",
        "throughput_ratio",
    ] {
        let value = report["r3"][key]
            .as_f64()
            .unwrap_or_else(|| panic!("r3.{key} missing: {report}"));
        assert!(
            value.is_finite() && value > 0.0,
            "r3.{key} = {value}: {report}"
        );
    }
    assert!(report["r3"]["fan_out_cpu_us"]["nats"].as_f64().unwrap() > 0.0);
    // What metrics cost: the chain and the fan-out with them off and on.
    for key in [
        "chain_off_p50_ms",
        "chain_metrics_p50_ms",
        "chain_metrics_ratio",
        "fan_out_off_nodes_per_s",
        "fan_out_metrics_nodes_per_s",
        "fan_out_metrics_ratio",
        "chain_traced_p50_ms",
        "chain_traced_ratio",
        "fan_out_traced_nodes_per_s",
        "fan_out_traced_ratio",
        "otlp_bytes",
    ] {
        let value = report["observability"][key]
            .as_f64()
            .unwrap_or_else(|| panic!("observability.{key} missing: {report}"));
        assert!(
            value.is_finite() && value > 0.0,
            "observability.{key} = {value}: {report}"
        );
    }
    assert_eq!(report["dag_nodes"], 200);
    assert_eq!(report["dag_completed"], true, "{report}");
    assert_eq!(report["scale"], "smoke");
}

/// A smoke run of the takeover measurement: a three-node NATS cluster, two planners, the
/// active one killed twice while a chain runs; each kill's figure is reported. Not judged:
/// `baton bench --takeover-kills 10` measures it.
#[test]
fn the_takeover_benchmark_kills_the_active_planner_and_reports_each_takeover() {
    let report = bench(&["--scale", "smoke", "--takeover-kills", "2", "-o", "json"]);
    let figures = report["takeover_s"].as_array().expect("takeover_s");
    assert_eq!(figures.len(), 2, "{report}");
    for figure in figures {
        let s = figure.as_f64().unwrap();
        // Never before the lease's ttl: the dead planner's lease lasts that long.
        assert!((1.4..120.0).contains(&s), "{report}");
    }
    assert!(report["takeover_p50_s"].as_f64().unwrap() > 0.0, "{report}");
}
