//! Where the real control plane's programs are found: the folder `make test-tools` fills
//! (`BATON_TEST_TOOLS_BIN`, `.tools/bin` by default), then `PATH`. A missing program is an
//! error that says how to get it: no Kubernetes test passes without them.

use std::path::{Path, PathBuf};

/// The programs a test control plane runs.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    /// Optional: without it nobody makes namespaces' `default` ServiceAccount, collects
    /// garbage or finishes a namespace's deletion, and the control plane runs without them.
    pub kube_controller_manager: Option<PathBuf>,
}

/// How to get the programs, for the error when one is missing.
const HOW_TO_GET: &str = "`make test-tools` puts them in .tools/bin (from ../shared/tools where \
    it exists, else the projects' releases: envtest's etcd and kube-apiserver v1.36, Helm v4); \
    or put them on PATH, or point BATON_TEST_TOOLS_BIN at a folder that holds them";

impl Binaries {
    /// Finds etcd and kube-apiserver (and kube-controller-manager when present).
    pub fn find() -> anyhow::Result<Binaries> {
        Ok(Binaries {
            etcd: required("etcd")?,
            kube_apiserver: required("kube-apiserver")?,
            kube_controller_manager: program("kube-controller-manager"),
        })
    }
}

/// Finds `name`, or says how to get it.
pub fn required(name: &str) -> anyhow::Result<PathBuf> {
    program(name).ok_or_else(|| anyhow::anyhow!("{name} not found; {HOW_TO_GET}"))
}

/// The test tools folder, then `PATH`.
pub fn program(name: &str) -> Option<PathBuf> {
    let tools = std::env::var_os("BATON_TEST_TOOLS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/bin"));
    std::iter::once(tools)
        .chain(
            std::env::var_os("PATH")
                .iter()
                .flat_map(std::env::split_paths),
        )
        .map(|dir| dir.join(name))
        .find(|path| is_executable(path))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
