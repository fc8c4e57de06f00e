//! PostgreSQL implementation of [`Storage`], selected by a `postgres://` database URL: a sqlx
//! pool, one transaction per write (PostgreSQL commits concurrent transactions together on its
//! own), the embedded migrations run at open.
//!
//! Several hosts share one database. A host holds a lease on every invocation it runs (taken when
//! it creates or resumes one) and, for an exclusive handler, on the object's key; its heartbeat
//! extends them. A host that dies stops extending them and, once they expire, another host
//! resumes its invocations. Every write of a claimed invocation checks, in its own transaction,
//! that this host still holds the leases at the epoch it took them (fencing): a host that was
//! taken over cannot write for the invocation any more. Each host process holds a session
//! advisory lock on its host id, so two processes cannot act as one host.

mod rows;
mod scratch;

pub use scratch::{DEFAULT_TEST_SERVER, ScratchDatabase};

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Postgres, QueryBuilder, Row, Transaction};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::{
    CallMarker, Created, DeploymentRecord, Invocation, InvocationFilter, NewInvocation, Outcome,
    StateOp, StateScope, Storage, StorageError, StorageOptions, StorageResult, Table,
    UnfinishedScan, now_ms,
};
use crate::journal::{Entry, EntryKind};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections in the pool: every running invocation's commits and reads share them.
const MAX_CONNECTIONS: u32 = 16;
/// How long a starting host waits for its previous process (killed, its connection not yet
/// closed by the server) to let go of the host id.
const LOCK_WAIT: Duration = Duration::from_secs(10);
/// The advisory lock's first key: "cair" in ASCII, so it does not collide with other users of
/// the database; the second is the host id's hash.
const LOCK_CLASS: i32 = 0x6361_6972;

/// Takes `$1` as the lease key, `$2` as the owner and `$3` as the lifetime (ms): free, expired
/// or the owner's own, it becomes the owner's at the next epoch; otherwise no row.
const TAKE_LEASE: &str = "INSERT INTO leases (lease_key, owner, epoch, expires_at) \
     VALUES ($1, $2, 1, cairn_now_ms() + $3) \
     ON CONFLICT (lease_key) DO UPDATE SET owner = EXCLUDED.owner, epoch = leases.epoch + 1, \
     expires_at = EXCLUDED.expires_at \
     WHERE leases.owner = EXCLUDED.owner OR leases.expires_at < cairn_now_ms() \
     RETURNING epoch";

pub struct PgStorage {
    pool: PgPool,
    host: String,
    ttl_ms: i64,
    /// The leases this process holds, by invocation.
    fences: Arc<Fences>,
    heartbeat: JoinHandle<()>,
    /// Holds the advisory lock on the host id.
    _owner: Mutex<PgConnection>,
}

/// Leases held, by invocation: (lease key, epoch).
type Fences = std::sync::Mutex<HashMap<String, Vec<(String, i64)>>>;

impl Drop for PgStorage {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

impl PgStorage {
    pub async fn open(url: &str, options: &StorageOptions) -> Result<Self, StorageError> {
        let connect = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect.clone())
            .await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StorageError::Migration(e.to_string()))?;
        let owner = take_host_id(&connect, &options.host_id).await?;
        let ttl_ms = options.lease_ttl.as_millis() as i64;
        let fences = Arc::new(Fences::default());
        let heartbeat = tokio::spawn(heartbeat(
            pool.clone(),
            options.host_id.clone(),
            fences.clone(),
            ttl_ms,
        ));
        Ok(PgStorage {
            pool,
            host: options.host_id.clone(),
            ttl_ms,
            fences,
            heartbeat,
            _owner: Mutex::new(owner),
        })
    }

    /// Stops extending this host's leases, as if it had died (for tests).
    #[cfg(test)]
    pub(crate) fn stop_heartbeat(&self) {
        self.heartbeat.abort();
    }

    fn fences_of(&self, id: &str) -> Vec<(String, i64)> {
        let fences = self.fences.lock().unwrap_or_else(|p| p.into_inner());
        fences.get(id).cloned().unwrap_or_default()
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<(String, i64)>>> {
        self.fences.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks, in `tx`, that this host still holds every lease it took for invocation `id` (and
    /// keeps them from being taken over until `tx` ends).
    async fn fence(&self, tx: &mut Tx<'_>, id: &str) -> StorageResult<()> {
        for (lease, epoch) in self.fences_of(id) {
            let held: Option<i64> = sqlx::query_scalar(
                "SELECT epoch FROM leases WHERE lease_key = $1 AND owner = $2 AND epoch = $3 \
                 FOR SHARE",
            )
            .bind(&lease)
            .bind(&self.host)
            .bind(epoch)
            .fetch_optional(&mut **tx)
            .await?;
            if held.is_none() {
                return Err(StorageError::Fenced(format!(
                    "invocation {id}: lease {lease} was taken over by another host"
                )));
            }
        }
        Ok(())
    }
}

/// A connection holding the advisory lock on `host` (see the module header).
async fn take_host_id(options: &PgConnectOptions, host: &str) -> StorageResult<PgConnection> {
    let mut conn = PgConnection::connect_with(options).await?;
    let started = std::time::Instant::now();
    loop {
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(LOCK_CLASS)
            .bind(host)
            .fetch_one(&mut conn)
            .await?;
        if taken {
            return Ok(conn);
        }
        if started.elapsed() > LOCK_WAIT {
            return Err(StorageError::Database(format!(
                "another Cairn process runs as host {host} on this database (each host needs a \
                 data dir of its own)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Extends the leases this process holds four times per lifetime, for as long as the storage
/// lives. Only those: a lease it failed to release, or one of an earlier process of this host
/// that nothing resumed, expires on its own.
async fn heartbeat(pool: PgPool, host: String, fences: Arc<Fences>, ttl_ms: i64) {
    let mut tick = tokio::time::interval(Duration::from_millis((ttl_ms / 4).max(1) as u64));
    loop {
        tick.tick().await;
        let held: Vec<String> = {
            let fences = fences.lock().unwrap_or_else(|p| p.into_inner());
            fences
                .values()
                .flatten()
                .map(|(lease, _)| lease.clone())
                .collect()
        };
        if held.is_empty() {
            continue;
        }
        // A lease a write is checking right now (its row share-locked) is skipped, and extended
        // by the next beat: waiting for it, while holding others, could deadlock with a write
        // that checks two.
        let extended = sqlx::query(
            "UPDATE leases SET expires_at = cairn_now_ms() + $3 WHERE lease_key IN \
             (SELECT lease_key FROM leases WHERE owner = $1 AND lease_key = ANY($2) \
             ORDER BY lease_key FOR NO KEY UPDATE SKIP LOCKED)",
        )
        .bind(&host)
        .bind(&held)
        .bind(ttl_ms)
        .execute(&pool)
        .await;
        if let Err(e) = extended {
            tracing::warn!(error = %e, "could not extend this host's leases");
        }
    }
}

type Tx<'a> = Transaction<'a, Postgres>;

#[async_trait]
impl Storage for PgStorage {
    async fn create_invocation(&self, inv: &NewInvocation) -> StorageResult<Created> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        if let Some((key, retention_ms)) = &inv.idempotency {
            let target = inv.target();
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE target = $1 AND idempotency_key = $2 \
                 AND created_at < $3",
            )
            .bind(&target)
            .bind(key)
            .bind(now - retention_ms)
            .execute(&mut *tx)
            .await?;
            // A concurrent claim of the same key waits here for the other transaction, then
            // finds its row.
            let claimed = sqlx::query(
                "INSERT INTO idempotency_keys (target, idempotency_key, invocation_id, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (target, idempotency_key) DO NOTHING",
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
                    "SELECT invocation_id FROM idempotency_keys \
                     WHERE target = $1 AND idempotency_key = $2",
                )
                .bind(&target)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| {
                    StorageError::Corrupt(format!("idempotency key {key:?} vanished"))
                })?;
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
        let providers = serde_json::to_string(&inv.providers)
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO invocations (id, service, handler, object_key, status, input, \
             deployment_id, providers, attempt, idempotency_key, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, 1, $8, $9, $9)",
        )
        .bind(&inv.id)
        .bind(&inv.service)
        .bind(&inv.handler)
        .bind(&inv.key)
        .bind(&inv.input)
        .bind(&inv.deployment_id)
        .bind(providers)
        .bind(inv.idempotency.as_ref().map(|(k, _)| k))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // The creating host runs it: its lease is taken in the same transaction.
        let lease = format!("inv:{}", inv.id);
        let epoch: i64 = sqlx::query_scalar(TAKE_LEASE)
            .bind(&lease)
            .bind(&self.host)
            .bind(self.ttl_ms)
            .fetch_one(&mut *tx)
            .await?;
        // Held before anyone can see it: this host's own scan for orphans must never take it.
        self.held().insert(inv.id.clone(), vec![(lease, epoch)]);
        if let Err(e) = tx.commit().await {
            self.held().remove(&inv.id);
            return Err(e.into());
        }
        Ok(Created::New(Invocation::created(inv, now)))
    }

    async fn invocation(&self, id: &str) -> StorageResult<Option<Invocation>> {
        let sql = concat!(
            "SELECT ",
            invocation_columns!(),
            " FROM invocations WHERE id = $1"
        );
        sqlx::query(sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| rows::invocation(&row))
            .transpose()
    }

    async fn list_invocations(&self, filter: &InvocationFilter) -> StorageResult<Vec<Invocation>> {
        let mut query = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            invocation_columns!(),
            " FROM invocations WHERE TRUE"
        ));
        // Only the filters given, so the planner can walk an index.
        for (column, value) in [
            ("status", &filter.status),
            ("service", &filter.service),
            ("object_key", &filter.key),
        ] {
            if let Some(value) = value {
                query.push(format!(" AND {column} = ")).push_bind(value);
            }
        }
        let limit = i64::from(filter.limit.unwrap_or(100).min(10_000));
        query
            .push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(limit);
        let found = query.build().fetch_all(&self.pool).await?;
        found.iter().map(rows::invocation).collect()
    }

    async fn unfinished_invocations(
        &self,
        scan: &mut UnfinishedScan,
        limit: u32,
    ) -> StorageResult<Vec<Invocation>> {
        let until = match scan.until {
            Some(until) => until,
            None => {
                sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM invocations")
                    .fetch_one(&self.pool)
                    .await?
            }
        };
        // Running, and no other live host holds its lease: its host died (or is this one, in
        // an earlier process). Those this process holds run here already.
        let sql = concat!(
            "SELECT seq, ",
            invocation_columns!(),
            " FROM invocations i WHERE status = 'running' AND seq > $1 AND seq <= $2 \
             AND NOT (i.id = ANY($5)) \
             AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.lease_key = 'inv:' || i.id \
             AND l.owner <> $4 AND l.expires_at > cairn_now_ms()) ORDER BY seq LIMIT $3"
        );
        let held: Vec<String> = self.held().keys().cloned().collect();
        let found = sqlx::query(sql)
            .bind(scan.after)
            .bind(until)
            .bind(i64::from(limit))
            .bind(&self.host)
            .bind(&held)
            .fetch_all(&self.pool)
            .await?;
        scan.until = Some(until);
        let mut page = Vec::with_capacity(found.len());
        for row in &found {
            scan.after = row.try_get::<i64, _>("seq")?;
            // Its journal is read once it is claimed: another host may move it on until then.
            page.push(rows::invocation(row)?);
        }
        // Created here while the query ran (held from before its commit, after `held` was read).
        let held = self.held();
        page.retain(|invocation| !held.contains_key(&invocation.id));
        Ok(page)
    }

    async fn set_attempt(&self, id: &str, attempt: u32) -> StorageResult<()> {
        let mut tx = self.pool.begin().await?;
        self.fence(&mut tx, id).await?;
        sqlx::query("UPDATE invocations SET attempt = $1, updated_at = $2 WHERE id = $3")
            .bind(attempt as i32)
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn complete(
        &self,
        id: &str,
        outcome: &Outcome,
        scope: StateScope<'_>,
        entries: Vec<(Entry, Option<StateOp>)>,
    ) -> StorageResult<()> {
        let now = now_ms();
        let (status, output, failure) = outcome.columns()?;
        let mut tx = self.pool.begin().await?;
        self.fence(&mut tx, id).await?;
        append_entries(&mut tx, id, &scope, &entries).await?;
        sqlx::query(
            "UPDATE invocations SET status = $1, output = $2, failure = $3, updated_at = $4, \
             completed_at = $4 WHERE id = $5",
        )
        .bind(status)
        .bind(output)
        .bind(failure)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM call_markers WHERE invocation_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn journal(&self, id: &str) -> StorageResult<Vec<Entry>> {
        let sql = concat!(
            "SELECT ",
            entry_columns!(),
            " FROM journal WHERE invocation_id = $1 ORDER BY idx"
        );
        let found = sqlx::query(sql).bind(id).fetch_all(&self.pool).await?;
        found.iter().map(rows::entry).collect()
    }

    async fn append_batch(
        &self,
        id: &str,
        scope: StateScope<'_>,
        entries: Vec<(Entry, Option<StateOp>)>,
    ) -> StorageResult<()> {
        let mut tx = self.pool.begin().await?;
        self.fence(&mut tx, id).await?;
        append_entries(&mut tx, id, &scope, &entries).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn append_and_mark(
        &self,
        id: &str,
        scope: StateScope<'_>,
        entries: Vec<(Entry, Option<StateOp>)>,
        marker: CallMarker,
    ) -> StorageResult<bool> {
        let mut tx = self.pool.begin().await?;
        self.fence(&mut tx, id).await?;
        append_entries(&mut tx, id, &scope, &entries).await?;
        let inserted = sqlx::query(
            "INSERT INTO call_markers (invocation_id, idx, name, idempotency_key, started_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (invocation_id, idx) DO NOTHING",
        )
        .bind(id)
        .bind(marker.index as i32)
        .bind(&marker.name)
        .bind(&marker.idempotency_key)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted == 0)
    }

    async fn truncate_journal(&self, id: &str, from_index: u32) -> StorageResult<()> {
        let mut tx = self.pool.begin().await?;
        self.fence(&mut tx, id).await?;
        sqlx::query("DELETE FROM journal WHERE invocation_id = $1 AND idx >= $2")
            .bind(id)
            .bind(from_index as i32)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn state_get(
        &self,
        service: &str,
        key: &str,
        name: &str,
    ) -> StorageResult<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar(
            "SELECT value FROM state WHERE service = $1 AND object_key = $2 AND name = $3",
        )
        .bind(service)
        .bind(key)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn state_keys(&self, service: &str, key: &str) -> StorageResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM state WHERE service = $1 AND object_key = $2 ORDER BY name",
        )
        .bind(service)
        .bind(key)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn put_deployment(&self, d: &DeploymentRecord) -> StorageResult<()> {
        let [describe, limits, provider_settings] = d.json_columns();
        sqlx::query(
            "INSERT INTO deployments (id, kind, name, size, describe, component, created_at, \
             limits, provider_settings, activated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn deployments(&self) -> StorageResult<Vec<DeploymentRecord>> {
        let found = sqlx::query(
            "SELECT id, kind, name, size, describe, component, created_at, limits, \
             provider_settings, COALESCE(activated_at, created_at) AS activated_at \
             FROM deployments ORDER BY COALESCE(activated_at, created_at), created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        found.iter().map(rows::deployment).collect()
    }

    async fn activate_deployment(
        &self,
        id: &str,
        limits: Option<&serde_json::Value>,
        provider_settings: Option<&serde_json::Value>,
        at: i64,
    ) -> StorageResult<()> {
        sqlx::query(
            "UPDATE deployments SET activated_at = $1, limits = COALESCE($2, limits), \
             provider_settings = COALESCE($3, provider_settings) WHERE id = $4",
        )
        .bind(at)
        .bind(limits.map(serde_json::Value::to_string))
        .bind(provider_settings.map(serde_json::Value::to_string))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_deployment(&self, id: &str) -> StorageResult<bool> {
        let deleted = sqlx::query("DELETE FROM deployments WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }

    async fn running_invocations_pinned_to(
        &self,
        id: &str,
        limit: u32,
    ) -> StorageResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM invocations WHERE status = 'running' AND (deployment_id = $1 OR \
             EXISTS (SELECT 1 FROM jsonb_each_text(providers::jsonb) AS p WHERE p.value = $1)) \
             ORDER BY created_at, id LIMIT $2",
        )
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn count_rows(&self, table: Table) -> StorageResult<i64> {
        let sql = match table {
            Table::Invocations => "SELECT COUNT(*) FROM invocations",
            Table::Journal => "SELECT COUNT(*) FROM journal",
            Table::State => "SELECT COUNT(*) FROM state",
        };
        Ok(sqlx::query_scalar(sql).fetch_one(&self.pool).await?)
    }

    fn shared(&self) -> bool {
        true
    }

    async fn claim(&self, id: &str, lease: &str) -> StorageResult<bool> {
        if self.fences_of(id).iter().any(|(held, _)| held == lease) {
            // Held for another run of the same invocation in this process.
            return Ok(false);
        }
        let epoch: Option<i64> = sqlx::query_scalar(TAKE_LEASE)
            .bind(lease)
            .bind(&self.host)
            .bind(self.ttl_ms)
            .fetch_optional(&self.pool)
            .await?;
        let Some(epoch) = epoch else {
            return Ok(false);
        };
        let mut held = self.held();
        held.entry(id.to_string())
            .or_default()
            .push((lease.to_string(), epoch));
        Ok(true)
    }

    async fn release(&self, id: &str) -> StorageResult<()> {
        let leases = self.held().remove(id).unwrap_or_default();
        for (lease, epoch) in leases {
            sqlx::query("DELETE FROM leases WHERE lease_key = $1 AND owner = $2 AND epoch = $3")
                .bind(&lease)
                .bind(&self.host)
                .bind(epoch)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

/// Appends `entries` of invocation `id` in `tx`, each with the state mutation it records.
async fn append_entries(
    tx: &mut Tx<'_>,
    id: &str,
    scope: &StateScope<'_>,
    entries: &[(Entry, Option<StateOp>)],
) -> StorageResult<()> {
    for (entry, op) in entries {
        sqlx::query(concat!(
            "INSERT INTO journal (invocation_id, ",
            entry_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(id)
        .bind(entry.index as i32)
        .bind(entry.kind.as_str())
        .bind(&entry.name)
        .bind(&entry.args_digest)
        .bind(&entry.result)
        .bind(&entry.detail)
        .bind(entry.started_at)
        .bind(entry.duration_us)
        .bind(entry.soft)
        .execute(&mut **tx)
        .await?;
        // As in SQLite: a soft failure may have come after the effect, so its marker stays.
        if entry.kind == EntryKind::Call && !entry.soft {
            sqlx::query("DELETE FROM call_markers WHERE invocation_id = $1 AND idx = $2")
                .bind(id)
                .bind(entry.index as i32)
                .execute(&mut **tx)
                .await?;
        }
        let Some(op) = op else { continue };
        let (service, key) = (scope.service, scope.key);
        let query = match op {
            StateOp::Set { name, value } => sqlx::query(
                "INSERT INTO state (service, object_key, name, value) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (service, object_key, name) DO UPDATE SET value = excluded.value",
            )
            .bind(service)
            .bind(key)
            .bind(name)
            .bind(value),
            StateOp::Clear { name } => sqlx::query(
                "DELETE FROM state WHERE service = $1 AND object_key = $2 AND name = $3",
            )
            .bind(service)
            .bind(key)
            .bind(name),
            StateOp::ClearAll => {
                sqlx::query("DELETE FROM state WHERE service = $1 AND object_key = $2")
                    .bind(service)
                    .bind(key)
            }
        };
        query.execute(&mut **tx).await?;
    }
    Ok(())
}
