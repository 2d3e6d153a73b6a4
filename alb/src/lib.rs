//! Baton's client of AWS Elastic Load Balancing v2: the listener rule of a `traffic` node,
//! found by its priority and written with a weighted forward action, and the target groups a
//! Cell discovers by their tags.
//!
//! Credentials, region and endpoint come from the standard AWS chain (environment variables
//! such as `AWS_REGION`, `AWS_ACCESS_KEY_ID` and `AWS_ENDPOINT_URL`, shared config and
//! credentials files, web identity, ECS and instance metadata), so Baton reaches an emulator
//! the way any AWS tool does. Throttled calls are retried with exponential backoff by the
//! SDK's standard retry mode ([`retry_config`]); every call has an attempt and an operation
//! timeout ([`Timeouts`]), so a hung read fails rather than blocks.
//!
//! The HTTP client is built here with rustls and ring, the one crypto provider of the
//! workspace: the SDK's default features (and with them aws-lc) are off.

mod calls;
mod discover;
mod rule;

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_elasticloadbalancingv2 as elb;
use aws_sdk_elasticloadbalancingv2::error::{ProvideErrorMetadata, SdkError};

pub use discover::TargetGroup;
pub use rule::{Applied, Deleted, RuleState, Write};

/// How many times a call is tried when AWS throttles it or fails for a passing reason.
const MAX_ATTEMPTS: u32 = 8;

/// The standard chain's error type, boxed as a source.
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

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
    /// AWS's error code and message, or what went wrong with its causes.
    pub message: String,
    /// The SDK's error, when the failure came from a call.
    #[source]
    pub source: Option<BoxError>,
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
    /// The client could not make the request: no credentials or region.
    Setup,
    /// No connection could be made, or it broke.
    Unreachable,
    /// A call took longer than its attempt or operation timeout.
    TimedOut,
    /// AWS did not show what was written, within the read-back deadline.
    NotConfirmed,
    /// The caller's stop token fired before a write: nothing more was written.
    Stopped,
    /// Anything else.
    Other,
}

impl AlbErrorKind {
    /// Returns the kind's name, as reported in a traffic node's output.
    pub fn as_str(self) -> &'static str {
        match self {
            AlbErrorKind::Throttled => "throttled",
            AlbErrorKind::NotFound => "notFound",
            AlbErrorKind::Invalid => "invalid",
            AlbErrorKind::Setup => "setup",
            AlbErrorKind::Unreachable => "unreachable",
            AlbErrorKind::TimedOut => "timedOut",
            AlbErrorKind::NotConfirmed => "notConfirmed",
            AlbErrorKind::Stopped => "stopped",
            AlbErrorKind::Other => "other",
        }
    }

    /// Returns whether trying the same request again cannot help: the spec names something
    /// that does not exist, or asks what AWS refuses (the planner's list of final failures).
    pub fn is_final(self) -> bool {
        baton_schemas::reports::FINAL_FAILURES.contains(&self.as_str())
    }
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
            source: None,
        }
    }

    /// Classifies an SDK error of `operation`.
    pub(crate) fn from_sdk<E, R>(operation: &'static str, error: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let (kind, code) = match &error {
            SdkError::ServiceError(service) => {
                let code = service.err().code().unwrap_or("Unknown").to_owned();
                (classify_code(&code), Some(code))
            }
            SdkError::ConstructionFailure(_) => (AlbErrorKind::Setup, None),
            SdkError::TimeoutError(_) => (AlbErrorKind::TimedOut, None),
            SdkError::DispatchFailure(failure) if failure.is_timeout() => {
                (AlbErrorKind::TimedOut, None)
            }
            SdkError::DispatchFailure(_) => (AlbErrorKind::Unreachable, None),
            _ => (AlbErrorKind::Other, None),
        };
        let message = match (&error, &code) {
            (SdkError::ServiceError(service), Some(code)) => {
                format!(
                    "{code}: {}",
                    service.err().message().unwrap_or("no message")
                )
            }
            _ => format!("{}", DisplayChain(&error)),
        };
        Self {
            kind,
            operation,
            code,
            message,
            source: Some(Box::new(error)),
        }
    }
}

/// Returns the kind of an error AWS answered with `code`.
fn classify_code(code: &str) -> AlbErrorKind {
    match code {
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" => AlbErrorKind::Throttled,
        c if c.ends_with("NotFound") => AlbErrorKind::NotFound,
        "ValidationError"
        | "PriorityInUse"
        | "TooManyTargetGroups"
        | "TooManyRules"
        | "TooManyConditionValues"
        | "TooManyActions"
        | "TooManyTags"
        | "InvalidConfigurationRequest"
        | "IncompatibleProtocols" => AlbErrorKind::Invalid,
        _ => AlbErrorKind::Other,
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

/// An AWS SDK error of any Baton client (ELBv2, CloudWatch, EKS) as one line: the service's
/// code and message when it answered, else the error and its sources.
pub fn sdk_error_line<E, R>(
    error: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> String
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_smithy_types::error::metadata::ProvideErrorMetadata as _;
    match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
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

/// How long ELBv2 calls may take before they fail as [`AlbErrorKind::TimedOut`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// One attempt of a call, from sending to the last byte of the answer (default 10 s).
    pub attempt: Duration,
    /// A call with all its retries (default 60 s).
    pub operation: Duration,
    /// Making a connection (default 3 s).
    pub connect: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            attempt: Duration::from_secs(10),
            operation: Duration::from_secs(60),
            connect: Duration::from_secs(3),
        }
    }
}

impl Timeouts {
    /// Returns the SDK's timeout settings: a call that hangs fails instead of stopping its
    /// caller (the planner's discovery reads one Cell after another) for ever.
    pub fn config(self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .operation_attempt_timeout(self.attempt)
            .operation_timeout(self.operation)
            .build()
    }
}

/// Returns the AWS settings every Baton AWS client is built from (ELBv2 here, CloudWatch for
/// analyses): `loader`'s (the standard chain, `AWS_ENDPOINT_URL` included), with Baton's HTTP
/// client, [`retry_config`] and `timeouts`.
pub async fn sdk_config(
    loader: aws_config::ConfigLoader,
    timeouts: Timeouts,
) -> aws_config::SdkConfig {
    loader
        .http_client(http_client())
        .retry_config(retry_config())
        .timeout_config(timeouts.config())
        .load()
        .await
}

/// Returns the retry settings of every Baton ELBv2 client: the SDK's standard mode (throttling
/// and passing failures are retried, with exponential backoff and jitter), up to eight
/// attempts, backing off from 200 ms to 20 s.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(20))
}

impl Alb {
    /// Builds a client from the standard AWS chain (see the crate's docs), with
    /// [`retry_config`] and the default [`Timeouts`].
    pub async fn from_env() -> Alb {
        Alb::from_loader(
            aws_config::defaults(BehaviorVersion::latest()),
            Timeouts::default(),
        )
        .await
    }

    /// Builds a client from `loader` (the standard chain, with whatever the caller set on it),
    /// with Baton's HTTP client, [`retry_config`] and `timeouts`.
    pub async fn from_loader(loader: aws_config::ConfigLoader, timeouts: Timeouts) -> Alb {
        Alb::from_client(elb::Client::new(&sdk_config(loader, timeouts).await))
    }

    /// Wraps a client built elsewhere, counting its calls (`baton_elbv2_calls_total`).
    pub fn from_client(client: elb::Client) -> Alb {
        let config = client
            .config()
            .to_builder()
            .interceptor(calls::CountCalls)
            .build();
        Alb {
            client: elb::Client::from_conf(config),
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
