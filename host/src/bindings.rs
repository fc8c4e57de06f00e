//! The WIT worlds as Rust: one `bindgen!` per world, all in this file.
//!
//! Imports are async (they touch the database and the network) and trappable (a host failure
//! such as a journal divergence stops the guest). Types shared between worlds are generated once
//! and reused through `with`, so a provider's `charge` and the orchestrator's `charge` are the same
//! Rust type and calls pass straight through.

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

/// `cairn:commerce/orchestrator`: the service world plus the three provider roles as imports.
pub mod orchestrator {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "cairn:commerce/orchestrator",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "cairn:durable/context": super::service::cairn::durable::context,
            "cairn:durable/run": super::service::cairn::durable::run,
            "cairn:durable/state": super::service::cairn::durable::state,
            "cairn:durable/http": super::service::cairn::durable::http,
            "cairn:durable/log": super::service::cairn::durable::log,
            "cairn:durable/timer": super::service::cairn::durable::timer,
        },
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

/// `cairn:commerce/payments-provider`.
pub mod payments_provider {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "cairn:commerce/payments-provider",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "cairn:durable/http": super::service::cairn::durable::http,
            "cairn:durable/log": super::service::cairn::durable::log,
            "cairn:commerce/types": super::orchestrator::cairn::commerce::types,
        },
    });
}

/// `cairn:commerce/email-provider`.
pub mod email_provider {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "cairn:commerce/email-provider",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "cairn:durable/http": super::service::cairn::durable::http,
            "cairn:durable/log": super::service::cairn::durable::log,
            "cairn:commerce/types": super::orchestrator::cairn::commerce::types,
            "cairn:commerce/provider-context": super::payments_provider::cairn::commerce::provider_context,
        },
    });
}

/// `cairn:commerce/shipping-provider`.
pub mod shipping_provider {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "cairn:commerce/shipping-provider",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "cairn:durable/http": super::service::cairn::durable::http,
            "cairn:durable/log": super::service::cairn::durable::log,
            "cairn:commerce/types": super::orchestrator::cairn::commerce::types,
            "cairn:commerce/provider-context": super::payments_provider::cairn::commerce::provider_context,
        },
    });
}

pub use orchestrator::cairn::commerce::types as commerce_types;
pub use payments_provider::cairn::commerce::provider_context;
pub use service::cairn::durable::{context, http, log, run, state, timer};
pub use service::exports::cairn::durable::handler;
