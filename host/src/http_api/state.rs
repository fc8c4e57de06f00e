//! The state of one key of a keyed object, for the operator: `GET /state/{service}/{key}` (its
//! entries and the latest audit records), `PUT /state/{service}/{key}/{name}` with
//! `{"value": <json>, "reason": "..."}` and `DELETE /state/{service}/{key}/{name}?reason=...`.
//! An edit is refused (409, nothing written) while an unfinished invocation of the key exists,
//! and recorded in the audit with the value before and after.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ingress::body_bytes;
use super::{ApiError, bytes_to_json};
use crate::bindings::handler::ServiceKind;
use crate::runtime::Runtime;
use crate::storage::{StateEdit, StateEdited, now_ms};

/// The most state entries a view shows.
const MAX_STATE_ENTRIES: u32 = 1000;
/// The audit records a view shows, newest first.
const AUDIT_SHOWN: u32 = 20;
/// The largest value an operator may write, encoded.
const MAX_VALUE_BYTES: usize = 1 << 20;
/// The longest entry name (as a guest's) and reason.
const MAX_NAME_BYTES: usize = 1024;
const MAX_REASON_BYTES: usize = 1024;

/// `service` is a deployed keyed object.
fn keyed(runtime: &Runtime, service: &str) -> Result<(), ApiError> {
    match runtime.registry().service(service) {
        None => Err(ApiError::not_found(format!("no service {service:?}"))),
        Some((_, info)) if info.kind != ServiceKind::KeyedObject => Err(ApiError::bad_request(
            format!("{service} is a plain service: it has no state"),
        )),
        Some(_) => Ok(()),
    }
}

/// `GET /state/{service}/{key}`: at most [`MAX_STATE_ENTRIES`] entries, each value as JSON (or
/// text), `truncated` when there are more, and the latest edits.
pub(super) async fn get(
    State(runtime): State<Arc<Runtime>>,
    Path((service, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    keyed(&runtime, &service)?;
    view(&runtime, &service, &key).await.map(Json)
}

async fn view(runtime: &Runtime, service: &str, key: &str) -> Result<Value, ApiError> {
    let mut entries = runtime
        .storage
        .state_entries(service, key, MAX_STATE_ENTRIES + 1)
        .await?;
    let truncated = entries.len() > MAX_STATE_ENTRIES as usize;
    entries.truncate(MAX_STATE_ENTRIES as usize);
    let state: serde_json::Map<String, Value> = entries
        .into_iter()
        .map(|(name, value)| (name, bytes_to_json(&value)))
        .collect();
    let audit: Vec<Value> = runtime
        .storage
        .state_audit(service, key, AUDIT_SHOWN)
        .await?
        .into_iter()
        .map(|record| {
            json!({
                "name": record.name,
                "before": record.before.as_deref().map(bytes_to_json),
                "after": record.after.as_deref().map(bytes_to_json),
                "reason": record.reason,
                "at": record.at,
            })
        })
        .collect();
    Ok(json!({
        "service": service,
        "key": key,
        "state": state,
        "truncated": truncated,
        "audit": audit,
    }))
}

/// The body of a `PUT`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Put {
    value: Value,
    reason: String,
}

/// The query of a `DELETE`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Delete {
    reason: String,
}

pub(super) async fn put(
    State(runtime): State<Arc<Runtime>>,
    Path((service, key, name)): Path<(String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body_bytes(body)?;
    let put: Put = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"value\": <json>, \"reason\": \"why\"}}: {e}"
        ))
    })?;
    let value = serde_json::to_vec(&put.value).map_err(ApiError::internal)?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(ApiError::bad_request(format!(
            "a value of {} bytes is more than the {MAX_VALUE_BYTES} an edit may write",
            value.len()
        )));
    }
    edit(&runtime, service, key, name, Some(value), put.reason).await
}

pub(super) async fn delete(
    State(runtime): State<Arc<Runtime>>,
    Path((service, key, name)): Path<(String, String, String)>,
    query: Result<Query<Delete>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(delete) = query.map_err(|e| {
        ApiError::bad_request(format!("expected ?reason=why (and nothing else): {e}"))
    })?;
    edit(&runtime, service, key, name, None, delete.reason).await
}

async fn edit(
    runtime: &Runtime,
    service: String,
    key: String,
    name: String,
    value: Option<Vec<u8>>,
    reason: String,
) -> Result<Json<Value>, ApiError> {
    keyed(runtime, &service)?;
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(ApiError::bad_request(format!(
            "a state name has 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON_BYTES {
        return Err(ApiError::bad_request(format!(
            "say why in `reason` (1 to {MAX_REASON_BYTES} bytes): it goes into the audit"
        )));
    }
    let edit = StateEdit {
        service,
        key,
        name,
        value,
        reason: reason.to_string(),
        at: now_ms(),
    };
    match runtime.storage.edit_state(&edit).await? {
        StateEdited::Applied => {
            tracing::info!(service = %edit.service, key = %edit.key, name = %edit.name,
                reason = %edit.reason, cleared = edit.value.is_none(), "state edited by the operator");
            view(runtime, &edit.service, &edit.key).await.map(Json)
        }
        StateEdited::Busy(id) => Err(ApiError::conflict(format!(
            "invocation {id} of {}/{} is unfinished and may use this state: wait for it, or \
             cancel or kill it, then edit",
            edit.service, edit.key
        ))),
    }
}
