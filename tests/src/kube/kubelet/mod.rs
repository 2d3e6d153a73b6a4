//! A kubelet actor for tests. It acts only through the API, as a kubelet does: it watches
//! pods, runs each container's `command` + `args` as a local process with the container's env,
//! and patches `pods/status` (phase, container states, exit codes, and the termination message
//! read from the container's `terminationMessagePath`, at most 4096 bytes, with
//! `FallbackToLogsOnError` honoured). Container output goes to a log store: on a real control
//! plane the actor is a node ([`node`]) that serves it to the API server for `pods/log`, runs
//! only the pods bound to it, and ends a pod's graceful deletion once its containers are
//! stopped, as a kubelet does.
//!
//! A local process cannot write to `/dev/termination-log`, so the actor gives each container a
//! file of its own and replaces the `terminationMessagePath` in the container's arguments with
//! that file's path. Test conventions, since there is no real image or cgroup:
//! - an image whose name contains `does-not-exist` never pulls: the container waits with
//!   `ErrImagePull`, then `ImagePullBackOff`;
//! - the annotation `kubelet.baton.dev/oom-kill: <container>` kills that container with SIGKILL
//!   after it starts and reports `OOMKilled` (exit code 137);
//! - `spec.activeDeadlineSeconds` kills the pod when it passes (`DeadlineExceeded`).
//! - no probe is run: a running pod is `Ready` unless a container has a `readinessProbe`,
//!   which it never passes.

mod containers;
pub mod node;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::watcher;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Logs of pod containers, by namespace, pod and container, as the kubelet actor records them.
pub type PodLogs = Arc<Mutex<HashMap<(String, String, String), String>>>;

/// The last `lines` lines of a container's log, as `tailLines` asks of a kubelet.
pub fn tail_lines(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    let mut tail = all[all.len().saturating_sub(lines)..].join("\n");
    if !tail.is_empty() {
        tail.push('\n');
    }
    tail
}

/// A running kubelet actor; stops (and kills its processes) when dropped.
pub struct Kubelet {
    shutdown: CancellationToken,
}

/// Whether the actor is a registered node, which must finish its pods' graceful deletion.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Node,
    Unbound,
}

impl Kubelet {
    /// Starts running the pods of `namespace` (all namespaces when `None`) whatever node they
    /// are on: for a cluster whose pods nobody else runs.
    pub fn start(client: kube::Client, namespace: Option<&str>) -> Kubelet {
        let shutdown = CancellationToken::new();
        let pods: Api<Pod> = match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let config = watcher::Config::default();
        tokio::spawn(run(
            pods,
            config,
            Mode::Unbound,
            PodLogs::default(),
            shutdown.clone(),
        ));
        Kubelet { shutdown }
    }

    /// Registers as node [`node::NODE_NAME`] through `client` (acting as that node), serves
    /// logs with `tls`, and runs the pods bound to the node.
    pub async fn start_node(
        client: kube::Client,
        tls: &crate::kube::real::Pem,
    ) -> anyhow::Result<Kubelet> {
        let shutdown = CancellationToken::new();
        let logs = PodLogs::default();
        let port = node::serve_logs(logs.clone(), tls, shutdown.clone()).await?;
        node::register(&Api::<Node>::all(client.clone()), port).await?;
        // A node may read only the pods bound to it (the Node authorizer), so it asks for them.
        let config =
            watcher::Config::default().fields(&format!("spec.nodeName={}", node::NODE_NAME));
        tokio::spawn(run(
            Api::all(client),
            config,
            Mode::Node,
            logs,
            shutdown.clone(),
        ));
        Ok(Kubelet { shutdown })
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A pod being run: how to stop it, and its task.
struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

async fn run(
    pods: Api<Pod>,
    config: watcher::Config,
    mode: Mode,
    logs: PodLogs,
    shutdown: CancellationToken,
) {
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut events = watcher(pods.clone(), config).boxed();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            e = events.next() => e,
        };
        let pod = match event {
            Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => pod,
            Some(Ok(watcher::Event::Delete(pod))) => {
                if let Some(r) = running.remove(&uid(&pod)) {
                    r.stop.cancel();
                }
                continue;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                debug!(error = %e, "kubelet watch error");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            None => break,
        };
        let id = uid(&pod);
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(pods.clone().into_client(), &ns);
        if pod.metadata.deletion_timestamp.is_some() {
            let stopped = running.remove(&id).map(|r| {
                r.stop.cancel();
                r.task
            });
            if mode == Mode::Node {
                tokio::spawn(finish_deletion(api, pod, stopped));
            }
            continue;
        }
        let untouched = pod.status.as_ref().is_none_or(|s| {
            s.container_statuses.is_none() && s.phase.as_deref().is_none_or(|p| p == "Pending")
        });
        if untouched && !running.contains_key(&id) {
            let stop = shutdown.child_token();
            let task = tokio::spawn(containers::run_pod(api, pod, logs.clone(), stop.clone()));
            running.insert(id, Running { stop, task });
        }
    }
    for r in running.values() {
        r.stop.cancel();
    }
}

/// Ends a pod's graceful deletion once its containers have stopped, as a kubelet does: the
/// API server keeps a pod bound to a node until its kubelet deletes it with no grace period.
async fn finish_deletion(api: Api<Pod>, pod: Pod, stopped: Option<JoinHandle<()>>) {
    if let Some(task) = stopped {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    let name = pod.metadata.name.clone().unwrap_or_default();
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::warn!(pod = %name, error = %e, "kubelet could not finish a deletion"),
    }
}

fn uid(pod: &Pod) -> String {
    pod.metadata
        .uid
        .clone()
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default())
}
