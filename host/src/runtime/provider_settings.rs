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
use crate::outbound::{Grant, Grants, Origin, Policy, Secret};

/// Looks a variable up.
type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Where the host reads secret values (the process environment, or a lookup set by tests), and
/// which of them the operator lets a deployment be granted (`CAIRN_GRANTABLE_SECRETS`): a
/// deployment never gets an arbitrary host variable (`DATABASE_URL`, a cloud key).
#[derive(Clone)]
pub struct SecretEnv {
    lookup: Arc<Lookup>,
    grantable: Arc<BTreeMap<String, Grantable>>,
}

impl SecretEnv {
    /// The host's process environment, of which `grantable` may be granted.
    pub fn process(grantable: Vec<Grantable>) -> Self {
        Self::new(|name| std::env::var(name).ok(), grantable)
    }

    pub fn new(
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
        grantable: Vec<Grantable>,
    ) -> Self {
        SecretEnv {
            lookup: Arc::new(lookup),
            grantable: Arc::new(grantable.into_iter().map(|g| (g.name.clone(), g)).collect()),
        }
    }

    /// The grant of secret `name` to a deployment whose allow-list is `allow`: bound to the
    /// origins the operator bound it to, else to that allow-list. `Ok(None)` when the variable
    /// is not set.
    fn grant(&self, name: &str, allow: &[Origin]) -> Result<Option<Grant>, SettingsError> {
        let Some(grantable) = self.grantable.get(name) else {
            return Err(SettingsError::NotGrantable(name.to_string()));
        };
        let Some(value) = (self.lookup)(name).filter(|v| !v.trim().is_empty()) else {
            return Ok(None);
        };
        let origins = if grantable.origins.is_empty() {
            allow.to_vec()
        } else {
            grantable.origins.clone()
        };
        Ok(Some(Grant {
            secret: Secret::new(value),
            origins,
            header: grantable.header.clone(),
        }))
    }
}

impl fmt::Debug for SecretEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretEnv")
            .field("grantable", &self.grantable.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A host variable the operator lets deployments be granted, and where it may be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grantable {
    pub name: String,
    /// The origins it may be sent to; empty: those of the deployment's allow-list.
    pub origins: Vec<Origin>,
    /// The one header it may be sent in (lower case); `None`: any.
    pub header: Option<String>,
}

impl Grantable {
    /// `CAIRN_GRANTABLE_SECRETS` entries: `NAME`, `NAME=ORIGIN`, `NAME[HEADER]=ORIGIN` or
    /// `NAME[HEADER]`; a name given again adds origins.
    pub fn parse_all<'a>(
        entries: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<Grantable>, String> {
        let mut out: Vec<Grantable> = Vec::new();
        for entry in entries.into_iter().map(str::trim).filter(|e| !e.is_empty()) {
            let (head, origin) = match entry.split_once('=') {
                Some((head, origin)) => (head.trim(), Some(origin.trim())),
                None => (entry, None),
            };
            let (name, header) = match head.split_once('[') {
                Some((name, rest)) => {
                    let header = rest
                        .strip_suffix(']')
                        .filter(|h| {
                            !h.is_empty()
                                && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        })
                        .ok_or_else(|| format!("{entry:?}: expected NAME[HEADER]=ORIGIN"))?;
                    (name.trim(), Some(header.to_ascii_lowercase()))
                }
                None => (head, None),
            };
            if !valid_secret_name(name) {
                return Err(format!(
                    "{entry:?}: {name:?} is not a variable name (upper-case letters, digits, '_')"
                ));
            }
            let origin = origin
                .map(|o| Origin::parse(o).map_err(|e| format!("{entry:?}: {e}")))
                .transpose()?;
            match out.iter_mut().find(|g| g.name == name) {
                Some(known) if known.header != header => {
                    return Err(format!("{entry:?}: {name} is bound to two headers"));
                }
                Some(known) => known.origins.extend(origin),
                None => out.push(Grantable {
                    name: name.to_string(),
                    origins: origin.into_iter().collect(),
                    header,
                }),
            }
        }
        Ok(out)
    }
}

/// Upper-case letters, digits and `_`, starting with a letter.
fn valid_secret_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Settings as an operator gives them for one provider deployment. Stored and shown as is: it
/// holds secret names, never values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderOverrides {
    /// What `provider-context.config(name)` answers (`api-base`, provider defaults...).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Origins (`https://host:port`) the component may reach, on the public internet. Empty:
    /// the origin of `config["api-base"]`.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Origins the component may reach that are (or whose names resolve to) loopback, private
    /// or link-local addresses: a separate, explicit grant (a fake on loopback, an API on the
    /// private network). Each is on the allow-list too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_private: Vec<String>,
    /// Names of the host environment variables granted as `{{secret:NAME}}`.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// With no other settings: run with the role's settings (the host's defaults for what the
    /// component exports) including the role's secret (`STRIPE_API_KEY`...). Without it, a
    /// deployment that is not one of the host's bundled components gets the role's settings but
    /// not its secret.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inherit_secrets: bool,
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
    #[error(
        "secrets: {0} is not a secret the operator lets deployments be granted (add it to \
         CAIRN_GRANTABLE_SECRETS)"
    )]
    NotGrantable(String),
    #[error("config, allow and secrets apply to provider components only; this one is a service")]
    NotAProvider,
    #[error(
        "inheritSecrets takes the role's settings: give it alone, without config, allow or secrets"
    )]
    InheritWithOwn,
}

impl ProviderOverrides {
    pub fn is_empty(&self) -> bool {
        !self.replaces_role() && !self.inherit_secrets
    }

    /// Whether these settings replace the role's (anything but `inheritSecrets` given).
    pub fn replaces_role(&self) -> bool {
        !(self.config.is_empty()
            && self.allow.is_empty()
            && self.allow_private.is_empty()
            && self.secrets.is_empty())
    }

    /// The allow-list these settings give: the listed origins (else the `api-base` origin), and
    /// the private ones.
    fn origins(&self) -> Result<Vec<Origin>, SettingsError> {
        let mut origins = if self.allow.is_empty() {
            match self.config.get("api-base") {
                Some(base) => Origin::parse(base)
                    .map(|o| vec![o])
                    .map_err(|e| SettingsError::Config(format!("api-base: {e}")))?,
                None => Vec::new(),
            }
        } else {
            self.allow
                .iter()
                .map(|entry| Origin::parse(entry).map_err(SettingsError::Allow))
                .collect::<Result<Vec<_>, _>>()?
        };
        for private in self.private_origins()? {
            if !origins.contains(&private) {
                origins.push(private);
            }
        }
        Ok(origins)
    }

    /// The origins granted non-public addresses.
    fn private_origins(&self) -> Result<Vec<Origin>, SettingsError> {
        self.allow_private
            .iter()
            .map(|entry| {
                Origin::parse(entry).map_err(|e| SettingsError::Allow(format!("allowPrivate: {e}")))
            })
            .collect()
    }

    /// Checks the settings are well formed (origins, secret names, config names).
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.inherit_secrets && self.replaces_role() {
            return Err(SettingsError::InheritWithOwn);
        }
        if let Some(name) = self.config.keys().find(|k| k.trim().is_empty()) {
            return Err(SettingsError::Config(format!("empty name {name:?}")));
        }
        self.origins()?;
        for name in &self.secrets {
            if !valid_secret_name(name) {
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
        let mut secrets = Grants::new();
        for name in &self.secrets {
            match env.grant(name, &allow) {
                Ok(Some(grant)) => {
                    secrets.insert(name.clone(), grant);
                }
                Ok(None) => {
                    if !lenient {
                        return Err(SettingsError::MissingSecret(name.clone()));
                    }
                    tracing::error!(
                        secret = %name,
                        "a provider deployment names a secret the host's environment does not \
                         have; requests using it will be refused"
                    );
                }
                Err(e) => {
                    if !lenient {
                        return Err(e);
                    }
                    tracing::error!(
                        secret = %name,
                        "a provider deployment names a secret that is no longer grantable; \
                         requests using it will be refused"
                    );
                }
            }
        }
        let mut config = self.config.clone();
        if let Some(base) = config.get_mut("api-base") {
            *base = base.trim_end_matches('/').to_string();
        }
        Ok(ProviderSettings {
            config: Arc::new(config),
            policy: Arc::new(Policy {
                allow_private: self.private_origins()?,
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
        let grantable = Grantable::parse_all(["ADYEN_API_KEY", "NOPE_KEY"]).unwrap();
        SecretEnv::new(
            |name| match name {
                "ADYEN_API_KEY" => Some("adyen_secret".to_string()),
                "DATABASE_URL" => Some("postgres://root@db/prod".to_string()),
                _ => None,
            },
            grantable,
        )
    }

    fn given(json: serde_json::Value) -> ProviderOverrides {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn settings_resolve_to_their_own_policy() {
        let own = given(serde_json::json!({
            "config": {"api-base": "http://127.0.0.1:4000/", "merchant-account": "Shop"},
            "allowPrivate": ["http://127.0.0.1:4000"],
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
            settings.policy.secrets["ADYEN_API_KEY"].secret.expose(),
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
    fn only_grantable_secrets_are_granted_and_each_to_its_origins() {
        let asks = |name: &str| {
            given(serde_json::json!({"secrets": [name], "allow": ["https://a.example"]}))
        };
        // Set in the environment but not grantable: refused, as an unset one would be.
        for name in ["DATABASE_URL", "HOME_DIR_KEY"] {
            let err = asks(name).resolve(&env(), false).unwrap_err();
            assert!(matches!(err, SettingsError::NotGrantable(_)), "{err}");
            assert!(!err.to_string().contains("postgres://"), "{err}");
            let restored = asks(name).resolve(&env(), true).unwrap();
            assert!(restored.policy.secrets.is_empty());
        }
        // Unbound: the deployment's allow-list.
        let settings = asks("ADYEN_API_KEY").resolve(&env(), false).unwrap();
        let grant = &settings.policy.secrets["ADYEN_API_KEY"];
        assert_eq!(
            grant.origins,
            vec![Origin::parse("https://a.example").unwrap()]
        );
        // Bound by the operator: there only, in that header only.
        let bound = Grantable::parse_all([
            "ADYEN_API_KEY[X-API-Key]=https://checkout-test.adyen.com",
            "ADYEN_API_KEY[x-api-key]=https://pal-test.adyen.com",
        ])
        .unwrap();
        let env = SecretEnv::new(|_| Some("v".into()), bound);
        let settings = asks("ADYEN_API_KEY").resolve(&env, false).unwrap();
        let grant = &settings.policy.secrets["ADYEN_API_KEY"];
        assert_eq!(grant.origins.len(), 2);
        assert_eq!(
            grant.origins[1].to_string(),
            "https://pal-test.adyen.com:443"
        );
        assert_eq!(grant.header.as_deref(), Some("x-api-key"));
        for bad in [
            "lower",
            "A[]=https://x",
            "A=ftp://x",
            "A[h]=https://x,A=https://y",
        ] {
            assert!(Grantable::parse_all(bad.split(',')).is_err(), "{bad}");
        }
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
