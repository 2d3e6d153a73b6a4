//! The `cli` helm driver against real Helm (Helm 4 here; the driver reads `helm version`)
//! and the tests' real Kubernetes control plane: charts from a repository served over
//! loopback, releases whose objects and history the API server keeps as Helm writes them.

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
        let repo = ChartRepo::start(&env.dir.path().join("repo"), &helm).unwrap();
        for version in ["1.0.0", "1.1.0"] {
            repo.add_chart(
                "web",
                version,
                &[("configmap.yaml", CONFIG_MAP)],
                "color: grey\n",
            )
            .unwrap();
        }
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

    fn config_map(&self, name: &str) -> Option<ConfigMap> {
        let api: Api<ConfigMap> = Api::namespaced(self.kube.client.clone(), &self.kube.namespace);
        self.kube.block_on(api.get_opt(name)).unwrap()
    }

    /// Helm's record of release `web`: (revision, status) of each of its Secrets, in order.
    fn history(&self) -> Vec<(String, String)> {
        let api: Api<Secret> = Api::namespaced(self.kube.client.clone(), &self.kube.namespace);
        let list = self
            .kube
            .block_on(api.list(&ListParams::default().labels("owner=helm,name=web")))
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
