//! The journal cursor of one invocation attempt: replays recorded entries, then records live ones.

use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Entry, EntryKind, JournalError, digest_json};
use crate::storage::{CallMarker, StateOp, StateScope, Storage};

mod cancel;
mod live;

pub use live::{Effect, FailPoint, Live};

/// Longest entry name (a step's, a state key's...) a guest may give.
const MAX_NAME_BYTES: usize = 1024;
/// Largest result one entry records, encoded.
const MAX_RESULT_BYTES: usize = 16 << 20;

pub struct Journal {
    invocation_id: Arc<str>,
    service: Arc<str>,
    key: Arc<str>,
    storage: Arc<dyn Storage>,
    /// The entries of earlier attempts; live entries go to `pending` only (past the end of
    /// `recorded`, every lookup finds nothing, which is what a live call needs).
    recorded: Vec<Entry>,
    next: u32,
    open_step: Option<String>,
    fail_point: Option<Arc<FailPoint>>,
    /// Live entries not yet committed: made durable together before the next external effect,
    /// before the response and at the end of the attempt (invariant 1).
    pending: Vec<(Entry, Option<StateOp>)>,
    /// Set by [`Journal::mark_next_call`]: the next live external call needs a started marker.
    mark_next: bool,
    /// When the entry before the cursor started (Unix ms).
    last_start: Option<i64>,
    /// The operator's cancellation: asked for, told to the handler.
    cancel: cancel::Cancellation,
    /// The attempt's span context: live entries' spans are its children.
    trace: Option<opentelemetry::Context>,
}

impl Journal {
    /// A cursor at the start of `recorded` (the entries of earlier attempts, in order).
    pub fn new(
        invocation_id: Arc<str>,
        service: Arc<str>,
        key: Arc<str>,
        storage: Arc<dyn Storage>,
        recorded: Vec<Entry>,
        fail_point: Option<Arc<FailPoint>>,
    ) -> Self {
        Journal {
            invocation_id,
            service,
            key,
            storage,
            recorded,
            next: 0,
            open_step: None,
            fail_point,
            pending: Vec::new(),
            mark_next: false,
            last_start: None,
            cancel: Default::default(),
            trace: None,
        }
    }

    /// Makes the spans of live entries children of `trace` (the attempt's span).
    pub fn with_trace(mut self, trace: Option<opentelemetry::Context>) -> Self {
        self.trace = trace;
        self
    }

    /// Commits the pending entries (one transaction). Called before every external effect.
    pub async fn flush(&mut self) -> Result<(), JournalError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        self.storage
            .append_batch(&self.invocation_id, self.scope(), batch)
            .await?;
        Ok(())
    }

    /// Asks for a durable started marker before the next call, if it runs live (a provider whose
    /// API does not deduplicate on the idempotency key). It is committed in the same
    /// transaction as the entries before the call, so it costs no commit of its own.
    pub fn mark_next_call(&mut self) {
        self.mark_next = true;
    }

    /// Commits the pending entries with the started marker of the live call `name` at the cursor.
    async fn flush_marking(&mut self, name: &str) -> Result<bool, JournalError> {
        let batch = std::mem::take(&mut self.pending);
        let marker = CallMarker {
            index: self.next,
            name: name.to_string(),
            idempotency_key: self.idempotency_key(self.next),
        };
        Ok(self
            .storage
            .append_and_mark(&self.invocation_id, self.scope(), batch, marker)
            .await?)
    }

    fn idempotency_key(&self, index: u32) -> String {
        format!("{}-{}", self.invocation_id, index)
    }

    /// The entries not yet committed, for the caller to commit with the outcome.
    pub fn take_pending(&mut self) -> Vec<(Entry, Option<StateOp>)> {
        std::mem::take(&mut self.pending)
    }

    /// What this attempt wrote to state `name` and has not committed yet: `Some(None)` cleared,
    /// `None` nothing (a read then goes to storage). Reads see the attempt's own writes.
    pub fn pending_state(&self, name: &str) -> Option<Option<Vec<u8>>> {
        self.pending.iter().rev().find_map(|(_, op)| match op {
            Some(StateOp::Set { name: n, value }) if n == name => Some(Some(value.clone())),
            Some(StateOp::Clear { name: n }) if n == name => Some(None),
            Some(StateOp::ClearAll) => Some(None),
            _ => None,
        })
    }

    /// Whether this attempt has state writes not committed yet.
    pub fn has_pending_state(&self) -> bool {
        self.pending.iter().any(|(_, op)| op.is_some())
    }

    /// The keyed state this invocation's state mutations apply to.
    pub fn scope(&self) -> StateScope<'_> {
        StateScope {
            service: &self.service,
            key: &self.key,
        }
    }

    /// True while recorded entries remain to be replayed.
    pub fn replaying(&self) -> bool {
        (self.next as usize) < self.recorded.len()
    }

    /// The one journaling helper. Replaying: verify `(kind, name, digest(args))` against the
    /// recorded entry and return its result, performing nothing. Live: make the entries so far
    /// durable if this call reaches outside (HTTP, provider), run `live`, and record the entry
    /// with its state mutation; it is committed with the next flush, atomically with the state.
    pub async fn record<A, R, F, Fut>(
        &mut self,
        kind: EntryKind,
        name: &str,
        args: &A,
        live: F,
    ) -> Result<R, JournalError>
    where
        A: Serialize + ?Sized,
        R: Serialize + DeserializeOwned,
        F: FnOnce(Live) -> Fut,
        Fut: Future<Output = Result<Effect<R>, JournalError>>,
    {
        if name.len() > MAX_NAME_BYTES {
            return Err(JournalError::Misuse(format!(
                "an entry name of {} bytes is longer than {MAX_NAME_BYTES}",
                name.len()
            )));
        }
        // Encoded once: digested here, stored as the entry's preview if it becomes live.
        let args_json = serde_json::to_vec(args).map_err(|e| JournalError::Codec(e.to_string()))?;
        let args_digest = digest_json(&args_json);
        let mark = std::mem::take(&mut self.mark_next);
        self.take_unchecked_cancel();
        self.reset_checks();
        if let Some(recorded) = self.recorded.get(self.next as usize) {
            if recorded.kind != kind || recorded.name != name || recorded.args_digest != args_digest
            {
                return Err(JournalError::Divergence {
                    index: self.next,
                    recorded: format!(
                        "{} {:?} (args {})",
                        recorded.kind.as_str(),
                        recorded.name,
                        recorded.args_digest
                    ),
                    actual: format!("{} {:?} (args {})", kind.as_str(), name, args_digest),
                });
            }
            let value = serde_json::from_slice(&recorded.result)
                .map_err(|e| JournalError::Codec(format!("entry {}: {e}", self.next)))?;
            self.last_start = Some(recorded.started_at);
            self.next += 1;
            return Ok(value);
        }

        self.record_live(kind, name, &args_json, args_digest, mark, live)
            .await
    }

    /// `run.begin`: the recorded outcome if step `name` already completed, else opens the step.
    pub fn step_begin(
        &mut self,
        name: &str,
    ) -> Result<Option<Result<Vec<u8>, String>>, JournalError> {
        if let Some(open) = &self.open_step {
            return Err(JournalError::Misuse(format!(
                "run step {name:?} started inside step {open:?}: steps do not nest"
            )));
        }
        self.take_unchecked_cancel();
        self.reset_checks();
        // Steps do not nest, so the first `run` entry ahead of the cursor closes this step.
        let start = self.next as usize;
        let closing = self.recorded[start.min(self.recorded.len())..]
            .iter()
            .position(|e| e.kind == EntryKind::Run)
            .map(|offset| start + offset);
        match closing {
            Some(at) if self.recorded[at].name == name => {
                let outcome = serde_json::from_slice(&self.recorded[at].result)
                    .map_err(|e| JournalError::Codec(format!("entry {at}: {e}")))?;
                self.last_start = Some(self.recorded[at].started_at);
                self.next = at as u32 + 1;
                Ok(Some(outcome))
            }
            Some(at) => Err(JournalError::Divergence {
                index: at as u32,
                recorded: format!("run {:?}", self.recorded[at].name),
                actual: format!("run {name:?}"),
            }),
            None => {
                self.open_step = Some(name.to_string());
                Ok(None)
            }
        }
    }

    /// `run.end`: records the outcome of the open step.
    pub async fn step_end(
        &mut self,
        name: &str,
        outcome: Result<Vec<u8>, String>,
    ) -> Result<(), JournalError> {
        match self.open_step.take() {
            Some(open) if open == name => {}
            other => {
                return Err(JournalError::Misuse(format!(
                    "run.end({name:?}) without a matching run.begin (open step: {other:?})"
                )));
            }
        }
        self.record(EntryKind::Run, name, &(), |_| async move {
            Ok(Effect::value(outcome))
        })
        .await
        .map(|_: Result<Vec<u8>, String>| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SqliteStorage;

    pub(super) async fn storage() -> (tempfile::TempDir, Arc<dyn Storage>) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("j.db").display());
        let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::open(&url).await.unwrap());
        (dir, storage)
    }

    /// A cursor over invocation "inv" of service "S", key "k", replaying `recorded`.
    pub(super) fn journal(storage: &Arc<dyn Storage>, recorded: Vec<Entry>) -> Journal {
        Journal::new(
            "inv".into(),
            "S".into(),
            "k".into(),
            storage.clone(),
            recorded,
            None,
        )
    }

    #[tokio::test]
    async fn entries_are_durable_before_an_external_effect_runs() {
        let (_dir, storage) = storage().await;
        let mut journal = journal(&storage, vec![]);
        let op = StateOp::Set {
            name: "order".into(),
            value: b"1".to_vec(),
        };
        journal
            .record(EntryKind::State, "set", &("order",), |_| async move {
                Ok(Effect::with_state((), op))
            })
            .await
            .unwrap();
        // Not an external effect: nothing committed yet.
        assert_eq!(storage.journal("inv").await.unwrap().len(), 0);
        let seen = storage.clone();
        let (entries, state) = journal
            .record(
                EntryKind::Call,
                "payments.create-charge",
                &(),
                |_| async move {
                    let entries = seen.journal("inv").await?.len();
                    let state = seen.state_get("S", "k", "order").await?;
                    Ok(Effect::value((entries, state)))
                },
            )
            .await
            .unwrap();
        assert_eq!(
            entries, 1,
            "the state write was committed before the call ran"
        );
        assert_eq!(
            state.as_deref(),
            Some(&b"1"[..]),
            "with its state, atomically"
        );
        // The call's own entry is committed at the next flush.
        journal.flush().await.unwrap();
        assert_eq!(storage.journal("inv").await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_started_marker_is_committed_with_the_entries_before_the_call() {
        let (_dir, storage) = storage().await;
        let mut journal = journal(&storage, vec![]);
        journal
            .record(EntryKind::Run, "prepare", &(), |_| async {
                Ok(Effect::value(()))
            })
            .await
            .unwrap();
        journal.mark_next_call();
        let seen = storage.clone();
        let (marked, entries, again) = journal
            .record(
                EntryKind::Call,
                "email.send-email",
                &(),
                |live| async move {
                    let entries = seen.journal("inv").await?.len();
                    // Marking the same call again finds the marker the flush wrote.
                    let marker = CallMarker {
                        index: live.index,
                        name: "email.send-email".into(),
                        idempotency_key: live.idempotency_key,
                    };
                    let again = seen.mark_call_started("inv", marker).await?;
                    Ok(Effect::value((live.marked, entries, again)))
                },
            )
            .await
            .unwrap();
        assert_eq!(marked, Some(false), "a new marker, written before the call");
        assert_eq!(entries, 1, "in the same commit as the entry before it");
        assert!(again, "the marker is durable");
        // The next call is not marked unless asked.
        let marked = journal
            .record(
                EntryKind::Call,
                "payments.create-charge",
                &(),
                |live| async move { Ok(Effect::value(live.marked)) },
            )
            .await
            .unwrap();
        assert_eq!(marked, None);
    }

    #[tokio::test]
    async fn an_attempt_reads_its_own_uncommitted_state_writes() {
        let (_dir, storage) = storage().await;
        let mut journal = journal(&storage, vec![]);
        assert_eq!(journal.pending_state("order"), None);
        for op in [
            StateOp::Set {
                name: "order".into(),
                value: b"1".to_vec(),
            },
            StateOp::Set {
                name: "other".into(),
                value: b"2".to_vec(),
            },
        ] {
            journal
                .record(EntryKind::State, "set", &(), |_| async move {
                    Ok(Effect::with_state((), op))
                })
                .await
                .unwrap();
        }
        assert_eq!(journal.pending_state("order"), Some(Some(b"1".to_vec())));
        assert!(journal.has_pending_state());
        let clear = StateOp::Clear {
            name: "order".into(),
        };
        journal
            .record(EntryKind::State, "clear", &(), |_| async move {
                Ok(Effect::with_state((), clear))
            })
            .await
            .unwrap();
        assert_eq!(journal.pending_state("order"), Some(None));
        assert_eq!(journal.pending_state("other"), Some(Some(b"2".to_vec())));
    }

    #[tokio::test]
    async fn replay_answers_from_the_record_and_detects_divergence() {
        let (_dir, storage) = storage().await;
        let mut live = journal(&storage, vec![]);
        let first: u32 = live
            .record(EntryKind::Http, "GET", &"https://a", |_| async {
                Ok(Effect::value(7u32))
            })
            .await
            .unwrap();
        live.flush().await.unwrap();
        let recorded = storage.journal("inv").await.unwrap();

        let mut replay = journal(&storage, recorded.clone());
        let again: u32 = replay
            .record(EntryKind::Http, "GET", &"https://a", |_| async {
                panic!("replay must not perform the effect")
            })
            .await
            .unwrap();
        assert_eq!(again, first);

        let mut changed = journal(&storage, recorded);
        let err = changed
            .record(EntryKind::Http, "GET", &"https://b", |_| async {
                Ok(Effect::value(0u32))
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err, JournalError::Divergence { index: 0, .. }),
            "{err}"
        );
    }
}
