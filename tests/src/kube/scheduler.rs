//! A scheduler actor for a real control plane that has no kube-scheduler: it binds each pod
//! that names no node to the kubelet actor's node, through `pods/binding` as the scheduler
//! does, acting as `system:kube-scheduler` (whose role the API server bootstraps). A pod for
//! another scheduler, or whose `nodeSelector` the node's labels do not meet, stays pending,
//! as it would in a cluster without a matching node.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::kubelet::node::NODE_NAME;

/// A running scheduler actor; stops when dropped.
pub struct Scheduler {
    shutdown: CancellationToken,
}

impl Scheduler {
    /// Starts binding unscheduled pods of every namespace.
    pub fn start(client: kube::Client) -> Scheduler {
        let shutdown = CancellationToken::new();
        tokio::spawn(run(client, shutdown.clone()));
        Scheduler { shutdown }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn run(client: kube::Client, shutdown: CancellationToken) {
    let pods: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().fields("spec.nodeName=");
    let mut events = watcher(pods, config).boxed();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            e = events.next() => e,
        };
        match event {
            Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => {
                if pod.metadata.deletion_timestamp.is_none() && fits(&pod) {
                    bind(&client, &pod).await;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::debug!(error = %e, "scheduler watch error");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None => break,
        }
    }
}

/// Whether the pod is this scheduler's and the node meets its `nodeSelector`.
fn fits(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else {
        return false;
    };
    let ours = spec
        .scheduler_name
        .as_deref()
        .is_none_or(|s| s == "default-scheduler");
    let labels = super::kubelet::node::labels();
    let selected = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key.as_str()) == Some(&value.as_str()));
    ours && selected
}

/// Binds `pod` to the node, trying a failed write again a few times; a pod bound meanwhile or
/// gone is left alone.
async fn bind(client: &kube::Client, pod: &Pod) {
    let (Some(name), Some(namespace)) = (&pod.metadata.name, &pod.metadata.namespace) else {
        return;
    };
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": namespace, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME},
    });
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for attempt in 1..=super::WRITE_ATTEMPTS {
        match pods
            .create_subresource::<serde_json::Value, serde_json::Value>(
                "binding",
                name,
                &PostParams::default(),
                &binding,
            )
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return,
            Err(e) if attempt == super::WRITE_ATTEMPTS => {
                tracing::warn!(pod = %name, error = %e, "scheduler could not bind a pod");
            }
            Err(_) => super::backoff(attempt).await,
        }
    }
}
