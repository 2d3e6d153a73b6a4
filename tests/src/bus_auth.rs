//! A nats-server with Baton's permission file (`baton nats-permissions`, as
//! `deploy/nats/permissions.conf` is made): one user per role, each with a password made for
//! the test, and the processes' flags that connect as one of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use baton_bus::NatsCredentials;
use baton_bus::permissions::Role;

use crate::{Env, Nats, next_id};

/// The bus users of a test: a password file per role.
#[derive(Clone, Debug)]
pub struct BusUsers {
    passwords: BTreeMap<String, PathBuf>,
    secrets: Vec<String>,
}

impl BusUsers {
    /// Returns the password file of a role.
    pub fn password_file(&self, role: Role) -> &Path {
        &self.passwords[&role.user()]
    }

    /// Returns every password the server knows (for a grep of logs).
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// Returns the environment that makes a baton process connect as `role`.
    pub fn role_env(&self, role: Role) -> Vec<(String, String)> {
        vec![
            ("BATON_NATS_USER".to_owned(), role.user()),
            (
                "BATON_NATS_PASSWORD_FILE".to_owned(),
                self.password_file(role).display().to_string(),
            ),
            ("BATON_NATS_INBOX_PREFIX".to_owned(), role.inbox_prefix()),
        ]
    }

    /// Sets up `command` to connect as `role`.
    pub fn connect_as(&self, command: &mut Command, role: Role) {
        command.envs(self.role_env(role));
    }

    /// Returns the credentials of `role`, for a bus opened by the test itself.
    pub fn credentials(&self, role: Role) -> NatsCredentials {
        NatsCredentials {
            user: Some(role.user()),
            password_file: Some(self.password_file(role).to_owned()),
            inbox_prefix: Some(role.inbox_prefix()),
            ..NatsCredentials::default()
        }
    }
}

/// Returns an env whose nats-server takes only Baton's roles, with the users' password files.
pub fn env_with_roles(program: &'static str) -> anyhow::Result<(Env, BusUsers)> {
    let mut users = None;
    let env = Env::with_nats(program, |dir, prefix| {
        let (nats, made) = start_with_roles(program, dir, prefix)?;
        users = Some(made);
        Ok(nats)
    })?;
    Ok((env, users.expect("made with the server")))
}

/// Starts a nats-server whose authorization is what `baton nats-permissions --prefix` prints.
fn start_with_roles(program: &str, dir: &Path, prefix: &str) -> anyhow::Result<(Nats, BusUsers)> {
    let generated = Command::new(program)
        .args(["nats-permissions", "--prefix", prefix])
        .env_remove("BATON_PREFIX")
        .output()
        .context("running baton nats-permissions")?;
    anyhow::ensure!(
        generated.status.success(),
        "baton nats-permissions: {}",
        String::from_utf8_lossy(&generated.stderr)
    );
    std::fs::write(dir.join("permissions.conf"), &generated.stdout)?;
    let config = dir.join("nats-server.conf");
    std::fs::write(&config, "include permissions.conf\n")?;
    let secrets_dir = dir.join("secrets");
    std::fs::create_dir_all(&secrets_dir)?;
    let mut passwords = BTreeMap::new();
    let mut secrets = Vec::new();
    let mut server_env = Vec::new();
    for role in Role::all() {
        let password = format!("pw-{}-{prefix}-{}", role.user(), next_id());
        let file = secrets_dir.join(role.user());
        std::fs::write(&file, format!("{password}\n"))?;
        server_env.push((role.password_variable(), password.clone()));
        passwords.insert(role.user(), file);
        secrets.push(password);
    }
    let nats = Nats::start_configured(dir, config, server_env)?;
    Ok((nats, BusUsers { passwords, secrets }))
}
