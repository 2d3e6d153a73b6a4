//! Who may call the API, and what: bearer tokens, each naming a caller and a role.
//!
//! Tokens come from a token file, CSV as Kubernetes' `--token-auth-file` is: one
//! `token,name,role` per line, `#` comments and blank lines allowed. Roles nest:
//!
//! | role | may |
//! |---|---|
//! | `viewer` | read runs, status and lists (`GET`) |
//! | `operator` | also start, trigger and cancel runs, resume, abort and promote Cells (`POST`) |
//! | `admin` | also apply and delete documents (`POST /v1/apply`, `DELETE`) |
//!
//! A request without a known token gets 401, one beyond its caller's role 403, both with the
//! API's one JSON error shape saying why. `GET /healthz` is open (probes carry no token).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::ApiError;
use super::kube_auth::{KubernetesAuth, Verdict};
use super::live_tokens::LiveTokens;
use tracing::warn;

/// What a caller may do. Each role may do what the ones before it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads runs, status and lists.
    Viewer,
    /// Also starts, triggers and cancels runs, and commands Cells.
    Operator,
    /// Also applies and deletes documents.
    Admin,
}

impl Role {
    /// Returns the role's name as token files and errors write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Option<Role> {
        [Role::Viewer, Role::Operator, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == text)
    }

    /// Returns the role a request needs, or `None` for what is open to anyone (the health
    /// probe). Paths with no route need a viewer, so that only callers learn what is there.
    pub fn needed(method: &Method, path: &str) -> Option<Role> {
        // Flux's source-controller reads the chart repository without a token; it serves
        // only public charts that registered groups name (`crate::charts`).
        // The dashboard's page and scripts hold no data: what they show they ask for with
        // the caller's token.
        let read = *method == Method::GET || *method == Method::HEAD;
        if path == "/healthz"
            || (*method == Method::GET && path.starts_with("/charts/"))
            || (read && super::ui::is_asset_path(path))
        {
            return None;
        }
        Some(match *method {
            Method::DELETE => Role::Admin,
            Method::POST if path == "/v1/apply" => Role::Admin,
            Method::POST => Role::Operator,
            _ => Role::Viewer,
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who made a request: the name and role its token was given. Handlers find it in the
/// request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The name the token file gives the token.
    pub name: String,
    /// What the caller may do.
    pub role: Role,
}

/// Who made a request refused for want of any role: the name alone, for the audit trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor(pub String);

/// The shortest token a token file may hold: a guessable token is no lock.
pub const MIN_TOKEN_LEN: usize = 16;

/// The tokens the API takes, kept as SHA-256 digests: the secret itself is not held, and
/// finding a digest in a map tells a timing observer nothing about the token's bytes.
#[derive(Clone, Default)]
pub struct Tokens {
    by_digest: HashMap<[u8; 32], Caller>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("callers", &self.by_digest.len())
            .finish()
    }
}

/// A token file that cannot be used; the planner does not start with it (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file cannot be read.
    #[error("{}: cannot read the token file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `token,name,role`, or repeats a token. The message never holds a token.
    #[error("{}:{line}: {problem}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// The file gives no token: nobody could call the API.
    #[error("{}: the token file gives no token (lines are token,name,role)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

impl Tokens {
    /// Reads a token file.
    pub fn read(path: &Path) -> Result<Tokens, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Tokens::parse(path, &text)
    }

    /// Parses a token file's text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Tokens, TokenFileError> {
        let mut tokens = Tokens::default();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let refuse = |problem: String| TokenFileError::Line {
                path: path.to_owned(),
                line: index + 1,
                problem,
            };
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [token, name, role] = fields[..] else {
                return Err(refuse(format!(
                    "{} fields where token,name,role are 3",
                    fields.len()
                )));
            };
            if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
                // No field's value is quoted in these errors: in a line whose columns are
                // swapped, any of them may hold a token.
                return Err(refuse(format!(
                    "the token (first field) must be at least {MIN_TOKEN_LEN} visible ASCII characters"
                )));
            }
            if name.is_empty() {
                return Err(refuse("the name is empty".to_owned()));
            }
            let role = Role::parse(role).ok_or_else(|| {
                refuse("the role (third field) is not viewer, operator or admin".to_owned())
            })?;
            let caller = Caller {
                name: name.to_owned(),
                role,
            };
            if tokens.by_digest.insert(digest(token), caller).is_some() {
                return Err(refuse(
                    "the token is an earlier line's token too".to_owned(),
                ));
            }
        }
        match tokens.by_digest.is_empty() {
            true => Err(TokenFileError::Empty {
                path: path.to_owned(),
            }),
            false => Ok(tokens),
        }
    }

    /// Returns the tokens of one caller.
    pub fn one(token: &str, name: &str, role: Role) -> Tokens {
        let caller = Caller {
            name: name.to_owned(),
            role,
        };
        Tokens {
            by_digest: HashMap::from([(digest(token), caller)]),
        }
    }

    /// Returns the caller a token belongs to.
    pub fn caller(&self, token: &str) -> Option<&Caller> {
        self.by_digest.get(&digest(token))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// How the API tells its callers apart.
#[derive(Clone, Debug)]
pub enum Auth {
    /// Bearer tokens, from a token file read again when it changes.
    Tokens(Arc<LiveTokens>),
    /// Kubernetes tokens, reviewed by the cluster's API (`TokenReview`), roles granted by
    /// its RBAC (`SubjectAccessReview`).
    Kubernetes(Arc<KubernetesAuth>),
    /// Anyone who reaches the API may do anything (`--api-no-auth`): for a planner whose
    /// listener only trusted callers can reach.
    Open,
}

/// Lets a request through when its caller may make it, and answers 401 or 403 when not.
pub(super) async fn authorize(
    State(auth): State<Auth>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(needed) = Role::needed(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    if matches!(auth, Auth::Open) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or(v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(token) = presented else {
        return unauthenticated("no bearer token: the API takes `Authorization: Bearer <token>`");
    };
    let what = format!("{} {}", request.method(), request.uri().path());
    let caller = match &auth {
        Auth::Open => unreachable!("let through above"),
        Auth::Tokens(tokens) => match tokens.caller(token) {
            None => return unauthenticated("the bearer token is not one the API knows"),
            Some(caller) if caller.role < needed => {
                let message = format!(
                    "{} has the {} role; {what} needs {needed}",
                    caller.name, caller.role
                );
                return forbidden(message, caller);
            }
            Some(caller) => caller,
        },
        Auth::Kubernetes(kubernetes) => match kubernetes.verdict(token, needed).await {
            Ok(Verdict::Allowed(caller)) => caller,
            Ok(Verdict::Unauthenticated(why)) => return unauthenticated(&why),
            Ok(Verdict::Forbidden { user }) => {
                let message = format!(
                    "{user} may not use the Baton role {needed} (or a higher one) that {what} needs: RBAC grants it with verb `use` on baton.dev `roles` named {needed}"
                );
                let mut refused = ApiError(StatusCode::FORBIDDEN, vec![message]).into_response();
                refused.extensions_mut().insert(Actor(user));
                return refused;
            }
            Err(e) => {
                warn!(error = %e, "a caller's token could not be reviewed");
                return ApiError(StatusCode::SERVICE_UNAVAILABLE, vec![e.to_string()])
                    .into_response();
            }
        },
    };
    request.extensions_mut().insert(caller.clone());
    // On the answer too, for the audit trail outside this layer.
    let mut response = next.run(request).await;
    response.extensions_mut().insert(caller);
    response
}

/// Answers 403, leaving the caller on the answer for the audit trail.
fn forbidden(message: String, caller: Caller) -> Response {
    let mut refused = ApiError(StatusCode::FORBIDDEN, vec![message]).into_response();
    refused.extensions_mut().insert(caller);
    refused
}

fn unauthenticated(why: &str) -> Response {
    let mut response = ApiError(StatusCode::UNAUTHORIZED, vec![why.to_owned()]).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"baton\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# who may call\nviewer-token-0123456,grafana,viewer\n\n  operator-token-012345 , ci , operator\nadmin-token-012345678,alice,admin\n";

    #[test]
    fn a_token_file_names_each_caller_and_role() {
        let tokens = Tokens::parse(Path::new("tokens.csv"), FILE).unwrap();
        let caller = |t: &str| tokens.caller(t).map(|c| (c.name.as_str(), c.role));
        assert_eq!(
            caller("viewer-token-0123456"),
            Some(("grafana", Role::Viewer))
        );
        assert_eq!(
            caller("operator-token-012345"),
            Some(("ci", Role::Operator))
        );
        assert_eq!(
            caller("admin-token-012345678"),
            Some(("alice", Role::Admin))
        );
        assert_eq!(caller("admin-token-01234567"), None);
        assert_eq!(caller(""), None);
    }

    #[test]
    fn a_bad_token_file_is_refused_by_line_without_its_tokens() {
        let refused = |text: &str| {
            Tokens::parse(Path::new("tokens.csv"), text)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused("# nothing\n"),
            "tokens.csv: the token file gives no token (lines are token,name,role)"
        );
        assert_eq!(
            refused("\nsecret-secret-secret,ci\n"),
            "tokens.csv:2: 2 fields where token,name,role are 3"
        );
        assert_eq!(
            refused("short,ci,admin\n"),
            "tokens.csv:1: the token (first field) must be at least 16 visible ASCII characters"
        );
        assert_eq!(
            refused("secret-secret-secret,ci,root\n"),
            "tokens.csv:1: the role (third field) is not viewer, operator or admin"
        );
        let twice = refused("secret-secret-secret,ci,admin\nsecret-secret-secret,bob,viewer\n");
        assert_eq!(
            twice,
            "tokens.csv:2: the token is an earlier line's token too"
        );
        assert!(!twice.contains("secret-secret"));
    }

    #[test]
    fn each_route_needs_the_role_its_effect_asks() {
        let needed = |m: Method, p: &str| Role::needed(&m, p);
        assert_eq!(needed(Method::GET, "/healthz"), None);
        // Flux reads the chart repository without a token; nothing else there is open.
        assert_eq!(needed(Method::GET, "/charts/0123/index.yaml"), None);
        assert_eq!(
            needed(Method::POST, "/charts/0123/index.yaml"),
            Some(Role::Operator)
        );
        assert_eq!(needed(Method::GET, "/chartsx"), Some(Role::Viewer));
        // The dashboard's page and scripts hold no data.
        assert_eq!(needed(Method::GET, "/"), None);
        assert_eq!(needed(Method::GET, "/ui/app.js"), None);
        assert_eq!(needed(Method::HEAD, "/ui/style.css"), None);
        assert_eq!(needed(Method::GET, "/uix"), Some(Role::Viewer));
        assert_eq!(needed(Method::GET, "/ui/other"), Some(Role::Viewer));
        assert_eq!(needed(Method::GET, "/v1/runs"), Some(Role::Viewer));
        assert_eq!(needed(Method::GET, "/v1/nothing"), Some(Role::Viewer));
        assert_eq!(
            needed(Method::POST, "/v1/runs/r1/cancel"),
            Some(Role::Operator)
        );
        assert_eq!(needed(Method::POST, "/v1/triggers/w"), Some(Role::Operator));
        assert_eq!(
            needed(Method::POST, "/v1/workflows/w/runs"),
            Some(Role::Operator)
        );
        assert_eq!(
            needed(Method::POST, "/v1/cells/c/promote"),
            Some(Role::Operator)
        );
        assert_eq!(needed(Method::POST, "/v1/apply"), Some(Role::Admin));
        assert_eq!(needed(Method::DELETE, "/v1/groups/g"), Some(Role::Admin));
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
    }
}
