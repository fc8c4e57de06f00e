//! Runs one invocation to its end: its attempts ([`super::attempt`]), retried with backoff
//! for retryable failures (the journal carries finished steps across attempts), suspensions
//! without an instance, and the commit of the outcome.

use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::trace::SpanBuilder;

use super::attempt::{Attempt, Pending, Start, run_attempt};
use super::claim::{Claimed, claim};
use super::control::{self, Registration};
use super::retry::OnMaxAttempts;
use super::{DeploymentKind, Runtime};
use crate::bindings::handler::{HandlerKind, ServiceKind};
use crate::journal::Awaited;
use crate::journal::Entry;
use crate::storage::{
    Changed, FailureKind, FailureRecord, Invocation, InvocationStatus, Outcome, StateScope,
    StatusChange,
};
use crate::telemetry::ChildSpan;

/// Runs `inv` until it succeeds, fails terminally, or runs out of attempts; commits and returns
/// the outcome. Exclusive handlers of a keyed object hold the key for the whole run. An
/// operator may stop it meanwhile ([`control`]): what it was doing is dropped, with its
/// instance, permit and key.
/// `span` is the invocation's: its attempts' spans are its children.
pub async fn invoke(runtime: &Arc<Runtime>, inv: Invocation, span: &ChildSpan) -> Outcome {
    let id = inv.id.clone();
    let service = inv.service.clone();
    let registration = runtime.controls.register(&id);
    registration.cancelled_in(&inv);
    let shared = runtime.storage.shared();
    let request = tokio::select! {
        biased;
        outcome = invoke_registered(runtime, inv, &registration, span) => return outcome,
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
    span: &ChildSpan,
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
        return run_suspending(
            runtime,
            inv,
            exclusive,
            known,
            registration,
            span,
            &mut turn,
        )
        .await;
    }
    let id = inv.id.clone();
    // The key's lease in the database is given back after the outcome: keep the turn as long.
    let outcome = match claim(runtime, &mut inv, exclusive, known).await {
        Claimed::Run(known) => {
            run_suspending(
                runtime,
                inv,
                exclusive,
                known,
                registration,
                span,
                &mut None,
            )
            .await
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
    span: &ChildSpan,
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
            span,
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
    invocation_span: &ChildSpan,
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
        let span = invocation_span.child(|| {
            let mut attributes = vec![
                KeyValue::new("invocation.id", inv.id.clone()),
                KeyValue::new("service", inv.service.clone()),
                KeyValue::new("handler", inv.handler.clone()),
                KeyValue::new("attempt", i64::from(attempt)),
            ];
            attributes.extend(inv.key.clone().map(|key| KeyValue::new("key", key)));
            SpanBuilder::from_name(format!("{}/{} attempt {attempt}", inv.service, inv.handler))
                .with_attributes(attributes)
        });
        let (result, pending) = Box::pin(run_attempt(
            runtime,
            inv,
            Start {
                attempt,
                exclusive,
                cancel: registration.cancel_flag(),
                trace: span.context(),
            },
            known.take(),
        ))
        .await;
        span.set(|| KeyValue::new("outcome", result.name()));
        drop(span);
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
