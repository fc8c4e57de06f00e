//! The handler's view of its invocation: who it is (`cairn:durable/context`), durable steps
//! (`cairn:durable/run`) and the per-key state of a keyed object (`cairn:durable/state`). The
//! type says what a handler may do: a shared handler gets a [`SharedContext`], which cannot
//! write state; an exclusive one a [`Context`], which can.
//!
//! Values crossing these interfaces are JSON (serde). Every call here is an import call that the
//! host journals, so a handler must make them in a deterministic order.

use std::cell::{Cell, OnceCell};
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::cairn::durable::{context, run, state, timer};
use crate::failure::Failure;

/// The invocation being served; the same on every attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// Unique invocation id (the `x-cairn-invocation-id` the caller sees).
    pub id: String,
    /// Service name, as `describe` gave it.
    pub service: String,
    /// Handler being invoked.
    pub handler: String,
    /// The object key, for keyed objects.
    pub key: Option<String>,
    /// 1 on the first attempt, 2 on the first retry, ...
    pub attempt: u32,
}

impl From<context::Invocation> for Invocation {
    fn from(raw: context::Invocation) -> Self {
        Self {
            id: raw.id,
            service: raw.service,
            handler: raw.handler,
            key: raw.key,
            attempt: raw.attempt,
        }
    }
}

/// A state value that could not be encoded or decoded as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The value could not be serialized.
    Encode { key: String, message: String },
    /// The stored bytes are not the JSON of the requested type.
    Decode { key: String, message: String },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Encode { key, message } => write!(f, "cannot encode state `{key}`: {message}"),
            Self::Decode { key, message } => write!(f, "cannot decode state `{key}`: {message}"),
        }
    }
}

impl std::error::Error for StateError {}

impl From<StateError> for Failure {
    /// A state value of the wrong shape will not heal by retrying: terminal 500.
    fn from(err: StateError) -> Self {
        Failure::terminal(500, err.to_string())
    }
}

/// What a shared handler may do: read state, run steps, sleep, call, send, use promises. It has
/// no way to write state, so a write in a shared handler does not compile:
///
/// ```compile_fail
/// fn get_order(ctx: &cairn_sdk::SharedContext) {
///     ctx.set("order", &1).unwrap(); // no method `set` on `SharedContext`
/// }
/// ```
#[derive(Debug, Default)]
pub struct SharedContext {
    invocation: OnceCell<Invocation>,
    /// Whether a step closure is running, to refuse nested steps.
    open_step: Cell<bool>,
}

/// What an exclusive handler may do: everything a [`SharedContext`] can (it derefs to one), and
/// write the object's state.
#[derive(Debug, Default)]
pub struct Context {
    shared: SharedContext,
}

impl std::ops::Deref for Context {
    type Target = SharedContext;

    fn deref(&self) -> &SharedContext {
        &self.shared
    }
}

impl Context {
    /// A context for the invocation the component is serving. [`crate::dispatch`] makes one per
    /// exclusive handler call; make your own only when you export the handler by hand.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `value` as JSON under `key`.
    pub fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(value).map_err(|err| StateError::Encode {
            key: key.to_owned(),
            message: err.to_string(),
        })?;
        self.set_raw(key, &bytes);
        Ok(())
    }

    /// Stores raw bytes under `key`.
    pub fn set_raw(&self, key: &str, value: &[u8]) {
        state::set(key, value);
    }

    /// Removes `key`.
    pub fn clear(&self, key: &str) {
        state::clear(key);
    }

    /// Removes every key of this object.
    pub fn clear_all(&self) {
        state::clear_all();
    }
}

impl SharedContext {
    /// A context for a shared handler call ([`crate::dispatch`] makes one).
    pub fn new() -> Self {
        Self::default()
    }

    /// The invocation (asked from the host once, on first use).
    pub fn invocation(&self) -> &Invocation {
        self.invocation
            .get_or_init(|| Invocation::from(context::current()))
    }

    /// The object key, for keyed objects.
    pub fn key(&self) -> Option<&str> {
        self.invocation().key.as_deref()
    }

    /// The object key, or a terminal 400 when the invocation has none (a plain service).
    pub fn require_key(&self) -> Result<&str, Failure> {
        self.key()
            .ok_or_else(|| Failure::bad_request("this handler needs an object key"))
    }

    /// Runs `step` once and records its outcome under `name`; on a later attempt returns the
    /// recorded outcome without running `step` again.
    ///
    /// Both the value and the error are recorded as JSON. Steps do not nest: calling `run`
    /// inside a step's closure panics (a trap), and so does a recorded outcome that no longer
    /// decodes as `T`/`E` (the code changed under a journal: a divergence the host must see).
    pub fn run<T, E, F>(&self, name: &str, step: F) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: Serialize + DeserializeOwned,
        F: FnOnce() -> Result<T, E>,
    {
        assert!(
            !self.open_step.get(),
            "cairn: step `{name}` started inside another step; steps do not nest"
        );
        if let Some(recorded) = run::begin(name) {
            return decode_outcome(name, recorded);
        }
        self.open_step.set(true);
        let outcome = step();
        self.open_step.set(false);
        match encode_outcome(name, &outcome) {
            Ok(bytes) => run::end(name, Ok(&bytes)),
            Err(text) => run::end(name, Err(&text)),
        }
        outcome
    }

    /// Sleeps durably for `duration`, measured from the first time this call ran: the end is
    /// journaled, so a crash or restart does not restart the wait. While it lasts, the host
    /// holds no instance of this component; it replays the handler up to here when the time
    /// comes (an exclusive handler keeps its key meanwhile).
    pub fn sleep(&self, duration: core::time::Duration) {
        assert!(
            !self.open_step.get(),
            "cairn: sleep inside a step; sleep between steps instead"
        );
        let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        timer::sleep(ms);
    }

    /// The state value under `key`, decoded from JSON; `None` when unset.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StateError> {
        self.get_raw(key)
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|err| StateError::Decode {
                    key: key.to_owned(),
                    message: err.to_string(),
                })
            })
            .transpose()
    }

    /// The raw bytes under `key`.
    pub fn get_raw(&self, key: &str) -> Option<Vec<u8>> {
        state::get(key)
    }

    /// The keys of this object.
    pub fn keys(&self) -> Vec<String> {
        state::keys()
    }
}

/// The wire form of a step outcome: JSON of the value, or JSON of the error as the error string.
fn encode_outcome<T: Serialize, E: Serialize>(
    name: &str,
    outcome: &Result<T, E>,
) -> Result<Vec<u8>, String> {
    match outcome {
        Ok(value) => Ok(serde_json::to_vec(value)
            .unwrap_or_else(|err| panic!("cairn: step `{name}`: cannot encode its value: {err}"))),
        Err(error) => Err(serde_json::to_string(error)
            .unwrap_or_else(|err| panic!("cairn: step `{name}`: cannot encode its error: {err}"))),
    }
}

fn decode_outcome<T: DeserializeOwned, E: DeserializeOwned>(
    name: &str,
    recorded: Result<Vec<u8>, String>,
) -> Result<T, E> {
    match recorded {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_else(|err| {
            panic!("cairn: step `{name}`: recorded value does not decode: {err}")
        })),
        Err(text) => Err(serde_json::from_str(&text).unwrap_or_else(|err| {
            panic!("cairn: step `{name}`: recorded error does not decode: {err}")
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_as_json() {
        let ok: Result<Vec<u32>, String> = Ok(vec![1, 2]);
        let wire = encode_outcome("s", &ok);
        assert_eq!(wire, Ok(b"[1,2]".to_vec()));
        assert_eq!(decode_outcome::<Vec<u32>, String>("s", wire), ok);

        let err: Result<u32, String> = Err("card declined".into());
        let wire = encode_outcome("s", &err);
        assert_eq!(wire, Err("\"card declined\"".to_owned()));
        assert_eq!(decode_outcome::<u32, String>("s", wire), err);
    }

    #[test]
    #[should_panic(expected = "recorded value does not decode")]
    fn a_recorded_value_of_another_type_traps() {
        let _: Result<u32, String> = decode_outcome("s", Ok(b"\"text\"".to_vec()));
    }

    #[test]
    fn state_errors_become_terminal_500() {
        let failure = Failure::from(StateError::Decode {
            key: "order".into(),
            message: "expected struct".into(),
        });
        assert!(failure.is_terminal());
        assert_eq!(failure.code, 500);
        assert_eq!(
            failure.message,
            "cannot decode state `order`: expected struct"
        );
    }
}
