//! `cairn:durable/context`: the invocation a guest is serving (deterministic: fixed for the
//! invocation, so not journaled), the service's operator configuration (journaled, so that a
//! replay reads the value the first attempt read even if the operator changed it since), and
//! the operator's cancellation (journaled where it was found: see [`crate::journal::Journal::cancelled`]).

use crate::bindings::context::{Host, Invocation};
use crate::journal::{Effect, EntryKind};
use crate::runtime::{HostState, trap};

impl Host for HostState {
    async fn current(&mut self) -> wasmtime::Result<Invocation> {
        Ok(self.service("context.current")?.info.clone())
    }

    async fn config(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        let svc = self.service("context.config")?;
        let value = (svc.runtime.settings.service_config)
            .get(&svc.info.service)
            .and_then(|config| config.get(&name))
            .cloned();
        svc.journal
            .record(EntryKind::Config, "config", &name, |_| async move {
                Ok(Effect::value(value))
            })
            .await
            .map_err(trap)
    }

    async fn cancelled(&mut self) -> wasmtime::Result<bool> {
        self.service("context.cancelled")?
            .journal
            .cancelled()
            .map_err(trap)
    }
}
