//! `cairn-provider`: what the bundled provider components (Stripe, SendGrid, Shippo, Adyen)
//! share. The `cairn:commerce/types` interface is generated here, once (world
//! `cairn:commerce/provider-types`); each provider maps it with `with` in its own bindings, so
//! [`ProviderError`] is one type and [`send`] serves them all:
//!
//! ```ignore
//! cairn_sdk::generate!({
//!     path: "../../../wit",
//!     world: "cairn:commerce/payments-provider@0.1.0",
//!     with: { "cairn:commerce/types@0.1.0": cairn_provider::types },
//!     export: super::StripePayments,
//! });
//! ```

mod bindings {
    // `wit` links to the repository's (`cargo package` copies it into the crate).
    cairn_sdk::generate!({
        path: "wit",
        world: "cairn:commerce/provider-types@0.1.0",
        derives: [Eq],
    });
}

pub use bindings::cairn::commerce::types;

use cairn_sdk::http::{HttpError, RequestBuilder, Response};
use types::ProviderError;

/// Builds and sends a request of provider `name`. No response at all is `unavailable` when
/// retrying may help, `invalid-request` when it cannot (a request that cannot be built, a host
/// not on the allow-list); either is logged with the request's method and URL.
pub fn send(name: &str, request: RequestBuilder) -> Result<Response, ProviderError> {
    let request = request.build().map_err(|err| transport_error(name, &err))?;
    let target = format!("{} {}", request.method(), request.url());
    request.send().map_err(|err| {
        cairn_sdk::log::warn(format!("{name}: {target}: {err}"));
        transport_error(name, &err)
    })
}

/// The provider error for a request that got no response.
pub fn transport_error(name: &str, err: &HttpError) -> ProviderError {
    if err.is_retryable() {
        ProviderError::Unavailable(format!("{name}: {err}"))
    } else {
        ProviderError::InvalidRequest(format!("{name}: {err}"))
    }
}
