//! SQLite implementation of [`Storage`]: one file under the data dir, WAL, `synchronous=FULL`,
//! `rusqlite` connections for reads ([`reader`]) and one group-committing writer thread
//! ([`writer`]); sqlx runs the embedded migrations at open.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use super::{
    CallMarker, Changed, Created, DeploymentRecord, Invocation, InvocationFilter, NewInvocation,
    Ordered, Outcome, PromiseCompletion, PromiseOutcome, Purged, StateAudit, StateEdit,
    StateEdited, StateOp, StateScope, StatusChange, Storage, StorageError, StorageResult, Table,
    UnfinishedScan,
};
use crate::journal::Entry;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

mod reader;
mod state;
mod writer;

use reader::{Readers, rows};
use writer::{Write, Writer, Written};

/// Reads run on [`Readers`]; every write goes through the one [`Writer`] (group commit).
pub struct SqliteStorage {
    readers: Arc<Readers>,
    writer: Writer,
    flush: crate::metrics::FlushStats,
}

impl SqliteStorage {
    pub async fn open(url: &str) -> Result<Self, StorageError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StorageError::Migration(e.to_string()))?;
        pool.close().await;
        let path = options.get_filename();
        let flush = crate::metrics::FlushStats::default();
        Ok(SqliteStorage {
            readers: Readers::new(path),
            writer: Writer::spawn(path, flush.clone())?,
            flush,
        })
    }
}

/// A connection to the (migrated) database at `path`, in WAL mode with `synchronous=FULL`.
fn open_connection(path: &Path) -> StorageResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
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
    fn flush_stats(&self) -> crate::metrics::FlushStats {
        self.flush.clone()
    }

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
        let id = id.to_string();
        self.readers
            .run(move |conn| {
                let sql = concat!(
                    "SELECT ",
                    invocation_columns!(),
                    " FROM invocations WHERE id = ?"
                );
                Ok(rows(conn, sql, [id], reader::invocation)?.pop())
            })
            .await
    }

    async fn list_invocations(&self, filter: &InvocationFilter) -> StorageResult<Vec<Invocation>> {
        let filter = filter.clone();
        self.readers
            .run(move |conn| {
                // Only the filters given, so the planner can walk an index (by status or by
                // target) newest first and stop at the limit instead of sorting the table.
                let mut sql = String::from(concat!(
                    "SELECT ",
                    invocation_columns!(),
                    " FROM invocations WHERE 1"
                ));
                let mut params: Vec<&dyn rusqlite::ToSql> = Vec::new();
                for (column, value) in [
                    ("status", &filter.status),
                    ("service", &filter.service),
                    ("object_key", &filter.key),
                ] {
                    if let Some(value) = value {
                        sql.push_str(&format!(" AND {column} = ?"));
                        params.push(value);
                    }
                }
                for (bound, value) in [(">=", &filter.since), ("<", &filter.until)] {
                    if let Some(value) = value {
                        sql.push_str(&format!(" AND created_at {bound} ?"));
                        params.push(value);
                    }
                }
                // Unfiltered, newest first is the table backwards: rows are inserted by one
                // writer, so rowid order is creation order, and no sort is needed.
                sql.push_str(if params.is_empty() {
                    " ORDER BY rowid DESC LIMIT ?"
                } else {
                    " ORDER BY created_at DESC, id DESC LIMIT ?"
                });
                let limit = i64::from(filter.limit.unwrap_or(100).min(10_000));
                params.push(&limit);
                rows(conn, &sql, params.as_slice(), reader::invocation)
            })
            .await
    }

    async fn unfinished_invocations(
        &self,
        scan: &mut UnfinishedScan,
        limit: u32,
    ) -> StorageResult<Vec<Invocation>> {
        let (after, until) = (scan.after, scan.until);
        let (until, page) = self
            .readers
            .run(move |conn| {
                // Rows are inserted by one writer, so rowid order is creation order.
                let until = match until {
                    Some(until) => until,
                    None => conn.query_row(
                        "SELECT COALESCE(MAX(rowid), 0) FROM invocations",
                        [],
                        |row| row.get(0),
                    )?,
                };
                let sql = concat!(
                    "SELECT rowid AS seq, ",
                    invocation_columns!(),
                    " FROM invocations WHERE status = 'running' AND rowid > ? AND rowid <= ? \
                     ORDER BY rowid LIMIT ?"
                );
                // One snapshot for the page and, in one query, the journals of its invocations:
                // a resumed invocation's first attempt does not read its own.
                let snapshot = conn.unchecked_transaction()?;
                let params = rusqlite::params![after, until, i64::from(limit)];
                let page = rows(&snapshot, sql, params, |row| {
                    Ok((row.get::<_, i64>("seq")?, reader::invocation(row)?))
                })?;
                let journal_sql = concat!(
                    "SELECT invocation_id, ",
                    entry_columns!(),
                    " FROM journal WHERE invocation_id IN (SELECT id FROM invocations \
                     WHERE status = 'running' AND rowid > ? AND rowid <= ? \
                     ORDER BY rowid LIMIT ?) ORDER BY invocation_id, idx"
                );
                let mut journals: HashMap<String, Vec<Entry>> = HashMap::new();
                for (id, entry) in rows(&snapshot, journal_sql, params, |row| {
                    Ok((row.get::<_, String>("invocation_id")?, reader::entry(row)?))
                })? {
                    journals.entry(id).or_default().push(entry);
                }
                let page = page
                    .into_iter()
                    .map(|(seq, mut invocation)| {
                        invocation.known_journal =
                            Some(journals.remove(&invocation.id).unwrap_or_default());
                        (seq, invocation)
                    })
                    .collect::<Vec<_>>();
                Ok((until, page))
            })
            .await?;
        scan.until = Some(until);
        if let Some((seq, _)) = page.last() {
            scan.after = *seq;
        }
        Ok(page.into_iter().map(|(_, invocation)| invocation).collect())
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

    async fn change_status(&self, id: &str, change: &StatusChange) -> StorageResult<Changed> {
        let write = Write::ChangeStatus {
            id: id.to_string(),
            change: change.clone(),
        };
        match self.writer.write(write).await? {
            Written::Changed(changed) => Ok(changed),
            _ => Err(StorageError::Corrupt(
                "a status change answered nothing".into(),
            )),
        }
    }

    async fn complete(
        &self,
        id: &str,
        outcome: &Outcome,
        scope: StateScope<'_>,
        entries: Vec<(Entry, Option<StateOp>)>,
    ) -> StorageResult<()> {
        let nothing_to_hand_on = Box::new(|| ());
        self.complete_ordered(id, outcome, scope, entries, nothing_to_hand_on)
            .await
    }

    async fn complete_ordered(
        &self,
        id: &str,
        outcome: &Outcome,
        scope: StateScope<'_>,
        entries: Vec<(Entry, Option<StateOp>)>,
        ordered: Ordered,
    ) -> StorageResult<()> {
        let write = Write::Complete {
            id: id.to_string(),
            outcome: outcome.clone(),
            entries: owned_entries(scope, entries),
        };
        self.writer.write_then(write, ordered).await.map(|_| ())
    }

    async fn journal(&self, id: &str) -> StorageResult<Vec<Entry>> {
        let id = id.to_string();
        self.readers
            .run(move |conn| {
                let sql = concat!(
                    "SELECT ",
                    entry_columns!(),
                    " FROM journal WHERE invocation_id = ? ORDER BY idx"
                );
                rows(conn, sql, [id], reader::entry)
            })
            .await
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

    async fn call_marked_at(&self, id: &str, index: u32) -> StorageResult<Option<i64>> {
        let id = id.to_string();
        self.readers
            .run_lookup(move |conn| {
                let sql = "SELECT started_at FROM call_markers WHERE invocation_id = ? AND idx = ?";
                Ok(conn
                    .prepare_cached(sql)?
                    .query_row(rusqlite::params![id, i64::from(index)], |row| row.get(0))
                    .optional()?)
            })
            .await
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

    async fn create_promise(&self, id: &str, invocation_id: &str) -> StorageResult<()> {
        self.writer
            .write(Write::CreatePromise {
                id: id.to_string(),
                invocation_id: invocation_id.to_string(),
            })
            .await
            .map(|_| ())
    }

    async fn promise(&self, id: &str) -> StorageResult<Option<Option<PromiseOutcome>>> {
        let id = id.to_string();
        let row = self
            .readers
            .run(move |conn| {
                Ok(conn
                    .prepare_cached("SELECT status, value FROM promises WHERE id = ?")?
                    .query_row([id], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, Option<Vec<u8>>>(1)?))
                    })
                    .optional()?)
            })
            .await?;
        row.map(|(status, value)| PromiseOutcome::from_columns(&status, value))
            .transpose()
    }

    async fn complete_promise(
        &self,
        id: &str,
        outcome: &PromiseOutcome,
    ) -> StorageResult<PromiseCompletion> {
        let written = self
            .writer
            .write(Write::CompletePromise {
                id: id.to_string(),
                outcome: outcome.clone(),
            })
            .await?;
        if matches!(written, Written::Rows(n) if n > 0) {
            return Ok(PromiseCompletion::Completed);
        }
        Ok(match self.promise(id).await? {
            None => PromiseCompletion::NotFound,
            Some(Some(first)) => PromiseCompletion::AlreadyCompleted(first),
            Some(None) => {
                return Err(StorageError::Corrupt(format!(
                    "promise {id} is pending but could not be completed"
                )));
            }
        })
    }

    async fn state_get(
        &self,
        service: &str,
        key: &str,
        name: &str,
    ) -> StorageResult<Option<Vec<u8>>> {
        let params = [service.to_string(), key.to_string(), name.to_string()];
        self.readers
            .run_lookup(move |conn| {
                let sql =
                    "SELECT value FROM state WHERE service = ? AND object_key = ? AND name = ?";
                Ok(conn
                    .prepare_cached(sql)?
                    .query_row(params, |row| row.get(0))
                    .optional()?)
            })
            .await
    }

    async fn state_keys(&self, service: &str, key: &str) -> StorageResult<Vec<String>> {
        let params = [service.to_string(), key.to_string()];
        self.readers
            .run(move |conn| {
                let sql =
                    "SELECT name FROM state WHERE service = ? AND object_key = ? ORDER BY name";
                rows(conn, sql, params, |row| Ok(row.get(0)?))
            })
            .await
    }

    async fn state_entries(
        &self,
        service: &str,
        key: &str,
        limit: u32,
    ) -> StorageResult<Vec<(String, Vec<u8>)>> {
        let (service, key) = (service.to_string(), key.to_string());
        self.readers
            .run(move |conn| state::entries(conn, &service, &key, limit))
            .await
    }

    async fn edit_state(&self, edit: &StateEdit) -> StorageResult<StateEdited> {
        match self.writer.write(Write::EditState(edit.clone())).await? {
            Written::StateEdited(edited) => Ok(edited),
            _ => Err(StorageError::Corrupt(
                "a state edit answered nothing".into(),
            )),
        }
    }

    async fn state_audit(
        &self,
        service: &str,
        key: &str,
        limit: u32,
    ) -> StorageResult<Vec<StateAudit>> {
        let (service, key) = (service.to_string(), key.to_string());
        self.readers
            .run(move |conn| state::audit(conn, &service, &key, limit))
            .await
    }

    async fn put_deployment(&self, d: &DeploymentRecord) -> StorageResult<()> {
        self.writer
            .write(Write::PutDeployment(d.clone()))
            .await
            .map(|_| ())
    }

    async fn deployments(&self) -> StorageResult<Vec<DeploymentRecord>> {
        self.readers
            .run(|conn| {
                let sql = "SELECT id, kind, name, size, describe, component, created_at, limits, \
                           provider_settings, COALESCE(activated_at, created_at) AS activated_at \
                           FROM deployments \
                           ORDER BY COALESCE(activated_at, created_at), created_at, id";
                rows(conn, sql, [], reader::deployment)
            })
            .await
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
        let id = id.to_string();
        self.readers
            .run(move |conn| {
                let sql = "SELECT id FROM invocations WHERE status IN ('running', 'paused') AND \
                           (deployment_id = ?1 OR EXISTS (SELECT 1 FROM json_each(invocations.providers) \
                           WHERE value = ?1)) ORDER BY created_at, id LIMIT ?2";
                rows(conn, sql, rusqlite::params![id, i64::from(limit)], |row| {
                    Ok(row.get(0)?)
                })
            })
            .await
    }

    async fn count_rows(&self, table: Table) -> StorageResult<i64> {
        let sql = match table {
            Table::Invocations => "SELECT COUNT(*) FROM invocations",
            Table::Journal => "SELECT COUNT(*) FROM journal",
            Table::State => "SELECT COUNT(*) FROM state",
            Table::IdempotencyKeys => "SELECT COUNT(*) FROM idempotency_keys",
        };
        self.readers
            .run(move |conn| Ok(conn.query_row(sql, [], |row| row.get(0))?))
            .await
    }

    async fn purge(&self, now: i64, finished_before: i64, limit: u32) -> StorageResult<Purged> {
        match self
            .writer
            .write(Write::Purge {
                now,
                finished_before,
                limit,
            })
            .await?
        {
            Written::Purged(purged) => Ok(purged),
            _ => Err(StorageError::Corrupt("purge returned no count".into())),
        }
    }

    async fn host_secret(&self, name: &str, fresh: Vec<u8>) -> StorageResult<Vec<u8>> {
        let name = name.to_string();
        match self.writer.write(Write::HostSecret { name, fresh }).await? {
            Written::Bytes(value) => Ok(value),
            _ => Err(StorageError::Corrupt(
                "host secret returned no value".into(),
            )),
        }
    }
}
