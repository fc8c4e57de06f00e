//! Calls and sends to other services (`cairn:durable/calls`) and durable promises
//! (`cairn:durable/promise`), typed with serde: inputs and outputs are JSON.
//!
//! ```ignore
//! let order: Order = ctx.call(&Target::object("OrderOrchestrator", "o-1", "ProcessOrder"), &input)?;
//! ctx.send(&Target::service("Mailer", "Remind"), &note, Some(Duration::from_secs(3600)))?;
//! let approval: Promise<Decision> = ctx.promise(); // hand approval.id() to whoever approves
//! match ctx.wait(&approval, Some(Duration::from_secs(86_400)))? { .. }
//! ```

use core::marker::PhantomData;
use core::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::cairn::durable::{calls, promise};
use crate::context::Context;
use crate::failure::Failure;

/// A handler of another service: a plain service's or a keyed object's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub service: String,
    pub key: Option<String>,
    pub handler: String,
}

impl Target {
    /// `handler` of the plain service `service`.
    pub fn service(service: impl Into<String>, handler: impl Into<String>) -> Self {
        Target {
            service: service.into(),
            key: None,
            handler: handler.into(),
        }
    }

    /// `handler` of the object `key` of the keyed object `service`.
    pub fn object(
        service: impl Into<String>,
        key: impl Into<String>,
        handler: impl Into<String>,
    ) -> Self {
        Target {
            service: service.into(),
            key: Some(key.into()),
            handler: handler.into(),
        }
    }

    pub(crate) fn raw(&self) -> calls::Target {
        calls::Target {
            service: self.service.clone(),
            key: self.key.clone(),
            handler: self.handler.clone(),
        }
    }
}

/// A durable promise whose value is a `T` (JSON on the wire): made by [`Context::promise`], or
/// named by id ([`Promise::from_id`]) when another invocation created it. Waiting for it gives a
/// `T`; resolving it takes one.
#[derive(Debug)]
pub struct Promise<T> {
    id: String,
    value: PhantomData<fn() -> T>,
}

impl<T> Promise<T> {
    /// A promise by id (one another invocation created and passed on).
    pub fn from_id(id: impl Into<String>) -> Self {
        Promise {
            id: id.into(),
            value: PhantomData,
        }
    }

    /// Hand this to whoever completes it (`POST /promises/{id}/resolve`).
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl<T> Clone for Promise<T> {
    fn clone(&self) -> Self {
        Self::from_id(self.id.clone())
    }
}

impl<T> PartialEq for Promise<T> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl<T> Eq for Promise<T> {}

/// How a wait for a promise ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion<T> {
    Resolved(T),
    Rejected(String),
    TimedOut,
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Failure> {
    serde_json::to_vec(value)
        .map_err(|e| Failure::terminal(500, format!("cannot encode the input: {e}")))
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(bytes)
        .map_err(|e| Failure::terminal(500, format!("cannot decode {what}: {e}")))
}

impl From<calls::CallError> for Failure {
    /// A refusal is the caller's mistake (terminal 400); a callee's failure keeps its code.
    fn from(err: calls::CallError) -> Self {
        match err {
            calls::CallError::Refused(message) => Failure::terminal(400, message),
            calls::CallError::Failed(failure) => Failure::terminal(failure.code, failure.message),
        }
    }
}

impl Context {
    /// Calls `target` with `input` and decodes its output. The callee runs as its own
    /// invocation; this one is suspended meanwhile (it holds no instance), and a replay gets the
    /// recorded output without a second callee.
    pub fn call<I, O>(&self, target: &Target, input: &I) -> Result<O, Failure>
    where
        I: Serialize + ?Sized,
        O: DeserializeOwned,
    {
        self.call_raw(target, &encode(input)?)
    }

    /// Starts `target` with `input` without waiting, after `delay` if given (durable: it fires
    /// once, also across restarts). Returns the new invocation's id.
    pub fn send<I: Serialize + ?Sized>(
        &self,
        target: &Target,
        input: &I,
        delay: Option<Duration>,
    ) -> Result<String, Failure> {
        self.send_raw(target, &encode(input)?, delay)
    }

    pub(crate) fn call_raw<O: DeserializeOwned>(
        &self,
        target: &Target,
        input: &[u8],
    ) -> Result<O, Failure> {
        let output = calls::call(&target.raw(), input);
        self.check_cancelled()?;
        let output = output?;
        decode(&format!("the output of {}", target.handler), &output)
    }

    pub(crate) fn send_raw(
        &self,
        target: &Target,
        input: &[u8],
        delay: Option<Duration>,
    ) -> Result<String, Failure> {
        Ok(calls::send(&target.raw(), input, delay.map(ms))?)
    }

    /// A new durable promise of a `T` (`let approval: Promise<Decision> = ctx.promise();`).
    pub fn promise<T>(&self) -> Promise<T> {
        Promise::from_id(promise::create())
    }

    /// Waits for `promise` (or `timeout`, a durable timer) and decodes its value.
    pub fn wait<T: DeserializeOwned>(
        &self,
        promise: &Promise<T>,
        timeout: Option<Duration>,
    ) -> Result<Completion<T>, Failure> {
        let outcome = promise::wait(&promise.id, timeout.map(ms));
        self.check_cancelled()?;
        completion(outcome)
    }

    /// Waits for the first of `promises` to complete: its position and how it completed;
    /// `None` when `timeout` passes first.
    pub fn wait_any<T: DeserializeOwned>(
        &self,
        promises: &[Promise<T>],
        timeout: Option<Duration>,
    ) -> Result<Option<(usize, Completion<T>)>, Failure> {
        let ids: Vec<String> = promises.iter().map(|p| p.id.clone()).collect();
        let first = promise::wait_any(&ids, timeout.map(ms));
        self.check_cancelled()?;
        match first {
            Some((index, outcome)) => Ok(Some((index as usize, completion(outcome)?))),
            None => Ok(None),
        }
    }

    /// Resolves `promise` with `value`; `false` when it was completed already (the first
    /// completion stands) or does not exist.
    pub fn resolve<T: Serialize>(&self, promise: &Promise<T>, value: &T) -> Result<bool, Failure> {
        Ok(promise::resolve(&promise.id, &encode(value)?).is_ok())
    }

    /// Rejects `promise` with `reason`; `false` when it was completed already or does not exist.
    pub fn reject<T>(&self, promise: &Promise<T>, reason: &str) -> bool {
        promise::reject(&promise.id, reason).is_ok()
    }
}

fn completion<T: DeserializeOwned>(outcome: promise::Outcome) -> Result<Completion<T>, Failure> {
    Ok(match outcome {
        promise::Outcome::Resolved(value) => {
            Completion::Resolved(decode("a promise's value", &value)?)
        }
        promise::Outcome::Rejected(reason) => Completion::Rejected(reason),
        promise::Outcome::TimedOut => Completion::TimedOut,
    })
}
