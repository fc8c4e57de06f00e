//! `cairn:durable/timer`: durable sleeps. The first time a sleep runs, its end is journaled;
//! until then the call stops the attempt with [`JournalError::Suspended`], and the invoker drops
//! the instance, waits without one, and replays the journal when the time comes. A replayed sleep
//! answers from its entry, so it ends at the recorded time however often the host restarts. A
//! cancellation ends it at once.

use crate::bindings::timer::Host;
use crate::journal::{Effect, EntryKind, JournalError};
use crate::runtime::{HostState, trap};
use crate::storage::now_ms;

impl Host for HostState {
    async fn sleep(&mut self, duration_ms: u64) -> wasmtime::Result<()> {
        let svc = self.service("timer.sleep")?;
        let duration = i64::try_from(duration_ms).unwrap_or(i64::MAX);
        let until_ms: i64 = svc
            .journal
            .record(EntryKind::Timer, "sleep", &duration_ms, |_| async move {
                Ok(Effect::value(now_ms().saturating_add(duration)))
            })
            .await
            .map_err(trap)?;
        // Cut short by the operator's cancellation (the handler checks it next).
        if now_ms() < until_ms && !svc.journal.cancelled().map_err(trap)? {
            return Err(trap(JournalError::Suspended {
                until_ms: Some(until_ms),
                on: Vec::new(),
            }));
        }
        Ok(())
    }
}
