//! Deploying a component: check its size and header, compile (within a time cap), recognise its
//! world, link, describe, resolve a provider's own settings, persist, activate.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::limits::{Limits, describe_trap};
use super::linking::{World, exported_interfaces};
use super::provider_settings::{OwnSettings, ProviderOverrides, SettingsError};
use super::registry::Linked;
use super::{Deployment, DeploymentKind, HostState, Role, Runtime};
use crate::bindings::recovery::GuestIndices as RecoveryIndices;
use crate::bindings::service::ServicePre;
use crate::storage::{DeploymentRecord, StorageError, now_ms};

/// Looked up semver-compatibly: a component built against `cairn:durable@0.1.0` exports
/// `handler@0.1.0`, which these find.
const HANDLER_EXPORT: &str = "cairn:durable/handler@0.1.2";
const RECOVERY_EXPORT: &str = "cairn:durable/recovery@0.1.2";

/// Why a component was refused. All are the deployer's fault (4xx) except storage.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("the component is {size} bytes; this host accepts at most {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("compiling the component took longer than {}s; it was refused", .0.as_secs())]
    CompileTimeout(Duration),
    #[error(
        "the component exports nothing another component could call: it must export \
         {HANDLER_EXPORT} (a service) or interfaces of its own (a provider); it exports [{0}]"
    )]
    UnknownWorld(String),
    #[error("the component does not implement the {world} world: {message}")]
    MissingExport {
        world: &'static str,
        message: String,
    },
    #[error(
        "the component imports {import}, which the {world} world does not allow (it may import {allowed})"
    )]
    ForbiddenImport {
        import: String,
        world: &'static str,
        allowed: String,
    },
    #[error(
        "the component imports {0}, which no deployed component exports: deploy an \
         implementation of it first"
    )]
    Unimplemented(String),
    #[error("the component imports something this host does not provide: {0}")]
    Link(String),
    #[error("describe failed: {0}")]
    Describe(String),
    #[error("invalid limits: {0}")]
    InvalidLimits(String),
    #[error("invalid provider settings: {0}")]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The result of a deployment.
pub struct Deployed {
    pub deployment: Arc<Deployment>,
    /// `false`: these bytes were already deployed (the existing deployment is returned).
    pub created: bool,
}

/// Deploys `bytes` and makes the deployment the active one of its service or provider role.
/// Bytes already deployed return the existing deployment, made active again; `limits` and a
/// provider's own settings (`provider`: `config`, `allow`, `secrets`), when given, replace what
/// it had (absent: they stay as they were).
pub async fn deploy(
    runtime: &Arc<Runtime>,
    bytes: Vec<u8>,
    limits: Option<Limits>,
    provider: Option<ProviderOverrides>,
) -> Result<Deployed, DeployError> {
    deploy_inner(runtime, bytes, limits, provider, true).await
}

/// Deploys a bundled component at start. Unlike [`deploy`], bytes already deployed are left as
/// they are: an operator may have activated another deployment since.
pub async fn deploy_bundled(
    runtime: &Arc<Runtime>,
    bytes: Vec<u8>,
) -> Result<Deployed, DeployError> {
    let deployed = deploy_inner(runtime, bytes, None, None, false).await?;
    // The operator's own components run with their role's secret.
    (runtime.bundled.lock().unwrap_or_else(|p| p.into_inner()))
        .insert(deployed.deployment.id.clone());
    Ok(deployed)
}

async fn deploy_inner(
    runtime: &Arc<Runtime>,
    bytes: Vec<u8>,
    limits: Option<Limits>,
    provider: Option<ProviderOverrides>,
    reactivate: bool,
) -> Result<Deployed, DeployError> {
    if let Some(limits) = &limits {
        limits.validate().map_err(DeployError::InvalidLimits)?;
    }
    // Secrets are checked (and read) before anything is compiled or stored.
    let provider = provider.filter(|p| !p.is_empty());
    let own = provider
        .map(|given| -> Result<OwnSettings, SettingsError> {
            let resolved = given.resolve(&runtime.settings.secret_env, false)?;
            Ok(OwnSettings { given, resolved })
        })
        .transpose()?;
    let max = runtime.settings.max_component_bytes;
    if bytes.len() > max {
        return Err(DeployError::TooLarge {
            size: bytes.len(),
            max,
        });
    }
    let id = hex::encode(Sha256::digest(&bytes));
    let existing = runtime.registry().deployments.get(&id).cloned();
    if let Some(existing) = existing {
        if !reactivate {
            return Ok(Deployed {
                deployment: existing,
                created: false,
            });
        }
        if own.is_some() && matches!(existing.kind, DeploymentKind::Service(_)) {
            return Err(SettingsError::NotAProvider.into());
        }
        let mut updated = Deployment::clone(&existing);
        updated.limits = limits.unwrap_or(existing.limits);
        let changed = limits.is_some() || own.is_some();
        if own.is_some() {
            updated.own = own;
        }
        let stored_limits = limits.is_some().then(|| json(&updated.limits));
        let stored_settings = updated
            .own
            .as_ref()
            .filter(|_| changed)
            .map(|o| json(&o.given));
        runtime
            .storage
            .activate_deployment(
                &id,
                stored_limits.as_ref(),
                stored_settings.as_ref(),
                now_ms(),
            )
            .await?;
        let updated = Arc::new(updated);
        activate(runtime, updated.clone());
        tracing::info!(id = %id, kind = updated.kind.kind_str(), name = %updated.kind.name(), limits = ?updated.limits, "deployed again: active");
        return Ok(Deployed {
            deployment: updated,
            created: false,
        });
    }
    let limits = limits.unwrap_or_default();
    let mut deployment = load(runtime, &id, &bytes, now_ms(), limits).await?;
    if own.is_some() && matches!(deployment.kind, DeploymentKind::Service(_)) {
        return Err(SettingsError::NotAProvider.into());
    }
    deployment.own = own;
    let deployment = Arc::new(deployment);
    let describe = match &deployment.kind {
        DeploymentKind::Service(info) => {
            Some(serde_json::to_value(info).map_err(|e| DeployError::Describe(e.to_string()))?)
        }
        DeploymentKind::Provider { .. } => None,
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
            limits: (limits != Limits::default()).then(|| json(&limits)),
            provider_settings: deployment.own.as_ref().map(|o| json(&o.given)),
            activated_at: deployment.created_at,
        })
        .await?;
    activate(runtime, deployment.clone());
    tracing::info!(id = %deployment.id, kind = deployment.kind.kind_str(), name = %deployment.kind.name(), limits = ?deployment.limits, "deployed");
    Ok(Deployed {
        deployment,
        created: true,
    })
}

/// Loads every stored deployment (least recently activated first, so the last activated of
/// each name ends up active). Providers come before services, so that every interface a
/// service imports is exported when it is linked.
pub async fn restore(runtime: &Arc<Runtime>) -> anyhow::Result<usize> {
    let mut records = runtime.storage.deployments().await?;
    records.sort_by_key(|r| r.kind == "service");
    let count = records.len();
    for record in records {
        activate(runtime, Arc::new(load_record(runtime, &record).await?));
    }
    Ok(count)
}

/// How often a host on a shared database looks for deployments made at the others.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// How far the clocks of hosts sharing a database may disagree: activation times are theirs.
const CLOCK_SKEW_MS: i64 = 10_000;

/// On a database shared with other hosts, loads what they deploy or activate again, looking
/// every [`LOOK_EVERY`]: a deployment made through one host's admin API runs at all of them,
/// a second later at most.
pub fn follow_elsewhere(runtime: &Arc<Runtime>) {
    if !runtime.storage.shared() {
        return;
    }
    let runtime = Arc::downgrade(runtime);
    tokio::spawn(async move {
        let mut seen: std::collections::HashMap<String, i64> = Default::default();
        let mut since = now_ms();
        loop {
            tokio::time::sleep(LOOK_EVERY).await;
            let Some(runtime) = runtime.upgrade() else {
                return;
            };
            let mut records = match runtime
                .storage
                .deployments_activated_since(since - CLOCK_SKEW_MS)
                .await
            {
                Ok(records) => records,
                Err(e) => {
                    tracing::warn!(error = %e, "looking for deployments made at other hosts");
                    continue;
                }
            };
            records.retain(|r| seen.get(&r.id) != Some(&r.activated_at));
            for r in &records {
                since = since.max(r.activated_at);
                seen.insert(r.id.clone(), r.activated_at);
            }
            // The last activated of each name is the one active: activating the earlier ones
            // on the way would make them active for a moment.
            let mut names = std::collections::HashSet::new();
            records.reverse();
            records.retain(|r| names.insert(r.name.clone()));
            records.reverse();
            records.sort_by_key(|r| r.kind == "service");
            for record in records {
                let known = {
                    let registry = runtime.registry();
                    let known = registry.deployments.get(&record.id).cloned();
                    known.map(|d| (registry.is_active(&d.id), d))
                };
                match known {
                    Some((true, _)) => {}
                    Some((false, deployment)) => activate(&runtime, deployment),
                    None => match load_record(&runtime, &record).await {
                        Ok(deployment) => {
                            tracing::info!(id = %record.id, name = %record.name, "deployed at another host: loaded");
                            activate(&runtime, Arc::new(deployment));
                        }
                        Err(e) => {
                            tracing::warn!(id = %record.id, error = %e, "a deployment made at another host did not load");
                        }
                    },
                }
            }
        }
    });
}

/// The deployment a stored `record` describes, compiled (or from the cache) and linked.
async fn load_record(
    runtime: &Arc<Runtime>,
    record: &DeploymentRecord,
) -> anyhow::Result<Deployment> {
    let limits: Limits = column(&record.id, "limits", &record.limits)?.unwrap_or_default();
    let given: Option<ProviderOverrides> =
        column(&record.id, "provider settings", &record.provider_settings)?;
    let mut deployment = load(
        runtime,
        &record.id,
        &record.component,
        record.created_at,
        limits,
    )
    .await
    .map_err(|e| anyhow::anyhow!("stored deployment {}: {e}", record.id))?;
    // Secret values are read from the environment again; a missing one is logged.
    deployment.own = given
        .map(|given| {
            given
                .resolve(&runtime.settings.secret_env, true)
                .map(|resolved| OwnSettings { given, resolved })
        })
        .transpose()
        .map_err(|e| anyhow::anyhow!("stored deployment {}: {e}", record.id))?;
    Ok(deployment)
}

/// Reads a stored JSON column of deployment `id`.
fn column<T: serde::de::DeserializeOwned>(
    id: &str,
    what: &str,
    value: &Option<serde_json::Value>,
) -> anyhow::Result<Option<T>> {
    value
        .clone()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| anyhow::anyhow!("stored deployment {id}: {what}: {e}"))
}

/// A stored JSON column's value.
fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

fn activate(runtime: &Runtime, deployment: Arc<Deployment>) {
    if let Some(own) = &deployment.own {
        runtime.outbound.allow_private(&own.resolved.policy);
    }
    let mut registry = runtime.registry.write().unwrap_or_else(|p| p.into_inner());
    Arc::make_mut(&mut registry).insert(deployment);
}

/// Compiles `bytes` (or fetches them from the on-disk cache) on threads of their own, which end
/// with it: cranelift's many short-lived allocations leave the heaps of the threads that made
/// them holding freed pages until those threads allocate again, which a pool kept for
/// compiling never does (~7 MiB of a fresh host's idle RSS, docs/benchmarks.md); a thread
/// that ends hands its heap back to the allocator.
fn compile(engine: &wasmtime::Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("cairn-compile-{i}"))
        .build()
        .map_err(|e| wasmtime::Error::msg(format!("starting the compiler's threads: {e}")))?;
    pool.install(|| Component::new(engine, bytes))
}

/// Compiles (or fetches from the on-disk cache), classifies and links a component.
async fn load(
    runtime: &Arc<Runtime>,
    id: &str,
    bytes: &[u8],
    created_at: i64,
    limits: Limits,
) -> Result<Deployment, DeployError> {
    check_header(bytes)?;
    let engine = runtime.engine.clone();
    let owned = bytes.to_vec();
    // A compilation cannot be cancelled: past the timeout the deployment is refused and the
    // compiling thread is left to finish on its own.
    let timeout = runtime.settings.compile_timeout;
    let compiled = tokio::time::timeout(
        timeout,
        tokio::task::spawn_blocking(move || compile(&engine, &owned)),
    )
    .await
    .map_err(|_| DeployError::CompileTimeout(timeout))?;
    let component = compiled
        .map_err(|e| DeployError::NotAComponent(e.to_string()))?
        .map_err(|e| DeployError::NotAComponent(format!("{e:#}")))?;
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(&runtime.engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let registry = runtime.registry();
    let exported = |name: &str| registry.interfaces.contains_key(name);
    let exports_item = |name: &str| component.get_export_index(None, name).is_some();
    let mut imports = Vec::new();
    let (kind, linked) = if exports_item(HANDLER_EXPORT) {
        let (pre, called) =
            runtime
                .linkers
                .link(&runtime.engine, World::Service, &component, &exported)?;
        imports = called;
        let service = ServicePre::new(pre).map_err(|e| DeployError::MissingExport {
            world: World::Service.name(),
            message: format!("{e:#}"),
        })?;
        let info = describe(runtime, id, &service, limits).await?;
        (DeploymentKind::Service(info), Linked::Service(service))
    } else {
        let provided = exported_interfaces(&runtime.engine, &component)?;
        if provided.is_empty() {
            return Err(DeployError::UnknownWorld(exports.join(", ")));
        }
        let (pre, _) =
            runtime
                .linkers
                .link(&runtime.engine, World::Provider, &component, &exported)?;
        let recovery = match RecoveryIndices::new(&pre) {
            Ok(indices) => Some(indices),
            Err(_) if !exports_item(RECOVERY_EXPORT) => None,
            Err(e) => {
                return Err(DeployError::MissingExport {
                    world: "cairn:durable/recoverable",
                    message: format!("{e:#}"),
                });
            }
        };
        (
            DeploymentKind::Provider { exports: provided },
            Linked::Provider { pre, recovery },
        )
    };
    Ok(Deployment {
        id: id.to_string(),
        kind,
        component_name: super::component_name::component_name(bytes),
        linked,
        size: bytes.len(),
        created_at,
        limits,
        own: None,
        imports,
    })
}

async fn describe(
    runtime: &Runtime,
    id: &str,
    service_pre: &ServicePre<HostState>,
    limits: Limits,
) -> Result<crate::bindings::handler::ServiceInfo, DeployError> {
    let fail = |e: wasmtime::Error| DeployError::Describe(describe_trap(&e));
    let state = HostState::new(
        id.into(),
        Role::Describe,
        runtime.settings.memory_limit,
        [0; 32],
        Some(0),
    );
    let mut store = runtime.new_store_with(state, limits);
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

/// Component binaries start with `\0asm`, then version 0x000d and layer 0x0001; core modules
/// with version 1, layer 0.
fn check_header(bytes: &[u8]) -> Result<(), DeployError> {
    if bytes.len() >= 8 && bytes[..4] == *b"\0asm" {
        match bytes[4..8] {
            [0x0d, 0x00, 0x01, 0x00] => return Ok(()),
            [0x01, 0x00, 0x00, 0x00] => {
                return Err(DeployError::NotAComponent(
                    "this is a core WebAssembly module; make it a component (`cargo component \
                     build`, a `wasm32-wasip2` build, or `wasm-tools component new`)"
                        .into(),
                ));
            }
            _ => {}
        }
    }
    Err(DeployError::NotAComponent(
        "expected the component-model binary header (\\0asm, version 0x0d, layer 1)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_tell_components_from_modules_and_junk() {
        assert!(check_header(b"\0asm\x0d\x00\x01\x00").is_ok());
        let module = check_header(b"\0asm\x01\x00\x00\x00").unwrap_err();
        assert!(
            module.to_string().contains("core WebAssembly module"),
            "{module}"
        );
        let junk = check_header(b"hello, world").unwrap_err();
        assert!(
            junk.to_string().contains("not a WebAssembly component"),
            "{junk}"
        );
    }
}
