//! The install manifests (`deploy/kubernetes/`) as the tests read them: rendered by kubectl's
//! kustomize into objects.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// kubectl: `$KUBECTL`, then the one `make test` installs, then PATH.
pub fn kubectl() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBECTL") {
        return PathBuf::from(path);
    }
    let local = repository().join(".tools/venv/bin/kubectl");
    if local.is_file() {
        return local;
    }
    PathBuf::from("kubectl")
}

/// Renders `deploy/kubernetes/overlays/<overlay>` with `kubectl kustomize`, as YAML text.
pub fn render_text(overlay: &str) -> String {
    let dir = repository()
        .join("deploy/kubernetes/overlays")
        .join(overlay);
    let out = Command::new(kubectl())
        .arg("kustomize")
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {} (make test-tools installs it): {e}",
                kubectl().display()
            )
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("kustomize writes UTF-8")
}

/// Renders an overlay into its objects.
pub fn render(overlay: &str) -> Vec<Value> {
    let text = render_text(overlay);
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("kustomize writes YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// Returns the object of `kind` named `name`.
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} among the rendered objects"))
}

/// Applies `objects` with `kubectl apply --server-side` to the cluster of `kubeconfig`,
/// through a file written into `dir`.
pub fn apply(kubeconfig: &Path, dir: &Path, name: &str, objects: &[Value]) {
    let file = dir.join(format!("{name}.json"));
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
    std::fs::write(&file, serde_json::to_vec(&list).expect("JSON")).expect("writing the objects");
    let out = Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(&file)
        .output()
        .expect("running kubectl");
    assert!(
        out.status.success(),
        "applying {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
