//! The dev install run for real, as far as these machines allow: its objects applied to the
//! API server fixture, then the planner and the worker started with the arguments and
//! environment their Deployments give (read from the rendered manifests, not copied), each
//! with a token of its own ServiceAccount as a pod would have it. A Workflow object with a pod
//! node, applied with the API, runs to the end: the manifests' RBAC lets each part make its
//! calls. What cannot be the manifests' here is replaced, and only that: the NATS URL (a
//! cluster Service name) by the test's nats-server, the listen address and data directory
//! by loopback and a temporary directory.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use baton_schemas::crd::KINDS;
use baton_tests::install::{apply, find, render};
use baton_tests::kube::KubeEnv;
use baton_tests::{Env, free_port, wait_for_port};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::Value;

const BATON: &str = env!("CARGO_BIN_EXE_baton-under-test");

/// The first container's args and environment of Deployment `name`: literal values, and
/// `fieldRef: metadata.namespace` resolved as the kubelet would.
fn container(objects: &[Value], name: &str) -> (Vec<String>, Vec<(String, String)>) {
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

/// Writes a kubeconfig for ServiceAccount `account` of baton-system: the fixture's server and
/// CA with a token the API server issued for the account.
fn account_kubeconfig(kube: &KubeEnv, dir: &Path, account: &str) -> std::path::PathBuf {
    let token = kube.block_on(async {
        let accounts: Api<ServiceAccount> = Api::namespaced(kube.client.clone(), "baton-system");
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(3600),
                ..Default::default()
            },
            ..Default::default()
        };
        accounts
            .create_token_request(account, &PostParams::default(), &request)
            .await
            .unwrap()
            .status
            .unwrap()
            .token
    });
    let text = std::fs::read_to_string(&kube.kubeconfig).unwrap();
    let mut config: Value = serde_norway::from_str(&text).unwrap();
    for user in config["users"].as_array_mut().unwrap() {
        user["user"] = serde_json::json!({"token": token});
    }
    let path = dir.join(format!("{account}.kubeconfig"));
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
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

    let api_port = free_port();
    let start = |env: &mut Env, deployment: &str, account: &str| {
        let (args, vars) = container(&objects, deployment);
        let mut command = Command::new(BATON);
        command
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &dir);
        for (name, value) in vars {
            let value = match name.as_str() {
                "BATON_NATS_URL" => env.nats_url(),
                "BATON_LISTEN" => format!("127.0.0.1:{api_port}"),
                "BATON_DATA_DIR" => dir.join(deployment).display().to_string(),
                _ => value,
            };
            command.env(name, value);
        }
        command.env("KUBECONFIG", account_kubeconfig(&kube, &dir, account));
        let process = env.spawn(deployment, command).unwrap();
        env.keep(process);
    };
    start(&mut env, "baton-planner", "baton-planner");
    start(&mut env, "baton-worker", "baton-worker");
    wait_for_port(api_port, Duration::from_secs(60)).unwrap();
    let health = kube
        .block_on(reqwest::get(format!("http://127.0.0.1:{api_port}/healthz")))
        .unwrap();
    assert!(health.status().is_success(), "{health:?}");

    // A Workflow object with a pod node, in a namespace of the test's.
    let kind = KINDS
        .iter()
        .find(|k| k.group == "baton.dev" && k.kind == "Workflow")
        .unwrap();
    let resource = ApiResource {
        group: kind.group.into(),
        version: "v1alpha1".into(),
        api_version: kind.api_version(),
        kind: kind.kind.into(),
        plural: kind.plural.into(),
    };
    let workflows: Api<DynamicObject> =
        Api::namespaced_with(kube.client.clone(), &kube.namespace, &resource);
    let workflow: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "baton.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "installed"},
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
    let started = Instant::now();
    let status = loop {
        let object = kube.block_on(workflows.get("installed")).unwrap();
        let status = object.data["status"].clone();
        if status["state"] == "succeeded" || status["state"] == "failed" {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the workflow's status after 120 s: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["state"], "succeeded", "{status:#}");
    // The pod worker made the node's pod, with its own account.
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
}
