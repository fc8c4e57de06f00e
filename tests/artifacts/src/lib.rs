//! Paths of the guest components, built by this crate's build script for `wasm32-wasip2`.

include!(concat!(env!("OUT_DIR"), "/components.rs"));
