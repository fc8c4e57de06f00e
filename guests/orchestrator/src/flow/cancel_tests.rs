//! The operator's cancellation of `ProcessOrder`, against the fake world: what was done is
//! undone, and the flow ends with the cancellation.

use super::tests::{Fake, event, example_input, pending_charge};
use super::*;

#[test]
fn cancelled_before_the_charge_it_charges_nothing_and_cancels_the_order() {
    let fake = Fake::new();
    fake.cancel_at_check.set(Some(1));
    let failure = process_order(&fake, "order-001", &example_input()).unwrap_err();
    assert!(failure.is_cancelled(), "{failure}");
    assert!(fake.charges.borrow().is_empty());
    assert!(fake.refunds.borrow().is_empty());
    let stored = fake.stored.borrow().clone().unwrap();
    assert_eq!(stored.status, OrderStatus::Cancelled);
    assert_eq!(stored.timeline.last().unwrap().cause, "CancelOrder");
}

#[test]
fn cancelled_after_the_charge_it_refunds_once_and_buys_no_label_nor_email() {
    let fake = Fake::new();
    // Check 1 before the charge, 2 before the label.
    fake.cancel_at_check.set(Some(2));
    let failure = process_order(&fake, "order-001", &example_input()).unwrap_err();
    assert!(failure.is_cancelled(), "{failure}");
    assert_eq!(fake.charges.borrow().len(), 1);
    let refunds = fake.refunds.borrow();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].charge_id, "ch_1");
    assert!(fake.labels.borrow().is_empty() && fake.emails.borrow().is_empty());
    let stored = fake.stored.borrow().clone().unwrap();
    assert_eq!(stored.status, OrderStatus::Refunded);
    assert_eq!(stored.refund_id.as_deref(), Some("re_1"));
}

#[test]
fn cancelled_after_the_label_it_refunds_and_voids_the_label() {
    let fake = Fake::new();
    fake.cancel_at_check.set(Some(3));
    let failure = process_order(&fake, "order-001", &example_input()).unwrap_err();
    assert!(failure.is_cancelled(), "{failure}");
    assert_eq!(fake.refunds.borrow().len(), 1);
    assert_eq!(*fake.voids.borrow(), ["tx_1"]);
    assert!(fake.emails.borrow().is_empty());
    assert_eq!(
        fake.stored.borrow().as_ref().unwrap().status,
        OrderStatus::Refunded
    );
}

#[test]
fn cancelled_while_a_charge_is_pending_it_closes_the_wait_and_cancels() {
    let fake = Fake::new();
    pending_charge(&fake);
    fake.cancel_wait.set(true);
    let failure = process_order(&fake, "order-001", &example_input()).unwrap_err();
    assert!(failure.is_cancelled(), "{failure}");
    assert_eq!(fake.closed.get(), 1, "the payment promise is closed");
    assert!(fake.refunds.borrow().is_empty(), "nothing was paid");
    assert_eq!(
        fake.stored.borrow().as_ref().unwrap().status,
        OrderStatus::Cancelled
    );
}

#[test]
fn a_charge_that_succeeded_as_the_wait_was_cancelled_is_refunded() {
    let fake = Fake::new();
    pending_charge(&fake);
    fake.cancel_wait.set(true);
    // The promise was completed first: closing it finds the success.
    fake.close_finds_open.set(false);
    let succeeded = EventKind::ChargeSucceeded {
        charge_id: "ch_1".into(),
    };
    fake.waits
        .borrow_mut()
        .push_back(Completion::Resolved(event("evt_9", succeeded)));
    let failure = process_order(&fake, "order-001", &example_input()).unwrap_err();
    assert!(failure.is_cancelled(), "{failure}");
    assert_eq!(fake.refunds.borrow().len(), 1);
    assert!(fake.labels.borrow().is_empty() && fake.emails.borrow().is_empty());
    assert_eq!(
        fake.stored.borrow().as_ref().unwrap().status,
        OrderStatus::Refunded
    );
}
