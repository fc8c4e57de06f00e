//! Durable storage: invocations, their journals, per-key state and deployments.
//!
//! One [`Storage`] trait, two implementations: SQLite, the embedded default, and PostgreSQL
//! (a `postgres://` database URL). Every method that writes returns only once the write is
//! durable (SQLite WAL with `synchronous=FULL`; PostgreSQL's commit).

/// The invocation columns each implementation's row mapper reads.
macro_rules! invocation_columns {
    () => {
        "id, service, handler, object_key, status, input, output, failure, deployment_id, \
         providers, attempt, attempt_base, idempotency_key, created_at, updated_at, completed_at, \
         not_before, cancelled_at, trace_parent"
    };
}

/// The journal entry columns each implementation's row mapper reads.
macro_rules! entry_columns {
    () => {
        "idx, kind, name, args_digest, result, detail, started_at, duration_us, soft"
    };
}

mod invocation;
mod postgres;
mod sqlite;
mod state_edit;
#[cfg(test)]
mod tests;

pub use invocation::{
    Changed, Created, FailureKind, FailureRecord, Invocation, InvocationStatus, NewInvocation,
    Outcome, StatusChange,
};
pub use postgres::{PgStorage, ScratchDatabase};
pub use sqlite::SqliteStorage;
pub use state_edit::{StateAudit, StateEdit, StateEdited};

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::journal::Entry;

/// A storage failure. A busy or unreachable database is retryable; everything else is terminal.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database busy: {0}")]
    Busy(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migration(String),
    /// Another host took over the invocation (its lease expired): this host must stop writing
    /// for it.
    #[error("fenced: {0}")]
    Fenced(String),
}

impl StorageError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StorageError::Busy(_) | StorageError::Unavailable(_))
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) => {
                let msg = db.message().to_ascii_lowercase();
                let code = db.code().unwrap_or_default();
                // PostgreSQL: a connection exception or the server shutting down (classes 08,
                // 57P); serialization failure, deadlock, lock not available.
                if code.starts_with("08") || code.starts_with("57P") {
                    return StorageError::Unavailable(db.message().to_string());
                }
                let conflict = matches!(code.as_ref(), "40001" | "40P01" | "55P03");
                if conflict || msg.contains("locked") || msg.contains("busy") {
                    return StorageError::Busy(db.message().to_string());
                }
                StorageError::Database(e.to_string())
            }
            sqlx::Error::PoolTimedOut => StorageError::Busy(e.to_string()),
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolClosed => {
                StorageError::Unavailable(e.to_string())
            }
            _ => StorageError::Database(e.to_string()),
        }
    }
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
        match e.sqlite_error_code() {
            Some(DatabaseBusy | DatabaseLocked) => StorageError::Busy(e.to_string()),
            _ => StorageError::Database(e.to_string()),
        }
    }
}

pub type StorageResult<T> = Result<T, StorageError>;

/// A JSON text column, parsed.
fn json_column<T: serde::de::DeserializeOwned>(name: &str, text: &str) -> StorageResult<T> {
    serde_json::from_str(text).map_err(|e| StorageError::Corrupt(format!("{name} column: {e}")))
}

/// How a durable promise was completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromiseOutcome {
    Resolved(Vec<u8>),
    Rejected(String),
}

impl PromiseOutcome {
    /// The row's `status` and `value`.
    fn columns(&self) -> (&'static str, &[u8]) {
        match self {
            PromiseOutcome::Resolved(value) => ("resolved", value),
            PromiseOutcome::Rejected(reason) => ("rejected", reason.as_bytes()),
        }
    }

    /// From a row's `status` and `value`; `None` while pending.
    fn from_columns(status: &str, value: Option<Vec<u8>>) -> StorageResult<Option<Self>> {
        match status {
            "pending" => Ok(None),
            "resolved" => Ok(Some(PromiseOutcome::Resolved(value.unwrap_or_default()))),
            "rejected" => Ok(Some(PromiseOutcome::Rejected(
                String::from_utf8_lossy(&value.unwrap_or_default()).into_owned(),
            ))),
            other => Err(StorageError::Corrupt(format!(
                "unknown promise status {other:?}"
            ))),
        }
    }
}

/// Result of [`Storage::complete_promise`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromiseCompletion {
    Completed,
    NotFound,
    /// Completed before: the first completion, which stands.
    AlreadyCompleted(PromiseOutcome),
}

/// A state mutation, committed atomically with the journal entry that records it.
#[derive(Debug, Clone)]
pub enum StateOp {
    Set { name: String, value: Vec<u8> },
    Clear { name: String },
    ClearAll,
}

/// A provider call about to start, for providers whose API does not deduplicate on the
/// idempotency key: finding the marker after a crash means the call is in doubt.
#[derive(Debug, Clone)]
pub struct CallMarker {
    /// The journal entry the call will be.
    pub index: u32,
    /// `role.function`.
    pub name: String,
    pub idempotency_key: String,
}

/// The state a mutation applies to.
#[derive(Debug, Clone)]
pub struct StateScope<'a> {
    pub service: &'a str,
    pub key: &'a str,
}

/// A scan, a page at a time, over the invocations an earlier process left running. It covers the
/// rows that existed when it began: invocations created since (by this process, which runs them
/// itself) are not part of it.
#[derive(Debug, Clone, Default)]
pub struct UnfinishedScan {
    /// Position of the last row returned (storage-specific, increasing with creation).
    pub(crate) after: i64,
    /// The last row that existed when the scan began; `None` before the first page.
    pub(crate) until: Option<i64>,
}

/// Filters for listing invocations.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InvocationFilter {
    pub status: Option<String>,
    pub service: Option<String>,
    pub key: Option<String>,
    /// Created at or after this time (Unix ms).
    pub since: Option<i64>,
    /// Created before this time (Unix ms).
    pub until: Option<i64>,
    pub limit: Option<u32>,
}

/// A stored component.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRecord {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub size: i64,
    pub describe: Option<serde_json::Value>,
    #[serde(skip)]
    pub component: Vec<u8>,
    pub created_at: i64,
    /// JSON sandbox limits set at deployment (`None`: the host defaults).
    pub limits: Option<serde_json::Value>,
    /// A provider's own settings (config, allow-list, secret names); `None`: its role's.
    pub provider_settings: Option<serde_json::Value>,
    /// When it was last made active (deployed, or deployed again).
    pub activated_at: i64,
}

impl DeploymentRecord {
    /// The `describe`, `limits` and `provider_settings` columns, as JSON text.
    fn json_columns(&self) -> [Option<String>; 3] {
        let text = |v: &Option<serde_json::Value>| v.as_ref().map(serde_json::Value::to_string);
        [
            text(&self.describe),
            text(&self.limits),
            text(&self.provider_settings),
        ]
    }
}

/// What another host changed in the row of an invocation this host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangedElsewhere {
    /// Still running, and an operator asked to cancel it.
    Cancelled,
    /// Not running any more (stopped, ended elsewhere, or purged).
    NotRunning,
}

impl ChangedElsewhere {
    /// What a row (`None`: gone) says of an invocation this host runs.
    pub fn of(row: Option<(InvocationStatus, bool)>) -> Option<ChangedElsewhere> {
        match row {
            Some((InvocationStatus::Running, false)) => None,
            Some((InvocationStatus::Running, true)) => Some(ChangedElsewhere::Cancelled),
            Some(_) | None => Some(ChangedElsewhere::NotRunning),
        }
    }
}

/// What another host did that this one may be waiting for (see [`Storage::notices`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Invocation `id` ended.
    Ended(String),
    /// Promise `id` was resolved or rejected.
    Resolved(String),
    /// An operator changed invocation `id` (cancel, kill, pause, resume, purge).
    Changed(String),
}

/// Called by [`Storage::complete_ordered`] once later writes are ordered after the completion.
pub type Ordered = Box<dyn FnOnce() + Send>;

#[async_trait]
pub trait Storage: Send + Sync + 'static {
    async fn create_invocation(&self, inv: &NewInvocation) -> StorageResult<Created>;
    async fn invocation(&self, id: &str) -> StorageResult<Option<Invocation>>;
    /// Of invocations `ids`, run by this process, those whose rows were changed through
    /// another host (cancelled, or not running any more); the rest are left out. One look for
    /// all of them: a host runs many.
    async fn changed_elsewhere(
        &self,
        ids: &[String],
    ) -> StorageResult<Vec<(String, ChangedElsewhere)>> {
        let mut changed = Vec::new();
        for id in ids {
            let row = self.invocation(id).await?;
            let row = row.map(|inv| (inv.status, inv.cancelled_at.is_some()));
            if let Some(change) = ChangedElsewhere::of(row) {
                changed.push((id.clone(), change));
            }
        }
        Ok(changed)
    }
    async fn list_invocations(&self, filter: &InvocationFilter) -> StorageResult<Vec<Invocation>>;
    /// The next page (at most `limit`) of `scan`, in creation order; empty once it is over. On a
    /// storage one host owns, each comes with its journal ([`Invocation::known_journal`]); on a
    /// shared one ([`Storage::shared`]) the journal is read once the invocation is claimed.
    async fn unfinished_invocations(
        &self,
        scan: &mut UnfinishedScan,
        limit: u32,
    ) -> StorageResult<Vec<Invocation>>;
    async fn set_attempt(&self, id: &str, attempt: u32) -> StorageResult<()>;
    /// Applies an operator's `change` to invocation `id` if its status allows it (not fenced:
    /// the operator overrides the host that runs it, whose later outcome is then not stored).
    async fn change_status(&self, id: &str, change: &StatusChange) -> StorageResult<Changed>;
    /// Ends the invocation, appending its last journal entries in the same transaction. One
    /// that ended meanwhile (killed by an operator) keeps how it ended.
    async fn complete(
        &self,
        id: &str,
        outcome: &Outcome,
        scope: StateScope<'_>,
        entries: Vec<(Entry, Option<StateOp>)>,
    ) -> StorageResult<()>;

    /// As [`Storage::complete`], calling `ordered` as soon as every write asked for after it is
    /// sure to be committed after it (or with it), which may be before it is durable: SQLite's
    /// one writer commits in the order of its queue. By default, once it is committed.
    async fn complete_ordered(
        &self,
        id: &str,
        outcome: &Outcome,
        scope: StateScope<'_>,
        entries: Vec<(Entry, Option<StateOp>)>,
        ordered: Ordered,
    ) -> StorageResult<()> {
        let done = self.complete(id, outcome, scope, entries).await;
        ordered();
        done
    }

    async fn journal(&self, id: &str) -> StorageResult<Vec<Entry>>;
    /// Appends journal entries, each with the state mutation it records, in one transaction.
    async fn append_batch(
        &self,
        id: &str,
        scope: StateScope<'_>,
        entries: Vec<(Entry, Option<StateOp>)>,
    ) -> StorageResult<()>;

    /// Appends one entry (see [`Storage::append_batch`]).
    async fn append(
        &self,
        id: &str,
        entry: &Entry,
        state: Option<(StateScope<'_>, &StateOp)>,
    ) -> StorageResult<()> {
        let scope = state.as_ref().map_or(
            StateScope {
                service: "",
                key: "",
            },
            |(s, _)| s.clone(),
        );
        let op = state.map(|(_, op)| op.clone());
        self.append_batch(id, scope, vec![(entry.clone(), op)])
            .await
    }

    /// Appends `entries` (see [`Storage::append_batch`]) and, in the same transaction, records
    /// that provider call `marker.index` is starting. Returns `true` when a marker was already
    /// there: an earlier attempt started this call and never recorded its result.
    async fn append_and_mark(
        &self,
        id: &str,
        scope: StateScope<'_>,
        entries: Vec<(Entry, Option<StateOp>)>,
        marker: CallMarker,
    ) -> StorageResult<bool>;

    /// Records, durably, that a provider call is starting (see [`Storage::append_and_mark`]).
    async fn mark_call_started(&self, id: &str, marker: CallMarker) -> StorageResult<bool> {
        let scope = StateScope {
            service: "",
            key: "",
        };
        self.append_and_mark(id, scope, Vec::new(), marker).await
    }

    /// When (Unix ms) the marker of entry `index` of invocation `id` was written, if it was: the
    /// earliest time the call it marks can have started.
    async fn call_marked_at(&self, id: &str, index: u32) -> StorageResult<Option<i64>>;

    /// Removes the entries from `from_index` on (a soft failure closing a failed attempt).
    async fn truncate_journal(&self, id: &str, from_index: u32) -> StorageResult<()>;

    /// Creates pending promise `id` for invocation `invocation_id`.
    async fn create_promise(&self, id: &str, invocation_id: &str) -> StorageResult<()>;
    /// `None`: no such promise; `Some(None)`: pending; `Some(Some(outcome))`: completed.
    async fn promise(&self, id: &str) -> StorageResult<Option<Option<PromiseOutcome>>>;
    /// Completes promise `id` unless it is completed already.
    async fn complete_promise(
        &self,
        id: &str,
        outcome: &PromiseOutcome,
    ) -> StorageResult<PromiseCompletion>;

    async fn state_get(
        &self,
        service: &str,
        key: &str,
        name: &str,
    ) -> StorageResult<Option<Vec<u8>>>;
    async fn state_keys(&self, service: &str, key: &str) -> StorageResult<Vec<String>>;
    /// The first `limit` state entries (name, value) of object `key` of `service`, by name.
    async fn state_entries(
        &self,
        service: &str,
        key: &str,
        limit: u32,
    ) -> StorageResult<Vec<(String, Vec<u8>)>>;
    /// An operator's edit of one state entry with its audit record, in one transaction;
    /// [`StateEdited::Busy`] (nothing written) while an unfinished invocation of the key exists.
    async fn edit_state(&self, edit: &StateEdit) -> StorageResult<StateEdited>;
    /// The newest `limit` audit records of object `key` of `service`, newest first.
    async fn state_audit(
        &self,
        service: &str,
        key: &str,
        limit: u32,
    ) -> StorageResult<Vec<StateAudit>>;

    /// The deployments made or activated again after `since` (Unix ms, by the activating
    /// host's clock), least recently activated first: what another host sharing the database
    /// did since this one last looked.
    async fn deployments_activated_since(
        &self,
        since: i64,
    ) -> StorageResult<Vec<DeploymentRecord>> {
        let mut all = self.deployments().await?;
        all.retain(|d| d.activated_at > since);
        Ok(all)
    }

    async fn put_deployment(&self, d: &DeploymentRecord) -> StorageResult<()>;
    /// Stored deployments, the least recently activated first.
    async fn deployments(&self) -> StorageResult<Vec<DeploymentRecord>>;
    /// Records that deployment `id` was made active at `at` (and, with `limits` or
    /// `provider_settings`, replaces those).
    async fn activate_deployment(
        &self,
        id: &str,
        limits: Option<&serde_json::Value>,
        provider_settings: Option<&serde_json::Value>,
        at: i64,
    ) -> StorageResult<()>;
    /// Deletes a stored deployment; `false` when there was none.
    async fn delete_deployment(&self, id: &str) -> StorageResult<bool>;
    /// Ids of running and paused invocations (at most `limit`) pinned to deployment `id`, as
    /// their service or as one of their providers.
    async fn running_invocations_pinned_to(
        &self,
        id: &str,
        limit: u32,
    ) -> StorageResult<Vec<String>>;
    async fn count_rows(&self, table: Table) -> StorageResult<i64>;
    /// Deletes idempotency keys expired at `now`, then up to `limit` invocations finished
    /// before `finished_before` (Unix ms) that no key names, with their journals, call markers
    /// and promises.
    async fn purge(&self, now: i64, finished_before: i64, limit: u32) -> StorageResult<Purged>;
    /// The host secret `name`: `fresh` the first time it is asked for, the stored one after
    /// (the same for every host on this database).
    async fn host_secret(&self, name: &str, fresh: Vec<u8>) -> StorageResult<Vec<u8>>;

    /// Whether several hosts share this storage. Then a host claims an invocation before it runs
    /// it ([`Storage::claim`]) and looks for the unfinished invocations of hosts that died all
    /// the time, not only at start.
    fn shared(&self) -> bool {
        false
    }

    /// On a shared storage, what the other hosts did that this one may wait for, as it
    /// happens; `None` where there are no other hosts.
    fn notices(&self) -> Option<tokio::sync::broadcast::Receiver<Notice>> {
        None
    }

    /// The latency and size of its journal commits (registered as metrics by the runtime).
    fn flush_stats(&self) -> crate::metrics::FlushStats;

    /// Claims `lease` (`inv:<id>`, or `key:<service>/<key>` for an exclusive turn) for invocation
    /// `id` until [`Storage::release`]: from then on every write for `id` is fenced by it.
    /// `false` while another live host holds it, or this process holds it for `id` already. A
    /// host holds `inv:<id>` of the invocations it creates from their creation.
    async fn claim(&self, id: &str, lease: &str) -> StorageResult<bool> {
        let _ = (id, lease);
        Ok(true)
    }

    /// Gives back every lease held for invocation `id`.
    async fn release(&self, id: &str) -> StorageResult<()> {
        let _ = id;
        Ok(())
    }
}

/// How a host uses its storage.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// This host's id, stable across its restarts (so a restarted host takes its own leases
    /// back at once): see [`crate::config::host_id`].
    pub host_id: String,
    /// How long a lease lasts without a heartbeat: a host that died is taken over after this.
    pub lease_ttl: std::time::Duration,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            host_id: uuid::Uuid::new_v4().to_string(),
            lease_ttl: std::time::Duration::from_secs(5),
        }
    }
}

/// What one [`Storage::purge`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub keys: u64,
    pub invocations: u64,
}

/// How long an idempotency key made before keys had an expiry lives (the longest retention).
pub(crate) const LEGACY_KEY_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;

/// Tables whose size tests and operators look at.
#[derive(Debug, Clone, Copy)]
pub enum Table {
    Invocations,
    Journal,
    State,
    /// Ingress idempotency keys and webhook event ids (each with the invocation it made).
    IdempotencyKeys,
}

/// Opens the storage named by `database_url`: `sqlite:PATH` or `postgres://...`.
pub async fn open(
    database_url: &str,
    options: &StorageOptions,
) -> anyhow::Result<Arc<dyn Storage>> {
    if database_url.starts_with("sqlite:") {
        return Ok(Arc::new(SqliteStorage::open(database_url).await?));
    }
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        return Ok(Arc::new(PgStorage::open(database_url, options).await?));
    }
    anyhow::bail!(
        "unsupported database URL {database_url:?}: use sqlite:PATH or postgres://USER@HOST/DATABASE"
    )
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
