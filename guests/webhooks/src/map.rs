//! Provider events → order events (`OrderOrchestrator/OnEvent` input). The field names are the
//! providers' (providers.md §1.9, §2.7, §3.7); the output is the orchestrator's contract:
//! `{"eventId", "at", "type", ...}`.

use std::time::{Duration, UNIX_EPOCH};

use cairn_sdk::Failure;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The orchestrator's `OnEvent` input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderEvent {
    pub event_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(flatten)]
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum Kind {
    ChargeSucceeded { charge_id: String },
    ChargeFailed { charge_id: String, reason: String },
    ChargeRefunded { charge_id: String },
    ChargeDisputed { charge_id: String },
    Tracking { status: String },
    Email { event: String },
}

/// What an event means.
#[derive(Debug, PartialEq, Eq)]
pub enum Mapped {
    Order { order_id: String, event: OrderEvent },
    Ignored { event_id: String, kind: String },
}

fn parse(event: &[u8]) -> Result<Value, Failure> {
    serde_json::from_slice(event)
        .map_err(|e| Failure::bad_request(format!("not a JSON event: {e}")))
}

fn text(value: &Value, pointer: &str) -> Option<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// RFC 3339 of Unix seconds.
fn rfc3339(secs: Option<u64>) -> Option<String> {
    let at = UNIX_EPOCH + Duration::from_secs(secs?);
    Some(humantime::format_rfc3339(at).to_string())
}

fn no_order(event_id: &str, kind: &str, where_: &str) -> Failure {
    Failure::terminal(
        422,
        format!("event {event_id} ({kind}) names no order ({where_}): kept here, not applied"),
    )
}

/// A Stripe event: `charge.succeeded`, `charge.failed`, `charge.refunded` (the charge's
/// `metadata.order_id`), `charge.dispute.created` (the dispute's metadata, else the charge's
/// expanded metadata).
pub fn stripe(event: &[u8]) -> Result<Mapped, Failure> {
    let event = parse(event)?;
    let event_id =
        text(&event, "/id").ok_or_else(|| Failure::bad_request("the event has no id"))?;
    let kind = text(&event, "/type").unwrap_or_default();
    let object = &event["data"]["object"];
    let charge_id = || text(object, "/id").unwrap_or_default();
    let order_kind = match kind.as_str() {
        "charge.succeeded" => Kind::ChargeSucceeded {
            charge_id: charge_id(),
        },
        "charge.failed" => Kind::ChargeFailed {
            charge_id: charge_id(),
            reason: match (
                text(object, "/failure_code"),
                text(object, "/failure_message"),
            ) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (code, message) => code.or(message).unwrap_or_else(|| "charge failed".into()),
            },
        },
        "charge.refunded" => Kind::ChargeRefunded {
            charge_id: charge_id(),
        },
        "charge.dispute.created" => Kind::ChargeDisputed {
            charge_id: text(object, "/charge")
                .or_else(|| text(object, "/charge/id"))
                .unwrap_or_default(),
        },
        _ => return Ok(Mapped::Ignored { event_id, kind }),
    };
    let order_id = text(object, "/metadata/order_id")
        .or_else(|| text(object, "/charge/metadata/order_id"))
        .ok_or_else(|| no_order(&event_id, &kind, "metadata.order_id"))?;
    let at = rfc3339(event["created"].as_u64());
    Ok(Mapped::Order {
        order_id,
        event: OrderEvent {
            event_id,
            at,
            kind: order_kind,
        },
    })
}

/// A Shippo event: `track_updated` (its tracking status; the event id is the status object's)
/// or `transaction_updated` (the label's status). The order is in the label's `metadata`,
/// `order <id>`.
pub fn shippo(event: &[u8]) -> Result<Mapped, Failure> {
    let event = parse(event)?;
    let kind = text(&event, "/event").unwrap_or_default();
    let data = &event["data"];
    let (event_id, status, at) = match kind.as_str() {
        "track_updated" => (
            text(data, "/tracking_status/object_id"),
            text(data, "/tracking_status/status"),
            text(data, "/tracking_status/status_date"),
        ),
        "transaction_updated" => {
            let id = text(data, "/object_id");
            let status = text(data, "/status");
            let event_id = id.zip(status.clone()).map(|(id, s)| format!("{id}:{s}"));
            (
                event_id,
                status.map(|s| format!("LABEL_{s}")),
                text(data, "/object_updated"),
            )
        }
        _ => {
            return Ok(Mapped::Ignored {
                event_id: text(data, "/object_id").unwrap_or_default(),
                kind,
            });
        }
    };
    let event_id = event_id.ok_or_else(|| Failure::bad_request("the event has no object id"))?;
    let status = status.ok_or_else(|| Failure::bad_request("the event has no status"))?;
    let order_id = text(data, "/metadata")
        .map(|m| m.strip_prefix("order ").unwrap_or(&m).trim().to_owned())
        .filter(|m| !m.is_empty())
        .ok_or_else(|| no_order(&event_id, &kind, "metadata"))?;
    Ok(Mapped::Order {
        order_id,
        event: OrderEvent {
            event_id,
            at,
            kind: Kind::Tracking { status },
        },
    })
}

/// One SendGrid event of a batch: `delivered`, `bounce`, `dropped` (the `order_id` custom arg,
/// a top-level key); engagement and `processed`/`deferred` events are ignored.
pub fn sendgrid(event: &[u8]) -> Result<Mapped, Failure> {
    let event = parse(event)?;
    let event_id = text(&event, "/sg_event_id")
        .ok_or_else(|| Failure::bad_request("the event has no sg_event_id"))?;
    let kind = text(&event, "/event").unwrap_or_default();
    if !matches!(kind.as_str(), "delivered" | "bounce" | "dropped") {
        return Ok(Mapped::Ignored { event_id, kind });
    }
    let order_id =
        text(&event, "/order_id").ok_or_else(|| no_order(&event_id, &kind, "order_id"))?;
    Ok(Mapped::Order {
        order_id,
        event: OrderEvent {
            event_id,
            at: rfc3339(event["timestamp"].as_u64()),
            kind: Kind::Email { event: kind },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(mapped: Mapped) -> (String, OrderEvent) {
        match mapped {
            Mapped::Order { order_id, event } => (order_id, event),
            other => panic!("not an order event: {other:?}"),
        }
    }

    #[test]
    fn stripe_charges_and_disputes() {
        let body = br#"{"id":"evt_1","type":"charge.succeeded","created":1796160000,
            "data":{"object":{"id":"ch_1","status":"succeeded","metadata":{"order_id":"order-001"}}}}"#;
        let (order_id, event) = order(stripe(body).unwrap());
        assert_eq!(order_id, "order-001");
        assert_eq!(event.at.as_deref(), Some("2026-12-01T21:20:00Z"));
        assert_eq!(
            event.kind,
            Kind::ChargeSucceeded {
                charge_id: "ch_1".into()
            }
        );
        let wire = serde_json::to_value(&event).unwrap();
        assert_eq!(wire["type"], "charge_succeeded");
        assert_eq!(wire["chargeId"], "ch_1");

        let failed = br#"{"id":"evt_2","type":"charge.failed","data":{"object":{"id":"ch_2",
            "failure_code":"card_declined","failure_message":"Your card was declined.","metadata":{"order_id":"o"}}}}"#;
        let (_, event) = order(stripe(failed).unwrap());
        assert_eq!(
            event.kind,
            Kind::ChargeFailed {
                charge_id: "ch_2".into(),
                reason: "card_declined: Your card was declined.".into()
            }
        );
        let dispute = br#"{"id":"evt_3","type":"charge.dispute.created","data":{"object":{"id":"dp_1","charge":"ch_3","metadata":{"order_id":"o"}}}}"#;
        let (_, event) = order(stripe(dispute).unwrap());
        assert_eq!(
            event.kind,
            Kind::ChargeDisputed {
                charge_id: "ch_3".into()
            }
        );
    }

    #[test]
    fn events_about_no_order_fail_visibly_and_others_are_ignored() {
        let orphan = br#"{"id":"evt_4","type":"charge.succeeded","data":{"object":{"id":"ch_4","metadata":{}}}}"#;
        let failure = stripe(orphan).unwrap_err();
        assert_eq!(failure.code, 422);
        assert!(failure.message.contains("evt_4"), "{}", failure.message);
        let other = br#"{"id":"evt_5","type":"charge.pending","data":{"object":{}}}"#;
        assert!(matches!(stripe(other).unwrap(), Mapped::Ignored { .. }));
        assert_eq!(stripe(b"{}").unwrap_err().code, 400);
        let open = br#"{"sg_event_id":"sg_1","event":"open","order_id":"o"}"#;
        assert!(matches!(sendgrid(open).unwrap(), Mapped::Ignored { .. }));
    }

    #[test]
    fn shippo_tracking_and_label_updates() {
        let body = br#"{"event":"track_updated","data":{"tracking_number":"9400","metadata":"order order-001",
            "tracking_status":{"object_id":"ts_1","status":"DELIVERED","status_date":"2026-12-01T10:00:00Z"}}}"#;
        let (order_id, event) = order(shippo(body).unwrap());
        assert_eq!(
            (order_id.as_str(), event.event_id.as_str()),
            ("order-001", "ts_1")
        );
        assert_eq!(
            event.kind,
            Kind::Tracking {
                status: "DELIVERED".into()
            }
        );
        let label = br#"{"event":"transaction_updated","data":{"object_id":"tx_1","status":"REFUNDED","metadata":"order o"}}"#;
        let (_, event) = order(shippo(label).unwrap());
        assert_eq!(event.event_id, "tx_1:REFUNDED");
        assert_eq!(
            event.kind,
            Kind::Tracking {
                status: "LABEL_REFUNDED".into()
            }
        );
    }

    #[test]
    fn sendgrid_delivery_events() {
        let body = br#"{"sg_event_id":"sg_2","event":"bounce","timestamp":1796160000,"order_id":"order-001"}"#;
        let (order_id, event) = order(sendgrid(body).unwrap());
        assert_eq!(order_id, "order-001");
        assert_eq!(
            event.kind,
            Kind::Email {
                event: "bounce".into()
            }
        );
    }
}
