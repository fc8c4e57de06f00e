//! `cairn:durable/state`: per-key state of keyed objects. Reads and writes are journal entries;
//! a write is committed in the same transaction as its entry, and read back by the same
//! attempt before that commit.

use crate::bindings::state::Host;
use crate::journal::{Effect, EntryKind};
use crate::runtime::{HostState, ServiceCtx, misuse, trap};
use crate::storage::StateOp;

/// The object key, or a trap for stateless services.
fn object_key(svc: &ServiceCtx) -> wasmtime::Result<String> {
    svc.info.key.clone().ok_or_else(|| {
        misuse(format!(
            "service {} has no keys, so no state",
            svc.info.service
        ))
    })
}

fn writable(svc: &ServiceCtx, op: &str) -> wasmtime::Result<()> {
    if svc.may_write_state {
        Ok(())
    } else {
        Err(misuse(format!(
            "state.{op} in shared handler {}: shared handlers only read state",
            svc.info.handler
        )))
    }
}

impl Host for HostState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Option<Vec<u8>>> {
        let svc = self.service("state.get")?;
        let key = object_key(svc)?;
        let (storage, service) = (svc.runtime.storage.clone(), svc.info.service.clone());
        let wanted = name.clone();
        // The attempt's own writes, not committed yet, come first.
        let written = svc.journal.pending_state(&name);
        svc.journal
            .record(EntryKind::State, "get", &name, |_| async move {
                Ok(Effect::value(match written {
                    Some(value) => value,
                    None => storage.state_get(&service, &key, &wanted).await?,
                }))
            })
            .await
            .map_err(trap)
    }

    async fn set(&mut self, name: String, value: Vec<u8>) -> wasmtime::Result<()> {
        let svc = self.service("state.set")?;
        object_key(svc)?;
        writable(svc, "set")?;
        let args = (&name, &value);
        let op = StateOp::Set {
            name: name.clone(),
            value: value.clone(),
        };
        svc.journal
            .record(EntryKind::State, "set", &args, |_| async move {
                Ok(Effect::with_state((), op))
            })
            .await
            .map_err(trap)
    }

    async fn clear(&mut self, name: String) -> wasmtime::Result<()> {
        let svc = self.service("state.clear")?;
        object_key(svc)?;
        writable(svc, "clear")?;
        let op = StateOp::Clear { name: name.clone() };
        svc.journal
            .record(EntryKind::State, "clear", &name, |_| async move {
                Ok(Effect::with_state((), op))
            })
            .await
            .map_err(trap)
    }

    async fn clear_all(&mut self) -> wasmtime::Result<()> {
        let svc = self.service("state.clear-all")?;
        object_key(svc)?;
        writable(svc, "clear-all")?;
        svc.journal
            .record(EntryKind::State, "clear-all", &(), |_| async move {
                Ok(Effect::with_state((), StateOp::ClearAll))
            })
            .await
            .map_err(trap)
    }

    async fn keys(&mut self) -> wasmtime::Result<Vec<String>> {
        let svc = self.service("state.keys")?;
        let key = object_key(svc)?;
        let (storage, service) = (svc.runtime.storage.clone(), svc.info.service.clone());
        // The names include the attempt's own writes: committed first (rare: a listing after
        // a write in the same attempt).
        if !svc.journal.replaying() && svc.journal.has_pending_state() {
            svc.journal.flush().await.map_err(trap)?;
        }
        svc.journal
            .record(EntryKind::State, "keys", &(), |_| async move {
                Ok(Effect::value(storage.state_keys(&service, &key).await?))
            })
            .await
            .map_err(trap)
    }
}
