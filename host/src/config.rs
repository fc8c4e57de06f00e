//! Configuration from flags and environment: addresses, storage, runtime defaults. The bundled
//! components' own settings (`STRIPE_*`, `SENDGRID_*`, `SHIPPO_*`) are in [`crate::bundled`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::http_api::ingress::IngressConfig;
use crate::outbound::Policy;
use crate::runtime::{ProviderSettings, RetryPolicy, RuntimeSettings};
use crate::storage::StorageOptions;

/// Everything [`crate::server::start`] needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub ingress_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// `sqlite:PATH` or `postgres://...`.
    pub database_url: String,
    /// This host's id and lease lifetime (used when several hosts share a PostgreSQL database).
    pub storage: StorageOptions,
    /// Components deployed at start (no-op when already deployed with the same bytes).
    pub components: Vec<PathBuf>,
    pub ingress: IngressConfig,
    pub runtime: RuntimeSettings,
}

/// This host's id: kept in `data_dir/host-id`, made on the first start. A host restarted over the
/// same data dir is the same host, and takes its own leases back at once.
pub fn host_id(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("host-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        Ok(_) => write_host_id(&path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_host_id(&path),
        Err(e) => Err(e),
    }
}

fn write_host_id(path: &Path) -> std::io::Result<String> {
    let id = format!("host_{}", uuid::Uuid::new_v4().simple());
    std::fs::write(path, &id)?;
    Ok(id)
}

/// A configuration problem, named so an operator can fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is not set: the {name} provider needs an API key (or run with MOCK_MODE=true)")]
    MissingKey {
        var: &'static str,
        name: &'static str,
    },
    #[error("{var}: {message}")]
    Invalid { var: &'static str, message: String },
}

/// Runtime settings with the defaults used by `cairn serve`.
pub fn runtime_settings(
    defaults: BTreeMap<String, ProviderSettings>,
    cache_dir: Option<PathBuf>,
) -> RuntimeSettings {
    RuntimeSettings {
        defaults,
        service_policy: Arc::new(Policy::deny_all()),
        service_config: BTreeMap::new(),
        memory_limit: crate::runtime::limits::DEFAULT_MEMORY_LIMIT,
        cpu_limit: crate::runtime::limits::DEFAULT_CPU_LIMIT,
        max_component_bytes: 20 << 20,
        compile_timeout: Duration::from_secs(60),
        max_running: 512,
        retry: RetryPolicy::default(),
        service_retry: BTreeMap::new(),
        cache_dir,
        in_doubt: BTreeMap::new(),
        fail_point: None,
        secret_env: crate::runtime::SecretEnv::process(),
    }
}

/// Parses a duration in milliseconds from an environment value.
pub fn parse_ms(var: &'static str, value: &str) -> Result<Duration, ConfigError> {
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|e| ConfigError::Invalid {
            var,
            message: format!("{value:?} is not a number of milliseconds: {e}"),
        })
}
