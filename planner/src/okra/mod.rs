//! okra's management-cluster controllers, run by a planner that watches a cluster: every sync
//! period each `AWSTargetGroupSet` turns the `TargetGroupBinding`s of member clusters into
//! `AWSTargetGroup`s (`target_group_sets.rs`, reaching clusters through Argo CD's cluster
//! Secrets, `members.rs`). Cells then find those (`crate::discovery`).
//!
//! They only write Kubernetes objects, which are their state: a planner that restarts, or a
//! standby that takes over, reconciles again from what the cluster holds.

use std::time::Duration;

use kube::Api;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::debug;

mod members;
mod target_group_sets;

/// The field manager of what the controllers write (server-side apply).
const FIELD_MANAGER: &str = "baton";

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
    let mut ticks = tokio::time::interval(config.sync_period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = ticks.tick() => {}
        }
        let round = target_group_sets::reconcile_all(&management, config.namespace.as_deref());
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            () = round => {}
        }
    }
}

/// The API resource of one of okra's kinds, by its place in
/// [`baton_schemas::crd::OKRA_KINDS`].
fn okra_resource(index: usize) -> ApiResource {
    let kind = &baton_schemas::crd::OKRA_KINDS[index];
    ApiResource {
        group: kind.group.to_owned(),
        version: baton_schemas::crd::VERSION.to_owned(),
        api_version: kind.api_version(),
        kind: kind.kind.to_owned(),
        plural: kind.plural.to_owned(),
    }
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
