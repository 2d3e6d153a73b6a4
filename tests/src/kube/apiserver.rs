//! A fake Kubernetes API server for tests: it keeps any object by group, version, resource,
//! namespace and name; serves get, list and watch with resourceVersion and label and field
//! selectors; create, replace, merge patch, JSON patch, apply patch (as a merge that creates)
//! and delete (finalizers honoured); `status` as a subresource (writes to the object keep its
//! status, writes to `/status` change only the status); pod logs that the kubelet actor
//! records; and 404/409/410/422 answers with proper `Status` bodies.
//!
//! Every write reads, changes and stores the object in one step under the store's lock, so two
//! writes never undo each other and a write never brings back a deleted object (it answers
//! 404). A `metadata.resourceVersion` in a replace or in the result of a patch is a
//! precondition, as in Kubernetes: a stale one is a 409 `Conflict`.
//!
//! What a real server refuses in a CRD, and fields of custom objects their schema does not
//! declare, are refused or pruned as there ([`admission`]). Not modelled: other admission,
//! validation of values against schemas, defaulting beyond the metadata, RBAC, and label
//! changes that move an object out of a watch's selection.

mod admission;
mod reads;

use reads::{get, list, watch};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::kubelet::PodLogs;

/// How many changes the server remembers for watches that resume from a resourceVersion.
const HISTORY: usize = 20_000;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Collection {
    group: String,
    version: String,
    resource: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    collection: Collection,
    namespace: String,
    name: String,
}

#[derive(Debug)]
struct Change {
    rv: u64,
    kind: &'static str,
    key: Key,
    object: Value,
}

#[derive(Default)]
struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<Change>>,
}

struct Shared {
    store: Mutex<Store>,
    changes: broadcast::Sender<Arc<Change>>,
    /// Pod logs, or `None` when the server answers `pods/log` as a real API server does for a
    /// pod that no node runs (400: no host assigned).
    logs: Option<PodLogs>,
}

/// A running fake API server on a loopback port; stops when dropped.
pub struct FakeApiServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
}

impl FakeApiServer {
    /// Starts a server on a free loopback port.
    pub async fn start() -> anyhow::Result<FakeApiServer> {
        FakeApiServer::start_with(true).await
    }

    /// Starts a server on a free loopback port; without `serve_logs` it answers `pods/log` as
    /// a real API server answers for pods that no node runs, which is what a cluster whose pods
    /// the kubelet actor runs (`BATON_TEST_SIMULATE_KUBELET=1`) does.
    pub async fn start_with(serve_logs: bool) -> anyhow::Result<FakeApiServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            changes: broadcast::channel(4096).0,
            logs: serve_logs.then(PodLogs::default),
        });
        let shutdown = CancellationToken::new();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        Ok(FakeApiServer {
            url,
            shared,
            shutdown,
        })
    }

    /// Returns the pod log store the kubelet actor writes to, if the server serves logs.
    pub fn logs(&self) -> Option<PodLogs> {
        self.shared.logs.clone()
    }

    /// Returns a kubeconfig (YAML) that points at this server.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"{}\"}}\nusers:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: fake, namespace: default}}\ncurrent-context: fake\n",
            self.url
        )
    }

    /// Returns a kube client for this server.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().expect("a valid url"));
        kube::Client::try_from(config).expect("a client for the fake server")
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// What a request addresses.
struct Target {
    collection: Collection,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
    /// Whether the request asks `fieldValidation=Strict`: undeclared fields are refused
    /// rather than pruned.
    strict: bool,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => (String::new(), version.to_string(), rest),
        ["apis", group, version, rest @ ..] => (group.to_string(), version.to_string(), rest),
        _ => return None,
    };
    let (namespace, resource, name, subresource) = match rest {
        ["namespaces", ns, resource, tail @ ..] => {
            (Some(ns.to_string()), resource, tail.first(), tail.get(1))
        }
        [resource, tail @ ..] => (None, resource, tail.first(), tail.get(1)),
        [] => return None,
    };
    Some(Target {
        collection: Collection {
            group,
            version,
            resource: resource.to_string(),
        },
        namespace,
        name: name.map(|n| n.to_string()),
        subresource: subresource.map(|s| s.to_string()),
        strict: false,
    })
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, axum::Json(body)).into_response()
}

/// A failed request, answered as a `Status` body.
struct Failure(StatusCode, &'static str, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        status(self.0, self.1, self.2)
    }
}

fn not_found(key: &Key) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{} \"{}\" not found", key.collection.resource, key.name),
    )
}

fn query(uri: &axum::http::Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| {
            q.split('&')
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    Some((decode(k)?, decode(v)?))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                out.push(
                    u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?, 16).ok()?,
                );
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    match path.as_str() {
        "/version" => {
            return axum::Json(
                json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-baton-fake"}),
            )
            .into_response();
        }
        "/api" => {
            return axum::Json(json!({"kind": "APIVersions", "versions": ["v1"]})).into_response();
        }
        "/apis" => {
            return axum::Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}))
                .into_response();
        }
        _ => {}
    }
    let Some(mut target) = parse_path(&path) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the requested resource {path}"),
        );
    };
    let params = query(&parts.uri);
    target.strict = params.get("fieldValidation").map(String::as_str) == Some("Strict");
    let body = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()),
    };
    match (&parts.method, &target.name) {
        (&Method::GET, Some(_)) if target.subresource.as_deref() == Some("log") => {
            pod_log(&shared, &target, &params)
        }
        (&Method::GET, Some(_)) => get(&shared, &target),
        (&Method::GET, None)
            if matches!(params.get("watch").map(String::as_str), Some("true" | "1")) =>
        {
            watch(&shared, &target, &params)
        }
        (&Method::GET, None) => list(&shared, &target, &params),
        (&Method::POST, None) => create(&shared, &target, &body),
        (&Method::PUT, Some(_)) => replace(&shared, &target, &body),
        (&Method::PATCH, Some(_)) => patch(&shared, &target, &parts.headers, &body),
        (&Method::DELETE, Some(_)) => delete(&shared, &target),
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{} {path}", parts.method),
        ),
    }
}

fn key_of(target: &Target) -> Key {
    Key {
        collection: target.collection.clone(),
        namespace: target.namespace.clone().unwrap_or_default(),
        name: target.name.clone().unwrap_or_default(),
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

impl Store {
    /// Stores `object` under `key` with a new resourceVersion and tells watchers.
    fn put(
        &mut self,
        shared_changes: &broadcast::Sender<Arc<Change>>,
        key: Key,
        mut object: Value,
        kind: &'static str,
    ) -> Value {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        if kind == "DELETED" {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key.clone(), object.clone());
        }
        let change = Arc::new(Change {
            rv: self.rv,
            kind,
            key,
            object: object.clone(),
        });
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(change.clone());
        let _ = shared_changes.send(change);
        object
    }
}

fn parse_body(body: &[u8]) -> Result<Value, Failure> {
    serde_json::from_slice(body)
        .or_else(|_| serde_norway::from_slice(body))
        .map_err(|e| {
            Failure(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("invalid body: {e}"),
            )
        })
}

fn create(shared: &Shared, target: &Target, body: &[u8]) -> Response {
    let object = match parse_body(body) {
        Ok(o) => o,
        Err(r) => return r.into_response(),
    };
    let mut store = shared.store.lock().expect("store lock");
    create_locked(&mut store, &shared.changes, target, object)
}

/// Creates `object` in the locked store: 409 `AlreadyExists` when the name is taken.
fn create_locked(
    store: &mut Store,
    changes: &broadcast::Sender<Arc<Change>>,
    target: &Target,
    mut object: Value,
) -> Response {
    let name = match object.pointer("/metadata/name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => match object
            .pointer("/metadata/generateName")
            .and_then(Value::as_str)
        {
            Some(prefix) => format!("{prefix}{}", &uuid()[..5]),
            None => {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "metadata.name: Required value".to_owned(),
                );
            }
        },
    };
    let key = Key {
        name: name.clone(),
        ..key_of(target)
    };
    if store.objects.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", key.collection.resource),
        );
    }
    let warnings = match admission::admit(store, &key.collection, &mut object, target.strict) {
        Ok(warnings) => warnings,
        Err(refusal) => return refused(refusal),
    };
    let metadata = &mut object["metadata"];
    metadata["name"] = json!(name);
    if let Some(ns) = &target.namespace {
        metadata["namespace"] = json!(ns);
    }
    metadata["uid"] = json!(uuid());
    metadata["creationTimestamp"] = json!(now_rfc3339());
    metadata["generation"] = json!(1);
    if key.collection.resource == "pods" && object.pointer("/status/phase").is_none() {
        object["status"] = json!({"phase": "Pending"});
    }
    let stored = store.put(changes, key, object, "ADDED");
    with_warnings(
        (StatusCode::CREATED, axum::Json(stored)).into_response(),
        warnings,
    )
}

fn refused(refusal: admission::Refusal) -> Response {
    let code = StatusCode::from_u16(refusal.code).unwrap_or(StatusCode::BAD_REQUEST);
    status(code, refusal.reason, refusal.message)
}

/// Adds a `Warning` header per warning, as Kubernetes sends them (`299 - "<text>"`).
fn with_warnings(mut response: Response, warnings: Vec<String>) -> Response {
    for warning in warnings {
        if let Ok(value) = header::HeaderValue::from_str(&format!("299 - {warning:?}")) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

/// Writes `updated` over `current` as a write to the object (`status` kept) or to its status
/// subresource (only `status` taken). Bumps `generation` when anything but metadata and status
/// changed; deletes an object whose deletion waited for finalizers that are now gone. The
/// caller holds the store's lock from the read of `current` on, so no other write comes between
/// (a write in between would be undone, or a deleted object brought back).
fn write(
    store: &mut Store,
    changes: &broadcast::Sender<Arc<Change>>,
    key: Key,
    current: &Value,
    mut updated: Value,
    subresource: Option<&str>,
    strict: bool,
) -> Response {
    let mut next = match subresource {
        Some("status") => {
            let mut next = current.clone();
            next["status"] = updated.get("status").cloned().unwrap_or(Value::Null);
            next
        }
        Some(other) => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("subresource {other} not supported"),
            );
        }
        None => {
            match current.get("status") {
                Some(s) => updated["status"] = s.clone(),
                None => {
                    if let Some(o) = updated.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            for field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "generation",
                "name",
                "namespace",
            ] {
                match current["metadata"].get(field) {
                    Some(v) => updated["metadata"][field] = v.clone(),
                    None => {
                        if let Some(m) = updated["metadata"].as_object_mut() {
                            m.remove(field);
                        }
                    }
                }
            }
            updated
        }
    };
    let spec_of = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("metadata");
            o.remove("status");
        }
        v
    };
    if spec_of(&next) != spec_of(current) {
        let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
        next["metadata"]["generation"] = json!(generation + 1);
    }
    let finalizers_gone = next
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(|f| f.is_empty());
    let kind = if next.pointer("/metadata/deletionTimestamp").is_some() && finalizers_gone {
        "DELETED"
    } else {
        "MODIFIED"
    };
    let warnings = match admission::admit(store, &key.collection, &mut next, strict) {
        Ok(warnings) => warnings,
        Err(refusal) => return refused(refusal),
    };
    let stored = store.put(changes, key, next, kind);
    with_warnings(axum::Json(stored).into_response(), warnings)
}

fn current(shared: &Shared, key: &Key) -> Option<Value> {
    shared
        .store
        .lock()
        .expect("store lock")
        .objects
        .get(key)
        .cloned()
}

/// Checks the optimistic-concurrency precondition of a write: when `updated` carries a
/// `metadata.resourceVersion`, it must be the stored object's, else 409 `Conflict`.
fn precondition(key: &Key, current: &Value, updated: &Value) -> Result<(), Failure> {
    let sent = updated
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let stored = current
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if sent.is_empty() || sent == stored {
        return Ok(());
    }
    Err(Failure(
        StatusCode::CONFLICT,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
            key.collection.resource, key.name
        ),
    ))
}

fn replace(shared: &Shared, target: &Target, body: &[u8]) -> Response {
    let updated = match parse_body(body) {
        Ok(o) => o,
        Err(r) => return r.into_response(),
    };
    let key = key_of(target);
    let mut store = shared.store.lock().expect("store lock");
    let Some(existing) = store.objects.get(&key).cloned() else {
        return not_found(&key);
    };
    if let Err(conflict) = precondition(&key, &existing, &updated) {
        return conflict.into_response();
    }
    write(
        &mut store,
        &shared.changes,
        key,
        &existing,
        updated,
        target.subresource.as_deref(),
        target.strict,
    )
}

fn patch(shared: &Shared, target: &Target, headers: &HeaderMap, body: &[u8]) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let patch = match parse_body(body) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let key = key_of(target);
    let mut store = shared.store.lock().expect("store lock");
    let existing = match store.objects.get(&key).cloned() {
        Some(e) => e,
        None if content_type.starts_with("application/apply-patch")
            && target.subresource.is_none() =>
        {
            return create_locked(&mut store, &shared.changes, target, patch);
        }
        None => return not_found(&key),
    };
    let mut updated = existing.clone();
    if content_type.starts_with("application/json-patch+json") {
        let ops: json_patch::Patch = match serde_json::from_value(patch) {
            Ok(p) => p,
            Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()),
        };
        if let Err(e) = json_patch::patch(&mut updated, &ops) {
            return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", e.to_string());
        }
    } else {
        // merge-patch, strategic-merge-patch and apply-patch are all merges here.
        json_patch::merge(&mut updated, &patch);
    }
    // A patch that sets `metadata.resourceVersion` asks for that version, as in Kubernetes.
    if let Err(conflict) = precondition(&key, &existing, &updated) {
        return conflict.into_response();
    }
    write(
        &mut store,
        &shared.changes,
        key,
        &existing,
        updated,
        target.subresource.as_deref(),
        target.strict,
    )
}

fn delete(shared: &Shared, target: &Target) -> Response {
    let key = key_of(target);
    let mut store = shared.store.lock().expect("store lock");
    let Some(mut object) = store.objects.get(&key).cloned() else {
        drop(store);
        return not_found(&key);
    };
    let finalizers = object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if finalizers {
        if object.pointer("/metadata/deletionTimestamp").is_none() {
            object["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            object = store.put(&shared.changes, key, object, "MODIFIED");
        }
        return axum::Json(object).into_response();
    }
    let object = store.put(&shared.changes, key, object, "DELETED");
    axum::Json(object).into_response()
}

fn pod_log(shared: &Shared, target: &Target, params: &HashMap<String, String>) -> Response {
    let key = key_of(target);
    let Some(pod) = current(shared, &key) else {
        return not_found(&key);
    };
    let Some(logs) = &shared.logs else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("pod {} does not have a host assigned", key.name),
        );
    };
    let container = params.get("container").cloned().or_else(|| {
        pod.pointer("/spec/containers/0/name")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let logs = logs.lock().expect("logs lock");
    let text = logs
        .get(&(
            key.namespace.clone(),
            key.name.clone(),
            container.unwrap_or_default(),
        ))
        .cloned()
        .unwrap_or_default();
    let text = match params
        .get("tailLines")
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(n) => super::kubelet::tail_lines(&text, n),
        None => text,
    };
    text.into_response()
}

fn uuid() -> String {
    use std::hash::BuildHasher;
    let a = std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now());
    let b = std::collections::hash_map::RandomState::new().hash_one(a);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        a & 0xffff,
        (b >> 52) & 0xfff,
        (b >> 40) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}
