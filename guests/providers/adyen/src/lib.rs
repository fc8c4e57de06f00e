//! `adyen-payments`: the `cairn:commerce/payments` provider role over Adyen's Checkout API v71
//! (world `cairn:commerce/payments-provider`), a third-party provider deployed next to (or
//! instead of) Stripe without touching the orchestrator.
//!
//! Requests go out through `cairn:durable/http` to `config("api-base")` (default
//! `https://checkout-test.adyen.com`) as JSON, with `X-API-Key: {{secret:ADYEN_API_KEY}}`, filled
//! in by the host, and the host's per-call idempotency key as `Idempotency-Key`, so a re-executed
//! call cannot charge twice. [`request`] builds the wire format, [`response`] reads Adyen's
//! answers (`resultCode`) and errors; both are pure and unit-tested.
//!
//! `cairn:commerce/payments-recovery`: both operations are safe to repeat with the same
//! idempotency key (Adyen stores the first answer under it); there is no lookup.

mod request;
mod response;

use cairn_sdk::http::{RequestBuilder, Response};

use crate::bindings::exports::cairn::commerce::payments::Guest;
use crate::bindings::exports::cairn::commerce::payments_recovery::Guest as RecoveryGuest;
use crate::bindings::exports::cairn::durable::recovery::RetrySafety;
use crate::request::Settings;
use cairn_provider::types::{Charge, ChargeRequest, ProviderError, Refund, RefundRequest};
use cairn_sdk::bindings::cairn::durable::call_context;

mod bindings {
    cairn_sdk::generate!({
        path: "../../../wit",
        world: "cairn:commerce/payments-provider@0.1.0",
        with: { "cairn:commerce/types@0.1.0": cairn_provider::types },
        derives: [Eq],
        export: super::AdyenPayments,
    });
}

struct AdyenPayments;

impl Guest for AdyenPayments {
    fn create_charge(req: ChargeRequest) -> Result<Charge, ProviderError> {
        let settings = Settings::from_lookup(call_context::config)?;
        let key = call_context::idempotency_key();
        let response = send(request::create_payment(&settings, &key, &req)?)?;
        response::payment(&response, &req)
    }

    fn refund_charge(req: RefundRequest) -> Result<Refund, ProviderError> {
        let settings = Settings::from_lookup(call_context::config)?;
        let key = call_context::idempotency_key();
        let response = send(request::create_refund(&settings, &key, &req))?;
        response::refund(&response, &req)
    }
}

impl RecoveryGuest for AdyenPayments {
    /// No lookup: the idempotency key makes a repeat safe (see [`response::retry_safety`]).
    fn find_charge(_req: ChargeRequest) -> Result<Option<Charge>, ProviderError> {
        Ok(None)
    }
}

impl crate::bindings::exports::cairn::durable::recovery::Guest for AdyenPayments {
    fn safety(_interface: String, function: String) -> RetrySafety {
        response::retry_safety(&function)
    }
}

/// Sends a request of this provider (see [`cairn_provider::send`]).
fn send(request: RequestBuilder) -> Result<Response, ProviderError> {
    cairn_provider::send("adyen", request)
}
