//! `cairn:durable/calls`: calls and one-way sends to other services' handlers.
//!
//! Starting the callee is one journal entry (`call Service/handler`, `send Service/handler`)
//! whose result is the callee's invocation id, or the refusal: live, it creates the callee with
//! the idempotency key of the entry, so a caller re-executed after a crash finds the same callee
//! instead of starting a second. A call then records the callee's outcome as a second entry
//! (`result`) once there is one; until then the caller is suspended on it, holding no instance.
//! A cancellation found before `result` cancels the callee and fails the call (409).

use serde::Serialize;

use crate::bindings::calls::{CallError, CallFailure, Host, Target};
use crate::journal::{Awaited, Effect, EntryKind, JournalError, Live};
use crate::runtime::start::{self, new_invocation};
use crate::runtime::{HostState, Runtime, trap};
use crate::storage::{Created, InvocationStatus, now_ms};

/// How long the idempotency key of a call or send is kept: a caller re-executed within this
/// time after creating its callee finds that callee.
const CALL_KEY_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// The journaled arguments of a call or send: the input as text when it is UTF-8 (JSON, as a
/// rule), else hex.
#[derive(Serialize)]
struct Args {
    target: Target,
    input: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    delay_ms: Option<u64>,
}

fn args(target: &Target, input: &[u8], delay_ms: Option<u64>) -> Args {
    let input = match std::str::from_utf8(input) {
        Ok(text) => text.to_string(),
        Err(_) => format!("0x{}", hex::encode(input)),
    };
    Args {
        target: target.clone(),
        input,
        delay_ms,
    }
}

fn path(target: &Target) -> String {
    start::Target::from(target.clone()).to_string()
}

impl From<Target> for start::Target {
    fn from(t: Target) -> Self {
        start::Target {
            service: t.service,
            key: t.key,
            handler: t.handler,
        }
    }
}

/// Who is calling: what a cycle check needs.
struct Caller {
    service: String,
    key: Option<String>,
    /// An exclusive handler of a keyed object: it holds its key while it waits.
    exclusive: bool,
}

impl Host for HostState {
    async fn call(
        &mut self,
        target: Target,
        input: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, CallError>> {
        let svc = self.service("calls.call")?;
        let runtime = svc.runtime.clone();
        let caller = Caller {
            service: svc.info.service.clone(),
            key: svc.info.key.clone(),
            exclusive: svc.may_write_state,
        };
        let name = format!("call {}", path(&target));
        let journaled = args(&target, &input, None);
        let started: Result<String, CallError> = svc
            .journal
            .record(EntryKind::Invoke, &name, &journaled, |live| async move {
                let started = start_callee(&runtime, &caller, target, input, None, &live).await;
                Ok(Effect::value(started?))
            })
            .await
            .map_err(trap)?;
        let callee = match started {
            Ok(callee) => callee,
            Err(refused) => return Ok(Err(refused)),
        };
        // Cancelled: the callee is cancelled too, and this call fails without waiting for it.
        if svc.journal.cancelled().map_err(trap)? {
            let runtime = svc.runtime.clone();
            let id = callee.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::runtime::control::cancel(&runtime, &id).await {
                    tracing::debug!(callee = %id, error = %e, "not cancelled with its caller");
                }
            });
            return Ok(Err(CallError::Failed(CallFailure {
                code: 409,
                message: format!("cancelled while calling {callee}"),
            })));
        }
        let storage = svc.runtime.storage.clone();
        let journaled = callee.clone();
        svc.journal
            .record(EntryKind::Invoke, "result", &journaled, |_| async move {
                let Some(inv) = storage.invocation(&callee).await? else {
                    return Ok(Effect::value(Err(CallError::Refused(format!(
                        "the callee {callee} is gone"
                    )))));
                };
                let result = match inv.status {
                    // A paused callee may be resumed: wait for it.
                    InvocationStatus::Running | InvocationStatus::Paused => {
                        return Err(JournalError::Suspended {
                            until_ms: None,
                            on: vec![Awaited::Invocation(callee)],
                        });
                    }
                    InvocationStatus::Succeeded => Ok(inv.output.unwrap_or_default()),
                    InvocationStatus::Failed => Err(CallError::Failed(match inv.failure {
                        Some(failure) => CallFailure {
                            code: failure.code,
                            message: failure.message,
                        },
                        None => CallFailure {
                            code: 500,
                            message: format!("the callee {callee} failed"),
                        },
                    })),
                };
                Ok(Effect::value(result))
            })
            .await
            .map_err(trap)
    }

    async fn send(
        &mut self,
        target: Target,
        input: Vec<u8>,
        delay_ms: Option<u64>,
    ) -> wasmtime::Result<Result<String, CallError>> {
        let svc = self.service("calls.send")?;
        let runtime = svc.runtime.clone();
        let caller = Caller {
            service: svc.info.service.clone(),
            key: svc.info.key.clone(),
            // A send does not wait: no cycle can block it.
            exclusive: false,
        };
        let name = format!("send {}", path(&target));
        let journaled = args(&target, &input, delay_ms);
        svc.journal
            .record(EntryKind::Invoke, &name, &journaled, |live| async move {
                let sent = start_callee(&runtime, &caller, target, input, delay_ms, &live).await;
                Ok(Effect::value(sent?))
            })
            .await
            .map_err(trap)
    }
}

/// Creates (or, re-executed, finds) the callee of entry `live` and runs it; `Ok(Err(_))` is a
/// refusal the guest sees.
async fn start_callee(
    runtime: &std::sync::Arc<Runtime>,
    caller: &Caller,
    target: Target,
    input: Vec<u8>,
    delay_ms: Option<u64>,
    live: &Live,
) -> Result<Result<String, CallError>, JournalError> {
    let target = start::Target::from(target);
    let idempotency = Some((live.idempotency_key.clone(), CALL_KEY_RETENTION_MS));
    let not_before =
        delay_ms.map(|ms| now_ms().saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)));
    let shown = target.to_string();
    let (new, exclusive) =
        match new_invocation(&runtime.registry(), target, input, idempotency, not_before) {
            Ok(made) => made,
            Err(e) => return Ok(Err(CallError::Refused(e.to_string()))),
        };
    // Waiting for an exclusive handler of the key this handler holds would wait forever.
    if caller.exclusive && exclusive && new.service == caller.service && new.key == caller.key {
        return Ok(Err(CallError::Refused(format!(
            "{shown} would wait for the key its caller holds (a call cycle on one exclusive \
             key); send to it instead, or call a shared handler"
        ))));
    }
    match runtime.storage.create_invocation(&new).await? {
        Created::New(invocation) => {
            let id = invocation.id.clone();
            start::spawn(runtime, invocation);
            Ok(Ok(id))
        }
        // Created by an earlier execution of this entry, and running (or done) already.
        Created::Existing(existing) => Ok(Ok(existing.id)),
    }
}
