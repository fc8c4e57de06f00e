//! Provider settings given with one deployment (`config`, `allow`, `secrets` on
//! `POST /deployments`), which replace the role's settings for that deployment: a second payments
//! provider for another processor gets its own base URL, allow-list and key, not Stripe's.
//!
//! Only secret *names* travel over the admin API and are stored (with the deployment, in the
//! `limits` JSON column next to the sandbox limits). The values are read by the host from its
//! environment ([`SecretEnv`]) when the deployment is made and again when the host restores it
//! at start; they live only in memory, as [`Secret`]s that never print.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ProviderSettings;
use crate::outbound::{Origin, Policy, Secret};

/// Looks a variable up.
type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Where the host reads secret values: the process environment, or a lookup set by tests.
#[derive(Clone)]
pub struct SecretEnv(Arc<Lookup>);

impl SecretEnv {
    /// The host's process environment.
    pub fn process() -> Self {
        Self::from_fn(|name| std::env::var(name).ok())
    }

    pub fn from_fn(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        SecretEnv(Arc::new(lookup))
    }

    /// The non-empty value of variable `name`.
    pub fn get(&self, name: &str) -> Option<Secret> {
        (self.0)(name)
            .filter(|v| !v.trim().is_empty())
            .map(Secret::new)
    }
}

impl fmt::Debug for SecretEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretEnv(..)")
    }
}

/// Settings as an operator gives them for one provider deployment. Stored and shown as is: it
/// holds secret names, never values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderOverrides {
    /// What `provider-context.config(name)` answers (`api-base`, provider defaults...).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Origins (`https://host:port`) the component may reach. Listed explicitly, so they may be
    /// on loopback or a private network. Empty: the origin of `config["api-base"]`.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Names of the host environment variables granted as `{{secret:NAME}}`.
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// Why given settings were refused (a 400 for the deployer).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("allow: {0}")]
    Allow(String),
    #[error("config: {0}")]
    Config(String),
    #[error(
        "secrets: {0:?} is not a valid name (upper-case letters, digits and '_', starting with a \
         letter)"
    )]
    SecretName(String),
    #[error("secrets: {0} is not set in the host's environment")]
    MissingSecret(String),
    #[error("config, allow and secrets apply to provider components only; this one is a service")]
    NotAProvider,
}

impl ProviderOverrides {
    pub fn is_empty(&self) -> bool {
        self.config.is_empty() && self.allow.is_empty() && self.secrets.is_empty()
    }

    /// The allow-list these settings give: the listed origins, else the `api-base` origin.
    fn origins(&self) -> Result<Vec<Origin>, SettingsError> {
        if self.allow.is_empty() {
            return match self.config.get("api-base") {
                Some(base) => Origin::parse(base)
                    .map(|o| vec![o])
                    .map_err(|e| SettingsError::Config(format!("api-base: {e}"))),
                None => Ok(Vec::new()),
            };
        }
        self.allow
            .iter()
            .map(|entry| Origin::parse(entry).map_err(SettingsError::Allow))
            .collect()
    }

    /// Checks the settings are well formed (origins, secret names, config names).
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(name) = self.config.keys().find(|k| k.trim().is_empty()) {
            return Err(SettingsError::Config(format!("empty name {name:?}")));
        }
        self.origins()?;
        for name in &self.secrets {
            let mut chars = name.chars();
            let valid = chars.next().is_some_and(|c| c.is_ascii_uppercase())
                && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(SettingsError::SecretName(name.clone()));
            }
        }
        Ok(())
    }

    /// What the component runs with. Every named secret must be in `env` unless `lenient`
    /// (restoring at start: a missing one is logged and left out, so requests that need it are
    /// refused as `denied` instead of the whole host failing to start).
    pub fn resolve(
        &self,
        env: &SecretEnv,
        lenient: bool,
    ) -> Result<ProviderSettings, SettingsError> {
        self.validate()?;
        let allow = self.origins()?;
        let mut secrets = BTreeMap::new();
        for name in &self.secrets {
            match env.get(name) {
                Some(value) => {
                    secrets.insert(name.clone(), value);
                }
                None if lenient => {
                    tracing::error!(
                        secret = %name,
                        "a provider deployment names a secret the host's environment does not \
                         have; requests using it will be refused"
                    );
                }
                None => return Err(SettingsError::MissingSecret(name.clone())),
            }
        }
        let mut config = self.config.clone();
        if let Some(base) = config.get_mut("api-base") {
            *base = base.trim_end_matches('/').to_string();
        }
        Ok(ProviderSettings {
            config: Arc::new(config),
            policy: Arc::new(Policy {
                allow_private: allow.clone(),
                allow,
                secrets,
                ..Policy::deny_all()
            }),
        })
    }
}

/// A deployment's own provider settings: as given (stored, shown) and as run.
#[derive(Debug, Clone)]
pub struct OwnSettings {
    pub given: ProviderOverrides,
    pub resolved: ProviderSettings,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> SecretEnv {
        SecretEnv::from_fn(|name| (name == "ADYEN_API_KEY").then(|| "adyen_secret".to_string()))
    }

    fn given(json: serde_json::Value) -> ProviderOverrides {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn settings_resolve_to_their_own_policy() {
        let own = given(serde_json::json!({
            "config": {"api-base": "http://127.0.0.1:4000/", "merchant-account": "Shop"},
            "allow": ["http://127.0.0.1:4000"],
            "secrets": ["ADYEN_API_KEY"],
        }));
        let settings = own.resolve(&env(), false).unwrap();
        assert_eq!(settings.config["api-base"], "http://127.0.0.1:4000");
        assert_eq!(
            settings.policy.allow[0].to_string(),
            "http://127.0.0.1:4000"
        );
        assert_eq!(settings.policy.allow_private, settings.policy.allow);
        assert_eq!(
            settings.policy.secrets["ADYEN_API_KEY"].expose(),
            "adyen_secret"
        );
        assert!(!format!("{settings:?}").contains("adyen_secret"));
        // Without `allow`, the api-base origin is the allow-list.
        let own = given(
            serde_json::json!({"config": {"api-base": "https://checkout-test.adyen.com/checkout"}}),
        );
        let settings = own.resolve(&env(), false).unwrap();
        assert_eq!(
            settings.policy.allow[0].to_string(),
            "https://checkout-test.adyen.com:443"
        );
    }

    #[test]
    fn bad_settings_name_the_problem() {
        let missing = given(serde_json::json!({"secrets": ["NOPE_KEY"]}));
        let err = missing.resolve(&env(), false).unwrap_err();
        assert!(err.to_string().contains("NOPE_KEY"), "{err}");
        assert!(missing.resolve(&env(), true).is_ok());
        let lower = given(serde_json::json!({"secrets": ["path"]}));
        assert!(matches!(
            lower.validate(),
            Err(SettingsError::SecretName(_))
        ));
        let ftp = given(serde_json::json!({"allow": ["ftp://x"]}));
        assert!(
            ftp.validate()
                .unwrap_err()
                .to_string()
                .starts_with("allow:")
        );
        assert!(
            serde_json::from_value::<ProviderOverrides>(serde_json::json!({"secret": []})).is_err()
        );
    }

    #[test]
    fn stored_form_holds_secret_names_and_round_trips() {
        let own = given(serde_json::json!({"config": {"a": "b"}, "secrets": ["ADYEN_API_KEY"]}));
        let stored = serde_json::to_value(&own).unwrap();
        assert_eq!(
            stored,
            serde_json::json!({"config": {"a": "b"}, "allow": [], "secrets": ["ADYEN_API_KEY"]})
        );
        assert_eq!(
            serde_json::from_value::<ProviderOverrides>(stored).unwrap(),
            own
        );
    }
}
