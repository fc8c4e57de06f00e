//! Ingress routes for durable promises: `POST /promises/{id}/resolve` (the body, any JSON
//! value, is the value the waiter gets), `POST /promises/{id}/reject` (`{"reason": "..."}`) and
//! `GET /promises/{id}`. A promise is completed once: a second completion is a 409 and the first
//! stands; an unknown id is a 404. Resolving before anyone waits works: the value is kept.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::error::wrong_method;
use super::ingress::read_body;
use crate::capabilities::promise::complete;
use crate::runtime::Runtime;
use crate::storage::{PromiseCompletion, PromiseOutcome};

/// The longest id accepted (ids are `prom_` + 32 hex digits).
const MAX_ID: usize = 64;

/// The promise routes, with their own state, merged into the ingress.
pub(super) fn router(runtime: Arc<Runtime>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/promises/{id}", get(get_one).fallback(wrong_method))
        .route(
            "/promises/{id}/resolve",
            post(resolve).fallback(wrong_method),
        )
        .route("/promises/{id}/reject", post(reject).fallback(wrong_method))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(runtime)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rejection {
    reason: String,
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_ID {
        return Err(ApiError::not_found(format!("no promise {id:?}")));
    }
    Ok(())
}

async fn resolve(
    State(runtime): State<Arc<Runtime>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    check_id(&id)?;
    let body = read_body(&headers, body)?;
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "the body is the promise's value: send a JSON value (`null` for none)",
        ));
    }
    finish(&runtime, &id, PromiseOutcome::Resolved(body.to_vec())).await
}

async fn reject(
    State(runtime): State<Arc<Runtime>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    check_id(&id)?;
    let body = read_body(&headers, body)?;
    let rejection: Rejection = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"reason\": \"...\"}}: {e}")))?;
    finish(&runtime, &id, PromiseOutcome::Rejected(rejection.reason)).await
}

async fn finish(
    runtime: &Runtime,
    id: &str,
    outcome: PromiseOutcome,
) -> Result<Json<Value>, ApiError> {
    let status = status_of(Some(&outcome));
    match complete(runtime, id, outcome).await? {
        PromiseCompletion::Completed => Ok(Json(json!({"id": id, "status": status}))),
        PromiseCompletion::NotFound => Err(ApiError::not_found(format!("no promise {id:?}"))),
        PromiseCompletion::AlreadyCompleted(first) => Err(ApiError::conflict(format!(
            "promise {id} was {} already; the first completion stands",
            status_of(Some(&first))
        ))),
    }
}

async fn get_one(
    State(runtime): State<Arc<Runtime>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_id(&id)?;
    let Some(outcome) = runtime.storage.promise(&id).await? else {
        return Err(ApiError::not_found(format!("no promise {id:?}")));
    };
    let mut body = json!({"id": id, "status": status_of(outcome.as_ref())});
    match outcome {
        Some(PromiseOutcome::Resolved(value)) => {
            body["value"] = serde_json::from_slice(&value).unwrap_or(Value::Null);
        }
        Some(PromiseOutcome::Rejected(reason)) => body["reason"] = json!(reason),
        None => {}
    }
    Ok(Json(body))
}

fn status_of(outcome: Option<&PromiseOutcome>) -> &'static str {
    match outcome {
        None => "pending",
        Some(PromiseOutcome::Resolved(_)) => "resolved",
        Some(PromiseOutcome::Rejected(_)) => "rejected",
    }
}
