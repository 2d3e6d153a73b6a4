//! What the `cli` driver reads from the cluster for a release: values from Secrets and
//! ConfigMaps (`valuesFrom`, merged as Flux merges them) and a chart repository's credentials
//! (`authSecretRef`). The `flux` driver leaves both to Flux.

use baton_schemas::helm::{HelmSpec, SecretRef, ValuesKind, ValuesReference, merge_values};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use serde_json::{Map, Value};

/// A chart repository's credentials, from the keys Orkestra read.
#[derive(Debug, Default)]
pub(crate) struct Credentials {
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) ca: Option<Vec<u8>>,
    pub(crate) cert: Option<Vec<u8>>,
    pub(crate) key: Option<Vec<u8>>,
}

/// Returns the release's values: every `valuesFrom` entry merged in order, cut to the
/// release's part when it is one release of an application split into subcharts
/// (`valuesFromScope`), then `values` (given cut already).
pub(crate) async fn values(
    client: Option<&kube::Client>,
    spec: &HelmSpec,
) -> Result<Map<String, Value>, String> {
    let mut merged = Map::new();
    for reference in &spec.values_from {
        let Some(text) = read(client, &spec.namespace, reference).await? else {
            continue;
        };
        match &reference.target_path {
            Some(path) => {
                let value = serde_norway::from_str::<Value>(&text)
                    .ok()
                    .filter(|v| !v.is_object() && !v.is_array())
                    .unwrap_or(Value::String(text.trim_end_matches('\n').to_owned()));
                set_path(&mut merged, path, value);
            }
            None => {
                let values: Value = serde_norway::from_str(&text).map_err(|e| {
                    format!(
                        "{} {}/{} key {}: not YAML values: {e}",
                        kind_name(reference.kind),
                        spec.namespace,
                        reference.name,
                        reference.key()
                    )
                })?;
                match values {
                    Value::Object(map) => merge_values(&mut merged, &map),
                    Value::Null => {}
                    _ => {
                        return Err(format!(
                            "{} {}/{} key {}: the values are not a map",
                            kind_name(reference.kind),
                            spec.namespace,
                            reference.name,
                            reference.key()
                        ));
                    }
                }
            }
        }
    }
    if let Some(scope) = &spec.values_from_scope {
        merged = scope.cut(&merged);
    }
    merge_values(&mut merged, &spec.values);
    Ok(merged)
}

fn kind_name(kind: ValuesKind) -> &'static str {
    match kind {
        ValuesKind::Secret => "Secret",
        ValuesKind::ConfigMap => "ConfigMap",
    }
}

/// Reads one reference's key; `None` when an optional one is missing.
async fn read(
    client: Option<&kube::Client>,
    namespace: &str,
    reference: &ValuesReference,
) -> Result<Option<String>, String> {
    let what = format!(
        "{} {namespace}/{}",
        kind_name(reference.kind),
        reference.name
    );
    let Some(client) = client else {
        return Err(format!(
            "valuesFrom {what}: this worker has no Kubernetes client (KUBECONFIG or in-cluster config)"
        ));
    };
    let key = reference.key();
    let found: Option<String> = match reference.kind {
        ValuesKind::ConfigMap => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
            let map = api
                .get_opt(&reference.name)
                .await
                .map_err(|e| format!("reading {what}: {e}"))?;
            match map {
                None => None,
                Some(map) => Some(
                    map.data
                        .and_then(|d| d.get(key).cloned())
                        .ok_or_else(|| format!("{what} has no key {key}"))
                        .or_else(|e| {
                            if reference.optional {
                                Ok(String::new())
                            } else {
                                Err(e)
                            }
                        })?,
                ),
            }
        }
        ValuesKind::Secret => {
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let secret = api
                .get_opt(&reference.name)
                .await
                .map_err(|e| format!("reading {what}: {e}"))?;
            match secret {
                None => None,
                Some(secret) => match secret_key(&secret, key) {
                    Some(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
                    None if reference.optional => Some(String::new()),
                    None => return Err(format!("{what} has no key {key}")),
                },
            }
        }
    };
    match found {
        Some(text) if text.is_empty() && reference.optional => Ok(None),
        Some(text) => Ok(Some(text)),
        None if reference.optional => Ok(None),
        None => Err(format!(
            "{what} not found (mark it optional to go on without it)"
        )),
    }
}

/// Returns a Secret's key, from `data` or `stringData`.
fn secret_key(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|s| s.clone().into_bytes())
        })
}

/// Puts `value` at a dotted `path` (`a.b.c`), making the maps on the way.
fn set_path(values: &mut Map<String, Value>, path: &str, value: Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut at = values;
    for part in parts {
        let entry = at
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        at = entry.as_object_mut().expect("made a map");
    }
    at.insert(last.to_owned(), value);
}

/// Reads a chart repository's credentials from their Secret.
pub(crate) async fn credentials(
    client: Option<&kube::Client>,
    secret: &SecretRef,
) -> Result<Credentials, String> {
    let what = format!("Secret {}/{}", secret.namespace, secret.name);
    let Some(client) = client else {
        return Err(format!(
            "authSecretRef {what}: this worker has no Kubernetes client (KUBECONFIG or in-cluster config)"
        ));
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), &secret.namespace);
    let found = api
        .get_opt(&secret.name)
        .await
        .map_err(|e| format!("reading {what}: {e}"))?
        .ok_or_else(|| format!("{what} (authSecretRef) not found"))?;
    let text =
        |key: &str| secret_key(&found, key).map(|b| String::from_utf8_lossy(&b).into_owned());
    Ok(Credentials {
        username: text("username"),
        password: text("password"),
        ca: secret_key(&found, "ca.crt"),
        cert: secret_key(&found, "tls.crt"),
        key: secret_key(&found, "tls.key"),
    })
}

/// Parses values given to a test or a caller as YAML, for tests.
#[cfg(test)]
fn map(text: &str) -> Map<String, Value> {
    serde_norway::from_str(text).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths_make_maps() {
        let mut values = map("a: {b: 1}\nc: 2\n");
        set_path(&mut values, "a.d.e", Value::from("x"));
        set_path(&mut values, "c.f", Value::from(true));
        assert_eq!(
            Value::Object(values),
            serde_json::json!({"a": {"b": 1, "d": {"e": "x"}}, "c": {"f": true}})
        );
    }

    #[tokio::test]
    async fn values_without_references_are_the_spec_values() {
        let spec: HelmSpec = serde_json::from_value(serde_json::json!({
            "release": "r", "namespace": "n", "values": {"a": 1},
        }))
        .unwrap();
        assert_eq!(
            Value::Object(values(None, &spec).await.unwrap()),
            serde_json::json!({"a": 1})
        );
        let mut with_ref = spec.clone();
        with_ref.values_from = vec![ValuesReference {
            kind: ValuesKind::ConfigMap,
            name: "m".into(),
            values_key: None,
            target_path: None,
            optional: false,
        }];
        let error = values(None, &with_ref).await.unwrap_err();
        assert!(error.contains("no Kubernetes client"), "{error}");
    }
}
