//! Certificates for a test control plane, made at start: a CA, the API server's serving
//! certificate, the kubelet actor's serving certificate (the API server checks it when it
//! reads pod logs from the node, as with `--kubelet-certificate-authority`), and the key that
//! signs ServiceAccount tokens.

use std::path::{Path, PathBuf};

use rcgen::KeyPair;

use crate::tls::Ca;
pub use crate::tls::Pem;

/// The files a control plane reads, written into a folder.
pub struct Pki {
    pub ca: PathBuf,
    pub apiserver_cert: PathBuf,
    pub apiserver_key: PathBuf,
    pub service_account_key: PathBuf,
    pub service_account_public: PathBuf,
    /// The CA, for clients.
    pub ca_pem: String,
    /// The kubelet actor's serving certificate (127.0.0.1).
    pub kubelet: Pem,
}

impl Pki {
    /// Makes the certificates and writes them into `dir` (readable by this user only).
    pub fn create(dir: &Path) -> anyhow::Result<Pki> {
        let ca = Ca::new("baton-test-kubernetes-ca")?;
        let apiserver = ca.serving(
            "kube-apiserver",
            &[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
            ],
        )?;
        let kubelet = ca.serving("baton-test-kubelet", &["localhost"])?;
        let ca_pem = ca.pem;
        let service_account = KeyPair::generate()?;

        let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
            use std::os::unix::fs::OpenOptionsExt;
            let path = dir.join(name);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            std::io::Write::write_all(&mut file, text.as_bytes())?;
            Ok(path)
        };
        Ok(Pki {
            ca: write("ca.crt", &ca_pem)?,
            apiserver_cert: write("apiserver.crt", &apiserver.cert)?,
            apiserver_key: write("apiserver.key", &apiserver.key)?,
            service_account_key: write("sa.key", &service_account.serialize_pem())?,
            service_account_public: write("sa.pub", &service_account.public_key_pem())?,
            ca_pem,
            kubelet,
        })
    }
}
