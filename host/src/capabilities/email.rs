//! `cairn:commerce/email` as imported by services: forwarded to the deployed email provider.

use crate::bindings::commerce_types::{EmailMessage, EmailReceipt, ProviderError};
use crate::bindings::orchestrator::cairn::commerce::email::Host;
use crate::runtime::HostState;
use crate::runtime::providers::{ProviderCall, ProviderOutput};

impl Host for HostState {
    async fn send_email(
        &mut self,
        msg: EmailMessage,
    ) -> wasmtime::Result<Result<EmailReceipt, ProviderError>> {
        self.call_provider(ProviderCall::SendEmail(msg), |out| match out {
            ProviderOutput::Email(r) => Some(r),
            _ => None,
        })
        .await
    }
}
