//! What the fake API server admits, as a real one does: CustomResourceDefinitions whose
//! schemas it can decode, and custom objects checked against their CRD's schema. A fixture
//! that took whatever it was given let two CRDs and a document that kube-apiserver v1.36
//! refuses pass every test.
//!
//! - A CRD whose `required` lists hold anything but strings (a YAML 1.1 `on` read as `true`)
//!   is refused with the decoder's message; a `format` Kubernetes does not know draws a
//!   `Warning` header (`unrecognized format "uint32"`), as it does in Kubernetes.
//! - A custom object's fields that its schema does not declare are refused when the request
//!   asks for `fieldValidation=Strict` (as kubectl does), and otherwise dropped (pruned), as
//!   a structural schema prunes them; `x-kubernetes-preserve-unknown-fields` keeps them.

use serde_json::Value;

use super::{Collection, Store};

/// The formats Kubernetes' OpenAPI validation knows (k8s.io/kube-openapi `strfmt`).
const KNOWN_FORMATS: [&str; 29] = [
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "date-time",
    "int32",
    "int64",
    "float",
    "double",
];

/// Why an object was not admitted: the HTTP status, the `Status` reason and the message.
pub(super) struct Refusal {
    pub(super) code: u16,
    pub(super) reason: &'static str,
    pub(super) message: String,
}

/// Checks `object`, about to be stored in `collection`, and drops what a real server prunes.
/// Returns the warnings to send back.
pub(super) fn admit(
    store: &Store,
    collection: &Collection,
    object: &mut Value,
    strict: bool,
) -> Result<Vec<String>, Refusal> {
    if collection.group == "apiextensions.k8s.io"
        && collection.resource == "customresourcedefinitions"
    {
        return check_crd(object);
    }
    let Some(schema) = schema_of(store, collection) else {
        return Ok(Vec::new());
    };
    let mut unknown = Vec::new();
    if let Some(map) = object.as_object_mut() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, value) in map.iter_mut() {
            // The object's type and metadata are the server's, whatever the schema says.
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match properties.and_then(|p| p.get(key)) {
                Some(field) => walk(field, value, key, &mut unknown),
                None => unknown.push(key.clone()),
            }
        }
        for key in unknown.iter().filter(|k| !k.contains(['.', '['])) {
            map.remove(key);
        }
    }
    if strict && !unknown.is_empty() {
        let fields: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect();
        return Err(Refusal {
            code: 422,
            reason: "Invalid",
            message: format!("strict decoding error: {}", fields.join(", ")),
        });
    }
    Ok(unknown
        .iter()
        .map(|f| format!("unknown field {f:?}"))
        .collect())
}

/// Drops the fields of `value` that `schema` does not declare, naming each in `unknown`.
fn walk(schema: &Value, value: &mut Value, path: &str, unknown: &mut Vec<String>) {
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                let mut undeclared = Vec::new();
                for (key, field) in map.iter_mut() {
                    match properties.get(key) {
                        Some(s) => walk(s, field, &format!("{path}.{key}"), unknown),
                        None if !preserve => undeclared.push(key.clone()),
                        None => {}
                    }
                }
                for key in undeclared {
                    map.remove(&key);
                    unknown.push(format!("{path}.{key}"));
                }
            } else if let Some(each) = schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for (key, field) in map.iter_mut() {
                    walk(each, field, &format!("{path}.{key}"), unknown);
                }
            }
        }
        Value::Array(items) => {
            if let Some(each) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(each, item, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        _ => {}
    }
}

/// Returns the schema a stored CRD gives the objects of `collection`.
fn schema_of<'a>(store: &'a Store, collection: &Collection) -> Option<&'a Value> {
    store
        .objects
        .iter()
        .filter(|(key, _)| key.collection.resource == "customresourcedefinitions")
        .map(|(_, crd)| crd)
        .find(|crd| {
            crd.pointer("/spec/group").and_then(Value::as_str) == Some(collection.group.as_str())
                && crd.pointer("/spec/names/plural").and_then(Value::as_str)
                    == Some(collection.resource.as_str())
        })?
        .pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(collection.version.as_str()))?
        .pointer("/schema/openAPIV3Schema")
}

/// Checks a CRD's schemas as the API server's decoder and validation do.
fn check_crd(crd: &Value) -> Result<Vec<String>, Refusal> {
    let mut warnings = Vec::new();
    let mut problems = Vec::new();
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for version in &versions {
        if let Some(schema) = version.pointer("/schema/openAPIV3Schema") {
            check_schema(schema, &mut problems, &mut warnings);
        }
    }
    match problems.first() {
        Some(problem) => Err(Refusal {
            code: 400,
            reason: "BadRequest",
            message: problem.clone(),
        }),
        None => Ok(warnings),
    }
}

fn check_schema(schema: &Value, problems: &mut Vec<String>, warnings: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Array(required)) = map.get("required") {
                for entry in required.iter().filter(|e| !e.is_string()) {
                    let what = match entry {
                        Value::Bool(_) => "bool",
                        Value::Number(_) => "number",
                        Value::Null => "null",
                        _ => "object",
                    };
                    problems.push(format!(
                        "json: cannot unmarshal {what} into Go struct field JSONSchemaProps.required of type string"
                    ));
                }
            }
            if let Some(Value::String(format)) = map.get("format")
                && !KNOWN_FORMATS.contains(&format.as_str())
            {
                warnings.push(format!("unrecognized format {format:?}"));
            }
            for value in map.values() {
                check_schema(value, problems, warnings);
            }
        }
        Value::Array(items) => {
            for item in items {
                check_schema(item, problems, warnings);
            }
        }
        _ => {}
    }
}
