//! `ClusterSet`: an Argo CD cluster Secret, in the set's namespace, for every EKS cluster whose
//! tags match a generator's `matchTags`, as okra makes them: named after the cluster, labelled
//! `argocd.argoproj.io/secret-type: cluster` plus the template's labels, holding `name`,
//! `server` (the cluster's endpoint) and `config` (`awsAuthConfig.clusterName` and the
//! cluster's CA), owned by the set. A Secret the set made for a cluster that no longer matches
//! (or no longer exists) is deleted.

use std::collections::BTreeMap;

use anyhow::Context;
use aws_sdk_eks as eks;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::json;
use tracing::{debug, info, warn};

use baton_schemas::okra::{ARGOCD_SECRET_TYPE, ClusterSet, MADE_BY_CLUSTER_SET};

use super::{Aws, controlled_by, field_manager, okra_resource, write_status};

/// An EKS cluster as a ClusterSet sees it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct EksCluster {
    pub(super) name: String,
    pub(super) endpoint: String,
    pub(super) ca_data: String,
    pub(super) tags: BTreeMap<String, String>,
}

/// Reconciles every ClusterSet in `namespace` (every namespace when `None`). The account's
/// clusters are listed once per round, and only when there is a set.
pub(super) async fn reconcile_all(management: &kube::Client, namespace: Option<&str>, aws: &Aws) {
    let resource = okra_resource(2);
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(management.clone(), ns, &resource),
        None => Api::all_with(management.clone(), &resource),
    };
    let sets = match api.list(&ListParams::default()).await {
        Ok(sets) if sets.items.is_empty() => return,
        Ok(sets) => sets.items,
        Err(kube::Error::Api(e)) if e.code == 404 => return,
        Err(e) => {
            debug!(error = %e, "ClusterSets not listed");
            return;
        }
    };
    let clusters = clusters(&aws.eks().await).await;
    for object in sets {
        let name = object.metadata.name.clone().unwrap_or_default();
        let status = match &clusters {
            Ok(clusters) => match reconcile(management, &object, clusters).await {
                Ok(made) => json!({"clusters": made, "message": null}),
                Err(e) => json!({"message": format!("{e:#}")}),
            },
            Err(e) => json!({"message": format!("{e:#}")}),
        };
        if let Some(message) = status["message"].as_str() {
            warn!(set = %name, %message, "ClusterSet not reconciled");
        }
        write_status(management, &resource, &object, status).await;
    }
}

/// Lists every EKS cluster of the account and region, with its tags.
async fn clusters(client: &eks::Client) -> anyhow::Result<Vec<EksCluster>> {
    let mut names = Vec::new();
    let mut pages = client.list_clusters().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page
            .map_err(|e| anyhow::anyhow!("EKS ListClusters: {}", baton_alb::sdk_error_line(&e)))?;
        names.extend(page.clusters.unwrap_or_default());
    }
    let mut clusters = Vec::new();
    for name in names {
        let Some(cluster) = super::describe_cluster(client, &name).await? else {
            continue;
        };
        clusters.push(EksCluster {
            name,
            endpoint: cluster.endpoint.unwrap_or_default(),
            ca_data: cluster
                .certificate_authority
                .and_then(|ca| ca.data)
                .unwrap_or_default(),
            tags: cluster.tags.unwrap_or_default().into_iter().collect(),
        });
    }
    Ok(clusters)
}

/// Reconciles one set; returns the names of the Secrets it has.
async fn reconcile(
    management: &kube::Client,
    object: &DynamicObject,
    clusters: &[EksCluster],
) -> anyhow::Result<Vec<String>> {
    let set: ClusterSet = serde_json::from_value(serde_json::to_value(object)?)
        .context("not a ClusterSet okra's README would write")?;
    let namespace = object.metadata.namespace.clone().unwrap_or_default();
    let matching: Vec<&EksCluster> = clusters
        .iter()
        .filter(|c| {
            set.spec.generators.iter().any(|g| {
                g.awseks
                    .selector
                    .match_tags
                    .iter()
                    .all(|(k, v)| c.tags.get(k) == Some(v))
            })
        })
        .collect();
    let secrets: Api<Secret> = Api::namespaced(management.clone(), &namespace);
    // A Secret of the same name this set does not control (Argo CD's own, say) is left alone.
    let mut foreign = Vec::new();
    let mut wanted = Vec::new();
    for cluster in &matching {
        let existing = secrets
            .get_opt(&cluster.name)
            .await
            .with_context(|| format!("reading Secret {namespace}/{}", cluster.name))?;
        if existing.is_some_and(|e| !controlled_by(&e.metadata, object)) {
            foreign.push(cluster.name.clone());
        } else {
            wanted.push(*cluster);
        }
    }
    for cluster in &wanted {
        // A cluster still being created has no endpoint yet: its Secret waits (and one made
        // before stays).
        if cluster.endpoint.is_empty() {
            continue;
        }
        let secret = secret(&set, object, &namespace, cluster);
        secrets
            .patch(
                &cluster.name,
                &PatchParams::apply(&field_manager(object)).force(),
                &Patch::Apply(&secret),
            )
            .await
            .with_context(|| format!("writing Secret {namespace}/{}", cluster.name))?;
    }
    let made = secrets
        .list(
            &ListParams::default().labels(&format!("{MADE_BY_CLUSTER_SET}={}", set.metadata.name)),
        )
        .await
        .context("listing the Secrets the set made")?;
    for stale in made
        .items
        .iter()
        .filter(|s| controlled_by(&s.metadata, object))
        .filter_map(|s| s.metadata.name.clone())
        .filter(|n| !wanted.iter().any(|c| &c.name == n))
    {
        info!(set = %set.metadata.name, %namespace, secret = %stale, "cluster no longer matches; deleting its Secret");
        match secrets.delete(&stale, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                return Err(e).with_context(|| format!("deleting Secret {namespace}/{stale}"));
            }
        }
    }
    if !foreign.is_empty() {
        anyhow::bail!(
            "left alone, as this set does not own them: Secret {}",
            foreign.join(", ")
        );
    }
    Ok(wanted.iter().map(|c| c.name.clone()).collect())
}

/// The Argo CD cluster Secret of one cluster.
pub(super) fn secret(
    set: &ClusterSet,
    object: &DynamicObject,
    namespace: &str,
    cluster: &EksCluster,
) -> Secret {
    let mut labels = set.spec.template.metadata.labels.clone();
    labels.insert(ARGOCD_SECRET_TYPE.to_owned(), "cluster".to_owned());
    labels.insert(MADE_BY_CLUSTER_SET.to_owned(), set.metadata.name.clone());
    let config = json!({
        "awsAuthConfig": {"clusterName": cluster.name},
        "tlsClientConfig": {"caData": cluster.ca_data},
    });
    let data = [
        ("name", cluster.name.clone()),
        ("server", cluster.endpoint.clone()),
        ("config", config.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
    .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(cluster.name.clone()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            annotations: Some(set.spec.template.metadata.annotations.clone())
                .filter(|a| !a.is_empty()),
            owner_references: Some(vec![OwnerReference {
                api_version: "okra.mumo.co/v1alpha1".to_owned(),
                kind: "ClusterSet".to_owned(),
                name: object.metadata.name.clone().unwrap_or_default(),
                uid: object.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}
