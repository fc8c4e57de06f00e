//! The one SQLite writer: every write of every invocation goes through this task, which commits
//! whatever has queued up as one transaction (group commit) and answers each caller only after
//! the commit is durable. Each write runs in its own savepoint, so one failing write (say, a
//! duplicate key) fails alone.

use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::super::{
    DeploymentRecord, NewInvocation, Outcome, StateOp, StorageError, StorageResult, now_ms,
};
use crate::journal::{Entry, EntryKind};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;

/// Journal entries with the state mutation each records (service, key, op).
pub(super) type OwnedEntries = Vec<(Entry, Option<(String, String, StateOp)>)>;

/// A write, owned so it can cross to the writer task.
pub(super) enum Write {
    CreateInvocation(NewInvocation),
    SetAttempt {
        id: String,
        attempt: u32,
    },
    Complete {
        id: String,
        outcome: Outcome,
        entries: OwnedEntries,
    },
    Append {
        id: String,
        entries: OwnedEntries,
    },
    MarkCallStarted {
        id: String,
        index: u32,
        name: String,
        idempotency_key: String,
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
}

/// What a write returns.
pub(super) enum Written {
    Done,
    /// `CreateInvocation` with an idempotency key already used: the invocation it maps to.
    ExistingInvocation(String),
    /// `MarkCallStarted`: whether a marker was already there.
    AlreadyMarked(bool),
    /// Rows a statement changed.
    Rows(u64),
}

type Reply = oneshot::Sender<StorageResult<Written>>;

#[derive(Clone)]
pub(super) struct Writer {
    queue: mpsc::Sender<(Write, Reply)>,
}

impl Writer {
    /// Starts the writer task on `conn`.
    pub(super) fn spawn(conn: SqliteConnection) -> Writer {
        let (queue, receiver) = mpsc::channel(4096);
        tokio::spawn(run(conn, receiver));
        Writer { queue }
    }

    /// Queues `write` and waits until the batch holding it is committed.
    pub(super) async fn write(&self, write: Write) -> StorageResult<Written> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((write, reply))
            .await
            .map_err(|_| StorageError::Database("the database writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StorageError::Database("the database writer has stopped".into()))?
    }
}

async fn run(mut conn: SqliteConnection, mut receiver: mpsc::Receiver<(Write, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let results = commit_batch(&mut conn, &batch).await;
        for ((_, reply), result) in batch.drain(..).zip(results) {
            let _ = reply.send(result);
        }
    }
}

/// Runs every write of `batch` in one transaction; returns one result per write.
fn commit_batch<'a>(
    conn: &'a mut SqliteConnection,
    batch: &'a [(Write, Reply)],
) -> futures::future::BoxFuture<'a, Vec<StorageResult<Written>>> {
    Box::pin(commit_batch_inner(conn, batch))
}

async fn commit_batch_inner(
    conn: &mut SqliteConnection,
    batch: &[(Write, Reply)],
) -> Vec<StorageResult<Written>> {
    let fail_all = |e: StorageError| -> Vec<StorageResult<Written>> {
        let message = e.to_string();
        batch
            .iter()
            .map(|_| Err(StorageError::Database(message.clone())))
            .collect()
    };
    if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
        return fail_all(e.into());
    }
    let mut results = Vec::with_capacity(batch.len());
    for (write, _) in batch {
        let result = match sqlx::query("SAVEPOINT w").execute(&mut *conn).await {
            Ok(_) => apply(conn, write).await,
            Err(e) => Err(e.into()),
        };
        let mut closed = Ok(());
        if result.is_err() {
            closed = sqlx::query("ROLLBACK TO w")
                .execute(&mut *conn)
                .await
                .map(|_| ());
        }
        if closed.is_ok() {
            closed = sqlx::query("RELEASE w")
                .execute(&mut *conn)
                .await
                .map(|_| ());
        }
        if let Err(e) = closed {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            return fail_all(e.into());
        }
        results.push(result);
    }
    match sqlx::query("COMMIT").execute(&mut *conn).await {
        Ok(_) => results,
        Err(e) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            fail_all(e.into())
        }
    }
}

/// Boxed: keeps the spawned writer future's type simple enough for the compiler to see it is
/// `Send` for every connection borrow.
fn apply<'a>(
    conn: &'a mut SqliteConnection,
    write: &'a Write,
) -> futures::future::BoxFuture<'a, StorageResult<Written>> {
    Box::pin(apply_inner(conn, write))
}

async fn apply_inner(conn: &mut SqliteConnection, write: &Write) -> StorageResult<Written> {
    match write {
        Write::CreateInvocation(inv) => create_invocation(conn, inv).await,
        Write::SetAttempt { id, attempt } => {
            sqlx::query("UPDATE invocations SET attempt = ?, updated_at = ? WHERE id = ?")
                .bind(i64::from(*attempt))
                .bind(now_ms())
                .bind(id)
                .execute(&mut *conn)
                .await?;
            Ok(Written::Done)
        }
        Write::Complete {
            id,
            outcome,
            entries,
        } => {
            for (entry, state) in entries {
                append(conn, id, entry, state.as_ref()).await?;
            }
            complete(conn, id, outcome).await
        }
        Write::Append { id, entries } => {
            for (entry, state) in entries {
                append(conn, id, entry, state.as_ref()).await?;
            }
            Ok(Written::Done)
        }
        Write::MarkCallStarted {
            id,
            index,
            name,
            idempotency_key,
        } => {
            let inserted = sqlx::query(
                "INSERT INTO call_markers (invocation_id, idx, name, idempotency_key, started_at) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (invocation_id, idx) DO NOTHING",
            )
            .bind(id)
            .bind(i64::from(*index))
            .bind(name)
            .bind(idempotency_key)
            .bind(now_ms())
            .execute(&mut *conn)
            .await?
            .rows_affected();
            Ok(Written::AlreadyMarked(inserted == 0))
        }
        Write::TruncateJournal { id, from_index } => {
            sqlx::query("DELETE FROM journal WHERE invocation_id = ? AND idx >= ?")
                .bind(id)
                .bind(i64::from(*from_index))
                .execute(&mut *conn)
                .await?;
            Ok(Written::Done)
        }
        Write::PutDeployment(d) => put_deployment(conn, d).await,
        Write::ActivateDeployment {
            id,
            limits,
            provider_settings,
            at,
        } => {
            let rows = sqlx::query(
                "UPDATE deployments SET activated_at = ?, limits = COALESCE(?, limits), \
                 provider_settings = COALESCE(?, provider_settings) WHERE id = ?",
            )
            .bind(at)
            .bind(limits)
            .bind(provider_settings)
            .bind(id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            Ok(Written::Rows(rows))
        }
        Write::DeleteDeployment(id) => {
            let rows = sqlx::query("DELETE FROM deployments WHERE id = ?")
                .bind(id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            Ok(Written::Rows(rows))
        }
    }
}

async fn create_invocation(
    conn: &mut SqliteConnection,
    inv: &NewInvocation,
) -> StorageResult<Written> {
    let now = now_ms();
    if let Some((key, retention_ms)) = &inv.idempotency {
        let target = inv.target();
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE target = ? AND idempotency_key = ? AND created_at < ?",
        )
        .bind(&target)
        .bind(key)
        .bind(now - retention_ms)
        .execute(&mut *conn)
        .await?;
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (target, idempotency_key, invocation_id, created_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT (target, idempotency_key) DO NOTHING",
        )
        .bind(&target)
        .bind(key)
        .bind(&inv.id)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if claimed == 0 {
            let existing: String = sqlx::query_scalar(
                "SELECT invocation_id FROM idempotency_keys WHERE target = ? AND idempotency_key = ?",
            )
            .bind(&target)
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
            return Ok(Written::ExistingInvocation(existing));
        }
    }
    let providers =
        serde_json::to_string(&inv.providers).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    sqlx::query(
        "INSERT INTO invocations (id, service, handler, object_key, status, input, deployment_id, \
         providers, attempt, idempotency_key, created_at, updated_at) \
         VALUES (?, ?, ?, ?, 'running', ?, ?, ?, 1, ?, ?, ?)",
    )
    .bind(&inv.id)
    .bind(&inv.service)
    .bind(&inv.handler)
    .bind(&inv.key)
    .bind(&inv.input)
    .bind(&inv.deployment_id)
    .bind(&providers)
    .bind(inv.idempotency.as_ref().map(|(k, _)| k))
    .bind(now)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(Written::Done)
}

async fn complete(
    conn: &mut SqliteConnection,
    id: &str,
    outcome: &Outcome,
) -> StorageResult<Written> {
    let now = now_ms();
    let (status, output, failure) = match outcome {
        Outcome::Succeeded(out) => ("succeeded", Some(out.as_slice()), None),
        Outcome::Failed(f) => (
            "failed",
            None,
            Some(serde_json::to_string(f).map_err(|e| StorageError::Corrupt(e.to_string()))?),
        ),
    };
    sqlx::query(
        "UPDATE invocations SET status = ?, output = ?, failure = ?, updated_at = ?, completed_at = ? \
         WHERE id = ?",
    )
    .bind(status)
    .bind(output)
    .bind(failure)
    .bind(now)
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM call_markers WHERE invocation_id = ?")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(Written::Done)
}

async fn append(
    conn: &mut SqliteConnection,
    id: &str,
    entry: &Entry,
    state: Option<&(String, String, StateOp)>,
) -> StorageResult<Written> {
    sqlx::query(
        "INSERT INTO journal (invocation_id, idx, kind, name, args_digest, result, detail, \
         started_at, duration_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id)
    .bind(i64::from(entry.index))
    .bind(entry.kind.as_str())
    .bind(&entry.name)
    .bind(&entry.args_digest)
    .bind(&entry.result)
    .bind(&entry.detail)
    .bind(entry.started_at)
    .bind(entry.duration_us)
    .execute(&mut *conn)
    .await?;
    // A soft failure may have come after the effect (a lost response): the marker stays, so a
    // repeat of the call is treated as in doubt.
    if entry.kind == EntryKind::Call && !entry.is_soft() {
        sqlx::query("DELETE FROM call_markers WHERE invocation_id = ? AND idx = ?")
            .bind(id)
            .bind(i64::from(entry.index))
            .execute(&mut *conn)
            .await?;
    }
    if let Some((service, key, op)) = state {
        match op {
            StateOp::Set { name, value } => {
                sqlx::query(
                    "INSERT INTO state (service, object_key, name, value) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (service, object_key, name) DO UPDATE SET value = excluded.value",
                )
                .bind(service)
                .bind(key)
                .bind(name)
                .bind(value)
                .execute(&mut *conn)
                .await?;
            }
            StateOp::Clear { name } => {
                sqlx::query("DELETE FROM state WHERE service = ? AND object_key = ? AND name = ?")
                    .bind(service)
                    .bind(key)
                    .bind(name)
                    .execute(&mut *conn)
                    .await?;
            }
            StateOp::ClearAll => {
                sqlx::query("DELETE FROM state WHERE service = ? AND object_key = ?")
                    .bind(service)
                    .bind(key)
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(Written::Done)
}

async fn put_deployment(
    conn: &mut SqliteConnection,
    d: &DeploymentRecord,
) -> StorageResult<Written> {
    let describe = d
        .describe
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StorageError::Corrupt(e.to_string()))?;
    let limits = d.limits.as_ref().map(serde_json::Value::to_string);
    let provider_settings = d
        .provider_settings
        .as_ref()
        .map(serde_json::Value::to_string);
    sqlx::query(
        "INSERT INTO deployments (id, kind, name, size, describe, component, created_at, limits, \
         provider_settings, activated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&d.id)
    .bind(&d.kind)
    .bind(&d.name)
    .bind(d.size)
    .bind(describe)
    .bind(&d.component)
    .bind(d.created_at)
    .bind(limits)
    .bind(provider_settings)
    .bind(d.activated_at)
    .execute(&mut *conn)
    .await?;
    Ok(Written::Done)
}

/// Opens the writer's own connection (separate from the read pool).
pub(super) async fn connect(
    options: &sqlx::sqlite::SqliteConnectOptions,
) -> StorageResult<SqliteConnection> {
    Ok(SqliteConnection::connect_with(options).await?)
}

#[cfg(test)]
mod tests {
    use super::super::SqliteStorage;
    use crate::journal::{Entry, EntryKind};
    use crate::storage::{Storage, Table};

    fn entry(index: u32) -> Entry {
        Entry {
            index,
            kind: EntryKind::State,
            name: "get".into(),
            args_digest: "d".into(),
            result: b"null".to_vec(),
            detail: None,
            started_at: 0,
            duration_us: 0,
        }
    }

    #[tokio::test]
    async fn concurrent_writes_commit_and_a_failing_write_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let storage = std::sync::Arc::new(SqliteStorage::open(&url).await.unwrap());
        let writes = (0..100u32).map(|i| {
            let storage = storage.clone();
            // Entry 7 is written twice: exactly one of the two must fail.
            let index = if i == 99 { 7 } else { i };
            tokio::spawn(async move { storage.append("inv", &entry(index), None).await })
        });
        let results = futures::future::join_all(writes).await;
        let failed = results
            .iter()
            .filter(|r| r.as_ref().unwrap().is_err())
            .count();
        assert_eq!(failed, 1);
        assert_eq!(storage.count_rows(Table::Journal).await.unwrap(), 99);
        let journal = storage.journal("inv").await.unwrap();
        assert_eq!(journal.len(), 99);
        assert_eq!(journal[98].index, 98);
    }
}
