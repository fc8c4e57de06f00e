//! `order-orchestrator`: the `OrderOrchestrator` keyed object (key = order id), exported as
//! `cairn:durable/handler`; it imports `payments`, `email` and `shipping` of `cairn:commerce`.
//!
//! - `ProcessOrder` (exclusive): validate the input, then pending → charge → paid → label →
//!   email → confirmed, saving the order under state key `order` at each stage
//!   (see [`flow`]); a refused charge ends in `payment_failed`, one a crash left in doubt in
//!   `payment_in_doubt`. An order that already exists is returned unchanged.
//! - `GetOrder` (shared): the stored order, or a terminal 404.

mod effects;
mod flow;
mod input;
mod order;

use cairn_sdk::{Failure, ObjectContext, SharedContext};

use crate::effects::HostEffects;
use crate::order::{ORDER_KEY, Order};

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
        ctx.get::<Order>(ORDER_KEY)?
            .ok_or_else(|| Failure::not_found(format!("order {} not found", ctx.key())))
    }
}
