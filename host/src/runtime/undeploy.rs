//! Removing a deployment (`DELETE /deployments/{id}`).
//!
//! Refused while a running invocation is pinned to it (as its service or as one of its
//! providers): that invocation would have nothing to replay on. Refused too for the active
//! deployment of a service or interface: new invocations would find nothing to run, so an
//! operator deploys (or re-deploys) another one first and then deletes the old one. Finished
//! invocations keep their journals; their deployment id then names a deleted deployment.

use std::sync::Arc;

use super::{Deployment, Runtime};
use crate::storage::StorageError;

/// Why a deployment was not removed.
#[derive(Debug, thiserror::Error)]
pub enum UndeployError {
    #[error("no deployment {0:?}")]
    NotFound(String),
    #[error("deployment {id} is the active {what}; deploy another one first, then delete this one")]
    Active { id: String, what: String },
    #[error(
        "deployment {id} is pinned by running invocations ({}); delete it once they finish",
        invocations.join(", ")
    )]
    Pinned {
        id: String,
        invocations: Vec<String>,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Removes deployment `id` from the host and the database; returns what was removed.
pub async fn undeploy(runtime: &Arc<Runtime>, id: &str) -> Result<Arc<Deployment>, UndeployError> {
    let active = |runtime: &Runtime| -> Result<(), UndeployError> {
        let registry = runtime.registry.read().unwrap_or_else(|p| p.into_inner());
        let deployment = registry
            .deployments
            .get(id)
            .ok_or_else(|| UndeployError::NotFound(id.to_string()))?;
        if registry.is_active(id) {
            let what = match &deployment.kind {
                super::DeploymentKind::Service(info) => {
                    format!("deployment of service {}", info.name)
                }
                super::DeploymentKind::Provider { .. } => {
                    format!("implementation of {}", registry.active_for(id).join(", "))
                }
            };
            return Err(UndeployError::Active {
                id: id.to_string(),
                what,
            });
        }
        Ok(())
    };
    active(runtime)?;
    // Only active deployments get new pins, so once this one is inactive and has no running
    // invocation, none can appear unless it is activated again, which the check under the
    // write lock below catches.
    let pinned = runtime.storage.running_invocations_pinned_to(id, 5).await?;
    if !pinned.is_empty() {
        return Err(UndeployError::Pinned {
            id: id.to_string(),
            invocations: pinned,
        });
    }
    let removed = {
        let mut registry = runtime.registry.write().unwrap_or_else(|p| p.into_inner());
        if registry.is_active(id) {
            None
        } else {
            Arc::make_mut(&mut registry).remove(id)
        }
    };
    let Some(removed) = removed else {
        // Activated (or removed) meanwhile: report it as it is now.
        active(runtime)?;
        return Err(UndeployError::NotFound(id.to_string()));
    };
    runtime.storage.delete_deployment(id).await?;
    runtime
        .retry_safety
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|key, _| !key.starts_with(&format!("{id}/")));
    tracing::info!(id, kind = removed.kind.kind_str(), name = %removed.kind.name(), "deployment deleted");
    Ok(removed)
}
