//! `cairn:commerce/provider-context`: the idempotency key and configuration of the provider call
//! in progress. Fixed for the call (the key is derived from the journal index), so not journaled.

use crate::bindings::provider_context::Host;
use crate::runtime::HostState;

impl Host for HostState {
    async fn idempotency_key(&mut self) -> wasmtime::Result<String> {
        Ok(self
            .provider("provider-context.idempotency-key")?
            .idempotency_key
            .clone())
    }

    async fn config(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self
            .provider("provider-context.config")?
            .config
            .get(&name)
            .cloned())
    }
}
