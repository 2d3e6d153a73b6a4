//! End-to-end: Cells rolled out by a real planner and worker, against a real ELBv2 emulator
//! (moto, with a load balancer, a listener and target groups made through its API) and a real
//! Prometheus. Weights are read back from the emulator as they change.

use std::time::{Duration, Instant};

use baton_schemas::status::{RunStatus, State};
use baton_tests::Env;
use baton_tests::aws::{Listener, Moto, Prometheus, WeightLog, target_group_name};

struct World {
    env: Env,
    moto: Moto,
    listener: Listener,
    planner: baton_tests::Proc,
}

/// Starts nats, moto with a listener, a planner discovering every second, and a worker for
/// traffic and analysis jobs (unless `worker` is false).
fn world(worker: bool) -> World {
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).expect("test env");
    let moto = Moto::start(env.dir.path()).expect("moto");
    let listener = moto.listener().expect("a listener");
    env.extra_env = moto.env();
    let planner = env.start_planner_with(&["--sync-period", "1s"]).unwrap();
    if worker {
        let worker = env
            .start_worker("worker", "noop,traffic,analysis", &[])
            .unwrap();
        env.keep(worker);
    }
    World {
        env,
        moto,
        listener,
        planner,
    }
}

/// Asserts that every weight list `log` saw is one of `expected`, in `expected`'s order, the
/// first and the last included.
fn assert_in_order(log: &WeightLog, expected: &[Vec<(String, u32)>]) {
    let last = expected.last().expect("an expected weight list");
    let seen = log.seen_through(last, Duration::from_secs(5));
    let mut at = 0;
    for s in &seen {
        let found = expected[at..].iter().position(|e| e == s);
        assert!(
            found.is_some(),
            "{s:?} seen out of order; expected {expected:?}; seen {seen:?}"
        );
        at += found.unwrap_or(0);
    }
    assert_eq!(seen.first(), expected.first(), "{seen:?}");
    assert_eq!(seen.last(), expected.last(), "{seen:?}");
}

fn named(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
    pairs.iter().map(|(n, w)| ((*n).to_owned(), *w)).collect()
}

impl World {
    fn apply(&self, name: &str, text: &str) {
        let file = self.env.write(name, text);
        let out = self.env.cli(&["apply", "-f", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Deletes a Cell (`deletionPolicy: Delete`) and waits, at most 30 s, until its listener
    /// rule at `priority` is gone.
    fn delete_cell_and_its_rule(&self, name: &str, priority: u32) {
        let out = self.env.cli(&["cell", "delete", name]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let started = Instant::now();
        while self.moto.rules_at(&self.listener.arn, priority).unwrap() > 0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the rule of cell {name} stayed"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn cell(&self, name: &str) -> serde_json::Value {
        let out = self.env.cli(&["cells", "-o", "json"]);
        let cells: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        cells
            .into_iter()
            .find(|c| c["name"] == name)
            .unwrap_or_default()
    }

    /// Waits until the Cell's status satisfies `done`.
    fn wait_cell(
        &self,
        name: &str,
        within: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let cell = self.cell(name);
            if done(&cell) {
                return cell;
            }
            assert!(
                started.elapsed() < within,
                "cell {name} not there after {within:?}: {cell}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the rule at `priority` has `weights` (by target group name).
    fn wait_weights(&self, priority: u32, weights: &[(&str, u32)], within: Duration) {
        let wanted = named(weights);
        let started = Instant::now();
        loop {
            let shown = self.moto.weights(&self.listener.arn, priority).unwrap();
            if shown.as_ref() == Some(&wanted) {
                return;
            }
            assert!(
                started.elapsed() < within,
                "rule {priority}: {shown:?}, not {wanted:?} after {within:?}; cell: {}",
                self.cell("web")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Returns the runs of a Cell, oldest first.
    fn runs(&self, cell: &str) -> Vec<RunStatus> {
        let out = self.env.cli(&["runs", "-o", "json"]);
        let runs: Vec<RunStatus> = serde_json::from_slice(&out.stdout).unwrap();
        runs.into_iter().filter(|r| r.workflow == cell).collect()
    }

    /// Returns, for each traffic node of the Cell's last run in order, its name and the
    /// weights it read back from the emulator after its write (by target group name).
    fn read_back(&self, cell: &str) -> Vec<(String, Vec<(String, u32)>)> {
        let run = self.runs(cell).pop().expect("a run");
        run.nodes
            .iter()
            .filter_map(|n| {
                let output: serde_json::Value = serde_json::from_str(n.output.as_deref()?).ok()?;
                let mut weights: Vec<(String, u32)> = output["targetGroups"]
                    .as_array()?
                    .iter()
                    .map(|g| {
                        let arn = g["arn"].as_str().unwrap_or_default();
                        (
                            target_group_name(arn),
                            g["weight"].as_u64().unwrap_or(0) as u32,
                        )
                    })
                    .collect();
                weights.sort();
                Some((n.name.clone(), weights))
            })
            .collect()
    }

    fn target_group(&self, name: &str, tags: &[(&str, &str)]) -> String {
        self.moto
            .target_group(&self.listener.vpc_id, name, tags)
            .unwrap()
    }
}

const BATON_CELL: &str = r#"apiVersion: baton.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: success-rate}
spec:
  args: [{name: version}]
  metrics:
    - name: success-rate
      count: 2
      interval: 1s
      successCondition: result[0] >= 0.95
      provider:
        prometheus:
          address: PROMETHEUS
          query: app_success_ratio{version="{{args.version}}"}
---
apiVersion: baton.dev/v1alpha1
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
        - setWeight: 20
        - analysis:
            templates: [{templateName: success-rate}]
            args: [{name: version, valueFrom: {fieldRef: {fieldPath: status.desiredVersion}}}]
        - pause: {}
        - setWeight: 40
"#;

/// Returns `examples/cells/<file>` as committed, its placeholder listener replaced by
/// `listener` (the emulator's).
fn example(file: &str, listener: &str) -> String {
    let path = format!("{}/../examples/cells/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .replace(
            "arn:aws:elasticloadbalancing:ap-northeast-1:ACCOUNT:listener/app/...",
            listener,
        )
}

#[test]
fn a_baton_cell_goes_20_analysis_pause_40_100_and_an_unchanged_spec_writes_nothing() {
    let mut w = world(true);
    let dir = w.env.dir.path().join("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    let prometheus =
        Prometheus::start(&dir, "app_success_ratio{version=\"2.0.0\"} 0.99\n").unwrap();
    prometheus
        .wait_for(
            "app_success_ratio{version=\"2.0.0\"}",
            Duration::from_secs(30),
            |v| v > 0.9,
        )
        .unwrap();
    let text = BATON_CELL
        .replace("LISTENER", &w.listener.arn)
        .replace("PROMETHEUS", &prometheus.url);
    w.target_group("web-1", &[("app", "web"), ("baton.dev/version", "1.0.0")]);
    w.apply("cell.yaml", &text);
    // The first version gets everything at once.
    w.wait_weights(10, &[("web-1", 100)], Duration::from_secs(30));
    let log = WeightLog::start(&w.moto, &w.listener.arn, 10);
    // `baton cells web --watch`, its output in a file (its log): a line per change.
    let watched = w.env.dir.path().join("cells-watch.log");
    let mut watch = w.env.baton();
    watch.args(["cells", "web", "--watch"]);
    let watch = w.env.spawn("cells-watch", watch).unwrap();
    w.env.keep(watch);

    // A new version tagged on a target group starts a rollout by itself.
    w.target_group("web-2", &[("app", "web"), ("baton.dev/version", "2.0.0")]);
    let paused = w.wait_cell("web", Duration::from_secs(60), |c| {
        c["phase"] == "Paused" && c["step"] == 2
    });
    assert_eq!(paused["desiredVersion"], "2.0.0");
    assert_eq!(paused["servingVersion"], "1.0.0");
    let run = w.runs("web").pop().unwrap();
    let states: Vec<(&str, State)> = run
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.state))
        .collect();
    assert_eq!(
        states,
        [
            ("s0-weight-20", State::Succeeded),
            ("s1-analysis", State::Succeeded),
            ("s2-pause", State::Running)
        ]
    );
    let analysis = run.nodes[1].output.as_deref().unwrap();
    assert!(analysis.contains("\"phase\":\"Successful\""), "{analysis}");
    // The pause waits for a person; the weights stay at 20%.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        w.moto.weights(&w.listener.arn, 10).unwrap().unwrap(),
        named(&[("web-1", 80), ("web-2", 20)])
    );
    // The watch saw the rollout move to its pause, with the weights per version.
    let started = std::time::Instant::now();
    let paused_line = |text: &str| {
        text.lines()
            .any(|l| l.contains("Paused") && l.contains("weights 1.0.0=80,2.0.0=20"))
    };
    while !paused_line(&std::fs::read_to_string(&watched).unwrap_or_default()) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the watch's lines: {}",
            std::fs::read_to_string(&watched).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = std::fs::read_to_string(&watched).unwrap();
    assert!(seen.lines().any(|l| l.contains("Progressing")), "{seen}");
    // The planner's metrics say the same: weights per version, the phase, and the ELBv2
    // calls its discovery made.
    let within = Duration::from_secs(30);
    for (series, want) in [
        (r#"baton_cell_weight{cell="web",version="1.0.0"}"#, 80.0),
        (r#"baton_cell_weight{cell="web",version="2.0.0"}"#, 20.0),
        (r#"baton_cell_phase{cell="web",phase="Paused"}"#, 1.0),
        (r#"baton_cell_phase{cell="web",phase="Progressing"}"#, 0.0),
    ] {
        w.env.wait_metric(series, within, |v| v == want).unwrap();
    }
    w.env
        .wait_metric(
            r#"baton_elbv2_calls_total{operation="DescribeTargetGroups",outcome="ok"}"#,
            within,
            |v| v >= 1.0,
        )
        .unwrap();
    // A planner killed during the pause comes back with the rollout where it was.
    w.planner.kill9();
    w.planner = w.env.start_planner_with(&["--sync-period", "1s"]).unwrap();
    let again = w.wait_cell("web", Duration::from_secs(30), |c| c["phase"] == "Paused");
    assert_eq!(
        (&again["step"], &again["run"]),
        (&paused["step"], &paused["run"])
    );
    let out = w.env.cli(&["cell", "resume", "web"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.wait_weights(10, &[("web-2", 100)], Duration::from_secs(30));
    let serving = w.wait_cell("web", Duration::from_secs(10), |c| c["phase"] == "Serving");
    assert_eq!(serving["servingVersion"], "2.0.0");
    // Each step's weights as read back from the emulator after its write: baton.dev weights
    // are absolute, 20 then 40.
    let steps = [
        ("s0-weight-20", named(&[("web-1", 80), ("web-2", 20)])),
        ("s3-weight-40", named(&[("web-1", 60), ("web-2", 40)])),
        ("promote", named(&[("web-2", 100)])),
    ];
    let expected: Vec<(String, Vec<(String, u32)>)> = steps
        .iter()
        .map(|(n, w)| ((*n).to_owned(), w.clone()))
        .collect();
    assert_eq!(w.read_back("web"), expected);
    // What a reader polling the emulator saw, in the same order (a short step may pass
    // between two polls).
    let mut all = vec![named(&[("web-1", 100)])];
    all.extend(steps.iter().map(|(_, w)| w.clone()));
    assert_in_order(&log, &all);

    // The same spec applied again, and several discoveries later: no write to the rule.
    let mark = w.moto.mark();
    w.apply("cell.yaml", &text);
    let discoveries = |actions: &[String]| {
        actions
            .iter()
            .filter(|a| *a == "DescribeTargetGroups")
            .count()
    };
    let started = Instant::now();
    let actions = loop {
        let actions = w.moto.actions_since(mark);
        if discoveries(&actions) >= 3 {
            break actions;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "discovery went on: {actions:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let writes: Vec<&String> = actions
        .iter()
        .filter(|a| matches!(a.as_str(), "CreateRule" | "ModifyRule" | "DeleteRule"))
        .collect();
    assert!(writes.is_empty(), "an unchanged cell wrote {writes:?}");
}

#[test]
fn okras_readme_cell_accumulates_weights_and_a_failing_analysis_rolls_back_and_blocks() {
    let w = world(true);
    let dir = w.env.dir.path().join("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    let prometheus =
        Prometheus::start(&dir, "app_success_ratio{service=\"exampleapp\"} 0.99\n").unwrap();
    let query = "app_success_ratio{service=\"exampleapp\"}";
    prometheus
        .wait_for(query, Duration::from_secs(30), |v| v > 0.9)
        .unwrap();
    // The template as Argo Rollouts users have it (okra ran Argo's AnalysisRuns).
    let template = format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {{name: success-rate}}
spec:
  args: [{{name: service-name}}]
  metrics:
    - name: success-rate
      count: "1"
      successCondition: result[0] >= 0.95
      provider:
        prometheus: {{address: "{}", query: 'app_success_ratio{{service="{{{{args.service-name}}}}"}}'}}
"#,
        prometheus.url
    );
    w.apply("template.yaml", &template);
    // okra's README Cell, as committed in examples/, pointed at the emulator's listener.
    let readme = example("okra-readme.yaml", &w.listener.arn);
    let okra = |v: &'static str| [("role", "web"), ("okra.mumo.co/version", v)];
    w.target_group("web-a1", &okra("1.0.0"));
    w.target_group("web-a2", &okra("1.0.0"));
    w.apply("cell.yaml", &readme);
    w.wait_weights(
        10,
        &[("web-a1", 50), ("web-a2", 50)],
        Duration::from_secs(30),
    );
    let log = WeightLog::start(&w.moto, &w.listener.arn, 10);

    // replicas: 2, so one target group of 2.0.0 is not enough.
    w.target_group("web-b1", &okra("2.0.0"));
    let waiting = w.wait_cell("cell1", Duration::from_secs(10), |c| {
        c["message"]
            .as_str()
            .is_some_and(|m| m.contains("2.0.0 has 1 of 2"))
    });
    assert_eq!(waiting["phase"], "Serving");
    w.target_group("web-b2", &okra("2.0.0"));
    w.wait_weights(
        10,
        &[("web-b1", 50), ("web-b2", 50)],
        Duration::from_secs(60),
    );
    // okra.mumo.co weights accumulate: 20, then 20 + 40, read back after each write.
    let steps = [
        (
            "s0-weight-20",
            named(&[
                ("web-a1", 40),
                ("web-a2", 40),
                ("web-b1", 10),
                ("web-b2", 10),
            ]),
        ),
        (
            "s3-weight-60",
            named(&[
                ("web-a1", 20),
                ("web-a2", 20),
                ("web-b1", 30),
                ("web-b2", 30),
            ]),
        ),
        ("promote", named(&[("web-b1", 50), ("web-b2", 50)])),
    ];
    let expected: Vec<(String, Vec<(String, u32)>)> = steps
        .iter()
        .map(|(n, w)| ((*n).to_owned(), w.clone()))
        .collect();
    assert_eq!(w.read_back("cell1"), expected);
    let mut all = vec![named(&[("web-a1", 50), ("web-a2", 50)])];
    all.extend(steps.iter().map(|(_, w)| w.clone()));
    assert_in_order(&log, &all);
    let run = w.runs("cell1").pop().unwrap();
    let pause = run.nodes.iter().find(|n| n.name == "s2-pause").unwrap();
    assert_eq!(pause.output.as_deref(), Some("paused 5s"));

    // 3.0.0 answers badly: its analysis fails, 2.0.0 gets everything back, 3.0.0 is blocked.
    prometheus.set("app_success_ratio{service=\"exampleapp\"} 0.5\n");
    prometheus
        .wait_for(query, Duration::from_secs(30), |v| v < 0.9)
        .unwrap();
    w.target_group("web-c1", &okra("3.0.0"));
    w.target_group("web-c2", &okra("3.0.0"));
    let degraded = w.wait_cell("cell1", Duration::from_secs(60), |c| {
        c["phase"] == "Degraded"
    });
    assert_eq!(degraded["servingVersion"], "2.0.0");
    assert_eq!(degraded["blocked"][0]["version"], "3.0.0");
    let cause = degraded["blocked"][0]["cause"].as_str().unwrap();
    assert!(cause.contains("analysis failed"), "{cause}");
    w.wait_weights(
        10,
        &[("web-b1", 50), ("web-b2", 50)],
        Duration::from_secs(10),
    );
    assert_eq!(
        w.read_back("cell1"),
        [
            (
                "s0-weight-20".to_owned(),
                named(&[
                    ("web-b1", 40),
                    ("web-b2", 40),
                    ("web-c1", 10),
                    ("web-c2", 10)
                ])
            ),
            (
                "rollback".to_owned(),
                named(&[("web-b1", 50), ("web-b2", 50)])
            ),
        ]
    );
    // Later discoveries leave the blocked version alone.
    let mark = w.moto.mark();
    std::thread::sleep(Duration::from_secs(3));
    assert!(!w.moto.actions_since(mark).iter().any(|a| a == "ModifyRule"));
    let cell = w.cell("cell1");
    assert!(
        cell["message"]
            .as_str()
            .is_some_and(|m| m.contains("3.0.0 is blocked")),
        "{cell}"
    );
}

#[test]
fn three_target_groups_split_33_33_34_abort_by_trigger_promote_by_cli_and_delete() {
    let w = world(true);
    let text = format!(
        r#"apiVersion: baton.dev/v1alpha1
kind: Cell
metadata: {{name: web}}
spec:
  replicas: 3
  deletionPolicy: Delete
  ingress:
    awsApplicationLoadBalancer:
      listenerARN: {}
      listener: {{rule: {{priority: 7, pathPatterns: ["/api/*"], methods: [get]}}}}
      targetGroupSelector: {{matchLabels: {{app: web}}}}
"#,
        w.listener.arn
    );
    for name in ["web-1", "web-2", "web-3"] {
        w.target_group(name, &[("app", "web"), ("baton.dev/version", "1.0.0")]);
    }
    w.apply("cell.yaml", &text);
    w.wait_weights(
        7,
        &[("web-1", 33), ("web-2", 33), ("web-3", 34)],
        Duration::from_secs(30),
    );

    // A second Cell on the same listener: its rollout waits in a pause, is aborted by a
    // message on its trigger subject, then promoted with the CLI.
    let api = format!(
        r#"apiVersion: baton.dev/v1alpha1
kind: Cell
metadata: {{name: api}}
spec:
  ingress:
    awsApplicationLoadBalancer:
      listenerARN: {}
      listener: {{rule: {{priority: 20, hosts: [api.example.com]}}}}
      targetGroupSelector: {{matchLabels: {{app: api}}}}
  updateStrategy: {{canary: {{steps: [{{setWeight: 50}}, {{pause: {{}}}}]}}}}
"#,
        w.listener.arn
    );
    w.target_group("api-1", &[("app", "api"), ("baton.dev/version", "1.0.0")]);
    w.apply("api.yaml", &api);
    w.wait_weights(20, &[("api-1", 100)], Duration::from_secs(30));
    w.target_group("api-2", &[("app", "api"), ("baton.dev/version", "2.0.0")]);
    w.wait_cell("api", Duration::from_secs(30), |c| c["phase"] == "Paused");
    assert_eq!(
        w.moto.weights(&w.listener.arn, 20).unwrap(),
        Some(named(&[("api-1", 50), ("api-2", 50)]))
    );
    let subject = format!("{}.triggers.cells.api", w.env.prefix);
    w.moto.block_on(async {
        let client = async_nats::connect(w.env.nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.publish(subject, "abort".into())
            .await
            .unwrap()
            .await
            .unwrap();
    });
    let degraded = w.wait_cell("api", Duration::from_secs(30), |c| c["phase"] == "Degraded");
    assert_eq!(degraded["blocked"][0]["version"], "2.0.0");
    assert_eq!(degraded["blocked"][0]["cause"], "aborted by a person");
    w.wait_weights(20, &[("api-1", 100)], Duration::from_secs(10));
    let out = w.env.cli(&["cell", "promote", "api"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.wait_weights(20, &[("api-2", 100)], Duration::from_secs(30));
    let serving = w.wait_cell("api", Duration::from_secs(10), |c| c["phase"] == "Serving");
    assert_eq!(
        serving["blocked"],
        serde_json::json!([]),
        "promote unblocked it"
    );
    // Nothing to resume now: the CLI says so and exits 1.
    let out = w.env.cli(&["cell", "resume", "api"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("has no rollout under way to resume"),
        "{stderr}"
    );

    // Deleting a Cell with deletionPolicy Delete removes its rule; the other Cell's stays.
    w.delete_cell_and_its_rule("web", 7);
    assert_eq!(w.moto.rules_at(&w.listener.arn, 20).unwrap(), 1);
}

#[test]
fn cells_applied_as_kubernetes_objects_run_and_show_their_status() {
    use baton_tests::kube::KubeEnv;
    use kube::api::{DynamicObject, PostParams};
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).expect("test env");
    let moto = Moto::start(env.dir.path()).unwrap();
    let listener = moto.listener().unwrap();
    env.extra_env.extend(moto.env());
    let kube = KubeEnv::for_env(&mut env).unwrap();
    kube.install_crds().unwrap();
    let planner = env
        .start_planner_with(&[
            "--watch-kubernetes",
            "--watch-namespace",
            &kube.namespace,
            "--sync-period",
            "1s",
        ])
        .unwrap();
    env.keep(planner);
    let worker = env.start_worker("worker", "traffic", &[]).unwrap();
    env.keep(worker);
    for name in ["web-a1", "web-a2"] {
        moto.target_group(
            &listener.vpc_id,
            name,
            &[("role", "web"), ("okra.mumo.co/version", "1.0.0")],
        )
        .unwrap();
    }
    // okra's README Cell as `kubectl apply` sends it, with the emulator's listener.
    let readme = example("okra-readme.yaml", &listener.arn);
    let value: serde_json::Value = serde_norway::from_str(&readme).unwrap();
    let cells = kube.kind_api("okra.mumo.co", "Cell");
    let object: DynamicObject = serde_json::from_value(value).unwrap();
    kube.block_on(cells.create(&PostParams::default(), &object))
        .unwrap();
    let status = kube.wait_status(&cells, "cell1", Duration::from_secs(60), |s| {
        s["phase"] == "Serving"
    });
    assert_eq!(status["servingVersion"], "1.0.0");
    let weights: Vec<u64> = status["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["weight"].as_u64().unwrap())
        .collect();
    assert_eq!(weights, [50, 50]);
    assert!(status["lastSyncTime"].is_string(), "{status:#}");
    assert_eq!(
        moto.weights(&listener.arn, 10).unwrap(),
        Some(named(&[("web-a1", 50), ("web-a2", 50)]))
    );
}

#[test]
fn a_traffic_job_redelivered_after_its_worker_is_killed_leaves_the_rule_right() {
    let mut w = world(false);
    let mut first = {
        let mut command = w.env.baton();
        command
            .args(["worker", "--kinds", "traffic"])
            .env("BATON_FAILPOINTS", "traffic-after-write");
        w.env.spawn("worker-1", command).unwrap()
    };
    w.target_group("web-1", &[("app", "web"), ("baton.dev/version", "1.0.0")]);
    let text = format!(
        "apiVersion: baton.dev/v1alpha1\nkind: Cell\nmetadata: {{name: web}}\nspec:\n  ingress:\n    awsApplicationLoadBalancer:\n      listenerARN: {}\n      listener: {{rule: {{priority: 10, hosts: [example.com]}}}}\n      targetGroupSelector: {{matchLabels: {{app: web}}}}\n",
        w.listener.arn
    );
    w.apply("cell.yaml", &text);
    // The first delivery writes the rule, then stops before it reports: killed there.
    first
        .wait_log("failpoint reached", Duration::from_secs(60))
        .unwrap();
    assert_eq!(
        w.moto.weights(&w.listener.arn, 10).unwrap(),
        Some(named(&[("web-1", 100)]))
    );
    first.kill9();
    let second = w.env.start_worker("worker-2", "traffic", &[]).unwrap();
    w.env.keep(second);
    // The job comes back after its ack wait; the second worker adopts the rule.
    let serving = w.wait_cell("web", Duration::from_secs(60), |c| c["phase"] == "Serving");
    assert_eq!(serving["servingVersion"], "1.0.0");
    let run = w.runs("web").pop().unwrap();
    let switch = &run.nodes[0];
    assert_eq!(
        (switch.state, switch.attempts),
        (State::Succeeded, 1),
        "{switch:?}"
    );
    let output = switch.output.as_deref().unwrap();
    assert!(
        output.contains("\"write\":\"unchanged\""),
        "adopted, not rewritten: {output}"
    );
    assert_eq!(w.moto.rules_at(&w.listener.arn, 10).unwrap(), 1);
    assert_eq!(
        w.moto.weights(&w.listener.arn, 10).unwrap(),
        Some(named(&[("web-1", 100)]))
    );
}

/// The `baton.dev` example as committed (`examples/cells/baton-cell.yaml` with
/// `success-rate.yaml`), pointed at the emulator and a Prometheus scraping job `exampleapp`:
/// 20%, an analysis that passes, a pause resumed by a named trigger message, 50%, 100%; a
/// command naming another step is refused, so is a cancel of the rollout; deleting the Cell
/// removes its rule.
#[test]
fn the_baton_example_cell_runs_against_the_emulator() {
    let w = world(true);
    let dir = w.env.dir.path().join("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    let prometheus = Prometheus::start(&dir, "app_up 1\n").unwrap();
    prometheus
        .wait_for(
            "sum(up{job=\"exampleapp\"})",
            Duration::from_secs(30),
            |v| v >= 1.0,
        )
        .unwrap();
    let template =
        example("success-rate.yaml", "").replace("http://127.0.0.1:9090", &prometheus.url);
    w.apply("template.yaml", &template);
    let cell = example("baton-cell.yaml", &w.listener.arn);
    let tags = |v: &'static str| [("role", "web"), ("baton.dev/version", v)];
    w.target_group("web-a1", &tags("1.0.0"));
    w.target_group("web-a2", &tags("1.0.0"));
    w.apply("cell.yaml", &cell);
    w.wait_weights(
        20,
        &[("web-a1", 50), ("web-a2", 50)],
        Duration::from_secs(30),
    );
    w.target_group("web-b1", &tags("2.0.0"));
    w.target_group("web-b2", &tags("2.0.0"));
    let paused = w.wait_cell("web", Duration::from_secs(60), |c| {
        c["phase"] == "Paused" && c["step"] == 2
    });
    assert_eq!(
        w.moto.weights(&w.listener.arn, 20).unwrap().unwrap(),
        named(&[
            ("web-a1", 40),
            ("web-a2", 40),
            ("web-b1", 10),
            ("web-b2", 10)
        ])
    );
    let run = paused["run"].as_str().unwrap().to_owned();

    // A command meant for another step is refused; a rollout is aborted, not cancelled.
    let out = w.env.cli(&["cell", "resume", "web", "--step", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is at step 2, not at step 0"), "{stderr}");
    let out = w.env.cli(&["cancel", &run]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("baton cell abort web"), "{stderr}");

    // Resumed by a trigger message that names the run and the step it means.
    let subject = format!("{}.triggers.cells.web", w.env.prefix);
    let body = format!(r#"{{"v": 1, "command": "resume", "run": "{run}", "step": 2}}"#);
    w.moto.block_on(async {
        let client = async_nats::connect(w.env.nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.publish(subject, body.into())
            .await
            .unwrap()
            .await
            .unwrap();
    });
    w.wait_weights(
        20,
        &[("web-b1", 50), ("web-b2", 50)],
        Duration::from_secs(30),
    );
    let serving = w.wait_cell("web", Duration::from_secs(10), |c| c["phase"] == "Serving");
    assert_eq!(serving["servingVersion"], "2.0.0");
    let steps: Vec<String> = w.read_back("web").into_iter().map(|(n, _)| n).collect();
    assert_eq!(steps, ["s0-weight-20", "s3-weight-50", "promote"]);

    // deletionPolicy: Delete.
    w.delete_cell_and_its_rule("web", 20);
}
