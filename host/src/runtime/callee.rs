//! Running one call into a provider component, whatever its interface: a fresh, separately
//! limited store, told the call's idempotency key and its configuration (the deployment's own,
//! else the host's defaults for what it exports), with the crash protocol for APIs that cannot
//! deduplicate (started marker; then lookup, repeat or in-doubt answer, as the component's
//! `cairn:durable/recovery` and the function's in-doubt policy say).

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::types::ComponentFunc;
use wasmtime::component::{Func, Instance, Val};

use super::call_retry::again;
use super::limits::describe_trap;
use super::linking::unversioned;
use super::registry::{DeploymentKind, Linked};
use super::{HostState, ProviderCtx, Role, Runtime};
use crate::bindings::recovery::{FunctionRef, GuestIndices as RecoveryIndices, RetrySafety};
use crate::journal::values::{self, is_transient};
use crate::journal::{JournalError, Live};
use crate::storage::CallMarker;

/// One call from a service into another component.
pub struct Call {
    /// The caller's deployment (whose import `ty` is).
    pub caller: Arc<str>,
    /// The interface as the caller imports it, with its version.
    pub interface: Arc<str>,
    pub function: Arc<str>,
    /// `interface.function` without the version: the journal entry's name, and what in-doubt
    /// policies are configured by.
    pub name: Arc<str>,
    pub params: Vec<Val>,
    /// The function's type as the caller imports it.
    pub ty: ComponentFunc,
}

/// What to do about a call a crash left in doubt when it can neither be deduplicated nor found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InDoubtPolicy {
    /// Do not repeat it; answer `in-doubt`.
    AtMostOnce,
    /// Repeat it (it may then happen twice). The default, as for activities and steps in
    /// other durable-execution systems: an operator opts a function into at-most-once.
    AtLeastOnce,
}

impl InDoubtPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "at-most-once" => Some(InDoubtPolicy::AtMostOnce),
            "at-least-once" => Some(InDoubtPolicy::AtLeastOnce),
            _ => None,
        }
    }
}

/// The effect of one call, as the journal entry records it.
pub struct Performed {
    /// The function's result (`None` for a function without one).
    pub output: Option<Val>,
    /// The component's HTTP exchanges, each as JSON text.
    pub exchanges: Vec<String>,
    /// How a call found in doubt after a crash was resolved.
    pub recovery: Option<&'static str>,
    /// The call trapped (a limit, a guest bug): why. Its exchanges are still recorded, since
    /// they left the host; the entry is soft and the attempt fails, so the call is made again.
    pub trapped: Option<String>,
}

impl Performed {
    /// The entry's detail as JSON text: the exchanges, the recovery if any, the callee
    /// deployment and the idempotency key. Written as text, since the exchanges already are.
    pub fn detail(&self, provider: &str, idempotency_key: &str) -> String {
        let text = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let mut detail = format!(r#"{{"exchanges":[{}]"#, self.exchanges.join(","));
        if let Some(recovery) = self.recovery {
            detail.push_str(&format!(r#","recovery":{}"#, text(recovery)));
        }
        if let Some(trapped) = &self.trapped {
            detail.push_str(&format!(r#","trapped":{}"#, text(trapped)));
        }
        detail.push_str(&format!(
            r#","provider":{},"idempotency_key":{}}}"#,
            text(provider),
            text(idempotency_key)
        ));
        detail
    }
}

/// A provider instance ready for one call.
struct Callee {
    store: Store<HostState>,
    instance: Instance,
    recovery: Option<RecoveryIndices>,
    /// What the deployment exports (to find a lookup function in).
    exports: Vec<String>,
}

/// Performs `call` (entry `live.index` of invocation `invocation_id`) on deployment
/// `deployment_id`, safely across crashes: unless the component's API deduplicates on the
/// idempotency key, a durable "started" marker precedes the call; finding one means an earlier
/// attempt crashed mid-call, and the call is then looked up, repeated or answered as in doubt.
pub async fn perform(
    runtime: &Arc<Runtime>,
    invocation_id: &str,
    deployment_id: &str,
    live: &Live,
    call: Call,
) -> Result<Performed, JournalError> {
    let mut callee = instantiate(runtime, deployment_id, &live.idempotency_key).await?;
    let trapped = |e: wasmtime::Error| {
        format!(
            "{} ({deployment_id}) trapped: {}",
            call.name,
            describe_trap(&e)
        )
    };
    let func = function(
        runtime,
        deployment_id,
        &mut callee,
        (&call.interface, &call.function),
        Some((&call.caller, &call.ty)),
    )?;
    let safety = retry_safety(runtime, deployment_id, &call, &mut callee)
        .await
        .map_err(|e| JournalError::Effect(trapped(e)))?;
    let mut recovery = None;
    if !matches!(safety, RetrySafety::IdempotencyKey) {
        // Normally committed with the entries before the call (see `needs_marker`).
        let in_doubt = match live.marked {
            Some(found) => found,
            None => {
                let marker = CallMarker {
                    index: live.index,
                    name: call.name.to_string(),
                    idempotency_key: live.idempotency_key.clone(),
                };
                runtime
                    .storage
                    .mark_call_started(invocation_id, marker)
                    .await?
            }
        };
        if in_doubt {
            let policy = runtime
                .settings
                .in_doubt
                .get(&*call.name)
                .copied()
                .unwrap_or(InDoubtPolicy::AtLeastOnce);
            tracing::warn!(
                invocation = invocation_id,
                entry = live.index,
                call = %call.name,
                ?safety,
                ?policy,
                "call in doubt after a crash"
            );
            let mut decided = false;
            if let RetrySafety::Lookup(finder) = &safety {
                let wall = callee.store.data().limits.limits().wall;
                out_of_flight(runtime, invocation_id, live, wall).await?;
                callee.ctx().in_doubt_since = live.earliest_start_ms;
                match find(runtime, deployment_id, &mut callee, finder, &call).await? {
                    Found::Effect(v) => {
                        return Ok(done(callee, Some(v), Some("in doubt: found by lookup")));
                    }
                    Found::Transient(v) => {
                        return Ok(done(callee, Some(v), Some("in doubt: lookup failed")));
                    }
                    Found::Nothing => {
                        recovery = Some("in doubt: not found by lookup, called again");
                        decided = true;
                    }
                    Found::Inconclusive => {}
                }
                callee.ctx().in_doubt_since = None;
            }
            if !decided {
                if policy == InDoubtPolicy::AtMostOnce {
                    let message = format!(
                        "{} was started before a crash and cannot be checked; not repeated \
                         (at-most-once)",
                        call.name
                    );
                    let result_ty = call.ty.results().next();
                    let output = values::in_doubt(result_ty.as_ref(), message.clone())
                        .ok_or(JournalError::InDoubt(message))?;
                    return Ok(done(
                        callee,
                        Some(output),
                        Some("in doubt: not repeated (at-most-once)"),
                    ));
                }
                recovery = Some("in doubt: called again (at-least-once)");
            }
        }
    }
    let policy = runtime.settings.call_retry.policy(&call.name).clone();
    let mut tries = 1;
    loop {
        match invoke(&mut callee, &func, &call.params, call.ty.results().len()).await {
            Ok(output) => {
                let wait = output.as_ref().and_then(|v| again(&policy, tries, v));
                let Some(wait) = wait else {
                    return Ok(done(callee, output, recovery));
                };
                tracing::info!(
                    invocation = invocation_id,
                    entry = live.index,
                    call = %call.name,
                    tries,
                    wait_ms = wait.as_millis() as u64,
                    "transient answer; calling again with the same key"
                );
                tokio::time::sleep(wait).await;
                tries += 1;
            }
            Err(e) => {
                return Ok(Performed {
                    trapped: Some(trapped(e)),
                    ..done(callee, None, recovery)
                });
            }
        }
    }
}

fn done(callee: Callee, output: Option<Val>, recovery: Option<&'static str>) -> Performed {
    let exchanges = match callee.store.into_data().role {
        Role::Provider(ctx) => {
            let mut exchanges = ctx.exchanges;
            // What left the host is recorded even if its answer never came back.
            exchanges.extend(
                ctx.in_flight
                    .as_ref()
                    .map(crate::outbound::Outbound::unanswered),
            );
            exchanges
        }
        _ => Vec::new(),
    };
    Performed {
        output,
        exchanges,
        recovery,
        trapped: None,
    }
}

impl Callee {
    fn ctx(&mut self) -> &mut ProviderCtx {
        match &mut self.store.data_mut().role {
            Role::Provider(ctx) => ctx,
            _ => unreachable!("a callee store serves a provider call"),
        }
    }
}

async fn instantiate(
    runtime: &Arc<Runtime>,
    deployment_id: &str,
    idempotency_key: &str,
) -> Result<Callee, JournalError> {
    let deployment = runtime
        .registry()
        .deployments
        .get(deployment_id)
        .cloned()
        .ok_or_else(|| JournalError::Misuse(format!("deployment {deployment_id} is gone")))?;
    let (Linked::Provider { pre, recovery }, DeploymentKind::Provider { exports }) =
        (&deployment.linked, &deployment.kind)
    else {
        return Err(JournalError::Misuse(format!(
            "deployment {deployment_id} is a service, not a component to call"
        )));
    };
    let settings = runtime.provider_settings(&deployment, exports);
    let ctx = ProviderCtx {
        idempotency_key: idempotency_key.to_string(),
        config: settings.config,
        policy: settings.policy,
        runtime: runtime.clone(),
        exchanges: Vec::new(),
        in_flight: None,
        in_doubt_since: None,
    };
    let state = HostState::new(
        deployment_id.into(),
        Role::Provider(Box::new(ctx)),
        runtime.settings.memory_limit,
        runtime.seed_of(idempotency_key),
        None,
    );
    let mut store = runtime.new_store_with(state, deployment.limits);
    let wall = store.data().limits.limits().wall;
    let started = tokio::time::timeout(wall, pre.instantiate_async(&mut store))
        .await
        .map_err(|_| wasmtime::Error::new(super::limits::LimitError::Wall { limit: wall }))
        .and_then(|instantiated| instantiated);
    let instance = started.map_err(|e| {
        JournalError::Effect(format!(
            "component {deployment_id} failed to start: {}",
            describe_trap(&e)
        ))
    })?;
    Ok(Callee {
        store,
        instance,
        recovery: recovery.clone(),
        exports: exports.clone(),
    })
}

/// Function `function` of exported `interface` of deployment `deployment_id`; with `expected`
/// (the caller's deployment and import), checked to have the type the caller imports (a caller
/// built against another version of the interface is refused, not fed values of the wrong
/// shape). The export's index and the check are cached per deployment.
fn function(
    runtime: &Runtime,
    deployment_id: &str,
    callee: &mut Callee,
    (interface, function): (&str, &str),
    expected: Option<(&str, &ComponentFunc)>,
) -> Result<Func, JournalError> {
    let missing = || {
        JournalError::Misuse(format!(
            "the deployed component exports no function {interface}#{function}"
        ))
    };
    let store = &mut callee.store;
    let key = format!("{deployment_id}/{interface}#{function}");
    let cached = runtime
        .callee_exports
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .copied();
    let index = match cached {
        Some(index) => index,
        None => {
            let instance = callee
                .instance
                .get_export_index(&mut *store, None, interface)
                .ok_or_else(missing)?;
            let index = callee
                .instance
                .get_export_index(&mut *store, Some(&instance), function)
                .ok_or_else(missing)?;
            runtime
                .callee_exports
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone(), index);
            index
        }
    };
    let func = callee
        .instance
        .get_func(&mut *store, index)
        .ok_or_else(missing)?;
    if let Some((caller, expected)) = expected {
        let checked = format!("{caller}>{key}");
        let known = runtime
            .checked_imports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&checked);
        if !known {
            let actual = func.ty(&*store);
            let same = actual
                .params()
                .map(|(_, t)| t)
                .eq(expected.params().map(|(_, t)| t))
                && actual.results().eq(expected.results());
            if !same {
                return Err(JournalError::Misuse(format!(
                    "{interface}#{function}: the deployed component's function has another \
                     type than the caller imports"
                )));
            }
            runtime
                .checked_imports
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(checked);
        }
    }
    Ok(func)
}

async fn invoke(
    callee: &mut Callee,
    func: &Func,
    params: &[Val],
    results: usize,
) -> wasmtime::Result<Option<Val>> {
    let mut out = vec![Val::Bool(false); results];
    // Waits count (a WASI sleep, a request with a long timeout): past the limit the call's future
    // is dropped and the store with it.
    let wall = callee.store.data().limits.limits().wall;
    tokio::time::timeout(wall, func.call_async(&mut callee.store, params, &mut out))
        .await
        .map_err(|_| wasmtime::Error::new(super::limits::LimitError::Wall { limit: wall }))??;
    Ok(out.into_iter().next())
}

/// Whether a call of `name` on deployment `deployment_id` is preceded by a started marker, when
/// its retry safety is already known (asked at the first call of a deployment).
pub fn needs_marker(runtime: &Runtime, deployment_id: &str, name: &str) -> bool {
    runtime
        .retry_safety
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&safety_key(deployment_id, name))
        .is_some_and(|safety| !matches!(safety, RetrySafety::IdempotencyKey))
}

fn safety_key(deployment_id: &str, name: &str) -> String {
    format!("{deployment_id}/{name}")
}

/// The component's retry safety for the call's function, asked once per deployment and cached;
/// `none` when it exports no `cairn:durable/recovery`.
async fn retry_safety(
    runtime: &Runtime,
    deployment_id: &str,
    call: &Call,
    callee: &mut Callee,
) -> wasmtime::Result<RetrySafety> {
    let cache_key = safety_key(deployment_id, &call.name);
    if let Some(safety) = runtime
        .retry_safety
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&cache_key)
    {
        return Ok(safety.clone());
    }
    let safety = match &callee.recovery {
        Some(indices) => {
            let recovery = indices.load(&mut callee.store, &callee.instance)?;
            let wall = callee.store.data().limits.limits().wall;
            let asked = recovery.call_safety(&mut callee.store, &call.interface, &call.function);
            tokio::time::timeout(wall, asked).await.map_err(|_| {
                wasmtime::Error::new(super::limits::LimitError::Wall { limit: wall })
            })??
        }
        None => RetrySafety::None,
    };
    runtime
        .retry_safety
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(cache_key, safety.clone());
    Ok(safety)
}

/// Added to an in-doubt call's wall-clock limit before it is looked up: the instantiation and
/// the retry-safety question between its marker and the call (microseconds: the instance is
/// pre-linked, the answer cached), and the clocks of hosts sharing a database.
const IN_FLIGHT_MARGIN_MS: i64 = 1_000;

/// Suspends the invocation until the in-doubt call of entry `live.index` can no longer be in
/// flight: its wall-clock limit `wall` (and [`IN_FLIGHT_MARGIN_MS`]) since its marker. Until then a
/// host that lost the invocation (paused, cut off) may still be in the call, or the provider
/// still serving the request of one that died, and a lookup could miss the effect it is about to
/// have, and buy again. Suspended, not slept: the wait holds no instance and does not count
/// against the caller's own wall-clock limit; the entry is run again when it ends.
async fn out_of_flight(
    runtime: &Runtime,
    invocation_id: &str,
    live: &Live,
    wall: std::time::Duration,
) -> Result<(), JournalError> {
    let Some(marked_at) = runtime
        .storage
        .call_marked_at(invocation_id, live.index)
        .await?
    else {
        return Ok(());
    };
    let until = marked_at
        .saturating_add(i64::try_from(wall.as_millis()).unwrap_or(i64::MAX))
        .saturating_add(IN_FLIGHT_MARGIN_MS);
    let left = until.saturating_sub(crate::storage::now_ms());
    if left <= 0 {
        return Ok(());
    }
    tracing::info!(
        invocation = invocation_id,
        entry = live.index,
        wait_ms = left,
        "the call in doubt may still be in flight: looked up once it cannot be"
    );
    Err(JournalError::Suspended {
        until_ms: Some(until),
        on: Vec::new(),
    })
}

/// What a lookup of an in-doubt call found.
enum Found {
    /// The effect the call made: its result.
    Effect(Val),
    /// The call made no effect: call again.
    Nothing,
    /// A transient error: the call is left to the next attempt.
    Transient(Val),
    /// The lookup could not decide: the in-doubt policy applies.
    Inconclusive,
}

/// Looks up the effect of an in-doubt call with the finder the component named: same
/// arguments, `result<option<T>, E>` for a call returning `result<T, E>`.
async fn find(
    runtime: &Runtime,
    deployment_id: &str,
    callee: &mut Callee,
    finder: &FunctionRef,
    call: &Call,
) -> Result<Found, JournalError> {
    let interface = callee
        .exports
        .iter()
        .find(|e| *e == &finder.interface || unversioned(e) == finder.interface)
        .cloned()
        .ok_or_else(|| {
            JournalError::Misuse(format!(
                "{}: the lookup names {}, which the component does not export",
                call.name, finder.interface
            ))
        })?;
    let func = function(
        runtime,
        deployment_id,
        callee,
        (&interface, &finder.function),
        None,
    )?;
    let output = invoke(callee, &func, &call.params, 1).await.map_err(|e| {
        JournalError::Effect(format!("lookup of {}: {}", call.name, describe_trap(&e)))
    })?;
    let shape = || {
        JournalError::Misuse(format!(
            "{interface}#{}: a lookup returns result<option<T>, E>",
            finder.function
        ))
    };
    match output {
        Some(Val::Result(Ok(Some(found)))) => match *found {
            Val::Option(Some(effect)) => Ok(Found::Effect(Val::Result(Ok(Some(effect))))),
            Val::Option(None) => Ok(Found::Nothing),
            _ => Err(shape()),
        },
        Some(error @ Val::Result(Err(_))) if is_transient(&error) => Ok(Found::Transient(error)),
        Some(Val::Result(Err(_))) => Ok(Found::Inconclusive),
        _ => Err(shape()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_by_name() {
        assert_eq!(
            InDoubtPolicy::parse("at-least-once"),
            Some(InDoubtPolicy::AtLeastOnce)
        );
        assert_eq!(
            InDoubtPolicy::parse("at-most-once"),
            Some(InDoubtPolicy::AtMostOnce)
        );
        assert_eq!(InDoubtPolicy::parse("twice"), None);
    }
}
