//! Callers authenticated and authorized by Kubernetes, as Argo Server's client mode does: a
//! bearer token (a service account's, a user's from the cluster's identity provider) is
//! checked with a `TokenReview`, and the role the request needs with a
//! `SubjectAccessReview` of verb `use` on the `baton.dev` resource `roles` named after the
//! role. Plain RBAC then grants Baton roles:
//!
//! ```yaml
//! rules: [{apiGroups: [baton.dev], resources: [roles], resourceNames: [operator], verbs: [use]}]
//! ```
//!
//! Roles still nest: a caller granted `admin` may do what `operator` and `viewer` may. The
//! planner's own service account needs `system:auth-delegator` (it creates the reviews).
//! Answers are kept for [`CACHE_TTL`], as the API server's own webhook authenticator does,
//! so a burst of requests is not a burst of reviews.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};
use tracing::warn;

use super::auth::{Caller, Role};

/// How long a review's answer is kept.
pub const CACHE_TTL: Duration = Duration::from_secs(10);

/// The most answers kept; past it the cache starts again (a flood of distinct tokens costs
/// reviews, never memory).
const CACHE_ENTRIES: usize = 10_000;

/// What Kubernetes said of a token and a role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The token is a known user's and may act with this role.
    Allowed(Caller),
    /// Kubernetes does not know the token (why, as the review says).
    Unauthenticated(String),
    /// The user is known but has no role at least as high as the one needed.
    Forbidden {
        /// The user's name.
        user: String,
    },
}

/// Authenticates and authorizes with the Kubernetes API.
pub struct KubernetesAuth {
    client: kube::Client,
    cache: Mutex<HashMap<CacheKey, (Instant, Verdict)>>,
    /// Reviews under way at once: a flood of distinct tokens waits here instead of becoming
    /// a flood of requests to the Kubernetes API.
    reviews: tokio::sync::Semaphore,
}

/// The most reviews asked of Kubernetes at once.
const CONCURRENT_REVIEWS: usize = 8;

/// A cached answer's key: the token's SHA-256 digest (the token itself is not kept) and the
/// role asked for.
type CacheKey = ([u8; 32], Role);

impl std::fmt::Debug for KubernetesAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubernetesAuth")
    }
}

/// The Kubernetes API could not be asked (unreachable, or the planner may not create
/// reviews): the request is answered 503, not refused as if the caller were wrong.
#[derive(Debug, thiserror::Error)]
#[error("Kubernetes could not review the caller's token: {0}")]
pub struct ReviewFailed(#[source] kube::Error);

impl KubernetesAuth {
    /// Uses `client` (the planner's own identity) to create the reviews.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            cache: Mutex::new(HashMap::new()),
            reviews: tokio::sync::Semaphore::new(CONCURRENT_REVIEWS),
        }
    }

    /// Returns what Kubernetes says of `token` doing what `needed` allows.
    pub async fn verdict(&self, token: &str, needed: Role) -> Result<Verdict, ReviewFailed> {
        let key = (Sha256::digest(token.as_bytes()).into(), needed);
        if let Some(verdict) = self.cached(&key) {
            return Ok(verdict);
        }
        let _turn = self
            .reviews
            .acquire()
            .await
            .expect("the semaphore is never closed");
        // Another request for the same token may have been answered while this one waited.
        if let Some(verdict) = self.cached(&key) {
            return Ok(verdict);
        }
        let verdict = self.review(token, needed).await?;
        let mut cache = self.cache.lock().expect("not poisoned");
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key, (Instant::now(), verdict.clone()));
        Ok(verdict)
    }

    /// Returns the answer kept for `key`, if it is recent enough.
    fn cached(&self, key: &CacheKey) -> Option<Verdict> {
        let cache = self.cache.lock().expect("not poisoned");
        let (at, verdict) = cache.get(key)?;
        (at.elapsed() < CACHE_TTL).then(|| verdict.clone())
    }

    async fn review(&self, token: &str, needed: Role) -> Result<Verdict, ReviewFailed> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(ReviewFailed)?;
        let status = reviewed.status.unwrap_or_default();
        let user = match (status.authenticated, status.user) {
            (Some(true), Some(user)) => user,
            _ => {
                let why = status
                    .error
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| "Kubernetes does not know the bearer token".to_owned());
                return Ok(Verdict::Unauthenticated(why));
            }
        };
        let name = user.username.clone().unwrap_or_default();
        // The lowest role that allows the request and that the user has.
        for role in [Role::Viewer, Role::Operator, Role::Admin] {
            if role < needed {
                continue;
            }
            if self.may_use(&user, role).await? {
                return Ok(Verdict::Allowed(Caller { name, role }));
            }
        }
        Ok(Verdict::Forbidden { user: name })
    }

    /// Asks whether `user` may `use` the Baton role `role`.
    async fn may_use(&self, user: &UserInfo, role: Role) -> Result<bool, ReviewFailed> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username.clone(),
                groups: user.groups.clone(),
                uid: user.uid.clone(),
                extra: user.extra.clone(),
                resource_attributes: Some(ResourceAttributes {
                    group: Some("baton.dev".to_owned()),
                    resource: Some("roles".to_owned()),
                    name: Some(role.to_string()),
                    verb: Some("use".to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviewed = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(ReviewFailed)?;
        let status = reviewed.status.unwrap_or_default();
        if let Some(error) = status.evaluation_error.filter(|e| !e.is_empty()) {
            warn!(%error, "a SubjectAccessReview reported an evaluation error");
        }
        Ok(status.allowed)
    }
}
