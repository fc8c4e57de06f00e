//! Admin routes for deployments: `GET /deployments`, `POST /deployments`,
//! `GET /deployments/{id}`, `DELETE /deployments/{id}`.
//!
//! `POST /deployments` takes the component as the body (`Content-Type: application/wasm`; limits
//! in the query, `?memoryMib=16&cpuMs=1000&wallMs=30000`; a provider's own settings as JSON in
//! the `X-Cairn-Provider-Settings` header) or as JSON naming a file the host reads, only under
//! the configured deploy dir (`CAIRN_DEPLOY_DIR`; 403 without one) and at most the size cap:
//! `{"uri": "file:///abs/path.wasm"}` or `{"path": "/abs/path.wasm"}`, with optional `"limits"`
//! and, for a provider, `"config"`, `"allow"`, `"allowPrivate"`, `"secrets"` (names of host
//! variables the operator made grantable; values never travel here) and `"inheritSecrets"`.
//! A body of any other type is a 415 (a browser's cross-site form post sends none). 201 with
//! the new deployment, 200 with the existing one for bytes already deployed (made active
//! again), 400 naming what is wrong with the component or its settings, 413 past the size cap.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;

use super::ApiError;
use super::admin::AdminConfig;
use crate::runtime::{
    DeployError, Deployment, DeploymentKind, Limits, ProviderOverrides, Registry, Runtime,
    UndeployError, deploy, undeploy,
};

/// The header carrying a provider's own settings when the body is the component's bytes.
pub const SETTINGS_HEADER: &str = "x-cairn-provider-settings";

/// A deployment as the admin API shows it.
pub(super) fn deployment_json(runtime: &Runtime, d: &Deployment, registry: &Registry) -> Value {
    let active = registry.is_active(&d.id);
    let effective = runtime.effective_limits(&d.limits);
    json!({
        "id": d.id,
        "kind": d.kind.kind_str(),
        "name": d.kind.name(),
        // The name the component gives itself (its `component-name` section), if any.
        "componentName": d.component_name,
        "size": d.size,
        "createdAt": d.created_at,
        "active": active,
        "limits": d.limits,
        "effectiveLimits": {
            "memoryMib": effective.memory_bytes >> 20,
            "cpuMs": effective.cpu.as_millis() as u64,
            "wallMs": effective.wall.as_millis() as u64,
        },
        "service": match &d.kind {
            DeploymentKind::Service(info) => serde_json::to_value(info).unwrap_or(Value::Null),
            DeploymentKind::Provider { .. } => Value::Null,
        },
        // A provider's exported interfaces (`null` for a service), and those it is the active
        // implementation of.
        "exports": match &d.kind {
            DeploymentKind::Provider { exports } => json!(exports),
            DeploymentKind::Service(_) => Value::Null,
        },
        "activeFor": registry.active_for(&d.id),
        // As given: secret names only (`null`: the host's defaults for what it exports).
        "providerSettings": d.own.as_ref().map(|own| json!(own.given)),
    })
}

pub(super) async fn list(State(runtime): State<Arc<Runtime>>) -> Json<Value> {
    let registry = runtime.registry();
    let deployments: Vec<Value> = registry
        .deployments
        .values()
        .map(|d| deployment_json(&runtime, d, &registry))
        .collect();
    Json(json!({ "deployments": deployments }))
}

pub(super) async fn get_one(
    State(runtime): State<Arc<Runtime>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let registry = runtime.registry();
    let deployment = registry
        .deployments
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no deployment {id:?}")))?;
    let mut body = deployment_json(&runtime, deployment, &registry);
    body["runningInvocations"] = json!(
        runtime
            .storage
            .running_invocations_pinned_to(&id, 100)
            .await?
    );
    Ok(Json(body))
}

pub(super) async fn delete(
    State(runtime): State<Arc<Runtime>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let removed = undeploy(&runtime, &id).await.map_err(|e| match e {
        UndeployError::NotFound(_) => ApiError::not_found(e.to_string()),
        UndeployError::Active { .. } | UndeployError::Pinned { .. } => {
            ApiError::conflict(e.to_string())
        }
        UndeployError::Storage(s) => ApiError::from(s),
    })?;
    Ok(Json(json!({
        "id": removed.id,
        "kind": removed.kind.kind_str(),
        "name": removed.kind.name(),
        "deleted": true,
    })))
}

/// `POST /deployments` with JSON: a file the host reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FromFile {
    uri: Option<String>,
    path: Option<String>,
    limits: Option<Limits>,
    config: Option<BTreeMap<String, String>>,
    allow: Option<Vec<String>>,
    #[serde(rename = "allowPrivate")]
    allow_private: Option<Vec<String>>,
    secrets: Option<Vec<String>>,
    #[serde(rename = "inheritSecrets", default)]
    inherit_secrets: bool,
}

impl FromFile {
    /// The provider settings given, if any.
    fn provider(&mut self) -> Option<ProviderOverrides> {
        if self.config.is_none()
            && self.allow.is_none()
            && self.allow_private.is_none()
            && self.secrets.is_none()
            && !self.inherit_secrets
        {
            return None;
        }
        Some(ProviderOverrides {
            config: self.config.take().unwrap_or_default(),
            allow: self.allow.take().unwrap_or_default(),
            allow_private: self.allow_private.take().unwrap_or_default(),
            secrets: self.secrets.take().unwrap_or_default(),
            inherit_secrets: self.inherit_secrets,
        })
    }
}

pub(super) async fn create(
    State(runtime): State<Arc<Runtime>>,
    axum::Extension(config): axum::Extension<Arc<AdminConfig>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let max = runtime.settings.max_component_bytes;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(format!("the component is larger than {max} bytes"))
        } else {
            ApiError::bad_request(format!("could not read the request body: {rejection}"))
        }
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    let (bytes, limits, provider) = match content_type.as_deref() {
        Some("application/json") => {
            let mut request: FromFile = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
            let path = file_path(&request)?;
            let provider = request.provider();
            let bytes = read_component(config.deploy_dir.as_deref(), &path, max).await?;
            (bytes, request.limits, provider)
        }
        // Never without a type: a browser's cross-site "simple" request may send none.
        Some("application/wasm" | "application/octet-stream") => {
            if body.is_empty() {
                return Err(ApiError::bad_request(
                    "send the component bytes as the body (Content-Type: application/wasm), or \
                     JSON {\"uri\": \"file:///path.wasm\"} (Content-Type: application/json)",
                ));
            }
            let limits = query
                .filter(|q| !q.is_empty())
                .map(|q| serde_urlencoded::from_str::<Limits>(&q))
                .transpose()
                .map_err(|e| ApiError::bad_request(format!("invalid limits in the query: {e}")))?;
            let provider = headers
                .get(SETTINGS_HEADER)
                .map(|v| serde_json::from_slice::<ProviderOverrides>(v.as_bytes()))
                .transpose()
                .map_err(|e| {
                    ApiError::bad_request(format!("invalid {SETTINGS_HEADER} header: {e}"))
                })?;
            (body.to_vec(), limits, provider)
        }
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "Content-Type {}: use application/wasm (the bytes) or application/json",
                    other.map_or("missing".to_string(), |t| format!("{t:?}"))
                ),
            ));
        }
    };
    let deployed = deploy(&runtime, bytes, limits, provider)
        .await
        .map_err(|e| match e {
            DeployError::Storage(s) => ApiError::from(s),
            DeployError::TooLarge { .. } => too_large(e.to_string()),
            other => ApiError::bad_request(other.to_string()),
        })?;
    let status = if deployed.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(deployment_json(
            &runtime,
            &deployed.deployment,
            &runtime.registry(),
        )),
    ))
}

fn too_large(message: String) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
}

/// The absolute path named by `uri` (`file://` only) or `path`.
fn file_path(request: &FromFile) -> Result<PathBuf, ApiError> {
    let path = match (&request.uri, &request.path) {
        (Some(uri), None) => {
            let url = reqwest::Url::parse(uri)
                .map_err(|e| ApiError::bad_request(format!("uri {uri:?}: {e}")))?;
            if url.scheme() != "file" {
                return Err(ApiError::bad_request(format!(
                    "uri {uri:?}: only file:// URIs are supported (or send the bytes)"
                )));
            }
            url.to_file_path().map_err(|()| {
                ApiError::bad_request(format!("uri {uri:?} does not name a local file"))
            })?
        }
        (None, Some(path)) => PathBuf::from(path),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of \"uri\" (file:///abs/path.wasm) or \"path\"",
            ));
        }
    };
    if !path.is_absolute() {
        return Err(ApiError::bad_request(format!(
            "{} is not an absolute path",
            path.display()
        )));
    }
    Ok(path)
}

/// Reads the component at `path`, which must be a file under `dir` (after symlinks), reading
/// at most `max` bytes. Whatever is wrong with a path outside `dir` (missing, a directory, a
/// device, a symlink out), the answer is the same, so it tells nothing about the file.
async fn read_component(
    dir: Option<&FsPath>,
    path: &FsPath,
    max: usize,
) -> Result<Vec<u8>, ApiError> {
    let Some(dir) = dir else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "deploy_by_path_off",
            "this host reads no component files: send the bytes (Content-Type: \
             application/wasm), or start it with --deploy-dir DIR",
        ));
    };
    let unavailable = || {
        ApiError::bad_request(format!(
            "no readable component file {} under the deploy dir {}",
            path.display(),
            dir.display()
        ))
    };
    // Lexically first (no `..`), then where symlinks really lead.
    let lexical = path
        .components()
        .all(|c| !matches!(c, std::path::Component::ParentDir));
    if !lexical || !path.starts_with(dir) {
        return Err(unavailable());
    }
    let real = tokio::fs::canonicalize(path)
        .await
        .map_err(|_| unavailable())?;
    let real_dir = tokio::fs::canonicalize(dir)
        .await
        .map_err(|_| unavailable())?;
    if !real.starts_with(&real_dir) {
        return Err(unavailable());
    }
    let file = tokio::fs::File::open(&real)
        .await
        .map_err(|_| unavailable())?;
    let meta = file.metadata().await.map_err(|_| unavailable())?;
    if !meta.is_file() {
        return Err(unavailable());
    }
    // Never more than the limit, whatever the file says its size is.
    let mut bytes = Vec::new();
    file.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|_| unavailable())?;
    if bytes.len() > max {
        return Err(too_large(format!(
            "{} is larger than {max} bytes, the most this host accepts",
            path.display()
        )));
    }
    Ok(bytes)
}
