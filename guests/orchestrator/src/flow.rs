//! The `ProcessOrder` flow, over [`Effects`]:
//!
//! 1. An order already stored under the key is returned unchanged (state-based idempotency: no
//!    second charge). A retried invocation does not get here with its own order: the host
//!    replays its journal, so the state reads and provider calls it already made answer as
//!    recorded.
//! 2. Save the order `pending`, charge the total. A decline, invalid request or refused
//!    credentials make the order `payment_failed` (saved and returned, HTTP 200); a charge a
//!    crash left in doubt makes it `payment_in_doubt` (saved and returned, no label, no email);
//!    rate limiting or an unavailable provider is a retryable 503 and leaves the order `pending`.
//!    A charge that comes back `pending` (an asynchronous payment method) makes the order
//!    `payment_pending`: it waits (durably, holding no instance) for the promise that the
//!    charge's webhook resolves, at most the payment timeout (the order's
//!    `paymentTimeoutSeconds`, else the operator's `payment-timeout`, else one hour). `charge.succeeded` goes on;
//!    `charge.failed` or the timeout end in `payment_failed`; a `CancelOrder` meanwhile rejects
//!    the promise and the order ends `cancelled`. A charge that succeeds after that is refunded
//!    (see [`crate::lifecycle`]).
//! 3. Save it `paid`; buy a label and send the confirmation email. Both are optional: a failure
//!    (an in-doubt call included) is recorded on the order and the flow goes on.
//! 4. Save it `confirmed` and return it.
//!
//! An operator's cancellation (`cairn cancel ID`) stops the flow at the next check: before the
//! charge, the label or the email, or while it waits for a pending charge. What was done is
//! undone as `CancelOrder` would ([`crate::lifecycle::apply_cancel`]: a paid order refunded and
//! its label voided, an unpaid one cancelled), and the invocation ends `cancelled`.

use cairn_sdk::{Completion, Failure, Promise};

use crate::bindings::cairn::commerce::types::{
    Address, ChargeRequest, EmailMessage, LabelRequest, Parcel, ProviderError,
};
use crate::effects::Effects;
use crate::events::{EventKind, OrderEvent};
use crate::input::{MAX_PAYMENT_TIMEOUT_SECS, OrderInput, PAYMENT_TIMEOUT};
use crate::lifecycle;
use crate::order::{Order, OrderStatus, later};
use core::time::Duration;

/// Runs `ProcessOrder` for order `order_id` with validated `input`.
pub fn process_order(
    fx: &impl Effects,
    order_id: &str,
    input: &OrderInput,
) -> Result<Order, Failure> {
    if let Some(existing) = fx.load_order()? {
        return Ok(existing);
    }
    let mut order = Order::pending(order_id, input.total, &input.currency);
    // When the flow went on after waiting for a pending charge's webhook.
    let mut resumed: Option<String> = None;
    order.set_status(OrderStatus::Pending, fx.now(), HANDLER);
    fx.save_order(&order)?;
    stop_if_cancelled(fx, &order)?;

    match fx.create_charge(&charge_request(&order, input)) {
        Ok(charge) if charge.status == "pending" => {
            // A webhook that comes before the promise is stored is retried by its processor
            // until the promise is there ([`crate::lifecycle::on_event`]).
            let payment = fx.payment_promise()?;
            order.charge_id = Some(charge.id);
            order.set_status(OrderStatus::PaymentPending, fx.now(), HANDLER);
            fx.save_order(&order)?;
            let timeout = payment_timeout(fx, input);
            let waited_from = fx.now();
            let waited = match fx.wait_payment(&payment, timeout) {
                Err(failure) if failure.is_cancelled() => {
                    return Err(cancelled_waiting(fx, &mut order, &payment, &waited_from));
                }
                waited => waited?,
            };
            let outcome = match waited {
                Completion::TimedOut if fx.close_payment(&payment, "payment timed out") => None,
                // Completed between the timeout and the rejection: the completion stands.
                Completion::TimedOut => {
                    Some(fx.wait_payment(&payment, core::time::Duration::ZERO)?)
                }
                completion => Some(completion),
            };
            // The invocation's clock still reads the time before the wait: the timeline goes on
            // from when the wait ended (the event's time, or the timeout).
            let ended = later(&waited_from, timeout);
            match settle_pending(fx, &mut order, outcome, ended)? {
                Settled::Done(done) => return Ok(done),
                Settled::Paid(at) => resumed = Some(at),
            }
        }
        Ok(charge) => {
            order.charge_id = Some(charge.id);
            order.set_status(OrderStatus::Paid, fx.now(), HANDLER);
            fx.save_order(&order)?;
        }
        Err(err) => {
            if let Some(failure) = retryable(&err) {
                return Err(failure);
            }
            let reason = payment_failure_reason(&err);
            let status = if matches!(err, ProviderError::InDoubt(_)) {
                fx.log(&format!("order {order_id}: payment in doubt: {reason}"));
                OrderStatus::PaymentInDoubt
            } else {
                fx.log(&format!("order {order_id}: payment failed: {reason}"));
                OrderStatus::PaymentFailed
            };
            order.set_status(status, fx.now(), HANDLER);
            order.record_failure("payment", reason.clone());
            order.failure_reason = Some(reason);
            fx.save_order(&order)?;
            return Ok(order);
        }
    }

    stop_if_cancelled(fx, &order)?;
    match fx.create_label(&label_request(&order, input)) {
        Ok(label) => {
            order.label_id = Some(label.id);
            order.tracking_number = label.tracking_number;
            order.label_url = label.label_url;
        }
        Err(err) => order.record_failure("shipping", describe(&err)),
    }
    stop_if_cancelled(fx, &order)?;
    match fx.send_email(&confirmation_email(&order, input)) {
        Ok(_) => order.email_sent = true,
        Err(err) => order.record_failure("email", describe(&err)),
    }
    order.set_status(
        OrderStatus::Confirmed,
        resumed.unwrap_or_else(|| fx.now()),
        HANDLER,
    );
    fx.save_order(&order)?;
    Ok(order)
}

/// The operator's cancellation, if it came: `order` compensated, and the
/// cancellation as the flow's failure.
fn stop_if_cancelled(fx: &impl Effects, order: &Order) -> Result<(), Failure> {
    fx.check_cancelled()
        .map_err(|cancelled| compensate(fx, order, cancelled))
}

/// Undoes what the flow did to `order` as `CancelOrder` would; `cancelled` ends the invocation
/// unless the compensation itself fails (a refund refused, or to retry).
fn compensate(fx: &impl Effects, order: &Order, cancelled: Failure) -> Failure {
    fx.log(&format!(
        "order {}: cancelled by the operator",
        order.order_id
    ));
    if matches!(
        order.status,
        OrderStatus::PaymentFailed | OrderStatus::PaymentInDoubt
    ) {
        return cancelled;
    }
    // What the flow holds and has not saved yet (a label bought) is undone too.
    if let Err(failure) = fx.save_order(order) {
        return failure;
    }
    match lifecycle::apply_cancel(fx, &order.order_id) {
        Ok(_) => cancelled,
        Err(failure) => failure,
    }
}

/// Cancelled while waiting for a pending charge: the promise closed (a charge that succeeded
/// first is settled, and so refunded), then [`compensate`].
fn cancelled_waiting(
    fx: &impl Effects,
    order: &mut Order,
    payment: &Promise<OrderEvent>,
    waited_from: &str,
) -> Failure {
    if !fx.close_payment(payment, "cancelled by the operator") {
        let settled = fx
            .wait_payment(payment, Duration::ZERO)
            .and_then(|outcome| settle_pending(fx, order, Some(outcome), waited_from.to_owned()));
        if let Err(failure) = settled {
            return failure;
        }
    }
    compensate(fx, order, Failure::cancelled())
}

/// The order's own timeout, else the operator's `payment-timeout` (humantime: `90s`, `1h`),
/// else [`PAYMENT_TIMEOUT`]; an unreadable setting is logged and the default used.
fn payment_timeout(fx: &impl Effects, input: &OrderInput) -> Duration {
    if let Some(timeout) = input.payment_timeout {
        return timeout;
    }
    let Some(setting) = fx.config("payment-timeout") else {
        return PAYMENT_TIMEOUT;
    };
    match humantime::parse_duration(&setting) {
        Ok(timeout) if timeout.as_secs() <= MAX_PAYMENT_TIMEOUT_SECS && !timeout.is_zero() => {
            timeout
        }
        _ => {
            fx.log(&format!(
                "payment-timeout {setting:?} is not a duration up to 7 days (e.g. 30m); using 1h"
            ));
            PAYMENT_TIMEOUT
        }
    }
}

/// The cause recorded for status changes made here.
const HANDLER: &str = "ProcessOrder";

/// How a pending charge's wait ended.
enum Settled {
    /// The flow ends with this order.
    Done(Order),
    /// The charge succeeded at this time; the order is `paid`.
    Paid(String),
}

/// Applies how a pending charge ended (`None`: the timeout, at `timed_out_at`).
fn settle_pending(
    fx: &impl Effects,
    order: &mut Order,
    outcome: Option<Completion<OrderEvent>>,
    timed_out_at: String,
) -> Result<Settled, Failure> {
    let (status, reason, cause, at) = match outcome {
        Some(Completion::Resolved(event)) => {
            let at = event.at.unwrap_or_else(|| fx.now());
            match event.kind {
                EventKind::ChargeSucceeded { .. } => {
                    order.set_status(OrderStatus::Paid, at.clone(), &event.event_id);
                    fx.save_order(order)?;
                    return Ok(Settled::Paid(at));
                }
                EventKind::ChargeFailed { reason, .. } => {
                    (OrderStatus::PaymentFailed, reason, event.event_id, at)
                }
                EventKind::Cancelled => (
                    OrderStatus::Cancelled,
                    "cancelled by the customer".to_owned(),
                    event.event_id,
                    at,
                ),
                other => {
                    return Err(Failure::terminal(
                        500,
                        format!("the payment promise got {other:?}"),
                    ));
                }
            }
        }
        Some(Completion::Rejected(reason)) => (
            OrderStatus::Cancelled,
            reason,
            "CancelOrder".to_owned(),
            fx.now(),
        ),
        Some(Completion::TimedOut) | None => (
            OrderStatus::PaymentFailed,
            "payment_timeout: the charge stayed pending past the payment timeout".to_owned(),
            HANDLER.to_owned(),
            timed_out_at,
        ),
    };
    fx.log(&format!("order {}: {reason}", order.order_id));
    order.set_status(status, at, &cause);
    if status == OrderStatus::PaymentFailed {
        order.record_failure("payment", reason.clone());
        order.failure_reason = Some(reason);
    }
    fx.save_order(order)?;
    Ok(Settled::Done(order.clone()))
}

/// The charge for the order's total.
pub fn charge_request(order: &Order, input: &OrderInput) -> ChargeRequest {
    ChargeRequest {
        amount: order.total,
        currency: order.currency.clone(),
        payment_method: input.payment_method.clone(),
        description: format!("Order {}", order.order_id),
        order_id: order.order_id.clone(),
        customer_email: Some(input.customer.email.clone()),
    }
}

/// One default parcel (10 x 8 x 4 in), one pound per unit ordered, to the customer.
pub fn label_request(order: &Order, input: &OrderInput) -> LabelRequest {
    let ship = &input.shipping;
    LabelRequest {
        to: Address {
            name: input.customer.name.clone(),
            street1: ship.street.clone(),
            street2: ship.street2.clone(),
            city: ship.city.clone(),
            state: ship.state.clone(),
            zip: ship.zip.clone(),
            country: ship.country.clone(),
            email: Some(input.customer.email.clone()),
            phone: None,
        },
        parcels: vec![Parcel {
            length: "10".into(),
            width: "8".into(),
            height: "4".into(),
            distance_unit: "in".into(),
            weight: input.total_quantity().max(1).to_string(),
            mass_unit: "lb".into(),
        }],
        order_id: order.order_id.clone(),
    }
}

/// The confirmation email: total and tracking number.
pub fn confirmation_email(order: &Order, input: &OrderInput) -> EmailMessage {
    let tracking = match &order.tracking_number {
        Some(number) => format!("Tracking number: {number}"),
        None => {
            "Tracking number: not available yet; we will send it when your parcel ships.".to_owned()
        }
    };
    let text = format!(
        "Hi {name},\n\nThank you for your order {id}. We have received your payment.\n\n\
         Total: {total}\n{tracking}\n\nCairn Shop\n",
        name = input.customer.name,
        id = order.order_id,
        total = order.display_total(),
    );
    EmailMessage {
        to: input.customer.email.clone(),
        to_name: Some(input.customer.name.clone()),
        subject: format!("Your order {} is confirmed", order.order_id),
        text,
        html: None,
        order_id: order.order_id.clone(),
    }
}

/// Rate limiting and unavailability of the payment provider: retry the invocation later.
fn retryable(err: &ProviderError) -> Option<Failure> {
    match err {
        ProviderError::RateLimited(after) => Some(Failure::retryable(
            503,
            match after {
                Some(ms) => format!("payments: rate limited, retry after {ms} ms"),
                None => "payments: rate limited".to_owned(),
            },
        )),
        ProviderError::Unavailable(message) => Some(Failure::retryable(
            503,
            format!("payments unavailable: {message}"),
        )),
        _ => None,
    }
}

/// `failureReason` of a refused payment: `<code>: <message>` for a decline, `in doubt: <message>`
/// for a charge a crash left in doubt, else the message.
fn payment_failure_reason(err: &ProviderError) -> String {
    match err {
        ProviderError::Declined(decline) => format!("{}: {}", decline.code, decline.message),
        ProviderError::InvalidRequest(message) | ProviderError::Unauthorized(message) => {
            message.clone()
        }
        other => describe(other),
    }
}

/// A provider error as recorded on the order, e.g. `unavailable: shippo HTTP 503`.
pub(crate) fn describe(err: &ProviderError) -> String {
    match err {
        ProviderError::Declined(d) => format!("declined: {}: {}", d.code, d.message),
        ProviderError::InvalidRequest(m) => format!("invalid request: {m}"),
        ProviderError::Unauthorized(m) => format!("unauthorized: {m}"),
        ProviderError::RateLimited(Some(ms)) => format!("rate limited: retry after {ms} ms"),
        ProviderError::RateLimited(None) => "rate limited".to_owned(),
        ProviderError::Unavailable(m) => format!("unavailable: {m}"),
        ProviderError::InDoubt(m) => format!("in doubt: {m}"),
    }
}

#[cfg(test)]
mod cancel_tests;
#[cfg(test)]
pub(crate) mod tests;
