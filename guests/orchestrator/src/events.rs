//! What happened to an order outside it, as the `WebhookProcessor` reports it (`OnEvent`):
//! the provider event's id and what it says. The JSON is the contract between the two
//! components: `{"eventId": "evt_…", "type": "charge_succeeded", "chargeId": "ch_…"}`.

use serde::{Deserialize, Serialize};

/// One provider event about an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderEvent {
    /// The provider's event id (Stripe `evt_…`, SendGrid `sg_event_id`, Shippo's object id).
    pub event_id: String,
    /// When the provider says it happened (RFC 3339), if it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What the event says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum EventKind {
    ChargeSucceeded {
        charge_id: String,
    },
    ChargeFailed {
        charge_id: String,
        reason: String,
    },
    ChargeRefunded {
        charge_id: String,
    },
    ChargeDisputed {
        charge_id: String,
    },
    /// A carrier tracking status: `TRANSIT`, `DELIVERED`, `RETURNED`, `FAILURE`...
    Tracking {
        status: String,
    },
    /// An email delivery event: `delivered`, `bounce`, `dropped`.
    Email {
        event: String,
    },
    /// Not a provider's: `CancelOrder` telling an order that waits for its payment to stop.
    Cancelled,
}

impl EventKind {
    /// The outcome of a charge, which a waiting `ProcessOrder` takes.
    pub fn settles_payment(&self) -> bool {
        matches!(
            self,
            Self::ChargeSucceeded { .. } | Self::ChargeFailed { .. } | Self::Cancelled
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_is_flat_camel_case() {
        let event = OrderEvent {
            event_id: "evt_1".into(),
            at: None,
            kind: EventKind::ChargeFailed {
                charge_id: "ch_1".into(),
                reason: "card_declined".into(),
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"eventId": "evt_1", "type": "charge_failed", "chargeId": "ch_1", "reason": "card_declined"})
        );
        assert_eq!(serde_json::from_value::<OrderEvent>(json).unwrap(), event);
    }
}
