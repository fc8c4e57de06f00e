//! The operator's cancellation as one attempt's cursor sees it. Cancelling an invocation sets a
//! flag; the handler learns of it at its next check ([`Journal::cancelled`]: the SDK checks
//! after every suspension point, a sleep, wait or call checks while it would wait, and a
//! handler may check between any two calls). The check that finds it records a `cancel` entry
//! with its ordinal among the checks made since the previous entry, so that a replay tells the
//! handler at the same check, and at no other.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Entry, EntryKind, Journal, JournalError, digest_json};
use crate::storage::now_ms;

/// Whether the operator cancelled the invocation, and whether the handler was told.
#[derive(Debug, Default)]
pub(super) struct Cancellation {
    /// Set by the operator's cancel (shared with the task that runs the invocation).
    requested: Arc<AtomicBool>,
    /// A `cancel` entry was replayed or recorded: every later check answers `true`.
    delivered: bool,
    /// Checks made since the cursor last moved.
    checks: u32,
}

impl Journal {
    /// Shares `requested`: once it is set, the next check tells the handler.
    pub fn with_cancel(mut self, requested: Arc<AtomicBool>) -> Self {
        self.cancel.requested = requested;
        self
    }

    /// Whether the handler has been told that the operator cancelled this invocation.
    pub fn cancel_delivered(&self) -> bool {
        self.cancel.delivered
    }

    /// One check for the operator's cancellation: `true` from the check that delivers it on.
    /// Replaying, only the check the `cancel` entry names delivers it; live, the first check
    /// after the cancel was asked for records that entry. Never inside a step.
    pub fn cancelled(&mut self) -> Result<bool, JournalError> {
        if self.cancel.delivered {
            return Ok(true);
        }
        self.cancel.checks += 1;
        let check = self.cancel.checks;
        match self.recorded.get(self.next as usize) {
            Some(entry) if entry.kind == EntryKind::Cancel => {
                let at: u32 = serde_json::from_slice(&entry.result)
                    .map_err(|e| JournalError::Codec(format!("entry {}: {e}", self.next)))?;
                if at != check {
                    return Ok(false);
                }
                self.last_start = Some(entry.started_at);
                self.next += 1;
                self.moved_past_cancel();
                Ok(true)
            }
            Some(_) => Ok(false),
            None if self.open_step.is_some() || !self.cancel.requested.load(Ordering::Acquire) => {
                Ok(false)
            }
            None => {
                let started_at = now_ms();
                let entry = Entry {
                    index: self.next,
                    kind: EntryKind::Cancel,
                    name: "cancel".to_string(),
                    args_digest: digest_json(b"null"),
                    result: check.to_string().into_bytes(),
                    detail: Some(format!(r#"{{"args":null,"effect":{{"check":{check}}}}}"#)),
                    started_at,
                    duration_us: 0,
                    soft: false,
                };
                self.pending.push((entry, None));
                self.last_start = Some(started_at);
                self.next += 1;
                self.moved_past_cancel();
                Ok(true)
            }
        }
    }

    /// Before a journaled call: a `cancel` entry at the cursor that no check took (the handler
    /// checks less often than when it was recorded) is taken now.
    pub(super) fn take_unchecked_cancel(&mut self) {
        if self
            .recorded
            .get(self.next as usize)
            .is_some_and(|entry| entry.kind == EntryKind::Cancel)
        {
            self.next += 1;
            self.moved_past_cancel();
        }
    }

    fn moved_past_cancel(&mut self) {
        self.cancel.delivered = true;
        self.cancel.checks = 0;
    }

    /// The cursor moved to another entry: checks count afresh.
    pub(super) fn reset_checks(&mut self) {
        self.cancel.checks = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::super::tests::storage;
    use super::super::{Effect, Journal};
    use crate::journal::{Entry, EntryKind};
    use crate::storage::Storage;

    /// A cursor of the cursor's own tests ([`super::super::tests::journal`]) sharing `cancel`.
    fn journal(
        storage: &Arc<dyn Storage>,
        recorded: Vec<Entry>,
        cancel: &Arc<AtomicBool>,
    ) -> Journal {
        super::super::tests::journal(storage, recorded).with_cancel(cancel.clone())
    }

    async fn step(journal: &mut Journal, name: &str) {
        journal
            .record(EntryKind::Run, name, &(), |_| async {
                Ok(Effect::value(()))
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_cancel_is_told_at_the_check_that_found_it_live_and_on_replay() {
        let (_dir, storage) = storage().await;
        let cancel = Arc::new(AtomicBool::new(false));
        let mut live = journal(&storage, vec![], &cancel);
        step(&mut live, "a").await;
        assert!(
            !live.cancelled().unwrap(),
            "not asked for: nothing recorded"
        );
        cancel.store(true, Ordering::Release);
        assert!(
            live.cancelled().unwrap(),
            "the second check after `a` finds it"
        );
        assert!(live.cancelled().unwrap(), "and every later one");
        step(&mut live, "b").await;
        live.flush().await.unwrap();
        let recorded = storage.journal("inv").await.unwrap();
        let kinds: Vec<_> = recorded.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EntryKind::Run, EntryKind::Cancel, EntryKind::Run]);
        assert_eq!(recorded[1].result, b"2", "found at the second check");

        // Replayed, with the flag down (the cancel is in the journal): the same check tells it.
        let down = Arc::new(AtomicBool::new(false));
        let mut replay = journal(&storage, recorded.clone(), &down);
        step(&mut replay, "a").await;
        assert!(
            !replay.cancelled().unwrap(),
            "the first check did not find it"
        );
        assert!(replay.cancelled().unwrap());
        assert!(replay.cancel_delivered());
        step(&mut replay, "b").await;

        // A handler that checks less often takes it with its next call.
        let mut fewer = journal(&storage, recorded, &down);
        step(&mut fewer, "a").await;
        step(&mut fewer, "b").await;
        assert!(fewer.cancel_delivered());
    }

    #[tokio::test]
    async fn no_cancel_is_told_inside_a_step() {
        let (_dir, storage) = storage().await;
        let cancel = Arc::new(AtomicBool::new(true));
        let mut journal = journal(&storage, vec![], &cancel);
        assert_eq!(journal.step_begin("s").unwrap(), None);
        assert!(!journal.cancelled().unwrap());
        journal.step_end("s", Ok(b"1".to_vec())).await.unwrap();
        assert!(journal.cancelled().unwrap());
    }
}
