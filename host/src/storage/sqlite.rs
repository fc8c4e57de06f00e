//! SQLite implementation of [`Storage`]: one file under the data dir, WAL, `synchronous=FULL`.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::{
    Created, DeploymentRecord, FailureRecord, Invocation, InvocationFilter, InvocationStatus,
    NewInvocation, Outcome, StateOp, StateScope, Storage, StorageError, StorageResult, Table,
    now_ms,
};
use crate::journal::{Entry, EntryKind};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStorage {
    pool: SqlitePool,
}

impl SqliteStorage {
    pub async fn open(url: &str) -> Result<Self, StorageError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StorageError::Migration(e.to_string()))?;
        Ok(SqliteStorage { pool })
    }
}

const INVOCATION_COLUMNS: &str = "id, service, handler, object_key, status, input, output, failure, \
     deployment_id, providers, attempt, idempotency_key, created_at, updated_at, completed_at";

fn invocation_from_row(row: &sqlx::sqlite::SqliteRow) -> StorageResult<Invocation> {
    let status: String = row.try_get("status")?;
    let failure: Option<String> = row.try_get("failure")?;
    let providers: String = row.try_get("providers")?;
    Ok(Invocation {
        id: row.try_get("id")?,
        service: row.try_get("service")?,
        handler: row.try_get("handler")?,
        key: row.try_get("object_key")?,
        status: InvocationStatus::parse(&status)
            .ok_or_else(|| StorageError::Corrupt(format!("unknown status {status:?}")))?,
        input: row.try_get("input")?,
        output: row.try_get("output")?,
        failure: failure
            .map(|f| serde_json::from_str::<FailureRecord>(&f))
            .transpose()
            .map_err(|e| StorageError::Corrupt(format!("failure column: {e}")))?,
        deployment_id: row.try_get("deployment_id")?,
        providers: serde_json::from_str(&providers)
            .map_err(|e| StorageError::Corrupt(format!("providers column: {e}")))?,
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        idempotency_key: row.try_get("idempotency_key")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        completed_at: row.try_get("completed_at")?,
    })
}

fn entry_from_row(row: &sqlx::sqlite::SqliteRow) -> StorageResult<Entry> {
    let kind: String = row.try_get("kind")?;
    Ok(Entry {
        index: row.try_get::<i64, _>("idx")? as u32,
        kind: EntryKind::parse(&kind)
            .ok_or_else(|| StorageError::Corrupt(format!("unknown journal kind {kind:?}")))?,
        name: row.try_get("name")?,
        args_digest: row.try_get("args_digest")?,
        result: row.try_get("result")?,
        detail: row.try_get("detail")?,
        started_at: row.try_get("started_at")?,
        duration_us: row.try_get("duration_us")?,
    })
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn create_invocation(&self, inv: &NewInvocation) -> StorageResult<Created> {
        let now = now_ms();
        let providers = serde_json::to_string(&inv.providers)
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let mut tx = self.pool.begin().await?;
        if let Some((key, retention_ms)) = &inv.idempotency {
            let target = inv.target();
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE target = ? AND idempotency_key = ? AND created_at < ?",
            )
            .bind(&target)
            .bind(key)
            .bind(now - retention_ms)
            .execute(&mut *tx)
            .await?;
            let claimed = sqlx::query(
                "INSERT INTO idempotency_keys (target, idempotency_key, invocation_id, created_at) \
                 VALUES (?, ?, ?, ?) ON CONFLICT (target, idempotency_key) DO NOTHING",
            )
            .bind(&target)
            .bind(key)
            .bind(&inv.id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if claimed == 0 {
                let existing: String = sqlx::query_scalar(
                    "SELECT invocation_id FROM idempotency_keys WHERE target = ? AND idempotency_key = ?",
                )
                .bind(&target)
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                return self
                    .invocation(&existing)
                    .await?
                    .map(Created::Existing)
                    .ok_or_else(|| {
                        StorageError::Corrupt(format!(
                            "idempotency key points at missing {existing}"
                        ))
                    });
            }
        }
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
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Created::New(Invocation {
            id: inv.id.clone(),
            service: inv.service.clone(),
            handler: inv.handler.clone(),
            key: inv.key.clone(),
            status: InvocationStatus::Running,
            input: inv.input.clone(),
            output: None,
            failure: None,
            deployment_id: inv.deployment_id.clone(),
            providers: inv.providers.clone(),
            attempt: 1,
            idempotency_key: inv.idempotency.as_ref().map(|(k, _)| k.clone()),
            created_at: now,
            updated_at: now,
            completed_at: None,
        }))
    }

    async fn invocation(&self, id: &str) -> StorageResult<Option<Invocation>> {
        let row = sqlx::query(&format!(
            "SELECT {INVOCATION_COLUMNS} FROM invocations WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(invocation_from_row).transpose()
    }

    async fn list_invocations(&self, filter: &InvocationFilter) -> StorageResult<Vec<Invocation>> {
        let rows = sqlx::query(&format!(
            "SELECT {INVOCATION_COLUMNS} FROM invocations \
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR service = ?2) \
             AND (?3 IS NULL OR object_key = ?3) \
             ORDER BY created_at DESC, id DESC LIMIT ?4"
        ))
        .bind(&filter.status)
        .bind(&filter.service)
        .bind(&filter.key)
        .bind(i64::from(filter.limit.unwrap_or(100).min(10_000)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(invocation_from_row).collect()
    }

    async fn unfinished_invocations(&self) -> StorageResult<Vec<Invocation>> {
        let rows = sqlx::query(&format!(
            "SELECT {INVOCATION_COLUMNS} FROM invocations WHERE status = 'running' ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(invocation_from_row).collect()
    }

    async fn set_attempt(&self, id: &str, attempt: u32) -> StorageResult<()> {
        sqlx::query("UPDATE invocations SET attempt = ?, updated_at = ? WHERE id = ?")
            .bind(i64::from(attempt))
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn complete(&self, id: &str, outcome: &Outcome) -> StorageResult<()> {
        let now = now_ms();
        let (status, output, failure) = match outcome {
            Outcome::Succeeded(out) => (InvocationStatus::Succeeded, Some(out.as_slice()), None),
            Outcome::Failed(f) => (
                InvocationStatus::Failed,
                None,
                Some(serde_json::to_string(f).map_err(|e| StorageError::Corrupt(e.to_string()))?),
            ),
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE invocations SET status = ?, output = ?, failure = ?, updated_at = ?, completed_at = ? \
             WHERE id = ?",
        )
        .bind(status.as_str())
        .bind(output)
        .bind(failure)
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM call_markers WHERE invocation_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn journal(&self, id: &str) -> StorageResult<Vec<Entry>> {
        let rows = sqlx::query(
            "SELECT idx, kind, name, args_digest, result, detail, started_at, duration_us \
             FROM journal WHERE invocation_id = ? ORDER BY idx",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn append(
        &self,
        id: &str,
        entry: &Entry,
        state: Option<(StateScope<'_>, &StateOp)>,
    ) -> StorageResult<()> {
        let mut tx = self.pool.begin().await?;
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
        .execute(&mut *tx)
        .await?;
        // A soft failure may have come after the effect (a lost response): the marker stays, so a
        // repeat of the call is treated as in doubt.
        if entry.kind == EntryKind::Call && !entry.is_soft() {
            sqlx::query("DELETE FROM call_markers WHERE invocation_id = ? AND idx = ?")
                .bind(id)
                .bind(i64::from(entry.index))
                .execute(&mut *tx)
                .await?;
        }
        if let Some((scope, op)) = state {
            match op {
                StateOp::Set { name, value } => {
                    sqlx::query(
                        "INSERT INTO state (service, object_key, name, value) VALUES (?, ?, ?, ?) \
                         ON CONFLICT (service, object_key, name) DO UPDATE SET value = excluded.value",
                    )
                    .bind(scope.service)
                    .bind(scope.key)
                    .bind(name)
                    .bind(value)
                    .execute(&mut *tx)
                    .await?;
                }
                StateOp::Clear { name } => {
                    sqlx::query(
                        "DELETE FROM state WHERE service = ? AND object_key = ? AND name = ?",
                    )
                    .bind(scope.service)
                    .bind(scope.key)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                }
                StateOp::ClearAll => {
                    sqlx::query("DELETE FROM state WHERE service = ? AND object_key = ?")
                        .bind(scope.service)
                        .bind(scope.key)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn mark_call_started(
        &self,
        id: &str,
        index: u32,
        name: &str,
        idempotency_key: &str,
    ) -> StorageResult<bool> {
        let inserted = sqlx::query(
            "INSERT INTO call_markers (invocation_id, idx, name, idempotency_key, started_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (invocation_id, idx) DO NOTHING",
        )
        .bind(id)
        .bind(i64::from(index))
        .bind(name)
        .bind(idempotency_key)
        .bind(now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 0)
    }

    async fn truncate_journal(&self, id: &str, from_index: u32) -> StorageResult<()> {
        sqlx::query("DELETE FROM journal WHERE invocation_id = ? AND idx >= ?")
            .bind(id)
            .bind(i64::from(from_index))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn state_get(
        &self,
        service: &str,
        key: &str,
        name: &str,
    ) -> StorageResult<Option<Vec<u8>>> {
        let row = sqlx::query(
            "SELECT value FROM state WHERE service = ? AND object_key = ? AND name = ?",
        )
        .bind(service)
        .bind(key)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    async fn state_keys(&self, service: &str, key: &str) -> StorageResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT name FROM state WHERE service = ? AND object_key = ? ORDER BY name",
        )
        .bind(service)
        .bind(key)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("name").map_err(StorageError::from))
            .collect()
    }

    async fn put_deployment(&self, d: &DeploymentRecord) -> StorageResult<()> {
        let describe = d
            .describe
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO deployments (id, kind, name, size, describe, component, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&d.id)
        .bind(&d.kind)
        .bind(&d.name)
        .bind(d.size)
        .bind(describe)
        .bind(&d.component)
        .bind(d.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn deployments(&self) -> StorageResult<Vec<DeploymentRecord>> {
        let rows = sqlx::query(
            "SELECT id, kind, name, size, describe, component, created_at FROM deployments \
             ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let describe: Option<String> = r.try_get("describe")?;
                Ok(DeploymentRecord {
                    id: r.try_get("id")?,
                    kind: r.try_get("kind")?,
                    name: r.try_get("name")?,
                    size: r.try_get("size")?,
                    describe: describe
                        .map(|s| serde_json::from_str(&s))
                        .transpose()
                        .map_err(|e| StorageError::Corrupt(e.to_string()))?,
                    component: r.try_get("component")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn count_rows(&self, table: Table) -> StorageResult<i64> {
        let sql = match table {
            Table::Invocations => "SELECT COUNT(*) FROM invocations",
            Table::Journal => "SELECT COUNT(*) FROM journal",
            Table::State => "SELECT COUNT(*) FROM state",
        };
        Ok(sqlx::query_scalar(sql).fetch_one(&self.pool).await?)
    }
}
