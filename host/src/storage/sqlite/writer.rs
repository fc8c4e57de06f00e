//! The one SQLite writer: every write of every invocation goes through this thread, which commits
//! whatever has queued up as one transaction (group commit) and answers each caller only after
//! the commit is durable. One failing write (say, a duplicate key) fails alone: the batch is then
//! run again with a savepoint per write.
//!
//! The writer owns a plain `rusqlite` connection on a dedicated OS thread: a batch runs its
//! statements (prepared once, cached) without a thread hop per statement.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::super::{
    CallMarker, Changed, DeploymentRecord, InvocationStatus, LEGACY_KEY_RETENTION_MS,
    NewInvocation, Outcome, PromiseOutcome, Purged, StateEdit, StateEdited, StateOp, StatusChange,
    StorageError, StorageResult, now_ms,
};
use crate::journal::{Entry, EntryKind};
use crate::metrics::FlushStats;

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;

/// Journal entries with the state mutation each records (service, key, op).
pub(super) type OwnedEntries = Vec<(Entry, Option<(String, String, StateOp)>)>;

/// A write, owned so it can cross to the writer thread.
pub(super) enum Write {
    CreateInvocation(NewInvocation),
    SetAttempt {
        id: String,
        attempt: u32,
    },
    /// See [`super::super::Storage::change_status`] (answers `Changed`).
    ChangeStatus {
        id: String,
        change: StatusChange,
    },
    Complete {
        id: String,
        outcome: Outcome,
        entries: OwnedEntries,
    },
    /// Entries and, with `marker`, a provider call about to start (answers `AlreadyMarked`).
    Append {
        id: String,
        entries: OwnedEntries,
        marker: Option<CallMarker>,
    },
    TruncateJournal {
        id: String,
        from_index: u32,
    },
    PutDeployment(DeploymentRecord),
    /// Makes a deployment the last activated of its name; with `limits`, replaces its limits.
    ActivateDeployment {
        id: String,
        limits: Option<String>,
        provider_settings: Option<String>,
        at: i64,
    },
    DeleteDeployment(String),
    CreatePromise {
        id: String,
        invocation_id: String,
    },
    /// Completes a pending promise (answers `Rows(1)`, or `Rows(0)` if none is pending).
    CompletePromise {
        id: String,
        outcome: PromiseOutcome,
    },
    /// Stores host secret `name` unless there is one (answers `Bytes`, the stored value).
    HostSecret {
        name: String,
        fresh: Vec<u8>,
    },
    /// See [`super::super::Storage::edit_state`] (answers `StateEdited`).
    EditState(StateEdit),
    /// See [`super::super::Storage::purge`] (answers `Purged`).
    Purge {
        now: i64,
        finished_before: i64,
        limit: u32,
    },
}

/// What a write returns.
pub(super) enum Written {
    Done,
    /// `CreateInvocation` of a new invocation, created at this time (ms).
    CreatedAt(i64),
    /// `CreateInvocation` with an idempotency key already used: the invocation it maps to.
    ExistingInvocation(String),
    /// `Append` with a marker: whether that marker was already there.
    AlreadyMarked(bool),
    /// Rows a statement changed.
    Rows(u64),
    Purged(Purged),
    Bytes(Vec<u8>),
    Changed(Changed),
    StateEdited(StateEdited),
}

type Reply = oneshot::Sender<StorageResult<Written>>;

#[derive(Clone)]
pub(super) struct Writer {
    queue: mpsc::Sender<(Write, Reply)>,
}

impl Writer {
    /// Opens the writer's own connection to the database at `path` (migrated already) and starts
    /// its thread.
    pub(super) fn spawn(path: &Path, stats: FlushStats) -> StorageResult<Writer> {
        let conn = super::open_connection(path)?;
        let (queue, receiver) = mpsc::channel(4096);
        std::thread::Builder::new()
            .name("cairn-sqlite-writer".into())
            .spawn(move || run(conn, receiver, &stats))
            .map_err(|e| StorageError::Database(format!("cannot start the writer: {e}")))?;
        Ok(Writer { queue })
    }

    /// Queues `write` and waits until the batch holding it is committed.
    pub(super) async fn write(&self, write: Write) -> StorageResult<Written> {
        self.write_then(write, Box::new(|| ())).await
    }

    /// As [`Writer::write`], calling `queued` once the write is in the queue: every write
    /// queued after it is committed after it, or in the same transaction.
    pub(super) async fn write_then(
        &self,
        write: Write,
        queued: crate::storage::Ordered,
    ) -> StorageResult<Written> {
        let (reply, answer) = oneshot::channel();
        let sent = self.queue.send((write, reply)).await;
        queued();
        sent.map_err(|_| StorageError::Database("the database writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StorageError::Database("the database writer has stopped".into()))?
    }
}

/// Under load, how long the writer waits for more writes before it commits.
const GATHER_DELAY: std::time::Duration = std::time::Duration::from_micros(500);
/// The batch size from which the writer counts as under load.
const GATHER_FROM: usize = 4;

/// The writer thread: takes whatever has queued (up to [`MAX_BATCH`]) and commits it at once.
///
/// While batches hold several writes, it first waits [`GATHER_DELAY`] for more (as PostgreSQL's
/// `commit_delay`): every commit costs an fsync and writes each page it changed again, so a
/// bigger batch costs less per write. A lone writer (one invocation at a time) never waits.
fn run(mut conn: Connection, mut receiver: mpsc::Receiver<(Write, Reply)>, stats: &FlushStats) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut last_len = 0;
    while let Some(first) = receiver.blocking_recv() {
        batch.push(first);
        take_queued(&mut receiver, &mut batch);
        if last_len >= GATHER_FROM && batch.len() < MAX_BATCH {
            std::thread::sleep(GATHER_DELAY);
            take_queued(&mut receiver, &mut batch);
        }
        last_len = batch.len();
        let started = std::time::Instant::now();
        let results = commit_batch(&mut conn, &batch);
        stats.observe(started.elapsed(), batch.len());
        stats.queued.set(receiver.len() as i64);
        for ((_, reply), result) in batch.drain(..).zip(results) {
            let _ = reply.send(result);
        }
    }
}

fn take_queued(receiver: &mut mpsc::Receiver<(Write, Reply)>, batch: &mut Vec<(Write, Reply)>) {
    while batch.len() < MAX_BATCH {
        match receiver.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
}

/// Runs every write of `batch` in one transaction; returns one result per write.
///
/// The batch first runs as it is: a savepoint per write would copy every page a write touches
/// into a statement journal, and writes almost never fail. If one does, that transaction is
/// rolled back and the batch runs again with each write in its own savepoint, so the failing write
/// fails alone.
fn commit_batch(conn: &mut Connection, batch: &[(Write, Reply)]) -> Vec<StorageResult<Written>> {
    match run_batch(conn, batch, false) {
        Ok(results) => results,
        Err(Rerun) => run_batch(conn, batch, true).unwrap_or_else(|Rerun| {
            unreachable!("with savepoints, a failing write does not abort the batch")
        }),
    }
}

/// A write failed in a batch run without savepoints: run it again with them.
struct Rerun;

fn run_batch(
    conn: &mut Connection,
    batch: &[(Write, Reply)],
    isolated: bool,
) -> Result<Vec<StorageResult<Written>>, Rerun> {
    let fail_all = |e: StorageError| -> Vec<StorageResult<Written>> {
        let message = e.to_string();
        batch
            .iter()
            .map(|_| Err(StorageError::Database(message.clone())))
            .collect()
    };
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return Ok(fail_all(e.into())),
    };
    let mut results = Vec::with_capacity(batch.len());
    for (write, _) in batch {
        if !isolated {
            match apply(&tx, write) {
                // Dropping `tx` rolls the whole batch back.
                Err(_) => return Err(Rerun),
                ok => results.push(ok),
            }
            continue;
        }
        let savepoint = match tx.savepoint() {
            Ok(savepoint) => savepoint,
            Err(e) => return Ok(fail_all(e.into())),
        };
        let result = apply(&savepoint, write);
        // Dropped without commit, a savepoint rolls back just this write.
        if result.is_ok()
            && let Err(e) = savepoint.commit()
        {
            return Ok(fail_all(e.into()));
        }
        results.push(result);
    }
    Ok(match tx.commit() {
        Ok(()) => results,
        Err(e) => fail_all(e.into()),
    })
}

fn apply(conn: &Connection, write: &Write) -> StorageResult<Written> {
    match write {
        Write::CreateInvocation(inv) => create_invocation(conn, inv),
        Write::SetAttempt { id, attempt } => {
            conn.prepare_cached("UPDATE invocations SET attempt = ?, updated_at = ? WHERE id = ?")?
                .execute(params![i64::from(*attempt), now_ms(), id])?;
            Ok(Written::Done)
        }
        Write::ChangeStatus { id, change } => change_status(conn, id, change),
        Write::Complete {
            id,
            outcome,
            entries,
        } => {
            for (entry, state) in entries {
                append(conn, id, entry, state.as_ref())?;
            }
            complete(conn, id, outcome)
        }
        Write::Append {
            id,
            entries,
            marker,
        } => {
            for (entry, state) in entries {
                append(conn, id, entry, state.as_ref())?;
            }
            match marker {
                Some(marker) => mark_call_started(conn, id, marker),
                None => Ok(Written::Done),
            }
        }
        Write::TruncateJournal { id, from_index } => {
            conn.prepare_cached("DELETE FROM journal WHERE invocation_id = ? AND idx >= ?")?
                .execute(params![id, i64::from(*from_index)])?;
            Ok(Written::Done)
        }
        Write::PutDeployment(d) => put_deployment(conn, d),
        Write::CreatePromise { id, invocation_id } => {
            conn.prepare_cached(
                "INSERT INTO promises (id, invocation_id, status, created_at) \
                 VALUES (?, ?, 'pending', ?)",
            )?
            .execute(params![id, invocation_id, now_ms()])?;
            Ok(Written::Done)
        }
        Write::CompletePromise { id, outcome } => {
            let (status, value) = outcome.columns();
            let rows = conn
                .prepare_cached(
                    "UPDATE promises SET status = ?, value = ?, completed_at = ? \
                     WHERE id = ? AND status = 'pending'",
                )?
                .execute(params![status, value, now_ms(), id])?;
            Ok(Written::Rows(rows as u64))
        }
        Write::ActivateDeployment {
            id,
            limits,
            provider_settings,
            at,
        } => {
            let rows = conn
                .prepare_cached(
                    "UPDATE deployments SET activated_at = ?, limits = COALESCE(?, limits), \
                     provider_settings = COALESCE(?, provider_settings) WHERE id = ?",
                )?
                .execute(params![at, limits, provider_settings, id])?;
            Ok(Written::Rows(rows as u64))
        }
        Write::DeleteDeployment(id) => {
            let rows = conn
                .prepare_cached("DELETE FROM deployments WHERE id = ?")?
                .execute(params![id])?;
            Ok(Written::Rows(rows as u64))
        }
        Write::EditState(edit) => super::state::edit(conn, edit),
        Write::Purge {
            now,
            finished_before,
            limit,
        } => purge(conn, *now, *finished_before, *limit),
        Write::HostSecret { name, fresh } => {
            conn.prepare_cached(
                "INSERT INTO host_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            )?
            .execute(params![name, fresh])?;
            let value = conn
                .prepare_cached("SELECT value FROM host_secrets WHERE name = ?")?
                .query_row(params![name], |row| row.get(0))?;
            Ok(Written::Bytes(value))
        }
    }
}

fn purge(conn: &Connection, now: i64, finished_before: i64, limit: u32) -> StorageResult<Written> {
    let keys = conn
        .prepare_cached(
            "DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM idempotency_keys \
             WHERE expires_at < ?1 OR (expires_at IS NULL AND created_at < ?2) LIMIT ?3)",
        )?
        .execute(params![
            now,
            now - LEGACY_KEY_RETENTION_MS,
            i64::from(limit)
        ])?;
    conn.execute_batch("CREATE TEMP TABLE IF NOT EXISTS purging (id TEXT PRIMARY KEY)")?;
    conn.execute_batch("DELETE FROM temp.purging")?;
    let invocations = conn
        .prepare_cached(
            "INSERT INTO temp.purging (id) SELECT id FROM invocations \
             WHERE completed_at IS NOT NULL AND completed_at < ?1 AND NOT EXISTS \
             (SELECT 1 FROM idempotency_keys k WHERE k.invocation_id = invocations.id) LIMIT ?2",
        )?
        .execute(params![finished_before, i64::from(limit)])?;
    for table in ["journal", "call_markers", "promises"] {
        conn.execute(
            &format!("DELETE FROM {table} WHERE invocation_id IN (SELECT id FROM temp.purging)"),
            [],
        )?;
    }
    conn.execute(
        "DELETE FROM invocations WHERE id IN (SELECT id FROM temp.purging)",
        [],
    )?;
    conn.execute_batch("DELETE FROM temp.purging")?;
    Ok(Written::Purged(Purged {
        keys: keys as u64,
        invocations: invocations as u64,
    }))
}

fn change_status(conn: &Connection, id: &str, change: &StatusChange) -> StorageResult<Written> {
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM invocations WHERE id = ?")?
        .query_row(params![id], |row| row.get(0))
        .optional()?;
    let Some(status) = status else {
        return Ok(Written::Changed(Changed::NotFound));
    };
    let status = InvocationStatus::parse(&status)
        .ok_or_else(|| StorageError::Corrupt(format!("unknown status {status:?}")))?;
    if !change.applies_to(status) {
        return Ok(Written::Changed(Changed::Refused(status)));
    }
    let now = now_ms();
    let failure_json =
        |f| serde_json::to_string(f).map_err(|e| StorageError::Corrupt(e.to_string()));
    match change {
        StatusChange::Kill(failure) => {
            complete(conn, id, &Outcome::Failed(failure.clone()))?;
        }
        StatusChange::Pause(failure) => {
            conn.prepare_cached(
                "UPDATE invocations SET status = 'paused', failure = ?, updated_at = ? WHERE id = ?",
            )?
            .execute(params![failure_json(failure)?, now, id])?;
        }
        StatusChange::Resume { deployment } => {
            conn.prepare_cached(
                "UPDATE invocations SET status = 'running', failure = NULL, attempt = attempt + 1, \
                 attempt_base = attempt, deployment_id = COALESCE(?, deployment_id), \
                 updated_at = ? WHERE id = ?",
            )?
            .execute(params![deployment, now, id])?;
        }
        StatusChange::Cancel => {
            // A paused one runs again (a new attempt, as on resume) to be told.
            conn.prepare_cached(
                "UPDATE invocations SET cancelled_at = COALESCE(cancelled_at, ?), \
                 status = 'running', failure = NULL, \
                 attempt = CASE WHEN status = 'paused' THEN attempt + 1 ELSE attempt END, \
                 attempt_base = CASE WHEN status = 'paused' THEN attempt ELSE attempt_base END, \
                 updated_at = ? WHERE id = ?",
            )?
            .execute(params![now, now, id])?;
        }
        StatusChange::Purge => {
            for sql in [
                "DELETE FROM journal WHERE invocation_id = ?",
                "DELETE FROM call_markers WHERE invocation_id = ?",
                "DELETE FROM promises WHERE invocation_id = ?",
                "DELETE FROM idempotency_keys WHERE invocation_id = ?",
                "DELETE FROM invocations WHERE id = ?",
            ] {
                conn.prepare_cached(sql)?.execute(params![id])?;
            }
        }
    }
    Ok(Written::Changed(Changed::Applied))
}

fn mark_call_started(conn: &Connection, id: &str, marker: &CallMarker) -> StorageResult<Written> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO call_markers (invocation_id, idx, name, idempotency_key, started_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (invocation_id, idx) DO NOTHING",
        )?
        .execute(params![
            id,
            i64::from(marker.index),
            marker.name,
            marker.idempotency_key,
            now_ms()
        ])?;
    Ok(Written::AlreadyMarked(inserted == 0))
}

fn create_invocation(conn: &Connection, inv: &NewInvocation) -> StorageResult<Written> {
    let now = now_ms();
    if let Some((key, retention_ms)) = &inv.idempotency {
        let target = inv.target();
        conn.prepare_cached(
            "DELETE FROM idempotency_keys WHERE target = ? AND idempotency_key = ? AND created_at < ?",
        )?
        .execute(params![target, key, now - retention_ms])?;
        let claimed = conn
            .prepare_cached(
                "INSERT INTO idempotency_keys (target, idempotency_key, invocation_id, created_at, \
                 expires_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (target, idempotency_key) DO NOTHING",
            )?
            .execute(params![target, key, inv.id, now, now.saturating_add(*retention_ms)])?;
        if claimed == 0 {
            let existing: Option<String> = conn
                .prepare_cached(
                    "SELECT invocation_id FROM idempotency_keys WHERE target = ? AND idempotency_key = ?",
                )?
                .query_row(params![target, key], |row| row.get(0))
                .optional()?;
            return existing
                .map(Written::ExistingInvocation)
                .ok_or_else(|| StorageError::Corrupt(format!("idempotency key {key:?} vanished")));
        }
    }
    let providers =
        serde_json::to_string(&inv.providers).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO invocations (id, service, handler, object_key, status, input, deployment_id, \
         providers, attempt, idempotency_key, created_at, updated_at, not_before, trace_parent) \
         VALUES (?, ?, ?, ?, 'running', ?, ?, ?, 1, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        inv.id,
        inv.service,
        inv.handler,
        inv.key,
        inv.input,
        inv.deployment_id,
        providers,
        inv.idempotency.as_ref().map(|(k, _)| k),
        now,
        now,
        inv.not_before,
        inv.trace_parent,
    ])?;
    Ok(Written::CreatedAt(now))
}

fn complete(conn: &Connection, id: &str, outcome: &Outcome) -> StorageResult<Written> {
    let now = now_ms();
    let (status, output, failure) = outcome.columns()?;
    conn.prepare_cached(
        "UPDATE invocations SET status = ?, output = ?, failure = ?, updated_at = ?, completed_at = ? \
         WHERE id = ? AND status IN ('running', 'paused')",
    )?
    .execute(params![status, output, failure, now, now, id])?;
    conn.prepare_cached("DELETE FROM call_markers WHERE invocation_id = ?")?
        .execute(params![id])?;
    Ok(Written::Done)
}

fn append(
    conn: &Connection,
    id: &str,
    entry: &Entry,
    state: Option<&(String, String, StateOp)>,
) -> StorageResult<()> {
    conn.prepare_cached(
        "INSERT INTO journal (invocation_id, idx, kind, name, args_digest, result, detail, \
         started_at, duration_us, soft) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        id,
        i64::from(entry.index),
        entry.kind.as_str(),
        entry.name,
        entry.args_digest,
        entry.result,
        entry.detail,
        entry.started_at,
        entry.duration_us,
        entry.soft,
    ])?;
    // A soft failure may have come after the effect (a lost response): the marker stays, so a
    // repeat of the call is treated as in doubt.
    if entry.kind == EntryKind::Call && !entry.soft {
        conn.prepare_cached("DELETE FROM call_markers WHERE invocation_id = ? AND idx = ?")?
            .execute(params![id, i64::from(entry.index)])?;
    }
    if let Some((service, key, op)) = state {
        match op {
            StateOp::Set { name, value } => {
                conn.prepare_cached(
                    "INSERT INTO state (service, object_key, name, value) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (service, object_key, name) DO UPDATE SET value = excluded.value",
                )?
                .execute(params![service, key, name, value])?;
            }
            StateOp::Clear { name } => {
                conn.prepare_cached(
                    "DELETE FROM state WHERE service = ? AND object_key = ? AND name = ?",
                )?
                .execute(params![service, key, name])?;
            }
            StateOp::ClearAll => {
                conn.prepare_cached("DELETE FROM state WHERE service = ? AND object_key = ?")?
                    .execute(params![service, key])?;
            }
        }
    }
    Ok(())
}

fn put_deployment(conn: &Connection, d: &DeploymentRecord) -> StorageResult<Written> {
    let [describe, limits, provider_settings] = d.json_columns();
    conn.prepare_cached(
        "INSERT INTO deployments (id, kind, name, size, describe, component, created_at, limits, \
         provider_settings, activated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (id) DO NOTHING",
    )?
    .execute(params![
        d.id,
        d.kind,
        d.name,
        d.size,
        describe,
        d.component,
        d.created_at,
        limits,
        provider_settings,
        d.activated_at,
    ])?;
    Ok(Written::Done)
}
