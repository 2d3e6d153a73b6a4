//! The `cli` driver against the strict stand-in (see the crate's documentation for what
//! only the stand-in can give).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use baton_schemas::group::subchart_release_name;
use baton_tests::Env;
use baton_tests::kube::KubeEnv;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};

use super::*;

/// One call the stand-in logged.
#[derive(Debug, Clone)]
struct Call {
    argv: Vec<String>,
    start: SystemTime,
    end: SystemTime,
    exit: i64,
}

impl Call {
    fn command(&self) -> &str {
        &self.argv[0]
    }

    /// The release a call is about (Baton writes `upgrade --install <release> ...`).
    fn release(&self) -> &str {
        match self.command() {
            "upgrade" => &self.argv[2],
            _ => &self.argv[1],
        }
    }

    fn is(&self, command: &str, release: &str) -> bool {
        self.command() == command && self.release() == release
    }
}

/// A test world with `cli` helm workers running the stand-in.
struct CliEnv {
    env: Env,
    state: PathBuf,
    planner: baton_tests::Proc,
}

impl CliEnv {
    fn new(catalog: Value) -> CliEnv {
        let mut env = Env::new(program()).unwrap();
        let state = env.dir.path().join("helm");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join("catalog.json"), catalog.to_string()).unwrap();
        let standin = Path::new(env!("CARGO_MANIFEST_DIR")).join("helm-standin");
        let path = format!(
            "{}:{}",
            standin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        env.extra_env.push(("PATH".into(), path));
        env.extra_env
            .push(("HELM_STANDIN_DIR".into(), state.display().to_string()));
        let planner = env.start_planner().unwrap();
        CliEnv {
            env,
            state,
            planner,
        }
    }

    /// Kills the planner with SIGKILL and starts it again on the same store.
    fn restart_planner(&mut self) {
        self.planner.kill9();
        self.planner = self.env.start_planner().unwrap();
    }

    fn start_worker(&mut self, name: &str) -> baton_tests::Proc {
        self.env
            .start_worker(name, "helm", &["--helm-driver", "cli"])
            .unwrap()
    }

    /// Starts a helm worker the env keeps until the end of the test.
    fn keep_worker(&mut self) {
        let worker = self.start_worker("worker");
        self.env.keep(worker);
    }

    /// Waits, at most 60 s, until group `g` has settled, and returns its status.
    fn settled(&self) -> Value {
        self.env
            .wait_group_settled("g", Duration::from_secs(60))
            .unwrap()
    }

    fn calls(&self) -> Vec<Call> {
        baton_tests::lines(&self.state.join("calls.jsonl"))
            .iter()
            .map(|line| {
                let v: Value = serde_json::from_str(line).unwrap();
                let time = |k: &str| humantime::parse_rfc3339(v[k].as_str().unwrap()).unwrap();
                Call {
                    argv: serde_json::from_value(v["argv"].clone()).unwrap(),
                    start: time("start"),
                    end: time("end"),
                    exit: v["exit"].as_i64().unwrap(),
                }
            })
            .collect()
    }

    /// The stand-in's revisions of a release; empty when it is not installed.
    fn revisions(&self, namespace: &str, release: &str) -> Vec<Value> {
        let path = self
            .state
            .join("releases")
            .join(namespace)
            .join(format!("{release}.json"));
        std::fs::read_to_string(path)
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap_or_default()
    }

    /// Applies group `g` from `text` and returns its status once it has settled.
    fn apply_settled(&self, text: &str) -> Value {
        let out = self.apply("g.yaml", text);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.settled()
    }

    fn apply(&self, name: &str, text: &str) -> std::process::Output {
        let file = self.env.write(name, text);
        self.env.cli(&["apply", "-f", file.to_str().unwrap()])
    }
}

fn bookinfo_catalog() -> Value {
    json!({
        "https://www.getambassador.io/helm": {"ambassador": {"6.6.0": {}}},
        "https://nitishm.github.io/charts": {"bookinfo": {"v1": {"dependencies": ["productpage", "reviews", "ratings", "details"]}}},
    })
}

/// The index of the first call matching.
fn first(calls: &[Call], command: &str, release: &str) -> usize {
    calls
        .iter()
        .position(|c| c.is(command, release))
        .unwrap_or_else(|| panic!("no {command} of {release} in {calls:#?}"))
}

fn ended_before(calls: &[Call], a: (&str, &str), b: (&str, &str)) -> bool {
    calls[first(calls, a.0, a.1)].end <= calls[first(calls, b.0, b.1)].start
}

#[test]
fn bookinfo_is_released_in_order_with_its_subcharts_split_and_deleted_in_reverse_cli() {
    let mut world = CliEnv::new(bookinfo_catalog());
    world.keep_worker();
    let out = world.apply("bookinfo.yaml", BOOKINFO);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let group = world
        .env
        .wait_group_settled("bookinfo", Duration::from_secs(90))
        .unwrap();
    assert_eq!(group["phase"], "Succeeded", "{group:#}");
    assert_eq!(group["conditions"][0]["status"], "True");
    let sub = |s: &str| subchart_release_name("bookinfo", s);
    let calls = world.calls();
    // Only reading a release not installed yet fails (`Error: release: not found`).
    assert!(
        calls.iter().all(|c| c.exit == 0 || c.command() == "status"),
        "{calls:#?}"
    );
    // ambassador, then details and ratings, then reviews, then productpage, then bookinfo.
    let ambassador = "ambassador".to_owned();
    for (before, after) in [
        (ambassador.clone(), sub("details")),
        (ambassador.clone(), sub("ratings")),
        (sub("details"), sub("reviews")),
        (sub("ratings"), sub("reviews")),
        (sub("reviews"), sub("productpage")),
        (sub("productpage"), "bookinfo".to_owned()),
    ] {
        assert!(
            ended_before(&calls, ("upgrade", &before), ("upgrade", &after)),
            "{before} before {after}: {calls:#?}"
        );
    }
    // Each subchart is its own release with its own values; the parent has them switched off
    // (the stand-in would have refused the parent otherwise: it would own them twice).
    let productpage = world.revisions("bookinfo", &sub("productpage"));
    assert_eq!(productpage.len(), 1);
    assert_eq!(productpage[0]["values"], json!({"replicaCount": 1}));
    assert_eq!(productpage[0]["chart_name"], "productpage");
    let parent = world.revisions("bookinfo", "bookinfo");
    assert_eq!(parent[0]["resources"], json!(["bookinfo"]));
    assert_eq!(parent[0]["values"]["reviews"], json!({"enabled": false}));
    assert_eq!(parent[0]["status"], "deployed");
    let ambassador = world.revisions("ambassador", "ambassador");
    assert_eq!(
        ambassador[0]["values"],
        json!({"service": {"type": "ClusterIP"}})
    );
    // Every application and subchart shows its own Ready condition.
    let bookinfo = &group["applications"][1];
    assert_eq!(bookinfo["version"], "v1");
    for s in ["productpage", "reviews", "ratings", "details"] {
        let chart = &bookinfo["subcharts"][s];
        assert_eq!(chart["conditions"][0]["status"], "True", "{s}: {chart:#}");
        assert_eq!(chart["release"], sub(s).as_str());
    }

    // Delete runs the reverse graph: bookinfo, productpage, reviews, details and ratings,
    // then ambassador.
    let out = world
        .env
        .cli(&["delete", "group", "bookinfo", "--wait", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let group: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(group["phase"], "Deleted");
    assert_eq!(group["leftInstalled"], json!([]));
    let calls = world.calls();
    for (before, after) in [
        ("bookinfo".to_owned(), sub("productpage")),
        (sub("productpage"), sub("reviews")),
        (sub("reviews"), sub("details")),
        (sub("reviews"), sub("ratings")),
        (sub("details"), "ambassador".to_owned()),
        (sub("ratings"), "ambassador".to_owned()),
    ] {
        assert!(
            ended_before(&calls, ("uninstall", &before), ("uninstall", &after)),
            "{before} before {after}: {calls:#?}"
        );
    }
    assert!(world.revisions("bookinfo", "bookinfo").is_empty());
    assert!(world.revisions("ambassador", "ambassador").is_empty());
}

#[test]
fn independent_applications_are_released_together_cli() {
    let mut world = CliEnv::new(versions(&["db", "cache", "api"]));
    world.keep_worker();
    let text = group(&[
        ("db", "", "1.0.0", ""),
        ("cache", "db", "1.0.0", "batonTestDelay: 1.5"),
        ("api", "db", "1.0.0", "batonTestDelay: 1.5"),
    ]);
    let group = world.apply_settled(&text);
    assert_eq!(group["phase"], "Succeeded", "{group:#}");
    let calls = world.calls();
    let (cache, api) = (
        &calls[first(&calls, "upgrade", "cache")],
        &calls[first(&calls, "upgrade", "api")],
    );
    assert!(
        cache.start < api.end && api.start < cache.end,
        "cache and api overlap: {cache:?} {api:?}"
    );
    assert!(ended_before(&calls, ("upgrade", "db"), ("upgrade", "api")));
}

#[test]
fn a_failing_upgrade_rolls_back_to_the_last_successful_spec_cli() {
    let mut world = CliEnv::new(versions(&["db", "api", "cache", "web"]));
    world.keep_worker();
    let first_spec = group(&[("db", "", "1.0.0", ""), ("api", "db", "1.0.0", "")]);
    assert!(world.apply("v1.yaml", &first_spec).status.success());
    let settled = world.settled();
    assert_eq!(settled["phase"], "Succeeded");
    // The last successful spec is the planner's, in its store: a planner killed now forgets
    // nothing of it.
    world.restart_planner();
    // Revision 2: api upgraded, cache and web added; web fails.
    let second_spec = group(&[
        ("db", "", "1.0.0", ""),
        ("api", "db", "2.0.0", ""),
        ("cache", "db", "1.0.0", ""),
        (
            "web",
            "api, cache",
            "1.0.0",
            "batonTestFail: 'web does not start'",
        ),
    ]);
    let file = world.env.write("v2.yaml", &second_spec);
    let out = world.env.cli(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--wait",
        "-o",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let group: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(group["phase"], "Failed", "{group:#}");
    assert_eq!(group["remediation"], "rolledBack");
    // `--wait` followed the group's watch stream: its changes are lines on stderr (not a
    // terminal), the result alone on stdout.
    let progress = String::from_utf8_lossy(&out.stderr);
    let group_lines: Vec<&str> = progress
        .lines()
        .filter(|l| l.starts_with("group "))
        .collect();
    assert!(
        group_lines.iter().any(|l| l.contains("Progressing")),
        "{progress}"
    );
    assert!(
        group_lines.iter().any(|l| l.contains("Failed")),
        "{progress}"
    );
    assert!(group_lines.iter().any(|l| l.contains("web")), "{progress}");
    // The planner's metrics show the phase.
    let name = group["name"].as_str().unwrap().to_owned();
    for (phase, want) in [("Failed", 1.0), ("Succeeded", 0.0), ("RollingBack", 0.0)] {
        let series = format!("baton_group_phase{{group=\"{name}\",phase=\"{phase}\"}}");
        world
            .env
            .wait_metric(&series, Duration::from_secs(30), |v| v == want)
            .unwrap();
    }
    let condition = |kind: &str| {
        group["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .cloned()
            .unwrap()
    };
    assert_eq!(condition("RollbackWorkflowSucceeded")["status"], "True");
    let ready = condition("Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("WorkflowFailed"))
    );
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("web does not start"),
        "{ready}"
    );
    // What was added since is gone; api is back at 1.0.0 (install, upgrade, upgrade back).
    assert!(world.revisions("apps", "web").is_empty());
    assert!(world.revisions("apps", "cache").is_empty());
    let api = world.revisions("apps", "api");
    let history: Vec<(&str, &str)> = api
        .iter()
        .map(|r| {
            (
                r["chart_version"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            ("1.0.0", "superseded"),
            ("2.0.0", "superseded"),
            ("1.0.0", "deployed")
        ]
    );
    // One ordered graph: web uninstalled before cache, both before the last spec's releases
    // were applied again.
    let calls = world.calls();
    let uninstall_web = first(&calls, "uninstall", "web");
    let uninstall_cache = first(&calls, "uninstall", "cache");
    assert!(
        calls[uninstall_web].end <= calls[uninstall_cache].start,
        "{calls:#?}"
    );
    let reapply_db = calls.iter().rposition(|c| c.is("upgrade", "db")).unwrap();
    assert!(
        calls[uninstall_cache].end <= calls[reapply_db].start,
        "{calls:#?}"
    );
    let apps = group["applications"].as_array().unwrap();
    let reason = |i: usize| {
        apps[i]["conditions"][0]["reason"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(reason(1), "RolledBack");
    assert_eq!(apps[1]["version"], "1.0.0");
    assert_eq!(reason(3), "Uninstalled");
}

#[test]
fn a_failing_first_install_is_uninstalled_in_reverse_order_cli() {
    let mut world = CliEnv::new(versions(&["db", "api", "web"]));
    world.keep_worker();
    let text = group(&[
        ("db", "", "1.0.0", ""),
        ("api", "db", "1.0.0", ""),
        ("web", "api", "1.0.0", "batonTestFail: true"),
    ]);
    let group = world.apply_settled(&text);
    assert_eq!(group["phase"], "Failed", "{group:#}");
    assert_eq!(group["remediation"], "uninstalled");
    let reverse = group["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "ReverseWorkflowSucceeded")
        .cloned()
        .unwrap();
    assert_eq!(reverse["status"], "True");
    let calls = world.calls();
    assert!(ended_before(
        &calls,
        ("uninstall", "web"),
        ("uninstall", "api")
    ));
    assert!(ended_before(
        &calls,
        ("uninstall", "api"),
        ("uninstall", "db")
    ));
    for release in ["db", "api", "web"] {
        assert!(
            world.revisions("apps", release).is_empty(),
            "{release} left"
        );
    }
}

#[test]
fn a_helm_job_redelivered_after_a_worker_kill_makes_no_second_install_cli() {
    let mut world = CliEnv::new(versions(&["db"]));
    let mut first_worker = world.start_worker("worker-1");
    // The install outlasts the job's ack wait (5 s): the redelivery finds it pending.
    let text = group(&[("db", "", "1.0.0", "batonTestDelay: 9")]);
    assert!(world.apply("g.yaml", &text).status.success());
    // Kill the worker while its helm is in the middle of the install.
    let started = std::time::Instant::now();
    while world
        .revisions("apps", "db")
        .first()
        .is_none_or(|r| r["status"] != "pending-install")
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the install never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    first_worker.kill9();
    let second = world.start_worker("worker-2");
    let group = world.settled();
    assert_eq!(group["phase"], "Succeeded", "{group:#}");
    assert!(
        second
            .log()
            .contains("an operation is under way on the release; waiting for it"),
        "the redelivery waited for the pending install: {}",
        second.log()
    );
    world.env.keep(second);
    let upgrades: Vec<Call> = world
        .calls()
        .into_iter()
        .filter(|c| c.is("upgrade", "db"))
        .collect();
    assert_eq!(
        upgrades.len(),
        1,
        "one install, adopted by the redelivery: {upgrades:#?}"
    );
    let revisions = world.revisions("apps", "db");
    assert_eq!(revisions.len(), 1);
    assert_eq!(revisions[0]["status"], "deployed");
    let run = group["runs"]["forward"].as_str().unwrap();
    let status = world.env.status(run).unwrap();
    assert_eq!(
        status.nodes[0].attempts, 1,
        "a redelivery is the same attempt"
    );
    let output: Value = serde_json::from_str(status.nodes[0].output.as_deref().unwrap()).unwrap();
    assert_eq!(output["result"], "adopted", "{output}");
}

#[test]
fn values_from_secrets_and_config_maps_and_repository_credentials_reach_helm_cli() {
    let mut world = CliEnv::new(versions(&["web"]));
    let kube = KubeEnv::for_env(&mut world.env).unwrap();
    let ns = kube.namespace.clone();
    let objects = [
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-values"},
               "data": {"values.yaml": "image: {tag: from-map, pull: Always}\nreplicas: 1\n"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "web-secret"},
               "stringData": {"password": "s3cret"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "repo-creds"},
               "stringData": {"username": "robot", "password": "hunter2", "ca.crt": "-----BEGIN CERTIFICATE-----"}}),
    ];
    for object in objects {
        let kind = object["kind"].as_str().unwrap();
        let (version, plural) = if kind == "Secret" {
            ("v1", "secrets")
        } else {
            ("v1", "configmaps")
        };
        let resource = ApiResource {
            group: String::new(),
            version: version.into(),
            api_version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(kube.client.clone(), &ns, &resource);
        let object: DynamicObject = serde_json::from_value(object).unwrap();
        kube.block_on(api.create(&PostParams::default(), &object))
            .unwrap();
    }
    // The repository answers only to robot's password.
    std::fs::write(
        world.state.join("auth.json"),
        json!({"https://c.example.com": {"username": "robot", "password": "hunter2"}}).to_string(),
    )
    .unwrap();
    world.keep_worker();
    let text = format!(
        "apiVersion: baton.dev/v1alpha1\nkind: ApplicationGroup\nmetadata: {{name: g}}\nspec:\n  applications:\n  - name: web\n    spec:\n      chart: {{url: 'https://c.example.com', name: web, version: 1.0.0, authSecretRef: {{name: repo-creds, namespace: {ns}}}}}\n      release:\n        targetNamespace: {ns}\n        values: {{replicas: 2, image: {{tag: inline}}}}\n        valuesFrom:\n        - {{kind: ConfigMap, name: web-values}}\n        - {{kind: Secret, name: web-secret, valuesKey: password, targetPath: db.password}}\n        - {{kind: ConfigMap, name: missing, optional: true}}\n"
    );
    let group = world.apply_settled(&text);
    assert_eq!(group["phase"], "Succeeded", "{group:#}");
    let web = world.revisions(&ns, "web");
    assert_eq!(
        web[0]["values"],
        json!({"image": {"tag": "inline", "pull": "Always"}, "replicas": 2, "db": {"password": "s3cret"}})
    );
    let calls = world.calls();
    let upgrade = &calls[first(&calls, "upgrade", "web")];
    let flag = |name: &str| {
        let i = upgrade
            .argv
            .iter()
            .position(|a| a == name)
            .unwrap_or_else(|| panic!("no {name}: {upgrade:?}"));
        upgrade.argv[i + 1].clone()
    };
    // The password reached helm on its standard input, never on a command line: `helm repo
    // add --password-stdin` wrote it to a repository config of the operation's own, which the
    // upgrade reads (the stand-in answers 401 otherwise).
    assert!(
        calls
            .iter()
            .all(|c| !c.argv.iter().any(|a| a.contains("hunter2"))),
        "{calls:#?}"
    );
    let add = calls
        .iter()
        .find(|c| c.argv.starts_with(&["repo".to_owned(), "add".to_owned()]))
        .unwrap_or_else(|| panic!("no helm repo add: {calls:#?}"));
    assert!(add.argv.contains(&"--password-stdin".to_owned()), "{add:?}");
    assert_eq!(upgrade.argv[3], "baton/web");
    assert!(flag("--repository-config").ends_with("/repositories.yaml"));
    assert!(flag("--ca-file").ends_with("/ca.crt"));
    drop(kube);
}

#[test]
fn subcharts_split_out_of_an_installed_application_are_released_after_it_lets_them_go_cli() {
    let mut world = CliEnv::new(bookinfo_catalog());
    world.keep_worker();
    let whole = BOOKINFO.replace(
        "        subcharts:\n        - name: productpage\n          dependencies: [reviews]\n        - name: reviews\n          dependencies: [details, ratings]\n        - name: ratings\n          dependencies: []\n        - name: details\n          dependencies: []\n",
        "",
    );
    assert_ne!(whole, BOOKINFO);
    let file = world.env.write("whole.yaml", &whole);
    let out = world
        .env
        .cli(&["apply", "-f", file.to_str().unwrap(), "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let parent = world.revisions("bookinfo", "bookinfo");
    assert_eq!(
        parent[0]["resources"],
        json!(["bookinfo", "details", "productpage", "ratings", "reviews"])
    );
    // Now split: the installed parent owns its subcharts' resources, and the stand-in, as
    // Helm, refuses a release over resources another one owns.
    let file = world.env.write("split.yaml", BOOKINFO);
    let out = world.env.cli(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--wait",
        "-o",
        "json",
    ]);
    let group: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{group:#}");
    assert_eq!(group["phase"], "Succeeded");
    let parent = world.revisions("bookinfo", "bookinfo");
    assert_eq!(parent.last().unwrap()["resources"], json!(["bookinfo"]));
    assert_eq!(parent.last().unwrap()["status"], "deployed");
    let calls = world.calls();
    let parent_upgrade = calls
        .iter()
        .filter(|c| c.is("upgrade", "bookinfo"))
        .nth(1)
        .unwrap_or_else(|| panic!("no second upgrade of bookinfo: {calls:#?}"));
    for s in ["productpage", "reviews", "ratings", "details"] {
        let release = subchart_release_name("bookinfo", s);
        let revisions = world.revisions("bookinfo", &release);
        assert_eq!(revisions.len(), 1, "{s}");
        assert_eq!(revisions[0]["status"], "deployed", "{s}");
        let install = &calls[first(&calls, "upgrade", &release)];
        assert!(
            parent_upgrade.end <= install.start,
            "{s} installed while the parent still owned it: {calls:#?}"
        );
    }
    assert!(
        calls.iter().all(|c| c.exit == 0 || c.command() == "status"),
        "{calls:#?}"
    );
}

#[test]
fn values_from_is_cut_for_split_subcharts_cli() {
    let catalog =
        json!({"https://c.example.com": {"shop": {"1.0.0": {"dependencies": ["cart", "pay"]}}}});
    let mut world = CliEnv::new(catalog);
    let kube = KubeEnv::for_env(&mut world.env).unwrap();
    let ns = kube.namespace.clone();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(kube.client.clone(), &ns);
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "shop-values"},
        "stringData": {"values.yaml": "global: {region: eu}\ncart: {size: 3}\npay: {provider: x}\nreplicas: 2\n"},
    }))
    .unwrap();
    kube.block_on(secrets.create(&PostParams::default(), &secret))
        .unwrap();
    world.keep_worker();
    let text = format!(
        "apiVersion: baton.dev/v1alpha1\nkind: ApplicationGroup\nmetadata: {{name: g}}\nspec:\n  applications:\n  - name: shop\n    spec:\n      chart: {{url: 'https://c.example.com', name: shop, version: 1.0.0}}\n      subcharts: [{{name: cart}}]\n      release:\n        targetNamespace: {ns}\n        values: {{cart: {{color: red}}}}\n        valuesFrom: [{{kind: Secret, name: shop-values}}]\n"
    );
    let group = world.apply_settled(&text);
    assert_eq!(group["phase"], "Succeeded", "{group:#}");
    // The subchart's release gets its part of the Secret's values and global; the parent
    // gets the rest with the subchart switched off (pay stays inside it).
    let cart = world.revisions(&ns, &subchart_release_name("shop", "cart"));
    assert_eq!(
        cart[0]["values"],
        json!({"size": 3, "color": "red", "global": {"region": "eu"}})
    );
    let shop = world.revisions(&ns, "shop");
    assert_eq!(
        shop[0]["values"],
        json!({"global": {"region": "eu"}, "cart": {"enabled": false}, "pay": {"provider": "x"}, "replicas": 2})
    );
    assert_eq!(shop[0]["resources"], json!(["pay", "shop"]));
    drop(kube);
}

#[test]
fn a_planner_killed_as_a_group_run_fails_remediates_it_once_cli() {
    let mut world = CliEnv::new(versions(&["db", "api", "web"]));
    world.keep_worker();
    let text = group(&[
        ("db", "", "1.0.0", ""),
        ("api", "db", "1.0.0", "batonTestFail: 'api crashes'"),
        ("web", "api", "1.0.0", ""),
    ]);
    assert!(world.apply("g.yaml", &text).status.success());
    // Kill the planner right after it applied api's failure: the forward run has ended and
    // the uninstall started, its jobs published, nothing of it checkpointed yet.
    let started = std::time::Instant::now();
    while !world
        .planner
        .log()
        .lines()
        .any(|l| l.contains("run finished") && l.contains("g-1f"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the forward run never ended: {}",
            world.planner.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    world.restart_planner();
    let group = world.settled();
    assert_eq!(group["phase"], "Failed", "{group:#}");
    assert_eq!(group["remediation"], "uninstalled");
    assert_eq!(group["runs"]["remediation"], "g-2u");
    assert_eq!(group["leftInstalled"], json!([]));
    let out = world.env.cli(&["runs", "-o", "json"]);
    let runs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r["run"].as_str().unwrap()).collect();
    assert_eq!(ids, ["g-1f", "g-2u"], "exactly one remediation run");
    let uninstall = world.env.status("g-2u").unwrap();
    assert!(
        uninstall.nodes.iter().all(|n| n.attempts == 1),
        "{uninstall:#?}"
    );
    // The uninstall ran once per release the failed run may have installed; web never
    // started, and nothing is left.
    let calls = world.calls();
    for release in ["api", "db"] {
        let uninstalls = calls
            .iter()
            .filter(|c| c.is("uninstall", release) && c.exit == 0)
            .count();
        assert_eq!(uninstalls, 1, "{release}: {calls:#?}");
    }
    assert!(
        !calls.iter().any(|c| c.is("uninstall", "web")),
        "{calls:#?}"
    );
    for release in ["db", "api", "web"] {
        assert!(
            world.revisions("apps", release).is_empty(),
            "{release} left"
        );
    }
}

#[test]
fn a_release_left_uninstalling_by_a_dead_helm_is_uninstalled_before_it_is_installed_again_cli() {
    let mut world = CliEnv::new(versions(&["db"]));
    // An uninstall died an hour ago: the release still says `uninstalling`.
    let hour_ago =
        humantime::format_rfc3339(SystemTime::now() - Duration::from_secs(3600)).to_string();
    let releases = world.state.join("releases").join("apps");
    std::fs::create_dir_all(&releases).unwrap();
    std::fs::create_dir_all(world.state.join("namespaces")).unwrap();
    std::fs::write(world.state.join("namespaces").join("apps"), "").unwrap();
    std::fs::write(
        releases.join("db.json"),
        json!([{"revision": 1, "status": "uninstalling", "chart_name": "db", "chart_version": "1.0.0",
                "values": {}, "resources": ["db"], "description": "Deletion in progress",
                "updated": hour_ago, "first_deployed": hour_ago}])
        .to_string(),
    )
    .unwrap();
    world.keep_worker();
    let group = world.apply_settled(&group(&[("db", "", "1.0.0", "")]));
    assert_eq!(group["phase"], "Succeeded", "{group:#}");
    // An operation under way on the release, stale: finished before anything else starts.
    let calls = world.calls();
    assert!(
        first(&calls, "uninstall", "db") < first(&calls, "upgrade", "db"),
        "{calls:#?}"
    );
    let revisions = world.revisions("apps", "db");
    assert_eq!(revisions.len(), 1, "{revisions:#?}");
    assert_eq!(revisions[0]["status"], "deployed");
}
