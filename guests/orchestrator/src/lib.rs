//! `order-orchestrator`: the `OrderOrchestrator` keyed object (key = order id), exported as
//! `cairn:durable/handler` of world `cairn:commerce/orchestrator`.
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

use cairn_sdk::{Context, Failure, HandlerInfo, Service, ServiceKind, SharedContext};

use crate::effects::HostEffects;
use crate::order::{ORDER_KEY, Order};

mod bindings {
    wit_bindgen::generate!({
        world: "cairn:commerce/orchestrator@0.1.0",
        path: "../../wit",
        additional_derives: [PartialEq, Eq],
        with: {
            "cairn:durable/context@0.1.1": cairn_sdk::bindings::cairn::durable::context,
            "cairn:durable/run@0.1.1": cairn_sdk::bindings::cairn::durable::run,
            "cairn:durable/state@0.1.1": cairn_sdk::bindings::cairn::durable::state,
            "cairn:durable/http@0.1.1": cairn_sdk::bindings::cairn::durable::http,
            "cairn:durable/log@0.1.1": cairn_sdk::bindings::cairn::durable::log,
            "cairn:durable/timer@0.1.1": cairn_sdk::bindings::cairn::durable::timer,
            "cairn:durable/calls@0.1.1": cairn_sdk::bindings::cairn::durable::calls,
            "cairn:durable/promise@0.1.1": cairn_sdk::bindings::cairn::durable::promise,
            "cairn:durable/handler@0.1.1": generate,
        },
    });
}

/// The order orchestrator service.
struct OrderOrchestrator;

impl Service for OrderOrchestrator {
    const NAME: &'static str = "OrderOrchestrator";
    const KIND: ServiceKind = ServiceKind::KeyedObject;
    const HANDLERS: &'static [HandlerInfo] = &[
        HandlerInfo::exclusive("ProcessOrder"),
        HandlerInfo::shared("GetOrder"),
    ];

    fn handle(ctx: &Context, handler: &str, input: &[u8]) -> Result<Vec<u8>, Failure> {
        match handler {
            "ProcessOrder" => process_order(ctx, input),
            other => Err(Failure::not_found(format!(
                "service OrderOrchestrator has no exclusive handler {other}"
            ))),
        }
    }

    fn handle_shared(
        ctx: &SharedContext,
        handler: &str,
        _input: &[u8],
    ) -> Result<Vec<u8>, Failure> {
        match handler {
            "GetOrder" => get_order(ctx),
            other => Err(Failure::not_found(format!(
                "service OrderOrchestrator has no shared handler {other}"
            ))),
        }
    }
}

fn process_order(ctx: &Context, input: &[u8]) -> Result<Vec<u8>, Failure> {
    // Validation comes first: bad input touches no state and no provider.
    let input = input::parse(input)?;
    let key = ctx.require_key()?;
    let order = flow::process_order(&HostEffects::new(ctx), key, &input)?;
    cairn_sdk::json::to_output(&order)
}

fn get_order(ctx: &SharedContext) -> Result<Vec<u8>, Failure> {
    let key = ctx.require_key()?;
    match ctx.get::<Order>(ORDER_KEY)? {
        Some(order) => cairn_sdk::json::to_output(&order),
        None => Err(Failure::not_found(format!("order {key} not found"))),
    }
}

cairn_sdk::export_service!(OrderOrchestrator, crate::bindings);
