//! Host implementations of the WIT interfaces, one module per interface, and the generic link
//! of interfaces that components export to each other ([`imported`]).
//!
//! Every non-deterministic call goes through [`crate::journal::Journal::record`]; no module
//! journals by hand.

mod call_context;
mod calls;
mod context;
mod http;
pub mod imported;
mod log;
pub mod promise;
mod run;
mod state;
mod timer;

use wasmtime::component::{HasSelf, Linker};

use crate::bindings;
use crate::runtime::HostState;

type Me = HasSelf<HostState>;

/// The `cairn:durable/service` world's imports (and WASI, sandboxed).
pub fn add_service_world(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    bindings::context::add_to_linker::<HostState, Me>(linker, |s| s)?;
    bindings::run::add_to_linker::<HostState, Me>(linker, |s| s)?;
    bindings::state::add_to_linker::<HostState, Me>(linker, |s| s)?;
    bindings::http::add_to_linker::<HostState, Me>(linker, |s| s)?;
    bindings::log::add_to_linker::<HostState, Me>(linker, |s| s)?;
    bindings::timer::add_to_linker::<HostState, Me>(linker, |s| s)?;
    bindings::calls::add_to_linker::<HostState, Me>(linker, |s| s)?;
    bindings::promise::add_to_linker::<HostState, Me>(linker, |s| s)?;
    Ok(())
}

/// The `cairn:durable/provider` world's imports (and WASI, sandboxed).
pub fn add_provider_world(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    bindings::http::add_to_linker::<HostState, Me>(linker, |s| s)?;
    bindings::log::add_to_linker::<HostState, Me>(linker, |s| s)?;
    bindings::call_context::add_to_linker::<HostState, Me>(linker, |s| s)?;
    Ok(())
}
