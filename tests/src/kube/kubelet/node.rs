//! The kubelet actor as a node of a real control plane: it registers its `Node` (address
//! 127.0.0.1, its kubelet port, `Ready`) and serves its pods' logs over TLS at
//! `/containerLogs/<namespace>/<pod>/<container>`, where the API server reads them for
//! `pods/log` as it does from any kubelet (it checks the certificate against the CA it was
//! given with `--kubelet-certificate-authority`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::PodLogs;
use crate::kube::real::Pem;
use rustls::pki_types::pem::PemObject;

/// The node the kubelet actor is.
pub const NODE_NAME: &str = "baton-test-node";

/// The node's labels, as a kubelet sets them.
pub fn labels() -> std::collections::BTreeMap<&'static str, &'static str> {
    [
        ("kubernetes.io/hostname", NODE_NAME),
        ("kubernetes.io/os", "linux"),
    ]
    .into()
}

/// Serves `logs` over TLS on a loopback port; returns the port.
pub async fn serve_logs(
    logs: PodLogs,
    tls: &Pem,
    shutdown: CancellationToken,
) -> anyhow::Result<u16> {
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(tls.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(tls.key.as_bytes())?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let listener = TlsListener {
        tcp: listener,
        tls: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    };
    let app = axum::Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            axum::routing::get(container_log),
        )
        .with_state(logs);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    });
    Ok(port)
}

/// A container's log as the kubelet serves it: the whole of it, or its last `tailLines`.
async fn container_log(
    State(logs): State<PodLogs>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let text = logs
        .lock()
        .expect("logs")
        .get(&(namespace, pod, container))
        .cloned()
        .unwrap_or_default();
    match params
        .get("tailLines")
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(n) => super::tail_lines(&text, n),
        None => text,
    }
}

/// Registers the node (or brings an existing one up to date) with its kubelet `port`.
pub async fn register(nodes: &Api<Node>, port: u16) -> anyhow::Result<()> {
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": NODE_NAME, "labels": labels()},
    }))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let status = json!({"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE_NAME}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "capacity": {"cpu": "64", "memory": "256Gi", "pods": "10000"},
        "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "10000"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "the tests' kubelet actor is ready", "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "nodeInfo": {"kubeletVersion": "v1.36.2-baton-test", "operatingSystem": "linux", "architecture": "amd64",
                      "containerRuntimeVersion": "local-processes://1", "kernelVersion": "", "osImage": "", "kubeProxyVersion": "",
                      "machineID": "", "systemUUID": "", "bootID": ""},
    }});
    nodes
        .patch_status(NODE_NAME, &PatchParams::default(), &Patch::Merge(status))
        .await?;
    Ok(())
}

/// A TLS listener for axum: each accepted connection is handshaken before it is served
/// (one at a time, enough for the API server as the only client).
struct TlsListener {
    tcp: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            match self.tls.accept(stream).await {
                Ok(stream) => return (stream, addr),
                Err(e) => tracing::debug!(error = %e, "kubelet log server: TLS handshake failed"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
