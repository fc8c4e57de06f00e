//! The journal: one entry per import call a guest makes, in order.
//!
//! [`Journal`] is the one journaling helper every non-deterministic host call goes through: live,
//! it performs the effect, appends the entry and makes it durable before returning; replaying,
//! it checks the call against the recorded entry and returns the recorded result.

mod cursor;
pub mod values;

pub use cursor::{Effect, FailPoint, Journal, Live};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What kind of import call an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A `cairn:durable/state` call.
    State,
    /// The end of a durable `run` step, with its outcome.
    Run,
    /// An outbound `cairn:durable/http` request.
    Http,
    /// A call into another component (a provider: payments, email, a third party's interface).
    Call,
    /// A `cairn:durable/timer` sleep, with the time it ends.
    Timer,
    /// A `cairn:durable/calls` call or send to another service, or a call's result.
    Invoke,
    /// A `cairn:durable/promise` operation, or the outcome a wait observed.
    Promise,
    /// A read of the service's operator configuration (`cairn:durable/context.config`).
    Config,
    /// The operator's cancellation reached the handler here (see [`Journal::cancelled`]).
    Cancel,
}

impl EntryKind {
    /// Whether the call affects the world outside the host (so what precedes it must be durable).
    pub fn is_external(self) -> bool {
        matches!(self, EntryKind::Http | EntryKind::Call | EntryKind::Invoke)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::State => "state",
            EntryKind::Run => "run",
            EntryKind::Http => "http",
            EntryKind::Call => "call",
            EntryKind::Timer => "timer",
            EntryKind::Invoke => "invoke",
            EntryKind::Promise => "promise",
            EntryKind::Config => "config",
            EntryKind::Cancel => "cancel",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "state" => Some(EntryKind::State),
            "run" => Some(EntryKind::Run),
            "http" => Some(EntryKind::Http),
            "call" => Some(EntryKind::Call),
            "timer" => Some(EntryKind::Timer),
            "invoke" => Some(EntryKind::Invoke),
            "promise" => Some(EntryKind::Promise),
            "config" => Some(EntryKind::Config),
            "cancel" => Some(EntryKind::Cancel),
            _ => None,
        }
    }
}

/// One recorded import call. `result` is the JSON encoding of the call's return value; this
/// format is persisted and pinned by golden tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub index: u32,
    pub kind: EntryKind,
    pub name: String,
    /// Hex SHA-256 (first 16 bytes) of the JSON-encoded arguments.
    pub args_digest: String,
    #[serde(skip)]
    pub result: Vec<u8>,
    /// JSON: an argument preview and, for provider calls, the provider's HTTP exchanges
    /// (secrets are never in them: guests only ever hold `{{secret:NAME}}` placeholders).
    #[serde(skip)]
    pub detail: Option<String>,
    /// Unix ms when the call started.
    pub started_at: i64,
    pub duration_us: i64,
    /// A recorded retryable failure of an effect. If it closes a failed attempt, the guest did
    /// nothing durable with it, so the next attempt drops it and performs the call again (with
    /// the same idempotency key, as the index is the same).
    pub soft: bool,
}

/// Something a suspended invocation can wait for besides time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Awaited {
    /// Another invocation (a call's callee) ends.
    Invocation(String),
    /// A durable promise is resolved or rejected.
    Promise(String),
}

/// Why a journaled call could not complete. Becomes a trap in the guest.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The guest asked for something other than what the journal recorded at this index.
    #[error("journal divergence at entry {index}: recorded {recorded}, guest asked for {actual}")]
    Divergence {
        index: u32,
        recorded: String,
        actual: String,
    },
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error("journal codec: {0}")]
    Codec(String),
    /// The guest used the API wrongly (nested steps, `end` without `begin`). Terminal.
    #[error("{0}")]
    Misuse(String),
    /// The live effect failed in a way the guest cannot see (a provider component trapped).
    /// Retryable: nothing was recorded.
    #[error("{0}")]
    Effect(String),
    /// A call a crash left in doubt was not repeated (at-most-once), and its result type has no
    /// `in-doubt` case to say so to the guest. Terminal.
    #[error("{0}")]
    InDoubt(String),
    /// Not a failure: the guest waits, until `until_ms` (Unix ms) and/or until one of `on`
    /// completes. The attempt stops here, its entries are committed, and the invocation is
    /// replayed when the wait ends.
    #[error("suspended (until {until_ms:?}, on {on:?})")]
    Suspended {
        until_ms: Option<i64>,
        on: Vec<Awaited>,
    },
}

impl JournalError {
    /// Retrying the invocation may help.
    pub fn is_retryable(&self) -> bool {
        match self {
            JournalError::Storage(e) => e.is_retryable(),
            JournalError::Effect(_) | JournalError::Suspended { .. } => true,
            JournalError::Divergence { .. }
            | JournalError::Codec(_)
            | JournalError::Misuse(_)
            | JournalError::InDoubt(_) => false,
        }
    }
}

/// Digest of a call's arguments, as stored in `args_digest`.
pub fn digest<A: Serialize + ?Sized>(args: &A) -> Result<String, JournalError> {
    let bytes = serde_json::to_vec(args).map_err(|e| JournalError::Codec(e.to_string()))?;
    Ok(digest_json(&bytes))
}

/// [`digest`] of arguments already encoded as JSON.
pub fn digest_json(args_json: &[u8]) -> String {
    hex::encode(&Sha256::digest(args_json)[..16])
}

/// Longest preview, in bytes of JSON.
const PREVIEW_MAX: usize = 2048;

/// A short, human-readable preview of call arguments for operators (byte lists shown as text).
pub fn preview<A: Serialize + ?Sized>(args: &A) -> serde_json::Value {
    serde_json::to_vec(args)
        .ok()
        .and_then(|json| serde_json::from_str(&preview_json(&json)).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// The [`preview`] stored with an entry, as JSON text, made from the arguments' JSON encoding
/// (the one digested) without decoding it: each entry encodes its arguments once.
pub fn preview_json(args_json: &[u8]) -> String {
    let Ok(json) = std::str::from_utf8(args_json) else {
        return "null".into();
    };
    let text = bytes_as_text_json(json);
    if text.len() <= PREVIEW_MAX {
        return text;
    }
    let mut cut = PREVIEW_MAX;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    serde_json::Value::from(format!("{}…", &text[..cut])).to_string()
}

/// Byte lists shown as text, on compact JSON text: every array outside a string whose items are
/// all integers 0..=255 and decode as UTF-8 becomes a JSON string of that text.
fn bytes_as_text_json(json: &str) -> String {
    let bytes = json.as_bytes();
    let mut out = String::with_capacity(json.len());
    let (mut i, mut copied, mut in_string) = (0, 0, false);
    while i < bytes.len() {
        match (in_string, bytes[i]) {
            (true, b'\\') => i += 1,
            (true, b'"') => in_string = false,
            (false, b'"') => in_string = true,
            (false, b'[') => {
                if let Some((text, len)) = byte_list(&bytes[i..]) {
                    out.push_str(&json[copied..i]);
                    out.push_str(&serde_json::Value::from(text).to_string());
                    i += len;
                    copied = i;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&json[copied..]);
    out
}

/// A non-empty `[n,...]` at the start of `json` with every `n` in 0..=255, whose bytes are UTF-8:
/// that text, and the length of the array in `json`.
fn byte_list(json: &[u8]) -> Option<(String, usize)> {
    let mut bytes = Vec::new();
    let mut i = 1;
    loop {
        let start = i;
        let mut n: u32 = 0;
        while let Some(digit) = json.get(i).filter(|b| b.is_ascii_digit()) {
            n = n * 10 + u32::from(digit - b'0');
            if n > 255 {
                return None;
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        bytes.push(n as u8);
        match json.get(i)? {
            b',' => i += 1,
            b']' => break,
            _ => return None,
        }
    }
    String::from_utf8(bytes).ok().map(|text| (text, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_stable_and_argument_sensitive() {
        // Golden: the digest format is persisted; changing it breaks replay of old journals.
        assert_eq!(
            digest(&("order",)).unwrap(),
            "3a3119cb811187bd3830b295da05d0ce"
        );
        assert_ne!(digest(&("order",)).unwrap(), digest(&("orders",)).unwrap());
    }

    #[test]
    fn preview_shows_bytes_as_text() {
        let args = serde_json::json!({"key": "order", "value": [123, 125]});
        assert_eq!(
            preview(&args),
            serde_json::json!({"key": "order", "value": "{}"})
        );
    }

    #[test]
    fn stored_previews_match_previews() {
        for args in [
            serde_json::json!(["order"]),
            serde_json::json!(["order", [123, 125]]),
            serde_json::json!({"amount": 5000, "lines": [[1, 2], []], "note": "a [1] b"}),
            serde_json::json!({"blob": "x".repeat(3000)}),
            serde_json::json!([
                "a \\\" [1,2] \\\\",
                [[104, 105], [300, 1], [255, 254], [0], [1.5]]
            ]),
            serde_json::json!({"k": [104, 105], "n": -1, "e": [], "v": [[1, [2]]]}),
        ] {
            let stored = preview_json(&serde_json::to_vec(&args).unwrap());
            let parsed: serde_json::Value = serde_json::from_str(&stored).unwrap();
            assert_eq!(parsed, preview(&args), "{args}");
        }
        assert_eq!(
            digest_json(&serde_json::to_vec(&("order",)).unwrap()),
            digest(&("order",)).unwrap()
        );
    }

    #[test]
    fn kinds_round_trip() {
        for kind in [
            EntryKind::State,
            EntryKind::Run,
            EntryKind::Http,
            EntryKind::Call,
            EntryKind::Timer,
        ] {
            assert_eq!(EntryKind::parse(kind.as_str()), Some(kind));
        }
    }
}
