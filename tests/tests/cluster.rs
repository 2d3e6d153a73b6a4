//! `kubectl apply` works: a planner started with `--watch-kubernetes` picks up Workflow, Task
//! and Ignitor objects from the API server (the tests' control plane, or the cluster of
//! `BATON_TEST_KUBECONFIG`), runs them, and writes their status back, which is what `kubectl
//! get` prints in Orca's columns. Objects are created with the real `kube` client exactly as
//! the YAML files say, as `kubectl apply -f` would send them.

use std::time::{Duration, Instant};

use baton_schemas::crd::{KINDS, Kind};
use baton_schemas::status::{RunStatus, State};
use baton_tests::Env;
use baton_tests::kube::KubeEnv;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

struct ClusterEnv {
    env: Env,
    kube: KubeEnv,
}

fn cluster_env() -> ClusterEnv {
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).unwrap();
    let kube = KubeEnv::for_env(&mut env).unwrap();
    kube.install_crds().unwrap();
    let planner = env
        .start_planner_with(&["--watch-kubernetes", "--watch-namespace", &kube.namespace])
        .unwrap();
    env.keep(planner);
    let worker = env.start_worker("worker", "pod,noop,exec", &[]).unwrap();
    env.keep(worker);
    ClusterEnv { env, kube }
}

fn kind(group: &str, name: &str) -> &'static Kind {
    KINDS
        .iter()
        .find(|k| k.group == group && k.kind == name)
        .expect("a kind Baton serves")
}

fn api(kube: &KubeEnv, kind: &Kind) -> Api<DynamicObject> {
    kube.kind_api(kind.group, kind.kind)
}

/// Creates every document of a YAML file as an object in the test's namespace.
fn create_all(kube: &KubeEnv, text: &str) {
    for document in serde_norway::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(document).unwrap();
        if value.is_null() {
            continue;
        }
        let kind = KINDS
            .iter()
            .find(|k| value["apiVersion"] == k.api_version() && value["kind"] == k.kind)
            .expect("a kind Baton serves");
        let object: DynamicObject = serde_json::from_value(value).unwrap();
        kube.block_on(api(kube, kind).create(&PostParams::default(), &object))
            .unwrap();
    }
}

/// Waits until `name`'s status satisfies `done`, at most `within`; returns that status.
fn wait_status(
    kube: &KubeEnv,
    kind: &Kind,
    name: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    kube.wait_status(&api(kube, kind), name, within, done)
}

fn runs(env: &Env) -> Vec<RunStatus> {
    serde_json::from_slice(&env.cli(&["runs", "-o", "json"]).stdout).unwrap_or_default()
}

/// Returns the names of what `baton <what>` lists; a listing that fails fails the test (an
/// empty answer must mean nothing is registered).
fn listed(env: &Env, what: &str) -> Vec<String> {
    let out = env.cli(&[what, "-o", "json"]);
    assert!(
        out.status.success(),
        "baton {what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).expect("a JSON list");
    all.iter()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn orcas_example_applied_as_objects_runs_and_shows_orcas_status_columns() {
    let ClusterEnv { env, kube } = cluster_env();
    let example = include_str!("../../examples/orca/task1-task2-ignitor1.yaml");
    create_all(&kube, example);
    let task = kind("sirocco.cloud", "Task");
    let task2 = wait_status(&kube, task, "task2", Duration::from_secs(90), |s| {
        s["lastSuccess"].is_string()
    });
    assert_eq!(task2["failuresCount"], 0);
    assert!(task2["lastFailure"].is_null());
    assert!(task2["lastSuccess"].as_str().unwrap().ends_with('Z'));
    let task1 = wait_status(&kube, task, "task1", Duration::from_secs(10), |s| {
        s["lastSuccess"].is_string()
    });
    assert_eq!(task1["state"], "Pending");
    // As Orca did, a one-shot ignitor that fired is deleted, so that applying it again fires
    // it again.
    let ignitors = api(&kube, kind("sirocco.cloud", "Ignitor"));
    let gone = Instant::now();
    while kube
        .block_on(ignitors.get_opt("ignitor1"))
        .unwrap()
        .is_some()
    {
        assert!(
            gone.elapsed() < Duration::from_secs(30),
            "a fired NOW ignitor is not deleted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The chain passed task1's termination log to task2, whose pod ran in the objects'
    // namespace (the Task documents name none).
    let all = runs(&env);
    assert_eq!(all.len(), 1, "{all:#?}");
    let chain = &all[0];
    assert_eq!(chain.state, State::Succeeded);
    let ignitor_only: String = example
        .split("---")
        .filter(|d| d.contains("kind: Ignitor"))
        .collect();
    create_all(&kube, &ignitor_only);
    let started = Instant::now();
    let all = loop {
        let all = runs(&env);
        if all.len() == 2 && all.iter().all(|r| r.state.is_terminal()) {
            break all;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the re-applied ignitor did not fire again: {all:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(all.iter().all(|r| r.state == State::Succeeded), "{all:#?}");
    let output = |n: &str| {
        chain
            .nodes
            .iter()
            .find(|x| x.name == n)
            .and_then(|x| x.output.clone())
    };
    assert_eq!(
        output("task2").as_deref(),
        Some("hello from task1 (started by ignitor1 with workflow ABC)")
    );
}

#[test]
fn workflow_objects_run_once_per_generation_and_bad_objects_are_refused_with_their_path() {
    let ClusterEnv { env, kube } = cluster_env();
    let workflow = kind("baton.dev", "Workflow");
    create_all(
        &kube,
        "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: hello}\nspec:\n  nodes:\n  - {name: a, kind: noop}\n  - {name: b, kind: exec, needs: [a], command: [sh, -c, 'printf one > \"$BATON_OUTPUT\"']}\n",
    );
    let first = wait_status(&kube, workflow, "hello", Duration::from_secs(60), |s| {
        s["state"] == "succeeded"
    });
    assert_eq!(first["observedGeneration"], 1);
    assert!(first["finishedAt"].is_string());
    let first_run = first["run"].as_str().unwrap().to_owned();
    assert_eq!(
        env.status(&first_run).unwrap().nodes[1].output.as_deref(),
        Some("one")
    );

    // A status write is not a new generation: nothing more runs.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(runs(&env).len(), 1);

    // A changed spec is a new generation: one new run.
    let patch = json!({"spec": {"nodes": [{"name": "a", "kind": "noop"}, {"name": "b", "kind": "exec", "needs": ["a"], "command": ["sh", "-c", "printf two > \"$BATON_OUTPUT\""]}]}});
    kube.block_on(api(&kube, workflow).patch(
        "hello",
        &PatchParams::default(),
        &Patch::Merge(&patch),
    ))
    .unwrap();
    let second = wait_status(&kube, workflow, "hello", Duration::from_secs(60), |s| {
        s["observedGeneration"] == 2 && s["state"] == "succeeded"
    });
    let second_run = second["run"].as_str().unwrap();
    assert_ne!(second_run, first_run);
    assert_eq!(
        env.status(second_run).unwrap().nodes[1].output.as_deref(),
        Some("two")
    );
    assert_eq!(runs(&env).len(), 2);

    // A schedule Baton cannot read is refused with the field path `baton validate` gives
    // (the CRD's schema lets any string through), and nothing registers.
    create_all(
        &kube,
        "apiVersion: baton.dev/v1alpha1\nkind: Ignitor\nmetadata: {name: typo}\nspec: {scheduled: every tuesday}\n",
    );
    let refused = wait_status(
        &kube,
        kind("baton.dev", "Ignitor"),
        "typo",
        Duration::from_secs(30),
        |s| s["message"].is_string(),
    );
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "ignitors.baton.dev/{}/typo: spec.scheduled: ",
            kube.namespace
        )),
        "{message}"
    );
    assert!(!listed(&env, "ignitors").contains(&"typo".to_owned()));
}

#[test]
fn a_deleted_ignitor_is_forgotten() {
    let ClusterEnv { env, kube } = cluster_env();
    let ignitor = kind("baton.dev", "Ignitor");
    create_all(
        &kube,
        "apiVersion: baton.dev/v1alpha1\nkind: Ignitor\nmetadata: {name: hourly}\nspec: {scheduled: '@hourly'}\n",
    );
    let status = wait_status(&kube, ignitor, "hourly", Duration::from_secs(30), |s| {
        s["nextFire"].is_string()
    });
    assert!(status["lastFire"].is_null());
    assert_eq!(listed(&env, "ignitors"), ["hourly"]);
    kube.block_on(api(&kube, ignitor).delete("hourly", &DeleteParams::default()))
        .unwrap();
    let started = Instant::now();
    while !listed(&env, "ignitors").is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the ignitor is still registered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_ignitor_deleted_while_no_planner_watched_is_forgotten_and_fires_no_more() {
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).unwrap();
    let kube = KubeEnv::for_env(&mut env).unwrap();
    kube.install_crds().unwrap();
    let watch = ["--watch-kubernetes", "--watch-namespace", &kube.namespace];
    let mut planner = env.start_planner_with(&watch).unwrap();
    let worker = env.start_worker("worker", "pod", &[]).unwrap();
    env.keep(worker);
    create_all(
        &kube,
        "apiVersion: baton.dev/v1alpha1\nkind: Task\nmetadata: {name: tick}\nspec:\n  startOnIgnition: [every2s]\n  template: {spec: {containers: [{name: main, image: busybox, command: [\"true\"]}]}}\n---\napiVersion: baton.dev/v1alpha1\nkind: Ignitor\nmetadata: {name: every2s}\nspec: {scheduled: \"*/2 * * * * * *\"}\n",
    );
    let started = Instant::now();
    while runs(&env).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the ignitor never fired"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The planner dies; the ignitor is deleted while no planner watches.
    planner.kill9();
    let ignitor = kind("baton.dev", "Ignitor");
    kube.block_on(api(&kube, ignitor).delete("every2s", &DeleteParams::default()))
        .unwrap();
    drop(planner);
    let planner = env.start_planner_with(&watch).unwrap();
    env.keep(planner);
    let started = Instant::now();
    while listed(&env, "ignitors").contains(&"every2s".to_owned()) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the deleted ignitor is still registered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The task that still exists stays; the ignitor fires no more.
    assert_eq!(listed(&env, "tasks"), ["tick"]);
    let fired = runs(&env).len();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        runs(&env).len(),
        fired,
        "no fire after the ignitor was forgotten"
    );
    let log = std::fs::read_to_string(env.dir.path().join("planner.log")).unwrap();
    assert!(log.contains("object deleted while no planner watched; forgetting it"));
}

/// Returns the reasons and notes of the events about `name` in the test's namespace.
fn events_about(kube: &KubeEnv, name: &str) -> Vec<(String, String, String)> {
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(kube.client.clone(), &kube.namespace);
    kube.block_on(events.list(&Default::default()))
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect()
}

/// Waits until the events about `name` have `reason`, at most 30 s; returns them.
fn wait_event(kube: &KubeEnv, name: &str, reason: &str) -> Vec<(String, String, String)> {
    let started = Instant::now();
    loop {
        let events = events_about(kube, name);
        if events.iter().any(|(_, r, _)| r == reason) {
            return events;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no {reason} event about {name}: {events:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn objects_carry_kstatus_conditions_kubectl_waits_on_and_events_tell_their_story() {
    let ClusterEnv { env: _env, kube } = cluster_env();
    let workflow = kind("baton.dev", "Workflow");
    create_all(
        &kube,
        "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: fine}\nspec:\n  nodes:\n  - {name: a, kind: noop}\n---\napiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: broken}\nspec:\n  nodes:\n  - {name: migrate, kind: exec, command: [sh, -c, 'echo database not reachable >&2; exit 3']}\n---\napiVersion: baton.dev/v1alpha1\nkind: Task\nmetadata: {name: template}\nspec:\n  template: {spec: {containers: [{name: main, image: busybox}]}}\n",
    );
    // `kubectl wait --for=condition=Ready` works on a workflow: it waits for its run.
    let out = std::process::Command::new(baton_tests::install::kubectl())
        .env("KUBECONFIG", &kube.kubeconfig)
        .args([
            "wait",
            "--for=condition=Ready",
            "--timeout=60s",
            "-n",
            &kube.namespace,
        ])
        .arg("workflows.baton.dev/fine")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl wait: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let condition = |status: &Value, kind: &str| -> Value {
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} in {status:#}"))
    };
    let fine = wait_status(&kube, workflow, "fine", Duration::from_secs(30), |s| {
        s["state"] == "succeeded"
    });
    assert_eq!(condition(&fine, "Reconciling")["status"], "False");
    assert_eq!(condition(&fine, "Stalled")["status"], "False");
    assert_eq!(condition(&fine, "Ready")["observedGeneration"], 1);
    let told = wait_event(&kube, "fine", "RunSucceeded");
    assert!(
        told.iter()
            .any(|(t, r, _)| t == "Normal" && r == "RunStarted"),
        "{told:#?}"
    );

    // A failing run is Stalled, with its failed node and why, and Warning events say so.
    let broken = wait_status(&kube, workflow, "broken", Duration::from_secs(60), |s| {
        s["state"] == "failed"
    });
    let stalled = condition(&broken, "Stalled");
    assert_eq!(stalled["status"], "True");
    assert_eq!(condition(&broken, "Ready")["status"], "False");
    assert!(
        stalled["message"]
            .as_str()
            .unwrap()
            .ends_with("failed: node migrate: database not reachable"),
        "{stalled:#}"
    );
    let told = wait_event(&kube, "broken", "RunFailed");
    assert!(
        told.iter().any(|(t, r, note)| t == "Warning"
            && r == "NodeFailed"
            && note.contains("node migrate failed after 1 attempt(s)")
            && note.contains("database not reachable")),
        "{told:#?}"
    );

    // A template is Ready once registered, with its generation observed.
    let task = wait_status(
        &kube,
        kind("baton.dev", "Task"),
        "template",
        Duration::from_secs(30),
        |s| s["conditions"].is_array(),
    );
    assert_eq!(condition(&task, "Ready")["status"], "True");
    assert_eq!(task["observedGeneration"], 1);
}
