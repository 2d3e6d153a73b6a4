//! The Kubernetes test fixture. By default a real control plane ([`real`]: etcd and
//! kube-apiserver, one per test binary, each test in a namespace of its own) with actors for
//! the parts it lacks, acting through the API with those parts' permissions: a scheduler
//! actor, a kubelet actor that runs pods as local processes and serves their logs, and a
//! helm-controller actor that answers Flux `HelmRelease` objects.
//!
//! With `BATON_TEST_KUBECONFIG` set, tests use that cluster instead (and keep the kubelet actor
//! only when `BATON_TEST_SIMULATE_KUBELET=1`, for a cluster without nodes, and the
//! helm-controller actor only when `BATON_TEST_SIMULATE_HELM_CONTROLLER=1`, for a cluster
//! without Flux); its pods run in containers the test cannot see ([`KubeEnv::local_pods`] is
//! false), and the kubelet actor's pods there have no node, so no logs ([`KubeEnv::logs`]).

pub mod helm_controller;
pub mod kubelet;
pub mod real;
pub mod scheduler;

pub use helm_controller::HelmController;
pub use kubelet::Kubelet;

use std::path::{Path, PathBuf};

use anyhow::Context;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};

/// How often an actor tries a write the API server failed before it gives up on it.
const WRITE_ATTEMPTS: u32 = 5;

/// Merges `status` into the status of object `name`, as the actor `who` does. A failed write
/// is tried again, a few times with a growing pause, as a kubelet's status sync would (an
/// object that is gone is left alone); the last failure is logged.
async fn merge_status<K>(api: &Api<K>, name: &str, status: serde_json::Value, who: &str)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = kube::api::Patch::Merge(serde_json::json!({ "status": status }));
    for attempt in 1..=WRITE_ATTEMPTS {
        match api
            .patch_status(name, &kube::api::PatchParams::default(), &patch)
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 404 => return,
            Err(e) if attempt == WRITE_ATTEMPTS => {
                tracing::warn!(object = name, error = %e, "{who} could not patch status");
            }
            Err(_) => backoff(attempt).await,
        }
    }
}

/// The pause before an actor's write is tried again.
async fn backoff(attempt: u32) {
    tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(attempt))).await;
}

/// One test's Kubernetes: the tests' shared control plane, or the cluster of
/// `BATON_TEST_KUBECONFIG`; a namespace of the test's own; a runtime for the test's calls.
pub struct KubeEnv {
    /// A client for the API server.
    pub client: kube::Client,
    /// The test's namespace.
    pub namespace: String,
    /// A kubeconfig file for processes under test.
    pub kubeconfig: PathBuf,
    /// Whether pods run as local processes of the kubelet actor, whose effects (files they
    /// write) a test can see; false on a cluster of `BATON_TEST_KUBECONFIG` with real nodes.
    pub local_pods: bool,
    /// Whether `pods/log` serves what the containers wrote. False when the kubelet actor runs
    /// the pods of a `BATON_TEST_KUBECONFIG` cluster (`BATON_TEST_SIMULATE_KUBELET=1`): such
    /// pods are on no node, and a real API server reads logs from the node's kubelet.
    pub logs: bool,
    /// The tests' shared control plane, when the test runs on it.
    control_plane: Option<&'static real::Cluster>,
    _kubelet: Option<Kubelet>,
    runtime: tokio::runtime::Runtime,
}

impl KubeEnv {
    /// Sets up Kubernetes for a test whose files live in `dir`.
    pub fn new(dir: &Path) -> anyhow::Result<KubeEnv> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let namespace = format!("baton-test-{}-{}", std::process::id(), crate::next_id());
        let kubeconfig = dir.join("kubeconfig");
        let external = std::env::var_os("BATON_TEST_KUBECONFIG").map(PathBuf::from);
        let simulate = std::env::var("BATON_TEST_SIMULATE_KUBELET").is_ok_and(|v| v == "1");
        let mut kubelet = None;
        let mut control_plane = None;
        // Whether a controller manager makes each namespace's `default` ServiceAccount.
        let (client, controller_manager) = match &external {
            Some(path) => {
                std::fs::copy(path, &kubeconfig)
                    .with_context(|| format!("copying {}", path.display()))?;
                let client = runtime.block_on(async {
                    let config = kube::Config::from_custom_kubeconfig(
                        kube::config::Kubeconfig::read_from(path)?,
                        &kube::config::KubeConfigOptions::default(),
                    )
                    .await?;
                    let client = kube::Client::try_from(config)?;
                    kubelet = simulate.then(|| Kubelet::start(client.clone(), Some(&namespace)));
                    Ok::<_, anyhow::Error>(client)
                })?;
                (client, true)
            }
            None => {
                let cluster = real::Cluster::shared()?;
                real::start_actors(cluster)?;
                std::fs::copy(&cluster.kubeconfig, &kubeconfig)?;
                control_plane = Some(cluster);
                (
                    runtime.block_on(cluster.admin())?,
                    cluster.controller_manager,
                )
            }
        };
        runtime.block_on(async {
            let namespaces: Api<Namespace> = Api::all(client.clone());
            let ns: Namespace =
                serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))?;
            namespaces
                .create(&PostParams::default(), &ns)
                .await
                .context("creating the test namespace")?;
            if controller_manager {
                wait_for_default_service_account(&client, &namespace).await?;
            }
            Ok::<_, anyhow::Error>(())
        })?;
        Ok(KubeEnv {
            client,
            namespace,
            kubeconfig,
            local_pods: external.is_none() || simulate,
            // Only the kubelet actor of a cluster that is not the tests' own has no logs to serve.
            logs: !(simulate && external.is_some()),
            control_plane,
            _kubelet: kubelet,
            runtime,
        })
    }

    /// Sets up Kubernetes for `env` and points its Baton processes at it (`KUBECONFIG`).
    pub fn for_env(env: &mut crate::Env) -> anyhow::Result<KubeEnv> {
        let kube = KubeEnv::new(env.dir.path())?;
        env.extra_env
            .push(("KUBECONFIG".into(), kube.kubeconfig.display().to_string()));
        Ok(kube)
    }

    /// Installs Baton's CustomResourceDefinitions as a user does, by server-side apply of
    /// the files in `deploy/crds/`, and waits until the API server serves them.
    pub fn install_crds(&self) -> anyhow::Result<()> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        files.retain(|f| f.extension().is_some_and(|e| e == "yaml"));
        files.sort();
        let mut crds = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file)?;
            for document in serde_norway::Deserializer::from_str(&text) {
                let crd: serde_json::Value = serde::Deserialize::deserialize(document)
                    .with_context(|| format!("reading {}", file.display()))?;
                if !crd.is_null() {
                    crds.push(crd);
                }
            }
        }
        self.apply_crds(crds)
    }

    /// Installs minimal CustomResourceDefinitions of the Flux kinds Baton writes
    /// (`HelmRelease`, `HelmRepository`, `OCIRepository`): Flux's own declare full schemas,
    /// these keep any field, as the helm-controller actor stands in for Flux.
    pub fn install_flux_crds(&self) -> anyhow::Result<()> {
        let crd = |group: &str, versions: &[&str], kind: &str, plural: &str| {
            let versions: Vec<serde_json::Value> = versions
                .iter()
                .enumerate()
                .map(|(i, v)| serde_json::json!({
                    "name": v, "served": true, "storage": i == 0,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    }}},
                }))
                .collect();
            serde_json::json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{plural}.{group}")},
                "spec": {"group": group, "scope": "Namespaced", "versions": versions,
                         "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")}},
            })
        };
        self.apply_crds(vec![
            crd(
                "helm.toolkit.fluxcd.io",
                &["v2"],
                "HelmRelease",
                "helmreleases",
            ),
            crd(
                "source.toolkit.fluxcd.io",
                &["v1"],
                "HelmRepository",
                "helmrepositories",
            ),
            crd(
                "source.toolkit.fluxcd.io",
                &["v1beta2"],
                "OCIRepository",
                "ocirepositories",
            ),
        ])
    }

    /// Applies `crds` (server-side) and waits until each is established.
    pub fn apply_crds(&self, crds: Vec<serde_json::Value>) -> anyhow::Result<()> {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let params = kube::api::PatchParams::apply("baton-tests").force();
        self.block_on(async {
            for crd in crds {
                let name = crd["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                api.patch(&name, &params, &kube::api::Patch::Apply(&crd))
                    .await
                    .with_context(|| format!("applying CRD {name}"))?;
                let established = |c: &CustomResourceDefinition| {
                    c.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter()
                                .any(|c| c.type_ == "Established" && c.status == "True")
                        })
                };
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                while !established(&api.get(&name).await?) {
                    anyhow::ensure!(
                        std::time::Instant::now() < deadline,
                        "CRD {name} not established"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
            Ok(())
        })
    }

    /// Starts the helm-controller actor for `namespaces` (the test's own when empty), with
    /// Flux's kinds installed, on the tests' control plane; for every namespace of a
    /// `BATON_TEST_KUBECONFIG` cluster when `BATON_TEST_SIMULATE_HELM_CONTROLLER=1`; `None`
    /// there otherwise, as that cluster's Flux answers.
    pub fn start_helm_controller(&self, namespaces: &[&str]) -> Option<HelmController> {
        if let Some(cluster) = self.control_plane {
            self.install_flux_crds().expect("installing Flux's kinds");
            let namespaces: Vec<String> = if namespaces.is_empty() {
                vec![self.namespace.clone()]
            } else {
                namespaces.iter().map(|n| n.to_string()).collect()
            };
            let started = self.block_on(async move {
                helm_controller::grant_permissions(&cluster.admin().await?).await?;
                let (user, groups) = helm_controller::IDENTITY;
                let client = cluster.client_as_user(user, groups).await?;
                Ok::<_, anyhow::Error>(HelmController::start_in(client, Some(&namespaces)))
            });
            return Some(started.expect("starting the helm-controller actor"));
        }
        let simulate = std::env::var("BATON_TEST_SIMULATE_HELM_CONTROLLER").is_ok_and(|v| v == "1");
        simulate.then(|| {
            let client = self.client.clone();
            self.block_on(async move { HelmController::start_in(client, None) })
        })
    }

    /// Returns the API of Baton's `group` `kind` objects (a kind with a CRD,
    /// [`baton_schemas::crd::crd_kinds`]) in the test's namespace.
    pub fn kind_api(&self, group: &str, kind: &str) -> Api<kube::api::DynamicObject> {
        let kind = baton_schemas::crd::crd_kinds()
            .find(|k| k.group == group && k.kind == kind)
            .expect("a kind Baton serves");
        let resource = kube::api::ApiResource {
            group: kind.group.into(),
            version: baton_schemas::crd::VERSION.into(),
            api_version: kind.api_version(),
            kind: kind.kind.into(),
            plural: kind.plural.into(),
        };
        Api::namespaced_with(self.client.clone(), &self.namespace, &resource)
    }

    /// Waits until the status of object `name` of `api` satisfies `done`, at most `within`;
    /// returns that status.
    pub fn wait_status(
        &self,
        api: &Api<kube::api::DynamicObject>,
        name: &str,
        within: std::time::Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let started = std::time::Instant::now();
        loop {
            let object = self.block_on(api.get(name)).expect("reading the object");
            let status = object.data["status"].clone();
            if done(&status) {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "{name}: status after {within:?}: {status:#}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Runs a future on the env's runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Returns an hour's token the API server issues for ServiceAccount `account` of
    /// `namespace` (which must exist).
    pub fn token(&self, namespace: &str, account: &str) -> anyhow::Result<String> {
        use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
        use k8s_openapi::api::core::v1::ServiceAccount;
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let issued = self
            .block_on(accounts.create_token_request(account, &PostParams::default(), &request))
            .with_context(|| format!("a token for {namespace}/{account}"))?;
        Ok(issued
            .status
            .context("a token request without status")?
            .token)
    }

    /// Writes to `path` a kubeconfig for this API server that authenticates with `token`,
    /// its context in `namespace` (a pod's in-cluster config defaults to its own).
    pub fn kubeconfig_with_token(
        &self,
        path: &Path,
        token: &str,
        namespace: &str,
    ) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(&self.kubeconfig)?;
        let mut config: serde_json::Value = serde_norway::from_str(&text)?;
        let user = "baton-test-token";
        config["users"] = serde_json::json!([{"name": user, "user": {"token": token}}]);
        for context in config["contexts"]
            .as_array_mut()
            .context("a kubeconfig without contexts")?
        {
            context["context"]["user"] = user.into();
            context["context"]["namespace"] = namespace.into();
        }
        // JSON is YAML, as a kubeconfig file is read.
        std::fs::write(path, config.to_string())?;
        Ok(())
    }

    /// Returns whether `user` (a ServiceAccount's `system:serviceaccount:NS:NAME`, with the
    /// groups such an account has) may `verb` `resource` of API `group` (`/subresource` and
    /// `:name` allowed in `resource`) in `namespace` (`None`: cluster-scoped or everywhere).
    pub fn may(
        &self,
        user: &str,
        verb: &str,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
    ) -> bool {
        use k8s_openapi::api::authorization::v1::{
            ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
        };
        let (resource, name) = match resource.split_once(':') {
            Some((r, n)) => (r, Some(n.to_owned())),
            None => (resource, None),
        };
        let (resource, subresource) = match resource.split_once('/') {
            Some((r, s)) => (r, Some(s.to_owned())),
            None => (resource, None),
        };
        let mut groups = vec![
            "system:serviceaccounts".to_owned(),
            "system:authenticated".to_owned(),
        ];
        if let Some(ns) = user
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
            .map(|(ns, _)| ns)
        {
            groups.push(format!("system:serviceaccounts:{ns}"));
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.to_owned()),
                groups: Some(groups),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.to_owned()),
                    group: Some(group.to_owned()),
                    resource: Some(resource.to_owned()),
                    subresource,
                    name,
                    namespace: namespace.map(str::to_owned),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviews: Api<SubjectAccessReview> = Api::all(self.client.clone());
        self.block_on(reviews.create(&PostParams::default(), &review))
            .expect("a SubjectAccessReview")
            .status
            .is_some_and(|s| s.allowed)
    }
}

/// Waits until the controller manager has made the namespace's `default` ServiceAccount,
/// without which the API server admits no pod there.
async fn wait_for_default_service_account(
    client: &kube::Client,
    namespace: &str,
) -> anyhow::Result<()> {
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), namespace);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while accounts.get_opt("default").await?.is_none() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "namespace {namespace} has no default ServiceAccount after 30 s: is kube-controller-manager running?"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(())
}

impl Drop for KubeEnv {
    fn drop(&mut self) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let _ = self
            .runtime
            .block_on(namespaces.delete(&self.namespace, &Default::default()));
    }
}
