//! `cairn:commerce/shipping` as imported by services: forwarded to the deployed shipping provider.

use crate::bindings::commerce_types::{Label, LabelRequest, ProviderError};
use crate::bindings::orchestrator::cairn::commerce::shipping::Host;
use crate::runtime::HostState;
use crate::runtime::providers::{ProviderCall, ProviderOutput};

impl Host for HostState {
    async fn create_label(
        &mut self,
        req: LabelRequest,
    ) -> wasmtime::Result<Result<Label, ProviderError>> {
        self.call_provider(ProviderCall::CreateLabel(req), |out| match out {
            ProviderOutput::Label(r) => Some(r),
            _ => None,
        })
        .await
    }
}
