//! The dev install run for real, as far as these machines allow: its objects applied to the
//! API server fixture, then the planner and the worker started with the arguments and
//! environment their Deployments give (read from the rendered manifests, not copied), each
//! with a token of its own ServiceAccount as a pod would have it. Workflow objects with a pod
//! node run to the end, before and after the active planner of two is killed; the API's
//! EndpointSlice follows the lease, a standby answers its health port; the manifests' RBAC
//! lets each part make its calls. What cannot be the manifests' here is replaced, and only that: the NATS URL (a
//! cluster Service name) by the test's nats-server, the listen address and data directory
//! by loopback and a temporary directory.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use baton_tests::install::{apply, find, render};
use baton_tests::kube::KubeEnv;
use baton_tests::{Env, free_port, wait_for_port};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::Value;

const BATON: &str = env!("CARGO_BIN_EXE_baton-under-test");

/// The first container's args and environment of Deployment `name`: literal values, and
/// `fieldRef`s resolved as the kubelet would (`pod_ip` is the pod's address).
fn container(objects: &[Value], name: &str, pod_ip: &str) -> (Vec<String>, Vec<(String, String)>) {
    let deployment = find(objects, "Deployment", name);
    let namespace = deployment["metadata"]["namespace"].as_str().unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let env = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|var| {
            let name = var["name"].as_str().unwrap().to_owned();
            let value = match (&var["value"], &var["valueFrom"]["fieldRef"]["fieldPath"]) {
                (Value::String(v), _) => v.clone(),
                (_, Value::String(path)) if path == "metadata.namespace" => namespace.to_owned(),
                (_, Value::String(path)) if path == "status.podIP" => pod_ip.to_owned(),
                _ => panic!(
                    "{name} of {}: a value this test cannot give",
                    deployment["metadata"]["name"]
                ),
            };
            (name, value)
        })
        .collect();
    (args, env)
}

/// Writes a kubeconfig for ServiceAccount `account` of baton-system, as its pod would have
/// it: the fixture's server and CA, a token the API server issued for the account, and
/// baton-system as the default namespace.
fn account_kubeconfig(kube: &KubeEnv, dir: &Path, account: &str) -> std::path::PathBuf {
    let token = kube.token("baton-system", account).unwrap();
    let path = dir.join(format!("{account}.kubeconfig"));
    kube.kubeconfig_with_token(&path, &token, "baton-system")
        .unwrap();
    path
}

#[test]
fn the_planner_and_worker_run_a_pod_workflow_with_the_manifests_arguments_and_rbac() {
    let mut env = Env::new(BATON).unwrap();
    let kube = KubeEnv::new(env.dir.path()).unwrap();
    let dir = env.dir.path().to_owned();
    let objects = render("dev");
    apply(&kube.kubeconfig, &dir, "dev", &objects);
    // Baton's kinds are served a moment after their CRDs are made.
    kube.block_on(async {
        for _ in 0..300 {
            if kube
                .client
                .list_api_group_resources("baton.dev/v1alpha1")
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("baton.dev/v1alpha1 is not served 30 s after its CRDs were made");
    });

    // RBAC takes effect when the API server's cache sees the bindings.
    let account = |name: &str| format!("system:serviceaccount:baton-system:{name}");
    let started = Instant::now();
    while !(kube.may(
        &account("baton-planner"),
        "list",
        "baton.dev",
        "workflows",
        None,
    ) && kube.may(
        &account("baton-worker"),
        "create",
        "",
        "pods",
        Some(&kube.namespace),
    )) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the dev overlay's bindings took no effect in 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let api_port = free_port();
    // A replica of a Deployment as a process: the manifest's args and environment, the pod's
    // address, its own data directory and health or metrics port (the pods' ports would not
    // collide), and a token of its ServiceAccount. Returns the process and that port.
    let start = |env: &mut Env, deployment: &str, replica: &str, pod_ip: &str, account: &str| {
        let (args, vars) = container(&objects, deployment, pod_ip);
        let mut command = Command::new(BATON);
        command
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &dir);
        let mut health = None;
        for (name, value) in vars {
            let value = match name.as_str() {
                "BATON_NATS_URL" => env.nats_url(),
                "BATON_LISTEN" => format!("127.0.0.1:{api_port}"),
                "BATON_HEALTH_LISTEN" | "BATON_METRICS_LISTEN" => {
                    let port = free_port();
                    health = Some(port);
                    format!("127.0.0.1:{port}")
                }
                "BATON_DATA_DIR" => dir.join(replica).display().to_string(),
                _ => value,
            };
            command.env(name, value);
        }
        // The test's, not the manifest's (10 s): a takeover within the test's patience.
        command.env("BATON_LEASE_TTL", "3s");
        command.env("KUBECONFIG", account_kubeconfig(&kube, &dir, account));
        (env.spawn(replica, command).unwrap(), health)
    };
    let get = |port: u16, path: &'static str| {
        kube.block_on(async move {
            let answer = reqwest::get(format!("http://127.0.0.1:{port}{path}")).await?;
            anyhow::ensure!(answer.status().is_success(), "{answer:?}");
            Ok(answer.text().await?)
        })
    };
    let health = |port: u16| get(port, "/healthz");
    // Waits until the metrics served on `port` say `line`, at most 30 s.
    let metrics_say = |port: u16, line: &str| {
        let started = Instant::now();
        loop {
            let text = get(port, "/metrics").unwrap();
            if text.lines().any(|l| l == line) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no {line:?} after 30 s in:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let slices: Api<EndpointSlice> = Api::namespaced(kube.client.clone(), "baton-system");
    // Waits until the API's EndpointSlice names `address`; returns its epoch.
    let advertised = |address: &str| {
        let started = Instant::now();
        loop {
            let slice = kube.block_on(slices.get("baton-api")).unwrap();
            let addresses: Vec<&str> = slice
                .endpoints
                .iter()
                .flat_map(|e| e.addresses.iter().map(String::as_str))
                .collect();
            if addresses == [address] {
                let epoch = slice.metadata.annotations.as_ref().unwrap()["baton.dev/epoch"].clone();
                return epoch.parse::<u64>().unwrap();
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the slice names {addresses:?}, not {address}, after 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    let (mut first, first_health) = start(
        &mut env,
        "baton-planner",
        "planner-a",
        "10.0.0.1",
        "baton-planner",
    );
    let (worker, worker_metrics) = start(
        &mut env,
        "baton-worker",
        "baton-worker",
        "10.0.0.3",
        "baton-worker",
    );
    env.keep(worker);
    wait_for_port(api_port, Duration::from_secs(60)).unwrap();
    let first_epoch = advertised("10.0.0.1");
    assert_eq!(health(first_health.unwrap()).unwrap(), "active");
    metrics_say(first_health.unwrap(), "baton_planner_leader 1");
    // A second replica stands by: healthy (a rollout counts it), not advertised.
    let (second, second_health) = start(
        &mut env,
        "baton-planner",
        "planner-b",
        "10.0.0.2",
        "baton-planner",
    );
    let second_health = second_health.unwrap();
    wait_for_port(second_health, Duration::from_secs(30)).unwrap();
    assert_eq!(health(second_health).unwrap(), "standing by");
    metrics_say(second_health, "baton_planner_leader 0");
    env.keep(second);

    run_workflow(&kube, "installed");
    // The active replica dies: the standby takes over and the Service follows it.
    first.kill9();
    let second_epoch = advertised("10.0.0.2");
    assert!(
        second_epoch > first_epoch,
        "{second_epoch} after {first_epoch}"
    );
    assert_eq!(health(second_health).unwrap(), "active");
    run_workflow(&kube, "after-takeover");
    // The worker's metrics port counts the two pod nodes it ran, and the pods it created
    // through the Kubernetes API.
    metrics_say(
        worker_metrics.unwrap(),
        r#"baton_worker_jobs_total{kind="pod",outcome="succeeded"} 2"#,
    );
    let text = get(worker_metrics.unwrap(), "/metrics").unwrap();
    let created = baton_tests::sample(
        &text,
        r#"baton_kubernetes_calls_total{verb="create",resource="pods",outcome="ok"}"#,
    );
    assert!(created.is_some_and(|n| n >= 2.0), "{text}");

    // The pod worker made the nodes' pods, with its own account.
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(kube.client.clone(), &kube.namespace);
    let made = kube
        .block_on(
            pods.list(
                &kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=baton"),
            ),
        )
        .unwrap();
    assert!(
        !made.items.is_empty(),
        "no pod of Baton's in {}",
        kube.namespace
    );
    // No call was refused (the watches of every kind, status writes, the slice, the pods).
    for part in ["planner-a", "planner-b", "baton-worker"] {
        let log = std::fs::read_to_string(dir.join(format!("{part}.log"))).unwrap();
        assert!(
            !log.to_ascii_lowercase().contains("forbidden"),
            "{part} was refused a call:\n{log}"
        );
    }
}

/// Creates a Workflow object `name` with a pod node in the test's namespace and waits until
/// it succeeded.
fn run_workflow(kube: &KubeEnv, name: &str) {
    let workflows = kube.kind_api("baton.dev", "Workflow");
    let workflow: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "baton.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"nodes": [
            {"name": "first", "kind": "noop"},
            {"name": "in-a-pod", "kind": "pod", "needs": ["first"], "namespace": kube.namespace,
             "template": {"spec": {"containers": [{"name": "main", "image": "busybox",
                "command": ["sh", "-c", "printf from-the-pod > /dev/termination-log"]}]}}}
        ]}
    }))
    .unwrap();
    kube.block_on(workflows.create(&PostParams::default(), &workflow))
        .unwrap();
    let status = kube.wait_status(&workflows, name, Duration::from_secs(120), |s| {
        s["state"] == "succeeded" || s["state"] == "failed"
    });
    assert_eq!(status["state"], "succeeded", "{name}: {status:#}");
}
