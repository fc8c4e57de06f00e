//! `steps-service` (test only): the plain service `Steps` with one handler, `Run`.
//!
//! Input `{"steps": N}` with `N` in `0..=1000`; runs `N` durable steps `step-0` .. `step-{N-1}`,
//! step `i` returning `i`, and answers `{"steps": N, "sum": <sum of the step results>}`. The
//! steps do nothing, so the time a call takes is the host's per-step overhead (journaling).
//! With `"sleepMs": M` (at most a minute) it sleeps durably for `M` ms after the first step, or
//! after `"sleepAt": i` steps (`N`: after the last, so the wake-up replays all `N`);
//! with `"retryFirst": true` step 0 fails retryably on the first attempt (the SDK records
//! nothing, the step runs again on attempt 2); with `"failAt": i` step `i` fails terminally with
//! a 422 (recorded; the handler's answer).

use cairn_sdk::{Context, Failure, StepError};
use serde::{Deserialize, Serialize};

/// The most steps one call may ask for.
pub const MAX_STEPS: u32 = 1000;
/// The longest sleep one call may ask for, in ms.
pub const MAX_SLEEP_MS: u64 = 60_000;

#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Input {
    steps: u32,
    #[serde(default)]
    sleep_ms: u64,
    /// How many steps run before the sleep (default 1).
    sleep_at: Option<u32>,
    /// Step 0 fails retryably on the first attempt (not recorded: it runs again on the second).
    #[serde(default)]
    retry_first: bool,
    /// Step `failAt` fails terminally with a 422 (recorded, and the handler's answer).
    fail_at: Option<u32>,
}

#[derive(Debug, PartialEq, Eq, Serialize)]
struct Output {
    steps: u32,
    sum: u64,
}

/// The `Steps` service.
struct Steps;

#[cairn_sdk::service]
impl Steps {
    #[handler(name = "Run")]
    fn run(ctx: &Context, input: Input) -> Result<Output, Failure> {
        let input = check(input)?;
        let mut sum = 0_u64;
        let sleep_at = u64::from(input.sleep_at.unwrap_or(1));
        let sleep = || match input.sleep_ms {
            0 => Ok(()),
            ms => ctx.sleep(core::time::Duration::from_millis(ms)),
        };
        for i in 0..u64::from(input.steps) {
            if i == sleep_at {
                sleep()?;
            }
            sum += ctx.run(&format!("step-{i}"), || {
                if i == 0 && input.retry_first && ctx.invocation().attempt == 1 {
                    return Err(StepError::retryable("the first attempt fails"));
                }
                if input.fail_at.is_some_and(|at| u64::from(at) == i) {
                    return Err(StepError::Terminal(Failure::terminal(
                        422,
                        format!("step-{i} refused"),
                    )));
                }
                Ok(i)
            })?;
        }
        if sleep_at >= u64::from(input.steps) {
            sleep()?;
        }
        let steps = input.steps;
        Ok(Output { steps, sum })
    }
}

/// The input within bounds, or a terminal 400.
fn check(input: Input) -> Result<Input, Failure> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_sdk::__private::HandlerInput;

    fn parse(input: &[u8]) -> Result<Input, Failure> {
        check(Input::decode(input)?)
    }

    #[test]
    fn accepts_zero_to_a_thousand_steps() {
        assert_eq!(parse(br#"{"steps":0}"#).unwrap().steps, 0);
        assert_eq!(parse(br#"{"steps":1000}"#).unwrap().steps, 1000);
        let sleepy = parse(br#"{"steps":2,"sleepMs":1500}"#).unwrap();
        assert_eq!(sleepy.sleep_ms, 1500);
    }

    #[test]
    fn refuses_other_inputs_with_a_terminal_400() {
        for input in [
            &br#"{"steps":1001}"#[..],
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
