//! Any interface another component exports, as imported by a service (`cairn:commerce/payments`,
//! a third party's `acme:tax/calculate`): linked at deployment with wasmtime's dynamic
//! functions, each call one journal entry whose live effect runs the component pinned for the
//! interface on the invocation (see [`crate::runtime::callee`]).
//!
//! The entry is named `interface.function` (the interface without its version, e.g.
//! `cairn:commerce/payments.create-charge`); its arguments and result are recorded in the
//! encoding of [`crate::journal::values`], so a replay gives the guest the recorded value.

use std::sync::Arc;

use serde_json::value::RawValue;
use wasmtime::component::{Linker, Val};

use crate::journal::values::{self, ArgsJson, ValJson};
use crate::journal::{Effect, EntryKind, JournalError};
use crate::metrics::CallOutcome;
use crate::runtime::callee::{self, Call};
use crate::runtime::linking::unversioned;
use crate::runtime::{HostState, misuse, trap};

/// Defines `interface#function` in `linker` as a journaled call into another component.
pub fn define(
    linker: &mut Linker<HostState>,
    interface: &str,
    function: &str,
) -> wasmtime::Result<()> {
    let interface: Arc<str> = interface.into();
    let function: Arc<str> = function.into();
    let name: Arc<str> = format!("{}.{function}", unversioned(&interface)).into();
    linker.instance(&interface.clone())?.func_new_async(
        &function.clone(),
        move |mut store, ty, params, results| {
            let call = Call {
                caller: store.data().component.clone(),
                interface: interface.clone(),
                function: function.clone(),
                name: name.clone(),
                params: params.to_vec(),
                ty,
            };
            Box::new(async move { store.data_mut().call_component(call, results).await })
        },
    )
}

impl HostState {
    /// Journals `call` and, live, performs it on the deployment pinned for its interface.
    async fn call_component(&mut self, call: Call, results: &mut [Val]) -> wasmtime::Result<()> {
        let svc = self.service(&call.name)?;
        let deployment = svc
            .providers
            .get(&*call.interface)
            .cloned()
            .ok_or_else(|| {
                misuse(format!(
                    "no component exporting {} was deployed when this invocation started",
                    call.interface
                ))
            })?;
        let runtime = svc.runtime.clone();
        let invocation_id = svc.info.id.clone();
        let result_ty = call.ty.results().next();
        if callee::needs_marker(&runtime, &deployment, &call.name) {
            svc.journal.mark_next_call();
        }
        let name = call.name.clone();
        let name_for_metrics = name.clone();
        let args = call.params.clone();
        // Live, the callee's value itself; replaying, it is decoded from the record.
        let mut live_output: Option<Val> = None;
        let slot = &mut live_output;
        let mut trapped: Option<String> = None;
        let trapped_slot = &mut trapped;
        let recorded: Box<RawValue> = svc
            .journal
            .record(
                EntryKind::Call,
                &name,
                &ArgsJson(&args),
                |live| async move {
                    let started = std::time::Instant::now();
                    let performed =
                        callee::perform(&runtime, &invocation_id, &deployment, &live, call).await?;
                    let outcome = match &performed.output {
                        _ if performed.trapped.is_some() => CallOutcome::Trap,
                        Some(Val::Result(Err(_))) => CallOutcome::Error,
                        _ => CallOutcome::Ok,
                    };
                    runtime
                        .metrics
                        .provider_call(&name_for_metrics, outcome, started.elapsed());
                    // A trapped call is recorded (its exchanges left the host) as a soft entry,
                    // which the next attempt performs again.
                    let soft = performed.trapped.is_some()
                        || performed.output.as_ref().is_some_and(values::is_transient);
                    let detail = performed.detail(&deployment, &live.idempotency_key);
                    let text = match (&performed.output, &performed.trapped) {
                        (_, Some(message)) => {
                            *trapped_slot = Some(message.clone());
                            Ok(serde_json::json!({ "trapped": message }).to_string())
                        }
                        (Some(v), None) => serde_json::to_string(&ValJson(v)),
                        (None, None) => Ok("null".to_string()),
                    }
                    .and_then(RawValue::from_string)
                    .map_err(|e| JournalError::Codec(e.to_string()))?;
                    *slot = performed.output;
                    Ok(Effect {
                        value: text,
                        detail: Some(detail),
                        state: None,
                        soft,
                    })
                },
            )
            .await
            .map_err(trap)?;
        if let Some(message) = trapped {
            return Err(trap(JournalError::Effect(message)));
        }
        if let (Some(ty), Some(result)) = (result_ty, results.first_mut()) {
            *result = match live_output {
                Some(value) => value,
                None => decode(&name, &ty, &recorded)?,
            };
        }
        Ok(())
    }
}

fn decode(name: &str, ty: &wasmtime::component::Type, text: &RawValue) -> wasmtime::Result<Val> {
    let codec = |e: String| trap(JournalError::Codec(format!("result of {name}: {e}")));
    let json: serde_json::Value =
        serde_json::from_str(text.get()).map_err(|e| codec(e.to_string()))?;
    values::decode(ty, &json).map_err(codec)
}
