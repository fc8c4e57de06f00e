//! The showcase components the binary deploys at start (the order orchestrator, the webhook
//! processor, and the Stripe, SendGrid and Shippo providers), the providers' default settings
//! from the environment (`STRIPE_*`, `SENDGRID_*`, `SHIPPO_*`), and the webhook endpoints. Nothing else in the host knows them: to the runtime
//! they are defaults keyed by the interface a provider exports, which a deployment's own
//! settings replace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::ConfigError;
use crate::outbound::{Grant, Grants, Origin, Policy, Secret};
use crate::runtime::ProviderSettings;
use crate::runtime::callee::InDoubtPolicy;
use crate::webhooks::endpoint::{EndpointSpec, VerifierSpec};

/// The bundled component files, in the order they are deployed.
pub const BUNDLED: [&str; 5] = [
    "stripe_payments.wasm",
    "sendgrid_email.wasm",
    "shippo_shipping.wasm",
    "order_orchestrator.wasm",
    "webhook_processor.wasm",
];

pub fn bundled_components(dir: &Path) -> Vec<PathBuf> {
    BUNDLED.iter().map(|name| dir.join(name)).collect()
}

/// A bundled provider: the interface it exports (its defaults are keyed by it) and where its
/// settings come from.
struct Bundled {
    /// For messages: `stripe`.
    name: &'static str,
    interface: &'static str,
    base_var: &'static str,
    default_base: &'static str,
    key_var: &'static str,
    mock_key: &'static str,
    /// (config name, environment variable, default).
    settings: &'static [(&'static str, &'static str, &'static str)],
}

const PROVIDERS: [Bundled; 3] = [
    Bundled {
        name: "stripe",
        interface: "cairn:commerce/payments@0.1.0",
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
    Bundled {
        name: "sendgrid",
        interface: "cairn:commerce/email@0.1.0",
        base_var: "SENDGRID_API_BASE",
        default_base: "https://api.sendgrid.com",
        key_var: "SENDGRID_API_KEY",
        mock_key: "SG.cairn_mock",
        settings: &[
            ("from-email", "SENDGRID_FROM_EMAIL", "orders@cairn.example"),
            ("from-name", "SENDGRID_FROM_NAME", "Cairn Shop"),
        ],
    },
    Bundled {
        name: "shippo",
        interface: "cairn:commerce/shipping@0.1.0",
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

/// The bundled webhook endpoints: Stripe (`Stripe-Signature`, `STRIPE_WEBHOOK_SECRET`, a list
/// while rotating), Shippo (URL token, `SHIPPO_WEBHOOK_TOKEN`) and SendGrid (ECDSA,
/// `SENDGRID_WEBHOOK_PUBLIC_KEY`), each to its handler of the bundled `WebhookProcessor`. Each is
/// on when its variable is set.
pub fn webhook_specs() -> Vec<EndpointSpec> {
    let spec = |name: &str, verifier, var: &str, handler: &str, batch, ids: &[&str]| EndpointSpec {
        name: name.to_string(),
        verifier,
        secret_env: var.to_string(),
        target: format!("WebhookProcessor/{handler}"),
        batch,
        event_id: ids.iter().map(|p| p.to_string()).collect(),
        tolerance_secs: None,
        allow_from_env: None,
    };
    let mut shippo = spec(
        "shippo",
        VerifierSpec::UrlToken,
        "SHIPPO_WEBHOOK_TOKEN",
        "Shippo",
        false,
        &[
            "/data/tracking_status/object_id",
            "/data/object_id+/data/status",
        ],
    );
    shippo.allow_from_env = Some("SHIPPO_WEBHOOK_ALLOW_FROM".into());
    vec![
        spec(
            "stripe",
            VerifierSpec::StripeSignature,
            "STRIPE_WEBHOOK_SECRET",
            "Stripe",
            false,
            &["/id"],
        ),
        // A tracking update carries its status object's id; a transaction update the
        // transaction's id, which stays the same across its statuses.
        shippo,
        spec(
            "sendgrid",
            VerifierSpec::SendgridEcdsa,
            "SENDGRID_WEBHOOK_PUBLIC_KEY",
            "Sendgrid",
            true,
            &["/sg_event_id"],
        ),
    ]
}

/// The bundled services' configuration from the environment: the order orchestrator's
/// `payment-timeout` (`PAYMENT_TIMEOUT`, e.g. `1h` or `90s`; the orchestrator's default, one
/// hour, when unset), how long an order waits for a pending charge's webhook.
pub fn service_config(
    env: &dyn Fn(&str) -> Option<String>,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut orchestrator = BTreeMap::new();
    if let Some(timeout) = env("PAYMENT_TIMEOUT").filter(|t| !t.trim().is_empty()) {
        orchestrator.insert("payment-timeout".to_string(), timeout.trim().to_string());
    }
    BTreeMap::from([("OrderOrchestrator".to_string(), orchestrator)])
}

/// The bundled orchestrator's handlers that only the webhook processor and the orchestrator
/// itself invoke (a caller on the ingress could otherwise claim a payment succeeded).
pub fn internal_handlers() -> Vec<String> {
    ["OnEvent", "ApplyEvent", "ApplyCancel"]
        .iter()
        .map(|h| format!("OrderOrchestrator/{h}"))
        .collect()
}

/// The bundled providers' in-doubt policies: SendGrid can neither deduplicate nor look up a
/// send, and a customer is better off without a second confirmation than with two, so a send a
/// crash left in doubt is not repeated. (`--in-doubt` overrides it.)
pub fn in_doubt_defaults() -> BTreeMap<String, InDoubtPolicy> {
    BTreeMap::from([(
        "cairn:commerce/email.send-email".to_string(),
        InDoubtPolicy::AtMostOnce,
    )])
}

/// The bundled providers' default settings from the environment (`env` looks a variable up),
/// by the interface each exports. With `mock_base`, every one points at the fake API there and
/// uses test keys.
pub fn provider_defaults(
    env: &dyn Fn(&str) -> Option<String>,
    mock_base: Option<&str>,
) -> Result<BTreeMap<String, ProviderSettings>, ConfigError> {
    let mut out = BTreeMap::new();
    for spec in &PROVIDERS {
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
                    name: spec.name,
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
            // The key goes to its provider's API only, in `Authorization`.
            secrets: Grants::from([(
                spec.key_var.to_string(),
                Grant {
                    header: Some("authorization".to_string()),
                    ..Grant::to(Secret::new(key), vec![origin.clone()])
                },
            )]),
            allow: vec![origin],
            ..Policy::deny_all()
        };
        out.insert(
            spec.interface.to_string(),
            ProviderSettings {
                config: Arc::new(config),
                policy: Arc::new(policy),
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYMENTS: &str = "cairn:commerce/payments@0.1.0";
    const EMAIL: &str = "cairn:commerce/email@0.1.0";

    #[test]
    fn missing_key_names_the_variable() {
        let err = provider_defaults(&|_| None, None).unwrap_err();
        assert!(err.to_string().contains("STRIPE_API_KEY"), "{err}");
    }

    #[test]
    fn mock_mode_points_every_role_at_the_fake() {
        let settings = provider_defaults(&|_| None, Some("http://127.0.0.1:4000/")).unwrap();
        assert_eq!(settings.len(), 3);
        for s in settings.values() {
            assert_eq!(s.config["api-base"], "http://127.0.0.1:4000");
            assert_eq!(s.policy.allow[0].to_string(), "http://127.0.0.1:4000");
        }
        assert!(
            settings[PAYMENTS]
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
        let settings = provider_defaults(&env, None).unwrap();
        let stripe = &settings[PAYMENTS];
        assert_eq!(stripe.config["api-base"], "http://localhost:9999");
        assert_eq!(stripe.config["default-payment-method"], "pm_card_visa");
        // Set by the operator: may be on loopback. The default public base may not.
        assert_eq!(stripe.policy.allow_private, stripe.policy.allow);
        assert!(settings[EMAIL].policy.allow_private.is_empty());
        assert_eq!(
            settings[EMAIL].config["api-base"],
            "https://api.sendgrid.com"
        );
    }
}
