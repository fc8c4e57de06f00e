//! `shippo-shipping`: the `cairn:commerce/shipping` provider role over Shippo's label purchase
//! (world `cairn:commerce/shipping-provider`).
//!
//! One call buys a label, "instalabel" style: `POST {api-base}/transactions` (default
//! `https://api.goshippo.com`) with the shipment inline, a carrier account and a service level,
//! `async: false`, and `Authorization: ShippoToken {{secret:SHIPPO_API_KEY}}`, filled in by the
//! host. The order rides in `metadata` (`order <id>`). Shippo has no idempotency key for this
//! call, which is why the host journals the result. [`request`] builds the wire format,
//! [`response`] reads the answer; both are pure and unit-tested.
//!
//! `void-label` voids an unused label: `POST {api-base}/refunds` `{"transaction": id}` (a label
//! refunded already counts as voided, so calling it again is safe).
//!
//! It also exports `cairn:commerce/shipping-recovery` ([`lookup`]) and `cairn:durable/recovery`:
//! a purchase left in doubt is `lookup` safe, and `find-label` pages through the account's
//! transactions for the order's reference, back to when the call in doubt started.

mod lookup;
mod request;
mod response;

use cairn_sdk::http::{RequestBuilder, Response};

use crate::bindings::exports::cairn::commerce::shipping::Guest;
use crate::bindings::exports::cairn::commerce::shipping_recovery::Guest as RecoveryGuest;
use crate::bindings::exports::cairn::durable::recovery::RetrySafety;
use crate::lookup::Search;
use crate::request::Settings;
use cairn_provider::types::{Label, LabelRequest, LabelVoid, ProviderError};
use cairn_sdk::bindings::cairn::durable::call_context;

mod bindings {
    cairn_sdk::generate!({
        path: "../../../wit",
        world: "cairn:commerce/shipping-provider@0.1.0",
        with: { "cairn:commerce/types@0.1.0": cairn_provider::types },
        derives: [Eq],
        export: super::ShippoShipping,
    });
}

struct ShippoShipping;

impl Guest for ShippoShipping {
    fn create_label(req: LabelRequest) -> Result<Label, ProviderError> {
        let settings = Settings::from_lookup(call_context::config);
        if settings.carrier_account.is_none() {
            cairn_sdk::log::warn("shippo: config `carrier-account` is not set; Shippo requires it");
        }
        let response = send(request::create_transaction(&settings, &req))?;
        response::label(&response)
    }

    fn void_label(label_id: String) -> Result<LabelVoid, ProviderError> {
        let settings = Settings::from_lookup(call_context::config);
        let response = send(request::refund_transaction(&settings, &label_id))?;
        response::label_void(&response, &label_id)
    }
}

impl RecoveryGuest for ShippoShipping {
    fn find_label(req: LabelRequest) -> Result<Option<Label>, ProviderError> {
        let settings = Settings::from_lookup(call_context::config);
        match lookup::find_label(&settings, &req, call_context::in_doubt_since(), send)? {
            Search::Found(label) => Ok(Some(label)),
            Search::NotFound => Ok(None),
            // Inconclusive, never "not found": the host applies its in-doubt policy.
            Search::Undecided => Err(ProviderError::InDoubt(format!(
                "shippo: the newest {} transactions hold no label for order {} and do not reach \
                 back to when the call started",
                lookup::MAX_PAGES * lookup::PAGE_SIZE,
                req.order_id
            ))),
        }
    }
}

impl crate::bindings::exports::cairn::durable::recovery::Guest for ShippoShipping {
    fn safety(_interface: String, function: String) -> RetrySafety {
        lookup::retry_safety(&function)
    }
}

/// Sends a request of this provider (see [`cairn_provider::send`]).
fn send(request: RequestBuilder) -> Result<Response, ProviderError> {
    cairn_provider::send("shippo", request)
}
