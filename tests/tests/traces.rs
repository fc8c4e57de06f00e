//! OpenTelemetry traces (issue 15): `cairn serve` with `OTEL_EXPORTER_OTLP_ENDPOINT` exports
//! its spans over OTLP/HTTP to a real receiver started here, which decodes them with
//! `opentelemetry-proto`. One order sent with a W3C `traceparent` is one trace: ingress →
//! invocation → attempt → a journal entry per provider call (charge, label, email) → the
//! provider's HTTP request, which reaches the fake carrying the same trace id. The fake's webhook
//! for the charge carries that request's `traceparent` back, so the webhook, the
//! `WebhookProcessor` invocation it starts and the order's `OnEvent` it calls are in the trace too.
//! An order recovered after kill -9 stays in its trace, and sampling is decided once, at the
//! head: an unsampled order makes no span at all.

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

/// The fake without its random declines: every order here must be charged.
fn no_declines() -> cairn::mock::MockConfig {
    cairn::mock::MockConfig {
        decline_rate: 0.0,
        ..Default::default()
    }
}

/// Has the rig's hosts export their spans to `otlp`, in batches sent every 100 ms.
fn export_to(rig: &mut Rig, otlp: String) {
    rig.env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", otlp));
    rig.env.push(("OTEL_BSP_SCHEDULE_DELAY", "100".into()));
}

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
    let mut rig = Rig::new(CAIRN, no_declines()).await.with_webhooks(20, 1500);
    export_to(&mut rig, otlp);
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

    // Spans come in batches, each when it ends: wait for the email's HTTP request, the last of
    // the order, and for the charge's webhook down to the order's `OnEvent` under its processor
    // (an `OnEvent` for another provider's webhook may come first).
    let trace = wait_for_trace(&spans, trace_id, |trace| {
        let named = |prefix: &str| trace.iter().filter(|s| s.name.starts_with(prefix)).count();
        let by_id = by_span_id(trace);
        named("call cairn:commerce/") == 3
            && named("POST /Order") == 1
            && named("POST http") >= 3
            && named("POST /webhooks/stripe") == 1
            && trace.iter().any(|s| {
                s.name == "OrderOrchestrator/OnEvent"
                    && ancestors(&by_id, s).any(|a| a.name == "WebhookProcessor/Stripe")
            })
    })
    .await;
    let names: Vec<&str> = trace.iter().map(|s| s.name.as_str()).collect();
    let by_id = by_span_id(&trace);
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

    // The charge's webhook, in the trace under the charge's HTTP request: the webhook request,
    // the processor's invocation, its call to the order and the order's `OnEvent`.
    let charge = one("call cairn:commerce/payments.create-charge");
    let charge_request = trace
        .iter()
        .find(|s| s.parent_span_id == charge.span_id)
        .expect("the charge's request");
    let webhook = one("POST /webhooks/stripe");
    assert_eq!(
        webhook.parent_span_id, charge_request.span_id,
        "the webhook continues the charge request's trace"
    );
    let processor = one("WebhookProcessor/Stripe");
    assert_eq!(processor.parent_span_id, webhook.span_id);
    let on_event = trace
        .iter()
        .filter(|s| s.name == "OrderOrchestrator/OnEvent")
        .find(|s| ancestors(&by_id, s).any(|a| a.span_id == processor.span_id));
    assert!(
        on_event.is_some_and(
            |s| ancestors(&by_id, s).last().map(|a| &a.span_id) == Some(&ingress.span_id)
        ),
        "the order's OnEvent for the charge, under the processor, in the order's trace: {names:?}"
    );

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_recovered_after_kill_minus_nine_stays_in_its_trace() {
    let (otlp, spans) = receiver().await;
    let mut rig = Rig::new(CAIRN, no_declines()).await.with_webhooks(20, 4000);
    export_to(&mut rig, otlp);
    let mut host = rig.start(0).await;

    // A pending charge: the order waits for its webhook, which comes after the restart.
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let mut input = order_input("r@example.com");
    input["paymentMethod"] = serde_json::json!("pm_card_pending");
    let sent = rig
        .http
        .post(format!(
            "{}/OrderOrchestrator/trace-2/ProcessOrder/send",
            host.ingress
        ))
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .json(&input)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    let before = wait_for_trace(&spans, trace_id, |trace| {
        trace
            .iter()
            .any(|s| s.name.starts_with("POST /OrderOrchestrator"))
            && trace
                .iter()
                .any(|s| s.name == "call cairn:commerce/payments.create-charge")
    })
    .await;
    let ingress = before
        .iter()
        .find(|s| s.name.starts_with("POST /OrderOrchestrator"))
        .expect("the ingress span, exported before the kill")
        .span_id
        .clone();
    host.kill();

    let _host = rig.start(1).await;
    // The email's attempt and its invocation end after it, maybe in a later batch.
    let email_and_up = |trace: &[Span]| {
        let by_id = by_span_id(trace);
        trace
            .iter()
            .filter(|s| s.name == "call cairn:commerce/email.send-email")
            .map(|email| ancestors(&by_id, email).take(2).count())
            .max()
            == Some(2)
    };
    let trace = wait_for_trace(&spans, trace_id, email_and_up).await;
    let names: Vec<&str> = trace.iter().map(|s| s.name.as_str()).collect();
    let email = trace
        .iter()
        .find(|s| s.name == "call cairn:commerce/email.send-email")
        .unwrap_or_else(|| panic!("the email, sent after the restart, in the trace: {names:?}"));
    let attempt = trace
        .iter()
        .find(|s| s.span_id == email.parent_span_id)
        .unwrap_or_else(|| panic!("the email's attempt in {names:?}"));
    let invocation = trace
        .iter()
        .find(|s| s.span_id == attempt.parent_span_id)
        .unwrap_or_else(|| panic!("the attempt's invocation in {names:?}"));
    assert_eq!(invocation.name, "OrderOrchestrator/ProcessOrder");
    assert_eq!(
        invocation.parent_span_id, ingress,
        "the recovered invocation continues under the request that created it"
    );
}

#[tokio::test]
async fn sampling_is_decided_at_the_head_and_followed_by_the_whole_trace() {
    let (otlp, spans) = receiver().await;
    let mut rig = Rig::new(CAIRN, no_declines()).await;
    export_to(&mut rig, otlp);
    // No new trace is kept: only a caller's sampled one is followed.
    rig.env
        .push(("OTEL_TRACES_SAMPLER", "parentbased_traceidratio".into()));
    rig.env.push(("OTEL_TRACES_SAMPLER_ARG", "0".into()));
    let host = rig.start(0).await;
    let order = |key: &str, traceparent: Option<String>| {
        let mut request = rig
            .http
            .post(format!(
                "{}/OrderOrchestrator/{key}/ProcessOrder",
                host.ingress
            ))
            .json(&order_input("s@example.com"));
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        request.send()
    };
    let kept = "5b8efff798038103d269b633813fc60c";
    let dropped = "6b8efff798038103d269b633813fc60c";
    for (key, traceparent) in [
        ("sampled-no", None),
        (
            "sampled-off",
            Some(format!("00-{dropped}-eee19b7ec3c1b174-00")),
        ),
        ("sampled-on", Some(format!("00-{kept}-eee19b7ec3c1b174-01"))),
    ] {
        assert_eq!(order(key, traceparent).await.unwrap().status(), 200);
    }
    let trace = wait_for_trace(&spans, kept, |trace| {
        trace
            .iter()
            .any(|s| s.name == "call cairn:commerce/email.send-email")
            && trace.iter().any(|s| s.name.starts_with("POST /Order"))
    })
    .await;
    assert!(
        trace
            .iter()
            .any(|s| s.name == "OrderOrchestrator/ProcessOrder attempt 1"),
        "the sampled caller's order is traced whole"
    );
    // Whatever was exported by now is the sampled order's: nothing of the other two.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = spans.lock().unwrap();
    let others: Vec<&str> = all
        .iter()
        .filter(|s| hex(&s.trace_id) != kept)
        .map(|s| s.name.as_str())
        .collect();
    assert!(others.is_empty(), "spans of unsampled orders: {others:?}");
}

/// The spans of `trace_id` received so far once `done` holds of them (or after 20 s).
async fn wait_for_trace(
    spans: &Mutex<Vec<Span>>,
    trace_id: &str,
    done: impl Fn(&[Span]) -> bool,
) -> Vec<Span> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let trace: Vec<Span> = spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| hex(&s.trace_id) == trace_id)
            .cloned()
            .collect();
        if done(&trace) || Instant::now() > deadline {
            return trace;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The spans of `trace` by their hex span id.
fn by_span_id(trace: &[Span]) -> HashMap<String, &Span> {
    trace.iter().map(|s| (hex(&s.span_id), s)).collect()
}

/// The parent of `span` in `by_id`, its parent, and so on to the root.
fn ancestors<'a>(
    by_id: &'a HashMap<String, &'a Span>,
    span: &'a Span,
) -> impl Iterator<Item = &'a Span> + 'a {
    std::iter::successors(by_id.get(&hex(&span.parent_span_id)).copied(), |s| {
        by_id.get(&hex(&s.parent_span_id)).copied()
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
