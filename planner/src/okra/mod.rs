//! okra's management-cluster controllers, run by a planner that watches a cluster. Every sync
//! period:
//! - each `ClusterSet` makes an Argo CD cluster Secret for every EKS cluster its tags select
//!   (`cluster_sets.rs`);
//! - each `AWSTargetGroupSet` turns the `TargetGroupBinding`s of the member clusters those
//!   Secrets list into `AWSTargetGroup`s (`target_group_sets.rs`, reaching the clusters with
//!   a bearer token or an EKS token, `members.rs`, `eks_token.rs`).
//!
//! Cells then find those `AWSTargetGroup`s (`crate::discovery`).
//!
//! They only write Kubernetes objects, which are their state: a planner that restarts, or a
//! standby that takes over, reconciles again from what the cluster holds.

use std::time::Duration;

use kube::Api;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tracing::debug;

mod cluster_sets;
mod eks_token;
mod members;
mod target_group_sets;

/// The field manager of what a set writes (server-side apply): one per set, so that two sets
/// never take each other's fields.
fn field_manager(set: &DynamicObject) -> String {
    format!(
        "baton-{}-{}",
        set.types
            .as_ref()
            .map_or("set", |t| t.kind.as_str())
            .to_ascii_lowercase(),
        set.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// Whether `object` is controlled by `set` (its controller ownerReference is the set's uid).
fn controlled_by(object: &kube::api::ObjectMeta, set: &DynamicObject) -> bool {
    object.owner_references.as_ref().is_some_and(|owners| {
        owners
            .iter()
            .any(|o| o.controller == Some(true) && Some(&o.uid) == set.metadata.uid.as_ref())
    })
}

/// What the controllers watch.
#[derive(Clone, Debug)]
pub struct OkraConfig {
    /// The namespace watched; `None` for every namespace.
    pub namespace: Option<String>,
    /// The time between two rounds.
    pub sync_period: Duration,
}

/// Runs the controllers until `shutdown` fires.
pub async fn run(
    management: kube::Client,
    config: OkraConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let aws = Aws::default();
    let mut ticks = tokio::time::interval(config.sync_period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = ticks.tick() => {}
        }
        let namespace = config.namespace.as_deref();
        let round = async {
            // Secrets first: a cluster found now is read for bindings in the same round.
            cluster_sets::reconcile_all(&management, namespace, &aws).await;
            target_group_sets::reconcile_all(&management, namespace, &aws).await;
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            () = round => {}
        }
    }
}

/// AWS as the controllers use it: EKS for ClusterSets, credentials for EKS tokens. Built from
/// the standard chain on first use, so a planner without okra's sets never reads AWS settings.
#[derive(Default)]
pub(crate) struct Aws {
    config: OnceCell<aws_config::SdkConfig>,
    /// Assumed roles' credentials, by role ARN.
    assumed: std::sync::Mutex<std::collections::HashMap<String, aws_credential_types::Credentials>>,
}

impl Aws {
    async fn config(&self) -> &aws_config::SdkConfig {
        self.config
            .get_or_init(|| async {
                let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                baton_alb::sdk_config(loader, baton_alb::Timeouts::default()).await
            })
            .await
    }

    async fn eks(&self) -> aws_sdk_eks::Client {
        aws_sdk_eks::Client::new(self.config().await)
    }

    /// The endpoint EKS gives cluster `name`, asked with `credentials` (an assumed role's)
    /// or the planner's own.
    async fn eks_endpoint(
        &self,
        name: &str,
        credentials: Option<&aws_credential_types::Credentials>,
    ) -> anyhow::Result<String> {
        let eks = match credentials {
            Some(c) => {
                let config = aws_sdk_eks::config::Builder::from(self.config().await)
                    .credentials_provider(c.clone())
                    .build();
                aws_sdk_eks::Client::from_conf(config)
            }
            None => self.eks().await,
        };
        describe_cluster(&eks, name)
            .await?
            .and_then(|c| c.endpoint)
            .ok_or_else(|| anyhow::anyhow!("EKS cluster {name} has no endpoint yet"))
    }

    /// The credentials of role `role_arn`, assumed with the planner's own identity (as Argo
    /// CD's `awsAuthConfig.roleARN` has it), and the region, for signing EKS tokens. Kept
    /// until five minutes before they expire.
    async fn assumed(
        &self,
        role_arn: &str,
    ) -> anyhow::Result<(aws_credential_types::Credentials, String)> {
        use aws_credential_types::provider::ProvideCredentials as _;
        let (_, region) = self.credentials().await?;
        let fresh = |c: &aws_credential_types::Credentials| {
            c.expiry().is_none_or(|at| {
                at > std::time::SystemTime::now() + std::time::Duration::from_secs(300)
            })
        };
        if let Some(kept) = self
            .assumed
            .lock()
            .expect("not poisoned")
            .get(role_arn)
            .filter(|c| fresh(c))
        {
            return Ok((kept.clone(), region));
        }
        let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
            .session_name("baton-okra")
            .configure(self.config().await)
            .build()
            .await;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| anyhow::anyhow!("assuming role {role_arn}: {}", error_chain(&e)))?;
        self.assumed
            .lock()
            .expect("not poisoned")
            .insert(role_arn.to_owned(), credentials.clone());
        Ok((credentials, region))
    }

    /// The planner's credentials and region, for signing EKS tokens.
    async fn credentials(&self) -> anyhow::Result<(aws_credential_types::Credentials, String)> {
        use aws_credential_types::provider::ProvideCredentials as _;
        let config = self.config().await;
        let provider = config
            .credentials_provider()
            .ok_or_else(|| anyhow::anyhow!("no AWS credentials for an EKS token"))?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| anyhow::anyhow!("AWS credentials for an EKS token: {e}"))?;
        let region = config
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| anyhow::anyhow!("no AWS region for an EKS token (AWS_REGION)"))?;
        Ok((credentials, region))
    }
}

/// EKS's description of cluster `name` (`None` when EKS gives none).
async fn describe_cluster(
    eks: &aws_sdk_eks::Client,
    name: &str,
) -> anyhow::Result<Option<aws_sdk_eks::types::Cluster>> {
    let described = eks
        .describe_cluster()
        .name(name)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "EKS DescribeCluster {name}: {}",
                baton_alb::sdk_error_line(&e)
            )
        })?;
    Ok(described.cluster)
}

/// An error with its causes, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The API resource of one of okra's kinds, by its place in
/// [`baton_schemas::crd::OKRA_KINDS`].
fn okra_resource(index: usize) -> ApiResource {
    crate::cluster::api_resource(&baton_schemas::crd::OKRA_KINDS[index])
}

/// Merges `status` into the object's status where it changed; a failure is logged and the
/// next round writes it again.
async fn write_status(
    management: &kube::Client,
    resource: &ApiResource,
    object: &DynamicObject,
    status: Value,
) {
    let current = &object.data["status"];
    let changed = status
        .as_object()
        .is_some_and(|fields| fields.iter().any(|(k, v)| &current[k] != v));
    if !changed {
        return;
    }
    let (Some(name), Some(namespace)) = (&object.metadata.name, &object.metadata.namespace) else {
        return;
    };
    let api: Api<DynamicObject> = Api::namespaced_with(management.clone(), namespace, resource);
    let patch = Patch::Merge(json!({"status": status}));
    if let Err(e) = api
        .patch_status(name, &PatchParams::default(), &patch)
        .await
    {
        debug!(kind = %resource.kind, %namespace, %name, error = %e, "status not written");
    }
}
