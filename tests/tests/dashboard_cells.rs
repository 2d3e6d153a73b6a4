//! The dashboard's Cells, groups and tasks pages in a real browser: Debian's Chromium,
//! headless, driven by playwright-core (`tests/browser/cells.mjs`; `scripts/tools.sh --test`
//! installs both), against a real planner and worker and the ELBv2 emulator (moto). A Cell's
//! rollout waits in a pause; a viewer's resume is refused in words (403); an operator's,
//! confirmed in the page's dialog, sends the rollout on to its last weights, which the
//! emulator shows and the page follows without a reload. Screenshots go to the test's output
//! directory (`target/dashboard/`).

use std::path::Path;
use std::time::{Duration, Instant};

use baton_tests::Env;
use baton_tests::aws::{Moto, WeightLog};
use serde_json::Value;

const CELL: &str = r#"apiVersion: baton.dev/v1alpha1
kind: Cell
metadata: {name: web}
spec:
  ingress:
    awsApplicationLoadBalancer:
      listenerARN: LISTENER
      listener: {rule: {priority: 10, hosts: [example.com]}}
      targetGroupSelector: {matchLabels: {app: web}}
  updateStrategy:
    canary:
      steps:
        - setWeight: 30
        - pause: {}
        - setWeight: 60
        - pause: {duration: 2s}
"#;

/// A task an hourly ignitor starts: registered only (`--no-run`), it needs no Kubernetes.
const SCHEDULE: &str = "apiVersion: sirocco.cloud/v1alpha1\nkind: Task\nmetadata: {name: nightly-report}\nspec: {startOnIgnition: [hourly], template: {spec: {containers: [{name: c, image: busybox}]}}}\n---\napiVersion: sirocco.cloud/v1alpha1\nkind: Ignitor\nmetadata: {name: hourly}\nspec: {scheduled: '@hourly'}\n";

fn named(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
    pairs.iter().map(|(n, w)| ((*n).to_owned(), *w)).collect()
}

#[test]
fn the_dashboard_resumes_a_paused_cell_and_shows_groups_and_tasks_in_a_real_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).expect("test env");
    let moto = Moto::start(env.dir.path()).expect("moto");
    let listener = moto.listener().expect("a listener");
    env.extra_env = moto.env();
    let planner = env.start_planner_with(&["--sync-period", "1s"]).unwrap();
    env.keep(planner);
    let worker = env.start_worker("worker", "noop,traffic", &[]).unwrap();
    env.keep(worker);
    let apply = |name: &str, text: &str, args: &[&str]| {
        let file = env.write(name, text);
        let out = env.cli(&[&["apply", "-f", file.to_str().unwrap()], args].concat());
        assert!(
            out.status.success(),
            "apply {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };

    // The first version gets all the traffic; a second one starts a rollout that waits in
    // its pause at 30%.
    moto.target_group(
        &listener.vpc_id,
        "web-1",
        &[("app", "web"), ("baton.dev/version", "1.0.0")],
    )
    .unwrap();
    apply("cell.yaml", &CELL.replace("LISTENER", &listener.arn), &[]);
    let wait_weights = |wanted: &[(&str, u32)]| {
        let wanted = named(wanted);
        let started = Instant::now();
        while moto.weights(&listener.arn, 10).unwrap().as_ref() != Some(&wanted) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the rule never had {wanted:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_weights(&[("web-1", 100)]);
    let log = WeightLog::start(&moto, &listener.arn, 10);
    moto.target_group(
        &listener.vpc_id,
        "web-2",
        &[("app", "web"), ("baton.dev/version", "2.0.0")],
    )
    .unwrap();
    wait_weights(&[("web-1", 70), ("web-2", 30)]);

    // A group, whose releases wait for a Helm worker this test does not start, and a task
    // with its ignitor.
    let bookinfo = root.join("examples/applicationgroups/bookinfo.yaml");
    apply(
        "bookinfo.yaml",
        &std::fs::read_to_string(bookinfo).unwrap(),
        &[],
    );
    apply("schedule.yaml", SCHEDULE, &["--no-run"]);

    let started = Instant::now();
    let seen = baton_tests::browser::run(
        "cells.mjs",
        &[
            ("BATON_URL", env.server()),
            ("CELL", "web".to_owned()),
            ("OPERATOR_TOKEN", env.tokens.operator.clone()),
            ("VIEWER_TOKEN", env.tokens.viewer.clone()),
            ("GROUP", "bookinfo".to_owned()),
            ("TASK", "nightly-report".to_owned()),
            ("IGNITOR", "hourly".to_owned()),
        ],
    );
    eprintln!("browser: {:?}", started.elapsed());
    assert_eq!(seen["ok"], true, "{seen:#}");

    // The viewer's resume was refused in words, and changed nothing: the operator's resume,
    // which names step 1, was then accepted.
    assert_eq!(seen["resumeStatus"], "200", "{seen:#}");
    let refusal = seen["viewerRefusal"].as_str().unwrap_or_default();
    assert!(
        refusal.starts_with("forbidden: your token's role may not") && refusal.contains("viewer"),
        "{seen:#}"
    );
    // The paused page: its step, its weights, and a chart with the weights so far.
    assert_eq!(seen["stepPaused"], "1", "{seen:#}");
    assert_eq!(
        seen["weightsPaused"],
        serde_json::json!([["web-1", 70], ["web-2", 30]]),
        "{seen:#}"
    );
    assert!(seen["pointsPaused"].as_u64().unwrap_or(0) >= 3, "{seen:#}");
    assert_eq!(seen["afterNo"], "", "saying no sent nothing: {seen:#}");
    // The operator's resume: the emulator's rule went on through 60% (held 2 s, so that the
    // log, which samples every 50 ms, sees it) to the last weights.
    let final_weights = named(&[("web-2", 100)]);
    let weights = log.seen_through(&final_weights, Duration::from_secs(5));
    let expected = [
        named(&[("web-1", 70), ("web-2", 30)]),
        named(&[("web-1", 40), ("web-2", 60)]),
        final_weights,
    ];
    // The log samples: a step it missed is no fault, one out of order or unknown is.
    let places: Vec<usize> = weights
        .iter()
        .skip_while(|w| **w != expected[0])
        .map(|w| expected.iter().position(|e| e == w))
        .collect::<Option<_>>()
        .unwrap_or_else(|| panic!("a weight outside the rollout: {weights:?}"));
    assert!(
        places.is_sorted() && places.first() == Some(&0) && places.last() == Some(&2),
        "the rule's weights: {weights:?}"
    );
    // ... and the page followed it without a reload.
    assert_eq!(seen["notReloaded"], true, "{seen:#}");
    assert_eq!(
        seen["weightsServing"],
        serde_json::json!([["web-2", 100]]),
        "{seen:#}"
    );
    assert_eq!(seen["stepServing"], "—", "no rollout: {seen:#}");
    assert!(
        seen["pointsServing"].as_u64() > seen["pointsPaused"].as_u64(),
        "{seen:#}"
    );
    assert_eq!(seen["listedPhase"], "Serving", "{seen:#}");
    // The group's tree and the ignitor's next fire.
    let tree: Vec<&str> = seen["groupTree"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(tree.contains(&"ambassador"), "{seen:#}");
    assert!(tree.contains(&"  productpage"), "{seen:#}");
    assert!(
        seen["nextFire"].as_str().is_some_and(|t| !t.is_empty()),
        "{seen:#}"
    );
    assert_eq!(seen["console"], serde_json::json!([]), "{seen:#}");
    for shot in ["cells.png", "cell-paused.png", "groups.png", "tasks.png"] {
        assert!(
            baton_tests::browser::output_dir().join(shot).exists(),
            "{shot}"
        );
    }
}
