//! Logs and traces. Log lines always go to stdout (`RUST_LOG`); with an OTLP endpoint
//! (`--otlp-endpoint`, `OTEL_EXPORTER_OTLP_ENDPOINT`) the host also exports spans over
//! OTLP/HTTP (protobuf), through `tracing-opentelemetry` and a batch processor on its own thread,
//! off the invocations' path. The spans: the ingress request (its W3C `traceparent` taken as
//! the parent), each invocation (started by the ingress or by a call from another invocation)
//! and each of its attempts (service, handler, key, invocation id, attempt, outcome), each live
//! journal entry (kind, name), and each outbound HTTP request, which carries the `traceparent`
//! of its span. The spans have their own target ([`TARGET`]); without an endpoint no layer wants
//! them, and they cost nothing.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The target of the spans that are exported.
pub const TARGET: &str = "cairn::otel";

/// The exporter of this process, flushed and shut down on drop.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("cairn: flushing the spans at exit: {e}");
        }
    }
}

/// The OTLP/HTTP traces URL of `endpoint`: a base (`http://collector:4318`) gets `/v1/traces`.
fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.ends_with("/v1/traces") {
        endpoint.to_string()
    } else {
        format!("{endpoint}/v1/traces")
    }
}

/// Installs the logger and, with `otlp_endpoint`, the span exporter. Called outside the async
/// runtime: the exporter's blocking HTTP client runs on the batch processor's own thread.
pub fn init(otlp_endpoint: Option<&str>) -> anyhow::Result<Telemetry> {
    let logs = tracing_subscriber::fmt::layer()
        // Colours only on a terminal: a log file or a collector gets plain lines.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,wasmtime_cache=warn".into())
                .add_directive(format!("{TARGET}=off").parse()?),
        );
    let Some(endpoint) = otlp_endpoint.filter(|e| !e.is_empty()) else {
        tracing_subscriber::registry().with(logs).init();
        return Ok(Telemetry { provider: None });
    };
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(traces_url(endpoint))
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("cairn")
                .build(),
        )
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("cairn"))
        .with_filter(
            tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::TRACE),
        );
    tracing_subscriber::registry().with(logs).with(spans).init();
    tracing::info!(endpoint = %traces_url(endpoint), "exporting spans over OTLP/HTTP");
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// Makes `span` a child of the W3C trace context in `headers` (`traceparent`), if any.
pub fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(parent);
}

/// Makes `span` a child of an invocation's stored W3C `traceparent`, if any.
pub fn continue_from(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent.filter(|_| !span.is_disabled()) else {
        return;
    };
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
}

/// The W3C `traceparent` of the current span, to store; `None` when spans are not exported.
pub fn current_traceparent() -> Option<String> {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove("traceparent")
}

/// Adds the `traceparent` of `span` to `headers` (nothing when spans are not exported).
pub fn propagate(span: &tracing::Span, headers: &mut axum::http::HeaderMap) {
    if span.is_disabled() {
        return;
    }
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInjector(headers));
}

#[cfg(test)]
mod tests {
    use super::traces_url;

    #[test]
    fn a_base_endpoint_gets_the_traces_path() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/v1/traces/"),
            "http://c:4318/v1/traces"
        );
    }
}
