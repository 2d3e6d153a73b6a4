//! The Kubernetes test fixture: a fake API server that keeps objects and serves watch the way
//! Kubernetes does, a kubelet actor that runs pods as local processes, and a helm-controller
//! actor that answers Flux `HelmRelease` objects, both acting only through the API. With
//! `BATON_TEST_KUBECONFIG` set, tests use that cluster instead (and keep the kubelet actor
//! only when `BATON_TEST_SIMULATE_KUBELET=1`, for a cluster without nodes, and the
//! helm-controller actor only when `BATON_TEST_SIMULATE_HELM_CONTROLLER=1`, for a cluster
//! without Flux).
//!
//! A real API server serves `pods/log` from the node that runs the pod; the pods the kubelet
//! actor runs on a real cluster have no node, so there are no logs to read
//! ([`KubeEnv::logs`] is false) and tests relax what they check of them, saying so. With
//! `BATON_TEST_SIMULATE_KUBELET=1` and no `BATON_TEST_KUBECONFIG`, the fake server answers
//! `pods/log` the same way, so that mode can be tried without a cluster.

pub mod apiserver;
pub mod helm_controller;
pub mod kubelet;
pub mod selector;

pub use apiserver::FakeApiServer;
pub use helm_controller::HelmController;
pub use kubelet::Kubelet;

use std::path::{Path, PathBuf};

use anyhow::Context;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};

/// Merges `status` into the status of object `name`, as the actor `who` does; a failure is
/// logged (the actor acts again on the next event).
async fn merge_status<K>(api: &Api<K>, name: &str, status: serde_json::Value, who: &str)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = kube::api::Patch::Merge(serde_json::json!({ "status": status }));
    if let Err(e) = api
        .patch_status(name, &kube::api::PatchParams::default(), &patch)
        .await
    {
        tracing::warn!(object = name, error = %e, "{who} could not patch status");
    }
}

/// One test's Kubernetes: the fake API server and kubelet actor on their own runtime, or the
/// cluster of `BATON_TEST_KUBECONFIG`; and a namespace of the test's own.
pub struct KubeEnv {
    /// A client for the API server.
    pub client: kube::Client,
    /// The test's namespace.
    pub namespace: String,
    /// A kubeconfig file for processes under test.
    pub kubeconfig: PathBuf,
    /// Whether this is the fake server (false: a real cluster).
    pub fake: bool,
    /// Whether `pods/log` serves what the containers wrote. False when the kubelet actor runs
    /// the pods of a real cluster (`BATON_TEST_SIMULATE_KUBELET=1`): such pods are on no node,
    /// and a real API server reads logs from the node's kubelet.
    pub logs: bool,
    _server: Option<FakeApiServer>,
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
        let real = std::env::var_os("BATON_TEST_KUBECONFIG").map(PathBuf::from);
        let simulate = std::env::var("BATON_TEST_SIMULATE_KUBELET").is_ok_and(|v| v == "1");
        let (client, server, kubelet) = runtime.block_on(async {
            match &real {
                Some(path) => {
                    std::fs::copy(path, &kubeconfig)
                        .with_context(|| format!("copying {}", path.display()))?;
                    let config = kube::Config::from_custom_kubeconfig(
                        kube::config::Kubeconfig::read_from(path)?,
                        &kube::config::KubeConfigOptions::default(),
                    )
                    .await?;
                    let client = kube::Client::try_from(config)?;
                    let kubelet =
                        simulate.then(|| Kubelet::start(client.clone(), Some(&namespace), None));
                    Ok::<_, anyhow::Error>((client, None, kubelet))
                }
                None => {
                    let server = FakeApiServer::start_with(!simulate).await?;
                    std::fs::write(&kubeconfig, server.kubeconfig())?;
                    let client = server.client();
                    let kubelet = Kubelet::start(client.clone(), None, server.logs());
                    Ok((client, Some(server), Some(kubelet)))
                }
            }
        })?;
        runtime.block_on(async {
            let namespaces: Api<Namespace> = Api::all(client.clone());
            let ns: Namespace =
                serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))?;
            namespaces
                .create(&PostParams::default(), &ns)
                .await
                .context("creating the test namespace")?;
            Ok::<_, anyhow::Error>(())
        })?;
        Ok(KubeEnv {
            client,
            namespace,
            kubeconfig,
            fake: real.is_none(),
            logs: !simulate,
            _server: server,
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

    /// Installs Baton's CustomResourceDefinitions (those of `deploy/crds/`); on a real
    /// cluster, waits until they are established. Ones already there are left as they are.
    pub fn install_crds(&self) -> anyhow::Result<()> {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        self.block_on(async {
            for crd in baton_schemas::crd::crds() {
                match crds.create(&PostParams::default(), &crd).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => return Err(anyhow::Error::new(e).context("installing a CRD")),
                }
                if self.fake {
                    continue;
                }
                let name = crd.metadata.name.clone().unwrap_or_default();
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
                while !established(&crds.get(&name).await?) {
                    anyhow::ensure!(
                        std::time::Instant::now() < deadline,
                        "CRD {name} not established"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
            Ok(())
        })
    }

    /// Starts the helm-controller actor, on the fake server or when
    /// `BATON_TEST_SIMULATE_HELM_CONTROLLER=1`; `None` on a real cluster, whose Flux answers.
    pub fn start_helm_controller(&self) -> Option<HelmController> {
        let simulate = std::env::var("BATON_TEST_SIMULATE_HELM_CONTROLLER").is_ok_and(|v| v == "1");
        (self.fake || simulate).then(|| {
            let client = self.client.clone();
            self.block_on(async move { HelmController::start(client) })
        })
    }

    /// Runs a future on the env's runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

impl Drop for KubeEnv {
    fn drop(&mut self) {
        if !self.fake {
            let namespaces: Api<Namespace> = Api::all(self.client.clone());
            let _ = self
                .runtime
                .block_on(namespaces.delete(&self.namespace, &Default::default()));
        }
    }
}
