//! Reads: a few `rusqlite` connections, each serving one read at a time on tokio's blocking
//! pool. In WAL mode a reader never waits for the writer, so a read is a short, bounded piece of
//! blocking work; running it directly on a connection (no per-statement channel round trip, as
//! sqlx's SQLite driver has) keeps the hot path's reads (a keyed object's state, a journal)
//! cheap. Rows are mapped here, once for every query that returns them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, Params, Row};
use tokio::sync::Semaphore;

use super::super::{
    DeploymentRecord, FailureRecord, Invocation, InvocationStatus, StorageError, StorageResult,
    json_column,
};
use crate::journal::{Entry, EntryKind};

/// Reads running at once (and connections kept open between reads). More would only add
/// blocking-pool threads contending for two cores.
const MAX_READERS: usize = 4;

pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    turns: Semaphore,
}

impl Readers {
    pub(super) fn new(path: &Path) -> Arc<Readers> {
        Arc::new(Readers {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            turns: Semaphore::new(MAX_READERS),
        })
    }

    /// Runs `read` on an idle connection (or a new one) on the blocking pool, at most
    /// [`MAX_READERS`] at once.
    pub(super) async fn run<T, F>(self: &Arc<Self>, read: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StorageResult<T> + Send + 'static,
    {
        let _turn = self
            .turns
            .acquire()
            .await
            .map_err(|_| StorageError::Database("the readers are closed".into()))?;
        let readers = self.clone();
        tokio::task::spawn_blocking(move || readers.with_connection(read))
            .await
            .map_err(|e| StorageError::Database(format!("a read task failed: {e}")))?
    }

    /// Runs `read`, a lookup by primary key, on the calling thread when a reader is free (else
    /// as [`Readers::run`]): a few pages in WAL mode take microseconds, less than handing the
    /// read to another thread and back.
    pub(super) async fn run_lookup<T, F>(self: &Arc<Self>, read: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StorageResult<T> + Send + 'static,
    {
        match self.turns.try_acquire() {
            Ok(_turn) => self.with_connection(read),
            Err(_) => self.run(read).await,
        }
    }

    /// `read` on an idle connection, or a new one; the connection is kept for the next read.
    fn with_connection<T>(
        &self,
        read: impl FnOnce(&Connection) -> StorageResult<T>,
    ) -> StorageResult<T> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => super::open_connection(&self.path)?,
        };
        let result = read(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_READERS {
            idle.push(conn);
        }
        result
    }
}

/// Every row of `sql` with `params`, each mapped by `map`.
pub(super) fn rows<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    map: impl Fn(&Row<'_>) -> StorageResult<T>,
) -> StorageResult<Vec<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

pub(super) fn invocation(row: &Row<'_>) -> StorageResult<Invocation> {
    let status: String = row.get("status")?;
    let failure: Option<String> = row.get("failure")?;
    let providers: String = row.get("providers")?;
    Ok(Invocation {
        id: row.get("id")?,
        service: row.get("service")?,
        handler: row.get("handler")?,
        key: row.get("object_key")?,
        status: InvocationStatus::parse(&status)
            .ok_or_else(|| StorageError::Corrupt(format!("unknown status {status:?}")))?,
        input: row.get("input")?,
        output: row.get("output")?,
        failure: failure
            .map(|f| json_column::<FailureRecord>("failure", &f))
            .transpose()?,
        deployment_id: row.get("deployment_id")?,
        providers: json_column("providers", &providers)?,
        attempt: row.get::<_, i64>("attempt")? as u32,
        attempt_base: row.get::<_, i64>("attempt_base")? as u32,
        cancelled_at: row.get("cancelled_at")?,
        idempotency_key: row.get("idempotency_key")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
        completed_at: row.get("completed_at")?,
        not_before: row.get("not_before")?,
        trace_parent: row.get("trace_parent")?,
        known_journal: None,
    })
}

pub(super) fn entry(row: &Row<'_>) -> StorageResult<Entry> {
    let kind: String = row.get("kind")?;
    Ok(Entry {
        index: row.get::<_, i64>("idx")? as u32,
        kind: EntryKind::parse(&kind)
            .ok_or_else(|| StorageError::Corrupt(format!("unknown journal kind {kind:?}")))?,
        name: row.get("name")?,
        args_digest: row.get("args_digest")?,
        result: row.get("result")?,
        detail: row.get("detail")?,
        started_at: row.get("started_at")?,
        duration_us: row.get("duration_us")?,
        soft: row.get("soft")?,
    })
}

pub(super) fn deployment(row: &Row<'_>) -> StorageResult<DeploymentRecord> {
    let json = |name: &str| -> StorageResult<Option<serde_json::Value>> {
        let text: Option<String> = row.get(name)?;
        text.map(|t| json_column(name, &t)).transpose()
    };
    Ok(DeploymentRecord {
        id: row.get("id")?,
        kind: row.get("kind")?,
        name: row.get("name")?,
        size: row.get("size")?,
        describe: json("describe")?,
        component: row.get("component")?,
        created_at: row.get("created_at")?,
        limits: json("limits")?,
        provider_settings: json("provider_settings")?,
        activated_at: row.get("activated_at")?,
    })
}
