//! The leases of one host on a shared PostgreSQL database (see the module header of
//! [`super`]): taking and giving them back, the heartbeat that extends them, the check every write
//! makes (fencing), and the advisory lock that makes a host id one process's.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::Tx;
use crate::storage::{StorageError, StorageOptions, StorageResult};

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

/// Inserts an invocation (`$1`..`$11`, in [`super::PgStorage::create_invocation`]'s order) and
/// takes its lease for owner `$12` for `$13` ms in the same statement, atomic on its own; the
/// lease's epoch. A fresh id has no lease yet; a leftover row of one is taken over.
pub(super) const CREATE_LEASED: &str = "WITH created AS (INSERT INTO invocations (id, service, \
     handler, object_key, status, input, deployment_id, providers, attempt, idempotency_key, \
     created_at, updated_at, not_before, trace_parent) \
     VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, 1, $8, $9, $9, $10, $11) RETURNING id) \
     INSERT INTO leases (lease_key, owner, epoch, expires_at) \
     SELECT 'inv:' || id, $12, 1, cairn_now_ms() + $13 FROM created \
     ON CONFLICT (lease_key) DO UPDATE SET owner = EXCLUDED.owner, epoch = leases.epoch + 1, \
     expires_at = EXCLUDED.expires_at RETURNING epoch";

/// Leases held by this process, by invocation: (lease key, epoch).
type Held = std::sync::Mutex<HashMap<String, Vec<(String, i64)>>>;

pub(super) struct Leases {
    host: String,
    ttl_ms: i64,
    held: Arc<Held>,
    heartbeat: JoinHandle<()>,
    /// Holds the advisory lock on the host id.
    _host_lock: Mutex<PgConnection>,
}

impl Drop for Leases {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

impl Leases {
    /// Takes the host id (waiting for a previous process of it to go) and starts the heartbeat.
    pub(super) async fn start(
        pool: &PgPool,
        connect: &PgConnectOptions,
        options: &StorageOptions,
    ) -> StorageResult<Leases> {
        let host_lock = take_host_id(connect, &options.host_id).await?;
        let ttl_ms = options.lease_ttl.as_millis() as i64;
        let held = Arc::new(Held::default());
        let heartbeat = tokio::spawn(heartbeat(
            pool.clone(),
            options.host_id.clone(),
            held.clone(),
            ttl_ms,
        ));
        Ok(Leases {
            host: options.host_id.clone(),
            ttl_ms,
            held,
            heartbeat,
            _host_lock: Mutex::new(host_lock),
        })
    }

    pub(super) fn host(&self) -> &str {
        &self.host
    }

    fn held(&self) -> MutexGuard<'_, HashMap<String, Vec<(String, i64)>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ids of the invocations this process holds leases for.
    pub(super) fn held_ids(&self) -> Vec<String> {
        self.held().keys().cloned().collect()
    }

    pub(super) fn holds(&self, id: &str) -> bool {
        self.held().contains_key(id)
    }

    /// Holds the lease of invocation `id` being created by [`CREATE_LEASED`], from before the
    /// statement runs (so that this host's orphan scan never takes it); its epoch is set by
    /// [`Self::created`] once the statement has taken it, or it is [`Self::forget`]-ten.
    pub(super) fn creating(&self, id: &str) {
        self.held()
            .insert(id.to_string(), vec![(format!("inv:{id}"), 0)]);
    }

    /// The lease of invocation `id` was taken at `epoch` (see [`Self::creating`]).
    pub(super) fn created(&self, id: &str, epoch: i64) {
        if let Some(leases) = self.held().get_mut(id) {
            for (_, held) in leases.iter_mut() {
                *held = epoch;
            }
        }
    }

    pub(super) fn ttl_ms(&self) -> i64 {
        self.ttl_ms
    }

    /// Forgets the leases of `id` without giving them back (their transaction did not commit).
    pub(super) fn forget(&self, id: &str) {
        self.held().remove(id);
    }

    /// Takes `lease` for invocation `id`; `false` while another live host holds it, or this
    /// process holds it for `id` already (another run of the same invocation).
    pub(super) async fn claim(&self, pool: &PgPool, id: &str, lease: &str) -> StorageResult<bool> {
        let holding = self.held().get(id).cloned().unwrap_or_default();
        if holding.iter().any(|(held, _)| held == lease) {
            return Ok(false);
        }
        let epoch: Option<i64> = sqlx::query_scalar(TAKE_LEASE)
            .bind(lease)
            .bind(&self.host)
            .bind(self.ttl_ms)
            .fetch_optional(pool)
            .await?;
        let Some(epoch) = epoch else {
            return Ok(false);
        };
        self.held()
            .entry(id.to_string())
            .or_default()
            .push((lease.to_string(), epoch));
        Ok(true)
    }

    /// Gives back every lease held for invocation `id`.
    pub(super) async fn release(&self, pool: &PgPool, id: &str) -> StorageResult<()> {
        let leases = self.held().remove(id).unwrap_or_default();
        if leases.is_empty() {
            return Ok(());
        }
        let (keys, epochs): (Vec<String>, Vec<i64>) = leases.into_iter().unzip();
        sqlx::query(
            "DELETE FROM leases l USING UNNEST($1::text[], $2::int8[]) AS g(lease_key, epoch) \
             WHERE l.lease_key = g.lease_key AND l.epoch = g.epoch AND l.owner = $3",
        )
        .bind(&keys)
        .bind(&epochs)
        .bind(&self.host)
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Checks, in `tx`, that this host still holds every lease it took for invocation `id` (and
    /// keeps them from being taken over until `tx` ends).
    pub(super) async fn fence(&self, tx: &mut Tx<'_>, id: &str) -> StorageResult<()> {
        if self.fence_all(tx, &[id]).await?[0] {
            return Ok(());
        }
        Err(StorageError::Fenced(format!(
            "invocation {id}: a lease was taken over by another host"
        )))
    }

    /// [`Self::fence`] for several invocations in one statement: per id, whether this host still
    /// holds all its leases. The rows are share-locked in key order (`inv:` before `key:`), the
    /// order the heartbeat takes them in.
    pub(super) async fn fence_all(
        &self,
        tx: &mut Tx<'_>,
        ids: &[&str],
    ) -> StorageResult<Vec<bool>> {
        let wanted: Vec<Vec<(String, i64)>> = {
            let held = self.held();
            ids.iter()
                .map(|id| held.get(*id).cloned().unwrap_or_default())
                .collect()
        };
        let (keys, epochs): (Vec<&str>, Vec<i64>) = wanted
            .iter()
            .flatten()
            .map(|(lease, epoch)| (lease.as_str(), *epoch))
            .unzip();
        if keys.is_empty() {
            return Ok(vec![true; ids.len()]);
        }
        let found: Vec<(String, i64)> = sqlx::query_as(
            "SELECT l.lease_key, l.epoch FROM leases l \
             JOIN UNNEST($1::text[], $2::int8[]) AS w(lease_key, epoch) \
             ON l.lease_key = w.lease_key AND l.epoch = w.epoch \
             WHERE l.owner = $3 ORDER BY l.lease_key FOR SHARE OF l",
        )
        .bind(&keys)
        .bind(&epochs)
        .bind(&self.host)
        .fetch_all(&mut **tx)
        .await?;
        let found: HashSet<(String, i64)> = found.into_iter().collect();
        Ok(wanted
            .iter()
            .map(|leases| leases.iter().all(|lease| found.contains(lease)))
            .collect())
    }

    /// Stops extending this host's leases, as if it had died (for tests).
    #[cfg(test)]
    pub(super) fn stop_heartbeat(&self) {
        self.heartbeat.abort();
    }
}

/// A connection holding the advisory lock on `host` (see the module header of [`super`]).
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

/// Extends the leases this process holds four times per lifetime, for as long as it lives. Only
/// those: a lease it failed to give back, or one of an earlier process of this host that nothing
/// resumed, expires on its own.
async fn heartbeat(pool: PgPool, host: String, held: Arc<Held>, ttl_ms: i64) {
    let mut tick = tokio::time::interval(Duration::from_millis((ttl_ms / 4).max(1) as u64));
    loop {
        tick.tick().await;
        let leases: Vec<String> = {
            let held = held.lock().unwrap_or_else(|p| p.into_inner());
            held.values()
                .flatten()
                .map(|(lease, _)| lease.clone())
                .collect()
        };
        if leases.is_empty() {
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
        .bind(&leases)
        .bind(ttl_ms)
        .execute(&pool)
        .await;
        if let Err(e) = extended {
            tracing::warn!(error = %e, "could not extend this host's leases");
        }
    }
}
