//! Tests of the generated CRDs: what the API server accepts, and that the committed copies are the generated ones.

use super::*;

/// Walks a schema and returns the paths of nodes Kubernetes would refuse as not
/// structural: a `$ref`, a node without `type` that does not preserve unknown fields,
/// or `additionalProperties` beside `properties`.
fn not_structural(path: &str, schema: &serde_json::Value, found: &mut Vec<String>) {
    let Some(object) = schema.as_object() else {
        return;
    };
    if object.contains_key("$ref") {
        found.push(format!("{path}: $ref"));
    }
    let preserves = object.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true))
        || object.get("x-kubernetes-int-or-string") == Some(&json!(true));
    if !object.contains_key("type") && !preserves {
        found.push(format!("{path}: no type"));
    }
    if object.contains_key("properties") && object.contains_key("additionalProperties") {
        found.push(format!("{path}: properties and additionalProperties"));
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if object.contains_key(key) {
            found.push(format!("{path}: {key}"));
        }
    }
    if let Some(properties) = object.get("properties").and_then(|p| p.as_object()) {
        for (name, sub) in properties {
            not_structural(&format!("{path}.{name}"), sub, found);
        }
    }
    if let Some(items) = object.get("items") {
        not_structural(&format!("{path}[]"), items, found);
    }
    if let Some(sub) = object.get("additionalProperties")
        && sub.is_object()
    {
        not_structural(&format!("{path}{{}}"), sub, found);
    }
}

/// Every field a kind's status takes from its view is in the status schema, typed as the
/// view types it: a field named wrong would be written and pruned by the API server.
#[test]
fn status_schemas_hold_the_fields_the_views_give_them() {
    for (kind, fields) in [
        ("Task", TASK_STATUS_FIELDS),
        ("Ignitor", IGNITOR_STATUS_FIELDS),
        ("ApplicationGroup", GROUP_STATUS_FIELDS),
        ("Cell", CELL_STATUS_FIELDS),
    ] {
        let k = KINDS.iter().find(|k| k.kind == kind).unwrap();
        let crd = serde_json::to_value(crd(k)).unwrap();
        let status =
            &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"];
        let properties = status["properties"].as_object().unwrap();
        // The view's fields, a refusal's message, and what kstatus reads.
        let kstatus = ["observedGeneration", "conditions"];
        for field in fields.iter().chain(&["message"]).chain(&kstatus) {
            assert!(properties.contains_key(*field), "{kind}: {field}");
        }
        let extra = ["message"].iter().chain(&kstatus);
        let expected = fields.len() + extra.filter(|f| !fields.contains(f)).count();
        assert_eq!(properties.len(), expected, "{kind}: {properties:?}");
        assert!(
            status.get("required").is_none(),
            "{kind}: status is written in parts"
        );
    }
    let k = KINDS.iter().find(|k| k.kind == "Cell").unwrap();
    let crd = serde_json::to_value(crd(k)).unwrap();
    let step = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
        ["step"];
    assert_eq!(
        (step["type"].as_str(), step["nullable"].as_bool()),
        (Some("integer"), Some(true))
    );
}

#[test]
fn every_crd_is_structural_with_a_status_subresource() {
    for crd in crds() {
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let schema = serde_json::to_value(
            version
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        let mut found = vec![];
        not_structural("", &schema, &mut found);
        assert!(
            found.is_empty(),
            "{}: {}",
            crd.metadata.name.unwrap(),
            found.join("\n")
        );
    }
}

#[test]
fn the_committed_crds_are_the_generated_ones() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds");
    for kind in crd_kinds() {
        let path = dir.join(file_name(kind));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == crd_yaml(kind),
            "{} is missing or stale: run `make crds` and commit it",
            path.display()
        );
    }
    // The install manifests take them as one file (kustomize reads only files below it).
    let bundled = dir.join("../kubernetes/base/crds.yaml");
    assert!(
        std::fs::read_to_string(&bundled).unwrap_or_default() == crds_yaml(),
        "{} is missing or stale: run `make crds` and commit it",
        bundled.display()
    );
    // A CRD no longer generated (a kind renamed or dropped) must not stay behind, to be
    // installed by `kubectl apply -f deploy/crds/`.
    let generated: Vec<String> = crd_kinds().map(file_name).collect();
    let stale = stale_files(&dir, &generated);
    assert!(
        stale.is_empty(),
        "{} holds files that are not generated CRDs: {stale:?}; delete them",
        dir.display()
    );
}

/// Returns the names of the files in `dir` that are not among `generated`, sorted.
fn stale_files(dir: &std::path::Path, generated: &[String]) -> Vec<String> {
    let mut stale: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !generated.contains(name))
        .collect();
    stale.sort();
    stale
}

#[test]
fn a_file_left_beside_the_generated_crds_is_found() {
    let dir = tempfile_dir();
    let generated: Vec<String> = crd_kinds().map(file_name).collect();
    for name in &generated {
        std::fs::write(dir.join(name), "").unwrap();
    }
    assert!(stale_files(&dir, &generated).is_empty());
    std::fs::write(dir.join("jobs.baton.dev.yaml"), "").unwrap();
    assert_eq!(stale_files(&dir, &generated), ["jobs.baton.dev.yaml"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A fresh directory of the test's own (the schemas crate has no tempfile dependency).
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("baton-crds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_crd_fits_kubectls_last_applied_annotation() {
    for kind in &KINDS {
        let size = crd_yaml(kind).len();
        assert!(size < 200_000, "{}: {size} bytes", file_name(kind));
    }
}

#[test]
fn orca_kinds_keep_orcas_names_and_columns() {
    let task = crd(&KINDS[3]);
    assert_eq!(task.metadata.name.as_deref(), Some("tasks.sirocco.cloud"));
    assert_eq!(task.spec.names.short_names, Some(vec!["tk".to_owned()]));
    let columns: Vec<_> = task.spec.versions[0]
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "state",
            "lastSuccess",
            "lastFailure",
            "failuresCount",
            "ignitors",
            "onSuccessTask",
            "onFailureTask"
        ]
    );
    let ignitor = crd(&KINDS[4]);
    assert_eq!(ignitor.spec.names.short_names, Some(vec!["ig".to_owned()]));
}

#[test]
fn the_task_schema_has_the_whole_pod_template_and_typed_enums() {
    let schema = serde_json::to_value(crd(&KINDS[1])).unwrap();
    let spec = &schema["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let template = &spec["properties"]["template"]["properties"]["spec"]["properties"];
    assert!(template["containers"]["items"]["properties"]["image"].is_object());
    assert!(template["volumes"].is_object());
    assert_eq!(
        spec["properties"]["concurrencyPolicy"]["enum"],
        json!(["Allow", "Forbid", "Replace"])
    );
    assert_eq!(spec["required"], json!(["template"]));
}
