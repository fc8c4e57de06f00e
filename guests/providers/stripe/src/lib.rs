//! `stripe-payments`: the `cairn:commerce/payments` provider role over Stripe's Charges and
//! Refunds APIs (world `cairn:commerce/payments-provider`).
//!
//! Requests go out through `cairn:durable/http` to `config("api-base")` (default
//! `https://api.stripe.com`) with `Authorization: Bearer {{secret:STRIPE_API_KEY}}`, filled in by
//! the host, and the host's per-call idempotency key as `Idempotency-Key`, so a re-executed call
//! cannot charge twice. [`request`] builds the wire format, [`response`] reads Stripe's answers
//! and errors; both are pure and unit-tested.
//!
//! It also exports `cairn:commerce/payments-recovery` ([`recovery`]): both operations are safe
//! to repeat with the same idempotency key, and `find-charge` searches the order's charges.

mod recovery;
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
        export: super::StripePayments,
    });
}

struct StripePayments;

impl Guest for StripePayments {
    fn create_charge(req: ChargeRequest) -> Result<Charge, ProviderError> {
        let settings = Settings::from_lookup(call_context::config);
        let key = call_context::idempotency_key();
        let response = send(request::create_charge(&settings, &key, &req))?;
        response::charge(&response, &req)
    }

    fn refund_charge(req: RefundRequest) -> Result<Refund, ProviderError> {
        let settings = Settings::from_lookup(call_context::config);
        let key = call_context::idempotency_key();
        let response = send(request::create_refund(&settings, &key, &req))?;
        response::refund(&response, &req)
    }
}

impl RecoveryGuest for StripePayments {
    fn find_charge(req: ChargeRequest) -> Result<Option<Charge>, ProviderError> {
        let settings = Settings::from_lookup(call_context::config);
        let response = send(recovery::find_charge(&settings, &req))?;
        recovery::found_charge(&response, &req)
    }
}

impl crate::bindings::exports::cairn::durable::recovery::Guest for StripePayments {
    fn safety(_interface: String, function: String) -> RetrySafety {
        recovery::retry_safety(&function)
    }
}

/// Sends a request of this provider (see [`cairn_provider::send`]).
fn send(request: RequestBuilder) -> Result<Response, ProviderError> {
    cairn_provider::send("stripe", request)
}
