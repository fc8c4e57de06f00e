//! The WIT worlds as Rust: one `bindgen!` per world, all in this file.
//!
//! Imports are async (they touch the database and the network) and trappable (a host failure
//! such as a journal divergence stops the guest). Types shared between worlds are generated once
//! and reused through `with`. The host generates only `cairn:durable` worlds: interfaces that
//! components export to each other (`cairn:commerce/payments`, a third party's `acme:tax/...`)
//! are linked dynamically (see [`crate::capabilities::imported`]).

/// `cairn:durable/service`: every durable service (imports the durable capabilities, exports
/// `handler`).
pub mod service {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "cairn:durable/service",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

/// `cairn:durable/provider`: what a component that others call may import.
pub mod provider {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "cairn:durable/provider",
        imports: { default: async | trappable },
        with: {
            "cairn:durable/http": super::service::cairn::durable::http,
            "cairn:durable/log": super::service::cairn::durable::log,
        },
    });
}

/// `cairn:durable/recoverable`: the optional `recovery` export of a provider component.
pub mod recoverable {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "cairn:durable/recoverable",
        exports: { default: async },
    });
}

pub use provider::cairn::durable::call_context;
pub use recoverable::exports::cairn::durable::recovery;
pub use service::cairn::durable::{calls, context, http, log, promise, run, state, timer};
pub use service::exports::cairn::durable::handler;
