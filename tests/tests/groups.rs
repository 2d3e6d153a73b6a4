//! Application groups end to end: the planner and `helm` workers as processes, with both
//! drivers.
//!
//! - `cli`: the workers run a strict scripted **stand-in** (`tests/helm-standin/helm`, put on
//!   `PATH`): it refuses any flag it does not know, keeps every release's revisions, status and
//!   values in a directory as Helm keeps them in Secrets, and fails to install a release that
//!   would own what another release owns (a subchart left enabled in its parent).
//!   `helm_cli.rs` runs the driver against real Helm and the tests' control plane; the tests
//!   here keep the stand-in for what real Helm cannot be made to give on demand: its log of
//!   calls with their argument vectors and start and end times (the order releases are
//!   installed and uninstalled in, which ran together, that no secret was ever an argument),
//!   a failure or a delay of one chosen release at one chosen step (to kill a worker or a
//!   planner in the middle of it), and a release found in a state (`uninstalling`) that a
//!   Helm killed at a chosen instant would leave.
//! - `flux`: the workers write `HelmRelease` objects to the tests' Kubernetes API server
//!   through the real `kube` client; a helm-controller actor answers them through the API.
//!
//! Failures are asked for through values, as both stand-ins read them: `batonTestFail`,
//! `batonTestFailUninstall`, `batonTestDelay` (seconds a release takes).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use baton_schemas::group::subchart_release_name;
use baton_tests::kube::{HelmController, KubeEnv};
use baton_tests::{Env, wait_for_port};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PostParams};
use serde_json::{Value, json};

const BOOKINFO: &str = include_str!("../../examples/applicationgroups/bookinfo.yaml");

fn program() -> &'static str {
    env!("CARGO_BIN_EXE_baton-under-test")
}

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

/// A group `g` of applications `(name, dependencies, version, values)` from `c.example.com`,
/// released into namespace `apps`.
fn group(apps: &[(&str, &str, &str, &str)]) -> String {
    group_in("apps", apps)
}

/// A group `g` of applications `(name, dependencies, version, values)` from `c.example.com`,
/// released into `namespace`.
fn group_in(namespace: &str, apps: &[(&str, &str, &str, &str)]) -> String {
    let mut text = String::from(
        "apiVersion: orkestra.azure.microsoft.com/v1alpha1\nkind: ApplicationGroup\nmetadata: {name: g}\nspec:\n  applications:\n",
    );
    for (name, deps, version, values) in apps {
        text.push_str(&format!(
            "  - name: {name}\n    dependencies: [{deps}]\n    spec:\n      chart: {{url: 'https://c.example.com', name: {name}, version: '{version}'}}\n      release: {{targetNamespace: {namespace}, values: {{{values}}}}}\n"
        ));
    }
    text
}

fn versions(names: &[&str]) -> Value {
    let charts: serde_json::Map<String, Value> = names
        .iter()
        .map(|n| (n.to_string(), json!({"1.0.0": {}, "2.0.0": {}})))
        .collect();
    json!({"https://c.example.com": charts})
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
fn invalid_groups_are_refused_with_their_path_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    let text = group(&[
        ("a", "c", "1", ""),
        ("b", "a", "1", ""),
        ("c", "b", "1", ""),
    ]);
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new(program())
        .args(["apply", "-f", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml: spec.applications[0].dependencies: cycle: a -> c -> b -> a"),
        "{stderr}"
    );
}

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
        let worker = env
            .start_worker("worker", kinds, &["--helm-driver", "flux"])
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

#[test]
fn bookinfo_applied_as_an_object_is_released_with_the_flux_driver_and_deleted_in_reverse() {
    // Bookinfo's charts are real: on a real cluster this runs against its Flux, without the
    // order the actor's record shows.
    let Some(world) = FluxEnv::new(
        "bookinfo_applied_as_an_object_is_released_with_the_flux_driver_and_deleted_in_reverse",
        true,
        "helm",
        false,
        &["bookinfo", "ambassador"],
    ) else {
        return;
    };
    let groups: Api<DynamicObject> = Api::all_with(world.kube.client.clone(), &orkestra_groups());
    // details and ratings take the actor 2 s each (not its 0.3 s default), so that their
    // overlap shows however slowly the worker gets to the second one.
    let mut text = BOOKINFO.to_owned();
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
