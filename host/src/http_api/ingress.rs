//! Ingress (default 127.0.0.1:8080): `POST /{service}/{handler}` and
//! `POST /{service}/{key}/{handler}` (add `/send` to return at once with the invocation id, and
//! `?delay=30s` or `?delay=PT5M` to start it later),
//! `GET /invocations/{id}/output`, and the promise routes (`/promises/{id}/resolve`, see
//! [`super::promises`]), and the webhook endpoints (`/webhooks/{name}`, see
//! [`super::webhooks`]). JSON in, JSON out; the invocation id comes back in
//! `x-cairn-invocation-id`. Bad requests are refused before anything is written. Internal
//! handlers ([`IngressConfig::internal_handlers`]) are refused with 403.

use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::ApiError;
use super::access::{AccessToken, Guard};
use super::admission::Admission;
use super::error::{no_route, wrong_method};
use crate::bindings::handler::ServiceKind;
use crate::runtime::Runtime;
use crate::runtime::start::{Target, new_invocation, spawn_holding};
use crate::storage::{Created, FailureKind, InvocationStatus, Outcome, now_ms};
use crate::webhooks::endpoint::Endpoint;

pub use crate::runtime::start::new_invocation_id;

pub const INVOCATION_ID_HEADER: &str = "x-cairn-invocation-id";

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// Ingress settings.
#[derive(Debug, Clone)]
pub struct IngressConfig {
    pub max_body_bytes: usize,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_retention: Duration,
    /// How long `GET /invocations/{id}/output` waits for a running invocation.
    pub output_wait: Duration,
    /// The webhook endpoints (`POST /webhooks/{name}`, see [`super::webhooks`]).
    pub webhooks: Vec<Endpoint>,
    /// How long a webhook event id is remembered: a redelivery within it is not processed
    /// again. It outlasts the providers' redelivery windows (Stripe: 3 days of retries, 30 days
    /// for a manual resend).
    pub webhook_retention: Duration,
    /// Webhook events accepted and still being processed, at most; past it a webhook gets 503
    /// with `Retry-After` (the provider redelivers).
    pub webhook_max_pending: usize,
    /// Handlers only other components (or a webhook endpoint) may invoke, as `Service/Handler`
    /// or `Service/*`: the ingress refuses them with 403. Every webhook target is one.
    pub internal_handlers: Vec<String>,
    /// The bearer token every ingress request but a webhook's must carry (`None`: open, for a
    /// private network; see [`super::access`]).
    pub token: Option<AccessToken>,
    /// Invocations queued (or running) per object key, at most; past it: 429.
    pub max_queued_per_key: usize,
    /// `/send` invocations accepted and not finished, at most; past it: 429.
    pub max_pending_sends: usize,
}

impl IngressConfig {
    /// Whether the ingress must refuse `target` (see [`IngressConfig::internal_handlers`]).
    fn is_internal(&self, target: &Target) -> bool {
        let named = |pattern: &str| {
            pattern.split_once('/').is_some_and(|(service, handler)| {
                service == target.service && (handler == "*" || handler == target.handler)
            })
        };
        self.internal_handlers.iter().any(|p| named(p))
            || self
                .webhooks
                .iter()
                .any(|e| e.service == target.service && e.handler == target.handler)
    }
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            max_body_bytes: 1 << 20,
            idempotency_retention: Duration::from_secs(24 * 3600),
            output_wait: Duration::from_secs(60),
            webhooks: Vec::new(),
            webhook_retention: Duration::from_secs(30 * 24 * 3600),
            webhook_max_pending: 1024,
            internal_handlers: Vec::new(),
            token: None,
            max_queued_per_key: 1000,
            max_pending_sends: 10_000,
        }
    }
}

#[derive(Clone)]
struct Ingress {
    runtime: Arc<Runtime>,
    config: Arc<IngressConfig>,
    admission: Arc<Admission>,
}

/// Whether the caller waits for the result or only for acceptance (`/send`, maybe delayed).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Call,
    Send { delay: Option<Duration> },
}

/// The longest delay `/send?delay=` accepts.
const MAX_DELAY: Duration = Duration::from_secs(365 * 24 * 3600);

/// `delay=30s`, `delay=5m`, `delay=1h30m` (humantime) or ISO 8601 `delay=PT5M`, `PT1H30M10S`.
fn send_mode(query: Option<&str>) -> Result<Mode, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|e| ApiError::bad_request(format!("query: {e}")))?;
    let mut delay = None;
    for (name, value) in pairs {
        match name.as_str() {
            "delay" => delay = Some(parse_delay(&value)?),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {other:?} (only `delay`, e.g. ?delay=30s or ?delay=PT5M)"
                )));
            }
        }
    }
    Ok(Mode::Send { delay })
}

fn parse_delay(value: &str) -> Result<Duration, ApiError> {
    let bad = |why: String| {
        ApiError::bad_request(format!(
            "delay {value:?}: {why} (e.g. 30s, 5m, 1h30m or PT5M)"
        ))
    };
    let trimmed = value.trim();
    // ISO 8601 time durations are humantime's units in upper case behind `PT`.
    let text = match trimmed
        .strip_prefix("PT")
        .or_else(|| trimmed.strip_prefix("pt"))
    {
        Some(rest) if !rest.is_empty() => rest.to_ascii_lowercase(),
        Some(_) => return Err(bad("no duration after PT".into())),
        None => trimmed.to_string(),
    };
    let delay = humantime::parse_duration(&text).map_err(|e| bad(e.to_string()))?;
    if delay > MAX_DELAY {
        return Err(bad("longer than a year".into()));
    }
    Ok(delay)
}

pub fn router(runtime: Arc<Runtime>, config: IngressConfig) -> Router {
    let max_body_bytes = config.max_body_bytes;
    let guard = Arc::new(Guard::ingress(config.token.clone()));
    let webhooks = super::webhooks::router(
        runtime.clone(),
        &config.webhooks,
        config.webhook_retention,
        config.webhook_max_pending,
        max_body_bytes,
    );
    Router::new()
        .route(
            "/invocations/{id}/output",
            get(get_output).fallback(wrong_method),
        )
        .route(
            "/{service}/{handler}",
            post(call_service).fallback(wrong_method),
        )
        .route(
            "/{service}/{key}/{handler}",
            post(call_keyed_or_send_service).fallback(wrong_method),
        )
        .route(
            "/{service}/{key}/{handler}/send",
            post(send_keyed).fallback(wrong_method),
        )
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(Ingress {
            runtime: runtime.clone(),
            admission: Admission::new(config.max_queued_per_key, config.max_pending_sends),
            config: Arc::new(config),
        })
        .merge(super::promises::router(runtime, max_body_bytes))
        .merge(webhooks)
        .layer(axum::middleware::from_fn_with_state(
            guard,
            super::access::guard,
        ))
        .layer(axum::middleware::from_fn(traced))
}

/// Runs an ingress request in its span, continuing the caller's trace (`traceparent`): the
/// invocations it starts are its children.
async fn traced(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let parent = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    let span = crate::telemetry::otel_span!(
        crate::telemetry::starts_trace(parent),
        "ingress",
        otel.name = %format_args!("{} {}", request.method(), request.uri().path()),
        http.request.method = %request.method(),
        url.path = %request.uri().path(),
        http.response.status_code = tracing::field::Empty,
    );
    crate::telemetry::continue_trace(&span, request.headers());
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

async fn call_service(
    State(ingress): State<Ingress>,
    Path((service, handler)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let target = Target {
        service,
        key: None,
        handler,
    };
    call(&ingress, target, Mode::Call, &headers, body).await
}

/// `/{service}/{key}/{handler}` on a keyed object, or `/{service}/{handler}/send` on a service.
async fn call_keyed_or_send_service(
    State(ingress): State<Ingress>,
    Path((service, key, handler)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let keyed = ingress
        .runtime
        .registry()
        .service(&service)
        .is_some_and(|(_, info)| info.kind == ServiceKind::KeyedObject);
    let (target, mode) = if !keyed && handler == "send" {
        (
            Target {
                service,
                key: None,
                handler: key,
            },
            send_mode(query.as_deref())?,
        )
    } else {
        (
            Target {
                service,
                key: Some(key),
                handler,
            },
            Mode::Call,
        )
    };
    call(&ingress, target, mode, &headers, body).await
}

async fn send_keyed(
    State(ingress): State<Ingress>,
    Path((service, key, handler)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let target = Target {
        service,
        key: Some(key),
        handler,
    };
    let mode = send_mode(query.as_deref())?;
    call(&ingress, target, mode, &headers, body).await
}

/// `GET /invocations/{id}/output`: the result, waiting for it while the invocation runs.
async fn get_output(
    State(ingress): State<Ingress>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let storage = &ingress.runtime.storage;
    if storage.invocation(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("no invocation {id:?}")));
    }
    match wait_for_outcome(&ingress.runtime, &id, ingress.config.output_wait).await? {
        Ok(outcome) => Ok(respond(&id, outcome)),
        Err(status) => Ok(accepted(&id, status.as_str())),
    }
}

async fn call(
    ingress: &Ingress,
    target: Target,
    mode: Mode,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let runtime = &ingress.runtime;
    if ingress.config.is_internal(&target) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "internal_handler",
            format!(
                "{}/{} is internal: only other components (or a verified webhook) invoke it",
                target.service, target.handler
            ),
        ));
    }
    let not_before = match mode {
        Mode::Send { delay: Some(delay) } => {
            Some(now_ms().saturating_add(delay.as_millis() as i64))
        }
        _ => None,
    };
    let idempotency_key = idempotency_key(headers)?;
    let input = read_body(headers, body)?;
    // Bounded before anything is written; held until the invocation ends.
    let ticket =
        match ingress
            .admission
            .admit(&target.service, target.key.as_deref(), mode != Mode::Call)
        {
            Ok(ticket) => ticket,
            Err(full) => return Ok(full.into_response()),
        };
    let idempotency =
        idempotency_key.map(|k| (k, ingress.config.idempotency_retention.as_millis() as i64));
    let (new, _) = new_invocation(
        &runtime.registry(),
        target,
        input.to_vec(),
        idempotency,
        not_before,
    )
    .map_err(|e| {
        if e.is_not_found() {
            ApiError::not_found(e.to_string())
        } else {
            ApiError::bad_request(e.to_string())
        }
    })?;
    let invocation = match runtime.storage.create_invocation(&new).await? {
        Created::New(invocation) => invocation,
        Created::Existing(existing) => {
            if !same_input(&existing.input, &new.input) {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    format!(
                        "Idempotency-Key {:?} was already used for {} with a different body \
                         (invocation {}); use a new key for a different request",
                        existing.idempotency_key.as_deref().unwrap_or_default(),
                        new.target(),
                        existing.id
                    ),
                ));
            }
            // The same request again: the first invocation's result, never a second run.
            if mode != Mode::Call {
                return Ok(accepted(&existing.id, existing.status.as_str()));
            }
            let wait = ingress.config.output_wait;
            return match wait_for_outcome(runtime, &existing.id, wait).await? {
                Ok(outcome) => Ok(respond(&existing.id, outcome)),
                Err(status) => Ok(accepted(&existing.id, status.as_str())),
            };
        }
    };
    let id = invocation.id.clone();
    // The invocation runs to its end even if the caller goes away.
    let task = spawn_holding(runtime, invocation, ticket);
    if mode != Mode::Call {
        return Ok(accepted(&id, "accepted"));
    }
    let outcome = task.await.map_err(ApiError::internal)?;
    Ok(respond(&id, outcome))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))?
        .trim();
    if key.is_empty() || key.len() > 255 {
        return Err(ApiError::bad_request(
            "Idempotency-Key must be 1 to 255 characters",
        ));
    }
    Ok(Some(key.to_string()))
}

/// Two bodies are the same request when they are equal as JSON (or as bytes).
fn same_input(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    match (
        serde_json::from_slice::<serde_json::Value>(a),
        serde_json::from_slice::<serde_json::Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Polls storage until invocation `id` has ended (works whichever host runs it); its status
/// when `wait` passes first, or at once when it is paused (it ends only once resumed).
async fn wait_for_outcome(
    runtime: &Runtime,
    id: &str,
    wait: Duration,
) -> Result<Result<Outcome, InvocationStatus>, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(2);
    loop {
        let Some(invocation) = runtime.storage.invocation(id).await? else {
            return Err(ApiError::not_found(format!("no invocation {id:?}")));
        };
        if let Some(outcome) = invocation.outcome() {
            return Ok(Ok(outcome));
        }
        if invocation.status == InvocationStatus::Paused || tokio::time::Instant::now() >= deadline
        {
            return Ok(Err(invocation.status));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// 202 for an invocation accepted (or still running).
fn accepted(id: &str, status: &str) -> Response {
    let mut response = (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "invocationId": id, "status": status })),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert(INVOCATION_ID_HEADER, value);
    }
    response
}

/// The body's bytes, or a 413 past the size limit (400 when it cannot be read).
pub(super) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "payload_too_large",
                "request body is larger than the limit",
            )
        } else {
            ApiError::bad_request(format!("could not read the request body: {rejection}"))
        }
    })
}

/// Checks the body: JSON (or empty), right content type, within the size limit.
pub(super) fn read_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
    let body = body_bytes(body)?;
    if body.is_empty() {
        return Ok(body);
    }
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let content_type = content_type
            .to_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("expected Content-Type application/json, got {content_type:?}"),
            ));
        }
    }
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
        return Err(ApiError::bad_request(format!("invalid JSON: {e}")));
    }
    Ok(body)
}

fn respond(id: &str, outcome: Outcome) -> Response {
    let id_header = HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("invalid"));
    let mut response = match outcome {
        Outcome::Succeeded(output) => {
            let body = if output.is_empty() {
                b"null".to_vec()
            } else {
                output
            };
            (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response()
        }
        Outcome::Failed(failure) => {
            let status = StatusCode::from_u16(failure.code)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = match failure.kind {
                FailureKind::Terminal => "terminal_failure",
                FailureKind::Diverged => "diverged",
                FailureKind::Killed => "killed",
                FailureKind::Cancelled => "cancelled",
                FailureKind::Paused => "paused",
                FailureKind::Retryable => "retries_exhausted",
            };
            (
                status,
                axum::Json(json!({
                    "error": code,
                    "message": failure.message,
                    "invocationId": id,
                })),
            )
                .into_response()
        }
    };
    response
        .headers_mut()
        .insert(INVOCATION_ID_HEADER, id_header);
    response
}
