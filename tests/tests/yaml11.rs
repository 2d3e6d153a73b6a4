//! Every committed YAML file means the same to a YAML 1.1 reader (kubectl's go-yaml; PyYAML
//! reads as it does) as to Baton's YAML 1.2 reader: a plain `on`, `yes` or `off` is a boolean
//! in YAML 1.1 and `010` an octal number, which made a real API server reject two CRDs while
//! every test passed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Reads YAML 1.1 as kubectl does, with PyYAML's safe loader: booleans, nulls, octal and
/// sexagesimal numbers as YAML 1.1 has them; timestamps stay strings, as they reach the API
/// server. Prints one JSON array of documents per file, one file per line.
const READER: &str = r#"
import json, sys, yaml

class Kubectl(yaml.SafeLoader):
    pass

Kubectl.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

for path in sys.argv[1:]:
    with open(path) as f:
        docs = [d for d in yaml.load_all(f, Loader=Kubectl) if d is not None]
    print(json.dumps(docs))
"#;

fn python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/python")
}

/// The committed YAML: CRDs and other install files, examples.
fn committed_yaml() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    let mut dirs = vec![root.join("deploy"), root.join("examples")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Baton's reading of a file: its documents as JSON values.
fn baton_reading(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| <serde_json::Value as serde::Deserialize>::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// Adds every place where `a` and `b` differ to `found`, as a path and the two readings.
fn differences(a: &serde_json::Value, b: &serde_json::Value, at: &str, found: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (key, p) in x {
                match y.get(key) {
                    Some(q) => differences(p, q, &format!("{at}.{key}"), found),
                    None => found.push(format!("{at}: key {key:?} is not read by YAML 1.1")),
                }
            }
            for key in y.keys().filter(|k| !x.contains_key(*k)) {
                found.push(format!("{at}: key {key:?} is read by YAML 1.1 only"));
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(p, q, &format!("{at}[{i}]"), found);
            }
        }
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
        _ if a == b => {}
        _ => found.push(format!("{at}: YAML 1.2 reads {a}, YAML 1.1 reads {b}")),
    }
}

#[test]
fn every_committed_yaml_file_reads_the_same_in_yaml_1_1() {
    let files = committed_yaml();
    assert!(files.len() >= 10, "{files:?}");
    let out = Command::new(python())
        .arg("-c")
        .arg(READER)
        .args(&files)
        .output()
        .expect("running the test venv's python (make test-tools installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let readings: Vec<Vec<serde_json::Value>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(readings.len(), files.len());
    let mut all = Vec::new();
    for (file, yaml11) in files.iter().zip(readings) {
        let baton = baton_reading(file);
        let name = file.display();
        if baton.len() != yaml11.len() {
            all.push(format!(
                "{name}: {} documents against {}",
                baton.len(),
                yaml11.len()
            ));
            continue;
        }
        for (i, (a, b)) in baton.iter().zip(&yaml11).enumerate() {
            let mut found = Vec::new();
            differences(a, b, &format!("(document {})", i + 1), &mut found);
            all.extend(found.into_iter().map(|d| format!("{name}: {d}")));
        }
    }
    assert!(all.is_empty(), "{}", all.join("\n"));
}

/// The check itself finds what it is for: an unquoted `on` key and value, and an octal.
#[test]
fn the_yaml_1_1_check_finds_booleans_and_octals() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trap.yaml");
    std::fs::write(
        &file,
        "startOnAll: [{task: build, on: success}]\nmode: 010\nok: \"on\"\n",
    )
    .unwrap();
    let out = Command::new(python())
        .arg("-c")
        .arg(READER)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml11: Vec<serde_json::Value> =
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    let baton = baton_reading(&file);
    let mut found = Vec::new();
    differences(&baton[0], &yaml11[0], "", &mut found);
    assert_eq!(
        found,
        [
            ".mode: YAML 1.2 reads \"010\", YAML 1.1 reads 8",
            ".startOnAll[0]: key \"on\" is not read by YAML 1.1",
            ".startOnAll[0]: key \"true\" is read by YAML 1.1 only",
        ]
    );
    assert_eq!(yaml11[0]["mode"], 8);
    assert_eq!(yaml11[0]["ok"], "on");
}
