//! `checkout-service` (test only): the plain service `Checkout` with one handler, `Quote`.
//!
//! Input `{"region": "ca", "net": 10000}`; calls `acme:tax/calculate.tax` (an interface of a
//! third party that the host does not know; linked and journaled generically) and answers
//! `{"net", "tax", "total", "rateBp", "key"}`. An unknown region is a terminal 422.

use cairn_sdk::{Context, Failure};
use serde::{Deserialize, Serialize};

mod bindings {
    cairn_sdk::generate!({
        path: ["../../../../wit/deps/durable", "../wit"],
        import: "acme:tax/calculate@1.0.0",
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

#[cairn_sdk::service]
impl Checkout {
    #[handler(name = "Quote")]
    fn quote(_ctx: &Context, input: Input) -> Result<Output, Failure> {
        let Input { region, net } = input;
        let quote = calculate::tax(&region, net).map_err(|err| match err {
            TaxError::UnknownRegion(r) => Failure::terminal(422, format!("unknown region {r}")),
            TaxError::Unavailable(m) => Failure::retryable(503, m),
        })?;
        Ok(Output {
            net: quote.net,
            tax: quote.tax,
            total: quote.net + quote.tax,
            rate_bp: quote.rate_bp,
            key: quote.key,
        })
    }
}
