//! The `flux` driver: `HelmRelease` objects on the tests' control plane, answered by the
//! helm-controller actor.

use std::time::Duration;

use baton_schemas::group::subchart_release_name;
use baton_tests::kube::{HelmController, KubeEnv};
use baton_tests::{Env, wait_for_port};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PostParams};
use serde_json::{Value, json};

use super::*;

/// A test world with `flux` helm workers, the tests' control plane and the helm-controller actor
/// (or a real cluster and its Flux).
struct FluxEnv {
    env: Env,
    kube: KubeEnv,
    /// The helm-controller actor; `None` on a real cluster whose Flux answers.
    controller: Option<HelmController>,
    worker: baton_tests::Proc,
}

/// Why a test that steers releases cannot run against a real Flux.
const NEEDS_THE_ACTOR: &str = "BATON_TEST_KUBECONFIG is a real cluster, whose Flux answers HelmReleases, and this test steers them through the helm-controller actor's test values (batonTestFail, batonTestDelay, charts of c.example.com) and reads its record; set BATON_TEST_SIMULATE_HELM_CONTROLLER=1 to run it with the actor there";

impl FluxEnv {
    /// Starts a planner (watching the cluster with `watch`) and a worker for `kinds`, with
    /// the helm-controller actor on the tests' control plane. On a cluster without the actor,
    /// a test that needs it (`needs_actor`) does not run: this says so on the test output,
    /// naming `test`, and returns `None`; other tests run against the cluster's Flux.
    ///
    /// The actor answers `HelmRelease` objects in `releases_in` (the test's own namespace
    /// when empty): tests share the API server, each its own namespaces.
    fn new(
        test: &str,
        watch: bool,
        kinds: &str,
        needs_actor: bool,
        releases_in: &[&str],
    ) -> Option<FluxEnv> {
        let mut env = Env::new(program()).unwrap();
        let kube = KubeEnv::for_env(&mut env).unwrap();
        let controller = kube.start_helm_controller(releases_in);
        if controller.is_none() && needs_actor {
            baton_tests::skip(test, NEEDS_THE_ACTOR);
            return None;
        }
        kube.install_crds().unwrap();
        let args: Vec<&str> = if watch {
            vec!["--watch-kubernetes", "--watch-namespace", &kube.namespace]
        } else {
            vec![]
        };
        let planner = env.start_planner_with(&args).unwrap();
        env.keep(planner);
        wait_for_port(env.api_port, Duration::from_secs(10)).unwrap();
        // Subcharts come from the planner's chart repository.
        let charts = format!("http://127.0.0.1:{}/charts", env.api_port);
        let worker = env
            .start_worker(
                "worker",
                kinds,
                &[
                    "--helm-driver",
                    "flux",
                    "--subchart-repository-url",
                    &charts,
                ],
            )
            .unwrap();
        Some(FluxEnv {
            env,
            kube,
            controller,
            worker,
        })
    }

    fn helm_release(&self, namespace: &str, name: &str) -> Option<DynamicObject> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.kube.client.clone(),
            namespace,
            &baton_tests::kube::helm_controller::helm_releases(),
        );
        self.kube.block_on(api.get_opt(name)).unwrap()
    }
}

fn orkestra_groups() -> ApiResource {
    ApiResource {
        group: "orkestra.azure.microsoft.com".into(),
        version: "v1alpha1".into(),
        api_version: "orkestra.azure.microsoft.com/v1alpha1".into(),
        kind: "ApplicationGroup".into(),
        plural: "applicationgroups".into(),
    }
}

/// Serves bookinfo's umbrella chart `v1` from a repository on this machine, its four
/// subcharts vendored at `v1`, beside a newer `productpage` 2.0.0 published on its own: the
/// one a subchart read from the parent's repository under its own name would drift to.
fn bookinfo_repository(world: &FluxEnv) -> baton_tests::chart_repo::ChartRepo {
    let helm = baton_tests::kube::real::required("helm").unwrap();
    let repo = baton_tests::chart_repo::ChartRepo::start(&world.env.dir.path().join("repo"), &helm)
        .unwrap();
    let page = |name: &'static str| -> Vec<(&'static str, String)> {
        vec![(
            "configmap.yaml",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}-{{{{ .Chart.Version }}}}}}\n"
            ),
        )]
    };
    let subs: Vec<(&str, Vec<(&str, String)>)> = ["productpage", "reviews", "ratings", "details"]
        .into_iter()
        .map(|s| (s, page(s)))
        .collect();
    let borrowed: Vec<Vec<(&str, &str)>> = subs
        .iter()
        .map(|(_, t)| t.iter().map(|(f, x)| (*f, x.as_str())).collect())
        .collect();
    let vendored: Vec<(&str, &[(&str, &str)])> = subs
        .iter()
        .zip(&borrowed)
        .map(|((name, _), t)| (*name, t.as_slice()))
        .collect();
    repo.add_umbrella("bookinfo", "v1", &[], "", &vendored)
        .unwrap();
    let newer = page("productpage");
    let newer: Vec<(&str, &str)> = newer.iter().map(|(f, x)| (*f, x.as_str())).collect();
    repo.add_chart("productpage", "2.0.0", &newer, "").unwrap();
    repo
}

#[test]
fn bookinfo_applied_as_an_object_is_released_with_the_flux_driver_and_deleted_in_reverse() {
    // Bookinfo's umbrella chart is served from this machine, where a real cluster's Flux
    // cannot read it.
    let Some(world) = FluxEnv::new(
        "bookinfo_applied_as_an_object_is_released_with_the_flux_driver_and_deleted_in_reverse",
        true,
        "helm",
        true,
        &["bookinfo", "ambassador"],
    ) else {
        return;
    };
    let groups: Api<DynamicObject> = Api::all_with(world.kube.client.clone(), &orkestra_groups());
    let repo = bookinfo_repository(&world);
    // details and ratings take the actor 2 s each (not its 0.3 s default), so that their
    // overlap shows however slowly the worker gets to the second one.
    let mut text = BOOKINFO.replace("https://nitishm.github.io/charts", &repo.url);
    for sub in ["details", "ratings"] {
        let plain = format!("            {sub}:\n              replicaCount: 1\n");
        assert!(text.contains(&plain), "{sub} in bookinfo");
        text = text.replace(&plain, &format!("{plain}              batonTestDelay: 2\n"));
    }
    let object: DynamicObject = serde_norway::from_str(&text).unwrap();
    world
        .kube
        .block_on(groups.create(&PostParams::default(), &object))
        .unwrap();
    // The object's status follows: Ready=True with Orkestra's reason and per-application
    // conditions, and Baton's finalizer holds it.
    let started = std::time::Instant::now();
    let status = loop {
        let found = world.kube.block_on(groups.get("bookinfo")).unwrap();
        let status = found.data["status"].clone();
        if status["phase"] == "Succeeded" {
            assert_eq!(
                found.metadata.finalizers.as_deref(),
                Some(&["baton.dev/uninstall".to_owned()][..])
            );
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "status: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["status"], "True");
    assert_eq!(status["conditions"][0]["reason"], "Succeeded");
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["lastSucceededGeneration"], 1);
    assert_eq!(
        status["applications"][1]["subcharts"]["ratings"]["conditions"][0]["status"],
        "True"
    );
    // The HelmReleases: one per application and subchart, values split.
    let sub = |s: &str| subchart_release_name("bookinfo", s);
    let productpage = world.helm_release("bookinfo", &sub("productpage")).unwrap();
    assert_eq!(
        productpage.data["spec"]["values"],
        json!({"replicaCount": 1})
    );
    assert_eq!(
        productpage.data["spec"]["chart"]["spec"]["chart"],
        "productpage"
    );
    let parent = world.helm_release("bookinfo", "bookinfo").unwrap();
    assert_eq!(
        parent.data["spec"]["values"]["productpage"],
        json!({"enabled": false})
    );
    assert_eq!(parent.data["spec"]["upgrade"], json!({"force": true}));
    // Each subchart is read from the planner's chart repository of bookinfo v1, which holds
    // what bookinfo vendors (the actor reads it as source-controller does), not the newer
    // productpage published beside it.
    let chart = baton_schemas::helm::HelmChart {
        url: repo.url.clone(),
        name: "bookinfo".into(),
        version: Some("v1".into()),
        auth_secret_ref: None,
        subchart: None,
    };
    let served = format!(
        "http://127.0.0.1:{}/charts/{}",
        world.env.api_port,
        chart.subchart_repository_path()
    );
    let sources: Api<DynamicObject> = Api::namespaced_with(
        world.kube.client.clone(),
        "bookinfo",
        &ApiResource {
            group: "source.toolkit.fluxcd.io".into(),
            version: "v1".into(),
            api_version: "source.toolkit.fluxcd.io/v1".into(),
            kind: "HelmRepository".into(),
            plural: "helmrepositories".into(),
        },
    );
    let source = world
        .kube
        .block_on(sources.get(&format!("bookinfo-{}", sub("productpage"))))
        .unwrap();
    assert_eq!(source.data["spec"]["url"], served.as_str());
    let index = world
        .kube
        .block_on(async {
            reqwest::get(format!("{served}/index.yaml"))
                .await?
                .text()
                .await
        })
        .unwrap();
    for s in ["productpage", "reviews", "ratings", "details"] {
        assert!(index.contains(&format!("- {s}-v1.tgz")), "{index}");
    }
    assert!(!index.contains("2.0.0"), "{index}");
    // Real Helm renders the served subchart: the vendored one, at v1.
    let rendered = std::process::Command::new(baton_tests::kube::real::required("helm").unwrap())
        .args(["template", "x", "productpage", "--repo", &served])
        .env("HELM_CACHE_HOME", world.env.dir.path().join("helm-cache"))
        .env("HELM_CONFIG_HOME", world.env.dir.path().join("helm-config"))
        .output()
        .unwrap();
    let rendered_text = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        rendered_text.contains("name: productpage-v1"),
        "{rendered_text}{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let ambassador = world.helm_release("ambassador", "ambassador").unwrap();
    assert_eq!(ambassador.data["spec"]["chart"]["spec"]["version"], "6.6.0");
    // Order, and the independent details and ratings released together.
    let events = world
        .controller
        .as_ref()
        .map(HelmController::events)
        .unwrap_or_default();
    let at = |name: &str, action: &str| {
        events
            .iter()
            .find(|e| e.name == name && e.action == action)
            .unwrap_or_else(|| panic!("no {action} of {name}: {events:#?}"))
            .clone()
    };
    if world.controller.is_some() {
        let (details, ratings) = (
            at(&sub("details"), "install"),
            at(&sub("ratings"), "install"),
        );
        assert!(at("ambassador", "install").end <= details.start);
        assert!(
            details.start < ratings.end && ratings.start < details.end,
            "parallel"
        );
        assert!(details.end <= at(&sub("reviews"), "install").start);
        assert!(at(&sub("productpage"), "install").end <= at("bookinfo", "install").start);
        assert_eq!(at(&sub("productpage"), "install").chart_version, "v1");
    }

    // Deleting the object uninstalls in reverse order, then lets it go.
    world
        .kube
        .block_on(groups.delete("bookinfo", &DeleteParams::default()))
        .unwrap();
    let started = std::time::Instant::now();
    while world
        .kube
        .block_on(groups.get_opt("bookinfo"))
        .unwrap()
        .is_some()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the group was never let go"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let events = world
        .controller
        .as_ref()
        .map(HelmController::events)
        .unwrap_or_default();
    let uninstall = |name: &str| {
        events
            .iter()
            .find(|e| e.name == name && e.action == "uninstall")
            .unwrap_or_else(|| panic!("no uninstall of {name}"))
            .clone()
    };
    if world.controller.is_some() {
        assert!(uninstall("bookinfo").end <= uninstall(&sub("productpage")).start);
        assert!(uninstall(&sub("reviews")).end <= uninstall(&sub("details")).start);
        assert!(uninstall(&sub("details")).end <= uninstall("ambassador").start);
    }
    assert!(world.helm_release("bookinfo", "bookinfo").is_none());
    assert!(world.helm_release("ambassador", "ambassador").is_none());
}

#[test]
fn a_failing_upgrade_rolls_back_with_the_flux_driver() {
    let Some(world) = FluxEnv::new(
        "a_failing_upgrade_rolls_back_with_the_flux_driver",
        false,
        "helm",
        true,
        &[],
    ) else {
        return;
    };
    let env = &world.env;
    let first_spec = group_in(
        &world.kube.namespace,
        &[("db", "", "1.0.0", ""), ("api", "db", "1.0.0", "")],
    );
    let file = env.write("v1.yaml", &first_spec);
    let out = env.cli(&["apply", "-f", file.to_str().unwrap(), "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let second_spec = group_in(
        &world.kube.namespace,
        &[
            ("db", "", "1.0.0", ""),
            ("api", "db", "2.0.0", "batonTestFail: 'api crashes'"),
            ("web", "api", "1.0.0", ""),
        ],
    );
    let file = env.write("v2.yaml", &second_spec);
    let started = std::time::Instant::now();
    let out = env.cli(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--wait",
        "-o",
        "json",
    ]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let group: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(group["phase"], "Failed", "{group:#}");
    assert_eq!(group["remediation"], "rolledBack");
    // The failure was reported as soon as helm-controller said UpgradeFailed, not after the
    // release's 5-minute timeout: the failing node ended within seconds, and the whole
    // apply, rollback included, well within the timeout.
    let forward = env
        .status(group["runs"]["forward"].as_str().unwrap())
        .unwrap();
    let api_node = forward.nodes.iter().find(|n| n.name == "api").unwrap();
    let at = |t: &Option<String>| humantime::parse_rfc3339(t.as_deref().unwrap()).unwrap();
    let failing = at(&api_node.finished_at)
        .duration_since(at(&api_node.started_at))
        .unwrap();
    assert!(
        failing < Duration::from_secs(30),
        "api failed after {failing:?}"
    );
    assert!(
        took < Duration::from_secs(120),
        "apply --wait took {took:?}"
    );
    // api is back at 1.0.0 and web was never installed.
    let api = world.helm_release(&world.kube.namespace, "api").unwrap();
    assert_eq!(api.data["spec"]["chart"]["spec"]["version"], "1.0.0");
    assert_eq!(api.data["status"]["conditions"][0]["status"], "True");
    assert!(api.data["spec"]["values"].get("batonTestFail").is_none());
    assert!(world.helm_release(&world.kube.namespace, "web").is_none());
    let actions: Vec<(String, &str, bool)> = world
        .controller
        .as_ref()
        .expect("the actor")
        .events()
        .iter()
        .map(|e| (e.name.clone(), e.action, e.failed))
        .collect();
    assert!(
        actions.contains(&("api".into(), "upgrade", true)),
        "{actions:?}"
    );
    assert_eq!(
        actions.last().unwrap(),
        &("api".into(), "upgrade", false),
        "{actions:?}"
    );
}

#[test]
fn workflow_executors_run_in_order_as_pods_with_orkestras_arguments_and_reverse_on_delete() {
    let Some(world) = FluxEnv::new(
        "workflow_executors_run_in_order_as_pods_with_orkestras_arguments_and_reverse_on_delete",
        false,
        "helm,pod",
        true,
        &[],
    ) else {
        return;
    };
    let env = &world.env;
    let text = format!(
        "{}      workflow:\n      - {{name: helmrelease, type: helmrelease}}\n      - name: smoke\n        dependencies: [helmrelease]\n        image: {{name: smoke, image: busybox, command: [sh, -c, 'printf \"%s \" \"$@\" > /dev/termination-log', sh]}}\n        params: {{data: {{url: 'http://web.apps'}}}}\n",
        group_in(&world.kube.namespace, &[("web", "", "1.0.0", "")])
            .replace("values: {}}", "values: {}}\n")
    );
    let file = env.write("g.yaml", &text);
    let out = env.cli(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--wait",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let group: Value = serde_json::from_slice(&out.stdout).unwrap();
    let forward = env
        .status(group["runs"]["forward"].as_str().unwrap())
        .unwrap();
    let names: Vec<&str> = forward.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["web-helmrelease", "web-smoke"]);
    assert!(forward.nodes[0].finished_at <= forward.nodes[1].started_at);
    let args = |output: &str| {
        output
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let smoke = args(forward.nodes[1].output.as_deref().unwrap());
    assert_eq!(
        smoke[2..8],
        [
            "--action",
            "install",
            "--timeout",
            "5m0s",
            "--interval",
            "1s"
        ]
    );
    use base64::Engine as _;
    let decode = |b: &str| base64::engine::general_purpose::STANDARD.decode(b).unwrap();
    let spec: Value = serde_json::from_slice(&decode(&smoke[1])).unwrap();
    assert_eq!(spec["kind"], "HelmRelease");
    assert_eq!(spec["spec"]["releaseName"], "web");
    assert_eq!(decode(&smoke[9]), br#"{"url":"http://web.apps"}"#);

    // The reverse: the executors turned around and each turned into its reverse.
    let out = env.cli(&["delete", "group", "g", "--wait", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let group: Value = serde_json::from_slice(&out.stdout).unwrap();
    let delete = env
        .status(group["runs"]["delete"].as_str().unwrap())
        .unwrap();
    let names: Vec<&str> = delete.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["web-smoke", "web-helmrelease"]);
    assert!(delete.nodes[0].finished_at <= delete.nodes[1].started_at);
    assert_eq!(
        args(delete.nodes[0].output.as_deref().unwrap())[3],
        "delete"
    );
    assert!(world.helm_release(&world.kube.namespace, "web").is_none());
}

#[test]
fn a_helm_job_redelivered_after_a_worker_kill_makes_no_second_install_flux() {
    let Some(mut world) = FluxEnv::new(
        "a_helm_job_redelivered_after_a_worker_kill_makes_no_second_install_flux",
        false,
        "helm",
        true,
        &[],
    ) else {
        return;
    };
    let text = group_in(
        &world.kube.namespace,
        &[("db", "", "1.0.0", "batonTestDelay: 4")],
    );
    let file = world.env.write("g.yaml", &text);
    assert!(
        world
            .env
            .cli(&["apply", "-f", file.to_str().unwrap()])
            .status
            .success()
    );
    // Kill the worker while it waits for helm-controller.
    let started = std::time::Instant::now();
    while world.helm_release(&world.kube.namespace, "db").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no HelmRelease written"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    world.worker.kill9();
    let second = world
        .env
        .start_worker("worker-2", "helm", &["--helm-driver", "flux"])
        .unwrap();
    world.env.keep(second);
    let group = world
        .env
        .wait_group_settled("g", Duration::from_secs(60))
        .unwrap();
    assert_eq!(group["phase"], "Succeeded", "{group:#}");
    let installs: Vec<_> = world
        .controller
        .as_ref()
        .expect("the actor")
        .events()
        .into_iter()
        .filter(|e| e.name == "db")
        .collect();
    assert_eq!(
        installs.len(),
        1,
        "one install, adopted by the redelivery: {installs:#?}"
    );
    let release = world.helm_release(&world.kube.namespace, "db").unwrap();
    assert_eq!(
        release.metadata.generation,
        Some(1),
        "the same spec written again"
    );
    let run = group["runs"]["forward"].as_str().unwrap();
    let status = world.env.status(run).unwrap();
    assert_eq!(status.nodes[0].attempts, 1);
    let output: Value = serde_json::from_str(status.nodes[0].output.as_deref().unwrap()).unwrap();
    assert_eq!(output["result"], "adopted", "{output}");
}

#[test]
fn a_release_that_failed_is_tried_again_at_the_same_spec_flux() {
    let Some(world) = FluxEnv::new(
        "a_release_that_failed_is_tried_again_at_the_same_spec_flux",
        false,
        "helm",
        true,
        &[],
    ) else {
        return;
    };
    // The first release of web fails, the next one works; the node's retry writes the same
    // spec, whose generation Flux has handled already and would not try again by itself.
    let text = "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: flaky}\nspec:\n  nodes:\n  - name: web\n    kind: helm\n    retries: {limit: 1}\n    helm: {release: web, namespace: apps, driver: flux, chart: {url: 'https://c.example.com', name: web, version: 1.0.0}, values: {batonTestFailAttempts: 1}}\n"
        .replace("namespace: apps", &format!("namespace: {}", world.kube.namespace));
    let file = world.env.write("flaky.yaml", &text);
    let run = world.env.apply(&file).unwrap();
    let status = world.env.wait_end(&run, Duration::from_secs(60)).unwrap();
    assert_eq!(status.state.as_str(), "succeeded", "{status:#?}");
    assert_eq!(status.nodes[0].attempts, 2);
    let release = world.helm_release(&world.kube.namespace, "web").unwrap();
    assert_eq!(release.metadata.generation, Some(1), "the same spec");
    let marker = format!("baton {run}/web/2");
    assert_eq!(
        release.data["status"]["lastHandledResetAt"], marker,
        "{:#}",
        release.data
    );
    let attempts: Vec<bool> = world
        .controller
        .as_ref()
        .expect("the actor")
        .events()
        .iter()
        .filter(|e| e.name == "web")
        .map(|e| e.failed)
        .collect();
    assert_eq!(attempts, [true, false]);
}

/// A group whose uninstall failed is held by Baton's finalizer, its `Ready` condition saying
/// how to go on: deleted again it runs its delete again; `baton delete group --force` lets one
/// go, the `baton.dev/force-delete` annotation another, their releases left installed.
#[test]
fn a_group_whose_uninstall_failed_is_held_until_a_person_lets_it_go() {
    let Some(world) = FluxEnv::new(
        "a_group_whose_uninstall_failed_is_held_until_a_person_lets_it_go",
        true,
        "helm",
        true,
        &[],
    ) else {
        return;
    };
    let (kube, env) = (&world.kube, &world.env);
    let groups: Api<DynamicObject> = Api::all_with(kube.client.clone(), &orkestra_groups());
    let held = [("held-a", "db"), ("held-b", "cache")];
    for (name, app) in held {
        let text = group_in(
            &kube.namespace,
            &[(app, "", "1.0.0", "batonTestFailUninstall: true")],
        )
        .replace(
            "metadata: {name: g}",
            &format!("metadata: {{name: {name}}}"),
        );
        let object: DynamicObject = serde_norway::from_str(&text).unwrap();
        kube.block_on(groups.create(&PostParams::default(), &object))
            .unwrap();
    }
    let within = Duration::from_secs(90);
    for (name, _) in held {
        kube.wait_status(&groups, name, within, |s| s["phase"] == "Succeeded");
        kube.block_on(groups.delete(name, &DeleteParams::default()))
            .unwrap();
    }
    let failed = |s: &Value| s["phase"] == "Deleted" && s["leftInstalled"] != json!([]);
    let mut first_delete = Vec::new();
    for (name, app) in held {
        let status = kube.wait_status(&groups, name, within, failed);
        assert_eq!(
            status["leftInstalled"],
            json!([format!("{}/{app}", kube.namespace)])
        );
        let ready = status["conditions"][0]["message"].as_str().unwrap();
        assert!(
            ready.contains(&format!("baton delete group {name} --force")),
            "{ready}"
        );
        first_delete.push(status["run"].clone());
    }
    // Deleted again, held-a runs its delete again (the release fails to go again). By the
    // time that ended, a group let go after its first failed delete would be gone.
    let out = env.cli(&["delete", "group", "held-a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = kube.wait_status(&groups, "held-a", within, |s| {
        failed(s) && s["run"] != first_delete[0]
    });
    assert_eq!(
        again["leftInstalled"],
        json!([format!("{}/db", kube.namespace)])
    );
    let b = kube.block_on(groups.get("held-b")).unwrap();
    assert_eq!(
        b.metadata.finalizers.as_deref(),
        Some(&["baton.dev/uninstall".to_owned()][..])
    );
    let gone = |name: &str| {
        let started = std::time::Instant::now();
        while kube.block_on(groups.get_opt(name)).unwrap().is_some() {
            assert!(started.elapsed() < within, "{name} was never let go");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let out = env.cli(&["delete", "group", "held-a", "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    gone("held-a");
    let patch = json!({"metadata": {"annotations": {"baton.dev/force-delete": "true"}}});
    kube.block_on(groups.patch(
        "held-b",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    ))
    .unwrap();
    gone("held-b");
    // Let go, not uninstalled: their releases are still there.
    for (_, app) in held {
        assert!(world.helm_release(&kube.namespace, app).is_some(), "{app}");
    }
    // --force is for groups only: anything else is forgotten at once.
    let out = env.cli(&["delete", "workflow", "w", "--force"]);
    assert_eq!(out.status.code(), Some(2));
}
