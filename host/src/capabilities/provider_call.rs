//! The service side of a provider call: one journal entry per call, whose live effect runs the
//! pinned provider component with an idempotency key derived from the entry index.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::journal::{Effect, EntryKind, JournalError};
use crate::runtime::providers::{self, ProviderCall, ProviderOutput};
use crate::runtime::{HostState, misuse, trap};

impl HostState {
    /// Journals `call` and, live, performs it on the provider deployment pinned for its role.
    pub(crate) async fn call_provider<R>(
        &mut self,
        call: ProviderCall,
        pick: fn(ProviderOutput) -> Option<R>,
    ) -> wasmtime::Result<R>
    where
        R: Serialize + DeserializeOwned,
    {
        let name = call.name();
        let role = call.role();
        let svc = self.service(name)?;
        let deployment = svc.providers.get(role.as_str()).cloned().ok_or_else(|| {
            misuse(format!(
                "no {} provider is deployed for this invocation",
                role.as_str()
            ))
        })?;
        let runtime = svc.runtime.clone();
        let invocation_id = svc.info.id.clone();
        let args = call.clone();
        if providers::needs_marker(&runtime, &deployment, name) {
            svc.journal.mark_next_call();
        }
        svc.journal
            .record(EntryKind::Call, name, &args, |live| async move {
                let performed =
                    providers::perform(&runtime, &invocation_id, &deployment, &live, call).await?;
                let soft = performed.output.is_retryable_error();
                let detail = performed.detail(&deployment, &live.idempotency_key);
                let value = pick(performed.output).ok_or_else(|| {
                    JournalError::Effect(format!(
                        "provider answered {name} with another call's result"
                    ))
                })?;
                Ok(Effect {
                    value,
                    detail: Some(detail),
                    state: None,
                    soft,
                })
            })
            .await
            .map_err(trap)
    }
}
