//! The procedural macros of `cairn-sdk`. Use them through the SDK (`cairn_sdk::object`,
//! `cairn_sdk::service`, `cairn_sdk::generate!`): the code they write names `::cairn_sdk`.
//!
//! - [`object`] / [`service`] over an `impl` write a service component: its handler table
//!   (`describe`), the dispatch by handler name with JSON in and out, the export of
//!   `cairn:durable/handler`, and a typed client. Over a `trait` they declare a service that
//!   another component implements, and write only its client.
//! - [`generate!`] writes the bindings of a world or of a list of imported interfaces with the
//!   durable interfaces mapped to the SDK's and serde derives on every generated type.

mod generate;
mod handlers;

use proc_macro::TokenStream;

/// A keyed object: `#[cairn_sdk::object] impl Cart { … }`. Every `fn` of the impl is a handler,
/// exclusive unless marked `#[shared]`; see the SDK's documentation.
#[proc_macro_attribute]
pub fn object(attr: TokenStream, item: TokenStream) -> TokenStream {
    handlers::expand(handlers::Kind::Object, attr.into(), item.into()).into()
}

/// A plain (stateless) service: `#[cairn_sdk::service] impl Mailer { … }`.
#[proc_macro_attribute]
pub fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    handlers::expand(handlers::Kind::Service, attr.into(), item.into()).into()
}

/// `wit_bindgen::generate!` with the SDK's defaults: the durable imports mapped to
/// `cairn_sdk::bindings`, every other interface generated, serde derives on its types.
#[proc_macro]
pub fn generate(input: TokenStream) -> TokenStream {
    generate::expand(input.into()).into()
}

/// The bindings of the `cairn:durable/handler` export, for `cairn_sdk::__export_handler!`.
#[doc(hidden)]
#[proc_macro]
pub fn handler_bindings(_input: TokenStream) -> TokenStream {
    generate::handler_bindings().into()
}
