//! Running one provider call: a fresh, separately limited store for the provider component,
//! told the call's idempotency key and its role's configuration.

use std::sync::Arc;

use serde::Serialize;
use wasmtime::Store;

use super::{HostState, ProviderCtx, ProviderRole, Role, Runtime};
use crate::bindings::commerce_types::{
    Charge, ChargeRequest, EmailMessage, EmailReceipt, Label, LabelRequest, ProviderError, Refund,
    RefundRequest,
};
use crate::bindings::email_provider::EmailProviderPre;
use crate::bindings::payments_provider::PaymentsProviderPre;
use crate::bindings::shipping_provider::ShippingProviderPre;
use crate::journal::JournalError;

/// A call a service makes to a provider role. Serialized as the journal entry's arguments.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ProviderCall {
    CreateCharge(ChargeRequest),
    RefundCharge(RefundRequest),
    SendEmail(EmailMessage),
    CreateLabel(LabelRequest),
}

impl ProviderCall {
    /// The journal entry name: `role.function`.
    pub fn name(&self) -> &'static str {
        match self {
            ProviderCall::CreateCharge(_) => "payments.create-charge",
            ProviderCall::RefundCharge(_) => "payments.refund-charge",
            ProviderCall::SendEmail(_) => "email.send-email",
            ProviderCall::CreateLabel(_) => "shipping.create-label",
        }
    }

    pub fn role(&self) -> ProviderRole {
        match self {
            ProviderCall::CreateCharge(_) | ProviderCall::RefundCharge(_) => ProviderRole::Payments,
            ProviderCall::SendEmail(_) => ProviderRole::Email,
            ProviderCall::CreateLabel(_) => ProviderRole::Shipping,
        }
    }
}

/// What the provider answered.
pub enum ProviderOutput {
    Charge(Result<Charge, ProviderError>),
    Refund(Result<Refund, ProviderError>),
    Email(Result<EmailReceipt, ProviderError>),
    Label(Result<Label, ProviderError>),
}

impl ProviderOutput {
    /// The provider said "try again later": unavailable or rate limited.
    pub fn is_retryable_error(&self) -> bool {
        let error = match self {
            ProviderOutput::Charge(r) => r.as_ref().err(),
            ProviderOutput::Refund(r) => r.as_ref().err(),
            ProviderOutput::Email(r) => r.as_ref().err(),
            ProviderOutput::Label(r) => r.as_ref().err(),
        };
        matches!(
            error,
            Some(ProviderError::Unavailable(_) | ProviderError::RateLimited(_))
        )
    }
}

/// Runs `call` on provider deployment `deployment_id`. Returns the answer and the provider's HTTP
/// exchanges. A provider trap is a retryable effect failure: nothing is journaled.
pub async fn invoke(
    runtime: &Arc<Runtime>,
    deployment_id: &str,
    idempotency_key: &str,
    call: ProviderCall,
) -> Result<(ProviderOutput, Vec<serde_json::Value>), JournalError> {
    let role = call.role();
    let deployment = runtime
        .registry()
        .deployments
        .get(deployment_id)
        .cloned()
        .ok_or_else(|| {
            JournalError::Misuse(format!("provider deployment {deployment_id} is gone"))
        })?;
    let settings = runtime
        .settings
        .providers
        .get(&role)
        .cloned()
        .ok_or_else(|| {
            JournalError::Misuse(format!("no settings for provider role {}", role.as_str()))
        })?;
    let ctx = ProviderCtx {
        idempotency_key: idempotency_key.to_string(),
        config: settings.config,
        policy: settings.policy,
        runtime: runtime.clone(),
        exchanges: Vec::new(),
    };
    let seed = seed_of(idempotency_key);
    let state = HostState::new(
        deployment_id.into(),
        Role::Provider(Box::new(ctx)),
        runtime.settings.memory_limit,
        seed,
        None,
    );
    let mut store = Store::new(&runtime.engine, state);
    store.limiter(|s| &mut s.limits);
    let pre = deployment.pre.clone();
    let trapped = |e: wasmtime::Error| {
        JournalError::Effect(format!(
            "provider {} ({deployment_id}) trapped: {e:#}",
            role.as_str()
        ))
    };
    let output = match call {
        ProviderCall::CreateCharge(req) => {
            let p = PaymentsProviderPre::new(pre).map_err(trapped)?;
            let i = p.instantiate_async(&mut store).await.map_err(trapped)?;
            let r = i
                .cairn_commerce_payments()
                .call_create_charge(&mut store, &req)
                .await;
            ProviderOutput::Charge(r.map_err(trapped)?)
        }
        ProviderCall::RefundCharge(req) => {
            let p = PaymentsProviderPre::new(pre).map_err(trapped)?;
            let i = p.instantiate_async(&mut store).await.map_err(trapped)?;
            let r = i
                .cairn_commerce_payments()
                .call_refund_charge(&mut store, &req)
                .await;
            ProviderOutput::Refund(r.map_err(trapped)?)
        }
        ProviderCall::SendEmail(msg) => {
            let p = EmailProviderPre::new(pre).map_err(trapped)?;
            let i = p.instantiate_async(&mut store).await.map_err(trapped)?;
            let r = i
                .cairn_commerce_email()
                .call_send_email(&mut store, &msg)
                .await;
            ProviderOutput::Email(r.map_err(trapped)?)
        }
        ProviderCall::CreateLabel(req) => {
            let p = ShippingProviderPre::new(pre).map_err(trapped)?;
            let i = p.instantiate_async(&mut store).await.map_err(trapped)?;
            let r = i
                .cairn_commerce_shipping()
                .call_create_label(&mut store, &req)
                .await;
            ProviderOutput::Label(r.map_err(trapped)?)
        }
    };
    let exchanges = match store.into_data().role {
        Role::Provider(ctx) => ctx.exchanges,
        _ => Vec::new(),
    };
    Ok((output, exchanges))
}

/// A per-call seed for the provider's WASI randomness.
pub(crate) fn seed_of(text: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::commerce_types::Decline;

    /// Golden: journal results are persisted; replaying an old journal must decode them.
    #[test]
    fn provider_results_have_a_pinned_journal_encoding() {
        let ok: Result<Charge, ProviderError> = Ok(Charge {
            id: "ch_1".into(),
            amount: 5000,
            currency: "usd".into(),
            status: "succeeded".into(),
        });
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"Ok":{"id":"ch_1","amount":5000,"currency":"usd","status":"succeeded"}}"#
        );
        let declined: Result<Charge, ProviderError> = Err(ProviderError::Declined(Decline {
            code: "card_declined".into(),
            message: "Your card was declined.".into(),
            charge_id: Some("ch_2".into()),
        }));
        let text = r#"{"Err":{"Declined":{"code":"card_declined","message":"Your card was declined.","charge_id":"ch_2"}}}"#;
        assert_eq!(serde_json::to_string(&declined).unwrap(), text);
        let back: Result<Charge, ProviderError> = serde_json::from_str(text).unwrap();
        assert!(
            matches!(back, Err(ProviderError::Declined(d)) if d.charge_id.as_deref() == Some("ch_2"))
        );
        let unavailable: Result<Label, ProviderError> = Err(ProviderError::RateLimited(Some(1500)));
        assert_eq!(
            serde_json::to_string(&unavailable).unwrap(),
            r#"{"Err":{"RateLimited":1500}}"#
        );
    }

    #[test]
    fn calls_are_named_role_dot_function() {
        let call = ProviderCall::SendEmail(EmailMessage {
            to: "a@example.com".into(),
            to_name: None,
            subject: "s".into(),
            text: "t".into(),
            html: None,
            order_id: "o".into(),
        });
        assert_eq!(call.name(), "email.send-email");
        assert_eq!(call.role(), ProviderRole::Email);
    }
}
