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
//! - `RunSteps` (exclusive): `{"steps": N, "send"?: bool}` → calls (or sends) `Steps/Run`
//!   through the typed client of a declared `Steps`, and answers its output (or the
//!   invocation id).

use core::time::Duration;

use cairn_sdk::{Completion, Context, Failure, ObjectContext, Promise, SharedContext, Target};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunSteps {
    steps: u32,
    #[serde(default)]
    send: bool,
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

/// The `Steps` test service, declared here for its typed client (`StepsClient`).
#[cairn_sdk::service]
trait Steps {
    #[handler(name = "Run")]
    fn run(ctx: &Context, input: StepsInput) -> Result<StepsOutput, Failure>;
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepsInput {
    steps: u32,
}

#[derive(Serialize, Deserialize)]
struct StepsOutput {
    steps: u32,
    sum: u64,
}

struct Relay;

#[cairn_sdk::object(rename_all = "PascalCase")]
impl Relay {
    fn call(ctx: &ObjectContext, input: CallInput) -> Result<Value, Failure> {
        let CallInput { target, input, .. } = input;
        let output: Value = ctx.call(&target_of(target), &input)?;
        Ok(json!({ "output": output }))
    }

    fn send(ctx: &ObjectContext, input: CallInput) -> Result<Value, Failure> {
        let CallInput {
            target,
            input,
            delay_ms,
        } = input;
        let delay = delay_ms.map(Duration::from_millis);
        let id = ctx.send(&target_of(target), &input, delay)?;
        Ok(json!({ "invocationId": id }))
    }

    /// Calls `Steps/Run` through its typed client (`"send": true`: sends it instead).
    fn run_steps(ctx: &ObjectContext, input: RunSteps) -> Result<Value, Failure> {
        let steps = ctx.service_client::<StepsClient>();
        let request = steps.run(&StepsInput { steps: input.steps });
        Ok(if input.send {
            json!({ "invocationId": request.send()? })
        } else {
            let StepsOutput { steps, sum } = request.call()?;
            json!({ "steps": steps, "sum": sum })
        })
    }

    #[shared]
    fn r#await(ctx: &SharedContext, input: Option<AwaitInput>) -> Result<Value, Failure> {
        let AwaitInput {
            timeout_ms,
            sleep_ms,
        } = input.unwrap_or_default();
        let promise: Promise<Value> = ctx.promise();
        if let Some(ms) = sleep_ms {
            ctx.sleep(Duration::from_millis(ms))?;
        }
        let id = promise.id().to_string();
        Ok(
            match ctx.wait(&promise, timeout_ms.map(Duration::from_millis))? {
                Completion::Resolved(value) => json!({ "promise": id, "resolved": value }),
                Completion::Rejected(reason) => json!({ "promise": id, "rejected": reason }),
                Completion::TimedOut => json!({ "promise": id, "timedOut": true }),
            },
        )
    }

    #[shared]
    fn resolve(ctx: &SharedContext, input: ResolveInput) -> Result<Value, Failure> {
        let ResolveInput { promise, value } = input;
        let resolved = ctx.resolve(&Promise::<Value>::from_id(promise), &value)?;
        Ok(json!({ "resolved": resolved }))
    }
}

fn target_of(t: TargetInput) -> Target {
    Target {
        service: t.service,
        key: t.key,
        handler: t.handler,
    }
}
