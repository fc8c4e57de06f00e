//! The order flow against a fake world that counts effects.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use cairn_sdk::Promise;

use super::*;
use crate::bindings::cairn::commerce::types::{
    Charge, Decline, EmailReceipt, Label, LabelVoid, Refund, RefundRequest,
};
use crate::events::{EventKind, OrderEvent};
use crate::input;

/// A fake world: scripted provider answers, recorded calls.
pub(crate) struct Fake {
    /// What each wait for the payment promise gives, in order.
    pub(crate) waits: RefCell<VecDeque<Completion<OrderEvent>>>,
    /// Whether closing the promise finds it still open.
    pub(crate) close_finds_open: Cell<bool>,
    pub(crate) closed: Cell<u32>,
    pub(crate) refunds: RefCell<Vec<RefundRequest>>,
    pub(crate) voids: RefCell<Vec<String>>,
    pub(crate) config: RefCell<Vec<(String, String)>>,
    pub(crate) timeouts: RefCell<Vec<core::time::Duration>>,
    pub(crate) refund: RefCell<Option<Result<Refund, ProviderError>>>,
    pub(crate) stored: RefCell<Option<Order>>,
    pub(crate) saves: RefCell<Vec<OrderStatus>>,
    pub(crate) charge: RefCell<Option<Result<Charge, ProviderError>>>,
    pub(crate) label: RefCell<Option<Result<Label, ProviderError>>>,
    pub(crate) email: RefCell<Option<Result<EmailReceipt, ProviderError>>>,
    pub(crate) charges: RefCell<Vec<ChargeRequest>>,
    pub(crate) labels: RefCell<Vec<LabelRequest>>,
    pub(crate) emails: RefCell<Vec<EmailMessage>>,
    pub(crate) loads: Cell<u32>,
    /// Cancellation checks made, and the one at which the operator's cancellation is found.
    pub(crate) checks: Cell<u32>,
    pub(crate) cancel_at_check: Cell<Option<u32>>,
    /// The next wait for the payment is ended by the operator's cancellation.
    pub(crate) cancel_wait: Cell<bool>,
}

impl Fake {
    pub(crate) fn new() -> Self {
        Self {
            waits: RefCell::new(VecDeque::new()),
            close_finds_open: Cell::new(true),
            closed: Cell::new(0),
            refunds: RefCell::new(Vec::new()),
            voids: RefCell::new(Vec::new()),
            config: RefCell::new(Vec::new()),
            timeouts: RefCell::new(Vec::new()),
            refund: RefCell::new(Some(Ok(Refund {
                id: "re_1".into(),
                charge_id: "ch_1".into(),
                amount: 5000,
                status: "succeeded".into(),
            }))),
            stored: RefCell::new(None),
            saves: RefCell::new(Vec::new()),
            charge: RefCell::new(Some(Ok(Charge {
                id: "ch_1".into(),
                amount: 5000,
                currency: "usd".into(),
                status: "succeeded".into(),
            }))),
            label: RefCell::new(Some(Ok(Label {
                id: "tx_1".into(),
                tracking_number: Some("9400100000000000000000".into()),
                label_url: Some("https://labels.example/tx_1.pdf".into()),
                carrier: Some("USPS".into()),
                status: "SUCCESS".into(),
            }))),
            email: RefCell::new(Some(Ok(EmailReceipt {
                message_id: Some("msg-1".into()),
            }))),
            charges: RefCell::new(Vec::new()),
            labels: RefCell::new(Vec::new()),
            emails: RefCell::new(Vec::new()),
            loads: Cell::new(0),
            checks: Cell::new(0),
            cancel_at_check: Cell::new(None),
            cancel_wait: Cell::new(false),
        }
    }

    fn answer<T>(slot: &RefCell<Option<Result<T, ProviderError>>>) -> Result<T, ProviderError> {
        slot.borrow_mut()
            .take()
            .expect("a provider was called twice")
    }
}

impl Effects for Fake {
    fn load_order(&self) -> Result<Option<Order>, Failure> {
        self.loads.set(self.loads.get() + 1);
        Ok(self.stored.borrow().clone())
    }

    fn save_order(&self, order: &Order) -> Result<(), Failure> {
        self.saves.borrow_mut().push(order.status);
        *self.stored.borrow_mut() = Some(order.clone());
        Ok(())
    }

    fn payment_promise(&self) -> Result<Promise<OrderEvent>, Failure> {
        Ok(Promise::from_id("prom_1"))
    }

    fn wait_payment(
        &self,
        _promise: &Promise<OrderEvent>,
        timeout: core::time::Duration,
    ) -> Result<Completion<OrderEvent>, Failure> {
        self.timeouts.borrow_mut().push(timeout);
        if self.cancel_wait.take() {
            return Err(Failure::cancelled());
        }
        Ok(self
            .waits
            .borrow_mut()
            .pop_front()
            .expect("an unscripted wait"))
    }

    fn close_payment(&self, _promise: &Promise<OrderEvent>, _reason: &str) -> bool {
        self.closed.set(self.closed.get() + 1);
        self.close_finds_open.get()
    }

    fn void_label(&self, label_id: &str) -> Result<LabelVoid, ProviderError> {
        self.voids.borrow_mut().push(label_id.to_owned());
        Ok(LabelVoid {
            label_id: label_id.to_owned(),
            status: "SUCCESS".into(),
        })
    }

    fn refund_charge(&self, request: &RefundRequest) -> Result<Refund, ProviderError> {
        self.refunds.borrow_mut().push(request.clone());
        Self::answer(&self.refund)
    }

    fn config(&self, name: &str) -> Option<String> {
        self.config
            .borrow()
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn now(&self) -> String {
        "2026-12-02T00:00:00.000Z".into()
    }

    fn create_charge(&self, request: &ChargeRequest) -> Result<Charge, ProviderError> {
        self.charges.borrow_mut().push(request.clone());
        Self::answer(&self.charge)
    }

    fn create_label(&self, request: &LabelRequest) -> Result<Label, ProviderError> {
        self.labels.borrow_mut().push(request.clone());
        Self::answer(&self.label)
    }

    fn send_email(&self, message: &EmailMessage) -> Result<EmailReceipt, ProviderError> {
        self.emails.borrow_mut().push(message.clone());
        Self::answer(&self.email)
    }

    fn log(&self, _message: &str) {}

    fn check_cancelled(&self) -> Result<(), Failure> {
        self.checks.set(self.checks.get() + 1);
        if self.cancel_at_check.get() == Some(self.checks.get()) {
            return Err(Failure::cancelled());
        }
        Ok(())
    }
}

pub(crate) fn example_input() -> OrderInput {
    input::parse(
        br#"{"items":[{"productId":"prod-123","quantity":2,"price":2500}],
             "customer":{"email":"alice@example.com","name":"Alice Smith"},
             "shipping":{"street":"123 Main St","city":"SF","state":"CA","zip":"94105","country":"US"}}"#,
    )
    .unwrap()
}

#[test]
fn happy_path_confirms_with_charge_label_and_email() {
    let fake = Fake::new();
    let order = process_order(&fake, "order-001", &example_input()).unwrap();
    assert_eq!(order.status, OrderStatus::Confirmed);
    assert_eq!(order.total, 5000);
    assert_eq!(order.charge_id.as_deref(), Some("ch_1"));
    assert_eq!(
        order.tracking_number.as_deref(),
        Some("9400100000000000000000")
    );
    assert_eq!(
        order.label_url.as_deref(),
        Some("https://labels.example/tx_1.pdf")
    );
    assert!(order.email_sent);
    assert!(order.failures.is_empty());
    assert_eq!(order.failure_reason, None);
    assert_eq!(
        *fake.saves.borrow(),
        [
            OrderStatus::Pending,
            OrderStatus::Paid,
            OrderStatus::Confirmed
        ]
    );
    assert_eq!(fake.stored.borrow().as_ref(), Some(&order));

    let charge = &fake.charges.borrow()[0];
    assert_eq!(charge.amount, 5000);
    assert_eq!(charge.currency, "usd");
    assert_eq!(charge.payment_method, None);
    assert_eq!(charge.description, "Order order-001");
    assert_eq!(charge.order_id, "order-001");
    assert_eq!(charge.customer_email.as_deref(), Some("alice@example.com"));

    let label = &fake.labels.borrow()[0];
    assert_eq!(label.order_id, "order-001");
    assert_eq!(label.to.name, "Alice Smith");
    assert_eq!(label.to.street1, "123 Main St");
    assert_eq!(label.to.zip, "94105");
    assert_eq!(label.to.email.as_deref(), Some("alice@example.com"));
    assert_eq!(label.parcels.len(), 1);
    assert_eq!(label.parcels[0].weight, "2");
    assert_eq!(label.parcels[0].mass_unit, "lb");
    assert_eq!(
        (
            &*label.parcels[0].length,
            &*label.parcels[0].width,
            &*label.parcels[0].height
        ),
        ("10", "8", "4")
    );

    let email = &fake.emails.borrow()[0];
    assert_eq!(email.to, "alice@example.com");
    assert_eq!(email.to_name.as_deref(), Some("Alice Smith"));
    assert_eq!(email.subject, "Your order order-001 is confirmed");
    assert!(email.text.contains("50.00 USD"), "{}", email.text);
    assert!(
        email.text.contains("9400100000000000000000"),
        "{}",
        email.text
    );
    assert_eq!(email.order_id, "order-001");
}

#[test]
fn an_existing_order_is_returned_unchanged() {
    let fake = Fake::new();
    let first = process_order(&fake, "order-001", &example_input()).unwrap();
    let saves = fake.saves.borrow().len();
    *fake.charge.borrow_mut() = None; // a second charge would panic
    let second = process_order(&fake, "order-001", &example_input()).unwrap();
    assert_eq!(first, second);
    assert_eq!(fake.charges.borrow().len(), 1);
    assert_eq!(fake.saves.borrow().len(), saves);
}

#[test]
fn a_decline_fails_the_payment_without_label_or_email() {
    let fake = Fake::new();
    *fake.charge.borrow_mut() = Some(Err(ProviderError::Declined(Decline {
        code: "card_declined".into(),
        message: "Your card was declined.".into(),
        charge_id: Some("ch_failed".into()),
    })));
    let order = process_order(&fake, "order-002", &example_input()).unwrap();
    assert_eq!(order.status, OrderStatus::PaymentFailed);
    assert_eq!(
        order.failure_reason.as_deref(),
        Some("card_declined: Your card was declined.")
    );
    assert_eq!(order.failures.len(), 1);
    assert_eq!(order.failures[0].step, "payment");
    assert_eq!(
        order.failures[0].error,
        "card_declined: Your card was declined."
    );
    assert_eq!(order.charge_id, None);
    assert!(!order.email_sent);
    assert!(fake.labels.borrow().is_empty());
    assert!(fake.emails.borrow().is_empty());
    assert_eq!(
        *fake.saves.borrow(),
        [OrderStatus::Pending, OrderStatus::PaymentFailed]
    );
}

#[test]
fn invalid_and_unauthorized_payments_fail_with_the_message() {
    for err in [
        ProviderError::InvalidRequest("Amount must be at least 50 cents".into()),
        ProviderError::Unauthorized("Invalid API Key provided".into()),
    ] {
        let fake = Fake::new();
        let expected = match &err {
            ProviderError::InvalidRequest(m) | ProviderError::Unauthorized(m) => m.clone(),
            _ => unreachable!(),
        };
        *fake.charge.borrow_mut() = Some(Err(err));
        let order = process_order(&fake, "o", &example_input()).unwrap();
        assert_eq!(order.status, OrderStatus::PaymentFailed);
        assert_eq!(order.failure_reason.as_deref(), Some(expected.as_str()));
    }
}

#[test]
fn rate_limits_and_outages_are_retryable_and_leave_the_order_pending() {
    for err in [
        ProviderError::RateLimited(Some(1000)),
        ProviderError::RateLimited(None),
        ProviderError::Unavailable("stripe HTTP 503".into()),
    ] {
        let fake = Fake::new();
        *fake.charge.borrow_mut() = Some(Err(err));
        let failure = process_order(&fake, "o", &example_input()).unwrap_err();
        assert!(!failure.is_terminal(), "{failure}");
        assert_eq!(failure.code, 503);
        assert_eq!(*fake.saves.borrow(), [OrderStatus::Pending]);
        assert!(fake.labels.borrow().is_empty());
    }
}

#[test]
fn an_unfinished_order_is_returned_unchanged_too() {
    // A retried invocation replays its journal and never gets here with its own order; any other
    // invocation that finds a pending or paid order leaves it alone.
    for status in [OrderStatus::Pending, OrderStatus::Paid] {
        let mut stored = Order::pending("o", 5000, "usd");
        stored.status = status;
        let fake = Fake {
            stored: RefCell::new(Some(stored.clone())),
            ..Fake::new()
        };
        let order = process_order(&fake, "o", &example_input()).unwrap();
        assert_eq!(order, stored);
        assert!(fake.charges.borrow().is_empty());
        assert!(fake.labels.borrow().is_empty());
        assert!(fake.emails.borrow().is_empty());
        assert!(fake.saves.borrow().is_empty());
        assert_eq!(fake.loads.get(), 1);
    }
}

#[test]
fn a_payment_in_doubt_stops_the_order_without_label_or_email() {
    let fake = Fake::new();
    *fake.charge.borrow_mut() = Some(Err(ProviderError::InDoubt(
        "create-charge was not repeated (at-most-once)".into(),
    )));
    let order = process_order(&fake, "order-003", &example_input()).unwrap();
    assert_eq!(order.status, OrderStatus::PaymentInDoubt);
    let reason = "in doubt: create-charge was not repeated (at-most-once)";
    assert_eq!(order.failure_reason.as_deref(), Some(reason));
    assert_eq!(order.failures.len(), 1);
    assert_eq!(order.failures[0].step, "payment");
    assert_eq!(order.failures[0].error, reason);
    assert_eq!(order.charge_id, None);
    assert!(!order.email_sent);
    assert!(fake.labels.borrow().is_empty());
    assert!(fake.emails.borrow().is_empty());
    assert_eq!(
        *fake.saves.borrow(),
        [OrderStatus::Pending, OrderStatus::PaymentInDoubt]
    );
    assert_eq!(fake.stored.borrow().as_ref(), Some(&order));
    let json = serde_json::to_value(&order).unwrap();
    assert_eq!(json["status"], "payment_in_doubt");
    assert_eq!(json["failureReason"], reason);
}

#[test]
fn shipping_and_email_in_doubt_are_recorded_and_the_order_confirmed() {
    let fake = Fake::new();
    *fake.label.borrow_mut() = Some(Err(ProviderError::InDoubt(
        "create-label: not found by lookup".into(),
    )));
    *fake.email.borrow_mut() = Some(Err(ProviderError::InDoubt(
        "send-email was not repeated (at-most-once)".into(),
    )));
    let order = process_order(&fake, "o", &example_input()).unwrap();
    assert_eq!(order.status, OrderStatus::Confirmed);
    assert_eq!(order.charge_id.as_deref(), Some("ch_1"));
    assert_eq!(order.tracking_number, None);
    assert!(!order.email_sent);
    let failures: Vec<(&str, &str)> = order
        .failures
        .iter()
        .map(|f| (f.step.as_str(), f.error.as_str()))
        .collect();
    assert_eq!(
        failures,
        [
            ("shipping", "in doubt: create-label: not found by lookup"),
            (
                "email",
                "in doubt: send-email was not repeated (at-most-once)"
            ),
        ]
    );
    assert_eq!(order.failure_reason, None);
    assert_eq!(
        *fake.saves.borrow(),
        [
            OrderStatus::Pending,
            OrderStatus::Paid,
            OrderStatus::Confirmed
        ]
    );
}

#[test]
fn shipping_and_email_failures_are_recorded_and_the_order_confirmed() {
    let fake = Fake::new();
    *fake.label.borrow_mut() = Some(Err(ProviderError::Unavailable("shippo HTTP 503".into())));
    *fake.email.borrow_mut() = Some(Err(ProviderError::RateLimited(Some(2000))));
    let order = process_order(&fake, "o", &example_input()).unwrap();
    assert_eq!(order.status, OrderStatus::Confirmed);
    assert_eq!(order.charge_id.as_deref(), Some("ch_1"));
    assert_eq!(order.tracking_number, None);
    assert_eq!(order.label_url, None);
    assert!(!order.email_sent);
    let failures: Vec<(&str, &str)> = order
        .failures
        .iter()
        .map(|f| (f.step.as_str(), f.error.as_str()))
        .collect();
    assert_eq!(
        failures,
        [
            ("shipping", "unavailable: shippo HTTP 503"),
            ("email", "rate limited: retry after 2000 ms"),
        ]
    );
    assert_eq!(order.failure_reason, None);
    assert!(fake.emails.borrow()[0].text.contains("not available yet"));
}

#[test]
fn payment_method_and_currency_reach_the_charge() {
    let mut input = example_input();
    input.payment_method = Some("pm_card_visa".into());
    input.currency = "eur".into();
    let order = Order::pending("o", input.total, &input.currency);
    let charge = charge_request(&order, &input);
    assert_eq!(charge.payment_method.as_deref(), Some("pm_card_visa"));
    assert_eq!(charge.currency, "eur");
}

pub(crate) fn pending_charge(fake: &Fake) {
    *fake.charge.borrow_mut() = Some(Ok(Charge {
        id: "ch_1".into(),
        amount: 5000,
        currency: "usd".into(),
        status: "pending".into(),
    }));
}

pub(crate) fn event(id: &str, kind: EventKind) -> OrderEvent {
    OrderEvent {
        event_id: id.into(),
        at: Some("2026-12-02T00:00:01.000Z".into()),
        kind,
    }
}

#[test]
fn a_pending_charge_waits_for_its_webhook_then_goes_on() {
    let fake = Fake::new();
    pending_charge(&fake);
    let succeeded = EventKind::ChargeSucceeded {
        charge_id: "ch_1".into(),
    };
    fake.waits
        .borrow_mut()
        .push_back(Completion::Resolved(event("evt_1", succeeded)));
    let order = process_order(&fake, "order-001", &example_input()).unwrap();
    assert_eq!(order.status, OrderStatus::Confirmed);
    assert_eq!(
        *fake.saves.borrow(),
        [
            OrderStatus::Pending,
            OrderStatus::PaymentPending,
            OrderStatus::Paid,
            OrderStatus::Confirmed
        ]
    );
    let causes: Vec<&str> = order.timeline.iter().map(|e| e.cause.as_str()).collect();
    assert_eq!(
        causes,
        ["ProcessOrder", "ProcessOrder", "evt_1", "ProcessOrder"]
    );
    // After the wait the timeline goes on from the event's time, not the invocation's clock.
    assert_eq!(order.timeline[2].at, "2026-12-02T00:00:01.000Z");
    assert_eq!(order.timeline[3].at, "2026-12-02T00:00:01.000Z");
    assert_eq!(fake.labels.borrow().len(), 1);
}

#[test]
fn a_failed_pending_charge_or_a_timeout_fails_the_payment() {
    let fake = Fake::new();
    pending_charge(&fake);
    let failed = EventKind::ChargeFailed {
        charge_id: "ch_1".into(),
        reason: "card_declined: Your card was declined.".into(),
    };
    fake.waits
        .borrow_mut()
        .push_back(Completion::Resolved(event("evt_2", failed)));
    let order = process_order(&fake, "order-001", &example_input()).unwrap();
    assert_eq!(order.status, OrderStatus::PaymentFailed);
    assert_eq!(order.timeline.last().unwrap().cause, "evt_2");
    assert!(fake.labels.borrow().is_empty() && fake.emails.borrow().is_empty());

    let fake = Fake::new();
    pending_charge(&fake);
    fake.waits.borrow_mut().push_back(Completion::TimedOut);
    let order = process_order(&fake, "order-002", &example_input()).unwrap();
    assert_eq!(order.status, OrderStatus::PaymentFailed);
    assert!(order.failure_reason.unwrap().starts_with("payment_timeout"));
    assert_eq!(
        order.timeline.last().unwrap().at,
        "2026-12-02T01:00:00.000Z"
    );
    assert_eq!(fake.closed.get(), 1);
}

#[test]
fn a_completion_racing_the_timeout_stands_and_a_cancel_ends_the_wait() {
    let fake = Fake::new();
    pending_charge(&fake);
    fake.close_finds_open.set(false);
    let succeeded = EventKind::ChargeSucceeded {
        charge_id: "ch_1".into(),
    };
    fake.waits.borrow_mut().extend([
        Completion::TimedOut,
        Completion::Resolved(event("evt_3", succeeded)),
    ]);
    let order = process_order(&fake, "order-001", &example_input()).unwrap();
    assert_eq!(order.status, OrderStatus::Confirmed);

    let fake = Fake::new();
    pending_charge(&fake);
    fake.waits
        .borrow_mut()
        .push_back(Completion::Resolved(event(
            "CancelOrder",
            EventKind::Cancelled,
        )));
    let order = process_order(&fake, "order-002", &example_input()).unwrap();
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.timeline.last().unwrap().cause, "CancelOrder");
    assert!(fake.labels.borrow().is_empty());
}

#[test]
fn the_payment_timeout_comes_from_the_order_then_the_operator_then_one_hour() {
    let run = |setting: Option<&str>, input: OrderInput| {
        let fake = Fake::new();
        pending_charge(&fake);
        if let Some(value) = setting {
            fake.config
                .borrow_mut()
                .push(("payment-timeout".into(), value.into()));
        }
        fake.waits.borrow_mut().push_back(Completion::TimedOut);
        process_order(&fake, "order-001", &input).unwrap();
        fake.timeouts.borrow()[0]
    };
    let secs = core::time::Duration::from_secs;
    assert_eq!(run(None, example_input()), secs(3600));
    assert_eq!(run(Some("90s"), example_input()), secs(90));
    assert_eq!(run(Some("soon"), example_input()), secs(3600));
    assert_eq!(run(Some("30d"), example_input()), secs(3600));
    let mut own = example_input();
    own.payment_timeout = Some(secs(5));
    assert_eq!(run(Some("90s"), own), secs(5));
}
