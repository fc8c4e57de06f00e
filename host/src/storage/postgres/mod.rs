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

/// The channel of the hosts' notices (see [`notices`]), for SQL built with `concat!`.
macro_rules! notice_channel {
    () => {
        "cairn"
    };
}

mod deployments;
mod ending;
mod group;
mod leases;
mod notices;
mod rows;
mod scratch;
mod state;

pub use scratch::ScratchDatabase;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder, Row, Transaction};

use group::{Group, Then, Write};
use leases::Leases;

use super::{
    CallMarker, Changed, ChangedElsewhere, Created, DeploymentRecord, Invocation, InvocationFilter,
    InvocationStatus, NewInvocation, Notice, Outcome, PromiseCompletion, PromiseOutcome, Purged,
    StateAudit, StateEdit, StateEdited, StateOp, StateScope, StatusChange, Storage, StorageError,
    StorageOptions, StorageResult, Table, UnfinishedScan, now_ms,
};
use crate::journal::Entry;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections in the pool: every running invocation's commits and reads share them.
const MAX_CONNECTIONS: u32 = 16;

pub struct PgStorage {
    pool: PgPool,
    leases: Arc<Leases>,
    /// Every journal append, call marker, attempt and completion (group commit).
    group: Group,
    /// What the other hosts notify (`LISTEN`).
    notices: notices::Notices,
    flush: crate::metrics::FlushStats,
}

impl PgStorage {
    pub async fn open(url: &str, options: &StorageOptions) -> Result<Self, StorageError> {
        let connect = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            // No ping before every use: it was a round trip per statement (13 % of the host's
            // CPU under load). A connection the server dropped fails its statement, which is
            // retried like any storage error, and the pool replaces it.
            .test_before_acquire(false)
            .connect_with(connect.clone())
            .await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StorageError::Migration(e.to_string()))?;
        let leases = Arc::new(Leases::start(&pool, &connect, options).await?);
        let flush = crate::metrics::FlushStats::default();
        let group = Group::start(pool.clone(), leases.clone(), flush.clone());
        let notices = notices::Notices::start(&pool);
        Ok(PgStorage {
            pool,
            leases,
            group,
            notices,
            flush,
        })
    }

    /// A transaction for a write of invocation `id`, begun with the check that this host still
    /// holds its leases (see [`Leases::fence`]).
    async fn fenced(&self, id: &str) -> StorageResult<Tx<'_>> {
        let mut tx = self.pool.begin().await?;
        self.leases.fence(&mut tx, id).await?;
        Ok(tx)
    }

    /// Stops extending this host's leases, as if it had died (for tests).
    #[cfg(test)]
    pub(crate) fn stop_heartbeat(&self) {
        self.leases.stop_heartbeat();
    }
}

pub(super) type Tx<'a> = Transaction<'a, Postgres>;

#[async_trait]
impl Storage for PgStorage {
    fn flush_stats(&self) -> crate::metrics::FlushStats {
        self.flush.clone()
    }

    async fn create_invocation(&self, inv: &NewInvocation) -> StorageResult<Created> {
        let now = now_ms();
        // With an idempotency key, a transaction that claims the key first; without, the one
        // statement that creates the invocation with its lease.
        let mut tx = None;
        if let Some((key, retention_ms)) = &inv.idempotency {
            let open = tx.insert(self.pool.begin().await?);
            let target = inv.target();
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE target = $1 AND idempotency_key = $2 \
                 AND created_at < $3",
            )
            .bind(&target)
            .bind(key)
            .bind(now - retention_ms)
            .execute(&mut **open)
            .await?;
            // A concurrent claim of the same key waits here for the other transaction, then
            // finds its row.
            let claimed = sqlx::query(
                "INSERT INTO idempotency_keys (target, idempotency_key, invocation_id, created_at, \
                 expires_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (target, idempotency_key) \
                 DO NOTHING",
            )
            .bind(&target)
            .bind(key)
            .bind(&inv.id)
            .bind(now)
            .bind(now.saturating_add(*retention_ms))
            .execute(&mut **open)
            .await?
            .rows_affected();
            if claimed == 0 {
                let existing: String = sqlx::query_scalar(
                    "SELECT invocation_id FROM idempotency_keys \
                     WHERE target = $1 AND idempotency_key = $2",
                )
                .bind(&target)
                .bind(key)
                .fetch_optional(&mut **open)
                .await?
                .ok_or_else(|| {
                    StorageError::Corrupt(format!("idempotency key {key:?} vanished"))
                })?;
                if let Some(open) = tx.take() {
                    open.commit().await?;
                }
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
        self.leases.creating(&inv.id);
        let create = sqlx::query_scalar::<_, i64>(leases::CREATE_LEASED)
            .bind(&inv.id)
            .bind(&inv.service)
            .bind(&inv.handler)
            .bind(&inv.key)
            .bind(&inv.input)
            .bind(&inv.deployment_id)
            .bind(providers)
            .bind(inv.idempotency.as_ref().map(|(k, _)| k))
            .bind(now)
            .bind(inv.not_before)
            .bind(&inv.trace_parent)
            .bind(self.leases.host())
            .bind(self.leases.ttl_ms());
        let created = match tx {
            Some(mut tx) => match create.fetch_one(&mut *tx).await {
                Ok(epoch) => tx.commit().await.map(|()| epoch),
                Err(e) => Err(e),
            },
            None => create.fetch_one(&self.pool).await,
        };
        match created {
            Ok(epoch) => self.leases.created(&inv.id, epoch),
            Err(e) => {
                self.leases.forget(&inv.id);
                return Err(e.into());
            }
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

    async fn changed_elsewhere(
        &self,
        ids: &[String],
    ) -> StorageResult<Vec<(String, ChangedElsewhere)>> {
        let rows: Vec<(String, String, bool)> = sqlx::query_as(
            "SELECT id, status, cancelled_at IS NOT NULL FROM invocations WHERE id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for (id, status, cancelled) in rows {
            let status = InvocationStatus::parse(&status)
                .ok_or_else(|| StorageError::Corrupt(format!("unknown status {status:?}")))?;
            found.insert(id, (status, cancelled));
        }
        Ok(ids
            .iter()
            .filter_map(|id| {
                let change = ChangedElsewhere::of(found.get(id).copied())?;
                Some((id.clone(), change))
            })
            .collect())
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
        for (bound, value) in [(">=", filter.since), ("<", filter.until)] {
            if let Some(value) = value {
                query
                    .push(format!(" AND created_at {bound} "))
                    .push_bind(value);
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
        let held = self.leases.held_ids();
        let found = sqlx::query(sql)
            .bind(scan.after)
            .bind(until)
            .bind(i64::from(limit))
            .bind(self.leases.host())
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
        page.retain(|invocation| !self.leases.holds(&invocation.id));
        Ok(page)
    }

    async fn set_attempt(&self, id: &str, attempt: u32) -> StorageResult<()> {
        self.group
            .write(Write::new(id, None, Vec::new(), Then::SetAttempt(attempt)))
            .await?;
        Ok(())
    }

    async fn change_status(&self, id: &str, change: &StatusChange) -> StorageResult<Changed> {
        ending::change_status(&self.pool, id, change).await
    }

    async fn complete(
        &self,
        id: &str,
        outcome: &Outcome,
        scope: StateScope<'_>,
        entries: Vec<(Entry, Option<StateOp>)>,
    ) -> StorageResult<()> {
        let then = Then::Finish(outcome.clone());
        self.group
            .write(Write::new(id, Some(scope), entries, then))
            .await?;
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
        self.group
            .write(Write::new(id, Some(scope), entries, Then::Nothing))
            .await?;
        Ok(())
    }

    async fn append_and_mark(
        &self,
        id: &str,
        scope: StateScope<'_>,
        entries: Vec<(Entry, Option<StateOp>)>,
        marker: CallMarker,
    ) -> StorageResult<bool> {
        let write = Write::new(id, Some(scope), entries, Then::Mark(marker));
        self.group.write(write).await
    }

    async fn call_marked_at(&self, id: &str, index: u32) -> StorageResult<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT started_at FROM call_markers WHERE invocation_id = $1 AND idx = $2",
        )
        .bind(id)
        .bind(index as i32)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn truncate_journal(&self, id: &str, from_index: u32) -> StorageResult<()> {
        let mut tx = self.fenced(id).await?;
        sqlx::query("DELETE FROM journal WHERE invocation_id = $1 AND idx >= $2")
            .bind(id)
            .bind(from_index as i32)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_promise(&self, id: &str, invocation_id: &str) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO promises (id, invocation_id, status, created_at) \
             VALUES ($1, $2, 'pending', cairn_now_ms())",
        )
        .bind(id)
        .bind(invocation_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn promise(&self, id: &str) -> StorageResult<Option<Option<PromiseOutcome>>> {
        let row = sqlx::query("SELECT status, value FROM promises WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| -> StorageResult<Option<PromiseOutcome>> {
            let status: String = row.try_get("status")?;
            PromiseOutcome::from_columns(&status, row.try_get("value")?)
        })
        .transpose()
    }

    async fn complete_promise(
        &self,
        id: &str,
        outcome: &PromiseOutcome,
    ) -> StorageResult<PromiseCompletion> {
        let (status, value) = outcome.columns();
        // Completed, or the row as it stands: one round trip either way.
        // Resolved: the hosts are told at the commit (a waiter may run on another).
        let row = sqlx::query(concat!(
            "WITH done AS (UPDATE promises SET status = $2, value = $3, completed_at = \
             cairn_now_ms() WHERE id = $1 AND status = 'pending' RETURNING id), \
             told AS (SELECT pg_notify('",
            notice_channel!(),
            "', 'p:' || id) FROM done) \
             SELECT (SELECT count(*) FROM done) AS completed, (SELECT count(*) FROM told), \
             p.status, p.value FROM (SELECT 1) one LEFT JOIN promises p ON p.id = $1"
        ))
        .bind(id)
        .bind(status)
        .bind(value)
        .fetch_one(&self.pool)
        .await?;
        if row.try_get::<i64, _>("completed")? > 0 {
            return Ok(PromiseCompletion::Completed);
        }
        let status: Option<String> = row.try_get("status")?;
        match status {
            None => Ok(PromiseCompletion::NotFound),
            Some(status) => match PromiseOutcome::from_columns(&status, row.try_get("value")?)? {
                Some(first) => Ok(PromiseCompletion::AlreadyCompleted(first)),
                None => Err(StorageError::Corrupt(format!(
                    "promise {id} is pending but could not be completed"
                ))),
            },
        }
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

    async fn state_entries(
        &self,
        service: &str,
        key: &str,
        limit: u32,
    ) -> StorageResult<Vec<(String, Vec<u8>)>> {
        state::entries(&self.pool, service, key, limit).await
    }

    async fn edit_state(&self, edit: &StateEdit) -> StorageResult<StateEdited> {
        state::edit(&self.pool, edit).await
    }

    async fn state_audit(
        &self,
        service: &str,
        key: &str,
        limit: u32,
    ) -> StorageResult<Vec<StateAudit>> {
        state::audit(&self.pool, service, key, limit).await
    }

    async fn put_deployment(&self, d: &DeploymentRecord) -> StorageResult<()> {
        deployments::put(&self.pool, d).await
    }

    async fn deployments(&self) -> StorageResult<Vec<DeploymentRecord>> {
        deployments::all(&self.pool, None).await
    }

    async fn deployments_activated_since(
        &self,
        since: i64,
    ) -> StorageResult<Vec<DeploymentRecord>> {
        deployments::all(&self.pool, Some(since)).await
    }

    async fn activate_deployment(
        &self,
        id: &str,
        limits: Option<&serde_json::Value>,
        provider_settings: Option<&serde_json::Value>,
        at: i64,
    ) -> StorageResult<()> {
        deployments::activate(&self.pool, id, limits, provider_settings, at).await
    }

    async fn delete_deployment(&self, id: &str) -> StorageResult<bool> {
        deployments::delete(&self.pool, id).await
    }

    async fn running_invocations_pinned_to(
        &self,
        id: &str,
        limit: u32,
    ) -> StorageResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM invocations WHERE status IN ('running', 'paused') AND \
             (deployment_id = $1 OR EXISTS (SELECT 1 FROM jsonb_each_text(providers::jsonb) AS p \
             WHERE p.value = $1)) ORDER BY created_at, id LIMIT $2",
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
            Table::IdempotencyKeys => "SELECT COUNT(*) FROM idempotency_keys",
        };
        Ok(sqlx::query_scalar(sql).fetch_one(&self.pool).await?)
    }

    async fn purge(&self, now: i64, finished_before: i64, limit: u32) -> StorageResult<Purged> {
        ending::purge(&self.pool, now, finished_before, limit).await
    }

    async fn host_secret(&self, name: &str, fresh: Vec<u8>) -> StorageResult<Vec<u8>> {
        sqlx::query(
            "INSERT INTO host_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(&fresh)
        .execute(&self.pool)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM host_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    fn shared(&self) -> bool {
        true
    }

    fn notices(&self) -> Option<tokio::sync::broadcast::Receiver<Notice>> {
        Some(self.notices.subscribe())
    }

    async fn claim(&self, id: &str, lease: &str) -> StorageResult<bool> {
        self.leases.claim(&self.pool, id, lease).await
    }

    async fn release(&self, id: &str) -> StorageResult<()> {
        self.leases.release(&self.pool, id).await
    }
}
