//! The journal cursor of one invocation attempt: replays recorded entries, then records live ones.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Entry, EntryKind, JournalError, digest, preview};
use crate::storage::{StateOp, StateScope, Storage, now_ms};

/// What a live call gets to know about the entry it will become.
#[derive(Debug, Clone)]
pub struct Live {
    pub index: u32,
    /// Stable across re-executions of this call: `{invocation id}-{index}`.
    pub idempotency_key: String,
}

/// The result of a live call: the value returned to the guest and what is stored with it.
pub struct Effect<R> {
    pub value: R,
    /// Extra JSON stored with the entry (e.g. a provider's HTTP exchanges).
    pub detail: Option<serde_json::Value>,
    /// A state mutation committed in the same transaction as the entry.
    pub state: Option<StateOp>,
    /// A retryable failure of the effect (provider unavailable, rate limited). When it is the
    /// last entry of an attempt, the next attempt performs the call again instead of replaying
    /// the failure (see [`Entry::is_soft`]).
    pub soft: bool,
}

impl<R> Effect<R> {
    pub fn value(value: R) -> Self {
        Effect {
            value,
            detail: None,
            state: None,
            soft: false,
        }
    }

    pub fn with_state(value: R, op: StateOp) -> Self {
        Effect {
            state: Some(op),
            ..Effect::value(value)
        }
    }
}

/// Stops one attempt at entry `entry`, once: a test stand-in for a crash at that point. The
/// next attempt must replay up to it and continue.
#[derive(Debug)]
pub struct FailPoint {
    pub entry: u32,
    /// `false`: right after the entry is durable. `true`: after the live effect happened but
    /// before it is recorded (the call is then in doubt).
    pub before_recording: bool,
    fired: std::sync::atomic::AtomicBool,
}

impl FailPoint {
    pub fn new(after_entry: u32) -> Arc<Self> {
        Self::at(after_entry, false)
    }

    pub fn at(entry: u32, before_recording: bool) -> Arc<Self> {
        Arc::new(FailPoint {
            entry,
            before_recording,
            fired: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn fires_at(&self, index: u32, before_recording: bool) -> bool {
        index == self.entry
            && before_recording == self.before_recording
            && !self.fired.swap(true, std::sync::atomic::Ordering::SeqCst)
    }
}

pub struct Journal {
    invocation_id: Arc<str>,
    service: Arc<str>,
    key: Arc<str>,
    storage: Arc<dyn Storage>,
    recorded: Vec<Entry>,
    next: u32,
    open_step: Option<String>,
    fail_point: Option<Arc<FailPoint>>,
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
        }
    }

    /// True while recorded entries remain to be replayed.
    pub fn replaying(&self) -> bool {
        (self.next as usize) < self.recorded.len()
    }

    /// The one journaling helper. Replaying: verify `(kind, name, digest(args))` against the
    /// recorded entry and return its result, performing nothing. Live: run `live`, append the
    /// entry (with its state mutation, atomically) and return once it is durable.
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
        let args_digest = digest(args)?;
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
            self.next += 1;
            return Ok(value);
        }

        let index = self.next;
        let started_at = now_ms();
        let clock = Instant::now();
        let effect = live(Live {
            index,
            idempotency_key: format!("{}-{}", self.invocation_id, index),
        })
        .await?;
        if let Some(point) = &self.fail_point
            && point.fires_at(index, true)
        {
            return Err(JournalError::Effect(format!(
                "fail point before recording entry {index}"
            )));
        }
        let result =
            serde_json::to_vec(&effect.value).map_err(|e| JournalError::Codec(e.to_string()))?;
        let mut detail = serde_json::json!({ "args": preview(args) });
        if let Some(extra) = effect.detail {
            detail["effect"] = extra;
        }
        if effect.soft {
            detail["soft"] = serde_json::Value::Bool(true);
        }
        let entry = Entry {
            index,
            kind,
            name: name.to_string(),
            args_digest,
            result,
            detail: Some(detail.to_string()),
            started_at,
            duration_us: clock.elapsed().as_micros() as i64,
        };
        let scope = StateScope {
            service: &self.service,
            key: &self.key,
        };
        self.storage
            .append(
                &self.invocation_id,
                &entry,
                effect.state.as_ref().map(|op| (scope, op)),
            )
            .await?;
        self.recorded.push(entry);
        self.next += 1;
        if let Some(point) = &self.fail_point
            && point.fires_at(index, false)
        {
            return Err(JournalError::Effect(format!(
                "fail point after entry {index}"
            )));
        }
        Ok(effect.value)
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
