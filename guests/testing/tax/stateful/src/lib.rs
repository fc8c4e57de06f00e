//! `tax-stateful` (test only): an `acme:tax/calculate` provider that also imports
//! `cairn:durable/state`, which the provider world does not allow. The host refuses it at
//! deployment, naming the import; it is never run.

mod bindings {
    cairn_sdk::generate!({
        path: ["../../../../wit/deps/durable", "../wit"],
        world: "acme:tax/stateful-tax-provider@1.0.0",
        export: super::Stateful,
    });
}

use bindings::exports::acme::tax::calculate::{Guest, Quote, TaxError};
use cairn_sdk::bindings::cairn::durable::state;

struct Stateful;

impl Guest for Stateful {
    fn tax(region: String, net: u64) -> Result<Quote, TaxError> {
        // Uses the import, so that the component keeps it.
        let seen = state::get(&region).map_or(0, |v| v.len() as u64);
        Ok(Quote {
            net,
            tax: seen,
            rate_bp: 0,
            key: String::new(),
        })
    }
}
