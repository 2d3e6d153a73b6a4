//! How a process proves itself to the NATS server, and which servers it trusts: the ways NATS
//! users have credentials (a `.creds` file, an NKey seed, a user and password, a token, a
//! client certificate), each read from a file when connecting. Only paths are held, so no
//! secret sits in a flag, a process's arguments, a `Debug` print or a log line.

use std::path::{Path, PathBuf};

use async_nats::ConnectOptions;

use crate::{BusError, BusErrorKind};

/// Where a process's NATS credentials are. At most one of `creds_file`, `nkey_seed_file`,
/// `user` (with `password_file`) and `token_file` names who it is; the TLS files go with any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatsCredentials {
    /// A `.creds` file: a user JWT and its NKey seed (decentralized accounts, `nsc`).
    pub creds_file: Option<PathBuf>,
    /// A file holding an NKey user seed (`SU...`).
    pub nkey_seed_file: Option<PathBuf>,
    /// A user name, whose password is in `password_file`.
    pub user: Option<String>,
    /// A file holding the password of `user`.
    pub password_file: Option<PathBuf>,
    /// A file holding an authorization token.
    pub token_file: Option<PathBuf>,
    /// CA certificates (PEM) the server's certificate must chain to; setting it requires TLS.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) for mutual TLS, with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// The prefix of the subjects replies come back on (`_INBOX` when unset). A server that
    /// lets each role subscribe only to its own prefix keeps one role from reading the
    /// replies another asked for.
    pub inbox_prefix: Option<String>,
}

impl NatsCredentials {
    /// Returns what the credentials are, as a log may say it: kinds and paths, no secret.
    pub fn describe(&self) -> String {
        let who = if let Some(file) = &self.creds_file {
            format!("creds file {}", file.display())
        } else if let Some(file) = &self.nkey_seed_file {
            format!("nkey seed file {}", file.display())
        } else if let Some(user) = &self.user {
            format!("user {user}")
        } else if self.token_file.is_some() {
            "a token".to_owned()
        } else {
            "no credentials".to_owned()
        };
        match (&self.tls_ca, &self.tls_cert) {
            (_, Some(_)) => format!("{who}, TLS client certificate"),
            (Some(_), None) => format!("{who}, TLS"),
            (None, None) => who,
        }
    }

    /// Adds the credentials to `options`, reading the secrets from their files.
    pub(crate) async fn apply(&self, options: ConnectOptions) -> Result<ConnectOptions, BusError> {
        let identities = [
            self.creds_file.is_some(),
            self.nkey_seed_file.is_some(),
            self.user.is_some(),
            self.token_file.is_some(),
        ];
        if identities.iter().filter(|given| **given).count() > 1 {
            return Err(config_error(
                "NATS credentials: give one of a creds file, an nkey seed file, a user or a token file",
            ));
        }
        if self.user.is_some() != self.password_file.is_some() {
            return Err(config_error(
                "NATS credentials: a user needs a password file, and a password file a user",
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(config_error(
                "NATS credentials: a TLS client certificate needs its key, and a key its certificate",
            ));
        }
        let mut options = options;
        if let Some(file) = &self.creds_file {
            // Whole, final line break included: the client's parser needs the line break
            // that ends the seed's block.
            let creds = std::fs::read_to_string(file)
                .map_err(|e| config_error(format!("creds file {}: {e}", file.display())))?;
            // The client's own parser names what is wrong with the file, never its contents.
            options = options
                .credentials(&creds)
                .map_err(|e| config_error(format!("creds file {}: {e}", file.display())))?;
        }
        if let Some(file) = &self.nkey_seed_file {
            let seed = read_secret(file)?;
            nkeys::KeyPair::from_seed(&seed).map_err(|_| {
                config_error(format!(
                    "nkey seed file {}: not an NKey seed (SU...)",
                    file.display()
                ))
            })?;
            options = options.nkey(seed);
        }
        if let (Some(user), Some(file)) = (&self.user, &self.password_file) {
            options = options.user_and_password(user.clone(), read_secret(file)?);
        }
        if let Some(file) = &self.token_file {
            options = options.token(read_secret(file)?);
        }
        if let Some(ca) = &self.tls_ca {
            readable(ca)?;
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            readable(cert)?;
            readable(key)?;
            options = options
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        if let Some(prefix) = &self.inbox_prefix {
            options = options.custom_inbox_prefix(prefix);
        }
        Ok(options)
    }
}

/// Reads a secret from its file: the whole file, without the line break an editor or
/// `echo` leaves at its end. Errors name the file, never what it holds.
pub fn read_secret(file: &Path) -> Result<String, BusError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| config_error(format!("{}: {e}", file.display())))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(config_error(format!(
            "{}: the file is empty",
            file.display()
        )));
    }
    Ok(secret.to_owned())
}

fn readable(file: &Path) -> Result<(), BusError> {
    std::fs::metadata(file)
        .map(|_| ())
        .map_err(|e| config_error(format!("{}: {e}", file.display())))
}

fn config_error(context: impl Into<String>) -> BusError {
    BusError::new(BusErrorKind::Config, context)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, text).unwrap();
        (dir, file)
    }

    #[test]
    fn a_secret_loses_its_final_line_break_only() {
        let (_dir, file) = secret_file(" s3cret \n");
        assert_eq!(read_secret(&file).unwrap(), " s3cret ");
    }

    #[test]
    fn an_empty_or_missing_secret_is_named_by_its_file() {
        let (_dir, file) = secret_file("\n");
        let e = read_secret(&file).unwrap_err().to_string();
        assert!(e.contains("secret: the file is empty"), "{e}");
        let e = read_secret(Path::new("/nonexistent/pw"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/pw"), "{e}");
    }

    #[tokio::test]
    async fn two_identities_or_half_a_pair_are_refused() {
        let (_dir, file) = secret_file("x");
        let both = NatsCredentials {
            token_file: Some(file.clone()),
            nkey_seed_file: Some(file.clone()),
            ..Default::default()
        };
        let e = both.apply(ConnectOptions::new()).await.unwrap_err();
        assert_eq!(e.kind(), BusErrorKind::Config);
        let half = NatsCredentials {
            user: Some("planner".into()),
            ..Default::default()
        };
        assert!(half.apply(ConnectOptions::new()).await.is_err());
        let cert_alone = NatsCredentials {
            tls_cert: Some(file),
            ..Default::default()
        };
        assert!(cert_alone.apply(ConnectOptions::new()).await.is_err());
    }

    #[tokio::test]
    async fn a_seed_file_that_holds_no_seed_is_refused_without_its_contents() {
        let (_dir, file) = secret_file("not-a-seed-but-a-password");
        let creds = NatsCredentials {
            nkey_seed_file: Some(file),
            ..Default::default()
        };
        let e = creds
            .apply(ConnectOptions::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an NKey seed"), "{e}");
        assert!(!e.contains("not-a-seed-but-a-password"), "{e}");
    }

    #[test]
    fn describe_names_kinds_and_paths_only() {
        let creds = NatsCredentials {
            user: Some("worker-noop".into()),
            password_file: Some("/run/secrets/pw".into()),
            tls_ca: Some("/ca.pem".into()),
            ..Default::default()
        };
        assert_eq!(creds.describe(), "user worker-noop, TLS");
    }
}
