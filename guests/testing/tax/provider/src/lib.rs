//! `tax-provider` (test only): implements `acme:tax/calculate`, a third party's interface that
//! the host knows nothing of. The rate of a region is its deployment's config
//! `rate-<region>` in basis points; the quote carries the call's idempotency key, and each call
//! that runs logs one line (`acme-tax: quoted <region> under <key>`).

mod bindings {
    cairn_sdk::generate!({
        path: ["../../../../wit/deps/durable", "../wit"],
        world: "acme:tax/tax-provider@1.0.0",
        export: super::Tax,
    });
}

use bindings::exports::acme::tax::calculate::{Guest, Quote, TaxError};
use cairn_sdk::bindings::cairn::durable::call_context;

struct Tax;

impl Guest for Tax {
    fn tax(region: String, net: u64) -> Result<Quote, TaxError> {
        let key = call_context::idempotency_key();
        // The effect a test counts: one line per call that really ran.
        cairn_sdk::log::info(format!("acme-tax: quoted {region} under {key}"));
        quote(&region, net, call_context::config, key)
    }
}

/// The quote for `net` in `region`, with rates from `config`.
fn quote(
    region: &str,
    net: u64,
    config: impl Fn(&str) -> Option<String>,
    key: String,
) -> Result<Quote, TaxError> {
    let rate_bp: u32 = config(&format!("rate-{region}"))
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| TaxError::UnknownRegion(region.to_string()))?;
    Ok(Quote {
        net,
        tax: net * u64::from(rate_bp) / 10_000,
        rate_bp,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_config_in_basis_points() {
        let config = |name: &str| (name == "rate-ca").then(|| "725".to_string());
        let q = quote("ca", 10_000, config, "k".into()).unwrap();
        assert_eq!((q.tax, q.rate_bp, q.key.as_str()), (725, 725, "k"));
        assert!(matches!(
            quote("mars", 1, config, "k".into()),
            Err(TaxError::UnknownRegion(r)) if r == "mars"
        ));
    }
}
