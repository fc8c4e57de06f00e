//! Admin API (default 127.0.0.1:9070): invocations with their journals, deployments (see
//! [`deployments`]), services. Every error is an [`ApiError`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use super::access::{AdminAccess, Guard};
use super::error::{no_route, wrong_method};
use super::{ApiError, bytes_to_json, control, deployments, state, ui};
use crate::journal::{Entry, EntryKind};
use crate::runtime::Runtime;
use crate::storage::{Invocation, InvocationFilter, InvocationStatus};

/// Admin API settings.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub access: AdminAccess,
    /// The only directory `{"path": …}` / `file://` deployments may read from (`None`: the
    /// bytes must be sent).
    pub deploy_dir: Option<PathBuf>,
}

/// The admin routes, behind the token and host checks ([`super::access`]); `bound` is the
/// listener's address.
pub fn router(runtime: Arc<Runtime>, config: AdminConfig, bound: SocketAddr) -> Router {
    let max_component_bytes = runtime.settings.max_component_bytes;
    let guard = Arc::new(Guard::admin(&config.access, bound));
    Router::new()
        .route("/health", get(health).fallback(wrong_method))
        .route("/invocations", get(list_invocations).fallback(wrong_method))
        .route(
            "/invocations/{id}",
            get(get_invocation)
                .delete(control::purge)
                .fallback(wrong_method),
        )
        .route(
            "/invocations/{id}/{action}",
            post(control::act).fallback(wrong_method),
        )
        .route(
            "/deployments",
            get(deployments::list)
                .post(deployments::create)
                .fallback(wrong_method),
        )
        .route(
            "/deployments/{id}",
            get(deployments::get_one)
                .delete(deployments::delete)
                .fallback(wrong_method),
        )
        .route("/services", get(list_services).fallback(wrong_method))
        .route("/metrics", get(metrics).fallback(wrong_method))
        .route("/ui", get(ui::index).fallback(wrong_method))
        .route("/ui/", get(ui::index).fallback(wrong_method))
        .route("/ui/app.js", get(ui::script).fallback(wrong_method))
        .route("/ui/app.css", get(ui::style).fallback(wrong_method))
        .route(
            "/state/{service}/{key}",
            get(state::get).fallback(wrong_method),
        )
        .route(
            "/state/{service}/{key}/{name}",
            put(state::put).delete(state::delete).fallback(wrong_method),
        )
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(max_component_bytes))
        .layer(axum::Extension(Arc::new(config)))
        .layer(axum::middleware::from_fn_with_state(
            guard,
            super::access::guard,
        ))
        .with_state(runtime)
}

/// Prometheus metrics ([`crate::metrics`]), as OpenMetrics text.
async fn metrics(State(runtime): State<Arc<Runtime>>) -> impl axum::response::IntoResponse {
    let text = runtime
        .metrics
        .render(runtime.running_attempts(), runtime.controls.waiting());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

/// Liveness, and the invocation attempts running now (each holding a component instance;
/// suspended and waiting invocations hold none).
async fn health(State(runtime): State<Arc<Runtime>>) -> Json<Value> {
    Json(json!({"status": "ok", "runningAttempts": runtime.running_attempts()}))
}

async fn list_invocations(
    State(runtime): State<Arc<Runtime>>,
    filter: Result<Query<InvocationFilter>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(filter) =
        filter.map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))?;
    if let Some(status) = &filter.status
        && InvocationStatus::parse(status).is_none()
    {
        return Err(ApiError::bad_request(format!(
            "unknown status {status:?}: use running, paused, succeeded or failed"
        )));
    }
    let invocations = runtime.storage.list_invocations(&filter).await?;
    Ok(Json(json!({ "invocations": invocations })))
}

async fn get_invocation(
    State(runtime): State<Arc<Runtime>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let storage = &runtime.storage;
    let Some(invocation) = storage.invocation(&id).await? else {
        return Err(ApiError::not_found(format!("no invocation {id:?}")));
    };
    let entries = storage.journal(&id).await?;
    let sleeping_until = sleeping_until(&invocation, &entries);
    let journal: Vec<Value> = entries
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
                "soft": entry.soft,
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
    body["sleepingUntil"] = sleeping_until.map_or(Value::Null, Value::from);
    // Waiting out a retry's backoff on this host: when the next attempt starts (retry now:
    // `POST /invocations/{id}/retry`).
    body["retryAt"] = runtime
        .controls
        .backoff_until(&id)
        .map_or(Value::Null, Value::from);
    Ok(Json(body))
}

/// When a running invocation whose last entry is a durable sleep ending in the future wakes up
/// (Unix ms): it is suspended until then, and holds no instance.
fn sleeping_until(invocation: &Invocation, journal: &[Entry]) -> Option<i64> {
    if invocation.status != InvocationStatus::Running {
        return None;
    }
    let last = journal.last().filter(|e| e.kind == EntryKind::Timer)?;
    let until: i64 = serde_json::from_slice(&last.result).ok()?;
    (until > crate::storage::now_ms()).then_some(until)
}

async fn list_services(State(runtime): State<Arc<Runtime>>) -> Json<Value> {
    let registry = runtime.registry();
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
