//! The fake API server's reads: get, list and watch, with label and field selectors and
//! watches that resume from a resourceVersion.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::super::selector::{FieldSelector, LabelSelector};
use super::{Change, Failure, Key, Shared, Target, key_of, not_found};

pub(super) fn get(shared: &Shared, target: &Target) -> Response {
    let key = key_of(target);
    let store = shared.store.lock().expect("store lock");
    match store.objects.get(&key) {
        Some(object) => axum::Json(object.clone()).into_response(),
        None => not_found(&key),
    }
}

fn selectors(params: &HashMap<String, String>) -> Result<(LabelSelector, FieldSelector), Failure> {
    let labels = LabelSelector::parse(
        params
            .get("labelSelector")
            .map(String::as_str)
            .unwrap_or(""),
    )
    .map_err(|e| Failure(StatusCode::BAD_REQUEST, "BadRequest", e))?;
    let fields = FieldSelector::parse(
        params
            .get("fieldSelector")
            .map(String::as_str)
            .unwrap_or(""),
    )
    .map_err(|e| Failure(StatusCode::BAD_REQUEST, "BadRequest", e))?;
    Ok((labels, fields))
}

fn in_scope(key: &Key, target: &Target) -> bool {
    key.collection == target.collection
        && target
            .namespace
            .as_ref()
            .is_none_or(|ns| &key.namespace == ns)
}

pub(super) fn list(shared: &Shared, target: &Target, params: &HashMap<String, String>) -> Response {
    let (labels, fields) = match selectors(params) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let store = shared.store.lock().expect("store lock");
    let items: Vec<Value> = store
        .objects
        .iter()
        .filter(|(k, o)| in_scope(k, target) && labels.matches(o) && fields.matches(o))
        .map(|(_, o)| o.clone())
        .collect();
    let kind = items
        .first()
        .and_then(|o| o.get("kind"))
        .and_then(Value::as_str)
        .map(|k| format!("{k}List"))
        .unwrap_or_else(|| "List".to_owned());
    let api_version = if target.collection.group.is_empty() {
        target.collection.version.clone()
    } else {
        format!("{}/{}", target.collection.group, target.collection.version)
    };
    axum::Json(json!({
        "kind": kind, "apiVersion": api_version,
        "metadata": {"resourceVersion": store.rv.to_string()},
        "items": items,
    }))
    .into_response()
}

pub(super) fn watch(
    shared: &Arc<Shared>,
    target: &Target,
    params: &HashMap<String, String>,
) -> Response {
    let (labels, fields) = match selectors(params) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let since = params
        .get("resourceVersion")
        .filter(|rv| !rv.is_empty() && rv.as_str() != "0")
        .and_then(|rv| rv.parse::<u64>().ok());
    let matches = {
        let target_collection = target.collection.clone();
        let target_namespace = target.namespace.clone();
        move |c: &Change| {
            c.key.collection == target_collection
                && target_namespace
                    .as_ref()
                    .is_none_or(|ns| &c.key.namespace == ns)
                && labels.matches(&c.object)
                && fields.matches(&c.object)
        }
    };
    let (initial, mut receiver, mut last) = {
        let store = shared.store.lock().expect("store lock");
        let receiver = shared.changes.subscribe();
        let initial: Vec<Value> = match since {
            None => store
                .objects
                .iter()
                .filter(|(k, _)| in_scope(k, target))
                .map(|(k, o)| Change {
                    rv: 0,
                    kind: "ADDED",
                    key: k.clone(),
                    object: o.clone(),
                })
                .filter(|c| matches(c))
                .map(|c| json!({"type": c.kind, "object": c.object}))
                .collect(),
            Some(rv) => {
                let oldest = store.history.front().map(|c| c.rv).unwrap_or(store.rv + 1);
                if rv + 1 < oldest && rv < store.rv {
                    let gone = json!({"type": "ERROR", "object": {
                        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": format!("too old resource version: {rv} ({oldest})"), "reason": "Expired", "code": 410,
                    }});
                    return Response::new(Body::from(format!("{gone}\n")));
                }
                store
                    .history
                    .iter()
                    .filter(|c| c.rv > rv && matches(c))
                    .map(|c| json!({"type": c.kind, "object": c.object}))
                    .collect()
            }
        };
        (initial, receiver, store.rv)
    };
    let stream = async_stream(move |tx| async move {
        for event in initial {
            if tx
                .send(Ok::<_, Infallible>(Bytes::from(format!("{event}\n"))))
                .await
                .is_err()
            {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                change = receiver.recv() => match change {
                    Ok(c) if c.rv > last && matches(&c) => {
                        last = c.rv;
                        let event = json!({"type": c.kind, "object": c.object});
                        if tx.send(Ok(Bytes::from(format!("{event}\n")))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                },
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("a response")
}

/// Turns a producer writing into a channel into a stream of body chunks.
fn async_stream<F, Fut>(produce: F) -> impl futures::Stream<Item = Result<Bytes, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, Infallible>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(produce(tx));
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}
