//! Running one provider call: a fresh, separately limited store for the provider component,
//! told the call's idempotency key and its configuration (the deployment's own, else its
//! role's), with the crash protocol for APIs that cannot deduplicate (started marker, lookup,
//! in-doubt policy).

use std::sync::Arc;

use serde::Serialize;
use wasmtime::Store;

use super::limits::describe_trap;
use super::registry::Linked;
use super::{HostState, ProviderCtx, ProviderRole, Role, Runtime};
use crate::bindings::commerce_types::{
    Charge, ChargeRequest, EmailMessage, EmailReceipt, Label, LabelRequest, ProviderError, Refund,
    RefundRequest, RetrySafety,
};
use crate::journal::JournalError;
use crate::storage::CallMarker;

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

/// What to do about a call a crash left in doubt when its API can neither deduplicate nor look
/// it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InDoubtPolicy {
    /// Do not repeat it; record it as in doubt (`provider-error::in-doubt`).
    AtMostOnce,
    /// Repeat it (it may then happen twice).
    AtLeastOnce,
}

impl InDoubtPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "at-most-once" => Some(InDoubtPolicy::AtMostOnce),
            "at-least-once" => Some(InDoubtPolicy::AtLeastOnce),
            _ => None,
        }
    }

    /// The default for an operation: email is at most once, everything else at least once.
    pub fn default_for(operation: &str) -> Self {
        if operation == "email.send-email" {
            InDoubtPolicy::AtMostOnce
        } else {
            InDoubtPolicy::AtLeastOnce
        }
    }
}

/// A provider instance ready for calls, in its own store.
enum Instance {
    Payments(crate::bindings::payments_provider::PaymentsProvider),
    Email(crate::bindings::email_provider::EmailProvider),
    Shipping(crate::bindings::shipping_provider::ShippingProvider),
}

/// The effect of one provider call, as the journal entry records it.
pub struct Performed {
    pub output: ProviderOutput,
    /// The provider's HTTP exchanges, each as JSON text.
    pub exchanges: Vec<String>,
    /// How a call found in doubt after a crash was resolved.
    pub recovery: Option<&'static str>,
}

impl Performed {
    /// The entry's detail as JSON text: the exchanges, the recovery if any, the provider
    /// deployment and the idempotency key. Written as text, since the exchanges already are.
    pub fn detail(&self, provider: &str, idempotency_key: &str) -> String {
        let text = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let mut detail = format!(r#"{{"exchanges":[{}]"#, self.exchanges.join(","));
        if let Some(recovery) = self.recovery {
            detail.push_str(&format!(r#","recovery":{}"#, text(recovery)));
        }
        detail.push_str(&format!(
            r#","provider":{},"idempotency_key":{}}}"#,
            text(provider),
            text(idempotency_key)
        ));
        detail
    }
}

/// Performs `call` (entry `index` of invocation `invocation_id`) on provider deployment
/// `deployment_id`, safely across crashes: unless the provider's API deduplicates on the
/// idempotency key, a durable "started" marker precedes the call; finding one means an earlier
/// attempt crashed mid-call, and the call is then looked up, repeated or declared in doubt
/// according to the provider's retry safety and the operation's policy.
pub async fn perform(
    runtime: &Arc<Runtime>,
    invocation_id: &str,
    deployment_id: &str,
    live: &crate::journal::Live,
    call: ProviderCall,
) -> Result<Performed, JournalError> {
    let role = call.role();
    let (mut store, instance) =
        instantiate(runtime, deployment_id, &live.idempotency_key, role).await?;
    let trapped = |e: wasmtime::Error| {
        JournalError::Effect(format!(
            "provider {} ({deployment_id}) trapped: {}",
            role.as_str(),
            describe_trap(&e)
        ))
    };
    let operation = call.name();
    let safety = retry_safety(runtime, deployment_id, operation, &mut store, &instance)
        .await
        .map_err(trapped)?;
    let mut recovery = None;
    if safety != RetrySafety::IdempotencyKey {
        // Normally committed with the entries before the call (see `needs_marker`).
        let in_doubt = match live.marked {
            Some(found) => found,
            None => {
                let marker = CallMarker {
                    index: live.index,
                    name: operation.to_string(),
                    idempotency_key: live.idempotency_key.clone(),
                };
                runtime
                    .storage
                    .mark_call_started(invocation_id, marker)
                    .await?
            }
        };
        if in_doubt {
            let policy = runtime
                .settings
                .in_doubt
                .get(operation)
                .copied()
                .unwrap_or_else(|| InDoubtPolicy::default_for(operation));
            tracing::warn!(
                invocation = invocation_id,
                entry = live.index,
                operation,
                ?safety,
                ?policy,
                "provider call in doubt after a crash"
            );
            if safety == RetrySafety::Lookup {
                if let Some(found) = find(&mut store, &instance, &call).await.map_err(trapped)? {
                    return Ok(done(store, found, Some("in doubt: found by lookup")));
                }
                recovery = Some("in doubt: not found by lookup, called again");
            } else if policy == InDoubtPolicy::AtMostOnce {
                let output = in_doubt_output(
                    &call,
                    format!(
                        "{operation} was started before a crash and cannot be checked; not repeated (at-most-once)"
                    ),
                );
                return Ok(done(
                    store,
                    output,
                    Some("in doubt: not repeated (at-most-once)"),
                ));
            } else {
                recovery = Some("in doubt: called again (at-least-once)");
            }
        }
    }
    let output = invoke(&mut store, &instance, call).await.map_err(trapped)?;
    Ok(done(store, output, recovery))
}

fn done(
    store: Store<HostState>,
    output: ProviderOutput,
    recovery: Option<&'static str>,
) -> Performed {
    let exchanges = match store.into_data().role {
        Role::Provider(ctx) => ctx.exchanges,
        _ => Vec::new(),
    };
    Performed {
        output,
        exchanges,
        recovery,
    }
}

async fn instantiate(
    runtime: &Arc<Runtime>,
    deployment_id: &str,
    idempotency_key: &str,
    role: ProviderRole,
) -> Result<(Store<HostState>, Instance), JournalError> {
    let deployment = runtime
        .registry()
        .deployments
        .get(deployment_id)
        .cloned()
        .ok_or_else(|| {
            JournalError::Misuse(format!("provider deployment {deployment_id} is gone"))
        })?;
    // A deployment's own settings replace its role's (another processor's base URL and key).
    let settings = match &deployment.own {
        Some(own) => own.resolved.clone(),
        None => runtime
            .settings
            .providers
            .get(&role)
            .cloned()
            .ok_or_else(|| {
                JournalError::Misuse(format!("no settings for provider role {}", role.as_str()))
            })?,
    };
    let ctx = ProviderCtx {
        idempotency_key: idempotency_key.to_string(),
        config: settings.config,
        policy: settings.policy,
        runtime: runtime.clone(),
        exchanges: Vec::new(),
    };
    let state = HostState::new(
        deployment_id.into(),
        Role::Provider(Box::new(ctx)),
        runtime.settings.memory_limit,
        seed_of(idempotency_key),
        None,
    );
    let mut store = runtime.new_store_with(state, deployment.limits);
    let trapped = |e: wasmtime::Error| {
        JournalError::Effect(format!(
            "provider {} ({deployment_id}) failed to start: {}",
            role.as_str(),
            describe_trap(&e)
        ))
    };
    let instance = match (role, &deployment.linked) {
        (ProviderRole::Payments, Linked::Payments(pre)) => {
            Instance::Payments(pre.instantiate_async(&mut store).await.map_err(trapped)?)
        }
        (ProviderRole::Email, Linked::Email(pre)) => {
            Instance::Email(pre.instantiate_async(&mut store).await.map_err(trapped)?)
        }
        (ProviderRole::Shipping, Linked::Shipping(pre)) => {
            Instance::Shipping(pre.instantiate_async(&mut store).await.map_err(trapped)?)
        }
        _ => {
            return Err(JournalError::Misuse(format!(
                "deployment {deployment_id} is not a {} provider",
                role.as_str()
            )));
        }
    };
    Ok((store, instance))
}

/// Whether a call of `operation` on provider deployment `deployment_id` is preceded by a started
/// marker, when its retry safety is already known (asked at the first call of a deployment).
pub fn needs_marker(runtime: &Runtime, deployment_id: &str, operation: &str) -> bool {
    runtime
        .retry_safety
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&safety_key(deployment_id, operation))
        .is_some_and(|safety| *safety != RetrySafety::IdempotencyKey)
}

fn safety_key(deployment_id: &str, operation: &str) -> String {
    format!("{deployment_id}/{operation}")
}

/// The provider's retry safety for `operation`, asked once per deployment and cached.
async fn retry_safety(
    runtime: &Runtime,
    deployment_id: &str,
    operation: &str,
    store: &mut Store<HostState>,
    instance: &Instance,
) -> wasmtime::Result<RetrySafety> {
    let cache_key = safety_key(deployment_id, operation);
    if let Some(safety) = runtime
        .retry_safety
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&cache_key)
    {
        return Ok(*safety);
    }
    let function = operation
        .split_once('.')
        .map_or(operation, |(_, f)| f)
        .to_string();
    let safety = match instance {
        Instance::Payments(i) => {
            i.cairn_commerce_payments_recovery()
                .call_safety(&mut *store, &function)
                .await?
        }
        Instance::Email(i) => {
            i.cairn_commerce_email_recovery()
                .call_safety(&mut *store, &function)
                .await?
        }
        Instance::Shipping(i) => {
            i.cairn_commerce_shipping_recovery()
                .call_safety(&mut *store, &function)
                .await?
        }
    };
    runtime
        .retry_safety
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(cache_key, safety);
    Ok(safety)
}

/// Looks up the effect of an in-doubt call; `None` when the provider finds nothing (or has no
/// lookup for this operation).
async fn find(
    store: &mut Store<HostState>,
    instance: &Instance,
    call: &ProviderCall,
) -> wasmtime::Result<Option<ProviderOutput>> {
    let found = match (instance, call) {
        (Instance::Payments(i), ProviderCall::CreateCharge(req)) => {
            match i
                .cairn_commerce_payments_recovery()
                .call_find_charge(&mut *store, req)
                .await?
            {
                Ok(Some(charge)) => Some(ProviderOutput::Charge(Ok(charge))),
                Ok(None) => None,
                Err(e) => Some(ProviderOutput::Charge(Err(e))),
            }
        }
        (Instance::Email(i), ProviderCall::SendEmail(msg)) => {
            match i
                .cairn_commerce_email_recovery()
                .call_find_email(&mut *store, msg)
                .await?
            {
                Ok(Some(receipt)) => Some(ProviderOutput::Email(Ok(receipt))),
                Ok(None) => None,
                Err(e) => Some(ProviderOutput::Email(Err(e))),
            }
        }
        (Instance::Shipping(i), ProviderCall::CreateLabel(req)) => {
            match i
                .cairn_commerce_shipping_recovery()
                .call_find_label(&mut *store, req)
                .await?
            {
                Ok(Some(label)) => Some(ProviderOutput::Label(Ok(label))),
                Ok(None) => None,
                Err(e) => Some(ProviderOutput::Label(Err(e))),
            }
        }
        _ => None,
    };
    Ok(found)
}

async fn invoke(
    store: &mut Store<HostState>,
    instance: &Instance,
    call: ProviderCall,
) -> wasmtime::Result<ProviderOutput> {
    Ok(match (instance, call) {
        (Instance::Payments(i), ProviderCall::CreateCharge(req)) => ProviderOutput::Charge(
            i.cairn_commerce_payments()
                .call_create_charge(&mut *store, &req)
                .await?,
        ),
        (Instance::Payments(i), ProviderCall::RefundCharge(req)) => ProviderOutput::Refund(
            i.cairn_commerce_payments()
                .call_refund_charge(&mut *store, &req)
                .await?,
        ),
        (Instance::Email(i), ProviderCall::SendEmail(msg)) => ProviderOutput::Email(
            i.cairn_commerce_email()
                .call_send_email(&mut *store, &msg)
                .await?,
        ),
        (Instance::Shipping(i), ProviderCall::CreateLabel(req)) => ProviderOutput::Label(
            i.cairn_commerce_shipping()
                .call_create_label(&mut *store, &req)
                .await?,
        ),
        (_, call) => wasmtime::bail!("{} sent to a provider of another role", call.name()),
    })
}

fn in_doubt_output(call: &ProviderCall, message: String) -> ProviderOutput {
    let error = ProviderError::InDoubt(message);
    match call {
        ProviderCall::CreateCharge(_) => ProviderOutput::Charge(Err(error)),
        ProviderCall::RefundCharge(_) => ProviderOutput::Refund(Err(error)),
        ProviderCall::SendEmail(_) => ProviderOutput::Email(Err(error)),
        ProviderCall::CreateLabel(_) => ProviderOutput::Label(Err(error)),
    }
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
