//! SQLite implementation of [`Storage`]: one file under the data dir, WAL, `synchronous=FULL`,
//! a read pool and one group-committing writer.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::{
    CallMarker, Created, DeploymentRecord, FailureRecord, Invocation, InvocationFilter,
    InvocationStatus, NewInvocation, Outcome, StateOp, StateScope, Storage, StorageError,
    StorageResult, Table, UnfinishedScan,
};
use crate::journal::{Entry, EntryKind};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

mod writer;

use writer::{Write, Writer, Written};

/// Reads go through a pool; every write goes through the one [`Writer`] (group commit).
pub struct SqliteStorage {
    pool: SqlitePool,
    writer: Writer,
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
            .connect_with(options.clone())
            .await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StorageError::Migration(e.to_string()))?;
        let writer = Writer::spawn(options.get_filename())?;
        Ok(SqliteStorage { pool, writer })
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
        just_created: false,
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

/// Entries with their state mutation, owned for the writer task.
fn owned_entries(
    scope: StateScope<'_>,
    entries: Vec<(Entry, Option<StateOp>)>,
) -> writer::OwnedEntries {
    entries
        .into_iter()
        .map(|(entry, op)| {
            let op = op.map(|op| (scope.service.to_string(), scope.key.to_string(), op));
            (entry, op)
        })
        .collect()
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn create_invocation(&self, inv: &NewInvocation) -> StorageResult<Created> {
        match self
            .writer
            .write(Write::CreateInvocation(inv.clone()))
            .await?
        {
            Written::ExistingInvocation(existing) => self
                .invocation(&existing)
                .await?
                .map(Created::Existing)
                .ok_or_else(|| {
                    StorageError::Corrupt(format!("idempotency key points at missing {existing}"))
                }),
            Written::CreatedAt(at) => Ok(Created::New(Invocation::created(inv, at))),
            _ => Err(StorageError::Corrupt(format!(
                "creating invocation {} returned no row",
                inv.id
            ))),
        }
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

    async fn unfinished_invocations(
        &self,
        scan: &mut UnfinishedScan,
        limit: u32,
    ) -> StorageResult<Vec<Invocation>> {
        // Rows are inserted by one writer, so rowid order is creation order.
        let until = match scan.until {
            Some(until) => until,
            None => {
                let until: i64 =
                    sqlx::query_scalar("SELECT COALESCE(MAX(rowid), 0) FROM invocations")
                        .fetch_one(&self.pool)
                        .await?;
                *scan.until.insert(until)
            }
        };
        let rows = sqlx::query(&format!(
            "SELECT rowid AS seq, {INVOCATION_COLUMNS} FROM invocations \
             WHERE status = 'running' AND rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?"
        ))
        .bind(scan.after)
        .bind(until)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        if let Some(last) = rows.last() {
            scan.after = last.try_get("seq")?;
        }
        rows.iter().map(invocation_from_row).collect()
    }

    async fn set_attempt(&self, id: &str, attempt: u32) -> StorageResult<()> {
        self.writer
            .write(Write::SetAttempt {
                id: id.to_string(),
                attempt,
            })
            .await
            .map(|_| ())
    }

    async fn complete(
        &self,
        id: &str,
        outcome: &Outcome,
        scope: StateScope<'_>,
        entries: Vec<(Entry, Option<StateOp>)>,
    ) -> StorageResult<()> {
        self.writer
            .write(Write::Complete {
                id: id.to_string(),
                outcome: outcome.clone(),
                entries: owned_entries(scope, entries),
            })
            .await
            .map(|_| ())
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

    async fn append_batch(
        &self,
        id: &str,
        scope: StateScope<'_>,
        entries: Vec<(Entry, Option<StateOp>)>,
    ) -> StorageResult<()> {
        self.writer
            .write(Write::Append {
                id: id.to_string(),
                entries: owned_entries(scope, entries),
                marker: None,
            })
            .await
            .map(|_| ())
    }

    async fn append_and_mark(
        &self,
        id: &str,
        scope: StateScope<'_>,
        entries: Vec<(Entry, Option<StateOp>)>,
        marker: CallMarker,
    ) -> StorageResult<bool> {
        let written = self
            .writer
            .write(Write::Append {
                id: id.to_string(),
                entries: owned_entries(scope, entries),
                marker: Some(marker),
            })
            .await?;
        Ok(matches!(written, Written::AlreadyMarked(true)))
    }

    async fn truncate_journal(&self, id: &str, from_index: u32) -> StorageResult<()> {
        self.writer
            .write(Write::TruncateJournal {
                id: id.to_string(),
                from_index,
            })
            .await
            .map(|_| ())
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
        self.writer
            .write(Write::PutDeployment(d.clone()))
            .await
            .map(|_| ())
    }

    async fn deployments(&self) -> StorageResult<Vec<DeploymentRecord>> {
        let rows = sqlx::query(
            "SELECT id, kind, name, size, describe, component, created_at, limits, \
             provider_settings, COALESCE(activated_at, created_at) AS activated_at FROM deployments \
             ORDER BY COALESCE(activated_at, created_at), created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let describe: Option<String> = r.try_get("describe")?;
                let limits: Option<String> = r.try_get("limits")?;
                let provider_settings: Option<String> = r.try_get("provider_settings")?;
                let json = |text: Option<String>| {
                    text.map(|s| serde_json::from_str(&s))
                        .transpose()
                        .map_err(|e| StorageError::Corrupt(e.to_string()))
                };
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
                    limits: json(limits)?,
                    provider_settings: json(provider_settings)?,
                    activated_at: r.try_get("activated_at")?,
                })
            })
            .collect()
    }

    async fn activate_deployment(
        &self,
        id: &str,
        limits: Option<&serde_json::Value>,
        provider_settings: Option<&serde_json::Value>,
        at: i64,
    ) -> StorageResult<()> {
        self.writer
            .write(Write::ActivateDeployment {
                id: id.to_string(),
                limits: limits.map(serde_json::Value::to_string),
                provider_settings: provider_settings.map(serde_json::Value::to_string),
                at,
            })
            .await
            .map(|_| ())
    }

    async fn delete_deployment(&self, id: &str) -> StorageResult<bool> {
        let written = self
            .writer
            .write(Write::DeleteDeployment(id.to_string()))
            .await?;
        Ok(matches!(written, Written::Rows(n) if n > 0))
    }

    async fn running_invocations_pinned_to(
        &self,
        id: &str,
        limit: u32,
    ) -> StorageResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT id FROM invocations WHERE status = 'running' AND (deployment_id = ?1 \
             OR EXISTS (SELECT 1 FROM json_each(invocations.providers) WHERE value = ?1)) \
             ORDER BY created_at, id LIMIT ?2",
        )
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(StorageError::from))
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

#[cfg(test)]
mod deployment_tests {
    use std::collections::BTreeMap;

    use super::SqliteStorage;
    use crate::storage::{
        DeploymentRecord, NewInvocation, Outcome, StateScope, Storage, UnfinishedScan,
    };

    fn invocation(id: &str) -> NewInvocation {
        NewInvocation {
            id: id.into(),
            service: "S".into(),
            handler: "h".into(),
            key: None,
            input: Vec::new(),
            deployment_id: "svc".into(),
            providers: BTreeMap::new(),
            idempotency: None,
        }
    }

    #[tokio::test]
    async fn unfinished_invocations_stream_in_creation_order_without_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let storage = SqliteStorage::open(&url).await.unwrap();
        for id in ["c", "a", "d", "b", "e"] {
            storage.create_invocation(&invocation(id)).await.unwrap();
        }
        let scope = StateScope {
            service: "S",
            key: "",
        };
        let done = Outcome::Succeeded(Vec::new());
        storage
            .complete("d", &done, scope, Vec::new())
            .await
            .unwrap();

        let mut scan = UnfinishedScan::default();
        let mut seen = Vec::new();
        loop {
            let page = storage.unfinished_invocations(&mut scan, 2).await.unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 2);
            // Created while the scan runs: not part of it (this process runs it itself).
            storage
                .create_invocation(&invocation(&format!("new{}", seen.len())))
                .await
                .unwrap();
            seen.extend(page.into_iter().map(|i| i.id));
        }
        assert_eq!(seen, ["c", "a", "b", "e"]);
    }

    fn record(id: &str, at: i64) -> DeploymentRecord {
        DeploymentRecord {
            id: id.into(),
            kind: "payments".into(),
            name: "payments".into(),
            size: 3,
            describe: None,
            component: b"abc".to_vec(),
            created_at: at,
            limits: None,
            provider_settings: None,
            activated_at: at,
        }
    }

    #[tokio::test]
    async fn deployments_are_listed_by_activation_pinned_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let storage = SqliteStorage::open(&url).await.unwrap();
        storage.put_deployment(&record("a", 1)).await.unwrap();
        storage.put_deployment(&record("b", 2)).await.unwrap();
        let limits = serde_json::json!({"cpuMs": 1000});
        storage
            .activate_deployment("a", Some(&limits), None, 3)
            .await
            .unwrap();
        let listed = storage.deployments().await.unwrap();
        let order: Vec<&str> = listed.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(order, ["b", "a"], "the last activated comes last");
        assert_eq!(listed[1].limits, Some(limits));
        assert_eq!(listed[1].activated_at, 3);

        storage
            .create_invocation(&NewInvocation {
                id: "inv_1".into(),
                service: "S".into(),
                handler: "h".into(),
                key: None,
                input: Vec::new(),
                deployment_id: "svc".into(),
                providers: BTreeMap::from([("payments".to_string(), "a".to_string())]),
                idempotency: None,
            })
            .await
            .unwrap();
        let pinned = |id: &'static str| storage.running_invocations_pinned_to(id, 10);
        assert_eq!(pinned("a").await.unwrap(), ["inv_1"]);
        assert_eq!(pinned("svc").await.unwrap(), ["inv_1"]);
        assert!(pinned("b").await.unwrap().is_empty());

        assert!(storage.delete_deployment("b").await.unwrap());
        assert!(!storage.delete_deployment("b").await.unwrap());
        assert_eq!(storage.deployments().await.unwrap().len(), 1);
    }
}
