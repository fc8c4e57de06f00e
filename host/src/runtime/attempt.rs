//! One attempt of an invocation: instantiate the pinned service deployment, call its
//! handler with the journal so far, and say how it ended (output, suspension, failure), with
//! the entries it recorded and did not commit.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use wasmtime::Store;

use super::registry::Linked;
use super::{HostState, Role, Runtime, ServiceCtx};
use crate::bindings::context;
use crate::bindings::handler::FailureKind as GuestFailureKind;
use crate::journal::Entry;
use crate::journal::{Awaited, Journal, JournalError};
use crate::storage::{FailureKind, FailureRecord, Invocation, StateOp};

/// How one attempt ended.
#[derive(Debug)]
pub(super) enum Attempt {
    Output(Vec<u8>),
    /// A durable sleep that ends at `until_ms` (Unix ms), or a wait for a callee or a promise
    /// (`on`): wait without an instance, then replay.
    Suspended {
        until_ms: Option<i64>,
        on: Vec<Awaited>,
    },
    Failed {
        retryable: bool,
        failure: FailureRecord,
    },
}

impl Attempt {
    /// For the attempt's span.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Attempt::Output(_) => "succeeded",
            Attempt::Suspended { .. } => "suspended",
            Attempt::Failed {
                retryable: true, ..
            } => "failed (retryable)",
            Attempt::Failed { .. } => "failed",
        }
    }
}

/// Entries recorded by an attempt and not yet committed.
pub(super) type Pending = Vec<(Entry, Option<StateOp>)>;

/// What one attempt starts with.
pub(super) struct Start {
    pub(super) attempt: u32,
    pub(super) exclusive: bool,
    /// The operator's cancellation, shared with the attempt's journal.
    pub(super) cancel: Arc<AtomicBool>,
    /// The attempt's span, the parent of its journal entries' spans.
    pub(super) trace: Option<opentelemetry::Context>,
}

/// Runs one attempt; returns how it ended and the entries it recorded but did not commit yet.
/// A terminal failure after the handler was told of a cancellation is the cancellation's end.
pub(super) async fn run_attempt(
    runtime: &Arc<Runtime>,
    inv: &Invocation,
    start: Start,
    known: Option<Vec<Entry>>,
) -> (Attempt, Pending) {
    let mut store = None;
    let mut result = attempt_in(runtime, inv, start, known, &mut store).await;
    let (pending, told) = match store.map(|s: Store<HostState>| s.into_data().role) {
        Some(Role::Service(mut ctx)) => {
            (ctx.journal.take_pending(), ctx.journal.cancel_delivered())
        }
        _ => (Vec::new(), false),
    };
    if let Attempt::Failed {
        retryable: false,
        failure,
    } = &mut result
        && told
        && failure.kind == FailureKind::Terminal
    {
        failure.kind = FailureKind::Cancelled;
    }
    (result, pending)
}

async fn attempt_in(
    runtime: &Arc<Runtime>,
    inv: &Invocation,
    Start {
        attempt,
        exclusive,
        cancel,
        trace,
    }: Start,
    known: Option<Vec<Entry>>,
    slot: &mut Option<Store<HostState>>,
) -> Attempt {
    let terminal = |code: u16, message: String| Attempt::Failed {
        retryable: false,
        failure: FailureRecord::new(FailureKind::Terminal, code, message),
    };
    let registry = runtime.registry();
    let Some(deployment) = registry.deployments.get(&inv.deployment_id).cloned() else {
        return terminal(
            500,
            format!("deployment {} is not loaded", inv.deployment_id),
        );
    };
    let journal = match known {
        Some(entries) => Ok(entries),
        None => runtime.storage.journal(&inv.id).await,
    };
    let mut recorded = match journal {
        Ok(entries) => entries,
        Err(e) => return host_failure(JournalError::Storage(e)),
    };
    // A retryable provider failure that ended the previous attempt is performed again.
    if let Some(last) = recorded.last()
        && last.soft
    {
        if let Err(e) = runtime.storage.truncate_journal(&inv.id, last.index).await {
            return host_failure(JournalError::Storage(e));
        }
        recorded.pop();
    }
    let journal = Journal::new(
        inv.id.as_str().into(),
        inv.service.as_str().into(),
        inv.key.clone().unwrap_or_default().into(),
        runtime.storage.clone(),
        recorded,
        runtime.settings.fail_point.clone(),
    )
    .with_cancel(cancel)
    .with_trace(trace);
    let ctx = ServiceCtx {
        info: context::Invocation {
            id: inv.id.clone(),
            service: inv.service.clone(),
            handler: inv.handler.clone(),
            key: inv.key.clone(),
            attempt,
        },
        journal,
        may_write_state: inv.key.is_some() && exclusive,
        providers: inv.providers.clone(),
        policy: runtime.settings.service_policy.clone(),
        runtime: runtime.clone(),
    };
    let state = HostState::new(
        deployment.id.as_str().into(),
        Role::Service(Box::new(ctx)),
        runtime.settings.memory_limit,
        runtime.seed_of(&inv.id),
        Some(inv.created_at),
    );
    let store = slot.insert(runtime.new_store(state));
    let Linked::Service(pre) = &deployment.linked else {
        return terminal(
            500,
            format!("deployment {} is not a service", deployment.id),
        );
    };
    let wall = store.data().limits.limits().wall;
    let run = async {
        let instance = pre.instantiate_async(&mut *store).await?;
        instance
            .cairn_durable_handler()
            .call_handle(&mut *store, &inv.handler, &inv.input)
            .await
    };
    // Past the wall-clock limit the attempt's future is dropped, and with the store its
    // instance and memory; the invoker then frees the permit (and the key) as after a trap.
    let result = match tokio::time::timeout(wall, run).await {
        Ok(result) => result,
        Err(_) => Err(wasmtime::Error::new(super::limits::LimitError::Wall {
            limit: wall,
        })),
    };
    match result {
        Ok(Ok(output)) if output.len() > MAX_OUTPUT_BYTES => terminal(
            500,
            format!(
                "the handler's output of {} bytes is more than the {MAX_OUTPUT_BYTES} an \
                 invocation keeps",
                output.len()
            ),
        ),
        Ok(Ok(output)) => Attempt::Output(output),
        Ok(Err(failure)) => {
            let kind = match failure.kind {
                GuestFailureKind::Terminal => FailureKind::Terminal,
                GuestFailureKind::Retryable => FailureKind::Retryable,
            };
            Attempt::Failed {
                retryable: kind == FailureKind::Retryable,
                failure: FailureRecord::new(kind, failure.code, bounded_message(failure.message)),
            }
        }
        Err(trap) => match trap.downcast::<JournalError>() {
            Ok(JournalError::Suspended { until_ms, on }) => Attempt::Suspended { until_ms, on },
            Ok(journal_error) => host_failure(journal_error),
            // A guest trap (unreachable, out of memory, stack overflow): retryable.
            Err(trap) => Attempt::Failed {
                retryable: true,
                failure: FailureRecord::new(
                    FailureKind::Retryable,
                    500,
                    format!("guest trapped: {}", super::limits::describe_trap(&trap)),
                ),
            },
        },
    }
}

/// A guest's failure message, cut at 8 KiB (on a character boundary).
fn bounded_message(mut message: String) -> String {
    const MAX: usize = 8 << 10;
    if message.len() > MAX {
        let mut end = MAX;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

/// Largest handler output kept (and answered).
pub(super) const MAX_OUTPUT_BYTES: usize = 4 << 20;

fn host_failure(e: JournalError) -> Attempt {
    let retryable = e.is_retryable();
    let (kind, code, divergence) = match &e {
        // The component no longer matches its journal: stop, perform nothing more, say where.
        JournalError::Divergence {
            index,
            recorded,
            actual,
        } => (
            FailureKind::Diverged,
            500,
            Some(serde_json::json!({"entry": index, "recorded": recorded, "actual": actual})),
        ),
        JournalError::Misuse(_) => (FailureKind::Terminal, 500, None),
        _ if retryable => (FailureKind::Retryable, 503, None),
        _ => (FailureKind::Terminal, 500, None),
    };
    Attempt::Failed {
        retryable,
        failure: FailureRecord {
            kind,
            code,
            message: e.to_string(),
            divergence,
        },
    }
}
