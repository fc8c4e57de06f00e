//! Typed clients of other services, written by `#[cairn_sdk::object]` / `#[cairn_sdk::service]`
//! as `{Type}Client`: one method per handler, taking its input type and giving a [`Request`]
//! for its output type, which is then called or sent.
//!
//! ```ignore
//! // The callee, declared in the caller (its implementation is another component):
//! #[cairn_sdk::object(rename_all = "PascalCase")]
//! trait Counter {
//!     fn add(ctx: &ObjectContext, delta: i64) -> Result<i64, Failure>;
//! }
//!
//! let total = ctx.object_client::<CounterClient>("c-1").add(&5).call()?;
//! ctx.object_client::<CounterClient>("c-1").add(&1).send_after(Duration::from_secs(60))?;
//! ```

use core::marker::PhantomData;
use core::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::calls::{Target, encode};
use crate::context::Context;
use crate::failure::Failure;

/// The client of a plain service, made by [`Context::service_client`].
pub trait ServiceClient<'ctx> {
    /// The service's name.
    const SERVICE: &'static str;
    #[doc(hidden)]
    fn from_target(target: ClientTarget<'ctx>) -> Self;
}

/// The client of a keyed object, made by [`Context::object_client`].
pub trait ObjectClient<'ctx> {
    /// The service's name.
    const SERVICE: &'static str;
    #[doc(hidden)]
    fn from_target(target: ClientTarget<'ctx>) -> Self;
}

/// The service (and key) a client talks to.
#[doc(hidden)]
#[derive(Debug)]
pub struct ClientTarget<'ctx> {
    ctx: &'ctx Context,
    service: &'static str,
    key: Option<String>,
}

impl<'ctx> ClientTarget<'ctx> {
    /// A request of `handler` with `input`; an input that does not encode fails when it is made.
    pub fn request<I: Serialize + ?Sized, O>(&self, handler: &str, input: &I) -> Request<'ctx, O> {
        Request {
            ctx: self.ctx,
            target: Target {
                service: self.service.to_owned(),
                key: self.key.clone(),
                handler: handler.to_owned(),
            },
            input: encode(input),
            output: PhantomData,
        }
    }
}

/// A request of one handler with its input, not made yet: [`Request::call`] waits for the
/// output, [`Request::send`] does not.
#[must_use = "a request does nothing until it is called or sent"]
#[derive(Debug)]
pub struct Request<'ctx, O> {
    ctx: &'ctx Context,
    target: Target,
    input: Result<Vec<u8>, Failure>,
    output: PhantomData<fn() -> O>,
}

impl<O> Request<'_, O> {
    /// Calls the handler and waits for its output (see [`Context::call`]).
    pub fn call(self) -> Result<O, Failure>
    where
        O: DeserializeOwned,
    {
        self.ctx.call_raw(&self.target, &self.input?)
    }

    /// Starts the handler without waiting; its invocation id.
    pub fn send(self) -> Result<String, Failure> {
        self.ctx.send_raw(&self.target, &self.input?, None)
    }

    /// Starts the handler after `delay` (a durable timer); its invocation id.
    pub fn send_after(self, delay: Duration) -> Result<String, Failure> {
        self.ctx.send_raw(&self.target, &self.input?, Some(delay))
    }
}

impl Context {
    /// A typed client of the plain service `C` (a `{Type}Client`).
    pub fn service_client<'ctx, C: ServiceClient<'ctx>>(&'ctx self) -> C {
        C::from_target(ClientTarget {
            ctx: self,
            service: C::SERVICE,
            key: None,
        })
    }

    /// A typed client of object `key` of the keyed object `C` (a `{Type}Client`).
    pub fn object_client<'ctx, C: ObjectClient<'ctx>>(&'ctx self, key: impl Into<String>) -> C {
        C::from_target(ClientTarget {
            ctx: self,
            service: C::SERVICE,
            key: Some(key.into()),
        })
    }
}
