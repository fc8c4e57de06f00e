//! A live journal entry: what its call gets to know, what it returns, its span, and how it
//! is recorded (and, in tests, a crash stood in for at a chosen entry).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::trace::SpanBuilder;
use serde::Serialize;

use super::{Journal, MAX_RESULT_BYTES};
use crate::journal::{Entry, EntryKind, JournalError, preview_json};
use crate::storage::{StateOp, now_ms};
use crate::telemetry::ChildSpan;

/// What a live call gets to know about the entry it will become.
#[derive(Debug, Clone)]
pub struct Live {
    pub index: u32,
    /// Stable across re-executions of this call: `{invocation id}-{index}`.
    pub idempotency_key: String,
    /// With [`Journal::mark_next_call`]: the started marker was committed with the entries before
    /// this call; `true` when it was already there (an earlier attempt started this call).
    pub marked: Option<bool>,
    /// Unix ms: the earliest time this call can have started in any attempt (the start of the
    /// entry before it, which was durable before the call began); `None` for the first entry.
    pub earliest_start_ms: Option<i64>,
}

/// The result of a live call: the value returned to the guest and what is stored with it.
pub struct Effect<R> {
    pub value: R,
    /// Extra JSON text stored with the entry (e.g. a provider's HTTP exchanges).
    pub detail: Option<String>,
    /// A state mutation committed in the same transaction as the entry.
    pub state: Option<StateOp>,
    /// A retryable failure of the effect (provider unavailable, rate limited). When it is the
    /// last entry of an attempt, the next attempt performs the call again instead of replaying
    /// the failure (see [`Entry::soft`]).
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

impl Journal {
    /// The live half of [`Journal::record`]: the call `live` runs in a span of its own, once
    /// what it may depend on is durable, and becomes a pending entry.
    pub(super) async fn record_live<R, F, Fut>(
        &mut self,
        kind: EntryKind,
        name: &str,
        args_json: &[u8],
        args_digest: String,
        mark: bool,
        live: F,
    ) -> Result<R, JournalError>
    where
        R: Serialize,
        F: FnOnce(Live) -> Fut,
        Fut: Future<Output = Result<Effect<R>, JournalError>>,
    {
        // Everything recorded so far is durable before this call can affect the outside world.
        let mut marked = None;
        if mark {
            marked = Some(self.flush_marking(name).await?);
        } else if kind.is_external() {
            self.flush().await?;
        }
        let index = self.next;
        let started_at = now_ms();
        let clock = Instant::now();
        let earliest_start_ms = self.last_start;
        let span = ChildSpan::under(self.trace.clone(), || {
            SpanBuilder::from_name(format!("{} {name}", kind.as_str())).with_attributes([
                KeyValue::new("kind", kind.as_str()),
                KeyValue::new("name", name.to_string()),
                KeyValue::new("index", index as i64),
            ])
        });
        let effect = span
            .run(live(Live {
                index,
                idempotency_key: self.idempotency_key(index),
                marked,
                earliest_start_ms,
            }))
            .await;
        drop(span);
        let effect = effect?;
        if let Some(point) = &self.fail_point
            && point.fires_at(index, true)
        {
            return Err(JournalError::Effect(format!(
                "fail point before recording entry {index}"
            )));
        }
        let result =
            serde_json::to_vec(&effect.value).map_err(|e| JournalError::Codec(e.to_string()))?;
        // What the host keeps for the guest is bounded (invariant 8).
        if result.len() > MAX_RESULT_BYTES {
            return Err(JournalError::Misuse(format!(
                "{} {name:?}: a result of {} bytes (encoded) is more than the {MAX_RESULT_BYTES} \
                 a journal entry holds",
                kind.as_str(),
                result.len()
            )));
        }
        let mut detail = format!(r#"{{"args":{}"#, preview_json(args_json));
        if let Some(extra) = effect.detail {
            detail.push_str(r#","effect":"#);
            detail.push_str(&extra);
        }
        detail.push('}');
        let entry = Entry {
            index,
            kind,
            name: name.to_string(),
            args_digest,
            result,
            detail: Some(detail),
            started_at,
            duration_us: clock.elapsed().as_micros() as i64,
            soft: effect.soft,
        };
        self.pending.push((entry, effect.state));
        self.last_start = Some(started_at);
        self.next += 1;
        if let Some(point) = &self.fail_point
            && point.fires_at(index, false)
        {
            self.flush().await?;
            return Err(JournalError::Effect(format!(
                "fail point after entry {index}"
            )));
        }
        Ok(effect.value)
    }
}
