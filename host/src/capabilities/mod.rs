//! Host implementations of the WIT interfaces, one module per interface.
//!
//! Every non-deterministic call goes through [`crate::journal::Journal::record`]; no module
//! journals by hand.

mod context;
mod email;
mod http;
mod log;
mod payments;
mod provider_call;
mod provider_context;
mod run;
mod shipping;
mod state;
mod timer;

use wasmtime::component::{HasSelf, Linker};

use crate::bindings;
use crate::runtime::HostState;

/// Adds every capability the host offers (and WASI, sandboxed) to `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    type Me = HasSelf<HostState>;
    bindings::context::add_to_linker::<HostState, Me>(linker, |s| s)?;
    bindings::run::add_to_linker::<HostState, Me>(linker, |s| s)?;
    bindings::state::add_to_linker::<HostState, Me>(linker, |s| s)?;
    bindings::http::add_to_linker::<HostState, Me>(linker, |s| s)?;
    bindings::log::add_to_linker::<HostState, Me>(linker, |s| s)?;
    bindings::timer::add_to_linker::<HostState, Me>(linker, |s| s)?;
    bindings::commerce_types::add_to_linker::<HostState, Me>(linker, |s| s)?;
    bindings::orchestrator::cairn::commerce::payments::add_to_linker::<HostState, Me>(
        linker,
        |s| s,
    )?;
    bindings::orchestrator::cairn::commerce::email::add_to_linker::<HostState, Me>(linker, |s| s)?;
    bindings::orchestrator::cairn::commerce::shipping::add_to_linker::<HostState, Me>(
        linker,
        |s| s,
    )?;
    bindings::provider_context::add_to_linker::<HostState, Me>(linker, |s| s)?;
    Ok(())
}

/// `cairn:commerce/types` defines only types.
impl bindings::commerce_types::Host for HostState {}
