//! Certificates made at test time: a CA, serving certificates for loopback addresses and
//! client certificates for mutual TLS.

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

/// A certificate authority that signs serving certificates.
pub struct Ca {
    /// Its certificate, for clients to trust.
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// Makes a CA named `name`.
    pub fn new(name: &str) -> anyhow::Result<Ca> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let pem = params.self_signed(&key)?.pem();
        Ok(Ca {
            pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// Returns a client certificate for mutual TLS, naming `common_name`.
    pub fn client(&self, common_name: &str) -> anyhow::Result<Pem> {
        let params = CertificateParams::new(Vec::<String>::new())?;
        self.issue(params, common_name, ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// Returns a serving certificate for 127.0.0.1 and `names`.
    pub fn serving(&self, common_name: &str, names: &[&str]) -> anyhow::Result<Pem> {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        self.issue(params, common_name, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// Signs a leaf certificate of `params` for `common_name` and `usage`, with a new key.
    fn issue(
        &self,
        mut params: CertificateParams,
        common_name: &str,
        usage: ExtendedKeyUsagePurpose,
    ) -> anyhow::Result<Pem> {
        let key = KeyPair::generate()?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}
