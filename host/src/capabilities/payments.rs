//! `cairn:commerce/payments` as imported by services: forwarded to the deployed payments provider.

use crate::bindings::commerce_types::{
    Charge, ChargeRequest, ProviderError, Refund, RefundRequest,
};
use crate::bindings::orchestrator::cairn::commerce::payments::Host;
use crate::runtime::HostState;
use crate::runtime::providers::{ProviderCall, ProviderOutput};

impl Host for HostState {
    async fn create_charge(
        &mut self,
        req: ChargeRequest,
    ) -> wasmtime::Result<Result<Charge, ProviderError>> {
        self.call_provider(ProviderCall::CreateCharge(req), |out| match out {
            ProviderOutput::Charge(r) => Some(r),
            _ => None,
        })
        .await
    }

    async fn refund_charge(
        &mut self,
        req: RefundRequest,
    ) -> wasmtime::Result<Result<Refund, ProviderError>> {
        self.call_provider(ProviderCall::RefundCharge(req), |out| match out {
            ProviderOutput::Refund(r) => Some(r),
            _ => None,
        })
        .await
    }
}
