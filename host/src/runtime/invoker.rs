//! Runs one invocation to its end: instantiate the pinned service deployment, call `handle`,
//! retry retryable failures with backoff (the journal carries finished steps across attempts),
//! and commit the outcome.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tracing::Instrument;
use wasmtime::Store;

use super::claim::{Claimed, claim};
use super::control::{self, Registration};
use super::registry::Linked;
use super::retry::OnMaxAttempts;
use super::{DeploymentKind, HostState, Role, Runtime, ServiceCtx};
use crate::bindings::context;
use crate::bindings::handler::{FailureKind as GuestFailureKind, HandlerKind, ServiceKind};
use crate::journal::Entry;
use crate::journal::{Awaited, Journal, JournalError};
use crate::storage::{
    Changed, FailureKind, FailureRecord, Invocation, InvocationStatus, Outcome, StateOp,
    StateScope, StatusChange,
};

/// How one attempt ended.
#[derive(Debug)]
enum Attempt {
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
    fn name(&self) -> &'static str {
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

/// Runs `inv` until it succeeds, fails terminally, or runs out of attempts; commits and returns
/// the outcome. Exclusive handlers of a keyed object hold the key for the whole run. An
/// operator may stop it meanwhile ([`control`]): what it was doing is dropped, with its
/// instance, permit and key.
pub async fn invoke(runtime: &Arc<Runtime>, inv: Invocation) -> Outcome {
    let id = inv.id.clone();
    let service = inv.service.clone();
    let registration = runtime.controls.register(&id);
    registration.cancelled_in(&inv);
    let shared = runtime.storage.shared();
    let request = tokio::select! {
        biased;
        outcome = invoke_registered(runtime, inv, &registration) => return outcome,
        request = registration.stopped() => request,
        outcome = control::changed_elsewhere(runtime, &id), if shared => {
            release(runtime, &id).await;
            return outcome;
        }
    };
    let outcome = control::apply_stop(runtime, &id, request).await;
    if let Outcome::Failed(f) = &outcome
        && matches!(f.kind, FailureKind::Killed | FailureKind::Paused)
    {
        let status = match f.kind {
            FailureKind::Paused => InvocationStatus::Paused,
            _ => InvocationStatus::Failed,
        };
        runtime.metrics.ended(&service, status);
    }
    if shared {
        release(runtime, &id).await;
    }
    outcome
}

async fn release(runtime: &Runtime, id: &str) {
    if let Err(e) = runtime.storage.release(id).await {
        // Unreleased leases expire on their own.
        tracing::warn!(invocation = %id, error = %e, "could not release the leases");
    }
}

async fn invoke_registered(
    runtime: &Arc<Runtime>,
    mut inv: Invocation,
    registration: &Registration,
) -> Outcome {
    // A delayed send waits for its time first, holding nothing (a restart resumes the wait).
    if let Some(not_before) = inv.not_before
        && not_before > crate::storage::now_ms()
    {
        if !registration.wait(runtime, Some(not_before), &[]).await {
            return stopping(&inv.id);
        }
        if registration.cancel_asked() {
            return cancelled_unstarted(runtime, &inv).await;
        }
    }
    // The first attempt may know its journal already (new, or resumed after a restart).
    let known = inv.known_journal.take();
    let exclusive = exclusive(runtime, &inv);
    let mut turn = match (&inv.key, exclusive) {
        (Some(key), true) => Some(runtime.locks.lock(&inv.service, key).await),
        _ => None,
    };
    if !runtime.storage.shared() {
        return run_suspending(runtime, inv, exclusive, known, registration, &mut turn).await;
    }
    let id = inv.id.clone();
    // The key's lease in the database is given back after the outcome: keep the turn as long.
    let outcome = match claim(runtime, &mut inv, exclusive, known).await {
        Claimed::Run(known) => {
            run_suspending(runtime, inv, exclusive, known, registration, &mut None).await
        }
        Claimed::Ended(outcome) => outcome,
        Claimed::Elsewhere(outcome) => return outcome,
    };
    release(runtime, &id).await;
    outcome
}

/// The outcome of an invocation left waiting because this host stops: nothing is written, and
/// the next start resumes it.
fn stopping(id: &str) -> Outcome {
    tracing::debug!(invocation = %id, "left waiting: the host stops");
    Outcome::Failed(FailureRecord::new(
        FailureKind::Retryable,
        503,
        "the host is stopping; the invocation resumes when it starts again",
    ))
}

/// Ends delayed send `inv`, cancelled before its time came, without running it.
async fn cancelled_unstarted(runtime: &Runtime, inv: &Invocation) -> Outcome {
    let outcome = Outcome::Failed(FailureRecord::new(
        FailureKind::Cancelled,
        409,
        "cancelled by the operator before it started",
    ));
    let scope = StateScope {
        service: &inv.service,
        key: inv.key.as_deref().unwrap_or_default(),
    };
    match runtime
        .storage
        .complete(&inv.id, &outcome, scope, Vec::new())
        .await
    {
        Ok(()) => {
            runtime.wakes.notify(|| Awaited::Invocation(inv.id.clone()));
            runtime
                .metrics
                .ended(&inv.service, InvocationStatus::Failed);
            outcome
        }
        Err(e) => storage_failure(&inv.id, &e),
    }
}

/// How [`run_to_end`] stopped.
enum Ran {
    Ended(Outcome),
    /// Suspended (its entries committed) until `until_ms` or one of `on` completes.
    Suspended {
        until_ms: Option<i64>,
        on: Vec<Awaited>,
    },
}

/// Runs `inv` to its end. While it is suspended it holds only its id and what it waits for
/// (its row is read again when the wait ends), so a waiting invocation costs little more than
/// its rows. `turn` is the key's turn of an exclusive handler, if it may be handed on before
/// the outcome is durable (see [`run_to_end`]).
async fn run_suspending(
    runtime: &Arc<Runtime>,
    mut inv: Invocation,
    exclusive: bool,
    mut known: Option<Vec<Entry>>,
    registration: &Registration,
    turn: &mut Option<KeyTurn>,
) -> Outcome {
    loop {
        // Boxed: while suspended, the task keeps no room for an attempt's future.
        let ran = Box::pin(run_to_end(
            runtime,
            &inv,
            exclusive,
            known.take(),
            registration,
            turn,
        ))
        .await;
        let (until_ms, on) = match ran {
            Ran::Ended(outcome) => return outcome,
            Ran::Suspended { until_ms, on } => (until_ms, on),
        };
        let id = std::mem::take(&mut inv.id);
        drop(inv);
        tracing::debug!(invocation = %id, ?until_ms, ?on, "suspended");
        if !registration.wait(runtime, until_ms, &on).await {
            return stopping(&id);
        }
        inv = match runtime.storage.invocation(&id).await {
            Ok(Some(row)) if row.status == InvocationStatus::Paused => {
                return Outcome::Failed(control::paused_failure(&row));
            }
            Ok(Some(row)) => match row.outcome() {
                None => {
                    registration.cancelled_in(&row);
                    row
                }
                // Ended elsewhere meanwhile (another host took it over, or it was killed).
                Some(outcome) => return outcome,
            },
            Ok(None) => {
                return Outcome::Failed(FailureRecord::new(
                    FailureKind::Terminal,
                    500,
                    format!("invocation {id} vanished while it waited"),
                ));
            }
            Err(e) => return storage_failure(&id, &e),
        };
    }
}

/// The outcome of an invocation this host could not go on with because of its storage: it
/// stays `running`, to be resumed.
pub(super) fn storage_failure(id: &str, e: &crate::storage::StorageError) -> Outcome {
    tracing::error!(invocation = %id, error = %e, "storage failed; the invocation stays unfinished");
    Outcome::Failed(FailureRecord::new(
        FailureKind::Retryable,
        503,
        "the outcome could not be stored; the invocation will be resumed",
    ))
}

/// An exclusive handler's turn on its key.
type KeyTurn = tokio::sync::OwnedMutexGuard<()>;

/// Runs the attempts of `inv` and commits its outcome, or stops where it suspends.
///
/// An outcome that writes no state hands the key's `turn` on as soon as the commit is ordered,
/// before it is durable: the next invocation on the key can read nothing this one still
/// changes, and its own writes commit after this outcome (so a crash cannot keep its effects
/// and lose this one's end). Identical requests queued on one key then run back to back, their
/// outcomes sharing commits, instead of one fsync apart.
async fn run_to_end(
    runtime: &Arc<Runtime>,
    inv: &Invocation,
    exclusive: bool,
    mut known: Option<Vec<Entry>>,
    registration: &Registration,
    turn: &mut Option<KeyTurn>,
) -> Ran {
    let policy = runtime
        .settings
        .service_retry
        .get(&inv.service)
        .unwrap_or(&runtime.settings.retry);
    let mut attempt = inv.attempt.max(1);
    let scope = StateScope {
        service: &inv.service,
        key: inv.key.as_deref().unwrap_or_default(),
    };
    let (outcome, pending) = loop {
        // Bounded instances at once: only a running attempt holds a permit (and an instance);
        // one waiting for its key, a retry or a timer holds neither.
        let permit = runtime.running.acquire().await;
        runtime.metrics.attempt(&inv.service);
        // Boxed: a suspended invocation keeps its task, which would otherwise be as large as
        // the attempt's future (instantiation and the guest call) for as long as it waits.
        let span = crate::telemetry::otel_span!(
            crate::telemetry::recording(),
            "attempt",
            otel.name = %format_args!("{}/{} attempt {attempt}", inv.service, inv.handler),
            invocation.id = inv.id.as_str(),
            service = inv.service.as_str(),
            handler = inv.handler.as_str(),
            key = inv.key.as_deref(),
            attempt,
            outcome = tracing::field::Empty,
        );
        let (result, pending) = Box::pin(
            run_attempt(
                runtime,
                inv,
                Start {
                    attempt,
                    exclusive,
                    cancel: registration.cancel_flag(),
                },
                known.take(),
            )
            .instrument(span.clone()),
        )
        .await;
        span.record("outcome", result.name());
        drop(permit);
        match result {
            Attempt::Output(out) => break (Outcome::Succeeded(out), pending),
            Attempt::Suspended { until_ms, on } => {
                // The wait's entries must be durable before the instance is gone: a restart
                // then resumes the wait instead of starting a new one.
                if let Err(e) = runtime
                    .storage
                    .append_batch(&inv.id, scope.clone(), pending)
                    .await
                {
                    tracing::error!(invocation = %inv.id, error = %e, "could not record the entries before a wait");
                }
                return Ran::Suspended { until_ms, on };
            }
            Attempt::Failed { retryable, failure } => {
                // The policy counts the attempts since the invocation was last resumed.
                let made = attempt.saturating_sub(inv.attempt_base);
                if retryable && made < policy.max_attempts {
                    // What this attempt recorded stays: the next one replays it.
                    if !pending.is_empty()
                        && let Err(e) = runtime
                            .storage
                            .append_batch(&inv.id, scope.clone(), pending)
                            .await
                    {
                        tracing::error!(invocation = %inv.id, error = %e, "could not record the attempt's last entries");
                    }
                    tracing::warn!(invocation = %inv.id, attempt, error = %failure.message, "attempt failed; retrying");
                    runtime.metrics.retry(&inv.service);
                    registration.backoff(policy.delay(attempt)).await;
                    attempt += 1;
                    if let Err(e) = runtime.storage.set_attempt(&inv.id, attempt).await {
                        tracing::error!(invocation = %inv.id, error = %e, "could not record attempt");
                    }
                    continue;
                }
                if retryable && policy.on_max_attempts == OnMaxAttempts::Pause {
                    return Ran::Ended(pause(runtime, inv, scope, pending, made, failure).await);
                }
                break (Outcome::Failed(failure), pending);
            }
        }
    };
    // The caller sees the outcome only once it is durable (invariant 1).
    let mut tries = 0;
    loop {
        let writes_state = pending.iter().any(|(_, op)| op.is_some());
        let handed_on = turn.take_if(|_| !writes_state);
        let ordered: crate::storage::Ordered = Box::new(move || drop(handed_on));
        match runtime
            .storage
            .complete_ordered(&inv.id, &outcome, scope.clone(), pending.clone(), ordered)
            .await
        {
            Ok(()) => {
                runtime.wakes.notify(|| Awaited::Invocation(inv.id.clone()));
                runtime.metrics.ended(&inv.service, outcome.status());
                return Ran::Ended(outcome);
            }
            Err(e) if e.is_retryable() && tries < 5 => {
                tries += 1;
                tokio::time::sleep(policy.delay(tries)).await;
            }
            // Not committed: the invocation stays `running` and is resumed.
            Err(e) => return Ran::Ended(storage_failure(&inv.id, &e)),
        }
    }
}

/// Pauses `inv`, whose `made` attempts ran out on `failure`, under a policy that pauses: its
/// entries committed, its row `paused` with why, for an operator to resume.
async fn pause(
    runtime: &Runtime,
    inv: &Invocation,
    scope: StateScope<'_>,
    pending: Pending,
    made: u32,
    failure: FailureRecord,
) -> Outcome {
    if !pending.is_empty()
        && let Err(e) = runtime.storage.append_batch(&inv.id, scope, pending).await
    {
        return storage_failure(&inv.id, &e);
    }
    let why = FailureRecord {
        kind: FailureKind::Paused,
        message: format!(
            "paused after {made} attempts (resume it to run it again): {}",
            failure.message
        ),
        ..failure
    };
    match runtime
        .storage
        .change_status(&inv.id, &StatusChange::Pause(why.clone()))
        .await
    {
        Ok(Changed::Applied) => {
            runtime
                .metrics
                .ended(&inv.service, InvocationStatus::Paused);
            tracing::warn!(invocation = %inv.id, attempts = made, error = %why.message, "attempts ran out; paused");
            Outcome::Failed(why)
        }
        Ok(_) => match runtime.storage.invocation(&inv.id).await {
            Ok(Some(row)) => row
                .outcome()
                .unwrap_or_else(|| Outcome::Failed(control::paused_failure(&row))),
            Ok(None) => Outcome::Failed(why),
            Err(e) => storage_failure(&inv.id, &e),
        },
        Err(e) => storage_failure(&inv.id, &e),
    }
}

fn exclusive(runtime: &Runtime, inv: &Invocation) -> bool {
    let registry = runtime.registry();
    match registry
        .deployments
        .get(&inv.deployment_id)
        .map(|d| &d.kind)
    {
        Some(DeploymentKind::Service(info)) => {
            info.kind == ServiceKind::KeyedObject
                && info
                    .handlers
                    .iter()
                    .find(|h| h.name == inv.handler)
                    .is_none_or(|h| h.kind == HandlerKind::Exclusive)
        }
        _ => true,
    }
}

/// Entries recorded by an attempt and not yet committed.
type Pending = Vec<(Entry, Option<StateOp>)>;

/// What one attempt starts with.
struct Start {
    attempt: u32,
    exclusive: bool,
    /// The operator's cancellation, shared with the attempt's journal.
    cancel: Arc<AtomicBool>,
}

/// Runs one attempt; returns how it ended and the entries it recorded but did not commit yet.
/// A terminal failure after the handler was told of a cancellation is the cancellation's end.
async fn run_attempt(
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
    .with_cancel(cancel);
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
const MAX_OUTPUT_BYTES: usize = 4 << 20;

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
