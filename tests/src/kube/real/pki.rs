//! Certificates for a test control plane, made at start: a CA, the API server's serving
//! certificate, the kubelet actor's serving certificate (the API server checks it when it
//! reads pod logs from the node, as with `--kubelet-certificate-authority`), and the key that
//! signs ServiceAccount tokens.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A certificate and its key, as PEM.
#[derive(Clone)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// Its private key (PKCS #8).
    pub key: String,
}

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
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "baton-test-kubernetes-ca");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_pem = ca.self_signed(&ca_key)?.pem();
        let issuer = Issuer::new(ca, ca_key);

        let apiserver = serving(
            &issuer,
            "kube-apiserver",
            &[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
            ],
        )?;
        let kubelet = serving(&issuer, "baton-test-kubelet", &["localhost"])?;
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

/// A serving certificate for 127.0.0.1 and `names`.
fn serving(issuer: &Issuer<'_, KeyPair>, common_name: &str, names: &[&str]) -> anyhow::Result<Pem> {
    let key = KeyPair::generate()?;
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, issuer)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}
