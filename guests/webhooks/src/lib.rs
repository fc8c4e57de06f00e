//! `webhook-processor`: the `WebhookProcessor` service. The host verifies each provider's
//! webhook on its raw bytes, deduplicates it by event id and invokes one handler here per event
//! (`Stripe`, `Shippo`, `Sendgrid`; internal: the ingress refuses them, only the webhook
//! endpoints invoke them). Each maps its event to the order it is about (the order id the
//! providers carry back: Stripe `metadata.order_id`, SendGrid's `order_id` custom arg, Shippo's
//! `metadata` `order <id>`) and calls that order's `OrderOrchestrator/{id}/OnEvent`
//! ([`map`]). An event about no order, or about an order that does not exist, ends its
//! invocation in a terminal failure that says so: kept and visible with its input, not dropped.
//! An event of a type that concerns no order (`charge.pending`, `open`...) is acknowledged and
//! ignored.

mod map;

use cairn_sdk::{Context, Failure, SharedContext};
use serde_json::{Value, json};

use crate::map::OrderEvent;

/// The orchestrator, declared here for its typed client (`OrderOrchestratorClient`).
#[cairn_sdk::object(rename_all = "PascalCase")]
trait OrderOrchestrator {
    #[shared]
    fn on_event(ctx: &SharedContext, event: OrderEvent) -> Result<Value, Failure>;
}

struct WebhookProcessor;

#[cairn_sdk::service(rename_all = "PascalCase")]
impl WebhookProcessor {
    fn stripe(ctx: &Context, event: &[u8]) -> Result<Value, Failure> {
        deliver(ctx, map::stripe(event)?)
    }

    fn shippo(ctx: &Context, event: &[u8]) -> Result<Value, Failure> {
        deliver(ctx, map::shippo(event)?)
    }

    fn sendgrid(ctx: &Context, event: &[u8]) -> Result<Value, Failure> {
        deliver(ctx, map::sendgrid(event)?)
    }
}

/// Calls the order's `OnEvent`; an event of no interest is acknowledged.
fn deliver(ctx: &Context, mapped: map::Mapped) -> Result<Value, Failure> {
    match mapped {
        map::Mapped::Ignored { event_id, kind } => {
            Ok(json!({"eventId": event_id, "ignored": kind}))
        }
        map::Mapped::Order { order_id, event } => {
            let event_id = event.event_id.clone();
            let result = ctx
                .object_client::<OrderOrchestratorClient>(order_id.clone())
                .on_event(&event)
                .call()
                .map_err(|failure| {
                    if failure.code == 404 {
                        Failure::terminal(
                            404,
                            format!("event {event_id} is about order {order_id}, which does not exist: kept here, not applied"),
                        )
                    } else {
                        failure
                    }
                })?;
            Ok(json!({"eventId": event_id, "orderId": order_id, "result": result}))
        }
    }
}
