//! `cairn:durable/run`: durable steps. `begin` answers from the journal when the step already
//! completed; `end` records the outcome through the journal.

use crate::bindings::run::Host;
use crate::runtime::{HostState, trap};

impl Host for HostState {
    async fn begin(&mut self, name: String) -> wasmtime::Result<Option<Result<Vec<u8>, String>>> {
        let svc = self.service("run.begin")?;
        svc.journal.step_begin(&name).map_err(trap)
    }

    async fn end(
        &mut self,
        name: String,
        outcome: Result<Vec<u8>, String>,
    ) -> wasmtime::Result<()> {
        let svc = self.service("run.end")?;
        svc.journal.step_end(&name, outcome).await.map_err(trap)
    }
}
