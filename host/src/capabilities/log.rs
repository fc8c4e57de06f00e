//! `cairn:durable/log`: guest logs into the host's tracing, tagged with the component. Not
//! journaled (it has no result).
//!
//! What a guest logs is bounded like its stdout ([`crate::runtime::guest_output`]): a message is
//! cut at [`MAX_MESSAGE`] bytes and a store may log [`MAX_TOTAL`] bytes in all, past which
//! messages are dropped (once, with a warning). Newlines and other control characters are
//! escaped, so a message is one log line and cannot pass for one of the host's.

use crate::bindings::log::{Host, Level};
use crate::runtime::HostState;

/// Longest message logged; the rest is cut.
const MAX_MESSAGE: usize = 4096;
/// What one store may log in all (the same budget as its stdout).
pub const MAX_TOTAL: usize = 1 << 20;

impl Host for HostState {
    async fn write(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let component = &*self.component;
        let room = MAX_TOTAL.saturating_sub(self.logged);
        if room == 0 {
            return Ok(());
        }
        let Some(message) = bounded(&message, room.min(MAX_MESSAGE)) else {
            return Ok(());
        };
        self.logged += message.len().max(1);
        if self.logged >= MAX_TOTAL {
            tracing::warn!(target: "guest", %component,
                "guest logged over {MAX_TOTAL} bytes; the rest is dropped");
        }
        match level {
            Level::Trace => tracing::trace!(target: "guest", %component, "{message}"),
            Level::Debug => tracing::debug!(target: "guest", %component, "{message}"),
            Level::Info => tracing::info!(target: "guest", %component, "{message}"),
            Level::Warn => tracing::warn!(target: "guest", %component, "{message}"),
            Level::Error => tracing::error!(target: "guest", %component, "{message}"),
        }
        Ok(())
    }
}

/// `message` with control characters escaped (`\n`, `\u{1b}`...), cut to `max` bytes (`…` and
/// the original length mark a cut); `None` for an empty message.
fn bounded(message: &str, max: usize) -> Option<String> {
    if message.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(message.len().min(max));
    for c in message.chars() {
        let before = out.len();
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        if out.len() > max {
            out.truncate(before);
            out.push_str(&format!("… ({} bytes)", message.len()));
            break;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_and_cut() {
        assert_eq!(
            bounded("a\nINFO cairn: forged\r\u{1b}[31m", 100).unwrap(),
            "a\\nINFO cairn: forged\\r\\u{1b}[31m"
        );
        assert_eq!(bounded(&"x".repeat(10), 4).unwrap(), "xxxx… (10 bytes)");
        assert_eq!(bounded("", 4), None);
        assert_eq!(bounded("héllo", 2).unwrap(), "h… (6 bytes)");
    }
}
