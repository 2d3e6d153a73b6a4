//! NATS decentralized authentication made at test time, as `nsc` makes it: an operator, an
//! account with JetStream, users, their JWTs signed with NKeys, and `.creds` files.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;

/// An operator and one account it signed; users are made under the account.
pub struct Operator {
    /// The operator's JWT (the server's `operator:`).
    pub jwt: String,
    /// The account's public key.
    pub account: String,
    /// The account's JWT (preloaded in the server's memory resolver).
    pub account_jwt: String,
    /// The system account (JetStream needs one) and its JWT.
    system: (String, String),
    account_key: KeyPair,
}

impl Operator {
    /// Makes an operator and an account with unlimited JetStream.
    pub fn new() -> anyhow::Result<Operator> {
        let operator = KeyPair::new_operator();
        let account = KeyPair::new_account();
        let jwt = sign(
            &operator,
            &operator.public_key(),
            "test-operator",
            serde_json::json!({"type": "operator", "version": 2}),
        )?;
        let account_jwt = sign(
            &operator,
            &account.public_key(),
            "baton",
            serde_json::json!({
                "type": "account", "version": 2,
                "limits": {
                    "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                    "wildcards": true, "conn": -1, "leaf": -1,
                    "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
                },
                "default_permissions": {"pub": {}, "sub": {}},
            }),
        )?;
        let system = KeyPair::new_account();
        let system_jwt = sign(
            &operator,
            &system.public_key(),
            "SYS",
            serde_json::json!({"type": "account", "version": 2}),
        )?;
        Ok(Operator {
            jwt,
            account: account.public_key(),
            account_jwt,
            system: (system.public_key(), system_jwt),
            account_key: account,
        })
    }

    /// Returns the server configuration that trusts this operator and knows its account.
    pub fn server_config(&self, operator_jwt_file: &std::path::Path) -> String {
        format!(
            "operator: \"{}\"\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: \"{}\"\n  {}: \"{}\"\n}}\n",
            operator_jwt_file.display(),
            self.system.0,
            self.account,
            self.account_jwt,
            self.system.0,
            self.system.1,
        )
    }

    /// Returns a `.creds` file's text for a new user of the account.
    pub fn user_creds(&self, name: &str) -> anyhow::Result<String> {
        let user = KeyPair::new_user();
        let jwt = sign(
            &self.account_key,
            &user.public_key(),
            name,
            serde_json::json!({
                "type": "user", "version": 2, "pub": {}, "sub": {},
                "subs": -1, "data": -1, "payload": -1,
            }),
        )?;
        Ok(creds(&jwt, &user.seed()?))
    }
}

/// Returns a `.creds` file's text for a user JWT and its seed.
pub fn creds(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    )
}

/// Returns a JWT of `nats` claims about `subject`, issued and signed by `issuer`.
fn sign(
    issuer: &KeyPair,
    subject: &str,
    name: &str,
    nats: serde_json::Value,
) -> anyhow::Result<String> {
    let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = serde_json::json!({
        "jti": format!("{subject}{now}"), "iat": now, "iss": issuer.public_key(),
        "name": name, "sub": subject, "nats": nats,
    });
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{body}");
    let signature = issuer
        .sign(signed.as_bytes())
        .map_err(|e| anyhow::anyhow!("signing a JWT: {e}"))?;
    Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
}
