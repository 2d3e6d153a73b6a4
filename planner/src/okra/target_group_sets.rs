//! `AWSTargetGroupSet`: for each set, the `TargetGroupBinding`s (`elbv2.k8s.aws/v1beta1`)
//! that `bindingSelector` selects in every member cluster `clusterSelector` selects become
//! `AWSTargetGroup`s in the set's namespace: named `<binding namespace>-<binding name>` as in
//! okra (with `-<cluster>` added when two clusters have a binding of that name), labelled as
//! the binding is plus the template's labels, `spec.arn` the binding's target group, owned by
//! the set (deleting the set deletes them). What the set made and no longer finds is deleted,
//! unless a cluster could not be read this round: a cluster that is briefly unreachable does
//! not take its traffic away.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use baton_schemas::okra::{
    AwsTargetGroupSet, MADE_BY_SET, is_target_group_arn, target_group_object_name,
};

use super::{controlled_by, field_manager, members, okra_resource, write_status};

/// The AWS Load Balancer Controller's binding of a target group to a Service.
fn bindings_resource() -> ApiResource {
    ApiResource {
        group: "elbv2.k8s.aws".to_owned(),
        version: "v1beta1".to_owned(),
        api_version: "elbv2.k8s.aws/v1beta1".to_owned(),
        kind: "TargetGroupBinding".to_owned(),
        plural: "targetgroupbindings".to_owned(),
    }
}

/// One `AWSTargetGroup` a set wants.
#[derive(Debug, PartialEq)]
struct Wanted {
    arn: String,
    labels: BTreeMap<String, String>,
}

/// Reconciles every set in `namespace` (every namespace when `None`).
pub(super) async fn reconcile_all(
    management: &kube::Client,
    namespace: Option<&str>,
    aws: &super::Aws,
) {
    let resource = okra_resource(1);
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(management.clone(), ns, &resource),
        None => Api::all_with(management.clone(), &resource),
    };
    let sets = match api.list(&ListParams::default()).await {
        Ok(sets) => sets.items,
        Err(kube::Error::Api(e)) if e.code == 404 => return,
        Err(e) => {
            debug!(error = %e, "AWSTargetGroupSets not listed");
            return;
        }
    };
    for object in sets {
        let name = object.metadata.name.clone().unwrap_or_default();
        let set_namespace = object.metadata.namespace.clone().unwrap_or_default();
        let status = match reconcile(management, &object, aws).await {
            Ok(made) => json!({"targetGroups": made, "message": null}),
            Err(e) => {
                warn!(set = %name, namespace = %set_namespace, error = format!("{e:#}"), "AWSTargetGroupSet not reconciled");
                json!({"message": format!("{e:#}")})
            }
        };
        write_status(management, &resource, &object, status).await;
    }
}

/// Reconciles one set; returns the names of the `AWSTargetGroup`s it has.
async fn reconcile(
    management: &kube::Client,
    object: &DynamicObject,
    aws: &super::Aws,
) -> anyhow::Result<Vec<String>> {
    let set: AwsTargetGroupSet = serde_json::from_value(serde_json::to_value(object)?)
        .context("not an AWSTargetGroupSet okra's README would write")?;
    let name = set.metadata.name.clone();
    let namespace = object.metadata.namespace.clone().unwrap_or_default();
    let mut wanted: BTreeMap<String, Wanted> = BTreeMap::new();
    let mut unread = Vec::new();
    for generator in &set.spec.generators {
        let selectors = &generator.awseks;
        let secrets = members::cluster_secrets(management, &namespace, &selectors.cluster_selector)
            .await
            .context("listing Argo CD cluster Secrets")?;
        for secret in &secrets {
            let member = match members::member(secret, aws).await {
                Ok(member) => member,
                Err(e) => {
                    unread.push(format!("{e:#}"));
                    continue;
                }
            };
            match bindings(&member, &selectors.binding_selector.query()).await {
                Ok(found) => {
                    for binding in found {
                        add(&mut wanted, &set, &member.name, binding);
                    }
                }
                Err(e) => unread.push(format!("cluster {}: {e:#}", member.name)),
            }
        }
    }
    let groups =
        Api::<DynamicObject>::namespaced_with(management.clone(), &namespace, &okra_resource(0));
    // An AWSTargetGroup of the same name that this set does not control (written by hand, or
    // another set's) is left alone and named in the status.
    let mut foreign = Vec::new();
    for group in wanted.keys() {
        let existing = groups
            .get_opt(group)
            .await
            .with_context(|| format!("reading AWSTargetGroup {namespace}/{group}"))?;
        if existing.is_some_and(|e| !controlled_by(&e.metadata, object)) {
            foreign.push(group.clone());
        }
    }
    wanted.retain(|group, _| !foreign.contains(group));
    for (group, want) in &wanted {
        let body = json!({
            "apiVersion": "okra.mumo.co/v1alpha1",
            "kind": "AWSTargetGroup",
            "metadata": {
                "name": group,
                "namespace": namespace,
                "labels": want.labels,
                "annotations": set.spec.template.metadata.annotations,
                "ownerReferences": [owner(object)],
            },
            "spec": {"arn": want.arn},
        });
        groups
            .patch(
                group,
                &PatchParams::apply(&field_manager(object)).force(),
                &Patch::Apply(&body),
            )
            .await
            .with_context(|| format!("writing AWSTargetGroup {namespace}/{group}"))?;
    }
    let made = groups
        .list(&ListParams::default().labels(&format!("{MADE_BY_SET}={name}")))
        .await
        .context("listing the AWSTargetGroups the set made")?;
    let stale: BTreeSet<String> = made
        .items
        .iter()
        .filter(|o| controlled_by(&o.metadata, object))
        .filter_map(|o| o.metadata.name.clone())
        .filter(|n| !wanted.contains_key(n))
        .collect();
    if !unread.is_empty() {
        anyhow::bail!(
            "{}; nothing was deleted this round{}",
            unread.join("; "),
            if stale.is_empty() {
                String::new()
            } else {
                format!(" ({} kept)", stale.len())
            }
        );
    }
    for group in stale {
        info!(set = %name, %namespace, %group, "AWSTargetGroup no longer found; deleting it");
        match groups.delete(&group, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("deleting AWSTargetGroup {namespace}/{group}"));
            }
        }
    }
    if !foreign.is_empty() {
        anyhow::bail!(
            "left alone, as this set does not own them: AWSTargetGroup {}",
            foreign.join(", ")
        );
    }
    Ok(wanted.into_keys().collect())
}

/// A binding found in a member cluster.
struct Binding {
    namespace: String,
    name: String,
    labels: BTreeMap<String, String>,
    arn: String,
}

/// Lists the bindings `selector` selects in a member cluster (in its namespaces, when it is
/// limited to some).
async fn bindings(member: &members::Member, selector: &str) -> anyhow::Result<Vec<Binding>> {
    let resource = bindings_resource();
    let apis: Vec<Api<DynamicObject>> = match member.namespaces.is_empty() {
        true => vec![Api::all_with(member.client.clone(), &resource)],
        false => member
            .namespaces
            .iter()
            .map(|ns| Api::namespaced_with(member.client.clone(), ns, &resource))
            .collect(),
    };
    let mut found = Vec::new();
    for api in apis {
        let listed = api
            .list(&ListParams::default().labels(selector))
            .await
            .context("listing TargetGroupBindings")?;
        for object in listed.items {
            // The controller's field is `targetGroupARN`; okra's README writes `arn`.
            let arn = [
                &object.data["spec"]["targetGroupARN"],
                &object.data["spec"]["arn"],
            ]
            .into_iter()
            .find_map(Value::as_str)
            .unwrap_or_default()
            .to_owned();
            let name = object.metadata.name.clone().unwrap_or_default();
            if !is_target_group_arn(&arn) {
                warn!(cluster = %member.name, binding = %name, "TargetGroupBinding without a target group ARN left out");
                continue;
            }
            found.push(Binding {
                namespace: object.metadata.namespace.clone().unwrap_or_default(),
                name,
                labels: object.metadata.labels.clone().unwrap_or_default(),
                arn,
            });
        }
    }
    Ok(found)
}

/// Adds the `AWSTargetGroup` a binding makes.
fn add(
    wanted: &mut BTreeMap<String, Wanted>,
    set: &AwsTargetGroupSet,
    cluster: &str,
    binding: Binding,
) {
    let mut labels = binding.labels;
    labels.extend(set.spec.template.metadata.labels.clone());
    labels.insert(MADE_BY_SET.to_owned(), set.metadata.name.clone());
    let mut name = target_group_object_name(&binding.namespace, &binding.name);
    if wanted.get(&name).is_some_and(|w| w.arn != binding.arn) {
        // Cluster names may hold what object names may not (EKS allows `_` and capitals).
        let cluster: String = cluster
            .to_ascii_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        name = format!("{name}-{}", cluster.trim_matches('-'));
    }
    wanted.insert(
        name,
        Wanted {
            arn: binding.arn,
            labels,
        },
    );
}

/// The set as the owner of what it makes.
fn owner(object: &DynamicObject) -> OwnerReference {
    OwnerReference {
        api_version: "okra.mumo.co/v1alpha1".to_owned(),
        kind: "AWSTargetGroupSet".to_owned(),
        name: object.metadata.name.clone().unwrap_or_default(),
        uid: object.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}
