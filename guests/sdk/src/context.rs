//! The handler's view of its invocation: who it is (`cairn:durable/context`), durable steps
//! (`cairn:durable/run`) and the per-key state of a keyed object (`cairn:durable/state`). The
//! type says what a handler may do: a plain service's [`Context`] has no state, a shared
//! handler's [`SharedContext`] reads it, an exclusive handler's [`ObjectContext`] writes it.
//!
//! Values crossing these interfaces are JSON (serde). Every call here is an import call that the
//! host journals, so a handler must make them in a deterministic order.

use std::cell::{Cell, OnceCell, RefCell};
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

/// What every handler may do: know its invocation, run durable steps, sleep, call and send to
/// other services, use promises (see [`crate::Target`]). It has no state: a plain service's
/// handlers get this one.
///
/// ```compile_fail
/// fn notify(ctx: &cairn_sdk::Context) {
///     let _ = ctx.get::<u32>("count"); // no method `get` on `Context`: a plain service has no state
/// }
/// ```
#[derive(Debug, Default)]
pub struct Context {
    invocation: OnceCell<Invocation>,
    /// Whether a step closure is running, to refuse nested steps.
    open_step: Cell<bool>,
    /// A step that failed retryably and was not recorded: the attempt must end.
    abandoned_step: RefCell<Option<String>>,
    /// The operator's cancellation was given to the handler as a [`Failure::cancelled`].
    cancel_reported: Cell<bool>,
}

/// What a shared handler of a keyed object may do: everything a [`Context`] can (it derefs to
/// one), and read the object's state. It has no way to write it, so a write does not compile:
///
/// ```compile_fail
/// fn get_order(ctx: &cairn_sdk::SharedContext) {
///     ctx.set("order", &1).unwrap(); // no method `set` on `SharedContext`
/// }
/// ```
#[derive(Debug, Default)]
pub struct SharedContext {
    base: Context,
}

/// What an exclusive handler of a keyed object may do: everything a [`SharedContext`] can (it
/// derefs to one), and write the object's state.
#[derive(Debug, Default)]
pub struct ObjectContext {
    shared: SharedContext,
}

impl std::ops::Deref for SharedContext {
    type Target = Context;

    fn deref(&self) -> &Context {
        &self.base
    }
}

impl std::ops::Deref for ObjectContext {
    type Target = SharedContext;

    fn deref(&self) -> &SharedContext {
        &self.shared
    }
}

/// How a step's closure fails: a terminal error is recorded like a value (every later attempt
/// gets it back without running the step), a retryable one is not (the attempt ends and the
/// step runs again on the next one), as Restate's `TerminalError` and `HandlerError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepError<E> {
    /// Recorded: the step's final answer.
    Terminal(E),
    /// Not recorded: return it from the handler (`?`), and the host retries the invocation.
    Retryable(Failure),
}

impl<E> StepError<E> {
    /// A retryable step failure (a 503 if the retries run out).
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable(Failure::retryable(503, message))
    }
}

impl<E: Into<Failure>> From<StepError<E>> for Failure {
    fn from(err: StepError<E>) -> Self {
        match err {
            StepError::Terminal(e) => e.into(),
            StepError::Retryable(failure) => failure,
        }
    }
}

impl ObjectContext {
    #[doc(hidden)]
    pub fn __new() -> Self {
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
    #[doc(hidden)]
    pub fn __new() -> Self {
        Self::default()
    }

    /// The object key.
    pub fn key(&self) -> &str {
        self.invocation()
            .key
            .as_deref()
            .expect("cairn: the invocation of a keyed object has a key")
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

impl Context {
    #[doc(hidden)]
    pub fn __new() -> Self {
        Self::default()
    }

    /// The invocation (asked from the host once, on first use).
    pub fn invocation(&self) -> &Invocation {
        self.invocation
            .get_or_init(|| Invocation::from(context::current()))
    }

    /// The operator's configuration value `name` for this service (`cairn serve
    /// --service-config SERVICE.NAME=VALUE`), if set. Journaled: a replay reads the same value.
    pub fn config(&self, name: &str) -> Option<String> {
        self.assert_can_journal("config");
        context::config(name)
    }

    /// Runs `step` once and records its outcome under `name`; on a later attempt returns the
    /// recorded outcome without running `step` again.
    ///
    /// The value and a [`StepError::Terminal`] error are recorded as JSON; a
    /// [`StepError::Retryable`] one is not: it comes back (named after the step) for the handler
    /// to return, the attempt ends, and the step runs again on the next attempt. Steps do not
    /// nest: calling `run` inside a step's closure panics (a trap), and so does a recorded
    /// outcome that no longer decodes as `T`/`E` (the code changed under a journal: a
    /// divergence the host must see).
    ///
    /// ```ignore
    /// let receipt = ctx.run("charge", || match bank.charge(&card) {
    ///     Ok(receipt) => Ok(receipt),
    ///     Err(e) if e.is_timeout() => Err(StepError::retryable(e.to_string())),
    ///     Err(e) => Err(StepError::Terminal(e.to_string())),
    /// });
    /// ```
    pub fn run<T, E, F>(&self, name: &str, step: F) -> Result<T, StepError<E>>
    where
        T: Serialize + DeserializeOwned,
        E: Serialize + DeserializeOwned,
        F: FnOnce() -> Result<T, StepError<E>>,
    {
        self.assert_can_journal(name);
        if let Some(recorded) = run::begin(name) {
            return decode_outcome(name, recorded).map_err(StepError::Terminal);
        }
        self.open_step.set(true);
        let outcome = step();
        self.open_step.set(false);
        let outcome = match outcome {
            Err(StepError::Retryable(failure)) => {
                *self.abandoned_step.borrow_mut() = Some(name.to_owned());
                return Err(StepError::Retryable(Failure {
                    message: format!("step {name}: {}", failure.message),
                    ..failure
                }));
            }
            Err(StepError::Terminal(e)) => Err(e),
            Ok(value) => Ok(value),
        };
        match encode_outcome(name, &outcome) {
            Ok(bytes) => run::end(name, Ok(&bytes)),
            Err(text) => run::end(name, Err(&text)),
        }
        outcome.map_err(StepError::Terminal)
    }

    /// Sleeps durably for `duration`, measured from the first time this call ran: the end is
    /// journaled, so a crash or restart does not restart the wait. While it lasts, the host
    /// holds no instance of this component; it replays the handler up to here when the time
    /// comes (an exclusive handler keeps its key meanwhile). An operator's cancellation ends it
    /// early with [`Failure::cancelled`].
    pub fn sleep(&self, duration: core::time::Duration) -> Result<(), Failure> {
        self.assert_can_journal("sleep");
        let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        timer::sleep(ms);
        self.check_cancelled()
    }

    /// Whether the operator cancelled this invocation (`cairn cancel ID`): `true` from the check
    /// that finds it on. Journaled where it was found, so a replay answers the same.
    pub fn cancelled(&self) -> bool {
        self.assert_can_journal("cancelled");
        context::cancelled()
    }

    /// [`Failure::cancelled`] once, at the first check after the operator cancelled this
    /// invocation; `Ok` before, and after it was given (so compensation runs undisturbed). The
    /// SDK checks after every sleep, wait and call; check yourself between provider calls
    /// where a cancellation should stop the flow. Return the failure from the handler, after
    /// compensating, and the invocation ends `cancelled`.
    pub fn check_cancelled(&self) -> Result<(), Failure> {
        if self.cancel_reported.get() || !self.cancelled() {
            return Ok(());
        }
        self.cancel_reported.set(true);
        Err(Failure::cancelled())
    }

    /// Traps on a step inside a step, or on anything after a step failed retryably.
    fn assert_can_journal(&self, what: &str) {
        assert!(
            !self.open_step.get(),
            "cairn: `{what}` inside a step; steps do not nest and sleep between steps"
        );
        if let Some(step) = self.abandoned_step.borrow().as_deref() {
            panic!(
                "cairn: `{what}` after step `{step}` failed retryably; return its error to end the attempt"
            );
        }
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
