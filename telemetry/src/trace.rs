//! Traces: spans exported over OTLP/HTTP (off unless an endpoint is configured, by
//! `--otlp-endpoint` or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` and
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), and W3C trace context (`traceparent`,
//! `tracestate`) carried in NATS and HTTP headers, so that one release is one trace: the API
//! request or trigger that starts a run, the planner's dispatch of each job, the worker's
//! execution and its calls, and the dispatch its completion causes.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use opentelemetry::Context;
pub use opentelemetry_sdk::trace::SdkTracerProvider as TracerProvider;

/// Whether spans are exported: set once a provider exists, so that code on hot paths skips
/// trace work when nobody reads it.
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process exports spans.
pub fn enabled() -> bool {
    ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Why the exporter could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("OTLP trace exporter: {0}")]
pub struct ExporterError(String);

/// Returns a tracer provider exporting to `endpoint` (the full URL, `.../v1/traces`) or, without
/// one, to what `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` say;
/// `None` when neither is set: tracing is off. The service is `OTEL_SERVICE_NAME`, else
/// `service`. Spans go out in batches from a thread of the exporter's own; a TLS endpoint
/// needs the process's rustls provider installed first.
pub fn provider(
    service: &str,
    endpoint: Option<&str>,
) -> Result<Option<SdkTracerProvider>, ExporterError> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty());
    if endpoint.is_none()
        && !set("OTEL_EXPORTER_OTLP_ENDPOINT")
        && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    {
        return Ok(None);
    }
    let mut exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(std::time::Duration::from_secs(5));
    if let Some(url) = endpoint {
        exporter = exporter.with_endpoint(url);
    }
    let exporter = exporter.build().map_err(|e| ExporterError(e.to_string()))?;
    let mut resource = Resource::builder();
    if !set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name(service.to_owned());
    }
    ENABLED.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    ))
}

/// The layer that turns `tracing` spans into spans of `provider`.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("baton"))
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_location(false)
        .with_target(false)
}

/// Sends the spans still buffered and stops the exporter (at most a few seconds).
pub fn shutdown(provider: SdkTracerProvider) {
    if let Err(e) = provider.shutdown() {
        eprintln!("warning: the trace exporter did not stop cleanly: {e}");
    }
}

struct Pairs<'a>(&'a mut Vec<(String, String)>);

impl Injector for Pairs<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|(k, _)| k != key);
        self.0.push((key.to_owned(), value));
    }
}

/// The two headers trace context travels in.
struct Lookup<'a> {
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
}

impl Extractor for Lookup<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => self.traceparent,
            "tracestate" => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// Writes `span`'s trace context into `headers` (`traceparent`, and `tracestate` when it has
/// one), replacing any there. Returns whether it did: a span that is not traced (tracing off,
/// or filtered out) has none, and `headers` are left as they were.
pub fn inject(span: &tracing::Span, headers: &mut Vec<(String, String)>) -> bool {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return false;
    }
    TraceContextPropagator::new().inject_context(&context, &mut Pairs(headers));
    true
}

/// Returns `span`'s `traceparent`, when it is traced.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let mut headers = Vec::new();
    inject(span, &mut headers);
    headers
        .into_iter()
        .find(|(k, _)| k == "traceparent")
        .map(|(_, v)| v)
}

/// Reads a trace context from the `traceparent` and `tracestate` headers' values; `None`
/// without a valid `traceparent`.
pub fn extract(
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> Option<opentelemetry::Context> {
    let context = TraceContextPropagator::new().extract(&Lookup {
        traceparent,
        tracestate,
    });
    context.span().span_context().is_valid().then_some(context)
}

/// Returns the trace id (32 hex digits) of `context`'s span, when it has a valid one.
pub fn context_trace_id(context: &Context) -> Option<String> {
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Makes `parent` the parent of `span`, which must not have been entered yet. Does nothing
/// when tracing is off.
pub fn set_parent(span: &tracing::Span, parent: opentelemetry::Context) {
    // Refused only when tracing is off or the span filtered out: nothing to link then.
    let _ = span.set_parent(parent);
}

/// A parent in trace `trace_id` (32 hex digits) for a span with no cause of its own in this
/// process (a retry a timer started): the span joins its run's trace, under a parent that
/// stands for the run (`span_id`, derived from the run) and is not itself exported.
pub fn in_trace(trace_id: &str, span_id: u64) -> Option<opentelemetry::Context> {
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_context = SpanContext::new(
        trace_id,
        SpanId::from(span_id.max(1)),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    span_context
        .is_valid()
        .then(|| opentelemetry::Context::new().with_remote_span_context(span_context))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_goes_through_headers() {
        let context = extract(
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            None,
        )
        .expect("a valid traceparent");
        let span_context = context.span().span_context().clone();
        assert_eq!(
            span_context.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert!(extract(None, None).is_none());
        assert!(extract(Some("00-garbage"), None).is_none());
        let run = in_trace("0af7651916cd43dd8448eb211c80319c", 7).unwrap();
        assert_eq!(
            run.span().span_context().trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert!(in_trace("not hex", 7).is_none());
    }
}
