//! The install manifests (`deploy/kubernetes/`): every overlay renders with kubectl's
//! kustomize; every rendered object parses into k8s-openapi's types (KEDA's ScaledObject into
//! one of this file) and serializes back to the same JSON, so an unknown or misspelt field
//! fails; no role grants a wildcard; `deploy/install.yaml` is the dev overlay as rendered; and
//! the production overlays apply to the API server fixture, where each component's
//! ServiceAccount may make the calls its code makes (listed from the code) and no others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use baton_tests::install::{render, render_text};
use baton_tests::kube::KubeEnv;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

const OVERLAYS: [&str; 3] = ["dev", "production", "production-namespaced"];

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn id(object: &Value) -> String {
    format!(
        "{}/{} {}",
        object["apiVersion"].as_str().unwrap_or("?"),
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// KEDA's ScaledObject, with the fields these manifests may use; any other fails to parse.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ScaledObject {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: ScaledObjectSpec,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ScaledObjectSpec {
    scale_target_ref: ScaleTargetRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_replica_count: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_replica_count: Option<i32>,
    triggers: Vec<ScaleTrigger>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ScaleTargetRef {
    name: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleTrigger {
    #[serde(rename = "type")]
    kind: String,
    metadata: BTreeMap<String, String>,
}

/// The metadata KEDA's NATS JetStream scaler reads (keda.sh/docs/scalers/nats-jetstream).
const JETSTREAM_SCALER_KEYS: [&str; 8] = [
    "natsServerMonitoringEndpoint",
    "account",
    "stream",
    "consumer",
    "lagThreshold",
    "activationLagThreshold",
    "useHttps",
    "consumerName",
];

/// Parses `object` into its typed struct and serializes it back.
fn round_trip(object: &Value) -> Value {
    fn via<T: serde::de::DeserializeOwned + Serialize>(object: &Value) -> Value {
        let typed: T = serde_json::from_value(object.clone())
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", id(object)));
        serde_json::to_value(typed).unwrap()
    }
    use k8s_openapi::api::{apps, autoscaling, core, networking, policy, rbac};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    match (api_version, object["kind"].as_str().unwrap_or_default()) {
        ("v1", "Namespace") => via::<core::v1::Namespace>(object),
        ("v1", "ServiceAccount") => via::<core::v1::ServiceAccount>(object),
        ("v1", "Service") => via::<core::v1::Service>(object),
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            via::<k8s_openapi::api::discovery::v1::EndpointSlice>(object)
        }
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            via::<CustomResourceDefinition>(object)
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => via::<rbac::v1::ClusterRole>(object),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            via::<rbac::v1::ClusterRoleBinding>(object)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => via::<rbac::v1::Role>(object),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => via::<rbac::v1::RoleBinding>(object),
        ("apps/v1", "Deployment") => via::<apps::v1::Deployment>(object),
        ("policy/v1", "PodDisruptionBudget") => via::<policy::v1::PodDisruptionBudget>(object),
        ("networking.k8s.io/v1", "NetworkPolicy") => via::<networking::v1::NetworkPolicy>(object),
        ("autoscaling/v2", "HorizontalPodAutoscaler") => {
            via::<autoscaling::v2::HorizontalPodAutoscaler>(object)
        }
        ("keda.sh/v1alpha1", "ScaledObject") => {
            let typed: ScaledObject = serde_json::from_value(object.clone())
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", id(object)));
            for trigger in &typed.spec.triggers {
                assert_eq!(trigger.kind, "nats-jetstream", "{}", id(object));
                for key in trigger.metadata.keys() {
                    assert!(
                        JETSTREAM_SCALER_KEYS.contains(&key.as_str()),
                        "{}: the nats-jetstream scaler has no {key}",
                        id(object)
                    );
                }
            }
            serde_json::to_value(typed).unwrap()
        }
        _ => panic!("{}: a kind this test does not know", id(object)),
    }
}

/// Whether two JSON values are equal, numbers by value (k8s-openapi keeps a schema's
/// `minimum` as a float: `0` comes back as `0.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[test]
fn every_overlay_renders_into_typed_objects_without_a_wildcard_role() {
    for overlay in OVERLAYS {
        let objects = render(overlay);
        assert!(objects.len() > 20, "{overlay}: {} objects", objects.len());
        for object in &objects {
            let back = round_trip(object);
            assert!(
                same(&back, object),
                "{overlay}: {} does not serialize back to itself (an unknown or misspelt field):\n{back}\n{object}",
                id(object)
            );
            if matches!(object["kind"].as_str(), Some("Role" | "ClusterRole")) {
                for rule in object["rules"].as_array().into_iter().flatten() {
                    for field in ["verbs", "resources", "apiGroups", "resourceNames"] {
                        let values = rule[field].as_array().cloned().unwrap_or_default();
                        assert!(
                            !values
                                .iter()
                                .any(|v| v.as_str().is_some_and(|v| v.contains('*'))),
                            "{overlay}: {} grants a wildcard in {field}: {rule}",
                            id(object)
                        );
                    }
                }
            }
        }
        // Every Deployment's ServiceAccount is among the objects.
        let accounts: Vec<&str> = objects
            .iter()
            .filter(|o| o["kind"] == "ServiceAccount")
            .filter_map(|o| o["metadata"]["name"].as_str())
            .collect();
        for deployment in objects.iter().filter(|o| o["kind"] == "Deployment") {
            if let Some(account) =
                deployment["spec"]["template"]["spec"]["serviceAccountName"].as_str()
            {
                assert!(
                    accounts.contains(&account),
                    "{overlay}: {} runs as {account}, which it does not create",
                    id(deployment)
                );
            }
        }
    }
}

#[test]
fn install_yaml_is_the_dev_overlay_as_rendered() {
    let committed =
        std::fs::read_to_string(repository().join("deploy/install.yaml")).unwrap_or_default();
    let body = committed
        .split_once('\n')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    assert!(
        body == render_text("dev"),
        "deploy/install.yaml is missing or stale: run `make install-yaml` and commit it"
    );
}

/// One call a component's code makes: verb, API group, resource (with `/subresource`, or
/// `:name` for one object), and namespace (`None`: cluster-scoped or every namespace).
type Call = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

/// The planner's calls (planner/src/cluster.rs, planner/src/api/kube_auth.rs) in the
/// namespace it watches (`None`: every namespace).
fn planner_calls(watched: Option<&'static str>) -> Vec<Call> {
    let mut calls = Vec::new();
    for (group, resources) in [
        (
            "baton.dev",
            &[
                "workflows",
                "tasks",
                "ignitors",
                "cells",
                "analysistemplates",
            ][..],
        ),
        ("sirocco.cloud", &["tasks", "ignitors"][..]),
        ("okra.mumo.co", &["cells"][..]),
    ] {
        for resource in resources {
            calls.push(("list", group, *resource, watched));
            calls.push(("watch", group, *resource, watched));
        }
    }
    // Status patches are made in the object's namespace.
    let object_namespace = Some(watched.unwrap_or("team-a"));
    for (group, resource) in [
        ("baton.dev", "workflows/status"),
        ("baton.dev", "tasks/status"),
        ("baton.dev", "ignitors/status"),
        ("baton.dev", "cells/status"),
        ("baton.dev", "analysistemplates/status"),
        ("sirocco.cloud", "tasks/status"),
        ("sirocco.cloud", "ignitors/status"),
        ("okra.mumo.co", "cells/status"),
    ] {
        calls.push(("patch", group, resource, object_namespace));
    }
    for group in ["baton.dev", "orkestra.azure.microsoft.com"] {
        for verb in ["get", "list", "watch", "patch"] {
            calls.push((verb, group, "applicationgroups", None));
        }
        calls.push(("patch", group, "applicationgroups/status", None));
    }
    // The API's EndpointSlice (cli/src/advertise.rs), in the install namespace.
    for verb in ["get", "update"] {
        calls.push((
            verb,
            "discovery.k8s.io",
            "endpointslices:baton-api",
            Some("baton-system"),
        ));
    }
    calls.push(("create", "authentication.k8s.io", "tokenreviews", None));
    calls.push((
        "create",
        "authorization.k8s.io",
        "subjectaccessreviews",
        None,
    ));
    calls
}

/// The pod worker's calls (workers/src/executors/pod.rs) in `namespace`, and its janitor's
/// list (every namespace unless it serves one).
fn pod_worker_calls(namespace: &'static str, janitor: Option<&'static str>) -> Vec<Call> {
    let mut calls: Vec<Call> = ["create", "get", "list", "watch", "delete"]
        .into_iter()
        .map(|verb| (verb, "", "pods", Some(namespace)))
        .collect();
    calls.push(("get", "", "pods/log", Some(namespace)));
    calls.push(("list", "", "pods", janitor));
    calls
}

/// The helm worker's calls in a release's `namespace`: the Flux driver's
/// (workers/src/executors/helm/flux.rs), Baton's own reads for the CLI driver
/// (helm/values.rs), and what the helm program does for a common chart.
fn helm_worker_calls(namespace: &'static str) -> Vec<Call> {
    let ns = Some(namespace);
    let mut calls: Vec<Call> = vec![
        ("get", "", "namespaces", None),
        ("create", "", "namespaces", None),
    ];
    for verb in [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ] {
        calls.push((verb, "helm.toolkit.fluxcd.io", "helmreleases", ns));
    }
    for resource in ["helmrepositories", "ocirepositories"] {
        for verb in ["get", "create", "update", "delete"] {
            calls.push((verb, "source.toolkit.fluxcd.io", resource, ns));
        }
    }
    calls.push(("get", "", "configmaps", ns));
    for verb in ["get", "list", "create", "update", "delete"] {
        calls.push((verb, "", "secrets", ns));
    }
    for (group, resource) in [("apps", "deployments"), ("", "services"), ("batch", "jobs")] {
        for verb in ["get", "list", "watch", "create", "patch", "delete"] {
            calls.push((verb, group, resource, ns));
        }
    }
    calls
}

/// Calls no component makes, which each account must be refused.
fn refused_calls(account: &str, other_namespace: &'static str) -> Vec<Call> {
    let mut calls: Vec<Call> = vec![
        (
            "create",
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            None,
        ),
        (
            "delete",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
        ),
        ("create", "baton.dev", "workflows", Some(other_namespace)),
    ];
    match account {
        "baton-planner" => calls.extend([
            ("create", "", "pods", Some(other_namespace)),
            ("get", "", "secrets", Some(other_namespace)),
            ("update", "baton.dev", "workflows", Some(other_namespace)),
            (
                "update",
                "discovery.k8s.io",
                "endpointslices:kubernetes",
                Some("baton-system"),
            ),
            (
                "create",
                "discovery.k8s.io",
                "endpointslices",
                Some("baton-system"),
            ),
        ]),
        "baton-worker-pod" => calls.extend([
            ("get", "", "secrets", Some(other_namespace)),
            ("create", "apps", "deployments", Some(other_namespace)),
            ("patch", "", "pods", Some(other_namespace)),
        ]),
        "baton-worker-helm" => calls.extend([
            ("create", "", "pods/exec", Some(other_namespace)),
            ("delete", "", "namespaces", None),
        ]),
        // The kinds that call no Kubernetes API.
        _ => calls.extend([
            ("list", "", "pods", None),
            ("get", "", "secrets", Some(other_namespace)),
        ]),
    }
    calls
}

fn apply(kube: &KubeEnv, dir: &Path, name: &str, objects: &[Value]) {
    baton_tests::install::apply(&kube.kubeconfig, dir, name, objects);
}

/// KEDA is not part of the fixture: its ScaledObject kind is stood in for by a CRD that
/// keeps any field (the round trip above checks the fields themselves).
fn keda_stand_in() -> Value {
    serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "scaledobjects.keda.sh"},
        "spec": {
            "group": "keda.sh",
            "scope": "Namespaced",
            "names": {"plural": "scaledobjects", "singular": "scaledobject", "kind": "ScaledObject", "listKind": "ScaledObjectList"},
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    })
}

#[test]
fn the_production_overlays_apply_and_each_account_may_make_its_calls_and_no_others() {
    let dir = tempfile::tempdir().unwrap();
    let kube = KubeEnv::new(dir.path()).unwrap();
    // Another namespace: what a namespaced install does not serve.
    let elsewhere: &'static str = Box::leak(kube.namespace.clone().into_boxed_str());
    apply(&kube, dir.path(), "keda", &[keda_stand_in()]);
    // The kind is served a moment after its CRD is made.
    kube.block_on(async {
        for _ in 0..300 {
            if kube
                .client
                .list_api_group_resources("keda.sh/v1alpha1")
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("keda.sh/v1alpha1 is not served 30 s after its CRD was made");
    });
    let namespaced = render("production-namespaced");
    apply(&kube, dir.path(), "production-namespaced", &namespaced);

    // Asks the API server whether `account` may make each call; an allowed call is asked
    // again for a while, since RBAC takes effect when the API server's cache sees a binding.
    let check = |account: &'static str, calls: Vec<Call>, want: bool| {
        let user = format!("system:serviceaccount:baton-system:{account}");
        for (verb, group, resource, namespace) in calls {
            let started = Instant::now();
            loop {
                let allowed = kube.may(&user, verb, group, resource, namespace);
                if allowed == want || !want || started.elapsed() > Duration::from_secs(30) {
                    assert_eq!(
                        allowed,
                        want,
                        "{account} {} {verb} {group} {resource} in {namespace:?}",
                        if want { "may not" } else { "may" }
                    );
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    // Namespaced: everything in baton-system, nothing elsewhere but what is cluster-scoped.
    check("baton-planner", planner_calls(Some("baton-system")), true);
    check(
        "baton-worker-pod",
        pod_worker_calls("baton-system", Some("baton-system")),
        true,
    );
    check("baton-worker-helm", helm_worker_calls("baton-system"), true);
    check(
        "baton-planner",
        vec![
            ("list", "baton.dev", "workflows", Some(elsewhere)),
            ("list", "baton.dev", "workflows", None),
        ],
        false,
    );
    check(
        "baton-worker-pod",
        vec![
            ("create", "", "pods", Some(elsewhere)),
            ("list", "", "pods", None),
        ],
        false,
    );
    check(
        "baton-worker-helm",
        vec![("create", "apps", "deployments", Some(elsewhere))],
        false,
    );
    for account in [
        "baton-planner",
        "baton-worker-pod",
        "baton-worker-helm",
        "baton-worker",
    ] {
        check(account, refused_calls(account, elsewhere), false);
    }

    // Cluster-wide: the same in every namespace.
    let production = render("production");
    apply(&kube, dir.path(), "production", &production);
    check("baton-planner", planner_calls(None), true);
    check("baton-worker-pod", pod_worker_calls(elsewhere, None), true);
    check("baton-worker-helm", helm_worker_calls(elsewhere), true);
    for account in [
        "baton-planner",
        "baton-worker-pod",
        "baton-worker-helm",
        "baton-worker",
    ] {
        check(account, refused_calls(account, elsewhere), false);
    }
}
