//! Baton's client of AWS Elastic Load Balancing v2: the listener rule of a `traffic` node,
//! found by its priority and written with a weighted forward action, and the target groups a
//! Cell discovers by their tags.
//!
//! Credentials, region and endpoint come from the standard AWS chain (environment variables
//! such as `AWS_REGION`, `AWS_ACCESS_KEY_ID` and `AWS_ENDPOINT_URL`, shared config and
//! credentials files, web identity, ECS and instance metadata), so Baton reaches an emulator
//! the way any AWS tool does. Throttled calls are retried with exponential backoff by the
//! SDK's standard retry mode.
//!
//! The HTTP client is built here with rustls and ring, the one crypto provider of the
//! workspace: the SDK's default features (and with them aws-lc) are off.

mod discover;
mod rule;

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_elasticloadbalancingv2 as elb;
use aws_sdk_elasticloadbalancingv2::error::{ProvideErrorMetadata, SdkError};

pub use discover::TargetGroup;
pub use rule::{Applied, RuleState};

/// How many times a call is tried when AWS throttles it or fails for a passing reason.
const MAX_ATTEMPTS: u32 = 8;

/// An ELBv2 failure, classified so that callers can tell the user's mistakes from AWS trouble.
#[derive(Debug, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct AlbError {
    /// What kind of failure it is.
    pub kind: AlbErrorKind,
    /// The ELBv2 operation that failed (`ModifyRule`).
    pub operation: &'static str,
    /// AWS's error code (`PriorityInUse`), when AWS answered.
    pub code: Option<String>,
    /// AWS's error code and message, or what went wrong.
    pub message: String,
}

/// What kind of failure an [`AlbError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlbErrorKind {
    /// AWS kept throttling the call through every retry.
    Throttled,
    /// The listener, a target group or the rule does not exist.
    NotFound,
    /// AWS refused the request as invalid (a limit, a priority in use, a bad ARN).
    Invalid,
    /// No credentials, region or connection: the worker's AWS setup.
    Setup,
    /// AWS did not show what was written, within the read-back deadline.
    NotConfirmed,
    /// Anything else.
    Other,
}

impl AlbError {
    pub(crate) fn new(
        kind: AlbErrorKind,
        operation: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            operation,
            code: None,
            message: message.into(),
        }
    }

    /// Classifies an SDK error of `operation`.
    pub(crate) fn from_sdk<E, R>(operation: &'static str, error: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        let kind;
        let message;
        let mut code_seen = None;
        match &error {
            SdkError::ServiceError(service) => {
                let e = service.err();
                let code = e.code().unwrap_or("Unknown");
                kind = match code {
                    "Throttling" | "ThrottlingException" | "RequestLimitExceeded" => {
                        AlbErrorKind::Throttled
                    }
                    c if c.ends_with("NotFound") => AlbErrorKind::NotFound,
                    "ValidationError"
                    | "PriorityInUse"
                    | "TooManyTargetGroups"
                    | "TooManyRules"
                    | "TooManyConditionValues"
                    | "TooManyActions"
                    | "InvalidConfigurationRequest"
                    | "IncompatibleProtocols" => AlbErrorKind::Invalid,
                    _ => AlbErrorKind::Other,
                };
                message = format!("{code}: {}", e.message().unwrap_or("no message"));
                code_seen = Some(code.to_owned());
            }
            SdkError::ConstructionFailure(_) => {
                kind = AlbErrorKind::Setup;
                message = format!("{}", DisplayChain(&error));
            }
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                kind = AlbErrorKind::Setup;
                message = format!("{}", DisplayChain(&error));
            }
            _ => {
                kind = AlbErrorKind::Other;
                message = format!("{}", DisplayChain(&error));
            }
        }
        Self {
            code: code_seen,
            ..Self::new(kind, operation, message)
        }
    }
}

/// Writes an error with its sources, `a: b: c`: the SDK's own message is often only
/// "dispatch failure", with the reason a level down.
struct DisplayChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// Returns the SDK's HTTP client: hyper with rustls and ring.
pub fn http_client() -> elb::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// An ELBv2 client.
#[derive(Clone, Debug)]
pub struct Alb {
    client: elb::Client,
    /// The page size of Describe calls; `None` leaves AWS's default.
    page_size: Option<i32>,
}

impl Alb {
    /// Builds a client from the standard AWS chain (see the crate's docs), retrying throttled
    /// calls up to eight times with exponential backoff.
    pub async fn from_env() -> Alb {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(20)),
            )
            .load()
            .await;
        Alb::from_client(elb::Client::new(&config))
    }

    /// Wraps a client built elsewhere.
    pub fn from_client(client: elb::Client) -> Alb {
        Alb {
            client,
            page_size: None,
        }
    }

    /// Returns the client with Describe calls asking for pages of `n` items (AWS's default is
    /// the largest page; small pages exercise pagination).
    #[must_use]
    pub fn with_page_size(mut self, n: i32) -> Alb {
        self.page_size = Some(n);
        self
    }

    /// Returns the SDK client.
    pub fn client(&self) -> &elb::Client {
        &self.client
    }
}
