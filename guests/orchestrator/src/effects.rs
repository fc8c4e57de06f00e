//! What the order flow does to the world, as a trait: the component's implementation calls the
//! host (state, promises, the provider imports, the clock, log); unit tests substitute a fake
//! that counts effects.

use core::time::Duration;

use cairn_sdk::{Completion, Failure, ObjectContext, Promise};

use crate::bindings::cairn::commerce::types::{
    Charge, ChargeRequest, EmailMessage, EmailReceipt, Label, LabelRequest, LabelVoid,
    ProviderError, Refund, RefundRequest,
};
use crate::bindings::cairn::commerce::{email, payments, shipping};
use crate::events::OrderEvent;
use crate::order::{ORDER_KEY, Order};

/// State key holding the id of the promise a pending payment's webhook resolves. Kept out of
/// the order's JSON: whoever holds the id can complete the payment.
pub const PAYMENT_PROMISE_KEY: &str = "payment-promise";

/// The flow's side effects. Each method is one import call (logging excepted).
pub trait Effects {
    /// The stored order, if any.
    fn load_order(&self) -> Result<Option<Order>, Failure>;
    /// Stores the order.
    fn save_order(&self, order: &Order) -> Result<(), Failure>;
    /// A new promise for the payment's webhook, its id stored under [`PAYMENT_PROMISE_KEY`].
    fn payment_promise(&self) -> Result<Promise<OrderEvent>, Failure>;
    /// Waits for the payment's webhook (a durable wait), at most `timeout`.
    fn wait_payment(
        &self,
        promise: &Promise<OrderEvent>,
        timeout: Duration,
    ) -> Result<Completion<OrderEvent>, Failure>;
    /// Rejects the payment promise (nobody waits any more); `false` when it was completed first.
    fn close_payment(&self, promise: &Promise<OrderEvent>, reason: &str) -> bool;
    fn create_charge(&self, request: &ChargeRequest) -> Result<Charge, ProviderError>;
    fn refund_charge(&self, request: &RefundRequest) -> Result<Refund, ProviderError>;
    fn create_label(&self, request: &LabelRequest) -> Result<Label, ProviderError>;
    fn void_label(&self, label_id: &str) -> Result<LabelVoid, ProviderError>;
    fn send_email(&self, message: &EmailMessage) -> Result<EmailReceipt, ProviderError>;
    /// The time, RFC 3339: the invocation's clock, which starts when the invocation was created
    /// and is the same on replay (so after a wait it still reads the time before it).
    fn now(&self) -> String;
    /// The operator's configuration value `name` (journaled).
    fn config(&self, name: &str) -> Option<String>;
    /// [`Failure::cancelled`] once the operator cancelled the invocation (journaled where
    /// found); waits report it themselves.
    fn check_cancelled(&self) -> Result<(), Failure>;
    /// Logs a line (not journaled).
    fn log(&self, message: &str);
}

/// [`Effects`] through the host's imports.
pub struct HostEffects<'a> {
    ctx: &'a ObjectContext,
}

impl<'a> HostEffects<'a> {
    pub fn new(ctx: &'a ObjectContext) -> Self {
        Self { ctx }
    }
}

impl Effects for HostEffects<'_> {
    fn load_order(&self) -> Result<Option<Order>, Failure> {
        Ok(self.ctx.get(ORDER_KEY)?)
    }

    fn save_order(&self, order: &Order) -> Result<(), Failure> {
        Ok(self.ctx.set(ORDER_KEY, order)?)
    }

    fn payment_promise(&self) -> Result<Promise<OrderEvent>, Failure> {
        let promise = self.ctx.promise();
        self.ctx.set(PAYMENT_PROMISE_KEY, promise.id())?;
        Ok(promise)
    }

    fn wait_payment(
        &self,
        promise: &Promise<OrderEvent>,
        timeout: Duration,
    ) -> Result<Completion<OrderEvent>, Failure> {
        self.ctx.wait(promise, Some(timeout))
    }

    fn close_payment(&self, promise: &Promise<OrderEvent>, reason: &str) -> bool {
        self.ctx.reject(promise, reason)
    }

    fn create_charge(&self, request: &ChargeRequest) -> Result<Charge, ProviderError> {
        payments::create_charge(request)
    }

    fn refund_charge(&self, request: &RefundRequest) -> Result<Refund, ProviderError> {
        payments::refund_charge(request)
    }

    fn create_label(&self, request: &LabelRequest) -> Result<Label, ProviderError> {
        shipping::create_label(request)
    }

    fn void_label(&self, label_id: &str) -> Result<LabelVoid, ProviderError> {
        shipping::void_label(label_id)
    }

    fn send_email(&self, message: &EmailMessage) -> Result<EmailReceipt, ProviderError> {
        email::send_email(message)
    }

    fn now(&self) -> String {
        crate::order::now_stamp()
    }

    fn config(&self, name: &str) -> Option<String> {
        self.ctx.config(name)
    }

    fn check_cancelled(&self) -> Result<(), Failure> {
        self.ctx.check_cancelled()
    }

    fn log(&self, message: &str) {
        cairn_sdk::log::info(message);
    }
}
