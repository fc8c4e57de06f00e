//! The component runtime: the wasmtime engine, one linker per world, the deployed components,
//! the invoker that runs one invocation, and the callee side of calls between components.

mod attempt;
pub mod call_retry;
pub mod callee;
mod claim;
mod clock;
mod component_name;
pub mod control;
mod deploy;
mod guest_output;
mod invoker;
mod keylocks;
pub mod limits;
pub mod linking;
pub mod provider_settings;
mod registry;
mod retry;
pub mod sandbox;
pub mod start;
mod state;
mod undeploy;
pub mod wakes;

pub use deploy::{DeployError, Deployed, deploy, deploy_bundled, follow_elsewhere, restore};
pub use invoker::invoke;
pub use keylocks::KeyLocks;
pub use limits::Limits;
pub use provider_settings::{Grantable, OwnSettings, ProviderOverrides, SecretEnv, SettingsError};
pub use registry::{Deployment, DeploymentKind, Registry};
pub use retry::{OnMaxAttempts, RetryPolicy};
pub use state::{HostState, ProviderCtx, Role, ServiceCtx};
pub(crate) use state::{misuse, trap};
pub use undeploy::{UndeployError, undeploy};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use wasmtime::{Cache, CacheConfig, Config, Engine};

use crate::outbound::{Outbound, Policy};
use crate::storage::Storage;

/// Configuration of a provider component: what it is told and what it may reach.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub config: Arc<BTreeMap<String, String>>,
    pub policy: Arc<Policy>,
}

impl ProviderSettings {
    /// No configuration, no network.
    pub fn none() -> Self {
        ProviderSettings {
            config: Arc::default(),
            policy: Arc::new(Policy::deny_all()),
        }
    }
}

/// Runtime-wide settings.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Settings of a provider component deployed without its own, by an interface it exports
    /// (the bundled components' defaults; see [`crate::bundled`]).
    pub defaults: BTreeMap<String, ProviderSettings>,
    /// What services (the orchestrator) may reach over HTTP.
    pub service_policy: Arc<Policy>,
    /// Operator configuration by service name (`context.config`; `--service-config`).
    pub service_config: BTreeMap<String, BTreeMap<String, String>>,
    /// Default linear-memory cap per store (a deployment's `limits` may set its own).
    pub memory_limit: usize,
    /// Default guest execution time per call (a deployment's `limits` may set its own).
    pub cpu_limit: std::time::Duration,
    /// Default wall-clock time per call (a deployment's limits may set their own).
    pub wall_limit: std::time::Duration,
    /// Linear memory all running instances may hold together, in bytes.
    pub memory_budget: usize,
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
    /// Retries of a call whose callee answered a transient error, per `interface.function`.
    pub call_retry: call_retry::CallRetry,
    /// In-doubt policy per `interface.function` (`cairn:commerce/email.send-email`); see
    /// [`callee::InDoubtPolicy`].
    pub in_doubt: BTreeMap<String, callee::InDoubtPolicy>,
    /// Test hook: stop one attempt right after a given journal entry.
    pub fail_point: Option<Arc<crate::journal::FailPoint>>,
    /// Where the secrets a deployment names (`"secrets": ["ADYEN_API_KEY"]`) are read.
    pub secret_env: SecretEnv,
}

pub struct Runtime {
    pub engine: Engine,
    pub linkers: linking::Linkers,
    pub storage: Arc<dyn Storage>,
    pub outbound: Outbound,
    /// The deployments, as an immutable snapshot replaced on every change (copy on write), so
    /// readers on the hot path only clone an `Arc`.
    pub registry: RwLock<Arc<Registry>>,
    pub settings: RuntimeSettings,
    pub locks: KeyLocks,
    /// Wake-ups of suspended invocations (a callee ended, a promise completed).
    pub wakes: wakes::Wakes,
    /// The tasks running invocations here, for an operator to stop or hurry.
    pub controls: Arc<control::Controls>,
    /// What `GET /metrics` shows.
    pub metrics: crate::metrics::Metrics,
    /// Permits for running invocations (`RuntimeSettings::max_running`).
    pub(crate) running: tokio::sync::Semaphore,
    /// "deployment/interface#function" → the index of that export (see [`callee`]).
    pub(crate) callee_exports: std::sync::Mutex<
        std::collections::HashMap<String, wasmtime::component::ComponentExportIndex>,
    >,
    /// "caller>deployment/interface#function": imports checked to match their callee's type.
    pub(crate) checked_imports: std::sync::Mutex<std::collections::HashSet<String>>,
    /// "deployment/interface.function" → what the component said about repeating it.
    pub(crate) retry_safety:
        std::sync::Mutex<std::collections::HashMap<String, crate::bindings::recovery::RetrySafety>>,
    /// The database's `seed` secret (see [`Runtime::seed_of`]).
    seed_key: Vec<u8>,
    /// Linear memory of all running instances together (`RuntimeSettings::memory_budget`).
    pub(crate) memory: Arc<sandbox::MemoryBudget>,
    /// Ids of the deployments of the host's bundled components (made at this start), which run
    /// with their role's secret.
    pub(crate) bundled: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The role defaults without their secrets, for other deployments without settings.
    defaults_without_secrets: BTreeMap<String, ProviderSettings>,
}

/// The pooling allocator: instance memories, tables and stacks come from slots reserved once,
/// so instantiating (four times per order) maps and unmaps nothing. A running invocation holds
/// at most a service instance and a provider instance, so `max_running` sizes the pool.
fn pooling(max_running: usize) -> wasmtime::InstanceAllocationStrategy {
    let components = (2 * max_running.max(1) + 32) as u32;
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(components)
        .total_core_instances(components * 8)
        .total_memories(components * 2)
        .total_tables(components * 4)
        .total_stacks(components)
        // The largest memory a deployment may ask for (see `limits`); the limiter enforces the
        // deployment's own, smaller cap.
        .max_memory_size(limits::MAX_MEMORY_BYTES)
        // Reset the first pages of a slot in place instead of returning them to the kernel:
        // a guest's small heap and stack are reused without page faults or TLB shootdowns.
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10)
        .async_stack_keep_resident(128 << 10)
        // A new instance takes a slot its module used before, else a fresh one only while
        // fewer than 16 used slots stand idle, else one of those: the slots touched (each
        // keeping its guest's stack, data and heap pages resident) stay about as many as the
        // instances that ran at once. wasmtime's default, 100, kept 402 slots touched for
        // ~256 instances at 128 clients (docs/benchmarks.md).
        .max_unused_warm_slots(16);
    wasmtime::InstanceAllocationStrategy::Pooling(pool)
}

impl Runtime {
    pub async fn new(
        storage: Arc<dyn Storage>,
        settings: RuntimeSettings,
    ) -> anyhow::Result<Arc<Self>> {
        let fresh: [u8; 32] = rand::random();
        let seed_key = storage.host_secret("seed", fresh.to_vec()).await?;
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.max_wasm_stack(limits::MAX_WASM_STACK);
        // CPU time per call: see `sandbox`.
        config.epoch_interruption(true);
        config.allocation_strategy(pooling(settings.max_running));
        if let Some(dir) = &settings.cache_dir {
            std::fs::create_dir_all(dir)?;
            // wasmtime's cache wants an absolute path; `--data-dir` defaults to `./data`.
            let dir = std::path::absolute(dir)?;
            let mut cache = CacheConfig::new();
            cache.with_directory(dir);
            config.cache(Some(Cache::new(cache)?));
        }
        let engine = Engine::new(&config)?;
        sandbox::start_ticker(&engine)?;
        let linkers = linking::Linkers::new(&engine)?;
        let policies = settings
            .defaults
            .values()
            .map(|p| &*p.policy)
            .chain([&*settings.service_policy]);
        let outbound = Outbound::new(policies)?;
        let metrics = crate::metrics::Metrics::new(storage.flush_stats());
        Ok(Arc::new(Runtime {
            engine,
            linkers,
            storage,
            outbound,
            registry: RwLock::new(Arc::new(Registry::default())),
            settings: settings.clone(),
            locks: KeyLocks::default(),
            wakes: wakes::Wakes::default(),
            controls: Arc::default(),
            metrics,
            running: tokio::sync::Semaphore::new(settings.max_running.max(1)),
            retry_safety: Default::default(),
            callee_exports: Default::default(),
            checked_imports: Default::default(),
            seed_key,
            memory: sandbox::MemoryBudget::new(settings.memory_budget),
            bundled: Default::default(),
            defaults_without_secrets: settings
                .defaults
                .iter()
                .map(|(interface, role)| {
                    let policy = Policy {
                        secrets: Default::default(),
                        ..Policy::clone(&role.policy)
                    };
                    let settings = ProviderSettings {
                        config: role.config.clone(),
                        policy: Arc::new(policy),
                    };
                    (interface.clone(), settings)
                })
                .collect(),
        }))
    }

    /// The seed of WASI randomness for the invocation or call named `id`: keyed by this
    /// database's secret, so knowing `id` (the invocation id a caller sees) does not tell it,
    /// and the same on every attempt and host, so a replay sees the same bytes (invariant 6).
    pub(crate) fn seed_of(&self, id: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.seed_key)
            .expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Invocation attempts running now, each holding a component instance. Waiting ones (for a
    /// key, a retry or a durable sleep) hold none and are not counted.
    pub fn running_attempts(&self) -> usize {
        self.settings
            .max_running
            .max(1)
            .saturating_sub(self.running.available_permits())
    }

    /// What provider deployment `d` (exporting `exports`) runs with: its own settings, else
    /// the role's (the host's defaults for an interface it exports), whose secret only the
    /// host's bundled components and deployments given `inheritSecrets` get.
    pub(crate) fn provider_settings(&self, d: &Deployment, exports: &[String]) -> ProviderSettings {
        if let Some(own) = d.own.as_ref().filter(|own| own.given.replaces_role()) {
            return own.resolved.clone();
        }
        let inherits = d.own.as_ref().is_some_and(|own| own.given.inherit_secrets)
            || self
                .bundled
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&d.id);
        let defaults = if inherits {
            &self.settings.defaults
        } else {
            &self.defaults_without_secrets
        };
        exports
            .iter()
            .find_map(|name| defaults.get(name))
            .cloned()
            .unwrap_or_else(ProviderSettings::none)
    }

    /// A snapshot of the current deployments.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cairn serve` defaults to `--data-dir ./data`: the compile cache must accept a relative dir.
    #[tokio::test]
    async fn a_relative_cache_dir_is_accepted() {
        let db = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", db.path().join("r.db").display());
        let storage = Arc::new(crate::storage::SqliteStorage::open(&url).await.unwrap());
        // Tests run in host/; ../target is the workspace's (ignored) build dir.
        let relative = PathBuf::from("../target/relative-cache-dir-test");
        let settings = crate::config::runtime_settings(BTreeMap::new(), Some(relative));
        let runtime = Runtime::new(storage.clone(), settings.clone())
            .await
            .unwrap();
        // The seed key is the database's: the same for the next runtime on it, and no id's
        // plain hash.
        let again = Runtime::new(storage, settings).await.unwrap();
        assert_eq!(runtime.seed_of("inv_1"), again.seed_of("inv_1"));
        assert_ne!(runtime.seed_of("inv_1"), runtime.seed_of("inv_2"));
        use sha2::Digest as _;
        let plain = sha2::Sha256::digest(b"inv_1");
        assert_ne!(runtime.seed_of("inv_1"), <[u8; 32]>::from(plain));
    }
}
