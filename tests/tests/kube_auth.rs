//! The API in Kubernetes mode, against the real kube-apiserver fixture: service-account tokens
//! checked with TokenReview, Baton roles granted by plain RBAC (`deploy/kubernetes/base/api-roles.yaml`)
//! and checked with SubjectAccessReview.

use std::path::Path;
use std::time::Duration;

use baton_tests::kube::KubeEnv;
use baton_tests::{Env, wait_for_port};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};

/// Applies the ClusterRoles of `deploy/kubernetes/base/api-roles.yaml`, as a user does.
async fn install_roles(client: &kube::Client) {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/base/api-roles.yaml");
    let text = std::fs::read_to_string(file).unwrap();
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let params = PatchParams::apply("baton-tests").force();
    for document in serde_norway::Deserializer::from_str(&text) {
        let object: serde_json::Value = serde::Deserialize::deserialize(document).unwrap();
        if object["kind"] == "ClusterRole" {
            let name = object["metadata"]["name"].as_str().unwrap().to_owned();
            roles
                .patch(&name, &params, &Patch::Apply(&object))
                .await
                .unwrap();
        }
    }
}

/// Makes a service account, binds it to `role` (a `baton-api-*` ClusterRole) when given, and
/// returns a token for it.
async fn account(kube: &KubeEnv, name: &str, role: Option<&str>) -> String {
    let ns = &kube.namespace;
    let accounts: Api<ServiceAccount> = Api::namespaced(kube.client.clone(), ns);
    let account: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    accounts
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    if let Some(role) = role {
        let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("{ns}-{name}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
        }))
        .unwrap();
        Api::<ClusterRoleBinding>::all(kube.client.clone())
            .create(&PostParams::default(), &binding)
            .await
            .unwrap();
    }
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token
}

#[test]
fn kubernetes_tokens_and_rbac_grant_the_api_roles() {
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).unwrap();
    let kube = KubeEnv::for_env(&mut env).unwrap();
    let (viewer, operator, admin, nobody) = kube.block_on(async {
        install_roles(&kube.client).await;
        (
            account(&kube, "watcher", Some("baton-api-viewer")).await,
            account(&kube, "ci", Some("baton-api-operator")).await,
            account(&kube, "release-admin", Some("baton-api-admin")).await,
            account(&kube, "nobody", None).await,
        )
    });
    let mut command = env.planner_command();
    command
        .env_remove("BATON_API_TOKEN_FILE")
        .arg("--api-auth-kubernetes");
    let planner = env.spawn("planner", command).unwrap();
    wait_for_port(env.api_port, Duration::from_secs(30)).unwrap();
    env.keep(planner);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = env.server();
    let call = |method: reqwest::Method, path: &str, token: &str, body: serde_json::Value| {
        rt.block_on(async {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let response = reqwest::Client::new()
                .request(method, format!("{server}{path}"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, body)
        })
    };
    use reqwest::Method;
    let workflow = serde_json::json!({"document": {"apiVersion": "baton.dev/v1alpha1",
        "kind": "Workflow", "metadata": {"name": "kube-auth"},
        "spec": {"nodes": [{"name": "a", "kind": "noop"}]}}, "run": false});
    let none = serde_json::json!({});

    // A token Kubernetes does not know: 401.
    let (status, body) = call(
        Method::GET,
        "/v1/runs",
        "not-a-kubernetes-token",
        none.clone(),
    );
    assert_eq!(status, 401, "{body}");
    // Known, but granted nothing: 403 naming the account and the RBAC that would grant it.
    let (status, body) = call(Method::GET, "/v1/runs", &nobody, none.clone());
    assert_eq!(status, 403, "{body}");
    let said = body["errors"][0].as_str().unwrap();
    assert!(
        said.contains(&format!("system:serviceaccount:{}:nobody", kube.namespace)),
        "{said}"
    );
    assert!(said.contains("`roles` named viewer"), "{said}");
    // A viewer reads, and may not apply.
    assert_eq!(call(Method::GET, "/v1/runs", &viewer, none.clone()).0, 200);
    assert_eq!(
        call(Method::POST, "/v1/apply", &viewer, workflow.clone()).0,
        403
    );
    // An operator reads (roles nest), may cancel or start, and may not apply.
    assert_eq!(
        call(Method::GET, "/v1/runs", &operator, none.clone()).0,
        200
    );
    let (status, body) = call(Method::POST, "/v1/apply", &operator, workflow.clone());
    assert_eq!(status, 403, "{body}");
    // An admin applies.
    let (status, body) = call(Method::POST, "/v1/apply", &admin, workflow.clone());
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        Method::POST,
        "/v1/workflows/kube-auth/runs",
        &operator,
        none,
    );
    assert_eq!(status, 200, "{body}");
}
