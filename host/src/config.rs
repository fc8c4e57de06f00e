//! Configuration from flags and environment: addresses, storage, runtime defaults. The bundled
//! components' own settings (`STRIPE_*`, `SENDGRID_*`, `SHIPPO_*`) are in [`crate::bundled`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::http_api::admin::AdminConfig;
use crate::http_api::ingress::IngressConfig;
use crate::outbound::{Policy, Secret};
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
    pub admin: AdminConfig,
    pub runtime: RuntimeSettings,
    pub retention: Retention,
}

/// How long finished invocations are kept, and how often the host purges older ones.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// A finished invocation (with its journal) is purged this long after it ended, once no
    /// idempotency key (or webhook event id) names it any more.
    pub finished: Duration,
    pub every: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            finished: Duration::from_secs(7 * 24 * 3600),
            every: Duration::from_secs(60),
        }
    }
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

/// Where the admin token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `CAIRN_ADMIN_TOKEN`.
    Env,
    /// The token file in the data dir; `created` at this start.
    File { path: PathBuf, created: bool },
}

/// The name of the admin token file in the data dir.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// The admin token: `from_env` (`CAIRN_ADMIN_TOKEN`) when set, else the one in
/// `data_dir/admin-token`, made (readable by its owner only) at the first start.
pub fn admin_token(
    data_dir: &Path,
    from_env: Option<String>,
) -> std::io::Result<(Secret, TokenSource)> {
    if let Some(found) = existing_admin_token(data_dir, from_env)? {
        return Ok(found);
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    let token = crate::http_api::access::generate_token();
    write_private(&path, token.expose())?;
    Ok((
        token,
        TokenSource::File {
            path,
            created: true,
        },
    ))
}

/// The token given in `from_env` or already in the data dir's token file, if any.
fn existing_admin_token(
    data_dir: &Path,
    from_env: Option<String>,
) -> std::io::Result<Option<(Secret, TokenSource)>> {
    if let Some(token) = from_env.filter(|t| !t.trim().is_empty()) {
        return Ok(Some((Secret::new(token.trim()), TokenSource::Env)));
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => Ok(Some((
            Secret::new(token.trim()),
            TokenSource::File {
                path,
                created: false,
            },
        ))),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `text` to a new file only its owner can read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// The admin token as the command line finds it: `CAIRN_ADMIN_TOKEN`, else the token file in
/// `data_dir` (never made here).
pub fn read_admin_token(data_dir: &Path, from_env: Option<String>) -> Option<Secret> {
    existing_admin_token(data_dir, from_env)
        .ok()
        .flatten()
        .map(|(token, _)| token)
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
        wall_limit: crate::runtime::limits::DEFAULT_WALL_LIMIT,
        memory_budget: 4 << 30,
        max_component_bytes: 20 << 20,
        compile_timeout: Duration::from_secs(60),
        max_running: crate::runtime::limits::default_max_running(),
        retry: RetryPolicy::default(),
        service_retry: BTreeMap::new(),
        call_retry: crate::runtime::call_retry::CallRetry::default(),
        cache_dir,
        in_doubt: BTreeMap::new(),
        fail_point: None,
        secret_env: crate::runtime::SecretEnv::process(Vec::new()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_token_comes_from_the_environment_or_a_private_file_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let (env, source) = admin_token(dir.path(), Some(" from-env ".into())).unwrap();
        assert_eq!((env.expose(), source), ("from-env", TokenSource::Env));
        let (first, source) = admin_token(dir.path(), None).unwrap();
        let path = dir.path().join(ADMIN_TOKEN_FILE);
        assert_eq!(
            source,
            TokenSource::File {
                path: path.clone(),
                created: true
            }
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, source) = admin_token(dir.path(), None).unwrap();
        assert_eq!(again.expose(), first.expose());
        assert_eq!(
            source,
            TokenSource::File {
                path,
                created: false
            }
        );
        assert_eq!(
            read_admin_token(dir.path(), None).unwrap().expose(),
            first.expose()
        );
        assert!(read_admin_token(&dir.path().join("none"), None).is_none());
    }
}
