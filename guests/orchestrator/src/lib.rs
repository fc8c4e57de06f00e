//! `order-orchestrator`: the `OrderOrchestrator` keyed object (key = order id), exported as
//! `cairn:durable/handler`; it imports `payments`, `email` and `shipping` of `cairn:commerce`.
//!
//! - `ProcessOrder` (exclusive): validate the input, then pending → charge → paid → label →
//!   email → confirmed, saving the order under state key `order` at each stage (see [`flow`]);
//!   a pending charge waits for its webhook (`payment_pending`); a refused charge ends in
//!   `payment_failed`, one a crash left in doubt in `payment_in_doubt`. An order that already
//!   exists is returned unchanged.
//! - `GetOrder` (shared): the stored order, or a terminal 404.
//! - `CancelOrder` (shared, so that it reaches an order waiting for its payment): rejects the
//!   payment promise of a `payment_pending` order (its `ProcessOrder` ends `cancelled`), then
//!   calls `ApplyCancel` (exclusive), which refunds a paid order ([`lifecycle`]).
//! - `OnEvent` (shared; internal, the `WebhookProcessor` calls it): a charge's outcome goes to
//!   the `ProcessOrder` waiting for it; any other event, or one nobody waits for, to `ApplyEvent`
//!   (exclusive).

mod effects;
mod events;
mod flow;
mod input;
mod lifecycle;
mod order;

use cairn_sdk::{Failure, ObjectContext, Promise, SharedContext, Target};
use serde_json::{Value, json};

use crate::effects::{HostEffects, PAYMENT_PROMISE_KEY};
use crate::events::{EventKind, OrderEvent};
use crate::order::{ORDER_KEY, Order, OrderStatus};

mod bindings {
    cairn_sdk::generate!({
        path: "../../wit",
        import: [
            "cairn:commerce/payments@0.1.0",
            "cairn:commerce/email@0.1.0",
            "cairn:commerce/shipping@0.1.0",
        ],
        derives: [Eq],
    });
}

/// The service's name, for calls to its own exclusive handlers.
const SERVICE: &str = "OrderOrchestrator";

/// The order orchestrator service.
struct OrderOrchestrator;

#[cairn_sdk::object(rename_all = "PascalCase")]
impl OrderOrchestrator {
    /// Its own decoding ([`input::parse`]), so that each broken rule has its own message.
    fn process_order(ctx: &ObjectContext, input: &[u8]) -> Result<Order, Failure> {
        // Validation comes first: bad input touches no state and no provider.
        let input = input::parse(input)?;
        flow::process_order(&HostEffects::new(ctx), ctx.key(), &input)
    }

    #[shared]
    fn get_order(ctx: &SharedContext) -> Result<Order, Failure> {
        stored(ctx)
    }

    #[shared]
    fn cancel_order(ctx: &SharedContext, _input: &[u8]) -> Result<Order, Failure> {
        if stored(ctx)?.status == OrderStatus::PaymentPending
            && let Some(id) = ctx.get::<String>(PAYMENT_PROMISE_KEY)?
        {
            let cancel = OrderEvent {
                event_id: lifecycle::CANCEL.to_owned(),
                at: Some(order::now_stamp()),
                kind: EventKind::Cancelled,
            };
            // `false`: the payment completed first; `ApplyCancel` refunds it.
            ctx.resolve(&Promise::from_id(id), &cancel)?;
        }
        ctx.call(&Target::object(SERVICE, ctx.key(), "ApplyCancel"), &())
    }

    fn apply_cancel(ctx: &ObjectContext, _input: &[u8]) -> Result<Order, Failure> {
        lifecycle::apply_cancel(&HostEffects::new(ctx), ctx.key())
    }

    #[shared]
    fn on_event(ctx: &SharedContext, event: OrderEvent) -> Result<Value, Failure> {
        let order = stored(ctx)?;
        if event.kind.settles_payment() {
            match order.status {
                // The charge is being made: its promise comes when it answers `pending`.
                OrderStatus::Pending => {
                    return Err(Failure::retryable(
                        503,
                        format!("order {} is not waiting for its payment yet", ctx.key()),
                    ));
                }
                OrderStatus::PaymentPending => {
                    if let Some(id) = ctx.get::<String>(PAYMENT_PROMISE_KEY)?
                        && ctx.resolve(&Promise::from_id(id), &event)?
                    {
                        return Ok(json!({"eventId": event.event_id, "appliedBy": "ProcessOrder"}));
                    }
                }
                _ => {}
            }
        }
        let order: Order = ctx.call(&Target::object(SERVICE, ctx.key(), "ApplyEvent"), &event)?;
        Ok(json!({"eventId": event.event_id, "appliedBy": "ApplyEvent", "order": order}))
    }

    fn apply_event(ctx: &ObjectContext, event: OrderEvent) -> Result<Order, Failure> {
        lifecycle::apply_event(&HostEffects::new(ctx), ctx.key(), &event)
    }
}

fn stored(ctx: &SharedContext) -> Result<Order, Failure> {
    ctx.get::<Order>(ORDER_KEY)?
        .ok_or_else(|| Failure::not_found(format!("order {} not found", ctx.key())))
}
