//! `relay-service` (test only): the keyed object `Relay`, a driver for calls between services
//! and durable promises.
//!
//! - `Call` (exclusive): `{"target": {"service", "key"?, "handler"}, "input": <json>}` → calls
//!   the target and answers `{"output": <its output>}` (a refusal or the callee's failure is
//!   this handler's terminal failure, with the callee's code).
//! - `Send` (exclusive): the same with `"delayMs"` → `{"invocationId": ...}`.
//! - `Await` (shared): `{"timeoutMs"?, "sleepMs"?}` → creates a promise, sleeps durably
//!   `sleepMs` first if given (so it can be resolved before anyone waits), waits for it and
//!   answers `{"promise": id, "resolved": <value>}`, `{"promise", "rejected": reason}` or
//!   `{"promise", "timedOut": true}`.
//! - `Resolve` (shared): `{"promise": id, "value": <json>}` → `{"resolved": bool}`.

use core::time::Duration;

use cairn_sdk::{
    Completion, Context, Failure, HandlerInfo, Promise, Service, ServiceKind, SharedContext, Target,
};
use serde::Deserialize;
use serde_json::{Value, json};

mod bindings {
    wit_bindgen::generate!({
        world: "cairn:durable/service@0.1.1",
        path: "../../../wit",
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetInput {
    service: String,
    key: Option<String>,
    handler: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CallInput {
    target: TargetInput,
    #[serde(default)]
    input: Value,
    delay_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AwaitInput {
    timeout_ms: Option<u64>,
    sleep_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveInput {
    promise: String,
    value: Value,
}

struct Relay;

impl Service for Relay {
    const NAME: &'static str = "Relay";
    const KIND: ServiceKind = ServiceKind::KeyedObject;
    const HANDLERS: &'static [HandlerInfo] = &[
        HandlerInfo::exclusive("Call"),
        HandlerInfo::exclusive("Send"),
        HandlerInfo::shared("Await"),
        HandlerInfo::shared("Resolve"),
    ];

    fn handle(ctx: &Context, handler: &str, input: &[u8]) -> Result<Vec<u8>, Failure> {
        let answer = match handler {
            "Call" => {
                let CallInput { target, input, .. } = cairn_sdk::json::from_input(input)?;
                let output: Value = ctx.call(&target_of(target), &input)?;
                json!({ "output": output })
            }
            "Send" => {
                let CallInput {
                    target,
                    input,
                    delay_ms,
                } = cairn_sdk::json::from_input(input)?;
                let delay = delay_ms.map(Duration::from_millis);
                let id = ctx.send(&target_of(target), &input, delay)?;
                json!({ "invocationId": id })
            }
            other => return Err(Failure::not_found(format!("no handler {other:?}"))),
        };
        cairn_sdk::json::to_output(&answer)
    }

    fn handle_shared(ctx: &SharedContext, handler: &str, input: &[u8]) -> Result<Vec<u8>, Failure> {
        let answer = match handler {
            "Await" => {
                let AwaitInput {
                    timeout_ms,
                    sleep_ms,
                } = if input.is_empty() {
                    AwaitInput::default()
                } else {
                    cairn_sdk::json::from_input(input)?
                };
                let promise = ctx.promise();
                if let Some(ms) = sleep_ms {
                    ctx.sleep(Duration::from_millis(ms));
                }
                let id = promise.id().to_string();
                match ctx.wait::<Value>(&promise, timeout_ms.map(Duration::from_millis))? {
                    Completion::Resolved(value) => json!({ "promise": id, "resolved": value }),
                    Completion::Rejected(reason) => json!({ "promise": id, "rejected": reason }),
                    Completion::TimedOut => json!({ "promise": id, "timedOut": true }),
                }
            }
            "Resolve" => {
                let ResolveInput { promise, value } = cairn_sdk::json::from_input(input)?;
                let resolved = ctx.resolve(&Promise::from_id(promise), &value)?;
                json!({ "resolved": resolved })
            }
            other => return Err(Failure::not_found(format!("no handler {other:?}"))),
        };
        cairn_sdk::json::to_output(&answer)
    }
}

fn target_of(t: TargetInput) -> Target {
    Target {
        service: t.service,
        key: t.key,
        handler: t.handler,
    }
}

cairn_sdk::export_service!(Relay, crate::bindings);
