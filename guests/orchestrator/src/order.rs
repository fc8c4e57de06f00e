//! The order as stored under state key `order` and returned by `ProcessOrder` and `GetOrder`:
//! exactly `orderId, status, total, currency, chargeId, trackingNumber, labelUrl, emailSent,
//! failures, failureReason, labelId, labelVoided, refundId, refundConfirmed, emailDelivery,
//! shipment, timeline`
//! (absent values as `null`). The timeline holds every status change with its time and cause
//! (the handler, or the provider event's id).

use serde::{Deserialize, Serialize};

/// The time now (the invocation's deterministic clock), RFC 3339 with milliseconds.
pub fn now_stamp() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// `at` plus `by`, RFC 3339 (`at` itself when it cannot be read).
pub fn later(at: &str, by: core::time::Duration) -> String {
    match humantime::parse_rfc3339_weak(at) {
        Ok(time) => humantime::format_rfc3339_millis(time + by).to_string(),
        Err(_) => at.to_owned(),
    }
}

/// State key holding the order.
pub const ORDER_KEY: &str = "order";

/// Where an order is in its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Saved, not charged yet.
    Pending,
    /// Charged; label and email still to do.
    Paid,
    /// The charge was refused; final.
    PaymentFailed,
    /// A crash left the charge in doubt and the payments provider could neither deduplicate nor
    /// look it up: the customer may or may not have been charged. Final; needs an operator.
    PaymentInDoubt,
    /// Charged, label and email attempted.
    Confirmed,
    /// The charge is pending at the provider (an asynchronous payment method): the order waits
    /// for its webhook, up to the payment timeout.
    PaymentPending,
    /// The carrier has the parcel.
    Shipped,
    /// The parcel arrived.
    Delivered,
    /// Cancelled after payment: the charge was refunded.
    Refunded,
    /// Cancelled before the payment completed (a charge that succeeds later is refunded).
    Cancelled,
    /// The customer disputed the charge.
    Disputed,
}

impl OrderStatus {
    /// Paid for and not refunded (what a cancellation refunds).
    pub fn is_paid(self) -> bool {
        matches!(
            self,
            Self::Paid | Self::Confirmed | Self::Shipped | Self::Delivered | Self::Disputed
        )
    }
}

/// One status change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub status: OrderStatus,
    /// RFC 3339, UTC.
    pub at: String,
    /// The handler (`ProcessOrder`, `CancelOrder`) or the provider event id.
    pub cause: String,
}

/// An optional step that failed without stopping the flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFailure {
    /// `payment`, `shipping` or `email`.
    pub step: String,
    pub error: String,
}

/// The order record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub order_id: String,
    pub status: OrderStatus,
    /// Minor units (cents).
    pub total: u64,
    /// Lowercase ISO code.
    pub currency: String,
    pub charge_id: Option<String>,
    pub tracking_number: Option<String>,
    pub label_url: Option<String>,
    pub email_sent: bool,
    pub failures: Vec<StepFailure>,
    pub failure_reason: Option<String>,
    /// The shipping provider's id of the label bought.
    pub label_id: Option<String>,
    /// The label was voided (a cancellation before it shipped).
    pub label_voided: bool,
    /// The refund of the charge (a cancellation, or a charge that succeeded too late).
    pub refund_id: Option<String>,
    /// The payments provider's `charge.refunded` event arrived.
    pub refund_confirmed: bool,
    /// What the email provider last reported: `delivered`, `bounce` or `dropped`.
    pub email_delivery: Option<String>,
    /// The carrier's last tracking status (`TRANSIT`, `DELIVERED`, `RETURNED`, `FAILURE`).
    pub shipment: Option<String>,
    pub timeline: Vec<TimelineEntry>,
}

impl Order {
    /// A new pending order.
    pub fn pending(order_id: &str, total: u64, currency: &str) -> Self {
        Self {
            order_id: order_id.to_owned(),
            status: OrderStatus::Pending,
            total,
            currency: currency.to_owned(),
            charge_id: None,
            tracking_number: None,
            label_url: None,
            email_sent: false,
            failures: Vec::new(),
            failure_reason: None,
            label_id: None,
            label_voided: false,
            refund_id: None,
            refund_confirmed: false,
            email_delivery: None,
            shipment: None,
            timeline: Vec::new(),
        }
    }

    /// Moves to `status` (a no-op when it is there already), recording when and why.
    pub fn set_status(&mut self, status: OrderStatus, at: String, cause: &str) {
        if self.status == status && !self.timeline.is_empty() {
            return;
        }
        self.status = status;
        self.timeline.push(TimelineEntry {
            status,
            at,
            cause: cause.to_owned(),
        });
    }

    /// Whether an event with this id was applied already.
    pub fn saw(&self, event_id: &str) -> bool {
        self.timeline.iter().any(|e| e.cause == event_id)
    }

    /// Records a failed optional step.
    pub fn record_failure(&mut self, step: &str, error: String) {
        self.failures.push(StepFailure {
            step: step.to_owned(),
            error,
        });
    }

    /// The total as text, e.g. `50.00 USD`.
    pub fn display_total(&self) -> String {
        format!(
            "{}.{:02} {}",
            self.total / 100,
            self.total % 100,
            self.currency.to_ascii_uppercase()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_exactly_the_documented_keys() {
        let mut order = Order::pending("order-001", 5000, "usd");
        let value = serde_json::to_value(&order).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "orderId": "order-001",
                "status": "pending",
                "total": 5000,
                "currency": "usd",
                "chargeId": null,
                "trackingNumber": null,
                "labelUrl": null,
                "emailSent": false,
                "failures": [],
                "failureReason": null,
                "labelId": null,
                "labelVoided": false,
                "refundId": null,
                "refundConfirmed": false,
                "emailDelivery": null,
                "shipment": null,
                "timeline": []
            })
        );

        order.status = OrderStatus::PaymentFailed;
        order.failure_reason = Some("card_declined: Your card was declined.".into());
        order.record_failure("payment", "card_declined: Your card was declined.".into());
        let value = serde_json::to_value(&order).unwrap();
        assert_eq!(value["status"], "payment_failed");
        assert_eq!(
            value["failures"],
            serde_json::json!([{"step": "payment", "error": "card_declined: Your card was declined."}])
        );
        let back: Order = serde_json::from_value(value).unwrap();
        assert_eq!(back, order);
    }

    #[test]
    fn statuses_and_totals() {
        let mut order = Order::pending("o", 5, "usd");
        assert_eq!(order.display_total(), "0.05 USD");
        order.total = 123_456;
        assert_eq!(order.display_total(), "1234.56 USD");
        for (status, wire) in [
            (OrderStatus::Pending, "pending"),
            (OrderStatus::Paid, "paid"),
            (OrderStatus::PaymentFailed, "payment_failed"),
            (OrderStatus::PaymentInDoubt, "payment_in_doubt"),
            (OrderStatus::Confirmed, "confirmed"),
            (OrderStatus::PaymentPending, "payment_pending"),
            (OrderStatus::Shipped, "shipped"),
            (OrderStatus::Delivered, "delivered"),
            (OrderStatus::Refunded, "refunded"),
            (OrderStatus::Cancelled, "cancelled"),
            (OrderStatus::Disputed, "disputed"),
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), wire);
            assert_eq!(
                serde_json::from_value::<OrderStatus>(wire.into()).unwrap(),
                status
            );
        }
    }
}
