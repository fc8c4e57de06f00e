//! Deploying a component: compile, recognise its world, link, describe, persist, activate.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::Store;
use wasmtime::component::Component;

use super::{Deployment, DeploymentKind, HostState, ProviderRole, Role, Runtime};
use crate::bindings::service::ServicePre;
use crate::storage::{DeploymentRecord, StorageError, now_ms};

const HANDLER_EXPORT: &str = "cairn:durable/handler@0.1.0";

/// Why a component was refused. All are the deployer's fault (4xx) except storage.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error(
        "the component exports none of the worlds this host knows: it must export \
         {HANDLER_EXPORT} (a service) or a provider interface (cairn:commerce/payments, email or \
         shipping @0.1.0); it exports [{0}]"
    )]
    UnknownWorld(String),
    #[error("the component imports something this host does not provide: {0}")]
    Link(String),
    #[error("describe failed: {0}")]
    Describe(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Deploys `bytes`. Deploying bytes already deployed returns the existing deployment.
pub async fn deploy(
    runtime: &Arc<Runtime>,
    bytes: Vec<u8>,
) -> Result<Arc<Deployment>, DeployError> {
    let id = hex::encode(Sha256::digest(&bytes));
    if let Some(existing) = runtime.registry().deployments.get(&id) {
        return Ok(existing.clone());
    }
    let deployment = Arc::new(load(runtime, &id, &bytes, now_ms()).await?);
    let describe = match &deployment.kind {
        DeploymentKind::Service(info) => {
            Some(serde_json::to_value(info).map_err(|e| DeployError::Describe(e.to_string()))?)
        }
        DeploymentKind::Provider(_) => None,
    };
    runtime
        .storage
        .put_deployment(&DeploymentRecord {
            id: id.clone(),
            kind: deployment.kind.kind_str().to_string(),
            name: deployment.kind.name(),
            size: bytes.len() as i64,
            describe,
            component: bytes,
            created_at: deployment.created_at,
        })
        .await?;
    activate(runtime, deployment.clone());
    tracing::info!(id = %deployment.id, kind = deployment.kind.kind_str(), name = %deployment.kind.name(), "deployed");
    Ok(deployment)
}

/// Loads every stored deployment (oldest first, so the newest of each name ends up active).
pub async fn restore(runtime: &Arc<Runtime>) -> anyhow::Result<usize> {
    let records = runtime.storage.deployments().await?;
    let count = records.len();
    for record in records {
        let deployment = load(runtime, &record.id, &record.component, record.created_at)
            .await
            .map_err(|e| anyhow::anyhow!("stored deployment {}: {e}", record.id))?;
        activate(runtime, Arc::new(deployment));
    }
    Ok(count)
}

fn activate(runtime: &Runtime, deployment: Arc<Deployment>) {
    runtime
        .registry
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(deployment);
}

/// Compiles (or fetches from the on-disk cache), classifies and links a component.
async fn load(
    runtime: &Arc<Runtime>,
    id: &str,
    bytes: &[u8],
    created_at: i64,
) -> Result<Deployment, DeployError> {
    if !has_component_header(bytes) {
        return Err(DeployError::NotAComponent(
            "expected the component-model binary header (\\0asm, version 0x0d, layer 1)".into(),
        ));
    }
    let engine = runtime.engine.clone();
    let owned = bytes.to_vec();
    let component = tokio::task::spawn_blocking(move || Component::new(&engine, &owned))
        .await
        .map_err(|e| DeployError::NotAComponent(e.to_string()))?
        .map_err(|e| DeployError::NotAComponent(format!("{e:#}")))?;
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(&runtime.engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let pre = runtime
        .linker
        .instantiate_pre(&component)
        .map_err(|e| DeployError::Link(format!("{e:#}")))?;
    let kind = if exports.iter().any(|e| e == HANDLER_EXPORT) {
        DeploymentKind::Service(describe(runtime, id, &pre).await?)
    } else if let Some(role) = ProviderRole::ALL
        .into_iter()
        .find(|r| exports.iter().any(|e| e == r.export_name()))
    {
        DeploymentKind::Provider(role)
    } else {
        return Err(DeployError::UnknownWorld(exports.join(", ")));
    };
    Ok(Deployment {
        id: id.to_string(),
        kind,
        pre,
        size: bytes.len(),
        created_at,
    })
}

async fn describe(
    runtime: &Runtime,
    id: &str,
    pre: &wasmtime::component::InstancePre<HostState>,
) -> Result<crate::bindings::handler::ServiceInfo, DeployError> {
    let fail = |e: wasmtime::Error| DeployError::Describe(format!("{e:#}"));
    let service_pre = ServicePre::new(pre.clone()).map_err(fail)?;
    let state = HostState::new(
        id.into(),
        Role::Describe,
        runtime.settings.memory_limit,
        0,
        Some(0),
    );
    let mut store = Store::new(&runtime.engine, state);
    store.limiter(|s| &mut s.limits);
    let instance = service_pre
        .instantiate_async(&mut store)
        .await
        .map_err(fail)?;
    let info = instance
        .cairn_durable_handler()
        .call_describe(&mut store)
        .await
        .map_err(fail)?;
    if info.name.is_empty() || info.name.contains('/') {
        return Err(DeployError::Describe(format!(
            "service name {:?} must be non-empty and contain no '/'",
            info.name
        )));
    }
    Ok(info)
}

/// Component binaries start with `\0asm`, then version 0x000d and layer 0x0001.
fn has_component_header(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [0x0d, 0x00, 0x01, 0x00]
}
