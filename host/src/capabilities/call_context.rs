//! `cairn:durable/call-context`: the idempotency key and configuration of the call a provider
//! component is serving, and during an in-doubt lookup the earliest time that call may have
//! started. Fixed for the call (the key is derived from the journal index), so not journaled.

use crate::bindings::call_context::Host;
use crate::runtime::HostState;

impl Host for HostState {
    async fn idempotency_key(&mut self) -> wasmtime::Result<String> {
        Ok(self
            .provider("call-context.idempotency-key")?
            .idempotency_key
            .clone())
    }

    async fn config(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self
            .provider("call-context.config")?
            .config
            .get(&name)
            .cloned())
    }

    async fn in_doubt_since(&mut self) -> wasmtime::Result<Option<u64>> {
        Ok(self
            .provider("call-context.in-doubt-since")?
            .in_doubt_since
            .map(|ms| ms.max(0) as u64))
    }
}
