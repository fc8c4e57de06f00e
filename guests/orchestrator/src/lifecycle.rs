//! The order after `ProcessOrder`: cancellation and the provider events the `WebhookProcessor`
//! reports, both exclusive (they write the order), over [`Effects`].
//!
//! - [`apply_cancel`]: a paid order (confirmed, shipped, delivered, disputed) is refunded through
//!   `refund-charge` and becomes `refunded`, its label voided (`void-label`) if it has not
//!   shipped; a cancelled or refunded one is returned unchanged (so
//!   cancelling twice answers the same); a failed one cannot be cancelled (409). The refund is one
//!   journaled call whose idempotency key the host derives, so a crash cannot refund twice.
//! - [`apply_event`]: a charge that succeeds on an order that gave up on it (`cancelled`,
//!   `payment_failed` after the timeout) is refunded once; `charge.refunded` confirms a refund
//!   (or marks an order refunded from the provider's side); a dispute makes it `disputed`;
//!   tracking moves a confirmed order to `shipped` and `delivered` and records a return or a
//!   failure; email events record whether the confirmation arrived. An event already applied
//!   (its id in the timeline) changes nothing.

use cairn_sdk::Failure;

use crate::bindings::cairn::commerce::types::{ProviderError, RefundRequest};
use crate::effects::Effects;
use crate::events::{EventKind, OrderEvent};
use crate::flow::describe;
use crate::order::{Order, OrderStatus};

/// The cause recorded for a cancellation.
pub const CANCEL: &str = "CancelOrder";

fn load(fx: &impl Effects, order_id: &str) -> Result<Order, Failure> {
    fx.load_order()?
        .ok_or_else(|| Failure::not_found(format!("order {order_id} not found")))
}

/// `ApplyCancel`: refunds a paid order; see the module docs.
pub fn apply_cancel(fx: &impl Effects, order_id: &str) -> Result<Order, Failure> {
    let mut order = load(fx, order_id)?;
    match order.status {
        OrderStatus::Cancelled | OrderStatus::Refunded => Ok(order),
        OrderStatus::PaymentFailed | OrderStatus::PaymentInDoubt => Err(Failure::terminal(
            409,
            format!(
                "order {order_id} is {}: there is nothing to cancel",
                serde_json::to_value(order.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
        )),
        // Not charged yet (the charge failed to start and will be retried) or pending:
        // nothing to give back; a charge that succeeds later is refunded by its event.
        OrderStatus::Pending | OrderStatus::PaymentPending => {
            order.set_status(OrderStatus::Cancelled, fx.now(), CANCEL);
            fx.save_order(&order)?;
            Ok(order)
        }
        status if status.is_paid() => {
            refund(fx, &mut order, "requested_by_customer")?;
            if matches!(status, OrderStatus::Paid | OrderStatus::Confirmed) {
                void_label(fx, &mut order);
            }
            order.set_status(OrderStatus::Refunded, fx.now(), CANCEL);
            fx.save_order(&order)?;
            Ok(order)
        }
        _ => Ok(order),
    }
}

/// Voids a label not shipped yet, where the provider allows; a refusal is recorded, not fatal.
fn void_label(fx: &impl Effects, order: &mut Order) {
    let Some(label_id) = order.label_id.clone().filter(|_| !order.label_voided) else {
        return;
    };
    match fx.void_label(&label_id) {
        Ok(_) => order.label_voided = true,
        Err(err) => order.record_failure("shipping", format!("void label: {}", describe(&err))),
    }
}

/// Refunds the order's whole charge once (a second call finds `refund_id` set).
fn refund(fx: &impl Effects, order: &mut Order, reason: &str) -> Result<(), Failure> {
    if order.refund_id.is_some() {
        return Ok(());
    }
    let Some(charge_id) = order.charge_id.clone() else {
        return Ok(());
    };
    let request = RefundRequest {
        charge_id,
        amount: None,
        reason: Some(reason.to_owned()),
        order_id: order.order_id.clone(),
    };
    match fx.refund_charge(&request) {
        Ok(refund) => {
            order.refund_id = Some(refund.id);
            Ok(())
        }
        Err(err @ (ProviderError::RateLimited(_) | ProviderError::Unavailable(_))) => Err(
            Failure::retryable(503, format!("refund: {}", describe(&err))),
        ),
        Err(err) => Err(Failure::terminal(
            502,
            format!(
                "refund of order {} refused: {}",
                order.order_id,
                describe(&err)
            ),
        )),
    }
}

/// `ApplyEvent`: applies one provider event; see the module docs.
pub fn apply_event(
    fx: &impl Effects,
    order_id: &str,
    event: &OrderEvent,
) -> Result<Order, Failure> {
    let mut order = load(fx, order_id)?;
    if order.saw(&event.event_id) {
        return Ok(order);
    }
    let at = event.at.clone().unwrap_or_else(|| fx.now());
    let cause = event.event_id.as_str();
    let before = order.clone();
    match &event.kind {
        EventKind::ChargeSucceeded { charge_id } => {
            let gave_up = matches!(
                order.status,
                OrderStatus::Cancelled | OrderStatus::PaymentFailed
            );
            if gave_up && order.charge_id.as_deref() == Some(charge_id.as_str()) {
                fx.log(&format!(
                    "order {order_id}: charge {charge_id} succeeded too late; refunding"
                ));
                refund(fx, &mut order, "requested_by_customer")?;
            }
        }
        // A waiting `ProcessOrder` takes these; once it ended they change nothing.
        EventKind::ChargeFailed { .. } | EventKind::Cancelled => {}
        EventKind::ChargeRefunded { .. } => {
            order.refund_confirmed = true;
            if order.status.is_paid() {
                order.set_status(OrderStatus::Refunded, at, cause);
            }
        }
        EventKind::ChargeDisputed { .. } => {
            if order.status.is_paid() {
                order.set_status(OrderStatus::Disputed, at, cause);
            }
        }
        EventKind::Tracking { status } if status.starts_with("LABEL_") => {
            if status == "LABEL_REFUNDED" {
                order.label_voided = true;
            }
        }
        EventKind::Tracking { status } => {
            order.shipment = Some(status.clone());
            match (status.as_str(), order.status) {
                ("TRANSIT", OrderStatus::Confirmed) => {
                    order.set_status(OrderStatus::Shipped, at, cause);
                }
                ("DELIVERED", OrderStatus::Confirmed | OrderStatus::Shipped) => {
                    order.set_status(OrderStatus::Delivered, at, cause);
                }
                ("RETURNED" | "FAILURE", _) => {
                    order.record_failure("shipping", format!("carrier: {status} ({cause})"));
                }
                _ => {}
            }
        }
        EventKind::Email { event: kind } => {
            order.email_delivery = Some(kind.clone());
            if kind != "delivered" {
                order.record_failure("email", format!("{kind} ({cause})"));
            }
        }
    }
    if order != before {
        fx.save_order(&order)?;
    }
    Ok(order)
}

#[cfg(test)]
mod tests;
