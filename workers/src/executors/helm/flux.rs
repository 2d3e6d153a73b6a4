//! The `flux` driver: Flux's helm-controller performs the release, Baton writes what it reads
//! and waits for its verdict, all through the Kubernetes API.
//!
//! - **apply**: creates the target namespace if missing (waiting out one still terminating),
//!   creates or updates the chart source (`HelmRepository`, or `OCIRepository` for `oci://`
//!   charts, named `<namespace>-<release>`) and the `HelmRelease` (`helm.toolkit.fluxcd.io/v2`,
//!   named after the release), their specs replaced by the release's. It then follows the
//!   `HelmRelease` until its `Ready` condition speaks for the generation written: `True`
//!   succeeds; a terminal failure fails at once instead of waiting out the timeout —
//!   `Stalled`, `InstallFailed` or `UpgradeFailed` when no remediation retry is left to Flux,
//!   `RollbackFailed`, `UninstallFailed`, `TestFailed`.
//! - **apply again after a failure** (a node's retry, a workflow run again): the spec is the
//!   same, so the generation stays and Flux, out of retries, would not try again. When the
//!   `HelmRelease` has terminally failed at its generation, the job asks Flux to reset its
//!   failure counts and reconcile (`reconcile.fluxcd.io/resetAt` and `requestedAt`, both set
//!   to the job's marker), and judges only a status that has handled that request
//!   (`status.lastHandledResetAt`, `lastHandledReconcileAt`).
//! - **uninstall**: deletes the `HelmRelease` and follows it until it is gone (Flux uninstalls
//!   the release before it lets the object go), failing at once on `UninstallFailed`; then
//!   deletes the chart source.
//!
//! Writing the same spec again leaves the generation as it is, so a redelivered job adopts the
//! `HelmRelease` the first delivery wrote and waits for the same verdict.

use std::collections::BTreeMap;

use baton_schemas::helm::{
    Deploy, FLUX_HELM_API_VERSION, FLUX_HELM_REPOSITORY_API_VERSION,
    FLUX_OCI_REPOSITORY_API_VERSION,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tracing::{debug, info};

use super::{Done, Failure, HelmConfig, Operation, pause};

/// The annotation naming the attempt that last wrote a `HelmRelease`.
pub const JOB_ANNOTATION: &str = "baton.dev/job";
/// Flux's annotation asking for a reconcile, whatever the generation.
pub const RECONCILE_ANNOTATION: &str = "reconcile.fluxcd.io/requestedAt";
/// Flux's annotation asking to reset a release's failure counts (with a reconcile request of
/// the same value).
pub const RESET_ANNOTATION: &str = "reconcile.fluxcd.io/resetAt";

/// Returns the API resource of one of the Flux kinds Baton writes, by `apiVersion` and kind.
pub fn resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        "HelmRelease" => "helmreleases",
        "HelmRepository" => "helmrepositories",
        "OCIRepository" => "ocirepositories",
        other => unreachable!("Baton writes no {other}"),
    };
    ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        plural: plural.to_owned(),
    }
}

/// Returns the API resource of `HelmRelease`.
pub fn helm_releases() -> ApiResource {
    resource(FLUX_HELM_API_VERSION, "HelmRelease")
}

/// What writing an object did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Written {
    Created,
    Updated,
    Unchanged,
}

/// Writes the release's Flux objects and waits for helm-controller's verdict.
pub(crate) async fn apply(
    config: &HelmConfig,
    client: &kube::Client,
    op: &Operation<'_>,
) -> Result<Done, Failure> {
    let spec = op.spec;
    if let Some(problem) = spec.flux_values_problem() {
        return Err(Failure::Error(problem.to_owned()));
    }
    let subchart = spec.chart.as_ref().filter(|c| c.subchart.is_some());
    if subchart.is_some_and(|c| !c.subcharts_servable()) {
        return Err(Failure::Error(
            baton_schemas::helm::SUBCHARTS_NOT_SERVED.to_owned(),
        ));
    }
    if subchart.is_some() && config.subchart_repository.is_none() {
        return Err(Failure::Error(
            "the flux driver reads a subchart from the planner's chart repository, which takes it out of its parent chart: give this worker --subchart-repository-url (the planner's API URL and /charts, as Flux's source-controller reaches it)".to_owned(),
        ));
    }
    ensure_namespace(config, client, &spec.namespace, op).await?;
    let annotations = BTreeMap::from([(JOB_ANNOTATION.to_owned(), op.marker.clone())]);
    let (source, release) = spec.flux_objects(&annotations, config.subchart_repository.as_deref());
    let source_resource = if source["kind"] == "OCIRepository" {
        resource(FLUX_OCI_REPOSITORY_API_VERSION, "OCIRepository")
    } else {
        resource(FLUX_HELM_REPOSITORY_API_VERSION, "HelmRepository")
    };
    upsert(client, &source_resource, &source).await?;
    let (written, object) = upsert(client, &helm_releases(), &release).await?;
    let generation = object.metadata.generation.unwrap_or(1);
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &spec.namespace, &helm_releases());
    let reset = retry_failed(&api, &object, written, generation, op).await?;
    info!(release = %spec.release, namespace = %spec.namespace, generation, ?written, reset = reset.is_some(), "HelmRelease written; waiting for it to be ready");
    let status = follow(config, &api, &spec.release, op, |object| {
        verdict(object, generation, spec, reset.as_deref())
    })
    .await?;
    let history = &status["history"][0];
    Ok(Done {
        what: match written {
            Written::Created => "installed",
            Written::Updated => "upgraded",
            Written::Unchanged => "adopted",
        },
        revision: history["version"].as_i64(),
        chart: history["chartName"]
            .as_str()
            .zip(history["chartVersion"].as_str())
            .map(|(n, v)| format!("{n}-{v}")),
    })
}

/// Asks Flux to try a `HelmRelease` again when this job wrote it unchanged and it has failed
/// for good at its generation: Flux would not retry the same spec. Returns the token of the
/// request, which the status must show handled before it speaks for this job; also when an
/// earlier delivery of the job asked already.
async fn retry_failed(
    api: &Api<DynamicObject>,
    object: &DynamicObject,
    written: Written,
    generation: i64,
    op: &Operation<'_>,
) -> Result<Option<String>, Failure> {
    if written != Written::Unchanged {
        return Ok(None);
    }
    let annotations = object.metadata.annotations.clone().unwrap_or_default();
    if annotations.get(RESET_ANNOTATION) == Some(&op.marker) {
        return Ok(Some(op.marker.clone()));
    }
    let value = serde_json::to_value(object).unwrap_or_default();
    if !matches!(
        verdict(&value, generation, op.spec, None),
        Verdict::Failed(_)
    ) {
        return Ok(None);
    }
    let patch = kube::api::Patch::Merge(json!({"metadata": {"annotations": {
        RECONCILE_ANNOTATION: op.marker,
        RESET_ANNOTATION: op.marker,
    }}}));
    api.patch(&op.spec.release, &kube::api::PatchParams::default(), &patch)
        .await
        .map_err(|e| {
            format!(
                "asking Flux to retry HelmRelease {}/{}: {e}",
                op.spec.namespace, op.spec.release
            )
        })?;
    info!(release = %op.spec.release, namespace = %op.spec.namespace, "the HelmRelease failed at this spec before; asked Flux to reset its failures and try again");
    Ok(Some(op.marker.clone()))
}

/// Deletes the `HelmRelease`, waits until Flux has uninstalled the release and let the
/// object go, then deletes its chart source.
pub(crate) async fn uninstall(
    config: &HelmConfig,
    client: &kube::Client,
    op: &Operation<'_>,
) -> Result<Done, Failure> {
    let spec = op.spec;
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &spec.namespace, &helm_releases());
    let existing = api.get_opt(&spec.release).await.map_err(|e| {
        format!(
            "reading HelmRelease {}/{}: {e}",
            spec.namespace, spec.release
        )
    })?;
    let what = match existing {
        None => "absent",
        Some(_) => {
            match api.delete(&spec.release, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    return Err(Failure::Error(format!(
                        "deleting HelmRelease {}/{}: {e}",
                        spec.namespace, spec.release
                    )));
                }
            }
            info!(release = %spec.release, namespace = %spec.namespace, "HelmRelease deleted; waiting until it is gone");
            follow_until_gone(config, &api, &spec.release, op).await?;
            "uninstalled"
        }
    };
    // The chart source goes with the release: its name is the release's own.
    let (source, _) = spec.flux_objects(&BTreeMap::new(), config.subchart_repository.as_deref());
    let source_name = spec.source_name();
    let source_namespace = spec.source_namespace().to_owned();
    for (api_version, kind) in [
        (FLUX_HELM_REPOSITORY_API_VERSION, "HelmRepository"),
        (FLUX_OCI_REPOSITORY_API_VERSION, "OCIRepository"),
    ] {
        if spec.chart.is_some() && source["kind"] != kind {
            continue;
        }
        let sources: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            &source_namespace,
            &resource(api_version, kind),
        );
        match sources.delete(&source_name, &DeleteParams::default()).await {
            Ok(_) => debug!(release = %spec.release, kind, "chart source deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => debug!(release = %spec.release, kind, error = %e, "chart source not deleted"),
        }
    }
    Ok(Done {
        what,
        ..Done::default()
    })
}

/// Creates the namespace if it is missing; one still terminating is waited out first.
async fn ensure_namespace(
    config: &HelmConfig,
    client: &kube::Client,
    name: &str,
    op: &Operation<'_>,
) -> Result<(), Failure> {
    let api: Api<Namespace> = Api::all(client.clone());
    loop {
        match api.get_opt(name).await {
            Ok(Some(ns)) if ns.metadata.deletion_timestamp.is_some() => {
                if tokio::time::Instant::now() >= op.deadline {
                    return Err(Failure::Error(format!(
                        "namespace {name} was still terminating at the node's timeout"
                    )));
                }
                pause(config.poll, op.stop).await?;
            }
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {
                let ns: Namespace = serde_json::from_value(json!({"metadata": {
                    "name": name,
                    "labels": {"name": name, "app.kubernetes.io/managed-by": "baton"},
                }}))
                .expect("a namespace");
                match api.create(&PostParams::default(), &ns).await {
                    Ok(_) => {
                        info!(namespace = name, "namespace created");
                        return Ok(());
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => {
                        return Err(Failure::Error(format!("creating namespace {name}: {e}")));
                    }
                }
            }
            Err(e) => return Err(Failure::Error(format!("reading namespace {name}: {e}"))),
        }
    }
}

/// Creates `wanted`, or replaces the spec of the object of its name (Baton's labels and
/// annotations merged over the object's own), unless it is already so.
async fn upsert(
    client: &kube::Client,
    resource: &ApiResource,
    wanted: &Value,
) -> Result<(Written, DynamicObject), Failure> {
    let namespace = wanted["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = wanted["metadata"]["name"].as_str().unwrap_or_default();
    let what = format!("{} {namespace}/{name}", resource.kind);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    // A conflict means another writer came between the read and the write: read again.
    for _ in 0..5 {
        let existing = api
            .get_opt(name)
            .await
            .map_err(|e| format!("reading {what}: {e}"))?;
        let Some(mut existing) = existing else {
            let object: DynamicObject =
                serde_json::from_value(wanted.clone()).expect("rendered objects are objects");
            match api.create(&PostParams::default(), &object).await {
                Ok(created) => return Ok((Written::Created, created)),
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(Failure::Error(format!("creating {what}: {e}"))),
            }
        };
        let mut labels = existing.metadata.labels.clone().unwrap_or_default();
        let mut annotations = existing.metadata.annotations.clone().unwrap_or_default();
        for (into, from) in [
            (&mut labels, &wanted["metadata"]["labels"]),
            (&mut annotations, &wanted["metadata"]["annotations"]),
        ] {
            for (k, v) in from.as_object().into_iter().flatten() {
                into.insert(k.clone(), v.as_str().unwrap_or_default().to_owned());
            }
        }
        let same_spec = existing.data.get("spec") == Some(&wanted["spec"]);
        if same_spec
            && Some(&labels) == existing.metadata.labels.as_ref()
            && Some(&annotations) == existing.metadata.annotations.as_ref()
        {
            return Ok((Written::Unchanged, existing));
        }
        existing.metadata.labels = Some(labels);
        existing.metadata.annotations = Some(annotations);
        existing.data["spec"] = wanted["spec"].clone();
        match api.replace(name, &PostParams::default(), &existing).await {
            Ok(replaced) => {
                let written = if same_spec {
                    Written::Unchanged
                } else {
                    Written::Updated
                };
                return Ok((written, replaced));
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(Failure::Error(format!("updating {what}: {e}"))),
        }
    }
    Err(Failure::Error(format!(
        "{what} kept changing under Baton's writes"
    )))
}

/// What a `HelmRelease`'s status says of the generation Baton wrote.
#[derive(Debug, PartialEq)]
enum Verdict {
    Ready,
    Failed(String),
    Waiting(String),
}

fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// Reads a `HelmRelease`'s status for `generation` and, when a retry was asked for with
/// `reset`, for that request.
fn verdict(
    object: &Value,
    generation: i64,
    spec: &baton_schemas::helm::HelmSpec,
    reset: Option<&str>,
) -> Verdict {
    if let Some(token) = reset {
        let status = &object["status"];
        if status["lastHandledResetAt"].as_str() != Some(token)
            || status["lastHandledReconcileAt"].as_str() != Some(token)
        {
            return Verdict::Waiting("Flux has not handled the retry yet".to_owned());
        }
    }
    let Some(ready) = condition(object, "Ready") else {
        return Verdict::Waiting("no Ready condition yet".to_owned());
    };
    let observed = ready["observedGeneration"]
        .as_i64()
        .or(object["status"]["observedGeneration"].as_i64())
        .unwrap_or(-1);
    let reason = ready["reason"].as_str().unwrap_or_default();
    let message = ready["message"].as_str().unwrap_or_default();
    let said = format!("{reason}: {message}");
    if observed < generation {
        return Verdict::Waiting(format!("generation {generation} not observed yet"));
    }
    if condition(object, "Stalled").is_some_and(|c| c["status"] == "True") {
        let stalled = condition(object, "Stalled").expect("checked");
        return Verdict::Failed(format!(
            "stalled ({}: {}); last {said}",
            stalled["reason"].as_str().unwrap_or_default(),
            stalled["message"].as_str().unwrap_or_default()
        ));
    }
    match ready["status"].as_str() {
        Some("True") => Verdict::Ready,
        Some("False") => {
            let terminal = match reason {
                "InstallFailed" => spec.remediation_retries(Deploy::Install) == Some(0),
                "UpgradeFailed" => spec.remediation_retries(Deploy::Upgrade) == Some(0),
                "RollbackFailed" | "UninstallFailed" | "TestFailed" => true,
                _ => false,
            };
            if terminal {
                Verdict::Failed(said)
            } else {
                Verdict::Waiting(said)
            }
        }
        _ => Verdict::Waiting(said),
    }
}

/// Follows one `HelmRelease` until `judge` decides, the deadline passes or the stop fires.
/// Returns its status when ready.
async fn follow(
    config: &HelmConfig,
    api: &Api<DynamicObject>,
    name: &str,
    op: &Operation<'_>,
    judge: impl Fn(&Value) -> Verdict,
) -> Result<Value, Failure> {
    let release = format!("HelmRelease {}/{name}", op.spec.namespace);
    let mut last = "no status yet".to_owned();
    watch(config, api, name, op, |seen| {
        let failed = |why: String| Some(Err(Failure::Error(format!("{release} {why}"))));
        match seen {
            Seen::Deadline => failed(format!(
                "was not ready within the node's timeout (last: {last})"
            )),
            Seen::Absent => failed("is gone".to_owned()),
            Seen::Deleted => failed("was deleted while Baton waited for it".to_owned()),
            Seen::Object(object) if object.metadata.deletion_timestamp.is_some() => {
                failed("is being deleted while Baton waits for it".to_owned())
            }
            Seen::Object(object) => {
                let value = serde_json::to_value(object).unwrap_or_default();
                match judge(&value) {
                    Verdict::Ready => Some(Ok(value["status"].clone())),
                    Verdict::Failed(why) => failed(format!("failed: {why}")),
                    Verdict::Waiting(why) => {
                        last = why;
                        None
                    }
                }
            }
        }
    })
    .await
}

/// Follows a deleted `HelmRelease` until it is gone, failing at once when Flux reports its
/// uninstall failed.
async fn follow_until_gone(
    config: &HelmConfig,
    api: &Api<DynamicObject>,
    name: &str,
    op: &Operation<'_>,
) -> Result<(), Failure> {
    let release = format!("HelmRelease {}/{name}", op.spec.namespace);
    watch(config, api, name, op, |seen| match seen {
        Seen::Deadline => Some(Err(Failure::Error(format!(
            "{release} was still there at the node's timeout (its finalizer waits for Flux to uninstall the release)"
        )))),
        Seen::Absent | Seen::Deleted => Some(Ok(())),
        Seen::Object(object) => {
            let value = serde_json::to_value(object).unwrap_or_default();
            let ready = condition(&value, "Ready")?;
            (ready["status"] == "False" && ready["reason"] == "UninstallFailed").then(|| {
                Err(Failure::Error(format!(
                    "{release}: UninstallFailed: {}",
                    ready["message"].as_str().unwrap_or_default()
                )))
            })
        }
    })
    .await
}

/// What a watch of one `HelmRelease` shows.
enum Seen<'a> {
    /// The object, as listed or changed.
    Object(&'a DynamicObject),
    /// Not there when listed.
    Absent,
    /// Deleted while watched.
    Deleted,
    /// The node's deadline passed.
    Deadline,
}

/// Watches `HelmRelease` `name` and hands what it sees to `decide` until that returns a
/// result; the deadline is handed over too, and must end the watch. Watch errors are
/// passing (the watcher lists again), the stop fires [`Failure::Stopped`].
async fn watch<T>(
    config: &HelmConfig,
    api: &Api<DynamicObject>,
    name: &str,
    op: &Operation<'_>,
    mut decide: impl FnMut(Seen<'_>) -> Option<Result<T, Failure>>,
) -> Result<T, Failure> {
    let fields = format!("metadata.name={name}");
    let mut events = watcher(api.clone(), watcher::Config::default().fields(&fields)).boxed();
    let mut listed = false;
    loop {
        let event = tokio::select! {
            _ = op.stop.cancelled() => return Err(Failure::Stopped),
            _ = tokio::time::sleep_until(op.deadline) => {
                return decide(Seen::Deadline).unwrap_or_else(|| {
                    Err(Failure::Error(format!("HelmRelease {name}: the node's timeout passed")))
                });
            }
            event = events.next() => event,
        };
        let seen = match &event {
            None => return Err(Failure::Error("the HelmRelease watch ended".to_owned())),
            Some(Err(e)) => {
                debug!(release = name, error = %e, "HelmRelease watch error; the watcher retries");
                pause(config.poll, op.stop).await?;
                continue;
            }
            Some(Ok(watcher::Event::Init)) => {
                listed = false;
                continue;
            }
            Some(Ok(watcher::Event::InitDone)) if !listed => Seen::Absent,
            Some(Ok(watcher::Event::InitDone)) => continue,
            Some(Ok(watcher::Event::Delete(_))) => Seen::Deleted,
            Some(Ok(watcher::Event::InitApply(object))) => {
                listed = true;
                Seen::Object(object)
            }
            Some(Ok(watcher::Event::Apply(object))) => Seen::Object(object),
        };
        if let Some(result) = decide(seen) {
            return result;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_schemas::helm::HelmSpec;

    fn spec(options: Value) -> HelmSpec {
        let mut base = json!({"release": "web", "namespace": "apps",
            "chart": {"url": "https://charts.example.com", "name": "nginx"}});
        for (k, v) in options.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn object(generation: i64, conditions: Value) -> Value {
        json!({"metadata": {"generation": generation}, "status": {"observedGeneration": generation, "conditions": conditions}})
    }

    #[test]
    fn ready_counts_only_for_the_generation_written() {
        let s = spec(json!({}));
        let ready = json!([{"type": "Ready", "status": "True", "reason": "InstallSucceeded", "message": "ok"}]);
        assert_eq!(
            verdict(&object(2, ready.clone()), 2, &s, None),
            Verdict::Ready
        );
        assert!(matches!(
            verdict(&object(1, ready), 2, &s, None),
            Verdict::Waiting(_)
        ));
        let per_condition = json!([{"type": "Ready", "status": "True", "reason": "UpgradeSucceeded", "message": "ok", "observedGeneration": 1}]);
        let mut stale = object(2, per_condition);
        stale["status"]["observedGeneration"] = json!(2);
        assert!(
            matches!(verdict(&stale, 2, &s, None), Verdict::Waiting(_)),
            "the condition's own generation wins"
        );
    }

    #[test]
    fn a_retry_counts_only_once_flux_has_handled_it() {
        let s = spec(json!({}));
        let failed = json!([{"type": "Ready", "status": "False", "reason": "InstallFailed", "message": "boom"}]);
        let mut old = object(1, failed);
        // The failure the retry is for is not its verdict.
        assert!(matches!(
            verdict(&old, 1, &s, Some("baton r/n/2")),
            Verdict::Waiting(_)
        ));
        old["status"]["lastHandledReconcileAt"] = json!("baton r/n/2");
        old["status"]["lastHandledResetAt"] = json!("baton r/n/2");
        assert!(matches!(
            verdict(&old, 1, &s, Some("baton r/n/2")),
            Verdict::Failed(_)
        ));
        let mut ready = old.clone();
        ready["status"]["conditions"] = json!([{"type": "Ready", "status": "True", "reason": "InstallSucceeded", "message": "ok"}]);
        assert_eq!(verdict(&ready, 1, &s, Some("baton r/n/2")), Verdict::Ready);
    }

    #[test]
    fn failures_are_terminal_unless_flux_retries() {
        let failed = json!([{"type": "Ready", "status": "False", "reason": "UpgradeFailed", "message": "boom"}]);
        assert_eq!(
            verdict(&object(3, failed.clone()), 3, &spec(json!({})), None),
            Verdict::Failed("UpgradeFailed: boom".into())
        );
        let retrying = spec(json!({"upgrade": {"remediation": {"retries": 2}}}));
        assert!(matches!(
            verdict(&object(3, failed), 3, &retrying, None),
            Verdict::Waiting(_)
        ));
        let stalled = json!([{"type": "Ready", "status": "False", "reason": "UpgradeFailed", "message": "boom"},
            {"type": "Stalled", "status": "True", "reason": "RetriesExceeded", "message": "gave up"}]);
        assert!(
            matches!(verdict(&object(3, stalled), 3, &retrying, None), Verdict::Failed(m) if m.starts_with("stalled (RetriesExceeded: gave up)"))
        );
        let progressing = json!([{"type": "Ready", "status": "Unknown", "reason": "Progressing", "message": "working"}]);
        assert!(matches!(
            verdict(&object(3, progressing), 3, &spec(json!({})), None),
            Verdict::Waiting(_)
        ));
    }
}
