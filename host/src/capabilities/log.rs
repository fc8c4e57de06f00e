//! `cairn:durable/log`: guest logs into the host's tracing, tagged with the component. Not
//! journaled (it has no result).

use crate::bindings::log::{Host, Level};
use crate::runtime::HostState;

impl Host for HostState {
    async fn write(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let component = &*self.component;
        match level {
            Level::Trace => tracing::trace!(target: "guest", %component, "{message}"),
            Level::Debug => tracing::debug!(target: "guest", %component, "{message}"),
            Level::Info => tracing::info!(target: "guest", %component, "{message}"),
            Level::Warn => tracing::warn!(target: "guest", %component, "{message}"),
            Level::Error => tracing::error!(target: "guest", %component, "{message}"),
        }
        Ok(())
    }
}
