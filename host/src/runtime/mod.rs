//! The component runtime: the wasmtime engine, the linker with every capability, the deployed
//! components, and the invoker that runs one invocation.

mod clock;
mod deploy;
mod invoker;
mod keylocks;
pub mod providers;
mod registry;
mod state;

pub use deploy::{DeployError, deploy, restore};
pub use invoker::{RetryPolicy, invoke};
pub use keylocks::KeyLocks;
pub use registry::{Deployment, DeploymentKind, ProviderRole, Registry};
pub use state::{HostState, ProviderCtx, Role, ServiceCtx};
pub(crate) use state::{misuse, trap};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use wasmtime::component::Linker;
use wasmtime::{Cache, CacheConfig, Config, Engine};

use crate::outbound::{Outbound, Policy};
use crate::storage::Storage;

/// Configuration of one provider role: what the component is told and what it may reach.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub config: Arc<BTreeMap<String, String>>,
    pub policy: Arc<Policy>,
}

/// Runtime-wide settings.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    pub providers: BTreeMap<ProviderRole, ProviderSettings>,
    /// What services (the orchestrator) may reach over HTTP.
    pub service_policy: Arc<Policy>,
    /// Linear-memory cap per store.
    pub memory_limit: usize,
    pub retry: RetryPolicy,
    /// Per-service retry policies (service name → policy), overriding `retry`.
    pub service_retry: BTreeMap<String, RetryPolicy>,
    /// Where compiled components are cached across restarts.
    pub cache_dir: Option<PathBuf>,
    /// In-doubt policy per operation (`email.send-email`...); see [`providers::InDoubtPolicy`].
    pub in_doubt: BTreeMap<String, providers::InDoubtPolicy>,
    /// Test hook: stop one attempt right after a given journal entry.
    pub fail_point: Option<Arc<crate::journal::FailPoint>>,
}

pub struct Runtime {
    pub engine: Engine,
    pub linker: Linker<HostState>,
    pub storage: Arc<dyn Storage>,
    pub outbound: Outbound,
    pub registry: RwLock<Registry>,
    pub settings: RuntimeSettings,
    pub locks: KeyLocks,
    /// "deployment/operation" → what the provider said about repeating it.
    pub(crate) retry_safety: std::sync::Mutex<
        std::collections::HashMap<String, crate::bindings::commerce_types::RetrySafety>,
    >,
}

impl Runtime {
    pub fn new(storage: Arc<dyn Storage>, settings: RuntimeSettings) -> anyhow::Result<Arc<Self>> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.max_wasm_stack(1 << 20);
        if let Some(dir) = &settings.cache_dir {
            std::fs::create_dir_all(dir)?;
            let mut cache = CacheConfig::new();
            cache.with_directory(dir);
            config.cache(Some(Cache::new(cache)?));
        }
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        crate::capabilities::add_to_linker(&mut linker)?;
        Ok(Arc::new(Runtime {
            engine,
            linker,
            storage,
            outbound: Outbound::new()?,
            registry: RwLock::new(Registry::default()),
            settings,
            locks: KeyLocks::default(),
            retry_safety: Default::default(),
        }))
    }

    /// A snapshot of the current deployments.
    pub fn registry(&self) -> Registry {
        self.registry
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}
