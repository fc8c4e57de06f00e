//! `cairn:durable/context`: the invocation a guest is serving. Deterministic (fixed for the
//! invocation), so not journaled.

use crate::bindings::context::{Host, Invocation};
use crate::runtime::HostState;

impl Host for HostState {
    async fn current(&mut self) -> wasmtime::Result<Invocation> {
        Ok(self.service("context.current")?.info.clone())
    }
}
