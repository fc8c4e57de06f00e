//! `POST /webhooks/{name}` on the ingress: a provider's event, verified on the raw bytes by the
//! endpoint's verifier before anything parses them ([`crate::webhooks`]), then one invocation of
//! the endpoint's target handler per event, created in the same transaction as the event's dedup
//! record (the idempotency key `webhook:{name}:{event id}`) before the 200 goes back. A
//! redelivered event finds its record: 200, nothing new runs. A refused request (signature,
//! token, timestamp, size, shape, or a target that is not deployed) writes nothing.
//!
//! Events still being processed are bounded ([`IngressConfig::webhook_max_pending`]): past the
//! bound a request gets 503 with `Retry-After` and writes nothing, and the provider delivers it
//! again later (they all retry a non-2xx), instead of the host queueing without end.
//!
//! [`IngressConfig::webhook_max_pending`]: super::ingress::IngressConfig::webhook_max_pending

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use super::ApiError;
use super::error::wrong_method;
use crate::runtime::Runtime;
use crate::runtime::start::{Target, new_invocation, spawn_holding};
use crate::storage::{Created, now_ms};
use crate::webhooks::endpoint::Endpoint;

#[derive(Clone)]
struct Webhooks {
    runtime: Arc<Runtime>,
    endpoints: Arc<BTreeMap<String, Endpoint>>,
    /// How long an event id is remembered (a redelivery within it is not processed again).
    retention: Duration,
    /// One permit per event accepted and not yet processed.
    pending: Arc<Semaphore>,
}

pub fn router(
    runtime: Arc<Runtime>,
    endpoints: &[Endpoint],
    retention: Duration,
    max_pending: usize,
    max_body_bytes: usize,
) -> Router {
    let endpoints = endpoints
        .iter()
        .map(|e| (e.name.clone(), e.clone()))
        .collect();
    Router::new()
        .route("/webhooks/{name}", post(receive).fallback(wrong_method))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(Webhooks {
            runtime,
            endpoints: Arc::new(endpoints),
            retention,
            pending: Arc::new(Semaphore::new(max_pending.max(1))),
        })
}

async fn receive(
    State(hooks): State<Webhooks>,
    Path(name): Path<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Some(endpoint) = hooks.endpoints.get(&name) else {
        return Err(ApiError::not_found(format!(
            "no webhook endpoint {name:?} (configured: {})",
            hooks
                .endpoints
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let body = super::ingress::body_bytes(body)?;
    endpoint
        .verify(
            peer.map(|Extension(ConnectInfo(addr))| addr.ip()),
            &headers,
            query.as_deref(),
            &body,
            now_ms() / 1000,
        )
        .map_err(|refusal| {
            let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
            tracing::warn!(endpoint = %name, %refusal, "webhook refused");
            ApiError::new(status, refusal.code(), format!("webhook {name}: {refusal}"))
        })?;
    let events = endpoint
        .events(&body)
        .map_err(|e| ApiError::bad_request(format!("webhook {name}: {e}")))?;
    let count = u32::try_from(events.len()).unwrap_or(u32::MAX);
    let Ok(mut permits) = hooks.pending.clone().try_acquire_many_owned(count) else {
        tracing::warn!(endpoint = %name, events = count, "webhook refused: too many events pending");
        return Ok(busy(&name));
    };

    // Every invocation is built (the target checked) before the first is written.
    let registry = hooks.runtime.registry();
    let retention = i64::try_from(hooks.retention.as_millis()).unwrap_or(i64::MAX);
    let mut created = Vec::with_capacity(events.len());
    for event in events {
        let target = Target {
            service: endpoint.service.clone(),
            key: None,
            handler: endpoint.handler.clone(),
        };
        let dedup = format!("webhook:{name}:{}", event.id);
        let (new, _) = new_invocation(
            &registry,
            target,
            event.body,
            Some((dedup, retention)),
            None,
        )
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "target_unavailable",
                format!("webhook {name}: its target cannot take events now: {e}"),
            )
        })?;
        created.push((event.id, new));
    }
    drop(registry);

    let (mut accepted, mut duplicates) = (Vec::new(), Vec::new());
    for (event_id, new) in created {
        match hooks.runtime.storage.create_invocation(&new).await? {
            Created::New(invocation) => {
                accepted.push(json!({"eventId": event_id, "invocationId": invocation.id}));
                // Runs to its end whatever the sender does next, in the request's trace; its
                // permit goes with it.
                spawn_holding(&hooks.runtime, invocation, permits.split(1));
            }
            Created::Existing(existing) => {
                duplicates.push(json!({"eventId": event_id, "invocationId": existing.id}));
            }
        }
    }
    Ok(axum::Json(json!({
        "accepted": accepted,
        "duplicates": duplicates,
    }))
    .into_response())
}

/// 503 with `Retry-After`: the provider sends the event again later.
fn busy(name: &str) -> Response {
    let mut response = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        format!("webhook {name}: too many events are being processed; retry later"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
