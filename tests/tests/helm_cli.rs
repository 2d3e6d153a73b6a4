//! The `cli` helm driver against real Helm (Helm 4 here; the driver reads `helm version`)
//! and the tests' real Kubernetes control plane: charts from a repository served over
//! loopback, releases whose objects and history the API server keeps as Helm writes them.

use std::path::Path;
use std::time::Duration;

use baton_schemas::status::{RunStatus, State};
use baton_tests::Env;
use baton_tests::chart_repo::ChartRepo;
use baton_tests::kube::{KubeEnv, real};
use baton_tests::workflow;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams};

/// A chart's one object: ConfigMap `<release>-config`, with a key named by the value
/// `extraKey` when there is one.
const CONFIG_MAP: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
data:
  color: {{ .Values.color | quote }}
  chart: {{ .Chart.Version | quote }}
  {{- with .Values.extraKey }}
  {{ . }}: "x"
  {{- end }}
"#;

/// A chart's record of the values it was given: ConfigMap `<release>-rendered`, as JSON.
const VALUES: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-rendered
data:
  values.json: {{ .Values | toJson | quote }}
"#;

/// The cart subchart's object, named the same whichever release renders it.
const CART_ITEMS: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: cart-items
data:
  color: {{ .Values.color | default "none" | quote }}
  release: {{ .Release.Name | quote }}
"#;

/// A pod that runs but never reports Ready: the kubelet actor runs no probes, so a readiness
/// probe is never passed.
const NEVER_READY: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: {{ .Release.Name }}-pod
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    command: ["sleep", "600"]
    readinessProbe:
      exec: {command: ["false"]}
"#;

/// A child process killed when the test ends, even by a failed assertion.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct HelmEnv {
    env: Env,
    kube: KubeEnv,
    repo: ChartRepo,
}

impl HelmEnv {
    /// A planner and a `cli` helm worker running real Helm (its own cache and config under
    /// the test's folder) against the control plane, and a chart repository with `web`
    /// 1.0.0 and 1.1.0.
    fn new() -> HelmEnv {
        HelmEnv::with_repo(ChartRepo::start)
    }

    /// The same with a repository `serve` starts in a folder, with Helm.
    fn with_repo(serve: impl FnOnce(&Path, &Path) -> anyhow::Result<ChartRepo>) -> HelmEnv {
        let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).unwrap();
        let kube = KubeEnv::for_env(&mut env).unwrap();
        let helm = real::required("helm").unwrap();
        let home = env.dir.path().join("helm-home");
        for (variable, folder) in [
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
        ] {
            env.extra_env
                .push((variable.into(), home.join(folder).display().to_string()));
        }
        let repo = serve(&env.dir.path().join("repo"), &helm).unwrap();
        for chart in ["web", "db", "api", "cache"] {
            for version in ["1.0.0", "1.1.0"] {
                let templates = [("configmap.yaml", CONFIG_MAP), ("values.yaml", VALUES)];
                repo.add_chart(chart, version, &templates, "color: grey\n")
                    .unwrap();
            }
        }
        // An umbrella chart: shop, whose subchart cart owns ConfigMap `cart-items` whichever
        // release renders it, so that two releases rendering it collide as Helm refuses.
        let cart = [("items.yaml", CART_ITEMS)];
        repo.add_umbrella(
            "shop",
            "1.0.0",
            &[("configmap.yaml", CONFIG_MAP)],
            "color: grey\n",
            &[("cart", &cart)],
        )
        .unwrap();
        // slow 1.1.0 adds a pod that never reports Ready (the kubelet actor sets no
        // conditions), so that Helm waits on it until it is killed.
        repo.add_chart(
            "slow",
            "1.0.0",
            &[("configmap.yaml", CONFIG_MAP)],
            "color: grey\n",
        )
        .unwrap();
        let slow = [("configmap.yaml", CONFIG_MAP), ("pod.yaml", NEVER_READY)];
        repo.add_chart("slow", "1.1.0", &slow, "color: grey\n")
            .unwrap();
        let planner = env.start_planner().unwrap();
        env.keep(planner);
        let binary = helm.display().to_string();
        let worker = env
            .start_worker(
                "worker",
                "helm",
                &["--helm-driver", "cli", "--helm-binary", &binary],
            )
            .unwrap();
        env.keep(worker);
        HelmEnv { env, kube, repo }
    }

    /// Runs a one-node workflow `name` with `helm` settings to its end.
    fn run(&self, name: &str, helm: &str) -> RunStatus {
        let node = format!("{{name: web, kind: helm, helm: {helm}}}");
        let file = self
            .env
            .write(&format!("{name}.yaml"), &workflow(name, &[node]));
        let run = self.env.apply(&file).unwrap();
        self.env.wait_end(&run, Duration::from_secs(120)).unwrap()
    }

    fn apply(&self, name: &str, version: &str, values: &str) -> RunStatus {
        self.run(
            name,
            &format!(
                "{{release: web, namespace: {}, timeout: 60s, chart: {{url: '{}', name: web, version: '{version}'}}, values: {values}}}",
                self.kube.namespace, self.repo.url
            ),
        )
    }

    /// Applies group document `text` with the CLI and waits until it settles: the exit code
    /// and the group's status (or the CLI's error output).
    fn apply_group(&self, file: &str, text: &str) -> (Option<i32>, serde_json::Value) {
        let file = self.env.write(file, text);
        let out = self.env.cli(&[
            "apply",
            "-f",
            file.to_str().unwrap(),
            "--wait",
            "-o",
            "json",
        ]);
        let status = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&out.stderr).into_owned())
        });
        (out.status.code(), status)
    }

    fn config_map(&self, name: &str) -> Option<ConfigMap> {
        let api: Api<ConfigMap> = Api::namespaced(self.kube.client.clone(), &self.kube.namespace);
        self.kube.block_on(api.get_opt(name)).unwrap()
    }

    /// Helm's record of release `web`: (revision, status) of each of its Secrets, in order.
    fn history(&self) -> Vec<(String, String)> {
        self.history_of("web")
    }

    /// Helm's record of `release`: (revision, status) of each of its Secrets, in order.
    fn history_of(&self, release: &str) -> Vec<(String, String)> {
        let api: Api<Secret> = Api::namespaced(self.kube.client.clone(), &self.kube.namespace);
        let selector = format!("owner=helm,name={release}");
        let list = self
            .kube
            .block_on(api.list(&ListParams::default().labels(&selector)))
            .unwrap();
        let mut history: Vec<(String, String)> = list
            .items
            .iter()
            .map(|s| {
                let labels = s.metadata.labels.clone().unwrap_or_default();
                (labels["version"].clone(), labels["status"].clone())
            })
            .collect();
        history.sort_by_key(|(v, _)| v.parse::<u32>().unwrap_or(0));
        history
    }
}

fn color(map: &ConfigMap) -> (&str, &str) {
    let data = map.data.as_ref().unwrap();
    (data["color"].as_str(), data["chart"].as_str())
}

#[test]
fn real_helm_installs_upgrades_refuses_and_uninstalls_a_release() {
    let world = HelmEnv::new();
    let installed = world.apply("install", "1.0.0", "{color: red}");
    assert_eq!(installed.state, State::Succeeded, "{installed:#?}");
    let map = world
        .config_map("web-config")
        .expect("the chart's ConfigMap");
    assert_eq!(color(&map), ("red", "1.0.0"));
    assert_eq!(world.history(), [("1".into(), "deployed".into())]);

    let upgraded = world.apply("upgrade", "1.1.0", "{color: blue}");
    assert_eq!(upgraded.state, State::Succeeded, "{upgraded:#?}");
    let map = world.config_map("web-config").unwrap();
    assert_eq!(color(&map), ("blue", "1.1.0"));
    assert_eq!(
        world.history(),
        [
            ("1".into(), "superseded".into()),
            ("2".into(), "deployed".into())
        ]
    );

    // The API server refuses the object (no ConfigMap key may hold a space): Helm records a
    // failed revision, and the node fails with what the API server said.
    let refused = world.apply("refused", "1.1.0", "{color: green, extraKey: 'bad key'}");
    assert_eq!(refused.state, State::Failed, "{refused:#?}");
    let error = refused.nodes[0].error.clone().unwrap_or_default();
    assert!(error.contains("bad key"), "{error}");
    assert_eq!(
        world.history().last().unwrap(),
        &("3".into(), "failed".into())
    );
    assert_eq!(
        color(&world.config_map("web-config").unwrap()),
        ("blue", "1.1.0")
    );

    let removed = world.run(
        "uninstall",
        &format!(
            "{{action: uninstall, release: web, namespace: {}}}",
            world.kube.namespace
        ),
    );
    assert_eq!(removed.state, State::Succeeded, "{removed:#?}");
    assert!(world.config_map("web-config").is_none());
    assert!(world.history().is_empty(), "{:?}", world.history());
}

/// Application group `g` in Orkestra's format: `(name, dependencies, version, values)`.
fn group(world: &HelmEnv, apps: &[(&str, &str, &str, &str)]) -> String {
    let mut text = String::from(
        "apiVersion: orkestra.azure.microsoft.com/v1alpha1\nkind: ApplicationGroup\nmetadata: {name: g}\nspec:\n  applications:\n",
    );
    for (name, deps, version, values) in apps {
        text.push_str(&format!(
            "  - name: {name}\n    dependencies: [{deps}]\n    spec:\n      chart: {{url: '{}', name: {name}, version: '{version}'}}\n      release: {{targetNamespace: {}, timeout: 60s, values: {{{values}}}}}\n",
            world.repo.url, world.kube.namespace
        ));
    }
    text
}

#[test]
fn real_helm_rolls_a_failed_group_back_to_its_last_successful_spec_and_deletes_it() {
    let world = HelmEnv::new();
    let first = group(
        &world,
        &[
            ("db", "", "1.0.0", "color: red"),
            ("api", "db", "1.0.0", "color: red"),
        ],
    );
    let (code, status) = world.apply_group("v1.yaml", &first);
    assert_eq!(code, Some(0), "{status:#}");

    // api upgraded, cache and web added; the API server refuses web's object.
    let second = group(
        &world,
        &[
            ("db", "", "1.0.0", "color: red"),
            ("api", "db", "1.1.0", "color: blue"),
            ("cache", "db", "1.0.0", "color: blue"),
            ("web", "api, cache", "1.0.0", "extraKey: 'bad key'"),
        ],
    );
    let (code, status) = world.apply_group("v2.yaml", &second);
    assert_eq!(code, Some(1), "{status:#}");
    assert_eq!(status["phase"], "Failed", "{status:#}");
    assert_eq!(status["remediation"], "rolledBack", "{status:#}");
    // What was added is gone, and api is back at its last successful spec.
    for release in ["web", "cache"] {
        assert!(
            world.history_of(release).is_empty(),
            "{release}: {:?}",
            world.history_of(release)
        );
        assert!(
            world.config_map(&format!("{release}-config")).is_none(),
            "{release}"
        );
    }
    assert_eq!(
        color(&world.config_map("api-config").unwrap()),
        ("red", "1.0.0")
    );
    let api = world.history_of("api");
    assert_eq!(api.last().unwrap().1, "deployed", "{api:?}");
    assert!(api.len() >= 3, "installed, upgraded, then back: {api:?}");

    let out = world.env.cli(&["delete", "group", "g", "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for release in ["db", "api"] {
        assert!(world.history_of(release).is_empty(), "{release} left");
        assert!(
            world.config_map(&format!("{release}-config")).is_none(),
            "{release}"
        );
    }
}

#[test]
fn real_helm_reads_a_private_repository_and_values_from_the_cluster() {
    let world =
        HelmEnv::with_repo(|dir, helm| ChartRepo::start_private(dir, helm, "robot", "hunter2"));
    let ns = &world.kube.namespace;
    // The repository refuses anyone without robot's password.
    let index = format!("{}/index.yaml", world.repo.url);
    let anonymous = world
        .kube
        .block_on(async { reqwest::get(&index).await.map(|r| r.status().as_u16()) })
        .unwrap();
    assert_eq!(anonymous, 401);
    let objects = [
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-values"},
               "data": {"values.yaml": "image: {tag: from-map, pull: Always}\nreplicas: 1\n"}}),
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "web-secret"},
               "stringData": {"password": "s3cret"}}),
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "repo-creds"},
               "stringData": {"username": "robot", "password": "hunter2"}}),
    ];
    let params = kube::api::PatchParams::apply("baton-tests");
    for object in objects {
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        let result = if object["kind"] == "Secret" {
            let api: Api<Secret> = Api::namespaced(world.kube.client.clone(), ns);
            world
                .kube
                .block_on(api.patch(&name, &params, &kube::api::Patch::Apply(&object)))
                .map(drop)
        } else {
            let api: Api<ConfigMap> = Api::namespaced(world.kube.client.clone(), ns);
            world
                .kube
                .block_on(api.patch(&name, &params, &kube::api::Patch::Apply(&object)))
                .map(drop)
        };
        result.unwrap();
    }
    let text = format!(
        "apiVersion: baton.dev/v1alpha1\nkind: ApplicationGroup\nmetadata: {{name: g}}\nspec:\n  applications:\n  - name: web\n    spec:\n      chart: {{url: '{}', name: web, version: 1.0.0, authSecretRef: {{name: repo-creds, namespace: {ns}}}}}\n      release:\n        targetNamespace: {ns}\n        values: {{replicas: 2, image: {{tag: inline}}, color: red}}\n        valuesFrom:\n        - {{kind: ConfigMap, name: web-values}}\n        - {{kind: Secret, name: web-secret, valuesKey: password, targetPath: db.password}}\n        - {{kind: ConfigMap, name: missing, optional: true}}\n",
        world.repo.url
    );
    let (code, status) = world.apply_group("g.yaml", &text);
    assert_eq!(code, Some(0), "{status:#}");
    let rendered = world
        .config_map("web-rendered")
        .expect("the chart's record of its values");
    let values: serde_json::Value =
        serde_json::from_str(&rendered.data.unwrap()["values.json"]).unwrap();
    assert_eq!(
        values,
        serde_json::json!({"image": {"tag": "inline", "pull": "Always"}, "replicas": 2, "color": "red", "db": {"password": "s3cret"}})
    );
    // The repository's password reached Helm and nowhere else.
    for log in ["worker.log", "planner.log"] {
        let text = std::fs::read_to_string(world.env.dir.path().join(log)).unwrap();
        assert!(
            !text.contains("hunter2"),
            "{log} holds the repository password"
        );
    }
}

#[test]
fn real_helm_releases_a_subchart_split_out_of_its_umbrella_chart() {
    let world = HelmEnv::new();
    let ns = &world.kube.namespace;
    let text = format!(
        "apiVersion: baton.dev/v1alpha1\nkind: ApplicationGroup\nmetadata: {{name: g}}\nspec:\n  applications:\n  - name: shop\n    spec:\n      chart: {{url: '{}', name: shop, version: 1.0.0}}\n      subcharts: [{{name: cart}}]\n      release:\n        targetNamespace: {ns}\n        values: {{color: blue, cart: {{color: red}}}}\n",
        world.repo.url
    );
    let (code, status) = world.apply_group("g.yaml", &text);
    assert_eq!(code, Some(0), "{status:#}");
    // cart is its own release (taken out of the pulled umbrella chart, with its values), and
    // the umbrella's release left it out: had both rendered cart-items, Helm would have
    // refused the second.
    let cart_release = baton_schemas::group::subchart_release_name("shop", "cart");
    let items = world.config_map("cart-items").expect("cart's object");
    let data = items.data.unwrap();
    assert_eq!(data["color"], "red");
    assert_eq!(data["release"], cart_release);
    assert_eq!(
        color(&world.config_map("shop-config").unwrap()),
        ("blue", "1.0.0")
    );
    assert_eq!(
        world.history_of(&cart_release).last().unwrap().1,
        "deployed"
    );
    assert_eq!(world.history_of("shop").last().unwrap().1, "deployed");

    let out = world.env.cli(&["delete", "group", "g", "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(world.config_map("cart-items").is_none());
    assert!(world.history_of(&cart_release).is_empty());
    assert!(world.history_of("shop").is_empty());
}

#[test]
fn a_release_left_pending_by_a_killed_helm_is_rolled_back_then_upgraded() {
    let world = HelmEnv::new();
    let ns = world.kube.namespace.clone();
    let slow = |name: &str, version: &str, color: &str| {
        world.run(
            name,
            &format!(
                "{{release: slow, namespace: {ns}, timeout: 5s, chart: {{url: '{}', name: slow, version: '{version}'}}, values: {{color: {color}}}}}",
                world.repo.url
            ),
        )
    };
    let installed = slow("install", "1.0.0", "red");
    assert_eq!(installed.state, State::Succeeded, "{installed:#?}");

    // Someone's Helm upgrades to 1.1.0 and dies waiting for its pod: the release stays
    // pending-upgrade.
    let helm = real::required("helm").unwrap();
    let mut upgrade = std::process::Command::new(&helm);
    upgrade
        .args([
            "upgrade",
            "slow",
            "slow",
            "--repo",
            &world.repo.url,
            "--version",
            "1.1.0",
        ])
        .args(["--namespace", &ns, "--wait=watcher", "--timeout", "10m"])
        .envs(world.env.extra_env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut upgrade = KillOnDrop(upgrade.spawn().unwrap());
    let started = std::time::Instant::now();
    while world.history_of("slow").last().map(|(_, s)| s.as_str()) != Some("pending-upgrade") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{:?}",
            world.history_of("slow")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    upgrade.0.kill().unwrap();
    upgrade.0.wait().unwrap();

    // The next apply waits until the pending operation is older than its timeout allows
    // (5 s + 30 s), rolls it back to the last deployed revision, then upgrades.
    let applied = slow("after-kill", "1.0.0", "green");
    assert_eq!(applied.state, State::Succeeded, "{applied:#?}");
    // Revision 3 is the rollback to 1, revision 4 the upgrade. Helm leaves the killed
    // operation's record as it was; `helm status` reads the latest.
    let history: Vec<String> = world
        .history_of("slow")
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(
        history,
        ["superseded", "pending-upgrade", "superseded", "deployed"]
    );
    assert_eq!(
        color(&world.config_map("slow-config").unwrap()),
        ("green", "1.0.0")
    );
    let log = std::fs::read_to_string(world.env.dir.path().join("worker.log")).unwrap();
    assert!(
        log.contains("clearing it"),
        "the stale operation was cleared"
    );
    assert!(log.contains("\"rollback\""), "by a rollback");
}
