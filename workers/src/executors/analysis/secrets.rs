//! Secret values an analysis needs, read from Kubernetes as it measures: the keys its
//! arguments name (`valueFrom.secretKeyRef`, which the planner left as markers in the metric's
//! texts) and Datadog's keys. They stay in the worker's memory: never in a job, a log, an
//! output or an error (errors are redacted of every value read).

use std::collections::BTreeMap;

use baton_schemas::analysis::{Metric, SecretKeyRef, secret_markers};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

/// The values read for one metric, to fill in and to redact.
#[derive(Default)]
pub(super) struct Revealed {
    values: Vec<String>,
}

impl Revealed {
    /// Replaces every value read with `***`: as it is, and as a URL or a JSON string would
    /// carry it (an answer may echo the request).
    pub(super) fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for value in self.values.iter().filter(|v| !v.is_empty()) {
            let json = serde_json::to_string(value).unwrap_or_default();
            let json = json.trim_matches('"').to_owned();
            for form in [value.clone(), percent_encoded(value), json] {
                if !form.is_empty() {
                    text = text.replace(&form, "***");
                }
            }
        }
        text
    }

    /// Remembers a value for redaction and returns it.
    pub(super) fn keep(&mut self, value: String) -> String {
        self.values.push(value.clone());
        value
    }
}

/// Returns `metric` with every Secret marker replaced by the key's value, read in
/// `namespace`, and the values read.
pub(super) async fn reveal(
    kube: Option<&kube::Client>,
    namespace: &str,
    metric: &Metric,
) -> Result<(Metric, Revealed), String> {
    let wanted: Vec<(String, SecretKeyRef)> = metric
        .provider
        .texts()
        .into_iter()
        .flat_map(secret_markers)
        .collect();
    let mut revealed = Revealed::default();
    if wanted.is_empty() {
        return Ok((metric.clone(), revealed));
    }
    let Some(kube) = kube else {
        return Err(
            "this worker has no Kubernetes client to read the analysis' Secrets".to_owned(),
        );
    };
    let mut values = BTreeMap::new();
    for (marker, key) in wanted {
        if values.contains_key(&marker) {
            continue;
        }
        let value = read_key(kube, namespace, &key.name, &key.key).await?;
        values.insert(marker, revealed.keep(value));
    }
    let mut json = serde_json::to_string(metric).map_err(|e| e.to_string())?;
    for (marker, value) in &values {
        // Within JSON text: the value is put in as a JSON string's content.
        let encoded = serde_json::to_string(value).map_err(|e| e.to_string())?;
        json = json.replace(marker.as_str(), &encoded[1..encoded.len() - 1]);
    }
    let filled = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    Ok((filled, revealed))
}

/// Reads one key of a Secret as text.
pub(super) async fn read_key(
    kube: &kube::Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<String, String> {
    let keys = read_secret(kube, namespace, name).await?;
    keys.get(key)
        .cloned()
        .ok_or_else(|| format!("Secret {namespace}/{name} has no key {key:?}"))
}

/// Reads every key of a Secret as text.
pub(super) async fn read_secret(
    kube: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<BTreeMap<String, String>, String> {
    let api: Api<Secret> = Api::namespaced(kube.clone(), namespace);
    let secret = match api.get_opt(name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => return Err(format!("Secret {namespace}/{name} not found")),
        Err(e) => return Err(format!("cannot read Secret {namespace}/{name}: {e}")),
    };
    let mut keys: BTreeMap<String, String> = secret.string_data.unwrap_or_default();
    for (key, bytes) in secret.data.unwrap_or_default() {
        let text = String::from_utf8(bytes.0)
            .map_err(|_| format!("Secret {namespace}/{name} key {key:?} is not text"))?;
        keys.insert(key, text);
    }
    Ok(keys)
}

/// `value` as a URL's query carries it: every byte but letters, digits and `-._~` as `%XX`.
fn percent_encoded(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_redacted_as_written_url_encoded_and_json_escaped() {
        let mut revealed = Revealed::default();
        revealed.keep("p@ss \"word\"\n".to_owned());
        let echoed = "raw p@ss \"word\"\n, url p%40ss%20%22word%22%0A, json p@ss \\\"word\\\"\\n";
        assert_eq!(revealed.redact(echoed), "raw ***, url ***, json ***");
    }
}
