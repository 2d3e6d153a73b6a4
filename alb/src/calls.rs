//! Counting each ELBv2 call attempt by operation and outcome, through the SDK's interceptor:
//! it sees every attempt, so the throttled ones the SDK retried are counted too.

use aws_sdk_elasticloadbalancingv2 as elb;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    Error as OperationError, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::{Metadata, OrchestratorError};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use baton_telemetry::{CallOutcome, client_calls};
use elb::operation::{
    add_tags::AddTagsError, create_rule::CreateRuleError, delete_rule::DeleteRuleError,
    describe_rules::DescribeRulesError, describe_tags::DescribeTagsError,
    describe_target_groups::DescribeTargetGroupsError, modify_rule::ModifyRuleError,
};

/// The interceptor every client Baton builds carries.
#[derive(Debug)]
pub(crate) struct CountCalls;

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "baton-count-calls"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg.load::<Metadata>().map_or("unknown", |m| m.name());
        let outcome = match context.output_or_error() {
            None | Some(Ok(_)) => CallOutcome::Ok,
            Some(Err(error)) => outcome_of(error),
        };
        client_calls().count_elbv2(operation, outcome);
        Ok(())
    }
}

/// Classifies a failed attempt by the code AWS answered with, read from the operation's own
/// error type (the interceptor sees it type-erased).
fn outcome_of(error: &OrchestratorError<OperationError>) -> CallOutcome {
    if error.is_timeout_error() || error.is_connector_error() {
        return CallOutcome::Unreachable;
    }
    let Some(error) = error.as_operation_error() else {
        return CallOutcome::Error;
    };
    let code = code::<DescribeRulesError>(error)
        .or_else(|| code::<ModifyRuleError>(error))
        .or_else(|| code::<CreateRuleError>(error))
        .or_else(|| code::<DeleteRuleError>(error))
        .or_else(|| code::<DescribeTargetGroupsError>(error))
        .or_else(|| code::<DescribeTagsError>(error))
        .or_else(|| code::<AddTagsError>(error));
    match code.map(crate::classify_code) {
        Some(crate::AlbErrorKind::Throttled) => CallOutcome::Throttled,
        Some(crate::AlbErrorKind::NotFound) => CallOutcome::NotFound,
        _ => CallOutcome::Error,
    }
}

fn code<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    error: &OperationError,
) -> Option<&str> {
    error.downcast_ref::<E>()?.code()
}
