//! Logs and traces. Log lines always go to stdout (`RUST_LOG`); with an OTLP endpoint
//! (`--otlp-endpoint`, `OTEL_EXPORTER_OTLP_ENDPOINT`) the host also exports spans over
//! OTLP/HTTP (protobuf), through a batch processor on its own thread, off the invocations'
//! path. The spans: the ingress request (its W3C `traceparent` taken as the parent), each
//! invocation (started by the ingress or by a call from another invocation) and each of its
//! attempts (service, handler, key, invocation id, attempt, outcome), each live journal entry
//! (kind, name, index), and each outbound HTTP request, which carries the `traceparent` of its
//! span.
//!
//! The ingress request's is a `tracing` span of its own target ([`TARGET`]), exported by
//! `tracing-opentelemetry`; without an endpoint no layer wants it, and it costs nothing. The
//! others, twelve of an order's thirteen, are [`ChildSpan`]s, made straight on the SDK's tracer:
//! an invocation's span is given to its attempts, an attempt's context to its journal, and only
//! a journal entry's context is attached to the future it times (OpenTelemetry's own
//! `FutureExt`) for the requests and calls made inside it. So they skip `tracing`'s registry,
//! its per-span extensions and the enter/exit bookkeeping of every nested span at every poll,
//! which cost an order more than exporting it did (docs/benchmarks.md).
//!
//! Sampling is decided at the head, before any span is made (a span costs some microseconds to
//! build and export whether or not the SDK keeps it): a trace that comes with a `traceparent`
//! follows its sampled flag, a new one is kept with the probability `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG` give (`always_on` by default; `traceidratio` and
//! `parentbased_traceidratio` with a ratio, `always_off`). Inside a kept trace every span is
//! made, outside none ([`starts_trace`], [`ChildSpan`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::OnceLock;

use opentelemetry::context::FutureExt as _;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::trace::{SpanBuilder, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The target of the spans that are exported.
pub const TARGET: &str = "cairn::otel";

/// A span of [`TARGET`] (`tracing::info_span!` arguments after the condition) when `$made`
/// holds, else `Span::none()`: a span outside a sampled trace is never built (see the module
/// header).
macro_rules! otel_span {
    ($made:expr, $($span:tt)+) => {
        if $made {
            tracing::info_span!(target: $crate::telemetry::TARGET, $($span)+)
        } else {
            tracing::Span::none()
        }
    };
}
pub(crate) use otel_span;

/// The share of new traces kept, set once spans are exported (see the module header).
static SAMPLE_RATIO: OnceLock<f64> = OnceLock::new();

/// The ratio of new traces to keep, from the standard OpenTelemetry variables.
fn sample_ratio(sampler: Option<&str>, arg: Option<&str>) -> anyhow::Result<f64> {
    let ratio = || -> anyhow::Result<f64> {
        let Some(arg) = arg else { return Ok(1.0) };
        match arg.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
            _ => anyhow::bail!("OTEL_TRACES_SAMPLER_ARG={arg:?}: expected a ratio from 0 to 1"),
        }
    };
    match sampler.map(str::trim).unwrap_or("") {
        "" | "always_on" | "parentbased_always_on" => Ok(1.0),
        "always_off" | "parentbased_always_off" => Ok(0.0),
        "traceidratio" | "parentbased_traceidratio" => ratio(),
        other => anyhow::bail!(
            "OTEL_TRACES_SAMPLER={other:?}: Cairn samples at the head with always_on, always_off, \
             traceidratio or parentbased_traceidratio"
        ),
    }
}

/// Whether a request's span is made (a new trace may start there): continuing `parent` (a W3C
/// `traceparent`) when its sampled flag is set; without one, with the sampling ratio. Never
/// when spans are not exported.
pub fn starts_trace(parent: Option<&str>) -> bool {
    let Some(&ratio) = SAMPLE_RATIO.get() else {
        return false;
    };
    match parent {
        Some(traceparent) => sampled(traceparent),
        None => ratio >= 1.0 || rand::random::<f64>() < ratio,
    }
}

/// The sampled flag of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
fn sampled(traceparent: &str) -> bool {
    traceparent
        .rsplit('-')
        .next()
        .and_then(|flags| u8::from_str_radix(flags, 16).ok())
        .is_some_and(|flags| flags & 1 == 1)
}

/// The tracer of the [`ChildSpan`]s, set once spans are exported.
static TRACER: OnceLock<opentelemetry_sdk::trace::SdkTracer> = OnceLock::new();

/// The context a span made here continues: a [`ChildSpan`]'s attached to the running future,
/// else the current `tracing` span's; `None` outside a recorded trace.
fn current_context() -> Option<Context> {
    TRACER.get()?;
    if let Some(cx) = Context::map_current(|cx| cx.has_active_span().then(|| cx.clone())) {
        return Some(cx);
    }
    let span = tracing::Span::current();
    (!span.is_disabled()).then(|| span.context())
}

/// A span of the many an order makes (an invocation, an attempt, a journal entry, an outbound
/// request), made on the SDK's tracer (see the module header) and ended when dropped. Outside a
/// recorded trace it is nothing and `build` is not called.
pub struct ChildSpan {
    cx: Option<Context>,
}

impl ChildSpan {
    /// A child of the current span: a journal entry's attached by [`ChildSpan::run`], else the
    /// current `tracing` span (the ingress request's).
    pub fn start(build: impl FnOnce() -> SpanBuilder) -> ChildSpan {
        ChildSpan::under(current_context(), build)
    }

    /// A span continuing `traceparent` (an invocation's stored W3C trace context: the span that
    /// created it, whatever runs it now, a restart or an operator's resume) when it was
    /// sampled; without one, a child of the current span.
    pub fn continuing(traceparent: Option<&str>, build: impl FnOnce() -> SpanBuilder) -> ChildSpan {
        let parent = match traceparent {
            None => current_context(),
            Some(traceparent) if TRACER.get().is_some() && sampled(traceparent) => {
                let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
                Some(TraceContextPropagator::new().extract(&carrier))
            }
            Some(_) => None,
        };
        ChildSpan::under(parent, build)
    }

    /// A child of this span (nothing when this one is nothing).
    pub fn child(&self, build: impl FnOnce() -> SpanBuilder) -> ChildSpan {
        ChildSpan::under(self.cx.clone(), build)
    }

    /// This span's context, for children made later elsewhere ([`ChildSpan::under`]).
    pub fn context(&self) -> Option<Context> {
        self.cx.clone()
    }

    /// A child of `parent`, a context from [`ChildSpan::context`].
    pub fn under(parent: Option<Context>, build: impl FnOnce() -> SpanBuilder) -> ChildSpan {
        let cx = parent.and_then(|parent| {
            let span = TRACER.get()?.build_with_context(build(), &parent);
            Some(parent.with_span(span))
        });
        ChildSpan { cx }
    }

    /// Runs `future` inside this span: what it makes (spans, a stored `traceparent`, an
    /// outbound request's header) continues it. Its context is attached at every poll, so a
    /// span whose children are made with [`ChildSpan::child`] or [`ChildSpan::under`] (an
    /// invocation's attempts, an attempt's entries) is not run this way, only those whose
    /// children are made deep inside (a journal entry's requests and calls).
    pub async fn run<F: Future>(&self, future: F) -> F::Output {
        match &self.cx {
            Some(cx) => future.with_context(cx.clone()).await,
            None => future.await,
        }
    }

    /// Sets an attribute known only at the end (a response's status).
    pub fn set(&self, attribute: impl FnOnce() -> KeyValue) {
        if let Some(cx) = &self.cx {
            cx.span().set_attribute(attribute());
        }
    }

    /// Adds this span's `traceparent` to `headers`.
    pub fn propagate(&self, headers: &mut axum::http::HeaderMap) {
        if let Some(cx) = &self.cx {
            TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
        }
    }
}

impl Drop for ChildSpan {
    fn drop(&mut self) {
        if let Some(cx) = &self.cx {
            cx.span().end();
        }
    }
}

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
    let ratio = sample_ratio(
        std::env::var("OTEL_TRACES_SAMPLER").ok().as_deref(),
        std::env::var("OTEL_TRACES_SAMPLER_ARG").ok().as_deref(),
    )?;
    let provider = SdkTracerProvider::builder()
        // Sampled at the head already (see the module header): the SDK keeps what it gets.
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("cairn")
                .build(),
        )
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // Only what the spans say themselves: no source location, thread or target attributes, no
    // busy/idle clocks and no context switch on every poll of an instrumented future (the
    // propagation reads a span's context directly). Each of those cost the order path.
    let spans = tracing_opentelemetry::layer()
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_tracer(provider.tracer("cairn"))
        .with_filter(
            tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::INFO),
        );
    tracing_subscriber::registry().with(logs).with(spans).init();
    let _ = TRACER.set(provider.tracer("cairn"));
    let _ = SAMPLE_RATIO.set(ratio);
    tracing::info!(endpoint = %traces_url(endpoint), sample = ratio, "exporting spans over OTLP/HTTP");
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

/// The W3C `traceparent` of the current span, to store; `None` outside a recorded trace.
pub fn current_traceparent() -> Option<String> {
    let cx = current_context()?;
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

#[cfg(test)]
mod tests {
    use super::{sample_ratio, traces_url};

    #[test]
    fn the_sampler_variables_give_the_ratio_of_new_traces_kept() {
        assert_eq!(sample_ratio(None, None).unwrap(), 1.0);
        assert_eq!(sample_ratio(Some("always_off"), None).unwrap(), 0.0);
        assert_eq!(
            sample_ratio(Some("parentbased_traceidratio"), Some("0.1")).unwrap(),
            0.1
        );
        assert_eq!(sample_ratio(Some("traceidratio"), None).unwrap(), 1.0);
        let error = sample_ratio(Some("traceidratio"), Some("2")).unwrap_err();
        assert!(error.to_string().contains("from 0 to 1"), "{error}");
        let error = sample_ratio(Some("jaeger_remote"), None).unwrap_err();
        assert!(error.to_string().contains("at the head"), "{error}");
    }

    #[test]
    fn a_traceparent_is_sampled_by_its_flags() {
        let id = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7";
        assert!(super::sampled(&format!("{id}-01")));
        assert!(super::sampled(&format!("{id}-03")));
        assert!(!super::sampled(&format!("{id}-00")));
        assert!(!super::sampled(&format!("{id}-zz")));
    }

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
