//! Invocations as stored: their status, how they failed, the row to create and the row read,
//! how one ended, and the status changes an operator makes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{StorageError, StorageResult};
use crate::journal::Entry;

/// Lifecycle of an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvocationStatus {
    Running,
    /// Kept, not failed: its retries ran out under a policy that pauses, or the operator paused
    /// it; it runs again when resumed (`failure` says why it stopped).
    Paused,
    Succeeded,
    Failed,
}

impl InvocationStatus {
    pub const ALL: [InvocationStatus; 4] = [
        InvocationStatus::Running,
        InvocationStatus::Paused,
        InvocationStatus::Succeeded,
        InvocationStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InvocationStatus::Running => "running",
            InvocationStatus::Paused => "paused",
            InvocationStatus::Succeeded => "succeeded",
            InvocationStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// Ended for good (succeeded or failed): nothing runs it again.
    pub fn is_finished(self) -> bool {
        matches!(self, InvocationStatus::Succeeded | InvocationStatus::Failed)
    }
}

/// What kind of failure ended (or paused) an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The guest's terminal failure (a declined card, bad input): never retried.
    Terminal,
    /// A retryable failure, final once the attempts ran out.
    Retryable,
    /// The component no longer matches its journal.
    Diverged,
    /// Stopped by the operator (`kill`), without compensation.
    Killed,
    /// Cancelled by the operator: the handler was told and ended with a terminal failure
    /// (after compensating, as it chose).
    Cancelled,
    /// Paused: by its retry policy once the attempts ran out, or by the operator.
    Paused,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Terminal => "terminal",
            FailureKind::Retryable => "retryable",
            FailureKind::Diverged => "diverged",
            FailureKind::Killed => "killed",
            FailureKind::Cancelled => "cancelled",
            FailureKind::Paused => "paused",
        }
    }
}

/// Why an invocation ended without output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    pub kind: FailureKind,
    pub code: u16,
    pub message: String,
    /// For `diverged`: which entry, what was recorded, what the guest asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divergence: Option<serde_json::Value>,
}

impl FailureRecord {
    pub fn new(kind: FailureKind, code: u16, message: impl Into<String>) -> Self {
        FailureRecord {
            kind,
            code,
            message: message.into(),
            divergence: None,
        }
    }
}

/// An invocation to create.
#[derive(Debug, Clone)]
pub struct NewInvocation {
    pub id: String,
    pub service: String,
    pub handler: String,
    pub key: Option<String>,
    pub input: Vec<u8>,
    pub deployment_id: String,
    /// Interface → deployment id, pinned for the invocation's whole life.
    pub providers: BTreeMap<String, String>,
    /// With a key: (the key, how long it is remembered in ms). The same key for the same target
    /// within that time returns the existing invocation instead of creating one.
    pub idempotency: Option<(String, i64)>,
    /// A delayed send: not started before this time (Unix ms).
    pub not_before: Option<i64>,
    /// The W3C `traceparent` of what created it, when spans are exported.
    pub trace_parent: Option<String>,
}

impl NewInvocation {
    /// What an ingress idempotency key is scoped to.
    pub fn target(&self) -> String {
        format!(
            "{}/{}/{}",
            self.service,
            self.key.as_deref().unwrap_or(""),
            self.handler
        )
    }
}

/// Result of [`Storage::create_invocation`].
#[derive(Debug, Clone)]
pub enum Created {
    New(Invocation),
    /// The idempotency key was already used for this target: the invocation it created.
    Existing(Invocation),
}

/// A stored invocation.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Invocation {
    pub id: String,
    pub service: String,
    pub handler: String,
    pub key: Option<String>,
    pub status: InvocationStatus,
    #[serde(skip)]
    pub input: Vec<u8>,
    #[serde(skip)]
    pub output: Option<Vec<u8>>,
    pub failure: Option<FailureRecord>,
    pub deployment_id: String,
    pub providers: BTreeMap<String, String>,
    pub attempt: u32,
    /// Attempts made before it was last resumed: its retry policy counts from there.
    #[serde(skip)]
    pub attempt_base: u32,
    /// When the operator cancelled it (Unix ms): the handler is told at its next suspension
    /// point or check, and may compensate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<i64>,
    pub idempotency_key: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub completed_at: Option<i64>,
    /// A delayed send: not started before this time (Unix ms).
    pub not_before: Option<i64>,
    /// The W3C `traceparent` of what created it (an ingress request, a webhook, a caller's
    /// journal entry): every attempt is exported in that trace, after a restart too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_parent: Option<String>,
    /// Its journal as already known (empty for an invocation this process just created, read
    /// with the row when resuming after a restart): the first attempt uses it instead of
    /// reading it. `None`: read it.
    #[serde(skip)]
    pub known_journal: Option<Vec<Entry>>,
}

impl Invocation {
    /// How it ended; `None` while it runs.
    pub fn outcome(&self) -> Option<Outcome> {
        match (self.status, &self.output, &self.failure) {
            (InvocationStatus::Succeeded, output, _) => {
                Some(Outcome::Succeeded(output.clone().unwrap_or_default()))
            }
            (InvocationStatus::Failed, _, Some(failure)) => Some(Outcome::Failed(failure.clone())),
            _ => None,
        }
    }

    /// The row [`Storage::create_invocation`] stores for `new` at `at` (ms), without reading it
    /// back.
    pub fn created(new: &NewInvocation, at: i64) -> Invocation {
        Invocation {
            id: new.id.clone(),
            service: new.service.clone(),
            handler: new.handler.clone(),
            key: new.key.clone(),
            status: InvocationStatus::Running,
            input: new.input.clone(),
            output: None,
            failure: None,
            deployment_id: new.deployment_id.clone(),
            providers: new.providers.clone(),
            attempt: 1,
            attempt_base: 0,
            cancelled_at: None,
            idempotency_key: new.idempotency.as_ref().map(|(key, _)| key.clone()),
            created_at: at,
            updated_at: at,
            completed_at: None,
            not_before: new.not_before,
            trace_parent: new.trace_parent.clone(),
            known_journal: Some(Vec::new()),
        }
    }
}

/// An operator's change of an invocation's status, applied only from the statuses it names.
#[derive(Debug, Clone)]
pub enum StatusChange {
    /// Running or paused → failed with this failure (kind `killed`); its journal stays.
    Kill(FailureRecord),
    /// Running → paused, with why.
    Pause(FailureRecord),
    /// Paused → running: a new attempt (its retry policy counting from it), on `deployment`
    /// when given (another deployment of the same service).
    Resume { deployment: Option<String> },
    /// Running or paused → its cancellation recorded (a paused one running again, as by
    /// `Resume`), for the handler to be told.
    Cancel,
    /// Succeeded or failed → gone: the row, its journal, call markers, promises and the
    /// idempotency keys that name it.
    Purge,
}

impl StatusChange {
    /// The statuses it applies to.
    pub fn applies_to(&self, status: InvocationStatus) -> bool {
        match self {
            StatusChange::Kill(_) | StatusChange::Cancel => !status.is_finished(),
            StatusChange::Pause(_) => status == InvocationStatus::Running,
            StatusChange::Resume { .. } => status == InvocationStatus::Paused,
            StatusChange::Purge => status.is_finished(),
        }
    }
}

/// What [`Storage::change_status`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    Applied,
    NotFound,
    /// The invocation's status, to which the change does not apply.
    Refused(InvocationStatus),
}

/// How an invocation ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Succeeded(Vec<u8>),
    Failed(FailureRecord),
}

/// An invocation row's `status`, `output` and `failure` (JSON text).
type OutcomeColumns<'a> = (&'static str, Option<&'a [u8]>, Option<String>);

impl Outcome {
    /// The status it ends an invocation with.
    pub fn status(&self) -> InvocationStatus {
        match self {
            Outcome::Succeeded(_) => InvocationStatus::Succeeded,
            Outcome::Failed(_) => InvocationStatus::Failed,
        }
    }

    /// The invocation row's columns for this outcome.
    pub(super) fn columns(&self) -> StorageResult<OutcomeColumns<'_>> {
        Ok(match self {
            Outcome::Succeeded(out) => ("succeeded", Some(out.as_slice()), None),
            Outcome::Failed(f) => (
                "failed",
                None,
                Some(serde_json::to_string(f).map_err(|e| StorageError::Corrupt(e.to_string()))?),
            ),
        })
    }
}
