//! What the order flow does to the world, as a trait: the component's implementation calls the
//! host (state, the provider imports, log); unit tests substitute a fake that counts effects.

use cairn_sdk::{Failure, ObjectContext};

use crate::bindings::cairn::commerce::types::{
    Charge, ChargeRequest, EmailMessage, EmailReceipt, Label, LabelRequest, ProviderError,
};
use crate::bindings::cairn::commerce::{email, payments, shipping};
use crate::order::{ORDER_KEY, Order};

/// The flow's side effects. Each method is one import call (logging excepted).
pub trait Effects {
    /// The stored order, if any.
    fn load_order(&self) -> Result<Option<Order>, Failure>;
    /// Stores the order.
    fn save_order(&self, order: &Order) -> Result<(), Failure>;
    fn create_charge(&self, request: &ChargeRequest) -> Result<Charge, ProviderError>;
    fn create_label(&self, request: &LabelRequest) -> Result<Label, ProviderError>;
    fn send_email(&self, message: &EmailMessage) -> Result<EmailReceipt, ProviderError>;
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

    fn create_charge(&self, request: &ChargeRequest) -> Result<Charge, ProviderError> {
        payments::create_charge(request)
    }

    fn create_label(&self, request: &LabelRequest) -> Result<Label, ProviderError> {
        shipping::create_label(request)
    }

    fn send_email(&self, message: &EmailMessage) -> Result<EmailReceipt, ProviderError> {
        email::send_email(message)
    }

    fn log(&self, message: &str) {
        cairn_sdk::log::info(message);
    }
}
