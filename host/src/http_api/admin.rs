//! Admin API (default 127.0.0.1:9070): invocations with their journals, deployments, services.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

use super::error::{no_route, wrong_method};
use super::{ApiError, bytes_to_json};
use crate::runtime::{DeployError, DeploymentKind, Runtime, deploy};
use crate::storage::{InvocationFilter, InvocationStatus};

#[derive(Clone)]
struct Admin {
    runtime: Arc<Runtime>,
}

/// Largest component accepted by `POST /deployments`.
pub const MAX_COMPONENT_BYTES: usize = 20 << 20;

pub fn router(runtime: Arc<Runtime>) -> Router {
    Router::new()
        .route("/health", get(health).fallback(wrong_method))
        .route("/invocations", get(list_invocations).fallback(wrong_method))
        .route(
            "/invocations/{id}",
            get(get_invocation).fallback(wrong_method),
        )
        .route(
            "/deployments",
            get(list_deployments)
                .post(create_deployment)
                .fallback(wrong_method),
        )
        .route("/services", get(list_services).fallback(wrong_method))
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES))
        .with_state(Admin { runtime })
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn list_invocations(
    State(admin): State<Admin>,
    Query(filter): Query<InvocationFilter>,
) -> Result<Json<Value>, ApiError> {
    if let Some(status) = &filter.status
        && InvocationStatus::parse(status).is_none()
    {
        return Err(ApiError::bad_request(format!(
            "unknown status {status:?}: use running, succeeded or failed"
        )));
    }
    let invocations = admin.runtime.storage.list_invocations(&filter).await?;
    Ok(Json(json!({ "invocations": invocations })))
}

async fn get_invocation(
    State(admin): State<Admin>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let storage = &admin.runtime.storage;
    let Some(invocation) = storage.invocation(&id).await? else {
        return Err(ApiError::not_found(format!("no invocation {id:?}")));
    };
    let journal: Vec<Value> = storage
        .journal(&id)
        .await?
        .into_iter()
        .map(|entry| {
            let detail = entry
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str::<Value>(d).ok());
            json!({
                "index": entry.index,
                "kind": entry.kind,
                "name": entry.name,
                "argsDigest": entry.args_digest,
                "result": crate::journal::preview(&bytes_to_json(&entry.result)),
                "detail": detail,
                "startedAt": entry.started_at,
                "durationUs": entry.duration_us,
            })
        })
        .collect();
    let mut body = serde_json::to_value(&invocation).map_err(ApiError::internal)?;
    body["input"] = bytes_to_json(&invocation.input);
    body["output"] = invocation
        .output
        .as_deref()
        .map(bytes_to_json)
        .unwrap_or(Value::Null);
    body["journal"] = Value::Array(journal);
    Ok(Json(body))
}

fn deployment_json(d: &crate::runtime::Deployment, active: bool) -> Value {
    json!({
        "id": d.id,
        "kind": d.kind.kind_str(),
        "name": d.kind.name(),
        "size": d.size,
        "createdAt": d.created_at,
        "active": active,
        "service": match &d.kind {
            DeploymentKind::Service(info) => serde_json::to_value(info).unwrap_or(Value::Null),
            DeploymentKind::Provider(_) => Value::Null,
        },
    })
}

async fn list_deployments(State(admin): State<Admin>) -> Json<Value> {
    let registry = admin.runtime.registry();
    let active: Vec<&String> = registry
        .services
        .values()
        .chain(registry.providers.values())
        .collect();
    let deployments: Vec<Value> = registry
        .deployments
        .values()
        .map(|d| deployment_json(d, active.contains(&&d.id)))
        .collect();
    Json(json!({ "deployments": deployments }))
}

async fn list_services(State(admin): State<Admin>) -> Json<Value> {
    let registry = admin.runtime.registry();
    let services: Vec<Value> = registry
        .services
        .keys()
        .filter_map(|name| registry.service(name))
        .map(|(d, info)| {
            json!({
                "name": info.name,
                "kind": info.kind,
                "handlers": info.handlers,
                "deploymentId": d.id,
            })
        })
        .collect();
    Json(json!({ "services": services }))
}

/// `POST /deployments` with the component bytes (`Content-Type: application/wasm`).
async fn create_deployment(
    State(admin): State<Admin>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "send the component bytes as the body (Content-Type: application/wasm)",
        ));
    }
    let before = admin.runtime.registry().deployments.len();
    let deployment = deploy(&admin.runtime, body.to_vec())
        .await
        .map_err(|e| match e {
            DeployError::Storage(s) => ApiError::from(s),
            other => ApiError::bad_request(other.to_string()),
        })?;
    let created = admin.runtime.registry().deployments.len() > before;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(deployment_json(&deployment, true))))
}
