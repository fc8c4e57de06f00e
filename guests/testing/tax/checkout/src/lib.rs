//! `checkout-service` (test only): the plain service `Checkout` with one handler, `Quote`.
//!
//! Input `{"region": "ca", "net": 10000}`; calls `acme:tax/calculate.tax` (an interface of a
//! third party that the host does not know; linked and journaled generically) and answers
//! `{"net", "tax", "total", "rateBp", "key"}`. An unknown region is a terminal 422.

use cairn_sdk::{Context, Failure, HandlerInfo, Service, ServiceKind};
use serde::{Deserialize, Serialize};

mod bindings {
    wit_bindgen::generate!({
        world: "acme:tax/checkout@1.0.0",
        path: ["../../../../wit/deps/durable", "../wit"],
        with: {
            "cairn:durable/context@0.1.1": cairn_sdk::bindings::cairn::durable::context,
            "cairn:durable/run@0.1.1": cairn_sdk::bindings::cairn::durable::run,
            "cairn:durable/state@0.1.1": cairn_sdk::bindings::cairn::durable::state,
            "cairn:durable/http@0.1.1": cairn_sdk::bindings::cairn::durable::http,
            "cairn:durable/log@0.1.1": cairn_sdk::bindings::cairn::durable::log,
            "cairn:durable/timer@0.1.1": cairn_sdk::bindings::cairn::durable::timer,
            "cairn:durable/calls@0.1.1": cairn_sdk::bindings::cairn::durable::calls,
            "cairn:durable/promise@0.1.1": cairn_sdk::bindings::cairn::durable::promise,
            "cairn:durable/handler@0.1.1": generate,
            "acme:tax/calculate@1.0.0": generate,
        },
    });
}

use bindings::acme::tax::calculate::{self, TaxError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    region: String,
    net: u64,
}

#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct Output {
    net: u64,
    tax: u64,
    total: u64,
    rate_bp: u32,
    key: String,
}

struct Checkout;

impl Service for Checkout {
    const NAME: &'static str = "Checkout";
    const KIND: ServiceKind = ServiceKind::Service;
    const HANDLERS: &'static [HandlerInfo] = &[HandlerInfo::exclusive("Quote")];

    fn handle(_ctx: &Context, _handler: &str, input: &[u8]) -> Result<Vec<u8>, Failure> {
        let Input { region, net } = cairn_sdk::json::from_input(input)?;
        let quote = calculate::tax(&region, net).map_err(|err| match err {
            TaxError::UnknownRegion(r) => Failure::terminal(422, format!("unknown region {r}")),
            TaxError::Unavailable(m) => Failure::retryable(503, m),
        })?;
        cairn_sdk::json::to_output(&Output {
            net: quote.net,
            tax: quote.tax,
            total: quote.net + quote.tax,
            rate_bp: quote.rate_bp,
            key: quote.key,
        })
    }
}

cairn_sdk::export_service!(Checkout, crate::bindings);
