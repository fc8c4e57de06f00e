//! Configuration from flags and environment: addresses, storage, bundled components, and the
//! provider roles' base URLs, keys (secrets) and settings.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::http_api::ingress::IngressConfig;
use crate::outbound::{Origin, Policy, Secret};
use crate::runtime::{ProviderRole, ProviderSettings, RetryPolicy, RuntimeSettings};
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

/// The bundled component files, in the order they are deployed.
pub const BUNDLED: [&str; 4] = [
    "stripe_payments.wasm",
    "sendgrid_email.wasm",
    "shippo_shipping.wasm",
    "order_orchestrator.wasm",
];

pub fn bundled_components(dir: &Path) -> Vec<PathBuf> {
    BUNDLED.iter().map(|name| dir.join(name)).collect()
}

/// A configuration problem, named so an operator can fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is not set: the {role} provider needs an API key (or run with MOCK_MODE=true)")]
    MissingKey {
        var: &'static str,
        role: &'static str,
    },
    #[error("{var}: {message}")]
    Invalid { var: &'static str, message: String },
}

struct RoleSpec {
    role: ProviderRole,
    base_var: &'static str,
    default_base: &'static str,
    key_var: &'static str,
    mock_key: &'static str,
    /// (config name, environment variable, default).
    settings: &'static [(&'static str, &'static str, &'static str)],
}

const ROLES: [RoleSpec; 3] = [
    RoleSpec {
        role: ProviderRole::Payments,
        base_var: "STRIPE_API_BASE",
        default_base: "https://api.stripe.com",
        key_var: "STRIPE_API_KEY",
        mock_key: "sk_test_cairn_mock",
        settings: &[(
            "default-payment-method",
            "STRIPE_DEFAULT_PAYMENT_METHOD",
            "tok_visa",
        )],
    },
    RoleSpec {
        role: ProviderRole::Email,
        base_var: "SENDGRID_API_BASE",
        default_base: "https://api.sendgrid.com",
        key_var: "SENDGRID_API_KEY",
        mock_key: "SG.cairn_mock",
        settings: &[
            ("from-email", "SENDGRID_FROM_EMAIL", "orders@cairn.example"),
            ("from-name", "SENDGRID_FROM_NAME", "Cairn Shop"),
        ],
    },
    RoleSpec {
        role: ProviderRole::Shipping,
        base_var: "SHIPPO_API_BASE",
        default_base: "https://api.goshippo.com",
        key_var: "SHIPPO_API_KEY",
        mock_key: "shippo_test_cairn_mock",
        settings: &[
            ("carrier-account", "SHIPPO_CARRIER_ACCOUNT", ""),
            (
                "servicelevel-token",
                "SHIPPO_SERVICELEVEL_TOKEN",
                "usps_priority",
            ),
            ("label-file-type", "SHIPPO_LABEL_FILE_TYPE", "PDF_4x6"),
            ("from-name", "SHIPPO_FROM_NAME", "Cairn Shop"),
            ("from-street1", "SHIPPO_FROM_STREET1", "215 Clayton St."),
            ("from-city", "SHIPPO_FROM_CITY", "San Francisco"),
            ("from-state", "SHIPPO_FROM_STATE", "CA"),
            ("from-zip", "SHIPPO_FROM_ZIP", "94117"),
            ("from-country", "SHIPPO_FROM_COUNTRY", "US"),
            ("from-email", "SHIPPO_FROM_EMAIL", "shipping@cairn.example"),
            ("from-phone", "SHIPPO_FROM_PHONE", "+1 555 341 9393"),
        ],
    },
];

/// Provider settings from the environment (`env` looks a variable up). With `mock_base`, every
/// role points at the fake API there and uses test keys.
pub fn provider_settings(
    env: &dyn Fn(&str) -> Option<String>,
    mock_base: Option<&str>,
) -> Result<BTreeMap<ProviderRole, ProviderSettings>, ConfigError> {
    let mut out = BTreeMap::new();
    for spec in &ROLES {
        // A base the operator set (or mock mode's fake) may be on loopback or a private network.
        let (base, explicit) = match (mock_base, env(spec.base_var)) {
            (Some(base), _) => (base.to_string(), true),
            (None, Some(base)) => (base, true),
            (None, None) => (spec.default_base.to_string(), false),
        };
        let base = base.trim_end_matches('/').to_string();
        let origin = Origin::parse(&base).map_err(|message| ConfigError::Invalid {
            var: spec.base_var,
            message,
        })?;
        let key = match mock_base {
            Some(_) => spec.mock_key.to_string(),
            None => env(spec.key_var).filter(|k| !k.trim().is_empty()).ok_or(
                ConfigError::MissingKey {
                    var: spec.key_var,
                    role: spec.role.as_str(),
                },
            )?,
        };
        let mut config = BTreeMap::from([("api-base".to_string(), base)]);
        for (name, var, default) in spec.settings {
            let value = env(var).unwrap_or_else(|| match (mock_base, *name) {
                (Some(_), "carrier-account") => "cairn_mock_carrier".to_string(),
                _ => default.to_string(),
            });
            if !value.is_empty() {
                config.insert(name.to_string(), value);
            }
        }
        let policy = Policy {
            allow_private: if explicit {
                vec![origin.clone()]
            } else {
                Vec::new()
            },
            allow: vec![origin],
            secrets: BTreeMap::from([(spec.key_var.to_string(), Secret::new(key))]),
            ..Policy::deny_all()
        };
        out.insert(
            spec.role,
            ProviderSettings {
                config: Arc::new(config),
                policy: Arc::new(policy),
            },
        );
    }
    Ok(out)
}

/// Runtime settings with the defaults used by `cairn serve`.
pub fn runtime_settings(
    providers: BTreeMap<ProviderRole, ProviderSettings>,
    cache_dir: Option<PathBuf>,
) -> RuntimeSettings {
    RuntimeSettings {
        providers,
        service_policy: Arc::new(Policy::deny_all()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_key_names_the_variable() {
        let err = provider_settings(&|_| None, None).unwrap_err();
        assert!(err.to_string().contains("STRIPE_API_KEY"), "{err}");
    }

    #[test]
    fn mock_mode_points_every_role_at_the_fake() {
        let settings = provider_settings(&|_| None, Some("http://127.0.0.1:4000/")).unwrap();
        for role in ProviderRole::ALL {
            let s = &settings[&role];
            assert_eq!(s.config["api-base"], "http://127.0.0.1:4000");
            assert_eq!(s.policy.allow[0].to_string(), "http://127.0.0.1:4000");
        }
        assert!(
            settings[&ProviderRole::Payments]
                .policy
                .secrets
                .contains_key("STRIPE_API_KEY")
        );
    }

    #[test]
    fn base_urls_and_settings_come_from_the_environment() {
        let env = |var: &str| match var {
            "STRIPE_API_KEY" | "SENDGRID_API_KEY" | "SHIPPO_API_KEY" => Some("k".to_string()),
            "STRIPE_API_BASE" => Some("http://localhost:9999".to_string()),
            "STRIPE_DEFAULT_PAYMENT_METHOD" => Some("pm_card_visa".to_string()),
            _ => None,
        };
        let settings = provider_settings(&env, None).unwrap();
        let stripe = &settings[&ProviderRole::Payments];
        assert_eq!(stripe.config["api-base"], "http://localhost:9999");
        assert_eq!(stripe.config["default-payment-method"], "pm_card_visa");
        // Set by the operator: may be on loopback. The default public base may not.
        assert_eq!(stripe.policy.allow_private, stripe.policy.allow);
        assert!(
            settings[&ProviderRole::Email]
                .policy
                .allow_private
                .is_empty()
        );
        assert_eq!(
            settings[&ProviderRole::Email].config["api-base"],
            "https://api.sendgrid.com"
        );
    }
}
