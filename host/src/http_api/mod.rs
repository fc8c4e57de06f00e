//! The HTTP surface: ingress (invoke handlers, receive webhooks) and admin (inspect and deploy).

pub mod access;
pub mod admin;
mod admission;
mod control;
pub mod deployments;
mod error;
pub mod ingress;
mod promises;
mod state;
mod ui;
pub mod webhooks;

pub use error::ApiError;

/// JSON for stored bytes: parsed when they are JSON, else shown as text.
pub(crate) fn bytes_to_json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned()))
}
