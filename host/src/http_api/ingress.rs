//! Ingress (default 127.0.0.1:8080): `POST /{service}/{handler}` and
//! `POST /{service}/{key}/{handler}`. JSON in, JSON out; the invocation id comes back in
//! `x-cairn-invocation-id`. Bad requests are refused before anything is written.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use super::ApiError;
use super::error::{no_route, wrong_method};
use crate::bindings::handler::ServiceKind;
use crate::runtime::{Runtime, invoke};
use crate::storage::{NewInvocation, Outcome};

pub const INVOCATION_ID_HEADER: &str = "x-cairn-invocation-id";

#[derive(Clone)]
struct Ingress {
    runtime: Arc<Runtime>,
}

pub fn router(runtime: Arc<Runtime>, max_body_bytes: usize) -> Router {
    Router::new()
        .route(
            "/{service}/{handler}",
            post(call_service).fallback(wrong_method),
        )
        .route(
            "/{service}/{key}/{handler}",
            post(call_keyed).fallback(wrong_method),
        )
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(Ingress { runtime })
}

async fn call_service(
    State(ingress): State<Ingress>,
    Path((service, handler)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    call(&ingress.runtime, service, None, handler, &headers, body).await
}

async fn call_keyed(
    State(ingress): State<Ingress>,
    Path((service, key, handler)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    call(&ingress.runtime, service, Some(key), handler, &headers, body).await
}

async fn call(
    runtime: &Arc<Runtime>,
    service: String,
    key: Option<String>,
    handler: String,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let registry = runtime.registry();
    let Some((deployment, info)) = registry.service(&service) else {
        return Err(ApiError::not_found(format!("unknown service {service:?}")));
    };
    match (info.kind, &key) {
        (ServiceKind::KeyedObject, None) => {
            return Err(ApiError::bad_request(format!(
                "{service} is a keyed object: call POST /{service}/{{key}}/{handler}"
            )));
        }
        (ServiceKind::Service, Some(_)) => {
            return Err(ApiError::not_found(format!(
                "{service} is a service without keys: call POST /{service}/{{handler}}"
            )));
        }
        _ => {}
    }
    if let Some(key) = &key
        && key.is_empty()
    {
        return Err(ApiError::bad_request("the object key must not be empty"));
    }
    if !info.handlers.iter().any(|h| h.name == handler) {
        return Err(ApiError::not_found(format!(
            "service {service} has no handler {handler:?}"
        )));
    }
    let input = read_body(headers, body)?;
    let new = NewInvocation {
        id: new_invocation_id(),
        service,
        handler,
        key,
        input: input.to_vec(),
        deployment_id: deployment.id.clone(),
        providers: registry.active_providers(),
        idempotency_key: None,
    };
    drop(registry);
    let invocation = runtime.storage.create_invocation(&new).await?;
    let id = invocation.id.clone();
    // The invocation runs to its end even if the caller goes away.
    let task_runtime = runtime.clone();
    let outcome = tokio::spawn(async move { invoke(&task_runtime, invocation).await })
        .await
        .map_err(ApiError::internal)?;
    Ok(respond(&id, outcome))
}

/// Checks the body: JSON (or empty), right content type, within the size limit.
fn read_body(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, "payload_too_large", "request body is larger than the limit")
        } else {
            ApiError::bad_request(format!("could not read the request body: {rejection}"))
        }
    })?;
    if body.is_empty() {
        return Ok(body);
    }
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let content_type = content_type.to_str().unwrap_or_default().to_ascii_lowercase();
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
            let body = if output.is_empty() { b"null".to_vec() } else { output };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                body,
            )
                .into_response()
        }
        Outcome::Failed(failure) => {
            let status = StatusCode::from_u16(failure.code)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = if failure.kind == "terminal" { "terminal_failure" } else { "retries_exhausted" };
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
    response.headers_mut().insert(INVOCATION_ID_HEADER, id_header);
    response
}

/// Time-ordered, unique invocation ids: `inv_` + UUIDv7.
pub fn new_invocation_id() -> String {
    format!("inv_{}", uuid::Uuid::now_v7().simple())
}
