//! Cairn: a durable-execution host for WebAssembly components.
//!
//! An invocation arrives at the ingress ([`http_api::ingress`]), is committed
//! ([`storage`]), and runs in the [`runtime`]: the service component is instantiated and every
//! import call it makes goes through the [`journal`], which performs it live (the
//! [`capabilities`]) or answers it from the record when replaying.

pub mod bench;
pub mod bindings;
pub mod bundled;
pub mod capabilities;
pub mod cli;
pub mod cli_admin;
pub mod config;
pub mod http_api;
pub mod journal;
pub mod metrics;
pub mod outbound;
pub mod runtime;
pub mod server;
pub mod storage;
pub mod telemetry;
pub mod webhooks;

pub use cairn_mock as mock;
