//! Admin routes that act on one invocation ([`crate::runtime::control`]):
//! `POST /invocations/{id}/cancel`, `/kill`, `/pause`, `/resume` (optionally
//! `{"deployment": id}`), `/retry`, and `DELETE /invocations/{id}` (purge a finished one). Each answers the
//! invocation as it stands after the change; 404 for an unknown id, 409 when its status does
//! not allow the change (with the status), 400 for a bad body.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::ingress::body_bytes;
use crate::runtime::Runtime;
use crate::runtime::control::{self, ControlError, Stop};

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NotFound(_) => ApiError::not_found(e.to_string()),
            ControlError::Refused { .. } => ApiError::conflict(e.to_string()),
            ControlError::Invalid(_) => ApiError::bad_request(e.to_string()),
            ControlError::Storage(s) => ApiError::from(s),
        }
    }
}

/// The invocation's id, status and failure as they stand now.
async fn current(runtime: &Runtime, id: &str) -> Result<Json<Value>, ApiError> {
    let Some(inv) = runtime.storage.invocation(id).await? else {
        return Err(ApiError::not_found(format!("no invocation {id:?}")));
    };
    Ok(Json(json!({
        "id": inv.id,
        "status": inv.status,
        "failure": inv.failure,
        "deploymentId": inv.deployment_id,
        "attempt": inv.attempt,
        "cancelledAt": inv.cancelled_at,
    })))
}

/// What an operator does to one invocation: `POST /invocations/{id}/{action}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Cancel,
    Kill,
    Pause,
    Resume,
    Retry,
}

impl Action {
    const ALL: [Action; 5] = [
        Action::Cancel,
        Action::Kill,
        Action::Pause,
        Action::Resume,
        Action::Retry,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Action::Cancel => "cancel",
            Action::Kill => "kill",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Retry => "retry",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.as_str() == s)
    }
}

/// The body of `POST /invocations/{id}/resume` (empty or `null`: the same deployment).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Resume {
    deployment: Option<String>,
}

/// `POST /invocations/{id}/{action}`: the body is empty (or `null`), except resume's.
pub(super) async fn act(
    State(runtime): State<Arc<Runtime>>,
    Path((id, action)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let Some(action) = Action::parse(&action) else {
        return Err(ApiError::not_found(format!(
            "no action {action:?} on an invocation: cancel, kill, pause, resume or retry"
        )));
    };
    let body = body_bytes(body)?;
    let resume: Option<Resume> = if body.is_empty() {
        None
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    if resume.is_some() && action != Action::Resume {
        return Err(ApiError::bad_request(format!(
            "{} takes no body (only resume takes {{\"deployment\": id}})",
            action.as_str()
        )));
    }
    match action {
        Action::Cancel => control::cancel(&runtime, &id).await?,
        Action::Kill => control::stop(&runtime, &id, Stop::Kill).await?,
        Action::Pause => control::stop(&runtime, &id, Stop::Pause).await?,
        Action::Resume => {
            let deployment = resume.unwrap_or_default().deployment;
            control::resume(&runtime, &id, deployment).await?;
        }
        Action::Retry => control::retry_now(&runtime, &id).await?,
    }
    current(&runtime, &id).await
}

pub(super) async fn purge(
    State(runtime): State<Arc<Runtime>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    control::purge(&runtime, &id).await?;
    Ok(Json(json!({"id": id, "purged": true})))
}
