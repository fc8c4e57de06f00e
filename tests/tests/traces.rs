//! OpenTelemetry traces (issue 15): `cairn serve` with `OTEL_EXPORTER_OTLP_ENDPOINT` exports
//! its spans over OTLP/HTTP to a real receiver started here, which decodes them with
//! `opentelemetry-proto`. One order sent with a W3C `traceparent` is one trace: ingress →
//! invocation → attempt → a journal entry per provider call (charge, label, email) → the
//! provider's HTTP request, which reaches the fake carrying the same trace id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use cairn_e2e::order_input;
use cairn_e2e::process::{Rig, json_of};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

/// An OTLP/HTTP receiver on loopback: every span it was sent.
async fn receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut kept = kept.lock().unwrap();
                for resource in request.resource_spans {
                    for scope in resource.scope_spans {
                        kept.extend(scope.spans);
                    }
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    let value = span.attributes.iter().find(|kv| kv.key == key)?;
    match value.value.as_ref()?.value.as_ref()? {
        Any::StringValue(s) => Some(s.clone()),
        Any::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

#[tokio::test]
async fn one_order_is_one_trace_from_the_ingress_to_the_provider_requests() {
    let (otlp, spans) = receiver().await;
    let mut rig = Rig::new(CAIRN, cairn::mock::MockConfig::default()).await;
    rig.env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", otlp));
    rig.env.push(("OTEL_BSP_SCHEDULE_DELAY", "100".into()));
    let host = rig.start(0).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let reply = rig
        .http
        .post(format!(
            "{}/OrderOrchestrator/trace-1/ProcessOrder",
            host.ingress
        ))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&order_input("t@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);

    // Spans come in batches; wait for the email's HTTP request, the last of the order.
    let deadline = Instant::now() + Duration::from_secs(20);
    let trace: Vec<Span> = loop {
        let trace: Vec<Span> = spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| hex(&s.trace_id) == trace_id)
            .cloned()
            .collect();
        let entries = trace.iter().filter(|s| s.name.starts_with("call ")).count();
        let ingress_done = trace.iter().any(|s| s.name.starts_with("POST /Order"));
        if (entries == 3
            && ingress_done
            && trace
                .iter()
                .filter(|s| s.name.starts_with("POST http"))
                .count()
                >= 3)
            || Instant::now() > deadline
        {
            break trace;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let names: Vec<&str> = trace.iter().map(|s| s.name.as_str()).collect();
    let by_id: HashMap<String, &Span> = trace.iter().map(|s| (hex(&s.span_id), s)).collect();
    let parent = |span: &Span| by_id.get(&hex(&span.parent_span_id)).copied();
    let one = |name: &str| {
        *trace
            .iter()
            .filter(|s| s.name == name)
            .collect::<Vec<_>>()
            .first()
            .unwrap_or_else(|| panic!("no span {name:?} in {names:?}"))
    };

    let ingress = one("POST /OrderOrchestrator/trace-1/ProcessOrder");
    assert_eq!(
        hex(&ingress.parent_span_id),
        caller_span,
        "the caller's traceparent"
    );
    assert_eq!(
        attribute(ingress, "http.response.status_code").as_deref(),
        Some("200")
    );
    let invocation = one("OrderOrchestrator/ProcessOrder");
    assert_eq!(
        parent(invocation).map(|s| s.name.as_str()),
        Some(ingress.name.as_str())
    );
    assert_eq!(attribute(invocation, "key").as_deref(), Some("trace-1"));
    let attempt = one("OrderOrchestrator/ProcessOrder attempt 1");
    assert_eq!(
        parent(attempt).map(|s| s.span_id.clone()),
        Some(invocation.span_id.clone())
    );
    assert_eq!(attribute(attempt, "outcome").as_deref(), Some("succeeded"));
    assert!(attribute(attempt, "invocation.id").is_some_and(|id| id.starts_with("inv_")));
    for call in [
        "call cairn:commerce/payments.create-charge",
        "call cairn:commerce/shipping.create-label",
        "call cairn:commerce/email.send-email",
    ] {
        let entry = one(call);
        assert_eq!(
            parent(entry).map(|s| s.span_id.clone()),
            Some(attempt.span_id.clone()),
            "{call} under the attempt"
        );
        let requests: Vec<&Span> = trace
            .iter()
            .filter(|s| s.parent_span_id == entry.span_id && s.name.starts_with("POST http"))
            .collect();
        assert_eq!(requests.len(), 1, "{call}: its HTTP request, in {names:?}");
        let status = attribute(requests[0], "http.response.status_code").unwrap_or_default();
        assert!(status.starts_with('2'), "{call}: HTTP {status}");
        assert!(
            entry.start_time_unix_nano <= requests[0].start_time_unix_nano
                && requests[0].end_time_unix_nano <= entry.end_time_unix_nano,
            "{call}: the request within its entry"
        );
    }

    // The provider's request carried the trace on to the fake.
    let requests = json_of(rig.http.get(format!(
        "{}/_mock/requests?provider=stripe",
        rig.mock.control_url()
    )))
    .await;
    let traceparent = requests[0]["headers"]["traceparent"]
        .as_str()
        .unwrap_or_default();
    assert!(
        traceparent.starts_with(&format!("00-{trace_id}-")),
        "the charge's traceparent: {requests}"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
