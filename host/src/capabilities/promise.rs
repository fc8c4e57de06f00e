//! `cairn:durable/promise`: durable promises (awakeables).
//!
//! `create` is one entry recording the new id (the pending row is written at once, so a
//! completion that comes before anyone waits is kept). A wait is two entries: `wait`, recording
//! when its timeout ends, and `waited`, recording the outcome once there is one; until then the
//! invocation is suspended on the promises and the timeout, holding no instance. Recording the
//! outcome keeps a replay on what the guest saw, even if the timeout fired before a late
//! completion. A cancellation found before `waited` ends the wait as a timeout would.
//! `resolve`/`reject` are one entry each, and wake the waiters of this process.

use crate::bindings::promise::{Host, Outcome, PromiseError};
use crate::journal::{Awaited, Effect, EntryKind, JournalError};
use crate::runtime::{HostState, Runtime, trap};
use crate::storage::{PromiseCompletion, PromiseOutcome, StorageResult, now_ms};

/// A new promise id: random, so that knowing other ids does not tell it.
pub fn new_promise_id() -> String {
    format!("prom_{}", uuid::Uuid::new_v4().simple())
}

impl From<PromiseOutcome> for Outcome {
    fn from(outcome: PromiseOutcome) -> Self {
        match outcome {
            PromiseOutcome::Resolved(value) => Outcome::Resolved(value),
            PromiseOutcome::Rejected(reason) => Outcome::Rejected(reason),
        }
    }
}

/// Completes promise `id` and wakes its waiters in this process; what the caller is told.
pub async fn complete(
    runtime: &Runtime,
    id: &str,
    outcome: PromiseOutcome,
) -> StorageResult<PromiseCompletion> {
    let completion = runtime.storage.complete_promise(id, &outcome).await?;
    if completion == PromiseCompletion::Completed {
        runtime.wakes.notify(|| Awaited::Promise(id.to_string()));
    }
    Ok(completion)
}

impl HostState {
    async fn complete_promise(
        &mut self,
        name: &str,
        id: String,
        outcome: PromiseOutcome,
    ) -> wasmtime::Result<Result<(), PromiseError>> {
        let svc = self.service(name)?;
        let runtime = svc.runtime.clone();
        let shown = match &outcome {
            PromiseOutcome::Resolved(value) => String::from_utf8_lossy(value).into_owned(),
            PromiseOutcome::Rejected(reason) => reason.clone(),
        };
        let args = (id.clone(), shown);
        svc.journal
            .record(EntryKind::Promise, name, &args, |_| async move {
                let result = match complete(&runtime, &id, outcome).await? {
                    PromiseCompletion::Completed => Ok(()),
                    PromiseCompletion::NotFound => Err(PromiseError::NotFound),
                    PromiseCompletion::AlreadyCompleted(_) => Err(PromiseError::AlreadyCompleted),
                };
                Ok(Effect::value(result))
            })
            .await
            .map_err(trap)
    }
}

impl Host for HostState {
    async fn create(&mut self) -> wasmtime::Result<String> {
        let svc = self.service("promise.create")?;
        let storage = svc.runtime.storage.clone();
        let invocation_id = svc.info.id.clone();
        svc.journal
            .record(EntryKind::Promise, "create", &(), |_| async move {
                let id = new_promise_id();
                storage.create_promise(&id, &invocation_id).await?;
                Ok(Effect::value(id))
            })
            .await
            .map_err(trap)
    }

    async fn wait(&mut self, id: String, timeout_ms: Option<u64>) -> wasmtime::Result<Outcome> {
        Ok(match self.wait_any(vec![id], timeout_ms).await? {
            Some((_, outcome)) => outcome,
            None => Outcome::TimedOut,
        })
    }

    async fn wait_any(
        &mut self,
        ids: Vec<String>,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Option<(u32, Outcome)>> {
        let svc = self.service("promise.wait")?;
        let until_ms: Option<i64> = svc
            .journal
            .record(
                EntryKind::Promise,
                "wait",
                &(&ids, timeout_ms),
                |_| async move {
                    let timeout = timeout_ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX));
                    Ok(Effect::value(timeout.map(|t| now_ms().saturating_add(t))))
                },
            )
            .await
            .map_err(trap)?;
        // Cancelled: no outcome is waited for (the handler checks the cancellation next).
        if svc.journal.cancelled().map_err(trap)? {
            return Ok(None);
        }
        let storage = svc.runtime.storage.clone();
        let args = ids.clone();
        svc.journal
            .record(EntryKind::Promise, "waited", &args, |_| async move {
                for (index, id) in ids.iter().enumerate() {
                    let outcome = match storage.promise(id).await? {
                        Some(None) => continue,
                        Some(Some(outcome)) => Outcome::from(outcome),
                        None => Outcome::Rejected(format!("no promise {id:?}")),
                    };
                    return Ok(Effect::value(Some((index as u32, outcome))));
                }
                if until_ms.is_some_and(|until| now_ms() >= until) {
                    return Ok(Effect::value(None));
                }
                Err(JournalError::Suspended {
                    until_ms,
                    on: ids.into_iter().map(Awaited::Promise).collect(),
                })
            })
            .await
            .map_err(trap)
    }

    async fn resolve(
        &mut self,
        id: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), PromiseError>> {
        self.complete_promise("resolve", id, PromiseOutcome::Resolved(value))
            .await
    }

    async fn reject(
        &mut self,
        id: String,
        reason: String,
    ) -> wasmtime::Result<Result<(), PromiseError>> {
        self.complete_promise("reject", id, PromiseOutcome::Rejected(reason))
            .await
    }
}
