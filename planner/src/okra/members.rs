//! Member clusters as Argo CD knows them: its cluster Secrets (`argocd.argoproj.io/secret-type:
//! cluster`), each with the cluster's `name`, `server` and `config` (`bearerToken`,
//! `tlsClientConfig`), and optionally the `namespaces` the cluster is limited to. okra's
//! `AWSTargetGroupSet` reaches clusters this way; so does Baton.

use std::collections::BTreeMap;

use anyhow::{Context, anyhow, bail};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::ListParams;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;

use baton_schemas::okra::{ARGOCD_SECRET_TYPE, LabelSelector};

/// One member cluster.
pub(super) struct Member {
    /// Its name (the Secret's `name`, else the Secret's own name).
    pub(super) name: String,
    /// A client for it.
    pub(super) client: kube::Client,
    /// The namespaces it is limited to; empty for all.
    pub(super) namespaces: Vec<String>,
}

/// What Argo CD's `config` key holds, as far as Baton reads it.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClusterConfig {
    #[serde(default)]
    bearer_token: Option<String>,
    #[serde(default)]
    tls_client_config: TlsClientConfig,
    #[serde(default)]
    aws_auth_config: Option<AwsAuthConfig>,
}

/// Argo CD's EKS authentication: a token for the cluster, signed with the planner's AWS
/// credentials.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AwsAuthConfig {
    cluster_name: String,
    #[serde(default, rename = "roleARN")]
    role_arn: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TlsClientConfig {
    /// The CA's PEM, base64.
    #[serde(default)]
    ca_data: Option<String>,
    #[serde(default)]
    insecure: bool,
}

/// Lists the cluster Secrets of `namespace` that `selector` selects, sorted by name.
pub(super) async fn cluster_secrets(
    management: &kube::Client,
    namespace: &str,
    selector: &LabelSelector,
) -> kube::Result<Vec<Secret>> {
    let mut labels = selector.clone();
    labels
        .match_labels
        .insert(ARGOCD_SECRET_TYPE.to_owned(), "cluster".to_owned());
    let api: Api<Secret> = Api::namespaced(management.clone(), namespace);
    let mut secrets = api
        .list(&ListParams::default().labels(&labels.query()))
        .await?
        .items;
    secrets.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(secrets)
}

/// Returns a client for the cluster a Secret describes. The token and keys stay in memory;
/// errors name the Secret and the key, never a value.
pub(super) async fn member(secret: &Secret, aws: &super::Aws) -> anyhow::Result<Member> {
    let secret_name = secret.metadata.name.clone().unwrap_or_default();
    let keys: BTreeMap<String, String> = secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .chain(secret.string_data.clone().unwrap_or_default())
        .collect();
    let server = keys
        .get("server")
        .with_context(|| format!("cluster Secret {secret_name} has no key \"server\""))?;
    let config: ClusterConfig = match keys.get("config") {
        Some(text) => serde_json::from_str(text).map_err(|e| {
            anyhow!(
                "cluster Secret {secret_name}: key \"config\" is not Argo CD's cluster config: {e}"
            )
        })?,
        None => ClusterConfig::default(),
    };
    let url = server.parse().map_err(|e| {
        anyhow!("cluster Secret {secret_name}: \"server\" {server:?} is not a URL: {e}")
    })?;
    let mut kube_config = kube::Config::new(url);
    if let Some(ca) = &config.tls_client_config.ca_data {
        use base64::Engine as _;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(ca.trim())
            .map_err(|_| {
                anyhow!("cluster Secret {secret_name}: tlsClientConfig.caData is not base64")
            })?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .map(|c| c.map(|c| c.as_ref().to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                anyhow!(
                    "cluster Secret {secret_name}: tlsClientConfig.caData is not PEM certificates"
                )
            })?;
        kube_config.root_cert = Some(certs);
    }
    kube_config.accept_invalid_certs = config.tls_client_config.insecure;
    match (&config.bearer_token, &config.aws_auth_config) {
        (Some(token), _) => kube_config.auth_info.token = Some(token.clone().into()),
        (None, Some(eks)) => {
            // The token is signed with the planner's own AWS identity, or the role it
            // assumes for `roleARN` (a cluster of another account, say): it goes only to the
            // cluster's real endpoint, as that identity sees it, over TLS, never to a server
            // a Secret merely names.
            let (credentials, region) = match &eks.role_arn {
                Some(role) => aws
                    .assumed(role)
                    .await
                    .map_err(|e| anyhow!("cluster Secret {secret_name}: {e}"))?,
                None => aws.credentials().await?,
            };
            let assumed = eks.role_arn.as_ref().map(|_| &credentials);
            let endpoint = aws.eks_endpoint(&eks.cluster_name, assumed).await?;
            if !server.starts_with("https://")
                || endpoint.trim_end_matches('/') != server.trim_end_matches('/')
            {
                bail!(
                    "cluster Secret {secret_name}: server is not the https endpoint EKS gives cluster {:?}; no EKS token is sent to it",
                    eks.cluster_name
                );
            }
            let token = super::eks_token::token(
                &credentials,
                &region,
                &eks.cluster_name,
                std::time::SystemTime::now(),
            )?;
            kube_config.auth_info.token = Some(token.into());
        }
        (None, None) => {}
    }
    let client = baton_telemetry::kube_client_from(kube_config)
        .map_err(|e| anyhow!("cluster Secret {secret_name}: {e}"))?;
    let namespaces = keys
        .get("namespaces")
        .map(|n| {
            n.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(Member {
        name: keys.get("name").cloned().unwrap_or(secret_name),
        client,
        namespaces,
    })
}
