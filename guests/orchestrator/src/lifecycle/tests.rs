//! Cancellation and provider events against the flow's fake world.

use super::*;
use crate::flow::process_order;
use crate::flow::tests::{Fake, example_input};

fn confirmed(fake: &Fake) -> Order {
    process_order(fake, "order-001", &example_input()).unwrap()
}

fn event(id: &str, kind: EventKind) -> OrderEvent {
    OrderEvent {
        event_id: id.into(),
        at: None,
        kind,
    }
}

#[test]
fn cancelling_a_paid_order_refunds_it_once_and_twice_answers_the_same() {
    let fake = Fake::new();
    confirmed(&fake);
    let first = apply_cancel(&fake, "order-001").unwrap();
    assert_eq!(first.status, OrderStatus::Refunded);
    assert_eq!(first.refund_id.as_deref(), Some("re_1"));
    assert_eq!(first.timeline.last().unwrap().cause, CANCEL);
    let second = apply_cancel(&fake, "order-001").unwrap();
    assert_eq!(second, first);
    let refunds = fake.refunds.borrow();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].charge_id, "ch_1");
    assert_eq!(refunds[0].order_id, "order-001");
    assert_eq!(*fake.voids.borrow(), ["tx_1"]);
    assert!(second.label_voided);
}

#[test]
fn a_failed_order_cannot_be_cancelled_and_an_unknown_one_is_404() {
    let fake = Fake::new();
    assert_eq!(apply_cancel(&fake, "nope").unwrap_err().code, 404);
    let mut order = confirmed(&fake);
    order.status = OrderStatus::PaymentFailed;
    fake.save_order(&order).unwrap();
    assert_eq!(apply_cancel(&fake, "order-001").unwrap_err().code, 409);
    assert!(fake.refunds.borrow().is_empty());
}

#[test]
fn a_late_success_on_a_given_up_order_is_refunded_once() {
    let fake = Fake::new();
    let mut order = confirmed(&fake);
    order.status = OrderStatus::Cancelled;
    fake.save_order(&order).unwrap();
    let late = |id: &str| {
        event(
            id,
            EventKind::ChargeSucceeded {
                charge_id: "ch_1".into(),
            },
        )
    };
    let after = apply_event(&fake, "order-001", &late("evt_1")).unwrap();
    assert_eq!(after.status, OrderStatus::Cancelled);
    assert_eq!(after.refund_id.as_deref(), Some("re_1"));
    // Another delivery of the same news (another event id) refunds nothing more.
    apply_event(&fake, "order-001", &late("evt_2")).unwrap();
    assert_eq!(fake.refunds.borrow().len(), 1);
}

#[test]
fn tracking_moves_a_confirmed_order_to_delivered_in_order() {
    let fake = Fake::new();
    confirmed(&fake);
    let track = |id: &str, status: &str| {
        event(
            id,
            EventKind::Tracking {
                status: status.into(),
            },
        )
    };
    let shipped = apply_event(&fake, "order-001", &track("ts_1", "TRANSIT")).unwrap();
    assert_eq!(shipped.status, OrderStatus::Shipped);
    let delivered = apply_event(&fake, "order-001", &track("ts_2", "DELIVERED")).unwrap();
    assert_eq!(delivered.status, OrderStatus::Delivered);
    // A late TRANSIT does not move it back; the same event again changes nothing.
    let late = apply_event(&fake, "order-001", &track("ts_3", "TRANSIT")).unwrap();
    assert_eq!(late.status, OrderStatus::Delivered);
    assert_eq!(
        apply_event(&fake, "order-001", &track("ts_2", "DELIVERED")).unwrap(),
        late
    );
    let statuses: Vec<OrderStatus> = late.timeline.iter().map(|e| e.status).collect();
    assert_eq!(
        statuses,
        [
            OrderStatus::Pending,
            OrderStatus::Paid,
            OrderStatus::Confirmed,
            OrderStatus::Shipped,
            OrderStatus::Delivered
        ]
    );
}

#[test]
fn refunds_disputes_and_email_events_are_recorded() {
    let fake = Fake::new();
    confirmed(&fake);
    let bounced = event(
        "sg_1",
        EventKind::Email {
            event: "bounce".into(),
        },
    );
    let order = apply_event(&fake, "order-001", &bounced).unwrap();
    assert_eq!(order.email_delivery.as_deref(), Some("bounce"));
    assert_eq!(order.failures.last().unwrap().step, "email");
    let disputed = event(
        "evt_d",
        EventKind::ChargeDisputed {
            charge_id: "ch_1".into(),
        },
    );
    assert_eq!(
        apply_event(&fake, "order-001", &disputed).unwrap().status,
        OrderStatus::Disputed
    );
    let cancelled = apply_cancel(&fake, "order-001").unwrap();
    assert_eq!(cancelled.status, OrderStatus::Refunded);
    let refunded = event(
        "evt_r",
        EventKind::ChargeRefunded {
            charge_id: "ch_1".into(),
        },
    );
    let order = apply_event(&fake, "order-001", &refunded).unwrap();
    assert!(order.refund_confirmed);
    assert_eq!(order.status, OrderStatus::Refunded);
}
