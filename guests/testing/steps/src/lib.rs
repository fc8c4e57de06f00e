//! `steps-service` (test only): the plain service `Steps` with one handler, `Run`.
//!
//! Input `{"steps": N}` with `N` in `0..=100`; runs `N` durable steps `step-0` .. `step-{N-1}`,
//! step `i` returning `i`, and answers `{"steps": N, "sum": <sum of the step results>}`. The
//! steps do nothing, so the time a call takes is the host's per-step overhead (journaling).
//! With `"sleepMs": M` (at most a minute) it sleeps durably for `M` ms after the first step.

use cairn_sdk::{Context, Failure, HandlerInfo, Service, ServiceKind};
use serde::{Deserialize, Serialize};

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

/// The most steps one call may ask for.
pub const MAX_STEPS: u32 = 100;
/// The longest sleep one call may ask for, in ms.
pub const MAX_SLEEP_MS: u64 = 60_000;

#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Input {
    steps: u32,
    #[serde(default)]
    sleep_ms: u64,
}

#[derive(Debug, PartialEq, Eq, Serialize)]
struct Output {
    steps: u32,
    sum: u64,
}

/// The `Steps` service.
struct Steps;

impl Service for Steps {
    const NAME: &'static str = "Steps";
    const KIND: ServiceKind = ServiceKind::Service;
    const HANDLERS: &'static [HandlerInfo] = &[HandlerInfo::exclusive("Run")];

    fn handle(ctx: &Context, _handler: &str, input: &[u8]) -> Result<Vec<u8>, Failure> {
        let Input { steps, sleep_ms } = parse(input)?;
        let mut sum = 0_u64;
        for i in 0..u64::from(steps) {
            if i == 1 && sleep_ms > 0 {
                ctx.sleep(core::time::Duration::from_millis(sleep_ms));
            }
            let value = ctx
                .run(&format!("step-{i}"), || Ok::<u64, String>(i))
                .map_err(|err| Failure::terminal(500, format!("step-{i}: {err}")))?;
            sum += value;
        }
        cairn_sdk::json::to_output(&Output { steps, sum })
    }
}

/// The input, or a terminal 400.
fn parse(input: &[u8]) -> Result<Input, Failure> {
    let input: Input = cairn_sdk::json::from_input(input)?;
    if input.steps > MAX_STEPS {
        return Err(Failure::bad_request(format!(
            "steps: {} is more than {MAX_STEPS}",
            input.steps
        )));
    }
    if input.sleep_ms > MAX_SLEEP_MS {
        return Err(Failure::bad_request(format!(
            "sleepMs: {} is more than {MAX_SLEEP_MS}",
            input.sleep_ms
        )));
    }
    Ok(input)
}

cairn_sdk::export_service!(Steps, crate::bindings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_zero_to_one_hundred_steps() {
        assert_eq!(parse(br#"{"steps":0}"#).unwrap().steps, 0);
        assert_eq!(parse(br#"{"steps":100}"#).unwrap().steps, 100);
        let sleepy = parse(br#"{"steps":2,"sleepMs":1500}"#).unwrap();
        assert_eq!(sleepy.sleep_ms, 1500);
    }

    #[test]
    fn refuses_other_inputs_with_a_terminal_400() {
        for input in [
            &br#"{"steps":101}"#[..],
            br#"{"steps":-1}"#,
            br#"{"steps":"3"}"#,
            br#"{"steps":2,"sleepMs":60001}"#,
            br#"{}"#,
            b"",
        ] {
            let failure = parse(input).unwrap_err();
            assert!(failure.is_terminal(), "{failure}");
            assert_eq!(failure.code, 400, "{failure}");
        }
    }

    #[test]
    fn output_shape() {
        assert_eq!(
            cairn_sdk::json::to_output(&Output { steps: 3, sum: 3 }).unwrap(),
            br#"{"steps":3,"sum":3}"#
        );
    }
}
