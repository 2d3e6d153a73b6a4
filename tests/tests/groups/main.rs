//! Application groups end to end: the planner and `helm` workers as processes, with both
//! drivers.
//!
//! - `cli`: the workers run a strict scripted **stand-in** (`tests/helm-standin/helm`, put on
//!   `PATH`): it refuses any flag it does not know, keeps every release's revisions, status and
//!   values in a directory as Helm keeps them in Secrets, and fails to install a release that
//!   would own what another release owns (a subchart left enabled in its parent).
//!   `helm_cli.rs` runs the driver against real Helm and the tests' control plane; the tests
//!   here keep the stand-in for what real Helm cannot be made to give on demand: its log of
//!   calls with their argument vectors and start and end times (the order releases are
//!   installed and uninstalled in, which ran together, that no secret was ever an argument),
//!   a failure or a delay of one chosen release at one chosen step (to kill a worker or a
//!   planner in the middle of it), and a release found in a state (`uninstalling`) that a
//!   Helm killed at a chosen instant would leave.
//! - `flux`: the workers write `HelmRelease` objects to the tests' Kubernetes API server
//!   through the real `kube` client; a helm-controller actor answers them through the API.
//!
//! Failures are asked for through values, as both stand-ins read them: `batonTestFail`,
//! `batonTestFailUninstall`, `batonTestDelay` (seconds a release takes).

mod cli;
mod flux;

use serde_json::{Value, json};

const BOOKINFO: &str = include_str!("../../../examples/applicationgroups/bookinfo.yaml");

pub(crate) fn program() -> &'static str {
    env!("CARGO_BIN_EXE_baton-under-test")
}

/// A group `g` of applications `(name, dependencies, version, values)` from `c.example.com`,
/// released into namespace `apps`.
pub(crate) fn group(apps: &[(&str, &str, &str, &str)]) -> String {
    group_in("apps", apps)
}

/// A group `g` of applications `(name, dependencies, version, values)` from `c.example.com`,
/// released into `namespace`.
pub(crate) fn group_in(namespace: &str, apps: &[(&str, &str, &str, &str)]) -> String {
    let mut text = String::from(
        "apiVersion: orkestra.azure.microsoft.com/v1alpha1\nkind: ApplicationGroup\nmetadata: {name: g}\nspec:\n  applications:\n",
    );
    for (name, deps, version, values) in apps {
        text.push_str(&format!(
            "  - name: {name}\n    dependencies: [{deps}]\n    spec:\n      chart: {{url: 'https://c.example.com', name: {name}, version: '{version}'}}\n      release: {{targetNamespace: {namespace}, values: {{{values}}}}}\n"
        ));
    }
    text
}

pub(crate) fn versions(names: &[&str]) -> Value {
    let charts: serde_json::Map<String, Value> = names
        .iter()
        .map(|n| (n.to_string(), json!({"1.0.0": {}, "2.0.0": {}})))
        .collect();
    json!({"https://c.example.com": charts})
}

#[test]
fn invalid_groups_are_refused_with_their_path_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    let text = group(&[
        ("a", "c", "1", ""),
        ("b", "a", "1", ""),
        ("c", "b", "1", ""),
    ]);
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new(program())
        .args(["apply", "-f", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml: spec.applications[0].dependencies: cycle: a -> c -> b -> a"),
        "{stderr}"
    );
}
