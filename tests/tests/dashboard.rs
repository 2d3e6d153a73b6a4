//! The dashboard in a real browser: Debian's Chromium, headless, driven by playwright-core
//! (`tests/browser/dashboard.mjs`; `scripts/tools.sh --test` installs both). The planner
//! serves the page; the test starts the diamond and retry examples and the browser watches
//! them: the runs page lists them, the diamond's graph shows every node from the start and
//! turns green without a reload, and the retry example's failed node shows its error.
//! Screenshots go to the test's output directory (`target/dashboard/`).

use std::path::{Path, PathBuf};
use std::process::Command;

use baton_tests::Env;
use serde_json::Value;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

#[test]
fn the_dashboard_shows_runs_live_in_a_real_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let playwright = root.join(".tools/node");
    assert!(
        playwright.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run scripts/tools.sh --test"
    );
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).expect("test env");
    env.start_all().unwrap();
    baton_tests::wait_for_port(env.api_port, std::time::Duration::from_secs(10)).unwrap();
    // The diamond's first node waits (at most 60 s) until the browser has drawn the graph.
    let gate = env.dir.path().join("gate");
    let wait = format!(
        "for i in $(seq 300); do [ -e {} ] && break; sleep 0.2; done; echo \"fetched",
        gate.display()
    );
    let diamond = std::fs::read_to_string(example("diamond.yaml"))
        .unwrap()
        .replace("echo \"fetched", &wait);
    let diamond = env.write("diamond.yaml", &diamond);
    let run_ok = env.apply(&diamond).unwrap();
    let run_failed = env.apply(&example("retry-and-handler.yaml")).unwrap();
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard");
    std::fs::create_dir_all(&out).unwrap();
    let script = root.join("tests/browser/dashboard.mjs");
    let result = Command::new("node")
        .arg(&script)
        .env("PLAYWRIGHT_HOME", &playwright)
        .env("BATON_URL", format!("http://127.0.0.1:{}", env.api_port))
        .env("RUN_OK", &run_ok)
        .env("RUN_FAILED", &run_failed)
        .env("FAILED_NODE", "migrate")
        // A viewer may read all the page shows.
        .env("TOKEN", &env.tokens.viewer)
        .env("OUT", &out)
        .env("GATE", &gate)
        .env(
            "CHROMIUM",
            std::env::var("BATON_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned()),
        )
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&result.stdout);
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|_| {
            panic!(
                "the browser script printed no result: {stdout}{}",
                String::from_utf8_lossy(&result.stderr)
            )
        });
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
    for shot in ["runs.png", "dag.png", "failed-node.png"] {
        assert!(out.join(shot).exists(), "{shot}");
    }
}
