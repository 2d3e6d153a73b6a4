//! A helm-controller actor for tests. It acts only through the API, as Flux's helm-controller
//! does: it watches `HelmRelease` objects (`helm.toolkit.fluxcd.io/v2`), adds Flux's finalizer,
//! and for every generation it has not handled it checks the chart source exists, "releases"
//! it (nothing is rendered: it waits a moment), and patches the status: `Ready=True` with
//! `InstallSucceeded` or `UpgradeSucceeded`, a release history, and `observedGeneration`. A
//! deleted `HelmRelease` is "uninstalled" and its finalizer removed.
//!
//! Like Flux, it honours a reconcile request (`reconcile.fluxcd.io/requestedAt` different
//! from `status.lastHandledReconcileAt`) at a generation it handled: a release that failed is
//! not tried again unless the request also resets its failures (`reconcile.fluxcd.io/resetAt`
//! equal to `requestedAt`, recorded in `status.lastHandledResetAt`).
//!
//! Tests steer it through the release's values, like the Helm stand-in: `batonTestDelay`
//! (seconds a release takes, default 0.3), `batonTestFail` (the release fails with
//! `InstallFailed` or `UpgradeFailed`), `batonTestFailAttempts: n` (the first n releases of the
//! object fail), `batonTestFailUninstall` (the uninstall fails with `UninstallFailed` and the
//! finalizer stays). Every release and uninstall is recorded in [`HelmController::events`],
//! for tests to check order and overlap.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Flux's finalizer on `HelmRelease` objects.
pub const FINALIZER: &str = "finalizers.fluxcd.io";
/// Flux's annotation asking for a reconcile.
pub const RECONCILE_ANNOTATION: &str = "reconcile.fluxcd.io/requestedAt";
/// Flux's annotation asking to reset the failure counts, with a reconcile request.
pub const RESET_ANNOTATION: &str = "reconcile.fluxcd.io/resetAt";

/// One thing the actor did.
#[derive(Clone, Debug)]
pub struct HelmEvent {
    /// The `HelmRelease`'s namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `install`, `upgrade` or `uninstall`.
    pub action: &'static str,
    /// The generation handled (0 for an uninstall).
    pub generation: i64,
    /// The values it had.
    pub values: Value,
    /// When it began.
    pub start: Instant,
    /// When it ended.
    pub end: Instant,
    /// Whether it failed.
    pub failed: bool,
    /// The chart version released, when the actor read the chart from a repository on this
    /// machine (as source-controller would); else the version the `HelmRelease` asks for.
    pub chart_version: String,
}

/// A running helm-controller actor; stops when dropped.
pub struct HelmController {
    events: Arc<Mutex<Vec<HelmEvent>>>,
    shutdown: CancellationToken,
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: format!("{group}/{version}"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Returns the API resource of Flux's `HelmRelease`.
pub fn helm_releases() -> ApiResource {
    resource(
        "helm.toolkit.fluxcd.io",
        "v2",
        "HelmRelease",
        "helmreleases",
    )
}

/// Who the actor is on the tests' control plane: Flux's helm-controller ServiceAccount.
pub const IDENTITY: (&str, &[&str]) = (
    "system:serviceaccount:flux-system:helm-controller",
    &[
        "system:serviceaccounts",
        "system:serviceaccounts:flux-system",
        "system:authenticated",
    ],
);

/// Gives [`IDENTITY`] what the actor touches: `HelmRelease` objects, their status and
/// finalizers, and chart sources to read. (Flux binds its helm-controller to cluster-admin,
/// because it applies whatever a chart holds; the actor renders nothing, so it needs less.)
pub async fn grant_permissions(admin: &kube::Client) -> anyhow::Result<()> {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    let name = "baton-test-helm-controller";
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": name},
        "rules": [
            {"apiGroups": ["helm.toolkit.fluxcd.io"], "resources": ["helmreleases", "helmreleases/status", "helmreleases/finalizers"],
             "verbs": ["get", "list", "watch", "patch", "update"]},
            {"apiGroups": ["source.toolkit.fluxcd.io"], "resources": ["helmrepositories", "ocirepositories", "helmcharts"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        ],
    }))?;
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "helm-controller", "namespace": "flux-system"}],
    }))?;
    let params = PatchParams::apply("baton-tests").force();
    Api::<ClusterRole>::all(admin.clone())
        .patch(name, &params, &Patch::Apply(&role))
        .await?;
    Api::<ClusterRoleBinding>::all(admin.clone())
        .patch(name, &params, &Patch::Apply(&binding))
        .await?;
    Ok(())
}

impl HelmController {
    /// Starts watching `HelmRelease` objects in `namespaces` (every namespace when `None`).
    /// Call it inside a runtime.
    pub fn start_in(client: kube::Client, namespaces: Option<&[String]>) -> HelmController {
        let events = Arc::new(Mutex::new(Vec::new()));
        let shutdown = CancellationToken::new();
        let apis: Vec<Api<DynamicObject>> = match namespaces {
            Some(namespaces) => namespaces
                .iter()
                .map(|ns| Api::namespaced_with(client.clone(), ns, &helm_releases()))
                .collect(),
            None => vec![Api::all_with(client.clone(), &helm_releases())],
        };
        for api in apis {
            tokio::spawn(run(client.clone(), api, events.clone(), shutdown.clone()));
        }
        HelmController { events, shutdown }
    }

    /// Returns what it did so far, in the order it finished.
    pub fn events(&self) -> Vec<HelmEvent> {
        self.events.lock().expect("events lock").clone()
    }
}

impl Drop for HelmController {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// What the actor has in hand: a `HelmRelease` (namespace, name), the generation (-1 for its
/// deletion) and the reconcile request it answers (empty for none).
type InHand = (String, String, i64, String);

async fn run(
    client: kube::Client,
    api: Api<DynamicObject>,
    events: Arc<Mutex<Vec<HelmEvent>>>,
    shutdown: CancellationToken,
) {
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    // Generations and reconcile requests (and deletions) being handled, so a watch event for
    // an object in hand starts nothing twice.
    let busy: Arc<Mutex<BTreeSet<InHand>>> = Arc::default();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = stream.next() => e,
        };
        let object = match event {
            Some(Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o))) => o,
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                warn!(error = %e, "helm-controller watch error");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            None => return,
        };
        let namespace = object.metadata.namespace.clone().unwrap_or_default();
        let name = object.metadata.name.clone().unwrap_or_default();
        let generation = object.metadata.generation.unwrap_or(1);
        let value = serde_json::to_value(&object).unwrap_or_default();
        let deleting = object.metadata.deletion_timestamp.is_some();
        let request = value["metadata"]["annotations"][RECONCILE_ANNOTATION]
            .as_str()
            .filter(|r| value["status"]["lastHandledReconcileAt"].as_str() != Some(*r))
            .map(str::to_owned);
        let handled =
            value["status"]["observedGeneration"].as_i64() == Some(generation) && request.is_none();
        if !deleting && handled {
            continue;
        }
        // -1 marks a deletion in hand.
        let key = (
            namespace.clone(),
            name.clone(),
            if deleting { -1 } else { generation },
            request.clone().unwrap_or_default(),
        );
        if !busy.lock().expect("busy lock").insert(key.clone()) {
            continue;
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &namespace, &helm_releases());
        let (client, events, busy) = (client.clone(), events.clone(), busy.clone());
        tokio::spawn(async move {
            let keep_busy = if deleting {
                uninstall(&api, &value, &events).await
            } else {
                reconcile(&client, &api, &value, generation, request, &events).await;
                false
            };
            if !keep_busy {
                busy.lock().expect("busy lock").remove(&key);
            }
        });
    }
}

fn values_of(object: &Value) -> Value {
    object["spec"]["values"].clone()
}

fn delay(values: &Value) -> Duration {
    Duration::from_secs_f64(values["batonTestDelay"].as_f64().unwrap_or(0.3))
}

async fn patch_status(api: &Api<DynamicObject>, name: &str, status: Value) {
    super::merge_status(api, name, status, "helm-controller").await;
}

/// Returns a HelmRelease's name, namespace and finalizers.
fn names(object: &Value) -> (String, String, Vec<String>) {
    let text = |field: &str| {
        object["metadata"][field]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let finalizers = object["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect();
    (text("name"), text("namespace"), finalizers)
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

fn condition(kind: &str, status: &str, reason: &str, message: &str, generation: i64) -> Value {
    json!({"type": kind, "status": status, "reason": reason, "message": message,
        "observedGeneration": generation, "lastTransitionTime": now()})
}

/// Releases one generation of a `HelmRelease`, or answers a reconcile `request` at a
/// generation handled already.
async fn reconcile(
    client: &kube::Client,
    api: &Api<DynamicObject>,
    object: &Value,
    generation: i64,
    request: Option<String>,
    events: &Arc<Mutex<Vec<HelmEvent>>>,
) {
    let (name, namespace, finalizers) = names(object);
    if !finalizers.iter().any(|f| f == FINALIZER) {
        let mut with = finalizers.clone();
        with.push(FINALIZER.to_owned());
        let patch = Patch::Merge(json!({"metadata": {"finalizers": with}}));
        if let Err(e) = api.patch(&name, &PatchParams::default(), &patch).await {
            warn!(release = %name, error = %e, "helm-controller could not add its finalizer");
        }
    }
    // A reconcile request is handled at once; one that resets the failures (Flux's
    // `reconcile --reset`) lets a failed release be tried again.
    let mut handled = json!({});
    let mut reset = false;
    if let Some(token) = &request {
        handled["lastHandledReconcileAt"] = json!(token);
        if object["metadata"]["annotations"][RESET_ANNOTATION].as_str() == Some(token.as_str())
            && object["status"]["lastHandledResetAt"].as_str() != Some(token.as_str())
        {
            handled["lastHandledResetAt"] = json!(token);
            handled["installFailures"] = json!(0);
            handled["upgradeFailures"] = json!(0);
            reset = true;
        }
    }
    let observed = object["status"]["observedGeneration"].as_i64() == Some(generation);
    if observed && !reset {
        // Nothing changed, and a failed release is out of retries: only the request is
        // marked handled.
        patch_status(api, &name, handled).await;
        return;
    }
    let history = object["status"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let installed = !history.is_empty();
    let (action, succeeded_reason, failed_reason) = if installed {
        ("upgrade", "UpgradeSucceeded", "UpgradeFailed")
    } else {
        ("install", "InstallSucceeded", "InstallFailed")
    };
    let mut progressing = json!({"lastAttemptedGeneration": generation, "conditions": [
        condition("Ready", "Unknown", "Progressing", &format!("Running '{action}' action"), generation)
    ]});
    for (key, value) in handled.as_object().into_iter().flatten() {
        progressing[key] = value.clone();
    }
    patch_status(api, &name, progressing).await;
    // The chart source must be there, as source-controller would need it.
    let spec = &object["spec"];
    let (source_kind, source_name, source_namespace, chart, version) = match spec.get("chartRef") {
        Some(chart_ref) => (
            chart_ref["kind"].as_str().unwrap_or_default().to_owned(),
            chart_ref["name"].as_str().unwrap_or_default().to_owned(),
            chart_ref["namespace"]
                .as_str()
                .unwrap_or(&namespace)
                .to_owned(),
            name.clone(),
            "latest".to_owned(),
        ),
        None => {
            let chart = &spec["chart"]["spec"];
            (
                chart["sourceRef"]["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                chart["sourceRef"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                chart["sourceRef"]["namespace"]
                    .as_str()
                    .unwrap_or(&namespace)
                    .to_owned(),
                chart["chart"].as_str().unwrap_or_default().to_owned(),
                chart["version"].as_str().unwrap_or("*").to_owned(),
            )
        }
    };
    let source = match source_kind.as_str() {
        "HelmRepository" => resource(
            "source.toolkit.fluxcd.io",
            "v1",
            "HelmRepository",
            "helmrepositories",
        ),
        _ => resource(
            "source.toolkit.fluxcd.io",
            "v1beta2",
            "OCIRepository",
            "ocirepositories",
        ),
    };
    let sources: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &source_namespace, &source);
    let Ok(Some(found)) = sources.get_opt(&source_name).await else {
        patch_status(
            api,
            &name,
            json!({"conditions": [condition("Ready", "False", "ArtifactFailed",
                &format!("{source_kind} {source_namespace}/{source_name} not found"), generation)]}),
        )
        .await;
        return;
    };
    // A repository on this machine is read as source-controller reads one: the chart must be
    // in its index, its package downloadable and as the index says.
    let url = found.data["spec"]["url"].as_str().unwrap_or_default();
    let version = if source_kind == "HelmRepository" && url.starts_with("http://127.0.0.1") {
        match fetch_chart(url, &chart, &version).await {
            Ok(resolved) => resolved,
            Err(e) => {
                patch_status(
                    api,
                    &name,
                    json!({"conditions": [condition("Ready", "False", "ArtifactFailed", &e, generation)]}),
                )
                .await;
                return;
            }
        }
    } else {
        version
    };
    let values = values_of(object);
    let start = Instant::now();
    tokio::time::sleep(delay(&values)).await;
    let failure = values["batonTestFail"].clone();
    let attempts_before = events
        .lock()
        .expect("events lock")
        .iter()
        .filter(|e| e.namespace == namespace && e.name == name && e.action != "uninstall")
        .count();
    let fail_attempts = values["batonTestFailAttempts"].as_u64().unwrap_or(0);
    let failed =
        (!failure.is_null() && failure != false) || (attempts_before as u64) < fail_attempts;
    let status = if failed {
        let message = failure.as_str().map(str::to_owned).unwrap_or_else(|| {
            "the helm-controller actor was told to fail (batonTestFail)".to_owned()
        });
        let mut status = json!({"observedGeneration": generation, "conditions": [
            condition("Ready", "False", failed_reason, &format!("Helm {action} failed: {message}"), generation),
            condition("Released", "False", failed_reason, &message, generation),
        ]});
        status[if installed {
            "upgradeFailures"
        } else {
            "installFailures"
        }] = json!(1);
        status
    } else {
        let revision = history
            .first()
            .and_then(|h| h["version"].as_i64())
            .unwrap_or(0)
            + 1;
        let mut history = history.clone();
        history.insert(0, json!({"version": revision, "chartName": chart, "chartVersion": version, "status": "deployed", "name": name, "namespace": namespace}));
        history.truncate(5);
        let message = format!(
            "Helm {action} succeeded for release {namespace}/{name}.v{revision} with chart {chart}@{version}"
        );
        json!({"observedGeneration": generation, "history": history, "conditions": [
            condition("Ready", "True", succeeded_reason, &message, generation),
            condition("Released", "True", succeeded_reason, &message, generation),
        ]})
    };
    // Recorded before the status shows it: a test reads the record once it sees the outcome.
    events.lock().expect("events lock").push(HelmEvent {
        namespace,
        name: name.clone(),
        action,
        generation,
        values,
        start,
        end: Instant::now(),
        failed,
        chart_version: version,
    });
    patch_status(api, &name, status).await;
}

/// Reads chart `chart` at `version` (`*`: the newest listed) from the Helm repository at
/// `url` as source-controller does: its `index.yaml`, then the package, whose SHA-256 must be
/// the index's and whose `Chart.yaml` must name the chart. Returns the version read.
async fn fetch_chart(url: &str, chart: &str, version: &str) -> Result<String, String> {
    use sha2::Digest as _;
    let base = url.trim_end_matches('/');
    let get = |url: String| async move {
        let response = reqwest::get(&url)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: {}", response.status()));
        }
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| format!("GET {url}: {e}"))
    };
    let index: Value = serde_norway::from_slice(&get(format!("{base}/index.yaml")).await?)
        .map_err(|e| format!("{base}/index.yaml: {e}"))?;
    let entries = index["entries"][chart]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // Helm's index lists the newest first; Baton's served index holds one version.
    let entry = match version {
        range if range == "*" || range.starts_with(">=") => entries.first(),
        exact => entries.iter().find(|e| e["version"] == exact),
    }
    .ok_or_else(|| format!("no chart {chart} {version} in {base}/index.yaml"))?;
    let file = entry["urls"][0].as_str().unwrap_or_default();
    let package = match file.contains("://") {
        true => get(file.to_owned()).await?,
        false => get(format!("{base}/{file}")).await?,
    };
    let digest: String = sha2::Sha256::digest(&package)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if entry["digest"].as_str().is_some_and(|d| d != digest) {
        return Err(format!("{file}: digest mismatch"));
    }
    let resolved = entry["version"].as_str().unwrap_or_default().to_owned();
    Ok(resolved)
}

/// Uninstalls a deleted `HelmRelease` and lets it go. Returns true when it failed (the
/// deletion stays in hand, so it is not tried again on every event).
async fn uninstall(
    api: &Api<DynamicObject>,
    object: &Value,
    events: &Arc<Mutex<Vec<HelmEvent>>>,
) -> bool {
    let (name, namespace, finalizers) = names(object);
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return false;
    }
    let values = values_of(object);
    let start = Instant::now();
    tokio::time::sleep(delay(&values) / 2).await;
    let failed = values["batonTestFailUninstall"].as_bool().unwrap_or(false);
    let generation = object["metadata"]["generation"].as_i64().unwrap_or(1);
    // Recorded before the cluster shows it: a test reads the record once it sees the outcome.
    events.lock().expect("events lock").push(HelmEvent {
        namespace,
        name: name.clone(),
        action: "uninstall",
        generation: 0,
        values,
        start,
        end: Instant::now(),
        failed,
        chart_version: String::new(),
    });
    if failed {
        patch_status(
            api,
            &name,
            json!({"conditions": [condition("Ready", "False", "UninstallFailed",
                "Helm uninstall failed: the helm-controller actor was told to fail (batonTestFailUninstall)", generation)]}),
        )
        .await;
    } else {
        let rest: Vec<&String> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
        let patch = Patch::Merge(json!({"metadata": {"finalizers": rest}}));
        if let Err(e) = api.patch(&name, &PatchParams::default(), &patch).await {
            warn!(release = %name, error = %e, "helm-controller could not remove its finalizer");
        }
    }
    failed
}
