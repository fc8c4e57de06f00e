//! The component runtime: the wasmtime engine, the linker with every capability, the deployed
//! components, and the invoker that runs one invocation.

mod clock;
mod deploy;
mod guest_output;
mod invoker;
mod keylocks;
pub mod limits;
pub mod providers;
mod registry;
pub mod sandbox;
mod state;
mod undeploy;

pub use deploy::{DeployError, Deployed, deploy, deploy_bundled, restore};
pub use invoker::{RetryPolicy, invoke};
pub use keylocks::KeyLocks;
pub use limits::Limits;
pub use registry::{Deployment, DeploymentKind, ProviderRole, Registry};
pub use state::{HostState, ProviderCtx, Role, ServiceCtx};
pub(crate) use state::{misuse, trap};
pub use undeploy::{UndeployError, undeploy};

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
    /// Default linear-memory cap per store (a deployment's `limits` may set its own).
    pub memory_limit: usize,
    /// Default guest execution time per call (a deployment's `limits` may set its own).
    pub cpu_limit: std::time::Duration,
    /// Largest component `POST /deployments` accepts, in bytes.
    pub max_component_bytes: usize,
    /// Longest a component may take to compile at deployment.
    pub compile_timeout: std::time::Duration,
    /// Invocations running (instantiated) at once; the rest wait their turn.
    pub max_running: usize,
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
    /// Permits for running invocations (`RuntimeSettings::max_running`).
    pub(crate) running: tokio::sync::Semaphore,
    /// "deployment/operation" → what the provider said about repeating it.
    pub(crate) retry_safety: std::sync::Mutex<
        std::collections::HashMap<String, crate::bindings::commerce_types::RetrySafety>,
    >,
}

impl Runtime {
    pub fn new(storage: Arc<dyn Storage>, settings: RuntimeSettings) -> anyhow::Result<Arc<Self>> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.max_wasm_stack(limits::MAX_WASM_STACK);
        // CPU time per call: see `sandbox`.
        config.epoch_interruption(true);
        if let Some(dir) = &settings.cache_dir {
            std::fs::create_dir_all(dir)?;
            let mut cache = CacheConfig::new();
            cache.with_directory(dir);
            config.cache(Some(Cache::new(cache)?));
        }
        let engine = Engine::new(&config)?;
        sandbox::start_ticker(&engine)?;
        let mut linker = Linker::new(&engine);
        crate::capabilities::add_to_linker(&mut linker)?;
        let policies = settings
            .providers
            .values()
            .map(|p| &*p.policy)
            .chain([&*settings.service_policy]);
        let outbound = Outbound::new(policies)?;
        Ok(Arc::new(Runtime {
            engine,
            linker,
            storage,
            outbound,
            registry: RwLock::new(Registry::default()),
            settings: settings.clone(),
            locks: KeyLocks::default(),
            running: tokio::sync::Semaphore::new(settings.max_running.max(1)),
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
