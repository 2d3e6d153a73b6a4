//! The API's bearer token as the CLI finds it, and the one `baton up` makes for itself.
//!
//! `baton up` protects its API with a token it generates under its data directory, and leaves
//! a copy where the CLI on the same machine looks by itself (as Jupyter does with its server
//! files): `$XDG_RUNTIME_DIR/baton/up-<port>.token`, or `~/.local/state/baton/` without a
//! runtime directory. Both are readable by their owner only. Secrets are read from files or
//! the environment, never taken as arguments (which every user of the machine can list).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;

/// The environment variable that holds the token itself.
pub(crate) const TOKEN_VARIABLE: &str = "BATON_TOKEN";

/// Returns the directory where `baton up` leaves its tokens for the CLI.
fn runtime_dir() -> Option<PathBuf> {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir).join("baton")),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/baton")),
    }
}

/// Returns where `baton up` on `port` leaves its token.
pub(crate) fn local_token_path(port: u16) -> Option<PathBuf> {
    runtime_dir().map(|d| d.join(format!("up-{port}.token")))
}

/// Returns a new token: 32 random bytes, URL-safe base64 (43 characters).
pub(crate) fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no randomness from the operating system: {e}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Reads a token from a file: its first line, trimmed.
pub(crate) fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the token file", path.display()))?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        bail!("{}: the token file is empty", path.display());
    }
    Ok(token.to_owned())
}

/// Writes a secret to `path`, readable by its owner only, creating its directory (owner
/// only too) when missing. The file is written whole under a temporary name and renamed, so
/// a reader never sees half a token.
pub(crate) fn write_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    let dir = path.parent().context("a secret's path has a directory")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let partial = path.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    file.write_all(format!("{secret}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Returns the token `baton up` keeps in `data_dir`, made on its first start.
pub(crate) fn up_token(data_dir: &Path) -> anyhow::Result<String> {
    up_secret(data_dir, "api-token").map(|(_, token)| token)
}

/// Returns the secret `baton up` keeps in `<data-dir>/<name>` (owner-only), made on its first
/// start, and the file's path.
pub(crate) fn up_secret(data_dir: &Path, name: &str) -> anyhow::Result<(PathBuf, String)> {
    let path = data_dir.join(name);
    if path.exists() {
        let secret = read_token(&path)?;
        return Ok((path, secret));
    }
    let secret = new_token()?;
    write_secret(&path, &secret)?;
    Ok((path, secret))
}

/// Returns the headers that present `token` to the API, the token marked sensitive (kept out
/// of the HTTP client's debug output).
pub(crate) fn bearer_headers(token: &str) -> anyhow::Result<reqwest::header::HeaderMap> {
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| anyhow::anyhow!("the API token holds characters a header cannot carry"))?;
    value.set_sensitive(true);
    Ok(reqwest::header::HeaderMap::from_iter([(
        reqwest::header::AUTHORIZATION,
        value,
    )]))
}

/// Returns the token the CLI sends to `server`: `BATON_TOKEN`, else the `--token-file`,
/// else the one `baton up` left on this machine for a server on a loopback address.
pub(crate) fn client_token(
    server: &str,
    token_file: Option<&Path>,
) -> anyhow::Result<Option<String>> {
    if let Some(token) = std::env::var(TOKEN_VARIABLE).ok().filter(|t| !t.is_empty()) {
        return Ok(Some(token.trim().to_owned()));
    }
    if let Some(path) = token_file {
        return read_token(path).map(Some);
    }
    let Some(port) = loopback_port(server) else {
        return Ok(None);
    };
    match local_token_path(port) {
        Some(path) if path.exists() => read_token(&path).map(Some),
        _ => Ok(None),
    }
}

/// Returns the port of a server URL on a loopback address (`http://127.0.0.1:7070`).
fn loopback_port(server: &str) -> Option<u16> {
    let url = reqwest::Url::parse(server).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback.then(|| url.port_or_known_default()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_servers_are_looked_up_on_this_machine() {
        assert_eq!(loopback_port("http://127.0.0.1:7070"), Some(7070));
        assert_eq!(loopback_port("http://localhost:8080/"), Some(8080));
        assert_eq!(loopback_port("https://[::1]"), Some(443));
        assert_eq!(loopback_port("http://baton.example.com:7070"), None);
        assert_eq!(loopback_port("http://10.0.0.1:7070"), None);
        assert_eq!(loopback_port("not a url"), None);
    }

    #[test]
    fn a_secret_is_written_whole_for_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/baton/up-7070.token");
        write_secret(&path, "abc").unwrap();
        write_secret(&path, "def").unwrap();
        assert_eq!(read_token(&path).unwrap(), "def");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let token = new_token().unwrap();
        assert_eq!(token.len(), 43);
        assert_ne!(token, new_token().unwrap());
    }
}
