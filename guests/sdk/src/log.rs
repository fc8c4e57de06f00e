//! Logging into the host's tracing logs through `cairn:durable/log`. Not journaled: a replayed
//! attempt logs again.
//!
//! ```ignore
//! cairn_sdk::log::info(format!("charging order {order_id}"));
//! ```

use crate::bindings::cairn::durable::log as raw;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl From<Level> for raw::Level {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => raw::Level::Trace,
            Level::Debug => raw::Level::Debug,
            Level::Info => raw::Level::Info,
            Level::Warn => raw::Level::Warn,
            Level::Error => raw::Level::Error,
        }
    }
}

/// Writes `message` at `level`.
pub fn write(level: Level, message: impl AsRef<str>) {
    raw::write(level.into(), message.as_ref());
}

/// Writes at trace level.
pub fn trace(message: impl AsRef<str>) {
    write(Level::Trace, message);
}

/// Writes at debug level.
pub fn debug(message: impl AsRef<str>) {
    write(Level::Debug, message);
}

/// Writes at info level.
pub fn info(message: impl AsRef<str>) {
    write(Level::Info, message);
}

/// Writes at warn level.
pub fn warn(message: impl AsRef<str>) {
    write(Level::Warn, message);
}

/// Writes at error level.
pub fn error(message: impl AsRef<str>) {
    write(Level::Error, message);
}
